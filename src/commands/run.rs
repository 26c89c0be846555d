//! `openweigh run`: one model in this process, or several, each in a child
//! process, then one leaderboard table and one report. Price flags are
//! checked before any weights load, though used only at the end.

use super::cli::{DeviceArg, RunArgs};
use super::set_threads;
use anyhow::Result;
use openweigh::analysis::leaderboard;
use openweigh::analysis::prices::{self, PriceTable};
use openweigh::analysis::report::{self, HardwarePrice};
use openweigh::error::{exit_code, worse_exit, UserError, EXIT_ITEM_FAILURES};
use openweigh::results::{create_output_dir, load_run, load_runs};
use openweigh::run::children::run_in_child;
use openweigh::run::{self as runner, summary};
use openweigh::{assets, catalog, score, suite};

/// `explicit`: the ids of the flags typed on the command line (a resumed
/// run takes the others from its run.json).
pub fn run(args: RunArgs, explicit: &[String]) -> Result<i32> {
    let models = expand_models(&args.model)?;
    let hardware = HardwarePrice::choose(args.price.hourly_usd, &args.price.hardware)?;
    let prices = prices::load_table(args.price.prices.as_deref())?;
    if let Some(dir) = args.resume.as_ref().filter(|d| !d.is_empty()).map(std::path::PathBuf::from) {
        let dir = &dir;
        if models.len() > 1 {
            return Err(UserError::BadFlag {
                flag: "--resume",
                message: "a folder continues one run; for several --model give --resume without a folder".into(),
            }
            .into());
        }
        let meta = openweigh::results::read_run_json(dir)?;
        if meta.status == "complete" {
            // Killed while writing its report: the run is whole; write the report again.
            println!("{} is complete; nothing to run", dir.display());
            if !args.no_report {
                write_run_report(dir, &hardware, &prices)?;
            }
            return Ok(0);
        }
        let opts = runner::resume::options(
            dir,
            &meta,
            &options(&models[0], &args, args.common.threads.unwrap_or(0)),
            explicit,
        )?;
        set_threads(Some(opts.threads));
        return run_one(&opts, &args, &hardware, &prices);
    }
    if let ([model], false) = (models.as_slice(), args.resume.is_some()) {
        let threads = set_threads(args.common.threads);
        return run_one(&options(model, &args, threads), &args, &hardware, &prices);
    }
    if let Some(a) = &args.adapter {
        return Err(UserError::BadFlag {
            flag: "--adapter",
            message: format!(
                "{} applies to one --model, not {}; run each model alone, or use `compare --base-model M --candidate-model M --candidate-adapter A`",
                a.display(),
                models.len()
            ),
        }
        .into());
    }
    run_many(&models, &args, &hardware, &prices)
}

/// `--model catalog` stands for every catalog model already fetched.
fn expand_models(specs: &[String]) -> Result<Vec<String>> {
    let mut models: Vec<String> = Vec::new();
    for spec in specs {
        if spec == "catalog" {
            let fetched = catalog::MODELS.iter().filter(|m| assets::cached_path(&m.asset).exists());
            models.extend(fetched.map(|m| m.asset.name.to_string()));
        } else {
            models.push(spec.clone());
        }
    }
    // A model named twice (or also fetched, with `catalog`) runs once, at its first place.
    let mut seen = std::collections::HashSet::new();
    models.retain(|m| seen.insert(m.clone()));
    if models.is_empty() {
        return Err(UserError::BadFlag {
            flag: "--model",
            message: "`catalog` found no fetched catalog model; fetch one first (`openweigh fetch NAME`)".into(),
        }
        .into());
    }
    Ok(models)
}

/// The run options of `model` from the flags.
fn options(model: &str, args: &RunArgs, threads: usize) -> runner::RunOptions {
    runner::RunOptions {
        model: model.to_string(),
        suite: args.common.suite.clone(),
        limit: args.common.limit,
        threads,
        out: args.common.out.clone(),
        weights: args.weights,
        cuda: args.device == DeviceArg::Cuda,
        probe_repetitions: args.probe_reps,
        models_file: args.served.models.clone(),
        adapter: args.adapter.clone(),
        http: args.served.http(),
        resume: None,
    }
}

fn run_one(opts: &runner::RunOptions, args: &RunArgs, hardware: &HardwarePrice, prices: &PriceTable) -> Result<i32> {
    let outcome = runner::run(opts)?;
    print_outcome(&outcome);
    if !args.no_report {
        write_run_report(&outcome.dir, hardware, prices)?;
    }
    if outcome.meta.n_failed > 0 {
        eprintln!("{} item(s) failed; see \"error\" in samples.jsonl", outcome.meta.n_failed);
        return Ok(EXIT_ITEM_FAILURES);
    }
    Ok(0)
}

/// The report of the one run in `dir`, written to `dir/report`.
fn write_run_report(dir: &std::path::Path, hardware: &HardwarePrice, prices: &PriceTable) -> Result<()> {
    let r = report::build(load_runs(&[dir.to_path_buf()])?, hardware.clone(), prices)?;
    super::report::write(&r, &dir.join("report"))
}

/// Several models: the suite and every model name are checked first, then each
/// model runs in its own child process, then one table and one report.
fn run_many(models: &[String], args: &RunArgs, hardware: &HardwarePrice, prices: &PriceTable) -> Result<i32> {
    score::check_requirements(&suite::Suite::load(&args.common.suite, args.common.limit)?)?;
    for m in models {
        if openweigh::backend::openai::endpoint::resolve(m, args.served.models.as_deref())?.is_none() {
            assets::check_model_spec(m)?;
        }
    }
    let mut extra = vec!["--weights".to_string(), format!("{:?}", args.weights).to_lowercase()];
    extra.extend(["--probe-reps".to_string(), args.probe_reps.to_string(), "--no-report".to_string()]);
    if args.device == DeviceArg::Cuda {
        extra.extend(["--device".to_string(), "cuda".to_string()]);
    }
    extra.extend(args.served.child_flags());
    let child = super::child_run(&args.common, extra, args.resume.is_some());
    let mut runs = Vec::new();
    let mut code = 0;
    for (i, model) in models.iter().enumerate() {
        eprintln!("\n== model {}/{}: {model}", i + 1, models.len());
        // One model's failure is reported and the others still run.
        let result = run_in_child(model, args.adapter.as_deref(), &child)
            .and_then(|(dir, child_code)| Ok((load_run(&dir)?, child_code)));
        match result {
            Ok((run, child_code)) => {
                if child_code != 0 {
                    code = worse_exit(code, EXIT_ITEM_FAILURES);
                }
                runs.push(run);
            }
            Err(e) => {
                eprintln!("error: {model}: {e:#}");
                code = worse_exit(code, exit_code(&e));
            }
        }
    }
    // The report's rows are the table's: one reading of each run, one set of statistics.
    let n_runs = runs.len();
    let r = report::build(runs, hardware.clone(), prices)?;
    let rows: Vec<_> = r.models.iter().map(|m| m.row.clone()).collect();
    println!("\n{} models on {}", rows.len(), args.common.suite);
    print!("{}", leaderboard::format_table(&rows));
    for row in &rows {
        println!("{}: {}", row.model, row.run_dir.display());
    }
    if !args.no_report && n_runs > 0 {
        let (_, out) = create_output_dir(&args.common.out, "report-{time}")?;
        super::report::write(&r, &out)?;
    }
    Ok(code)
}

fn print_outcome(outcome: &runner::RunOutcome) {
    println!("\n{} on {} ({} threads)", outcome.meta.model.name, outcome.meta.suite.name, outcome.meta.threads);
    print!("{}", summary::format_table(&outcome.summary));
    if let Some(p) = &outcome.meta.speed_probe {
        println!(
            "speed probe: prefill {:.1} tok/s, decode {:.1} tok/s, TTFT {:.3} s",
            p.prefill_tok_per_s.mean, p.decode_tok_per_s.mean, p.ttft_s.mean
        );
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "model load {:.2} s (not in latencies), items {:.1} s, peak RSS {:.0} MiB{}",
        outcome.meta.model.load_s,
        outcome.meta.eval_s,
        mib(outcome.meta.peak_rss_byte),
        match outcome.meta.kv_peak_byte {
            Some(kv) => format!(" (KV cache at most {:.0} MiB)", mib(kv)),
            None => String::new(),
        }
    );
    println!("results: {}", outcome.dir.display());
}
