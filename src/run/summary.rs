//! Run summaries: each task's rows of `summary.csv` (per metric, then per
//! group of items) from its item results, and the terminal table printed at
//! the end of a run. Failed items count as wrong.

use crate::results::{by_group, ItemResult, TaskSummary};
use crate::stats;
use crate::suite::Task;

/// Per-metric rows for one task, then per group (`group_by`) in name order.
/// Failed items count as wrong.
pub fn summarize(task: &Task, results: &[ItemResult]) -> Vec<TaskSummary> {
    let mut rows = summary_rows(task, "", &results.iter().collect::<Vec<_>>());
    for (g, members) in by_group(results) {
        rows.extend(summary_rows(task, g, &members));
    }
    rows
}

fn summary_rows(task: &Task, group: &str, results: &[&ItemResult]) -> Vec<TaskSummary> {
    let latencies: Vec<f64> = results.iter().filter(|r| r.error.is_none()).map(|r| r.wall_s).collect();
    task.metrics
        .iter()
        .map(|m| {
            let xs: Vec<f64> = results.iter().map(|r| r.metrics.get(m).copied().unwrap_or(0.0)).collect();
            let score = stats::Estimate::proportion(&xs);
            TaskSummary {
                task: task.spec.task.clone(),
                group: group.to_string(),
                metric: m.clone(),
                n: results.len(),
                n_failed: results.iter().filter(|r| r.error.is_some()).count(),
                score: score.point,
                stderr: score.stderr.unwrap_or(0.0),
                ci95_low: score.ci95.low,
                ci95_high: score.ci95.high,
                latency_p50_s: stats::percentile(&latencies, 50.0).unwrap_or(0.0),
                latency_p90_s: stats::percentile(&latencies, 90.0).unwrap_or(0.0),
                tokens_in: results.iter().map(|r| r.tokens_in).sum(),
                tokens_out: results.iter().map(|r| r.tokens_out).sum(),
            }
        })
        .collect()
}

/// The terminal summary table.
pub fn format_table(rows: &[TaskSummary]) -> String {
    let name = |r: &TaskSummary| if r.group.is_empty() { r.task.clone() } else { format!("  {}", r.group) };
    let w = rows.iter().map(|r| name(r).chars().count()).max().unwrap_or(0).max(16);
    let mut s = format!(
        "{:<w$} {:>5} {:<12} {:>19} {:>9} {:>9}\n",
        "task", "n", "metric", "score [95% CI]", "p50 (s)", "p90 (s)"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<w$} {:>5} {:<12} {:>19} {:>9.3} {:>9.3}\n",
            name(r),
            r.n,
            r.metric,
            format!("{:.3} [{:.2},{:.2}]", r.score, r.ci95_low, r.ci95_high),
            r.latency_p50_s,
            r.latency_p90_s
        ));
    }
    s
}
