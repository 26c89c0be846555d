//! Which catalog dataset an lm-eval task reads: its `dataset_path` and
//! `dataset_name` mapped to the catalog (no hub access here), or the one
//! given with `--dataset`. ARC and OpenBookQA map to the HF-schema
//! validation files the catalog holds.

use super::fields::bad;
use crate::catalog;
use crate::error::UserError;
use anyhow::Result;
use std::path::Path;

/// (lm-eval `dataset_path`, `dataset_name` or "" for any) → catalog dataset.
/// ARC and OpenBookQA map to the HF-schema validation files the catalog holds.
const DATASET_MAP: &[(&str, &str, &str)] = &[
    ("allenai/ai2_arc", "ARC-Easy", "arc_easy"),
    ("ai2_arc", "ARC-Easy", "arc_easy"),
    ("allenai/ai2_arc", "ARC-Challenge", "arc_challenge"),
    ("ai2_arc", "ARC-Challenge", "arc_challenge"),
    ("baber/piqa", "", "piqa"),
    ("piqa", "", "piqa"),
    ("ybisk/piqa", "", "piqa"),
    ("allenai/openbookqa", "main", "openbookqa"),
    ("openbookqa", "main", "openbookqa"),
    ("Rowan/hellaswag", "", "hellaswag"),
    ("hellaswag", "", "hellaswag"),
    ("tau/commonsense_qa", "", "commonsense_qa"),
    ("allenai/winogrande", "winogrande_xl", "winogrande"),
    ("winogrande", "winogrande_xl", "winogrande"),
    ("super_glue", "boolq", "boolq"),
    ("aps/super_glue", "boolq", "boolq"),
    ("google/boolq", "", "boolq"),
    ("mandarjoshi/trivia_qa", "rc.nocontext", "triviaqa"),
    ("trivia_qa", "rc.nocontext", "triviaqa"),
    ("openai/gsm8k", "main", "gsm8k"),
    ("gsm8k", "main", "gsm8k"),
    ("openai/openai_humaneval", "", "humaneval"),
    ("openai_humaneval", "", "humaneval"),
];

/// The catalog dataset for the task in `path`: `given` (`--dataset`) when
/// set, else the mapping of its `dataset_path` / `dataset_name`.
pub fn catalog_dataset(path: &Path, ds_path: &str, ds_name: &str, given: Option<&str>) -> Result<String> {
    Ok(match given {
        Some(d) if catalog::dataset(d).is_some() => d.to_string(),
        Some(d) => return Err(UserError::BadFlag { flag: "--dataset", message: format!("unknown catalog dataset '{d}'; `openweigh suites --datasets` lists them") }.into()),
        None => DATASET_MAP
            .iter()
            .find(|(p, n, _)| *p == ds_path && (n.is_empty() || *n == ds_name))
            .map(|(_, _, c)| c.to_string())
            .ok_or_else(|| {
                bad(
                    path,
                    "dataset_path",
                    format!("no catalog dataset for {ds_path} {ds_name} (no hub access here); pass --dataset NAME (`openweigh suites --datasets`)"),
                )
            })?,
    })
}
