//! Which served model to call: `--model openai:BASE_URL#MODEL_ID`, or an
//! entry of a models file (`--models FILE.toml`) named by `--model NAME`.
//! A models file entry adds several base URLs, the environment variable that
//! holds the API key (the key itself is never read from a file, nor written
//! anywhere), the price, and a local tokenizer for token counts.
//!
//! ```toml
//! [[model]]
//! name = "llama-3.1-8b@deepinfra"
//! base_urls = ["https://api.deepinfra.com/v1/openai"]
//! model_id = "meta-llama/Meta-Llama-3.1-8B-Instruct"
//! api_key_env = "DEEPINFRA_API_KEY"
//! price = "deepinfra/meta-llama/Meta-Llama-3.1-8B-Instruct"   # a price-table id, or:
//! # input_usd_per_mtok = 0.03
//! # output_usd_per_mtok = 0.05
//! tokenizer = "models/llama-3.1-8b.gguf"                        # optional
//! ```

use crate::error::UserError;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The prefix of `--model` that names a served model.
pub const PREFIX: &str = "openai:";

/// A served model: where it answers and what it costs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Endpoint {
    /// Display name (the models file's `name`, else `MODEL_ID@host`).
    pub name: String,
    /// OpenAI-compatible base URLs (ending in `/v1` for most servers); requests
    /// go to the one with the fewest requests in flight.
    pub base_urls: Vec<String>,
    /// The `model` field of every request.
    pub model_id: String,
    /// Name of the environment variable holding the API key (never its value).
    pub api_key_env: Option<String>,
    /// What the model costs per token, when known.
    pub price: Option<PriceRef>,
    /// A local GGUF or tokenizer.json for token counts when the server sends no usage.
    pub tokenizer: Option<PathBuf>,
}

/// Where a served model's price comes from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PriceRef {
    /// An id in the price table (`provider/model`, as `openweigh prices list` shows it).
    Table(String),
    /// Explicit prices from the models file, USD per 1M tokens.
    Explicit { input_usd_per_mtok: f64, output_usd_per_mtok: f64 },
}

/// One `[[model]]` of a models file, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    #[serde(default)]
    base_urls: Vec<String>,
    base_url: Option<String>,
    model_id: String,
    api_key_env: Option<String>,
    price: Option<String>,
    input_usd_per_mtok: Option<f64>,
    output_usd_per_mtok: Option<f64>,
    tokenizer: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    #[serde(default)]
    model: Vec<Entry>,
}

/// Whether `--model` names a served model (`openai:…`) rather than a file.
pub fn is_endpoint_spec(spec: &str) -> bool {
    spec.starts_with(PREFIX)
}

/// Checks a base URL: http(s), a host, no credentials in it (keys come from
/// the environment), no trailing slash kept; returns it with its parse.
fn check_base_url(url: &str, flag_or_file: impl Fn(String) -> UserError) -> Result<(String, reqwest::Url)> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        flag_or_file(format!("base URL '{url}' is not a URL ({e}); write e.g. http://127.0.0.1:8080/v1"))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(flag_or_file(format!(
            "base URL '{url}' must be http:// or https:// with a host, e.g. http://127.0.0.1:8080/v1"
        ))
        .into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(flag_or_file(
            "a base URL must not carry credentials; put the key in an environment variable and name it with api_key_env"
                .into(),
        )
        .into());
    }
    Ok((url.trim_end_matches('/').to_string(), parsed))
}

/// `openai:BASE_URL#MODEL_ID`.
pub fn parse_spec(spec: &str) -> Result<Endpoint> {
    let bad = |message: String| UserError::BadFlag { flag: "--model", message };
    let rest = spec.strip_prefix(PREFIX).unwrap_or(spec);
    let Some((url, model_id)) = rest.rsplit_once('#').filter(|(u, m)| !u.is_empty() && !m.is_empty()) else {
        return Err(bad(format!(
            "'{spec}': write openai:BASE_URL#MODEL_ID, e.g. openai:http://127.0.0.1:8080/v1#smollm2, or name an entry of --models FILE.toml"
        ))
        .into());
    };
    let (url, parsed) = check_base_url(url, bad)?;
    let host = parsed.host_str().unwrap_or_default();
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(Endpoint {
        name: format!("{model_id}@{host}{port}"),
        base_urls: vec![url],
        model_id: model_id.to_string(),
        api_key_env: None,
        price: None,
        tokenizer: None,
    })
}

/// Reads a models file; every entry is checked.
pub fn read_models_file(path: &Path) -> Result<Vec<Endpoint>> {
    let text = std::fs::read_to_string(path).map_err(|e| UserError::MissingFile {
        path: path.to_path_buf(),
        fix: format!("could not read the models file ({e}); pass an existing TOML file to --models"),
    })?;
    let file: ModelsFile = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1).unwrap_or(1);
        UserError::BadFileAt {
            path: path.to_path_buf(),
            line,
            message: format!("{}; see the README's models-file example", e.message()),
        }
    })?;
    let mut out: Vec<Endpoint> = Vec::new();
    for e in file.model {
        let bad = |message: String| UserError::BadFile {
            path: path.to_path_buf(),
            message: format!("model '{}': {message}", e.name),
        };
        let mut urls: Vec<String> = e.base_url.iter().chain(&e.base_urls).cloned().collect();
        urls.dedup();
        if urls.is_empty() {
            return Err(bad("give base_url or base_urls (e.g. \"http://127.0.0.1:8080/v1\")".into()).into());
        }
        let base_urls = urls.iter().map(|u| Ok(check_base_url(u, bad)?.0)).collect::<Result<Vec<_>>>()?;
        let price = match (e.price.clone(), e.input_usd_per_mtok, e.output_usd_per_mtok) {
            (Some(id), None, None) => Some(PriceRef::Table(id)),
            (None, Some(i), Some(o)) => {
                if !(i.is_finite() && o.is_finite() && i >= 0.0 && o >= 0.0) {
                    return Err(bad("input_usd_per_mtok and output_usd_per_mtok must be non-negative numbers".into()).into());
                }
                Some(PriceRef::Explicit { input_usd_per_mtok: i, output_usd_per_mtok: o })
            }
            (None, None, None) => None,
            _ => {
                return Err(bad(
                    "give either price = \"provider/model\" (a price-table id) or both input_usd_per_mtok and output_usd_per_mtok"
                        .into(),
                )
                .into())
            }
        };
        if let Some(var) = &e.api_key_env {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                // The value is not echoed: it may be a key pasted by mistake.
                return Err(bad(
                    "api_key_env must be the NAME of an environment variable (letters, digits, _), not a key".into(),
                )
                .into());
            }
        }
        let tokenizer =
            e.tokenizer.map(|t| if t.is_relative() { path.parent().unwrap_or(Path::new(".")).join(t) } else { t });
        if out.iter().any(|o| o.name == e.name) {
            return Err(bad("this name is used twice; give each entry its own name".into()).into());
        }
        out.push(Endpoint {
            name: e.name,
            base_urls,
            model_id: e.model_id,
            api_key_env: e.api_key_env,
            price,
            tokenizer,
        });
    }
    Ok(out)
}

/// The endpoint `--model` names, if it names one: `openai:…`, or an entry of
/// the models file. `None`: a local model (catalog name, file, `hf:`).
pub fn resolve(spec: &str, models_file: Option<&Path>) -> Result<Option<Endpoint>> {
    if is_endpoint_spec(spec) {
        return parse_spec(spec).map(Some);
    }
    let Some(file) = models_file else { return Ok(None) };
    let entries = read_models_file(file)?;
    Ok(entries.into_iter().find(|e| e.name == spec))
}

impl Endpoint {
    /// The API key from the environment, when the entry names a variable.
    /// An unset or empty variable is an error naming the variable (never a value).
    pub fn api_key(&self) -> Result<Option<String>> {
        let Some(var) = &self.api_key_env else { return Ok(None) };
        match std::env::var(var) {
            Ok(k) if !k.is_empty() => Ok(Some(k)),
            _ => Err(UserError::Missing {
                what: format!("the API key for '{}' (environment variable {var})", self.name),
                fix: format!("export {var}=… before running, or remove api_key_env from the models file"),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_url_and_model() {
        let e = parse_spec("openai:http://127.0.0.1:8080/v1/#smol").unwrap();
        assert_eq!(e.base_urls, vec!["http://127.0.0.1:8080/v1"]);
        assert_eq!(e.model_id, "smol");
        assert_eq!(e.name, "smol@127.0.0.1:8080");
        for bad in ["openai:http://x/v1", "openai:#m", "openai:ftp://x#m", "openai:http://u:secret@x/v1#m"] {
            let err = format!("{:#}", parse_spec(bad).unwrap_err());
            assert!(err.starts_with("--model:"), "{bad}: {err}");
            assert!(!err.contains("secret"), "a credential in a URL is never echoed: {err}");
        }
    }

    #[test]
    fn models_file_entries_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.toml");
        std::fs::write(
            &p,
            "[[model]]\nname = \"a\"\nbase_urls = [\"http://h1/v1\", \"http://h2/v1\"]\nmodel_id = \"x\"\napi_key_env = \"K_A\"\ninput_usd_per_mtok = 0.1\noutput_usd_per_mtok = 0.4\ntokenizer = \"t.gguf\"\n\n[[model]]\nname = \"b\"\nbase_url = \"http://h3/v1\"\nmodel_id = \"y\"\nprice = \"deepinfra/y\"\n",
        )
        .unwrap();
        let e = read_models_file(&p).unwrap();
        assert_eq!(e[0].base_urls.len(), 2);
        assert_eq!(e[0].price, Some(PriceRef::Explicit { input_usd_per_mtok: 0.1, output_usd_per_mtok: 0.4 }));
        assert_eq!(e[0].tokenizer.as_deref(), Some(tmp.path().join("t.gguf").as_path()));
        assert_eq!(e[1].price, Some(PriceRef::Table("deepinfra/y".into())));
        assert_eq!(resolve("b", Some(&p)).unwrap().unwrap().model_id, "y");
        assert!(resolve("smollm2-135m-instruct", Some(&p)).unwrap().is_none());

        std::fs::write(&p, "[[model]]\nname = \"a\"\nmodel_id = \"x\"\nbase_url = \"http://h/v1\"\nkey = \"sk-123\"\n")
            .unwrap();
        let err = format!("{:#}", read_models_file(&p).unwrap_err());
        assert!(err.contains("m.toml:5:") && err.contains("unknown field"), "{err}");
        assert!(!err.contains("sk-123"), "{err}");
        std::fs::write(
            &p,
            "[[model]]\nname = \"a\"\nmodel_id = \"x\"\nbase_url = \"http://h/v1\"\ninput_usd_per_mtok = 1.0\n",
        )
        .unwrap();
        let err = format!("{:#}", read_models_file(&p).unwrap_err());
        assert!(err.contains("model 'a'") && err.contains("both input_usd_per_mtok and output_usd_per_mtok"), "{err}");
        std::fs::write(
            &p,
            "[[model]]\nname = \"a\"\nmodel_id = \"x\"\nbase_url = \"http://h/v1\"\napi_key_env = \"sk-live-abc\"\n",
        )
        .unwrap();
        let err = format!("{:#}", read_models_file(&p).unwrap_err());
        assert!(err.contains("must be the NAME of an environment variable") && !err.contains("sk-live"), "{err}");
    }
}
