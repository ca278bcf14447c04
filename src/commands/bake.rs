//! `hybrid bake FILE [--pool NAME]...`: node images with everything
//! installed that does not depend on the cluster, so a node boots with no
//! download and no reboot before it joins.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::shared::args::AwsArgs;
use super::shared::connect::cloud;
use super::shared::files::load_spec;
use super::shared::prepare::{bake_target, load_templates};
use super::shared::terminal::{Ui, confirm, print_api_stats};
use crate::adapters::Cloud;
use crate::adapters::clock::rfc3339_from_now;
use crate::error::{Error, Result};
use crate::infra::bake::{self, Options, Outcome};
use crate::infra::desired::ami_lookup;
use crate::infra::images::BakeTarget;
use crate::progress::Event;
use crate::progress::Progress;

#[derive(Debug, clap::Args)]
#[command(
    about = "Build node images with everything installed, so nodes join without downloads or reboots",
    long_about = "\
For each distinct image the file's pools need (one per OS and Windows build, Kubernetes, CNI and \
containerd versions and base image), launch a builder instance from the base image with the bake \
script: the node bootstrap rendered from the same templates and version table, in `bake` mode. It \
runs every stage that does not depend on the cluster (on Windows the Containers feature and its \
reboot, containerd, kubelet, kubeadm, nssm, the CNI's binaries, firewall rules; on Linux the \
packages, kernel settings, containerd and the Kubernetes binaries), pre-pulls the images a node runs \
(pause, the CNI's and kube-proxy's, and each pool's `prepull` list), cleans up and shuts down. hybrid \
then makes an image of it, waits until it is available, tags it hybrid:bake-key (a digest of all \
that went in) and terminates the builder.

The next plan and apply use the image for every pool whose key matches (a pool's `image` setting \
can force or forbid that); a node booting from it finds every stage done. Builders run in the \
default VPC (or --subnet / --security-group), carry no cluster secret, and never outlive a failed \
or interrupted run; run bake again to continue where a killed one stopped. `destroy` never touches \
baked images: `hybrid images --prune` removes unused ones.",
    after_help = "Exit codes: 0 success, 1 error (no builder is left running), 64 usage error, 130 interrupted."
)]
pub struct Args {
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Bake only for this pool (repeatable; default: every pool).
    #[arg(long = "pool", value_name = "NAME")]
    pub pools: Vec<String>,
    /// Refused: EC2 Fast Launch takes only images made with Sysprep and
    /// shutdown (AWS's Fast Launch prerequisites), and hybrid's images are
    /// reset for a new instance without Sysprep (docs/windows.md).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fast_launch: u32,
    /// How long a builder may take before the bake is given up and the builder terminated (e.g. 90m, 2h, 1h30m; a bare number is minutes).
    #[arg(long, value_name = "DURATION", default_value = "60m", value_parser = crate::model::duration::flag_minutes)]
    pub timeout: Duration,
    /// Run builders in this subnet (with --security-group) instead of the default VPC.
    #[arg(long, value_name = "SUBNET", requires = "security_group")]
    pub subnet: Option<String>,
    #[arg(long, value_name = "GROUP", requires = "subnet")]
    pub security_group: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Folder with template overrides (as for render).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// How often to look while waiting (tests shorten it).
    #[arg(long, value_name = "MS", default_value_t = 10_000, hide = true)]
    pub poll_ms: u64,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    if args.fast_launch > 0 {
        return Err(Error::Failed(
            "--fast-launch: EC2 Fast Launch takes only images made with Sysprep and shutdown (\"doesn't currently support AMIs \
             that were created from a running instance\", AWS's Fast Launch prerequisites), and from a non-default VPC or with \
             IMDSv2 enforced also a launch template; hybrid's images are reset for a new instance without Sysprep \
             (docs/windows.md), so EC2 would fail to pre-provision them about 30 minutes later. Bake without it"
                .into(),
        ));
    }
    let spec = load_spec(ui, &args.file, &args.set)?;
    let templates = load_templates(args.templates.as_deref())?;
    for name in &args.pools {
        if !spec.pools.iter().any(|p| &p.name == name) {
            let names: Vec<&str> = spec.pools.iter().map(|p| p.name.as_str()).collect();
            return Err(Error::Failed(format!("--pool {name}: no such pool in {} (pools: {})", args.file.display(), names.join(", "))));
        }
    }
    let cloud = cloud(&spec, &args.aws).await?;
    let renderer = crate::bootstrap::Renderer::new(&spec, &templates);
    // One target per distinct key; pools that need the same image share it.
    let mut targets: BTreeMap<String, BakeTarget> = BTreeMap::new();
    // By default the pools that have nodes; --pool also bakes for an empty one.
    for pool in spec.pools.iter().filter(|p| if args.pools.is_empty() { p.count > 0 } else { args.pools.contains(&p.name) }) {
        let base = cloud
            .resolve_ami(&ami_lookup(pool.os), pool.ami.as_ref())
            .await
            .map_err(|e| Error::Ami { group: pool.name.clone(), source: e })?;
        let t = bake_target(&renderer, pool, &base)?;
        match targets.get_mut(&t.key) {
            Some(existing) => existing.pools.push(pool.name.clone()),
            None => {
                targets.insert(t.key.clone(), t);
            }
        }
    }
    let existing = cloud.baked_images().await?;
    let is_baked = |key: &str| existing.iter().any(|i| i.key == key && i.state == "available");
    let reporter = ui.reporter();
    for t in targets.values() {
        if let Some(image) = existing.iter().find(|i| i.key == t.key && i.state == "available") {
            bake::tag_snapshots(&cloud, t, image, &reporter).await?;
        }
    }
    println!("Images for {} in {}:", spec.name, spec.region);
    for t in targets.values() {
        let state = if is_baked(&t.key) { "exists" } else { "+ to bake" };
        println!("  {state:<10} {} key {}  pools {}  from {}", t.line, t.key, t.pools.join(", "), t.base.id);
    }
    // A run killed after CreateImage leaves its builder behind: end it.
    let leftovers: Vec<String> =
        cloud.bake_builders().await?.into_iter().filter(|b| targets.contains_key(&b.key) && is_baked(&b.key)).map(|b| b.id).collect();
    if !leftovers.is_empty() {
        cloud.terminate_instances(&leftovers).await?;
        println!("  terminated leftover builder(s) {} of images that exist", leftovers.join(", "));
    }
    let todo: Vec<BakeTarget> = targets.into_values().filter(|t| !is_baked(&t.key)).collect();
    if todo.is_empty() {
        println!("\nNothing to bake: every pool's image exists.");
        return Ok(());
    }
    println!("\nEach image runs one builder instance until its script finishes (Windows: about 20-30 minutes, Linux: about 5).");
    confirm("Do you want to bake these images?", args.yes).await?;

    let opts = Options {
        network: args.subnet.clone().zip(args.security_group.clone()),
        builder_timeout: args.timeout,
        image_timeout: Duration::from_secs(3600),
        poll: Duration::from_millis(args.poll_ms),
        // A builder a crash left behind is ended by `hybrid reap` after this.
        builder_expires: rfc3339_from_now(args.timeout + Duration::from_secs(3600)),
        run_id: format!("{}-{}", std::process::id(), rfc3339_from_now(Duration::ZERO)),
    };
    let outcome = tokio::select! {
        r = bake::bake(&cloud, &todo, &opts, &reporter) => r.map_err(|e| Error::Failed(e.to_string())),
        _ = tokio::signal::ctrl_c() => {
            // Never leave a builder running: end every builder of these keys.
            let keys: Vec<&str> = todo.iter().map(|t| t.key.as_str()).collect();
            let builders: Vec<String> =
                cloud.bake_builders().await?.into_iter().filter(|b| keys.contains(&b.key.as_str())).map(|b| b.id).collect();
            cloud.terminate_instances(&builders).await?;
            eprintln!("hybrid: interrupted; terminated builder(s) {}; run bake again to start over", builders.join(", "));
            Err(Error::Interrupted)
        }
    };
    reporter.event(&Event::Finished);
    drop(reporter);
    if ui.api_stats {
        print_api_stats(&cloud);
    }
    let done = outcome?;
    let baked = done.iter().filter(|(_, o)| matches!(o, Outcome::Baked(_))).count();
    println!("\nBake complete! {baked} image(s) baked, {} existed. The next plan shows which pools use them.", done.len() - baked);
    Ok(())
}
