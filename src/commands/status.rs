//! `hybrid status FILE`: the cluster on one screen.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::future::join_all;
use time::OffsetDateTime;

use super::shared::args::AwsArgs;
use super::shared::connect::{cloud, kube_client, stored_secrets};
use super::shared::files::load_spec;
use super::shared::terminal::Ui;
use crate::adapters::Cloud;
use crate::adapters::kube::KubeApi;
use crate::day2::status;
use crate::error::Result;

#[derive(Debug, clap::Args)]
#[command(
    about = "One screen with every pool and node: instance, state, Ready, build, age, time to Ready",
    long_about = "\
Show every pool and node of the cluster: instance id and state, node name, Ready, Windows build, \
age, and each node's time from launch to Ready, with the cluster's expiry. Node details come \
from the Kubernetes API when it answers within 10 seconds."
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
    /// Output format: text for people, json for scripts (one document on
    /// stdout; every key in docs/json.md).
    #[arg(long, value_enum, default_value_t = super::shared::args::OutputFormat::Text)]
    pub output: super::shared::args::OutputFormat,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let api_server = args.api_server.as_deref();
    let spec = load_spec(ui, &args.file, &args.set)?;
    let cloud = cloud(&spec, &args.aws).await?;
    // What runs and the stored secrets wait for nothing of each other; the
    // nodes as the API sees them and every console output then go at once.
    let (inventory, secrets) = tokio::join!(cloud.discover(&spec.name), stored_secrets(&cloud, &spec.name));
    let inventory = inventory?;
    let nodes = async {
        if inventory.instances.is_empty() {
            return Err("no instances".to_string());
        }
        let look = async {
            let secrets = secrets.map_err(|e| e.to_string())?;
            let api = kube_client(&spec, &inventory, &secrets, &args.aws, api_server).await.map_err(|e| e.to_string())?;
            api.list_of::<k8s_openapi::api::core::v1::Node>(None, None, None).await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_secs(10), look).await.unwrap_or_else(|_| Err("the API server did not answer within 10s".into()))
    };
    // Each node's console output holds its boot timeline.
    let consoles = join_all(inventory.instances.iter().map(|i| {
        let cloud = &cloud;
        async move { (i.id.clone(), cloud.console_output(&i.id).await.unwrap_or_default()) }
    }));
    let (nodes, consoles) = tokio::join!(nodes, consoles);
    let consoles: BTreeMap<String, String> = consoles.into_iter().collect();
    let now = OffsetDateTime::now_utc();
    let rows = status::rows(&inventory, nodes.as_deref().ok(), &consoles, now);
    let note = nodes.as_ref().err().map(|e| format!("{e}; node columns unknown (?)"));
    match args.output {
        super::shared::args::OutputFormat::Text => {
            print!("{}", status::to_text(&spec.name, &spec.region, inventory.expires.as_deref(), &rows, note.as_deref(), now))
        }
        super::shared::args::OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&status::to_json(&spec.name, &spec.region, &rows, note.as_deref())).expect("JSON serializes")
        ),
    }
    Ok(())
}
