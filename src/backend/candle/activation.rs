//! The feed-forward block's gated activation, `act(gate) ⊙ up`, fused into
//! one vectorized pass on the CPU.
//!
//! candle computes GELU and SiLU one element at a time through libm's `tanhf`
//! and `expf` (about 18% of Gemma 3's prefill time in a profile), then
//! multiplies by `up` in a second pass. Here both activations are written as
//! `x / (1 + e^(-t))` with a branch-free `e^x` (Cephes' range reduction and
//! polynomial, about 2 ulp), so the loop compiles to SIMD, and the product
//! with `up` happens in the same pass. Other devices (CUDA) and
//! non-contiguous inputs take candle's ops. [`gated_halves`] takes the gate
//! and up projections computed as one product (each row the gate's values,
//! then up's), without splitting them into two tensors first.

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

/// The activation applied to the gate projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// GELU, tanh approximation (`gelu_pytorch_tanh`: Gemma).
    GeluTanh,
    /// SiLU / swish, `x · sigmoid(x)` (Llama, Qwen2).
    Silu,
}

/// `act(gate) * up`, elementwise (same shapes).
pub fn gated(act: Act, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.device().is_cpu() && gate.dtype() == candle_core::DType::F32 && up.dtype() == candle_core::DType::F32 {
        return Ok(gate.contiguous()?.apply_op2_no_bwd(&up.contiguous()?, &Gated(act))?);
    }
    let g = match act {
        Act::GeluTanh => gate.gelu()?,
        Act::Silu => candle_nn::ops::silu(gate)?,
    };
    Ok((g * up)?)
}

/// e^x for f32 without branches: x = n·ln2 + r, |r| ≤ ln2/2, e^r by Cephes'
/// `expf` polynomial, 2^n put in the exponent bits. Inputs are clamped to
/// [-87.3, 88.3] (results stay normal and finite), enough for the callers,
/// which need 1 / (1 + e^x) (the activations) or e^(x − max) ≤ 1 (softmax
/// terms: [`super::softmax`], the streamed head's log-sum-exp).
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // max/min rather than clamp: a NaN becomes -87.3, so `n` below is
    // always finite.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.3).min(88.3);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // `n` is a whole number in [-126, 128] (x clamped above), so the
    // unchecked conversion is exact; `as i32` saturates, which LLVM cannot
    // vectorize (it converted lane by lane, the loops' main cost).
    // SAFETY: finite (NaN cannot pass the max/min) and in i32's range.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    er * f32::from_bits(((n + 127) << 23) as u32)
}

/// GELU, tanh approximation: 0.5·x·(1 + tanh(u)) = x / (1 + e^(-2u)) with
/// u = √(2/π)·(x + 0.044715·x³).
#[inline(always)]
fn gelu_tanh(x: f32) -> f32 {
    const TWO_SQRT_2_OVER_PI: f32 = 2.0 * 0.797_884_6;
    x / (1.0 + exp(-TWO_SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

#[inline(always)]
fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `dst[i] = act(gate[i]) * up[i]`, in one vectorizable loop per activation.
pub fn gated_slice(act: Act, gate: &[f32], up: &[f32], dst: &mut [f32]) {
    let it = dst.iter_mut().zip(gate.iter().zip(up));
    match act {
        Act::GeluTanh => it.for_each(|(d, (&g, &u))| *d = gelu_tanh(g) * u),
        Act::Silu => it.for_each(|(d, (&g, &u))| *d = silu(g) * u),
    }
}

struct Gated(Act);

impl CustomOp2 for Gated {
    fn name(&self) -> &'static str {
        "openweigh-gated-activation"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (g, u) = super::cpu_f32_pair(self.name(), (s1, l1), (s2, l2))?;
        if l1.shape() != l2.shape() {
            candle_core::bail!("openweigh-gated-activation: shapes {:?} and {:?} differ", l1.shape(), l2.shape())
        }
        let mut dst = vec![0f32; g.len()];
        // Large tensors (prefill chunks) in parallel, in chunks of 16 Ki values.
        const CHUNK: usize = 1 << 14;
        if g.len() > CHUNK {
            let out = super::linear::DstPtr::new(&mut dst);
            super::linear::parallel_for(g.len().div_ceil(CHUNK), |c| {
                let (a, b) = (c * CHUNK, ((c + 1) * CHUNK).min(g.len()));
                // SAFETY: chunks are disjoint ranges of dst, which outlives the pool call.
                let d = unsafe { std::slice::from_raw_parts_mut(out.at(a), b - a) };
                gated_slice(self.0, &g[a..b], &u[a..b], d);
            });
        } else {
            gated_slice(self.0, g, u, &mut dst);
        }
        Ok((CpuStorage::F32(dst), l1.shape().clone()))
    }
}

/// `act(gate) * up` for `gu` (…, 2·inner) whose rows hold the gate's values
/// then up's (a joined gate and up projection): (…, inner).
pub fn gated_halves(act: Act, gu: &Tensor) -> Result<Tensor> {
    let inner = gu.dim(candle_core::D::Minus1)? / 2;
    if gu.device().is_cpu() && gu.dtype() == candle_core::DType::F32 {
        return Ok(gu.contiguous()?.apply_op1_no_bwd(&GatedHalves(act))?);
    }
    gated(act, &gu.narrow(candle_core::D::Minus1, 0, inner)?, &gu.narrow(candle_core::D::Minus1, inner, inner)?)
}

struct GatedHalves(Act);

impl CustomOp1 for GatedHalves {
    fn name(&self) -> &'static str {
        "openweigh-gated-halves"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(all), Some((a, b))) = (s, l.contiguous_offsets()) else {
            candle_core::bail!("openweigh-gated-halves: contiguous f32 input expected")
        };
        let gu = &all[a..b];
        let mut dims = l.shape().dims().to_vec();
        let width = dims.last().copied().unwrap_or(0);
        if width == 0 || width % 2 != 0 {
            candle_core::bail!("openweigh-gated-halves: last dimension {width} is not gate and up side by side")
        }
        let (inner, rows) = (width / 2, gu.len() / width);
        let mut dst = vec![0f32; rows * inner];
        // Rows in parallel, about 16 Ki values a task.
        let per_task = (1usize << 14).div_ceil(inner).max(1);
        let out = super::linear::DstPtr::new(&mut dst);
        super::linear::parallel_for(rows.div_ceil(per_task), |t| {
            for r in t * per_task..((t + 1) * per_task).min(rows) {
                // SAFETY: row r of dst (which outlives the pool call) is written by this task alone.
                let d = unsafe { std::slice::from_raw_parts_mut(out.at(r * inner), inner) };
                let row = &gu[r * width..(r + 1) * width];
                gated_slice(self.0, &row[..inner], &row[inner..], d);
            }
        });
        *dims.last_mut().expect("non-empty dims") = inner;
        Ok((CpuStorage::F32(dst), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = (exp(x) - x.exp()).abs() / x.exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        // Out of range and NaN inputs stay finite (the exponent's unchecked
        // conversion never sees a NaN).
        assert!(exp(f32::NAN).is_finite() && exp(-1e9) > 0.0 && exp(1e9).is_finite());
    }

    #[test]
    fn fused_matches_candle() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        // Values from -30 to 30 (saturated and central parts), 100k of them
        // so the parallel path runs too.
        let n = 100_003;
        let g: Vec<f32> = (0..n).map(|i| -30.0 + 60.0 * i as f32 / n as f32).collect();
        let u: Vec<f32> = (0..n).map(|i| ((i % 17) as f32 - 8.0) / 3.0).collect();
        let (gt, ut) = (Tensor::from_vec(g, (1, n), &dev)?, Tensor::from_vec(u, (1, n), &dev)?);
        for (act, reference) in [(Act::GeluTanh, (gt.gelu()? * &ut)?), (Act::Silu, (candle_nn::ops::silu(&gt)? * &ut)?)]
        {
            let ours = gated(act, &gt, &ut)?.flatten_all()?.to_vec1::<f32>()?;
            let want = reference.flatten_all()?.to_vec1::<f32>()?;
            for (i, (a, b)) in ours.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{act:?} at {i}: {a} vs {b}");
            }
        }
        Ok(())
    }

    /// The joined form gives the two-tensor form's values, bit for bit.
    #[test]
    fn halves_match_two_tensors() -> Result<()> {
        let dev = candle_core::Device::Cpu;
        for (rows, inner) in [(3, 1536), (40, 640), (1, 8)] {
            let gu = Tensor::randn(0f32, 3.0, (1, rows, 2 * inner), &dev)?;
            let (g, u) = (gu.narrow(2, 0, inner)?, gu.narrow(2, inner, inner)?);
            for act in [Act::GeluTanh, Act::Silu] {
                let a = gated_halves(act, &gu)?;
                assert_eq!(a.dims(), &[1, rows, inner]);
                assert_eq!(a.flatten_all()?.to_vec1::<f32>()?, gated(act, &g, &u)?.flatten_all()?.to_vec1::<f32>()?);
            }
        }
        Ok(())
    }
}
