//! Actual state: what the adapters found in AWS for one cluster, by its
//! `hybrid:*` tags. Plain data; filled by `adapters`, read by `plan`.
//!
//! This is a snapshot: the world may change while a plan is shown, which is
//! why `apply` plans under the cluster lock and every step looks before it
//! creates.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::infra::desired::SgRule;
use crate::model::net::Ipv4Cidr;

/// Everything is a list: a lost answer to a create call (CreateVpc and
/// CreateInternetGateway take no idempotency token) or another tool can
/// leave two tagged resources where hybrid wants one, and `plan` must see
/// every one of them to pick the one in use and remove the rest.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Inventory {
    pub vpcs: Vec<Vpc>,
    pub subnets: Vec<Subnet>,
    pub internet_gateways: Vec<Gateway>,
    /// The main route table of each tagged VPC.
    pub route_tables: Vec<RouteTable>,
    pub security_groups: Vec<SecurityGroup>,
    /// The instance profiles hybrid names for the cluster, as far as they exist.
    pub instance_profiles: Vec<FoundProfile>,
    /// Names of the cluster's SSM parameters (the lock excluded).
    pub parameters: BTreeSet<String>,
    /// Instances not terminated or shutting down.
    pub instances: Vec<Instance>,
    /// The cluster's `hybrid:expires` tag (RFC 3339), set at creation from
    /// its time-to-live and kept for its lifetime: from any of its resources.
    pub expires: Option<String>,
}

/// A tagged VPC with the attributes hybrid sets on the VPCs it creates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: Option<Ipv4Cidr>,
    pub dns_support: bool,
    pub dns_hostnames: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: Option<Ipv4Cidr>,
    pub map_public_ip_on_launch: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gateway {
    pub id: String,
    /// The VPC it is attached to, if any (a gateway attaches to at most one).
    pub vpc_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    /// Where 0.0.0.0/0 goes (a gateway id), if anywhere.
    pub default_route: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
    pub rules: Vec<SgRule>,
    /// For a pool's players' group: the pool (`hybrid:players-pool`).
    pub players_pool: Option<String>,
}

/// What exists of the role, its policy and the instance profile (an apply
/// killed between them leaves a part).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FoundProfile {
    pub name: String,
    pub role: bool,
    /// The inline policy document (JSON), if the role has it.
    pub policy: Option<String>,
    pub profile: bool,
    pub profile_has_role: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Instance {
    pub id: String,
    pub slot: String,
    pub group: String,
    pub spec_hash: String,
    /// From the `hybrid:kubernetes-version` and `hybrid:cni` tags (empty
    /// when absent), for plain replacement reasons.
    pub kubernetes_version: String,
    pub cni: String,
    pub state: String,
    pub instance_type: String,
    pub image_id: String,
    pub private_ip: Option<String>,
    pub private_dns: Option<String>,
    pub public_ip: Option<String>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    /// The instance profile's ARN, if it has one.
    pub instance_profile: Option<String>,
    /// The security groups it is in.
    pub security_groups: Vec<String>,
    /// RFC 3339; orders duplicates (the oldest one is kept).
    pub launch_time: String,
}

impl Inventory {
    pub fn is_empty(&self) -> bool {
        self.vpcs.is_empty()
            && self.subnets.is_empty()
            && self.internet_gateways.is_empty()
            && self.security_groups.is_empty()
            && self.instance_profiles.is_empty()
            && self.parameters.is_empty()
            && self.instances.is_empty()
    }
}
