//! `compare.html`: the comparison as one self-contained page (inline CSS, no
//! scripts, no network), with the per-task table, speed deltas and every
//! flipped item. Every string from suites, models or results is escaped.

use super::{aggregate_cells, setup_warnings, speed_cells, task_cells, SPEED_HEADER, TASK_HEADER};
use crate::analysis::compare::Comparison;
use crate::export::markup::escape;
use crate::export::Exporter;
use anyhow::Result;

/// `compare.html`.
pub struct Html;

impl Exporter<Comparison> for Html {
    fn file_name(&self) -> String {
        "compare.html".into()
    }

    fn serialize(&self, c: &Comparison) -> Result<Vec<u8>> {
        Ok(to_html(c).into_bytes())
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}\
td:first-child,th:first-child{text-align:left}.fail{color:#b00020;font-weight:bold}.pass{color:#1b7f3b;font-weight:bold}\
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap}details{margin:.4em 0}.gold{font-weight:bold}\
.warn{background:#fff4ce;border-left:4px solid #e0a800;padding:.4em .8em}";

pub fn to_html(c: &Comparison) -> String {
    let e = escape;
    let mut h = String::new();
    h.push_str(&format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>openweigh compare: {} vs {}</title><style>{STYLE}</style></head><body>",
        e(&c.candidate_model),
        e(&c.base_model)
    ));
    h.push_str(&format!("<h1>{} vs {} on {}</h1>", e(&c.candidate_model), e(&c.base_model), e(&c.suite)));
    let (class, verdict) = if c.regressions.is_empty() { ("pass", "PASS") } else { ("fail", "FAIL") };
    h.push_str(&format!(
        "<p>Gate: <span class=\"{class}\">{verdict}</span> (max drop {} points of a task's metric, {} chance-normalised points of the aggregate; α = {}, Holm-corrected across tasks)</p>",
        c.gate.max_drop_points, c.gate.max_aggregate_drop_points, c.gate.alpha
    ));
    if !c.regressions.is_empty() {
        h.push_str("<ul>");
        for r in &c.regressions {
            h.push_str(&format!("<li>{}</li>", e(r)));
        }
        h.push_str("</ul>");
    }
    for w in setup_warnings(c) {
        h.push_str(&format!("<p class=\"warn\">{}</p>", e(&w)));
    }
    let row = |cells: Vec<String>| cells.iter().map(|c| format!("<td>{}</td>", e(c))).collect::<String>();
    let header = |cols: &[&str]| cols.iter().map(|c| format!("<th>{}</th>", e(c))).collect::<String>();
    h.push_str(&format!("<table><tr>{}</tr>", header(&TASK_HEADER)));
    for t in &c.tasks {
        let class = if t.regression { " class=\"fail\"" } else { "" };
        h.push_str(&format!("<tr{class}>{}</tr>", row(task_cells(t))));
    }
    h.push_str(&format!(
        "<tr><td><b>aggregate</b> (chance-normalised mean)</td>{}</tr></table>",
        row(aggregate_cells(&c.aggregate))
    ));
    h.push_str(&format!("<table><tr>{}</tr>", header(&SPEED_HEADER)));
    for d in &c.speed {
        h.push_str(&format!("<tr>{}</tr>", row(speed_cells(d))));
    }
    h.push_str("</table>");
    for (kind, heading) in [("broken", "Broken by the candidate"), ("fixed", "Fixed by the candidate")] {
        let flips: Vec<_> = c.flips.iter().filter(|f| f.kind == kind).collect();
        h.push_str(&format!("<h2>{heading} ({})</h2>", flips.len()));
        for f in flips {
            h.push_str(&format!("<details><summary>{}</summary><pre>{}</pre>", e(&f.id), e(&f.prompt)));
            if let Some(choices) = &f.choices {
                h.push_str("<ol start=\"0\">");
                for (i, ch) in choices.iter().enumerate() {
                    let gold = f.gold == i.to_string();
                    h.push_str(&format!("<li{}>{}</li>", if gold { " class=\"gold\"" } else { "" }, e(ch)));
                }
                h.push_str("</ol>");
            }
            h.push_str(&format!(
                "<p>gold <code>{}</code> · base <code>{}</code> · candidate <code>{}</code></p></details>",
                e(&f.gold),
                e(&f.base_prediction),
                e(&f.candidate_prediction)
            ));
        }
    }
    h.push_str("</body></html>\n");
    // One element per line, so the page diffs readably.
    for tag in ["</tr>", "</table>", "</details>", "</h1>", "</h2>", "</p>", "</ul>", "</li>", "</style></head>"] {
        h = h.replace(tag, &format!("{tag}\n"));
    }
    h
}
