//! Price tables: what providers charge per token for open-weight models. A
//! dated snapshot converted from litellm's price file ships in `prices/` and
//! is built in; `openweigh prices import` converts litellm's JSON (or a CSV)
//! into the user's table, which then takes its place; `--prices FILE` wins
//! over both. Each bad row is reported with its file and line.

use super::cost::blended;
use crate::error::UserError;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The shipped snapshot: open-weight models at hosting providers, from
/// litellm 1.110.2's `model_prices_and_context_window_backup.json` (MIT).
pub const EMBEDDED_PRICES: &str = include_str!("../../prices/litellm-1.110.2-open-weight.csv");
const EMBEDDED_SOURCE: &str = "prices/litellm-1.110.2-open-weight.csv (built in)";

/// Providers that serve open-weight models; the snapshot keeps their chat models.
pub const OPEN_WEIGHT_PROVIDERS: &[&str] = &[
    "together_ai",
    "fireworks_ai",
    "deepinfra",
    "groq",
    "nebius",
    "novita",
    "hyperbolic",
    "nscale",
    "crusoe",
    "cloudflare",
    "lambda_ai",
    "sambanova",
    "cerebras",
    "featherless_ai",
    "ovhcloud",
    "replicate",
    "anyscale",
    "perplexity",
];

/// What one provider charges for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceEntry {
    pub provider: String,
    /// The provider's model id (e.g. `Qwen/Qwen2.5-7B-Instruct`).
    pub model: String,
    /// USD per 1M input (prompt) tokens.
    pub input_usd_per_mtok: f64,
    /// USD per 1M output (generated) tokens.
    pub output_usd_per_mtok: f64,
}

impl PriceEntry {
    /// (3·input + output)/4, USD per 1M tokens.
    pub fn blended_usd_per_mtok(&self) -> f64 {
        blended(self.input_usd_per_mtok, self.output_usd_per_mtok)
    }
}

/// A price table and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct PriceTable {
    pub source: String,
    pub entries: Vec<PriceEntry>,
}

/// Reads litellm's price JSON (`{"provider/model": {"litellm_provider": ..,
/// "input_cost_per_token": .., "output_cost_per_token": .., "mode": "chat"}}`),
/// keeping chat models of [`OPEN_WEIGHT_PROVIDERS`] that have both prices.
pub fn parse_litellm_json(text: &str, path: &Path) -> Result<Vec<PriceEntry>> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| UserError::BadFileAt {
        path: path.to_path_buf(),
        line: e.line(),
        message: format!("not valid JSON ({e}); pass litellm's model_prices_and_context_window JSON or a CSV"),
    })?;
    let obj = v.as_object().ok_or_else(|| UserError::BadFile {
        path: path.to_path_buf(),
        message: "expected a JSON object of model entries (litellm's schema)".into(),
    })?;
    let mut entries = Vec::new();
    for (key, e) in obj {
        let provider = e.get("litellm_provider").and_then(|p| p.as_str()).unwrap_or_default();
        if !OPEN_WEIGHT_PROVIDERS.contains(&provider) || e.get("mode").and_then(|m| m.as_str()) != Some("chat") {
            continue;
        }
        let price = |k: &str| e.get(k).and_then(|p| p.as_f64()).filter(|p| *p > 0.0);
        let (Some(input), Some(output)) = (price("input_cost_per_token"), price("output_cost_per_token")) else {
            continue;
        };
        let model = key.strip_prefix(&format!("{provider}/")).unwrap_or(key).to_string();
        entries.push(PriceEntry {
            provider: provider.to_string(),
            model,
            input_usd_per_mtok: round_price(input * 1e6),
            output_usd_per_mtok: round_price(output * 1e6),
        });
    }
    entries.sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
    Ok(entries)
}

/// Per-token prices are binary floats; 1e6 × 3e-08 is 0.030000000000000002.
fn round_price(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// Reads a price CSV: `provider,model,input_usd_per_mtok,output_usd_per_mtok`,
/// `#` comments allowed. Errors name the line.
pub fn parse_csv(text: &str, path: &Path) -> Result<Vec<PriceEntry>> {
    let mut rdr = csv::ReaderBuilder::new().comment(Some(b'#')).trim(csv::Trim::All).from_reader(text.as_bytes());
    let bad_at = |line: usize, message: String| UserError::BadFileAt { path: path.to_path_buf(), line, message };
    let fix = "each row needs provider,model,input_usd_per_mtok,output_usd_per_mtok (USD per 1M tokens)";
    let headers = rdr.headers().map_err(|e| bad_at(1, format!("{e}; {fix}")))?.clone();
    let mut entries: Vec<PriceEntry> = Vec::new();
    let mut first_line = std::collections::HashMap::new();
    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(bad_at(e.position().map_or(0, |p| p.line() as usize), format!("{e}; {fix}")).into()),
        }
        let line = record.position().map_or(0, |p| p.line() as usize);
        let entry: PriceEntry = record.deserialize(Some(&headers)).map_err(|e| bad_at(line, format!("{e}; {fix}")))?;
        if !(entry.input_usd_per_mtok >= 0.0 && entry.output_usd_per_mtok >= 0.0) {
            return Err(bad_at(
                line,
                format!("{}/{}: prices must be 0 or more USD per 1M tokens", entry.provider, entry.model),
            )
            .into());
        }
        if let Some(first) = first_line.insert((entry.provider.clone(), entry.model.clone()), line) {
            return Err(bad_at(
                line,
                format!(
                    "{}/{} is priced twice (first on line {first}); keep one row per provider and model",
                    entry.provider, entry.model
                ),
            )
            .into());
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// Reads a price file, JSON (litellm) or CSV by its first character.
pub fn read_price_file(path: &Path) -> Result<Vec<PriceEntry>> {
    let text = std::fs::read_to_string(path).map_err(|_| UserError::MissingFile {
        path: path.to_path_buf(),
        fix: "pass litellm's model_prices_and_context_window JSON or a CSV of provider,model,input_usd_per_mtok,output_usd_per_mtok".into(),
    })?;
    let entries =
        if text.trim_start().starts_with('{') { parse_litellm_json(&text, path)? } else { parse_csv(&text, path)? };
    if entries.is_empty() {
        return Err(UserError::BadFile {
            path: path.to_path_buf(),
            message: "no usable price in the file (no chat model of an open-weight provider with input and output prices); nothing was written: pass litellm's model_prices_and_context_window JSON or a CSV of provider,model,input_usd_per_mtok,output_usd_per_mtok".into(),
        }
        .into());
    }
    Ok(entries)
}

/// Writes a table as CSV with a provenance comment.
pub fn write_csv(path: &Path, entries: &[PriceEntry], provenance: &str) -> Result<()> {
    let body = String::from_utf8(crate::results::io::csv_bytes(entries)?)?;
    let text = format!("# {provenance}\n{body}");
    crate::results::io::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Where `openweigh prices import` keeps the user's table.
pub fn user_table_path() -> PathBuf {
    crate::assets::home().join("prices.csv")
}

/// The price table in force: an explicit file, else the imported one, else the snapshot.
pub fn load_table(explicit: Option<&Path>) -> Result<PriceTable> {
    if let Some(p) = explicit {
        return Ok(PriceTable { source: p.display().to_string(), entries: read_price_file(p)? });
    }
    let user = user_table_path();
    if user.is_file() {
        return Ok(PriceTable { source: user.display().to_string(), entries: read_price_file(&user)? });
    }
    builtin_table()
}

/// The snapshot built into the binary, whatever the user imported.
pub fn builtin_table() -> Result<PriceTable> {
    Ok(PriceTable {
        source: EMBEDDED_SOURCE.into(),
        entries: parse_csv(EMBEDDED_PRICES, Path::new("prices/litellm-1.110.2-open-weight.csv"))?,
    })
}

/// Provider offerings of the same weights as a model known by `aliases`
/// (the last path segment of the provider's id equals an alias's, ignoring case).
pub fn offerings<'a>(table: &'a PriceTable, aliases: &[&str]) -> Vec<&'a PriceEntry> {
    let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_lowercase();
    let names: Vec<String> = aliases.iter().map(|a| last(a)).collect();
    let mut v: Vec<&PriceEntry> = table.entries.iter().filter(|e| names.contains(&last(&e.model))).collect();
    v.sort_by(|a, b| a.blended_usd_per_mtok().total_cmp(&b.blended_usd_per_mtok()));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litellm_entries_of_open_weight_providers_are_kept() {
        let json = r#"{
            "sample_spec": {"litellm_provider": "one of ...", "mode": "chat"},
            "deepinfra/Qwen/Qwen2.5-7B-Instruct": {"litellm_provider": "deepinfra", "input_cost_per_token": 4e-08,
                "output_cost_per_token": 1e-07, "mode": "chat"},
            "gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "mode": "chat"},
            "together_ai/some-embedding": {"litellm_provider": "together_ai", "input_cost_per_token": 1e-08, "mode": "embedding"}
        }"#;
        let e = parse_litellm_json(json, Path::new("p.json")).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].model, "Qwen/Qwen2.5-7B-Instruct");
        assert_eq!((e[0].input_usd_per_mtok, e[0].output_usd_per_mtok), (0.04, 0.1));
        let table = PriceTable { source: "t".into(), entries: e };
        assert_eq!(offerings(&table, &["qwen/qwen2.5-7b-instruct"]).len(), 1);
        assert!(offerings(&table, &["Qwen/Qwen2.5-7B"]).is_empty());
    }

    #[test]
    fn bad_csv_row_names_its_line() {
        let err = parse_csv(
            "provider,model,input_usd_per_mtok,output_usd_per_mtok\na,b,1,2\nc,d,cheap,2\n",
            Path::new("p.csv"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("p.csv:3"), "{msg}");
        assert!(parse_csv(EMBEDDED_PRICES, Path::new("x")).unwrap().len() > 50);
    }
}
