//! Backends turn a [`Request`] into a [`Response`]: tokens, log-likelihoods,
//! generated text and the timings of exactly that work. Model families and
//! engines are dispatched through the one [`Backend`] enum. Model load time is
//! measured here too, but reported apart and never mixed into latency.

pub mod candle;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// One unit of work for a model. `shared_prefix`, when set, is a prefix of
/// the context/prompt that many requests share (a task's few-shot examples):
/// a backend may evaluate it once and reuse it, and reports how many prompt
/// tokens it took from that cache.
#[derive(Debug, Clone)]
pub enum Request {
    /// Score each continuation given the shared context.
    LogLikelihood { context: String, continuations: Vec<String>, shared_prefix: Option<String> },
    /// Greedy generation until a stop string or `max_tokens`.
    Generate { prompt: String, until: Vec<String>, max_tokens: usize, shared_prefix: Option<String> },
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
    /// Prompt tokens of the request (context once, plus every continuation),
    /// cached ones included: what a provider would bill as input.
    pub tokens_in: usize,
    /// Of `tokens_in`, those taken from the shared-prefix cache, not evaluated again.
    pub tokens_cached: usize,
    /// Tokens generated (0 for log-likelihood requests).
    pub tokens_out: usize,
    /// Wall time of the request, tokenization included (seconds).
    pub wall_s: f64,
    /// Generation only: request start to first generated token (seconds).
    pub ttft_s: Option<f64>,
    /// Generation only: (tokens_out - 1) / (t_last - t_first), tokens per second.
    pub decode_tok_per_s: Option<f64>,
}

#[derive(Debug, Clone)]
pub enum Output {
    LogLikelihood(Vec<ChoiceLogLik>),
    Text(String),
}

/// Every engine openweigh can drive, dispatched by one enum.
pub enum Backend {
    Candle(Box<candle::CandleBackend>),
}

impl Backend {
    pub fn run(&mut self, req: &Request) -> Result<Response> {
        match self {
            Backend::Candle(b) => b.run(req),
        }
    }

    /// Whether the model brings a chat template (instruct models do, base models not).
    pub fn has_chat_template(&self) -> bool {
        match self {
            Backend::Candle(b) => b.tokenizer.chat_template.is_some(),
        }
    }

    /// Wraps a user message in the model's chat template (generation prompt added).
    pub fn apply_chat_template(&self, user: &str) -> Result<String> {
        match self {
            Backend::Candle(b) => b.apply_chat_template(user),
        }
    }

    /// Raw prefill/decode timing used by the speed probe.
    pub fn timed_generate(&mut self, prompt_tokens: &[u32], n_out: usize) -> Result<(f64, f64)> {
        match self {
            Backend::Candle(b) => b.timed_generate(prompt_tokens, n_out),
        }
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Backend::Candle(b) => b.tokenizer.encode(text),
        }
    }
}
