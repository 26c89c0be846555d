//! Horizontal bars, one per model, sorted best first, value written at the
//! end of each bar: the shape behind the latency and memory charts. The
//! chart always has room for at least [`MIN_SLOTS`] bars, so one or two
//! models get bars of the usual thickness at the top, not one giant block.

use super::{color, font, slot_label};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Fewest bar positions a chart lays out.
pub const MIN_SLOTS: usize = 6;

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
    // Bars fill the top `n` of `slots` positions.
    let slots = n.max(MIN_SLOTS);
    let first = (slots - n) as f64;
    let max = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1e-9);
    let label_width = bars.iter().map(|b| b.label.chars().count()).max().unwrap_or(5) as u32 * 8 + 16;
    let mut chart = ChartBuilder::on(area)
        .caption(heading, font(17))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(label_width.min(320))
        .build_cartesian_2d(0.0..max * 1.25, 0.0..slots as f64)?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(6)
        .x_desc(x_desc)
        .axis_desc_style(font(15))
        .label_style(font(13))
        .y_labels(slots * 2 + 1)
        .y_label_formatter(&|y| slot_label(*y, first, &labels))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let y = first + i as f64;
        Rectangle::new([(0.0, y + 0.18), (b.value, y + 0.82)], color(b.color).filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        EmptyElement::at((b.value, first + i as f64 + 0.5))
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
