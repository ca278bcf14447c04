//! Carries out a plan through a `Cloud`, in dependency order: network,
//! secrets, instance removals, then instance launches (pools in parallel).
//!
//! Every resource is tagged in the call that creates it, so an apply killed
//! at any moment leaves nothing untagged: the next apply discovers what
//! exists and continues. A failure in one pool does not stop the others; the
//! error names each pool that failed.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::adapters::{Cloud, CloudError, LaunchRequest, Launched};
use crate::bootstrap::NodeBootstrap;
use crate::bootstrap::pki::{BootstrapToken, ClusterSecrets};
use crate::infra::desired::{
    DesiredInstance, DesiredState, ParameterKind, SgRule, TAG_CLUSTER, TAG_CNI, TAG_CREATE_TOKEN, TAG_EXPIRES, TAG_KUBERNETES, TAG_OWNER,
    TAG_PLAYERS, TAG_POOL, TAG_SLOT, TAG_SPEC_HASH, join_token_parameter_name,
};
use crate::infra::inventory::Inventory;
use crate::infra::lock::{Held, LockError, ensure_held};
use crate::infra::plan::{Action, Change, Plan, Resource};
use crate::progress::{Event, Progress};
use crate::retry::{Backoff, Retry};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error("{}", failures.iter().map(|(pool, e)| format!("pool {pool}: {e}")).collect::<Vec<_>>().join("\n"))]
    Pools { failures: Vec<(String, CloudError)> },
    #[error("{what} did not finish within {seconds}s: {detail}")]
    Timeout { what: &'static str, seconds: u64, detail: String },
    #[error("no {0} to use: it was neither found nor planned; run `hybrid plan` to see why")]
    Missing(&'static str),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0}\nnothing was terminated; fix the cause, or pass --ec2-only to remove the instances without draining")]
    Drain(String),
    #[error(
        "pool {pool}: the nodes of replacement batch {batch}/{batches} did not become Ready: {detail}\nthe pool's later batches were not touched; fix the cause and run apply again to continue"
    )]
    Rollout { pool: String, batch: usize, batches: usize, detail: String },
    #[error("could not delete:\n{}\nrun the command again to retry; everything left is still tagged", .0.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n"))]
    Leftovers(Vec<String>),
}

/// What the executor needs besides the plan.
pub struct Context<'a> {
    pub desired: &'a DesiredState,
    pub inventory: &'a Inventory,
    pub secrets: &'a ClusterSecrets,
    /// The token nodes this run launches join with: stored in the join
    /// token parameter before the first launch.
    pub join_token: &'a BootstrapToken,
    /// User data per group (`control-plane` or pool name).
    pub bootstraps: &'a BTreeMap<String, NodeBootstrap>,
    pub key_name: Option<&'a str>,
    /// RFC 3339 expiry for the `hybrid:expires` tag.
    pub expires: Option<String>,
    /// The caller's ARN for the `hybrid:owner` tag of what this run creates.
    pub owner: Option<String>,
    /// Distinguishes this run's idempotency tokens from earlier runs'.
    pub run_id: String,
    /// How long to wait for instances to terminate.
    pub terminate_timeout: Duration,
    /// The cluster lock this run holds: checked before each rolling batch,
    /// so a run whose lock was taken over stops before draining another node.
    pub lock: Option<&'a Held>,
}

/// The Kubernetes side of removing and replacing nodes: the seam through
/// which the command hands in `cluster::converge::KubeNodes`, so this
/// module never depends on it. `NoNodes` skips both (`--ec2-only`, or no
/// API to talk to).
#[allow(async_fn_in_trait)]
pub trait Nodes {
    /// Cordons and drains `node` (a Node name), then removes the Node object.
    async fn drain(&self, node: &str, progress: &impl Progress) -> Result<(), String>;
    /// Waits until every node in `launched` is Ready (a rolling replacement
    /// starts its next batch only then).
    async fn wait_ready<C: Cloud>(&self, cloud: &C, launched: &[NewNode], progress: &impl Progress) -> Result<(), String>;
}

/// A node launched by this apply, as the Kubernetes side will know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNode {
    pub slot: String,
    pub group: String,
    pub instance_id: String,
    /// The EC2 private DNS name, which is the Node's name.
    pub node_name: String,
}

/// No Kubernetes side: instances are terminated without draining and
/// replacements are not waited for.
pub struct NoNodes;

impl Nodes for NoNodes {
    async fn drain(&self, _: &str, _: &impl Progress) -> Result<(), String> {
        Ok(())
    }
    async fn wait_ready<C: Cloud>(&self, _: &C, _: &[NewNode], _: &impl Progress) -> Result<(), String> {
        Ok(())
    }
}

fn base_tags(ctx: &Context<'_>) -> BTreeMap<String, String> {
    let mut tags = ctx.desired.tags.clone();
    tags.insert(TAG_CLUSTER.into(), ctx.desired.cluster.clone());
    if let Some(e) = &ctx.expires {
        tags.insert(TAG_EXPIRES.into(), e.clone());
    }
    if let Some(o) = ctx.owner.as_ref().filter(|o| !o.is_empty()) {
        tags.insert(TAG_OWNER.into(), o.clone());
    }
    tags
}

fn named(mut tags: BTreeMap<String, String>, name: String) -> BTreeMap<String, String> {
    tags.insert("Name".into(), name);
    tags
}

/// `nodes`: nodes are drained (cordoned, evicted, Node deleted) before
/// their instances are terminated, and rolling replacements wait for them.
pub async fn apply<C: Cloud>(
    cloud: &C,
    plan: &Plan,
    ctx: &Context<'_>,
    nodes: &impl Nodes,
    progress: &impl Progress,
) -> Result<(), ExecError> {
    let tags = base_tags(ctx);
    // The network, the instance profiles and the parameters wait for
    // nothing of each other, so they are made at once: from far away the
    // whole set costs the network's chain of round trips, not the sum.
    let (network, (), ()) = tokio::try_join!(
        build_network(cloud, plan, ctx, &tags, progress),
        ensure_profiles(cloud, plan, ctx, &tags, progress),
        store_parameters(cloud, plan, ctx, &tags, progress),
    )?;
    let Network { subnet: subnet_id, security_group: sg_id, players: players_sg } = network;
    // Instances that stay join or leave their pool's players' group (new
    // ones get their groups at launch).
    for change in plan.changes.iter().filter(|c| c.resource.kind() == "security_groups") {
        let (Resource::Membership { players }, Some(id)) = (&change.resource, change.id.as_deref()) else { continue };
        let nodes = sg_id.clone().ok_or(ExecError::Missing("security group"))?;
        let mut groups = vec![nodes];
        if let Some(pool) = players {
            groups.push(players_sg.get(pool).cloned().ok_or(ExecError::Missing("players' security group"))?);
        }
        cloud.set_instance_groups(id, &groups).await?;
        progress.line(&format!("{} ({id}): security groups set ({})", change.name, change.reason.as_deref().unwrap_or_default()));
    }

    // Stopped instances start again.
    let stopped: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.resource, Resource::Instance { .. }) && c.action == Action::Update)
        .filter_map(|c| c.id.clone())
        .collect();
    if !stopped.is_empty() {
        cloud.start_instances(&stopped).await?;
        progress.line(&format!("started {} stopped instance(s): {}", stopped.len(), stopped.join(", ")));
    }

    // Removals first: a recreated control plane must free its fixed address
    // before its successor can take it. Rolling replacements come last.
    let instance_changes: Vec<&Change> = plan.changes.iter().filter(|c| matches!(c.resource, Resource::Instance { .. })).collect();
    let doomed: Vec<&Change> = instance_changes
        .iter()
        .copied()
        .filter(|c| matches!(c.action, Action::Delete | Action::Recreate) || (c.action == Action::Replace && !plan.rolls(c)))
        .collect();
    remove_instances(cloud, ctx, &doomed, nodes, progress).await?;

    let mut by_pool: BTreeMap<&str, Vec<&DesiredInstance>> = BTreeMap::new();
    for change in instance_changes.iter().filter(|c| !plan.rolls(c)) {
        if let (Resource::Instance { desired: Some(d) }, Action::Create | Action::Replace | Action::Recreate) =
            (&change.resource, change.action)
        {
            by_pool.entry(d.group.as_str()).or_default().push(d);
        }
    }
    let mut rolling: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
    for change in instance_changes.iter().copied().filter(|c| plan.rolls(c)) {
        if let Resource::Instance { desired: Some(d) } = &change.resource {
            rolling.entry(d.group.as_str()).or_default().push(change);
        }
    }
    if by_pool.is_empty() && rolling.is_empty() {
        return remove_network(cloud, plan, progress).await;
    }
    let subnet = subnet_id.ok_or(ExecError::Missing("subnet"))?;
    let sg = sg_id.ok_or(ExecError::Missing("security group"))?;
    // Every new instance at once, as many at a time as calls may be in
    // flight (`Cloud::parallelism`): a launch
    // waits for no other (each carries its own idempotency token), and one
    // pool's failure stops neither another pool nor its own other slots.
    let launched_so_far: BTreeMap<&str, std::sync::atomic::AtomicUsize> = by_pool.keys().map(|p| (*p, Default::default())).collect();
    let launches = by_pool.iter().flat_map(|(pool, slots)| slots.iter().map(move |d| (*pool, slots.len(), d))).map(|(pool, total, d)| {
        let (subnet, sg, tags, players_sg, so_far) = (&subnet, &sg, &tags, &players_sg, &launched_so_far);
        async move {
            let groups = node_groups(sg, players_sg, &d.group);
            let launched = launch(cloud, ctx, d, subnet, &groups, tags, progress).await.map_err(|e| (pool.to_string(), e))?;
            let n = so_far[pool].fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress.event(&Event::Launched { pool, slot: &d.slot, instance: &launched.id, n, total });
            Ok::<(), (String, CloudError)>(())
        }
    });
    let results: Vec<Result<(), (String, CloudError)>> = stream::iter(launches).buffer_unordered(cloud.parallelism()).collect().await;
    // One failure per pool is enough to say what went wrong there.
    let mut failures: Vec<(String, CloudError)> = Vec::new();
    for (pool, e) in results.into_iter().filter_map(Result::err) {
        if !failures.iter().any(|(p, _)| *p == pool) {
            failures.push((pool, e));
        }
    }
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    if !failures.is_empty() {
        return Err(ExecError::Pools { failures });
    }

    // Rolling: pool by pool, a batch at a time: drain and terminate the
    // batch's old nodes, launch their successors, wait until they are Ready.
    // Pools go one after another so two batches never share the join token.
    for (pool, changes) in &rolling {
        let batch_size = changes.iter().find_map(|c| match &c.resource {
            Resource::Instance { desired: Some(d) } => Some(d.replace_batch.max(1) as usize),
            _ => None,
        });
        let batches: Vec<&[&Change]> = changes.chunks(batch_size.unwrap_or(1)).collect();
        for (n, batch) in batches.iter().enumerate() {
            if let Some(held) = ctx.lock {
                ensure_held(cloud, held).await?;
            }
            progress.line(&format!("pool {pool}: replacing batch {}/{} ({})", n + 1, batches.len(), slots_of(batch)));
            remove_instances(cloud, ctx, batch, nodes, progress).await?;
            let mut launched = Vec::new();
            for (i, c) in batch.iter().enumerate() {
                let Resource::Instance { desired: Some(d) } = &c.resource else { continue };
                let groups = node_groups(&sg, &players_sg, &d.group);
                let new = launch(cloud, ctx, d, &subnet, &groups, &tags, progress)
                    .await
                    .map_err(|e| ExecError::Pools { failures: vec![(pool.to_string(), e)] })?;
                progress.event(&Event::Launched { pool, slot: &d.slot, instance: &new.id, n: i + 1, total: batch.len() });
                launched.push(NewNode {
                    slot: d.slot.clone(),
                    group: d.group.clone(),
                    node_name: new.private_dns.unwrap_or_default(),
                    instance_id: new.id,
                });
            }
            nodes.wait_ready(cloud, &launched, progress).await.map_err(|e| ExecError::Rollout {
                pool: pool.to_string(),
                batch: n + 1,
                batches: batches.len(),
                detail: e,
            })?;
        }
    }
    remove_network(cloud, plan, progress).await
}

/// What the launches need from the network: found, or made by this run.
struct Network {
    subnet: Option<String>,
    security_group: Option<String>,
    /// Each pool's players' group, by pool: those kept, then those made here.
    players: BTreeMap<String, String>,
}

/// The network the plan asks for: the VPC first (everything lives in it),
/// then the subnet, the gateway with its route, the attributes and the
/// security groups, all at once.
async fn build_network<C: Cloud>(
    cloud: &C,
    plan: &Plan,
    ctx: &Context<'_>,
    tags: &BTreeMap<String, String>,
    progress: &impl Progress,
) -> Result<Network, ExecError> {
    let cluster = &ctx.desired.cluster;
    let wanted = |kind: &'static str| plan.changes.iter().filter(move |c| c.resource.kind() == kind && c.action != Action::Delete);
    // Each create call gets its own token (see `adapters::Cloud::create_vpc`).
    let create_tags = |kind: &str, name: String| {
        let mut t = named(tags.clone(), name);
        t.insert(TAG_CREATE_TOKEN.into(), format!("{}/{kind}", ctx.run_id));
        t
    };
    let mut vpc_id = plan.in_use.vpc.clone();
    for change in wanted("vpc") {
        if let (Resource::Vpc { cidr }, Action::Create) = (&change.resource, change.action) {
            let id = cloud.create_vpc(*cidr, &create_tags("vpc", format!("{cluster}-vpc"))).await?;
            progress.line(&format!("vpc {id} created ({cidr})"));
            vpc_id = Some(id);
        }
    }
    let vpc = || vpc_id.as_deref().ok_or(ExecError::Missing("VPC"));

    let subnet = async {
        let mut subnet_id = plan.in_use.subnet.clone();
        for change in wanted("subnet") {
            if let (Resource::Subnet { cidr }, Action::Create) = (&change.resource, change.action) {
                let id = cloud.create_subnet(vpc()?, *cidr, &create_tags("subnet", format!("{cluster}-nodes"))).await?;
                progress.line(&format!("subnet {id} created ({cidr})"));
                subnet_id = Some(id);
            }
        }
        Ok::<_, ExecError>(subnet_id)
    };
    let gateway = async {
        let mut igw_id = plan.in_use.internet_gateway.clone();
        // A kept gateway may be detached (an apply killed between create
        // and attach); one created here is attached already.
        let mut needs_attach = plan.in_use.gateway_detached;
        if wanted("internet_gateway").any(|c| matches!((&c.resource, c.action), (Resource::InternetGateway, Action::Create))) {
            let id = cloud.create_internet_gateway(vpc()?, &create_tags("igw", format!("{cluster}-igw"))).await?;
            progress.line(&format!("internet gateway {id} created and attached"));
            igw_id = Some(id);
            needs_attach = false;
        }
        if wanted("route").any(|c| matches!((&c.resource, c.action), (Resource::Route, Action::Create))) {
            let igw = igw_id.as_deref().ok_or(ExecError::Missing("internet gateway"))?;
            if needs_attach {
                cloud.attach_internet_gateway(igw, vpc()?).await?;
            }
            cloud.create_default_route(vpc()?, igw).await?;
            progress.line("default route to the internet gateway created");
        }
        Ok::<_, ExecError>(())
    };
    let attributes =
        futures_util::future::try_join_all(wanted("vpc_attribute").chain(wanted("subnet_attribute")).map(|change| async move {
            if let (Resource::Attribute { attribute, value }, Action::Update) = (&change.resource, change.action) {
                let id = change.id.as_deref().ok_or(ExecError::Missing("VPC or subnet"))?;
                cloud.set_attribute(id, *attribute, *value).await?;
                progress.line(&format!("{id}: {} set to {value}", attribute.aws_name()));
            }
            Ok::<_, ExecError>(())
        }));
    let nodes_group = async {
        let mut sg_id = plan.in_use.security_group.clone();
        for change in wanted("security_group") {
            let (Resource::SecurityGroup { add, remove }, action) = (&change.resource, change.action) else { continue };
            let id = match (action, &sg_id) {
                (Action::Create, None) => {
                    let name = format!("{cluster}-nodes");
                    let id = cloud.create_security_group(&name, vpc()?, &create_tags("sg", name.clone())).await?;
                    progress.line(&format!("security group {id} created"));
                    sg_id = Some(id.clone());
                    id
                }
                (_, Some(id)) => id.clone(),
                (_, None) => return Err(ExecError::Missing("security group")),
            };
            sync_rules(cloud, &id, add, remove, &format!("security group {id}"), progress).await?;
        }
        Ok::<_, ExecError>(sg_id)
    };
    let players_groups = futures_util::future::try_join_all(wanted("players_group").map(|change| async move {
        let Resource::PlayersGroup { pool, add, remove } = &change.resource else { return Ok(None) };
        let id = match (change.action, change.id.as_ref()) {
            (Action::Create, _) => {
                let mut t = create_tags(&format!("players-{pool}"), change.name.clone());
                t.insert(TAG_PLAYERS.into(), pool.clone());
                let id = cloud.create_security_group(&change.name, vpc()?, &t).await?;
                progress.line(&format!("security group {id} created for pool {pool}'s players"));
                id
            }
            (_, Some(id)) => id.clone(),
            (_, None) => return Err(ExecError::Missing("players' security group")),
        };
        sync_rules(cloud, &id, add, remove, &format!("security group {id} (players of {pool})"), progress).await?;
        Ok::<_, ExecError>(Some((pool.clone(), id)))
    }));
    let (subnet, (), _, security_group, made) = tokio::try_join!(subnet, gateway, attributes, nodes_group, players_groups)?;
    let mut players = plan.in_use.players_groups.clone();
    players.extend(made.into_iter().flatten());
    Ok(Network { subnet, security_group, players })
}

/// Brings a security group's ingress rules to the plan: the stale ones
/// out first, then the missing ones in.
async fn sync_rules<C: Cloud>(
    cloud: &C,
    id: &str,
    add: &[SgRule],
    remove: &[SgRule],
    what: &str,
    progress: &impl Progress,
) -> Result<(), ExecError> {
    cloud.revoke_ingress(id, remove).await?;
    cloud.authorize_ingress(id, add).await?;
    if !add.is_empty() || !remove.is_empty() {
        progress.line(&format!("{what}: {} rule(s) added, {} removed", add.len(), remove.len()));
    }
    Ok(())
}

/// The nodes' instance profiles (roles with exactly their policy), at once.
async fn ensure_profiles<C: Cloud>(
    cloud: &C,
    plan: &Plan,
    ctx: &Context<'_>,
    tags: &BTreeMap<String, String>,
    progress: &impl Progress,
) -> Result<(), ExecError> {
    let wanted =
        plan.changes.iter().filter(|c| matches!((&c.resource, c.action), (Resource::InstanceProfile, Action::Create | Action::Update)));
    futures_util::future::try_join_all(wanted.map(|change| async move {
        let profile = ctx.desired.instance_profiles.iter().find(|p| p.name == change.name).ok_or(ExecError::Missing("instance profile"))?;
        cloud.ensure_instance_profile(profile, tags).await?;
        progress.line(&format!("instance profile {} ready ({})", change.name, profile.allows));
        Ok::<_, ExecError>(())
    }))
    .await?;
    Ok(())
}

/// The cluster's secrets and CA certificate, and the token the nodes this
/// run launches join with (never in their user data), at once.
async fn store_parameters<C: Cloud>(
    cloud: &C,
    plan: &Plan,
    ctx: &Context<'_>,
    tags: &BTreeMap<String, String>,
    progress: &impl Progress,
) -> Result<(), ExecError> {
    let stored = futures_util::future::try_join_all(plan.changes.iter().map(|change| async move {
        if let (Resource::Parameter { name, holds: Some(kind) }, Action::Create) = (&change.resource, change.action) {
            let value = match kind {
                ParameterKind::Secrets => ctx.secrets.to_stored(),
                ParameterKind::CaCertificate => ctx.secrets.ca_cert_pem.clone(),
            };
            let created = cloud.create_parameter(name, &value, kind.secure(), tags).await?;
            let shown = if kind.secure() { "SecureString" } else { "String" };
            progress.line(&format!("{name} {} ({shown})", if created { "stored" } else { "already stored" }));
        }
        Ok::<_, ExecError>(())
    }));
    let join_token = async {
        if plan.changes.iter().any(|c| matches!(c.resource, Resource::Instance { desired: Some(_) }) && c.action != Action::Update) {
            let name = join_token_parameter_name(&ctx.desired.cluster);
            cloud.put_parameter(&name, &ctx.join_token.expose(), tags).await?;
            progress.line(&format!("{name}: join token {} stored for the nodes this run launches", ctx.join_token.id()));
        }
        Ok::<_, ExecError>(())
    };
    tokio::try_join!(stored, join_token)?;
    Ok(())
}

fn slots_of(changes: &[&Change]) -> String {
    changes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Drains the nodes of `changes` (their existing instances), terminates the
/// instances and waits until they are gone.
async fn remove_instances<C: Cloud>(
    cloud: &C,
    ctx: &Context<'_>,
    changes: &[&Change],
    nodes: &impl Nodes,
    progress: &impl Progress,
) -> Result<(), ExecError> {
    let ids: Vec<String> = changes.iter().filter_map(|c| c.id.clone()).collect();
    for id in &ids {
        let node = ctx.inventory.instances.iter().find(|i| &i.id == id).and_then(|i| i.private_dns.as_deref()).filter(|d| !d.is_empty());
        if let Some(node) = node {
            nodes.drain(node, progress).await.map_err(ExecError::Drain)?;
        }
    }
    if !ids.is_empty() {
        cloud.terminate_instances(&ids).await?;
        progress.line(&format!("terminating {} instance(s)", ids.len()));
        wait_terminated(cloud, &ids, ctx.terminate_timeout, progress).await?;
    }
    Ok(())
}

/// The security groups a node of `group` is launched into: the nodes' and,
/// when its pool opens player ports, its pool's players' group.
fn node_groups(nodes: &str, players: &BTreeMap<String, String>, group: &str) -> Vec<String> {
    std::iter::once(nodes.to_string()).chain(players.get(group).cloned()).collect()
}

/// Launches one node: its pool's types in order, the next only when EC2
/// has no capacity for the one before (in the zone, on demand or spot).
/// When none runs, the error names the types and the zone.
async fn launch<C: Cloud>(
    cloud: &C,
    ctx: &Context<'_>,
    d: &DesiredInstance,
    subnet: &str,
    groups: &[String],
    tags: &BTreeMap<String, String>,
    progress: &impl Progress,
) -> Result<Launched, CloudError> {
    let mut refused: Vec<(&str, CloudError)> = Vec::new();
    for instance_type in d.instance_types() {
        let request = launch_request(ctx, d, instance_type, subnet, groups, tags)?;
        match cloud.run_instance(&request).await {
            Ok(launched) => {
                if let Some((first, e)) = refused.first() {
                    progress.line(&format!("{}: launched as {instance_type}: no capacity for {first} ({})", d.slot, e.code));
                }
                return Ok(launched);
            }
            Err(e) if e.is_capacity() => {
                refused.push((instance_type, e));
            }
            Err(e) => return Err(e),
        }
    }
    let zone = cloud.subnet_zone(subnet).await.ok().flatten().unwrap_or_else(|| format!("the zone of {subnet}"));
    let hint = if refused.len() == 1 {
        "list fallbacks in the pool's `instance_types` (tried in order), or run apply again later"
    } else {
        "add more types to the pool's `instance_types`, or run apply again later"
    };
    // Each type with its own reason: "not offered here" and "no capacity
    // now" call for different fixes.
    let reasons: Vec<String> = refused.iter().map(|(t, e)| format!("{t}: {}: {}", e.code, e.message)).collect();
    let (_, last) = refused.last().expect("a failed launch tried at least one type");
    Err(CloudError::new(
        "RunInstances",
        last.code.clone(),
        format!("no type of the pool runs in {zone}{}; {}; {hint}", if d.spot { " (spot)" } else { "" }, reasons.join("; ")),
    ))
}

fn launch_request(
    ctx: &Context<'_>,
    d: &DesiredInstance,
    instance_type: &str,
    subnet: &str,
    groups: &[String],
    tags: &BTreeMap<String, String>,
) -> Result<LaunchRequest, CloudError> {
    let ami = d
        .ami
        .clone()
        .ok_or_else(|| CloudError::new("RunInstances", "ImageNotResolved", format!("no image was resolved for {}", d.group)))?;
    let user_data = ctx
        .bootstraps
        .get(&d.group)
        .ok_or_else(|| CloudError::new("RunInstances", "NoBootstrap", format!("no bootstrap was rendered for {}", d.group)))?
        .user_data
        .clone();
    let mut tags = named(tags.clone(), format!("{}-{}", ctx.desired.cluster, d.slot));
    tags.insert(TAG_POOL.into(), d.group.clone());
    tags.insert(TAG_SLOT.into(), d.slot.clone());
    tags.insert(TAG_SPEC_HASH.into(), d.spec_hash.clone());
    tags.insert(TAG_KUBERNETES.into(), d.kubernetes_version.clone());
    if !d.cni.is_empty() {
        tags.insert(TAG_CNI.into(), d.cni.clone());
    }
    // AWS deduplicates a retried RunInstances by this token, so a dropped
    // response cannot launch a second instance for the same slot. A
    // fallback type gets its own: AWS refuses one token with other
    // parameters (IdempotentParameterMismatch).
    let fallback = if instance_type == d.instance_type { String::new() } else { format!("/{instance_type}") };
    let token = crate::infra::desired::fingerprint(
        format!("{}/{}/{}/{}{fallback}", ctx.desired.cluster, d.slot, d.spec_hash, ctx.run_id).as_bytes(),
    )[..32]
        .to_string();
    tags.insert(TAG_CREATE_TOKEN.into(), token.clone());
    Ok(LaunchRequest {
        ami,
        instance_type: instance_type.to_string(),
        subnet_id: subnet.to_string(),
        security_group_ids: groups.to_vec(),
        private_ip: d.private_ip,
        user_data,
        disk_gb: d.disk_gb,
        spot: d.spot,
        key_name: ctx.key_name.map(str::to_string),
        instance_profile: Some(ctx.desired.profile_for(&d.group).name.clone()),
        tags,
        client_token: token,
    })
}

async fn wait_terminated<C: Cloud>(cloud: &C, ids: &[String], timeout: Duration, progress: &impl Progress) -> Result<(), ExecError> {
    let mut poll = Retry::polling(Duration::from_secs(2), timeout);
    loop {
        let Some(left) = poll.tolerate(cloud.not_terminated(ids).await).await? else { continue };
        if left.is_empty() {
            progress.line(&format!("{} instance(s) terminated", ids.len()));
            return Ok(());
        }
        let report = poll.report_due(Duration::from_secs(15));
        let what = format!("{} instance(s) to terminate", left.len());
        progress.event(&Event::Waiting { what: &what, elapsed: poll.elapsed(), report });
        if !poll.wait().await {
            return Err(ExecError::Timeout {
                what: "instance termination",
                seconds: timeout.as_secs(),
                detail: format!("still running: {}", left.join(", ")),
            });
        }
    }
}

/// Network resources the plan deletes (duplicates in an apply, everything
/// in a destroy): what lives in the VPC, the instance profiles and the
/// parameters at once (none waits for another), then the VPC. Every one is
/// tried; what could not be deleted is named in one error at the end.
async fn remove_network<C: Cloud>(cloud: &C, plan: &Plan, progress: &impl Progress) -> Result<(), ExecError> {
    let doomed = |kinds: &'static [&'static str]| {
        plan.changes.iter().filter(move |c| kinds.contains(&c.resource.kind()) && c.action == Action::Delete)
    };
    const INSIDE: &[&str] = &["players_group", "security_group", "internet_gateway", "subnet", "instance_profile", "ssm_parameter"];
    let mut failed: Vec<String> =
        futures_util::future::join_all(doomed(INSIDE).map(|c| remove_one(cloud, c, progress))).await.into_iter().flatten().collect();
    if failed.is_empty() {
        failed.extend(futures_util::future::join_all(doomed(&["vpc"]).map(|c| remove_one(cloud, c, progress))).await.into_iter().flatten());
    } else {
        // What could not go still holds the VPC: deleting it would only
        // wait out DependencyViolation for nothing. Named, left for a rerun.
        failed.extend(
            doomed(&["vpc"]).map(|c| format!("vpc {}: not tried, something inside it is left", c.id.as_deref().unwrap_or(&c.name))),
        );
    }
    if failed.is_empty() { Ok(()) } else { Err(ExecError::Leftovers(failed)) }
}

/// Deletes the resource of one Delete change; returns what failed, if it did.
async fn remove_one<C: Cloud>(cloud: &C, c: &Change, progress: &impl Progress) -> Option<String> {
    let id = c.id.as_deref().unwrap_or_default();
    let what = format!("{} {}", c.resource.kind(), c.id.as_deref().unwrap_or(&c.name));
    let result = match &c.resource {
        Resource::SecurityGroup { .. } | Resource::PlayersGroup { .. } => {
            retry_dependency(&what, || cloud.delete_security_group(id), progress).await
        }
        // Detaching answers DependencyViolation while instances' public
        // addresses are still mapped.
        Resource::InternetGateway => retry_dependency(&what, || cloud.delete_internet_gateway(id), progress).await,
        Resource::Subnet { .. } => retry_dependency(&what, || cloud.delete_subnet(id), progress).await,
        Resource::Vpc { .. } => retry_dependency(&what, || cloud.delete_vpc(id), progress).await,
        Resource::Parameter { name, .. } => cloud.delete_parameter(name).await.map_err(ExecError::from),
        Resource::InstanceProfile => cloud.delete_instance_profile(&c.name).await.map_err(ExecError::from),
        _ => return None,
    };
    match result {
        Ok(()) => {
            progress.line(&format!("{what} deleted"));
            None
        }
        Err(e) => Some(format!("{what}: {e}")),
    }
}

/// Carries out a destroy plan: instances (and their wait), then every
/// network resource and parameter found.
pub async fn destroy<C: Cloud>(cloud: &C, plan: &Plan, timeout: Duration, progress: &impl Progress) -> Result<(), ExecError> {
    let instances: Vec<String> = plan.changes.iter().filter(|c| c.resource.kind() == "instance").filter_map(|c| c.id.clone()).collect();
    if !instances.is_empty() {
        cloud.terminate_instances(&instances).await?;
        progress.line(&format!("terminating {} instance(s)", instances.len()));
        wait_terminated(cloud, &instances, timeout, progress).await?;
    }
    remove_network(cloud, plan, progress).await
}

/// Network interfaces of terminated instances linger for a while (minutes
/// on real AWS); AWS answers DependencyViolation until they are gone. Waited
/// out under the one retry policy, saying so every half minute or so.
async fn retry_dependency<F, Fut>(what: &str, mut call: F, progress: &impl Progress) -> Result<(), ExecError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), CloudError>>,
{
    let mut retry = Retry::new(DEPENDENCY_BACKOFF).deadline(DEPENDENCY_DEADLINE);
    loop {
        match call().await {
            // Throttling or an AWS failure outlasting the SDK's own retries
            // is waited out the same way, under the same deadline.
            Err(e) if e.code == "DependencyViolation" || e.is_transient() => {
                if retry.report_due(Duration::from_secs(30)) {
                    let waited = retry.elapsed().as_secs();
                    let why = if e.code == "DependencyViolation" { "still in use (network interfaces detaching)" } else { &e.code };
                    progress.line(&format!("{what}: {why}, waiting; {waited}s so far"));
                }
                if !retry.wait().await {
                    return Err(e.into());
                }
            }
            other => return other.map_err(ExecError::from),
        }
    }
}

/// How long destroy waits for AWS to free a network resource: ENIs of
/// terminated instances take minutes to detach on real AWS.
const DEPENDENCY_BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(15));
const DEPENDENCY_DEADLINE: Duration = Duration::from_secs(600);
