//! `hybrid completions SHELL`: a completion script generated from the same
//! clap definitions the binary parses with, so it never drifts.

use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
#[command(
    about = "Print a shell completion script (bash, zsh, fish, powershell)",
    long_about = "\
Print a completion script for SHELL to standard output. Install it, for example:

  bash:        hybrid completions bash > ~/.local/share/bash-completion/completions/hybrid
  zsh:         hybrid completions zsh > \"${fpath[1]}/_hybrid\"
  fish:        hybrid completions fish > ~/.config/fish/completions/hybrid.fish
  powershell:  hybrid completions powershell >> $PROFILE"
)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `command` is the whole command line (`Cli::command()`), handed in by the
/// dispatcher.
pub fn run(args: &Args, mut command: clap::Command) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "hybrid", &mut script);
    // `hybrid completions bash | head` closes the pipe early: not an error.
    match std::io::Write::write_all(&mut std::io::stdout(), &script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Write { path: "(standard output)".into(), source: e }),
        _ => Ok(()),
    }
}
