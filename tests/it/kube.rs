//! The Kubernetes side against a strict HTTP API emulator
//! (tests/support/kube_emulator.py): objects are validated against the real
//! schemas, defaulted, server-side applied with managed fields, read back
//! with their content, and a second converge writes nothing, also with the
//! Tigera operator's write-backs.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use hybrid::adapters::kube::{KubeApi, KubeClient};
use hybrid::bootstrap::pki::ClusterSecrets;
use hybrid::cluster::converge::{Outcome, converge_objects, pending_changes, reconcile_nodes};
use hybrid::cluster::kubeconfig::{Endpoint, User, kubeconfig, to_yaml};
use hybrid::cluster::objects::{CalicoApi, KubeObject, desired_objects};
use serde_json::json;

use crate::util::root;

pub struct KubeEmulator {
    /// `None` for a handle to an emulator another value owns.
    pub child: Option<Child>,
    pub url: String,
    /// With TLS: the name the server certificate is issued for (the
    /// control plane's private address) while the URL says 127.0.0.1.
    pub tls_server_name: Option<String>,
}

/// How to start the emulator (see tests/support/kube_emulator.py).
#[derive(Default, Clone)]
pub struct Options {
    /// Serve projectcalico.org/v3 (Calico's API server) instead of crd.projectcalico.org/v1.
    pub calico_v3: bool,
    /// Play the Tigera operator's write-backs into Installation and FelixConfiguration.
    pub operator: bool,
    /// Serve HTTPS with a certificate for this private address, signed by the
    /// test cluster CA (tests/fixtures/pki), and require admin client certificates.
    pub tls_for: Option<&'static str>,
    /// The Kubernetes minor whose OpenAPI schemas the emulator checks
    /// against (default 1.36): a cluster file's own, where it pins another.
    pub kube_minor: Option<u32>,
    /// Authenticate every request and authorize it by RBAC, as kubeadm's
    /// API server does (`--rbac`).
    pub rbac: bool,
    /// Bearer tokens as aws-iam-authenticator checks them: (moto's URL for
    /// STS, the cluster id), mapped through kube-system/aws-auth.
    pub iam: Option<(String, String)>,
    /// Further opt-in flags, e.g. `--dead-nodes`, `--immutable`.
    pub flags: &'static [&'static str],
}

impl KubeEmulator {
    pub fn start(calico_v3: bool) -> Self {
        Self::start_with(Options { calico_v3, ..Options::default() })
    }

    pub fn start_with(opts: Options) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(root().join(".venv/bin/python"));
        cmd.arg(root().join("tests/support/kube_emulator.py")).arg(port.to_string()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if opts.calico_v3 {
            cmd.arg("--calico-v3");
        }
        if opts.operator {
            cmd.arg("--operator");
        }
        if opts.rbac {
            cmd.arg("--rbac");
        }
        if let Some((sts, id)) = &opts.iam {
            cmd.args(["--iam-sts", sts, "--iam-cluster-id", id]);
        }
        cmd.args(opts.flags);
        if let Some(minor) = opts.kube_minor {
            cmd.arg("--kube-version").arg(format!("1.{minor}"));
        }
        if let Some(ip) = opts.tls_for {
            let pki = root().join("tests/fixtures/pki");
            cmd.arg("--tls").arg(pki.join("ca.crt")).arg(pki.join("ca.key")).arg(ip);
        }
        let mut child = cmd.spawn().expect("the Kubernetes emulator starts (scripts/setup.sh installs kubernetes-validate)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the emulator did not start");
        let scheme = if opts.tls_for.is_some() { "https" } else { "http" };
        KubeEmulator { child: Some(child), url: format!("{scheme}://127.0.0.1:{port}"), tls_server_name: opts.tls_for.map(str::to_string) }
    }

    /// A client the way hybrid makes one: a kubeconfig with a freshly minted
    /// admin certificate (checked only by an emulator started with TLS).
    pub async fn client(&self) -> KubeClient {
        let secrets = crate::render::test_secrets();
        let cert = secrets.mint_admin_cert("hybrid-admin", &mut rand::rng(), SystemTime::now()).unwrap();
        let endpoint = Endpoint {
            cluster: "test",
            server: &self.url,
            tls_server_name: self.tls_server_name.as_deref(),
            ca_cert_pem: &secrets.ca_cert_pem,
        };
        let yaml = to_yaml(&kubeconfig(&endpoint, User::Certificate(&cert)));
        KubeClient::from_kubeconfig_yaml(&yaml).await.unwrap()
    }
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn quiet(_: &str) {}

/// Once converged, a second converge writes nothing (counted by the server)
/// and plan's check finds nothing pending.
async fn assert_nothing_left_to_write(api: &KubeClient, spec: &hybrid::model::ClusterSpec, objects: &[KubeObject], what: &str) {
    let before = server_writes(api).await;
    let again = converge_objects(api, objects, &quiet).await.unwrap();
    assert!(again.iter().all(|(_, o)| *o == Outcome::Unchanged), "{what}: {again:?}");
    assert_eq!(server_writes(api).await, before, "{what}: the second converge wrote");
    let pools = spec.pools.iter().map(|p| (p.name.clone(), p)).collect();
    let pending = pending_changes(api, objects, &pools, &[]).await.unwrap();
    assert!(pending.is_empty(), "{what}: plan would report drift forever: {pending:?}");
}

/// Writes the emulator has taken, counted by the server itself (not by
/// hybrid's client), so a write that bypasses hybrid's counter still counts.
async fn server_writes(api: &KubeClient) -> u64 {
    api.get("/_test/writes").await.unwrap().unwrap()["writes"].as_u64().unwrap()
}

#[test]
fn calico_objects_converge_and_a_second_run_writes_nothing() {
    let emu = KubeEmulator::start(false);
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let calico = CalicoApi::detect(&api.api_groups().await.unwrap());
        assert_eq!(calico, Some(CalicoApi::CrdV1));
        let objects = desired_objects(&spec, calico, "10.42.0.10", &["ip-10-42-0-20.ec2.internal".to_string()], &[]);
        let first = converge_objects(&api, &objects, &quiet).await.unwrap();
        assert!(first.iter().all(|(_, o)| *o == Outcome::Created), "{first:?}");

        let ipam = api.get("/apis/crd.projectcalico.org/v1/ipamconfigs/default").await.unwrap().unwrap();
        assert_eq!(ipam["spec"]["strictAffinity"], true);
        let felix = api.get("/apis/crd.projectcalico.org/v1/felixconfigurations/default").await.unwrap().unwrap();
        // What hybrid sets, and nftablesMode as the pinned Calico's CRD (3.32) defaults it.
        assert_eq!(
            felix["spec"],
            json!({ "vxlanEnabled": true, "ipipEnabled": false, "vxlanVNI": 4096, "vxlanPort": 4789, "nftablesMode": "Auto" })
        );
        let rc = api.get("/apis/node.k8s.io/v1/runtimeclasses/windows-2022").await.unwrap().unwrap();
        assert_eq!(rc["scheduling"]["nodeSelector"]["node.kubernetes.io/windows-build"], "10.0.20348");
        let binding = api
            .get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/hybrid:node-proxier:ip-10-42-0-20.ec2.internal")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(binding["subjects"][0]["name"], "system:node:ip-10-42-0-20.ec2.internal");

        let writes = server_writes(&api).await;
        let second = converge_objects(&api, &objects, &quiet).await.unwrap();
        assert!(second.iter().all(|(_, o)| *o == Outcome::Unchanged), "{second:?}");
        assert_eq!(server_writes(&api).await, writes, "a second converge must not write");

        // Someone turned strictAffinity off: the next converge puts it back,
        // leaving fields it does not own alone.
        api.merge_patch(
            "/apis/crd.projectcalico.org/v1/ipamconfigs/default",
            &json!({ "spec": { "strictAffinity": false, "maxBlocksPerHost": 4 } }),
        )
        .await
        .unwrap();
        let third = converge_objects(&api, &objects, &quiet).await.unwrap();
        assert!(third.contains(&("IPAMConfig/default".to_string(), Outcome::Patched)), "{third:?}");
        let ipam = api.get("/apis/crd.projectcalico.org/v1/ipamconfigs/default").await.unwrap().unwrap();
        assert_eq!((ipam["spec"]["strictAffinity"].clone(), ipam["spec"]["maxBlocksPerHost"].clone()), (json!(true), json!(4)));
    });
}

#[test]
fn calico_v3_api_is_detected_and_written() {
    // The path real clusters take once Calico's API server runs, with the
    // operator writing back: a second converge writes nothing (counted by
    // the emulator) and plan's rule finds nothing pending.
    let emu = KubeEmulator::start_with(Options { calico_v3: true, operator: true, ..Options::default() });
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let calico = CalicoApi::detect(&api.api_groups().await.unwrap());
        assert_eq!(calico, Some(CalicoApi::V3));
        let objects = desired_objects(&spec, calico, "10.42.0.10", &[], &[]);
        converge_objects(&api, &objects, &quiet).await.unwrap();
        let ipam = api.get("/apis/projectcalico.org/v3/ipamconfigurations/default").await.unwrap().unwrap();
        assert_eq!((ipam["kind"].clone(), ipam["spec"]["strictAffinity"].clone()), (json!("IPAMConfiguration"), json!(true)));
        assert!(api.get("/apis/crd.projectcalico.org/v1/ipamconfigs/default").await.unwrap().is_none());

        assert_nothing_left_to_write(&api, &spec, &objects, "the v3 path").await;
    });
}

#[test]
fn flannel_objects_converge() {
    let spec = crate::render::spec("clusters/qa.toml");
    let emu = KubeEmulator::start_with(Options { kube_minor: Some(spec.kubernetes_version.minor), ..Options::default() });
    rt().block_on(async {
        let api = emu.client().await;
        let windows = ["ip-10-50-0-21.ec2.internal".to_string()];
        converge_objects(&api, &desired_objects(&spec, None, "10.50.0.10", &windows, &[]), &quiet).await.unwrap();
        let cm = api.get("/api/v1/namespaces/kube-flannel/configmaps/kube-flannel-cfg").await.unwrap().unwrap();
        let net: serde_json::Value = serde_json::from_str(cm["data"]["net-conf.json"].as_str().unwrap()).unwrap();
        assert_eq!(net["Backend"], json!({ "Type": "vxlan", "VNI": 4096, "Port": 4789 }));
        // Windows flannel nodes run host services; only their RBAC is an object, one per node.
        assert!(api.get("/apis/apps/v1/namespaces/kube-flannel/daemonsets/kube-flannel-ds-windows-amd64").await.unwrap().is_none());
        let binding = api
            .get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/hybrid:node-proxier:ip-10-50-0-21.ec2.internal")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(binding["roleRef"]["name"], "system:node-proxier");
        let rcs = api.list("/apis/node.k8s.io/v1/runtimeclasses", None, None).await.unwrap();
        assert_eq!(rcs.len(), 2);
    });
}

#[test]
fn node_labels_and_taints_are_reconciled_and_foreign_taints_kept() {
    let emu = KubeEmulator::start(false);
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        for (name, os) in [("ip-10-42-0-20.ec2.internal", "linux"), ("ip-10-42-0-30.ec2.internal", "windows")] {
            api.create(
                "/api/v1/nodes",
                &json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "labels": { "kubernetes.io/os": os } }, "spec": { "taints": [{ "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" }] } }),
            )
            .await
            .unwrap();
        }
        let pool_of = |n: &str| match n {
            "ip-10-42-0-20.ec2.internal" => Some(&spec.pools[0]),
            "ip-10-42-0-30.ec2.internal" => Some(&spec.pools[1]),
            _ => None,
        };
        assert_eq!(reconcile_nodes(&api, pool_of, &quiet).await.unwrap(), 2);
        let win = api.get("/api/v1/nodes/ip-10-42-0-30.ec2.internal").await.unwrap().unwrap();
        assert_eq!(win["metadata"]["labels"]["game.example.com/role"], "tools");
        let keys: Vec<&str> = win["spec"]["taints"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["node.kubernetes.io/not-ready", "os"]);
        let writes = server_writes(&api).await;
        assert_eq!(reconcile_nodes(&api, pool_of, &quiet).await.unwrap(), 0);
        assert_eq!(server_writes(&api).await, writes);
    });
}

/// A server may end a list page at any size and hand out a continue token
/// (`--page-cap 2` makes the emulator do so): every list follows the
/// tokens, with selectors kept on every page, so typed reads and node
/// reconciling see every node, not the first page.
#[test]
fn lists_follow_continue_tokens_past_short_pages() {
    let emu = KubeEmulator::start_with(Options { flags: &["--page-cap", "2"], ..Options::default() });
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let names: Vec<String> = (1..=5).map(|i| format!("ip-10-42-0-{i}.ec2.internal")).collect();
        for (i, name) in names.iter().enumerate() {
            let os = if i % 2 == 0 { "linux" } else { "windows" };
            let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "labels": { "kubernetes.io/os": os } } });
            api.create("/api/v1/nodes", &node).await.unwrap();
        }
        let listed: Vec<String> = api
            .list("/api/v1/nodes", None, None)
            .await
            .unwrap()
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, names, "every page, in order");
        let windows = api.list("/api/v1/nodes", Some("kubernetes.io/os=windows"), None).await.unwrap();
        assert_eq!(windows.len(), 2, "the selector holds on every page");
        let typed: Vec<k8s_openapi::api::core::v1::Node> = api.list_of(None, None, None).await.unwrap();
        assert_eq!(typed.len(), 5);
        assert_eq!(reconcile_nodes(&api, |_| Some(&spec.pools[0]), &quiet).await.unwrap(), 5, "a node on a later page is reconciled too");
        // The emulator's side of the contract: a short page carries a token, a bad token is refused.
        let first = api.get("/api/v1/nodes?limit=10").await.unwrap().unwrap();
        assert_eq!((first["items"].as_array().unwrap().len(), &first["metadata"]["remainingItemCount"]), (2, &json!(3)));
        assert!(first["metadata"]["continue"].is_string(), "{first}");
        let refused = api.get("/api/v1/nodes?limit=10&continue=not-a-token").await.unwrap_err();
        assert_eq!(refused.status, Some(400), "{refused}");
        // A continue token that expired (410 Gone) on a later page: the list
        // starts again from its first page, as client-go's pager does.
        let http = reqwest_like_post(&emu.url);
        http(&json!({ "kind": "expired", "count": 1, "methods": ["GET"], "path": "/api/v1/nodes", "query": "continue=" }));
        let again = api.list("/api/v1/nodes", None, None).await.unwrap();
        assert_eq!(again.len(), 5, "every node, after starting again");
        let faults = api.get("/_test/faults").await.unwrap().unwrap();
        assert!(faults["faults"].as_array().unwrap().iter().all(|f| f["count"] == 0), "the token did expire: {faults}");
    });
}

/// Every object hybrid writes, for each CNI and Calico API group, with
/// Windows Server 2019 and 2022 pools, is accepted by a server that checks
/// it against the real schemas (unknown fields, types, required fields);
/// with its defaults and (Calico) the operator's write-backs stored, a
/// second converge writes nothing and plan's check finds nothing pending.
#[test]
fn every_object_hybrid_writes_passes_the_strict_server_and_converges_once() {
    for (file, calico_v3) in
        [("tests/fixtures/render/calico.toml", false), ("tests/fixtures/render/calico.toml", true), ("clusters/qa.toml", false)]
    {
        let spec = crate::render::spec(file);
        assert!(spec.pools.iter().any(|p| p.os.name() == "windows-2019") && spec.pools.iter().any(|p| p.os.name() == "windows-2022"));
        let operator = spec.cni.plugin == hybrid::model::CniPlugin::Calico;
        let emu = KubeEmulator::start_with(Options {
            calico_v3,
            operator,
            kube_minor: Some(spec.kubernetes_version.minor),
            ..Options::default()
        });
        rt().block_on(async {
            let api = emu.client().await;
            let calico = CalicoApi::detect(&api.api_groups().await.unwrap());
            let objects = desired_objects(&spec, calico, "10.20.0.10", &[], &[]);
            let outcomes = converge_objects(&api, &objects, &quiet).await.unwrap_or_else(|e| panic!("{file} (v3: {calico_v3}): {e}"));
            assert!(outcomes.iter().all(|(_, o)| *o == Outcome::Created), "{outcomes:?}");
            for o in &objects {
                let stored = api.get(&o.path()).await.unwrap().unwrap_or_else(|| panic!("{} was not stored", o.describe()));
                let hybrid = stored["metadata"]["managedFields"].as_array().unwrap().iter().find(|m| m["manager"] == "hybrid").unwrap();
                assert_eq!(hybrid["operation"], "Apply", "{}", o.describe());
            }
            assert_nothing_left_to_write(&api, &spec, &objects, &format!("{file} (v3: {calico_v3})")).await;
        });
    }
}

/// The server really is strict: an unknown field, a wrong type and a missing
/// required field are each refused, so the test above can fail.
#[test]
fn the_strict_server_refuses_wrong_objects() {
    let emu = KubeEmulator::start(false);
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let objects = desired_objects(&spec, Some(CalicoApi::CrdV1), "10.42.0.10", &[], &[]);
        let ds = sample_daemonset();
        let mut unknown = ds.body.clone();
        unknown["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = json!([]);
        let e = api.apply(&ds.path(), &unknown, true, false).await.unwrap_err();
        assert_eq!(e.status, Some(422), "{e}");
        assert!(e.message.contains("spec.template.spec.containers[0].volumeMount: field not declared in schema"), "{e}");

        let ipam = objects.iter().find(|o| o.body["kind"] == "IPAMConfig").unwrap();
        let mut wrong = ipam.body.clone();
        wrong["spec"]["strictAffinity"] = json!("yes");
        let e = api.apply(&ipam.path(), &wrong, true, false).await.unwrap_err();
        assert_eq!(e.status, Some(422), "{e}");
        assert!(e.message.contains("spec.strictAffinity: Invalid value: \"yes\": must be boolean"), "{e}");
        let mut missing = ipam.body.clone();
        missing["spec"].as_object_mut().unwrap().remove("autoAllocateBlocks");
        let e = api.apply(&ipam.path(), &missing, true, false).await.unwrap_err();
        assert!(e.message.contains("spec.autoAllocateBlocks: Required value"), "{e}");

        // What the Calico 3.30 API server does not serve (v3 has no autoAllocateBlocks).
        let v3 = KubeEmulator::start_with(Options { calico_v3: true, flags: &["--calico", "3.30"], ..Options::default() });
        let api3 = v3.client().await;
        let mut old_style = desired_objects(&spec, Some(CalicoApi::V3), "10.42.0.10", &[], &[])
            .into_iter()
            .find(|o| o.body["kind"] == "IPAMConfiguration")
            .unwrap();
        old_style.body["spec"]["autoAllocateBlocks"] = json!(true);
        let e = api3.apply(&old_style.path(), &old_style.body, true, false).await.unwrap_err();
        assert!(e.message.contains("spec.autoAllocateBlocks: field not declared in schema"), "{e}");

        // A create with an unknown field is a strict decoding error (400).
        let e = api
            .create(
                "/api/v1/namespaces/kube-system/configmaps",
                &json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x" }, "date": {} }),
            )
            .await
            .unwrap_err();
        assert_eq!(e.status, Some(400), "{e}");
        assert!(e.message.contains("strict decoding error: unknown field \"date\""), "{e}");
    });
}

/// A DaemonSet with what API servers default inside lists (a container's
/// termination message and resources, a field reference's API version, a
/// ConfigMap volume's mode): the shape of the Windows kube-proxy DaemonSet
/// hybrid wrote before kube-proxy became a host service, kept as the
/// strict emulator's sample of a built-in kind with containers.
fn sample_daemonset() -> KubeObject {
    KubeObject {
        collection: "/apis/apps/v1/namespaces/kube-system/daemonsets".into(),
        name: "sample".into(),
        body: json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": { "name": "sample", "namespace": "kube-system" },
            "spec": {
                "selector": { "matchLabels": { "app": "sample" } },
                "template": {
                    "metadata": { "labels": { "app": "sample" } },
                    "spec": {
                        "containers": [{
                            "name": "sample",
                            "image": "registry.k8s.io/pause:3.10.2",
                            "env": [{ "name": "NODENAME", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } }],
                            "volumeMounts": [{ "name": "config", "mountPath": "/var/lib/sample" }],
                        }],
                        "volumes": [{ "name": "config", "configMap": { "name": "sample" } }],
                    },
                },
            },
        }),
        force: true,
    }
}

/// A real API server stores defaults inside the lists hybrid writes, so the
/// old rule (the stored object must contain the desired one, lists exactly)
/// saw drift forever; the dry-run apply sees none.
#[test]
fn defaults_inside_lists_are_not_drift() {
    let emu = KubeEmulator::start(false);
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let mut objects = desired_objects(&spec, Some(CalicoApi::CrdV1), "10.42.0.10", &[], &[]);
        objects.push(sample_daemonset());
        converge_objects(&api, &objects, &quiet).await.unwrap();
        let ds = objects.iter().find(|o| o.body["kind"] == "DaemonSet").unwrap();
        let stored = api.get(&ds.path()).await.unwrap().unwrap();
        let c = &stored["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(stored["spec"]["template"]["spec"]["volumes"][0]["configMap"]["defaultMode"], 420);
        assert!(!hybrid::cluster::objects::contains(&stored, &ds.body), "the old comparison would patch again");
        let inst = objects.iter().find(|o| o.body["kind"] == "Installation").unwrap();
        let stored = api.get(&inst.path()).await.unwrap().unwrap();
        assert_eq!(stored["spec"]["calicoNetwork"]["ipPools"][0]["disableBGPExport"], false, "the CRD default is stored");
        let before = server_writes(&api).await;
        let again = converge_objects(&api, &objects, &quiet).await.unwrap();
        assert!(again.iter().all(|(_, o)| *o == Outcome::Unchanged), "{again:?}");
        let after = server_writes(&api).await;
        assert_eq!(after, before, "the second converge wrote");
    });
}

/// With the Tigera operator writing its defaults back into the
/// Installation and FelixConfiguration, a second converge still writes
/// nothing; a field hybrid owns that someone else changes is reported as
/// a conflict on the shared Installation and taken back on hybrid's own objects.
#[test]
fn operator_write_backs_are_not_drift_and_conflicts_are_named() {
    let emu = KubeEmulator::start_with(Options { operator: true, ..Options::default() });
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let objects = desired_objects(&spec, Some(CalicoApi::CrdV1), "10.42.0.10", &[], &[]);
        converge_objects(&api, &objects, &quiet).await.unwrap();
        // Give the "operator" its turn.
        let inst_path = "/apis/operator.tigera.io/v1/installations/default";
        let mut filled = false;
        for _ in 0..100 {
            let inst = api.get(inst_path).await.unwrap().unwrap();
            if inst["spec"]["variant"] == "Calico" {
                filled = true;
                assert_eq!(inst["spec"]["calicoNetwork"]["ipPools"][0]["allowedUses"], json!(["Workload", "Tunnel"]));
                let managers: Vec<&str> =
                    inst["metadata"]["managedFields"].as_array().unwrap().iter().map(|m| m["manager"].as_str().unwrap()).collect();
                assert!(managers.contains(&"operator") && managers.contains(&"hybrid"), "{managers:?}");
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(filled, "the operator emulation did not run");
        let before = server_writes(&api).await;
        let again = converge_objects(&api, &objects, &quiet).await.unwrap();
        assert!(again.iter().all(|(_, o)| *o == Outcome::Unchanged), "{again:?}");
        let after = server_writes(&api).await;
        assert_eq!(after, before);

        // Someone sets BGP on; hybrid does not fight the shared object.
        api.merge_patch(inst_path, &json!({ "spec": { "calicoNetwork": { "bgp": "Enabled" } } })).await.unwrap();
        let e = converge_objects(&api, &objects, &quiet).await.unwrap_err();
        assert_eq!(e.status, Some(409), "{e}");
        assert!(e.message.contains("conflict with \"hybrid-client\"") && e.message.contains(".spec.calicoNetwork.bgp"), "{e}");
        // On its own objects hybrid owns the fields: it takes them back.
        let rc = "/apis/node.k8s.io/v1/runtimeclasses/windows-2022";
        api.merge_patch(rc, &json!({ "scheduling": { "nodeSelector": { "kubernetes.io/os": "linux" } } })).await.unwrap();
        let own: Vec<_> = objects.iter().filter(|o| o.body["kind"] == "RuntimeClass").cloned().collect();
        let out = converge_objects(&api, &own, &quiet).await.unwrap();
        assert_eq!(out[0].1, Outcome::Patched);
        assert_eq!(api.get(rc).await.unwrap().unwrap()["scheduling"]["nodeSelector"]["kubernetes.io/os"], "windows");
    });
}

/// A kubeconfig for `server` trusting `trust`'s CA, with a client
/// certificate minted by `client_ca`.
async fn tls_client(server: &str, name: Option<&str>, trust: &ClusterSecrets, client_ca: &ClusterSecrets) -> Result<KubeClient, String> {
    let cert = client_ca.mint_admin_cert("hybrid-admin", &mut rand::rng(), SystemTime::now()).unwrap();
    let endpoint = Endpoint { cluster: "test", server, tls_server_name: name, ca_cert_pem: &trust.ca_cert_pem };
    let yaml = to_yaml(&kubeconfig(&endpoint, User::Certificate(&cert)));
    KubeClient::from_kubeconfig_yaml(&yaml).await
}

/// Over TLS as on a real control plane: the server's certificate is issued
/// for the private address and checked against the cluster CA through
/// 127.0.0.1 (tls-server-name), and only admin client certificates the
/// cluster CA signed get in.
#[test]
fn the_api_is_reached_over_tls_with_the_minted_admin_certificate() {
    let emu = KubeEmulator::start_with(Options { tls_for: Some("10.20.0.10"), ..Options::default() });
    assert!(emu.url.starts_with("https://127.0.0.1:"));
    let ca = crate::render::test_secrets();
    let stranger = ClusterSecrets::generate(&mut rand::rng(), SystemTime::now()).unwrap();
    rt().block_on(async {
        let api = tls_client(&emu.url, Some("10.20.0.10"), &ca, &ca).await.unwrap();
        assert!(api.get("/version").await.unwrap().is_some());
        let spec = crate::render::spec("tests/fixtures/render/calico.toml");
        converge_objects(&api, &desired_objects(&spec, Some(CalicoApi::CrdV1), "10.20.0.10", &[], &[]), &quiet).await.unwrap();

        // A client certificate from another CA is refused by the server.
        let api = tls_client(&emu.url, Some("10.20.0.10"), &ca, &stranger).await.unwrap();
        let e = api.get("/version").await.unwrap_err();
        assert!(e.status.is_none() || e.status == Some(401), "{e}");
        // A server whose certificate another CA signed is refused by hybrid.
        let api = tls_client(&emu.url, Some("10.20.0.10"), &stranger, &ca).await.unwrap();
        let untrusted = api.get("/version").await.expect_err("hybrid trusted a server the cluster CA did not sign");
        // Not worth another look: waits give up on it at once.
        assert!(!hybrid::retry::Transient::is_transient(&untrusted), "{untrusted:?}");
        // Without tls-server-name the certificate (for 10.20.0.10) does not match 127.0.0.1.
        let api = tls_client(&emu.url, None, &ca, &ca).await.unwrap();
        assert!(api.get("/version").await.is_err(), "the name check is what makes 127.0.0.1 work");
    });
}

fn pod(name: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": "default", "labels": labels },
        "spec": { "nodeName": "n1", "terminationGracePeriodSeconds": 20, "containers": [{ "name": "c", "image": "registry.k8s.io/pause:3.10.2" }] },
    })
}

async fn set_ready<K: KubeApi>(api: &K, name: &str, ready: bool) {
    let status = json!({ "status": { "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] } });
    api.merge_patch(&format!("/api/v1/namespaces/default/pods/{name}/status"), &status).await.unwrap();
}

/// Evictions go through PodDisruptionBudgets the way the API server counts
/// them: by Ready pods, with maxUnavailable or minAvailable, and an evicted
/// pod terminates over its grace period before it is gone.
#[test]
fn evictions_honour_budgets_by_readiness_and_pods_terminate_gracefully() {
    let emu = KubeEmulator::start(false);
    rt().block_on(async {
        let api = emu.client().await;
        for n in ["web-0", "web-1", "web-2"] {
            api.create("/api/v1/namespaces/default/pods", &pod(n, json!({ "app": "web" }))).await.unwrap();
            set_ready(&api, n, n != "web-2").await;
        }
        let pdb = json!({ "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": { "name": "web", "namespace": "default" }, "spec": { "maxUnavailable": 1, "selector": { "matchLabels": { "app": "web" } } } });
        api.create("/apis/policy/v1/namespaces/default/poddisruptionbudgets", &pdb).await.unwrap();
        // Evictions are decoded strictly, as the API server does: hybrid's own pass (below).
        for (bad, why) in [
            (json!({ "apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": { "name": "web-0" } }), "the removed version"),
            (json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": "web-1" } }), "another pod's name"),
            (json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": "web-0" }, "gracePeriod": 3 }), "an unknown field"),
        ] {
            let err = api.create("/api/v1/namespaces/default/pods/web-0/eviction", &bad).await.unwrap_err();
            assert_eq!(err.status, Some(400), "{why}: {err}");
        }
        assert!(api.get("/api/v1/namespaces/default/pods/web-0").await.unwrap().unwrap()["metadata"]["deletionTimestamp"].is_null());
        // Three pods, one unready: one may be unavailable, and one already is.
        assert!(!api.evict("default", "web-0").await.unwrap(), "evicting a Ready pod would make two unavailable");
        // web-2 becomes Ready: now one Ready pod may go.
        set_ready(&api, "web-2", true).await;
        assert!(api.evict("default", "web-0").await.unwrap());
        // It is terminating, not gone, and it no longer counts as healthy.
        let terminating = api.get("/api/v1/namespaces/default/pods/web-0").await.unwrap().unwrap();
        assert!(terminating["metadata"]["deletionTimestamp"].is_string(), "{terminating}");
        assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 20);
        assert!(!api.evict("default", "web-1").await.unwrap(), "the budget counts the terminating pod as gone");
        let mut gone = false;
        for _ in 0..100 {
            if api.get("/api/v1/namespaces/default/pods/web-0").await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(gone, "the evicted pod never went");
    });
}

/// A namespace being deleted passes through Terminating and refuses new
/// objects until it is gone.
#[test]
fn namespaces_terminate_before_they_go() {
    let emu = KubeEmulator::start(false);
    rt().block_on(async {
        let api = emu.client().await;
        api.create("/api/v1/namespaces", &json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "scratch" } }))
            .await
            .unwrap();
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "x", "namespace": "scratch" } });
        api.create("/api/v1/namespaces/scratch/configmaps", &cm).await.unwrap();
        api.delete("/api/v1/namespaces/scratch").await.unwrap();
        let ns = api.get("/api/v1/namespaces/scratch").await.unwrap().unwrap();
        assert_eq!(ns["status"]["phase"], "Terminating");
        let mut again = cm.clone();
        again["metadata"]["name"] = json!("y");
        let e = api.create("/api/v1/namespaces/scratch/configmaps", &again).await.unwrap_err();
        assert_eq!(e.status, Some(403), "{e}");
        for _ in 0..100 {
            if api.get("/api/v1/namespaces/scratch").await.unwrap().is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the namespace never went");
    });
}

/// The Kubernetes API throttles (429 with Retry-After), fails (503),
/// loses answers to writes that happened, and answers slowly: the
/// cluster's objects still converge, and a second pass writes nothing.
#[test]
fn objects_converge_through_api_faults() {
    let emu = KubeEmulator::start(false);
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let http = reqwest_like_post(&emu.url);
        for fault in [
            json!({ "kind": "429", "count": 2, "methods": ["PATCH"], "retry_after": 1 }),
            json!({ "kind": "5xx", "code": 503, "count": 2, "methods": ["GET"] }),
            json!({ "kind": "drop", "count": 2, "methods": ["PATCH"], "path": "/runtimeclasses/" }),
            json!({ "kind": "slow", "seconds": 1, "count": 1, "methods": ["GET"] }),
        ] {
            http(&fault);
        }
        let waits = hybrid::cluster::converge::Waits {
            api: std::time::Duration::from_secs(60),
            poll: std::time::Duration::from_millis(100),
            ..Default::default()
        };
        hybrid::cluster::converge::converge_cluster_objects(&api, &spec, "10.42.0.10", &[], waits, &quiet).await.unwrap();
        let rc = api.get("/apis/node.k8s.io/v1/runtimeclasses/windows-2022").await.unwrap().unwrap();
        assert_eq!(rc["handler"], "runhcs-wcow-process");
        let before = server_writes(&api).await;
        let again = converge_objects(&api, &desired_objects(&spec, Some(CalicoApi::CrdV1), "10.42.0.10", &[], &[]), &quiet).await.unwrap();
        assert!(again.iter().all(|(_, o)| *o == Outcome::Unchanged), "{again:?}");
        assert_eq!(server_writes(&api).await, before);
        let faults = api.get("/_test/faults").await.unwrap().unwrap();
        assert!(faults["faults"].as_array().unwrap().iter().all(|f| f["count"] == 0), "every injected fault was hit: {faults}");
    });
}

/// A drain is a long wait: an API server failing for a moment in the
/// middle (500s, which kube's client does not retry itself) is looked past
/// under the drain's deadline, not taken for the end of the drain.
#[test]
fn a_drain_rides_out_an_api_server_failing_for_a_moment() {
    let emu = KubeEmulator::start(false);
    rt().block_on(async {
        let api = emu.client().await;
        api.create("/api/v1/nodes", &json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n1" } })).await.unwrap();
        for n in ["web-0", "web-1"] {
            api.create("/api/v1/namespaces/default/pods", &pod(n, json!({ "app": "web" }))).await.unwrap();
        }
        let http = reqwest_like_post(&emu.url);
        http(&json!({ "kind": "5xx", "code": 500, "count": 3, "methods": ["GET"], "path": "/api/v1/pods" }));
        http(&json!({ "kind": "5xx", "code": 502, "count": 2, "methods": ["GET"], "path": "/api/v1/nodes/n1" }));
        let waits = hybrid::cluster::converge::Waits {
            drain: std::time::Duration::from_secs(60),
            poll: std::time::Duration::from_millis(50),
            ..Default::default()
        };
        hybrid::cluster::converge::drain_node(&api, "n1", false, waits, &quiet).await.unwrap();
        assert!(api.get("/api/v1/nodes/n1").await.unwrap().is_none(), "drained and deleted");
        let faults = api.get("/_test/faults").await.unwrap().unwrap();
        assert!(faults["faults"].as_array().unwrap().iter().all(|f| f["count"] == 0), "every injected failure was met: {faults}");
    });
}

/// What a wait may look past and what it may not: a refused connection
/// (an API server restarting) is worth another look; an answer that is
/// not JSON is not.
#[test]
fn no_answer_is_transient_and_an_unreadable_answer_is_not() {
    use hybrid::retry::Transient;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let nothing = KubeEmulator { child: None, url: format!("http://127.0.0.1:{closed}"), tls_server_name: None };
    // An HTTP server that answers every request with a page that is not JSON.
    let html = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let html_url = format!("http://{}", html.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut conn in html.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let body = "<html>a login page</html>";
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let page = KubeEmulator { child: None, url: html_url, tls_server_name: None };
    rt().block_on(async {
        let refused = nothing.client().await.get("/version").await.unwrap_err();
        assert!(refused.no_answer && refused.is_transient(), "{refused:?}");
        let unreadable = page.client().await.get("/version").await.unwrap_err();
        assert!(!unreadable.no_answer && !unreadable.is_transient(), "{unreadable:?}");
    });
}

/// POSTs a fault plan to the emulator's /_test/faults (plain HTTP).
fn reqwest_like_post(url: &str) -> impl Fn(&serde_json::Value) {
    let addr = url.trim_start_matches("http://").to_string();
    move |body: &serde_json::Value| {
        use std::io::{Read, Write};
        let text = body.to_string();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /_test/faults HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"), "{out}");
    }
}

/// The emulator's own checks of what it enforces (RBAC, aws-iam-authenticator
/// tokens against moto's STS, immutable fields, resourceVersions, dead
/// nodes): the tests above trust these behaviours, so they run with the suite.
#[test]
fn the_emulator_passes_its_self_test() {
    let out = Command::new(root().join(".venv/bin/python")).arg(root().join("tests/support/kube_emulator_selftest.py")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.trim_end().ends_with("all passed"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

/// A field the API server keeps fixed after creation (here a binding's
/// roleRef; with `--immutable` the emulator refuses such updates with 422
/// as pkg/apis/rbac/validation does): when hybrid's object differs there
/// from the stored one (made by hand, or by an older hybrid), the plan says
/// it is replaced and converge deletes and creates it, after which nothing
/// is left to write. Before, the 422 failed the apply on every run.
#[test]
fn an_object_whose_immutable_field_differs_is_replaced() {
    let emu = KubeEmulator::start_with(Options { flags: &["--immutable"], ..Options::default() });
    let spec = crate::render::spec("clusters/dev.toml");
    let node = "ip-10-42-0-20.ec2.internal".to_string();
    let path = format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/hybrid:node-proxier:{node}");
    rt().block_on(async {
        let api = emu.client().await;
        let calico = CalicoApi::detect(&api.api_groups().await.unwrap());
        let objects = desired_objects(&spec, calico, "10.42.0.10", std::slice::from_ref(&node), &[]);
        converge_objects(&api, &objects, &quiet).await.unwrap();
        // Someone binds the node's name to another role under hybrid's name.
        api.delete(&path).await.unwrap();
        let other = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": { "name": format!("hybrid:node-proxier:{node}") },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("system:node:{node}") }],
        });
        api.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", &other).await.unwrap();
        let pools = spec.pools.iter().map(|p| (p.name.clone(), p)).collect();
        let pending = pending_changes(&api, &objects, &pools, &[]).await.unwrap();
        assert_eq!(
            pending,
            [("-/+", format!("ClusterRoleBinding/hybrid:node-proxier:{node} (replaced: roleRef: cannot change roleRef)"))],
            "the plan names the replacement and why"
        );
        let outcomes = converge_objects(&api, &objects, &quiet).await.unwrap();
        assert!(outcomes.iter().any(|(_, o)| matches!(o, Outcome::Replaced(_))), "{outcomes:?}");
        let binding = api.get(&path).await.unwrap().unwrap();
        assert_eq!(binding["roleRef"]["name"], "system:node-proxier");
        assert_nothing_left_to_write(&api, &spec, &objects, "after the replacement").await;
    });
}

/// Another controller writes a Node's taints and labels between hybrid's
/// read and its write (the emulator's race hook: right after the list that
/// shows the node, "other-controller" patches it and its resourceVersion
/// moves). hybrid's patch carries the version it read, gets 409, reads
/// again and keeps the other writer's taint and label beside its own;
/// without the precondition its taint list overwrote the newcomer's.
#[test]
fn a_controller_writing_a_node_between_read_and_write_is_kept() {
    let emu = KubeEmulator::start(false);
    let spec = crate::render::spec("clusters/dev.toml");
    let name = "ip-10-42-0-30.ec2.internal";
    rt().block_on(async {
        let api = emu.client().await;
        let not_ready = json!({ "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" });
        api.create(
            "/api/v1/nodes",
            &json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name, "labels": { "kubernetes.io/os": "windows" } }, "spec": { "taints": [not_ready] } }),
        )
        .await
        .unwrap();
        let theirs = json!({ "key": "example.com/maintenance", "effect": "NoSchedule" });
        let race = json!({
            "path": format!("/api/v1/nodes/{name}"),
            "merge": { "metadata": { "labels": { "example.com/owner": "ops" } }, "spec": { "taints": [not_ready, theirs] } },
            "times": 1,
        });
        api.create("/_test/race", &race).await.unwrap();
        let pool_of = |n: &str| (n == name).then_some(&spec.pools[1]);
        assert_eq!(reconcile_nodes(&api, pool_of, &quiet).await.unwrap(), 1);
        let node = api.get(&format!("/api/v1/nodes/{name}")).await.unwrap().unwrap();
        let keys: Vec<&str> = node["spec"]["taints"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["node.kubernetes.io/not-ready", "example.com/maintenance", "os"], "{node:#}");
        assert_eq!(node["metadata"]["labels"]["example.com/owner"], "ops");
        assert_eq!(node["metadata"]["labels"]["game.example.com/role"], "tools");
        let pending = api.get("/_test/race").await.unwrap().unwrap();
        assert_eq!(pending, json!({ "races": [] }), "the race was not played");
    });
}
