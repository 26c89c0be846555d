//! `compare.md`: the comparison as GitHub-flavoured Markdown, ready for
//! `$GITHUB_STEP_SUMMARY` or a pull-request comment: the gate's verdict and
//! reasons, the per-task table, speed deltas and the flipped items.

use super::{aggregate_cells, setup_warnings, speed_cells, task_cells, SPEED_HEADER, TASK_HEADER};
use crate::analysis::compare::{Comparison, Flip};
use crate::export::markup::{md_cell, md_code_block, md_row, tail_chars};
use crate::export::Exporter;
use anyhow::Result;

/// `compare.md`; `max_flips` caps the flipped items listed per kind (None: all).
pub struct Markdown {
    pub max_flips: Option<usize>,
}

impl Exporter<Comparison> for Markdown {
    fn file_name(&self) -> String {
        "compare.md".into()
    }

    fn serialize(&self, c: &Comparison) -> Result<Vec<u8>> {
        Ok(to_markdown(c, self.max_flips).into_bytes())
    }
}

/// Markdown summary: ready for `$GITHUB_STEP_SUMMARY` or a PR comment.
/// `max_flips` caps the flipped items listed per kind (None: all).
pub fn to_markdown(c: &Comparison, max_flips: Option<usize>) -> String {
    let mut s = String::new();
    let verdict = if c.regressions.is_empty() { "PASS" } else { "FAIL" };
    // Names and texts come from strangers' files: each one made safe (md_cell, md_code_block).
    let (cand, base, suite) = (md_cell(&c.candidate_model), md_cell(&c.base_model), md_cell(&c.suite));
    s.push_str(&format!("# openweigh compare: {cand} vs {base} on {suite}\n\n"));
    s.push_str(&format!(
        "Gate: **{verdict}** (max drop {} points of a task's metric, {} chance-normalised points of the aggregate; α = {}, Holm-corrected across tasks)\n\n",
        c.gate.max_drop_points, c.gate.max_aggregate_drop_points, c.gate.alpha
    ));
    for r in &c.regressions {
        s.push_str(&format!("- {}\n", md_cell(r)));
    }
    if !c.regressions.is_empty() {
        s.push('\n');
    }
    for w in setup_warnings(c) {
        s.push_str(&format!("> **{}**\n\n", md_cell(&w)));
    }
    s.push_str(&md_row(&TASK_HEADER));
    s.push_str("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n");
    for t in &c.tasks {
        let mut cells: Vec<String> = task_cells(t).iter().map(|c| md_cell(c)).collect();
        if t.regression {
            cells.last_mut().unwrap().push_str(" ⚠");
        }
        s.push_str(&md_row(&cells));
    }
    let mut aggregate = vec!["**aggregate** (chance-normalised mean)".to_string()];
    aggregate.extend(aggregate_cells(&c.aggregate));
    s.push_str(&md_row(&aggregate));
    s.push('\n');
    for (role, status) in [("base", &c.base_status), ("candidate", &c.candidate_status)] {
        if status != "complete" {
            let status = md_cell(status);
            s.push_str(&format!("Note: the {role} run's status is '{status}', not complete: it may lack items.\n\n"));
        }
    }
    if c.unmatched_items > 0 || c.failed_pairs > 0 {
        s.push_str(&format!(
            "Left out: {} item(s) present in one run only, {} pair(s) where an item failed.\n\n",
            c.unmatched_items, c.failed_pairs
        ));
    }
    s.push_str(&md_row(&SPEED_HEADER));
    s.push_str("|---|---:|---:|---:|\n");
    for d in &c.speed {
        s.push_str(&md_row(&speed_cells(d)));
    }
    for (kind, heading) in [("broken", "Broken by the candidate"), ("fixed", "Fixed by the candidate")] {
        let items: Vec<&Flip> = c.flips.iter().filter(|f| f.kind == kind).collect();
        s.push_str(&format!("\n## {heading} ({})\n\n", items.len()));
        for f in items.iter().take(max_flips.unwrap_or(usize::MAX)) {
            s.push_str(&format!("### {}\n\n{}\n", md_cell(&f.id), md_code_block(&tail_chars(&f.prompt, 400))));
            if let Some(ch) = &f.choices {
                for (i, t) in ch.iter().enumerate() {
                    s.push_str(&format!("{i}. {}\n", md_cell(t)));
                }
                s.push('\n');
            }
            s.push_str(&format!(
                "gold `{}` · base `{}` · candidate `{}`\n\n",
                f.gold.replace('`', "'"),
                f.base_prediction.replace('`', "'"),
                f.candidate_prediction.replace('`', "'")
            ));
        }
        if let Some(n) = max_flips {
            if items.len() > n {
                s.push_str(&format!("… and {} more in compare.md\n", items.len() - n));
            }
        }
    }
    s
}
