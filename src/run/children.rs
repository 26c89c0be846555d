//! Several models on one suite, each in its own child process (`openweigh
//! run` again, same binary): each model's peak memory is its own, and one
//! model's crash cannot take the others' results with it. The parent finds
//! the run folder each child wrote and reads it back.

use crate::error::{UserError, EXIT_ITEM_FAILURES, EXIT_USER};
use anyhow::Result;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What every child run gets: the suite and its flags.
#[derive(Debug, Clone)]
pub struct ChildRun {
    pub suite: String,
    pub limit: Option<usize>,
    pub threads: Option<usize>,
    /// Folder the child writes its `results/<run-id>/` into.
    pub out: PathBuf,
    /// Further `openweigh run` flags, passed as they are.
    pub extra: Vec<String>,
}

fn folders_in(out: &Path) -> HashSet<PathBuf> {
    std::fs::read_dir(out).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// Runs `openweigh run` for one model in a child process, with `extra`
/// flags of this model's own (an `--adapter`) after the shared ones;
/// returns the run folder it wrote and its exit code (0, or 3 when some
/// items failed).
pub fn run_in_child(model: &str, extra: &[String], c: &ChildRun) -> Result<(PathBuf, i32)> {
    let before = folders_in(&c.out);
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["run", "--model", model, "--suite", &c.suite]).arg("--out").arg(&c.out);
    if let Some(n) = c.limit {
        cmd.args(["--limit", &n.to_string()]);
    }
    if let Some(t) = c.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    cmd.args(&c.extra).args(extra);
    let status = cmd.status()?;
    match status.code() {
        Some(0) | Some(EXIT_ITEM_FAILURES) => {}
        Some(EXIT_USER) => {
            return Err(UserError::BadFlag {
                flag: "--model",
                message: format!("the run of {model} was refused (see above)"),
            }
            .into())
        }
        _ => anyhow::bail!("the run of {model} failed ({status})"),
    }
    let new: Vec<_> =
        folders_in(&c.out).difference(&before).filter(|p| p.join("run.json").is_file()).cloned().collect();
    match new.as_slice() {
        [dir] => Ok((dir.clone(), status.code().unwrap_or(1))),
        _ => anyhow::bail!("could not tell which folder in {} the run of {model} wrote", c.out.display()),
    }
}
