//! The steps of a run, one benchmark each, on the real models (the catalog's
//! GGUF files, fetched into the shared cache the first time, as the tests do):
//! - `tokenize/<family>`: encoding a 1,000-character paragraph;
//! - `prefill/<family>`: one 128-token prompt chunk into an empty KV cache;
//! - `decode/<family>`: one token after 128 cached positions;
//! - `mc_item/<family>`: one HellaSwag-shaped multiple-choice item (a
//!   context and four endings scored by log-likelihood, as `run` does);
//! - `report/50_runs`: loading 50 run folders and writing the whole report
//!   (charts as PNG and SVG, index.html, CSV, Markdown).
//!
//! `cargo bench --bench pipeline` (or `-- decode` for one group). Times depend
//! on the CPU (name it with them) and on what else runs; compare lines of
//! one run. Speed against llama.cpp: `benches/vs_llama_cpp.sh`.

use criterion::{criterion_group, criterion_main, Criterion};
use openweigh::analysis::report::{self, HardwarePrice};
use openweigh::backend::candle::transformer::WeightFormat;
use openweigh::backend::candle::CandleBackend;
use openweigh::backend::Request;
use std::path::{Path, PathBuf};
use std::time::Duration;

const FAMILIES: [(&str, &str); 3] =
    [("llama", "smollm2-135m-instruct"), ("gemma3", "gemma3-270m"), ("qwen2", "qwen2.5-coder-0.5b-instruct")];

const PARAGRAPH: &str = "The committee met on Tuesday to review the proposal for a new \
    footbridge across the river. Engineers presented three designs: a steel truss, a \
    cable-stayed span and a timber arch. Residents asked about noise during construction, \
    the cost to the city (estimated at 4.2 million euros), and whether cyclists would share \
    the deck with pedestrians. After two hours of discussion, the committee voted 7 to 2 to \
    fund a detailed study of the cable-stayed option, with a report due in March. \
    \"We want a bridge that lasts a century,\" the chair said, \"not one that looks good \
    in a brochure.\" Work could begin next autumn if the study finds no problems.";

fn model(name: &str) -> PathBuf {
    let entry = openweigh::catalog::model(name).expect("a catalog model");
    openweigh::assets::fetch_model(entry).expect("fetching a catalog model (see README: models)")
}

fn models(c: &mut Criterion) {
    // As `openweigh` does: fixed before any tensor (see set_compute_threads).
    openweigh::backend::candle::set_compute_threads(None);
    for (family, name) in FAMILIES {
        let mut b = CandleBackend::load(&model(name), &candle_core::Device::Cpu, WeightFormat::Native).unwrap();

        let mut g = c.benchmark_group("tokenize");
        g.bench_function(family, |bench| bench.iter(|| b.tokenizer.encode(PARAGRAPH).unwrap()));
        g.finish();

        let ids: Vec<u32> = b.tokenizer.encode(&PARAGRAPH.repeat(2)).unwrap()[..128].to_vec();
        let m = b.transformer();
        let mut g = c.benchmark_group("prefill");
        g.measurement_time(Duration::from_secs(5));
        g.bench_function(format!("{family}/128_tokens"), |bench| {
            bench.iter(|| {
                let mut cache = m.empty_cache();
                m.forward(&ids, &mut cache, 1).unwrap()
            })
        });
        g.finish();

        // Each step extends a clone of the 128-position cache in place (the
        // previous clone is gone), as a decode step extends its own cache.
        let mut cache = m.empty_cache();
        m.forward(&ids, &mut cache, 0).unwrap();
        let mut g = c.benchmark_group("decode");
        g.bench_function(format!("{family}/at_128"), |bench| {
            bench.iter(|| {
                let mut step = cache.clone();
                m.forward(&[ids[5]], &mut step, 1).unwrap()
            })
        });
        g.finish();

        let item = Request::LogLikelihood {
            context: "Roof shingle removal: A man is sitting on a roof. He".into(),
            continuations: vec![
                " is using wrap to wrap a pair of skis.".into(),
                " is ripping level tiles off.".into(),
                " is holding a rubik's cube.".into(),
                " starts pulling up roofing on a roof.".into(),
            ],
            shared_prefix: None,
        };
        let mut g = c.benchmark_group("mc_item");
        g.measurement_time(Duration::from_secs(5));
        g.bench_function(family, |bench| bench.iter(|| b.run(&item).unwrap()));
        g.finish();
    }
}

/// 50 copies of the report test's two real runs, each under its own model
/// name, in a temporary folder.
fn fifty_runs(dir: &Path) -> Vec<PathBuf> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/report/runs");
    (0..50)
        .map(|i| {
            let src = fixtures.join(if i % 2 == 0 { "smollm2" } else { "gemma3" });
            let dst = dir.join(format!("run-{i:02}"));
            std::fs::create_dir_all(&dst).unwrap();
            let mut run: serde_json::Value =
                serde_json::from_slice(&std::fs::read(src.join("run.json")).unwrap()).unwrap();
            run["model"]["name"] = format!("model-{i:02}").into();
            run["run_id"] = format!("bench-{i:02}").into();
            std::fs::write(dst.join("run.json"), serde_json::to_vec(&run).unwrap()).unwrap();
            std::fs::copy(src.join("samples.jsonl"), dst.join("samples.jsonl")).unwrap();
            dst
        })
        .collect()
}

fn reports(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let runs = fifty_runs(tmp.path());
    let out = tmp.path().join("report");
    let hw = HardwarePrice::choose(None, "cpu-2vcpu").unwrap();
    let prices = openweigh::analysis::prices::builtin_table().unwrap();
    let mut g = c.benchmark_group("report");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("50_runs", |bench| {
        bench.iter(|| {
            let r = report::build(openweigh::results::load_runs(&runs).unwrap(), hw.clone(), &prices).unwrap();
            openweigh::export::report::write(&r, &out).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, models, reports);
criterion_main!(benches);
