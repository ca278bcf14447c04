//! `hybrid kubeconfig FILE`: a kubeconfig that logs in with the caller's
//! AWS identity (`hybrid token`), or with `--admin` a short-lived admin
//! certificate minted from the stored CA (break-glass, for those who may
//! read the CA key); written alone or merged into the user's kubeconfig.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::shared::args::AwsArgs;
use super::shared::connect::{api_server_url, cloud, global, stored_secrets};
use super::shared::files::{Existing, load_spec, write_private};
use super::shared::terminal::Ui;
use crate::adapters::Cloud;
use crate::cluster::kubeconfig::{Endpoint, User, admin_context_name, context_name, kubeconfig, merge, to_yaml};
use crate::error::{Error, Result};
use crate::infra::desired::ca_parameter_name;
use crate::model::ClusterSpec;

#[derive(Debug, clap::Args)]
#[command(
    about = "Write a kubeconfig that logs in with your AWS identity (or --admin)",
    long_about = "\
Write a kubeconfig for the cluster. By default it logs in as you: kubectl runs `hybrid token`, \
which proves your AWS identity (the --profile in effect now is written into it), and the API \
server gives you what the file's [access] table grants your IAM user or role. Reading the \
cluster's CA certificate and the control plane's address is all it needs from AWS.

--admin instead mints an admin client certificate from the cluster CA stored in SSM (valid 24 \
hours, group kubeadm:cluster-admins, named after your AWS identity): break-glass access for \
those allowed to read the CA key. 

The file is written with mode 0600 (default ~/.kube/hybrid-<cluster>.yaml; `-o -` writes to \
standard output) and an existing one is kept unless --force. --merge instead adds the cluster, \
user and context to your kubeconfig (the first file of KUBECONFIG, else ~/.kube/config), \
replacing only entries of the same names, and makes the context current.",
    after_help = "Exit codes: 0 success, 1 failure, 64 usage error."
)]
pub struct Args {
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// A break-glass admin certificate instead of your AWS identity.
    #[arg(long)]
    pub admin: bool,
    /// Add to your kubeconfig (KUBECONFIG's first file, else ~/.kube/config; or -o PATH) instead of writing a file of its own.
    #[arg(long)]
    pub merge: bool,
    /// Where to write (default: ~/.kube/hybrid-<cluster>.yaml); `-` for standard output. Only a regular file is written.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Replace the file at the path if there is one (never a link, a device or a folder).
    #[arg(long, conflicts_with = "merge")]
    pub force: bool,
    /// Reach the API server here instead of the control plane's public address.
    #[arg(long, value_name = "URL")]
    pub api_server: Option<String>,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let spec = load_spec(ui, &args.file, &args.set)?;
    let cloud = cloud(&spec, &args.aws).await?;
    let inventory = cloud.discover(&spec.name).await?;
    let server = api_server_url(&spec, &inventory, &args.aws, args.api_server.as_deref())?;
    let private_ip = spec.api_server_ip().map(|ip| ip.to_string());
    let tls_server_name = if server.starts_with("https://") { private_ip.as_deref() } else { None };
    let (config, what) = if args.admin {
        let secrets = stored_secrets(&cloud, &spec.name).await?;
        let cert = secrets
            .mint_admin_cert(&admin_name(&cloud.caller_arn().await?), &mut rand::rng(), SystemTime::now())
            .map_err(|source| Error::Secrets { dir: "(admin certificate)".into(), source })?;
        let endpoint = Endpoint { cluster: &spec.name, server: &server, tls_server_name, ca_cert_pem: &secrets.ca_cert_pem };
        (
            kubeconfig(&endpoint, User::Certificate(&cert)),
            format!("context {}, admin certificate valid 24h", admin_context_name(&spec.name)),
        )
    } else {
        // Say so now, not at the first kubectl call, when the caller will get nothing.
        let caller = cloud.caller_arn().await?;
        if spec.access.roles_of(&caller).is_empty() {
            eprintln!(
                "note: you ({caller}) are not in {}'s [access], so this kubeconfig will get you nothing yet: add your IAM user or role there and run `hybrid apply` (or use --admin)",
                args.file.display()
            );
        }
        let ca = ca_certificate(&cloud, &spec).await?;
        let endpoint = Endpoint { cluster: &spec.name, server: &server, tls_server_name, ca_cert_pem: &ca };
        let command = std::env::current_exe().map_err(|e| Error::Failed(format!("cannot tell where hybrid is installed: {e}")))?;
        let user = User::Exec { command: &command.to_string_lossy(), args: token_args(&spec) };
        (kubeconfig(&endpoint, user), format!("context {}, logs in as your AWS identity", context_name(&spec.name)))
    };
    if args.output.as_deref().is_some_and(|p| p.as_os_str() == "-") {
        print!("{}", to_yaml(&config));
        eprintln!("kubeconfig written to standard output ({what}, server {server})");
        return Ok(());
    }
    if args.merge {
        let path = match &args.output {
            Some(p) => p.clone(),
            None => user_kubeconfig()?,
        };
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(Error::Read { path, source }),
        };
        let merged =
            merge(existing.as_deref(), &config).map_err(|e| Error::Failed(format!("{}: {e}; nothing was changed", path.display())))?;
        create_parent(&path)?;
        write_private(&path, merged.as_bytes(), Existing::ReplaceFile)?;
        println!("merged into {} ({what}, server {server}); it is the current context now", path.display());
        return Ok(());
    }
    let path = match &args.output {
        Some(p) => p.clone(),
        None => home()?
            .join(".kube")
            .join(format!("{}.yaml", if args.admin { admin_context_name(&spec.name) } else { context_name(&spec.name) })),
    };
    create_parent(&path)?;
    write_private(&path, to_yaml(&config).as_bytes(), if args.force { Existing::ReplaceFile } else { Existing::Refuse })?;
    println!("wrote {} ({what}, server {server})", path.display());
    println!("use it with: export KUBECONFIG={}${{KUBECONFIG:+:$KUBECONFIG}}", path.display());
    Ok(())
}

/// What kubectl runs: `hybrid token` for this cluster by name and region
/// (the kubeconfig works from any folder), with the profile in effect now.
fn token_args(spec: &ClusterSpec) -> Vec<String> {
    let mut args = vec!["token".into(), "--name".into(), spec.name.clone(), "--region".into(), spec.region.clone()];
    if let Some(profile) = global().profile.or_else(|| std::env::var("AWS_PROFILE").ok().filter(|p| !p.is_empty())) {
        args.extend(["--profile".into(), profile]);
    }
    args
}

/// The CA certificate everyone may read (`/hybrid/<cluster>/ca.crt`, not
/// secret); from the secrets for a cluster made before hybrid published it.
async fn ca_certificate<C: Cloud>(cloud: &C, spec: &ClusterSpec) -> Result<String> {
    if let Some(pem) = cloud.get_parameter(&ca_parameter_name(&spec.name)).await? {
        return Ok(pem);
    }
    match stored_secrets(cloud, &spec.name).await {
        Ok(secrets) => Ok(secrets.ca_cert_pem),
        Err(Error::NoSecrets(_)) => Err(Error::NoSecrets(spec.name.clone())),
        Err(e) => Err(Error::Failed(format!(
            "{}: not published yet (run `hybrid apply` once), and the secrets cannot be read: {e}",
            ca_parameter_name(&spec.name)
        ))),
    }
}

/// The admin certificate's user name: `hybrid-admin:` and the caller's
/// session or user name, so the API server's audit log says who it was.
/// X.509 allows 64 characters in a common name (RFC 5280, ub-common-name).
fn admin_name(caller_arn: &str) -> String {
    let who: String = caller_arn.rsplit('/').next().unwrap_or_default().chars().filter(|c| c.is_ascii_graphic()).collect();
    let mut name = format!("hybrid-admin:{who}");
    name.truncate(64);
    name
}

fn home() -> Result<PathBuf> {
    std::env::home_dir().ok_or_else(|| Error::Failed("no home folder to write ~/.kube/ in; pass -o PATH".into()))
}

/// kubectl's rule: the first file of KUBECONFIG (a list), else ~/.kube/config.
fn user_kubeconfig() -> Result<PathBuf> {
    let separator = if cfg!(windows) { ';' } else { ':' };
    match std::env::var("KUBECONFIG").ok().and_then(|v| v.split(separator).find(|p| !p.is_empty()).map(PathBuf::from)) {
        Some(p) => Ok(p),
        None => Ok(home()?.join(".kube").join("config")),
    }
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn admin_names_say_who_in_at_most_64_characters() {
        assert_eq!(
            super::admin_name("arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Admin_0123/alice@example.com"),
            "hybrid-admin:alice@example.com"
        );
        assert_eq!(super::admin_name("arn:aws:iam::111122223333:user/ops/bob"), "hybrid-admin:bob");
        assert_eq!(super::admin_name(&format!("arn:aws:iam::1:user/{}", "x".repeat(80))).len(), 64);
    }
}
