//! Matmul kernels: openweigh's own paths (`Linear`: AVX2 dot products for
//! few rows, dequantize-by-panel + f32 GEMM for many) against candle's
//! `QMatMul` on the same weights, per weight type, at the default model's
//! FFN shape (1536 × 576) for 1, 4, 8 and 64 rows (decode, packed
//! continuations, prefill), and its output head (49152 × 576, 1 row: 17 MB of
//! Q4_1, larger than the L2 cache, so memory-bound). Read ratios between
//! lines of one run, not absolute times; name the CPU with them.
//!
//! `cargo bench --bench kernels` (or `-- linear/Q4_1` for one group).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use openweigh::backend::candle::linear::Linear;
use std::time::Duration;

fn kernels(c: &mut Criterion) {
    // As `openweigh` does: fixed before any tensor (see set_compute_threads).
    openweigh::backend::candle::set_compute_threads(None);
    let dev = Device::Cpu;
    for (n, k, rows_list) in [
        (1536usize, 576usize, &[1usize, 4, 8, 64][..]),
        (49152, 576, &[1][..]),
        (4864, 896, &[1, 32][..]),
        (65536, 896, &[1][..]),
    ] {
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev).unwrap();
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q5_0, GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let w = if matches!(dtype, GgmlDType::Q4K | GgmlDType::Q6K) {
                w.narrow(1, 0, 512).unwrap().contiguous().unwrap()
            } else {
                w.clone()
            };
            let kk = w.dim(1).unwrap();
            let ours = Linear::new(QTensor::quantize(&w, dtype).unwrap()).unwrap();
            let theirs = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
            let mut group = c.benchmark_group(format!("linear/{dtype:?}/{n}x{kk}"));
            group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
            for &rows in rows_list {
                let x = Tensor::randn(0f32, 1.0, (1, rows, kk), &dev).unwrap();
                group.bench_with_input(BenchmarkId::new("openweigh", rows), &x, |b, x| {
                    b.iter(|| ours.forward(x).unwrap())
                });
                group.bench_with_input(BenchmarkId::new("candle", rows), &x, |b, x| {
                    b.iter(|| theirs.forward(x).unwrap())
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
