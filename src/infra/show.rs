//! Plans as text (Terraform's symbols and summary line) or JSON. Pure:
//! returns strings; the command decides where they go. Secret values are
//! never part of a plan, so nothing here can print one.

use crate::infra::plan::{Plan, Resource};

pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        out.push_str(&format!("No changes. Cluster {} in {} matches the configuration.\n", plan.cluster, plan.region));
        return out;
    }
    let verb = if plan.destroy { "destroy" } else { "apply" };
    out.push_str(&format!("hybrid will {verb} the following for cluster {} in {}:\n\n", plan.cluster, plan.region));
    for c in &plan.changes {
        let mut line = format!("  {:>3} {:<16} {}", c.action.symbol(), c.resource.kind(), c.name);
        match &c.resource {
            Resource::Instance { desired: Some(d) } => {
                let ami = d.ami.as_ref().map_or("image resolved at apply".to_string(), |a| a.id.clone());
                line.push_str(&format!("  {} {} {}{}", d.os.name(), d.instance_type, ami, if d.spot { " spot" } else { "" }));
                if let Some(ip) = d.private_ip {
                    line.push_str(&format!(" {ip}"));
                }
            }
            Resource::Parameter { .. } => line.push_str("  SecureString (sensitive)"),
            _ => {}
        }
        if let Some(id) = &c.id {
            line.push_str(&format!("  [{id}]"));
        }
        if let Some(reason) = &c.reason {
            line.push_str(&format!("\n        because {reason}"));
        }
        out.push_str(&line);
        out.push('\n');
        if let Resource::SecurityGroup { add, remove } = &c.resource {
            for (sym, rules) in [("+", add), ("-", remove)] {
                for r in rules {
                    let ports = match (r.from_port, r.to_port) {
                        (-1, _) => "all".to_string(),
                        (a, b) if a == b => a.to_string(),
                        (a, b) => format!("{a}-{b}"),
                    };
                    out.push_str(&format!("        {sym} {} {} from {}  ({})\n", r.protocol, ports, r.source.describe(), r.description));
                }
            }
        }
    }
    let s = plan.summary();
    out.push_str(&format!("\nPlan: {} to add, {} to change, {} to destroy.\n", s.add, s.change, s.destroy));
    if plan.offline {
        out.push_str("\nThis plan was made offline, against no existing resources; images are resolved at apply time.\n");
    }
    out
}

pub fn plan_json(plan: &Plan) -> String {
    let value = serde_json::json!({
        "format_version": "1",
        "plan": plan,
        "summary": plan.summary(),
    });
    serde_json::to_string_pretty(&value).expect("a plan serializes")
}
