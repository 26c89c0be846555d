//! Reading a task's documents: Arrow IPC files written by Hugging Face
//! `datasets.save_to_disk` (stream or file format), JSONL, gzipped JSONL and
//! JSON arrays, each document as a `serde_json::Value`.

use crate::error::UserError;
use anyhow::{Context, Result};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

pub fn load_documents(path: &Path) -> Result<Vec<Value>> {
    if !path.exists() {
        return Err(UserError::MissingFile {
            path: path.to_path_buf(),
            fix: "fix `data_files` in the suite (paths are relative to the suite file) or use a catalog `dataset:`"
                .into(),
        }
        .into());
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with(".arrow") {
        read_arrow(path)
    } else if name.ends_with(".jsonl.gz") {
        let f = File::open(path)?;
        read_jsonl(path, BufReader::new(flate2::read::GzDecoder::new(f)))
    } else if name.ends_with(".jsonl") {
        read_jsonl(path, BufReader::new(File::open(path)?))
    } else if name.ends_with(".json") {
        let v: Value = serde_json::from_reader(BufReader::new(File::open(path)?)).map_err(|e| UserError::SuiteAt {
            path: path.into(),
            line: e.line(),
            message: format!("invalid JSON: {e}"),
        })?;
        match v {
            Value::Array(a) => Ok(a),
            _ => {
                Err(UserError::Suite { path: path.into(), message: "expected a JSON array of documents".into() }.into())
            }
        }
    } else {
        Err(UserError::Suite {
            path: path.into(),
            message: "unknown data format; use .arrow, .jsonl, .jsonl.gz or .json".into(),
        }
        .into())
    }
}

fn read_jsonl(path: &Path, reader: impl BufRead) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| UserError::SuiteAt {
            path: path.into(),
            line: i + 1,
            message: format!("invalid JSON line: {e}; each line must be one JSON object"),
        })?;
        docs.push(v);
    }
    Ok(docs)
}

fn read_arrow(path: &Path) -> Result<Vec<Value>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let bad = |e: arrow_schema::ArrowError| UserError::Suite {
        path: path.into(),
        message: format!("not a readable Arrow IPC file ({e}); re-export it with datasets.save_to_disk or use JSONL"),
    };
    let batches: Vec<arrow_array::RecordBatch> = if bytes.starts_with(b"ARROW1") {
        let r = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).map_err(bad)?;
        r.collect::<Result<_, _>>().map_err(bad)?
    } else {
        let r = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(bad)?;
        r.collect::<Result<_, _>>().map_err(bad)?
    };
    let mut w = arrow_json::ArrayWriter::new(Vec::new());
    let refs: Vec<&arrow_array::RecordBatch> = batches.iter().collect();
    w.write_batches(&refs).context("converting Arrow rows to JSON")?;
    w.finish()?;
    let buf = w.into_inner();
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&buf)?)
}
