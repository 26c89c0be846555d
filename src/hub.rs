//! `--model hf:OWNER/REPO/FILE.gguf` (one GGUF file) or `hf:OWNER/REPO` (a
//! safetensors model: config.json, tokenizer files and weights) from the
//! Hugging Face hub, through the hf-hub crate and its shared cache. A file
//! already in the cache is used without any network access; otherwise the hub
//! must answer within a few seconds, so an offline machine gets a clear error
//! at once instead of a hang. `HF_HUB_OFFLINE=1` allows the cache only.

use crate::error::UserError;
use anyhow::Result;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// How long the reachability check waits for the hub.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What an `hf:` spec names.
#[derive(Debug, PartialEq, Eq)]
pub struct HubSpec {
    /// `owner/repo`.
    pub repo: String,
    /// A file inside the repo, or None for a safetensors model folder.
    pub file: Option<String>,
}

/// Parses the part after `hf:`.
pub fn parse(rest: &str) -> Option<HubSpec> {
    let mut parts = rest.splitn(3, '/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    if owner.is_empty() || repo.is_empty() {
        return None;
    }
    let file = parts.next().filter(|f| !f.is_empty()).map(str::to_string);
    Some(HubSpec { repo: format!("{owner}/{repo}"), file })
}

fn hub_error(spec: &str, reason: impl Into<String>) -> anyhow::Error {
    UserError::Hub { spec: spec.into(), reason: reason.into() }.into()
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0") || crate::assets::offline()
}

/// Fails fast when the hub cannot be reached.
fn check_reachable(spec: &str) -> Result<()> {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let host = endpoint.trim_start_matches("https://").trim_start_matches("http://").split('/').next().unwrap_or("");
    let host_port = if host.contains(':') { host.to_string() } else { format!("{host}:443") };
    let addrs: Vec<_> = host_port
        .to_socket_addrs()
        .map_err(|e| hub_error(spec, format!("cannot resolve {host} ({e}): no internet access?")))?
        .collect();
    for addr in &addrs {
        if TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).is_ok() {
            return Ok(());
        }
    }
    Err(hub_error(
        spec,
        format!("cannot connect to {host} within {} s: no internet access?", CONNECT_TIMEOUT.as_secs()),
    ))
}

/// Files of a safetensors model repo, besides the weights.
const FOLDER_FILES: &[&str] = &["config.json", "tokenizer.json", "tokenizer_config.json"];

/// Returns the local path of the GGUF file, or of the snapshot folder holding
/// a safetensors model.
pub fn download(spec: &str, rest: &str) -> Result<PathBuf> {
    let hs = parse(rest).ok_or_else(|| hub_error(spec, "expected hf:OWNER/REPO/FILE.gguf or hf:OWNER/REPO"))?;
    let cache = Cache::from_env().repo(Repo::model(hs.repo.clone()));
    let wanted: Vec<String> = match &hs.file {
        Some(f) => vec![f.clone()],
        None => FOLDER_FILES.iter().map(|s| s.to_string()).chain(["model.safetensors".to_string()]).collect(),
    };
    let cached: Vec<Option<PathBuf>> = wanted.iter().map(|f| cache.get(f)).collect();
    if cached.iter().all(Option::is_some) {
        let first = cached[0].clone().unwrap();
        return Ok(if hs.file.is_some() { first } else { first.parent().unwrap().to_path_buf() });
    }
    if offline() {
        return Err(hub_error(
            spec,
            "not in the Hugging Face cache and HF_HUB_OFFLINE or OPENWEIGH_OFFLINE is set; unset it to download",
        ));
    }
    check_reachable(spec)?;
    let api = ApiBuilder::from_env().with_progress(true).build().map_err(|e| hub_error(spec, e.to_string()))?;
    let repo = api.model(hs.repo.clone());
    let get = |f: &str| repo.get(f).map_err(|e| hub_error(spec, format!("downloading {f}: {e}")));
    match &hs.file {
        Some(f) => get(f),
        None => {
            let config = get("config.json")?;
            get("tokenizer.json")?;
            let _ = repo.get("tokenizer_config.json");
            // Sharded weights list their files in an index; small models have one file.
            match repo.get("model.safetensors.index.json") {
                Ok(index) => {
                    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&index)?)?;
                    let mut shards: Vec<&str> = v["weight_map"]
                        .as_object()
                        .map(|m| m.values().filter_map(|s| s.as_str()).collect())
                        .unwrap_or_default();
                    shards.sort();
                    shards.dedup();
                    for s in shards {
                        get(s)?;
                    }
                }
                Err(_) => {
                    get("model.safetensors")?;
                }
            }
            Ok(config.parent().unwrap().to_path_buf())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_folder_specs() {
        assert_eq!(
            parse("Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf"),
            Some(HubSpec {
                repo: "Qwen/Qwen2.5-0.5B-Instruct-GGUF".into(),
                file: Some("qwen2.5-0.5b-instruct-q4_k_m.gguf".into())
            })
        );
        assert_eq!(parse("google/gemma-3-270m"), Some(HubSpec { repo: "google/gemma-3-270m".into(), file: None }));
        assert_eq!(parse("justone"), None);
        assert_eq!(parse("/x"), None);
    }
}
