//! `summary.md`: the report as GitHub-flavoured Markdown, small enough for
//! `$GITHUB_STEP_SUMMARY` or a pull-request comment. Deterministic (no
//! timestamps), so it can be snapshot-tested.

use super::Drawn;
use crate::analysis::report::{ModelReport, PriceBasis, Report};
use crate::export::markup::{md_cell as cell, md_row};
use crate::export::Exporter;
use anyhow::Result;

/// `summary.md`.
pub struct Markdown;

impl Exporter<Drawn<'_>> for Markdown {
    fn file_name(&self) -> String {
        "summary.md".into()
    }

    fn serialize(&self, d: &Drawn) -> Result<Vec<u8>> {
        Ok(summary(d.report).into_bytes())
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// Dollars with enough digits to show small per-run costs.
fn usd(x: f64) -> String {
    if x >= 1.0 {
        format!("${x:.2}")
    } else if x >= 0.01 {
        format!("${x:.4}")
    } else if x >= 1e-6 {
        format!("${x:.6}")
    } else {
        format!("${x:.1e}")
    }
}

pub fn summary(r: &Report) -> String {
    let mut s = String::from("# openweigh report\n\n");
    s.push_str(&format!(
        "Suite: {} · self-hosted prices at **${}/h** ({}: {}) · price table: {}\n\n",
        cell(&r.suites.join(", ")),
        r.hardware.usd_per_hour,
        cell(&r.hardware.name),
        cell(&r.hardware.what),
        cell(&r.price_source)
    ));
    for w in &r.warnings {
        s.push_str(&format!("> **Note:** {}\n\n", cell(w)));
    }
    s.push_str(&md_row(&[
        "model",
        "quality (95% CI)",
        "blended $/1M tok",
        "decode tok/s",
        "prefill tok/s",
        "TTFT s",
        "500-tok answer s",
        "peak MiB",
        "run cost",
    ]));
    s.push_str(&md_row(&["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]));
    let mut order: Vec<&ModelReport> = r.models.iter().collect();
    order.sort_by(|a, b| b.row.aggregate.point.total_cmp(&a.row.aggregate.point));
    for m in &order {
        s.push_str(&md_row(&[
            cell(&m.row.model),
            format!("{:.3} [{:.3}, {:.3}]", m.row.aggregate.point, m.row.aggregate.ci95.low, m.row.aggregate.ci95.high),
            match m.chart_price() {
                Some((v, PriceBasis::Provider)) => format!("{} (served)", usd(v)),
                other => other.map_or("–".into(), |(v, _)| usd(v)),
            },
            opt(m.row.decode_tok_per_s, 1),
            opt(m.row.prefill_tok_per_s, 1),
            opt(m.row.ttft_s, 3),
            opt(m.e2e_500_s, 2),
            format!("{:.0}", m.row.peak_rss_byte as f64 / (1024.0 * 1024.0)),
            m.run_tokens_cost_usd.map_or("–".into(), usd),
        ]));
    }
    s.push_str(
        "\nQuality: the mean over tasks of chance-normalised scores, (score − chance)/(1 − chance), \
         with a 95% bootstrap CI (items resampled within tasks). Blended price: (3·input + output)/4 USD per \
         1M tokens, input at the measured prefill speed and output at the decode speed on the hardware price \
         above, or for a served model (marked) the price it is served at. Run cost: this run's tokens at that price.\n",
    );
    let offered: Vec<_> = r.models.iter().filter(|m| !m.offerings.is_empty()).collect();
    if !offered.is_empty() {
        s.push_str("\n## Provider prices for the same weights\n\n");
        s.push_str(&md_row(&["model", "provider", "input $/1M", "output $/1M", "blended $/1M"]));
        s.push_str(&md_row(&["---", "---", "---:", "---:", "---:"]));
        for m in offered {
            for o in &m.offerings {
                s.push_str(&md_row(&[
                    cell(&m.row.model),
                    cell(&format!("{}/{}", o.provider, o.model)),
                    usd(o.input_usd_per_mtok),
                    usd(o.output_usd_per_mtok),
                    usd(o.blended_usd_per_mtok()),
                ]));
            }
        }
    }
    s.push_str("\n## Per task\n\n");
    let mut header = vec!["task (metric, n)".to_string()];
    header.extend(order.iter().map(|m| cell(&m.row.model)));
    s.push_str(&md_row(&header));
    let mut rule = vec!["---".to_string()];
    rule.extend(order.iter().map(|_| "---:".to_string()));
    s.push_str(&md_row(&rule));
    for t in r.tasks.iter().chain(&r.groups) {
        let first = order.iter().find_map(|m| m.row.score(t));
        let mut row = vec![match first {
            Some(x) => format!("{} ({}, {})", cell(t), cell(&x.metric), x.score.n),
            None => cell(t),
        }];
        for m in &order {
            row.push(match m.row.score(t) {
                Some(x) => format!("{:.3} [{:.3}, {:.3}]", x.score.point, x.score.ci95.low, x.score.ci95.high),
                None => "–".into(),
            });
        }
        s.push_str(&md_row(&row));
    }
    s
}
