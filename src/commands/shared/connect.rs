//! Reaching AWS and the Kubernetes API for a cluster: the AWS adapter for
//! the file's region (or the region chain's, for commands without a
//! file), as the global `--profile` and `--region` say, the stored
//! secrets, and a Kubernetes client whose admin certificate is minted from
//! the cluster CA on the spot.

use std::sync::OnceLock;
use std::time::SystemTime;

use super::args::{AwsArgs, ClusterRef};
use super::files::read_with_sets;
use super::terminal::Ui;
use crate::adapters::Cloud;
use crate::adapters::aws::{AwsCloud, Target, connect, default_region};
use crate::adapters::kube::KubeClient;
use crate::bootstrap::pki::{BootstrapToken, ClusterSecrets};
use crate::cluster::kubeconfig::{Endpoint, User, kubeconfig, to_yaml};
use crate::config::problems::Renderer;
use crate::error::{Error, Result};
use crate::infra::desired::{CONTROL_PLANE, join_token_parameter_name, secrets_parameter_name};
use crate::infra::inventory::Inventory;
use crate::model::ClusterSpec;

/// The global `--profile`, `--region` (repeatable) and `--parallelism` of this run.
#[derive(Clone, Debug, Default)]
pub struct Global {
    pub profile: Option<String>,
    pub regions: Vec<String>,
    pub parallelism: usize,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// Set once, before any command runs.
pub fn set_global(global: Global) {
    let _ = GLOBAL.set(global);
}

pub fn global() -> Global {
    GLOBAL.get().cloned().unwrap_or_default()
}

fn target(region: &str, aws: &AwsArgs) -> Target {
    let global = global();
    Target { region: region.to_string(), profile: global.profile, endpoint: aws.endpoint_url.clone(), parallelism: global.parallelism }
}

/// AWS for a cluster file: its region (a `--region` that disagrees is an error).
pub async fn cloud(spec: &ClusterSpec, aws: &AwsArgs) -> Result<AwsCloud> {
    let regions = global().regions;
    if !regions.is_empty() && regions != [spec.region.clone()] {
        return Err(Error::Failed(format!(
            "--region {} disagrees with the file's region {}; the file decides where its cluster is",
            regions.join(", "),
            spec.region
        )));
    }
    Ok(connect(&target(&spec.region, aws)).await)
}

/// The regions a command without a file works in: `--region` (repeatable),
/// else the AWS CLI's region chain (AWS_REGION, AWS_DEFAULT_REGION, the
/// profile's region).
pub async fn regions() -> Result<Vec<String>> {
    let g = global();
    if !g.regions.is_empty() {
        return Ok(g.regions);
    }
    match default_region(g.profile.as_deref()).await {
        Some(r) => Ok(vec![r]),
        None => Err(Error::Usage("no region: pass --region REGION, set AWS_REGION, or give the profile a region".into())),
    }
}

/// The cluster's name and region from `--name` (with one `--region`) or
/// its file, however invalid the rest of the file is: `purpose` (e.g.
/// "destroy") needs nothing else, and says so under the file's problems.
pub async fn cluster_identity(ui: &Ui, cluster: &ClusterRef, purpose: &str) -> Result<(String, String)> {
    if let Some(name) = &cluster.name {
        let regions = regions().await?;
        let [region] = regions.as_slice() else {
            return Err(Error::Usage(format!("--name {name}: give one --region, not {}", regions.len())));
        };
        return Ok((name.clone(), region.clone()));
    }
    let path = cluster.file.as_ref().ok_or_else(|| Error::Usage("name the cluster's file, or pass --name and --region".into()))?;
    let (source, origins) = read_with_sets(path, &cluster.set)?;
    let loaded = crate::config::load(&source);
    if let Some(spec) = loaded.spec {
        return Ok((spec.name, spec.region));
    }
    let (name, region) = crate::config::identity(&source)
        .ok_or_else(|| Error::Failed(format!("{}: no readable [cluster] name and region; pass --name and --region", path.display())))?;
    let renderer = Renderer::new(ui.color);
    for d in &loaded.diagnostics {
        eprintln!("{}", renderer.render_in(&path.display().to_string(), &source, &origins, d));
    }
    eprintln!(
        "note: {} does not validate any more (above); {purpose} needs only its cluster's name ({name}) and region ({region}), so it goes on",
        path.display()
    );
    Ok((name, region))
}

/// AWS in one region of `regions`.
pub async fn cloud_in(region: &str, aws: &AwsArgs) -> AwsCloud {
    connect(&target(region, aws)).await
}

/// True when AWS calls go to an emulator rather than AWS.
pub fn aws_is_emulated(aws: &AwsArgs) -> bool {
    aws.endpoint_url.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some_and(|v| !v.is_empty())
}

/// The environment variable through which tests run the path real AWS
/// takes (the control plane's public address, its certificate checked as
/// the private one) against an emulator: `HOST:PORT:127.0.0.1:PORT2`, as
/// curl's `--connect-to`, sends connections for HOST:PORT to the loopback
/// emulator. Only a loopback target is honoured: an address an emulator
/// invents belongs to a stranger and is never connected to.
pub const CONNECT_TO_VAR: &str = "HYBRID_TEST_CONNECT_TO";

/// Where `CONNECT_TO_VAR` sends connections meant for `host:port`, if it
/// names that address and a loopback target.
fn connect_to(host: &str, port: u16) -> Option<String> {
    let rule = std::env::var(CONNECT_TO_VAR).ok()?;
    let mut parts = rule.rsplitn(3, ':');
    let (to_port, to_host, from) = (parts.next()?, parts.next()?, parts.next()?);
    let loopback = to_host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
    (from == format!("{host}:{port}") && loopback && to_port.parse::<u16>().is_ok()).then(|| format!("{to_host}:{to_port}"))
}

/// Whether the cluster side cannot be reached by design: AWS is an
/// emulator, no `--api-server` was given, and no test mapping is set.
pub fn cluster_out_of_reach(aws: &AwsArgs, api_server: Option<&str>) -> bool {
    aws_is_emulated(aws) && api_server.is_none() && std::env::var_os(CONNECT_TO_VAR).is_none()
}

/// Where the API server is reached: `--api-server`, or the control plane's
/// public address — never an address an emulator made up (unless a test
/// maps it to a loopback emulator, see `CONNECT_TO_VAR`).
pub fn api_server_url(spec: &ClusterSpec, inventory: &Inventory, aws: &AwsArgs, api_server: Option<&str>) -> Result<String> {
    if let Some(url) = api_server {
        return Ok(url.to_string());
    }
    let public = inventory.instances.iter().find(|i| i.slot == CONTROL_PLANE).and_then(|i| i.public_ip.clone());
    if aws_is_emulated(aws) && public.as_deref().and_then(|ip| connect_to(ip, 6443)).is_none() {
        return Err(Error::EmulatedAws);
    }
    Ok(format!("https://{}:6443", public.ok_or_else(|| Error::NoApiEndpoint(spec.name.clone()))?))
}

/// A kubeconfig for a freshly minted admin at `server`. Over https the
/// server certificate is checked against the private address kubeadm
/// issued it for.
pub fn admin_kubeconfig(spec: &ClusterSpec, secrets: &ClusterSecrets, server: &str) -> Result<String> {
    let private_ip = spec.api_server_ip().map(|ip| ip.to_string());
    let tls_server_name = if server.starts_with("https://") { private_ip.as_deref() } else { None };
    let cert = secrets
        .mint_admin_cert("hybrid-admin", &mut rand::rng(), SystemTime::now())
        .map_err(|source| Error::Secrets { dir: "(admin certificate)".into(), source })?;
    let endpoint = Endpoint { cluster: &spec.name, server, tls_server_name, ca_cert_pem: &secrets.ca_cert_pem };
    Ok(to_yaml(&kubeconfig(&endpoint, User::Certificate(&cert))))
}

pub async fn kube_client(
    spec: &ClusterSpec,
    inventory: &Inventory,
    secrets: &ClusterSecrets,
    aws: &AwsArgs,
    api_server: Option<&str>,
) -> Result<KubeClient> {
    let mut server = api_server_url(spec, inventory, aws, api_server)?;
    // The test mapping changes where the connection goes, not what is
    // checked: the certificate is still verified as the private address's.
    if api_server.is_none()
        && let Some((host, port)) = server.trim_start_matches("https://").rsplit_once(':')
        && let Some(to) = port.parse().ok().and_then(|port| connect_to(host, port))
    {
        server = format!("https://{to}");
    }
    let yaml = admin_kubeconfig(spec, secrets, &server)?;
    KubeClient::from_kubeconfig_yaml(&yaml).await.map_err(Error::KubeConfig)
}

/// The token nodes join with now: what the join token parameter holds, or
/// for a cluster whose nodes were launched before hybrid stored one there,
/// the init token their user data carries.
pub async fn join_token<C: Cloud>(cloud: &C, cluster: &str, secrets: &ClusterSecrets) -> Result<BootstrapToken> {
    let name = join_token_parameter_name(cluster);
    match cloud.get_parameter(&name).await? {
        Some(stored) => BootstrapToken::parse(stored.trim()).map_err(|source| Error::Secrets { dir: name.into(), source }),
        None => Ok(secrets.token.clone()),
    }
}

/// The cluster's stored secrets; an error when apply has not stored them yet.
pub async fn stored_secrets<C: Cloud>(cloud: &C, cluster: &str) -> Result<ClusterSecrets> {
    let name = secrets_parameter_name(cluster);
    let stored = cloud.get_parameter(&name).await?.ok_or_else(|| Error::NoSecrets(cluster.to_string()))?;
    ClusterSecrets::from_stored(&stored).map_err(|source| Error::Secrets { dir: name.into(), source })
}
