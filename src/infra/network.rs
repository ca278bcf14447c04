//! The network part of a plan. Pure: desired network and inventory in,
//! changes and the ids of what the cluster keeps using out.
//!
//! Discovery may find more than one tagged VPC, subnet, gateway or security
//! group: CreateVpc and CreateInternetGateway take no idempotency token, so
//! a retried call whose first answer was lost makes a second one, and an
//! apply killed at the wrong moment leaves half-made pieces. This module
//! picks, deterministically, the one resource of each kind the cluster
//! uses (the one its instances sit in, then the most complete, then the
//! lowest id) and plans every other one away. The attributes hybrid sets
//! on what it creates (DNS support and hostnames on the VPC, public IPs on
//! launch in the subnet) are desired state too: read, compared, repaired.

use crate::infra::changes::{Action, Attribute, Change, InUse, PlanError, Resource};
use crate::infra::desired::{DesiredNetwork, DesiredState, SgRule};
use crate::infra::inventory::{Gateway, Inventory, SecurityGroup, Subnet, Vpc};
use crate::model::net::Ipv4Cidr;

fn change(action: Action, name: String, id: Option<String>, reason: Option<String>, resource: Resource) -> Change {
    Change { action, name, id, reason, resource }
}

fn unknown_cidr() -> Ipv4Cidr {
    Ipv4Cidr::parse("0.0.0.0/0").expect("literal")
}

/// How much of the cluster a VPC holds, for choosing the one in use.
fn weight(inv: &Inventory, vpc: &Vpc) -> (usize, bool, bool, bool) {
    (
        inv.instances.iter().filter(|i| i.vpc_id.as_deref() == Some(&vpc.id)).count(),
        inv.subnets.iter().any(|s| s.vpc_id == vpc.id),
        inv.internet_gateways.iter().any(|g| g.vpc_id.as_deref() == Some(&vpc.id)),
        inv.security_groups.iter().any(|g| g.vpc_id == vpc.id),
    )
}

/// The heaviest VPC; on a tie the lowest id, so every run picks the same.
fn pick_vpc(inv: &Inventory) -> Option<&Vpc> {
    inv.vpcs.iter().max_by(|a, b| weight(inv, a).cmp(&weight(inv, b)).then_with(|| b.id.cmp(&a.id)))
}

fn pick_subnet<'i>(inv: &'i Inventory, vpc: &str) -> Option<&'i Subnet> {
    let holds = |s: &Subnet| inv.instances.iter().filter(|i| i.subnet_id.as_deref() == Some(&s.id)).count();
    inv.subnets.iter().filter(|s| s.vpc_id == vpc).max_by(|a, b| holds(a).cmp(&holds(b)).then_with(|| b.id.cmp(&a.id)))
}

/// The gateway attached to the VPC, else a detached one to attach.
fn pick_gateway<'i>(inv: &'i Inventory, vpc: Option<&str>) -> Option<&'i Gateway> {
    let attached = vpc.and_then(|v| inv.internet_gateways.iter().find(|g| g.vpc_id.as_deref() == Some(v)));
    attached.or_else(|| inv.internet_gateways.iter().filter(|g| g.vpc_id.is_none()).min_by(|a, b| a.id.cmp(&b.id)))
}

/// Network changes, appended to `changes`; returns what stays in use.
pub fn network_changes(desired: &DesiredState, inv: &Inventory, changes: &mut Vec<Change>) -> Result<InUse, PlanError> {
    let mut in_use = InUse::default();
    match &desired.network {
        DesiredNetwork::Existing { vpc_id, subnet_id } => {
            if let Some(v) = inv.vpcs.first() {
                return Err(PlanError::NetworkChanged {
                    what: "network",
                    actual: format!("a VPC hybrid created ({})", v.id),
                    wanted: format!("the existing {vpc_id}"),
                });
            }
            in_use.vpc = Some(vpc_id.clone());
            in_use.subnet = Some(subnet_id.clone());
        }
        DesiredNetwork::Create { vpc_cidr, subnet_cidr } => created_network(desired, inv, *vpc_cidr, *subnet_cidr, &mut in_use, changes)?,
    }
    security_groups(desired, inv, &mut in_use, changes);
    Ok(in_use)
}

fn created_network(
    desired: &DesiredState,
    inv: &Inventory,
    vpc_cidr: Ipv4Cidr,
    subnet_cidr: Ipv4Cidr,
    in_use: &mut InUse,
    changes: &mut Vec<Change>,
) -> Result<(), PlanError> {
    let vpc = pick_vpc(inv);
    let subnet = vpc.and_then(|v| pick_subnet(inv, &v.id));
    for (what, found, wanted) in
        [("VPC CIDR", vpc.and_then(|v| v.cidr), vpc_cidr), ("subnet CIDR", subnet.and_then(|s| s.cidr), subnet_cidr)]
    {
        if let Some(cidr) = found
            && cidr != wanted
        {
            return Err(PlanError::NetworkChanged { what, actual: cidr.to_string(), wanted: wanted.to_string() });
        }
    }
    let gateway = pick_gateway(inv, vpc.map(|v| v.id.as_str()));
    in_use.vpc = vpc.map(|v| v.id.clone());
    in_use.subnet = subnet.map(|s| s.id.clone());
    in_use.internet_gateway = gateway.map(|g| g.id.clone());
    in_use.gateway_detached = gateway.is_some_and(|g| g.vpc_id.is_none());

    match vpc {
        None => changes.push(change(Action::Create, vpc_cidr.to_string(), None, None, Resource::Vpc { cidr: vpc_cidr })),
        Some(v) => {
            for (attribute, value) in [(Attribute::EnableDnsSupport, v.dns_support), (Attribute::EnableDnsHostnames, v.dns_hostnames)] {
                if !value {
                    changes.push(attribute_change(attribute, &v.id));
                }
            }
        }
    }
    match subnet {
        None => changes.push(change(Action::Create, subnet_cidr.to_string(), None, None, Resource::Subnet { cidr: subnet_cidr })),
        Some(s) if !s.map_public_ip_on_launch => changes.push(attribute_change(Attribute::MapPublicIpOnLaunch, &s.id)),
        Some(_) => {}
    }
    if gateway.is_none() {
        changes.push(change(Action::Create, format!("{}-igw", desired.cluster), None, None, Resource::InternetGateway));
    }
    let routed = vpc.zip(gateway).is_some_and(|(v, g)| {
        g.vpc_id.as_deref() == Some(&v.id) && inv.route_tables.iter().any(|t| t.vpc_id == v.id && t.default_route.as_deref() == Some(&g.id))
    });
    if !routed {
        changes.push(change(Action::Create, "0.0.0.0/0 via internet gateway".into(), None, None, Resource::Route));
    }

    // Everything else goes: duplicates, and whatever sits in a duplicate VPC.
    let kept_vpc = vpc.map(|v| v.id.as_str());
    let why = |kind: &str, kept: Option<&str>| match kept {
        Some(k) => format!("duplicate {kind}: the cluster uses {k} (left by a retried create or an interrupted apply)"),
        None => format!("left over: the cluster will get a new {kind}"),
    };
    for g in inv.internet_gateways.iter().filter(|g| Some(g.id.as_str()) != in_use.internet_gateway.as_deref()) {
        changes.push(change(
            Action::Delete,
            format!("{}-igw", desired.cluster),
            Some(g.id.clone()),
            Some(why("internet gateway", in_use.internet_gateway.as_deref())),
            Resource::InternetGateway,
        ));
    }
    for s in inv.subnets.iter().filter(|s| Some(s.id.as_str()) != in_use.subnet.as_deref()) {
        let reason = if Some(s.vpc_id.as_str()) == kept_vpc {
            why("subnet", in_use.subnet.as_deref())
        } else {
            format!("in {}, which goes", s.vpc_id)
        };
        let cidr = s.cidr.unwrap_or_else(unknown_cidr);
        changes.push(change(Action::Delete, cidr.to_string(), Some(s.id.clone()), Some(reason), Resource::Subnet { cidr }));
    }
    for v in inv.vpcs.iter().filter(|v| Some(v.id.as_str()) != kept_vpc) {
        let cidr = v.cidr.unwrap_or_else(unknown_cidr);
        changes.push(change(Action::Delete, cidr.to_string(), Some(v.id.clone()), Some(why("VPC", kept_vpc)), Resource::Vpc { cidr }));
    }
    Ok(())
}

fn attribute_change(attribute: Attribute, id: &str) -> Change {
    change(
        Action::Update,
        attribute.aws_name().to_string(),
        Some(id.to_string()),
        Some(format!("it is off; hybrid sets {} on what it creates", attribute.aws_name())),
        Resource::Attribute { attribute, value: true },
    )
}

/// The cluster's group in the VPC in use: rules diffed; groups elsewhere go.
fn security_groups(desired: &DesiredState, inv: &Inventory, in_use: &mut InUse, changes: &mut Vec<Change>) {
    let name = format!("{}-nodes", desired.cluster);
    let nodes = || inv.security_groups.iter().filter(|g| g.players_pool.is_none());
    let kept: Option<&SecurityGroup> = in_use.vpc.as_deref().and_then(|v| nodes().filter(|g| g.vpc_id == v).min_by(|a, b| a.id.cmp(&b.id)));
    in_use.security_group = kept.map(|g| g.id.clone());
    match kept {
        None => changes.push(change(
            Action::Create,
            name.clone(),
            None,
            None,
            Resource::SecurityGroup { add: desired.security_rules.iter().cloned().collect(), remove: Vec::new() },
        )),
        Some(sg) => {
            let have: std::collections::BTreeSet<_> = sg.rules.iter().map(SgRule::key).collect();
            let want: std::collections::BTreeSet<_> = desired.security_rules.iter().map(SgRule::key).collect();
            let add: Vec<SgRule> = desired.security_rules.iter().filter(|r| !have.contains(&r.key())).cloned().collect();
            let remove: Vec<SgRule> = sg.rules.iter().filter(|r| !want.contains(&r.key())).cloned().collect();
            if !add.is_empty() || !remove.is_empty() {
                changes.push(change(Action::Update, name.clone(), Some(sg.id.clone()), None, Resource::SecurityGroup { add, remove }));
            }
        }
    }
    for g in nodes().filter(|g| Some(g.id.as_str()) != in_use.security_group.as_deref()) {
        changes.push(change(
            Action::Delete,
            name.clone(),
            Some(g.id.clone()),
            Some(format!("in {}, which the cluster does not use", g.vpc_id)),
            Resource::SecurityGroup { add: vec![], remove: vec![] },
        ));
    }
    players_groups(desired, inv, in_use, changes);
}

/// Each pool's players' group in the VPC in use: created, rules diffed;
/// one of a pool without player ports (or in another VPC) goes, once its
/// nodes have left it (`plan::membership_changes`).
fn players_groups(desired: &DesiredState, inv: &Inventory, in_use: &mut InUse, changes: &mut Vec<Change>) {
    let found = |pool: &str| {
        inv.security_groups
            .iter()
            .filter(|g| g.players_pool.as_deref() == Some(pool) && Some(g.vpc_id.as_str()) == in_use.vpc.as_deref())
            .min_by(|a, b| a.id.cmp(&b.id))
    };
    for (pool, rules) in &desired.player_groups {
        let name = crate::infra::desired::player_group_name(&desired.cluster, pool);
        match found(pool) {
            None => changes.push(change(
                Action::Create,
                name,
                None,
                None,
                Resource::PlayersGroup { pool: pool.clone(), add: rules.iter().cloned().collect(), remove: Vec::new() },
            )),
            Some(g) => {
                in_use.players_groups.insert(pool.clone(), g.id.clone());
                let have: std::collections::BTreeSet<_> = g.rules.iter().map(SgRule::key).collect();
                let want: std::collections::BTreeSet<_> = rules.iter().map(SgRule::key).collect();
                let add: Vec<SgRule> = rules.iter().filter(|r| !have.contains(&r.key())).cloned().collect();
                let remove: Vec<SgRule> = g.rules.iter().filter(|r| !want.contains(&r.key())).cloned().collect();
                if !add.is_empty() || !remove.is_empty() {
                    changes.push(change(
                        Action::Update,
                        name,
                        Some(g.id.clone()),
                        None,
                        Resource::PlayersGroup { pool: pool.clone(), add, remove },
                    ));
                }
            }
        }
    }
    for g in inv.security_groups.iter().filter(|g| g.players_pool.is_some() && !in_use.players_groups.values().any(|id| *id == g.id)) {
        let pool = g.players_pool.clone().unwrap_or_default();
        let why = if desired.player_groups.contains_key(&pool) {
            "a duplicate, or in a VPC the cluster does not use".to_string()
        } else {
            format!("pool {pool} opens no player ports any more")
        };
        changes.push(change(
            Action::Delete,
            crate::infra::desired::player_group_name(&desired.cluster, &pool),
            Some(g.id.clone()),
            Some(why),
            Resource::PlayersGroup { pool, add: vec![], remove: vec![] },
        ));
    }
}

/// Every network resource found, for `destroy`: security groups, gateways,
/// subnets, VPCs (the order they can go in).
pub fn destroy_changes(cluster: &str, inv: &Inventory, changes: &mut Vec<Change>) {
    for g in inv.security_groups.iter().filter(|g| g.players_pool.is_some()) {
        let pool = g.players_pool.clone().unwrap_or_default();
        let name = crate::infra::desired::player_group_name(cluster, &pool);
        changes.push(change(Action::Delete, name, Some(g.id.clone()), None, Resource::PlayersGroup { pool, add: vec![], remove: vec![] }));
    }
    for g in inv.security_groups.iter().filter(|g| g.players_pool.is_none()) {
        changes.push(change(
            Action::Delete,
            format!("{cluster}-nodes"),
            Some(g.id.clone()),
            None,
            Resource::SecurityGroup { add: vec![], remove: vec![] },
        ));
    }
    for g in &inv.internet_gateways {
        changes.push(change(Action::Delete, format!("{cluster}-igw"), Some(g.id.clone()), None, Resource::InternetGateway));
    }
    for s in &inv.subnets {
        let cidr = s.cidr.unwrap_or_else(unknown_cidr);
        changes.push(change(Action::Delete, cidr.to_string(), Some(s.id.clone()), None, Resource::Subnet { cidr }));
    }
    for v in &inv.vpcs {
        let cidr = v.cidr.unwrap_or_else(unknown_cidr);
        changes.push(change(Action::Delete, cidr.to_string(), Some(v.id.clone()), None, Resource::Vpc { cidr }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::desired::{AmiMap, desired_state};
    use crate::infra::inventory::RouteTable;

    fn desired() -> DesiredState {
        let spec = crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))).spec.unwrap();
        desired_state(&spec, &AmiMap::new(), &Default::default())
    }

    fn cidrs(d: &DesiredState) -> (Ipv4Cidr, Ipv4Cidr) {
        let DesiredNetwork::Create { vpc_cidr, subnet_cidr } = d.network.clone() else { panic!() };
        (vpc_cidr, subnet_cidr)
    }

    /// A complete network `n` (ids vpc-n, subnet-n, igw-n, sg-n).
    fn network(d: &DesiredState, n: u8, inv: &mut Inventory) {
        let (vpc_cidr, subnet_cidr) = cidrs(d);
        let vpc = format!("vpc-{n}");
        inv.vpcs.push(Vpc { id: vpc.clone(), cidr: Some(vpc_cidr), dns_support: true, dns_hostnames: true });
        inv.subnets.push(Subnet { id: format!("subnet-{n}"), vpc_id: vpc.clone(), cidr: Some(subnet_cidr), map_public_ip_on_launch: true });
        inv.internet_gateways.push(Gateway { id: format!("igw-{n}"), vpc_id: Some(vpc.clone()) });
        inv.route_tables.push(RouteTable { id: format!("rtb-{n}"), vpc_id: vpc.clone(), default_route: Some(format!("igw-{n}")) });
        inv.security_groups.push(SecurityGroup {
            id: format!("sg-{n}"),
            vpc_id: vpc,
            rules: d.security_rules.iter().cloned().collect(),
            players_pool: None,
        });
    }

    /// (action, resource kind, id) of each change.
    type Seen = (Action, &'static str, Option<String>);

    fn plan_of(d: &DesiredState, inv: &Inventory) -> (Vec<Seen>, InUse) {
        let mut changes = Vec::new();
        let in_use = network_changes(d, inv, &mut changes).unwrap();
        (changes.into_iter().map(|c| (c.action, c.resource.kind(), c.id)).collect(), in_use)
    }

    #[test]
    fn a_complete_network_needs_nothing() {
        let d = desired();
        let mut inv = Inventory::default();
        network(&d, 1, &mut inv);
        let (changes, in_use) = plan_of(&d, &inv);
        assert_eq!(changes, []);
        assert_eq!(in_use.vpc.as_deref(), Some("vpc-1"));
        assert_eq!(in_use.security_group.as_deref(), Some("sg-1"));
    }

    #[test]
    fn attributes_left_off_by_a_killed_apply_are_repaired() {
        let d = desired();
        let mut inv = Inventory::default();
        network(&d, 1, &mut inv);
        inv.vpcs[0].dns_hostnames = false;
        inv.subnets[0].map_public_ip_on_launch = false;
        let (changes, _) = plan_of(&d, &inv);
        assert_eq!(
            changes,
            [(Action::Update, "vpc_attribute", Some("vpc-1".into())), (Action::Update, "subnet_attribute", Some("subnet-1".into()))]
        );
    }

    #[test]
    fn a_duplicate_vpc_goes_with_everything_in_it_and_the_one_with_instances_stays() {
        let d = desired();
        let mut inv = Inventory::default();
        network(&d, 1, &mut inv);
        network(&d, 2, &mut inv);
        // The nodes run in vpc-2, so vpc-2 is the cluster's whatever the ids say.
        inv.instances.push(crate::infra::inventory::Instance {
            id: "i-1".into(),
            slot: "control-plane".into(),
            group: "control-plane".into(),
            spec_hash: String::new(),
            kubernetes_version: String::new(),
            cni: String::new(),
            state: "running".into(),
            instance_type: "t3.large".into(),
            image_id: "ami-1".into(),
            private_ip: None,
            private_dns: None,
            public_ip: None,
            vpc_id: Some("vpc-2".into()),
            subnet_id: Some("subnet-2".into()),
            instance_profile: None,
            security_groups: Vec::new(),
            launch_time: String::new(),
        });
        let (changes, in_use) = plan_of(&d, &inv);
        assert_eq!(in_use.vpc.as_deref(), Some("vpc-2"));
        let deleted: Vec<&str> = changes.iter().filter(|c| c.0 == Action::Delete).filter_map(|c| c.2.as_deref()).collect();
        assert_eq!(deleted, ["igw-1", "subnet-1", "vpc-1", "sg-1"]);
        assert_eq!(changes.len(), 4, "{changes:?}");
    }

    #[test]
    fn a_detached_gateway_is_reused_and_a_second_one_goes() {
        let d = desired();
        let (vpc_cidr, _) = cidrs(&d);
        let inv = Inventory {
            vpcs: vec![Vpc { id: "vpc-1".into(), cidr: Some(vpc_cidr), dns_support: true, dns_hostnames: true }],
            internet_gateways: vec![Gateway { id: "igw-b".into(), vpc_id: None }, Gateway { id: "igw-a".into(), vpc_id: None }],
            ..Default::default()
        };
        let (changes, in_use) = plan_of(&d, &inv);
        assert_eq!((in_use.internet_gateway.as_deref(), in_use.gateway_detached), (Some("igw-a"), true));
        assert!(changes.contains(&(Action::Create, "route", None)), "{changes:?}");
        assert!(changes.contains(&(Action::Delete, "internet_gateway", Some("igw-b".into()))), "{changes:?}");
        assert!(!changes.iter().any(|c| c.1 == "internet_gateway" && c.0 == Action::Create), "{changes:?}");
    }
}
