//! Importing lm-evaluation-harness task YAML files into openweigh suites.
//!
//! The common subset converts one to one, since suites already speak
//! lm-eval's vocabulary: Jinja `doc_to_text` / `doc_to_choice` /
//! `doc_to_target` (a bare field name such as `label` becomes `{{ label }}`, as
//! lm-eval reads it), `target_delimiter`, `fewshot_delimiter`, `description`,
//! `output_type` multiple_choice and generate_until, `metric_list` acc /
//! acc_norm / exact_match, `num_fewshot`, greedy `generation_kwargs`, and
//! `include:` of a base file. `dataset_path`/`dataset_name` are mapped to a
//! catalog dataset. Anything that needs Python (`!function` hooks,
//! `process_docs`, custom filters) is refused with an error naming the field.

use crate::catalog;
use crate::error::UserError;
use crate::suite::{ChoiceSpec, Filter, GenerationKwargs, MetricSpec, OutputType, TargetSpec, TaskSpec};
use anyhow::{Context, Result};
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// (lm-eval `dataset_path`, `dataset_name` or "" for any) → catalog dataset.
/// ARC and OpenBookQA map to the HF-schema validation files the catalog holds.
const DATASET_MAP: &[(&str, &str, &str)] = &[
    ("allenai/ai2_arc", "ARC-Easy", "arc_easy"),
    ("ai2_arc", "ARC-Easy", "arc_easy"),
    ("allenai/ai2_arc", "ARC-Challenge", "arc_challenge"),
    ("ai2_arc", "ARC-Challenge", "arc_challenge"),
    ("baber/piqa", "", "piqa"),
    ("piqa", "", "piqa"),
    ("ybisk/piqa", "", "piqa"),
    ("allenai/openbookqa", "main", "openbookqa"),
    ("openbookqa", "main", "openbookqa"),
    ("Rowan/hellaswag", "", "hellaswag"),
    ("hellaswag", "", "hellaswag"),
    ("tau/commonsense_qa", "", "commonsense_qa"),
    ("allenai/winogrande", "winogrande_xl", "winogrande"),
    ("winogrande", "winogrande_xl", "winogrande"),
    ("super_glue", "boolq", "boolq"),
    ("aps/super_glue", "boolq", "boolq"),
    ("google/boolq", "", "boolq"),
    ("mandarjoshi/trivia_qa", "rc.nocontext", "triviaqa"),
    ("trivia_qa", "rc.nocontext", "triviaqa"),
    ("openai/gsm8k", "main", "gsm8k"),
    ("gsm8k", "main", "gsm8k"),
    ("openai/openai_humaneval", "", "humaneval"),
    ("openai_humaneval", "", "humaneval"),
];

/// Keys the importer converts.
const CONVERTED: &[&str] = &[
    "doc_to_text",
    "doc_to_choice",
    "doc_to_target",
    "target_delimiter",
    "fewshot_delimiter",
    "description",
    "num_fewshot",
    "metric_list",
    "generation_kwargs",
    "filter_list",
    "repeats",
];

/// Keys that describe the task for lm-eval's own bookkeeping and change
/// nothing about the prompts or scores.
const IGNORED: &[&str] = &[
    "tag",
    "group",
    "metadata",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "training_split",
    "validation_split",
    "test_split",
    "fewshot_split",
    "dataset_kwargs",
    "unsafe_code",
    "output_type",
    "task",
    "dataset_path",
    "dataset_name",
    "include",
];

fn bad(path: &Path, field: &str, message: String) -> anyhow::Error {
    UserError::Suite { path: path.into(), message: format!("`{field}`: {message}") }.into()
}

/// Reads a task YAML with its `include:` chain merged (the including file wins).
fn read_merged(path: &Path, depth: usize) -> Result<Mapping> {
    let text = std::fs::read_to_string(path).map_err(|_| UserError::MissingFile {
        path: path.into(),
        fix: "pass an lm-eval task .yaml (e.g. lm_eval/tasks/arc/arc_easy.yaml from the lm-eval wheel)".into(),
    })?;
    let value: Value = serde_yaml::from_str(&text).map_err(|e| UserError::SuiteAt {
        path: path.into(),
        line: e.location().map(|l| l.line()).unwrap_or(1),
        message: format!("not valid YAML: {e}"),
    })?;
    let Value::Mapping(mut map) = value else {
        return Err(UserError::Suite { path: path.into(), message: "expected a mapping of task fields".into() }.into());
    };
    if let Some(inc) = map.get("include").and_then(Value::as_str) {
        if depth > 8 {
            return Err(bad(path, "include", "includes nest more than 8 deep".into()));
        }
        let base_path: PathBuf = path.parent().unwrap_or(Path::new(".")).join(inc);
        let mut base = read_merged(&base_path, depth + 1)?;
        map.remove("include");
        for (k, v) in map {
            base.insert(k, v);
        }
        map = base;
    }
    Ok(map)
}

/// The first `!function` anywhere under `value`, as `field` paths.
fn find_function(value: &Value, field: &str) -> Option<String> {
    match value {
        Value::Tagged(t) if t.tag == "function" || t.tag == "!function" => Some(field.to_string()),
        Value::Tagged(t) => find_function(&t.value, field),
        Value::Mapping(m) => m.iter().find_map(|(k, v)| {
            let key = k.as_str().unwrap_or("?");
            find_function(v, &format!("{field}.{key}"))
        }),
        Value::Sequence(s) => s.iter().enumerate().find_map(|(i, v)| find_function(v, &format!("{field}[{i}]"))),
        _ => None,
    }
}

/// A bare identifier names a document field in lm-eval; make it a template.
fn as_template(s: &str) -> String {
    let ident = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.chars().next().is_some_and(|c| c.is_ascii_digit());
    if ident {
        format!("{{{{ {s} }}}}")
    } else {
        s.to_string()
    }
}

fn string_field(path: &Path, map: &Mapping, field: &str) -> Result<Option<String>> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(v) => Err(bad(path, field, format!("expected a string, got {v:?}"))),
    }
}

/// Converts one lm-eval task file into suite YAML; returns (task name, YAML).
/// `dataset` overrides the dataset mapping.
pub fn import(path: &Path, dataset: Option<&str>) -> Result<(String, String)> {
    let map = read_merged(path, 0)?;
    for (k, v) in &map {
        let key = k.as_str().unwrap_or("?");
        if let Some(field) = find_function(v, key) {
            return Err(bad(
                path,
                &field,
                "is a Python hook (`!function`), which openweigh cannot run; write it as a Jinja template in the converted suite, or use the native task (`openweigh suites`)".into(),
            ));
        }
    }
    let task = string_field(path, &map, "task")?.ok_or_else(|| bad(path, "task", "missing".into()))?;
    let output_type = match string_field(path, &map, "output_type")?.as_deref() {
        Some("multiple_choice") | None => OutputType::MultipleChoice,
        Some("generate_until") => OutputType::GenerateUntil,
        Some(other) => {
            return Err(bad(
                path,
                "output_type",
                format!("'{other}' is not supported; openweigh runs multiple_choice and generate_until"),
            ))
        }
    };
    let ds_path = string_field(path, &map, "dataset_path")?.unwrap_or_default();
    let ds_name = string_field(path, &map, "dataset_name")?.unwrap_or_default();
    let dataset = match dataset {
        Some(d) if catalog::dataset(d).is_some() => d.to_string(),
        Some(d) => return Err(UserError::BadFlag { flag: "--dataset", message: format!("unknown catalog dataset '{d}'; `openweigh suites --datasets` lists them") }.into()),
        None => DATASET_MAP
            .iter()
            .find(|(p, n, _)| *p == ds_path && (n.is_empty() || *n == ds_name))
            .map(|(_, _, c)| c.to_string())
            .ok_or_else(|| {
                bad(
                    path,
                    "dataset_path",
                    format!("no catalog dataset for {ds_path} {ds_name} (no hub access here); pass --dataset NAME (`openweigh suites --datasets`)"),
                )
            })?,
    };
    let mut notes = Vec::new();
    for (k, _) in &map {
        let key = k.as_str().unwrap_or("?");
        if !CONVERTED.contains(&key) && !IGNORED.contains(&key) {
            return Err(bad(
                path,
                key,
                "is not supported by the importer; remove it or write the suite by hand".into(),
            ));
        }
    }
    let doc_to_text =
        string_field(path, &map, "doc_to_text")?.ok_or_else(|| bad(path, "doc_to_text", "missing".into()))?;
    let doc_to_choice = match map.get("doc_to_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(ChoiceSpec::Template(as_template(s))),
        Some(Value::Sequence(items)) => Some(ChoiceSpec::List(
            items.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| format!("{v:?}"))).collect(),
        )),
        Some(v) => return Err(bad(path, "doc_to_choice", format!("expected a template or a list, got {v:?}"))),
    };
    let doc_to_target = match map.get("doc_to_target") {
        Some(Value::Number(n)) if n.as_u64().is_some() => TargetSpec::Index(n.as_u64().unwrap_or(0) as usize),
        Some(Value::String(s)) => TargetSpec::Template(as_template(s)),
        _ => return Err(bad(path, "doc_to_target", "missing, or neither a template nor an index".into())),
    };
    let mut metric_list = Vec::new();
    let mut filter = Filter::None;
    if let Some(Value::Sequence(ms)) = map.get("metric_list") {
        for m in ms {
            let name = m.get("metric").and_then(Value::as_str).or(m.as_str()).unwrap_or_default().to_string();
            if !["acc", "acc_norm", "exact_match"].contains(&name.as_str()) {
                return Err(bad(
                    path,
                    "metric_list",
                    format!("metric '{name}' is not supported; use acc, acc_norm or exact_match"),
                ));
            }
            let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
            if name == "exact_match" && (flag("ignore_case") || flag("ignore_punctuation")) {
                filter = Filter::Normalized;
                notes.push("exact_match with ignore_case/ignore_punctuation uses the `normalized` filter (it also drops the articles a/an/the, as TriviaQA's official scorer does)".to_string());
            }
            metric_list.push(MetricSpec::Name(name));
        }
    }
    if let Some(Value::Sequence(filters)) = map.get("filter_list") {
        for f in filters {
            let steps: Vec<String> = f
                .get("filter")
                .and_then(Value::as_sequence)
                .map(|s| s.iter().filter_map(|x| x.get("function").and_then(Value::as_str).map(String::from)).collect())
                .unwrap_or_default();
            let harmless = steps.iter().all(|s| s == "remove_whitespace" || s == "take_first");
            let number = steps.iter().all(|s| s == "regex" || s == "take_first") && steps.iter().any(|s| s == "regex");
            if number {
                // GSM8K's strict-match (`#### N`) and flexible-extract (last number) filters.
                filter = Filter::Number;
                if !notes.iter().any(|n| n.contains("number")) {
                    notes.push("the regex filters use openweigh's `number` filter: the `#### N` answer if the model writes one, else the last number (lm-eval's strict-match, then flexible-extract)".into());
                }
            } else if !harmless {
                return Err(bad(
                    path,
                    "filter_list",
                    format!("filters {steps:?} are not supported (only remove_whitespace and take_first); set `filter:` in the converted suite instead"),
                ));
            }
        }
    }
    let generation_kwargs = match map.get("generation_kwargs") {
        None | Some(Value::Null) => None,
        Some(g) => {
            if g.get("do_sample").and_then(Value::as_bool).unwrap_or(false)
                || g.get("temperature").and_then(Value::as_f64).unwrap_or(0.0) > 0.0
            {
                return Err(bad(
                    path,
                    "generation_kwargs",
                    "sampling is not supported; openweigh decodes greedily".into(),
                ));
            }
            let until = match g.get("until") {
                Some(Value::Sequence(s)) => s.iter().filter_map(Value::as_str).map(String::from).collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            };
            let max_gen_toks = g.get("max_gen_toks").and_then(Value::as_u64).unwrap_or(256) as usize;
            Some(GenerationKwargs { until, max_gen_toks })
        }
    };
    if let Some(r) = map.get("repeats").and_then(Value::as_u64).filter(|r| *r != 1) {
        return Err(bad(
            path,
            "repeats",
            format!("{r} repeats (sampling) are not supported; openweigh decodes once, greedily"),
        ));
    }
    let spec = TaskSpec {
        task: task.clone(),
        dataset: Some(dataset.clone()),
        data_files: None,
        output_type,
        description: string_field(path, &map, "description")?.unwrap_or_default(),
        doc_to_text: as_template(&doc_to_text),
        doc_to_choice,
        doc_to_target,
        fewshot_target: None,
        target_delimiter: string_field(path, &map, "target_delimiter")?.unwrap_or_else(|| " ".into()),
        fewshot_delimiter: string_field(path, &map, "fewshot_delimiter")?.unwrap_or_else(|| "\n\n".into()),
        num_fewshot: map.get("num_fewshot").and_then(Value::as_u64).unwrap_or(0) as usize,
        metric_list,
        generation_kwargs,
        filter,
        sample: None,
        seed: 1234,
        chat_template: false,
        group_by: None,
        fewshot_dataset: None,
        fewshot_data_files: None,
        fewshot_sampler: Default::default(),
        fewshot_match: None,
        exec_timeout_s: 10.0,
    };
    #[derive(serde::Serialize)]
    struct SuiteOut<'a> {
        name: &'a str,
        description: String,
        tasks: Vec<&'a TaskSpec>,
    }
    let text = std::fs::read(path)?;
    let body = serde_yaml::to_string(&SuiteOut {
        name: &task,
        description: format!(
            "Imported from lm-evaluation-harness task '{task}' ({ds_path} {ds_name} → catalog dataset {dataset})"
        ),
        tasks: vec![&spec],
    })
    .context("writing the converted suite")?;
    let mut header = format!(
        "# Converted by `openweigh suites import-lm-eval` from {} (sha256 {}).\n",
        path.display(),
        hex::encode(Sha256::digest(&text))
    );
    for n in notes {
        header.push_str(&format!("# note: {n}\n"));
    }
    Ok((task, header + &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn converts_include_bare_fields_and_lists() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "base.yaml", "task: base\ndataset_path: allenai/ai2_arc\ndataset_name: ARC-Easy\noutput_type: multiple_choice\ndoc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_target: \"{{choices.label.index(answerKey)}}\"\ndoc_to_choice: \"{{choices.text}}\"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\nmetadata:\n  version: 1.0\n");
        let p = write(tmp.path(), "child.yaml", "include: base.yaml\ntask: child\ndataset_name: ARC-Challenge\n");
        let (name, yaml) = import(&p, None).unwrap();
        assert_eq!(name, "child");
        assert!(yaml.contains("dataset: arc_challenge"), "{yaml}");
        let p = write(tmp.path(), "piqa.yaml", "task: piqa\ndataset_path: baber/piqa\noutput_type: multiple_choice\ndoc_to_text: \"Question: {{goal}}\\nAnswer:\"\ndoc_to_target: label\ndoc_to_choice: \"{{[sol1, sol2]}}\"\n");
        let (_, yaml) = import(&p, None).unwrap();
        assert!(yaml.contains("doc_to_target: '{{ label }}'"), "{yaml}");
    }

    #[test]
    fn python_hooks_and_unknown_datasets_name_the_field() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(tmp.path(), "w.yaml", "task: winogrande\ndataset_path: allenai/winogrande\ndataset_name: winogrande_xl\ndoc_to_text: !function preprocess_winogrande.doc_to_text\ndoc_to_target: x\ndoc_to_choice: \"{{[a]}}\"\n");
        let e = import(&p, None).unwrap_err().to_string();
        assert!(e.contains("`doc_to_text`") && e.contains("!function"), "{e}");
        let p = write(
            tmp.path(),
            "x.yaml",
            "task: x\ndataset_path: someone/else\ndoc_to_text: q\ndoc_to_target: 0\ndoc_to_choice: [a, b]\n",
        );
        let e = import(&p, None).unwrap_err().to_string();
        assert!(e.contains("`dataset_path`") && e.contains("--dataset"), "{e}");
        let p = write(
            tmp.path(),
            "y.yaml",
            "task: y\ndataset_path: piqa\noutput_type: loglikelihood_rolling\ndoc_to_text: q\ndoc_to_target: 0\n",
        );
        assert!(import(&p, None).unwrap_err().to_string().contains("`output_type`"));
    }
}
