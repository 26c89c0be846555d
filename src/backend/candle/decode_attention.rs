//! Attention of one new token (a decode step) over its KV cache, read in
//! place from the cache's buffers: for each query head, its scores against
//! every visible key, their softmax, and the weighted sum of the values, the
//! heads spread over the compute threads.
//!
//! candle's path for the same step (two batched `matmul`s around a softmax,
//! [`super::transformer`]'s `attention_block`) hands `gemm` a 3 × 1,000
//! product per KV head, which it packs and multiplies at a small fraction of
//! the machine's speed: at GSM8K's 1,100-token 5-shot prompt, a decode step
//! of SmolLM2 took about 2.5 times as long as at an empty cache. Here each
//! key and value row is read once per query head straight from the cache
//! (the heads sharing a KV head find it in cache), as llama.cpp's decode does.
//!
//! The numbers are those of the batched path up to summation order (scores
//! as 8-lane partial sums; the softmax is the same routine,
//! [`super::softmax::softmax_in_place`]).

use super::cpu_f32;
use super::linear::{parallel_for, DstPtr};
use super::softmax::softmax_in_place;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::cell::RefCell;

thread_local! {
    /// Each query's scores for one head (one per visible key), reused across calls.
    static SCORES: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Keys `first..end` of one pair of cache buffers (`(1, kv_heads,
/// capacity, head_dim)` each).
#[derive(Clone, Copy)]
pub(super) struct KeyRange<'a> {
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    pub first: usize,
    pub end: usize,
}

/// One new token's query (`(1, heads, 1, head_dim)`, RoPE applied) and the
/// keys it sees: `shared` keys `first..end` of the batch's shared buffers
/// (a shared prefix), then its `own` range.
pub(super) struct Query<'a> {
    pub q: &'a Tensor,
    pub shared: Option<(usize, usize)>,
    pub own: KeyRange<'a>,
}

/// The attention output `(1, heads, 1, head_dim)` of query `q` (`(1, heads,
/// 1, head_dim)`, RoPE applied) over keys `first..end` of the cache buffers
/// `k` and `v` (`(1, kv_heads, capacity, head_dim)`, the new token's key and
/// value already written at `end - 1`), scores scaled by `scale`. Query heads
/// `h·rep .. (h+1)·rep` share KV head `h`. None where the tensors are not
/// contiguous f32 on the CPU.
pub(super) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    first: usize,
    end: usize,
    scale: f64,
) -> Result<Option<Tensor>> {
    let query = Query { q, shared: None, own: KeyRange { k, v, first, end } };
    Ok(attend_batch(&[query], None, scale)?.map(|mut out| out.remove(0)))
}

/// [`attend`] for several sequences' new tokens at once, those with a
/// `shared` range reading it from the `shared` buffers (`(k, v)`): each
/// shared key and value row is read once for all of them, not once per
/// sequence. A query's numbers are those of [`attend`] over its shared keys
/// and then its own as one range, bit for bit: its scores, softmax and
/// weighted sum go key by key in that order whatever else is in the batch.
pub(super) fn attend_batch(
    queries: &[Query],
    shared: Option<(&Tensor, &Tensor)>,
    scale: f64,
) -> Result<Option<Vec<Tensor>>> {
    let Some(first) = queries.first() else { return Ok(Some(Vec::new())) };
    let (_, n_head, _, hd) = first.q.dims4()?;
    let n_kv = first.own.k.dim(1)?;
    let fits = |k: &Tensor, v: &Tensor, first: usize, end: usize| -> Result<bool> {
        let (_, kv, cap, kd) = k.dims4()?;
        Ok(kd == hd && v.dims() == k.dims() && kv == n_kv && end <= cap && first <= end)
    };
    for q in queries {
        let (_, heads, one, d) = q.q.dims4()?;
        let shared_ok = match (q.shared, shared) {
            (None, _) => true,
            (Some((f, e)), Some((k, v))) => fits(k, v, f, e)?,
            (Some(_), None) => false,
        };
        let keys = q.own.end - q.own.first.min(q.own.end) + q.shared.map_or(0, |(f, e)| e.saturating_sub(f));
        if heads != n_head
            || one != 1
            || d != hd
            || !shared_ok
            || !fits(q.own.k, q.own.v, q.own.first, q.own.end)?
            || keys == 0
        {
            return Ok(None);
        }
    }
    if n_kv == 0 || n_head % n_kv != 0 {
        return Ok(None);
    }
    let guards: Vec<_> = queries
        .iter()
        .map(|q| (q.q.storage_and_layout(), q.own.k.storage_and_layout(), q.own.v.storage_and_layout()))
        .collect();
    let mut views = Vec::with_capacity(queries.len());
    for (q, ((qs, ql), (ks, kl), (vs, vl))) in queries.iter().zip(&guards) {
        let (Some(qv), Some(kv), Some(vv)) = (cpu_f32(qs, ql), cpu_f32(ks, kl), cpu_f32(vs, vl)) else {
            return Ok(None);
        };
        views.push(View { q: qv, k: kv, v: vv, cap: q.own.k.dim(2)?, own: (q.own.first, q.own.end), shared: q.shared });
    }
    let shared_guards = shared.map(|(k, v)| (k.storage_and_layout(), v.storage_and_layout()));
    let shared_views = match &shared_guards {
        None => None,
        Some(((ks, kl), (vs, vl))) => match (cpu_f32(ks, kl), cpu_f32(vs, vl)) {
            (Some(k), Some(v)) => Some((k, v, shared.expect("guards of shared").0.dim(2)?)),
            _ => return Ok(None),
        },
    };
    let rep = n_head / n_kv;
    let scale = scale as f32;
    let mut out = vec![0f32; queries.len() * n_head * hd];
    let dst = DstPtr::new(&mut out);
    // Heads, each split over its queries where there are several (nine
    // heads on two threads would leave one idle a ninth of the time).
    let parts = if views.len() >= 4 { 2 } else { 1 };
    let per_part = views.len().div_ceil(parts);
    parallel_for(n_head * parts, |t| {
        let (h, first) = (t / parts, (t % parts) * per_part);
        let mine = &views[first..(first + per_part).min(views.len())];
        // SAFETY: task t alone writes out[(s·heads + h)·hd ..][..hd] for its queries s.
        let outs: Vec<&mut [f32]> = (first..first + mine.len())
            .map(|s| unsafe { std::slice::from_raw_parts_mut(dst.at((s * n_head + h) * hd), hd) })
            .collect();
        SCORES.with(|cell| head(mine, shared_views, h, h / rep, scale, &mut cell.borrow_mut(), outs));
    });
    let per = n_head * hd;
    Ok(Some(
        out.chunks_exact(per)
            .map(|o| Tensor::from_slice(o, (1, n_head, 1, hd), &Device::Cpu))
            .collect::<candle_core::Result<Vec<_>>>()?,
    ))
}

/// One query's values, borrowed from its tensors' storage.
struct View<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    /// Positions the own buffers hold.
    cap: usize,
    own: (usize, usize),
    shared: Option<(usize, usize)>,
}

/// Shared keys (and values) read per block of this many, each block once
/// for all the queries that see it while it is in the L1 cache.
const KEY_BLOCK: usize = 64;

/// Query head `h` (KV head `g`) of every query: `o = softmax(scale · K q) ·
/// V` over its shared keys, then its own. The shared keys and values go
/// block by block ([`KEY_BLOCK`]), each block serving every query that sees
/// it; every query's scores, softmax and sums go key by key in its own
/// order ([`scores`] and [`weighted`] do not depend on where a range
/// starts or ends). `s` holds each query's scores (reused across calls).
fn head(
    views: &[View],
    shared: Option<(&[f32], &[f32], usize)>,
    h: usize,
    g: usize,
    scale: f32,
    s: &mut Vec<Vec<f32>>,
    mut outs: Vec<&mut [f32]>,
) {
    let hd = outs.first().map_or(0, |o| o.len());
    let at = |cap: usize, j: usize| (g * cap + j) * hd;
    s.resize_with(views.len(), Vec::new);
    for scores in s.iter_mut() {
        scores.clear();
    }
    let lo = views.iter().filter_map(|v| v.shared).map(|(a, _)| a).min().unwrap_or(0);
    let hi = views.iter().filter_map(|v| v.shared).map(|(_, b)| b).max().unwrap_or(0);
    // Each query's part of shared keys jb..jb + KEY_BLOCK: (key range, its first score).
    let part = |v: &View, jb: usize| {
        let (a, b) = v.shared?;
        let (x, y) = (a.max(jb), b.min(jb + KEY_BLOCK));
        (x < y).then_some((x..y, x - a))
    };
    if let Some((sk, _, cap)) = shared {
        for jb in (lo..hi).step_by(KEY_BLOCK) {
            for (v, scores) in views.iter().zip(s.iter_mut()) {
                if let Some((keys, _)) = part(v, jb) {
                    kernels::scores(
                        &v.q[h * hd..(h + 1) * hd],
                        &sk[at(cap, keys.start)..at(cap, keys.end)],
                        scale,
                        scores,
                    );
                }
            }
        }
    }
    for (v, scores) in views.iter().zip(s.iter_mut()) {
        let (a, b) = v.own;
        kernels::scores(&v.q[h * hd..(h + 1) * hd], &v.k[at(v.cap, a)..at(v.cap, b.max(a))], scale, scores);
        // Probabilities from here on.
        softmax_in_place(scores);
    }
    for o in outs.iter_mut() {
        o.fill(0.0);
    }
    if let Some((_, sv, cap)) = shared {
        for jb in (lo..hi).step_by(KEY_BLOCK) {
            for ((v, scores), o) in views.iter().zip(s.iter()).zip(outs.iter_mut()) {
                if let Some((keys, first)) = part(v, jb) {
                    let n = keys.len();
                    kernels::weighted(&scores[first..first + n], &sv[at(cap, keys.start)..at(cap, keys.end)], o);
                }
            }
        }
    }
    for ((v, scores), o) in views.iter().zip(s.iter()).zip(outs.iter_mut()) {
        let (a, b) = v.own;
        let before = v.shared.map_or(0, |(a, b)| b - a);
        kernels::weighted(&scores[before..], &v.v[at(v.cap, a)..at(v.cap, b.max(a))], o);
    }
}

/// The two products of a head's attention, on rows of `q.len()` (= `o.len()`)
/// values: with AVX2 compiled in and rows a multiple of 64 long,
/// explicit SIMD (eight keys at a time; values held in registers across the
/// keys); otherwise plain loops. Both give the same bits (the same
/// operations in the same order), and a key's score and a value's
/// contribution do not depend on where the key falls in a call's range.
mod kernels {
    /// Appends `scale · q·k` to `out` for each row `k` of `keys`.
    pub(super) fn scores(q: &[f32], keys: &[f32], scale: f32, out: &mut Vec<f32>) {
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        if q.len().is_multiple_of(64) {
            // SAFETY: AVX2 is compiled in; rows of 64·c values.
            return unsafe { x86::scores(q, keys, scale, out) };
        }
        plain_scores(q, keys, scale, out)
    }

    /// `o += Σ p[i] · vals[i]`, row by row in order.
    pub(super) fn weighted(p: &[f32], vals: &[f32], o: &mut [f32]) {
        #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
        if o.len().is_multiple_of(64) {
            // SAFETY: as above.
            return unsafe { x86::weighted(p, vals, o) };
        }
        plain_weighted(p, vals, o)
    }

    /// [`scores`] in plain loops.
    pub(super) fn plain_scores(q: &[f32], keys: &[f32], scale: f32, out: &mut Vec<f32>) {
        out.extend(keys.chunks_exact(q.len()).map(|k| dot(q, k) * scale));
    }

    /// [`weighted`] in plain loops.
    pub(super) fn plain_weighted(p: &[f32], vals: &[f32], o: &mut [f32]) {
        for (p, x) in p.iter().zip(vals.chunks_exact(o.len())) {
            for (acc, x) in o.iter_mut().zip(x) {
                *acc += p * x;
            }
        }
    }

    /// Σ a·b in eight lanes (vectorized), then the lanes added.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut lanes = [0f32; 8];
        let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
        for (x, y) in ac.zip(bc) {
            for i in 0..8 {
                lanes[i] += x[i] * y[i];
            }
        }
        lanes.iter().sum::<f32>() + tail
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    mod x86 {
        use std::arch::x86_64::*;

        /// [`super::dot`]'s operations, eight keys at a time: each key's
        /// eight lanes accumulate `q·k` chunk by chunk (a multiply, then an
        /// add), then the eight keys' lanes are transposed and added in lane
        /// order. A key's score is the same bits as `dot`'s, whichever of
        /// the eight places it takes (the last keys sit beside zeros).
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn scores(q: &[f32], keys: &[f32], scale: f32, out: &mut Vec<f32>) {
            let hd = q.len();
            let n = keys.len() / hd;
            out.reserve(n);
            let (qp, kp) = (q.as_ptr(), keys.as_ptr());
            let sc = _mm256_set1_ps(scale);
            for i in (0..n).step_by(8) {
                let g = (n - i).min(8);
                let k = kp.add(i * hd);
                // Eight keys: a loop of known length, unrolled.
                let acc = if g == 8 { lanes::<true>(qp, k, hd, 8) } else { lanes::<false>(qp, k, hd, g) };
                let lanes = transpose(acc);
                let mut sum = _mm256_setzero_ps();
                for l in lanes {
                    sum = _mm256_add_ps(sum, l);
                }
                let mut v = [0f32; 8];
                _mm256_storeu_ps(v.as_mut_ptr(), _mm256_mul_ps(sum, sc));
                out.extend_from_slice(&v[..g]);
            }
        }

        /// Each of the first `g` keys (eight when `FULL`; rows of `hd` at
        /// `k`): eight lanes of `q·k` accumulated chunk by chunk (a
        /// multiply, then an add); zeros for the rest.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn lanes<const FULL: bool>(q: *const f32, k: *const f32, hd: usize, g: usize) -> [__m256; 8] {
            let g = if FULL { 8 } else { g };
            let mut acc = [_mm256_setzero_ps(); 8];
            for c in (0..hd).step_by(8) {
                let qv = _mm256_loadu_ps(q.add(c));
                for (t, a) in acc.iter_mut().enumerate().take(g) {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(qv, _mm256_loadu_ps(k.add(t * hd + c))));
                }
            }
            acc
        }

        /// Rows of an 8 × 8 block as its columns.
        #[inline]
        #[target_feature(enable = "avx2")]
        unsafe fn transpose(r: [__m256; 8]) -> [__m256; 8] {
            let t: [__m256; 8] = std::array::from_fn(|i| {
                let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
                if i % 2 == 0 {
                    _mm256_unpacklo_ps(a, b)
                } else {
                    _mm256_unpackhi_ps(a, b)
                }
            });
            let u: [__m256; 8] = std::array::from_fn(|i| {
                let base = (i / 4) * 4;
                let (a, b) = (_mm256_castps_pd(t[base + (i % 4) / 2]), _mm256_castps_pd(t[base + 2 + (i % 4) / 2]));
                _mm256_castpd_ps(if i % 2 == 0 { _mm256_unpacklo_pd(a, b) } else { _mm256_unpackhi_pd(a, b) })
            });
            std::array::from_fn(|i| {
                let c = i % 4;
                if i < 4 {
                    _mm256_permute2f128_ps::<0x20>(u[c], u[c + 4])
                } else {
                    _mm256_permute2f128_ps::<0x31>(u[c], u[c + 4])
                }
            })
        }

        /// `o += p[i] · vals[i]` row by row (a multiply, then an add, as
        /// the plain loop), 64 values at a time held in eight registers
        /// across the rows.
        #[target_feature(enable = "avx2")]
        pub(super) unsafe fn weighted(p: &[f32], vals: &[f32], o: &mut [f32]) {
            let hd = o.len();
            let n = p.len().min(vals.len() / hd);
            for c0 in (0..hd).step_by(64) {
                let op = o.as_mut_ptr().add(c0);
                let mut acc: [__m256; 8] = std::array::from_fn(|t| _mm256_loadu_ps(op.add(8 * t)));
                for (i, &w) in p.iter().enumerate().take(n) {
                    let (pv, row) = (_mm256_set1_ps(w), vals.as_ptr().add(i * hd + c0));
                    for (t, a) in acc.iter_mut().enumerate() {
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(pv, _mm256_loadu_ps(row.add(8 * t))));
                    }
                }
                for (t, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(op.add(8 * t), *a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD kernels (where compiled in) give the plain loops' bits, for
    /// any number of keys (a last group of fewer than eight included) and
    /// rows of 64 and 256 values.
    #[test]
    fn kernels_give_the_plain_loops_bits() {
        let dev = Device::Cpu;
        let randn = |n: usize| Tensor::randn(0f32, 1.0, n, &dev).unwrap().to_vec1::<f32>().unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for hd in [64, 256] {
            let q = randn(hd);
            for n in [0, 1, 7, 8, 9, 21] {
                let (keys, p) = (randn(n * hd), randn(n));
                let (mut a, mut b) = (vec![1.5], vec![1.5]);
                kernels::scores(&q, &keys, 0.125, &mut a);
                kernels::plain_scores(&q, &keys, 0.125, &mut b);
                assert_eq!(bits(&a), bits(&b), "scores, {n} keys of {hd}");
                let (mut oa, mut ob) = (randn(hd), vec![0.0; hd]);
                ob.copy_from_slice(&oa);
                kernels::weighted(&p, &keys, &mut oa);
                kernels::plain_weighted(&p, &keys, &mut ob);
                assert_eq!(bits(&oa), bits(&ob), "weighted sums, {n} keys of {hd}");
            }
        }
    }

    /// Against the plain formula in f64, grouped heads and a window's first
    /// key included; a query head's output is a softmax-weighted mean of
    /// its KV head's values.
    #[test]
    fn attends_as_the_formula_does() {
        let dev = Device::Cpu;
        let (n_head, n_kv, cap, hd) = (6, 2, 40, 20);
        let q = Tensor::randn(0f32, 1.0, (1, n_head, 1, hd), &dev).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, n_kv, cap, hd), &dev).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, n_kv, cap, hd), &dev).unwrap();
        let (qv, kv, vv) = (
            q.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            k.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            v.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        for (first, end) in [(0, 1), (0, 33), (7, 33), (0, cap)] {
            let got = attend(&q, &k, &v, first, end, 0.3).unwrap().unwrap();
            assert_eq!(got.dims(), &[1, n_head, 1, hd]);
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for h in 0..n_head {
                let g = h / (n_head / n_kv);
                let row = |t: &[f32], j: usize| t[(g * cap + j) * hd..(g * cap + j + 1) * hd].to_vec();
                let s: Vec<f64> = (first..end)
                    .map(|j| {
                        0.3 * row(&kv, j).iter().zip(&qv[h * hd..]).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for d in 0..hd {
                    let want: f64 = (first..end).zip(&s).map(|(j, x)| (x - m).exp() / z * row(&vv, j)[d] as f64).sum();
                    let have = got[h * hd + d] as f64;
                    assert!((have - want).abs() < 1e-5, "head {h} dim {d} keys {first}..{end}: {have} vs {want}");
                }
            }
        }
        // Not one query token, or keys past the buffer: candle's path instead.
        let two = Tensor::zeros((1, n_head, 2, hd), candle_core::DType::F32, &dev).unwrap();
        assert!(attend(&two, &k, &v, 0, 3, 1.0).unwrap().is_none());
        assert!(attend(&q, &k, &v, 0, cap + 1, 1.0).unwrap().is_none());
    }

    /// Keys split over two buffers (a shared prefix's, then a sequence's
    /// own) give the bits of one buffer holding them all, a window's first
    /// key in either part; and queries attended together give each the bits
    /// it gets alone, whatever else shares the batch.
    #[test]
    fn split_and_batched_keys_attend_as_one_range() {
        let dev = Device::Cpu;
        let (n_head, n_kv, cap, hd) = (4, 2, 48, 16);
        let randn = |shape: (usize, usize, usize, usize)| Tensor::randn(0f32, 1.0, shape, &dev).unwrap();
        let (k, v) = (randn((1, n_kv, cap, hd)), randn((1, n_kv, cap, hd)));
        let p = 30;
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        // Three sequences continuing the first p keys of k/v, each with its
        // own keys p..end (its own buffer holds them at 0..), and a fourth
        // with no shared keys.
        let ends = [41, 35, 48, 20];
        let own: Vec<(Tensor, Tensor)> = ends
            .iter()
            .map(|&end| {
                let (ok, ov) = (randn((1, n_kv, 20, hd)), randn((1, n_kv, 20, hd)));
                if end > p {
                    ok.slice_set(&k.narrow(2, p, end - p).unwrap().contiguous().unwrap(), 2, 0).unwrap();
                    ov.slice_set(&v.narrow(2, p, end - p).unwrap().contiguous().unwrap(), 2, 0).unwrap();
                }
                (ok, ov)
            })
            .collect();
        let qs: Vec<Tensor> = ends.iter().map(|_| randn((1, n_head, 1, hd))).collect();
        for first in [0, 12, p, 33] {
            let alone: Vec<Vec<u32>> =
                (0..3).map(|s| bits(&attend(&qs[s], &k, &v, first, ends[s], 0.25).unwrap().unwrap())).collect();
            let last = bits(&attend(&qs[3], &own[3].0, &own[3].1, first.min(19), 20, 0.25).unwrap().unwrap());
            let query = |s: usize| Query {
                q: &qs[s],
                shared: (first < p).then_some((first, p)),
                own: KeyRange { k: &own[s].0, v: &own[s].1, first: first.saturating_sub(p), end: ends[s] - p },
            };
            let fourth = Query {
                q: &qs[3],
                shared: None,
                own: KeyRange { k: &own[3].0, v: &own[3].1, first: first.min(19), end: 20 },
            };
            for (s, want) in alone.iter().enumerate() {
                let one = attend_batch(&[query(s)], Some((&k, &v)), 0.25).unwrap().unwrap();
                assert_eq!(&bits(&one[0]), want, "sequence {s}, first key {first}: split");
            }
            let all = attend_batch(&[query(2), fourth, query(0), query(1)], Some((&k, &v)), 0.25).unwrap().unwrap();
            assert_eq!(bits(&all[0]), alone[2], "first key {first}: batched");
            assert_eq!(bits(&all[1]), last, "first key {first}: batched");
            assert_eq!(bits(&all[2]), alone[0], "first key {first}: batched");
            assert_eq!(bits(&all[3]), alone[1], "first key {first}: batched");
        }
    }
}
