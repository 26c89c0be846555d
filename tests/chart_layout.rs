//! The report reads well for 1, 3 and 20 models and 1 to 60 tasks: synthetic
//! runs of those sizes are rendered, and in every chart's SVG each axis has
//! labelled ticks and no two pieces of text overlap (boxes from each `<text>`:
//! position, anchor, font size, rotation; width at DejaVu Sans' ~0.6 em).

mod common;
use openweigh::analysis::prices::builtin_table;
use openweigh::analysis::report::{self, HardwarePrice};
use openweigh::results::load_runs;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Writes `n_models` runs of a suite of `n_tasks` tasks into `dir`: model i
/// gets its own speed, memory and scores, the task names the longest of the
/// standard suite's.
fn synthetic_runs(dir: &Path, n_models: usize, n_tasks: usize) -> Vec<PathBuf> {
    synthetic_runs_at(dir, n_models, n_tasks, 1.0)
}

/// As [`synthetic_runs`], every speed multiplied by `speed_scale`.
fn synthetic_runs_at(dir: &Path, n_models: usize, n_tasks: usize, speed_scale: f64) -> Vec<PathBuf> {
    let template: Value = serde_json::from_slice(
        &std::fs::read(common::repo_path("tests/fixtures/report/runs/smollm2/run.json")).unwrap(),
    )
    .unwrap();
    let names = ["commonsense_qa", "openbookqa", "arc_challenge", "hellaswag", "winogrande", "triviaqa"];
    let tasks: Vec<String> = (0..n_tasks).map(|t| format!("{}_{t}", names[t % names.len()])).collect();
    (0..n_models)
        .map(|m| {
            let run_dir = dir.join(format!("run{m}"));
            std::fs::create_dir_all(&run_dir).unwrap();
            let mut run = template.clone();
            run["model"]["name"] = json!(format!("model-{m:02}-instruct-q4"));
            run["suite"]["tasks"] = json!(tasks
                .iter()
                .map(|t| json!({"task": t, "output_type": "multiple_choice", "data_path": "d", "data_sha256": "x",
                    "data_licence": "MIT", "n_documents": 20, "n_items": 20, "num_fewshot": 0,
                    "chat_template": false, "seed": 1, "metrics": ["acc"]}))
                .collect::<Vec<_>>());
            let speed = (1.0 + m as f64 * 0.37) * speed_scale;
            run["speed_probe"]["prefill_tok_per_s"]["mean"] = json!(150.0 * speed);
            run["speed_probe"]["decode_tok_per_s"]["mean"] = json!(60.0 * speed);
            run["speed_probe"]["ttft_s"]["mean"] = json!(1.5 / speed);
            run["peak_rss_byte"] = json!(400_000_000u64 + m as u64 * 90_000_000);
            std::fs::write(run_dir.join("run.json"), serde_json::to_vec(&run).unwrap()).unwrap();
            let mut lines = String::new();
            for (t, task) in tasks.iter().enumerate() {
                for i in 0..20 {
                    let right = (i * 7 + m * 3 + t) % 20 < 6 + (m * 5 + t * 3) % 12;
                    let item = json!({"task": task, "id": format!("{task}/{i}"), "prompt_hash": format!("{t}-{i}"),
                        "prompt": "Q", "choices": ["a", "b", "c", "d"], "gold": "0",
                        "prediction": if right { "0" } else { "1" }, "correct": right,
                        "metrics": {"acc": if right { 1.0 } else { 0.0 }}, "tokens_in": 30, "tokens_out": 0, "wall_s": 0.1});
                    lines.push_str(&format!("{item}\n"));
                }
            }
            std::fs::write(run_dir.join("samples.jsonl"), lines).unwrap();
            run_dir
        })
        .collect()
}

/// A piece of text in an SVG with its box (left, top, right, bottom).
#[derive(Debug)]
struct TextBox {
    text: String,
    anchor: String,
    box_: (f64, f64, f64, f64),
}

fn text_boxes(svg: &str) -> Vec<TextBox> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| {
            let text = n.text().unwrap_or("").trim().to_string();
            if text.is_empty() {
                return None;
            }
            let num = |a: &str| n.attribute(a).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            let (x, y, size) = (num("x"), num("y"), num("font-size"));
            let width = text.chars().count() as f64 * size * 0.6;
            let anchor = n.attribute("text-anchor").unwrap_or("start").to_string();
            let left = match anchor.as_str() {
                "middle" => x - width / 2.0,
                "end" => x - width,
                _ => x,
            };
            // dy: 0.76em hangs the text below y, -0.5ex sits it on y, 0.5ex centres it.
            let top = match n.attribute("dy").unwrap_or("") {
                "0.76em" => y,
                "-0.5ex" => y - size,
                _ => y - size / 2.0,
            };
            let (mut l, mut t, mut r, mut b) = (left, top, left + width, top + size);
            let turn = n.attribute("transform").unwrap_or("");
            if turn.starts_with("rotate(270") || turn.starts_with("rotate(90") {
                // Rotated a quarter turn about (x, y): the box turns with it
                // (SVG angles run clockwise, y pointing down).
                let (cx, cy) = (x, y);
                let ccw = turn.starts_with("rotate(270");
                let corners = [(l, t), (r, b)].map(|(px, py)| {
                    if ccw {
                        (cx + (py - cy), cy - (px - cx))
                    } else {
                        (cx - (py - cy), cy + (px - cx))
                    }
                });
                l = corners[0].0.min(corners[1].0);
                r = corners[0].0.max(corners[1].0);
                t = corners[0].1.min(corners[1].1);
                b = corners[0].1.max(corners[1].1);
            }
            Some(TextBox { text, anchor, box_: (l, t, r, b) })
        })
        .collect()
}

fn overlaps(a: &TextBox, b: &TextBox) -> bool {
    let (a, b) = (a.box_, b.box_);
    // One pixel of slack for the width estimate.
    a.0 + 1.0 < b.2 && b.0 + 1.0 < a.2 && a.1 + 1.0 < b.3 && b.1 + 1.0 < a.3
}

fn is_tick(t: &str) -> bool {
    t.trim_start_matches('$').replace(',', "").parse::<f64>().is_ok()
}

fn check(name: &str, svg: &str, n_models: usize, n_tasks: usize) {
    let boxes = text_boxes(svg);
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            assert!(!overlaps(a, b), "{name} ({n_models} models, {n_tasks} tasks): {:?} overlaps {:?}", a, b);
        }
        assert!(a.box_.0 >= -1.0 && a.box_.2 <= 1001.0, "{name}: {:?} leaves the canvas", a);
    }
    let ticks = |anchor: &str| boxes.iter().filter(|b| b.anchor == anchor && is_tick(&b.text)).count();
    match name {
        "quality_vs_price" | "quality_vs_speed" => {
            assert!(ticks("middle") >= 2, "{name} ({n_models} models): x axis has {} tick labels", ticks("middle"));
            let mut xs: Vec<&str> =
                boxes.iter().filter(|b| b.anchor == "middle" && is_tick(&b.text)).map(|b| b.text.as_str()).collect();
            let n = xs.len();
            xs.dedup();
            assert_eq!(xs.len(), n, "{name}: repeated x tick labels {xs:?}");
            assert!(ticks("end") >= 2, "{name} ({n_models} models): y axis has {} tick labels", ticks("end"));
        }
        "latency" | "memory" => {
            let panels = if name == "latency" { 2 } else { 1 };
            assert!(ticks("middle") >= 2 * panels, "{name}: {} x tick labels", ticks("middle"));
            // Bars keep a readable thickness: one model is not one giant block.
            let doc = roxmltree::Document::parse(svg).unwrap();
            let bars: Vec<f64> = doc
                .descendants()
                .filter(|n| n.has_tag_name("rect") && n.attribute("fill").is_some_and(|f| f != "#FFFFFF"))
                .filter_map(|n| n.attribute("height").and_then(|h| h.parse().ok()))
                .collect();
            assert_eq!(bars.len(), n_models * panels, "{name}: one bar per model and panel");
            assert!(bars.iter().all(|h| *h <= 60.0), "{name} ({n_models} models): bars {bars:?} px thick");
        }
        "tasks" => {
            let labelled = boxes.iter().filter(|b| b.text.contains('_')).count();
            assert_eq!(labelled, n_tasks, "tasks: every task is labelled");
        }
        _ => {}
    }
}

#[test]
fn charts_read_well_for_1_to_20_models_and_1_to_60_tasks() {
    for (n_models, n_tasks) in [(1, 1), (1, 12), (3, 12), (20, 12), (3, 60), (20, 60)] {
        let tmp = tempfile::tempdir().unwrap();
        let runs = load_runs(&synthetic_runs(tmp.path(), n_models, n_tasks)).unwrap();
        let hw = HardwarePrice::choose(None, "cpu-2vcpu").unwrap();
        let r = report::build(runs, hw, &builtin_table().unwrap()).unwrap();
        let drawn = openweigh::export::report::draw(&r).unwrap();
        for c in &drawn.charts {
            check(c.name, &c.svg, n_models, n_tasks);
        }
        if std::env::var_os("OPENWEIGH_KEEP_CHARTS").is_some() {
            let out =
                PathBuf::from(std::env::var_os("OPENWEIGH_KEEP_CHARTS").unwrap()).join(format!("{n_models}x{n_tasks}"));
            openweigh::export::report::write(&r, &out).unwrap();
        }
    }
}

/// One model's price can fall anywhere: the log price axis is labelled
/// whatever decade it lands in.
#[test]
fn one_model_gets_a_labelled_price_axis_at_any_price() {
    for scale in [0.003, 0.02, 0.3, 3.0, 40.0, 700.0] {
        let tmp = tempfile::tempdir().unwrap();
        let runs = load_runs(&synthetic_runs_at(tmp.path(), 1, 3, scale)).unwrap();
        let hw = HardwarePrice::choose(None, "cpu-2vcpu").unwrap();
        let r = report::build(runs, hw, &builtin_table().unwrap()).unwrap();
        let drawn = openweigh::export::report::draw(&r).unwrap();
        for c in drawn.charts.iter().filter(|c| c.name.starts_with("quality")) {
            check(c.name, &c.svg, 1, 3);
        }
    }
}
