//! `openweigh merge BASE --adapter A OUT.gguf`: a LoRA adapter merged into a
//! GGUF model and written as GGUF, so the fine-tune can be served anywhere
//! (llama-server, ollama) without the adapter. Each targeted tensor becomes
//! `W + scale·B·A` computed in f32 (as `--adapter` does at load) and is then
//! quantized to the base tensor's own type, or to `--to TYPE` (every 2-D
//! tensor then). Rounding a merged tensor to a 4-bit type loses part of a
//! small ΔW: `--to Q8_0` keeps it (and then runs exactly as `--adapter` does
//! under the default `--weights q8_0`). With `--lora-only` the adapter alone
//! is written as a llama.cpp GGUF adapter instead (`llama-server --lora`).

use crate::backend::adapter::{gguf, AdapterInfo, LoraAdapter};
use crate::backend::weights::{ModelHeader, RowOrder};
use crate::error::UserError;
use crate::quantize::{requantized, rewrite, QuantType};
use anyhow::Result;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct MergeOutcome {
    pub adapter: AdapterInfo,
    /// Base tensors the adapter changed.
    pub tensors_merged: usize,
    /// Tensor count per type in the written file.
    pub output_types: BTreeMap<String, usize>,
    /// Tensors written as Q4_0 because their rows are not a multiple of the target's block.
    pub fallback: Vec<String>,
    /// RMS of the rounding the written types add to the merged tensors, as a
    /// fraction of the RMS of the adapter's change ΔW: near 0 the file holds
    /// the adapter as computed; near 1 the rounding is as large as the
    /// adapter itself (a small adapter requantized to 4 bits).
    pub rounding_vs_delta: f64,
    pub output_byte: u64,
}

/// Merges `adapter` into the GGUF model at `base` and writes `out`.
pub fn merge(base: &Path, adapter: &LoraAdapter, to: Option<QuantType>, out: &Path) -> Result<MergeOutcome> {
    let header = gguf_header(base)?;
    adapter.check(&header)?;
    let hp = header.hparams;
    let mut outcome = MergeOutcome {
        adapter: adapter.info.clone(),
        tensors_merged: 0,
        output_types: BTreeMap::new(),
        fallback: vec![],
        rounding_vs_delta: 0.0,
        output_byte: 0,
    };
    let (mut rounding_sq, mut delta_sq) = (0f64, 0f64);
    let i = &adapter.info;
    let marks = [
        ("openweigh.adapter.name".to_string(), gguf_file::Value::String(i.name.clone())),
        ("openweigh.adapter.sha256".to_string(), gguf_file::Value::String(i.sha256.clone())),
        ("openweigh.adapter.rank".to_string(), gguf_file::Value::U32(i.rank as u32)),
        ("openweigh.adapter.scale".to_string(), gguf_file::Value::F32(i.scale as f32)),
    ];
    rewrite(base, out, &marks, |name, t| {
        let target = to.map(QuantType::ggml);
        let base = t.dequantize(&Device::Cpu)?;
        let q = match adapter.merged(name, &base, &hp, RowOrder::LlamaCpp)? {
            Some(w) => {
                outcome.tensors_merged += 1;
                let dtype = target.unwrap_or(t.dtype());
                let q = requantized(name, QTensor::quantize(&w, GgmlDType::F32)?, dtype, &mut outcome.fallback)?;
                rounding_sq += sum_sq(&(q.dequantize(&Device::Cpu)? - &w)?)?;
                delta_sq += sum_sq(&(&w - &base)?)?;
                q
            }
            None => match target {
                Some(dtype) if t.shape().dims().len() == 2 => requantized(name, t, dtype, &mut outcome.fallback)?,
                _ => t,
            },
        };
        *outcome.output_types.entry(format!("{:?}", q.dtype())).or_insert(0) += 1;
        Ok(q)
    })?;
    outcome.output_byte = std::fs::metadata(out)?.len();
    outcome.rounding_vs_delta = if delta_sq > 0.0 { (rounding_sq / delta_sq).sqrt() } else { 0.0 };
    Ok(outcome)
}

fn sum_sq(t: &candle_core::Tensor) -> Result<f64> {
    Ok(t.sqr()?.sum_all()?.to_scalar::<f32>()? as f64)
}

/// Writes `adapter` alone as a llama.cpp GGUF adapter for the base at `base`.
pub fn write_lora_only(base: &Path, adapter: &LoraAdapter, out: &Path) -> Result<()> {
    let header = ModelHeader::read(base)?;
    adapter.check(&header)?;
    gguf::write(adapter, header.hparams.family.gguf_architecture(), &header.hparams, out)
}

fn gguf_header(base: &Path) -> Result<ModelHeader> {
    if base.is_dir() {
        return Err(UserError::BadModel {
            path: base.to_path_buf(),
            reason: "merge writes GGUF from a GGUF base; for a safetensors base use PEFT's merge_and_unload(), or pass the folder to `run --model DIR --adapter A`".into(),
        }
        .into());
    }
    ModelHeader::read(base)
}
