//! `openweigh report RESULT_DIR…`: charts, index.html, summary.md and
//! models.csv from finished runs, prices applied now.

use super::cli::ReportArgs;
use anyhow::Result;
use openweigh::analysis::prices;
use openweigh::analysis::report::{self, HardwarePrice, Report};
use openweigh::export;
use openweigh::results::load_runs;
use std::path::Path;

pub fn report(args: ReportArgs) -> Result<i32> {
    let hardware = HardwarePrice::choose(args.price.hourly_usd, &args.price.hardware)?;
    let prices = prices::load_table(args.price.prices.as_deref())?;
    let r = report::build(load_runs(&args.runs)?, hardware, &prices)?;
    write(&r, &args.out)?;
    Ok(0)
}

/// Writes the report of finished runs and says where it is.
pub fn write(r: &Report, out: &Path) -> Result<()> {
    for w in &r.warnings {
        eprintln!("note: {w}");
    }
    let index = export::report::write(r, out)?;
    println!("report: {} (charts as PNG and SVG, summary.md, models.csv beside it)", index.display());
    Ok(())
}
