//! `hybrid kubeconfig FILE`: an admin kubeconfig, minted from the stored CA.

use std::path::PathBuf;

use super::shared::args::AwsArgs;
use super::shared::connect::{admin_kubeconfig, api_server_url, cloud, stored_secrets};
use super::shared::files::{Existing, load_spec, write_private};
use super::shared::terminal::Ui;
use crate::adapters::Cloud;
use crate::cluster::kubeconfig::context_name;
use crate::error::{Error, Result};

#[derive(Debug, clap::Args)]
#[command(
    about = "Write a kubeconfig with a freshly minted admin certificate",
    long_about = "\
Mint an admin client certificate from the cluster CA stored in SSM (valid 24 hours, group \
kubeadm:cluster-admins; no SSH to the control plane needed) and write a kubeconfig for it, with \
the control plane's public address and the API certificate's private name (tls-server-name). \
The file is written with mode 0600 and its secrets are never printed; use it alone or next to \
your own: KUBECONFIG=<file>:$HOME/.kube/config. An existing file is kept unless --force (its other \
contexts would be lost); `-o -` writes to standard output."
)]
pub struct Args {
    pub file: PathBuf,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Where to write (default: ~/.kube/hybrid-<cluster>.yaml); `-` for standard output. Only a regular file is written.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace the file at the path if there is one (never a link, a device or a folder).
    #[arg(long)]
    pub force: bool,
    /// Reach the API server here instead of the control plane's public address.
    #[arg(long, value_name = "URL")]
    pub api_server: Option<String>,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let (output, api_server) = (args.output.as_deref(), args.api_server.as_deref());
    let spec = load_spec(ui, &args.file)?;
    let cloud = cloud(&spec, &args.aws).await?;
    let secrets = stored_secrets(&cloud, &spec.name).await?;
    let inventory = cloud.discover(&spec.name).await?;
    let server = api_server_url(&spec, &inventory, &args.aws, api_server)?;
    let yaml = admin_kubeconfig(&spec, &secrets, &server)?;
    if output.is_some_and(|p| p.as_os_str() == "-") {
        print!("{yaml}");
        eprintln!(
            "kubeconfig written to standard output (context {}, admin certificate valid 24h, server {server})",
            context_name(&spec.name)
        );
        return Ok(());
    }
    let path = match output {
        Some(p) => p.to_path_buf(),
        None => {
            let home = std::env::home_dir().ok_or_else(|| Error::Failed("no home folder to write ~/.kube/ in; pass -o PATH".into()))?;
            home.join(".kube").join(format!("{}.yaml", context_name(&spec.name)))
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })?;
    }
    write_private(&path, yaml.as_bytes(), if args.force { Existing::ReplaceFile } else { Existing::Refuse })?;
    println!("wrote {} (context {}, admin certificate valid 24h, server {server})", path.display(), context_name(&spec.name));
    println!("use it with: export KUBECONFIG={}${{KUBECONFIG:+:$KUBECONFIG}}", path.display());
    Ok(())
}
