//! `hybrid kubeconfig FILE`: an admin kubeconfig, minted from the stored CA.

use std::path::{Path, PathBuf};

use super::cluster::{admin_kubeconfig, api_server_url, cloud, stored_secrets};
use super::validate::load_spec;
use super::{Ui, write_private};
use crate::adapters::Cloud;
use crate::cli::AwsArgs;
use crate::error::{Error, Result};
use crate::kubeconfig::context_name;

pub async fn kubeconfig(ui: &Ui, file: &Path, aws: &AwsArgs, output: Option<&Path>, api_server: Option<&str>) -> Result<()> {
    let spec = load_spec(ui, file)?;
    let cloud = cloud(&spec, aws).await;
    let secrets = stored_secrets(&cloud, &spec.name).await?;
    let inventory = cloud.discover(&spec.name).await?;
    let server = api_server_url(&spec, &inventory, api_server)?;
    let yaml = admin_kubeconfig(&spec, &secrets, &server)?;
    let path = match output {
        Some(p) => p.to_path_buf(),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
            home.join(".kube").join(format!("{}.yaml", context_name(&spec.name)))
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    }
    write_private(&path, yaml.as_bytes())?;
    println!("wrote {} (context {}, admin certificate valid 24h, server {server})", path.display(), context_name(&spec.name));
    println!("use it with: export KUBECONFIG={}${{KUBECONFIG:+:$KUBECONFIG}}", path.display());
    Ok(())
}
