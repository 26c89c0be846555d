//! Horizontal bars, one per model, sorted best first, value written at the
//! end of each bar: the shape behind the latency and memory charts.

use super::{color, font};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

pub struct Bar {
    pub label: String,
    pub color: usize,
    pub value: f64,
}

/// Draws `bars` (lower is better: shortest on top) into `area`.
pub fn draw(
    area: &DrawingArea<SVGBackend, Shift>,
    heading: &str,
    x_desc: &str,
    unit: &str,
    bars: &[Bar],
) -> Result<()> {
    let mut bars: Vec<&Bar> = bars.iter().filter(|b| b.value.is_finite()).collect();
    bars.sort_by(|a, b| b.value.total_cmp(&a.value));
    let n = bars.len().max(1);
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1e-9);
    let label_width = bars.iter().map(|b| b.label.chars().count()).max().unwrap_or(5) as u32 * 8 + 16;
    let mut chart = ChartBuilder::on(area)
        .caption(heading, font(17))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(label_width.min(320))
        .build_cartesian_2d(0.0..max * 1.25, 0.0..n as f64)?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(6)
        .x_desc(x_desc)
        .axis_desc_style(font(15))
        .label_style(font(13))
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y - 0.5;
            if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
                labels.get(i.round() as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart.draw_series(
        bars.iter().enumerate().map(|(i, b)| {
            Rectangle::new([(0.0, i as f64 + 0.18), (b.value, i as f64 + 0.82)], color(b.color).filled())
        }),
    )?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        EmptyElement::at((b.value, i as f64 + 0.5))
            + Text::new(format!("{} {unit}", fmt_value(b.value)), (6, -7), font(13))
    }))?;
    Ok(())
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
