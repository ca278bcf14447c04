//! The bearer token an AWS identity logs in with, and the ExecCredential
//! that hands it to kubectl. Pure: the adapter presigns the STS request.
//!
//! The token is aws-iam-authenticator's (pkg/token/token.go @ 81b1daba,
//! v0.7.18): `k8s-aws-v1.` and the presigned GetCallerIdentity URL in
//! unpadded base64url, at most 4 KiB; the server accepts it for 15 minutes
//! after the signature's `X-Amz-Date`, and clients report 14 (aws-cli
//! `eks get-token`, the authenticator's own `token` command), leaving a
//! minute for clocks and the trip. kubectl runs the plugin again once the
//! reported expiry has passed; kube-rs a minute before.

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";

/// How long after signing a token is reported valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);

/// The server's limit on a token's length (`maxTokenLenBytes`).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// The API versions of the exec protocol hybrid speaks, newest first.
const EXEC_API_VERSIONS: &[&str] = &["client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1"];

/// The token for a presigned URL.
pub fn token_from_url(presigned_url: &str) -> String {
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(presigned_url))
}

/// `client.authentication.k8s.io` ExecCredential (the fields hybrid uses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecCredential {
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub kind: String,
    pub spec: serde_json::Value,
    pub status: ExecCredentialStatus,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecCredentialStatus {
    /// RFC 3339, UTC.
    #[serde(rename = "expirationTimestamp")]
    pub expiration_timestamp: String,
    pub token: String,
}

/// The apiVersion to answer in: the one the caller asked for in
/// `KUBERNETES_EXEC_INFO` when hybrid speaks it, else v1 (as aws-cli does).
pub fn exec_api_version(exec_info: Option<&str>) -> &'static str {
    let asked = exec_info
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .and_then(|v| v["apiVersion"].as_str().map(str::to_string));
    EXEC_API_VERSIONS.iter().copied().find(|v| Some(*v) == asked.as_deref()).unwrap_or(EXEC_API_VERSIONS[0])
}

impl ExecCredential {
    /// The credential for a token signed at `signed_at`.
    pub fn new(token: String, signed_at: SystemTime, api_version: &str) -> Self {
        ExecCredential {
            api_version: api_version.to_string(),
            kind: "ExecCredential".into(),
            spec: serde_json::json!({}),
            status: ExecCredentialStatus { expiration_timestamp: rfc3339(signed_at + TOKEN_LIFETIME), token },
        }
    }

    /// When the token stops being reported valid.
    pub fn expires(&self) -> Option<SystemTime> {
        OffsetDateTime::parse(&self.status.expiration_timestamp, &Rfc3339).ok().map(SystemTime::from)
    }

    /// Whether it can still be handed out at `now`: at least a minute left
    /// (kube-rs refreshes a minute early; an API call then has time to land).
    pub fn fresh_at(&self, now: SystemTime) -> bool {
        self.expires().is_some_and(|e| e > now + Duration::from_secs(60))
    }
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).replace_nanosecond(0).expect("zero nanoseconds is valid").format(&Rfc3339).expect("a UTC time formats")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unpadded_base64url_of_the_url() {
        let url = "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Signature=ab";
        let token = token_from_url(url);
        let body = token.strip_prefix(TOKEN_PREFIX).unwrap();
        assert!(!body.contains('=') && !body.contains('+') && !body.contains('/'), "{token}");
        assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).unwrap(), url.as_bytes());
    }

    #[test]
    fn the_credential_expires_fourteen_minutes_after_signing() {
        let signed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let c = ExecCredential::new("t".into(), signed, exec_api_version(None));
        assert_eq!(c.status.expiration_timestamp, "2027-01-15T08:14:00Z");
        assert_eq!(c.expires(), Some(signed + TOKEN_LIFETIME));
        assert!(c.fresh_at(signed + Duration::from_secs(12 * 60)));
        assert!(!c.fresh_at(signed + Duration::from_secs(13 * 60 + 1)));
        let json: serde_json::Value = serde_json::to_value(&c).unwrap();
        assert_eq!(json["apiVersion"], "client.authentication.k8s.io/v1");
        assert_eq!(json["status"]["expirationTimestamp"], "2027-01-15T08:14:00Z");
    }

    #[test]
    fn the_api_version_follows_the_caller() {
        let info = r#"{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","spec":{"interactive":false}}"#;
        assert_eq!(exec_api_version(Some(info)), "client.authentication.k8s.io/v1beta1");
        assert_eq!(exec_api_version(Some(r#"{"apiVersion":"client.authentication.k8s.io/v9"}"#)), "client.authentication.k8s.io/v1");
        assert_eq!(exec_api_version(Some("not json")), "client.authentication.k8s.io/v1");
    }
}
