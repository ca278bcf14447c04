//! The HTTP client every AWS call of a run goes through: the SDK's own
//! default (rustls, `HTTPS_PROXY`/`NO_PROXY` from the environment), with a
//! bound on the calls in flight. Stages ask everything that waits for
//! nothing else at once (a plan is a handful of round trips from far
//! away); this bound keeps that from becoming a storm on an account's API
//! rate, the way Terraform's `-parallelism` does, and it counts retries
//! too, so a throttled burst cannot multiply itself.

use std::sync::{Arc, OnceLock};

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use tokio::sync::Semaphore;

/// Calls in flight when `--parallelism` is not given: Terraform's default.
pub const DEFAULT_PARALLELISM: usize = 10;

/// The process's one client: every region's clients share its bound (and
/// its connection pool). The first caller's `parallelism` decides.
pub fn client(parallelism: usize) -> SharedHttpClient {
    static CLIENT: OnceLock<SharedHttpClient> = OnceLock::new();
    CLIENT
        .get_or_init(|| SharedHttpClient::new(Bounded { inner: sdk_default(), permits: Arc::new(Semaphore::new(parallelism.max(1))) }))
        .clone()
}

/// What the SDK builds when it is given no client (aws-smithy-runtime's
/// `default_https_client` for behaviour versions from 2025-08-07 on):
/// rustls with aws-lc, the proxy settings of the environment.
fn sdk_default() -> SharedHttpClient {
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[derive(Debug)]
struct Bounded {
    inner: SharedHttpClient,
    permits: Arc<Semaphore>,
}

impl HttpClient for Bounded {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(BoundedConnector { inner: self.inner.http_connector(settings, components), permits: self.permits.clone() })
    }

    fn connector_metadata(&self) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct BoundedConnector {
    inner: SharedHttpConnector,
    permits: Arc<Semaphore>,
}

impl HttpConnector for BoundedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, permits) = (self.inner.clone(), self.permits.clone());
        HttpConnectorFuture::new(async move {
            // Held until the answer's head is in: a call is in flight from
            // sending to answer.
            let _permit = permits.acquire_owned().await.map_err(|e| ConnectorError::other(e.into(), None))?;
            inner.call(request).await
        })
    }
}
