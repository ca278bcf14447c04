//! `hybrid bake` and `hybrid images` against moto. moto runs no user data,
//! so a helper plays the builder's script: it stops each builder instance
//! a moment after it starts, as the bake script's shutdown does. What this
//! cannot prove: that the bake script really installs everything on a real
//! Windows or Linux image (moto boots nothing; the scripts are checked by
//! parsers and linters in render.rs and boot.rs), how long a real bake or a
//! boot from the image takes (scripts/e2e-aws.sh measures that on AWS).
//! The played builders write the console a real bake script would (its
//! completion marker, through tests/support/moto_server.py).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use base64::Engine;

use hybrid::bootstrap::{NodeBootstrap, Renderer, Templates};
use hybrid::model::net::Ipv4Cidr;
use hybrid::model::{ClusterSpec, Vpc};

use crate::ec2::Cluster;
use crate::moto::{Always, FaultProxy, Moto, Rule, aws_clients, hybrid_command, is_write};
use crate::tools;
use crate::util::text;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// How the played bake script ends.
#[derive(Clone, Copy)]
enum Ending {
    /// It seals the image and says `bake done` on the console, then shuts down.
    Sealed,
    /// It says `bake fail <why>` (the seal did not take), then shuts down.
    SealFailed,
    /// The builder stops without a word from the script (a maintenance
    /// event, someone stopping it).
    StoppedFromOutside,
}

/// Plays the bake script: stops every running builder `after` it is first
/// seen, with the console the script would leave (`ending`).
struct Builders {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Builders {
    fn play(moto: &Moto, after: Duration) -> Self {
        Self::ending(moto, after, Ending::Sealed)
    }

    fn ending(moto: &Moto, after: Duration, ending: Ending) -> Self {
        let (moto_url, console) = (moto.url.clone(), moto.console_dir());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            rt().block_on(async move {
                let ec2 = aws_clients(&moto_url).await.0;
                let mut seen: BTreeMap<String, std::time::Instant> = BTreeMap::new();
                while !flag.load(Ordering::Relaxed) {
                    let out = ec2
                        .describe_instances()
                        .filters(Filter::builder().name("tag-key").values("hybrid:bake-builder").build())
                        .filters(Filter::builder().name("instance-state-name").values("running").build())
                        .send()
                        .await
                        .unwrap();
                    for i in out.reservations().iter().flat_map(|r| r.instances()) {
                        let id = i.instance_id().unwrap().to_string();
                        let first = *seen.entry(id.clone()).or_insert_with(std::time::Instant::now);
                        if first.elapsed() >= after {
                            let now = "2026-12-06T10:00:00.000Z";
                            let mut text = format!("HYBRID-TIMELINE {now} bootstrap start bake\nHYBRID-TIMELINE {now} images done\n");
                            match ending {
                                Ending::Sealed => text.push_str(&format!("HYBRID-TIMELINE {now} bake done\n")),
                                Ending::SealFailed => text
                                    .push_str(&format!("HYBRID-TIMELINE {now} bake fail EC2Launch reset exited 1 and left state.json\n")),
                                Ending::StoppedFromOutside => text.push_str("Windows is shutting down\n"),
                            }
                            crate::moto::console_at(&console, &id, &text);
                            ec2.stop_instances().instance_ids(id).send().await.unwrap();
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        Builders { stop, thread: Some(thread) }
    }
}

impl Drop for Builders {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(endpoint: &str, args: &[&str]) -> std::process::Output {
    hybrid_command(endpoint, args).output().unwrap()
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(0), "{what}\nstdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Runs `bake FILE` through the proxy and kills it right after CreateImage
/// (the image made, the builder not yet ended); returns the builders left
/// running.
fn bake_killed_after_create_image(proxy: &FaultProxy, moto: &Moto, file: &std::path::Path, pid_file: &std::path::Path) -> Vec<String> {
    proxy.reset();
    proxy.add_rules(&[Rule { op: "CreateImage", nth: 1, fault: "kill-after" }], Some(pid_file));
    let killed = crate::crash::spawn_recorded(&proxy.url, &["bake", file.to_str().unwrap(), "--yes", "--poll-ms", "100"], pid_file);
    assert_ne!(killed.status.code(), Some(0), "the bake was not killed");
    live(&builders(&moto.url)).into_iter().map(|(id, _)| id.clone()).collect()
}

/// Moves a test cluster file (written for 1.36) to another Kubernetes minor:
/// another image to bake.
fn on_kubernetes(file: &std::path::Path, minor: &str) {
    let body = std::fs::read_to_string(file).unwrap();
    assert!(body.contains("kubernetes_version = \"1.36\""));
    std::fs::write(file, body.replace("kubernetes_version = \"1.36\"", &format!("kubernetes_version = \"{minor}\""))).unwrap();
}

/// (image id, bake key, state) of every baked image.
fn baked(endpoint: &str) -> Vec<(String, String, String)> {
    rt().block_on(async {
        let ec2 = aws_clients(endpoint).await.0;
        let out = ec2
            .describe_images()
            .owners("self")
            .filters(Filter::builder().name("tag-key").values("hybrid:bake-key").build())
            .send()
            .await
            .unwrap();
        let mut v: Vec<(String, String, String)> = out
            .images()
            .iter()
            .map(|i| {
                let key = i.tags().iter().find(|t| t.key() == Some("hybrid:bake-key")).and_then(|t| t.value()).unwrap_or_default();
                (i.image_id().unwrap().to_string(), key.to_string(), i.state().unwrap().as_str().to_string())
            })
            .collect();
        v.sort();
        v
    })
}

/// (instance id, state) of every builder, terminated ones included.
fn builders(endpoint: &str) -> Vec<(String, String)> {
    rt().block_on(async {
        let ec2 = aws_clients(endpoint).await.0;
        let out =
            ec2.describe_instances().filters(Filter::builder().name("tag-key").values("hybrid:bake-builder").build()).send().await.unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| (i.instance_id().unwrap().to_string(), i.state().unwrap().name().unwrap().as_str().to_string()))
            .collect()
    })
}

fn live(b: &[(String, String)]) -> Vec<&(String, String)> {
    b.iter().filter(|(_, s)| s != "terminated" && s != "shutting-down").collect()
}

/// The script inside a builder's user data (cloud-config, or the Windows
/// loader's gzip+base64 payload).
fn builder_script(endpoint: &str, id: &str) -> String {
    let raw = rt().block_on(async {
        let ec2 = aws_clients(endpoint).await.0;
        let attr = ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
            .send()
            .await
            .unwrap();
        base64::engine::general_purpose::STANDARD.decode(attr.user_data().unwrap().value().unwrap()).unwrap()
    });
    let text = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_string(&mut s).unwrap();
        s
    } else {
        String::from_utf8(raw).unwrap()
    };
    match text.split("'").find(|part| part.len() > 200 && part.starts_with("H4sI")) {
        // The Windows loader carries the script as one gzip+base64 string.
        Some(packed) => {
            let gz = base64::engine::general_purpose::STANDARD.decode(packed).unwrap();
            let mut s = String::new();
            flate2::read::GzDecoder::new(gz.as_slice()).read_to_string(&mut s).unwrap();
            s
        }
        None => text,
    }
}

#[test]
fn bake_makes_tagged_images_that_plan_and_apply_use_and_destroy_leaves() {
    let moto = Moto::start();
    let c = Cluster::new("bk");
    let file = c.write(2, 1, "m6i.xlarge");
    let f = file.to_str().unwrap();

    // Before any bake the pools boot stock images, and plan says why.
    let plan = ok(&run(&moto.url, &["plan", f, "--ec2-only"]), "plan before bake");
    assert!(plan.contains("pool win: stock ami-0a20220000000000a because no baked image for key"), "{plan}");

    let _script = Builders::play(&moto, Duration::from_millis(300));
    let out = run(&moto.url, &["bake", f, "--yes", "--poll-ms", "100"]);
    let stdout = ok(&out, "bake");
    assert!(stdout.contains("+ to bake") && stdout.contains("Bake complete! 2 image(s) baked, 0 existed."), "{stdout}");
    let images = baked(&moto.url);
    assert_eq!(images.len(), 2, "one image per distinct OS: {images:?}");
    assert!(images.iter().all(|(_, key, state)| key.len() == 16 && state == "available"), "{images:?}");
    let all_builders = builders(&moto.url);
    assert_eq!(all_builders.len(), 2);
    assert!(live(&all_builders).is_empty(), "builders are terminated: {all_builders:?}");

    // The builders got the bake script: bake mode, no cluster secret, IMDSv2.
    for (id, _) in &all_builders {
        let script = builder_script(&moto.url, id);
        assert!(
            script.contains("MODE='bake'") || script.contains("$Mode = 'bake'"),
            "{id}: not a bake script:\n{}",
            &script[..script.len().min(400)]
        );
        assert!(!script.contains("PRIVATE KEY"), "{id}: key material in a builder");
    }
    rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        let out = ec2.describe_instances().set_instance_ids(Some(all_builders.iter().map(|b| b.0.clone()).collect())).send().await.unwrap();
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            let tags: BTreeMap<&str, &str> = i.tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
            assert!(!tags.contains_key("hybrid:cluster"), "a builder is no cluster resource: {tags:?}");
            assert!(tags.contains_key("hybrid:expires"), "reap can end a builder a crash left");
            assert_eq!(i.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str()), Some("required"));
        }
        let out = ec2.describe_images().image_ids(&images[0].0).send().await.unwrap();
        let tags: BTreeMap<&str, &str> = out.images()[0].tags().iter().map(|t| (t.key().unwrap(), t.value().unwrap())).collect();
        assert!(tags["hybrid:bake-line"].contains("k8s 1.36") && tags.contains_key("hybrid:baked-from"), "{tags:?}");
    });

    // Again: nothing to do, and not one write on the wire.
    let wire = FaultProxy::start(&moto.url, 1, 0.0);
    let again = ok(&run(&wire.url, &["bake", f, "--yes", "--poll-ms", "100"]), "second bake");
    assert!(again.contains("Nothing to bake"), "{again}");
    let writes: Vec<String> = wire.log().into_iter().map(|(op, _)| op).filter(|op| is_write(op)).collect();
    assert!(writes.is_empty(), "{writes:?}");

    // plan and apply use the images.
    let plan = ok(&run(&moto.url, &["plan", f, "--ec2-only"]), "plan after bake");
    assert!(plan.contains("pool win: baked ami-") && plan.contains("no downloads or reboot before joining"), "{plan}");
    ok(&run(&moto.url, &["apply", f, "--yes", "--ec2-only"]), "apply");
    let baked_ids: Vec<&str> = images.iter().map(|(id, _, _)| id.as_str()).collect();
    rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        let out = ec2
            .describe_instances()
            .filters(Filter::builder().name("tag:hybrid:cluster").values("bk").build())
            .filters(Filter::builder().name("instance-state-name").values("running").build())
            .send()
            .await
            .unwrap();
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            let slot = i.tags().iter().find(|t| t.key() == Some("hybrid:slot")).and_then(|t| t.value()).unwrap();
            let uses_baked = baked_ids.contains(&i.image_id().unwrap());
            assert_eq!(uses_baked, slot != "control-plane", "{slot} runs {}", i.image_id().unwrap());
        }
    });
    let listed = ok(&run(&moto.url, &["images", "--region", "us-east-1"]), "images");
    assert_eq!(listed.lines().filter(|l| l.contains(" yes ")).count(), 2, "both in use:\n{listed}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&run(&moto.url, &["images", "--region", "us-east-1", "--output", "json"]), "images as JSON")).unwrap();
    let listed: Vec<&serde_json::Value> = json.as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), images.len(), "{json:#}");
    assert_eq!(crate::util::assert_documented_json("images", &json), 1, "docs/json.md's item keys");
    assert!(
        listed.iter().all(|i| i["in_use"] == true && i["id"].as_str().is_some_and(|id| images.iter().any(|(b, _, _)| b == id))),
        "{json:#}"
    );

    // destroy leaves baked images; prune keeps the newest of each kind.
    ok(&run(&moto.url, &["destroy", f, "--yes"]), "destroy");
    assert_eq!(baked(&moto.url), images, "destroy never touches baked images");
    let pruned = ok(&run(&moto.url, &["images", "--region", "us-east-1", "--prune", "--yes"]), "prune");
    assert!(pruned.contains("Nothing to prune"), "{pruned}");
}

/// A bake killed right after it launched a builder continues with that
/// builder; one killed after CreateImage finds the image and ends the
/// builder; a builder that never finishes is terminated, never left.
#[test]
fn bake_resumes_after_kills_and_never_leaves_a_builder_running() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let pid_file = crate::util::scratch("bake").join("pid");
    let c = Cluster::new("bk2");
    let file = c.write(2, 0, "m6i.xlarge");
    let f = file.to_str().unwrap();

    // A builder that never finishes: given up, terminated, no image.
    let out = run(&moto.url, &["bake", f, "--yes", "--poll-ms", "100", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("did not finish within 2s"), "{}", text(&out.stderr));
    assert!(live(&builders(&moto.url)).is_empty(), "the stuck builder was terminated: {:?}", builders(&moto.url));
    assert!(baked(&moto.url).is_empty());

    // Killed after RunInstances: the rerun takes that builder, launches none.
    proxy.add_rules(&[Rule { op: "RunInstances", nth: 1, fault: "kill-after" }], Some(&pid_file));
    let killed = crate::crash::spawn_recorded(&proxy.url, &["bake", f, "--yes", "--poll-ms", "100"], &pid_file);
    assert_ne!(killed.status.code(), Some(0));
    let left = live(&builders(&moto.url)).len();
    assert_eq!(left, 1, "the killed run left its builder");
    proxy.reset();
    let _script = Builders::play(&moto, Duration::from_millis(200));
    let out = ok(&run(&proxy.url, &["bake", f, "--yes", "--poll-ms", "100"]), "resumed bake");
    assert!(out.contains("Bake complete! 1 image(s) baked"), "{out}");
    assert!(!proxy.log().iter().any(|(op, _)| op == "RunInstances"), "no second builder");
    assert!(live(&builders(&moto.url)).is_empty());
    assert_eq!(baked(&moto.url).len(), 1);

    // Killed after CreateImage (image made, builder not yet ended): the
    // rerun finds the image and ends the builder.
    let c3 = Cluster::new("bk3");
    let file3 = c3.write(2, 0, "m5.xlarge");
    on_kubernetes(&file3, "1.35");
    let images_before: Vec<String> = baked(&moto.url).into_iter().map(|(id, _, _)| id).collect();
    let left = bake_killed_after_create_image(&proxy, &moto, &file3, &pid_file);
    assert_eq!(left.len(), 1, "killed before ending its builder");
    // Killed before its snapshots were tagged: nothing could find them.
    let image3 = baked(&moto.url).into_iter().map(|(id, _, _)| id).find(|id| !images_before.contains(id)).unwrap();
    assert!(!untagged_snapshots(&moto.url, &image3).is_empty(), "the kill left the snapshots untagged");
    let out = ok(&run(&moto.url, &["bake", file3.to_str().unwrap(), "--yes", "--poll-ms", "100"]), "rerun after CreateImage");
    assert!(out.contains("Nothing to bake") && out.contains("terminated leftover builder(s)"), "{out}");
    assert!(untagged_snapshots(&moto.url, &image3).is_empty(), "the rerun tagged them: {out}");
    assert!(live(&builders(&moto.url)).is_empty(), "{:?}", builders(&moto.url));
    assert_eq!(baked(&moto.url).len(), 2);

    // Stopped while its image was still being made, the builder already
    // ended (as Ctrl-C leaves it): the rerun waits for that image instead
    // of making one from a builder that is gone.
    let c4 = Cluster::new("bk4");
    let file4 = c4.write(2, 0, "m5.2xlarge");
    on_kubernetes(&file4, "1.37");
    let left = bake_killed_after_create_image(&proxy, &moto, &file4, &pid_file);
    assert_eq!(left.len(), 1, "killed before ending its builder");
    rt().block_on(async { aws_clients(&moto.url).await.0.terminate_instances().set_instance_ids(Some(left)).send().await.unwrap() });
    proxy.reset();
    // Baked images read as pending for the rerun's first two looks at them
    // (what to bake, and what this key already has); then it is available.
    proxy.add_repeated(&Rule { op: "DescribeImages", nth: 1, fault: "image-pending" }, "bake-key", 2);
    let rerun = run(&proxy.url, &["bake", file4.to_str().unwrap(), "--yes", "--poll-ms", "100"]);
    let out = ok(&rerun, "rerun with the image pending") + &text(&rerun.stderr);
    let log = proxy.log();
    assert!(log.iter().filter(|(op, f)| op == "DescribeImages" && f == "image-pending").count() == 2, "{log:?}");
    assert!(out.contains("is still being created; waiting for it") && out.contains("Bake complete! 1 image(s) baked"), "{out}");
    assert!(!log.iter().any(|(op, _)| op == "CreateImage" || op == "RunInstances"), "nothing made twice: {log:?}");
    assert_eq!(baked(&moto.url).len(), 3);
}

/// `image = "baked"` without one fails the plan clearly; `stock` never uses one.
#[test]
fn a_pool_that_requires_a_baked_image_fails_clearly_without_one() {
    let moto = Moto::start();
    let c = Cluster::new("bk-requires-baked");
    let file = c.write(2, 1, "m6i.xlarge");
    let body = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, body.replace("name = \"win\"", "name = \"win\"\nimage = \"baked\"")).unwrap();
    let out = run(&moto.url, &["plan", file.to_str().unwrap(), "--ec2-only"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("pool win: image = \"baked\", but no baked image matches key"), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("hybrid bake FILE --pool win"), "{}", text(&out.stderr));
}

/// `--fast-launch` is refused with the reason before anything is made:
/// EC2 Fast Launch takes only sysprepped images, which hybrid does not make.
#[test]
fn fast_launch_is_refused_with_the_reason() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    let c = Cluster::new("bk5");
    let file = c.write(2, 1, "m6i.xlarge");
    let out = run(&proxy.url, &["bake", file.to_str().unwrap(), "--yes", "--pool", "win", "--fast-launch", "5"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--fast-launch") && stderr.contains("Sysprep"), "{stderr}");
    assert!(proxy.log().is_empty(), "refused before any AWS call: {:?}", proxy.log());
}

/// A builder that stops without its script's `bake done` (someone stopped
/// it, a maintenance event) or after `bake fail` (the seal did not take)
/// makes no image: the bake fails at once, saying which, and ends the builder.
#[test]
fn only_a_builder_whose_script_sealed_it_becomes_an_image() {
    for (name, ending, says) in [
        ("bk-stopped", Ending::StoppedFromOutside, "stopped before its bake script said it was done"),
        ("bk-seal-failed", Ending::SealFailed, "could not seal the image (EC2Launch reset exited 1 and left state.json)"),
    ] {
        let moto = Moto::start();
        let c = Cluster::new(name);
        let file = c.write(2, 1, "m6i.xlarge");
        let _script = Builders::ending(&moto, Duration::from_millis(200), ending);
        let out = run(&moto.url, &["bake", file.to_str().unwrap(), "--yes", "--poll-ms", "100", "--pool", "win", "--timeout", "10m"]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stdout));
        assert!(text(&out.stderr).contains(says), "{name}: {}", text(&out.stderr));
        assert!(baked(&moto.url).is_empty(), "{name}: no image");
        assert!(live(&builders(&moto.url)).is_empty(), "{name}: the builder was terminated: {:?}", builders(&moto.url));
    }
}

/// Two images of one kind (the same versions on two base images): prune
/// removes the older one, with its snapshots, and keeps the newest.
#[test]
fn prune_removes_unused_older_images_of_a_kind_and_their_snapshots() {
    let moto = Moto::start();
    let c = Cluster::new("bk6");
    let file = c.write(2, 1, "m6i.xlarge");
    let body = std::fs::read_to_string(&file).unwrap();
    let _script = Builders::play(&moto, Duration::from_millis(100));
    let mut made = Vec::new();
    for base in ["ami-0a20220000000000b", "ami-0a20220000000000a"] {
        std::fs::write(&file, body.replace("name = \"win\"", &format!("name = \"win\"\nami = \"{base}\""))).unwrap();
        ok(&run(&moto.url, &["bake", file.to_str().unwrap(), "--yes", "--poll-ms", "100", "--pool", "win"]), "bake");
        made.push(baked(&moto.url).into_iter().map(|(id, _, _)| id).find(|id| !made.contains(id)).unwrap());
        // Creation dates have one-second resolution.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let (older, newer) = (&made[0], &made[1]);
    let snapshots = |id: &str| {
        rt().block_on(async {
            let ec2 = aws_clients(&moto.url).await.0;
            let out = ec2.describe_images().image_ids(id).send().await.unwrap();
            out.images()[0].block_device_mappings().iter().filter_map(|m| m.ebs()?.snapshot_id().map(str::to_string)).collect::<Vec<_>>()
        })
    };
    let older_snapshots = snapshots(older);
    assert!(!older_snapshots.is_empty());
    let listed = ok(&run(&moto.url, &["images", "--region", "us-east-1"]), "images");
    assert!(listed.contains(older.as_str()) && listed.contains(newer.as_str()), "{listed}");
    let out = ok(&run(&moto.url, &["images", "--region", "us-east-1", "--prune", "--yes"]), "prune");
    assert!(out.contains(&format!("removed {older}")), "{out}");
    let left: Vec<String> = baked(&moto.url).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(left, std::slice::from_ref(newer));
    rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        let snaps = ec2.describe_snapshots().set_snapshot_ids(Some(older_snapshots.clone())).send().await;
        assert!(snaps.is_err() || snaps.unwrap().snapshots().is_empty(), "the older image's snapshots are deleted");
    });
}

/// The snapshots of `image` without the bake key tag.
fn untagged_snapshots(endpoint: &str, image: &str) -> Vec<String> {
    rt().block_on(async {
        let ec2 = aws_clients(endpoint).await.0;
        let out = ec2.describe_images().image_ids(image).send().await.unwrap();
        let ids: Vec<String> =
            out.images()[0].block_device_mappings().iter().filter_map(|m| m.ebs()?.snapshot_id().map(str::to_string)).collect();
        let snaps = ec2.describe_snapshots().set_snapshot_ids(Some(ids)).send().await.unwrap();
        snaps
            .snapshots()
            .iter()
            .filter(|s| !s.tags().iter().any(|t| t.key() == Some("hybrid:bake-key")))
            .map(|s| s.snapshot_id().unwrap().to_string())
            .collect()
    })
}

/// Prune reads every page of instances: an older image that only an
/// instance past the first page (moto pages at 100 reservations) runs is
/// in use, and stays; an image still being made (pending) is never pruned;
/// and a bake whose pending image is deregistered fails at once.
#[test]
fn prune_spares_images_in_use_past_the_first_page_and_pending_ones() {
    let moto = Moto::start();
    let c = Cluster::new("bk-prune-pages");
    let file = c.write(2, 1, "m6i.xlarge");
    let body = std::fs::read_to_string(&file).unwrap();
    let _script = Builders::play(&moto, Duration::from_millis(100));
    let mut made = Vec::new();
    for base in ["ami-0a20220000000000b", "ami-0a20220000000000a"] {
        std::fs::write(&file, body.replace("name = \"win\"", &format!("name = \"win\"\nami = \"{base}\""))).unwrap();
        ok(&run(&moto.url, &["bake", file.to_str().unwrap(), "--yes", "--poll-ms", "100", "--pool", "win"]), "bake");
        made.push(baked(&moto.url).into_iter().map(|(id, _, _)| id).find(|id| !made.contains(id)).unwrap());
        std::thread::sleep(Duration::from_millis(1100));
    }
    let (older, newer) = (made[0].clone(), made[1].clone());
    // 100 reservations run the newer image, then one the older: page two.
    rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        for n in 0..101 {
            let image = if n < 100 { &newer } else { &older };
            ec2.run_instances()
                .image_id(image)
                .min_count(1)
                .max_count(1)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .send()
                .await
                .unwrap();
        }
    });
    // Every image reads as pending: none is pruned.
    let proxy = FaultProxy::start(&moto.url, 1, 0.0);
    proxy.add_always(&Always { op: "DescribeImages", matching: "", fault: "image-pending" });
    let out = ok(&run(&proxy.url, &["images", "--region", "us-east-1", "--prune", "--yes"]), "prune while pending");
    assert!(out.contains("Nothing to prune"), "{out}");
    assert_eq!(baked(&moto.url).len(), 2);
    proxy.reset();
    let out = ok(&run(&moto.url, &["images", "--region", "us-east-1", "--prune", "--yes"]), "prune");
    assert!(out.contains("Nothing to prune"), "the older image runs on page two: {out}");
    assert_eq!(baked(&moto.url).len(), 2);

    // A bake waiting for its pending image, which someone deregisters: it
    // fails at once instead of waiting out the image timeout.
    let c2 = Cluster::new("bk-prune-gone");
    let file2 = c2.write(2, 0, "m5.large");
    proxy.add_always(&Always { op: "DescribeImages", matching: "", fault: "image-pending" });
    let watcher = {
        let url = moto.url.clone();
        std::thread::spawn(move || {
            let before: Vec<String> = baked(&url).into_iter().map(|(id, _, _)| id).collect();
            for _ in 0..600 {
                if let Some(id) = baked(&url).into_iter().map(|(id, _, _)| id).find(|id| !before.contains(id)) {
                    std::thread::sleep(Duration::from_millis(500));
                    rt().block_on(async { aws_clients(&url).await.0.deregister_image().image_id(id).send().await.unwrap() });
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let start = std::time::Instant::now();
    let out = run(&proxy.url, &["bake", file2.to_str().unwrap(), "--yes", "--poll-ms", "100"]);
    watcher.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("disappeared while it was being made"), "{}", text(&out.stderr));
    assert!(start.elapsed() < Duration::from_secs(60), "at once, not at the image timeout: {:?}", start.elapsed());
    assert!(live(&builders(&moto.url)).is_empty());
}

/// `reap` ends a builder whose bake run is long over (a crash left it).
#[test]
fn reap_terminates_builders_past_their_expiry() {
    let moto = Moto::start();
    let c = Cluster::new("bk7");
    let file = c.write(2, 0, "m6i.xlarge");
    let out = run(&moto.url, &["bake", file.to_str().unwrap(), "--yes", "--poll-ms", "100", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    // As if that run had died before its cleanup: launch a builder-tagged
    // instance with an expiry in the past.
    let id = rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        let tags = aws_sdk_ec2::types::TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
            .tags(aws_sdk_ec2::types::Tag::builder().key("hybrid:bake-builder").value("true").build())
            .tags(aws_sdk_ec2::types::Tag::builder().key("hybrid:bake-key").value("0123456789abcdef").build())
            .tags(aws_sdk_ec2::types::Tag::builder().key("hybrid:expires").value("2020-01-01T00:00:00Z").build())
            .build();
        let out = ec2
            .run_instances()
            .image_id("ami-0b24040000000000a")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Large)
            .min_count(1)
            .max_count(1)
            .tag_specifications(tags)
            .send()
            .await
            .unwrap();
        out.instances()[0].instance_id().unwrap().to_string()
    });
    let out = ok(&run(&moto.url, &["reap", "--region", "us-east-1", "--yes"]), "reap");
    assert!(out.contains(&format!("terminated bake builder(s) {id}")), "{out}");
    assert!(live(&builders(&moto.url)).is_empty());
}

/// scripts/e2e-aws.sh's compare mode against moto (the EC2 side only, as
/// nothing boots here): the cluster comes up on stock images and goes, the
/// images are baked, it comes up on them and goes, and one summary holds
/// both runs. The times to Ready stay null here: only real AWS fills them.
#[test]
fn the_release_check_compares_stock_and_baked_boots() {
    let moto = Moto::start();
    let _builders = Builders::play(&moto, Duration::from_millis(300));
    let out = crate::util::scratch("e2e-compare");
    let _ = std::fs::remove_dir_all(&out);
    let res = crate::e2e::e2e_aws_script(&moto, &out)
        .env("HYBRID_E2E_AWS", "1")
        .env("HYBRID_E2E_IMAGES", "compare")
        .env("HYBRID_E2E_BAKE_ARGS", "--poll-ms 100")
        .output()
        .unwrap();
    let stderr = text(&res.stderr);
    assert_eq!(res.status.code(), Some(0), "{}\n{stderr}", text(&res.stdout));
    assert_eq!(stderr.matches("] e2e-aws: destroyed").count(), 2, "{stderr}");

    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("calico.json")).unwrap()).unwrap();
    let runs = summary["runs"].as_array().unwrap();
    assert_eq!(runs.iter().map(|r| r["images"].as_str().unwrap()).collect::<Vec<_>>(), ["stock", "baked"]);
    for run in runs {
        let pools = run["slowest_ready_s_by_pool"].as_object().unwrap();
        assert_eq!(pools.keys().map(String::as_str).collect::<Vec<_>>(), ["control-plane", "linux", "win2022"], "{run}");
        assert!(out.join(run["status"].as_str().unwrap()).exists(), "{run}");
    }

    // The second cluster's workers booted from the baked images, the first's did not.
    let images: Vec<String> = baked(&moto.url).into_iter().filter(|(_, _, s)| s == "available").map(|(id, _, _)| id).collect();
    assert_eq!(images.len(), 2, "one Linux and one Windows image: {images:?}");
    let launched: Vec<(String, String)> = rt().block_on(async {
        let ec2 = aws_clients(&moto.url).await.0;
        let out = ec2
            .describe_instances()
            .filters(Filter::builder().name("tag:hybrid:cluster").values("e2e-calico").build())
            .send()
            .await
            .unwrap();
        let mut v: Vec<(String, String)> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| (i.launch_time().unwrap().to_string(), i.image_id().unwrap().to_string()))
            .collect();
        v.sort();
        v
    });
    assert_eq!(launched.len(), 6, "two clusters of three: {launched:?}");
    let from_baked = |run: &[(String, String)]| run.iter().filter(|(_, image)| images.contains(image)).count();
    assert_eq!(from_baked(&launched[..3]), 0, "the stock run: {launched:?}");
    assert_eq!(from_baked(&launched[3..]), 2, "the baked run's two workers: {launched:?}");
    assert_eq!(live(&builders(&moto.url)).len(), 0);
    std::fs::remove_dir_all(&out).ok();
}

/// `spec` as another team's cluster of the same versions would have it:
/// another name, other addresses, more pods per node, other labels and pool
/// names; nothing an image is made of.
fn another_cluster(spec: &ClusterSpec) -> ClusterSpec {
    let cidr = |s: &str| Ipv4Cidr::parse(s).unwrap();
    let mut b = spec.clone();
    b.name = "someone-else".into();
    b.tags.insert("team".into(), "other".into());
    b.network.vpc = Vpc::Create { cidr: cidr("10.77.0.0/16"), subnet_cidr: cidr("10.77.3.0/24") };
    b.network.pod_cidr = cidr("172.20.0.0/16");
    b.network.service_cidr = cidr("10.200.0.0/16");
    b.control_plane.private_ip = None;
    for p in &mut b.pools {
        p.name = format!("{}-x", p.name);
        p.max_pods -= 1;
        p.labels.insert("owner".into(), "else".into());
        p.instance_type = "m7i.2xlarge".into();
    }
    b
}

fn script_of(node: &NodeBootstrap) -> &str {
    let name = if node.os.is_windows() { "bootstrap.ps1" } else { "bootstrap.sh" };
    &node.parts.iter().find(|(n, _)| n == name).unwrap().1
}

/// Variables a rendered script assigns differently in two renders (every
/// assignment to a name, as the parser sees it: a PowerShell string may
/// span lines).
fn differing_globals(a: &str, b: &str, windows: bool) -> Vec<String> {
    let assignments = |s: &str| -> BTreeMap<String, Vec<String>> {
        let nodes = if windows { tools::powershell_nodes(s, "assignment_expression") } else { tools::bash_nodes(s, "variable_assignment") };
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for text in nodes {
            let name = text.split('=').next().unwrap().trim().trim_start_matches('$');
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                out.entry(name.to_string()).or_default().push(text.to_string());
            }
        }
        out
    };
    let (ga, gb) = (assignments(a), assignments(b));
    ga.iter().filter(|(k, v)| gb.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect()
}

/// A baked image serves every cluster that needs the same OS, versions, CNI
/// and pre-pulled images: the stages a bake runs read nothing a cluster or
/// pool owns (checked on each cluster's own node script: those stages are
/// the same, and use no setting that differs), so two such clusters get one
/// bake script and one bake key; other versions get another.
#[test]
fn clusters_of_the_same_versions_share_a_baked_image() {
    let templates = Templates::builtin();
    let secrets = crate::render::test_secrets();
    for file in ["clusters/dev.toml", "clusters/qa.toml", "tests/fixtures/render/k136-flannel-2025.toml"] {
        let a = crate::render::spec(file);
        let b = another_cluster(&a);
        for (pa, pb) in a.pools.iter().zip(&b.pools) {
            let what = format!("{file} pool {}", pa.name);
            let (na, nb) =
                (Renderer::new(&a, &templates).pool(pa, &secrets).unwrap(), Renderer::new(&b, &templates).pool(pb, &secrets).unwrap());
            let (sa, sb) = (script_of(&na), script_of(&nb));
            let windows = pa.os.is_windows();
            let differing = differing_globals(sa, sb, windows);
            assert!(!differing.is_empty(), "{what}: the two clusters must differ somewhere");
            if windows {
                // Every stage before the join (the bake stops there) and the bake's own.
                let join = sa.find("Stage 'join'").unwrap();
                let baked: Vec<String> = tools::powershell_commands(&sa[..join])
                    .into_iter()
                    .filter(|c| c.name == "Stage")
                    .map(|c| c.literal(0).unwrap())
                    .collect();
                assert!(baked.len() >= 4, "{what}: {baked:?}");
                let in_baked = |s: &str| -> Vec<(Option<String>, String, Vec<String>)> {
                    tools::powershell_commands(s)
                        .into_iter()
                        .filter(|c| c.stage.as_ref().is_some_and(|st| baked.contains(st)))
                        .map(|c| (c.stage, c.name, c.args))
                        .collect()
                };
                let (ca, cb) = (in_baked(sa), in_baked(sb));
                assert_eq!(ca, cb, "{what}: a baked stage differs between clusters");
                for (stage, name, args) in &ca {
                    for var in &differing {
                        let used = args.iter().any(|a| a.contains(&format!("${var}")));
                        assert!(!used, "{what}: stage {stage:?} ({name}) uses ${var}, which differs per cluster");
                    }
                }
            } else {
                let main = tools::bash_commands(sa);
                let finish = main.iter().position(|c| c.name == "finish_bake" && c.function.as_deref() == Some("main")).unwrap();
                let mut baked: Vec<String> = main[..finish]
                    .iter()
                    .filter(|c| c.name == "stage" && c.function.as_deref() == Some("main"))
                    .map(|c| c.args[1].clone())
                    .collect();
                baked.push("finish_bake".into());
                let (fa, fb) = (tools::bash_functions(sa), tools::bash_functions(sb));
                for f in &baked {
                    assert_eq!(fa[f], fb[f], "{what}: {f} differs between clusters");
                    for var in &differing {
                        assert!(!fa[f].contains(&format!("${var}")) && !fa[f].contains(&format!("${{{var}")), "{what}: {f} uses ${var}");
                    }
                    assert!(!fa[f].contains("kubeadm.yaml"), "{what}: {f} reads the cluster's kubeadm config");
                }
                // Files the bake stages install from (containerd's config) are the same too.
                let (wa, wb) = (crate::boot::write_files(&na), crate::boot::write_files(&nb));
                let differ: Vec<&String> = wa.keys().filter(|k| wa.get(*k) != wb.get(*k)).collect();
                assert_eq!(differ, ["/etc/hybrid/kubeadm.yaml.in", "/opt/hybrid/bootstrap.sh"], "{what}");
            }
            // One image for both.
            let (ba, bb) = (Renderer::new(&a, &templates).bake(pa).unwrap(), Renderer::new(&b, &templates).bake(pb).unwrap());
            assert!(ba.user_data == bb.user_data, "{what}: two bake scripts for one image");
        }
    }
    // Another patch release, CNI release or pre-pull list is another image.
    let a = crate::render::spec("clusters/dev.toml");
    let pool = &a.pools[0];
    let base = Renderer::new(&a, &templates).bake(pool).unwrap().user_data;
    let mut patch = a.clone();
    patch.kubernetes_version.patch -= 1;
    let mut cni = a.clone();
    cni.cni.version = "3.32.3".into();
    let mut prepull = pool.clone();
    prepull.prepull.push("docker.io/library/nginx:1.27".into());
    assert_ne!(Renderer::new(&patch, &templates).bake(pool).unwrap().user_data, base);
    assert_ne!(Renderer::new(&cni, &templates).bake(pool).unwrap().user_data, base);
    assert_ne!(Renderer::new(&a, &templates).bake(&prepull).unwrap().user_data, base);
}

/// A pool that pre-pulls a private ECR image is baked by a builder with a
/// role of its own (one per region, under /hybrid-bake/, ECR pulls only:
/// no cluster's secrets); other bakes get no role at all.
#[test]
fn a_builder_pulling_private_images_gets_an_ecr_only_role() {
    let moto = Moto::start();
    let c = Cluster::new("bk-ecr");
    let file = c.write(2, 1, "m6i.xlarge");
    let body = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        body.replace("name = \"win\"", "name = \"win\"\nprepull = [\"111122223333.dkr.ecr.us-east-1.amazonaws.com/tools:1\"]"),
    )
    .unwrap();
    // Looked at while the builders run (a terminated instance shows no
    // profile any more); nobody plays the script, so the bake waits.
    let mut bake =
        hybrid_command(&moto.url, &["bake", file.to_str().unwrap(), "--yes", "--poll-ms", "100", "--pool", "win", "--pool", "game"])
            .spawn()
            .unwrap();
    let profile = hybrid::infra::desired::bake_profile("us-east-1");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (win, game) = loop {
        let seen = rt().block_on(async {
            let ec2 = aws_clients(&moto.url).await.0;
            let out = ec2
                .describe_instances()
                .filters(Filter::builder().name("tag-key").values("hybrid:bake-builder").build())
                .filters(Filter::builder().name("instance-state-name").values("running").build())
                .send()
                .await
                .unwrap();
            let mut by_os = (None, None);
            for i in out.reservations().iter().flat_map(|r| r.instances()) {
                let arn = i.iam_instance_profile().and_then(|p| p.arn()).map(str::to_string);
                if i.platform().is_some_and(|p| p.as_str() == "windows") { by_os.0 = Some(arn) } else { by_os.1 = Some(arn) }
            }
            by_os
        });
        // moto stores a launched instance before it associates its profile
        // (moto/ec2/responses/instances.py, run_instances: the association
        // follows run_instances, while this look runs in another thread):
        // a Windows builder seen without one is looked at again.
        let win_settled = seen.0.as_ref().is_some_and(|arn| arn.is_some());
        if (win_settled && seen.1.is_some()) || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = bake.kill();
    let _ = bake.wait();
    assert!(
        win.clone().flatten().is_some_and(|a| a.ends_with(&format!("instance-profile/hybrid-bake/us-east-1/{}", profile.name))),
        "the Windows builder has the bake role: {win:?}"
    );
    assert_eq!(game.unwrap(), None, "a builder with nothing private to pull gets no role");
    rt().block_on(async {
        let iam = crate::moto::iam_client(&moto.url).await;
        let policy = iam.get_role_policy().role_name(&profile.name).policy_name("bake-builder").send().await.unwrap();
        let doc = percent_decoded(policy.policy_document());
        assert!(doc.contains("ecr:GetAuthorizationToken") && !doc.contains("ssm:"), "{doc}");
    });
}

fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}
