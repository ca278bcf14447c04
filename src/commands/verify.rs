//! `hybrid verify FILE`: the workload and checks of `verify`, run against
//! the cluster's API, reported one line each, then cleaned up.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;

use super::shared::args::AwsArgs;
use super::shared::connect::{cloud, kube_client, stored_secrets};
use super::shared::files::load_spec;
use super::shared::terminal::{Ui, progress};
use crate::adapters::Cloud;
use crate::adapters::kube::{KubeApi, KubeResult};
use crate::cluster::converge::converge_objects;
use crate::cluster::objects::KubeObject;
use crate::day2::verify::{self, Step, job_outcome};
use crate::error::{Error, Result};
use crate::retry::Retry;

#[derive(Debug, clap::Args)]
#[command(
    about = "Deploy a small Linux + Windows workload and check the cluster works end to end",
    long_about = "\
Deploy nginx on Linux and a Windows web server for each Windows build (through its RuntimeClass) \
into the namespace hybrid-verify, then run the checks of the Kubernetes Windows guide as Jobs: \
pod-to-pod across Linux and Windows, Service ClusterIP, DNS from both sides, NodePort from a \
node, outbound from a Windows pod, and (Calico only) a NetworkPolicy that lets only Windows \
pods reach nginx. Each check reports pass or fail with its time; everything is deleted \
afterwards. The manifests are in examples/verify/.",
    after_help = "Exits 0 when every check passed, 1 otherwise."
)]
pub struct Args {
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Reach the API server here instead of the control plane's public address.
    #[arg(long, value_name = "URL")]
    pub api_server: Option<String>,
    /// How long each check may take (Windows images are large to pull), e.g. 15m; a bare number is seconds.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::model::duration::flag_seconds)]
    pub check_timeout: Duration,
    /// How often to look while waiting (tests shorten it).
    #[arg(long, value_name = "MS", default_value_t = 5000, hide = true)]
    pub poll_ms: u64,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let spec = load_spec(ui, &args.file, &args.set)?;
    let steps = verify::plan(&spec)?;
    let cloud = cloud(&spec, &args.aws).await?;
    let inventory = cloud.discover(&spec.name).await?;
    let secrets = stored_secrets(&cloud, &spec.name).await?;
    let api = kube_client(&spec, &inventory, &secrets, &args.aws, args.api_server.as_deref()).await?;
    let poll = Duration::from_millis(args.poll_ms);
    // One look that is not waited past: a cluster out of reach (a wrong
    // --api-server, a certificate, a destroyed control plane) fails now,
    // not after every check's timeout.
    api.get("/version").await?;
    // A namespace from a run just before may still be terminating: new
    // objects in it would be refused.
    namespace_gone(&api, poll, args.check_timeout).await?;
    let mut created: Vec<KubeObject> = Vec::new();
    let run = run_steps(&api, &steps, &mut created, args.check_timeout, poll).await;
    // Clean up whatever happened, newest first, the namespace last.
    for o in created.iter().rev() {
        if let Err(e) = api.delete(&o.path()).await {
            eprintln!("warning: could not delete {}: {e}", o.describe());
        }
    }
    if let Err(e) = namespace_gone(&api, poll, args.check_timeout).await {
        eprintln!("warning: {e}");
    }
    progress(&format!("cleaned up {} object(s) in namespace {}", created.len(), verify::NAMESPACE));
    let results = run?;
    let failed = results.iter().filter(|(_, ok, _)| !ok).count();
    println!("\n{} check(s): {} passed, {failed} failed", results.len(), results.len() - failed);
    if failed == 0 { Ok(()) } else { Err(Error::Failed(format!("{failed} verify check(s) failed"))) }
}

/// Waits until the verify namespace no longer exists (namespaces pass
/// through Terminating while their contents go).
async fn namespace_gone<K: KubeApi>(api: &K, poll: Duration, timeout: Duration) -> Result<()> {
    let mut retry = Retry::polling(poll, timeout);
    let mut said = false;
    loop {
        let Some(found) = retry.tolerate(api.get_of::<Namespace>(None, verify::NAMESPACE).await).await? else { continue };
        let Some(ns) = found else { return Ok(()) };
        if ns.status.and_then(|s| s.phase).as_deref() != Some("Terminating") {
            return Ok(());
        }
        if !said {
            progress(&format!("waiting for namespace {} to finish terminating", verify::NAMESPACE));
            said = true;
        }
        if !retry.wait().await {
            return Err(Error::Failed(format!("namespace {} is still terminating after {}s", verify::NAMESPACE, timeout.as_secs())));
        }
    }
}

/// Runs the steps; returns (check, passed, seconds) per check.
async fn run_steps<K: KubeApi>(
    api: &K,
    steps: &[Step],
    created: &mut Vec<KubeObject>,
    timeout: Duration,
    poll: Duration,
) -> KubeResult<Vec<(String, bool, f64)>> {
    let mut results = Vec::new();
    for step in steps {
        match step {
            Step::Create(objects) => {
                converge_objects(api, objects, &progress).await?;
                created.extend(objects.iter().cloned());
            }
            Step::Skip { name, why } => println!("SKIP  {name:<28} {why}"),
            Step::Check(check) => {
                let mut retry = Retry::polling(poll, timeout);
                if api.get(&check.job.path()).await?.is_some() {
                    api.delete(&check.job.path()).await?;
                }
                api.create(&check.job.collection, &check.job.body).await?;
                created.push(check.job.clone());
                let (passed, timed_out) = loop {
                    let Some(job) = retry.tolerate(api.get(&check.job.path()).await).await? else { continue };
                    let job = job.unwrap_or_default();
                    if let Some(outcome) = job_outcome(&job) {
                        break (outcome, false);
                    }
                    if !retry.wait().await {
                        break (false, true);
                    }
                };
                let secs = retry.elapsed().as_secs_f64();
                println!(
                    "{}  {:<28} {:>6.1}s  {}{}",
                    if passed { "PASS" } else { "FAIL" },
                    check.name,
                    secs,
                    check.what,
                    if timed_out { " (timed out)" } else { "" }
                );
                results.push((check.name.clone(), passed, secs));
            }
        }
    }
    Ok(results)
}
