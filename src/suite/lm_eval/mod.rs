//! Importing lm-evaluation-harness task YAML files into openweigh suites.
//!
//! The common subset converts one to one, since suites already speak
//! lm-eval's vocabulary: Jinja `doc_to_text` / `doc_to_choice` /
//! `doc_to_target` (a bare field name such as `label` becomes `{{ label }}`, as
//! lm-eval reads it), `target_delimiter`, `fewshot_delimiter`, `description`,
//! `output_type` multiple_choice and generate_until, `metric_list` acc /
//! acc_norm / exact_match, `num_fewshot`, greedy `generation_kwargs`, and
//! `include:` of a base file. `dataset_path`/`dataset_name` are mapped to a
//! catalog dataset (`datasets`), and `test_split` / `validation_split` /
//! `fewshot_split` / `training_split` to the catalog datasets holding those
//! splits (`splits`): a split the catalog does not hold is refused by name.
//! Anything that needs Python (`!function` hooks, `process_docs`, custom
//! filters) is refused with an error naming the field.

mod datasets;
mod fields;
mod filters;
mod splits;

use crate::suite::{ChoiceSpec, OutputType, TargetSpec, TaskSpec};
use anyhow::{Context, Result};
use fields::{as_template, bad, read_merged, string_field};
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Converts one lm-eval task file into suite YAML; returns (task name, YAML).
/// `dataset` (`--dataset`) overrides the dataset mapping, `split`
/// (`--split`) the evaluated split.
pub fn import(path: &Path, dataset: Option<&str>, split: Option<&str>) -> Result<(String, String)> {
    let map = read_merged(path, 0)?;
    fields::refuse_python_hooks(path, &map)?;
    let task = string_field(path, &map, "task")?.ok_or_else(|| bad(path, "task", "missing".into()))?;
    let output_type = match string_field(path, &map, "output_type")?.as_deref() {
        Some("multiple_choice") | None => OutputType::MultipleChoice,
        Some("generate_until") => OutputType::GenerateUntil,
        Some(other) => {
            return Err(bad(
                path,
                "output_type",
                format!("'{other}' is not supported; openweigh runs multiple_choice and generate_until"),
            ))
        }
    };
    let ds_path = string_field(path, &map, "dataset_path")?.unwrap_or_default();
    let ds_name = string_field(path, &map, "dataset_name")?.unwrap_or_default();
    let dataset = datasets::catalog_dataset(path, &ds_path, &ds_name, dataset)?;
    fields::refuse_unknown_keys(path, &map)?;
    let doc_to_text =
        string_field(path, &map, "doc_to_text")?.ok_or_else(|| bad(path, "doc_to_text", "missing".into()))?;
    let doc_to_choice = match map.get("doc_to_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(ChoiceSpec::Template(as_template(s))),
        Some(Value::Sequence(items)) => Some(ChoiceSpec::List(
            items.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| format!("{v:?}"))).collect(),
        )),
        Some(v) => return Err(bad(path, "doc_to_choice", format!("expected a template or a list, got {v:?}"))),
    };
    let doc_to_target = match map.get("doc_to_target") {
        Some(Value::Number(n)) if n.as_u64().is_some() => TargetSpec::Index(n.as_u64().unwrap_or(0) as usize),
        Some(Value::String(s)) => TargetSpec::Template(as_template(s)),
        _ => return Err(bad(path, "doc_to_target", "missing, or neither a template nor an index".into())),
    };
    let filters::Scoring { metric_list, filter, mut notes } = filters::scoring(path, &map)?;
    let num_fewshot = map.get("num_fewshot").and_then(Value::as_u64).unwrap_or(0) as usize;
    let splits = splits::map(path, &map, &dataset, split, num_fewshot)?;
    notes.extend(splits.notes);
    let dataset = splits.dataset;
    let generation_kwargs = filters::generation(path, &map)?;
    let spec = TaskSpec {
        task: task.clone(),
        dataset: Some(dataset.clone()),
        data_files: None,
        output_type,
        description: string_field(path, &map, "description")?.unwrap_or_default(),
        doc_to_text: as_template(&doc_to_text),
        doc_to_choice,
        doc_to_target,
        fewshot_target: None,
        target_delimiter: string_field(path, &map, "target_delimiter")?.unwrap_or_else(|| " ".into()),
        fewshot_delimiter: string_field(path, &map, "fewshot_delimiter")?.unwrap_or_else(|| "\n\n".into()),
        num_fewshot,
        metric_list,
        generation_kwargs,
        filter,
        sample: None,
        seed: 1234,
        sample_order: Default::default(),
        chat_template: false,
        group_by: None,
        fewshot_dataset: splits.fewshot_dataset,
        fewshot_data_files: None,
        fewshot_sampler: Default::default(),
        fewshot_match: None,
        exec_timeout_s: 10.0,
    };
    super::validate::validate(&spec).map_err(|message| crate::error::UserError::BadFile {
        path: path.into(),
        message: format!("converts to a task openweigh cannot run ({message}); fix the task file"),
    })?;
    #[derive(serde::Serialize)]
    struct SuiteOut<'a> {
        name: &'a str,
        description: String,
        tasks: Vec<&'a TaskSpec>,
    }
    let text = std::fs::read(path)?;
    let body = serde_yaml::to_string(&SuiteOut {
        name: &task,
        description: format!(
            "Imported from lm-evaluation-harness task '{task}' ({ds_path} {ds_name} → catalog dataset {dataset})"
        ),
        tasks: vec![&spec],
    })
    .context("writing the converted suite")?;
    let mut header = format!(
        "# Converted by `openweigh suites import-lm-eval` from {} (sha256 {}).\n",
        path.display(),
        hex::encode(Sha256::digest(&text))
    );
    for n in notes {
        header.push_str(&format!("# note: {n}\n"));
    }
    Ok((task, header + &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn converts_include_bare_fields_and_lists() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "base.yaml", "task: base\ndataset_path: allenai/ai2_arc\ndataset_name: ARC-Easy\noutput_type: multiple_choice\ndoc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_target: \"{{choices.label.index(answerKey)}}\"\ndoc_to_choice: \"{{choices.text}}\"\nmetric_list:\n  - metric: acc\n  - metric: acc_norm\nmetadata:\n  version: 1.0\n");
        let p = write(tmp.path(), "child.yaml", "include: base.yaml\ntask: child\ndataset_name: ARC-Challenge\n");
        let (name, yaml) = import(&p, None, None).unwrap();
        assert_eq!(name, "child");
        assert!(yaml.contains("dataset: arc_challenge"), "{yaml}");
        let p = write(tmp.path(), "piqa.yaml", "task: piqa\ndataset_path: baber/piqa\noutput_type: multiple_choice\ndoc_to_text: \"Question: {{goal}}\\nAnswer:\"\ndoc_to_target: label\ndoc_to_choice: \"{{[sol1, sol2]}}\"\n");
        let (_, yaml) = import(&p, None, None).unwrap();
        assert!(yaml.contains("doc_to_target: '{{ label }}'"), "{yaml}");
    }

    #[test]
    fn python_hooks_and_unknown_datasets_name_the_field() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(tmp.path(), "w.yaml", "task: winogrande\ndataset_path: allenai/winogrande\ndataset_name: winogrande_xl\ndoc_to_text: !function preprocess_winogrande.doc_to_text\ndoc_to_target: x\ndoc_to_choice: \"{{[a]}}\"\n");
        let e = import(&p, None, None).unwrap_err().to_string();
        assert!(e.contains("`doc_to_text`") && e.contains("!function"), "{e}");
        let p = write(
            tmp.path(),
            "x.yaml",
            "task: x\ndataset_path: someone/else\ndoc_to_text: q\ndoc_to_target: 0\ndoc_to_choice: [a, b]\n",
        );
        let e = import(&p, None, None).unwrap_err().to_string();
        assert!(e.contains("`dataset_path`") && e.contains("--dataset"), "{e}");
        let p = write(
            tmp.path(),
            "y.yaml",
            "task: y\ndataset_path: piqa\noutput_type: loglikelihood_rolling\ndoc_to_text: q\ndoc_to_target: 0\n",
        );
        assert!(import(&p, None, None).unwrap_err().to_string().contains("`output_type`"));
    }

    #[test]
    fn splits_are_mapped_or_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let arc = "task: arc\ndataset_path: allenai/ai2_arc\ndataset_name: ARC-Easy\noutput_type: multiple_choice\ntraining_split: train\nvalidation_split: validation\ntest_split: test\ndoc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_target: \"{{choices.label.index(answerKey)}}\"\ndoc_to_choice: \"{{choices.text}}\"\n";
        let p = write(tmp.path(), "arc.yaml", arc);
        // lm-eval evaluates ARC's test split; the catalog's HF-schema file is validation.
        let e = import(&p, None, None).unwrap_err().to_string();
        assert!(e.contains("`test_split`") && e.contains("--split validation"), "{e}");
        let (_, yaml) = import(&p, None, Some("validation")).unwrap();
        assert!(
            yaml.contains("dataset: arc_easy") && yaml.contains("# note: evaluates the validation split (--split)"),
            "{yaml}"
        );
        // Few-shot examples from the training split, which the catalog lacks.
        let p = write(tmp.path(), "arc5.yaml", &format!("{arc}num_fewshot: 5\n"));
        let e = import(&p, None, Some("validation")).unwrap_err().to_string();
        assert!(e.contains("`training_split`") && e.contains("num_fewshot: 0"), "{e}");
        // MMLU: test evaluated, few-shot from dev, which the catalog holds as mmlu_dev.
        let p = write(
            tmp.path(),
            "mmlu.yaml",
            "task: mmlu_x\ndataset_path: hails/mmlu_no_train\ndataset_name: all\noutput_type: multiple_choice\ntest_split: test\nfewshot_split: dev\nnum_fewshot: 5\ndoc_to_text: \"{{question}}\"\ndoc_to_target: answer\ndoc_to_choice: [A, B, C, D]\n",
        );
        let (_, yaml) = import(&p, Some("mmlu"), None).unwrap();
        assert!(yaml.contains("dataset: mmlu\n") && yaml.contains("fewshot_dataset: mmlu_dev"), "{yaml}");
        // Few-shot splits do not matter without few-shot examples.
        let p = write(
            tmp.path(),
            "mmlu0.yaml",
            &std::fs::read_to_string(&p).unwrap().replace("num_fewshot: 5", "num_fewshot: 0"),
        );
        let (_, yaml) = import(&p, Some("mmlu"), None).unwrap();
        assert!(!yaml.contains("fewshot_dataset"), "{yaml}");
    }
}
