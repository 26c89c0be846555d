//! Test fixtures: two runs of a small suite (a multiple-choice task of 40
//! items, a generation task of 10) with a chosen number of items the
//! candidate breaks and fixes, for the comparison's tests and its exporters'.

use crate::analysis::compare::GateOptions;
use crate::results::*;

pub fn meta(model: &str) -> RunMeta {
    let json = serde_json::json!({
        "run_id": format!("run-{model}"), "status": "complete", "openweigh_version": "0.1.0",
        "openweigh_commit": "test", "started_at": "2026-11-27T00:00:00Z", "finished_at": null,
        "model": {"name": model, "path": "m.gguf", "sha256": "00", "file_size_byte": 1048576,
                  "architecture": "llama", "load": {}, "load_s": 0.5},
        "suite": {"name": "s", "path": "s.yaml", "sha256": "abc", "tasks": [
            {"task": "mc", "output_type": "multiple_choice", "data_path": "d", "data_sha256": "d1",
             "data_licence": "MIT", "n_documents": 40, "n_items": 40, "num_fewshot": 0,
             "chat_template": false, "seed": 1, "metrics": ["acc_norm", "acc"]},
            {"task": "gen", "output_type": "generate_until", "data_path": "g", "data_sha256": "g1",
             "data_licence": "MIT", "n_documents": 10, "n_items": 10, "num_fewshot": 0,
             "chat_template": false, "seed": 1, "metrics": ["exact_match"]}]},
        "backend": "candle", "device": "cpu", "threads": 2, "limit": null, "batch_size": 1,
        "speed_probe": {"prompt_tokens": 256, "generated_tokens": 128, "repetitions": 2,
            "prefill_tok_per_s": {"mean": 200.0, "sd": 10.0, "values": [190.0, 210.0]},
            "decode_tok_per_s": {"mean": 50.0, "sd": 2.0, "values": [48.0, 52.0]},
            "ttft_s": {"mean": 1.28, "sd": 0.05, "values": [1.23, 1.33]}},
        "peak_rss_byte": 524288000, "eval_s": 10.0, "n_items": 50, "n_failed": 0,
        "host": {"os": "linux", "arch": "x86_64", "cpu": "test", "logical_cpus": 2, "target_features": []}
    });
    serde_json::from_value(json).unwrap()
}

pub fn item(task: &str, i: usize, right: bool) -> ItemResult {
    let metric = if task == "mc" { "acc_norm" } else { "exact_match" };
    ItemResult {
        group: None,
        task: task.into(),
        id: format!("{task}/{i}"),
        prompt_hash: format!("h{i}"),
        prompt: format!("Question {i} <script>?\nAnswer:"),
        choices: (task == "mc").then(|| vec!["yes".into(), "no".into()]),
        gold: "0".into(),
        prediction: if right { "0".into() } else { "1".into() },
        generated: None,
        correct: right,
        metrics: [(metric.to_string(), right as u8 as f64)].into_iter().collect(),
        loglik: None,
        tokens_in: 10,
        tokens_cached: 0,
        tokens_out: 0,
        wall_s: 0.1,
        prefix_s: None,
        ttft_s: None,
        decode_tok_per_s: None,
        served: None,
        error: None,
    }
}

/// Base right on 30 of 40 multiple-choice items; the candidate breaks
/// `broken` of those and fixes `fixed` of the 10 wrong ones.
pub fn runs(broken: usize, fixed: usize) -> (RunData, RunData) {
    let mut b = vec![];
    let mut c = vec![];
    for i in 0..40 {
        let base_right = i < 30;
        let cand_right = if base_right { i >= broken } else { i - 30 < fixed };
        b.push(item("mc", i, base_right));
        c.push(item("mc", i, cand_right));
    }
    for i in 0..10 {
        b.push(item("gen", i, i < 2));
        c.push(item("gen", i, i < 2));
    }
    let mut cm = meta("cand");
    cm.speed_probe.as_mut().unwrap().decode_tok_per_s.mean = 40.0;
    (
        RunData { dir: "base".into(), meta: meta("base"), samples: b },
        RunData { dir: "cand".into(), meta: cm, samples: c },
    )
}

pub const GATE: GateOptions = GateOptions { max_drop_points: 1.0, max_aggregate_drop_points: 1.0, alpha: 0.05 };
