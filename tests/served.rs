//! Served models through real servers on 127.0.0.1: llama.cpp's
//! llama-server and llama-cpp-python's server, both built from the pinned
//! llama-cpp-python==0.3.36 sdist (`.ci/llama_cpp.sh`), on the default model.
//! The lettered suite and quick's generative tasks (both in `chat`) run
//! in process and through llama-server into one report; the agreement of
//! their answers is printed (engines and weight kernels differ, so identity
//! is not asked). TTFT/TPOT are checked against llama.cpp's own timings;
//! the echo self-check refuses both servers for log-likelihood tasks, each
//! with its defect named; a server killed mid-run stops the run with one
//! error and the finished items kept; `load` sweeps concurrency 1, 2, 4.

mod common;
use common::*;
use predicates::prelude::*;
use std::collections::HashMap;
use std::path::Path;

fn samples_by_id(dir: &Path) -> HashMap<String, serde_json::Value> {
    read_jsonl(&dir.join("samples.jsonl")).into_iter().map(|s| (s["id"].as_str().unwrap().to_string(), s)).collect()
}

fn run_chat(out: &Path, model: &str, extra: &[&str]) -> std::path::PathBuf {
    std::fs::create_dir_all(out).unwrap();
    openweigh()
        .args(["run", "--suite", "chat", "--limit", "4", "--no-report", "--model", model])
        .args(extra)
        .arg("--out")
        .arg(out)
        .assert()
        .success();
    only_run_dir(out)
}

#[test]
fn in_process_and_served_land_on_one_chart() {
    let _lock = model_lock();
    // Prompt caching makes a slot's numerics depend on the previous request,
    // hence on completion order: off, for scores that do not.
    let server = Server::llama_server(1, &["--no-cache-prompt"]);
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models.toml");
    std::fs::write(
        &models,
        format!(
            "[[model]]\nname = \"smollm2-served\"\nbase_url = \"{}\"\nmodel_id = \"smollm2\"\ninput_usd_per_mtok = 0.02\noutput_usd_per_mtok = 0.08\ntokenizer = \"{}\"\n",
            server.base_url(),
            default_model().display()
        ),
    )
    .unwrap();
    let models_flag = ["--models", models.to_str().unwrap()];

    let local = run_chat(&tmp.path().join("local"), "smollm2-135m-instruct", &["--probe-reps", "1"]);
    let served =
        run_chat(&tmp.path().join("served"), "smollm2-served", &[&models_flag[..], &["--probe-reps", "1"]].concat());
    let served4 = run_chat(
        &tmp.path().join("served4"),
        "smollm2-served",
        &[&models_flag[..], &["--probe-reps", "0", "--concurrency", "4"]].concat(),
    );

    // Same items, same prompts (the served run records the user message; the
    // local one the message in the model's template, which contains it).
    let (a, b) = (samples_by_id(&local), samples_by_id(&served));
    assert_eq!(a.len(), b.len());
    let mut agree = 0;
    for (id, s) in &b {
        let l = &a[id];
        assert!(l["prompt"].as_str().unwrap().contains(s["prompt"].as_str().unwrap()), "{id}: same prompt");
        assert!(s["error"].is_null(), "{id}: {s}");
        agree += (l["prediction"] == s["prediction"]) as usize;
    }
    let rate = agree as f64 / b.len() as f64;
    eprintln!("in-process vs llama-server: {agree}/{} predictions agree ({:.0}%)", b.len(), rate * 100.0);
    assert!(rate >= 0.5, "the same model should mostly answer alike: {rate}");

    // Completion order does not change results: concurrency 4 = concurrency 1 (one server slot).
    let c4 = samples_by_id(&served4);
    for (id, s) in &b {
        assert_eq!(s["generated"], c4[id]["generated"], "{id}: same answer at concurrency 1 and 4");
    }
    let strip = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("summary.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(8).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(strip(&served), strip(&served4), "same summary scores at concurrency 1 and 4");

    // Client-side timings against llama.cpp's own (concurrency 1: no queueing).
    let mut checked = 0;
    for s in b.values() {
        let (Some(ttft), Some(t)) = (s["ttft_s"].as_f64(), s["served"]["server_timings"].as_object()) else { continue };
        let prompt_s = t["prompt_ms"].as_f64().unwrap() / 1000.0;
        assert!(
            ttft >= prompt_s - 0.002 && ttft <= prompt_s + 0.25,
            "TTFT {ttft} vs server prompt time {prompt_s}: {s}"
        );
        let n = t["predicted_n"].as_f64().unwrap();
        if let (Some(tpot), true) = (s["served"]["tpot_s"].as_f64(), n >= 8.0) {
            let server_tpot = t["predicted_ms"].as_f64().unwrap() / 1000.0 / n;
            assert!(
                (tpot - server_tpot).abs() <= 0.5 * server_tpot + 0.003,
                "TPOT {tpot} vs server {server_tpot}: {s}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "timings checked on {checked} items");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(served.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["backend"], "openai");
    assert!(
        meta["speed_probe"]["decode_tok_per_s"]["mean"].as_f64().unwrap() > 0.0,
        "the probe ran through the server"
    );

    // One report, one chart: a circle (self-hosted) and a triangle (served price).
    let report = tmp.path().join("report");
    openweigh().arg("report").arg(&local).arg(&served).arg("--out").arg(&report).assert().success();
    let svg = std::fs::read_to_string(report.join("quality_vs_price.svg")).unwrap();
    assert!(svg.contains("▲"), "the caption names the served marker");
    assert!(svg.matches("<circle").count() >= 1 && svg.contains("<polygon"), "one circle, one triangle");
    let csv = std::fs::read_to_string(report.join("models.csv")).unwrap();
    assert!(csv.contains("models file/smollm2-served"), "{csv}");
}

#[test]
fn llama_server_echo_is_refused_and_a_killed_server_keeps_finished_items() {
    let _lock = model_lock();
    let mut server = Server::llama_server(1, &[]);
    let model = format!("openai:{}#smollm2", server.base_url());
    openweigh()
        .args(["run", "--suite", "quick", "--limit", "1", "--probe-reps", "0", "--model", &model])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("ignores `echo`"))
        .stderr(predicate::str::contains("--suite chat"));

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    std::fs::create_dir_all(&out).unwrap();
    let args: Vec<std::ffi::OsString> =
        ["run", "--suite", "chat", "--limit", "20", "--probe-reps", "0", "--no-report", "--model", &model, "--out"]
            .iter()
            .map(Into::into)
            .chain([out.clone().into_os_string()])
            .collect();
    let child = spawn_openweigh(&args);
    // Kill the server once some items are in.
    wait_for_samples(&out, 5, 120);
    server.child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot be reached") && stderr.contains("items finished before are kept"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = only_run_dir(&out);
    let kept = read_jsonl(&dir.join("samples.jsonl"));
    assert!(kept.len() >= 5, "finished items kept: {}", kept.len());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "failed");
    assert!(meta["error"].as_str().unwrap().contains("cannot be reached"));
    eprintln!("server killed after {} items; run stopped with: {}", kept.len(), meta["error"]);
}

#[test]
fn llama_cpp_python_echo_shift_is_detected() {
    let _lock = model_lock();
    let server = Server::llama_cpp_python();
    openweigh()
        .args(["run", "--suite", "quick", "--limit", "1", "--probe-reps", "0", "--model"])
        .arg(format!("openai:{}#smollm2", server.base_url()))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("shifted by one position"))
        .stderr(predicate::str::contains("refused rather than scored wrong"));
}

#[test]
fn load_sweep_against_llama_server() {
    let _lock = model_lock();
    let server = Server::llama_server(4, &[]);
    let tmp = tempfile::tempdir().unwrap();
    openweigh()
        .args([
            "load",
            "--concurrency",
            "1,2,4",
            "--requests",
            "8",
            "--input-len",
            "128",
            "--output-len",
            "32",
            "--model",
        ])
        .arg(format!("openai:{}#smollm2", server.base_url()))
        .arg("--out")
        .arg(tmp.path())
        .assert()
        .success()
        .stdout(predicate::str::contains("| 4 |"));
    let dir = only_run_dir(tmp.path());
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("load.json")).unwrap()).unwrap();
    let levels = r["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3);
    assert_eq!(r["prompts"], "exact token ids", "llama-server's /tokenize gives exact prompt lengths");
    for l in levels {
        assert_eq!(l["errors"], 0, "{l}");
        assert_eq!(l["completed"], 8);
        assert_eq!(l["tokens_out"], 8 * 32, "ignore_eos: exactly the output length");
        assert_eq!(l["tokens_in"], 8 * 128, "exact prompt lengths");
        assert!(l["ttft"]["p50_s"].as_f64().unwrap() > 0.0);
        eprintln!(
            "concurrency {}: {:.2} req/s, {:.1} output tok/s, TTFT p50 {:.3} s p99 {:.3} s",
            l["concurrency"],
            l["request_per_s"].as_f64().unwrap(),
            l["output_tok_per_s"].as_f64().unwrap(),
            l["ttft"]["p50_s"].as_f64().unwrap(),
            l["ttft"]["p99_s"].as_f64().unwrap()
        );
    }
    assert_eq!(read_jsonl(&dir.join("requests.jsonl")).len(), 24);
    for f in [
        "index.html",
        "load.md",
        "load.csv",
        "load_throughput.svg",
        "load_throughput.png",
        "load_latency.svg",
        "load_latency.png",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
}
