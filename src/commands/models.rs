//! `openweigh models`: the catalog's models and whether each is fetched.

use anyhow::Result;
use openweigh::{assets, catalog};

pub fn models() -> Result<i32> {
    println!(
        "{:<28} {:<7} {:<6} {:<7} {:>9} {:<19} {:<8} fetched",
        "name", "family", "params", "quant", "size", "licence", "kind"
    );
    for m in catalog::MODELS {
        let fetched = assets::cached_path(&m.asset).exists();
        println!(
            "{:<28} {:<7} {:<6} {:<7} {:>9} {:<19} {:<8} {}",
            m.asset.name,
            m.family,
            m.parameters,
            m.quantization,
            assets::human_bytes(m.asset.size_byte),
            m.asset.licence,
            if m.instruct { "instruct" } else { "base" },
            if fetched { "yes" } else { "no" }
        );
    }
    println!("\ndatasets: `openweigh suites --datasets`");
    Ok(0)
}
