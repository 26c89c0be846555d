//! `openweigh compare BASE CANDIDATE` (run folders), or `--base-model` /
//! `--candidate-model` (each run first in a child process): the paired
//! comparison printed and written as compare.md, compare.json and
//! compare.html, and the CI gate's exit code.

use super::cli::CompareArgs;
use anyhow::Result;
use openweigh::analysis::compare::{self, GateOptions};
use openweigh::error::{UserError, EXIT_GATE};
use openweigh::export::{self, compare::markdown::to_markdown};
use openweigh::results::{create_output_dir, load_run};
use openweigh::run::children::run_in_child;

pub fn compare(args: CompareArgs) -> Result<i32> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(UserError::BadFlag { flag: "--alpha", message: "must be between 0 and 1, e.g. 0.05".into() }.into());
    }
    if args.max_drop.is_nan() || args.max_drop < 0.0 {
        return Err(UserError::BadFlag { flag: "--max-drop", message: "must be 0 or more points".into() }.into());
    }
    let max_aggregate_drop = args.max_aggregate_drop.unwrap_or(args.max_drop);
    if max_aggregate_drop.is_nan() || max_aggregate_drop < 0.0 {
        return Err(UserError::BadFlag {
            flag: "--max-aggregate-drop",
            message: "must be 0 or more chance-normalised points".into(),
        }
        .into());
    }
    let (base_dir, cand_dir) = match (&args.base_model, &args.candidate_model) {
        (Some(b), Some(c)) => {
            let models_file = args.served.models.as_deref();
            for (m, a) in [(b, &args.base_adapter), (c, &args.candidate_adapter)] {
                if let Some(a) = a {
                    openweigh::run::check_adapter(m, a, models_file)?;
                }
            }
            let child = super::child_run(&args.common, args.served.child_flags(), args.resume);
            (
                run_in_child(b, args.base_adapter.as_deref(), &child)?.0,
                run_in_child(c, args.candidate_adapter.as_deref(), &child)?.0,
            )
        }
        _ => (args.base.clone().unwrap(), args.candidate.clone().unwrap()),
    };
    let base = load_run(&base_dir)?;
    let cand = load_run(&cand_dir)?;
    let gate = GateOptions {
        max_drop_points: args.max_drop,
        max_aggregate_drop_points: max_aggregate_drop,
        alpha: args.alpha,
    };
    let c = compare::compare(&base, &cand, gate)?;
    print!("{}", to_markdown(&c, Some(args.top)));
    let (_, dir) = create_output_dir(&args.common.out, "compare-{time}")?;
    export::write_all(&dir, &export::compare::exporters(), &c)?;
    println!("\ncompare: {} (and compare.html, compare.json)", dir.join("compare.md").display());
    if let (true, false, Some(m)) = (args.fail_on_regression, args.allow_host_mismatch, c.prediction_mismatch()) {
        return Err(UserError::BadFlag {
            flag: "--fail-on-regression",
            message: format!(
                "the runs were measured differently ({m}), which alone can flip items; rerun both on one machine with the same flags, or pass --allow-host-mismatch to gate anyway"
            ),
        }
        .into());
    }
    if args.fail_on_regression && !c.regressions.is_empty() {
        eprintln!("regression: {}", c.regressions.join("; "));
        return Ok(EXIT_GATE);
    }
    Ok(0)
}
