//! Export: analysis results in, file bytes out. Every file openweigh writes
//! after a run is one exporter behind the [`Exporter`] trait (hyperfine's
//! shape): `report` (charts as SVG and PNG, `index.html`, `summary.md`,
//! `models.csv`) and `compare` (`compare.md`, `compare.html`,
//! `compare.json`). `markup` holds the escaping every text format shares.
//! Exporters read only analysis types; nothing here measures or prices.

pub mod compare;
pub mod load;
pub mod markup;
pub mod report;

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// One output file made from `T`.
pub trait Exporter<T: ?Sized> {
    /// The file's name inside the output folder.
    fn file_name(&self) -> String;
    /// The file's bytes.
    fn serialize(&self, data: &T) -> Result<Vec<u8>>;
}

/// Writes every exporter's file into `dir` (created if needed), in order;
/// returns the paths written.
pub fn write_all<T: ?Sized>(dir: &Path, exporters: &[Box<dyn Exporter<T> + '_>], data: &T) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    exporters
        .iter()
        .map(|e| {
            let path = dir.join(e.file_name());
            let bytes = e.serialize(data).with_context(|| format!("making {}", path.display()))?;
            crate::results::write_atomic(&path, &bytes)?;
            Ok(path)
        })
        .collect()
}
