//! `openweigh run --resume DIR`: continues a run that was killed, crashed or
//! stopped on an error, in its own folder, skipping every item already in
//! `samples.jsonl`. The settings come from `run.json` (`invocation`); flags
//! given again must agree with them. Before anything runs, what decides the
//! predictions is checked against the folder: the model's sha256, the
//! adapter's, the suite's text, each task's data and items, and the setup
//! `compare` judges by (`RunMeta::setup`: engine, device, the
//! weight format, threads, the CPU features compiled in); any difference is
//! refused by name. A torn last line of `samples.jsonl` (an item cut off
//! mid-write) is dropped; the item runs again. Items are keyed by id, so the
//! resumed run's summary, predictions and report equal an uninterrupted
//! run's.

use super::RunOptions;
use crate::error::UserError;
use crate::results::{read_run_json, recover_samples, ItemResult, Resumption, RunMeta};
use anyhow::Result;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An interrupted run, read back.
pub struct Resume {
    pub dir: PathBuf,
    pub meta: RunMeta,
    /// Item results already measured, by item id.
    pub done: HashMap<String, ItemResult>,
    /// Bytes of a torn last line dropped from samples.jsonl.
    pub torn_byte: u64,
}

fn refuse(message: String) -> anyhow::Error {
    UserError::BadFlag { flag: "--resume", message }.into()
}

/// The options the run in `dir` (its run.json: `meta`) was started with, `now` (the flags of this
/// command; `explicit` names those typed on the command line) checked
/// against them. Flags left out take the run's values; `--concurrency`,
/// `--request-timeout` and `--retries` (which change no prediction) come from
/// `now`.
pub fn options(dir: &Path, meta: &RunMeta, now: &RunOptions, explicit: &[String]) -> Result<RunOptions> {
    if meta.status == "complete" {
        return Err(refuse(format!(
            "{} is complete; nothing to resume (report it with `openweigh report`)",
            dir.display()
        )));
    }
    let Some(inv) = meta.invocation.clone() else {
        return Err(refuse(format!(
            "{} was written by an openweigh without resume (run.json has no `invocation`); start the run again",
            dir.display()
        )));
    };
    let show = |p: &Option<PathBuf>| p.as_ref().map_or("none".to_string(), |p| p.display().to_string());
    let show_n = |n: Option<usize>| n.map_or("none".to_string(), |n| n.to_string());
    let checks = [
        ("model", "--model", inv.model.clone(), now.model.clone()),
        ("suite", "--suite", inv.suite.clone(), now.suite.clone()),
        ("limit", "--limit", show_n(inv.limit), show_n(now.limit)),
        ("threads", "--threads", meta.threads.to_string(), now.threads.to_string()),
        ("weights", "--weights", format!("{:?}", inv.weights), format!("{:?}", now.weights)),
        ("device", "--device", cuda_name(inv.cuda).into(), cuda_name(now.cuda).into()),
        ("probe_reps", "--probe-reps", inv.probe_repetitions.to_string(), now.probe_repetitions.to_string()),
        ("adapter", "--adapter", show(&inv.adapter), show(&now.adapter)),
        ("models", "--models", show(&inv.models_file), show(&now.models_file)),
    ];
    let differ: Vec<String> = checks
        .iter()
        .filter(|(id, _, was, is)| explicit.iter().any(|e| e == id) && was != is)
        .map(|(_, flag, was, is)| format!("{flag} {is} (the run has {was})"))
        .collect();
    if !differ.is_empty() {
        return Err(refuse(format!(
            "{} was started with other settings: {}; drop those flags to continue it as it was, or start a new run",
            dir.display(),
            differ.join(", ")
        )));
    }
    Ok(RunOptions {
        model: inv.model,
        suite: inv.suite,
        limit: inv.limit,
        threads: meta.threads,
        out: dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        weights: inv.weights,
        cuda: inv.cuda,
        probe_repetitions: inv.probe_repetitions,
        models_file: inv.models_file,
        adapter: inv.adapter,
        http: now.http,
        resume: Some(dir.to_path_buf()),
    })
}

fn cuda_name(cuda: bool) -> &'static str {
    if cuda {
        "cuda"
    } else {
        "cpu"
    }
}

/// Reads the run in `dir` and what it measured (a torn last line of
/// samples.jsonl cut off).
pub fn open(dir: &Path) -> Result<Resume> {
    let meta = read_run_json(dir)?;
    let (samples, torn_byte) = recover_samples(&dir.join("samples.jsonl"))?;
    let done = samples.into_iter().map(|r| (r.id.clone(), r)).collect();
    Ok(Resume { dir: dir.to_path_buf(), meta, done, torn_byte })
}

impl Resume {
    /// Refuses to continue when `fresh` (the run.json this process would
    /// write) was measured differently from the run's own, naming what.
    pub fn check_same(&self, fresh: &RunMeta) -> Result<()> {
        let (was, now) = (&self.meta, fresh);
        let adapter = |m: &RunMeta| m.model.adapter.as_ref().map_or("none".to_string(), |a| a.sha256.clone());
        let tasks = |m: &RunMeta| {
            m.suite
                .tasks
                .iter()
                .map(|t| format!("{} ({} items of data {}, seed {})", t.task, t.n_items, t.data_sha256, t.seed))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let inputs = [
            ("the model's sha256", was.model.sha256.clone(), now.model.sha256.clone()),
            ("the adapter's sha256", adapter(was), adapter(now)),
            ("the suite file's sha256", was.suite.sha256.clone(), now.suite.sha256.clone()),
            ("the tasks", tasks(was), tasks(now)),
        ];
        // And the measurement setup, as `compare` judges it.
        let setup = was
            .setup()
            .into_iter()
            .zip(now.setup())
            .filter(|((_, _, changes_predictions), _)| *changes_predictions)
            .map(|((what, a, _), (_, b, _))| (what, a, b));
        for (what, a, b) in inputs.into_iter().chain(setup) {
            if a != b {
                return Err(refuse(format!(
                    "{}: {what} changed since the run started ({a} then, {b} now), which changes predictions; start a new run",
                    self.dir.display()
                )));
            }
        }
        Ok(())
    }

    /// `fresh` carried on from the run's own record: its id, start, speed
    /// probe, earlier resumptions and item-loop time, plus this resumption.
    pub fn carry_over(&self, fresh: &mut RunMeta, at: String) {
        let was = &self.meta;
        fresh.run_id = was.run_id.clone();
        fresh.started_at = was.started_at.clone();
        fresh.speed_probe = was.speed_probe.clone();
        fresh.eval_s = was.eval_s;
        fresh.resumed = was.resumed.clone();
        fresh.resumed.push(Resumption {
            at,
            items_done: self.done.len(),
            torn_byte: self.torn_byte,
            previous_status: was.status.clone(),
        });
    }
}
