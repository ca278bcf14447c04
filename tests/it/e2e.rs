//! `hybrid apply` end to end against moto (EC2 + SSM) and the Kubernetes
//! emulator together. The emulator plays the nodes: a helper registers a
//! Node named after each instance's private DNS name and marks it Ready, as
//! kubelet would after the bootstrap, so the whole apply finishes as on AWS.
//! What this cannot prove: that the user data really boots a node, and that
//! real Calico/flannel pick up the objects (no controllers run here).

use std::collections::BTreeSet;
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use hybrid::adapters::kube::KubeApi;
use serde_json::{Value, json};

use crate::kube::KubeEmulator;
use crate::moto::Moto;
use crate::util::text;

pub(crate) fn write_cluster(name: &str, linux: u32) -> std::path::PathBuf {
    let dir = crate::util::scratch(&format!("e2e-{name}"));
    let path = dir.join("cluster.toml");
    std::fs::write(
        &path,
        format!(
            r#"[cluster]
name = "{name}"
region = "us-east-1"
kubernetes_version = "1.36"
[network]
vpc_cidr = "10.42.0.0/16"
[control_plane]
instance_type = "t3.large"
[[pool]]
name = "game"
os = "linux"
instance_type = "c6i.large"
count = {linux}
labels = {{ "game.example.com/role" = "server" }}
[[pool]]
name = "win"
os = "windows-2022"
instance_type = "m6i.xlarge"
count = 1
labels = {{ "game.example.com/role" = "tools" }}
"#
        ),
    )
    .unwrap();
    path
}

/// Stores the test cluster CA (tests/fixtures/pki) as the cluster's secrets
/// before its first apply, so a TLS emulator can present a server
/// certificate that CA signed and check the admin certificates hybrid mints.
pub(crate) fn seed_secrets(moto: &Moto, cluster: &str) {
    rt().block_on(async {
        let ssm = crate::moto::aws_clients(&moto.url).await.1;
        ssm.put_parameter()
            .name(format!("/hybrid/{cluster}/secrets"))
            .value(crate::render::test_secrets().to_stored())
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .tags(aws_sdk_ssm::types::Tag::builder().key("hybrid:cluster").value(cluster).build().unwrap())
            .send()
            .await
            .unwrap();
    });
}

/// hybrid against moto, reaching the emulator as the cluster's API server
/// and looking often while waiting.
fn hybrid(moto: &Moto, emu: &KubeEmulator, args: &[&str]) -> Command {
    let mut c = hybrid_aws(moto, args);
    c.args(["--api-server", &emu.url, "--poll-ms", "200"]);
    c
}

fn hybrid_aws(moto: &Moto, args: &[&str]) -> Command {
    crate::moto::hybrid_command(&moto.url, args)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Plays kubelet: registers a Ready Node for every running instance of the
/// cluster (except those in `skip`), `delay` after first seeing it (a real
/// node takes minutes), until stopped.
pub(crate) struct Kubelets {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kubelets {
    pub(crate) fn start(moto_url: String, emu_url: String, cluster: &'static str, skip: &'static [&'static str]) -> Self {
        Self::with_delay(moto_url, emu_url, cluster, skip, Duration::ZERO)
    }

    fn with_delay(moto_url: String, emu_url: String, cluster: &'static str, skip: &'static [&'static str], delay: Duration) -> Self {
        Self::run(moto_url, emu_url, cluster, skip, &[], delay)
    }

    /// Nodes in `not_ready` register but stay NotReady, as a kubelet
    /// without a working CNI does.
    fn run(
        moto_url: String,
        emu_url: String,
        cluster: &'static str,
        skip: &'static [&'static str],
        not_ready: &'static [&'static str],
        delay: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            rt().block_on(async move {
                let ec2 = crate::moto::aws_clients(&moto_url).await.0;
                let emu = KubeEmulator { child: None, tls_server_name: emu_url.starts_with("https").then(|| "10.42.0.10".to_string()), url: emu_url };
                let api = emu.client().await;
                let mut registered = BTreeSet::new();
                let mut first_seen: std::collections::BTreeMap<String, std::time::Instant> = Default::default();
                while !flag.load(Ordering::Relaxed) {
                    let out = ec2
                        .describe_instances()
                        .filters(Filter::builder().name("tag:hybrid:cluster").values(cluster).build())
                        .filters(Filter::builder().name("instance-state-name").values("running").build())
                        .send()
                        .await
                        .unwrap();
                    for i in out.reservations().iter().flat_map(|r| r.instances()) {
                        let slot = i.tags().iter().find(|t| t.key() == Some("hybrid:slot")).and_then(|t| t.value()).unwrap_or_default().to_string();
                        let Some(dns) = i.private_dns_name().map(str::to_string) else { continue };
                        let seen = *first_seen.entry(dns.clone()).or_insert_with(std::time::Instant::now);
                        if skip.contains(&slot.as_str()) || seen.elapsed() < delay || !registered.insert(dns.clone()) {
                            continue;
                        }
                        let os = if slot.starts_with("win") { "windows" } else { "linux" };
                        let mut labels = json!({ "kubernetes.io/os": os });
                        if os == "windows" {
                            labels["node.kubernetes.io/windows-build"] = json!("10.0.20348");
                        }
                        let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
                        let ready = if not_ready.contains(&slot.as_str()) {
                            json!({ "type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized", "lastTransitionTime": now })
                        } else {
                            json!({ "type": "Ready", "status": "True", "message": "kubelet is posting ready status", "lastTransitionTime": now })
                        };
                        let node = json!({
                            "apiVersion": "v1", "kind": "Node",
                            "metadata": { "name": dns, "labels": labels },
                            "spec": {},
                            "status": { "conditions": [ready] },
                        });
                        api.create("/api/v1/nodes", &node).await.unwrap();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        });
        Kubelets { stop, thread: Some(thread) }
    }
}

impl Drop for Kubelets {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

fn writes(emu: &KubeEmulator) -> u64 {
    rt().block_on(async {
        let api = emu.client().await;
        api.get("/_test/writes").await.unwrap().unwrap()["writes"].as_u64().unwrap()
    })
}

#[test]
fn apply_brings_the_whole_cluster_to_ready_and_a_second_apply_writes_nothing() {
    let moto = Moto::start();
    // A strict server that defaults fields and plays the Tigera operator's
    // write-backs, over TLS with the cluster CA's certificate for the
    // control plane's private address (10.42.0.10), as kubeadm issues it.
    let emu = KubeEmulator::start_with(crate::kube::Options { operator: true, tls_for: Some("10.42.0.10"), ..Default::default() });
    seed_secrets(&moto, "omega");
    let file = write_cluster("omega", 2);
    // Nodes register a while after launch, so apply must keep a join token.
    let _kubelets = Kubelets::with_delay(moto.url.clone(), emu.url.clone(), "omega", &[], Duration::from_secs(2));
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("Cluster omega converged: 4 node(s) Ready."), "{stdout}");
    for needle in [
        "IPAMConfig/default created",
        "FelixConfiguration/default created",
        "RuntimeClass/windows-2022 created",
        "ClusterRoleBinding/hybrid:node-proxier:",
        "node win-0 (",
        "Ready (",
    ] {
        assert!(stderr.contains(needle), "missing `{needle}` in:\n{stderr}");
    }
    rt().block_on(async {
        let api = emu.client().await;
        let ipam = api.get("/apis/crd.projectcalico.org/v1/ipamconfigs/default").await.unwrap().unwrap();
        assert_eq!(ipam["spec"]["strictAffinity"], true);
        let nodes = api.list("/api/v1/nodes", Some("kubernetes.io/os=windows"), None).await.unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0]["metadata"]["labels"]["game.example.com/role"], "tools");
        let taints: Vec<Value> = nodes[0]["spec"]["taints"].as_array().cloned().unwrap_or_default();
        assert_eq!(taints, vec![json!({ "key": "os", "value": "windows", "effect": "NoSchedule" })]);
        let secrets = api.list("/api/v1/namespaces/kube-system/secrets", None, None).await.unwrap();
        assert!(
            secrets.iter().all(|s| !s["metadata"]["name"].as_str().unwrap().starts_with("bootstrap-token-")),
            "the join token is removed once every node joined"
        );
    });
    let log = rt().block_on(async { emu.client().await.get("/_test/log").await.unwrap().unwrap() });
    let created_token = log.as_array().unwrap().iter().any(|e| e[0] == "POST" && e[1] == "/api/v1/namespaces/kube-system/secrets");
    assert!(created_token, "a bootstrap token Secret was created while nodes were joining");

    // The second apply writes nothing: Kubernetes writes counted by the
    // emulator, AWS writes by a proxy on the wire (not hybrid's counters).
    let before = writes(&emu);
    let wire = crate::moto::FaultProxy::start(&moto.url, 1, 0.0);
    let mut again = crate::moto::hybrid_command(&wire.url, &["apply", file.to_str().unwrap(), "--yes"]);
    again.args(["--api-server", &emu.url, "--poll-ms", "200"]);
    let out = finish(again.spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("No changes."), "{}", text(&out.stdout));
    assert_eq!(writes(&emu), before, "a second apply wrote to the Kubernetes API");
    let calls = wire.log();
    let aws_writes: Vec<&String> = calls.iter().map(|(op, _)| op).filter(|op| crate::moto::is_write(op)).collect();
    assert!(calls.len() > 5 && aws_writes.is_empty(), "{aws_writes:?} of {calls:?}");

    let out = finish(hybrid(&moto, &emu, &["plan", file.to_str().unwrap(), "--detailed-exitcode"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));

    // Status: every node, Ready, the Windows build, age and time to Ready.
    let out = finish(hybrid_aws(&moto, &["status", file.to_str().unwrap(), "--api-server", &emu.url]).spawn().unwrap());
    let table = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(table.starts_with("Cluster omega in us-east-1, no expiry\n"), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("POOL"), "{table}");
    let rows: Vec<&str> = table.lines().skip(2).collect();
    assert_eq!(rows.len(), 4, "{table}");
    assert!(rows.iter().all(|r| r.contains(" running ") && r.contains(" True ")), "{table}");
    assert!(rows.iter().any(|r| r.starts_with("win ") && r.contains("10.0.20348")), "{table}");
    let unreachable = finish(hybrid_aws(&moto, &["status", file.to_str().unwrap(), "--api-server", "http://127.0.0.1:9"]).spawn().unwrap());
    assert!(text(&unreachable.stdout).contains("node columns unknown (?)"), "{}", text(&unreachable.stdout));

    // Nothing secret on any terminal: not the CA key (PEM or base64, as a
    // kubeconfig would carry it), not the join token, from any command.
    let mut screens = vec![format!("{stdout}{stderr}")];
    let kubeconfig = file.parent().unwrap().join("omega-admin.yaml");
    let logs_dir = file.parent().unwrap().join("omega-logs");
    for args in [
        vec!["plan", file.to_str().unwrap(), "--api-server", &emu.url, "--verbose"],
        vec!["status", file.to_str().unwrap(), "--api-server", &emu.url],
        vec!["kubeconfig", file.to_str().unwrap(), "--admin", "-o", kubeconfig.to_str().unwrap(), "--api-server", &emu.url],
        vec!["logs", file.to_str().unwrap(), "control-plane", "--out", logs_dir.to_str().unwrap()],
    ] {
        let out = finish(hybrid_aws(&moto, &args).spawn().unwrap());
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
        screens.push(format!("{}{}", text(&out.stdout), text(&out.stderr)));
    }
    // --verbose shows every Kubernetes call by method and URL (the list
    // with its page size, the dry-run applies), never a body.
    let verbose = &screens[1];
    assert!(verbose.lines().any(|l| l.contains("hybrid::kube: GET /api/v1/nodes?") && l.contains("limit=500")), "{verbose}");
    assert!(verbose.contains("fieldManager=hybrid&dryRun=All"), "{verbose}");
    let stored = rt().block_on(async {
        let ssm = crate::moto::aws_clients(&moto.url).await.1;
        let p = ssm.get_parameter().name("/hybrid/omega/secrets").with_decryption(true).send().await.unwrap();
        hybrid::bootstrap::pki::ClusterSecrets::from_stored(p.parameter().unwrap().value().unwrap()).unwrap()
    });
    use base64::Engine;
    let key = stored.expose_ca_key_pem().to_string();
    let key_b64 = base64::engine::general_purpose::STANDARD.encode(&key);
    let admin_key =
        crate::tools::yaml_to_json(&std::fs::read_to_string(&kubeconfig).unwrap()).unwrap()[0]["users"][0]["user"]["client-key-data"]
            .as_str()
            .unwrap()
            .to_string();
    let forbidden = [
        key.lines().nth(1).unwrap().to_string(),
        key_b64[..48].to_string(),
        stored.token.secret().to_string(),
        admin_key[..48].to_string(),
        "PRIVATE KEY".to_string(),
    ];
    for (n, screen) in screens.iter().enumerate() {
        for f in &forbidden {
            assert!(!screen.contains(f.as_str()), "command {n} shows secret material `{}…`:\n{screen}", &f[..8]);
        }
    }
    assert!(screens[4].contains("no SSH:"), "logs does not SSH to an emulator's address: {}", screens[4]);

    // Drift inside the cluster shows in the plan, and the next apply mends it.
    rt().block_on(async {
        let api = emu.client().await;
        api.merge_patch("/apis/crd.projectcalico.org/v1/ipamconfigs/default", &json!({ "spec": { "strictAffinity": false } }))
            .await
            .unwrap();
    });
    let out = finish(hybrid(&moto, &emu, &["plan", file.to_str().unwrap(), "--detailed-exitcode"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("~ IPAMConfig/default"), "{}", text(&out.stdout));
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("IPAMConfig/default updated"), "{}", text(&out.stderr));
}

/// A node that never registers and one that stays NotReady: the timeout
/// names exactly those two, with the kubelet's last condition and the
/// console output, and the join token they would need stays in place with
/// the content kubeadm join expects.
/// A node whose instance is gone (a destroy in between, a spot
/// interruption) is named with its instance's state within a few polls,
/// not waited for until the node timeout; and a run that fails on the
/// cluster side never says "Apply complete!".
#[test]
fn a_node_whose_instance_is_gone_is_named_at_once_and_a_failed_apply_is_not_complete() {
    instance_ended_while_apply_waits("gone", &["terminated", "shutting-down"]);
}

/// A stopped instance (a person, a spot interruption that stops) never
/// registers either: named at once too, not at the timeout.
#[test]
fn a_node_whose_instance_was_stopped_is_named_at_once() {
    instance_ended_while_apply_waits("stopped", &["stopped", "stopping"]);
}

/// win-0 never registers; its instance is ended (terminated, or stopped)
/// while apply waits for it; apply names it in one of `states` at once.
fn instance_ended_while_apply_waits(name: &'static str, states: &[&str]) {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    let file = write_cluster(name, 1);
    let _kubelets = Kubelets::start(moto.url.clone(), emu.url.clone(), name, &["win-0"]);
    let child = hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "10m"]).spawn().unwrap();
    let start = std::time::Instant::now();
    let win = loop {
        if let Some(id) = rt().block_on(async {
            let ec2 = crate::moto::aws_clients(&moto.url).await.0;
            let out = ec2
                .describe_instances()
                .filters(aws_sdk_ec2::types::Filter::builder().name("tag:hybrid:slot").values("win-0").build())
                .send()
                .await
                .unwrap();
            out.reservations().iter().flat_map(|r| r.instances()).find_map(|i| i.instance_id().map(str::to_string))
        }) {
            break id;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "win-0 was never launched");
        std::thread::sleep(Duration::from_millis(200));
    };
    // Ended once apply waits for the nodes (it lists them), not at a guessed time.
    crate::util::wait_for("apply waits for the nodes", Duration::from_secs(60), || {
        let log = rt().block_on(async { emu.client().await.get("/_test/log").await.unwrap().unwrap() });
        log.as_array().unwrap().iter().any(|e| e[0] == "GET" && e[1] == "/api/v1/nodes")
    });
    rt().block_on(async {
        let ec2 = crate::moto::aws_clients(&moto.url).await.0;
        if states.contains(&"stopped") {
            ec2.stop_instances().instance_ids(&win).send().await.unwrap();
        } else {
            ec2.terminate_instances().instance_ids(&win).send().await.unwrap();
        }
    });
    let out = finish(child);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(states.iter().any(|state| stderr.contains(&format!("its instance {win} is {state}"))), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(120), "named at once, not at the 10-minute timeout: {:?}", start.elapsed());
    assert!(!stdout.contains("Apply complete!") && !stderr.contains("Apply complete!"), "a failed run is not complete:\n{stdout}");
}

#[test]
fn nodes_that_never_become_ready_are_named_with_their_console_output() {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    let file = write_cluster("sigma", 2);
    let _kubelets = Kubelets::run(moto.url.clone(), emu.url.clone(), "sigma", &["win-0"], &["game-1"], Duration::ZERO);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "3"]).spawn().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report = stderr.split("not Ready after 3s:").nth(1).unwrap_or_else(|| panic!("no report in:\n{stderr}"));
    assert!(stderr.contains("2 node(s) not Ready after 3s"), "{stderr}");
    let (win, game1, game0) = (slot_node(&moto, "win-0"), slot_node(&moto, "game-1"), slot_node(&moto, "game-0"));
    assert!(report.contains(&format!("win-0 ({win}, i-")) && report.contains("not registered"), "{report}");
    assert!(
        report.contains(&format!("game-1 ({game1}, i-")) && report.contains("NotReady: container runtime network not ready"),
        "the kubelet's last condition is shown: {report}"
    );
    assert!(report.contains("console:"), "the console output tail is shown: {report}");
    assert!(!report.contains(&game0) && !report.contains("control-plane ("), "only the nodes that are not Ready: {report}");

    // The join token stays while nodes are missing, as kubeadm join reads it
    // (bootstrap token Secret format, k8s.io/docs reference/access-authn-authz/bootstrap-tokens).
    let stored = rt().block_on(async {
        let ssm = crate::moto::aws_clients(&moto.url).await.1;
        let p = ssm.get_parameter().name("/hybrid/sigma/secrets").with_decryption(true).send().await.unwrap();
        hybrid::bootstrap::pki::ClusterSecrets::from_stored(p.parameter().unwrap().value().unwrap()).unwrap()
    });
    let secret = rt().block_on(async {
        emu.client().await.get(&format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{}", stored.token.id())).await.unwrap()
    });
    let secret = secret.expect("the bootstrap token Secret exists while nodes are missing");
    use base64::Engine;
    let data = |k: &str| {
        let v = secret["data"][k].as_str().or(secret["stringData"][k].as_str()).unwrap_or_else(|| panic!("no {k} in {secret}"));
        base64::engine::general_purpose::STANDARD.decode(v).map(|b| String::from_utf8(b).unwrap()).unwrap_or_else(|_| v.to_string())
    };
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");
    assert_eq!(data("token-id"), stored.token.id());
    assert_eq!(data("token-secret"), stored.token.secret());
    assert_eq!(data("usage-bootstrap-authentication"), "true");
    assert_eq!(data("usage-bootstrap-signing"), "true");
    assert_eq!(data("auth-extra-groups"), "system:bootstrappers:kubeadm:default-node-token");
    let expires = time::OffsetDateTime::parse(&data("expiration"), &time::format_description::well_known::Rfc3339).unwrap();
    let left = expires - time::OffsetDateTime::now_utc();
    assert!(left > time::Duration::minutes(90) && left <= time::Duration::hours(2), "valid for about 2h: {left}");
}

#[test]
fn scale_down_drains_the_node_before_terminating_it() {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    let file = write_cluster("tau", 2);
    let _kubelets = Kubelets::start(moto.url.clone(), emu.url.clone(), "tau", &[]);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // A workload pod and a DaemonSet pod on game-1's node (the slot scale-down removes).
    let game1_node = slot_node(&moto, "game-1");
    rt().block_on(async {
        let api = emu.client().await;
        for (name, owner) in [("web-1", None), ("calico-node-x", Some("DaemonSet"))] {
            let mut pod = ready_pod(name, &game1_node);
            if let Some(kind) = owner {
                pod["metadata"]["ownerReferences"] = json!([{ "kind": kind, "name": "calico-node", "apiVersion": "apps/v1", "uid": "1" }]);
            }
            create_ready(&api, &pod).await;
        }
    });

    let file = write_cluster("tau", 1);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes"]).spawn().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let at = |needle: &str| stderr.find(needle).unwrap_or_else(|| panic!("missing `{needle}` in:\n{stderr}"));
    let cordon = at(&format!("node {game1_node}: cordoned"));
    let evicted = at(&format!("node {game1_node}: evicted default/"));
    let deleted = at(&format!("node {game1_node}: drained and deleted"));
    let terminate = at("terminating 1 instance(s)");
    assert!(cordon < evicted && evicted < deleted && deleted < terminate, "drain must precede termination:\n{stderr}");
    rt().block_on(async {
        let api = emu.client().await;
        assert!(api.get(&format!("/api/v1/nodes/{game1_node}")).await.unwrap().is_none());
        assert!(api.get("/api/v1/namespaces/default/pods/web-1").await.unwrap().is_none(), "the workload was evicted");
        assert!(api.get("/api/v1/namespaces/default/pods/calico-node-x").await.unwrap().is_some(), "DaemonSet pods are not evicted");
    });
}

#[test]
fn a_disruption_budget_that_blocks_the_drain_stops_before_terminating() {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    let file = write_cluster("upsilon", 2);
    let _kubelets = Kubelets::start(moto.url.clone(), emu.url.clone(), "upsilon", &[]);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let game1_node = slot_node(&moto, "game-1");
    rt().block_on(async {
        let api = emu.client().await;
        let mut db = ready_pod("db-0", &game1_node);
        db["metadata"]["labels"] = json!({ "app": "db" });
        create_ready(&api, &db).await;
        api.create("/apis/policy/v1/namespaces/default/poddisruptionbudgets", &json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": { "name": "db", "namespace": "default" }, "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "db" } } } })).await.unwrap();
    });
    let out = finish(
        hybrid(&moto, &emu, &["apply", write_cluster("upsilon", 1).to_str().unwrap(), "--yes", "--drain-timeout", "2"]).spawn().unwrap(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("could not drain node") && stderr.contains("evicting default/db-0 is refused for now (a PodDisruptionBudget"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was terminated"), "{stderr}");
    // Read from EC2, not from hybrid's words: both workers still run.
    let running: Vec<String> = crate::ec2::instance_slots(&moto.url, "upsilon").into_iter().map(|(slot, _)| slot).collect();
    assert!(running.contains(&"game-1".to_string()) && running.contains(&"game-0".to_string()), "{running:?}");
    assert_eq!(slot_node(&moto, "game-1"), game1_node, "the blocked node's instance is the same one, running");

    // The file reverted: the node hybrid cordoned for a removal that did
    // not happen is not left cordoned. plan shows it, apply uncordons it.
    let file = write_cluster("upsilon", 2);
    let unschedulable = || {
        rt().block_on(async {
            emu.client().await.get(&format!("/api/v1/nodes/{game1_node}")).await.unwrap().unwrap()["spec"]["unschedulable"].clone()
        })
    };
    assert_eq!(unschedulable(), json!(true), "the blocked drain left it cordoned");
    let plan = finish(hybrid(&moto, &emu, &["plan", file.to_str().unwrap(), "--detailed-exitcode"]).spawn().unwrap());
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan.stdout));
    assert!(
        text(&plan.stdout).contains(&format!("Node/{game1_node} (uncordon: hybrid cordoned it for a removal that did not happen")),
        "{}",
        text(&plan.stdout)
    );
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("uncordoned") || text(&out.stderr).contains("uncordon"), "{}", text(&out.stderr));
    assert!(unschedulable().is_null() || unschedulable() == json!(false), "{}", unschedulable());
}

/// Day-2 edits: a label change replaces nothing (apply writes it through
/// the API); a new instance type replaces the pool rolling, one node at a
/// time (drain, terminate, launch, wait Ready, then the next); another patch
/// release keeps the control plane, with a note; a new Kubernetes minor is
/// shown as recreating the cluster and refused without
/// --recreate-control-plane, with nothing changed.
#[test]
fn day2_edits_roll_workers_and_never_recreate_the_cluster_by_surprise() {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    let file = write_cluster("chi", 2);
    let _kubelets = Kubelets::with_delay(moto.url.clone(), emu.url.clone(), "chi", &[], Duration::from_millis(1500));
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let edit = |from: &str, to: &str| {
        let body = std::fs::read_to_string(&file).unwrap();
        assert!(body.contains(from), "{from} not in the file");
        std::fs::write(&file, body.replacen(from, to, 1)).unwrap();
    };
    let ids = || {
        let mut v: Vec<(String, String)> = crate::ec2::instance_slots(&moto.url, "chi");
        v.sort();
        v
    };

    // Labels: no instance changes, the Node gets the new label.
    let before = ids();
    edit(r#""game.example.com/role" = "server""#, r#""game.example.com/role" = "gameserver""#);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("No changes. Cluster chi"), "{}", text(&out.stdout));
    assert_eq!(ids(), before, "a label change replaced instances");
    let game0 = slot_node(&moto, "game-0");
    rt().block_on(async {
        let node = emu.client().await.get(&format!("/api/v1/nodes/{game0}")).await.unwrap().unwrap();
        assert_eq!(node["metadata"]["labels"]["game.example.com/role"], "gameserver");
    });

    // Instance type: rolling, one at a time, each new node Ready before the next old one goes.
    let game1 = slot_node(&moto, "game-1");
    edit(r#"instance_type = "c6i.large""#, r#"instance_type = "c6i.xlarge""#);
    let out = finish(hybrid(&moto, &emu, &["plan", file.to_str().unwrap(), "--ec2-only"]).spawn().unwrap());
    let plan = text(&out.stdout);
    assert!(plan.contains("Pool game: 2 node(s) replaced rolling, 1 at a time"), "{plan}");
    assert!(plan.contains("because instance type c6i.large → c6i.xlarge"), "{plan}");
    assert!(!plan.lines().any(|l| l.contains(" instance ") && l.contains("control-plane")), "{plan}");
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let at = |needle: &str| stderr.find(needle).unwrap_or_else(|| panic!("missing `{needle}` in:\n{stderr}"));
    let batch1 = at("pool game: replacing batch 1/2 (game-0)");
    let drained0 = at(&format!("node {game0}: drained and deleted"));
    let launched0 = at("[game] game-0 launched");
    let ready0 = stderr[launched0..].find("node game-0 (").map(|i| i + launched0).expect("the new game-0 is waited for");
    let batch2 = at("pool game: replacing batch 2/2 (game-1)");
    let drained1 = at(&format!("node {game1}: drained and deleted"));
    assert!(batch1 < drained0 && drained0 < launched0 && launched0 < ready0 && ready0 < batch2 && batch2 < drained1, "{stderr}");
    let after = ids();
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(after.iter().filter(|(slot, _)| slot == "control-plane").count(), 1);
    assert!(after.iter().any(|a| before.iter().any(|b| b == a && a.0 == "control-plane")), "the control plane stays: {after:?}");

    // Another patch release of the same minor: the workers would roll to it;
    // the control plane (and etcd) stays, and the plan says it keeps its own.
    let latest = hybrid::versions::KUBERNETES.iter().find(|k| k.minor == 36).unwrap().latest_patch;
    edit(r#"kubernetes_version = "1.36""#, &format!(r#"kubernetes_version = "1.36.{}""#, latest - 1));
    let out = finish(hybrid(&moto, &emu, &["plan", file.to_str().unwrap(), "--ec2-only"]).spawn().unwrap());
    let plan = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{plan}{}", text(&out.stderr));
    assert!(!plan.lines().any(|l| l.contains(" instance ") && l.contains("control-plane")), "{plan}");
    assert!(!plan.contains("RECREATES"), "{plan}");
    assert!(plan.contains("Pool game: 2 node(s) replaced rolling, 1 at a time"), "{plan}");
    let note = format!("Note: The control plane keeps Kubernetes 1.36.{latest} (the file asks for 1.36.{})", latest - 1);
    assert!(plan.contains(&note), "{plan}");
    edit(&format!(r#"kubernetes_version = "1.36.{}""#, latest - 1), r#"kubernetes_version = "1.36""#);

    // A Kubernetes version change: recreate, shown and refused.
    edit(r#"kubernetes_version = "1.36""#, r#"kubernetes_version = "1.37""#);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes"]).spawn().unwrap());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("-/+! instance"), "{stdout}");
    assert!(stdout.contains("Warning: this plan RECREATES THE CLUSTER."), "{stdout}");
    assert!(stderr.contains("--recreate-control-plane"), "{stderr}");
    assert_eq!(ids(), after, "a refused plan changed instances");
}

/// A spot interruption (or a failed host): AWS terminates a worker's
/// instance; its kubelet stops and the node controller marks the Node
/// Unknown. The emulator, as a real API server, keeps that Node and leaves
/// its pods Terminating (--dead-nodes). The next plan shows both sides: a
/// new instance for the slot and the dead Node to remove. apply launches
/// the replacement, and drains the dead node without waiting for what can
/// never end (its pod is guarded by a disruption budget that would block an
/// eviction forever: nothing of it runs, so it is deleted) and removes it,
/// long before the drain timeout. The plan after that is clean.
#[test]
fn an_instance_aws_terminated_is_replaced_and_its_dead_node_removed_at_once() {
    let moto = Moto::start();
    let emu = KubeEmulator::start_with(crate::kube::Options { flags: &["--dead-nodes"], ..Default::default() });
    let file = write_cluster("spotted", 2);
    let _kubelets = Kubelets::start(moto.url.clone(), emu.url.clone(), "spotted", &[]);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dead = slot_node(&moto, "game-1");
    let id = crate::ec2::instance_slots(&moto.url, "spotted").into_iter().find(|(slot, _)| slot == "game-1").unwrap().1;
    rt().block_on(async {
        let api = emu.client().await;
        create_ready(&api, &ready_pod("web-1", &dead)).await;
        let pdb = json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": { "name": "web", "namespace": "default" },
                          "spec": { "minAvailable": 1, "selector": { "matchLabels": { "app": "web-1" } } } });
        api.create("/apis/policy/v1/namespaces/default/poddisruptionbudgets", &pdb).await.unwrap();
        let ec2 = crate::moto::aws_clients(&moto.url).await.0;
        ec2.terminate_instances().instance_ids(id).send().await.unwrap();
        let unknown = json!({ "status": { "conditions": [{ "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status." }] } });
        api.merge_patch(&format!("/api/v1/nodes/{dead}/status"), &unknown).await.unwrap();
    });

    let plan = finish(hybrid(&moto, &emu, &["plan", file.to_str().unwrap(), "--detailed-exitcode"]).spawn().unwrap());
    let shown = text(&plan.stdout);
    assert_eq!(plan.status.code(), Some(2), "{shown}{}", text(&plan.stderr));
    assert!(shown.lines().any(|l| l.contains("instance") && l.contains("game-1") && l.trim_start().starts_with('+')), "{shown}");
    assert!(shown.contains(&format!("Node/{dead} (its instance is gone")), "the dead node is in the plan:\n{shown}");
    assert!(shown.contains("; Kubernetes objects: 0 to create, 0 to change, 1 to delete."), "one summary for both sides:\n{shown}");

    let start = std::time::Instant::now();
    let out = finish(
        hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60", "--drain-timeout", "10m"]).spawn().unwrap(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(120), "waited for the dead node: {:?}", start.elapsed());
    assert!(stderr.contains(&format!("node {dead}: deleted default/web-1 (its instance is gone")), "{stderr}");
    assert!(stderr.contains(&format!("node {dead}: drained and deleted")), "{stderr}");
    rt().block_on(async {
        let api = emu.client().await;
        assert!(api.get(&format!("/api/v1/nodes/{dead}")).await.unwrap().is_none(), "the dead Node is still there");
        let pod = api.get("/api/v1/namespaces/default/pods/web-1").await.unwrap();
        assert!(
            pod.as_ref().is_none_or(|p| !p["metadata"]["deletionTimestamp"].is_null()),
            "the dead node's pod was left running: {pod:?}"
        );
    });
    assert_ne!(slot_node(&moto, "game-1"), dead, "game-1 was not replaced");
    let plan = finish(hybrid(&moto, &emu, &["plan", file.to_str().unwrap(), "--detailed-exitcode"]).spawn().unwrap());
    assert_eq!(plan.status.code(), Some(0), "{}{}", text(&plan.stdout), text(&plan.stderr));
}

/// Scaling down a node that no longer answers (NotReady, its instance
/// still there): its evicted pods stay Terminating, since no kubelet
/// confirms their end; the drain says so and goes on instead of waiting
/// for them until the drain timeout.
#[test]
fn draining_a_node_that_does_not_answer_does_not_wait_for_its_pods() {
    let moto = Moto::start();
    let emu = KubeEmulator::start_with(crate::kube::Options { flags: &["--dead-nodes"], ..Default::default() });
    let file = write_cluster("mute", 2);
    let _kubelets = Kubelets::start(moto.url.clone(), emu.url.clone(), "mute", &[]);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mute = slot_node(&moto, "game-1");
    rt().block_on(async {
        let api = emu.client().await;
        create_ready(&api, &ready_pod("web-1", &mute)).await;
        let unknown = json!({ "status": { "conditions": [{ "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status." }] } });
        api.merge_patch(&format!("/api/v1/nodes/{mute}/status"), &unknown).await.unwrap();
    });
    let file = write_cluster("mute", 1);
    let start = std::time::Instant::now();
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--drain-timeout", "10m"]).spawn().unwrap());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(120), "waited for the mute node: {:?}", start.elapsed());
    assert!(stderr.contains(&format!("node {mute}: evicted default/web-1")), "{stderr}");
    assert!(stderr.contains(&format!("node {mute}: NotReady: not waiting for 1 pod(s) to finish terminating")), "{stderr}");
    rt().block_on(async {
        let api = emu.client().await;
        assert!(api.get(&format!("/api/v1/nodes/{mute}")).await.unwrap().is_none());
    });
}

/// The path real AWS takes, run here: no `--api-server`, so apply reaches
/// the API server at the control plane's public address and checks its
/// certificate as the private one's. moto invents that public address and
/// it belongs to a stranger, so hybrid's connection layer maps it (and only
/// it, and only to loopback) to the emulator through HYBRID_TEST_CONNECT_TO.
/// A server whose certificate names another address is refused; a mapping
/// of any other address, or to a non-loopback target, is never used.
#[test]
fn the_public_address_path_is_taken_and_the_certificate_checked() {
    let moto = Moto::start();
    let emu = KubeEmulator::start_with(crate::kube::Options { tls_for: Some("10.42.0.10"), ..Default::default() });
    let impostor = KubeEmulator::start_with(crate::kube::Options { tls_for: Some("10.42.0.99"), ..Default::default() });
    let file = write_cluster("public", 1);
    seed_secrets(&moto, "public");
    let f = file.to_str().unwrap();
    let out = finish(hybrid_aws(&moto, &["apply", f, "--yes", "--ec2-only"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let public = rt().block_on(async {
        let ec2 = crate::moto::aws_clients(&moto.url).await.0;
        let out = ec2
            .describe_instances()
            .filters(Filter::builder().name("tag:hybrid:cluster").values("public").build())
            .filters(Filter::builder().name("tag:hybrid:slot").values("control-plane").build())
            .send()
            .await
            .unwrap();
        out.reservations()[0].instances()[0].public_ip_address().expect("moto gives the control plane a public address").to_string()
    });
    let port = |e: &KubeEmulator| e.url.rsplit(':').next().unwrap().to_string();
    let mapped = |to: &str, args: &[&str]| {
        let mut c = hybrid_aws(&moto, args);
        c.args(["--poll-ms", "200"]).env("HYBRID_TEST_CONNECT_TO", to);
        finish(c.spawn().unwrap())
    };

    // Not the control plane's public address, or not loopback: never used.
    for rule in [format!("10.42.0.10:6443:127.0.0.1:{}", port(&emu)), format!("{public}:6443:192.0.2.1:{}", port(&emu))] {
        let plan = mapped(&rule, &["plan", f]);
        assert!(text(&plan.stdout).contains("Kubernetes: not looked at"), "{rule}: {}{}", text(&plan.stdout), text(&plan.stderr));
    }
    // A server whose certificate is not the cluster's API server's.
    let plan = mapped(&format!("{public}:6443:127.0.0.1:{}", port(&impostor)), &["plan", f]);
    let said = text(&plan.stdout);
    assert!(said.contains("cluster-level changes are unknown"), "{said}");
    assert_eq!(writes(&impostor), 0, "hybrid wrote to a server it should have refused");

    let _kubelets = Kubelets::start(moto.url.clone(), emu.url.clone(), "public", &[]);
    let out = mapped(&format!("{public}:6443:127.0.0.1:{}", port(&emu)), &["apply", f, "--yes", "--node-timeout", "60"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("node(s) Ready"), "the cluster side ran through the public address:\n{stdout}");
    assert!(writes(&emu) > 0, "nothing reached the emulator");
}

/// EC2 is eventually consistent: an instance launched a moment ago can be
/// missing from a Describe. A rolling replacement launches a node and
/// waits for it to join, looking at its instance's state (by id) now and
/// then; the first looks answer nothing. That is not taken for an instance
/// that is gone, and apply converges. (It used to fail at once, naming the
/// new instance "gone".)
#[test]
fn a_new_instance_missing_from_a_describe_is_not_taken_for_gone() {
    let moto = Moto::start();
    let proxy = crate::moto::FaultProxy::start(&moto.url, 1, 0.0);
    let emu = KubeEmulator::start(false);
    let file = write_cluster("unseen", 1);
    // Nodes register 3 s after their instance shows; meanwhile apply looks.
    let _kubelets = Kubelets::with_delay(moto.url.clone(), emu.url.clone(), "unseen", &[], Duration::from_secs(3));
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A bigger disk replaces the worker, rolling.
    let body =
        std::fs::read_to_string(&file).unwrap().replace("instance_type = \"c6i.large\"", "instance_type = \"c6i.large\"\ndisk_gb = 60");
    std::fs::write(&file, body).unwrap();
    proxy.add(json!({ "op": "DescribeInstances", "match": "Filter.1.Name=instance-id", "times": 4, "fault": "empty" }));
    let mut c = crate::moto::hybrid_command(&proxy.url, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]);
    c.args(["--api-server", &emu.url, "--poll-ms", "100"]);
    let out = finish(c.spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(proxy.fired("DescribeInstances", "empty") >= 1, "the late Describe was not played: {:?}", proxy.log());
}

/// A pod on `node` with one container (a real API server requires one).
fn ready_pod(name: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": { "app": name } },
        "spec": { "nodeName": node, "containers": [{ "name": "main", "image": "registry.k8s.io/pause:3.10.2" }] },
    })
}

/// Creates the pod and, as kubelet would through the status subresource, marks it Ready.
async fn create_ready(api: &hybrid::adapters::kube::KubeClient, pod: &Value) {
    api.create("/api/v1/namespaces/default/pods", pod).await.unwrap();
    let path = format!("/api/v1/namespaces/default/pods/{}/status", pod["metadata"]["name"].as_str().unwrap());
    api.merge_patch(&path, &json!({ "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }] } }))
        .await
        .unwrap();
}

/// The private DNS name (= node name) of the instance in `slot`.
fn slot_node(moto: &Moto, slot: &str) -> String {
    rt().block_on(async {
        let out = crate::moto::aws_clients(&moto.url)
            .await
            .0
            .describe_instances()
            .filters(Filter::builder().name("tag:hybrid:slot").values(slot).build())
            .filters(Filter::builder().name("instance-state-name").values("running").build())
            .send()
            .await
            .unwrap();
        out.reservations()[0].instances()[0].private_dns_name().unwrap().to_string()
    })
}

/// `hybrid kubeconfig --admin`: a private file, nothing secret on the
/// terminal, a client certificate the cluster CA signed in the caller's
/// name, and a file kube can use.
#[test]
fn kubeconfig_is_minted_from_the_stored_ca() {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    let file = write_cluster("phi", 1);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = file.parent().unwrap();
    let path = dir.join("admin.yaml");
    let out = finish(
        hybrid_aws(&moto, &["kubeconfig", file.to_str().unwrap(), "--admin", "-o", path.to_str().unwrap(), "--api-server", &emu.url])
            .spawn()
            .unwrap(),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("context hybrid-phi-admin"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let yaml = std::fs::read_to_string(&path).unwrap();
    let doc = crate::tools::yaml_to_json(&yaml).unwrap();
    assert_eq!(doc[0]["current-context"], "hybrid-phi-admin");
    // The client certificate chains to the CA stored in SSM.
    use base64::Engine;
    let b64 = |v: &Value| String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap();
    let (ca, cert) =
        (b64(&doc[0]["clusters"][0]["cluster"]["certificate-authority-data"]), b64(&doc[0]["users"][0]["user"]["client-certificate-data"]));
    // Nothing secret on the terminal: a kubeconfig holds its key base64-encoded.
    let screen = format!("{stdout}{}", text(&out.stderr));
    let key_b64 = doc[0]["users"][0]["user"]["client-key-data"].as_str().unwrap();
    let key_pem = b64(&doc[0]["users"][0]["user"]["client-key-data"]);
    let key_body = key_pem.lines().nth(1).unwrap();
    for secret in [key_b64, &key_b64[..40], key_body, "PRIVATE KEY"] {
        assert!(!screen.contains(secret), "the terminal shows key material: {screen}");
    }
    std::fs::write(dir.join("ca.crt"), &ca).unwrap();
    std::fs::write(dir.join("client.crt"), &cert).unwrap();
    // A working day, then a fresh one from `hybrid kubeconfig`.
    let dates =
        Command::new("openssl").args(["x509", "-noout", "-startdate", "-enddate", "-in"]).arg(dir.join("client.crt")).output().unwrap();
    let dates = text(&dates.stdout);
    let field = |k: &str| dates.lines().find_map(|l| l.strip_prefix(k)).unwrap().to_string();
    let format = time::format_description::parse("[month repr:short] [day padding:space] [hour]:[minute]:[second] [year]").unwrap();
    let parse = |d: String| time::PrimitiveDateTime::parse(d.trim_end_matches(" GMT"), &format).unwrap();
    let lifetime = parse(field("notAfter=")) - parse(field("notBefore="));
    assert!(lifetime > time::Duration::hours(23) && lifetime <= time::Duration::hours(25), "{dates}");
    let verify = Command::new("openssl").args(["verify", "-CAfile"]).arg(dir.join("ca.crt")).arg(dir.join("client.crt")).output().unwrap();
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    let subject = Command::new("openssl").args(["x509", "-noout", "-subject", "-in"]).arg(dir.join("client.crt")).output().unwrap();
    assert!(text(&subject.stdout).contains("kubeadm:cluster-admins"), "{}", text(&subject.stdout));
    // In the caller's name (moto's default caller is user/moto), for the audit log.
    assert!(
        text(&subject.stdout).contains("CN=hybrid-admin:moto") || text(&subject.stdout).contains("CN = hybrid-admin:moto"),
        "{}",
        text(&subject.stdout)
    );
    // And it works as a kubeconfig.
    rt().block_on(async {
        let api = hybrid::adapters::kube::KubeClient::from_kubeconfig_yaml(&yaml).await.unwrap();
        assert!(api.get("/version").await.unwrap().is_some());
    });

    // An API server that does not answer: "no changes" would be a claim about
    // a cluster nobody looked at, so --detailed-exitcode fails instead.
    let closed = format!("http://127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let out = finish(hybrid_aws(&moto, &["plan", file.to_str().unwrap(), "--detailed-exitcode", "--api-server", &closed]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("the cluster side is unknown"), "{}", text(&out.stderr));
    let out = finish(hybrid_aws(&moto, &["plan", file.to_str().unwrap(), "--detailed-exitcode", "--ec2-only"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "the AWS side alone is known and clean: {}", text(&out.stdout));
}

/// `hybrid verify` against the emulator: the workload and every check Job
/// are created, each Job's outcome (set here, as the Job controller would)
/// is read back and reported, a failure fails the run, and everything is
/// deleted afterwards. The emulator cannot prove the checks' commands work
/// on real nodes: no pods run here.
#[test]
fn verify_reports_each_check_and_cleans_up() {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    let file = write_cluster("chi", 1);
    let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]).spawn().unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A cluster out of reach fails at once, not after the checks' timeout.
    let start = std::time::Instant::now();
    let closed = finish(
        hybrid_aws(&moto, &["verify", file.to_str().unwrap(), "--api-server", "http://127.0.0.1:9", "--check-timeout", "10m"])
            .spawn()
            .unwrap(),
    );
    assert_eq!(closed.status.code(), Some(1), "{}", text(&closed.stderr));
    assert!(start.elapsed() < Duration::from_secs(60), "verify waited {:?} for a cluster out of reach", start.elapsed());
    let child =
        hybrid_aws(&moto, &["verify", file.to_str().unwrap(), "--api-server", &emu.url, "--poll-ms", "100", "--check-timeout", "30"])
            .spawn()
            .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let url = emu.url.clone();
    let jobs = std::thread::spawn(move || {
        rt().block_on(async move {
            let api = KubeEmulator { child: None, url, tls_server_name: None }.client().await;
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                for job in api.list("/apis/batch/v1/namespaces/hybrid-verify/jobs", None, None).await.unwrap_or_default() {
                    let name = job["metadata"]["name"].as_str().unwrap().to_string();
                    if !job["status"].is_null() {
                        continue;
                    }
                    let status = if name == "check-win2022-outbound" {
                        json!({ "conditions": [{ "type": "Failed", "status": "True" }] })
                    } else {
                        json!({ "succeeded": 1 })
                    };
                    api.merge_patch(&format!("/apis/batch/v1/namespaces/hybrid-verify/jobs/{name}/status"), &json!({ "status": status }))
                        .await
                        .unwrap();
                    seen.push(name);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen
        })
    });
    let out = finish(child);
    // Run again at once: the first run's namespace may still be
    // terminating, and new objects in it would be refused.
    let again = finish(
        hybrid_aws(&moto, &["verify", file.to_str().unwrap(), "--api-server", &emu.url, "--poll-ms", "100", "--check-timeout", "30"])
            .spawn()
            .unwrap(),
    );
    stop.store(true, Ordering::Relaxed);
    let seen = jobs.join().unwrap();
    assert!(text(&again.stdout).contains("6 check(s): 5 passed, 1 failed"), "{}\n{}", text(&again.stdout), text(&again.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    for line in [
        "PASS  linux-to-win2022",
        "PASS  win2022-to-linux",
        "PASS  nodeport-win2022",
        "FAIL  win2022-outbound",
        "PASS  policy-blocks-linux",
        "PASS  win2022-policy-allows",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}\n{}", text(&out.stderr));
    }
    assert!(stdout.contains("6 check(s): 5 passed, 1 failed"), "{stdout}");
    assert_eq!(seen.len(), 12, "six Jobs per run: {seen:?}");
    rt().block_on(async {
        let api = emu.client().await;
        for collection in [
            "/apis/batch/v1/namespaces/hybrid-verify/jobs",
            "/apis/apps/v1/namespaces/hybrid-verify/deployments",
            "/api/v1/namespaces/hybrid-verify/services",
            "/apis/networking.k8s.io/v1/namespaces/hybrid-verify/networkpolicies",
        ] {
            assert!(api.list(collection, None, None).await.unwrap().is_empty(), "{collection} was not cleaned up");
        }
        assert!(api.get("/api/v1/namespaces/hybrid-verify").await.unwrap().is_none());
        // The policy existed during the run: applied (not a dry run), then deleted.
        let log = api.get("/_test/log").await.unwrap().unwrap();
        let policy = "/apis/networking.k8s.io/v1/namespaces/hybrid-verify/networkpolicies/nginx-from-windows-only";
        let events: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e[1] == policy && e[2] == false).collect();
        assert!(events.iter().any(|e| e[0] == "PATCH") && events.iter().any(|e| e[0] == "DELETE"), "{events:?}");
    });
}

/// `cmd` as one line for `sh -c`, every word single-quoted.
fn shell_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

const PTY_COLUMNS: u32 = 160;
const PTY_ROWS: u32 = 200;

/// What the terminal shows once `transcript` has been drawn: replayed by a
/// real terminal emulator (pyte, tests/support/screen.py), so a line the
/// live display drew over, or drew twice, shows as the user would see it.
fn final_screen(transcript: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(crate::util::root().join(".venv/bin/python"))
        .arg(crate::util::root().join("tests/support/screen.py"))
        .args([PTY_COLUMNS.to_string(), PTY_ROWS.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(transcript).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "screen.py failed");
    text(&out.stdout)
}

/// The same command inside a pseudo-terminal (util-linux `script`), so that
/// hybrid sees a terminal on stdout and stderr; returns everything drawn.
/// `CI` is passed on only when the command sets it.
fn in_pty(cmd: Command) -> Output {
    let mut pty = Command::new("script");
    // A known window size, so that the picture can be replayed (`final_screen`).
    let line = format!("stty cols {PTY_COLUMNS} rows {PTY_ROWS}; {}", shell_line(&cmd));
    pty.args(["-q", "-e", "-c", &line, "/dev/null"]).env("TERM", "xterm-256color");
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => pty.env(k, v),
            None => pty.env_remove(k),
        };
    }
    if !cmd.get_envs().any(|(k, _)| k == "CI") {
        pty.env_remove("CI");
    }
    pty.stdin(std::process::Stdio::null()).output().unwrap()
}

#[test]
fn apply_draws_live_progress_on_a_terminal_and_plain_lines_in_ci() {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    let file = write_cluster("phi", 2);
    let _kubelets = Kubelets::with_delay(moto.url.clone(), emu.url.clone(), "phi", &[], Duration::from_secs(2));
    let out = in_pty(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]));
    let screen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    // indicatif redraws its lines in place: cursor up and erase-line codes.
    assert!(screen.contains("\x1b[2K") || screen.contains("\x1b[1A"), "no live redraw in:\n{screen:?}");
    for needle in ["game", "launched 2", "joined 2", "Ready 2/2", "win", "Ready 1/1", "Cluster phi converged: 4 node(s) Ready."] {
        assert!(screen.contains(needle), "missing `{needle}` in:\n{screen}");
    }
    // The picture left behind: each pool's line once, finished, and the
    // results printed whole, not drawn over by the live lines.
    let seen = final_screen(&out.stdout);
    let rows = |pred: &dyn Fn(&str) -> bool| seen.lines().filter(|l| pred(l)).count();
    for (pool, done) in [("control-plane", "Ready 1/1"), ("game", "Ready 2/2"), ("win", "Ready 1/1")] {
        assert_eq!(rows(&|l: &str| l.split_whitespace().next() == Some(pool)), 1, "{pool}:\n{seen}");
        assert_eq!(rows(&|l: &str| l.split_whitespace().next() == Some(pool) && l.contains(done)), 1, "{pool}:\n{seen}");
    }
    assert_eq!(rows(&|l: &str| l.starts_with("Apply complete! Resources: 13 added")), 1, "{seen}");
    assert_eq!(rows(&|l: &str| l == "Cluster phi converged: 4 node(s) Ready."), 1, "{seen}");
    let at = |needle: &str| seen.find(needle).unwrap_or_else(|| panic!("missing `{needle}` in:\n{seen}"));
    // "Apply complete!" once, at the very end: after the cluster side too.
    assert!(at("hybrid will apply") < at("Cluster phi converged") && at("Cluster phi converged") < at("Apply complete!"), "{seen}");
    assert!(seen.contains("Apply complete! Resources: 13 added, 0 changed, 0 destroyed. Cluster phi: 4 node(s) Ready."), "{seen}");

    // With CI set, even on a terminal: the timestamped lines, no escapes.
    let mut cmd = hybrid_aws(&moto, &["destroy", file.to_str().unwrap(), "--yes"]);
    cmd.env("CI", "true");
    let out = in_pty(cmd);
    let plain = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{plain}");
    assert!(!plain.contains("\x1b["), "escape codes with CI=true:\n{plain:?}");
    assert!(plain.lines().any(|l| l.starts_with('[') && l.contains("] terminating 4 instance(s)")), "{plain}");
}

/// scripts/e2e-aws.sh with the environment hybrid gets in these tests (moto
/// as AWS, test credentials), the test binary as `hybrid`.
pub(crate) fn e2e_aws_script(moto: &Moto, out: &std::path::Path) -> Command {
    let mut c = Command::new(crate::util::root().join("scripts/e2e-aws.sh"));
    c.current_dir(crate::util::root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", crate::util::scratch("home"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", &moto.url)
        .env("HYBRID", env!("CARGO_BIN_EXE_hybrid"))
        .env("HYBRID_E2E_ADMIN_CIDR", "203.0.113.7/32")
        .env("HYBRID_E2E_OUT", out)
        .env("HYBRID_E2E_EC2_ONLY", "1");
    c
}

fn tagged_vpcs(moto: &Moto, cluster: &str) -> usize {
    rt().block_on(async {
        let ec2 = crate::moto::aws_clients(&moto.url).await.0;
        let out = ec2.describe_vpcs().filters(Filter::builder().name("tag:hybrid:cluster").values(cluster).build()).send().await.unwrap();
        out.vpcs().len()
    })
}

/// The release check cannot reach AWS here; everything but the boot is
/// exercised against moto: the opt-in, the cost cap, the run itself with
/// its JSON results, and the trap that always destroys.
#[test]
fn the_aws_release_check_opts_in_caps_cost_records_results_and_always_destroys() {
    let moto = Moto::start();
    let out = crate::util::scratch("e2e-aws");
    let _ = std::fs::remove_dir_all(&out);

    // Usage first: help, too many arguments, an unknown image mode, a file without a ttl.
    let res = e2e_aws_script(&moto, &out).arg("--help").output().unwrap();
    assert_eq!(res.status.code(), Some(0));
    assert!(text(&res.stdout).contains("HYBRID_E2E_IMAGES") && text(&res.stdout).contains("AWS_ENDPOINT_URL"), "{}", text(&res.stdout));
    let res = e2e_aws_script(&moto, &out).args(["a.toml", "b.toml"]).output().unwrap();
    assert_eq!(res.status.code(), Some(64), "{}", text(&res.stderr));
    let res = e2e_aws_script(&moto, &out).env("HYBRID_E2E_AWS", "1").env("HYBRID_E2E_IMAGES", "fast").output().unwrap();
    assert_eq!(res.status.code(), Some(64), "{}", text(&res.stderr));
    assert!(text(&res.stderr).contains("auto or compare"), "{}", text(&res.stderr));
    let no_ttl = crate::util::scratch("no-ttl").join("cluster.toml");
    let example = std::fs::read_to_string(crate::util::root().join("examples/e2e-aws/calico.toml")).unwrap();
    std::fs::write(&no_ttl, example.lines().filter(|l| !l.starts_with("ttl")).collect::<Vec<_>>().join("\n")).unwrap();
    let res = e2e_aws_script(&moto, &out).env("HYBRID_E2E_AWS", "1").arg(&no_ttl).output().unwrap();
    std::fs::remove_file(&no_ttl).ok();
    assert_eq!(res.status.code(), Some(2), "{}", text(&res.stderr));
    assert!(text(&res.stderr).contains("has no ttl"), "{}", text(&res.stderr));

    let res = e2e_aws_script(&moto, &out).output().unwrap();
    assert_eq!(res.status.code(), Some(2), "no opt-in: {}", text(&res.stderr));
    assert!(text(&res.stderr).contains("set HYBRID_E2E_AWS=1"));
    assert_eq!(tagged_vpcs(&moto, "e2e-calico"), 0);

    let res = e2e_aws_script(&moto, &out).env("HYBRID_E2E_AWS", "1").env("HYBRID_E2E_MAX_HOURLY", "0.05").output().unwrap();
    assert_eq!(res.status.code(), Some(2), "{}", text(&res.stderr));
    assert!(text(&res.stderr).contains("exceeds HYBRID_E2E_MAX_HOURLY"), "{}", text(&res.stderr));
    assert_eq!(tagged_vpcs(&moto, "e2e-calico"), 0, "refused before creating anything");

    let res = e2e_aws_script(&moto, &out).env("HYBRID_E2E_AWS", "1").output().unwrap();
    let stderr = text(&res.stderr);
    assert_eq!(res.status.code(), Some(0), "{}\n{stderr}", text(&res.stdout));
    assert!(stderr.contains("destroyed"), "{stderr}");
    assert_eq!(tagged_vpcs(&moto, "e2e-calico"), 0, "the cluster is gone afterwards");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("calico.json")).unwrap()).unwrap();
    assert_eq!(summary["verify"], "skipped");
    let status: Value = serde_json::from_str(&std::fs::read_to_string(out.join("calico-status.json")).unwrap()).unwrap();
    let slots: BTreeSet<&str> = status["nodes"].as_array().unwrap().iter().map(|n| n["slot"].as_str().unwrap()).collect();
    assert_eq!(slots, BTreeSet::from(["control-plane", "linux-0", "win2022-0"]));
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n.get("time_to_ready_s").is_some()));

    // A failure after apply still destroys (the EXIT trap).
    let res = e2e_aws_script(&moto, &out).env("HYBRID_E2E_AWS", "1").env("HYBRID_E2E_FAIL_AFTER_APPLY", "1").output().unwrap();
    let stderr = text(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("failing on purpose") && stderr.contains("destroyed"), "{stderr}");
    assert_eq!(tagged_vpcs(&moto, "e2e-calico"), 0, "the trap destroyed the cluster");
    std::fs::remove_dir_all(&out).ok();
}

/// The bootstrap token is not one value for the life of the cluster: each
/// apply that launches nodes stores a fresh one for them (the first,
/// kubeadm init's own), and once every node has joined no token hybrid made
/// is left, an older one included; someone else's token stays.
#[test]
fn each_apply_that_launches_nodes_gets_a_fresh_join_token_and_leaves_none_behind() {
    let moto = Moto::start();
    let emu = KubeEmulator::start(false);
    seed_secrets(&moto, "fresh");
    let stored = crate::render::test_secrets();
    let _kubelets = Kubelets::with_delay(moto.url.clone(), emu.url.clone(), "fresh", &[], Duration::from_secs(1));
    let join_token = || {
        rt().block_on(async {
            let ssm = crate::moto::aws_clients(&moto.url).await.1;
            let p = ssm.get_parameter().name("/hybrid/fresh/join-token").with_decryption(true).send().await.unwrap();
            hybrid::bootstrap::pki::BootstrapToken::parse(p.parameter().unwrap().value().unwrap()).unwrap()
        })
    };
    let deleted = |id: &str| {
        let log = rt().block_on(async { emu.client().await.get("/_test/log").await.unwrap().unwrap() });
        let path = format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{id}");
        log.as_array().unwrap().iter().any(|e| e[0] == "DELETE" && e[1] == path.as_str())
    };
    let tokens_left = || {
        rt().block_on(async {
            let secrets = emu.client().await.list("/api/v1/namespaces/kube-system/secrets", None, None).await.unwrap();
            secrets
                .iter()
                .filter(|s| s["type"] == "bootstrap.kubernetes.io/token")
                .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
    };
    let apply = |workers: u32| {
        let file = write_cluster("fresh", workers);
        let out = finish(hybrid(&moto, &emu, &["apply", file.to_str().unwrap(), "--yes", "--node-timeout", "60"]).spawn().unwrap());
        assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stderr)
    };

    apply(1);
    let first = join_token();
    assert_eq!(first, stored.token, "a new cluster's workers join with kubeadm init's own token");
    assert!(deleted(first.id()) && tokens_left().is_empty(), "{:?}", tokens_left());

    let progress = apply(2);
    let second = join_token();
    assert_ne!(second, first, "the second apply's joins reuse the first one's token");
    assert!(progress.contains(&format!("join token {} stored", second.id())), "{progress}");
    assert!(deleted(second.id()) && tokens_left().is_empty(), "{:?}", tokens_left());

    // An older token of hybrid's that a killed run left goes too; another's stays.
    rt().block_on(async {
        let api = emu.client().await;
        let old = hybrid::cluster::objects::bootstrap_token_secret("oldtok", "0123456789abcdef", "2099-01-01T00:00:00Z");
        api.create("/api/v1/namespaces/kube-system/secrets", &old.body).await.unwrap();
        let mut theirs = hybrid::cluster::objects::bootstrap_token_secret("theirs", "0123456789abcdef", "2099-01-01T00:00:00Z");
        theirs.body["stringData"]["description"] = json!("a token someone made with kubeadm token create");
        api.create("/api/v1/namespaces/kube-system/secrets", &theirs.body).await.unwrap();
    });
    apply(3);
    assert_ne!(join_token(), second);
    assert_eq!(tokens_left(), ["bootstrap-token-theirs"]);
}
