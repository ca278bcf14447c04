//! `hybrid token FILE` (or `--name NAME --region REGION`): the login token
//! of the caller's AWS identity for a cluster, as the ExecCredential
//! kubectl's exec plugins print; what `hybrid kubeconfig` makes kubectl run.
//! A token is kept in ~/.kube/cache/hybrid/ until a minute before it
//! expires, per cluster and AWS identity setting, so an SSO login or a
//! credential_process is asked once per token, not once per kubectl call.

use std::path::PathBuf;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::shared::args::ClusterRef;
use super::shared::connect::{cluster_identity, global};
use super::shared::files::{Existing, write_private};
use super::shared::terminal::Ui;
use crate::adapters::aws::{Target, presign_caller_identity};
use crate::cluster::token::{ExecCredential, MAX_TOKEN_BYTES, exec_api_version, token_from_url};
use crate::error::{Error, Result};
use crate::model::access::cluster_id;

#[derive(Debug, clap::Args)]
#[command(
    about = "Print a login token for the cluster (kubectl runs this)",
    long_about = "\
Print a client.authentication.k8s.io ExecCredential with a token that proves the caller's AWS \
identity (the --profile, AWS_PROFILE or other AWS credentials in effect) to the cluster's API \
server, which maps it to a Kubernetes user and groups through the file's [access] table \
(aws-iam-authenticator). `hybrid kubeconfig` writes a kubeconfig that runs this command; run it \
yourself to check who you are to a cluster.

The token is a presigned STS GetCallerIdentity request for this cluster only, valid 15 minutes; it \
is printed to standard output and kept in ~/.kube/cache/hybrid/ (mode 0600) until a minute before \
it expires. `aws eks get-token --cluster-name hybrid-<name>-<region>` makes an equivalent token.",
    after_help = "Exit codes: 0 success, 1 no AWS credentials (the reason names the source), 64 usage error."
)]
pub struct Args {
    #[command(flatten)]
    pub cluster: ClusterRef,
    /// Make a new token even if a cached one is still valid.
    #[arg(long)]
    pub no_cache: bool,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let (name, region) = cluster_identity(ui, &args.cluster, "token").await?;
    let id = cluster_id(&name, &region);
    let profile = global().profile;
    let api_version = exec_api_version(std::env::var("KUBERNETES_EXEC_INFO").ok().as_deref());
    let cache = cache_path(&id, &region, profile.as_deref());
    let now = SystemTime::now();
    if !args.no_cache
        && let Some(mut cached) =
            cache.as_ref().and_then(|p| std::fs::read(p).ok()).and_then(|b| serde_json::from_slice::<ExecCredential>(&b).ok())
        && cached.fresh_at(now)
    {
        cached.api_version = api_version.to_string();
        println!("{}", serde_json::to_string(&cached).expect("an ExecCredential serializes"));
        return Ok(());
    }
    let target = Target { region: region.clone(), profile, endpoint: None, parallelism: 0 };
    let url = presign_caller_identity(&target, &id, now).await?;
    let token = token_from_url(&url);
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Error::Failed(format!(
            "the token is {} bytes, over the API server's limit of {MAX_TOKEN_BYTES} (a very long session token?)",
            token.len()
        )));
    }
    let credential = ExecCredential::new(token, now, api_version);
    let text = serde_json::to_string(&credential).expect("an ExecCredential serializes");
    if let Some(path) = &cache {
        // A cache that cannot be written costs a new token next time, nothing more.
        let written =
            path.parent().map_or(Ok(()), create_private_dir).and_then(|()| write_private(path, text.as_bytes(), Existing::ReplaceFile));
        if let Err(e) = written {
            eprintln!("note: the token is not cached: {e}");
        }
    }
    println!("{text}");
    Ok(())
}

/// One cache file per cluster and per AWS identity setting (profile,
/// access key, role): a switched profile never gets another identity's token.
fn cache_path(cluster_id: &str, region: &str, profile: Option<&str>) -> Option<PathBuf> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let identity = [
        cluster_id.to_string(),
        region.to_string(),
        profile.map(str::to_string).unwrap_or_else(|| env("AWS_PROFILE")),
        env("AWS_ACCESS_KEY_ID"),
        env("AWS_ROLE_ARN"),
        env("AWS_CONFIG_FILE"),
    ]
    .join("\n");
    let key: String = Sha256::digest(identity.as_bytes())[..12].iter().map(|b| format!("{b:02x}")).collect();
    Some(std::env::home_dir()?.join(".kube").join("cache").join("hybrid").join(format!("{cluster_id}-{key}.json")))
}

fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| Error::Write { path: dir.to_path_buf(), source })
}
