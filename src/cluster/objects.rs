//! The Kubernetes side of the desired state: the objects that make Windows
//! nodes work (WINDOWS-NOTES §3–5, §7), and the pure rules for reconciling
//! them. Pure: the caller reads what exists and writes changes.
//!
//! Built-in kinds (ConfigMap, Secret, RuntimeClass, Role and the bindings,
//! Node taints) are built as `k8s-openapi` types, so a misspelled field or
//! kind fails the build and the collection path comes from the type. Calico's
//! and the operator's kinds have no such types (their group even differs
//! between clusters, `CalicoApi`) and stay JSON. Either way an object leaves
//! here as JSON, the one form the API adapter sends and compares.
//!
//! Every object is written by server-side apply (field manager `hybrid`), so
//! hybrid owns exactly the fields it sets: what the API server defaults and
//! what other controllers write (the Tigera operator's, kubelet's) never
//! counts as drift, and a dry-run apply tells whether anything would change.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Taint as K8sTaint, Toleration};
use k8s_openapi::api::node::v1::{RuntimeClass, Scheduling};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::model::{ClusterSpec, CniPlugin, NodeOs, Pool, Taint, WindowsVersion};

/// Which API serves Calico's resources: the CRDs directly
/// (`crd.projectcalico.org/v1`, the default install) or Calico's API server
/// / native v3 CRDs (`projectcalico.org/v3`). Detected from `/apis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalicoApi {
    CrdV1,
    V3,
}

impl CalicoApi {
    /// v3 wins when served: writing the v1 CRDs behind its back bypasses
    /// Calico's validation.
    pub fn detect(groups: &[String]) -> Option<Self> {
        if groups.iter().any(|g| g == "projectcalico.org") {
            Some(Self::V3)
        } else if groups.iter().any(|g| g == "crd.projectcalico.org") {
            Some(Self::CrdV1)
        } else {
            None
        }
    }
}

/// One object hybrid applies with `body`'s fields.
#[derive(Clone, Debug, PartialEq)]
pub struct KubeObject {
    /// The collection URL, e.g. `/apis/node.k8s.io/v1/runtimeclasses`.
    pub collection: String,
    pub name: String,
    pub body: Value,
    /// Whether hybrid takes a field over when another manager set it to
    /// something else. True for objects only hybrid writes; false where a
    /// controller shares the object (the operator's Installation), so a
    /// disagreement is reported instead of fought over on every apply.
    pub force: bool,
}

impl KubeObject {
    pub fn path(&self) -> String {
        format!("{}/{}", self.collection, self.name)
    }

    /// `kind/name` for progress lines and plans.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.body["kind"].as_str().unwrap_or("object"), self.name)
    }
}

/// A built-in object from its `k8s-openapi` type: apiVersion, kind and the
/// collection path come from the type (kube's `Resource::url_path`).
pub fn typed<K>(object: &K) -> KubeObject
where
    K: kube::core::Resource<DynamicType = ()> + serde::Serialize,
{
    let meta = object.meta();
    KubeObject {
        collection: K::url_path(&(), meta.namespace.as_deref()),
        name: meta.name.clone().unwrap_or_default(),
        body: serde_json::to_value(object).expect("a k8s-openapi object serializes"),
        force: true,
    }
}

/// The metadata hybrid sets: a name, maybe a namespace, maybe one marker label.
fn metadata(namespace: Option<&str>, name: &str, label: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        labels: label.map(|l| BTreeMap::from([(l.to_string(), "true".to_string())])),
        ..ObjectMeta::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: kind.into(), name: name.into() }
}

fn subject(kind: &str, name: &str) -> Subject {
    Subject { api_group: Some("rbac.authorization.k8s.io".into()), kind: kind.into(), name: name.into(), namespace: None }
}

fn config_map(namespace: &str, name: &str, data: &[(&str, String)]) -> KubeObject {
    typed(&ConfigMap {
        metadata: metadata(Some(namespace), name, None),
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
        ..ConfigMap::default()
    })
}

/// A custom resource (Calico's, the operator's): JSON, as no type exists.
fn object(collection: &str, api_version: &str, kind: &str, namespace: Option<&str>, name: &str, rest: Value) -> KubeObject {
    let mut body = json!({ "apiVersion": api_version, "kind": kind, "metadata": { "name": name } });
    if let Some(ns) = namespace {
        body["metadata"]["namespace"] = json!(ns);
    }
    if let (Some(b), Value::Object(r)) = (body.as_object_mut(), rest) {
        b.extend(r);
    }
    KubeObject { collection: collection.to_string(), name: name.to_string(), body, force: true }
}

/// True when every field of `want` is in `have` with the same value (maps
/// recursively; lists and scalars exactly).
pub fn contains(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Object(h), Value::Object(w)) => w.iter().all(|(k, wv)| h.get(k).is_some_and(|hv| contains(hv, wv))),
        _ => have == want,
    }
}

/// Whether a dry-run apply's result equals what is stored: then applying
/// would change nothing. The resourceVersion and the managedFields' times
/// are left out (a real dry run may report them freshly).
pub fn unchanged(stored: &Value, would_be: &Value) -> bool {
    fn comparable(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            if let Some(Value::Array(fields)) = meta.get_mut("managedFields") {
                for f in fields.iter_mut().filter_map(Value::as_object_mut) {
                    f.remove("time");
                }
            }
        }
        v
    }
    comparable(stored) == comparable(would_be)
}

/// The objects of the chosen CNI, what the Windows nodes' host services
/// may read, and one RuntimeClass per Windows build in use. `calico_api` is
/// needed only with Calico; `api_server_ip` is the real API address
/// (Windows pods cannot use the kubernetes Service to reach it);
/// `windows_nodes` are the Node names of the cluster's Windows instances;
/// `namespaces` the namespaces that exist (editors are bound in each that
/// is not the system's).
pub fn desired_objects(
    spec: &ClusterSpec,
    calico_api: Option<CalicoApi>,
    api_server_ip: &str,
    windows_nodes: &[String],
    namespaces: &[String],
) -> Vec<KubeObject> {
    let mut out = Vec::new();
    match spec.cni.plugin {
        CniPlugin::Calico => calico_objects(spec, calico_api.unwrap_or(CalicoApi::CrdV1), api_server_ip, &mut out),
        CniPlugin::Flannel => flannel_objects(spec, &mut out),
    }
    out.extend(windows_nodes.iter().map(|n| node_proxier_binding(n)));
    out.extend(runtime_classes(spec));
    out.extend(access_objects(&spec.access, namespaces));
    out
}

/// Objects earlier releases of hybrid wrote and this one does not: removed
/// when hybrid still manages them. The Calico kube-proxy DaemonSet ran the
/// sigwindowstools sample image (kube-proxy is a host service now,
/// docs/windows.md); the group binding gave every node what only Windows
/// host services need (now one binding per Windows node).
pub const OBSOLETE: &[(&str, &str)] = &[
    ("/apis/apps/v1/namespaces/kube-system/daemonsets/kube-proxy-windows", "DaemonSet/kube-proxy-windows"),
    ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/hybrid:windows-kube-proxy", "ClusterRoleBinding/hybrid:windows-kube-proxy"),
];

/// Marks the per-node bindings of `node_proxier_binding`, so that the one
/// of a node that went away is found and removed.
pub const NODE_PROXIER_LABEL: &str = "hybrid.dev/windows-node-proxier";

/// Marks the bindings `access_objects` makes, so that the one of a role
/// nobody holds any more is found and removed.
pub const ACCESS_LABEL: &str = "hybrid.dev/access";

/// The labels of ClusterRoleBindings hybrid makes in numbers that change:
/// one it made that the desired state no longer has is deleted.
pub const PRUNED_BINDINGS: &[&str] = &[NODE_PROXIER_LABEL, ACCESS_LABEL];

/// The Kubernetes user aws-iam-authenticator's server reads `aws-auth` as
/// (its client certificate's CN, made on the control plane at boot).
pub const AUTHENTICATOR_USER: &str = "hybrid:aws-iam-authenticator";

pub const CLUSTER_ROLE_BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";

/// What one Windows node's host services may read beyond what the Node
/// authorizer grants it. flanneld and kube-proxy run outside pods with the
/// kubelet's kubeconfig, so they act as that node (user
/// `system:node:<name>`); the Node authorizer lets a node read only its own
/// Node (since 1.34) and no EndpointSlices, while flanneld watches every
/// Node for its peers' leases and kube-proxy lists EndpointSlices: both in
/// the built-in `system:node-proxier` role (tests/fixtures/upstream/
/// flannel-windows.json, "rbac", with the sources). Bound to each Windows
/// node by name, not to the group `system:nodes`: Linux nodes need none of it.
pub fn node_proxier_binding(node: &str) -> KubeObject {
    typed(&ClusterRoleBinding {
        metadata: metadata(None, &format!("hybrid:node-proxier:{node}"), Some(NODE_PROXIER_LABEL)),
        role_ref: role_ref("ClusterRole", "system:node-proxier"),
        subjects: Some(vec![subject("User", &format!("system:node:{node}"))]),
    })
}

/// Namespaces that run the cluster itself: editors are not bound there.
/// `edit` in kube-system would let them rewrite `aws-auth` (and so make
/// themselves admins) and run pods as kube-system's service accounts, which
/// Kubernetes' RBAC documentation warns `edit` allows wherever it is bound.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["kube-system", "kube-public", "kube-node-lease", "tigera-operator", "calico-system", "calico-apiserver", "kube-flannel"];

/// Who may log in with an AWS identity, as aws-iam-authenticator reads it
/// (`--backend-mode=EKSConfigMap`, a watch on `kube-system/aws-auth`, so a
/// change needs no node change): each principal of `[access]` with its
/// per-person user name and its roles' groups; a ClusterRoleBinding per
/// role in use binding its group — except editors, bound by a RoleBinding
/// in each of `namespaces` that is not a system one (a namespace made
/// later gets its binding at the next apply; plan shows it until then);
/// and the one read the authenticator's own identity needs. Always
/// written, empty or not, so that `[access]` can be added to a running cluster.
pub fn access_objects(access: &crate::model::access::Access, namespaces: &[String]) -> Vec<KubeObject> {
    use crate::model::access::PrincipalKind;
    // The authenticator reads these strings as YAML (sigs.k8s.io/yaml);
    // every value is a JSON string, which YAML reads as written, so an ARN
    // or a `{{SessionName}}` template is never taken for YAML syntax.
    let quote = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let (mut roles, mut users) = (String::new(), String::new());
    for (principal, groups) in access.groups_by_principal() {
        let (out, key) = match principal.kind {
            PrincipalKind::Role => (&mut roles, "rolearn"),
            PrincipalKind::User => (&mut users, "userarn"),
        };
        out.push_str(&format!(
            "- {key}: {}\n  username: {}\n  groups:\n",
            quote(&principal.mapping_arn()),
            quote(&principal.username_template())
        ));
        for g in groups {
            out.push_str(&format!("  - {}\n", quote(&g)));
        }
    }
    let or_empty = |s: String| if s.is_empty() { "[]\n".to_string() } else { s };
    let mut out = vec![config_map("kube-system", "aws-auth", &[("mapRoles", or_empty(roles)), ("mapUsers", or_empty(users))])];
    // The role's group bound to its ClusterRole: in one namespace, or cluster-wide.
    let binding = |role: &crate::model::access::ClusterRole, namespace: Option<&str>| {
        let metadata = metadata(namespace, &role.group(), Some(ACCESS_LABEL));
        let (role_ref, subjects) = (role_ref("ClusterRole", role.cluster_role()), Some(vec![subject("Group", &role.group())]));
        match namespace {
            Some(_) => typed(&RoleBinding { metadata, role_ref, subjects }),
            None => typed(&ClusterRoleBinding { metadata, role_ref, subjects }),
        }
    };
    for role in access.roles() {
        if role == crate::model::access::ClusterRole::Editor {
            out.extend(namespaces.iter().filter(|n| !SYSTEM_NAMESPACES.contains(&n.as_str())).map(|ns| binding(&role, Some(ns))));
        } else {
            out.push(binding(&role, None));
        }
    }
    // A watch of one named object: RBAC authorizes a list or watch by name
    // when its fieldSelector is `metadata.name=` that name, which is how the
    // authenticator watches (pkg/mapper/configmap/configmap.go).
    let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    out.push(typed(&Role {
        metadata: metadata(Some("kube-system"), AUTHENTICATOR_USER, None),
        rules: Some(vec![PolicyRule {
            api_groups: strings(&[""]),
            resources: strings(&["configmaps"]),
            resource_names: strings(&["aws-auth"]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..PolicyRule::default()
        }]),
    }));
    out.push(typed(&RoleBinding {
        metadata: metadata(Some("kube-system"), AUTHENTICATOR_USER, None),
        role_ref: role_ref("Role", AUTHENTICATOR_USER),
        subjects: Some(vec![subject("User", AUTHENTICATOR_USER)]),
    }));
    out
}

/// The operator's `Installation` spec: VXLAN always, BGP off (the only
/// networking Calico for Windows supports), the service CIDRs and the HNS
/// dataplane Windows nodes need (WINDOWS-NOTES §4.3). The IP pool is
/// spelled out with every field the operator fills in when absent
/// (tigera/operator pkg/controller/ippool/defaults.go: allowedUses,
/// disableNewAllocations, assignmentMode) and the CRD's own default
/// (disableBGPExport): `ipPools` is an atomic list, so a pool that differs
/// from the operator's defaulted one would make the two fight over it.
/// The control plane's bootstrap applies the same spec.
pub fn installation_spec(spec: &ClusterSpec) -> Value {
    let mut network = json!({
        "bgp": "Disabled",
        "ipPools": [{
            "name": "default-ipv4-ippool",
            "cidr": spec.network.pod_cidr.to_string(),
            "blockSize": spec.cni.block_size,
            "encapsulation": spec.cni.encapsulation.name(),
            "natOutgoing": "Enabled",
            "nodeSelector": "all()",
            "allowedUses": ["Workload", "Tunnel"],
            "disableNewAllocations": false,
            "disableBGPExport": false,
            "assignmentMode": "Automatic",
        }],
    });
    if spec.has_windows() {
        network["windowsDataplane"] = json!("HNS");
    }
    json!({ "calicoNetwork": network, "serviceCIDRs": [spec.network.service_cidr.to_string()] })
}

fn calico_objects(spec: &ClusterSpec, api: CalicoApi, api_server_ip: &str, out: &mut Vec<KubeObject>) {
    let mut installation = object(
        "/apis/operator.tigera.io/v1/installations",
        "operator.tigera.io/v1",
        "Installation",
        None,
        "default",
        json!({ "spec": installation_spec(spec) }),
    );
    installation.force = false;
    out.push(installation);
    out.push(config_map(
        "tigera-operator",
        "kubernetes-services-endpoint",
        &[("KUBERNETES_SERVICE_HOST", api_server_ip.to_string()), ("KUBERNETES_SERVICE_PORT", "6443".to_string())],
    ));
    // What people do by hand today: `calicoctl ipam configure
    // --strictaffinity=true` and Felix VXLAN on / IP-in-IP off.
    // crd.projectcalico.org/v1 IPAMConfig requires autoAllocateBlocks, so
    // hybrid sets it. projectcalico.org/v3 IPAMConfiguration has it only
    // from 3.32 (manifests/v3_projectcalico_org.yaml @ v3.32.1: required,
    // default true, and Calico forces it true), not on the 3.31 API server
    // (api/pkg/apis/projectcalico/v3/ipamconfig.go there: strictAffinity and
    // maxBlocksPerHost only), so on v3 hybrid leaves it to its default: one
    // object that both accept and neither reports as drift.
    let ipam_spec = match api {
        CalicoApi::CrdV1 => json!({ "spec": { "strictAffinity": true, "autoAllocateBlocks": true } }),
        CalicoApi::V3 => json!({ "spec": { "strictAffinity": true } }),
    };
    let felix_spec =
        json!({ "spec": { "vxlanEnabled": true, "ipipEnabled": false, "vxlanVNI": spec.cni.vni, "vxlanPort": spec.cni.port } });
    match api {
        CalicoApi::CrdV1 => {
            out.push(object(
                "/apis/crd.projectcalico.org/v1/ipamconfigs",
                "crd.projectcalico.org/v1",
                "IPAMConfig",
                None,
                "default",
                ipam_spec,
            ));
            out.push(object(
                "/apis/crd.projectcalico.org/v1/felixconfigurations",
                "crd.projectcalico.org/v1",
                "FelixConfiguration",
                None,
                "default",
                felix_spec,
            ));
        }
        CalicoApi::V3 => {
            out.push(object(
                "/apis/projectcalico.org/v3/ipamconfigurations",
                "projectcalico.org/v3",
                "IPAMConfiguration",
                None,
                "default",
                ipam_spec,
            ));
            out.push(object(
                "/apis/projectcalico.org/v3/felixconfigurations",
                "projectcalico.org/v3",
                "FelixConfiguration",
                None,
                "default",
                felix_spec,
            ));
        }
    }
}

/// flannel's shared net-conf (VNI and port Windows can join; WINDOWS-NOTES §5).
fn flannel_objects(spec: &ClusterSpec, out: &mut Vec<KubeObject>) {
    let net_conf =
        json!({ "Network": spec.network.pod_cidr.to_string(), "Backend": { "Type": "vxlan", "VNI": spec.cni.vni, "Port": spec.cni.port } });
    out.push(config_map(
        "kube-flannel",
        "kube-flannel-cfg",
        &[("net-conf.json", serde_json::to_string_pretty(&net_conf).expect("JSON serializes"))],
    ));
}

/// One RuntimeClass per Windows build in use, e.g. `windows-2022` selecting
/// `node.kubernetes.io/windows-build: 10.0.20348` and tolerating the pools'
/// taints, so a pod names its build once and lands on a matching host.
pub fn runtime_classes(spec: &ClusterSpec) -> Vec<KubeObject> {
    let mut by_version: BTreeMap<WindowsVersion, BTreeSet<&Taint>> = BTreeMap::new();
    for p in spec.windows_pools() {
        if let NodeOs::Windows(v) = p.os {
            by_version.entry(v).or_default().extend(p.taints.iter());
        }
    }
    by_version
        .into_iter()
        .map(|(v, taints)| {
            let tolerations = taints
                .into_iter()
                .map(|t| Toleration {
                    key: Some(t.key.clone()),
                    operator: Some(if t.value.is_empty() { "Exists" } else { "Equal" }.into()),
                    value: (!t.value.is_empty()).then(|| t.value.clone()),
                    effect: Some(t.effect.name().into()),
                    ..Toleration::default()
                })
                .collect();
            typed(&RuntimeClass {
                metadata: metadata(None, v.name(), None),
                handler: "runhcs-wcow-process".into(),
                scheduling: Some(Scheduling {
                    node_selector: Some(BTreeMap::from([
                        ("kubernetes.io/os".to_string(), "windows".to_string()),
                        ("node.kubernetes.io/windows-build".to_string(), v.build().to_string()),
                    ])),
                    tolerations: Some(tolerations),
                }),
                overhead: None,
            })
        })
        .collect()
}

/// Records which label and taint keys hybrid set on a node, so that keys
/// removed from the file are removed from the node and nothing else is.
pub const MANAGED_ANNOTATION: &str = "hybrid.dev/managed-keys";

/// Set on a node hybrid cordons to remove it: a node still carrying it
/// while it is wanted again (a drain a PodDisruptionBudget held, the file
/// then reverted) is uncordoned by the next apply, and plan shows that.
pub const CORDONED_ANNOTATION: &str = "hybrid.dev/cordoned-for-removal";

/// The merge patch that gives `node` its pool's labels and taints (and
/// takes back hybrid's cordon of a removal that did not happen), or `None`
/// when it has them already. Taints other controllers set are kept. The
/// node is read typed; the patch is JSON because a merge patch removes a
/// label by setting it to `null`, which a typed Node cannot say.
pub fn node_patch(node: &Node, pool: &Pool) -> Option<Value> {
    use kube::core::ResourceExt;
    let (node_labels, annotations) = (node.labels(), node.annotations());
    let previous: Value = annotations.get(MANAGED_ANNOTATION).and_then(|s| serde_json::from_str(s).ok()).unwrap_or(json!({}));
    let keys =
        |v: &Value| -> BTreeSet<String> { v.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect() };
    let (prev_labels, prev_taints) = (keys(&previous["labels"]), keys(&previous["taints"]));

    let mut labels = serde_json::Map::new();
    for (k, v) in &pool.labels {
        if node_labels.get(k) != Some(v) {
            labels.insert(k.clone(), json!(v));
        }
    }
    for k in prev_labels.iter().filter(|k| !pool.labels.contains_key(*k)) {
        if node_labels.contains_key(k) {
            labels.insert(k.clone(), Value::Null);
        }
    }

    let ours: BTreeSet<&str> = pool.taints.iter().map(|t| t.key.as_str()).collect();
    let current: &[K8sTaint] = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let mut taints: Vec<K8sTaint> =
        current.iter().filter(|t| !ours.contains(t.key.as_str()) && !prev_taints.contains(&t.key)).cloned().collect();
    taints.extend(pool.taints.iter().map(|t| K8sTaint {
        key: t.key.clone(),
        value: (!t.value.is_empty()).then(|| t.value.clone()),
        effect: t.effect.name().into(),
        time_added: None,
    }));
    let same_taints = taints.len() == current.len()
        && taints.iter().all(|t| current.iter().any(|c| (&c.key, &c.effect, &c.value) == (&t.key, &t.effect, &t.value)));

    let managed = json!({ "labels": pool.labels.keys().collect::<Vec<_>>(), "taints": ours.iter().collect::<Vec<_>>() }).to_string();
    let managed_same = annotations.get(MANAGED_ANNOTATION) == Some(&managed);
    let cordoned_by_us = annotations.contains_key(CORDONED_ANNOTATION);
    if labels.is_empty() && same_taints && managed_same && !cordoned_by_us {
        return None;
    }
    let mut patch = json!({ "metadata": { "annotations": { MANAGED_ANNOTATION: managed } } });
    if cordoned_by_us {
        patch["metadata"]["annotations"][CORDONED_ANNOTATION] = Value::Null;
        patch["spec"] = json!({ "unschedulable": false });
    }
    if !labels.is_empty() {
        patch["metadata"]["labels"] = Value::Object(labels);
    }
    if !same_taints {
        patch["spec"]["taints"] = serde_json::to_value(&taints).expect("taints serialize");
    }
    Some(patch)
}

/// The `bootstrap-token-<id>` Secret that lets nodes join with the token in
/// their user data, valid until `expiration` (RFC 3339).
pub fn bootstrap_token_secret(token_id: &str, token_secret: &str, expiration: &str) -> KubeObject {
    let data = [
        ("description", "hybrid: lets expected nodes join; removed once they have"),
        ("token-id", token_id),
        ("token-secret", token_secret),
        ("expiration", expiration),
        ("usage-bootstrap-authentication", "true"),
        ("usage-bootstrap-signing", "true"),
        ("auth-extra-groups", "system:bootstrappers:kubeadm:default-node-token"),
    ];
    typed(&Secret {
        metadata: metadata(Some("kube-system"), &format!("bootstrap-token-{token_id}"), None),
        type_: Some("bootstrap.kubernetes.io/token".into()),
        string_data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(file: &str) -> ClusterSpec {
        crate::config::load(file).spec.unwrap()
    }

    fn find<'a>(objs: &'a [KubeObject], kind: &str, name: &str) -> &'a Value {
        &objs.iter().find(|o| o.body["kind"] == kind && o.name == name).unwrap_or_else(|| panic!("no {kind}/{name}")).body
    }

    #[test]
    fn calico_objects_carry_what_windows_needs() {
        let objs = desired_objects(
            &spec(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))),
            Some(CalicoApi::CrdV1),
            "10.42.0.10",
            &["ip-10-42-0-20.ec2.internal".to_string()],
            &[],
        );
        assert_eq!(find(&objs, "IPAMConfig", "default")["spec"]["strictAffinity"], true);
        let felix = &find(&objs, "FelixConfiguration", "default")["spec"];
        assert_eq!(
            (felix["vxlanEnabled"].clone(), felix["ipipEnabled"].clone(), felix["vxlanVNI"].clone(), felix["vxlanPort"].clone()),
            (json!(true), json!(false), json!(4096), json!(4789))
        );
        let inst = &find(&objs, "Installation", "default")["spec"];
        assert_eq!(inst["calicoNetwork"]["bgp"], "Disabled");
        assert_eq!(inst["calicoNetwork"]["windowsDataplane"], "HNS");
        assert_eq!(inst["calicoNetwork"]["ipPools"][0]["encapsulation"], "VXLAN");
        assert_eq!(inst["serviceCIDRs"], json!(["10.96.0.0/12"]));
        assert_eq!(find(&objs, "ConfigMap", "kubernetes-services-endpoint")["data"]["KUBERNETES_SERVICE_HOST"], "10.42.0.10");
        let rc = find(&objs, "RuntimeClass", "windows-2022");
        assert_eq!(rc["scheduling"]["nodeSelector"]["node.kubernetes.io/windows-build"], "10.0.20348");
        assert_eq!(
            rc["scheduling"]["tolerations"],
            json!([{ "key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule" }])
        );
        // kube-proxy is a host service (docs/windows.md): no DaemonSet runs a sample image.
        assert!(objs.iter().all(|o| o.body["kind"] != "DaemonSet"), "{objs:#?}");
        let binding = find(&objs, "ClusterRoleBinding", "hybrid:node-proxier:ip-10-42-0-20.ec2.internal");
        assert_eq!(
            binding["subjects"],
            json!([{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:node:ip-10-42-0-20.ec2.internal" }])
        );
    }

    #[test]
    fn editors_are_bound_outside_the_system_namespaces_only() {
        use crate::model::access::{Access, ClusterRole, Grant, Principal};
        let grant = |arn: &str, role| Grant { principal: Principal::parse(arn).unwrap(), role };
        let access = Access {
            grants: vec![
                grant("arn:aws:iam::111122223333:user/bob", ClusterRole::Editor),
                grant("arn:aws:iam::111122223333:user/alice", ClusterRole::Admin),
            ],
        };
        let ns: Vec<String> = ["default", "kube-system", "game", "calico-system", "tigera-operator"].map(String::from).to_vec();
        let objs = access_objects(&access, &ns);
        let bound: Vec<&str> = objs
            .iter()
            .filter(|o| o.body["kind"] == "RoleBinding" && o.name == "hybrid:editors")
            .map(|o| o.body["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(bound, ["default", "game"]);
        assert!(objs.iter().any(|o| o.body["kind"] == "ClusterRoleBinding" && o.name == "hybrid:admins"));
        assert!(!objs.iter().any(|o| o.body["kind"] == "ClusterRoleBinding" && o.name == "hybrid:editors"));
    }

    #[test]
    fn calico_v3_api_uses_its_own_group_and_kinds() {
        let objs = desired_objects(
            &spec(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))),
            Some(CalicoApi::V3),
            "10.42.0.10",
            &[],
            &[],
        );
        let ipam = objs.iter().find(|o| o.name == "default" && o.body["kind"] == "IPAMConfiguration").unwrap();
        assert_eq!(ipam.path(), "/apis/projectcalico.org/v3/ipamconfigurations/default");
        assert_eq!(
            ipam.body["spec"],
            json!({ "strictAffinity": true }),
            "on v3 autoAllocateBlocks is left to its default (3.32 defaults and forces it true; 3.31's API server lacks it)"
        );
        assert_eq!(CalicoApi::detect(&["projectcalico.org".into(), "crd.projectcalico.org".into()]), Some(CalicoApi::V3));
        assert_eq!(CalicoApi::detect(&["crd.projectcalico.org".into()]), Some(CalicoApi::CrdV1));
        assert_eq!(CalicoApi::detect(&["apps".into()]), None);
    }

    #[test]
    fn flannel_objects_carry_vni_port_and_the_real_api_endpoint() {
        let nodes = ["ip-10-50-0-21.ec2.internal".to_string(), "ip-10-50-0-22.ec2.internal".to_string()];
        let objs =
            desired_objects(&spec(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/qa.toml"))), None, "10.50.0.10", &nodes, &[]);
        let net: Value =
            serde_json::from_str(find(&objs, "ConfigMap", "kube-flannel-cfg")["data"]["net-conf.json"].as_str().unwrap()).unwrap();
        assert_eq!(net, json!({ "Network": "10.244.0.0/16", "Backend": { "Type": "vxlan", "VNI": 4096, "Port": 4789 } }));
        // Windows flannel nodes run flanneld and kube-proxy as host services:
        // no DaemonSet depends on the HostProcess images no longer built.
        assert!(objs.iter().all(|o| o.body["kind"] != "DaemonSet"), "{objs:#?}");
        // One binding per Windows node, to that node alone: Linux nodes get nothing.
        let bindings: Vec<&KubeObject> = objs.iter().filter(|o| o.body["kind"] == "ClusterRoleBinding").collect();
        assert_eq!(bindings.len(), 2);
        for (b, node) in bindings.iter().zip(&nodes) {
            assert_eq!(b.body["roleRef"]["name"], "system:node-proxier");
            assert_eq!(
                b.body["subjects"],
                json!([{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": format!("system:node:{node}") }])
            );
            assert_eq!(b.body["metadata"]["labels"][NODE_PROXIER_LABEL], "true");
        }
        let names: Vec<&str> = objs.iter().filter(|o| o.body["kind"] == "RuntimeClass").map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["windows-2019", "windows-2022"]);
    }

    #[test]
    fn contains_compares_maps_by_subset_and_lists_exactly() {
        assert!(contains(&json!({ "a": 1, "b": { "c": 2, "d": 3 } }), &json!({ "b": { "c": 2 } })));
        assert!(!contains(&json!({ "a": [1, 2] }), &json!({ "a": [1] })));
        assert!(!contains(&json!({ "a": 1 }), &json!({ "b": 1 })));
    }

    #[test]
    fn node_patch_sets_labels_and_taints_keeps_foreign_taints_and_is_idempotent() {
        let s = spec(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml")));
        let pool = &s.pools[1];
        let node = json!({ "metadata": { "name": "ip-10-42-0-20.ec2.internal", "labels": { "kubernetes.io/os": "windows" } }, "spec": { "taints": [{ "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" }] } });
        let typed = |v: &Value| -> Node { serde_json::from_value(v.clone()).unwrap() };
        let patch = node_patch(&typed(&node), pool).unwrap();
        assert_eq!(patch["metadata"]["labels"], json!({ "game.example.com/role": "tools" }));
        assert_eq!(
            patch["spec"]["taints"],
            json!([{ "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" }, { "key": "os", "value": "windows", "effect": "NoSchedule" }])
        );
        let mut applied = node.clone();
        json_merge(&mut applied, &patch);
        assert_eq!(node_patch(&typed(&applied), pool), None, "a second reconcile changes nothing");

        // A label and a taint removed from the file go; foreign ones stay.
        let mut smaller = pool.clone();
        smaller.labels.clear();
        smaller.taints.clear();
        let patch = node_patch(&typed(&applied), &smaller).unwrap();
        assert_eq!(patch["metadata"]["labels"], json!({ "game.example.com/role": null }));
        assert_eq!(patch["spec"]["taints"], json!([{ "key": "node.kubernetes.io/not-ready", "effect": "NoSchedule" }]));
    }

    /// RFC 7386 merge, as the API server applies a merge patch.
    fn json_merge(target: &mut Value, patch: &Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p.clone(),
        }
    }
}
