//! The report's content: finished runs priced and gathered into a
//! [`Report`], one [`ModelReport`] per run (its leaderboard row, prices,
//! costs, the items it got wrong) plus the warnings a reader must see. Prices
//! are applied here, at report time: a self-hosted price from each run's
//! measured throughput and the chosen hardware price per hour, plus any
//! provider offering of the same weights found in the price table. The
//! exporters in `export::report` turn a [`Report`] into charts, HTML,
//! Markdown and CSV.

use super::cost::{self, SelfHostedPrice};
use super::leaderboard::{model_row, ModelRow};
use super::prices::{self, PriceEntry, PriceTable};
use crate::backend::openai::endpoint::PriceRef;
use crate::results::{ItemResult, RunData, RunMeta};
use anyhow::Result;
use serde::Serialize;

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
    /// A served model's own price (its models-file entry: explicit, or an id
    /// in the price table); on the quality-vs-price chart it takes the place
    /// of the self-hosted price, with its own marker.
    pub served_price: Option<PriceEntry>,
    /// Cost of this run's tokens (USD) at the served price, else the self-hosted one.
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

/// Where a model's price on the quality-vs-price chart comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceBasis {
    /// Measured throughput × the hardware's hourly price.
    SelfHosted,
    /// What the provider (or the models file) charges per token.
    Provider,
}

impl ModelReport {
    /// The blended price (USD per 1M tokens) the chart plots and its basis:
    /// the served price when the model is served at one, else the self-hosted one.
    pub fn chart_price(&self) -> Option<(f64, PriceBasis)> {
        if let Some(p) = &self.served_price {
            return Some((p.blended_usd_per_mtok(), PriceBasis::Provider));
        }
        self.self_hosted.map(|s| (s.blended_usd_per_mtok, PriceBasis::SelfHosted))
    }
}

/// Prices finished runs and gathers what the report shows.
pub fn build(runs: Vec<RunData>, hardware: HardwarePrice, table: &PriceTable) -> Result<Report> {
    let mut models = Vec::new();
    let mut tasks: Vec<String> = Vec::new();
    let mut groups: Vec<String> = Vec::new();
    let mut suites: Vec<String> = Vec::new();
    let mut item_sets: Vec<(String, Option<usize>)> = Vec::new();
    let mut unpriced: Vec<String> = Vec::new();
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
        let offerings = prices::offerings(table, &aliases).into_iter().cloned().collect();
        // A served model runs on someone else's hardware: this machine's hourly price does not apply.
        let self_hosted = match (row.prefill_tok_per_s, row.decode_tok_per_s, &run.meta.model.served) {
            (Some(p), Some(d), None) => cost::self_hosted(hardware.usd_per_hour, p, d),
            _ => None,
        };
        let served_price = match run.meta.model.served.as_ref().and_then(|ep| ep.price.as_ref()) {
            Some(PriceRef::Explicit { input_usd_per_mtok, output_usd_per_mtok }) => Some(PriceEntry {
                provider: "models file".into(),
                model: row.model.clone(),
                input_usd_per_mtok: *input_usd_per_mtok,
                output_usd_per_mtok: *output_usd_per_mtok,
            }),
            Some(PriceRef::Table(id)) => {
                let found = table.entries.iter().find(|e| format!("{}/{}", e.provider, e.model) == *id).cloned();
                if found.is_none() {
                    unpriced.push(format!(
                        "{}: price id '{id}' is not in the price table ({}); see `openweigh prices list`",
                        row.model, table.source
                    ));
                }
                found
            }
            None => None,
        };
        // The price the chart plots (see `chart_price`): served, else self-hosted.
        let per_mtok = served_price
            .as_ref()
            .map(|p| (p.input_usd_per_mtok, p.output_usd_per_mtok))
            .or(self_hosted.map(|s| (s.input_usd_per_mtok, s.output_usd_per_mtok)));
        let run_tokens_cost_usd = per_mtok.map(|(i, o)| cost::tokens_cost_usd(row.tokens_in, row.tokens_out, i, o));
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
            served_price,
            run_tokens_cost_usd,
            e2e_500_s,
            wrong,
        });
    }
    let mut warnings = unpriced;
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
        if m.meta.model.served.is_some() {
            if m.served_price.is_none() {
                warnings.push(format!(
                    "{}: a served model with no price (give one in its models-file entry), so it is not on the quality-vs-price chart",
                    m.row.model
                ));
            }
        } else if m.self_hosted.is_none() {
            warnings.push(format!("{}: no speed probe in this run, so no self-hosted price", m.row.model));
        }
    }
    Ok(Report { models, tasks, groups, hardware, price_source: table.source.clone(), suites, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::fixtures::runs;
    use crate::backend::openai::endpoint::parse_spec;

    fn hw() -> HardwarePrice {
        HardwarePrice { name: "h".into(), usd_per_hour: 1.0, what: "test".into() }
    }

    #[test]
    fn a_served_model_is_priced_from_its_models_file_or_the_table() {
        let (local, mut served) = runs(0, 0);
        let mut ep = parse_spec("openai:http://127.0.0.1:1/v1#m").unwrap();
        ep.price = Some(PriceRef::Table("deepinfra/m".into()));
        served.meta.model.served = Some(ep.clone());
        let table = PriceTable {
            source: "test".into(),
            entries: vec![PriceEntry {
                provider: "deepinfra".into(),
                model: "m".into(),
                input_usd_per_mtok: 1.0,
                output_usd_per_mtok: 5.0,
            }],
        };
        let r = build(vec![local.clone(), served.clone()], hw(), &table).unwrap();
        assert_eq!(r.models[0].chart_price().unwrap().1, PriceBasis::SelfHosted);
        let (price, basis) = r.models[1].chart_price().unwrap();
        assert_eq!((price, basis), (2.0, PriceBasis::Provider), "(3·1 + 5)/4");
        let row = &r.models[1].row;
        let expect = (row.tokens_in as f64 * 1.0 + row.tokens_out as f64 * 5.0) / 1e6;
        assert!((r.models[1].run_tokens_cost_usd.unwrap() - expect).abs() < 1e-15, "run cost = tokens × served price");

        // An id missing from the table: said, and no point on the price chart.
        ep.price = Some(PriceRef::Table("nowhere/m".into()));
        served.meta.model.served = Some(ep);
        let r = build(vec![local, served], hw(), &table).unwrap();
        assert!(r.models[1].chart_price().is_none(), "a served model is never priced at this machine's hourly rate");
        assert!(r.warnings.iter().any(|w| w.contains("'nowhere/m' is not in the price table")), "{:?}", r.warnings);
    }
}
