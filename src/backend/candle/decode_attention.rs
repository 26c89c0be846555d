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
//! as 8-lane partial sums, the softmax in f32 as candle's: maximum, `exp`,
//! sum, divide).

use super::cpu_f32;
use super::linear::{parallel_for, DstPtr};
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::cell::RefCell;

thread_local! {
    /// One head's scores (one per visible key), reused across calls.
    static SCORES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
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
    let (_, n_head, one, hd) = q.dims4()?;
    let (_, n_kv, cap, kd) = k.dims4()?;
    if one != 1 || kd != hd || v.dims() != k.dims() || n_kv == 0 || n_head % n_kv != 0 || end > cap || first >= end {
        return Ok(None);
    }
    let ((qs, ql), (ks, kl), (vs, vl)) = (q.storage_and_layout(), k.storage_and_layout(), v.storage_and_layout());
    let (Some(qv), Some(kv), Some(vv)) = (cpu_f32(&qs, ql), cpu_f32(&ks, kl), cpu_f32(&vs, vl)) else {
        return Ok(None);
    };
    let rep = n_head / n_kv;
    let scale = scale as f32;
    let mut out = vec![0f32; n_head * hd];
    let dst = DstPtr::new(&mut out);
    parallel_for(n_head, |h| {
        let g = h / rep;
        let keys = &kv[(g * cap + first) * hd..(g * cap + end) * hd];
        let vals = &vv[(g * cap + first) * hd..(g * cap + end) * hd];
        // SAFETY: head h alone writes out[h·hd .. (h+1)·hd].
        let o = unsafe { std::slice::from_raw_parts_mut(dst.at(h * hd), hd) };
        SCORES.with(|cell| head(&qv[h * hd..(h + 1) * hd], keys, vals, scale, &mut cell.borrow_mut(), o));
    });
    Ok(Some(Tensor::from_vec(out, (1, n_head, 1, hd), &Device::Cpu)?))
}

/// One query head: `o = softmax(scale · K q) · V` over the rows of `keys`
/// and `vals` (each `q.len()` wide).
fn head(q: &[f32], keys: &[f32], vals: &[f32], scale: f32, s: &mut Vec<f32>, o: &mut [f32]) {
    let hd = q.len();
    s.clear();
    s.extend(keys.chunks_exact(hd).map(|key| dot(q, key) * scale));
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in s.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    o.fill(0.0);
    for (p, val) in s.iter().zip(vals.chunks_exact(hd)) {
        let p = *p / sum;
        for (acc, x) in o.iter_mut().zip(val) {
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
}
