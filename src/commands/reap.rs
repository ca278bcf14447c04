//! `hybrid reap`: destroys the clusters whose time-to-live has passed.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::destroy;
use crate::adapters::Cloud;
use crate::adapters::aws::connect;
use crate::cli::{AwsArgs, LockArgs};
use crate::error::{Error, Result};

pub async fn reap(aws: &AwsArgs, regions: &[String], dry_run: bool, yes: bool) -> Result<()> {
    if !dry_run && !yes {
        return Err(Error::NotConfirmed("reap destroys clusters unattended: pass --yes, or --dry-run to only list them".into()));
    }
    let regions: Vec<String> = if regions.is_empty() {
        let env = std::env::var("AWS_REGION")
            .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
            .map_err(|_| Error::Failed("no region: pass --region REGION (repeatable) or set AWS_REGION".into()))?;
        vec![env]
    } else {
        regions.to_vec()
    };
    let now = OffsetDateTime::now_utc();
    let mut failures = Vec::new();
    for region in &regions {
        let cloud = connect(region, aws.endpoint_url.as_deref()).await;
        for (cluster, expires) in cloud.expiring_clusters().await? {
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
            let lock = LockArgs { lock_timeout: 0, break_lock: false };
            if let Err(e) = destroy::run(&cloud, &cluster, region, &lock, true).await {
                eprintln!("error: destroying {cluster} in {region}: {e}");
                failures.push(cluster);
            }
        }
    }
    if failures.is_empty() { Ok(()) } else { Err(Error::Failed(format!("could not destroy {}; run reap again", failures.join(", ")))) }
}
