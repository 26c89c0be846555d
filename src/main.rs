//! The `openweigh` binary, a table of contents: parse the flags, run the
//! subcommand (`commands/`, one file each), map its outcome to an exit code.
//! Exit codes: 0 success; 2 a user mistake (bad flag, malformed suite, missing
//! or corrupt file), with a one-line message that names the fix; 3 a run that
//! finished with failed items; 1 anything else.

mod commands;

use clap::Parser;
use commands::cli::Cli;
use openweigh::error::{UserError, EXIT_USER};

fn main() {
    // Die quietly on a closed pipe (`openweigh compare … | head`), as Unix tools do.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<UserError>() {
            Some(u) => {
                eprintln!("error: {u}");
                EXIT_USER
            }
            None => {
                eprintln!("error: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}
