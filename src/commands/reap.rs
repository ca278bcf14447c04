//! `hybrid reap`: destroys the clusters whose time-to-live has passed.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::destroy;
use super::shared::args::{AwsArgs, LockArgs};
use super::shared::connect::{cloud_in, regions};
use super::shared::terminal::{Interrupt, Reporter};
use crate::adapters::Cloud;
use crate::error::{Error, Result};
use crate::infra::lock;

#[derive(Debug, clap::Args)]
#[command(
    about = "Destroy every cluster whose time-to-live has passed (for cron or CI)",
    long_about = "\
Find every hybrid cluster in the given regions whose hybrid:expires tag (set at creation from \
the file's ttl) lies in the past, and destroy it as `hybrid destroy` would. Clusters are found by \
any resource left of them (VPC, subnet, gateway, security group, SSM parameters), so a cluster \
half-destroyed by a crash is found too. Clusters without a ttl are never touched; a lock left \
alone by a killed run is removed once it has expired. --dry-run only lists; otherwise --yes is required, since it runs \
unattended."
)]
pub struct Args {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// List what would be destroyed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Destroy without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub async fn run(args: &Args) -> Result<()> {
    let interrupt = Interrupt::listen();
    let (aws, dry_run, yes) = (&args.aws, args.dry_run, args.yes);
    if !dry_run && !yes {
        return Err(Error::NotConfirmed("reap destroys clusters unattended: pass --yes, or --dry-run to only list them".into()));
    }
    let regions = regions().await?;
    let now = OffsetDateTime::now_utc();
    // What each region holds, every region at once (their answers wait for
    // nothing of each other). The destroys then go one after another, so
    // that each one's progress reads as a whole; each is concurrent inside.
    let found = futures_util::future::try_join_all(regions.iter().map(|region| async move {
        let cloud = cloud_in(region, aws).await;
        let (clusters, builders) = tokio::try_join!(cloud.clusters(), cloud.bake_builders())?;
        Ok::<_, Error>((region, cloud, clusters, builders))
    }))
    .await?;
    let mut failures = Vec::new();
    for (region, cloud, clusters, _) in &found {
        for found in clusters {
            let cluster = found.name.clone();
            let Some(expires) = found.expires.clone() else {
                // No time-to-live: never reaped. A lone stale lock (a run
                // killed after its last delete) is not a cluster, though.
                if found.only_lock && !dry_run && locks_are_stale(cloud, &cluster).await? {
                    println!("unlock   {cluster:<24} {region:<14} only a stale lock was left");
                    lock::remove_all(cloud, &cluster).await?;
                }
                continue;
            };
            let Ok(at) = OffsetDateTime::parse(&expires, &Rfc3339) else {
                eprintln!("warning: cluster {cluster} in {region} has an unreadable hybrid:expires tag {expires:?}; left alone");
                continue;
            };
            if at > now {
                println!("keep     {cluster:<24} {region:<14} expires {expires}");
                continue;
            }
            if dry_run {
                println!("would destroy {cluster:<19} {region:<14} expired {expires}");
                continue;
            }
            println!("destroy  {cluster:<24} {region:<14} expired {expires}");
            let lock = LockArgs { lock_timeout: std::time::Duration::ZERO, break_lock: false, lock_ttl: crate::infra::lock::TTL };
            if let Err(e) = destroy::destroy_cluster(cloud, &cluster, region, &lock, true, &Reporter::Plain, &interrupt).await {
                eprintln!("error: destroying {cluster} in {region}: {e}");
                failures.push(cluster);
            }
        }
    }
    // Bake builders a crashed `hybrid bake` left behind.
    for (region, cloud, _, builders) in &found {
        let expired: Vec<String> = builders
            .iter()
            .filter(|b| OffsetDateTime::parse(&b.expires, &Rfc3339).is_ok_and(|at| at <= now))
            .map(|b| b.id.clone())
            .collect();
        if expired.is_empty() {
            continue;
        }
        if dry_run {
            println!("would terminate bake builder(s) {} in {region}", expired.join(", "));
        } else {
            cloud.terminate_instances(&expired).await?;
            println!("terminated bake builder(s) {} in {region}: their bake run is long over", expired.join(", "));
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(Error::Failed(format!("could not destroy {}; run reap again", failures.join(", ")))) }
}

/// Every lock epoch of `cluster` has expired.
async fn locks_are_stale<C: Cloud>(cloud: &C, cluster: &str) -> Result<bool> {
    let now = crate::adapters::clock::now();
    Ok(cloud.locks(cluster).await?.iter().all(|(_, l)| lock::is_stale(l, now)))
}
