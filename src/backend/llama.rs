//! Our own forward pass for GGUF llama-architecture models (SmolLM2, Llama),
//! built from candle's public parts. We need two things that
//! `candle_transformers::models::quantized_llama` does not give: logits for
//! every position of a chunk (log-likelihood scoring) and a KV cache kept
//! apart from the weights, so that one evaluated context can be snapshotted
//! (a cheap clone of `Arc`-backed tensors) and extended once per choice.
//!
//! Weights may be repacked at load (see [`WeightFormat`]): candle's Q4_1 dot
//! product is a scalar fallback, its Q8_0 one is SIMD, so Q4_1 tensors are
//! dequantized and requantized to Q8_0 by default. What ran is reported in
//! [`LoadReport`] and written into `run.json`.

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::Embedding;
use candle_transformers::quantized_nn::RmsNorm;
use serde::Serialize;
use std::collections::BTreeMap;

/// How quantized weights are held in memory for the matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// Keep every tensor in the file's own quantization.
    Native,
    /// Requantize Q4_1/Q5_0/Q5_1 tensors to Q8_0 (SIMD kernels in candle;
    /// 8-bit blocks of the same size hold the 4/5-bit values with little error).
    #[value(name = "q8_0")]
    Q8_0,
    /// Dequantize every matmul weight to f32: the file's exact weights and f32
    /// activations (a reference for checking repacks; slow to decode).
    F32,
}

/// What the loader did, for `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub weight_format: WeightFormat,
    /// Tensor count per quantization type in the file.
    pub file_tensor_types: BTreeMap<String, usize>,
    /// Tensor count per quantization type as used by the matmuls.
    pub runtime_tensor_types: BTreeMap<String, usize>,
    /// Bytes of quantized matmul weights in memory after any repack.
    pub runtime_weight_byte: usize,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_vocab: usize,
    pub context_length: usize,
}

struct Layer {
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// Per-layer key/value tensors of the positions evaluated so far.
/// Cloning is cheap (tensors are `Arc`s) and a clone is an independent
/// snapshot: extending one never changes another, because every step builds
/// new tensors with `Tensor::cat` instead of writing in place.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub struct Llama {
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    max_seq_len: usize,
    device: Device,
    pub report: LoadReport,
}

fn md_usize(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    let v = ct.metadata.get(key).with_context(|| format!("GGUF metadata has no {key}"))?;
    Ok(v.to_u32().map(|x| x as usize).or_else(|_| v.to_u64().map(|x| x as usize))?)
}

fn dtype_name(d: GgmlDType) -> String {
    format!("{d:?}")
}

impl Llama {
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        device: &Device,
        format: WeightFormat,
    ) -> Result<Self> {
        let arch =
            ct.metadata.get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        if arch != "llama" {
            bail!("architecture '{arch}' is not supported by the llama backend");
        }
        let n_head = md_usize(ct, "llama.attention.head_count")?;
        let n_kv_head = md_usize(ct, "llama.attention.head_count_kv")?;
        let n_layer = md_usize(ct, "llama.block_count")?;
        let n_embd = md_usize(ct, "llama.embedding_length")?;
        let context_length = md_usize(ct, "llama.context_length").unwrap_or(4096);
        let rope_dim = md_usize(ct, "llama.rope.dimension_count").unwrap_or(n_embd / n_head);
        let eps =
            ct.metadata.get("llama.attention.layer_norm_rms_epsilon").and_then(|v| v.to_f32().ok()).unwrap_or(1e-5)
                as f64;
        let freq_base = ct.metadata.get("llama.rope.freq_base").and_then(|v| v.to_f32().ok()).unwrap_or(10000.0);

        let mut file_types = BTreeMap::new();
        let mut runtime_types = BTreeMap::new();
        let mut runtime_bytes = 0usize;
        let mut load = |name: &str, matmul: bool| -> Result<QTensor> {
            let t = ct.tensor(reader, name, device).with_context(|| format!("reading tensor {name}"))?;
            if !matmul {
                return Ok(t);
            }
            *file_types.entry(dtype_name(t.dtype())).or_insert(0) += 1;
            // Types whose CPU dot product in candle is a scalar fallback (Q4_0 has a SIMD one).
            let slow = matches!(t.dtype(), GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1);
            let t = match format {
                WeightFormat::Q8_0 if slow => QTensor::quantize(&t.dequantize(device)?, GgmlDType::Q8_0)?,
                WeightFormat::F32 if t.dtype() != GgmlDType::F32 => {
                    QTensor::quantize(&t.dequantize(device)?, GgmlDType::F32)?
                }
                _ => t,
            };
            *runtime_types.entry(dtype_name(t.dtype())).or_insert(0) += 1;
            runtime_bytes += t.storage_size_in_bytes();
            Ok(t)
        };

        let embd_q = load("token_embd.weight", false)?;
        let embed = Embedding::new(embd_q.dequantize(device)?, n_embd);
        let n_vocab = embd_q.shape().dims()[0];
        let norm = RmsNorm::from_qtensor(load("output_norm.weight", false)?, eps)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            load("output.weight", true)?
        } else {
            // Tied embeddings: the output head is the embedding matrix.
            drop(embd_q);
            load("token_embd.weight", true)?
        };
        let output = QMatMul::from_qtensor(output)?;
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = format!("blk.{i}");
            let mm = |t: QTensor| QMatMul::from_qtensor(t);
            layers.push(Layer {
                wq: mm(load(&format!("{p}.attn_q.weight"), true)?)?,
                wk: mm(load(&format!("{p}.attn_k.weight"), true)?)?,
                wv: mm(load(&format!("{p}.attn_v.weight"), true)?)?,
                wo: mm(load(&format!("{p}.attn_output.weight"), true)?)?,
                attn_norm: RmsNorm::from_qtensor(load(&format!("{p}.attn_norm.weight"), false)?, eps)?,
                ffn_norm: RmsNorm::from_qtensor(load(&format!("{p}.ffn_norm.weight"), false)?, eps)?,
                gate: mm(load(&format!("{p}.ffn_gate.weight"), true)?)?,
                up: mm(load(&format!("{p}.ffn_up.weight"), true)?)?,
                down: mm(load(&format!("{p}.ffn_down.weight"), true)?)?,
            });
        }
        let head_dim = n_embd / n_head;
        let max_seq_len = context_length;
        let theta: Vec<f32> =
            (0..rope_dim).step_by(2).map(|i| 1f32 / freq_base.powf(i as f32 / rope_dim as f32)).collect();
        let theta = Tensor::new(theta.as_slice(), device)?;
        let idx = Tensor::arange(0, max_seq_len as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_seq_len, 1))?
            .matmul(&theta.reshape((1, ()))?)?;
        Ok(Self {
            embed,
            layers,
            norm,
            output,
            cos: idx.cos()?,
            sin: idx.sin()?,
            n_head,
            n_kv_head,
            head_dim,
            max_seq_len,
            device: device.clone(),
            report: LoadReport {
                weight_format: format,
                file_tensor_types: file_types,
                runtime_tensor_types: runtime_types,
                runtime_weight_byte: runtime_bytes,
                n_layer,
                n_embd,
                n_vocab,
                context_length,
            },
        })
    }

    /// Maximum positions (context + generated) this model accepts.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    pub fn empty_cache(&self) -> KvCache {
        KvCache { layers: vec![None; self.layers.len()], len: 0 }
    }

    /// Runs `tokens` after the positions already in `cache` and extends it.
    /// Returns log-probabilities (f32, `[n, vocab]`) for the last
    /// `n_logits` positions of the chunk (0 means none: prefill only).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, n_logits: usize) -> Result<Option<Tensor>> {
        let seq_len = tokens.len();
        if seq_len == 0 {
            bail!("empty chunk");
        }
        let pos = cache.len;
        if pos + seq_len > self.max_seq_len {
            bail!("sequence of {} tokens exceeds the model's context of {}", pos + seq_len, self.max_seq_len);
        }
        let x = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let mask = if seq_len > 1 {
            let m = candle_transformers::utils::build_causal_mask(seq_len, pos, &self.device)?;
            let neg = Tensor::new(f32::NEG_INFINITY, &self.device)?.broadcast_as((seq_len, pos + seq_len))?;
            let zero = Tensor::zeros((seq_len, pos + seq_len), DType::F32, &self.device)?;
            Some(m.where_cond(&neg, &zero)?)
        } else {
            None
        };
        let cos = self.cos.narrow(0, pos, seq_len)?;
        let sin = self.sin.narrow(0, pos, seq_len)?;
        let mut h = self.embed.forward(&x)?;
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let residual = h.clone();
            let xs = layer.attn_norm.forward(&h)?;
            let q = layer
                .wq
                .forward(&xs)?
                .reshape((1, seq_len, self.n_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let k = layer
                .wk
                .forward(&xs)?
                .reshape((1, seq_len, self.n_kv_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            let v = layer
                .wv
                .forward(&xs)?
                .reshape((1, seq_len, self.n_kv_head, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?;
            // GGUF llama tensors use the interleaved ("normal") RoPE layout.
            let q = candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?;
            let k = candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?;
            let (k, v) = match kv.as_ref() {
                None => (k, v),
                Some((kc, vc)) => (Tensor::cat(&[kc, &k], 2)?, Tensor::cat(&[vc, &v], 2)?),
            };
            *kv = Some((k.clone(), v.clone()));
            let rep = self.n_head / self.n_kv_head;
            let k = candle_transformers::utils::repeat_kv(k, rep)?;
            let v = candle_transformers::utils::repeat_kv(v, rep)?;
            let att = (q.matmul(&k.t()?)? / (self.head_dim as f64).sqrt())?;
            let att = match &mask {
                None => att,
                Some(m) => att.broadcast_add(m)?,
            };
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att.matmul(&v.contiguous()?)?;
            let y = y.transpose(1, 2)?.reshape((1, seq_len, self.n_head * self.head_dim))?;
            let h2 = (layer.wo.forward(&y)? + residual)?;
            let residual = h2.clone();
            let xs = layer.ffn_norm.forward(&h2)?;
            let g = candle_nn::ops::silu(&layer.gate.forward(&xs)?)?;
            let u = layer.up.forward(&xs)?;
            h = (layer.down.forward(&(g * u)?)? + residual)?;
        }
        cache.len += seq_len;
        if n_logits == 0 {
            return Ok(None);
        }
        let n = n_logits.min(seq_len);
        let h = h.narrow(1, seq_len - n, n)?;
        let h = self.norm.forward(&h)?;
        let logits = self.output.forward(&h)?.squeeze(0)?.to_dtype(DType::F32)?;
        Ok(Some(candle_nn::ops::log_softmax(&logits, D::Minus1)?))
    }
}
