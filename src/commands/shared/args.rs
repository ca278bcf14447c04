//! Flag groups several commands share (flattened into their `Args`).

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
    /// Wait this many seconds for another apply or destroy to release the cluster lock.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub lock_timeout: u64,
    /// Remove a stale lock left by a crashed run (check that nobody else is applying!).
    #[arg(long)]
    pub break_lock: bool,
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
    /// Seconds to wait for the API server (and the CNI's APIs) to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    pub api_timeout: u64,
    /// Seconds to wait for every node to be Ready.
    #[arg(long, value_name = "SECONDS", default_value_t = 1800)]
    pub node_timeout: u64,
    /// Seconds to wait for a node's pods to be evicted (PodDisruptionBudgets may hold them).
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub drain_timeout: u64,
    /// How often to look while waiting (tests shorten it).
    #[arg(long, value_name = "MS", default_value_t = 5000, hide = true)]
    pub poll_ms: u64,
}

impl ClusterArgs {
    pub fn waits(&self) -> crate::cluster::converge::Waits {
        use std::time::Duration;
        crate::cluster::converge::Waits {
            api: Duration::from_secs(self.api_timeout),
            nodes: Duration::from_secs(self.node_timeout),
            drain: Duration::from_secs(self.drain_timeout),
            poll: Duration::from_millis(self.poll_ms),
        }
    }
}
