//! Greedy generation on the in-process engine, several requests at once:
//! up to [`GEN_BATCH`] sequences advance together, one forward pass per
//! step ([`Transformer::step_batch`]), each step taking every active
//! sequence's next token, or the next piece of a newly admitted prompt. A
//! sequence that stops (a stop string, end of sequence, `max_tokens`) is
//! answered at once and the next request takes its place.
//!
//! One question at a time reads every weight once per generated token and
//! runs the projections one row at a time; a step of several sequences reads
//! them once for all of its rows, through the many-row kernels. A sequence's
//! numbers do not depend on what shares its steps: each step's projections
//! and head run on at least `GEMM_MIN_ROWS` rows (filler rows make up the
//! count, a lone request included), attention is each sequence's own, and a
//! prompt goes in pieces of [`PREFILL_CHUNK`] tokens from its start, so a
//! resumed run, or one with `--limit`, generates what the full run does.
//!
//! Times: each step's wall time is shared out among its sequences by the
//! rows each put in it (as packed log-likelihood passes are), so a task's
//! requests add up to its compute time; a request's `ttft_s` is its share up
//! to its first token, `decode_tok_per_s` its later tokens over its share of
//! the steps after that.

use super::transformer::{SeqCache, PREFILL_CHUNK};
use super::{argmax, CandleBackend};
use crate::backend::{OnResponse, Output, Request, Response, Tagged};
use anyhow::{anyhow, bail, Result};
use candle_core::IndexOp;
use std::collections::VecDeque;
use std::time::Instant;

/// Most sequences one step advances together.
pub const GEN_BATCH: usize = 16;

/// Keys and values the active sequences may need at most, together (their
/// prompts past the shared prefix plus `max_tokens`, in bytes): a request
/// waits while the others' would leave it no room (one is always admitted).
/// The shared prefix is held once for all.
pub const GEN_KV_BYTE: usize = 128 << 20;

/// One generation request, its prompt tokenized.
struct Sequence {
    tag: usize,
    until: Vec<String>,
    max_tokens: usize,
    /// The prompt's tokens (after truncation to the model's context).
    tokens_in: usize,
    /// Of them, those the shared-prefix cache holds.
    tokens_cached: usize,
    /// The rest: what this sequence evaluates before its first token.
    prompt: Vec<u32>,
    /// Prompt tokens evaluated so far.
    fed: usize,
    cache: SeqCache,
    out: Vec<u32>,
    text: String,
    eos: bool,
    /// Worst-case bytes of its own keys and values (see [`GEN_KV_BYTE`]).
    kv_byte: usize,
    prefix_s: f64,
    /// Tokenization, then its share of each step (seconds).
    busy_s: f64,
    /// `busy_s` when its first token was known.
    first_s: Option<f64>,
}

impl Sequence {
    /// What the next step evaluates for it: the next piece of its prompt,
    /// or its last token.
    fn chunk(&self) -> &[u32] {
        if self.fed < self.prompt.len() {
            &self.prompt[self.fed..(self.fed + PREFILL_CHUNK).min(self.prompt.len())]
        } else {
            &self.out[self.out.len() - 1..]
        }
    }

    fn response(self) -> Response {
        let mut text = self.text;
        if let Some(cut) = self.until.iter().filter_map(|s| text.find(s.as_str())).min() {
            text.truncate(cut);
        }
        let tokens_out = self.out.len() + self.eos as usize;
        let decode_s = self.first_s.map(|f| self.busy_s - f).filter(|d| *d > 0.0);
        Response {
            served: None,
            output: Output::Text(text),
            tokens_in: self.tokens_in,
            tokens_cached: self.tokens_cached,
            tokens_out,
            wall_s: self.busy_s,
            prefix_s: self.prefix_s,
            ttft_s: self.first_s,
            decode_tok_per_s: decode_s.filter(|_| tokens_out > 1).map(|d| (tokens_out - 1) as f64 / d),
        }
    }
}

/// A generation request's fields.
struct Ask {
    prompt: String,
    until: Vec<String>,
    max_tokens: usize,
    shared_prefix: Option<String>,
}

impl CandleBackend {
    /// Answers the generation requests of `batch` (greedy decoding until a
    /// stop string, end of sequence, or `max_tokens`; the text ends before
    /// the earliest stop string; every token the model produced counts as
    /// output, the end-of-sequence token too), calling `on_response` as each
    /// finishes. Requests are admitted in order; one whose shared prefix
    /// differs from the active ones' waits until they are done. A request
    /// that cannot be tokenized fails alone; a step that fails fails the
    /// sequences in it.
    pub(super) fn run_generations(&mut self, batch: Vec<Tagged>, on_response: &mut OnResponse) -> Result<()> {
        let mut queue: VecDeque<(usize, Ask)> = batch
            .into_iter()
            .filter_map(|Tagged { tag, request }| match request {
                Request::Generate { prompt, until, max_tokens, shared_prefix, .. } => {
                    Some((tag, Ask { prompt, until, max_tokens, shared_prefix }))
                }
                Request::LogLikelihood { .. } => None,
            })
            .collect();
        let mut active: Vec<Sequence> = Vec::new();
        let mut active_prefix: Option<String> = None;
        loop {
            // Admit while there is room.
            while let Some((_, ask)) = queue.front() {
                let rows: usize = active.iter().map(|s| s.chunk().len()).sum();
                let kv: usize = active.iter().map(|s| s.kv_byte).sum();
                if !active.is_empty() && (active.len() >= GEN_BATCH || ask.shared_prefix != active_prefix) {
                    break;
                }
                let (tag, ask) = queue.pop_front().expect("a front");
                let seq = match self.admit(tag, &ask) {
                    Ok(s) => s,
                    Err(e) => {
                        on_response(tag, Err(e))?;
                        continue;
                    }
                };
                if !active.is_empty() && (kv + seq.kv_byte > GEN_KV_BYTE || rows + seq.chunk().len() > PREFILL_CHUNK) {
                    // No room this step: back to the front, tokenized again later.
                    queue.push_front((tag, ask));
                    break;
                }
                active_prefix.clone_from(&ask.shared_prefix);
                active.push(seq);
            }
            if active.is_empty() {
                return Ok(());
            }
            if let Err(e) = self.step(&mut active) {
                for s in active.drain(..) {
                    on_response(s.tag, Err(anyhow!("{e:#}")))?;
                }
                continue;
            }
            let mut i = 0;
            while i < active.len() {
                if finished(&active[i]) {
                    let s = active.swap_remove(i);
                    on_response(s.tag, Ok(s.response()))?;
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Tokenizes one request (the end of its prompt kept where prompt and
    /// `max_tokens` exceed the model's context, as lm-evaluation-harness
    /// does) and starts its sequence on the shared-prefix cache.
    fn admit(&mut self, tag: usize, ask: &Ask) -> Result<Sequence> {
        let start = Instant::now();
        let mut ids = self.prompt_ids(&ask.prompt)?;
        let room = self.model.max_seq_len().saturating_sub(ask.max_tokens);
        if ids.len() > room {
            ids.drain(..ids.len() - room);
        }
        let prefix_s = self.ensure_prefix(ask.shared_prefix.as_deref())?;
        let cached = self.cached_len(&ids, ask.shared_prefix.as_deref());
        let prompt = ids[cached..].to_vec();
        if prompt.is_empty() {
            bail!(
                "max_tokens {} leaves no room for the prompt in the model's context of {}",
                ask.max_tokens,
                self.model.max_seq_len()
            );
        }
        let kv_byte = (prompt.len() + ask.max_tokens) * self.model.kv_bytes_per_position();
        Ok(Sequence {
            tag,
            until: ask.until.clone(),
            max_tokens: ask.max_tokens,
            tokens_in: ids.len(),
            tokens_cached: cached,
            prompt,
            fed: 0,
            cache: SeqCache::new(self.start_cache(cached)),
            out: Vec::new(),
            text: String::new(),
            eos: false,
            kv_byte,
            prefix_s,
            busy_s: (start.elapsed().as_secs_f64() - prefix_s).max(0.0),
            first_s: None,
        })
    }

    /// One forward pass over every active sequence's next chunk; those whose
    /// prompt it completed (or who were decoding) take their next token.
    fn step(&mut self, active: &mut [Sequence]) -> Result<()> {
        let start = Instant::now();
        let chunks: Vec<Vec<u32>> = active.iter().map(|s| s.chunk().to_vec()).collect();
        let mut caches: Vec<&mut SeqCache> = active.iter_mut().map(|s| &mut s.cache).collect();
        let views: Vec<&[u32]> = chunks.iter().map(Vec::as_slice).collect();
        let logits = self.model.step_batch(&mut caches, &views)?;
        for (i, (s, chunk)) in active.iter_mut().zip(&chunks).enumerate() {
            if s.fed < s.prompt.len() {
                s.fed += chunk.len();
                if s.fed < s.prompt.len() || s.max_tokens == 0 {
                    continue;
                }
            }
            let next = argmax(&logits.i(i)?.to_vec1::<f32>()?);
            if Some(next) == self.tokenizer.eos_id {
                s.eos = true;
            } else {
                s.out.push(next);
                s.text = self.tokenizer.decode(&s.out)?;
            }
        }
        let step_s = start.elapsed().as_secs_f64();
        let rows: usize = chunks.iter().map(Vec::len).sum();
        for (s, chunk) in active.iter_mut().zip(&chunks) {
            s.busy_s += step_s * chunk.len() as f64 / rows as f64;
            if s.first_s.is_none() && (s.eos || !s.out.is_empty()) {
                s.first_s = Some(s.busy_s);
            }
        }
        Ok(())
    }
}

/// Whether a sequence is done: end of sequence, a stop string in its text,
/// `max_tokens` reached (its prompt evaluated).
fn finished(s: &Sequence) -> bool {
    s.fed >= s.prompt.len()
        && (s.eos || s.out.len() >= s.max_tokens || s.until.iter().any(|u| s.text.contains(u.as_str())))
}
