//! Nothing measured is lost: a real run of the default model is killed with
//! SIGKILL at random moments (loading, mid-item, between files) and once
//! while its report renders, and continued each time with `run --resume`; the result
//! must equal an uninterrupted run's (same items once each, same predictions
//! and scores). Also: a torn last line is dropped, and a resume that would
//! measure differently is refused by name.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// quick, 3 items per task (13 tasks: multiple choice, generation, pass@1).
/// SIGKILLs sent before the run is let finish.
const KILLS: usize = 16;

const RUN: [&str; 7] = ["run", "--suite", "quick", "--limit", "3", "--probe-reps", "0"];

/// The run folder in `out`, if one was made.
fn run_dir(out: &Path) -> Option<PathBuf> {
    std::fs::read_dir(out).ok()?.flatten().map(|e| e.path()).find(|p| p.is_dir())
}

/// Per item id: (prediction, correct, metrics, log-likelihoods); fails on a duplicate id.
fn predictions(dir: &Path) -> BTreeMap<String, String> {
    let mut by_id = BTreeMap::new();
    for r in read_jsonl(&dir.join("samples.jsonl")) {
        let id = r["id"].as_str().unwrap().to_string();
        let what = format!("{} {} {} {}", r["prediction"], r["correct"], r["metrics"], r["loglik"]);
        assert!(by_id.insert(id.clone(), what).is_none(), "item {id} written twice");
    }
    by_id
}

/// summary.csv without its timing columns (latencies differ run to run).
fn scores(dir: &Path) -> Vec<String> {
    let mut r = csv::Reader::from_path(dir.join("summary.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|row| {
            let row = row.unwrap();
            headers
                .iter()
                .zip(row.iter())
                .filter(|(h, _)| !h.starts_with("latency"))
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

#[test]
fn killed_at_random_moments_and_resumed_equals_an_uninterrupted_run() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let o = openweigh().args(RUN).arg("--out").arg(&reference).current_dir(repo_path("")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = run_dir(&reference).unwrap();
    assert!(predictions(&reference).len() > 2 * KILLS, "the run must outlast the kills");

    let out = tmp.path().join("killed");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261128);
    let mut phases: HashMap<&str, usize> = HashMap::new();
    let (mut kills, mut resumes) = (0, 0);
    for attempt in 0.. {
        assert!(attempt <= KILLS + 2, "the run never finished");
        let dir = run_dir(&out).filter(|d| d.join("run.json").is_file());
        let mut cmd = openweigh_std();
        match &dir {
            Some(d) => {
                cmd.arg("run").arg("--resume").arg(d);
                resumes += 1;
            }
            None => {
                // Killed between making the folder and its first run.json: nothing was measured.
                if let Some(empty) = run_dir(&out) {
                    std::fs::remove_dir_all(empty).unwrap();
                }
                cmd.args(RUN).arg("--out").arg(&out);
            }
        }
        let before = dir.as_ref().map_or(0, |d| predictions(d).len());
        let mut child = cmd
            .current_dir(repo_path(""))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // KILLS kills at random moments — a third while loading (50–300 ms
        // after the start), the others 0–60 ms after the run writes its next
        // item (mid-item or between files), so each attempt measures about
        // one item and the kills never reach the end of the run, however
        // fast the machine; then one the moment run.json says complete (the
        // report is rendering); then the run may finish.
        let (delay, after_items) = if kills >= KILLS {
            (Duration::MAX, None)
        } else if rng.gen_bool(1.0 / 3.0) {
            (Duration::from_millis(rng.gen_range(50..300)), None)
        } else {
            (Duration::MAX, Some((before + 1, Duration::from_millis(rng.gen_range(0..60)))))
        };
        let mut item_seen: Option<Instant> = None;
        let at_complete = kills == KILLS;
        let complete = |d: &Option<PathBuf>| {
            let json = d.as_ref().and_then(|d| std::fs::read(d.join("run.json")).ok()).unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&json).is_ok_and(|m| m["status"] == "complete")
        };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if let (Some((items, extra)), None) = (after_items, item_seen) {
                let written = run_dir(&out)
                    .and_then(|d| std::fs::read_to_string(d.join("samples.jsonl")).ok())
                    .map_or(0, |t| t.lines().count());
                if written >= items {
                    item_seen = Some(Instant::now() + extra);
                }
            }
            if start.elapsed() >= delay
                || item_seen.is_some_and(|t| Instant::now() >= t)
                || (at_complete && complete(&run_dir(&out)))
            {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        if let Some(s) = status {
            assert!(s.success(), "attempt {attempt} exited {s}");
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let dir = run_dir(&out).filter(|d| d.join("run.json").is_file());
        let phase = match &dir {
            None => "loading (no run.json yet)",
            Some(d) => {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(d.join("run.json")).unwrap()).unwrap();
                let now = std::fs::read_to_string(d.join("samples.jsonl")).unwrap_or_default().lines().count();
                if meta["status"] == "complete" {
                    "report rendering (run complete)"
                } else if now > before {
                    "items"
                } else {
                    "loading or the first item"
                }
            }
        };
        *phases.entry(phase).or_insert(0) += 1;
    }
    let dir = run_dir(&out).unwrap();
    eprintln!("{kills} kills ({phases:?}), {resumes} resumes");
    assert_eq!(kills, KILLS + 1);
    assert_eq!(phases.get("report rendering (run complete)"), Some(&1), "{phases:?}");
    assert!(phases.get("items").copied().unwrap_or(0) >= 3, "{phases:?}");

    let (ours, theirs) = (predictions(&dir), predictions(&reference));
    assert_eq!(ours.len(), theirs.len(), "items lost or added");
    assert_eq!(ours, theirs, "predictions differ from the uninterrupted run");
    assert_eq!(scores(&dir), scores(&reference));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["n_items"], ours.len());
    assert!(dir.join("report/index.html").is_file());
    let resumptions = meta["resumed"].as_array().map_or(0, Vec::len);
    assert!((1..=resumes).contains(&resumptions), "{resumptions} resumptions recorded of {resumes}: {meta}");
}

/// A torn last line (an item cut off mid-write) is dropped and that item
/// runs again; a resume with a different setting is refused by name; a
/// finished run is not run again.
#[test]
fn torn_lines_are_dropped_and_different_settings_refused() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let args = ["run", "--suite", "suites/examples/capitals.yaml", "--probe-reps", "0", "--no-report"];
    let o = openweigh().args(args).arg("--out").arg(&out).current_dir(repo_path("")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = run_dir(&out).unwrap();
    let whole = predictions(&dir);
    let scores_whole = scores(&dir);

    // Cut the run back: 5 whole items and half of the 6th, status "running".
    let text = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let torn = format!("{}\n{}", lines[..5].join("\n"), &lines[5][..lines[5].len() / 2]);
    std::fs::write(dir.join("samples.jsonl"), torn).unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    meta["status"] = "running".into();
    std::fs::write(dir.join("run.json"), meta.to_string()).unwrap();

    for (flag, value, says) in [
        ("--limit", "2", "--limit 2 (the run has none)"),
        ("--weights", "f32", "--weights F32 (the run has Native)"),
        ("--model", "gemma3-270m", "--model gemma3-270m (the run has smollm2-135m-instruct)"),
    ] {
        let o = openweigh().args(["run", "--resume"]).arg(&dir).args([flag, value]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(says) && err.contains("was started with other settings"), "{err}");
    }
    let o =
        openweigh().args(["run", "--resume"]).arg(&dir).arg("--no-report").current_dir(repo_path("")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("5 items done, 11 to go (a torn last line of"), "{err}");
    assert_eq!(predictions(&dir), whole);
    assert_eq!(scores(&dir), scores_whole);
    let o = openweigh().args(["run", "--resume"]).arg(&dir).arg("--no-report").output().unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("is complete; nothing to run"));
}

/// Ctrl-C during an in-process run: the item in progress finishes, the run
/// stops with exit 130 saying how to continue, and `--resume` finishes it
/// with the predictions of an uninterrupted run.
#[test]
fn ctrl_c_stops_after_the_item_and_resume_finishes_the_run() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let args = ["run", "--suite", "suites/examples/capitals.yaml", "--probe-reps", "0", "--no-report"];
    let reference = tmp.path().join("reference");
    let o = openweigh().args(args).arg("--out").arg(&reference).current_dir(repo_path("")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = tmp.path().join("out");
    let child = openweigh_std()
        .args(args)
        .arg("--out")
        .arg(&out)
        .current_dir(repo_path(""))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_samples(&out, 2, 60);
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    let dir = run_dir(&out).unwrap();
    assert!(stderr.contains(&format!("continue it with: openweigh run --resume {}", dir.display())), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "failed");
    assert!(meta["error"].as_str().unwrap().contains("interrupted"), "{meta}");
    let kept = predictions(&dir).len();
    assert!((2..16).contains(&kept), "{kept} items kept");

    let o =
        openweigh().args(["run", "--resume"]).arg(&dir).arg("--no-report").current_dir(repo_path("")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("{kept} items done, {} to go", 16 - kept)), "{err}");
    assert_eq!(predictions(&dir), predictions(&run_dir(&reference).unwrap()));
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(meta["resumed"][0]["previous_status"], "failed");
}

/// Cuts the run in `dir` back to its first `keep` items, as a kill would leave it.
fn cut_back(dir: &Path, keep: usize) {
    let text = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().take(keep).collect();
    std::fs::write(dir.join("samples.jsonl"), lines.join("\n") + "\n").unwrap();
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    meta["status"] = "running".into();
    std::fs::write(dir.join("run.json"), meta.to_string()).unwrap();
}

/// The run folders in `out` (not compare-*/report-* folders), by name.
fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()).filter(|p| p.join("run.json").is_file()).collect();
    dirs.sort();
    dirs
}

/// `compare --base-model/--candidate-model --resume` and `run --model A
/// --model B --resume` take up the earlier runs in --out: the complete one
/// is kept, the interrupted one continued, no new run folder is made.
#[test]
fn compare_and_several_models_take_up_earlier_runs() {
    let _g = model_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (base, q8) = (default_model(), tmp.path().join("q8_0.gguf"));
    openweigh().arg("quantize").arg(&base).args(["--to", "Q8_0"]).arg(&q8).assert().success();
    let capitals = "suites/examples/capitals.yaml";

    let out = tmp.path().join("compare");
    let compare = |resume: bool| {
        let mut cmd = openweigh();
        cmd.args(["compare", "--suite", capitals, "--base-model"]).arg(&base).arg("--candidate-model").arg(&q8);
        cmd.arg("--out").arg(&out).current_dir(repo_path(""));
        if resume {
            cmd.arg("--resume");
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (first, _) = compare(false);
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 2);
    let candidate = dirs.iter().find(|d| d.to_string_lossy().contains("q8_0")).unwrap().clone();
    let whole = predictions(&candidate);
    cut_back(&candidate, 5);
    let (again, err) = compare(true);
    assert_eq!(run_dirs(&out), dirs, "no new run folder");
    assert!(err.contains("complete in") && err.contains(", kept"), "{err}");
    assert!(err.contains(&format!("continuing {} (running)", candidate.display())), "{err}");
    assert_eq!(predictions(&candidate), whole);
    let table = |s: &str| s.lines().filter(|l| l.starts_with("| capital")).map(String::from).collect::<Vec<_>>();
    assert_eq!(table(&again), table(&first));

    let out = tmp.path().join("many");
    let run = |resume: bool| {
        let mut cmd = openweigh();
        cmd.args(["run", "--suite", capitals, "--limit", "3", "--probe-reps", "0", "--no-report", "--model"])
            .arg(&base);
        cmd.arg("--model").arg(&q8).arg("--out").arg(&out).current_dir(repo_path(""));
        if resume {
            cmd.arg("--resume");
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    run(false);
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 2);
    let second = dirs.iter().find(|d| d.to_string_lossy().contains("q8_0")).unwrap().clone();
    let whole = predictions(&second);
    cut_back(&second, 2);
    let err = run(true);
    assert_eq!(run_dirs(&out), dirs);
    assert!(err.contains("2 items done, 4 to go"), "{err}");
    assert_eq!(predictions(&second), whole);
}
