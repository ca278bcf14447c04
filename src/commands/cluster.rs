//! What plan, apply and destroy share: connecting, the cluster lock, and
//! preparing a plan (discover → resolve images → secrets → render →
//! desired → plan). The pure stages do the thinking; this file sequences
//! the I/O around them.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::adapters::aws::{AwsCloud, connect};
use crate::adapters::kube::KubeClient;
use crate::adapters::{Cloud, LockInfo};
use crate::bootstrap::{self, NodeBootstrap, Templates, templates};
use crate::cli::{AwsArgs, LockArgs};
use crate::clock::rfc3339_from_now;
use crate::desired::{AmiMap, CONTROL_PLANE, DesiredState, ami_lookup, desired_state, secrets_parameter_name};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::kubeconfig::AdminKubeconfig;
use crate::model::{ClusterSpec, NodeOs};
use crate::pki::ClusterSecrets;
use crate::plan::{self, Plan};

/// How long a lock is honoured before another run may take it over.
const LOCK_TTL: Duration = Duration::from_secs(3600);

pub async fn cloud(spec: &ClusterSpec, aws: &AwsArgs) -> AwsCloud {
    connect(&spec.region, aws.endpoint_url.as_deref()).await
}

pub fn load_templates(dir: Option<&Path>) -> Result<Templates> {
    let Some(dir) = dir else { return Ok(Templates::builtin()) };
    let mut overrides = Vec::new();
    for (name, _) in templates::BUILTIN {
        let path = dir.join(templates::file_name(name));
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
            overrides.push((name.to_string(), text));
        }
    }
    if overrides.is_empty() {
        eprintln!(
            "warning: {} holds none of hybrid's templates (e.g. {}); using the built-in ones",
            dir.display(),
            templates::file_name(templates::BUILTIN[0].0)
        );
    }
    Ok(Templates::from_sources(overrides)?)
}

/// Everything needed to show a plan and then carry it out.
pub struct Prepared {
    pub plan: Plan,
    pub desired: DesiredState,
    pub inventory: Inventory,
    pub secrets: ClusterSecrets,
    pub bootstraps: BTreeMap<String, NodeBootstrap>,
}

/// Plans against what runs. Reads only: no AWS writes.
pub async fn prepare<C: Cloud>(cloud: &C, spec: &ClusterSpec, templates: &Templates) -> Result<Prepared> {
    let inventory = cloud.discover(&spec.name).await?;
    let mut amis = AmiMap::new();
    let mut groups: Vec<(String, NodeOs, Option<&crate::model::AmiRef>)> =
        vec![(CONTROL_PLANE.to_string(), NodeOs::Linux(spec.control_plane.os), spec.control_plane.ami.as_ref())];
    groups.extend(spec.pools.iter().map(|p| (p.name.clone(), p.os, p.ami.as_ref())));
    // Pools with the same image share one lookup.
    let mut cache: BTreeMap<(NodeOs, Option<&crate::model::AmiRef>), crate::desired::ResolvedAmi> = BTreeMap::new();
    for (group, os, over) in groups {
        let ami = match cache.get(&(os, over)) {
            Some(a) => a.clone(),
            None => {
                let a = cloud.resolve_ami(&ami_lookup(os), over).await.map_err(|e| Error::Ami { group: group.clone(), source: e })?;
                cache.insert((os, over), a.clone());
                a
            }
        };
        amis.insert(group, ami);
    }
    let secrets = match cloud.get_parameter(&secrets_parameter_name(&spec.name)).await? {
        Some(stored) => ClusterSecrets::from_stored(&stored)
            .map_err(|source| Error::Secrets { dir: secrets_parameter_name(&spec.name).into(), source })?,
        None => ClusterSecrets::generate(&mut rand::rng(), SystemTime::now())
            .map_err(|source| Error::Secrets { dir: "(new)".into(), source })?,
    };
    let bootstraps = bootstrap::render_cluster(spec, &secrets, templates)?.into_iter().map(|b| (b.group.clone(), b)).collect();
    let desired = desired_state(spec, &amis, &bootstrap::fingerprints(spec, templates)?);
    let plan = plan::plan(&desired, &inventory, false)?;
    Ok(Prepared { plan, desired, inventory, secrets, bootstraps })
}

/// A plan against nothing, with no AWS calls and no credentials.
pub fn prepare_offline(spec: &ClusterSpec, templates: &Templates) -> Result<Plan> {
    let desired = desired_state(spec, &AmiMap::new(), &bootstrap::fingerprints(spec, templates)?);
    Ok(plan::plan(&desired, &Inventory::default(), true)?)
}

/// Where the API server is reached: `--api-server`, or the control plane's
/// public address.
pub fn api_server_url(spec: &ClusterSpec, inventory: &Inventory, api_server: Option<&str>) -> Result<String> {
    if let Some(url) = api_server {
        return Ok(url.to_string());
    }
    let public = inventory.instances.iter().find(|i| i.slot == CONTROL_PLANE).and_then(|i| i.public_ip.clone());
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
    Ok(AdminKubeconfig { cluster: &spec.name, server, tls_server_name, ca_cert_pem: &secrets.ca_cert_pem, client: &cert }.to_yaml())
}

pub async fn kube_client(
    spec: &ClusterSpec,
    inventory: &Inventory,
    secrets: &ClusterSecrets,
    api_server: Option<&str>,
) -> Result<KubeClient> {
    let yaml = admin_kubeconfig(spec, secrets, &api_server_url(spec, inventory, api_server)?)?;
    KubeClient::from_kubeconfig_yaml(&yaml).await.map_err(Error::KubeConfig)
}

/// The cluster's stored secrets; an error when apply has not stored them yet.
pub async fn stored_secrets<C: Cloud>(cloud: &C, cluster: &str) -> Result<ClusterSecrets> {
    let name = secrets_parameter_name(cluster);
    let stored = cloud.get_parameter(&name).await?.ok_or_else(|| Error::NoSecrets(cluster.to_string()))?;
    ClusterSecrets::from_stored(&stored).map_err(|source| Error::Secrets { dir: name.into(), source })
}

/// Asks "yes" on a terminal; refuses without `--yes` otherwise.
pub fn confirm(question: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::NotConfirmed("standard input is not a terminal; pass --yes to proceed without asking".into()));
    }
    eprint!("\n{question}\n  Only 'yes' will be accepted: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).ok();
    if answer.trim() == "yes" { Ok(()) } else { Err(Error::NotConfirmed("cancelled".into())) }
}

fn this_owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown-user".into());
    format!("{user}@{host} pid {}", std::process::id())
}

/// True when the lock's owner is a process on this host that no longer runs.
fn owner_is_dead_here(owner: &str) -> bool {
    let mine = this_owner();
    let host_of = |o: &str| o.split(" pid ").next().and_then(|s| s.split('@').nth(1)).map(str::to_string);
    let pid = owner.rsplit(" pid ").next().and_then(|p| p.parse::<u32>().ok());
    match (host_of(owner), host_of(&mine), pid) {
        (Some(a), Some(b), Some(pid)) if a == b => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

fn expired(lock: &LockInfo) -> bool {
    OffsetDateTime::parse(&lock.expires, &Rfc3339).is_ok_and(|t| t < OffsetDateTime::now_utc())
}

/// Takes the cluster lock: waits up to `--lock-timeout`, takes over a lock
/// whose owner is gone (expired, or a dead process on this host), and with
/// `--break-lock` removes any lock.
pub async fn lock<C: Cloud>(cloud: &C, cluster: &str, args: &LockArgs) -> Result<()> {
    if args.break_lock {
        cloud.unlock(cluster).await?;
        eprintln!("hybrid: removed the lock of cluster {cluster}");
    }
    let start = std::time::Instant::now();
    loop {
        let mine = LockInfo { owner: this_owner(), created: rfc3339_from_now(Duration::ZERO), expires: rfc3339_from_now(LOCK_TTL) };
        let Some(held) = cloud.try_lock(cluster, &mine).await? else { return Ok(()) };
        if expired(&held) || owner_is_dead_here(&held.owner) {
            eprintln!("hybrid: taking over the stale lock of {} (created {})", held.owner, held.created);
            cloud.unlock(cluster).await?;
            continue;
        }
        if start.elapsed() >= Duration::from_secs(args.lock_timeout) {
            return Err(Error::Locked { cluster: cluster.to_string(), owner: held.owner, created: held.created, expires: held.expires });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

pub fn expiry(spec: &ClusterSpec, inventory: &Inventory) -> Option<String> {
    inventory.expires.clone().or_else(|| spec.ttl.map(|t| rfc3339_from_now(Duration::from_secs(t.minutes * 60))))
}

pub fn print_api_stats<C: Cloud>(cloud: &C) {
    let counts = cloud.call_counts();
    let total: u64 = counts.values().sum();
    eprintln!("AWS API calls: {total}");
    for (op, n) in counts {
        eprintln!("  {op:<32} {n}");
    }
}

/// A progress line on stderr with a timestamp.
pub fn progress(message: &str) {
    let t = OffsetDateTime::now_utc();
    eprintln!("[{:02}:{:02}:{:02}] {message}", t.hour(), t.minute(), t.second());
}
