//! Command-line types (clap derive) and nothing else.

use crate::backend::llama::WeightFormat;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "openweigh",
    version,
    about = "Weigh open LLMs against each other: quality, latency, memory and cost in one run."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a suite on a model and write results/<run-id>/ (default: quick suite, default model).
    Run(RunArgs),
    /// Fetch a catalog model or dataset into the cache (no name: the default model and all catalog datasets).
    Fetch(FetchArgs),
    /// List the catalog's models and datasets, and whether each is fetched.
    Models,
    /// Speed probe only, for several weight formats side by side (ratios against the first).
    Bench(BenchArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Catalog model name or path to a .gguf file.
    #[arg(long, default_value = crate::catalog::DEFAULT_MODEL)]
    pub model: String,
    /// Suite name (suites/NAME.yaml or built in) or path to a suite .yaml file.
    #[arg(long, default_value = crate::suite::DEFAULT_SUITE)]
    pub suite: String,
    /// At most N items per task (a prefix of each task's seeded sample).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Compute threads (default: physical cores). More threads than cores is very slow.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Folder for results/<run-id>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
    /// How weights are held: q8_0 repacks 4/5-bit legacy quants (Q4_0, Q4_1, Q5_*) to Q8_0
    /// for candle's SIMD kernels; native keeps the file's types (slow for Q4_1 on CPU).
    #[arg(long, value_enum, default_value = "q8_0")]
    pub weights: WeightFormat,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Timed repetitions of the speed probe (0 skips it).
    #[arg(long, default_value_t = 3)]
    pub probe_reps: usize,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Catalog model name or path to a .gguf file.
    #[arg(long, default_value = crate::catalog::DEFAULT_MODEL)]
    pub model: String,
    /// Weight formats to compare; the first is the baseline.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "native,q8_0")]
    pub weights: Vec<WeightFormat>,
    /// Timed repetitions per format (after one warm-up).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Compute threads (default: physical cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write the measurements as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Catalog name (see `openweigh models`).
    pub name: Option<String>,
}
