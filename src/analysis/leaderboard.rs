//! One row per model from finished runs: each task's primary score with its
//! CI, the aggregate score (mean over tasks of chance-normalised scores, with
//! a bootstrap CI that resamples items within each task), and the speed and
//! memory measured in the same run. Used by multi-model `run` and `report`.

use super::BOOTSTRAP_REPLICATES;
use crate::results::{by_group, ItemResult, RunData};
use crate::stats::{self, Estimate};
use serde::Serialize;

const BOOTSTRAP_SEED: u64 = 20261128;

/// One task's primary-metric score in one run.
#[derive(Debug, Clone, Serialize)]
pub struct TaskScore {
    pub task: String,
    pub metric: String,
    /// Mean of the metric over items (0..1; failed items count as 0), its
    /// Wilson 95% CI and the number of items.
    pub score: Estimate,
    /// Expected score of uniform guessing (1/choices; 0 for generative tasks).
    pub chance: f64,
}

/// A model's results from one run.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    pub model: String,
    pub architecture: String,
    pub run_dir: std::path::PathBuf,
    pub tasks: Vec<TaskScore>,
    /// Scores of item groups within tasks (`group_by`, e.g. MMLU categories),
    /// named `task/group`; not part of the aggregate.
    pub groups: Vec<TaskScore>,
    /// Mean over tasks of (score − chance) / (1 − chance); 0 is guessing, 1
    /// perfect; with its 95% stratified bootstrap CI (items resampled within
    /// each task); `n` counts items.
    pub aggregate: Estimate,
    pub prefill_tok_per_s: Option<f64>,
    pub decode_tok_per_s: Option<f64>,
    /// Time to first token of the speed probe (seconds).
    pub ttft_s: Option<f64>,
    pub peak_rss_byte: u64,
    /// Tokens the suite put through the model: prompt (cached included) and generated.
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// Seconds spent on the items (load and probe excluded).
    pub eval_s: f64,
    pub n_failed: usize,
}

/// The aggregate of per-task means given each task's chance level.
pub fn aggregate(means: &[f64], chances: &[f64]) -> f64 {
    stats::mean(&means.iter().zip(chances).map(|(s, c)| stats::normalize_by_chance(*s, *c)).collect::<Vec<_>>())
}

/// The score of `items` on `metric`, with its CI and chance level.
fn task_score(task: String, metric: &str, items: &[&ItemResult]) -> (TaskScore, Vec<f64>) {
    let xs: Vec<f64> = items.iter().map(|r| r.metrics.get(metric).copied().unwrap_or(0.0)).collect();
    let chance = stats::mean(&items.iter().map(|r| r.chance()).collect::<Vec<_>>());
    let score = TaskScore { task, metric: metric.to_string(), score: Estimate::proportion(&xs), chance };
    (score, xs)
}

impl ModelRow {
    /// A task's score, or a group's (`task/group`).
    pub fn score(&self, key: &str) -> Option<&TaskScore> {
        self.tasks.iter().chain(&self.groups).find(|t| t.task == key)
    }
}

pub fn model_row(run: &RunData) -> ModelRow {
    let mut tasks = Vec::new();
    let mut subgroups = Vec::new();
    let mut groups = Vec::new();
    for info in &run.meta.suite.tasks {
        let Some(metric) = info.metrics.first() else { continue };
        let items: Vec<&ItemResult> = run.samples.iter().filter(|s| s.task == info.task).collect();
        if items.is_empty() {
            continue;
        }
        let (score, xs) = task_score(info.task.clone(), metric, &items);
        tasks.push(score);
        groups.push(xs);
        for (g, members) in by_group(items.iter().copied()) {
            subgroups.push(task_score(format!("{}/{g}", info.task), metric, &members).0);
        }
    }
    let chances: Vec<f64> = tasks.iter().map(|t| t.chance).collect();
    let means: Vec<f64> = tasks.iter().map(|t| t.score.point).collect();
    let n_items = tasks.iter().map(|t| t.score.n).sum();
    let ci = stats::bootstrap_ci(&groups, BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED, 0.05, |m| aggregate(m, &chances));
    let probe = run.meta.speed_probe.as_ref();
    ModelRow {
        model: run.meta.model.name.clone(),
        architecture: run.meta.model.architecture.clone(),
        run_dir: run.dir.clone(),
        aggregate: Estimate::bootstrap(aggregate(&means, &chances), ci, n_items),
        tasks,
        groups: subgroups,
        prefill_tok_per_s: probe.map(|p| p.prefill_tok_per_s.mean),
        decode_tok_per_s: probe.map(|p| p.decode_tok_per_s.mean),
        ttft_s: probe.map(|p| p.ttft_s.mean),
        peak_rss_byte: run.meta.peak_rss_byte,
        tokens_in: run.samples.iter().map(|s| s.tokens_in as u64).sum(),
        tokens_out: run.samples.iter().map(|s| s.tokens_out as u64).sum(),
        eval_s: run.meta.eval_s,
        n_failed: run.meta.n_failed,
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The terminal table: one row per model, one column per task (primary metric).
pub fn format_table(rows: &[ModelRow]) -> String {
    let mut tasks: Vec<String> = Vec::new();
    for r in rows {
        for t in &r.tasks {
            if !tasks.contains(&t.task) {
                tasks.push(t.task.clone());
            }
        }
    }
    let width = rows.iter().map(|r| r.model.len()).max().unwrap_or(5).max(5);
    let mut s = format!("{:<width$} {:>17}", "model", "aggregate (95% CI)");
    for t in &tasks {
        s.push_str(&format!(" {:>14}", truncate(t, 14)));
    }
    s.push_str(&format!(" {:>9} {:>9} {:>8} {:>9}\n", "prefill/s", "decode/s", "TTFT s", "peak MiB"));
    for r in rows {
        s.push_str(&format!(
            "{:<width$} {:>17}",
            r.model,
            format!("{:.3} [{:.2},{:.2}]", r.aggregate.point, r.aggregate.ci95.low, r.aggregate.ci95.high)
        ));
        for t in &tasks {
            let cell = r.tasks.iter().find(|x| &x.task == t).map_or("-".into(), |x| format!("{:.3}", x.score.point));
            s.push_str(&format!(" {cell:>14}"));
        }
        s.push_str(&format!(
            " {:>9} {:>9} {:>8} {:>9.0}\n",
            opt(r.prefill_tok_per_s, 1),
            opt(r.decode_tok_per_s, 1),
            opt(r.ttft_s, 3),
            r.peak_rss_byte as f64 / (1024.0 * 1024.0)
        ));
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn aggregate_is_zero_at_chance_and_one_when_perfect() {
        assert_eq!(aggregate(&[0.25, 0.5], &[0.25, 0.5]), 0.0);
        assert_eq!(aggregate(&[1.0, 1.0], &[0.25, 0.0]), 1.0);
        assert!((aggregate(&[0.625, 0.5], &[0.25, 0.0]) - 0.5).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn aggregate_is_monotone_in_each_score(s in 0.0f64..1.0, d in 0.0f64..0.5, c in 0.0f64..0.9) {
            let lo = aggregate(&[s, 0.5], &[c, 0.25]);
            let hi = aggregate(&[(s + d).min(1.0), 0.5], &[c, 0.25]);
            prop_assert!(hi >= lo);
        }
    }
}
