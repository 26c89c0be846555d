//! Per-task scores as a heatmap: one row per model, one column per task, the
//! score written in each cell (primary metric, 0–1, higher is better).

use super::{font, svg, titled, Chart};
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

pub fn chart(tasks: &[String], rows: &[Row]) -> Result<Chart> {
    let svg = svg(|root| {
        let area = titled(root, "Scores per task", "Primary metric of each task (0–1), higher is better.")?;
        let (nx, ny) = (tasks.len().max(1), rows.len().max(1));
        let label_width = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(5) as u32 * 8 + 16;
        let mut chart = ChartBuilder::on(&area)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(label_width.min(320))
            .build_cartesian_2d(0.0..nx as f64, 0.0..ny as f64)?;
        let task_names: Vec<String> = tasks.to_vec();
        let row_names: Vec<String> = rows.iter().rev().map(|r| r.label.clone()).collect();
        let centre = |v: f64, names: &[String]| {
            let i = v - 0.5;
            if (i - i.round()).abs() < 1e-6 && i >= 0.0 {
                names.get(i.round() as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nx * 2 + 1)
            .y_labels(ny * 2 + 1)
            .x_label_formatter(&|v| centre(*v, &task_names))
            .y_label_formatter(&|v| centre(*v, &row_names))
            .label_style(font(13))
            .draw()?;
        for (r, row) in rows.iter().rev().enumerate() {
            for (c, s) in row.scores.iter().enumerate() {
                let (x, y) = (c as f64, r as f64);
                let fill = s.map_or(RGBColor(230, 230, 230), shade);
                chart.draw_series(std::iter::once(Rectangle::new([(x, y), (x + 1.0, y + 1.0)], fill.filled())))?;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    WHITE.stroke_width(2),
                )))?;
                let text = s.map_or("–".to_string(), |v| format!("{v:.3}"));
                let ink = if s.unwrap_or(0.0) > 0.55 { WHITE } else { BLACK };
                chart.draw_series(std::iter::once(
                    EmptyElement::at((x + 0.5, y + 0.5))
                        + Text::new(text, (0, 0), font(15).color(&ink).pos(Pos::new(HPos::Center, VPos::Center))),
                ))?;
            }
        }
        Ok(())
    })?;
    Ok(Chart { name: "tasks", title: "Scores per task".into(), svg })
}
