//! Typed template contexts: everything a template may use, computed from
//! the spec and secrets in one place. Templates only format; decisions (which
//! taints, which kubelet flags, which URLs) are made here in Rust.

use serde::Serialize;
use serde_json::json;

use std::collections::BTreeMap;

use super::error::BootstrapError;
use crate::bootstrap::pki::ClusterSecrets;
use crate::model::{ClusterSpec, CniPlugin, NodeOs, Pool, Taint, kubelet_may_self_label};
use crate::versions::{self, Download, NodeVersions};

/// The API server port kubeadm listens on.
pub const API_SERVER_PORT: u16 = 6443;

/// Replaced at boot with the instance's private DNS name from IMDS: node
/// names must equal it (WINDOWS-NOTES §3.4) and it is unknown before launch.
pub const NODE_NAME_PLACEHOLDER: &str = "__HYBRID_NODE_NAME__";
/// Replaced at boot with the instance's private IPv4 address.
pub const NODE_IP_PLACEHOLDER: &str = "__HYBRID_NODE_IP__";
/// Stands in for the bootstrap token in the control plane's kubeadm config:
/// its bootstrap reads the real one from SSM at boot (fetch-secrets.py).
pub const TOKEN_PLACEHOLDER: &str = "__HYBRID_BOOTSTRAP_TOKEN__";

/// One download as a template sees it: where from, and how to check it
/// (`versions::Check::encode`). Templates address them by name.
#[derive(Serialize)]
pub struct DownloadCtx {
    url: String,
    check: String,
    version: String,
}

fn downloads(resolved: &NodeVersions) -> BTreeMap<&'static str, DownloadCtx> {
    resolved
        .downloads
        .iter()
        .map(|d: &Download| (d.name, DownloadCtx { check: d.check.encode(), url: d.url.clone(), version: d.version.clone() }))
        .collect()
}

/// The link-local addresses EC2 Windows reaches through the primary NIC,
/// which creating the HNS vSwitch can drop (tigera/docs windows-calico
/// limitations "Routes are lost in cloud providers"): instance metadata,
/// Amazon Time Sync, KMS activation (two) and the Amazon DNS resolver
/// (EC2Launch v2 overview: "static routes to reach the metadata service and
/// AWS KMS servers"; route tables of EC2 Windows instances).
pub const EC2_LINK_LOCAL_ROUTES: &[&str] = &["169.254.169.254", "169.254.169.123", "169.254.169.250", "169.254.169.251", "169.254.169.253"];

#[derive(Serialize)]
pub struct TaintCtx {
    key: String,
    value: String,
    effect: &'static str,
}

fn taints(list: &[Taint]) -> Vec<TaintCtx> {
    list.iter().map(|t| TaintCtx { key: t.key.clone(), value: t.value.clone(), effect: t.effect.name() }).collect()
}

/// The labels kubelet registers the node with; the others (e.g.
/// node-role.kubernetes.io/*) are applied by `apply` through the API.
fn node_labels(pool: &Pool) -> String {
    pool.labels.iter().filter(|(k, _)| kubelet_may_self_label(k)).map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// flannel's net-conf.json, shared by Linux and Windows flanneld: VNI 4096
/// and port 4789 on both sides or they cannot talk (WINDOWS-NOTES §5).
fn flannel_net_conf(spec: &ClusterSpec) -> String {
    let conf = json!({
        "Network": spec.network.pod_cidr.to_string(),
        "Backend": { "Type": "vxlan", "VNI": spec.cni.vni, "Port": spec.cni.port },
    });
    serde_json::to_string_pretty(&conf).expect("JSON value serializes")
}

#[derive(Serialize)]
pub struct Linux {
    cluster: String,
    /// `control-plane` or `worker`.
    role: &'static str,
    group: String,
    distro: &'static str,
    kubernetes_version: String,
    /// `v1.36.5`, as kubeadm's kubernetesVersion wants it.
    kubernetes_version_tag: String,
    api_server_ip: String,
    api_server_endpoint: String,
    /// What workers poll before joining (any answer over TLS means up).
    api_server_readyz: String,
    pod_cidr: String,
    service_cidr: String,
    cni: &'static str,
    cni_version: String,
    block_size: u8,
    vni: u32,
    vxlan_port: u16,
    has_windows: bool,
    flannel_net_conf: String,
    /// A placeholder on every node: the control plane reads its init token
    /// with the secrets from SSM, a worker its join token, at boot.
    token: &'static str,
    token_placeholder: &'static str,
    ca_cert_hash: String,
    /// The SSM parameter with the cluster secrets (the control plane's),
    /// the one with the join token (the workers'), and their region.
    secrets_parameter: String,
    join_token_parameter: String,
    /// aws-iam-authenticator's `-i` (the signed x-k8s-aws-id), the
    /// partition of its STS, the Kubernetes user its server reads aws-auth
    /// as, and where the API server finds its webhook kubeconfig.
    authenticator_cluster_id: String,
    /// Its server's command line (quoted for systemd by the template).
    authenticator_args: Vec<String>,
    authenticator_state: &'static str,
    api_server_url: String,
    authenticator_user: &'static str,
    authenticator_webhook: &'static str,
    authenticator_webhook_dir: &'static str,
    /// kubelet's CredentialProviderConfig for private ECR (workers; empty
    /// on the control plane), and where it and the plugin go.
    credential_provider_config: String,
    credential_provider_file: &'static str,
    credential_provider_dir: &'static str,
    region: String,
    ssm_endpoint: String,
    node_labels: String,
    taints: Vec<TaintCtx>,
    /// A string: kubeletExtraArgs values are strings.
    max_pods: String,
    node_name_placeholder: &'static str,
    node_ip_placeholder: &'static str,
    /// Every file this node downloads, by name (`versions::downloads`).
    downloads: BTreeMap<&'static str, DownloadCtx>,
    pause_image: String,
    /// Pulled at bake time so a baked node has them.
    images: Vec<String>,
    /// Those of `images` in a private ECR registry, each with its region
    /// and ECR API endpoint, where a bake logs in to pull it.
    private_images: Vec<PrivateImage>,
    /// `node` (join the cluster) or `bake` (hybrid bake's builder).
    pub(super) mode: &'static str,
    /// The operator's Installation spec, the same one `apply` converges.
    installation_spec: serde_json::Value,
}

/// An image of a private ECR registry and where to log in for it.
#[derive(Serialize)]
pub struct PrivateImage {
    image: String,
    region: String,
    endpoint: String,
}

/// The pool's pre-pulled images that live in a private ECR registry.
fn private_images(pool: Option<&Pool>) -> Vec<PrivateImage> {
    pool.map(|p| p.prepull.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|image| {
            let region = versions::private_ecr_region(image)?;
            Some(PrivateImage { image: image.clone(), endpoint: versions::ecr_api_endpoint(image)?, region })
        })
        .collect()
}

/// The images a node needs plus the pool's `prepull` list, once each.
fn with_prepull(mut images: Vec<String>, pool: Option<&Pool>) -> Vec<String> {
    for extra in pool.map(|p| p.prepull.as_slice()).unwrap_or_default() {
        if !images.contains(extra) {
            images.push(extra.clone());
        }
    }
    images
}

/// aws-iam-authenticator's state: its serving certificate (from `init`)
/// and its own kubeconfig, readable by root only.
const AUTHENTICATOR_STATE: &str = "/var/aws-iam-authenticator";

/// The token webhook's server: this cluster's id and partition, the
/// aws-auth ConfigMap as its mapping (watched through its own kubeconfig),
/// the files `init` made. Flags: tests/fixtures/upstream/aws-iam-authenticator.json.
fn authenticator_args(spec: &ClusterSpec) -> Vec<String> {
    vec![
        "server".into(),
        format!("--cluster-id={}", crate::model::access::cluster_id(&spec.name, &spec.region)),
        format!("--partition={}", crate::infra::desired::partition(&spec.region)),
        "--backend-mode=EKSConfigMap".into(),
        format!("--kubeconfig={AUTHENTICATOR_STATE}/server.kubeconfig"),
        "--kubeconfig-pregenerated=true".into(),
        format!("--state-dir={AUTHENTICATOR_STATE}"),
    ]
}

/// `pool` is `None` for the control plane; `resolved` is what its kind of
/// node runs (`NodeVersions`).
pub fn linux(spec: &ClusterSpec, pool: Option<&Pool>, secrets: &ClusterSecrets, resolved: &NodeVersions) -> Result<Linux, BootstrapError> {
    let ip = spec.api_server_ip().ok_or(BootstrapError::NoApiServerIp)?;
    let distro = match pool.map(|p| p.os) {
        Some(NodeOs::Linux(d)) => d,
        _ => spec.control_plane.os,
    };
    Ok(Linux {
        cluster: spec.name.clone(),
        role: if pool.is_some() { "worker" } else { "control-plane" },
        group: pool.map_or("control-plane".to_string(), |p| p.name.clone()),
        distro: distro.name(),
        kubernetes_version: spec.kubernetes_version.to_string(),
        kubernetes_version_tag: format!("v{}", spec.kubernetes_version),
        api_server_ip: ip.to_string(),
        api_server_endpoint: format!("{ip}:{API_SERVER_PORT}"),
        api_server_readyz: format!("https://{ip}:{API_SERVER_PORT}/readyz"),
        pod_cidr: spec.network.pod_cidr.to_string(),
        service_cidr: spec.network.service_cidr.to_string(),
        cni: spec.cni.plugin.name(),
        cni_version: spec.cni.version.clone(),
        block_size: spec.cni.block_size,
        vni: spec.cni.vni,
        vxlan_port: spec.cni.port,
        has_windows: spec.has_windows(),
        flannel_net_conf: flannel_net_conf(spec),
        token: TOKEN_PLACEHOLDER,
        token_placeholder: TOKEN_PLACEHOLDER,
        ca_cert_hash: secrets.ca_cert_hash().to_string(),
        secrets_parameter: crate::infra::desired::secrets_parameter_name(&spec.name),
        join_token_parameter: crate::infra::desired::join_token_parameter_name(&spec.name),
        authenticator_cluster_id: crate::model::access::cluster_id(&spec.name, &spec.region),
        authenticator_args: authenticator_args(spec),
        authenticator_state: AUTHENTICATOR_STATE,
        api_server_url: format!("https://{ip}:{API_SERVER_PORT}"),
        authenticator_user: crate::cluster::objects::AUTHENTICATOR_USER,
        authenticator_webhook: "/etc/kubernetes/aws-iam-authenticator/webhook.kubeconfig",
        authenticator_webhook_dir: "/etc/kubernetes/aws-iam-authenticator",
        credential_provider_config: if pool.is_some() { versions::credential_provider_config() } else { String::new() },
        credential_provider_file: "/etc/hybrid/credential-provider.yaml",
        credential_provider_dir: "/usr/local/lib/hybrid/credential-providers",
        region: spec.region.clone(),
        ssm_endpoint: versions::ssm_endpoint(&spec.region),
        node_labels: pool.map(node_labels).unwrap_or_default(),
        taints: pool.map(|p| taints(&p.taints)).unwrap_or_default(),
        max_pods: pool.map_or(110, |p| p.max_pods).to_string(),
        node_name_placeholder: NODE_NAME_PLACEHOLDER,
        node_ip_placeholder: NODE_IP_PLACEHOLDER,
        downloads: downloads(resolved),
        pause_image: resolved.pause_image.clone(),
        images: with_prepull(resolved.images.clone(), pool),
        private_images: private_images(pool),
        mode: "node",
        installation_spec: crate::cluster::objects::installation_spec(spec),
    })
}

#[derive(Serialize)]
pub struct CloudConfig<'a> {
    #[serde(flatten)]
    pub base: &'a Linux,
    pub kubeadm_config: &'a str,
    pub containerd_config: &'a str,
    pub cni_manifest: Option<&'a str>,
    pub bootstrap_script: &'a str,
    /// The fetcher of the secrets (control plane) or the join token (workers).
    pub fetch_secrets: &'a str,
}

#[derive(Serialize)]
pub struct Windows {
    cluster: String,
    group: String,
    windows_version: &'static str,
    windows_build: &'static str,
    kubernetes_version: String,
    api_server_endpoint: String,
    /// A placeholder: the join token is read from SSM at each join attempt.
    token: &'static str,
    token_placeholder: &'static str,
    join_token_parameter: String,
    region: String,
    ssm_endpoint: String,
    ca_cert_hash: String,
    cni: &'static str,
    vni: u32,
    vxlan_port: u16,
    pod_cidr: String,
    flannel_net_conf: String,
    /// flannel's CNI config for this node (win-overlay delegate), with the
    /// node IP placeholder for ProviderAddress.
    flannel_cni_conf: String,
    /// The HNS network the CNI creates and kube-proxy attaches to.
    kube_proxy_network: String,
    /// kubelet runs as an nssm service with these fixed flags; the node name
    /// and IP are appended at boot. kubeadm's kubeadm-flags.env is not read
    /// on this path, so labels and taints go here too (WINDOWS-NOTES §3.2).
    kubelet_args: Vec<String>,
    taints: Vec<TaintCtx>,
    node_name_placeholder: &'static str,
    node_ip_placeholder: &'static str,
    downloads: BTreeMap<&'static str, DownloadCtx>,
    pause_image: String,
    link_local_routes: &'static [&'static str],
    images: Vec<String>,
    /// Those of `images` in a private ECR registry, each with its region
    /// and ECR API endpoint, where a bake logs in to pull it.
    private_images: Vec<PrivateImage>,
    /// kubelet's CredentialProviderConfig for private ECR.
    credential_provider_config: String,
    pub(super) mode: &'static str,
}

pub fn windows(spec: &ClusterSpec, pool: &Pool, secrets: &ClusterSecrets, resolved: &NodeVersions) -> Result<Windows, BootstrapError> {
    let NodeOs::Windows(version) = pool.os else { unreachable!("windows() is called for Windows pools only") };
    let ip = spec.api_server_ip().ok_or(BootstrapError::NoApiServerIp)?;
    let mut kubelet_args: Vec<String> = [
        r"--cert-dir=C:\var\lib\kubelet\pki",
        r"--config=C:\var\lib\kubelet\config.yaml",
        r"--bootstrap-kubeconfig=C:\etc\kubernetes\bootstrap-kubelet.conf",
        r"--kubeconfig=C:\etc\kubernetes\kubelet.conf",
        "--container-runtime-endpoint=npipe:////./pipe/containerd-containerd",
        // Windows has no cgroups: node allocatable enforcement and QoS
        // cgroups must be off, and there is no resolv.conf.
        "--cgroups-per-qos=false",
        "--enforce-node-allocatable=",
        "--resolv-conf=",
        "--enable-debugging-handlers",
        // Private ECR images, with the node's instance profile.
        r"--image-credential-provider-config=C:\k\credential-provider.yaml",
        r"--image-credential-provider-bin-dir=C:\k\credential-providers",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    kubelet_args.push(format!("--max-pods={}", pool.max_pods));
    let labels = node_labels(pool);
    if !labels.is_empty() {
        kubelet_args.push(format!("--node-labels={labels}"));
    }
    if !pool.taints.is_empty() {
        kubelet_args.push(format!("--register-with-taints={}", pool.taints.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")));
    }
    Ok(Windows {
        cluster: spec.name.clone(),
        group: pool.name.clone(),
        windows_version: version.name(),
        windows_build: version.build(),
        kubernetes_version: spec.kubernetes_version.to_string(),
        api_server_endpoint: format!("{ip}:{API_SERVER_PORT}"),
        token: TOKEN_PLACEHOLDER,
        token_placeholder: TOKEN_PLACEHOLDER,
        join_token_parameter: crate::infra::desired::join_token_parameter_name(&spec.name),
        region: spec.region.clone(),
        ssm_endpoint: versions::ssm_endpoint(&spec.region),
        ca_cert_hash: secrets.ca_cert_hash().to_string(),
        cni: spec.cni.plugin.name(),
        vni: spec.cni.vni,
        vxlan_port: spec.cni.port,
        pod_cidr: spec.network.pod_cidr.to_string(),
        flannel_net_conf: flannel_net_conf(spec),
        flannel_cni_conf: flannel_windows_cni_conf(spec),
        kube_proxy_network: match spec.cni.plugin {
            CniPlugin::Flannel => flannel_network_name(spec),
            CniPlugin::Calico => CALICO_WINDOWS_NETWORK.to_string(),
        },
        kubelet_args,
        taints: taints(&pool.taints),
        node_name_placeholder: NODE_NAME_PLACEHOLDER,
        node_ip_placeholder: NODE_IP_PLACEHOLDER,
        downloads: downloads(resolved),
        pause_image: resolved.pause_image.clone(),
        link_local_routes: EC2_LINK_LOCAL_ROUTES,
        images: with_prepull(resolved.images.clone(), Some(pool)),
        private_images: private_images(Some(pool)),
        credential_provider_config: versions::credential_provider_config(),
        mode: "node",
    })
}

/// calico-node names its Windows HNS network `Calico` and the host endpoint
/// whose address is kube-proxy's source VIP `Calico_ep`
/// (projectcalico/calico node/pkg/lifecycle/startup/startup_windows.go).
pub const CALICO_WINDOWS_NETWORK: &str = "Calico";

/// flanneld names its Windows HNS network `flannel.<VNI>`
/// (flannel-io/flannel pkg/backend/vxlan/vxlan_windows.go).
pub fn flannel_network_name(spec: &ClusterSpec) -> String {
    format!("flannel.{}", spec.cni.vni)
}

/// The CNI config of a Windows flannel node, in the shape RKE2's Windows
/// agent writes today (rancher/rke2 pkg/windows/flannel.go @ 0ff227c): a
/// conflist whose flannel plugin delegates to containernetworking's
/// `win-overlay` (API version 2, which containerd needs, cni.dev#154) with
/// three endpoint policies: no NAT towards pods and services, services
/// routed through the overlay, and the node's own address as provider.
pub fn flannel_windows_cni_conf(spec: &ClusterSpec) -> String {
    let (pod, svc) = (spec.network.pod_cidr.to_string(), spec.network.service_cidr.to_string());
    let conf = json!({
        "name": flannel_network_name(spec),
        "cniVersion": "1.0.0",
        "plugins": [{
            "type": "flannel",
            "capabilities": { "portMappings": true, "dns": true },
            "delegate": {
                "type": "win-overlay",
                "apiVersion": 2,
                "Policies": [
                    { "Name": "EndpointPolicy", "Value": { "Type": "OutBoundNAT", "Settings": { "Exceptions": [pod, svc] } } },
                    { "Name": "EndpointPolicy", "Value": { "Type": "SDNRoute", "Settings": { "DestinationPrefix": svc, "NeedEncap": true } } },
                    { "Name": "EndpointPolicy", "Value": { "Type": "ProviderAddress", "Settings": { "ProviderAddress": NODE_IP_PLACEHOLDER } } },
                ],
            },
        }],
    });
    serde_json::to_string_pretty(&conf).expect("JSON value serializes")
}

#[derive(Serialize)]
pub struct WindowsScript<'a> {
    #[serde(flatten)]
    pub base: &'a Windows,
    pub kubeadm_config: &'a str,
    pub containerd_config: &'a str,
}
