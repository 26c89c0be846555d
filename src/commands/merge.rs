//! `openweigh merge BASE --adapter A OUT`: a LoRA adapter merged into a GGUF
//! model (or, with `--lora-only`, written alone as a llama.cpp GGUF adapter).

use super::cli::MergeArgs;
use anyhow::Result;
use openweigh::backend::adapter::LoraAdapter;
use openweigh::{assets, merge};

pub fn merge(args: MergeArgs) -> Result<i32> {
    let adapter = LoraAdapter::open(&args.adapter)?;
    let base = assets::resolve_model(&args.base)?;
    let a = &adapter.info;
    if args.lora_only {
        merge::write_lora_only(&base.path, &adapter, &args.output)?;
        println!(
            "{} -> {} (GGUF adapter: {} tensors, rank {}, scale {})",
            args.adapter.display(),
            args.output.display(),
            a.n_tensors,
            a.rank,
            a.scale
        );
        return Ok(0);
    }
    let r = merge::merge(&base.path, &adapter, args.to, &args.output)?;
    println!("{} + {} -> {} ({})", base.name, a.name, args.output.display(), assets::human_bytes(r.output_byte));
    println!(
        "merged {} tensors (rank {}, scale {}, modules {}); tensor types: {:?}",
        r.tensors_merged,
        a.rank,
        a.scale,
        a.target_modules.join(","),
        r.output_types
    );
    println!(
        "rounding of the merged tensors to their written types: {:.1}% of the adapter's change (RMS){}",
        100.0 * r.rounding_vs_delta,
        if r.rounding_vs_delta > 0.25 && args.to.is_none() {
            "; the base's low-bit types erase much of it: --to Q8_0 keeps it (and runs as --adapter does)"
        } else {
            ""
        }
    );
    if !r.fallback.is_empty() {
        println!("{} tensor(s) fell back to Q4_0 (rows not a multiple of the block size)", r.fallback.len());
    }
    Ok(0)
}
