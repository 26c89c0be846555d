//! Fuzzing entry points: one function per kind of untrusted input openweigh
//! reads (suite files, templates, JSONL/JSON data, Arrow IPC data, price
//! files, GGUF headers and tokenizers, lm-eval task files). Each takes
//! arbitrary bytes, hands them to the real reader through a file in a scratch
//! folder (the readers take paths, as the command line gives them), and
//! checks the contract for bad input: an error, never a panic, and an error
//! message that is one line. `fuzz/` drives these with libFuzzer (cargo fuzz,
//! see its README); `tests/fuzz_regressions.rs` replays the seeds and every
//! crash found on stable, so a fixed crash stays fixed.
//!
//! Fetching is off while fuzzing (`OPENWEIGH_OFFLINE`, an empty cache in the
//! scratch folder): a suite that names a catalog dataset gets the offline
//! error instead of a download.

use crate::catalog::DataLayout;
use crate::error::error_text;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A fuzz target: takes any bytes, returns whether they were accepted.
pub type Target = fn(&[u8]) -> bool;

/// The targets by name, as `fuzz/fuzz_targets/*.rs` and the regression test use them.
pub const TARGETS: &[(&str, Target)] = &[
    ("suite", suite),
    ("template", template),
    ("data", data),
    ("arrow", arrow),
    ("prices", prices),
    ("gguf", gguf),
    ("lm_eval", lm_eval),
];

/// The scratch folder of this process, made once, with offline settings and
/// a small data file that seeds may name (`data_files: data.jsonl`).
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("openweigh-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("home")).expect("making the fuzz scratch folder");
        std::fs::write(
            dir.join("data.jsonl"),
            concat!(
                r#"{"question": "2 + 2?", "choices": ["3", "4"], "label": 1, "answer": "4"}"#,
                "\n",
                r#"{"question": "Capital of France?", "choices": ["Paris", "Rome"], "label": 0, "answer": "Paris"}"#,
                "\n",
                r#"{"question": "Sky?", "choices": ["blue", "green"], "label": 0, "answer": "blue"}"#,
                "\n"
            ),
        )
        .expect("writing the fuzz data file");
        std::env::set_var("OPENWEIGH_HOME", dir.join("home"));
        std::env::set_var("OPENWEIGH_CACHE", dir.join("home"));
        std::env::set_var(crate::assets::OFFLINE_VAR, "1");
        dir
    })
}

/// Removes this process's scratch folder (the regression test calls it when
/// done; a fuzzer process leaves its folder to the system's temp cleaning).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// Writes `bytes` to `name` in the scratch folder and returns its path.
fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    std::fs::write(&path, bytes).expect("writing a fuzz input file");
    path
}

/// Bad input must fail with a one-line message, never a panic. Each target
/// returns whether its input was accepted all the way.
fn check<T>(what: &str, result: anyhow::Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let text = error_text(&e);
            assert!(!text.trim().is_empty(), "{what}: empty error message");
            assert!(!text.contains('\n'), "{what}: error message of several lines:\n{text}");
            None
        }
    }
}

/// A suite file: parse, `extends`, validation, data and rendering of items.
pub fn suite(bytes: &[u8]) -> bool {
    let path = file("suite.yaml", bytes);
    check("suite", crate::suite::Suite::load(path.to_str().unwrap(), Some(3))).is_some()
}

/// A template and a document: the bytes before the first NUL are the
/// template, the rest a JSON document (a fixed one when it is not JSON).
pub fn template(bytes: &[u8]) -> bool {
    let (src, doc) = match bytes.iter().position(|&b| b == 0) {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &b""[..]),
    };
    let Ok(src) = std::str::from_utf8(src) else { return false };
    let doc: serde_json::Value = serde_json::from_slice(doc)
        .unwrap_or_else(|_| serde_json::json!({"question": "2 + 2?", "choices": ["3", "4"], "label": 1}));
    let doc = minijinja::Value::from_serialize(&doc);
    let env = crate::suite::template::environment();
    let rendered = check("template render", crate::suite::template::render(&env, src, &doc)).is_some();
    check("template evaluate", crate::suite::template::evaluate(&env, src, &doc)).is_some() && rendered
}

/// A data file: the first byte picks the format (JSONL, gzipped JSONL, JSON
/// array, OLMo-eval requests), the rest is the file.
pub fn data(bytes: &[u8]) -> bool {
    let Some((&pick, rest)) = bytes.split_first() else { return false };
    let (name, layout) = match pick % 4 {
        0 => ("data-in.jsonl", DataLayout::Rows),
        1 => ("data-in.jsonl.gz", DataLayout::Rows),
        2 => ("data-in.json", DataLayout::Rows),
        _ => ("data-in.jsonl", DataLayout::OeEvalDocs),
    };
    let path = file(name, rest);
    check("data", crate::suite::data::load_documents(&path, layout)).is_some()
}

/// An Arrow IPC file or stream(s), as `datasets.save_to_disk` writes.
pub fn arrow(bytes: &[u8]) -> bool {
    let path = file("data-in.arrow", bytes);
    check("arrow", crate::suite::data::load_documents(&path, DataLayout::Rows)).is_some()
}

/// A price file (litellm JSON or CSV), as `prices import` and `--prices` read it.
pub fn prices(bytes: &[u8]) -> bool {
    let path = file("prices-in", bytes);
    check("prices", crate::analysis::prices::read_price_file(&path)).is_some()
}

/// A GGUF file's header: metadata, hyper-parameters, tensor table, the
/// tokenizer rebuilt from its metadata, and the file read as a LoRA adapter.
pub fn gguf(bytes: &[u8]) -> bool {
    use crate::backend::weights::{open_gguf, ModelHeader};
    let path = file("model-in.gguf", bytes);
    let adapter = check("gguf adapter", crate::backend::adapter::LoraAdapter::open(&path)).is_some();
    if check("gguf header", ModelHeader::read(&path)).is_none() {
        return adapter;
    }
    let (_, ct) = open_gguf(&path).expect("a header read twice");
    let Some(tok) = check("gguf tokenizer", crate::backend::tokenizer::ModelTokenizer::from_gguf(&ct)) else {
        return false;
    };
    let Some(ids) = check("gguf encode", tok.encode("Hello, world! 2 + 2 = 4")) else { return false };
    check("gguf decode", tok.decode(&ids)).is_some()
}

/// An lm-evaluation-harness task file; what it imports to must be a valid suite.
pub fn lm_eval(bytes: &[u8]) -> bool {
    let path = file("task-in.yaml", bytes);
    let Some((_, yaml)) = check("lm_eval import", crate::suite::lm_eval::import(&path, None, None)) else {
        return false;
    };
    let out = file("imported.yaml", yaml.as_bytes());
    if let Err(e) = crate::suite::load::validate_text(&out, &yaml) {
        panic!("lm_eval import wrote a suite that does not validate: {e:#}\n{yaml}");
    }
    true
}
