//! Statistics as pure, documented functions, property-tested beside each:
//! `descriptive` (mean, sd, standard error, percentiles), `intervals` (the
//! typed [`Estimate`], normal and bootstrap confidence intervals, chance
//! normalisation) and `hypothesis` (exact McNemar, Holm). Nothing here reads
//! files or knows what a run is.

pub mod descriptive;
pub mod hypothesis;
pub mod intervals;

pub use descriptive::*;
pub use hypothesis::*;
pub use intervals::*;
