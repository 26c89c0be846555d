//! Compare: a paired analysis of two runs of the same suite (`openweigh
//! compare BASE CANDIDATE`). Items are matched by id (and must have the same prompt hash);
//! per task it reports both scores, the difference with a paired bootstrap
//! 95% CI, the exact McNemar p-value (Holm-corrected across tasks), and the
//! items fixed and broken; over tasks, the chance-normalised aggregate score
//! difference with its CI; per model, speed and memory deltas with their
//! spread. The CI gate fails when a task or the aggregate drops
//! significantly by more than a threshold. The exporters in
//! `export::compare` turn the [`Comparison`] into Markdown, HTML and JSON.

use super::BOOTSTRAP_REPLICATES;
use crate::error::UserError;
use crate::results::{ItemResult, RunData, RunMeta, Spread};
use crate::stats::{self, Estimate, Interval};
use anyhow::Result;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

const BOOTSTRAP_SEED: u64 = 20261127;

/// Options of the gate. The two thresholds are in different units on
/// purpose: a task's drop is in points of its own metric (1 point = 0.01
/// accuracy), the aggregate's in points of the chance-normalised score
/// ((score − chance)/(1 − chance), so on a 4-choice task 1 raw point is 1.33
/// normalised points).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GateOptions {
    /// Largest tolerated drop of one task, in percentage points of its primary metric.
    pub max_drop_points: f64,
    /// Largest tolerated drop of the aggregate, in percentage points of the
    /// chance-normalised score.
    pub max_aggregate_drop_points: f64,
    /// Significance level (family-wise across tasks, by Holm).
    pub alpha: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskComparison {
    pub task: String,
    /// The task's primary metric (its first).
    pub metric: String,
    pub base_score: f64,
    pub candidate_score: f64,
    /// candidate − base, with its paired bootstrap 95% CI; `n` is the paired
    /// items compared (failed items in either run excluded).
    pub diff: Estimate,
    /// Items right in the candidate only.
    pub fixed: usize,
    /// Items right in the base only.
    pub broken: usize,
    /// Exact McNemar p-value (two-sided) from `fixed` and `broken`.
    pub p_value: f64,
    /// Holm-adjusted across the tasks of this comparison.
    pub p_holm: f64,
    /// Chance level of the metric (mean of 1/number of choices; 0 for generation).
    pub chance: f64,
    /// Significant drop beyond the gate's threshold.
    pub regression: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AggregateComparison {
    /// Mean over tasks of (score − chance)/(1 − chance).
    pub base: f64,
    pub candidate: f64,
    /// candidate − base, with its stratified paired bootstrap 95% CI; `n`
    /// counts the paired items over all tasks.
    pub diff: Estimate,
    /// Paired bootstrap CI of the difference at the gate's level (1 − alpha).
    pub diff_ci_gate: Interval,
    pub regression: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpeedDelta {
    pub measure: String,
    pub unit: String,
    /// Whether larger is better.
    pub higher_is_better: bool,
    pub base_mean: f64,
    pub base_sd: f64,
    pub candidate_mean: f64,
    pub candidate_sd: f64,
    /// candidate / base.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    pub task: String,
    pub id: String,
    /// "broken" (right in base, wrong in candidate) or "fixed".
    pub kind: String,
    pub prompt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<String>>,
    pub gold: String,
    pub base_prediction: String,
    pub candidate_prediction: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub base_dir: PathBuf,
    pub candidate_dir: PathBuf,
    pub base_model: String,
    pub candidate_model: String,
    pub suite: String,
    /// `status` of each run.json ("complete", or "running" for a run cut short).
    pub base_status: String,
    pub candidate_status: String,
    pub tasks: Vec<TaskComparison>,
    pub aggregate: AggregateComparison,
    pub speed: Vec<SpeedDelta>,
    pub flips: Vec<Flip>,
    pub gate: GateOptions,
    /// Reasons the gate fails; empty when it passes.
    pub regressions: Vec<String>,
    /// Items present in one run only (e.g. different --limit), left out.
    pub unmatched_items: usize,
    /// Pairs left out because an item failed in either run.
    pub failed_pairs: usize,
    /// How the two runs were measured differently (machine, engine, flags).
    pub setup_differences: Vec<SetupDifference>,
}

/// One way two runs were measured differently.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SetupDifference {
    pub what: String,
    pub base: String,
    pub candidate: String,
    /// Whether it can change predictions, not only speed: candle's kernels
    /// differ per instruction set, and engines, weight formats, devices and
    /// thread counts round differently, so items can flip with the model
    /// unchanged.
    pub changes_predictions: bool,
}

impl Comparison {
    /// The differences that can change predictions, as one line; `None` when
    /// both runs were measured the same way.
    pub fn prediction_mismatch(&self) -> Option<String> {
        self.setup_differences_line(true)
    }

    /// The differences that change speed only (the CPU model), as one line.
    pub fn speed_mismatch(&self) -> Option<String> {
        self.setup_differences_line(false)
    }

    /// `what: base vs candidate; …` of the differences that do (or do not)
    /// change predictions; `None` when there are none.
    fn setup_differences_line(&self, changes_predictions: bool) -> Option<String> {
        let d: Vec<String> = self
            .setup_differences
            .iter()
            .filter(|d| d.changes_predictions == changes_predictions)
            .map(|d| format!("{}: {} vs {}", d.what, d.base, d.candidate))
            .collect();
        (!d.is_empty()).then(|| d.join("; "))
    }
}

/// The ways `b` and `c` were measured differently ([`RunMeta::setup`]),
/// prediction-changing first.
fn setup_differences(b: &RunMeta, c: &RunMeta) -> Vec<SetupDifference> {
    b.setup()
        .into_iter()
        .zip(c.setup())
        .filter(|((_, x, _), (_, y, _))| x != y)
        .map(|((what, base, changes_predictions), (_, candidate, _))| SetupDifference {
            what: what.into(),
            base,
            candidate,
            changes_predictions,
        })
        .collect()
}

fn mismatch(message: String) -> anyhow::Error {
    UserError::BadFlag { flag: "compare", message }.into()
}

/// Compares two runs item by item. Fails when they are not runs of the same
/// suite on the same data and prompts.
pub fn compare(base: &RunData, cand: &RunData, gate: GateOptions) -> Result<Comparison> {
    if base.meta.suite.sha256 != cand.meta.suite.sha256 {
        return Err(mismatch(format!(
            "the runs used different suites ({} sha256 {:.12} vs {} sha256 {:.12}); compare runs of the same suite file",
            base.meta.suite.name, base.meta.suite.sha256, cand.meta.suite.name, cand.meta.suite.sha256
        )));
    }
    let cand_tasks: HashMap<&str, _> = cand.meta.suite.tasks.iter().map(|t| (t.task.as_str(), t)).collect();
    for t in &base.meta.suite.tasks {
        if let Some(c) = cand_tasks.get(t.task.as_str()) {
            if c.data_sha256 != t.data_sha256 {
                return Err(mismatch(format!(
                    "task '{}' read different data (sha256 {:.12} vs {:.12}); use the same data files",
                    t.task, t.data_sha256, c.data_sha256
                )));
            }
        }
    }
    let cand_items: HashMap<&str, &ItemResult> = cand.samples.iter().map(|s| (s.id.as_str(), s)).collect();
    let base_ids: std::collections::HashSet<&str> = base.samples.iter().map(|s| s.id.as_str()).collect();
    let mut unmatched = cand.samples.iter().filter(|s| !base_ids.contains(s.id.as_str())).count();
    let mut failed_pairs = 0;
    let mut pairs: BTreeMap<String, Vec<(&ItemResult, &ItemResult)>> = BTreeMap::new();
    for b in &base.samples {
        let Some(c) = cand_items.get(b.id.as_str()) else {
            unmatched += 1;
            continue;
        };
        if b.prompt_hash != c.prompt_hash {
            return Err(mismatch(format!(
                "item {} has different prompts (hash {} vs {}); the suites render differently",
                b.id, b.prompt_hash, c.prompt_hash
            )));
        }
        if b.error.is_some() || c.error.is_some() {
            failed_pairs += 1;
            continue;
        }
        pairs.entry(b.task.clone()).or_default().push((b, c));
    }
    if pairs.is_empty() {
        return Err(mismatch("the runs share no items; run both with the same suite and --limit".into()));
    }
    let order: Vec<&str> = base.meta.suite.tasks.iter().map(|t| t.task.as_str()).collect();
    let primary = |task: &str| {
        base.meta
            .suite
            .tasks
            .iter()
            .find(|t| t.task == task)
            .and_then(|t| t.metrics.first().cloned())
            .unwrap_or_default()
    };

    let mut tasks = Vec::new();
    let mut diffs_by_task = Vec::new();
    let mut flips = Vec::new();
    for task in order.iter().filter(|t| pairs.contains_key(**t)) {
        let items = &pairs[*task];
        let metric = primary(task);
        let score = |r: &ItemResult| r.metrics.get(&metric).copied().unwrap_or(0.0);
        let b: Vec<f64> = items.iter().map(|(x, _)| score(x)).collect();
        let c: Vec<f64> = items.iter().map(|(_, y)| score(y)).collect();
        let diffs: Vec<f64> = c.iter().zip(&b).map(|(c, b)| c - b).collect();
        let fixed = diffs.iter().filter(|d| **d > 0.0).count();
        let broken = diffs.iter().filter(|d| **d < 0.0).count();
        let chance = stats::mean(&items.iter().map(|(x, _)| x.chance()).collect::<Vec<_>>());
        let ci =
            stats::bootstrap_ci(std::slice::from_ref(&diffs), BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED, 0.05, |m| m[0]);
        for (x, y) in items {
            let (bx, cy) = (score(x), score(y));
            if bx != cy {
                flips.push(Flip {
                    task: task.to_string(),
                    id: x.id.clone(),
                    kind: if cy > bx { "fixed".into() } else { "broken".into() },
                    prompt: x.prompt.clone(),
                    choices: x.choices.clone(),
                    gold: x.gold.clone(),
                    base_prediction: x.prediction.clone(),
                    candidate_prediction: y.prediction.clone(),
                });
            }
        }
        tasks.push(TaskComparison {
            task: task.to_string(),
            metric,
            base_score: stats::mean(&b),
            candidate_score: stats::mean(&c),
            diff: Estimate::bootstrap(stats::mean(&diffs), ci, items.len()),
            fixed,
            broken,
            p_value: stats::mcnemar_exact_p(fixed as u64, broken as u64),
            p_holm: 1.0,
            chance,
            regression: false,
        });
        diffs_by_task.push(diffs);
    }
    let holm = stats::holm(&tasks.iter().map(|t| t.p_value).collect::<Vec<_>>());
    let mut regressions = Vec::new();
    for (t, p) in tasks.iter_mut().zip(holm) {
        t.p_holm = p;
        let drop_points = -t.diff.point * 100.0;
        t.regression = t.diff.point < 0.0 && drop_points > gate.max_drop_points && p <= gate.alpha;
        if t.regression {
            regressions.push(format!(
                "{} {} dropped {:.1} points ({:.3} → {:.3}), Holm-adjusted McNemar p = {:.2e} ≤ α = {}, more than the allowed {} points",
                t.task, t.metric, drop_points, t.base_score, t.candidate_score, p, gate.alpha, gate.max_drop_points
            ));
        }
    }

    // Aggregate: mean over tasks of chance-normalised scores. Normalisation is
    // linear, so the aggregate difference is the mean of diff/(1 − chance).
    let scale: Vec<f64> = tasks.iter().map(|t| 1.0 / (1.0 - t.chance)).collect();
    let agg = |means: &[f64]| stats::mean(&means.iter().zip(&scale).map(|(m, s)| m * s).collect::<Vec<_>>());
    let base_agg =
        stats::mean(&tasks.iter().map(|t| stats::normalize_by_chance(t.base_score, t.chance)).collect::<Vec<_>>());
    let cand_agg =
        stats::mean(&tasks.iter().map(|t| stats::normalize_by_chance(t.candidate_score, t.chance)).collect::<Vec<_>>());
    let ci95 = stats::bootstrap_ci(&diffs_by_task, BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED, 0.05, agg);
    let ci_gate = stats::bootstrap_ci(&diffs_by_task, BOOTSTRAP_REPLICATES, BOOTSTRAP_SEED, gate.alpha, agg);
    let agg_diff = cand_agg - base_agg;
    let n_paired = tasks.iter().map(|t| t.diff.n).sum();
    let agg_regression = ci_gate.1 < 0.0 && -agg_diff * 100.0 > gate.max_aggregate_drop_points;
    if agg_regression {
        regressions.push(format!(
            "aggregate (chance-normalised) score dropped {:.1} normalised points ({:.3} → {:.3}), more than the allowed {}; its {:.0}% bootstrap CI [{:.3}, {:.3}] excludes 0",
            -agg_diff * 100.0,
            base_agg,
            cand_agg,
            gate.max_aggregate_drop_points,
            100.0 * (1.0 - gate.alpha),
            ci_gate.0,
            ci_gate.1
        ));
    }
    Ok(Comparison {
        base_dir: base.dir.clone(),
        candidate_dir: cand.dir.clone(),
        base_model: base.meta.model.name.clone(),
        candidate_model: cand.meta.model.name.clone(),
        suite: base.meta.suite.name.clone(),
        base_status: base.meta.status.clone(),
        candidate_status: cand.meta.status.clone(),
        tasks,
        aggregate: AggregateComparison {
            base: base_agg,
            candidate: cand_agg,
            diff: Estimate::bootstrap(agg_diff, ci95, n_paired),
            diff_ci_gate: Interval::new(ci_gate),
            regression: agg_regression,
        },
        speed: speed_deltas(&base.meta, &cand.meta),
        flips,
        gate,
        regressions,
        unmatched_items: unmatched,
        failed_pairs,
        setup_differences: setup_differences(&base.meta, &cand.meta),
    })
}

fn speed_deltas(b: &RunMeta, c: &RunMeta) -> Vec<SpeedDelta> {
    let mut out = Vec::new();
    let mut push = |measure: &str, unit: &str, higher: bool, x: (f64, f64), y: (f64, f64)| {
        out.push(SpeedDelta {
            measure: measure.into(),
            unit: unit.into(),
            higher_is_better: higher,
            base_mean: x.0,
            base_sd: x.1,
            candidate_mean: y.0,
            candidate_sd: y.1,
            ratio: if x.0 != 0.0 { y.0 / x.0 } else { f64::NAN },
        })
    };
    let ms = |s: &Spread| (s.mean, s.sd);
    if let (Some(pb), Some(pc)) = (&b.speed_probe, &c.speed_probe) {
        push("prefill", "tok/s", true, ms(&pb.prefill_tok_per_s), ms(&pc.prefill_tok_per_s));
        push("decode", "tok/s", true, ms(&pb.decode_tok_per_s), ms(&pc.decode_tok_per_s));
        push("TTFT (256-token prompt)", "s", false, ms(&pb.ttft_s), ms(&pc.ttft_s));
        // Self-hosted cost per output token is hardware $/h divided by decode
        // throughput, so its ratio is the inverse of the decode ratio.
        let inv = |s: &Spread| (1e6 / s.mean, 1e6 * s.sd / (s.mean * s.mean));
        push("self-hosted time per 1M output tokens", "s", false, inv(&pb.decode_tok_per_s), inv(&pc.decode_tok_per_s));
    }
    let mib = |x: u64| (x as f64 / (1024.0 * 1024.0), 0.0);
    push("peak RSS", "MiB", false, mib(b.peak_rss_byte), mib(c.peak_rss_byte));
    push("model file", "MiB", false, mib(b.model.file_size_byte), mib(c.model.file_size_byte));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::*;

    #[test]
    fn identical_runs_show_no_difference() {
        let (b, _) = runs(0, 0);
        let c = compare(&b, &b, GATE).unwrap();
        assert!(c.regressions.is_empty());
        assert!(c.flips.is_empty());
        for t in &c.tasks {
            assert_eq!((t.diff.point, t.p_value, t.fixed, t.broken), (0.0, 1.0, 0, 0));
            assert_eq!(t.diff.ci95, Interval { low: 0.0, high: 0.0 });
        }
    }

    #[test]
    fn a_real_drop_fails_the_gate() {
        let (b, c) = runs(12, 0);
        let r = compare(&b, &c, GATE).unwrap();
        let mc = &r.tasks[0];
        assert_eq!((mc.broken, mc.fixed, mc.diff.n), (12, 0, 40));
        assert!((mc.diff.point + 0.3).abs() < 1e-12);
        assert!((mc.p_value - 2.0 / 4096.0).abs() < 1e-12);
        assert!((mc.p_holm - 2.0 * 2.0 / 4096.0).abs() < 1e-12, "two tasks in the Holm family");
        assert!(mc.diff.ci95.high < 0.0);
        assert!(mc.regression && r.aggregate.regression);
        assert_eq!(r.regressions.len(), 2);
        assert_eq!(r.flips.iter().filter(|f| f.kind == "broken").count(), 12);
        // Chance 0.5 for two choices: the normalised drop doubles, averaged over 2 tasks.
        assert!((r.aggregate.diff.point + 0.3).abs() < 1e-12);
        let decode = r.speed.iter().find(|d| d.measure == "decode").unwrap();
        assert!((decode.ratio - 0.8).abs() < 1e-12);
    }

    #[test]
    fn a_small_drop_within_noise_passes() {
        let (b, c) = runs(3, 1);
        let r = compare(&b, &c, GATE).unwrap();
        assert!(r.regressions.is_empty(), "{:?}", r.regressions);
        assert!(r.tasks[0].p_value > 0.05);
    }

    #[test]
    fn runs_measured_differently_are_named() {
        let (b, mut c) = runs(0, 0);
        assert!(compare(&b, &c, GATE).unwrap().setup_differences.is_empty());
        c.meta.host.target_features = vec!["avx2".into(), "fma".into()];
        c.meta.host.cpu = "other".into();
        let r = compare(&b, &c, GATE).unwrap();
        assert_eq!(r.setup_differences.len(), 2);
        let m = r.prediction_mismatch().unwrap();
        assert!(m.contains("CPU features compiled in:  vs avx2,fma"), "{m}");
        assert!(!m.contains("other"), "a CPU name alone changes speed, not predictions: {m}");
        c.meta.host.target_features = b.meta.host.target_features.clone();
        assert!(compare(&b, &c, GATE).unwrap().prediction_mismatch().is_none());
    }

    #[test]
    fn mismatched_suites_are_refused_with_reason() {
        let (b, mut c) = runs(0, 0);
        c.meta.suite.sha256 = "other".into();
        let e = compare(&b, &c, GATE).err().unwrap().to_string();
        assert!(e.contains("different suites"), "{e}");
        let (b, mut c) = runs(0, 0);
        c.meta.suite.tasks[0].data_sha256 = "x".into();
        assert!(compare(&b, &c, GATE).err().unwrap().to_string().contains("different data"));
        let (b, mut c) = runs(0, 0);
        c.samples[3].prompt_hash = "zz".into();
        assert!(compare(&b, &c, GATE).err().unwrap().to_string().contains("mc/3 has different prompts"));
    }
}
