//! `openweigh load`: a concurrency sweep against a served model. Every
//! level's requests are appended to `requests.jsonl` and every file of the
//! load report rewritten as the level ends, so a failure later loses nothing.

use super::cli::LoadArgs;
use anyhow::Result;
use openweigh::backend::openai::endpoint;
use openweigh::error::UserError;
use openweigh::load::{self, metrics::Slo, LoadOptions};
use openweigh::results::create_output_dir;
use std::io::Write;

pub fn load(args: LoadArgs) -> Result<i32> {
    let opts = LoadOptions {
        concurrency: args.concurrency.clone(),
        requests: args.requests,
        duration_s: args.duration,
        input_len: args.input_len,
        output_len: args.output_len,
        seed: args.seed,
        slo: Slo { ttft_s: args.slo_ttft, tpot_s: args.slo_tpot, e2e_s: args.slo_e2e },
        timeout_s: args.request_timeout,
    };
    opts.validate()?;
    let Some(ep) = endpoint::resolve(&args.model, args.models.as_deref())? else {
        return Err(UserError::BadFlag {
            flag: "--model",
            message: format!(
                "'{}' is not a served model: load tests need openai:BASE_URL#MODEL_ID or an entry of --models FILE.toml",
                args.model
            ),
        }
        .into());
    };
    let (_, dir) = create_output_dir(&args.out, &format!("load-{{time}}-{}", ep.name))?;
    let mut requests = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("requests.jsonl"))?;
    let result = load::run_load(&ep, &opts, |so_far, records| {
        let concurrency = so_far.levels.last().map_or(0, |l| l.concurrency);
        for r in records {
            let mut line = serde_json::to_value(r)?;
            line["concurrency"] = concurrency.into();
            writeln!(requests, "{line}")?;
        }
        requests.flush()?;
        openweigh::export::load::write(so_far, &dir)?;
        Ok(())
    })?;
    println!("\n{}", openweigh::export::load::markdown_table(&result));
    println!("load report: {}", dir.join("index.html").display());
    let errors: usize = result.levels.iter().map(|l| l.errors).sum();
    if errors > 0 {
        eprintln!("{errors} request(s) failed; see \"error\" in requests.jsonl");
        return Ok(openweigh::error::EXIT_ITEM_FAILURES);
    }
    Ok(0)
}
