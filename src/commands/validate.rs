//! `hybrid validate FILE`: load, print every diagnostic, then a one-line
//! summary. Other commands load their file through `shared::files::load_spec`
//! so they report problems exactly the same way.

use std::path::PathBuf;

use super::shared::files::load_spec;
use super::shared::terminal::Ui;
use crate::error::Result;
use crate::model::{ClusterSpec, NodeOs};

#[derive(Debug, clap::Args)]
#[command(
    about = "Check a cluster file and report every problem at once",
    long_about = "\
Check a cluster file and report every problem at once, each with file:line:column, the key, \
what is wrong and how to fix it. Warnings (questionable but legal choices) do not fail the check.

Besides syntax, unknown keys and types, it checks what breaks Windows nodes at run time: \
IP-in-IP or CrossSubnet with Calico, VNI below 4096 or a VXLAN port other than 4789, \
strictAffinity off, flannel DirectRouting, Windows versions the CNI does not support, Windows \
control planes, Graviton instance types for Windows, overlapping CIDRs, pod networks too small \
for the node count, labels and taints Kubernetes or kubelet would refuse, and values that could \
break out of a generated script.

Supported Kubernetes minors, and what works with them: `hybrid versions --help` and src/versions/.",
    after_help = "Exits 0 when the file is valid (warnings allowed), 1 when it has errors."
)]
pub struct Args {
    /// The desired-state file, e.g. clusters/dev.toml.
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
}

pub fn run(ui: &Ui, args: &Args) -> Result<ClusterSpec> {
    let spec = load_spec(ui, &args.file, &args.set)?;
    println!("{}: valid: {}", args.file.display(), summary(&spec));
    Ok(spec)
}

fn summary(spec: &ClusterSpec) -> String {
    let (mut linux, mut windows) = (0, 0);
    for p in &spec.pools {
        match p.os {
            NodeOs::Linux(_) => linux += p.count,
            NodeOs::Windows(_) => windows += p.count,
        }
    }
    format!(
        "cluster {} in {}, Kubernetes {}, {} {}: 1 control plane, {} pool(s) with {linux} Linux and {windows} Windows node(s){}",
        spec.name,
        spec.region,
        spec.kubernetes_version,
        spec.cni.plugin.name(),
        spec.cni.encapsulation.name(),
        spec.pools.len(),
        spec.ttl.map_or(String::new(), |t| format!(", expires {t} after creation")),
    )
}
