//! Rendering a task's documents into items: the seeded selection of
//! documents, few-shot examples (from the far end of the task's own order, or
//! from a pool in another split, optionally matched per group), the
//! description, `doc_to_text`, choices and gold answer or generation targets,
//! lm-eval's multiple-input form (Winogrande), groups, and the prompt hash
//! that `compare` matches items by.

use super::data;
use super::sample::seeded_order;
use super::spec::{ChoiceSpec, FewshotSampler, GenerationKwargs, OutputType, SampleOrder, TargetSpec, TaskSpec};
use super::template;
use super::{Item, ItemKind, Task};
use crate::catalog;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

fn render_choices(env: &minijinja::Environment, spec: &TaskSpec, doc: &minijinja::Value) -> Result<Vec<String>> {
    match spec.doc_to_choice.as_ref().expect("validated") {
        ChoiceSpec::List(l) => Ok(l.clone()),
        ChoiceSpec::Template(t) => {
            let v = template::evaluate(env, t, doc).context("doc_to_choice")?;
            if v.as_str().is_some() || v.len().is_none() {
                anyhow::bail!("doc_to_choice must give a list, got {v}");
            }
            v.try_iter()?.map(|c| Ok(c.as_str().map(str::to_string).unwrap_or_else(|| c.to_string()))).collect()
        }
    }
}

/// The gold answer of a multiple-choice document as a choice index.
fn render_gold(
    env: &minijinja::Environment,
    spec: &TaskSpec,
    doc: &minijinja::Value,
    choices: &[String],
) -> Result<usize> {
    let gold = match &spec.doc_to_target {
        TargetSpec::Index(i) => *i,
        TargetSpec::Template(t) => {
            let v = template::evaluate(env, t, doc).context("doc_to_target")?;
            if let Some(i) = v.as_usize() {
                i
            } else if let Some(s) = v.as_str() {
                match s.trim().parse::<usize>() {
                    Ok(i) => i,
                    Err(_) => choices.iter().position(|c| c == s).with_context(|| {
                        format!("doc_to_target gave '{s}', neither an index nor one of the choices")
                    })?,
                }
            } else {
                anyhow::bail!("doc_to_target gave {v}, expected an index or a choice text");
            }
        }
    };
    if gold >= choices.len() {
        anyhow::bail!("doc_to_target index {gold} is out of range for {} choices", choices.len());
    }
    Ok(gold)
}

/// A generation target: one text, or a list of accepted texts (the first shown).
fn render_targets(env: &minijinja::Environment, src: &TargetSpec, doc: &minijinja::Value) -> Result<Vec<String>> {
    let targets = match src {
        TargetSpec::Index(i) => vec![i.to_string()],
        TargetSpec::Template(t) => {
            let v = template::evaluate(env, t, doc).context("doc_to_target")?;
            if v.as_str().is_none() && v.len().is_some() {
                v.try_iter()?.map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).collect()
            } else {
                vec![template::render(env, t, doc).context("doc_to_target")?.trim().to_string()]
            }
        }
    };
    if targets.is_empty() {
        anyhow::bail!("doc_to_target gave an empty list of answers");
    }
    Ok(targets)
}

/// lm-eval's multiple-input form (Winogrande): `doc_to_text` gives the gold
/// index, `doc_to_choice` the contexts, `doc_to_target` the shared continuation.
fn multiple_input_gold(env: &minijinja::Environment, spec: &TaskSpec, doc: &minijinja::Value) -> Result<Option<usize>> {
    if spec.output_type != OutputType::MultipleChoice || template::sole_expression(&spec.doc_to_text).is_none() {
        return Ok(None);
    }
    let v = template::evaluate(env, &spec.doc_to_text, doc).context("doc_to_text")?;
    Ok(if v.as_str().is_none() { v.as_usize() } else { None })
}

/// Text of a document used as a few-shot example: prompt, delimiter, answer.
fn fewshot_example(env: &minijinja::Environment, spec: &TaskSpec, doc: &minijinja::Value) -> Result<String> {
    if let Some(gold) = multiple_input_gold(env, spec, doc)? {
        let contexts = render_choices(env, spec, doc)?;
        let context = contexts.get(gold).context("doc_to_text index is out of range of doc_to_choice")?;
        let cont = render_targets(env, &spec.doc_to_target, doc)?.remove(0);
        return Ok(format!("{context}{}{cont}", spec.target_delimiter));
    }
    let text = template::render(env, &spec.doc_to_text, doc).context("doc_to_text")?;
    let answer = match (&spec.fewshot_target, spec.output_type) {
        (Some(t), _) => template::render(env, t, doc).context("fewshot_target")?,
        (None, OutputType::MultipleChoice) => {
            let choices = render_choices(env, spec, doc)?;
            let gold = render_gold(env, spec, doc, &choices)?;
            choices[gold].clone()
        }
        (None, OutputType::GenerateUntil) => render_targets(env, &spec.doc_to_target, doc)?.remove(0),
    };
    Ok(format!("{text}{}{answer}", spec.target_delimiter))
}

fn hash_item(prompt: &str, kind: &ItemKind) -> String {
    let mut h = Sha256::new();
    h.update(prompt.as_bytes());
    h.update(serde_json::to_vec(kind).unwrap_or_default());
    hex::encode(h.finalize())[..16].to_string()
}

pub(super) fn build_task(spec: TaskSpec, base: &Path, limit: Option<usize>) -> Result<Task> {
    let dataset = spec.dataset.as_deref().map(|name| catalog::dataset(name).expect("validated"));
    let (data_path, licence, layout) = match (dataset, &spec.data_files) {
        (Some(d), _) => (crate::assets::fetch(&d.asset)?, d.asset.licence.to_string(), d.layout),
        (None, Some(p)) => (
            if p.is_absolute() { p.clone() } else { base.join(p) },
            "see the data file".to_string(),
            catalog::DataLayout::Rows,
        ),
        (None, None) => unreachable!("validated"),
    };
    let docs = data::load_documents(&data_path, layout)?;
    let data_sha256 = crate::assets::sha256_file(&data_path)?;
    let order = match spec.sample_order {
        SampleOrder::Seeded => seeded_order(docs.len(), spec.seed),
        SampleOrder::File => (0..docs.len()).collect(),
    };
    // A separate pool of examples, or the far end of this task's own order.
    let pool: Option<Vec<serde_json::Value>> = match (&spec.fewshot_dataset, &spec.fewshot_data_files) {
        (Some(name), _) => {
            let d = catalog::dataset(name).expect("validated");
            Some(data::load_documents(&crate::assets::fetch(&d.asset)?, d.layout)?)
        }
        (None, Some(p)) => {
            let p = if p.is_absolute() { p.clone() } else { base.join(p) };
            Some(data::load_documents(&p, catalog::DataLayout::Rows)?)
        }
        (None, None) => None,
    };
    let holdout = if pool.is_some() { 0 } else { spec.num_fewshot };
    if holdout > 0 && holdout >= docs.len() {
        anyhow::bail!("num_fewshot {} needs more than the {} documents available", spec.num_fewshot, docs.len());
    }
    let (eval_order, own_shots) = order.split_at(docs.len() - holdout);
    let mut n = eval_order.len();
    if let Some(s) = spec.sample {
        n = n.min(s);
    }
    if let Some(l) = limit {
        n = n.min(l);
    }
    let mut chosen: Vec<usize> = eval_order[..n].to_vec();
    chosen.sort_unstable();

    let env = template::environment();
    let as_value = |i: usize| minijinja::Value::from_serialize(&docs[i]);
    // Few-shot candidates in the order they are taken, as rendered examples
    // with their match key.
    let examples: Vec<(String, String)> = match &pool {
        None => own_shots.iter().map(|&i| (i, as_value(i))).collect::<Vec<_>>(),
        Some(pool) => {
            let idx: Vec<usize> = match spec.fewshot_sampler {
                FewshotSampler::FirstN => (0..pool.len()).collect(),
                FewshotSampler::Random => seeded_order(pool.len(), spec.seed),
            };
            idx.into_iter().map(|i| (i, minijinja::Value::from_serialize(&pool[i]))).collect()
        }
    }
    .into_iter()
    .map(|(i, doc)| {
        let key = match &spec.fewshot_match {
            Some(t) => template::render(&env, t, &doc).context("fewshot_match")?,
            None => String::new(),
        };
        let text = fewshot_example(&env, &spec, &doc).with_context(|| format!("few-shot document {i}"))?;
        Ok((key, text))
    })
    .collect::<Result<_>>()?;
    let prefix_for = |doc: &minijinja::Value| -> Result<String> {
        let key = match &spec.fewshot_match {
            Some(t) => template::render(&env, t, doc).context("fewshot_match")?,
            None => String::new(),
        };
        let mut prefix = template::render(&env, &spec.description, doc).context("description")?;
        let shots: Vec<&String> =
            examples.iter().filter(|(k, _)| *k == key).map(|(_, t)| t).take(spec.num_fewshot).collect();
        if shots.len() < spec.num_fewshot {
            anyhow::bail!("num_fewshot {} but only {} examples match '{key}'", spec.num_fewshot, shots.len());
        }
        for ex in shots {
            prefix.push_str(ex);
            prefix.push_str(&spec.fewshot_delimiter);
        }
        Ok(prefix)
    };
    let mut items = Vec::with_capacity(chosen.len());
    for i in chosen {
        let doc = as_value(i);
        let build = || -> Result<Item> {
            let prefix = prefix_for(&doc)?;
            let multiple_input = multiple_input_gold(&env, &spec, &doc)?;
            let text = match multiple_input {
                Some(_) => String::new(),
                None => template::render(&env, &spec.doc_to_text, &doc).context("doc_to_text")?,
            };
            let prompt = format!("{prefix}{text}");
            let kind = match spec.output_type {
                OutputType::MultipleChoice => {
                    let choices = render_choices(&env, &spec, &doc)?;
                    if choices.len() < 2 {
                        anyhow::bail!(
                            "doc_to_choice gave {} choice(s); multiple choice needs at least 2",
                            choices.len()
                        );
                    }
                    let (gold, continuation) = match multiple_input {
                        Some(gold) if gold < choices.len() => {
                            (gold, Some(render_targets(&env, &spec.doc_to_target, &doc)?.remove(0)))
                        }
                        Some(gold) => {
                            anyhow::bail!("doc_to_text gave index {gold}, out of range for {} contexts", choices.len())
                        }
                        None => (render_gold(&env, &spec, &doc, &choices)?, None),
                    };
                    ItemKind::MultipleChoice {
                        choices,
                        gold,
                        target_delimiter: spec.target_delimiter.clone(),
                        continuation,
                    }
                }
                OutputType::GenerateUntil => {
                    let g =
                        spec.generation_kwargs.clone().unwrap_or(GenerationKwargs { until: vec![], max_gen_toks: 256 });
                    let mut targets = render_targets(&env, &spec.doc_to_target, &doc)?;
                    let target = targets.remove(0);
                    ItemKind::Generate { target, also_accepted: targets, until: g.until, max_tokens: g.max_gen_toks }
                }
            };
            let group = match &spec.group_by {
                Some(t) => Some(template::render(&env, t, &doc).context("group_by")?.trim().to_string()),
                None => None,
            };
            let prompt_hash = hash_item(&prompt, &kind);
            Ok(Item { id: format!("{}/{i}", spec.task), prompt, kind, prompt_hash, group, prefix_len: prefix.len() })
        };
        items.push(build().with_context(|| format!("document {i} of {}", data_path.display()))?);
    }
    let metrics = if spec.metric_list.is_empty() {
        match spec.output_type {
            OutputType::MultipleChoice => vec!["acc".into(), "acc_norm".into()],
            OutputType::GenerateUntil => vec!["exact_match".into()],
        }
    } else {
        spec.metric_list.iter().map(|m| m.name().to_string()).collect()
    };
    Ok(Task { dataset, data_path, data_sha256, data_licence: licence, n_documents: docs.len(), items, metrics, spec })
}
