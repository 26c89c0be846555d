//! The headline chart: quality (aggregate score, 95% CI) against blended
//! price per 1M tokens on a log axis, Pareto frontier and the most attractive
//! quadrant (cheaper and better than the median model).

use super::scatter::{self, Point, Spec, XBetter};
use super::{significant, svg, Chart};
use anyhow::Result;

pub fn chart(points: &[Point], price_basis: &str) -> Result<Chart> {
    let caption = format!(
        "Quality: aggregate score, chance-normalised (higher is better). Price: blended (3:1 input:output) USD per 1M tokens, {price_basis}, log scale (lower is better)."
    );
    let spec = Spec {
        title: "Quality vs price",
        caption: &caption,
        x_desc: "Blended price (USD per 1M tokens, log scale) — lower is better",
        y_desc: "Aggregate score — higher is better",
        log_x: true,
        x_better: XBetter::Lower,
        x_format: |v| format!("${}", significant(v)),
    };
    Ok(Chart {
        name: "quality_vs_price",
        title: "Quality vs price".into(),
        svg: svg(|root| scatter::draw(root, &spec, points))?,
    })
}
