//! The layout is the architecture (README "Layout"): the pure core stays
//! pure, the stages that drive the adapter traits do no I/O of their own,
//! no module imports a module that imports it back, and the README's layout
//! section names exactly the folders and files `src/` holds.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::root;

/// Pure: values in, values out.
const PURE: &[&str] = &[
    "src/config",
    "src/model",
    "src/bootstrap",
    "src/infra/desired.rs",
    "src/infra/inventory.rs",
    "src/infra/plan.rs",
    "src/infra/changes.rs",
    "src/infra/network.rs",
    "src/infra/images.rs",
    "src/infra/show.rs",
    "src/infra/saved.rs",
    "src/cluster/mod.rs",
    "src/cluster/objects.rs",
    "src/cluster/kubeconfig.rs",
    "src/cluster/token.rs",
    "src/day2",
    "src/progress.rs",
    "src/infra/mod.rs",
    "src/versions",
];
/// Orchestration over the `Cloud` and `KubeApi` traits: no I/O of their
/// own, but they wait (`tokio::time`), so they run against fakes and AWS alike.
const DRIVES_TRAITS: &[&str] =
    &["src/infra/execute.rs", "src/infra/bake.rs", "src/infra/lock.rs", "src/cluster/converge.rs", "src/retry.rs"];
/// Where I/O is allowed.
const IO: &[&str] = &["src/adapters", "src/commands", "src/main.rs", "src/lib.rs", "src/error.rs"];

const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::process",
    "std::net::Tcp",
    "TcpStream",
    "UdpSocket",
    "tokio",
    "aws_sdk",
    "aws_config",
    "aws_smithy",
    "kube::",
    "reqwest",
    "std::env",
    "println!",
    "eprintln!",
    "SystemTime::now",
    "OffsetDateTime::now",
    "rand::rng",
    "indicatif",
];

fn rust_files(p: &str) -> Vec<PathBuf> {
    let path = root().join(p);
    if path.is_dir() {
        let mut out = Vec::new();
        let mut stack = vec![path];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "rs") {
                    out.push(p);
                }
            }
        }
        out
    } else {
        vec![path]
    }
}

/// The code of a file without its comments and unit tests (tests may do
/// what they like).
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    code.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// `word` occurs as a path of its own, not as the tail of another
/// (`adapters::kube::` is not `kube::`).
fn uses(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| !text[..i].ends_with(|c: char| c == ':' || c == '_' || c.is_alphanumeric()))
}

fn offences(files: &[PathBuf], forbidden: &[&str], allowed: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let mut text = code(f);
        for ok in allowed {
            text = text.replace(ok, "");
        }
        for word in forbidden {
            if uses(&text, word) {
                out.push(format!("{} uses {word}", f.strip_prefix(root()).unwrap_or(f).display()));
            }
        }
    }
    out
}

#[test]
fn pure_modules_do_no_io() {
    let files: Vec<PathBuf> = PURE.iter().flat_map(|p| rust_files(p)).collect();
    assert!(files.len() >= 25, "the pure module list no longer matches the tree: {files:?}");
    // kube's kubeconfig types are plain data (serde structs), not its
    // client; kube::core (kube-core) is the API's traits and types, no client.
    let found = offences(&files, FORBIDDEN, &["kube::config::", "kube::core::"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn trait_driven_stages_do_io_only_through_the_traits() {
    let files: Vec<PathBuf> = DRIVES_TRAITS.iter().flat_map(|p| rust_files(p)).collect();
    let found =
        offences(&files, FORBIDDEN, &["tokio::time::sleep", "tokio::time::timeout", "tokio::select!", "tokio::try_join!", "kube::core::"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_purity_check_can_fail() {
    let dir = crate::util::scratch("arch");
    let sneaky = dir.join("sneaky.rs");
    fs::write(&sneaky, "fn f() { let _ = std::fs::read(\"x\"); }\n#[cfg(test)]\nmod t { fn g() { println!(); } }\n").unwrap();
    let found = offences(&[sneaky], FORBIDDEN, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("uses std::fs"), "{found:?}");
    fs::remove_dir_all(dir).ok();
}

/// Every wait goes through the one retry policy (src/retry.rs): nothing
/// else sleeps. The lock's renewal is a heartbeat on a fixed period, not a
/// retry, and says so where it sleeps.
#[test]
fn every_wait_goes_through_the_one_retry_policy() {
    let sleeps = ["tokio::time::sleep", "thread::sleep", "time::sleep("];
    let found: Vec<String> = rust_files("src")
        .iter()
        .filter(|f| !f.ends_with("src/retry.rs"))
        .filter(|f| sleeps.iter().any(|s| code(f).contains(s)))
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert_eq!(found, ["src/infra/lock.rs"], "hand-rolled waits outside src/retry.rs");
    let lock = code(&root().join("src/infra/lock.rs"));
    assert_eq!(lock.matches("tokio::time::sleep").count(), 1, "the lock sleeps only in its heartbeat");
}

#[test]
fn every_module_is_classified() {
    let classified: BTreeSet<PathBuf> = PURE.iter().chain(DRIVES_TRAITS).chain(IO).flat_map(|p| rust_files(p)).collect();
    let all: BTreeSet<PathBuf> = rust_files("src").into_iter().collect();
    let missing: Vec<_> = all.difference(&classified).map(|p| p.strip_prefix(root()).unwrap().display().to_string()).collect();
    assert!(missing.is_empty(), "add these to PURE, DRIVES_TRAITS or IO in tests/it/architecture.rs: {missing:?}");
}

fn module_graph(src: &Path) -> std::process::Output {
    Command::new("python3")
        .arg(root().join("scripts/module-graph.py"))
        .env("HYBRID_SRC", src)
        .output()
        .expect("python3 runs scripts/module-graph.py")
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let out = module_graph(&root().join("src"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" 0 cycle(s)"), "{stdout}");
    // The graph is real: the check sees the imports the code has.
    let n: usize = stdout.split(" modules, ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).unwrap();
    assert!(n > 150, "only {n} imports found: the parser no longer reads the code\n{stdout}");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let dir = crate::util::scratch("cycle");
    fs::create_dir_all(dir.join("a")).unwrap();
    fs::write(dir.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    fs::write(dir.join("a/mod.rs"), "pub mod inner;\nuse crate::b::B;\n").unwrap();
    fs::write(dir.join("a/inner.rs"), "pub struct I;\n").unwrap();
    fs::write(dir.join("b.rs"), "use crate::a::inner::I;\npub struct B;\nfn f() { crate::a::g(); }\n").unwrap();
    let out = module_graph(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a -> b -> a was not reported");
    assert!(stderr.contains("a -> b") && stderr.contains("b -> a"), "{stderr}");
    fs::remove_dir_all(dir).ok();
}

/// The README's layout block: every path it names exists, and every folder
/// and top-level file of `src/` is named.
#[test]
fn readme_layout_matches_the_tree() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme.split("## Layout").nth(1).and_then(|s| s.split("```").nth(1)).expect("README has a ## Layout code block");
    let named: BTreeSet<String> = block
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.contains('/') || w.ends_with(".rs"))
        .map(|w| w.trim_end_matches('/').to_string())
        .collect();
    for path in &named {
        assert!(root().join(path).exists(), "README layout names {path}, which does not exist");
    }
    for e in fs::read_dir(root().join("src")).unwrap() {
        let name = format!("src/{}", e.unwrap().file_name().to_string_lossy());
        assert!(named.contains(&name), "README layout does not name {name}");
    }
    // Inside each stage folder, every file (and folder) is named too.
    for dir in fs::read_dir(root().join("src")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()) {
        if dir.ends_with("commands") {
            continue;
        }
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let mut name = e.file_name().to_string_lossy().to_string();
            if e.path().is_dir() {
                name.push('/');
            }
            if name != "mod.rs" {
                assert!(block.contains(&name), "README layout does not mention {name} in {}", dir.display());
            }
        }
    }
    for e in fs::read_dir(root().join("src/commands")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".rs") && name != "mod.rs" {
            let verb = name.trim_end_matches(".rs");
            assert!(block.contains(verb), "README layout does not mention the {verb} command");
        }
    }
}

/// What the README's layout calls pure is what the purity check checks: a
/// line whose description starts with "pure" means its whole folder, and in
/// a line like "a.rs + b.rs → c.rs, all pure; d.rs …" the files before
/// "pure" are meant. Every file named there must exist.
#[test]
fn the_purity_check_covers_what_the_readme_calls_pure() {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let block = readme.split("## Layout").nth(1).and_then(|s| s.split("```").nth(1)).unwrap();
    let pure: BTreeSet<PathBuf> = PURE.iter().flat_map(|p| rust_files(p)).collect();
    let mut claimed = Vec::new();
    for line in block.lines() {
        let Some((path, desc)) = line.split_once(char::is_whitespace) else { continue };
        let desc = desc.trim();
        let dir = path.trim_end_matches('/');
        if desc.starts_with("pure") {
            claimed.extend(rust_files(dir));
            continue;
        }
        for segment in desc.split(';').filter(|seg| seg.contains("pure")) {
            let before = segment.split("pure").next().unwrap_or("");
            for word in before.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')).filter(|w| w.ends_with(".rs")) {
                let file = root().join(dir).join(word);
                assert!(file.exists(), "README layout names {dir}/{word}, which does not exist");
                claimed.push(file);
            }
        }
    }
    assert!(claimed.len() > 20, "the README claims little: {claimed:?}");
    for named in ["src/infra/desired.rs", "src/infra/network.rs", "src/cluster/objects.rs", "src/progress.rs"] {
        assert!(claimed.contains(&root().join(named)), "the README's layout no longer calls {named} pure");
    }
    let unchecked: Vec<&PathBuf> = claimed.iter().filter(|f| !pure.contains(*f)).collect();
    assert!(unchecked.is_empty(), "README calls these pure but PURE does not check them: {unchecked:?}");
}
