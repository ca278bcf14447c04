//! Helpers shared by the integration tests: run the real binary, find fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// Runs `hybrid` with `args` from the project root, without colour.
pub fn hybrid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hybrid")).args(args).current_dir(root()).env("NO_COLOR", "1").output().expect("the hybrid binary runs")
}

pub fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}
