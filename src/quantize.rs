//! `openweigh quantize IN.gguf --to TYPE OUT.gguf`: requantizes a GGUF model
//! with candle, so a user (and the tests) can make a real candidate model from
//! any model. Every 2-D weight is dequantized and quantized to the target
//! type; a tensor whose rows are not a multiple of the target's block size
//! (K-quants need 256) falls back to Q4_0, as llama.cpp does for such
//! tensors. 1-D tensors (norms) are kept. The report says what went where.
//! [`rewrite`] (one GGUF in, one out, each tensor through a function) is
//! shared with `openweigh merge`.

use crate::backend::weights::{bad_model, one_line, open_gguf};
use crate::results::write_atomic_with;
use anyhow::{Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Target types offered on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum QuantType {
    #[value(name = "F32")]
    F32,
    #[value(name = "F16")]
    F16,
    #[value(name = "Q2_K")]
    Q2K,
    #[value(name = "Q3_K")]
    Q3K,
    #[value(name = "Q4_0")]
    Q4_0,
    #[value(name = "Q4_1")]
    Q4_1,
    #[value(name = "Q5_0")]
    Q5_0,
    #[value(name = "Q5_1")]
    Q5_1,
    #[value(name = "Q4_K")]
    Q4K,
    #[value(name = "Q5_K")]
    Q5K,
    #[value(name = "Q6_K")]
    Q6K,
    #[value(name = "Q8_0")]
    Q8_0,
}

impl QuantType {
    pub fn ggml(self) -> GgmlDType {
        match self {
            QuantType::F32 => GgmlDType::F32,
            QuantType::F16 => GgmlDType::F16,
            QuantType::Q2K => GgmlDType::Q2K,
            QuantType::Q3K => GgmlDType::Q3K,
            QuantType::Q4_0 => GgmlDType::Q4_0,
            QuantType::Q4_1 => GgmlDType::Q4_1,
            QuantType::Q5_0 => GgmlDType::Q5_0,
            QuantType::Q5_1 => GgmlDType::Q5_1,
            QuantType::Q4K => GgmlDType::Q4K,
            QuantType::Q5K => GgmlDType::Q5K,
            QuantType::Q6K => GgmlDType::Q6K,
            QuantType::Q8_0 => GgmlDType::Q8_0,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct QuantizeReport {
    /// Tensor count per output type.
    pub output_types: BTreeMap<String, usize>,
    /// Tensors that fell back to Q4_0 (row length not a multiple of the block).
    pub fallback: Vec<String>,
    pub input_byte: u64,
    pub output_byte: u64,
}

pub fn quantize(input: &Path, to: QuantType, output: &Path) -> Result<QuantizeReport> {
    let target = to.ggml();
    let mut report = QuantizeReport { output_types: BTreeMap::new(), fallback: vec![], input_byte: 0, output_byte: 0 };
    let marks = [("openweigh.quantized_to".to_string(), gguf_file::Value::String(format!("{target:?}")))];
    rewrite(input, output, &marks, |name, t| {
        let q = if t.shape().dims().len() == 2 { requantized(name, t, target, &mut report.fallback)? } else { t };
        *report.output_types.entry(format!("{:?}", q.dtype())).or_insert(0) += 1;
        Ok(q)
    })?;
    report.input_byte = std::fs::metadata(input)?.len();
    report.output_byte = std::fs::metadata(output)?.len();
    Ok(report)
}

/// The 2-D tensor `t` as `target`, or Q4_0 (named in `fallback`) when its
/// rows are not a multiple of `target`'s block.
pub fn requantized(name: &str, t: QTensor, target: GgmlDType, fallback: &mut Vec<String>) -> Result<QTensor> {
    let row = t.shape().dims().last().copied().unwrap_or(0);
    let dtype = if row % target.block_size() == 0 {
        target
    } else {
        fallback.push(name.to_string());
        GgmlDType::Q4_0
    };
    if t.dtype() == dtype {
        return Ok(t);
    }
    QTensor::quantize(&t.dequantize(&Device::Cpu)?, dtype).with_context(|| format!("quantizing {name}"))
}

/// Copies the GGUF model `input` to `output` with every tensor passed through
/// `f` (in file order), its metadata kept but for earlier `openweigh.*`
/// marks, replaced by `marks`. Written atomically.
pub fn rewrite(
    input: &Path,
    output: &Path,
    marks: &[(String, gguf_file::Value)],
    mut f: impl FnMut(&str, QTensor) -> Result<QTensor>,
) -> Result<()> {
    let (mut file, ct) = open_gguf(input)?;
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort_by_key(|n| ct.tensor_infos[*n].offset);
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let t = ct
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| bad_model(input, anyhow::anyhow!("tensor {name}: {}", one_line(&e))))?;
        tensors.push((name.clone(), f(name, t)?));
    }
    let mut metadata: Vec<(String, gguf_file::Value)> =
        ct.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    metadata.retain(|(k, _)| !k.starts_with("openweigh."));
    metadata.extend(marks.iter().cloned());
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let md_refs: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    write_gguf_atomic(output, &md_refs, &t_refs)
}

/// Writes a GGUF file atomically ([`write_atomic_with`]): a crash never
/// leaves a half-written file under `out`'s name.
pub fn write_gguf_atomic(
    out: &Path,
    metadata: &[(&str, &gguf_file::Value)],
    tensors: &[(&str, &QTensor)],
) -> Result<()> {
    write_atomic_with(out, |w| Ok(gguf_file::write(w, metadata, tensors)?))
}
