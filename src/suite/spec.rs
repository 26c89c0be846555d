//! The suite file's schema: serde types for what a suite YAML may say, in
//! lm-evaluation-harness vocabulary (`doc_to_text`, `doc_to_choice`,
//! `doc_to_target`, `target_delimiter`, `output_type`, `num_fewshot`,
//! `metric_list`, `generation_kwargs`) plus openweigh's own fields (data
//! source, seeded `sample`, few-shot pools, `group_by`, filters). Unknown
//! fields are refused, and a parse error names the file and line.

use crate::error::UserError;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputType {
    MultipleChoice,
    GenerateUntil,
}

/// A metric name, written either as `acc` or lm-eval's `{metric: acc, ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricSpec {
    Name(String),
    Full { metric: String },
}

impl MetricSpec {
    pub fn name(&self) -> &str {
        match self {
            MetricSpec::Name(n) | MetricSpec::Full { metric: n } => n,
        }
    }
}

/// A template (string) or a literal list of choices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ChoiceSpec {
    Template(String),
    List(Vec<String>),
}

/// A template string, or a literal number (lm-eval allows `doc_to_target: 0`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetSpec {
    Index(usize),
    Template(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationKwargs {
    #[serde(default)]
    pub until: Vec<String>,
    #[serde(default = "default_max_gen_toks")]
    pub max_gen_toks: usize,
}

fn default_max_gen_toks() -> usize {
    256
}
fn default_delimiter() -> String {
    " ".into()
}
fn default_fewshot_delimiter() -> String {
    "\n\n".into()
}
fn default_seed() -> u64 {
    1234
}

/// How few-shot examples are picked from their pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FewshotSampler {
    #[default]
    Random,
    FirstN,
}

/// Which documents a task evaluates when it does not evaluate them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SampleOrder {
    /// A seeded shuffle: `sample`/`--limit` take a spread of the whole file.
    #[default]
    Seeded,
    /// The file's own order: the first documents, as lm-eval's `--limit` and
    /// llama.cpp's `llama-perplexity` take them (comparisons with those tools).
    File,
}

/// How a generated answer is reduced before exact match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Trimmed text.
    #[default]
    None,
    /// The final number: after `####` if present, else the last number.
    Number,
    /// The last word, surrounding punctuation removed.
    LastWord,
    /// TriviaQA/SQuAD answer normalisation, applied to answer and targets alike:
    /// lower case, punctuation and the articles a/an/the removed, spaces collapsed.
    Normalized,
    /// The option letter (A–J) of a lettered multiple-choice answer: after
    /// "answer is"/"Answer:" when the reply says so, else the first standalone capital A–J.
    Letter,
}

/// One task as written in a suite file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub task: String,
    /// A catalog dataset name (`openweigh suites` lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// A local data file (.arrow, .jsonl, .jsonl.gz, .json), relative to the suite file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_files: Option<PathBuf>,
    pub output_type: OutputType,
    /// Text put before every prompt, a template (lm-eval's `description`).
    #[serde(default)]
    pub description: String,
    pub doc_to_text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_to_choice: Option<ChoiceSpec>,
    pub doc_to_target: TargetSpec,
    /// Target used when the document serves as a few-shot example (default: doc_to_target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_target: Option<String>,
    #[serde(default = "default_delimiter")]
    pub target_delimiter: String,
    #[serde(default = "default_fewshot_delimiter")]
    pub fewshot_delimiter: String,
    #[serde(default)]
    pub num_fewshot: usize,
    #[serde(default)]
    pub metric_list: Vec<MetricSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation_kwargs: Option<GenerationKwargs>,
    #[serde(default)]
    pub filter: Filter,
    /// Evaluate a fixed, seeded sample of this many documents (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<usize>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `seeded` (default) or `file`: which documents `sample` and `--limit`
    /// take, and from which end few-shot examples are held out.
    #[serde(default, skip_serializing_if = "is_default")]
    pub sample_order: SampleOrder,
    /// Wrap each prompt in the model's chat template.
    #[serde(default)]
    pub chat_template: bool,
    /// A template giving each document a group (e.g. MMLU's subject category);
    /// scores are also reported per group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<String>,
    /// Where few-shot examples come from: a catalog dataset (e.g. `mmlu_dev`)
    /// or a local file. Without either they are drawn from the task's own
    /// documents and those are never evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_data_files: Option<PathBuf>,
    /// `random` (seeded order, the default) or `first_n` (the pool's own order: a fixed list).
    #[serde(default)]
    pub fewshot_sampler: FewshotSampler,
    /// A template that must give the same value for an example and the item
    /// it precedes (e.g. `{{subject}}`: MMLU examples of the item's own subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fewshot_match: Option<String>,
    /// pass@1 only: seconds a generated program may run before it counts as failed.
    #[serde(default = "default_exec_timeout_s")]
    pub exec_timeout_s: f64,
}

fn default_exec_timeout_s() -> f64 {
    10.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SuiteFile {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    /// Take tasks from another suite (a name or a path), seeded samples of
    /// the sizes in `sample`; only the tasks named there are kept.
    #[serde(default)]
    pub(super) extends: Option<String>,
    #[serde(default)]
    pub(super) sample: std::collections::BTreeMap<String, usize>,
    /// Sets `chat_template` of every task (e.g. a chat-mode variant of a suite).
    #[serde(default)]
    pub(super) chat_template: Option<bool>,
    #[serde(default)]
    pub(super) tasks: Vec<TaskSpec>,
}

/// Parses a suite file's text with a file:line error.
pub(super) fn parse_file(path: &Path, text: &str) -> Result<SuiteFile> {
    serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(1);
        UserError::BadFileAt {
            path: path.to_path_buf(),
            line,
            message: format!(
                "{}; see suites/standard.yaml for the accepted fields",
                crate::error::fold_lines(&e.to_string())
            ),
        }
        .into()
    })
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
