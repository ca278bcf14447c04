//! `hybrid extend FILE DURATION`: the cluster lives on: its expiry moves to
//! now + DURATION on every resource, so `hybrid reap` keeps it until then.

use std::path::PathBuf;

use time::format_description::well_known::Rfc3339;

use super::shared::args::{AwsArgs, ClusterRef, LockArgs, SetArgs, lock_owner};
use super::shared::connect::{cloud_in, cluster_identity};
use super::shared::terminal::{Interrupt, Ui};
use crate::adapters::Cloud;
use crate::error::{Error, Result};
use crate::infra::lock;

#[derive(Debug, clap::Args)]
#[command(
    about = "Move the cluster's expiry to now + DURATION (reap keeps it until then)",
    long_about = "\
Set the cluster's hybrid:expires tag to now + DURATION on every resource it has (instances and \
their volumes, network, SSM parameters, roles and instance profiles), so `hybrid reap` keeps it \
until then and resources a later apply creates carry the same expiry. DURATION is 10m to 90d, \
written as in the file's ttl (6h, 2d, 1h30m). A cluster made without a ttl gets one. Only the \
cluster's name and region are read from FILE.",
    after_help = "Exit codes: 0 success, 1 failure (no such cluster, a tag not written: run it again), 64 usage error."
)]
pub struct Args {
    pub file: PathBuf,
    /// How long from now, e.g. 6h, 2d, 1h30m.
    #[arg(value_parser = parse_duration)]
    pub duration: std::time::Duration,
    #[command(flatten)]
    pub set: SetArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub lock: LockArgs,
}

fn parse_duration(text: &str) -> std::result::Result<std::time::Duration, String> {
    let d = crate::model::duration::parse(text, None)?;
    if !(600..=90 * 86_400).contains(&d.as_secs()) {
        return Err(format!("{} is outside 10m to 90d, the range of a ttl", crate::model::duration::show(d)));
    }
    Ok(d)
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let cluster = ClusterRef { file: Some(args.file.clone()), name: None, set: args.set.clone() };
    let (name, region) = cluster_identity(ui, &cluster, "extend").await?;
    let cloud = cloud_in(&region, &args.aws).await;
    if cloud.discover(&name).await?.is_empty() {
        return Err(Error::Failed(format!("there is no cluster {name} in {region} to extend (`hybrid list` shows the clusters there)")));
    }
    let interrupt = Interrupt::listen();
    let progress = ui.reporter();
    let (me, wait) = (lock_owner(), args.lock.wait());
    let held = tokio::select! {
        r = lock::take(&cloud, &name, &me, &wait, &progress) => r?,
        _ = interrupt.wait() => return Err(Error::Interrupted),
    };
    let at = crate::adapters::clock::now() + time::Duration::seconds(args.duration.as_secs() as i64);
    let expires = at.replace_nanosecond(0).expect("zero is valid").format(&Rfc3339).expect("a UTC time formats");
    let outcome = tokio::select! {
        r = lock::while_held(&cloud, &held, cloud.set_expiry(&name, &expires)) => r.map_err(Error::from).and_then(|r| r.map_err(Error::from)),
        _ = interrupt.wait() => Err(Error::Interrupted),
    };
    if let Err(e) = lock::release(&cloud, &held, &progress).await {
        progress.warn(&format!("warning: could not release the cluster lock: {e}"));
    }
    let tagged = outcome?;
    println!(
        "Cluster {name} in {region} now expires at {expires} (in {}): {tagged} resource(s) tagged; `hybrid reap` keeps it until then.",
        crate::model::duration::show(args.duration)
    );
    Ok(())
}
