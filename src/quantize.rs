//! `openweigh quantize IN.gguf --to TYPE OUT.gguf`: requantizes a GGUF model
//! with candle, so a user (and the tests) can make a real candidate model from
//! any model. Every 2-D weight is dequantized and quantized to the target
//! type; a tensor whose rows are not a multiple of the target's block size
//! (K-quants need 256) falls back to Q4_0, as llama.cpp does for such
//! tensors. 1-D tensors (norms) are kept. The report says what went where.

use crate::error::UserError;
use anyhow::{Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Target types offered on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum QuantType {
    #[value(name = "Q2_K")]
    Q2K,
    #[value(name = "Q3_K")]
    Q3K,
    #[value(name = "Q4_0")]
    Q4_0,
    #[value(name = "Q4_K")]
    Q4K,
    #[value(name = "Q8_0")]
    Q8_0,
}

impl QuantType {
    pub fn ggml(self) -> GgmlDType {
        match self {
            QuantType::Q2K => GgmlDType::Q2K,
            QuantType::Q3K => GgmlDType::Q3K,
            QuantType::Q4_0 => GgmlDType::Q4_0,
            QuantType::Q4K => GgmlDType::Q4K,
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
    let bad = |reason: String| UserError::BadModel { path: input.to_path_buf(), reason };
    let mut f = std::fs::File::open(input).map_err(|e| bad(e.to_string()))?;
    let ct = gguf_file::Content::read(&mut f).map_err(|e| bad(format!("header: {e}")))?;
    let target = to.ggml();
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort_by_key(|n| ct.tensor_infos[*n].offset);
    let mut tensors = Vec::with_capacity(names.len());
    let mut report = QuantizeReport { output_types: BTreeMap::new(), fallback: vec![], input_byte: 0, output_byte: 0 };
    for name in names {
        let t = ct.tensor(&mut f, name, &Device::Cpu).map_err(|e| bad(format!("tensor {name}: {e}")))?;
        let dims = t.shape().dims().to_vec();
        let q = if dims.len() == 2 {
            let row = dims[1];
            let dtype = if row % target.block_size() == 0 {
                target
            } else {
                report.fallback.push(name.clone());
                GgmlDType::Q4_0
            };
            if t.dtype() == dtype {
                t
            } else {
                QTensor::quantize(&t.dequantize(&Device::Cpu)?, dtype).with_context(|| format!("quantizing {name}"))?
            }
        } else {
            t
        };
        *report.output_types.entry(format!("{:?}", q.dtype())).or_insert(0) += 1;
        tensors.push((name.clone(), q));
    }
    let mut metadata: Vec<(String, gguf_file::Value)> =
        ct.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    metadata.retain(|(k, _)| !k.starts_with("openweigh."));
    metadata.push(("openweigh.quantized_to".into(), gguf_file::Value::String(format!("{target:?}"))));
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let md_refs: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tmp = output.with_extension("gguf.partial");
    {
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?,
        );
        gguf_file::write(&mut out, &md_refs, &t_refs)?;
        use std::io::Write;
        out.flush()?;
    }
    std::fs::rename(&tmp, output)?;
    report.input_byte = std::fs::metadata(input)?.len();
    report.output_byte = std::fs::metadata(output)?.len();
    Ok(report)
}
