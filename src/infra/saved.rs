//! Saved plans, as Terraform has them: `hybrid plan FILE --out PLANFILE`
//! records the plan with what it was made from (the file's text after its
//! `--set` flags, by digest, and the flags themselves); `hybrid apply
//! PLANFILE` plans again under the lock and carries out exactly the saved
//! plan, or refuses and says what moved. A plan holds names, ids, versions
//! and instance types: no secret is ever part of one (`show.rs`), so
//! neither is a plan file. Pure: the commands read and write the file.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::infra::plan::Plan;

/// What a plan file says it is.
pub const FORMAT: &str = "hybrid-plan/1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format: String,
    /// The hybrid that made it: another one renders other user data.
    pub hybrid_version: String,
    /// The cluster file, as it was named on the command line.
    pub file: String,
    /// Its `--set` flags, in order.
    pub sets: Vec<String>,
    /// SHA-256 of the file's text with the flags applied.
    pub source_sha256: String,
    pub cluster: String,
    pub region: String,
    /// RFC 3339.
    pub created: String,
    /// The plan itself, as `hybrid plan --output json` shows it.
    pub plan: Value,
}

pub fn source_digest(source: &str) -> String {
    Sha256::digest(source.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl SavedPlan {
    pub fn new(plan: &Plan, file: &str, sets: Vec<String>, source: &str, created: String) -> Self {
        SavedPlan {
            format: FORMAT.into(),
            hybrid_version: env!("CARGO_PKG_VERSION").into(),
            file: file.into(),
            sets,
            source_sha256: source_digest(source),
            cluster: plan.cluster.clone(),
            region: plan.region.clone(),
            created,
            plan: serde_json::to_value(plan).expect("a plan serializes"),
        }
    }

    /// A plan file, or `None` for anything else (a cluster file).
    pub fn parse(text: &str) -> Option<Result<SavedPlan, String>> {
        let value: Value = serde_json::from_str(text).ok()?;
        if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return value.get("format").map(|f| Err(format!("a plan file of another format ({f}); this hybrid reads {FORMAT}")));
        }
        Some(serde_json::from_value(value).map_err(|e| format!("a damaged plan file: {e}")))
    }

    /// Why this plan cannot be carried out as `fresh`, planned now from
    /// `source`: each thing that moved, in words; empty when nothing did.
    pub fn moved(&self, source: &str, fresh: &Plan) -> Vec<String> {
        let mut out = Vec::new();
        if self.hybrid_version != env!("CARGO_PKG_VERSION") {
            out.push(format!("it was made by hybrid {}, this is {}", self.hybrid_version, env!("CARGO_PKG_VERSION")));
        }
        if source_digest(source) != self.source_sha256 {
            out.push(format!("{} changed since the plan was made", self.file));
        }
        let fresh = serde_json::to_value(fresh).expect("a plan serializes");
        let changes = |plan: &Value| -> Vec<Value> { plan["changes"].as_array().cloned().unwrap_or_default() };
        let (was, now) = (changes(&self.plan), changes(&fresh));
        for c in was.iter().filter(|c| !now.contains(c)) {
            out.push(format!("planned, now different or not needed: {}", describe(c)));
        }
        for c in now.iter().filter(|c| !was.contains(c)) {
            out.push(format!("needed now, not in the plan: {}", describe(c)));
        }
        for key in ["in_use", "images"] {
            if self.plan[key] != fresh[key] && out.is_empty() {
                out.push(format!("what the plan builds on moved ({key}): {} → {}", self.plan[key], fresh[key]));
            }
        }
        out
    }
}

/// One change in a line: action, kind, name and id.
fn describe(change: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut line = format!("{} {} {}", s(&change["action"]).to_lowercase(), s(&change["resource"]["kind"]), s(&change["name"]));
    if let Some(id) = change["id"].as_str() {
        line.push_str(&format!(" [{id}]"));
    }
    if let Some(ami) = change["resource"]["desired"]["ami"]["id"].as_str() {
        line.push_str(&format!(" image {ami}"));
    }
    if let Some(reason) = change["reason"].as_str() {
        line.push_str(&format!(" ({reason})"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let spec = crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))).spec.unwrap();
        let desired = crate::infra::desired::desired_state(&spec, &Default::default(), &Default::default());
        crate::infra::plan::plan(&desired, &Default::default(), false).unwrap()
    }

    #[test]
    fn a_plan_round_trips_and_refuses_what_moved() {
        let p = plan();
        let saved = SavedPlan::new(&p, "clusters/dev.toml", vec!["cluster.name=dev".into()], "file text", "2026-12-06T12:00:00Z".into());
        let text = serde_json::to_string(&saved).unwrap();
        let back = SavedPlan::parse(&text).unwrap().unwrap();
        assert_eq!(back, saved);
        assert!(back.moved("file text", &p).is_empty());
        let edited = back.moved("other text", &p);
        assert_eq!(edited, ["clusters/dev.toml changed since the plan was made"]);
        let mut fewer = p.clone();
        fewer.changes.retain(|c| c.name != "win-tools-0");
        let moved = back.moved("file text", &fewer);
        assert_eq!(moved.len(), 1, "{moved:?}");
        assert!(moved[0].starts_with("planned, now different or not needed: create instance win-tools-0"), "{moved:?}");
        assert!(SavedPlan::parse("[cluster]\nname = \"x\"\n").is_none());
        assert!(SavedPlan::parse(r#"{"format":"hybrid-plan/9"}"#).unwrap().is_err());
    }
}
