//! `compare.json`: the whole [`Comparison`] as pretty JSON, for tools.

use crate::analysis::compare::Comparison;
use crate::export::Exporter;
use anyhow::Result;

/// `compare.json`.
pub struct Json;

impl Exporter<Comparison> for Json {
    fn file_name(&self) -> String {
        "compare.json".into()
    }

    fn serialize(&self, c: &Comparison) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec_pretty(c)?)
    }
}
