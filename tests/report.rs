//! The report from real result files (tests/fixtures/report/runs: two real
//! runs, SmolLM2 and Gemma 3, of a suite whose items carry `<script>`, `|` and
//! `&`): Markdown and CSV snapshots, charts that decode at their size, escaping
//! everywhere, and headless Chromium loading index.html from disk without a
//! single network request.

mod common;
use common::*;
use openweigh::analysis::report::{self, HardwarePrice};
use openweigh::export;
use openweigh::results::load_runs;
use std::path::{Path, PathBuf};

fn fixture_runs() -> Vec<PathBuf> {
    ["smollm2", "gemma3"].iter().map(|n| repo_path(&format!("tests/fixtures/report/runs/{n}"))).collect()
}

fn build() -> report::Report {
    let hw = HardwarePrice::choose(None, "cpu-2vcpu").unwrap();
    let prices = openweigh::analysis::prices::builtin_table().unwrap();
    report::build(load_runs(&fixture_runs()).unwrap(), hw, &prices).unwrap()
}

#[test]
fn summary_markdown_snapshot() {
    insta::assert_snapshot!(export::report::markdown::summary(&build()));
}

#[test]
fn models_csv_snapshot() {
    insta::assert_snapshot!(export::report::csv::to_csv(&build()).unwrap());
}

#[test]
fn charts_decode_at_their_size() {
    let tmp = tempfile::tempdir().unwrap();
    let r = build();
    export::report::write(&r, tmp.path()).unwrap();
    for name in ["quality_vs_price", "quality_vs_speed", "latency", "memory", "tasks"] {
        let png = image::open(tmp.path().join(format!("{name}.png"))).unwrap();
        assert_eq!((png.width(), png.height()), (1000, 620), "{name}.png");
        let svg = std::fs::read_to_string(tmp.path().join(format!("{name}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{name}.svg: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert_eq!(doc.root_element().attribute("width"), Some("1000"));
    }
    // Both models are on the headline chart, with their names.
    let svg = std::fs::read_to_string(tmp.path().join("quality_vs_price.svg")).unwrap();
    assert!(svg.contains("smollm2-135m-instruct") && svg.contains("gemma3-270m"));
    assert!(svg.contains("most attractive quadrant"));
}

#[test]
fn strings_from_results_are_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let index = export::report::write(&build(), tmp.path()).unwrap();
    let html = std::fs::read_to_string(index).unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>alert(1)"));
    assert!(html.contains("mc&lt;b&gt;bold&lt;/b&gt;"));
    assert!(!html.contains("<b>bold</b>"));
    let svg = std::fs::read_to_string(tmp.path().join("tasks.svg")).unwrap();
    assert!(svg.contains("mc&lt;b&gt;bold&lt;/b&gt;"), "task name unescaped in tasks.svg");
    // No reference to anything outside the file.
    for needle in ["http://", "https://", "src=", "@import", "url("] {
        let found: Vec<&str> = html.lines().filter(|l| l.contains(needle)).collect();
        // SVG's xmlns attribute names a namespace; nothing is fetched from it.
        assert!(found.iter().all(|l| l.contains("xmlns")), "{needle} in index.html: {found:?}");
    }
    let md = std::fs::read_to_string(tmp.path().join("summary.md")).unwrap();
    assert!(md.contains("mc&lt;b&gt;bold&lt;/b&gt;"));
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(p) = which(name) {
            return p;
        }
    }
    panic!("headless Chromium is needed for this test: apt-get install chromium (.ci/run installs it)");
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
        .ok_or(())
}

fn run_chromium(args: &[&str], page: &Path, home: &Path) -> std::process::Output {
    run_chromium_url(args, &format!("file://{}", page.display()), home)
}

fn run_chromium_url(args: &[&str], url: &str, home: &Path) -> std::process::Output {
    std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1200,1800",
        ])
        .arg(format!("--user-data-dir={}", home.join("profile").display()))
        .args(args)
        .arg(url)
        .env("HOME", home)
        .output()
        .unwrap()
}

/// URLs the page itself requested, from a Chromium net log: request jobs whose
/// network isolation key is the file:// page (the browser's own background
/// traffic — update checks, time queries — has other keys and is ignored).
fn page_requests(netlog: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(netlog).unwrap();
    let log = log.trim_end().trim_end_matches(',');
    // Chromium may leave the log unterminated when it exits; close it.
    let v: serde_json::Value =
        serde_json::from_str(log).unwrap_or_else(|_| serde_json::from_str(&format!("{log}]}}")).unwrap());
    let start_job = v["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_u64().unwrap();
    let mut urls: Vec<String> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_u64() == Some(start_job))
        .filter(|e| e["params"]["network_isolation_key"].as_str().is_some_and(|k| k.contains("file://")))
        .filter_map(|e| e["params"]["url"].as_str().map(str::to_string))
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:"))
        .collect();
    urls.dedup();
    urls
}

/// `openweigh report` output opened as a user would: Chromium renders it from
/// disk, the hostile item shows as text, and the net log holds no request
/// beyond the file itself.
#[test]
fn chromium_opens_the_report_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("report");
    let mut cmd = openweigh();
    cmd.arg("report").args(fixture_runs()).arg("--out").arg(&out);
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let index = out.join("index.html");

    let netlog = tmp.path().join("net.json");
    let shot = tmp.path().join("shot.png");
    let o = run_chromium(
        &[&format!("--screenshot={}", shot.display()), &format!("--log-net-log={}", netlog.display())],
        &index,
        tmp.path(),
    );
    assert!(shot.is_file(), "no screenshot: {}", String::from_utf8_lossy(&o.stderr));
    let img = image::open(&shot).unwrap();
    assert_eq!((img.width(), img.height()), (1200, 1800));
    // A rendered page is not blank: many distinct colours (charts, table dots).
    let rgb = img.to_rgb8();
    let distinct: std::collections::HashSet<[u8; 3]> = rgb.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 50, "screenshot looks blank ({} colours)", distinct.len());

    let requests = page_requests(&netlog);
    assert!(requests.is_empty(), "the report made network requests: {requests:?}");

    // The check can fail: a page that loads an image over HTTP is caught.
    let control = tmp.path().join("control.html");
    std::fs::write(&control, "<html><body><img src=\"http://127.0.0.1:9/x.png\">x</body></html>").unwrap();
    let netlog2 = tmp.path().join("net2.json");
    run_chromium(
        &[
            &format!("--screenshot={}", tmp.path().join("c.png").display()),
            &format!("--log-net-log={}", netlog2.display()),
        ],
        &control,
        tmp.path(),
    );
    assert_eq!(page_requests(&netlog2), vec!["http://127.0.0.1:9/x.png".to_string()]);

    let o = run_chromium(&["--dump-dom"], &index, tmp.path());
    let dom = String::from_utf8_lossy(&o.stdout);
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "hostile item not shown as text");
    assert!(!dom.contains("<script>alert(1)"));
    // The sort script ran: it marks every sortable table, and a link that
    // names a column sorts by it, both ways.
    assert!(dom.contains("id=\"models\"") && dom.contains("data-sorted=\"none\""), "sort script did not run");
    let order = |dir: &str| -> Vec<&'static str> {
        let url = format!("file://{}#sort-models-1-{dir}", index.display());
        let o = run_chromium_url(&["--dump-dom"], &url, tmp.path());
        let dom = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(dom.contains(&format!("data-sorted=\"1-{dir}\"")), "not sorted {dir}");
        let table = &dom[dom.find("id=\"models\"").unwrap()..];
        let (g, s) = (table.find("gemma3-270m").unwrap(), table.find("smollm2-135m-instruct").unwrap());
        if g < s {
            vec!["gemma3", "smollm2"]
        } else {
            vec!["smollm2", "gemma3"]
        }
    };
    let (asc, desc) = (order("asc"), order("desc"));
    assert_ne!(asc, desc, "sorting by quality both ways gave the same order");
}

/// A hostile model name (a file name or models-file entry written by a
/// stranger) stays text in every file of the report and of a comparison:
/// HTML escaped, every SVG well-formed XML with no element of its own,
/// Markdown cells intact, and a name a spreadsheet would run as a formula
/// quoted in the CSV.
#[test]
fn a_hostile_model_name_stays_text_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = repo_path("tests/fixtures/report/runs/smollm2");
    let hostile = "<script>alert(2)</script> & \"x\" | <img src=http://example.com/p.png>";
    let formula = "=HYPERLINK(\"http://example.com/x\",\"click\")";
    let runs: Vec<PathBuf> = [hostile, formula]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let run = tmp.path().join(format!("run{i}"));
            std::fs::create_dir(&run).unwrap();
            std::fs::copy(fixture.join("samples.jsonl"), run.join("samples.jsonl")).unwrap();
            let mut meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(fixture.join("run.json")).unwrap()).unwrap();
            meta["model"]["name"] = (*name).into();
            std::fs::write(run.join("run.json"), meta.to_string()).unwrap();
            run
        })
        .collect();
    let hw = HardwarePrice::choose(None, "cpu-2vcpu").unwrap();
    let prices = openweigh::analysis::prices::builtin_table().unwrap();
    let r = report::build(load_runs(&runs).unwrap(), hw, &prices).unwrap();
    let out = tmp.path().join("report");
    export::report::write(&r, &out).unwrap();
    let gate =
        openweigh::analysis::compare::GateOptions { max_drop_points: 1.0, max_aggregate_drop_points: 1.0, alpha: 0.05 };
    let loaded = load_runs(&runs).unwrap();
    let c = openweigh::analysis::compare::compare(&loaded[0], &loaded[1], gate).unwrap();
    export::write_all(&out, &export::compare::exporters(), &c).unwrap();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        seen.push(name.clone());
        if name.ends_with(".png") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if name.ends_with(".csv") {
            // Data, not markup: the name comes back exactly, quoted as CSV quotes;
            // the formula comes back behind a ' that keeps a spreadsheet from running it.
            let rows: Vec<csv::StringRecord> =
                csv::Reader::from_reader(text.as_bytes()).records().map(|r| r.unwrap()).collect();
            assert!(rows.iter().any(|r| r.iter().any(|f| f == hostile)), "{name}: {text}");
            assert!(rows.iter().any(|r| r.iter().any(|f| f == format!("'{formula}"))), "{name}: {text}");
            assert!(!rows.iter().any(|r| r.iter().any(|f| f.starts_with('='))), "{name}: {text}");
            continue;
        }
        if name.ends_with(".json") {
            // Data too: the names come back exactly from the JSON strings.
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!((v["base_model"].as_str(), v["candidate_model"].as_str()), (Some(hostile), Some(formula)));
            continue;
        }
        assert!(!text.contains("<script>alert(2)") && !text.contains("<img src="), "{name} holds live markup");
        if name.ends_with(".svg") {
            let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(doc.descendants().all(|n| !matches!(n.tag_name().name(), "script" | "img" | "foreignObject")));
        }
    }
    for file in ["index.html", "models.csv", "summary.md", "compare.html", "compare.md", "compare.json"] {
        assert!(seen.iter().any(|s| s == file), "{file} not written: {seen:?}");
    }
    let compare_html = std::fs::read_to_string(out.join("compare.html")).unwrap();
    assert!(compare_html.contains("&lt;script&gt;alert(2)"), "compare.html names the base as text");
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    let row = md.lines().find(|l| l.contains("alert(2)")).unwrap();
    assert!(row.contains("\\|"), "the name's | is escaped in Markdown: {row}");
    let svg = std::fs::read_to_string(out.join("quality_vs_price.svg")).unwrap();
    assert!(svg.contains("&lt;script&gt;alert(2)"), "the name is on the chart as text");
}
