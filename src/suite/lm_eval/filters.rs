//! How an lm-eval task is scored and decoded, converted: `metric_list` (acc,
//! acc_norm, exact_match; exact_match's ignore_case/ignore_punctuation as the
//! `normalized` filter), `filter_list` (GSM8K's regex filters as the `number`
//! filter; remove_whitespace and take_first change nothing), greedy
//! `generation_kwargs`; sampling and `repeats` are refused by name.

use super::fields::bad;
use crate::suite::{Filter, GenerationKwargs, MetricSpec};
use anyhow::Result;
use serde_yaml::{Mapping, Value};
use std::path::Path;

/// The converted metrics and answer filter, with notes for the suite's header.
pub struct Scoring {
    pub metric_list: Vec<MetricSpec>,
    pub filter: Filter,
    pub notes: Vec<String>,
}

/// `metric_list` and `filter_list` of the task in `path`.
pub fn scoring(path: &Path, map: &Mapping) -> Result<Scoring> {
    let mut notes = Vec::new();
    let mut metric_list = Vec::new();
    let mut filter = Filter::None;
    if let Some(Value::Sequence(ms)) = map.get("metric_list") {
        for m in ms {
            let name = m.get("metric").and_then(Value::as_str).or(m.as_str()).unwrap_or_default().to_string();
            if !["acc", "acc_norm", "exact_match"].contains(&name.as_str()) {
                return Err(bad(
                    path,
                    "metric_list",
                    format!("metric '{name}' is not supported; use acc, acc_norm or exact_match"),
                ));
            }
            let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
            if name == "exact_match" && (flag("ignore_case") || flag("ignore_punctuation")) {
                filter = Filter::Normalized;
                notes.push("exact_match with ignore_case/ignore_punctuation uses the `normalized` filter (it also drops the articles a/an/the, as TriviaQA's official scorer does)".to_string());
            }
            metric_list.push(MetricSpec::Name(name));
        }
    }
    if let Some(Value::Sequence(filters)) = map.get("filter_list") {
        for f in filters {
            let steps: Vec<String> = f
                .get("filter")
                .and_then(Value::as_sequence)
                .map(|s| s.iter().filter_map(|x| x.get("function").and_then(Value::as_str).map(String::from)).collect())
                .unwrap_or_default();
            let harmless = steps.iter().all(|s| s == "remove_whitespace" || s == "take_first");
            let number = steps.iter().all(|s| s == "regex" || s == "take_first") && steps.iter().any(|s| s == "regex");
            if number {
                // GSM8K's strict-match (`#### N`) and flexible-extract (last number) filters.
                filter = Filter::Number;
                if !notes.iter().any(|n| n.contains("number")) {
                    notes.push("the regex filters use openweigh's `number` filter: the `#### N` answer if the model writes one, else the last number (lm-eval's strict-match, then flexible-extract)".into());
                }
            } else if !harmless {
                return Err(bad(
                    path,
                    "filter_list",
                    format!("filters {steps:?} are not supported (only remove_whitespace and take_first); set `filter:` in the converted suite instead"),
                ));
            }
        }
    }
    Ok(Scoring { metric_list, filter, notes })
}

/// `generation_kwargs` (greedy only) and `repeats` (1 only) of the task in `path`.
pub fn generation(path: &Path, map: &Mapping) -> Result<Option<GenerationKwargs>> {
    let generation_kwargs = match map.get("generation_kwargs") {
        None | Some(Value::Null) => None,
        Some(g) => {
            if g.get("do_sample").and_then(Value::as_bool).unwrap_or(false)
                || g.get("temperature").and_then(Value::as_f64).unwrap_or(0.0) > 0.0
            {
                return Err(bad(
                    path,
                    "generation_kwargs",
                    "sampling is not supported; openweigh decodes greedily".into(),
                ));
            }
            let until = match g.get("until") {
                Some(Value::Sequence(s)) => s.iter().filter_map(Value::as_str).map(String::from).collect(),
                Some(Value::String(s)) => vec![s.clone()],
                _ => Vec::new(),
            };
            let max_gen_toks = g.get("max_gen_toks").and_then(Value::as_u64).unwrap_or(256) as usize;
            Some(GenerationKwargs { until, max_gen_toks })
        }
    };
    if let Some(r) = map.get("repeats").and_then(Value::as_u64).filter(|r| *r != 1) {
        return Err(bad(
            path,
            "repeats",
            format!("{r} repeats (sampling) are not supported; openweigh decodes once, greedily"),
        ));
    }
    Ok(generation_kwargs)
}
