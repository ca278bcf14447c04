//! `hybrid versions FILE`: the resolved compatibility matrix for one file.

use std::path::PathBuf;

use super::shared::files::load_spec;
use super::shared::terminal::Ui;
use crate::error::Result;
use crate::versions;

#[derive(Debug, clap::Args)]
#[command(
    about = "Show what each node of the file installs, at which version, from where, checked how",
    long_about = "\
Resolve the file against hybrid's compatibility matrix (src/versions/) and print, for the control \
plane and each kind of worker, every file its bootstrap downloads (version, URL, and how the \
download is verified before use: a SHA-256 recorded in hybrid, the release's checksum file, or \
GitHub's digest of the release asset) and the images it pulls.

Supported Kubernetes minors: 1.35, 1.36 (the default) and 1.37. An invalid file is reported as \
by `hybrid validate`.",
    after_help = "Exits 0 for a valid file, 1 otherwise."
)]
pub struct Args {
    /// The desired-state file, e.g. clusters/dev.toml.
    pub file: PathBuf,
}

pub fn run(ui: &Ui, args: &Args) -> Result<()> {
    let spec = load_spec(ui, &args.file)?;
    print!("{}", versions::report::to_text(&spec));
    Ok(())
}
