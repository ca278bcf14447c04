//! Desired state: what should exist in AWS for a spec, as plain data. Pure:
//! AMIs come in already resolved (or as "resolve at apply" for an offline
//! plan), bootstrap fingerprints come in from `bootstrap`.
//!
//! Every instance has a stable slot name (`win-tools-0`); scale-down removes
//! the highest slots. What forces a replacement is folded into a spec hash
//! carried as a tag, and it differs by kind of node on purpose:
//!
//! - a worker is cheap to replace (rolling, drained first), so its hash
//!   covers its image, type, disk, spot setting and its rendered bootstrap,
//!   minus the labels and taints that `apply` reconciles through the API;
//! - replacing the control plane loses etcd, i.e. the whole cluster, so its
//!   hash covers only what a running control plane cannot change: its
//!   machine, its pinned image, the Kubernetes and CNI *minor* versions it
//!   was initialised with, and the cluster's addresses. Patch releases are
//!   not in it: kubeadm's join preflight (`KubeletVersion`) compares only
//!   major and minor, so workers on a newer patch join the running control
//!   plane, and `plan` notes the difference instead of wiping etcd for it.
//!   Which pools exist, containerd, hybrid's templates, the latest public
//!   image and everything converged through the API are not in it either.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::net::Ipv4Cidr;
use crate::model::{ClusterSpec, CniPlugin, Encapsulation, LinuxDistro, NodeOs, Vpc, WindowsVersion};

/// Tag keys hybrid owns. Discovery filters on `hybrid:cluster`.
pub const TAG_CLUSTER: &str = "hybrid:cluster";
pub const TAG_POOL: &str = "hybrid:pool";
pub const TAG_SLOT: &str = "hybrid:slot";
pub const TAG_SPEC_HASH: &str = "hybrid:spec-hash";
/// The Kubernetes version a node was built with (`1.36.5`), for plain reasons.
pub const TAG_KUBERNETES: &str = "hybrid:kubernetes-version";
/// The control plane's CNI and version (`calico 3.32.1`), for plain reasons.
pub const TAG_CNI: &str = "hybrid:cni";
/// A token unique to one create call of one run: after a lost answer,
/// the adapter finds what the call made by it instead of making another.
pub const TAG_CREATE_TOKEN: &str = "hybrid:create-token";
/// Who made a resource: the caller's ARN (STS GetCallerIdentity).
pub const TAG_OWNER: &str = "hybrid:owner";
/// RFC 3339 time after which `hybrid reap` may destroy the cluster.
pub const TAG_EXPIRES: &str = "hybrid:expires";
/// The slot of the control plane; worker slots are `<pool>-<index>`.
pub const CONTROL_PLANE: &str = "control-plane";

/// Where the public image for an OS is found: an SSM public parameter, and
/// a DescribeImages name pattern as a fallback (regions or endpoints without
/// the parameter). WINDOWS-NOTES §1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AmiLookup {
    pub ssm_parameter: &'static str,
    pub name_pattern: &'static str,
    pub owner: &'static str,
}

pub fn ami_lookup(os: NodeOs) -> AmiLookup {
    const WINDOWS_OWNER: &str = "801119661308";
    const CANONICAL: &str = "099720109477";
    const AMAZON_LINUX: &str = "137112412989";
    match os {
        NodeOs::Windows(WindowsVersion::Ws2019) => AmiLookup {
            ssm_parameter: "/aws/service/ami-windows-latest/Windows_Server-2019-English-Full-Base",
            name_pattern: "Windows_Server-2019-English-Full-Base-*",
            owner: WINDOWS_OWNER,
        },
        NodeOs::Windows(WindowsVersion::Ws2022) => AmiLookup {
            ssm_parameter: "/aws/service/ami-windows-latest/Windows_Server-2022-English-Full-Base",
            name_pattern: "Windows_Server-2022-English-Full-Base-*",
            owner: WINDOWS_OWNER,
        },
        NodeOs::Windows(WindowsVersion::Ws2025) => AmiLookup {
            ssm_parameter: "/aws/service/ami-windows-latest/Windows_Server-2025-English-Full-Base",
            name_pattern: "Windows_Server-2025-English-Full-Base-*",
            owner: WINDOWS_OWNER,
        },
        NodeOs::Linux(LinuxDistro::Ubuntu2404) => AmiLookup {
            ssm_parameter: "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
            name_pattern: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
            owner: CANONICAL,
        },
        NodeOs::Linux(LinuxDistro::Ubuntu2204) => AmiLookup {
            ssm_parameter: "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
            name_pattern: "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
            owner: CANONICAL,
        },
        NodeOs::Linux(LinuxDistro::Al2023) => AmiLookup {
            ssm_parameter: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
            name_pattern: "al2023-ami-2023.*-kernel-*-x86_64",
            owner: AMAZON_LINUX,
        },
    }
}

/// An image as resolved by the EC2 adapter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedAmi {
    pub id: String,
    pub name: String,
    /// The device name the root volume must be mapped to (`/dev/sda1`, `/dev/xvda`).
    pub root_device: String,
}

/// AMIs per group (`control-plane` or a pool name). Missing entries mean
/// "not resolved" (an offline plan).
pub type AmiMap = BTreeMap<String, ResolvedAmi>;

/// One security-group ingress rule. Rules from the cluster's own group are
/// `source: Source::Cluster`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SgRule {
    /// `tcp`, `udp`, or an IP protocol number such as `4` (IP-in-IP).
    pub protocol: String,
    pub from_port: i32,
    pub to_port: i32,
    pub source: Source,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Source {
    /// Other members of the cluster's security group.
    Cluster,
    Cidr(Ipv4Cidr),
}

impl SgRule {
    /// Identity for diffing: descriptions are informative, not identity.
    pub fn key(&self) -> (String, i32, i32, Source) {
        (self.protocol.clone(), self.from_port, self.to_port, self.source.clone())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesiredInstance {
    pub slot: String,
    /// `control-plane` or the pool name.
    pub group: String,
    pub os: NodeOs,
    pub instance_type: String,
    /// Tried in order when EC2 has no capacity for `instance_type` (the
    /// pool's `instance_types` after the first). A node running one of them
    /// matches the file; the spec hash covers the preferred type only, so
    /// adding a fallback replaces nothing.
    pub fallback_types: Vec<String>,
    /// `None` until resolved (offline plan).
    pub ami: Option<ResolvedAmi>,
    pub disk_gb: u32,
    pub spot: bool,
    pub private_ip: Option<Ipv4Addr>,
    pub spec_hash: String,
    /// Tagged as `hybrid:kubernetes-version`.
    pub kubernetes_version: String,
    /// Tagged as `hybrid:cni` on the control plane; empty on workers.
    pub cni: String,
    /// Worker replacements happen this many at a time (the pool's `replace_batch`).
    pub replace_batch: u32,
}

impl DesiredInstance {
    /// The types to launch, in the order to try them.
    pub fn instance_types(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.instance_type.as_str()).chain(self.fallback_types.iter().map(String::as_str))
    }

    /// Whether a node running `instance_type` matches the file.
    pub fn allows_type(&self, instance_type: &str) -> bool {
        self.instance_types().any(|t| t == instance_type)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum DesiredNetwork {
    Create { vpc_cidr: Ipv4Cidr, subnet_cidr: Ipv4Cidr },
    Existing { vpc_id: String, subnet_id: String },
}

/// An instance profile: a role with one inline policy, for the nodes of
/// one kind. The control plane's may read only the cluster's secrets
/// parameter (its bootstrap fetches the CA from SSM instead of carrying it
/// in user data); the workers' may read only the join token and pull from
/// the account's private ECR. IAM is global, so names carry the region
/// (two clusters of one name in two regions must not share a role).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceProfile {
    /// Role and instance profile share it.
    pub name: String,
    /// `/hybrid/<region>/<cluster>/`: how discovery and `reap` find them.
    pub path: String,
    /// The inline policy's name on the role.
    pub policy_name: String,
    /// The inline policy (JSON).
    pub policy: String,
    /// What it allows, for plan and progress lines.
    pub allows: String,
}

/// The control plane's inline policy name.
pub const PROFILE_POLICY_NAME: &str = "read-cluster-secrets";
/// The workers' inline policy name.
pub const WORKER_POLICY_NAME: &str = "worker-node";

pub fn iam_path_prefix(region: &str) -> String {
    format!("/hybrid/{region}/")
}

fn profile_name(cluster: &str, region: &str, kind: &str) -> String {
    let tag: String = Sha256::digest(region.as_bytes())[..3].iter().map(|b| format!("{b:02x}")).collect();
    format!("hybrid-{cluster}-{kind}-{tag}")
}

/// The account is the caller's own (no cross-account parameters); the key
/// is SSM's AWS-managed one, whose key policy lets principals of the
/// account decrypt through SSM, so neither policy has a kms statement.
pub fn control_plane_profile(cluster: &str, region: &str) -> InstanceProfile {
    let partition = partition(region);
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ReadThisClustersSecrets",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": format!("arn:{partition}:ssm:{region}:*:parameter{}", secrets_parameter_name(cluster)),
        }],
    });
    InstanceProfile {
        name: profile_name(cluster, region, "cp"),
        path: format!("{}{cluster}/", iam_path_prefix(region)),
        policy_name: PROFILE_POLICY_NAME.into(),
        policy: policy.to_string(),
        allows: format!("may read only {}", secrets_parameter_name(cluster)),
    }
}

/// The workers' role: the join token (and nothing else in SSM: not the CA
/// key), and image pulls from the account's private ECR registries in any
/// region (a studio's central registry may be elsewhere), as AWS's
/// AmazonEC2ContainerRegistryPullOnly policy allows them: its pull actions,
/// pull-through cache fills included (GetAuthorizationToken has no
/// resource to scope to).
pub fn worker_profile(cluster: &str, region: &str) -> InstanceProfile {
    let partition = partition(region);
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadTheJoinToken",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": format!("arn:{partition}:ssm:{region}:*:parameter{}", join_token_parameter_name(cluster)),
            },
            { "Sid": "LogInToPrivateEcr", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*" },
            ecr_pull_statement(partition),
        ],
    });
    InstanceProfile {
        name: profile_name(cluster, region, "wk"),
        path: format!("{}{cluster}/", iam_path_prefix(region)),
        policy_name: WORKER_POLICY_NAME.into(),
        policy: policy.to_string(),
        allows: format!("may read only {} and pull from ECR", join_token_parameter_name(cluster)),
    }
}

/// Pulling from the account's private ECR in any region: what
/// AmazonEC2ContainerRegistryPullOnly allows besides the login.
fn ecr_pull_statement(partition: &str) -> serde_json::Value {
    serde_json::json!({
        "Sid": "PullFromPrivateEcr",
        "Effect": "Allow",
        "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:BatchImportUpstreamImage", "ecr:GetDownloadUrlForLayer"],
        "Resource": format!("arn:{partition}:ecr:*:*:repository/*"),
    })
}

/// The role of a bake builder whose pool pre-pulls private ECR images: ECR
/// pulls (any region, as the workers') and nothing else. One per region (an image serves
/// every cluster of its versions), under its own path, so `reap` and
/// `list` never take it for a cluster; it stays, holding no secret.
pub fn bake_profile(region: &str) -> InstanceProfile {
    let partition = partition(region);
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            { "Sid": "LogInToPrivateEcr", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*" },
            ecr_pull_statement(partition),
        ],
    });
    let tag: String = Sha256::digest(region.as_bytes())[..3].iter().map(|b| format!("{b:02x}")).collect();
    InstanceProfile {
        name: format!("hybrid-bake-{tag}"),
        path: format!("/hybrid-bake/{region}/"),
        policy_name: "bake-builder".into(),
        policy: policy.to_string(),
        allows: "may pull from ECR".into(),
    }
}

/// Both profiles: the control plane's, then the workers'.
pub fn instance_profiles(cluster: &str, region: &str) -> Vec<InstanceProfile> {
    vec![control_plane_profile(cluster, region), worker_profile(cluster, region)]
}

/// The partition a region is in, for ARNs.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Who may assume the role: EC2, for the instance profile.
pub fn ec2_trust_policy() -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": { "Service": "ec2.amazonaws.com" }, "Action": "sts:AssumeRole" }],
    })
    .to_string()
}

/// What a planned SSM parameter holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ParameterKind {
    /// The CA certificate and key and the init token (SecureString, the
    /// control plane's role and admins only).
    Secrets,
    /// The CA certificate alone (String: public, for every kubeconfig).
    CaCertificate,
}

impl ParameterKind {
    pub fn secure(self) -> bool {
        self == ParameterKind::Secrets
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DesiredParameter {
    pub name: String,
    pub kind: ParameterKind,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DesiredState {
    pub cluster: String,
    pub region: String,
    pub network: DesiredNetwork,
    pub security_rules: BTreeSet<SgRule>,
    /// Per pool with `player_ports`: the rules of its players' security
    /// group, which only its nodes are in.
    pub player_groups: BTreeMap<String, BTreeSet<SgRule>>,
    /// The SSM parameters a plan creates (the join token is written by
    /// each apply that launches nodes, not planned).
    pub parameters: Vec<DesiredParameter>,
    /// The control plane's, then the workers'.
    pub instance_profiles: Vec<InstanceProfile>,
    /// By slot name.
    pub instances: BTreeMap<String, DesiredInstance>,
    /// Extra tags on every resource (user tags, expiry is added at creation).
    pub tags: BTreeMap<String, String>,
    /// Per pool: which image it boots from and why (baked or stock), for `plan`.
    pub image_notes: BTreeMap<String, String>,
}

impl DesiredState {
    /// The instance profile of an instance group's nodes.
    pub fn profile_for(&self, group: &str) -> &InstanceProfile {
        &self.instance_profiles[usize::from(group != CONTROL_PLANE)]
    }
}

/// `bootstrap_fingerprints`: per pool, a digest of the rendered bootstrap
/// *with placeholder secrets and without labels and taints*
/// (`bootstrap::worker_fingerprints`), so a template or config change
/// replaces nodes but a refreshed token or a new label does not.
pub fn desired_state(spec: &ClusterSpec, amis: &AmiMap, bootstrap_fingerprints: &BTreeMap<String, String>) -> DesiredState {
    let mut instances = BTreeMap::new();
    let kubernetes_version = spec.kubernetes_version.to_string();
    let cp = &spec.control_plane;
    let cp_ami = amis.get(CONTROL_PLANE).cloned();
    instances.insert(
        CONTROL_PLANE.to_string(),
        DesiredInstance {
            slot: CONTROL_PLANE.to_string(),
            group: CONTROL_PLANE.to_string(),
            os: NodeOs::Linux(cp.os),
            instance_type: cp.instance_type.clone(),
            fallback_types: Vec::new(),
            spec_hash: control_plane_hash(spec, cp_ami.as_ref()),
            ami: cp_ami,
            disk_gb: cp.disk_gb,
            spot: false,
            private_ip: spec.api_server_ip(),
            kubernetes_version: kubernetes_version.clone(),
            cni: cni_label(spec),
            replace_batch: 1,
        },
    );
    for pool in &spec.pools {
        let ami = amis.get(&pool.name).cloned();
        let fingerprint = bootstrap_fingerprints.get(&pool.name).map(String::as_str).unwrap_or("");
        let hash = spec_hash(ami.as_ref().map_or("?", |a| a.id.as_str()), &pool.instance_type, pool.disk_gb, pool.spot, fingerprint);
        for i in 0..pool.count {
            let slot = format!("{}-{i}", pool.name);
            instances.insert(
                slot.clone(),
                DesiredInstance {
                    slot,
                    group: pool.name.clone(),
                    os: pool.os,
                    instance_type: pool.instance_type.clone(),
                    fallback_types: pool.fallback_types.clone(),
                    ami: ami.clone(),
                    disk_gb: pool.disk_gb,
                    spot: pool.spot,
                    private_ip: None,
                    spec_hash: hash.clone(),
                    kubernetes_version: kubernetes_version.clone(),
                    cni: String::new(),
                    replace_batch: pool.replace_batch.max(1),
                },
            );
        }
    }
    DesiredState {
        cluster: spec.name.clone(),
        region: spec.region.clone(),
        network: match &spec.network.vpc {
            Vpc::Create { cidr, subnet_cidr } => DesiredNetwork::Create { vpc_cidr: *cidr, subnet_cidr: *subnet_cidr },
            Vpc::Existing { vpc_id, subnet_id } => DesiredNetwork::Existing { vpc_id: vpc_id.clone(), subnet_id: subnet_id.clone() },
        },
        security_rules: security_rules(spec),
        player_groups: player_groups(spec),
        parameters: planned_parameters(&spec.name),
        instance_profiles: instance_profiles(&spec.name, &spec.region),
        instances,
        tags: spec.tags.clone(),
        image_notes: BTreeMap::new(),
    }
}

/// `calico 3.32.1`, `flannel 0.28.5`.
pub fn cni_label(spec: &ClusterSpec) -> String {
    format!("{} {}", spec.cni.plugin.name(), spec.cni.version)
}

/// What a running control plane cannot change (see the module comment).
/// The image counts only when the file pins one: a newer public image is
/// for new workers, not a reason to lose etcd.
pub fn control_plane_hash(spec: &ClusterSpec, ami: Option<&ResolvedAmi>) -> String {
    let cp = &spec.control_plane;
    let pinned = match (&cp.ami, ami) {
        (Some(_), Some(a)) => a.id.as_str(),
        (Some(_), None) => "?",
        (None, _) => "latest",
    };
    let identity = format!(
        "cluster={}\nos={:?}\ntype={}\ndisk={}\nami={pinned}\naddress={:?}\nkubernetes={}.{}\ncni={} {}\nvni={}\nport={}\npods={}\nservices={}\n",
        spec.name,
        cp.os,
        cp.instance_type,
        cp.disk_gb,
        spec.api_server_ip(),
        spec.kubernetes_version.major,
        spec.kubernetes_version.minor,
        spec.cni.plugin.name(),
        minor_release(&spec.cni.version),
        spec.cni.vni,
        spec.cni.port,
        spec.network.pod_cidr,
        spec.network.service_cidr,
    );
    Sha256::digest(identity.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// `3.32.1` → `3.32`: the part of a release a running control plane is
/// tied to (a patch is a rolling upgrade, a minor a new cluster here).
pub fn minor_release(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((i, _)) => &version[..i],
        None => version,
    }
}

pub fn parameter_prefix(cluster: &str) -> String {
    format!("/hybrid/{cluster}/")
}

/// The cluster secrets live in one SecureString (CA certificate, CA key and
/// bootstrap token as JSON): one write stores them atomically, so an apply
/// killed midway can never leave a certificate without its key.
pub fn secrets_parameter_name(cluster: &str) -> String {
    format!("{}secrets", parameter_prefix(cluster))
}

/// The cluster CA's certificate, which anyone who may reach the cluster
/// needs and nobody can misuse: kubeconfigs read it without the key.
pub fn ca_parameter_name(cluster: &str) -> String {
    format!("{}ca.crt", parameter_prefix(cluster))
}

/// The bootstrap token workers join with (SecureString): the only
/// parameter their role may read. Rewritten by each apply that launches
/// nodes (a fresh token; the old one's Secret is removed), read by the
/// workers at each join attempt, never in user data.
pub fn join_token_parameter_name(cluster: &str) -> String {
    format!("{}join-token", parameter_prefix(cluster))
}

pub fn planned_parameters(cluster: &str) -> Vec<DesiredParameter> {
    vec![
        DesiredParameter { name: secrets_parameter_name(cluster), kind: ParameterKind::Secrets },
        DesiredParameter { name: ca_parameter_name(cluster), kind: ParameterKind::CaCertificate },
    ]
}

/// The folder of the cluster lock's epochs (`/hybrid/<cluster>/lock/<n>`).
pub fn lock_parameter_prefix(cluster: &str) -> String {
    format!("{}lock/", parameter_prefix(cluster))
}

pub fn lock_parameter_name(cluster: &str, epoch: u64) -> String {
    format!("{}{epoch}", lock_parameter_prefix(cluster))
}

/// 16 hex digits of SHA-256 over everything that forces a replacement.
pub fn spec_hash(ami: &str, instance_type: &str, disk_gb: u32, spot: bool, bootstrap_fingerprint: &str) -> String {
    let digest = Sha256::digest(
        format!("ami={ami}\ntype={instance_type}\ndisk={disk_gb}\nspot={spot}\nbootstrap={bootstrap_fingerprint}\n").as_bytes(),
    );
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn fingerprint(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly the ports the cluster uses (WINDOWS-NOTES §6): pod traffic is
/// encapsulated, so security groups see only the VXLAN outer packets.
/// The tag that marks a pool's players' security group, with the pool's name.
pub const TAG_PLAYERS: &str = "hybrid:players-pool";

/// The players' security group of a pool: its name.
pub fn player_group_name(cluster: &str, pool: &str) -> String {
    format!("{cluster}-{pool}-players")
}

/// Every pool's player ports, open to every player CIDR; a pool with none
/// has no group.
pub fn player_groups(spec: &ClusterSpec) -> BTreeMap<String, BTreeSet<SgRule>> {
    let mut out = BTreeMap::new();
    for p in spec.pools.iter().filter(|p| !p.player_ports.is_empty()) {
        let mut rules = BTreeSet::new();
        for r in &p.player_ports {
            for cidr in &spec.network.player_cidrs {
                rules.insert(SgRule {
                    protocol: r.protocol().into(),
                    from_port: i32::from(r.from),
                    to_port: i32::from(r.to),
                    source: Source::Cidr(*cidr),
                    description: format!("players: {}", p.name),
                });
            }
        }
        out.insert(p.name.clone(), rules);
    }
    out
}

pub fn security_rules(spec: &ClusterSpec) -> BTreeSet<SgRule> {
    let mut rules = BTreeSet::new();
    let mut rule = |protocol: &str, from: i32, to: i32, source: Source, description: &str| {
        rules.insert(SgRule { protocol: protocol.into(), from_port: from, to_port: to, source, description: description.into() });
    };
    rule("tcp", 6443, 6443, Source::Cluster, "kube-apiserver");
    rule("tcp", 2379, 2380, Source::Cluster, "etcd");
    rule("tcp", 10250, 10250, Source::Cluster, "kubelet API");
    rule("udp", i32::from(spec.cni.port), i32::from(spec.cni.port), Source::Cluster, "VXLAN overlay");
    rule("tcp", 30000, 32767, Source::Cluster, "NodePort services (TCP)");
    rule("udp", 30000, 32767, Source::Cluster, "NodePort services (UDP)");
    if spec.cni.plugin == CniPlugin::Calico {
        rule("tcp", 5473, 5473, Source::Cluster, "Calico Typha");
        if matches!(spec.cni.encapsulation, Encapsulation::Ipip | Encapsulation::IpipCrossSubnet) {
            rule("4", -1, -1, Source::Cluster, "Calico IP-in-IP");
        }
        if spec.cni.bgp {
            rule("tcp", 179, 179, Source::Cluster, "Calico BGP");
        }
    }
    for cidr in &spec.network.admin_cidrs {
        rule("tcp", 6443, 6443, Source::Cidr(*cidr), "admin: kube-apiserver");
        rule("tcp", 22, 22, Source::Cidr(*cidr), "admin: SSH");
        if spec.has_windows() {
            rule("tcp", 3389, 3389, Source::Cidr(*cidr), "admin: RDP");
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ClusterSpec {
        crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))).spec.unwrap()
    }

    #[test]
    fn slots_are_stable_and_per_pool() {
        let d = desired_state(&spec(), &AmiMap::new(), &BTreeMap::new());
        let slots: Vec<&str> = d.instances.keys().map(String::as_str).collect();
        assert_eq!(slots, ["control-plane", "game-servers-0", "game-servers-1", "win-tools-0"]);
        assert_eq!(d.instances["control-plane"].private_ip, Some("10.42.0.10".parse().unwrap()));
    }

    #[test]
    fn spec_hash_changes_with_what_forces_replacement() {
        let base = spec_hash("ami-1", "m5.large", 50, false, "f");
        assert_eq!(base, spec_hash("ami-1", "m5.large", 50, false, "f"));
        for other in [
            spec_hash("ami-2", "m5.large", 50, false, "f"),
            spec_hash("ami-1", "m6i.large", 50, false, "f"),
            spec_hash("ami-1", "m5.large", 60, false, "f"),
            spec_hash("ami-1", "m5.large", 50, true, "f"),
            spec_hash("ami-1", "m5.large", 50, false, "g"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn security_group_opens_only_needed_ports() {
        let rules = security_rules(&spec());
        let open: BTreeSet<(String, i32)> = rules.iter().map(|r| (r.protocol.clone(), r.from_port)).collect();
        assert!(open.contains(&("udp".into(), 4789)));
        assert!(open.contains(&("tcp".into(), 5473)));
        assert!(!open.contains(&("tcp".into(), 179)), "no BGP with VXLAN");
        assert!(!open.contains(&("4".into(), -1)), "no IP-in-IP with VXLAN");
        // Admin CIDRs only reach the API server, SSH and RDP.
        let admin: BTreeSet<i32> = rules.iter().filter(|r| matches!(r.source, Source::Cidr(_))).map(|r| r.from_port).collect();
        assert_eq!(admin, BTreeSet::from([22, 3389, 6443]));
    }
}
