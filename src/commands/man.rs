//! `hybrid man DIR`: manual pages generated from the same clap definitions
//! the binary parses with (as `completions` are), so they never drift: one
//! page for `hybrid` and one per subcommand (`hybrid-plan.1`, ...).

use std::path::PathBuf;

use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
#[command(
    about = "Write manual pages (hybrid.1 and one per subcommand) into a folder",
    long_about = "\
Write the manual pages into DIR (created if missing): hybrid.1 and hybrid-<command>.1 for every \
subcommand, from the same definitions as --help. Install them, for example:

  hybrid man ~/.local/share/man/man1 && man hybrid-plan"
)]
pub struct Args {
    /// The folder to write the pages into.
    pub dir: PathBuf,
}

/// `command` is the whole command line (`Cli::command()`), handed in by the
/// dispatcher. Returns the pages written.
pub fn run(args: &Args, command: clap::Command) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(&args.dir).map_err(|source| Error::Write { path: args.dir.clone(), source })?;
    let command = command.name("hybrid");
    let mut pages = vec![("hybrid".to_string(), command.clone())];
    // A subcommand's page is titled with its full name, as git's are.
    pages.extend(command.get_subcommands().filter(|c| c.get_name() != "help").map(|c| {
        let name = format!("hybrid-{}", c.get_name());
        (name.clone(), c.clone().display_name(name.clone()).bin_name(name))
    }));
    let mut written = Vec::new();
    for (name, page) in pages {
        let mut roff = Vec::new();
        clap_mangen::Man::new(page).render(&mut roff).map_err(|source| Error::Write { path: args.dir.clone(), source })?;
        let path = args.dir.join(format!("{name}.1"));
        std::fs::write(&path, roff).map_err(|source| Error::Write { path: path.clone(), source })?;
        written.push(path);
    }
    println!("{} manual page(s) in {}", written.len(), args.dir.display());
    Ok(written)
}
