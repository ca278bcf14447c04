use std::fs;

use crate::util::{fixture, hybrid, root, text};

#[test]
fn shipped_clusters_are_valid() {
    for name in ["clusters/dev.toml", "clusters/qa.toml"] {
        let out = hybrid(&["validate", name]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.starts_with(&format!("{name}: valid: cluster ")), "{stdout}");
        assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    }
}

/// One fixture per rule. Each file says, in its header, the key the error
/// must name (`# expect: KEY`), and marks the offending line with `# <- here`
/// (or names it: `# expect: KEY line N`). The test checks that `validate`
/// fails and prints a headline `FILE:LINE:COL: KEY: …` for exactly that.
#[test]
fn every_invalid_fixture_is_rejected_at_its_key_and_line() {
    let dir = fixture("invalid");
    let mut files: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 40, "the fixture table shrank: {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let (key, line) = expectation(path);
        let rel = path.strip_prefix(root()).unwrap().to_str().unwrap();
        let out = hybrid(&["validate", rel]);
        let stderr = text(&out.stderr);
        let headline = format!("{rel}:{line}:");
        let found = stderr.lines().any(|l| l.contains(&headline) && l.contains(&format!(": {key}: ")) && l.contains('×'));
        // `# message: …` lines: fragments the error's text or help must hold.
        let body = fs::read_to_string(path).unwrap();
        let missing: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("# message: ")).filter(|m| !stderr.contains(m)).collect();
        if !missing.is_empty() {
            failures.push(format!("{rel}: the message lacks {missing:?}:\n{stderr}"));
        }
        if out.status.code() != Some(1) || !found || !out.stdout.is_empty() {
            failures.push(format!("{rel}: want exit 1 and an error `{headline}…: {key}:`, got exit {:?}:\n{stderr}", out.status.code()));
        }
        assert!(!stderr.contains("panicked"), "{rel}: {stderr}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn warnings_do_not_fail_validation() {
    let dir = fixture("warn");
    let mut count = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let (key, line) = expectation(&path);
        let rel = path.strip_prefix(root()).unwrap().to_str().unwrap().to_string();
        let out = hybrid(&["validate", &rel]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{rel}: {stderr}");
        let headline = format!("{rel}:{line}:");
        assert!(
            stderr.lines().any(|l| l.contains('⚠') && l.contains(&headline) && l.contains(&format!(": {key}: "))),
            "{rel}: want a warning `{headline}…: {key}:`:\n{stderr}"
        );
        count += 1;
    }
    assert!(count >= 4);
}

fn expectation(path: &std::path::Path) -> (String, usize) {
    let body = fs::read_to_string(path).unwrap();
    let expect =
        body.lines().find_map(|l| l.strip_prefix("# expect: ")).unwrap_or_else(|| panic!("{}: no `# expect:` line", path.display()));
    if let Some((key, line)) = expect.split_once(" line ") {
        return (key.to_string(), line.parse().unwrap());
    }
    let line =
        body.lines().position(|l| l.ends_with("# <- here")).unwrap_or_else(|| panic!("{}: no `# <- here` marker", path.display())) + 1;
    (expect.to_string(), line)
}

/// `--output json`: the same problems as records (severity, key, line,
/// column, message, help), for every invalid fixture, and a valid file's
/// summary; the exit code is the text mode's.
#[test]
fn problems_are_structured_records_in_json() {
    let dir = fixture("invalid");
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let (key, line) = expectation(&path);
        let rel = path.strip_prefix(root()).unwrap().to_str().unwrap().to_string();
        let out = hybrid(&["validate", &rel, "--output", "json"]);
        assert_eq!(out.status.code(), Some(1), "{rel}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{rel}: {e}: {}", text(&out.stdout)));
        assert_eq!((report["file"].as_str(), report["valid"].as_bool()), (Some(rel.as_str()), Some(false)));
        let found = report["problems"].as_array().unwrap().iter().any(|p| {
            p["severity"] == "error"
                && p["key"] == key.as_str()
                && p["line"] == line
                && p["message"].as_str().is_some_and(|m| !m.is_empty())
        });
        assert!(found, "{rel}: no error record for {key} at line {line}: {report:#}");
    }
    let out = hybrid(&["validate", "clusters/dev.toml", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert!(report["summary"].as_str().unwrap().starts_with("cluster dev in "), "{report:#}");
}

#[test]
fn reports_every_problem_at_once_with_snippet_and_help() {
    let out = hybrid(&["validate", "tests/fixtures/many-errors.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    for needle in [
        "tests/fixtures/many-errors.toml:3:8: cluster.name:",
        "tests/fixtures/many-errors.toml:8:7: cni.vni:",
        "tests/fixtures/many-errors.toml:9:8: cni.port:",
        "tests/fixtures/many-errors.toml:16:1: pool[0].instnce_type: unknown key",
        "help: did you mean `instance_type`?",
        "help: set vni = 4096",
        "8 │ vni = 100",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    assert!(stderr.trim_end().ends_with("5 error(s), 1 warning(s)"), "{stderr}");
}

#[test]
fn unreadable_file_and_unknown_command_fail_clearly() {
    let out = hybrid(&["validate", "clusters/nope.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read clusters/nope.toml"));

    let out = hybrid(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("unrecognized subcommand 'frobnicate'"));

    let out = hybrid(&["validate"]);
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn help_explains_every_subcommand() {
    let out = hybrid(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    // Every command file is a subcommand, so a new one cannot go unexplained.
    let subs: Vec<String> = fs::read_dir(root().join("src/commands"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".rs") && n != "mod.rs")
        .map(|n| n.trim_end_matches(".rs").to_string())
        .collect();
    assert!(subs.len() >= 15, "{subs:?}");
    for sub in &subs {
        assert!(help.contains(sub.as_str()), "{sub} is not in --help:\n{help}");
        let out = hybrid(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{sub}");
        assert!(text(&out.stdout).len() > 200, "{sub} --help is too thin");
    }
    assert!(text(&hybrid(&["validate", "--help"]).stdout).contains("VNI below 4096"));
}

/// `hybrid man DIR`: a page for hybrid and for every subcommand `--help`
/// lists, each one groff formats without a warning (the real formatter
/// `man` uses), carrying its flags.
#[test]
fn man_pages_cover_every_subcommand_and_format_cleanly() {
    let dir = crate::util::scratch("man");
    let out = hybrid(&["man", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let help = text(&hybrid(&["--help"]).stdout);
    let subcommands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line is indented by two; its wrapped description by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .collect();
    assert!(subcommands.len() >= 18, "{subcommands:?}");
    for page in std::iter::once("hybrid".to_string()).chain(subcommands.iter().map(|s| format!("hybrid-{s}"))) {
        let path = dir.join(format!("{page}.1"));
        let roff = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(roff.contains(&format!(".TH {page} 1")), "{page}: no title");
        let formatted = std::process::Command::new("groff")
            .args(["-man", "-Tutf8", "-ww"])
            .arg(&path)
            .output()
            .expect("groff runs (scripts/setup.sh installs groff-base)");
        assert!(formatted.status.success() && formatted.stderr.is_empty(), "{page}: {}", text(&formatted.stderr));
    }
    assert!(fs::read_to_string(dir.join("hybrid-plan.1")).unwrap().contains("detailed\\-exitcode"), "flags are on the page");
    assert!(fs::read_to_string(dir.join("hybrid.1")).unwrap().contains("parallelism"), "global flags are on the main page");
}

/// The bash completion script is valid bash and completes every subcommand.
#[test]
fn completions_are_a_script_the_shell_reads() {
    let out = hybrid(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    for sub in ["apply", "bake", "images", "kubeconfig"] {
        assert!(script.contains(sub), "{sub} is not completed");
    }
    // Sourced for real: the completion function exists and offers the subcommands.
    let probe = format!("{script}\nCOMP_WORDS=(hybrid ba); COMP_CWORD=1; _hybrid hybrid ba hybrid; printf '%s\\n' \"${{COMPREPLY[@]}}\"\n");
    let run = std::process::Command::new("bash").arg("-c").arg(probe).output().unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(text(&run.stdout).split_whitespace().collect::<Vec<_>>(), ["bake"], "{}", text(&run.stderr));
    assert_eq!(hybrid(&["completions", "tcsh"]).status.code(), Some(64), "an unknown shell is a usage error");
}

#[test]
fn schema_is_json_and_covers_every_section() {
    let out = hybrid(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("schema is JSON");
    let props = &schema["properties"];
    assert_eq!(props["cni"]["properties"]["vni"]["default"], 4096);
    assert_eq!(props["pool"]["type"], "array");
    assert_eq!(props["pool"]["items"]["additionalProperties"], false);
    assert!(props["pool"]["items"]["properties"]["os"]["enum"].as_array().unwrap().iter().any(|v| v == "windows-2022"));
    assert_eq!(schema["required"], serde_json::json!(["cluster", "control_plane"]));
}

/// The key reference in clusters/README.md is generated from the key table;
/// this fails when someone adds a key and forgets to regenerate it.
#[test]
fn clusters_readme_holds_the_current_key_reference() {
    let out = hybrid(&["schema", "--format", "markdown"]);
    let reference = text(&out.stdout);
    let readme = fs::read_to_string(root().join("clusters/README.md")).unwrap();
    assert!(
        readme.contains(&reference),
        "clusters/README.md is out of date: run `cargo run -q -- schema --format markdown` and paste it under the Reference heading"
    );
}

/// `hybrid versions` prints, per node kind, exactly the downloads the
/// matrix resolves for the file, each with how it is checked.
#[test]
fn versions_lists_what_each_node_installs() {
    let out = hybrid(&["versions", "clusters/dev.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let spec = crate::render::spec("clusters/dev.toml");
    assert!(stdout.starts_with(&format!("Cluster dev: Kubernetes {} ", spec.kubernetes_version)), "{stdout}");
    // Against the hand-written list (tests/fixtures/expected), not the table that prints it.
    let expected: serde_json::Value = serde_json::from_str(&fs::read_to_string(fixture("expected/dev-downloads.json")).unwrap()).unwrap();
    for (kind, urls) in expected["downloads"].as_object().unwrap() {
        for url in urls.as_array().unwrap() {
            assert!(stdout.contains(url.as_str().unwrap()), "{kind}: {url} missing:\n{stdout}");
        }
    }
    assert!(stdout.contains("Windows workers (windows-2022, build 10.0.20348):"), "{stdout}");
    assert!(
        stdout.contains("checked by SHA-256 recorded in hybrid") && stdout.contains("checked by SHA-256 from the release's checksum file")
    );
    let out = hybrid(&["versions", "tests/fixtures/invalid/matrix-kube-end-of-life.toml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("end of life"));

    // The same as JSON: each node kind's downloads exactly the hand-written list, each with its check.
    let out = hybrid(&["versions", "clusters/dev.toml", "--output", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["kubernetes"], expected["versions"]["kubernetes"]);
    for node in report["nodes"].as_array().unwrap() {
        let kind = node["kind"].as_str().unwrap();
        let urls: std::collections::BTreeSet<&str> =
            node["downloads"].as_array().unwrap().iter().map(|d| d["url"].as_str().unwrap()).collect();
        let want: std::collections::BTreeSet<&str> =
            expected["downloads"][kind].as_array().unwrap_or_else(|| panic!("{kind}")).iter().map(|u| u.as_str().unwrap()).collect();
        assert_eq!(urls, want, "{kind}");
        assert!(node["downloads"].as_array().unwrap().iter().all(|d| d["check"].as_str().is_some_and(|c| c.contains(':'))), "{kind}");
        assert!(node["images"].as_array().is_some_and(|i| !i.is_empty()), "{kind}");
    }
}

/// Input that is not a cluster file at all gets a clear error with a
/// position, and a bounded read: `/dev/zero` would otherwise fill memory.
#[test]
fn non_text_and_endless_input_are_refused_with_a_position() {
    let dir = crate::util::scratch("bytes");
    let latin1 = dir.join("latin1.toml");
    fs::write(&latin1, b"[cluster]\nname = \"caf\xe9\"\n").unwrap();
    let out = hybrid(&["validate", latin1.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("latin1.toml:2:12: not UTF-8 text (byte offset 21)"), "{stderr}");
    let start = std::time::Instant::now();
    let out = hybrid(&["validate", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/dev/zero: larger than 1024 KiB"), "{}", text(&out.stderr));
    assert!(start.elapsed() < std::time::Duration::from_secs(20), "the read is bounded");
    fs::remove_dir_all(&dir).ok();
}
