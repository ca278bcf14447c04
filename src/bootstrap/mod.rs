//! Bootstrap rendering: for every node, exactly the bytes EC2 gets as user
//! data. Linux nodes get cloud-init (`#cloud-config`), Windows nodes a
//! `<powershell>` script with `<persist>true</persist>` whose stages survive
//! the reboot the Containers feature needs.
//!
//! Pure: templates come in as text (`Templates`), secrets as a value, and
//! the result is data. Rendering happens in two steps: the inner files (the
//! kubeadm config, the CNI manifest, the shell script) are rendered first,
//! then embedded into the outer user data through a quoting filter, so no
//! file is ever spliced into another as raw text. All nodes of one pool get
//! identical user data; the node name comes from instance metadata at boot.

mod context;
pub mod critical_path;
mod error;
pub mod filters;
pub mod pki;
pub mod powershell;
pub mod templates;

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine as _;
use flate2::Compression;
use flate2::write::GzEncoder;

pub use error::{BootstrapError, USER_DATA_LIMIT};
pub use templates::Templates;

use crate::bootstrap::pki::ClusterSecrets;
use crate::model::net::Ipv4Cidr;
use crate::model::{ClusterSpec, ControlPlane, Network, NodeOs, Pool, Vpc};
use crate::versions::{NodeKind, NodeVersions};

/// What a node (or every node of a pool) boots with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeBootstrap {
    /// `control-plane` or the pool name.
    pub group: String,
    pub os: NodeOs,
    /// Exactly what EC2 receives (raw, before base64); gzip for large cloud-init.
    pub user_data: Vec<u8>,
    pub compressed: bool,
    /// The readable pieces inside the user data, for `hybrid render`:
    /// (file name, content), e.g. `kubeadm.yaml`, `bootstrap.sh`.
    pub parts: Vec<(String, String)>,
}

/// The group name of the control plane's bootstrap (no pool may take it:
/// `config::rules::RESERVED_POOL_NAMES`).
pub const CONTROL_PLANE: &str = "control-plane";

impl NodeBootstrap {
    pub fn is_control_plane(&self) -> bool {
        self.group == CONTROL_PLANE
    }
}

/// Renders the bootstraps of one cluster file. The version table is
/// consulted once per kind of node when the renderer is made
/// (`NodeVersions`); every bootstrap a command needs (the nodes', their
/// fingerprints, the bake builders') renders from that.
pub struct Renderer<'a> {
    spec: &'a ClusterSpec,
    templates: &'a Templates,
    resolved: BTreeMap<NodeKind, NodeVersions>,
}

impl<'a> Renderer<'a> {
    pub fn new(spec: &'a ClusterSpec, templates: &'a Templates) -> Self {
        let kinds = std::iter::once(NodeKind::ControlPlane).chain(spec.pools.iter().map(NodeKind::of_pool));
        let resolved = kinds.map(|k| (k, NodeVersions::of(spec, k))).collect();
        Self { spec, templates, resolved }
    }

    pub fn spec(&self) -> &'a ClusterSpec {
        self.spec
    }

    /// What nodes of `kind` run; resolved now for a pool not in the file
    /// (tests render variants of a file's pools).
    fn versions(&self, kind: NodeKind) -> std::borrow::Cow<'_, NodeVersions> {
        match self.resolved.get(&kind) {
            Some(v) => std::borrow::Cow::Borrowed(v),
            None => std::borrow::Cow::Owned(NodeVersions::of(self.spec, kind)),
        }
    }

    /// The control plane and one bootstrap per pool.
    pub fn cluster(&self, secrets: &ClusterSecrets) -> Result<Vec<NodeBootstrap>, BootstrapError> {
        let mut out = vec![self.control_plane(secrets)?];
        for pool in &self.spec.pools {
            out.push(self.pool(pool, secrets)?);
        }
        Ok(out)
    }

    pub fn control_plane(&self, secrets: &ClusterSecrets) -> Result<NodeBootstrap, BootstrapError> {
        let spec = self.spec;
        let ctx = context::linux(spec, None, secrets, &self.versions(NodeKind::ControlPlane))?;
        let cni = format!("cni-{}.yaml", spec.cni.plugin.name());
        linux_bootstrap(self.templates, &ctx, "linux/kubeadm-init.yaml", Some(&cni), CONTROL_PLANE, NodeOs::Linux(spec.control_plane.os))
    }

    /// What every node of `pool` boots with.
    pub fn pool(&self, pool: &Pool, secrets: &ClusterSecrets) -> Result<NodeBootstrap, BootstrapError> {
        render_pool_as(self.spec, pool, secrets, self.templates, &self.versions(NodeKind::of_pool(pool)), "node")
    }

    /// The user data of `hybrid bake`'s builder for `pool`: the same script
    /// in `bake` mode, which runs every stage that does not depend on the
    /// cluster (and pre-pulls the images), then shuts the builder down. It
    /// is rendered with stand-in secrets for a stand-in cluster
    /// (`bake_cluster`), so a baked image carries nothing secret, and its
    /// script (which the bake key hashes) is the same for every cluster and
    /// pool that need the same image.
    pub fn bake(&self, pool: &Pool) -> Result<NodeBootstrap, BootstrapError> {
        let (cluster, generic) = bake_cluster(self.spec, pool);
        let versions = self.versions(NodeKind::of_pool(pool));
        render_pool_as(&cluster, &generic, &fingerprint_secrets(), self.templates, &versions, "bake")
    }

    /// Per pool, a digest of its bootstrap rendered with
    /// `fingerprint_secrets` and without the pool's labels and taints:
    /// `apply` reconciles those through the API, so changing them must not
    /// replace a node. (The control plane has no fingerprint: see
    /// `infra::desired::control_plane_hash`.)
    pub fn fingerprints(&self) -> Result<BTreeMap<String, String>, BootstrapError> {
        let secrets = fingerprint_secrets();
        let mut out = BTreeMap::new();
        for pool in &self.spec.pools {
            let bare = Pool { labels: Default::default(), taints: Vec::new(), ..pool.clone() };
            let b = self.pool(&bare, &secrets)?;
            let text: String = b.parts.iter().flat_map(|(n, c)| [n.as_str(), c.as_str()]).collect();
            out.insert(b.group, crate::infra::desired::fingerprint(text.as_bytes()));
        }
        Ok(out)
    }
}

/// What an image is baked for: the OS, versions, CNI and pre-pulled images
/// of `spec` and `pool`, with everything that belongs to one cluster or pool
/// (names, addresses, tags, max pods, labels, the other pools) replaced by
/// fixed stand-ins. The stages a bake runs read none of those (a test in
/// tests/it/bake.rs holds the templates to that); the node's own user data
/// supplies them at join.
fn bake_cluster(spec: &ClusterSpec, pool: &Pool) -> (ClusterSpec, Pool) {
    let cidr = |s: &str| Ipv4Cidr::parse(s).expect("a valid stand-in CIDR");
    let generic = Pool {
        name: "bake".into(),
        instance_type: String::new(),
        count: 1,
        ami: None,
        labels: Default::default(),
        taints: Vec::new(),
        max_pods: 110,
        replace_batch: 1,
        ..pool.clone()
    };
    let cluster = ClusterSpec {
        name: "bake".into(),
        ttl: None,
        ssh_key_name: None,
        tags: Default::default(),
        network: Network {
            vpc: Vpc::Create { cidr: cidr("10.0.0.0/16"), subnet_cidr: cidr("10.0.0.0/24") },
            pod_cidr: cidr("192.168.0.0/16"),
            service_cidr: cidr("10.96.0.0/12"),
            admin_cidrs: Vec::new(),
            player_cidrs: Vec::new(),
        },
        control_plane: ControlPlane { private_ip: None, ami: None, ..spec.control_plane.clone() },
        pools: vec![generic.clone()],
        ..spec.clone()
    };
    (cluster, generic)
}

fn render_pool_as(
    spec: &ClusterSpec,
    pool: &Pool,
    secrets: &ClusterSecrets,
    templates: &Templates,
    versions: &NodeVersions,
    mode: &'static str,
) -> Result<NodeBootstrap, BootstrapError> {
    match pool.os {
        NodeOs::Linux(_) => {
            let mut ctx = context::linux(spec, Some(pool), secrets, versions)?;
            ctx.mode = mode;
            linux_bootstrap(templates, &ctx, "linux/kubeadm-join.yaml", None, &pool.name, pool.os)
        }
        NodeOs::Windows(_) => {
            let mut ctx = context::windows(spec, pool, secrets, versions)?;
            ctx.mode = mode;
            let kubeadm = templates.render("windows/kubeadm-join.yaml", &ctx)?;
            let containerd = templates.render("windows/containerd.toml", &ctx)?;
            let script = templates.render(
                "windows/bootstrap.ps1",
                &context::WindowsScript { base: &ctx, kubeadm_config: &kubeadm, containerd_config: &containerd },
            )?;
            // EC2Launch cuts the script at these tags before PowerShell parses
            // it, so no quoting can protect a value containing one.
            let lower = script.to_ascii_lowercase();
            if let Some(tag) =
                ["</powershell", "<powershell", "<persist", "</persist", "<script", "</script"].into_iter().find(|t| lower.contains(t))
            {
                return Err(BootstrapError::AgentTagInScript { pool: pool.name.clone(), tag: tag.to_string() });
            }
            // The node gets the script without its comment lines (`powershell`);
            // `parts` keeps the commented one for readers.
            let shipped = powershell::without_comment_lines(&script);
            let packed = base64::engine::general_purpose::STANDARD.encode(gzip(shipped.as_bytes()));
            let loader = templates.render("windows/loader.ps1", &serde_json::json!({ "script_gzip_base64": packed }))?;
            let user_data = format!("<powershell>\n{loader}</powershell>\n<persist>true</persist>\n");
            if user_data.len() > USER_DATA_LIMIT {
                return Err(BootstrapError::TooLarge {
                    node: format!("pool {}", pool.name),
                    size: user_data.len(),
                    how: "",
                    hint: " (the Windows script is already gzip-compressed)",
                });
            }
            Ok(NodeBootstrap {
                group: pool.name.clone(),
                os: pool.os,
                user_data: user_data.into_bytes(),
                compressed: false,
                parts: vec![
                    ("kubeadm.yaml".into(), kubeadm),
                    ("containerd.toml".into(), containerd),
                    ("bootstrap.ps1".into(), script),
                    ("loader.ps1".into(), loader),
                ],
            })
        }
    }
}

/// A Linux node's cloud-config: its kubeadm config (`kubeadm`: init or
/// join), containerd's config, the script, the secrets fetcher and, on the
/// control plane, the CNI manifest (`cni`: its file name under `linux/`),
/// each rendered on its own and then embedded.
fn linux_bootstrap(
    templates: &Templates,
    ctx: &context::Linux,
    kubeadm: &str,
    cni: Option<&str>,
    group: &str,
    os: NodeOs,
) -> Result<NodeBootstrap, BootstrapError> {
    let kubeadm = templates.render(kubeadm, ctx)?;
    let cni = cni.map(|name| templates.render(&format!("linux/{name}"), ctx).map(|text| (name.to_string(), text))).transpose()?;
    let containerd = templates.render("linux/containerd.toml", ctx)?;
    let script = templates.render("linux/bootstrap.sh", ctx)?;
    let fetch = templates.render("linux/fetch-secrets.py", ctx)?;
    let user_data = templates.render(
        "linux/cloud-config.yaml",
        &context::CloudConfig {
            base: ctx,
            kubeadm_config: &kubeadm,
            containerd_config: &containerd,
            cni_manifest: cni.as_ref().map(|(_, text)| text.as_str()),
            bootstrap_script: &script,
            fetch_secrets: &fetch,
        },
    )?;
    let mut parts = vec![("kubeadm.yaml".to_string(), kubeadm)];
    parts.extend(cni);
    parts.extend([("containerd.toml".into(), containerd), ("bootstrap.sh".into(), script), ("fetch-secrets.py".into(), fetch)]);
    linux_result(group, os, user_data, parts)
}

/// cloud-init accepts gzip user data as is, so a config over the limit is
/// compressed before it is declared too large.
fn linux_result(group: &str, os: NodeOs, user_data: String, parts: Vec<(String, String)>) -> Result<NodeBootstrap, BootstrapError> {
    let (bytes, compressed) =
        if user_data.len() <= USER_DATA_LIMIT { (user_data.clone().into_bytes(), false) } else { (gzip(user_data.as_bytes()), true) };
    if bytes.len() > USER_DATA_LIMIT {
        return Err(BootstrapError::TooLarge {
            node: if group == CONTROL_PLANE { "the control plane".into() } else { format!("pool {group}") },
            size: bytes.len(),
            how: " after gzip",
            hint: "",
        });
    }
    let mut parts = parts;
    parts.insert(0, ("cloud-config.yaml".into(), user_data));
    Ok(NodeBootstrap { group: group.to_string(), os, user_data: bytes, compressed, parts })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    // mtime 0 and a fixed level keep the output byte-identical across runs.
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    enc.write_all(data).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// Stand-in secrets for fingerprinting (see `fingerprint/README.md`).
pub fn fingerprint_secrets() -> ClusterSecrets {
    ClusterSecrets::from_parts(include_str!("fingerprint/ca.crt"), include_str!("fingerprint/ca.key"), include_str!("fingerprint/token"))
        .expect("the built-in fingerprint secrets are valid")
}
