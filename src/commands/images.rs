//! `hybrid images [--prune]`: the images `hybrid bake` made, and removing
//! the ones nothing uses.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::shared::args::AwsArgs;
use super::shared::connect::{cloud_in, regions};
use super::shared::terminal::confirm;
use crate::adapters::Cloud;
use crate::error::{Error, Result};
use crate::infra::images::prunable;

#[derive(Debug, clap::Args)]
#[command(
    about = "List the images `hybrid bake` made; --prune removes unused ones",
    long_about = "\
List every baked image in the region with its bake key, what it is for (OS, Kubernetes, CNI and \
containerd versions), age, size and whether an instance runs it. --prune deregisters each image \
no live instance runs and that is not the newest of its kind (the one the next apply would use), \
and deletes its snapshots. Nothing else ever removes baked images: `destroy` leaves them."
)]
pub struct Args {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Remove unused images (and their snapshots).
    #[arg(long)]
    pub prune: bool,
    /// Do not ask before pruning.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Output format: text for people, json for scripts (one document on
    /// stdout; every key in docs/json.md).
    /// Not with --prune.
    #[arg(long, value_enum, default_value_t = super::shared::args::OutputFormat::Text, conflicts_with = "prune")]
    pub output: super::shared::args::OutputFormat,
}

fn age(created: &str, now: OffsetDateTime) -> String {
    match OffsetDateTime::parse(created, &Rfc3339) {
        Ok(t) => {
            let d = now - t;
            if d.whole_days() > 0 { format!("{}d", d.whole_days()) } else { format!("{}h", d.whole_hours().max(0)) }
        }
        Err(_) => "?".into(),
    }
}

pub async fn run(args: &Args) -> Result<()> {
    let regions = regions().await?;
    let [region] = regions.as_slice() else {
        return Err(Error::Failed(format!("images works in one region at a time, not {}", regions.join(", "))));
    };
    let cloud = cloud_in(region, &args.aws).await;
    let images = cloud.baked_images().await?;
    if args.output == super::shared::args::OutputFormat::Json {
        let ids: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
        let in_use = if ids.is_empty() { Default::default() } else { cloud.images_in_use(&ids).await? };
        let mut sorted: Vec<_> = images.iter().collect();
        sorted.sort_by(|a, b| (&a.line, &b.created).cmp(&(&b.line, &a.created)));
        let list: Vec<serde_json::Value> = sorted
            .into_iter()
            .map(|i| {
                serde_json::json!({ "id": i.id, "key": i.key, "state": i.state, "created": i.created, "size_gb": i.size_gb,
                                    "in_use": in_use.contains(&i.id), "for": i.line, "snapshots": i.snapshots })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list).expect("JSON serializes"));
        return Ok(());
    }
    if images.is_empty() {
        println!("No baked images in {region}: `hybrid bake FILE` makes them.");
        return Ok(());
    }
    let ids: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
    let in_use = cloud.images_in_use(&ids).await?;
    let now = OffsetDateTime::now_utc();
    println!("{:<22} {:<17} {:<9} {:>5} {:>6}  {:<6} FOR", "IMAGE", "KEY", "STATE", "AGE", "SIZE", "IN USE");
    let mut sorted: Vec<_> = images.iter().collect();
    sorted.sort_by(|a, b| (&a.line, &b.created).cmp(&(&b.line, &a.created)));
    for i in sorted {
        println!(
            "{:<22} {:<17} {:<9} {:>5} {:>4}GB  {:<6} {}",
            i.id,
            i.key,
            i.state,
            age(&i.created, now),
            i.size_gb,
            if in_use.contains(&i.id) { "yes" } else { "no" },
            i.line
        );
    }
    if !args.prune {
        return Ok(());
    }
    let doomed = prunable(&images, &in_use);
    if doomed.is_empty() {
        println!("\nNothing to prune: every image is in use or the newest of its kind.");
        return Ok(());
    }
    println!(
        "\nPruning removes {} image(s) and their snapshots: {}",
        doomed.len(),
        doomed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>().join(", ")
    );
    confirm("Remove these images?", args.yes).await?;
    // The images wait for nothing of each other: all at once.
    futures_util::future::try_join_all(doomed.into_iter().map(|i| {
        let cloud = &cloud;
        async move {
            cloud.delete_image(i).await?;
            println!("removed {} ({} snapshot(s))", i.id, i.snapshots.len());
            Ok::<_, Error>(())
        }
    }))
    .await?;
    Ok(())
}
