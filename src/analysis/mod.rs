//! Analysis: what finished runs say, read through `results` only. One row
//! per model for leaderboards (`leaderboard`), the paired comparison of two
//! runs with its CI gate (`compare`), price tables (`prices`), the cost model
//! (`cost`) and the priced content of a report (`report`). Nothing here
//! writes a file: the exporters in `export` do.

pub mod compare;
pub mod cost;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod leaderboard;
pub mod prices;
pub mod report;

/// Bootstrap replicates behind every bootstrap CI openweigh reports.
pub const BOOTSTRAP_REPLICATES: usize = 2000;
