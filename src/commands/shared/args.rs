//! Flag groups several commands share (flattened into their `Args`).

/// `--set KEY=VALUE`, for every command that reads a cluster file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SetArgs {
    /// Set a key of the file for this run, e.g. cluster.name=pr-42, cluster.ttl=6h, pool.game-servers.count=3 (repeatable; lists as a,b; tables as k=v,k2=v2).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "file")]
    pub sets: Vec<crate::config::overrides::Set>,
}

/// Which cluster, for commands that need only its name and region: its
/// file (however invalid the rest of it is) or `--name` with the global
/// `--region`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterRef {
    /// The cluster's file (or --name and --region).
    #[arg(required_unless_present = "name", conflicts_with = "name")]
    pub file: Option<std::path::PathBuf>,
    /// The cluster's name, without its file (with the global --region).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub set: SetArgs,
}

/// Where AWS is. Credentials come from the standard chain (environment,
/// profiles, SSO, instance roles).
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// Send EC2 and SSM calls here instead of AWS (also AWS_ENDPOINT_URL), e.g. a local moto server.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LockArgs {
    /// Wait this long for another apply or destroy to release the cluster lock (e.g. 90s, 10m; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = crate::model::duration::flag_seconds)]
    pub lock_timeout: std::time::Duration,
    /// Remove a stale lock left by a crashed run (check that nobody else is applying!).
    #[arg(long)]
    pub break_lock: bool,
    /// How long the lock is honoured without renewal (tests shorten it).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = crate::model::duration::flag_seconds, hide = true)]
    pub lock_ttl: std::time::Duration,
}

impl LockArgs {
    pub fn wait(&self) -> crate::infra::lock::Wait {
        crate::infra::lock::Wait { timeout: self.lock_timeout, break_lock: self.break_lock, ttl: self.lock_ttl }
    }
}

/// This run, as the cluster lock names it.
pub fn lock_owner() -> crate::infra::lock::Me<'static> {
    use crate::adapters::host;
    crate::infra::lock::Me { owner: host::owner(), run_id: host::run_id(), alive_here: &host::owner_alive_here }
}

/// How the Kubernetes side of plan and apply is reached.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Reach the API server here instead of https://<control plane public IP>:6443 (e.g. a tunnel).
    #[arg(long, value_name = "URL")]
    pub api_server: Option<String>,
    /// Only the AWS side: do not wait for or converge the Kubernetes cluster (and do not drain).
    #[arg(long)]
    pub ec2_only: bool,
    /// How long to wait for the API server (and the CNI's APIs) to answer (e.g. 15m; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = crate::model::duration::flag_seconds)]
    pub api_timeout: std::time::Duration,
    /// How long to wait for every node to be Ready (e.g. 30m; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = crate::model::duration::flag_seconds)]
    pub node_timeout: std::time::Duration,
    /// How long to wait for a node's pods to be evicted (PodDisruptionBudgets may hold them; a bare number is seconds).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = crate::model::duration::flag_seconds)]
    pub drain_timeout: std::time::Duration,
    /// How often to look while waiting (tests shorten it).
    #[arg(long, value_name = "MS", default_value_t = 5000, hide = true)]
    pub poll_ms: u64,
}

impl ClusterArgs {
    pub fn waits(&self) -> crate::cluster::converge::Waits {
        use std::time::Duration;
        crate::cluster::converge::Waits {
            api: self.api_timeout,
            nodes: self.node_timeout,
            drain: self.drain_timeout,
            poll: Duration::from_millis(self.poll_ms),
        }
    }
}

/// How a command that prints data prints it: `text` for people, `json` for
/// scripts (the shapes, stable, in docs/json.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}
