//! LoRA adapters on a base model, as fine-tunes are shipped: a PEFT folder
//! (`peft.rs`: `adapter_config.json` + `adapter_model.safetensors`, what PEFT,
//! Unsloth, axolotl and TRL write) or a llama.cpp GGUF adapter (`gguf.rs`:
//! what `convert_lora_to_gguf.py` writes). Both become one [`LoraAdapter`]:
//! low-rank factors `A` (rank × in) and `B` (out × rank) per base tensor, by
//! the base's GGUF tensor name, with the scale the format defines.
//!
//! How it is applied: merged at load. [`Adapted`] wraps the base's
//! [`WeightSource`]; each targeted tensor is dequantized to f32, `W +
//! scale·B·A` is added in f32, and the sum is held as Q8_0 (f32 under
//! `--weights f32`, the base's own type when that is f32/f16/bf16). Why
//! merged: the forward pass then runs exactly the plain model's kernels (no
//! extra matmuls per layer, so speed is the base's), and the adapter's factors
//! are dropped after load (memory: only the merged tensors' Q8_0 bytes). Why
//! Q8_0 and not the base's 4-bit type: requantising `W + ΔW` to 4 bits would
//! round away most of a small ΔW (a 4-bit step is 1/15 of a block's range);
//! Q8_0 is what openweigh's default `--weights q8_0` holds Q4_1/Q5_x tensors
//! in anyway. `openweigh merge` writes the same sums to a GGUF file.
//!
//! llama's q/k projections are stored with their rows permuted in GGUF (see
//! [`RowOrder`]); a PEFT adapter's `B` for them is permuted the same way
//! before it is added to a GGUF base (a GGUF adapter already is, and is
//! un-permuted for a safetensors base).

pub mod gguf;
pub mod peft;

use super::candle::transformer::{Family, Hparams, WeightFormat, WeightSource};
use super::weights::{reorder_qk_rows, ModelHeader, RowOrder};
use crate::error::UserError;
use anyhow::Result;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One adapted tensor's low-rank factors.
pub struct LoraPair {
    /// `A`: rank × in, f32.
    pub a: Tensor,
    /// `B`: out × rank, f32, in the adapter's [`RowOrder`].
    pub b: Tensor,
    /// ΔW = scale · B·A.
    pub scale: f64,
}

impl LoraPair {
    fn rank(&self) -> usize {
        self.a.dims().first().copied().unwrap_or(0)
    }
}

/// What `run.json` records of an adapter (`model.adapter`). The readers fill
/// in what the file says; [`LoraAdapter::new`] derives rank, targets, tensor
/// count and how it is applied from the factors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdapterInfo {
    /// Folder or file name, used in the model's label (`base + NAME`).
    pub name: String,
    pub path: PathBuf,
    /// sha256 of the GGUF file, or of `adapter_config.json` then
    /// `adapter_model.safetensors` read one after the other.
    pub sha256: String,
    /// `peft` or `gguf`.
    pub format: String,
    /// LoRA rank `r` (the largest, when tensors differ).
    pub rank: usize,
    /// `lora_alpha` (PEFT) or `adapter.lora.alpha` (GGUF; 0 means scale 1).
    pub alpha: f64,
    /// Multiplier of B·A: alpha / r, alpha / sqrt(r) with rsLoRA, or 1 (GGUF alpha 0).
    pub scale: f64,
    /// rsLoRA scaling (PEFT `use_rslora`).
    pub use_rslora: bool,
    /// Base modules adapted, by GGUF name part (`attn_q`, `ffn_up`, …), sorted.
    pub target_modules: Vec<String>,
    /// Base tensors adapted.
    pub n_tensors: usize,
    /// How it was applied.
    pub applied: String,
}

/// A LoRA adapter read from disk, not yet applied.
pub struct LoraAdapter {
    pub info: AdapterInfo,
    /// Factors by the base tensor's GGUF name (`blk.3.attn_q.weight`).
    pub pairs: BTreeMap<String, LoraPair>,
    /// Row order of the `B` factors of llama's q/k.
    pub row_order: RowOrder,
    /// The architecture the adapter names (GGUF `general.architecture`), when it names one.
    pub architecture: Option<String>,
}

/// How every adapter is applied, as recorded in `run.json`.
pub const APPLIED: &str =
    "merged at load: W + scale·B·A in f32, held as Q8_0 (f32 with --weights f32 or an f32/f16 base tensor)";

/// `reason` as the user error naming the adapter and the fix.
pub(crate) fn bad(path: &Path, reason: impl Into<String>) -> anyhow::Error {
    UserError::BadAdapter { path: path.to_path_buf(), reason: reason.into() }.into()
}

impl LoraAdapter {
    /// Reads a PEFT folder or a GGUF adapter file.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            peft::read(path)
        } else if path.is_file() {
            gguf::read(path)
        } else {
            Err(bad(path, "no such file or folder"))
        }
    }

    /// Fills in what every format derives from its factors: rank, targets, tensor count, how applied.
    pub(crate) fn new(mut info: AdapterInfo, pairs: BTreeMap<String, LoraPair>, row_order: RowOrder) -> Self {
        info.rank = pairs.values().map(LoraPair::rank).max().unwrap_or(0);
        info.n_tensors = pairs.len();
        let mut modules: Vec<String> =
            pairs.keys().map(|n| n.split('.').rev().nth(1).unwrap_or(n).to_string()).collect();
        modules.sort();
        modules.dedup();
        info.target_modules = modules;
        info.applied = APPLIED.into();
        Self { info, pairs, row_order, architecture: None }
    }

    /// Checks that the adapter fits the base model whose header is `base`,
    /// before any weights load: architecture, every targeted tensor present,
    /// B·A of its shape, ranks that agree. Errors name the tensor.
    pub fn check(&self, base: &ModelHeader) -> Result<()> {
        let path = &self.info.path;
        let hp = &base.hparams;
        if let Some(arch) = &self.architecture {
            if Family::parse(arch) != Some(hp.family) {
                return Err(bad(
                    path,
                    format!(
                        "it was made for a '{arch}' model and the base is {:?}; use the base it was trained on",
                        hp.family
                    ),
                ));
            }
        }
        for (name, p) in &self.pairs {
            let Some(shape) = base.shapes.get(name) else {
                let hint = if name == "output.weight" {
                    " (the base ties its output head to the token embedding)".to_string()
                } else {
                    format!(" (the base has {} layers)", hp.n_layer)
                };
                return Err(bad(path, format!("it adapts {name}, which the base model does not have{hint}")));
            };
            let (r_a, inp) = p.a.dims2()?;
            let (out, r_b) = p.b.dims2()?;
            if r_a != r_b {
                return Err(bad(path, format!("{name}: lora_a has rank {r_a} but lora_b has rank {r_b}")));
            }
            if shape.as_slice() != [out, inp] {
                return Err(bad(
                    path,
                    format!(
                        "{name}: B·A is {out}×{inp} but the base tensor is {}; the adapter was trained on another model",
                        shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×")
                    ),
                ));
            }
            if let Some(heads) = qk_heads(name, hp) {
                if out % (2 * heads) != 0 {
                    return Err(bad(path, format!("{name}: {out} rows do not split into {heads} heads")));
                }
            }
        }
        Ok(())
    }

    /// `w` (the base tensor `name`, f32, in `order`) plus this adapter's
    /// scale·B·A; `None` when the adapter leaves `name` alone.
    pub fn merged(&self, name: &str, w: &Tensor, hp: &Hparams, order: RowOrder) -> Result<Option<Tensor>> {
        let Some(p) = self.pairs.get(name) else { return Ok(None) };
        let delta = (self.b_in(name, p, hp, order)?.matmul(&p.a)? * p.scale)?;
        Ok(Some((w + delta.to_device(w.device())?)?))
    }

    /// `p.b` (the factor of the base tensor `name`) in row order `order`:
    /// llama's q/k rows permuted or un-permuted, any other tensor as it is.
    pub(crate) fn b_in(&self, name: &str, p: &LoraPair, hp: &Hparams, order: RowOrder) -> Result<Tensor> {
        match qk_heads(name, hp) {
            Some(heads) => reorder_qk_rows(&p.b, heads, self.row_order, order),
            None => Ok(p.b.clone()),
        }
    }
}

/// The heads whose rows llama's GGUF permutes, for `name`'s tensor.
fn qk_heads(name: &str, hp: &Hparams) -> Option<usize> {
    if hp.family != Family::Llama {
        return None;
    }
    if name.ends_with(".attn_q.weight") {
        Some(hp.n_head)
    } else if name.ends_with(".attn_k.weight") {
        Some(hp.n_kv_head)
    } else {
        None
    }
}

/// What a merge at load did, for `run.json` (`model.load.adapter`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct MergeReport {
    /// Base tensors merged with the adapter.
    pub tensors: usize,
    /// Seconds spent merging (part of the load time, never of a latency).
    pub merge_s: f64,
    /// Merged tensors per type they are held in.
    pub held_as: BTreeMap<String, usize>,
}

/// The type a merged tensor of file type `file` and `cols` columns is held in.
pub fn held_dtype(file: GgmlDType, cols: usize, format: WeightFormat) -> GgmlDType {
    match (format, file) {
        (WeightFormat::F32, _) | (_, GgmlDType::F32) => GgmlDType::F32,
        (_, GgmlDType::F16) => GgmlDType::F16,
        (_, GgmlDType::BF16) => GgmlDType::BF16,
        _ if cols.is_multiple_of(GgmlDType::Q8_0.block_size()) => GgmlDType::Q8_0,
        _ => GgmlDType::F32,
    }
}

/// A base model's weights with an adapter merged into the tensors it targets.
pub struct Adapted<'a> {
    pub inner: &'a mut dyn WeightSource,
    pub adapter: &'a LoraAdapter,
    pub hparams: &'a Hparams,
    /// Row order of the base's tensors.
    pub order: RowOrder,
    pub format: WeightFormat,
    /// The file types of the tensors merged so far, by name.
    file_types: BTreeMap<String, GgmlDType>,
    pub report: MergeReport,
}

impl<'a> Adapted<'a> {
    pub fn new(
        inner: &'a mut dyn WeightSource,
        adapter: &'a LoraAdapter,
        hparams: &'a Hparams,
        order: RowOrder,
        format: WeightFormat,
    ) -> Self {
        Self { inner, adapter, hparams, order, format, file_types: BTreeMap::new(), report: MergeReport::default() }
    }
}

impl WeightSource for Adapted<'_> {
    fn get(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        let t = self.inner.get(name, device)?;
        if !self.adapter.pairs.contains_key(name) {
            return Ok(t);
        }
        let start = Instant::now();
        let w = t.dequantize(device)?;
        let merged = self.adapter.merged(name, &w, self.hparams, self.order)?.unwrap_or(w);
        let cols = merged.dims().last().copied().unwrap_or(0);
        let dtype = held_dtype(t.dtype(), cols, self.format);
        let q = QTensor::quantize(&merged, dtype)?;
        self.file_types.insert(name.to_string(), t.dtype());
        self.report.tensors += 1;
        *self.report.held_as.entry(format!("{dtype:?}")).or_insert(0) += 1;
        self.report.merge_s += start.elapsed().as_secs_f64();
        Ok(q)
    }

    fn has(&self, name: &str) -> bool {
        self.inner.has(name)
    }

    fn file_dtype(&self, name: &str) -> Option<GgmlDType> {
        self.file_types.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(family: Family) -> Hparams {
        Hparams {
            family,
            n_layer: 1,
            n_embd: 8,
            n_head: 2,
            n_kv_head: 1,
            head_dim: 4,
            context_length: 64,
            rms_eps: 1e-5,
            rope_base: 1e4,
            rope_base_local: None,
            rope_neox: family != Family::Llama,
            sliding_window: None,
            sliding_pattern: 6,
            attn_scale: 0.5,
        }
    }

    fn adapter(pairs: Vec<(&str, Tensor, Tensor, f64)>, order: RowOrder) -> LoraAdapter {
        let info = AdapterInfo {
            name: "t".into(),
            path: "t".into(),
            format: "peft".into(),
            scale: 1.0,
            ..AdapterInfo::default()
        };
        let pairs = pairs.into_iter().map(|(n, a, b, scale)| (n.to_string(), LoraPair { a, b, scale })).collect();
        LoraAdapter::new(info, pairs, order)
    }

    fn rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2().unwrap()
    }

    /// ΔW = scale·B·A, in the base's row order: a PEFT (Hugging Face order)
    /// q delta on a GGUF llama base lands on llama.cpp's permuted rows, and
    /// the same adapter in GGUF order gives the same merged weights.
    #[test]
    fn merge_adds_scaled_product_in_the_bases_row_order() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[1f32, 0., 0., 0., 0., 0., 0., 2.]], &dev).unwrap(); // rank 1 × in 8
        let b = Tensor::arange(1f32, 9., &dev).unwrap().reshape((8, 1)).unwrap(); // out 8 × rank 1
        let w = Tensor::zeros((8, 8), candle_core::DType::F32, &dev).unwrap();
        let hf = adapter(vec![("blk.0.attn_q.weight", a.clone(), b.clone(), 0.5)], RowOrder::HuggingFace);
        let hpl = hp(Family::Llama);
        let m = hf.merged("blk.0.attn_q.weight", &w, &hpl, RowOrder::LlamaCpp).unwrap().unwrap();
        // B's rows 1..8 permuted per head of 4 rows: (h, s, i) → (h, i, s): 1,3,2,4 | 5,7,6,8.
        let first_col: Vec<f32> = rows(&m).iter().map(|r| r[0]).collect();
        assert_eq!(first_col, [0.5, 1.5, 1.0, 2.0, 2.5, 3.5, 3.0, 4.0]);
        assert_eq!(rows(&m)[0][7], 1.0); // 0.5 · 1 · 2
        let gg_b = reorder_qk_rows(&b, 2, RowOrder::HuggingFace, RowOrder::LlamaCpp).unwrap();
        let gg = adapter(vec![("blk.0.attn_q.weight", a.clone(), gg_b, 0.5)], RowOrder::LlamaCpp);
        assert_eq!(rows(&gg.merged("blk.0.attn_q.weight", &w, &hpl, RowOrder::LlamaCpp).unwrap().unwrap()), rows(&m));
        // Same base order (or a NEOX family): B's rows as they are; v is never permuted.
        let q = hf.merged("blk.0.attn_q.weight", &w, &hp(Family::Qwen2), RowOrder::LlamaCpp).unwrap().unwrap();
        assert_eq!(rows(&q).iter().map(|r| r[0]).collect::<Vec<_>>(), [0.5, 1., 1.5, 2., 2.5, 3., 3.5, 4.]);
        assert!(hf.merged("blk.0.attn_v.weight", &w, &hpl, RowOrder::LlamaCpp).unwrap().is_none());
    }

    #[test]
    fn check_names_the_tensor_that_does_not_fit() {
        let dev = Device::Cpu;
        let z = |r, c| Tensor::zeros((r, c), candle_core::DType::F32, &dev).unwrap();
        let header = |shapes: Vec<(&str, Vec<usize>)>| ModelHeader {
            hparams: hp(Family::Llama),
            shapes: shapes.into_iter().map(|(n, s)| (n.to_string(), s)).collect(),
            row_order: RowOrder::LlamaCpp,
        };
        let base = header(vec![("blk.0.attn_v.weight", vec![4, 8])]);
        let ok = adapter(vec![("blk.0.attn_v.weight", z(2, 8), z(4, 2), 1.0)], RowOrder::HuggingFace);
        ok.check(&base).unwrap();
        assert_eq!(ok.info.target_modules, ["attn_v"]);
        assert_eq!((ok.info.rank, ok.info.n_tensors), (2, 1));
        for (pairs, says) in [
            (vec![("blk.0.attn_v.weight", z(2, 8), z(4, 3), 1.0)], "lora_a has rank 2 but lora_b has rank 3"),
            (
                vec![("blk.0.attn_v.weight", z(2, 6), z(4, 2), 1.0)],
                "blk.0.attn_v.weight: B·A is 4×6 but the base tensor is 4×8",
            ),
            (
                vec![("blk.7.attn_v.weight", z(2, 8), z(4, 2), 1.0)],
                "adapts blk.7.attn_v.weight, which the base model does not have (the base has 1 layers)",
            ),
            (vec![("output.weight", z(2, 8), z(4, 2), 1.0)], "ties its output head"),
        ] {
            let e = adapter(pairs, RowOrder::HuggingFace).check(&base).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("not a usable LoRA adapter"), "{e}");
        }
        let mut gemma = adapter(vec![("blk.0.attn_v.weight", z(2, 8), z(4, 2), 1.0)], RowOrder::LlamaCpp);
        gemma.architecture = Some("gemma3".into());
        let e = gemma.check(&base).unwrap_err().to_string();
        assert!(e.contains("made for a 'gemma3' model and the base is Llama"), "{e}");
    }

    #[test]
    fn merged_tensors_keep_8_bits_or_more() {
        use GgmlDType::*;
        assert_eq!(held_dtype(Q4_1, 576, WeightFormat::Q8_0), Q8_0);
        assert_eq!(held_dtype(Q4K, 896, WeightFormat::Native), Q8_0);
        assert_eq!(held_dtype(Q4_1, 576, WeightFormat::F32), F32);
        assert_eq!(held_dtype(F16, 576, WeightFormat::Q8_0), F16);
        assert_eq!(held_dtype(Q8_0, 100, WeightFormat::Q8_0), F32);
    }
}
