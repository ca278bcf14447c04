//! `hybrid list`: every cluster hybrid made in the account, found by its
//! tags in each region asked for, without the cluster files.

use super::shared::args::{AwsArgs, OutputFormat};
use super::shared::connect::{cloud_in, regions};
use crate::adapters::Cloud;
use crate::day2::list::{ClusterRow, row, to_text};
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
#[command(
    about = "List every cluster hybrid made in the account (no files needed)",
    long_about = "\
List every cluster hybrid made, found by its tags in AWS: name, region, state (complete; partial: \
something missing, stopped or starting; half-destroyed: no instances left but network, parameters \
or roles are; expired: its ttl has passed and `hybrid reap` will destroy it), who made it, when, \
when it expires, its pools with their Linux (L) and Windows (W) nodes, and an estimated on-demand \
cost per hour. Regions: the global --region (repeatable), --all-regions, or the AWS CLI's region \
chain. --output json prints an array of clusters (shape: docs/json.md), each with name, region, owner, created, \
expires, expires_in_seconds, state, pools, usd_per_hour and missing.",
    after_help = "Exit codes: 0 success (also when there are no clusters), 1 failure, 64 usage error."
)]
pub struct Args {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Every region the account has enabled (EC2 DescribeRegions).
    #[arg(long)]
    pub all_regions: bool,
    /// Output format: text for people, json for scripts (one document on
    /// stdout; every key in docs/json.md).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub async fn run(args: &Args) -> Result<()> {
    let regions = if args.all_regions {
        // DescribeRegions answers in any region; the configured one if there is one.
        let seed = regions().await.ok().and_then(|r| r.into_iter().next()).unwrap_or_else(|| "us-east-1".into());
        cloud_in(&seed, &args.aws).await.regions().await?
    } else {
        regions().await?
    };
    let now = crate::adapters::clock::now();
    // Every region at once: their answers wait for nothing of each other
    // (the shared client keeps the calls within --parallelism).
    let found = futures_util::future::try_join_all(regions.iter().map(|region| async move {
        let cloud = cloud_in(region, &args.aws).await;
        Ok::<_, Error>(cloud.clusters().await?.iter().map(|f| row(f, region, now)).collect::<Vec<_>>())
    }))
    .await?;
    let mut rows: Vec<ClusterRow> = found.into_iter().flatten().collect();
    rows.sort_by(|a, b| (&a.region, &a.name).cmp(&(&b.region, &b.name)));
    match args.output {
        OutputFormat::Text => print!("{}", to_text(&rows)),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize")),
    }
    Ok(())
}
