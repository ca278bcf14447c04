//! The shapes of the matrix's rows (see `table` for the rows themselves).

use std::fmt;

use crate::model::WindowsVersion;

/// `major.minor.patch` of a component other than Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Semver(pub u32, pub u32, pub u32);

impl Semver {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s
            .strip_prefix('v')
            .unwrap_or(s)
            .split('.')
            .map(|p| if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) { None } else { p.parse().ok() });
        let v = Semver(parts.next()??, parts.next()??, parts.next()??);
        parts.next().is_none().then_some(v)
    }
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One supported Kubernetes minor and what goes with it.
#[derive(Clone, Copy, Debug)]
pub struct KubeMinor {
    pub minor: u32,
    /// The patch used when the file names only `1.<minor>`.
    pub latest_patch: u32,
    pub end_of_life: &'static str,
    /// The oldest containerd this minor is supported with.
    pub containerd_min: Semver,
    /// The containerd hybrid installs by default (Linux and Windows).
    pub containerd: &'static str,
    /// The sandbox (pause) image tag kubeadm of this minor expects.
    pub pause: &'static str,
    pub calico: &'static str,
    pub flannel: &'static str,
    /// Windows Server versions Kubernetes documents as supported nodes.
    pub windows: &'static [WindowsVersion],
}

#[derive(Clone, Copy, Debug)]
pub struct CalicoLine {
    pub line: (u32, u32),
    pub latest: &'static str,
    /// Kubernetes minors Calico tests this line with (inclusive).
    pub kube_minors: (u32, u32),
    /// The CRD manifest installed before tigera-operator.yaml.
    pub crds_manifest: &'static str,
    pub windows: &'static [WindowsVersion],
}

#[derive(Clone, Copy, Debug)]
pub struct FlannelLine {
    pub line: (u32, u32),
    pub latest: &'static str,
    /// The flannel-io/cni-plugin release paired with it (Windows CNI binary).
    pub cni_plugin: &'static str,
    pub windows: &'static [WindowsVersion],
}
