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

/// A fresh, empty scratch folder no other test (of this run or another)
/// can have: the process id and a per-process counter make its name, and
/// `tag` only says whose it is. Tests run in parallel, so a folder named
/// after a test's cluster alone is shared as soon as two tests pick the
/// same name.
pub fn scratch(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hybrid-it-{}-{n}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch folder can be made");
    dir
}

/// Polls `ready` until it holds, failing the test with `what` once `limit`
/// has passed: a wait on a condition, never on a fixed time.
pub fn wait_for(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
