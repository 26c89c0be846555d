//! Score: an item and what the model answered → each metric's value. The
//! metrics themselves are pure functions, one file per kind of output:
//! `choice` (acc, acc_norm from log-likelihoods), `generate` (exact match
//! with filters), and `execute` (pass@1: the completion run against the
//! task's tests in a guarded python3 subprocess). This module decides which
//! applies to which metric; nothing here talks to a model.

pub mod choice;
pub mod execute;
pub mod generate;

use crate::backend::{ChoiceLogLik, Output};
use crate::suite::{Item, ItemKind, Suite, Task};
use anyhow::Result;
use std::collections::BTreeMap;
use std::time::Duration;

/// What scoring one item gives: the fields of its result that depend on the
/// model's answer.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Choice texts (multiple choice only).
    pub choices: Option<Vec<String>>,
    /// Gold answer: the choice index as text, or the target string.
    pub gold: String,
    /// The primary metric's choice index as text, the filtered answer, or how
    /// a pass@1 program ended.
    pub prediction: String,
    /// Raw generated text (generation only).
    pub generated: Option<String>,
    /// Log-likelihood of every choice (multiple choice only).
    pub loglik: Option<Vec<ChoiceLogLik>>,
    /// Each metric's value for this item (0 or 1).
    pub metrics: BTreeMap<String, f64>,
    /// Whether the task's first (primary) metric is 1.
    pub correct: bool,
}

/// Checks, before any weights load, what scoring the suite will need:
/// python3 for pass@1 tasks.
pub fn check_requirements(suite: &Suite) -> Result<()> {
    if runs_code(suite) {
        execute::check_python()?;
    }
    Ok(())
}

/// Whether the suite executes generated code (a pass@1 task).
pub fn runs_code(suite: &Suite) -> bool {
    suite.tasks.iter().any(|t| t.metrics.iter().any(|m| m == "pass@1"))
}

/// How generated code is shut in on this machine, for `run.json`, when the
/// suite runs any; a note on stderr when the kernel grants less than full
/// isolation.
pub fn code_sandbox(suite: &Suite) -> Option<String> {
    if !runs_code(suite) {
        return None;
    }
    let level = execute::isolation();
    if level != execute::Isolation::NetworkAndFiles {
        eprintln!("note: generated code runs with less isolation here: {}", level.describe());
    }
    Some(level.describe())
}

/// Scores one item's output on every metric of its task.
pub fn score_item(task: &Task, item: &Item, output: Output) -> Result<Scored> {
    let mut metrics = BTreeMap::new();
    let (choices, gold, prediction, generated, loglik) = match (&item.kind, output) {
        (ItemKind::MultipleChoice { choices, gold, .. }, Output::LogLikelihood(ll)) => {
            // acc_norm divides by the length of each choice as `doc_to_choice`
            // gives it (lm-eval's `len(choice)`): the target delimiter is not
            // counted, and for partial scoring the choice is the context option.
            let acc = choice::predict_acc(&ll);
            let acc_norm = choice::predict_acc_norm(&ll, choices);
            for m in &task.metrics {
                let pred = if m == "acc_norm" { acc_norm } else { acc };
                metrics.insert(m.clone(), (pred == *gold) as u8 as f64);
            }
            let shown = if task.metrics[0] == "acc" { acc } else { acc_norm };
            (Some(choices.clone()), gold.to_string(), shown.to_string(), None, Some(ll))
        }
        (ItemKind::Generate { target, also_accepted, .. }, Output::Text(text)) => {
            let mut prediction = generate::apply_filter(task.spec.filter, &text);
            for m in &task.metrics {
                let ok = if m == "pass@1" {
                    // The program: the document's own prompt (no few-shot prefix), the completion, the tests.
                    let program = format!("{}{text}\n{target}\n", &item.prompt[item.prefix_len..]);
                    let outcome = execute::run_python(&program, Duration::from_secs_f64(task.spec.exec_timeout_s))?;
                    prediction = outcome.describe();
                    outcome.passed()
                } else {
                    generate::exact_match(
                        task.spec.filter,
                        &prediction,
                        std::iter::once(target).chain(also_accepted).map(String::as_str),
                    )
                };
                metrics.insert(m.clone(), ok as u8 as f64);
            }
            // A lettered question's options (its prompt's "A. …" lines) set its chance level.
            let options = (task.spec.filter == crate::suite::Filter::Letter)
                .then(|| generate::option_letters(&item.prompt[item.prefix_len..]))
                .filter(|o| !o.is_empty());
            (options, target.clone(), prediction, Some(text), None)
        }
        _ => anyhow::bail!("backend answered with the wrong kind of output"),
    };
    let correct = metrics.get(&task.metrics[0]).copied() == Some(1.0);
    Ok(Scored { choices, gold, prediction, generated, loglik, metrics, correct })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::Suite;

    fn ll(lp: &[f64]) -> Output {
        Output::LogLikelihood(
            lp.iter().map(|&logprob| ChoiceLogLik { logprob, n_tokens: 1, is_greedy: false }).collect(),
        )
    }

    /// A one-item multiple-choice task whose choices are "ab" and "abcd".
    fn task(dir: &std::path::Path, extra: &str) -> Suite {
        std::fs::write(dir.join("d.jsonl"), "{\"q\": \"x\"}\n").unwrap();
        let p = dir.join("s.yaml");
        std::fs::write(
            &p,
            format!("name: s\ntasks:\n  - task: t\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"{{{{q}}}}\"\n    doc_to_choice: [\"ab\", \"abcd\"]\n    doc_to_target: 1\n    metric_list: [acc_norm, acc]\n{extra}"),
        )
        .unwrap();
        Suite::load(p.to_str().unwrap(), None).unwrap()
    }

    #[test]
    fn acc_norm_divides_by_the_choice_without_the_delimiter() {
        let tmp = tempfile::tempdir().unwrap();
        // With a long delimiter the two rules disagree. By len(choice):
        // −3.0/2 = −1.5 < −5.5/4 = −1.375, so "abcd" (gold) wins. By
        // len(delimiter + choice): −3.0/12 = −0.25 > −5.5/14 ≈ −0.39, "ab" would.
        let suite = task(tmp.path(), "    target_delimiter: \"          \"\n");
        let (t, item) = (&suite.tasks[0], &suite.tasks[0].items[0]);
        let s = score_item(t, item, ll(&[-3.0, -5.5])).unwrap();
        assert_eq!(s.metrics["acc_norm"], 1.0, "acc_norm must divide by len(choice)");
        assert_eq!(s.metrics["acc"], 0.0);
        assert_eq!(s.prediction, "1");
    }
}
