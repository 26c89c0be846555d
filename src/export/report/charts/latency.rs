//! Latency per model: time to first token of the speed probe's 256-token
//! prompt, and end-to-end time for a 500-token answer (TTFT + 499 tokens at the
//! measured decode speed, Artificial Analysis' convention). Lower is better.

use super::bars::{self, Bar};
use super::{svg, titled, Chart};
use anyhow::Result;

pub fn chart(ttft: &[Bar], e2e: &[Bar]) -> Result<Chart> {
    let svg = svg(|root| {
        let area = titled(
            root,
            "Latency",
            "Speed probe: 256-token prompt. Time to first token, and end-to-end time for a 500-token answer. Lower is better.",
        )?;
        let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
        bars::draw(&left, "Time to first token", "seconds — lower is better", "s", ttft)?;
        bars::draw(&right, "End-to-end, 500 output tokens", "seconds — lower is better", "s", e2e)?;
        Ok(())
    })?;
    Ok(Chart { name: "latency", title: "Latency".into(), svg })
}
