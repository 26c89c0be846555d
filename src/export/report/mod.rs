//! The report of finished runs (`openweigh report RESULT_DIR…`, and the end
//! of `openweigh run`): its charts are drawn once, then every file is one
//! exporter — each chart as SVG and PNG (`charts`), a self-contained
//! `index.html` (`html`), a `summary.md` ready for `$GITHUB_STEP_SUMMARY`
//! (`markdown`) and `models.csv` (`csv`).

pub mod charts;
pub mod csv;
pub mod html;
pub mod markdown;

use super::{write_all, Exporter};
use crate::analysis::report::Report;
use anyhow::Result;
use charts::Chart;
use std::path::{Path, PathBuf};

/// A report with its charts drawn: what every report exporter reads.
pub struct Drawn<'a> {
    pub report: &'a Report,
    pub charts: Vec<Chart>,
}

/// Which picture of a chart a [`ChartFile`] writes.
#[derive(Debug, Clone, Copy)]
pub enum ChartFormat {
    Svg,
    Png,
}

/// `NAME.svg` or `NAME.png` of one chart.
pub struct ChartFile {
    pub name: &'static str,
    pub format: ChartFormat,
}

/// Anything that carries drawn charts (a report, a load test).
pub trait Charted {
    fn charts(&self) -> &[Chart];
}

impl Charted for Drawn<'_> {
    fn charts(&self) -> &[Chart] {
        &self.charts
    }
}

impl<T: Charted> Exporter<T> for ChartFile {
    fn file_name(&self) -> String {
        match self.format {
            ChartFormat::Svg => format!("{}.svg", self.name),
            ChartFormat::Png => format!("{}.png", self.name),
        }
    }

    fn serialize(&self, d: &T) -> Result<Vec<u8>> {
        let chart = d.charts().iter().find(|c| c.name == self.name).expect("exporters come from these charts");
        match self.format {
            ChartFormat::Svg => Ok(chart.svg.clone().into_bytes()),
            ChartFormat::Png => charts::png(&chart.svg),
        }
    }
}

/// Draws the report's charts.
pub fn draw(r: &Report) -> Result<Drawn<'_>> {
    Ok(Drawn { report: r, charts: charts::draw(r)? })
}

/// Every file of the report: each chart as SVG and PNG, then `summary.md`,
/// `models.csv` and `index.html`.
pub fn exporters<'a>(d: &Drawn<'a>) -> Vec<Box<dyn Exporter<Drawn<'a>>>> {
    let mut v: Vec<Box<dyn Exporter<Drawn<'a>>>> = Vec::new();
    for c in &d.charts {
        v.push(Box::new(ChartFile { name: c.name, format: ChartFormat::Svg }));
        v.push(Box::new(ChartFile { name: c.name, format: ChartFormat::Png }));
    }
    v.push(Box::new(markdown::Markdown));
    v.push(Box::new(csv::Csv));
    v.push(Box::new(html::Html));
    v
}

/// Writes the whole report into `dir` (created if needed); returns the path of `index.html`.
pub fn write(r: &Report, dir: &Path) -> Result<PathBuf> {
    let drawn = draw(r)?;
    let written = write_all(dir, &exporters(&drawn), &drawn)?;
    Ok(written.last().cloned().expect("index.html is written last"))
}
