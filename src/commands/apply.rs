//! `hybrid apply FILE`: the AWS side (plan, confirm, execute), then the
//! Kubernetes side (objects, token, Ready nodes, labels and taints) unless
//! `--ec2-only`, the whole of it under the cluster lock (renewed while it
//! works) whenever the AWS side has anything to do. Ctrl-C anywhere after
//! the lock is taken stops the work, gives the lock back and exits 130.

use std::path::PathBuf;
use std::time::Duration;

use super::shared::args::SetArgs;
use super::shared::args::{AwsArgs, ClusterArgs, LockArgs, lock_owner};
use super::shared::connect::{aws_is_emulated, cloud, cluster_out_of_reach, join_token, kube_client, stored_secrets};
use super::shared::files::{effective_source, load_spec, read_text};
use super::shared::pins;
use super::shared::prepare::{Prepared, expiry, load_templates, prepare, prepare_again};
use super::shared::terminal::{Interrupt, Reporter, Ui, confirm, print_api_stats};
use crate::adapters::Cloud;
use crate::bootstrap::Templates;
use crate::cluster::converge::{self, KubeNodes};
use crate::error::{Error, Result};
use crate::infra::desired::CONTROL_PLANE;
use crate::infra::execute::{self, Context, NoNodes};
use crate::infra::lock::{self, Held};
use crate::infra::plan::{Action, Resource, Summary};
use crate::infra::saved::SavedPlan;
use crate::infra::show;
use crate::model::ClusterSpec;
use crate::progress::{Event, Progress};

#[derive(Debug, clap::Args)]
#[command(
    about = "Create or change what the file describes in AWS",
    long_about = "\
Plan (as `hybrid plan`, which checks that every pinned download and image exists before anything \
is launched; --offline skips that), show the plan, ask for confirmation (or --yes), then make it so: network \
(VPC, subnet, internet gateway, route, security group with only the needed ports), the cluster \
secrets in SSM (SecureString), and instances with IMDSv2 required, encrypted root volumes, tags \
and the rendered user data. Pools launch in parallel.

Then, unless --ec2-only, it converges the cluster through the Kubernetes API: waits for the API \
server, writes Calico's Installation, IPAM strictAffinity and Felix VXLAN settings (or flannel's \
net-conf and Windows DaemonSet), the Windows kube-proxy and one RuntimeClass per Windows build, \
keeps a bootstrap token valid while nodes join, waits until every node is Ready (naming the ones \
that are not, with their console output, on timeout) and applies the pools' labels and taints. \
Nodes that go away are cordoned and drained first.

On a terminal, progress is drawn live: one line per pool with launched / running / joined / Ready \
counts, elapsed time and the slowest node (--progress plain for timestamped lines).

Nothing is written when there are no changes. A second apply on the same cluster waits for or \
fails on the cluster lock (an SSM parameter the run renews while it works, so a long rolling \
replacement or a question left open keeps it, and a run that died loses it within ten minutes). \
An apply interrupted at any point (Ctrl-C exits 130 and gives the lock back) can be run again to \
converge: every resource is tagged when it is created.

FILE may also be a plan file `hybrid plan FILE --out PLANFILE` saved: apply then plans again \
under the lock and carries out exactly that plan without asking, or, when the cluster file (with \
the plan's --set flags) or what runs in AWS has moved since, changes nothing and says what moved.

This exercises the AWS side; nodes boot and join the cluster on real EC2 only.",
    after_help = "Exit codes: 0 success, 1 error (nothing is left untagged; run apply again), 64 usage error, 130 interrupted."
)]
pub struct Args {
    /// The cluster file, or a plan file `hybrid plan --out` saved.
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Folder with template overrides (as for render).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Do not check that pinned downloads and images exist before launching
    /// (the check needs the internet); nodes still verify every download at boot.
    #[arg(long)]
    pub offline: bool,
    /// Allow a plan that replaces the control plane (`-/+!`). That loses
    /// etcd, so the cluster is recreated: every workload and object in it is
    /// gone and every worker is replaced. Without this flag such a plan is
    /// shown and refused.
    #[arg(long)]
    pub recreate_control_plane: bool,
}

/// A saved plan to carry out, and the text its file reads as now.
type Saved = (SavedPlan, String);

/// `FILE` is a plan file `hybrid plan --out` wrote: its cluster file and
/// `--set` flags, as they read now.
fn saved_plan(ui: &Ui, opts: &Args) -> Result<Option<(Saved, ClusterSpec)>> {
    let text = read_text(&opts.file)?;
    let Some(saved) = SavedPlan::parse(&text) else { return Ok(None) };
    let saved = saved.map_err(|why| Error::Failed(format!("{}: {why}", opts.file.display())))?;
    if !opts.set.sets.is_empty() {
        return Err(Error::Usage(format!(
            "{} is a saved plan: it carries its own --set flags ({})",
            opts.file.display(),
            saved.sets.join(" ")
        )));
    }
    let sets = saved
        .sets
        .iter()
        .map(|s| s.parse())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e: String| Error::Failed(format!("{}: {e}", opts.file.display())))?;
    let set = SetArgs { sets };
    let file = PathBuf::from(&saved.file);
    let spec = load_spec(ui, &file, &set)?;
    let source = effective_source(&file, &set)?;
    Ok(Some(((saved, source), spec)))
}

pub async fn run(ui: &Ui, opts: &Args) -> Result<()> {
    let (saved, spec) = match saved_plan(ui, opts)? {
        Some((saved, spec)) => (Some(saved), spec),
        None => (None, load_spec(ui, &opts.file, &opts.set)?),
    };
    let templates = load_templates(opts.templates.as_deref())?;
    let interrupt = Interrupt::listen();
    let cloud = cloud(&spec, &opts.aws).await?;
    let reporter = ui.reporter();
    let result = apply(&cloud, &spec, &templates, opts, saved.as_ref(), &reporter, &interrupt).await;
    reporter.event(&Event::Finished);
    if let Ok(ending) = &result {
        reporter.say(ending);
    }
    drop(reporter);
    if ui.api_stats {
        print_api_stats(&cloud);
    }
    result.map(drop)
}

/// Both sides; returns the one line that says the apply is complete.
async fn apply<C: Cloud>(
    cloud: &C,
    spec: &ClusterSpec,
    templates: &Templates,
    opts: &Args,
    saved: Option<&Saved>,
    progress: &Reporter,
    interrupt: &Interrupt,
) -> Result<String> {
    // A first look without the lock: when nothing changes in AWS, nothing
    // is written there, not even the lock (the cluster side still runs).
    let first = prepare(cloud, spec, templates).await?;
    if let Some(saved) = saved {
        stale(saved, &first.plan, &opts.file)?;
    }
    if first.plan.is_empty() {
        progress.say(show::plan_text(&first.plan).trim_end_matches('\n'));
        let cluster = tokio::select! {
            r = cluster_side(cloud, spec, opts, progress) => r?,
            _ = interrupt.wait() => return Err(Error::Interrupted),
        };
        return Ok(ending(&first.plan.summary(), &cluster));
    }
    // Before the lock and the question: a pin that does not exist fails
    // here, not twenty minutes into a node's boot.
    if first.plan.launches() {
        progress.warn(&pins::gate(spec, opts.offline, aws_is_emulated(&opts.aws)).await?);
    }
    let (me, wait) = (lock_owner(), opts.lock.wait());
    let held = tokio::select! {
        r = lock::take(cloud, &spec.name, &me, &wait, progress) => r?,
        _ = interrupt.wait() => return Err(Error::Interrupted),
    };
    let work = async {
        // Plan again under the lock: another run may have changed what
        // exists. Who this is (the owner tag of what the run makes) is
        // asked meanwhile.
        let (prepared, owner) =
            tokio::try_join!(prepare_again(cloud, spec, templates, &first), async { cloud.caller_arn().await.map_err(Error::from) })?;
        let summary = aws_side(cloud, spec, opts, saved, Replanned { prepared, owner }, &held, progress).await?;
        let cluster = cluster_side(cloud, spec, opts, progress).await?;
        Ok::<String, Error>(ending(&summary, &cluster))
    };
    let outcome = tokio::select! {
        r = lock::while_held(cloud, &held, work) => r.map_err(Error::from).and_then(|r| r),
        _ = interrupt.wait() => Err(Error::Interrupted),
    };
    // The lock goes whatever happened; what was created is tagged.
    if let Err(e) = lock::release(cloud, &held, progress).await {
        progress.warn(&format!(
            "warning: could not release the cluster lock: {e}; the next run takes it over once it expires (10 minutes), or pass --break-lock"
        ));
    }
    outcome
}

/// "Apply complete!", said once, at the very end.
/// A saved plan that the file or AWS has moved away from is refused,
/// with what moved.
fn stale(saved: &Saved, fresh: &crate::infra::plan::Plan, plan_file: &std::path::Path) -> Result<()> {
    let moved = saved.0.moved(&saved.1, fresh);
    if moved.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "the plan in {} can no longer be carried out exactly; nothing was changed:\n{}\nmake a new one: hybrid plan {} --out {}",
        plan_file.display(),
        moved.iter().map(|m| format!("  - {m}")).collect::<Vec<_>>().join("\n"),
        saved.0.file,
        plan_file.display()
    )))
}

fn ending(summary: &Summary, cluster: &str) -> String {
    format!("\nApply complete! Resources: {} added, {} changed, {} destroyed. {cluster}", summary.add, summary.change, summary.destroy)
}

/// The plan made again under the lock, and who carries it out (the
/// `hybrid:owner` tag of what the run makes).
struct Replanned {
    prepared: Prepared,
    owner: String,
}

async fn aws_side<C: Cloud>(
    cloud: &C,
    spec: &ClusterSpec,
    opts: &Args,
    saved: Option<&Saved>,
    Replanned { prepared, owner }: Replanned,
    held: &Held,
    progress: &Reporter,
) -> Result<Summary> {
    progress.say(show::plan_text(&prepared.plan).trim_end_matches('\n'));
    if let Some(saved) = saved {
        stale(saved, &prepared.plan, &opts.file)?;
    }
    if prepared.plan.is_empty() {
        return Ok(prepared.plan.summary());
    }
    if prepared.plan.recreates_cluster() && !opts.recreate_control_plane {
        return Err(Error::Failed(
            "this plan replaces the control plane, which recreates the cluster and loses everything in it; nothing was changed. \
             Change the file back, or run apply again with --recreate-control-plane"
                .into(),
        ));
    }
    // A saved plan was the question, answered when it was made.
    let asked = !(opts.yes || saved.is_some());
    confirm(
        if prepared.plan.recreates_cluster() {
            "This RECREATES THE CLUSTER: everything in it is lost. Do you want to perform these actions?"
        } else {
            "Do you want to perform these actions?"
        },
        !asked,
    )
    .await?;
    // The question may have stayed open for a long time: still ours?
    if asked {
        lock::ensure_held(cloud, held).await?;
    }
    execute_plan(cloud, spec, opts, &prepared, held, owner, progress).await?;
    Ok(prepared.plan.summary())
}

async fn execute_plan<C: Cloud>(
    cloud: &C,
    spec: &ClusterSpec,
    opts: &Args,
    prepared: &Prepared,
    held: &Held,
    owner: String,
    progress: &Reporter,
) -> Result<()> {
    // Nodes that go away are drained first, which needs the API.
    let removes_nodes = prepared.plan.changes.iter().any(|c| {
        matches!(c.resource, Resource::Instance { .. }) && matches!(c.action, Action::Delete | Action::Replace | Action::Recreate)
    });
    let emulated = cluster_out_of_reach(&opts.aws, opts.cluster.api_server.as_deref());
    if removes_nodes && emulated && !opts.cluster.ec2_only {
        progress.warn(&format!("note: {}; nodes are removed without draining", Error::EmulatedAws));
    }
    // (A recreated cluster has nothing to drain: its etcd goes anyway.)
    let kube = if removes_nodes && !opts.cluster.ec2_only && !emulated && !prepared.plan.recreates_cluster() {
        // The stored secrets, or a clear error when they are missing.
        stored_secrets(cloud, &spec.name).await?;
        let api = kube_client(spec, &prepared.inventory, &prepared.secrets, &opts.aws, opts.cluster.api_server.as_deref()).await?;
        let cp = prepared.inventory.instances.iter().find(|i| i.slot == CONTROL_PLANE).map(|i| i.id.as_str());
        converge::wait_for_api(&api, cloud, cp, opts.cluster.waits(), progress).await?;
        Some(api)
    } else {
        None
    };
    let ctx = Context {
        desired: &prepared.desired,
        inventory: &prepared.inventory,
        secrets: &prepared.secrets,
        join_token: &prepared.join_token,
        bootstraps: &prepared.bootstraps,
        key_name: spec.ssh_key_name.as_deref(),
        expires: expiry(spec, &prepared.inventory),
        run_id: format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ),
        terminate_timeout: Duration::from_secs(900),
        lock: Some(held),
        owner: Some(owner),
    };
    match &kube {
        Some(api) => {
            let windows_pools = spec.windows_pools().map(|p| p.name.clone()).collect();
            let nodes = KubeNodes { api, waits: opts.cluster.waits(), token: &prepared.join_token, windows_pools };
            execute::apply(cloud, &prepared.plan, &ctx, &nodes, progress).await?
        }
        None => execute::apply(cloud, &prepared.plan, &ctx, &NoNodes, progress).await?,
    }
    Ok(())
}

/// The Kubernetes side: idempotent, so it runs on every apply and writes
/// nothing when the cluster already matches. Returns what it found.
async fn cluster_side<C: Cloud>(cloud: &C, spec: &ClusterSpec, opts: &Args, progress: &Reporter) -> Result<String> {
    if opts.cluster.ec2_only {
        return Ok("The cluster side was not looked at (--ec2-only).".into());
    }
    if cluster_out_of_reach(&opts.aws, opts.cluster.api_server.as_deref()) {
        progress.say(&format!("Kubernetes: skipped: {}.", Error::EmulatedAws));
        return Ok("The cluster side was skipped (AWS is an emulator).".into());
    }
    let inventory = cloud.discover(&spec.name).await?;
    let secrets = stored_secrets(cloud, &spec.name).await?;
    let api = kube_client(spec, &inventory, &secrets, &opts.aws, opts.cluster.api_server.as_deref()).await?;
    let waits = opts.cluster.waits();
    let cp = inventory.instances.iter().find(|i| i.slot == CONTROL_PLANE).map(|i| i.id.as_str());
    let api_ip = spec.api_server_ip().map(|ip| ip.to_string()).unwrap_or_default();
    converge::wait_for_api(&api, cloud, cp, waits, progress).await?;
    let expected = converge::expected_nodes(&inventory);
    converge::converge_cluster_objects(&api, spec, &api_ip, &converge::windows_nodes(spec, &expected), waits, progress).await?;
    converge::remove_orphan_nodes(&api, &expected, waits, progress).await?;
    let token = join_token(cloud, &spec.name, &secrets).await?;
    converge::wait_for_nodes(&api, cloud, &expected, &token, waits, progress).await?;
    let pools = converge::pools_by_node(spec, &expected);
    converge::reconcile_nodes(&api, |n| pools.get(n).copied(), progress).await?;
    progress.say(&format!("Cluster {} converged: {} node(s) Ready.", spec.name, expected.len()));
    Ok(format!("Cluster {}: {} node(s) Ready.", spec.name, expected.len()))
}
