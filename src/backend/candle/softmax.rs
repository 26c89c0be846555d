//! The softmax of attention scores on the CPU, one vectorized routine for
//! both attention paths: the many-query blocks of prefill and scoring
//! ([`masked_softmax`]: scale, additive mask and softmax fused in one pass)
//! and the one-token decode steps (`decode_attention`, through
//! [`softmax_in_place`]).
//!
//! candle's `softmax_last_dim` calls libm's `expf` one score at a time and
//! hands every row to rayon as its own task, after two more passes (the
//! scaling and the mask's broadcast add), each allocating a tensor: in a
//! profile of HellaSwag and MMLU scoring on an AVX2-only build, `expf` alone
//! took 2.3% of the time and rayon's per-row tasks about as much again. Here
//! `e^x` is [`super::activation`]'s branch-free polynomial (about 2 ulp from
//! libm's), summed in eight lanes, and rows go to the compute threads in
//! chunks. A masked score (−∞) gets exactly 0, as with `expf`.

use super::activation::exp;
use super::linear::{parallel_for, DstPtr};
use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

/// `x ← softmax(x)`: maximum, `e^(x − max)` (exactly 0 for −∞: the
/// polynomial clamps its input, which would give a masked key a weight of
/// about 1e-38), the sum in eight lanes, each divided by it. A row whose
/// scores are all −∞ has no softmax (NaN, as candle's).
pub(super) fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // One plain loop (both sides of the select computed) so that it
    // compiles to SIMD, then the sum in eight lanes.
    for v in x.iter_mut() {
        let d = *v - max;
        let e = exp(d);
        *v = if d == f32::NEG_INFINITY { 0.0 } else { e };
    }
    let mut lanes = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    let sum = lanes.iter().sum::<f32>() + tail;
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `softmax(scale · att + mask)` over the last dimension of `att` (`(…,
/// rows, keys)`), where `mask` (`(seq, keys)`, additive, −∞ for hidden keys)
/// applies to row `r` as its row `r % seq` (the query heads sharing a KV
/// head stacked as `rep × seq` rows), or no mask. The same numbers as
/// candle's three ops up to `e^x`'s and the sum's rounding. Other devices and
/// dtypes take candle's ops.
pub(super) fn masked_softmax(att: &Tensor, mask: Option<&Tensor>, scale: f64) -> Result<Tensor> {
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if !cpu_f32(att) || mask.is_some_and(|m| !cpu_f32(m)) {
        let scaled = (att * scale)?;
        let scaled = match mask {
            None => scaled,
            Some(m) => {
                let (seq, keys) = m.dims2()?;
                let mut dims = att.dims()[..att.rank() - 1].to_vec();
                let rows = dims.pop().unwrap_or(1);
                dims.extend([rows / seq, seq, keys]);
                scaled.reshape(dims)?.broadcast_add(m)?.reshape(att.shape())?
            }
        };
        return Ok(candle_nn::ops::softmax_last_dim(&scaled)?);
    }
    let att = att.contiguous()?;
    let mask = match mask {
        Some(m) => m.contiguous()?,
        // A one-row zero mask: every row's own (r % 1 = 0).
        None => Tensor::zeros((1, att.dim(candle_core::D::Minus1)?), att.dtype(), att.device())?,
    };
    Ok(att.apply_op2_no_bwd(&mask, &MaskedSoftmax { scale: scale as f32 })?)
}

struct MaskedSoftmax {
    scale: f32,
}

/// Rows per parallel task: a block's rows are a few hundred keys long.
const ROWS_PER_TASK: usize = 16;

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "openweigh-masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, m) = super::cpu_f32_pair(self.name(), (s1, l1), (s2, l2))?;
        let keys = *l1.shape().dims().last().unwrap_or(&0);
        if keys == 0 || l2.shape().dims().last() != Some(&keys) || m.is_empty() {
            candle_core::bail!("openweigh-masked-softmax: scores {:?} and mask {:?} differ", l1.shape(), l2.shape())
        }
        let (rows, seq) = (a.len() / keys, m.len() / keys);
        let mut dst = vec![0f32; a.len()];
        let out = DstPtr::new(&mut dst);
        parallel_for(rows.div_ceil(ROWS_PER_TASK), |t| {
            for r in t * ROWS_PER_TASK..((t + 1) * ROWS_PER_TASK).min(rows) {
                // SAFETY: row r of dst (which outlives the pool call) is
                // written by this task alone.
                let d = unsafe { std::slice::from_raw_parts_mut(out.at(r * keys), keys) };
                let (src, mask) = (&a[r * keys..(r + 1) * keys], &m[(r % seq) * keys..(r % seq + 1) * keys]);
                for ((d, &s), &mk) in d.iter_mut().zip(src).zip(mask) {
                    *d = s * self.scale + mk;
                }
                softmax_in_place(d);
            }
        });
        Ok((CpuStorage::F32(dst), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against candle's three ops: within a few ulp, masked keys exactly 0.
    #[test]
    fn fused_softmax_matches_candles_ops() -> Result<()> {
        let dev = Device::Cpu;
        let (heads, seq, keys) = (6, 5, 37);
        let att = Tensor::randn(0f32, 3.0, (1, 3, heads / 3 * seq, keys), &dev)?;
        let mut mask = vec![0f32; seq * keys];
        for (i, v) in mask.iter_mut().enumerate() {
            if (i % keys) > 30 + i / keys {
                *v = f32::NEG_INFINITY;
            }
        }
        let mask = Tensor::from_vec(mask, (seq, keys), &dev)?;
        let want = candle_nn::ops::softmax_last_dim(
            &(att.reshape((1, 3, heads / 3, seq, keys))? * 0.125)?.broadcast_add(&mask)?.reshape(att.shape())?,
        )?;
        let got = masked_softmax(&att, Some(&mask), 0.125)?;
        let (want, got) = (want.flatten_all()?.to_vec1::<f32>()?, got.flatten_all()?.to_vec1::<f32>()?);
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if *w == 0.0 {
                assert_eq!(*g, 0.0, "masked score {i}");
            } else {
                assert!((w - g).abs() <= 4.0 * f32::EPSILON * w.abs().max(1e-3), "score {i}: {g} vs {w}");
            }
        }
        let unmasked = masked_softmax(&att, None, 0.125)?.flatten_all()?.to_vec1::<f32>()?;
        let want = candle_nn::ops::softmax_last_dim(&(att * 0.125)?)?.flatten_all()?.to_vec1::<f32>()?;
        for (w, g) in want.iter().zip(&unmasked) {
            assert!((w - g).abs() <= 4.0 * f32::EPSILON * w.abs().max(1e-3));
        }
        Ok(())
    }

    #[test]
    fn rows_sum_to_one_and_keep_their_order() {
        let mut x: Vec<f32> = (0..19).map(|i| (i as f32 * 0.7).sin() * 20.0).collect();
        let before = x.clone();
        softmax_in_place(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for i in 0..x.len() {
            for j in 0..x.len() {
                if before[i] < before[j] {
                    assert!(x[i] <= x[j]);
                }
            }
        }
    }
}
