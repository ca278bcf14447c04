//! `Cloud` on the AWS SDK (EC2 + SSM). Thin on purpose: each method is one
//! or a few API calls, mapping SDK shapes to hybrid's plain types and SDK
//! errors to `CloudError`. Retries with backoff for throttling, 5xx and
//! dropped connections come from the SDK's standard retry mode, configured
//! in `connect`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ec2::types as ec2t;
use aws_sdk_ssm::types as ssmt;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use base64::Engine;

use super::in_flight;
use super::{Cloud, CloudError, CloudResult, FoundCluster, FoundInstance, LaunchRequest, Launched, LockInfo, NO_ANSWER, NO_CREDENTIALS};
use crate::infra::changes::Attribute;
use crate::infra::desired::{
    AmiLookup, InstanceProfile, ResolvedAmi, SgRule, Source, TAG_CLUSTER, TAG_CNI, TAG_CREATE_TOKEN, TAG_EXPIRES, TAG_KUBERNETES,
    TAG_OWNER, TAG_PLAYERS, TAG_POOL, TAG_SLOT, TAG_SPEC_HASH, ec2_trust_policy, iam_path_prefix, instance_profiles, lock_parameter_name,
    lock_parameter_prefix, parameter_prefix,
};
use crate::infra::images::{BakedImage, Builder, TAG_BAKE_BUILDER, TAG_BAKE_KEY, TAG_BAKE_LINE};
use crate::infra::inventory::{FoundProfile, Gateway, Instance, Inventory, RouteTable, SecurityGroup, Subnet, Vpc};
use crate::model::AmiRef;
use crate::model::net::Ipv4Cidr;
use crate::retry::{Backoff, Retry};

/// Every item of a paginated call: `$request` (a fluent builder) sent page
/// by page, each page counted as a call, the items read with `$items`.
/// Every Describe pages: AWS (and moto, at 100 reservations) ends a page
/// whenever it likes, and a check that read one page would miss the rest.
macro_rules! paged {
    ($self:ident, $op:literal, $request:expr, $items:ident) => {{
        let mut pages = $request.into_paginator().send();
        let mut all = Vec::new();
        while let Some(page) = pages.next().await {
            $self.count($op);
            all.extend(page.map_err(|e| err($op, e))?.$items().iter().cloned());
        }
        all
    }};
}

pub struct AwsCloud {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    /// Global; names carry the region (`desired::instance_profile`).
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    region: String,
    parallelism: usize,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

/// Where and as whom hybrid reaches AWS.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub region: String,
    /// A named profile of ~/.aws/config (`--profile`, else AWS_PROFILE).
    pub profile: Option<String>,
    /// Another endpoint for every service (`--endpoint-url`, e.g. moto);
    /// AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE> work as in the AWS CLI.
    pub endpoint: Option<String>,
    /// At most this many calls in flight (`--parallelism`; 0 means the
    /// default): see `adapters::in_flight`.
    pub parallelism: usize,
}

/// A credential source that says its own name when it fails: the SDK's
/// chain stops at the first source that is configured but fails (an SSO
/// token that expired, a credential_process that exits non-zero) and its
/// error names no source.
#[derive(Debug)]
struct Named<P> {
    name: String,
    /// For an SSO profile whose login has run out: the command that logs in again.
    sso_login: Option<String>,
    inner: P,
}

#[derive(Debug)]
struct SourceFailed {
    source_name: String,
    hint: Option<String>,
    inner: aws_credential_types::provider::error::CredentialsError,
}

impl std::fmt::Display for SourceFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "credential source {} failed", self.source_name)?;
        match &self.hint {
            Some(hint) => write!(f, " ({hint})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for SourceFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.inner)
    }
}

impl<P: ProvideCredentials> ProvideCredentials for Named<P> {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        use aws_credential_types::provider::error::CredentialsError;
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            match self.inner.provide_credentials().await {
                Err(e @ CredentialsError::CredentialsNotLoaded(_)) => Err(e),
                Err(e) => {
                    // The SDK's SSO errors: no cached token, an expired one, one the portal refused.
                    let text = DisplayErrorContext(&e).to_string();
                    let sso = ["SSO token", "UnauthorizedException"].iter().any(|s| text.contains(s));
                    let hint = self.sso_login.as_ref().filter(|_| sso).map(|cmd| format!("run `{cmd}` to log in again"));
                    Err(CredentialsError::provider_error(SourceFailed { source_name: self.name.clone(), hint, inner: e }))
                }
                ok => ok,
            }
        })
    }
}

/// The AWS CLI's credential chain, in its order (environment, the profile
/// with its SSO, credential_process, role and web identity settings, web
/// identity from the environment, container, instance metadata), each
/// source named in its failure.
fn credential_chain(region: &str, profile: Option<&str>) -> aws_config::meta::credentials::CredentialsProviderChain {
    use aws_config::meta::credentials::CredentialsProviderChain;
    use aws_config::provider_config::ProviderConfig;
    let pc = ProviderConfig::without_region().with_region(Some(aws_config::Region::new(region.to_string())));
    let mut profile_provider = aws_config::profile::ProfileFileCredentialsProvider::builder().configure(&pc);
    if let Some(p) = profile {
        profile_provider = profile_provider.profile_name(p);
    }
    let profile_name = profile.map(str::to_string).or_else(|| std::env::var("AWS_PROFILE").ok()).unwrap_or_else(|| "default".into());
    let profile_label =
        format!("profile {profile_name:?} of {}", std::env::var("AWS_CONFIG_FILE").unwrap_or_else(|_| "~/.aws/config".into()));
    let sso_login =
        Some(if profile_name == "default" { "aws sso login".to_string() } else { format!("aws sso login --profile {profile_name}") });
    CredentialsProviderChain::first_try(
        "environment",
        Named {
            name: "environment variables (AWS_ACCESS_KEY_ID)".into(),
            sso_login: None,
            inner: aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        },
    )
    .or_else("profile", Named { name: profile_label, sso_login, inner: profile_provider.build() })
    .or_else(
        "web-identity",
        Named {
            name: "web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)".into(),
            sso_login: None,
            inner: aws_config::web_identity_token::WebIdentityTokenCredentialsProvider::builder().configure(&pc).build(),
        },
    )
    .or_else(
        "container",
        Named {
            name: "container credentials".into(),
            sso_login: None,
            inner: aws_config::ecs::EcsCredentialsProvider::builder().configure(&pc).build(),
        },
    )
    .or_else(
        "imds",
        Named {
            name: "EC2 instance metadata".into(),
            sso_login: None,
            inner: aws_config::imds::credentials::ImdsCredentialsProvider::builder().configure(&pc).build(),
        },
    )
}

/// A presigned `GET https://sts.<region>.<domain>/?Action=GetCallerIdentity`
/// for `cluster_id`, signed at `now` with the credentials `target` resolves:
/// what aws-iam-authenticator's client sends as a token
/// (pkg/token/token.go `GetWithSTS`: SigV4 in the query, `x-k8s-aws-id`
/// signed, `X-Amz-Expires=60`). The URL always names AWS's own STS host —
/// the server refuses any other — even when hybrid talks to an emulator.
pub async fn presign_caller_identity(target: &Target, cluster_id: &str, now: std::time::SystemTime) -> CloudResult<String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
    let creds = credential_chain(&target.region, target.profile.as_deref())
        .provide_credentials()
        .await
        .map_err(|e| CloudError::new("GetCallerIdentity", NO_CREDENTIALS, DisplayErrorContext(&e).to_string()))?;
    let url = format!("https://{}/?Action=GetCallerIdentity&Version=2011-06-15", crate::model::access::sts_host(&target.region));
    let identity = creds.into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(60));
    let failed =
        |e: &dyn std::fmt::Display| CloudError::new("GetCallerIdentity", "RequestInvalid", format!("cannot sign the token request: {e}"));
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(&target.region)
        .name("sts")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let headers = [("x-k8s-aws-id", cluster_id)];
    let request = SignableRequest::new("GET", &url, headers.iter().copied(), SignableBody::Bytes(&[])).map_err(|e| failed(&e))?;
    let (instructions, _) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    let mut signed = http::Request::builder().uri(&url).body(()).map_err(|e| failed(&e))?;
    instructions.apply_to_request_http1x(&mut signed);
    Ok(signed.uri().to_string())
}

/// The region to use when no cluster file names one: `--region`, else the
/// AWS CLI's chain (AWS_REGION, AWS_DEFAULT_REGION, the profile's region,
/// instance metadata).
pub async fn default_region(profile: Option<&str>) -> Option<String> {
    let mut chain = aws_config::default_provider::region::DefaultRegionChain::builder();
    if let Some(p) = profile {
        chain = chain.profile_name(p);
    }
    chain.build().region().await.map(|r| r.to_string())
}

/// Connects as the AWS CLI would with the same settings: the credential
/// chain above, `HTTPS_PROXY`/`NO_PROXY` (the SDK's own client honours
/// them), and `target.endpoint` (or `AWS_ENDPOINT_URL`) for another
/// endpoint such as moto.
pub async fn connect(target: &Target) -> AwsCloud {
    let region = target.region.as_str();
    let parallelism = if target.parallelism == 0 { in_flight::DEFAULT_PARALLELISM } else { target.parallelism };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(credential_chain(region, target.profile.as_deref()))
        // An interactive credential_process (an MFA prompt, a password
        // manager) gets a minute, not the default five seconds.
        .identity_cache(aws_config::identity::IdentityCache::lazy().load_timeout(Duration::from_secs(60)).build())
        .http_client(in_flight::client(parallelism))
        // Throttling (RequestLimitExceeded), 5xx and dropped connections are
        // retried with exponential backoff and jitter (standard mode, as
        // Terraform's AWS provider; adaptive mode's rate limiter would slow
        // the rest of a run to a crawl after one burst of throttling). The
        // retries wait for a slot like any call (`in_flight`), so a
        // throttled burst does not multiply itself.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(10)),
        )
        .timeout_config(
            TimeoutConfig::builder().connect_timeout(Duration::from_secs(5)).operation_attempt_timeout(Duration::from_secs(30)).build(),
        );
    if let Some(p) = &target.profile {
        loader = loader.profile_name(p);
    }
    if let Some(url) = &target.endpoint {
        loader = loader.endpoint_url(url);
    }
    let conf = loader.load().await;
    AwsCloud {
        ec2: aws_sdk_ec2::Client::new(&conf),
        ssm: aws_sdk_ssm::Client::new(&conf),
        sts: aws_sdk_sts::Client::new(&conf),
        iam: aws_sdk_iam::Client::new(&conf),
        region: region.to_string(),
        parallelism,
        calls: Mutex::new(BTreeMap::new()),
    }
}

/// EC2 and SSM share the SDK's error type, so one mapping serves both.
/// Messages stay short and never carry a raw response body: what a user
/// needs is the operation, the code and one line.
fn err<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    e: aws_sdk_ec2::error::SdkError<E, R>,
) -> CloudError {
    use aws_sdk_ec2::error::SdkError;
    if let Some(code) = e.code() {
        tracing::debug!(target: "hybrid::aws", "{operation} failed: {code}");
        return CloudError::new(operation, code, one_line(e.message().unwrap_or("")));
    }
    // No credentials: nothing was sent, and the reason is the source's.
    if let SdkError::DispatchFailure(d) = &e
        && let Some(creds) = d
            .as_connector_error()
            .and_then(|c| std::error::Error::source(c))
            .and_then(|s| s.downcast_ref::<aws_credential_types::provider::error::CredentialsError>())
    {
        return CloudError::new(operation, NO_CREDENTIALS, DisplayErrorContext(creds).to_string());
    }
    let (code, message) = match &e {
        SdkError::ConstructionFailure(_) => ("RequestInvalid", "the request could not be built".to_string()),
        SdkError::TimeoutError(_) => (NO_ANSWER, "no answer in time".to_string()),
        SdkError::DispatchFailure(d) if d.is_timeout() => (NO_ANSWER, "the connection timed out".to_string()),
        SdkError::DispatchFailure(d) if d.is_io() => (NO_ANSWER, "the connection failed or was dropped".to_string()),
        SdkError::DispatchFailure(_) => (NO_ANSWER, "the request could not be sent".to_string()),
        SdkError::ResponseError(_) => (NO_ANSWER, "the answer was cut off or could not be read".to_string()),
        SdkError::ServiceError(_) => ("UnreadableAnswer", "the answer could not be read (cut off or malformed)".to_string()),
        _ => ("RequestFailed", one_line(&DisplayErrorContext(&e).to_string())),
    };
    CloudError::new(operation, code, message)
}

/// `%XX` escapes decoded (IAM answers policy documents URL-encoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first line of `text`, at most 200 characters.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    match line.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

/// SDK retries off for one call: `create_once` retries it itself, looking
/// for what an earlier attempt made before sending again.
fn no_retries() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// Finds resources by the create token among `tags`.
fn token_filter(tags: &BTreeMap<String, String>) -> ec2t::Filter {
    let token = tags.get(TAG_CREATE_TOKEN).cloned().unwrap_or_default();
    ec2t::Filter::builder().name(format!("tag:{TAG_CREATE_TOKEN}")).values(token).build()
}

/// Success, or an error code that means the call's goal already holds (a
/// retried call whose first attempt went through, a resource already gone).
fn done_unless<O, E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    operation: &'static str,
    result: Result<O, aws_sdk_ec2::error::SdkError<E, R>>,
    benign: &str,
) -> CloudResult<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(benign) => Ok(()),
        Err(e) => Err(err(operation, e)),
    }
}

fn resolved(i: &ec2t::Image) -> ResolvedAmi {
    ResolvedAmi {
        id: i.image_id().unwrap_or_default().to_string(),
        name: i.name().unwrap_or("").to_string(),
        // EC2's usual root device when an image does not say.
        root_device: i.root_device_name().unwrap_or("/dev/sda1").to_string(),
    }
}

fn tag_specs(kinds: &[ec2t::ResourceType], tags: &BTreeMap<String, String>) -> Vec<ec2t::TagSpecification> {
    kinds
        .iter()
        .map(|k| {
            let mut b = ec2t::TagSpecification::builder().resource_type(k.clone());
            for (key, value) in tags {
                b = b.tags(ec2t::Tag::builder().key(key).value(value).build());
            }
            b.build()
        })
        .collect()
}

/// Instances that are there, or will be again: every state but going and gone.
fn live_states() -> ec2t::Filter {
    ec2t::Filter::builder().name("instance-state-name").values("pending").values("running").values("stopping").values("stopped").build()
}

fn cluster_filter(cluster: &str) -> ec2t::Filter {
    ec2t::Filter::builder().name(format!("tag:{TAG_CLUSTER}")).values(cluster).build()
}

fn tag_value(tags: &[ec2t::Tag], key: &str) -> String {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).unwrap_or_default().to_string()
}

fn permission(rule: &SgRule, group_id: &str) -> ec2t::IpPermission {
    let mut b = ec2t::IpPermission::builder().ip_protocol(&rule.protocol).from_port(rule.from_port).to_port(rule.to_port);
    b = match &rule.source {
        Source::Cluster => {
            b.user_id_group_pairs(ec2t::UserIdGroupPair::builder().group_id(group_id).description(&rule.description).build())
        }
        Source::Cidr(c) => b.ip_ranges(ec2t::IpRange::builder().cidr_ip(c.to_string()).description(&rule.description).build()),
    };
    b.build()
}

/// AWS reports "all ports" for protocols without ports as -1 or nothing.
fn rules_of(group_id: &str, perms: &[ec2t::IpPermission]) -> Vec<SgRule> {
    let mut out = Vec::new();
    for p in perms {
        let protocol = p.ip_protocol().unwrap_or("-1").to_string();
        let (from, to) = (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
        for pair in p.user_id_group_pairs() {
            let source = if pair.group_id() == Some(group_id) { Source::Cluster } else { continue };
            out.push(SgRule {
                protocol: protocol.clone(),
                from_port: from,
                to_port: to,
                source,
                description: pair.description().unwrap_or("").into(),
            });
        }
        for range in p.ip_ranges() {
            if let Some(c) = range.cidr_ip().and_then(|c| Ipv4Cidr::parse(c).ok()) {
                out.push(SgRule {
                    protocol: protocol.clone(),
                    from_port: from,
                    to_port: to,
                    source: Source::Cidr(c),
                    description: range.description().unwrap_or("").into(),
                });
            }
        }
    }
    out
}

/// IAM is eventually consistent: a role or instance profile made a moment
/// ago can answer NoSuchEntity to the next call on it (Terraform's AWS
/// provider retries AddRoleToInstanceProfile for this,
/// hashicorp/terraform-provider-aws#6079). Such a call is tried again under
/// the one retry policy for up to `IAM_PROPAGATION`.
async fn while_iam_propagates<F, Fut>(call: F) -> CloudResult<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = CloudResult<()>>,
{
    let mut retry = Retry::new(CREATE_BACKOFF).deadline(IAM_PROPAGATION);
    loop {
        match call().await {
            Err(e) if e.code == "NoSuchEntity" => {
                if !retry.wait().await {
                    return Err(e);
                }
            }
            other => return other,
        }
    }
}

const IAM_PROPAGATION: Duration = Duration::from_secs(60);

/// How create calls wait out transient refusals: IAM's propagation of a
/// new instance profile to EC2 takes tens of seconds, throttling can last
/// longer; three minutes covers both without hanging on an outage.
const CREATE_BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(8));
const CREATE_DEADLINE: Duration = Duration::from_secs(180);

impl AwsCloud {
    /// Counts a call about to be sent (for --api-stats) and logs it (for
    /// --verbose): the operation and region only, never a request's values.
    fn count(&self, op: &'static str) {
        tracing::debug!(target: "hybrid::aws", region = %self.region, "{op}");
        *self.calls.lock().expect("call counter lock").entry(op).or_default() += 1;
    }

    /// A create call AWS does not deduplicate (CreateVpc and
    /// CreateInternetGateway take no token), made at most once per attempt:
    /// after a failure that may have happened anyway (no answer, a cut-off
    /// one, a server error), and before sending again, `find` looks for the
    /// resource an earlier attempt may have made, by the create token tagged
    /// on it in the same call. EC2 is eventually consistent, so a just-made
    /// resource can be missing from the first Describe: it looks twice,
    /// waiting between. A lost answer costs Describes, not a duplicate.
    /// Transient refusals (throttling, a new instance profile IAM has not
    /// propagated to EC2 yet, for tens of seconds) are waited out under the
    /// one retry policy, up to `CREATE_DEADLINE`.
    ///
    /// `send` is given how many tries so far were refused for what they
    /// asked (the call did not happen; throttling aside), for calls whose
    /// idempotency token must change after such a refusal.
    async fn create_once<T, S, SF, F, FF>(&self, operation: &'static str, send: S, find: F) -> CloudResult<T>
    where
        S: Fn(u32) -> SF,
        SF: std::future::Future<Output = CloudResult<T>>,
        F: Fn() -> FF,
        FF: std::future::Future<Output = CloudResult<Option<T>>>,
    {
        let mut retry = Retry::new(CREATE_BACKOFF).deadline(CREATE_DEADLINE);
        let mut refusals = 0;
        loop {
            self.count(operation);
            let e = match send(refusals).await {
                Ok(made) => return Ok(made),
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(e),
            };
            let looks = if e.may_have_happened() { 2 } else { 0 };
            // Throttling refuses before anything is looked at; a refusal
            // of the request itself (a profile EC2 does not see yet) is
            // what EC2 may remember for its token.
            if !e.may_have_happened() && !e.is_throttling() {
                refusals += 1;
            }
            if !retry.wait().await {
                return Err(e);
            }
            for look in 1..=looks {
                if let Some(made) = find().await? {
                    return Ok(made);
                }
                if look < looks && !retry.wait().await {
                    return Err(e);
                }
            }
        }
    }

    async fn image(&self, id: &str) -> CloudResult<Option<ResolvedAmi>> {
        self.count("DescribeImages");
        let out = self.ec2.describe_images().image_ids(id).send().await;
        match out {
            Ok(out) => Ok(out.images().first().map(resolved)),
            Err(e) if e.code().is_some_and(|c| c.starts_with("InvalidAMIID")) => Ok(None),
            Err(e) => Err(err("DescribeImages", e)),
        }
    }

    async fn newest_image(&self, owner: Option<&str>, name_pattern: &str) -> CloudResult<Option<ResolvedAmi>> {
        let mut req = self
            .ec2
            .describe_images()
            .filters(ec2t::Filter::builder().name("name").values(name_pattern).build())
            .filters(ec2t::Filter::builder().name("state").values("available").build());
        if let Some(o) = owner {
            req = req.owners(o);
        }
        let images: Vec<ec2t::Image> = paged!(self, "DescribeImages", req, images);
        let newest = images
            .iter()
            .filter(|i| i.architecture().is_none_or(|a| a.as_str() == "x86_64"))
            .max_by(|a, b| a.creation_date().cmp(&b.creation_date()));
        Ok(newest.map(resolved))
    }

    /// Role, inline policy and profile of `name`, as far as they exist.
    async fn find_instance_profile(&self, name: &str, policy_name: &str) -> CloudResult<Option<FoundProfile>> {
        let missing = |code: Option<&str>| code == Some("NoSuchEntity");
        self.count("GetRole");
        let role = match self.iam.get_role().role_name(name).send().await {
            Ok(_) => true,
            Err(e) if missing(e.code()) => false,
            Err(e) => return Err(err("GetRole", e)),
        };
        let policy = if role {
            self.count("GetRolePolicy");
            match self.iam.get_role_policy().role_name(name).policy_name(policy_name).send().await {
                // IAM answers the document URL-encoded.
                Ok(out) => Some(percent_decode(out.policy_document())),
                Err(e) if missing(e.code()) => None,
                Err(e) => return Err(err("GetRolePolicy", e)),
            }
        } else {
            None
        };
        self.count("GetInstanceProfile");
        let (profile, profile_has_role) = match self.iam.get_instance_profile().instance_profile_name(name).send().await {
            Ok(out) => (true, out.instance_profile().is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name))),
            Err(e) if missing(e.code()) => (false, false),
            Err(e) => return Err(err("GetInstanceProfile", e)),
        };
        Ok((role || profile).then(|| FoundProfile { name: name.to_string(), role, policy, profile, profile_has_role }))
    }

    async fn vpc_attribute(&self, vpc_id: &str, name: ec2t::VpcAttributeName) -> CloudResult<bool> {
        self.count("DescribeVpcAttribute");
        let out = self
            .ec2
            .describe_vpc_attribute()
            .vpc_id(vpc_id)
            .attribute(name.clone())
            .send()
            .await
            .map_err(|e| err("DescribeVpcAttribute", e))?;
        let value = match name {
            ec2t::VpcAttributeName::EnableDnsSupport => out.enable_dns_support(),
            _ => out.enable_dns_hostnames(),
        };
        Ok(value.and_then(|v| v.value()).unwrap_or(false))
    }

    async fn ssm_get(&self, name: &str) -> CloudResult<Option<String>> {
        self.count("GetParameter");
        match self.ssm.get_parameter().name(name).with_decryption(true).send().await {
            Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(str::to_string)),
            Err(e) if e.code() == Some("ParameterNotFound") => Ok(None),
            Err(e) => Err(err("GetParameter", e)),
        }
    }
}

impl Cloud for AwsCloud {
    async fn discover(&self, cluster: &str) -> CloudResult<Inventory> {
        // Every call that needs no other's answer goes out at once (a
        // no-op plan from far away costs the depth of this, not its length):
        // the network, the instances, IAM and SSM. Only the VPCs' attributes
        // and main route tables wait for the VPCs.
        let vpcs = async {
            let vpcs: Vec<ec2t::Vpc> = paged!(self, "DescribeVpcs", self.ec2.describe_vpcs().filters(cluster_filter(cluster)), vpcs);
            let ids: Vec<String> = vpcs.iter().map(|v| v.vpc_id().unwrap_or_default().to_string()).collect();
            let attributes = futures_util::future::try_join_all(ids.iter().map(|id| async move {
                tokio::try_join!(
                    self.vpc_attribute(id, ec2t::VpcAttributeName::EnableDnsSupport),
                    self.vpc_attribute(id, ec2t::VpcAttributeName::EnableDnsHostnames)
                )
            }));
            let tables = async {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                Ok::<_, CloudError>(paged!(
                    self,
                    "DescribeRouteTables",
                    self.ec2
                        .describe_route_tables()
                        .filters(ec2t::Filter::builder().name("vpc-id").set_values(Some(ids.clone())).build())
                        .filters(ec2t::Filter::builder().name("association.main").values("true").build()),
                    route_tables
                ))
            };
            let (attributes, tables) = tokio::try_join!(attributes, tables)?;
            let vpcs: Vec<(Vpc, String)> = vpcs
                .iter()
                .zip(attributes)
                .map(|(v, (dns_support, dns_hostnames))| {
                    let vpc = Vpc {
                        id: v.vpc_id().unwrap_or_default().to_string(),
                        cidr: v.cidr_block().and_then(|c| Ipv4Cidr::parse(c).ok()),
                        dns_support,
                        dns_hostnames,
                    };
                    (vpc, tag_value(v.tags(), TAG_EXPIRES))
                })
                .collect();
            let tables: Vec<RouteTable> = tables
                .iter()
                .map(|t| RouteTable {
                    id: t.route_table_id().unwrap_or_default().into(),
                    vpc_id: t.vpc_id().unwrap_or_default().into(),
                    default_route: t
                        .routes()
                        .iter()
                        .find(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
                        .and_then(|r| r.gateway_id())
                        .map(str::to_string),
                })
                .collect();
            Ok::<_, CloudError>((vpcs, tables))
        };
        let subnets = async {
            let subnets: Vec<ec2t::Subnet> =
                paged!(self, "DescribeSubnets", self.ec2.describe_subnets().filters(cluster_filter(cluster)), subnets);
            Ok::<_, CloudError>(
                subnets
                    .iter()
                    .map(|s| Subnet {
                        id: s.subnet_id().unwrap_or_default().into(),
                        vpc_id: s.vpc_id().unwrap_or_default().into(),
                        cidr: s.cidr_block().and_then(|c| Ipv4Cidr::parse(c).ok()),
                        map_public_ip_on_launch: s.map_public_ip_on_launch().unwrap_or(false),
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let gateways = async {
            let igws: Vec<ec2t::InternetGateway> = paged!(
                self,
                "DescribeInternetGateways",
                self.ec2.describe_internet_gateways().filters(cluster_filter(cluster)),
                internet_gateways
            );
            Ok::<_, CloudError>(
                igws.iter()
                    .map(|g| Gateway {
                        id: g.internet_gateway_id().unwrap_or_default().into(),
                        vpc_id: g.attachments().iter().find_map(|a| a.vpc_id()).map(str::to_string),
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let groups = async {
            let groups: Vec<ec2t::SecurityGroup> = paged!(
                self,
                "DescribeSecurityGroups",
                self.ec2.describe_security_groups().filters(cluster_filter(cluster)),
                security_groups
            );
            Ok::<_, CloudError>(
                groups
                    .iter()
                    .map(|g| {
                        let id = g.group_id().unwrap_or_default().to_string();
                        let pool = tag_value(g.tags(), TAG_PLAYERS);
                        let group = SecurityGroup {
                            rules: rules_of(&id, g.ip_permissions()),
                            vpc_id: g.vpc_id().unwrap_or_default().into(),
                            players_pool: (!pool.is_empty()).then_some(pool),
                            id,
                        };
                        (group, tag_value(g.tags(), TAG_EXPIRES))
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let instances = async {
            let reservations: Vec<ec2t::Reservation> = paged!(
                self,
                "DescribeInstances",
                self.ec2.describe_instances().filters(cluster_filter(cluster)).filters(live_states()).max_results(1000),
                reservations
            );
            Ok::<_, CloudError>(
                reservations
                    .iter()
                    .flat_map(|r| r.instances())
                    .map(|i| {
                        let tags = i.tags();
                        let instance = Instance {
                            id: i.instance_id().unwrap_or_default().into(),
                            slot: tag_value(tags, TAG_SLOT),
                            group: tag_value(tags, TAG_POOL),
                            spec_hash: tag_value(tags, TAG_SPEC_HASH),
                            kubernetes_version: tag_value(tags, TAG_KUBERNETES),
                            cni: tag_value(tags, TAG_CNI),
                            state: i.state().and_then(|s| s.name()).map_or("unknown".into(), |s| s.as_str().to_string()),
                            instance_type: i.instance_type().map_or(String::new(), |t| t.as_str().to_string()),
                            image_id: i.image_id().unwrap_or_default().into(),
                            private_ip: i.private_ip_address().map(str::to_string),
                            private_dns: i.private_dns_name().map(str::to_string),
                            public_ip: i.public_ip_address().map(str::to_string),
                            vpc_id: i.vpc_id().map(str::to_string),
                            subnet_id: i.subnet_id().map(str::to_string),
                            instance_profile: i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_string),
                            security_groups: i.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_string).collect(),
                            launch_time: i
                                .launch_time()
                                .map_or(String::new(), |t| t.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_default()),
                        };
                        (instance, tag_value(tags, TAG_EXPIRES))
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let profiles = futures_util::future::try_join_all(
            instance_profiles(cluster, &self.region)
                .into_iter()
                .map(|p| async move { self.find_instance_profile(&p.name, &p.policy_name).await }),
        );
        let parameters = async {
            let prefix = parameter_prefix(cluster);
            let lock = lock_parameter_prefix(cluster);
            let mut pages = self.ssm.get_parameters_by_path().path(&prefix).recursive(true).with_decryption(false).into_paginator().send();
            let mut names = BTreeSet::new();
            while let Some(page) = pages.next().await {
                self.count("GetParametersByPath");
                let page = page.map_err(|e| err("GetParametersByPath", e))?;
                names.extend(page.parameters().iter().filter_map(|p| p.name()).filter(|n| !n.starts_with(&lock)).map(str::to_string));
            }
            Ok::<_, CloudError>(names)
        };
        let ((vpcs, route_tables), subnets, internet_gateways, groups, instances, profiles, parameters) =
            tokio::try_join!(vpcs, subnets, gateways, groups, instances, profiles, parameters)?;
        // Every resource of a cluster carries the same expiry; any one will do.
        let expires = vpcs
            .iter()
            .map(|(_, e)| e)
            .chain(groups.iter().map(|(_, e)| e))
            .chain(instances.iter().map(|(_, e)| e))
            .find(|e| !e.is_empty())
            .cloned();
        Ok(Inventory {
            vpcs: vpcs.into_iter().map(|(v, _)| v).collect(),
            subnets,
            internet_gateways,
            route_tables,
            security_groups: groups.into_iter().map(|(g, _)| g).collect(),
            instance_profiles: profiles.into_iter().flatten().collect(),
            parameters,
            instances: instances.into_iter().map(|(i, _)| i).collect(),
            expires,
        })
    }

    async fn resolve_ami(&self, lookup: &AmiLookup, over: Option<&AmiRef>) -> CloudResult<ResolvedAmi> {
        match over {
            Some(AmiRef::Id(id)) => self.image(id).await?.ok_or_else(|| {
                CloudError::new("DescribeImages", "InvalidAMIID.NotFound", format!("image {id} does not exist in this region"))
            }),
            Some(AmiRef::Name(pattern)) => self.newest_image(None, pattern).await?.ok_or_else(|| {
                CloudError::new("DescribeImages", "NoMatchingImage", format!("no available x86_64 image is named like {pattern:?}"))
            }),
            None => {
                // The public SSM parameter is the stable, one-call way; it is
                // missing in some regions and in emulators, so fall back to
                // the newest image of the official owner by name.
                if let Some(id) = self.ssm_get(lookup.ssm_parameter).await?
                    && let Some(image) = self.image(&id).await?
                {
                    return Ok(image);
                }
                self.newest_image(Some(lookup.owner), lookup.name_pattern).await?.ok_or_else(|| {
                    CloudError::new(
                        "DescribeImages",
                        "NoMatchingImage",
                        format!("neither {} nor an image named like {} exists", lookup.ssm_parameter, lookup.name_pattern),
                    )
                })
            }
        }
    }

    async fn create_vpc(&self, cidr: Ipv4Cidr, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        let id = self
            .create_once(
                "CreateVpc",
                |_| async {
                    let out = self
                        .ec2
                        .create_vpc()
                        .cidr_block(cidr.to_string())
                        .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::Vpc], tags)))
                        .customize()
                        .config_override(no_retries())
                        .send()
                        .await
                        .map_err(|e| err("CreateVpc", e))?;
                    Ok(out.vpc().and_then(|v| v.vpc_id()).unwrap_or_default().to_string())
                },
                || async {
                    let vpcs: Vec<ec2t::Vpc> = paged!(self, "DescribeVpcs", self.ec2.describe_vpcs().filters(token_filter(tags)), vpcs);
                    Ok(vpcs.first().and_then(|v| v.vpc_id()).map(str::to_string))
                },
            )
            .await?;
        // Private DNS names (the node names) need DNS hostnames on.
        self.set_attribute(&id, Attribute::EnableDnsHostnames, true).await?;
        Ok(id)
    }

    async fn create_subnet(&self, vpc_id: &str, cidr: Ipv4Cidr, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        self.count("CreateSubnet");
        let out = self
            .ec2
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(cidr.to_string())
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::Subnet], tags)))
            .send()
            .await;
        let id = match out {
            Ok(out) => out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default().to_string(),
            // A retry after a lost answer: the first attempt made it. Ours
            // if it carries the cluster's tag; anyone else's is a conflict.
            Err(e) if e.code() == Some("InvalidSubnet.Conflict") => {
                let found: Vec<ec2t::Subnet> = paged!(
                    self,
                    "DescribeSubnets",
                    self.ec2
                        .describe_subnets()
                        .filters(ec2t::Filter::builder().name("vpc-id").values(vpc_id).build())
                        .filters(ec2t::Filter::builder().name("cidr-block").values(cidr.to_string()).build()),
                    subnets
                );
                let ours = found
                    .iter()
                    .find(|s| tags.get(TAG_CLUSTER).is_some_and(|c| tag_value(s.tags(), TAG_CLUSTER) == *c))
                    .and_then(|s| s.subnet_id());
                match ours {
                    Some(id) => id.to_string(),
                    None => return Err(err("CreateSubnet", e)),
                }
            }
            Err(e) => return Err(err("CreateSubnet", e)),
        };
        // Nodes download containerd, kubelet and images at boot.
        self.set_attribute(&id, Attribute::MapPublicIpOnLaunch, true).await?;
        Ok(id)
    }

    async fn create_internet_gateway(&self, vpc_id: &str, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        let id = self
            .create_once(
                "CreateInternetGateway",
                |_| async {
                    let out = self
                        .ec2
                        .create_internet_gateway()
                        .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::InternetGateway], tags)))
                        .customize()
                        .config_override(no_retries())
                        .send()
                        .await
                        .map_err(|e| err("CreateInternetGateway", e))?;
                    Ok(out.internet_gateway().and_then(|g| g.internet_gateway_id()).unwrap_or_default().to_string())
                },
                || async {
                    let found: Vec<ec2t::InternetGateway> = paged!(
                        self,
                        "DescribeInternetGateways",
                        self.ec2.describe_internet_gateways().filters(token_filter(tags)),
                        internet_gateways
                    );
                    Ok(found.first().and_then(|g| g.internet_gateway_id()).map(str::to_string))
                },
            )
            .await?;
        self.attach_internet_gateway(&id, vpc_id).await?;
        Ok(id)
    }

    async fn set_attribute(&self, id: &str, attribute: Attribute, value: bool) -> CloudResult<()> {
        let on = || ec2t::AttributeBooleanValue::builder().value(value).build();
        if attribute.on_subnet() {
            self.count("ModifySubnetAttribute");
            self.ec2
                .modify_subnet_attribute()
                .subnet_id(id)
                .map_public_ip_on_launch(on())
                .send()
                .await
                .map_err(|e| err("ModifySubnetAttribute", e))?;
        } else {
            self.count("ModifyVpcAttribute");
            let call = self.ec2.modify_vpc_attribute().vpc_id(id);
            // AWS takes one attribute per call.
            let call = match attribute {
                Attribute::EnableDnsSupport => call.enable_dns_support(on()),
                _ => call.enable_dns_hostnames(on()),
            };
            call.send().await.map_err(|e| err("ModifyVpcAttribute", e))?;
        }
        Ok(())
    }

    async fn attach_internet_gateway(&self, igw_id: &str, vpc_id: &str) -> CloudResult<()> {
        self.count("AttachInternetGateway");
        done_unless(
            "AttachInternetGateway",
            self.ec2.attach_internet_gateway().internet_gateway_id(igw_id).vpc_id(vpc_id).send().await,
            "Resource.AlreadyAssociated",
        )
    }

    async fn create_default_route(&self, vpc_id: &str, igw_id: &str) -> CloudResult<()> {
        let tables: Vec<ec2t::RouteTable> = paged!(
            self,
            "DescribeRouteTables",
            self.ec2
                .describe_route_tables()
                .filters(ec2t::Filter::builder().name("vpc-id").values(vpc_id).build())
                .filters(ec2t::Filter::builder().name("association.main").values("true").build()),
            route_tables
        );
        let table = tables
            .first()
            .and_then(|t| t.route_table_id())
            .ok_or_else(|| CloudError::new("DescribeRouteTables", "NoMainRouteTable", format!("{vpc_id} has no main route table")))?;
        self.count("CreateRoute");
        match self.ec2.create_route().route_table_id(table).destination_cidr_block("0.0.0.0/0").gateway_id(igw_id).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("RouteAlreadyExists") => {
                self.count("ReplaceRoute");
                self.ec2
                    .replace_route()
                    .route_table_id(table)
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id(igw_id)
                    .send()
                    .await
                    .map_err(|e| err("ReplaceRoute", e))?;
                Ok(())
            }
            Err(e) => Err(err("CreateRoute", e)),
        }
    }

    async fn create_security_group(&self, name: &str, vpc_id: &str, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        self.count("CreateSecurityGroup");
        let out = self
            .ec2
            .create_security_group()
            .group_name(name)
            .description("hybrid cluster nodes: only the ports Kubernetes, the CNI and admins need")
            .vpc_id(vpc_id)
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::SecurityGroup], tags)))
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.group_id().unwrap_or_default().to_string()),
            // A retry after a lost answer: names are unique per VPC, so the
            // group of this name in this VPC is the one the first attempt made.
            Err(e) if e.code() == Some("InvalidGroup.Duplicate") => {
                let found: Vec<ec2t::SecurityGroup> = paged!(
                    self,
                    "DescribeSecurityGroups",
                    self.ec2
                        .describe_security_groups()
                        .filters(ec2t::Filter::builder().name("vpc-id").values(vpc_id).build())
                        .filters(ec2t::Filter::builder().name("group-name").values(name).build()),
                    security_groups
                );
                let ours = found
                    .iter()
                    .find(|g| tags.get(TAG_CLUSTER).is_some_and(|c| tag_value(g.tags(), TAG_CLUSTER) == *c))
                    .and_then(|g| g.group_id());
                ours.map(str::to_string).ok_or_else(|| err("CreateSecurityGroup", e))
            }
            Err(e) => Err(err("CreateSecurityGroup", e)),
        }
    }

    async fn ensure_instance_profile(&self, profile: &InstanceProfile, tags: &BTreeMap<String, String>) -> CloudResult<()> {
        let iam_tags = || {
            tags.iter()
                .filter(|(k, _)| k.as_str() != TAG_CREATE_TOKEN)
                .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build().expect("key and value are set"))
                .collect::<Vec<_>>()
        };
        let name = profile.name.as_str();
        // The role and the profile wait for nothing of each other; the
        // policy and the profile's role each wait only for the role (and the
        // profile): two round trips instead of four.
        let role = async {
            self.count("CreateRole");
            let created = self
                .iam
                .create_role()
                .role_name(name)
                .path(&profile.path)
                .assume_role_policy_document(ec2_trust_policy())
                .description(format!("hybrid nodes: {}", profile.allows))
                .set_tags(Some(iam_tags()))
                .send()
                .await;
            done_unless("CreateRole", created, "EntityAlreadyExists")
        };
        let instance_profile = async {
            self.count("CreateInstanceProfile");
            let created =
                self.iam.create_instance_profile().instance_profile_name(name).path(&profile.path).set_tags(Some(iam_tags())).send().await;
            done_unless("CreateInstanceProfile", created, "EntityAlreadyExists")
        };
        tokio::try_join!(role, instance_profile)?;
        // Always put: a hand-widened policy goes back to exactly this one.
        let policy = while_iam_propagates(|| async {
            self.count("PutRolePolicy");
            self.iam
                .put_role_policy()
                .role_name(name)
                .policy_name(&profile.policy_name)
                .policy_document(&profile.policy)
                .send()
                .await
                .map(drop)
                .map_err(|e| err("PutRolePolicy", e))
        });
        let add_role = while_iam_propagates(|| async {
            self.count("AddRoleToInstanceProfile");
            // A profile holds one role: "limit exceeded" means it already has ours.
            match self.iam.add_role_to_instance_profile().instance_profile_name(name).role_name(name).send().await {
                Ok(_) => Ok(()),
                Err(e) if matches!(e.code(), Some("LimitExceeded" | "EntityAlreadyExists")) => Ok(()),
                Err(e) => Err(err("AddRoleToInstanceProfile", e)),
            }
        });
        tokio::try_join!(policy, add_role)?;
        Ok(())
    }

    async fn delete_instance_profile(&self, name: &str) -> CloudResult<()> {
        // Remove only the roles the profile holds (a rerun after a kill may
        // find it empty already).
        let missing = |code: Option<&str>| code == Some("NoSuchEntity");
        self.count("GetInstanceProfile");
        let has_role = match self.iam.get_instance_profile().instance_profile_name(name).send().await {
            Ok(out) => out.instance_profile().is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name)),
            Err(e) if missing(e.code()) => false,
            Err(e) => return Err(err("GetInstanceProfile", e)),
        };
        if has_role {
            self.count("RemoveRoleFromInstanceProfile");
            done_unless(
                "RemoveRoleFromInstanceProfile",
                self.iam.remove_role_from_instance_profile().instance_profile_name(name).role_name(name).send().await,
                "NoSuchEntity",
            )?;
        }
        self.count("DeleteInstanceProfile");
        done_unless("DeleteInstanceProfile", self.iam.delete_instance_profile().instance_profile_name(name).send().await, "NoSuchEntity")?;
        // Every inline policy the role has (a role from an older hybrid may
        // carry another name than today's).
        self.count("ListRolePolicies");
        let policies = match self.iam.list_role_policies().role_name(name).send().await {
            Ok(out) => out.policy_names().to_vec(),
            Err(e) if missing(e.code()) => Vec::new(),
            Err(e) => return Err(err("ListRolePolicies", e)),
        };
        for policy in policies {
            self.count("DeleteRolePolicy");
            done_unless(
                "DeleteRolePolicy",
                self.iam.delete_role_policy().role_name(name).policy_name(&policy).send().await,
                "NoSuchEntity",
            )?;
        }
        self.count("DeleteRole");
        done_unless("DeleteRole", self.iam.delete_role().role_name(name).send().await, "NoSuchEntity")
    }

    async fn authorize_ingress(&self, group_id: &str, rules: &[SgRule]) -> CloudResult<()> {
        if rules.is_empty() {
            return Ok(());
        }
        self.count("AuthorizeSecurityGroupIngress");
        let perms = rules.iter().map(|r| permission(r, group_id)).collect();
        // A retried call whose first attempt went through.
        done_unless(
            "AuthorizeSecurityGroupIngress",
            self.ec2.authorize_security_group_ingress().group_id(group_id).set_ip_permissions(Some(perms)).send().await,
            "InvalidPermission.Duplicate",
        )
    }

    async fn revoke_ingress(&self, group_id: &str, rules: &[SgRule]) -> CloudResult<()> {
        if rules.is_empty() {
            return Ok(());
        }
        self.count("RevokeSecurityGroupIngress");
        let perms = rules.iter().map(|r| permission(r, group_id)).collect();
        done_unless(
            "RevokeSecurityGroupIngress",
            self.ec2.revoke_security_group_ingress().group_id(group_id).set_ip_permissions(Some(perms)).send().await,
            "InvalidPermission.NotFound",
        )
    }

    async fn offered_instance_types(&self, types: &[String]) -> CloudResult<BTreeSet<String>> {
        let mut offered = BTreeSet::new();
        let mut pages = self
            .ec2
            .describe_instance_type_offerings()
            .location_type(ec2t::LocationType::Region)
            .filters(ec2t::Filter::builder().name("instance-type").set_values(Some(types.to_vec())).build())
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            self.count("DescribeInstanceTypeOfferings");
            let page = page.map_err(|e| err("DescribeInstanceTypeOfferings", e))?;
            offered.extend(page.instance_type_offerings().iter().filter_map(|o| o.instance_type()).map(|t| t.as_str().to_string()));
        }
        Ok(offered)
    }

    async fn subnet_zone(&self, subnet_id: &str) -> CloudResult<Option<String>> {
        self.count("DescribeSubnets");
        let out = self.ec2.describe_subnets().subnet_ids(subnet_id).send().await.map_err(|e| err("DescribeSubnets", e))?;
        Ok(out.subnets().first().and_then(|s| s.availability_zone()).map(str::to_string))
    }

    async fn run_instance(&self, r: &LaunchRequest) -> CloudResult<Launched> {
        let volume = ec2t::EbsBlockDevice::builder()
            .volume_size(r.disk_gb as i32)
            .volume_type(ec2t::VolumeType::Gp3)
            .encrypted(true)
            .delete_on_termination(true)
            .build();
        let mut req = self
            .ec2
            .run_instances()
            .image_id(&r.ami.id)
            .instance_type(ec2t::InstanceType::from(r.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(&r.subnet_id)
            .set_security_group_ids(Some(r.security_group_ids.clone()))
            .user_data(base64::engine::general_purpose::STANDARD.encode(&r.user_data))
            .client_token(&r.client_token)
            // IMDSv2 only; hop limit 1 keeps pods in their own network
            // namespace away from the node's credentials.
            .metadata_options(
                ec2t::InstanceMetadataOptionsRequest::builder()
                    .http_tokens(ec2t::HttpTokensState::Required)
                    .http_endpoint(ec2t::InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .block_device_mappings(ec2t::BlockDeviceMapping::builder().device_name(&r.ami.root_device).ebs(volume).build())
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::Instance, ec2t::ResourceType::Volume], &r.tags)));
        if let Some(ip) = r.private_ip {
            req = req.private_ip_address(ip.to_string());
        }
        if let Some(k) = &r.key_name {
            req = req.key_name(k);
        }
        if let Some(p) = &r.instance_profile {
            req = req.iam_instance_profile(ec2t::IamInstanceProfileSpecification::builder().name(p).build());
        }
        if r.spot {
            req = req.instance_market_options(ec2t::InstanceMarketOptionsRequest::builder().market_type(ec2t::MarketType::Spot).build());
        }
        let launched = std::sync::Mutex::new(None);
        let id = self
            .create_once(
                "RunInstances",
                |refusals| {
                    let (req, launched) = (&req, &launched);
                    async move {
                        // After a definite refusal nothing was launched, and EC2
                        // may answer a token it has seen fail with that failure
                        // again: the next try gets a token of its own. After an
                        // answer that may have been lost, the same token, so EC2
                        // deduplicates (create_once looked for the instance first).
                        let attempt = match refusals {
                            0 => req.clone(),
                            n => req.clone().client_token(format!("{}-{n}", r.client_token)),
                        };
                        let out = attempt.customize().config_override(no_retries()).send().await.map_err(|e| err("RunInstances", e))?;
                        let first = out.instances().first();
                        *launched.lock().expect("launch lock") = first.and_then(|i| i.private_dns_name()).map(str::to_string);
                        Ok(first.and_then(|i| i.instance_id()).unwrap_or_default().to_string())
                    }
                },
                || async {
                    let reservations: Vec<ec2t::Reservation> =
                        paged!(self, "DescribeInstances", self.ec2.describe_instances().filters(token_filter(&r.tags)), reservations);
                    let found = reservations.iter().flat_map(|r| r.instances()).next();
                    *launched.lock().expect("launch lock") = found.and_then(|i| i.private_dns_name()).map(str::to_string);
                    Ok(found.and_then(|i| i.instance_id()).map(str::to_string))
                },
            )
            .await?;
        let private_dns = launched.into_inner().expect("launch lock").filter(|d| !d.is_empty());
        Ok(Launched { id, private_dns })
    }

    async fn terminate_instances(&self, ids: &[String]) -> CloudResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.count("TerminateInstances");
        done_unless(
            "TerminateInstances",
            self.ec2.terminate_instances().set_instance_ids(Some(ids.to_vec())).send().await,
            "InvalidInstanceID.NotFound",
        )
    }

    async fn start_instances(&self, ids: &[String]) -> CloudResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.count("StartInstances");
        self.ec2.start_instances().set_instance_ids(Some(ids.to_vec())).send().await.map_err(|e| err("StartInstances", e))?;
        Ok(())
    }

    async fn not_terminated(&self, ids: &[String]) -> CloudResult<Vec<String>> {
        Ok(self.instance_states(ids).await?.into_iter().filter(|(_, state)| state != "terminated").map(|(id, _)| id).collect())
    }

    async fn delete_security_group(&self, id: &str) -> CloudResult<()> {
        self.count("DeleteSecurityGroup");
        done_unless("DeleteSecurityGroup", self.ec2.delete_security_group().group_id(id).send().await, "InvalidGroup.NotFound")
    }

    async fn delete_internet_gateway(&self, id: &str) -> CloudResult<()> {
        self.count("DescribeInternetGateways");
        let out = self.ec2.describe_internet_gateways().internet_gateway_ids(id).send().await;
        if let Ok(out) = out {
            for g in out.internet_gateways() {
                for a in g.attachments() {
                    if let Some(vpc) = a.vpc_id() {
                        self.count("DetachInternetGateway");
                        match self.ec2.detach_internet_gateway().internet_gateway_id(id).vpc_id(vpc).send().await {
                            Ok(_) => {}
                            Err(e) if e.code() == Some("Gateway.NotAttached") => {}
                            Err(e) => return Err(err("DetachInternetGateway", e)),
                        }
                    }
                }
            }
        }
        self.count("DeleteInternetGateway");
        done_unless(
            "DeleteInternetGateway",
            self.ec2.delete_internet_gateway().internet_gateway_id(id).send().await,
            "InvalidInternetGatewayID.NotFound",
        )
    }

    async fn delete_subnet(&self, id: &str) -> CloudResult<()> {
        self.count("DeleteSubnet");
        done_unless("DeleteSubnet", self.ec2.delete_subnet().subnet_id(id).send().await, "InvalidSubnetID.NotFound")
    }

    async fn delete_vpc(&self, id: &str) -> CloudResult<()> {
        self.count("DeleteVpc");
        done_unless("DeleteVpc", self.ec2.delete_vpc().vpc_id(id).send().await, "InvalidVpcID.NotFound")
    }

    async fn get_parameter(&self, name: &str) -> CloudResult<Option<String>> {
        self.ssm_get(name).await
    }

    async fn create_parameter(&self, name: &str, value: &str, secure: bool, tags: &BTreeMap<String, String>) -> CloudResult<bool> {
        self.count("PutParameter");
        let tags: Vec<ssmt::Tag> =
            tags.iter().map(|(k, v)| ssmt::Tag::builder().key(k).value(v).build().expect("key and value are set")).collect();
        let res = self
            .ssm
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(if secure { ssmt::ParameterType::SecureString } else { ssmt::ParameterType::String })
            .overwrite(false)
            .set_tags(Some(tags))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ParameterAlreadyExists") => Ok(false),
            Err(e) => Err(err("PutParameter", e)),
        }
    }

    async fn put_parameter(&self, name: &str, value: &str, tags: &BTreeMap<String, String>) -> CloudResult<()> {
        // SSM takes tags only when it creates (PutParameter refuses Tags
        // with Overwrite), so: create, else overwrite.
        if self.create_parameter(name, value, true, tags).await? {
            return Ok(());
        }
        self.count("PutParameter");
        let res = self.ssm.put_parameter().name(name).value(value).r#type(ssmt::ParameterType::SecureString).overwrite(true).send().await;
        res.map(drop).map_err(|e| err("PutParameter", e))
    }

    async fn delete_parameter(&self, name: &str) -> CloudResult<()> {
        self.count("DeleteParameter");
        done_unless("DeleteParameter", self.ssm.delete_parameter().name(name).send().await, "ParameterNotFound")
    }

    async fn locks(&self, cluster: &str) -> CloudResult<Vec<(u64, LockInfo)>> {
        let prefix = lock_parameter_prefix(cluster);
        let mut pages = self.ssm.get_parameters_by_path().path(&prefix).recursive(true).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            self.count("GetParametersByPath");
            for p in page.map_err(|e| err("GetParametersByPath", e))?.parameters() {
                let Some(epoch) = p.name().and_then(|n| n.strip_prefix(&prefix)).and_then(|n| n.parse::<u64>().ok()) else { continue };
                let v: serde_json::Value = serde_json::from_str(p.value().unwrap_or_default()).unwrap_or_default();
                let field = |k: &str| v[k].as_str().map(str::to_string);
                let written = p
                    .last_modified_date()
                    .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
                    .unwrap_or_else(|| "unknown".into());
                out.push((
                    epoch,
                    LockInfo {
                        owner: field("owner").unwrap_or_else(|| "unknown".into()),
                        run_id: field("run_id").unwrap_or_else(|| "unknown".into()),
                        created: field("created").unwrap_or(written),
                        expires: field("expires").unwrap_or_default(),
                    },
                ));
            }
        }
        out.sort_by_key(|(e, _)| *e);
        Ok(out)
    }

    async fn create_lock(&self, cluster: &str, epoch: u64, lock: &LockInfo) -> CloudResult<bool> {
        let name = lock_parameter_name(cluster, epoch);
        let value =
            serde_json::json!({ "owner": lock.owner, "run_id": lock.run_id, "created": lock.created, "expires": lock.expires }).to_string();
        self.count("PutParameter");
        match self.ssm.put_parameter().name(&name).value(value).r#type(ssmt::ParameterType::String).overwrite(false).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ParameterAlreadyExists") => Ok(false),
            Err(e) => Err(err("PutParameter", e)),
        }
    }

    async fn delete_lock(&self, cluster: &str, epoch: u64) -> CloudResult<()> {
        self.delete_parameter(&lock_parameter_name(cluster, epoch)).await
    }

    async fn renew_lock(&self, cluster: &str, epoch: u64, lock: &LockInfo) -> CloudResult<()> {
        let value =
            serde_json::json!({ "owner": lock.owner, "run_id": lock.run_id, "created": lock.created, "expires": lock.expires }).to_string();
        self.count("PutParameter");
        self.ssm
            .put_parameter()
            .name(lock_parameter_name(cluster, epoch))
            .value(value)
            .r#type(ssmt::ParameterType::String)
            .overwrite(true)
            .send()
            .await
            .map_err(|e| err("PutParameter", e))?;
        Ok(())
    }

    async fn clusters(&self) -> CloudResult<Vec<FoundCluster>> {
        // The network resources that exist (Describe calls, not DescribeTags,
        // which may still answer for deleted resources) find half-destroyed
        // clusters too: a crash past DeleteSecurityGroup leaves the VPC,
        // subnet and gateway. Every list waits for nothing else, so all are
        // asked at once; each parameter's and role's tags follow, at once.
        let tagged = || ec2t::Filter::builder().name("tag-key").values(TAG_CLUSTER).build();
        let (vpcs, subnets, gateways, groups, reservations, parameters, roles) = tokio::try_join!(
            async { Ok::<_, CloudError>(paged!(self, "DescribeVpcs", self.ec2.describe_vpcs().filters(tagged()), vpcs)) },
            async { Ok(paged!(self, "DescribeSubnets", self.ec2.describe_subnets().filters(tagged()), subnets)) },
            async {
                Ok(paged!(self, "DescribeInternetGateways", self.ec2.describe_internet_gateways().filters(tagged()), internet_gateways))
            },
            async { Ok(paged!(self, "DescribeSecurityGroups", self.ec2.describe_security_groups().filters(tagged()), security_groups)) },
            // The instances: every one not terminated, with what `list` shows.
            async {
                Ok(paged!(
                    self,
                    "DescribeInstances",
                    self.ec2.describe_instances().filters(tagged()).filters(
                        ec2t::Filter::builder()
                            .name("instance-state-name")
                            .values("pending")
                            .values("running")
                            .values("stopping")
                            .values("stopped")
                            .build()
                    ),
                    reservations
                ))
            },
            // The SSM side: secrets (tagged with the expiry) and lock epochs.
            async {
                let mut pages = self.ssm.get_parameters_by_path().path("/hybrid/").recursive(true).into_paginator().send();
                let mut names = Vec::new();
                while let Some(page) = pages.next().await {
                    self.count("GetParametersByPath");
                    let page = page.map_err(|e| err("GetParametersByPath", e))?;
                    names.extend(page.parameters().iter().filter_map(|p| p.name()).map(str::to_string));
                }
                Ok(names)
            },
            // IAM: the control plane roles under /hybrid/<region>/<cluster>/.
            async {
                let mut pages = self.iam.list_roles().path_prefix(iam_path_prefix(&self.region)).into_paginator().send();
                let mut roles = Vec::new();
                while let Some(page) = pages.next().await {
                    self.count("ListRoles");
                    let page = page.map_err(|e| err("ListRoles", e))?;
                    roles.extend(page.roles().iter().map(|r| (r.role_name().to_string(), r.path().to_string())));
                }
                Ok(roles)
            },
        )?;

        let mut found: BTreeMap<String, FoundCluster> = BTreeMap::new();
        let mut note = |kind: &str, tags: &[ec2t::Tag]| {
            let tag = |k: &str| tags.iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).unwrap_or_default().to_string();
            let cluster = tag(TAG_CLUSTER);
            if cluster.is_empty() {
                return;
            }
            let f = found.entry(cluster.clone()).or_insert_with(|| FoundCluster::named(&cluster));
            f.merge_expiry(&tag(TAG_EXPIRES));
            f.left.insert(kind.to_string());
            let owner = tag(TAG_OWNER);
            if !owner.is_empty() {
                f.owner.get_or_insert(owner);
            }
        };
        vpcs.iter().for_each(|v| note("vpc", v.tags()));
        subnets.iter().for_each(|s| note("subnet", s.tags()));
        gateways.iter().for_each(|g| note("internet-gateway", g.tags()));
        groups.iter().for_each(|g| note("security-group", g.tags()));
        for i in reservations.iter().flat_map(|r| r.instances()) {
            let tag = |k: &str| i.tags().iter().find(|t| t.key() == Some(k)).and_then(|t| t.value()).unwrap_or_default().to_string();
            let cluster = tag(TAG_CLUSTER);
            if cluster.is_empty() {
                continue;
            }
            let f = found.entry(cluster.clone()).or_insert_with(|| FoundCluster::named(&cluster));
            f.merge_expiry(&tag(TAG_EXPIRES));
            let owner = tag(TAG_OWNER);
            if !owner.is_empty() {
                f.owner.get_or_insert(owner);
            }
            f.instances.push(FoundInstance {
                slot: tag(TAG_SLOT),
                pool: tag(TAG_POOL),
                windows: i.platform().is_some_and(|p| p.as_str().eq_ignore_ascii_case("windows")),
                instance_type: i.instance_type().map(|t| t.as_str().to_string()).unwrap_or_default(),
                state: i.state().and_then(|s| s.name()).map(|s| s.as_str().to_string()).unwrap_or_default(),
                spot: i.instance_lifecycle().is_some_and(|l| l.as_str() == "spot"),
                launch_time: i.launch_time().and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()).unwrap_or_default(),
            });
        }

        // Which cluster each parameter and role belongs to, and the expiry
        // tags of those that carry one (all but lock epochs), at once.
        let parameters: Vec<(String, String, bool)> = parameters
            .into_iter()
            .filter_map(|name| {
                let cluster = name.strip_prefix("/hybrid/").and_then(|rest| rest.split('/').next()).filter(|c| !c.is_empty())?.to_string();
                let is_lock = name.starts_with(&lock_parameter_prefix(&cluster));
                Some((name, cluster, is_lock))
            })
            .collect();
        let roles: Vec<(String, String)> = roles
            .into_iter()
            .filter_map(|(role, path)| {
                let cluster =
                    path.strip_prefix(&iam_path_prefix(&self.region)).map(|p| p.trim_end_matches('/')).filter(|c| !c.is_empty())?;
                Some((role, cluster.to_string()))
            })
            .collect();
        let (parameter_expiries, role_expiries) = tokio::try_join!(
            futures_util::future::try_join_all(parameters.iter().map(|(name, _, is_lock)| async move {
                if *is_lock {
                    return Ok(None);
                }
                self.count("ListTagsForResource");
                let tags = self
                    .ssm
                    .list_tags_for_resource()
                    .resource_type(ssmt::ResourceTypeForTagging::Parameter)
                    .resource_id(name)
                    .send()
                    .await
                    .map_err(|e| err("ListTagsForResource", e))?;
                Ok::<_, CloudError>(tags.tag_list().iter().find(|t| t.key() == TAG_EXPIRES).map(|t| t.value().to_string()))
            })),
            futures_util::future::try_join_all(roles.iter().map(|(role, _)| async move {
                self.count("ListRoleTags");
                let tags = self.iam.list_role_tags().role_name(role).send().await.map_err(|e| err("ListRoleTags", e))?;
                Ok::<_, CloudError>(tags.tags().iter().find(|t| t.key() == TAG_EXPIRES).map(|t| t.value().to_string()))
            })),
        )?;
        for ((name, cluster, is_lock), expiry) in parameters.iter().zip(parameter_expiries) {
            let f = found.entry(cluster.clone()).or_insert_with(|| FoundCluster { only_lock: *is_lock, ..FoundCluster::named(cluster) });
            f.left.insert(if *is_lock {
                "lock".into()
            } else if name.ends_with("/secrets") {
                "secrets".into()
            } else {
                "parameter".into()
            });
            if !is_lock {
                f.only_lock = false;
            }
            if let Some(e) = expiry {
                f.merge_expiry(&e);
            }
        }
        for ((_, cluster), expiry) in roles.iter().zip(role_expiries) {
            let f = found.entry(cluster.clone()).or_insert_with(|| FoundCluster::named(cluster));
            f.only_lock = false;
            f.left.insert("role".into());
            if let Some(e) = expiry {
                f.merge_expiry(&e);
            }
        }
        Ok(found.into_values().collect())
    }

    async fn baked_images(&self) -> CloudResult<Vec<BakedImage>> {
        let images: Vec<ec2t::Image> = paged!(
            self,
            "DescribeImages",
            self.ec2.describe_images().owners("self").filters(ec2t::Filter::builder().name("tag-key").values(TAG_BAKE_KEY).build()),
            images
        );
        Ok(images
            .iter()
            .map(|i| {
                let volumes: Vec<&ec2t::EbsBlockDevice> = i.block_device_mappings().iter().filter_map(|m| m.ebs()).collect();
                BakedImage {
                    id: i.image_id().unwrap_or_default().into(),
                    name: i.name().unwrap_or_default().into(),
                    key: tag_value(i.tags(), TAG_BAKE_KEY),
                    line: tag_value(i.tags(), TAG_BAKE_LINE),
                    state: i.state().map_or("unknown".into(), |s| s.as_str().to_string()),
                    created: i.creation_date().unwrap_or_default().into(),
                    size_gb: volumes.iter().filter_map(|v| v.volume_size()).map(|s| s as u32).max().unwrap_or(0),
                    snapshots: volumes.iter().filter_map(|v| v.snapshot_id()).map(str::to_string).collect(),
                    root_device: i.root_device_name().unwrap_or("/dev/sda1").into(),
                }
            })
            .collect())
    }

    async fn bake_builders(&self) -> CloudResult<Vec<Builder>> {
        let reservations: Vec<ec2t::Reservation> = paged!(
            self,
            "DescribeInstances",
            self.ec2
                .describe_instances()
                .filters(ec2t::Filter::builder().name("tag-key").values(TAG_BAKE_BUILDER).build())
                .filters(live_states()),
            reservations
        );
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| Builder {
                id: i.instance_id().unwrap_or_default().to_string(),
                key: tag_value(i.tags(), TAG_BAKE_KEY),
                state: i.state().and_then(|s| s.name()).map_or("unknown".into(), |s| s.as_str().to_string()),
                expires: tag_value(i.tags(), TAG_EXPIRES),
            })
            .collect())
    }

    async fn default_network(&self) -> CloudResult<Option<(String, String)>> {
        let vpcs: Vec<ec2t::Vpc> = paged!(
            self,
            "DescribeVpcs",
            self.ec2.describe_vpcs().filters(ec2t::Filter::builder().name("is-default").values("true").build()),
            vpcs
        );
        let Some(vpc) = vpcs.first().and_then(|v| v.vpc_id()).map(str::to_string) else { return Ok(None) };
        let subnets: Vec<ec2t::Subnet> = paged!(
            self,
            "DescribeSubnets",
            self.ec2
                .describe_subnets()
                .filters(ec2t::Filter::builder().name("vpc-id").values(&vpc).build())
                .filters(ec2t::Filter::builder().name("default-for-az").values("true").build()),
            subnets
        );
        let mut ids: Vec<&str> = subnets.iter().filter_map(|s| s.subnet_id()).collect();
        ids.sort();
        let Some(subnet) = ids.first().map(|s| s.to_string()) else { return Ok(None) };
        let groups: Vec<ec2t::SecurityGroup> = paged!(
            self,
            "DescribeSecurityGroups",
            self.ec2
                .describe_security_groups()
                .filters(ec2t::Filter::builder().name("vpc-id").values(&vpc).build())
                .filters(ec2t::Filter::builder().name("group-name").values("default").build()),
            security_groups
        );
        Ok(groups.first().and_then(|g| g.group_id()).map(|sg| (subnet, sg.to_string())))
    }

    async fn create_image(&self, instance_id: &str, name: &str, tags: &BTreeMap<String, String>) -> CloudResult<String> {
        self.count("CreateImage");
        let made = self
            .ec2
            .create_image()
            .instance_id(instance_id)
            .name(name)
            .description("hybrid bake: a node image with everything installed that does not depend on the cluster")
            // Snapshots are tagged once they exist (`tag`): not every EC2
            // implementation takes snapshot tags here.
            .set_tag_specifications(Some(tag_specs(&[ec2t::ResourceType::Image], tags)))
            .send()
            .await;
        match made {
            Ok(out) => Ok(out.image_id().unwrap_or_default().to_string()),
            // A retry, or a rerun after a kill: the name is unique per key.
            Err(e) if e.code() == Some("InvalidAMIName.Duplicate") => {
                let found: Vec<ec2t::Image> = paged!(
                    self,
                    "DescribeImages",
                    self.ec2.describe_images().owners("self").filters(ec2t::Filter::builder().name("name").values(name).build()),
                    images
                );
                found.first().and_then(|i| i.image_id()).map(str::to_string).ok_or_else(|| err("CreateImage", e))
            }
            Err(e) => Err(err("CreateImage", e)),
        }
    }

    async fn snapshots_without_tag(&self, snapshots: &[String], key: &str) -> CloudResult<Vec<String>> {
        if snapshots.is_empty() {
            return Ok(Vec::new());
        }
        let id_filter = ec2t::Filter::builder().name("snapshot-id").set_values(Some(snapshots.to_vec())).build();
        let found: Vec<ec2t::Snapshot> =
            paged!(self, "DescribeSnapshots", self.ec2.describe_snapshots().owner_ids("self").filters(id_filter), snapshots);
        Ok(found.iter().filter(|s| tag_value(s.tags(), key).is_empty()).filter_map(|s| s.snapshot_id().map(str::to_string)).collect())
    }

    async fn tag(&self, ids: &[String], tags: &BTreeMap<String, String>) -> CloudResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.count("CreateTags");
        let list: Vec<ec2t::Tag> = tags.iter().map(|(k, v)| ec2t::Tag::builder().key(k).value(v).build()).collect();
        self.ec2.create_tags().set_resources(Some(ids.to_vec())).set_tags(Some(list)).send().await.map_err(|e| err("CreateTags", e))?;
        Ok(())
    }

    async fn instance_states(&self, ids: &[String]) -> CloudResult<BTreeMap<String, String>> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        // By id a Describe fails as a whole when one id is unknown (long
        // gone); by filter it answers what it has, page by page.
        let id_filter = ec2t::Filter::builder().name("instance-id").set_values(Some(ids.to_vec())).build();
        let reservations: Vec<ec2t::Reservation> =
            paged!(self, "DescribeInstances", self.ec2.describe_instances().filters(id_filter), reservations);
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| Some((i.instance_id()?.to_string(), i.state()?.name()?.as_str().to_string())))
            .collect())
    }

    async fn delete_image(&self, image: &BakedImage) -> CloudResult<()> {
        self.count("DeregisterImage");
        done_unless("DeregisterImage", self.ec2.deregister_image().image_id(&image.id).send().await, "InvalidAMIID.NotFound")?;
        // Its snapshots are free once it is gone, all at once.
        futures_util::future::try_join_all(image.snapshots.iter().map(|snapshot| async move {
            self.count("DeleteSnapshot");
            done_unless("DeleteSnapshot", self.ec2.delete_snapshot().snapshot_id(snapshot).send().await, "InvalidSnapshot.NotFound")
        }))
        .await?;
        Ok(())
    }

    async fn images_in_use(&self, image_ids: &[String]) -> CloudResult<BTreeSet<String>> {
        if image_ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let reservations: Vec<ec2t::Reservation> = paged!(
            self,
            "DescribeInstances",
            self.ec2
                .describe_instances()
                .filters(ec2t::Filter::builder().name("image-id").set_values(Some(image_ids.to_vec())).build())
                .filters(live_states()),
            reservations
        );
        Ok(reservations.iter().flat_map(|r| r.instances()).filter_map(|i| i.image_id()).map(str::to_string).collect())
    }

    async fn console_output(&self, id: &str) -> CloudResult<String> {
        self.count("GetConsoleOutput");
        let out = self.ec2.get_console_output().instance_id(id).latest(true).send().await.map_err(|e| err("GetConsoleOutput", e))?;
        let raw = out.output().unwrap_or_default();
        let bytes = base64::engine::general_purpose::STANDARD.decode(raw.trim()).unwrap_or_else(|_| raw.as_bytes().to_vec());
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    async fn set_expiry(&self, cluster: &str, expires: &str) -> CloudResult<usize> {
        // EC2, SSM and IAM wait for nothing of each other: all at once.
        let ec2 = async {
            // Every EC2 resource with the cluster's tag: instances and their
            // volumes too, not only what discovery plans with.
            let tags: Vec<ec2t::TagDescription> = paged!(
                self,
                "DescribeTags",
                self.ec2
                    .describe_tags()
                    .filters(ec2t::Filter::builder().name("key").values(TAG_CLUSTER).build())
                    .filters(ec2t::Filter::builder().name("value").values(cluster).build()),
                tags
            );
            let ids: BTreeSet<String> = tags.iter().filter_map(|t| t.resource_id()).map(str::to_string).collect();
            let ids: Vec<String> = ids.into_iter().collect();
            let tag = ec2t::Tag::builder().key(TAG_EXPIRES).value(expires).build();
            futures_util::future::try_join_all(ids.chunks(500).map(|batch| {
                self.count("CreateTags");
                self.ec2.create_tags().set_resources(Some(batch.to_vec())).tags(tag.clone()).send()
            }))
            .await
            .map_err(|e| err("CreateTags", e))?;
            Ok::<_, CloudError>(ids.len())
        };
        let ssm = async {
            let lock = lock_parameter_prefix(cluster);
            let mut pages = self.ssm.get_parameters_by_path().path(parameter_prefix(cluster)).recursive(true).into_paginator().send();
            let mut names = Vec::new();
            while let Some(page) = pages.next().await {
                self.count("GetParametersByPath");
                names.extend(
                    page.map_err(|e| err("GetParametersByPath", e))?
                        .parameters()
                        .iter()
                        .filter_map(|p| p.name())
                        .filter(|n| !n.starts_with(&lock))
                        .map(str::to_string),
                );
            }
            futures_util::future::try_join_all(names.iter().map(|name| {
                self.count("AddTagsToResource");
                let t = ssmt::Tag::builder().key(TAG_EXPIRES).value(expires).build().expect("key and value are set");
                self.ssm.add_tags_to_resource().resource_type(ssmt::ResourceTypeForTagging::Parameter).resource_id(name).tags(t).send()
            }))
            .await
            .map_err(|e| err("AddTagsToResource", e))?;
            Ok(names.len())
        };
        let iam = async {
            let iam_tag = || aws_sdk_iam::types::Tag::builder().key(TAG_EXPIRES).value(expires).build().expect("key and value are set");
            let profiles = instance_profiles(cluster, &self.region);
            let tagged = futures_util::future::try_join_all(profiles.iter().map(|profile| async move {
                self.count("TagRole");
                let role = match self.iam.tag_role().role_name(&profile.name).tags(iam_tag()).send().await {
                    Ok(_) => 1,
                    Err(e) if e.code() == Some("NoSuchEntity") => 0,
                    Err(e) => return Err(err("TagRole", e)),
                };
                self.count("TagInstanceProfile");
                let instance_profile =
                    match self.iam.tag_instance_profile().instance_profile_name(&profile.name).tags(iam_tag()).send().await {
                        Ok(_) => 1,
                        Err(e) if e.code() == Some("NoSuchEntity") => 0,
                        Err(e) => return Err(err("TagInstanceProfile", e)),
                    };
                Ok::<usize, CloudError>(role + instance_profile)
            }))
            .await?;
            Ok(tagged.into_iter().sum::<usize>())
        };
        let (ec2, ssm, iam) = tokio::try_join!(ec2, ssm, iam)?;
        Ok(ec2 + ssm + iam)
    }

    async fn set_instance_groups(&self, instance_id: &str, groups: &[String]) -> CloudResult<()> {
        self.count("ModifyInstanceAttribute");
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance_id)
            .set_groups(Some(groups.to_vec()))
            .send()
            .await
            .map(drop)
            .map_err(|e| err("ModifyInstanceAttribute", e))
    }

    async fn regions(&self) -> CloudResult<Vec<String>> {
        self.count("DescribeRegions");
        let out = self.ec2.describe_regions().send().await.map_err(|e| err("DescribeRegions", e))?;
        let mut names: Vec<String> = out.regions().iter().filter_map(|r| r.region_name()).map(str::to_string).collect();
        names.sort();
        Ok(names)
    }

    async fn caller_arn(&self) -> CloudResult<String> {
        self.count("GetCallerIdentity");
        let out = self.sts.get_caller_identity().send().await.map_err(|e| err("GetCallerIdentity", e))?;
        Ok(out.arn().unwrap_or_default().to_string())
    }

    fn call_counts(&self) -> BTreeMap<&'static str, u64> {
        self.calls.lock().expect("call counter lock").clone()
    }

    fn parallelism(&self) -> usize {
        self.parallelism
    }
}
