//! The report's charts, one file per chart (`quality_price`,
//! `quality_speed`, `latency`, `memory`, `tasks`; `scatter` and `bars` are
//! the shapes they share), and what every chart shares: canvas size, fonts,
//! one colour per model, and the SVG → PNG step. Charts are drawn once, as
//! SVG, with plotters; the PNG is that SVG rendered by resvg with the embedded
//! DejaVu Sans, so both files show the same picture and no system font is
//! needed.

pub mod bars;
pub mod latency;
pub mod memory;
pub mod quality_price;
pub mod quality_speed;
pub mod scatter;
pub mod tasks;

use crate::analysis::report::{ModelReport, PriceBasis, Report};
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 620;

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/DejaVuSans.LICENSE).
pub static FONT_TTF: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");
/// Font family written into the SVG: the embedded face first, then any sans.
pub const FONT: &str = "DejaVu Sans, Arial, Helvetica, sans-serif";

/// Tableau 10: distinct, colour-blind-friendly; model i always gets colour i.
const PALETTE: [(u8, u8, u8); 10] = [
    (78, 121, 167),
    (242, 142, 43),
    (225, 87, 89),
    (118, 183, 178),
    (89, 161, 79),
    (237, 201, 72),
    (176, 122, 161),
    (255, 157, 167),
    (156, 117, 95),
    (186, 176, 172),
];

pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// CSS hex of [`color`], for the HTML legend.
pub fn color_hex(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

pub fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// Rough width in pixels of `text` at `size` (DejaVu Sans averages ~0.6 em).
pub fn text_width(text: &str, size: u32) -> i32 {
    (text.chars().count() as f64 * size as f64 * 0.6).round() as i32
}

/// A tick value with two significant digits and no trailing zeros
/// (`0.0002`, `0.15`, `3`, `20`, `125`), so the ticks of any decade read apart.
pub fn significant(v: f64) -> String {
    if !(v.is_finite() && v > 0.0) {
        return format!("{v}");
    }
    let decimals = (1 - v.log10().floor() as i32).clamp(0, 10) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The label of a category axis at tick `v`: `names[i]` at the middle of
/// slot `i` (slots counted from `first`), nothing at the other ticks.
pub fn slot_label(v: f64, first: f64, names: &[String]) -> String {
    let i = v - 0.5 - first;
    if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
        names.get(i.round() as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// Draws a chart into an SVG string.
pub fn svg<F>(draw: F) -> Result<String>
where
    F: FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
{
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(buf)
}

/// Renders an SVG to PNG bytes with the embedded font.
pub fn png(svg: &str) -> Result<Vec<u8>> {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_font_data(FONT_TTF.to_vec());
    opt.fontdb_mut().set_sans_serif_family("DejaVu Sans");
    opt.font_family = "DejaVu Sans".into();
    let tree = resvg::usvg::Tree::from_str(svg, &opt).context("parsing a chart's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("allocating the PNG")?;
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("encoding PNG")
}

/// A drawn chart: file stem, title and SVG text.
pub struct Chart {
    pub name: &'static str,
    pub title: String,
    pub svg: String,
}

/// The charts of a report, in the order the HTML shows them.
pub fn draw(r: &Report) -> Result<Vec<Chart>> {
    let point = |m: &ModelReport, x: f64| scatter::Point {
        label: m.row.model.clone(),
        color: m.color,
        x,
        y: m.row.aggregate.point,
        y_low: m.row.aggregate.ci95.low,
        y_high: m.row.aggregate.ci95.high,
        marker: scatter::Marker::Circle,
    };
    let price_pts: Vec<_> = r
        .models
        .iter()
        .filter_map(|m| {
            let (x, basis) = m.chart_price()?;
            let marker =
                if basis == PriceBasis::Provider { scatter::Marker::Triangle } else { scatter::Marker::Circle };
            Some(scatter::Point { marker, ..point(m, x) })
        })
        .collect();
    let speed_pts: Vec<_> = r.models.iter().filter_map(|m| m.row.decode_tok_per_s.map(|d| point(m, d))).collect();
    let self_hosted = format!("self-hosted at ${}/h ({})", r.hardware.usd_per_hour, r.hardware.name);
    let basis = if price_pts.iter().any(|p| p.marker == scatter::Marker::Triangle) {
        format!("● {self_hosted}, ▲ the provider's price (price table or models file)")
    } else {
        self_hosted
    };
    let bar = |m: &ModelReport, v: Option<f64>| {
        v.map(|value| bars::Bar { label: m.row.model.clone(), color: m.color, value })
    };
    let ttft: Vec<_> = r.models.iter().filter_map(|m| bar(m, m.row.ttft_s)).collect();
    let e2e: Vec<_> = r.models.iter().filter_map(|m| bar(m, m.e2e_500_s)).collect();
    let mem: Vec<_> =
        r.models.iter().filter_map(|m| bar(m, Some(m.row.peak_rss_byte as f64 / (1024.0 * 1024.0)))).collect();
    let rows: Vec<tasks::Row> = r
        .models
        .iter()
        .map(|m| tasks::Row {
            label: m.row.model.clone(),
            scores: r.tasks.iter().map(|t| m.row.tasks.iter().find(|x| &x.task == t).map(|x| x.score.point)).collect(),
        })
        .collect();
    Ok(vec![
        quality_price::chart(&price_pts, &basis)?,
        quality_speed::chart(&speed_pts)?,
        latency::chart(&ttft, &e2e)?,
        memory::chart(&mem)?,
        tasks::chart(&r.tasks, &rows)?,
    ])
}

/// Title and a caption line under it (units, which way is better).
pub fn titled<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    caption: &str,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>> {
    let area = root.titled(title, font(24))?;
    // Wrap the caption to the canvas width.
    let max_chars = ((WIDTH as f64 - 40.0) / (14.0 * 0.6)) as usize;
    let mut lines: Vec<String> = vec![String::new()];
    for word in caption.split(' ') {
        let last = lines.last_mut().unwrap();
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > max_chars {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    let style = font(14).color(&RGBColor(90, 90, 90));
    for (i, line) in lines.iter().enumerate() {
        area.draw_text(line, &style, (20, 2 + 18 * i as i32))?;
    }
    Ok(area.margin(4 + 18 * lines.len() as u32, 0, 0, 0))
}

/// Vertical positions for labels at pixel points, nudged apart so that no two
/// labels whose horizontal spans overlap are closer than `gap` pixels.
pub fn spread_labels(points: &[(i32, i32, i32)], gap: i32) -> Vec<i32> {
    // points: (x, y, label width). Process top to bottom.
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| (points[i].1, points[i].0));
    let mut ys = vec![0; points.len()];
    let mut placed: Vec<usize> = Vec::new();
    for &i in &order {
        let (x, y, w) = points[i];
        let mut yy = y;
        loop {
            let clash = placed.iter().any(|&j| {
                let (xj, _, wj) = points[j];
                let overlap_x = x < xj + wj && xj < x + w;
                overlap_x && (ys[j] - yy).abs() < gap
            });
            if !clash {
                break;
            }
            yy += 2;
        }
        ys[i] = yy;
        placed.push(i);
    }
    ys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_never_end_up_closer_than_the_gap() {
        let pts = [(100, 200, 80), (110, 202, 80), (105, 199, 80), (400, 200, 80)];
        let ys = spread_labels(&pts, 16);
        for i in 0..3 {
            for j in 0..3 {
                if i != j {
                    assert!((ys[i] - ys[j]).abs() >= 16, "{ys:?}");
                }
            }
        }
        // A label far away horizontally keeps its place.
        assert_eq!(ys[3], 200);
    }

    #[test]
    fn ticks_keep_two_significant_digits() {
        assert_eq!(significant(0.0002), "0.0002");
        assert_eq!(significant(0.15), "0.15");
        assert_eq!(significant(0.05), "0.05");
        assert_eq!(significant(3.0), "3");
        assert_eq!(significant(20.0), "20");
        assert_eq!(significant(125.0), "125");
    }

    #[test]
    fn svg_renders_to_a_png_of_the_canvas_size() {
        let s = svg(|root| {
            root.draw_text("héllo <b>", &font(20), (10, 10))?;
            Ok(())
        })
        .unwrap();
        assert!(s.contains("héllo &lt;b&gt;"));
        let png = png(&s).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), (WIDTH, HEIGHT));
        // The text was rendered with the embedded font: dark pixels where it was drawn.
        let rgb = img.to_rgb8();
        let dark =
            (10..120).flat_map(|x| (8..32).map(move |y| (x, y))).filter(|&(x, y)| rgb.get_pixel(x, y).0[0] < 100);
        assert!(dark.count() > 50, "no text drawn in the PNG");
    }
}
