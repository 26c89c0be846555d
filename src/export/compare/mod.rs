//! The comparison of two runs as files: `compare.md` (`markdown`, also what
//! the terminal shows, with fewer flipped items), `compare.html` (`html`) and
//! `compare.json` (`json`). The table cells here are shared by the Markdown
//! and HTML exporters, so both always show the same numbers.

pub mod html;
pub mod json;
pub mod markdown;

use super::Exporter;
use crate::analysis::compare::{AggregateComparison, Comparison, SpeedDelta, TaskComparison};

/// Column headings of the per-task table, shared by every exporter.
pub const TASK_HEADER: [&str; 11] =
    ["task", "metric", "n", "base", "candidate", "Δ (points)", "95% CI of Δ", "fixed", "broken", "McNemar p", "Holm p"];

/// The per-task table's cells for one task, as text.
pub fn task_cells(t: &TaskComparison) -> Vec<String> {
    vec![
        t.task.clone(),
        t.metric.clone(),
        t.diff.n.to_string(),
        format!("{:.3}", t.base_score),
        format!("{:.3}", t.candidate_score),
        format!("{:+.1}", t.diff.point * 100.0),
        format!("[{:+.1}, {:+.1}]", t.diff.ci95.low * 100.0, t.diff.ci95.high * 100.0),
        t.fixed.to_string(),
        t.broken.to_string(),
        format!("{:.3}", t.p_value),
        format!("{:.3}", t.p_holm),
    ]
}

/// The aggregate row's cells after its label (base, candidate, Δ, CI, then blanks).
pub fn aggregate_cells(a: &AggregateComparison) -> Vec<String> {
    let mut cells = vec![
        String::new(),
        String::new(),
        format!("{:.3}", a.base),
        format!("{:.3}", a.candidate),
        format!("{:+.1}", a.diff.point * 100.0),
        format!("[{:+.1}, {:+.1}]", a.diff.ci95.low * 100.0, a.diff.ci95.high * 100.0),
    ];
    cells.resize(TASK_HEADER.len() - 1, String::new());
    cells
}

/// Column headings of the speed table.
pub const SPEED_HEADER: [&str; 4] = ["measure", "base", "candidate", "candidate / base"];

/// The speed table's cells for one measure.
pub fn speed_cells(d: &SpeedDelta) -> Vec<String> {
    vec![
        format!("{} ({}, {} is better)", d.measure, d.unit, if d.higher_is_better { "higher" } else { "lower" }),
        format!("{:.2} ± {:.2}", d.base_mean, d.base_sd),
        format!("{:.2} ± {:.2}", d.candidate_mean, d.candidate_sd),
        format!("{:.2}×", d.ratio),
    ]
}

/// Warnings about how the two runs were measured, as plain sentences: one
/// for differences that can change predictions, one for those that change
/// only speed.
pub fn setup_warnings(c: &Comparison) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = c.prediction_mismatch() {
        out.push(format!(
            "Warning: the runs were measured differently ({m}). candle's kernels differ per instruction set, and engines, weight formats, devices and thread counts round differently, so items can flip with the model unchanged: the differences below may not be the model's. Rerun both on one machine with the same flags; the gate is refused unless --allow-host-mismatch is given."
        ));
    }
    if let Some(m) = c.speed_mismatch() {
        out.push(format!(
            "Note: measured on different machines ({m}): the speed and memory deltas compare the machines as much as the models."
        ));
    }
    out
}

/// Every file of a comparison: `compare.md` (all flipped items), `compare.json`, `compare.html`.
pub fn exporters() -> Vec<Box<dyn Exporter<Comparison>>> {
    vec![Box::new(markdown::Markdown { max_flips: None }), Box::new(json::Json), Box::new(html::Html)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::compare::compare;
    use crate::analysis::fixtures::*;

    #[test]
    fn html_escapes_items_and_lists_every_flip() {
        let (b, c) = runs(12, 2);
        let r = compare(&b, &c, GATE).unwrap();
        let html = html::to_html(&r);
        assert!(!html.contains("<script>"));
        assert!(html.contains("Question 0 &lt;script&gt;?"));
        assert_eq!(html.matches("<details>").count(), 14);
        assert!(!html.contains("http://") && !html.contains("https://"), "no network references");
        insta::assert_snapshot!(html);
    }

    #[test]
    fn markdown_snapshot() {
        let (b, c) = runs(12, 2);
        let r = compare(&b, &c, GATE).unwrap();
        insta::assert_snapshot!(markdown::to_markdown(&r, Some(2)));
    }
}
