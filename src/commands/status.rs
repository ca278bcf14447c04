//! `hybrid status FILE`: the cluster on one screen.

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;

use super::Ui;
use super::cluster::{cloud, kube_client, stored_secrets};
use super::validate::load_spec;
use crate::adapters::Cloud;
use crate::adapters::kube::KubeApi;
use crate::cli::AwsArgs;
use crate::error::Result;
use crate::status;

pub async fn status(ui: &Ui, file: &Path, aws: &AwsArgs, api_server: Option<&str>) -> Result<()> {
    let spec = load_spec(ui, file)?;
    let cloud = cloud(&spec, aws).await;
    let inventory = cloud.discover(&spec.name).await?;
    let nodes = if inventory.instances.is_empty() {
        Err("no instances".to_string())
    } else {
        let look = async {
            let secrets = stored_secrets(&cloud, &spec.name).await.map_err(|e| e.to_string())?;
            let api = kube_client(&spec, &inventory, &secrets, api_server).await.map_err(|e| e.to_string())?;
            api.list("/api/v1/nodes", None, None).await.map_err(|e| e.to_string())
        };
        tokio::time::timeout(Duration::from_secs(10), look).await.unwrap_or_else(|_| Err("the API server did not answer within 10s".into()))
    };
    let now = OffsetDateTime::now_utc();
    let rows = status::rows(&inventory, nodes.as_deref().ok(), now);
    let note = nodes.as_ref().err().map(|e| format!("{e}; node columns unknown (?)"));
    print!("{}", status::to_text(&spec.name, &spec.region, inventory.expires.as_deref(), &rows, note.as_deref(), now));
    Ok(())
}
