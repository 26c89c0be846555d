//! Several models on one suite, each in its own child process (`openweigh
//! run` again, same binary): each model's peak memory is its own, and one
//! model's crash cannot take the others' results with it. The parent finds
//! the run folder each child wrote and reads it back. With `resume`, the
//! newest folder in `out` of the same model, adapter, suite and limit is
//! taken up instead: kept as it is when complete, continued with `run
//! --resume` when not.

use crate::error::{UserError, EXIT_ITEM_FAILURES, EXIT_USER};
use crate::results::RunMeta;
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
    /// Take up earlier runs of the same model in `out` (see the module doc).
    pub resume: bool,
}

/// The newest run folder in `out` started for `model` (as given), `adapter`,
/// `suite` and `limit`, with its run.json.
pub fn find_earlier(
    out: &Path,
    model: &str,
    adapter: Option<&Path>,
    suite: &str,
    limit: Option<usize>,
) -> Option<(PathBuf, RunMeta)> {
    folders_in(out)
        .into_iter()
        .filter_map(|dir| {
            let meta = crate::results::read_run_json(&dir).ok()?;
            let inv = meta.invocation.as_ref()?;
            (inv.model == model && inv.adapter.as_deref() == adapter && inv.suite == suite && inv.limit == limit)
                .then_some((dir, meta))
        })
        .max_by(|(a_dir, a), (b_dir, b)| (&a.started_at, a_dir).cmp(&(&b.started_at, b_dir)))
}

fn folders_in(out: &Path) -> HashSet<PathBuf> {
    std::fs::read_dir(out).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

/// Runs `openweigh run` for one model in a child process, with its
/// `adapter` if any; returns the run folder it wrote and its exit code (0,
/// or 3 when some items failed). With `c.resume`, an earlier folder of the
/// same run is kept or continued instead.
pub fn run_in_child(model: &str, adapter: Option<&Path>, c: &ChildRun) -> Result<(PathBuf, i32)> {
    let earlier = if c.resume { find_earlier(&c.out, model, adapter, &c.suite, c.limit) } else { None };
    if let Some((dir, meta)) = &earlier {
        if meta.status == "complete" {
            eprintln!("{model}: complete in {}, kept", dir.display());
            return Ok((dir.clone(), if meta.n_failed > 0 { EXIT_ITEM_FAILURES } else { 0 }));
        }
        eprintln!("{model}: continuing {} ({})", dir.display(), meta.status);
    }
    let before = folders_in(&c.out);
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["run", "--model", model, "--suite", &c.suite]).arg("--out").arg(&c.out);
    if let Some(a) = adapter {
        cmd.arg("--adapter").arg(a);
    }
    if let Some((dir, _)) = &earlier {
        cmd.arg("--resume").arg(dir);
    }
    if let Some(n) = c.limit {
        cmd.args(["--limit", &n.to_string()]);
    }
    if let Some(t) = c.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    cmd.args(&c.extra);
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
    if let Some((dir, _)) = earlier {
        return Ok((dir, status.code().unwrap_or(1)));
    }
    let new: Vec<_> =
        folders_in(&c.out).difference(&before).filter(|p| p.join("run.json").is_file()).cloned().collect();
    match new.as_slice() {
        [dir] => Ok((dir.clone(), status.code().unwrap_or(1))),
        _ => anyhow::bail!("could not tell which folder in {} the run of {model} wrote", c.out.display()),
    }
}
