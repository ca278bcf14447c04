//! Remote commands over the system's OpenSSH client: one process per
//! command, arguments passed as a vector (no shell on this side), host keys
//! remembered in a file inside the diagnostics folder, never prompting.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Debug)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity: Option<PathBuf>,
    /// Where the node's host key is recorded (trust on first use).
    pub known_hosts: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot run ssh: {0} (install the OpenSSH client)")]
    Spawn(std::io::Error),
    #[error("ssh {user}@{host}: exit {code}: {stderr}")]
    Failed { user: String, host: String, code: i32, stderr: String },
}

/// Runs `command` on the target; its stdout on success.
pub fn run(target: &SshTarget, command: &str) -> Result<String, SshError> {
    let mut c = Command::new("ssh");
    c.args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", target.known_hosts.display()))
        .args(["-p", &target.port.to_string()]);
    if let Some(key) = &target.identity {
        c.arg("-i").arg(key);
    }
    c.arg(format!("{}@{}", target.user, target.host)).arg("--").arg(command);
    let out = c.output().map_err(SshError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SshError::Failed {
            user: target.user.clone(),
            host: target.host.clone(),
            code: out.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// `host` or `host:port`.
pub fn parse_host(s: &str) -> (String, Option<u16>) {
    match s.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => (h.to_string(), p.parse().ok()),
        _ => (s.to_string(), None),
    }
}

pub fn known_hosts_in(dir: &Path) -> PathBuf {
    dir.join("known_hosts")
}
