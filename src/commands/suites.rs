//! `openweigh suites`: list suites and their tasks, list the catalog
//! datasets, or import an lm-evaluation-harness task file.

use super::cli::{SuitesArgs, SuitesCommand};
use anyhow::Result;
use openweigh::suite::{self, lm_eval, Suite};
use std::io::Write;
use std::path::Path;

pub fn suites(args: SuitesArgs) -> Result<i32> {
    match args.command {
        Some(SuitesCommand::ImportLmEval { file, out, dataset, split }) => {
            let (name, yaml) = lm_eval::import(&file, dataset.as_deref(), split.as_deref())?;
            let out = out.unwrap_or_else(|| Path::new("suites").join(format!("{name}.yaml")));
            // Loading it proves the converted suite renders on the data before we keep it.
            let tmp = out.with_extension("yaml.partial");
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&tmp, &yaml)?;
            let loaded = match Suite::load(tmp.to_str().unwrap_or_default(), None) {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            std::fs::rename(&tmp, &out)?;
            let t = &loaded.tasks[0];
            println!("{} -> {} (task {}, {} items)", file.display(), out.display(), t.spec.task, t.items.len());
        }
        Some(SuitesCommand::Items { suite, task, limit }) => {
            let loaded = Suite::load(&suite, limit)?;
            let tasks: Vec<_> =
                loaded.tasks.iter().filter(|t| task.as_ref().is_none_or(|n| &t.spec.task == n)).collect();
            if tasks.is_empty() {
                let names: Vec<&str> = loaded.tasks.iter().map(|t| t.spec.task.as_str()).collect();
                anyhow::bail!(
                    "suite '{}' has no task '{}' (it has: {})",
                    loaded.name,
                    task.unwrap_or_default(),
                    names.join(", ")
                );
            }
            let mut out = std::io::stdout().lock();
            for t in tasks {
                for item in &t.items {
                    writeln!(out, "{}", serde_json::to_string(item)?)?;
                }
            }
        }
        None if args.datasets => print!("{}", suite::listing::datasets_table()),
        None => print!("{}", suite::listing::suites_table(args.suite.as_deref())?),
    }
    Ok(0)
}
