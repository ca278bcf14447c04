//! `hybrid destroy FILE`: everything tagged for the cluster goes.

use std::path::PathBuf;
use std::time::Duration;

use super::shared::args::{AwsArgs, LockArgs};
use super::shared::connect::cloud;
use super::shared::files::load_spec;
use super::shared::lock::{lock, remove_all, unlock};
use super::shared::terminal::{Reporter, Ui, confirm, print_api_stats};
use crate::adapters::Cloud;
use crate::error::{Error, Result};
use crate::infra::{execute, plan, show};

#[derive(Debug, clap::Args)]
#[command(
    about = "Remove everything hybrid created for the cluster",
    long_about = "\
Show what will go, ask (or --yes), then terminate the instances, wait for them, and delete the \
security group, internet gateway, subnet and VPC (only those hybrid created: they carry the \
cluster's tag), the SSM parameters and the lock. Afterwards nothing tagged for the cluster remains."
)]
pub struct Args {
    pub file: PathBuf,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let spec = load_spec(ui, &args.file)?;
    let cloud = cloud(&spec, &args.aws).await;
    let result = destroy_cluster(&cloud, &spec.name, &spec.region, &args.lock, args.yes, &ui.reporter()).await;
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
) -> Result<()> {
    let found = cloud.discover(cluster).await?;
    if found.is_empty() {
        // A destroy killed after its last delete leaves only its lock: take
        // it over (it is stale) and remove it, so nothing stays behind.
        if !cloud.locks(cluster).await?.is_empty() {
            lock(cloud, cluster, lock_args).await?;
            remove_all(cloud, cluster).await?;
            println!("Nothing to destroy: no resources are tagged for cluster {cluster} in {region}; its leftover lock was removed.");
        } else {
            println!("Nothing to destroy: no resources are tagged for cluster {cluster} in {region}.");
        }
        return Ok(());
    }
    let held = lock(cloud, cluster, lock_args).await?;
    let outcome = async {
        let plan = plan::plan_destroy(cluster, region, &cloud.discover(cluster).await?);
        progress.say(show::plan_text(&plan).trim_end_matches('\n'));
        confirm("Do you really want to destroy all resources of this cluster?", yes)?;
        tokio::select! {
            r = execute::destroy(cloud, &plan, Duration::from_secs(900), progress) => r.map_err(Error::from),
            _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
        }?;
        progress.say(&format!("\nDestroy complete! Resources: {} destroyed.", plan.summary().destroy));
        Ok(())
    }
    .await;
    // Destroyed: no lock epoch of the cluster stays behind.
    let released = if outcome.is_ok() { remove_all(cloud, cluster).await } else { unlock(cloud, &held).await };
    if let Err(e) = released {
        progress.warn(&format!("warning: could not release the cluster lock: {e}"));
    }
    outcome
}
