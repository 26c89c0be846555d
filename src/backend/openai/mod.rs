//! The `openai` engine: a served model behind an OpenAI-compatible API
//! (llama.cpp's llama-server, vLLM, TGI, SGLang, Ollama, hosted providers),
//! weighed with the same suites, items and scoring as an in-process model.
//!
//! - Generation is streamed: `/v1/chat/completions` with the user message
//!   when the task asks for the chat template (the server applies the
//!   model's own), `/v1/completions` with the prompt as written otherwise.
//!   Per request: TTFT (send → first chunk with text), end-to-end latency,
//!   TPOT = (E2E − TTFT)/(output tokens − 1), the gaps between chunks (ITL)
//!   and output speed (output tokens − 1)/(last chunk − first chunk), as
//!   vLLM's `bench serve` defines them. Token counts come from the server's
//!   `usage`, else from the local tokenizer of the models file, else are
//!   estimated (one per chunk); each sample says which.
//! - Log-likelihoods come from `/v1/completions` with `echo` (see `echo`),
//!   after a self-check that refuses servers that get them wrong.
//! - Requests of a batch go out concurrently (`--concurrency`), each retried
//!   on transient faults (see `http`), to the base URL with the fewest in
//!   flight; Ctrl-C stops the batch, keeping every answer already scored.
//!
//! "Load" is connecting: listing the server's models, timed apart.

pub mod echo;
pub mod endpoint;
pub mod http;
pub mod stream;

use super::tokenizer::ModelTokenizer;
use super::{ChoiceLogLik, Engine, OnResponse, Output, Request, Response, ServedStats, Tagged};
use crate::error::UserError;
use anyhow::{anyhow, bail, Context, Result};
pub use endpoint::Endpoint;
use http::{Client, HttpOptions};
use std::sync::Arc;
use std::time::Instant;

/// A served model, ready to take requests.
pub struct OpenAiEngine {
    ep: Endpoint,
    client: Arc<Client>,
    rt: tokio::runtime::Runtime,
    tokenizer: Option<Arc<ModelTokenizer>>,
    load_s: f64,
    /// What each base URL's `/models` listed.
    served_models: Vec<String>,
    self_check: Option<echo::SelfCheck>,
    /// Speed-probe requests so far (each rotates its prompt differently).
    probe_calls: usize,
}

/// What every request task needs, shared.
struct Shared {
    client: Arc<Client>,
    model_id: String,
    tokenizer: Option<Arc<ModelTokenizer>>,
}

/// Aborts a spawned task when dropped (every way out of a batch).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `http://host/v1` → `http://host` (where llama.cpp and vLLM serve `/tokenize`).
fn server_root(base_url: &str) -> &str {
    base_url.strip_suffix("/v1").unwrap_or(base_url)
}

impl OpenAiEngine {
    /// Connects: checks every base URL answers `/models` (timed as the load).
    pub fn connect(ep: &Endpoint, opts: HttpOptions) -> Result<Self> {
        let start = Instant::now();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the HTTP runtime")?;
        let tokenizer = match &ep.tokenizer {
            Some(p) => Some(Arc::new(ModelTokenizer::from_path(p).map_err(|e| UserError::BadModel {
                path: p.clone(),
                reason: format!("the models file's tokenizer could not be read: {e:#}"),
            })?)),
            None => None,
        };
        let client = Client::new(ep.base_urls.clone(), ep.api_key()?, opts)?;
        let mut served_models = Vec::new();
        for url in &ep.base_urls {
            let listed: Result<serde_json::Value> = rt.block_on(async {
                let resp = http::send(&client, client.get(url, "/models")).await.map_err(|f| f.error)?;
                Ok(resp.json().await?)
            });
            let listed = listed.map_err(|e| UserError::Server {
                url: url.clone(),
                message: format!(
                    "{e:#}; start the server (or fix the URL: it is the OpenAI base URL, usually ending in /v1) and try again"
                ),
            })?;
            let ids: Vec<String> = listed
                .get("data")
                .and_then(|d| d.as_array())
                .map(|d| d.iter().filter_map(|m| m.get("id")?.as_str().map(String::from)).collect())
                .unwrap_or_default();
            if !ids.is_empty() && !ids.contains(&ep.model_id) {
                eprintln!(
                    "note: {url} lists the models {ids:?}, not '{}'; requests name '{}' (a server with one model, like llama.cpp's, answers to any name)",
                    ep.model_id, ep.model_id
                );
            }
            served_models.extend(ids);
        }
        Ok(Self {
            ep: ep.clone(),
            client,
            rt,
            tokenizer,
            load_s: start.elapsed().as_secs_f64(),
            served_models,
            self_check: None,
            probe_calls: 0,
        })
    }

    /// The HTTP client (for `load`, which drives requests itself).
    pub fn client(&self) -> Arc<Client> {
        self.client.clone()
    }

    /// The async runtime requests run on.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    fn shared(&self) -> Arc<Shared> {
        Arc::new(Shared {
            client: self.client.clone(),
            model_id: self.ep.model_id.clone(),
            tokenizer: self.tokenizer.clone(),
        })
    }
}

/// `text` cut at the first stop string (servers stop there too, but not all
/// take every stop string; the text scored is the same either way).
fn cut_at_stop(text: &str, until: &[String]) -> String {
    let end = until.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min().unwrap_or(text.len());
    text[..end].to_string()
}

/// One generation request: streamed, retried, timed, counted.
async fn generate(
    shared: Arc<Shared>,
    prompt: String,
    until: Vec<String>,
    max_tokens: usize,
    chat: bool,
) -> Result<Response> {
    let c = &shared.client;
    let mut body = if chat {
        serde_json::json!({ "model": shared.model_id, "messages": [{"role": "user", "content": prompt}] })
    } else {
        serde_json::json!({ "model": shared.model_id, "prompt": prompt })
    };
    body["max_tokens"] = max_tokens.into();
    body["temperature"] = 0.into();
    let stops: Vec<&String> = until.iter().filter(|s| !s.is_empty()).collect();
    if !stops.is_empty() {
        body["stop"] = serde_json::json!(stops);
    }
    let path = if chat { "/chat/completions" } else { "/completions" };
    let (s, retries) = c
        .with_retries("generation", |url| {
            let body = body.clone();
            async move { stream::stream(c, &url, path, body).await }
        })
        .await?;
    let text = cut_at_stop(&s.text, &until);
    let count = |t: &str| shared.tokenizer.as_ref().and_then(|tk| tk.encode(t).ok()).map(|ids| ids.len());
    let (tokens_in, tokens_out, token_counts) = match (s.prompt_tokens, s.completion_tokens) {
        (Some(i), Some(o)) => (i, o, "usage"),
        _ => match (count(&prompt), count(&s.text)) {
            (Some(i), Some(o)) => (i, o, "tokenizer"),
            // No usage, no tokenizer: one token per chunk, ~4 characters per prompt token.
            _ => (prompt.chars().count().div_ceil(4), s.chunk_s.len(), "estimate"),
        },
    };
    let ttft_s = s.ttft_s();
    let tpot_s = ttft_s.and_then(|first| stream::tpot_s(s.e2e_s, first, tokens_out));
    let decode_tok_per_s = match (ttft_s, s.chunk_s.last()) {
        (Some(first), Some(&last)) if tokens_out > 1 && last > first => Some((tokens_out - 1) as f64 / (last - first)),
        _ => None,
    };
    let itl_s = s.itl_s();
    Ok(Response {
        output: Output::Text(text),
        tokens_in,
        tokens_cached: s.cached_tokens.unwrap_or(0).min(tokens_in),
        tokens_out,
        wall_s: s.e2e_s,
        prefix_s: 0.0,
        ttft_s,
        decode_tok_per_s,
        served: Some(ServedStats {
            tpot_s,
            itl_s,
            chunks: s.chunk_s.len(),
            token_counts: token_counts.into(),
            retries,
            finish_reason: s.finish_reason,
            server_timings: s.server_timings,
        }),
    })
}

/// One log-likelihood request: each continuation echoed after the context.
async fn loglikelihood(shared: Arc<Shared>, context: String, continuations: Vec<String>) -> Result<Response> {
    let (c, model_id) = (&shared.client, &shared.model_id);
    let start = Instant::now();
    let mut out = Vec::with_capacity(continuations.len());
    let (mut tokens_in, mut total_retries) = (0, 0);
    let context_chars = context.chars().count();
    for cont in continuations {
        let prompt = format!("{context}{cont}");
        let (e, retries) = c
            .with_retries("log-likelihood", |url| {
                let prompt = prompt.clone();
                async move { echo::echo(c, &url, model_id, &prompt).await }
            })
            .await?;
        total_retries += retries;
        let span = e
            .continuation_span(&prompt, context_chars)
            .ok_or_else(|| anyhow!("the echoed tokens do not cover the continuation {cont:?}"))?;
        let mut logprob = 0.0;
        for &i in &span {
            logprob +=
                e.logprobs[i].ok_or_else(|| anyhow!("the server returned a null log-prob inside the continuation"))?;
        }
        let is_greedy = span.iter().all(|&i| e.top[i].as_ref().is_some_and(|(t, _)| *t == e.tokens[i]));
        tokens_in += e.prompt_tokens.unwrap_or(e.tokens.len().saturating_sub(1));
        out.push(ChoiceLogLik { logprob, n_tokens: span.len(), is_greedy });
    }
    Ok(Response {
        output: Output::LogLikelihood(out),
        tokens_in,
        tokens_cached: 0,
        tokens_out: 0,
        wall_s: start.elapsed().as_secs_f64(),
        prefix_s: 0.0,
        ttft_s: None,
        decode_tok_per_s: None,
        served: Some(ServedStats { token_counts: "echo".into(), retries: total_retries, ..Default::default() }),
    })
}

impl Engine for OpenAiEngine {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn device(&self) -> String {
        format!("remote: {}", self.ep.base_urls.join(", "))
    }

    fn load_s(&self) -> f64 {
        self.load_s
    }

    fn load_report(&self) -> serde_json::Value {
        serde_json::json!({
            "family": "served",
            "engine": "openai",
            "base_urls": self.ep.base_urls,
            "model_id": self.ep.model_id,
            "served_models": self.served_models,
            "concurrency": self.client.opts.concurrency,
            "request_timeout_s": self.client.opts.timeout_s,
            "max_retries": self.client.opts.max_retries,
            "local_tokenizer": self.ep.tokenizer,
            "echo_self_check": self.self_check,
            "timed_as_load": "listing the server's models (GET /models) on every base URL",
        })
    }

    /// The server applies the model's own template to chat requests.
    fn has_chat_template(&self) -> bool {
        true
    }

    /// The user message as sent: the server wraps it in the model's template.
    fn apply_chat_template(&self, user: &str) -> Result<String> {
        Ok(user.to_string())
    }

    fn chat_loglikelihood(&self) -> bool {
        false
    }

    fn check_loglikelihood(&mut self) -> Result<()> {
        if self.self_check.is_some() {
            return Ok(());
        }
        let url = self.ep.base_urls[0].clone();
        let (c, model) = (self.client.clone(), self.ep.model_id.clone());
        let refuse = |defect: String| -> anyhow::Error {
            UserError::Server {
                url: url.clone(),
                message: format!(
                    "its prompt log-probs cannot be trusted ({defect}), so log-likelihood (multiple-choice) tasks are refused rather than scored wrong; \
                     run the lettered suite instead (--suite chat), which needs only generation, or serve the model with vLLM or SGLang"
                ),
            }
            .into()
        };
        let defect = |f: http::Failure| format!("{:#}", f.error);
        let checked = self.rt.block_on(async {
            let (token, lp) = echo::next_token(&c, &url, &model, echo::CHECK_PROMPT).await.map_err(defect)?;
            let full = format!("{}{token}", echo::CHECK_PROMPT);
            let e = echo::echo(&c, &url, &model, &full).await.map_err(defect)?;
            echo::verdict((&token, lp), &e, echo::CHECK_PROMPT)
        });
        self.self_check = Some(checked.map_err(refuse)?);
        Ok(())
    }

    /// Requests are sent in batch order, at most `concurrency` in flight (a
    /// dispatcher takes a permit before sending each, so at concurrency 1 the
    /// server sees them in item order); answers are handed on as they come.
    fn run_batch(&mut self, batch: Vec<Tagged>, on_response: &mut OnResponse) -> Result<()> {
        let shared = self.shared();
        let permits = Arc::new(tokio::sync::Semaphore::new(self.client.opts.concurrency.max(1)));
        self.rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<Response>)>();
            // Dropping the dispatcher (Ctrl-C, a dead server) drops its JoinSet, which aborts every request.
            let dispatcher = tokio::spawn(async move {
                let mut set = tokio::task::JoinSet::new();
                for Tagged { tag, request } in batch {
                    let Ok(permit) = permits.clone().acquire_owned().await else { break };
                    let (shared, tx) = (shared.clone(), tx.clone());
                    set.spawn(async move {
                        let r = match request {
                            Request::Generate { prompt, until, max_tokens, chat, .. } => {
                                generate(shared, prompt, until, max_tokens, chat).await
                            }
                            Request::LogLikelihood { context, continuations, .. } => {
                                loglikelihood(shared, context, continuations).await
                            }
                        };
                        drop(permit);
                        let _ = tx.send((tag, r));
                    });
                }
                while let Some(done) = set.join_next().await {
                    if let Err(e) = done {
                        let _ = tx.send((usize::MAX, Err(anyhow!("a request task failed: {e}"))));
                    }
                }
            });
            let _abort_on_exit = AbortOnDrop(dispatcher);
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    next = rx.recv() => match next {
                        None => return Ok(()),
                        Some((usize::MAX, r)) => return r.map(|_| ()),
                        Some((_, Err(e))) if e.downcast_ref::<http::Unreachable>().is_some() => return Err(e),
                        Some((tag, r)) => on_response(tag, r)?,
                    },
                    _ = &mut ctrl_c => return Err(UserError::Interrupted.into()),
                }
            }
        })
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if let Some(t) = &self.tokenizer {
            return t.encode(text);
        }
        let url = server_root(&self.ep.base_urls[0]).to_string();
        let body =
            serde_json::json!({ "content": text, "prompt": text, "model": self.ep.model_id, "add_special": false });
        let c = self.client.clone();
        let v: serde_json::Value = self
            .rt
            .block_on(async {
                let resp = http::send(&c, c.post(&url, "/tokenize", &body)).await.map_err(|f| f.error)?;
                anyhow::Ok(resp.json::<serde_json::Value>().await?)
            })
            .map_err(|e| UserError::Server {
                url: url.clone(),
                message: format!(
                    "cannot count tokens ({e:#}): the server has no /tokenize; give `tokenizer` (a GGUF or tokenizer.json) in the models file, or run with --probe-reps 0"
                ),
            })?;
        let ids = v.get("tokens").and_then(|t| t.as_array()).context("/tokenize answered without `tokens`")?;
        Ok(ids.iter().filter_map(|x| x.as_u64().or_else(|| x.get("id")?.as_u64())).map(|x| x as u32).collect())
    }

    /// The speed probe through the server: the prompt as token ids, exactly
    /// `n_out` tokens (`ignore_eos`), streamed: (TTFT, last chunk − first chunk).
    /// Servers cache prompt prefixes (llama.cpp's slots, vLLM's prefix
    /// cache), so each call rotates the prompt to start at another token and
    /// asks llama.cpp not to cache: every repetition evaluates its whole prompt.
    fn timed_generate(&mut self, prompt: &[u32], n_out: usize) -> Result<(f64, f64)> {
        let c = self.client.clone();
        self.probe_calls += 1;
        let mut prompt = prompt.to_vec();
        let shift = (self.probe_calls * 7) % prompt.len().max(1);
        prompt.rotate_left(shift);
        let body = stream::fixed_length_body(&self.ep.model_id, prompt.into(), n_out);
        let (s, _) = self.rt.block_on(c.with_retries("speed probe", |url| {
            let (c, body) = (c.clone(), body.clone());
            async move { stream::stream(&c, &url, "/completions", body).await }
        }))?;
        let generated = s.completion_tokens.unwrap_or(s.chunk_s.len());
        if generated != n_out || s.chunk_s.len() < 2 {
            bail!(
                "the speed probe asked for {n_out} tokens (ignore_eos) and got {generated} in {} chunks; the server does not honour ignore_eos — run with --probe-reps 0",
                s.chunk_s.len()
            );
        }
        Ok((s.chunk_s[0], s.chunk_s[s.chunk_s.len() - 1] - s.chunk_s[0]))
    }
}
