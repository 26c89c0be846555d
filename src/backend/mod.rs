//! The backend interface: requests in, responses out. A [`Request`] asks a
//! model for log-likelihoods or a greedy generation; the [`Response`] carries
//! what came back (tokens, log-likelihoods, text) and the timings of exactly
//! that work. Engines implement [`Engine`]: they take a batch of requests,
//! each tagged by the caller, and hand back each response as it finishes, in
//! whatever order they finish. The in-process candle engine answers several
//! requests to a forward pass (log-likelihoods packed, generations stepped
//! together); an engine that
//! talks to a server may answer them concurrently. The
//! run loop neither knows nor cares which engine it drives.
//!
//! Model files are engine-agnostic knowledge kept beside the interface:
//! `weights` (GGUF and safetensors sources, hyper-parameters), `tokenizer`
//! (rebuilt from GGUF metadata or `tokenizer.json`) and `chat_template`.
//! Load time is measured by each engine and reported apart, never mixed into
//! a latency.

pub mod adapter;
pub mod candle;
pub mod chat_template;
pub mod openai;
pub mod tokenizer;
pub mod weights;

pub use candle::transformer::WeightFormat;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One unit of work for a model. `shared_prefix`, when set, is a prefix of
/// the context/prompt that many requests share (a task's few-shot examples):
/// a backend may evaluate it once and reuse it, and reports how many prompt
/// tokens it took from that cache.
#[derive(Debug, Clone)]
pub enum Request {
    /// Score each continuation given the shared context.
    LogLikelihood { context: String, continuations: Vec<String>, shared_prefix: Option<String> },
    /// Greedy generation until a stop string or `max_tokens`. `chat`: the
    /// prompt is a user message in the model's chat template (already applied
    /// by an in-process engine; a served model's server applies its own).
    Generate { prompt: String, until: Vec<String>, max_tokens: usize, shared_prefix: Option<String>, chat: bool },
}

/// A request with the caller's tag, which comes back with its response.
#[derive(Debug, Clone)]
pub struct Tagged {
    pub tag: usize,
    pub request: Request,
}

/// Log-likelihood of one continuation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChoiceLogLik {
    /// Sum of natural-log probabilities of the continuation's tokens (nats).
    pub logprob: f64,
    /// Number of continuation tokens scored.
    pub n_tokens: usize,
    /// Whether every continuation token was the model's argmax (lm-eval's `is_greedy`).
    pub is_greedy: bool,
}

/// What a backend returns, with the timings of that request alone.
#[derive(Debug, Clone)]
pub struct Response {
    pub output: Output,
    /// Prompt positions the model took in: for generation the prompt's
    /// tokens; for log-likelihoods the context's tokens once plus each
    /// continuation's tokens but its last (a continuation's last token is
    /// scored, never fed back, so a one-token continuation adds none).
    /// Tokens taken from the shared-prefix cache are included.
    pub tokens_in: usize,
    /// Of `tokens_in`, those taken from the shared-prefix cache, not evaluated again.
    pub tokens_cached: usize,
    /// Tokens generated, the end-of-sequence token included when generation
    /// stopped there (0 for log-likelihood requests).
    pub tokens_out: usize,
    /// Wall time of the request, tokenization included, the shared prefix's
    /// first evaluation excluded (seconds). Log-likelihood requests that the
    /// in-process engine scores several to a forward pass are each charged
    /// their tokenization plus the pass's time shared out by the tokens each
    /// put in it, so a task's requests add up to its compute time; so are
    /// generations it steps together, step by step (`ttft_s` and
    /// `decode_tok_per_s` then count each request's shares).
    pub wall_s: f64,
    /// Seconds spent evaluating a new shared prefix (few-shot examples) into
    /// the engine's cache during this request; 0 when the cached one was
    /// reused. Kept apart from `wall_s` as load time is, so the item that
    /// happens to come first is not charged for every item's examples.
    pub prefix_s: f64,
    /// Generation only: request start to first generated token, `prefix_s`
    /// excluded (seconds).
    pub ttft_s: Option<f64>,
    /// Generation only: (tokens_out − 1) / (t_last − t_first), tokens per second.
    pub decode_tok_per_s: Option<f64>,
    /// What a served model's request adds (streaming timings, retries, where
    /// token counts came from); None in process.
    pub served: Option<ServedStats>,
}

/// The measurements of one request to a served model (the `openai` engine).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServedStats {
    /// Time per output token after the first: (E2E − TTFT)/(tokens_out − 1), seconds.
    pub tpot_s: Option<f64>,
    /// Gaps between consecutive chunks carrying text (inter-token latency when
    /// a chunk is a token), seconds, in arrival order.
    pub itl_s: Vec<f64>,
    /// Chunks that carried text.
    pub chunks: usize,
    /// Where `tokens_in`/`tokens_out` came from: "usage" (the server's
    /// count), "tokenizer" (the models file's local tokenizer), "estimate"
    /// (one per chunk; prompt characters ÷ 4) or "echo" (echoed prompt tokens).
    pub token_counts: String,
    /// Attempts after the first that this request needed.
    pub retries: u32,
    /// The server's `finish_reason` (stop, length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// llama.cpp's own timings of the request, when it sends them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_timings: Option<openai::stream::ServerTimings>,
}

#[derive(Debug, Clone)]
pub enum Output {
    LogLikelihood(Vec<ChoiceLogLik>),
    Text(String),
}

/// Called once per request of a batch, with its tag, as soon as it finishes.
/// Returning an error stops the batch.
pub type OnResponse<'a> = dyn FnMut(usize, Result<Response>) -> Result<()> + 'a;

/// An engine that answers requests for one loaded model.
pub trait Engine {
    /// Short name recorded in `run.json` (`candle`).
    fn name(&self) -> &'static str;
    /// Where it computes (`cpu`, `cuda:0`).
    fn device(&self) -> String;
    /// Seconds spent loading the model before any request (never part of a latency).
    fn load_s(&self) -> f64;
    /// How the model is held (weight types, repacks, shape), for `run.json`.
    fn load_report(&self) -> serde_json::Value;
    /// Whether the model brings a chat template (instruct models do, base models not).
    fn has_chat_template(&self) -> bool;
    /// Wraps a user message in the model's chat template (generation prompt added).
    fn apply_chat_template(&self, user: &str) -> Result<String>;
    /// Whether log-likelihoods can be asked through the chat template (a
    /// served model's template is applied by the server on chat requests,
    /// which return no prompt log-probs).
    fn chat_loglikelihood(&self) -> bool {
        true
    }
    /// Most tokens of a forward pass into which the engine packs consecutive
    /// log-likelihood requests (`None`: one request per pass).
    fn loglik_pack_tokens(&self) -> Option<usize> {
        None
    }
    /// Most bytes of KV-cache buffers this engine held at once since it was
    /// loaded (at their allocated capacity); `None` where it cannot tell (a
    /// served model's cache lives in the server).
    fn kv_peak_byte(&self) -> Option<u64> {
        None
    }
    /// Checks, before any item is scored, that this engine's log-likelihoods
    /// can be trusted; an error says why not and what to do instead.
    fn check_loglikelihood(&mut self) -> Result<()> {
        Ok(())
    }
    /// Answers every request of `batch`, calling `on_response` once per
    /// request as it finishes, in any order. A request that fails is passed
    /// to `on_response` as an error and the batch goes on; an error returned
    /// by `on_response`, or by the engine itself, stops it.
    fn run_batch(&mut self, batch: Vec<Tagged>, on_response: &mut OnResponse) -> Result<()>;
    /// The model's token ids for `text` (no special tokens added).
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// Prefill `prompt` then decode `n_out` tokens greedily, ignoring end of
    /// sequence: (prefill seconds, seconds for the `n_out − 1` decode steps
    /// after the first token). The speed probe's raw measurement.
    fn timed_generate(&mut self, prompt: &[u32], n_out: usize) -> Result<(f64, f64)>;
}

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// Compute on the first CUDA device instead of the CPU.
    pub cuda: bool,
    /// How the weights are held in memory.
    pub weights: WeightFormat,
    /// How a served model is called (concurrency, timeout, retries).
    pub http: openai::http::HttpOptions,
}

impl EngineOptions {
    /// Checks the options without loading anything (e.g. `--device cuda` in a
    /// build without CUDA), so a bad flag is refused before any weights load.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag, message: &str| Err(crate::error::UserError::BadFlag { flag, message: message.into() }.into());
        if self.http.concurrency == 0 {
            return bad("--concurrency", "must be at least 1");
        }
        if !(self.http.timeout_s.is_finite() && self.http.timeout_s > 0.0) {
            return bad("--request-timeout", "must be a positive number of seconds, e.g. 120");
        }
        candle::device(self.cuda).map(|_| ())
    }
}

/// Positions the model at `path` accepts (its context length, capped at
/// [`candle::transformer::MAX_POSITIONS`]), read from the GGUF header or
/// `config.json` alone, so prompts and generation lengths can be checked
/// before any weights load.
pub fn max_positions(path: &Path) -> Result<usize> {
    let hp = weights::peek_hparams(path)?;
    Ok(hp.context_length.min(candle::transformer::MAX_POSITIONS))
}

/// Loads the model at `path` (a GGUF file or a safetensors folder), with a
/// LoRA adapter merged in when given, into the engine that runs it.
pub fn load(path: &Path, adapter: Option<&adapter::LoraAdapter>, opts: &EngineOptions) -> Result<Box<dyn Engine>> {
    let device = candle::device(opts.cuda)?;
    Ok(Box::new(candle::CandleBackend::load_with_adapter(path, adapter, &device, opts.weights)?))
}

/// Connects to a served model (the `openai` engine).
pub fn load_endpoint(ep: &openai::Endpoint, opts: &EngineOptions) -> Result<Box<dyn Engine>> {
    Ok(Box::new(openai::OpenAiEngine::connect(ep, opts.http)?))
}

/// For tests of plumbing around engines: the methods a model-less stand-in
/// engine answers the same way (no device, no load, no chat template).
#[cfg(test)]
macro_rules! stub_engine_basics {
    () => {
        fn device(&self) -> String {
            "none".into()
        }
        fn load_s(&self) -> f64 {
            0.0
        }
        fn load_report(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
        fn has_chat_template(&self) -> bool {
            false
        }
        fn apply_chat_template(&self, _: &str) -> anyhow::Result<String> {
            anyhow::bail!("no chat template")
        }
    };
}
#[cfg(test)]
pub(crate) use stub_engine_basics;
