//! This machine, as the cluster lock names its owner: user, host and
//! process, a fresh run id, and whether a process on this host still runs.

use std::path::Path;

/// `user@host pid N`, how a lock names the run that holds it.
pub fn owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown-user".into());
    format!("{user}@{host} pid {}", std::process::id())
}

/// A run id unique enough to tell two runs apart, even on one host.
pub fn run_id() -> String {
    format!("{}-{:016x}", std::process::id(), rand::random::<u64>())
}

/// Whether the run named `owner` (as `owner()` writes it) is alive:
/// `Some` when it ran on this host (its process still exists or not),
/// `None` when it ran elsewhere and nothing here can tell.
pub fn owner_alive_here(owner: &str) -> Option<bool> {
    let mine = self::owner();
    let host_of = |o: &str| o.split(" pid ").next().and_then(|s| s.split('@').nth(1)).map(str::to_string);
    let pid = owner.rsplit(" pid ").next().and_then(|p| p.parse::<u32>().ok())?;
    (host_of(owner)? == host_of(&mine)?).then(|| Path::new(&format!("/proc/{pid}")).exists())
}
