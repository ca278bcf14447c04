//! `hybrid apply FILE`: the AWS side (plan, confirm, execute under the
//! cluster lock), then the Kubernetes side (objects, token, Ready nodes,
//! labels and taints) unless `--ec2-only`.

use std::path::Path;
use std::time::Duration;

use super::Ui;
use super::cluster::{cloud, confirm, expiry, kube_client, load_templates, lock, prepare, print_api_stats, progress, stored_secrets};
use super::validate::load_spec;
use crate::adapters::Cloud;
use crate::adapters::kube::KubeClient;
use crate::bootstrap::Templates;
use crate::cli::{AwsArgs, ClusterArgs, LockArgs};
use crate::converge::{self, Waits};
use crate::desired::CONTROL_PLANE;
use crate::error::{Error, Result};
use crate::execute::{self, Context};
use crate::model::ClusterSpec;
use crate::plan::{Action, Resource};
use crate::show;

pub struct ApplyOptions<'a> {
    pub aws: &'a AwsArgs,
    pub cluster: &'a ClusterArgs,
    pub lock: &'a LockArgs,
    pub yes: bool,
    pub templates: Option<&'a Path>,
    pub api_stats: bool,
}

impl ApplyOptions<'_> {
    fn waits(&self) -> Waits {
        Waits {
            api: Duration::from_secs(self.cluster.api_timeout),
            nodes: Duration::from_secs(self.cluster.node_timeout),
            drain: Duration::from_secs(self.cluster.drain_timeout),
            poll: Duration::from_millis(self.cluster.poll_ms),
        }
    }
}

pub async fn apply(ui: &Ui, file: &Path, opts: &ApplyOptions<'_>) -> Result<()> {
    let spec = load_spec(ui, file)?;
    let templates = load_templates(opts.templates)?;
    let cloud = cloud(&spec, opts.aws).await;
    let mut result = aws_side(&cloud, &spec, &templates, opts).await;
    if result.is_ok() && !opts.cluster.ec2_only {
        result = cluster_side(&cloud, &spec, opts).await;
    }
    if opts.api_stats {
        print_api_stats(&cloud);
    }
    result
}

async fn aws_side<C: Cloud>(cloud: &C, spec: &ClusterSpec, templates: &Templates, opts: &ApplyOptions<'_>) -> Result<()> {
    // A first look without the lock: when nothing changes, nothing is
    // written, not even the lock.
    let first = prepare(cloud, spec, templates).await?;
    if first.plan.is_empty() {
        print!("{}", show::plan_text(&first.plan));
        return Ok(());
    }
    lock(cloud, &spec.name, opts.lock).await?;
    let outcome = async {
        // Plan again under the lock: another run may have changed things.
        let prepared = prepare(cloud, spec, templates).await?;
        print!("{}", show::plan_text(&prepared.plan));
        if prepared.plan.is_empty() {
            return Ok(());
        }
        confirm("Do you want to perform these actions?", opts.yes)?;
        // Nodes that go away are drained first, which needs the API.
        let removes_nodes = prepared
            .plan
            .changes
            .iter()
            .any(|c| matches!(c.resource, Resource::Instance { .. }) && matches!(c.action, Action::Delete | Action::Replace));
        let kube = if removes_nodes && !opts.cluster.ec2_only {
            let secrets = stored_secrets(cloud, &spec.name).await?;
            let api = kube_client(spec, &prepared.inventory, &secrets, opts.cluster.api_server.as_deref()).await?;
            let cp = prepared.inventory.instances.iter().find(|i| i.slot == CONTROL_PLANE).map(|i| i.id.as_str());
            converge::wait_for_api(&api, cloud, cp, opts.waits(), &progress).await?;
            Some(api)
        } else {
            None
        };
        let ctx = Context {
            desired: &prepared.desired,
            inventory: &prepared.inventory,
            secrets: &prepared.secrets,
            bootstraps: &prepared.bootstraps,
            key_name: spec.ssh_key_name.as_deref(),
            expires: expiry(spec, &prepared.inventory),
            run_id: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
            ),
            terminate_timeout: Duration::from_secs(900),
        };
        let drain = kube.as_ref().map(|k: &KubeClient| (k, opts.waits()));
        tokio::select! {
            r = execute::apply(cloud, &prepared.plan, &ctx, drain, &progress) => r.map_err(Error::from),
            _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
        }?;
        let s = prepared.plan.summary();
        println!("\nApply complete! Resources: {} added, {} changed, {} destroyed.", s.add, s.change, s.destroy);
        Ok(())
    }
    .await;
    // The lock goes whatever happened; what was created is tagged.
    if let Err(e) = cloud.unlock(&spec.name).await {
        eprintln!("warning: could not release the cluster lock: {e}; the next run takes it over once it expires, or pass --break-lock");
    }
    outcome
}

/// The Kubernetes side: idempotent, so it runs on every apply and writes
/// nothing when the cluster already matches.
async fn cluster_side<C: Cloud>(cloud: &C, spec: &ClusterSpec, opts: &ApplyOptions<'_>) -> Result<()> {
    let inventory = cloud.discover(&spec.name).await?;
    let secrets = stored_secrets(cloud, &spec.name).await?;
    let api = kube_client(spec, &inventory, &secrets, opts.cluster.api_server.as_deref()).await?;
    let waits = opts.waits();
    let cp = inventory.instances.iter().find(|i| i.slot == CONTROL_PLANE).map(|i| i.id.as_str());
    let api_ip = spec.api_server_ip().map(|ip| ip.to_string()).unwrap_or_default();
    let work = async {
        converge::wait_for_api(&api, cloud, cp, waits, &progress).await?;
        converge::converge_cluster_objects(&api, spec, &api_ip, waits, &progress).await?;
        let expected = converge::expected_nodes(&inventory);
        converge::wait_for_nodes(&api, cloud, &expected, &secrets.token, waits, &progress).await?;
        let pools = converge::pools_by_node(spec, &expected);
        converge::reconcile_nodes(&api, |n| pools.get(n).copied(), &progress).await?;
        Ok::<usize, converge::ConvergeError>(expected.len())
    };
    let ready = tokio::select! {
        r = work => r?,
        _ = tokio::signal::ctrl_c() => return Err(Error::Interrupted),
    };
    println!("Cluster {} converged: {ready} node(s) Ready.", spec.name);
    Ok(())
}
