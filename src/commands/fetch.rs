//! `openweigh fetch [NAME]`: a catalog model or dataset into the cache (no
//! name: the default model and every catalog dataset).

use super::cli::FetchArgs;
use anyhow::Result;
use openweigh::error::UserError;
use openweigh::{assets, catalog};

pub fn fetch(args: FetchArgs) -> Result<i32> {
    let names: Vec<&str> = match &args.name {
        Some(n) => vec![n.as_str()],
        None => std::iter::once(catalog::DEFAULT_MODEL).chain(catalog::DATASETS.iter().map(|d| d.asset.name)).collect(),
    };
    for name in names {
        let asset = catalog::asset(name).ok_or_else(|| UserError::UnknownModel(name.into()))?;
        let path = match catalog::model(name) {
            Some(m) => assets::fetch_model(m)?,
            None => assets::fetch(asset)?,
        };
        println!("{name}\t{}", path.display());
    }
    Ok(0)
}
