//! The desired cluster as typed values: what `config` produces from a TOML
//! file once it has checked every key, and what every later stage (desired
//! state, bootstrap rendering, planning) consumes.
//!
//! These types hold plain, already validated data and no source positions:
//! positions stay in `config`, which is the only stage that talks to users
//! about their file. Maps are `BTreeMap`s so that everything rendered from a
//! spec is deterministic.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

pub mod access;
pub mod duration;
pub mod net;

use net::Ipv4Cidr;

/// One hybrid cluster as described by a desired-state file.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSpec {
    pub name: String,
    pub region: String,
    pub kubernetes_version: KubeVersion,
    /// containerd on every node (Linux and Windows); defaults from
    /// `versions` for the Kubernetes minor.
    pub containerd_version: String,
    /// Time-to-live for throwaway clusters; `hybrid reap` destroys expired ones.
    pub ttl: Option<Ttl>,
    pub ssh_key_name: Option<String>,
    /// Extra AWS tags put on every resource (the `hybrid:*` tags are reserved).
    pub tags: BTreeMap<String, String>,
    pub network: Network,
    pub cni: Cni,
    pub control_plane: ControlPlane,
    pub pools: Vec<Pool>,
    /// Who may log in with their AWS identity, and as what (`[access]`).
    pub access: access::Access,
}

impl ClusterSpec {
    pub fn windows_pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter().filter(|p| p.os.is_windows())
    }

    pub fn has_windows(&self) -> bool {
        self.windows_pools().next().is_some()
    }

    /// The control plane's private address. Fixed before launch so every
    /// node's bootstrap (which needs the API endpoint) can be rendered at
    /// once and all nodes boot in parallel. Validation guarantees it exists.
    pub fn api_server_ip(&self) -> Option<Ipv4Addr> {
        match (&self.control_plane.private_ip, &self.network.vpc) {
            (Some(ip), _) => Some(*ip),
            (None, Vpc::Create { subnet_cidr, .. }) => subnet_cidr.nth(CONTROL_PLANE_HOST_INDEX),
            (None, Vpc::Existing { .. }) => None,
        }
    }

    /// Worker nodes plus the control plane.
    pub fn node_count(&self) -> u32 {
        1 + self.pools.iter().map(|p| p.count).sum::<u32>()
    }
}

/// Which address of a created subnet the control plane takes: past the
/// five AWS reserves (network, router, DNS, future, broadcast) and easy to
/// recognise.
pub const CONTROL_PLANE_HOST_INDEX: u32 = 10;

/// `major.minor.patch` of Kubernetes, rendered with a leading `v` where
/// kubeadm and the download URLs want one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A time-to-live in whole minutes (`90m`, `8h`, `2d`, `1h30m`: the one
/// duration syntax, `duration::parse`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl {
    pub minutes: u64,
}

impl fmt::Display for Ttl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (d, h, m) = (self.minutes / 1440, self.minutes / 60 % 24, self.minutes % 60);
        let mut out = String::new();
        for (n, unit) in [(d, "d"), (h, "h"), (m, "m")] {
            if n > 0 {
                out.push_str(&format!("{n}{unit}"));
            }
        }
        f.write_str(if out.is_empty() { "0m" } else { &out })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub vpc: Vpc,
    pub pod_cidr: Ipv4Cidr,
    pub service_cidr: Ipv4Cidr,
    /// Who may reach the API server (6443), SSH (22) and RDP (3389).
    pub admin_cidrs: Vec<Ipv4Cidr>,
    /// Who may reach the pools' `player_ports` (testers, a studio's office).
    pub player_cidrs: Vec<Ipv4Cidr>,
}

/// `7000-8000/udp`: ports of one protocol a pool's game servers listen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub udp: bool,
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    /// `PORT[-PORT]/tcp|udp`.
    pub fn parse(s: &str) -> Result<PortRange, String> {
        let (ports, protocol) = s.split_once('/').ok_or_else(|| format!("`{}` has no protocol", s.escape_debug()))?;
        let udp = match protocol {
            "udp" => true,
            "tcp" => false,
            other => return Err(format!("`{}` is not tcp or udp", other.escape_debug())),
        };
        let port =
            |p: &str| p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| format!("`{}` is not a port (1 to 65535)", p.escape_debug()));
        let (from, to) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(ports)?, port(ports)?),
        };
        if from > to {
            return Err(format!("{from}-{to} runs backwards"));
        }
        Ok(PortRange { udp, from, to })
    }

    pub fn protocol(self) -> &'static str {
        if self.udp { "udp" } else { "tcp" }
    }

    pub fn overlaps(self, udp: bool, from: u16, to: u16) -> bool {
        self.udp == udp && self.from <= to && from <= self.to
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "{}/{}", self.from, self.protocol())
        } else {
            write!(f, "{}-{}/{}", self.from, self.to, self.protocol())
        }
    }
}

/// Whether hybrid creates the VPC or places the cluster into existing ones.
#[derive(Clone, Debug, PartialEq)]
pub enum Vpc {
    Create { cidr: Ipv4Cidr, subnet_cidr: Ipv4Cidr },
    Existing { vpc_id: String, subnet_id: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cni {
    pub plugin: CniPlugin,
    pub encapsulation: Encapsulation,
    /// Calico's BGP; Windows nodes cannot peer on AWS, so it stays off.
    pub bgp: bool,
    pub vni: u32,
    pub port: u16,
    pub strict_affinity: bool,
    /// flannel's DirectRouting, which Windows does not support.
    pub direct_routing: bool,
    /// The CNI release; defaults from `versions` for the Kubernetes minor.
    pub version: String,
    /// Calico IPAM block prefix length. A Windows node gets exactly one
    /// block and can give pods all its addresses but four.
    pub block_size: u8,
}

impl Cni {
    /// Addresses Calico on Windows reserves in each block (tigera/docs
    /// windows-calico/limitations.mdx, "IPAM": four per Windows block).
    pub const WINDOWS_RESERVED_PER_BLOCK: u32 = 4;

    /// The most pods a Windows node can give an address with this CNI:
    /// Calico's one block minus its reserved addresses; flannel's node
    /// podCIDR (/24 from kube-controller-manager) is no tighter than
    /// kubelet's default of 110.
    pub fn windows_pod_capacity(&self) -> u32 {
        match self.plugin {
            CniPlugin::Calico => (1u32 << (32 - u32::from(self.block_size).min(31))) - Self::WINDOWS_RESERVED_PER_BLOCK,
            CniPlugin::Flannel => 250,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CniPlugin {
    Calico,
    Flannel,
}

impl CniPlugin {
    pub const NAMES: &[&str] = &["calico", "flannel"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "calico" => Some(Self::Calico),
            "flannel" => Some(Self::Flannel),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Calico => "calico",
            Self::Flannel => "flannel",
        }
    }
}

/// Calico's encapsulation names, spelled as in the operator's Installation
/// resource so users can copy them from Calico's documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encapsulation {
    Vxlan,
    VxlanCrossSubnet,
    Ipip,
    IpipCrossSubnet,
    None,
}

impl Encapsulation {
    pub const NAMES: &[&str] = &["VXLAN", "VXLANCrossSubnet", "IPIP", "IPIPCrossSubnet", "None"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "VXLAN" => Self::Vxlan,
            "VXLANCrossSubnet" => Self::VxlanCrossSubnet,
            "IPIP" => Self::Ipip,
            "IPIPCrossSubnet" => Self::IpipCrossSubnet,
            "None" => Self::None,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ControlPlane {
    pub instance_type: String,
    pub os: LinuxDistro,
    pub ami: Option<AmiRef>,
    pub disk_gb: u32,
    /// The API server's fixed address; see `ClusterSpec::api_server_ip`.
    pub private_ip: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub name: String,
    pub os: NodeOs,
    /// The type nodes are launched as (`instance_type`, or the first of
    /// `instance_types`).
    pub instance_type: String,
    /// Types tried in order when EC2 has no capacity for the ones before
    /// (the rest of `instance_types`).
    pub fallback_types: Vec<String>,
    pub count: u32,
    pub ami: Option<AmiRef>,
    pub disk_gb: u32,
    pub spot: bool,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub max_pods: u32,
    /// Nodes replaced at a time in a rolling replacement.
    pub replace_batch: u32,
    /// Whether nodes boot from a baked image (`hybrid bake`).
    pub image: ImageChoice,
    /// Extra images a baked image pre-pulls (e.g. the servercore base).
    pub prepull: Vec<String>,
    /// Ports its nodes open to `[network] player_cidrs` (its game servers').
    pub player_ports: Vec<PortRange>,
}

/// Which image a pool's nodes boot from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ImageChoice {
    /// A baked image when one matches, else the stock one.
    #[default]
    Auto,
    /// A baked image, or a clear error when none matches.
    Baked,
    /// Always the stock image.
    Stock,
}

impl ImageChoice {
    pub const NAMES: &'static [&'static str] = &["auto", "baked", "stock"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "baked" => Some(Self::Baked),
            "stock" => Some(Self::Stock),
            _ => None,
        }
    }
}

/// An explicit image instead of the latest public one for the OS.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AmiRef {
    Id(String),
    /// A DescribeImages name filter; the newest match wins.
    Name(String),
}

impl AmiRef {
    pub fn parse(s: &str) -> Self {
        if s.starts_with("ami-") && s[4..].chars().all(|c| c.is_ascii_hexdigit()) {
            Self::Id(s.to_string())
        } else {
            Self::Name(s.to_string())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LinuxDistro {
    Ubuntu2404,
    Ubuntu2204,
    Al2023,
}

impl LinuxDistro {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ubuntu2404 => "ubuntu-24.04",
            Self::Ubuntu2204 => "ubuntu-22.04",
            Self::Al2023 => "al2023",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WindowsVersion {
    Ws2019,
    Ws2022,
    Ws2025,
}

impl WindowsVersion {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ws2019 => "windows-2019",
            Self::Ws2022 => "windows-2022",
            Self::Ws2025 => "windows-2025",
        }
    }

    /// The `node.kubernetes.io/windows-build` label kubelet puts on the node;
    /// container images must match it (WINDOWS-NOTES §1.4).
    pub fn build(self) -> &'static str {
        match self {
            Self::Ws2019 => "10.0.17763",
            Self::Ws2022 => "10.0.20348",
            Self::Ws2025 => "10.0.26100",
        }
    }

    /// The image tag suffix of Microsoft's base images for this host.
    pub fn ltsc_tag(self) -> &'static str {
        match self {
            Self::Ws2019 => "ltsc2019",
            Self::Ws2022 => "ltsc2022",
            Self::Ws2025 => "ltsc2025",
        }
    }
}

/// Serialized as its name (`"windows-2022"`), as in the cluster file.
impl serde::Serialize for NodeOs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The operating system of a node, as written in `os = "…"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeOs {
    Linux(LinuxDistro),
    Windows(WindowsVersion),
}

impl NodeOs {
    /// Every spelling the file accepts. `linux` means "the control plane's distribution".
    pub const NAMES: &[&str] = &["linux", "ubuntu-24.04", "ubuntu-22.04", "al2023", "windows-2019", "windows-2022", "windows-2025"];

    /// Parses an OS name; `linux` resolves to `linux_default`.
    pub fn parse(s: &str, linux_default: LinuxDistro) -> Option<Self> {
        Some(match s {
            "linux" => Self::Linux(linux_default),
            "ubuntu-24.04" => Self::Linux(LinuxDistro::Ubuntu2404),
            "ubuntu-22.04" => Self::Linux(LinuxDistro::Ubuntu2204),
            "al2023" => Self::Linux(LinuxDistro::Al2023),
            "windows-2019" => Self::Windows(WindowsVersion::Ws2019),
            "windows-2022" => Self::Windows(WindowsVersion::Ws2022),
            "windows-2025" => Self::Windows(WindowsVersion::Ws2025),
            _ => return None,
        })
    }

    pub fn is_windows(self) -> bool {
        matches!(self, Self::Windows(_))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Linux(d) => d.name(),
            Self::Windows(w) => w.name(),
        }
    }
}

/// A Kubernetes taint, written `key=value:Effect` or `key:Effect`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect.name())
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect.name())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub const NAMES: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "NoSchedule" => Self::NoSchedule,
            "PreferNoSchedule" => Self::PreferNoSchedule,
            "NoExecute" => Self::NoExecute,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Whether kubelet may put this label on its own node. NodeRestriction
/// refuses self-applied labels in the kubernetes.io and k8s.io namespaces
/// outside kubelet.kubernetes.io/ and node.kubernetes.io/ (kubelet exits at
/// start with such `--node-labels`); hybrid applies those through the API.
pub fn kubelet_may_self_label(key: &str) -> bool {
    let Some((prefix, _)) = key.split_once('/') else { return true };
    let in_ns = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
    in_ns("kubelet.kubernetes.io") || in_ns("node.kubernetes.io") || !(in_ns("kubernetes.io") || in_ns("k8s.io"))
}

/// The taint Windows pools get when the file says nothing, so Linux pods
/// without a toleration never land on Windows nodes.
pub fn default_windows_taint() -> Taint {
    Taint { key: "os".into(), value: "windows".into(), effect: TaintEffect::NoSchedule }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_self_labels() {
        assert!(kubelet_may_self_label("game.example.com/role"));
        assert!(kubelet_may_self_label("role"));
        assert!(kubelet_may_self_label("node.kubernetes.io/pool"));
        assert!(!kubelet_may_self_label("node-role.kubernetes.io/game"));
        assert!(!kubelet_may_self_label("example.k8s.io/x"));
    }
}
