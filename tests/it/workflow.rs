//! The daily workflow of a team with one file and many clusters: `--set`
//! for a cluster per branch, `list` without the files, `extend`, saved
//! plans, and the CI example's commands, against moto.

use std::process::Output;

use aws_sdk_ec2::types::Filter;
use serde_json::Value;

use crate::moto::{Moto, hybrid_command};
use crate::util::text;

fn run(moto: &Moto, args: &[&str]) -> Output {
    hybrid_command(&moto.url, args).output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{what}\n{}\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn list(moto: &Moto) -> Vec<Value> {
    let out = ok(&run(moto, &["list", "--region", "us-east-1", "--output", "json"]), "list");
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

#[test]
fn one_file_many_clusters_listed_and_extended_without_their_files() {
    let moto = Moto::start();
    let file = "clusters/dev.toml";
    let branch = ["--set", "cluster.name=pr-42", "--set", "cluster.ttl=6h", "--set", "pool.game-servers.count=1"];
    let mut args = vec!["apply", file, "--yes", "--ec2-only"];
    args.extend(branch);
    let out = ok(&run(&moto, &args), "apply pr-42");
    assert!(out.contains("for cluster pr-42 in us-east-1"), "{out}");
    ok(&run(&moto, &["apply", file, "--yes", "--ec2-only", "--set", "cluster.name=pr-43"]), "apply pr-43");

    let clusters = list(&moto);
    let names: Vec<&str> = clusters.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pr-42", "pr-43"]);
    let pr42 = &clusters[0];
    assert_eq!(pr42["region"], "us-east-1");
    assert_eq!(pr42["state"], "complete", "{pr42}");
    assert_eq!(pr42["owner"], "arn:aws:sts::123456789012:user/moto");
    let left = pr42["expires_in_seconds"].as_i64().unwrap();
    assert!((5 * 3600..=6 * 3600).contains(&left), "{pr42}");
    assert_eq!(pr42["pools"]["game-servers"], serde_json::json!({ "linux": 1, "windows": 0 }));
    assert_eq!(pr42["pools"]["win-tools"], serde_json::json!({ "linux": 0, "windows": 1 }));
    assert!(pr42["usd_per_hour"].as_f64().unwrap() > 0.3, "{pr42}");
    // The file's own ttl (10h) for the cluster that did not set one.
    let left = clusters[1]["expires_in_seconds"].as_i64().unwrap();
    assert!((9 * 3600..=10 * 3600).contains(&left) && clusters[1]["pools"]["game-servers"]["linux"] == 2, "{}", clusters[1]);
    let table = ok(&run(&moto, &["list", "--region", "us-east-1"]), "list");
    assert!(table.starts_with("NAME   REGION     STATE     OWNER  CREATED"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("pr-42") && l.contains("game-servers 1L, win-tools 1W")), "{table}");

    // Two more days for pr-42: every resource carries the new expiry, so
    // reap (which trusts the earliest one it finds) keeps it.
    let out = ok(&run(&moto, &["extend", file, "2d", "--set", "cluster.name=pr-42"]), "extend");
    assert!(out.contains("Cluster pr-42 in us-east-1 now expires at") && out.contains("(in 2d)"), "{out}");
    let left = list(&moto)[0]["expires_in_seconds"].as_i64().unwrap();
    assert!((47 * 3600..=48 * 3600).contains(&left), "{left}");
    let expires = list(&moto)[0]["expires"].as_str().unwrap().to_string();
    rt().block_on(async {
        let (ec2, ssm) = crate::moto::aws_clients(&moto.url).await;
        let tags = ec2
            .describe_tags()
            .filters(Filter::builder().name("key").values("hybrid:cluster").build())
            .filters(Filter::builder().name("value").values("pr-42").build())
            .send()
            .await
            .unwrap();
        let ids: Vec<&str> = tags.tags().iter().filter_map(|t| t.resource_id()).collect();
        assert!(ids.len() > 6, "{ids:?}");
        let expiry = ec2.describe_tags().filters(Filter::builder().name("key").values("hybrid:expires").build()).send().await.unwrap();
        for id in &ids {
            let value = expiry.tags().iter().find(|t| t.resource_id() == Some(id)).and_then(|t| t.value());
            assert_eq!(value, Some(expires.as_str()), "{id}");
        }
        let param_tags = ssm
            .list_tags_for_resource()
            .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
            .resource_id("/hybrid/pr-42/secrets")
            .send()
            .await
            .unwrap();
        assert!(param_tags.tag_list().iter().any(|t| t.key() == "hybrid:expires" && t.value() == expires), "{param_tags:?}");
        let iam = crate::moto::iam_client(&moto.url).await;
        for p in hybrid::infra::desired::instance_profiles("pr-42", "us-east-1") {
            let tags = iam.list_role_tags().role_name(&p.name).send().await.unwrap();
            assert!(tags.tags().iter().any(|t| t.key() == "hybrid:expires" && t.value() == expires), "{}", p.name);
        }
    });
    let reap = ok(&run(&moto, &["reap", "--region", "us-east-1", "--dry-run"]), "reap");
    assert!(reap.contains("keep     pr-42") && reap.contains("keep     pr-43"), "{reap}");
    let out = run(&moto, &["extend", file, "100d", "--set", "cluster.name=pr-42"]);
    assert_eq!(out.status.code(), Some(64), "a duration past 90d is a usage error: {}", text(&out.stderr));
    let out = run(&moto, &["extend", file, "1h", "--set", "cluster.name=pr-99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no cluster pr-99 in us-east-1"), "{}", text(&out.stderr));

    // A stopped worker makes its cluster partial, and says which one.
    let worker = rt().block_on(async {
        let ec2 = crate::moto::aws_clients(&moto.url).await.0;
        let out = ec2
            .describe_instances()
            .filters(Filter::builder().name("tag:hybrid:cluster").values("pr-43").build())
            .filters(Filter::builder().name("tag:hybrid:slot").values("game-servers-1").build())
            .send()
            .await
            .unwrap();
        let id = out.reservations()[0].instances()[0].instance_id().unwrap().to_string();
        ec2.stop_instances().instance_ids(&id).send().await.unwrap();
        id
    });
    let pr43 = list(&moto).into_iter().find(|c| c["name"] == "pr-43").unwrap();
    assert_eq!(pr43["state"], "partial", "{pr43} ({worker})");
    assert_eq!(pr43["missing"], serde_json::json!(["game-servers-1 is stopped"]));

    // Destroyed without its file; list no longer shows it.
    ok(&run(&moto, &["destroy", "--name", "pr-42", "--region", "us-east-1", "--yes"]), "destroy by name");
    let after = list(&moto);
    let names: Vec<&str> = after.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["pr-43"], "{after:?}");
}

#[test]
fn set_flags_are_checked_like_the_file_and_named_in_errors() {
    let moto = Moto::start();
    let out = run(&moto, &["validate", "clusters/dev.toml", "--set", "cluster.ttl=6x", "--set", "cluster.name=pr-7"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--set cluster.ttl=6x: cluster.ttl:") && stderr.contains("1 │ cluster.ttl=6x"), "{stderr}");
    let out = run(&moto, &["plan", "clusters/dev.toml", "--offline", "--set", "pool.game.count=3"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("--set pool.game.count=3: there is no pool named `game`"), "{}", text(&out.stderr));
    let out = run(&moto, &["plan", "clusters/dev.toml", "--offline", "--set", "pool.win-tools.count=many"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("must be an integer, found `many`"), "{}", text(&out.stderr));
    // The values reach everything after: the plan is for the set cluster.
    let out = ok(
        &run(&moto, &["plan", "clusters/dev.toml", "--offline", "--set", "cluster.name=pr-7", "--set", "pool.win-tools.count=2"]),
        "plan",
    );
    assert!(out.contains("for cluster pr-7 ") && out.contains("win-tools-1"), "{out}");
}

/// `plan --out` then `apply PLANFILE`: exactly the saved plan, without a
/// question; refused, with what moved, when the file or AWS changed since.
/// A plan file holds no secret.
#[test]
fn a_saved_plan_is_carried_out_exactly_or_refused_with_what_moved() {
    let moto = Moto::start();
    let dir = crate::util::scratch("saved");
    let file = dir.join("cluster.toml");
    std::fs::copy("clusters/dev.toml", &file).unwrap();
    let f = file.to_str().unwrap();
    let planfile = dir.join("pr-50.plan");
    let p = planfile.to_str().unwrap();
    let out = ok(&run(&moto, &["plan", f, "--ec2-only", "--set", "cluster.name=pr-50", "--out", p]), "plan --out");
    assert!(out.contains("Plan: 13 to add"), "{out}");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&planfile).unwrap()).unwrap();
    assert_eq!(saved["format"], "hybrid-plan/1");
    assert_eq!(saved["sets"], serde_json::json!(["cluster.name=pr-50"]));
    assert_eq!(saved["cluster"], "pr-50");
    let raw = std::fs::read_to_string(&planfile).unwrap();
    assert!(!raw.contains("PRIVATE KEY") && !raw.contains("token"), "a plan file holds no secret");

    // Carried out as saved: no question (stdin is closed), the same count.
    let out = hybrid_command(&moto.url, &["apply", p, "--ec2-only"]).stdin(std::process::Stdio::null()).output().unwrap();
    let stdout = ok(&out, "apply PLANFILE");
    assert!(stdout.contains("Apply complete! Resources: 13 added"), "{stdout}");

    // A plan made, then AWS moves (an instance goes): refused, nothing done.
    let out = ok(
        &run(&moto, &["plan", f, "--ec2-only", "--set", "cluster.name=pr-50", "--set", "pool.game-servers.count=3", "--out", p]),
        "plan",
    );
    assert!(out.contains("+ instance         game-servers-2"), "{out}");
    rt().block_on(async {
        let ec2 = crate::moto::aws_clients(&moto.url).await.0;
        let found = ec2
            .describe_instances()
            .filters(Filter::builder().name("tag:hybrid:cluster").values("pr-50").build())
            .filters(Filter::builder().name("tag:hybrid:slot").values("game-servers-0").build())
            .send()
            .await
            .unwrap();
        let id = found.reservations()[0].instances()[0].instance_id().unwrap().to_string();
        ec2.terminate_instances().instance_ids(id).send().await.unwrap();
    });
    let out = run(&moto, &["apply", p, "--ec2-only"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("can no longer be carried out exactly; nothing was changed"), "{stderr}");
    assert!(stderr.contains("needed now, not in the plan: create instance game-servers-0"), "{stderr}");
    let slots = list(&moto).into_iter().find(|c| c["name"] == "pr-50").unwrap()["pools"]["game-servers"]["linux"].as_u64().unwrap();
    assert_eq!(slots, 1, "the refused plan launched something");

    // A plan made, then the file changes: refused too.
    ok(&run(&moto, &["plan", f, "--ec2-only", "--set", "cluster.name=pr-50", "--out", p]), "plan");
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("count = 2", "count = 4")).unwrap();
    let out = run(&moto, &["apply", p, "--ec2-only"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cluster.toml changed since the plan was made"), "{}", text(&out.stderr));
    // --set on a saved plan is a usage error: the plan carries its own.
    let out = run(&moto, &["apply", p, "--set", "cluster.name=other"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// examples/ci: valid GitHub workflows by SchemaStore's schema (shipped in
/// check-jsonschema, read offline), and every step that runs hybrid works,
/// in order, against moto: the PR's cluster is planned, applied from the
/// saved plan, described, destroyed when the PR closes, and reap runs.
/// (GitHub's own expression syntax and event types are not checked: the
/// schema does not know them.)
#[test]
fn the_ci_example_is_a_valid_workflow_and_its_hybrid_steps_work_against_moto() {
    let root = crate::util::root();
    let check = |files: &[&std::path::Path]| {
        std::process::Command::new(root.join(".venv/bin/check-jsonschema"))
            .args(["--builtin-schema", "vendor.github-workflows"])
            .args(files)
            .output()
            .unwrap()
    };
    let examples = [root.join("examples/ci/pr-cluster.yml"), root.join("examples/ci/reap.yml")];
    let out = check(&[&examples[0], &examples[1]]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    // The check can fail: a job without runs-on is refused.
    let dir = crate::util::scratch("ci");
    std::fs::create_dir_all(dir.join("clusters")).unwrap();
    let broken = dir.join("broken.yml");
    std::fs::write(&broken, std::fs::read_to_string(&examples[1]).unwrap().replace("    runs-on: ubuntu-latest\n", "")).unwrap();
    assert!(!check(&[&broken]).status.success(), "the schema check accepts a job without runs-on");

    let moto = Moto::start();
    std::fs::copy(root.join("clusters/dev.toml"), dir.join("clusters/dev.toml")).unwrap();
    let summary = dir.join("summary.md");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_hybrid")).parent().unwrap().to_path_buf();
    let steps = |file: &std::path::Path| -> Vec<(String, String)> {
        let doc = &crate::tools::yaml_to_json(&std::fs::read_to_string(file).unwrap()).unwrap()[0];
        let mut out = Vec::new();
        // In the order a PR lives (JSON maps here are sorted by name).
        let jobs = doc["jobs"].as_object().unwrap();
        assert!(jobs.keys().all(|k| ["up", "down", "reap"].contains(&k.as_str())), "{:?}", jobs.keys());
        for job in ["up", "down", "reap"].iter().filter_map(|k| jobs.get(*k)) {
            for step in job["steps"].as_array().unwrap() {
                if let Some(run) = step["run"].as_str().filter(|r| r.contains("hybrid ") && !r.contains("cargo install")) {
                    out.push((step["name"].as_str().unwrap_or_default().to_string(), run.to_string()));
                }
            }
        }
        out
    };
    let run_step = |name: &str, script: &str| {
        let out = std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
            .env("HOME", &dir)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", &moto.url)
            .env("NO_COLOR", "1")
            // The workflows' env, with moto's region.
            .env("CLUSTER_FILE", "clusters/dev.toml")
            .env("AWS_REGION", "us-east-1")
            .env("PR", "42")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "step {name}:\n{script}\n{}\n{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    };
    let pr = steps(&examples[0]);
    let names: Vec<&str> = pr.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Plan", "Apply", "How to reach it", "Destroy"]);
    for (name, script) in &pr[..3] {
        run_step(name, script);
    }
    let cluster = list(&moto).into_iter().find(|c| c["name"] == "pr-42").expect("the PR's cluster exists");
    assert!(cluster["expires_in_seconds"].as_i64().unwrap() > 7 * 3600, "{cluster}");
    let shown = std::fs::read_to_string(&summary).unwrap();
    assert!(
        shown.contains("hybrid kubeconfig clusters/dev.toml --set cluster.name=pr-42 --set cluster.region=us-east-1 --merge"),
        "{shown}"
    );
    run_step(&pr[3].0, &pr[3].1);
    assert!(list(&moto).iter().all(|c| c["name"] != "pr-42"), "the closed PR's cluster is still there");
    for (name, script) in steps(&examples[1]) {
        run_step(&name, &script);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Game servers testers can reach: a pool's `player_ports` open to
/// `player_cidrs` in a security group of the pool's own, which only its
/// nodes are in; added to a running pool without replacing a node, and
/// gone again (nodes out of it first) when the ports are removed.
#[test]
fn player_ports_open_a_pools_nodes_to_the_testers_only() {
    let moto = Moto::start();
    let players = ["--set", "network.player_cidrs=198.51.100.0/24", "--set", "pool.game-servers.player_ports=7000-8000/udp,7777/tcp"];
    let mut args = vec!["apply", "clusters/dev.toml", "--yes", "--ec2-only", "--set", "cluster.name=play"];
    let first = ok(&run(&moto, &args), "apply without player ports");
    assert!(!first.contains("players"), "{first}");
    args.extend(players);
    let plan_args = |a: &[&'static str]| -> Vec<&'static str> {
        std::iter::once("plan").chain(a[1..].iter().copied().filter(|x| *x != "--yes")).collect()
    };
    let plan = ok(&run(&moto, &plan_args(&args)), "plan");
    assert!(plan.contains("+ players_group    play-game-servers-players"), "{plan}");
    assert!(plan.contains("+ udp 7000-8000 from 198.51.100.0/24  (players: game-servers)"), "{plan}");
    assert!(
        plan.contains("~ security_groups  game-servers-0") && !plan.contains("-/+ instance"),
        "running nodes join, none is replaced:\n{plan}"
    );
    ok(&run(&moto, &args), "apply with player ports");

    let groups_of = |slot: &str| -> Vec<String> {
        rt().block_on(async {
            let ec2 = crate::moto::aws_clients(&moto.url).await.0;
            let out = ec2
                .describe_instances()
                .filters(Filter::builder().name("tag:hybrid:cluster").values("play").build())
                .filters(Filter::builder().name("tag:hybrid:slot").values(slot).build())
                .filters(Filter::builder().name("instance-state-name").values("running").build())
                .send()
                .await
                .unwrap();
            let mut names: Vec<String> =
                out.reservations()[0].instances()[0].security_groups().iter().map(|g| g.group_name().unwrap().to_string()).collect();
            names.sort();
            names
        })
    };
    assert_eq!(groups_of("game-servers-0"), ["play-game-servers-players", "play-nodes"]);
    assert_eq!(groups_of("win-tools-0"), ["play-nodes"], "other pools stay out");
    let rules = rt().block_on(async {
        let ec2 = crate::moto::aws_clients(&moto.url).await.0;
        let out = ec2
            .describe_security_groups()
            .filters(Filter::builder().name("group-name").values("play-game-servers-players").build())
            .send()
            .await
            .unwrap();
        let g = &out.security_groups()[0];
        assert!(g.tags().iter().any(|t| t.key() == Some("hybrid:players-pool") && t.value() == Some("game-servers")));
        let mut rules: Vec<String> = g
            .ip_permissions()
            .iter()
            .flat_map(|p| {
                p.ip_ranges().iter().map(move |r| {
                    format!("{} {}-{} {}", p.ip_protocol().unwrap(), p.from_port().unwrap(), p.to_port().unwrap(), r.cidr_ip().unwrap())
                })
            })
            .collect();
        rules.sort();
        rules
    });
    assert_eq!(rules, ["tcp 7777-7777 198.51.100.0/24", "udp 7000-8000 198.51.100.0/24"]);
    // A new node of the pool is launched into both groups.
    let mut more = args.clone();
    more.extend(["--set", "pool.game-servers.count=3"]);
    ok(&run(&moto, &more), "scale up");
    assert_eq!(groups_of("game-servers-2"), ["play-game-servers-players", "play-nodes"]);
    let again = ok(&run(&moto, &plan_args(&more)), "plan");
    assert!(again.contains("No changes."), "{again}");

    // Without the ports: the nodes leave, then the group goes.
    let out = ok(
        &run(
            &moto,
            &["apply", "clusters/dev.toml", "--yes", "--ec2-only", "--set", "cluster.name=play", "--set", "pool.game-servers.count=3"],
        ),
        "apply without",
    );
    assert!(
        out.contains("- players_group    play-game-servers-players") && out.contains("pool game-servers opens no player ports any more"),
        "{out}"
    );
    assert_eq!(groups_of("game-servers-0"), ["play-nodes"]);
    ok(&run(&moto, &["destroy", "--name", "play", "--region", "us-east-1", "--yes"]), "destroy");
}

#[test]
fn player_ports_never_overlap_the_clusters_own() {
    let moto = Moto::start();
    let out = run(
        &moto,
        &[
            "validate",
            "clusters/dev.toml",
            "--set",
            "network.player_cidrs=198.51.100.0/24",
            "--set",
            "pool.game-servers.player_ports=30500/udp,7000-8000/udp,7500/udp",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("30500/udp overlaps the cluster's own 30000-32767/udp (NodePort services (UDP))"), "{stderr}");
    assert!(stderr.contains("7500/udp overlaps 7000-8000/udp in the same list"), "{stderr}");
    let out = run(&moto, &["validate", "clusters/dev.toml", "--set", "pool.game-servers.player_ports=7777/sctp"]);
    assert!(text(&out.stderr).contains("`sctp` is not tcp or udp"), "{}", text(&out.stderr));
}

/// Every command that prints data prints, with `--output json`, exactly the
/// keys docs/json.md documents for it (the images' items are compared in
/// bake.rs, where images exist).
#[test]
fn every_json_output_has_its_documented_shape() {
    use crate::util::{assert_documented_json, documented_json};
    let moto = Moto::start();
    let file = "clusters/dev.toml";
    let json = |args: &[&str], what: &str| -> Value {
        let mut args = args.to_vec();
        args.extend(["--output", "json"]);
        serde_json::from_str(&ok(&run(&moto, &args), what)).unwrap_or_else(|e| panic!("{what}: not one JSON document: {e}"))
    };
    ok(&run(&moto, &["apply", file, "--yes", "--ec2-only"]), "apply");
    let cases: [(&str, Vec<&str>); 7] = [
        ("plan", vec!["plan", file, "--set", "pool.game-servers.count=3"]),
        ("plan", vec!["plan", file, "--offline"]),
        ("status", vec!["status", file]),
        ("list", vec!["list", "--region", "us-east-1"]),
        ("images", vec!["images", "--region", "us-east-1"]),
        ("validate", vec!["validate", "tests/fixtures/warn/no-admin-cidrs.toml"]),
        ("versions", vec!["versions", file]),
    ];
    for (command, args) in cases {
        let value = json(&args, &args.join(" "));
        let compared = assert_documented_json(command, &value);
        let documented = documented_json(command).len();
        if command == "images" {
            assert_eq!((compared, value.as_array().map(Vec::len)), (0, Some(0)), "no images here: {value:#}");
        } else {
            assert_eq!(compared, documented, "{}: every documented path is there\n{value:#}", args.join(" "));
        }
    }
    // What the plan said of the cluster side: AWS is moto and no
    // --api-server was given, so it was skipped, and says why.
    let plan = json(&["plan", file], "plan");
    assert_eq!(plan["kubernetes_status"]["state"], "skipped", "{plan:#}");
    assert!(plan["kubernetes_status"]["why"].as_str().is_some_and(|w| !w.is_empty()), "{plan:#}");
    let offline = json(&["plan", file, "--offline"], "plan --offline");
    assert_eq!(offline["kubernetes_status"], serde_json::json!({ "state": "not-asked", "why": "--offline" }));
}
