//! Which documents an lm-eval task evaluates and where its few-shot examples
//! come from, mapped onto catalog datasets. lm-eval evaluates `test_split`
//! when the task has one, else `validation_split`; it draws few-shot examples
//! from `fewshot_split`, else `training_split`, else `validation_split`, else
//! the test split. Each catalog dataset holds one split, so a split the
//! catalog does not hold is refused by name, never silently swapped; a
//! different split is evaluated only when asked for with `--split`.

use super::fields::{bad, string_field};
use crate::catalog;
use anyhow::Result;
use serde_yaml::Mapping;
use std::path::Path;

/// Catalog datasets that hold another split of a dataset with the same fields:
/// (dataset, split, the catalog dataset of that split).
const SAME_SCHEMA_SPLITS: &[(&str, &str, &str)] = &[("mmlu", "dev", "mmlu_dev"), ("mmlu_dev", "test", "mmlu")];

/// The catalog dataset holding `split` of `dataset` (itself, or a sibling with the same fields).
fn dataset_for_split(dataset: &str, split: &str) -> Option<&'static str> {
    let d = catalog::dataset(dataset)?;
    if d.split == split {
        return Some(d.asset.name);
    }
    SAME_SCHEMA_SPLITS.iter().find(|(base, s, _)| *base == dataset && *s == split).map(|(_, _, sibling)| *sibling)
}

/// How the task's splits were mapped.
pub struct Splits {
    /// The catalog dataset evaluated.
    pub dataset: String,
    /// The catalog dataset few-shot examples come from, when not the evaluated one.
    pub fewshot_dataset: Option<String>,
    /// Lines for the converted suite's header.
    pub notes: Vec<String>,
}

/// Maps the task's splits onto `dataset` (the catalog dataset its
/// `dataset_path` maps to). `split` (`--split`) evaluates that split instead
/// of the task's own.
pub fn map(path: &Path, map: &Mapping, dataset: &str, split: Option<&str>, num_fewshot: usize) -> Result<Splits> {
    let field = |k: &str| string_field(path, map, k);
    let (test, validation) = (field("test_split")?, field("validation_split")?);
    let (own_field, own_split) = match (&test, &validation) {
        (Some(t), _) => ("test_split", Some(t.clone())),
        (None, Some(v)) => ("validation_split", Some(v.clone())),
        (None, None) => ("test_split", None),
    };
    let mut notes = Vec::new();
    let held = catalog::dataset(dataset).map(|d| d.split).unwrap_or("?");
    let eval_split = match (split, &own_split) {
        (Some(s), own) => {
            if own.as_deref() != Some(s) {
                notes.push(format!(
                    "evaluates the {s} split (--split); the task file evaluates {}, so scores are not comparable with lm-eval's for this task",
                    own.as_deref().unwrap_or("its default split")
                ));
            }
            s.to_string()
        }
        (None, Some(s)) => s.clone(),
        (None, None) => held.to_string(),
    };
    let dataset = dataset_for_split(dataset, &eval_split).ok_or_else(|| {
        let fix = if split.is_some() { "--split" } else { own_field };
        bad(
            path,
            fix,
            format!(
                "the task evaluates the {eval_split} split, which the catalog does not hold (catalog dataset {dataset} is its {held} split); pass --split {held} to evaluate that split instead, or --dataset NAME (`openweigh suites --datasets`)"
            ),
        )
    })?;
    let mut fewshot_dataset = None;
    if num_fewshot > 0 {
        let source = ["fewshot_split", "training_split", "validation_split", "test_split"]
            .iter()
            .map(|k| Ok(field(k)?.map(|s| (*k, s))))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .next();
        match source {
            Some((_, s)) if s == eval_split => {
                notes.push(format!("few-shot examples come from the {s} split's own documents, never evaluated"));
            }
            Some((key, s)) => {
                let pool = dataset_for_split(dataset, &s).ok_or_else(|| {
                    bad(
                        path,
                        key,
                        format!(
                            "few-shot examples come from the {s} split, which the catalog does not hold for {dataset}; set num_fewshot: 0, or write the suite by hand with `fewshot_data_files:`"
                        ),
                    )
                })?;
                fewshot_dataset = Some(pool.to_string());
            }
            None => {
                notes.push("few-shot examples come from the evaluated split's own documents, never evaluated".into())
            }
        }
    }
    Ok(Splits { dataset: dataset.to_string(), fewshot_dataset, notes })
}
