//! The many-row product `x · Wᵀ` for Q4_1, Q5_0 and Q8_0 weights (prefill
//! chunks, packed continuations, the streamed output head) in 8-bit
//! integers: activation rows quantized to 8 bits per block of 32 (as the
//! one-row dot products do), weight rows unpacked to unsigned bytes
//! ([`Values`]) eight at a time and interleaved so that one
//! 32-byte register holds four consecutive values of each of eight rows.
//! One broadcast of four activation bytes and one `maddubs` (`vpdpbusd` with
//! AVX-512 VNNI compiled in) then give eight rows' partial sums at once;
//! four activation rows share each weight register (a 4 × 8 tile). Per block
//! of 32 the integer sums are scaled once: `d_w · d_x · Σ q·y + m_w · s_x`.
//!
//! On a CPU without AVX-512 an f32 FMA does 8 multiply-adds per instruction
//! and `maddubs` 32, so this path is what makes prompts and scoring fast on
//! AVX2-only machines (an AMD Zen 3). Its results are those of the
//! quantized-activation dot products (not of f32 weights, as the
//! dequantizing GEMM that Q8_0 and the head took before was): every output
//! is computed by the same sequence of operations whichever tile, call or
//! pass its row falls in, so a row's result does not depend on the other
//! rows.

use super::linear::{parallel_for, quantize_rows, DstPtr, Out, Prefetch, Q8Rows, Unpack, UnpackedRow};
use std::cell::RefCell;

/// Weight rows per panel: the eight 32-bit lanes of an AVX2 register.
const NR: usize = 8;
/// Activation rows per tile.
const MR: usize = 4;
/// Panels per parallel task.
const PANELS_PER_TASK: usize = 4;
/// Activation rows below which a block prefetches its next panels' weight
/// bytes ([`Prefetch`]; generation steps, the head of a few scored rows).
/// With more rows a panel's tiles take long enough for the hardware
/// prefetcher, and lines fetched early only evict activations (Gemma 3
/// 270M pp512, Xeon Emerald Rapids, 2 threads: 1,060 → 1,017 and 1,046
/// tok/s when every block prefetched).
const PREFETCH_MAX_ROWS: usize = 32;

/// Eight weight rows unpacked and interleaved: for block `b` and chunk `c`
/// (values `4c..4c+4` of the block), bytes `b·256 + c·32 + 4j..+4` are row
/// `j`'s; `d` and `m` hold, per block, the eight rows' scale and offset
/// (value = d · q + m). Rows past the weight's end are zero. For the AVX2
/// tile of [`Values::Offset128`] weights ([`split_signs`]), `q` holds |q|
/// and `signed` the signed quants, in the same order.
#[derive(Default)]
struct Panel {
    q: Vec<u8>,
    signed: Vec<i8>,
    d: Vec<f32>,
    m: Vec<f32>,
}

impl Panel {
    /// Sizes the panel for rows of `kb` blocks.
    fn size(&mut self, kb: usize) {
        self.q.resize(kb * 32 * NR, 0);
        self.d.resize(kb * NR, 0.0);
        self.m.resize(kb * NR, 0.0);
    }
}

thread_local! {
    static PANEL: RefCell<(Panel, [UnpackedRow; NR])> =
        RefCell::new((Panel::default(), std::array::from_fn(|_| UnpackedRow::default())));
}

/// The values a weight's rows unpack to ([`Unpack`]), which decide how
/// many 16-bit `maddubs` sums can be added before they are widened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Values {
    /// Q4_1: 0..16 (eight sums fit in 16 bits).
    Under16,
    /// Q5_0: 0..32 (four sums fit).
    Under32,
    /// Q8_0: the signed quants plus 128 (0..256), with m = −128·d. With
    /// `vpdpbusd` (32-bit sums) they multiply as they are; with `maddubs`
    /// a sum of two could overflow 16 bits, so the AVX2 tile flips them
    /// back to signed and multiplies |q| by the activation carrying q's
    /// sign (as llama.cpp's Q8_0 dot products), widening every sum.
    Offset128,
}

/// A weight W (n × k) as the int8 GEMM reads it: `n` rows of `row_bytes`
/// each in `data`, unpacked row by row with `unpack` to `values`.
#[derive(Clone, Copy)]
pub(super) struct Int8Weight<'a> {
    pub(super) data: &'a [u8],
    pub(super) row_bytes: usize,
    pub(super) unpack: Unpack,
    pub(super) values: Values,
    pub(super) n: usize,
    pub(super) k: usize,
}

impl Int8Weight<'_> {
    /// The tile kernels for this weight on this build: (4 rows, 1 row).
    fn tiles(&self) -> (Tile, Tile) {
        // With `vpdpbusd` the sums are 32-bit from the start, and parts only
        // break the chain of dependent instructions (each waits ~5 cycles for
        // the last): four chains of two.
        match (VNNI, self.values) {
            (true, _) => (x86::tile::<MR, 4>, x86::tile::<1, 4>),
            (false, Values::Under16) => (x86::tile::<MR, 1>, x86::tile::<1, 1>),
            (false, Values::Under32) => (x86::tile::<MR, 2>, x86::tile::<1, 2>),
            (false, Values::Offset128) => (x86::tile_signed::<MR>, x86::tile_signed::<1>),
        }
    }

    /// Writes `xq` (m rows) · (W rows `j0..j0 + nj`)ᵀ on the calling thread:
    /// output (r, j0 + j) goes to `out` at `r · stride + col + j`.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C; rows `j0..j0 + nj` exist; the
    /// caller alone writes those `m × nj` places of `out`.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block(
        &self,
        xq: &Q8Rows,
        m: usize,
        j0: usize,
        nj: usize,
        out: DstPtr,
        stride: usize,
        col: usize,
    ) {
        let kb = self.k / 32;
        let (full, single) = self.tiles();
        let signed = self.values == Values::Offset128 && !VNNI;
        PANEL.with(|cell| {
            let (panel, rows) = &mut *cell.borrow_mut();
            panel.size(kb);
            let stretch = &self.data[j0 * self.row_bytes..(j0 + nj) * self.row_bytes];
            let mut ahead = (m < PREFETCH_MAX_ROWS).then(|| Prefetch::new(stretch));
            for p0 in (j0..j0 + nj).step_by(NR) {
                let pj = NR.min(j0 + nj - p0);
                if let Some(ahead) = ahead.as_mut() {
                    // Up to PREFETCH_BYTE past this panel, which is read right
                    // away (the first call asks for the first panel too).
                    ahead.before((p0 + pj - j0) * self.row_bytes);
                }
                debug_assert!(self.values != Values::Under16 || self.row_bytes == kb * 20);
                if self.values == Values::Under16 && pj == NR {
                    // Q4_1 in the file's block order (the only weights of
                    // these values): straight from the blocks.
                    x86::fill_q4_1(panel, self.data.as_ptr().add(p0 * self.row_bytes), self.row_bytes, kb);
                } else {
                    fill(panel, rows, self.unpack, self.data, self.row_bytes, p0, pj, kb);
                }
                if signed {
                    split_signs(panel);
                }
                let at = col + (p0 - j0);
                let mut r = 0;
                while r + MR <= m {
                    full(panel, xq, r, kb, out, stride, at, pj);
                    r += MR;
                }
                while r < m {
                    single(panel, xq, r, kb, out, stride, at, pj);
                    r += 1;
                }
            }
        })
    }

    /// `dst` (m × n) = `x` (m × k) · Wᵀ: activation rows quantized once,
    /// then panels of weight rows in parallel.
    ///
    /// # Safety
    /// The CPU must have AVX2, FMA and F16C (checked at load).
    pub(super) unsafe fn gemm(&self, x: &[f32], m: usize, dst: &mut [Out]) {
        let (n, k) = (self.n, self.k);
        assert!(
            k.is_multiple_of(32) && self.data.len() >= n * self.row_bytes && x.len() == m * k && dst.len() == m * n
        );
        let xq = quantize_rows(x, k, false);
        let out = DstPtr::uninit(dst);
        let rows_per_task = NR * PANELS_PER_TASK;
        parallel_for(n.div_ceil(rows_per_task), |t| {
            let j0 = t * rows_per_task;
            // SAFETY: rows j0.. lie inside `data` (asserted above); this task
            // alone writes columns j0..j0 + nj.
            unsafe { self.block(&xq, m, j0, rows_per_task.min(n - j0), out, n, j0) }
        });
    }
}

/// Whether this build multiplies bytes with `vpdpbusd` (AVX-512 VNNI).
const VNNI: bool = cfg!(all(target_feature = "avx512vnni", target_feature = "avx512vl"));

/// Turns a filled panel of [`Values::Offset128`] bytes (q + 128) into |q|
/// and the signed q, which the AVX2 tile would otherwise derive per chunk
/// for every four activation rows.
fn split_signs(panel: &mut Panel) {
    panel.signed.resize(panel.q.len(), 0);
    for (a, s) in panel.q.iter_mut().zip(panel.signed.iter_mut()) {
        *s = (*a ^ 0x80) as i8;
        *a = s.unsigned_abs();
    }
}

/// A tile kernel: (panel, activations, first row, blocks, output, row
/// stride, first column, columns).
type Tile = unsafe fn(&Panel, &Q8Rows, usize, usize, DstPtr, usize, usize, usize);

/// Unpacks weight rows `j0..j0 + nj` into `panel` (see [`Panel`], sized for
/// `kb` blocks): each row into its own buffer of `rows`, then the eight
/// interleaved in registers ([`x86::interleave`]). Rows past the weight's
/// end (a last partial panel) are zero.
#[allow(clippy::too_many_arguments)]
unsafe fn fill(
    panel: &mut Panel,
    rows: &mut [UnpackedRow; NR],
    unpack: Unpack,
    data: &[u8],
    row_bytes: usize,
    j0: usize,
    nj: usize,
    kb: usize,
) {
    for (j, row) in rows.iter_mut().enumerate() {
        if j < nj {
            unpack(data.as_ptr().add((j0 + j) * row_bytes), kb, row);
        } else {
            // Zeros: cleared first, so no earlier row's values survive.
            row.q.clear();
            row.d.clear();
            row.m.clear();
            row.q.resize(kb * 32, 0);
            row.d.resize(kb, 0.0);
            row.m.resize(kb, 0.0);
        }
    }
    x86::interleave(rows, panel, kb);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Panel, Q8Rows, UnpackedRow, NR};
    use crate::backend::candle::linear::{x86::nibbles, DstPtr};
    use std::arch::x86_64::*;

    /// Σ over 4-byte groups of unsigned `w` × signed `y`, added to `acc`:
    /// `vpdpbusd` with AVX-512 VNNI compiled in (32-bit lanes); else
    /// `maddubs`, whose 16-bit lanes the caller widens every four calls.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn madd_acc(acc: __m256i, w: __m256i, y: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        {
            _mm256_dpbusd_epi32(acc, w, y)
        }
        #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
        {
            _mm256_add_epi16(acc, _mm256_maddubs_epi16(w, y))
        }
    }

    /// The 16-bit sums of [`madd_acc`] as 32-bit lanes (a no-op with VNNI).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn widen(acc: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        {
            acc
        }
        #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
        {
            _mm256_madd_epi16(acc, _mm256_set1_epi16(1))
        }
    }

    /// Writes eight unpacked rows (`kb` blocks each) into `panel`'s order:
    /// per block, the rows' 32 bytes ([`store_transposed`]), their scales
    /// and offsets.
    ///
    /// # Safety
    /// AVX2; every row holds `kb` blocks; the panel holds `kb` blocks of
    /// [`NR`] rows.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn interleave(rows: &[UnpackedRow; NR], panel: &mut Panel, kb: usize) {
        let (q, d, m) = (panel.q.as_mut_ptr(), panel.d.as_mut_ptr(), panel.m.as_mut_ptr());
        for b in 0..kb {
            let r = std::array::from_fn(|j| _mm256_loadu_si256(rows[j].q.as_ptr().add(b * 32) as *const __m256i));
            store_transposed(r, q.add(b * 256));
            for (j, row) in rows.iter().enumerate() {
                *d.add(b * NR + j) = *row.d.get_unchecked(b);
                *m.add(b * NR + j) = *row.m.get_unchecked(b);
            }
        }
    }

    /// Fills `panel` (sized for `kb` blocks) from eight Q4_1 rows in the
    /// file's block layout, the first at `w`, `row_bytes` apart: each
    /// block's nibbles decoded in registers and transposed, the eight
    /// rows' f16 scales and offsets converted together. The bytes
    /// [`super::fill`] writes from the rows' unpacked copies.
    ///
    /// # Safety
    /// AVX2/F16C; eight rows of `kb` Q4_1 blocks at `w`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn fill_q4_1(panel: &mut Panel, w: *const u8, row_bytes: usize, kb: usize) {
        let (q, d, m) = (panel.q.as_mut_ptr(), panel.d.as_mut_ptr(), panel.m.as_mut_ptr());
        // Per 128-bit half (four blocks' 4-byte headers d, m): the d's, then the m's.
        let pick = _mm256_setr_epi8(
            0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
        );
        for b in 0..kb {
            let blk = |j: usize| w.add(j * row_bytes + b * 20);
            store_transposed(std::array::from_fn(|j| nibbles(blk(j).add(4))), q.add(b * 256));
            let head = |j: usize| (blk(j) as *const i32).read_unaligned();
            let h = _mm256_setr_epi32(head(0), head(1), head(2), head(3), head(4), head(5), head(6), head(7));
            // Quadwords: d 0..4, d 4..8, m 0..4, m 4..8.
            let s = _mm256_permute4x64_epi64::<0xD8>(_mm256_shuffle_epi8(h, pick));
            _mm256_storeu_ps(d.add(b * NR), _mm256_cvtph_ps(_mm256_castsi256_si128(s)));
            _mm256_storeu_ps(m.add(b * NR), _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(s)));
        }
    }

    /// Eight rows' 32 bytes of one block as [`Panel`] holds them: the rows'
    /// 4-byte groups transposed (8 × 8), chunk by chunk, at `dst`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store_transposed(r: [__m256i; NR], dst: *mut u8) {
        // Pairs of rows, then quads (each 128-bit half: chunks c and c + 4).
        let t: [__m256i; NR] = std::array::from_fn(|i| {
            let (a, c) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_epi32(a, c)
            } else {
                _mm256_unpackhi_epi32(a, c)
            }
        });
        // u[i] for i < 4 rows 0..4, else rows 4..8; i % 4 = chunk (and chunk + 4).
        let u: [__m256i; NR] = std::array::from_fn(|i| {
            let base = (i / 4) * 4;
            let (a, c) = (t[base + (i % 4) / 2], t[base + 2 + (i % 4) / 2]);
            if i % 2 == 0 {
                _mm256_unpacklo_epi64(a, c)
            } else {
                _mm256_unpackhi_epi64(a, c)
            }
        });
        let dst = dst as *mut __m256i;
        for c in 0..4 {
            _mm256_storeu_si256(dst.add(c), _mm256_permute2x128_si256::<0x20>(u[c], u[c + 4]));
            _mm256_storeu_si256(dst.add(c + 4), _mm256_permute2x128_si256::<0x31>(u[c], u[c + 4]));
        }
    }

    /// Activation rows `r0..r0 + R` times the panel's rows: writes the R × nj
    /// block at (r0, j0) of the m × n output. Each block's eight chunks are
    /// summed in `H` parts of 16-bit lanes before widening (1 for values
    /// under 16: 8 · 2 · 15 · 127 = 30,480 < 2^15; 2 for values under 32).
    ///
    /// # Safety
    /// AVX2/FMA/F16C; rows `r0..r0 + R` exist in `x`; the caller alone
    /// writes columns `j0..j0 + nj` of those rows.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile<const R: usize, const H: usize>(
        panel: &Panel,
        x: &Q8Rows,
        r0: usize,
        kb: usize,
        out: DstPtr,
        n: usize,
        j0: usize,
        nj: usize,
    ) {
        let k = kb * 32;
        let mut acc = [_mm256_setzero_ps(); R];
        let xq = x.q.as_ptr();
        let xds = x.ds.as_ptr();
        for b in 0..kb {
            let wq = panel.q.as_ptr().add(b * 256);
            // H parts of 8 / H chunks: four 16-bit maddubs sums of values
            // under 32 stay under 2^15 (4 · 2 · 31 · 127 = 31,496).
            let mut sum = [_mm256_setzero_si256(); R];
            for h in 0..H {
                let mut part = [_mm256_setzero_si256(); R];
                for c in h * 8 / H..(h + 1) * 8 / H {
                    let w = _mm256_loadu_si256(wq.add(c * 32) as *const __m256i);
                    for (i, p) in part.iter_mut().enumerate() {
                        let at = xq.add((r0 + i) * k + b * 32 + 4 * c) as *const i32;
                        *p = madd_acc(*p, w, _mm256_set1_epi32(at.read_unaligned()));
                    }
                }
                for i in 0..R {
                    sum[i] = _mm256_add_epi32(sum[i], widen(part[i]));
                }
            }
            let d = _mm256_loadu_ps(panel.d.as_ptr().add(b * NR));
            let m = _mm256_loadu_ps(panel.m.as_ptr().add(b * NR));
            for i in 0..R {
                let row = (r0 + i) * kb + b;
                let (dx, s) = (*xds.add(2 * row), *xds.add(2 * row + 1));
                let scaled = _mm256_mul_ps(d, _mm256_set1_ps(dx));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[i]), scaled, acc[i]);
                acc[i] = _mm256_fmadd_ps(m, _mm256_set1_ps(s), acc[i]);
            }
        }
        store(&acc, out, r0, n, j0, nj);
    }

    /// [`tile`] for [`super::Values::Offset128`] weights without VNNI, on a
    /// panel after [`super::split_signs`]: per 4-byte group,
    /// `maddubs(|q|, y·sign(q))` (pairs of at most 2 · 128 ·
    /// 127 = 32,512, so each sum is widened before the next), scaled by
    /// `d_w · d_x` per block; the offset term is not needed (q is signed
    /// again).
    ///
    /// # Safety
    /// As [`tile`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn tile_signed<const R: usize>(
        panel: &Panel,
        x: &Q8Rows,
        r0: usize,
        kb: usize,
        out: DstPtr,
        n: usize,
        j0: usize,
        nj: usize,
    ) {
        let k = kb * 32;
        let mut acc = [_mm256_setzero_ps(); R];
        let xq = x.q.as_ptr();
        let xds = x.ds.as_ptr();
        let ones = _mm256_set1_epi16(1);
        for b in 0..kb {
            let (wa, ws) = (panel.q.as_ptr().add(b * 256), panel.signed.as_ptr().add(b * 256));
            let mut sum = [_mm256_setzero_si256(); R];
            for c in 0..8 {
                let w = _mm256_loadu_si256(ws.add(c * 32) as *const __m256i);
                let abs = _mm256_loadu_si256(wa.add(c * 32) as *const __m256i);
                for (i, s) in sum.iter_mut().enumerate() {
                    let at = xq.add((r0 + i) * k + b * 32 + 4 * c) as *const i32;
                    let y = _mm256_sign_epi8(_mm256_set1_epi32(at.read_unaligned()), w);
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(_mm256_maddubs_epi16(abs, y), ones));
                }
            }
            let d = _mm256_loadu_ps(panel.d.as_ptr().add(b * NR));
            for i in 0..R {
                let dx = *xds.add(2 * ((r0 + i) * kb + b));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[i]), _mm256_mul_ps(d, _mm256_set1_ps(dx)), acc[i]);
            }
        }
        store(&acc, out, r0, n, j0, nj);
    }

    /// Writes tile rows `r0..r0 + R`, columns `j0..j0 + nj`, of the output.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store<const R: usize>(acc: &[__m256; R], out: DstPtr, r0: usize, n: usize, j0: usize, nj: usize) {
        for (i, a) in acc.iter().enumerate() {
            let dst = out.at((r0 + i) * n + j0);
            if nj == NR {
                _mm256_storeu_ps(dst, *a);
            } else {
                let mut v = [0f32; NR];
                _mm256_storeu_ps(v.as_mut_ptr(), *a);
                std::ptr::copy_nonoverlapping(v.as_ptr(), dst, nj);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    //! Never called off x86_64 (our kernels are off there).
    use super::{Panel, Q8Rows, UnpackedRow, NR};
    use crate::backend::candle::linear::DstPtr;
    pub(super) unsafe fn interleave(_: &[UnpackedRow; NR], _: &mut Panel, _: usize) {
        unreachable!()
    }
    pub(super) unsafe fn fill_q4_1(_: &mut Panel, _: *const u8, _: usize, _: usize) {
        unreachable!()
    }
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile<const R: usize, const H: usize>(
        _: &Panel,
        _: &Q8Rows,
        _: usize,
        _: usize,
        _: DstPtr,
        _: usize,
        _: usize,
        _: usize,
    ) {
        unreachable!()
    }
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_signed<const R: usize>(
        _: &Panel,
        _: &Q8Rows,
        _: usize,
        _: usize,
        _: DstPtr,
        _: usize,
        _: usize,
        _: usize,
    ) {
        unreachable!()
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::backend::candle::linear::{cpu_has_kernels, x86::unpack_q4_1};

    /// A Q4_1 panel filled straight from the blocks holds the bytes, scales
    /// and offsets of the rows unpacked one by one and interleaved.
    #[test]
    fn q4_1_panels_fill_as_unpacked_rows() {
        if !cpu_has_kernels() {
            return;
        }
        let (kb, row_bytes) = (5, 5 * 20);
        let data: Vec<u8> = (0..NR * row_bytes).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        let (mut direct, mut unpacked) = (Panel::default(), Panel::default());
        let mut rows = std::array::from_fn(|_| UnpackedRow::default());
        // SAFETY: kernels checked above; eight rows of kb blocks.
        unsafe {
            direct.size(kb);
            x86::fill_q4_1(&mut direct, data.as_ptr(), row_bytes, kb);
            unpacked.size(kb);
            fill(&mut unpacked, &mut rows, unpack_q4_1, &data, row_bytes, 0, NR, kb);
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(direct.q, unpacked.q);
        assert_eq!(bits(&direct.d), bits(&unpacked.d));
        assert_eq!(bits(&direct.m), bits(&unpacked.m));
    }
}
