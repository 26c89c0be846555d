//! Where a model's weights and shape come from: a GGUF file (tensors under
//! llama.cpp's names, hyper-parameters in its metadata) or a Hugging Face
//! safetensors folder (`config.json`, `*.safetensors`). Both are presented to
//! the forward pass under GGUF tensor names, so one [`Transformer`] serves
//! both. The safetensors side undoes what llama.cpp's converter does: it maps
//! names, keeps the NEOX RoPE layout (llama.cpp permutes llama's q/k weights
//! for its interleaved layout instead) and adds Gemma's `+1` to norm weights.
//!
//! [`Transformer`]: super::candle::transformer::Transformer

use super::candle::transformer::{Family, Hparams, WeightSource};
use crate::error::UserError;
use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};

/// A GGUF metadata value by key.
pub(crate) fn md<'a>(ct: &'a gguf_file::Content, key: &str) -> Option<&'a gguf_file::Value> {
    ct.metadata.get(key)
}

fn md_usize(ct: &gguf_file::Content, key: &str) -> Option<usize> {
    md(ct, key).and_then(|v| v.to_u32().map(|x| x as usize).or_else(|_| v.to_u64().map(|x| x as usize)).ok())
}

fn md_f32(ct: &gguf_file::Content, key: &str) -> Option<f32> {
    md(ct, key).and_then(|v| v.to_f32().ok())
}

/// The architecture named in GGUF metadata.
pub fn gguf_architecture(ct: &gguf_file::Content) -> String {
    md(ct, "general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default()
}

impl Hparams {
    /// Reads `{arch}.*` metadata of a GGUF file.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let arch = gguf_architecture(ct);
        let family = Family::parse(&arch)
            .with_context(|| format!("architecture '{arch}' is not supported (supported: llama, qwen2, gemma3)"))?;
        let key = |k: &str| format!("{arch}.{k}");
        let req = |k: &str| md_usize(ct, &key(k)).with_context(|| format!("GGUF metadata has no {}", key(k)));
        let n_head = positive(req("attention.head_count")?, &key("attention.head_count"))?;
        let n_embd = req("embedding_length")?;
        let head_dim = md_usize(ct, &key("attention.key_length")).unwrap_or(n_embd / n_head);
        let gemma = family == Family::Gemma3;
        Hparams {
            family,
            n_layer: req("block_count")?,
            n_embd,
            n_head,
            n_kv_head: md_usize(ct, &key("attention.head_count_kv")).unwrap_or(n_head),
            head_dim,
            context_length: md_usize(ct, &key("context_length")).unwrap_or(4096),
            rms_eps: md_f32(ct, &key("attention.layer_norm_rms_epsilon")).unwrap_or(if gemma { 1e-6 } else { 1e-5 })
                as f64,
            rope_base: md_f32(ct, &key("rope.freq_base")).unwrap_or(if gemma { 1e6 } else { 1e4 }),
            rope_base_local: gemma.then(|| md_f32(ct, &key("rope.local_freq_base")).unwrap_or(1e4)),
            rope_neox: family != Family::Llama,
            sliding_window: if gemma { md_usize(ct, &key("attention.sliding_window")) } else { None },
            sliding_pattern: md_usize(ct, &key("attention.sliding_window_type")).unwrap_or(6),
            attn_scale: 1.0 / (head_dim as f64).sqrt(),
        }
        .checked("GGUF metadata")
    }

    /// Reads a Hugging Face `config.json` (a `text_config` inside is used when present).
    pub fn from_hf_config(cfg: &Value) -> Result<Self> {
        let cfg = cfg.get("text_config").unwrap_or(cfg);
        let model_type = cfg.get("model_type").and_then(Value::as_str).unwrap_or_default();
        let family = Family::parse(model_type).with_context(|| {
            format!("config.json model_type '{model_type}' is not supported (supported: llama, qwen2, gemma3_text)")
        })?;
        let int = |k: &str| cfg.get(k).and_then(Value::as_u64).map(|x| x as usize);
        let float = |k: &str| cfg.get(k).and_then(Value::as_f64);
        let req = |k: &str| int(k).with_context(|| format!("config.json has no {k}"));
        if family == Family::Llama && cfg.get("rope_scaling").is_some_and(|v| !v.is_null()) {
            bail!("config.json sets rope_scaling, which openweigh does not implement yet (Llama 3.1+ models)");
        }
        let n_head = positive(req("num_attention_heads")?, "num_attention_heads")?;
        let n_embd = req("hidden_size")?;
        let head_dim = int("head_dim").unwrap_or(n_embd / n_head);
        let gemma = family == Family::Gemma3;
        let scalar = float("query_pre_attn_scalar").unwrap_or(head_dim as f64);
        Hparams {
            family,
            n_layer: req("num_hidden_layers")?,
            n_embd,
            n_head,
            n_kv_head: int("num_key_value_heads").unwrap_or(n_head),
            head_dim,
            context_length: int("max_position_embeddings").unwrap_or(4096),
            rms_eps: float("rms_norm_eps").unwrap_or(1e-6),
            rope_base: float("rope_theta").unwrap_or(1e4) as f32,
            rope_base_local: gemma.then(|| float("rope_local_base_freq").unwrap_or(1e4) as f32),
            rope_neox: true,
            sliding_window: if gemma { int("sliding_window") } else { None },
            sliding_pattern: int("sliding_window_pattern").unwrap_or(6),
            attn_scale: if gemma { 1.0 / scalar.sqrt() } else { 1.0 / (head_dim as f64).sqrt() },
        }
        .checked("config.json")
    }

    /// Refuses shapes the forward pass cannot run (zero sizes, heads that do
    /// not divide into key/value groups) instead of dividing by zero later.
    /// `origin` prefixes the field names in the message.
    fn checked(self, origin: &str) -> Result<Self> {
        for (field, v) in [
            ("n_layer", self.n_layer),
            ("n_embd", self.n_embd),
            ("n_kv_head", self.n_kv_head),
            ("head_dim", self.head_dim),
            ("context_length", self.context_length),
            ("sliding_pattern", self.sliding_pattern),
        ] {
            positive(v, &format!("{origin}: {field}"))?;
        }
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            bail!(
                "{origin}: {} attention heads do not split into groups of {} key/value heads; the model's metadata is damaged",
                self.n_head,
                self.n_kv_head
            );
        }
        if self.sliding_window == Some(0) {
            bail!("{origin}: sliding_window is 0; the model's metadata is damaged");
        }
        Ok(self)
    }
}

/// `v` when above 0, else an error naming the field.
fn positive(v: usize, field: &str) -> Result<usize> {
    if v == 0 {
        bail!("{field} is 0; the model's metadata is damaged");
    }
    Ok(v)
}

/// The hyper-parameters of the model at `path` (a GGUF file or a safetensors
/// folder) from its header or `config.json`, without reading any tensor.
pub fn peek_hparams(path: &Path) -> Result<Hparams> {
    if path.is_dir() {
        let folder = HfFolder::open(path)?;
        return Hparams::from_hf_config(&folder.config).map_err(|e| bad_model(path, e));
    }
    let (_, ct) = open_gguf(path)?;
    Hparams::from_gguf(&ct).map_err(|e| bad_model(path, e))
}

/// `e` as the user error that names the model file and the fix.
pub fn bad_model(path: &Path, e: impl Into<anyhow::Error>) -> anyhow::Error {
    UserError::BadModel { path: path.to_path_buf(), reason: format!("{:#}", e.into()) }.into()
}

/// A candle error's message without the backtrace candle appends when
/// `RUST_BACKTRACE` is set: user errors are one line.
pub fn one_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Opens a GGUF file and reads its header (metadata and tensor table),
/// checked by [`check_tensor_table`].
pub fn open_gguf(path: &Path) -> Result<(File, gguf_file::Content)> {
    let mut file = File::open(path).map_err(|e| bad_model(path, e))?;
    let ct = gguf_file::Content::read(&mut file)
        .map_err(|e| bad_model(path, anyhow::anyhow!("header: {}", one_line(&e))))?;
    let file_len = file.metadata().map_err(|e| bad_model(path, e))?.len();
    check_tensor_table(&ct, file_len).map_err(|e| bad_model(path, anyhow::anyhow!(e)))?;
    Ok((file, ct))
}

/// Refuses a tensor with a zero or impossible shape (a hostile header's
/// dimensions can overflow any product; candle reads a zero-size tensor
/// through a misaligned pointer) or whose data runs past the end of the file
/// (a truncated download), before any tensor is read.
pub fn check_tensor_table(ct: &gguf_file::Content, file_len: u64) -> std::result::Result<(), String> {
    let mut data_end = 0u64;
    for (name, t) in &ct.tensor_infos {
        let dims = t.shape.dims();
        let end = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64).filter(|_| d > 0))
            .and_then(|n| n.checked_mul(t.ggml_dtype.type_size() as u64))
            .map(|b| b / t.ggml_dtype.block_size() as u64)
            .and_then(|b| b.checked_add(ct.tensor_data_offset)?.checked_add(t.offset));
        let Some(end) = end else {
            return Err(format!("tensor {name} has an impossible shape {dims:?}"));
        };
        data_end = data_end.max(end);
    }
    if data_end > file_len {
        return Err(format!("truncated: tensors need {data_end} bytes, file has {file_len}"));
    }
    Ok(())
}

/// Tensors of an open GGUF file.
pub struct GgufSource<'a> {
    pub content: &'a gguf_file::Content,
    pub file: &'a mut File,
}

impl WeightSource for GgufSource<'_> {
    fn get(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        self.content.tensor(self.file, name, device).with_context(|| format!("reading tensor {name}"))
    }
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}

/// The Hugging Face name of a GGUF tensor name, per family.
pub fn hf_tensor_name(gguf: &str, family: Family) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (part, kind) = rest.rsplit_once('.')?;
    let gemma = family == Family::Gemma3;
    let hf = match part {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "attn_norm" => "input_layernorm",
        "post_attention_norm" => "post_attention_layernorm",
        "ffn_norm" if gemma => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}.{kind}"))
}

/// The GGUF name of a Hugging Face tensor name (the inverse of
/// [`hf_tensor_name`]): `…layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`.
/// Any prefix before `layers.` is ignored (PEFT's `base_model.model.`,
/// multimodal wrappers' `language_model.`).
pub fn gguf_tensor_name(hf: &str, family: Family) -> Option<String> {
    for fixed in ["token_embd.weight", "output_norm.weight", "output.weight"] {
        if hf_tensor_name(fixed, family).is_some_and(|h| hf.ends_with(&h)) {
            return Some(fixed.to_string());
        }
    }
    let rest = &hf[hf.find("layers.")? + "layers.".len()..];
    let (layer, module) = rest.split_once('.')?;
    layer.parse::<usize>().ok()?;
    let (_, kind) = module.rsplit_once('.')?;
    const PARTS: [&str; 13] = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "attn_q_norm",
        "attn_k_norm",
        "attn_norm",
        // Before post_attention_norm: llama's post_attention_layernorm is its ffn_norm.
        "ffn_norm",
        "post_attention_norm",
        "post_ffw_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    PARTS
        .iter()
        .map(|part| format!("blk.{layer}.{part}.{kind}"))
        .find(|g| hf_tensor_name(g, family).is_some_and(|h| h == format!("model.layers.{layer}.{module}")))
}

/// Row order of llama's q/k projections. Hugging Face keeps the original
/// ("rotate half") order; llama.cpp's converter permutes the rows so that
/// RoPE's pairs are adjacent (its interleaved layout). A weight, or a LoRA
/// `B` factor, moving between a GGUF and a safetensors model is permuted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// Safetensors folders and PEFT adapters.
    HuggingFace,
    /// GGUF models and llama.cpp GGUF adapters.
    LlamaCpp,
}

/// `w` (rows × cols, rows = `n_head` × head_dim) from `from` row order to
/// `to`, as llama.cpp's `convert_hf_to_gguf.py` permutes llama's q/k
/// (`reshape(n_head, 2, half, cols).swapaxes(1, 2)`) or undoes it.
pub fn reorder_qk_rows(w: &Tensor, n_head: usize, from: RowOrder, to: RowOrder) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let half = rows / n_head / 2;
    let t = match (from, to) {
        (a, b) if a == b => return Ok(w.clone()),
        (RowOrder::HuggingFace, _) => w.reshape((n_head, 2, half, cols))?.transpose(1, 2)?,
        (RowOrder::LlamaCpp, _) => w.reshape((n_head, half, 2, cols))?.transpose(1, 2)?,
    };
    Ok(t.contiguous()?.reshape((rows, cols))?)
}

/// What a model's header says, without reading any tensor: its shape and
/// the shape of every tensor (by GGUF name), and its q/k row order. Enough
/// to check that an adapter fits it before any weights load.
pub struct ModelHeader {
    pub hparams: Hparams,
    /// Tensor shapes (rows, cols for a matrix), by GGUF name.
    pub shapes: std::collections::BTreeMap<String, Vec<usize>>,
    pub row_order: RowOrder,
}

impl ModelHeader {
    pub fn read(path: &Path) -> Result<Self> {
        if path.is_dir() {
            let folder = HfFolder::open(path)?;
            let hparams = Hparams::from_hf_config(&folder.config).map_err(|e| bad_model(path, e))?;
            let st = SafetensorsSource::open(&folder, hparams.family).map_err(|e| bad_model(path, e))?;
            return Ok(st.header(hparams));
        }
        let (_, ct) = open_gguf(path)?;
        let hparams = Hparams::from_gguf(&ct).map_err(|e| bad_model(path, e))?;
        Ok(Self::of_gguf(&ct, hparams))
    }

    /// The header of an open GGUF file whose metadata gave `hparams`.
    pub fn of_gguf(ct: &gguf_file::Content, hparams: Hparams) -> Self {
        let shapes = ct.tensor_infos.iter().map(|(n, t)| (n.clone(), t.shape.dims().to_vec())).collect();
        Self { hparams, shapes, row_order: RowOrder::LlamaCpp }
    }
}

/// Tensors of a safetensors model folder, read through memory maps and
/// converted to f32.
pub struct SafetensorsSource {
    st: MmapedSafetensors,
    family: Family,
}

/// A safetensors model folder's files, checked before anything is loaded.
pub struct HfFolder {
    pub config: Value,
    pub safetensors: Vec<PathBuf>,
}

impl HfFolder {
    pub fn open(dir: &Path) -> Result<Self> {
        let bad = |reason: String| UserError::BadModel { path: dir.to_path_buf(), reason };
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
            bad(format!("config.json: {e} (a model folder needs config.json, tokenizer.json and *.safetensors)"))
        })?;
        let config: Value = serde_json::from_str(&text).map_err(|e| bad(format!("config.json: {e}")))?;
        if !dir.join("tokenizer.json").is_file() {
            return Err(bad(
                "no tokenizer.json (save it with the model's tokenizer: `tokenizer.save_pretrained(dir)`)".into(),
            )
            .into());
        }
        let mut safetensors: Vec<PathBuf> = std::fs::read_dir(dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        safetensors.sort();
        if safetensors.is_empty() {
            return Err(bad("no *.safetensors files".into()).into());
        }
        Ok(Self { config, safetensors })
    }
}

impl SafetensorsSource {
    pub fn open(folder: &HfFolder, family: Family) -> Result<Self> {
        // SAFETY: the files are mapped read-only; openweigh never writes to them
        // while loading, and the tensors are copied out before the map is dropped.
        let st = unsafe { MmapedSafetensors::multi(&folder.safetensors) }.context("reading safetensors headers")?;
        Ok(Self { st, family })
    }
}

impl SafetensorsSource {
    /// The folder's header, its config.json having given `hparams`.
    pub fn header(&self, hparams: Hparams) -> ModelHeader {
        let shapes = self
            .st
            .tensors()
            .into_iter()
            .filter_map(|(hf, view)| Some((gguf_tensor_name(&hf, hparams.family)?, view.shape().to_vec())))
            .collect();
        ModelHeader { hparams, shapes, row_order: RowOrder::HuggingFace }
    }
}

impl WeightSource for SafetensorsSource {
    fn get(&mut self, name: &str, device: &Device) -> Result<QTensor> {
        let hf = hf_tensor_name(name, self.family).with_context(|| format!("no safetensors name for {name}"))?;
        let mut t = self.st.load(&hf, device).with_context(|| format!("reading tensor {hf}"))?.to_dtype(DType::F32)?;
        if self.family == Family::Gemma3 && name.ends_with("norm.weight") {
            // Gemma's RMSNorm scales by (1 + w); llama.cpp stores w + 1.
            t = (t + 1.0)?;
        }
        Ok(QTensor::quantize(&t, GgmlDType::F32)?)
    }
    fn has(&self, name: &str) -> bool {
        hf_tensor_name(name, self.family).is_some_and(|hf| self.st.get(&hf).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names_map_to_hf_names() {
        assert_eq!(hf_tensor_name("blk.3.attn_q.bias", Family::Qwen2).unwrap(), "model.layers.3.self_attn.q_proj.bias");
        assert_eq!(
            hf_tensor_name("blk.0.ffn_norm.weight", Family::Llama).unwrap(),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(
            hf_tensor_name("blk.0.ffn_norm.weight", Family::Gemma3).unwrap(),
            "model.layers.0.pre_feedforward_layernorm.weight"
        );
        assert_eq!(hf_tensor_name("output.weight", Family::Llama).unwrap(), "lm_head.weight");
        assert!(hf_tensor_name("blk.0.unknown.weight", Family::Llama).is_none());
    }

    #[test]
    fn hf_names_map_back_to_gguf_names() {
        for family in [Family::Llama, Family::Qwen2, Family::Gemma3] {
            for g in ["blk.3.attn_q.weight", "blk.0.ffn_norm.weight", "blk.11.ffn_down.weight", "output.weight"] {
                let hf = hf_tensor_name(g, family).unwrap();
                assert_eq!(gguf_tensor_name(&hf, family).as_deref(), Some(g), "{hf}");
                let peft = format!("base_model.model.{}", hf.trim_end_matches(".weight"));
                assert_eq!(gguf_tensor_name(&format!("{peft}.weight"), family).as_deref(), Some(g));
            }
        }
        assert_eq!(
            gguf_tensor_name("base_model.model.model.language_model.layers.2.mlp.up_proj.weight", Family::Gemma3)
                .as_deref(),
            Some("blk.2.ffn_up.weight")
        );
        assert!(gguf_tensor_name("model.layers.0.self_attn.qkv_proj.weight", Family::Llama).is_none());
        assert!(gguf_tensor_name("transformer.h.0.attn.c_attn.weight", Family::Llama).is_none());
    }

    #[test]
    fn qk_row_reorder_round_trips_and_matches_llama_cpp() {
        // 2 heads of head_dim 4: HF rows (h, s, i) with s the rotate-half side.
        let w = Tensor::arange(0f32, 8.0, &Device::Cpu).unwrap().reshape((8, 1)).unwrap();
        let g = reorder_qk_rows(&w, 2, RowOrder::HuggingFace, RowOrder::LlamaCpp).unwrap();
        // llama.cpp: reshape(2, 2, 2).swapaxes(1, 2) → rows 0,2,1,3 | 4,6,5,7.
        assert_eq!(g.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0., 2., 1., 3., 4., 6., 5., 7.]);
        let back = reorder_qk_rows(&g, 2, RowOrder::LlamaCpp, RowOrder::HuggingFace).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            w.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    #[test]
    fn hf_config_reads_gemma_switches() {
        let cfg: Value = serde_json::from_str(
            r#"{"model_type":"gemma3_text","hidden_size":640,"num_attention_heads":4,"num_key_value_heads":1,
                "head_dim":256,"num_hidden_layers":18,"sliding_window":512,"query_pre_attn_scalar":256,
                "rope_theta":1000000.0,"rope_local_base_freq":10000.0,"rms_norm_eps":1e-6}"#,
        )
        .unwrap();
        let hp = Hparams::from_hf_config(&cfg).unwrap();
        assert_eq!(hp.family, Family::Gemma3);
        assert_eq!((hp.head_dim, hp.sliding_window, hp.sliding_pattern), (256, Some(512), 6));
        assert!(hp.rope_neox);
        assert_eq!(hp.attn_scale, 1.0 / 16.0);
    }

    #[test]
    fn impossible_shapes_are_refused_by_name() {
        let cfg = |extra: &str| -> Value {
            serde_json::from_str(&format!(
                r#"{{"model_type":"llama","hidden_size":576,"num_hidden_layers":2,"num_attention_heads":9,{extra}}}"#
            ))
            .unwrap()
        };
        assert!(Hparams::from_hf_config(&cfg(r#""num_key_value_heads":3"#)).is_ok());
        for (extra, says) in [
            (r#""num_key_value_heads":0"#, "n_kv_head is 0"),
            (r#""num_key_value_heads":2"#, "do not split"),
            (r#""head_dim":0"#, "head_dim is 0"),
            (r#""sliding_window_pattern":0"#, "sliding_pattern is 0"),
            (r#""max_position_embeddings":0"#, "context_length is 0"),
        ] {
            let e = Hparams::from_hf_config(&cfg(extra)).unwrap_err().to_string();
            assert!(e.starts_with("config.json: ") && e.contains(says), "{extra}: {e}");
        }
        let zero_heads: Value = serde_json::from_str(
            r#"{"model_type":"llama","hidden_size":576,"num_hidden_layers":2,"num_attention_heads":0}"#,
        )
        .unwrap();
        let e = Hparams::from_hf_config(&zero_heads).unwrap_err().to_string();
        assert!(e.contains("num_attention_heads is 0"), "{e}");
    }
}
