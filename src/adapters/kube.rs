//! The Kubernetes API on the `kube` crate's client (TLS, client-certificate
//! and exec auth, kubeconfig parsing, 429/5xx retries). Built-in kinds are
//! `k8s-openapi` types at both ends: `cluster::objects` builds them typed,
//! and `get_of`/`list_of` read them typed, the path coming from the type.
//! Underneath, one small trait of JSON calls on paths remains, for three
//! reasons kube's typed `Api<K>` cannot serve: Calico's kinds have no
//! types and their API group differs between clusters (`CalicoApi`); the
//! converge logic compares a dry-run apply with the stored object field
//! by field, which is JSON either way; and the trait is what the unit
//! tests' in-memory fakes implement. Lists are kube's own `Request::list`
//! (selectors, `limit`, `continue`) followed page by page. hybrid's
//! objects are written by server-side apply (field manager `hybrid`), so it
//! owns exactly the fields it sets; nodes' labels and taints by merge patch.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

/// A failed API call.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{method} {path}: {message}")]
pub struct KubeError {
    pub method: &'static str,
    pub path: String,
    /// The HTTP status when the server answered.
    pub status: Option<u16>,
    /// No answer came at all: the connection was refused, reset or timed
    /// out (an API server restarting, a network moment). Not set for a
    /// failure that another try repeats: a certificate the cluster CA did
    /// not sign, a body that is not JSON, a request that cannot be built.
    pub no_answer: bool,
    pub message: String,
}

impl crate::retry::Transient for KubeError {
    /// No answer, or the server's own "later": 429 and 5xx, once kube's
    /// client has retried.
    fn is_transient(&self) -> bool {
        self.no_answer || matches!(self.status, Some(429 | 500 | 502 | 503 | 504))
    }
}

impl KubeError {
    /// A failure of hybrid's side: no request went out, or its answer could not be read.
    fn local(method: &'static str, path: &str, message: String) -> Self {
        Self { method, path: path.to_string(), status: None, no_answer: false, message }
    }

    fn status(method: &'static str, path: &str, status: u16, message: &str) -> Self {
        Self { method, path: path.to_string(), status: Some(status), no_answer: false, message: message.to_string() }
    }
}

/// Whether a failure without an HTTP answer is one that can pass: the
/// connection was refused, reset or timed out, or closed mid-answer. A TLS
/// failure comes as invalid data (tokio-rustls) and does not pass; nor does
/// anything kube reports that is not about the connection (a body that is
/// not JSON, an exec plugin's failure).
fn no_answer(e: &kube::Error) -> bool {
    use std::io::ErrorKind::*;
    if !matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_)) {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | TimedOut
                    | UnexpectedEof
                    | AddrNotAvailable
                    | HostUnreachable
                    | NetworkUnreachable
            );
        }
        source = s.source();
    }
    // hyper's own word for a connection that closed mid-answer.
    true
}

pub type KubeResult<T> = Result<T, KubeError>;

/// The field manager hybrid's applies own their fields as (also passed by
/// the control plane's bootstrap to kubectl, so both are one owner).
pub const FIELD_MANAGER: &str = "hybrid";

// Used with static dispatch on one task; the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait KubeApi {
    /// The object at `path`, or `None` on 404.
    async fn get(&self, path: &str) -> KubeResult<Option<Value>>;
    /// Items of a collection, filtered by label and field selectors.
    async fn list(&self, path: &str, label_selector: Option<&str>, field_selector: Option<&str>) -> KubeResult<Vec<Value>>;
    async fn create(&self, collection: &str, body: &Value) -> KubeResult<Value>;
    /// JSON merge patch (RFC 7386).
    async fn merge_patch(&self, path: &str, patch: &Value) -> KubeResult<Value>;
    /// Server-side apply as field manager `hybrid` (creates when missing).
    /// `force` takes over fields other managers own with other values;
    /// `dry_run` returns what the object would become and stores nothing.
    async fn apply(&self, path: &str, body: &Value, force: bool, dry_run: bool) -> KubeResult<Value>;
    /// Deletes; 404 counts as done.
    async fn delete(&self, path: &str) -> KubeResult<()>;
    /// `POST <pod>/eviction`; `Ok(false)` when a PodDisruptionBudget refuses
    /// it for now (429) or the API server is too busy (503, 504).
    async fn evict(&self, namespace: &str, pod: &str) -> KubeResult<bool>;
    /// Names of the API groups the server serves (`/apis`).
    async fn api_groups(&self) -> KubeResult<Vec<String>>;
    /// Writes made so far (create, patch, delete, evict; dry runs are not
    /// writes), for --api-stats.
    fn writes(&self) -> u64;

    /// A built-in object read as its `k8s-openapi` type (the path comes
    /// from the type), or `None` on 404.
    async fn get_of<T: BuiltIn>(&self, namespace: Option<&str>, name: &str) -> KubeResult<Option<T>>
    where
        Self: Sized,
    {
        let path = format!("{}/{name}", T::url_path(&(), namespace));
        self.get(&path).await?.map(|v| typed_from(v, "GET", &path)).transpose()
    }

    /// Built-in objects of one kind (in `namespace`, or all) as their type.
    async fn list_of<T: BuiltIn>(
        &self,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> KubeResult<Vec<T>>
    where
        Self: Sized,
    {
        let path = T::url_path(&(), namespace);
        self.list(&path, label_selector, field_selector).await?.into_iter().map(|v| typed_from(v, "GET", &path)).collect()
    }
}

/// A built-in kind hybrid reads typed: a `k8s-openapi` type.
pub trait BuiltIn: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned {}
impl<T: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned> BuiltIn for T {}

/// An answer as its type; one that does not fit is the server's error.
fn typed_from<T: BuiltIn>(v: Value, method: &'static str, path: &str) -> KubeResult<T> {
    // The server answered, with something else: not worth asking again.
    serde_json::from_value(v).map_err(|e| KubeError::local(method, path, format!("the answer is not a {}: {e}", T::kind(&()))))
}

/// Whether `host` is exempt from the proxy by a `NO_PROXY` list, as curl
/// and Go read it: `*`, a host, a domain suffix (`.example.com` or
/// `example.com`), an IPv4 address or an IPv4 CIDR.
pub fn bypasses_proxy(no_proxy: &str, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    no_proxy.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" || entry == host {
            return true;
        }
        if let (Ok(ip), Ok(cidr)) = (crate::model::net::Ipv4Cidr::parse(&format!("{host}/32")), crate::model::net::Ipv4Cidr::parse(&entry))
        {
            return cidr.contains(ip);
        }
        let suffix = entry.trim_start_matches('.');
        host.ends_with(&format!(".{suffix}"))
    })
}

pub struct KubeClient {
    /// Retries 429, 503 and 504 with backoff (kube's default).
    client: kube::Client,
    /// For evictions: a 429 there is a PodDisruptionBudget saying "not yet",
    /// which the drain loop handles with its own timeout.
    no_retry: kube::Client,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl KubeClient {
    /// A client from kubeconfig text (as `cluster::kubeconfig` makes).
    pub async fn from_kubeconfig_yaml(yaml: &str) -> Result<Self, String> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml).map_err(|e| e.to_string())?;
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        // kube takes HTTPS_PROXY from the environment, but (5.0.0) matches
        // NO_PROXY against the proxy's address instead of the server's:
        // the server's own is what decides, as for every other client.
        let no_proxy = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default();
        if config.proxy_url.is_some() && config.cluster_url.host().is_some_and(|h| bypasses_proxy(&no_proxy, h)) {
            config.proxy_url = None;
        }
        // Every wait has a deadline, and a hung request must not outlast it
        // (kube sets none; hybrid makes no watches, and no call it makes
        // takes a minute).
        config.read_timeout = Some(std::time::Duration::from_secs(60));
        let client = kube::Client::try_from(config.clone()).map_err(|e| e.to_string())?;
        let mut once = config;
        once.default_retry = false;
        let no_retry = kube::Client::try_from(once).map_err(|e| e.to_string())?;
        Ok(Self { client, no_retry, calls: Mutex::new(BTreeMap::new()) })
    }

    fn count(&self, method: &'static str) {
        *self.calls.lock().expect("call counter lock").entry(method).or_default() += 1;
    }

    async fn send(&self, method: &'static str, path: &str, body: Option<(&str, &Value)>) -> KubeResult<Option<Value>> {
        self.dispatch(&self.client, method, method, path, build(method, path, body)?).await
    }

    /// Every call goes through here: counted under `label` (a dry run is
    /// not a write), logged by method and URL only (bodies may hold
    /// Secrets), sent, and a failure logged with its status.
    async fn dispatch(
        &self,
        client: &kube::Client,
        label: &'static str,
        method: &'static str,
        path: &str,
        req: http::Request<Vec<u8>>,
    ) -> KubeResult<Option<Value>> {
        self.count(label);
        let url = req.uri().to_string();
        tracing::debug!(target: "hybrid::kube", "{method} {url}");
        let answer = self.call(client, method, path, req).await;
        if let Err(e) = &answer {
            let why = match e.status {
                Some(status) => status.to_string(),
                None if e.no_answer => "no answer".to_string(),
                None => "no usable answer".to_string(),
            };
            tracing::debug!(target: "hybrid::kube", "{method} {url} failed: {why}");
        }
        answer
    }

    /// Sends a built request; `method` and `path` name it in errors.
    async fn call(
        &self,
        client: &kube::Client,
        method: &'static str,
        path: &str,
        req: http::Request<Vec<u8>>,
    ) -> KubeResult<Option<Value>> {
        match client.request::<Value>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(kube::Error::Api(status)) => Err(KubeError::status(method, path, status.code, &status.message)),
            Err(e) => Err(KubeError { no_answer: no_answer(&e), ..KubeError::local(method, path, e.to_string()) }),
        }
    }
}

/// A request for `path` with an optional (content type, JSON body).
fn build(method: &'static str, path: &str, body: Option<(&str, &Value)>) -> KubeResult<http::Request<Vec<u8>>> {
    let mut req = http::Request::builder().method(method).uri(path);
    let bytes = match body {
        Some((content_type, v)) => {
            req = req.header(http::header::CONTENT_TYPE, content_type);
            serde_json::to_vec(v).expect("a JSON value serializes")
        }
        None => Vec::new(),
    };
    req.body(bytes).map_err(|e| KubeError::local(method, path, e.to_string()))
}

/// How many items one page of a list asks for: big enough that a cluster
/// of hybrid's size lists in one round trip, small enough to bound one
/// answer (kubectl asks for 500 too).
const PAGE: u32 = 500;

impl KubeApi for KubeClient {
    async fn get(&self, path: &str) -> KubeResult<Option<Value>> {
        self.send("GET", path, None).await
    }

    /// Every page: the query (selectors, limit, continue) is kube's own
    /// `Request::list`, and a server may end a page early at any size. A
    /// continue token that expired (410 Gone, after an etcd compaction)
    /// starts the list again from its first page, once, as client-go's
    /// pager does (`FullListIfExpired`).
    async fn list(&self, path: &str, label_selector: Option<&str>, field_selector: Option<&str>) -> KubeResult<Vec<Value>> {
        let first = kube::api::ListParams {
            label_selector: label_selector.map(str::to_string),
            field_selector: field_selector.map(str::to_string),
            limit: Some(PAGE),
            ..Default::default()
        };
        let (mut params, mut items, mut restarted) = (first.clone(), Vec::new(), false);
        loop {
            let req = kube::core::Request::new(path).list(&params).map_err(|e| KubeError::local("GET", path, e.to_string()))?;
            let page = match self.dispatch(&self.client, "GET", "GET", path, req).await {
                Err(e) if e.status == Some(410) && params.continue_token.is_some() && !restarted => {
                    (params, items, restarted) = (first.clone(), Vec::new(), true);
                    continue;
                }
                other => other?,
            };
            let Some(mut page) = page else {
                if params.continue_token.is_some() {
                    return Err(KubeError::status("GET", path, 404, "the collection went away between pages"));
                }
                break;
            };
            items.extend(page["items"].as_array_mut().map(std::mem::take).unwrap_or_default());
            match page["metadata"]["continue"].as_str().filter(|c| !c.is_empty()) {
                Some(token) if params.continue_token.as_deref() == Some(token) => {
                    return Err(KubeError::local("GET", path, "the server handed back the same continue token twice".into()));
                }
                Some(token) => params.continue_token = Some(token.to_string()),
                None => break,
            }
        }
        Ok(items)
    }

    async fn create(&self, collection: &str, body: &Value) -> KubeResult<Value> {
        let out = self.send("POST", collection, Some(("application/json", body))).await?;
        out.ok_or_else(|| KubeError::status("POST", collection, 404, "the collection does not exist"))
    }

    async fn merge_patch(&self, path: &str, patch: &Value) -> KubeResult<Value> {
        let out = self.send("PATCH", path, Some(("application/merge-patch+json", patch))).await?;
        out.ok_or_else(|| KubeError::status("PATCH", path, 404, "the object does not exist"))
    }

    async fn apply(&self, path: &str, body: &Value, force: bool, dry_run: bool) -> KubeResult<Value> {
        let mut url = format!("{path}?fieldManager={FIELD_MANAGER}");
        if force {
            url.push_str("&force=true");
        }
        if dry_run {
            url.push_str("&dryRun=All");
        }
        // JSON is YAML: the apply content type takes either.
        let method = if dry_run { "DRYRUN" } else { "APPLY" };
        let req = build("PATCH", &url, Some(("application/apply-patch+yaml", body)))?;
        let out = self.dispatch(&self.client, method, "PATCH", &url, req).await?;
        out.ok_or_else(|| KubeError::status("PATCH", path, 404, "the collection does not exist"))
    }

    async fn delete(&self, path: &str) -> KubeResult<()> {
        self.send("DELETE", path, None).await.map(|_| ())
    }

    async fn evict(&self, namespace: &str, pod: &str) -> KubeResult<bool> {
        let path = format!("/api/v1/namespaces/{namespace}/pods/{pod}/eviction");
        // A typed policy/v1 Eviction rather than kube's `Request::evict`,
        // whose body (kube-core 5.0) carries a `delete_options` key that a
        // strictly decoding server refuses as unknown.
        let eviction = k8s_openapi::api::policy::v1::Eviction {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(pod.to_string()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            delete_options: None,
        };
        let body = serde_json::to_value(&eviction).expect("an Eviction serializes");
        match self.dispatch(&self.no_retry, "POST", "POST", &path, build("POST", &path, Some(("application/json", &body)))?).await {
            Ok(_) => Ok(true),
            // 429: a PodDisruptionBudget says "not yet"; 503 and 504: the
            // API server is busy. Either way the drain tries again at its
            // next turn (a 500 can be lasting, e.g. two budgets match).
            Err(e) if matches!(e.status, Some(429 | 503 | 504)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn api_groups(&self) -> KubeResult<Vec<String>> {
        let groups = self.send("GET", "/apis", None).await?.unwrap_or_default();
        Ok(groups["groups"]
            .as_array()
            .map(|a| a.iter().filter_map(|g| g["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }

    fn writes(&self) -> u64 {
        let calls = self.calls.lock().expect("call counter lock");
        calls.iter().filter(|(m, _)| **m != "GET" && **m != "DRYRUN").map(|(_, n)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_proxy_is_read_as_curl_and_go_read_it() {
        use super::bypasses_proxy;
        assert!(bypasses_proxy("127.0.0.1", "127.0.0.1"));
        assert!(bypasses_proxy("localhost, 10.0.0.0/8", "10.42.0.10"));
        assert!(bypasses_proxy(".internal", "ip-10-0-0-1.ec2.internal"));
        assert!(bypasses_proxy("example.com", "api.example.com"));
        assert!(bypasses_proxy("*", "anything"));
        assert!(!bypasses_proxy("10.255.255.1", "127.0.0.1"), "the proxy's address is not the server's");
        assert!(!bypasses_proxy("", "127.0.0.1"));
        assert!(!bypasses_proxy("xample.com", "example.com"));
    }
}
