//! `hybrid logs FILE NODE`: one node's boot diagnostics in a folder.

use std::path::PathBuf;

use super::shared::args::AwsArgs;
use super::shared::connect::{aws_is_emulated, cloud};
use super::shared::files::load_spec;
use super::shared::terminal::Ui;
use crate::adapters::Cloud;
use crate::adapters::ssh::{self, SshTarget};
use crate::day2::node_logs::{collectors, default_user, tail_that_matters};
use crate::error::{Error, Result};
use crate::infra::desired::CONTROL_PLANE;
use crate::model::NodeOs;

#[derive(Debug, clap::Args)]
#[command(
    about = "Gather one node's bootstrap diagnostics into a folder and show what matters",
    long_about = "\
Collect a node's EC2 console output and, over SSH (the system's OpenSSH client; Windows nodes \
run the OpenSSH server from boot), its bootstrap log, cloud-init output (Linux), kubelet and \
containerd logs, into a folder, then print the lines that matter: earlier errors and the tail. \
NODE is a slot (win-tools-0), a node name or an instance id. SSH reaches the node's public \
address (allowed from admin_cidrs) as ubuntu, ec2-user or Administrator, with the key pair \
named in the file (--identity points at its private key)."
)]
pub struct Args {
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    /// Slot, node name or instance id.
    pub node: String,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Folder to write into (default: ./hybrid-logs/<cluster>/<slot>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Private key for SSH.
    #[arg(long, short = 'i', value_name = "PATH")]
    pub identity: Option<PathBuf>,
    /// SSH login (default: ubuntu, ec2-user or Administrator, by OS).
    #[arg(long, value_name = "USER")]
    pub ssh_user: Option<String>,
    /// Reach SSH here (HOST or HOST:PORT) instead of the node's public address, e.g. a bastion tunnel.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub ssh_host: Option<String>,
    /// How many lines of each log to print.
    #[arg(long, default_value_t = 20)]
    pub lines: usize,
}

pub async fn run(ui: &Ui, opts: &Args) -> Result<()> {
    let node = opts.node.as_str();
    let spec = load_spec(ui, &opts.file, &opts.set)?;
    let cloud = cloud(&spec, &opts.aws).await?;
    let inventory = cloud.discover(&spec.name).await?;
    let instance =
        inventory.instances.iter().find(|i| i.slot == node || i.id == node || i.private_dns.as_deref() == Some(node)).ok_or_else(|| {
            Error::Failed(format!(
                "no node {node:?} in cluster {}: use a slot such as {}",
                spec.name,
                inventory.instances.first().map_or("win-tools-0", |i| i.slot.as_str())
            ))
        })?;
    let os = if instance.group == CONTROL_PLANE {
        NodeOs::Linux(spec.control_plane.os)
    } else {
        spec.pools
            .iter()
            .find(|p| p.name == instance.group)
            .map(|p| p.os)
            .ok_or_else(|| Error::Failed(format!("pool {} is no longer in the file", instance.group)))?
    };
    let dir = opts.out.clone().unwrap_or_else(|| PathBuf::from("hybrid-logs").join(&spec.name).join(&instance.slot));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
    let write =
        |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|source| Error::Write { path: dir.join(name), source });

    let console = cloud.console_output(&instance.id).await?;
    write("console.log", &console)?;
    println!("== {} ({}, {}): console output\n{}\n", instance.slot, instance.id, os.name(), tail_that_matters(&console, opts.lines));

    let (host, port) = match opts.ssh_host.as_deref() {
        Some(h) => {
            let (host, port) = ssh::parse_host(h);
            (Some(host), port.unwrap_or(22))
        }
        // An emulator's instance addresses belong to strangers.
        None if aws_is_emulated(&opts.aws) => {
            println!("(no SSH: {}; pass --ssh-host for a node you run)", Error::EmulatedAws);
            return Ok(());
        }
        None => (instance.public_ip.clone(), 22),
    };
    let Some(host) = host else {
        println!("(no SSH: the instance has no public address; pass --ssh-host through a bastion or tunnel)");
        return Ok(());
    };
    let target = SshTarget {
        host,
        port,
        user: opts.ssh_user.as_deref().unwrap_or(default_user(os)).to_string(),
        identity: opts.identity.clone(),
        known_hosts: ssh::known_hosts_in(&dir),
    };
    let (mut collected, mut failed) = (0, Vec::new());
    for (name, command) in collectors(os) {
        let target = target.clone();
        let result = tokio::task::spawn_blocking(move || ssh::run(&target, &command)).await.map_err(|e| Error::Failed(e.to_string()))?;
        // A failure goes to its own file, never into the log's place, so a
        // missing log cannot pass for a collected one.
        let _ = std::fs::remove_file(dir.join(format!("{name}.not-collected")));
        match result {
            Ok(text) => {
                write(name, &text)?;
                println!("== {name}\n{}\n", tail_that_matters(&text, opts.lines));
                collected += 1;
            }
            Err(e) => {
                let _ = std::fs::remove_file(dir.join(name));
                write(&format!("{name}.not-collected"), &format!("{e}\n"))?;
                println!("== {name}: not collected: {e}\n");
                failed.push((name, e.to_string()));
            }
        }
    }
    println!("diagnostics for {} are in {}", instance.slot, dir.display());
    match (collected, failed.first()) {
        (_, None) => Ok(()),
        (0, Some((name, why))) => {
            Err(Error::Failed(format!("no log could be collected over SSH (only the console output): {name}: {why}")))
        }
        (n, Some(_)) => {
            let names: Vec<&str> = failed.iter().map(|(n, _)| *n).collect();
            eprintln!("warning: collected {n} of {} logs over SSH; not collected: {}", n + failed.len(), names.join(", "));
            Ok(())
        }
    }
}
