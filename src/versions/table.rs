//! The rows of the compatibility matrix. Updating a version is a change to
//! one row here plus `HYBRID_BLESS=1` for the golden files; CONTRIBUTING.md
//! says how to find the checksums. Every row names its source; `[?]` marks a
//! fact seen only in secondary sources (third-party pins, release notes
//! quoting upstream), which a maintainer should confirm when next updating.

use super::types::{CalicoLine, FlannelLine, KubeMinor, Semver};
use crate::model::WindowsVersion::{Ws2019, Ws2022, Ws2025};

/// The Kubernetes minors upstream supports now (the newest three), oldest
/// first. Sources: kubernetes/website releases page and the release
/// calendar (14 months of patch support per minor).
pub const KUBERNETES: &[KubeMinor] = &[
    KubeMinor {
        minor: 35,
        // [?] 1.35.8: rke2 v1.35.8-rke2r1 and Giant Swarm release notes; 1.35.0
        // and 1.35.1 are the patches with checksums in kubespray's table.
        latest_patch: 8,
        end_of_life: "2027-02-28",
        // containerd RELEASES.md "Kubernetes support": 1.35 → 2.2.0+, 2.1.5+,
        // 1.7.28+ ([?] read in a translation of release/2.3's table).
        containerd_min: Semver(2, 1, 5),
        containerd: "2.2.1",
        // kubespray roles/kubespray_defaults/vars/main/main.yml @ 0bfd434
        // (pod_infra_supported_versions): 1.35 → 3.10.1.
        pause: "3.10.1",
        // tigera/docs version-3.32 system requirements @ 69ef9b0: 1.34–1.36.
        calico: "3.32.4",
        flannel: "0.28.5",
        // kubernetes/website PR #53724 (merged 2025-12-19, the 1.35 docs)
        // added Windows Server 2025; 2019 was still listed until PR #55103.
        windows: &[Ws2019, Ws2022, Ws2025],
    },
    KubeMinor {
        minor: 36,
        // [?] 1.36.5: Giant Swarm v36.0.0 links CHANGELOG-1.36.md#v1.36.5;
        // kubernetes CHANGELOG-1.36.md @ 008b365 (stored) reaches v1.36.0.
        latest_patch: 5,
        end_of_life: "2027-06-28",
        // containerd RELEASES.md: 1.36 → 2.3.0+, 2.2.0+ only ([?] as above).
        containerd_min: Semver(2, 2, 0),
        containerd: "2.2.1",
        // [?] kubeadm 1.36 constants: pause 3.10.2 (kubeclipper PR #947);
        // 3.10.2 is also the first with Windows Server 2025 layers
        // (rancher/rancher#50915).
        pause: "3.10.2",
        calico: "3.32.4",
        flannel: "0.28.5",
        // kubernetes/website content/en/docs/concepts/windows/intro.md (main,
        // after PR #55103, 2026-03): Windows Server 2022 or 2025 only.
        windows: &[Ws2022, Ws2025],
    },
    KubeMinor {
        minor: 37,
        // [?] 1.37.1: install guides using dl.k8s.io/release/v1.37.1.
        latest_patch: 1,
        end_of_life: "2027-10-28",
        // No 1.37 row found in containerd RELEASES.md; 2.2 is the line listed
        // for 1.36 and still supported.
        containerd_min: Semver(2, 2, 0),
        containerd: "2.2.1",
        // [?] "kubeadm v1.37.1 pins … pause 3.10.2" (upgrade notes).
        pause: "3.10.2",
        // [?] Calico 3.33 is tested with 1.35–1.37 (kupre v0.5.0 notes from
        // Tigera's versioned docs); 3.32 is not tested with 1.37.
        calico: "3.33.1",
        flannel: "0.28.5",
        windows: &[Ws2022, Ws2025],
    },
];

/// The default: the newest minor that every component supports on Windows
/// by a primary source — Calico 3.32's docs test 1.34–1.36 and the
/// sigwindowstools kube-proxy image is built for every patch. 1.37 has
/// only secondary sources for Calico 3.33 and waits for a primary one.
pub const DEFAULT_MINOR: u32 = 36;

/// Minors past their end of life: `(minor, end of life)`.
pub const END_OF_LIFE: &[(u32, &str)] = &[(31, "2025-10-28"), (32, "2026-02-28"), (33, "2026-06-28"), (34, "2026-10-27")];

/// Calico release lines hybrid knows. Sources: projectcalico/calico release
/// pages (tags and dates), tigera/docs `calico_versioned_docs/version-3.3x/`
/// (system requirements; getting-started/kubernetes/windows-calico/
/// requirements.mdx @ 04a77b9e: Windows Server 1809 and 2022 only; Server
/// 2025 is projectcalico/calico#11691, open), `metadata.mk` WINDOWS_VERSIONS
/// `1809 ltsc2022`.
pub const CALICO: &[CalicoLine] = &[
    CalicoLine {
        line: (3, 31),
        latest: "3.31.7",
        // version-3.31 system requirements @ 1815866: 1.32–1.34; 1.35 was added
        // later (projectcalico discussion #11717).
        kube_minors: (32, 35),
        crds_manifest: "operator-crds.yaml",
        windows: &[Ws2019, Ws2022],
    },
    CalicoLine {
        line: (3, 32),
        latest: "3.32.4",
        kube_minors: (34, 36),
        // Renamed from operator-crds.yaml in March 2026 (tigera/docs PR #2558);
        // it holds the crd.projectcalico.org/v1 and operator.tigera.io CRDs.
        crds_manifest: "v1_crd_projectcalico_org.yaml",
        windows: &[Ws2019, Ws2022],
    },
    CalicoLine {
        line: (3, 33),
        latest: "3.33.1",
        // [?] see KUBERNETES[1.37].
        kube_minors: (35, 37),
        crds_manifest: "v1_crd_projectcalico_org.yaml",
        windows: &[Ws2019, Ws2022],
    },
];

/// flannel release lines. flannel-io/flannel `Makefile` @ 00014d0 (`tar.gz`
/// target: flannel-<tag>-windows-amd64.tar.gz holds flanneld.exe) and
/// `pkg/backend/vxlan/vxlan_windows.go` (HNS overlay on Server 2019+).
pub const FLANNEL: &[FlannelLine] = &[FlannelLine {
    line: (0, 28),
    // [?] v0.28.5 with cni-plugin v1.9.1-flannel1 (image pins seen together).
    latest: "0.28.5",
    cni_plugin: "v1.9.1-flannel1",
    windows: &[Ws2019, Ws2022, Ws2025],
}];

/// Node-level tools that do not follow the Kubernetes minor.
pub const RUNC: &str = "1.3.4";
pub const CNI_PLUGINS: &str = "1.8.0";
/// crictl speaks CRI v1, which every supported kubelet uses.
pub const CRICTL: &str = "1.35.0";
pub const NSSM: &str = "2.24";

/// SHA-256 of exact files, by URL. Sources: kubernetes-sigs/kubespray
/// `roles/kubespray_defaults/vars/main/checksums.yml` @ 005bdce7 for every
/// row unless noted. A download not listed here is verified against the
/// checksum its release publishes (see `Download::check`), which is fetched
/// over HTTPS at boot: add its row when you can.
pub const SHA256: &[(&str, &str)] = &[
    ("https://dl.k8s.io/v1.35.1/bin/linux/amd64/kubelet", "e7343310e03ff0d424df4397bdfa4468947d6d1f0f93dac586c1e8d6e4086d5d"),
    ("https://dl.k8s.io/v1.35.1/bin/linux/amd64/kubeadm", "8a7ff344eef1bfba88f9a74b3fdc9ea4448c94f1b3cefb8c0aeeaf1f96e05053"),
    ("https://dl.k8s.io/v1.35.1/bin/linux/amd64/kubectl", "36e2f4ac66259232341dd7866952d64a958846470f6a9a6a813b9117bd965207"),
    ("https://dl.k8s.io/v1.35.0/bin/linux/amd64/kubelet", "2f4ed7778681649b81244426c29c5d98df60ccabf83d561d69e61c1cbb943ddf"),
    ("https://dl.k8s.io/v1.35.0/bin/linux/amd64/kubeadm", "729e7fb34e4f1bfcf2bdaf2a14891ed64bd18c47aaab42f8cc5030875276cfed"),
    ("https://dl.k8s.io/v1.35.0/bin/linux/amd64/kubectl", "a2e984a18a0c063279d692533031c1eff93a262afcc0afdc517375432d060989"),
    (
        "https://github.com/containerd/containerd/releases/download/v2.2.1/containerd-2.2.1-linux-amd64.tar.gz",
        "f5d8e90ecb6c1c7e33ecddf8cc268a93b9e5b54e0e850320d765511d76624f41",
    ),
    (
        "https://github.com/containerd/containerd/releases/download/v2.2.0/containerd-2.2.0-linux-amd64.tar.gz",
        "b9626a94ab93b00bcbcbf13d98deef972c6fb064690e57940632df54ad39ee71",
    ),
    (
        "https://github.com/opencontainers/runc/releases/download/v1.3.4/runc.amd64",
        "5966ca40b6187b30e33bfc299c5f1fe72e8c1aa01cf3fefdadf391668f47f103",
    ),
    (
        "https://github.com/containernetworking/plugins/releases/download/v1.8.0/cni-plugins-linux-amd64-v1.8.0.tgz",
        "ab3bda535f9d90766cccc90d3dddb5482003dd744d7f22bcf98186bf8eea8be6",
    ),
    (
        "https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.35.0/crictl-v1.35.0-linux-amd64.tar.gz",
        "2e141e5b22cb189c40365a11807d69b76b9b3caced89fac2f4ec879408ce2177",
    ),
    // [?] nssm.cc's nssm-2.24.zip as pinned by two unrelated public build
    // scripts; the Kubernetes test-infra mirror serves the same release.
    (
        "https://k8stestinfrabinaries.blob.core.windows.net/nssm-mirror/nssm-2.24.zip",
        "727d1e42275c605e0f04aba98095c38a8e1e46def453cdffce42869428aa6743",
    ),
];

/// Approximate sizes in bytes, for the critical-path benchmark only (from
/// the release pages' asset lists; a wrong figure changes no behaviour).
pub const APPROX_BYTES: &[(&str, u64)] = &[
    ("kubelet", 60_000_000),
    ("kubeadm", 50_000_000),
    ("kubectl", 57_000_000),
    ("kube-proxy", 45_000_000),
    ("containerd", 40_000_000),
    ("runc", 11_000_000),
    ("cni-plugins", 55_000_000),
    ("crictl", 20_000_000),
    ("nssm", 350_000),
    ("flanneld", 35_000_000),
    ("flannel-cni", 3_000_000),
    ("calico-crds", 2_000_000),
    ("tigera-operator", 60_000),
    ("kube-flannel", 10_000),
];
