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

/// The `Keys of PATH:` lines of one command's section of docs/json.md, as
/// (path, keys): the documented shape of `hybrid COMMAND --output json`.
pub fn documented_json(command: &str) -> Vec<(String, std::collections::BTreeSet<String>)> {
    let doc = std::fs::read_to_string(root().join("docs/json.md")).unwrap();
    let heading = format!("## `hybrid {command} --output json`");
    let section = doc.split(&heading).nth(1).unwrap_or_else(|| panic!("docs/json.md has no section {heading}"));
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("Keys of `"))
        .map(|l| {
            let (path, keys) = l.split_once("`:").unwrap();
            (path.to_string(), keys.split(',').map(|k| k.trim().trim_matches('`').to_string()).collect())
        })
        .collect()
}

/// Compares the keys `value` has at each documented path of `command` with
/// docs/json.md; returns how many paths it could compare (a path through
/// an empty array cannot be).
pub fn assert_documented_json(command: &str, value: &serde_json::Value) -> usize {
    let mut compared = 0;
    for (path, keys) in documented_json(command) {
        let mut at = Some(value);
        for seg in path.trim_start_matches('.').split('.').filter(|s| !s.is_empty()) {
            let (name, each) = seg.strip_suffix("[]").map_or((seg, false), |n| (n, true));
            if !name.is_empty() {
                at = at.and_then(|v| v.get(name));
            }
            if each {
                at = at.and_then(|v| v.as_array()).and_then(|a| a.first());
            }
        }
        let Some(at) = at else { continue };
        let have: std::collections::BTreeSet<String> =
            at.as_object().unwrap_or_else(|| panic!("{command} {path}: not an object")).keys().cloned().collect();
        assert_eq!(have, keys, "hybrid {command} --output json at {path}: the keys differ from docs/json.md\n{value:#}");
        compared += 1;
    }
    compared
}
