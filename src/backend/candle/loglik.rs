//! Log-likelihood scoring on the in-process engine: each request's context
//! and continuations tokenized as lm-evaluation-harness does, then evaluated
//! several questions per forward pass.
//!
//! A pass packs questions one after another, each its context (the trunk)
//! followed by its continuations (branches), with positions that restart at
//! the context's end for every continuation and a mask that lets each token
//! see the shared-prefix cache, its own context and its own branch only
//! ([`Slot`]): the numbers of one pass per continuation, up to rounding, in
//! fewer and larger matrix products (the weights are dequantized and packed
//! once per pass, not once per question). A context's last position scores
//! every continuation's first token; each continuation's own positions but
//! its last score the rest.
//!
//! A question's numbers do not depend on what it was packed with: attention
//! runs document by document over the same keys, the projections compute
//! each row on its own, and every pass and head call has at least
//! `GEMM_MIN_ROWS` rows, so it takes the same kernels. A resumed run, or one
//! with `--limit`, scores each item bit for bit as the full run does.
//!
//! Requests too long for one pass (a context of more than
//! [`PACK_TOKENS`] tokens) take the two-step path: the context in chunks
//! into a KV cache, then its continuations packed on snapshots of it.

use super::lanes;
use super::linear::{compute_threads, GEMM_MIN_ROWS};
use super::transformer::{KvCache, Slot, PREFILL_CHUNK};
use super::{token_logprob, with_host_f32, CandleBackend};
use crate::backend::{ChoiceLogLik, OnResponse, Output, Request, Response, Tagged};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{IndexOp, Tensor};
use std::time::Instant;

/// Most tokens one packed pass evaluates (as many as one prefill chunk):
/// questions are added while their contexts past the prefix cache and
/// continuations (all but their last tokens) fit.
pub const PACK_TOKENS: usize = PREFILL_CHUNK;

/// Most logits alive at once when a pass's rows go through the output head
/// without our streamed head: 4 Mi floats (16 MiB), 85 rows of SmolLM2's 49k
/// vocabulary at a time; at least [`HEAD_MIN_ROWS`] rows (Gemma's 262k: 32
/// MiB), since each call streams the whole head weight once.
const HEAD_LOGITS: usize = 4 << 20;
const HEAD_MIN_ROWS: usize = 32;

/// One log-likelihood request, tokenized.
struct Choices {
    /// The context's token ids (BOS included where the model adds one).
    ctx: Vec<u32>,
    /// Each continuation's token ids: those of `encode(context +
    /// continuation)` past the context's.
    conts: Vec<Vec<u32>>,
    /// Leading tokens of `ctx` that the shared-prefix cache holds.
    cached: usize,
    /// Seconds spent evaluating a new shared prefix for this request.
    prefix_s: f64,
    /// Seconds spent tokenizing it.
    tokenize_s: f64,
}

impl Choices {
    /// Tokens a pass evaluates for it: the context past the prefix cache,
    /// and each continuation but its last token.
    fn pass_tokens(&self) -> usize {
        self.ctx.len() - self.cached + self.conts.iter().map(|c| c.len() - 1).sum::<usize>()
    }

    /// Positions its longest continuation reaches.
    fn end(&self) -> usize {
        self.ctx.len() + self.conts.iter().map(|c| c.len() - 1).max().unwrap_or(0)
    }

    /// Prompt positions the model takes in for it (see [`Response::tokens_in`]):
    /// those a pass evaluates plus those taken from the prefix cache.
    fn tokens_in(&self) -> usize {
        self.pass_tokens() + self.cached
    }

    fn response(&self, scores: Vec<ChoiceLogLik>, wall_s: f64) -> Response {
        Response {
            served: None,
            output: Output::LogLikelihood(scores),
            tokens_in: self.tokens_in(),
            tokens_cached: self.cached,
            tokens_out: 0,
            wall_s,
            prefix_s: self.prefix_s,
            ttft_s: None,
            decode_tok_per_s: None,
        }
    }
}

/// Each continuation's running log-likelihood, from its first token's score.
fn first_scores(conts: &[Vec<u32>], first: impl Fn(usize, u32) -> (f64, bool)) -> Vec<ChoiceLogLik> {
    conts
        .iter()
        .enumerate()
        .map(|(c, toks)| {
            let (logprob, is_greedy) = first(c, toks[0]);
            ChoiceLogLik { logprob, n_tokens: toks.len(), is_greedy }
        })
        .collect()
}

/// Requests gathered for one packed pass, in order: their tags and tokens.
struct Pass {
    tags: Vec<usize>,
    items: Vec<Choices>,
}

impl Pass {
    /// A pass holding one request.
    fn of(tag: usize, choices: Choices) -> Self {
        Self { tags: vec![tag], items: vec![choices] }
    }

    fn push(&mut self, tag: usize, choices: Choices) {
        self.tags.push(tag);
        self.items.push(choices);
    }

    /// Leading tokens its requests take from the prefix cache (the same for all).
    fn cached(&self) -> usize {
        self.items.first().map_or(0, |c| c.cached)
    }

    /// Tokens the pass evaluates.
    fn tokens(&self) -> usize {
        self.items.iter().map(Choices::pass_tokens).sum()
    }

    /// Whether `c` joins it: the same prefix-cache length, and room left.
    fn takes(&self, c: &Choices) -> bool {
        self.cached() == c.cached && self.tokens() + c.pass_tokens() <= PACK_TOKENS
    }
}

/// Most passes gathered before they are scored: enough that the last pass
/// of a gathering, which may run alone while the other threads wait, is a
/// small part of it (128 passes are about a minute on two cores), few
/// enough that results reach the disk as the run goes.
const PASSES_GATHERED: usize = 128;

impl CandleBackend {
    /// Answers `batch` in order, calling `on_response` per request:
    /// consecutive log-likelihood requests that share their prefix cache are
    /// gathered while they fit one pass of [`PACK_TOKENS`], and the passes
    /// gathered run side by side ([`CandleBackend::score_passes`]);
    /// anything else is answered alone, after the passes gathered before it.
    /// A request that cannot be tokenized fails alone; a pass that fails
    /// fails its requests only.
    pub(super) fn run_loglikelihoods(&mut self, batch: Vec<Tagged>, on_response: &mut OnResponse) -> Result<()> {
        let mut passes: Vec<Pass> = Vec::new();
        let mut pack_prefix: Option<String> = None;
        for Tagged { tag, request } in batch {
            let Request::LogLikelihood { context, continuations, shared_prefix } = &request else {
                self.score_passes(&mut passes, on_response)?;
                on_response(tag, self.run(&request))?;
                continue;
            };
            if *shared_prefix != pack_prefix {
                // Tokenizing it may replace the prefix cache the passes need.
                self.score_passes(&mut passes, on_response)?;
                pack_prefix.clone_from(shared_prefix);
            }
            let choices = match self.choices(context, continuations, shared_prefix.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    on_response(tag, Err(e))?;
                    continue;
                }
            };
            if !self.fits_a_pass(&choices) {
                self.score_passes(&mut passes, on_response)?;
                on_response(tag, self.score_alone(&choices))?;
                continue;
            }
            match passes.last_mut() {
                Some(pass) if pass.takes(&choices) => pass.push(tag, choices),
                _ => {
                    if passes.len() >= PASSES_GATHERED {
                        self.score_passes(&mut passes, on_response)?;
                    }
                    passes.push(Pass::of(tag, choices));
                }
            }
        }
        self.score_passes(&mut passes, on_response)
    }

    /// Scores the gathered passes and hands back each response, pass by
    /// pass in order: side by side, one a compute thread ([`lanes`]), when
    /// there are several, on the CPU, and none reads the prefix cache (which
    /// passes would share and write past); else one after another, each
    /// spread over the threads. A request's `wall_s` is its tokenization
    /// plus its pass's share of the elapsed time divided among the pass's
    /// requests by the tokens each put in.
    fn score_passes(&mut self, passes: &mut Vec<Pass>, on_response: &mut OnResponse) -> Result<()> {
        let passes = std::mem::take(passes);
        let deliver =
            |pass: &Pass, scored: Result<Vec<Vec<ChoiceLogLik>>>, pass_s: f64, on_response: &mut OnResponse| {
                let tags = pass.tags.iter().copied();
                match scored {
                    Ok(scores) => {
                        let total = pass.tokens() as f64;
                        tags.zip(pass.items.iter().zip(scores)).try_for_each(|(tag, (it, scores))| {
                            let wall_s = it.tokenize_s + pass_s * it.pass_tokens() as f64 / total;
                            on_response(tag, Ok(it.response(scores, wall_s)))
                        })
                    }
                    Err(e) => tags.into_iter().try_for_each(|tag| on_response(tag, Err(anyhow!("{e:#}")))),
                }
            };
        let threads = compute_threads();
        let side_by_side =
            passes.len() > 1 && threads > 1 && self.model.device().is_cpu() && passes.iter().all(|p| p.cached() == 0);
        if !side_by_side {
            for pass in &passes {
                let start = Instant::now();
                let scored = self.score_packed(&pass.items);
                deliver(pass, scored, start.elapsed().as_secs_f64(), on_response)?;
            }
            return Ok(());
        }
        let this = &*self;
        lanes::run_in_lanes(
            threads,
            &passes,
            |pass| this.score_packed(&pass.items),
            |i, scored, share_s| deliver(&passes[i], scored, share_s, on_response),
        )
    }

    /// Scores every continuation after one shared context (one request).
    pub(super) fn loglikelihood(
        &mut self,
        context: &str,
        continuations: &[String],
        shared_prefix: Option<&str>,
    ) -> Result<Response> {
        let choices = self.choices(context, continuations, shared_prefix)?;
        if self.fits_a_pass(&choices) {
            let start = Instant::now();
            let scores = self.score_packed(std::slice::from_ref(&choices))?.remove(0);
            return Ok(choices.response(scores, choices.tokenize_s + start.elapsed().as_secs_f64()));
        }
        self.score_alone(&choices)
    }

    /// Tokenizes a request as lm-evaluation-harness does: trailing spaces of
    /// the context move to the continuation, and a continuation's tokens are
    /// those of `encode(context + continuation)` past `len(encode(context))`.
    /// Evaluates its shared prefix into the prefix cache first when that
    /// holds another one.
    fn choices(&mut self, context: &str, continuations: &[String], shared_prefix: Option<&str>) -> Result<Choices> {
        let prefix_s = self.ensure_prefix(shared_prefix)?;
        let start = Instant::now();
        let trimmed = context.trim_end_matches(' ');
        let moved = &context[trimmed.len()..];
        let ctx = self.prompt_ids(trimmed)?;
        let mut conts = Vec::with_capacity(continuations.len());
        for cont in continuations {
            let whole = self.prompt_ids(&format!("{trimmed}{moved}{cont}"))?;
            let ids: Vec<u32> = whole.get(ctx.len()..).unwrap_or_default().to_vec();
            if ids.is_empty() {
                bail!("continuation {cont:?} has no tokens of its own after the context");
            }
            conts.push(ids);
        }
        let cached = self.cached_len(&ctx, shared_prefix);
        Ok(Choices { ctx, conts, cached, prefix_s, tokenize_s: start.elapsed().as_secs_f64() })
    }

    /// Whether a request goes into a packed pass: it fits one, and its
    /// longest continuation stays within the model's context (a longer one
    /// fails alone, with its own error).
    fn fits_a_pass(&self, c: &Choices) -> bool {
        c.pass_tokens() <= PACK_TOKENS && c.end() <= self.model.max_seq_len()
    }

    /// One forward pass over `items` (all with the same `cached` prefix
    /// length) laid out as [`Slot`]s: each item's context past the cache
    /// (trunk), then each continuation but its last token (branch `c + 1`,
    /// positions from the context's end). The context's last row scores the
    /// continuations' first tokens, each branch row the next token of its
    /// continuation. Returns each item's scores, in order.
    fn score_packed(&self, items: &[Choices]) -> Result<Vec<Vec<ChoiceLogLik>>> {
        let cached = items.first().map_or(0, |c| c.cached);
        let mut cache = self.start_cache(cached);
        let (mut tokens, mut slots, mut rows, mut targets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (doc, it) in (0u32..).zip(items) {
            debug_assert_eq!(it.cached, cached);
            for (pos, &t) in (cached..).zip(&it.ctx[cached..]) {
                tokens.push(t);
                slots.push(Slot { doc, branch: 0, pos: pos as u32 });
            }
            let last = tokens.len() as u32 - 1;
            for cont in &it.conts {
                rows.push(last);
                targets.push(cont[0]);
            }
            for (branch, cont) in (1u32..).zip(&it.conts) {
                for (pos, w) in (it.ctx.len()..).zip(cont.windows(2)) {
                    rows.push(tokens.len() as u32);
                    targets.push(w[1]);
                    tokens.push(w[0]);
                    slots.push(Slot { doc, branch, pos: pos as u32 });
                }
            }
        }
        // At least GEMM_MIN_ROWS tokens and head rows, so that every pass
        // takes the same kernels whatever it holds: a filler document of
        // repeated tokens (seen by nothing else; its rows are not scored),
        // and repeated rows whose scores are dropped.
        let (real_tokens, real_rows) = (tokens.len(), rows.len());
        for i in real_tokens..GEMM_MIN_ROWS {
            tokens.push(tokens[0]);
            slots.push(Slot { doc: items.len() as u32, branch: 0, pos: (cached + i - real_tokens) as u32 });
        }
        rows.resize(real_rows.max(GEMM_MIN_ROWS), rows[0]);
        targets.resize(real_rows.max(GEMM_MIN_ROWS), targets[0]);
        let hidden = self.model.hidden_packed(&tokens, &slots, &mut cache, &rows)?;
        let mut scored = self.head_scores(&hidden, &targets)?.into_iter().take(real_rows);
        Ok(items
            .iter()
            .map(|it| {
                // Rows come in the order they were listed: the first tokens, then each branch's.
                let firsts: Vec<(f64, bool)> = scored.by_ref().take(it.conts.len()).collect();
                let mut scores = first_scores(&it.conts, |c, _| firsts[c]);
                for (score, cont) in scores.iter_mut().zip(&it.conts) {
                    for (lp, greedy) in scored.by_ref().take(cont.len() - 1) {
                        score.logprob += lp;
                        score.is_greedy &= greedy;
                    }
                }
                scores
            })
            .collect())
    }

    /// A request too long for one pass: its context into a KV cache (in
    /// chunks, after the prefix cache), whose last position scores each
    /// continuation's first token; then the continuations' other tokens
    /// packed together on snapshots of that cache, at most [`PACK_TOKENS`]
    /// rows a pass.
    fn score_alone(&mut self, it: &Choices) -> Result<Response> {
        let start = Instant::now();
        let mut cache = self.start_cache(it.cached);
        let last = self.model.forward(&it.ctx[it.cached..], &mut cache, 1)?.context("no logits")?;
        let last: Vec<f32> = last.i(0)?.to_vec1()?;
        let mut scores = first_scores(&it.conts, |_, tok| token_logprob(&last, tok));
        let conts = &it.conts;
        let mut next = 0;
        while next < conts.len() {
            let (mut group, mut rows) = (Vec::new(), 0);
            while next < conts.len() {
                let n = conts[next].len() - 1;
                if n > 0 && !group.is_empty() && rows + n > PACK_TOKENS {
                    break;
                }
                if n > 0 {
                    group.push(next);
                    rows += n;
                }
                next += 1;
            }
            if group.is_empty() {
                continue;
            }
            let segments: Vec<usize> = group.iter().map(|&g| conts[g].len() - 1).collect();
            let tokens: Vec<u32> = group.iter().flat_map(|&g| conts[g][..conts[g].len() - 1].iter().copied()).collect();
            let mut snap: KvCache = cache.clone();
            let hidden: Tensor = self
                .model
                .hidden_segments(&tokens, &segments, &mut snap, tokens.len())?
                .context("no logits for the continuations")?;
            // Row i of continuation g scores its token i + 1.
            let owners = group.iter().flat_map(|&g| std::iter::repeat_n(g, conts[g].len() - 1));
            let targets: Vec<u32> = group.iter().flat_map(|&g| conts[g][1..].iter().copied()).collect();
            for (g, (lp, greedy)) in owners.zip(self.head_scores(&hidden, &targets)?) {
                scores[g].logprob += lp;
                scores[g].is_greedy &= greedy;
            }
        }
        Ok(it.response(scores, it.tokenize_s + start.elapsed().as_secs_f64()))
    }

    /// (log p(`targets[i]`), is it the argmax) for each row of final hidden
    /// states: streamed through the output head where our kernels cover it,
    /// else from logits computed a few rows at a time ([`HEAD_LOGITS`]).
    fn head_scores(&self, hidden: &Tensor, targets: &[u32]) -> Result<Vec<(f64, bool)>> {
        if let Some(streamed) = self.model.head_logprobs(hidden, targets)? {
            return Ok(streamed);
        }
        let vocab = self.model.vocab_size();
        let rows = (HEAD_LOGITS / vocab.max(1)).max(HEAD_MIN_ROWS);
        let mut out = Vec::with_capacity(targets.len());
        for (c, chunk) in targets.chunks(rows).enumerate() {
            let logits = self.model.head(&hidden.narrow(0, c * rows, chunk.len())?)?;
            with_host_f32(&logits, |values| {
                out.extend(chunk.iter().zip(values.chunks_exact(vocab)).map(|(&tok, row)| token_logprob(row, tok)))
            })?;
        }
        Ok(out)
    }
}
