//! `hybrid logs FILE NODE`: one node's boot diagnostics in a folder.

use std::path::{Path, PathBuf};

use super::Ui;
use super::cluster::cloud;
use super::validate::load_spec;
use crate::adapters::Cloud;
use crate::adapters::ssh::{self, SshTarget};
use crate::cli::AwsArgs;
use crate::desired::CONTROL_PLANE;
use crate::diagnostics::{collectors, default_user, tail_that_matters};
use crate::error::{Error, Result};
use crate::model::NodeOs;

pub struct LogsOptions<'a> {
    pub out: Option<&'a Path>,
    pub identity: Option<&'a Path>,
    pub ssh_user: Option<&'a str>,
    pub ssh_host: Option<&'a str>,
    pub lines: usize,
}

pub async fn logs(ui: &Ui, file: &Path, node: &str, aws: &AwsArgs, opts: &LogsOptions<'_>) -> Result<()> {
    let spec = load_spec(ui, file)?;
    let cloud = cloud(&spec, aws).await;
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
    let dir = opts.out.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("hybrid-logs").join(&spec.name).join(&instance.slot));
    std::fs::create_dir_all(&dir).map_err(|source| Error::Write { path: dir.clone(), source })?;
    let write =
        |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|source| Error::Write { path: dir.join(name), source });

    let console = cloud.console_output(&instance.id).await?;
    write("console.log", &console)?;
    println!("== {} ({}, {}): console output\n{}\n", instance.slot, instance.id, os.name(), tail_that_matters(&console, opts.lines));

    let (host, port) = match opts.ssh_host {
        Some(h) => {
            let (host, port) = ssh::parse_host(h);
            (Some(host), port.unwrap_or(22))
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
        user: opts.ssh_user.unwrap_or(default_user(os)).to_string(),
        identity: opts.identity.map(Path::to_path_buf),
        known_hosts: ssh::known_hosts_in(&dir),
    };
    for (name, command) in collectors(os) {
        let target = target.clone();
        let result = tokio::task::spawn_blocking(move || ssh::run(&target, &command)).await.map_err(|e| Error::Failed(e.to_string()))?;
        match result {
            Ok(text) => {
                write(name, &text)?;
                println!("== {name}\n{}\n", tail_that_matters(&text, opts.lines));
            }
            Err(e) => {
                write(name, &format!("(not collected: {e})\n"))?;
                println!("== {name}: not collected: {e}\n");
            }
        }
    }
    println!("diagnostics for {} are in {}", instance.slot, dir.display());
    Ok(())
}
