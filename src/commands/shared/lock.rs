//! The cluster lock (an SSM parameter written with overwrite off) that keeps
//! two applies or destroys of one cluster from running at once.

use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::args::LockArgs;
use crate::adapters::clock::rfc3339_from_now;
use crate::adapters::{Cloud, LockInfo};
use crate::error::{Error, Result};

/// How long a lock is honoured before another run may take it over.
const LOCK_TTL: Duration = Duration::from_secs(3600);

fn this_owner() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into());
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown-user".into());
    format!("{user}@{host} pid {}", std::process::id())
}

/// True when the lock's owner is a process on this host that no longer runs.
fn owner_is_dead_here(owner: &str) -> bool {
    let mine = this_owner();
    let host_of = |o: &str| o.split(" pid ").next().and_then(|s| s.split('@').nth(1)).map(str::to_string);
    let pid = owner.rsplit(" pid ").next().and_then(|p| p.parse::<u32>().ok());
    match (host_of(owner), host_of(&mine), pid) {
        (Some(a), Some(b), Some(pid)) if a == b => !Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

fn expired(lock: &LockInfo) -> bool {
    OffsetDateTime::parse(&lock.expires, &Rfc3339).is_ok_and(|t| t < OffsetDateTime::now_utc())
}

/// Takes the cluster lock: waits up to `--lock-timeout`, takes over a lock
/// whose owner is gone (expired, or a dead process on this host), and with
/// `--break-lock` removes any lock.
pub async fn lock<C: Cloud>(cloud: &C, cluster: &str, args: &LockArgs) -> Result<()> {
    if args.break_lock {
        cloud.unlock(cluster).await?;
        eprintln!("hybrid: removed the lock of cluster {cluster}");
    }
    let start = std::time::Instant::now();
    loop {
        let mine = LockInfo { owner: this_owner(), created: rfc3339_from_now(Duration::ZERO), expires: rfc3339_from_now(LOCK_TTL) };
        let Some(held) = cloud.try_lock(cluster, &mine).await? else { return Ok(()) };
        if expired(&held) || owner_is_dead_here(&held.owner) {
            eprintln!("hybrid: taking over the stale lock of {} (created {})", held.owner, held.created);
            cloud.unlock(cluster).await?;
            continue;
        }
        if start.elapsed() >= Duration::from_secs(args.lock_timeout) {
            return Err(Error::Locked { cluster: cluster.to_string(), owner: held.owner, created: held.created, expires: held.expires });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
