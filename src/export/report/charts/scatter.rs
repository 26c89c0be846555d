//! The scatter behind both quality charts (quality vs price, quality vs
//! speed): one point per model with its 95% CI as a whisker, the Pareto
//! frontier, and the "most attractive quadrant" shaded (better than the median
//! model on both axes).

use super::{color, font, spread_labels, text_width, titled};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One model on the chart.
#[derive(Debug, Clone)]
pub struct Point {
    pub label: String,
    pub color: usize,
    pub x: f64,
    pub y: f64,
    pub y_low: f64,
    pub y_high: f64,
    /// Circle, or triangle for a price a provider charges (vs one computed for self-hosting).
    pub marker: Marker,
}

/// A point's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Marker {
    #[default]
    Circle,
    Triangle,
}

/// Which way the x axis is better.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XBetter {
    Lower,
    Higher,
}

pub struct Spec<'a> {
    pub title: &'a str,
    pub caption: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub log_x: bool,
    pub x_better: XBetter,
    pub x_format: fn(f64) -> String,
}

/// Indices of the points on the Pareto frontier, ordered along x: no other
/// point is at least as good on both axes and better on one.
pub fn pareto_frontier(points: &[(f64, f64)], x_better: XBetter) -> Vec<usize> {
    let better_x = |a: f64, b: f64| if x_better == XBetter::Lower { a < b } else { a > b };
    let mut front: Vec<usize> = (0..points.len())
        .filter(|&i| {
            let (xi, yi) = points[i];
            !points.iter().enumerate().any(|(j, &(xj, yj))| {
                j != i && (better_x(xj, xi) || xj == xi) && yj >= yi && (better_x(xj, xi) || yj > yi)
            })
        })
        .collect();
    front.sort_by(|&a, &b| points[a].0.total_cmp(&points[b].0));
    front
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn y_range(points: &[Point]) -> (f64, f64) {
    let lo = points.iter().map(|p| p.y_low.min(p.y)).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.y_high.max(p.y)).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.12).max(0.02);
    ((lo - pad).max(-1.0), (hi + pad).min(1.05))
}

fn x_range(points: &[Point], log: bool) -> (f64, f64) {
    let lo = points.iter().map(|p| p.x).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max);
    if log {
        (lo / 2.5, hi * 2.5)
    } else {
        let pad = ((hi - lo) * 0.15).max(hi.abs() * 0.2).max(1.0);
        ((lo - pad).max(0.0), hi + pad)
    }
}

/// Tick values for a log axis over `[lo, hi]`: 1, 2 and 5 times powers of
/// ten, or every integer multiple when that gives fewer than three, so an
/// axis spanning less than a decade is labelled too.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo) {
        return Vec::new();
    }
    let within = |mults: &[f64]| -> Vec<f64> {
        let mut v = Vec::new();
        for k in lo.log10().floor() as i32..=hi.log10().ceil() as i32 {
            for m in mults {
                let x = m * 10f64.powi(k);
                if x >= lo && x <= hi {
                    v.push(x);
                }
            }
        }
        v
    };
    let coarse = within(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        coarse
    } else {
        within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

pub fn draw<'a>(root: &DrawingArea<SVGBackend<'a>, Shift>, spec: &Spec, points: &[Point]) -> Result<()> {
    let area = titled(root, spec.title, spec.caption)?;
    if points.is_empty() {
        area.draw_text("no model with this measurement", &font(18), (40, 80))?;
        return Ok(());
    }
    let (y0, y1) = y_range(points);
    let (x0, x1) = x_range(points, spec.log_x);
    let mut builder = ChartBuilder::on(&area);
    builder.margin(18).x_label_area_size(56).y_label_area_size(72);
    if spec.log_x {
        use plotters::coord::combinators::BindKeyPoints;
        let log: LogCoord<f64> = (x0..x1).log_scale().into();
        let mut chart = builder.build_cartesian_2d(log.with_key_points(log_ticks(x0, x1)), y0..y1)?;
        plot(&mut chart, spec, points, (x0, x1, y0, y1))
    } else {
        let mut chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
        plot(&mut chart, spec, points, (x0, x1, y0, y1))
    }
}

/// Axes, quadrant, frontier, whiskers, points and labels, for a linear or log x axis.
fn plot<'a, X>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    spec: &Spec,
    points: &[Point],
    (x0, x1, _y0, y1): (f64, f64, f64, f64),
) -> Result<()>
where
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(spec.x_desc)
        .y_desc(spec.y_desc)
        .axis_desc_style(font(16))
        .label_style(font(13))
        .x_label_formatter(&|v| (spec.x_format)(*v))
        .y_label_formatter(&|v| format!("{:.2}", if v.abs() < 0.005 { 0.0 } else { *v }))
        .light_line_style(RGBColor(246, 246, 246))
        .draw()?;
    // The most attractive quadrant: better than the median model on both axes.
    if points.len() >= 2 {
        let mx = median(points.iter().map(|p| p.x).collect());
        let my = median(points.iter().map(|p| p.y).collect());
        let (qx0, qx1) = if spec.x_better == XBetter::Lower { (x0, mx) } else { (mx, x1) };
        chart.draw_series(std::iter::once(Rectangle::new(
            [(qx0, my), (qx1, y1)],
            RGBColor(46, 160, 67).mix(0.10).filled(),
        )))?;
        let corner = if spec.x_better == XBetter::Lower { qx0 } else { qx1 };
        let text = "most attractive quadrant";
        let dx = if spec.x_better == XBetter::Lower { 8 } else { -8 - text_width(text, 13) };
        chart.draw_series(std::iter::once(
            EmptyElement::at((corner, y1)) + Text::new(text, (dx, 6), font(13).color(&RGBColor(30, 110, 50))),
        ))?;
    }
    // Pareto frontier.
    let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.x, p.y)).collect();
    let front = pareto_frontier(&xy, spec.x_better);
    if front.len() >= 2 {
        chart.draw_series(std::iter::once(PathElement::new(
            front.iter().map(|&i| xy[i]).collect::<Vec<_>>(),
            ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(2),
        )))?;
    }
    // Whiskers (95% CI), points, labels.
    for p in points {
        let c = color(p.color);
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(p.x, p.y_low), (p.x, p.y_high)], c.stroke_width(2))))?;
    }
    chart.draw_series(
        points
            .iter()
            .filter(|p| p.marker == Marker::Circle)
            .map(|p| Circle::new((p.x, p.y), 7, color(p.color).filled())),
    )?;
    chart.draw_series(
        points
            .iter()
            .filter(|p| p.marker == Marker::Triangle)
            .map(|p| TriangleMarker::new((p.x, p.y), 9, color(p.color).filled())),
    )?;
    let pix: Vec<(i32, i32, i32)> = points
        .iter()
        .map(|p| {
            let (px, py) = chart.backend_coord(&(p.x, p.y));
            (px + 12, py - 8, text_width(&p.label, 14))
        })
        .collect();
    let ys = spread_labels(&pix, 17);
    let colors: Vec<RGBColor> = points.iter().map(|p| color(p.color)).collect();
    chart.draw_series(points.iter().zip(&pix).zip(ys).zip(&colors).map(|(((p, &(_, py, _)), ly), c)| {
        EmptyElement::at((p.x, p.y)) + Text::new(p.label.clone(), (12, ly - py - 8), font(14).color(c))
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_label_any_range() {
        assert_eq!(log_ticks(0.04, 0.6), vec![0.05, 0.1, 0.2, 0.5]);
        // Less than a decade: every integer multiple in range.
        let t = log_ticks(0.23, 0.6);
        assert!(t.len() >= 3 && t.iter().all(|x| (0.23..=0.6).contains(x)), "{t:?}");
        assert!(log_ticks(0.0, 1.0).is_empty());
    }

    #[test]
    fn frontier_keeps_the_undominated_points() {
        // (price, quality): the cheapest, the best, and one in between are on it.
        let pts = [(1.0, 0.2), (2.0, 0.5), (3.0, 0.4), (4.0, 0.6), (0.5, 0.1)];
        assert_eq!(pareto_frontier(&pts, XBetter::Lower), vec![4, 0, 1, 3]);
        // For speed, higher x is better: (4, 0.6) dominates everything slower and worse.
        assert_eq!(pareto_frontier(&pts, XBetter::Higher), vec![3]);
    }
}
