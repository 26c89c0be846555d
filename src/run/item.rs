//! One item's trip through an engine: Item → its Request(s) (the prompt in
//! the model's chat template when asked, the few-shot prefix marked for the
//! engine's cache) → the Response(s), merged in request order → Score →
//! ItemResult. Multiple choice asks for every choice's log-likelihood after
//! one context; partial scoring (a continuation shared by contexts that differ
//! per choice) asks once per context.

use crate::backend::{Engine, Output, Request, Response};
use crate::results::ItemResult;
use crate::score;
use crate::suite::{Item, ItemKind, Task};
use anyhow::{Context, Result};

/// What the model is asked for one item.
pub struct Plan {
    /// The exact text given to the model, as `samples.jsonl` shows it (for
    /// partial scoring each context, joined by `\n--- or ---\n`).
    pub prompt: String,
    /// The requests, in the order their answers are merged.
    pub requests: Vec<Request>,
}

/// The final prompt text: `text` in the model's chat template when `chat`,
/// and the few-shot prefix (`prefix_len` bytes of `text`) located in it
/// (after any chat-template header).
fn final_prompt(engine: &dyn Engine, prefix_len: usize, chat: bool, text: &str) -> Result<(String, Option<String>)> {
    let prompt = if chat { engine.apply_chat_template(text)? } else { text.to_string() };
    let shared_prefix =
        (prefix_len > 0).then(|| prompt.find(text).map(|at| prompt[..at + prefix_len].to_string())).flatten();
    Ok((prompt, shared_prefix))
}

/// Item → Request(s).
pub fn plan(engine: &dyn Engine, chat: bool, item: &Item) -> Result<Plan> {
    match &item.kind {
        ItemKind::MultipleChoice { continuation: None, .. } => {
            let (prompt, shared_prefix) = final_prompt(engine, item.prefix_len, chat, &item.prompt)?;
            let continuations = item.kind.scored_pairs().into_iter().map(|(_, c)| c).collect();
            let request = Request::LogLikelihood { context: prompt.clone(), continuations, shared_prefix };
            Ok(Plan { prompt, requests: vec![request] })
        }
        ItemKind::MultipleChoice { continuation: Some(_), .. } => {
            let mut requests = Vec::new();
            let mut shown = Vec::new();
            for (suffix, cont) in item.kind.scored_pairs() {
                let (context, shared_prefix) =
                    final_prompt(engine, item.prefix_len, chat, &format!("{}{suffix}", item.prompt))?;
                requests.push(Request::LogLikelihood {
                    context: context.clone(),
                    continuations: vec![cont],
                    shared_prefix,
                });
                shown.push(context);
            }
            Ok(Plan { prompt: shown.join("\n--- or ---\n"), requests })
        }
        ItemKind::Generate { until, max_tokens, .. } => {
            let (prompt, shared_prefix) = final_prompt(engine, item.prefix_len, chat, &item.prompt)?;
            let request = Request::Generate {
                prompt: prompt.clone(),
                until: until.clone(),
                max_tokens: *max_tokens,
                shared_prefix,
                chat,
            };
            Ok(Plan { prompt, requests: vec![request] })
        }
    }
}

/// The responses to one plan's requests, in request order, as one response:
/// log-likelihoods concatenated, token counts and wall times added.
pub fn merge(parts: Vec<Response>) -> Result<Response> {
    let mut parts = parts.into_iter();
    let mut into = parts.next().context("no choices")?;
    for r in parts {
        match (&mut into.output, r.output) {
            (Output::LogLikelihood(a), Output::LogLikelihood(b)) => a.extend(b),
            _ => anyhow::bail!("backend answered with the wrong kind of output"),
        }
        into.tokens_in += r.tokens_in;
        into.tokens_cached += r.tokens_cached;
        into.tokens_out += r.tokens_out;
        into.wall_s += r.wall_s;
        into.prefix_s += r.prefix_s;
    }
    Ok(into)
}

/// Response → Score → ItemResult.
pub fn result(task: &Task, item: &Item, prompt: String, response: Response) -> Result<ItemResult> {
    let Response { output, tokens_in, tokens_cached, tokens_out, wall_s, prefix_s, ttft_s, decode_tok_per_s, served } =
        response;
    let s = score::score_item(task, item, output)?;
    Ok(ItemResult {
        task: task.spec.task.clone(),
        id: item.id.clone(),
        group: item.group.clone(),
        prompt_hash: item.prompt_hash.clone(),
        prompt,
        choices: s.choices,
        correct: s.correct,
        gold: s.gold,
        prediction: s.prediction,
        generated: s.generated,
        metrics: s.metrics,
        loglik: s.loglik,
        tokens_in,
        tokens_cached,
        tokens_out,
        wall_s,
        prefix_s: (prefix_s > 0.0).then_some(prefix_s),
        ttft_s,
        decode_tok_per_s,
        served,
        error: None,
    })
}

/// The result of an item that failed: every metric 0, the error kept.
pub fn failed(task: &Task, item: &Item, error: String) -> ItemResult {
    let (choices, gold) = match &item.kind {
        ItemKind::MultipleChoice { choices, gold, .. } => (Some(choices.clone()), gold.to_string()),
        ItemKind::Generate { target, .. } => (None, target.clone()),
    };
    ItemResult {
        task: task.spec.task.clone(),
        id: item.id.clone(),
        group: item.group.clone(),
        prompt_hash: item.prompt_hash.clone(),
        prompt: item.prompt.clone(),
        choices,
        gold,
        prediction: String::new(),
        generated: None,
        correct: false,
        metrics: task.metrics.iter().map(|m| (m.clone(), 0.0)).collect(),
        loglik: None,
        tokens_in: 0,
        tokens_cached: 0,
        tokens_out: 0,
        wall_s: 0.0,
        prefix_s: None,
        ttft_s: None,
        decode_tok_per_s: None,
        served: None,
        error: Some(error),
    }
}
