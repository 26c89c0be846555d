//! llama.cpp's GGUF LoRA adapters, as `convert_lora_to_gguf.py` writes them
//! and `llama-server --lora` reads them: `general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`, and per adapted tensor
//! `<base name>.lora_a` (rank × in) and `<base name>.lora_b` (out × rank),
//! llama's q/k rows already in llama.cpp's permuted order. The scale is
//! alpha / rank, or 1 when alpha is 0 (llama.cpp's rule). Also the writer:
//! any adapter openweigh reads (a PEFT folder too) written in this layout.

use super::{bad, AdapterInfo, LoraAdapter, LoraPair};
use crate::assets::sha256_file;
use crate::backend::candle::transformer::Hparams;
use crate::backend::weights::{check_tensor_table, md, one_line, RowOrder};
use anyhow::{Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;
use std::collections::BTreeMap;
use std::path::Path;

/// Reads a GGUF adapter file.
pub fn read(path: &Path) -> Result<LoraAdapter> {
    let mut file = std::fs::File::open(path).map_err(|e| bad(path, e.to_string()))?;
    let ct =
        gguf_file::Content::read(&mut file).map_err(|e| bad(path, format!("not a GGUF file ({})", one_line(&e))))?;
    let file_len = file.metadata().map_err(|e| bad(path, e.to_string()))?.len();
    check_tensor_table(&ct, file_len).map_err(|e| bad(path, e))?;
    let text = |k: &str| md(&ct, k).and_then(|v| v.to_string().ok()).cloned();
    match text("general.type").as_deref() {
        Some("adapter") => {}
        other => {
            let said = other.map_or("missing".to_string(), |t| format!("\"{t}\""));
            return Err(bad(
                path,
                format!("general.type is {said}, not \"adapter\": a model file goes to --model, not --adapter"),
            ));
        }
    }
    if let Some(t) = text("adapter.type").filter(|t| t != "lora") {
        return Err(bad(path, format!("adapter.type is \"{t}\"; only LoRA adapters are applied")));
    }
    if ct.metadata.keys().any(|k| k.starts_with("adapter.alora")) {
        return Err(bad(
            path,
            "an activated LoRA (aLoRA) applies only after its invocation tokens, which openweigh does not do",
        ));
    }
    let alpha = md(&ct, "adapter.lora.alpha").and_then(|v| v.to_f32().ok()).unwrap_or(0.0) as f64;
    if !alpha.is_finite() {
        return Err(bad(path, format!("adapter.lora.alpha is {alpha}")));
    }
    let mut parts: BTreeMap<String, (Option<QTensor>, Option<QTensor>)> = BTreeMap::new();
    let mut names: Vec<&String> = ct.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let (base, is_a) = match (name.strip_suffix(".lora_a"), name.strip_suffix(".lora_b")) {
            (Some(b), _) => (b, true),
            (_, Some(b)) => (b, false),
            _ => return Err(bad(path, format!("tensor {name} is not a LoRA factor (….lora_a / ….lora_b)"))),
        };
        let t = ct
            .tensor(&mut file, name, &Device::Cpu)
            .map_err(|e| bad(path, format!("tensor {name}: {}", one_line(&e))))?;
        if t.shape().dims().len() != 2 {
            return Err(bad(path, format!("tensor {name} has shape {:?}, not a matrix", t.shape().dims())));
        }
        let slot = parts.entry(base.to_string()).or_default();
        if is_a {
            slot.0 = Some(t);
        } else {
            slot.1 = Some(t);
        }
    }
    let mut pairs = BTreeMap::new();
    for (base, (a, b)) in parts {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(bad(path, format!("{base} has only one of lora_a and lora_b")));
        };
        let a = a.dequantize(&Device::Cpu)?;
        let b = b.dequantize(&Device::Cpu)?;
        let scale = scale_of(alpha, a.dims()[0]);
        pairs.insert(base, LoraPair { a, b, scale });
    }
    if pairs.is_empty() {
        return Err(bad(path, "no lora_a/lora_b tensors"));
    }
    let rank = pairs.values().map(LoraPair::rank).max().unwrap_or(0);
    let info = AdapterInfo {
        name: path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: path.to_path_buf(),
        sha256: sha256_file(path)?,
        format: "gguf".into(),
        alpha,
        scale: scale_of(alpha, rank),
        ..AdapterInfo::default()
    };
    let mut adapter = LoraAdapter::new(info, pairs, RowOrder::LlamaCpp);
    adapter.architecture = text("general.architecture");
    Ok(adapter)
}

/// llama.cpp's scale of a factor pair of rank `rank`: alpha / rank, or 1 when alpha is 0.
fn scale_of(alpha: f64, rank: usize) -> f64 {
    if alpha == 0.0 {
        1.0
    } else {
        alpha / rank as f64
    }
}

/// Writes `adapter` as a llama.cpp GGUF adapter for a base of architecture
/// `arch` and shape `hp` (f32 factors; llama's q/k `B` rows permuted). Every
/// tensor must share one scale; `adapter.lora.alpha` is written as scale ×
/// rank so that llama.cpp's alpha / rank gives it back (rsLoRA included).
pub fn write(adapter: &LoraAdapter, arch: &str, hp: &Hparams, out: &Path) -> Result<()> {
    let scale = adapter.pairs.values().next().map(|p| p.scale).unwrap_or(1.0);
    let rank = adapter.pairs.values().next().map(|p| p.a.dims()[0]).unwrap_or(1);
    if adapter.pairs.values().any(|p| p.scale != scale || p.a.dims()[0] != rank) {
        anyhow::bail!(
            "the adapter's tensors have different ranks or scales; one adapter.lora.alpha cannot express them"
        );
    }
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, p) in &adapter.pairs {
        let b = adapter.b_in(name, p, hp, RowOrder::LlamaCpp)?;
        tensors.push((format!("{name}.lora_a"), QTensor::quantize(&p.a, GgmlDType::F32)?));
        tensors.push((format!("{name}.lora_b"), QTensor::quantize(&b, GgmlDType::F32)?));
    }
    let s = |v: &str| gguf_file::Value::String(v.to_string());
    let metadata = [
        ("general.architecture", s(arch)),
        ("general.type", s("adapter")),
        ("general.name", s(&adapter.info.name)),
        ("adapter.type", s("lora")),
        ("adapter.lora.alpha", gguf_file::Value::F32((scale * rank as f64) as f32)),
    ];
    let md_refs: Vec<(&str, &gguf_file::Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    crate::quantize::write_gguf_atomic(out, &md_refs, &t_refs).with_context(|| format!("writing {}", out.display()))
}
