//! The one-screen status of a cluster: every node with its instance, state,
//! Kubernetes readiness, Windows build, age and time from launch to Ready,
//! and each node's boot timeline (from its console output): launch to
//! script start, every stage, join and Ready, with each pool's slowest
//! stage. Pure: built from an inventory, the Node objects (if the API
//! answered), the console outputs and the current time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::core::ResourceExt;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::timeline::{self, Summary};
use crate::infra::inventory::Inventory;

#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub pool: String,
    pub slot: String,
    pub instance: String,
    pub state: String,
    pub node: String,
    /// `True`, `False`, `Unknown`, or `-` when the node has not registered.
    pub ready: String,
    pub windows_build: String,
    pub age: String,
    pub time_to_ready: String,
    pub launched: Option<OffsetDateTime>,
    pub ready_at: Option<OffsetDateTime>,
    /// The boot timeline, when the console output holds one.
    pub boot: Option<Summary>,
}

/// `nodes`: `None` when the API did not answer. `consoles`: console output
/// by instance id (missing ones have no timeline).
pub fn rows(inventory: &Inventory, nodes: Option<&[Node]>, consoles: &BTreeMap<String, String>, now: OffsetDateTime) -> Vec<Row> {
    let by_name: BTreeMap<String, &Node> = nodes.unwrap_or_default().iter().map(|n| (n.name_any(), n)).collect();
    let mut instances: Vec<_> = inventory.instances.iter().collect();
    instances.sort_by(|a, b| (&a.group, &a.slot).cmp(&(&b.group, &b.slot)));
    instances
        .into_iter()
        .map(|i| {
            let launched = OffsetDateTime::parse(&i.launch_time, &Rfc3339).ok();
            let node = i.private_dns.as_deref().and_then(|d| by_name.get(d).copied());
            let ready = node.and_then(crate::cluster::converge::ready_condition);
            // k8s-openapi's Time is jiff's Timestamp; `time` keeps the rest of this module's arithmetic.
            let ready_since = ready
                .filter(|c| c.status == "True")
                .and_then(|c| OffsetDateTime::from_unix_timestamp(c.last_transition_time.as_ref()?.0.as_second()).ok());
            Row {
                pool: i.group.clone(),
                slot: i.slot.clone(),
                instance: i.id.clone(),
                state: i.state.clone(),
                node: i.private_dns.clone().unwrap_or_else(|| "-".into()),
                ready: match (nodes, &ready) {
                    (None, _) => "?".into(),
                    (Some(_), Some(c)) => c.status.clone(),
                    (Some(_), None) => "-".into(),
                },
                windows_build: node.and_then(|n| n.labels().get("node.kubernetes.io/windows-build")).map_or("-".into(), String::clone),
                age: launched.map_or("-".into(), |l| duration(now - l)),
                time_to_ready: match (launched, ready_since) {
                    (Some(l), Some(r)) => duration(r - l),
                    _ => "-".into(),
                },
                launched,
                ready_at: ready_since,
                boot: consoles.get(&i.id).map(|c| timeline::summarize(&timeline::parse(c))).filter(|s| !s.stages.is_empty()),
            }
        })
        .collect()
}

/// `3d4h`, `2h5m`, `4m12s`, `9s`.
pub fn duration(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match () {
        _ if days > 0 => format!("{days}d{hours}h"),
        _ if hours > 0 => format!("{hours}h{minutes}m"),
        _ if minutes > 0 => format!("{minutes}m{seconds}s"),
        _ => format!("{seconds}s"),
    }
}

pub fn to_text(cluster: &str, region: &str, expires: Option<&str>, rows: &[Row], api_note: Option<&str>, now: OffsetDateTime) -> String {
    let expiry = match expires.and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok()) {
        Some(t) if t > now => format!("expires {} (in {})", expires.unwrap_or_default(), duration(t - now)),
        Some(_) => format!("EXPIRED at {}: `hybrid reap` will destroy it", expires.unwrap_or_default()),
        None => "no expiry".into(),
    };
    let mut out = format!("Cluster {cluster} in {region}, {expiry}\n");
    let header = ["POOL", "SLOT", "INSTANCE", "STATE", "NODE", "READY", "WINDOWS BUILD", "AGE", "TIME TO READY"];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.pool.clone(),
                r.slot.clone(),
                r.instance.clone(),
                r.state.clone(),
                r.node.clone(),
                r.ready.clone(),
                r.windows_build.clone(),
                r.age.clone(),
                r.time_to_ready.clone(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: Vec<&str>| {
        cols.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if rows.is_empty() {
        out.push_str("(no instances)\n");
    }
    if let Some(note) = api_note {
        out.push_str(&format!("Kubernetes: {note}\n"));
    }
    out.push_str(&timeline_text(rows));
    out
}

/// Offsets from launch: `+1m10s`.
fn since(launched: Option<OffsetDateTime>, t: Option<OffsetDateTime>) -> String {
    match (launched, t) {
        (Some(l), Some(t)) => format!("+{}", duration(t - l)),
        _ => "?".into(),
    }
}

/// Each node's boot: launch → script start, each stage's time, join and
/// Ready as offsets from launch; then each pool's slowest stage.
pub fn timeline_text(rows: &[Row]) -> String {
    let with: Vec<&Row> = rows.iter().filter(|r| r.boot.is_some()).collect();
    if with.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nBoot timeline (from console output; times after launch):\n");
    let mut slowest: BTreeMap<&str, (&str, &str, i64)> = BTreeMap::new();
    for r in &with {
        let b = r.boot.as_ref().expect("filtered");
        let stages: Vec<String> = b
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| match (s.outcome, s.seconds()) {
                (Some(timeline::Event::Skip), _) => format!("{} skipped", s.name),
                (Some(timeline::Event::Fail), _) => format!("{} FAILED (attempt {})", s.name, s.attempts),
                (Some(timeline::Event::Done), Some(sec)) => format!("{} {}", s.name, duration(time::Duration::seconds(sec))),
                // Its start is no longer in the console (EC2 keeps the last 64 KB).
                (Some(timeline::Event::Done), None) => format!("{} done", s.name),
                // Stages run one after another: one that later stages followed
                // has ended, but its end marker was lost (a line cut by another writer).
                _ if i + 1 < b.stages.len() => format!("{} (end not in console)", s.name),
                _ => format!("{} running", s.name),
            })
            .collect();
        let runs = if b.runs > 1 { format!(" ({} runs)", b.runs) } else { String::new() };
        out.push_str(&format!(
            "  {}: script {}{runs}, {}; joined {}, Ready {}\n",
            r.slot,
            since(r.launched, b.script_started),
            stages.join(", "),
            since(r.launched, b.joined),
            since(r.launched, r.ready_at)
        ));
        if let Some((stage, sec)) = b.slowest() {
            let e = slowest.entry(r.pool.as_str()).or_insert((stage, r.slot.as_str(), sec));
            if sec > e.2 {
                *e = (stage, r.slot.as_str(), sec);
            }
        }
    }
    for (pool, (stage, slot, sec)) in slowest {
        out.push_str(&format!("  slowest stage in pool {pool}: {stage} ({} on {slot})\n", duration(time::Duration::seconds(sec))));
    }
    out
}

/// The same facts as JSON (for scripts: scripts/e2e-aws.sh records them).
pub fn to_json(cluster: &str, region: &str, rows: &[Row], api_note: Option<&str>) -> Value {
    let secs = |a: Option<OffsetDateTime>, b: Option<OffsetDateTime>| match (a, b) {
        (Some(a), Some(b)) => serde_json::json!((b - a).whole_seconds()),
        _ => Value::Null,
    };
    let nodes: Vec<Value> = rows
        .iter()
        .map(|r| {
            let boot = r.boot.as_ref().map(|b| {
                serde_json::json!({
                    "script_started_s": secs(r.launched, b.script_started),
                    "script_runs": b.runs,
                    "finished_s": secs(r.launched, b.finished),
                    "joined_s": secs(r.launched, b.joined),
                    "stages": b.stages.iter().map(|s| serde_json::json!({
                        "stage": s.name,
                        "outcome": s.outcome.map(|o| format!("{o:?}").to_lowercase()),
                        "seconds": s.seconds(),
                        "attempts": s.attempts,
                    })).collect::<Vec<_>>(),
                })
            });
            serde_json::json!({
                "pool": r.pool, "slot": r.slot, "instance": r.instance, "state": r.state, "node": r.node,
                "ready": r.ready, "windows_build": r.windows_build,
                "time_to_ready_s": secs(r.launched, r.ready_at),
                "boot": boot,
            })
        })
        .collect();
    serde_json::json!({ "cluster": cluster, "region": region, "kubernetes": api_note.unwrap_or("answered"), "nodes": nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::inventory::Instance;
    use serde_json::json;

    #[test]
    fn rows_join_instances_and_nodes() {
        let now = OffsetDateTime::parse("2026-11-23T12:00:00Z", &Rfc3339).unwrap();
        let inv = Inventory {
            instances: vec![Instance {
                id: "i-1".into(),
                slot: "win-0".into(),
                group: "win".into(),
                spec_hash: "x".into(),
                kubernetes_version: String::new(),
                cni: String::new(),
                state: "running".into(),
                instance_type: "m6i.xlarge".into(),
                image_id: "ami-1".into(),
                private_ip: None,
                private_dns: Some("ip-10-0-0-5.ec2.internal".into()),
                vpc_id: None,
                subnet_id: None,
                instance_profile: None,
                security_groups: Vec::new(),
                public_ip: None,
                launch_time: "2026-11-23T11:00:00Z".into(),
            }],
            ..Inventory::default()
        };
        let nodes = vec![
            serde_json::from_value(json!({
                "metadata": { "name": "ip-10-0-0-5.ec2.internal", "labels": { "node.kubernetes.io/windows-build": "10.0.20348" } },
                "status": { "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": "2026-11-23T11:12:30Z" }] },
            }))
            .unwrap(),
        ];
        let r = &rows(&inv, Some(&nodes), &BTreeMap::new(), now)[0];
        assert_eq!(
            (r.ready.as_str(), r.windows_build.as_str(), r.age.as_str(), r.time_to_ready.as_str()),
            ("True", "10.0.20348", "1h0m", "12m30s")
        );
        assert_eq!(rows(&inv, None, &BTreeMap::new(), now)[0].ready, "?");
        let text = to_text("dev", "us-east-1", Some("2026-11-23T20:00:00Z"), &rows(&inv, Some(&nodes), &BTreeMap::new(), now), None, now);
        assert!(text.starts_with("Cluster dev in us-east-1, expires 2026-11-23T20:00:00Z (in 8h0m)\n"), "{text}");
        assert!(text.contains("win   win-0  i-1       running  ip-10-0-0-5.ec2.internal  True   10.0.20348     1h0m  12m30s"), "{text}");
    }
}
