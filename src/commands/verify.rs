//! `hybrid verify FILE`: the workload and checks of `verify`, run against
//! the cluster's API, reported one line each, then cleaned up.

use std::path::Path;
use std::time::{Duration, Instant};

use super::Ui;
use super::cluster::{cloud, kube_client, progress, stored_secrets};
use super::validate::load_spec;
use crate::adapters::Cloud;
use crate::adapters::kube::{KubeApi, KubeResult};
use crate::cluster::KubeObject;
use crate::converge::converge_objects;
use crate::error::{Error, Result};
use crate::verify::{self, Step, job_outcome};

pub async fn verify(
    ui: &Ui,
    file: &Path,
    aws: &crate::cli::AwsArgs,
    api_server: Option<&str>,
    check_timeout: u64,
    poll_ms: u64,
) -> Result<()> {
    let spec = load_spec(ui, file)?;
    let steps = verify::plan(&spec)?;
    let cloud = cloud(&spec, aws).await;
    let inventory = cloud.discover(&spec.name).await?;
    let secrets = stored_secrets(&cloud, &spec.name).await?;
    let api = kube_client(&spec, &inventory, &secrets, api_server).await?;
    let mut created: Vec<KubeObject> = Vec::new();
    let run = run_steps(&api, &steps, &mut created, Duration::from_secs(check_timeout), Duration::from_millis(poll_ms)).await;
    // Clean up whatever happened, newest first, the namespace last.
    for o in created.iter().rev() {
        if let Err(e) = api.delete(&o.path()).await {
            eprintln!("warning: could not delete {}: {e}", o.describe());
        }
    }
    progress(&format!("cleaned up {} object(s) in namespace {}", created.len(), verify::NAMESPACE));
    let results = run?;
    let failed = results.iter().filter(|(_, ok, _)| !ok).count();
    println!("\n{} check(s): {} passed, {failed} failed", results.len(), results.len() - failed);
    if failed == 0 { Ok(()) } else { Err(Error::Failed(format!("{failed} verify check(s) failed"))) }
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
                let start = Instant::now();
                if api.get(&check.job.path()).await?.is_some() {
                    api.delete(&check.job.path()).await?;
                }
                api.create(&check.job.collection, &check.job.body).await?;
                created.push(check.job.clone());
                let passed = loop {
                    let job = api.get(&check.job.path()).await?.unwrap_or_default();
                    if let Some(outcome) = job_outcome(&job) {
                        break outcome;
                    }
                    if start.elapsed() >= timeout {
                        break false;
                    }
                    tokio::time::sleep(poll).await;
                };
                let secs = start.elapsed().as_secs_f64();
                let timed_out = !passed && start.elapsed() >= timeout;
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
