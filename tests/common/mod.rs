//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Model runs use every core; two at once would oversubscribe the CPU and
/// crawl (candle's pool spin-waits), so tests that run the model hold this.
pub fn model_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The default model, fetched through the same code path as `openweigh fetch`.
pub fn default_model() -> PathBuf {
    let entry = openweigh::catalog::model(openweigh::catalog::DEFAULT_MODEL).unwrap();
    openweigh::assets::fetch(&entry.asset).expect("fetching the default model")
}

/// A temporary openweigh home for this test process: whatever a test's
/// commands import, write or configure lands here, never in the user's home.
pub fn test_home() -> &'static std::path::Path {
    static HOME: OnceLock<tempfile::TempDir> = OnceLock::new();
    HOME.get_or_init(|| tempfile::tempdir().expect("a temporary OPENWEIGH_HOME")).path()
}

/// The `openweigh` binary with a temporary home ([`test_home`]) and the
/// shared download cache (models and data are fetched once, for every test).
pub fn openweigh() -> assert_cmd::Command {
    assert_cmd::Command::from_std(openweigh_std())
}

/// The same as a plain `std::process::Command`.
pub fn openweigh_std() -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("openweigh"));
    cmd.env("NO_COLOR", "1").env("OPENWEIGH_HOME", test_home()).env("OPENWEIGH_CACHE", shared_cache());
    cmd
}

/// The download cache the tests share: the user's (or CI's) own.
pub fn shared_cache() -> PathBuf {
    openweigh::assets::cache_dir()
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The one run folder inside `out`.
pub fn only_run_dir(out: &std::path::Path) -> PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    assert_eq!(dirs.len(), 1, "expected one run folder in {}", out.display());
    dirs[0].clone()
}

pub fn read_jsonl(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A catalog model, fetched through the same code path as `openweigh fetch`.
pub fn catalog_model(name: &str) -> PathBuf {
    let entry = openweigh::catalog::model(name).unwrap();
    openweigh::assets::fetch_model(entry).expect("fetching a catalog model")
}

/// llama.cpp 0.3.36 (from the pinned llama-cpp-python sdist), built once into
/// the shared cache by `.ci/llama_cpp.sh --python` (which `.ci/run` calls).
pub fn llama_cpp_dir() -> PathBuf {
    let dir = shared_cache().join("llama.cpp-0.3.36");
    assert!(
        dir.join(".built").exists() && dir.join("venv/.built").exists(),
        "llama.cpp is not built in {}: run `bash .ci/llama_cpp.sh --python` once (about 15 min; `bash .ci/run` does it)",
        dir.display()
    );
    dir
}

/// A server on 127.0.0.1 at a free port, killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Server {
    /// OpenAI base URL.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Starts `cmd` (which must listen on `port`) and waits until `/v1/models` answers.
    pub fn start(mut cmd: std::process::Command, port: u16, log: PathBuf) -> Server {
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(f.try_clone().unwrap()).stderr(f);
        let child = cmd.spawn().expect("starting the server");
        let server = Server { child, port, log };
        for _ in 0..600 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /v1/models HTTP/1.0\r\nHost: x\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200") {
                    return server;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the server did not come up: {}", std::fs::read_to_string(&server.log).unwrap_or_default());
    }

    /// llama.cpp's llama-server on the default model (`slots` parallel slots), `extra` flags added.
    pub fn llama_server(slots: usize, extra: &[&str]) -> Server {
        Self::llama_server_on(&default_model(), slots, extra)
    }

    /// llama-server on the GGUF model `model`.
    pub fn llama_server_on(model: &std::path::Path, slots: usize, extra: &[&str]) -> Server {
        let dir = llama_cpp_dir();
        let port = free_port();
        let mut cmd = std::process::Command::new(dir.join("bin/llama-server"));
        cmd.arg("-m").arg(model).args(["--host", "127.0.0.1", "--port", &port.to_string(), "-t", "2"]);
        cmd.args(["-c", &(2048 * slots).to_string(), "-np", &slots.to_string()]).args(extra);
        Server::start(cmd, port, test_home().join(format!("llama-server-{port}.log")))
    }

    /// llama-cpp-python's server (its OpenAI-compatible FastAPI app) on the default model.
    pub fn llama_cpp_python() -> Server {
        let dir = llama_cpp_dir();
        let port = free_port();
        let mut cmd = std::process::Command::new(dir.join("venv/bin/python"));
        cmd.env("LLAMA_CPP_LIB_PATH", dir.join("lib"));
        cmd.args(["-m", "llama_cpp.server", "--model"]).arg(default_model());
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string(), "--n_ctx", "2048", "--n_threads", "2"]);
        Server::start(cmd, port, test_home().join(format!("llama-cpp-python-{port}.log")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `openweigh` binary as a child process (for tests that signal or
/// outlive it), with the same temporary home and shared cache as [`openweigh`].
pub fn spawn_openweigh(args: &[std::ffi::OsString]) -> std::process::Child {
    openweigh_std().args(args).stderr(std::process::Stdio::piped()).spawn().expect("starting openweigh")
}

/// Waits until the run folder in `out` has `n` lines in samples.jsonl.
pub fn wait_for_samples(out: &std::path::Path, n: usize, max_s: u64) {
    let start = std::time::Instant::now();
    loop {
        let lines = std::fs::read_dir(out)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("samples.jsonl")).ok())
            .map_or(0, |s| s.lines().count());
        if lines >= n {
            return;
        }
        assert!(start.elapsed().as_secs() < max_s, "fewer than {n} items after {max_s} s");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// llama.cpp stores llama's q/k projections permuted for its interleaved RoPE;
/// Hugging Face keeps the original rows. Undo it: rows (head, pair, 2) → (head, 2, pair).
/// (Written here apart from openweigh's own reordering, which it checks.)
pub fn unpermute(w: &candle_core::Tensor, n_head: usize) -> candle_core::Tensor {
    let (rows, cols) = w.dims2().unwrap();
    w.reshape((n_head, rows / n_head / 2, 2, cols)).unwrap().transpose(1, 2).unwrap().reshape((rows, cols)).unwrap()
}

/// Writes a Hugging Face folder (config.json, tokenizer.json,
/// tokenizer_config.json, model.safetensors in f32) of the default GGUF
/// model, each tensor passed through `edit(hf_name, tensor)` on the way.
pub fn write_safetensors_copy(
    gguf: &std::path::Path,
    dir: &std::path::Path,
    mut edit: impl FnMut(&str, candle_core::Tensor) -> candle_core::Tensor,
) {
    use candle_core::quantized::gguf_file;
    use openweigh::backend::candle::transformer::Hparams;
    let cpu = candle_core::Device::Cpu;
    let mut f = std::fs::File::open(gguf).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let hp = Hparams::from_gguf(&ct).unwrap();
    let mut tensors = std::collections::HashMap::new();
    for name in ct.tensor_infos.keys() {
        let hf = openweigh::backend::weights::hf_tensor_name(name, hp.family)
            .unwrap_or_else(|| panic!("no HF name for {name}"));
        let mut t = ct.tensor(&mut f, name, &cpu).unwrap().dequantize(&cpu).unwrap();
        if name.ends_with("attn_q.weight") {
            t = unpermute(&t, hp.n_head);
        } else if name.ends_with("attn_k.weight") {
            t = unpermute(&t, hp.n_kv_head);
        }
        let t = edit(&hf, t);
        tensors.insert(hf, t);
    }
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hp.n_embd,
        "num_attention_heads": hp.n_head,
        "num_key_value_heads": hp.n_kv_head,
        "num_hidden_layers": hp.n_layer,
        "max_position_embeddings": hp.context_length,
        "rms_norm_eps": hp.rms_eps,
        "rope_theta": hp.rope_base,
        "tie_word_embeddings": !ct.tensor_infos.contains_key("output.weight"),
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let tok = openweigh::backend::tokenizer::ModelTokenizer::from_gguf(&ct).unwrap();
    tok.inner.save(dir.join("tokenizer.json"), false).unwrap();
    let tok_config = serde_json::json!({
        "bos_token": tok.bos_token, "eos_token": tok.eos_token,
        "add_bos_token": tok.add_bos, "chat_template": tok.chat_template,
    });
    std::fs::write(dir.join("tokenizer_config.json"), tok_config.to_string()).unwrap();
}

/// Greedy text of `b` after `prompt`, up to a newline or `max_tokens`.
pub fn generate(b: &mut openweigh::backend::candle::CandleBackend, prompt: &str, max_tokens: usize) -> String {
    let req = openweigh::backend::Request::Generate {
        prompt: prompt.into(),
        until: vec!["\n".into()],
        max_tokens,
        shared_prefix: None,
        chat: false,
    };
    match b.run(&req).unwrap().output {
        openweigh::backend::Output::Text(t) => t,
        _ => unreachable!(),
    }
}

/// Log-likelihoods (nats) of each choice after `context`.
pub fn logliks(b: &mut openweigh::backend::candle::CandleBackend, context: &str, choices: &[&str]) -> Vec<f64> {
    let req = openweigh::backend::Request::LogLikelihood {
        context: context.into(),
        continuations: choices.iter().map(|c| c.to_string()).collect(),
        shared_prefix: None,
    };
    match b.run(&req).unwrap().output {
        openweigh::backend::Output::LogLikelihood(ll) => ll.iter().map(|c| c.logprob).collect(),
        _ => unreachable!(),
    }
}

/// `openweigh run` of suites/examples/capitals.yaml (2 items per task, no
/// speed probe) with `args` added, into `out`, which must succeed; its run.json.
pub fn run_capitals(args: &[&std::ffi::OsStr], out: &std::path::Path) -> serde_json::Value {
    let o = openweigh()
        .args(["run", "--suite", "suites/examples/capitals.yaml", "--limit", "2", "--probe-reps", "0"])
        .args(args)
        .arg("--out")
        .arg(out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&std::fs::read(only_run_dir(out).join("run.json")).unwrap()).unwrap()
}
