//! `openweigh prices import FILE` and `openweigh prices list`: the per-token
//! price table.

use super::cli::PricesCommand;
use anyhow::Result;
use openweigh::analysis::prices::{self, PriceEntry};

pub fn prices(cmd: PricesCommand) -> Result<i32> {
    match cmd {
        PricesCommand::Import { file, out } => {
            let entries = prices::read_price_file(&file)?;
            let out = out.unwrap_or_else(prices::user_table_path);
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            let provenance = format!(
                "USD per 1M tokens, open-weight chat models at hosting providers; converted by openweigh {} on {} from {name} (litellm's price file is MIT-licensed, (c) Berri AI)",
                env!("CARGO_PKG_VERSION"),
                chrono::Utc::now().format("%Y-%m-%d")
            );
            prices::write_csv(&out, &entries, &provenance)?;
            println!("{} prices -> {}", entries.len(), out.display());
        }
        PricesCommand::List { model, prices: file } => {
            let table = prices::load_table(file.as_deref())?;
            let needle = model.map(|m| m.to_lowercase());
            let mut rows: Vec<&PriceEntry> = table
                .entries
                .iter()
                .filter(|e| needle.as_ref().is_none_or(|n| e.model.to_lowercase().contains(n.as_str())))
                .collect();
            rows.sort_by(|a, b| a.blended_usd_per_mtok().total_cmp(&b.blended_usd_per_mtok()));
            println!("{:<14} {:<56} {:>9} {:>9} {:>9}", "provider", "model", "in $/1M", "out $/1M", "blended");
            for e in &rows {
                println!(
                    "{:<14} {:<56} {:>9.3} {:>9.3} {:>9.3}",
                    e.provider,
                    e.model,
                    e.input_usd_per_mtok,
                    e.output_usd_per_mtok,
                    e.blended_usd_per_mtok()
                );
            }
            println!("{} of {} entries; source: {}", rows.len(), table.entries.len(), table.source);
        }
    }
    Ok(0)
}
