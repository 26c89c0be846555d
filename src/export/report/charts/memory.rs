//! Peak resident memory of each model's run (model load onward), in MiB.
//! Lower is better.

use super::bars::{self, Bar};
use super::{svg, titled, Chart};
use anyhow::Result;

pub fn chart(peak: &[Bar]) -> Result<Chart> {
    let svg = svg(|root| {
        let area = titled(
            root,
            "Peak memory",
            "Peak resident set size of the run, model load onward (VmHWM). Lower is better.",
        )?;
        bars::draw(&area, "", "MiB — lower is better", "MiB", peak)
    })?;
    Ok(Chart { name: "memory", title: "Peak memory".into(), svg })
}
