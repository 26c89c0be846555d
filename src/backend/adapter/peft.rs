//! PEFT LoRA folders: `adapter_config.json` (`r`, `lora_alpha`,
//! `target_modules`, `use_rslora`, …) and `adapter_model.safetensors` with
//! `base_model.model.<module>.lora_A.weight` (rank × in) and `.lora_B.weight`
//! (out × rank) per adapted Linear layer. What openweigh does not apply is
//! refused by name rather than silently skipped: DoRA, `fan_in_fan_out`
//! (GPT-2's Conv1D layers), trained biases, `modules_to_save`, per-module
//! rank or alpha patterns, embedding LoRA, and pickled `adapter_model.bin`.

use super::{bad, AdapterInfo, LoraAdapter, LoraPair};
use crate::assets::sha256_files;
use crate::backend::candle::transformer::Family;
use crate::backend::weights::{gguf_tensor_name, one_line, RowOrder};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

pub const CONFIG: &str = "adapter_config.json";
pub const WEIGHTS: &str = "adapter_model.safetensors";

/// The adapter's hyper-parameters, checked.
struct Config {
    r: usize,
    alpha: f64,
    use_rslora: bool,
}

fn read_config(dir: &Path) -> Result<Config> {
    let path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let hint =
            if dir.join("config.json").is_file() { "; this looks like a model folder: pass it to --model" } else { "" };
        bad(dir, format!("{CONFIG}: {e}{hint}"))
    })?;
    let cfg: Value = serde_json::from_str(&text).map_err(|e| bad(&path, format!("{CONFIG}: {e}")))?;
    let field = |k: &str| cfg.get(k).filter(|v| !v.is_null());
    let refuse = |what: String| Err(bad(&path, what));
    if let Some(t) = field("peft_type").and_then(Value::as_str).filter(|t| *t != "LORA") {
        return refuse(format!("peft_type is {t}; only LORA adapters are applied"));
    }
    if field("use_dora").and_then(Value::as_bool) == Some(true) {
        return refuse("use_dora: true (DoRA's magnitude vectors are not applied); merge it with PEFT's merge_and_unload() and pass the merged folder to --model".into());
    }
    if field("fan_in_fan_out").and_then(Value::as_bool) == Some(true) {
        return refuse(
            "fan_in_fan_out: true is for GPT-2's Conv1D layers; llama, qwen2 and gemma3 use Linear layers".into(),
        );
    }
    if let Some(b) = field("bias").and_then(Value::as_str).filter(|b| *b != "none") {
        return refuse(format!("bias: \"{b}\" (trained biases are not applied); train with bias: \"none\""));
    }
    if let Some(m) = field("modules_to_save").and_then(Value::as_array).filter(|m| !m.is_empty()) {
        let names: Vec<&str> = m.iter().filter_map(Value::as_str).collect();
        return refuse(format!(
            "modules_to_save [{}] replaces whole layers, which openweigh does not apply; merge with PEFT's merge_and_unload() and pass the merged folder to --model",
            names.join(", ")
        ));
    }
    for k in ["rank_pattern", "alpha_pattern"] {
        if field(k).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
            return refuse(format!("{k} sets per-module values, which openweigh does not apply yet"));
        }
    }
    let r = match field("r").and_then(Value::as_u64) {
        Some(r) if r > 0 => r as usize,
        _ => return refuse("r (the LoRA rank) is missing or not a positive integer".into()),
    };
    let alpha = match field("lora_alpha") {
        None => 8.0, // PEFT's default
        Some(v) => match v.as_f64() {
            Some(a) if a.is_finite() => a,
            _ => return refuse(format!("lora_alpha is {v}, not a number")),
        },
    };
    Ok(Config { r, alpha, use_rslora: field("use_rslora").and_then(Value::as_bool).unwrap_or(false) })
}

/// Reads a PEFT folder.
pub fn read(dir: &Path) -> Result<LoraAdapter> {
    let cfg = read_config(dir)?;
    let weights = dir.join(WEIGHTS);
    if !weights.is_file() {
        let why = if dir.join("adapter_model.bin").is_file() {
            "it has adapter_model.bin, a PyTorch pickle, which openweigh does not read (unpickling can run code); save it with save_pretrained(dir, safe_serialization=True)"
        } else {
            "no adapter_model.safetensors"
        };
        return Err(bad(dir, why));
    }
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|e| bad(&weights, one_line(&e)))?;
    let mut a_of: BTreeMap<String, (String, Tensor)> = BTreeMap::new();
    let mut b_of: BTreeMap<String, (String, Tensor)> = BTreeMap::new();
    for (name, t) in tensors {
        let module = name.replace(".default.", ".");
        let (module, slot) = if let Some(m) = module.strip_suffix(".lora_A.weight") {
            (m.to_string(), &mut a_of)
        } else if let Some(m) = module.strip_suffix(".lora_B.weight") {
            (m.to_string(), &mut b_of)
        } else if name.contains("lora_embedding") {
            return Err(bad(&weights, format!("{name}: LoRA on the embedding table is not applied yet")));
        } else {
            return Err(bad(&weights, format!("{name} is not a LoRA factor (…lora_A.weight / …lora_B.weight)")));
        };
        // Only Linear layers carry LoRA factors, and their names do not depend
        // on the family (norms are where the families' names differ).
        let base = gguf_tensor_name(&format!("{module}.weight"), Family::Llama).ok_or_else(|| {
            bad(
                &weights,
                format!(
                    "{name}: module {module} is not a layer openweigh knows (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head)"
                ),
            )
        })?;
        if t.rank() != 2 {
            return Err(bad(&weights, format!("{name} has shape {:?}, not a matrix", t.dims())));
        }
        slot.insert(base, (name, t.to_dtype(DType::F32)?));
    }
    let mut pairs = BTreeMap::new();
    for (base, (a_name, a)) in a_of {
        let Some((b_name, b)) = b_of.remove(&base) else {
            return Err(bad(&weights, format!("{a_name} has no matching lora_B")));
        };
        for (n, rank) in [(&a_name, a.dims()[0]), (&b_name, b.dims()[1])] {
            if rank != cfg.r {
                return Err(bad(&weights, format!("{n} has rank {rank} but {CONFIG} says r = {}", cfg.r)));
            }
        }
        pairs.insert(base, LoraPair { a, b, scale: 0.0 });
    }
    if let Some((b_name, _)) = b_of.into_values().next() {
        return Err(bad(&weights, format!("{b_name} has no matching lora_A")));
    }
    if pairs.is_empty() {
        return Err(bad(&weights, "no lora_A/lora_B tensors"));
    }
    let scale = if cfg.use_rslora { cfg.alpha / (cfg.r as f64).sqrt() } else { cfg.alpha / cfg.r as f64 };
    for p in pairs.values_mut() {
        p.scale = scale;
    }
    let (sha256, _) = sha256_files(&[dir.join(CONFIG), weights])?;
    let info = AdapterInfo {
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        path: dir.to_path_buf(),
        sha256,
        format: "peft".into(),
        alpha: cfg.alpha,
        scale,
        use_rslora: cfg.use_rslora,
        ..AdapterInfo::default()
    };
    Ok(LoraAdapter::new(info, pairs, RowOrder::HuggingFace))
}
