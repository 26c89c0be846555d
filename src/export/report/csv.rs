//! `models.csv`: one row per model with the figures of the headline table,
//! rounded, units in the column names.

use super::Drawn;
use crate::analysis::report::Report;
use crate::export::Exporter;
use anyhow::Result;
use serde::Serialize;

/// `models.csv`.
pub struct Csv;

impl Exporter<Drawn<'_>> for Csv {
    fn file_name(&self) -> String {
        "models.csv".into()
    }

    fn serialize(&self, d: &Drawn) -> Result<Vec<u8>> {
        Ok(to_csv(d.report)?.into_bytes())
    }
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
    /// A served model's price: where it came from (provider/model id, or "models file").
    pub served_price: Option<String>,
    pub served_blended_usd_per_mtok: Option<f64>,
}

pub fn csv_rows(r: &Report) -> Vec<CsvRow> {
    let round = |x: f64, d: i32| (x * 10f64.powi(d)).round() / 10f64.powi(d);
    r.models
        .iter()
        .map(|m| CsvRow {
            model: m.row.model.clone(),
            architecture: m.row.architecture.clone(),
            aggregate: round(m.row.aggregate.point, 4),
            aggregate_ci95_low: round(m.row.aggregate.ci95.low, 4),
            aggregate_ci95_high: round(m.row.aggregate.ci95.high, 4),
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
            served_price: m.served_price.as_ref().map(|p| format!("{}/{}", p.provider, p.model)),
            served_blended_usd_per_mtok: m.served_price.as_ref().map(|p| round(p.blended_usd_per_mtok(), 4)),
            run_machine_cost_usd: round(m.run_machine_cost_usd, 6),
            n_failed: m.row.n_failed,
        })
        .collect()
}

pub fn to_csv(r: &Report) -> Result<String> {
    Ok(String::from_utf8(crate::results::io::csv_bytes(csv_rows(r))?)?)
}
