//! `openweigh quantize IN --to TYPE OUT`: requantize a GGUF with candle.

use super::cli::QuantizeArgs;
use anyhow::Result;
use openweigh::{assets, quantize};

pub fn quantize(args: QuantizeArgs) -> Result<i32> {
    let r = quantize::quantize(&args.input, args.to, &args.output)?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&r)?)?;
    }
    println!(
        "{} -> {} ({} -> {})",
        args.input.display(),
        args.output.display(),
        assets::human_bytes(r.input_byte),
        assets::human_bytes(r.output_byte)
    );
    println!("tensor types: {:?}", r.output_types);
    if !r.fallback.is_empty() {
        let shown: Vec<&str> = r.fallback.iter().take(4).map(String::as_str).collect();
        println!(
            "{} tensor(s) fell back to Q4_0, their rows not being a multiple of the block size (e.g. {}); all are listed with --json",
            r.fallback.len(),
            shown.join(", ")
        );
    }
    Ok(0)
}
