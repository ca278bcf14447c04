//! Runs that never hurt each other, another cluster, or the user's files:
//! a lock that lives exactly as long as its run (renewed while it works,
//! never taken from a live owner, given back on Ctrl-C, written or failed
//! cleanly), files written only where they may be, and endings that say
//! what happened. Against moto through the fault proxy where AWS must
//! misbehave; each test reproduces what an earlier release got wrong.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Filter;

use crate::ec2::{Cluster, instance_slots};
use crate::moto::{Always, FaultProxy, Moto, Rule, aws_clients, hybrid_command};
use crate::util::{root, text, wait_for};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn run(endpoint: &str, args: &[&str]) -> Output {
    hybrid_command(endpoint, args).output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{what}\nstdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Writes lock epoch `epoch` of `cluster` with `value` as its text.
fn put_lock(endpoint: &str, cluster: &str, epoch: u64, value: &str) {
    rt().block_on(async {
        let (_, ssm) = aws_clients(endpoint).await;
        ssm.put_parameter()
            .name(format!("/hybrid/{cluster}/lock/{epoch}"))
            .value(value)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .unwrap();
    })
}

pub(crate) fn lock_epochs(endpoint: &str, cluster: &str) -> Vec<String> {
    rt().block_on(async {
        let (_, ssm) = aws_clients(endpoint).await;
        let page = ssm.get_parameters_by_path().path(format!("/hybrid/{cluster}/lock/")).recursive(true).send().await.unwrap();
        let mut names: Vec<String> = page.parameters().iter().filter_map(|p| p.name()).map(str::to_string).collect();
        names.sort();
        names
    })
}

/// Runs `hybrid` and kills it if it has not ended within `limit` (an old
/// release spun forever): `None` then.
fn run_within(endpoint: &str, args: &[&str], limit: Duration) -> Option<Output> {
    let mut child = hybrid_command(endpoint, args).spawn().unwrap();
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A persistent error writing the lock (AccessDenied on ssm:PutParameter)
/// fails the run at once with AWS's words; a transient one (throttling) is
/// retried with backoff, saying so, and the run goes on.
#[test]
fn a_refused_lock_write_fails_at_once_and_a_throttled_one_is_retried() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("lock-denied");
    let file = c.write(1, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    proxy.add_always(&Always { op: "PutParameter", matching: "/lock/", fault: "denied" });
    let out = run_within(&proxy.url, &["apply", f, "--yes", "--ec2-only"], Duration::from_secs(30)).expect("the run ends on its own");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the cluster lock could not be written") && stderr.contains("AccessDeniedException"), "{stderr}");
    assert!(stderr.contains("not authorized to perform: ssm:PutParameter"), "AWS's own words: {stderr}");
    let writes = proxy.log().iter().filter(|(op, _)| op == "PutParameter").count();
    assert!(writes <= 2, "no retries of a refusal: {writes}");
    assert!(instance_slots(&moto.url, "lock-denied").is_empty(), "nothing was made without the lock");

    proxy.reset();
    proxy.add_repeated(&Rule { op: "PutParameter", nth: 1, fault: "throttle" }, "/lock/", 12);
    let out = run_within(&proxy.url, &["apply", f, "--yes", "--ec2-only"], Duration::from_secs(60)).expect("the run ends");
    ok(&out, "apply through a throttled lock write");
    assert!(text(&out.stderr).contains("writing the cluster lock:"), "it says what it waits for: {}", text(&out.stderr));
    assert!(lock_epochs(&moto.url, "lock-denied").is_empty(), "the lock was given back");
}

/// A lock whose owner runs on this host is never taken over, however long
/// its expiry has passed; one whose text is not a lock reads as owned by
/// "unknown", with an expiry counted from when it was written.
#[test]
fn a_live_owner_here_is_never_taken_over_and_a_malformed_lock_expires() {
    let moto = Moto::start();
    let c = Cluster::new("lock-live");
    let file = c.write(1, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    assert!(!host.is_empty(), "this host has a name");
    // This test's own process is alive, on this host; its lock expired long ago.
    let owner = format!("someone@{host} pid {}", std::process::id());
    let value = serde_json::json!({ "owner": owner, "run_id": "elsewhere-1", "created": "2026-01-01T00:00:00Z", "expires": "2026-01-01T00:10:00Z" });
    put_lock(&moto.url, "lock-live", 3, &value.to_string());
    let out = run(&moto.url, &["apply", f, "--yes", "--ec2-only", "--lock-timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains(&format!("cluster lock-live is locked by {owner}")), "{}", text(&out.stderr));
    assert!(instance_slots(&moto.url, "lock-live").is_empty());

    put_lock(&moto.url, "lock-live", 3, "not a lock at all");
    let out = run(&moto.url, &["apply", f, "--yes", "--ec2-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("is locked by unknown since 20"), "a creation time from when it was written: {stderr}");
    assert!(!stderr.contains("until unknown"), "an expiry counted from it: {stderr}");
}

/// A running apply renews its lock: with a lock honoured for only a few
/// seconds and an apply that takes longer (every AWS call slowed), a second
/// apply is refused throughout instead of taking the lock over.
#[test]
fn a_working_run_renews_its_lock() {
    let moto = Moto::start();
    // A second per call: the first apply spends well over ten seconds in
    // its AWS work, however much of it runs at once.
    let slow = FaultProxy::with_latency(&moto.url, 1, 0.0, 1.0);
    let c = Cluster::new("lock-renew");
    let file = c.write(2, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    let mut first = hybrid_command(&slow.url, &["apply", f, "--yes", "--ec2-only", "--lock-ttl", "3s"]).spawn().unwrap();
    // Wait until it holds the lock, then past its first TTL.
    wait_for("the first apply takes the lock", Duration::from_secs(30), || !lock_epochs(&moto.url, "lock-renew").is_empty());
    std::thread::sleep(Duration::from_secs(5));
    assert!(first.try_wait().unwrap().is_none(), "the first apply should still be working");
    // One node more, so that the second has work (and needs the lock)
    // however far the first has got.
    let second = run(&moto.url, &["apply", f, "--yes", "--ec2-only", "--set", "pool.game.count=3"]);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second.stdout));
    assert!(text(&second.stderr).contains("cluster lock-renew is locked by tester@"), "{}", text(&second.stderr));
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(lock_epochs(&moto.url, "lock-renew").is_empty());
}

/// A rolling replacement checks that it still holds the lock before each
/// batch: one whose lock was taken over stops before touching another node.
#[test]
fn a_rolling_replacement_stops_when_its_lock_is_taken_over() {
    let moto = Moto::start();
    let c = Cluster::new("lock-batches");
    let file = c.write(3, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    ok(&run(&moto.url, &["apply", f, "--yes", "--ec2-only"]), "first apply");
    let before: Vec<(String, String)> = instance_slots(&moto.url, "lock-batches");
    let body = std::fs::read_to_string(&file).unwrap();
    assert!(body.contains("c6i.large"), "{body}");
    std::fs::write(&file, body.replace("c6i.large", "c6i.xlarge")).unwrap();
    let slow = FaultProxy::with_latency(&moto.url, 1, 0.0, 0.2);
    let mut child = hybrid_command(&slow.url, &["apply", f, "--yes", "--ec2-only"]).spawn().unwrap();
    // Once the first replacement is launched, another run takes the lock.
    wait_for("a replacement starts", Duration::from_secs(60), || slow.log().iter().any(|(op, _)| op == "RunInstances"));
    let epoch: u64 = lock_epochs(&moto.url, "lock-batches").last().and_then(|e| e.rsplit('/').next()?.parse().ok()).unwrap();
    let value = serde_json::json!({ "owner": "other@elsewhere pid 1", "run_id": "other-1", "created": "2026-12-06T00:00:00Z", "expires": "2999-01-01T00:00:00Z" });
    put_lock(&moto.url, "lock-batches", epoch + 1, &value.to_string());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("this run's lock was taken over by other@elsewhere pid 1"), "{stderr}");
    let launched = slow.log().iter().filter(|(op, _)| op == "RunInstances").count();
    assert_eq!(launched, 1, "one batch (replace_batch = 1) and no more: {stderr}");
    let after = instance_slots(&moto.url, "lock-batches");
    let replaced = before.iter().filter(|b| !after.contains(b)).count();
    assert_eq!(replaced, 1, "{before:?} -> {after:?}");
    assert_eq!(lock_epochs(&moto.url, "lock-batches"), [format!("/hybrid/lock-batches/lock/{}", epoch + 1)], "the successor's lock stays");
}

/// Ctrl-C at the confirmation prompt (standard input a terminal) exits 130
/// and gives the lock back: the prompt no longer dies of the signal with
/// the lock held.
#[test]
fn ctrl_c_at_the_prompt_exits_130_and_gives_the_lock_back() {
    let moto = Moto::start();
    let c = Cluster::new("lock-prompt");
    let file = c.write(1, 0, "m6i.xlarge");
    // A pseudo-terminal for standard input, as a person at a prompt has.
    const AT_A_TERMINAL: &str = r#"
import os, pty, signal, subprocess, sys, threading, time
master, slave = pty.openpty()
p = subprocess.Popen(sys.argv[1:], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
err = []
threading.Thread(target=lambda: err.extend(iter(lambda: p.stderr.read(1), b"")), daemon=True).start()
deadline = time.time() + 60
while b"Only 'yes' will be accepted" not in b"".join(err) and time.time() < deadline and p.poll() is None:
    time.sleep(0.05)
p.send_signal(signal.SIGINT)
code = p.wait(timeout=30)
time.sleep(0.2)
sys.stderr.write(b"".join(err).decode(errors="replace"))
print(code)
"#;
    let bin = env!("CARGO_BIN_EXE_hybrid");
    let out = Command::new("python3")
        .args(["-c", AT_A_TERMINAL, bin, "apply", file.to_str().unwrap(), "--ec2-only"])
        .current_dir(root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", crate::util::scratch("home"))
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", &moto.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Only 'yes' will be accepted"), "it asked: {stderr}");
    assert_eq!(text(&out.stdout).trim(), "130", "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(lock_epochs(&moto.url, "lock-prompt").is_empty(), "the lock was given back");
    assert!(instance_slots(&moto.url, "lock-prompt").is_empty(), "nothing was made");
}

/// `kubeconfig -o` writes only a regular file, never over one without
/// --force (its other contexts would be lost), never to a device or
/// through a link, and `-o -` writes to standard output.
#[test]
fn kubeconfig_writes_only_regular_files_it_may_replace() {
    let moto = Moto::start();
    let c = Cluster::new("kubeconfig-files");
    let file = c.write(1, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    ok(&run(&moto.url, &["apply", f, "--yes", "--ec2-only"]), "apply");
    let api = ["--api-server", "https://127.0.0.1:6443"];
    let kc = |out: &str, extra: &[&str]| {
        let mut args = vec!["kubeconfig", f, "-o", out];
        args.extend_from_slice(&api);
        args.extend_from_slice(extra);
        run(&moto.url, &args)
    };
    // A device is never written, with or without --force.
    for (path, extra) in [("/dev/null", &[][..]), ("/dev/null", &["--force"][..])] {
        let out = kc(path, extra);
        assert_eq!(out.status.code(), Some(1), "{path} {extra:?}");
        assert!(text(&out.stderr).contains("not a regular file"), "{}", text(&out.stderr));
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(), "/dev/null is still a device");
    // A link is not followed or replaced.
    let dir = c.dir().to_path_buf();
    let target = dir.join("target.yaml");
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, dir.join("link.yaml")).unwrap();
    let out = kc(dir.join("link.yaml").to_str().unwrap(), &["--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    // An existing file is kept without --force and replaced with it.
    let existing = dir.join("config.yaml");
    std::fs::write(&existing, "other contexts").unwrap();
    let out = kc(existing.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("exists; pass --force"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "other contexts");
    ok(&kc(existing.to_str().unwrap(), &["--force"]), "--force");
    assert!(std::fs::read_to_string(&existing).unwrap().contains("kind: Config"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&existing).unwrap().permissions().mode() & 0o777, 0o600);
    // `-o -`: standard output.
    let out = kc("-", &[]);
    assert!(ok(&out, "-o -").contains("kind: Config"));
    assert!(!dir.join("-").exists());
}

/// destroy needs only the cluster's name and region: a file that no longer
/// validates (a Kubernetes minor past its end of life) still destroys its
/// cluster, and `--name --region` destroys one without its file.
#[test]
fn destroy_needs_only_the_clusters_name_and_region() {
    let moto = Moto::start();
    let c = Cluster::new("destroy-invalid");
    let file = c.write(1, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    ok(&run(&moto.url, &["apply", f, "--yes", "--ec2-only"]), "apply");
    let body = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, body.replace("kubernetes_version = \"1.36\"", "kubernetes_version = \"1.33\"")).unwrap();
    assert_eq!(run(&moto.url, &["validate", f]).status.code(), Some(1), "the file no longer validates");
    let out = run(&moto.url, &["destroy", f, "--yes"]);
    ok(&out, "destroy with an invalid file");
    assert!(text(&out.stderr).contains("does not validate any more"), "{}", text(&out.stderr));
    assert!(instance_slots(&moto.url, "destroy-invalid").is_empty());

    let c2 = Cluster::new("destroy-byname");
    ok(&run(&moto.url, &["apply", c2.write(1, 0, "m6i.xlarge").to_str().unwrap(), "--yes", "--ec2-only"]), "apply");
    std::fs::remove_dir_all(c2.dir()).unwrap();
    let out = run(&moto.url, &["destroy", "--name", "destroy-byname", "--region", "us-east-1", "--yes"]);
    ok(&out, "destroy by name");
    assert!(instance_slots(&moto.url, "destroy-byname").is_empty());
    let usage = run(&moto.url, &["destroy", "--name", "x"]);
    assert_eq!(usage.status.code(), Some(64), "--name needs --region");
}

/// A stopped instance is there but is no node: plan shows it, apply starts it.
#[test]
fn a_stopped_instance_is_started() {
    let moto = Moto::start();
    let c = Cluster::new("stopped");
    let file = c.write(2, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    ok(&run(&moto.url, &["apply", f, "--yes", "--ec2-only"]), "apply");
    let (slot, id) = instance_slots(&moto.url, "stopped").into_iter().find(|(s, _)| s == "game-1").unwrap();
    let state = |id: &str| {
        rt().block_on(async {
            let ec2 = aws_clients(&moto.url).await.0;
            let out = ec2.describe_instances().filters(Filter::builder().name("instance-id").values(id).build()).send().await.unwrap();
            out.reservations()[0].instances()[0].state().unwrap().name().unwrap().as_str().to_string()
        })
    };
    rt().block_on(async { aws_clients(&moto.url).await.0.stop_instances().instance_ids(&id).send().await.unwrap() });
    assert_eq!(state(&id), "stopped");
    let plan = ok(&run(&moto.url, &["plan", f, "--ec2-only"]), "plan");
    let line = plan.lines().find(|l| l.trim_start().starts_with("~ instance") && l.contains(&slot)).unwrap_or_else(|| panic!("{plan}"));
    assert!(line.contains(&id) && plan.contains(&format!("because {id} is stopped: start it")), "{plan}");
    let out = ok(&run(&moto.url, &["apply", f, "--yes", "--ec2-only"]), "apply");
    assert!(out.contains("1 changed"), "{out}");
    assert_eq!(state(&id), "running");
    let again = ok(&run(&moto.url, &["plan", f, "--ec2-only"]), "plan");
    assert!(again.contains("No changes"), "{again}");
}
