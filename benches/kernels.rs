//! Matmul kernels at the default model's shapes (hidden 576, FFN 1536):
//! the file's Q4_1 against the Q8_0 repack that `--weights q8_0` runs, for
//! decode (1 row) and prefill (64 rows). Read the ratio between the two
//! lines of one run, not absolute times.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn kernels(c: &mut Criterion) {
    let dev = Device::Cpu;
    let w = Tensor::randn(0f32, 0.05, (1536, 576), &dev).unwrap();
    let mut group = c.benchmark_group("qmatmul_1536x576");
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
        let q = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
        for rows in [1usize, 64] {
            let x = Tensor::randn(0f32, 1.0, (1, rows, 576), &dev).unwrap();
            group.bench_with_input(BenchmarkId::new(format!("{dtype:?}"), rows), &x, |b, x| {
                b.iter(|| q.forward(x).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
