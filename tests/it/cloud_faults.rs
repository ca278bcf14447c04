//! What real AWS does and moto never does, injected by the fault proxy
//! (tests/support/fault_proxy.py, which answers with AWS's own codes and
//! messages) and driven through the real binary: a new instance profile
//! EC2 does not see yet, DependencyViolation while network interfaces
//! detach, instances lingering in shutting-down, throttling on every call,
//! no capacity for a type (with a pool's fallback types), and Describes
//! that do not show a just-made resource yet.
//!
//! Each test says what today's AWS does and how long; the proxy's timed
//! rules ("seconds") play it at a shorter scale where the code's waits are
//! policies, not counts.

use std::path::Path;

use serde_json::json;

use crate::crash::{assert_converged, assert_ok, census, run};
use crate::ec2::Cluster;
use crate::moto::{FaultProxy, Moto};
use crate::util::text;

fn both(out: &std::process::Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

fn path(file: &Path) -> &str {
    file.to_str().unwrap()
}

/// IAM is eventually consistent: for tens of seconds after it is made, a
/// new instance profile is refused by RunInstances ("Invalid IAM Instance
/// Profile name"), and a new role can be unknown to the next IAM call
/// (NoSuchEntity). apply waits both out and converges in the same run. Played
/// here for 20 s, longer than the fixed eight tries (about 16 s) hybrid
/// made before its create calls moved to the one retry policy.
#[test]
fn a_new_instance_profile_ec2_does_not_see_yet_is_waited_for() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("profile-lag");
    let file = c.write(2, 0, "m6i.xlarge");
    proxy.add(json!({ "op": "RunInstances", "seconds": 20, "fault": "profile-not-ready" }));
    // One step earlier, IAM itself: the role just made is not found yet.
    for op in ["PutRolePolicy", "AddRoleToInstanceProfile"] {
        proxy.add(json!({ "op": op, "nth": 1, "times": 2, "fault": "iam-not-visible" }));
    }
    let out = run(&proxy.url, &["apply", path(&file), "--yes", "--ec2-only"]);
    assert_ok(&out, "apply while the profile propagates");
    assert!(proxy.fired("RunInstances", "profile-not-ready") >= 3, "the fault did not fire: {:?}", proxy.log());
    for op in ["PutRolePolicy", "AddRoleToInstanceProfile"] {
        assert_eq!(proxy.fired(op, "iam-not-visible"), 2, "{op}: {:?}", proxy.log());
    }
    assert_converged(&moto, "profile-lag", &file, &["control-plane", "game-0", "game-1"], "after the profile became visible");
}

/// Destroy on real AWS: terminated instances stay shutting-down for a
/// while, and their network interfaces keep the security group, subnet,
/// gateway (mapped public addresses) and VPC in use for minutes, answered
/// DependencyViolation. destroy finishes in one run, says it is waiting,
/// and leaves nothing.
#[test]
fn destroy_waits_out_lingering_instances_and_dependency_violations() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("dependent");
    let file = c.write(2, 0, "m6i.xlarge");
    assert_ok(&run(&moto.url, &["apply", path(&file), "--yes", "--ec2-only"]), "apply");
    proxy.add(json!({ "op": "DescribeInstances", "seconds": 3, "fault": "shutting-down" }));
    for op in ["DeleteSecurityGroup", "DeleteSubnet", "DetachInternetGateway", "DeleteVpc"] {
        proxy.add(json!({ "op": op, "seconds": 4, "fault": "dependency" }));
    }
    let out = run(&proxy.url, &["destroy", path(&file), "--yes"]);
    assert_ok(&out, "destroy");
    let said = both(&out);
    for op in ["DeleteSecurityGroup", "DeleteSubnet", "DetachInternetGateway", "DeleteVpc"] {
        assert!(proxy.fired(op, "dependency") >= 1, "{op}: the fault did not fire");
    }
    assert!(proxy.fired("DescribeInstances", "shutting-down") >= 1, "no instance lingered");
    assert!(said.contains("still in use (network interfaces detaching), waiting"), "no progress while waiting:\n{said}");
    let left = census(&moto.url, Some("dependent"));
    assert!(left.values().all(|ids| ids.is_empty()), "left behind: {left:?}");
}

/// Throttling (RequestLimitExceeded, HTTP 503) on every call hybrid makes,
/// each throttled once before it goes through: apply from nothing backs
/// off and converges, and a no-op plan under the same throttling is still
/// "No changes" (exit 0 with --detailed-exitcode).
#[test]
fn every_call_throttled_once_still_converges_and_plans_no_changes() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("throttled");
    let file = c.write(2, 1, "m6i.xlarge");
    proxy.add(json!({ "op": "*", "once_each": true, "fault": "throttle" }));
    assert_ok(&run(&proxy.url, &["apply", path(&file), "--yes", "--ec2-only"]), "throttled apply");
    let throttled = proxy.fired("*", "throttle");
    assert!(throttled >= 40, "only {throttled} calls were throttled");
    proxy.reset();
    proxy.add(json!({ "op": "*", "once_each": true, "fault": "throttle" }));
    let plan = run(&proxy.url, &["plan", path(&file), "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(plan.status.code(), Some(0), "{}", both(&plan));
    assert!(text(&plan.stdout).contains("No changes."), "{}", text(&plan.stdout));
    assert!(proxy.fired("*", "throttle") >= 10, "the plan was not throttled");
    assert_converged(&moto, "throttled", &file, &["control-plane", "game-0", "game-1", "win-0"], "after throttling");
}

/// A cluster file whose pool `game` lists `types` in `instance_types`.
fn with_types(c: &Cluster, count: u32, types: &[&str], spot: bool) -> std::path::PathBuf {
    let file = c.write(count, 0, "m6i.xlarge");
    let list = types.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
    let body = std::fs::read_to_string(&file)
        .unwrap()
        .replace("instance_type = \"c6i.large\"", &format!("instance_types = [{list}]{}", if spot { "\nspot = true" } else { "" }));
    std::fs::write(&file, body).unwrap();
    file
}

/// The instance types of the live instances of `cluster`'s pool `pool`.
fn pool_types(endpoint: &str, cluster: &str, pool: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let seen = rt.block_on(async { crate::ec2::instances(&crate::moto::aws_clients(endpoint).await.0, cluster).await });
    let mut types: Vec<String> = seen.into_iter().filter(|s| s.tags["hybrid:pool"] == pool).map(|s| s.instance_type).collect();
    types.sort();
    types
}

/// No capacity for a pool's first type in the zone: its nodes launch as
/// the next type it lists, apply says so, and the plans afterwards say
/// which type runs and change nothing. Dropping the fallback from the list
/// (capacity back) replaces those nodes with the preferred type.
#[test]
fn a_pool_without_capacity_for_its_first_type_runs_its_next_and_the_plan_says_so() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("fallback");
    let file = with_types(&c, 2, &["m6i.xlarge", "m5.xlarge"], false);
    let plan = run(&proxy.url, &["plan", path(&file), "--ec2-only"]);
    assert!(text(&plan.stdout).contains("m6i.xlarge or m5.xlarge"), "the plan shows the order:\n{}", both(&plan));
    proxy.add(json!({ "op": "RunInstances", "match": "InstanceType=m6i.xlarge", "always": true, "fault": "no-capacity" }));
    let out = run(&proxy.url, &["apply", path(&file), "--yes", "--ec2-only"]);
    assert_ok(&out, "apply without capacity for m6i.xlarge");
    assert!(
        both(&out).contains("game-0: launched as m5.xlarge: no capacity for m6i.xlarge (InsufficientInstanceCapacity)"),
        "{}",
        both(&out)
    );
    assert_eq!(pool_types(&moto.url, "fallback", "game"), ["m5.xlarge", "m5.xlarge"]);
    let plan = run(&proxy.url, &["plan", path(&file), "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(plan.status.code(), Some(0), "a fallback matches the file:\n{}", both(&plan));
    assert!(
        text(&plan.stdout).contains("pool game: game-0, game-1 run m5.xlarge, a fallback of m6i.xlarge"),
        "the plan says which type runs:\n{}",
        text(&plan.stdout)
    );
    // Adding a type changes nothing; dropping the one that runs replaces.
    proxy.reset();
    let file = with_types(&c, 2, &["m6i.xlarge"], false);
    let plan = run(&proxy.url, &["plan", path(&file), "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(plan.status.code(), Some(2), "{}", both(&plan));
    assert!(text(&plan.stdout).contains("instance type m5.xlarge → m6i.xlarge"), "{}", text(&plan.stdout));
    assert_ok(&run(&proxy.url, &["apply", path(&file), "--yes", "--ec2-only"]), "apply with capacity back");
    assert_eq!(pool_types(&moto.url, "fallback", "game"), ["m6i.xlarge", "m6i.xlarge"]);
}

/// No capacity for any of a pool's types (the first not offered in the
/// zone, the next out of spot capacity): the error names the pool, the
/// types and the zone, the rest of the cluster is made, and the next apply,
/// once capacity is back, converges without a duplicate.
#[test]
fn no_capacity_for_any_type_names_pool_types_and_zone_and_a_rerun_converges() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("no-room");
    let file = with_types(&c, 2, &["m6i.xlarge", "m5.xlarge"], true);
    proxy.add(json!({ "op": "RunInstances", "match": "InstanceType=m6i.xlarge", "always": true, "fault": "unsupported" }));
    proxy.add(json!({ "op": "RunInstances", "match": "InstanceType=m5.xlarge", "always": true, "fault": "spot-capacity" }));
    let out = run(&proxy.url, &["apply", path(&file), "--yes", "--ec2-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", both(&out));
    let err = text(&out.stderr);
    assert!(err.contains("pool game: RunInstances failed: InsufficientInstanceCapacity: no type of the pool runs in us-east-1"), "{err}");
    assert!(
        err.contains("(spot); m6i.xlarge: Unsupported: Your requested instance type is not supported"),
        "each type's own reason: {err}"
    );
    assert!(err.contains("; m5.xlarge: InsufficientInstanceCapacity: There is no Spot capacity available"), "{err}");
    assert!(err.contains("add more types to the pool's `instance_types`"), "{err}");
    let tagged = census(&moto.url, Some("no-room"));
    assert_eq!(tagged["instance"].len(), 1, "the control plane is up, no worker: {tagged:?}");
    proxy.reset();
    assert_ok(&run(&proxy.url, &["apply", path(&file), "--yes", "--ec2-only"]), "apply with capacity back");
    assert_converged(&moto, "no-room", &file, &["control-plane", "game-0", "game-1"], "after capacity came back");
}

/// A create whose answer is lost, and a Describe that does not show the
/// new resource yet (EC2 is eventually consistent; a tag filter sees a
/// resource only once its tags have arrived): hybrid looks again before
/// creating again, so there is exactly one VPC and one gateway.
#[test]
fn a_lost_answer_and_a_late_describe_make_no_duplicate() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("late");
    let file = c.write(1, 0, "m6i.xlarge");
    proxy.add(json!({ "op": "CreateVpc", "nth": 1, "fault": "drop-after" }));
    proxy.add(json!({ "op": "DescribeVpcs", "match": "create-token", "nth": 1, "fault": "empty" }));
    proxy.add(json!({ "op": "CreateInternetGateway", "nth": 1, "fault": "drop-after" }));
    proxy.add(json!({ "op": "DescribeInternetGateways", "match": "create-token", "nth": 1, "fault": "empty" }));
    assert_ok(&run(&proxy.url, &["apply", path(&file), "--yes", "--ec2-only"]), "apply");
    assert_eq!(proxy.fired("DescribeVpcs", "empty"), 1, "the late Describe was not played: {:?}", proxy.log());
    assert_eq!(proxy.fired("DescribeInternetGateways", "empty"), 1);
    assert_converged(&moto, "late", &file, &["control-plane", "game-0"], "after a lost answer and a late Describe");
}
