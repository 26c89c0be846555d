//! The `openai` engine against a server that misbehaves on purpose (axum on
//! 127.0.0.1, inside the test): each item's prompt names the fault its
//! request meets. Each gives its documented behaviour, and no finished item
//! is lost: 429 with Retry-After and 500-then-success are retried and
//! succeed; a first byte slower than --request-timeout, garbage in the SSE
//! stream and a stream cut mid-answer fail their item after the retries
//! (the run goes on, exit code 3); no usage falls back to estimated token
//! counts; a role-only first chunk does not count as the first token;
//! chunks of several tokens are counted by usage. A key set in the
//! environment appears in no file the run wrote, nor in its output.

mod common;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Requests seen per fault case, and the Authorization headers received.
#[derive(Default)]
struct Seen {
    attempts: HashMap<String, usize>,
    auth: Vec<String>,
}
type Shared = Arc<Mutex<Seen>>;

const SECRET: &str = "sk-openweigh-test-7f3a9c1e5d";

fn sse(events: Vec<String>) -> Response {
    let body: String = events.into_iter().map(|e| format!("data: {e}\n\n")).collect();
    ([("content-type", "text/event-stream")], body).into_response()
}

fn text_chunk(t: &str) -> String {
    serde_json::json!({"choices": [{"index": 0, "text": t, "finish_reason": null}]}).to_string()
}

fn finish(reason: &str) -> String {
    serde_json::json!({"choices": [{"index": 0, "text": "", "finish_reason": reason}]}).to_string()
}

fn usage(prompt: usize, completion: usize) -> String {
    serde_json::json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}).to_string()
}

async fn completions(State(seen): State<Shared>, headers: HeaderMap, Json(body): Json<serde_json::Value>) -> Response {
    let prompt = body["prompt"].as_str().unwrap_or_default().to_string();
    if body.get("logprobs").is_some() {
        return Json(echo_answer(&prompt, body["echo"] == true)).into_response();
    }
    let case = prompt.split("case:").nth(1).unwrap_or("plain").split_whitespace().next().unwrap_or("plain").to_string();
    let attempt = {
        let mut s = seen.lock().unwrap();
        if let Some(a) = headers.get("authorization") {
            s.auth.push(a.to_str().unwrap_or_default().to_string());
        }
        let n = s.attempts.entry(case.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let ok = |text: &str| sse(vec![text_chunk(text), finish("stop"), usage(12, 2), "[DONE]".into()]);
    match case.as_str() {
        "ratelimit" if attempt == 1 => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response()
        }
        "flaky" if attempt == 1 => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "hang" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            ok("late")
        }
        "sleepy" => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ok("ok")
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ok("late")
        }
        "garbage" => sse(vec![text_chunk("ok"), "this is not json".into(), "[DONE]".into()]),
        "cut" => sse(vec![text_chunk("o")]), // no finish_reason, no [DONE]
        "nousage" => sse(vec![text_chunk("ok"), finish("stop"), "[DONE]".into()]),
        "roleonly" => {
            // A role-only chunk at once, the text 300 ms later: TTFT is the latter.
            let first = serde_json::json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]});
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
            tokio::spawn(async move {
                let _ = tx.send(Ok(format!("data: {first}\n\n"))).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                for e in [text_chunk("ok"), finish("stop"), usage(12, 2), "[DONE]".into()] {
                    let _ = tx.send(Ok(format!("data: {e}\n\n"))).await;
                }
            });
            let stream = tokio_stream_from(rx);
            ([("content-type", "text/event-stream")], axum::body::Body::from_stream(stream)).into_response()
        }
        // Three tokens per chunk, six in all, an SSE comment ping between.
        "multitoken" => {
            let body = format!(
                ": ping\n\ndata: {}\n\ndata: {}\n\ndata: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                text_chunk("o"),
                text_chunk("k"),
                finish("stop"),
                usage(12, 6)
            );
            ([("content-type", "text/event-stream")], body).into_response()
        }
        _ => ok("ok"),
    }
}

/// A server that gets echo right, for the plumbing of log-likelihood scoring:
/// words are tokens (a leading space kept), each with log-prob −(its length in
/// characters), and the top token at each position is the token itself. The
/// next token after any prompt is " Paris".
fn echo_answer(prompt: &str, echo: bool) -> serde_json::Value {
    let mut tokens: Vec<String> = Vec::new();
    for (i, w) in prompt.split(' ').enumerate() {
        tokens.push(if i == 0 { w.to_string() } else { format!(" {w}") });
    }
    let gen = " Paris".to_string();
    let (tokens, text) =
        if echo { ([tokens, vec![gen.clone()]].concat(), format!("{prompt}{gen}")) } else { (vec![gen.clone()], gen) };
    let lps: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| if echo && i == 0 { serde_json::Value::Null } else { (-(t.chars().count() as f64)).into() })
        .collect();
    let tops: Vec<serde_json::Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if echo && i == 0 {
                serde_json::Value::Null
            } else {
                serde_json::json!({ t.clone(): -(t.chars().count() as f64) })
            }
        })
        .collect();
    serde_json::json!({"choices": [{"index": 0, "text": text, "finish_reason": "length",
        "logprobs": {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops}}],
        "usage": {"prompt_tokens": if echo { tokens.len() - 1 } else { prompt.split(' ').count() }, "completion_tokens": 1}})
}

#[test]
fn a_server_with_a_correct_echo_is_scored_from_its_log_probs() {
    let (url, _seen, _rt) = start_server();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("d.jsonl"), "{\"q\": \"sky\"}\n").unwrap();
    std::fs::write(
        tmp.path().join("s.yaml"),
        "name: s\ntasks:\n  - task: mc\n    data_files: d.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"Q: {{q}} color?\"\n    doc_to_choice: [\"blue sky\", \"green\"]\n    doc_to_target: 1\n    metric_list: [acc, acc_norm]\n",
    )
    .unwrap();
    let out = tmp.path().join("results");
    openweigh()
        .args(["run", "--probe-reps", "0", "--no-report", "--model"])
        .arg(format!("openai:{url}#fault"))
        .arg("--suite")
        .arg(tmp.path().join("s.yaml"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let dir = only_run_dir(&out);
    let s = &read_jsonl(&dir.join("samples.jsonl"))[0];
    // " blue" + " sky" = −5 − 4 = −9 over 2 tokens; " green" = −6 over 1; all greedy.
    assert_eq!(s["loglik"][0], serde_json::json!({"logprob": -9.0, "n_tokens": 2, "is_greedy": true}));
    assert_eq!(s["loglik"][1], serde_json::json!({"logprob": -6.0, "n_tokens": 1, "is_greedy": true}));
    assert_eq!(s["metrics"]["acc"], 1.0, "green (−6) beats blue sky (−9)");
    assert_eq!(s["metrics"]["acc_norm"], 0.0, "per character: −9/8 beats −6/5");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["model"]["load"]["echo_self_check"]["echoed_logprob"], -6.0);
}

/// An mpsc receiver as a body stream (no extra crate).
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<String, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn models() -> Json<serde_json::Value> {
    Json(serde_json::json!({"object": "list", "data": [{"id": "fault", "object": "model"}]}))
}

/// Starts the fault server on a free port; returns its base URL and what it saw.
fn start_server() -> (String, Shared, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seen: Shared = Arc::default();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .with_state(seen.clone());
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen, rt)
}

/// A one-task generation suite in `dir` whose items meet the fault `cases`, in order.
fn case_suite(dir: &std::path::Path, cases: &[&str]) -> std::path::PathBuf {
    let data: String = cases.iter().map(|c| format!("{{\"case\": \"{c}\"}}\n")).collect();
    std::fs::write(dir.join("d.jsonl"), data).unwrap();
    let suite = dir.join("faults.yaml");
    std::fs::write(
        &suite,
        "name: faults\ntasks:\n  - task: f\n    data_files: d.jsonl\n    output_type: generate_until\n    doc_to_text: \"case:{{case}} say ok\"\n    doc_to_target: \"ok\"\n    generation_kwargs: { until: [\"\\n\"], max_gen_toks: 8 }\n    metric_list: [exact_match]\n",
    )
    .unwrap();
    suite
}

const CASES: &[&str] = &["plain", "ratelimit", "flaky", "slow", "garbage", "cut", "nousage", "roleonly", "multitoken"];

#[test]
fn every_fault_gives_its_documented_behaviour() {
    let (url, seen, _rt) = start_server();
    let tmp = tempfile::tempdir().unwrap();
    let suite = case_suite(tmp.path(), CASES);
    std::fs::write(
        tmp.path().join("models.toml"),
        format!("[[model]]\nname = \"fault\"\nbase_url = \"{url}\"\nmodel_id = \"fault\"\napi_key_env = \"OPENWEIGH_TEST_KEY\"\ninput_usd_per_mtok = 0.5\noutput_usd_per_mtok = 1.5\n"),
    )
    .unwrap();
    let out = tmp.path().join("results");
    let assert = openweigh()
        .env("OPENWEIGH_TEST_KEY", SECRET)
        .args([
            "run",
            "--model",
            "fault",
            "--probe-reps",
            "0",
            "--request-timeout",
            "1",
            "--retries",
            "2",
            "--concurrency",
            "4",
        ])
        .arg("--models")
        .arg(tmp.path().join("models.toml"))
        .arg("--suite")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .timeout(Duration::from_secs(120))
        .assert();
    let output = assert.get_output().clone();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(3), "failed items give exit 3\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let dir = only_run_dir(&out);
    let samples = read_jsonl(&dir.join("samples.jsonl"));
    assert_eq!(samples.len(), CASES.len(), "every item recorded, none lost");
    let by_case = |c: &str| {
        samples.iter().find(|s| s["prompt"].as_str().unwrap().contains(&format!("case:{c} "))).unwrap().clone()
    };
    for c in ["plain", "ratelimit", "flaky", "nousage", "roleonly", "multitoken"] {
        let s = by_case(c);
        assert!(s["error"].is_null(), "{c}: {s}");
        assert_eq!(s["correct"], true, "{c}: {s}");
    }
    assert_eq!(by_case("ratelimit")["served"]["retries"], 1);
    assert_eq!(by_case("flaky")["served"]["retries"], 1);
    assert_eq!(by_case("plain")["served"]["retries"], 0);
    assert_eq!(by_case("plain")["served"]["token_counts"], "usage");
    assert_eq!(by_case("plain")["tokens_out"], 2);
    assert_eq!(by_case("nousage")["served"]["token_counts"], "estimate", "no usage, no tokenizer: estimated");
    let role = by_case("roleonly");
    assert!(role["ttft_s"].as_f64().unwrap() >= 0.3, "a role-only chunk is not the first token: {role}");
    let multi = by_case("multitoken");
    assert_eq!(multi["tokens_out"], 6);
    assert_eq!(multi["served"]["chunks"], 2);
    let tpot = multi["served"]["tpot_s"].as_f64().unwrap();
    let expect = (multi["wall_s"].as_f64().unwrap() - multi["ttft_s"].as_f64().unwrap()) / 5.0;
    assert!((tpot - expect).abs() < 1e-9, "TPOT = (E2E − TTFT)/(tokens − 1)");
    for (c, words) in
        [("slow", "no response within 1.0 s"), ("garbage", "not JSON"), ("cut", "ended before the answer finished")]
    {
        let s = by_case(c);
        let err = s["error"].as_str().unwrap_or_default();
        assert!(err.contains(words) && err.contains("after 3 attempts"), "{c}: {err}");
        assert_eq!(s["correct"], false);
    }
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.attempts["slow"], 3, "1 attempt + 2 retries");
        assert!(s.auth.iter().all(|a| a == &format!("Bearer {SECRET}")), "the key is sent as a bearer token");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["backend"], "openai");
    assert_eq!(meta["model"]["served"]["api_key_env"], "OPENWEIGH_TEST_KEY");
    assert_eq!(meta["n_failed"], 3);

    // The key is in no file the run wrote (report included), nor in its output.
    for entry in walk(&out) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET), "{} holds the key", entry.display());
    }
    assert!(!stderr.contains(SECRET) && !stdout.contains(SECRET));
    assert!(dir.join("report/index.html").exists(), "the report was written");
}

#[test]
fn a_server_that_is_gone_stops_the_run_with_one_clear_error() {
    // A port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    openweigh()
        .args(["run", "--probe-reps", "0", "--suite", "chat", "--limit", "1", "--model"])
        .arg(format!("openai:http://127.0.0.1:{port}/v1#m"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!("http://127.0.0.1:{port}/v1: ")))
        .stderr(predicates::str::contains("start the server"))
        .stderr(predicates::str::contains("panicked").not());
}

#[test]
fn ctrl_c_stops_cleanly_and_keeps_what_was_measured() {
    let (url, _seen, _rt) = start_server();
    let tmp = tempfile::tempdir().unwrap();
    let suite = case_suite(tmp.path(), &["plain", "plain", "plain", "hang", "plain"]);
    let out = tmp.path().join("results");
    std::fs::create_dir_all(&out).unwrap();
    let mut args: Vec<std::ffi::OsString> =
        ["run", "--probe-reps", "0", "--no-report", "--request-timeout", "60", "--model"]
            .iter()
            .map(Into::into)
            .collect();
    args.extend([format!("openai:{url}#fault").into(), "--suite".into(), suite.into()]);
    args.extend(["--out".into(), out.clone().into_os_string()]);
    let start = std::time::Instant::now();
    let child = spawn_openweigh(&args);
    wait_for_samples(&out, 3, 30);
    std::thread::sleep(Duration::from_millis(200)); // the hanging request is out
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted (Ctrl-C)") && !stderr.contains("panicked"), "{stderr}");
    assert!(start.elapsed().as_secs() < 25, "Ctrl-C did not wait for the hanging request");
    let dir = only_run_dir(&out);
    assert_eq!(read_jsonl(&dir.join("samples.jsonl")).len(), 3, "the three finished items are kept");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "failed");
    assert!(meta["error"].as_str().unwrap().contains("interrupted"));
}

#[test]
fn requests_spread_over_several_base_urls() {
    let (url_a, seen_a, _rt_a) = start_server();
    let (url_b, seen_b, _rt_b) = start_server();
    let tmp = tempfile::tempdir().unwrap();
    let suite = case_suite(tmp.path(), &["sleepy"; 8]);
    let models = tmp.path().join("m.toml");
    std::fs::write(
        &models,
        format!("[[model]]\nname = \"two\"\nbase_urls = [\"{url_a}\", \"{url_b}\"]\nmodel_id = \"fault\"\n"),
    )
    .unwrap();
    let out = tmp.path().join("results");
    openweigh()
        .args(["run", "--model", "two", "--probe-reps", "0", "--no-report", "--concurrency", "4", "--models"])
        .arg(&models)
        .arg("--suite")
        .arg(&suite)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let (a, b) = (seen_a.lock().unwrap().attempts["sleepy"], seen_b.lock().unwrap().attempts["sleepy"]);
    // At concurrency 1 every request would go to the first URL (none in flight anywhere).
    assert_eq!((a, b), (4, 4), "least in flight: 4 concurrent requests split 2 + 2, twice");
    assert_eq!(read_jsonl(&only_run_dir(&out).join("samples.jsonl")).len(), 8);
}

#[test]
fn load_runs_for_a_duration_and_falls_back_to_words_without_a_tokenizer() {
    let (url, seen, _rt) = start_server();
    let tmp = tempfile::tempdir().unwrap();
    openweigh()
        .args([
            "load",
            "--concurrency",
            "1,3",
            "--duration",
            "0.5",
            "--input-len",
            "20",
            "--output-len",
            "2",
            "--model",
        ])
        .arg(format!("openai:{url}#fault"))
        .arg("--out")
        .arg(tmp.path())
        .assert()
        .success();
    let dir = only_run_dir(tmp.path());
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("load.json")).unwrap()).unwrap();
    assert!(r["prompts"].as_str().unwrap().starts_with("approximate"), "no /tokenize here: {}", r["prompts"]);
    let levels = r["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for l in levels {
        assert!(l["completed"].as_u64().unwrap() >= 3 && l["errors"] == 0, "{l}");
        assert!(l["duration_s"].as_f64().unwrap() >= 0.5, "{l}");
    }
    let requests = read_jsonl(&dir.join("requests.jsonl")).len();
    assert_eq!(requests as u64, levels.iter().map(|l| l["completed"].as_u64().unwrap()).sum::<u64>());
    // One untimed warm-up request, then every recorded one.
    assert_eq!(seen.lock().unwrap().attempts["plain"], requests + 1);
}

use predicates::prelude::PredicateBooleanExt;

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
