//! Results are the contract between a run and everything after it: `schema`
//! holds the serde types of the files a run writes, `io` writes them as the
//! run goes (so a crash loses nothing measured) and reads them back. Reports,
//! leaderboards and comparisons read runs only through here.

pub mod io;
pub mod schema;

pub use io::*;
pub use schema::*;
