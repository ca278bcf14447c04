//! `hybrid versions FILE` as text: what each node kind of the file installs,
//! at which version, from where, and how the download is checked.

use std::fmt::Write as _;

use super::{NodeKind, Resolved, downloads, node_images};
use crate::model::{ClusterSpec, NodeOs};

pub fn to_text(spec: &ClusterSpec) -> String {
    let r = Resolved::of(spec);
    let mut out = String::new();
    let _ = writeln!(out, "Cluster {}: Kubernetes {} (supported until {})", spec.name, r.kubernetes, r.minor.end_of_life);
    let _ = writeln!(out, "  containerd {}, pause {}, {} {}", r.containerd, r.minor.pause, spec.cni.plugin.name(), spec.cni.version);
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
    for (label, kind, os) in kinds {
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
