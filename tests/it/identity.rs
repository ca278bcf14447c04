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

use hybrid::adapters::kube::KubeApi;
use serde_json::{Value, json};

use crate::e2e::{finish, seed_secrets, write_cluster};
use crate::kube::KubeEmulator;
use crate::moto::Moto;
use crate::util::{root, text};

/// A fresh HOME with `~/.aws/config` holding `config`.
fn home(name: &str, config: &str) -> PathBuf {
    let home = crate::util::scratch(&format!("identity-{name}"));
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

/// AWS credentials for one identity, as `hybrid token` and `hybrid
/// kubeconfig` get them from the environment.
#[derive(Clone)]
struct Creds {
    key: String,
    secret: String,
    session: Option<String>,
}

impl Creds {
    fn apply(&self, c: &mut Command) {
        c.env("AWS_ACCESS_KEY_ID", &self.key).env("AWS_SECRET_ACCESS_KEY", &self.secret);
        if let Some(s) = &self.session {
            c.env("AWS_SESSION_TOKEN", s);
        }
    }
}

/// IAM users with access keys, and a role shaped like the one an IAM
/// Identity Center permission set makes (its path, its name) assumed by a
/// person, all in moto (which serves IAM and STS too).
async fn identities(moto: &str) -> (Creds, Creds, Creds, Creds) {
    let iam = crate::moto::iam_client(moto).await;
    let mut users = Vec::new();
    for name in ["alice", "bob", "dave"] {
        iam.create_user().user_name(name).send().await.unwrap();
        let key = iam.create_access_key().user_name(name).send().await.unwrap();
        let key = key.access_key().unwrap();
        users.push(Creds { key: key.access_key_id().to_string(), secret: key.secret_access_key().to_string(), session: None });
    }
    iam.create_role()
        .role_name("AWSReservedSSO_QA_0123456789abcdef")
        .path("/aws-reserved/sso.amazonaws.com/eu-west-1/")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
        .unwrap();
    let creds = aws_sdk_ec2::config::Credentials::new(&users[2].key, &users[2].secret, None, None, "test");
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(moto)
        .credentials_provider(creds)
        .load()
        .await;
    let assumed = aws_sdk_sts::Client::new(&conf)
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_QA_0123456789abcdef")
        .role_session_name("carol@example.com")
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap();
    let carol = Creds {
        key: c.access_key_id().to_string(),
        secret: c.secret_access_key().to_string(),
        session: Some(c.session_token().to_string()),
    };
    (users[0].clone(), users[1].clone(), carol, users[2].clone())
}

/// `hybrid` as a person: their AWS credentials, nothing else.
fn as_person(moto: &Moto, who: &Creds, args: &[&str]) -> Command {
    let mut c = crate::moto::hybrid_command(&moto.url, args);
    c.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    who.apply(&mut c);
    c
}

/// A client that presents `token` as its bearer token, over TLS to the
/// emulator, as kubectl does with an ExecCredential's token.
async fn with_token(emu: &KubeEmulator, token: &str) -> hybrid::adapters::kube::KubeClient {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(crate::render::test_secrets().ca_cert_pem);
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\n    tls-server-name: 10.42.0.10\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
        emu.url
    );
    hybrid::adapters::kube::KubeClient::from_kubeconfig_yaml(&yaml).await.unwrap()
}

/// The ExecCredential a command line prints, checked for its shape.
fn credential(out: std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(v["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(v["kind"], "ExecCredential");
    assert!(v["status"]["expirationTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    v["status"]["token"].as_str().unwrap().to_string()
}

fn status(r: &Result<Value, hybrid::adapters::kube::KubeError>) -> Option<u16> {
    match r {
        Ok(_) => Some(200),
        Err(e) => e.status,
    }
}

/// The whole login path the way a team uses it: `[access]` in the file,
/// `hybrid apply` converging aws-auth and the bindings, people getting
/// tokens (`hybrid token`, and the command `hybrid kubeconfig` writes for
/// kubectl), and a strict API server that authenticates them the way
/// aws-iam-authenticator does (the signature checked against moto's STS,
/// the ARN canonicalized, aws-auth consulted) and authorizes by RBAC.
#[test]
fn access_gives_each_aws_identity_exactly_its_role() {
    let moto = Moto::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (alice, bob, carol, dave) = rt.block_on(identities(&moto.url));
    let emu = KubeEmulator::start_with(crate::kube::Options {
        tls_for: Some("10.42.0.10"),
        rbac: true,
        iam: Some((moto.url.clone(), "hybrid-access-us-east-1".into())),
        ..Default::default()
    });
    seed_secrets(&moto, "access");
    let file = write_cluster("access", 1);
    let base = std::fs::read_to_string(&file).unwrap();
    let sso_role = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_QA_0123456789abcdef";
    std::fs::write(
        &file,
        format!(
            "{base}[access]\nadmins = [\"arn:aws:iam::123456789012:user/alice\"]\neditors = [\"arn:aws:iam::123456789012:user/bob\"]\nviewers = [\"{sso_role}\"]\n"
        ),
    )
    .unwrap();
    let _kubelets = crate::e2e::Kubelets::start(moto.url.clone(), emu.url.clone(), "access", &[]);
    let apply = |what: &str| {
        let mut c = crate::moto::hybrid_command(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]);
        c.args(["--api-server", &emu.url, "--poll-ms", "200"]);
        let out = finish(c.spawn().unwrap());
        assert_eq!(out.status.code(), Some(0), "{what}: {}\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stderr)
    };
    let progress = apply("first apply");
    assert!(progress.contains("ConfigMap/aws-auth created"), "{progress}");

    let token = |who: &Creds| credential(as_person(&moto, who, &["token", "--name", "access", "--region", "us-east-1"]).output().unwrap());
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "game", "namespace": "default" },
        "spec": { "selector": { "matchLabels": { "app": "game" } }, "template": { "metadata": { "labels": { "app": "game" } }, "spec": { "containers": [{ "name": "g", "image": "registry.example/game:1" }] } } },
    });
    let binding = |name: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": { "name": name, "namespace": "default" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory" }],
        })
    };
    rt.block_on(async {
        // The viewer, an Identity Center user: their own name, read-only.
        let api = with_token(&emu, &token(&carol)).await;
        let me = api.get("/_test/whoami").await.unwrap().unwrap();
        assert_eq!(me["user"], "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_QA_0123456789abcdef/carol-example.com", "{me}");
        assert!(me["groups"].as_array().unwrap().contains(&json!("hybrid:viewers")), "{me}");
        assert!(api.list("/api/v1/namespaces/default/pods", None, None).await.is_ok());
        assert_eq!(status(&api.create("/apis/apps/v1/namespaces/default/deployments", &deployment).await), Some(403));

        // The editor: workloads yes, RBAC no, and nothing in kube-system,
        // where `edit` would let them rewrite aws-auth and so become admin.
        let api = with_token(&emu, &token(&bob)).await;
        assert_eq!(status(&api.create("/apis/apps/v1/namespaces/default/deployments", &deployment).await), Some(200));
        assert_eq!(
            status(&api.create("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", &binding("by-bob")).await),
            Some(403)
        );
        let promote = json!({ "data": { "mapUsers": "- userarn: arn:aws:iam::123456789012:user/bob\n  username: bob\n  groups: [system:masters]\n" } });
        assert_eq!(status(&api.merge_patch("/api/v1/namespaces/kube-system/configmaps/aws-auth", &promote).await), Some(403));
        let mut in_system = deployment.clone();
        in_system["metadata"]["namespace"] = json!("kube-system");
        assert_eq!(status(&api.create("/apis/apps/v1/namespaces/kube-system/deployments", &in_system).await), Some(403));

        // The admin: everything.
        let api = with_token(&emu, &token(&alice)).await;
        assert_eq!(
            status(&api.create("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", &binding("by-alice")).await),
            Some(200)
        );

        // Someone with valid AWS credentials who is not in [access]: nobody.
        let api = with_token(&emu, &token(&dave)).await;
        assert_eq!(status(&api.list("/api/v1/namespaces", None, None).await.map(|_| json!({}))), Some(401));
    });

    // The kubeconfig everyone gets runs `hybrid token` for this cluster;
    // its command line, run as kubectl would (with bob's credentials), logs in.
    let path = file.parent().unwrap().join("bob.yaml");
    let out = finish(
        as_person(&moto, &bob, &["kubeconfig", file.to_str().unwrap(), "--api-server", &emu.url, "-o", path.to_str().unwrap()])
            .spawn()
            .unwrap(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("not in"), "{}", text(&out.stderr));
    let doc = crate::tools::yaml_to_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let exec = &doc[0]["users"][0]["user"]["exec"];
    assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1");
    assert_eq!(exec["interactiveMode"], "IfAvailable", "client-go refuses a v1 exec stanza without it");
    let args: Vec<&str> = exec["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args, ["token", "--name", "access", "--region", "us-east-1"]);
    assert!(doc[0]["users"][0]["user"]["client-key-data"].is_null(), "no key in an identity kubeconfig");
    let mut kubectl_runs = Command::new(exec["command"].as_str().unwrap());
    kubectl_runs
        .args(&args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", file.parent().unwrap())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    bob.apply(&mut kubectl_runs);
    kubectl_runs.env(
        "KUBERNETES_EXEC_INFO",
        r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false}}"#,
    );
    let bob_token = credential(kubectl_runs.output().unwrap());
    rt.block_on(async {
        let me = with_token(&emu, &bob_token).await.get("/_test/whoami").await.unwrap().unwrap();
        assert_eq!(me["user"], "arn:aws:iam::123456789012:user/bob", "{me}");
    });
    // Someone not in [access] is told so when they make their kubeconfig.
    let out =
        finish(as_person(&moto, &dave, &["kubeconfig", file.to_str().unwrap(), "--api-server", &emu.url, "-o", "-"]).spawn().unwrap());
    assert!(text(&out.stderr).contains("arn:aws:iam::123456789012:user/dave) are not in"), "{}", text(&out.stderr));
    // Cached: the same token until it is close to expiring.
    let again = credential(kubectl_runs.output().unwrap());
    assert_eq!(again, bob_token, "the token was not cached");

    // --merge adds the cluster to the user's kubeconfig and keeps the rest.
    let mine = file.parent().unwrap().join("config");
    std::fs::write(&mine, "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster: {server: 'https://prod.example:6443'}\nusers:\n- name: prod\n  user: {token: keep-me}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: prod}\ncurrent-context: prod\n").unwrap();
    let mut merge = as_person(&moto, &alice, &["kubeconfig", file.to_str().unwrap(), "--api-server", &emu.url, "--merge"]);
    merge.env("KUBECONFIG", format!("{}:/nonexistent/other", mine.display()));
    let out = finish(merge.spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc = crate::tools::yaml_to_json(&std::fs::read_to_string(&mine).unwrap()).unwrap();
    assert_eq!(doc[0]["current-context"], "hybrid-access");
    assert_eq!(doc[0]["users"][0]["user"]["token"], "keep-me");
    assert_eq!(doc[0]["contexts"].as_array().unwrap().len(), 2);

    // --admin: a certificate in the admin's own name (break-glass).
    let out = finish(
        as_person(&moto, &alice, &["kubeconfig", file.to_str().unwrap(), "--api-server", &emu.url, "--admin", "-o", "-"]).spawn().unwrap(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    rt.block_on(async {
        let api = hybrid::adapters::kube::KubeClient::from_kubeconfig_yaml(&text(&out.stdout)).await.unwrap();
        let me = api.get("/_test/whoami").await.unwrap().unwrap();
        assert_eq!(me["user"], "hybrid-admin:alice", "{me}");
        assert!(me["groups"].as_array().unwrap().contains(&json!("kubeadm:cluster-admins")), "{me}");
    });

    // Taking bob out of [access] takes effect on the next apply, with no
    // node touched: his token maps to nobody, and the editors' binding goes.
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("editors = [\"arn:aws:iam::123456789012:user/bob\"]\n", ""))
        .unwrap();
    let progress = apply("apply without bob");
    assert!(
        progress.contains("ConfigMap/aws-auth updated") && progress.contains("RoleBinding/hybrid:editors in default deleted"),
        "{progress}"
    );
    rt.block_on(async {
        let api = with_token(&emu, &token(&bob)).await;
        assert_eq!(status(&api.get("/_test/whoami").await.map(|_| json!({}))), Some(401));
    });
}

/// What each identity hybrid's cluster gives may do, against an API server
/// that authorizes by RBAC (and the Node authorizer) as kubeadm's does: the
/// admin certificate hybrid mints may write hybrid's objects; a Windows
/// node (whose kubelet credentials also run kube-proxy as a host service)
/// may watch services and endpoint slices through hybrid's per-node
/// node-proxier binding; a Linux node, which runs kube-proxy as a
/// DaemonSet under its own service account, may not; no node reads a
/// Secret or another node; and nothing of this is granted to all nodes.
#[test]
fn each_identity_may_do_what_it_needs_and_no_more() {
    let dir = crate::util::scratch("rbac-identities");
    let (win, lin) = ("ip-10-42-0-30.ec2.internal", "ip-10-42-0-20.ec2.internal");
    let tokens = dir.join("tokens.csv");
    std::fs::write(
        &tokens,
        format!("win-node-token,system:node:{win},1,\"system:nodes\"\nlinux-node-token,system:node:{lin},2,\"system:nodes\"\n"),
    )
    .unwrap();
    let flags: &'static [&'static str] =
        Box::leak(vec!["--token-auth-file", Box::leak(tokens.display().to_string().into_boxed_str()) as &str].into_boxed_slice());
    let emu = KubeEmulator::start_with(crate::kube::Options { tls_for: Some("10.42.0.10"), rbac: true, flags, ..Default::default() });
    let spec = crate::render::spec("clusters/dev.toml");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let admin = emu.client().await;
        let calico = hybrid::cluster::objects::CalicoApi::detect(&admin.api_groups().await.unwrap());
        let objects = hybrid::cluster::objects::desired_objects(&spec, calico, "10.42.0.10", &[win.to_string()], &[]);
        hybrid::cluster::converge::converge_objects(&admin, &objects, &|_: &str| {}).await.expect("the admin writes hybrid's objects");
        for name in [win, lin] {
            let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } });
            admin.create("/api/v1/nodes", &node).await.unwrap();
        }
        let (win_api, lin_api) = (with_token(&emu, "win-node-token").await, with_token(&emu, "linux-node-token").await);
        let slices = "/apis/discovery.k8s.io/v1/endpointslices";
        assert!(win_api.list(slices, None, None).await.is_ok(), "the Windows node's kube-proxy cannot watch endpoint slices");
        assert!(win_api.list("/api/v1/services", None, None).await.is_ok());
        assert_eq!(status(&lin_api.list(slices, None, None).await.map(|_| json!({}))), Some(403), "a Linux node got kube-proxy's rights");
        for (api, other) in [(&win_api, lin), (&lin_api, win)] {
            assert_eq!(status(&api.list("/api/v1/namespaces/kube-system/secrets", None, None).await.map(|_| json!({}))), Some(403));
            let label = json!({ "metadata": { "labels": { "x": "y" } } });
            assert_eq!(status(&api.merge_patch(&format!("/api/v1/nodes/{other}"), &label).await), Some(403), "a node wrote another node");
        }
        assert!(win_api.get(&format!("/api/v1/nodes/{win}")).await.unwrap().is_some(), "a node reads itself");
    });
}
