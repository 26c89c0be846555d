//! `openweigh bench`: the speed probe alone, for several weight formats side
//! by side, as ratios to the first.

use super::cli::BenchArgs;
use super::set_threads;
use anyhow::Result;
use openweigh::run::{bench, measure};

pub fn bench(args: BenchArgs) -> Result<i32> {
    let threads = set_threads(args.threads);
    let rows = bench::bench(
        &args.model,
        &args.weights,
        args.reps,
        threads,
        measure::ProbeShape { prompt_tokens: args.prompt_tokens, output_tokens: args.output_tokens },
    )?;
    print!("{}", bench::format_table(&rows));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)?;
    }
    Ok(0)
}
