//! The errors a command ends with and the one place that maps them to exit
//! codes (cargo's `CliError`). Exit codes have one meaning each:
//! 0 success, 1 failure (including an invalid file), 2 "changes present"
//! (only for `plan --detailed-exitcode`), 64 command-line usage error.

use std::path::PathBuf;

pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_CHANGES: i32 = 2;
/// 128 + SIGINT, as shells report it.
pub const EXIT_INTERRUPTED: i32 = 130;
pub const EXIT_USAGE: i32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error("cluster secrets in {}: {source}", dir.display())]
    Secrets { dir: PathBuf, source: crate::bootstrap::pki::PkiError },
    #[error("{0}\nhint: check AWS credentials and region (or pass --endpoint-url); `hybrid plan --offline` needs neither")]
    Cloud(#[from] crate::adapters::CloudError),
    #[error("resolving the image for {group}: {source}")]
    Ami { group: String, source: crate::adapters::CloudError },
    #[error(
        "{key}: instance type {instance_type} is not offered in {region} (DescribeInstanceTypeOfferings); nothing was created. Pick a type this region has, e.g. from `aws ec2 describe-instance-type-offerings --region {region}`"
    )]
    NotOffered { key: String, instance_type: String, region: String },
    #[error(transparent)]
    Exec(#[from] crate::infra::execute::ExecError),
    #[error(transparent)]
    Plan(#[from] crate::infra::plan::PlanError),
    #[error(transparent)]
    Lock(#[from] crate::infra::lock::LockError),
    #[error(
        "cluster {0}: the control plane has no public IP address to reach the API server at; pass --api-server URL (e.g. a tunnel), or --ec2-only"
    )]
    NoApiEndpoint(String),
    #[error(
        "AWS is an emulator here (--endpoint-url or AWS_ENDPOINT_URL): the addresses it gives instances belong to others on the internet, so hybrid does not reach them; pass --api-server URL for the cluster side"
    )]
    EmulatedAws,
    #[error("cluster {0} has no secrets in SSM yet: run `hybrid apply` first")]
    NoSecrets(String),
    #[error("cannot build a Kubernetes client: {0}")]
    KubeConfig(String),
    #[error(transparent)]
    Kube(#[from] crate::adapters::kube::KubeError),
    #[error(transparent)]
    Converge(#[from] crate::cluster::converge::ConvergeError),
    #[error("{0}")]
    Failed(String),
    /// The command line is missing something no file or setting supplies.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Verify(#[from] crate::day2::verify::VerifyError),
    #[error("not confirmed: {0}")]
    NotConfirmed(String),
    #[error("interrupted; everything created so far is tagged: run the same command again to converge")]
    Interrupted,
    /// The diagnostics were already printed; only the summary remains.
    #[error("{file}: {errors} error(s), {warnings} warning(s)")]
    Invalid { file: String, errors: usize, warnings: usize },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted => EXIT_INTERRUPTED,
            Error::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
