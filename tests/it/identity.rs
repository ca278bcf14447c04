//! Who hybrid is and how it gets there: AWS credentials from the sources the
//! AWS CLI accepts (a `credential_process` profile, an IAM Identity Center
//! `sso-session` profile through a loopback portal), failures that name
//! their source, and HTTP(S) proxies honoured and bypassed on the AWS side
//! and the Kubernetes side alike (a loopback proxy counts what it carries).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::e2e::{finish, seed_secrets, write_cluster};
use crate::kube::KubeEmulator;
use crate::moto::Moto;
use crate::util::{root, text};

/// A fresh HOME with `~/.aws/config` holding `config`.
fn home(name: &str, config: &str) -> PathBuf {
    let home = std::env::temp_dir().join(format!("hybrid-it-identity-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(home.join(".aws/config"), config).unwrap();
    home
}

/// `hybrid` against moto with nothing but `home`'s AWS configuration: no
/// keys in the environment, no instance metadata, no proxy.
fn hybrid_as(home: &Path, moto: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hybrid"));
    c.args(args)
        .current_dir(root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join(".aws/config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join(".aws/none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", moto)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn write_executable(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn a_credential_process_profile_runs_plan_and_its_failure_names_the_source() {
    let moto = Moto::start();
    let home = home("process", "");
    let marker = home.join("ran");
    let helper = home.join("creds.sh");
    write_executable(
        &helper,
        &format!(
            "#!/bin/sh\ntouch '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"AKIDPROCESS\", \"SecretAccessKey\": \"s\", \"SessionToken\": \"t\", \"Expiration\": \"2099-01-01T00:00:00Z\"}}'\n",
            marker.display()
        ),
    );
    let failing = home.join("fail.sh");
    write_executable(&failing, "#!/bin/sh\necho 'MFA device not present' >&2\nexit 3\n");
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[profile studio]\ncredential_process = {}\nregion = us-east-1\n\n[profile broken]\ncredential_process = {}\n",
            helper.display(),
            failing.display()
        ),
    )
    .unwrap();

    let out = finish(hybrid_as(&home, &moto.url, &["--profile", "studio", "plan", "clusters/dev.toml"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("Plan:"), "{}", text(&out.stdout));
    assert!(marker.exists(), "the profile's credential_process was not run");

    // AWS_PROFILE works as --profile does.
    let mut c = hybrid_as(&home, &moto.url, &["plan", "clusters/dev.toml"]);
    c.env("AWS_PROFILE", "broken");
    let out = finish(c.spawn().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("profile \"broken\""), "the failing source is named: {stderr}");
    assert!(stderr.contains("MFA device not present"), "the source's own reason is shown: {stderr}");
    assert!(!stderr.contains("could not be sent"), "{stderr}");

    // Nothing configured at all says so, once, not per call.
    let none = self::home("none", "");
    let out = finish(hybrid_as(&none, &moto.url, &["plan", "clusters/dev.toml"]).spawn().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NoCredentials") && stderr.contains("no providers in chain provided credentials"), "{stderr}");
}

/// A loopback IAM Identity Center portal: answers GetRoleCredentials
/// (`GET /federation/credentials`) for the one planted bearer token and
/// records every request line with its token.
struct Portal {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Portal {
    fn start(token: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut bearer = String::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("x-amz-sso_bearer_token")
                    {
                        bearer = v.trim().to_string();
                    }
                }
                log.lock().unwrap().push(format!("{} token={bearer}", line.trim()));
                let (status, body) = if bearer == token && line.starts_with("GET /federation/credentials?") {
                    (
                        "200 OK",
                        r#"{"roleCredentials":{"accessKeyId":"ASIASSO","secretAccessKey":"s","sessionToken":"t","expiration":4102444800000}}"#,
                    )
                } else {
                    ("401 Unauthorized", r#"{"message":"Session token not found or invalid"}"#)
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nx-amzn-errortype: UnauthorizedException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Portal { url, seen }
    }
}

/// The Rust SDK reads the SSO cache the AWS CLI's `aws sso login` writes:
/// ~/.aws/sso/cache/<sha1 of the sso-session name>.json. sha1("corp") is
/// ee0bfd2552fbd840c02cc48b6e823320543c450f (checked with `sha1sum`).
fn plant_sso_token(home: &Path, expires: &str) {
    let cache = home.join(".aws/sso/cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join("ee0bfd2552fbd840c02cc48b6e823320543c450f.json"),
        format!(r#"{{"accessToken":"planted-token","expiresAt":"{expires}","region":"us-east-1","startUrl":"https://example.awsapps.com/start"}}"#),
    )
    .unwrap();
}

#[test]
fn an_sso_session_profile_runs_plan_through_the_portal_and_an_expired_login_says_what_to_run() {
    let sha1 = Command::new("sh").args(["-c", "printf corp | sha1sum"]).output().unwrap();
    assert!(text(&sha1.stdout).starts_with("ee0bfd2552fbd840c02cc48b6e823320543c450f"), "{}", text(&sha1.stdout));
    let moto = Moto::start();
    let portal = Portal::start("planted-token");
    let home = home(
        "sso",
        "[profile dev]\nsso_session = corp\nsso_account_id = 111122223333\nsso_role_name = Admin\nregion = us-east-1\n\n\
         [sso-session corp]\nsso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n",
    );
    plant_sso_token(&home, "2099-01-01T00:00:00Z");
    let sso = |args: &[&str]| {
        let mut c = hybrid_as(&home, &moto.url, args);
        // Only the SSO portal moves to loopback; every other service is moto.
        c.env("AWS_ENDPOINT_URL_SSO", &portal.url);
        finish(c.spawn().unwrap())
    };
    let out = sso(&["--profile", "dev", "plan", "clusters/dev.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let seen = portal.seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the portal was never asked");
    assert!(
        seen.iter().all(|l| l.starts_with("GET /federation/credentials?")
            && l.contains("role_name=Admin")
            && l.contains("account_id=111122223333")
            && l.ends_with("token=planted-token")),
        "{seen:?}"
    );

    // An expired login fails before anything is sent, naming the profile
    // and the command that fixes it.
    plant_sso_token(&home, "2020-01-01T00:00:00Z");
    let before = portal.seen.lock().unwrap().len();
    let out = sso(&["--profile", "dev", "plan", "clusters/dev.toml"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("profile \"dev\"") && stderr.contains("aws sso login --profile dev"), "{stderr}");
    assert_eq!(portal.seen.lock().unwrap().len(), before, "an expired token was sent to the portal");
}

/// A loopback forward proxy that counts CONNECT tunnels and forwarded
/// requests per target (tests/support/proxy.py). It listens on 127.0.0.2,
/// the servers on 127.0.0.1, so a NO_PROXY entry names one and not the
/// other (kube 5.0 matched NO_PROXY against the proxy's own address).
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.2:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(root().join(".venv/bin/python"))
            .arg(root().join("tests/support/proxy.py"))
            .args([&port.to_string(), "127.0.0.2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        Proxy { child, url: format!("http://127.0.0.2:{port}") }
    }

    /// (tunnels to `target`, requests forwarded to `target`).
    fn carried(&self, target: &str) -> (u64, u64) {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let mut s = std::net::TcpStream::connect(("127.0.0.2", port)).unwrap();
        s.write_all(b"GET /_stats HTTP/1.0\r\nHost: proxy\r\n\r\n").unwrap();
        let mut raw = String::new();
        std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
        let stats: Value = serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        (stats["tunnels"][target].as_u64().unwrap_or(0), stats["forwarded"][target].as_u64().unwrap_or(0))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn proxies_carry_aws_and_kubernetes_calls_and_no_proxy_bypasses_them() {
    let moto = Moto::start();
    let emu = KubeEmulator::start_with(crate::kube::Options { tls_for: Some("10.42.0.10"), ..Default::default() });
    seed_secrets(&moto, "proxied");
    let file = write_cluster("proxied", 1);
    let out = finish(crate::moto::hybrid_command(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let proxy = Proxy::start();
    let moto_host = moto.url.trim_start_matches("http://").to_string();
    let emu_host = emu.url.trim_start_matches("https://").to_string();
    let plan = |proxy_env: &[(&str, &str)]| {
        let mut c = crate::moto::hybrid_command(&moto.url, &["plan", file.to_str().unwrap(), "--api-server", &emu.url]);
        c.envs(proxy_env.iter().copied());
        let out = finish(c.spawn().unwrap());
        assert_eq!(out.status.code(), Some(0), "{proxy_env:?}: {}\n{}", text(&out.stdout), text(&out.stderr));
        assert!(!text(&out.stderr).contains("cluster side is unknown"), "{}", text(&out.stderr));
    };

    // moto is plain HTTP (HTTP_PROXY, absolute-form requests); the API
    // server is HTTPS (HTTPS_PROXY, a CONNECT tunnel each connection).
    plan(&[("HTTP_PROXY", &proxy.url), ("HTTPS_PROXY", &proxy.url)]);
    let (_, aws_forwarded) = proxy.carried(&moto_host);
    let (kube_tunnels, _) = proxy.carried(&emu_host);
    assert!(aws_forwarded > 0, "no AWS call went through HTTP_PROXY");
    assert!(kube_tunnels > 0, "no Kubernetes call went through HTTPS_PROXY");

    // Lower-case names work too (what most shells and CI runners set).
    plan(&[("http_proxy", &proxy.url), ("https_proxy", &proxy.url)]);
    assert!(proxy.carried(&moto_host).1 > aws_forwarded, "http_proxy was ignored");
    assert!(proxy.carried(&emu_host).0 > kube_tunnels, "https_proxy was ignored");
    let counts = (proxy.carried(&moto_host), proxy.carried(&emu_host));

    // NO_PROXY names the servers' address: nothing goes through the proxy.
    plan(&[("HTTP_PROXY", &proxy.url), ("HTTPS_PROXY", &proxy.url), ("NO_PROXY", "localhost,127.0.0.1")]);
    assert_eq!((proxy.carried(&moto_host), proxy.carried(&emu_host)), counts, "NO_PROXY was not honoured");
    // A CIDR entry, in lower case.
    plan(&[("HTTP_PROXY", &proxy.url), ("HTTPS_PROXY", &proxy.url), ("no_proxy", "127.0.0.0/31")]);
    assert_eq!((proxy.carried(&moto_host), proxy.carried(&emu_host)), counts, "NO_PROXY was not honoured");
}
