//! `openweigh report RESULT_DIR…`: turns finished runs into `report/` — one
//! PNG and one SVG per chart, a self-contained `index.html`, a `summary.md`
//! ready for `$GITHUB_STEP_SUMMARY`, and `models.csv`. Prices are applied
//! here, at report time: a self-hosted price from each run's measured
//! throughput and the chosen hardware price per hour, plus any provider
//! offering of the same weights found in the price table.

pub mod bars;
pub mod chart;
pub mod html;
pub mod latency;
pub mod markdown;
pub mod memory;
pub mod quality_price;
pub mod quality_speed;
pub mod scatter;
pub mod tasks;

use crate::compare::{load_run, RunData};
use crate::cost::{self, PriceEntry, PriceTable, SelfHostedPrice};
use crate::leaderboard::{model_row, ModelRow};
use crate::results::{ItemResult, RunMeta};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Output tokens of the end-to-end latency figure (Artificial Analysis uses 500).
pub const E2E_OUTPUT_TOKENS: usize = 500;

/// The hardware price used for self-hosted costs.
#[derive(Debug, Clone, Serialize)]
pub struct HardwarePrice {
    /// Profile name, or "custom" for --hourly-usd.
    pub name: String,
    pub usd_per_hour: f64,
    pub what: String,
}

impl HardwarePrice {
    /// From `--hourly-usd` (wins) or `--hardware NAME`.
    pub fn choose(hourly_usd: Option<f64>, hardware: &str) -> Result<Self> {
        if let Some(h) = hourly_usd {
            if !(h.is_finite() && h > 0.0) {
                return Err(crate::error::UserError::BadFlag {
                    flag: "--hourly-usd",
                    message: "must be a positive price in USD per hour, e.g. 0.09".into(),
                }
                .into());
            }
            return Ok(Self { name: "custom".into(), usd_per_hour: h, what: "--hourly-usd".into() });
        }
        let p = cost::hardware(hardware)?;
        Ok(Self { name: p.name.into(), usd_per_hour: p.usd_per_hour, what: p.what.into() })
    }
}

/// Everything the report shows about one model's run.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// Index into the palette: the same colour in every chart.
    pub color: usize,
    pub row: ModelRow,
    #[serde(skip)]
    pub meta: RunMeta,
    /// Price of running it on the chosen hardware, from measured throughput.
    pub self_hosted: Option<SelfHostedPrice>,
    /// Provider offerings of the same weights (cheapest first).
    pub offerings: Vec<PriceEntry>,
    /// Cost of this run's tokens at the self-hosted price (USD).
    pub run_tokens_cost_usd: Option<f64>,
    /// Cost of the machine time the items took (eval seconds × hourly price, USD).
    pub run_machine_cost_usd: f64,
    /// TTFT + 499 tokens at decode speed (seconds).
    pub e2e_500_s: Option<f64>,
    /// Items the model got wrong (or that failed).
    #[serde(skip)]
    pub wrong: Vec<ItemResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub models: Vec<ModelReport>,
    /// Tasks in first-seen order.
    pub tasks: Vec<String>,
    /// Groups within tasks (`task/group`, e.g. MMLU categories), first-seen order.
    pub groups: Vec<String>,
    pub hardware: HardwarePrice,
    pub price_source: String,
    pub suites: Vec<String>,
    /// Things the reader must know before comparing the rows (shown in every output).
    pub warnings: Vec<String>,
}

/// Reads the runs in `dirs`.
pub fn load_runs(dirs: &[PathBuf]) -> Result<Vec<RunData>> {
    dirs.iter().map(|d| load_run(d)).collect()
}

/// Prices finished runs and gathers what the report shows.
pub fn build(runs: Vec<RunData>, hardware: HardwarePrice, table: &PriceTable) -> Result<Report> {
    let mut models = Vec::new();
    let mut tasks: Vec<String> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    let mut suites: Vec<String> = Vec::new();
    let mut item_sets: Vec<(String, Option<usize>)> = Vec::new();
    for (i, run) in runs.into_iter().enumerate() {
        let set = (run.meta.suite.sha256.clone(), run.meta.limit);
        if !item_sets.contains(&set) {
            item_sets.push(set);
        }
        let row = model_row(&run);
        for t in &row.tasks {
            if !tasks.contains(&t.task) {
                tasks.push(t.task.clone());
            }
        }
        for g in &row.groups {
            if !groups.contains(&g.task) {
                groups.push(g.task.clone());
            }
        }
        if !suites.contains(&run.meta.suite.name) {
            suites.push(run.meta.suite.name.clone());
        }
        let aliases: Vec<&str> = match crate::catalog::model(&row.model) {
            Some(m) => m.aliases.to_vec(),
            None => vec![row.model.as_str()],
        };
        let offerings = cost::offerings(table, &aliases).into_iter().cloned().collect();
        let self_hosted = match (row.prefill_tok_per_s, row.decode_tok_per_s) {
            (Some(p), Some(d)) => cost::self_hosted(hardware.usd_per_hour, p, d),
            _ => None,
        };
        let run_tokens_cost_usd = self_hosted
            .map(|s| cost::tokens_cost_usd(row.tokens_in, row.tokens_out, s.input_usd_per_mtok, s.output_usd_per_mtok));
        let e2e_500_s = match (row.ttft_s, row.decode_tok_per_s) {
            (Some(t), Some(d)) if d > 0.0 => Some(t + (E2E_OUTPUT_TOKENS - 1) as f64 / d),
            _ => None,
        };
        let wrong = run.samples.iter().filter(|s| !s.correct || s.error.is_some()).cloned().collect();
        models.push(ModelReport {
            color: i,
            run_machine_cost_usd: row.eval_s / 3600.0 * hardware.usd_per_hour,
            row,
            meta: run.meta,
            self_hosted,
            offerings,
            run_tokens_cost_usd,
            e2e_500_s,
            wrong,
        });
    }
    let mut warnings = Vec::new();
    if item_sets.len() > 1 {
        warnings.push(
            "these runs used different suites or --limit values, so their quality scores come from different items \
             and are not directly comparable"
                .to_string(),
        );
    }
    for m in &models {
        if m.row.n_failed > 0 {
            warnings.push(format!("{}: {} item(s) failed and count as wrong", m.row.model, m.row.n_failed));
        }
        if m.self_hosted.is_none() {
            warnings.push(format!("{}: no speed probe in this run, so no self-hosted price", m.row.model));
        }
    }
    Ok(Report { models, tasks, groups, hardware, price_source: table.source.clone(), suites, warnings })
}

/// The charts of a report, in the order the HTML shows them.
pub fn charts(r: &Report) -> Result<Vec<chart::Chart>> {
    let point = |m: &ModelReport, x: f64| scatter::Point {
        label: m.row.model.clone(),
        color: m.color,
        x,
        y: m.row.aggregate,
        y_low: m.row.aggregate_ci95.0,
        y_high: m.row.aggregate_ci95.1,
    };
    let price_pts: Vec<_> =
        r.models.iter().filter_map(|m| m.self_hosted.map(|s| point(m, s.blended_usd_per_mtok))).collect();
    let speed_pts: Vec<_> = r.models.iter().filter_map(|m| m.row.decode_tok_per_s.map(|d| point(m, d))).collect();
    let basis = format!("self-hosted at ${}/h ({})", r.hardware.usd_per_hour, r.hardware.name);
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
            scores: r.tasks.iter().map(|t| m.row.tasks.iter().find(|x| &x.task == t).map(|x| x.score)).collect(),
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

/// One CSV row per model: the figures of the headline table, units in names.
#[derive(Debug, Serialize)]
pub struct CsvRow {
    pub model: String,
    pub architecture: String,
    pub aggregate: f64,
    pub aggregate_ci95_low: f64,
    pub aggregate_ci95_high: f64,
    pub self_hosted_blended_usd_per_mtok: Option<f64>,
    pub self_hosted_input_usd_per_mtok: Option<f64>,
    pub self_hosted_output_usd_per_mtok: Option<f64>,
    pub cheapest_provider: Option<String>,
    pub cheapest_provider_blended_usd_per_mtok: Option<f64>,
    pub prefill_tok_per_s: Option<f64>,
    pub decode_tok_per_s: Option<f64>,
    pub ttft_s: Option<f64>,
    pub e2e_500_tok_s: Option<f64>,
    pub peak_rss_byte: u64,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub run_tokens_cost_usd: Option<f64>,
    pub run_machine_cost_usd: f64,
    pub n_failed: usize,
}

pub fn csv_rows(r: &Report) -> Vec<CsvRow> {
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    r.models
        .iter()
        .map(|m| CsvRow {
            model: m.row.model.clone(),
            architecture: m.row.architecture.clone(),
            aggregate: round(m.row.aggregate, 4),
            aggregate_ci95_low: round(m.row.aggregate_ci95.0, 4),
            aggregate_ci95_high: round(m.row.aggregate_ci95.1, 4),
            self_hosted_blended_usd_per_mtok: m.self_hosted.map(|s| round(s.blended_usd_per_mtok, 4)),
            self_hosted_input_usd_per_mtok: m.self_hosted.map(|s| round(s.input_usd_per_mtok, 4)),
            self_hosted_output_usd_per_mtok: m.self_hosted.map(|s| round(s.output_usd_per_mtok, 4)),
            cheapest_provider: m.offerings.first().map(|o| format!("{}/{}", o.provider, o.model)),
            cheapest_provider_blended_usd_per_mtok: m.offerings.first().map(|o| round(o.blended_usd_per_mtok(), 4)),
            prefill_tok_per_s: m.row.prefill_tok_per_s.map(|v| round(v, 2)),
            decode_tok_per_s: m.row.decode_tok_per_s.map(|v| round(v, 2)),
            ttft_s: m.row.ttft_s.map(|v| round(v, 4)),
            e2e_500_tok_s: m.e2e_500_s.map(|v| round(v, 3)),
            peak_rss_byte: m.row.peak_rss_byte,
            tokens_in: m.row.tokens_in,
            tokens_out: m.row.tokens_out,
            run_tokens_cost_usd: m.run_tokens_cost_usd.map(|v| round(v, 6)),
            run_machine_cost_usd: round(m.run_machine_cost_usd, 6),
            n_failed: m.row.n_failed,
        })
        .collect()
}

pub fn to_csv(r: &Report) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in csv_rows(r) {
        w.serialize(row)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

/// Writes the whole report into `dir` (created if needed); returns the index path.
pub fn write(r: &Report, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let charts = charts(r)?;
    for c in &charts {
        c.write(dir)?;
    }
    std::fs::write(dir.join("summary.md"), markdown::summary(r))?;
    std::fs::write(dir.join("models.csv"), to_csv(r)?)?;
    let index = dir.join("index.html");
    std::fs::write(&index, html::page(r, &charts))?;
    Ok(index)
}
