//! Log-likelihoods from a served model: `/v1/completions` with `echo: true`
//! and `logprobs`, as lm-evaluation-harness's `local-completions` asks (vLLM
//! and SGLang answer it). The prompt is context + continuation as text; the
//! continuation's tokens are those that reach past the context's end (a
//! token straddling the boundary counts with the continuation), and the
//! echoed log-probs of those tokens are summed; `is_greedy` holds when each
//! was its position's top token.
//!
//! Servers get this wrong, so before any item is scored [`self_check`] asks
//! twice: the next token after a fixed prompt with its log-prob (no echo),
//! then the prompt with that token appended, echoed. The echoed log-prob of
//! the appended token must equal the generated one. A server that refuses
//! echo (llama.cpp's llama-server), returns no prompt log-probs, or returns
//! them shifted by a position (llama-cpp-python's server) is refused with a
//! message that names the defect and the way out.

use super::http::{send, Client, Failure};
use anyhow::anyhow;

/// The self-check's prompt (ends before a word, so the next token starts one).
pub const CHECK_PROMPT: &str = "The capital of France is";
/// Largest difference (nats) between the echoed and generated log-prob of the same token.
pub const CHECK_TOLERANCE_NATS: f64 = 0.1;

/// A prompt's tokens as the server echoed them.
#[derive(Debug, Clone, Default)]
pub struct Echoed {
    pub tokens: Vec<String>,
    /// Natural-log probability of each token given those before it (the first is often null).
    pub logprobs: Vec<Option<f64>>,
    /// The top token at each position and its log-prob, when the server says.
    pub top: Vec<Option<(String, f64)>>,
    /// Character offset of each token in the echoed text.
    pub offsets: Vec<usize>,
    pub prompt_tokens: Option<usize>,
}

/// Reads an OpenAI legacy `logprobs` object (`tokens`, `token_logprobs`,
/// `top_logprobs`, `text_offset`) or a chat-style one (`content: [{token, logprob, top_logprobs}]`).
pub fn parse_logprobs(lp: &serde_json::Value) -> Option<Echoed> {
    let mut e = Echoed::default();
    if let Some(tokens) = lp.get("tokens").and_then(|t| t.as_array()) {
        e.tokens = tokens.iter().map(|t| t.as_str().unwrap_or_default().to_string()).collect();
        let lps = lp.get("token_logprobs").and_then(|t| t.as_array())?;
        e.logprobs = lps.iter().map(|x| x.as_f64()).collect();
        e.top = match lp.get("top_logprobs").and_then(|t| t.as_array()) {
            Some(tops) => tops
                .iter()
                .map(|t| {
                    t.as_object().and_then(|m| {
                        m.iter()
                            .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
                            .max_by(|a, b| a.1.total_cmp(&b.1))
                            .map(|(k, v)| (k.clone(), v))
                    })
                })
                .collect(),
            None => vec![None; e.tokens.len()],
        };
        e.offsets = match lp.get("text_offset").and_then(|t| t.as_array()) {
            Some(o) => o.iter().map(|x| x.as_u64().unwrap_or(0) as usize).collect(),
            None => Vec::new(),
        };
    } else if let Some(content) = lp.get("content").and_then(|c| c.as_array()) {
        for c in content {
            e.tokens.push(c.get("token").and_then(|t| t.as_str()).unwrap_or_default().to_string());
            e.logprobs.push(c.get("logprob").and_then(|x| x.as_f64()));
            e.top.push(c.get("top_logprobs").and_then(|t| t.as_array()).and_then(|t| {
                t.iter()
                    .filter_map(|x| Some((x.get("token")?.as_str()?.to_string(), x.get("logprob")?.as_f64()?)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
            }));
        }
    } else {
        return None;
    }
    if e.logprobs.len() != e.tokens.len() {
        return None;
    }
    Some(e)
}

impl Echoed {
    /// Character offsets of the tokens in `text`: from the token texts laid
    /// end to end when they spell `text`, else the server's `text_offset`.
    fn char_offsets(&self, text: &str) -> Option<Vec<usize>> {
        let joined: String = self.tokens.concat();
        if joined.starts_with(text) || text.starts_with(&joined) {
            let mut at = 0;
            return Some(
                self.tokens
                    .iter()
                    .map(|t| {
                        let o = at;
                        at += t.chars().count();
                        o
                    })
                    .collect(),
            );
        }
        (self.offsets.len() == self.tokens.len()).then(|| self.offsets.clone())
    }

    /// Indices of the prompt's tokens that cover any of `prompt[context_chars..]`.
    pub fn continuation_span(&self, prompt: &str, context_chars: usize) -> Option<Vec<usize>> {
        let offsets = self.char_offsets(prompt)?;
        let prompt_chars = prompt.chars().count();
        let n_prompt = self.prompt_tokens.unwrap_or(usize::MAX).min(self.tokens.len());
        let idx: Vec<usize> = (0..n_prompt)
            .filter(|&i| offsets[i] < prompt_chars && offsets[i] + self.tokens[i].chars().count() > context_chars)
            .collect();
        (!idx.is_empty()).then_some(idx)
    }
}

/// The echoed prompt (`max_tokens: 1`, the one generated token ignored).
pub async fn echo(client: &Client, base_url: &str, model_id: &str, prompt: &str) -> Result<Echoed, Failure> {
    let body = serde_json::json!({
        "model": model_id, "prompt": prompt, "max_tokens": 1, "echo": true, "logprobs": 1, "temperature": 0,
    });
    let v: serde_json::Value = json_of(send(client, client.post(base_url, "/completions", &body)).await?).await?;
    let text = v.pointer("/choices/0/text").and_then(|t| t.as_str()).unwrap_or_default();
    if !text.starts_with(prompt) {
        return Err(Failure::fatal(anyhow!(
            "it ignores `echo`: the answer's text does not begin with the prompt, and its log-probs cover only the generated token"
        )));
    }
    let mut e = v
        .pointer("/choices/0/logprobs")
        .and_then(parse_logprobs)
        .ok_or_else(|| Failure::fatal(anyhow!("the answer to an echo request carries no prompt log-probs")))?;
    e.prompt_tokens = v.pointer("/usage/prompt_tokens").and_then(|x| x.as_u64()).map(|x| x as usize);
    Ok(e)
}

/// The next token after `prompt` and its log-prob (greedy, no echo).
pub async fn next_token(
    client: &Client,
    base_url: &str,
    model_id: &str,
    prompt: &str,
) -> Result<(String, f64), Failure> {
    let body = serde_json::json!({
        "model": model_id, "prompt": prompt, "max_tokens": 1, "logprobs": 1, "temperature": 0,
    });
    let v = json_of(send(client, client.post(base_url, "/completions", &body)).await?).await?;
    let e = v
        .pointer("/choices/0/logprobs")
        .and_then(parse_logprobs)
        .filter(|e| !e.tokens.is_empty())
        .ok_or_else(|| Failure::fatal(anyhow!("the server returns no log-probs for generated tokens")))?;
    let lp = e.logprobs[0].ok_or_else(|| Failure::fatal(anyhow!("the generated token's log-prob is null")))?;
    Ok((e.tokens[0].clone(), lp))
}

async fn json_of(resp: reqwest::Response) -> Result<serde_json::Value, Failure> {
    let text = resp.text().await.map_err(|e| Failure::transient(anyhow!("{}", super::http::describe_reqwest(&e))))?;
    serde_json::from_str(&text).map_err(|_| {
        Failure::transient(anyhow!("the answer is not JSON: {}", text.chars().take(120).collect::<String>()))
    })
}

/// What the self-check found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SelfCheck {
    pub prompt: String,
    pub next_token: String,
    /// Log-prob of the next token when generated (nats).
    pub generated_logprob: f64,
    /// Its log-prob when echoed as part of the prompt (nats).
    pub echoed_logprob: f64,
}

/// Why a server's prompt log-probs cannot be used.
pub fn verdict(generated: (&str, f64), echoed: &Echoed, prompt: &str) -> Result<SelfCheck, String> {
    let (token, lp) = generated;
    let full = format!("{prompt}{token}");
    let Some(span) = echoed.continuation_span(&full, prompt.chars().count()) else {
        return Err(format!("the echoed tokens do not line up with the prompt {full:?}"));
    };
    let at = span[0];
    let Some(echoed_lp) = echoed.logprobs[at] else {
        return Err("the echoed prompt log-probs are null".into());
    };
    if span.len() != 1 || echoed.tokens[at] != token {
        return Err(format!(
            "the appended token {token:?} was echoed as {:?}; the server tokenizes the echo differently",
            span.iter().map(|&i| echoed.tokens[i].as_str()).collect::<Vec<_>>()
        ));
    }
    if (echoed_lp - lp).abs() > CHECK_TOLERANCE_NATS {
        let close = |x: f64| (x - lp).abs() <= CHECK_TOLERANCE_NATS;
        // Shifted: the generated token's log-prob sits one position early
        // (the previous position's top token) or in a neighbour's slot.
        let shifted =
            at.checked_sub(1).and_then(|i| echoed.top[i].as_ref()).is_some_and(|(t, x)| t == token && close(*x))
                || [at.wrapping_sub(1), at + 1]
                    .iter()
                    .filter_map(|&i| echoed.logprobs.get(i).copied().flatten())
                    .any(close);
        let why = if shifted {
            "the echoed log-probs are shifted by one position (each token gets its neighbour's log-prob; llama-cpp-python's server does this)"
        } else {
            "the echoed log-probs do not match the generated ones"
        };
        return Err(format!(
            "{why}: token {token:?} after {prompt:?} has log-prob {lp:.4} when generated but {echoed_lp:.4} when echoed"
        ));
    }
    Ok(SelfCheck { prompt: prompt.into(), next_token: token.into(), generated_logprob: lp, echoed_logprob: echoed_lp })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echoed(tokens: &[&str], lps: &[f64]) -> Echoed {
        Echoed {
            tokens: tokens.iter().map(|s| s.to_string()).collect(),
            logprobs: std::iter::once(None).chain(lps.iter().map(|&x| Some(x))).collect(),
            top: vec![None; tokens.len()],
            offsets: vec![],
            prompt_tokens: Some(tokens.len() - 1),
        }
    }

    #[test]
    fn continuation_tokens_are_those_past_the_context() {
        // "The cat" + " sat" → tokens The, " cat", " sat", then the generated " down".
        let e = echoed(&["The", " cat", " sat", " down"], &[-1.0, -2.0, -3.0]);
        assert_eq!(e.continuation_span("The cat sat", 7), Some(vec![2]));
        assert_eq!(e.continuation_span("The cat sat", 3), Some(vec![1, 2]));
        // A token straddling the boundary counts with the continuation.
        assert_eq!(e.continuation_span("The cat sat", 5), Some(vec![1, 2]));
    }

    #[test]
    fn self_check_accepts_a_consistent_echo_and_names_a_shift() {
        let prompt = "The capital of France is";
        let ok =
            echoed(&["The", " capital", " of", " France", " is", " Paris", ","], &[-5.0, -1.0, -3.0, -0.5, -1.2, -0.9]);
        assert!(verdict((" Paris", -1.25), &ok, prompt).is_ok());
        // Shifted: " Paris" carries " is"'s log-prob; its own sits one position on.
        let shifted =
            echoed(&["The", " capital", " of", " France", " is", " Paris", ","], &[-1.0, -3.0, -0.5, -4.0, -0.3, -1.2]);
        let err = verdict((" Paris", -1.2), &shifted, prompt).unwrap_err();
        assert!(err.contains("shifted by one position"), "{err}");
        let wrong =
            echoed(&["The", " capital", " of", " France", " is", " Paris", ","], &[-5.0, -1.0, -3.0, -0.5, -3.0, -7.0]);
        let err = verdict((" Paris", -1.2), &wrong, prompt).unwrap_err();
        assert!(err.contains("do not match"), "{err}");
    }

    /// llama-cpp-python 0.3.36's server, as measured: each echoed position
    /// carries the distribution of the next token.
    #[test]
    fn llama_cpp_python_echo_is_named_shifted() {
        let v: serde_json::Value = serde_json::from_str(r#"{"text_offset":[0,3,11,14,21,24],"token_logprobs":[null,-9.599955558776855,-10.462464332580566,-11.225584030151367,-11.794837951660156,-8.452631950378418],"tokens":["The"," capital"," of"," France"," is"," Paris"],"top_logprobs":[null,{" of":-0.4120810329914093," capital":-9.599955558776855},{" the":-1.987992525100708," of":-10.462464332580566},{" is":-0.43200764060020447," France":-11.225584030151367},{" Paris":-0.264419287443161," is":-11.794837951660156},{".":-0.3762276768684387," Paris":-8.452631950378418}]}"#).unwrap();
        let mut e = parse_logprobs(&v).unwrap();
        e.prompt_tokens = Some(6);
        let err = verdict((" Paris", -0.264419287443161), &e, CHECK_PROMPT).unwrap_err();
        assert!(err.contains("shifted by one position"), "{err}");
    }

    #[test]
    fn chat_style_logprobs_parse() {
        let v = serde_json::json!({"content": [{"token": " Paris", "logprob": -0.5, "top_logprobs": [{"token": " Paris", "logprob": -0.5}]}]});
        let e = parse_logprobs(&v).unwrap();
        assert_eq!(e.tokens, vec![" Paris"]);
        assert_eq!(e.top, vec![Some((" Paris".to_string(), -0.5))]);
    }
}
