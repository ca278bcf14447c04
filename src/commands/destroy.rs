//! `hybrid destroy FILE` (or `--name NAME --region REGION`): everything
//! tagged for the cluster goes. A destroy needs only the cluster's name and
//! region, so a file that no longer validates (a Kubernetes minor past its
//! end of life) still destroys its cluster, and a cluster whose file is
//! gone is destroyed by name.

use std::time::Duration;

use super::shared::args::{AwsArgs, ClusterRef, LockArgs, lock_owner};
use super::shared::connect::{cloud_in, cluster_identity};
use super::shared::terminal::{Interrupt, Reporter, Ui, confirm, print_api_stats};
use crate::adapters::Cloud;
use crate::error::{Error, Result};
use crate::infra::lock;
use crate::infra::{execute, plan, show};

#[derive(Debug, clap::Args)]
#[command(
    about = "Remove everything hybrid created for the cluster",
    long_about = "\
Show what will go, ask (or --yes), then terminate the instances, wait for them, and delete the \
security group, internet gateway, subnet and VPC (only those hybrid created: they carry the \
cluster's tag), the SSM parameters and the lock. Afterwards nothing tagged for the cluster remains.

Only the cluster's name and region are needed: a file that no longer validates still destroys its \
cluster (its problems are shown as warnings), and --name with --region destroys a cluster without \
its file (`hybrid list` shows every cluster in the account). Ctrl-C stops cleanly (exit 130) and \
gives the lock back; run destroy again to finish.",
    after_help = "Exit codes: 0 success, 1 error (run destroy again: everything left is still tagged), 64 usage error, 130 interrupted."
)]
pub struct Args {
    #[command(flatten)]
    pub cluster: ClusterRef,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let (name, region) = cluster_identity(ui, &args.cluster, "destroy").await?;
    let interrupt = Interrupt::listen();
    let cloud = cloud_in(&region, &args.aws).await;
    let result = destroy_cluster(&cloud, &name, &region, &args.lock, args.yes, &ui.reporter(), &interrupt).await;
    if ui.api_stats {
        print_api_stats(&cloud);
    }
    result
}

/// Destroys one cluster (also what `reap` does for each expired one).
pub(super) async fn destroy_cluster<C: Cloud>(
    cloud: &C,
    cluster: &str,
    region: &str,
    lock_args: &LockArgs,
    yes: bool,
    progress: &Reporter,
    interrupt: &Interrupt,
) -> Result<()> {
    let found = cloud.discover(cluster).await?;
    if found.is_empty() {
        // A destroy killed after its last delete leaves only its lock: take
        // it over (it is stale) and remove it, so nothing stays behind.
        if !cloud.locks(cluster).await?.is_empty() {
            lock::take(cloud, cluster, &lock_owner(), &lock_args.wait(), progress).await?;
            lock::remove_all(cloud, cluster).await?;
            println!("Nothing to destroy: no resources are tagged for cluster {cluster} in {region}; its leftover lock was removed.");
        } else {
            println!("Nothing to destroy: no resources are tagged for cluster {cluster} in {region}.");
        }
        return Ok(());
    }
    let (me, wait) = (lock_owner(), lock_args.wait());
    let held = tokio::select! {
        r = lock::take(cloud, cluster, &me, &wait, progress) => r?,
        _ = interrupt.wait() => return Err(Error::Interrupted),
    };
    let work = async {
        let plan = plan::plan_destroy(cluster, region, &cloud.discover(cluster).await?);
        progress.say(show::plan_text(&plan).trim_end_matches('\n'));
        confirm("Do you really want to destroy all resources of this cluster?", yes).await?;
        // The question may have stayed open for a long time: still ours?
        if !yes {
            lock::ensure_held(cloud, &held).await?;
        }
        execute::destroy(cloud, &plan, Duration::from_secs(900), progress).await?;
        progress.say(&format!("\nDestroy complete! Resources: {} destroyed.", plan.summary().destroy));
        Ok::<(), Error>(())
    };
    let outcome = tokio::select! {
        r = lock::while_held(cloud, &held, work) => r.map_err(Error::from).and_then(|r| r),
        _ = interrupt.wait() => Err(Error::Interrupted),
    };
    // Destroyed: no lock epoch of the cluster stays behind.
    let released = if outcome.is_ok() { lock::remove_all(cloud, cluster).await } else { lock::release(cloud, &held, progress).await };
    if let Err(e) = released {
        progress.warn(&format!("warning: could not release the cluster lock: {e}"));
    }
    outcome
}
