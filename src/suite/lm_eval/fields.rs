//! Reading an lm-eval task file: `include:` chains merged, the keys the
//! importer converts or may ignore (anything else is refused by name),
//! `!function` hooks found wherever they sit, bare field names made into
//! templates, and the error that names the field.

use crate::error::UserError;
use anyhow::Result;
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

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
/// nothing about the prompts or scores, or that other steps read (the
/// splits: see `splits`).
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

pub fn bad(path: &Path, field: &str, message: String) -> anyhow::Error {
    UserError::BadFile { path: path.into(), message: format!("`{field}`: {message}") }.into()
}

/// Reads a task YAML with its `include:` chain merged (the including file wins).
pub fn read_merged(path: &Path, depth: usize) -> Result<Mapping> {
    let text = std::fs::read_to_string(path).map_err(|_| UserError::MissingFile {
        path: path.into(),
        fix: "pass an lm-eval task .yaml (e.g. lm_eval/tasks/arc/arc_easy.yaml from the lm-eval wheel)".into(),
    })?;
    let value: Value = serde_yaml::from_str(&text).map_err(|e| UserError::BadFileAt {
        path: path.into(),
        line: e.location().map(|l| l.line()).unwrap_or(1),
        message: format!("not valid YAML: {}", crate::error::fold_lines(&e.to_string())),
    })?;
    let Value::Mapping(mut map) = value else {
        return Err(
            UserError::BadFile { path: path.into(), message: "expected a mapping of task fields".into() }.into()
        );
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
pub fn as_template(s: &str) -> String {
    let ident = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.chars().next().is_some_and(|c| c.is_ascii_digit());
    if ident {
        format!("{{{{ {s} }}}}")
    } else {
        s.to_string()
    }
}

pub fn string_field(path: &Path, map: &Mapping, field: &str) -> Result<Option<String>> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(v) => Err(bad(path, field, format!("expected a string, got {v:?}"))),
    }
}

/// Refuses a task that uses a Python hook (`!function`) anywhere.
pub fn refuse_python_hooks(path: &Path, map: &Mapping) -> Result<()> {
    for (k, v) in map {
        let key = k.as_str().unwrap_or("?");
        if let Some(field) = find_function(v, key) {
            return Err(bad(
                path,
                &field,
                "is a Python hook (`!function`), which openweigh cannot run; write it as a Jinja template in the converted suite, or use the native task (`openweigh suites`)".into(),
            ));
        }
    }
    Ok(())
}

/// Refuses keys the importer neither converts nor may ignore.
pub fn refuse_unknown_keys(path: &Path, map: &Mapping) -> Result<()> {
    for (k, _) in map {
        let key = k.as_str().unwrap_or("?");
        if !CONVERTED.contains(&key) && !IGNORED.contains(&key) {
            return Err(bad(
                path,
                key,
                "is not supported by the importer; remove it or write the suite by hand".into(),
            ));
        }
    }
    Ok(())
}
