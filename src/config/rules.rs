//! The semantic pass: rules that need the whole typed spec. This is where the
//! hard-won Windows knowledge lives, so that `hybrid validate` catches in a
//! second what would otherwise fail on a node twenty minutes into a boot.
//! Each rule names the key to change and how to change it; sources for the
//! facts are in `shared/WINDOWS-NOTES.md` (section numbers in comments).

use super::instance_types;
use super::read::Spans;
use crate::config::problems::Diagnostics;
use crate::model::net::Ipv4Cidr;
use crate::model::*;
use crate::versions;

/// Names hybrid itself uses for a group of nodes: the control plane's slot,
/// render folder and `hybrid:pool` tag value.
pub const RESERVED_POOL_NAMES: &[&str] = &["control-plane"];

/// Calico IPv4 IPAM block sizes hybrid accepts: Calico allows /20 to /32;
/// past /28 a Windows node would get fewer than 12 pods.
pub const BLOCK_SIZES: std::ops::RangeInclusive<u8> = 20..=28;

/// Windows (HNS) refuses VXLAN VNIs below 4096 and any UDP port but 4789
/// (WINDOWS-NOTES §4.2, §5: flannel's vxlan_windows.go enforces both).
pub const WINDOWS_MIN_VNI: u32 = 4096;
pub const WINDOWS_VXLAN_PORT: u16 = 4789;

/// Names become prefixes of node names, AWS Name tags and SSM paths; 40
/// leaves room for `-<pool>-<index>` within DNS's 63.
const MAX_NAME_LEN: usize = 40;

pub struct Rules<'a> {
    spec: &'a ClusterSpec,
    spans: &'a Spans,
    diags: &'a mut Diagnostics,
}

pub fn check(spec: &ClusterSpec, spans: &Spans, diags: &mut Diagnostics) {
    let mut r = Rules { spec, spans, diags };
    r.cluster();
    r.network();
    r.control_plane();
    r.pools();
    r.cni();
    r.access();
}

impl Rules<'_> {
    /// Reports an error at `key`. A key ending in `#key` points at a table
    /// key (a label's name) rather than its value; users see it without.
    fn error(&mut self, key: &str, message: impl Into<String>, help: impl Into<String>) {
        let shown = key.trim_end_matches("#key");
        if !self.diags.has_error_at(shown) {
            let span = self.spans.get(key);
            self.diags.error(shown, span, message).help(help);
        }
    }

    fn warning(&mut self, key: &str, message: impl Into<String>, help: impl Into<String>) {
        if self.diags.has_error_within(key) {
            return;
        }
        let span = self.spans.get(key);
        self.diags.warning(key, span, message).help(help);
    }

    fn cluster(&mut self) {
        let s = self.spec;
        self.dns_label("cluster.name", &s.name);
        if !is_region(&s.region) {
            self.error(
                "cluster.region",
                format!("`{}` is not an AWS region name", s.region.escape_debug()),
                "write a region such as \"us-east-1\" or \"eu-west-2\"",
            );
        }
        // The compatibility matrix (src/versions) decides what works together.
        match versions::check_kubernetes(s.kubernetes_version) {
            Err(m) => self.error("cluster.kubernetes_version", m.message, m.hint),
            Ok(minor) => {
                if let Some(m) = versions::check_patch(s.kubernetes_version, minor) {
                    self.warning("cluster.kubernetes_version", m.message, m.hint);
                }
                if let Err(m) = versions::check_containerd(minor, &s.containerd_version) {
                    self.error("cluster.containerd_version", m.message, m.hint);
                } else if let Some(m) = versions::containerd_end_of_life(&s.containerd_version) {
                    self.warning("cluster.containerd_version", m.message, m.hint);
                }
            }
        }
        if let Some(ttl) = s.ttl
            && !(10..=90 * 1440).contains(&ttl.minutes)
        {
            self.error(
                "cluster.ttl",
                format!("time-to-live {ttl} is outside 10m to 90d"),
                "a dev/QA cluster lives between 10 minutes and 90 days; remove `ttl` to keep it until `hybrid destroy`",
            );
        }
        if let Some(k) = &s.ssh_key_name
            && (k.is_empty() || k.len() > 255 || !k.chars().all(|c| c.is_ascii_graphic() || c == ' ') || script_hazard(k).is_some())
        {
            self.error(
                "cluster.ssh_key_name",
                format!("`{}` is not a usable EC2 key pair name", k.escape_debug()),
                "EC2 key pair names are 1-255 printable ASCII characters without quotes, `$` or backticks",
            );
        }
        for (k, v) in &s.tags {
            let key = format!("cluster.tags.{k:?}");
            let lower = k.to_ascii_lowercase();
            if lower.starts_with("aws:") || lower.starts_with("hybrid:") {
                self.error(
                    &format!("{key}#key"),
                    format!("tag key `{k}` uses a reserved prefix"),
                    "`aws:` belongs to AWS and `hybrid:` to hybrid's own bookkeeping; choose another key",
                );
            } else if k.is_empty() || k.chars().count() > 128 || !k.chars().all(is_tag_char) {
                self.error(
                    &format!("{key}#key"),
                    format!("`{}` is not a valid AWS tag key", k.escape_debug()),
                    "tag keys are 1-128 letters, digits, spaces and _ . : / = + - @",
                );
            }
            if v.chars().count() > 256 || !v.chars().all(is_tag_char) {
                let why = script_hazard(v).map_or("is not a valid AWS tag value".to_string(), |h| format!("contains {h}"));
                self.error(
                    &key,
                    format!("tag value `{}` {why}", v.escape_debug()),
                    "tag values are up to 256 letters, digits, spaces and _ . : / = + - @",
                );
            }
        }
    }

    fn network(&mut self) {
        let n = &self.spec.network;
        let mut named: Vec<(&str, Ipv4Cidr)> = Vec::new();
        match &n.vpc {
            Vpc::Create { cidr, subnet_cidr } => {
                if !(16..=28).contains(&cidr.prefix()) {
                    self.error(
                        "network.vpc_cidr",
                        format!("VPC CIDR {cidr} must be between /16 and /28"),
                        "AWS accepts VPC blocks from /16 to /28; try \"10.0.0.0/16\"",
                    );
                }
                if !cidr.contains(*subnet_cidr) {
                    self.error(
                        "network.subnet_cidr",
                        format!("subnet {subnet_cidr} is not inside the VPC {cidr}"),
                        format!("pick a block inside {cidr}, e.g. \"{}\"", cidr.first_subnet(24.max(cidr.prefix())).unwrap_or(*cidr)),
                    );
                } else if subnet_cidr.prefix() > 28 {
                    self.error(
                        "network.subnet_cidr",
                        format!("subnet {subnet_cidr} is smaller than AWS's /28 minimum"),
                        "use a /24 or larger",
                    );
                } else if subnet_cidr.size() < u64::from(self.spec.node_count()) + 5 {
                    // AWS reserves five addresses in every subnet.
                    self.error(
                        "network.subnet_cidr",
                        format!(
                            "subnet {subnet_cidr} has room for {} nodes but the file asks for {}",
                            subnet_cidr.size().saturating_sub(5),
                            self.spec.node_count()
                        ),
                        "use a larger subnet_cidr",
                    );
                }
                named.push(("network.vpc_cidr", *cidr));
            }
            Vpc::Existing { vpc_id, subnet_id } => {
                if !is_aws_id(vpc_id, "vpc-") {
                    self.error(
                        "network.vpc_id",
                        format!("`{}` is not a VPC id", vpc_id.escape_debug()),
                        "VPC ids look like \"vpc-0abc1234def567890\"",
                    );
                }
                if !is_aws_id(subnet_id, "subnet-") {
                    self.error(
                        "network.subnet_id",
                        format!("`{}` is not a subnet id", subnet_id.escape_debug()),
                        "subnet ids look like \"subnet-0abc1234def567890\"",
                    );
                }
            }
        }
        named.push(("network.pod_cidr", n.pod_cidr));
        named.push(("network.service_cidr", n.service_cidr));
        for (i, (a_key, a)) in named.iter().enumerate() {
            for (b_key, b) in &named[i + 1..] {
                if a.overlaps(*b) {
                    let (a_name, b_name) = (a_key.trim_start_matches("network."), b_key.trim_start_matches("network."));
                    self.error(
                        b_key,
                        format!("{b_name} {b} overlaps {a_name} {a}"),
                        format!("{b_name} and {a_name} must be disjoint; packets would be routed to the wrong place"),
                    );
                }
            }
        }
        let svc = n.service_cidr;
        if svc.prefix() < 12 {
            self.error(
                "network.service_cidr",
                format!("service CIDR {svc} is larger than kube-apiserver allows (/12)"),
                "use a /12 to /24, e.g. \"10.96.0.0/12\"",
            );
        } else if svc.prefix() > 24 {
            self.error(
                "network.service_cidr",
                format!("service CIDR {svc} is too small: {} addresses", svc.size()),
                "use a /24 or larger; the kubernetes and DNS services alone take the 1st and 10th address",
            );
        }
        self.pod_capacity();
        if n.admin_cidrs.is_empty() {
            self.warning(
                "network.admin_cidrs",
                "no admin CIDRs: nothing outside the cluster may reach the API server, so `hybrid apply` cannot converge the cluster",
                "add your office or VPN range, or run apply with --api-server through a tunnel (or --ec2-only)",
            );
        }
        for (i, c) in n.player_cidrs.iter().enumerate() {
            if c.prefix() == 0 {
                self.warning(
                    &format!("network.player_cidrs[{i}]"),
                    "0.0.0.0/0 opens the pools' player ports to the whole internet",
                    "fine for a public playtest; for testers, list the studio's or the testers' ranges",
                );
            }
        }
        for (i, c) in n.admin_cidrs.iter().enumerate() {
            if c.prefix() == 0 {
                self.warning(
                    &format!("network.admin_cidrs[{i}]"),
                    "0.0.0.0/0 opens the API server, SSH and RDP to the whole internet",
                    "list your office or VPN ranges instead",
                );
            }
        }
    }

    /// Every node needs its own slice of the pod network: a /24 with flannel
    /// (controller-manager's node CIDRs), IPAM blocks of `cni.block_size`
    /// with Calico, which with strictAffinity no two nodes share
    /// (WINDOWS-NOTES §4.2); a node with more pods than one block holds gets
    /// several.
    fn pod_capacity(&mut self) {
        let pod = self.spec.network.pod_cidr;
        let nodes = u64::from(self.spec.node_count());
        let (per_node_prefix, slices) = match self.spec.cni.plugin {
            CniPlugin::Flannel => (24u8, nodes),
            CniPlugin::Calico => {
                let block = self.spec.cni.block_size.clamp(*BLOCK_SIZES.start(), *BLOCK_SIZES.end());
                let per_block = 1u32 << (32 - u32::from(block));
                // The control plane keeps kubelet's default of 110 pods.
                let cp = u64::from(110u32.div_ceil(per_block));
                let workers: u64 = self.spec.pools.iter().map(|p| u64::from(p.count) * u64::from(p.max_pods.div_ceil(per_block))).sum();
                (block, cp + workers)
            }
        };
        if pod.prefix() > per_node_prefix {
            self.error(
                "network.pod_cidr",
                format!("pod CIDR {pod} is smaller than one node's /{per_node_prefix} slice"),
                "use a /16, e.g. \"192.168.0.0/16\"",
            );
            return;
        }
        let available = 1u64 << (per_node_prefix - pod.prefix());
        if slices > available {
            self.error(
                "network.pod_cidr",
                format!("pod CIDR {pod} holds {available} /{per_node_prefix} blocks but {nodes} nodes need {slices}"),
                "use a larger pod_cidr (a smaller prefix length)",
            );
        }
    }

    fn control_plane(&mut self) {
        let cp = &self.spec.control_plane;
        self.instance_type("control_plane.instance_type", &cp.instance_type, false);
        if let Some(ami) = &cp.ami {
            self.ami("control_plane.ami", ami);
        }
        match (&self.spec.network.vpc, cp.private_ip) {
            (Vpc::Create { subnet_cidr, .. }, Some(ip)) => {
                let inside = Ipv4Cidr::parse(&format!("{ip}/32")).is_ok_and(|host| subnet_cidr.contains(host));
                let offset = u32::from(ip).wrapping_sub(u32::from(subnet_cidr.network()));
                if !inside {
                    self.error(
                        "control_plane.private_ip",
                        format!("{ip} is not inside the subnet {subnet_cidr}"),
                        "pick an address inside subnet_cidr, or remove private_ip to use its 10th address",
                    );
                } else if offset < 4 || u64::from(offset) == subnet_cidr.size() - 1 {
                    self.error(
                        "control_plane.private_ip",
                        format!("{ip} is one of the addresses AWS reserves in {subnet_cidr}"),
                        "AWS reserves the first four and the last address of every subnet",
                    );
                }
            }
            (Vpc::Existing { .. }, None) => {
                self.error("network.vpc_id", "an existing VPC needs control_plane.private_ip", "set control_plane.private_ip to a free address in subnet_id: every node's bootstrap needs the API server address before anything boots");
            }
            _ => {}
        }
        if cp.disk_gb < 20 {
            self.error(
                "control_plane.disk_gb",
                format!("{} GiB is too small for a control plane", cp.disk_gb),
                "use at least 20 (images, etcd and logs)",
            );
        }
    }

    fn pools(&mut self) {
        let spec = self.spec;
        for (i, p) in spec.pools.iter().enumerate() {
            let key = |k: &str| format!("pool[{i}].{k}");
            self.dns_label(&key("name"), &p.name);
            if let Some(j) = spec.pools[..i].iter().position(|q| q.name == p.name) {
                self.error(
                    &key("name"),
                    format!("pool name `{}` is already used by pool[{j}]", p.name),
                    "give every [[pool]] its own name; node names are derived from it",
                );
            }
            if RESERVED_POOL_NAMES.contains(&p.name.as_str()) || p.name.starts_with("hybrid") {
                self.error(
                    &key("name"),
                    format!("pool name `{}` is reserved: hybrid uses it for its own slots, folders and tags", p.name),
                    "choose another name, e.g. \"linux\" or \"win-tools\"",
                );
            }
            if p.fallback_types.is_empty() {
                if !p.instance_type.is_empty() {
                    self.instance_type(&key("instance_type"), &p.instance_type, p.os.is_windows());
                }
            } else {
                let types: Vec<&String> = std::iter::once(&p.instance_type).chain(&p.fallback_types).collect();
                for (n, t) in types.iter().enumerate() {
                    self.instance_type(&key(&format!("instance_types[{n}]")), t, p.os.is_windows());
                    if types[..n].contains(t) {
                        self.error(
                            &key(&format!("instance_types[{n}]")),
                            format!("{t} is listed twice"),
                            "list each type once, in the order to try them",
                        );
                    }
                }
            }
            if let (NodeOs::Windows(w), Some(minor)) = (p.os, versions::kube_minor(spec.kubernetes_version.minor)) {
                if let Err(m) = versions::check_windows(w, minor, spec.cni.plugin, &spec.cni.version) {
                    self.error(&key("os"), m.message, m.hint);
                }
                let capacity = spec.cni.windows_pod_capacity();
                if p.max_pods > capacity {
                    let (why, hint) = match spec.cni.plugin {
                        CniPlugin::Calico => (
                            format!("Calico gives it one /{} block, {capacity} usable addresses", spec.cni.block_size),
                            format!("set max_pods to at most {capacity}, or a smaller cni.block_size (e.g. 25 for 124 pods)"),
                        ),
                        CniPlugin::Flannel => (
                            format!("flannel gives it the node's /24, {capacity} usable addresses"),
                            format!("set max_pods to at most {capacity}"),
                        ),
                    };
                    self.error(&key("max_pods"), format!("max_pods {} is more than a Windows node can address: {why}", p.max_pods), hint);
                }
            }
            if let Some(ami) = &p.ami {
                self.ami(&key("ami"), ami);
            }
            self.player_ports(i, p);
            for (n, image) in p.prepull.iter().enumerate() {
                if !is_image_reference(image) {
                    self.error(
                        &format!("{}[{n}]", key("prepull")),
                        format!("`{}` is not a container image reference", image.escape_debug()),
                        "write registry/repository:tag or …@sha256:digest in lowercase, e.g. \"mcr.microsoft.com/windows/servercore:ltsc2022\"",
                    );
                }
            }
            let min_disk = if p.os.is_windows() { 30 } else { 20 };
            if p.disk_gb < min_disk {
                self.error(
                    &key("disk_gb"),
                    format!("{} GiB is smaller than the {} image", p.disk_gb, p.os.name()),
                    format!("use at least {min_disk}; Windows images need room for multi-GB container layers"),
                );
            } else if p.os.is_windows() && p.disk_gb < 60 {
                self.warning(
                    &key("disk_gb"),
                    format!("{} GiB leaves little room for Windows container images", p.disk_gb),
                    "servercore images are several GB each; 100 is a comfortable size",
                );
            }
            for (k, v) in &p.labels {
                let lkey = format!("{}.{k:?}", key("labels"));
                if let Err(why) = check_qualified_name(k) {
                    self.error(&format!("{lkey}#key"), format!("label key `{}` {why}", k.escape_debug()), "label keys are [prefix/]name: name up to 63 of a-z A-Z 0-9 - _ . starting and ending alphanumeric; prefix a DNS subdomain");
                } else if is_reserved_label(k) {
                    self.error(
                        &format!("{lkey}#key"),
                        format!("label key `{k}` is set by kubelet or the cloud provider itself"),
                        "choose your own key such as game.example.com/role; hybrid's RuntimeClasses already select on kubernetes.io/os and node.kubernetes.io/windows-build",
                    );
                }
                if let Err(why) = check_label_value(v) {
                    self.error(
                        &lkey,
                        format!("label value `{}` {why}", v.escape_debug()),
                        "label values are up to 63 of a-z A-Z 0-9 - _ . starting and ending alphanumeric, or empty",
                    );
                }
            }
            for (t, taint) in p.taints.iter().enumerate() {
                let tkey = format!("{}[{t}]", key("taints"));
                if let Err(why) = check_qualified_name(&taint.key) {
                    self.error(&tkey, format!("taint key `{}` {why}", taint.key.escape_debug()), "taint keys follow the label key rules");
                } else if let Err(why) = check_label_value(&taint.value) {
                    self.error(
                        &tkey,
                        format!("taint value `{}` {why}", taint.value.escape_debug()),
                        "taint values follow the label value rules",
                    );
                }
            }
            if p.os.is_windows() && p.taints.is_empty() && p.count > 0 {
                self.warning(
                    &key("taints"),
                    format!("Windows pool `{}` has no taint: Linux pods without a nodeSelector may be scheduled there and fail", p.name),
                    "keep the default [\"os=windows:NoSchedule\"] and let Windows workloads tolerate it (hybrid's RuntimeClass does)",
                );
            }
        }
        if self.spec.cni.plugin == CniPlugin::Calico && self.spec.has_windows() {
            let linux_workers: u32 = spec.pools.iter().filter(|p| !p.os.is_windows()).map(|p| p.count).sum();
            if linux_workers < 2 {
                self.warning(
                    "pool",
                    format!("{linux_workers} Linux worker(s): Calico's Typha runs on Linux nodes and Windows Felix depends on it"),
                    "add a Linux pool with count >= 2 so Typha survives a node loss",
                );
            }
        }
    }

    fn cni(&mut self) {
        let spec = self.spec;
        let cni = &spec.cni;
        let minor = versions::kube_minor(spec.kubernetes_version.minor);
        if !is_semver(&cni.version) {
            let example = versions::default_cni_version(cni.plugin, minor.unwrap_or_else(versions::default_minor));
            self.error(
                "cni.version",
                format!("`{}` is not a version like \"{example}\"", cni.version.escape_debug()),
                "write MAJOR.MINOR.PATCH without a leading v",
            );
        } else if let Some(minor) = minor
            && let Err(m) = versions::check_cni(cni.plugin, &cni.version, minor)
        {
            self.error("cni.version", m.message, m.hint);
        }
        if cni.plugin == CniPlugin::Calico && !(BLOCK_SIZES.contains(&cni.block_size)) {
            self.error(
                "cni.block_size",
                format!("block size /{} is outside /{} to /{}", cni.block_size, BLOCK_SIZES.start(), BLOCK_SIZES.end()),
                "keep the default 26 (60 pods per Windows node) unless you need more or fewer pods per node",
            );
        }
        match cni.plugin {
            CniPlugin::Flannel => {
                if cni.encapsulation != Encapsulation::Vxlan {
                    self.error(
                        "cni.encapsulation",
                        format!("flannel in hybrid uses the vxlan backend only, not {}", cni.encapsulation.name()),
                        "remove `encapsulation` or set it to \"VXLAN\"",
                    );
                }
                if cni.bgp {
                    self.error("cni.bgp", "flannel has no BGP", "remove `bgp`; it is a Calico setting");
                }
            }
            CniPlugin::Calico => {
                if cni.direct_routing {
                    self.error(
                        "cni.direct_routing",
                        "direct_routing is a flannel setting",
                        "remove it; Calico's equivalent is VXLANCrossSubnet, which Windows does not support",
                    );
                }
                if cni.encapsulation == Encapsulation::None && !cni.bgp {
                    self.error(
                        "cni.encapsulation",
                        "with no encapsulation and BGP off, pods on different nodes cannot reach each other",
                        "use encapsulation = \"VXLAN\"",
                    );
                }
            }
        }
        let Some(first_win) = spec.pools.iter().position(|p| p.os.is_windows()) else { return };
        let win = &spec.pools[first_win];
        let why = format!("pool `{}` runs {}", win.name, win.os.name());
        match cni.plugin {
            CniPlugin::Calico => {
                // WINDOWS-NOTES §4: Calico for Windows supports VXLAN only (no IPIP,
                // no CrossSubnet), and BGP-only networking cannot work on AWS
                // without touching source/destination checks and route tables.
                match cni.encapsulation {
                    Encapsulation::Ipip | Encapsulation::IpipCrossSubnet => self.error(
                        "cni.encapsulation",
                        format!("Calico on Windows does not support IP-in-IP ({}), and {why}", cni.encapsulation.name()),
                        "set encapsulation = \"VXLAN\"",
                    ),
                    Encapsulation::VxlanCrossSubnet => self.error(
                        "cni.encapsulation",
                        format!("Calico on Windows does not support VXLANCrossSubnet, and {why}"),
                        "set encapsulation = \"VXLAN\" (always encapsulate)",
                    ),
                    Encapsulation::None if cni.bgp => self.error(
                        "cni.encapsulation",
                        format!("BGP without encapsulation does not work for Windows nodes on AWS, and {why}"),
                        "set encapsulation = \"VXLAN\" and bgp = false",
                    ),
                    _ => {}
                }
                if cni.bgp && cni.encapsulation != Encapsulation::None {
                    self.error(
                        "cni.bgp",
                        format!("Windows nodes need Calico's BGP disabled (VXLAN-only networking), and {why}"),
                        "set bgp = false",
                    );
                }
                if !cni.strict_affinity {
                    self.error(
                        "cni.strict_affinity",
                        format!("Calico on Windows requires IPAM strictAffinity, and {why}"),
                        "set strict_affinity = true: Windows nodes cannot borrow IPs from other nodes' blocks",
                    );
                }
            }
            CniPlugin::Flannel => {
                if cni.direct_routing {
                    self.error(
                        "cni.direct_routing",
                        format!("flannel does not support DirectRouting on Windows, and {why}"),
                        "set direct_routing = false",
                    );
                }
            }
        }
        if cni.vni < WINDOWS_MIN_VNI {
            self.error(
                "cni.vni",
                format!("VNI {} is below {WINDOWS_MIN_VNI}, which Windows (HNS) requires, and {why}", cni.vni),
                format!("set vni = {WINDOWS_MIN_VNI}"),
            );
        }
        if cni.port != WINDOWS_VXLAN_PORT {
            self.error(
                "cni.port",
                format!("Windows supports VXLAN on UDP port {WINDOWS_VXLAN_PORT} only, not {}, and {why}", cni.port),
                format!("set port = {WINDOWS_VXLAN_PORT} (on Linux and Windows alike, so they interoperate)"),
            );
        }
    }

    /// A pool's player ports: never one the cluster itself uses (a tester
    /// could otherwise reach the kubelet or etcd, or a NodePort), each once,
    /// and open to someone.
    fn player_ports(&mut self, i: usize, p: &crate::model::Pool) {
        let own = crate::infra::desired::security_rules(self.spec);
        let key = |n: usize| format!("pool[{i}].player_ports[{n}]");
        for (n, r) in p.player_ports.iter().enumerate() {
            let clash = own.iter().find(|rule| {
                let udp = rule.protocol == "udp";
                (rule.protocol == "tcp" || udp) && r.overlaps(udp, rule.from_port.max(0) as u16, rule.to_port.max(0) as u16)
            });
            if let Some(rule) = clash {
                self.error(
                    &key(n),
                    format!("{r} overlaps the cluster's own {}-{}/{} ({})", rule.from_port, rule.to_port, rule.protocol, rule.description),
                    "pick ports outside the cluster's (Agones' default host ports are 7000-8000/udp)",
                );
            } else if let Some(m) = p.player_ports[..n].iter().position(|o| o.overlaps(r.udp, r.from, r.to)) {
                self.error(&key(n), format!("{r} overlaps {} in the same list", p.player_ports[m]), "list each range once");
            }
        }
        if !p.player_ports.is_empty() && self.spec.network.player_cidrs.is_empty() {
            self.warning(
                &format!("pool[{i}].player_ports"),
                "player ports are open to nobody: [network] player_cidrs is empty",
                "add the testers' or the studio's ranges to [network] player_cidrs",
            );
        }
    }

    /// `[access]`: ARNs were parsed where they were read (build.rs); here
    /// the ClusterRole names and repeats.
    fn access(&mut self) {
        use crate::model::access::ClusterRole;
        let mut seen = std::collections::BTreeSet::new();
        for g in &self.spec.access.grants {
            if !seen.insert((g.principal.mapping_arn(), g.role.clone())) {
                let list = match &g.role {
                    ClusterRole::Admin => "admins",
                    ClusterRole::Editor => "editors",
                    ClusterRole::Viewer => "viewers",
                    ClusterRole::Named(_) => "roles",
                };
                self.warning(
                    &format!("access.{list}"),
                    format!("{} is listed twice", g.principal.mapping_arn()),
                    "a role's path does not tell two roles apart (aws-iam-authenticator compares roles without it); remove one",
                );
            }
            let ClusterRole::Named(name) = &g.role else { continue };
            let key = format!("access.roles.{:?}", g.principal.to_string());
            match name.as_str() {
                "cluster-admin" | "edit" | "view" => {
                    self.warning(&key, format!("`{name}` has its own list"), "put the ARN in `admins`, `editors` or `viewers` instead")
                }
                // RBAC object names are path segments (apimachinery
                // path.IsValidPathSegmentName) and a binding's name adds
                // `hybrid:role:`, so keep to what a label can carry.
                _ if name.is_empty()
                    || name.len() > 200
                    || name == "."
                    || name == ".."
                    || name.contains(['/', '%'])
                    || script_hazard(name).is_some()
                    || name.chars().any(|c| c.is_whitespace() || c.is_control()) =>
                {
                    self.error(
                        &key,
                        format!("`{}` is not a ClusterRole name", name.escape_debug()),
                        "write the name of a ClusterRole, e.g. \"game-deployer\"",
                    )
                }
                _ => {}
            }
        }
    }

    fn dns_label(&mut self, key: &str, name: &str) {
        if name.is_empty() || name.len() > MAX_NAME_LEN || !is_dns_label(name) {
            let why = script_hazard(name).map_or(String::new(), |h| format!(" (it contains {h})"));
            self.error(
                key,
                format!("`{}` is not a DNS-1123 label of at most {MAX_NAME_LEN} characters{why}", name.escape_debug()),
                "use lowercase letters, digits and '-', starting with a letter or digit and ending with one, e.g. \"win-tools\"",
            );
        }
    }

    fn instance_type(&mut self, key: &str, t: &str, windows: bool) {
        let Some((family, size)) = t.split_once('.') else {
            return self.error(key, format!("`{}` is not an EC2 instance type", t.escape_debug()), "write family.size, e.g. \"m5.xlarge\"");
        };
        let well_formed = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !well_formed(family) || !well_formed(size) || !family.starts_with(|c: char| c.is_ascii_lowercase()) {
            return self.error(key, format!("`{}` is not an EC2 instance type", t.escape_debug()), "write family.size, e.g. \"m5.xlarge\"");
        }
        if !instance_types::SIZES.contains(&size) {
            return self.error(
                key,
                format!("{t} is not an EC2 instance type: there is no size `{size}`"),
                format!("sizes are {}; e.g. \"{family}.xlarge\"", instance_types::SIZES[..8].join(", ")),
            );
        }
        if !instance_types::FAMILIES.contains(&family) && !is_arm_family(family) {
            self.warning(
                key,
                format!("{family} is not an instance family hybrid knows"),
                "if it is new, `hybrid plan` checks it against the region before anything is created; otherwise check the spelling",
            );
        }
        if is_arm_family(family) {
            let what = if windows { "Windows Server AMIs are x86_64 only" } else { "hybrid renders x86_64 images only for now" };
            return self.error(
                key,
                format!("{t} is a Graviton (arm64) type; {what}"),
                "choose an x86_64 type such as m6i.xlarge or m5.xlarge",
            );
        }
        if windows && ["nano", "micro", "small"].contains(&size) {
            self.warning(
                key,
                format!("{t} is too small for a Windows node running containers"),
                "use at least 4 GiB of memory, e.g. t3.large or m5.large",
            );
        }
    }

    fn ami(&mut self, key: &str, ami: &AmiRef) {
        match ami {
            AmiRef::Id(id) if ![12, 21].contains(&id.len()) => {
                self.error(key, format!("`{id}` is not an AMI id"), "AMI ids have 8 or 17 hex digits after ami-");
            }
            AmiRef::Name(name)
                if name.is_empty() || name.len() > 128 || script_hazard(name).is_some() || name.chars().any(char::is_control) =>
            {
                self.error(
                    key,
                    format!("`{}` is not an AMI id or usable image name filter", name.escape_debug()),
                    "write ami-… or an image name (wildcards * and ? allowed), up to 128 characters without quotes or `$`",
                );
            }
            _ => {}
        }
    }
}

/// The first thing in `s` that could end a quoted string or start a command
/// substitution in a generated script, described for an error message. The
/// renderer quotes every value anyway; rejecting these early turns a subtle
/// runtime surprise into a clear validation error.
pub fn script_hazard(s: &str) -> Option<&'static str> {
    let hazards: &[(&str, &str)] = &[
        ("$(", "`$(`, a command substitution"),
        ("`", "a backtick"),
        ("'", "a quote"),
        ("\"", "a quote"),
        ("\u{2018}", "a typographic quote"),
        ("\u{2019}", "a typographic quote"),
        ("\u{201A}", "a typographic quote"),
        ("\u{201B}", "a typographic quote"),
        ("\n", "a line break"),
        ("\r", "a line break"),
        ("$", "a `$`"),
        ("<", "a `<`"),
        (">", "a `>`"),
        (";", "a `;`"),
    ];
    hazards.iter().find(|(h, _)| s.contains(h)).map(|(_, what)| *what)
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Kubernetes' qualified name: `[prefix/]name`.
pub fn check_qualified_name(s: &str) -> Result<(), String> {
    if let Some(h) = script_hazard(s) {
        return Err(format!("contains {h}, which could break out of the generated script"));
    }
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Err(format!("has prefix `{p}`, which is not a lowercase DNS subdomain"));
    }
    if name.is_empty() {
        return Err("has an empty name".into());
    }
    check_label_value(name)
}

/// Kubernetes' label value: empty, or at most 63 of `[A-Za-z0-9-_.]`
/// beginning and ending alphanumeric.
pub fn check_label_value(s: &str) -> Result<(), String> {
    if let Some(h) = script_hazard(s) {
        return Err(format!("contains {h}, which could break out of the generated script"));
    }
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 63 {
        return Err(format!("is {} characters long; the limit is 63", s.len()));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    if let Some(c) = s.chars().find(|c| !ok_char(*c)) {
        return Err(format!("contains `{}`, which Kubernetes does not allow", c.escape_debug()));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) || !s.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// Labels kubelet or the cloud provider own: a pool setting them would lie
/// about the node (e.g. `kubernetes.io/os=linux` on a Windows node).
fn is_reserved_label(key: &str) -> bool {
    const RESERVED: &[&str] = &[
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "kubernetes.io/hostname",
        "node.kubernetes.io/windows-build",
        "node.kubernetes.io/instance-type",
    ];
    RESERVED.contains(&key) || key.starts_with("topology.kubernetes.io/") || key.starts_with("beta.kubernetes.io/")
}

fn is_region(s: &str) -> bool {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, ap-southeast-5
    let parts: Vec<&str> = s.split('-').collect();
    let lower = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    (3..=4).contains(&parts.len())
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| lower(p))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0)
}

fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|h| (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

fn is_semver(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || " _.:/=+-@".contains(c)
}

/// Graviton families carry a `g` after the generation digit: m6g, c7gn,
/// t4g, r8gd. GPU families (g4dn, g5) start with `g` and are x86_64.
fn is_arm_family(family: &str) -> bool {
    let after_letters = family.trim_start_matches(|c: char| c.is_ascii_lowercase());
    let suffix = after_letters.trim_start_matches(|c: char| c.is_ascii_digit());
    after_letters.len() != suffix.len() && suffix.contains('g')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graviton_detection() {
        for arm in ["m6g", "c7gn", "t4g", "r8gd", "x2gd", "hpc7g", "m7g"] {
            assert!(is_arm_family(arm), "{arm}");
        }
        for x86 in ["g4dn", "g5", "m5", "c6i", "t3", "m7i", "r6a", "inf2", "p5", "m5zn"] {
            assert!(!is_arm_family(x86), "{x86}");
        }
    }

    #[test]
    fn label_values_follow_kubernetes() {
        for good in ["", "a", "server", "v1.2_3-x", &"a".repeat(63)] {
            assert!(check_label_value(good).is_ok(), "{good}");
        }
        for bad in ["-a", "a-", "a b", "é", &"a".repeat(64), "it's", "$(id)", "a`b`", "x\ny"] {
            assert!(check_label_value(bad).is_err(), "{bad}");
        }
        assert!(check_label_value("$(reboot)").unwrap_err().contains("`$(`"));
    }

    #[test]
    fn qualified_names() {
        for good in ["app", "game.example.com/role", "node.kubernetes.io/exclude-from-external-load-balancers"] {
            assert!(check_qualified_name(good).is_ok(), "{good}");
        }
        for bad in ["/x", "Example.com/x", "a/b/c", "a/", "x y"] {
            assert!(check_qualified_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reserved_labels() {
        assert!(is_reserved_label("kubernetes.io/os"));
        assert!(is_reserved_label("topology.kubernetes.io/zone"));
        assert!(!is_reserved_label("node-role.kubernetes.io/game"));
        assert!(!is_reserved_label("game.example.com/role"));
    }

    #[test]
    fn regions() {
        for good in ["us-east-1", "eu-central-2", "us-gov-west-1", "ap-southeast-5"] {
            assert!(is_region(good), "{good}");
        }
        for bad in ["us-east", "useast1", "US-EAST-1", "us-east-0", "u-east-1", ""] {
            assert!(!is_region(bad), "{bad}");
        }
    }
}

/// A container image reference as containerd pulls it: lowercase
/// repository path components, an optional tag or digest, nothing a shell
/// or PowerShell would read as syntax.
fn is_image_reference(image: &str) -> bool {
    let (name, rest) = match image.split_once('@') {
        Some((n, digest)) => (n, Some(digest)),
        None => (image, None),
    };
    let (path, tag) = match name.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
        Some((p, t)) => (p, Some(t)),
        None => (name, None),
    };
    let component = |c: &str| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch));
    let host_ok = |c: &str| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ".-:".contains(ch));
    let mut parts = path.split('/');
    let first = parts.next().unwrap_or("");
    let first_ok = if path.contains('/') && (first.contains('.') || first.contains(':')) { host_ok(first) } else { component(first) };
    image.len() <= 255
        && first_ok
        && parts.all(component)
        && tag.is_none_or(|t| !t.is_empty() && t.len() <= 128 && t.chars().all(|ch| ch.is_ascii_alphanumeric() || "._-".contains(ch)))
        && rest.is_none_or(|d| d.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit())))
}

#[cfg(test)]
mod image_reference_tests {
    use super::is_image_reference;

    #[test]
    fn image_references() {
        for ok in [
            "mcr.microsoft.com/windows/servercore:ltsc2022",
            "registry.k8s.io/pause:3.10.2",
            "nginx",
            "localhost:5000/game/server:1.2",
            "docker.io/library/alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(is_image_reference(ok), "{ok}");
        }
        for bad in ["", "Nginx", "a b", "x;rm -rf /", "x$(id)", "img:", "img@sha256:12", "repo/'q'"] {
            assert!(!is_image_reference(bad), "{bad}");
        }
    }
}
