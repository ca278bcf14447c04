//! What stands between a node's first boot and joining the cluster, read off
//! its rendered bootstrap script. Pure: script text in, counts out.
//!
//! Both scripts are written as stages (`stage NAME FUNCTION` in bash,
//! `Stage 'name' { … }` in PowerShell) that leave a marker when done, and
//! the stages before the `bake` cut-off are the ones `hybrid bake` runs on
//! the builder. So on a baked image those stages are skipped: their
//! downloads and reboots leave the path to join, and the images the bake
//! pre-pulled leave the path to Ready. `benches/critical_path.rs` prints
//! the figures; a test holds the baked Windows node to zero.

use serde::Serialize;

use crate::bootstrap::NodeBootstrap;
use crate::model::{ClusterSpec, NodeOs};
use crate::versions::{self, Download, NodeKind};

/// One stage on the way to join.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageCost {
    pub name: String,
    /// Files it downloads (each `fetch` / `Fetch`).
    pub downloads: usize,
    /// Their approximate size, from the version table.
    pub bytes: u64,
    /// Reboots it may ask for (the Containers feature on Windows).
    pub reboots: usize,
    /// Done at bake time, so skipped on a baked image.
    pub baked: bool,
}

/// A node kind's path to join and to Ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CriticalPath {
    pub stages: Vec<StageCost>,
    /// Container images the node pulls after joining (pause, the CNI's,
    /// kube-proxy's): a baked image has them already.
    pub image_pulls: usize,
}

/// Totals on the path, on a stock image or a baked one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub downloads: usize,
    pub bytes: u64,
    pub reboots: usize,
    pub image_pulls: usize,
}

impl CriticalPath {
    pub fn totals(&self, baked: bool) -> Totals {
        let on_path = || self.stages.iter().filter(move |s| !(baked && s.baked));
        Totals {
            downloads: on_path().map(|s| s.downloads).sum(),
            bytes: on_path().map(|s| s.bytes).sum(),
            reboots: on_path().map(|s| s.reboots).sum(),
            image_pulls: if baked { 0 } else { self.image_pulls },
        }
    }
}

/// The path of one rendered node of `spec`, from its bootstrap script, the
/// version table's downloads for its kind and the images it runs.
pub fn of_node(spec: &ClusterSpec, node: &NodeBootstrap) -> Option<CriticalPath> {
    let script = |name: &str| node.parts.iter().find(|(n, _)| n == name).map(|(_, s)| s.as_str());
    let images = versions::node_images(spec, node.os).len();
    Some(match node.os {
        NodeOs::Windows(w) => windows(script("bootstrap.ps1")?, &versions::downloads(spec, NodeKind::Windows(w)), images),
        NodeOs::Linux(_) => {
            let kind = if node.is_control_plane() { NodeKind::ControlPlane } else { NodeKind::LinuxWorker };
            linux(script("bootstrap.sh")?, &versions::downloads(spec, kind), images)
        }
    })
}

fn cost(name: &str, body: &[&str], fetch: &str, downloads: &[Download], baked: bool) -> StageCost {
    let fetches: Vec<&&str> = body.iter().filter(|l| l.trim_start().starts_with(fetch)).collect();
    let bytes = fetches.iter().filter_map(|l| downloads.iter().find(|d| l.contains(&d.url))).map(|d| d.approx_bytes).sum();
    StageCost {
        name: name.to_string(),
        downloads: fetches.len(),
        bytes,
        reboots: usize::from(body.iter().any(|l| l.contains("'reboot'"))),
        baked,
    }
}

/// A PowerShell bootstrap: `Stage 'name' {` blocks up to their closing `}`
/// at the start of a line; the cut-off is `if ($Mode -eq 'bake')`.
pub fn windows(script: &str, downloads: &[Download], images: usize) -> CriticalPath {
    let lines: Vec<&str> = script.lines().collect();
    let cutoff = lines.iter().position(|l| l.starts_with("if ($Mode -eq 'bake')")).unwrap_or(lines.len());
    let mut stages = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(rest) = lines[i].strip_prefix("Stage '") {
            let name = rest.split('\'').next().unwrap_or_default();
            let end = lines[i..].iter().position(|l| *l == "}").map_or(lines.len(), |n| i + n);
            // Stages after join (OpenSSH, optional) are not on the path.
            if name == "join" {
                stages.push(cost(name, &lines[i..end], "", &[], false));
                stages.last_mut().expect("just pushed").downloads = 0;
                break;
            }
            stages.push(cost(name, &lines[i..end], "Fetch ", downloads, i < cutoff));
            i = end;
        }
        i += 1;
    }
    CriticalPath { stages, image_pulls: images }
}

/// A bash bootstrap: `stage NAME FUNCTION` calls in `main`, each costing
/// what its function's body does; the cut-off is `if [ "$MODE" = bake ]`.
pub fn linux(script: &str, downloads: &[Download], images: usize) -> CriticalPath {
    let lines: Vec<&str> = script.lines().collect();
    let body_of = |function: &str| -> Vec<&str> {
        let start = lines.iter().position(|l| *l == format!("{function}() {{"));
        match start {
            Some(s) => {
                let end = lines[s..].iter().position(|l| *l == "}").map_or(lines.len(), |n| s + n);
                lines[s..end].to_vec()
            }
            None => Vec::new(),
        }
    };
    let main = lines.iter().position(|l| *l == "main() {").unwrap_or(lines.len());
    let mut baked = true;
    let mut stages = Vec::new();
    for line in &lines[main..] {
        let t = line.trim();
        if t.starts_with("if [ \"$MODE\" = bake ]") {
            baked = false;
        }
        if let Some(rest) = t.strip_prefix("stage ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(function)) = (words.next(), words.next()) else { continue };
            stages.push(cost(name, &body_of(function), "fetch ", downloads, baked));
        }
        if *line == "}" {
            break;
        }
    }
    // The images stage runs only at bake time.
    stages.retain(|s| s.name != "images");
    CriticalPath { stages, image_pulls: images }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_before_the_cutoff_are_baked() {
        let script = "\
main() {
  stage containerd install_containerd
  if [ \"$MODE\" = bake ]; then
    stage images pull_images
  fi
  stage join kubeadm_join
}
install_containerd() {
  fetch 'https://x/containerd.tgz' a b
  fetch 'https://x/runc' a b
}
kubeadm_join() {
  kubeadm join
}
";
        let p = linux(script, &[], 3);
        assert_eq!(
            p.stages.iter().map(|s| (s.name.as_str(), s.downloads, s.baked)).collect::<Vec<_>>(),
            [("containerd", 2, true), ("join", 0, false)]
        );
        assert_eq!(p.totals(false).downloads, 2);
        assert_eq!(p.totals(true), Totals { downloads: 0, bytes: 0, reboots: 0, image_pulls: 0 });
    }
}
