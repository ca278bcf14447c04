//! The cluster lock that keeps two applies or destroys of one cluster from
//! running at once, as SSM parameters `/hybrid/<cluster>/lock/<epoch>`, and
//! that lives exactly as long as the run holding it.
//!
//! SSM has no compare-and-set on a parameter's value, but creating a
//! parameter with overwrite off is atomic: of two runs creating the same
//! name, exactly one succeeds. So a lock is an epoch number: the newest
//! epoch holds the lock; taking over a stale lock creates the next epoch
//! (so two runs that both saw it stale cannot both win), and giving it back
//! deletes only the epoch this run created (recognised by its run id, also
//! when the answer to the create was lost).
//!
//! A lock is honoured for `TTL` and renewed by its run every fifth of that
//! while the run works (`while_held`), so only a run that stopped leaves
//! an expired lock; a live owner on this host is never taken over, however
//! old its lock. The work checks that it still holds the lock before each
//! step that must not run twice at once (`ensure_held`, before every
//! rolling batch). A persistent error writing the lock (AccessDenied)
//! fails at once with AWS's words; a transient one is retried with the one
//! retry policy, saying what it waits for.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::adapters::clock::rfc3339_from_now;
use crate::adapters::{Cloud, CloudError, LockInfo};
use crate::progress::Progress;
use crate::retry::{Backoff, Retry};

/// How long a lock is honoured without renewal, unless `Wait::ttl` says
/// otherwise (tests shorten it). A working run renews it every fifth of
/// that, so a few failed renewals in a row do not lose it.
pub const TTL: Duration = Duration::from_secs(600);
/// Transient errors on the lock's own calls are retried at least this
/// long, whatever `--lock-timeout` says (that flag is about waiting for
/// another run).
const TRANSIENT_FLOOR: Duration = Duration::from_secs(30);
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "cluster {cluster} is locked by {owner} since {created} (until {expires}, renewed while it works); wait with --lock-timeout DURATION, or if that run crashed, pass --break-lock"
    )]
    Locked { cluster: String, owner: String, created: String, expires: String },
    #[error("the cluster lock could not be written: {0}")]
    Cloud(CloudError),
    #[error("the cluster lock could not be written: {last}; gave up after {seconds}s of retries")]
    Transient { last: CloudError, seconds: u64 },
    #[error(
        "cluster {cluster}: this run's lock was taken over by {by} (it was not renewed in time: the run was stopped, or could not reach AWS); stopping before the next step. Run the command again once the other run is done"
    )]
    TakenOver { cluster: String, by: String },
}

/// Who takes a lock: the run's owner text and run id (`adapters::host`),
/// and how to tell whether another owner still runs on this host.
pub struct Me<'a> {
    pub owner: String,
    pub run_id: String,
    pub alive_here: &'a dyn Fn(&str) -> Option<bool>,
}

/// What to do about a lock someone holds.
pub struct Wait {
    /// How long to wait for another run to give the lock back.
    pub timeout: Duration,
    /// Remove every epoch first (`--break-lock`).
    pub break_lock: bool,
    /// How long this run's lock is honoured without renewal (`TTL`).
    pub ttl: Duration,
}

/// The lock this run holds.
#[derive(Clone, Debug)]
pub struct Held {
    pub cluster: String,
    epoch: u64,
    run_id: String,
    owner: String,
    created: String,
    ttl: Duration,
}

/// When a lock stops being honoured: its `expires`, or, for a lock
/// without a readable one (written by hand, cut short), `TTL` after it was
/// created.
fn expiry(lock: &LockInfo) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&lock.expires, &Rfc3339).ok().or_else(|| OffsetDateTime::parse(&lock.created, &Rfc3339).ok().map(|c| c + TTL))
}

/// The lock's time is up (a lock with neither time is stale too: nothing
/// can ever renew it).
pub fn is_stale(lock: &LockInfo, now: OffsetDateTime) -> bool {
    expiry(lock).is_none_or(|t| t < now)
}

fn transient_or_fail(e: CloudError, retry: &mut Retry, progress: &impl Progress, what: &str) -> Result<(), LockError> {
    if !e.is_transient() {
        return Err(LockError::Cloud(e));
    }
    if retry.elapsed() >= TRANSIENT_FLOOR {
        return Err(LockError::Transient { seconds: retry.elapsed().as_secs(), last: e });
    }
    progress.line(&format!("{what}: {e}; trying again"));
    Ok(())
}

/// Takes the cluster lock: waits up to `wait.timeout` for another run,
/// takes over a lock that is stale (and whose owner is not alive here) or
/// whose owner died on this host, and with `--break-lock` removes every
/// epoch first.
pub async fn take<C: Cloud>(cloud: &C, cluster: &str, me: &Me<'_>, wait: &Wait, progress: &impl Progress) -> Result<Held, LockError> {
    if wait.break_lock {
        for (epoch, _) in cloud.locks(cluster).await.map_err(LockError::Cloud)? {
            cloud.delete_lock(cluster, epoch).await.map_err(LockError::Cloud)?;
        }
        progress.line(&format!("removed the lock of cluster {cluster} (--break-lock)"));
    }
    let mut retry = Retry::new(BACKOFF).deadline(wait.timeout.max(TRANSIENT_FLOOR));
    let mut told = false;
    loop {
        let locks = match cloud.locks(cluster).await {
            Ok(l) => l,
            Err(e) => {
                transient_or_fail(e, &mut retry, progress, "reading the cluster lock")?;
                retry.wait().await;
                continue;
            }
        };
        let now = crate::adapters::clock::now();
        let next = match locks.last() {
            None => 1,
            // Ours: the answer to our create was lost, the lock is ours.
            Some((epoch, held)) if held.run_id == me.run_id => {
                return Ok(Held {
                    cluster: cluster.into(),
                    epoch: *epoch,
                    run_id: me.run_id.clone(),
                    owner: held.owner.clone(),
                    created: held.created.clone(),
                    ttl: wait.ttl,
                });
            }
            Some((epoch, held))
                if (me.alive_here)(&held.owner) == Some(false) || (is_stale(held, now) && (me.alive_here)(&held.owner) != Some(true)) =>
            {
                progress.line(&format!("taking over the stale lock of {} (created {})", held.owner, held.created));
                epoch + 1
            }
            Some((_, held)) => {
                if retry.elapsed() >= wait.timeout {
                    return Err(LockError::Locked {
                        cluster: cluster.to_string(),
                        owner: held.owner.clone(),
                        created: held.created.clone(),
                        expires: expiry(held).and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_else(|| "unknown".into()),
                    });
                }
                if !told {
                    progress.line(&format!("cluster {cluster} is locked by {}; waiting for it (--lock-timeout)", held.owner));
                    told = true;
                }
                retry.wait().await;
                continue;
            }
        };
        let mine = LockInfo {
            owner: me.owner.clone(),
            run_id: me.run_id.clone(),
            created: rfc3339_from_now(Duration::ZERO),
            expires: rfc3339_from_now(wait.ttl),
        };
        match cloud.create_lock(cluster, next, &mine).await {
            Ok(true) => {
                // The stale epochs we took over from are leftovers now.
                for (epoch, _) in locks.iter().filter(|(e, _)| *e < next) {
                    let _ = cloud.delete_lock(cluster, *epoch).await;
                }
                return Ok(Held {
                    cluster: cluster.into(),
                    epoch: next,
                    run_id: me.run_id.clone(),
                    owner: mine.owner,
                    created: mine.created,
                    ttl: wait.ttl,
                });
            }
            // Another run created this epoch first: look again.
            Ok(false) => {}
            // The answer may have been lost with the create done: look
            // again (our run id shows it); a refusal fails now.
            Err(e) => {
                transient_or_fail(e, &mut retry, progress, "writing the cluster lock")?;
                retry.wait().await;
            }
        }
    }
}

/// Fails when the newest epoch is not this run's any more.
pub async fn ensure_held<C: Cloud>(cloud: &C, held: &Held) -> Result<(), LockError> {
    let locks = cloud.locks(&held.cluster).await.map_err(LockError::Cloud)?;
    match locks.last() {
        Some((epoch, l)) if *epoch == held.epoch && l.run_id == held.run_id => Ok(()),
        Some((_, l)) => Err(LockError::TakenOver { cluster: held.cluster.clone(), by: l.owner.clone() }),
        None => Err(LockError::TakenOver { cluster: held.cluster.clone(), by: "nobody (it was removed, e.g. --break-lock)".into() }),
    }
}

/// Moves this run's lock's expiry a TTL ahead, when it still holds it.
pub async fn renew<C: Cloud>(cloud: &C, held: &Held) -> Result<(), LockError> {
    ensure_held(cloud, held).await?;
    let lock = LockInfo {
        owner: held.owner.clone(),
        run_id: held.run_id.clone(),
        created: held.created.clone(),
        expires: rfc3339_from_now(held.ttl),
    };
    cloud.renew_lock(&held.cluster, held.epoch, &lock).await.map_err(LockError::Cloud)
}

/// Runs `work` while renewing the lock every fifth of its TTL. A renewal
/// that fails transiently is tried again at the next turn (the lock lives
/// five turns); one that finds the lock taken over stops the work.
/// A heartbeat on a fixed period, not a retry (`crate::retry`): it never
/// gives up while the work runs, and a missed turn waits for the next.
pub async fn while_held<C: Cloud, T>(cloud: &C, held: &Held, work: impl std::future::Future<Output = T>) -> Result<T, LockError> {
    let renewing = async {
        loop {
            tokio::time::sleep(held.ttl / 5).await;
            match renew(cloud, held).await {
                Ok(()) => {}
                Err(LockError::Cloud(e)) if e.is_transient() => {}
                Err(e) => return e,
            }
        }
    };
    tokio::select! {
        out = work => Ok(out),
        e = renewing => Err(e),
    }
}

/// Gives the lock back, if this run still holds it: a run whose lock was
/// taken over never deletes its successor's.
pub async fn release<C: Cloud>(cloud: &C, held: &Held, progress: &impl Progress) -> Result<(), CloudError> {
    let locks = cloud.locks(&held.cluster).await?;
    match locks.iter().find(|(e, _)| *e == held.epoch) {
        Some((_, l)) if l.run_id == held.run_id => cloud.delete_lock(&held.cluster, held.epoch).await,
        Some((_, l)) => {
            progress.line(&format!("warning: the cluster lock was taken over by {} meanwhile; leaving it", l.owner));
            Ok(())
        }
        None => Ok(()),
    }
}

/// Removes every epoch (after `destroy`: nothing of the cluster remains).
pub async fn remove_all<C: Cloud>(cloud: &C, cluster: &str) -> Result<(), CloudError> {
    for (epoch, _) in cloud.locks(cluster).await? {
        cloud.delete_lock(cluster, epoch).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(created: &str, expires: &str) -> LockInfo {
        LockInfo { owner: "unknown".into(), run_id: "unknown".into(), created: created.into(), expires: expires.into() }
    }

    #[test]
    fn a_lock_without_a_readable_expiry_expires_ttl_after_its_creation() {
        let now = OffsetDateTime::parse("2026-12-06T12:00:00Z", &Rfc3339).unwrap();
        assert!(!is_stale(&lock("2026-12-06T11:55:00Z", "garbage"), now), "younger than the TTL");
        assert!(is_stale(&lock("2026-12-06T11:40:00Z", ""), now), "older than the TTL");
        assert!(is_stale(&lock("unknown", "unknown"), now), "nothing to go by: never renewable, so stale");
        assert!(!is_stale(&lock("2026-12-06T09:00:00Z", "2026-12-06T12:05:00Z"), now), "renewed");
    }
}
