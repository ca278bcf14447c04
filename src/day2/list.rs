//! `hybrid list`: every cluster hybrid made in a region, from what AWS
//! holds (no cluster files): who made it, when, when it expires, its pools
//! with their Linux and Windows nodes, how complete it is, and what it
//! costs an hour. Pure: the adapter finds the clusters.
//!
//! How complete a cluster is, read off what is left of it (apply creates
//! the network, then the parameters, then the instances; destroy removes
//! the instances first):
//! - `complete`: a running control plane, its VPC and security group, its secrets;
//! - `partial`: instances, but something is missing, stopped or still starting
//!   (an apply that stopped part way, or a stopped node);
//! - `half-destroyed`: no instances left, but network, parameters or roles
//!   are (a destroy that stopped, or an apply that stopped before launching);
//! - `expired`: its time-to-live has passed, whatever else (`hybrid reap` takes it).

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::adapters::FoundCluster;
use crate::day2::cost;
use crate::day2::status::duration;
use crate::infra::desired::CONTROL_PLANE;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Complete,
    Partial,
    HalfDestroyed,
    Expired,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Complete => "complete",
            State::Partial => "partial",
            State::HalfDestroyed => "half-destroyed",
            State::Expired => "expired",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolCount {
    pub linux: u32,
    pub windows: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterRow {
    pub name: String,
    pub region: String,
    /// The ARN of who made it (`hybrid:owner`).
    pub owner: Option<String>,
    /// When its control plane (else its first instance) was launched.
    pub created: Option<String>,
    /// RFC 3339; `None` without a time-to-live.
    pub expires: Option<String>,
    /// Seconds until it expires (negative once it has).
    pub expires_in_seconds: Option<i64>,
    pub state: State,
    /// Instances per pool (the control plane as `control-plane`).
    pub pools: BTreeMap<String, PoolCount>,
    /// On-demand estimate of the instances that run (`cost`'s table); `None`
    /// when one of them is of a type the table does not know.
    pub usd_per_hour: Option<f64>,
    /// Why it is partial or half-destroyed.
    pub missing: Vec<String>,
}

pub fn row(found: &FoundCluster, region: &str, now: OffsetDateTime) -> ClusterRow {
    let expires_at = found.expires.as_deref().and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok());
    let cp = found.instances.iter().find(|i| i.slot == CONTROL_PLANE);
    let mut missing = Vec::new();
    match cp {
        None => missing.push("control plane".to_string()),
        Some(i) if i.state != "running" => missing.push(format!("control plane is {}", i.state)),
        Some(_) => {}
    }
    for (kind, what) in [("vpc", "VPC"), ("security-group", "security group"), ("secrets", "secrets")] {
        if !found.left.contains(kind) {
            missing.push(what.into());
        }
    }
    for i in found.instances.iter().filter(|i| i.slot != CONTROL_PLANE && i.state != "running") {
        missing.push(format!("{} is {}", i.slot, i.state));
    }
    let state = if expires_at.is_some_and(|t| t <= now) {
        State::Expired
    } else if found.instances.is_empty() {
        State::HalfDestroyed
    } else if missing.is_empty() {
        State::Complete
    } else {
        State::Partial
    };
    let mut pools: BTreeMap<String, PoolCount> = BTreeMap::new();
    for i in &found.instances {
        let group = if i.slot == CONTROL_PLANE { CONTROL_PLANE.to_string() } else { i.pool.clone() };
        let count = pools.entry(group).or_default();
        if i.windows {
            count.windows += 1;
        } else {
            count.linux += 1;
        }
    }
    let running: Vec<_> = found.instances.iter().filter(|i| i.state == "running" || i.state == "pending").collect();
    let prices: Option<Vec<f64>> = running.iter().map(|i| cost::instance_hourly(&i.instance_type, i.windows)).collect();
    let created =
        cp.map(|i| i.launch_time.clone()).or_else(|| found.instances.iter().map(|i| i.launch_time.clone()).min()).filter(|t| !t.is_empty());
    ClusterRow {
        name: found.name.clone(),
        region: region.to_string(),
        owner: found.owner.clone(),
        created,
        expires: found.expires.clone(),
        expires_in_seconds: expires_at.map(|t| (t - now).whole_seconds()),
        state,
        pools,
        usd_per_hour: prices.map(|p| (p.iter().sum::<f64>() * 100.0).round() / 100.0),
        missing: if state == State::Complete { Vec::new() } else { missing },
    }
}

/// Who, briefly: an assumed role's session or a user's name.
fn who(owner: &str) -> &str {
    owner.rsplit('/').next().unwrap_or(owner)
}

pub fn to_text(rows: &[ClusterRow]) -> String {
    if rows.is_empty() {
        return "No clusters.\n".into();
    }
    let mut table = vec![["NAME", "REGION", "STATE", "OWNER", "CREATED", "EXPIRES", "POOLS", "$/HOUR"].map(String::from).to_vec()];
    for r in rows {
        let expires = match (r.expires_in_seconds, &r.expires) {
            (Some(s), _) if s > 0 => format!("in {}", duration(time::Duration::seconds(s))),
            (Some(s), _) => format!("{} ago", duration(time::Duration::seconds(-s))),
            (None, _) => "never".into(),
        };
        let pools = r
            .pools
            .iter()
            .filter(|(p, _)| p.as_str() != CONTROL_PLANE)
            .map(|(p, c)| match (c.linux, c.windows) {
                (l, 0) => format!("{p} {l}L"),
                (0, w) => format!("{p} {w}W"),
                (l, w) => format!("{p} {l}L+{w}W"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        table.push(vec![
            r.name.clone(),
            r.region.clone(),
            r.state.name().to_string(),
            r.owner.as_deref().map_or("?".into(), |o| who(o).to_string()),
            r.created.as_deref().map_or("?".into(), |c| c.get(..16).unwrap_or(c).replace('T', " ")),
            expires,
            if pools.is_empty() { "-".into() } else { pools },
            r.usd_per_hour.map_or("?".into(), |c| format!("{c:.2}")),
        ]);
    }
    let widths: Vec<usize> = (0..table[0].len()).map(|c| table.iter().map(|row| row[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let total: f64 = rows.iter().filter_map(|r| r.usd_per_hour).sum();
    out.push_str(&format!("{} cluster(s), about ${total:.2}/hour ({}).\n", rows.len(), cost::PRICES_AS_OF));
    for r in rows.iter().filter(|r| !r.missing.is_empty()) {
        out.push_str(&format!("{} ({}): {}: {}\n", r.name, r.region, r.state.name(), r.missing.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::FoundInstance;

    fn instance(slot: &str, pool: &str, windows: bool, state: &str) -> FoundInstance {
        FoundInstance {
            slot: slot.into(),
            pool: pool.into(),
            windows,
            instance_type: if windows { "m6i.xlarge" } else { "t3.large" }.into(),
            state: state.into(),
            spot: false,
            launch_time: "2026-12-06T10:00:00Z".into(),
        }
    }

    fn found() -> FoundCluster {
        FoundCluster {
            name: "pr-42".into(),
            expires: Some("2026-12-06T18:00:00Z".into()),
            owner: Some("arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Dev_0123/alice@example.com".into()),
            left: ["vpc", "subnet", "security-group", "secrets", "role"].map(String::from).into(),
            instances: vec![
                instance("control-plane", "control-plane", false, "running"),
                instance("win-0", "win", true, "running"),
                instance("game-0", "game", false, "running"),
            ],
            ..FoundCluster::default()
        }
    }

    #[test]
    fn states_follow_what_is_left() {
        let now = OffsetDateTime::parse("2026-12-06T12:00:00Z", &Rfc3339).unwrap();
        let r = row(&found(), "eu-west-1", now);
        assert_eq!(r.state, State::Complete);
        assert_eq!(r.expires_in_seconds, Some(6 * 3600));
        assert_eq!(r.pools["win"], PoolCount { linux: 0, windows: 1 });
        let each = |t: &str, w: bool| cost::instance_hourly(t, w).unwrap();
        let want = each("t3.large", false) * 2.0 + each("m6i.xlarge", true);
        assert_eq!(r.usd_per_hour, Some((want * 100.0).round() / 100.0));
        assert!(want > 0.0832 * 2.0 + 0.192 + 4.0 * 0.046, "the root volumes are in it");
        let mut stopped = found();
        stopped.instances[2].state = "stopped".into();
        let r = row(&stopped, "eu-west-1", now);
        assert_eq!((r.state, r.missing.clone()), (State::Partial, vec!["game-0 is stopped".to_string()]));
        let mut gone = found();
        gone.instances.clear();
        assert_eq!(row(&gone, "eu-west-1", now).state, State::HalfDestroyed);
        let later = OffsetDateTime::parse("2026-12-07T00:00:00Z", &Rfc3339).unwrap();
        assert_eq!(row(&found(), "eu-west-1", later).state, State::Expired);
        let text = to_text(&[row(&found(), "eu-west-1", now)]);
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with("pr-42  eu-west-1  complete  alice@example.com  2026-12-06 10:00  in 6h0m  game 1L, win 1W  0.56"),
            "{text}"
        );
        let json = serde_json::to_value(row(&gone, "eu-west-1", now)).unwrap();
        assert_eq!(json["state"], "half-destroyed");
    }
}
