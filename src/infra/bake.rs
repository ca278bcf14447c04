//! Carries out `hybrid bake` through a `Cloud`: for each target, launch a
//! builder with the bake script, wait until the script has shut it down
//! (and said so on the console: any other stop makes no image), make an
//! image of it, wait until the image is available, tag it, and
//! terminate the builder. Targets bake in parallel.
//!
//! Resumable like apply: every step looks before it acts (an image with the
//! key, a builder with the key, an image by its unique name), so a run
//! killed at any point continues where it stopped. A builder is never left
//! running: on any failure the builder of that target is terminated.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;

use crate::adapters::{Cloud, CloudError, LaunchRequest};
use crate::day2::timeline::{BakeEnd, bake_end};
use crate::infra::desired::TAG_EXPIRES;
use crate::infra::images::{
    BakeTarget, BakedImage, TAG_BAKE_BUILDER, TAG_BAKE_KEY, TAG_BAKE_LINE, TAG_BAKED_FROM, builder_disk_gb, image_name,
};
use crate::progress::{Event, Progress};
use crate::retry::Retry;

#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error(transparent)]
    Cloud(#[from] CloudError),
    #[error(
        "no network for the builder: the region has no default VPC; create one (`aws ec2 create-default-vpc`) or pass --subnet and --security-group"
    )]
    NoNetwork,
    #[error("{}", failures.iter().map(|(key, e)| format!("image {key}: {e}")).collect::<Vec<_>>().join("\n"))]
    Targets { failures: Vec<(String, String)> },
}

/// How a target ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An available image with the key existed already.
    Existed(String),
    Baked(String),
}

pub struct Options {
    /// Where builders run: (subnet, security group); `None` for the default VPC.
    pub network: Option<(String, String)>,
    /// How long a builder may take to install everything and shut down.
    pub builder_timeout: Duration,
    pub image_timeout: Duration,
    pub poll: Duration,
    /// RFC 3339: builders carry it as `hybrid:expires`, so `reap` ends one a
    /// crash left behind.
    pub builder_expires: String,
    pub run_id: String,
}

pub async fn bake<C: Cloud>(
    cloud: &C,
    targets: &[BakeTarget],
    opts: &Options,
    progress: &impl Progress,
) -> Result<Vec<(String, Outcome)>, BakeError> {
    let network = match &opts.network {
        Some(n) => n.clone(),
        None => cloud.default_network().await?.ok_or(BakeError::NoNetwork)?,
    };
    let runs = targets.iter().map(|t| {
        let network = &network;
        async move {
            let result = bake_one(cloud, t, network, opts, progress).await;
            (t.key.clone(), result)
        }
    });
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for (key, result) in join_all(runs).await {
        match result {
            Ok(outcome) => done.push((key, outcome)),
            Err(e) => failures.push((key, e)),
        }
    }
    if failures.is_empty() { Ok(done) } else { Err(BakeError::Targets { failures }) }
}

/// The builders and images of `key` as they are now.
async fn builders_of<C: Cloud>(cloud: &C, key: &str) -> Result<Vec<(String, String)>, CloudError> {
    Ok(cloud.bake_builders().await?.into_iter().filter(|b| b.key == key).map(|b| (b.id, b.state)).collect())
}

async fn bake_one<C: Cloud>(
    cloud: &C,
    t: &BakeTarget,
    network: &(String, String),
    opts: &Options,
    progress: &impl Progress,
) -> Result<Outcome, String> {
    let what = format!("{} ({})", t.key, t.pools.join(", "));
    let existing = cloud.baked_images().await.map_err(|e| e.to_string())?;
    if let Some(i) = existing.iter().find(|i| i.key == t.key && i.state == "available") {
        progress.line(&format!("image {what}: {} exists already", i.id));
        tag_snapshots(cloud, t, i, progress).await.map_err(|e| e.to_string())?;
        // A run killed after CreateImage leaves its builder: end it now.
        let left: Vec<String> = builders_of(cloud, &t.key).await.map_err(|e| e.to_string())?.into_iter().map(|(id, _)| id).collect();
        if !left.is_empty() {
            cloud.terminate_instances(&left).await.map_err(|e| e.to_string())?;
            progress.line(&format!("image {what}: leftover builder(s) {} terminated", left.join(", ")));
        }
        return Ok(Outcome::Existed(i.id.clone()));
    }
    // Resume: a builder of this key from a run that was killed.
    let mut builder = builders_of(cloud, &t.key).await.map_err(|e| e.to_string())?.into_iter().next().map(|(id, _)| id);
    // An image already being made (a run stopped after CreateImage) is
    // waited for, not made again: its builder may be gone by now.
    let pending = existing.iter().find(|i| i.key == t.key && i.state == "pending").map(|i| i.id.clone());
    let result = async {
        if pending.is_none() {
            let id = match &builder {
                Some(id) => {
                    progress.line(&format!("image {what}: resuming with builder {id}"));
                    id.clone()
                }
                None => {
                    let id = launch_builder(cloud, t, network, opts).await?;
                    progress.line(&format!("image {what}: builder {id} launched from {} ({})", t.base.id, t.instance_type));
                    builder = Some(id.clone());
                    id
                }
            };
            wait_stopped(cloud, &id, &what, opts, progress).await?;
            check_sealed(cloud, &id).await?;
        }
        let tags = image_tags(t);
        let image = match &pending {
            Some(image) => {
                progress.line(&format!("image {what}: {image} is still being created; waiting for it"));
                image.clone()
            }
            None => {
                let id = builder.clone().unwrap_or_default();
                let image = cloud.create_image(&id, &image_name(t.os, &t.key), &tags).await.map_err(|e| e.to_string())?;
                progress.line(&format!("image {what}: {image} being created"));
                image
            }
        };
        wait_available(cloud, &t.key, &what, opts, progress).await?;
        let snapshots: Vec<String> = cloud
            .baked_images()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|i| i.id == image)
            .flat_map(|i| i.snapshots)
            .collect();
        cloud.tag(&snapshots, &tags).await.map_err(|e| e.to_string())?;
        Ok::<String, String>(image)
    }
    .await;
    // The builder goes whatever happened (an image, once created, no longer needs it).
    if let Some(id) = &builder {
        match cloud.terminate_instances(std::slice::from_ref(id)).await {
            Ok(()) => progress.line(&format!("image {what}: builder {id} terminated")),
            Err(e) => {
                progress.line(&format!("warning: could not terminate builder {id}: {e}; `hybrid bake` again or `hybrid reap` ends it"))
            }
        }
    }
    if let Err(e) = &result {
        // A half-made image of this key would block nothing but is garbage.
        if let Ok(images) = cloud.baked_images().await {
            for i in images.iter().filter(|i| i.key == t.key && i.state != "available") {
                let _ = cloud.delete_image(i).await;
            }
        }
        return Err(e.clone());
    }
    result.map(Outcome::Baked)
}

/// Tags the snapshots of an existing image of `t` that lack its key: a run
/// killed between CreateImage and tagging left them so, and nothing (no
/// prune, no reap) would ever find them.
pub async fn tag_snapshots<C: Cloud>(cloud: &C, t: &BakeTarget, image: &BakedImage, progress: &impl Progress) -> Result<(), CloudError> {
    let untagged = cloud.snapshots_without_tag(&image.snapshots, TAG_BAKE_KEY).await?;
    if !untagged.is_empty() {
        cloud.tag(&untagged, &image_tags(t)).await?;
        progress.line(&format!("image {}: snapshot(s) {} tagged", t.key, untagged.join(", ")));
    }
    Ok(())
}

/// What a baked image and its snapshots are tagged with.
fn image_tags(t: &BakeTarget) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    tags.insert(TAG_BAKE_KEY.to_string(), t.key.clone());
    tags.insert(TAG_BAKE_LINE.to_string(), t.line.clone());
    tags.insert(TAG_BAKED_FROM.to_string(), t.base.id.clone());
    tags.insert("Name".to_string(), image_name(t.os, &t.key));
    tags
}

async fn launch_builder<C: Cloud>(cloud: &C, t: &BakeTarget, network: &(String, String), opts: &Options) -> Result<String, String> {
    let mut tags = BTreeMap::new();
    tags.insert(TAG_BAKE_KEY.to_string(), t.key.clone());
    tags.insert(TAG_BAKE_BUILDER.to_string(), "true".to_string());
    tags.insert(TAG_EXPIRES.to_string(), opts.builder_expires.clone());
    tags.insert("Name".to_string(), format!("hybrid-bake-builder-{}", t.key));
    let token = crate::infra::desired::fingerprint(format!("bake/{}/{}", t.key, opts.run_id).as_bytes())[..32].to_string();
    tags.insert(crate::infra::desired::TAG_CREATE_TOKEN.to_string(), token.clone());
    let request = LaunchRequest {
        ami: t.base.clone(),
        instance_type: t.instance_type.clone(),
        subnet_id: network.0.clone(),
        security_group_ids: vec![network.1.clone()],
        private_ip: None,
        user_data: t.user_data.clone(),
        disk_gb: builder_disk_gb(t.os),
        spot: false,
        key_name: None,
        instance_profile: t.profile.as_ref().map(|p| p.name.clone()),
        tags,
        client_token: token,
    };
    if let Some(profile) = &t.profile {
        let tags = BTreeMap::from([("hybrid:bake-builder-role".to_string(), "true".to_string())]);
        cloud.ensure_instance_profile(profile, &tags).await.map_err(|e| e.to_string())?;
    }
    cloud.run_instance(&request).await.map(|l| l.id).map_err(|e| e.to_string())
}

/// The bake script shuts the builder down when it is done.
async fn wait_stopped<C: Cloud>(cloud: &C, id: &str, what: &str, opts: &Options, progress: &impl Progress) -> Result<(), String> {
    let mut poll = Retry::polling(opts.poll, opts.builder_timeout);
    loop {
        let Some(states) = poll.tolerate(cloud.instance_states(&[id.to_string()]).await).await.map_err(|e| e.to_string())? else {
            continue;
        };
        match states.get(id).map(String::as_str) {
            Some("stopped") => {
                progress.line(&format!("image {what}: builder {id} finished its script ({}s)", poll.elapsed().as_secs()));
                return Ok(());
            }
            Some("pending" | "running" | "stopping") => {}
            other => return Err(format!("builder {id} is {} instead of stopping", other.unwrap_or("gone"))),
        }
        let report = poll.report_due(Duration::from_secs(30));
        let label = format!("builder {id} ({what}) to install and shut down");
        progress.event(&Event::Waiting { what: &label, elapsed: poll.elapsed(), report });
        if !poll.wait().await {
            return Err(format!(
                "builder {id} did not finish within {}s; its console output (`aws ec2 get-console-output --instance-id {id}`) shows the last stage",
                opts.builder_timeout.as_secs()
            ));
        }
    }
}

/// Any stop of a builder looks alike from outside (its script's shutdown,
/// a maintenance event, a person): only the script's own last word on the
/// console, `bake done`, makes it an image.
async fn check_sealed<C: Cloud>(cloud: &C, id: &str) -> Result<(), String> {
    let console = cloud.console_output(id).await.map_err(|e| e.to_string())?;
    let last_lines = || {
        let lines: Vec<&str> = console.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(5)..].join("\n  ")
    };
    match bake_end(&console) {
        BakeEnd::Sealed => Ok(()),
        BakeEnd::Failed(why) => Err(format!("builder {id}: the bake script could not seal the image ({why}); no image was made")),
        BakeEnd::Unfinished => Err(format!(
            "builder {id} stopped before its bake script said it was done (a maintenance event, or someone stopping it?); no image was made. Its console ends:\n  {}",
            last_lines()
        )),
    }
}

/// How long a just-made image may be missing from DescribeImages (EC2 is
/// eventually consistent) before it counts as gone.
const IMAGE_SHOWS_UP_WITHIN: Duration = Duration::from_secs(120);

async fn wait_available<C: Cloud>(cloud: &C, key: &str, what: &str, opts: &Options, progress: &impl Progress) -> Result<(), String> {
    let mut poll = Retry::polling(opts.poll, opts.image_timeout);
    let mut seen = false;
    loop {
        let Some(images) = poll.tolerate(cloud.baked_images().await).await.map_err(|e| e.to_string())? else { continue };
        match images.iter().find(|i| i.key == key).map(|i| i.state.as_str()) {
            Some("available") => {
                progress.line(&format!("image {what}: available ({}s)", poll.elapsed().as_secs()));
                return Ok(());
            }
            Some("pending") => seen = true,
            // Deregistered while it was being made (a prune elsewhere, a
            // person): waiting longer cannot bring it back.
            None if seen || poll.elapsed() >= IMAGE_SHOWS_UP_WITHIN => {
                return Err(format!(
                    "the image of {what} disappeared while it was being made (deregistered by someone else?); run bake again to make another"
                ));
            }
            None => {}
            Some(other) => return Err(format!("the image of {what} is {other}")),
        }
        let label = format!("image {what}");
        progress.event(&Event::Waiting { what: &label, elapsed: poll.elapsed(), report: false });
        if !poll.wait().await {
            return Err(format!("the image of {what} was not available within {}s", opts.image_timeout.as_secs()));
        }
    }
}
