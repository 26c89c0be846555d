//! LoRA adapters on the real default model. A PEFT adapter is written here
//! (random A/B of rank 8 on q/k/v/up projections, known alpha), and beside
//! it the base with `W + scale·B·A` merged in Hugging Face space by this test
//! (through a safetensors copy, so openweigh's own GGUF row permutation is
//! checked, not reused). Then: `--adapter` equals that merged model; the same
//! adapter in llama.cpp's GGUF layout equals both, and llama-server reading
//! that GGUF adapter agrees with openweigh; B = 0 changes nothing; `merge`
//! writes a GGUF that runs as `--adapter` does; adapters that do not fit are
//! refused by name; `compare` gates a harmful adapter and passes a zero one.

mod common;
use candle_core::{Device, Tensor};
use common::*;
use openweigh::backend::adapter::LoraAdapter;
use openweigh::backend::candle::transformer::WeightFormat;
use openweigh::backend::candle::CandleBackend;
use openweigh::backend::weights::{gguf_tensor_name, ModelHeader};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

/// A PEFT adapter to write: rank, alpha, modules (PEFT names), spread of the
/// uniform random factors (0: all zeros), seed.
struct Peft {
    r: usize,
    alpha: f64,
    modules: &'static [&'static str],
    sd_a: f32,
    sd_b: f32,
    seed: u64,
}

const QKV_UP: &[&str] = &["q_proj", "k_proj", "v_proj", "up_proj"];

impl Peft {
    fn new(sd_b: f32, seed: u64) -> Self {
        Peft { r: 8, alpha: 16.0, modules: QKV_UP, sd_a: 0.05, sd_b, seed }
    }

    /// Writes `dir` (adapter_config.json + adapter_model.safetensors) for the
    /// default model; returns ΔW = (alpha / r)·B·A by Hugging Face weight name.
    fn write(&self, dir: &Path) -> HashMap<String, Tensor> {
        std::fs::create_dir_all(dir).unwrap();
        let header = ModelHeader::read(&default_model()).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
        let mut uniform = |n: usize, sd: f32| -> Vec<f32> {
            let h = sd * 3f32.sqrt();
            (0..n).map(|_| if sd == 0.0 { 0.0 } else { rng.gen_range(-h..h) }).collect()
        };
        let scale = self.alpha / self.r as f64;
        let (mut factors, mut deltas) = (HashMap::new(), HashMap::new());
        for layer in 0..header.hparams.n_layer {
            for m in self.modules {
                let block = if m.starts_with(['q', 'k', 'v', 'o']) { "self_attn" } else { "mlp" };
                let module = format!("model.layers.{layer}.{block}.{m}");
                let gguf = gguf_tensor_name(&format!("{module}.weight"), header.hparams.family).unwrap();
                let (out, inp) = (header.shapes[&gguf][0], header.shapes[&gguf][1]);
                let a = Tensor::from_vec(uniform(self.r * inp, self.sd_a), (self.r, inp), &Device::Cpu).unwrap();
                let b = Tensor::from_vec(uniform(out * self.r, self.sd_b), (out, self.r), &Device::Cpu).unwrap();
                deltas.insert(format!("{module}.weight"), (b.matmul(&a).unwrap() * scale).unwrap());
                factors.insert(format!("base_model.model.{module}.lora_A.weight"), a);
                factors.insert(format!("base_model.model.{module}.lora_B.weight"), b);
            }
        }
        candle_core::safetensors::save(&factors, dir.join("adapter_model.safetensors")).unwrap();
        let config = serde_json::json!({
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": self.r, "lora_alpha": self.alpha,
            "target_modules": self.modules, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": false,
            "use_rslora": false, "use_dora": false, "modules_to_save": null,
            "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        });
        std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
        deltas
    }
}

fn load(model: &Path, adapter: Option<&Path>, format: WeightFormat) -> CandleBackend {
    let adapter = adapter.map(|a| LoraAdapter::open(a).unwrap());
    CandleBackend::load_with_adapter(model, adapter.as_ref(), &Device::Cpu, format).unwrap()
}

const ITEMS: [(&str, &[&str]); 3] = [
    ("Question: What is the capital of France?\nAnswer:", &[" Paris", " London", " Rome", " Berlin"]),
    ("Question: Which gas do plants absorb from the air?\nAnswer:", &[" carbon dioxide", " oxygen", " helium"]),
    ("The cat sat on the", &[" mat.", " roof of the old house.", " moon"]),
];

fn all_logliks(b: &mut CandleBackend) -> Vec<f64> {
    ITEMS.iter().flat_map(|(ctx, choices)| logliks(b, ctx, choices)).collect()
}

fn max_abs_diff(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len());
    x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max)
}

const PROMPT: &str = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

/// `--adapter` (PEFT folder, and the same adapter as a GGUF adapter written
/// by `openweigh merge --lora-only`) gives the log-likelihoods and greedy
/// text of the base with the product merged into its weights by this test.
#[test]
fn adapter_equals_the_merged_model_in_both_formats() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let peft = tmp.path().join("peft");
    let deltas = Peft::new(0.05, 7).write(&peft);
    let merged = tmp.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    write_safetensors_copy(&default_model(), &merged, |hf, t| match deltas.get(hf) {
        Some(d) => (t + d).unwrap(),
        None => t,
    });
    let gguf_adapter = tmp.path().join("adapter.gguf");
    let out = openweigh()
        .arg("merge")
        .arg(default_model())
        .arg("--adapter")
        .arg(&peft)
        .arg(&gguf_adapter)
        .arg("--lora-only")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let base = all_logliks(&mut load(&default_model(), None, WeightFormat::F32));
    let mut with_peft = load(&default_model(), Some(&peft), WeightFormat::F32);
    let mut with_gguf = load(&default_model(), Some(&gguf_adapter), WeightFormat::F32);
    let mut reference = load(&merged, None, WeightFormat::F32);
    let (p, g, r) = (all_logliks(&mut with_peft), all_logliks(&mut with_gguf), all_logliks(&mut reference));
    let (peft_vs_merged, gguf_vs_peft, effect) = (max_abs_diff(&p, &r), max_abs_diff(&g, &p), max_abs_diff(&p, &base));
    eprintln!(
        "f32, 10 choices: |peft − merged| ≤ {peft_vs_merged:.2e}, |gguf − peft| ≤ {gguf_vs_peft:.2e} nats; the adapter moves them by up to {effect:.2} nats"
    );
    assert!(effect > 0.5, "the adapter should change the log-likelihoods (max change {effect})");
    assert!(peft_vs_merged < 2e-3, "PEFT adapter vs merged weights: {peft_vs_merged} nats");
    assert!(gguf_vs_peft < 2e-3, "GGUF adapter vs PEFT adapter: {gguf_vs_peft} nats");
    let text = generate(&mut with_peft, PROMPT, 16);
    assert_eq!(text, generate(&mut reference, PROMPT, 16));
    assert_eq!(text, generate(&mut with_gguf, PROMPT, 16));
}

/// An adapter whose B is zero changes nothing, bit for bit, under the
/// default weight format (merged tensors are held as the Q8_0 repack holds
/// the base's).
#[test]
fn zero_adapter_leaves_every_loglikelihood_unchanged() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let zero = tmp.path().join("zero");
    Peft::new(0.0, 1).write(&zero);
    let mut base = load(&default_model(), None, WeightFormat::Q8_0);
    let mut adapted = load(&default_model(), Some(&zero), WeightFormat::Q8_0);
    assert_eq!(all_logliks(&mut base), all_logliks(&mut adapted));
    assert_eq!(generate(&mut base, PROMPT, 12), generate(&mut adapted, PROMPT, 12));
    let report = adapted.load_report().adapter.clone().unwrap();
    assert_eq!(report.tensors, 30 * 4);
    assert_eq!(report.held_as["Q8_0"], 30 * 4);
}

/// `merge --to Q8_0` writes a GGUF that runs exactly as `--adapter` does;
/// `merge` in the base's own types (Q4_1) stays close; a run with
/// `--adapter` records the adapter in run.json and labels the model.
#[test]
fn merge_writes_a_gguf_that_runs_as_the_adapter_does() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let peft = tmp.path().join("my-lora");
    Peft::new(0.05, 11).write(&peft);
    let merge = |to: Option<&str>, out: &Path| {
        let mut cmd = openweigh();
        cmd.arg("merge").arg(default_model()).arg("--adapter").arg(&peft).arg(out);
        if let Some(t) = to {
            cmd.args(["--to", t]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let (q8, native) = (tmp.path().join("merged-q8_0.gguf"), tmp.path().join("merged.gguf"));
    let said = merge(Some("Q8_0"), &q8);
    assert!(said.contains("merged 120 tensors (rank 8, scale 2"), "{said}");
    let rounding = |said: &str| -> f64 {
        let at = said.find("written types: ").unwrap() + "written types: ".len();
        said[at..].split('%').next().unwrap().parse().unwrap()
    };
    let said_native = merge(None, &native);
    eprintln!(
        "merge: rounding {}% (Q8_0) vs {}% (Q4_1) of the adapter's change",
        rounding(&said),
        rounding(&said_native)
    );
    assert!(rounding(&said) < 10.0 && rounding(&said_native) > 25.0, "{said}\n{said_native}");
    assert!(said_native.contains("--to Q8_0 keeps it"), "{said_native}");

    let adapted = all_logliks(&mut load(&default_model(), Some(&peft), WeightFormat::Q8_0));
    assert_eq!(adapted, all_logliks(&mut load(&q8, None, WeightFormat::Q8_0)));
    let in_q4_1 = all_logliks(&mut load(&native, None, WeightFormat::Q8_0));
    let base = all_logliks(&mut load(&default_model(), None, WeightFormat::Q8_0));
    let mean_diff = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).sum::<f64>() / x.len() as f64;
    let (lost, effect) = (mean_diff(&in_q4_1, &adapted), mean_diff(&adapted, &base));
    eprintln!(
        "merged and requantized to Q4_1: mean |Δ| {lost:.3} nats from --adapter (the adapter's own effect: {effect:.3}; max {:.3} vs {:.3})",
        max_abs_diff(&in_q4_1, &adapted),
        max_abs_diff(&adapted, &base)
    );
    assert!(lost < effect, "Q4_1 rounding {lost} vs adapter effect {effect}");
    let header = ModelHeader::read(&native).unwrap();
    assert_eq!(header.shapes.len(), ModelHeader::read(&default_model()).unwrap().shapes.len());
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as i64;
    assert!((size(&native) - size(&default_model())).abs() < 4096, "the base's own types: about the base's size");

    let run = run_capitals(&["--no-report".as_ref(), "--adapter".as_ref(), peft.as_os_str()], &tmp.path().join("out"));
    let m = &run["model"];
    assert_eq!(m["name"], format!("{} + my-lora", openweigh::catalog::DEFAULT_MODEL));
    let a = &m["adapter"];
    assert_eq!((a["format"].as_str(), a["rank"].as_u64(), a["alpha"].as_f64()), (Some("peft"), Some(8), Some(16.0)));
    assert_eq!(a["scale"], 2.0);
    assert_eq!(a["target_modules"], serde_json::json!(["attn_k", "attn_q", "attn_v", "ffn_up"]));
    assert_eq!(a["sha256"].as_str().unwrap().len(), 64);
    assert!(a["applied"].as_str().unwrap().starts_with("merged at load"));
    assert_eq!(m["load"]["adapter"]["tensors"], 120);
    assert_eq!(m["sha256"].as_str().unwrap().len(), 64, "the base model's own sha256 stays");
}

/// llama-server (llama.cpp 0.3.36) reads the GGUF adapter openweigh writes
/// as openweigh applies it: the base with `--lora adapter.gguf` (llama.cpp
/// adds scale·B·(A·x) at run time) gives the next-token log-probs of the
/// model `openweigh merge` wrote. llama.cpp on both sides and f32 weights on
/// both sides (8-bit weights and activations alone move this 135M model's
/// log-probs by tenths of a nat), so only the adapter's layout is under test:
/// tensor names, A/B shapes, alpha, and llama's permuted q/k rows.
#[test]
fn llama_server_reads_our_gguf_adapter_as_we_apply_it() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let peft = tmp.path().join("peft");
    Peft::new(0.05, 7).write(&peft);
    let (gguf_adapter, base_f32, merged_f32) =
        (tmp.path().join("adapter.gguf"), tmp.path().join("base-f32.gguf"), tmp.path().join("merged-f32.gguf"));
    let base_model = default_model();
    let (model, adapter) = (base_model.to_str().unwrap(), peft.to_str().unwrap());
    let (gguf_adapter_s, merged_s, base_s) =
        (gguf_adapter.to_str().unwrap(), merged_f32.to_str().unwrap(), base_f32.to_str().unwrap());
    for args in [
        vec!["merge", model, "--adapter", adapter, gguf_adapter_s, "--lora-only"],
        vec!["merge", model, "--adapter", adapter, merged_s, "--to", "F32"],
        vec!["quantize", model, "--to", "F32", base_s],
    ] {
        let o = openweigh().args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let prompts =
        ["The capital of France is", "Question: Which gas do plants absorb from the air?\nAnswer:", "1, 2, 3, 4,"];
    // The top next tokens' log-probs, by token, for every prompt.
    let top = |model: &Path, extra: &[&str]| -> Vec<HashMap<String, f64>> {
        let server = Server::llama_server_on(model, 1, extra);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let url = server.base_url().trim_end_matches("/v1").to_string() + "/completion";
        prompts
            .iter()
            .map(|p| {
                let body = serde_json::json!({"prompt": p, "n_predict": 1, "n_probs": 5, "temperature": 0.0, "cache_prompt": false});
                let v: serde_json::Value = rt.block_on(async {
                    reqwest::Client::new().post(&url).json(&body).send().await.unwrap().json().await.unwrap()
                });
                let top = v["completion_probabilities"][0]["top_logprobs"].as_array().cloned();
                top.unwrap_or_else(|| panic!("no top_logprobs in {v}"))
                    .iter()
                    .map(|t| (t["token"].as_str().unwrap().to_string(), t["logprob"].as_f64().unwrap()))
                    .collect()
            })
            .collect()
    };
    // Largest |Δ log-prob| over the tokens both lists hold, and how many there were.
    let gap = |x: &[HashMap<String, f64>], y: &[HashMap<String, f64>]| -> (f64, usize) {
        let pairs: Vec<f64> =
            x.iter().zip(y).flat_map(|(a, b)| a.iter().filter_map(|(t, p)| b.get(t).map(|q| (p - q).abs()))).collect();
        (pairs.iter().copied().fold(0.0, f64::max), pairs.len())
    };
    let with_lora = top(&base_f32, &["--lora", gguf_adapter_s]);
    let merged = top(&merged_f32, &[]);
    let base = top(&base_f32, &[]);
    let ((layout_gap, n), (moved, _)) = (gap(&with_lora, &merged), gap(&with_lora, &base));
    eprintln!(
        "llama-server (f32 weights), top-5 next tokens of 3 prompts: --lora adapter.gguf vs the merged GGUF differ by up to {layout_gap:.4} nats over {n} tokens; the adapter moves them by up to {moved:.2}"
    );
    assert!(n >= 9, "too few shared tokens ({n})");
    assert!(moved > 0.5, "llama-server should apply the adapter (log-probs moved by {moved})");
    assert!(layout_gap < 0.02, "llama.cpp's LoRA vs openweigh's merge: {layout_gap} nats");
}

/// Adapters that do not fit the base are refused by name, before any
/// weights load, exit 2, no run folder.
#[test]
fn adapters_that_do_not_fit_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    Peft { r: 4, alpha: 8.0, modules: &["v_proj"], sd_a: 0.01, sd_b: 0.01, seed: 3 }.write(&good);
    let variant = |name: &str, edit: &dyn Fn(&Path)| -> std::path::PathBuf {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        edit(&dir);
        dir
    };
    let set_config = |dir: &Path, key: &str, value: serde_json::Value| {
        let path = dir.join("adapter_config.json");
        let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        cfg[key] = value;
        std::fs::write(&path, cfg.to_string()).unwrap();
    };
    // One module's factors: lora_A of shape `a`, and lora_B of shape `b` when given.
    let set_factors = |dir: &Path, module: &str, a: (usize, usize), b: Option<(usize, usize)>| {
        let zeros = |shape| Tensor::zeros(shape, candle_core::DType::F32, &Device::Cpu).unwrap();
        let mut map = HashMap::from([(format!("{module}.lora_A.weight"), zeros(a))]);
        map.extend(b.map(|b| (format!("{module}.lora_B.weight"), zeros(b))));
        candle_core::safetensors::save(&map, dir.join("adapter_model.safetensors")).unwrap();
    };
    let l0 = "base_model.model.model.layers.0.self_attn";
    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (variant("wrong-rank", &|d| set_config(d, "r", 8.into())), "has rank 4 but adapter_config.json says r = 8"),
        (
            variant("wrong-module", &|d| set_factors(d, &format!("{l0}.qkv_proj"), (4, 576), Some((1728, 4)))),
            "module base_model.model.model.layers.0.self_attn.qkv_proj is not a layer openweigh knows",
        ),
        (
            variant("too-deep", &|d| {
                set_factors(d, "base_model.model.model.layers.40.self_attn.v_proj", (4, 576), Some((192, 4)))
            }),
            "adapts blk.40.attn_v.weight, which the base model does not have (the base has 30 layers)",
        ),
        (
            variant("other-model", &|d| set_factors(d, &format!("{l0}.v_proj"), (4, 896), Some((128, 4)))),
            "blk.0.attn_v.weight: B·A is 128×896 but the base tensor is 192×576",
        ),
        (
            variant("half", &|d| set_factors(d, &format!("{l0}.v_proj"), (4, 576), None)),
            "v_proj.lora_A.weight has no matching lora_B",
        ),
        (variant("dora", &|d| set_config(d, "use_dora", true.into())), "use_dora: true"),
        (
            variant("saved", &|d| set_config(d, "modules_to_save", serde_json::json!(["lm_head"]))),
            "modules_to_save [lm_head]",
        ),
        (variant("ia3", &|d| set_config(d, "peft_type", "IA3".into())), "peft_type is IA3"),
        (
            variant("pickle", &|d| {
                std::fs::rename(d.join("adapter_model.safetensors"), d.join("adapter_model.bin")).unwrap();
            }),
            "adapter_model.bin, a PyTorch pickle",
        ),
        (default_model(), "a model file goes to --model, not --adapter"),
        (
            {
                let junk = tmp.path().join("junk.gguf");
                std::fs::write(&junk, "{\"not\": \"gguf\"}").unwrap();
                junk
            },
            "not a GGUF file",
        ),
        (
            {
                let other = tmp.path().join("gemma-lora.gguf");
                let header = ModelHeader::read(&default_model()).unwrap();
                let a = LoraAdapter::open(&good).unwrap();
                openweigh::backend::adapter::gguf::write(&a, "gemma3", &header.hparams, &other).unwrap();
                other
            },
            "made for a 'gemma3' model and the base is Llama",
        ),
        (tmp.path().join("missing"), "no such file or folder"),
    ];
    for (adapter, says) in &cases {
        let out_dir = tmp.path().join("out");
        let out = openweigh()
            .args([
                "run",
                "--suite",
                "suites/examples/capitals.yaml",
                "--limit",
                "1",
                "--probe-reps",
                "0",
                "--no-report",
            ])
            .arg("--adapter")
            .arg(adapter)
            .arg("--out")
            .arg(&out_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", adapter.display());
        assert!(err.contains(says) && err.contains("not a usable LoRA adapter"), "{}: {err}", adapter.display());
        assert!(!err.contains("panicked") && !err.contains("loading "), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!out_dir.exists() || std::fs::read_dir(&out_dir).unwrap().next().is_none());
    }
    eprintln!("{} unfitting adapters refused", cases.len());
    let out = openweigh()
        .args(["run", "--model", "openai:http://127.0.0.1:9/v1#m", "--adapter"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a served model loads adapters on its server"));
}

/// `compare` of the base against base + a large random adapter fails the
/// gate (exit 4) and lists flipped items; against base + a zero adapter it passes.
#[test]
fn compare_gates_a_harmful_adapter_and_passes_a_zero_one() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (harmful, zero) = (tmp.path().join("harmful"), tmp.path().join("zero"));
    Peft { sd_a: 0.2, ..Peft::new(0.5, 5) }.write(&harmful);
    Peft::new(0.0, 5).write(&zero);
    let compare = |adapter: &Path, out: &Path| {
        openweigh()
            .args(["compare", "--suite", "suites/examples/capitals.yaml", "--fail-on-regression"])
            .arg("--base-model")
            .arg(default_model())
            .arg("--candidate-model")
            .arg(default_model())
            .arg("--candidate-adapter")
            .arg(adapter)
            .arg("--out")
            .arg(out)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out = compare(&harmful, &tmp.path().join("out-harmful"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("+ harmful"), "{stdout}");
    assert!(stdout.contains("## Broken by the candidate ("), "flipped items listed: {stdout}");
    let out = compare(&zero, &tmp.path().join("out-zero"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
