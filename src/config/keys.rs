//! Every key a desired-state file may contain, with its type, default and
//! meaning: the one source of truth for the reader (unknown keys, types,
//! missing keys), `hybrid schema` (JSON Schema) and the key reference in
//! `clusters/README.md`, so the three cannot drift apart.

use crate::model::{CniPlugin, Encapsulation, ImageChoice, NodeOs};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    /// A string from a fixed list (checked with a did-you-mean).
    Choice(&'static [&'static str]),
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    StrList,
    /// A table of string values, e.g. labels or tags.
    StrMap,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Str | Kind::Choice(_) => "a string",
            Kind::Int { .. } => "an integer",
            Kind::Bool => "a boolean",
            Kind::StrList => "an array of strings",
            Kind::StrMap => "a table of strings",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// The default as written in a file, or a sentence when it is derived.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub struct Section {
    pub name: &'static str,
    /// `[[pool]]`: an array of tables.
    pub array: bool,
    pub required: bool,
    pub doc: &'static str,
    pub keys: &'static [Key],
}

impl Section {
    pub fn key(&self, name: &str) -> Option<&'static Key> {
        self.keys.iter().find(|k| k.name == name)
    }
}

const fn req(name: &'static str, kind: Kind, doc: &'static str) -> Key {
    Key { name, kind, required: true, default: None, doc }
}

const fn opt(name: &'static str, kind: Kind, default: Option<&'static str>, doc: &'static str) -> Key {
    Key { name, kind, required: false, default, doc }
}

/// Limits with their reasons live next to the rules in `rules.rs`; these are
/// only the plain type ranges a schema can express.
pub const SECTIONS: &[Section] = &[
    Section {
        name: "cluster",
        array: false,
        required: true,
        doc: "Identity and lifetime of the cluster.",
        keys: &[
            req("name", Kind::Str, "Cluster name: a DNS-1123 label of at most 40 characters. Prefixes every AWS resource and node name."),
            req("region", Kind::Str, "AWS region, e.g. `us-east-1`."),
            opt(
                "kubernetes_version",
                Kind::Str,
                Some("the newest minor every component supports on Windows (`hybrid versions` shows it)"),
                "Kubernetes `MAJOR.MINOR` (its newest patch hybrid knows) or `MAJOR.MINOR.PATCH`; a leading `v` is allowed. Supported minors: `hybrid versions --help`.",
            ),
            opt(
                "containerd_version",
                Kind::Str,
                Some("the one the Kubernetes minor's row names"),
                "containerd on every node, Linux and Windows; 2.x, at least what the Kubernetes minor needs.",
            ),
            opt(
                "ttl",
                Kind::Str,
                None,
                "Time-to-live for throwaway clusters, e.g. `8h`, `2d`, `1h30m` (10m to 90d). `hybrid reap` destroys the cluster after it.",
            ),
            opt("ssh_key_name", Kind::Str, None, "Existing EC2 key pair for SSH to Linux and Windows nodes."),
            opt("tags", Kind::StrMap, Some("{}"), "Extra AWS tags on every resource. Keys starting with `aws:` or `hybrid:` are reserved."),
        ],
    },
    Section {
        name: "network",
        array: false,
        required: false,
        doc: "Where the nodes live and which address ranges Kubernetes uses.",
        keys: &[
            opt("vpc_cidr", Kind::Str, Some("\"10.0.0.0/16\" unless vpc_id is set"), "CIDR of the VPC hybrid creates (/16 to /28)."),
            opt("subnet_cidr", Kind::Str, Some("the first /24 of vpc_cidr"), "CIDR of the subnet hybrid creates inside the VPC."),
            opt("vpc_id", Kind::Str, None, "Use this existing VPC instead of creating one (needs subnet_id)."),
            opt("subnet_id", Kind::Str, None, "Existing subnet for all nodes (with vpc_id)."),
            opt("pod_cidr", Kind::Str, Some("\"192.168.0.0/16\""), "Pod network; must not overlap the VPC or the service CIDR."),
            opt("service_cidr", Kind::Str, Some("\"10.96.0.0/12\""), "Service ClusterIP range (/12 to /24)."),
            opt("admin_cidrs", Kind::StrList, Some("[]"), "Networks allowed to reach the API server (6443), SSH (22) and RDP (3389)."),
            opt(
                "player_cidrs",
                Kind::StrList,
                Some("[]"),
                "Networks allowed to reach the pools' `player_ports` (testers, the studio's office or VPN).",
            ),
        ],
    },
    Section {
        name: "cni",
        array: false,
        required: false,
        doc: "Pod networking. Windows nodes need VXLAN with VNI >= 4096 on UDP 4789.",
        keys: &[
            opt("plugin", Kind::Choice(CniPlugin::NAMES), Some("\"calico\""), "CNI plugin."),
            opt(
                "encapsulation",
                Kind::Choice(Encapsulation::NAMES),
                Some("\"VXLAN\""),
                "Overlay, spelled as in Calico's Installation resource. flannel supports only VXLAN.",
            ),
            opt("bgp", Kind::Bool, Some("false"), "Calico BGP. Windows nodes cannot use it on AWS."),
            opt("vni", Kind::Int { min: 1, max: 16_777_215 }, Some("4096"), "VXLAN network identifier; Windows (HNS) needs at least 4096."),
            opt("port", Kind::Int { min: 1, max: 65_535 }, Some("4789"), "VXLAN UDP port; Windows supports only 4789."),
            opt("strict_affinity", Kind::Bool, Some("true"), "Calico IPAM strictAffinity; Windows nodes require true."),
            opt("direct_routing", Kind::Bool, Some("false"), "flannel DirectRouting; not supported on Windows."),
            opt("version", Kind::Str, Some("the one the Kubernetes minor's row names"), "Version of the CNI plugin to install."),
            opt(
                "block_size",
                Kind::Int { min: 20, max: 28 },
                Some("26"),
                "Calico IPAM block prefix length. A Windows node gets one block and can give pods all its addresses but four (60 at /26).",
            ),
        ],
    },
    Section {
        name: "control_plane",
        array: false,
        required: true,
        doc: "The single Linux control-plane node (kubeadm init).",
        keys: &[
            req("instance_type", Kind::Str, "EC2 instance type (x86_64), e.g. `t3.large`."),
            opt(
                "os",
                Kind::Choice(NodeOs::NAMES),
                Some("\"ubuntu-24.04\""),
                "Linux distribution; `linux` means ubuntu-24.04. Windows control planes do not exist.",
            ),
            opt("ami", Kind::Str, None, "AMI id (`ami-…`) or image name filter instead of the latest public image."),
            opt("disk_gb", Kind::Int { min: 1, max: 16_384 }, Some("50"), "Root volume size in GiB (encrypted gp3)."),
            opt(
                "private_ip",
                Kind::Str,
                Some("the 10th address of subnet_cidr"),
                "Fixed private IP of the API server, known before any node boots so all nodes can be launched at once. Required with vpc_id.",
            ),
        ],
    },
    Section {
        name: "pool",
        array: true,
        required: false,
        doc: "A group of identical worker nodes; repeat `[[pool]]` for each.",
        keys: &[
            req("name", Kind::Str, "Pool name: a DNS-1123 label, unique in the file. Nodes are named `<pool>-<n>`."),
            req(
                "os",
                Kind::Choice(NodeOs::NAMES),
                "`linux` (the control plane's distribution), a distribution, or `windows-2019` / `windows-2022` / `windows-2025`.",
            ),
            opt("instance_type", Kind::Str, None, "EC2 instance type (x86_64). Required unless `instance_types` is given."),
            opt(
                "instance_types",
                Kind::StrList,
                None,
                "Instance types tried in order, instead of `instance_type`: when EC2 has no capacity for one in the subnet's zone (InsufficientInstanceCapacity, Unsupported, no spot capacity), apply launches the next, e.g. `[\"m6i.xlarge\", \"m5.xlarge\"]`.",
            ),
            opt("count", Kind::Int { min: 0, max: 1000 }, Some("1"), "Number of nodes (0 to 1000)."),
            opt("ami", Kind::Str, None, "AMI id (`ami-…`) or image name filter instead of the latest public image for `os`."),
            opt(
                "disk_gb",
                Kind::Int { min: 1, max: 16_384 },
                Some("50 (Linux), 100 (Windows)"),
                "Root volume size in GiB (encrypted gp3).",
            ),
            opt("spot", Kind::Bool, Some("false"), "Run the pool on spot instances."),
            opt(
                "labels",
                Kind::StrMap,
                Some("{}"),
                "Node labels, e.g. `{ \"game.example.com/role\" = \"server\" }`. Labels kubelet may not set itself (e.g. `node-role.kubernetes.io/*`) are applied through the API by apply.",
            ),
            opt(
                "taints",
                Kind::StrList,
                Some("[] (Linux), [\"os=windows:NoSchedule\"] (Windows)"),
                "Node taints as `key=value:Effect` or `key:Effect`.",
            ),
            opt(
                "image",
                Kind::Choice(ImageChoice::NAMES),
                Some("\"auto\""),
                "`auto` boots from an image `hybrid bake` made for this pool's OS, versions and base image when one exists, else the stock image; `baked` requires one; `stock` never uses one.",
            ),
            opt(
                "prepull",
                Kind::StrList,
                Some("[]"),
                "Extra container images a baked image pre-pulls, e.g. `[\"mcr.microsoft.com/windows/servercore:ltsc2022\"]` (the servercore base matching the build).",
            ),
            opt(
                "replace_batch",
                Kind::Int { min: 1, max: 1000 },
                Some("1"),
                "How many nodes of the pool are replaced at a time when a change needs new instances (drained first, the next batch waits until the new nodes are Ready).",
            ),
            opt(
                "player_ports",
                Kind::StrList,
                Some("[]"),
                "Ports this pool's nodes open to `[network] player_cidrs`, as `PORT[-PORT]/tcp|udp`, e.g. `[\"7000-8000/udp\"]` (Agones' default host-port range) or `[\"7777/tcp\"]`; in a security group of the pool's own.",
            ),
            opt(
                "max_pods",
                Kind::Int { min: 1, max: 250 },
                Some("110; on Windows with Calico what one IPAM block holds (60 at /26)"),
                "kubelet maxPods.",
            ),
        ],
    },
    Section {
        name: "access",
        array: false,
        required: false,
        doc: "Who may use the cluster with their AWS identity (`hybrid kubeconfig`, `hybrid token`), by IAM user or role ARN. IAM Identity Center users are in the role their permission set creates (`arn:aws:iam::ACCOUNT:role/aws-reserved/sso.amazonaws.com/…/AWSReservedSSO_…`); each person keeps their own name in the cluster.",
        keys: &[
            opt("admins", Kind::StrList, Some("[]"), "IAM ARNs bound to `cluster-admin`."),
            opt(
                "editors",
                Kind::StrList,
                Some("[]"),
                "IAM ARNs bound to `edit` in every namespace but the system ones: workloads, not RBAC.",
            ),
            opt("viewers", Kind::StrList, Some("[]"), "IAM ARNs bound to `view` (cluster-wide): read-only, no Secrets."),
            opt(
                "roles",
                Kind::StrMap,
                Some("{}"),
                "IAM ARN → the name of another ClusterRole, e.g. `{ \"arn:aws:iam::111122223333:role/CI\" = \"game-deployer\" }` (the team creates the ClusterRole).",
            ),
        ],
    },
];

pub fn section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name == name)
}

/// The closest candidate within a small edit distance, for "did you mean".
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["instance_type", "count", "labels"];
        assert_eq!(did_you_mean("instnce_type", keys), Some("instance_type"));
        assert_eq!(did_you_mean("lables", keys), Some("labels"));
        assert_eq!(did_you_mean("zone", keys), None);
        assert_eq!(did_you_mean("windows-2002", NodeOs::NAMES.iter().copied()), Some("windows-2022"));
    }

    #[test]
    fn key_names_are_unique_within_each_section() {
        for s in SECTIONS {
            for (i, k) in s.keys.iter().enumerate() {
                assert!(s.keys[i + 1..].iter().all(|o| o.name != k.name), "{}.{}", s.name, k.name);
            }
        }
    }
}
