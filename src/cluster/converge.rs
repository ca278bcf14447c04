//! Brings the Kubernetes objects of `cluster` into being through a
//! `KubeApi`: each object is server-side applied when a dry-run apply says
//! it would change (or it is missing), so a second run writes nothing even
//! though the API server defaults fields and controllers write back.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use kube::core::ResourceExt;
use serde_json::Value;

use crate::adapters::kube::{FIELD_MANAGER, KubeApi, KubeResult};
use crate::cluster::objects::{
    ACCESS_LABEL, CLUSTER_ROLE_BINDINGS, CORDONED_ANNOTATION, KubeObject, MANAGED_ANNOTATION, OBSOLETE, PRUNED_BINDINGS, node_patch,
    node_proxier_binding, unchanged,
};
use crate::model::Pool;
use crate::progress::{Event, NodeStage, Progress};

/// What happened to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Patched,
    /// The change touches a field the API server keeps fixed after
    /// creation (a binding's roleRef, a workload's selector, a Secret's
    /// type): deleted and created again. The server's reason, in its words.
    Replaced(String),
    Unchanged,
}

/// The server's words when an update would change a field it keeps fixed
/// (422 Invalid from the update validation in pkg/apis/*/validation:
/// "field is immutable", "cannot change roleRef", "may not change once
/// set"), or `None` for any other error.
fn immutable_field(e: &KubeError) -> Option<String> {
    const MARKS: [&str; 3] = ["field is immutable", "cannot change roleRef", "may not change once set"];
    (e.status == Some(422) && MARKS.iter().any(|m| e.message.contains(m))).then(|| {
        // "Kind "name" is invalid: FIELD: Invalid value: ...: DETAIL" -> "FIELD: DETAIL".
        let detail = e.message.split_once(" is invalid: ").map_or(e.message.as_str(), |(_, d)| d);
        match (detail.split_once(':'), MARKS.iter().find(|m| detail.contains(*m))) {
            (Some((field, _)), Some(mark)) => format!("{}: {mark}", field.trim()),
            _ => detail.to_string(),
        }
    })
}

/// What converging `o` needs: absent is a create; present, a dry-run apply
/// decides. The one rule behind both `converge_objects` and `pending_changes`.
///
/// The dry run is compared with the object as it was when the dry run ran:
/// a controller writing in between (the Tigera operator fills in defaults
/// right after hybrid's writes) would otherwise look like a change hybrid
/// has to make. So the object is read before and after the dry run, and the
/// answer counts only when nothing moved meanwhile (a few tries).
async fn needed<K: KubeApi>(api: &K, o: &KubeObject) -> KubeResult<Outcome> {
    let version = |v: &Value| v["metadata"]["resourceVersion"].clone();
    let mut retry = Retry::new(CONFLICT_BACKOFF).attempts(3);
    loop {
        let Some(before) = api.get(&o.path()).await? else { return Ok(Outcome::Created) };
        let would_be = match api.apply(&o.path(), &o.body, o.force, true).await {
            Ok(v) => v,
            Err(e) => return immutable_field(&e).map(Outcome::Replaced).ok_or(e),
        };
        let outcome = if unchanged(&before, &would_be) { Outcome::Unchanged } else { Outcome::Patched };
        match api.get(&o.path()).await? {
            Some(after) if version(&after) == version(&before) => return Ok(outcome),
            // Moved meanwhile: look again, a few times, then take the last answer.
            Some(_) if retry.wait().await => continue,
            Some(_) => return Ok(outcome),
            None => return Ok(Outcome::Created),
        }
    }
}

/// Another writer got in between a read and a write (409 Conflict, or an
/// object that moved under a dry run): read again and retry almost at
/// once, as client-go's `retry.RetryOnConflict` does (`DefaultRetry`: five
/// steps from 10 ms).
const CONFLICT_BACKOFF: Backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));

pub async fn converge_objects<K: KubeApi>(api: &K, objects: &[KubeObject], progress: &impl Progress) -> KubeResult<Vec<(String, Outcome)>> {
    let mut out = Vec::new();
    for o in objects {
        let outcome = needed(api, o).await?;
        if let Outcome::Replaced(why) = &outcome {
            api.delete(&o.path()).await?;
            api.apply(&o.path(), &o.body, o.force, false).await?;
            progress.line(&format!("{} replaced ({why})", o.describe()));
        } else if outcome != Outcome::Unchanged {
            api.apply(&o.path(), &o.body, o.force, false).await?;
            progress.line(&format!("{} {}", o.describe(), if outcome == Outcome::Created { "created" } else { "updated" }));
        }
        out.push((o.describe(), outcome));
    }
    Ok(out)
}

/// Objects hybrid wrote that `desired` no longer has, as (path, `kind/name`):
/// those of `objects::OBSOLETE` while hybrid still manages them (an object
/// of that name someone else made is left alone), and the labelled
/// bindings (`PRUNED_BINDINGS`) of Windows nodes that went away and of
/// roles `[access]` no longer grants.
async fn stale<K: KubeApi>(api: &K, desired: &[KubeObject]) -> KubeResult<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (path, what) in OBSOLETE {
        let managed =
            |o: &Value| o["metadata"]["managedFields"].as_array().is_some_and(|f| f.iter().any(|m| m["manager"] == FIELD_MANAGER));
        if api.get(path).await?.is_some_and(|o| managed(&o)) {
            out.push((path.to_string(), what.to_string()));
        }
    }
    let wanted: std::collections::BTreeSet<String> = desired.iter().map(KubeObject::path).collect();
    // Editors' RoleBindings, in whichever namespaces they are.
    for b in api.list_of::<RoleBinding>(None, Some(&format!("{ACCESS_LABEL}=true")), None).await? {
        let (ns, name) = (b.namespace().unwrap_or_default(), b.name_any());
        let path = format!("{}/{name}", <RoleBinding as kube::core::Resource>::url_path(&(), Some(&ns)));
        if !wanted.contains(&path) {
            out.push((path, format!("RoleBinding/{name} in {ns}")));
        }
    }
    for label in PRUNED_BINDINGS {
        for b in api.list_of::<ClusterRoleBinding>(None, Some(&format!("{label}=true")), None).await? {
            let name = b.name_any();
            let path = format!("{CLUSTER_ROLE_BINDINGS}/{name}");
            if !wanted.contains(&path) {
                out.push((path, format!("ClusterRoleBinding/{name}")));
            }
        }
    }
    Ok(out)
}

/// The names of the namespaces that exist.
pub async fn namespaces<K: KubeApi>(api: &K) -> KubeResult<Vec<String>> {
    Ok(api.list_of::<Namespace>(None, None, None).await?.iter().map(ResourceExt::name_any).collect())
}

/// Deletes what `stale` finds.
pub async fn remove_stale<K: KubeApi>(api: &K, desired: &[KubeObject], progress: &impl Progress) -> KubeResult<usize> {
    let doomed = stale(api, desired).await?;
    for (path, what) in &doomed {
        api.delete(path).await?;
        progress.line(&format!("{what} deleted (hybrid no longer writes it)"));
    }
    Ok(doomed.len())
}

/// Gives every node of a pool the pool's labels and taints. `pool_of` maps
/// a node name to its pool (from the instances' private DNS names).
///
/// Other controllers write Nodes too (the node lifecycle controller's
/// taints, an autoscaler's, an operator's labels). A merge patch replaces
/// the whole taint list, so each patch carries the resourceVersion it was
/// computed from: if someone wrote in between, the server answers 409
/// Conflict and the node is read again and the patch recomputed, keeping
/// what the other writer added instead of writing over it.
pub async fn reconcile_nodes<'p, K: KubeApi>(
    api: &K,
    pool_of: impl Fn(&str) -> Option<&'p Pool>,
    progress: &impl Progress,
) -> KubeResult<usize> {
    const TRIES: u32 = 5;
    let mut changed = 0;
    for listed in api.list_of::<Node>(None, None, None).await? {
        let name = listed.name_any();
        let Some(pool) = pool_of(&name) else { continue };
        let path = format!("/api/v1/nodes/{name}");
        let mut node = listed;
        let mut retry = Retry::new(CONFLICT_BACKOFF).attempts(TRIES);
        while let Some(mut patch) = node_patch(&node, pool) {
            let what = node_change(&patch, pool);
            patch["metadata"]["resourceVersion"] = serde_json::json!(node.metadata.resource_version);
            match api.merge_patch(&path, &patch).await {
                Ok(_) => {
                    progress.line(&format!("node {name}: {what} applied"));
                    changed += 1;
                    break;
                }
                Err(e) if e.status == Some(409) => {
                    if !retry.wait().await {
                        return Err(e);
                    }
                    let Some(fresh) = api.get_of::<Node>(None, &name).await? else { break };
                    node = fresh;
                }
                // Deleted since the list (a drain, a scale-down): nothing to do.
                Err(e) if e.status == Some(404) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(changed)
}

/// What a node patch does, for progress lines and plans.
fn node_change(patch: &Value, pool: &Pool) -> String {
    if patch["spec"]["unschedulable"] == false {
        format!("uncordon: hybrid cordoned it for a removal that did not happen; labels and taints of pool {}", pool.name)
    } else {
        format!("labels and taints of pool {}", pool.name)
    }
}

/// Whether a node's kubelet still talks to the API server: its Ready
/// condition is not Unknown (the node lifecycle controller sets Unknown
/// when the kubelet stops posting) and it has no unreachable taint. A node
/// that is NotReady (False) but answering still confirms its pods' end.
pub fn node_answers(node: &Node) -> bool {
    let unknown = ready_condition(node).is_some_and(|c| c.status == "Unknown");
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let unreachable = taints.iter().any(|t| t.key == "node.kubernetes.io/unreachable");
    !unknown && !unreachable
}

/// Ready condition of a Node object: `(ready, last message)`.
pub fn node_ready(node: &Node) -> (bool, String) {
    match ready_condition(node) {
        Some(c) => (c.status == "True", c.message.clone().unwrap_or_default()),
        None => (false, "no Ready condition yet".into()),
    }
}

/// A Node's `Ready` condition, once its kubelet has posted one.
pub fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

// =^..^= the cluster phase of apply: API, objects, token, nodes =^..^=

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::adapters::Cloud;
use crate::adapters::kube::KubeError;
use crate::bootstrap::pki::BootstrapToken;
use crate::cluster::objects::{CalicoApi, bootstrap_token_secret, desired_objects};
use crate::infra::desired::CONTROL_PLANE;
use crate::infra::execute::NewNode;
use crate::infra::inventory::Inventory;
use crate::model::{ClusterSpec, CniPlugin};
use crate::retry::{Backoff, Retry};

#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Cloud(#[from] crate::adapters::CloudError),
    #[error("the API server did not answer within {seconds}s (last error: {last}){console}")]
    ApiTimeout { seconds: u64, last: String, console: String },
    #[error("the cluster's objects could not be written within {seconds}s: {last}")]
    ObjectsTimeout { seconds: u64, last: String },
    #[error(
        "{0}\nanother field manager set a field hybrid applies to a different value; set it back (or make that manager stop), or hand the field to hybrid: kubectl apply --server-side --field-manager=hybrid --force-conflicts"
    )]
    Conflict(KubeError),
    #[error(
        "{0}\nthe API server refused an object hybrid writes: this is a bug in hybrid, or the cluster runs versions hybrid does not expect (`hybrid versions FILE`)"
    )]
    Refused(KubeError),
    #[error("{count} node(s) not Ready after {seconds}s:\n{report}")]
    NodesNotReady { count: usize, seconds: u64, report: String },
    #[error(
        "{}\nthe cluster is being destroyed, or the instances were ended or stopped (a spot interruption, a failed host, a person); run apply again (once a stopping instance is stopped): it starts stopped instances and replaces ended ones",
        .0.iter().map(|(node, id, state)| format!("node {node}: its instance {id} is {state}")).collect::<Vec<_>>().join("\n")
    )]
    InstancesGone(Vec<(String, String, String)>),
    #[error("could not drain node {node} within {seconds}s: {detail}")]
    DrainTimeout { node: String, seconds: u64, detail: String },
}

/// How long the cluster phase waits, and how often it looks.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    pub api: Duration,
    pub nodes: Duration,
    pub drain: Duration,
    pub poll: Duration,
}

/// How often a long wait says it is still waiting.
const REPORT_EVERY: Duration = Duration::from_secs(30);

impl Default for Waits {
    fn default() -> Self {
        // Windows nodes on Base AMIs take 10-15 minutes to join (WINDOWS-NOTES §8).
        Self {
            api: Duration::from_secs(900),
            nodes: Duration::from_secs(1800),
            drain: Duration::from_secs(300),
            poll: Duration::from_secs(5),
        }
    }
}

/// How long a just-in-time bootstrap token stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(2 * 3600);

/// An expected node: an instance with its EC2 private DNS name.
#[derive(Clone, Debug)]
pub struct Expected {
    pub node_name: String,
    pub slot: String,
    pub group: String,
    pub instance_id: String,
    /// EC2 said `running` when discovery looked.
    pub running: bool,
}

pub fn expected_nodes(inventory: &Inventory) -> Vec<Expected> {
    let mut v: Vec<Expected> = inventory
        .instances
        .iter()
        .filter_map(|i| {
            let dns = i.private_dns.as_deref().filter(|d| !d.is_empty())?;
            Some(Expected {
                node_name: dns.to_string(),
                slot: i.slot.clone(),
                group: i.group.clone(),
                instance_id: i.id.clone(),
                running: i.state == "running",
            })
        })
        .collect();
    v.sort_by(|a, b| a.slot.cmp(&b.slot));
    v
}

/// Waits until `/version` answers.
pub async fn wait_for_api<K: KubeApi, C: Cloud>(
    api: &K,
    cloud: &C,
    control_plane: Option<&str>,
    waits: Waits,
    progress: &impl Progress,
) -> Result<(), ConvergeError> {
    let mut poll = Retry::polling(waits.poll, waits.api);
    loop {
        let last = match api.get("/version").await {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => "GET /version: 404 (not served yet)".to_string(),
            Err(e) => e.message,
        };
        let report = poll.report_due(REPORT_EVERY);
        progress.event(&Event::Waiting { what: "the API server", elapsed: poll.elapsed(), report });
        if !poll.wait().await {
            let console = match control_plane {
                Some(id) => cloud
                    .console_output(id)
                    .await
                    .map(|c| format!("\ncontrol plane console (last lines):\n{}", tail(&c, 15)))
                    .unwrap_or_default(),
                None => String::new(),
            };
            return Err(ConvergeError::ApiTimeout { seconds: waits.api.as_secs(), last, console });
        }
    }
}

/// Converges the CNI, kube-proxy and RuntimeClass objects, retrying while
/// their APIs are still being installed by the control plane's bootstrap.
pub async fn converge_cluster_objects<K: KubeApi>(
    api: &K,
    spec: &ClusterSpec,
    api_server_ip: &str,
    windows_nodes: &[String],
    waits: Waits,
    progress: &impl Progress,
) -> Result<(), ConvergeError> {
    let mut poll = Retry::polling(waits.poll, waits.api);
    loop {
        let groups = api.api_groups().await?;
        let calico = CalicoApi::detect(&groups);
        let ready = spec.cni.plugin == CniPlugin::Flannel || (calico.is_some() && groups.iter().any(|g| g == "operator.tigera.io"));
        let attempt = if ready {
            let desired = desired_objects(spec, calico, api_server_ip, windows_nodes, &namespaces(api).await?);
            let result = match converge_objects(api, &desired, progress).await {
                Ok(_) => remove_stale(api, &desired, progress).await.map(drop),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => Ok(()),
                // Another manager owns a field hybrid sets, with another value.
                Err(e) if e.status == Some(409) && e.message.contains("conflict") => return Err(ConvergeError::Conflict(e)),
                // The server refused the object itself: waiting will not help.
                Err(e) if matches!(e.status, Some(400 | 415 | 422)) => return Err(ConvergeError::Refused(e)),
                Err(e) => Err(e.to_string()),
            }
        } else {
            Err("Calico's API groups are not served yet (the control plane installs the Tigera operator)".to_string())
        };
        match attempt {
            Ok(()) => return Ok(()),
            Err(last) => {
                progress.line(&format!("waiting to write the cluster's objects: {last}"));
                if !poll.wait().await {
                    return Err(ConvergeError::ObjectsTimeout { seconds: waits.api.as_secs(), last });
                }
            }
        }
    }
}

/// The bootstrap tokens hybrid made (its own and kubeadm init's, both
/// described `hybrid: …`), as (Secret path, token id): none outlives the
/// joins it was made for.
async fn hybrid_tokens<K: KubeApi>(api: &K) -> KubeResult<Vec<(String, String)>> {
    let secrets = api.list_of::<Secret>(Some("kube-system"), None, Some("type=bootstrap.kubernetes.io/token")).await?;
    Ok(secrets
        .iter()
        .filter(|s| s.type_.as_deref() == Some("bootstrap.kubernetes.io/token"))
        .filter(|s| s.data.as_ref().and_then(|d| d.get("description")).is_some_and(|d| d.0.starts_with(b"hybrid:")))
        .map(|s| {
            let name = s.name_any();
            (format!("/api/v1/namespaces/kube-system/secrets/{name}"), name.trim_start_matches("bootstrap-token-").to_string())
        })
        .collect())
}

/// Removes every bootstrap token hybrid made, once every node has joined.
/// The nodes are Ready by then, so a failure here is said, not fatal: the
/// token expires by itself (`TOKEN_TTL`), and the next apply removes it.
async fn remove_tokens<K: KubeApi>(api: &K, progress: &impl Progress) {
    let removed = async {
        for (path, id) in hybrid_tokens(api).await? {
            api.delete(&path).await?;
            progress.line(&format!("bootstrap token {id} removed: every node has joined"));
        }
        KubeResult::Ok(())
    };
    if let Err(e) = removed.await {
        progress.line(&format!(
            "warning: could not remove hybrid's bootstrap tokens ({e}); they expire by themselves, and the next apply removes them"
        ));
    }
}

/// Waits for every expected node to register and become Ready, showing
/// each node's progress; meanwhile keeps this run's bootstrap token valid
/// (created as a Secret when missing) and, once every node has joined,
/// removes it and every other token hybrid made.
pub async fn wait_for_nodes<K: KubeApi, C: Cloud>(
    api: &K,
    cloud: &C,
    expected: &[Expected],
    token: &BootstrapToken,
    waits: Waits,
    progress: &impl Progress,
) -> Result<(), ConvergeError> {
    let mut poll = Retry::polling(waits.poll, waits.nodes);
    let token_path = format!("/api/v1/namespaces/kube-system/secrets/bootstrap-token-{}", token.id());
    let mut seen: BTreeMap<String, NodeStage> = BTreeMap::new();
    for e in expected {
        progress.event(&Event::NodeExpected { pool: &e.group, slot: &e.slot, node: &e.node_name, running: e.running });
    }
    let mut last_instance_look = Instant::now();
    // Instances some Describe has shown. EC2 is eventually consistent: an
    // instance launched a moment ago can be missing from a Describe, which
    // is not its end. Missing means gone only for one seen before (a
    // terminated instance stays visible for about an hour) or one that was
    // running before this apply.
    let mut described: std::collections::BTreeSet<String> = expected.iter().filter(|e| e.running).map(|e| e.instance_id.clone()).collect();
    loop {
        let Some(listed) = poll.tolerate(api.list_of::<Node>(None, None, None).await).await? else { continue };
        let nodes: BTreeMap<String, Node> = listed.into_iter().map(|n| (n.name_any(), n)).collect();
        let mut pending = Vec::new();
        for e in expected {
            let state = nodes.get(&e.node_name).map(node_ready);
            let stage = match &state {
                None => NodeStage::Launched,
                Some((false, _)) => NodeStage::Joined,
                Some((true, _)) => NodeStage::Ready,
            };
            if seen.get(&e.node_name) != Some(&stage) {
                progress.event(&Event::NodeChanged { pool: &e.group, slot: &e.slot, node: &e.node_name, stage, elapsed: poll.elapsed() });
                seen.insert(e.node_name.clone(), stage);
            }
            if stage != NodeStage::Ready {
                pending.push((e, state));
            }
        }
        let all_registered = expected.iter().all(|e| nodes.contains_key(&e.node_name));
        if !all_registered {
            let Some(stored) = poll.tolerate(api.get(&token_path).await).await? else { continue };
            if stored.is_none() {
                let expires = crate::adapters::clock::rfc3339_from_now(TOKEN_TTL);
                let secret = bootstrap_token_secret(token.id(), token.secret(), &expires);
                match api.create("/api/v1/namespaces/kube-system/secrets", &secret.body).await {
                    // Made by the try whose answer was lost: it is there.
                    Err(e) if e.status == Some(409) => {}
                    other => {
                        other?;
                    }
                }
                progress.line(&format!("bootstrap token {} valid until {expires} for joining nodes", token.id()));
            }
        }
        if pending.is_empty() {
            remove_tokens(api, progress).await;
            return Ok(());
        }
        // A node whose instance is gone never registers: say so now, not
        // at the timeout (a destroy, a spot interruption). Looked at every
        // sixth poll (half a minute), and once more before giving up.
        if last_instance_look.elapsed() >= waits.poll * 6 || poll.past_deadline() {
            last_instance_look = Instant::now();
            let ids: Vec<String> = pending.iter().map(|(e, _)| e.instance_id.clone()).collect();
            let Some(states) = poll.tolerate(cloud.instance_states(&ids).await).await? else { continue };
            described.extend(states.keys().cloned());
            let gone: Vec<(String, String, String)> = pending
                .iter()
                .filter(|(e, _)| described.contains(&e.instance_id))
                .filter_map(|(e, _)| {
                    let state = states.get(&e.instance_id).map(String::as_str).unwrap_or("gone");
                    // A stopped instance runs no kubelet either: apply starts it.
                    matches!(state, "shutting-down" | "terminated" | "gone" | "stopping" | "stopped")
                        .then(|| (e.node_name.clone(), e.instance_id.clone(), state.to_string()))
                })
                .collect();
            if !gone.is_empty() {
                return Err(ConvergeError::InstancesGone(gone));
            }
        }
        if !poll.wait().await {
            let mut report = String::new();
            for (e, state) in &pending {
                let status = match state {
                    None => "not registered".to_string(),
                    Some((_, msg)) => format!("NotReady: {msg}"),
                };
                report.push_str(&format!("  {} ({}, {}): {status}\n", e.slot, e.node_name, e.instance_id));
                if let Ok(console) = cloud.console_output(&e.instance_id).await {
                    for line in tail(&console, 8).lines() {
                        report.push_str(&format!("      console: {line}\n"));
                    }
                }
            }
            return Err(ConvergeError::NodesNotReady { count: pending.len(), seconds: waits.nodes.as_secs(), report });
        }
    }
}

/// Cordons a node, evicts its pods (honouring PodDisruptionBudgets, which
/// answer 429 until they allow it), waits for them to go, and deletes the
/// Node object. DaemonSet and mirror pods stay: they go with the node.
///
/// A node that does not answer (`node_answers`) never confirms a pod's
/// end, so its pods stay Terminating until the Node goes (the Kubernetes
/// docs' "Force Delete StatefulSet Pods" page; pod garbage collection,
/// pkg/controller/podgc, then removes pods of a Node that no longer
/// exists): the drain does not wait for those (kubectl's own
/// `--skip-wait-for-delete-timeout` goes by the age of a deletion; this
/// goes by the node), and deleting the Node lets them go. When the node's
/// instance is gone (`gone`: terminated by AWS or by hand), nothing of it
/// runs any more, so its pods are deleted rather than evicted, as
/// `--disable-eviction` does: a disruption budget protects running
/// replicas, and these are not.
pub async fn drain_node<K: KubeApi>(api: &K, node: &str, gone: bool, waits: Waits, progress: &impl Progress) -> Result<(), ConvergeError> {
    let path = format!("/api/v1/nodes/{node}");
    let mut poll = Retry::polling(waits.poll, waits.drain);
    let exists = loop {
        if let Some(found) = poll.tolerate(api.get_of::<Node>(None, node).await).await? {
            break found.is_some();
        }
    };
    if !exists {
        return Ok(());
    }
    let cordon = serde_json::json!({ "metadata": { "annotations": { CORDONED_ANNOTATION: "true" } }, "spec": { "unschedulable": true } });
    api.merge_patch(&path, &cordon).await?;
    progress.line(&format!("node {node}: cordoned{}", if gone { " (its instance is gone)" } else { "" }));
    let mut said_dead = false;
    loop {
        let answering = if gone {
            false
        } else {
            let Some(current) = poll.tolerate(api.get_of::<Node>(None, node).await).await? else { continue };
            current.is_some_and(|n| node_answers(&n))
        };
        let Some(on_node) = poll.tolerate(api.list_of::<Pod>(None, None, Some(&format!("spec.nodeName={node}"))).await).await? else {
            continue;
        };
        let pods: Vec<Pod> = on_node
            .into_iter()
            .filter(|p| {
                let owned_by_ds = p.owner_references().iter().any(|r| r.kind == "DaemonSet");
                let mirror = p.annotations().contains_key("kubernetes.io/config.mirror");
                !owned_by_ds && !mirror
            })
            .collect();
        let (terminating, running): (Vec<&Pod>, Vec<&Pod>) = pods.iter().partition(|p| p.metadata.deletion_timestamp.is_some());
        if !answering && !terminating.is_empty() && !said_dead {
            said_dead = true;
            progress.line(&format!(
                "node {node}: NotReady: not waiting for {} pod(s) to finish terminating (no kubelet confirms it); they go with the Node",
                terminating.len()
            ));
        }
        // What is left to wait for: everything, on a node that answers;
        // only pods not yet asked to go, on one that does not.
        if running.is_empty() && (terminating.is_empty() || !answering) {
            break;
        }
        let mut blocked = Vec::new();
        // Evicted pods terminate over their grace period: wait for them,
        // evict only the others.
        for p in &running {
            let (ns, name) = (p.namespace().unwrap_or_else(|| "default".into()), p.name_any());
            let (ns, name) = (ns.as_str(), name.as_str());
            if gone {
                api.delete(&format!("/api/v1/namespaces/{ns}/pods/{name}")).await?;
                progress.line(&format!("node {node}: deleted {ns}/{name} (its instance is gone: nothing to evict it from)"));
            } else if api.evict(ns, name).await? {
                progress.line(&format!("node {node}: evicted {ns}/{name}"));
            } else {
                blocked.push(format!("{ns}/{name}"));
            }
        }
        if !poll.wait().await {
            return Err(ConvergeError::DrainTimeout {
                node: node.to_string(),
                seconds: waits.drain.as_secs(),
                detail: if blocked.is_empty() {
                    "pods are still terminating".into()
                } else {
                    format!("evicting {} is refused for now (a PodDisruptionBudget, or a busy API server)", blocked.join(", "))
                },
            });
        }
    }
    api.delete(&path).await?;
    progress.line(&format!("node {node}: drained and deleted"));
    Ok(())
}

/// Nodes hybrid looked after (they carry its managed-keys annotation)
/// whose instance is no longer one of the cluster's: terminated by AWS (a
/// spot interruption, a failed host) or by hand. Without a cloud
/// controller nothing deletes such a Node; it stays with its pods
/// Terminating. Only a node that no longer answers counts: one whose
/// kubelet still posts runs somewhere (an instance whose tags were edited
/// is not in discovery, and its pods must not be deleted).
pub fn orphan_nodes(nodes: &[Node], expected: &[Expected]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n.annotations().contains_key(MANAGED_ANNOTATION))
        .filter(|n| !node_answers(n))
        .map(ResourceExt::name_any)
        .filter(|name| !expected.iter().any(|e| e.node_name == *name))
        .collect()
}

/// Drains (without waiting for what cannot end) and deletes every orphan
/// node; returns how many there were.
pub async fn remove_orphan_nodes<K: KubeApi>(
    api: &K,
    expected: &[Expected],
    waits: Waits,
    progress: &impl Progress,
) -> Result<usize, ConvergeError> {
    let orphans = orphan_nodes(&api.list_of::<Node>(None, None, None).await?, expected);
    for node in &orphans {
        drain_node(api, node, true, waits, progress).await?;
    }
    Ok(orphans.len())
}

/// The Kubernetes side of `infra::execute::Nodes`: `drain_node` and
/// `wait_for_nodes` with the waits and join token of this apply.
pub struct KubeNodes<'a, K> {
    pub api: &'a K,
    pub waits: Waits,
    pub token: &'a BootstrapToken,
    /// Pools of Windows nodes: a replacement there gets its node-proxier
    /// binding before it is waited for, so its host services work at once.
    pub windows_pools: Vec<String>,
}

impl<K: KubeApi> crate::infra::execute::Nodes for KubeNodes<'_, K> {
    async fn drain(&self, node: &str, progress: &impl Progress) -> Result<(), String> {
        drain_node(self.api, node, false, self.waits, progress).await.map_err(|e| e.to_string())
    }

    async fn wait_ready<C: Cloud>(&self, cloud: &C, launched: &[NewNode], progress: &impl Progress) -> Result<(), String> {
        let windows = launched.iter().filter(|n| self.windows_pools.contains(&n.group) && !n.node_name.is_empty());
        let bindings: Vec<KubeObject> = windows.map(|n| node_proxier_binding(&n.node_name)).collect();
        converge_objects(self.api, &bindings, progress).await.map_err(|e| e.to_string())?;
        let expected: Vec<Expected> = launched
            .iter()
            .map(|n| Expected {
                node_name: n.node_name.clone(),
                slot: n.slot.clone(),
                group: n.group.clone(),
                instance_id: n.instance_id.clone(),
                running: false,
            })
            .collect();
        wait_for_nodes(self.api, cloud, &expected, self.token, self.waits, progress).await.map_err(|e| e.to_string())
    }
}

/// The last `n` non-empty lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The Node names of the cluster's Windows instances.
pub fn windows_nodes(spec: &ClusterSpec, expected: &[Expected]) -> Vec<String> {
    let pools = pools_by_node(spec, expected);
    expected.iter().filter(|e| pools.get(&e.node_name).is_some_and(|p| p.os.is_windows())).map(|e| e.node_name.clone()).collect()
}

/// The pool of each node name, from the instances' slots.
pub fn pools_by_node<'s>(spec: &'s ClusterSpec, expected: &[Expected]) -> BTreeMap<String, &'s Pool> {
    expected
        .iter()
        .filter(|e| e.group != CONTROL_PLANE)
        .filter_map(|e| spec.pools.iter().find(|p| p.name == e.group).map(|p| (e.node_name.clone(), p)))
        .collect()
}

/// What `converge_objects` and `reconcile_nodes` would do, without writing:
/// `(symbol, what)` with `+` create, `~` update and `-` delete, for `hybrid plan`.
pub async fn pending_changes<K: KubeApi>(
    api: &K,
    objects: &[KubeObject],
    pools: &BTreeMap<String, &Pool>,
    expected: &[Expected],
) -> KubeResult<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for o in objects {
        match needed(api, o).await? {
            Outcome::Created => out.push(("+", o.describe())),
            Outcome::Patched => out.push(("~", o.describe())),
            Outcome::Replaced(why) => out.push(("-/+", format!("{} (replaced: {why})", o.describe()))),
            Outcome::Unchanged => {}
        }
    }
    out.extend(stale(api, objects).await?.into_iter().map(|(_, what)| ("-", what)));
    let nodes = api.list_of::<Node>(None, None, None).await?;
    for orphan in orphan_nodes(&nodes, expected) {
        out.push(("-", format!("Node/{orphan} (its instance is gone: drained without waiting, then deleted)")));
    }
    for node in nodes {
        let name = node.name_any();
        if let Some(pool) = pools.get(&name)
            && let Some(patch) = node_patch(&node, pool)
        {
            out.push(("~", format!("Node/{name} ({})", node_change(&patch, pool))));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use serde_json::json;

    use super::*;
    use crate::adapters::kube::KubeResult;

    /// An API server with one stored object, where a controller writes a
    /// default into it right before hybrid's first dry run (between the
    /// read and the dry run), as the Tigera operator does after a write.
    struct RacingController {
        stored: RefCell<Value>,
        raced: RefCell<bool>,
    }

    impl KubeApi for RacingController {
        async fn get(&self, _: &str) -> KubeResult<Option<Value>> {
            Ok(Some(self.stored.borrow().clone()))
        }
        async fn list(&self, _: &str, _: Option<&str>, _: Option<&str>) -> KubeResult<Vec<Value>> {
            Ok(Vec::new())
        }
        async fn create(&self, _: &str, _: &Value) -> KubeResult<Value> {
            unreachable!("nothing to create")
        }
        async fn merge_patch(&self, _: &str, _: &Value) -> KubeResult<Value> {
            unreachable!("nothing to patch")
        }
        async fn apply(&self, _: &str, _: &Value, _: bool, dry_run: bool) -> KubeResult<Value> {
            assert!(dry_run, "nothing differs: only dry runs");
            if !self.raced.replace(true) {
                let mut stored = self.stored.borrow_mut();
                stored["spec"]["healthPort"] = json!(9099);
                stored["metadata"]["resourceVersion"] = json!("2");
            }
            // hybrid's fields are all there: the dry run is the object as stored.
            Ok(self.stored.borrow().clone())
        }
        async fn delete(&self, _: &str) -> KubeResult<()> {
            unreachable!()
        }
        async fn evict(&self, _: &str, _: &str) -> KubeResult<bool> {
            unreachable!()
        }
        async fn api_groups(&self) -> KubeResult<Vec<String>> {
            Ok(Vec::new())
        }
        fn writes(&self) -> u64 {
            0
        }
    }

    #[test]
    fn a_controller_writing_between_read_and_dry_run_is_not_a_change() {
        let object = KubeObject {
            collection: "/apis/crd.projectcalico.org/v1/felixconfigurations".into(),
            name: "default".into(),
            body: json!({ "spec": { "vxlanVNI": 4096 } }),
            force: true,
        };
        let api = RacingController {
            stored: RefCell::new(json!({ "metadata": { "name": "default", "resourceVersion": "1" }, "spec": { "vxlanVNI": 4096 } })),
            raced: RefCell::new(false),
        };
        let outcome = block_on(needed(&api, &object)).unwrap();
        assert_eq!(outcome, Outcome::Unchanged);
        assert!(*api.raced.borrow(), "the controller did write in between");
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
    }
}
