//! Suites: YAML files listing tasks in lm-evaluation-harness vocabulary
//! (`doc_to_text`, `doc_to_choice`, `doc_to_target`, `target_delimiter`,
//! `output_type`, `num_fewshot`, `metric_list`, `generation_kwargs`), their
//! validation with file/line errors, the seeded sample of documents, and the
//! rendering of each document into an [`Item`]. Everything here happens before
//! any weights are loaded.

pub mod data;
pub mod listing;
pub mod template;

use crate::catalog;
use crate::error::UserError;
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Suites compiled into the binary, so `openweigh run` works from any folder.
pub const EMBEDDED: &[(&str, &str)] =
    &[("quick", include_str!("../../suites/quick.yaml")), ("standard", include_str!("../../suites/standard.yaml"))];

pub const DEFAULT_SUITE: &str = "quick";

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
struct SuiteFile {
    name: String,
    #[serde(default)]
    description: String,
    /// Take tasks from another suite (a name or a path), seeded samples of
    /// the sizes in `sample`; only the tasks named there are kept.
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    sample: std::collections::BTreeMap<String, usize>,
    /// Sets `chat_template` of every task (e.g. a chat-mode variant of a suite).
    #[serde(default)]
    chat_template: Option<bool>,
    #[serde(default)]
    tasks: Vec<TaskSpec>,
}

/// Parses a suite file's text with a file:line error.
fn parse_file(path: &Path, text: &str) -> Result<SuiteFile> {
    serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line()).unwrap_or(1);
        UserError::SuiteAt {
            path: path.to_path_buf(),
            line,
            message: format!("{e}; see suites/standard.yaml for the accepted fields"),
        }
        .into()
    })
}

/// What the model is asked for one item.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ItemKind {
    /// `choices` are the raw choice texts; each continuation scored is
    /// `target_delimiter + choice`. With `continuation` set (partial scoring,
    /// lm-eval's multiple-input tasks such as Winogrande), each choice instead
    /// completes the context (`prompt + choice`) and the one continuation
    /// `target_delimiter + continuation` is scored after each.
    MultipleChoice {
        choices: Vec<String>,
        gold: usize,
        target_delimiter: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        continuation: Option<String>,
    },
    Generate {
        target: String,
        /// Further accepted answers (e.g. TriviaQA's aliases).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        also_accepted: Vec<String>,
        until: Vec<String>,
        max_tokens: usize,
    },
}

impl ItemKind {
    /// (context suffix, scored continuation) per choice, for log-likelihood scoring.
    pub fn scored_pairs(&self) -> Vec<(String, String)> {
        match self {
            ItemKind::MultipleChoice { choices, target_delimiter, continuation: None, .. } => {
                choices.iter().map(|c| (String::new(), format!("{target_delimiter}{c}"))).collect()
            }
            ItemKind::MultipleChoice { choices, target_delimiter, continuation: Some(cont), .. } => {
                choices.iter().map(|c| (c.clone(), format!("{target_delimiter}{cont}"))).collect()
            }
            ItemKind::Generate { .. } => Vec::new(),
        }
    }
}

/// One rendered document.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// `<task>/<row index in the data file>`: stable across runs and limits.
    pub id: String,
    /// The prompt before any chat template: description, few-shot examples, doc_to_text.
    pub prompt: String,
    #[serde(flatten)]
    pub kind: ItemKind,
    /// sha256 (first 16 hex digits) of prompt, choices and target: what `compare` matches.
    pub prompt_hash: String,
    /// The document's group (`group_by`), if the task has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Bytes of `prompt` before the document's own text: description and
    /// few-shot examples (shared by the task's items unless `fewshot_match`).
    #[serde(skip)]
    pub prefix_len: usize,
}

pub struct Task {
    pub spec: TaskSpec,
    /// The catalog dataset, when the task names one.
    pub dataset: Option<&'static catalog::Dataset>,
    pub data_path: PathBuf,
    pub data_sha256: String,
    pub data_licence: String,
    /// Documents in the data file.
    pub n_documents: usize,
    pub items: Vec<Item>,
    pub metrics: Vec<String>,
}

pub struct Suite {
    pub name: String,
    pub description: String,
    /// The file it came from, or `<embedded>/NAME.yaml`.
    pub path: PathBuf,
    /// sha256 of the suite file's text.
    pub sha256: String,
    pub tasks: Vec<Task>,
}

/// Finds a suite's text: an existing path, `suites/NAME.yaml`, or an embedded suite.
fn resolve(name_or_path: &str) -> Result<(PathBuf, String)> {
    let p = Path::new(name_or_path);
    if p.extension().is_some() || name_or_path.contains('/') {
        let text = std::fs::read_to_string(p).map_err(|_| UserError::MissingFile {
            path: p.into(),
            fix: "pass an existing suite .yaml or a suite name such as `quick`".into(),
        })?;
        return Ok((p.into(), text));
    }
    let local = Path::new("suites").join(format!("{name_or_path}.yaml"));
    if let Ok(text) = std::fs::read_to_string(&local) {
        return Ok((local, text));
    }
    match EMBEDDED.iter().find(|(n, _)| *n == name_or_path) {
        Some((n, text)) => Ok((PathBuf::from(format!("<embedded>/{n}.yaml")), text.to_string())),
        None => Err(UserError::UnknownSuite(name_or_path.into()).into()),
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1).unwrap_or(1)
}

const KNOWN_METRICS: &[&str] = &["acc", "acc_norm", "exact_match", "pass@1"];

impl Suite {
    /// Parses and validates a suite, fetches its data, and renders its items.
    /// `limit` caps the items per task (a prefix of the task's seeded sample).
    pub fn load(name_or_path: &str, limit: Option<usize>) -> Result<Suite> {
        let (suite_path, text) = resolve(name_or_path)?;
        let mut file = parse_file(&suite_path, &text)?;
        let mut sha = Sha256::new();
        sha.update(text.as_bytes());
        // The file the tasks are written in (the parent's with `extends`):
        // error lines point into it and `data_files` are relative to its folder.
        let (mut path, mut text) = (suite_path.clone(), text);
        if let Some(parent) = file.extends.clone() {
            let (parent_path, parent_text) = resolve(&parent)?;
            let parent_file = parse_file(&parent_path, &parent_text)?;
            if parent_file.extends.is_some() {
                return Err(UserError::Suite {
                    path: path.clone(),
                    message: format!(
                        "`extends: {parent}` itself extends another suite; extend the base suite directly"
                    ),
                }
                .into());
            }
            for name in file.sample.keys() {
                if !parent_file.tasks.iter().any(|t| &t.task == name) {
                    return Err(UserError::SuiteAt {
                        path: path.clone(),
                        line: line_of(&text, &format!("{name}:")),
                        message: format!("`sample` names task '{name}', which suite '{parent}' does not have"),
                    }
                    .into());
                }
            }
            if !file.tasks.is_empty() {
                return Err(UserError::Suite {
                    path: path.clone(),
                    message:
                        "a suite with `extends` takes its tasks from there; move `tasks:` into a suite of their own"
                            .into(),
                }
                .into());
            }
            file.tasks = parent_file
                .tasks
                .into_iter()
                .filter_map(|mut t| {
                    file.sample.get(&t.task).map(|n| {
                        t.sample = Some(*n);
                        t
                    })
                })
                .collect();
            sha.update(parent_text.as_bytes());
            text = parent_text;
            path = parent_path;
        } else if !file.sample.is_empty() {
            return Err(UserError::Suite {
                path: path.clone(),
                message: "`sample:` at suite level needs `extends: SUITE`; inside a task write `sample: N`".into(),
            }
            .into());
        }
        if let Some(chat) = file.chat_template {
            for t in &mut file.tasks {
                t.chat_template = chat;
            }
        }
        let sha256 = hex::encode(sha.finalize());
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for spec in &file.tasks {
            validate(spec).map_err(|message| UserError::SuiteAt {
                path: path.clone(),
                line: line_of(&text, &format!("task: {}", spec.task)),
                message: format!("task '{}': {message}", spec.task),
            })?;
        }
        let mut tasks = Vec::new();
        for spec in file.tasks {
            let line = line_of(&text, &format!("task: {}", spec.task));
            tasks.push(build_task(spec, &base, limit).map_err(|e| match e.downcast::<UserError>() {
                Ok(u) => anyhow::Error::from(u),
                Err(e) => UserError::SuiteAt { path: path.clone(), line, message: format!("{e:#}") }.into(),
            })?);
        }
        Ok(Suite { name: file.name, description: file.description, path: suite_path, sha256, tasks })
    }
}

/// Checks one task's fields; the message names the field and the fix.
fn validate(spec: &TaskSpec) -> std::result::Result<(), String> {
    match (&spec.dataset, &spec.data_files) {
        (None, None) => return Err("needs `dataset:` (a catalog name) or `data_files:` (a local file)".into()),
        (Some(_), Some(_)) => return Err("give either `dataset:` or `data_files:`, not both".into()),
        (Some(d), None) if catalog::dataset(d).is_none() => {
            let known: Vec<_> = catalog::DATASETS.iter().map(|d| d.asset.name).collect();
            return Err(format!(
                "unknown dataset '{d}'; known: {} (`openweigh suites --datasets` lists them)",
                known.join(", ")
            ));
        }
        _ => {}
    }
    if spec.output_type == OutputType::MultipleChoice && spec.doc_to_choice.is_none() {
        return Err("output_type multiple_choice needs `doc_to_choice`".into());
    }
    if spec.output_type == OutputType::GenerateUntil && spec.doc_to_choice.is_some() {
        return Err("`doc_to_choice` only applies to output_type multiple_choice".into());
    }
    for m in &spec.metric_list {
        if !KNOWN_METRICS.contains(&m.name()) {
            return Err(format!(
                "unknown metric '{}' in metric_list; use one of {}",
                m.name(),
                KNOWN_METRICS.join(", ")
            ));
        }
        let ok = match spec.output_type {
            OutputType::MultipleChoice => m.name() != "exact_match",
            OutputType::GenerateUntil => m.name() == "exact_match" || m.name() == "pass@1",
        };
        if !ok {
            return Err(format!("metric '{}' does not apply to this output_type", m.name()));
        }
    }
    if spec.sample == Some(0) {
        return Err("`sample: 0` selects no items; remove it to use every document".into());
    }
    let env = template::environment();
    let mut templates = vec![("doc_to_text", spec.doc_to_text.as_str()), ("description", spec.description.as_str())];
    if let Some(ChoiceSpec::Template(t)) = &spec.doc_to_choice {
        templates.push(("doc_to_choice", t));
    }
    if let TargetSpec::Template(t) = &spec.doc_to_target {
        templates.push(("doc_to_target", t));
    }
    if let Some(t) = &spec.fewshot_target {
        templates.push(("fewshot_target", t));
    }
    if let Some(t) = &spec.group_by {
        templates.push(("group_by", t));
    }
    if let Some(t) = &spec.fewshot_match {
        templates.push(("fewshot_match", t));
    }
    match (&spec.fewshot_dataset, &spec.fewshot_data_files) {
        (Some(_), Some(_)) => return Err("give either `fewshot_dataset:` or `fewshot_data_files:`, not both".into()),
        (Some(d), None) if catalog::dataset(d).is_none() => {
            return Err(format!("unknown fewshot_dataset '{d}'; `openweigh suites --datasets` lists them"))
        }
        (None, None) if spec.fewshot_match.is_some() || spec.fewshot_sampler == FewshotSampler::FirstN => {
            return Err("`fewshot_match` and `fewshot_sampler: first_n` need a pool: set `fewshot_dataset:` or `fewshot_data_files:`".into())
        }
        _ => {}
    }
    if !(spec.exec_timeout_s > 0.0 && spec.exec_timeout_s <= 600.0) {
        return Err(format!("exec_timeout_s {} is out of range; use 0 < seconds <= 600", spec.exec_timeout_s));
    }
    for (field, src) in templates {
        env.template_from_str(src).map_err(|e| format!("`{field}` is not a valid Jinja template: {e}"))?;
    }
    Ok(())
}

fn render_choices(env: &minijinja::Environment, spec: &TaskSpec, doc: &minijinja::Value) -> Result<Vec<String>> {
    match spec.doc_to_choice.as_ref().expect("validated") {
        ChoiceSpec::List(l) => Ok(l.clone()),
        ChoiceSpec::Template(t) => {
            let v = template::evaluate(env, t, doc).context("doc_to_choice")?;
            if v.as_str().is_some() || v.len().is_none() {
                anyhow::bail!("doc_to_choice must give a list, got {v}");
            }
            v.try_iter()?.map(|c| Ok(c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string()))).collect()
        }
    }
}

/// The gold answer of a multiple-choice document as a choice index.
fn render_gold(
    env: &minijinja::Environment,
    spec: &TaskSpec,
    doc: &minijinja::Value,
    choices: &[String],
) -> Result<usize> {
    let gold = match &spec.doc_to_target {
        TargetSpec::Index(i) => *i,
        TargetSpec::Template(t) => {
            let v = template::evaluate(env, t, doc).context("doc_to_target")?;
            if let Some(i) = v.as_usize() {
                i
            } else if let Some(s) = v.as_str() {
                match s.trim().parse::<usize>() {
                    Ok(i) => i,
                    Err(_) => choices.iter().position(|c| c == s).with_context(|| {
                        format!("doc_to_target gave '{s}', neither an index nor one of the choices")
                    })?,
                }
            } else {
                anyhow::bail!("doc_to_target gave {v}, expected an index or a choice text");
            }
        }
    };
    if gold >= choices.len() {
        anyhow::bail!("doc_to_target index {gold} is out of range for {} choices", choices.len());
    }
    Ok(gold)
}

/// A generation target: one text, or a list of accepted texts (the first shown).
fn render_targets(env: &minijinja::Environment, src: &TargetSpec, doc: &minijinja::Value) -> Result<Vec<String>> {
    let targets = match src {
        TargetSpec::Index(i) => vec![i.to_string()],
        TargetSpec::Template(t) => {
            let v = template::evaluate(env, t, doc).context("doc_to_target")?;
            if v.as_str().is_none() && v.len().is_some() {
                v.try_iter()?.map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect()
            } else {
                vec![template::render(env, t, doc).context("doc_to_target")?.trim().to_string()]
            }
        }
    };
    if targets.is_empty() {
        anyhow::bail!("doc_to_target gave an empty list of answers");
    }
    Ok(targets)
}

/// lm-eval's multiple-input form (Winogrande): `doc_to_text` gives the gold
/// index, `doc_to_choice` the contexts, `doc_to_target` the shared continuation.
fn multiple_input_gold(env: &minijinja::Environment, spec: &TaskSpec, doc: &minijinja::Value) -> Result<Option<usize>> {
    if spec.output_type != OutputType::MultipleChoice || template::sole_expression(&spec.doc_to_text).is_none() {
        return Ok(None);
    }
    let v = template::evaluate(env, &spec.doc_to_text, doc).context("doc_to_text")?;
    Ok(if v.as_str().is_none() { v.as_usize() } else { None })
}

/// Text of a document used as a few-shot example: prompt, delimiter, answer.
fn fewshot_example(env: &minijinja::Environment, spec: &TaskSpec, doc: &minijinja::Value) -> Result<String> {
    if let Some(gold) = multiple_input_gold(env, spec, doc)? {
        let contexts = render_choices(env, spec, doc)?;
        let context = contexts.get(gold).context("doc_to_text index is out of range of doc_to_choice")?;
        let cont = render_targets(env, &spec.doc_to_target, doc)?.remove(0);
        return Ok(format!("{context}{}{cont}", spec.target_delimiter));
    }
    let text = template::render(env, &spec.doc_to_text, doc).context("doc_to_text")?;
    let answer = match (&spec.fewshot_target, spec.output_type) {
        (Some(t), _) => template::render(env, t, doc).context("fewshot_target")?,
        (None, OutputType::MultipleChoice) => {
            let choices = render_choices(env, spec, doc)?;
            let gold = render_gold(env, spec, doc, &choices)?;
            choices[gold].clone()
        }
        (None, OutputType::GenerateUntil) => render_targets(env, &spec.doc_to_target, doc)?.remove(0),
    };
    Ok(format!("{text}{}{answer}", spec.target_delimiter))
}

fn hash_item(prompt: &str, kind: &ItemKind) -> String {
    let mut h = Sha256::new();
    h.update(prompt.as_bytes());
    h.update(serde_json::to_vec(kind).unwrap_or_default());
    hex::encode(h.finalize())[..16].to_string()
}

/// The seeded order of documents: evaluated items come from the front
/// (`--limit N` takes a prefix, so smaller runs are subsets of larger ones),
/// few-shot examples from the back, so the two never overlap.
pub fn seeded_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    order
}

fn build_task(spec: TaskSpec, base: &Path, limit: Option<usize>) -> Result<Task> {
    let dataset = spec.dataset.as_deref().map(|name| catalog::dataset(name).expect("validated"));
    let (data_path, licence, layout) = match (dataset, &spec.data_files) {
        (Some(d), _) => (crate::assets::fetch(&d.asset)?, d.asset.licence.to_string(), d.layout),
        (None, Some(p)) => (
            if p.is_absolute() { p.clone() } else { base.join(p) },
            "see the data file".to_string(),
            catalog::DataLayout::Rows,
        ),
        (None, None) => unreachable!("validated"),
    };
    if spec.metric_list.iter().any(|m| m.name() == "pass@1") {
        crate::execute::check_python()?;
    }
    let docs = data::load_documents(&data_path, layout)?;
    let data_sha256 = crate::assets::sha256_file(&data_path)?;
    let order = seeded_order(docs.len(), spec.seed);
    // A separate pool of examples, or the far end of this task's own order.
    let pool: Option<Vec<serde_json::Value>> = match (&spec.fewshot_dataset, &spec.fewshot_data_files) {
        (Some(name), _) => {
            let d = catalog::dataset(name).expect("validated");
            Some(data::load_documents(&crate::assets::fetch(&d.asset)?, d.layout)?)
        }
        (None, Some(p)) => {
            let p = if p.is_absolute() { p.clone() } else { base.join(p) };
            Some(data::load_documents(&p, catalog::DataLayout::Rows)?)
        }
        (None, None) => None,
    };
    let holdout = if pool.is_some() { 0 } else { spec.num_fewshot };
    if holdout > 0 && holdout >= docs.len() {
        anyhow::bail!("num_fewshot {} needs more than the {} documents available", spec.num_fewshot, docs.len());
    }
    let (eval_order, own_shots) = order.split_at(docs.len() - holdout);
    let mut n = eval_order.len();
    if let Some(s) = spec.sample {
        n = n.min(s);
    }
    if let Some(l) = limit {
        n = n.min(l);
    }
    let mut chosen: Vec<usize> = eval_order[..n].to_vec();
    chosen.sort_unstable();

    let env = template::environment();
    let as_value = |i: usize| minijinja::Value::from_serialize(&docs[i]);
    // Few-shot candidates in the order they are taken, as rendered examples
    // with their match key.
    let examples: Vec<(String, String)> = match &pool {
        None => own_shots.iter().map(|&i| (i, as_value(i))).collect::<Vec<_>>(),
        Some(pool) => {
            let idx: Vec<usize> = match spec.fewshot_sampler {
                FewshotSampler::FirstN => (0..pool.len()).collect(),
                FewshotSampler::Random => seeded_order(pool.len(), spec.seed),
            };
            idx.into_iter().map(|i| (i, minijinja::Value::from_serialize(&pool[i]))).collect()
        }
    }
    .into_iter()
    .map(|(i, doc)| {
        let key = match &spec.fewshot_match {
            Some(t) => template::render(&env, t, &doc).context("fewshot_match")?,
            None => String::new(),
        };
        let text = fewshot_example(&env, &spec, &doc).with_context(|| format!("few-shot document {i}"))?;
        Ok((key, text))
    })
    .collect::<Result<_>>()?;
    let prefix_for = |doc: &minijinja::Value| -> Result<String> {
        let key = match &spec.fewshot_match {
            Some(t) => template::render(&env, t, doc).context("fewshot_match")?,
            None => String::new(),
        };
        let mut prefix = template::render(&env, &spec.description, doc).context("description")?;
        let shots: Vec<&String> =
            examples.iter().filter(|(k, _)| *k == key).map(|(_, t)| t).take(spec.num_fewshot).collect();
        if shots.len() < spec.num_fewshot {
            anyhow::bail!("num_fewshot {} but only {} examples match '{key}'", spec.num_fewshot, shots.len());
        }
        for ex in shots {
            prefix.push_str(ex);
            prefix.push_str(&spec.fewshot_delimiter);
        }
        Ok(prefix)
    };
    let mut items = Vec::with_capacity(chosen.len());
    for i in chosen {
        let doc = as_value(i);
        let build = || -> Result<Item> {
            let prefix = prefix_for(&doc)?;
            let multiple_input = multiple_input_gold(&env, &spec, &doc)?;
            let text = match multiple_input {
                Some(_) => String::new(),
                None => template::render(&env, &spec.doc_to_text, &doc).context("doc_to_text")?,
            };
            let prompt = format!("{prefix}{text}");
            let kind = match spec.output_type {
                OutputType::MultipleChoice => {
                    let choices = render_choices(&env, &spec, &doc)?;
                    if choices.len() < 2 {
                        anyhow::bail!(
                            "doc_to_choice gave {} choice(s); multiple choice needs at least 2",
                            choices.len()
                        );
                    }
                    let (gold, continuation) = match multiple_input {
                        Some(gold) if gold < choices.len() => {
                            (gold, Some(render_targets(&env, &spec.doc_to_target, &doc)?.remove(0)))
                        }
                        Some(gold) => {
                            anyhow::bail!("doc_to_text gave index {gold}, out of range for {} contexts", choices.len())
                        }
                        None => (render_gold(&env, &spec, &doc, &choices)?, None),
                    };
                    ItemKind::MultipleChoice {
                        choices,
                        gold,
                        target_delimiter: spec.target_delimiter.clone(),
                        continuation,
                    }
                }
                OutputType::GenerateUntil => {
                    let g =
                        spec.generation_kwargs.clone().unwrap_or(GenerationKwargs { until: vec![], max_gen_toks: 256 });
                    let mut targets = render_targets(&env, &spec.doc_to_target, &doc)?;
                    let target = targets.remove(0);
                    ItemKind::Generate { target, also_accepted: targets, until: g.until, max_tokens: g.max_gen_toks }
                }
            };
            let group = match &spec.group_by {
                Some(t) => Some(template::render(&env, t, &doc).context("group_by")?.trim().to_string()),
                None => None,
            };
            let prompt_hash = hash_item(&prompt, &kind);
            Ok(Item { id: format!("{}/{i}", spec.task), prompt, kind, prompt_hash, group, prefix_len: prefix.len() })
        };
        items.push(build().with_context(|| format!("document {i} of {}", data_path.display()))?);
    }
    let metrics = if spec.metric_list.is_empty() {
        match spec.output_type {
            OutputType::MultipleChoice => vec!["acc".into(), "acc_norm".into()],
            OutputType::GenerateUntil => vec!["exact_match".into()],
        }
    } else {
        spec.metric_list.iter().map(|m| m.name().to_string()).collect()
    };
    Ok(Task { dataset, data_path, data_sha256, data_licence: licence, n_documents: docs.len(), items, metrics, spec })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite_in(dir: &Path, yaml: &str, data: &str) -> PathBuf {
        std::fs::write(dir.join("d.jsonl"), data).unwrap();
        let p = dir.join("s.yaml");
        std::fs::write(&p, yaml).unwrap();
        p
    }

    const DOCS: &str = "{\"q\": \"one\", \"a\": [\"x\", \"y\"], \"g\": 1}\n{\"q\": \"two\", \"a\": [\"x\", \"z\"], \"g\": 0}\n{\"q\": \"three\", \"a\": [\"u\", \"v\"], \"g\": 1}\n{\"q\": \"four\", \"a\": [\"m\", \"n\"], \"g\": 0}\n";

    #[test]
    fn renders_items_with_delimiter_and_gold() {
        let tmp = tempfile::tempdir().unwrap();
        let p = suite_in(
            tmp.path(),
            "name: s\ntasks:\n  - task: t\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"Q: {{q}}\\nA:\"\n    doc_to_choice: \"{{a}}\"\n    doc_to_target: \"{{g}}\"\n",
            DOCS,
        );
        let s = Suite::load(p.to_str().unwrap(), None).unwrap();
        let t = &s.tasks[0];
        assert_eq!(t.items.len(), 4);
        assert_eq!(t.metrics, vec!["acc", "acc_norm"]);
        let first = &t.items[0];
        assert_eq!(first.id, "t/0");
        assert_eq!(first.prompt, "Q: one\nA:");
        match &first.kind {
            ItemKind::MultipleChoice { choices, gold, target_delimiter, .. } => {
                assert_eq!(choices, &vec!["x".to_string(), "y".to_string()]);
                assert_eq!(*gold, 1);
                assert_eq!(target_delimiter, " ");
            }
            _ => panic!("expected multiple choice"),
        }
    }

    #[test]
    fn fewshot_examples_never_overlap_items_and_limit_takes_a_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let p = suite_in(
            tmp.path(),
            "name: s\ntasks:\n  - task: t\n    data_files: d.jsonl\n    output_type: generate_until\n    num_fewshot: 1\n    doc_to_text: \"Q: {{q}}\"\n    doc_to_target: \"{{g}}\"\n",
            DOCS,
        );
        let all = Suite::load(p.to_str().unwrap(), None).unwrap();
        let t = &all.tasks[0];
        assert_eq!(t.items.len(), 3);
        let prefix = &t.items[0].prompt[..t.items[0].prefix_len];
        assert!(prefix.ends_with("\n\n"));
        for item in &t.items {
            assert!(item.prompt.starts_with(prefix));
            let own = &item.prompt[item.prefix_len..];
            assert!(!prefix.contains(own), "few-shot example {own} is also evaluated");
        }
        let two = Suite::load(p.to_str().unwrap(), Some(2)).unwrap();
        let order = seeded_order(4, 1234);
        let mut expect: Vec<String> = order[..2].iter().map(|i| format!("t/{i}")).collect();
        expect.sort();
        let got: Vec<String> = two.tasks[0].items.iter().map(|i| i.id.clone()).collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn fewshot_pool_first_n_matched_per_group() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("pool.jsonl"),
            "{\"q\": \"p1\", \"a\": [\"x\", \"y\"], \"g\": 0}\n{\"q\": \"p2\", \"a\": [\"x\", \"z\"], \"g\": 1}\n{\"q\": \"p3\", \"a\": [\"u\", \"v\"], \"g\": 0}\n",
        )
        .unwrap();
        let p = suite_in(
            tmp.path(),
            "name: s\ntasks:\n  - task: t\n    data_files: d.jsonl\n    output_type: multiple_choice\n    description: \"About {{ g }}.\\n\"\n    num_fewshot: 1\n    fewshot_data_files: pool.jsonl\n    fewshot_sampler: first_n\n    fewshot_match: \"{{ g }}\"\n    doc_to_text: \"Q: {{q}}\\nA:\"\n    doc_to_choice: \"{{a}}\"\n    doc_to_target: \"{{g}}\"\n",
            DOCS,
        );
        let s = Suite::load(p.to_str().unwrap(), None).unwrap();
        let t = &s.tasks[0];
        // Every document is evaluated: the examples come from the pool.
        assert_eq!(t.items.len(), 4);
        // Document 0 has g = 1: the first pool example with g = 1 is p2.
        assert_eq!(t.items[0].prompt, "About 1.\nQ: p2\nA: z\n\nQ: one\nA:");
        // Document 1 has g = 0: the first with g = 0 is p1.
        assert_eq!(t.items[1].prompt, "About 0.\nQ: p1\nA: x\n\nQ: two\nA:");
        assert_eq!(&t.items[1].prompt[t.items[1].prefix_len..], "Q: two\nA:");
    }

    #[test]
    fn seeded_order_is_stable() {
        // Pinned: a change here changes which items every suite samples.
        assert_eq!(seeded_order(10, 1234), seeded_order(10, 1234));
        assert_ne!(seeded_order(10, 1234), seeded_order(10, 1235));
        let mut sorted = seeded_order(100, 7);
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn validation_names_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let p = suite_in(
            tmp.path(),
            "name: s\ntasks:\n  - task: t\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"Q\"\n    doc_to_target: 0\n",
            DOCS,
        );
        let e = Suite::load(p.to_str().unwrap(), None).err().unwrap().to_string();
        assert!(e.contains("s.yaml:3:") && e.contains("needs `doc_to_choice`"), "{e}");
        let p = suite_in(
            tmp.path(),
            "name: s\ntasks:\n  - task: t\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"Q\"\n    doc_to_choice: \"{{a}}\"\n    doc_to_target: \"{{g + 5}}\"\n",
            DOCS,
        );
        let e = format!("{:#}", Suite::load(p.to_str().unwrap(), None).err().unwrap());
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn embedded_suites_parse_and_quick_samples_standard() {
        let parse = |name: &str| -> SuiteFile {
            let text = EMBEDDED.iter().find(|(n, _)| *n == name).unwrap().1;
            serde_yaml::from_str(text).unwrap()
        };
        let standard = parse("standard");
        assert_eq!(standard.tasks.len(), 12);
        for t in &standard.tasks {
            validate(t).unwrap();
        }
        let quick = parse("quick");
        assert_eq!(quick.extends.as_deref(), Some("standard"));
        assert_eq!(quick.sample.len(), standard.tasks.len(), "quick samples every standard task");
        for name in quick.sample.keys() {
            assert!(standard.tasks.iter().any(|t| &t.task == name), "{name}");
        }
    }

    #[test]
    fn extends_takes_seeded_samples_and_checks_task_names() {
        let tmp = tempfile::tempdir().unwrap();
        let base = suite_in(
            tmp.path(),
            "name: base\ntasks:\n  - task: t\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"Q: {{q}}\"\n    doc_to_choice: \"{{a}}\"\n    doc_to_target: \"{{g}}\"\n    group_by: \"{{ 'even' if g == 0 else 'odd' }}\"\n",
            DOCS,
        );
        let child = tmp.path().join("child.yaml");
        std::fs::write(
            &child,
            format!("name: child\nextends: {}\nchat_template: true\nsample:\n  t: 2\n", base.display()),
        )
        .unwrap();
        let s = Suite::load(child.to_str().unwrap(), None).unwrap();
        assert_eq!(s.name, "child");
        let t = &s.tasks[0];
        assert_eq!(t.items.len(), 2);
        assert!(t.spec.chat_template);
        assert!(t.items.iter().all(|i| matches!(i.group.as_deref(), Some("even") | Some("odd"))));
        let full = Suite::load(base.to_str().unwrap(), None).unwrap();
        let all: Vec<&str> = full.tasks[0].items.iter().map(|i| i.prompt_hash.as_str()).collect();
        assert!(t.items.iter().all(|i| all.contains(&i.prompt_hash.as_str())));
        std::fs::write(&child, format!("name: child\nextends: {}\nsample:\n  nope: 2\n", base.display())).unwrap();
        let e = Suite::load(child.to_str().unwrap(), None).err().unwrap().to_string();
        assert!(e.contains("child.yaml:4:") && e.contains("'nope'"), "{e}");
    }

    #[test]
    fn multiple_input_tasks_share_the_continuation() {
        let tmp = tempfile::tempdir().unwrap();
        let p = suite_in(
            tmp.path(),
            "name: s\ntasks:\n  - task: w\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"{{ g }}\"\n    doc_to_choice: \"{{ ['It was ' ~ a[0], 'It was ' ~ a[1]] }}\"\n    doc_to_target: \"{{ q }} again.\"\n",
            DOCS,
        );
        let s = Suite::load(p.to_str().unwrap(), None).unwrap();
        let item = &s.tasks[0].items[0];
        assert_eq!(item.prompt, "");
        assert_eq!(
            item.kind.scored_pairs(),
            vec![
                ("It was x".to_string(), " one again.".to_string()),
                ("It was y".to_string(), " one again.".to_string())
            ]
        );
        match &item.kind {
            ItemKind::MultipleChoice { gold, continuation, .. } => {
                assert_eq!(*gold, 1);
                assert_eq!(continuation.as_deref(), Some("one again."));
            }
            k => panic!("{k:?}"),
        }
    }
}
