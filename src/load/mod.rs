//! Load: a served model under concurrent traffic (`openweigh load`), as
//! vLLM's `bench serve` and llmperf measure it. A seeded prompt set of the
//! asked input length (exact token ids when a tokenizer is at hand: the
//! models file's, else the server's `/tokenize`; else words, and the server's
//! usage counts), each asking for exactly the output length (`ignore_eos`);
//! N streams in flight at once, each sending its next request the moment the
//! last one ends, for a request count or a duration; one level per
//! concurrency in the sweep. Requests are not retried (a failure counts as an
//! error). Each level is summarised (`metrics`) and handed to the caller as
//! soon as it ends, so a later level's failure loses nothing measured.

pub mod metrics;

use crate::backend::openai::http::{Client, HttpOptions};
use crate::backend::openai::{stream, Endpoint, OpenAiEngine};
use crate::backend::Engine;
use crate::error::UserError;
use anyhow::Result;
use metrics::{LevelSummary, RequestRecord, Slo};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to send and for how long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadOptions {
    /// Concurrency levels of the sweep, in order.
    pub concurrency: Vec<usize>,
    /// Requests per level (when no duration is given).
    pub requests: Option<usize>,
    /// Seconds per level: no request is sent after it (those in flight finish).
    pub duration_s: Option<f64>,
    /// Prompt tokens per request.
    pub input_len: usize,
    /// Output tokens per request (`max_tokens`, with `ignore_eos`).
    pub output_len: usize,
    /// Seed of the prompt set.
    pub seed: u64,
    pub slo: Slo,
    /// Longest wait for headers and for each chunk (seconds).
    pub timeout_s: f64,
}

impl LoadOptions {
    /// Checks the options before anything is sent.
    pub fn validate(&self) -> Result<()> {
        let bad = |flag: &'static str, message: &str| Err(UserError::BadFlag { flag, message: message.into() }.into());
        if self.concurrency.is_empty() || self.concurrency.contains(&0) {
            return bad("--concurrency", "give one or more levels of at least 1, e.g. 1,2,4");
        }
        match (self.requests, self.duration_s) {
            (Some(0), _) => return bad("--requests", "must be at least 1"),
            (_, Some(d)) if !(d.is_finite() && d > 0.0) => {
                return bad("--duration", "must be a positive number of seconds")
            }
            (None, None) => return bad("--requests", "give --requests N or --duration SECONDS"),
            _ => {}
        }
        if self.input_len == 0 || self.output_len == 0 {
            return bad("--input-len", "--input-len and --output-len must be at least 1 token");
        }
        Ok(())
    }
}

/// A load test's record: what was asked, of whom, and each level's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    pub endpoint: Endpoint,
    pub options: LoadOptions,
    /// How prompt lengths were met: "exact token ids" or "approximate (words; see tokens_in)".
    pub prompts: String,
    pub started_at: String,
    pub host: crate::results::HostInfo,
    pub levels: Vec<LevelSummary>,
    /// Why the sweep stopped early, if it did.
    pub error: Option<String>,
}

/// Words the seeded prompts are drawn from.
const WORDS: &[&str] = &[
    "time", "river", "light", "number", "city", "garden", "market", "window", "music", "paper", "stone", "winter",
    "travel", "answer", "energy", "history", "machine", "forest", "signal", "letter", "island", "morning", "bridge",
    "question", "silver", "planet", "engine", "harbor", "animal", "language", "measure", "village", "storm", "doctor",
    "mountain", "season", "library", "ocean", "circle", "weather", "kitchen", "pattern", "memory", "school", "family",
    "science", "picture", "summer", "network", "theory", "value", "courage", "distance", "journey", "balance",
];

/// The prompt of request `i`: token ids cut to `input_len` when `encode`
/// works, else `input_len` words.
enum Prompt {
    Ids(Vec<u32>),
    Text(String),
}

fn prompt_set(engine: &OpenAiEngine, n: usize, input_len: usize, seed: u64) -> (Vec<Prompt>, String) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let texts: Vec<String> = (0..n)
        .map(|_| (0..input_len * 2).map(|_| *WORDS.choose(&mut rng).unwrap()).collect::<Vec<_>>().join(" "))
        .collect();
    let ids: Option<Vec<Vec<u32>>> = texts
        .iter()
        .map(|t| {
            engine.encode(t).ok().filter(|ids| ids.len() >= input_len).map(|mut ids| {
                ids.truncate(input_len);
                ids
            })
        })
        .collect();
    match ids {
        Some(ids) => (ids.into_iter().map(Prompt::Ids).collect(), "exact token ids".into()),
        None => (
            texts
                .into_iter()
                .map(|t| Prompt::Text(t.split(' ').take(input_len).collect::<Vec<_>>().join(" ")))
                .collect(),
            "approximate (words; no tokenizer: see tokens_in)".into(),
        ),
    }
}

/// Runs the sweep; `on_level` gets each level's summary and requests as it ends.
pub fn run_load(
    ep: &Endpoint,
    opts: &LoadOptions,
    mut on_level: impl FnMut(&LoadResult, &[RequestRecord]) -> Result<()>,
) -> Result<LoadResult> {
    opts.validate()?;
    let http = HttpOptions {
        concurrency: *opts.concurrency.iter().max().unwrap_or(&1),
        timeout_s: opts.timeout_s,
        max_retries: 0,
    };
    let engine = OpenAiEngine::connect(ep, http)?;
    // Every request of the sweep gets its own prompt (servers cache prefixes).
    let n_prompts = (opts.requests.unwrap_or(0) * opts.concurrency.len()).max(256);
    eprintln!("making {n_prompts} seeded prompts of {} tokens", opts.input_len);
    let (prompts, how) = prompt_set(&engine, n_prompts, opts.input_len, opts.seed);
    let prompts = Arc::new(prompts);
    let mut result = LoadResult {
        endpoint: ep.clone(),
        options: opts.clone(),
        prompts: how,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        host: crate::run::measure::host_info(),
        levels: Vec::new(),
        error: None,
    };
    let client = engine.client();
    let model_id = ep.model_id.clone();
    // One untimed request first (connections, server warm-up).
    engine.runtime().block_on(send_one(&client, &model_id, &prompts[0], opts.output_len, Instant::now()));
    let mut first_prompt = 0;
    for &c in &opts.concurrency {
        eprintln!(
            "concurrency {c}: {}",
            match (opts.requests, opts.duration_s) {
                (_, Some(d)) => format!("{d} s"),
                (Some(n), None) => format!("{n} requests"),
                _ => String::new(),
            }
        );
        let (records, duration_s, interrupted, sent) =
            engine.runtime().block_on(run_level(&client, &model_id, &prompts, first_prompt, c, opts));
        first_prompt += sent;
        let summary = metrics::summarize(c, &records, duration_s, &opts.slo);
        eprintln!(
            "  {:.2} req/s, {:.1} output tok/s, TTFT p50 {:.3} s p99 {:.3} s, TPOT p50 {:.4} s, {} error(s)",
            summary.request_per_s,
            summary.output_tok_per_s,
            summary.ttft.p50_s,
            summary.ttft.p99_s,
            summary.tpot.p50_s,
            summary.errors
        );
        result.levels.push(summary);
        if interrupted {
            result.error = Some("interrupted (Ctrl-C) during this level; its requests so far are kept".into());
        }
        on_level(&result, &records)?;
        if interrupted {
            return Err(UserError::Interrupted.into());
        }
    }
    Ok(result)
}

/// One request, timed; a failure becomes a record with its error.
async fn send_one(
    client: &Client,
    model_id: &str,
    prompt: &Prompt,
    output_len: usize,
    level_start: Instant,
) -> RequestRecord {
    let start_s = level_start.elapsed().as_secs_f64();
    let prompt_v = match prompt {
        Prompt::Ids(ids) => serde_json::json!(ids),
        Prompt::Text(t) => serde_json::json!(t),
    };
    let body = stream::fixed_length_body(model_id, prompt_v, output_len);
    // The load client allows no retries: only a request that never reached
    // the server is sent again (the client's own resend), so each record is one request.
    let sent = Instant::now();
    let outcome = client
        .with_retries("load request", |url| {
            let body = body.clone();
            async move { stream::stream(client, &url, "/completions", body).await }
        })
        .await;
    match outcome {
        Ok((s, _)) => RequestRecord {
            start_s,
            ttft_s: s.ttft_s(),
            e2e_s: s.e2e_s,
            itl_s: s.itl_s(),
            tokens_in: s.prompt_tokens.unwrap_or(match prompt {
                Prompt::Ids(ids) => ids.len(),
                Prompt::Text(t) => t.split(' ').count(),
            }),
            tokens_out: s.completion_tokens.unwrap_or(s.chunk_s.len()),
            error: None,
        },
        Err(e) => RequestRecord {
            start_s,
            ttft_s: None,
            e2e_s: sent.elapsed().as_secs_f64(),
            itl_s: Vec::new(),
            tokens_in: 0,
            tokens_out: 0,
            error: Some(format!("{e:#}")),
        },
    }
}

/// One level: `c` streams, each sending its next request when the last ends.
/// Returns the records (in send order), the level's wall time (its start →
/// every stream stopped: under `--duration` at least that long, since a stream
/// stops only at its first check past the deadline; the last completion alone
/// can fall a few microseconds short of it), whether Ctrl-C stopped it, and
/// how many prompts it used (from `first_prompt` on).
async fn run_level(
    client: &Arc<Client>,
    model_id: &str,
    prompts: &Arc<Vec<Prompt>>,
    first_prompt: usize,
    c: usize,
    opts: &LoadOptions,
) -> (Vec<RequestRecord>, f64, bool, usize) {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let records = Arc::new(Mutex::new(Vec::new()));
    let deadline = opts.duration_s.map(|d| start + Duration::from_secs_f64(d));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (client, prompts, next, records) = (client.clone(), prompts.clone(), next.clone(), records.clone());
        let (model_id, limit, out) = (model_id.to_string(), opts.requests, opts.output_len);
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if limit.is_some_and(|n| i >= n) || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let r = send_one(&client, &model_id, &prompts[(first_prompt + i) % prompts.len()], out, start).await;
                records.lock().unwrap().push(r);
            }
        });
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        tokio::select! {
            next = set.join_next() => if next.is_none() { break },
            _ = &mut ctrl_c => { set.abort_all(); interrupted = true; break }
        }
    }
    let mut records = std::mem::take(&mut *records.lock().unwrap());
    records.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let duration_s = start.elapsed().as_secs_f64();
    let sent = records.len();
    (records, duration_s, interrupted, sent)
}
