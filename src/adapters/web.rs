//! The pin check's HTTP (reqwest): whether a file exists at its URL,
//! following redirects as a node's download does; a checksum source's
//! answer; and an image's variants from its registry's OCI distribution
//! API, through the anonymous Bearer token flow Docker Hub, quay.io, ghcr.io
//! and registry.k8s.io use. Proxies come from the environment
//! (`HTTPS_PROXY`, `NO_PROXY`). Every request has a deadline: without a
//! network the check fails in seconds, naming what it could not reach.
//!
//! `HYBRID_PIN_CHECK_ENDPOINT=http://127.0.0.1:PORT` (tests) sends every
//! `https://HOST/PATH` to `http://127.0.0.1:PORT/HOST/PATH` instead, the
//! targets of redirects and token realms included, as `--endpoint-url` does
//! for AWS: tests never reach the internet.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::versions::pins::{ImageRef, Variant};

/// What a URL answered, after redirects.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: String,
}

/// Why a request got no answer at all (as opposed to an unhappy one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url}: {why}")]
pub struct Unreachable {
    pub url: String,
    pub why: String,
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct Web {
    client: reqwest::Client,
    endpoint: Option<String>,
    /// Bearer tokens by registry host.
    tokens: Mutex<BTreeMap<String, String>>,
    requests: Mutex<u64>,
}

impl Web {
    pub fn new(endpoint: Option<String>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            // Redirects are followed here, so that their targets go through
            // `route` too.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            .user_agent(concat!("hybrid/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_string()),
            tokens: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(0),
        })
    }

    /// The URL actually fetched for `url`.
    fn route(&self, url: &str) -> String {
        match (&self.endpoint, url.strip_prefix("https://")) {
            (Some(endpoint), Some(rest)) => format!("{endpoint}/{rest}"),
            _ => url.to_string(),
        }
    }

    pub fn requests(&self) -> u64 {
        *self.requests.lock().expect("request counter lock")
    }

    /// GET `url`, following up to 10 redirects; `bearer` is sent to the
    /// first host only (as clients do: a redirect to storage carries its
    /// own signature).
    pub async fn get(&self, url: &str, accept: Option<&str>, bearer: Option<&str>) -> Result<Answer, Unreachable> {
        let mut current = url.to_string();
        let first_host = host_of(url);
        for _ in 0..10 {
            *self.requests.lock().expect("request counter lock") += 1;
            let mut req = self.client.get(self.route(&current));
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let (Some(token), true) = (bearer, host_of(&current) == first_host) {
                req = req.bearer_auth(token);
            }
            let resp = req.send().await.map_err(|e| Unreachable { url: current.clone(), why: describe(&e) })?;
            let status = resp.status().as_u16();
            if (300..400).contains(&status)
                && let Some(location) = resp.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok())
            {
                current = resolve(&current, location);
                continue;
            }
            let content_type =
                resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let challenge =
                resp.headers().get(reqwest::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string).unwrap_or_default();
            let body = resp.bytes().await.map_err(|e| Unreachable { url: current.clone(), why: describe(&e) })?.to_vec();
            // The challenge travels in the body of a 401 for the caller.
            let body = if status == 401 { challenge.into_bytes() } else { body };
            return Ok(Answer { status, body, content_type });
        }
        Err(Unreachable { url: url.to_string(), why: "more than 10 redirects".into() })
    }

    /// A registry API GET with the anonymous token flow: a 401's Bearer
    /// challenge names the realm, service and scope to ask a token for.
    async fn registry_get(&self, image: &ImageRef, path: &str, accept: &str) -> Result<Answer, Unreachable> {
        let url = format!("https://{}/v2/{}/{path}", image.registry, image.repository);
        let cached = self.tokens.lock().expect("token lock").get(&image.registry).cloned();
        let answer = self.get(&url, Some(accept), cached.as_deref()).await?;
        if answer.status != 401 {
            return Ok(answer);
        }
        let challenge = String::from_utf8_lossy(&answer.body).into_owned();
        let params = bearer_params(&challenge).ok_or_else(|| Unreachable {
            url: url.clone(),
            why: format!("answered 401 without a Bearer challenge ({challenge:?}): the image is not public"),
        })?;
        let realm = params.get("realm").cloned().unwrap_or_default();
        let mut token_url =
            reqwest::Url::parse(&realm).map_err(|_| Unreachable { url: url.clone(), why: format!("bad token realm {realm:?}") })?;
        {
            let mut q = token_url.query_pairs_mut();
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            let scope = params.get("scope").cloned().unwrap_or_else(|| format!("repository:{}:pull", image.repository));
            q.append_pair("scope", &scope);
        }
        let token = self.get(token_url.as_str(), Some("application/json"), None).await?;
        let parsed: Value = serde_json::from_slice(&token.body).unwrap_or(Value::Null);
        let Some(token) = parsed["token"].as_str().or(parsed["access_token"].as_str()).filter(|_| token.status == 200) else {
            return Err(Unreachable { url: realm, why: format!("gave no anonymous token (HTTP {})", token.status) });
        };
        self.tokens.lock().expect("token lock").insert(image.registry.clone(), token.to_string());
        self.get(&url, Some(accept), Some(token)).await
    }

    /// The variants `image` has: its index's entries, or a single
    /// manifest's platform from its config. `Ok(None)`: no such tag.
    pub async fn image_variants(&self, image: &ImageRef) -> Result<Option<Vec<Variant>>, Unreachable> {
        let answer = self.registry_get(image, &format!("manifests/{}", image.reference), MANIFEST_TYPES).await?;
        match answer.status {
            200 => {}
            404 => return Ok(None),
            s => return Err(Unreachable { url: format!("{}/{}", image.registry, image.repository), why: format!("answered HTTP {s}") }),
        }
        let manifest: Value = serde_json::from_slice(&answer.body)
            .map_err(|_| Unreachable { url: image.registry.clone(), why: "answered a manifest that is not JSON".into() })?;
        if let Some(entries) = manifest["manifests"].as_array() {
            return Ok(Some(
                entries
                    .iter()
                    .map(|m| Variant {
                        os: m["platform"]["os"].as_str().unwrap_or_default().to_string(),
                        architecture: m["platform"]["architecture"].as_str().unwrap_or_default().to_string(),
                        os_version: m["platform"]["os.version"].as_str().map(str::to_string),
                    })
                    .collect(),
            ));
        }
        // One manifest: its platform is in its config blob.
        let digest = manifest["config"]["digest"].as_str().unwrap_or_default();
        let config = self.registry_get(image, &format!("blobs/{digest}"), "application/json, */*").await?;
        let config: Value = serde_json::from_slice(&config.body).unwrap_or(Value::Null);
        Ok(Some(vec![Variant {
            os: config["os"].as_str().unwrap_or_default().to_string(),
            architecture: config["architecture"].as_str().unwrap_or_default().to_string(),
            os_version: config["os.version"].as_str().map(str::to_string),
        }]))
    }
}

fn host_of(url: &str) -> String {
    url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default().to_string()
}

/// A redirect's target: absolute, or relative to `base`.
fn resolve(base: &str, location: &str) -> String {
    match reqwest::Url::parse(base).and_then(|b| b.join(location)) {
        Ok(u) => u.to_string(),
        Err(_) => location.to_string(),
    }
}

/// `Bearer realm="…",service="…",scope="…"`.
pub fn bearer_params(challenge: &str) -> Option<BTreeMap<String, String>> {
    let rest = challenge.trim().strip_prefix("Bearer ").or_else(|| challenge.trim().strip_prefix("bearer "))?;
    let mut out = BTreeMap::new();
    let mut s = rest;
    while let Some(eq) = s.find('=') {
        let key = s[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &s[eq + 1..];
        let (value, remainder) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (quoted[..end].to_string(), &quoted[end + 1..])
            }
            None => {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            }
        };
        out.insert(key, value);
        s = remainder;
    }
    out.contains_key("realm").then_some(out)
}

/// A transport error in a few words: what a user can act on.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer in time".into()
    } else if e.is_connect() {
        let mut source: Option<&dyn std::error::Error> = Some(e);
        let mut last = String::new();
        while let Some(s) = source {
            last = s.to_string();
            source = s.source();
        }
        format!("could not connect ({last})")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read_as_registries_write_them() {
        let p = bearer_params(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        )
        .unwrap();
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/nginx:pull");
        let p = bearer_params(r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:flannel-io/flannel:pull,push""#)
            .unwrap();
        assert_eq!(p["scope"], "repository:flannel-io/flannel:pull,push", "a comma inside quotes stays");
        assert!(bearer_params(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn the_test_endpoint_takes_every_https_url_and_no_other() {
        let web = Web::new(Some("http://127.0.0.1:9/".into())).unwrap();
        assert_eq!(web.route("https://dl.k8s.io/v1.36.5/bin/x?y=1"), "http://127.0.0.1:9/dl.k8s.io/v1.36.5/bin/x?y=1");
        assert_eq!(web.route("http://127.0.0.1:8/token"), "http://127.0.0.1:8/token");
        assert_eq!(Web::new(None).unwrap().route("https://dl.k8s.io/x"), "https://dl.k8s.io/x");
        assert_eq!(
            resolve("https://github.com/a/b/releases/download/v1/f", "https://objects.githubusercontent.com/x"),
            "https://objects.githubusercontent.com/x"
        );
        assert_eq!(resolve("https://registry.k8s.io/v2/pause/manifests/3", "/v2/x"), "https://registry.k8s.io/v2/x");
    }
}
