//! Plans as text (Terraform's symbols and summary line) or JSON. Pure:
//! returns strings; the command decides where they go. Secret values are
//! never part of a plan, so nothing here can print one.

use std::collections::BTreeMap;

use crate::infra::plan::{Action, Plan, Resource};

/// One Kubernetes object the plan would write: its symbol (`+` create,
/// `~` change, `-` delete, `-/+` replace) and what it is.
pub type KubeChange = (&'static str, String);

/// How many Kubernetes objects a plan creates, changes and deletes (a
/// replacement counts as one deleted and one created, as Terraform counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct KubeSummary {
    pub create: usize,
    pub change: usize,
    pub delete: usize,
}

pub fn kube_summary(kube: &[KubeChange]) -> KubeSummary {
    kube.iter().fold(KubeSummary::default(), |mut s, (symbol, _)| {
        match *symbol {
            "+" => s.create += 1,
            "~" => s.change += 1,
            "-" => s.delete += 1,
            _ => {
                s.create += 1;
                s.delete += 1;
            }
        }
        s
    })
}

/// The AWS side of a plan; for `hybrid plan`, `plan_text_with` shows the
/// Kubernetes side beside it.
pub fn plan_text(plan: &Plan) -> String {
    plan_text_with(plan, &[])
}

/// Both sides of a plan, with one summary: "No changes" only when neither
/// side has any.
pub fn plan_text_with(plan: &Plan, kube: &[KubeChange]) -> String {
    let mut out = String::new();
    if plan.is_empty() && kube.is_empty() {
        out.push_str(&format!("No changes. Cluster {} in {} matches the configuration.\n", plan.cluster, plan.region));
        push_notes(plan, &mut out);
        return out;
    }
    let verb = if plan.destroy { "destroy" } else { "apply" };
    out.push_str(&format!("hybrid will {verb} the following for cluster {} in {}:\n\n", plan.cluster, plan.region));
    if plan.is_empty() {
        out.push_str("  (no AWS resources change)\n");
    }
    for c in &plan.changes {
        let mut line = format!("  {:>4} {:<16} {}", c.action.symbol(), c.resource.kind(), c.name);
        match &c.resource {
            Resource::Instance { desired: Some(d) } => {
                let ami = d.ami.as_ref().map_or("image resolved at apply".to_string(), |a| a.id.clone());
                let types: Vec<&str> = d.instance_types().collect();
                line.push_str(&format!("  {} {} {}{}", d.os.name(), types.join(" or "), ami, if d.spot { " spot" } else { "" }));
                if let Some(ip) = d.private_ip {
                    line.push_str(&format!(" {ip}"));
                }
            }
            Resource::Parameter { holds: Some(kind), .. } if !kind.secure() => line.push_str("  String (the CA certificate: public)"),
            Resource::Parameter { holds: Some(_), .. } => line.push_str("  SecureString (sensitive)"),
            _ => {}
        }
        if let Some(id) = &c.id {
            line.push_str(&format!("  [{id}]"));
        }
        if let Some(reason) = &c.reason {
            line.push_str(&format!("\n         because {reason}"));
        }
        out.push_str(&line);
        out.push('\n');
        if let Resource::SecurityGroup { add, remove } | Resource::PlayersGroup { add, remove, .. } = &c.resource {
            for (sym, rules) in [("+", add), ("-", remove)] {
                for r in rules {
                    let ports = match (r.from_port, r.to_port) {
                        (-1, _) => "all".to_string(),
                        (a, b) if a == b => a.to_string(),
                        (a, b) => format!("{a}-{b}"),
                    };
                    out.push_str(&format!("         {sym} {} {} from {}  ({})\n", r.protocol, ports, r.source.describe(), r.description));
                }
            }
        }
    }
    let mut rolling: BTreeMap<&str, (usize, u32)> = BTreeMap::new();
    for c in plan.changes.iter().filter(|c| plan.rolls(c)) {
        if let Resource::Instance { desired: Some(d) } = &c.resource {
            rolling.entry(d.group.as_str()).or_insert((0, d.replace_batch)).0 += 1;
        }
    }
    if !rolling.is_empty() {
        out.push('\n');
    }
    for (pool, (n, batch)) in &rolling {
        out.push_str(&format!(
            "Pool {pool}: {n} node(s) replaced rolling, {batch} at a time (replace_batch): each is drained first, the next batch starts once the new nodes are Ready.\n"
        ));
    }
    // Which image each pool boots from matters for how fast its nodes are
    // Ready, so it is shown whenever the pool has something to launch.
    let launching: std::collections::BTreeSet<&str> = plan
        .changes
        .iter()
        .filter_map(|c| match &c.resource {
            Resource::Instance { desired: Some(d) } => Some(d.group.as_str()),
            _ => None,
        })
        .collect();
    let notes: Vec<(&String, &String)> = plan.images.iter().filter(|(pool, _)| launching.contains(pool.as_str())).collect();
    if !notes.is_empty() {
        out.push_str("\nImages:\n");
        for (pool, note) in notes {
            out.push_str(&format!("  pool {pool}: {note}\n"));
        }
    }
    if !kube.is_empty() {
        out.push_str("\nKubernetes objects apply will write:\n");
        for (symbol, what) in kube {
            out.push_str(&format!("  {symbol:>3} {what}\n"));
        }
    }
    push_notes(plan, &mut out);
    let s = plan.summary();
    out.push_str(&format!("\nPlan: {} to add, {} to change, {} to destroy", s.add, s.change, s.destroy));
    if kube.is_empty() {
        out.push_str(".\n");
    } else {
        let k = kube_summary(kube);
        out.push_str(&format!("; Kubernetes objects: {} to create, {} to change, {} to delete.\n", k.create, k.change, k.delete));
    }
    if let Some(c) = plan.changes.iter().find(|c| c.action == Action::Recreate) {
        out.push_str(&format!(
            "\nWarning: this plan RECREATES THE CLUSTER.\n  The control plane is replaced because {}.\n  Its etcd goes with it: every object in the cluster (workloads, Secrets, ConfigMaps, custom\n  resources) is lost, and every worker is replaced to join the new control plane.\n  `hybrid apply` does this only with --recreate-control-plane; to keep the cluster, change the file back.\n",
            c.reason.as_deref().unwrap_or("its identity changed")
        ));
    }
    if plan.offline {
        out.push_str("\nThis plan was made offline, against no existing resources; images are resolved at apply time.\n");
    }
    out
}

fn push_notes(plan: &Plan, out: &mut String) {
    for note in &plan.notes {
        out.push_str(&format!("\nNote: {note}\n"));
    }
}

pub fn plan_json(plan: &Plan) -> String {
    let value = serde_json::json!({
        "format_version": "1",
        "plan": plan,
        "summary": plan.summary(),
    });
    serde_json::to_string_pretty(&value).expect("a plan serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_plan() -> Plan {
        Plan {
            cluster: "c".into(),
            region: "us-east-1".into(),
            offline: false,
            destroy: false,
            changes: Vec::new(),
            in_use: Default::default(),
            images: Default::default(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn one_summary_counts_both_sides_and_no_changes_means_neither() {
        let plan = empty_plan();
        assert!(plan_text_with(&plan, &[]).starts_with("No changes."));
        let kube = [("+", "RuntimeClass/windows-2022".to_string()), ("-/+", "ClusterRoleBinding/x (replaced: roleRef)".to_string())];
        let text = plan_text_with(&plan, &kube);
        assert!(!text.contains("No changes"), "{text}");
        assert!(text.contains("(no AWS resources change)") && text.contains("  -/+ ClusterRoleBinding/x"), "{text}");
        assert!(
            text.ends_with("Plan: 0 to add, 0 to change, 0 to destroy; Kubernetes objects: 2 to create, 0 to change, 1 to delete.\n"),
            "{text}"
        );
        assert_eq!(kube_summary(&kube), KubeSummary { create: 2, change: 0, delete: 1 });
    }
}
