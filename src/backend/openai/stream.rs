//! One streamed generation (SSE) from `/v1/chat/completions` or
//! `/v1/completions`, timed on the client: the clock starts just before the
//! request is sent; each chunk that carries non-empty text is timestamped
//! (role-only, empty and usage-only chunks are not: they are not tokens);
//! the stream ends at `data: [DONE]`, or at the end of the body once a choice
//! has said why it finished. A body that ends before either, a chunk that is
//! not JSON, an error object in the stream, or a wait for the next chunk
//! longer than the request timeout is a failed attempt (retried by the
//! caller). Usage (`stream_options.include_usage`) and llama.cpp's
//! `timings` are kept when the server sends them.

use super::http::{send, Client, Failure};
use anyhow::anyhow;
use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// llama.cpp's own timings of a request (its last chunk's `timings`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerTimings {
    /// Prompt tokens the server evaluated (cached ones excluded).
    pub prompt_n: Option<f64>,
    /// Server-side prompt evaluation, milliseconds.
    pub prompt_ms: Option<f64>,
    /// Tokens the server generated.
    pub predicted_n: Option<f64>,
    /// Server-side generation, milliseconds.
    pub predicted_ms: Option<f64>,
}

/// What came back from one streamed request.
#[derive(Debug, Clone, Default)]
pub struct Streamed {
    pub text: String,
    /// Seconds from send to each chunk with text, in arrival order.
    pub chunk_s: Vec<f64>,
    /// Seconds from send to the end of the stream.
    pub e2e_s: f64,
    /// `usage.prompt_tokens`, when sent.
    pub prompt_tokens: Option<usize>,
    /// `usage.prompt_tokens_details.cached_tokens`: prompt tokens the server took from its cache.
    pub cached_tokens: Option<usize>,
    /// `usage.completion_tokens`, when sent.
    pub completion_tokens: Option<usize>,
    pub finish_reason: Option<String>,
    pub server_timings: Option<ServerTimings>,
}

impl Streamed {
    /// Send → first chunk with text (seconds); None when no text came.
    pub fn ttft_s(&self) -> Option<f64> {
        self.chunk_s.first().copied()
    }

    /// The gaps between consecutive chunks with text (seconds).
    pub fn itl_s(&self) -> Vec<f64> {
        self.chunk_s.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

/// Time per output token after the first: (E2E − TTFT)/(tokens_out − 1),
/// seconds (vLLM's TPOT); None for fewer than two output tokens.
pub fn tpot_s(e2e_s: f64, ttft_s: f64, tokens_out: usize) -> Option<f64> {
    (tokens_out > 1).then(|| (e2e_s - ttft_s) / (tokens_out - 1) as f64)
}

/// A `/v1/completions` body asking for exactly `n_out` tokens after `prompt`
/// (text or token ids): greedy, `ignore_eos`, and `cache_prompt: false` so
/// llama.cpp evaluates the whole prompt even when it saw it before. The
/// speed probe and `load` send it.
pub fn fixed_length_body(model_id: &str, prompt: serde_json::Value, n_out: usize) -> serde_json::Value {
    serde_json::json!({
        "model": model_id, "prompt": prompt, "max_tokens": n_out, "temperature": 0, "ignore_eos": true,
        "cache_prompt": false,
    })
}

/// The text a chunk carries: `delta.content` (chat) or `text` (completions).
fn chunk_text(v: &serde_json::Value) -> Option<&str> {
    let choice = v.get("choices")?.get(0)?;
    choice
        .get("delta")
        .and_then(|d| d.get("content"))
        .and_then(|c| c.as_str())
        .or_else(|| choice.get("text").and_then(|t| t.as_str()))
}

fn excerpt(s: &str) -> String {
    let t: String = s.chars().take(120).collect();
    if t.len() < s.len() {
        format!("{t}…")
    } else {
        t
    }
}

/// Sends `body` (with `stream: true` set here) to `base_url` + `path` and
/// reads the whole stream.
pub async fn stream(
    client: &Client,
    base_url: &str,
    path: &str,
    mut body: serde_json::Value,
) -> Result<Streamed, Failure> {
    body["stream"] = true.into();
    body["stream_options"] = serde_json::json!({ "include_usage": true });
    let start = Instant::now();
    let resp = send(client, client.post(base_url, path, &body)).await?;
    let mut events = resp.bytes_stream().eventsource();
    let mut out = Streamed::default();
    let mut done = false;
    loop {
        let next = match tokio::time::timeout(client.timeout(), events.next()).await {
            Err(_) => {
                return Err(Failure::transient(anyhow!(
                    "no chunk for {:.1} s in the middle of the stream (--request-timeout)",
                    client.opts.timeout_s
                )))
            }
            Ok(n) => n,
        };
        let Some(event) = next else { break };
        let event = event.map_err(|e| Failure::transient(anyhow!("the stream broke off: {e}")))?;
        let data = event.data.trim();
        if data.is_empty() {
            continue;
        }
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: serde_json::Value = serde_json::from_str(data).map_err(|_| {
            Failure::transient(anyhow!("the stream sent something that is not JSON: {}", excerpt(data)))
        })?;
        if let Some(err) = v.get("error") {
            return Err(Failure::transient(anyhow!(
                "the server reported an error mid-stream: {}",
                excerpt(&err.to_string())
            )));
        }
        let t = start.elapsed().as_secs_f64();
        if let Some(text) = chunk_text(&v).filter(|s| !s.is_empty()) {
            out.text.push_str(text);
            out.chunk_s.push(t);
        }
        if let Some(reason) = v.pointer("/choices/0/finish_reason").and_then(|r| r.as_str()) {
            out.finish_reason = Some(reason.to_string());
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            out.prompt_tokens = u.get("prompt_tokens").and_then(|x| x.as_u64()).map(|x| x as usize);
            out.completion_tokens = u.get("completion_tokens").and_then(|x| x.as_u64()).map(|x| x as usize);
            out.cached_tokens =
                u.pointer("/prompt_tokens_details/cached_tokens").and_then(|x| x.as_u64()).map(|x| x as usize);
        }
        if let Some(timings) = v.get("timings") {
            out.server_timings = serde_json::from_value(timings.clone()).ok();
        }
    }
    if !done && out.finish_reason.is_none() {
        return Err(Failure::transient(anyhow!(
            "the stream ended before the answer finished (no finish_reason, no [DONE]) after {} chunk(s)",
            out.chunk_s.len()
        )));
    }
    out.e2e_s = start.elapsed().as_secs_f64();
    Ok(out)
}
