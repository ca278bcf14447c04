//! The boot timeline `hybrid status` shows, read from console outputs in
//! tests/fixtures/timeline/ (Windows and Linux, stock and baked, truncated
//! and interleaved; see its README for what each holds), and the markers the
//! real bash bootstrap writes read back by the same parser.
//!
//! Not tested here: a console captured from a real instance (none boots
//! here; scripts/e2e-aws.sh records the real ones), and the PowerShell
//! `Timeline` function run for real (no PowerShell on this machine: its
//! time format is checked against the template's text instead).

use std::collections::BTreeMap;
use std::fs;

use hybrid::day2::status::{Row, timeline_text};
use hybrid::day2::timeline::{Summary, parse, summarize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::util::root;

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

const LAUNCH: &str = "2026-12-01T10:00:00Z";

fn fixture(name: &str) -> Summary {
    summarize(&parse(&fs::read_to_string(root().join("tests/fixtures/timeline").join(name)).unwrap()))
}

/// Seconds after the assumed launch, or None.
fn after(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(|t| (t - at(LAUNCH)).whole_seconds())
}

/// One word per stage: `name:outcome:seconds:attempts`, `?` for unknowns.
fn stages(s: &Summary) -> Vec<String> {
    s.stages
        .iter()
        .map(|st| {
            let outcome = st.outcome.map_or("?".into(), |o| format!("{o:?}").to_lowercase());
            let secs = st.seconds().map_or("?".into(), |x| x.to_string());
            format!("{}:{outcome}:{secs}:{}", st.name, st.attempts)
        })
        .collect()
}

#[test]
fn a_stock_windows_boot_shows_its_reboot_and_every_stage() {
    let s = fixture("windows-stock.txt");
    assert_eq!(
        stages(&s),
        [
            // Done in the first run; the second run's skip keeps its figures.
            "containers-feature:done:45:1",
            // From the reboot marker to the script's next start.
            "reboot:done:62:1",
            "containerd:done:25:1",
            "kubelet:done:35:1",
            "routes:done:1:1",
            "join:done:37:1",
            "openssh:done:94:1",
        ]
    );
    assert_eq!((after(s.script_started), s.runs, after(s.joined), after(s.finished)), (Some(52), 2, Some(260), Some(355)));
    assert_eq!(s.slowest(), Some(("openssh", 94)));
    assert!(s.failing().is_none());
}

#[test]
fn a_baked_windows_boot_skips_every_install_stage() {
    let s = fixture("windows-baked.txt");
    assert_eq!(
        stages(&s),
        [
            "containers-feature:skip:0:0",
            "containerd:skip:0:0",
            "kubelet:skip:0:0",
            "routes:skip:0:0",
            "join:done:25:1",
            "openssh:done:87:1"
        ]
    );
    assert_eq!((after(s.script_started), s.runs, after(s.joined)), (Some(35), 1, Some(60)));
    // Against the stock fixture: the baked node joins more than three minutes sooner.
    let stock = fixture("windows-stock.txt");
    assert!(after(stock.joined).unwrap() - after(s.joined).unwrap() > 180);
}

#[test]
fn a_linux_console_with_kernel_noise_keeps_what_is_whole() {
    let s = fixture("linux-worker.txt");
    assert_eq!(
        stages(&s),
        [
            "packages:done:22:1",
            // Its marker followed a kernel message on the same line.
            "kernel:done:0:1",
            // Its end marker was cut by a kernel message: no end, no guess.
            "containerd:?:?:1",
            "kubernetes:done:27:1",
            "join:done:18:1",
        ]
    );
    assert_eq!((after(s.script_started), s.runs, after(s.joined), after(s.finished)), (Some(26), 1, Some(110), Some(110)));
    assert_eq!(s.slowest(), Some(("kubernetes", 27)));
}

#[test]
fn a_truncated_console_leaves_unknowns_unknown() {
    let s = fixture("truncated.txt");
    assert_eq!(
        stages(&s),
        [
            // Its start marker was cut off with the head of the console.
            "packages:done:?:0",
            "kernel:done:0:1",
            "containerd:done:13:1",
            "kubernetes:done:27:1",
            "init:done:71:1",
            // Its end is not written yet (the last line is cut short).
            "cni:?:?:1",
        ]
    );
    assert_eq!((s.script_started, s.runs, after(s.joined), s.finished), (None, 0, Some(161), None));
    assert_eq!(s.slowest(), Some(("init", 71)));
}

#[test]
fn an_interleaved_console_with_a_retried_run_counts_each_attempt_once() {
    let s = fixture("interleaved.txt");
    assert_eq!(
        stages(&s),
        [
            "containers-feature:done:0:1",
            // Failed in the first run, done in the second; the line written twice counts once.
            "containerd:done:23:2",
            // The end of one and the start of the next on one line.
            "kubelet:done:35:1",
            "flannel:done:37:1",
            "routes:done:0:1",
            "join:done:41:1",
            "openssh:fail:0:1",
        ]
    );
    assert_eq!((after(s.script_started), s.runs, after(s.joined), after(s.finished)), (Some(50), 2, Some(400), Some(401)));
    assert_eq!(s.failing().map(|f| f.name.as_str()), Some("openssh"));
    let fail = parse(&fs::read_to_string(root().join("tests/fixtures/timeline/interleaved.txt")).unwrap())
        .into_iter()
        .find(|m| m.stage == "containerd" && m.detail.starts_with("checksum"))
        .expect("the failure keeps its detail");
    assert!(fail.detail.ends_with("got 9a8b"), "{}", fail.detail);
}

fn row(pool: &str, slot: &str, boot: Summary, ready_after: i64) -> Row {
    Row {
        pool: pool.into(),
        slot: slot.into(),
        instance: format!("i-{slot}"),
        state: "running".into(),
        node: format!("ip-{slot}"),
        ready: "True".into(),
        windows_build: String::new(),
        age: "10m".into(),
        time_to_ready: String::new(),
        launched: Some(at(LAUNCH)),
        ready_at: Some(at(LAUNCH) + time::Duration::seconds(ready_after)),
        boot: Some(boot),
    }
}

/// What a person reads in `hybrid status`: per node every stage as an
/// offset from launch, and each pool's slowest stage.
#[test]
fn status_shows_each_stage_and_the_slowest_per_pool() {
    let rows = [
        row("win-tools", "win-tools-0", fixture("windows-stock.txt"), 300),
        row("win-tools", "win-tools-1", fixture("windows-baked.txt"), 75),
        row("control-plane", "control-plane", fixture("truncated.txt"), 200),
        row("game-servers", "game-servers-0", fixture("linux-worker.txt"), 130),
    ];
    let text = timeline_text(&rows);
    let lines: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.trim().split_once(": ")).collect();
    assert!(lines["win-tools-0"].starts_with("script +52s (2 runs), containers-feature 45s, reboot 1m2s, containerd 25s"), "{text}");
    assert!(lines["win-tools-0"].ends_with("joined +4m20s, Ready +5m0s"), "{text}");
    assert!(lines["win-tools-1"].contains("containers-feature skipped, containerd skipped"), "{text}");
    assert!(lines["control-plane"].starts_with("script ?, packages done, kernel 0s"), "{text}");
    assert!(lines["control-plane"].contains("cni running"), "{text}");
    assert!(lines["game-servers-0"].contains("containerd (end not in console), kubernetes 27s"), "{text}");
    assert!(text.contains("slowest stage in pool win-tools: openssh (1m34s on win-tools-0)"), "{text}");
    assert!(text.contains("slowest stage in pool game-servers: kubernetes (27s on game-servers-0)"), "{text}");
}

/// The markers the real bash `stage` and `timeline` functions write are the
/// ones the parser reads: done, skipped on a rerun, failed with its code.
#[test]
fn the_linux_bootstrap_writes_what_the_parser_reads() {
    let spec = crate::render::spec("clusters/dev.toml");
    let nodes =
        hybrid::bootstrap::Renderer::new(&spec, &hybrid::bootstrap::Templates::builtin()).cluster(&crate::render::test_secrets()).unwrap();
    let script = &nodes[1].parts.iter().find(|(n, _)| n == "bootstrap.sh").unwrap().1;
    let state = crate::util::scratch("timeline");
    let body = format!(
        "STATE={}\ntimeline bootstrap start node\nstage one true\nstage one true\nstage two sleep 1.1\nstage three false || true\ntimeline bootstrap done\n",
        state.display()
    );
    let full = format!("{script}\n{body}");
    let out = std::process::Command::new("bash").arg("-c").arg(full).env("HYBRID_SOURCE_ONLY", "1").output().unwrap();
    fs::remove_dir_all(&state).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let s = summarize(&parse(&stderr));
    let words: Vec<String> = stages(&s).into_iter().map(|w| w.rsplitn(3, ':').nth(2).unwrap().to_string()).collect();
    assert_eq!(words, ["one:done", "two:done", "three:fail"], "{stderr}");
    assert_eq!(s.stages[1].seconds(), Some(1), "{stderr}");
    assert_eq!((s.runs, s.finished.is_some()), (1, true));
    assert!(parse(&stderr).iter().any(|m| m.stage == "three" && m.detail == "exit=1"), "{stderr}");
}

/// The Windows `Timeline` function cannot run here; its time format is the
/// one the fixtures use, and culture-independent.
#[test]
fn the_windows_bootstrap_writes_the_time_format_the_fixtures_use() {
    let template = fs::read_to_string(root().join("templates/windows/bootstrap.ps1.tera")).unwrap();
    let function = template.split("function Timeline(").nth(1).expect("a Timeline function").split("\n}").next().unwrap();
    assert!(
        function.contains("ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ss.fffZ', [Globalization.CultureInfo]::InvariantCulture)"),
        "{function}"
    );
    assert!(function.contains("\"HYBRID-TIMELINE $T $Stage $Event $Detail\""), "{function}");
    for name in ["windows-stock.txt", "windows-baked.txt", "interleaved.txt"] {
        let text = fs::read_to_string(root().join("tests/fixtures/timeline").join(name)).unwrap();
        for m in text.match_indices("HYBRID-TIMELINE ") {
            let stamp = &text[m.0 + 16..m.0 + 16 + 24];
            let shape: String = stamp.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
            assert_eq!(shape, "9999-99-99T99:99:99.999Z", "{name}: {stamp}");
        }
    }
}
