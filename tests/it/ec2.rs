//! plan / apply / destroy against a real EC2 + SSM emulator (moto), with
//! the resulting state read back through the AWS SDK: counts, tags, user
//! data, security-group rules, IMDSv2, encryption. What moto cannot prove:
//! instances are `running` at once and never boot, ClientToken is not
//! deduplicated, and the 16 KB user-data limit is not enforced (hybrid
//! checks that itself, see render.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use base64::Engine;

use crate::moto::{FaultProxy, Moto};
use crate::util::{root, text, wait_for};

/// A cluster file in a scratch folder; `name` keeps tests apart.
pub(crate) struct Cluster {
    dir: PathBuf,
    name: String,
}

impl Cluster {
    pub(crate) fn new(name: &str) -> Self {
        let dir = crate::util::scratch(&format!("ec2-{name}"));
        Cluster { dir, name: name.to_string() }
    }

    /// The scratch folder (for files a test writes beside the cluster file).
    pub(crate) fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Writes the file: a Linux pool and a Windows 2022 pool.
    pub(crate) fn write(&self, linux: u32, windows: u32, windows_type: &str) -> PathBuf {
        let path = self.dir.join("cluster.toml");
        std::fs::write(
            &path,
            format!(
                r#"[cluster]
name = "{name}"
region = "us-east-1"
kubernetes_version = "1.36"
ttl = "8h"
tags = {{ team = "qa" }}

[network]
vpc_cidr = "10.42.0.0/16"
admin_cidrs = ["203.0.113.0/24"]

[control_plane]
instance_type = "t3.large"

[[pool]]
name = "game"
os = "linux"
instance_type = "c6i.large"
count = {linux}

[[pool]]
name = "win"
os = "windows-2022"
instance_type = "{windows_type}"
count = {windows}
"#,
                name = self.name
            ),
        )
        .unwrap();
        path
    }
}

/// Runs hybrid against `endpoint` with test credentials and no AWS config
/// from the machine.
fn hybrid_at(endpoint: &str, args: &[&str]) -> Output {
    command_at(endpoint, args).output().expect("hybrid runs")
}

fn command_at(endpoint: &str, args: &[&str]) -> Command {
    crate::moto::hybrid_command(endpoint, args)
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn apply(endpoint: &str, file: &Path) -> String {
    ok(&hybrid_at(endpoint, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn clients(endpoint: &str) -> (aws_sdk_ec2::Client, aws_sdk_ssm::Client) {
    crate::moto::aws_clients(endpoint).await
}

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    id: String,
    slot: String,
    pub(crate) instance_type: String,
    private_ip: String,
    pub(crate) tags: BTreeMap<String, String>,
    http_tokens: String,
    hop_limit: i32,
    instance_profile: Option<String>,
}

/// Live (not terminated) instances of a cluster, by slot.
pub(crate) async fn instances(ec2: &aws_sdk_ec2::Client, cluster: &str) -> Vec<Seen> {
    let out = ec2
        .describe_instances()
        .filters(Filter::builder().name("tag:hybrid:cluster").values(cluster).build())
        .filters(
            Filter::builder().name("instance-state-name").values("pending").values("running").values("stopping").values("stopped").build(),
        )
        .send()
        .await
        .unwrap();
    let mut seen: Vec<Seen> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            let tags: BTreeMap<String, String> =
                i.tags().iter().map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string())).collect();
            Seen {
                id: i.instance_id().unwrap().into(),
                slot: tags.get("hybrid:slot").cloned().unwrap_or_default(),
                instance_type: i.instance_type().unwrap().as_str().into(),
                private_ip: i.private_ip_address().unwrap_or_default().into(),
                http_tokens: i.metadata_options().and_then(|m| m.http_tokens()).map_or(String::new(), |t| t.as_str().to_string()),
                hop_limit: i.metadata_options().and_then(|m| m.http_put_response_hop_limit()).unwrap_or(-1),
                instance_profile: i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_string),
                tags,
            }
        })
        .collect();
    seen.sort_by(|a, b| a.slot.cmp(&b.slot));
    seen
}

/// `%XX` decoded (IAM answers policy documents URL-encoded).
fn percent_decoded(text: &str) -> String {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// User data as text, gunzipped when EC2 got it compressed.
fn gunzip_if_needed(bytes: &[u8]) -> String {
    use std::io::Read;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(bytes).read_to_string(&mut s).unwrap();
        s
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Every text a node's user data holds: the user data itself (gunzipped
/// when EC2 got it compressed), and each gzip + base64 payload inside it
/// (any long run of base64 characters), decoded: the Windows loader carries
/// the whole bootstrap that way. A secret sweep looks at all of them.
fn every_form(bytes: &[u8]) -> Vec<String> {
    let outer = gunzip_if_needed(bytes);
    let mut forms = vec![outer.clone()];
    let runs = outer.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')));
    for run in runs.filter(|r| r.len() >= 64) {
        let Ok(inner) = base64::engine::general_purpose::STANDARD.decode(run) else { continue };
        if inner.starts_with(&[0x1f, 0x8b]) {
            forms.push(gunzip_if_needed(&inner));
        }
    }
    forms
}

/// (slot, instance id) of every live instance of `cluster`.
pub(crate) fn instance_slots(endpoint: &str, cluster: &str) -> Vec<(String, String)> {
    rt().block_on(async { instances(&clients(endpoint).await.0, cluster).await.into_iter().map(|s| (s.slot, s.id)).collect() })
}

fn slots(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.slot.as_str()).collect()
}

#[test]
fn apply_creates_a_tagged_cluster_and_a_second_apply_writes_nothing() {
    let moto = Moto::start();
    let c = Cluster::new("alpha");
    let file = c.write(2, 1, "m6i.xlarge");
    let out = apply(&moto.url, &file);
    assert!(out.contains("Plan: 13 to add, 0 to change, 0 to destroy."), "{out}");
    assert!(out.contains("Apply complete! Resources: 13 added"), "{out}");

    rt().block_on(async {
        let (ec2, ssm) = clients(&moto.url).await;
        let seen = instances(&ec2, "alpha").await;
        assert_eq!(slots(&seen), ["control-plane", "game-0", "game-1", "win-0"]);
        for s in &seen {
            assert_eq!(s.http_tokens, "required", "{} must require IMDSv2", s.slot);
            assert_eq!(s.hop_limit, 1, "{}: pods in their own network namespace cannot reach IMDS", s.slot);
            for key in ["hybrid:cluster", "hybrid:pool", "hybrid:slot", "hybrid:spec-hash", "hybrid:expires", "Name", "team"] {
                assert!(s.tags.contains_key(key), "{} lacks tag {key}: {:?}", s.slot, s.tags);
            }
        }
        assert_eq!(seen[0].private_ip, "10.42.0.10", "the control plane takes the fixed API address");
        assert_eq!(seen[3].instance_type, "m6i.xlarge");

        // Root volumes: encrypted, gp3, tagged with the cluster.
        let vols =
            ec2.describe_volumes().filters(Filter::builder().name("tag:hybrid:cluster").values("alpha").build()).send().await.unwrap();
        assert_eq!(vols.volumes().len(), 4, "one tagged root volume per instance");
        for v in vols.volumes() {
            assert_eq!(v.encrypted(), Some(true));
            assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp3"));
        }

        // User data round-trips: exactly what hybrid renders from the stored secrets.
        let stored = ssm.get_parameter().name("/hybrid/alpha/secrets").with_decryption(true).send().await.unwrap();
        let param = stored.parameter().unwrap();
        assert_eq!(param.r#type().map(|t| t.as_str()), Some("SecureString"));
        let secrets = hybrid::bootstrap::pki::ClusterSecrets::from_stored(param.value().unwrap()).unwrap();
        let spec = hybrid::config::load(&std::fs::read_to_string(&file).unwrap()).spec.unwrap();
        // What is checked here is that EC2 got each pool's user data as
        // rendered, byte for byte, with this cluster's own CA (so the
        // renderer is called with the stored secrets). Whether the rendering
        // is right is the golden files' and the parsers' business
        // (render.rs, boot.rs), against hand-written contracts.
        let rendered: BTreeMap<String, Vec<u8>> =
            hybrid::bootstrap::Renderer::new(&spec, &hybrid::bootstrap::Templates::builtin()).cluster(&secrets)
                .unwrap()
                .into_iter()
                .map(|b| (b.group, b.user_data))
                .collect();
        for s in &seen {
            let attr = ec2
                .describe_instance_attribute()
                .instance_id(&s.id)
                .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                .send()
                .await
                .unwrap();
            let b64 = attr.user_data().and_then(|u| u.value()).unwrap();
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
            assert_eq!(&bytes, &rendered[&s.tags["hybrid:pool"]], "user data of {}", s.slot);
            // No CA key and no bootstrap token anywhere in user data
            // (DescribeInstanceAttribute and host-network pods read it).
            let forms = every_form(&bytes);
            if s.tags["hybrid:pool"] == "win" {
                // The sweep must see inside the loader, or it proves nothing there.
                assert!(forms.len() == 2 && forms[1].contains("kubelet"), "{}: the packed bootstrap was not found in the loader", s.slot);
            }
            for plain in &forms {
                assert!(!plain.contains("PRIVATE KEY") && !plain.contains(secrets.expose_ca_key_pem().trim()), "{}: the CA key is in user data", s.slot);
                assert!(!plain.contains(secrets.token.secret()), "{}: a bootstrap token is in user data", s.slot);
                assert!(!plain.contains(secrets.token.expose().as_str()), "{}: a bootstrap token is in user data", s.slot);
            }
            // Who made it: the caller's ARN, as STS says (moto's default caller).
            assert_eq!(s.tags.get("hybrid:owner").map(String::as_str), Some("arn:aws:sts::123456789012:user/moto"), "{}", s.slot);
        }

        // The workers read their join token from SSM: this run's, which on
        // a cluster's first apply is kubeadm init's own (stored in the secrets).
        let joined = ssm.get_parameter().name("/hybrid/alpha/join-token").with_decryption(true).send().await.unwrap();
        let joined = joined.parameter().unwrap();
        assert_eq!(joined.r#type(), Some(&aws_sdk_ssm::types::ParameterType::SecureString));
        assert_eq!(joined.value(), Some(secrets.token.expose().as_str()));
        // The CA certificate alone is public, for everyone's kubeconfig.
        let ca = ssm.get_parameter().name("/hybrid/alpha/ca.crt").send().await.unwrap();
        assert_eq!(ca.parameter().unwrap().r#type(), Some(&aws_sdk_ssm::types::ParameterType::String));
        assert_eq!(ca.parameter().unwrap().value(), Some(secrets.ca_cert_pem.as_str()));

        // Each kind of node has its instance profile, and each role may do
        // exactly what its nodes need: the control plane's read this
        // cluster's secrets; the workers' read the join token and pull from
        // the account's ECR.
        let [profile, workers] = <[_; 2]>::try_from(hybrid::infra::desired::instance_profiles("alpha", "us-east-1")).unwrap();
        assert!(seen[0].instance_profile.as_deref().is_some_and(|a| a.ends_with(&format!("instance-profile{}{}", profile.path, profile.name))), "{:?}", seen[0].instance_profile);
        for s in &seen[1..] {
            assert!(s.instance_profile.as_deref().is_some_and(|a| a.ends_with(&format!("instance-profile{}{}", workers.path, workers.name))), "{}: {:?}", s.slot, s.instance_profile);
        }
        let iam = crate::moto::iam_client(&moto.url).await;
        let policy = iam.get_role_policy().role_name(&workers.name).policy_name("worker-node").send().await.unwrap();
        let policy: serde_json::Value = serde_json::from_str(&percent_decoded(policy.policy_document())).unwrap();
        assert_eq!(
            policy["Statement"],
            serde_json::json!([
                { "Sid": "ReadTheJoinToken", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "arn:aws:ssm:us-east-1:*:parameter/hybrid/alpha/join-token" },
                { "Sid": "LogInToPrivateEcr", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*" },
                { "Sid": "PullFromPrivateEcr", "Effect": "Allow", "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:BatchImportUpstreamImage", "ecr:GetDownloadUrlForLayer"], "Resource": "arn:aws:ecr:*:*:repository/*" },
            ])
        );
        let role = iam.get_role().role_name(&profile.name).send().await.unwrap();
        let role = role.role().unwrap();
        assert_eq!(role.path(), "/hybrid/us-east-1/alpha/");
        let trust: serde_json::Value = serde_json::from_str(&percent_decoded(role.assume_role_policy_document().unwrap())).unwrap();
        assert_eq!(trust["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com");
        let tags = iam.list_role_tags().role_name(&profile.name).send().await.unwrap();
        assert!(tags.tags().iter().any(|t| t.key() == "hybrid:cluster" && t.value() == "alpha"), "{:?}", tags.tags());
        let policies = iam.list_role_policies().role_name(&profile.name).send().await.unwrap();
        assert_eq!(policies.policy_names(), ["read-cluster-secrets"]);
        let attached = iam.list_attached_role_policies().role_name(&profile.name).send().await.unwrap();
        assert!(attached.attached_policies().is_empty(), "no managed policies");
        let policy = iam.get_role_policy().role_name(&profile.name).policy_name("read-cluster-secrets").send().await.unwrap();
        let policy: serde_json::Value = serde_json::from_str(&percent_decoded(policy.policy_document())).unwrap();
        assert_eq!(
            policy["Statement"],
            serde_json::json!([{ "Sid": "ReadThisClustersSecrets", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "arn:aws:ssm:us-east-1:*:parameter/hybrid/alpha/secrets" }])
        );

        // Security group: exactly the planned rules, nothing open to the world.
        let groups = ec2
            .describe_security_groups()
            .filters(Filter::builder().name("tag:hybrid:cluster").values("alpha").build())
            .send()
            .await
            .unwrap();
        assert_eq!(groups.security_groups().len(), 1);
        let sg = &groups.security_groups()[0];
        let mut found = BTreeSet::new();
        for p in sg.ip_permissions() {
            for pair in p.user_id_group_pairs() {
                assert_eq!(pair.group_id(), sg.group_id(), "only self-references");
                found.insert((p.ip_protocol().unwrap().to_string(), p.from_port().unwrap(), "cluster".to_string()));
            }
            for r in p.ip_ranges() {
                found.insert((p.ip_protocol().unwrap().to_string(), p.from_port().unwrap(), r.cidr_ip().unwrap().to_string()));
            }
        }
        // Written out by hand from WINDOWS-NOTES §6 for this file (Calico
        // VXLAN, a Windows pool, one admin CIDR), not from security_rules().
        let cluster = |proto: &str, port: i32| (proto.to_string(), port, "cluster".to_string());
        let admin = |port: i32| ("tcp".to_string(), port, "203.0.113.0/24".to_string());
        let want: BTreeSet<(String, i32, String)> = [
            cluster("tcp", 6443),
            cluster("tcp", 2379),
            cluster("tcp", 10250),
            cluster("udp", 4789),
            cluster("tcp", 30000),
            cluster("udp", 30000),
            cluster("tcp", 5473),
            admin(6443),
            admin(22),
            admin(3389),
        ]
        .into_iter()
        .collect();
        assert_eq!(found, want);
        assert!(!found.iter().any(|(_, _, src)| src == "0.0.0.0/0"));
    });

    // Second apply: no changes, and not a single write (not even the lock),
    // counted on the wire by the proxy, not by hybrid's own counters.
    let wire = FaultProxy::start(&moto.url, 1, 0.0);
    let out = hybrid_at(&wire.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]);
    let stdout = ok(&out);
    assert!(stdout.contains("No changes."), "{stdout}");
    let calls = wire.log();
    let writes: Vec<&String> = calls.iter().map(|(op, _)| op).filter(|op| crate::moto::is_write(op)).collect();
    assert!(calls.len() > 5, "the proxy saw the run: {calls:?}");
    assert!(writes.is_empty(), "a no-op apply wrote: {writes:?}");

    let out = hybrid_at(&moto.url, &["plan", file.to_str().unwrap(), "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn scale_up_scale_down_and_replace() {
    let moto = Moto::start();
    let c = Cluster::new("beta");
    apply(&moto.url, &c.write(2, 1, "m6i.xlarge"));
    let rt = rt();
    let before = rt.block_on(async { instances(&clients(&moto.url).await.0, "beta").await });

    let file = c.write(3, 1, "m6i.xlarge");
    let plan = hybrid_at(&moto.url, &["plan", file.to_str().unwrap(), "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(text(&plan.stdout).contains("+ instance         game-2"), "{}", text(&plan.stdout));
    apply(&moto.url, &file);
    let up = rt.block_on(async { instances(&clients(&moto.url).await.0, "beta").await });
    assert_eq!(slots(&up), ["control-plane", "game-0", "game-1", "game-2", "win-0"]);

    // Down to one: the highest slots go, the lowest stays the same instance.
    let out = apply(&moto.url, &c.write(1, 1, "m6i.xlarge"));
    assert!(out.contains("because pool game shrinks to 1"), "{out}");
    let down = rt.block_on(async { instances(&clients(&moto.url).await.0, "beta").await });
    assert_eq!(slots(&down), ["control-plane", "game-0", "win-0"]);
    assert_eq!(down[1].id, before[1].id);

    // A new instance type replaces the Windows node, with the reason shown.
    let out = apply(&moto.url, &c.write(1, 1, "m5.xlarge"));
    assert!(out.contains("-/+ instance         win-0"), "{out}");
    assert!(out.contains("because instance type m6i.xlarge → m5.xlarge"), "{out}");
    let replaced = rt.block_on(async { instances(&clients(&moto.url).await.0, "beta").await });
    assert_eq!(slots(&replaced), ["control-plane", "game-0", "win-0"]);
    assert_ne!(replaced[2].id, down[2].id);
    assert_eq!(replaced[2].instance_type, "m5.xlarge");
    assert_eq!(replaced[0].id, down[0].id, "untouched slots keep their instance");
}

#[test]
fn destroy_leaves_nothing_tagged_behind() {
    let moto = Moto::start();
    let c = Cluster::new("gamma");
    let file = c.write(1, 1, "m6i.xlarge");
    apply(&moto.url, &file);
    let out = ok(&hybrid_at(&moto.url, &["destroy", file.to_str().unwrap(), "--yes"]));
    assert!(out.contains("Destroy complete! Resources: 12 destroyed."), "{out}");
    rt().block_on(async {
        let (ec2, ssm) = clients(&moto.url).await;
        let f = || Filter::builder().name("tag:hybrid:cluster").values("gamma").build();
        assert!(instances(&ec2, "gamma").await.is_empty());
        assert!(ec2.describe_vpcs().filters(f()).send().await.unwrap().vpcs().is_empty());
        assert!(ec2.describe_subnets().filters(f()).send().await.unwrap().subnets().is_empty());
        assert!(ec2.describe_security_groups().filters(f()).send().await.unwrap().security_groups().is_empty());
        assert!(ec2.describe_internet_gateways().filters(f()).send().await.unwrap().internet_gateways().is_empty());
        let params = ssm.get_parameters_by_path().path("/hybrid/gamma/").recursive(true).send().await.unwrap();
        assert!(params.parameters().is_empty(), "{:?}", params.parameters());
        let iam = crate::moto::iam_client(&moto.url).await;
        let roles = iam.list_roles().path_prefix("/hybrid/").send().await.unwrap();
        assert!(roles.roles().is_empty(), "{:?}", roles.roles());
        let profiles = iam.list_instance_profiles().path_prefix("/hybrid/").send().await.unwrap();
        assert!(profiles.instance_profiles().is_empty(), "{:?}", profiles.instance_profiles());
    });
    let again = ok(&hybrid_at(&moto.url, &["destroy", file.to_str().unwrap(), "--yes"]));
    assert!(again.contains("Nothing to destroy"), "{again}");
}

/// A resource destroy may not delete is named at the end, after every
/// other one was deleted, and the command fails; run again, it finishes.
#[test]
fn destroy_names_what_it_could_not_delete_and_removes_the_rest() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("leftover");
    let file = c.write(1, 0, "m6i.xlarge");
    apply(&moto.url, &file);
    let igw = rt().block_on(async {
        let ec2 = clients(&moto.url).await.0;
        let f = Filter::builder().name("tag:hybrid:cluster").values("leftover").build();
        let out = ec2.describe_internet_gateways().filters(f).send().await.unwrap();
        out.internet_gateways()[0].internet_gateway_id().unwrap().to_string()
    });
    proxy.add_always(&crate::moto::Always { op: "DeleteInternetGateway", matching: "", fault: "denied" });
    let out = hybrid_at(&proxy.url, &["destroy", file.to_str().unwrap(), "--yes"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("could not delete:\n  internet_gateway {igw}: ")), "{stderr}");
    assert!(stderr.contains("UnauthorizedOperation") || stderr.contains("not authorized"), "{stderr}");
    assert!(!stderr.contains("<?xml"), "{stderr}");
    // The VPC is not waited on while something inside it is left; it is named.
    assert!(stderr.contains(": not tried, something inside it is left"), "{stderr}");
    rt().block_on(async {
        let (ec2, ssm) = clients(&moto.url).await;
        let f = || Filter::builder().name("tag:hybrid:cluster").values("leftover").build();
        assert!(instances(&ec2, "leftover").await.is_empty());
        assert!(ec2.describe_security_groups().filters(f()).send().await.unwrap().security_groups().is_empty());
        assert!(ec2.describe_subnets().filters(f()).send().await.unwrap().subnets().is_empty());
        let left = ec2.describe_internet_gateways().filters(f()).send().await.unwrap();
        assert_eq!(left.internet_gateways().len(), 1, "only the gateway is left");
        let params = ssm.get_parameters_by_path().path("/hybrid/leftover/").recursive(true).send().await.unwrap();
        assert!(params.parameters().iter().all(|p| !p.name().unwrap_or_default().contains("/lock/")), "the lock was released");
    });
    let again = ok(&hybrid_at(&moto.url, &["destroy", file.to_str().unwrap(), "--yes"]));
    assert!(again.contains("Destroy complete!"), "{again}");
    rt().block_on(async {
        let ec2 = clients(&moto.url).await.0;
        let f = Filter::builder().name("tag:hybrid:cluster").values("leftover").build();
        assert!(ec2.describe_internet_gateways().filters(f).send().await.unwrap().internet_gateways().is_empty());
    });
}

/// With AWS emulated and no --api-server, the cluster side is skipped with
/// one line saying why: the addresses the emulator invented for instances
/// belong to strangers, so neither apply nor plan nor kubeconfig uses them.
#[test]
fn against_an_emulator_the_cluster_side_is_skipped_and_says_why() {
    let moto = Moto::start();
    let c = Cluster::new("emulated");
    let file = c.write(1, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    let out = ok(&hybrid_at(&moto.url, &["apply", f, "--yes"]));
    assert!(out.contains("Kubernetes: skipped: AWS is an emulator here"), "{out}");
    assert!(!out.contains("converged"), "{out}");
    let plan = hybrid_at(&moto.url, &["plan", f, "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stderr));
    assert!(text(&plan.stdout).contains("Kubernetes: not looked at: AWS is an emulator here"), "{}", text(&plan.stdout));
    let out_file = c.dir.join("kubeconfig");
    let kc = hybrid_at(&moto.url, &["kubeconfig", f, "-o", out_file.to_str().unwrap()]);
    assert_eq!(kc.status.code(), Some(1), "{}", text(&kc.stdout));
    assert!(text(&kc.stderr).contains("pass --api-server URL"), "{}", text(&kc.stderr));
    assert!(!out_file.exists(), "no kubeconfig pointing at an invented address");
}

/// Throttling, 500s and dropped connections (before and after moto did the
/// work) on a quarter of all calls: apply is retried by the SDK, duplicates
/// a dropped response caused are removed by the next apply, and the cluster
/// converges to exactly what the file says.
#[test]
fn apply_converges_through_faults() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 7, 0.25);
    let c = Cluster::new("delta");
    let file = c.write(4, 2, "m6i.xlarge");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let out = hybrid_at(&proxy.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only", "--lock-timeout", "30"]);
        if out.status.code() == Some(0) && text(&out.stdout).contains("No changes.") {
            break;
        }
        assert!(attempts < 6, "no convergence after {attempts} applies:\n{}\n{}", text(&out.stdout), text(&out.stderr));
    }
    let plan = hybrid_at(&moto.url, &["plan", file.to_str().unwrap(), "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
    let seen = rt().block_on(async { instances(&clients(&moto.url).await.0, "delta").await });
    assert_eq!(slots(&seen), ["control-plane", "game-0", "game-1", "game-2", "game-3", "win-0", "win-1"]);
}

/// The lock's epochs: an expired epoch is taken over by the next one (and
/// removed once the takeover won), a live epoch of another host blocks with
/// its owner named, and a finished apply leaves no epoch behind.
#[test]
fn stale_lock_epochs_are_taken_over_and_live_ones_block() {
    let moto = Moto::start();
    let c = Cluster::new("lambda");
    let file = c.write(1, 0, "m6i.xlarge");
    let put = |epoch: u64, owner: &str, expires: &str| {
        rt().block_on(async {
            let (_, ssm) = clients(&moto.url).await;
            let value =
                serde_json::json!({"owner": owner, "run_id": "someone-else", "created": "2026-01-01T00:00:00Z", "expires": expires});
            ssm.put_parameter()
                .name(format!("/hybrid/lambda/lock/{epoch}"))
                .value(value.to_string())
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send()
                .await
                .unwrap();
        })
    };
    let epochs = || {
        rt().block_on(async {
            let (_, ssm) = clients(&moto.url).await;
            let page = ssm.get_parameters_by_path().path("/hybrid/lambda/lock/").recursive(true).send().await.unwrap();
            let mut names: Vec<String> = page.parameters().iter().filter_map(|p| p.name()).map(str::to_string).collect();
            names.sort();
            names
        })
    };
    put(4, "old@elsewhere pid 7", "2026-01-01T01:00:00Z");
    let out = hybrid_at(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("taking over the stale lock of old@elsewhere pid 7"), "{}", text(&out.stderr));
    assert!(epochs().is_empty(), "the stale epoch and ours are gone: {:?}", epochs());

    // A change to apply (a run with nothing to do takes no lock at all).
    put(9, "busy@elsewhere pid 8", "2999-01-01T00:00:00Z");
    let file = c.write(2, 0, "m6i.xlarge");
    let out = hybrid_at(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cluster lambda is locked by busy@elsewhere pid 8"), "{}", text(&out.stderr));
    assert_eq!(epochs(), ["/hybrid/lambda/lock/9"], "a blocked run touches no epoch");
    let out = hybrid_at(&moto.url, &["destroy", file.to_str().unwrap(), "--yes", "--break-lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(epochs().is_empty(), "{:?}", epochs());
}

/// Two applies that both find the same stale lock: exactly one takes it
/// over (creating the next epoch is atomic), the other waits for it, and
/// nothing is launched twice.
#[test]
fn two_runs_taking_over_one_stale_lock_do_not_both_win() {
    let moto = Moto::start();
    let proxy = FaultProxy::with_latency(&moto.url, 1, 0.0, 0.05);
    let c = Cluster::new("mu");
    let file = c.write(3, 0, "m6i.xlarge");
    rt().block_on(async {
        let (_, ssm) = clients(&moto.url).await;
        let value = serde_json::json!({"owner": "gone@elsewhere pid 9", "run_id": "old", "created": "2026-01-01T00:00:00Z", "expires": "2026-01-01T01:00:00Z"});
        ssm.put_parameter()
            .name("/hybrid/mu/lock/1")
            .value(value.to_string())
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .send()
            .await
            .unwrap();
    });
    let spawn = || {
        command_at(&proxy.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only", "--lock-timeout", "120"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    let takeovers = [&a, &b].iter().filter(|o| text(&o.stderr).contains("taking over the stale lock")).count();
    assert!(takeovers >= 1, "one run took the stale lock over");
    let seen = rt().block_on(async { instances(&clients(&moto.url).await.0, "mu").await });
    assert_eq!(slots(&seen), ["control-plane", "game-0", "game-1", "game-2"], "nothing launched twice");
    let left = rt().block_on(async {
        let (_, ssm) = clients(&moto.url).await;
        ssm.get_parameters_by_path().path("/hybrid/mu/lock/").recursive(true).send().await.unwrap().parameters().len()
    });
    assert_eq!(left, 0, "both runs gave their locks back and the stale one is gone");
}

/// Two applies at once: one holds the lock, the other fails clearly naming
/// the holder; nothing is duplicated. With --lock-timeout the second waits
/// and then finds nothing to do.
#[test]
fn concurrent_applies_are_serialized_by_the_lock() {
    let moto = Moto::start();
    let proxy = FaultProxy::with_latency(&moto.url, 1, 0.0, 0.1);
    let c = Cluster::new("zeta");
    let file = c.write(4, 1, "m6i.xlarge");
    let spawn = |extra: &[&str]| {
        let mut args = vec!["apply", file.to_str().unwrap(), "--yes", "--ec2-only"];
        args.extend_from_slice(extra);
        command_at(&proxy.url, &args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
    };
    // With 0.1 s per call an apply holds the lock for seconds, so the second
    // one, started once the first holds it, reaches it while it is still held.
    let a = spawn(&[]);
    wait_for("the first apply takes the lock", Duration::from_secs(30), || !crate::runs::lock_epochs(&moto.url, "zeta").is_empty());
    let b = spawn(&[]);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    // Whichever took the lock first wins; the other must fail on it.
    let (won, lost) = if a.status.code() == Some(0) { (a, b) } else { (b, a) };
    assert_eq!(won.status.code(), Some(0), "{}", text(&won.stderr));
    assert_eq!(lost.status.code(), Some(1), "the other apply must fail on the lock:\n{}", text(&lost.stderr));
    assert!(text(&lost.stderr).contains("cluster zeta is locked by tester@"), "{}", text(&lost.stderr));

    let file2 = c.write(5, 1, "m6i.xlarge");
    let a = command_at(&proxy.url, &["apply", file2.to_str().unwrap(), "--yes", "--ec2-only"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the first apply takes the lock", Duration::from_secs(30), || !crate::runs::lock_epochs(&moto.url, "zeta").is_empty());
    let b = command_at(&proxy.url, &["apply", file2.to_str().unwrap(), "--yes", "--ec2-only", "--lock-timeout", "60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b.stderr));
    let seen = rt().block_on(async { instances(&clients(&moto.url).await.0, "zeta").await });
    assert_eq!(seen.len(), 7, "{:?}", slots(&seen));
}

/// A pool EC2 cannot launch (no capacity for its type): the error names
/// the pool, the other pools launch and stay tagged, and the next apply
/// adds only what is missing.
#[test]
fn a_permanent_error_names_the_pool_and_the_next_apply_continues() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    proxy.add_always(&crate::moto::Always { op: "RunInstances", matching: "InstanceType=m6i.xlarge", fault: "no-capacity" });
    let c = Cluster::new("eta");
    let file = c.write(2, 1, "m6i.xlarge");
    let out = hybrid_at(&proxy.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("pool win: RunInstances failed: InsufficientInstanceCapacity"), "{err}");
    let seen = rt().block_on(async { instances(&clients(&moto.url).await.0, "eta").await });
    assert_eq!(slots(&seen), ["control-plane", "game-0", "game-1"], "other pools were launched and stay tagged");
    let out = apply(&moto.url, &file);
    assert!(out.contains("Plan: 1 to add, 0 to change, 0 to destroy."), "{out}");
}

/// An instance type the region does not offer fails the plan before
/// anything is created (validate only warns about a family it does not know).
#[test]
fn an_instance_type_the_region_lacks_fails_before_anything_is_created() {
    let moto = Moto::start();
    let c = Cluster::new("etb");
    let file = c.write(2, 1, "zz9.xlarge");
    let out = hybrid_at(&moto.url, &["apply", file.to_str().unwrap(), "--yes", "--ec2-only"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("pool[1].instance_type (pool win): instance type zz9.xlarge is not offered in us-east-1"), "{err}");
    let vpcs = rt().block_on(async {
        let (ec2, _) = clients(&moto.url).await;
        ec2.describe_vpcs().filters(Filter::builder().name("tag:hybrid:cluster").values("etb").build()).send().await.unwrap().vpcs().len()
    });
    assert_eq!(vpcs, 0, "nothing was created");
}

/// What the file can ask for beyond the defaults, launched against moto and
/// read back: an existing VPC and subnet (hybrid creates no network then,
/// and destroy leaves them), an SSH key pair, spot workers, an image pinned
/// by id and one by name pattern. What moto cannot prove: spot capacity or
/// interruptions, and that the key works on a booted node.
#[test]
fn existing_network_key_pair_spot_and_pinned_images_are_launched_as_asked() {
    let moto = Moto::start();
    let (vpc, subnet) = rt().block_on(async {
        let (ec2, _) = clients(&moto.url).await;
        let vpc = ec2.create_vpc().cidr_block("10.50.0.0/16").send().await.unwrap().vpc().unwrap().vpc_id().unwrap().to_string();
        let subnet = ec2.create_subnet().vpc_id(&vpc).cidr_block("10.50.1.0/24").send().await.unwrap();
        ec2.create_key_pair().key_name("qa-key").send().await.unwrap();
        (vpc, subnet.subnet().unwrap().subnet_id().unwrap().to_string())
    });
    let c = Cluster::new("nu");
    let file = c.dir.join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            r#"[cluster]
name = "nu"
region = "us-east-1"
kubernetes_version = "1.36"
ssh_key_name = "qa-key"

[network]
vpc_id = "{vpc}"
subnet_id = "{subnet}"

[control_plane]
instance_type = "t3.large"
private_ip = "10.50.1.10"

[[pool]]
name = "game"
os = "ubuntu-22.04"
instance_type = "c6i.large"
count = 2
spot = true
ami = "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"

[[pool]]
name = "win"
os = "windows-2022"
instance_type = "m6i.xlarge"
count = 1
ami = "ami-0a20220000000000b"
"#
        ),
    )
    .unwrap();
    let out = apply(&moto.url, &file);
    assert!(!out.contains("+ vpc") && !out.contains("+ subnet") && !out.contains("+ internet_gateway"), "{out}");
    rt().block_on(async {
        let (ec2, _) = clients(&moto.url).await;
        let described = ec2
            .describe_instances()
            .filters(Filter::builder().name("tag:hybrid:cluster").values("nu").build())
            .filters(Filter::builder().name("instance-state-name").values("running").values("pending").build())
            .send()
            .await
            .unwrap();
        let all: Vec<&aws_sdk_ec2::types::Instance> = described.reservations().iter().flat_map(|r| r.instances()).collect();
        assert_eq!(all.len(), 4);
        let slot = |i: &aws_sdk_ec2::types::Instance| {
            i.tags().iter().find(|t| t.key() == Some("hybrid:slot")).and_then(|t| t.value()).unwrap_or_default().to_string()
        };
        for i in &all {
            let s = slot(i);
            assert_eq!(i.subnet_id(), Some(subnet.as_str()), "{s} in the given subnet");
            assert_eq!(i.key_name(), Some("qa-key"), "{s} has the key pair");
            let spot = i.instance_lifecycle().map(|l| l.as_str()) == Some("spot");
            assert_eq!(spot, s.starts_with("game"), "{s}: spot only where asked");
            let image = i.image_id().unwrap();
            match s.as_str() {
                "control-plane" => {
                    assert_eq!(image, "ami-0b24040000000000a", "the default: latest Ubuntu 24.04");
                    assert_eq!(i.private_ip_address(), Some("10.50.1.10"));
                }
                s if s.starts_with("game") => assert_eq!(image, "ami-0b22040000000000a", "{s}: the name pattern's newest match"),
                _ => assert_eq!(image, "ami-0a20220000000000b", "the pinned id, not the newer image"),
            }
        }
        let sgs =
            ec2.describe_security_groups().filters(Filter::builder().name("tag:hybrid:cluster").values("nu").build()).send().await.unwrap();
        assert_eq!(sgs.security_groups()[0].vpc_id(), Some(vpc.as_str()), "the security group is made in the given VPC");
    });
    ok(&hybrid_at(&moto.url, &["destroy", file.to_str().unwrap(), "--yes"]));
    rt().block_on(async {
        let (ec2, _) = clients(&moto.url).await;
        assert_eq!(ec2.describe_vpcs().vpc_ids(&vpc).send().await.unwrap().vpcs().len(), 1, "destroy leaves the user's VPC");
        assert_eq!(ec2.describe_subnets().subnet_ids(&subnet).send().await.unwrap().subnets().len(), 1, "and subnet");
    });
}

#[test]
fn offline_plan_needs_no_credentials_and_json_is_machine_readable() {
    let out = Command::new(env!("CARGO_BIN_EXE_hybrid"))
        .args(["plan", "clusters/dev.toml", "--offline"])
        .current_dir(root())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert!(stdout.contains("+ vpc              10.42.0.0/16"), "{stdout}");
    assert!(stdout.contains("+ ssm_parameter    /hybrid/dev/secrets  SecureString (sensitive)"), "{stdout}");
    assert!(stdout.contains("+ ssm_parameter    /hybrid/dev/ca.crt  String (the CA certificate: public)"), "{stdout}");
    assert!(stdout.contains("Plan: 13 to add, 0 to change, 0 to destroy."), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_hybrid"))
        .args(["plan", "clusters/dev.toml", "--offline", "--output", "json", "--detailed-exitcode"])
        .current_dir(root())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["add"], 13);
    let kinds: Vec<&str> = v["plan"]["changes"].as_array().unwrap().iter().map(|c| c["resource"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "instance").count(), 4);
}

#[test]
fn apply_without_a_terminal_or_yes_refuses() {
    let moto = Moto::start();
    let c = Cluster::new("theta");
    let file = c.write(1, 0, "m6i.xlarge");
    let out = command_at(&moto.url, &["apply", file.to_str().unwrap(), "--ec2-only"]).stdin(std::process::Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("pass --yes"), "{}", text(&out.stderr));
    let seen = rt().block_on(async { instances(&clients(&moto.url).await.0, "theta").await });
    assert!(seen.is_empty());
    moto.reset();
}

/// `hybrid reap` destroys clusters whose hybrid:expires has passed and no
/// others; --dry-run changes nothing; without --yes it refuses.
#[test]
fn reap_destroys_only_expired_clusters() {
    let moto = Moto::start();
    let (old, young) = (Cluster::new("kappa"), Cluster::new("lambda"));
    apply(&moto.url, &old.write(1, 0, "m6i.xlarge"));
    apply(&moto.url, &young.write(1, 0, "m6i.xlarge"));
    rt().block_on(async {
        let (ec2, _) = clients(&moto.url).await;
        let sg = ec2
            .describe_security_groups()
            .filters(Filter::builder().name("tag:hybrid:cluster").values("kappa").build())
            .send()
            .await
            .unwrap();
        let id = sg.security_groups()[0].group_id().unwrap().to_string();
        ec2.create_tags()
            .resources(id)
            .tags(aws_sdk_ec2::types::Tag::builder().key("hybrid:expires").value("2020-01-01T00:00:00Z").build())
            .send()
            .await
            .unwrap();
    });
    let out = ok(&hybrid_at(&moto.url, &["reap", "--region", "us-east-1", "--dry-run"]));
    assert!(out.contains("would destroy kappa") && out.contains("keep     lambda"), "{out}");
    let refused = hybrid_at(&moto.url, &["reap", "--region", "us-east-1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        rt().block_on(async { instances(&clients(&moto.url).await.0, "kappa").await.len() }),
        2,
        "dry-run and refusal change nothing"
    );

    let out = ok(&hybrid_at(&moto.url, &["reap", "--region", "us-east-1", "--yes"]));
    assert!(out.contains("destroy  kappa") && out.contains("Destroy complete!"), "{out}");
    rt().block_on(async {
        let ec2 = clients(&moto.url).await.0;
        assert!(instances(&ec2, "kappa").await.is_empty());
        assert_eq!(instances(&ec2, "lambda").await.len(), 2);
    });
}

/// `hybrid logs`: the EC2 console output from moto and, over a real SSH
/// server on loopback standing in for the node, the Linux collectors. What
/// this cannot prove: the Windows commands (no Windows host here), and the
/// Linux node logs themselves (this machine is no node), which are recorded
/// as not collected.
#[test]
fn logs_gathers_console_output_and_ssh_diagnostics() {
    let moto = Moto::start();
    let sshd = crate::sshd::Sshd::start();
    let c = Cluster::new("psi");
    let file = c.write(1, 1, "m6i.xlarge");
    apply(&moto.url, &file);
    let out_dir = c.dir.join("logs");
    let host = format!("127.0.0.1:{}", sshd.port);
    let args = |node: &'static str, out: &'static str| {
        vec![
            "logs".to_string(),
            file.to_str().unwrap().to_string(),
            node.to_string(),
            "--out".into(),
            out_dir.join(out).to_str().unwrap().to_string(),
            "--ssh-host".into(),
            host.clone(),
            "--ssh-user".into(),
            sshd.user.clone(),
            "-i".into(),
            sshd.client_key.to_str().unwrap().to_string(),
        ]
    };
    let linux: Vec<String> = args("game-0", "game");
    let out = hybrid_at(&moto.url, &linux.iter().map(String::as_str).collect::<Vec<_>>());
    let stdout = ok(&out);
    assert!(stdout.contains("== game-0 (i-") && stdout.contains("console output"), "{stdout}");
    assert!(!std::fs::read_to_string(out_dir.join("game/console.log")).unwrap().is_empty());
    let system = std::fs::read_to_string(out_dir.join("game/system.txt")).unwrap();
    assert!(system.contains("Linux"), "ran over SSH: {system}");
    // This machine is no node: the node's logs do not exist on it, so those
    // collectors fail here. What must hold: each log is either collected or
    // recorded as not collected in its own file, and the run says which.
    let warning = text(&out.stderr);
    for f in ["hybrid-bootstrap.log", "cloud-init-output.log", "kubelet.log", "containerd.log"] {
        let (got, failed) = (out_dir.join("game").join(f).exists(), out_dir.join("game").join(format!("{f}.not-collected")).exists());
        assert!(got != failed, "{f}: collected {got}, failure recorded {failed}");
        assert_eq!(failed, warning.contains(f), "{f} in the warning: {warning}");
    }
    assert!(stdout.contains("diagnostics for game-0 are in"), "{stdout}");
    // Collection must work where it can: the test's SSH server answers
    // journalctl (a stand-in, see sshd.rs), so the kubelet's log is collected.
    // A run where every collector fails does not pass this.
    let kubelet = std::fs::read_to_string(out_dir.join("game/kubelet.log")).unwrap_or_default();
    assert!(kubelet.contains("stub journal: -u kubelet"), "the kubelet log was not collected: {kubelet:?}\n{warning}");

    let windows: Vec<String> = args("win-0", "win");
    // The SSH server here is Linux: every Windows collector fails. That is a
    // failed run, with each failure in its own file, never in the log's place.
    let out = hybrid_at(&moto.url, &windows.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("windows-2022"), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("no log could be collected over SSH (only the console output)"), "{}", text(&out.stderr));
    assert!(!out_dir.join("win/hybrid-bootstrap.log").exists(), "a failure written where the log belongs");
    assert!(!std::fs::read_to_string(out_dir.join("win/hybrid-bootstrap.log.not-collected")).unwrap().is_empty());
    assert!(!std::fs::read_to_string(out_dir.join("win/console.log")).unwrap().is_empty(), "the console output is kept");

    let missing = hybrid_at(&moto.url, &["logs", file.to_str().unwrap(), "nope-7"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no node \"nope-7\" in cluster psi"), "{}", text(&missing.stderr));
}

/// From far away (every call slowed by the proxy), hybrid asks everything
/// that waits for nothing else at once, and never more than `--parallelism`
/// calls at a time: an apply with the bound set to 3 stays within it and
/// converges, and a no-op plan at the default overlaps its discovery (more
/// than five calls in flight, at most ten) and still says "no changes".
#[test]
fn calls_overlap_within_the_parallelism_bound() {
    let moto = Moto::start();
    let far = FaultProxy::with_latency(&moto.url, 1, 0.0, 0.3);
    let c = Cluster::new("overlap");
    let file = c.write(4, 1, "m6i.xlarge");
    let f = file.to_str().unwrap();
    ok(&hybrid_at(&far.url, &["apply", f, "--yes", "--ec2-only", "--parallelism", "3"]));
    let bounded = far.max_in_flight();
    assert!((2..=3).contains(&bounded), "at most 3 calls in flight, and some overlap: {bounded}");
    assert_eq!(instance_slots(&moto.url, "overlap").len(), 6, "the control plane and five workers");

    far.reset();
    let out = hybrid_at(&far.url, &["plan", f, "--detailed-exitcode", "--ec2-only"]);
    assert_eq!(out.status.code(), Some(0), "no changes: {}{}", text(&out.stdout), text(&out.stderr));
    let overlapped = far.max_in_flight();
    assert!((6..=10).contains(&overlapped), "the plan's independent calls go at once, ten at most: {overlapped}");
}

/// --quiet keeps results and drops progress; --verbose (and RUST_LOG) log
/// every AWS call hybrid makes by operation, and never a secret.
#[test]
fn quiet_drops_progress_and_verbose_logs_every_call_without_secrets() {
    let moto = Moto::start();
    let c = Cluster::new("talkative");
    let file = c.write(1, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();
    let quiet = hybrid_at(&moto.url, &["apply", f, "--yes", "--ec2-only", "--quiet"]);
    assert_eq!(quiet.status.code(), Some(0), "{}", text(&quiet.stderr));
    assert!(text(&quiet.stdout).contains("Apply complete!"), "{}", text(&quiet.stdout));
    assert!(!text(&quiet.stderr).contains("launched"), "progress in quiet mode:\n{}", text(&quiet.stderr));
    let loud = hybrid_at(&moto.url, &["plan", f, "--ec2-only", "--verbose"]);
    assert_eq!(loud.status.code(), Some(0), "{}", text(&loud.stderr));
    let log = text(&loud.stderr);
    for op in ["DescribeVpcs", "DescribeInstances", "GetParameter"] {
        assert!(log.contains(&format!("hybrid::aws: {op} region=us-east-1")), "{op} not logged:\n{log}");
    }
    let secrets = rt().block_on(async {
        let (_, ssm) = clients(&moto.url).await;
        let p = ssm.get_parameter().name("/hybrid/talkative/secrets").with_decryption(true).send().await.unwrap();
        hybrid::bootstrap::pki::ClusterSecrets::from_stored(p.parameter().unwrap().value().unwrap()).unwrap()
    });
    assert!(!log.contains(secrets.token.secret()) && !log.contains("PRIVATE KEY"), "a secret in the log");
    let filtered = command_at(&moto.url, &["plan", f, "--ec2-only"]).env("RUST_LOG", "hybrid::aws=debug").output().unwrap();
    assert!(text(&filtered.stderr).contains("hybrid::aws: DescribeVpcs"), "RUST_LOG is not honoured:\n{}", text(&filtered.stderr));
}
