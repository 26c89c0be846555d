//! The in-process engine: candle tensors on the CPU (or CUDA), our own
//! forward pass (`transformer`) over GGUF files and safetensors folders.
//! Loading is timed apart from any request; log-likelihood scoring shares one
//! evaluated context between a question's choices; greedy generation stops at
//! stop strings; chat templates come from the model's own template (GGUF
//! `tokenizer.chat_template` or `tokenizer_config.json`). It answers a batch
//! of requests several to a forward pass: log-likelihood requests packed
//! into passes in order (`loglik`), then generations advancing several
//! sequences a step (`generate`).

pub mod activation;
mod decode_attention;
mod generate;
mod int8_gemm;
mod lanes;
pub mod linear;
mod loglik;
mod softmax;
pub mod transformer;

use super::adapter::{Adapted, LoraAdapter};
use super::tokenizer::ModelTokenizer;
use super::weights::{bad_model, open_gguf, GgufSource, HfFolder, ModelHeader, RowOrder, SafetensorsSource};
use super::{Engine, OnResponse, Request, Response, Tagged};
use crate::error::UserError;
use anyhow::{bail, Context, Result};
use candle_core::{Device, IndexOp, Tensor};
use std::path::Path;
use std::time::Instant;
use transformer::{Hparams, KvCache, LoadReport, Transformer, WeightFormat, WeightSource};

/// A task's shared prefix, evaluated once: its text, token ids, and the KV
/// cache after all but its last token (the last token may merge with what
/// follows, so it is evaluated with the rest of each prompt).
struct PrefixCache {
    text: String,
    ids: Vec<u32>,
    cache: KvCache,
}

pub struct CandleBackend {
    model: Transformer,
    prefix: Option<PrefixCache>,
    pub tokenizer: ModelTokenizer,
    /// Seconds spent reading and preparing the weights (never part of latency).
    pub load_s: f64,
    /// `cpu` or `cuda:0`.
    device: String,
}

/// The one place that picks the compute device.
pub fn device(cuda: bool) -> Result<Device> {
    if cuda {
        #[cfg(feature = "cuda")]
        {
            return Ok(Device::new_cuda(0)?);
        }
        #[cfg(not(feature = "cuda"))]
        bail!(UserError::BadFlag {
            flag: "--device",
            message: "this build has no CUDA support; rebuild with `cargo build --release --features cuda` or use --device cpu".into(),
        });
    }
    Ok(Device::Cpu)
}

/// Fixes the compute thread count (default: candle's, the physical cores)
/// for the whole process. candle sizes its thread pools from these variables
/// on first use, so this runs before anything touches a tensor; with
/// `RAYON_NUM_THREADS` unset, candle would also re-read /proc/cpuinfo on
/// every matmul that asks for the count.
///
/// It also shortens how long candle's barrier-pool workers (which run the
/// projections) spin between calls before they sleep, unless
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` is set: candle's attention, softmax,
/// RoPE and norms run on rayon's own `threads` workers, and a barrier worker
/// spinning meanwhile takes a core from them (candle's 25,000 pauses, about
/// half a millisecond, outlast most of those ops). [`BARRIER_SPIN_LIMIT`].
pub fn set_compute_threads(threads: Option<usize>) -> usize {
    let threads = threads.unwrap_or_else(candle_core::utils::get_num_threads);
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", BARRIER_SPIN_LIMIT.to_string());
    }
    threads
}

/// Pauses a barrier-pool worker spins before it sleeps (candle's default:
/// 25,000). Measured on 2 cores (AMD EPYC Zen 5, AVX2-only build, 29
/// November, medians of three alternating runs): SmolLM2 Q4_1 prefill of 512
/// tokens 1,110 tok/s with 25,000, 1,251 with 6,000, 1,293 with 2,000; 120
/// HellaSwag + 250 MMLU items 2-7% less time in four paired runs; decode
/// unchanged within the noise (SmolLM2 268 / 267 tok/s; Gemma 3 270M
/// 127.5 / 122.3, runs spread ±5%).
const BARRIER_SPIN_LIMIT: u32 = 2_000;

/// Hands the heap's free pages back to the kernel. `main` tells glibc to
/// keep freed memory for reuse (activation buffers), so without this the
/// loader's temporaries (tensors read from the file, converted, dropped:
/// about 60 MiB for the default model) would stay in the process's RSS for
/// the whole run.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages; no pointer changes.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs `f` on the values of an f32 tensor, borrowed in place for a
/// contiguous CPU tensor (no host copy of a block of logits), copied
/// otherwise (CUDA).
fn with_host_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let Some(v) = cpu_f32(&storage, layout) {
            return Ok(f(v));
        }
    }
    Ok(f(&t.flatten_all()?.to_vec1::<f32>()?))
}

/// The values of a contiguous f32 CPU tensor's storage, borrowed in place;
/// None for another device or type, or a strided view.
fn cpu_f32<'a>(storage: &'a candle_core::Storage, layout: &candle_core::Layout) -> Option<&'a [f32]> {
    let (a, b) = layout.contiguous_offsets()?;
    match storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => Some(&v[a..b]),
        _ => None,
    }
}

/// A custom op's two inputs as contiguous f32 slices, or the error naming
/// the op (`op`) and what it expected.
fn cpu_f32_pair<'a>(
    op: &str,
    (s1, l1): (&'a candle_core::CpuStorage, &candle_core::Layout),
    (s2, l2): (&'a candle_core::CpuStorage, &candle_core::Layout),
) -> candle_core::Result<(&'a [f32], &'a [f32])> {
    use candle_core::CpuStorage::F32;
    let (F32(a), F32(b)) = (s1, s2) else { candle_core::bail!("{op}: f32 inputs expected") };
    let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
        candle_core::bail!("{op}: contiguous inputs expected")
    };
    Ok((&a[a0..a1], &b[b0..b1]))
}

/// log p(`token`) under the softmax of `logits` (one position's row), and
/// whether `token` is that row's argmax (greedy): one pass for the maximum,
/// one for Σ exp, in f64; no log-softmax of the whole vocabulary is kept.
pub fn token_logprob(logits: &[f32], token: u32) -> (f64, bool) {
    let best = argmax(logits);
    let max = logits[best as usize] as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let lp = logits.get(token as usize).map_or(f64::NEG_INFINITY, |&v| v as f64 - max - sum.ln());
    (lp, best == token)
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// The forward pass over `src`'s weights, with `adapter` merged into them.
fn build(
    hp: Hparams,
    src: &mut dyn WeightSource,
    order: RowOrder,
    adapter: Option<&LoraAdapter>,
    device: &Device,
    format: WeightFormat,
) -> Result<Transformer> {
    let Some(adapter) = adapter else {
        return Transformer::load(hp, src, device, format);
    };
    let shape = hp.clone();
    let mut adapted = Adapted::new(src, adapter, &shape, order, format);
    let mut model = Transformer::load(hp, &mut adapted, device, format)?;
    model.report.adapter = Some(adapted.report);
    Ok(model)
}

impl CandleBackend {
    /// The model's forward pass (for tests and benchmarks that drive it
    /// token by token).
    pub fn transformer(&self) -> &Transformer {
        &self.model
    }

    /// Loads a GGUF file or a safetensors model folder.
    pub fn load(path: &Path, device: &Device, format: WeightFormat) -> Result<Self> {
        Self::load_with_adapter(path, None, device, format)
    }

    /// Loads a GGUF file or a safetensors model folder with a LoRA adapter
    /// merged into its weights (checked against the model's header first).
    pub fn load_with_adapter(
        path: &Path,
        adapter: Option<&LoraAdapter>,
        device: &Device,
        format: WeightFormat,
    ) -> Result<Self> {
        let start = Instant::now();
        let bad = |e: anyhow::Error| bad_model(path, e);
        let (model, tokenizer) = if path.is_dir() {
            let folder = HfFolder::open(path)?;
            let hp = Hparams::from_hf_config(&folder.config).map_err(bad)?;
            let tokenizer = ModelTokenizer::from_hf_dir(path).map_err(bad)?;
            let mut src = SafetensorsSource::open(&folder, hp.family).map_err(bad)?;
            if let Some(a) = adapter {
                a.check(&src.header(hp.clone()))?;
            }
            let model = build(hp, &mut src, RowOrder::HuggingFace, adapter, device, format).map_err(bad)?;
            (model, tokenizer)
        } else {
            // open_gguf refuses impossible shapes and tensors past the end of the file.
            let (mut file, ct) = open_gguf(path)?;
            let hp = Hparams::from_gguf(&ct).map_err(bad)?;
            let tokenizer = ModelTokenizer::from_gguf(&ct).map_err(bad)?;
            if let Some(a) = adapter {
                a.check(&ModelHeader::of_gguf(&ct, hp.clone()))?;
            }
            let mut src = GgufSource { content: &ct, file: &mut file };
            let model = build(hp, &mut src, RowOrder::LlamaCpp, adapter, device, format).map_err(bad)?;
            (model, tokenizer)
        };
        let device = if device.is_cuda() { "cuda:0" } else { "cpu" }.to_string();
        release_freed_memory();
        // The KV peak counts from this model's load on.
        transformer::reset_kv_peak();
        Ok(Self { model, prefix: None, tokenizer, load_s: start.elapsed().as_secs_f64(), device })
    }

    pub fn load_report(&self) -> &LoadReport {
        &self.model.report
    }

    pub fn run(&mut self, req: &Request) -> Result<Response> {
        match req {
            Request::LogLikelihood { context, continuations, shared_prefix } => {
                self.loglikelihood(context, continuations, shared_prefix.as_deref())
            }
            Request::Generate { .. } => {
                let mut answer = None;
                self.run_generations(vec![Tagged { tag: 0, request: req.clone() }], &mut |_, r| {
                    answer = Some(r);
                    Ok(())
                })?;
                answer.context("the generation was not answered")?
            }
        }
    }

    fn prompt_ids(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.tokenizer.add_bos {
            ids.extend(self.tokenizer.bos_id);
        }
        ids.extend(self.tokenizer.encode(text)?);
        if ids.is_empty() {
            // lm-evaluation-harness scores an empty context after the end-of-text token.
            ids.extend(self.tokenizer.eos_id.or(self.tokenizer.bos_id));
        }
        Ok(ids)
    }

    /// Makes the shared-prefix cache hold `shared_prefix` (all its tokens but
    /// the last: the last may merge with what follows, so it is evaluated
    /// with the rest of each prompt). Returns the seconds spent evaluating
    /// it, 0 when it was already there, which callers keep out of the
    /// request's latency.
    fn ensure_prefix(&mut self, shared_prefix: Option<&str>) -> Result<f64> {
        let Some(text) = shared_prefix.filter(|t| !t.is_empty()) else { return Ok(0.0) };
        if self.prefix.as_ref().map(|p| p.text.as_str()) == Some(text) {
            return Ok(0.0);
        }
        let start = Instant::now();
        self.prefix = None;
        let ids = self.prompt_ids(text)?;
        if ids.len() > 1 {
            let mut cache = self.model.empty_cache();
            self.model.forward(&ids[..ids.len() - 1], &mut cache, 0)?;
            self.prefix = Some(PrefixCache { text: text.to_string(), ids, cache });
        }
        Ok(start.elapsed().as_secs_f64())
    }

    /// How many leading tokens of prompt `ids` the shared-prefix cache holds
    /// for a request naming `shared_prefix` (0 without one, or when `ids` do
    /// not start with the prefix's tokens). The split point depends only on
    /// the prefix, so every item of a task is computed the same way whatever
    /// ran before it.
    fn cached_len(&self, ids: &[u32], shared_prefix: Option<&str>) -> usize {
        match (&self.prefix, shared_prefix) {
            (Some(p), Some(text)) if p.text == text => {
                let k = p.ids.len() - 1;
                if ids.len() > k && ids[..k] == p.ids[..k] {
                    k
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// A KV cache holding the first `cached` tokens of a prompt
    /// ([`CandleBackend::cached_len`]): a snapshot of the prefix cache, or an
    /// empty one.
    fn start_cache(&self, cached: usize) -> KvCache {
        match &self.prefix {
            Some(p) if cached > 0 => p.cache.clone(),
            _ => self.model.empty_cache(),
        }
    }

    /// Prefill `prompt` then decode `n_out` tokens greedily, ignoring end of
    /// sequence. Returns (prefill seconds, seconds for the `n_out - 1` decode
    /// steps after the first token).
    pub fn timed_generate(&mut self, prompt: &[u32], n_out: usize) -> Result<(f64, f64)> {
        let mut cache = self.model.empty_cache();
        let t0 = Instant::now();
        let lp = self.model.forward(prompt, &mut cache, 1)?.context("no logits")?;
        let mut next = argmax(&lp.i(0)?.to_vec1::<f32>()?);
        let prefill = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for _ in 1..n_out {
            let lp = self.model.forward(&[next], &mut cache, 1)?.context("no logits")?;
            next = argmax(&lp.i(0)?.to_vec1::<f32>()?);
        }
        Ok((prefill, t1.elapsed().as_secs_f64()))
    }

    /// Renders the GGUF's `tokenizer.chat_template` for one user message with
    /// the generation prompt added.
    pub fn apply_chat_template(&self, user: &str) -> Result<String> {
        let Some(tpl) = &self.tokenizer.chat_template else {
            bail!("this model has no chat template (a base model?); set `chat_template: false` on the task");
        };
        super::chat_template::render(tpl, user, &self.tokenizer.bos_token, &self.tokenizer.eos_token)
    }
}

impl Engine for CandleBackend {
    fn name(&self) -> &'static str {
        "candle"
    }

    fn device(&self) -> String {
        self.device.clone()
    }

    fn load_s(&self) -> f64 {
        self.load_s
    }

    fn load_report(&self) -> serde_json::Value {
        serde_json::to_value(&self.model.report).unwrap_or_default()
    }

    fn has_chat_template(&self) -> bool {
        self.tokenizer.chat_template.is_some()
    }

    fn apply_chat_template(&self, user: &str) -> Result<String> {
        CandleBackend::apply_chat_template(self, user)
    }

    fn loglik_pack_tokens(&self) -> Option<usize> {
        Some(loglik::PACK_TOKENS)
    }

    fn kv_peak_byte(&self) -> Option<u64> {
        Some(transformer::kv_peak_byte())
    }

    /// Log-likelihood requests first, consecutive ones several to a pass
    /// ([`CandleBackend::run_loglikelihoods`]), then the generations, several
    /// sequences a step ([`CandleBackend::run_generations`]).
    fn run_batch(&mut self, batch: Vec<Tagged>, on_response: &mut OnResponse) -> Result<()> {
        let (scores, generations) = batch.into_iter().partition(|t| matches!(t.request, Request::LogLikelihood { .. }));
        self.run_loglikelihoods(scores, on_response)?;
        self.run_generations(generations, on_response)
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(text)
    }

    fn timed_generate(&mut self, prompt: &[u32], n_out: usize) -> Result<(f64, f64)> {
        CandleBackend::timed_generate(self, prompt, n_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-token log-prob equals candle's full log-softmax at that token,
    /// and greedy means the row's argmax.
    #[test]
    fn token_logprob_matches_log_softmax() {
        let logits = Tensor::randn(0f32, 4.0, (3, 1000), &Device::Cpu).unwrap();
        let full = candle_nn::ops::log_softmax(&logits, 1).unwrap().to_vec2::<f32>().unwrap();
        for (r, row) in logits.to_vec2::<f32>().unwrap().iter().enumerate() {
            let best = argmax(row);
            for tok in [0u32, 17, 999, best] {
                let (lp, greedy) = token_logprob(row, tok);
                assert!((lp - full[r][tok as usize] as f64).abs() < 1e-4, "{lp} vs {}", full[r][tok as usize]);
                assert_eq!(greedy, tok == best);
            }
        }
        // A token outside the vocabulary has probability 0, never a panic.
        assert_eq!(token_logprob(&[0.0, 1.0], 5).0, f64::NEG_INFINITY);
    }
}
