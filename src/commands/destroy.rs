//! `hybrid destroy FILE`: everything tagged for the cluster goes.

use std::path::Path;
use std::time::Duration;

use super::Ui;
use super::cluster::{cloud, confirm, lock, print_api_stats, progress};
use super::validate::load_spec;
use crate::adapters::Cloud;
use crate::cli::{AwsArgs, LockArgs};
use crate::error::{Error, Result};
use crate::{execute, plan, show};

pub async fn destroy(ui: &Ui, file: &Path, aws: &AwsArgs, lock_args: &LockArgs, yes: bool, api_stats: bool) -> Result<()> {
    let spec = load_spec(ui, file)?;
    let cloud = cloud(&spec, aws).await;
    let result = run(&cloud, &spec.name, &spec.region, lock_args, yes).await;
    if api_stats {
        print_api_stats(&cloud);
    }
    result
}

pub(super) async fn run<C: Cloud>(cloud: &C, cluster: &str, region: &str, lock_args: &LockArgs, yes: bool) -> Result<()> {
    let found = cloud.discover(cluster).await?;
    if found.is_empty() {
        println!("Nothing to destroy: no resources are tagged for cluster {cluster} in {region}.");
        return Ok(());
    }
    lock(cloud, cluster, lock_args).await?;
    let outcome = async {
        let plan = plan::plan_destroy(cluster, region, &cloud.discover(cluster).await?);
        print!("{}", show::plan_text(&plan));
        confirm("Do you really want to destroy all resources of this cluster?", yes)?;
        tokio::select! {
            r = execute::destroy(cloud, &plan, Duration::from_secs(900), &progress) => r.map_err(Error::from),
            _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
        }?;
        println!("\nDestroy complete! Resources: {} destroyed.", plan.summary().destroy);
        Ok(())
    }
    .await;
    if let Err(e) = cloud.unlock(cluster).await {
        eprintln!("warning: could not release the cluster lock: {e}");
    }
    outcome
}
