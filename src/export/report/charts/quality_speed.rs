//! Quality (aggregate score, 95% CI) against output speed (decode tokens per
//! second from the speed probe), Pareto frontier and the most attractive
//! quadrant (faster and better than the median model).

use super::scatter::{self, Point, Spec, XBetter};
use super::{significant, svg, Chart};
use anyhow::Result;

pub fn chart(points: &[Point]) -> Result<Chart> {
    let spec = Spec {
        title: "Quality vs output speed",
        caption: "Quality: aggregate score, chance-normalised (higher is better). Speed: decode tokens per second, speed probe (higher is better).",
        x_desc: "Output speed (tokens/s) — higher is better",
        y_desc: "Aggregate score — higher is better",
        log_x: false,
        x_better: XBetter::Higher,
        x_format: |v| significant(v),
    };
    Ok(Chart {
        name: "quality_vs_speed",
        title: "Quality vs output speed".into(),
        svg: svg(|root| scatter::draw(root, &spec, points))?,
    })
}
