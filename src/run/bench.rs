//! `openweigh bench`: the speed probe alone, for one model under several
//! weight formats loaded side by side in one process, their repetitions
//! interleaved (A, B, A, B, …) so machine noise falls on every format alike,
//! reported as ratios to the first (the baseline).

use super::measure;
use crate::assets;
use crate::backend::candle::{device, CandleBackend};
use crate::backend::{Engine, WeightFormat};
use crate::results::SpeedProbe;
use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct BenchRow {
    pub model: String,
    pub weights: WeightFormat,
    pub threads: usize,
    /// Seconds to load and prepare the weights (repack included).
    pub load_s: f64,
    /// Bytes of matmul weights in memory.
    pub runtime_weight_byte: usize,
    pub probe: SpeedProbe,
}

pub fn bench(
    model: &str,
    formats: &[WeightFormat],
    reps: usize,
    threads: usize,
    shape: measure::ProbeShape,
) -> Result<Vec<BenchRow>> {
    let model = assets::resolve_model(model)?;
    let dev = device(false)?;
    let mut loaded: Vec<CandleBackend> =
        formats.iter().map(|&w| CandleBackend::load(&model.path, &dev, w)).collect::<Result<_>>()?;
    let mut engines: Vec<&mut dyn Engine> = loaded.iter_mut().map(|c| c as &mut dyn Engine).collect();
    let probes = measure::interleaved_probes(&mut engines, reps, shape)?;
    Ok(formats
        .iter()
        .zip(&loaded)
        .zip(probes)
        .map(|((&weights, c), probe)| BenchRow {
            model: model.name.clone(),
            weights,
            threads,
            load_s: c.load_s,
            runtime_weight_byte: c.load_report().runtime_weight_byte,
            probe,
        })
        .collect())
}

pub fn format_table(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<8} {:>8} {:>20} {:>7} {:>20} {:>7} {:>9}\n",
        "weights", "load s", "prefill tok/s", "ratio", "decode tok/s", "ratio", "weights"
    );
    let Some(base) = rows.first() else { return s };
    for r in rows {
        s.push_str(&format!(
            "{:<8} {:>8.2} {:>20} {:>6.2}x {:>20} {:>6.2}x {:>9}\n",
            serde_json::to_value(r.weights).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
            r.load_s,
            format!("{:.1} ± {:.1}", r.probe.prefill_tok_per_s.mean, r.probe.prefill_tok_per_s.sd),
            r.probe.prefill_tok_per_s.mean / base.probe.prefill_tok_per_s.mean,
            format!("{:.1} ± {:.1}", r.probe.decode_tok_per_s.mean, r.probe.decode_tok_per_s.sd),
            r.probe.decode_tok_per_s.mean / base.probe.decode_tok_per_s.mean,
            assets::human_bytes(r.runtime_weight_byte as u64),
        ));
    }
    s
}
