//! `hybrid validate FILE`: load, print every diagnostic, then a one-line
//! summary. Other commands load their file through `load_spec` so they
//! report problems exactly the same way.

use std::path::Path;

use super::Ui;
use crate::config;
use crate::diag::Renderer;
use crate::error::{Error, Result};
use crate::model::{ClusterSpec, NodeOs};

/// Reads and checks a cluster file, printing its diagnostics to stderr.
pub fn load_spec(ui: &Ui, path: &Path) -> Result<ClusterSpec> {
    let source = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let file = path.display().to_string();
    let loaded = config::load(&source);
    let renderer = Renderer::new(ui.color);
    for d in &loaded.diagnostics {
        eprintln!("{}", renderer.render(&file, &source, d));
    }
    let (errors, warnings) = (loaded.errors().count(), loaded.warnings().count());
    loaded.spec.ok_or(Error::Invalid { file, errors, warnings })
}

pub fn validate(ui: &Ui, path: &Path) -> Result<ClusterSpec> {
    let spec = load_spec(ui, path)?;
    println!("{}: valid: {}", path.display(), summary(&spec));
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
