//! The serde contract of the files in `results/<run-id>/`: `run.json` is a
//! [`RunMeta`] (what ran, how, and the run-level measurements),
//! `samples.jsonl` one [`ItemResult`] per line, `summary.csv` one
//! [`TaskSummary`] per task and metric. Every field says its unit. Prices are
//! not frozen in here: reports apply them later from the tokens and timings
//! stored.

use crate::backend::openai::Endpoint;
use crate::backend::{ChoiceLogLik, ServedStats};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// One item's outcome (one line of `samples.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemResult {
    pub task: String,
    /// `<task>/<row index in the data file>`.
    pub id: String,
    /// The item's group within its task (`group_by`, e.g. an MMLU category).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// sha256 prefix of prompt, choices and target (matches items across runs).
    pub prompt_hash: String,
    /// The exact text given to the model (few-shot examples and chat template
    /// included); for partial scoring each choice's context, joined by
    /// `\n--- or ---\n`.
    pub prompt: String,
    /// Choice texts (multiple choice only; for partial scoring, the contexts;
    /// for a lettered question, its option letters, which set its chance level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    /// Gold answer: the choice index as text, or the target string.
    pub gold: String,
    /// The model's answer: the primary metric's choice index as text
    /// (multiple choice), the filtered generated answer, or for pass@1 how the
    /// program ended (`passed`, `failed: <last line of stderr>`, `timed out`).
    pub prediction: String,
    /// Raw generated text (generation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
    /// Whether `prediction` equals `gold` (the task's first metric).
    pub correct: bool,
    /// Each metric's score for this item (0 or 1).
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Log-likelihood of every choice (multiple choice only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loglik: Option<Vec<ChoiceLogLik>>,
    /// Prompt positions the model took in: the prompt's tokens for generation;
    /// for log-likelihoods the context once plus each continuation's tokens
    /// but its last (scored, never fed back). Cached ones included.
    pub tokens_in: usize,
    /// Of `tokens_in`, those reused from the task's few-shot prefix cache.
    #[serde(default)]
    pub tokens_cached: usize,
    /// Tokens generated, the end-of-sequence token included when generation stopped there.
    pub tokens_out: usize,
    /// Wall time of the model request, tokenization included, the first
    /// evaluation of the task's shared few-shot prefix excluded (seconds).
    pub wall_s: f64,
    /// Seconds this item's request spent evaluating a new shared few-shot
    /// prefix into the cache (the first item after the prefix changed); absent
    /// when it reused the cached one. Not part of `wall_s` or any latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_s: Option<f64>,
    /// Generation only: request start to first token (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_s: Option<f64>,
    /// Generation only: tokens per second after the first token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_tok_per_s: Option<f64>,
    /// A served model's request: TPOT, inter-chunk gaps, retries, where the
    /// token counts came from, the server's own timings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<ServedStats>,
    /// Set when the item failed; the run goes on and the item counts as wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Mean ± spread over the speed probe's repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spread {
    pub mean: f64,
    /// Sample standard deviation over repetitions.
    pub sd: f64,
    pub values: Vec<f64>,
}

/// The speed probe: a fixed prompt, a fixed number of generated tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeedProbe {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Timed repetitions after one untimed warm-up.
    pub repetitions: usize,
    /// prompt_tokens / prefill seconds.
    pub prefill_tok_per_s: Spread,
    /// (generated_tokens − 1) / seconds from first to last generated token.
    pub decode_tok_per_s: Spread,
    /// Prefill of the token ids plus the first token's selection (seconds;
    /// tokenization excluded).
    pub ttft_s: Spread,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Catalog name, or the file name for a local model.
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub file_size_byte: u64,
    pub architecture: String,
    /// How weights were held in memory (repacks included).
    pub load: serde_json::Value,
    /// Seconds to read and prepare the weights (for a served model: to list
    /// its server's models); never part of any latency.
    pub load_s: f64,
    /// A served model (the `openai` engine): its URLs, model id, price and
    /// key variable's name (never a key). `path` then holds the first URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Endpoint>,
    /// A LoRA adapter merged into the model at load (`--adapter`): path,
    /// sha256, rank, alpha, scale, target modules, how it was applied. `name`
    /// is then `BASE + ADAPTER`; `path` and `sha256` stay the base model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<crate::backend::adapter::AdapterInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskInfo {
    pub task: String,
    pub output_type: String,
    pub data_path: PathBuf,
    pub data_sha256: String,
    pub data_licence: String,
    pub n_documents: usize,
    pub n_items: usize,
    pub num_fewshot: usize,
    /// Whether the suite asked for the model's chat template on this task.
    pub chat_template: bool,
    /// Whether it was applied: false when the model has none (a base model),
    /// in which case prompts ran as written.
    #[serde(default)]
    pub chat_template_applied: bool,
    pub seed: u64,
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteInfo {
    pub name: String,
    pub path: PathBuf,
    /// sha256 of the suite file's text.
    pub sha256: String,
    pub tasks: Vec<TaskInfo>,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    /// "running" while items are measured, then "complete", or "failed" when
    /// the run stopped on an error (see `error`; what was measured is kept).
    pub status: String,
    pub openweigh_version: String,
    /// `git describe` of the openweigh source tree at build time, if known.
    pub openweigh_commit: String,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    pub model: ModelInfo,
    pub suite: SuiteInfo,
    pub backend: String,
    pub device: String,
    /// Compute threads (CANDLE_NUM_THREADS).
    pub threads: usize,
    /// `--limit` (items per task), if given.
    pub limit: Option<usize>,
    /// Items handed to the engine at a time (1: each item's requests on
    /// their own; scores never depend on it).
    pub batch_size: usize,
    /// Most tokens of one forward pass into which the in-process engine packs
    /// consecutive log-likelihood requests (several questions per pass; each
    /// question's numbers are bit for bit those it gets alone); `None`: one
    /// request per pass (served models, runs before packing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loglik_pack_tokens: Option<usize>,
    pub speed_probe: Option<SpeedProbe>,
    /// Peak resident set size of the process (bytes; VmHWM, else getrusage ru_maxrss).
    pub peak_rss_byte: u64,
    /// What the peak covers: "model load onward" (the counter was restarted after
    /// the suite's data was loaded and freed) or "whole process".
    #[serde(default)]
    pub peak_rss_scope: String,
    /// Most bytes of KV-cache buffers held at once, from model load on, at
    /// their allocated capacity (every cached context, shared few-shot prefix
    /// and batched sequence; inside `peak_rss_byte`); absent for served
    /// models and older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_peak_byte: Option<u64>,
    /// Wall time of the item loop (seconds, model load and probe excluded).
    #[serde(default)]
    pub eval_s: f64,
    /// Seconds spent evaluating shared few-shot prefixes into the cache, once
    /// per prefix (inside `eval_s`, outside every item's latency).
    #[serde(default)]
    pub prefix_s: f64,
    pub n_items: usize,
    pub n_failed: usize,
    /// Why the run stopped, when `status` is "failed".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub host: HostInfo,
    /// What `openweigh run` was asked, so `run --resume` continues with the
    /// same settings (absent in runs written before resume existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<Invocation>,
    /// How generated code (pass@1) was shut in on this machine: limits, and
    /// whether it had network or could write outside its folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_sandbox: Option<String>,
    /// Each time the run was continued with `run --resume`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<Resumption>,
}

impl RunMeta {
    /// How the run was measured, as (what, value, whether it can change
    /// predictions) rows: candle's kernels differ per instruction set, and
    /// engines, weight formats, devices and thread counts round differently,
    /// so items can flip with the model unchanged; the CPU model changes
    /// speed only. Prediction-changing rows first. `compare` and `run
    /// --resume` judge two runs by these.
    pub fn setup(&self) -> [(&'static str, String, bool); 6] {
        let weights = self.model.load.get("weight_format").and_then(|v| v.as_str()).unwrap_or("?").to_string();
        [
            ("CPU features compiled in", self.host.target_features.join(","), true),
            ("engine", self.backend.clone(), true),
            ("device", self.device.clone(), true),
            ("weight format (--weights)", weights, true),
            ("threads", self.threads.to_string(), true),
            ("CPU", self.host.cpu.clone(), false),
        ]
    }
}

/// The settings of a run that decide its predictions, as given on the
/// command line (paths as written, relative to where the run started).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Invocation {
    /// `--model` (catalog name, file, folder, hf:…, openai:…, models-file entry).
    pub model: String,
    /// `--suite` (name or path).
    pub suite: String,
    /// `--limit`.
    pub limit: Option<usize>,
    /// `--weights`.
    pub weights: crate::backend::WeightFormat,
    /// `--device cuda`.
    pub cuda: bool,
    /// `--probe-reps`.
    pub probe_repetitions: usize,
    /// `--adapter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<PathBuf>,
    /// `--models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models_file: Option<PathBuf>,
}

/// One continuation of an interrupted run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resumption {
    /// When it started (UTC, RFC 3339).
    pub at: String,
    /// Items already in samples.jsonl, kept and not run again.
    pub items_done: usize,
    /// Bytes of a torn last line of samples.jsonl (an item cut off mid-write), dropped.
    pub torn_byte: u64,
    /// `status` run.json had before (running: killed; failed: stopped on an error).
    pub previous_status: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    pub os: String,
    pub arch: String,
    pub cpu: String,
    /// Logical CPUs visible to the process.
    pub logical_cpus: usize,
    /// Target features compiled in (avx2, fma, ...), which decide candle's kernels.
    pub target_features: Vec<String>,
}

/// One row of `summary.csv`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSummary {
    pub task: String,
    /// Empty for the whole task; else one group of its items (`group_by`, e.g. an MMLU category).
    pub group: String,
    pub metric: String,
    pub n: usize,
    pub n_failed: usize,
    /// Mean of the per-item metric (0..1).
    pub score: f64,
    /// Standard error of the mean (sample sd / √n).
    pub stderr: f64,
    /// 95% confidence interval of `score`: the Wilson score interval of a
    /// proportion (every per-item metric is 0 or 1).
    pub ci95_low: f64,
    pub ci95_high: f64,
    /// Item latency percentiles (seconds).
    pub latency_p50_s: f64,
    pub latency_p90_s: f64,
    pub tokens_in: usize,
    pub tokens_out: usize,
}

/// Items split by their `group` (those without one left out), groups in name order.
pub fn by_group<'a>(items: impl IntoIterator<Item = &'a ItemResult>) -> Vec<(&'a str, Vec<&'a ItemResult>)> {
    let mut groups: std::collections::BTreeMap<&str, Vec<&ItemResult>> = std::collections::BTreeMap::new();
    for r in items {
        if let Some(g) = r.group.as_deref() {
            groups.entry(g).or_default().push(r);
        }
    }
    groups.into_iter().collect()
}

impl ItemResult {
    /// Expected score of guessing uniformly: 1/choices for multiple choice,
    /// 0 for generation.
    pub fn chance(&self) -> f64 {
        self.choices.as_ref().map_or(0.0, |c| 1.0 / c.len().max(1) as f64)
    }
}
