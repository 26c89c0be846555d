//! Our own decoder forward pass for the model families openweigh runs
//! (llama, qwen2, gemma3), built from candle's public parts. We need two
//! things candle's `quantized_*` models do not give: log-probs for every
//! position of a chunk (log-likelihood scoring) and a KV cache kept apart from
//! the weights, so that one evaluated context can be snapshotted (a cheap clone
//! of `Arc`-backed tensors) and extended once per choice.
//!
//! The families differ in a handful of switches gathered in [`Hparams`]:
//! q/k/v biases (qwen2), RoPE layout, per-head q/k norms, sandwich norms,
//! GELU, scaled embeddings and sliding-window layers (gemma3). Weights come
//! from a [`WeightSource`] by their GGUF names, so a GGUF file and a
//! safetensors folder (see `weights.rs`) load into the same model.
//!
//! Weights may be repacked at load (see [`WeightFormat`]): candle's Q4_1/Q5_x
//! dot products are scalar fallbacks, its Q8_0 one is SIMD, so those tensors
//! are dequantized and requantized to Q8_0 by default. What ran is reported in
//! [`LoadReport`] and written into `run.json`.
//!
//! Longer than 500 lines (about 550 of code, then its tests) on purpose: it
//! is one forward pass read top to bottom (load, embedding, attention with its
//! masks, packed segments, logits); splitting it would spread each family
//! switch over several files.

use super::activation::{gated, Act};
use super::decode_attention::{self, KeyRange, Query};
use super::linear::{Linear, GEMM_MIN_ROWS};
use anyhow::{bail, Context, Result};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use candle_transformers::quantized_nn::RmsNorm;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Longest sequence (positions) openweigh evaluates, whatever longer context a
/// model advertises: RoPE tables are precomputed up to here.
pub const MAX_POSITIONS: usize = 8192;

/// How quantized weights are held in memory for the matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
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

/// The architectures the forward pass implements, one enum to dispatch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Llama,
    Qwen2,
    Gemma3,
}

impl Family {
    /// From GGUF's `general.architecture` or a config.json `model_type`.
    pub fn parse(arch: &str) -> Option<Self> {
        match arch {
            "llama" | "mistral" => Some(Family::Llama),
            "qwen2" => Some(Family::Qwen2),
            "gemma3" | "gemma3_text" => Some(Family::Gemma3),
            _ => None,
        }
    }

    /// GGUF's `general.architecture` for this family.
    pub fn gguf_architecture(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Gemma3 => "gemma3",
        }
    }
}

/// Shape and switches of one model, from GGUF metadata or config.json.
#[derive(Debug, Clone, Serialize)]
pub struct Hparams {
    pub family: Family,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Context length the model advertises (positions).
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    /// RoPE base of sliding-window layers (gemma3), when different.
    pub rope_base_local: Option<f32>,
    /// NEOX ("rotate half") RoPE layout; false is the interleaved layout that
    /// llama.cpp's converter produces for llama by permuting q/k weights.
    pub rope_neox: bool,
    /// Sliding-window size of local layers (gemma3), in positions.
    pub sliding_window: Option<usize>,
    /// Every `sliding_pattern`-th layer is global, the others local (gemma3: 6).
    pub sliding_pattern: usize,
    /// Attention logits are multiplied by this (1/sqrt(head_dim) unless the model says otherwise).
    pub attn_scale: f64,
}

/// Where tensors come from, by their GGUF names (`blk.3.attn_q.weight`).
pub trait WeightSource {
    fn get(&mut self, name: &str, device: &Device) -> Result<QTensor>;
    fn has(&self, name: &str) -> bool;
    /// The type `name` has in the file, when `get` returned it in another
    /// (a tensor merged with an adapter); None: the type `get` returned.
    fn file_dtype(&self, _name: &str) -> Option<GgmlDType> {
        None
    }
}

/// What the loader did, for `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub weight_format: WeightFormat,
    pub family: Family,
    /// Tensor count per quantization type in the file.
    pub file_tensor_types: BTreeMap<String, usize>,
    /// Tensor count per quantization type as used by the matmuls.
    pub runtime_tensor_types: BTreeMap<String, usize>,
    /// Bytes of quantized matmul weights in memory after any repack
    /// (the embedding table included when it is not shared with the output head).
    pub runtime_weight_byte: usize,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_vocab: usize,
    pub context_length: usize,
    /// Positions openweigh accepts (the context length, capped at [`MAX_POSITIONS`]).
    pub max_positions: usize,
    /// What merging a LoRA adapter at load did (`--adapter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<crate::backend::adapter::MergeReport>,
}

/// The token embedding table: looked up row by row from its quantized form
/// when the block size allows (no dense f32 copy of a 262k-row vocabulary).
enum Embedding {
    Quantized(Arc<QTensor>),
    Dense(Tensor),
}

impl Embedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Embedding::Quantized(q) => q.embedding(ids)?,
            Embedding::Dense(t) => {
                let (b, s) = ids.dims2()?;
                t.index_select(&ids.flatten_all()?, 0)?.reshape((b, s, ()))?
            }
        })
    }
}

struct Attention {
    qkv: Qkv,
    wo: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
}

/// Attention's q, k and v projections of the normed input, and their biases.
enum Qkv {
    /// One product for all three ([`Linear::join`]: our kernels, one weight
    /// type): its output holds q's heads, then k's, then v's, and so does
    /// the joined bias. The input is quantized once and the threads meet
    /// once; each value is the one its projection computes alone.
    Joined {
        w: Linear,
        bias: Option<Tensor>,
    },
    Apart {
        wq: Linear,
        wk: Linear,
        wv: Linear,
        bq: Option<Tensor>,
        bk: Option<Tensor>,
        bv: Option<Tensor>,
    },
}

impl Qkv {
    /// Joins the three when [`Linear::join`] can and their widths are whole
    /// heads (with biases on all three or none).
    fn new(hp: &Hparams, [wq, wk, wv]: [Linear; 3], [bq, bk, bv]: [Option<Tensor>; 3]) -> Result<Self> {
        let whole = wq.out_features() == hp.n_head * hp.head_dim
            && wk.out_features() == hp.n_kv_head * hp.head_dim
            && wv.out_features() == hp.n_kv_head * hp.head_dim;
        let bias = match (&bq, &bk, &bv) {
            (None, None, None) => Some(None),
            (Some(q), Some(k), Some(v)) => Some(Some(Tensor::cat(&[q, k, v], 0)?)),
            _ => None,
        };
        if let (true, Some(bias)) = (whole, bias) {
            if let Some(w) = Linear::join(&[&wq, &wk, &wv])? {
                return Ok(Self::Joined { w, bias });
            }
        }
        Ok(Self::Apart { wq, wk, wv, bq, bk, bv })
    }

    /// q, k and v of `xs` (1, seq, n_embd), each `(1, heads, seq, head_dim)`
    /// and contiguous.
    fn forward(&self, xs: &Tensor, hp: &Hparams, seq_len: usize) -> Result<(Tensor, Tensor, Tensor)> {
        let heads = |x: Tensor, n: usize| -> Result<Tensor> {
            Ok(x.reshape((1, seq_len, n, hp.head_dim))?.transpose(1, 2)?.contiguous()?)
        };
        match self {
            Self::Joined { w, bias } => {
                let mut y = w.forward(xs)?;
                if let Some(b) = bias {
                    y = y.broadcast_add(b)?;
                }
                let (nq, nkv) = (hp.n_head, hp.n_kv_head);
                let y = y.reshape((1, seq_len, nq + 2 * nkv, hp.head_dim))?.transpose(1, 2)?;
                Ok((
                    y.narrow(1, 0, nq)?.contiguous()?,
                    y.narrow(1, nq, nkv)?.contiguous()?,
                    y.narrow(1, nq + nkv, nkv)?.contiguous()?,
                ))
            }
            Self::Apart { wq, wk, wv, bq, bk, bv } => {
                let proj = |w: &Linear, b: &Option<Tensor>| -> Result<Tensor> {
                    let y = w.forward(xs)?;
                    Ok(match b {
                        Some(b) => y.broadcast_add(b)?,
                        None => y,
                    })
                };
                Ok((
                    heads(proj(wq, bq)?, hp.n_head)?,
                    heads(proj(wk, bk)?, hp.n_kv_head)?,
                    heads(proj(wv, bv)?, hp.n_kv_head)?,
                ))
            }
        }
    }
}

/// The feed-forward block's gate and up projections, joined as [`Qkv`]
/// where possible.
enum GateUp {
    Joined(Linear),
    Apart { gate: Linear, up: Linear },
}

impl GateUp {
    fn new(gate: Linear, up: Linear) -> Result<Self> {
        Ok(match Linear::join(&[&gate, &up])? {
            Some(w) => Self::Joined(w),
            None => Self::Apart { gate, up },
        })
    }

    /// `act(gate · xs) ⊙ (up · xs)`.
    fn forward(&self, act: Act, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Joined(w) => super::activation::gated_halves(act, &w.forward(xs)?),
            Self::Apart { gate, up } => gated(act, &gate.forward(xs)?, &up.forward(xs)?),
        }
    }
}

struct Layer {
    attn: Attention,
    attn_norm: RmsNorm,
    post_attn_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    post_ffn_norm: Option<RmsNorm>,
    gate_up: GateUp,
    down: Linear,
    /// Sliding window of this layer (None: attends to every earlier position).
    window: Option<usize>,
    /// Index into the model's RoPE tables.
    rope: usize,
}

/// Per-layer key/value buffers, `(1, kv heads, capacity, head_dim)` each, of
/// which the first `len` positions hold the keys and values evaluated so far.
/// A step writes its positions in place (no copy of the whole cache per
/// token, and no new allocation until the capacity, a multiple of
/// [`KV_STEP`] positions, runs out).
///
/// Cloning is cheap and a clone behaves as an independent snapshot: clones
/// share the buffers, and a cache writes in place only where no other live
/// clone still needs what is there (the positions it writes are all past
/// every other live clone's length); otherwise it copies its own positions
/// to new buffers first (copy on write). So the usual patterns — a shared
/// few-shot prefix extended by one prompt after another, a context extended
/// by one packed group of continuations after another — write in place.
pub struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    /// This cache's identity among the holders of its buffers.
    id: Arc<()>,
    /// Every cache sharing these buffers: identity and length (one list
    /// per set of buffers).
    holders: Arc<std::sync::Mutex<Holders>>,
    /// The buffers' bytes in [`kv_peak_byte`]'s count (shared by the clones).
    bytes: Option<Arc<KvBytes>>,
}

/// The caches sharing one set of KV buffers: a weak handle on each one's
/// identity (dead once it is dropped) and its length in positions.
type Holders = Vec<(std::sync::Weak<()>, usize)>;

impl Clone for KvCache {
    fn clone(&self) -> Self {
        let id = Arc::new(());
        lock(&self.holders).push((Arc::downgrade(&id), self.len));
        Self {
            layers: self.layers.clone(),
            len: self.len,
            id,
            holders: self.holders.clone(),
            bytes: self.bytes.clone(),
        }
    }
}

/// Bytes of KV-cache buffers alive in this process (every cache's and batched
/// sequence's, at their allocated capacity), and their most at once since
/// [`reset_kv_peak`].
static KV_LIVE_BYTE: AtomicUsize = AtomicUsize::new(0);
static KV_PEAK_BYTE: AtomicUsize = AtomicUsize::new(0);

/// Most bytes of KV-cache buffers held at once since [`reset_kv_peak`].
pub fn kv_peak_byte() -> u64 {
    KV_PEAK_BYTE.load(Ordering::Relaxed) as u64
}

/// Restarts [`kv_peak_byte`] from what is held now.
pub fn reset_kv_peak() {
    KV_PEAK_BYTE.store(KV_LIVE_BYTE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// One set of KV buffers' share of [`KV_LIVE_BYTE`], given back when the last
/// cache holding those buffers is dropped.
struct KvBytes(usize);

impl KvBytes {
    fn new(n: usize) -> Self {
        let live = KV_LIVE_BYTE.fetch_add(n, Ordering::Relaxed) + n;
        KV_PEAK_BYTE.fetch_max(live, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for KvBytes {
    fn drop(&mut self) {
        KV_LIVE_BYTE.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// The holders list; a panic while it was held cannot leave it inconsistent
/// (every update is one push or assignment), so a poisoned lock is taken as is.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// KV cache capacity grows in steps of this many positions.
pub const KV_STEP: usize = 512;

impl KvCache {
    fn new() -> Self {
        let id = Arc::new(());
        let holders = Arc::new(std::sync::Mutex::new(vec![(Arc::downgrade(&id), 0)]));
        Self { layers: Vec::new(), len: 0, id, holders, bytes: None }
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `self` and `other` hold the same buffers (one was cloned from
    /// the other and neither has had to copy since).
    pub fn shares_buffers(&self, other: &KvCache) -> bool {
        !self.layers.is_empty() && Arc::ptr_eq(&self.holders, &other.holders)
    }

    /// Positions the buffers hold (0 before the first step).
    pub fn capacity(&self) -> usize {
        self.layers.first().map_or(0, |(k, _)| k.dim(2).unwrap_or(0))
    }

    /// Whether another live clone needs positions at or past `pos`.
    fn shared_past(&self, pos: usize) -> bool {
        let mut holders = lock(&self.holders);
        holders.retain(|(w, _)| w.strong_count() > 0);
        holders.iter().any(|(w, len)| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.id)) && *len > pos)
    }

    /// Records this cache's new length among the holders (where `new` or
    /// `clone` entered it; only dropped caches' entries are ever removed).
    fn set_len(&mut self, len: usize) {
        self.len = len;
        let me = Arc::as_ptr(&self.id);
        if let Some(entry) = lock(&self.holders).iter_mut().find(|(w, _)| std::ptr::eq(w.as_ptr(), me)) {
            entry.1 = len;
        }
    }
}

/// What [`Transformer::layers_forward`] calls for one layer's attention:
/// (layer index, layer, q, k, v) to the attention output.
type LayerAttention<'a> = dyn FnMut(usize, &Layer, &Tensor, &Tensor, &Tensor) -> Result<Tensor> + 'a;

/// KV buffers of a batched step ([`Transformer::step_batch`]) grow in steps
/// of this many positions: a batch holds several sequences' caches at once.
const SEQ_KV_STEP: usize = 64;

/// One sequence of a batched generation: a read-only snapshot of the shared
/// prefix (its keys and values are read in place, never copied per
/// sequence) and the sequence's own positions after it, in buffers of its own.
pub struct SeqCache {
    prefix: KvCache,
    own: KvCache,
}

impl SeqCache {
    /// A sequence continuing `prefix` (an empty cache for none).
    pub fn new(prefix: KvCache) -> Self {
        Self { prefix, own: KvCache::new() }
    }

    /// Positions held: the prefix's and its own.
    pub fn len(&self) -> usize {
        self.prefix.len + self.own.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores layer `l`'s keys and values of this sequence's chunk (`(1,
    /// kv heads, n, head_dim)`) after its own positions.
    fn store(&self, l: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let (kb, vb) = &self.own.layers[l];
        kb.slice_set(&k.contiguous()?, 2, self.own.len)?;
        vb.slice_set(&v.contiguous()?, 2, self.own.len)?;
        Ok(())
    }

    /// Layer `l`'s attention query for this sequence's one new token
    /// (stored; `q`: `(1, heads, 1, head_dim)`, contiguous): its prefix's
    /// keys, then its own (a sliding window's first key in either).
    fn token_query<'a>(&'a self, l: usize, window: Option<usize>, q: &'a Tensor) -> Query<'a> {
        let (p, own) = (self.prefix.len, self.own.len);
        let first = window.map_or(0, |w| (p + own + 1).saturating_sub(w));
        let (kb, vb) = &self.own.layers[l];
        Query {
            q,
            shared: (first < p).then_some((first, p)),
            own: KeyRange { k: kb, v: vb, first: first.saturating_sub(p), end: own + 1 },
        }
    }

    /// Layer `l`'s attention for several sequences' one new token each
    /// (`qs[s]` for `seqs[s]`), read in place from the prefix's buffers and
    /// then each sequence's own: in one call where the sequences continue
    /// one prefix (the same buffers; each block of its keys then serves
    /// them all), else one call each. Either way each output is what the
    /// sequence's call alone gives, bit for bit.
    fn attend_tokens(
        seqs: &[&SeqCache],
        l: usize,
        window: Option<usize>,
        qs: &[Tensor],
        scale: f64,
    ) -> Result<Vec<Tensor>> {
        let qs = qs.iter().map(|q| q.contiguous()).collect::<candle_core::Result<Vec<_>>>()?;
        let prefixed: Vec<&KvCache> = seqs.iter().map(|s| &s.prefix).filter(|p| p.len > 0).collect();
        let one_prefix = prefixed.iter().all(|p| p.shares_buffers(prefixed[0]));
        let groups: Vec<Vec<usize>> =
            if one_prefix { vec![(0..seqs.len()).collect()] } else { (0..seqs.len()).map(|s| vec![s]).collect() };
        let mut out = Vec::with_capacity(seqs.len());
        for group in groups {
            let queries: Vec<Query> = group.iter().map(|&s| seqs[s].token_query(l, window, &qs[s])).collect();
            let shared = group
                .iter()
                .map(|&s| &seqs[s].prefix)
                .find(|p| p.len > 0)
                .and_then(|p| p.layers.get(l))
                .map(|(k, v)| (k, v));
            out.extend(
                decode_attention::attend_batch(&queries, shared, scale)?
                    .context("decode attention needs contiguous f32 tensors on the CPU")?,
            );
        }
        Ok(out)
    }

    /// Layer `l`'s attention for this sequence's chunk of `n > 1` tokens
    /// (stored; `q`: `(1, heads, n, head_dim)`) as a document alone (`doc`:
    /// its masks and key blocks) over its prefix's keys and its own, copied
    /// into one.
    fn attend_chunk(
        &self,
        l: usize,
        window: Option<usize>,
        q: &Tensor,
        doc: &DocAttention,
        scale: f64,
    ) -> Result<Tensor> {
        let (p, own) = (self.prefix.len, self.own.len);
        let n = q.dim(2)?;
        let (kb, vb) = &self.own.layers[l];
        let (k, v) = match self.prefix.layers.get(l).filter(|_| p > 0) {
            Some((pk, pv)) => (
                Tensor::cat(&[pk.narrow(2, 0, p)?, kb.narrow(2, 0, own + n)?], 2)?,
                Tensor::cat(&[pv.narrow(2, 0, p)?, vb.narrow(2, 0, own + n)?], 2)?,
            ),
            None => (kb.narrow(2, 0, own + n)?, vb.narrow(2, 0, own + n)?),
        };
        packed_attention(&q.contiguous()?, &k, &v, std::slice::from_ref(doc), p + own, window.is_some(), scale)
    }
}

pub struct Transformer {
    hp: Hparams,
    embed: Embedding,
    /// Multiplier of embeddings (gemma3: sqrt(n_embd)).
    embed_scale: Option<f64>,
    layers: Vec<Layer>,
    norm: RmsNorm,
    output: Linear,
    /// (cos, sin) tables, one per RoPE base in use.
    ropes: Vec<(Tensor, Tensor)>,
    max_seq_len: usize,
    device: Device,
    pub report: LoadReport,
}

fn dtype_name(d: GgmlDType) -> String {
    format!("{d:?}")
}

/// Tensor types and bytes of the matmul weights, for [`LoadReport`].
#[derive(Default)]
struct Tally {
    file: BTreeMap<String, usize>,
    runtime: BTreeMap<String, usize>,
    runtime_byte: usize,
}

impl Tally {
    fn add(&mut self, file: GgmlDType, runtime: &QTensor) {
        *self.file.entry(dtype_name(file)).or_insert(0) += 1;
        *self.runtime.entry(dtype_name(runtime.dtype())).or_insert(0) += 1;
        self.runtime_byte += runtime.storage_size_in_bytes();
    }
}

/// `t` as `format` asks the matmuls to hold it; None when it stays as it is.
fn repacked(t: &QTensor, format: WeightFormat, device: &Device) -> Result<Option<QTensor>> {
    if !needs_repack(t.dtype(), format) {
        return Ok(None);
    }
    let target = if format == WeightFormat::F32 { GgmlDType::F32 } else { GgmlDType::Q8_0 };
    Ok(Some(QTensor::quantize(&t.dequantize(device)?, target)?))
}

/// The matmul weight `name` of `src`, repacked as `format` asks, and counted.
fn prepare(
    src: &mut dyn WeightSource,
    name: &str,
    format: WeightFormat,
    device: &Device,
    tally: &mut Tally,
) -> Result<Linear> {
    let t = src.get(name, device)?;
    let file = src.file_dtype(name).unwrap_or(t.dtype());
    let t = repacked(&t, format, device)?.unwrap_or(t);
    tally.add(file, &t);
    Linear::new(t)
}

/// Whether `format` asks to repack a tensor of type `t` for the matmuls.
fn needs_repack(t: GgmlDType, format: WeightFormat) -> bool {
    match format {
        WeightFormat::Native => false,
        // Types whose CPU dot product in candle is a scalar fallback (Q4_0 has a SIMD one).
        WeightFormat::Q8_0 => matches!(t, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1),
        WeightFormat::F32 => t != GgmlDType::F32,
    }
}

fn rope_tables(base: f32, dim: usize, positions: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let theta: Vec<f32> = (0..dim).step_by(2).map(|i| 1f32 / base.powf(i as f32 / dim as f32)).collect();
    let theta = Tensor::new(theta.as_slice(), device)?;
    let idx = Tensor::arange(0, positions as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((positions, 1))?
        .matmul(&theta.reshape((1, ()))?)?;
    Ok((idx.cos()?, idx.sin()?))
}

/// Most tokens of one prompt evaluated in one pass (see [`Transformer::forward`]);
/// llama.cpp's default micro-batch is the same 512.
pub const PREFILL_CHUNK: usize = 512;

/// Where one token of a packed chunk sits (see [`Transformer::hidden_packed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The document (one question) it belongs to: no token sees another
    /// document's.
    pub doc: u32,
    /// 0: the document's trunk (its context), seen by every branch of the
    /// document; b > 0: branch b (one continuation), seen by itself only.
    pub branch: u32,
    /// Its position in its own sequence, the cache's positions counted
    /// (RoPE, sliding window).
    pub pos: u32,
}

/// The slots of `segments` (token counts) packed one after another after a
/// cache of `pos` positions: one document whose trunk is the cache, segment
/// `s` its branch `s + 1`, each starting at position `pos`.
fn segment_slots(segments: &[usize], pos: usize) -> Vec<Slot> {
    (0..segments.len())
        .flat_map(|s| (0..segments[s]).map(move |o| Slot { doc: 0, branch: s as u32 + 1, pos: (pos + o) as u32 }))
        .collect()
}

/// The chunk-index ranges of a packed chunk's documents. Refuses a chunk not
/// laid out as [`Transformer::hidden_packed`] asks (documents one after
/// another, each trunk first, then branch after branch, positions rising
/// within each), so that every key a query may see lies between its
/// document's first token and itself.
fn document_ranges(slots: &[Slot]) -> Result<Vec<(usize, usize)>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for (i, pair) in slots.windows(2).enumerate() {
        let (p, s) = (pair[0], pair[1]);
        let ordered = if s.doc != p.doc {
            s.doc > p.doc
        } else if s.branch != p.branch {
            s.branch > p.branch
        } else {
            s.pos > p.pos
        };
        if !ordered {
            bail!("packed chunk out of order at token {}: {p:?} then {s:?}", i + 1);
        }
        if s.doc != p.doc {
            ranges.push((start, i + 1));
            start = i + 1;
        }
    }
    ranges.push((start, slots.len()));
    Ok(ranges)
}

/// The additive attention mask of a packed chunk after `pos` cached
/// positions (chunk tokens × (cache + chunk) keys), or `None` when nothing
/// needs masking. Every token sees the whole cache, and the chunk's tokens of
/// its own document that are in its trunk or its own branch and not after it;
/// with `window`, keys `window` or more positions back are masked too
/// (sliding-window layers). So several continuations of one context, and
/// several questions, are scored in one pass with the numbers of one pass each.
fn attention_mask(slots: &[Slot], pos: usize, window: Option<usize>, device: &Device) -> Result<Option<Tensor>> {
    let seq_len = slots.len();
    let total = pos + seq_len;
    let last_pos = slots.iter().map(|s| s.pos as usize).max().unwrap_or(0);
    let windowed = window.is_some_and(|w| last_pos >= w);
    if seq_len == 1 && !windowed {
        return Ok(None);
    }
    let mut m = vec![0f32; seq_len * total];
    for (q, row) in slots.iter().zip(m.chunks_exact_mut(total)) {
        for (j, cell) in row.iter_mut().enumerate() {
            let (visible, key_pos) = match j.checked_sub(pos) {
                None => (true, j),
                Some(c) => {
                    let k = slots[c];
                    (k.doc == q.doc && (k.branch == 0 || k.branch == q.branch) && k.pos <= q.pos, k.pos as usize)
                }
            };
            let outside = window.is_some_and(|w| (q.pos as usize).saturating_sub(key_pos) >= w);
            if !visible || outside {
                *cell = f32::NEG_INFINITY;
            }
        }
    }
    Ok(Some(Tensor::from_vec(m, (seq_len, total), device)?))
}

/// The keys `(first, end)` each block of [`ATTENTION_BLOCK`] queries of a
/// document of `len` tokens after `pos` cached positions may see: the cache
/// and the document up to the block's last query (later tokens are later in
/// their branch, or in a later branch). Keys past it are never computed.
fn block_keys(len: usize, pos: usize) -> Vec<(usize, usize)> {
    (0..len).step_by(ATTENTION_BLOCK).map(|s0| (0, pos + (s0 + ATTENTION_BLOCK).min(len))).collect()
}

/// One document of a packed chunk, as its attention needs it: its range of
/// chunk tokens, its masks over the cache and its own tokens (global and
/// sliding-window layers), and its blocks' keys.
struct DocAttention {
    range: (usize, usize),
    global_mask: Option<Tensor>,
    local_mask: Option<Tensor>,
    keys: Vec<(usize, usize)>,
}

/// Attention of a packed chunk's queries `q` (1, heads, chunk, head_dim),
/// document by document, each over the `pos` cached keys and its own
/// (`k`/`v`: cache then chunk). A document's keys, masks and sums are the
/// same whatever else is in the chunk, so its numbers are too, bit for bit.
fn packed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    docs: &[DocAttention],
    pos: usize,
    local: bool,
    scale: f64,
) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(docs.len());
    for d in docs {
        let (s, e) = d.range;
        let n = e - s;
        let qd = if docs.len() == 1 { q.clone() } else { q.narrow(2, s, n)?.contiguous()? };
        let own = |t: &Tensor| -> Result<Tensor> {
            Ok(if s == 0 {
                t.narrow(2, 0, pos + n)?
            } else if pos == 0 {
                t.narrow(2, s, n)?
            } else {
                Tensor::cat(&[t.narrow(2, 0, pos)?, t.narrow(2, pos + s, n)?], 2)?
            })
        };
        let mask = if local { &d.local_mask } else { &d.global_mask };
        parts.push(grouped_attention(&qd, &own(k)?, &own(v)?, mask.as_ref(), scale, &d.keys)?);
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Tensor::cat(&parts, 2)? })
}

/// Attention of `q` (1, heads, seq, head_dim) over `k`/`v` (1, kv heads,
/// total, head_dim) with an additive `mask` (seq, total), without copying K/V
/// per head: the `heads / kv heads` query heads sharing a KV head are
/// consecutive, so q is viewed as (kv heads, rep × seq) rows against that
/// head's keys. Returns (1, heads, seq, head_dim).
///
/// Queries go [`ATTENTION_BLOCK`] at a time, so the score tensor (heads ×
/// queries × keys floats, and its masked and softmaxed copies) stays small
/// for long chunks: every query row's softmax is its own, so the blocks give
/// the same numbers as one pass. Block `b` multiplies only keys
/// `keys[b].0..keys[b].1` (from [`block_keys`]; all keys where `keys` is
/// empty): the masked keys it skips would add exact zeros.
fn grouped_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
    keys: &[(usize, usize)],
) -> Result<Tensor> {
    let seq_len = q.dim(2)?;
    let total = k.dim(2)?;
    let mut out = Vec::with_capacity(seq_len.div_ceil(ATTENTION_BLOCK));
    for (b, s0) in (0..seq_len).step_by(ATTENTION_BLOCK).enumerate() {
        let n = ATTENTION_BLOCK.min(seq_len - s0);
        let (first, end) = keys.get(b).copied().unwrap_or((0, total));
        let m = mask.map(|m| m.narrow(0, s0, n)?.narrow(1, first, end - first)).transpose()?;
        let qb = if n == seq_len { q.clone() } else { q.narrow(2, s0, n)?.contiguous()? };
        let (kb, vb) = if (first, end) == (0, total) {
            (k.clone(), v.clone())
        } else {
            (k.narrow(2, first, end - first)?, v.narrow(2, first, end - first)?)
        };
        out.push(attention_block(&qb, &kb, &vb, m.as_ref(), scale)?);
    }
    Ok(if out.len() == 1 { out.remove(0) } else { Tensor::cat(&out, 2)? })
}

/// Query rows per attention block (see [`grouped_attention`]).
const ATTENTION_BLOCK: usize = 128;

fn attention_block(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    let (_, n_head, seq_len, head_dim) = q.dims4()?;
    let n_kv_head = k.dim(1)?;
    let rep = n_head / n_kv_head;
    let qg = q.reshape((1, n_kv_head, rep * seq_len, head_dim))?;
    // Row `r` of a KV head's `rep × seq_len` score rows takes mask row `r % seq_len`.
    let att = super::softmax::masked_softmax(&qg.matmul(&k.t()?)?, mask, scale)?;
    Ok(att.matmul(v)?.reshape((1, n_head, seq_len, head_dim))?)
}

impl Transformer {
    pub fn load(hp: Hparams, src: &mut dyn WeightSource, device: &Device, format: WeightFormat) -> Result<Self> {
        let mut tally = Tally::default();
        let norm = |src: &mut dyn WeightSource, name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm::from_qtensor(src.get(name, device)?, hp.rms_eps)?)
        };
        let optional = |src: &mut dyn WeightSource, name: &str| -> Result<Option<Tensor>> {
            if src.has(name) {
                Ok(Some(src.get(name, device)?.dequantize(device)?))
            } else {
                Ok(None)
            }
        };

        let embd = Arc::new(src.get("token_embd.weight", device)?);
        let embd_file = src.file_dtype("token_embd.weight").unwrap_or(embd.dtype());
        let n_vocab = embd.shape().dims()[0];
        let quantized_lookup = !matches!(embd.dtype(), GgmlDType::F32 | GgmlDType::F16)
            && hp.n_embd.is_multiple_of(embd.dtype().block_size());
        let embed = if quantized_lookup {
            Embedding::Quantized(embd.clone())
        } else {
            Embedding::Dense(embd.dequantize(device)?)
        };
        // Tied embeddings: the output head is the embedding matrix, shared with
        // the lookup table unless the matmul wants it repacked.
        let (output, shared) = if src.has("output.weight") {
            (prepare(src, "output.weight", format, device, &mut tally)?, false)
        } else {
            match repacked(&embd, format, device)? {
                None => {
                    tally.add(embd_file, &embd);
                    (Linear::from_arc(embd.clone())?, true)
                }
                Some(t) => {
                    tally.add(embd_file, &t);
                    (Linear::new(t)?, false)
                }
            }
        };
        if let (Embedding::Quantized(q), false) = (&embed, shared) {
            tally.runtime_byte += q.storage_size_in_bytes();
        }
        drop(embd);
        let norm_out = norm(src, "output_norm.weight")?;

        let mut rope_bases = vec![hp.rope_base];
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let p = format!("blk.{i}");
            let local = hp.sliding_window.is_some() && (i + 1) % hp.sliding_pattern != 0;
            let base = if local { hp.rope_base_local.unwrap_or(hp.rope_base) } else { hp.rope_base };
            let rope = match rope_bases.iter().position(|b| *b == base) {
                Some(r) => r,
                None => {
                    rope_bases.push(base);
                    rope_bases.len() - 1
                }
            };
            let mut mm = |src: &mut dyn WeightSource, name: &str| -> Result<Linear> {
                prepare(src, &format!("{p}.{name}.weight"), format, device, &mut tally)
            };
            // Gemma's extra norms: per-head q/k norms and sandwich norms around attention and MLP.
            let gemma = hp.family == Family::Gemma3;
            let gemma_norm = |src: &mut dyn WeightSource, name: &str| -> Result<Option<RmsNorm>> {
                if gemma {
                    Ok(Some(norm(src, &format!("{p}.{name}.weight"))?))
                } else {
                    Ok(None)
                }
            };
            layers.push(Layer {
                attn: Attention {
                    qkv: Qkv::new(
                        &hp,
                        [mm(src, "attn_q")?, mm(src, "attn_k")?, mm(src, "attn_v")?],
                        [
                            optional(src, &format!("{p}.attn_q.bias"))?,
                            optional(src, &format!("{p}.attn_k.bias"))?,
                            optional(src, &format!("{p}.attn_v.bias"))?,
                        ],
                    )?,
                    wo: mm(src, "attn_output")?,
                    q_norm: gemma_norm(src, "attn_q_norm")?,
                    k_norm: gemma_norm(src, "attn_k_norm")?,
                },
                attn_norm: norm(src, &format!("{p}.attn_norm.weight"))?,
                post_attn_norm: gemma_norm(src, "post_attention_norm")?,
                ffn_norm: norm(src, &format!("{p}.ffn_norm.weight"))?,
                post_ffn_norm: gemma_norm(src, "post_ffw_norm")?,
                gate_up: GateUp::new(mm(src, "ffn_gate")?, mm(src, "ffn_up")?)?,
                down: mm(src, "ffn_down")?,
                window: if local { hp.sliding_window } else { None },
                rope,
            });
        }
        let max_seq_len = hp.context_length.min(MAX_POSITIONS);
        let ropes =
            rope_bases.iter().map(|b| rope_tables(*b, hp.head_dim, max_seq_len, device)).collect::<Result<Vec<_>>>()?;
        let report = LoadReport {
            weight_format: format,
            family: hp.family,
            file_tensor_types: tally.file,
            runtime_tensor_types: tally.runtime,
            runtime_weight_byte: tally.runtime_byte,
            n_layer: hp.n_layer,
            n_embd: hp.n_embd,
            n_vocab,
            context_length: hp.context_length,
            max_positions: max_seq_len,
            adapter: None,
        };
        Ok(Self {
            embed_scale: (hp.family == Family::Gemma3).then(|| (hp.n_embd as f64).sqrt()),
            hp,
            embed,
            layers,
            norm: norm_out,
            output,
            ropes,
            max_seq_len,
            device: device.clone(),
            report,
        })
    }

    /// Maximum positions (context + generated) this model accepts.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// The device its weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn empty_cache(&self) -> KvCache {
        KvCache::new()
    }

    /// Makes `cache` ready to take positions up to `need` in place: new
    /// buffers (capacity `need` rounded up to [`KV_STEP`], at most the
    /// model's context) holding a copy of its positions when it has none,
    /// too few, or shares the ones past its length with a live clone.
    pub fn reserve(&self, cache: &mut KvCache, need: usize) -> Result<()> {
        self.reserve_in_steps(cache, need, KV_STEP)
    }

    /// [`Transformer::reserve`] with capacity rounded up to `step` positions.
    fn reserve_in_steps(&self, cache: &mut KvCache, need: usize, step: usize) -> Result<()> {
        if need <= cache.capacity() && !cache.shared_past(cache.len) {
            return Ok(());
        }
        let cap = need.next_multiple_of(step).min(self.max_seq_len).max(need);
        let shape = (1, self.hp.n_kv_head, cap, self.hp.head_dim);
        let dtype = self.ropes[0].0.dtype();
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in 0..self.layers.len() {
            let (k, v) = (Tensor::zeros(shape, dtype, &self.device)?, Tensor::zeros(shape, dtype, &self.device)?);
            if let Some((ok, ov)) = cache.layers.get(l).filter(|_| cache.len > 0) {
                k.slice_set(&ok.narrow(2, 0, cache.len)?.contiguous()?, 2, 0)?;
                v.slice_set(&ov.narrow(2, 0, cache.len)?.contiguous()?, 2, 0)?;
            }
            layers.push((k, v));
        }
        // The new buffers are this cache's alone.
        let len = cache.len;
        *cache = KvCache::new();
        cache.bytes = Some(Arc::new(KvBytes::new(cap * self.kv_bytes_per_position())));
        cache.layers = layers;
        cache.set_len(len);
        Ok(())
    }

    /// Runs `tokens` after the positions already in `cache` and extends it.
    /// Returns logits (f32, `[n, vocab]`, before softmax) for the last
    /// `n_logits` positions of the chunk (0 means none: prefill only);
    /// callers take what they need ([`super::token_logprob`], argmax) instead
    /// of a full-vocabulary log-softmax per position.
    ///
    /// Prompts longer than [`PREFILL_CHUNK`] tokens run as several chunks
    /// over the growing cache (as llama.cpp's micro-batches): the same
    /// numbers up to rounding, with attention scores of at most
    /// `heads × PREFILL_CHUNK × context` values alive at once instead of
    /// `heads × context²` (a 1,500-token few-shot prompt: 20 instead of 80 MB
    /// per score tensor for SmolLM2).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, n_logits: usize) -> Result<Option<Tensor>> {
        if tokens.len() <= PREFILL_CHUNK {
            return self.forward_segments(tokens, &[tokens.len()], cache, n_logits);
        }
        // Room for the whole prompt at once, not one copy per chunk.
        self.reserve(cache, (cache.len + tokens.len()).min(self.max_seq_len))?;
        let mut logits = Vec::new();
        for (c, chunk) in tokens.chunks(PREFILL_CHUNK).enumerate() {
            // Of the last `n_logits` positions, those inside this chunk.
            let after = tokens.len() - (c * PREFILL_CHUNK + chunk.len());
            let wanted = n_logits.saturating_sub(after).min(chunk.len());
            if let Some(l) = self.forward_segments(chunk, &[chunk.len()], cache, wanted)? {
                logits.push(l);
            }
        }
        Ok(match logits.len() {
            0 => None,
            1 => logits.pop(),
            _ => Some(Tensor::cat(&logits, 0)?),
        })
    }

    /// Like [`Transformer::forward`] for `tokens` made of `segments` packed
    /// one after another, each continuing the cache on its own (see
    /// [`attention_mask`]). The cache afterwards holds all of them and is only
    /// good for throwing away unless there was one segment.
    pub fn forward_segments(
        &self,
        tokens: &[u32],
        segments: &[usize],
        cache: &mut KvCache,
        n_logits: usize,
    ) -> Result<Option<Tensor>> {
        self.hidden_segments(tokens, segments, cache, n_logits)?.map(|h| self.head(&h)).transpose()
    }

    /// [`Transformer::forward_segments`] without the output head: the final
    /// normalized hidden states (`[n, n_embd]`) of the last `n_logits`
    /// positions, for callers that run the head a few rows at a time (a
    /// packed pass's logits would be rows × vocabulary floats at once).
    pub fn hidden_segments(
        &self,
        tokens: &[u32],
        segments: &[usize],
        cache: &mut KvCache,
        n_logits: usize,
    ) -> Result<Option<Tensor>> {
        if tokens.is_empty() || segments.iter().sum::<usize>() != tokens.len() {
            bail!("empty chunk, or segments that do not add up to it");
        }
        let slots = segment_slots(segments, cache.len);
        let rows: Vec<u32> = (tokens.len() - n_logits.min(tokens.len())..tokens.len()).map(|r| r as u32).collect();
        let hidden = self.hidden_packed(tokens, &slots, cache, &rows)?;
        Ok((n_logits > 0).then_some(hidden))
    }

    /// Runs a packed chunk after the positions in `cache`: `tokens[i]` sits
    /// at `slots[i]` (document, trunk or branch, position; see
    /// [`attention_mask`]), laid out document after document, each trunk
    /// first and then branch after branch, positions rising within each.
    /// Several questions, each a context and its continuations, go through
    /// the weights together, with the numbers of one pass each up to
    /// rounding. Returns the final normalized hidden states (`[rows, n_embd]`)
    /// of the chunk tokens listed in `rows`. The cache afterwards holds every
    /// chunk token: only good for throwing away unless the chunk was one
    /// plain sequence.
    pub fn hidden_packed(&self, tokens: &[u32], slots: &[Slot], cache: &mut KvCache, rows: &[u32]) -> Result<Tensor> {
        let seq_len = tokens.len();
        if seq_len == 0 || slots.len() != seq_len {
            bail!("empty chunk, or slots that do not match its tokens");
        }
        let pos = cache.len;
        let ranges = document_ranges(slots)?;
        let end = slots.iter().map(|s| s.pos as usize + 1).max().unwrap_or(0);
        if end > self.max_seq_len {
            bail!("sequence of {end} tokens exceeds the model's context of {}", self.max_seq_len);
        }
        if slots.iter().any(|s| (s.pos as usize) < pos) {
            bail!("packed chunk positions must follow the cache's {pos}");
        }
        let hp = &self.hp;
        let x = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let docs =
            ranges.iter().map(|&(s, e)| self.doc_attention((s, e), &slots[s..e], pos)).collect::<Result<Vec<_>>>()?;
        let plain = slots.iter().enumerate().all(|(i, s)| s.pos as usize == pos + i);
        let ropes: Vec<(Tensor, Tensor)> = if plain {
            self.ropes
                .iter()
                .map(|(c, s)| Ok((c.narrow(0, pos, seq_len)?, s.narrow(0, pos, seq_len)?)))
                .collect::<Result<_>>()?
        } else {
            let positions: Vec<u32> = slots.iter().map(|s| s.pos).collect();
            self.ropes_at(&positions)?
        };
        self.reserve(cache, pos + seq_len)?;
        let h = self.layers_forward(&x, &ropes, &mut |l, layer, q, k, v| {
            let (kb, vb) = &cache.layers[l];
            kb.slice_set(k, 2, pos)?;
            vb.slice_set(v, 2, pos)?;
            // One new token (a decode step): straight from the cache's buffers.
            if seq_len == 1 && plain {
                let first = layer.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                if let Some(y) = decode_attention::attend(q, kb, vb, first, pos + 1, hp.attn_scale)? {
                    return Ok(y);
                }
            }
            let (k, v) = (kb.narrow(2, 0, pos + seq_len)?, vb.narrow(2, 0, pos + seq_len)?);
            packed_attention(q, &k, &v, &docs, pos, layer.window.is_some(), hp.attn_scale)
        })?;
        cache.set_len(pos + seq_len);
        let h = match rows {
            [] => return Ok(Tensor::zeros((0, hp.n_embd), h.dtype(), &self.device)?),
            [first, .., last] if rows.is_sorted() && (*last - *first) as usize + 1 == rows.len() => {
                h.narrow(1, *first as usize, rows.len())?
            }
            [only] => h.narrow(1, *only as usize, 1)?,
            _ => h.index_select(&Tensor::new(rows, &self.device)?, 1)?,
        };
        Ok(self.norm.forward(&h)?.squeeze(0)?)
    }

    /// Bytes of keys and values one position takes in a KV cache (f32, every layer).
    pub fn kv_bytes_per_position(&self) -> usize {
        self.layers.len() * 2 * self.hp.n_kv_head * self.hp.head_dim * self.ropes[0].0.dtype().size_in_bytes()
    }

    /// One step of several sequences decoding together: `chunks[s]` (one
    /// token, or a piece of a prompt) after the positions of `seqs[s]`, each
    /// extended by its chunk. The projections and the output head take every
    /// row at once, at least [`GEMM_MIN_ROWS`] of them (filler rows, attended
    /// by nothing, make up the count), so they always run the same kernels
    /// and a sequence's numbers are the same, bit for bit, whatever shares
    /// its step; attention runs sequence by sequence over its own prefix and
    /// positions. Returns the logits (`[seqs, vocab]`) of each chunk's last
    /// token.
    pub fn step_batch(&self, seqs: &mut [&mut SeqCache], chunks: &[&[u32]]) -> Result<Tensor> {
        let hp = &self.hp;
        if seqs.is_empty() || seqs.len() != chunks.len() || chunks.iter().any(|c| c.is_empty()) {
            bail!("a batched step needs one non-empty chunk per sequence");
        }
        let (mut tokens, mut positions, mut spans) = (Vec::new(), Vec::new(), Vec::new());
        for (s, c) in seqs.iter().zip(chunks) {
            let pos = s.len();
            if pos + c.len() > self.max_seq_len {
                bail!("sequence of {} tokens exceeds the model's context of {}", pos + c.len(), self.max_seq_len);
            }
            spans.push((tokens.len(), c.len()));
            tokens.extend_from_slice(c);
            positions.extend((pos..pos + c.len()).map(|p| p as u32));
        }
        let real = tokens.len();
        tokens.resize(real.max(GEMM_MIN_ROWS), tokens[0]);
        positions.resize(tokens.len(), 0);
        // Each prompt piece's masks and key blocks, as one document alone.
        let mut docs = Vec::with_capacity(seqs.len());
        for (s, c) in seqs.iter_mut().zip(chunks) {
            let pos = s.len();
            docs.push(if c.len() > 1 {
                let slots: Vec<Slot> =
                    (pos..pos + c.len()).map(|p| Slot { doc: 0, branch: 0, pos: p as u32 }).collect();
                Some(self.doc_attention((0, c.len()), &slots, pos)?)
            } else {
                None
            });
            let need = s.own.len + c.len();
            self.reserve_in_steps(&mut s.own, need, SEQ_KV_STEP)?;
        }
        let ropes = self.ropes_at(&positions)?;
        let x = Tensor::new(tokens.as_slice(), &self.device)?.unsqueeze(0)?;
        let h = self.layers_forward(&x, &ropes, &mut |l, layer, q, k, v| {
            for (s, &(r0, n)) in seqs.iter().zip(&spans) {
                s.store(l, &k.narrow(2, r0, n)?, &v.narrow(2, r0, n)?)?;
            }
            let mut parts: Vec<Option<Tensor>> = vec![None; seqs.len()];
            // One-token steps: straight from the buffers, the prefix's and their own, together.
            let ones: Vec<usize> = (0..seqs.len()).filter(|&i| docs[i].is_none()).collect();
            let qs = ones.iter().map(|&i| q.narrow(2, spans[i].0, 1)).collect::<candle_core::Result<Vec<_>>>()?;
            let decoding: Vec<&SeqCache> = ones.iter().map(|&i| &*seqs[i]).collect();
            for (&i, y) in ones.iter().zip(SeqCache::attend_tokens(&decoding, l, layer.window, &qs, hp.attn_scale)?) {
                parts[i] = Some(y);
            }
            for (i, doc) in docs.iter().enumerate() {
                if let Some(doc) = doc {
                    let (r0, n) = spans[i];
                    parts[i] = Some(seqs[i].attend_chunk(l, layer.window, &q.narrow(2, r0, n)?, doc, hp.attn_scale)?);
                }
            }
            let mut parts: Vec<Tensor> = parts.into_iter().map(|p| p.expect("every sequence attended")).collect();
            if tokens.len() > real {
                parts.push(Tensor::zeros((1, hp.n_head, tokens.len() - real, hp.head_dim), q.dtype(), &self.device)?);
            }
            Ok(Tensor::cat(&parts, 2)?)
        })?;
        for (s, c) in seqs.iter_mut().zip(chunks) {
            let len = s.own.len + c.len();
            s.own.set_len(len);
        }
        let mut last: Vec<u32> = spans.iter().map(|&(r0, n)| (r0 + n - 1) as u32).collect();
        last.resize(seqs.len().max(GEMM_MIN_ROWS), last[0]);
        let h = h.index_select(&Tensor::new(last.as_slice(), &self.device)?, 1)?;
        Ok(self.head(&self.norm.forward(&h)?.squeeze(0)?)?.narrow(0, 0, seqs.len())?)
    }

    /// One document of a packed chunk for attention: its chunk range, its
    /// tokens' `slots`, the cache's `pos` positions before it.
    fn doc_attention(&self, range: (usize, usize), slots: &[Slot], pos: usize) -> Result<DocAttention> {
        Ok(DocAttention {
            range,
            global_mask: attention_mask(slots, pos, None, &self.device)?,
            local_mask: match self.hp.sliding_window {
                Some(w) => attention_mask(slots, pos, Some(w), &self.device)?,
                None => None,
            },
            keys: block_keys(range.1 - range.0, pos),
        })
    }

    /// Each RoPE table's `(cos, sin)` rows at `positions`.
    fn ropes_at(&self, positions: &[u32]) -> Result<Vec<(Tensor, Tensor)>> {
        let idx = Tensor::new(positions, &self.device)?;
        self.ropes.iter().map(|(c, s)| Ok((c.index_select(&idx, 0)?, s.index_select(&idx, 0)?))).collect()
    }

    /// The embedding of `x` (`(1, n)` token ids) through every layer, each
    /// row at its RoPE position (`ropes`: one `(cos, sin)` table per base,
    /// `n` rows each). `attend(layer index, layer, q, k, v)` takes one
    /// layer's queries, keys and values (`(1, heads, n, head_dim)`, RoPE
    /// applied, contiguous), stores the keys and values where its caller
    /// keeps them, and returns the attention output `(1, heads, n,
    /// head_dim)`. Returns the hidden states `(1, n, n_embd)` before the
    /// final norm.
    fn layers_forward(&self, x: &Tensor, ropes: &[(Tensor, Tensor)], attend: &mut LayerAttention) -> Result<Tensor> {
        let hp = &self.hp;
        let seq_len = x.dim(1)?;
        let mut h = self.embed.forward(x)?;
        if let Some(s) = self.embed_scale {
            h = (h * s)?;
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let residual = h.clone();
            let xs = layer.attn_norm.forward(&h)?;
            let a = &layer.attn;
            let (mut q, mut k, v) = a.qkv.forward(&xs, hp, seq_len)?;
            if let Some(n) = &a.q_norm {
                q = n.forward(&q)?;
            }
            if let Some(n) = &a.k_norm {
                k = n.forward(&k)?;
            }
            let (cos, sin) = &ropes[layer.rope];
            let (q, k) = if hp.rope_neox {
                (candle_nn::rotary_emb::rope(&q, cos, sin)?, candle_nn::rotary_emb::rope(&k, cos, sin)?)
            } else {
                (candle_nn::rotary_emb::rope_i(&q, cos, sin)?, candle_nn::rotary_emb::rope_i(&k, cos, sin)?)
            };
            let y = attend(l, layer, &q.contiguous()?, &k.contiguous()?, &v)?;
            let y = y.transpose(1, 2)?.reshape((1, seq_len, hp.n_head * hp.head_dim))?;
            let mut y = a.wo.forward(&y)?;
            if let Some(n) = &layer.post_attn_norm {
                y = n.forward(&y)?;
            }
            let h2 = (y + residual)?;
            let residual = h2.clone();
            let xs = layer.ffn_norm.forward(&h2)?;
            let act = if hp.family == Family::Gemma3 { Act::GeluTanh } else { Act::Silu };
            let mut y = layer.down.forward(&layer.gate_up.forward(act, &xs)?)?;
            if let Some(n) = &layer.post_ffn_norm {
                y = n.forward(&y)?;
            }
            h = (y + residual)?;
        }
        Ok(h)
    }

    /// For each row of final hidden states `[n, n_embd]` (from
    /// [`Transformer::hidden_segments`]): log p(`targets[i]`) and whether it
    /// is the argmax, streamed through the output head without a logits
    /// tensor ([`Linear::token_logprobs`]); `None` where that path does not
    /// apply (the caller uses [`Transformer::head`]).
    pub fn head_logprobs(&self, hidden: &Tensor, targets: &[u32]) -> Result<Option<Vec<(f64, bool)>>> {
        self.output.token_logprobs(hidden, targets)
    }

    /// Rows of the output head (the vocabulary, padding included).
    pub fn vocab_size(&self) -> usize {
        self.output.out_features()
    }

    /// Logits (f32, `[n, vocab]`) of final hidden states `[n, n_embd]` from
    /// [`Transformer::hidden_segments`].
    pub fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.output.forward(hidden)?.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask_rows(seq_len: usize, pos: usize, window: Option<usize>) -> Vec<Vec<bool>> {
        match attention_mask(&segment_slots(&[seq_len], pos), pos, window, &Device::Cpu).unwrap() {
            None => vec![vec![true; pos + seq_len]; seq_len],
            Some(m) => m.to_vec2::<f32>().unwrap().iter().map(|r| r.iter().map(|v| v.is_finite()).collect()).collect(),
        }
    }

    #[test]
    fn packed_segments_see_the_cache_and_themselves_only() {
        let m = match attention_mask(&segment_slots(&[2, 1], 2), 2, None, &Device::Cpu).unwrap() {
            Some(m) => m.to_vec2::<f32>().unwrap(),
            None => panic!("mask expected"),
        };
        let rows: Vec<Vec<bool>> = m.iter().map(|r| r.iter().map(|v| v.is_finite()).collect()).collect();
        // Keys: two cached positions, then segment A (2 tokens), segment B (1 token).
        assert_eq!(rows[0], vec![true, true, true, false, false]);
        assert_eq!(rows[1], vec![true, true, true, true, false]);
        assert_eq!(rows[2], vec![true, true, false, false, true]);
        // A sliding window counts positions within the segment, not the packing.
        let m = attention_mask(&segment_slots(&[2, 2], 3), 3, Some(3), &Device::Cpu)
            .unwrap()
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let last: Vec<bool> = m[3].iter().map(|v| v.is_finite()).collect();
        // Query at position 4 (B's second token): sees cache 2, B's 3 and 4.
        assert_eq!(last, vec![false, false, true, false, false, true, true]);
    }

    fn slot(doc: u32, branch: u32, pos: u32) -> Slot {
        Slot { doc, branch, pos }
    }

    #[test]
    fn packed_documents_see_their_trunk_and_own_branch_only() {
        // Document 0: trunk at 0-1, branch 1 at 2-3, branch 2 at 2;
        // document 1: trunk at 0, branch 1 at 1.
        let slots =
            [slot(0, 0, 0), slot(0, 0, 1), slot(0, 1, 2), slot(0, 1, 3), slot(0, 2, 2), slot(1, 0, 0), slot(1, 1, 1)];
        let m = attention_mask(&slots, 0, None, &Device::Cpu).unwrap().unwrap().to_vec2::<f32>().unwrap();
        let seen: Vec<Vec<bool>> = m.iter().map(|r| r.iter().map(|v| v.is_finite()).collect()).collect();
        let row = |bits: &str| bits.chars().map(|c| c == '1').collect::<Vec<bool>>();
        assert_eq!(seen[1], row("1100000"));
        assert_eq!(seen[3], row("1111000"), "branch 1 sees the trunk and itself");
        assert_eq!(seen[4], row("1100100"), "branch 2 does not see branch 1");
        assert_eq!(seen[6], row("0000011"), "document 1 sees nothing of document 0");
        // A cache in front is seen by every token; windows count positions.
        let after = [slot(0, 0, 5), slot(0, 1, 6), slot(1, 0, 5)];
        let m = attention_mask(&after, 5, Some(3), &Device::Cpu).unwrap().unwrap().to_vec2::<f32>().unwrap();
        let seen: Vec<bool> = m[1].iter().map(|v| v.is_finite()).collect();
        assert_eq!(seen, vec![false, false, false, false, true, true, true, false]);
    }

    #[test]
    fn packed_chunks_must_be_laid_out_in_order() {
        let ok = [slot(0, 0, 0), slot(0, 0, 1), slot(0, 1, 2), slot(0, 2, 2), slot(3, 0, 0), slot(3, 1, 1)];
        assert_eq!(document_ranges(&ok).unwrap(), vec![(0, 4), (4, 6)]);
        for bad in [
            vec![slot(0, 1, 2), slot(0, 0, 3)], // trunk after a branch
            vec![slot(1, 0, 0), slot(0, 0, 1)], // a document again
            vec![slot(0, 0, 1), slot(0, 0, 1)], // positions not rising
        ] {
            assert!(document_ranges(&bad).is_err(), "{bad:?}");
        }
    }

    /// A document of `n` tokens: trunk, then two branches.
    fn document(doc: u32, n: u32, pos: u32) -> Vec<Slot> {
        let trunk = n / 2;
        let mut slots: Vec<Slot> = (0..trunk).map(|p| slot(doc, 0, pos + p)).collect();
        slots.extend((trunk..n - n / 4).map(|p| slot(doc, 1, pos + p)));
        slots.extend((trunk..trunk + n / 4).map(|p| slot(doc, 2, pos + p)));
        slots
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// Trimming each block of queries to the keys it may see gives the
    /// numbers of the whole key range (the skipped keys are all masked).
    #[test]
    fn attention_blocks_skip_only_hidden_keys() {
        let dev = Device::Cpu;
        for pos in [0usize, 7] {
            let slots = document(0, 300, pos as u32);
            let (seq, total) = (slots.len(), pos + slots.len());
            let q = Tensor::randn(0f32, 1.0, (1, 4, seq, 8), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (1, 2, total, 8), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (1, 2, total, 8), &dev).unwrap();
            let m = attention_mask(&slots, pos, None, &dev).unwrap().unwrap();
            let keys = block_keys(seq, pos);
            assert_eq!(keys, vec![(0, pos + 128), (0, pos + 256), (0, pos + 300)]);
            let all = grouped_attention(&q, &k, &v, Some(&m), 0.3, &[]).unwrap();
            let trimmed = grouped_attention(&q, &k, &v, Some(&m), 0.3, &keys).unwrap();
            assert!(max_diff(&all, &trimmed) < 1e-5);
        }
    }

    /// Each document of a packed chunk gets, bit for bit, the attention it
    /// gets alone, whatever it is packed with and wherever it sits; and the
    /// numbers match one masked attention over the whole chunk.
    #[test]
    fn packed_documents_attend_as_if_alone() {
        let dev = Device::Cpu;
        for pos in [0usize, 5] {
            let sizes = [40u32, 150, 9];
            let slots: Vec<Slot> =
                sizes.iter().enumerate().flat_map(|(d, &n)| document(d as u32, n, pos as u32)).collect();
            let (seq, total) = (slots.len(), pos + slots.len());
            let q = Tensor::randn(0f32, 1.0, (1, 4, seq, 8), &dev).unwrap();
            let k = Tensor::randn(0f32, 1.0, (1, 2, total, 8), &dev).unwrap();
            let v = Tensor::randn(0f32, 1.0, (1, 2, total, 8), &dev).unwrap();
            let docs_of = |slots: &[Slot]| -> Vec<DocAttention> {
                document_ranges(slots)
                    .unwrap()
                    .into_iter()
                    .map(|(s, e)| DocAttention {
                        range: (s, e),
                        global_mask: attention_mask(&slots[s..e], pos, None, &dev).unwrap(),
                        local_mask: None,
                        keys: block_keys(e - s, pos),
                    })
                    .collect()
            };
            let packed = packed_attention(&q, &k, &v, &docs_of(&slots), pos, false, 0.3).unwrap();
            let whole = attention_mask(&slots, pos, None, &dev).unwrap();
            let reference = grouped_attention(&q, &k, &v, whole.as_ref(), 0.3, &[]).unwrap();
            assert!(max_diff(&packed, &reference) < 1e-5);
            // Document 1 alone: its queries, the cache's keys and its own.
            let (s, e) = (40, 190);
            let alone_k = |t: &Tensor| match pos {
                0 => t.narrow(2, s, e - s).unwrap().contiguous().unwrap(),
                _ => Tensor::cat(&[t.narrow(2, 0, pos).unwrap(), t.narrow(2, pos + s, e - s).unwrap()], 2).unwrap(),
            };
            let own = &slots[s..e];
            let alone = packed_attention(
                &q.narrow(2, s, e - s).unwrap().contiguous().unwrap(),
                &alone_k(&k),
                &alone_k(&v),
                &docs_of(own),
                pos,
                false,
                0.3,
            )
            .unwrap();
            let bits = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(bits(&alone), bits(&packed.narrow(2, s, e - s).unwrap()));
        }
    }

    #[test]
    fn causal_mask_sees_past_and_self_only() {
        let m = mask_rows(3, 2, None);
        assert_eq!(m[0], vec![true, true, true, false, false]);
        assert_eq!(m[2], vec![true; 5]);
        // One query, no window: nothing to mask.
        assert!(attention_mask(&segment_slots(&[1], 10), 10, None, &Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn sliding_window_hides_keys_window_or_more_behind() {
        // Window 2: the query at position 4 sees keys 3 and 4 only.
        let m = mask_rows(1, 4, Some(2));
        assert_eq!(m[0], vec![false, false, false, true, true]);
        let m = mask_rows(3, 0, Some(2));
        assert_eq!(m[2], vec![false, true, true]);
        // Within the window a single query needs no mask.
        assert!(attention_mask(&segment_slots(&[1], 1), 1, Some(2), &Device::Cpu).unwrap().is_none());
    }
}

#[cfg(test)]
mod gqa_tests {
    use candle_core::{Device, Tensor};

    #[test]
    fn grouped_attention_equals_repeated_kv() {
        let dev = Device::Cpu;
        let (n_head, n_kv, seq, total, hd) = (6, 2, 3, 5, 4);
        let rep = n_head / n_kv;
        let q = Tensor::randn(0f32, 1.0, (1, n_head, seq, hd), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, n_kv, total, hd), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, n_kv, total, hd), &dev).unwrap();
        let kr = candle_transformers::utils::repeat_kv(k.clone(), rep).unwrap();
        let vr = candle_transformers::utils::repeat_kv(v.clone(), rep).unwrap();
        let m = super::attention_mask(&super::segment_slots(&[seq], total - seq), total - seq, None, &dev)
            .unwrap()
            .unwrap();
        let a = q.matmul(&kr.t().unwrap()).unwrap().broadcast_add(&m).unwrap();
        let a = candle_nn::ops::softmax_last_dim(&a).unwrap().matmul(&vr).unwrap();
        // The forward pass's own attention, on the un-repeated K/V.
        let b = super::grouped_attention(&q, &k, &v, Some(&m), 1.0, &[]).unwrap();
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(d < 1e-5, "{d}");
        // And a query head paired with the wrong KV head is caught: swapping
        // the two KV heads changes the answer.
        let swapped = Tensor::cat(&[k.narrow(1, 1, 1).unwrap(), k.narrow(1, 0, 1).unwrap()], 1).unwrap();
        let c = super::grouped_attention(&q, &swapped, &v, Some(&m), 1.0, &[]).unwrap();
        let a2 = (c - super::grouped_attention(&q, &k, &v, Some(&m), 1.0, &[]).unwrap()).unwrap();
        assert!(a2.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap() > 1e-3);
    }
}
