//! Kubeconfig documents for a cluster's admin, as text. Pure: the caller
//! supplies the API endpoint, the CA and a minted client certificate.
//!
//! The API server's certificate names the control plane's private address
//! (kubeadm `certSANs`), while users reach it through its public one, so the
//! cluster entry carries `tls-server-name` = the private address.

use base64::Engine;

use crate::bootstrap::filters::yaml_value;
use crate::bootstrap::pki::ClientCert;

pub struct AdminKubeconfig<'a> {
    pub cluster: &'a str,
    /// `https://<address>:6443`.
    pub server: &'a str,
    /// The name the API server's certificate is checked against.
    pub tls_server_name: Option<&'a str>,
    pub ca_cert_pem: &'a str,
    pub client: &'a ClientCert,
}

/// The context (and cluster and user) name hybrid uses: `hybrid-<cluster>`.
pub fn context_name(cluster: &str) -> String {
    format!("hybrid-{cluster}")
}

impl AdminKubeconfig<'_> {
    pub fn to_yaml(&self) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let name = context_name(self.cluster);
        let q = |s: &str| yaml_value(&serde_json::Value::String(s.to_string()));
        let tls = self.tls_server_name.map_or(String::new(), |n| format!("    tls-server-name: {}\n", q(n)));
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {n}\n  cluster:\n    server: {server}\n{tls}    certificate-authority-data: {ca}\n\
             users:\n- name: {n}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n\
             contexts:\n- name: {n}\n  context:\n    cluster: {n}\n    user: {n}\ncurrent-context: {n}\n",
            n = q(&name),
            server = q(self.server),
            ca = b64(self.ca_cert_pem),
            cert = b64(&self.client.cert_pem),
            key = b64(&self.client.key_pem),
        )
    }
}
