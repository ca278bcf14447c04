//! Baked node images (`hybrid bake`), as plain data. Pure: which images a
//! file needs (one per distinct bake key), which image a pool boots from and
//! why, and which baked images `hybrid images --prune` may remove.
//!
//! A bake key is a digest of everything that went into an image: the OS,
//! the base image, and the builder's rendered bake script (which holds
//! every version, download and checksum from the version table, the images
//! it pre-pulls, and the stages it runs, rendered for a stand-in cluster:
//! `bootstrap::render_bake`). Pools that would bake the same image share
//! it, across clusters too; a new Kubernetes patch, CNI version or base
//! image gives a new key, so a stale image is never used.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::infra::desired::ResolvedAmi;
use crate::model::{ClusterSpec, ImageChoice, NodeOs, Pool};

/// On baked images, their snapshots and builders: the bake key.
pub const TAG_BAKE_KEY: &str = "hybrid:bake-key";
/// On baked images: what they are for, e.g. `windows-2022 k8s 1.36.5 calico
/// 3.32.1 containerd 2.2.1`; pruning keeps the newest image of each line.
pub const TAG_BAKE_LINE: &str = "hybrid:bake-line";
/// On baked images: the base image they were built from.
pub const TAG_BAKED_FROM: &str = "hybrid:baked-from";
/// On builder instances (never on cluster resources: `destroy` and
/// `reap` of a cluster do not see images or builders).
pub const TAG_BAKE_BUILDER: &str = "hybrid:bake-builder";

/// The builder's root volume: room for the OS, the binaries and the
/// pre-pulled images; pools need at least this much disk to use the image.
pub fn builder_disk_gb(os: NodeOs) -> u32 {
    if os.is_windows() { 60 } else { 20 }
}

/// 16 hex digits over what goes into an image.
pub fn bake_key(os: NodeOs, base_ami: &str, bake_script: &str) -> String {
    let digest = Sha256::digest(format!("bake-v1\nos={}\nbase={base_ami}\n{bake_script}", os.name()).as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn bake_line(spec: &ClusterSpec, os: NodeOs) -> String {
    format!(
        "{} k8s {} {} {} containerd {}",
        os.name(),
        spec.kubernetes_version,
        spec.cni.plugin.name(),
        spec.cni.version,
        spec.containerd_version
    )
}

/// The AMI name of a baked image: unique per key, so a repeated
/// CreateImage for one key finds the image instead of making a second.
pub fn image_name(os: NodeOs, key: &str) -> String {
    format!("hybrid-bake-{}-{key}", os.name())
}

/// One image to bake.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BakeTarget {
    pub key: String,
    pub os: NodeOs,
    pub line: String,
    pub base: ResolvedAmi,
    /// The pools that will use it.
    pub pools: Vec<String>,
    /// The first pool's type: what the image is built on.
    pub instance_type: String,
    /// Exactly what the builder gets as user data.
    #[serde(skip)]
    pub user_data: Vec<u8>,
    /// The builder's role, when its pool pre-pulls private ECR images.
    #[serde(skip)]
    pub profile: Option<crate::infra::desired::InstanceProfile>,
}

/// A baked image as the adapter found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BakedImage {
    pub id: String,
    pub name: String,
    pub key: String,
    pub line: String,
    /// `pending`, `available`, `failed`, …
    pub state: String,
    /// RFC 3339.
    pub created: String,
    /// The root snapshot's size.
    pub size_gb: u32,
    pub snapshots: Vec<String>,
    pub root_device: String,
}

/// A bake builder instance as the adapter found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Builder {
    pub id: String,
    pub key: String,
    pub state: String,
    /// Its `hybrid:expires` (RFC 3339): `reap` ends it after that.
    pub expires: String,
}

/// Which image a pool boots from, and why, for `plan`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolImage {
    Baked(BakedImage),
    Stock { why: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "pool {pool}: image = \"baked\", but no baked image matches key {key} (its OS, versions and base image {base}); run `hybrid bake FILE --pool {pool}` first, or set image = \"auto\""
)]
pub struct NoBakedImage {
    pub pool: String,
    pub key: String,
    pub base: String,
}

/// The image `pool` boots from, given the baked images that exist.
pub fn choose(pool: &Pool, key: &str, base: &ResolvedAmi, baked: &[BakedImage]) -> Result<PoolImage, NoBakedImage> {
    if pool.image == ImageChoice::Stock {
        return Ok(PoolImage::Stock { why: "image = \"stock\"".into() });
    }
    let newest = baked.iter().filter(|b| b.key == key && b.state == "available").max_by(|a, b| a.created.cmp(&b.created));
    match newest {
        Some(b) if b.size_gb <= pool.disk_gb => Ok(PoolImage::Baked(b.clone())),
        Some(b) if pool.image == ImageChoice::Auto => Ok(PoolImage::Stock {
            why: format!("the baked image {} needs {} GiB, the pool's disk_gb is {}", b.id, b.size_gb, pool.disk_gb),
        }),
        None if pool.image == ImageChoice::Auto => {
            Ok(PoolImage::Stock { why: format!("no baked image for key {key} yet (`hybrid bake` makes one)") })
        }
        _ => Err(NoBakedImage { pool: pool.name.clone(), key: key.to_string(), base: base.id.clone() }),
    }
}

impl PoolImage {
    /// The image to launch, given the stock one.
    pub fn ami(&self, stock: &ResolvedAmi) -> ResolvedAmi {
        match self {
            PoolImage::Baked(b) => ResolvedAmi { id: b.id.clone(), name: b.name.clone(), root_device: b.root_device.clone() },
            PoolImage::Stock { .. } => stock.clone(),
        }
    }

    /// One line for `plan`.
    pub fn describe(&self, stock: &ResolvedAmi) -> String {
        match self {
            PoolImage::Baked(b) => format!("baked {} (key {}, from {}): no downloads or reboot before joining", b.id, b.key, stock.id),
            PoolImage::Stock { why } => format!("stock {} because {why}", stock.id),
        }
    }
}

/// What `--prune` removes: baked images no live instance runs, except the
/// newest available one of each line (the one the next apply would use).
pub fn prunable<'a>(images: &'a [BakedImage], in_use: &BTreeSet<String>) -> Vec<&'a BakedImage> {
    let mut newest: BTreeMap<&str, &BakedImage> = BTreeMap::new();
    for i in images.iter().filter(|i| i.state == "available") {
        let e = newest.entry(i.line.as_str()).or_insert(i);
        if i.created > e.created {
            *e = i;
        }
    }
    // A pending image is a bake still at work (CreateImage takes minutes):
    // never pruned, whatever its age.
    images
        .iter()
        .filter(|i| i.state != "pending" && !in_use.contains(&i.id) && newest.get(i.line.as_str()).is_none_or(|n| n.id != i.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, key: &str, line: &str, created: &str, size: u32) -> BakedImage {
        BakedImage {
            id: id.into(),
            name: format!("hybrid-bake-{id}"),
            key: key.into(),
            line: line.into(),
            state: "available".into(),
            created: created.into(),
            size_gb: size,
            snapshots: vec![format!("snap-{id}")],
            root_device: "/dev/sda1".into(),
        }
    }

    fn pool(choice: ImageChoice, disk: u32) -> Pool {
        let spec = crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))).spec.unwrap();
        Pool { image: choice, disk_gb: disk, ..spec.pools[1].clone() }
    }

    fn base() -> ResolvedAmi {
        ResolvedAmi { id: "ami-base".into(), name: "base".into(), root_device: "/dev/sda1".into() }
    }

    #[test]
    fn keys_change_with_what_goes_in() {
        let os = NodeOs::Windows(crate::model::WindowsVersion::Ws2022);
        let k = bake_key(os, "ami-1", "script");
        assert_eq!(k.len(), 16);
        assert_ne!(k, bake_key(os, "ami-2", "script"));
        assert_ne!(k, bake_key(os, "ami-1", "script v2"));
        assert_ne!(k, bake_key(NodeOs::Windows(crate::model::WindowsVersion::Ws2025), "ami-1", "script"));
    }

    #[test]
    fn pools_take_the_newest_matching_image_or_say_why_not() {
        let baked = [image("ami-old", "k1", "l", "2026-11-01T00:00:00Z", 60), image("ami-new", "k1", "l", "2026-11-20T00:00:00Z", 60)];
        let Ok(PoolImage::Baked(b)) = choose(&pool(ImageChoice::Auto, 100), "k1", &base(), &baked) else { panic!() };
        assert_eq!(b.id, "ami-new");
        let Ok(PoolImage::Stock { why }) = choose(&pool(ImageChoice::Auto, 100), "k2", &base(), &baked) else { panic!() };
        assert!(why.contains("no baked image for key k2"), "{why}");
        let Ok(PoolImage::Stock { why }) = choose(&pool(ImageChoice::Auto, 40), "k1", &base(), &baked) else { panic!() };
        assert!(why.contains("needs 60 GiB"), "{why}");
        assert!(matches!(choose(&pool(ImageChoice::Stock, 100), "k1", &base(), &baked), Ok(PoolImage::Stock { .. })));
        let err = choose(&pool(ImageChoice::Baked, 100), "k2", &base(), &baked).unwrap_err();
        assert!(err.to_string().contains("hybrid bake FILE --pool win-tools"), "{err}");
    }

    #[test]
    fn pruning_keeps_images_in_use_and_the_newest_of_each_line() {
        let images = [
            image("ami-a", "k1", "win", "2026-11-01T00:00:00Z", 60),
            image("ami-b", "k2", "win", "2026-11-10T00:00:00Z", 60),
            image("ami-c", "k3", "win", "2026-11-20T00:00:00Z", 60),
            image("ami-d", "k4", "linux", "2026-11-01T00:00:00Z", 20),
        ];
        let in_use = BTreeSet::from(["ami-a".to_string()]);
        let gone: Vec<&str> = prunable(&images, &in_use).iter().map(|i| i.id.as_str()).collect();
        assert_eq!(gone, ["ami-b"]);
    }
}
