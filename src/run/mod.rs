//! Run: the orchestration of one (model, suite) run. Validates everything
//! and renders every item before loading weights, loads the model (timed
//! apart), runs the speed probe, then each task's items (`task`, one batch per
//! task through the engine; `item`, one item's requests and result),
//! appending each item's result as it finishes. A failed item is recorded and
//! the run goes on; `run.json` and `summary.csv` are rewritten after every
//! task so a crash loses nothing measured. Also here: `summary` (the rows of
//! summary.csv), `measure` (speed probe, peak memory, host facts), `children`
//! (several models, each in its own process) and `bench` (the probe alone).

pub mod bench;
pub mod children;
pub mod item;
pub mod measure;
pub mod resume;
pub mod summary;
pub mod task;

use crate::assets;
use crate::backend::adapter::LoraAdapter;
use crate::backend::openai::{endpoint, http::HttpOptions};
use crate::backend::weights::ModelHeader;
use crate::backend::{self, EngineOptions, WeightFormat};
use crate::error::UserError;
use crate::results::*;
use crate::score;
use crate::suite::{OutputType, Suite, Task};
use anyhow::Result;
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
    /// `--models FILE.toml`: served models by name.
    pub models_file: Option<PathBuf>,
    /// `--adapter`: a LoRA adapter (PEFT folder or GGUF file) merged into the model at load.
    pub adapter: Option<PathBuf>,
    /// How a served model is called.
    pub http: HttpOptions,
    /// `--resume DIR`: continue the interrupted run in DIR (see `resume`).
    pub resume: Option<PathBuf>,
}

/// What a finished run left behind.
pub struct RunOutcome {
    pub dir: PathBuf,
    pub meta: RunMeta,
    pub summary: Vec<TaskSummary>,
}

/// Set by the first Ctrl-C of an in-process run: the item in progress
/// finishes and is written, then the run stops (exit 130) and can be resumed.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_ctrl_c(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
    // A second Ctrl-C stops the process at once.
    // SAFETY: signal() is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// Makes Ctrl-C stop an in-process run after the item in progress (a served
/// model's engine watches Ctrl-C itself).
fn watch_ctrl_c() {
    // SAFETY: installs a handler that only stores to an atomic and resets the signal.
    unsafe {
        libc::signal(libc::SIGINT, on_ctrl_c as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}

/// Whether Ctrl-C was pressed during an in-process run.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
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
    let mut resumed = opts.resume.as_deref().map(resume::open).transpose()?;
    let suite = Suite::load(&opts.suite, opts.limit)?;
    score::check_requirements(&suite)?;
    let engine_opts = EngineOptions { cuda: opts.cuda, weights: opts.weights, http: opts.http };
    engine_opts.validate()?;
    let served = endpoint::resolve(&opts.model, opts.models_file.as_deref())?;
    if let (Some(_), Some(a)) = (&served, &opts.adapter) {
        return Err(served_adapter(a));
    }
    let mut adapter = None;
    let model = match &served {
        Some(ep) => assets::ResolvedModel {
            name: ep.name.clone(),
            path: PathBuf::from(&ep.base_urls[0]),
            sha256: String::new(),
            size_byte: 0,
        },
        None => {
            let mut model = assets::resolve_model(&opts.model)?;
            check_generation_fits(&suite, backend::max_positions(&model.path)?)?;
            if let Some(path) = &opts.adapter {
                let a = open_adapter(&model.path, path)?;
                model.name = format!("{} + {}", model.name, a.info.name);
                adapter = Some(a);
            }
            model
        }
    };
    let peak_rss_scope = match (&served, measure::reset_peak_rss()) {
        (Some(_), _) => "openweigh's client process only (the server's memory is not measured)",
        (None, true) => "model load onward",
        (None, false) => "whole process",
    };

    if served.is_none() {
        watch_ctrl_c();
    }

    // 2. Load (for a served model: connect), timed apart from every latency.
    eprintln!("loading {} ({})", model.name, model.path.display());
    let mut engine = match &served {
        Some(ep) => backend::load_endpoint(ep, &engine_opts)?,
        None => backend::load(&model.path, adapter.as_ref(), &engine_opts)?,
    };
    check_loglikelihood(engine.as_mut(), &suite)?;
    let load_s = engine.load_s();
    let load_report = engine.load_report();
    // Per task: whether prompts go through the model's chat template. A base
    // model has none; its tasks then run on the prompts as written, said here
    // and recorded in run.json (`chat_template_applied`).
    let mut chat = Vec::with_capacity(suite.tasks.len());
    for task in &suite.tasks {
        let apply = task.spec.chat_template && engine.has_chat_template();
        if task.spec.chat_template && !apply {
            eprintln!(
                "note: task '{}' asks for a chat template but {} has none (a base model); its prompts run as written",
                task.spec.task, model.name
            );
        }
        if apply {
            engine.apply_chat_template("probe").map_err(|e| UserError::BadFile {
                path: suite.path.clone(),
                message: format!("task '{}': {e:#}", task.spec.task),
            })?;
        }
        chat.push(apply);
    }
    eprintln!("loaded in {load_s:.2} s");

    let (run_id, dir) = match &resumed {
        Some(r) => (r.meta.run_id.clone(), r.dir.clone()),
        None => create_output_dir(&opts.out, &format!("{{time}}-{}-{}", model.name, suite.name))?,
    };
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
            served: served.clone(),
            adapter: adapter.map(|a| a.info),
        },
        suite: SuiteInfo {
            name: suite.name.clone(),
            path: suite.path.clone(),
            sha256: suite.sha256.clone(),
            tasks: suite.tasks.iter().zip(&chat).map(|(t, c)| task_info(t, *c)).collect(),
        },
        backend: engine.name().into(),
        device: engine.device(),
        threads: opts.threads,
        limit: opts.limit,
        batch_size: 1,
        loglik_pack_tokens: engine.loglik_pack_tokens(),
        speed_probe: None,
        peak_rss_byte: measure::peak_rss_byte(),
        peak_rss_scope: peak_rss_scope.into(),
        kv_peak_byte: engine.kv_peak_byte(),
        eval_s: 0.0,
        prefix_s: 0.0,
        n_items: suite.tasks.iter().map(|t| t.items.len()).sum(),
        n_failed: 0,
        error: None,
        host: measure::host_info(),
        invocation: Some(Invocation {
            model: opts.model.clone(),
            suite: opts.suite.clone(),
            limit: opts.limit,
            weights: opts.weights,
            cuda: opts.cuda,
            probe_repetitions: opts.probe_repetitions,
            adapter: opts.adapter.clone(),
            models_file: opts.models_file.clone(),
        }),
        code_sandbox: score::code_sandbox(&suite),
        resumed: vec![],
    };
    if let Some(r) = &resumed {
        r.check_same(&meta)?;
        r.carry_over(&mut meta, now());
        eprintln!(
            "resuming {}: {} items done, {} to go{}",
            dir.display(),
            r.done.len(),
            meta.n_items.saturating_sub(r.done.len()),
            if r.torn_byte > 0 {
                format!(" (a torn last line of {} bytes dropped)", r.torn_byte)
            } else {
                String::new()
            }
        );
    }
    let done = resumed.take().map(|r| r.done).unwrap_or_default();
    let run_json = dir.join("run.json");
    write_json_atomic(&run_json, &meta)?;

    // 3–4. Measure; a run that stops on an error says so in run.json, with
    // everything measured before it kept.
    let summary = match measure_run(engine.as_mut(), &suite, chat, opts, &dir, &mut meta, done) {
        Ok(summary) => summary,
        Err(e) => {
            if matches!(e.downcast_ref::<UserError>(), Some(UserError::Interrupted)) {
                eprintln!("continue it with: openweigh run --resume {}", dir.display());
            }
            meta.status = "failed".into();
            meta.error = Some(format!("{e:#}"));
            meta.finished_at = Some(now());
            record_memory(&mut meta, engine.as_ref());
            write_json_atomic(&run_json, &meta)?;
            return Err(e);
        }
    };
    meta.status = "complete".into();
    meta.finished_at = Some(now());
    record_memory(&mut meta, engine.as_ref());
    write_json_atomic(&run_json, &meta)?;
    Ok(RunOutcome { dir, meta, summary })
}

/// The run's memory so far: the process's peak RSS and the engine's peak KV cache.
fn record_memory(meta: &mut RunMeta, engine: &dyn backend::Engine) {
    meta.peak_rss_byte = measure::peak_rss_byte();
    meta.kv_peak_byte = engine.kv_peak_byte();
}

/// The speed probe, then each task's items, with `run.json` and
/// `summary.csv` rewritten as they progress; returns the summary rows.
/// `done`: results of a resumed run's items, kept and not run again (a
/// resumed run keeps its speed probe too).
fn measure_run(
    engine: &mut dyn backend::Engine,
    suite: &Suite,
    chat: Vec<bool>,
    opts: &RunOptions,
    dir: &std::path::Path,
    meta: &mut RunMeta,
    mut done: std::collections::HashMap<String, ItemResult>,
) -> Result<Vec<TaskSummary>> {
    let run_json = dir.join("run.json");
    // 3. Speed probe.
    if opts.probe_repetitions > 0 && meta.speed_probe.is_none() {
        eprintln!(
            "speed probe: {} prompt tokens, {} generated, 1 warm-up + {} timed",
            measure::PROBE_PROMPT_TOKENS,
            measure::PROBE_OUTPUT_TOKENS,
            opts.probe_repetitions
        );
        let probe = measure::speed_probe(engine, opts.probe_repetitions)?;
        eprintln!(
            "  prefill {:.1} ± {:.1} tok/s, decode {:.1} ± {:.1} tok/s, TTFT {:.3} s",
            probe.prefill_tok_per_s.mean,
            probe.prefill_tok_per_s.sd,
            probe.decode_tok_per_s.mean,
            probe.decode_tok_per_s.sd,
            probe.ttft_s.mean
        );
        meta.speed_probe = Some(probe);
        write_json_atomic(&run_json, meta)?;
    }

    // 4. Items, task by task; every result appended as it finishes.
    let mut samples = SamplesWriter::create(&dir.join("samples.jsonl"))?;
    let mut summary = Vec::new();
    let (eval_start, eval_before) = (Instant::now(), meta.eval_s);
    for (task, chat) in suite.tasks.iter().zip(chat) {
        let results = task::run_task(engine, task, chat, &mut samples, &mut done)?;
        meta.n_failed += results.iter().filter(|r| r.error.is_some()).count();
        meta.prefix_s += results.iter().filter_map(|r| r.prefix_s).sum::<f64>();
        summary.extend(summary::summarize(task, &results));
        meta.eval_s = eval_before + eval_start.elapsed().as_secs_f64();
        record_memory(meta, engine);
        write_summary_csv(&dir.join("summary.csv"), &summary)?;
        write_json_atomic(&run_json, meta)?;
    }
    Ok(summary)
}

/// Reads the LoRA adapter at `adapter` and checks that it fits the model
/// file or folder at `model`, from headers alone (no weights loaded).
pub fn open_adapter(model: &std::path::Path, adapter: &std::path::Path) -> Result<LoraAdapter> {
    let a = LoraAdapter::open(adapter)?;
    a.check(&ModelHeader::read(model)?)?;
    Ok(a)
}

/// Checks `--adapter` for the model `spec` (as `run` would) before a
/// command that runs it later in a child process spends time on others.
pub fn check_adapter(spec: &str, adapter: &std::path::Path, models_file: Option<&std::path::Path>) -> Result<()> {
    if endpoint::resolve(spec, models_file)?.is_some() {
        return Err(served_adapter(adapter));
    }
    open_adapter(&assets::resolve_model(spec)?.path, adapter).map(|_| ())
}

fn served_adapter(adapter: &std::path::Path) -> anyhow::Error {
    UserError::BadFlag {
        flag: "--adapter",
        message: format!(
            "{} is applied in process; a served model loads adapters on its server (llama-server --lora FILE.gguf, vLLM --lora-modules)",
            adapter.display()
        ),
    }
    .into()
}

/// Refuses log-likelihood tasks an engine cannot score truthfully (a served
/// model whose server gets echoed log-probs wrong, or one asked for them
/// through a chat template), before any item is scored.
fn check_loglikelihood(engine: &mut dyn backend::Engine, suite: &Suite) -> Result<()> {
    let loglik: Vec<&Task> = suite.tasks.iter().filter(|t| t.spec.output_type == OutputType::MultipleChoice).collect();
    if loglik.is_empty() {
        return Ok(());
    }
    if !engine.chat_loglikelihood() {
        if let Some(t) = loglik.iter().find(|t| t.spec.chat_template) {
            return Err(UserError::BadFile {
                path: suite.path.clone(),
                message: format!(
                    "task '{}' asks for log-likelihoods through the chat template, which a served model cannot give (chat requests return no prompt log-probs); set chat_template: false, or use the lettered form (suites/chat.yaml)",
                    t.spec.task
                ),
            }
            .into());
        }
    }
    engine.check_loglikelihood()
}

/// Refuses a generation task whose `max_gen_toks` leaves the model no room
/// for a prompt (every item would fail).
fn check_generation_fits(suite: &Suite, max_positions: usize) -> Result<()> {
    for t in &suite.tasks {
        if let Some(g) = t.spec.generation_kwargs.as_ref().filter(|g| g.max_gen_toks >= max_positions) {
            return Err(UserError::BadFile {
                path: suite.path.clone(),
                message: format!(
                    "task '{}': generation_kwargs.max_gen_toks {} leaves no room for a prompt in this model's {max_positions} positions; lower it below {max_positions}",
                    t.spec.task, g.max_gen_toks
                ),
            }
            .into());
        }
    }
    Ok(())
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
