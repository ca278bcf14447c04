//! `hybrid plan FILE`: the diff between the file and AWS, changing nothing.

use std::path::PathBuf;

use super::shared::args::{AwsArgs, ClusterArgs, OutputFormat};
use super::shared::connect::{aws_is_emulated, cloud, kube_client};
use super::shared::files::load_spec;
use super::shared::pins;
use super::shared::prepare::{load_templates, prepare, prepare_offline};
use super::shared::terminal::{Ui, print_api_stats};
use crate::adapters::Cloud;
use crate::adapters::kube::KubeApi;
use crate::bootstrap::pki::ClusterSecrets;
use crate::cluster::converge::{expected_nodes, namespaces, pending_changes, pools_by_node, windows_nodes};
use crate::cluster::objects::{CalicoApi, desired_objects};
use crate::error::{EXIT_CHANGES, Error, Result};
use crate::infra::desired::secrets_parameter_name;
use crate::infra::inventory::Inventory;
use crate::infra::show;
use crate::model::ClusterSpec;

#[derive(Debug, clap::Args)]
#[command(
    about = "Show what apply would change in AWS, without changing anything",
    long_about = "\
Compare the file with what runs in AWS (found by the hybrid:cluster tag and the SSM parameters \
under /hybrid/<cluster>/) and print the changes, Terraform-style: + create, - delete, ~ update, \
-/+ replace (with the reason), and a summary line. Secrets are shown only as (sensitive).

Workers are replaced rolling, replace_batch nodes at a time, drained first. Labels and taints \
never replace a node: apply writes them through the API. The control plane is replaced only when \
what it was built from changes (its machine, a pinned image, the Kubernetes or CNI version, the \
cluster's addresses); that loses etcd, so the plan marks it -/+! with a warning that the cluster \
is recreated, and apply refuses it without --recreate-control-plane.

When the plan launches instances, every pinned download and image is checked first (as \
`hybrid versions FILE --check` does): a pin that does not exist is an error here, not a node that \
fails twenty minutes into its boot.

With --offline no AWS credentials are needed: the plan is made against nothing, so a newcomer \
sees at once what a first apply would create; the pins are not checked.",
    after_help = "\
Exit codes: 0 success (with --detailed-exitcode: no changes), 1 error, 2 changes present (only \
with --detailed-exitcode), 64 usage error."
)]
pub struct Args {
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Plan against no existing resources, without AWS calls.
    #[arg(long)]
    pub offline: bool,
    /// Exit 0 for no changes and 2 for changes (1 stays an error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Output format: text for people, json for scripts (one document on
    /// stdout; every key in docs/json.md).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Folder with template overrides (as for render).
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Save the plan here; `hybrid apply PLANFILE` carries out exactly it (or refuses, saying what moved). It holds no secret.
    #[arg(long, value_name = "PLANFILE", conflicts_with = "offline")]
    pub out: Option<PathBuf>,
}

/// Returns the exit code: 0, or 2 for changes with --detailed-exitcode.
pub async fn run(ui: &Ui, opts: &Args) -> Result<i32> {
    let spec = load_spec(ui, &opts.file, &opts.set)?;
    let templates = load_templates(opts.templates.as_deref())?;
    let (plan, kube) = if opts.offline {
        eprintln!("{}", pins::gate(&spec, true, false).await?);
        (prepare_offline(&spec, &templates)?, KubeView::NotAsked("--offline"))
    } else {
        let cloud = cloud(&spec, &opts.aws).await?;
        let prepared = prepare(&cloud, &spec, &templates).await;
        if let Ok(p) = &prepared
            && p.plan.launches()
        {
            eprintln!("{}", pins::gate(&spec, false, aws_is_emulated(&opts.aws)).await?);
        }
        let kube = match &prepared {
            Ok(p) if !opts.cluster.ec2_only => kube_view(&cloud, &spec, &p.inventory, &opts.aws, &opts.cluster).await,
            _ => KubeView::NotAsked("--ec2-only"),
        };
        if ui.api_stats {
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
            print!("{}", show::plan_text_with(&plan, &kube_changes));
            match &kube {
                KubeView::Unreachable(why) => println!("\nKubernetes: {why}; cluster-level changes are unknown."),
                KubeView::Skipped(why) => println!("\nKubernetes: not looked at: {why}."),
                _ => {}
            }
            println!("\n{}", crate::day2::cost::estimate(&spec).to_text().trim_end());
        }
        OutputFormat::Json => {
            let mut v: serde_json::Value = serde_json::from_str(&show::plan_json(&plan)).expect("plan JSON parses");
            v["kubernetes"] =
                serde_json::json!(kube_changes.iter().map(|(s, w)| serde_json::json!({ "action": s, "object": w })).collect::<Vec<_>>());
            v["kubernetes_summary"] = serde_json::json!(show::kube_summary(&kube_changes));
            let (state, why) = match &kube {
                KubeView::Changes(_) => ("compared", None),
                KubeView::NotAsked(why) => ("not-asked", Some(*why)),
                KubeView::Skipped(why) => ("skipped", Some(why.as_str())),
                KubeView::Unreachable(why) => ("unreachable", Some(why.as_str())),
            };
            v["kubernetes_status"] = serde_json::json!({ "state": state, "why": why });
            println!("{}", serde_json::to_string_pretty(&v).expect("JSON serializes"));
        }
    }
    if let Some(path) = &opts.out {
        let source = super::shared::files::effective_source(&opts.file, &opts.set)?;
        let sets = opts.set.sets.iter().map(|s| s.flag.clone()).collect();
        let created = crate::adapters::clock::rfc3339_from_now(std::time::Duration::ZERO);
        let saved = crate::infra::saved::SavedPlan::new(&plan, &opts.file.display().to_string(), sets, &source, created);
        let text = serde_json::to_string_pretty(&saved).expect("a plan serializes");
        super::shared::files::write_private(path, text.as_bytes(), super::shared::files::Existing::ReplaceFile)?;
        eprintln!("\nSaved the plan to {}. To carry out exactly this plan: hybrid apply {}", path.display(), path.display());
    }
    let changes = !plan.is_empty() || !kube_changes.is_empty();
    if let (true, KubeView::Unreachable(why)) = (opts.detailed_exitcode, &kube) {
        // "No changes" would be a claim about a cluster nobody looked at.
        return Err(Error::Failed(format!("the cluster side is unknown ({why}); --detailed-exitcode cannot say whether anything changes")));
    }
    Ok(if opts.detailed_exitcode && changes { EXIT_CHANGES } else { 0 })
}

/// What the plan knows of the Kubernetes side.
enum KubeView {
    /// Nothing to look at (no cluster yet), or told not to look: why.
    NotAsked(&'static str),
    /// Deliberately not looked at (AWS is an emulator, no --api-server).
    Skipped(String),
    /// Should have answered, did not: the cluster side is unknown.
    Unreachable(String),
    Changes(Vec<(&'static str, String)>),
}

/// Cluster-level differences when the API answers within a few seconds;
/// a plan never waits for a cluster that is still booting.
async fn kube_view<C: Cloud>(cloud: &C, spec: &ClusterSpec, inventory: &Inventory, aws: &AwsArgs, args: &ClusterArgs) -> KubeView {
    // No secrets yet: no cluster to look at. Secrets that cannot be read
    // mean the cluster side is unknown, not that there is none.
    let stored = match cloud.get_parameter(&secrets_parameter_name(&spec.name)).await {
        Ok(Some(s)) => s,
        Ok(None) => return KubeView::NotAsked("no cluster yet (it has no stored secrets)"),
        Err(e) => return KubeView::Unreachable(format!("the cluster's secrets could not be read ({e})")),
    };
    let secrets = match ClusterSecrets::from_stored(&stored) {
        Ok(s) => s,
        Err(e) => return KubeView::Unreachable(format!("the cluster's stored secrets do not parse ({e})")),
    };
    let api = match kube_client(spec, inventory, &secrets, aws, args.api_server.as_deref()).await {
        Ok(api) => api,
        Err(e @ Error::EmulatedAws) => return KubeView::Skipped(e.to_string()),
        Err(e) => return KubeView::Unreachable(e.to_string()),
    };
    let look = async {
        api.get("/version").await?;
        let calico = CalicoApi::detect(&api.api_groups().await?);
        let expected = expected_nodes(inventory);
        let api_ip = spec.api_server_ip().map(|ip| ip.to_string()).unwrap_or_default();
        let objects = desired_objects(spec, calico, &api_ip, &windows_nodes(spec, &expected), &namespaces(&api).await?);
        pending_changes(&api, &objects, &pools_by_node(spec, &expected), &expected).await
    };
    match tokio::time::timeout(std::time::Duration::from_secs(10), look).await {
        Ok(Ok(changes)) => KubeView::Changes(changes),
        Ok(Err(e)) if e.status.is_none() && !e.no_answer => {
            KubeView::Unreachable(format!("the API server's answer could not be read ({e})"))
        }
        Ok(Err(e)) => KubeView::Unreachable(format!("the API server did not answer ({e})")),
        Err(_) => KubeView::Unreachable("the API server did not answer within 10s".into()),
    }
}
