//! Loading a suite: finding its text (a path, `suites/NAME.yaml`, or a suite
//! built into the binary), `extends` (seeded samples of another suite's
//! tasks), validation of every task before anything is read, then each
//! task's data and items. Errors point at the suite file and line.

use super::render::build_task;
use super::spec::parse_file;
use super::validate::validate;
use super::{Suite, EMBEDDED};
use crate::error::UserError;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Finds a suite's text: an existing path, `suites/NAME.yaml`, or an embedded suite.
pub(super) fn resolve(name_or_path: &str) -> Result<(PathBuf, String)> {
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

/// Parses a suite's text and validates each of its tasks, reading no data:
/// what an imported or generated suite must pass before it is written.
pub fn validate_text(path: &Path, text: &str) -> Result<()> {
    let file = parse_file(path, text)?;
    for spec in &file.tasks {
        validate_task(path, text, spec)?;
    }
    Ok(())
}

/// [`validate`] with the error pointing at the task's line of the file.
fn validate_task(path: &Path, text: &str, spec: &super::TaskSpec) -> Result<()> {
    validate(spec).map_err(|message| {
        UserError::BadFileAt {
            path: path.into(),
            line: line_of(text, &format!("task: {}", spec.task)),
            message: format!("task '{}': {message}", spec.task),
        }
        .into()
    })
}

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
            let (parent_path, parent_text) = resolve(&parent).map_err(|e| UserError::BadFileAt {
                path: path.clone(),
                line: line_of(&text, "extends:"),
                message: format!("extends: {e:#}"),
            })?;
            let parent_file = parse_file(&parent_path, &parent_text)?;
            if parent_file.extends.is_some() {
                return Err(UserError::BadFile {
                    path: path.clone(),
                    message: format!(
                        "`extends: {parent}` itself extends another suite; extend the base suite directly"
                    ),
                }
                .into());
            }
            for name in file.sample.keys() {
                if !parent_file.tasks.iter().any(|t| &t.task == name) {
                    return Err(UserError::BadFileAt {
                        path: path.clone(),
                        line: line_of(&text, &format!("{name}:")),
                        message: format!("`sample` names task '{name}', which suite '{parent}' does not have"),
                    }
                    .into());
                }
            }
            if !file.tasks.is_empty() {
                return Err(UserError::BadFile {
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
            return Err(UserError::BadFile {
                path: path.clone(),
                message: "`sample:` at suite level needs `extends: SUITE`; inside a task write `sample: N`".into(),
            }
            .into());
        }
        if file.tasks.is_empty() {
            return Err(UserError::BadFile {
                path: path.clone(),
                message: "has no tasks; list them under `tasks:` (see suites/examples/capitals.yaml), or name some with `sample:`".into(),
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
            validate_task(&path, &text, spec)?;
        }
        let mut tasks = Vec::new();
        for spec in file.tasks {
            let line = line_of(&text, &format!("task: {}", spec.task));
            tasks.push(build_task(spec, &base, limit).map_err(|e| match e.downcast::<UserError>() {
                Ok(u) => anyhow::Error::from(u),
                Err(e) => UserError::BadFileAt { path: path.clone(), line, message: format!("{e:#}") }.into(),
            })?);
        }
        Ok(Suite { name: file.name, description: file.description, path: suite_path, sha256, tasks })
    }
}
