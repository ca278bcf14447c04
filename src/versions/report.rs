//! `hybrid versions FILE` as text or JSON: what each node kind of the file
//! installs, at which version, from where, and how the download is checked.

use std::fmt::Write as _;

use super::{NodeKind, Resolved, downloads, node_images};
use crate::model::{ClusterSpec, NodeOs};

pub fn to_text(spec: &ClusterSpec) -> String {
    let r = Resolved::of(spec);
    let mut out = String::new();
    let _ = writeln!(out, "Cluster {}: Kubernetes {} (supported until {})", spec.name, r.kubernetes, r.minor.end_of_life);
    let _ = writeln!(out, "  containerd {}, pause {}, {} {}", r.containerd, r.minor.pause, spec.cni.plugin.name(), spec.cni.version);
    for (label, kind, os) in node_kinds(spec) {
        let _ = writeln!(out, "\n{label}:");
        for d in downloads(spec, kind) {
            let _ = writeln!(out, "  {:<16} {:<18} {}", d.name, d.version, d.url);
            let _ = writeln!(out, "  {:<16} {:<18} checked by {}", "", "", d.check.describe());
        }
        for image in node_images(spec, os) {
            let _ = writeln!(out, "  {:<16} {:<18} {image}", "image", "");
        }
    }
    out
}

/// The same as JSON, a stable shape: `{cluster, kubernetes, supported_until,
/// containerd, pause, cni: {plugin, version}, nodes: [{kind, label, os,
/// downloads: [{name, version, url, check, checked_by}], images: [...]}]}`
/// (`kind`: control-plane, linux-worker or windows-20xx; `check`: the
/// encoded form the bootstrap scripts read, e.g. `sha256:<hex>`).
pub fn to_json(spec: &ClusterSpec) -> serde_json::Value {
    let r = Resolved::of(spec);
    let nodes: Vec<serde_json::Value> = node_kinds(spec)
        .into_iter()
        .map(|(label, kind, os)| {
            let kind_name = match kind {
                NodeKind::ControlPlane => "control-plane",
                NodeKind::LinuxWorker => "linux-worker",
                NodeKind::Windows(w) => w.name(),
            };
            let downloads: Vec<serde_json::Value> = downloads(spec, kind)
                .into_iter()
                .map(|d| {
                    serde_json::json!({ "name": d.name, "version": d.version, "url": d.url, "check": d.check.encode(), "checked_by": d.check.describe() })
                })
                .collect();
            serde_json::json!({ "kind": kind_name, "label": label, "os": os.name(), "downloads": downloads, "images": node_images(spec, os) })
        })
        .collect();
    serde_json::json!({
        "cluster": spec.name,
        "kubernetes": r.kubernetes.to_string(),
        "supported_until": r.minor.end_of_life,
        "containerd": r.containerd,
        "pause": r.minor.pause,
        "cni": { "plugin": spec.cni.plugin.name(), "version": spec.cni.version },
        "nodes": nodes,
    })
}

/// Each kind of node the file has, once: (label, kind, OS), the control
/// plane first, then in the order its pools first name them.
fn node_kinds(spec: &ClusterSpec) -> Vec<(String, NodeKind, NodeOs)> {
    let mut kinds = vec![("control plane".to_string(), NodeKind::ControlPlane, NodeOs::Linux(spec.control_plane.os))];
    let mut seen = Vec::new();
    for p in &spec.pools {
        let kind = match p.os {
            NodeOs::Linux(_) => NodeKind::LinuxWorker,
            NodeOs::Windows(w) => NodeKind::Windows(w),
        };
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        let label = match p.os {
            NodeOs::Linux(d) => format!("Linux workers ({})", d.name()),
            NodeOs::Windows(w) => format!("Windows workers ({}, build {})", w.name(), w.build()),
        };
        kinds.push((label, kind, p.os));
    }
    kinds
}
