//! The compatibility matrix: every version hybrid installs, every file a
//! node downloads at boot with how it is verified, and the rules for which
//! combinations of Kubernetes, Windows build, CNI and containerd work.
//! Pure data and lookups: `table` holds the rows (with their sources),
//! this module turns a spec into concrete downloads and images, and
//! `config::rules` reports what does not fit.
//!
//! Templates never spell a version or URL themselves: they get every one
//! from here through the bootstrap context (a test enforces it).

pub mod pins;
pub mod report;
mod table;
mod types;

pub use table::{
    AWS_IAM_AUTHENTICATOR, CALICO, CNI_PLUGINS, CONTAINERD, CONTAINERD_END_OF_LIFE, CRICTL, ECR_CREDENTIAL_PROVIDER, END_OF_LIFE, FLANNEL,
    KUBERNETES, NOT_YET, NSSM, RUNC,
};
pub use types::{CalicoLine, FlannelLine, KubeMinor, Semver};

use crate::model::{ClusterSpec, CniPlugin, KubeVersion, NodeOs, WindowsVersion};

pub fn kube_minor(minor: u32) -> Option<&'static KubeMinor> {
    KUBERNETES.iter().find(|k| k.minor == minor)
}

/// The default minor (`table::DEFAULT_MINOR`, see its reasons).
pub fn default_minor() -> &'static KubeMinor {
    kube_minor(table::DEFAULT_MINOR).expect("the default minor has a row")
}

pub fn calico_line(version: &str) -> Option<&'static CalicoLine> {
    let v = Semver::parse(version)?;
    CALICO.iter().find(|c| c.line == (v.0, v.1))
}

pub fn flannel_line(version: &str) -> Option<&'static FlannelLine> {
    let v = Semver::parse(version)?;
    FLANNEL.iter().find(|c| c.line == (v.0, v.1))
}

pub fn default_cni_version(plugin: CniPlugin, minor: &KubeMinor) -> &'static str {
    match plugin {
        CniPlugin::Calico => minor.calico,
        CniPlugin::Flannel => minor.flannel,
    }
}

// =^..^= downloads =^..^=

/// How a node verifies a download before using it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// A SHA-256 recorded in the table.
    Sha256(&'static str),
    /// The checksum file the release publishes beside the file (`.sha256`,
    /// `.sha256sum`: the first 64-hex-digit word), fetched over HTTPS.
    ChecksumFile(String),
    /// GitHub's SHA-256 digest of a release asset (releases API), for
    /// releases that publish no checksum file (flannel).
    GithubAssetDigest { release_api: String, asset: String },
    /// The git blob id of a file at a release tag (GitHub contents API),
    /// for manifests that exist only in the repository at that tag
    /// (Calico's). SHA-1: the weakest check here, used only where nothing
    /// else is published; recording the SHA-256 in the table replaces it.
    GitBlob { contents_api: String },
}

impl Check {
    /// The one-word form the bootstrap scripts parse: `sha256:<hex>`,
    /// `sha256-file:<url>`, `github-asset:<api>#<asset>`, `git-blob:<api>`.
    pub fn encode(&self) -> String {
        match self {
            Check::Sha256(hex) => format!("sha256:{hex}"),
            Check::ChecksumFile(url) => format!("sha256-file:{url}"),
            Check::GithubAssetDigest { release_api, asset } => format!("github-asset:{release_api}#{asset}"),
            Check::GitBlob { contents_api } => format!("git-blob:{contents_api}"),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Check::Sha256(_) => "SHA-256 recorded in hybrid",
            Check::ChecksumFile(_) => "SHA-256 from the release's checksum file",
            Check::GithubAssetDigest { .. } => "SHA-256 digest of the GitHub release asset",
            Check::GitBlob { .. } => "git blob id at the release tag (SHA-1)",
        }
    }
}

/// One file a node fetches at boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Download {
    /// A short stable name (`kubelet`, `containerd`, `calico-crds`).
    pub name: &'static str,
    pub version: String,
    pub url: String,
    pub check: Check,
    pub approx_bytes: u64,
}

fn recorded(url: &str) -> Option<&'static str> {
    table::SHA256.iter().find(|(u, _)| *u == url).map(|(_, h)| *h)
}

fn approx(name: &str) -> u64 {
    table::APPROX_BYTES.iter().find(|(n, _)| *n == name).map_or(0, |(_, b)| *b)
}

fn download(name: &'static str, version: &str, url: String, published: Check) -> Download {
    let check = recorded(&url).map_or(published, Check::Sha256);
    Download { name, version: version.to_string(), approx_bytes: approx(name), url, check }
}

fn github_release(repo: &str, tag: &str, asset: &str) -> (String, Check) {
    let url = format!("https://github.com/{repo}/releases/download/{tag}/{asset}");
    let check = Check::GithubAssetDigest {
        release_api: format!("https://api.github.com/repos/{repo}/releases/tags/{tag}"),
        asset: asset.to_string(),
    };
    (url, check)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Linux,
    Windows,
}

/// A Kubernetes release binary from dl.k8s.io, which publishes
/// `<file>.sha256` (the bare digest) beside each one.
pub fn kube_binary(version: KubeVersion, platform: Platform, binary: &'static str) -> Download {
    let url = match platform {
        Platform::Linux => format!("https://dl.k8s.io/v{version}/bin/linux/amd64/{binary}"),
        Platform::Windows => format!("https://dl.k8s.io/v{version}/bin/windows/amd64/{binary}.exe"),
    };
    let sums = format!("{url}.sha256");
    download(binary, &version.to_string(), url, Check::ChecksumFile(sums))
}

/// containerd publishes `<tarball>.sha256sum` beside each release asset.
pub fn containerd(version: &str, platform: Platform) -> Download {
    let os = if platform == Platform::Linux { "linux" } else { "windows" };
    let url = format!("https://github.com/containerd/containerd/releases/download/v{version}/containerd-{version}-{os}-amd64.tar.gz");
    let sums = format!("{url}.sha256sum");
    download("containerd", version, url, Check::ChecksumFile(sums))
}

/// runc publishes one `runc.sha256sum` for all its assets.
pub fn runc() -> Download {
    let base = format!("https://github.com/opencontainers/runc/releases/download/v{RUNC}");
    download("runc", RUNC, format!("{base}/runc.amd64"), Check::ChecksumFile(format!("{base}/runc.sha256sum")))
}

/// containernetworking/plugins publishes `<asset>.sha256`.
pub fn cni_plugins(platform: Platform) -> Download {
    let os = if platform == Platform::Linux { "linux" } else { "windows" };
    let url = format!(
        "https://github.com/containernetworking/plugins/releases/download/v{CNI_PLUGINS}/cni-plugins-{os}-amd64-v{CNI_PLUGINS}.tgz"
    );
    let sums = format!("{url}.sha256");
    download("cni-plugins", CNI_PLUGINS, url, Check::ChecksumFile(sums))
}

pub fn crictl() -> Download {
    let url = format!("https://github.com/kubernetes-sigs/cri-tools/releases/download/v{CRICTL}/crictl-v{CRICTL}-linux-amd64.tar.gz");
    let sums = format!("{url}.sha256");
    download("crictl", CRICTL, url, Check::ChecksumFile(sums))
}

/// nssm publishes no checksums; the table records one.
pub fn nssm() -> Download {
    let url = format!("https://k8stestinfrabinaries.blob.core.windows.net/nssm-mirror/nssm-{NSSM}.zip");
    let check = recorded(&url).map(Check::Sha256).expect("the table records nssm's SHA-256");
    Download { name: "nssm", version: NSSM.into(), approx_bytes: approx("nssm"), url, check }
}

/// The control plane's token webhook, one Linux binary per release.
pub fn aws_iam_authenticator() -> Download {
    let v = AWS_IAM_AUTHENTICATOR;
    let (url, check) =
        github_release("kubernetes-sigs/aws-iam-authenticator", &format!("v{v}"), &format!("aws-iam-authenticator_{v}_linux_amd64"));
    download("aws-iam-authenticator", v, url, check)
}

/// kubelet's credential provider for private ECR; its digest is recorded
/// (the promoter publishes a `.sha256` beside each file too).
pub fn ecr_credential_provider(platform: Platform) -> Download {
    let v = ECR_CREDENTIAL_PROVIDER;
    let os = if platform == Platform::Linux { "linux" } else { "windows" };
    let url = format!("https://artifacts.k8s.io/binaries/cloud-provider-aws/v{v}/{os}/amd64/ecr-credential-provider-{os}-amd64");
    let sums = format!("{url}.sha256");
    download("ecr-credential-provider", v, url, Check::ChecksumFile(sums))
}

/// The CredentialProviderConfig kubelet reads (kubelet.config.k8s.io/v1):
/// ecr-credential-provider for every private ECR host pattern the plugin
/// itself accepts (cloud-provider-aws cmd/ecr-credential-provider/main.go
/// `ecrPrivateHostPattern`; each `*` is one DNS label), tokens kept 12 hours.
pub fn credential_provider_config() -> String {
    let hosts = [
        "*.dkr.ecr.*.amazonaws.com",
        "*.dkr-ecr.*.on.aws",
        "*.dkr.ecr.*.amazonaws.com.cn",
        "*.dkr-ecr.*.on.amazonwebservices.com.cn",
        "*.dkr.ecr-fips.*.amazonaws.com",
    ];
    let mut out = String::from(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n  - name: ecr-credential-provider\n    apiVersion: credentialprovider.kubelet.k8s.io/v1\n    defaultCacheDuration: \"12h\"\n    matchImages:\n",
    );
    for h in hosts {
        out.push_str(&format!("      - \"{h}\"\n"));
    }
    out
}

/// The region of a private ECR image (`<account>.dkr.ecr.<region>.amazonaws.com/…`
/// and its dual-stack, FIPS and China forms); `None` for any other image.
pub fn private_ecr_region(image: &str) -> Option<String> {
    let host = image.split('/').next()?;
    let labels: Vec<&str> = host.split('.').collect();
    let account = labels.first().is_some_and(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()));
    match labels.get(1..) {
        Some([kind, region, ..]) if account && (*kind == "dkr-ecr" || *kind == "dkr-ecr-fips") => Some(region.to_string()),
        Some([kind, service, region, ..]) if account && *kind == "dkr" && (*service == "ecr" || *service == "ecr-fips") => {
            Some(region.to_string())
        }
        _ => None,
    }
}

/// ECR's API endpoint for a private image, where its login token is asked
/// for: in the registry's region, and FIPS for a FIPS registry (an account
/// held to FIPS endpoints must not log in through another; the endpoints
/// are listed in the AWS General Reference, "Amazon ECR endpoints and
/// quotas", and the signing name stays `ecr`). `None` for other images.
pub fn ecr_api_endpoint(image: &str) -> Option<String> {
    let region = private_ecr_region(image)?;
    let host = image.split('/').next().unwrap_or_default();
    let fips = host.contains(".dkr.ecr-fips.") || host.contains(".dkr-ecr-fips.");
    let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    Some(if fips { format!("https://ecr-fips.{region}.{domain}") } else { format!("https://api.ecr.{region}.{domain}") })
}

/// Calico's manifests live in the repository at the release tag.
pub fn calico_manifest(version: &str, name: &'static str, file: &str) -> Download {
    let url = format!("https://raw.githubusercontent.com/projectcalico/calico/v{version}/manifests/{file}");
    let check = Check::GitBlob {
        contents_api: format!("https://api.github.com/repos/projectcalico/calico/contents/manifests/{file}?ref=v{version}"),
    };
    download(name, version, url, check)
}

pub fn flannel_manifest(version: &str) -> Download {
    let (url, check) = github_release("flannel-io/flannel", &format!("v{version}"), "kube-flannel.yml");
    download("kube-flannel", version, url, check)
}

pub fn flanneld_windows(version: &str) -> Download {
    let (url, check) = github_release("flannel-io/flannel", &format!("v{version}"), &format!("flannel-v{version}-windows-amd64.tar.gz"));
    download("flanneld", version, url, check)
}

pub fn flannel_cni_windows(cni_plugin: &str) -> Download {
    let (url, check) = github_release("flannel-io/cni-plugin", cni_plugin, &format!("cni-plugin-flannel-windows-amd64-{cni_plugin}.tgz"));
    download("flannel-cni", cni_plugin, url, check)
}

/// What the spec resolves to: the versions each node installs.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub kubernetes: KubeVersion,
    pub minor: &'static KubeMinor,
    pub containerd: String,
}

impl Resolved {
    pub fn of(spec: &ClusterSpec) -> Self {
        let minor = kube_minor(spec.kubernetes_version.minor).unwrap_or_else(default_minor);
        Self { kubernetes: spec.kubernetes_version, minor, containerd: spec.containerd_version.clone() }
    }
}

/// Which node a download list is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    ControlPlane,
    LinuxWorker,
    Windows(WindowsVersion),
}

impl NodeKind {
    /// The kind of `pool`'s nodes.
    pub fn of_pool(pool: &crate::model::Pool) -> Self {
        match pool.os {
            NodeOs::Windows(v) => Self::Windows(v),
            NodeOs::Linux(_) => Self::LinuxWorker,
        }
    }
}

/// What a node of one kind runs, taken from the version table once: the
/// files it downloads, its pause image and the images it pulls on its way
/// to Ready (a pool's own pre-pulls come on top). The bootstrap renders from
/// this and never consults the table itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeVersions {
    pub downloads: Vec<Download>,
    pub pause_image: String,
    pub images: Vec<String>,
}

impl NodeVersions {
    pub fn of(spec: &ClusterSpec, kind: NodeKind) -> Self {
        // The images differ between Linux and Windows only, not by distro.
        let os = match kind {
            NodeKind::Windows(v) => NodeOs::Windows(v),
            NodeKind::ControlPlane | NodeKind::LinuxWorker => NodeOs::Linux(spec.control_plane.os),
        };
        Self { downloads: downloads(spec, kind), pause_image: pause_image(spec), images: node_images(spec, os) }
    }
}

/// Every file a node of `kind` downloads at boot, in the order it needs
/// them. The bootstrap context hands exactly these to the templates.
pub fn downloads(spec: &ClusterSpec, kind: NodeKind) -> Vec<Download> {
    let r = Resolved::of(spec);
    let k = r.kubernetes;
    match kind {
        NodeKind::ControlPlane | NodeKind::LinuxWorker => {
            let mut out = vec![
                containerd(&r.containerd, Platform::Linux),
                runc(),
                cni_plugins(Platform::Linux),
                crictl(),
                kube_binary(k, Platform::Linux, "kubelet"),
                kube_binary(k, Platform::Linux, "kubeadm"),
            ];
            if kind == NodeKind::LinuxWorker {
                out.push(ecr_credential_provider(Platform::Linux));
            }
            if kind == NodeKind::ControlPlane {
                out.push(kube_binary(k, Platform::Linux, "kubectl"));
                out.push(aws_iam_authenticator());
                match spec.cni.plugin {
                    CniPlugin::Calico => {
                        let crds = calico_line(&spec.cni.version).map_or("operator-crds.yaml", |c| c.crds_manifest);
                        out.push(calico_manifest(&spec.cni.version, "calico-crds", crds));
                        out.push(calico_manifest(&spec.cni.version, "tigera-operator", "tigera-operator.yaml"));
                    }
                    CniPlugin::Flannel => out.push(flannel_manifest(&spec.cni.version)),
                }
            }
            out
        }
        NodeKind::Windows(_) => {
            let mut out = vec![
                containerd(&r.containerd, Platform::Windows),
                kube_binary(k, Platform::Windows, "kubelet"),
                kube_binary(k, Platform::Windows, "kubeadm"),
                nssm(),
                ecr_credential_provider(Platform::Windows),
            ];
            if spec.cni.plugin == CniPlugin::Flannel {
                let cni_plugin = flannel_line(&spec.cni.version).map_or(FLANNEL[0].cni_plugin, |f| f.cni_plugin);
                out.push(flanneld_windows(&spec.cni.version));
                out.push(flannel_cni_windows(cni_plugin));
                out.push(cni_plugins(Platform::Windows));
            }
            // kube-proxy is a host service on both CNIs (docs/windows.md).
            out.push(kube_binary(k, Platform::Windows, "kube-proxy"));
            out
        }
    }
}

/// The sandbox image, the same on Linux and Windows (a multi-platform
/// image with a layer per Windows build).
/// The regional SSM endpoint the control plane reads its secrets from
/// (AWS general reference, "Systems Manager endpoints"; China regions live
/// under amazonaws.com.cn). Here because templates spell no URL.
pub fn ssm_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("https://ssm.{region}.{domain}")
}

pub fn pause_image(spec: &ClusterSpec) -> String {
    format!("registry.k8s.io/pause:{}", Resolved::of(spec).minor.pause)
}

/// kube-proxy on Linux nodes: the DaemonSet kubeadm's `kube-proxy` addon
/// phase creates, with the image tagged as the control plane's version
/// (kubernetes/kubernetes cmd/kubeadm/app/images: `GetKubernetesImage`).
pub fn kube_proxy_linux_image(spec: &ClusterSpec) -> String {
    format!("registry.k8s.io/kube-proxy:v{}", spec.kubernetes_version)
}

/// Images a node pulls on its way to Ready (what a baked image pre-pulls).
pub fn node_images(spec: &ClusterSpec, os: NodeOs) -> Vec<String> {
    let mut out = vec![pause_image(spec)];
    match (os, spec.cni.plugin) {
        (NodeOs::Windows(_), CniPlugin::Calico) => {
            // The operator pulls from quay.io by default (tigera/operator
            // pkg/components: CalicoRegistry).
            out.push(format!("quay.io/calico/node-windows:v{}", spec.cni.version));
            out.push(format!("quay.io/calico/cni-windows:v{}", spec.cni.version));
        }
        (NodeOs::Windows(_), CniPlugin::Flannel) => {}
        (NodeOs::Linux(_), CniPlugin::Calico) => {
            out.push(kube_proxy_linux_image(spec));
            for image in ["node", "cni", "kube-controllers", "typha", "pod2daemon-flexvol", "csi", "node-driver-registrar"] {
                out.push(format!("quay.io/calico/{image}:v{}", spec.cni.version));
            }
        }
        (NodeOs::Linux(_), CniPlugin::Flannel) => {
            out.push(kube_proxy_linux_image(spec));
            let cni_plugin = flannel_line(&spec.cni.version).map_or(FLANNEL[0].cni_plugin, |f| f.cni_plugin);
            out.push(format!("ghcr.io/flannel-io/flannel:v{}", spec.cni.version));
            out.push(format!("ghcr.io/flannel-io/flannel-cni-plugin:{cni_plugin}"));
        }
    }
    out
}

// =^..^= compatibility =^..^=

/// Why a combination does not work, and the nearest one that does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub message: String,
    pub hint: String,
}

fn supported_range() -> String {
    format!("1.{}-1.{}", KUBERNETES[0].minor, KUBERNETES[KUBERNETES.len() - 1].minor)
}

/// The Kubernetes version itself: inside the supported window, with a
/// known patch.
pub fn check_kubernetes(v: KubeVersion) -> Result<&'static KubeMinor, Mismatch> {
    if v.major != 1 {
        return Err(Mismatch { message: format!("Kubernetes {v} is not a 1.x release"), hint: format!("use 1.{}", default_minor().minor) });
    }
    if let Some(k) = kube_minor(v.minor) {
        return Ok(k);
    }
    let newest = &KUBERNETES[KUBERNETES.len() - 1];
    if let Some((_, eol)) = END_OF_LIFE.iter().find(|(m, _)| *m == v.minor) {
        return Err(Mismatch {
            message: format!("Kubernetes 1.{} reached end of life on {eol}; supported minors are {}", v.minor, supported_range()),
            hint: format!(
                "upgrade to \"1.{}\" (the oldest supported) or \"1.{}\" (hybrid's default)",
                KUBERNETES[0].minor,
                default_minor().minor
            ),
        });
    }
    if let Some((_, why)) = NOT_YET.iter().find(|(m, _)| *m == v.minor) {
        return Err(Mismatch {
            message: format!("{why}; hybrid's table ends at 1.{} (no containerd, CNI or pause row for 1.{} yet)", newest.minor, v.minor),
            hint: format!("use \"1.{}\" until hybrid adds 1.{}", newest.minor, v.minor),
        });
    }
    if v.minor > newest.minor {
        return Err(Mismatch {
            message: format!("Kubernetes 1.{} is newer than hybrid's table ({})", v.minor, supported_range()),
            hint: format!("use \"1.{}\", or add a row for 1.{} to src/versions/table.rs (CONTRIBUTING.md)", newest.minor, v.minor),
        });
    }
    Err(Mismatch {
        message: format!("Kubernetes 1.{} is out of support; supported minors are {}", v.minor, supported_range()),
        hint: format!("use \"1.{}\"", default_minor().minor),
    })
}

/// A patch newer than the newest hybrid knows of its minor: it may exist
/// (hybrid's table lags), or be a typo that fails twenty minutes into a
/// node's boot. A warning; `versions --check` finds out for sure.
pub fn check_patch(v: KubeVersion, minor: &KubeMinor) -> Option<Mismatch> {
    (v.patch > minor.latest_patch).then(|| Mismatch {
        message: format!(
            "Kubernetes {v} is newer than the newest 1.{} patch hybrid knows (1.{}.{}); if it does not exist, every node fails at boot",
            minor.minor, minor.minor, minor.latest_patch
        ),
        hint: format!(
            "check it with `hybrid versions FILE --check` (plan and apply do before launching), or write \"1.{}\" for 1.{}.{}",
            minor.minor, minor.minor, minor.latest_patch
        ),
    })
}

/// A containerd line past its end of life gets no security fixes.
pub fn containerd_end_of_life(containerd: &str) -> Option<Mismatch> {
    let v = Semver::parse(containerd)?;
    let (_, eol) = CONTAINERD_END_OF_LIFE.iter().find(|(line, _)| *line == (v.0, v.1))?;
    Some(Mismatch {
        message: format!("containerd {}.{} reached end of life on {eol} and gets no security fixes", v.0, v.1),
        hint: format!("use \"{CONTAINERD}\" (the 2.3 LTS line), or remove containerd_version for the default"),
    })
}

/// containerd against the Kubernetes minor (containerd RELEASES.md).
pub fn check_containerd(minor: &KubeMinor, containerd: &str) -> Result<(), Mismatch> {
    let Some(v) = Semver::parse(containerd) else {
        return Err(Mismatch {
            message: format!("`{containerd}` is not a containerd version"),
            hint: format!("use \"{}\"", minor.containerd),
        });
    };
    if v < minor.containerd_min {
        return Err(Mismatch {
            message: format!("containerd {v} is older than Kubernetes 1.{} supports (at least {})", minor.minor, minor.containerd_min),
            hint: format!("use \"{}\", or remove containerd_version for the default", minor.containerd),
        });
    }
    if v.0 < 2 {
        return Err(Mismatch {
            message: format!("containerd {v} uses config version 2, which hybrid's templates no longer write"),
            hint: format!("use containerd 2.x, e.g. \"{}\"", minor.containerd),
        });
    }
    Ok(())
}

/// The CNI release against the Kubernetes minor.
pub fn check_cni(plugin: CniPlugin, version: &str, minor: &KubeMinor) -> Result<(), Mismatch> {
    match plugin {
        CniPlugin::Calico => {
            let Some(line) = calico_line(version) else {
                let known: Vec<String> = CALICO.iter().map(|c| format!("{}.{}", c.line.0, c.line.1)).collect();
                return Err(Mismatch {
                    message: format!("Calico {version} is not a release line hybrid knows ({})", known.join(", ")),
                    hint: format!("use \"{}\" for Kubernetes 1.{}", minor.calico, minor.minor),
                });
            };
            if !(line.kube_minors.0..=line.kube_minors.1).contains(&minor.minor) {
                return Err(Mismatch {
                    message: format!(
                        "Calico {}.{} is tested with Kubernetes 1.{}-1.{}, not 1.{}",
                        line.line.0, line.line.1, line.kube_minors.0, line.kube_minors.1, minor.minor
                    ),
                    hint: format!("use Calico \"{}\" with Kubernetes 1.{}", minor.calico, minor.minor),
                });
            }
            Ok(())
        }
        CniPlugin::Flannel => match flannel_line(version) {
            Some(_) => Ok(()),
            None => Err(Mismatch {
                message: format!("flannel {version} is not a release line hybrid knows (0.28)"),
                hint: format!("use \"{}\"", minor.flannel),
            }),
        },
    }
}

/// A Windows Server version against Kubernetes and the CNI.
pub fn check_windows(windows: WindowsVersion, minor: &KubeMinor, plugin: CniPlugin, cni_version: &str) -> Result<(), Mismatch> {
    let names = |list: &[WindowsVersion]| list.iter().map(|w| w.name()).collect::<Vec<_>>().join(", ");
    if !minor.windows.contains(&windows) {
        let hint = match windows {
            WindowsVersion::Ws2019 => format!(
                "use windows-2022, or Kubernetes \"1.{}\", the last minor whose documentation lists Windows Server 2019",
                KUBERNETES.iter().filter(|k| k.windows.contains(&WindowsVersion::Ws2019)).map(|k| k.minor).max().unwrap_or(35)
            ),
            _ => "use windows-2022".to_string(),
        };
        return Err(Mismatch {
            message: format!(
                "Kubernetes 1.{} supports Windows nodes on {} only, not {}",
                minor.minor,
                names(minor.windows),
                windows.name()
            ),
            hint,
        });
    }
    let cni_windows = match plugin {
        CniPlugin::Calico => calico_line(cni_version).map(|c| c.windows),
        CniPlugin::Flannel => flannel_line(cni_version).map(|f| f.windows),
    };
    if let Some(list) = cni_windows
        && !list.contains(&windows)
    {
        return Err(Mismatch {
            message: format!(
                "{} {cni_version} has no Windows images for {} (it supports {}; Server 2025 is projectcalico/calico#11691)",
                plugin.name(),
                windows.name(),
                names(list)
            ),
            hint: "use windows-2022 with Calico, or flannel for Windows Server 2025".into(),
        });
    }
    if windows == WindowsVersion::Ws2025 && minor.pause == "3.10.1" {
        return Err(Mismatch {
            message: format!("the pause image of Kubernetes 1.{} ({}) has no Windows Server 2025 layer", minor.minor, minor.pause),
            hint: "use Kubernetes 1.36 or later for Windows Server 2025 (pause 3.10.2)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ecr_images_are_told_by_their_host() {
        assert_eq!(private_ecr_region("111122223333.dkr.ecr.eu-west-1.amazonaws.com/game/server:1"), Some("eu-west-1".into()));
        assert_eq!(private_ecr_region("111122223333.dkr-ecr.us-east-1.on.aws/game:1"), Some("us-east-1".into()));
        assert_eq!(private_ecr_region("111122223333.dkr.ecr-fips.us-east-1.amazonaws.com/g:1"), Some("us-east-1".into()));
        assert_eq!(private_ecr_region("public.ecr.aws/eks/pause:3.9"), None);
        assert_eq!(private_ecr_region("mcr.microsoft.com/windows/servercore:ltsc2022"), None);
        let endpoint = |image: &str| ecr_api_endpoint(image).unwrap_or_default();
        assert_eq!(endpoint("111122223333.dkr.ecr.cn-north-1.amazonaws.com.cn/g:1"), "https://api.ecr.cn-north-1.amazonaws.com.cn");
        assert_eq!(endpoint("111122223333.dkr.ecr.eu-west-1.amazonaws.com/g:1"), "https://api.ecr.eu-west-1.amazonaws.com");
        assert_eq!(endpoint("111122223333.dkr.ecr-fips.us-east-1.amazonaws.com/g:1"), "https://ecr-fips.us-east-1.amazonaws.com");
        assert_eq!(endpoint("111122223333.dkr-ecr-fips.us-east-1.on.aws/g:1"), "https://ecr-fips.us-east-1.amazonaws.com");
        assert_eq!(ecr_api_endpoint("public.ecr.aws/eks/pause:3.9"), None);
    }

    #[test]
    fn the_default_is_the_newest_minor_calico_supports() {
        let d = default_minor();
        assert_eq!(d.minor, 36);
        let line = calico_line(d.calico).unwrap();
        assert!((line.kube_minors.0..=line.kube_minors.1).contains(&d.minor));
        assert!(d.windows.contains(&WindowsVersion::Ws2022));
    }

    #[test]
    fn every_row_is_consistent() {
        for k in KUBERNETES {
            assert!(check_containerd(k, k.containerd).is_ok(), "1.{}: default containerd below its minimum", k.minor);
            assert!(check_cni(CniPlugin::Calico, k.calico, k).is_ok(), "1.{}: default Calico not tested with it", k.minor);
            assert!(check_cni(CniPlugin::Flannel, k.flannel, k).is_ok(), "1.{}", k.minor);
            assert!(k.pause.starts_with("3.") && k.pause.split('.').count() >= 2, "pause tag {}", k.pause);
        }
        for (url, hex) in table::SHA256 {
            assert!(url.starts_with("https://"), "{url}");
            assert!(hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{url}: {hex}");
        }
        let minors: Vec<u32> = KUBERNETES.iter().map(|k| k.minor).collect();
        assert!(minors.windows(2).all(|w| w[1] == w[0] + 1), "consecutive minors: {minors:?}");
        assert!(END_OF_LIFE.iter().all(|(m, _)| *m < minors[0]));
    }

    #[test]
    fn recorded_checksums_win_over_published_files() {
        let v = KubeVersion { major: 1, minor: 35, patch: 8 };
        assert!(matches!(kube_binary(v, Platform::Linux, "kubelet").check, Check::Sha256(h) if h.starts_with("6971b9f9")));
        let v = KubeVersion { major: 1, minor: 36, patch: 5 };
        let k = kube_binary(v, Platform::Windows, "kubelet");
        assert_eq!(k.url, "https://dl.k8s.io/v1.36.5/bin/windows/amd64/kubelet.exe");
        assert_eq!(k.check, Check::ChecksumFile("https://dl.k8s.io/v1.36.5/bin/windows/amd64/kubelet.exe.sha256".into()));
        assert!(nssm().check.encode().starts_with("sha256:727d1e42"));
    }

    #[test]
    fn end_of_life_and_unknown_versions_get_a_hint() {
        let eol = check_kubernetes(KubeVersion { major: 1, minor: 34, patch: 1 }).unwrap_err();
        assert!(eol.message.contains("end of life"), "{eol:?}");
        assert!(eol.hint.contains("1.35") && eol.hint.contains("1.36"), "{eol:?}");
        let future = check_kubernetes(KubeVersion { major: 1, minor: 39, patch: 0 }).unwrap_err();
        assert!(future.message.contains("newer than"), "{future:?}");
        let announced = check_kubernetes(KubeVersion { major: 1, minor: 38, patch: 0 }).unwrap_err();
        assert!(announced.message.contains("not released yet") && announced.hint.contains("1.37"), "{announced:?}");
    }

    #[test]
    fn an_unknown_patch_and_an_ended_containerd_line_are_warnings() {
        let k36 = kube_minor(36).unwrap();
        assert!(check_patch(KubeVersion { major: 1, minor: 36, patch: k36.latest_patch }, k36).is_none());
        let w = check_patch(KubeVersion { major: 1, minor: 36, patch: 99 }, k36).unwrap();
        assert!(w.message.contains("1.36.99") && w.hint.contains("--check"), "{w:?}");
        assert!(containerd_end_of_life(CONTAINERD).is_none(), "the default containerd is supported");
        let eol = containerd_end_of_life("2.2.1").unwrap();
        assert!(eol.message.contains("2026-11-06"), "{eol:?}");
    }

    #[test]
    fn windows_rules() {
        let k35 = kube_minor(35).unwrap();
        let k36 = kube_minor(36).unwrap();
        assert!(check_windows(WindowsVersion::Ws2019, k35, CniPlugin::Calico, "3.32.4").is_ok());
        let e = check_windows(WindowsVersion::Ws2019, k36, CniPlugin::Calico, "3.32.4").unwrap_err();
        assert!(e.hint.contains("1.35"), "{e:?}");
        let e = check_windows(WindowsVersion::Ws2025, k36, CniPlugin::Calico, "3.32.4").unwrap_err();
        assert!(e.message.contains("11691"), "{e:?}");
        assert!(check_windows(WindowsVersion::Ws2025, k36, CniPlugin::Flannel, "0.28.5").is_ok());
        assert!(check_windows(WindowsVersion::Ws2025, k35, CniPlugin::Flannel, "0.28.5").is_err(), "pause 3.10.1 lacks 2025");
    }
}
