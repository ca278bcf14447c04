//! The cluster lock that keeps two applies or destroys of one cluster from
//! running at once, as SSM parameters `/hybrid/<cluster>/lock/<epoch>`.
//!
//! SSM has no compare-and-set on a parameter's value, but creating a
//! parameter with overwrite off is atomic: of two runs creating the same
//! name, exactly one succeeds. So a lock is an epoch number: the newest
//! epoch holds the lock; taking over a stale lock creates the next epoch
//! (so two runs that both saw it stale cannot both win), and unlocking
//! deletes only the epoch this run created (recognised by its run id, also
//! when the answer to the create was lost).

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

/// A run id unique enough to tell two runs apart, even on one host.
fn new_run_id() -> String {
    use rand::Rng;
    format!("{}-{:016x}", std::process::id(), rand::rng().random::<u64>())
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

/// The lock's time is up: another run may take it over.
pub fn is_stale(lock: &LockInfo) -> bool {
    OffsetDateTime::parse(&lock.expires, &Rfc3339).is_ok_and(|t| t < OffsetDateTime::now_utc())
}

/// The lock this run holds; `unlock` gives it back.
#[derive(Debug)]
pub struct Held {
    cluster: String,
    epoch: u64,
    run_id: String,
}

/// Takes the cluster lock: waits up to `--lock-timeout`, takes over a lock
/// whose owner is gone (expired, or a dead process on this host), and with
/// `--break-lock` removes every epoch first.
pub async fn lock<C: Cloud>(cloud: &C, cluster: &str, args: &LockArgs) -> Result<Held> {
    if args.break_lock {
        for (epoch, _) in cloud.locks(cluster).await? {
            cloud.delete_lock(cluster, epoch).await?;
        }
        eprintln!("hybrid: removed the lock of cluster {cluster}");
    }
    let run_id = new_run_id();
    let start = std::time::Instant::now();
    loop {
        let locks = cloud.locks(cluster).await?;
        let next = match locks.last() {
            None => 1,
            // Ours: the answer to our create was lost, the lock is ours.
            Some((epoch, held)) if held.run_id == run_id => return Ok(Held { cluster: cluster.into(), epoch: *epoch, run_id }),
            Some((epoch, held)) if is_stale(held) || owner_is_dead_here(&held.owner) => {
                eprintln!("hybrid: taking over the stale lock of {} (created {})", held.owner, held.created);
                epoch + 1
            }
            Some((_, held)) => {
                if start.elapsed() >= Duration::from_secs(args.lock_timeout) {
                    return Err(Error::Locked {
                        cluster: cluster.to_string(),
                        owner: held.owner.clone(),
                        created: held.created.clone(),
                        expires: held.expires.clone(),
                    });
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let mine = LockInfo {
            owner: this_owner(),
            run_id: run_id.clone(),
            created: rfc3339_from_now(Duration::ZERO),
            expires: rfc3339_from_now(LOCK_TTL),
        };
        match cloud.create_lock(cluster, next, &mine).await {
            Ok(true) => {
                // The stale epochs we took over from are leftovers now.
                for (epoch, _) in locks.iter().filter(|(e, _)| *e < next) {
                    let _ = cloud.delete_lock(cluster, *epoch).await;
                }
                return Ok(Held { cluster: cluster.into(), epoch: next, run_id });
            }
            // Another run created this epoch first (or our create was lost
            // on the way back): look again.
            Ok(false) | Err(_) => continue,
        }
    }
}

/// Gives the lock back, if this run still holds it: a run whose lock was
/// taken over never deletes its successor's.
pub async fn unlock<C: Cloud>(cloud: &C, held: &Held) -> Result<()> {
    let locks = cloud.locks(&held.cluster).await?;
    match locks.iter().find(|(e, _)| *e == held.epoch) {
        Some((_, l)) if l.run_id == held.run_id => Ok(cloud.delete_lock(&held.cluster, held.epoch).await?),
        Some((_, l)) => {
            eprintln!("warning: the cluster lock was taken over by {} meanwhile; leaving it", l.owner);
            Ok(())
        }
        None => Ok(()),
    }
}

/// Removes every epoch (after `destroy`: nothing of the cluster remains).
pub async fn remove_all<C: Cloud>(cloud: &C, cluster: &str) -> Result<()> {
    for (epoch, _) in cloud.locks(cluster).await? {
        cloud.delete_lock(cluster, epoch).await?;
    }
    Ok(())
}
