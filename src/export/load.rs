//! The files of a load test (`openweigh load`): `load.json` (the whole
//! [`LoadResult`]), `load.csv` (one row per concurrency level, units in
//! the column names), `load.md`, two charts against concurrency —
//! throughput (request/s, output tok/s) and latency (TTFT and TPOT, p50 and
//! p99) — as SVG and PNG, and a self-contained `index.html` holding both.
//! Requests themselves go to `requests.jsonl`, appended by the command.

use super::markup::{escape, md_row};
use super::report::charts::{color, font, svg, titled, Chart};
use super::report::{ChartFile, ChartFormat, Charted};
use super::{write_all, Exporter};
use crate::load::metrics::LevelSummary;
use crate::load::LoadResult;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// A load test with its charts drawn.
pub struct LoadDrawn<'a> {
    pub result: &'a LoadResult,
    pub charts: Vec<Chart>,
}

impl Charted for LoadDrawn<'_> {
    fn charts(&self) -> &[Chart] {
        &self.charts
    }
}

/// One line per series: label and its values, one per level.
type Series<'a> = (&'a str, Vec<f64>);

/// A panel of lines against concurrency.
fn panel(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    y_desc: &str,
    xs: &[f64],
    series: &[Series],
) -> Result<()> {
    let x_max = xs.iter().copied().fold(1.0, f64::max);
    let y_max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max).max(1e-9) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, font(17))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max * 1.08 + 0.5, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("concurrent requests")
        .y_desc(y_desc)
        .label_style(font(13))
        .axis_desc_style(font(14))
        .x_labels(xs.len().max(2) + 1)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, (label, ys)) in series.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = xs.iter().copied().zip(ys.iter().copied()).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 5, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(font(13))
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()?;
    Ok(())
}

/// The two charts against concurrency.
pub fn draw(r: &LoadResult) -> Result<LoadDrawn<'_>> {
    let xs: Vec<f64> = r.levels.iter().map(|l| l.concurrency as f64).collect();
    let v = |f: &dyn Fn(&crate::load::metrics::LevelSummary) -> f64| r.levels.iter().map(f).collect::<Vec<f64>>();
    let what = format!(
        "{} ({}): {} prompt tokens, {} output tokens per request.",
        r.endpoint.name, r.endpoint.model_id, r.options.input_len, r.options.output_len
    );
    let throughput = svg(|root| {
        let area = titled(root, "Throughput against concurrency", &format!("{what} Higher is better."))?;
        let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
        panel(
            &left,
            "Requests per second",
            "request/s",
            &xs,
            &[("completed", v(&|l| l.request_per_s)), ("goodput (met SLOs)", v(&|l| l.goodput_request_per_s))],
        )?;
        panel(&right, "Output tokens per second", "tok/s", &xs, &[("output", v(&|l| l.output_tok_per_s))])?;
        Ok(())
    })?;
    let latency = svg(|root| {
        let area =
            titled(root, "Latency against concurrency", &format!("{what} Client-side, streamed. Lower is better."))?;
        let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
        panel(
            &left,
            "Time to first token",
            "seconds",
            &xs,
            &[("p50", v(&|l| l.ttft.p50_s)), ("p99", v(&|l| l.ttft.p99_s))],
        )?;
        panel(
            &right,
            "Time per output token",
            "seconds",
            &xs,
            &[("p50", v(&|l| l.tpot.p50_s)), ("p99", v(&|l| l.tpot.p99_s))],
        )?;
        Ok(())
    })?;
    Ok(LoadDrawn {
        result: r,
        charts: vec![
            Chart { name: "load_throughput", title: "Throughput against concurrency".into(), svg: throughput },
            Chart { name: "load_latency", title: "Latency against concurrency".into(), svg: latency },
        ],
    })
}

struct Json;
impl Exporter<LoadDrawn<'_>> for Json {
    fn file_name(&self) -> String {
        "load.json".into()
    }
    fn serialize(&self, d: &LoadDrawn) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(d.result)?)
    }
}

/// One CSV row per level.
#[derive(serde::Serialize)]
struct CsvRow {
    concurrency: usize,
    completed: usize,
    errors: usize,
    duration_s: f64,
    request_per_s: f64,
    output_tok_per_s: f64,
    goodput_request_per_s: f64,
    ttft_p50_s: f64,
    ttft_p90_s: f64,
    ttft_p99_s: f64,
    tpot_p50_s: f64,
    tpot_p90_s: f64,
    tpot_p99_s: f64,
    itl_p50_s: f64,
    itl_p99_s: f64,
    e2e_p50_s: f64,
    e2e_p99_s: f64,
}

struct Csv;
impl Exporter<LoadDrawn<'_>> for Csv {
    fn file_name(&self) -> String {
        "load.csv".into()
    }
    fn serialize(&self, d: &LoadDrawn) -> Result<Vec<u8>> {
        let rows = d.result.levels.iter().map(|l| CsvRow {
            concurrency: l.concurrency,
            completed: l.completed,
            errors: l.errors,
            duration_s: l.duration_s,
            request_per_s: l.request_per_s,
            output_tok_per_s: l.output_tok_per_s,
            goodput_request_per_s: l.goodput_request_per_s,
            ttft_p50_s: l.ttft.p50_s,
            ttft_p90_s: l.ttft.p90_s,
            ttft_p99_s: l.ttft.p99_s,
            tpot_p50_s: l.tpot.p50_s,
            tpot_p90_s: l.tpot.p90_s,
            tpot_p99_s: l.tpot.p99_s,
            itl_p50_s: l.itl.p50_s,
            itl_p99_s: l.itl.p99_s,
            e2e_p50_s: l.e2e.p50_s,
            e2e_p99_s: l.e2e.p99_s,
        });
        crate::results::io::csv_bytes(rows)
    }
}

/// The columns of the table of levels (Markdown and HTML alike).
const COLUMNS: [&str; 11] = [
    "concurrency",
    "req/s",
    "output tok/s",
    "goodput req/s",
    "TTFT p50 s",
    "TTFT p99 s",
    "TPOT p50 s",
    "TPOT p99 s",
    "ITL p50 s",
    "E2E p50 s",
    "errors",
];

/// One level's cells under [`COLUMNS`].
fn level_cells(l: &LevelSummary) -> [String; 11] {
    [
        l.concurrency.to_string(),
        format!("{:.2}", l.request_per_s),
        format!("{:.1}", l.output_tok_per_s),
        format!("{:.2}", l.goodput_request_per_s),
        format!("{:.3}", l.ttft.p50_s),
        format!("{:.3}", l.ttft.p99_s),
        format!("{:.4}", l.tpot.p50_s),
        format!("{:.4}", l.tpot.p99_s),
        format!("{:.4}", l.itl.p50_s),
        format!("{:.3}", l.e2e.p50_s),
        l.errors.to_string(),
    ]
}

/// The table of levels, as Markdown.
pub fn markdown_table(r: &LoadResult) -> String {
    let mut s = md_row(&COLUMNS);
    s.push_str(&md_row(&["---:"; 11]));
    for l in &r.levels {
        s.push_str(&md_row(&level_cells(l)));
    }
    s
}

const DEFINITIONS: &str = "TTFT: request sent → first streamed chunk with text. TPOT: (E2E − TTFT)/(output tokens − 1). \
ITL: each gap between chunks with text. E2E: request sent → end of stream. Throughput: completed requests (or their output \
tokens) / the level's wall time (its start → every stream stopped). Goodput: requests meeting every SLO given / the same duration. As vLLM's `bench serve` \
defines them; client-side, on this machine.";

fn header(r: &LoadResult) -> String {
    let by = match (r.options.requests, r.options.duration_s) {
        (_, Some(d)) => format!("{d} s per level"),
        (Some(n), None) => format!("{n} requests per level"),
        _ => String::new(),
    };
    format!(
        "{} (model id {}, {}), {by}; {} prompt tokens ({}), {} output tokens (ignore_eos); started {}; client CPU: {}",
        r.endpoint.name,
        r.endpoint.model_id,
        r.endpoint.base_urls.join(", "),
        r.options.input_len,
        r.prompts,
        r.options.output_len,
        r.started_at,
        r.host.cpu
    )
}

struct Markdown;
impl Exporter<LoadDrawn<'_>> for Markdown {
    fn file_name(&self) -> String {
        "load.md".into()
    }
    fn serialize(&self, d: &LoadDrawn) -> Result<Vec<u8>> {
        let r = d.result;
        let mut s = format!("# Load test\n\n{}\n\n", super::markup::md_cell(&header(r)));
        s.push_str(&markdown_table(r));
        s.push_str(&format!("\n{DEFINITIONS}\n"));
        if let Some(e) = &r.error {
            s.push_str(&format!("\n**Stopped early:** {}\n", super::markup::md_cell(e)));
        }
        s.push_str("\n![throughput](load_throughput.svg)\n\n![latency](load_latency.svg)\n");
        Ok(s.into_bytes())
    }
}

struct Html;
impl Exporter<LoadDrawn<'_>> for Html {
    fn file_name(&self) -> String {
        "index.html".into()
    }
    fn serialize(&self, d: &LoadDrawn) -> Result<Vec<u8>> {
        let r = d.result;
        let cells = |tag: &str, cells: &[String]| -> String {
            cells.iter().map(|c| format!("<{tag}>{}</{tag}>", escape(c))).collect()
        };
        let head_row = cells("th", &COLUMNS.map(String::from));
        let rows: String = r.levels.iter().map(|l| format!("<tr>{}</tr>\n", cells("td", &level_cells(l)))).collect();
        let charts: String = d.charts.iter().map(|c| format!("<figure>{}</figure>\n", c.svg)).collect();
        let stopped =
            r.error.as_ref().map(|e| format!("<p><b>Stopped early:</b> {}</p>", escape(e))).unwrap_or_default();
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
             <title>openweigh load: {name}</title><style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto}}\
             table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>\
             <h1>Load test: {name}</h1><p>{head}</p>{stopped}<table><thead><tr>{head_row}</tr></thead><tbody>\n{rows}</tbody></table><p>{defs}</p>\n{charts}</body></html>\n",
            name = escape(&r.endpoint.name),
            head = escape(&header(r)),
            defs = escape(DEFINITIONS),
        );
        Ok(html.into_bytes())
    }
}

/// Every file of a load test, written into `dir`.
pub fn write(r: &LoadResult, dir: &Path) -> Result<Vec<PathBuf>> {
    let drawn = draw(r)?;
    let mut exporters: Vec<Box<dyn Exporter<LoadDrawn>>> = Vec::new();
    for c in &drawn.charts {
        exporters.push(Box::new(ChartFile { name: c.name, format: ChartFormat::Svg }));
        exporters.push(Box::new(ChartFile { name: c.name, format: ChartFormat::Png }));
    }
    exporters.extend([
        Box::new(Json) as Box<dyn Exporter<LoadDrawn>>,
        Box::new(Csv),
        Box::new(Markdown),
        Box::new(Html),
    ]);
    write_all(dir, &exporters, &drawn)
}
