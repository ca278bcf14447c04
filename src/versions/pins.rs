//! What must exist before a node boots: every file a node of the cluster
//! downloads with the source of its checksum, and every image a node pulls
//! with the platforms that pull it (linux/amd64, or windows/amd64 of a
//! pool's Windows build). A pin that does not exist costs a control plane
//! without a CNI or a Windows node that never joins, found twenty minutes
//! and some dollars later; `hybrid versions --check`, `plan` and `apply`
//! check these before anything is launched (`commands::shared::pins` does
//! the looking, through `adapters::web`). Pure: names, not requests.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::{Check, NodeKind, downloads, node_images};
use crate::model::{ClusterSpec, NodeOs, WindowsVersion};

/// Where a download's checksum comes from, as a node fetches it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChecksumPin {
    /// Recorded in hybrid: nothing to look up.
    Recorded,
    /// A `.sha256`/`.sha256sum` file beside the download.
    File(String),
    /// A GitHub release asset's `digest`, from the release's API answer.
    GithubAsset { release_api: String, asset: String },
    /// A file's git blob id at a tag, from GitHub's contents API.
    GitBlob { contents_api: String },
}

impl ChecksumPin {
    fn of(check: &Check) -> Self {
        match check {
            Check::Sha256(_) => ChecksumPin::Recorded,
            Check::ChecksumFile(url) => ChecksumPin::File(url.clone()),
            Check::GithubAssetDigest { release_api, asset } => {
                ChecksumPin::GithubAsset { release_api: release_api.clone(), asset: asset.clone() }
            }
            Check::GitBlob { contents_api } => ChecksumPin::GitBlob { contents_api: contents_api.clone() },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePin {
    pub url: String,
    /// `kubelet 1.36.5` and the node kinds that download it.
    pub label: String,
    pub checksum: ChecksumPin,
}

/// The platform a node pulls an image for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodePlatform {
    Linux,
    Windows(WindowsVersion),
}

impl NodePlatform {
    pub fn describe(self) -> String {
        match self {
            NodePlatform::Linux => "linux/amd64".into(),
            NodePlatform::Windows(w) => format!("windows/amd64 {} ({})", w.build(), w.name()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagePin {
    pub image: String,
    pub platforms: BTreeSet<NodePlatform>,
    /// Who pulls it: `control plane`, `pool win-tools (prepull)`, ...
    pub label: String,
}

/// Everything a cluster's nodes fetch, each once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pins {
    pub files: Vec<FilePin>,
    pub images: Vec<ImagePin>,
    /// Pre-pulled images of a private ECR registry: not checked (only the
    /// nodes' AWS credentials can read them).
    pub private: Vec<String>,
}

fn kind_name(kind: NodeKind) -> String {
    match kind {
        NodeKind::ControlPlane => "control plane".into(),
        NodeKind::LinuxWorker => "Linux workers".into(),
        NodeKind::Windows(w) => w.name().to_string(),
    }
}

/// The pins of `spec`: the downloads of every node kind it has and the
/// images of every node, a pool's `prepull` list included.
pub fn pins(spec: &ClusterSpec) -> Pins {
    let mut kinds = vec![NodeKind::ControlPlane];
    for pool in &spec.pools {
        let kind = match pool.os {
            NodeOs::Linux(_) => NodeKind::LinuxWorker,
            NodeOs::Windows(w) => NodeKind::Windows(w),
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    let mut files: BTreeMap<String, (String, ChecksumPin, Vec<String>)> = BTreeMap::new();
    for kind in &kinds {
        for d in downloads(spec, *kind) {
            let entry =
                files.entry(d.url.clone()).or_insert_with(|| (format!("{} {}", d.name, d.version), ChecksumPin::of(&d.check), Vec::new()));
            entry.2.push(kind_name(*kind));
        }
    }
    let mut images: BTreeMap<String, (BTreeSet<NodePlatform>, Vec<String>)> = BTreeMap::new();
    let mut private = BTreeSet::new();
    let mut add = |image: &str, platform: NodePlatform, who: String| {
        let entry = images.entry(image.to_string()).or_default();
        entry.0.insert(platform);
        if !entry.1.contains(&who) {
            entry.1.push(who);
        }
    };
    for image in node_images(spec, NodeOs::Linux(spec.control_plane.os)) {
        add(&image, NodePlatform::Linux, "control plane".into());
    }
    for pool in &spec.pools {
        let platform = match pool.os {
            NodeOs::Linux(_) => NodePlatform::Linux,
            NodeOs::Windows(w) => NodePlatform::Windows(w),
        };
        for image in node_images(spec, pool.os) {
            add(&image, platform, format!("pool {}", pool.name));
        }
        for image in &pool.prepull {
            if super::private_ecr_region(image).is_some() {
                private.insert(image.clone());
            } else {
                add(image, platform, format!("pool {} (prepull)", pool.name));
            }
        }
    }
    Pins {
        files: files
            .into_iter()
            .map(|(url, (what, checksum, kinds))| FilePin { url, label: format!("{what} ({})", kinds.join(", ")), checksum })
            .collect(),
        images: images.into_iter().map(|(image, (platforms, who))| ImagePin { image, platforms, label: who.join(", ") }).collect(),
        private: private.into_iter().collect(),
    }
}

impl Pins {
    /// A digest of everything checked: a check that passed for one key
    /// holds for every cluster with the same key.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        for f in &self.files {
            h.update(format!("file {} {:?}\n", f.url, f.checksum));
        }
        for i in &self.images {
            h.update(format!("image {} {:?}\n", i.image, i.platforms));
        }
        h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
    }
}

/// An image reference as a registry's API addresses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry API's host (`registry-1.docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    /// A tag or a `sha256:` digest.
    pub reference: String,
}

/// `registry.k8s.io/pause:3.10.1`, `quay.io/calico/node:v3.32.4`,
/// `docker.io/library/nginx@sha256:...`, `nginx:1.27` (Docker Hub, as a
/// container runtime reads a name without a registry).
pub fn parse_image(image: &str) -> Option<ImageRef> {
    let (name, reference) = match image.split_once('@') {
        Some((name, digest)) => (name, digest.to_string()),
        None => match image.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag.to_string()),
            _ => (image, "latest".to_string()),
        },
    };
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let has_registry = first.contains('.') || first.contains(':') || first == "localhost";
    let (registry, repository) =
        if has_registry { (first.to_string(), rest.to_string()) } else { ("docker.io".to_string(), name.to_string()) };
    if repository.is_empty() || reference.is_empty() {
        return None;
    }
    if registry == "docker.io" {
        let repository = if repository.contains('/') { repository } else { format!("library/{repository}") };
        return Some(ImageRef { registry: "registry-1.docker.io".into(), repository, reference });
    }
    Some(ImageRef { registry, repository, reference })
}

/// One variant of an image: what its index lists for it (or a single
/// manifest's config says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    pub os: String,
    pub architecture: String,
    pub os_version: Option<String>,
}

impl Variant {
    pub fn describe(&self) -> String {
        match &self.os_version {
            Some(v) => format!("{}/{} {v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The build of `10.0.20348.2849`: `(10, 0, 20348)`.
fn build_of(version: &str) -> Option<(u32, u32, u32)> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Whether a node of `platform` can run one of `variants`, by containerd's
/// rule for Windows (platforms `checkWindowsHostAndContainerCompat`,
/// WINDOWS-NOTES §1.4): the same major.minor, and a host older than
/// Windows Server 2022 (20348) runs only its own build; a newer host runs
/// builds from 20348 up to its own.
pub fn serves(variants: &[Variant], platform: NodePlatform) -> bool {
    variants.iter().any(|v| {
        if v.architecture != "amd64" {
            return false;
        }
        match platform {
            NodePlatform::Linux => v.os == "linux",
            NodePlatform::Windows(w) => {
                let (Some(host), Some(image)) = (build_of(w.build()), v.os_version.as_deref().and_then(build_of)) else { return false };
                v.os == "windows"
                    && (host.0, host.1) == (image.0, image.1)
                    && if host.2 < 20348 { image.2 == host.2 } else { (20348..=host.2).contains(&image.2) }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ClusterSpec {
        crate::config::load(text).spec.unwrap()
    }

    #[test]
    fn image_references_resolve_to_registry_apis() {
        let r = parse_image("registry.k8s.io/pause:3.10.1").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.reference.as_str()), ("registry.k8s.io", "pause", "3.10.1"));
        let r = parse_image("nginx:1.27").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("registry-1.docker.io", "library/nginx"));
        let r = parse_image("docker.io/sigwindowstools/x@sha256:abc").unwrap();
        assert_eq!((r.repository.as_str(), r.reference.as_str()), ("sigwindowstools/x", "sha256:abc"));
        let r = parse_image("localhost:5000/a/b").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.reference.as_str()), ("localhost:5000", "a/b", "latest"));
        let r = parse_image("123456789012.dkr.ecr.us-east-1.amazonaws.com/game/server:7").unwrap();
        assert_eq!(r.registry, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    }

    #[test]
    fn windows_variants_follow_containerds_build_rule() {
        let v = |os_version: &str| Variant { os: "windows".into(), architecture: "amd64".into(), os_version: Some(os_version.into()) };
        let ltsc2019 = [v("10.0.17763.6893")];
        let ltsc2022 = [v("10.0.20348.3207")];
        assert!(serves(&ltsc2019, NodePlatform::Windows(WindowsVersion::Ws2019)));
        assert!(!serves(&ltsc2022, NodePlatform::Windows(WindowsVersion::Ws2019)), "2019 runs only its own build");
        assert!(serves(&ltsc2022, NodePlatform::Windows(WindowsVersion::Ws2025)), "2025 runs 2022 images");
        assert!(!serves(&ltsc2019, NodePlatform::Windows(WindowsVersion::Ws2022)), "nothing older than 20348 on 2022");
        assert!(!serves(&[v("10.0.26100.1")], NodePlatform::Windows(WindowsVersion::Ws2022)), "nothing newer than the host");
        let linux = [Variant { os: "linux".into(), architecture: "amd64".into(), os_version: None }];
        assert!(serves(&linux, NodePlatform::Linux) && !serves(&linux, NodePlatform::Windows(WindowsVersion::Ws2022)));
        let arm = [Variant { os: "linux".into(), architecture: "arm64".into(), os_version: None }];
        assert!(!serves(&arm, NodePlatform::Linux));
    }

    #[test]
    fn pins_cover_every_node_kind_and_prepulled_image_once() {
        let s = spec(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/qa.toml")));
        let p = pins(&s);
        let urls: BTreeSet<&str> = p.files.iter().map(|f| f.url.as_str()).collect();
        assert_eq!(urls.len(), p.files.len(), "each file once");
        assert!(p.files.iter().any(|f| f.url.ends_with("/windows/amd64/kube-proxy.exe") && f.label.contains("windows-2019")));
        let pause = p.images.iter().find(|i| i.image.starts_with("registry.k8s.io/pause:")).unwrap();
        assert!(pause.platforms.contains(&NodePlatform::Linux));
        assert!(pause.platforms.contains(&NodePlatform::Windows(WindowsVersion::Ws2019)));
        assert!(pause.platforms.contains(&NodePlatform::Windows(WindowsVersion::Ws2022)));
        let mut other = s.clone();
        other.pools[0].prepull.push("mcr.microsoft.com/windows/servercore:ltsc2019".into());
        assert_ne!(pins(&other).key(), p.key(), "a prepulled image is a pin");
        assert!(pins(&other).images.iter().any(|i| i.image.contains("servercore") && i.label.contains("(prepull)")));
    }
}
