//! AWS state when answers get lost and runs die at exact calls, against
//! moto behind the fault proxy (`tests/support/fault_proxy.py`), which
//! knows each request's operation and fires a fault at the Nth one.
//!
//! The crash-consistency tests record the calls of a clean run of a small
//! cluster, then for every write call in it: kill a fresh run right after
//! that call went through (SIGKILL from the proxy: the call happened, its
//! answer never arrived), run the command once more, and check one of
//! each resource, nothing untagged or left behind, and a clean plan.
//! What moto cannot show: EC2's eventual consistency (a resource missing
//! from a Describe just after its create) and ClientToken deduplication.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use aws_sdk_ec2::types::Filter;

use crate::ec2::Cluster;
use crate::moto::{FaultProxy, Moto, Rule, aws_clients, hybrid_command, is_write};
use crate::util::text;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Everything in the region, by kind: ids (names for parameters).
type Census = BTreeMap<&'static str, BTreeSet<String>>;

/// What exists in the whole region (live instances only), optionally only
/// what is tagged for `cluster`.
pub(crate) fn census(endpoint: &str, cluster: Option<&str>) -> Census {
    rt().block_on(async {
        let (ec2, ssm) = aws_clients(endpoint).await;
        let tag = cluster.map(|c| Filter::builder().name("tag:hybrid:cluster").values(c).build());
        let mut out = Census::new();
        let vpcs = ec2.describe_vpcs().set_filters(tag.clone().map(|t| vec![t])).send().await.unwrap();
        out.insert("vpc", vpcs.vpcs().iter().filter_map(|v| v.vpc_id()).map(str::to_string).collect());
        let subnets = ec2.describe_subnets().set_filters(tag.clone().map(|t| vec![t])).send().await.unwrap();
        out.insert("subnet", subnets.subnets().iter().filter_map(|s| s.subnet_id()).map(str::to_string).collect());
        let igws = ec2.describe_internet_gateways().set_filters(tag.clone().map(|t| vec![t])).send().await.unwrap();
        out.insert(
            "internet_gateway",
            igws.internet_gateways().iter().filter_map(|g| g.internet_gateway_id()).map(str::to_string).collect(),
        );
        let sgs = ec2.describe_security_groups().set_filters(tag.clone().map(|t| vec![t])).send().await.unwrap();
        out.insert("security_group", sgs.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_string).collect());
        let mut filters = vec![Filter::builder().name("instance-state-name").values("pending").values("running").values("stopped").build()];
        filters.extend(tag.clone());
        let instances = ec2.describe_instances().set_filters(Some(filters)).send().await.unwrap();
        out.insert(
            "instance",
            instances.reservations().iter().flat_map(|r| r.instances()).filter_map(|i| i.instance_id()).map(str::to_string).collect(),
        );
        let path = cluster.map_or("/hybrid/".to_string(), |c| format!("/hybrid/{c}/"));
        let params = ssm.get_parameters_by_path().path(path).recursive(true).send().await.unwrap();
        out.insert("parameter", params.parameters().iter().filter_map(|p| p.name()).map(str::to_string).collect());
        let iam = crate::moto::iam_client(endpoint).await;
        let prefix = cluster.map_or("/hybrid/".to_string(), |c| format!("/hybrid/us-east-1/{c}/"));
        let roles = iam.list_roles().path_prefix(&prefix).send().await.unwrap();
        out.insert("role", roles.roles().iter().map(|r| r.role_name().to_string()).collect());
        let profiles = iam.list_instance_profiles().path_prefix(&prefix).send().await.unwrap();
        out.insert("instance_profile", profiles.instance_profiles().iter().map(|p| p.instance_profile_name().to_string()).collect());
        out
    })
}

/// The slot of every live instance of `cluster`.
fn slots(endpoint: &str, cluster: &str) -> Vec<String> {
    let mut v: Vec<String> = crate::ec2::instance_slots(endpoint, cluster).into_iter().map(|(slot, _)| slot).collect();
    v.sort();
    v
}

/// hybrid through `endpoint`, started so that its pid is in `pid_file`
/// before it makes a call (the proxy kills the pid it reads there).
pub(crate) fn spawn_recorded(endpoint: &str, args: &[&str], pid_file: &Path) -> Output {
    let inner = hybrid_command(endpoint, args);
    let mut line = format!("echo $$ > '{}'; exec", pid_file.display());
    line.push_str(&format!(" '{}'", inner.get_program().to_string_lossy()));
    for a in inner.get_args() {
        line.push_str(&format!(" '{}'", a.to_string_lossy()));
    }
    let mut c = Command::new("sh");
    c.args(["-c", &line]).stdout(Stdio::piped()).stderr(Stdio::piped()).current_dir(crate::util::root()).env_clear();
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.output().expect("hybrid runs")
}

pub(crate) fn run(endpoint: &str, args: &[&str]) -> Output {
    hybrid_command(endpoint, args).output().expect("hybrid runs")
}

pub(crate) fn assert_ok(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(0), "{what}\nstdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
}

/// One of each network resource for `cluster`, one role and instance
/// profile per kind of node, one instance per slot, and a clean plan.
pub(crate) fn assert_converged(moto: &Moto, cluster: &str, file: &Path, expected_slots: &[&str], what: &str) {
    let tagged = census(&moto.url, Some(cluster));
    for (kind, count) in [("vpc", 1), ("subnet", 1), ("internet_gateway", 1), ("security_group", 1), ("role", 2), ("instance_profile", 2)] {
        assert_eq!(tagged[kind].len(), count, "{what}: {kind}s of {cluster}: {:?}", tagged[kind]);
    }
    assert_eq!(slots(&moto.url, cluster), expected_slots, "{what}");
    let plan = run(&moto.url, &["plan", file.to_str().unwrap(), "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(plan.status.code(), Some(0), "{what}: the plan is not clean:\n{}{}", text(&plan.stdout), text(&plan.stderr));
    rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        let subnet = tagged["subnet"].iter().next().unwrap();
        let s = ec2.describe_subnets().subnet_ids(subnet).send().await.unwrap();
        assert_eq!(s.subnets()[0].map_public_ip_on_launch(), Some(true), "{what}: public IPs on launch");
    });
}

/// A small cluster file (control plane + `linux` workers) named `name`.
fn small(name: &str, linux: u32) -> (Cluster, PathBuf) {
    let c = Cluster::new(name);
    let file = c.write(linux, 0, "m6i.xlarge");
    (c, file)
}

/// The write calls of a run, as (operation, nth occurrence).
fn write_calls(log: &[(String, String)]) -> Vec<(String, u32)> {
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    log.iter()
        .filter(|(op, _)| is_write(op))
        .map(|(op, _)| {
            let n = seen.entry(op.as_str()).or_default();
            *n += 1;
            (op.clone(), *n)
        })
        .collect()
}

#[test]
fn lost_answers_to_creates_leave_exactly_one_of_each() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let (_c, file) = small("lost", 2);
    proxy.add_rules(
        &[
            Rule { op: "CreateVpc", nth: 1, fault: "drop-after" },
            Rule { op: "CreateSubnet", nth: 1, fault: "drop-after" },
            Rule { op: "CreateInternetGateway", nth: 1, fault: "drop-after" },
            Rule { op: "CreateSecurityGroup", nth: 1, fault: "drop-after" },
            Rule { op: "RunInstances", nth: 1, fault: "drop-after" },
            Rule { op: "RunInstances", nth: 3, fault: "garbage-after" },
            // The lock, then the secrets.
            Rule { op: "PutParameter", nth: 1, fault: "drop-after" },
            Rule { op: "PutParameter", nth: 3, fault: "drop-after" },
        ],
        None,
    );
    let out = run(&proxy.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]);
    assert_ok(&out, "apply with lost answers");
    let fired: Vec<(String, String)> = proxy.log().into_iter().filter(|(_, f)| f != "pass").collect();
    assert_eq!(fired.len(), 8, "every fault fired: {fired:?}\n{:?}", proxy.log());
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("<?xml") && !stderr.contains("<Response"), "no raw answers on screen:\n{stderr}");
    assert_converged(&moto, "lost", &file, &["control-plane", "game-0", "game-1"], "after lost answers");
    assert!(census(&moto.url, Some("lost"))["parameter"].iter().all(|p| !p.contains("/lock/")), "the lock was given back");
}

#[test]
fn a_failing_call_is_named_in_one_line_without_the_raw_answer() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let (_c, file) = small("garbled", 2);
    // DescribeVpcs answers cut off, more often than the SDK retries.
    proxy.add_rules(&(1..=12).map(|nth| Rule { op: "DescribeVpcs", nth, fault: "garbage-after" }).collect::<Vec<_>>(), None);
    let out = run(&proxy.url, &["plan", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("DescribeVpcs failed: UnreadableAnswer: the answer could not be read (cut off or malformed)"), "{stderr}");
    assert!(!stderr.contains('<'), "no XML on screen:\n{stderr}");
    assert!(stderr.lines().count() <= 4, "{stderr}");
}

#[test]
fn drifted_attributes_and_duplicate_network_are_shown_and_repaired() {
    let moto = Moto::start();
    let (_c, file) = small("drift", 1);
    assert_ok(&run(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]), "first apply");
    let tagged = census(&moto.url, Some("drift"));
    let (vpc, subnet) = (tagged["vpc"].iter().next().unwrap().clone(), tagged["subnet"].iter().next().unwrap().clone());
    rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        let off = || aws_sdk_ec2::types::AttributeBooleanValue::builder().value(false).build();
        ec2.modify_subnet_attribute().subnet_id(&subnet).map_public_ip_on_launch(off()).send().await.unwrap();
        ec2.modify_vpc_attribute().vpc_id(&vpc).enable_dns_hostnames(off()).send().await.unwrap();
        // What a retried CreateVpc / CreateInternetGateway would have left: tagged twins.
        let tags = |kind| {
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(kind)
                .tags(aws_sdk_ec2::types::Tag::builder().key("hybrid:cluster").value("drift").build())
                .build()
        };
        ec2.create_vpc().cidr_block("10.42.0.0/16").tag_specifications(tags(aws_sdk_ec2::types::ResourceType::Vpc)).send().await.unwrap();
        ec2.create_internet_gateway().tag_specifications(tags(aws_sdk_ec2::types::ResourceType::InternetGateway)).send().await.unwrap();
    });
    let plan = run(&moto.url, &["plan", file.to_str().unwrap(), "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan.stderr));
    let shown = text(&plan.stdout);
    for needle in [
        format!("~ subnet_attribute MapPublicIpOnLaunch  [{subnet}]"),
        format!("~ vpc_attribute    enableDnsHostnames  [{vpc}]"),
        "- vpc              10.42.0.0/16".to_string(),
        "because duplicate VPC: the cluster uses".to_string(),
        "- internet_gateway drift-igw".to_string(),
    ] {
        assert!(shown.contains(&needle), "missing `{needle}` in:\n{shown}");
    }
    assert_ok(&run(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]), "repairing apply");
    assert_converged(&moto, "drift", &file, &["control-plane", "game-0"], "after repair");
    assert!(census(&moto.url, Some("drift"))["vpc"].contains(&vpc), "the VPC in use stays");
    rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        let a = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc)
            .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
            .send()
            .await
            .unwrap();
        assert_eq!(a.enable_dns_hostnames().and_then(|v| v.value()), Some(true));
    });
}

/// Kills apply right after each of its write calls (one fresh cluster per
/// call), then applies once more: one of everything, a clean plan, and a
/// destroy that brings the region back to what it was.
#[test]
fn apply_killed_after_any_write_converges_in_one_more_run() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let baseline = census(&moto.url, None);
    let pid_file = crate::util::scratch("crash-apply").join("pid");

    let (_probe, probe_file) = small("probe", 2);
    assert_ok(&run(&proxy.url, &["apply", probe_file.to_str().unwrap(), "--yes", "--ec2-only"]), "probe apply");
    let calls = write_calls(&proxy.log());
    assert!(calls.len() >= 12, "{calls:?}");
    assert_ok(&run(&moto.url, &["destroy", probe_file.to_str().unwrap(), "--yes"]), "probe destroy");

    for (n, (op, nth)) in calls.iter().enumerate() {
        let name = format!("kill{n}");
        let (_c, file) = small(&name, 2);
        let what = format!("apply killed after {op} #{nth}");
        proxy.reset();
        proxy.add_rules(&[Rule { op, nth: *nth, fault: "kill-after" }], Some(&pid_file));
        let killed = spawn_recorded(&proxy.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"], &pid_file);
        assert_ne!(killed.status.code(), Some(0), "{what}: the run was not killed:\n{}", text(&killed.stdout));
        assert!(proxy.log().iter().any(|(o, f)| o == op && f == "kill-after"), "{what}: the kill did not fire");
        // The crash left a half-made cluster, with what the killed call made in it.
        let partial = census(&moto.url, Some(&name));
        let made = |kind: &str| !partial[kind].is_empty();
        assert!(partial.values().any(|v| !v.is_empty()), "{what}: nothing was left to recover from");
        if let Some(kind) = made_by(op) {
            assert!(made(kind), "{what}: no {kind} after the call that makes one: {partial:?}");
        }
        let lock_left = partial["parameter"].iter().any(|p| p.contains("/lock/"));
        let rerun = run(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]);
        assert_ok(&rerun, &format!("{what}: the rerun"));
        // A lock the dead run held is taken over, not waited out, by a rerun
        // with work left (one with none takes no lock: it writes nothing).
        let had_work = !text(&rerun.stdout).contains("No changes.");
        let took_over = text(&rerun.stderr).contains("taking over the stale lock");
        assert_eq!(took_over, lock_left && had_work, "{what}:\n{}\n{}", text(&rerun.stdout), text(&rerun.stderr));
        assert_converged(&moto, &name, &file, &["control-plane", "game-0", "game-1"], &what);
        assert_ok(&run(&moto.url, &["destroy", file.to_str().unwrap(), "--yes"]), &format!("{what}: destroy"));
        assert_eq!(census(&moto.url, None), baseline, "{what}: something was left behind");
    }
}

/// The kind of resource (as the census names it) a create call makes.
fn made_by(op: &str) -> Option<&'static str> {
    Some(match op {
        "CreateVpc" => "vpc",
        "CreateSubnet" => "subnet",
        "CreateInternetGateway" => "internet_gateway",
        "CreateSecurityGroup" => "security_group",
        "RunInstances" => "instance",
        "PutParameter" => "parameter",
        "CreateRole" => "role",
        "CreateInstanceProfile" => "instance_profile",
        _ => return None,
    })
}

/// Kills destroy right after each of its write calls, then destroys once
/// more: the region is back to what it was (lock and secrets included).
#[test]
fn destroy_killed_after_any_write_finishes_in_one_more_run() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let baseline = census(&moto.url, None);
    let pid_file = crate::util::scratch("crash-destroy").join("pid");

    let (_probe, probe_file) = small("dprobe", 1);
    assert_ok(&run(&moto.url, &["apply", probe_file.to_str().unwrap(), "--yes", "--ec2-only"]), "probe apply");
    proxy.reset();
    assert_ok(&run(&proxy.url, &["destroy", probe_file.to_str().unwrap(), "--yes"]), "probe destroy");
    let calls = write_calls(&proxy.log());
    assert!(calls.len() >= 7, "{calls:?}");

    for (n, (op, nth)) in calls.iter().enumerate() {
        let name = format!("dkill{n}");
        let (_c, file) = small(&name, 1);
        let what = format!("destroy killed after {op} #{nth}");
        assert_ok(&run(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]), &format!("{what}: apply"));
        proxy.reset();
        proxy.add_rules(&[Rule { op, nth: *nth, fault: "kill-after" }], Some(&pid_file));
        let killed = spawn_recorded(&proxy.url, &["destroy", file.to_str().unwrap(), "--yes"], &pid_file);
        assert_ne!(killed.status.code(), Some(0), "{what}: the run was not killed:\n{}", text(&killed.stdout));
        assert_ok(&run(&moto.url, &["destroy", file.to_str().unwrap(), "--yes"]), &format!("{what}: the rerun"));
        assert_eq!(census(&moto.url, None), baseline, "{what}: something was left behind");
    }
}

/// `reap` finds a cluster by whatever is left of it: here a destroy died
/// right after deleting the security group (the tag reap once looked at),
/// leaving VPC, subnet, gateway, secrets and lock. Reap removes all of it;
/// a lone expired lock is removed too, a live one and a ttl-less cluster stay.
#[test]
fn reap_finds_half_destroyed_clusters_and_lone_stale_locks() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let pid_file = crate::util::scratch("crash-reap").join("pid");
    let (_c, file) = small("half", 1);
    assert_ok(&run(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]), "apply");
    // Expired, on the VPC only.
    let vpc = census(&moto.url, Some("half"))["vpc"].iter().next().unwrap().clone();
    rt().block_on(async {
        let (ec2, ssm) = aws_clients(&moto.url).await;
        ec2.create_tags()
            .resources(vpc)
            .tags(aws_sdk_ec2::types::Tag::builder().key("hybrid:expires").value("2020-01-01T00:00:00Z").build())
            .send()
            .await
            .unwrap();
        for (cluster, expires) in [("stale", "2020-01-01T01:00:00Z"), ("live", "2999-01-01T00:00:00Z")] {
            let value =
                serde_json::json!({"owner": "x@elsewhere pid 1", "run_id": "r", "created": "2020-01-01T00:00:00Z", "expires": expires});
            ssm.put_parameter()
                .name(format!("/hybrid/{cluster}/lock/1"))
                .value(value.to_string())
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send()
                .await
                .unwrap();
        }
    });
    proxy.add_rules(&[Rule { op: "DeleteSecurityGroup", nth: 1, fault: "kill-after" }], Some(&pid_file));
    let killed = spawn_recorded(&proxy.url, &["destroy", file.to_str().unwrap(), "--yes"], &pid_file);
    assert_ne!(killed.status.code(), Some(0));
    let left = census(&moto.url, Some("half"));
    assert!(left["security_group"].is_empty() && left["vpc"].len() == 1 && !left["parameter"].is_empty(), "{left:?}");

    let out = run(&moto.url, &["reap", "--region", "us-east-1", "--dry-run"]);
    assert_ok(&out, "reap --dry-run");
    assert!(text(&out.stdout).contains("would destroy half"), "{}", text(&out.stdout));
    let out = run(&moto.url, &["reap", "--region", "us-east-1", "--yes"]);
    assert_ok(&out, "reap");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("destroy  half") && stdout.contains("unlock   stale"), "{stdout}");
    let left = census(&moto.url, Some("half"));
    assert!(left.values().all(BTreeSet::is_empty), "reap left {left:?}");
    let params = census(&moto.url, None)["parameter"].clone();
    assert_eq!(params, BTreeSet::from(["/hybrid/live/lock/1".to_string()]), "the live lock stays, the stale one goes");
}

/// Ctrl-C in the middle of an apply: exit 130 with a clear message, the
/// lock given back, and the next apply converges.
#[test]
fn an_interrupted_apply_exits_130_releases_its_lock_and_converges_on_rerun() {
    let moto = Moto::start();
    // Slow enough that the interrupt lands while instances are being made.
    let proxy = FaultProxy::with_latency(&moto.url, 1, 0.0, 0.15);
    let (_c, file) = small("sigint", 2);
    let child = hybrid_command(&proxy.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]).spawn().unwrap();
    // Wait until the run holds the lock and has started creating things.
    crate::util::wait_for("the apply gets to CreateSubnet", std::time::Duration::from_secs(30), || {
        proxy.log().iter().any(|(op, _)| op == "CreateSubnet")
    });
    let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("interrupted; everything created so far is tagged"), "{}", text(&out.stderr));
    let left = census(&moto.url, Some("sigint"));
    assert!(left["parameter"].iter().all(|p| !p.contains("/lock/")), "the lock was not released: {:?}", left["parameter"]);
    assert_ok(&run(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]), "the rerun");
    assert_converged(&moto, "sigint", &file, &["control-plane", "game-0", "game-1"], "after an interrupt");
}
