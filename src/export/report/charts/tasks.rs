//! Per-task scores as a heatmap: one row per model, one column per task, the
//! score written in each cell (primary metric, 0–1, higher is better). Task
//! names turn vertical when they do not fit their column, and cell values are
//! left out (they are in the HTML table) when the cells are too small, so the
//! chart reads from one task to 60 and one model to 20.

use super::{font, slot_label, svg, text_width, titled, Chart};
use anyhow::Result;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub struct Row {
    pub label: String,
    /// One score per task, None where the model did not run that task.
    pub scores: Vec<Option<f64>>,
}

fn shade(score: f64) -> RGBColor {
    let t = score.clamp(0.0, 1.0);
    let lerp = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(lerp(247.0, 33.0), lerp(251.0, 102.0), lerp(255.0, 172.0))
}

const MARGIN: u32 = 16;
const LABEL_FONT: u32 = 13;

pub fn chart(tasks: &[String], rows: &[Row]) -> Result<Chart> {
    let svg = svg(|root| {
        let area = titled(root, "Scores per task", "Primary metric of each task (0–1), higher is better.")?;
        let (w, h) = area.dim_in_pixel();
        let (nx, ny) = (tasks.len().max(1), rows.len().max(1));
        let row_label_w = rows.iter().map(|r| text_width(&r.label, LABEL_FONT)).max().unwrap_or(40).clamp(40, 320) + 12;
        let col_w = (w as i32 - row_label_w - 2 * MARGIN as i32).max(1) / nx as i32;
        let longest = tasks.iter().map(|t| text_width(t, LABEL_FONT)).max().unwrap_or(0);
        // Horizontal names when the longest fits its column, else vertical
        // ones, small enough that neighbours do not touch.
        let vertical = longest + 8 > col_w;
        let label_font =
            if vertical { (col_w as f64 * 0.9).floor().clamp(7.0, LABEL_FONT as f64) as u32 } else { LABEL_FONT };
        let x_area = if vertical {
            (tasks.iter().map(|t| text_width(t, label_font)).max().unwrap_or(0) + 12).min(h as i32 / 2)
        } else {
            32
        };
        let mut chart = ChartBuilder::on(&area)
            .margin(MARGIN)
            .x_label_area_size(x_area as u32)
            .y_label_area_size(row_label_w as u32)
            .build_cartesian_2d(0.0..nx as f64, 0.0..ny as f64)?;
        let row_names: Vec<String> = rows.iter().rev().map(|r| r.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(ny * 2 + 1)
            .y_label_formatter(&|v| slot_label(*v, 0.0, &row_names))
            .label_style(font(LABEL_FONT))
            .draw()?;
        // Task names under their columns.
        for (i, t) in tasks.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
            let style = if vertical {
                font(label_font).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center))
            } else {
                font(label_font).pos(Pos::new(HPos::Center, VPos::Top))
            };
            root.draw(&Text::new(t.clone(), (px, py + 6), style))?;
        }
        // Cells, with their value where it fits.
        let row_h = chart.backend_coord(&(0.0, 0.0)).1 - chart.backend_coord(&(0.0, 1.0)).1;
        let value_font = [15u32, 12, 9]
            .into_iter()
            .find(|&f| text_width("0.000", f) + 4 <= col_w && (f as i32) < row_h)
            .filter(|_| col_w > 0);
        for (r, row) in rows.iter().rev().enumerate() {
            for (c, s) in row.scores.iter().enumerate() {
                let (x, y) = (c as f64, r as f64);
                let fill = s.map_or(RGBColor(230, 230, 230), shade);
                chart.draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], fill.filled())))?;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    WHITE.stroke_width(if col_w > 6 { 2 } else { 1 }),
                )))?;
                let Some(size) = value_font else { continue };
                let text = s.map_or("–".to_string(), |v| format!("{v:.3}"));
                let ink = if s.unwrap_or(0.0) > 0.55 { WHITE } else { BLACK };
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x + 0.5, y + 0.5))
                        + Text::new(text, (0, 0), font(size).color(&ink).pos(Pos::new(HPos::Center, VPos::Center))),
                ))?;
            }
        }
        Ok(())
    })?;
    Ok(Chart { name: "tasks", title: "Scores per task".into(), svg })
}
