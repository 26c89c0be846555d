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
use std::io::{BufWriter, Write};
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

/// Writes `path` through `write` into a temporary file beside it, flushed
/// to disk and renamed into place (and the folder synced), so a crash or a
/// kill at any moment leaves either the old file or the new one, never half
/// of one.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> Result<()>) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut w = BufWriter::new(File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?);
        write(&mut w).with_context(|| format!("writing {}", tmp.display()))?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself reaches the disk when the folder is synced.
        File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically ([`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |w| Ok(w.write_all(bytes)?))
}

/// Writes `value` as pretty JSON, atomically ([`write_atomic`]).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, &serde_json::to_vec_pretty(value)?)
}

/// Writes summary.csv, atomically ([`write_atomic`]).
pub fn write_summary_csv(path: &Path, rows: &[TaskSummary]) -> Result<()> {
    write_atomic(path, &csv_bytes(rows)?)
}

/// Rows as CSV (a header from the first row's field names), each text cell
/// made safe to open in a spreadsheet: one that starts with `=`, `+`, `-`,
/// `@`, a tab or a carriage return and is not a number is prefixed with `'`,
/// so a model, task or provider name from a stranger's file cannot become a
/// formula (OWASP's "CSV injection"). Numbers, negative ones too, are kept.
pub fn csv_bytes<T: Serialize>(rows: impl IntoIterator<Item = T>) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let plain = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(plain.as_slice());
    let mut out = csv::Writer::from_writer(Vec::new());
    for record in r.records() {
        let record = record?;
        out.write_record(record.iter().map(|c| spreadsheet_safe(c).into_owned()))?;
    }
    out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// `cell`, prefixed with `'` when a spreadsheet would read it as a formula.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky && cell.trim().parse::<f64>().is_err() {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// Reads the `samples.jsonl` of an interrupted run for `run --resume`:
/// every complete line is kept; a last line cut off mid-write (no newline
/// and not a whole item) is cut from the file, and its length returned. A
/// damaged line elsewhere is an error naming it.
pub fn recover_samples(path: &Path) -> Result<(Vec<ItemResult>, u64)> {
    if !path.exists() {
        return Ok((vec![], 0));
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut torn = (bytes.len() - end) as u64;
    let mut samples = parse_samples(path, &String::from_utf8_lossy(&bytes[..end]))?;
    if torn > 0 {
        let mut f = OpenOptions::new().write(true).open(path)?;
        match serde_json::from_slice::<ItemResult>(&bytes[end..]) {
            // Whole, only its newline missing: keep it.
            Ok(item) => {
                use std::io::{Seek, SeekFrom};
                f.seek(SeekFrom::End(0))?;
                f.write_all(b"\n")?;
                samples.push(item);
                torn = 0;
            }
            Err(_) => f.set_len(end as u64)?,
        }
        f.sync_all()?;
    }
    Ok((samples, torn))
}

/// Reads `samples.jsonl`; a line that is not an item result is a user-facing
/// error naming the file and line.
pub fn read_samples(path: &Path) -> Result<Vec<ItemResult>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_samples(path, &text)
}

fn parse_samples(path: &Path, text: &str) -> Result<Vec<ItemResult>> {
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
    let meta = read_run_json(dir)?;
    let samples = read_samples(&dir.join("samples.jsonl"))?;
    Ok(RunData { dir: dir.to_path_buf(), meta, samples })
}

/// Reads `run.json` of one run folder.
pub fn read_run_json(dir: &Path) -> Result<RunMeta> {
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
    Ok(meta)
}

/// Reads every run folder in `dirs`, in order.
pub fn load_runs(dirs: &[PathBuf]) -> Result<Vec<RunData>> {
    dirs.iter().map(|d| load_run(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_spreadsheets_run_are_quoted_and_numbers_kept() {
        #[derive(Serialize)]
        struct Row {
            model: &'static str,
            score: f64,
        }
        let rows = [
            Row { model: "=HYPERLINK(\"http://x\",\"a\")", score: -0.25 },
            Row { model: "+1+1", score: 1e-7 },
            Row { model: "@SUM(A1)", score: 0.5 },
            Row { model: "-cmd|' /C calc'!A0", score: -3.0 },
            Row { model: "SmolLM2-135M + lora", score: 0.0 },
        ];
        let text = String::from_utf8(csv_bytes(rows).unwrap()).unwrap();
        assert_eq!(
            text,
            "model,score\n\"'=HYPERLINK(\"\"http://x\"\",\"\"a\"\")\",-0.25\n'+1+1,1e-7\n'@SUM(A1),0.5\n'-cmd|' /C calc'!A0,-3.0\nSmolLM2-135M + lora,0.0\n"
        );
    }
    use crate::analysis::fixtures::item;

    fn line(i: usize) -> String {
        serde_json::to_string(&item("mc", i, true)).unwrap() + "\n"
    }

    /// A kill mid-write leaves part of the last line: it is cut from the
    /// file; a whole last item missing only its newline is kept; a damaged
    /// line before the last is an error naming its line.
    #[test]
    fn recovering_samples_drops_only_a_torn_last_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("samples.jsonl");
        let (a, b) = (line(0), line(1));
        std::fs::write(&path, format!("{a}{b}{}", &line(2)[..40])).unwrap();
        let (items, torn) = recover_samples(&path).unwrap();
        assert_eq!((items.len(), torn), (2, 40));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{a}{b}"));

        std::fs::write(&path, format!("{a}{}", b.trim_end())).unwrap();
        let (items, torn) = recover_samples(&path).unwrap();
        assert_eq!((items.len(), torn), (2, 0));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{a}{b}"));

        std::fs::write(&path, format!("{a}{{\"broken\n{b}")).unwrap();
        let e = recover_samples(&path).unwrap_err().to_string();
        assert!(e.contains("samples.jsonl:2:"), "{e}");

        let (items, torn) = recover_samples(&tmp.path().join("none.jsonl")).unwrap();
        assert_eq!((items.len(), torn), (0, 0));
    }

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run.json");
        write_json_atomic(&path, &serde_json::json!({"a": 1})).unwrap();
        write_json_atomic(&path, &serde_json::json!({"a": 2})).unwrap();
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["run.json"]);
        assert!(std::fs::read_to_string(&path).unwrap().contains('2'));
    }
}
