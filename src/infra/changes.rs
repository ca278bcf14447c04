//! The plan's vocabulary, as plain data (Terraform's rule: nothing else
//! steers execution): what happens (`Action`, with the symbol a user sees)
//! to which resource (`Resource`), why, and which existing network
//! resources stay in use. `plan` and `network` produce it, `show` renders
//! it, `execute` carries it out.

use serde::Serialize;

use crate::infra::desired::{DesiredInstance, SgRule};
use crate::model::net::Ipv4Cidr;

/// What happens to one resource. The symbol is what the user sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    /// Delete, then create (`-/+`): the control plane's fixed address must
    /// be free first. Workers are replaced rolling, a batch at a time.
    Replace,
    /// Replacing the control plane (`-/+!`): etcd goes with it, so the
    /// cluster is recreated. `apply` does it only when asked explicitly.
    Recreate,
    Delete,
}

impl Action {
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Recreate => "-/+!",
            Action::Delete => "-",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    Vpc {
        cidr: Ipv4Cidr,
    },
    Subnet {
        cidr: Ipv4Cidr,
    },
    InternetGateway,
    /// 0.0.0.0/0 through the internet gateway in the VPC's main route table.
    Route,
    SecurityGroup {
        add: Vec<SgRule>,
        remove: Vec<SgRule>,
    },
    /// A pool's players' security group (its `player_ports`), only its
    /// nodes in it.
    PlayersGroup {
        pool: String,
        add: Vec<SgRule>,
        remove: Vec<SgRule>,
    },
    /// An instance joins or leaves its pool's players' group (the change's
    /// id is the instance; `players` the pool whose group it is to be in).
    Membership {
        players: Option<String>,
    },
    /// An attribute of the VPC or subnet in use (the change's id).
    Attribute {
        attribute: Attribute,
        value: bool,
    },
    /// A node kind's IAM role (with its one inline policy) and instance
    /// profile, named in the change.
    InstanceProfile,
    /// An SSM parameter; its value is never part of a plan. The kind is
    /// known for what a plan creates, not for what destroy finds.
    Parameter {
        name: String,
        holds: Option<crate::infra::desired::ParameterKind>,
    },
    Instance {
        desired: Option<DesiredInstance>,
    },
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Vpc { .. } => "vpc",
            Resource::Subnet { .. } => "subnet",
            Resource::InternetGateway => "internet_gateway",
            Resource::Route => "route",
            Resource::Attribute { attribute, .. } if attribute.on_subnet() => "subnet_attribute",
            Resource::Attribute { .. } => "vpc_attribute",
            Resource::SecurityGroup { .. } => "security_group",
            Resource::PlayersGroup { .. } => "players_group",
            Resource::Membership { .. } => "security_groups",
            Resource::InstanceProfile => "instance_profile",
            Resource::Parameter { .. } => "ssm_parameter",
            Resource::Instance { .. } => "instance",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Change {
    pub action: Action,
    /// A human name: slot, parameter name, CIDR.
    pub name: String,
    /// The existing resource's id, for updates, replacements and deletions.
    pub id: Option<String>,
    /// Why: shown as `(because …)` for replacements and deletions.
    pub reason: Option<String>,
    pub resource: Resource,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub cluster: String,
    pub region: String,
    /// Planned against nothing (no credentials): every resource is new and
    /// AMIs are resolved at apply time.
    pub offline: bool,
    pub destroy: bool,
    pub changes: Vec<Change>,
    /// The existing network resources the cluster keeps using.
    pub in_use: InUse,
    /// Per pool: the image it boots from and why (baked or stock).
    pub images: std::collections::BTreeMap<String, String>,
    /// What stays as it is although the file differs, in plain words.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The control plane is replaced: etcd and everything in it are lost.
    pub fn recreates_cluster(&self) -> bool {
        self.changes.iter().any(|c| c.action == Action::Recreate)
    }

    /// A control plane is launched: created, or recreated with the cluster.
    pub fn creates_control_plane(&self) -> bool {
        self.changes.iter().any(|c| {
            matches!(&c.resource, Resource::Instance { desired: Some(d) } if d.group == crate::infra::desired::CONTROL_PLANE)
                && matches!(c.action, Action::Create | Action::Recreate)
        })
    }

    /// Worker replacements that roll (a batch at a time, drained first):
    /// all of them, unless the cluster is recreated anyway.
    pub fn rolls(&self, change: &Change) -> bool {
        change.action == Action::Replace && !self.recreates_cluster()
    }

    /// Instances would be launched: every pinned download and image must exist first.
    pub fn launches(&self) -> bool {
        self.changes.iter().any(|c| {
            matches!(c.resource, Resource::Instance { .. }) && matches!(c.action, Action::Create | Action::Replace | Action::Recreate)
        })
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary { add: 0, change: 0, destroy: 0 };
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace | Action::Recreate => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
            }
        }
        s
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "the cluster's {what} is {actual} but the file says {wanted}; a network cannot change under a running cluster. Run `hybrid destroy` first, or change the file back"
    )]
    NetworkChanged { what: &'static str, actual: String, wanted: String },
}

/// A boolean attribute hybrid sets on a VPC or subnet it created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    /// The Amazon DNS server answers in the VPC (AWS's default, stated anyway).
    EnableDnsSupport,
    /// Instances get private DNS names, which are the node names.
    EnableDnsHostnames,
    /// Nodes download containerd, kubelet and images at boot, and
    /// `kubeconfig` reaches the API server at the control plane's public IP.
    MapPublicIpOnLaunch,
}

impl Attribute {
    /// The name AWS gives it.
    pub fn aws_name(self) -> &'static str {
        match self {
            Attribute::EnableDnsSupport => "enableDnsSupport",
            Attribute::EnableDnsHostnames => "enableDnsHostnames",
            Attribute::MapPublicIpOnLaunch => "MapPublicIpOnLaunch",
        }
    }

    pub fn on_subnet(self) -> bool {
        self == Attribute::MapPublicIpOnLaunch
    }
}

/// The existing network resources the cluster goes on using; `None` where
/// the plan creates one. `execute` takes the ids it does not create from here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InUse {
    pub vpc: Option<String>,
    pub subnet: Option<String>,
    pub internet_gateway: Option<String>,
    /// The kept gateway is attached to no VPC yet (an apply killed between
    /// create and attach): the route step attaches it.
    pub gateway_detached: bool,
    pub security_group: Option<String>,
    /// Each pool's players' group that stays, by pool.
    pub players_groups: std::collections::BTreeMap<String, String>,
}
