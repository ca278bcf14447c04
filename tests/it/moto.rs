//! A real EC2/SSM emulator (moto_server from the project's .venv) on
//! loopback, one per test so tests run in parallel without sharing state,
//! and the fault-injecting proxy that can sit in front of it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::root;

/// `hybrid` against `endpoint` with test credentials and nothing from this
/// machine's AWS configuration; output is captured.
pub fn hybrid_command(endpoint: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hybrid"));
    c.args(args)
        .current_dir(root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // A home of its own: nothing cached by another test's run is seen.
        .env("HOME", crate::util::scratch("home"))
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// SDK clients for reading back what hybrid did.
pub async fn aws_clients(endpoint: &str) -> (aws_sdk_ec2::Client, aws_sdk_ssm::Client) {
    let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test");
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .load()
        .await;
    (aws_sdk_ec2::Client::new(&conf), aws_sdk_ssm::Client::new(&conf))
}

/// An IAM client for reading back what hybrid made (moto serves IAM too).
pub async fn iam_client(endpoint: &str) -> aws_sdk_iam::Client {
    let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test");
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .load()
        .await;
    aws_sdk_iam::Client::new(&conf)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_http(port: u16, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes());
            let mut buf = [0u8; 12];
            if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing answered on 127.0.0.1:{port} within 60s");
}

pub struct Moto {
    child: Child,
    pub url: String,
    /// Where instances' console output is played (tests/support/moto_server.py).
    console_dir: std::path::PathBuf,
}

impl Moto {
    pub fn start() -> Self {
        let python = root().join(".venv/bin/python");
        assert!(python.exists(), "{} is missing: run scripts/setup.sh", python.display());
        let port = free_port();
        let console_dir = crate::util::scratch(&format!("moto-console-{port}"));
        std::fs::create_dir_all(&console_dir).unwrap();
        let child = Command::new(python)
            .arg(root().join("tests/support/moto_server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("HYBRID_MOTO_CONSOLE_DIR", &console_dir)
            .env("MOTO_AMIS_PATH", root().join("tests/fixtures/moto/amis.json"))
            // Reject unknown instance types the way EC2 does.
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        wait_http(port, "/moto-api/");
        Moto { child, url: format!("http://127.0.0.1:{port}"), console_dir }
    }

    /// Where `console` writes, for a helper thread that plays instances.
    pub fn console_dir(&self) -> std::path::PathBuf {
        self.console_dir.clone()
    }

    /// Empties every backend (moto's `POST /moto-api/reset`).
    pub fn reset(&self) {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"POST /moto-api/reset HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"), "{out}");
    }
}

/// Writes instance `id`'s console output into a moto console folder.
pub fn console_at(dir: &std::path::Path, id: &str, text: &str) {
    std::fs::write(dir.join(id), text).unwrap();
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.console_dir);
    }
}

pub struct FaultProxy {
    child: Child,
    pub url: String,
}

impl FaultProxy {
    /// `rate`: the share of requests that get a fault.
    pub fn start(target: &str, seed: u64, rate: f64) -> Self {
        Self::with_latency(target, seed, rate, 0.0)
    }

    /// Also delays every request by `latency` seconds.
    pub fn with_latency(target: &str, seed: u64, rate: f64, latency: f64) -> Self {
        let port = free_port();
        let mut child = Command::new(root().join(".venv/bin/python"))
            .arg(root().join("tests/support/fault_proxy.py"))
            .args([port.to_string(), target.to_string(), seed.to_string(), rate.to_string(), latency.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the fault proxy starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        FaultProxy { child, url: format!("http://127.0.0.1:{port}") }
    }
}

/// One HTTP/1.0 request to a loopback `url`; the answer's body.
fn http(url: &str, method: &str, path: &str, body: &str) -> String {
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// A fault at an exact call: the `nth` request of `op` from now on.
pub struct Rule<'a> {
    pub op: &'a str,
    pub nth: u32,
    pub fault: &'a str,
}

/// A fault on every request of `op` whose body contains `matching`.
pub struct Always<'a> {
    pub op: &'a str,
    pub matching: &'a str,
    pub fault: &'a str,
}

impl FaultProxy {
    /// Adds rules; each fires once. `pid_file` names the process `kill-*` faults kill.
    pub fn add_rules(&self, rules: &[Rule<'_>], pid_file: Option<&std::path::Path>) {
        let list: Vec<serde_json::Value> = rules
            .iter()
            .map(|r| serde_json::json!({ "op": r.op, "nth": r.nth, "fault": r.fault, "pid_file": pid_file.map(|p| p.display().to_string()) }))
            .collect();
        http(&self.url, "POST", "/_proxy/rules", &serde_json::Value::from(list).to_string());
    }

    /// A rule firing on `times` requests of `op` whose body contains
    /// `matching`, from the `nth` such request on.
    pub fn add_repeated(&self, rule: &Rule<'_>, matching: &str, times: u32) {
        self.add(serde_json::json!({ "op": rule.op, "nth": rule.nth, "match": matching, "times": times, "fault": rule.fault }));
    }

    pub fn add_always(&self, rule: &Always<'_>) {
        self.add(serde_json::json!({ "op": rule.op, "match": rule.matching, "always": true, "fault": rule.fault }));
    }

    /// Adds one rule as the proxy takes it (see fault_proxy.py: op, fault
    /// and any of nth, times, match, always, seconds, every, once_each).
    pub fn add(&self, rule: serde_json::Value) {
        http(&self.url, "POST", "/_proxy/rules", &serde_json::Value::from(vec![rule]).to_string());
    }

    /// How many requests of `op` got `fault` so far.
    pub fn fired(&self, op: &str, fault: &str) -> usize {
        self.log().iter().filter(|(o, f)| (op == "*" || o == op) && f == fault).count()
    }

    /// Every request so far as (operation, fault).
    pub fn log(&self) -> Vec<(String, String)> {
        let v: Vec<(String, String)> = serde_json::from_str(&http(&self.url, "GET", "/_proxy/log", "")).unwrap();
        v
    }

    /// The most requests that were in progress at once (since the start
    /// or the last reset).
    pub fn max_in_flight(&self) -> u64 {
        let v: serde_json::Value = serde_json::from_str(&http(&self.url, "GET", "/_proxy/stats", "")).unwrap();
        v["max_in_flight"].as_u64().expect("a count")
    }

    /// Forgets rules and log.
    pub fn reset(&self) {
        http(&self.url, "POST", "/_proxy/reset", "");
    }
}

/// Calls that change something (everything but reads).
pub fn is_write(op: &str) -> bool {
    !["Describe", "Get", "List"].iter().any(|p| op.starts_with(p))
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
