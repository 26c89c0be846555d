//! `openweigh run`: the orchestration of one (model, suite) run. Validates
//! everything and renders every item before loading weights, loads the model
//! (timed apart), runs the speed probe, then each task's items with a progress
//! bar, appending each item's result as it finishes. A failed item is recorded
//! and the run goes on; `run.json` and `summary.csv` are rewritten after every
//! task so a crash loses nothing measured.

use crate::assets;
use crate::backend::candle::{device, CandleBackend};
use crate::backend::transformer::WeightFormat;
use crate::backend::{Backend, Output, Request, Response};
use crate::error::UserError;
use crate::measure;
use crate::results::*;
use crate::score;
use crate::stats;
use crate::suite::{Item, ItemKind, Suite, Task};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub model: String,
    pub suite: String,
    pub limit: Option<usize>,
    pub threads: usize,
    pub out: PathBuf,
    pub weights: WeightFormat,
    pub cuda: bool,
    pub probe_repetitions: usize,
}

/// What a finished run left behind.
pub struct RunOutcome {
    pub dir: PathBuf,
    pub meta: RunMeta,
    pub summary: Vec<TaskSummary>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn run(opts: &RunOptions) -> Result<RunOutcome> {
    if opts.threads == 0 {
        return Err(UserError::BadFlag { flag: "--threads", message: "must be at least 1".into() }.into());
    }
    if opts.limit == Some(0) {
        return Err(UserError::BadFlag { flag: "--limit", message: "must be at least 1 item per task".into() }.into());
    }
    // 1. Everything the user wrote is checked, and every prompt rendered, before any weights load.
    let suite = Suite::load(&opts.suite, opts.limit)?;
    let model = assets::resolve_model(&opts.model)?;
    let dev = device(opts.cuda)?;
    let peak_rss_scope = if measure::reset_peak_rss() { "model load onward" } else { "whole process" };

    // 2. Load, timed apart from every latency.
    eprintln!("loading {} ({})", model.name, model.path.display());
    let candle = CandleBackend::load(&model.path, &dev, opts.weights)?;
    let load_s = candle.load_s;
    let load_report = serde_json::to_value(candle.load_report())?;
    let mut backend = Backend::Candle(Box::new(candle));
    // Per task: whether prompts go through the model's chat template. A base
    // model has none; its tasks then run on the prompts as written, said here
    // and recorded in run.json (`chat_template_applied`).
    let mut chat = Vec::with_capacity(suite.tasks.len());
    for task in &suite.tasks {
        let apply = task.spec.chat_template && backend.has_chat_template();
        if task.spec.chat_template && !apply {
            eprintln!(
                "note: task '{}' asks for a chat template but {} has none (a base model); its prompts run as written",
                task.spec.task, model.name
            );
        }
        if apply {
            backend.apply_chat_template("probe").map_err(|e| UserError::Suite {
                path: suite.path.clone(),
                message: format!("task '{}': {e:#}", task.spec.task),
            })?;
        }
        chat.push(apply);
    }
    eprintln!("loaded in {load_s:.2} s");

    let (run_id, dir) = create_output_dir(&opts.out, &format!("{{time}}-{}-{}", model.name, suite.name))?;
    let mut meta = RunMeta {
        run_id,
        status: "running".into(),
        openweigh_version: env!("CARGO_PKG_VERSION").into(),
        openweigh_commit: env!("OPENWEIGH_GIT_COMMIT").into(),
        started_at: now(),
        finished_at: None,
        model: ModelInfo {
            name: model.name.clone(),
            file_size_byte: model.size_byte,
            path: model.path.clone(),
            sha256: model.sha256.clone(),
            architecture: load_report.get("family").and_then(|f| f.as_str()).unwrap_or_default().into(),
            load: load_report,
            load_s,
        },
        suite: SuiteInfo {
            name: suite.name.clone(),
            path: suite.path.clone(),
            sha256: suite.sha256.clone(),
            tasks: suite.tasks.iter().zip(&chat).map(|(t, c)| task_info(t, *c)).collect(),
        },
        backend: "candle".into(),
        device: if opts.cuda { "cuda:0".into() } else { "cpu".into() },
        threads: opts.threads,
        limit: opts.limit,
        batch_size: 1,
        speed_probe: None,
        peak_rss_byte: measure::peak_rss_byte(),
        peak_rss_scope: peak_rss_scope.into(),
        eval_s: 0.0,
        n_items: suite.tasks.iter().map(|t| t.items.len()).sum(),
        n_failed: 0,
        host: measure::host_info(),
    };
    let run_json = dir.join("run.json");
    write_json_atomic(&run_json, &meta)?;

    // 3. Speed probe.
    if opts.probe_repetitions > 0 {
        eprintln!(
            "speed probe: {} prompt tokens, {} generated, 1 warm-up + {} timed",
            measure::PROBE_PROMPT_TOKENS,
            measure::PROBE_OUTPUT_TOKENS,
            opts.probe_repetitions
        );
        let probe = measure::speed_probe(&mut backend, opts.probe_repetitions)?;
        eprintln!(
            "  prefill {:.1} ± {:.1} tok/s, decode {:.1} ± {:.1} tok/s, TTFT {:.3} s",
            probe.prefill_tok_per_s.mean,
            probe.prefill_tok_per_s.sd,
            probe.decode_tok_per_s.mean,
            probe.decode_tok_per_s.sd,
            probe.ttft_s.mean
        );
        meta.speed_probe = Some(probe);
        write_json_atomic(&run_json, &meta)?;
    }

    // 4. Items, task by task; every result appended as it finishes.
    let mut samples = SamplesWriter::create(&dir.join("samples.jsonl"))?;
    let mut summary = Vec::new();
    let eval_start = Instant::now();
    for (task, chat) in suite.tasks.iter().zip(chat) {
        let results = run_task(&mut backend, task, chat, &mut samples)?;
        meta.n_failed += results.iter().filter(|r| r.error.is_some()).count();
        summary.extend(summarize(task, &results));
        meta.eval_s = eval_start.elapsed().as_secs_f64();
        meta.peak_rss_byte = measure::peak_rss_byte();
        write_summary_csv(&dir.join("summary.csv"), &summary)?;
        write_json_atomic(&run_json, &meta)?;
    }
    meta.status = "complete".into();
    meta.finished_at = Some(now());
    meta.peak_rss_byte = measure::peak_rss_byte();
    write_json_atomic(&run_json, &meta)?;
    Ok(RunOutcome { dir, meta, summary })
}

fn task_info(t: &Task, chat_template_applied: bool) -> TaskInfo {
    TaskInfo {
        task: t.spec.task.clone(),
        output_type: serde_json::to_value(t.spec.output_type)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        data_path: t.data_path.clone(),
        data_sha256: t.data_sha256.clone(),
        data_licence: t.data_licence.clone(),
        n_documents: t.n_documents,
        n_items: t.items.len(),
        num_fewshot: t.spec.num_fewshot,
        chat_template: t.spec.chat_template,
        chat_template_applied,
        seed: t.spec.seed,
        metrics: t.metrics.clone(),
    }
}

fn run_task(backend: &mut Backend, task: &Task, chat: bool, samples: &mut SamplesWriter) -> Result<Vec<ItemResult>> {
    let bar = ProgressBar::new(task.items.len() as u64).with_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} ({eta} left) {msg}")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_prefix(task.spec.task.clone());
    let start = Instant::now();
    let mut results = Vec::with_capacity(task.items.len());
    let mut correct = 0usize;
    for item in &task.items {
        let result = match run_item(backend, task, chat, item) {
            Ok(r) => r,
            Err(e) => failed_item(task, item, format!("{e:#}")),
        };
        if let Some(err) = &result.error {
            bar.suspend(|| eprintln!("{}: item failed: {err}", result.id));
        }
        correct += result.correct as usize;
        samples.append(&result)?;
        results.push(result);
        bar.set_message(format!("{}: {:.3}", task.metrics[0], correct as f64 / results.len() as f64));
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!("{:>14}: {} items in {:.1} s", task.spec.task, results.len(), start.elapsed().as_secs_f64());
    Ok(results)
}

fn failed_item(task: &Task, item: &Item, error: String) -> ItemResult {
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
        ttft_s: None,
        decode_tok_per_s: None,
        error: Some(error),
    }
}

/// The final prompt text: `text` in the model's chat template when `chat`,
/// and the few-shot prefix (`prefix_len` bytes of `text`) located in it
/// (after any chat-template header).
fn final_prompt(backend: &Backend, prefix_len: usize, chat: bool, text: &str) -> Result<(String, Option<String>)> {
    let prompt = if chat { backend.apply_chat_template(text)? } else { text.to_string() };
    let shared_prefix =
        (prefix_len > 0).then(|| prompt.find(text).map(|at| prompt[..at + prefix_len].to_string())).flatten();
    Ok((prompt, shared_prefix))
}

/// Adds one response's counts and timings to another.
fn merge(into: &mut Response, r: Response) -> Result<()> {
    match (&mut into.output, r.output) {
        (Output::LogLikelihood(a), Output::LogLikelihood(b)) => a.extend(b),
        _ => anyhow::bail!("backend answered with the wrong kind of output"),
    }
    into.tokens_in += r.tokens_in;
    into.tokens_cached += r.tokens_cached;
    into.tokens_out += r.tokens_out;
    into.wall_s += r.wall_s;
    Ok(())
}

/// Item → Request(s) → Response. Multiple choice asks for every choice's
/// log-likelihood after one context; partial scoring (a continuation shared
/// by contexts that differ per choice) asks once per context.
fn ask(backend: &mut Backend, chat: bool, item: &Item) -> Result<(String, Response)> {
    match &item.kind {
        ItemKind::MultipleChoice { continuation: None, .. } => {
            let (prompt, shared_prefix) = final_prompt(backend, item.prefix_len, chat, &item.prompt)?;
            let continuations = item.kind.scored_pairs().into_iter().map(|(_, c)| c).collect();
            let req = Request::LogLikelihood { context: prompt.clone(), continuations, shared_prefix };
            Ok((prompt, backend.run(&req)?))
        }
        ItemKind::MultipleChoice { continuation: Some(_), .. } => {
            let mut merged: Option<Response> = None;
            let mut shown = Vec::new();
            for (suffix, cont) in item.kind.scored_pairs() {
                let (context, shared_prefix) =
                    final_prompt(backend, item.prefix_len, chat, &format!("{}{suffix}", item.prompt))?;
                let req = Request::LogLikelihood { context: context.clone(), continuations: vec![cont], shared_prefix };
                let r = backend.run(&req)?;
                match merged.as_mut() {
                    None => merged = Some(r),
                    Some(m) => merge(m, r)?,
                }
                shown.push(context);
            }
            Ok((shown.join("\n--- or ---\n"), merged.context("no choices")?))
        }
        ItemKind::Generate { until, max_tokens, .. } => {
            let (prompt, shared_prefix) = final_prompt(backend, item.prefix_len, chat, &item.prompt)?;
            let req = Request::Generate {
                prompt: prompt.clone(),
                until: until.clone(),
                max_tokens: *max_tokens,
                shared_prefix,
            };
            Ok((prompt, backend.run(&req)?))
        }
    }
}

/// Item → Request → Response → Score → ItemResult. `chat`: wrap the prompt
/// in the model's chat template.
fn run_item(backend: &mut Backend, task: &Task, chat: bool, item: &Item) -> Result<ItemResult> {
    let (prompt, response) = ask(backend, chat, item)?;
    let Response { output, tokens_in, tokens_cached, tokens_out, wall_s, ttft_s, decode_tok_per_s } = response;
    let mut metrics = BTreeMap::new();
    let (choices, gold, prediction, generated, loglik) = match (&item.kind, output) {
        (ItemKind::MultipleChoice { choices, gold, .. }, Output::LogLikelihood(ll)) => {
            // acc_norm divides by the length of what was scored: the choice, or the shared continuation.
            let scored: Vec<String> = item.kind.scored_pairs().into_iter().map(|(_, c)| c).collect();
            let acc = score::predict_acc(&ll);
            let acc_norm = score::predict_acc_norm(&ll, &scored);
            for m in &task.metrics {
                let pred = if m == "acc_norm" { acc_norm } else { acc };
                metrics.insert(m.clone(), (pred == *gold) as u8 as f64);
            }
            let shown = if task.metrics[0] == "acc" { acc } else { acc_norm };
            (Some(choices.clone()), gold.to_string(), shown.to_string(), None, Some(ll))
        }
        (ItemKind::Generate { target, also_accepted, .. }, Output::Text(text)) => {
            let mut prediction = score::apply_filter(task.spec.filter, &text);
            for m in &task.metrics {
                let ok = if m == "pass@1" {
                    // The program: the document's own prompt (no few-shot prefix), the completion, the tests.
                    let program = format!("{}{text}\n{target}\n", &item.prompt[item.prefix_len..]);
                    let outcome = crate::execute::run_python(
                        &program,
                        std::time::Duration::from_secs_f64(task.spec.exec_timeout_s),
                    )?;
                    prediction = outcome.describe();
                    outcome.passed()
                } else {
                    score::exact_match(
                        task.spec.filter,
                        &prediction,
                        std::iter::once(target).chain(also_accepted).map(String::as_str),
                    )
                };
                metrics.insert(m.clone(), ok as u8 as f64);
            }
            (None, target.clone(), prediction, Some(text), None)
        }
        _ => anyhow::bail!("backend answered with the wrong kind of output"),
    };
    Ok(ItemResult {
        task: task.spec.task.clone(),
        id: item.id.clone(),
        group: item.group.clone(),
        prompt_hash: item.prompt_hash.clone(),
        prompt,
        choices,
        correct: metrics.get(&task.metrics[0]).copied() == Some(1.0),
        gold,
        prediction,
        generated,
        metrics,
        loglik,
        tokens_in,
        tokens_cached,
        tokens_out,
        wall_s,
        ttft_s,
        decode_tok_per_s,
        error: None,
    })
}

/// Per-metric rows for one task, then per group (`group_by`) in name order.
/// Failed items count as wrong.
pub fn summarize(task: &Task, results: &[ItemResult]) -> Vec<TaskSummary> {
    let mut rows = summary_rows(task, "", &results.iter().collect::<Vec<_>>());
    for (g, members) in crate::results::by_group(results) {
        rows.extend(summary_rows(task, g, &members));
    }
    rows
}

fn summary_rows(task: &Task, group: &str, results: &[&ItemResult]) -> Vec<TaskSummary> {
    let latencies: Vec<f64> = results.iter().filter(|r| r.error.is_none()).map(|r| r.wall_s).collect();
    task.metrics
        .iter()
        .map(|m| {
            let xs: Vec<f64> = results.iter().map(|r| r.metrics.get(m).copied().unwrap_or(0.0)).collect();
            let (lo, hi) = stats::ci95(&xs, 0.0, 1.0);
            TaskSummary {
                task: task.spec.task.clone(),
                group: group.to_string(),
                metric: m.clone(),
                n: results.len(),
                n_failed: results.iter().filter(|r| r.error.is_some()).count(),
                score: stats::mean(&xs),
                stderr: stats::stderr(&xs),
                ci95_low: lo,
                ci95_high: hi,
                latency_p50_s: stats::percentile(&latencies, 50.0).unwrap_or(0.0),
                latency_p90_s: stats::percentile(&latencies, 90.0).unwrap_or(0.0),
                tokens_in: results.iter().map(|r| r.tokens_in).sum(),
                tokens_out: results.iter().map(|r| r.tokens_out).sum(),
            }
        })
        .collect()
}

/// The terminal summary table.
pub fn format_table(rows: &[TaskSummary]) -> String {
    let mut s = format!(
        "{:<16} {:>5} {:<12} {:>16} {:>9} {:>9}\n",
        "task", "n", "metric", "score ± 95% CI", "p50 (s)", "p90 (s)"
    );
    for r in rows {
        let half = (r.ci95_high - r.ci95_low) / 2.0;
        s.push_str(&format!(
            "{:<16} {:>5} {:<12} {:>16} {:>9.3} {:>9.3}\n",
            if r.group.is_empty() { r.task.clone() } else { format!("  {}", r.group) },
            r.n,
            r.metric,
            format!("{:.3} ± {:.3}", r.score, half),
            r.latency_p50_s,
            r.latency_p90_s
        ));
    }
    s
}
