//! The `openweigh` binary: parse flags, dispatch to a stage, map errors to
//! exit codes (2 for user mistakes, 3 for a run with failed items, 1 otherwise).

use anyhow::Result;
use clap::Parser;
use openweigh::cli::{
    BenchArgs, Cli, Command, CompareArgs, DeviceArg, FetchArgs, PricesCommand, QuantizeArgs, ReportArgs, RunArgs,
    SuiteArgs, SuitesArgs, SuitesCommand,
};
use openweigh::error::{UserError, EXIT_ITEM_FAILURES, EXIT_USER};
use openweigh::report::HardwarePrice;
use openweigh::{assets, bench, catalog, compare, cost, lm_eval, quantize, report, run, suite};
use std::path::Path;

fn main() {
    // Die quietly on a closed pipe (`openweigh compare … | head`), as Unix tools do.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UserError>() {
                eprintln!("error: {u}");
                EXIT_USER
            } else {
                eprintln!("error: {e:#}");
                1
            }
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Fetch(args) => cmd_fetch(args),
        Command::Models => cmd_models(),
        Command::Bench(args) => cmd_bench(args),
        Command::Compare(args) => cmd_compare(args),
        Command::Quantize(args) => cmd_quantize(args),
        Command::Report(args) => cmd_report(args),
        Command::Prices(cmd) => cmd_prices(cmd),
        Command::Suites(args) => cmd_suites(args),
    }
}

/// Fixes the compute thread count. candle sizes its thread pools from these
/// variables on first use, so this runs before anything touches a tensor.
fn set_threads(threads: Option<usize>) -> usize {
    let threads = threads.unwrap_or_else(candle_core::utils::get_num_threads);
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    threads
}

fn cmd_run(args: RunArgs) -> Result<i32> {
    let models = expand_models(&args.model)?;
    // Price flags are checked now, before any weights load, though used at the end.
    let hardware = HardwarePrice::choose(args.price.hourly_usd, &args.price.hardware)?;
    let prices = cost::load_table(args.price.prices.as_deref())?;
    if let [model] = models.as_slice() {
        return run_one(model, &args, &hardware, &prices);
    }
    run_many(&models, &args, &hardware, &prices)
}

/// Writes the report of finished runs and says where it is.
fn write_report(r: &report::Report, out: &Path) -> Result<()> {
    for w in &r.warnings {
        eprintln!("note: {w}");
    }
    let index = report::write(r, out)?;
    println!("report: {} (charts as PNG and SVG, summary.md, models.csv beside it)", index.display());
    Ok(())
}

fn cmd_report(args: ReportArgs) -> Result<i32> {
    let hardware = HardwarePrice::choose(args.price.hourly_usd, &args.price.hardware)?;
    let prices = cost::load_table(args.price.prices.as_deref())?;
    let r = report::build(report::load_runs(&args.runs)?, hardware, &prices)?;
    write_report(&r, &args.out)?;
    Ok(0)
}

fn cmd_prices(cmd: PricesCommand) -> Result<i32> {
    match cmd {
        PricesCommand::Import { file, out } => {
            let entries = cost::read_price_file(&file)?;
            let out = out.unwrap_or_else(cost::user_table_path);
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            let provenance = format!(
                "USD per 1M tokens, open-weight chat models at hosting providers; converted by openweigh {} on {} from {name} (litellm's price file is MIT-licensed, (c) Berri AI)",
                env!("CARGO_PKG_VERSION"),
                chrono::Utc::now().format("%Y-%m-%d")
            );
            cost::write_csv(&out, &entries, &provenance)?;
            println!("{} prices -> {}", entries.len(), out.display());
        }
        PricesCommand::List { model, prices } => {
            let table = cost::load_table(prices.as_deref())?;
            let needle = model.map(|m| m.to_lowercase());
            let mut rows: Vec<&cost::PriceEntry> = table
                .entries
                .iter()
                .filter(|e| needle.as_ref().is_none_or(|n| e.model.to_lowercase().contains(n.as_str())))
                .collect();
            rows.sort_by(|a, b| a.blended_usd_per_mtok().total_cmp(&b.blended_usd_per_mtok()));
            println!("{:<14} {:<56} {:>9} {:>9} {:>9}", "provider", "model", "in $/1M", "out $/1M", "blended");
            for e in &rows {
                println!(
                    "{:<14} {:<56} {:>9.3} {:>9.3} {:>9.3}",
                    e.provider,
                    e.model,
                    e.input_usd_per_mtok,
                    e.output_usd_per_mtok,
                    e.blended_usd_per_mtok()
                );
            }
            println!("{} of {} entries; source: {}", rows.len(), table.entries.len(), table.source);
        }
    }
    Ok(0)
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
    models.dedup();
    if models.is_empty() {
        return Err(UserError::BadFlag {
            flag: "--model",
            message: "`catalog` found no fetched catalog model; fetch one first (`openweigh fetch NAME`)".into(),
        }
        .into());
    }
    Ok(models)
}

fn run_one(model: &str, args: &RunArgs, hardware: &HardwarePrice, prices: &cost::PriceTable) -> Result<i32> {
    let threads = set_threads(args.common.threads);
    let opts = run::RunOptions {
        model: model.to_string(),
        suite: args.common.suite.clone(),
        limit: args.common.limit,
        threads,
        out: args.common.out.clone(),
        weights: args.weights,
        cuda: args.device == DeviceArg::Cuda,
        probe_repetitions: args.probe_reps,
    };
    let outcome = run::run(&opts)?;
    print_outcome(&outcome);
    if !args.no_report {
        let r = report::build(report::load_runs(std::slice::from_ref(&outcome.dir))?, hardware.clone(), prices)?;
        write_report(&r, &outcome.dir.join("report"))?;
    }
    if outcome.meta.n_failed > 0 {
        eprintln!("{} item(s) failed; see \"error\" in samples.jsonl", outcome.meta.n_failed);
        return Ok(EXIT_ITEM_FAILURES);
    }
    Ok(0)
}

/// Several models: the suite and every model name are checked first, then each
/// model runs in its own child process (its own peak memory, and one model's
/// crash cannot take the others' results with it), then one table.
fn run_many(models: &[String], args: &RunArgs, hardware: &HardwarePrice, prices: &cost::PriceTable) -> Result<i32> {
    openweigh::suite::Suite::load(&args.common.suite, args.common.limit)?;
    for m in models {
        assets::check_model_spec(m)?;
    }
    let mut extra = vec!["--weights".to_string(), format!("{:?}", args.weights).to_lowercase()];
    extra.extend(["--probe-reps".to_string(), args.probe_reps.to_string(), "--no-report".to_string()]);
    if args.device == DeviceArg::Cuda {
        extra.extend(["--device".to_string(), "cuda".to_string()]);
    }
    let mut runs = Vec::new();
    let mut code = 0;
    for (i, model) in models.iter().enumerate() {
        eprintln!("\n== model {}/{}: {model}", i + 1, models.len());
        match run_in_child(model, &args.common, &extra) {
            Ok((dir, child_code)) => {
                if child_code != 0 {
                    code = EXIT_ITEM_FAILURES;
                }
                runs.push(compare::load_run(&dir)?);
            }
            Err(e) => {
                eprintln!("error: {model}: {e:#}");
                code = 1;
            }
        }
    }
    // The report's rows are the table's: one reading of each run, one set of statistics.
    let n_runs = runs.len();
    let r = report::build(runs, hardware.clone(), prices)?;
    let rows: Vec<_> = r.models.iter().map(|m| m.row.clone()).collect();
    println!("\n{} models on {}", rows.len(), args.common.suite);
    print!("{}", openweigh::leaderboard::format_table(&rows));
    for row in &rows {
        println!("{}: {}", row.model, row.run_dir.display());
    }
    if !args.no_report && n_runs > 0 {
        let (_, out) = openweigh::results::create_output_dir(&args.common.out, "report-{time}")?;
        write_report(&r, &out)?;
    }
    Ok(code)
}

fn print_outcome(outcome: &run::RunOutcome) {
    println!("\n{} on {} ({} threads)", outcome.meta.model.name, outcome.meta.suite.name, outcome.meta.threads);
    print!("{}", run::format_table(&outcome.summary));
    if let Some(p) = &outcome.meta.speed_probe {
        println!(
            "speed probe: prefill {:.1} tok/s, decode {:.1} tok/s, TTFT {:.3} s",
            p.prefill_tok_per_s.mean, p.decode_tok_per_s.mean, p.ttft_s.mean
        );
    }
    println!(
        "model load {:.2} s (not in latencies), items {:.1} s, peak RSS {:.0} MiB",
        outcome.meta.model.load_s,
        outcome.meta.eval_s,
        outcome.meta.peak_rss_byte as f64 / (1024.0 * 1024.0)
    );
    println!("results: {}", outcome.dir.display());
}

fn cmd_compare(args: CompareArgs) -> Result<i32> {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        return Err(UserError::BadFlag { flag: "--alpha", message: "must be between 0 and 1, e.g. 0.05".into() }.into());
    }
    if args.max_drop.is_nan() || args.max_drop < 0.0 {
        return Err(UserError::BadFlag { flag: "--max-drop", message: "must be 0 or more points".into() }.into());
    }
    let (base_dir, cand_dir) = match (&args.base_model, &args.candidate_model) {
        (Some(b), Some(c)) => (run_in_child(b, &args.common, &[])?.0, run_in_child(c, &args.common, &[])?.0),
        _ => (args.base.clone().unwrap(), args.candidate.clone().unwrap()),
    };
    let base = compare::load_run(&base_dir)?;
    let cand = compare::load_run(&cand_dir)?;
    let gate = compare::GateOptions { max_drop_points: args.max_drop, alpha: args.alpha };
    let c = compare::compare(&base, &cand, gate)?;
    print!("{}", compare::to_markdown(&c, Some(args.top)));
    let (_, dir) = openweigh::results::create_output_dir(&args.common.out, "compare-{time}")?;
    std::fs::write(dir.join("compare.md"), compare::to_markdown(&c, None))?;
    std::fs::write(dir.join("compare.json"), serde_json::to_vec_pretty(&c)?)?;
    std::fs::write(dir.join("compare.html"), openweigh::compare_html::to_html(&c))?;
    println!("\ncompare: {} (and compare.html, compare.json)", dir.join("compare.md").display());
    if args.fail_on_regression && !c.regressions.is_empty() {
        eprintln!("regression: {}", c.regressions.join("; "));
        return Ok(1);
    }
    Ok(0)
}

/// Runs `openweigh run` for one model in a child process, so each model's
/// peak memory is its own, and returns the run folder it wrote and its exit
/// code (0, or 3 when some items failed).
fn run_in_child(model: &str, common: &SuiteArgs, extra: &[String]) -> Result<(std::path::PathBuf, i32)> {
    let existing = |out: &std::path::Path| -> std::collections::HashSet<std::path::PathBuf> {
        std::fs::read_dir(out).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    let before = existing(&common.out);
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.args(["run", "--model", model, "--suite", &common.suite]).arg("--out").arg(&common.out);
    if let Some(n) = common.limit {
        cmd.args(["--limit", &n.to_string()]);
    }
    if let Some(t) = common.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    cmd.args(extra);
    let status = cmd.status()?;
    match status.code() {
        Some(0) | Some(EXIT_ITEM_FAILURES) => {}
        Some(EXIT_USER) => {
            return Err(UserError::BadFlag {
                flag: "--model",
                message: format!("the run of {model} was refused (see above)"),
            }
            .into())
        }
        _ => anyhow::bail!("the run of {model} failed ({status})"),
    }
    let new: Vec<_> =
        existing(&common.out).difference(&before).filter(|p| p.join("run.json").is_file()).cloned().collect();
    match new.as_slice() {
        [dir] => Ok((dir.clone(), status.code().unwrap_or(1))),
        _ => anyhow::bail!("could not tell which folder in {} the run of {model} wrote", common.out.display()),
    }
}

fn cmd_quantize(args: QuantizeArgs) -> Result<i32> {
    let r = quantize::quantize(&args.input, args.to, &args.output)?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&r)?)?;
    }
    println!(
        "{} -> {} ({} -> {})",
        args.input.display(),
        args.output.display(),
        assets::human_bytes(r.input_byte),
        assets::human_bytes(r.output_byte)
    );
    println!("tensor types: {:?}", r.output_types);
    if !r.fallback.is_empty() {
        let shown: Vec<&str> = r.fallback.iter().take(4).map(String::as_str).collect();
        println!(
            "{} tensor(s) fell back to Q4_0, their rows not being a multiple of the block size (e.g. {}); all are listed with --json",
            r.fallback.len(),
            shown.join(", ")
        );
    }
    Ok(0)
}

fn cmd_bench(args: BenchArgs) -> Result<i32> {
    let threads = set_threads(args.threads);
    let rows = bench::bench(&args.model, &args.weights, args.reps, threads)?;
    print!("{}", bench::format_table(&rows));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(0)
}

fn cmd_fetch(args: FetchArgs) -> Result<i32> {
    let names: Vec<&str> = match &args.name {
        Some(n) => vec![n.as_str()],
        None => std::iter::once(catalog::DEFAULT_MODEL).chain(catalog::DATASETS.iter().map(|d| d.asset.name)).collect(),
    };
    for name in names {
        let asset = catalog::asset(name).ok_or_else(|| UserError::UnknownModel(name.into()))?;
        let path = match catalog::model(name) {
            Some(m) => assets::fetch_model(m)?,
            None => assets::fetch(asset)?,
        };
        println!("{name}\t{}", path.display());
    }
    Ok(0)
}

fn cmd_models() -> Result<i32> {
    println!(
        "{:<28} {:<7} {:<6} {:<7} {:>9} {:<19} {:<8} fetched",
        "name", "family", "params", "quant", "size", "licence", "kind"
    );
    for m in catalog::MODELS {
        let fetched = assets::cached_path(&m.asset).exists();
        println!(
            "{:<28} {:<7} {:<6} {:<7} {:>9} {:<19} {:<8} {}",
            m.asset.name,
            m.family,
            m.parameters,
            m.quantization,
            assets::human_bytes(m.asset.size_byte),
            m.asset.licence,
            if m.instruct { "instruct" } else { "base" },
            if fetched { "yes" } else { "no" }
        );
    }
    println!("\ndatasets: `openweigh suites --datasets`");
    Ok(0)
}

fn cmd_suites(args: SuitesArgs) -> Result<i32> {
    match args.command {
        Some(SuitesCommand::ImportLmEval { file, out, dataset }) => {
            let (name, yaml) = lm_eval::import(&file, dataset.as_deref())?;
            let out = out.unwrap_or_else(|| Path::new("suites").join(format!("{name}.yaml")));
            // Loading it proves the converted suite renders on the data before we keep it.
            let tmp = out.with_extension("yaml.partial");
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&tmp, &yaml)?;
            let loaded = suite::Suite::load(tmp.to_str().unwrap_or_default(), None);
            let loaded = match loaded {
                Ok(s) => s,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            std::fs::rename(&tmp, &out)?;
            let t = &loaded.tasks[0];
            println!("{} -> {} (task {}, {} items)", file.display(), out.display(), t.spec.task, t.items.len());
            Ok(0)
        }
        None if args.datasets => {
            print!("{}", suite::listing::datasets_table());
            Ok(0)
        }
        None => {
            print!("{}", suite::listing::suites_table(args.suite.as_deref())?);
            Ok(0)
        }
    }
}
