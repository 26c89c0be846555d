//! The `openweigh` binary, a table of contents: parse the flags, run the
//! subcommand (`commands/`, one file each), map its outcome to an exit code.
//! Exit codes: 0 success; 2 a user mistake (bad flag, malformed suite, missing
//! or corrupt file), with a one-line message that names the fix; 3 a run that
//! finished with failed items; 4 a failed regression gate (`compare
//! --fail-on-regression`); 1 anything else.

mod commands;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use commands::cli::Cli;
use openweigh::error::{error_line, exit_code};

fn main() {
    // Die quietly on a closed pipe (`openweigh compare … | head`), as Unix tools do.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Keep freed activation buffers for reuse instead of returning each one to
    // the kernel: a prefill chunk allocates tensors of several MB per
    // operation, and glibc's default (mmap above a threshold that stops
    // growing at 32 MB) paid a fresh page fault per 4 KiB each time. One
    // heap for every thread: passes running side by side on rayon's threads
    // (`lanes`) would otherwise each keep a heap of their own, whose freed
    // buffers nothing else reuses (`quick`: peak RSS 350 MiB, not 257).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let code = match commands::dispatch(cli, &explicit_flags(&matches)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            exit_code(&e)
        }
    };
    std::process::exit(code);
}

/// The ids of the subcommand's flags typed on the command line (not defaults).
fn explicit_flags(matches: &ArgMatches) -> Vec<String> {
    let Some((_, m)) = matches.subcommand() else { return vec![] };
    m.ids()
        .filter(|id| m.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}
