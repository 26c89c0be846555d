//! Run-level measurements: the speed probe (fixed prompt, fixed output length,
//! one warm-up then timed repetitions), peak memory of the process, and the
//! host facts that decide speed (CPU, compiled target features).

use crate::backend::Engine;
use crate::results::{HostInfo, SpeedProbe, Spread};
use crate::stats;
use anyhow::{bail, Result};

/// The probe's prompt: plain English, repeated and cut to `PROBE_PROMPT_TOKENS` tokens.
const PROBE_TEXT: &str = "The history of measurement is a history of agreement. Merchants, builders and \
astronomers each needed units that others would accept, and over centuries they traded local customs for \
shared standards. A good benchmark works the same way: it fixes the question, the procedure and the unit, \
so that two people on two machines can compare what they saw. ";
pub const PROBE_PROMPT_TOKENS: usize = 256;
pub const PROBE_OUTPUT_TOKENS: usize = 128;

fn spread(values: Vec<f64>) -> Spread {
    Spread { mean: stats::mean(&values), sd: stats::sample_sd(&values), values }
}

/// Measures prefill and decode throughput on a fixed workload.
pub fn speed_probe(backend: &mut dyn Engine, repetitions: usize) -> Result<SpeedProbe> {
    Ok(interleaved_probes(&mut [backend], repetitions, ProbeShape::default())?.remove(0))
}

/// Tokens prefilled and generated per repetition of the probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeShape {
    pub prompt_tokens: usize,
    pub output_tokens: usize,
}

impl Default for ProbeShape {
    fn default() -> Self {
        Self { prompt_tokens: PROBE_PROMPT_TOKENS, output_tokens: PROBE_OUTPUT_TOKENS }
    }
}

/// The probe's prompt in `engine`'s tokens, `n` of them.
fn probe_ids(engine: &dyn Engine, n: usize) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    while ids.len() < n {
        ids.extend(engine.encode(PROBE_TEXT)?);
    }
    ids.truncate(n);
    Ok(ids)
}

/// The speed probe of several engines, repetitions interleaved (A, B, A,
/// B, …) after one untimed warm-up each, so that drifts in machine load
/// (another process, thermal state) fall on every engine alike; returns one
/// probe per engine, in order.
pub fn interleaved_probes(
    engines: &mut [&mut dyn Engine],
    repetitions: usize,
    shape: ProbeShape,
) -> Result<Vec<SpeedProbe>> {
    if repetitions == 0 {
        bail!("the speed probe needs at least one repetition");
    }
    if shape.prompt_tokens == 0 || shape.output_tokens < 2 {
        bail!("the speed probe needs a prompt of at least 1 token and at least 2 output tokens");
    }
    let (n_in, n_out) = (shape.prompt_tokens, shape.output_tokens);
    let prompts: Vec<Vec<u32>> = engines.iter().map(|e| probe_ids(&**e, n_in)).collect::<Result<_>>()?;
    for (e, ids) in engines.iter_mut().zip(&prompts) {
        e.timed_generate(ids, n_out)?; // warm-up, not timed
    }
    let mut times: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> = engines.iter().map(|_| Default::default()).collect();
    for _ in 0..repetitions {
        for ((e, ids), (prefill, decode, ttft)) in engines.iter_mut().zip(&prompts).zip(&mut times) {
            let (p, d) = e.timed_generate(ids, n_out)?;
            prefill.push(n_in as f64 / p);
            decode.push((n_out - 1) as f64 / d);
            ttft.push(p);
        }
    }
    Ok(times
        .into_iter()
        .map(|(prefill, decode, ttft)| SpeedProbe {
            prompt_tokens: n_in,
            generated_tokens: n_out,
            repetitions,
            prefill_tok_per_s: spread(prefill),
            decode_tok_per_s: spread(decode),
            ttft_s: spread(ttft),
        })
        .collect())
}

/// Returns freed heap memory to the OS and restarts the kernel's peak-RSS
/// counter (Linux: `malloc_trim`, then `5` into `/proc/self/clear_refs`), so
/// that the peak measured afterwards belongs to what runs afterwards (the
/// model), not to the suite's data loaded before. Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free heap pages.
        unsafe {
            libc::malloc_trim(0);
        }
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Peak resident set size in bytes: `VmHWM` (which [`reset_peak_rss`] can
/// restart) where /proc has it, else getrusage's process-lifetime maximum.
pub fn peak_rss_byte() -> u64 {
    if let Some(kb) = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    }) {
        return kb * 1024;
    }
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return 0;
    }
    // Linux reports kilobytes; macOS reports bytes.
    if cfg!(target_os = "macos") {
        usage.ru_maxrss as u64
    } else {
        usage.ru_maxrss as u64 * 1024
    }
}

pub fn host_info() -> HostInfo {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mut target_features = Vec::new();
    macro_rules! feat {
        ($($f:tt),*) => { $( if cfg!(target_feature = $f) { target_features.push($f.to_string()); } )* };
    }
    feat!("sse3", "ssse3", "avx", "avx2", "fma", "f16c", "avx512f", "neon");
    HostInfo {
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        cpu,
        logical_cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        target_features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{OnResponse, Tagged};
    use std::sync::{Arc, Mutex};

    /// Records the order of its timed calls; no model.
    struct Named(&'static str, Arc<Mutex<Vec<&'static str>>>);

    impl Engine for Named {
        fn name(&self) -> &'static str {
            self.0
        }
        crate::backend::stub_engine_basics!();
        fn run_batch(&mut self, _: Vec<Tagged>, _: &mut OnResponse) -> Result<()> {
            bail!("not used")
        }
        fn encode(&self, text: &str) -> Result<Vec<u32>> {
            Ok(text.bytes().map(u32::from).collect())
        }
        fn timed_generate(&mut self, prompt: &[u32], n_out: usize) -> Result<(f64, f64)> {
            assert_eq!((prompt.len(), n_out), (PROBE_PROMPT_TOKENS, PROBE_OUTPUT_TOKENS));
            self.1.lock().unwrap().push(self.0);
            Ok((0.5, 1.0))
        }
    }

    #[test]
    fn repetitions_are_interleaved_after_one_warm_up_each() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let (mut a, mut b) = (Named("a", log.clone()), Named("b", log.clone()));
        let probes = interleaved_probes(&mut [&mut a, &mut b], 3, ProbeShape::default()).unwrap();
        assert_eq!(*log.lock().unwrap(), ["a", "b", "a", "b", "a", "b", "a", "b"]);
        assert_eq!(probes.len(), 2);
        assert_eq!(probes[1].prefill_tok_per_s.values, vec![512.0; 3]);
        assert_eq!(probes[0].decode_tok_per_s.mean, 127.0);
    }
}
