//! The I/O edge. `Cloud` is the small, domain-level interface the executor
//! needs from AWS (EC2 + SSM); `aws::AwsCloud` implements it with the AWS
//! SDK. `web` checks that pinned downloads and images exist. Keeping the trait narrow lets the executor run against an in-memory
//! fake in unit tests; the real adapter is tested against moto.

pub mod aws;
pub mod clock;
pub mod host;
pub mod in_flight;
pub mod kube;
pub mod ssh;
pub mod web;

use std::collections::BTreeMap;

use crate::infra::changes::Attribute;
use crate::infra::desired::{AmiLookup, InstanceProfile, ResolvedAmi, SgRule};
use crate::infra::images::{BakedImage, Builder};
use crate::infra::inventory::Inventory;
use crate::model::AmiRef;
use crate::model::net::Ipv4Cidr;

/// The code of a call whose answer never arrived (or arrived unreadable):
/// it may or may not have happened.
pub const NO_ANSWER: &str = "NoAnswer";
/// The code of a call that was never sent: no credential source gave
/// credentials (the message names the source that failed and why).
pub const NO_CREDENTIALS: &str = "NoCredentials";

/// An AWS call that failed after the SDK's retries.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{operation} failed: {code}: {message}")]
pub struct CloudError {
    pub operation: &'static str,
    pub code: String,
    pub message: String,
}

impl CloudError {
    pub fn new(operation: &'static str, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { operation, code: code.into(), message: message.into() }
    }

    /// A failure after which the call may still have been carried out: no
    /// answer, an unreadable one, or a server-side error. A create that
    /// failed so looks for what it may have made before it sends again.
    pub fn may_have_happened(&self) -> bool {
        matches!(
            self.code.as_str(),
            NO_ANSWER | "UnreadableAnswer" | "InternalError" | "InternalFailure" | "InternalServerError" | "ServiceUnavailable"
        )
    }

    /// EC2 cannot run this instance type here now: no capacity in the
    /// zone (on demand or spot), or the type is not offered in the
    /// subnet's zone. Another type may run; the same one later may too.
    /// (InsufficientInstanceCapacity covers spot too, with its own
    /// message; InsufficientCapacity and InsufficientHostCapacity belong to
    /// imports and Dedicated Hosts, which hybrid's launches never are.)
    pub fn is_capacity(&self) -> bool {
        matches!(self.code.as_str(), "InsufficientInstanceCapacity" | "Unsupported")
    }

    /// IAM's eventual consistency as EC2 shows it: a new instance profile
    /// unknown to EC2 ("Invalid IAM Instance Profile name"), or known but
    /// without the role just added to it ("has no associated IAM Roles"),
    /// for tens of seconds (Terraform retries both for two minutes).
    pub fn is_profile_not_ready(&self) -> bool {
        self.code == "InvalidParameterValue"
            && (self.message.contains("iamInstanceProfile") || self.message.contains("has no associated IAM Roles"))
    }

    /// AWS's throttling: the request was refused before it was looked at.
    pub fn is_throttling(&self) -> bool {
        matches!(self.code.as_str(), "RequestLimitExceeded" | "Throttling" | "ThrottlingException")
    }

    /// Worth another attempt: throttling, a server-side failure, no answer,
    /// or an instance profile IAM has made but EC2 does not see yet (IAM is
    /// eventually consistent: a new profile can be refused for some
    /// seconds). Anything else (AccessDenied, a bad parameter) stays as it is.
    pub fn is_transient(&self) -> bool {
        self.is_profile_not_ready()
            || matches!(
                self.code.as_str(),
                NO_ANSWER
                    | "RequestLimitExceeded"
                    | "Throttling"
                    | "ThrottlingException"
                    | "InternalError"
                    | "InternalFailure"
                    | "InternalServerError"
                    | "ServiceUnavailable"
                    | "Unavailable"
                    | "UnreadableAnswer"
            )
    }
}

impl crate::retry::Transient for CloudError {
    fn is_transient(&self) -> bool {
        CloudError::is_transient(self)
    }
}

pub type CloudResult<T> = Result<T, CloudError>;

/// Everything one RunInstances call needs.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchRequest {
    pub ami: ResolvedAmi,
    pub instance_type: String,
    pub subnet_id: String,
    /// The nodes' group, and a pool's players' group when it has one.
    pub security_group_ids: Vec<String>,
    pub private_ip: Option<std::net::Ipv4Addr>,
    /// Raw bytes; base64 happens inside the adapter.
    pub user_data: Vec<u8>,
    pub disk_gb: u32,
    pub spot: bool,
    pub key_name: Option<String>,
    /// The instance profile's name (the control plane's).
    pub instance_profile: Option<String>,
    /// Put on the instance and its root volume at creation, atomically.
    pub tags: BTreeMap<String, String>,
    /// Idempotency token (AWS deduplicates retried launches with it).
    pub client_token: String,
}

/// What RunInstances answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launched {
    pub id: String,
    /// Assigned at launch; the node's name once it joins.
    pub private_dns: Option<String>,
}

/// One epoch of the cluster lock, as stored. A value that is not what
/// hybrid writes (cut short, written by hand) reads as owner and run id
/// `unknown`, created when the parameter was last written, no expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub owner: String,
    /// Which run holds it: a run recognizes its own lock by this, even when
    /// the answer to its write was lost.
    pub run_id: String,
    pub created: String,
    pub expires: String,
}

/// A cluster found in a region, however little of it is left.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoundCluster {
    pub name: String,
    /// The earliest `hybrid:expires` among its resources (RFC 3339); `None`
    /// for a cluster without a time-to-live.
    pub expires: Option<String>,
    /// Nothing but lock epochs is left (a run killed after its last delete).
    pub only_lock: bool,
    /// Who made it (`hybrid:owner` of any of its resources).
    pub owner: Option<String>,
    /// Which kinds of its resources are left: `vpc`, `subnet`,
    /// `internet-gateway`, `security-group`, `secrets`, `role`, `lock`.
    pub left: std::collections::BTreeSet<String>,
    /// Its instances that are not terminated or shutting down.
    pub instances: Vec<FoundInstance>,
}

/// One instance of a found cluster, as `hybrid list` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoundInstance {
    pub slot: String,
    pub pool: String,
    pub windows: bool,
    pub instance_type: String,
    pub state: String,
    pub spot: bool,
    /// RFC 3339.
    pub launch_time: String,
}

impl FoundCluster {
    pub fn named(name: &str) -> Self {
        FoundCluster { name: name.to_string(), ..Default::default() }
    }

    /// Keeps the earlier of the known expiry and `expires` (RFC 3339 UTC
    /// strings of one format sort by time).
    pub fn merge_expiry(&mut self, expires: &str) {
        if !expires.is_empty() && self.expires.as_deref().is_none_or(|e| expires < e) {
            self.expires = Some(expires.to_string());
        }
    }
}

// Used with static dispatch inside this crate only, on one task, so the
// futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait Cloud {
    /// Everything tagged `hybrid:cluster=<cluster>`, plus the SSM parameters
    /// under `/hybrid/<cluster>/`. The number of calls does not grow with the
    /// number of instances beyond DescribeInstances pagination.
    async fn discover(&self, cluster: &str) -> CloudResult<Inventory>;
    async fn resolve_ami(&self, lookup: &AmiLookup, over: Option<&AmiRef>) -> CloudResult<ResolvedAmi>;

    /// Creates (and tags) a VPC with DNS hostnames on. Creates take a
    /// `hybrid:create-token` tag among `tags`: a lost answer is recovered
    /// by finding the resource by it, not by making a second one.
    async fn create_vpc(&self, cidr: Ipv4Cidr, tags: &BTreeMap<String, String>) -> CloudResult<String>;
    async fn create_subnet(&self, vpc_id: &str, cidr: Ipv4Cidr, tags: &BTreeMap<String, String>) -> CloudResult<String>;
    /// Creates and attaches.
    async fn create_internet_gateway(&self, vpc_id: &str, tags: &BTreeMap<String, String>) -> CloudResult<String>;
    async fn attach_internet_gateway(&self, igw_id: &str, vpc_id: &str) -> CloudResult<()>;
    async fn create_default_route(&self, vpc_id: &str, igw_id: &str) -> CloudResult<()>;
    /// Sets a VPC's or subnet's boolean attribute.
    async fn set_attribute(&self, id: &str, attribute: Attribute, value: bool) -> CloudResult<()>;
    async fn create_security_group(&self, name: &str, vpc_id: &str, tags: &BTreeMap<String, String>) -> CloudResult<String>;
    async fn authorize_ingress(&self, group_id: &str, rules: &[SgRule]) -> CloudResult<()>;
    /// Creates what is missing of the role (EC2 may assume it), its inline
    /// policy (always put, so a hand edit is undone) and the instance
    /// profile holding the role; every step is idempotent.
    async fn ensure_instance_profile(&self, profile: &InstanceProfile, tags: &BTreeMap<String, String>) -> CloudResult<()>;
    /// Removes the role from the profile, then the profile, the policy and the role.
    async fn delete_instance_profile(&self, name: &str) -> CloudResult<()>;
    async fn revoke_ingress(&self, group_id: &str, rules: &[SgRule]) -> CloudResult<()>;
    /// Puts a running instance into exactly these security groups.
    async fn set_instance_groups(&self, instance_id: &str, groups: &[String]) -> CloudResult<()>;

    /// Which of `types` the region offers (DescribeInstanceTypeOfferings).
    /// The availability zone of a subnet (named in capacity errors).
    async fn subnet_zone(&self, subnet_id: &str) -> CloudResult<Option<String>>;
    async fn offered_instance_types(&self, types: &[String]) -> CloudResult<std::collections::BTreeSet<String>>;
    async fn run_instance(&self, request: &LaunchRequest) -> CloudResult<Launched>;
    async fn terminate_instances(&self, ids: &[String]) -> CloudResult<()>;
    /// Starts stopped instances.
    async fn start_instances(&self, ids: &[String]) -> CloudResult<()>;
    /// Which of `ids` are not yet `terminated`.
    async fn not_terminated(&self, ids: &[String]) -> CloudResult<Vec<String>>;

    async fn delete_security_group(&self, id: &str) -> CloudResult<()>;
    async fn delete_internet_gateway(&self, id: &str) -> CloudResult<()>;
    async fn delete_subnet(&self, id: &str) -> CloudResult<()>;
    async fn delete_vpc(&self, id: &str) -> CloudResult<()>;

    /// A parameter's decrypted value, if it exists.
    async fn get_parameter(&self, name: &str) -> CloudResult<Option<String>>;
    /// Creates a SecureString (or, not `secure`, a String); `Ok(false)`
    /// when it already exists (never overwrites).
    async fn create_parameter(&self, name: &str, value: &str, secure: bool, tags: &BTreeMap<String, String>) -> CloudResult<bool>;
    /// Writes a SecureString, replacing its value when it exists (its tags
    /// are those of its creation).
    async fn put_parameter(&self, name: &str, value: &str, tags: &BTreeMap<String, String>) -> CloudResult<()>;
    async fn delete_parameter(&self, name: &str) -> CloudResult<()>;

    /// Every epoch of the cluster's lock, oldest first. The newest one is
    /// the lock; older ones are stale leftovers of a takeover.
    async fn locks(&self, cluster: &str) -> CloudResult<Vec<(u64, LockInfo)>>;
    /// Creates lock epoch `epoch` unless it exists, atomically (SSM's
    /// overwrite=false): of two runs racing for one epoch exactly one wins.
    /// `Ok(false)` when it exists already.
    async fn create_lock(&self, cluster: &str, epoch: u64, lock: &LockInfo) -> CloudResult<bool>;
    async fn delete_lock(&self, cluster: &str, epoch: u64) -> CloudResult<()>;
    /// Rewrites lock epoch `epoch` (its new expiry), which must exist.
    async fn renew_lock(&self, cluster: &str, epoch: u64, lock: &LockInfo) -> CloudResult<()>;

    /// Every cluster with anything left in the region: from the tags of
    /// its network resources (any one of them) and its SSM parameters.
    async fn clusters(&self) -> CloudResult<Vec<FoundCluster>>;

    /// Every image `hybrid bake` made in the region (owned by this account).
    async fn baked_images(&self) -> CloudResult<Vec<BakedImage>>;
    /// Bake builder instances not terminated.
    async fn bake_builders(&self) -> CloudResult<Vec<Builder>>;
    /// A subnet of the default VPC and that VPC's default security group
    /// (outbound only in practice: it admits only its own members), for
    /// builders; `None` when the region has no default VPC.
    async fn default_network(&self) -> CloudResult<Option<(String, String)>>;
    /// Creates an image of a (stopped) instance, tagged; a second call with
    /// the same name finds the first image.
    async fn create_image(&self, instance_id: &str, name: &str, tags: &BTreeMap<String, String>) -> CloudResult<String>;
    /// Which of `snapshots` lack the tag `key` (a bake killed between
    /// CreateImage and tagging left them so).
    async fn snapshots_without_tag(&self, snapshots: &[String], key: &str) -> CloudResult<Vec<String>>;
    /// Adds tags to existing EC2 resources (a baked image's snapshots).
    async fn tag(&self, ids: &[String], tags: &BTreeMap<String, String>) -> CloudResult<()>;
    /// States by instance id (`running`, `stopped`, …; absent when gone).
    async fn instance_states(&self, ids: &[String]) -> CloudResult<BTreeMap<String, String>>;
    /// Deregisters the image and deletes its snapshots.
    async fn delete_image(&self, image: &BakedImage) -> CloudResult<()>;
    /// Which of `image_ids` a live instance (any cluster, any tool) runs.
    async fn images_in_use(&self, image_ids: &[String]) -> CloudResult<std::collections::BTreeSet<String>>;

    /// The instance's serial console output (decoded), for boot diagnostics.
    async fn console_output(&self, id: &str) -> CloudResult<String>;

    /// Sets `hybrid:expires` to `expires` on every resource of the cluster
    /// (EC2 resources, its SSM parameters, its roles and instance
    /// profiles); returns how many were tagged.
    async fn set_expiry(&self, cluster: &str, expires: &str) -> CloudResult<usize>;

    /// The regions the account has enabled (EC2 DescribeRegions).
    async fn regions(&self) -> CloudResult<Vec<String>>;

    /// Who is calling: the ARN STS's GetCallerIdentity answers (an IAM
    /// user, or `assumed-role/<role>/<session>` for a role or SSO).
    async fn caller_arn(&self) -> CloudResult<String>;

    /// Calls made so far, by operation (for `--api-stats` and benchmarks).
    fn call_counts(&self) -> BTreeMap<&'static str, u64>;

    /// How many calls may be in flight at once (`--parallelism`): a stage
    /// that starts many (launches, a region sweep) keeps about this many
    /// going, and the client holds the rest back.
    fn parallelism(&self) -> usize;
}

#[cfg(test)]
mod tests {
    use super::CloudError;

    /// The two ways EC2 refuses an instance profile IAM has not propagated
    /// yet (messages as EC2 words them; Terraform's aws provider retries
    /// the same two), and what is not one.
    #[test]
    fn a_profile_ec2_does_not_see_yet_is_transient_and_nothing_else_is() {
        let e = |code: &str, message: &str| CloudError::new("RunInstances", code, message);
        let unknown = e(
            "InvalidParameterValue",
            "Value (hybrid-x-wk) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
        );
        let roleless = e("InvalidParameterValue", "IAM Instance Profile \"arn:aws:iam::1:instance-profile/x\" has no associated IAM Roles");
        assert!(unknown.is_transient() && roleless.is_transient());
        assert!(!e("InvalidParameterValue", "Invalid value 'm9.huge' for InstanceType").is_transient());
        assert!(e("RequestLimitExceeded", "").is_throttling() && !e("RequestLimitExceeded", "").may_have_happened());
        assert!(e("Unsupported", "").is_capacity() && !e("InsufficientHostCapacity", "").is_capacity());
    }
}
