//! Planning: every change `apply` (or `destroy`) will make. Pure: desired
//! state and inventory in, a `Plan` (plain data, in `changes`) out; the
//! network part is `network`, the instance part is here. `show` renders the
//! plan; `execute` carries it out.

use std::collections::BTreeMap;

pub use crate::infra::changes::{Action, Attribute, Change, InUse, Plan, PlanError, Resource, Summary};
use crate::infra::desired::{CONTROL_PLANE, DesiredInstance, DesiredState, InstanceProfile, Source};
use crate::infra::inventory::{Instance, Inventory};
use crate::infra::network::{self, network_changes};

/// Changes that bring `actual` to `desired`.
pub fn plan(desired: &DesiredState, actual: &Inventory, offline: bool) -> Result<Plan, PlanError> {
    let mut changes = Vec::new();
    let in_use = network_changes(desired, actual, &mut changes)?;
    changes.extend(desired.instance_profiles.iter().filter_map(|want| profile_change(want, actual)));
    for p in &desired.parameters {
        if !actual.parameters.contains(&p.name) {
            changes.push(Change {
                action: Action::Create,
                name: p.name.clone(),
                id: None,
                reason: None,
                resource: Resource::Parameter { name: p.name.clone(), holds: Some(p.kind) },
            });
        }
    }
    instance_changes(desired, actual, &mut changes);
    membership_changes(desired, actual, &in_use, &mut changes);
    let mut notes = control_plane_notes(desired, actual, &changes);
    notes.extend(fallback_notes(desired, actual));
    let images = desired.image_notes.clone();
    Ok(Plan { cluster: desired.cluster.clone(), region: desired.region.clone(), offline, destroy: false, changes, in_use, images, notes })
}

/// Nodes running a fallback type (EC2 had no capacity for the preferred
/// one when they were launched), per pool: nothing to change, but worth
/// knowing (cost, performance).
fn fallback_notes(desired: &DesiredState, actual: &Inventory) -> Vec<String> {
    let mut by_pool: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    for i in &actual.instances {
        let Some(want) = desired.instances.get(&i.slot) else { continue };
        if i.instance_type != want.instance_type && want.allows_type(&i.instance_type) {
            by_pool.entry((&want.group, &i.instance_type, &want.instance_type)).or_default().push(&i.slot);
        }
    }
    by_pool
        .into_iter()
        .map(|((pool, running, preferred), mut slots)| {
            slots.sort_by_key(|s| slot_order(s));
            format!(
                "pool {pool}: {} run{} {running}, a fallback of {preferred} (EC2 had no capacity for it at launch)",
                slots.join(", "),
                if slots.len() == 1 { "s" } else { "" }
            )
        })
        .collect()
}

/// A control plane that stays although the file names another patch
/// release: said in plain words, since nothing in the changes shows it.
fn control_plane_notes(desired: &DesiredState, actual: &Inventory, changes: &[Change]) -> Vec<String> {
    let Some(want) = desired.instances.get(CONTROL_PLANE) else { return Vec::new() };
    if changes.iter().any(|c| c.name == CONTROL_PLANE && matches!(c.resource, Resource::Instance { .. })) {
        return Vec::new();
    }
    let mut running: Vec<&Instance> = actual.instances.iter().filter(|i| i.slot == CONTROL_PLANE).collect();
    if running.is_empty() {
        return Vec::new();
    }
    // The same instance `instance_changes` keeps (it wants them oldest first).
    running.sort_by(|a, b| (&a.launch_time, &a.id).cmp(&(&b.launch_time, &b.id)));
    let keep = keeper(&running, want);
    let mut differs = Vec::new();
    if !keep.kubernetes_version.is_empty() && keep.kubernetes_version != want.kubernetes_version {
        differs.push(format!("Kubernetes {} (the file asks for {})", keep.kubernetes_version, want.kubernetes_version));
    }
    if !keep.cni.is_empty() && keep.cni != want.cni {
        differs.push(format!("{} (the file asks for {})", keep.cni, want.cni));
    }
    if differs.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "The control plane keeps {}: a patch release is not a reason to recreate the cluster, and hybrid does not upgrade a running control plane in place (run `kubeadm upgrade apply` on it to move it). Workers join it on the file's versions, which kubeadm allows within a minor release.",
        differs.join(" and ")
    )]
}

/// An instance profile: created when missing, completed (or its policy
/// put back) when an interrupted apply or a hand edit left it different.
fn profile_change(want: &InstanceProfile, actual: &Inventory) -> Option<Change> {
    let same_policy =
        |found: &str| serde_json::from_str::<serde_json::Value>(found).ok() == serde_json::from_str::<serde_json::Value>(&want.policy).ok();
    let (action, reason) = match actual.instance_profiles.iter().find(|p| p.name == want.name) {
        None => (Action::Create, None),
        Some(f) if f.role && f.profile && f.profile_has_role && f.policy.as_deref().is_some_and(same_policy) => return None,
        Some(f) if !(f.role && f.profile && f.profile_has_role) => {
            (Action::Update, Some("it is incomplete (an interrupted apply): role, profile and policy are completed".to_string()))
        }
        Some(_) => (Action::Update, Some(format!("its policy differs from the one hybrid sets (it {})", want.allows))),
    };
    Some(Change { action, name: want.name.clone(), id: None, reason, resource: Resource::InstanceProfile })
}

/// Instances that stay but are not in the security groups their pool's
/// player ports ask for: they join their pool's players' group, or leave
/// one it no longer has (a new instance gets its groups at launch).
fn membership_changes(desired: &DesiredState, actual: &Inventory, in_use: &InUse, changes: &mut Vec<Change>) {
    let players: std::collections::BTreeSet<&str> =
        actual.security_groups.iter().filter(|g| g.players_pool.is_some()).map(|g| g.id.as_str()).collect();
    let launched_anew = |id: &str| changes.iter().any(|c| c.id.as_deref() == Some(id) && c.resource.kind() == "instance");
    let mut out = Vec::new();
    for i in actual.instances.iter().filter(|i| desired.instances.contains_key(&i.slot) && !launched_anew(&i.id)) {
        let wanted = desired.player_groups.contains_key(&i.group).then(|| i.group.clone());
        let member_of: Vec<&str> = i.security_groups.iter().map(String::as_str).filter(|g| players.contains(g)).collect();
        let right = match &wanted {
            Some(pool) => in_use.players_groups.get(pool).is_some_and(|id| member_of == [id.as_str()]),
            None => member_of.is_empty(),
        };
        if !right {
            let reason = match &wanted {
                Some(pool) => format!("it joins the players' group of pool {pool}"),
                None => "it leaves a players' group its pool no longer has".to_string(),
            };
            out.push(Change {
                action: Action::Update,
                name: i.slot.clone(),
                id: Some(i.id.clone()),
                reason: Some(reason),
                resource: Resource::Membership { players: wanted },
            });
        }
    }
    changes.extend(out);
}

fn instance_changes(desired: &DesiredState, actual: &Inventory, changes: &mut Vec<Change>) {
    let mut by_slot: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for i in &actual.instances {
        by_slot.entry(i.slot.as_str()).or_default().push(i);
    }
    for list in by_slot.values_mut() {
        list.sort_by(|a, b| (&a.launch_time, &a.id).cmp(&(&b.launch_time, &b.id)));
    }
    let mut instance_changes = Vec::new();
    let recreate = desired.instances.get(CONTROL_PLANE).and_then(|want| {
        let keep = keeper(by_slot.get(CONTROL_PLANE)?, want);
        (keep.spec_hash != want.spec_hash && want.ami.is_some()).then(|| control_plane_reason(keep, want))
    });
    for (slot, want) in &desired.instances {
        let found = by_slot.get(slot.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let instance = |action, id: Option<String>, reason: Option<String>, desired: Option<DesiredInstance>| Change {
            action,
            name: slot.clone(),
            id,
            reason,
            resource: Resource::Instance { desired },
        };
        if found.is_empty() {
            instance_changes.push(instance(Action::Create, None, None, Some(want.clone())));
            continue;
        }
        let keep = keeper(found, want);
        // A node on a type the pool no longer lists is stale too (the hash
        // knows only the preferred type; fallbacks come and go freely).
        let stale = (keep.spec_hash != want.spec_hash && want.ami.is_some())
            || (!keep.instance_type.is_empty() && !want.allows_type(&keep.instance_type));
        let change = match (&recreate, slot.as_str() == CONTROL_PLANE) {
            (Some(why), true) => Some((Action::Recreate, why.clone())),
            (Some(_), false) if stale => {
                Some((Action::Replace, format!("{}, and it must join the recreated control plane", worker_reason(keep, want))))
            }
            (Some(_), false) => Some((Action::Replace, "it must join the recreated control plane".to_string())),
            (None, false) if stale => Some((Action::Replace, worker_reason(keep, want))),
            // A stopped instance is there but is no node: started again
            // (its disk, and the node's identity, are as they were).
            (None, _) if matches!(keep.state.as_str(), "stopped" | "stopping") => {
                Some((Action::Update, format!("{} is {}: start it", keep.id, keep.state)))
            }
            (None, _) => None,
        };
        if let Some((action, reason)) = change {
            instance_changes.push(instance(action, Some(keep.id.clone()), Some(reason), Some(want.clone())));
        }
        for dup in found.iter().filter(|i| i.id != keep.id) {
            instance_changes.push(instance(
                Action::Delete,
                Some(dup.id.clone()),
                Some(format!("duplicate of {} in slot {slot}, left by an interrupted apply", keep.id)),
                None,
            ));
        }
    }
    let pools: BTreeMap<&str, usize> = desired.instances.values().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(d.group.as_str()).or_default() += 1;
        m
    });
    for (slot, found) in &by_slot {
        if desired.instances.contains_key(*slot) {
            continue;
        }
        for i in found {
            let reason = match pools.get(i.group.as_str()) {
                Some(n) => format!("pool {} shrinks to {n}", i.group),
                None if i.group == CONTROL_PLANE => "control plane not in the file".to_string(),
                None => format!("pool {} is no longer in the file", i.group),
            };
            instance_changes.push(Change {
                action: Action::Delete,
                name: slot.to_string(),
                id: Some(i.id.clone()),
                reason: Some(reason),
                resource: Resource::Instance { desired: None },
            });
        }
    }
    instance_changes.sort_by(|a, b| slot_order(&a.name).cmp(&slot_order(&b.name)).then(a.action.cmp(&b.action)));
    changes.extend(instance_changes);
}

/// Control plane first, then pools by name and slots by number (so
/// `pool-10` sorts after `pool-9`).
fn slot_order(slot: &str) -> (bool, &str, u64) {
    match slot.rsplit_once('-').and_then(|(p, n)| n.parse().ok().map(|n| (p, n))) {
        _ if slot == CONTROL_PLANE => (false, "", 0),
        Some((pool, n)) => (true, pool, n),
        None => (true, slot, 0),
    }
}

/// Of several instances in one slot (an interrupted apply or rolling
/// replacement), the one to keep: the oldest that matches the file, else
/// the oldest. `found` is sorted oldest first and not empty.
fn keeper<'i>(found: &[&'i Instance], want: &DesiredInstance) -> &'i Instance {
    found.iter().find(|i| i.spec_hash == want.spec_hash).unwrap_or(&found[0])
}

/// Changes of a version, in words, when the instance carries the tag.
fn version_changes(actual: &Instance, want: &DesiredInstance, why: &mut Vec<String>) {
    if !actual.kubernetes_version.is_empty() && actual.kubernetes_version != want.kubernetes_version {
        why.push(format!("Kubernetes {} → {}", actual.kubernetes_version, want.kubernetes_version));
    }
    if !want.cni.is_empty() && !actual.cni.is_empty() && actual.cni != want.cni {
        why.push(format!("CNI {} → {}", actual.cni, want.cni));
    }
    if !want.allows_type(&actual.instance_type) {
        why.push(format!("instance type {} → {}", actual.instance_type, want.instance_type));
    }
}

fn worker_reason(actual: &Instance, want: &DesiredInstance) -> String {
    let mut why = Vec::new();
    if let Some(ami) = &want.ami
        && ami.id != actual.image_id
    {
        why.push(format!("image {} → {}", actual.image_id, ami.id));
    }
    version_changes(actual, want, &mut why);
    if why.is_empty() {
        why.push("its bootstrap (hybrid's templates or the file's [kubernetes]/[cni] settings), disk or spot setting changed".into());
    }
    why.join(", ")
}

/// Why the control plane (and with it the cluster) must be recreated.
fn control_plane_reason(actual: &Instance, want: &DesiredInstance) -> String {
    let mut why = Vec::new();
    if actual.kubernetes_version.is_empty() {
        why.push("it was created by an older hybrid that recorded no control-plane identity".to_string());
    }
    version_changes(actual, want, &mut why);
    if why.iter().any(|w| w.starts_with("Kubernetes") || w.starts_with("CNI")) {
        why.push("hybrid does not upgrade a running control plane in place".into());
    }
    if why.is_empty() {
        why.push("its disk, pinned image, address, VXLAN VNI or port, or the cluster's pod or service CIDRs changed".into());
    }
    why.join(", ")
}

/// Everything found goes, instances first.
pub fn plan_destroy(cluster: &str, region: &str, actual: &Inventory) -> Plan {
    let mut changes = Vec::new();
    let mut instances: Vec<&Instance> = actual.instances.iter().collect();
    instances.sort_by(|a, b| slot_order(&a.slot).cmp(&slot_order(&b.slot)).then(a.id.cmp(&b.id)));
    for i in instances {
        changes.push(Change {
            action: Action::Delete,
            name: i.slot.clone(),
            id: Some(i.id.clone()),
            reason: None,
            resource: Resource::Instance { desired: None },
        });
    }
    network::destroy_changes(cluster, actual, &mut changes);
    for p in &actual.instance_profiles {
        changes.push(Change { action: Action::Delete, name: p.name.clone(), id: None, reason: None, resource: Resource::InstanceProfile });
    }
    for p in &actual.parameters {
        changes.push(Change {
            action: Action::Delete,
            name: p.clone(),
            id: None,
            reason: None,
            resource: Resource::Parameter { name: p.clone(), holds: None },
        });
    }
    Plan {
        cluster: cluster.to_string(),
        region: region.to_string(),
        offline: false,
        destroy: true,
        changes,
        in_use: InUse::default(),
        images: BTreeMap::new(),
        notes: Vec::new(),
    }
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Source::Cluster => "cluster nodes".into(),
            Source::Cidr(c) => c.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::desired::{AmiMap, ResolvedAmi, desired_state};
    use crate::infra::desired::{DesiredNetwork, SgRule};
    use crate::infra::inventory::{Gateway, RouteTable, SecurityGroup, Subnet, Vpc};
    use crate::model::net::Ipv4Cidr;

    fn dev() -> crate::model::ClusterSpec {
        crate::config::load(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"))).spec.unwrap()
    }

    fn amis(linux: &str, windows: &str) -> AmiMap {
        let ami = |id: &str| ResolvedAmi { id: id.into(), name: "n".into(), root_device: "/dev/sda1".into() };
        [("control-plane", linux), ("game-servers", linux), ("win-tools", windows)]
            .into_iter()
            .map(|(g, a)| (g.to_string(), ami(a)))
            .collect()
    }

    /// Desired state with real bootstrap fingerprints (the built-in templates).
    fn desired_for(spec: &crate::model::ClusterSpec, amis: &AmiMap) -> DesiredState {
        let fingerprints = crate::bootstrap::Renderer::new(spec, &crate::bootstrap::Templates::builtin()).fingerprints().unwrap();
        desired_state(spec, amis, &fingerprints)
    }

    fn desired() -> DesiredState {
        desired_state(&dev(), &amis("ami-1", "ami-2"), &BTreeMap::new())
    }

    fn actions(p: &Plan) -> Vec<(Action, &str)> {
        p.changes.iter().map(|c| (c.action, c.name.as_str())).collect()
    }

    #[test]
    fn a_patch_release_rolls_the_workers_and_keeps_the_control_plane_with_a_note() {
        let spec = dev();
        let before = desired_for(&spec, &amis("ami-1", "ami-2"));
        let running = applied(&before);
        let mut bumped = spec.clone();
        bumped.kubernetes_version.patch += 1;
        bumped.containerd_version = "9.9.9".into();
        let p = plan(&desired_for(&bumped, &amis("ami-1", "ami-2")), &running, false).unwrap();
        assert!(!p.recreates_cluster(), "{:?}", actions(&p));
        assert!(p.changes.iter().all(|c| c.name != CONTROL_PLANE), "{:?}", actions(&p));
        // Every worker's bootstrap installs the new patch: they roll.
        let workers: Vec<_> = p.changes.iter().filter(|c| c.action == Action::Replace).collect();
        assert_eq!(workers.len(), before.instances.len() - 1, "{:?}", actions(&p));
        assert!(workers.iter().all(|c| p.rolls(c)));
        let old = spec.kubernetes_version.to_string();
        let new = bumped.kubernetes_version.to_string();
        assert!(workers[0].reason.as_deref().unwrap().contains(&format!("Kubernetes {old} → {new}")), "{:?}", workers[0].reason);
        let text = crate::infra::show::plan_text(&p);
        assert!(!text.contains("RECREATES"), "{text}");
        assert!(text.contains(&format!("The control plane keeps Kubernetes {old} (the file asks for {new})")), "{text}");

        // The same patch release once the workers rolled: no change, and the note stays.
        let mut rolled = applied(&desired_for(&bumped, &amis("ami-1", "ami-2")));
        rolled.instances.retain(|i| i.slot != CONTROL_PLANE);
        rolled.instances.extend(running.instances.iter().filter(|i| i.slot == CONTROL_PLANE).cloned());
        let p = plan(&desired_for(&bumped, &amis("ami-1", "ami-2")), &rolled, false).unwrap();
        assert!(p.is_empty(), "{:?}", actions(&p));
        assert!(crate::infra::show::plan_text(&p).contains("No changes.") && p.notes.len() == 1, "{:?}", p.notes);
    }

    #[test]
    fn a_new_kubernetes_minor_recreates_the_cluster_in_plain_words() {
        let spec = dev();
        let before = desired_for(&spec, &amis("ami-1", "ami-2"));
        let mut bumped = spec.clone();
        bumped.kubernetes_version.minor += 1;
        let p = plan(&desired_for(&bumped, &amis("ami-1", "ami-2")), &applied(&before), false).unwrap();
        assert!(p.recreates_cluster());
        assert_eq!(p.changes[0].action, Action::Recreate);
        assert_eq!(p.changes[0].action.symbol(), "-/+!");
        let why = p.changes[0].reason.as_deref().unwrap();
        assert!(why.contains(&format!("Kubernetes {} → {}", spec.kubernetes_version, bumped.kubernetes_version)), "{why}");
        assert!(why.contains("does not upgrade a running control plane in place"), "{why}");
        // Every worker joins the new control plane, all at once (nothing to roll).
        assert!(p.changes[1..].iter().all(|c| c.action == Action::Replace && !p.rolls(c)), "{:?}", actions(&p));
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        let text = crate::infra::show::plan_text(&p);
        assert!(text.contains("Warning: this plan RECREATES THE CLUSTER."), "{text}");
        assert!(text.contains("--recreate-control-plane"), "{text}");
    }

    #[test]
    fn minor_release_cuts_after_the_second_number() {
        assert_eq!(crate::infra::desired::minor_release("3.32.1"), "3.32");
        assert_eq!(crate::infra::desired::minor_release("0.28"), "0.28");
        assert_eq!(crate::infra::desired::minor_release("2"), "2");
    }

    #[test]
    fn pools_labels_taints_and_a_newer_public_image_leave_the_control_plane_alone() {
        let spec = dev();
        let before = desired_for(&spec, &amis("ami-1", "ami-2"));
        let running = applied(&before);

        // Labels and taints: nothing is replaced (apply writes them through the API).
        let mut relabelled = spec.clone();
        relabelled.pools[1].labels.insert("team".into(), "tools".into());
        relabelled.pools[1].taints.clear();
        assert_eq!(actions(&plan(&desired_for(&relabelled, &amis("ami-1", "ami-2")), &running, false).unwrap()), []);

        // Removing the only Windows pool removes its nodes and the RDP rule, nothing else.
        let mut linux_only = spec.clone();
        linux_only.pools.retain(|p| !p.os.is_windows());
        let p = plan(&desired_for(&linux_only, &amis("ami-1", "ami-2")), &running, false).unwrap();
        assert_eq!(actions(&p), [(Action::Update, "dev-nodes"), (Action::Delete, "win-tools-0")]);

        // A newer public Ubuntu image: workers roll, the control plane stays.
        let p = plan(&desired_for(&spec, &amis("ami-9", "ami-2")), &running, false).unwrap();
        assert_eq!(actions(&p), [(Action::Replace, "game-servers-0"), (Action::Replace, "game-servers-1")]);
        assert!(p.changes.iter().all(|c| p.rolls(c)));
        assert_eq!(p.changes[0].reason.as_deref(), Some("image ami-1 → ami-9"));
        let text = crate::infra::show::plan_text(&p);
        assert!(text.contains("Pool game-servers: 2 node(s) replaced rolling, 1 at a time"), "{text}");

        // A pinned image is part of the control plane's identity.
        let mut pinned = spec.clone();
        pinned.control_plane.ami = Some(crate::model::AmiRef::Id("ami-1".into()));
        let p = plan(&desired_for(&pinned, &amis("ami-9", "ami-2")), &running, false).unwrap();
        assert!(p.recreates_cluster());
    }

    #[test]
    fn an_incomplete_or_widened_instance_profile_is_put_back() {
        let d = desired();
        let mut inv = applied(&d);
        let found = &mut inv.instance_profiles[1];
        found.profile_has_role = false;
        let p = plan(&d, &inv, false).unwrap();
        assert_eq!(actions(&p), [(Action::Update, d.instance_profiles[1].name.as_str())]);
        assert!(p.changes[0].reason.as_deref().unwrap().contains("incomplete"));

        let found = &mut inv.instance_profiles[1];
        found.profile_has_role = true;
        found.policy = Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:*","Resource":"*"}]}"#.into());
        let p = plan(&d, &inv, false).unwrap();
        let reason = p.changes[0].reason.as_deref().unwrap();
        assert!(reason.contains("policy differs") && reason.contains("join-token"), "{reason}");

        // The same policy with other whitespace is the same policy.
        let pretty =
            serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(&d.instance_profiles[1].policy).unwrap()).unwrap();
        inv.instance_profiles[1].policy = Some(pretty);
        assert!(plan(&d, &inv, false).unwrap().is_empty());

        // A missing workers' profile (a cluster from before workers had one) is created alone.
        inv.instance_profiles.pop();
        assert_eq!(actions(&plan(&d, &inv, false).unwrap()), [(Action::Create, d.instance_profiles[1].name.as_str())]);
    }

    #[test]
    fn of_duplicates_the_one_matching_the_file_is_kept() {
        let d = desired();
        let mut inv = applied(&d);
        let mut old = inv.instances[1].clone();
        old.id = "i-old".into();
        old.spec_hash = "stale".into();
        old.launch_time = "2026-11-23T09:00:00Z".into();
        inv.instances.push(old);
        let p = plan(&d, &inv, false).unwrap();
        assert_eq!(p.changes.len(), 1);
        assert_eq!((p.changes[0].action, p.changes[0].id.as_deref()), (Action::Delete, Some("i-old")));
    }

    /// The inventory a successful apply of `d` leaves behind.
    fn applied(d: &DesiredState) -> Inventory {
        let DesiredNetwork::Create { vpc_cidr, subnet_cidr } = d.network.clone() else { panic!() };
        Inventory {
            vpcs: vec![Vpc { id: "vpc-1".into(), cidr: Some(vpc_cidr), dns_support: true, dns_hostnames: true }],
            subnets: vec![Subnet { id: "subnet-1".into(), vpc_id: "vpc-1".into(), cidr: Some(subnet_cidr), map_public_ip_on_launch: true }],
            internet_gateways: vec![Gateway { id: "igw-1".into(), vpc_id: Some("vpc-1".into()) }],
            route_tables: vec![RouteTable { id: "rtb-1".into(), vpc_id: "vpc-1".into(), default_route: Some("igw-1".into()) }],
            security_groups: vec![SecurityGroup {
                id: "sg-1".into(),
                vpc_id: "vpc-1".into(),
                rules: d.security_rules.iter().cloned().collect(),
                players_pool: None,
            }],
            instance_profiles: d
                .instance_profiles
                .iter()
                .map(|p| crate::infra::inventory::FoundProfile {
                    name: p.name.clone(),
                    role: true,
                    policy: Some(p.policy.clone()),
                    profile: true,
                    profile_has_role: true,
                })
                .collect(),
            parameters: d.parameters.iter().map(|p| p.name.clone()).collect(),
            instances: d
                .instances
                .values()
                .enumerate()
                .map(|(n, i)| Instance {
                    id: format!("i-{n}"),
                    slot: i.slot.clone(),
                    group: i.group.clone(),
                    spec_hash: i.spec_hash.clone(),
                    kubernetes_version: i.kubernetes_version.clone(),
                    cni: i.cni.clone(),
                    state: "running".into(),
                    instance_type: i.instance_type.clone(),
                    image_id: i.ami.as_ref().unwrap().id.clone(),
                    private_ip: None,
                    private_dns: None,
                    public_ip: None,
                    vpc_id: Some("vpc-1".into()),
                    subnet_id: Some("subnet-1".into()),
                    instance_profile: None,
                    security_groups: Vec::new(),
                    launch_time: "2026-11-23T10:00:00Z".into(),
                })
                .collect(),
            expires: None,
        }
    }

    #[test]
    fn from_nothing_everything_is_created() {
        let p = plan(&desired(), &Inventory::default(), false).unwrap();
        // VPC, subnet, gateway, route, security group, 2 instance profiles, secrets and CA certificate, 4 instances.
        assert_eq!(p.summary(), Summary { add: 4 + 1 + 2 + 2 + 4, change: 0, destroy: 0 });
    }

    #[test]
    fn after_apply_there_is_nothing_to_do() {
        let d = desired();
        assert!(plan(&d, &applied(&d), false).unwrap().is_empty());
    }

    #[test]
    fn count_changes_add_or_remove_the_highest_slots() {
        let d = desired();
        let mut inv = applied(&d);
        let mut extra = inv.instances.iter().find(|i| i.slot == "game-servers-1").unwrap().clone();
        extra.slot = "game-servers-2".into();
        extra.id = "i-9".into();
        inv.instances.push(extra);
        let p = plan(&d, &inv, false).unwrap();
        assert_eq!(p.changes.len(), 1);
        assert_eq!((p.changes[0].action, p.changes[0].name.as_str()), (Action::Delete, "game-servers-2"));
        assert_eq!(p.changes[0].reason.as_deref(), Some("pool game-servers shrinks to 2"));
    }

    #[test]
    fn changed_image_or_type_is_a_replacement_with_its_reason() {
        let d = desired();
        let mut inv = applied(&d);
        let w = inv.instances.iter_mut().find(|i| i.slot == "win-tools-0").unwrap();
        w.image_id = "ami-old".into();
        w.instance_type = "m5.xlarge".into();
        w.spec_hash = "stale".into();
        let p = plan(&d, &inv, false).unwrap();
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.changes[0].action, Action::Replace);
        assert_eq!(p.changes[0].reason.as_deref(), Some("image ami-old → ami-2, instance type m5.xlarge → m6i.xlarge"));
        assert!(p.rolls(&p.changes[0]));
    }

    #[test]
    fn duplicates_from_an_interrupted_apply_are_removed_keeping_the_oldest() {
        let d = desired();
        let mut inv = applied(&d);
        let mut dup = inv.instances[0].clone();
        dup.id = "i-dup".into();
        dup.launch_time = "2026-11-23T10:00:05Z".into();
        inv.instances.push(dup);
        let p = plan(&d, &inv, false).unwrap();
        assert_eq!(p.changes.len(), 1);
        assert_eq!((p.changes[0].action, p.changes[0].id.as_deref()), (Action::Delete, Some("i-dup")));
    }

    #[test]
    fn security_group_rules_are_diffed() {
        let d = desired();
        let mut inv = applied(&d);
        let sg = &mut inv.security_groups[0];
        sg.rules.retain(|r| r.from_port != 4789);
        sg.rules.push(SgRule {
            protocol: "tcp".into(),
            from_port: 22,
            to_port: 22,
            source: Source::Cidr(Ipv4Cidr::parse("0.0.0.0/0").unwrap()),
            description: "old".into(),
        });
        let p = plan(&d, &inv, false).unwrap();
        assert_eq!(p.changes.len(), 1);
        let Resource::SecurityGroup { add, remove } = &p.changes[0].resource else { panic!() };
        assert_eq!((add.len(), remove.len()), (1, 1));
        assert_eq!(add[0].from_port, 4789);
    }

    #[test]
    fn a_changed_vpc_cidr_is_refused() {
        let d = desired();
        let mut inv = applied(&d);
        inv.vpcs[0].cidr = Some(Ipv4Cidr::parse("10.9.0.0/16").unwrap());
        assert!(matches!(plan(&d, &inv, false), Err(PlanError::NetworkChanged { .. })));
    }

    #[test]
    fn destroy_removes_everything_found() {
        let d = desired();
        let p = plan_destroy("dev", "us-east-1", &applied(&d));
        assert_eq!(p.summary(), Summary { add: 0, change: 0, destroy: 4 + 1 + 1 + 1 + 1 + 2 + 2 });
        assert!(p.changes.iter().take(4).all(|c| c.resource.kind() == "instance"), "instances go first");
    }
}
