//! openweigh: weigh open LLMs against each other. One run measures quality
//! (benchmark suites), latency, throughput and memory of a model; reports
//! put it beside other models with prices. Data flows one way, one folder per
//! stage:
//!
//! `suite` (Suite → Task → Item) → `run` (Item → Request, results written as
//! they come) → `backend` (Request → Response: tokens, log-likelihoods, text,
//! timings) → `score` (Response → metrics) → `results` (ItemResult, RunMeta:
//! the files' contract) → `analysis` (leaderboard, compare and gate, prices,
//! cost) → `export` (report and comparison files). `stats` holds the pure
//! statistics; `catalog`, `assets` and `hub` find and fetch models and data;
//! `quantize` rewrites GGUF files and `merge` writes a LoRA adapter into
//! one; `error` holds the user-facing errors; `fuzz` the fuzzing entry points.

pub mod analysis;
pub mod assets;
pub mod backend;
pub mod catalog;
pub mod error;
pub mod export;
#[doc(hidden)]
pub mod fuzz;
pub mod hub;
pub mod load;
pub mod merge;
pub mod quantize;
pub mod results;
pub mod run;
pub mod score;
pub mod stats;
pub mod suite;
