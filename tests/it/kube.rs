//! The Kubernetes side against a real HTTP API emulator (kmock plus the
//! project's add-on, tests/support/kube_emulator.py): objects are created,
//! read back with their content, and a second converge writes nothing.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use hybrid::adapters::kube::{KubeApi, KubeClient};
use hybrid::cluster::converge::{Outcome, converge_objects, reconcile_nodes};
use hybrid::cluster::kubeconfig::AdminKubeconfig;
use hybrid::cluster::objects::{CalicoApi, desired_objects};
use serde_json::json;

use crate::util::root;

pub struct KubeEmulator {
    /// `None` for a handle to an emulator another value owns.
    pub child: Option<Child>,
    pub url: String,
}

impl KubeEmulator {
    pub fn start(calico_v3: bool) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(root().join(".venv/bin/python"));
        cmd.arg(root().join("tests/support/kube_emulator.py")).arg(port.to_string()).stdout(Stdio::piped()).stderr(Stdio::null());
        if calico_v3 {
            cmd.arg("--calico-v3");
        }
        let mut child = cmd.spawn().expect("the Kubernetes emulator starts (scripts/setup.sh installs kmock)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the emulator did not start");
        KubeEmulator { child: Some(child), url: format!("http://127.0.0.1:{port}") }
    }

    /// A client the way hybrid makes one: a kubeconfig with a freshly minted
    /// admin certificate (the emulator does not check it; see its header).
    pub async fn client(&self) -> KubeClient {
        let secrets = crate::render::test_secrets();
        let cert = secrets.mint_admin_cert("hybrid-admin", &mut rand::rng(), SystemTime::now()).unwrap();
        let yaml =
            AdminKubeconfig { cluster: "test", server: &self.url, tls_server_name: None, ca_cert_pem: &secrets.ca_cert_pem, client: &cert }
                .to_yaml();
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

#[test]
fn calico_objects_converge_and_a_second_run_writes_nothing() {
    let emu = KubeEmulator::start(false);
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let calico = CalicoApi::detect(&api.api_groups().await.unwrap());
        assert_eq!(calico, Some(CalicoApi::CrdV1));
        let objects = desired_objects(&spec, calico, "10.42.0.10");
        let first = converge_objects(&api, &objects, &quiet).await.unwrap();
        assert!(first.iter().all(|(_, o)| *o == Outcome::Created), "{first:?}");

        let ipam = api.get("/apis/crd.projectcalico.org/v1/ipamconfigs/default").await.unwrap().unwrap();
        assert_eq!(ipam["spec"]["strictAffinity"], true);
        let felix = api.get("/apis/crd.projectcalico.org/v1/felixconfigurations/default").await.unwrap().unwrap();
        assert_eq!(felix["spec"], json!({ "vxlanEnabled": true, "ipipEnabled": false, "vxlanVNI": 4096, "vxlanPort": 4789 }));
        let rc = api.get("/apis/node.k8s.io/v1/runtimeclasses/windows-2022").await.unwrap().unwrap();
        assert_eq!(rc["scheduling"]["nodeSelector"]["node.kubernetes.io/windows-build"], "10.0.20348");
        let ds = api.get("/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy-windows").await.unwrap().unwrap();
        assert_eq!(ds["spec"]["template"]["spec"]["securityContext"]["windowsOptions"]["hostProcess"], true);

        let writes = api.writes();
        let second = converge_objects(&api, &objects, &quiet).await.unwrap();
        assert!(second.iter().all(|(_, o)| *o == Outcome::Unchanged), "{second:?}");
        assert_eq!(api.writes(), writes, "a second converge must not write");

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
    let emu = KubeEmulator::start(true);
    let spec = crate::render::spec("clusters/dev.toml");
    rt().block_on(async {
        let api = emu.client().await;
        let calico = CalicoApi::detect(&api.api_groups().await.unwrap());
        assert_eq!(calico, Some(CalicoApi::V3));
        converge_objects(&api, &desired_objects(&spec, calico, "10.42.0.10"), &quiet).await.unwrap();
        let ipam = api.get("/apis/projectcalico.org/v3/ipamconfigurations/default").await.unwrap().unwrap();
        assert_eq!((ipam["kind"].clone(), ipam["spec"]["strictAffinity"].clone()), (json!("IPAMConfiguration"), json!(true)));
        assert!(api.get("/apis/crd.projectcalico.org/v1/ipamconfigs/default").await.unwrap().is_none());
    });
}

#[test]
fn flannel_objects_converge() {
    let emu = KubeEmulator::start(false);
    let spec = crate::render::spec("clusters/qa.toml");
    rt().block_on(async {
        let api = emu.client().await;
        converge_objects(&api, &desired_objects(&spec, None, "10.50.0.10"), &quiet).await.unwrap();
        let cm = api.get("/api/v1/namespaces/kube-flannel/configmaps/kube-flannel-cfg").await.unwrap().unwrap();
        let net: serde_json::Value = serde_json::from_str(cm["data"]["net-conf.json"].as_str().unwrap()).unwrap();
        assert_eq!(net["Backend"], json!({ "Type": "vxlan", "VNI": 4096, "Port": 4789 }));
        // Windows flannel nodes run host services; only their kube-proxy's RBAC is an object.
        assert!(api.get("/apis/apps/v1/namespaces/kube-flannel/daemonsets/kube-flannel-ds-windows-amd64").await.unwrap().is_none());
        let binding = api.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/hybrid:windows-kube-proxy").await.unwrap().unwrap();
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
        let writes = api.writes();
        assert_eq!(reconcile_nodes(&api, pool_of, &quiet).await.unwrap(), 0);
        assert_eq!(api.writes(), writes);
    });
}
