//! One file per subcommand: each reads its flags, calls the library stages in
//! order and prints what the user sees. `cli` holds the flag types. Nothing
//! in the library imports this folder.

pub mod bench;
pub mod cli;
pub mod compare;
pub mod fetch;
pub mod load;
pub mod merge;
pub mod models;
pub mod prices;
pub mod quantize;
pub mod report;
pub mod run;
pub mod suites;

use anyhow::Result;
use cli::{Cli, Command, SuiteArgs};
use openweigh::run::children::ChildRun;

/// Runs the subcommand; returns the process exit code. `explicit`: the ids
/// of the flags typed on the command line.
pub fn dispatch(cli: Cli, explicit: &[String]) -> Result<i32> {
    match cli.command {
        Command::Run(args) => run::run(args, explicit),
        Command::Fetch(args) => fetch::fetch(args),
        Command::Models => models::models(),
        Command::Bench(args) => bench::bench(args),
        Command::Compare(args) => compare::compare(args),
        Command::Quantize(args) => quantize::quantize(args),
        Command::Merge(args) => merge::merge(args),
        Command::Report(args) => report::report(args),
        Command::Prices(cmd) => prices::prices(cmd),
        Command::Suites(args) => suites::suites(args),
        Command::Load(args) => load::load(args),
    }
}

/// What every child `openweigh run` gets from the suite flags, plus `extra`
/// flags; `resume`: take up earlier runs in the output folder.
pub fn child_run(common: &SuiteArgs, extra: Vec<String>, resume: bool) -> ChildRun {
    ChildRun {
        suite: common.suite.clone(),
        limit: common.limit,
        threads: common.threads,
        out: common.out.clone(),
        extra,
        resume,
    }
}

/// Fixes the compute thread count before anything touches a tensor (see
/// [`openweigh::backend::candle::set_compute_threads`]).
pub fn set_threads(threads: Option<usize>) -> usize {
    openweigh::backend::candle::set_compute_threads(threads)
}
