//! Kubeconfig documents for a cluster, built from kube's own kubeconfig
//! types. Pure: the caller supplies the API endpoint, the CA and either a
//! minted client certificate (`--admin`, break-glass) or the command that
//! prints an ExecCredential (`hybrid token`, everyone's daily login).
//!
//! The API server's certificate names the control plane's private address
//! (kubeadm `certSANs`), while users reach it through its public one, so the
//! cluster entry carries `tls-server-name` = the private address.
//!
//! `merge` adds a cluster's entries to a kubeconfig someone already has
//! without touching anything else in it: it works on the document as YAML
//! data, so fields kube's types do not model survive.

use base64::Engine;
use kube::config::{AuthInfo, Cluster, Context, ExecConfig, ExecInteractiveMode, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
use serde_json::Value;

use crate::bootstrap::pki::ClientCert;

/// Where the API server is and how to trust it.
pub struct Endpoint<'a> {
    pub cluster: &'a str,
    /// `https://<address>:6443`.
    pub server: &'a str,
    /// The name the API server's certificate is checked against.
    pub tls_server_name: Option<&'a str>,
    pub ca_cert_pem: &'a str,
}

/// Who the kubeconfig logs in as.
pub enum User<'a> {
    /// A client certificate (the admin certificate minted from the CA).
    Certificate(&'a ClientCert),
    /// An exec plugin: `command args…` prints an ExecCredential.
    Exec { command: &'a str, args: Vec<String> },
}

/// The context (and cluster and user) name of a cluster's AWS-identity
/// login: `hybrid-<cluster>`.
pub fn context_name(cluster: &str) -> String {
    format!("hybrid-{cluster}")
}

/// The context and user name of its break-glass admin certificate, next
/// to the daily one in a merged kubeconfig.
pub fn admin_context_name(cluster: &str) -> String {
    format!("hybrid-{cluster}-admin")
}

/// A kubeconfig with one cluster, one user and one context, current.
pub fn kubeconfig(endpoint: &Endpoint<'_>, user: User<'_>) -> Kubeconfig {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let cluster_name = context_name(endpoint.cluster);
    let (name, auth) = match user {
        User::Certificate(cert) => (
            admin_context_name(endpoint.cluster),
            AuthInfo {
                client_certificate_data: Some(b64(&cert.cert_pem)),
                client_key_data: Some(b64(&cert.key_pem).into()),
                ..AuthInfo::default()
            },
        ),
        User::Exec { command, args } => (
            cluster_name.clone(),
            AuthInfo {
                exec: Some(ExecConfig {
                    api_version: Some("client.authentication.k8s.io/v1".into()),
                    command: Some(command.into()),
                    args: Some(args),
                    env: None,
                    drop_env: None,
                    install_hint: Some(
                        "hybrid prints this cluster's login token: install hybrid, or run `hybrid kubeconfig` again where it is installed"
                            .into(),
                    ),
                    // client-go requires it for v1; `hybrid token` asks
                    // nothing itself, but an SSO or MFA credential source
                    // may, so it gets the terminal when there is one.
                    interactive_mode: Some(ExecInteractiveMode::IfAvailable),
                    provide_cluster_info: false,
                    cluster: None,
                    other: Default::default(),
                }),
                ..AuthInfo::default()
            },
        ),
    };
    Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: cluster_name.clone(),
            cluster: Some(Cluster {
                server: Some(endpoint.server.into()),
                tls_server_name: endpoint.tls_server_name.map(str::to_string),
                certificate_authority_data: Some(b64(endpoint.ca_cert_pem)),
                ..Cluster::default()
            }),
            other: Default::default(),
        }],
        auth_infos: vec![NamedAuthInfo { name: name.clone(), auth_info: Some(auth), other: Default::default() }],
        contexts: vec![NamedContext {
            name: name.clone(),
            context: Some(Context { cluster: cluster_name, user: Some(name.clone()), ..Context::default() }),
            other: Default::default(),
        }],
        current_context: Some(name),
        ..Kubeconfig::default()
    }
}

pub fn to_yaml(config: &Kubeconfig) -> String {
    serde_saphyr::to_string(config).expect("a kubeconfig serializes")
}

/// Why an existing kubeconfig cannot take the merge.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MergeError(String);

/// `existing` (a kubeconfig's text, or `None` for a new file) with `ours`'
/// cluster, user and context added — replacing only entries of the same
/// names — and `ours`' context made current. Everything else is kept as it
/// was, unknown fields included.
pub fn merge(existing: Option<&str>, ours: &Kubeconfig) -> Result<String, MergeError> {
    let mut doc: Value = match existing.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => serde_saphyr::from_str(text).map_err(|e| MergeError(format!("it is not YAML hybrid can read: {e}")))?,
        None => serde_json::json!({ "apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [] }),
    };
    let Some(map) = doc.as_object_mut() else {
        return Err(MergeError("it is not a kubeconfig (not a mapping)".into()));
    };
    let ours = serde_json::to_value(ours).expect("a kubeconfig serializes");
    for list in ["clusters", "users", "contexts"] {
        let entries = map.entry(list).or_insert_with(|| Value::Array(Vec::new()));
        if entries.is_null() {
            *entries = Value::Array(Vec::new());
        }
        let Some(entries) = entries.as_array_mut() else {
            return Err(MergeError(format!("its `{list}` is not a list")));
        };
        for entry in ours[list].as_array().into_iter().flatten() {
            match entries.iter_mut().find(|e| e["name"] == entry["name"]) {
                Some(old) => *old = entry.clone(),
                None => entries.push(entry.clone()),
            }
        }
    }
    map.insert("current-context".into(), ours["current-context"].clone());
    Ok(serde_saphyr::to_string(&doc).expect("YAML data serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint<'static> {
        Endpoint { cluster: "dev", server: "https://203.0.113.5:6443", tls_server_name: Some("10.0.0.10"), ca_cert_pem: "CA" }
    }

    #[test]
    fn an_exec_kubeconfig_runs_hybrid_token() {
        let k = kubeconfig(
            &endpoint(),
            User::Exec { command: "/usr/local/bin/hybrid", args: vec!["token".into(), "--name".into(), "dev".into()] },
        );
        let v: Value = serde_saphyr::from_str(&to_yaml(&k)).unwrap();
        assert_eq!(v["current-context"], "hybrid-dev");
        assert_eq!(v["users"][0]["user"]["exec"]["apiVersion"], "client.authentication.k8s.io/v1");
        assert_eq!(v["users"][0]["user"]["exec"]["interactiveMode"], "IfAvailable");
        assert_eq!(v["users"][0]["user"]["exec"]["args"][2], "dev");
        assert_eq!(v["clusters"][0]["cluster"]["tls-server-name"], "10.0.0.10");
        assert_eq!(v["clusters"][0]["cluster"]["certificate-authority-data"], "Q0E=");
    }

    #[test]
    fn merging_replaces_only_our_entries_and_keeps_unknown_fields() {
        let theirs = "apiVersion: v1\nkind: Config\npreferences: {colors: true}\nclusters:\n- name: prod\n  cluster: {server: 'https://prod:6443', extensions: [{name: x, extension: {a: 1}}]}\n- name: hybrid-dev\n  cluster: {server: 'https://old:6443'}\nusers:\n- name: prod\n  user: {token: abc, as-user-extra: {k: [v]}}\ncontexts:\n- name: prod\n  context: {cluster: prod, user: prod, namespace: games}\ncurrent-context: prod\n";
        let k = kubeconfig(&endpoint(), User::Exec { command: "hybrid", args: vec![] });
        let merged: Value = serde_saphyr::from_str(&merge(Some(theirs), &k).unwrap()).unwrap();
        assert_eq!(merged["current-context"], "hybrid-dev");
        assert_eq!(merged["preferences"]["colors"], true);
        assert_eq!(merged["clusters"].as_array().unwrap().len(), 2);
        assert_eq!(merged["clusters"][0]["cluster"]["extensions"][0]["extension"]["a"], 1);
        assert_eq!(merged["clusters"][1]["cluster"]["server"], "https://203.0.113.5:6443");
        assert_eq!(merged["users"][0]["user"]["as-user-extra"]["k"][0], "v");
        assert_eq!(merged["users"][1]["name"], "hybrid-dev");
        assert_eq!(merged["contexts"][0]["context"]["namespace"], "games");
        // Merging again changes nothing.
        let again = merge(Some(&merge(Some(theirs), &k).unwrap()), &k).unwrap();
        assert_eq!(serde_saphyr::from_str::<Value>(&again).unwrap(), merged);
        assert!(merge(Some("- a\n- b\n"), &k).is_err());
        assert!(merge(Some("clusters: 3\n"), &k).is_err());
        let fresh: Value = serde_saphyr::from_str(&merge(None, &k).unwrap()).unwrap();
        assert_eq!(fresh["kind"], "Config");
    }
}
