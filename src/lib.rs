//! openweigh: weigh open LLMs against each other. One run measures quality
//! (benchmark suites), latency, throughput and memory of a local model; the
//! data flows Suite → Task → Item → Request → Backend → Response → Score →
//! ItemResult → RunResult, one module per step.

pub mod assets;
pub mod backend;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod compare;
pub mod compare_html;
pub mod cost;
pub mod error;
pub mod execute;
pub mod hub;
pub mod leaderboard;
pub mod lm_eval;
pub mod measure;
pub mod quantize;
pub mod report;
pub mod results;
pub mod run;
pub mod score;
pub mod stats;
pub mod suite;
