//! The `hybrid` binary: parse flags, run the command, map the outcome to an
//! exit code. Everything else lives in the library.

use clap::Parser;

use hybrid::commands::Cli;
use hybrid::error::{EXIT_USAGE, Error};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; clap prints them itself.
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    match hybrid::commands::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            match &e {
                Error::Invalid { .. } => eprintln!("{e}"),
                _ => eprintln!("error: {e}"),
            }
            std::process::exit(e.exit_code());
        }
    }
}
