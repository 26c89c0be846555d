//! The forward pass's matrix products, `x · Wᵀ` for a quantized weight `W`
//! (one per projection), and the choice of kernel for each call.
//!
//! candle's quantized matmul has only scalar dot products for Q4_1 and Q5_0
//! (the default model's type, and most of Gemma 3's and Qwen2.5's tensors),
//! and computes many rows as many one-row products. So for Q4_1, Q5_0 and
//! Q8_0 weights, on x86 CPUs with AVX2, FMA and F16C:
//! - **fewer than [`GEMM_MIN_ROWS`] rows** (decode): our own AVX2 dot
//!   products of the file's blocks against the activation rows quantized to
//!   8 bits (as llama.cpp's `q4_1_q8_1`, `q5_0_q8_0`, `q8_0_q8_0`;
//!   `vpdpbusd` where AVX-512 VNNI is compiled in), each weight row read as
//!   one stream, so Q4_1 files stream their 4-bit weights per token, its
//!   bytes asked for ahead of use ([`Prefetch`]); Q5_0
//!   and Q8_0 weights a projection owns alone are regrouped at load, four
//!   blocks' scales first (`BlockOrder::Grouped`: same bytes, half the
//!   instructions per Q5_0 block); with several rows, a Q4_1/Q5_0 weight row
//!   is unpacked to bytes once for all;
//! - **more rows** (prefill chunks, packed continuations, the output head
//!   of scored rows): in 8-bit integers (`int8_gemm`: eight weight rows
//!   unpacked and interleaved per panel, 4 × 8 tiles of `maddubs` /
//!   `vpdpbusd`). Panels in parallel; no copy of the weights beyond one
//!   panel per thread. The streamed output head
//!   ([`Linear::token_logprobs`]) folds each panel's logits into running
//!   log-softmax statistics.
//!
//! Everything else — the K-quants (candle's AVX2 dot products and AVX-512
//! VNNI repacks are fast), f32 weights, CUDA, CPUs without AVX2, or
//! `OPENWEIGH_CANDLE_KERNELS=1` (to compare) — runs candle's `QMatMul`.
//! Work is spread over candle's spinning thread pool (see [`parallel_for`]).
//! `benches/kernels.rs` times each path against candle's.

use anyhow::Result;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{CpuStorage, CustomOp1, Layout, Module, Shape, Tensor};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::int8_gemm::{Int8Weight, Values};

/// Rows (tokens in one call) from which the int8 GEMM path runs
/// instead of row-by-row dot products. Kernel benchmarks alone
/// (`benches/kernels.rs`, one cache-resident Q4_1 1536 × 576 weight) put the
/// crossing near 64 rows, but whole models, whose weights stream from
/// memory, score multiple-choice items fastest from about 8: HellaSwag
/// items/s against llama.cpp on a 2-core Zen 5 went from 0.75× (64) to
/// 0.81× (16) and 0.82× (8) for Qwen2.5-Coder-0.5B, and from 0.66× (64) to
/// 0.80× (8) for Gemma 3 270M, SmolLM2 unchanged (1.16×).
pub const GEMM_MIN_ROWS: usize = 8;

/// Output rows of the streamed head per step ([`head_logprobs`]): their
/// logits for every scored row (64 × rows f32) stay in cache while their
/// running statistics are folded in.
const PANEL_ROWS: usize = 64;

/// How far ahead of the weight byte being read a thread asks for the next
/// ones ([`Prefetch`]). Decode streams every weight once per token, and the
/// hardware prefetcher alone left it well short of the memory's bandwidth
/// (Xeon Emerald Rapids, 2 threads, `openweigh bench --prompt-tokens 1
/// --output-tokens 129`, tok/s at 0 / 2 / 4 / 8 / 16 KiB: Gemma 3 270M
/// 61 / 84 / 97 / 98 / 94, SmolLM2 228 / 255 / 271 / 277 / 278,
/// Qwen2.5-Coder-0.5B 37 / 48 / 53 / 52 / 52).
const PREFETCH_BYTE: usize = 8192;

/// Software prefetch over one thread's stretch of weight bytes, read in
/// order: before reading at an offset, the lines up to [`PREFETCH_BYTE`]
/// past it are asked for, each once.
pub(super) struct Prefetch<'a> {
    bytes: &'a [u8],
    /// Bytes from the start already asked for.
    asked: usize,
}

impl<'a> Prefetch<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Prefetch { bytes, asked: 0 }
    }

    /// Asks for the lines up to [`PREFETCH_BYTE`] past `offset` (from the
    /// stretch's start) not asked for yet.
    #[inline]
    pub(super) fn before(&mut self, offset: usize) {
        let upto = (offset + PREFETCH_BYTE).min(self.bytes.len());
        while self.asked < upto {
            x86::prefetch(self.bytes[self.asked..].as_ptr());
            self.asked += 64;
        }
    }
}

/// A projection's weight and the kernels that can multiply by it.
pub struct Linear {
    weights: Weights,
    /// Output features (rows of W).
    n: usize,
    /// Input features (columns of W).
    k: usize,
}

/// Where a weight's bytes live and whose kernels read them.
enum Weights {
    /// candle's `QMatMul` (types we have no kernels for, f32, CUDA, CPUs
    /// without AVX2/FMA/F16C, `OPENWEIGH_CANDLE_KERNELS=1`).
    Candle(QMatMul),
    /// Our kernels on the file's blocks, the tensor shared with others (a
    /// tied embedding table) or of a type we do not regroup (Q4_1).
    Blocks(Arc<QTensor>),
    /// Our kernels on bytes of our own: rows regrouped at load
    /// ([`BlockOrder::Grouped`]: the same bytes in another order, the file's
    /// copy dropped), or several weights' rows one after another
    /// ([`Linear::join`]).
    Bytes { dtype: GgmlDType, order: BlockOrder, data: Vec<u8> },
}

/// A weight our kernels run: its type, block order and bytes.
type OwnWeight<'a> = (GgmlDType, BlockOrder, std::borrow::Cow<'a, [u8]>);

/// The order of a weight's blocks in memory, as our kernels read it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BlockOrder {
    /// The GGUF layout: each row its blocks one after another.
    Blocks,
    /// Q5_0 and Q8_0 rows in groups of [`GROUP`] blocks (88 and 136 bytes,
    /// as four of the file's blocks) with the four f16 scales first and
    /// the quants after them in the order the AVX2 kernels consume, so a
    /// group's scales convert and multiply in one instruction each and a
    /// Q5_0 value costs fewer instructions to assemble (see
    /// [`regroup`]); a row's last `kb % 4` blocks stay as in the file.
    Grouped,
}

/// Blocks of 32 values per group of [`BlockOrder::Grouped`].
const GROUP: usize = 4;

/// Whether this CPU runs our x86 kernels (checked once per weight at load).
pub(super) fn cpu_has_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The types our kernels take over from candle's: those with our own dot
/// product (and dequantization for the GEMM path). The K-quants stay with
/// candle, whose AVX2 dot products and AVX-512 VNNI repacks (K a multiple
/// of 256) beat dequantize-and-GEMM (`benches/kernels.rs`: 64 rows of a Q4_K
/// 1536 × 512 weight took 135 µs in candle, 680 µs dequantized).
fn own_dot(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q8_0)
}

/// Whether our kernels run `w` (see [`Weights`]).
fn ours(w: &QTensor) -> bool {
    w.device().is_cpu()
        && own_dot(w.dtype())
        && w.shape().dims().last().is_some_and(|k| k % w.dtype().block_size() == 0)
        && cpu_has_kernels()
        && std::env::var_os("OPENWEIGH_CANDLE_KERNELS").is_none()
}

/// The types [`BlockOrder::Grouped`] exists for. Q4_1 keeps the file's layout:
/// its kernel already takes two blocks per step (their nibbles in one
/// register, their scales in one conversion).
fn regroups(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::Q5_0 | GgmlDType::Q8_0)
}

/// `n` rows of `kb` blocks of type `t` (Q5_0 or Q8_0) in the file's layout,
/// reordered into [`BlockOrder::Grouped`] (the same number of bytes). A group
/// of four Q5_0 blocks (each f16 d, 32 high bits, 16 bytes of nibbles with
/// element i low and i + 16 high) becomes
/// - 8 bytes: the four d;
/// - 16 bytes: byte i holds, in its low nibble, the high bit of element i
///   of block b at bit b, and in its high nibble those of element i + 16;
/// - 2 × 32 bytes: byte j of the first holds element j's low four bits of
///   block 0 (low nibble) and block 1 (high nibble); the second, blocks 2
///   and 3.
///
/// A group of four Q8_0 blocks becomes the four d, then the four blocks'
/// 32 quants each. The last `kb % 4` blocks of a row are copied as they are.
fn regroup(t: GgmlDType, data: &[u8], n: usize, kb: usize) -> Vec<u8> {
    let bb = t.type_size();
    let row_bytes = kb * bb;
    assert!(data.len() >= n * row_bytes, "weight data shorter than {n} rows");
    let mut out = vec![0u8; n * row_bytes];
    for (src, dst) in data.chunks_exact(row_bytes).zip(out.chunks_exact_mut(row_bytes)).take(n) {
        let groups = kb / GROUP;
        let split = groups * GROUP * bb;
        dst[split..].copy_from_slice(&src[split..]);
        for (s, d) in src[..split].chunks_exact(GROUP * bb).zip(dst[..split].chunks_exact_mut(GROUP * bb)) {
            let block = |b: usize| &s[b * bb..(b + 1) * bb];
            for b in 0..GROUP {
                d[2 * b..2 * b + 2].copy_from_slice(&block(b)[..2]);
            }
            match t {
                GgmlDType::Q8_0 => {
                    for b in 0..GROUP {
                        d[8 + 32 * b..8 + 32 * (b + 1)].copy_from_slice(&block(b)[2..34]);
                    }
                }
                GgmlDType::Q5_0 => {
                    let (bits, nib) = d[8..].split_at_mut(16);
                    for b in 0..GROUP {
                        let blk = block(b);
                        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                        let nib = &mut nib[32 * (b / 2)..32 * (b / 2) + 32];
                        let shift = 4 * (b % 2);
                        for i in 0..16 {
                            // Elements i and i + 16.
                            let (h0, h1) = (((qh >> i) & 1) as u8, ((qh >> (i + 16)) & 1) as u8);
                            bits[i] |= (h0 | h1 << 4) << b;
                            nib[i] |= (blk[6 + i] & 0x0F) << shift;
                            nib[i + 16] |= (blk[6 + i] >> 4) << shift;
                        }
                    }
                }
                other => unreachable!("no grouped layout for {other:?}"),
            }
        }
    }
    out
}

impl Linear {
    /// A weight this projection owns alone: Q5_0 and Q8_0 are regrouped
    /// ([`BlockOrder::Grouped`]) when our kernels run it.
    pub fn new(w: QTensor) -> Result<Self> {
        let (n, k) = w.shape().dims2()?;
        if ours(&w) && regroups(w.dtype()) {
            let data = regroup(w.dtype(), &w.data()?, n, k / 32);
            return Ok(Self { weights: Weights::Bytes { dtype: w.dtype(), order: BlockOrder::Grouped, data }, n, k });
        }
        Self::from_arc(Arc::new(w))
    }

    /// A weight shared with others (a tied embedding table): our kernels
    /// read the file's blocks as they are.
    pub fn from_arc(w: Arc<QTensor>) -> Result<Self> {
        let (n, k) = w.shape().dims2()?;
        let weights = if ours(&w) { Weights::Blocks(w) } else { Weights::Candle(QMatMul::from_arc(w)?) };
        Ok(Self { weights, n, k })
    }

    /// Output features (rows of W).
    pub fn out_features(&self) -> usize {
        self.n
    }

    /// The weights of `parts` (projections of one input) stacked into one,
    /// whose output is theirs side by side, when our kernels run them all
    /// with one type and block order; None otherwise. Each output value is
    /// computed from its own weight row as before, so the results are the
    /// parts' own, bit for bit.
    pub fn join(parts: &[&Linear]) -> Result<Option<Linear>> {
        let mut joined: Option<(GgmlDType, BlockOrder, Vec<u8>)> = None;
        for part in parts {
            let Some((dtype, order, data)) = part.own()? else { return Ok(None) };
            if part.k != parts[0].k {
                return Ok(None);
            }
            match &mut joined {
                None => joined = Some((dtype, order, data.into_owned())),
                Some((t, o, bytes)) if (*t, *o) == (dtype, order) => bytes.extend_from_slice(&data),
                Some(_) => return Ok(None),
            }
        }
        Ok(joined.map(|(dtype, order, data)| Linear {
            weights: Weights::Bytes { dtype, order, data },
            n: parts.iter().map(|p| p.n).sum(),
            k: parts[0].k,
        }))
    }

    /// The weight as our kernels read it; None when candle's kernels run it.
    fn own(&self) -> Result<Option<OwnWeight<'_>>> {
        Ok(match &self.weights {
            Weights::Candle(_) => None,
            Weights::Blocks(w) => Some((w.dtype(), BlockOrder::Blocks, w.data()?)),
            Weights::Bytes { dtype, order, data } => Some((*dtype, *order, std::borrow::Cow::Borrowed(data))),
        })
    }

    /// `x` (…, k) times Wᵀ: (…, n).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let Some((dtype, layout, data)) = self.own()? else {
            let Weights::Candle(mm) = &self.weights else { unreachable!("own() is None for candle's only") };
            return Ok(mm.forward(x)?);
        };
        let rows = x.elem_count() / self.k.max(1);
        let op = if rows >= GEMM_MIN_ROWS { Op::Gemm } else { Op::Dot };
        let x =
            if x.dtype() == candle_core::DType::F32 { x.contiguous()? } else { x.to_dtype(candle_core::DType::F32)? };
        Ok(x.apply_op1_no_bwd(&Call { dtype, layout, data: &data, n: self.n, k: self.k, op })?)
    }

    /// For each row `i` of `x` (`m × k`): log p(`targets[i]`) under the
    /// softmax of that row's product with Wᵀ, and whether `targets[i]` is the
    /// row's argmax (the first one, as [`super::token_logprob`]) — without
    /// ever holding the `m × n` logits: each panel of [`PANEL_ROWS`] output
    /// rows is dequantized once, multiplied for all `m` rows, and folded
    /// into per-row running (max, Σ exp, argmax, target logit), with the
    /// panels spread over the threads. For an output head this is one pass
    /// over its weights per scored block, whatever the vocabulary (Gemma 3:
    /// 262,144 rows). `None` when our kernels do not cover this weight or `m`
    /// is under [`GEMM_MIN_ROWS`] (the caller computes logits instead).
    pub fn token_logprobs(&self, x: &Tensor, targets: &[u32]) -> Result<Option<Vec<(f64, bool)>>> {
        let Some((dtype, layout, data)) = self.own()? else { return Ok(None) };
        let m = x.elem_count() / self.k.max(1);
        if m < GEMM_MIN_ROWS || m != targets.len() {
            return Ok(None);
        }
        let Some(w) = int8_weight(dtype, layout, &data, self.n, self.k) else { return Ok(None) };
        let x = x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Some(head_logprobs(w, &x, m, targets)))
    }
}

/// Running log-softmax pieces of one row while its logits stream by.
#[derive(Clone, Copy)]
struct RowStats {
    /// Largest logit so far, and Σ exp(logit − max) over the logits so far.
    max: f32,
    sum: f64,
    /// First index holding `max`.
    best: u32,
    /// The target's logit, once its panel has been seen.
    target: Option<f32>,
}

impl RowStats {
    const EMPTY: Self = Self { max: f32::NEG_INFINITY, sum: 0.0, best: 0, target: None };

    /// Folds in `other`, which covers later columns than `self`.
    fn merge(&mut self, other: &RowStats) {
        if other.max > self.max {
            self.sum = self.sum * ((self.max - other.max) as f64).exp() + other.sum;
            self.max = other.max;
            self.best = other.best;
        } else if other.sum > 0.0 {
            self.sum += other.sum * ((other.max - self.max) as f64).exp();
        }
        self.target = self.target.or(other.target);
    }

    /// The stats of one block of logits starting at column `j0`. Σ exp runs
    /// in 16 lanes (one AVX-512 register, two AVX2 ones) so that it
    /// vectorizes; a single running sum would chain every addition.
    fn of_block(block: &[f32], j0: usize, target: u32) -> Self {
        let best = super::argmax(block) as usize;
        let max = block[best];
        let mut lanes = [0f32; 16];
        let chunks = block.chunks_exact(16);
        let rest: f32 = chunks.remainder().iter().map(|&v| super::activation::exp(v - max)).sum();
        for chunk in chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += super::activation::exp(v - max);
            }
        }
        let sum = lanes.iter().sum::<f32>() + rest;
        let t = (target as usize).wrapping_sub(j0);
        Self { max, sum: sum as f64, best: (j0 + best) as u32, target: block.get(t).copied() }
    }
}

/// Panels per parallel task of [`head_logprobs`] (1,024 output rows): enough
/// work per task to keep the threads busy, few tasks to merge.
const HEAD_PANELS_PER_TASK: usize = 16;

thread_local! {
    /// One panel's logits for every scored row, per worker thread.
    static LOGITS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// See [`Linear::token_logprobs`].
fn head_logprobs(w: Int8Weight, x: &[f32], m: usize, targets: &[u32]) -> Vec<(f64, bool)> {
    let n = w.n;
    assert!(x.len() == m * w.k && targets.len() == m);
    let xq = quantize_rows(x, w.k, false);
    let panels = n.div_ceil(PANEL_ROWS);
    let tasks = panels.div_ceil(HEAD_PANELS_PER_TASK);
    let parts: Vec<std::sync::Mutex<Vec<RowStats>>> =
        (0..tasks).map(|_| std::sync::Mutex::new(vec![RowStats::EMPTY; m])).collect();
    parallel_for(tasks, |t| {
        let mut stats = parts[t].lock().unwrap_or_else(|e| e.into_inner());
        for p in t * HEAD_PANELS_PER_TASK..((t + 1) * HEAD_PANELS_PER_TASK).min(panels) {
            let j0 = p * PANEL_ROWS;
            let nj = PANEL_ROWS.min(n - j0);
            LOGITS.with(|logits| {
                let mut logits = logits.borrow_mut();
                logits.resize(m * nj, 0.0);
                // SAFETY: logits holds m × nj (resized just above); CPU
                // features checked at load.
                unsafe { w.block(&xq, m, j0, nj, DstPtr::new(&mut logits), nj, 0) };
                for (r, s) in stats.iter_mut().enumerate() {
                    s.merge(&RowStats::of_block(&logits[r * nj..(r + 1) * nj], j0, targets[r]));
                }
            });
        }
    });
    let mut total = vec![RowStats::EMPTY; m];
    for part in parts {
        for (s, p) in total.iter_mut().zip(part.into_inner().unwrap_or_else(|e| e.into_inner())) {
            s.merge(&p);
        }
    }
    total
        .iter()
        .zip(targets)
        .map(|(s, &tok)| {
            let lp = s.target.map_or(f64::NEG_INFINITY, |t| t as f64 - s.max as f64 - s.sum.ln());
            (lp, s.best == tok)
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Op {
    Gemm,
    Dot,
}

struct Call<'a> {
    dtype: GgmlDType,
    layout: BlockOrder,
    data: &'a [u8],
    n: usize,
    k: usize,
    op: Op,
}

impl CustomOp1 for Call<'_> {
    fn name(&self) -> &'static str {
        "openweigh-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else { candle_core::bail!("openweigh-linear: f32 input expected") };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("openweigh-linear: contiguous input expected")
        };
        let x = &all[start..end];
        let dims = layout.shape().dims();
        if dims.last() != Some(&self.k) {
            candle_core::bail!("openweigh-linear: input {dims:?} does not end in {}", self.k)
        }
        let m = x.len() / self.k;
        // Not zeroed first: every kernel below writes each of the m × n
        // outputs (zeroing them cost 1–2% of a scoring run).
        let mut dst = Vec::<f32>::with_capacity(m * self.n);
        let out = &mut dst.spare_capacity_mut()[..m * self.n];
        let (t, layout, data) = (self.dtype, self.layout, self.data);
        match self.op {
            Op::Gemm => gemm_dispatch(t, layout, data, x, m, self.k, self.n, out),
            Op::Dot => dot_rows(t, layout, data, x, m, self.k, self.n, out),
        }
        // SAFETY: the kernels above wrote all m × n values.
        unsafe { dst.set_len(m * self.n) };
        let mut out = dims.to_vec();
        *out.last_mut().expect("non-empty dims") = self.n;
        Ok((CpuStorage::F32(dst), Shape::from(out)))
    }
}

/// Runs `f(i)` for every `i` in `0..items` on candle's compute threads (a
/// spinning pool: a decode step makes about 200 calls of a few microseconds
/// each, where waking rayon's sleeping workers cost more than the work).
/// Threads take the next item from a shared counter, so a slow core does less.
/// On a thread inside [`serially`], runs them all on that thread.
pub(super) fn parallel_for(items: usize, f: impl Fn(usize) + Sync) {
    if SERIAL.get() {
        (0..items).for_each(f);
        return;
    }
    let next = AtomicUsize::new(0);
    candle_core::utils::barrier_pool().execute(|_thread| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= items {
            break;
        }
        f(i);
    });
}

thread_local! {
    /// Set inside [`serially`]: this thread's kernels run on it alone.
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every kernel of ours that it calls on this thread alone
/// ([`parallel_for`] runs its items in order here): for work that runs
/// side by side with other such work, one job a thread (`lanes`). Each
/// output is computed by the same operations either way.
pub(super) fn serially<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SERIAL.set(self.0);
        }
    }
    let _reset = Reset(SERIAL.replace(true));
    f()
}

/// Runs `f(range)` on candle's compute threads, `0..items` cut into one
/// contiguous range per thread: for memory-bound work (one activation row
/// against a large weight), where each core streaming its own stretch of
/// the weights reads memory faster than interleaved chunks do.
fn parallel_ranges(items: usize, f: impl Fn(std::ops::Range<usize>) + Sync) {
    let parts = compute_threads();
    parallel_for(parts, |t| f(items * t / parts..items * (t + 1) / parts));
}

/// candle's compute thread count, read once: without `RAYON_NUM_THREADS` set
/// (`openweigh` sets it; tests and benches need not), each
/// `get_num_threads()` call parses /proc/cpuinfo, which cost more than a
/// whole decode step's products.
pub(super) fn compute_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

/// An output value the kernels write before anything reads it (buffers are
/// not zeroed first).
pub(super) type Out = std::mem::MaybeUninit<f32>;

/// A raw pointer to `dst` that worker threads write disjoint parts of.
#[derive(Clone, Copy)]
pub(super) struct DstPtr(*mut f32);
// SAFETY: each worker writes its own columns only (see the callers).
unsafe impl Send for DstPtr {}
unsafe impl Sync for DstPtr {}

impl DstPtr {
    pub(super) fn new(dst: &mut [f32]) -> Self {
        Self(dst.as_mut_ptr())
    }

    /// Over a buffer not yet written, that the workers fill in.
    pub(super) fn uninit(dst: &mut [std::mem::MaybeUninit<f32>]) -> Self {
        Self(dst.as_mut_ptr().cast())
    }

    /// The element at `offset` (a method, so closures capture the whole
    /// Send + Sync wrapper rather than its raw pointer field).
    pub(super) fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm_dispatch(
    t: GgmlDType,
    layout: BlockOrder,
    data: &[u8],
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    dst: &mut [Out],
) {
    let w = int8_weight(t, layout, data, n, k)
        .unwrap_or_else(|| unreachable!("{t:?} has no kernels of ours (checked at load)"));
    // SAFETY: CPU features checked at load (see `ours`).
    unsafe { w.gemm(x, m, dst) }
}

/// A weight of ours as the int8 GEMM reads it; None for other types.
fn int8_weight(t: GgmlDType, layout: BlockOrder, data: &[u8], n: usize, k: usize) -> Option<Int8Weight<'_>> {
    let (unpack, values) = unpacker(t, layout)?;
    let row_bytes = k / t.block_size() * t.type_size();
    assert!(data.len() >= n * row_bytes, "weight data shorter than {n} rows");
    Some(Int8Weight { data, row_bytes, unpack, values, n, k })
}

/// Activation rows quantized to 8 bits per block of 32 (llama.cpp's Q8_1).
/// `ds` holds per block its scale `d` and `s = d · Σq` (the Q4_1 offset
/// term), interleaved; `q` the 32 signed bytes of each block. With
/// `paired`, the middle halves of each pair of blocks (b, b+1) of a row are
/// swapped, `[b 0..16 | b+1 0..16 | b 16..32 | b+1 16..32]`, the order in
/// which the Q4_1 kernel unpacks two blocks' nibbles in one register.
pub(super) struct Q8Rows {
    pub(super) ds: Vec<f32>,
    pub(super) q: Vec<i8>,
}

/// Blocks per parallel task of [`quantize_rows`] (a few thousand values:
/// a decode step's one row stays on the calling thread).
const QUANTIZE_BLOCKS_PER_TASK: usize = 64;

/// `x` (rows of `k`) quantized as [`Q8Rows`]: per block of 32, d = max|x| / 127
/// and q = x / d rounded to nearest (ties to even), in parallel for many rows.
pub(super) fn quantize_rows(x: &[f32], k: usize, paired: bool) -> Q8Rows {
    let nb = x.len() / 32;
    let mut r = Q8Rows { ds: vec![0.0; 2 * nb], q: vec![0; x.len()] };
    let (q, ds) = (r.q.as_mut_ptr() as usize, r.ds.as_mut_ptr() as usize);
    let task = |t: usize| {
        for b in t * QUANTIZE_BLOCKS_PER_TASK..((t + 1) * QUANTIZE_BLOCKS_PER_TASK).min(nb) {
            // SAFETY: block b of x, q and ds (sizes above); each block is
            // written by one task; CPU features checked at load.
            unsafe {
                let (d, sum) = x86::quantize_block(x.as_ptr().add(b * 32), (q as *mut i8).add(b * 32));
                let ds = (ds as *mut f32).add(2 * b);
                *ds = d;
                *ds.add(1) = d * sum as f32;
            }
        }
    };
    match nb.div_ceil(QUANTIZE_BLOCKS_PER_TASK) {
        0 | 1 => task(0),
        tasks => parallel_for(tasks, task),
    }
    if paired {
        for row in r.q.chunks_exact_mut(k) {
            for pair in row.chunks_exact_mut(64) {
                let (first, second) = pair.split_at_mut(32);
                first[16..].swap_with_slice(&mut second[..16]);
            }
        }
    }
    r
}

/// `dst` (m × n) = `x` (m × k) · Wᵀ with our own dot products (m small).
#[allow(clippy::too_many_arguments)]
fn dot_rows(t: GgmlDType, layout: BlockOrder, data: &[u8], x: &[f32], m: usize, k: usize, n: usize, dst: &mut [Out]) {
    let kb = k / 32;
    // Several rows of a Q4_1/Q5_0 weight: each weight row is unpacked to
    // bytes once and reused for every activation row (the unpacking costs
    // more than the products).
    let unpack = unpacker(t, layout).filter(|&(_, v)| m > 1 && v != Values::Offset128).map(|(u, _)| u);
    let row_bytes = kb * t.type_size();
    let kernel = match (t, layout, unpack) {
        (_, _, Some(u)) => Kernel::Unpacked(u),
        (GgmlDType::Q4_1, BlockOrder::Blocks, None) => Kernel::Direct(x86::dot_q4_1, true),
        (GgmlDType::Q5_0, BlockOrder::Blocks, None) => Kernel::Direct(x86::dot_q5_0, false),
        (GgmlDType::Q8_0, BlockOrder::Blocks, None) => Kernel::Direct(x86::dot_q8_0, false),
        (GgmlDType::Q5_0, BlockOrder::Grouped, None) => Kernel::Direct(x86::dot_q5_0_grouped, false),
        (GgmlDType::Q8_0, BlockOrder::Grouped, None) => Kernel::Direct(x86::dot_q8_0_grouped, false),
        (other, layout, None) => unreachable!("no own dot product for {other:?} ({layout:?})"),
    };
    dot_columns(data, row_bytes, kernel, x, m, k, n, dst)
}

/// The unpacker of a weight's rows to bytes, and the values they take.
fn unpacker(t: GgmlDType, layout: BlockOrder) -> Option<(Unpack, Values)> {
    match (t, layout) {
        (GgmlDType::Q4_1, BlockOrder::Blocks) => Some((x86::unpack_q4_1, Values::Under16)),
        (GgmlDType::Q5_0, BlockOrder::Blocks) => Some((x86::unpack_q5_0, Values::Under32)),
        (GgmlDType::Q5_0, BlockOrder::Grouped) => Some((x86::unpack_q5_0_grouped, Values::Under32)),
        (GgmlDType::Q8_0, BlockOrder::Blocks) => Some((x86::unpack_q8_0, Values::Offset128)),
        (GgmlDType::Q8_0, BlockOrder::Grouped) => Some((x86::unpack_q8_0_grouped, Values::Offset128)),
        _ => None,
    }
}

/// Unpacks one weight row (its blocks at the pointer, `kb` of them) into
/// bytes `q` (element order; see [`Values`]) and per-block `d`, `m` with
/// value = d · q + m.
pub(super) type Unpack = unsafe fn(*const u8, usize, &mut UnpackedRow);

/// One weight row unpacked to bytes (see [`Unpack`]).
#[derive(Default)]
pub struct UnpackedRow {
    pub(super) q: Vec<u8>,
    pub(super) d: Vec<f32>,
    pub(super) m: Vec<f32>,
}

thread_local! {
    /// The weight row a worker thread has unpacked, reused across rows and calls.
    static UNPACKED: RefCell<UnpackedRow> = RefCell::new(UnpackedRow::default());
}

enum Kernel {
    /// A dot product on the file's blocks, and whether it wants the
    /// activations quantized `paired`.
    Direct(DotKernel, bool),
    /// Unpack each weight row once, then a byte dot product per activation row.
    Unpacked(Unpack),
}

/// A kernel: (weight row, activations, first block of the activation row, blocks) → dot product.
type DotKernel = unsafe fn(*const u8, &Q8Rows, usize, usize) -> f32;

/// `dst` (m × n) = `x` (m × k) · Wᵀ, one weight row at a time against every
/// activation row. Each thread walks its own contiguous stretch of weight
/// rows and reads each row as one sequential stream: interleaving four
/// rows' blocks in one pass (to share activation loads) measured up to 1.7×
/// slower per token on whole models, whose weights come from memory rather
/// than cache (decode, Zen 5: SmolLM2 140 → 238 tok/s, Qwen2.5-0.5B 31 → 56).
#[allow(clippy::too_many_arguments)]
fn dot_columns(
    data: &[u8],
    row_bytes: usize,
    kernel: Kernel,
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    dst: &mut [Out],
) {
    let kb = k / 32;
    assert!(data.len() >= n * row_bytes && x.len() == m * k && dst.len() == m * n);
    let q = quantize_rows(x, k, matches!(kernel, Kernel::Direct(_, true)));
    let out = DstPtr::uninit(dst);
    parallel_ranges(n, |columns| {
        // SAFETY (all unsafe below): CPU features checked at load; row j
        // lies inside `data` (asserted above); (r, j) is written by this
        // range only.
        let mut ahead = Prefetch::new(&data[columns.start * row_bytes..columns.end * row_bytes]);
        match kernel {
            Kernel::Direct(dot, _) => {
                for j in columns.clone() {
                    ahead.before((j - columns.start) * row_bytes);
                    for r in 0..m {
                        unsafe { *out.at(r * n + j) = dot(data.as_ptr().add(j * row_bytes), &q, r * kb, kb) };
                    }
                }
            }
            Kernel::Unpacked(unpack) => UNPACKED.with(|cell| {
                let row = &mut *cell.borrow_mut();
                for j in columns.clone() {
                    ahead.before((j - columns.start) * row_bytes);
                    unsafe { unpack(data.as_ptr().add(j * row_bytes), kb, row) };
                    for r in 0..m {
                        unsafe { *out.at(r * n + j) = x86::dot_unpacked(row, &q, r * kb, kb) };
                    }
                }
            }),
        }
    });
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    //! AVX2 kernels on the GGUF block layouts (little-endian f16 scales).
    use super::{Q8Rows, UnpackedRow};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16_at(p: *const u8) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([*p, *p.add(1)]) as i32)))
    }

    /// Asks for the cache line holding `p` ahead of its use (a hint: no
    /// fault, whatever the address).
    #[inline]
    pub fn prefetch(p: *const u8) {
        // SAFETY: SSE is part of x86_64; a prefetch reads nothing.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// The 32 nibbles of a Q4_1/Q4_0 block at `qs` as 32 unsigned bytes,
    /// low nibbles (elements 0..16) first.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::backend::candle) unsafe fn nibbles(qs: *const u8) -> __m256i {
        let q = _mm_loadu_si128(qs as *const __m128i);
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(q, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        _mm256_set_m128i(hi, lo)
    }

    /// Σ over 32 byte pairs of unsigned `a` × signed `b`, as 8 f32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256 {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b);
        #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
        _mm256_cvtepi32_ps(p)
    }

    /// Σ over byte pairs of `a`·`b` + `c`·`d` (unsigned × signed) as 8 i32
    /// lanes, lane i summing bytes 4i..4i+4 of both products. With AVX-512
    /// VNNI compiled in (`target-cpu=native` on such a CPU) two `vpdpbusd`,
    /// as llama.cpp's kernels use there; else `maddubs` pairs summed in 16
    /// bits (callers keep |a|,|c| ≤ 15 or pass a zero `c`/`d`, so no
    /// saturation) and widened once.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot2_u8_i8(a: __m256i, b: __m256i, c: __m256i, d: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        {
            _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), a, b), c, d)
        }
        #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
        {
            let p = _mm256_add_epi16(_mm256_maddubs_epi16(a, b), _mm256_maddubs_epi16(c, d));
            _mm256_madd_epi16(p, _mm256_set1_epi16(1))
        }
    }

    /// One Q4_1 weight row (blocks of 20 bytes: f16 d, f16 m, 16 bytes of
    /// nibbles) · the activation row starting at block `b0` of `x`
    /// (quantized `paired`). Two blocks per step: both blocks' nibbles in one
    /// register, their byte products summed before widening, both blocks'
    /// (d, m) converted and scaled in one 128-bit operation.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q4_1(w: *const u8, x: &Q8Rows, b0: usize, kb: usize) -> f32 {
        let mut acc = _mm256_setzero_ps();
        // Σ of [d·dx, m·s, d·dx, m·s] over block pairs; lanes 1 and 3 are the offset term.
        let mut off = _mm_setzero_ps();
        let (xq, xds) = (x.q.as_ptr().add(b0 * 32), x.ds.as_ptr().add(2 * b0));
        let mask = _mm256_set1_epi8(0x0F);
        let spread = _mm256_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2);
        for b in (0..kb & !1).step_by(2) {
            let y_lo = _mm256_loadu_si256(xq.add(b * 32) as *const __m256i);
            let y_hi = _mm256_loadu_si256(xq.add(b * 32 + 32) as *const __m256i);
            let blk = w.add(b * 20);
            let q = _mm256_loadu2_m128i(blk.add(24) as *const __m128i, blk.add(4) as *const __m128i);
            let lo = _mm256_and_si256(q, mask);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
            let f = _mm256_cvtepi32_ps(dot2_u8_i8(lo, y_lo, hi, y_hi));
            let dm = _mm_cvtph_ps(_mm_set_epi32(
                0,
                0,
                (blk.add(20) as *const i32).read_unaligned(),
                (blk as *const i32).read_unaligned(),
            ));
            let prod = _mm_mul_ps(dm, _mm_loadu_ps(xds.add(2 * b)));
            off = _mm_add_ps(off, prod);
            acc = _mm256_fmadd_ps(f, _mm256_permutevar8x32_ps(_mm256_castps128_ps256(prod), spread), acc);
        }
        let mut out =
            hsum(acc) + _mm_cvtss_f32(_mm_shuffle_ps(off, off, 1)) + _mm_cvtss_f32(_mm_shuffle_ps(off, off, 3));
        if kb % 2 == 1 {
            // The last block has no partner (its activations are in natural order).
            let b = kb - 1;
            let blk = w.add(b * 20);
            let p = dot_u8_i8(nibbles(blk.add(4)), _mm256_loadu_si256(xq.add(b * 32) as *const __m256i));
            out += hsum(p) * f16_at(blk) * *xds.add(2 * b) + f16_at(blk.add(2)) * *xds.add(2 * b + 1);
        }
        out
    }

    /// One Q8_0 weight row (blocks of 34 bytes: f16 d, 32 signed bytes) · an activation row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8_0(w: *const u8, x: &Q8Rows, b0: usize, kb: usize) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let (xq, xds) = (x.q.as_ptr().add(b0 * 32), x.ds.as_ptr().add(2 * b0));
        for b in 0..kb {
            let y = _mm256_loadu_si256(xq.add(b * 32) as *const __m256i);
            let blk = w.add(b * 34);
            let q = _mm256_loadu_si256(blk.add(2) as *const __m256i);
            // |q| · (y with q's sign): unsigned × signed, as maddubs wants.
            let p = dot_u8_i8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q));
            acc = _mm256_fmadd_ps(p, _mm256_set1_ps(f16_at(blk) * *xds.add(2 * b)), acc);
        }
        hsum(acc)
    }

    /// The 32 five-bit values q of a Q5_0 block at `blk` (f16 d, u32 of
    /// high bits, 16 bytes of nibbles) as unsigned bytes 0..32, in element
    /// order (llama.cpp's `bytes_from_bits_32` trick spreads bit i of the
    /// high bits to byte i). The block's values are d · (q − 16).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q5_0_unsigned(blk: *const u8) -> __m256i {
        let qh = (blk.add(2) as *const i32).read_unaligned();
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(qh),
            _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0),
        );
        let bits =
            _mm256_cmpeq_epi8(_mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe)), _mm256_set1_epi64x(-1));
        _mm256_or_si256(nibbles(blk.add(6)), _mm256_and_si256(bits, _mm256_set1_epi8(0x10)))
    }

    /// One Q5_0 weight row (blocks of 22 bytes) · an activation row:
    /// Σ d·dx·(q − 16)·y = d·(dx·Σ q·y − 16·s), with s = dx·Σy from the
    /// activation's quantization, so bytes multiply unsigned × signed.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q5_0(w: *const u8, x: &Q8Rows, b0: usize, kb: usize) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut off = 0f32;
        let (xq, xds) = (x.q.as_ptr().add(b0 * 32), x.ds.as_ptr().add(2 * b0));
        for b in 0..kb {
            let y = _mm256_loadu_si256(xq.add(b * 32) as *const __m256i);
            let blk = w.add(b * 22);
            let d = f16_at(blk);
            let p = dot_u8_i8(q5_0_unsigned(blk), y);
            acc = _mm256_fmadd_ps(p, _mm256_set1_ps(d * *xds.add(2 * b)), acc);
            off += d * *xds.add(2 * b + 1);
        }
        hsum(acc) - 16.0 * off
    }

    /// The 32 values at `x` quantized to 8 bits at `q`: d = max|x| / 127,
    /// q = x / d rounded to nearest (ties to even); returns d and Σ q.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn quantize_block(x: *const f32, q: *mut i8) -> (f32, i32) {
        let v = [0, 8, 16, 24].map(|i| _mm256_loadu_ps(x.add(i)));
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let m = v.iter().fold(_mm256_setzero_ps(), |m, &v| _mm256_max_ps(m, _mm256_and_ps(v, abs)));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_shuffle_ps(m, m, 1)));
        let d = amax / 127.0;
        let inv = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let i = v.map(|v| _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v, inv), _MM_FROUND_TO_NEAREST_INT)));
        let sum = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let sum = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b01_00_11_10));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b10_11_00_01)));
        // i32 → i16 → i8 packs interleave the 128-bit halves; one lane permute restores the order.
        let p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
        let p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q as *mut __m256i, p);
        (d, sum)
    }

    /// Bytes of a group of four Q5_0 / Q8_0 blocks in the grouped layout (see `regroup`).
    const Q5_0_GROUP_BYTES: usize = super::GROUP * 22;
    const Q8_0_GROUP_BYTES: usize = super::GROUP * 34;

    /// Lane `b` of `v`'s low four lanes in all eight (one `vpermps`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn lane(v: __m256, b: i32) -> __m256 {
        _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(b))
    }

    /// A grouped row's group `g`: its four f16 weight scales times the
    /// activation row's four `d` (in the low lanes of an 8-lane register, for
    /// [`lane`]), and the four weight scales times the activation's four `s`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn group_scales(blk: *const u8, xds: *const f32) -> (__m256, __m128) {
        let d = _mm_cvtph_ps(_mm_loadl_epi64(blk as *const __m128i));
        // [d0 s0 d1 s1 d2 s2 d3 s3] → [d0 d1 d2 d3 | s0 s1 s2 s3].
        let xv = _mm256_permutevar8x32_ps(_mm256_loadu_ps(xds), _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
        let scale = _mm_mul_ps(d, _mm256_castps256_ps128(xv));
        (_mm256_castps128_ps256(scale), _mm_mul_ps(d, _mm256_extractf128_ps(xv, 1)))
    }

    /// The four blocks of a grouped Q5_0 group (see `regroup`) as unsigned
    /// bytes 0..32 in element order: each block's four low bits from its
    /// nibble register, its high bit moved from bit b of the shared
    /// high-bit bytes to bit 4 (a 16-bit shift: bits that cross into the
    /// next byte land below bit 4 and are masked off).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q5_0_group(blk: *const u8) -> [__m256i; 4] {
        let (m4, bit4) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x10));
        let hb = nibbles(blk.add(8));
        let v01 = _mm256_loadu_si256(blk.add(24) as *const __m256i);
        let v23 = _mm256_loadu_si256(blk.add(56) as *const __m256i);
        let low = |v: __m256i| _mm256_and_si256(v, m4);
        let high = |v: __m256i| _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        [
            _mm256_or_si256(low(v01), _mm256_and_si256(_mm256_slli_epi16(hb, 4), bit4)),
            _mm256_or_si256(high(v01), _mm256_and_si256(_mm256_slli_epi16(hb, 3), bit4)),
            _mm256_or_si256(low(v23), _mm256_and_si256(_mm256_slli_epi16(hb, 2), bit4)),
            _mm256_or_si256(high(v23), _mm256_and_si256(_mm256_slli_epi16(hb, 1), bit4)),
        ]
    }

    /// Horizontal sum of four lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum4(v: __m128) -> f32 {
        let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// One grouped Q5_0 weight row (see `regroup`) · an activation row, as
    /// [`dot_q5_0`]: per group the four scales in one conversion and one
    /// multiply, the values assembled from shared registers; two
    /// accumulators, so consecutive blocks' FMAs do not wait on each other.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q5_0_grouped(w: *const u8, x: &Q8Rows, b0: usize, kb: usize) -> f32 {
        let groups = kb / 4;
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut off = _mm_setzero_ps();
        let (xq, xds) = (x.q.as_ptr().add(b0 * 32), x.ds.as_ptr().add(2 * b0));
        for g in 0..groups {
            let blk = w.add(g * Q5_0_GROUP_BYTES);
            let (scale, s) = group_scales(blk, xds.add(8 * g));
            off = _mm_add_ps(off, s);
            let q = q5_0_group(blk);
            let y = |b: usize| _mm256_loadu_si256(xq.add((4 * g + b) * 32) as *const __m256i);
            acc0 = _mm256_fmadd_ps(dot_u8_i8(q[0], y(0)), lane(scale, 0), acc0);
            acc1 = _mm256_fmadd_ps(dot_u8_i8(q[1], y(1)), lane(scale, 1), acc1);
            acc0 = _mm256_fmadd_ps(dot_u8_i8(q[2], y(2)), lane(scale, 2), acc0);
            acc1 = _mm256_fmadd_ps(dot_u8_i8(q[3], y(3)), lane(scale, 3), acc1);
        }
        let tail = 4 * groups;
        let rest = if tail < kb { dot_q5_0(w.add(groups * Q5_0_GROUP_BYTES), x, b0 + tail, kb - tail) } else { 0.0 };
        hsum(_mm256_add_ps(acc0, acc1)) - 16.0 * hsum4(off) + rest
    }

    /// One grouped Q8_0 weight row (see `regroup`) · an activation row.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_q8_0_grouped(w: *const u8, x: &Q8Rows, b0: usize, kb: usize) -> f32 {
        let groups = kb / 4;
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (xq, xds) = (x.q.as_ptr().add(b0 * 32), x.ds.as_ptr().add(2 * b0));
        for g in 0..groups {
            let blk = w.add(g * Q8_0_GROUP_BYTES);
            let (scale, _) = group_scales(blk, xds.add(8 * g));
            let p = |b: usize| {
                let q = _mm256_loadu_si256(blk.add(8 + 32 * b) as *const __m256i);
                let y = _mm256_loadu_si256(xq.add((4 * g + b) * 32) as *const __m256i);
                // |q| · (y with q's sign): unsigned × signed, as maddubs wants.
                dot_u8_i8(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q))
            };
            acc0 = _mm256_fmadd_ps(p(0), lane(scale, 0), acc0);
            acc1 = _mm256_fmadd_ps(p(1), lane(scale, 1), acc1);
            acc0 = _mm256_fmadd_ps(p(2), lane(scale, 2), acc0);
            acc1 = _mm256_fmadd_ps(p(3), lane(scale, 3), acc1);
        }
        let tail = 4 * groups;
        let rest = if tail < kb { dot_q8_0(w.add(groups * Q8_0_GROUP_BYTES), x, b0 + tail, kb - tail) } else { 0.0 };
        hsum(_mm256_add_ps(acc0, acc1)) + rest
    }

    /// One grouped Q5_0 weight row of `kb` blocks as bytes q (0..32), d and m = −16·d.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn unpack_q5_0_grouped(w: *const u8, kb: usize, row: &mut UnpackedRow) {
        row.q.resize(kb * 32, 0);
        row.d.resize(kb, 0.0);
        row.m.resize(kb, 0.0);
        let groups = kb / 4;
        for g in 0..groups {
            let blk = w.add(g * Q5_0_GROUP_BYTES);
            for (b, q) in q5_0_group(blk).into_iter().enumerate() {
                _mm256_storeu_si256(row.q.as_mut_ptr().add((4 * g + b) * 32) as *mut __m256i, q);
                let d = f16_at(blk.add(2 * b));
                (row.d[4 * g + b], row.m[4 * g + b]) = (d, -16.0 * d);
            }
        }
        for b in 4 * groups..kb {
            let (q, d, m) = affine_block::<true>(w.add(groups * Q5_0_GROUP_BYTES + (b - 4 * groups) * 22));
            _mm256_storeu_si256(row.q.as_mut_ptr().add(b * 32) as *mut __m256i, q);
            (row.d[b], row.m[b]) = (d, m);
        }
    }

    /// One Q4_1 weight row of `kb` blocks as bytes q (0..16), d and m.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn unpack_q4_1(w: *const u8, kb: usize, row: &mut UnpackedRow) {
        unpack_row::<false>(w, kb, row)
    }

    /// One Q5_0 weight row of `kb` blocks as bytes q (0..32), d and m = −16·d.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn unpack_q5_0(w: *const u8, kb: usize, row: &mut UnpackedRow) {
        unpack_row::<true>(w, kb, row)
    }

    /// A Q4_1 (`Q5` false) or Q5_0 block's values as unsigned bytes and its
    /// (d, m) with value = d · q + m.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn affine_block<const Q5: bool>(blk: *const u8) -> (__m256i, f32, f32) {
        let d = f16_at(blk);
        if Q5 {
            (q5_0_unsigned(blk), d, -16.0 * d)
        } else {
            (nibbles(blk.add(4)), d, f16_at(blk.add(2)))
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_row<const Q5: bool>(w: *const u8, kb: usize, row: &mut UnpackedRow) {
        let block_bytes = if Q5 { 22 } else { 20 };
        row.q.resize(kb * 32, 0);
        row.d.resize(kb, 0.0);
        row.m.resize(kb, 0.0);
        for b in 0..kb {
            let (q, d, m) = affine_block::<Q5>(w.add(b * block_bytes));
            _mm256_storeu_si256(row.q.as_mut_ptr().add(b * 32) as *mut __m256i, q);
            (row.d[b], row.m[b]) = (d, m);
        }
    }

    /// An unpacked weight row · the activation row starting at block `b0`
    /// (quantized in natural order): Σ d·dx·Σq·y + m·s per block.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_unpacked(w: &UnpackedRow, x: &Q8Rows, b0: usize, kb: usize) -> f32 {
        let mut acc = _mm256_setzero_ps();
        let mut off = 0f32;
        let (xq, xds) = (x.q.as_ptr().add(b0 * 32), x.ds.as_ptr().add(2 * b0));
        let (wq, wd, wm) = (w.q.as_ptr(), w.d.as_ptr(), w.m.as_ptr());
        for b in 0..kb {
            let y = _mm256_loadu_si256(xq.add(b * 32) as *const __m256i);
            let q = _mm256_loadu_si256(wq.add(b * 32) as *const __m256i);
            acc = _mm256_fmadd_ps(dot_u8_i8(q, y), _mm256_set1_ps(*wd.add(b) * *xds.add(2 * b)), acc);
            off += *wm.add(b) * *xds.add(2 * b + 1);
        }
        hsum(acc) + off
    }

    /// One Q8_0 weight row of `kb` blocks as bytes q + 128 (0..256), d and
    /// m = −128·d ([`super::super::int8_gemm::Values::Offset128`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn unpack_q8_0(w: *const u8, kb: usize, row: &mut UnpackedRow) {
        unpack_q8_0_blocks(w, 0..kb, row)
    }

    /// One grouped Q8_0 weight row (see `regroup`) as [`unpack_q8_0`] does.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn unpack_q8_0_grouped(w: *const u8, kb: usize, row: &mut UnpackedRow) {
        let groups = kb / 4;
        unpack_q8_0_blocks(w.add(groups * Q8_0_GROUP_BYTES), 4 * groups..kb, row);
        for g in 0..groups {
            let blk = w.add(g * Q8_0_GROUP_BYTES);
            for b in 0..4 {
                offset_q8(blk.add(8 + 32 * b), row.q.as_mut_ptr().add((4 * g + b) * 32));
                let d = f16_at(blk.add(2 * b));
                (row.d[4 * g + b], row.m[4 * g + b]) = (d, -128.0 * d);
            }
        }
    }

    /// Q8_0 blocks in the file's layout at `w` as blocks `blocks` of `row`
    /// (sized to `blocks.end`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn unpack_q8_0_blocks(w: *const u8, blocks: std::ops::Range<usize>, row: &mut UnpackedRow) {
        row.q.resize(blocks.end * 32, 0);
        row.d.resize(blocks.end, 0.0);
        row.m.resize(blocks.end, 0.0);
        for (i, b) in blocks.enumerate() {
            let blk = w.add(i * 34);
            offset_q8(blk.add(2), row.q.as_mut_ptr().add(b * 32));
            let d = f16_at(blk);
            (row.d[b], row.m[b]) = (d, -128.0 * d);
        }
    }

    /// 32 signed quants at `q` as unsigned bytes q + 128 at `out`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn offset_q8(q: *const u8, out: *mut u8) {
        let v = _mm256_loadu_si256(q as *const __m256i);
        _mm256_storeu_si256(out as *mut __m256i, _mm256_xor_si256(v, _mm256_set1_epi8(-128)));
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    //! Never called off x86_64 (`cpu_has_kernels` is false there).
    use super::{Q8Rows, UnpackedRow};
    pub fn prefetch(_: *const u8) {}
    pub unsafe fn unpack_q4_1(_: *const u8, _: usize, _: &mut UnpackedRow) {
        unreachable!()
    }
    pub unsafe fn unpack_q5_0(_: *const u8, _: usize, _: &mut UnpackedRow) {
        unreachable!()
    }
    pub unsafe fn dot_unpacked(_: &UnpackedRow, _: &Q8Rows, _: usize, _: usize) -> f32 {
        unreachable!()
    }
    pub unsafe fn dot_q4_1(_: *const u8, _: &Q8Rows, _: usize, _: usize) -> f32 {
        unreachable!()
    }
    pub unsafe fn dot_q5_0(_: *const u8, _: &Q8Rows, _: usize, _: usize) -> f32 {
        unreachable!()
    }
    pub unsafe fn dot_q8_0(_: *const u8, _: &Q8Rows, _: usize, _: usize) -> f32 {
        unreachable!()
    }
    pub unsafe fn dot_q5_0_grouped(_: *const u8, _: &Q8Rows, _: usize, _: usize) -> f32 {
        unreachable!()
    }
    pub unsafe fn dot_q8_0_grouped(_: *const u8, _: &Q8Rows, _: usize, _: usize) -> f32 {
        unreachable!()
    }
    pub unsafe fn quantize_block(_: *const f32, _: *mut i8) -> (f32, i32) {
        unreachable!()
    }
    pub unsafe fn unpack_q5_0_grouped(_: *const u8, _: usize, _: &mut UnpackedRow) {
        unreachable!()
    }
    pub unsafe fn unpack_q8_0(_: *const u8, _: usize, _: &mut UnpackedRow) {
        unreachable!()
    }
    pub unsafe fn unpack_q8_0_grouped(_: *const u8, _: usize, _: &mut UnpackedRow) {
        unreachable!()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The streamed head (log-prob of a target and argmax per row, no logits
    /// kept) equals the log-softmax of the logits that the many-row product
    /// computes (the same int8 tiles, bit for bit), for a vocabulary that is
    /// no multiple of the panel or task size, targets that are and are not
    /// the argmax, and one past the vocabulary; and the int8 logits stay
    /// within 1% of the largest logit of the dequantized weights' f32 ones.
    #[test]
    fn streamed_head_matches_logits() {
        if !cpu_has_kernels() {
            return;
        }
        let dev = Device::Cpu;
        let (n, k) = (64 * HEAD_PANELS_PER_TASK * 2 + 77, 576);
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_1, GgmlDType::Q5_0] {
            let w = Tensor::randn(0f32, 0.2, (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let exact = q.dequantize(&dev).unwrap();
            let head = Linear::new(q).unwrap();
            for m in [GEMM_MIN_ROWS, 13] {
                let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
                let logits = head.forward(&x).unwrap().to_vec2::<f32>().unwrap();
                let f32_logits = x.matmul(&exact.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
                for (row, want) in logits.iter().zip(&f32_logits) {
                    let top = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                    let worst = row.iter().zip(want).fold(0f32, |a, (u, v)| a.max((u - v).abs()));
                    assert!(worst < 0.01 * top, "{dtype:?} m {m}: int8 logits off by {worst} (largest {top})");
                }
                let mut targets: Vec<u32> = (0..m as u32).map(|i| (i * 997) % n as u32).collect();
                targets[1] = super::super::argmax(&logits[1]);
                targets[2] = n as u32;
                let got = head.token_logprobs(&x, &targets).unwrap().expect("own kernels");
                for (r, (&(lp, greedy), &t)) in got.iter().zip(&targets).enumerate() {
                    let (want_lp, want_greedy) = super::super::token_logprob(&logits[r], t);
                    assert_eq!(greedy, want_greedy, "{dtype:?} m {m} row {r}");
                    if want_lp.is_finite() {
                        assert!((lp - want_lp).abs() < 1e-4, "{dtype:?} m {m} row {r}: {lp} vs {want_lp}");
                    } else {
                        assert_eq!(lp, f64::NEG_INFINITY);
                    }
                }
                assert!(got[1].1, "row 1's target is its argmax");
            }
            // Too few rows: the caller computes logits.
            let x = Tensor::randn(0f32, 1.0, (3, k), &dev).unwrap();
            assert!(head.token_logprobs(&x, &[0, 1, 2]).unwrap().is_none());
        }
    }

    /// A row's product is the same, bit for bit, whatever rows share the
    /// call: the int8 GEMM of each type for the models' widths, 8 to 199
    /// rows. (When Q8_0 took f32 panels through the `gemm` crate, rows of
    /// width 576, 640 or 896 were summed in another order past 64 rows.)
    #[test]
    fn rows_do_not_depend_on_their_neighbours() {
        if !cpu_has_kernels() {
            return;
        }
        let dev = Device::Cpu;
        for (n, k) in [(128, 576), (128, 640), (128, 896), (64, 2048)] {
            for dtype in [GgmlDType::Q8_0, GgmlDType::Q5_0, GgmlDType::Q4_1] {
                let w = Tensor::randn(0f32, 0.2, (n, k), &dev).unwrap();
                let lin = Linear::new(QTensor::quantize(&w, dtype).unwrap()).unwrap();
                let x = Tensor::randn(0f32, 1.0, (199, k), &dev).unwrap();
                let all = lin.forward(&x).unwrap().to_vec2::<f32>().unwrap();
                for (from, m) in [(0, 8), (3, 13), (0, 64), (0, 65), (5, 70), (1, 129), (0, 136)] {
                    let part = lin.forward(&x.narrow(0, from, m).unwrap()).unwrap().to_vec2::<f32>().unwrap();
                    for (r, row) in part.iter().enumerate() {
                        assert!(
                            row.iter().zip(&all[from + r]).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{dtype:?} {n} x {k}: row {} of {m} from {from} differs from the same row of 199",
                            r
                        );
                    }
                }
            }
        }
    }

    /// Joined weights give each part's own outputs side by side, bit for
    /// bit, on the dot and GEMM paths; parts of different types (or run by
    /// candle) are not joined.
    #[test]
    fn joined_projections_equal_their_parts() {
        if !cpu_has_kernels() {
            return;
        }
        let dev = Device::Cpu;
        let k = 576;
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q8_0] {
            let parts: Vec<Linear> = [576, 192, 200]
                .iter()
                .map(|&n| {
                    let w = Tensor::randn(0f32, 0.2, (n, k), &dev).unwrap();
                    Linear::new(QTensor::quantize(&w, dtype).unwrap()).unwrap()
                })
                .collect();
            let joined = Linear::join(&parts.iter().collect::<Vec<_>>()).unwrap().expect("one type: joined");
            assert_eq!(joined.out_features(), 968);
            for rows in [1, 5, GEMM_MIN_ROWS, 37] {
                let x = Tensor::randn(0f32, 1.0, (1, rows, k), &dev).unwrap();
                let all = joined.forward(&x).unwrap();
                let mut at = 0;
                for p in &parts {
                    let want = p.forward(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let got = all.narrow(2, at, p.n).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    assert!(
                        got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{dtype:?} rows {rows}: part at {at}"
                    );
                    at += p.n;
                }
            }
        }
        let w = Tensor::randn(0f32, 0.2, (64, k), &dev).unwrap();
        let q4 = Linear::new(QTensor::quantize(&w, GgmlDType::Q4_1).unwrap()).unwrap();
        let q8 = Linear::new(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        let w = w.narrow(1, 0, 512).unwrap().contiguous().unwrap();
        let (a, b) = (QTensor::quantize(&w, GgmlDType::Q4_1).unwrap(), QTensor::quantize(&w, GgmlDType::Q4K).unwrap());
        let (a, b) = (Linear::new(a).unwrap(), Linear::new(b).unwrap());
        assert!(Linear::join(&[&q4, &q8]).unwrap().is_none());
        assert!(Linear::join(&[&a, &b]).unwrap().is_none(), "a K-quant runs in candle");
    }

    /// The int8 GEMM's 16-bit partial sums at their largest (every weight
    /// at its type's largest unsigned value but one, or Q8_0's ±127, every
    /// activation at 127) do not overflow: the result is the f32 product's, as the dot
    /// path's (which widens every block) is.
    #[test]
    fn int8_gemm_sums_fit_at_the_extremes() {
        if !cpu_has_kernels() {
            return;
        }
        let dev = Device::Cpu;
        let (n, k) = (16, 576);
        // Q4_1: min 0, max 1 → q = 15; Q5_0: d = 1 / −16 → −0.9375 is q = 31;
        // Q8_0: ±1 → q = ±127 (|q| · 127 · 2 per 16-bit pair sum).
        for (dtype, first, rest) in
            [(GgmlDType::Q4_1, 0.0f32, 1.0f32), (GgmlDType::Q5_0, 1.0, -0.9375), (GgmlDType::Q8_0, 1.0, -1.0)]
        {
            let w: Vec<f32> = (0..n * k).map(|i| if i % 32 == 0 { first } else { rest }).collect();
            let w = Tensor::from_vec(w, (n, k), &dev).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let exact = q.dequantize(&dev).unwrap();
            let ours = Linear::new(q).unwrap();
            let x = Tensor::ones((GEMM_MIN_ROWS, k), candle_core::DType::F32, &dev).unwrap();
            let want = x.matmul(&exact.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
            let got = ours.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            let one = ours.forward(&x.narrow(0, 0, 1).unwrap()).unwrap().to_vec2::<f32>().unwrap();
            for (r, row) in got.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    assert!(
                        (v - want[r][j]).abs() <= 1e-4 * want[r][j].abs(),
                        "{dtype:?} ({r}, {j}): {v} vs {}",
                        want[r][j]
                    );
                    assert!((v - one[0][j]).abs() <= 1e-4 * v.abs(), "{dtype:?} ({r}, {j}): {v} vs dot {}", one[0][j]);
                }
            }
        }
    }

    /// The vectorized block quantization: q = x / d rounded to nearest, ties
    /// to even, d = max|x| / 127, in element order, with Σ q — for random
    /// blocks, exact ties, a block of zeros and one with a single value.
    #[test]
    fn prefetch_asks_each_line_once_within_the_stretch() {
        for len in [0, 1, 63, 64, 65, 1000, PREFETCH_BYTE, 3 * PREFETCH_BYTE + 17] {
            let bytes = vec![0u8; len];
            let mut ahead = Prefetch::new(&bytes);
            ahead.before(0);
            // The first PREFETCH_BYTE bytes (or all), in whole lines.
            assert_eq!(ahead.asked, len.min(PREFETCH_BYTE).div_ceil(64) * 64, "len {len}");
            let mut last = ahead.asked;
            for offset in (0..len).step_by(100) {
                ahead.before(offset);
                assert!(ahead.asked >= last && ahead.asked < len.max(1) + 64, "len {len}, offset {offset}");
                assert!(ahead.asked >= (offset + PREFETCH_BYTE).min(len), "len {len}, offset {offset}");
                last = ahead.asked;
            }
        }
    }

    #[test]
    fn quantize_block_rounds_each_value() {
        if !cpu_has_kernels() {
            return;
        }
        let mut blocks: Vec<Vec<f32>> = (0..50)
            .map(|s| Tensor::randn(0f32, 1.0 + s as f32, 32, &Device::Cpu).unwrap().to_vec1().unwrap())
            .collect();
        // d = 1: 0.5, 1.5, -2.5 are ties.
        blocks.push((0..32).map(|i| [127.0, 0.5, 1.5, -2.5, -127.0, 3.0][i % 6]).collect());
        blocks.push(vec![0.0; 32]);
        blocks.push((0..32).map(|i| if i == 7 { -3.0 } else { 0.0 }).collect());
        for x in blocks {
            let mut q = [0i8; 32];
            let (d, sum) = unsafe { x86::quantize_block(x.as_ptr(), q.as_mut_ptr()) };
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            assert_eq!(d, amax / 127.0);
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let want: Vec<i8> = x.iter().map(|v| (v * inv).round_ties_even() as i8).collect();
            assert_eq!(q.to_vec(), want, "{x:?}");
            assert_eq!(sum, want.iter().map(|&v| v as i32).sum::<i32>());
        }
    }

    /// The grouped layout holds the same weights: regrouped rows unpack to
    /// exactly what the file's rows unpack to (and those to the file's
    /// values), and their dot products equal
    /// the file-layout kernels' up to summation order — for rows with
    /// whole groups only (28 blocks), a group and a tail (18, 17, 6) and a
    /// tail only (3).
    #[test]
    fn grouped_layout_holds_the_files_weights() {
        if !cpu_has_kernels() {
            return;
        }
        let dev = Device::Cpu;
        for dtype in [GgmlDType::Q5_0, GgmlDType::Q8_0] {
            for kb in [28usize, 18, 17, 6, 3] {
                let (n, k) = (5, kb * 32);
                let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
                let q = QTensor::quantize(&w, dtype).unwrap();
                let file = q.data().unwrap();
                let grouped = regroup(dtype, &file, n, kb);
                assert_eq!(grouped.len(), file.len());
                let rb = kb * dtype.type_size();
                let x =
                    Tensor::randn(0f32, 1.0, (1, k), &dev).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let xq = quantize_rows(&x, k, false);
                let values = q.dequantize(&dev).unwrap().to_vec2::<f32>().unwrap();
                let (file_unpack, _) = unpacker(dtype, BlockOrder::Blocks).unwrap();
                let (grouped_unpack, _) = unpacker(dtype, BlockOrder::Grouped).unwrap();
                for j in 0..n {
                    let (a, b) = (&file[j * rb..(j + 1) * rb], &grouped[j * rb..(j + 1) * rb]);
                    let (mut ua, mut ub) = (UnpackedRow::default(), UnpackedRow::default());
                    unsafe {
                        file_unpack(a.as_ptr(), kb, &mut ua);
                        grouped_unpack(b.as_ptr(), kb, &mut ub);
                    }
                    assert_eq!((&ua.q, &ua.d, &ua.m), (&ub.q, &ub.d, &ub.m), "{dtype:?} kb {kb} row {j}: unpacked");
                    let (da, db) = unsafe {
                        match dtype {
                            GgmlDType::Q5_0 => {
                                (x86::dot_q5_0(a.as_ptr(), &xq, 0, kb), x86::dot_q5_0_grouped(b.as_ptr(), &xq, 0, kb))
                            }
                            _ => (x86::dot_q8_0(a.as_ptr(), &xq, 0, kb), x86::dot_q8_0_grouped(b.as_ptr(), &xq, 0, kb)),
                        }
                    };
                    // The weights' values, d · q + m, against the file's.
                    let fa: Vec<f32> = (0..k).map(|i| ua.d[i / 32] * ua.q[i] as f32 + ua.m[i / 32]).collect();
                    // (Q8_0's d · (q + 128) − 128 · d rounds at the scale of 128 · d.)
                    for (i, (u, v)) in fa.iter().zip(&values[j]).enumerate() {
                        let d = ua.d[i / 32].abs();
                        assert!((u - v).abs() <= 1e-6 * (v.abs() + 256.0 * d), "{dtype:?} kb {kb} row {j} value {i}");
                    }
                    let scale: f32 = fa.iter().zip(&x).map(|(w, x)| (w * x).abs()).sum();
                    assert!((da - db).abs() <= 1e-5 * scale, "{dtype:?} kb {kb} row {j}: dot {da} vs {db}");
                }
            }
        }
    }

    /// Our paths against candle's kernels and against f32 weights, for each
    /// row count (dot path, GEMM path) and weight type.
    #[test]
    fn own_kernels_match_candle_and_f32() {
        if !cpu_has_kernels() {
            eprintln!("no AVX2/FMA/F16C: nothing of ours to test");
            return;
        }
        let dev = Device::Cpu;
        let (n, k) = (200, 896);
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
        // 544 = 17 blocks: an odd block count leaves the Q4_1 kernel a last
        // block without a pair, and the grouped layouts a last block as in
        // the file; 576 (18 blocks) leaves them two, 896 (28) none.
        let mut cases = vec![];
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::Q5_0] {
            for k in [576, 544, 896] {
                for shared in [false, true] {
                    cases.push((dtype, k, shared));
                }
            }
        }
        for (dtype, k, shared) in cases {
            let w = w.narrow(1, 0, k).unwrap().contiguous().unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let exact = q.dequantize(&dev).unwrap();
            let q2 = QTensor::quantize(&w, dtype).unwrap();
            let ours = if shared { Linear::from_arc(Arc::new(q2)) } else { Linear::new(q2) }.unwrap();
            let order = match &ours.weights {
                Weights::Candle(_) => panic!("{dtype:?}: candle's kernels, not ours"),
                Weights::Blocks(_) => BlockOrder::Blocks,
                Weights::Bytes { order, .. } => *order,
            };
            let grouped = !shared && regroups(dtype);
            assert_eq!(order == BlockOrder::Grouped, grouped, "{dtype:?} shared {shared}");
            let theirs = QMatMul::from_qtensor(q).unwrap();
            for rows in [1, 3, 37, GEMM_MIN_ROWS, GEMM_MIN_ROWS + 5] {
                let x = Tensor::randn(0f32, 1.0, (1, rows, k), &dev).unwrap();
                let a = ours.forward(&x).unwrap();
                let b = theirs.forward(&x).unwrap();
                let f = x.broadcast_matmul(&exact.t().unwrap()).unwrap();
                assert_eq!(a.dims(), &[1, rows, n]);
                let err = |u: &Tensor, v: &Tensor| -> f32 {
                    (u - v).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
                };
                let scale: f32 = f.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap();
                // The dot paths and the int8 GEMM quantize activations to
                // 8 bits as candle's does, so they sit as close to f32 as
                // candle's.
                let (ea, eb) = (err(&a, &f) / scale, err(&b, &f) / scale);
                let case = format!("{dtype:?} k {k} {order:?} rows {rows}");
                if rows >= GEMM_MIN_ROWS {
                    assert!(ea < 2.0 * eb + 1e-4, "{case}: ours {ea}, candle {eb}");
                    // The int8 GEMM equals the one-row dot product of each
                    // row but for the order of float sums...
                    for r in 0..rows {
                        let one = ours.forward(&x.narrow(1, r, 1).unwrap()).unwrap();
                        let e = err(&one, &a.narrow(1, r, 1).unwrap()) / scale;
                        assert!(e < 1e-5, "{case} row {r}: int8 GEMM vs dot {e}");
                    }
                    // ... and a row's result does not depend on the other
                    // rows or its place among them (a full tile or the
                    // remainder): rows rotated by one, the same bits.
                    let rotated =
                        Tensor::cat(&[x.narrow(1, 1, rows - 1).unwrap(), x.narrow(1, 0, 1).unwrap()], 1).unwrap();
                    let c = ours.forward(&rotated).unwrap().to_vec3::<f32>().unwrap();
                    let a = a.to_vec3::<f32>().unwrap();
                    for r in 0..rows {
                        assert_eq!(a[0][r], c[0][(r + rows - 1) % rows], "{case} row {r}: rotated");
                    }
                } else {
                    assert!(ea < 2.0 * eb + 1e-4, "{case}: ours {ea}, candle {eb}");
                    assert!(ea < 0.02, "{case}: {ea}");
                }
            }
        }
    }
}
