//! The pin check (`hybrid versions --check`, and plan and apply before they
//! launch anything) against a loopback stand-in for the internet
//! (tests/support/internet.py): files with redirects and checksum sources,
//! and a real OCI registry (Debian's docker-registry) behind the anonymous
//! token flow, seeded with multi-platform images. The stand-in is
//! permissive (everything exists) unless a test says what is missing, so
//! no expectation here is read off the code under test. Not proven here:
//! what the real dl.k8s.io, GitHub and registries hold today (the suite
//! never reaches the internet; `hybrid versions FILE --check` does).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::ec2::{Cluster, instance_slots};
use crate::moto::{Moto, hybrid_command};
use crate::util::{root, text};

/// tests/support/internet.py with `config`.
struct Internet {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Internet {
    fn start(tag: &str, config: Value) -> Self {
        let dir = crate::util::scratch(&format!("pins-{tag}"));
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let mut child = Command::new(root().join(".venv/bin/python"))
            .arg(root().join("tests/support/internet.py"))
            .arg(dir.join("config.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the internet stand-in starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("internet.py said {line:?}")).to_string();
        Internet { child, url, dir }
    }

    /// `[method, original URL, status]` of every request so far.
    fn log(&self) -> Vec<Value> {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        write!(s, "GET /_log HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        serde_json::from_str(out.split_once("\r\n\r\n").unwrap().1).unwrap()
    }

    /// `hybrid` against moto (or no AWS) with every pin request sent here,
    /// and a cache of this test's own.
    fn hybrid(&self, moto: Option<&Moto>, args: &[&str]) -> Output {
        let endpoint = moto.map_or("http://127.0.0.1:9", |m| m.url.as_str());
        let mut c = hybrid_command(endpoint, args);
        c.env("HYBRID_PIN_CHECK_ENDPOINT", &self.url).env("XDG_CACHE_HOME", self.dir.join("cache"));
        c.output().unwrap()
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn dev() -> &'static str {
    "clusters/dev.toml"
}

/// `clusters/dev.toml` with a prepull list on its Windows pool, in `dir`.
fn dev_with_prepull(dir: &Path, image: &str) -> PathBuf {
    let body = std::fs::read_to_string(root().join(dev())).unwrap();
    assert!(body.contains("os = \"windows-2022\""));
    let path = dir.join("dev.toml");
    std::fs::write(&path, body.replace("os = \"windows-2022\"", &format!("os = \"windows-2022\"\nprepull = [\"{image}\"]"))).unwrap();
    path
}

/// Every file of every node kind, its checksum source and every image with
/// its platforms: all there, all asked for (through redirects and the
/// token flow), and a second check asks nothing.
#[test]
fn versions_check_finds_every_pin_and_remembers_a_pass() {
    let net = Internet::start("all", json!({}));
    let out = net.hybrid(None, &["versions", dev(), "--check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("Every pin exists"), "{stdout}");
    let log = net.log();
    let asked = |needle: &str| log.iter().any(|e| e[1].as_str().unwrap_or_default().contains(needle));
    for needle in [
        "https://dl.k8s.io/v1.36.5/bin/windows/amd64/kubelet.exe",
        "https://dl.k8s.io/v1.36.5/bin/windows/amd64/kubelet.exe.sha256",
        "https://dl.k8s.io/v1.36.5/bin/windows/amd64/kube-proxy.exe",
        // A GitHub release download is followed through its redirect.
        "https://objects.githubusercontent.com/",
        "containerd-2.3.6-windows-amd64.tar.gz.sha256sum",
        // Calico's manifests: the git blob id from the contents API.
        "https://api.github.com/repos/projectcalico/calico/contents/manifests/",
        // Images through the registry API, after the token flow.
        "https://registry.k8s.io/v2/pause/manifests/3.10.2",
        "https://quay.io/v2/calico/node-windows/manifests/v3.32.4",
        "/_token?",
    ] {
        assert!(asked(needle), "{needle} was not asked for:\n{log:#?}");
    }
    assert!(log.iter().all(|e| e[2] != 500), "{log:#?}");

    let again = net.hybrid(None, &["versions", dev(), "--check"]);
    assert_eq!(again.status.code(), Some(0));
    assert!(text(&again.stdout).contains("remembered"), "{}", text(&again.stdout));
    assert_eq!(net.log().len(), log.len(), "a remembered pass asks nothing");
}

/// A file that is not at its URL, a tag a registry lacks, a Windows image
/// without a variant for the pool's build, and a prepulled image without a
/// Windows variant at all: each named with what was expected, by
/// `versions --check`, and by plan and apply before anything is launched.
#[test]
fn a_missing_pin_is_named_and_nothing_is_launched() {
    let scratch = Cluster::new("pins-missing");
    let net = Internet::start(
        "missing",
        json!({
            "missing": ["https://dl.k8s.io/v1.36.5/bin/windows/amd64/kube-proxy.exe"],
            "missing_images": ["quay.io/calico/typha:v3.32.4"],
            // Only a Windows Server 2019 build: a 2022 host cannot run it.
            "images": {
                "quay.io/calico/node-windows:v3.32.4": [{ "os": "windows", "architecture": "amd64", "os.version": "10.0.17763.6893" }],
                "docker.io/library/game-tools:7": [{ "os": "linux", "architecture": "amd64" }],
            },
        }),
    );
    let file = dev_with_prepull(scratch.dir(), "docker.io/library/game-tools:7");
    let f = file.to_str().unwrap();
    let out = net.hybrid(None, &["versions", f, "--check"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    for needle in [
        "https://dl.k8s.io/v1.36.5/bin/windows/amd64/kube-proxy.exe: not found (HTTP 404)",
        "quay.io/calico/typha:v3.32.4 (control plane, pool game-servers): no tag v3.32.4 in quay.io/calico/typha",
        "quay.io/calico/node-windows:v3.32.4 (pool win-tools): no variant for windows/amd64 10.0.20348 (windows-2022) (it has: windows/amd64 10.0.17763.6893)",
        "docker.io/library/game-tools:7 (pool win-tools (prepull)): no variant for windows/amd64 10.0.20348 (windows-2022) (it has: linux/amd64)",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    assert!(stderr.contains("nothing was launched"), "{stderr}");

    // plan and apply stop there: no instance is launched.
    let moto = Moto::start();
    let plan = net.hybrid(Some(&moto), &["plan", f, "--ec2-only"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan.stdout));
    assert!(text(&plan.stderr).contains("quay.io/calico/typha:v3.32.4"), "{}", text(&plan.stderr));
    let apply = net.hybrid(Some(&moto), &["apply", f, "--yes", "--ec2-only"]);
    assert_eq!(apply.status.code(), Some(1), "{}", text(&apply.stdout));
    assert!(text(&apply.stderr).contains("kube-proxy.exe: not found"), "{}", text(&apply.stderr));
    assert!(instance_slots(&moto.url, "dev").is_empty(), "nothing launched: {:?}", instance_slots(&moto.url, "dev"));

    // --offline skips the check and says so; then apply goes ahead.
    let offline = net.hybrid(Some(&moto), &["apply", f, "--yes", "--ec2-only", "--offline"]);
    assert_eq!(offline.status.code(), Some(0), "{}", text(&offline.stderr));
    assert!(text(&offline.stderr).contains("not checked (--offline)"), "{}", text(&offline.stderr));
    assert!(!instance_slots(&moto.url, "dev").is_empty());
}

/// Without a network the check ends in bounded time (each request has a
/// deadline) and says what it could not reach; a slow server is not a
/// dead one.
#[test]
fn an_unreachable_registry_is_named_in_bounded_time_and_a_slow_one_waited_for() {
    let net = Internet::start("dead", json!({ "dead": ["quay.io"], "hang": ["registry.k8s.io"], "slow": { "dl.k8s.io": 1.0 } }));
    let start = Instant::now();
    let out = net.hybrid(None, &["versions", dev(), "--check"]);
    let took = start.elapsed();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(60), "bounded: {took:?}");
    assert!(stderr.contains("quay.io/calico/node:v3.32.4 (control plane, pool game-servers): could not reach https://quay.io/v2/calico/node/manifests/v3.32.4"), "{stderr}");
    assert!(stderr.contains("registry.k8s.io/pause:3.10.2") && stderr.contains("no answer in time"), "{stderr}");
    assert!(stderr.contains("check the network or proxy (HTTPS_PROXY), or pass --offline"), "{stderr}");
    // The slow file server answered: its files are not among the failures.
    assert!(stdout.contains("ok       file  kubelet 1.36.5 (windows-2022)"), "{stdout}");
    assert!(!stderr.contains("dl.k8s.io/v1.36.5/bin/linux/amd64/kubelet:"), "{stderr}");
}

/// With AWS emulated and no stand-in for the internet, plan says the pins
/// were not checked instead of asking the internet; plan --offline says so too.
#[test]
fn an_emulated_plan_says_the_pins_were_not_checked() {
    let moto = Moto::start();
    let out = hybrid_command(&moto.url, &["plan", dev(), "--ec2-only"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Pinned downloads and images: not checked (AWS is an emulator here"), "{}", text(&out.stderr));
    let offline = hybrid_command(&moto.url, &["plan", dev(), "--offline"]).output().unwrap();
    assert!(text(&offline.stderr).contains("not checked (--offline)"), "{}", text(&offline.stderr));
}

/// The loopback internet's own checks (its registries, token flow, files,
/// cleanup): the pin tests trust them, so they run with the suite.
#[test]
fn the_loopback_internet_passes_its_self_test() {
    let root = crate::util::root();
    let out =
        std::process::Command::new(root.join(".venv/bin/python")).arg(root.join("tests/support/internet_selftest.py")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("all checks passed"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
