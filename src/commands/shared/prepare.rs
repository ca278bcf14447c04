//! Preparing a plan, the sequence plan and apply share: discover → resolve
//! images (stock, or baked where a pool may use one) → secrets → render →
//! desired → plan. The pure stages do the
//! thinking; this file sequences the I/O around them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::adapters::Cloud;
use crate::adapters::clock::rfc3339_from_now;
use crate::bootstrap::pki::{BootstrapToken, ClusterSecrets};
use crate::bootstrap::{NodeBootstrap, Renderer, Templates, templates};
use crate::error::{Error, Result};
use crate::infra::desired::{AmiMap, CONTROL_PLANE, DesiredState, ResolvedAmi, ami_lookup, desired_state, secrets_parameter_name};
use crate::infra::images::{self, BakeTarget};
use crate::infra::inventory::Inventory;
use crate::infra::plan::{self, Plan};
use crate::model::{AmiRef, ClusterSpec, ImageChoice, NodeOs, Pool};

pub fn load_templates(dir: Option<&Path>) -> Result<Templates> {
    let Some(dir) = dir else { return Ok(Templates::builtin()) };
    let mut overrides = Vec::new();
    for (name, _) in templates::BUILTIN {
        let path = dir.join(templates::file_name(name));
        if path.exists() {
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
            overrides.push((name.to_string(), text));
        }
    }
    if overrides.is_empty() {
        eprintln!(
            "warning: {} holds none of hybrid's templates (e.g. {}); using the built-in ones",
            dir.display(),
            templates::file_name(templates::BUILTIN[0].0)
        );
    }
    Ok(Templates::from_sources(overrides)?)
}

/// Everything needed to show a plan and then carry it out.
pub struct Prepared {
    pub plan: Plan,
    pub desired: DesiredState,
    pub inventory: Inventory,
    pub secrets: ClusterSecrets,
    /// The token the nodes this run launches join with: the control
    /// plane's own init token when this run creates the control plane (its
    /// workers can join as soon as kubeadm init is done, hybrid or not),
    /// else a fresh one (each apply's joins get their own).
    pub join_token: BootstrapToken,
    pub bootstraps: BTreeMap<String, NodeBootstrap>,
    /// What the region said about the file (offered types, images): kept
    /// so that a plan made again under the lock asks only what a run can
    /// change (what exists, the stored secrets).
    looked_up: LookedUp,
}

/// The region's answers that no hybrid run changes: the instance types are
/// offered, and which image each group boots from, with why.
#[derive(Clone)]
struct LookedUp {
    amis: AmiMap,
    image_notes: BTreeMap<String, String>,
}

/// Plans against what runs. Reads only: no AWS writes.
pub async fn prepare<C: Cloud>(cloud: &C, spec: &ClusterSpec, templates: &Templates) -> Result<Prepared> {
    // What runs, what the region offers, the images and the secrets: none
    // waits for another, so they are asked at once.
    let renderer = Renderer::new(spec, templates);
    let (inventory, looked_up, stored) =
        tokio::try_join!(async { cloud.discover(&spec.name).await.map_err(Error::from) }, look_up(cloud, &renderer), async {
            cloud.get_parameter(&secrets_parameter_name(&spec.name)).await.map_err(Error::from)
        },)?;
    assemble(&renderer, inventory, stored, looked_up)
}

/// Plans again, as `prepare`, but asks AWS only what another run may have
/// changed since `earlier` (what exists, the stored secrets): the plan
/// apply makes under the lock, a round trip or two from far away.
pub async fn prepare_again<C: Cloud>(cloud: &C, spec: &ClusterSpec, templates: &Templates, earlier: &Prepared) -> Result<Prepared> {
    let (inventory, stored) = tokio::try_join!(async { cloud.discover(&spec.name).await.map_err(Error::from) }, async {
        cloud.get_parameter(&secrets_parameter_name(&spec.name)).await.map_err(Error::from)
    },)?;
    assemble(&Renderer::new(spec, templates), inventory, stored, earlier.looked_up.clone())
}

async fn look_up<C: Cloud>(cloud: &C, renderer: &Renderer<'_>) -> Result<LookedUp> {
    let spec = renderer.spec();
    let ((), mut amis, baked) = tokio::try_join!(check_offered(cloud, spec), resolve_images(cloud, spec), async {
        baked_images_wanted(cloud, spec).await.map_err(Error::from)
    },)?;
    let image_notes = use_baked_images(renderer, &mut amis, &baked)?;
    Ok(LookedUp { amis, image_notes })
}

/// The pure part: secrets (stored, or new), user data, desired state, plan.
fn assemble(renderer: &Renderer<'_>, inventory: Inventory, stored: Option<String>, looked_up: LookedUp) -> Result<Prepared> {
    let spec = renderer.spec();
    let secrets = match &stored {
        Some(stored) => ClusterSecrets::from_stored(stored)
            .map_err(|source| Error::Secrets { dir: secrets_parameter_name(&spec.name).into(), source })?,
        None => ClusterSecrets::generate(&mut rand::rng(), SystemTime::now())
            .map_err(|source| Error::Secrets { dir: "(new)".into(), source })?,
    };
    let bootstraps = renderer.cluster(&secrets)?.into_iter().map(|b| (b.group.clone(), b)).collect();
    let mut desired = desired_state(spec, &looked_up.amis, &renderer.fingerprints()?);
    desired.image_notes = looked_up.image_notes.clone();
    let plan = plan::plan(&desired, &inventory, false)?;
    let join_token = if plan.creates_control_plane() { secrets.token.clone() } else { BootstrapToken::generate(&mut rand::rng()) };
    Ok(Prepared { plan, desired, inventory, secrets, join_token, bootstraps, looked_up })
}

/// The image `hybrid bake` would make for `pool` on `base`: its key and
/// the builder's user data.
pub fn bake_target(renderer: &Renderer<'_>, pool: &Pool, base: &ResolvedAmi) -> Result<BakeTarget> {
    let spec = renderer.spec();
    let bake = renderer.bake(pool)?;
    let script: String = bake.parts.iter().flat_map(|(n, c)| [n.as_str(), c.as_str()]).collect();
    Ok(BakeTarget {
        key: images::bake_key(pool.os, &base.id, &script),
        os: pool.os,
        line: images::bake_line(spec, pool.os),
        base: base.clone(),
        pools: vec![pool.name.clone()],
        instance_type: pool.instance_type.clone(),
        user_data: bake.user_data,
        profile: pool
            .prepull
            .iter()
            .any(|i| crate::versions::private_ecr_region(i).is_some())
            .then(|| crate::infra::desired::bake_profile(&spec.region)),
    })
}

/// Each group's stock image; groups with the same image share one lookup,
/// and the lookups run at once.
async fn resolve_images<C: Cloud>(cloud: &C, spec: &ClusterSpec) -> Result<AmiMap> {
    let mut groups: Vec<(String, NodeOs, Option<&AmiRef>)> =
        vec![(CONTROL_PLANE.to_string(), NodeOs::Linux(spec.control_plane.os), spec.control_plane.ami.as_ref())];
    groups.extend(spec.pools.iter().map(|p| (p.name.clone(), p.os, p.ami.as_ref())));
    let mut distinct: Vec<(NodeOs, Option<&AmiRef>, &str)> = Vec::new();
    for (group, os, over) in &groups {
        if !distinct.iter().any(|(o, a, _)| o == os && a == over) {
            distinct.push((*os, *over, group));
        }
    }
    let resolved = futures_util::future::try_join_all(distinct.iter().map(|(os, over, group)| async move {
        cloud
            .resolve_ami(&ami_lookup(*os), *over)
            .await
            .map(|a| ((*os, *over), a))
            .map_err(|e| Error::Ami { group: group.to_string(), source: e })
    }))
    .await?;
    let cache: BTreeMap<(NodeOs, Option<&AmiRef>), ResolvedAmi> = resolved.into_iter().collect();
    Ok(groups.into_iter().map(|(group, os, over)| (group, cache[&(os, over)].clone())).collect())
}

/// The images `hybrid bake` made, when a pool may boot from one.
async fn baked_images_wanted<C: Cloud>(
    cloud: &C,
    spec: &ClusterSpec,
) -> crate::adapters::CloudResult<Vec<crate::infra::images::BakedImage>> {
    if spec.pools.iter().any(|p| p.image != ImageChoice::Stock && p.count > 0) { cloud.baked_images().await } else { Ok(Vec::new()) }
}

/// Swaps in baked images where pools may use them (`image` is not
/// "stock"); returns, per pool, which image it boots from and why.
fn use_baked_images(
    renderer: &Renderer<'_>,
    amis: &mut AmiMap,
    baked: &[crate::infra::images::BakedImage],
) -> Result<BTreeMap<String, String>> {
    let mut notes = BTreeMap::new();
    for pool in &renderer.spec().pools {
        let Some(stock) = amis.get(&pool.name).cloned() else { continue };
        let key = if pool.image == ImageChoice::Stock { String::new() } else { bake_target(renderer, pool, &stock)?.key };
        let chosen = images::choose(pool, &key, &stock, baked).map_err(|e| Error::Failed(e.to_string()))?;
        notes.insert(pool.name.clone(), chosen.describe(&stock));
        amis.insert(pool.name.clone(), chosen.ami(&stock));
    }
    Ok(notes)
}

/// Every instance type in the file must exist in the region before
/// anything is created (`validate` knows the names offline; only the region
/// knows what it offers).
async fn check_offered<C: Cloud>(cloud: &C, spec: &ClusterSpec) -> Result<()> {
    let mut wanted = vec![("control_plane.instance_type".to_string(), spec.control_plane.instance_type.clone())];
    for (i, p) in spec.pools.iter().enumerate() {
        if p.fallback_types.is_empty() {
            wanted.push((format!("pool[{i}].instance_type (pool {})", p.name), p.instance_type.clone()));
        } else {
            let types = std::iter::once(&p.instance_type).chain(&p.fallback_types);
            wanted.extend(types.enumerate().map(|(n, t)| (format!("pool[{i}].instance_types[{n}] (pool {})", p.name), t.clone())));
        }
    }
    let mut types: Vec<String> = wanted.iter().map(|(_, t)| t.clone()).collect();
    types.sort();
    types.dedup();
    let offered = cloud.offered_instance_types(&types).await?;
    match wanted.into_iter().find(|(_, t)| !offered.contains(t)) {
        Some((key, instance_type)) => Err(Error::NotOffered { key, instance_type, region: spec.region.clone() }),
        None => Ok(()),
    }
}

/// A plan against nothing, with no AWS calls and no credentials.
pub fn prepare_offline(spec: &ClusterSpec, templates: &Templates) -> Result<Plan> {
    let desired = desired_state(spec, &AmiMap::new(), &Renderer::new(spec, templates).fingerprints()?);
    Ok(plan::plan(&desired, &Inventory::default(), true)?)
}

/// The `hybrid:expires` tag new resources get: the cluster's, once it has
/// one, so every resource expires together.
pub fn expiry(spec: &ClusterSpec, inventory: &Inventory) -> Option<String> {
    inventory.expires.clone().or_else(|| spec.ttl.map(|t| rfc3339_from_now(Duration::from_secs(t.minutes * 60))))
}
