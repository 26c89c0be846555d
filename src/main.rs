//! The `openweigh` binary: parse flags, dispatch to a stage, map errors to
//! exit codes (2 for user mistakes, 3 for a run with failed items, 1 otherwise).

use anyhow::Result;
use clap::Parser;
use openweigh::cli::{BenchArgs, Cli, Command, DeviceArg, FetchArgs, RunArgs};
use openweigh::error::{UserError, EXIT_ITEM_FAILURES, EXIT_USER};
use openweigh::{assets, bench, catalog, run};

fn main() {
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
    let threads = set_threads(args.threads);
    let opts = run::RunOptions {
        model: args.model,
        suite: args.suite,
        limit: args.limit,
        threads,
        out: args.out,
        weights: args.weights,
        cuda: args.device == DeviceArg::Cuda,
        probe_repetitions: args.probe_reps,
    };
    let outcome = run::run(&opts)?;
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
    if outcome.meta.n_failed > 0 {
        eprintln!("{} item(s) failed; see \"error\" in samples.jsonl", outcome.meta.n_failed);
        return Ok(EXIT_ITEM_FAILURES);
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
        None => std::iter::once(catalog::DEFAULT_MODEL).chain(catalog::DATASETS.iter().map(|d| d.name)).collect(),
    };
    for name in names {
        let asset = catalog::asset(name).ok_or_else(|| UserError::UnknownModel(name.into()))?;
        let path = assets::fetch(asset)?;
        println!("{name}\t{}", path.display());
    }
    Ok(0)
}

fn cmd_models() -> Result<i32> {
    println!(
        "{:<24} {:<7} {:<6} {:<7} {:>9} {:<10} {:<8} fetched",
        "name", "family", "params", "quant", "size", "licence", "kind"
    );
    for m in catalog::MODELS {
        let fetched = assets::cached_path(&m.asset).exists();
        println!(
            "{:<24} {:<7} {:<6} {:<7} {:>9} {:<10} {:<8} {}",
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
    println!("\ndatasets:");
    for d in catalog::DATASETS {
        let fetched = assets::cached_path(d).exists();
        println!(
            "{:<24} {:>9} {:<14} {}",
            d.name,
            assets::human_bytes(d.size_byte),
            d.licence,
            if fetched { "yes" } else { "no" }
        );
    }
    Ok(0)
}
