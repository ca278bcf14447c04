//! Brings the Kubernetes objects of `cluster` into being through a
//! `KubeApi`: create what is missing, merge-patch what lacks a desired
//! field, leave the rest alone (so a second run writes nothing).

use serde_json::Value;

use crate::adapters::kube::{KubeApi, KubeResult};
use crate::cluster::{KubeObject, contains, node_patch};
use crate::execute::Progress;
use crate::model::Pool;

/// What happened to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Patched,
    Unchanged,
}

pub async fn converge_objects<K: KubeApi>(api: &K, objects: &[KubeObject], progress: &impl Progress) -> KubeResult<Vec<(String, Outcome)>> {
    let mut out = Vec::new();
    for o in objects {
        let outcome = match api.get(&o.path()).await? {
            None => {
                api.create(&o.collection, &o.body).await?;
                Outcome::Created
            }
            Some(current) if !contains(&current, &o.body) => {
                api.merge_patch(&o.path(), &o.body).await?;
                Outcome::Patched
            }
            Some(_) => Outcome::Unchanged,
        };
        if outcome != Outcome::Unchanged {
            progress.line(&format!("{} {}", o.describe(), if outcome == Outcome::Created { "created" } else { "updated" }));
        }
        out.push((o.describe(), outcome));
    }
    Ok(out)
}

/// Gives every node of a pool the pool's labels and taints. `pool_of` maps
/// a node name to its pool (from the instances' private DNS names).
pub async fn reconcile_nodes<'p, K: KubeApi>(api: &K, pool_of: impl Fn(&str) -> Option<&'p Pool>, progress: &impl Progress) -> KubeResult<usize> {
    let mut changed = 0;
    for node in api.list("/api/v1/nodes", None, None).await? {
        let name = node["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let Some(pool) = pool_of(&name) else { continue };
        if let Some(patch) = node_patch(&node, pool) {
            api.merge_patch(&format!("/api/v1/nodes/{name}"), &patch).await?;
            progress.line(&format!("node {name}: labels and taints of pool {} applied", pool.name));
            changed += 1;
        }
    }
    Ok(changed)
}

/// Ready condition of a Node object: `(ready, last message)`.
pub fn node_ready(node: &Value) -> (bool, String) {
    let conditions = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
    match conditions.iter().find(|c| c["type"] == "Ready") {
        Some(c) => (c["status"] == "True", c["message"].as_str().unwrap_or("").to_string()),
        None => (false, "no Ready condition yet".into()),
    }
}
