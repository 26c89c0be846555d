//! Validation of one task as written, before any data is read or weights
//! loaded: data source, output type against metrics and choices, few-shot
//! pools, limits, and that every template compiles. Each message names the
//! field and the fix.

use super::spec::{ChoiceSpec, FewshotSampler, Filter, OutputType, TargetSpec, TaskSpec};
use super::template;
use crate::catalog;

const KNOWN_METRICS: &[&str] = &["acc", "acc_norm", "exact_match", "pass@1"];

/// Checks one task's fields; the message names the field and the fix.
pub(super) fn validate(spec: &TaskSpec) -> std::result::Result<(), String> {
    match (&spec.dataset, &spec.data_files) {
        (None, None) => return Err("needs `dataset:` (a catalog name) or `data_files:` (a local file)".into()),
        (Some(_), Some(_)) => return Err("give either `dataset:` or `data_files:`, not both".into()),
        (Some(d), None) if catalog::dataset(d).is_none() => {
            let known: Vec<_> = catalog::DATASETS.iter().map(|d| d.asset.name).collect();
            return Err(format!(
                "unknown dataset '{d}'; known: {} (`openweigh suites --datasets` lists them)",
                known.join(", ")
            ));
        }
        _ => {}
    }
    if spec.output_type == OutputType::MultipleChoice && spec.doc_to_choice.is_none() {
        return Err("output_type multiple_choice needs `doc_to_choice`".into());
    }
    if spec.output_type == OutputType::GenerateUntil && spec.doc_to_choice.is_some() {
        return Err("`doc_to_choice` only applies to output_type multiple_choice".into());
    }
    for m in &spec.metric_list {
        if !KNOWN_METRICS.contains(&m.name()) {
            return Err(format!(
                "unknown metric '{}' in metric_list; use one of {}",
                m.name(),
                KNOWN_METRICS.join(", ")
            ));
        }
        let (ok, fix) = match spec.output_type {
            OutputType::MultipleChoice => (matches!(m.name(), "acc" | "acc_norm"), "acc or acc_norm"),
            // `acc` of a generated answer: the option letter extracted from the reply.
            OutputType::GenerateUntil => (
                matches!(m.name(), "exact_match" | "pass@1") || (m.name() == "acc" && spec.filter == Filter::Letter),
                "exact_match or pass@1 (acc with filter: letter)",
            ),
        };
        if !ok {
            let kind =
                if spec.output_type == OutputType::MultipleChoice { "multiple_choice" } else { "generate_until" };
            return Err(format!("metric '{}' does not apply to output_type {kind}; use {fix}", m.name()));
        }
    }
    if spec.generation_kwargs.as_ref().is_some_and(|g| g.until.iter().any(String::is_empty)) {
        return Err("generation_kwargs.until holds an empty string, which every text contains, so every answer would be cut to nothing; remove it".into());
    }
    if spec.generation_kwargs.as_ref().is_some_and(|g| g.max_gen_toks == 0) {
        return Err("generation_kwargs.max_gen_toks is 0, so nothing would be generated; use 1 or more".into());
    }
    if spec.sample == Some(0) {
        return Err("`sample: 0` selects no items; remove it to use every document".into());
    }
    let env = template::environment();
    let mut templates = vec![("doc_to_text", spec.doc_to_text.as_str()), ("description", spec.description.as_str())];
    if let Some(ChoiceSpec::Template(t)) = &spec.doc_to_choice {
        templates.push(("doc_to_choice", t));
    }
    if let TargetSpec::Template(t) = &spec.doc_to_target {
        templates.push(("doc_to_target", t));
    }
    if let Some(t) = &spec.fewshot_target {
        templates.push(("fewshot_target", t));
    }
    if let Some(t) = &spec.group_by {
        templates.push(("group_by", t));
    }
    if let Some(t) = &spec.fewshot_match {
        templates.push(("fewshot_match", t));
    }
    match (&spec.fewshot_dataset, &spec.fewshot_data_files) {
        (Some(_), Some(_)) => return Err("give either `fewshot_dataset:` or `fewshot_data_files:`, not both".into()),
        (Some(d), None) if catalog::dataset(d).is_none() => {
            return Err(format!("unknown fewshot_dataset '{d}'; `openweigh suites --datasets` lists them"))
        }
        (None, None) if spec.fewshot_match.is_some() || spec.fewshot_sampler == FewshotSampler::FirstN => {
            return Err("`fewshot_match` and `fewshot_sampler: first_n` need a pool: set `fewshot_dataset:` or `fewshot_data_files:`".into())
        }
        _ => {}
    }
    if !(spec.exec_timeout_s > 0.0 && spec.exec_timeout_s <= 600.0) {
        return Err(format!("exec_timeout_s {} is out of range; use 0 < seconds <= 600", spec.exec_timeout_s));
    }
    for (field, src) in templates {
        env.template_from_str(src).map_err(|e| format!("`{field}` is not a valid Jinja template: {e}"))?;
    }
    Ok(())
}
