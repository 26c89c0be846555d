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
    let mut ids = Vec::new();
    while ids.len() < PROBE_PROMPT_TOKENS {
        ids.extend(backend.encode(PROBE_TEXT)?);
    }
    ids.truncate(PROBE_PROMPT_TOKENS);
    if repetitions == 0 {
        bail!("the speed probe needs at least one repetition");
    }
    backend.timed_generate(&ids, PROBE_OUTPUT_TOKENS)?; // warm-up, not timed
    let (mut prefill, mut decode, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repetitions {
        let (p, d) = backend.timed_generate(&ids, PROBE_OUTPUT_TOKENS)?;
        prefill.push(PROBE_PROMPT_TOKENS as f64 / p);
        decode.push((PROBE_OUTPUT_TOKENS - 1) as f64 / d);
        ttft.push(p);
    }
    Ok(SpeedProbe {
        prompt_tokens: PROBE_PROMPT_TOKENS,
        generated_tokens: PROBE_OUTPUT_TOKENS,
        repetitions,
        prefill_tok_per_s: spread(prefill),
        decode_tok_per_s: spread(decode),
        ttft_s: spread(ttft),
    })
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
