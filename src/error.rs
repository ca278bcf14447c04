//! The errors a command ends with and the one place that maps them to exit
//! codes (cargo's `CliError`). Exit codes have one meaning each:
//! 0 success, 1 failure (including an invalid file), 2 "changes present"
//! (only for `plan --detailed-exitcode`), 64 command-line usage error.

use std::path::PathBuf;

pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error("secrets in {}: {source}", dir.display())]
    Secrets { dir: PathBuf, source: crate::pki::PkiError },
    /// The diagnostics were already printed; only the summary remains.
    #[error("{file}: {errors} error(s), {warnings} warning(s)")]
    Invalid { file: String, errors: usize, warnings: usize },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        EXIT_FAILURE
    }
}

pub type Result<T> = std::result::Result<T, Error>;
