//! The value pass: section values to a typed `ClusterSpec`. Each string is
//! parsed into its domain type here (versions, CIDRs, durations, taints), and
//! a value that does not parse is reported with its key and span. Missing or
//! broken values become placeholders; `Diagnostics::has_error_at` keeps the
//! rules from complaining about them a second time.

use std::collections::BTreeMap;

use super::read::{SectionValues, Spans};
use crate::config::problems::Diagnostics;
use crate::model::net::Ipv4Cidr;
use crate::model::*;
use crate::versions;

pub struct Ctx<'a> {
    pub diags: &'a mut Diagnostics,
    pub spans: &'a mut Spans,
}

impl Ctx<'_> {
    /// A key ending in `#key` points at a table key rather than its value
    /// (as in `rules.rs`); users see it without.
    fn err(&mut self, key: &str, message: String, help: Option<String>) {
        let span = self.spans.get(key);
        let d = self.diags.error(key.trim_end_matches("#key"), span, message);
        if let Some(h) = help {
            d.help(h);
        }
    }
}

pub fn build(sections: &BTreeMap<&'static str, Vec<SectionValues<'_>>>, cx: &mut Ctx<'_>) -> ClusterSpec {
    let one = |name: &str| sections.get(name).and_then(|v| v.first());

    let default = versions::default_minor();
    let mut kubernetes_version = KubeVersion { major: 1, minor: default.minor, patch: default.latest_patch };
    let (mut name, mut region, mut containerd_version) = (String::new(), String::new(), None);
    let (mut ttl, mut ssh_key_name, mut tags) = (None, None, BTreeMap::new());
    if let Some(c) = one("cluster") {
        name = c.str("name", cx.diags, cx.spans).unwrap_or_default();
        region = c.str("region", cx.diags, cx.spans).unwrap_or_default();
        if let Some(v) = c.str("kubernetes_version", cx.diags, cx.spans) {
            match parse_kube_version(&v) {
                Some(v) => kubernetes_version = v,
                None => cx.err(
                    &c.key_path("kubernetes_version"),
                    format!("`{v}` is not a Kubernetes version"),
                    Some(format!("write MAJOR.MINOR (the newest patch hybrid knows) or MAJOR.MINOR.PATCH, e.g. \"1.{}\"", default.minor)),
                ),
            }
        }
        containerd_version = c.str("containerd_version", cx.diags, cx.spans);
        if let Some(t) = c.str("ttl", cx.diags, cx.spans) {
            match parse_ttl(&t) {
                Ok(t) => ttl = Some(t),
                Err(why) => cx.err(&c.key_path("ttl"), why, Some("e.g. \"8h\", \"2d\" or \"1h30m\" (whole minutes)".into())),
            }
        }
        ssh_key_name = c.str("ssh_key_name", cx.diags, cx.spans);
        tags = c.str_map("tags", cx.diags, cx.spans).unwrap_or_default();
    }

    let control_plane = one("control_plane").map(|c| build_control_plane(c, cx)).unwrap_or(ControlPlane {
        instance_type: String::new(),
        os: LinuxDistro::Ubuntu2404,
        ami: None,
        disk_gb: 50,
        private_ip: None,
    });
    let network = build_network(one("network"), cx);
    // Defaults that depend on the Kubernetes minor come from the matrix;
    // an unknown minor is reported by the rules and borrows the default's.
    let minor = versions::kube_minor(kubernetes_version.minor).unwrap_or(default);
    let containerd_version = containerd_version.unwrap_or_else(|| minor.containerd.to_string());
    let cni = build_cni(one("cni"), minor, cx);
    let pools = sections.get("pool").map_or(&[][..], |v| v.as_slice()).iter().map(|p| build_pool(p, control_plane.os, &cni, cx)).collect();

    let access = one("access").map(|a| build_access(a, cx)).unwrap_or_default();

    ClusterSpec {
        name,
        region,
        kubernetes_version,
        containerd_version,
        ttl,
        ssh_key_name,
        tags,
        network,
        cni,
        control_plane,
        pools,
        access,
    }
}

/// `[access]`: each ARN parsed where it stands (`access.admins[2]`,
/// `access.roles."arn:…"`), so a bad one is reported at its line.
fn build_access(a: &SectionValues<'_>, cx: &mut Ctx<'_>) -> crate::model::access::Access {
    use crate::model::access::{Access, ClusterRole, Grant, Principal};
    let mut grants = Vec::new();
    let mut add = |arn: &str, key: String, role: ClusterRole, cx: &mut Ctx<'_>| match Principal::parse(arn) {
        Ok(principal) => grants.push(Grant { principal, role }),
        Err(e) => cx.err(&key, e.message, Some(e.help)),
    };
    for (list, role) in [("admins", ClusterRole::Admin), ("editors", ClusterRole::Editor), ("viewers", ClusterRole::Viewer)] {
        for (i, arn) in a.str_list(list, cx.diags, cx.spans).unwrap_or_default().iter().enumerate() {
            add(arn, format!("{}[{i}]", a.key_path(list)), role.clone(), cx);
        }
    }
    for (arn, name) in a.str_map("roles", cx.diags, cx.spans).unwrap_or_default() {
        let key = format!("{}.{:?}", a.key_path("roles"), arn);
        add(&arn, format!("{key}#key"), ClusterRole::Named(name), cx);
    }
    Access { grants }
}

fn build_control_plane(c: &SectionValues<'_>, cx: &mut Ctx<'_>) -> ControlPlane {
    let os = match c.str("os", cx.diags, cx.spans).and_then(|s| NodeOs::parse(&s, LinuxDistro::Ubuntu2404)) {
        Some(NodeOs::Linux(d)) => d,
        Some(NodeOs::Windows(w)) => {
            cx.err(
                &c.key_path("os"),
                format!("the control plane cannot run {}: kubeadm control planes are Linux only", w.name()),
                Some("use a Linux os such as \"ubuntu-24.04\" here and put Windows nodes in a [[pool]]".into()),
            );
            LinuxDistro::Ubuntu2404
        }
        None => LinuxDistro::Ubuntu2404,
    };
    ControlPlane {
        instance_type: c.str("instance_type", cx.diags, cx.spans).unwrap_or_default(),
        os,
        ami: c.str("ami", cx.diags, cx.spans).map(|s| AmiRef::parse(&s)),
        disk_gb: c.int("disk_gb", cx.diags, cx.spans).map_or(50, |n| n as u32),
        private_ip: c.str("private_ip", cx.diags, cx.spans).and_then(|s| match s.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                cx.err(
                    &c.key_path("private_ip"),
                    format!("`{}` is not an IPv4 address", s.escape_debug()),
                    Some("write an address inside the subnet, e.g. \"10.0.0.10\"".into()),
                );
                None
            }
        }),
    }
}

fn cidr(s: Option<&SectionValues<'_>>, key: &str, default: &str, cx: &mut Ctx<'_>) -> Ipv4Cidr {
    let fallback = Ipv4Cidr::parse(default).expect("built-in default CIDR parses");
    let Some(s) = s else { return fallback };
    let Some(text) = s.str(key, cx.diags, cx.spans) else { return fallback };
    parse_cidr(&text, &s.key_path(key), cx).unwrap_or(fallback)
}

fn parse_cidr(text: &str, key: &str, cx: &mut Ctx<'_>) -> Option<Ipv4Cidr> {
    match Ipv4Cidr::parse(text) {
        Ok(c) => Some(c),
        Err(e) => {
            let help = match &e {
                crate::model::net::CidrError::HostBitsSet { network } => format!("write \"{network}\""),
                crate::model::net::CidrError::Malformed => "write an IPv4 network and prefix length, e.g. \"10.0.0.0/16\"".into(),
            };
            cx.err(key, format!("`{text}` {e}"), Some(help));
            None
        }
    }
}

fn build_network(n: Option<&SectionValues<'_>>, cx: &mut Ctx<'_>) -> Network {
    let get = |key: &str, cx: &mut Ctx<'_>| n.and_then(|n| n.str(key, cx.diags, cx.spans));
    let (vpc_id, subnet_id) = (get("vpc_id", cx), get("subnet_id", cx));
    let vpc = match (vpc_id, subnet_id) {
        (Some(vpc_id), Some(subnet_id)) => Vpc::Existing { vpc_id, subnet_id },
        (vpc_id, subnet_id) => {
            if vpc_id.is_some() || subnet_id.is_some() {
                let (set, unset) = if vpc_id.is_some() { ("vpc_id", "subnet_id") } else { ("subnet_id", "vpc_id") };
                cx.err(
                    &format!("network.{set}"),
                    format!("`{set}` needs `{unset}` as well"),
                    Some("set both to use an existing network, or neither to let hybrid create one".to_string()),
                );
            }
            let cidr = cidr(n, "vpc_cidr", "10.0.0.0/16", cx);
            let subnet_cidr = match n.and_then(|n| n.str("subnet_cidr", cx.diags, cx.spans)) {
                Some(text) => parse_cidr(&text, "network.subnet_cidr", cx).unwrap_or(cidr),
                None => cidr.first_subnet(24.max(cidr.prefix())).unwrap_or(cidr),
            };
            Vpc::Create { cidr, subnet_cidr }
        }
    };
    let cidr_list = |key: &str, cx: &mut Ctx<'_>| {
        let mut out = Vec::new();
        if let Some(list) = n.and_then(|n| n.str_list(key, cx.diags, cx.spans)) {
            for (i, text) in list.iter().enumerate() {
                out.extend(parse_cidr(text, &format!("network.{key}[{i}]"), cx));
            }
        }
        out
    };
    let admin_cidrs = cidr_list("admin_cidrs", cx);
    let player_cidrs = cidr_list("player_cidrs", cx);
    Network {
        vpc,
        pod_cidr: cidr(n, "pod_cidr", "192.168.0.0/16", cx),
        service_cidr: cidr(n, "service_cidr", "10.96.0.0/12", cx),
        admin_cidrs,
        player_cidrs,
    }
}

fn build_cni(c: Option<&SectionValues<'_>>, minor: &versions::KubeMinor, cx: &mut Ctx<'_>) -> Cni {
    let plugin = c.and_then(|c| c.str("plugin", cx.diags, cx.spans)).and_then(|s| CniPlugin::parse(&s)).unwrap_or(CniPlugin::Calico);
    let encapsulation =
        c.and_then(|c| c.str("encapsulation", cx.diags, cx.spans)).and_then(|s| Encapsulation::parse(&s)).unwrap_or(Encapsulation::Vxlan);
    let int = |k: &str, d: i64, cx: &mut Ctx<'_>| c.and_then(|c| c.int(k, cx.diags, cx.spans)).unwrap_or(d);
    let flag = |k: &str, d: bool, cx: &mut Ctx<'_>| c.and_then(|c| c.bool(k, cx.diags, cx.spans)).unwrap_or(d);
    Cni {
        plugin,
        encapsulation,
        bgp: flag("bgp", false, cx),
        vni: int("vni", 4096, cx) as u32,
        port: int("port", 4789, cx) as u16,
        strict_affinity: flag("strict_affinity", true, cx),
        direct_routing: flag("direct_routing", false, cx),
        version: c
            .and_then(|c| c.str("version", cx.diags, cx.spans))
            .unwrap_or_else(|| versions::default_cni_version(plugin, minor).to_string()),
        block_size: int("block_size", 26, cx) as u8,
    }
}

fn build_pool(p: &SectionValues<'_>, linux_default: LinuxDistro, cni: &Cni, cx: &mut Ctx<'_>) -> Pool {
    // Read first, so that its problems and its span are known.
    let listed = p.str_list("instance_types", cx.diags, cx.spans);
    match (p.is_set("instance_type"), p.is_set("instance_types")) {
        (true, true) => cx.err(
            &p.key_path("instance_types"),
            "a pool takes `instance_type` or `instance_types`, not both".into(),
            Some("keep `instance_types` to have fallbacks, with the preferred type first".into()),
        ),
        (false, false) => cx.err(
            &p.key_path("instance_type"),
            "missing required key `instance_type` (or `instance_types`)".into(),
            Some("e.g. instance_type = \"m6i.xlarge\", or instance_types = [\"m6i.xlarge\", \"m5.xlarge\"] to fall back".into()),
        ),
        _ => {}
    }
    if listed.as_ref().is_some_and(Vec::is_empty) {
        cx.err(&p.key_path("instance_types"), "`instance_types` is empty".into(), Some("list at least one type".into()));
    }
    let os = p.str("os", cx.diags, cx.spans).and_then(|s| NodeOs::parse(&s, linux_default)).unwrap_or(NodeOs::Linux(linux_default));
    let taints = match p.str_list("taints", cx.diags, cx.spans) {
        Some(list) => {
            list.iter().enumerate().filter_map(|(i, t)| parse_taint_at(t, &format!("{}[{i}]", p.key_path("taints")), cx)).collect()
        }
        None if os.is_windows() && !p.is_set("taints") => vec![default_windows_taint()],
        None => Vec::new(),
    };
    Pool {
        name: p.str("name", cx.diags, cx.spans).unwrap_or_default(),
        os,
        instance_type: p
            .str("instance_type", cx.diags, cx.spans)
            .or_else(|| listed.as_ref().and_then(|l| l.first().cloned()))
            .unwrap_or_default(),
        fallback_types: if p.is_set("instance_type") { Vec::new() } else { listed.into_iter().flatten().skip(1).collect() },
        count: p.int("count", cx.diags, cx.spans).map_or(1, |n| n as u32),
        ami: p.str("ami", cx.diags, cx.spans).map(|s| AmiRef::parse(&s)),
        disk_gb: p.int("disk_gb", cx.diags, cx.spans).map_or(if os.is_windows() { 100 } else { 50 }, |n| n as u32),
        spot: p.bool("spot", cx.diags, cx.spans).unwrap_or(false),
        labels: p.str_map("labels", cx.diags, cx.spans).unwrap_or_default(),
        taints,
        replace_batch: p.int("replace_batch", cx.diags, cx.spans).map_or(1, |n| n as u32),
        image: p.str("image", cx.diags, cx.spans).and_then(|s| ImageChoice::parse(&s)).unwrap_or_default(),
        prepull: p.str_list("prepull", cx.diags, cx.spans).unwrap_or_default(),
        player_ports: p
            .str_list("player_ports", cx.diags, cx.spans)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter_map(|(i, text)| match PortRange::parse(text) {
                Ok(r) => Some(r),
                Err(why) => {
                    cx.err(
                        &format!("{}[{i}]", p.key_path("player_ports")),
                        why,
                        Some("write PORT/tcp, PORT/udp or FROM-TO/udp, e.g. \"7000-8000/udp\"".into()),
                    );
                    None
                }
            })
            .collect(),
        // kubelet's default, capped on Windows by what the CNI can address
        // (60 with Calico's /26 blocks).
        max_pods: p
            .int("max_pods", cx.diags, cx.spans)
            .map_or(if os.is_windows() { KUBELET_MAX_PODS.min(cni.windows_pod_capacity()) } else { KUBELET_MAX_PODS }, |n| n as u32),
    }
}

fn parse_taint_at(text: &str, key: &str, cx: &mut Ctx<'_>) -> Option<Taint> {
    match parse_taint(text) {
        Ok(t) => Some(t),
        Err(why) => {
            cx.err(
                key,
                format!("taint `{}` {why}", text.escape_debug()),
                Some("write key=value:Effect or key:Effect, with Effect one of NoSchedule, PreferNoSchedule, NoExecute".into()),
            );
            None
        }
    }
}

/// `key=value:Effect` or `key:Effect`. The key and value are checked against
/// Kubernetes' rules later, with the labels' rules.
pub fn parse_taint(text: &str) -> Result<Taint, String> {
    let (kv, effect) = text.rsplit_once(':').ok_or("has no `:Effect`")?;
    let effect = TaintEffect::parse(effect)
        .ok_or_else(|| format!("has effect `{effect}`, which is not one of NoSchedule, PreferNoSchedule, NoExecute"))?;
    let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
    if key.is_empty() {
        return Err("has an empty key".into());
    }
    Ok(Taint { key: key.to_string(), value: value.to_string(), effect })
}

/// `1.36.5`, `v1.36.5`, or `1.36` (the newest patch of that minor the
/// matrix knows; `.0` for a minor it does not, which the rules reject).
pub fn parse_kube_version(s: &str) -> Option<KubeVersion> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let mut parts = s
        .split('.')
        .map(|p| (!p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>().ok()).flatten());
    let (major, minor) = (parts.next()??, parts.next()??);
    let patch = match parts.next() {
        None => versions::kube_minor(minor).filter(|_| major == 1).map_or(0, |k| k.latest_patch),
        Some(p) => p?,
    };
    parts.next().is_none().then_some(KubeVersion { major, minor, patch })
}

/// kubelet's own `maxPods` default.
pub const KUBELET_MAX_PODS: u32 = 110;

/// `90m`, `8h`, `2d`, `1h30m`: the one duration syntax
/// (`model::duration`), in whole minutes.
pub fn parse_ttl(s: &str) -> Result<Ttl, String> {
    let d = crate::model::duration::parse(s, None)?;
    if d.as_secs() % 60 != 0 {
        return Err(format!("`{s}` is not a whole number of minutes"));
    }
    Ok(Ttl { minutes: d.as_secs() / 60 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_versions() {
        assert_eq!(parse_kube_version("1.34.1"), Some(KubeVersion { major: 1, minor: 34, patch: 1 }));
        assert_eq!(parse_kube_version("v1.33.0"), Some(KubeVersion { major: 1, minor: 33, patch: 0 }));
        let latest = versions::kube_minor(36).unwrap().latest_patch;
        assert_eq!(parse_kube_version("1.36"), Some(KubeVersion { major: 1, minor: 36, patch: latest }));
        for bad in ["1.34.1.2", "1..1", "one.two.three", "1.34.1-rc.0", "", "v", "+1.2.3", "1.34.99999"] {
            assert_eq!(parse_kube_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("8h"), Ok(Ttl { minutes: 480 }));
        assert_eq!(parse_ttl("1h30m"), Ok(Ttl { minutes: 90 }));
        assert_eq!(parse_ttl("2d"), Ok(Ttl { minutes: 2880 }));
        assert_eq!(parse_ttl("600s"), Ok(Ttl { minutes: 10 }));
        for bad in ["", "8", "h", "8x", "30m1h", "1h1h", "-1h", "8 h", "12345678h", "90s"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
        assert_eq!(Ttl { minutes: 1530 }.to_string(), "1d1h30m");
    }

    #[test]
    fn taints() {
        let t = parse_taint("os=windows:NoSchedule").unwrap();
        assert_eq!((t.key.as_str(), t.value.as_str(), t.effect), ("os", "windows", TaintEffect::NoSchedule));
        assert_eq!(parse_taint("dedicated:NoExecute").unwrap().value, "");
        assert!(parse_taint("os=windows").is_err());
        assert!(parse_taint("os=windows:Never").is_err());
        assert!(parse_taint("=x:NoSchedule").is_err());
    }
}
