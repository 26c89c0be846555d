//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Model runs use every core; two at once would oversubscribe the CPU and
/// crawl (candle's pool spin-waits), so tests that run the model hold this.
pub fn model_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default model, fetched through the same code path as `openweigh fetch`.
pub fn default_model() -> PathBuf {
    let entry = openweigh::catalog::model(openweigh::catalog::DEFAULT_MODEL).unwrap();
    openweigh::assets::fetch(&entry.asset).expect("fetching the default model")
}

/// A temporary openweigh home for this test process: whatever a test's
/// commands import, write or configure lands here, never in the user's home.
pub fn test_home() -> &'static std::path::Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().expect("a temporary OPENWEIGH_HOME")).path()
}

/// The `openweigh` binary with a temporary home ([`test_home`]) and the
/// shared download cache (models and data are fetched once, for every test).
pub fn openweigh() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("openweigh").unwrap();
    cmd.env("NO_COLOR", "1").env("OPENWEIGH_HOME", test_home()).env("OPENWEIGH_CACHE", shared_cache());
    cmd
}

/// The download cache the tests share: the user's (or CI's) own.
pub fn shared_cache() -> PathBuf {
    openweigh::assets::cache_dir()
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The one run folder inside `out`.
pub fn only_run_dir(out: &std::path::Path) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    assert_eq!(dirs.len(), 1, "expected one run folder in {}", out.display());
    dirs[0].clone()
}

pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A catalog model, fetched through the same code path as `openweigh fetch`.
pub fn catalog_model(name: &str) -> PathBuf {
    let entry = openweigh::catalog::model(name).unwrap();
    openweigh::assets::fetch_model(entry).expect("fetching a catalog model")
}
