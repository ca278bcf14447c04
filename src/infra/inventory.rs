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

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Inventory {
    pub vpc: Option<Found>,
    pub subnet: Option<Found>,
    pub internet_gateway: Option<String>,
    /// The route table hybrid routes through, and whether it already sends
    /// 0.0.0.0/0 to the internet gateway.
    pub route_table: Option<RouteTable>,
    pub security_group: Option<SecurityGroup>,
    /// Names of the cluster's SSM parameters (the lock excluded).
    pub parameters: BTreeSet<String>,
    /// Instances not terminated or shutting down.
    pub instances: Vec<Instance>,
    /// The cluster's `hybrid:expires` tag (RFC 3339), set at creation from
    /// its time-to-live and kept for its lifetime.
    pub expires: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Found {
    pub id: String,
    pub cidr: Option<Ipv4Cidr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteTable {
    pub id: String,
    pub default_route_to_igw: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecurityGroup {
    pub id: String,
    pub rules: Vec<SgRule>,
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
    /// RFC 3339; orders duplicates (the oldest one is kept).
    pub launch_time: String,
}

impl Inventory {
    pub fn is_empty(&self) -> bool {
        self.vpc.is_none()
            && self.subnet.is_none()
            && self.internet_gateway.is_none()
            && self.security_group.is_none()
            && self.parameters.is_empty()
            && self.instances.is_empty()
    }
}
