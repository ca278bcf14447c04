//! `hybrid plan FILE`: the diff between the file and AWS, changing nothing.

use std::path::Path;

use super::Ui;
use super::cluster::{cloud, kube_client, load_templates, prepare, prepare_offline, print_api_stats};
use super::validate::load_spec;
use crate::adapters::Cloud;
use crate::adapters::kube::KubeApi;
use crate::cli::{AwsArgs, ClusterArgs, OutputFormat};
use crate::cluster::{CalicoApi, desired_objects};
use crate::converge::{expected_nodes, pending_changes, pools_by_node};
use crate::desired::secrets_parameter_name;
use crate::error::{EXIT_CHANGES, Result};
use crate::inventory::Inventory;
use crate::model::ClusterSpec;
use crate::pki::ClusterSecrets;
use crate::show;

pub struct PlanOptions<'a> {
    pub aws: &'a AwsArgs,
    pub cluster: &'a ClusterArgs,
    pub offline: bool,
    pub detailed_exitcode: bool,
    pub output: OutputFormat,
    pub templates: Option<&'a Path>,
    pub api_stats: bool,
}

/// Returns the exit code: 0, or 2 for changes with --detailed-exitcode.
pub async fn plan(ui: &Ui, file: &Path, opts: &PlanOptions<'_>) -> Result<i32> {
    let spec = load_spec(ui, file)?;
    let templates = load_templates(opts.templates)?;
    let (plan, kube) = if opts.offline {
        (prepare_offline(&spec, &templates)?, KubeView::NotAsked)
    } else {
        let cloud = cloud(&spec, opts.aws).await;
        let prepared = prepare(&cloud, &spec, &templates).await;
        let kube = match &prepared {
            Ok(p) if !opts.cluster.ec2_only => kube_view(&cloud, &spec, &p.inventory, opts.cluster).await,
            _ => KubeView::NotAsked,
        };
        if opts.api_stats {
            print_api_stats(&cloud);
        }
        (prepared?.plan, kube)
    };
    let kube_changes = match &kube {
        KubeView::Changes(c) => c.clone(),
        _ => Vec::new(),
    };
    match opts.output {
        OutputFormat::Text => {
            print!("{}", show::plan_text(&plan));
            match &kube {
                KubeView::Changes(c) if !c.is_empty() => {
                    println!("\nKubernetes objects apply will write:");
                    for (sym, what) in c {
                        println!("  {sym:>3} {what}");
                    }
                }
                KubeView::Unreachable(why) => println!("\nKubernetes: {why}; cluster-level changes are not shown."),
                _ => {}
            }
            println!("\n{}", crate::cost::estimate(&spec).to_text().trim_end());
        }
        OutputFormat::Json => {
            let mut v: serde_json::Value = serde_json::from_str(&show::plan_json(&plan)).expect("plan JSON parses");
            v["kubernetes"] =
                serde_json::json!(kube_changes.iter().map(|(s, w)| serde_json::json!({ "action": s, "object": w })).collect::<Vec<_>>());
            println!("{}", serde_json::to_string_pretty(&v).expect("JSON serializes"));
        }
    }
    let changes = !plan.is_empty() || !kube_changes.is_empty();
    Ok(if opts.detailed_exitcode && changes { EXIT_CHANGES } else { 0 })
}

/// What the plan knows of the Kubernetes side.
enum KubeView {
    NotAsked,
    Unreachable(String),
    Changes(Vec<(&'static str, String)>),
}

/// Cluster-level differences when the API answers within a few seconds;
/// a plan never waits for a cluster that is still booting.
async fn kube_view<C: Cloud>(cloud: &C, spec: &ClusterSpec, inventory: &Inventory, args: &ClusterArgs) -> KubeView {
    let stored = match cloud.get_parameter(&secrets_parameter_name(&spec.name)).await {
        Ok(Some(s)) => s,
        _ => return KubeView::NotAsked,
    };
    let Ok(secrets) = ClusterSecrets::from_stored(&stored) else { return KubeView::NotAsked };
    let api = match kube_client(spec, inventory, &secrets, args.api_server.as_deref()).await {
        Ok(api) => api,
        Err(e) => return KubeView::Unreachable(e.to_string()),
    };
    let look = async {
        api.get("/version").await?;
        let calico = CalicoApi::detect(&api.api_groups().await?);
        let objects = desired_objects(spec, calico, &spec.api_server_ip().map(|ip| ip.to_string()).unwrap_or_default());
        let expected = expected_nodes(inventory);
        pending_changes(&api, &objects, &pools_by_node(spec, &expected)).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), look).await {
        Ok(Ok(changes)) => KubeView::Changes(changes),
        Ok(Err(e)) => KubeView::Unreachable(format!("the API server did not answer ({e})")),
        Err(_) => KubeView::Unreachable("the API server did not answer within 10s".into()),
    }
}
