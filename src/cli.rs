//! Command-line flags as plain clap definitions. Nothing here does work: each
//! subcommand's arguments are handed to a function in `commands` (cargo's
//! commands → ops split).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Declarative hybrid Linux/Windows Kubernetes clusters on AWS";

const LONG_ABOUT: &str = "\
hybrid provisions a Kubernetes cluster with a Linux control plane and Linux and Windows Server \
worker pools on EC2 from one desired-state TOML file (see clusters/dev.toml).

It knows what Windows nodes need (Calico or flannel VXLAN with VNI 4096 on UDP 4789, strict \
IPAM affinity, containerd, matching Windows builds, taints) and `hybrid validate` reports every \
mistake in a file before any money is spent.";

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 failure (including an invalid file), 64 usage error.";

#[derive(Debug, Parser)]
#[command(name = "hybrid", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// When to colour output.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,

    /// Print the number of AWS API calls by operation when done.
    #[arg(long, global = true)]
    pub api_stats: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a cluster file and report every problem at once.
    #[command(
        long_about = "\
Check a cluster file and report every problem at once, each with file:line:column, the key, \
what is wrong and how to fix it. Warnings (questionable but legal choices) do not fail the check.

Besides syntax, unknown keys and types, it checks what breaks Windows nodes at run time: \
IP-in-IP or CrossSubnet with Calico, VNI below 4096 or a VXLAN port other than 4789, \
strictAffinity off, flannel DirectRouting, Windows versions the CNI does not support, Windows \
control planes, Graviton instance types for Windows, overlapping CIDRs, pod networks too small \
for the node count, labels and taints Kubernetes or kubelet would refuse, and values that could \
break out of a generated script.

Supported Kubernetes versions: 1.33.x to 1.36.x.",
        after_help = "Exits 0 when the file is valid (warnings allowed), 1 when it has errors."
    )]
    Validate {
        /// The desired-state file, e.g. clusters/dev.toml.
        file: PathBuf,
    },
    /// Write every node's user data, and the files inside it, to a folder.
    #[command(
        long_about = "\
Write, for every node of the cluster, exactly what EC2 receives as user data (`user-data`), plus \
the readable files inside it (kubeadm config, CNI manifest, bootstrap script), so they can be read \
and diffed. Linux nodes get cloud-init, Windows nodes a <powershell> script.

The cluster secrets (CA and bootstrap token) come from --secrets DIR; if DIR has none yet, new \
ones are generated and saved there (mode 0600). The same file and secrets always render \
byte-identical output. Without --secrets the secrets are throwaway.

The rendered files contain the bootstrap token, and the control plane's the CA key: keep the \
output folder private.",
        after_help = "Exits 0 when every node rendered, 1 on an invalid file or a node over EC2's 16384-byte limit."
    )]
    Render {
        /// The desired-state file, e.g. clusters/dev.toml.
        file: PathBuf,
        /// Folder to write into (created if missing; existing node folders are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Folder with ca.crt, ca.key and token; created with new secrets if empty.
        #[arg(long, value_name = "DIR")]
        secrets: Option<PathBuf>,
        /// Folder with template overrides (same names as templates/ in the source).
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Show what apply would change in AWS, without changing anything.
    #[command(
        long_about = "\
Compare the file with what runs in AWS (found by the hybrid:cluster tag and the SSM parameters \
under /hybrid/<cluster>/) and print the changes, Terraform-style: + create, - delete, ~ update, \
-/+ replace (with the reason), and a summary line. Secrets are shown only as (sensitive).

With --offline no AWS credentials are needed: the plan is made against nothing, so a newcomer \
sees at once what a first apply would create.",
        after_help = "\
Exit codes: 0 success (with --detailed-exitcode: no changes), 1 error, 2 changes present (only \
with --detailed-exitcode), 64 usage error."
    )]
    Plan {
        file: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Plan against no existing resources, without AWS calls.
        #[arg(long)]
        offline: bool,
        /// Exit 0 for no changes and 2 for changes (1 stays an error).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
        /// Folder with template overrides (as for render).
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Create or change what the file describes in AWS.
    #[command(
        long_about = "\
Plan (as `hybrid plan`), show the plan, ask for confirmation (or --yes), then make it so: network \
(VPC, subnet, internet gateway, route, security group with only the needed ports), the cluster \
secrets in SSM (SecureString), and instances with IMDSv2 required, encrypted root volumes, tags \
and the rendered user data. Pools launch in parallel.

Then, unless --ec2-only, it converges the cluster through the Kubernetes API: waits for the API \
server, writes Calico's Installation, IPAM strictAffinity and Felix VXLAN settings (or flannel's \
net-conf and Windows DaemonSet), the Windows kube-proxy and one RuntimeClass per Windows build, \
keeps a bootstrap token valid while nodes join, waits until every node is Ready (naming the ones \
that are not, with their console output, on timeout) and applies the pools' labels and taints. \
Nodes that go away are cordoned and drained first.

Nothing is written when there are no changes. A second apply on the same cluster waits for or \
fails on the cluster lock (an SSM parameter). An apply interrupted at any point can be run again \
to converge: every resource is tagged when it is created.

This exercises the AWS side; nodes boot and join the cluster on real EC2 only.",
        after_help = "Exit codes: 0 success, 1 error (nothing is left untagged; run apply again), 64 usage error."
    )]
    Apply {
        file: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        lock: LockArgs,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Folder with template overrides (as for render).
        #[arg(long, value_name = "DIR")]
        templates: Option<PathBuf>,
    },
    /// Remove everything hybrid created for the cluster.
    #[command(long_about = "\
Show what will go, ask (or --yes), then terminate the instances, wait for them, and delete the \
security group, internet gateway, subnet and VPC (only those hybrid created: they carry the \
cluster's tag), the SSM parameters and the lock. Afterwards nothing tagged for the cluster remains.")]
    Destroy {
        file: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
        #[command(flatten)]
        lock: LockArgs,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Deploy a small Linux + Windows workload and check the cluster works end to end.
    #[command(
        long_about = "\
Deploy nginx on Linux and a Windows web server for each Windows build (through its RuntimeClass) \
into the namespace hybrid-verify, then run the checks of the Kubernetes Windows guide as Jobs: \
pod-to-pod across Linux and Windows, Service ClusterIP, DNS from both sides, NodePort from a \
node, outbound from a Windows pod, and (Calico only) a NetworkPolicy that lets only Windows \
pods reach nginx. Each check reports pass or fail with its time; everything is deleted \
afterwards. The manifests are in examples/verify/.",
        after_help = "Exits 0 when every check passed, 1 otherwise."
    )]
    Verify {
        file: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
        /// Reach the API server here instead of the control plane's public address.
        #[arg(long, value_name = "URL")]
        api_server: Option<String>,
        /// Seconds each check may take (Windows images are large to pull).
        #[arg(long, value_name = "SECONDS", default_value_t = 900)]
        check_timeout: u64,
        /// How often to look while waiting (tests shorten it).
        #[arg(long, value_name = "MS", default_value_t = 5000, hide = true)]
        poll_ms: u64,
    },
    /// Gather one node's bootstrap diagnostics into a folder and show what matters.
    #[command(long_about = "\
Collect a node's EC2 console output and, over SSH (the system's OpenSSH client; Windows nodes \
run the OpenSSH server from boot), its bootstrap log, cloud-init output (Linux), kubelet and \
containerd logs, into a folder, then print the lines that matter: earlier errors and the tail. \
NODE is a slot (win-tools-0), a node name or an instance id. SSH reaches the node's public \
address (allowed from admin_cidrs) as ubuntu, ec2-user or Administrator, with the key pair \
named in the file (--identity points at its private key).")]
    Logs {
        file: PathBuf,
        /// Slot, node name or instance id.
        node: String,
        #[command(flatten)]
        aws: AwsArgs,
        /// Folder to write into (default: ./hybrid-logs/<cluster>/<slot>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Private key for SSH.
        #[arg(long, short = 'i', value_name = "PATH")]
        identity: Option<PathBuf>,
        /// SSH login (default: ubuntu, ec2-user or Administrator, by OS).
        #[arg(long, value_name = "USER")]
        ssh_user: Option<String>,
        /// Reach SSH here (HOST or HOST:PORT) instead of the node's public address, e.g. a bastion tunnel.
        #[arg(long, value_name = "HOST[:PORT]")]
        ssh_host: Option<String>,
        /// How many lines of each log to print.
        #[arg(long, default_value_t = 20)]
        lines: usize,
    },
    /// One screen with every pool and node: instance, state, Ready, build, age, time to Ready.
    #[command(long_about = "\
Show every pool and node of the cluster: instance id and state, node name, Ready, Windows build, \
age, and each node's time from launch to Ready, with the cluster's expiry. Node details come \
from the Kubernetes API when it answers within 10 seconds.")]
    Status {
        file: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
        /// Reach the API server here instead of the control plane's public address.
        #[arg(long, value_name = "URL")]
        api_server: Option<String>,
    },
    /// Destroy every cluster whose time-to-live has passed (for cron or CI).
    #[command(long_about = "\
Find every hybrid cluster in the given regions whose hybrid:expires tag (set at creation from \
the file's ttl) lies in the past, and destroy it as `hybrid destroy` would. Clusters without a \
ttl are never touched. --dry-run only lists; otherwise --yes is required, since it runs \
unattended.")]
    Reap {
        #[command(flatten)]
        aws: AwsArgs,
        /// Region to look in (repeatable; default: AWS_REGION).
        #[arg(long = "region", value_name = "REGION")]
        regions: Vec<String>,
        /// List what would be destroyed, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Destroy without asking.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Write a kubeconfig with a freshly minted admin certificate.
    #[command(long_about = "\
Mint an admin client certificate from the cluster CA stored in SSM (valid 24 hours, group \
kubeadm:cluster-admins; no SSH to the control plane needed) and write a kubeconfig for it, with \
the control plane's public address and the API certificate's private name (tls-server-name). \
The file is written with mode 0600 and its secrets are never printed; use it alone or next to \
your own: KUBECONFIG=<file>:$HOME/.kube/config.")]
    Kubeconfig {
        file: PathBuf,
        #[command(flatten)]
        aws: AwsArgs,
        /// Where to write (default: ~/.kube/hybrid-<cluster>.yaml).
        #[arg(long, short = 'o', value_name = "PATH")]
        output: Option<PathBuf>,
        /// Reach the API server here instead of the control plane's public address.
        #[arg(long, value_name = "URL")]
        api_server: Option<String>,
    },
    /// Print the file format as JSON Schema (or the Markdown key reference).
    #[command(long_about = "\
Print a JSON Schema of the cluster file, for editor completion (e.g. with the Even Better TOML \
extension: `#:schema ./hybrid.schema.json` at the top of the file). With --format markdown, \
print the key reference that clusters/README.md contains.")]
    Schema {
        #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
        format: SchemaFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    Json,
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
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
