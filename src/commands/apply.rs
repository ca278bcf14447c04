//! `hybrid apply FILE`: plan, confirm, execute, under the cluster lock.

use std::path::Path;
use std::time::Duration;

use super::Ui;
use super::cluster::{cloud, confirm, expiry, load_templates, lock, prepare, print_api_stats, progress};
use super::validate::load_spec;
use crate::adapters::Cloud;
use crate::cli::{AwsArgs, LockArgs};
use crate::error::{Error, Result};
use crate::execute::{self, Context};
use crate::show;

pub struct ApplyOptions<'a> {
    pub aws: &'a AwsArgs,
    pub lock: &'a LockArgs,
    pub yes: bool,
    pub templates: Option<&'a Path>,
    pub api_stats: bool,
}

pub async fn apply(ui: &Ui, file: &Path, opts: &ApplyOptions<'_>) -> Result<()> {
    let spec = load_spec(ui, file)?;
    let templates = load_templates(opts.templates)?;
    let cloud = cloud(&spec, opts.aws).await;
    let result = run(&cloud, &spec, &templates, opts).await;
    if opts.api_stats {
        print_api_stats(&cloud);
    }
    result
}

async fn run<C: Cloud>(
    cloud: &C,
    spec: &crate::model::ClusterSpec,
    templates: &crate::bootstrap::Templates,
    opts: &ApplyOptions<'_>,
) -> Result<()> {
    // A first look without the lock: when nothing changes, nothing is
    // written, not even the lock.
    let first = prepare(cloud, spec, templates).await?;
    if first.plan.is_empty() {
        print!("{}", show::plan_text(&first.plan));
        return Ok(());
    }
    lock(cloud, &spec.name, opts.lock).await?;
    let outcome = async {
        // Plan again under the lock: another run may have changed things.
        let prepared = prepare(cloud, spec, templates).await?;
        print!("{}", show::plan_text(&prepared.plan));
        if prepared.plan.is_empty() {
            return Ok(());
        }
        confirm("Do you want to perform these actions?", opts.yes)?;
        let ctx = Context {
            desired: &prepared.desired,
            inventory: &prepared.inventory,
            secrets: &prepared.secrets,
            bootstraps: &prepared.bootstraps,
            key_name: spec.ssh_key_name.as_deref(),
            expires: expiry(spec, &prepared.inventory),
            run_id: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
            ),
            terminate_timeout: Duration::from_secs(900),
        };
        tokio::select! {
            r = execute::apply(cloud, &prepared.plan, &ctx, &progress) => r.map_err(Error::from),
            _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
        }?;
        let s = prepared.plan.summary();
        println!("\nApply complete! Resources: {} added, {} changed, {} destroyed.", s.add, s.change, s.destroy);
        Ok(())
    }
    .await;
    // The lock goes whatever happened; what was created is tagged.
    if let Err(e) = cloud.unlock(&spec.name).await {
        eprintln!("warning: could not release the cluster lock: {e}; the next run takes it over once it expires, or pass --break-lock");
    }
    outcome
}
