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
        // kubernetes.io/releases/1.35 (stored copy): 1.35.9 released
        // 2026-09-15, the newest seen; a newer monthly patch may exist
        // (`hybrid versions FILE --check` finds out before a node boots).
        latest_patch: 9,
        end_of_life: "2027-02-28",
        // containerd RELEASES.md "Kubernetes support" @ main 301026e5
        // (identical on release/2.3 7ee98955): 1.35 → 2.2.0+, 2.1.5+, 1.7.28+.
        containerd_min: Semver(2, 1, 5),
        containerd: CONTAINERD,
        // kubespray roles/kubespray_defaults/vars/main/main.yml @ 46dbdd39
        // (pod_infra_supported_versions): 1.35 → 3.10.1.
        pause: "3.10.1",
        // tigera/docs version-3.32 system requirements @ f2a27624: 1.34–1.36.
        calico: "3.32.4",
        flannel: "0.28.9",
        // kubernetes/website PR #53724 (merged 2025-12-19, the 1.35 docs)
        // added Windows Server 2025; 2019 was still listed until PR #55103.
        windows: &[Ws2019, Ws2022, Ws2025],
    },
    KubeMinor {
        minor: 36,
        // [?] 1.36.5: kubernetes.io/releases/1.36 (stored copy) shows 1.36.4
        // (2026-08-11) with 1.36.5 due 2026-09-15, the day 1.35.9 and 1.37.1
        // shipped.
        latest_patch: 5,
        end_of_life: "2027-06-28",
        // containerd RELEASES.md @ 301026e5: 1.36 → 2.3.0+, 2.2.0+.
        containerd_min: Semver(2, 2, 0),
        containerd: CONTAINERD,
        // [?] kubespray pod_infra_supported_versions @ 46dbdd39 (commit
        // 28bdeb85 "Support Kubernetes v1.36.0"): 3.10.2, also the first
        // pause with Windows Server 2025 layers (kubernetes/kubernetes#136960).
        pause: "3.10.2",
        calico: "3.32.4",
        flannel: "0.28.9",
        // kubernetes/website content/en/docs/concepts/windows/intro.md (main,
        // after PR #55103, 2026-03): Windows Server 2022 or 2025 only.
        windows: &[Ws2022, Ws2025],
    },
    KubeMinor {
        minor: 37,
        // kubernetes.io/releases/1.37 (stored copy): 1.37.0 on 2026-08-26,
        // 1.37.1 on 2026-09-15.
        latest_patch: 1,
        end_of_life: "2027-10-28",
        // containerd RELEASES.md @ 301026e5 has no 1.37 row yet; 2.3 (LTS to
        // 2028-04-30) is the oldest line still supported (2.2 ended
        // 2026-11-06).
        containerd_min: Semver(2, 3, 0),
        containerd: CONTAINERD,
        // [?] rke2 v1.37.0-rke2r1 and kubeclipper PR #947: pause 3.10.2.
        pause: "3.10.2",
        // tigera/docs calico_versioned_docs/version-3.33 system requirements:
        // Calico 3.33 is tested with 1.35–1.37; 3.32 is not tested with 1.37.
        calico: "3.33.1",
        flannel: "0.28.9",
        windows: &[Ws2022, Ws2025],
    },
];

/// Minors announced but not released: `(minor, why not yet)`.
/// kubernetes/sig-release releases/release-1.38/README.md: v1.38.0 is planned
/// for 2026-12-16; no containerd, Calico or kubeadm pause row exists for it yet.
pub const NOT_YET: &[(u32, &str)] = &[(38, "Kubernetes 1.38 is not released yet (planned for 2026-12-16)")];

/// The default: the newest minor that every component supports on Windows
/// by a primary source — Calico 3.32's docs test 1.34–1.36. 1.37 would do
/// too (Calico 3.33's docs list it) but has no Windows Server 2019; moving
/// the default is a release decision, not a pin update.
pub const DEFAULT_MINOR: u32 = 36;

/// containerd on every node, Linux and Windows. containerd RELEASES.md @
/// 301026e5: 2.2 reached end of life on 2026-11-06 (without 2.2.4's fix of
/// CVE-2026-46680 and 2.2.5's of CVE-2026-50195 a 2.2.1 pin was also
/// unpatched); 2.3 is the LTS line to 2028-04-30. [?] 2.3.6 (2026-09-24,
/// fixes CVE-2026-53493; 2.3.5 fixed CVE-2026-53495) from copies of its
/// release page; 2.3.4 is the newest read in the repository itself. It is
/// verified at boot against the release's own .sha256sum.
pub const CONTAINERD: &str = "2.3.6";

/// containerd lines past their end of life (RELEASES.md @ 301026e5): a
/// `containerd_version` on one of them is a warning.
pub const CONTAINERD_END_OF_LIFE: &[((u32, u32), &str)] =
    &[((1, 7), "2026-09-01"), ((2, 0), "2025-11-07"), ((2, 1), "2026-07-03"), ((2, 2), "2026-11-06")];

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
        // GitHub release v3.32.4 (2026-11-11).
        latest: "3.32.4",
        kube_minors: (34, 36),
        // Renamed from operator-crds.yaml in March 2026 (tigera/docs PR #2558);
        // it holds the crd.projectcalico.org/v1 and operator.tigera.io CRDs.
        crds_manifest: "v1_crd_projectcalico_org.yaml",
        windows: &[Ws2019, Ws2022],
    },
    CalicoLine {
        line: (3, 33),
        // GitHub release v3.33.1 (2026-11-16, marked Latest).
        latest: "3.33.1",
        // tigera/docs version-3.33 system requirements.
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
    // flannel-io/flannel tag v0.28.9 (5cd0d526, 2026-08-07; x/net and x/text
    // CVE fixes); its Documentation/kube-flannel.yml pairs it with
    // flannel-cni-plugin v1.9.1-flannel3.
    latest: "0.28.9",
    cni_plugin: "v1.9.1-flannel3",
    windows: &[Ws2019, Ws2022, Ws2025],
}];

/// Node-level tools that do not follow the Kubernetes minor.
/// runc RELEASES.md @ main 76d9cf5d: since 1.5.0 (2026-06-19) the 1.3 line
/// gets only high-severity fixes; 1.4.3 (2026-06-13) has CVE-2026-41579's
/// and the stuck-exec fix and is what containerd 2.3 tests with
/// (containerd script/setup/runc-version @ v2.3.4).
pub const RUNC: &str = "1.4.3";
/// containernetworking/plugins tag v1.9.1 (adc3e6b5, 2026-02-19).
pub const CNI_PLUGINS: &str = "1.9.1";
/// crictl speaks CRI v1, which every supported kubelet uses; cri-tools tag
/// v1.36.0 (88d8ad9d, 2026-04-24).
pub const CRICTL: &str = "1.36.0";
pub const NSSM: &str = "2.24";
/// The control plane's token webhook (docs/access.md).
/// kubernetes-sigs/aws-iam-authenticator tag v0.7.18 (c0e2ecd6,
/// 2026-06-16), the newest at the snapshot read (81b1daba, 2026-07-14); its
/// release publishes one checksums file for all assets, so the asset's
/// GitHub digest checks it.
pub const AWS_IAM_AUTHENTICATOR: &str = "0.7.18";
/// kubelet's image credential provider for private ECR, on workers.
/// kubernetes/cloud-provider-aws v1.37.0: its binaries are published only
/// through the Kubernetes artifact promoter (not on GitHub releases), and
/// v1.37.0 is the newest whose promotion manifest names the files under
/// their version (kubernetes/k8s.io artifacts/manifests/k8s-staging-provider-aws
/// @ c69ddbd7; the 1.32–1.36 manifests left the version out, issues
/// cloud-provider-aws#1324 and #1481). It speaks
/// credentialprovider.kubelet.k8s.io/v1, which every supported kubelet
/// does (cloud-provider-aws#606), so one version serves them all.
pub const ECR_CREDENTIAL_PROVIDER: &str = "1.37.0";

/// SHA-256 of exact files, by URL. Sources: kubernetes-sigs/kubespray
/// `roles/kubespray_defaults/vars/main/checksums.yml` @ 005bdce7 for every
/// row unless noted. A download not listed here is verified against the
/// checksum its release publishes (see `Download::check`), which is fetched
/// over HTTPS at boot: add its row when you can.
pub const SHA256: &[(&str, &str)] = &[
    // ecr-credential-provider: the promotion manifest above (the digest
    // of the exact promoted file).
    (
        "https://artifacts.k8s.io/binaries/cloud-provider-aws/v1.37.0/linux/amd64/ecr-credential-provider-linux-amd64",
        "842e0fd8159f5ed8df2f38e6521e1e4f0a1ee80cf1e1ac119bbf20bf9c20681c",
    ),
    (
        "https://artifacts.k8s.io/binaries/cloud-provider-aws/v1.37.0/windows/amd64/ecr-credential-provider-windows-amd64",
        "8a659cef454cdf9a4b47c0fd6163f635c92de6a5bc1b65b0cf9abd158fad9427",
    ),
    (
        "https://github.com/opencontainers/runc/releases/download/v1.4.3/runc.amd64",
        "f6ae8efc0fa40079e1475e97cbe9d1bd3f106a28d6af78a11d9f1bd565515e60",
    ),
    (
        "https://github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz",
        "b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303",
    ),
    (
        "https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.36.0/crictl-v1.36.0-linux-amd64.tar.gz",
        "83855e114566a8a8c44c548d515670f51de3a5e1da8b2effb59870e2f10c25a3",
    ),
    // kubespray @ 46dbdd39 for the patches a file can still pin.
    ("https://dl.k8s.io/v1.35.8/bin/linux/amd64/kubelet", "6971b9f95e54dbed67a2271abe6e78f8cc2894494649f3cf39e4b25a82dca923"),
    ("https://dl.k8s.io/v1.35.8/bin/linux/amd64/kubeadm", "1bbc64a2be5b300880ae9330c6bba592ec2a2b8ecb79c527b0c7cc0f44070e5e"),
    ("https://dl.k8s.io/v1.35.8/bin/linux/amd64/kubectl", "874d5e72dbb819f43cff16bcd1e4f8bac5b7f2361fe1e55049b0a6c676fb0cbf"),
    ("https://dl.k8s.io/v1.36.4/bin/linux/amd64/kubelet", "cf2562db46c48ab84cc3791540778ee7fb1a0a008529adbb434723dd02ed8b4b"),
    ("https://dl.k8s.io/v1.36.4/bin/linux/amd64/kubeadm", "10d054585907f2c8bb823c84f6a66b3bd2a474c3d795475f04e9a44f78650fe6"),
    ("https://dl.k8s.io/v1.36.4/bin/linux/amd64/kubectl", "8b8f088da2dab964f853b38464033b1be15ede2839eca751482357c45abdd05a"),
    (
        "https://github.com/containerd/containerd/releases/download/v2.3.4/containerd-2.3.4-linux-amd64.tar.gz",
        "9d68969855fbf676cdb8ed758e420fb048d61f984f61de3e53eddfebe484d168",
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
    ("aws-iam-authenticator", 60_000_000),
    ("ecr-credential-provider", 20_000_000),
    ("flanneld", 35_000_000),
    ("flannel-cni", 3_000_000),
    ("calico-crds", 2_000_000),
    ("tigera-operator", 60_000),
    ("kube-flannel", 10_000),
];
