//! What every chart shares: canvas size, fonts, one colour per model, and the
//! SVG → PNG step. Charts are drawn once, as SVG, with plotters; the PNG is
//! that SVG rendered by resvg with the embedded DejaVu Sans, so both files
//! show the same picture and no system font is needed.

use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 620;

/// DejaVu Sans (Bitstream Vera licence, see assets/fonts/DejaVuSans.LICENSE).
pub static FONT_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
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

impl Chart {
    /// Writes NAME.svg and NAME.png into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        let svg_path = dir.join(format!("{}.svg", self.name));
        let png_path = dir.join(format!("{}.png", self.name));
        std::fs::write(&svg_path, &self.svg).with_context(|| format!("writing {}", svg_path.display()))?;
        std::fs::write(&png_path, png(&self.svg)?).with_context(|| format!("writing {}", png_path.display()))?;
        Ok((svg_path, png_path))
    }
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
    fn svg_renders_to_a_png_of_the_canvas_size() {
        let s = svg(|root| {
            root.draw_text("héllo <b>", &font(20), (10, 10))?;
            Ok(())
        })
        .unwrap();
        assert!(s.contains("héllo &lt;b&gt;"));
        let png = png(&s).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
