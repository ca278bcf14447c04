//! Pinned, versioned downloads the bootstrap scripts fetch at boot. Node
//! scripts download these rather than inlining large installers, which keeps
//! Windows user data far below EC2's 16 KB (WINDOWS-NOTES §2.1).

use crate::model::KubeVersion;

/// containerd for Windows nodes. HostProcess containers (Calico, flannel and
/// kube-proxy on Windows) need >= 1.6 (WINDOWS-NOTES §3.1).
pub const CONTAINERD_WINDOWS_VERSION: &str = "1.7.27";

/// nssm runs kubelet as a Windows service with its output in a log file,
/// the way sig-windows-tools' PrepareNode.ps1 does (WINDOWS-NOTES §3.2).
pub const NSSM_URL: &str = "https://k8stestinfrabinaries.blob.core.windows.net/nssm-mirror/nssm-2.24.zip";

pub fn containerd_windows_url() -> String {
    let v = CONTAINERD_WINDOWS_VERSION;
    format!("https://github.com/containerd/containerd/releases/download/v{v}/containerd-{v}-windows-amd64.tar.gz")
}

pub fn kubernetes_windows_binary_url(version: KubeVersion, binary: &str) -> String {
    format!("https://dl.k8s.io/v{version}/bin/windows/amd64/{binary}.exe")
}

/// The pkgs.k8s.io repository of one minor release (`v1.34`).
pub fn kubernetes_repo_minor(version: KubeVersion) -> String {
    format!("v{}.{}", version.major, version.minor)
}

pub fn tigera_operator_url(calico_version: &str) -> String {
    format!("https://raw.githubusercontent.com/projectcalico/calico/v{calico_version}/manifests/tigera-operator.yaml")
}

pub fn flannel_manifest_url(flannel_version: &str) -> String {
    format!("https://github.com/flannel-io/flannel/releases/download/v{flannel_version}/kube-flannel.yml")
}
