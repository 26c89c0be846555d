//! The `openweigh` binary, a table of contents: parse the flags, run the
//! subcommand (`commands/`, one file each), map its outcome to an exit code.
//! Exit codes: 0 success; 2 a user mistake (bad flag, malformed suite, missing
//! or corrupt file), with a one-line message that names the fix; 3 a run that
//! finished with failed items; 4 a failed regression gate (`compare
//! --fail-on-regression`); 1 anything else.

mod commands;

use clap::Parser;
use commands::cli::Cli;
use openweigh::error::{exit_code, UserError};

fn main() {
    // Die quietly on a closed pipe (`openweigh compare … | head`), as Unix tools do.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<UserError>() {
                Some(u) => eprintln!("error: {u}"),
                None => eprintln!("error: {e:#}"),
            }
            exit_code(&e)
        }
    };
    std::process::exit(code);
}
