//! Writing and reading the files of a run folder: a new folder per run that
//! never overwrites an earlier one, `samples.jsonl` appended and flushed per
//! item, `run.json` and `summary.csv` rewritten whole (JSON through a temporary
//! file and a rename), and [`load_run`] reading a finished or cut-short run
//! back as [`RunData`] for reports and comparisons.

use super::schema::{ItemResult, RunMeta, TaskSummary};
use crate::error::UserError;
use anyhow::{Context, Result};
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Creates a new folder in `out` named by `template` with `{time}` replaced
/// by the UTC time (`20261127T061627Z`), characters other than letters,
/// digits, `-` and `.` replaced by `_`, and `-2`, `-3`… appended if the name
/// is taken, so nothing earlier is overwritten. Returns its name and path.
pub fn create_output_dir(out: &Path, template: &str) -> Result<(String, PathBuf)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let base: String = template
        .replace("{time}", &stamp)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
        .collect();
    for n in 1.. {
        let id = if n == 1 { base.clone() } else { format!("{base}-{n}") };
        let dir = out.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!()
}

/// Appends item results, flushing after each line.
pub struct SamplesWriter {
    file: File,
}

impl SamplesWriter {
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { file })
    }

    pub fn append(&mut self, item: &ItemResult) -> Result<()> {
        let mut line = serde_json::to_vec(item)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()?;
        Ok(())
    }
}

/// Writes `value` as pretty JSON through a temporary file and a rename, so a
/// crash never leaves a half-written file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

pub fn write_summary_csv(path: &Path, rows: &[TaskSummary]) -> Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// Reads `samples.jsonl`; a line that is not an item result is a user-facing
/// error naming the file and line.
pub fn read_samples(path: &Path) -> Result<Vec<ItemResult>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                UserError::BadFileAt {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: format!("not an openweigh item result ({e}); the line is damaged or cut off: remove it, or rerun the model"),
                }
                .into()
            })
        })
        .collect()
}

/// One run read back from `results/<run-id>/`.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub meta: RunMeta,
    pub samples: Vec<ItemResult>,
}

/// Reads `run.json` and `samples.jsonl` of one run folder.
pub fn load_run(dir: &Path) -> Result<RunData> {
    let run_json = dir.join("run.json");
    if !run_json.is_file() {
        return Err(UserError::MissingFile {
            path: run_json,
            fix: "pass a results/<run-id>/ folder written by `openweigh run`".into(),
        }
        .into());
    }
    let meta: RunMeta = serde_json::from_slice(&std::fs::read(&run_json)?).map_err(|e| UserError::BadFileAt {
        path: run_json.clone(),
        line: e.line(),
        message: format!(
            "not an openweigh run.json ({e}); the file is damaged or cut off: pass a complete run folder, or rerun the model"
        ),
    })?;
    let samples = read_samples(&dir.join("samples.jsonl"))?;
    Ok(RunData { dir: dir.to_path_buf(), meta, samples })
}

/// Reads every run folder in `dirs`, in order.
pub fn load_runs(dirs: &[PathBuf]) -> Result<Vec<RunData>> {
    dirs.iter().map(|d| load_run(d)).collect()
}
