//! What `hybrid verify` deploys and checks, from the readable manifests in
//! `examples/verify/` (compiled in). Pure: placeholders filled per Windows
//! build, YAML read into the objects' `k8s-openapi` types (a field a type
//! does not know is an error), checks listed in order. The command
//! creates them, reads each check Job's outcome from the API and cleans up.

use serde_json::Value;

use crate::cluster::objects::KubeObject;
use crate::model::{ClusterSpec, CniPlugin, NodeOs, WindowsVersion};

pub const NAMESPACE: &str = "hybrid-verify";

const NAMESPACE_YAML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/namespace.yaml"));
const LINUX_NGINX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/linux-nginx.yaml"));
const WINDOWS_WEB: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/windows-web.yaml"));
const CHECK_LINUX_TO_WINDOWS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/check-linux-to-windows.yaml"));
const CHECK_WINDOWS_TO_LINUX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/check-windows-to-linux.yaml"));
const CHECK_NODEPORT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/check-nodeport.yaml"));
const CHECK_WINDOWS_OUTBOUND: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/check-windows-outbound.yaml"));
const NETWORK_POLICY: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/network-policy.yaml"));
const CHECK_POLICY_BLOCKS_LINUX: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/verify/check-policy-blocks-linux.yaml"));

/// First NodePort used; each Windows build gets the next one.
const NODE_PORT_BASE: u32 = 30480;

/// One check: a Job whose success is the check's success.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: String,
    pub what: String,
    pub job: KubeObject,
}

/// A step of the run, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Objects to create (workloads, services, the network policy).
    Create(Vec<KubeObject>),
    Check(Check),
    Skip {
        name: String,
        why: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("verify needs a Windows pool and a Linux worker pool with nodes; {0}")]
    NothingToVerify(String),
    #[error("a built-in verify manifest does not parse: {0} (a bug in hybrid)")]
    Manifest(String),
}

fn build_slug(v: WindowsVersion) -> &'static str {
    match v {
        WindowsVersion::Ws2019 => "win2019",
        WindowsVersion::Ws2022 => "win2022",
        WindowsVersion::Ws2025 => "win2025",
    }
}

/// Parses a (multi-document) manifest after filling `${NAME}` placeholders.
fn objects(yaml: &str, vars: &[(&str, String)]) -> Result<Vec<KubeObject>, VerifyError> {
    let mut text = yaml.to_string();
    for (k, v) in vars {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    let mut out = Vec::new();
    for doc in text.split("\n---\n") {
        let value: Value = serde_saphyr::from_str(doc).map_err(|e| VerifyError::Manifest(e.to_string()))?;
        // NodePorts are numbers; a filled placeholder arrives as a string.
        out.push(to_object(fix_ports(value))?);
    }
    Ok(out)
}

fn fix_ports(mut v: Value) -> Value {
    // get_mut, not indexing: `v["spec"]` would insert a `spec` into objects
    // without one (a Namespace then carries `spec.ports: null`, which a
    // strict API server rejects).
    if let Some(ports) = v.get_mut("spec").and_then(|s| s.get_mut("ports")).and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(n) = p["nodePort"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                p["nodePort"] = Value::from(n);
            }
        }
    }
    v
}

/// A manifest document as its `k8s-openapi` type: the collection path
/// comes from the type, and a field the type does not know (a misspelling,
/// a field of another version) is an error here rather than something the
/// API server refuses or silently drops. The unit tests build every
/// manifest, so such a mistake fails the test run.
fn to_object(body: Value) -> Result<KubeObject, VerifyError> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    match body["kind"].as_str().unwrap_or_default() {
        "Namespace" => typed::<Namespace>(body),
        "Deployment" => typed::<Deployment>(body),
        "Service" => typed::<Service>(body),
        "Job" => typed::<Job>(body),
        "NetworkPolicy" => typed::<NetworkPolicy>(body),
        other => Err(VerifyError::Manifest(format!("verify makes no {other:?} objects"))),
    }
}

fn typed<K>(body: Value) -> Result<KubeObject, VerifyError>
where
    K: kube::core::Resource<DynamicType = ()> + serde::de::DeserializeOwned + serde::Serialize,
{
    let what = format!("{} {}", K::kind(&()), body["metadata"]["name"].as_str().unwrap_or("without a name"));
    let object: K = serde_json::from_value(body.clone()).map_err(|e| VerifyError::Manifest(format!("{what}: {e}")))?;
    if object.meta().name.is_none() {
        return Err(VerifyError::Manifest(format!("{what}: no metadata.name")));
    }
    let read_back = serde_json::to_value(&object).expect("a k8s-openapi object serializes");
    if let Some(path) = first_difference(&body, &read_back, String::new()) {
        return Err(VerifyError::Manifest(format!("{what}: {path} is not a field of {}", K::api_version(&()))));
    }
    Ok(crate::cluster::objects::typed(&object))
}

/// Where `written` has something `read_back` lost, as a dotted path.
fn first_difference(written: &Value, read_back: &Value, at: String) -> Option<String> {
    match (written, read_back) {
        (Value::Object(w), Value::Object(r)) => w.iter().find_map(|(k, v)| match r.get(k) {
            Some(rv) => first_difference(v, rv, format!("{at}.{k}")),
            None => Some(format!("{at}.{k}")),
        }),
        (Value::Array(w), Value::Array(r)) if w.len() == r.len() => {
            w.iter().zip(r).enumerate().find_map(|(i, (wv, rv))| first_difference(wv, rv, format!("{at}[{i}]")))
        }
        _ if written == read_back => None,
        _ => Some(if at.is_empty() { ".".into() } else { at }),
    }
}

fn check(name_prefix: &str, what: String, yaml: &str, vars: &[(&str, String)]) -> Result<Check, VerifyError> {
    let job = objects(yaml, vars)?.remove(0);
    Ok(Check { name: job.name.strip_prefix(name_prefix).unwrap_or(&job.name).to_string(), what, job })
}

pub fn plan(spec: &ClusterSpec) -> Result<Vec<Step>, VerifyError> {
    let mut builds: Vec<WindowsVersion> =
        spec.windows_pools().filter(|p| p.count > 0).filter_map(|p| if let NodeOs::Windows(v) = p.os { Some(v) } else { None }).collect();
    builds.sort();
    builds.dedup();
    let linux_workers: u32 = spec.pools.iter().filter(|p| !p.os.is_windows()).map(|p| p.count).sum();
    if builds.is_empty() || linux_workers == 0 {
        return Err(VerifyError::NothingToVerify(format!(
            "this cluster has {} Windows build(s) and {linux_workers} Linux worker(s)",
            builds.len()
        )));
    }
    let mut setup = objects(NAMESPACE_YAML, &[])?;
    setup.extend(objects(LINUX_NGINX, &[])?);
    let mut steps = Vec::new();
    let mut checks = Vec::new();
    let mut policy_allows = Vec::new();
    for (i, v) in builds.iter().enumerate() {
        let vars = [
            ("BUILD", build_slug(*v).to_string()),
            ("RUNTIME_CLASS", v.name().to_string()),
            ("LTSC", v.ltsc_tag().to_string()),
            ("NODE_PORT", (NODE_PORT_BASE + i as u32).to_string()),
        ];
        setup.extend(objects(WINDOWS_WEB, &vars)?);
        let b = build_slug(*v);
        checks.push(check("check-", format!("Linux pod → {b} pod via ClusterIP and DNS"), CHECK_LINUX_TO_WINDOWS, &vars)?);
        checks.push(check("check-", format!("{b} pod → Linux nginx via ClusterIP and DNS"), CHECK_WINDOWS_TO_LINUX, &vars)?);
        checks.push(check("check-", format!("NodePort of the {b} web server from a node"), CHECK_NODEPORT, &vars)?);
        checks.push(check("check-", format!("outbound internet from a {b} pod"), CHECK_WINDOWS_OUTBOUND, &vars)?);
        let mut allowed = check("check-", format!("{b} pod still reaches nginx under the policy"), CHECK_WINDOWS_TO_LINUX, &vars)?;
        allowed.job.name = format!("check-{b}-policy-allows");
        allowed.job.body["metadata"]["name"] = Value::from(allowed.job.name.clone());
        allowed.name = format!("{b}-policy-allows");
        policy_allows.push(allowed);
    }
    steps.push(Step::Create(setup));
    steps.extend(checks.into_iter().map(Step::Check));
    match spec.cni.plugin {
        CniPlugin::Calico => {
            steps.push(Step::Create(objects(NETWORK_POLICY, &[])?));
            steps.push(Step::Check(check("check-", "the policy keeps Linux pods away from nginx".into(), CHECK_POLICY_BLOCKS_LINUX, &[])?));
            steps.extend(policy_allows.into_iter().map(Step::Check));
        }
        CniPlugin::Flannel => {
            steps.push(Step::Skip { name: "network-policy".into(), why: "flannel does not enforce NetworkPolicy".into() })
        }
    }
    Ok(steps)
}

/// A Job's outcome so far: `Some(true)` succeeded, `Some(false)` failed.
pub fn job_outcome(job: &Value) -> Option<bool> {
    let conditions = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let has = |t: &str| conditions.iter().any(|c| c["type"] == t && c["status"] == "True");
    if job["status"]["succeeded"].as_u64().unwrap_or(0) > 0 || has("Complete") {
        Some(true)
    } else if has("Failed") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calico_plan_checks_every_build_and_the_policy() {
        let spec = crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))).spec.unwrap();
        let steps = plan(&spec).unwrap();
        let names: Vec<String> = steps.iter().filter_map(|s| if let Step::Check(c) = s { Some(c.name.clone()) } else { None }).collect();
        assert_eq!(
            names,
            [
                "linux-to-win2022",
                "win2022-to-linux",
                "nodeport-win2022",
                "win2022-outbound",
                "policy-blocks-linux",
                "win2022-policy-allows"
            ]
        );
        let Step::Create(setup) = &steps[0] else { panic!() };
        let web = setup.iter().find(|o| o.name == "win-web-win2022" && o.body["kind"] == "Deployment").unwrap();
        assert_eq!(web.collection, "/apis/apps/v1/namespaces/hybrid-verify/deployments");
        assert_eq!(web.body["spec"]["template"]["spec"]["runtimeClassName"], "windows-2022");
        assert!(web.body["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().ends_with("ltsc2022"));
        let svc = setup.iter().find(|o| o.name == "win-web-win2022" && o.body["kind"] == "Service").unwrap();
        assert_eq!(svc.body["spec"]["ports"][0]["nodePort"], 30480);
        let ns = setup.iter().find(|o| o.body["kind"] == "Namespace").unwrap();
        assert!(ns.body.get("spec").is_none(), "no field the manifest does not have: {}", ns.body);
    }

    #[test]
    fn flannel_skips_the_policy_with_a_reason() {
        let spec = crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/qa.toml"))).spec.unwrap();
        let steps = plan(&spec).unwrap();
        assert!(steps.iter().any(|s| matches!(s, Step::Skip { name, .. } if name == "network-policy")));
        let checks = steps.iter().filter(|s| matches!(s, Step::Check(_))).count();
        assert_eq!(checks, 8, "four checks for each of the two Windows builds");
    }

    #[test]
    fn a_misspelled_field_in_a_manifest_is_refused() {
        let typo =
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: games\nspec:\n  selector: {app: x}\n  prots: [{port: 80}]\n";
        let err = objects(typo, &[]).unwrap_err();
        assert_eq!(err, VerifyError::Manifest("Service s: .spec.prots is not a field of v1".into()));
        let right = objects(&typo.replace("prots", "ports"), &[]).unwrap();
        assert_eq!(right[0].collection, "/api/v1/namespaces/games/services");
    }

    #[test]
    fn job_outcomes() {
        assert_eq!(job_outcome(&serde_json::json!({ "status": { "succeeded": 1 } })), Some(true));
        assert_eq!(job_outcome(&serde_json::json!({ "status": { "conditions": [{ "type": "Failed", "status": "True" }] } })), Some(false));
        assert_eq!(job_outcome(&serde_json::json!({ "status": { "active": 1 } })), None);
    }
}
