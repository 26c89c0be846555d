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
    parallel_for(n_head, |h| {
        // SAFETY: head h alone writes out[(s·heads + h)·hd ..][..hd] for every s.
        let outs: Vec<&mut [f32]> = (0..views.len())
            .map(|s| unsafe { std::slice::from_raw_parts_mut(dst.at((s * n_head + h) * hd), hd) })
            .collect();
        SCORES.with(|cell| head(&views, shared_views, h, h / rep, scale, &mut cell.borrow_mut(), outs));
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

/// Query head `h` (KV head `g`) of every query: `o = softmax(scale · K q) ·
/// V` over its shared keys, then its own. Each shared key and value row is
/// read once for all the queries that see it; every query's scores,
/// softmax and sums go key by key in its own order. `s` holds each query's
/// scores (reused across calls).
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
    let row = |cap: usize, j: usize| -> std::ops::Range<usize> { (g * cap + j) * hd..(g * cap + j + 1) * hd };
    s.resize_with(views.len(), Vec::new);
    for scores in s.iter_mut() {
        scores.clear();
    }
    let span = |f: fn(&View) -> Option<(usize, usize)>| {
        let lo = views.iter().filter_map(f).map(|(a, _)| a).min().unwrap_or(0);
        let hi = views.iter().filter_map(f).map(|(_, b)| b).max().unwrap_or(0);
        (lo, hi)
    };
    let (lo, hi) = span(|v| v.shared);
    if let Some((sk, _, cap)) = shared {
        for j in lo..hi {
            let key = &sk[row(cap, j)];
            for (v, scores) in views.iter().zip(s.iter_mut()) {
                if v.shared.is_some_and(|(a, b)| a <= j && j < b) {
                    scores.push(dot(&v.q[h * hd..(h + 1) * hd], key) * scale);
                }
            }
        }
    }
    for (v, scores) in views.iter().zip(s.iter_mut()) {
        let q = &v.q[h * hd..(h + 1) * hd];
        scores.extend((v.own.0..v.own.1).map(|j| dot(q, &v.k[row(v.cap, j)]) * scale));
        // Probabilities from here on.
        softmax_in_place(scores);
    }
    for o in outs.iter_mut() {
        o.fill(0.0);
    }
    if let Some((_, sv, cap)) = shared {
        for j in lo..hi {
            let val = &sv[row(cap, j)];
            for ((v, scores), o) in views.iter().zip(s.iter()).zip(outs.iter_mut()) {
                if let Some((a, _)) = v.shared.filter(|&(a, b)| a <= j && j < b) {
                    axpy(scores[j - a], val, o);
                }
            }
        }
    }
    for ((v, scores), o) in views.iter().zip(s.iter()).zip(outs.iter_mut()) {
        let before = v.shared.map_or(0, |(a, b)| b - a);
        for (j, p) in (v.own.0..v.own.1).zip(&scores[before..]) {
            axpy(*p, &v.v[row(v.cap, j)], o);
        }
    }
}

/// `o += p · x`.
fn axpy(p: f32, x: &[f32], o: &mut [f32]) {
    for (acc, x) in o.iter_mut().zip(x) {
        *acc += p * x;
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

#[cfg(test)]
mod tests {
    use super::*;

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
