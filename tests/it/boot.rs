//! What a real boot depends on, checked against the upstream contracts in
//! tests/fixtures/upstream/ (each with its source) and by running the
//! rendered shell functions for real: every download is fetched through the
//! one checked path, the scripts' stages run in the order a node needs, and
//! the files kubelet, kubeadm, containerd and EC2Launch read are where they
//! read them. No instance boots here (moto runs no user data, and no Windows
//! PowerShell runs on this machine): the Windows script is checked through
//! its syntax tree only.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

use hybrid::bootstrap::{NodeBootstrap, Renderer, Templates};
use hybrid::cluster::objects::desired_objects;
use hybrid::model::{ClusterSpec, NodeOs};
use hybrid::versions::{self, NodeKind};
use serde_json::{Value, json};

use crate::render::{spec, test_secrets};
use crate::tools::{self, ScriptCommand};
use crate::util::{root, scratch};

const SPECS: &[&str] =
    &["clusters/dev.toml", "clusters/qa.toml", "tests/fixtures/render/calico.toml", "tests/fixtures/render/k136-flannel-2025.toml"];

fn contract(name: &str) -> Value {
    serde_json::from_str(&fs::read_to_string(root().join("tests/fixtures/upstream").join(name)).unwrap()).unwrap()
}

fn nodes(spec: &ClusterSpec) -> Vec<NodeBootstrap> {
    Renderer::new(spec, &Templates::builtin()).cluster(&test_secrets()).unwrap()
}

/// The control plane's bootstrap for the cluster file `file`.
fn control_plane(file: &str) -> NodeBootstrap {
    nodes(&spec(file)).into_iter().find(|n| n.group == "control-plane").unwrap()
}

fn part<'a>(node: &'a NodeBootstrap, name: &str) -> &'a str {
    &node.parts.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{} has no {name}", node.group)).1
}

fn kind(node: &NodeBootstrap) -> NodeKind {
    match node.os {
        NodeOs::Windows(w) => NodeKind::Windows(w),
        NodeOs::Linux(_) if node.group == "control-plane" => NodeKind::ControlPlane,
        NodeOs::Linux(_) => NodeKind::LinuxWorker,
    }
}

/// Path to content of every file a Linux node's cloud-config writes.
pub(crate) fn write_files(node: &NodeBootstrap) -> BTreeMap<String, String> {
    let docs = tools::yaml_to_json(part(node, "cloud-config.yaml")).unwrap();
    docs[0]["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["content"].as_str().unwrap().to_string()))
        .collect()
}

fn script_commands(node: &NodeBootstrap) -> Vec<ScriptCommand> {
    if node.os.is_windows() {
        tools::powershell_commands(part(node, "bootstrap.ps1"))
    } else {
        tools::bash_commands(part(node, "bootstrap.sh"))
    }
}

/// A value of a PowerShell or shell word: a literal unquoted, anything else as written.
fn word(c: &ScriptCommand, i: usize) -> String {
    c.literal(i).unwrap_or_else(|| c.args[i].clone())
}

/// A Linux image leaves the bake with its bootstrap unit disabled, so a node
/// booted from it runs only the script its own user data writes (and
/// enables in runcmd), never the builder's bake-mode copy.
#[test]
fn a_linux_bake_disables_its_bootstrap_before_the_image_is_made() {
    let spec = spec("clusters/dev.toml");
    let pool = spec.pools.iter().find(|p| !p.os.is_windows()).unwrap();
    let bake = hybrid::bootstrap::Renderer::new(&spec, &Templates::builtin()).bake(pool).unwrap();
    let commands = tools::bash_commands(part(&bake, "bootstrap.sh"));
    let in_finish: Vec<&ScriptCommand> = commands.iter().filter(|c| c.function.as_deref() == Some("finish_bake")).collect();
    let at = |name: &str, first_arg: &str| {
        in_finish
            .iter()
            .position(|c| c.name == name && c.args.first().map(String::as_str) == Some(first_arg))
            .unwrap_or_else(|| panic!("finish_bake has no `{name} {first_arg}`: {in_finish:?}"))
    };
    let disable = at("systemctl", "disable");
    assert_eq!(in_finish[disable].args, ["disable", "hybrid-bootstrap.service"]);
    assert!(at("cloud-init", "clean") < at("shutdown", "-h") && disable < at("shutdown", "-h"));
    let runcmd = tools::yaml_to_json(part(&bake, "cloud-config.yaml")).unwrap()[0]["runcmd"].to_string();
    assert!(runcmd.contains(r#"["systemctl","enable","--now","--no-block","hybrid-bootstrap.service"]"#), "{runcmd}");
}

/// kube-proxy runs on Calico Windows nodes as a host service from the
/// release binary, in the shape Calico's own service script ran it (network,
/// source VIP from Calico's host endpoint, DSR), under a name Calico's
/// uninstall step leaves alone, with no feature gates; no object runs an image for it.
#[test]
fn calico_windows_kube_proxy_is_a_host_service_on_calicos_network() {
    let want = contract("kube-proxy-windows-calico.json");
    let spec = spec("clusters/dev.toml");
    for node in nodes(&spec).iter().filter(|n| n.os.is_windows()) {
        let script = part(node, "bootstrap.ps1");
        let commands = tools::powershell_commands(script);
        let installs: Vec<String> =
            commands.iter().filter(|c| c.name == "Install-Service" && c.function.is_none()).map(|c| word(c, 0)).collect();
        assert!(installs.contains(&"hybrid-kube-proxy".to_string()), "{installs:?}");
        assert!(
            !installs.contains(&want["service_name_calico_removes"].as_str().unwrap().to_string()),
            "calico-node-windows deletes that service"
        );
        let network = script.lines().find(|l| l.starts_with("$KubeProxyNetwork = ")).unwrap();
        assert_eq!(network, format!("$KubeProxyNetwork = '{}'", want["network_name"].as_str().unwrap()));
        let start = &script[script.find("$Proxy = @'").unwrap() + "$Proxy = @'".len()..];
        let start = &start[..start.find("\n'@").unwrap()];
        assert!(tools::powershell_errors(start).is_empty(), "{:?}", tools::powershell_errors(start));
        for flag in want["flags"].as_array().unwrap() {
            assert!(start.contains(flag.as_str().unwrap()), "kube-proxy lacks {flag}:\n{start}");
        }
        for flag in want["forbidden"].as_array().unwrap() {
            assert!(!start.contains(flag.as_str().unwrap()), "{flag} must not be passed:\n{start}");
        }
        // On an Overlay network the source VIP is the address of Calico's host endpoint.
        let endpoint = want["source_vip_endpoint"].as_str().unwrap().replace(want["network_name"].as_str().unwrap(), "$($Net)");
        assert!(start.contains("$N.Type -eq 'Overlay'") && start.contains(&format!("\"{endpoint}\"")), "{start}");
        assert!(start.contains(&format!("{}$($Ep.IpAddress)", want["overlay_flag"].as_str().unwrap())), "{start}");
        assert!(!start.contains("host-local"), "Calico's IPAM owns the block: no address is reserved by hand");
        // The binary is the release's, verified like every download.
        let fetch = commands.iter().find(|c| c.name == "Fetch" && word(c, 1) == "C:\\k\\kube-proxy.exe").unwrap();
        assert_eq!(fetch.stage.as_deref(), Some("kube-proxy"));
        assert!(word(fetch, 0).starts_with("https://dl.k8s.io/v") && word(fetch, 0).ends_with("/bin/windows/amd64/kube-proxy.exe"));
    }
    let objects = desired_objects(&spec, None, "10.42.0.10", &[], &[]);
    assert!(objects.iter().all(|o| o.body["kind"] != "DaemonSet"), "no DaemonSet runs a sample image");
    assert!(!versions::node_images(&spec, spec.pools[1].os).iter().any(|i| i.contains("sigwindowstools")));
}

/// Walks a TOML table along `path`.
fn toml_at<'a>(doc: &'a toml::Table, path: &[Value]) -> Option<&'a toml::Value> {
    let mut keys = path.iter().map(|k| k.as_str().unwrap());
    let mut cur = doc.get(keys.next()?)?;
    for k in keys {
        cur = cur.as_table()?.get(k)?;
    }
    Some(cur)
}

#[test]
fn containerd_config_is_version_3_where_containerd_2_reads_it() {
    let want = contract("containerd-2-config.json");
    for file in SPECS {
        let spec = spec(file);
        for node in nodes(&spec) {
            let doc: toml::Table = toml::from_str(part(&node, "containerd.toml")).unwrap_or_else(|e| panic!("{file}/{}: {e}", node.group));
            assert_eq!(doc["version"].as_integer(), want["version"].as_i64(), "{}", node.group);
            let required = if node.os.is_windows() { &want["windows_requires"] } else { &want["linux_requires"] };
            for path in required.as_array().unwrap() {
                assert!(toml_at(&doc, path.as_array().unwrap()).is_some(), "{file}/{}: missing {path}", node.group);
            }
            for path in want["no_longer_read"].as_array().unwrap() {
                assert!(toml_at(&doc, path.as_array().unwrap()).is_none(), "{file}/{}: containerd 2 ignores {path}", node.group);
            }
            let sandbox =
                toml_at(&doc, &[json!("plugins"), json!("io.containerd.cri.v1.images"), json!("pinned_images"), json!("sandbox")]);
            assert_eq!(sandbox.and_then(|v| v.as_str()), Some(versions::pause_image(&spec).as_str()));
            if !node.os.is_windows() {
                let cgroup = toml_at(
                    &doc,
                    &["plugins", "io.containerd.cri.v1.runtime", "containerd", "runtimes", "runc", "options", "SystemdCgroup"]
                        .map(|s| json!(s)),
                );
                assert_eq!(cgroup.and_then(|v| v.as_bool()), Some(true), "kubelet uses the systemd cgroup driver");
            }
        }
    }
}

#[test]
fn kubelet_unit_passes_on_what_kubeadm_writes_and_workers_get_no_ca_file() {
    let want = contract("kubeadm-kubelet.json");
    for node in nodes(&spec("clusters/dev.toml")).iter().filter(|n| !n.os.is_windows()) {
        let files = write_files(node);
        let dropin = &files["/etc/hybrid/10-kubeadm.conf"];
        let exec = dropin.lines().rfind(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(dropin.lines().any(|l| l == "ExecStart="), "the drop-in must reset the unit's ExecStart");
        for env in want["environment_files"].as_array().unwrap() {
            assert!(dropin.lines().any(|l| l.starts_with("EnvironmentFile=") && l.ends_with(env.as_str().unwrap())), "{dropin}");
        }
        for var in want["variables_used"].as_array().unwrap() {
            assert!(exec.contains(&format!("${}", var.as_str().unwrap())), "{exec}");
        }
        for arg in want["kubelet_args"].as_array().unwrap() {
            assert!(dropin.contains(arg.as_str().unwrap()), "{dropin} lacks {arg}");
        }
        // No node's user data writes the CA: a worker's join preflight would
        // refuse it, and the control plane fetches it from SSM at boot.
        let ca = want["worker_join_refuses_existing"].as_str().unwrap();
        assert!(!files.contains_key(ca), "{}: {ca}", node.group);
        // The kubeadm config itself does not ask preflight to look away.
        assert!(!part(node, "kubeadm.yaml").contains(want["preflight_check"].as_str().unwrap()));
    }
}

/// The URLs a node's scripts fetch through the checked path.
fn fetched_urls(node: &NodeBootstrap) -> BTreeSet<String> {
    let fetcher = if node.os.is_windows() { "Fetch" } else { "fetch" };
    script_commands(node).iter().filter(|c| c.name == fetcher && c.function.as_deref() != Some(fetcher)).map(|c| word(c, 0)).collect()
}

/// What each kind of node of clusters/dev.toml downloads, against a list
/// written by hand from the projects' release layouts
/// (tests/fixtures/expected/dev-downloads.json, with its sources): the
/// version table is the code under test here, not the oracle.
#[test]
fn dev_nodes_fetch_what_the_hand_written_list_says() {
    let expected: Value = serde_json::from_str(&fs::read_to_string(crate::util::fixture("expected/dev-downloads.json")).unwrap()).unwrap();
    let spec = spec("clusters/dev.toml");
    let mut seen = BTreeSet::new();
    for node in nodes(&spec) {
        let kind = match kind(&node) {
            NodeKind::ControlPlane => "control-plane",
            NodeKind::LinuxWorker => "linux-worker",
            NodeKind::Windows(w) => w.name(),
        };
        let want: BTreeSet<String> = expected["downloads"][kind]
            .as_array()
            .unwrap_or_else(|| panic!("no list for {kind}"))
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect();
        assert_eq!(fetched_urls(&node), want, "{}", node.group);
        seen.insert(kind);
    }
    assert_eq!(seen.len(), 3, "every kind of node in the file was checked: {seen:?}");
}

/// Every file a node downloads goes through the one checked path (`Fetch` /
/// `fetch` with a check argument), and the set of downloads is what the
/// version table says that node needs (a consistency check between the
/// table and the templates; what the table says is checked against a
/// hand-written list above).
#[test]
fn every_download_is_fetched_and_verified() {
    for file in SPECS {
        let spec = spec(file);
        for node in nodes(&spec) {
            let commands = script_commands(&node);
            let fetcher = if node.os.is_windows() { "Fetch" } else { "fetch" };
            let calls: Vec<&ScriptCommand> =
                commands.iter().filter(|c| c.name == fetcher && c.function.as_deref() != Some(fetcher)).collect();
            let mut got: BTreeMap<String, String> = BTreeMap::new();
            for c in &calls {
                assert_eq!(c.args.len(), 3, "{file}/{}: {c:?}", node.group);
                let (url, check) = (word(c, 0), word(c, 2));
                assert!(!check.is_empty() && check.contains(':'), "{file}/{}: {url} is fetched without a check", node.group);
                assert!(got.insert(url.clone(), check).is_none(), "{url} fetched twice");
            }
            let want: BTreeMap<String, String> =
                versions::downloads(&spec, kind(&node)).into_iter().map(|d| (d.url, d.check.encode())).collect();
            assert_eq!(got, want, "{file}/{}", node.group);
            // Nothing else downloads to disk: the raw download commands live
            // only inside the checked fetch function.
            for c in &commands {
                let downloads_to_disk = match c.name.as_str() {
                    "Invoke-WebRequest" => c.args.iter().any(|a| a.eq_ignore_ascii_case("-OutFile")),
                    "curl" => c.args.iter().any(|a| a == "-o") && !c.args.iter().any(|a| a == "/dev/null"),
                    "wget" | "Start-BitsTransfer" => true,
                    _ => false,
                };
                if downloads_to_disk {
                    assert_eq!(c.function.as_deref(), Some(fetcher), "{file}/{}: unchecked download {c:?}", node.group);
                }
            }
        }
    }
}

#[test]
fn templates_spell_no_version_or_url() {
    let mut found = Vec::new();
    for dir in ["templates/linux", "templates/windows"] {
        for entry in fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let text = fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split('#').next().unwrap_or("");
                // Instance metadata and local sockets are addresses, not
                // downloads; a CNI config's cniVersion is its format's version.
                // The SSM API's media type names its protocol's version.
                let code = code
                    .replace("http://169.254.169.254", "")
                    .replace("unix:///", "")
                    .replace("npipe:////", "")
                    .replace("application/x-amz-json-1.1", "");
                if code.contains("cniVersion") {
                    continue;
                }
                if code.contains("://") {
                    found.push(format!("{}:{}: a URL: {line}", path.display(), n + 1));
                }
                if let Some(v) = version_like(&code) {
                    found.push(format!("{}:{}: a version `{v}`: {line}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "templates get versions and URLs from src/versions only:\n{}", found.join("\n"));
}

#[test]
fn version_like_finds_versions_and_leaves_addresses_alone() {
    for (line, want) in [
        ("tar -xf containerd-2.2.1-linux-amd64.tar.gz", Some("2.2.1")),
        ("image: kube-proxy:v1.36", Some("1.36")),
        ("$Root\\nssm\\nssm-2.24\\win64", Some("2.24")),
        ("route add 169.254.169.254 mask 255.255.255.255", None),
        ("podSubnet: 10.244.0.0/16", None),
        ("Start-Sleep -Seconds 1.5", None),
    ] {
        assert_eq!(version_like(line).as_deref(), want, "{line}");
    }
}

/// The first `N.N.N` (or `vN.N`, `-N.N`) that is not part of an IPv4
/// address or a CIDR, e.g. `2.2.1`, `v1.36` or the `2.24` of `nssm-2.24`.
fn version_like(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let after_v = i >= 1 && bytes[i - 1] == b'v' && (i == 1 || !bytes[i - 2].is_ascii_alphanumeric());
        if bytes[i].is_ascii_digit() && (i == 0 || after_v || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.')) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let tok = s[start..i].trim_end_matches('.');
            let groups = tok.split('.').count();
            // `v1.36`, or a release in a file name such as `nssm-2.24`.
            let named = start > 0 && matches!(bytes[start - 1], b'v' | b'-') && groups >= 2;
            if groups == 3 || named {
                return Some(tok.to_string());
            }
        } else {
            i += 1;
        }
    }
    None
}

#[test]
fn the_version_scan_finds_versions_not_addresses() {
    assert_eq!(version_like("containerd-2.2.1-linux"), Some("2.2.1".into()));
    assert_eq!(version_like("pause:3.10.2"), Some("3.10.2".into()));
    assert_eq!(version_like("kubernetes v1.36"), Some("1.36".into()));
    assert_eq!(version_like("route 169.254.169.254 mask 255.255.255.255"), None);
    assert_eq!(version_like("10.0.0.0/16 and port 4789"), None);
}

fn stages(commands: &[ScriptCommand]) -> Vec<String> {
    commands.iter().filter(|c| c.name == "Stage" && c.function.is_none()).map(|c| word(c, 0)).collect()
}

#[test]
fn windows_stages_run_in_the_order_a_node_needs() {
    for (file, flannel) in [("clusters/dev.toml", false), ("clusters/qa.toml", true)] {
        for node in nodes(&spec(file)).iter().filter(|n| n.os.is_windows()) {
            let commands = script_commands(node);
            let mut want = vec!["containers-feature", "containerd", "kubelet"];
            if flannel {
                want.push("flannel");
            }
            want.extend(["kube-proxy", "routes", "join", "openssh"]);
            let got = stages(&commands);
            // `images` runs only when baking, inside the bake branch.
            assert_eq!(got.iter().filter(|s| *s != "images").collect::<Vec<_>>(), want, "{file}/{}", node.group);
            // OpenSSH comes after the join and can fail without stranding the node.
            let ssh = commands.iter().find(|c| c.name == "Stage" && word(c, 0) == "openssh").unwrap();
            assert!(ssh.args.iter().any(|a| a == "-Optional"), "{ssh:?}");
            let join =
                commands.iter().find(|c| c.name == "C:\\k\\kubeadm.exe" && c.args.first().map(String::as_str) == Some("join")).unwrap();
            assert_eq!(join.stage.as_deref(), Some("join"));
            assert_eq!(join.args[..3], ["join", "--config", "'C:\\k\\kubeadm-join.yaml'"]);
            // A required stage that fails arranges another run.
            let retry = commands.iter().find(|c| c.name == "Register-Retry" && c.function.as_deref() == Some("Retry-Later"));
            assert!(retry.is_some(), "a failed stage must schedule another attempt");
            assert!(commands.iter().any(|c| c.name == "Register-ScheduledTask" && c.function.as_deref() == Some("Register-Retry")));
            let stage_fn = commands.iter().filter(|c| c.function.as_deref() == Some("Stage")).map(|c| c.name.as_str()).collect::<Vec<_>>();
            assert!(stage_fn.contains(&"Retry-Later") && stage_fn.contains(&"Timeline"), "{stage_fn:?}");
        }
    }
}

#[test]
fn windows_reboots_the_way_ec2launch_expects() {
    let want = contract("ec2launch.json");
    let spec = spec("clusters/dev.toml");
    let win = nodes(&spec).into_iter().find(|n| n.os.is_windows()).unwrap();
    let script = part(&win, "bootstrap.ps1");
    let commands = tools::powershell_commands(script);
    // Restart-Computer only in the reboot function, behind the v2 check.
    for c in commands.iter().filter(|c| c.name == "Restart-Computer") {
        assert_eq!(c.function.as_deref(), Some("Reboot"), "{c:?}");
    }
    let reboot = &script[script.find("function Reboot(").unwrap()..];
    let reboot = &reboot[..reboot.find("\n}\n").unwrap()];
    let v2 = want["v2_marker"].as_str().unwrap();
    let exit = format!("exit {}", want["v2_reboot_exit_code"].as_str().unwrap());
    let check = reboot.lines().position(|l| l.contains("Test-Path") && l.contains(v2));
    let exits = reboot.lines().position(|l| l.trim() == exit || l.contains(&format!("{{ {exit} }}")));
    let restart = reboot.lines().position(|l| l.contains("Restart-Computer"));
    assert!(
        check.is_some() && exits.is_some() && restart.is_some() && check <= exits && exits < restart,
        "EC2Launch v2 must get `{exit}` before any restart:\n{reboot}"
    );
    // A run the hybrid-retry task started has no EC2Launch to reboot it: it restarts itself.
    let retry = &script[script.find("function Register-Retry").unwrap()..];
    assert!(
        retry[..retry.find("\n}\n").unwrap()].contains("bootstrap.ps1 -FromRetryTask"),
        "the retry task must say who started the script"
    );
    // An agent that ignores 3010 (a detached script) leaves the reboot to the retry task.
    let asked = reboot.lines().position(|l| l.trim() == "Register-Retry");
    assert!(asked.is_some() && asked < exits, "{reboot}");
    let pending = script.lines().find(|l| l.contains("InstallState -eq 'InstallPending'")).expect("a pending reboot is noticed");
    assert!(pending.contains("Reboot 'containers-feature'"), "{pending}");
    assert!(reboot.lines().nth(check.unwrap()).unwrap().contains("-not $FromRetryTask"), "{reboot}");
    let first = script.lines().find(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
    assert_eq!(first, "param([switch]$FromRetryTask)", "param must be the script's first statement");
    // The feature stage asks for the reboot; the loader passes the exit code on.
    let feature = commands.iter().find(|c| c.name == "Install-WindowsFeature").unwrap();
    assert_eq!(feature.stage.as_deref(), Some("containers-feature"));
    assert!(part(&win, "loader.ps1").trim_end().ends_with("exit $LASTEXITCODE"));
    // Every link-local route EC2 Windows needs is restored.
    let routes = commands.iter().find(|c| c.name == "Stage" && word(c, 0) == "routes").unwrap();
    assert!(routes.function.is_none());
    let line = script.lines().find(|l| l.starts_with("$Routes = @(")).unwrap();
    for ip in want["link_local_routes"].as_object().unwrap().keys() {
        assert!(line.contains(&format!("'{ip}'")), "{ip} ({}) is not restored: {line}", want["link_local_routes"][ip]);
    }
}

#[test]
fn flannel_windows_nodes_run_host_services_from_release_binaries() {
    let want = contract("flannel-windows.json");
    let spec = spec("clusters/qa.toml");
    for node in nodes(&spec).iter().filter(|n| n.os.is_windows()) {
        let script = part(node, "bootstrap.ps1");
        let commands = tools::powershell_commands(script);
        let installed = |name: &str| commands.iter().any(|c| c.name == "Install-Service" && word(c, 0) == name);
        assert!(installed("flanneld") && installed("hybrid-kube-proxy"), "flanneld and kube-proxy are nssm services");
        let params = commands
            .iter()
            .find(|c| c.name == "Nssm" && c.args.len() >= 3 && c.args[1] == "flanneld" && c.args[2] == "AppParameters")
            .unwrap();
        for flag in want["flanneld_flags"].as_array().unwrap() {
            assert!(params.args[3].contains(flag.as_str().unwrap()), "{params:?}");
        }
        for env in want["flanneld_env"].as_array().unwrap() {
            assert!(
                commands.iter().any(|c| c.name == "Nssm" && c.args.iter().any(|a| a.contains(&format!("{}=", env.as_str().unwrap())))),
                "flanneld needs {env}"
            );
        }
        // The CNI config, as JSON.
        let conf_line = script.lines().position(|l| l.starts_with("$FlannelCniConf = '")).unwrap();
        let conf_text: String = script.lines().skip(conf_line).collect::<Vec<_>>().join("\n");
        let conf_text = &conf_text["$FlannelCniConf = '".len()..];
        let conf: Value = serde_json::from_str(&conf_text[..conf_text.find("\n}'").unwrap() + 2]).unwrap();
        let network = want["network_name"].as_str().unwrap().replace("{vni}", &spec.cni.vni.to_string());
        assert_eq!(conf["name"], network);
        let delegate = &conf["plugins"][0]["delegate"];
        assert_eq!(delegate["type"], want["cni_delegate_type"]);
        assert_eq!(delegate["apiVersion"], want["cni_delegate_api_version"]);
        let types: Vec<&str> = delegate["Policies"].as_array().unwrap().iter().map(|p| p["Value"]["Type"].as_str().unwrap()).collect();
        assert_eq!(types, want["cni_policies"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect::<Vec<_>>());
        // kube-proxy: overlay mode on flanneld's network with a source VIP, no removed gates.
        let start = &script[script.find("$Proxy = @'").unwrap()..];
        let start = &start[..start.find("'@").unwrap()];
        for flag in want["kube_proxy_flags"].as_array().unwrap() {
            assert!(start.contains(flag.as_str().unwrap()), "kube-proxy lacks {flag}:\n{start}");
        }
        for gate in want["kube_proxy_forbidden"].as_array().unwrap() {
            assert!(!start.contains(gate.as_str().unwrap()), "{gate} must not be passed on 1.34+");
        }
        assert!(start.contains("host-local.exe") && start.contains("$Net"), "the source VIP comes from host-local under the network name");
        // flannel.exe is copied by name; host-local.exe and win-overlay.exe
        // come from the CNI plugins archive, unpacked into the CNI folder.
        assert!(want["cni_binaries"].as_array().unwrap().iter().any(|b| b == "flannel.exe"));
        assert!(script.contains("'C:\\opt\\cni\\bin\\flannel.exe'"), "flannel.exe is installed under its CNI type's name");
        let unpack = commands.iter().find(|c| c.name == "tar.exe" && c.args.iter().any(|a| a.contains("cni-plugins.tgz"))).unwrap();
        assert_eq!(unpack.args.last().map(String::as_str), Some("'C:\\opt\\cni\\bin'"));
        // No image that is no longer built.
        assert!(!script.contains("hostprocess"), "no HostProcess image on flannel nodes");
    }
    let objects = desired_objects(&spec, None, "10.50.0.10", &[], &[]);
    assert!(
        objects
            .iter()
            .all(|o| !o.body.to_string().contains("flannel-hostprocess") && !o.body.to_string().contains("sigwindowstools/flannel"))
    );
}

#[test]
fn calico_windows_pods_fit_one_ipam_block() {
    let spec = spec("clusters/dev.toml");
    let pool = spec.pools.iter().find(|p| p.os.is_windows()).unwrap();
    assert_eq!(pool.max_pods, 60, "a /26 block holds 64 addresses, Calico on Windows reserves 4");
    let win = nodes(&spec).into_iter().find(|n| n.os.is_windows()).unwrap();
    assert!(part(&win, "bootstrap.ps1").contains("'--max-pods=60'"));
    let mut bigger = spec.clone();
    bigger.cni.block_size = 25;
    assert_eq!(bigger.cni.windows_pod_capacity(), 124);
}

// =^..^= the Linux script's functions, run for real =^..^=

/// A loopback HTTP server over `dir` (Python's http.server).
struct Http {
    child: std::process::Child,
    url: String,
}

/// A static file server, except that files named `contents*.json` answer
/// as GitHub's contents API does for a file over 1 MB (Calico's CRDs are):
/// only the object media type gets the JSON with the blob id, any other
/// JSON request a 403 "too_large" (GitHub REST docs, "Get repository
/// content"; GitHub changelog 2022-05-03).
const HTTP_SERVER: &str = r#"
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/contents") and "application/vnd.github.object+json" not in (self.headers.get("Accept") or ""):
            body = b'{"message": "This API returns blobs up to 1 MB in size.", "errors": [{"code": "too_large"}]}'
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

impl Http {
    fn serve(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-c", HTTP_SERVER, &port.to_string()])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Http { child, url: format!("http://127.0.0.1:{port}") }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `body` in bash with the rendered script's functions loaded (and
/// `retry` made quick); returns (success, stdout, stderr).
fn run_functions(script: &str, body: &str) -> (bool, String, String) {
    let full = format!(
        "{script}\nretry() {{ local a=$1; shift 2; local n=1; until \"$@\"; do [ $n -ge $a ] && return 1; n=$((n+1)); done; }}\n{body}\n"
    );
    let out = Command::new("bash").arg("-c").arg(full).env("HYBRID_SOURCE_ONLY", "1").output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn fetch_keeps_only_files_whose_checksum_matches() {
    let node = control_plane("clusters/dev.toml");
    let script = part(&node, "bootstrap.sh");
    let dir = scratch("fetch");
    fs::create_dir_all(dir.join("www")).unwrap();
    let body = b"containerd, or so it says\n";
    let sum = sha256_hex(body);
    fs::write(dir.join("www/artifact.tgz"), body).unwrap();
    fs::write(dir.join("www/artifact.tgz.sha256sum"), format!("{sum}  artifact.tgz\n")).unwrap();
    fs::write(dir.join("www/wrong.sha256"), format!("{}\n", "0".repeat(64))).unwrap();
    // The git blob id of the file, as GitHub's contents API reports it.
    let blob = git_blob::id(body);
    fs::write(dir.join("www/contents.json"), json!({ "sha": blob }).to_string()).unwrap();
    fs::write(
        dir.join("www/release.json"),
        json!({ "assets": [{ "name": "other.tgz", "digest": format!("sha256:{}", "1".repeat(64)) }, { "name": "artifact.tgz", "digest": format!("sha256:{sum}") }] })
            .to_string(),
    )
    .unwrap();
    let http = Http::serve(&dir.join("www"));
    let (u, d) = (&http.url, dir.display());
    let cases = [
        (format!("sha256:{sum}"), true),
        (format!("sha256:{}", "f".repeat(64)), false),
        (format!("sha256-file:{u}/artifact.tgz.sha256sum"), true),
        (format!("sha256-file:{u}/wrong.sha256"), false),
        (format!("sha256-file:{u}/missing.sha256"), false),
        (format!("github-asset:{u}/release.json#artifact.tgz"), true),
        (format!("github-asset:{u}/release.json#other.tgz"), false),
        (format!("git-blob:{u}/contents.json"), true),
        ("md5:abc".to_string(), false),
    ];
    for (i, (check, ok)) in cases.iter().enumerate() {
        let dest = format!("{d}/out-{i}/artifact.tgz");
        let (success, _, stderr) = run_functions(script, &format!("fetch '{u}/artifact.tgz' '{dest}' '{check}'"));
        assert_eq!(success, *ok, "{check}: {stderr}");
        assert_eq!(Path::new(&dest).exists(), *ok, "{check}: the file is kept only when it matches");
        assert!(!Path::new(&format!("{dest}.part")).exists(), "{check}: no partial file is left");
        if !ok {
            assert!(stderr.contains("checksum mismatch for") && stderr.contains("artifact.tgz"), "{check}: {stderr}");
            assert!(stderr.contains(&format!("got {sum}")) || stderr.contains("got "), "{check}: the actual sum is named: {stderr}");
        }
    }
    let (_, _, stderr) = run_functions(script, &format!("fetch '{u}/artifact.tgz' '{d}/x/a' 'sha256:{}'", "f".repeat(64)));
    assert!(stderr.contains(&format!("expected {}", "f".repeat(64))) && stderr.contains(&format!("got {sum}")), "{stderr}");
    fs::remove_dir_all(&dir).ok();
}

/// A git blob id: SHA-1 over a header and the content, computed with the
/// system's sha1sum (git computes the same, e.g. `git hash-object`).
mod git_blob {
    pub fn id(content: &[u8]) -> String {
        let mut data = format!("blob {}\0", content.len()).into_bytes();
        data.extend_from_slice(content);
        let mut child =
            std::process::Command::new("sha1sum").stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&data).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().split_whitespace().next().unwrap().to_string()
    }
}

#[test]
fn flannel_install_replaces_the_stock_net_conf_before_anything_starts() {
    let node = control_plane("clusters/qa.toml");
    let script = part(&node, "bootstrap.sh");
    let dir = scratch("flannel");
    // The stock manifest's shape (kube-flannel.yml): a namespace, the
    // ConfigMap with VNI 1 / port 8472 defaults, and the DaemonSet.
    let stock = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-flannel\n---\nkind: ConfigMap\napiVersion: v1\nmetadata:\n  name: kube-flannel-cfg\n  namespace: kube-flannel\ndata:\n  net-conf.json: |\n    {\"Network\": \"10.244.0.0/16\", \"Backend\": {\"Type\": \"vxlan\"}}\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: kube-flannel-ds\n";
    fs::write(dir.join("stock.yml"), stock).unwrap();
    fs::write(dir.join("cni.yaml"), part(&node, "cni-flannel.yaml")).unwrap();
    let d = dir.display();
    // fetch and kubectl stand in for the network and the cluster; paths are
    // moved under the scratch folder.
    let body = format!(
        "fetch() {{ cp '{d}/stock.yml' \"$2\"; }}\nkubectl() {{ cp \"$3\" '{d}/applied.yaml'; }}\n\
         install_cni_here() {{ sed 's#/etc/hybrid#{d}/etc#g' <<<\"$(declare -f install_cni)\" >'{d}/fn.sh'; source '{d}/fn.sh'; install_cni; }}\n\
         mkdir -p '{d}/etc' && cp '{d}/cni.yaml' '{d}/etc/cni.yaml' && install_cni_here"
    );
    let (ok, _, stderr) = run_functions(script, &body);
    assert!(ok, "{stderr}");
    let applied = tools::yaml_to_json(&fs::read_to_string(dir.join("applied.yaml")).unwrap()).unwrap();
    let docs: Vec<&Value> = applied.as_array().unwrap().iter().filter(|d| !d.is_null()).collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Namespace", "DaemonSet", "ConfigMap"], "the stock ConfigMap is dropped, ours comes last");
    let net: Value = serde_json::from_str(docs[2]["data"]["net-conf.json"].as_str().unwrap()).unwrap();
    assert_eq!(net["Backend"], json!({ "Type": "vxlan", "VNI": 4096, "Port": 4789 }));
    fs::remove_dir_all(&dir).ok();
}

/// Windows host services (flanneld, kube-proxy) run outside pods with the
/// kubelet's kubeconfig, so they act as their node: what they read beyond
/// the Node authorizer's own grants comes from a binding of a role whose
/// recorded rules cover it, to that node's user alone (never to the group
/// of all nodes), on both CNIs; Linux nodes get none.
#[test]
fn windows_host_services_are_allowed_what_they_read_and_no_more() {
    let want = contract("flannel-windows.json");
    let rbac = &want["rbac"];
    for (file, cni) in [("clusters/qa.toml", "flannel"), ("clusters/dev.toml", "calico")] {
        let spec = spec(file);
        for node in nodes(&spec).iter().filter(|n| n.os.is_windows()) {
            let script = part(node, "bootstrap.ps1");
            assert!(
                script.contains("--kubeconfig=C:\\etc\\kubernetes\\kubelet.conf"),
                "{file}/{}: kube-proxy acts as the node",
                node.group
            );
            if cni == "flannel" {
                assert!(script.contains("--kubeconfig-file=C:\\etc\\kubernetes\\kubelet.conf"), "{file}/{}", node.group);
            }
        }
        let windows = vec!["ip-10-0-0-21.ec2.internal".to_string(), "ip-10-0-0-22.ec2.internal".to_string()];
        let objects = desired_objects(&spec, None, "10.0.0.10", &windows, &[]);
        let bindings: Vec<&Value> = objects.iter().filter(|o| o.body["kind"] == "ClusterRoleBinding").map(|o| &o.body).collect();
        assert_eq!(bindings.len(), windows.len(), "{file}: one binding per Windows node");
        for (binding, node) in bindings.iter().zip(&windows) {
            let identity = rbac["identity_user"].as_str().unwrap().replace("{node}", node);
            assert_eq!(
                binding["subjects"],
                json!([{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": identity }]),
                "{file}"
            );
            assert_eq!(binding["roleRef"]["name"], "system:node-proxier");
        }
        assert!(
            !objects.iter().any(|o| o.body.to_string().contains(&format!("\"{}\"", rbac["identity_group"].as_str().unwrap()))),
            "{file}: nothing is granted to every node"
        );
    }
    let grants: Vec<&str> = rbac["node_proxier_grants"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for (service, needs) in rbac["needs_beyond_the_node_authorizer"].as_object().unwrap() {
        for need in needs.as_array().unwrap() {
            assert!(grants.contains(&need.as_str().unwrap()), "{service} needs {need}, which system:node-proxier does not grant");
        }
    }
}

/// A Windows node that has joined never runs `kubeadm join` again: the join
/// loop runs only while kubelet.conf (written once the node's TLS bootstrap
/// is done) is missing, so a join stage retried for a later step neither
/// resets the node nor needs a bootstrap token that may be gone.
#[test]
fn a_joined_windows_node_never_joins_again() {
    for file in SPECS {
        for node in nodes(&spec(file)).iter().filter(|n| n.os.is_windows()) {
            let script = part(node, "bootstrap.ps1");
            let loops: Vec<&str> =
                tools::powershell_nodes(script, "for_statement").into_iter().filter(|l| l.contains("kubeadm.exe join")).collect();
            assert_eq!(loops.len(), 1, "{file}/{}: {loops:?}", node.group);
            let header = &loops[0][..loops[0].find('{').unwrap()];
            assert!(header.contains(r"-not (Test-Path 'C:\etc\kubernetes\kubelet.conf')"), "{file}/{}: {header}", node.group);
            let joins = tools::powershell_commands(script).into_iter().filter(|c| c.args.first().is_some_and(|a| a == "join")).count();
            assert_eq!(joins, 1, "{file}/{}: every join is inside the guarded loop", node.group);
        }
    }
}

/// kube-proxy's source VIP (flannel, Windows) is cached only when host-local
/// gave an address: an error answer written to the cache would start
/// kube-proxy without a VIP on every later start.
#[test]
fn the_source_vip_is_cached_only_when_it_is_an_address() {
    let node = nodes(&spec("clusters/qa.toml")).into_iter().find(|n| n.os.is_windows()).unwrap();
    let script = part(&node, "bootstrap.ps1");
    let start = &script[script.find("$Proxy = @'").unwrap() + "$Proxy = @'".len()..];
    let start = &start[..start.find("\n'@").unwrap()];
    assert!(tools::powershell_errors(start).is_empty(), "{:?}", tools::powershell_errors(start));
    let commands = tools::powershell_commands(start);
    let write = commands
        .iter()
        .position(|c| c.name == "Set-Content" && c.args.windows(2).any(|w| w[0] == "-Path" && w[1] == "$VipFile"))
        .expect("the VIP is cached");
    let parse = commands.iter().position(|c| c.name == "ConvertFrom-Json").expect("the answer is parsed");
    assert!(parse < write, "parsed before it is cached");
    let guard = start.find("if (-not $Got)").expect("an answer without an address is refused");
    assert!(start[guard..].find("exit 1").unwrap() < start[guard..].find("Set-Content -Path $VipFile").unwrap());
    assert!(!start.contains("host-local.exe | Set-Content"), "host-local's answer is never written unchecked");
}

/// systemd-networkd, restarted by an upgrade, would delete the CNI's routes
/// unless told they are not its own (the setting amazon-eks-ami's AL2023
/// image and kOps write): every Linux node gets the drop-in.
#[test]
fn networkd_leaves_the_cni_routes_alone_on_every_linux_node() {
    for file in SPECS {
        for node in nodes(&spec(file)).iter().filter(|n| !n.os.is_windows()) {
            let files = write_files(node);
            let conf = files
                .iter()
                .find(|(path, _)| path.starts_with("/etc/systemd/networkd.conf.d/") && path.ends_with(".conf"))
                .unwrap_or_else(|| panic!("{file}/{}: no networkd drop-in", node.group))
                .1;
            let lines: Vec<&str> = conf.lines().map(str::trim).collect();
            assert_eq!(lines.first(), Some(&"[Network]"), "{conf}");
            for want in ["ManageForeignRoutes=no", "ManageForeignRoutingPolicyRules=no"] {
                assert!(lines.contains(&want), "{file}/{}: {want} missing in\n{conf}", node.group);
            }
        }
    }
}

/// kubeadm init stopped part way (admin.conf written, the cluster not
/// finished) and systemd runs the stage again: it resets, fetches the CA
/// again (reset empties the pki folder) and runs init once more, instead of
/// taking the half-made control plane for a finished one.
#[test]
fn an_interrupted_kubeadm_init_is_reset_and_run_again() {
    let node = control_plane("clusters/dev.toml");
    let script = part(&node, "bootstrap.sh");
    let dir = scratch("init");
    fs::create_dir_all(dir.join("k8s/manifests")).unwrap();
    let d = dir.display();
    // kubeadm, kubectl and fetch_secrets stand in for the real ones; the
    // first init writes admin.conf and a manifest, then fails (as a
    // wait-control-plane timeout does); paths move under the scratch folder.
    let body = format!(
        "STATE='{d}/state'\n\
         kubeadm() {{ echo \"kubeadm $1\" >>'{d}/log'; case $1 in\n\
           init) touch '{d}/k8s/admin.conf' '{d}/k8s/manifests/kube-apiserver.yaml'; if [ -e '{d}/fail' ]; then rm '{d}/fail'; return 1; fi ;;\n\
           reset) rm -rf '{d}/k8s/admin.conf' '{d}/k8s/manifests'/* ;;\n\
         esac; }}\n\
         kubectl() {{ echo kubectl >>'{d}/log'; }}\n\
         fetch_secrets() {{ echo fetch_secrets >>'{d}/log'; }}\n\
         sed 's#/etc/kubernetes#{d}/k8s#g' <<<\"$(declare -f kubeadm_init)\" >'{d}/fn.sh'; source '{d}/fn.sh'\n\
         touch '{d}/fail'\n\
         set +e\n\
         (set -e; kubeadm_init); first=$?\n\
         (set -e; kubeadm_init); second=$?\n\
         (set -e; kubeadm_init); third=$?\n\
         echo \"$first $second $third\""
    );
    // Each call runs as `stage` runs it: a subshell with -e, its status read after.
    let (ok, stdout, stderr) = run_functions(script, &body);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "1 0 0", "the first init fails, the next two succeed: {stderr}");
    let log = fs::read_to_string(dir.join("log")).unwrap();
    let calls: Vec<&str> = log.lines().collect();
    // Failed; then reset, the CA again, init, ready; then nothing but ready.
    assert_eq!(calls, ["kubeadm init", "kubeadm reset", "fetch_secrets", "kubeadm init", "kubectl", "kubectl"], "{stderr}");
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn linux_install_waits_for_locks_and_orders_calico() {
    for file in SPECS {
        let spec = spec(file);
        for node in nodes(&spec).iter().filter(|n| !n.os.is_windows()) {
            let script = part(node, "bootstrap.sh");
            assert!(tools::bash_errors(script).is_empty(), "{:?}", tools::bash_errors(script));
            let commands = tools::bash_commands(script);
            // Direct or through `retry N DELAY apt-get …`; there must be some, or the check checks nothing.
            let apts: Vec<&ScriptCommand> =
                commands.iter().filter(|c| c.name == "apt-get" || c.args.iter().any(|a| a == "apt-get")).collect();
            let debian = !node.os.name().starts_with("al");
            assert_eq!(apts.len() >= 2, debian, "{file}/{} ({}): apt-get calls {apts:?}", node.group, node.os.name());
            for apt in apts {
                assert!(apt.args.iter().any(|a| a.starts_with("DPkg::Lock::Timeout=")), "apt waits for the dpkg lock: {apt:?}");
            }
            assert!(!script.contains("pkgs.k8s.io"), "binaries come from the release, checked");
            let main: Vec<String> =
                commands.iter().filter(|c| c.name == "stage" && c.function.as_deref() == Some("main")).map(|c| word(c, 0)).collect();
            let mut want = vec!["packages", "kernel", "containerd", "kubernetes", "images"];
            want.extend(if node.group == "control-plane" { ["authenticator", "init", "cni"].as_slice() } else { ["join"].as_slice() });
            assert_eq!(main, want, "{file}/{}", node.group);
            if node.group == "control-plane" && spec.cni.plugin == hybrid::model::CniPlugin::Calico {
                let applies: Vec<&ScriptCommand> = commands.iter().filter(|c| c.function.as_deref() == Some("install_cni")).collect();
                let pos = |pred: &dyn Fn(&ScriptCommand) -> bool| applies.iter().position(|c| pred(c)).unwrap();
                let crds = pos(&|c| c.args.iter().any(|a| a.ends_with("calico-crds.yaml")) && c.args.contains(&"apply".to_string()));
                let wait = pos(&|c| c.args.contains(&"wait".to_string()) && c.args.iter().any(|a| a.contains("established")));
                let operator =
                    pos(&|c| c.args.iter().any(|a| a.ends_with("tigera-operator.yaml")) && c.args.contains(&"apply".to_string()));
                assert!(crds < wait && wait < operator, "CRDs, then wait for them, then the operator");
            }
        }
    }
}

#[test]
fn every_node_kind_names_its_downloads_in_the_matrix() {
    let spec = spec("clusters/qa.toml");
    let names = |k| versions::downloads(&spec, k).into_iter().map(|d| d.name).collect::<BTreeSet<_>>();
    let cp = names(NodeKind::ControlPlane);
    assert!(cp.is_superset(&BTreeSet::from([
        "containerd",
        "runc",
        "cni-plugins",
        "crictl",
        "kubelet",
        "kubeadm",
        "kubectl",
        "kube-flannel"
    ])));
    let win = names(NodeKind::Windows(hybrid::model::WindowsVersion::Ws2022));
    assert!(win.is_superset(&BTreeSet::from([
        "containerd",
        "kubelet",
        "kubeadm",
        "nssm",
        "kube-proxy",
        "flanneld",
        "flannel-cni",
        "cni-plugins"
    ])));
}

/// The control plane's secret fetcher, run for real on loopback: IMDSv2
/// (session token first) gives the role's credentials, moto's SSM gives the
/// secrets, and the files land with the modes kubeadm expects. moto does not
/// verify signatures, so the request's SigV4 signature is compared with
/// botocore's for the same request and time. What this cannot prove: that
/// AWS accepts it from a real instance (IAM propagation, the real endpoint).
#[test]
fn the_control_plane_reads_its_secrets_from_ssm_with_imdsv2_credentials() {
    let moto = crate::moto::Moto::start();
    let secrets = test_secrets();
    let parameter = "/hybrid/fetch/secrets";
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ssm = crate::moto::aws_clients(&moto.url).await.1;
        ssm.put_parameter()
            .name(parameter)
            .value(secrets.to_stored())
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .unwrap();
    });
    let cp = control_plane("clusters/dev.toml");
    let dir = scratch("fetch-secrets");
    let script = dir.join("fetch-secrets.py");
    fs::write(&script, part(&cp, "fetch-secrets.py")).unwrap();
    let compile = Command::new("python3").args(["-m", "py_compile"]).arg(&script).output().unwrap();
    assert!(compile.status.success(), "{}", String::from_utf8_lossy(&compile.stderr));

    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/support/fetch_secrets_check.py"))
        .args([script.to_str().unwrap(), &moto.url, parameter, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exit"], 0, "{}", report["stderr"]);
    assert_eq!(report["ca_crt"], secrets.ca_cert_pem.as_str());
    assert_eq!(report["ca_key"], secrets.expose_ca_key_pem());
    assert_eq!(report["token"], secrets.token.expose().as_str());
    assert_eq!(report["modes"], json!({ "ca.crt": "0o644", "ca.key": "0o600", "token": "0o600" }));
    assert_eq!(report["imds"][0], json!(["PUT", "/latest/api/token", "300"]), "IMDSv2: a session token first");
    assert!(report["imds"].as_array().unwrap()[1..].iter().all(|r| r[2] == "imds-session"), "{}", report["imds"]);
    assert!(report["ours"].as_str().unwrap().starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/ssm/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature="), "{}", report["ours"]);
    assert_eq!(report["ours"], report["botocore"], "the SigV4 signature differs from botocore's");
}

/// The point of `hybrid bake`: on a baked image a worker goes from boot to
/// join without a download or a reboot, and to Ready without pulling an
/// image. Read off the rendered scripts (`bootstrap::critical_path`), and
/// checked against the stock path so the count cannot be zero by misreading.
#[test]
fn a_baked_worker_boots_without_downloads_reboots_or_pulls() {
    let mut seen = BTreeSet::new();
    for file in SPECS {
        let spec = spec(file);
        for node in nodes(&spec) {
            let path = hybrid::bootstrap::critical_path::of_node(&spec, &node).unwrap();
            let (stock, baked) = (path.totals(false), path.totals(true));
            let what = format!("{file} {}", node.group);
            assert!(stock.downloads >= 3 && stock.bytes > 50 << 20, "{what}: the stock path lost its downloads: {stock:?}");
            assert!(stock.image_pulls >= 1, "{what}: {stock:?}");
            // Joining (or `kubeadm init`) is never baked: a path without it misread the cut-off.
            assert!(
                path.stages.iter().any(|s| !s.baked && matches!(s.name.as_str(), "join" | "init")),
                "{what}: no join stage after the bake cut-off: {:#?}",
                path.stages
            );
            if node.is_control_plane() {
                // Never baked: a new control plane is rare and runs its own images.
                continue;
            }
            if node.os.is_windows() {
                assert_eq!(stock.reboots, 1, "{what}: the Containers feature needs one reboot on a stock image");
            }
            assert_eq!((baked.downloads, baked.bytes, baked.reboots, baked.image_pulls), (0, 0, 0, 0), "{what}: {:#?}", path.stages);
            seen.insert(node.os.is_windows());
        }
    }
    assert_eq!(seen.len(), 2, "both a Linux and a Windows worker were checked");
}

// =^..^= the Windows script as the processes that run it =^..^=

/// `C:\Program Files` for `$env:ProgramFiles`, lower case, no trailing `\`:
/// how two spellings of one folder compare.
fn folder(path: &str) -> String {
    path.replace("$env:ProgramFiles", "C:\\Program Files").trim_matches(|c| c == '\'' || c == '"').trim_end_matches('\\').to_lowercase()
}

/// The value a variable was last given before `at`, as written.
fn value_before(assignments: &[tools::Assignment], variable: &str, at: usize) -> Option<String> {
    assignments.iter().rfind(|a| a.left.eq_ignore_ascii_case(variable) && a.start < at).map(|a| a.value.trim().to_string())
}

/// The items of a `@(...)` list literal of strings.
fn list_items(value: &str) -> Vec<String> {
    let inner = value.trim().strip_prefix("@(").and_then(|v| v.strip_suffix(')')).unwrap_or(value);
    inner.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Where the script puts each program it installs (`kubelet.exe` →
/// `c:\k`), read off its Fetch and Copy-Item destinations and the archives
/// it unpacks (by their layout in the contract).
fn installed_programs(commands: &[ScriptCommand], assignments: &[tools::Assignment], want: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut place = |path: &str| {
        let path = folder(path);
        if let Some((dir, exe)) = path.rsplit_once('\\')
            && exe.ends_with(".exe")
        {
            out.insert(exe.to_string(), dir.to_string());
        }
    };
    for c in commands {
        match c.name.as_str() {
            "Fetch" if c.args.len() >= 2 => place(&word(c, 1)),
            "Copy-Item" => {
                if let Some(dest) = c.args.iter().rev().find(|a| a.ends_with(".exe'") || a.ends_with(".exe\"")) {
                    place(dest);
                }
            }
            "tar.exe" => {
                let archive = c.args.iter().find(|a| a.contains(".tar.gz") || a.contains(".tgz")).cloned().unwrap_or_default();
                let Some(target) = c.args.iter().position(|a| a == "-C").and_then(|i| c.args.get(i + 1)) else { continue };
                let target =
                    if target.starts_with('$') { value_before(assignments, target, c.start).unwrap_or_default() } else { target.clone() };
                for (name, files) in want["archives"].as_object().unwrap() {
                    if archive.contains(&format!("{name}.tar.gz")) {
                        for f in files.as_array().unwrap() {
                            place(&format!("{}\\{}", folder(&target), f.as_str().unwrap()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Where a command runs in the script's own order: its place, or, inside
/// a function, the first place the function is called from.
fn runs_at(commands: &[ScriptCommand], c: &ScriptCommand) -> usize {
    match &c.function {
        None => c.start,
        Some(f) => commands
            .iter()
            .filter(|d| &d.name == f && d.function.as_deref() != Some(f))
            .map(|d| runs_at(commands, d))
            .min()
            .unwrap_or(usize::MAX),
    }
}

/// The script process's PATH at `at`: the default, plus every folder an
/// assignment to `$env:Path` added before then. Changing the machine's PATH
/// does not count: a running process never reads it again.
fn process_path_at(
    commands: &[ScriptCommand],
    assignments: &[tools::Assignment],
    script: &str,
    want: &Value,
    at: usize,
) -> BTreeSet<String> {
    let mut path: BTreeSet<String> = want["default_path"].as_array().unwrap().iter().map(|d| folder(d.as_str().unwrap())).collect();
    for a in assignments.iter().filter(|a| a.left.eq_ignore_ascii_case("$env:Path")) {
        let (when, dirs) = match &a.function {
            // In a function: effective where it is called, adding the folders
            // its loop walks (`foreach ($Dir in $List)`).
            Some(f) => {
                let when = commands.iter().filter(|d| &d.name == f && d.function.as_deref() != Some(f)).map(|d| runs_at(commands, d)).min();
                let body = &script[script.find(&format!("function {f}")).unwrap()..];
                let list = body
                    .find("foreach (")
                    .map(|i| &body[i + "foreach (".len()..])
                    .and_then(|l| l.split(')').next())
                    .and_then(|l| l.split(" in ").nth(1));
                let dirs = match list {
                    Some(var) if a.value.contains(&format!("${}", "Dir")) || a.value.contains('$') => {
                        value_before(assignments, var.trim(), a.start).map(|v| list_items(&v)).unwrap_or_default()
                    }
                    _ => a.value.split(';').map(str::to_string).collect(),
                };
                (when.unwrap_or(usize::MAX), dirs)
            }
            None => (a.start, a.value.split(';').map(str::to_string).collect()),
        };
        if when < at {
            path.extend(dirs.iter().map(|d| folder(d)).filter(|d| !d.is_empty() && !d.contains("$env:path")));
        }
    }
    path
}

/// Every program a stage starts by bare name, and every program those start
/// by name in turn (kubeadm's join preflight runs `kubelet --version`), is
/// on the process's own PATH at that point, for every Windows node kind,
/// stock and baked. The machine's PATH alone does not count.
#[test]
fn windows_programs_run_by_name_are_on_the_process_path() {
    let want = contract("windows-process-path.json");
    let templates = Templates::builtin();
    for file in SPECS {
        let spec = spec(file);
        for pool in spec.pools.iter().filter(|p| p.os.is_windows()) {
            let node = hybrid::bootstrap::Renderer::new(&spec, &templates).pool(pool, &test_secrets()).unwrap();
            let bake = hybrid::bootstrap::Renderer::new(&spec, &templates).bake(pool).unwrap();
            for (mode, boot) in [("node", &node), ("bake", &bake)] {
                let script = part(boot, "bootstrap.ps1");
                let commands = tools::powershell_commands(script);
                let assignments = tools::powershell_assignments(script);
                let mut programs = installed_programs(&commands, &assignments, &want);
                for (exe, dir) in want["system_programs"].as_object().unwrap() {
                    programs.insert(exe.clone(), folder(dir.as_str().unwrap()));
                }
                assert!(programs.contains_key("kubelet.exe") && programs.contains_key("ctr.exe"), "{file}/{}: {programs:?}", pool.name);
                let mut calls: Vec<(String, usize, String)> = Vec::new();
                for c in &commands {
                    let name = c.name.to_lowercase();
                    let exe = if name.ends_with(".exe") { name.clone() } else { format!("{name}.exe") };
                    if !name.contains('\\') && !name.contains('$') && programs.contains_key(&exe) {
                        calls.push((exe.clone(), runs_at(&commands, c), format!("`{}`", c.name)));
                    }
                    for implicit in want["implicit_calls"].as_array().unwrap() {
                        if name.ends_with(implicit["caller"].as_str().unwrap())
                            && c.args.first().map(String::as_str) == implicit["first_argument"].as_str()
                        {
                            calls.push((
                                implicit["calls"].as_str().unwrap().to_string(),
                                runs_at(&commands, c),
                                format!("{} ({})", c.name, implicit["why"]),
                            ));
                        }
                    }
                }
                assert!(calls.iter().any(|(exe, ..)| exe == "kubelet.exe"), "the join's preflight call of kubelet is checked");
                for (exe, at, why) in &calls {
                    let path = process_path_at(&commands, &assignments, script, &want, *at);
                    let dir = &programs[exe];
                    assert!(
                        path.contains(dir),
                        "{file}/{} ({mode}): {why} needs {exe} from {dir} on the process PATH there, which is {path:?}",
                        pool.name
                    );
                }
                // The machine's PATH is built from its own value, not from this
                // process's merged one (which would write the user's PATH into it).
                let sets: Vec<&str> = script.lines().filter(|l| l.contains("SetEnvironmentVariable('Path'")).collect();
                assert!(!sets.is_empty(), "the machine PATH is set too, for what starts after a reboot");
                for line in sets {
                    assert!(!line.to_lowercase().contains("$env:path"), "machine PATH from the process PATH: {line}");
                }
                assert!(script.contains("[Environment]::GetEnvironmentVariable('Path', 'Machine')"));
                // Services started in the same boot get the PATH the Service
                // Control Manager had at boot: their scripts name programs by folder.
                if let Some(i) = script.find("$Proxy = @'") {
                    let service = &script[i + "$Proxy = @'".len()..];
                    let service = &service[..service.find("'@").unwrap()];
                    for c in tools::powershell_commands(service) {
                        let exe = c.name.to_lowercase();
                        assert!(
                            !programs.contains_key(&exe) || want["system_programs"].as_object().unwrap().contains_key(&exe),
                            "a service runs {} by bare name",
                            c.name
                        );
                    }
                }
            }
        }
    }
}

/// A service hybrid installs with nssm starts on its own at every boot;
/// on a node from a baked image it would start before the join has written
/// its parameters (flanneld without --kube-subnet-mgr loops on etcd; an
/// argument-less kubelet holds port 10250). So the stages a bake runs
/// install them to start on demand, and the join stage configures each
/// before switching it to start at boot and (re)starting it: `Start-Service`
/// leaves a running, unconfigured service as it is.
#[test]
fn services_a_bake_installs_start_only_once_the_join_configured_them() {
    let templates = Templates::builtin();
    let nssm = |c: &ScriptCommand, args: &[&str]| {
        c.name == "Nssm" && c.args.len() >= args.len() && c.args.iter().zip(args).all(|(a, b)| a.trim_matches('\'') == *b)
    };
    let mut seen = BTreeSet::new();
    for file in SPECS {
        let spec = spec(file);
        for pool in spec.pools.iter().filter(|p| p.os.is_windows()) {
            let bake = hybrid::bootstrap::Renderer::new(&spec, &templates).bake(pool).unwrap();
            let baked = tools::powershell_commands(part(&bake, "bootstrap.ps1"));
            let installs: Vec<&ScriptCommand> = baked.iter().filter(|c| c.name == "Install-Service" && c.function.is_none()).collect();
            assert!(!installs.is_empty());
            // Install-Service installs once and sets the start type on demand, right after.
            let helper: Vec<&ScriptCommand> = baked.iter().filter(|c| c.function.as_deref() == Some("Install-Service")).collect();
            let install =
                helper.iter().position(|c| c.name == "Nssm" && word(c, 0) == "install" && c.args[1] == "$Name").expect("nssm install");
            let demand = helper.iter().position(|c| nssm(c, &["set", "$Name", "Start"])).expect("a start type");
            assert!(
                install < demand && matches!(word(helper[demand], 3).as_str(), "SERVICE_DEMAND_START" | "SERVICE_DISABLED"),
                "{helper:?}"
            );
            let node = hybrid::bootstrap::Renderer::new(&spec, &templates).pool(pool, &test_secrets()).unwrap();
            let booted = tools::powershell_commands(part(&node, "bootstrap.ps1"));
            for install in installs {
                let service = word(install, 0);
                seen.insert(service.clone());
                assert_ne!(install.stage.as_deref(), Some("join"), "{service} is installed in a stage a bake runs");
                // At join: parameters, then start at boot, then a (re)start.
                let in_join = |args: &[&str]| booted.iter().find(|c| c.stage.as_deref() == Some("join") && nssm(c, args)).map(|c| c.start);
                let params = in_join(&["set", &service, "AppParameters"]).unwrap_or_else(|| panic!("join configures {service}"));
                let auto = booted
                    .iter()
                    .find(|c| c.stage.as_deref() == Some("join") && nssm(c, &["set", &service, "Start", "SERVICE_AUTO_START"]))
                    .map(|c| c.start)
                    .unwrap_or_else(|| panic!("{service} starts at boot once configured"));
                assert!(params < auto, "{service}: configured before it may start");
                let started = booted.iter().find(|c| {
                    c.stage.as_deref() == Some("join")
                        && c.start > auto
                        && ((c.name == "Restart-Service" && c.args.iter().any(|a| a.trim_matches('\'') == service))
                            || (service == "kubelet" && c.name.ends_with("kubeadm.exe") && word(c, 0) == "join"))
                });
                assert!(started.is_some(), "{file}/{}: {service} is (re)started after it is configured", pool.name);
                assert!(
                    !booted.iter().any(|c| c.name == "Start-Service" && c.args.iter().any(|a| a.trim_matches('\'') == service)),
                    "Start-Service does nothing to a running {service}"
                );
            }
            // kubeadm's preflight needs port 10250 free: a kubelet left running is stopped first.
            let stop = booted
                .iter()
                .find(|c| c.stage.as_deref() == Some("join") && c.name == "Stop-Service" && c.args.iter().any(|a| a == "kubelet"));
            let join = booted.iter().find(|c| c.name.ends_with("kubeadm.exe") && word(c, 0) == "join").unwrap();
            assert!(stop.is_some_and(|s| s.start < join.start), "{file}/{}", pool.name);
        }
    }
    assert!(["kubelet", "flanneld", "hybrid-kube-proxy"].iter().all(|s| seen.contains(*s)), "{seen:?}");
}

/// The route task reads the routes Windows uses (the active store) and
/// puts right a route on another adapter or gateway, not only a missing one.
#[test]
fn the_route_task_repairs_stale_link_local_routes() {
    let spec = spec("clusters/dev.toml");
    let win = nodes(&spec).into_iter().find(|n| n.os.is_windows()).unwrap();
    let script = part(&win, "bootstrap.ps1");
    let fix = &script[script.find("$Fix = @'").unwrap() + "$Fix = @'".len()..];
    let fix = &fix[..fix.find("'@").unwrap()];
    assert!(tools::powershell_errors(fix).is_empty(), "{:?}", tools::powershell_errors(fix));
    let commands = tools::powershell_commands(fix);
    let gets: Vec<&ScriptCommand> = commands.iter().filter(|c| c.name == "Get-NetRoute").collect();
    assert!(gets.len() >= 2);
    for g in &gets {
        let store = g.args.iter().position(|a| a == "-PolicyStore").map(|i| g.args[i + 1].as_str());
        assert!(store.is_some(), "Get-NetRoute without a store reads both and can hide a missing route: {g:?}");
    }
    assert!(gets.iter().any(|g| g.args.contains(&"ActiveStore".to_string()) && g.args.iter().any(|a| a.contains("/32"))));
    assert!(
        fix.contains("InterfaceIndex -eq $G.InterfaceIndex") && fix.contains("NextHop -eq $G.NextHop"),
        "a route elsewhere counts as missing"
    );
    let remove = commands.iter().position(|c| c.name == "Remove-NetRoute").expect("a stale route is removed");
    let add = commands.iter().position(|c| c.name == "New-NetRoute").unwrap();
    assert!(remove < add);
}

/// A bake ends the documented way and says whether it worked: EC2Launch v2
/// resets inline (no deprecated --block) and the script checks the run state
/// is gone; EC2Launch v1 schedules the instance initialization and the
/// script checks its task and log, after dropping the builder's own
/// user-data task; `bake done` is written only after the check passed, and
/// `bake fail` otherwise; the machine shuts down last either way.
#[test]
fn a_windows_bake_seals_the_image_and_says_whether_it_worked() {
    let want = &contract("ec2launch.json")["seal"];
    let strs = |k: &str| want[k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>();
    let spec = spec("clusters/dev.toml");
    let pool = spec.pools.iter().find(|p| p.os.is_windows()).unwrap();
    let bake = hybrid::bootstrap::Renderer::new(&spec, &Templates::builtin()).bake(pool).unwrap();
    let script = part(&bake, "bootstrap.ps1");
    let commands = tools::powershell_commands(script);
    let seal: Vec<&ScriptCommand> = commands.iter().filter(|c| c.function.as_deref() == Some("Seal-Image")).collect();
    // v2: reset inline, then the state files are checked.
    let reset = seal.iter().find(|c| c.name == "$V2").expect("EC2Launch v2 is reset");
    assert_eq!(reset.args, strs("v2_reset_args"), "{reset:?}");
    for deprecated in strs("v2_deprecated_args") {
        assert!(!reset.args.contains(&deprecated), "{deprecated} is deprecated");
    }
    let body = &script[script.find("function Seal-Image").unwrap()..];
    let body = &body[..body.find("\n}\n").unwrap()];
    assert!(body.contains("$Rc = $LASTEXITCODE"), "the reset's exit code is checked");
    for file in strs("v2_state_files") {
        assert!(body.contains(&format!("'{file}'")), "the reset must have removed {file}");
    }
    // v1: the builder's user-data task goes, then the schedule, then its check.
    let unregister = seal.iter().position(|c| {
        c.name == "Unregister-ScheduledTask" && c.args.iter().any(|a| a.contains(want["v1_userdata_task"].as_str().unwrap()))
    });
    let schedule = seal.iter().position(|c| c.name.ends_with("InitializeInstance.ps1\"") && c.args == strs("v1_schedule_args"));
    let check =
        seal.iter().position(|c| c.name == "Get-ScheduledTask" && c.args.iter().any(|a| a.contains(want["v1_task"].as_str().unwrap())));
    assert!(unregister.is_some() && schedule.is_some() && check.is_some(), "{seal:?}");
    assert!(unregister < schedule && schedule < check);
    assert!(body.contains(want["v1_log_line"].as_str().unwrap()), "the schedule is confirmed by its log line");
    // The bake branch: the marker follows the seal's outcome, then the shutdown.
    let branch = &script[script.find("if ($Mode -eq 'bake') {").unwrap()..];
    let branch = &branch[..branch.find("\n}\n").unwrap()];
    let sealed = branch.find("$Why = Seal-Image").expect("the bake seals its image");
    let marker = want["completion_marker"].as_str().unwrap();
    let done = branch.find(&format!("Timeline {marker}")).expect("the completion marker");
    let fail = branch.find("Timeline bake fail $Why").expect("a failed seal says so");
    let stop = branch.find("Stop-Computer").unwrap();
    assert!(sealed < done && sealed < fail && done < stop && fail < stop, "{branch}");
    assert!(branch[sealed..done].contains("if ($Why)"), "done only when the seal worked: {branch}");
    // EC2Launch v1's -Schedule and v2's reset appear nowhere else.
    assert_eq!(commands.iter().filter(|c| c.name == "$V2" || c.name.ends_with("InitializeInstance.ps1\"")).count(), 2);
}

/// Windows PowerShell 5.1 never fails on a program's exit code, so every
/// program the stages depend on (tar, containerd's registration, ctr's
/// pulls, nssm) is followed by a check that turns its exit code into the
/// stage's failure (a bake must not seal an image whose pulls failed).
#[test]
fn windows_stages_fail_when_a_program_they_run_fails() {
    for file in SPECS {
        let spec = spec(file);
        for pool in spec.pools.iter().filter(|p| p.os.is_windows()) {
            let bake = hybrid::bootstrap::Renderer::new(&spec, &Templates::builtin()).bake(pool).unwrap();
            let commands = tools::powershell_commands(part(&bake, "bootstrap.ps1"));
            let mut checked = 0;
            for (i, c) in commands.iter().enumerate() {
                let name = c.name.to_lowercase();
                let native = name == "tar.exe"
                    || name.ends_with("\\ctr.exe\"")
                    || name.ends_with("\\containerd.exe\"")
                    || name.ends_with("nssm.exe");
                if !native {
                    continue;
                }
                // (Its output may be piped away first.)
                let next = commands[i + 1..].iter().map(|n| n.name.as_str()).find(|n| *n != "Out-Null");
                assert_eq!(next, Some("Assert-Exit"), "{file}/{}: `{} {}` is not checked", pool.name, c.name, c.args.join(" "));
                checked += 1;
            }
            assert!(checked >= 4, "{file}/{}: {checked}", pool.name);
            // nssm is run only through the checking helper.
            assert!(commands.iter().filter(|c| c.name.ends_with("nssm.exe")).all(|c| c.function.as_deref() == Some("Nssm")));
        }
    }
}

/// aws-iam-authenticator on the control plane, against its contract
/// (tests/fixtures/upstream/aws-iam-authenticator.json): the API server's
/// webhook flags name the kubeconfig `init` makes, and its folder is
/// mounted into the API server; the server runs with the flags the
/// contract names, on aws-auth, before kubeadm init starts the API server;
/// and its own identity is a certificate from the cluster CA for the user
/// hybrid's Role lets read aws-auth. What no test here can run: the
/// release binary itself (its `init` and `server`), which the contract's
/// sources describe.
#[test]
fn the_control_plane_runs_aws_iam_authenticator_as_its_token_webhook() {
    let want = contract("aws-iam-authenticator.json");
    let spec = spec("clusters/dev.toml");
    let cp = control_plane("clusters/dev.toml");
    let kubeadm = crate::tools::yaml_to_json(part(&cp, "kubeadm.yaml")).unwrap();
    let api = &kubeadm[1]["apiServer"];
    let arg = |name: &str| {
        api["extraArgs"].as_array().unwrap().iter().find(|a| a["name"] == name).map(|a| a["value"].as_str().unwrap().to_string())
    };
    for flag in want["apiserver_flags"].as_array().unwrap() {
        assert!(arg(flag.as_str().unwrap()).is_some(), "kube-apiserver lacks --{flag}");
    }
    let webhook = arg("authentication-token-webhook-config-file").unwrap();
    let mount = &api["extraVolumes"][0];
    assert!(
        webhook.starts_with(&format!("{}/", mount["mountPath"].as_str().unwrap())),
        "the webhook kubeconfig is outside the mounted folder"
    );
    assert_eq!(mount["hostPath"], mount["mountPath"]);
    assert_eq!(mount["readOnly"], true);

    let files = write_files(&cp);
    let unit = &files["/etc/systemd/system/aws-iam-authenticator.service"];
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let words: Vec<String> = exec.split(' ').map(|w| w.trim_matches('"').to_string()).collect();
    assert_eq!(words[..2], ["/usr/local/bin/aws-iam-authenticator".to_string(), "server".to_string()]);
    for flag in want["server_flags"].as_array().unwrap() {
        assert!(words.iter().any(|w| w.starts_with(&format!("{}=", flag.as_str().unwrap()))), "{exec} lacks {flag}");
    }
    let value = |flag: &str| words.iter().find_map(|w| w.strip_prefix(&format!("{flag}="))).unwrap().to_string();
    assert_eq!(value("--backend-mode"), want["backend_mode"].as_str().unwrap());
    assert_eq!(value("--cluster-id"), hybrid::model::access::cluster_id(&spec.name, &spec.region));
    assert_eq!(value("--partition"), "aws");

    // `init` runs in the state folder, and its kubeconfig is installed where
    // the API server is told to look; all before kubeadm init.
    let script = part(&cp, "bootstrap.sh");
    let commands = tools::bash_commands(script);
    let install: Vec<&ScriptCommand> = commands.iter().filter(|c| c.function.as_deref() == Some("install_authenticator")).collect();
    assert!(install.iter().any(|c| c.name == "aws-iam-authenticator" && c.args.first().map(String::as_str) == Some("init")), "{install:?}");
    let outputs: Vec<&str> = want["init_outputs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(
        install.iter().any(|c| c.name == "install" && c.args.iter().any(|a| a.contains(outputs[2]))),
        "init's kubeconfig is not installed: {install:?}"
    );
    assert!(
        script.contains(&format!("AUTHN_WEBHOOK='{webhook}'")),
        "the script installs the webhook kubeconfig elsewhere than kube-apiserver reads it"
    );
    let stages: Vec<String> =
        commands.iter().filter(|c| c.name == "stage" && c.function.as_deref() == Some("main")).map(|c| word(c, 0)).collect();
    let at = |s: &str| stages.iter().position(|x| x == s).unwrap();
    assert!(at("authenticator") < at("init"), "{stages:?}");

    // Its own identity: a client certificate from the cluster CA, for the
    // user the aws-auth Role is bound to, in a kubeconfig only root reads.
    let dir = scratch("authenticator");
    let pki = root().join("tests/fixtures/pki");
    let body = format!("PKI='{}'\nauthenticator_identity '{}/server.kubeconfig'\n", pki.display(), dir.display());
    let (ok, _, stderr) = run_functions(script, &body);
    assert!(ok, "{stderr}");
    let path = dir.join("server.kubeconfig");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let config = crate::tools::yaml_to_json(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(config[0]["clusters"][0]["cluster"]["server"], format!("https://{}:6443", spec.api_server_ip().unwrap()));
    use base64::Engine;
    let decode = |v: &Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
    fs::write(dir.join("cert.pem"), decode(&config[0]["users"][0]["user"]["client-certificate-data"])).unwrap();
    let verify = Command::new("openssl").args(["verify", "-CAfile"]).arg(pki.join("ca.crt")).arg(dir.join("cert.pem")).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let subject = Command::new("openssl").args(["x509", "-noout", "-subject", "-in"]).arg(dir.join("cert.pem")).output().unwrap();
    let subject = String::from_utf8_lossy(&subject.stdout).replace(' ', "");
    assert!(subject.contains(&format!("CN={}", hybrid::cluster::objects::AUTHENTICATOR_USER)), "{subject}");
    fs::remove_dir_all(&dir).ok();
}

/// A worker reads its join token, and nothing else, from SSM the same way:
/// IMDSv2 credentials, a SigV4 request botocore would sign alike.
#[test]
fn a_worker_reads_its_join_token_from_ssm() {
    let moto = crate::moto::Moto::start();
    let parameter = "/hybrid/fetch/join-token";
    let token = "abcdef.0123456789abcdef";
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ssm = crate::moto::aws_clients(&moto.url).await.1;
        ssm.put_parameter().name(parameter).value(token).r#type(aws_sdk_ssm::types::ParameterType::SecureString).send().await.unwrap();
    });
    let spec = spec("clusters/dev.toml");
    let worker = nodes(&spec).into_iter().find(|n| n.group == "game-servers").unwrap();
    assert!(part(&worker, "bootstrap.sh").contains("JOIN_TOKEN_PARAMETER='/hybrid/dev/join-token'"));
    let dir = scratch("fetch-join-token");
    let script = dir.join("fetch-secrets.py");
    fs::write(&script, part(&worker, "fetch-secrets.py")).unwrap();
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/support/fetch_secrets_check.py"))
        .args([script.to_str().unwrap(), &moto.url, parameter, dir.to_str().unwrap(), "--join-token"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exit"], 0, "{}", report["stderr"]);
    assert_eq!(report["token"], token);
    assert_eq!(report["modes"]["token"], "0o600");
    assert_eq!(report["ca_key"], Value::Null, "a worker writes no CA");
    assert_eq!(report["ours"], report["botocore"], "the SigV4 signature differs from botocore's");
    fs::remove_dir_all(&dir).ok();
}

/// A Linux worker's join takes the token from SSM at each attempt, puts it
/// into its kubeadm config only when it has a bootstrap token's shape, and
/// leaves no token file behind.
#[test]
fn a_linux_worker_joins_with_the_token_it_reads_at_each_attempt() {
    let spec = spec("clusters/dev.toml");
    let worker = nodes(&spec).into_iter().find(|n| n.group == "game-servers").unwrap();
    let script = part(&worker, "bootstrap.sh");
    let dir = scratch("join-token");
    let d = dir.display();
    fs::write(dir.join("kubeadm.yaml.in"), part(&worker, "kubeadm.yaml")).unwrap();
    // python3 (the fetcher), curl and kubeadm stand in; paths move to the scratch folder.
    let run = |token: &str| {
        let body = format!(
            "python3() {{ printf '%s' '{token}' >\"${{@: -1}}\"; echo \"fetch $3\" >>'{d}/log'; }}\n\
             curl() {{ :; }}\n\
             kubeadm() {{ echo \"kubeadm $1 $(grep -c '{token}' '{d}/kubeadm.yaml')\" >>'{d}/log'; }}\n\
             cp '{d}/kubeadm.yaml.in' '{d}/kubeadm.yaml'\n\
             sed -e 's#/etc/hybrid/kubeadm.yaml#{d}/kubeadm.yaml#g' -e 's#/etc/hybrid/token#{d}/token#g' -e 's#/etc/kubernetes/kubelet.conf#{d}/kubelet.conf#g' <<<\"$(declare -f kubeadm_join put_token)\" >'{d}/fn.sh'; source '{d}/fn.sh'\n\
             set +e; (set -e; kubeadm_join); echo \"status $?\""
        );
        let _ = fs::remove_file(dir.join("log"));
        let (ok, stdout, stderr) = run_functions(script, &body);
        assert!(ok, "{stderr}");
        (stdout, fs::read_to_string(dir.join("log")).unwrap_or_default(), stderr)
    };
    let (stdout, log, stderr) = run("abcdef.0123456789abcdef");
    assert!(stdout.contains("status 0"), "{stdout}{stderr}");
    assert_eq!(log.lines().collect::<Vec<_>>(), ["fetch /hybrid/dev/join-token", "kubeadm join 1"], "{stderr}");
    assert!(!dir.join("token").exists(), "the token file stays behind");
    // Anything else never reaches the config file.
    let (stdout, log, stderr) = run("abcdef.0123456789abcdef$(id)/x");
    assert!(stdout.contains("status 1") && stderr.contains("unexpected bootstrap token"), "{stdout}{stderr}");
    assert!(!log.contains("kubeadm join"), "{log}");
    fs::remove_dir_all(&dir).ok();
}

/// PowerShell looks a variable up through the scopes of the functions that
/// are running: a script block that `Stage` or `Retry` runs (`& $Body`)
/// and that reads `$I` gets `Retry`'s own `$i` (names ignore case) instead
/// of the caller's. So no block handed to such a function may read a name
/// the function itself defines (its parameters and assignments), unless
/// the block assigns it first.
#[test]
fn windows_blocks_never_read_a_variable_of_the_function_that_runs_them() {
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let b = text.as_bytes();
        for (i, _) in text.match_indices('$') {
            let name: String = text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `$env:X`, `$script:X`: scoped on purpose.
            if !name.is_empty() && b.get(i + 1 + name.len()) != Some(&b':') {
                out.insert(name.to_ascii_lowercase());
            }
        }
        out
    };
    let assigned = |text: &str| -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for (i, _) in text.match_indices('$') {
            let name: String = text[i + 1..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let rest = text[i + 1 + name.len()..].trim_start();
            let before = text[..i].trim_end();
            if !name.is_empty()
                && (rest.starts_with("= ") || rest.starts_with("=\n") || before.ends_with("foreach (") || before.ends_with("for ("))
            {
                out.insert(name.to_ascii_lowercase());
            }
        }
        out
    };
    let automatic: std::collections::BTreeSet<String> =
        ["_", "true", "false", "null", "lastexitcode", "pshome", "errorpreference", "args"].map(String::from).into();
    let mut checked = 0;
    for (file, _) in crate::render::CASES {
        for node in crate::render::render(&spec(file)).iter().filter(|n| n.os.is_windows()) {
            let script = part(node, "bootstrap.ps1");
            for runner in ["Stage", "Retry"] {
                let start = script.find(&format!("function {runner}(")).unwrap_or_else(|| panic!("no function {runner}"));
                let end = start + script[start..].find("\n}\n").unwrap();
                // Its parameters and what its body assigns (`for ($i = 1…` included).
                let signature_end = start + script[start..].find(") {").unwrap();
                let mut own: std::collections::BTreeSet<String> = names(&script[start..signature_end]);
                own.extend(assigned(&script[signature_end..end]));
                let own: std::collections::BTreeSet<String> = own.difference(&automatic).cloned().collect();
                for call in tools::powershell_commands(script).iter().filter(|c| c.name == runner) {
                    let block =
                        call.args.iter().find(|a| a.starts_with('{')).unwrap_or_else(|| panic!("{runner} without a block: {call:?}"));
                    let reads: std::collections::BTreeSet<String> = names(block).difference(&assigned(block)).cloned().collect();
                    let clash: Vec<&String> = reads.intersection(&own).collect();
                    assert!(
                        clash.is_empty(),
                        "{}: a block {runner} runs reads {clash:?}, which {runner} defines: {}",
                        node.group,
                        &block[..block.len().min(120)]
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} blocks checked");
}

/// kubelet pulls from the account's private ECR on every worker, Linux and
/// Windows: the plugin is installed where `--image-credential-provider-bin-dir`
/// says, under the name the config gives it (kubelet looks the provider's
/// name up in that folder; on Windows as Windows does, `.exe` added), and the
/// config is kubelet.config.k8s.io/v1 with the plugin's v1 API and ECR's
/// private registry hosts (kubernetes.io docs, "Configure a kubelet image
/// credential provider"; cloud-provider-aws cmd/ecr-credential-provider).
/// The control plane gets none: its role may not pull from ECR.
#[test]
fn workers_pull_private_ecr_images_through_kubelets_credential_provider() {
    let spec = spec("clusters/dev.toml");
    let check_config = |yaml: &str, what: &str| {
        let doc = &crate::tools::yaml_to_json(yaml).unwrap()[0];
        assert_eq!(doc["apiVersion"], "kubelet.config.k8s.io/v1", "{what}");
        assert_eq!(doc["kind"], "CredentialProviderConfig", "{what}");
        let p = &doc["providers"][0];
        assert_eq!(p["apiVersion"], "credentialprovider.kubelet.k8s.io/v1", "{what}");
        assert!(p["defaultCacheDuration"].as_str().is_some(), "{what}: required");
        assert!(p["matchImages"].as_array().unwrap().contains(&json!("*.dkr.ecr.*.amazonaws.com")), "{what}");
        p["name"].as_str().unwrap().to_string()
    };
    for node in nodes(&spec) {
        if node.os.is_windows() {
            let script = part(&node, "bootstrap.ps1");
            let config = script.split("$CredentialProviderConfig = '").nth(1).unwrap().split("'\n").next().unwrap().replace("''", "'");
            let name = check_config(&config, &node.group);
            let args: Vec<String> =
                tools::powershell_commands(script).iter().filter(|c| c.name == "Fetch").flat_map(|c| c.args.clone()).collect();
            assert!(args.iter().any(|a| a == &format!(r"'C:\k\credential-providers\{name}.exe'")), "{args:?}");
            assert!(script.contains(r"'--image-credential-provider-bin-dir=C:\k\credential-providers'"));
            assert!(script.contains(r"'--image-credential-provider-config=C:\k\credential-provider.yaml'"));
            assert!(script.contains(r"Set-Content -Path 'C:\k\credential-provider.yaml' -Value $CredentialProviderConfig"));
            continue;
        }
        let files = write_files(&node);
        let kubeadm = crate::tools::yaml_to_json(part(&node, "kubeadm.yaml")).unwrap();
        let extra = &kubeadm[0]["nodeRegistration"]["kubeletExtraArgs"];
        let arg =
            |n: &str| extra.as_array().and_then(|a| a.iter().find(|e| e["name"] == n)).map(|e| e["value"].as_str().unwrap().to_string());
        if node.group == "control-plane" {
            assert!(arg("image-credential-provider-config").is_none() && !files.contains_key("/etc/hybrid/credential-provider.yaml"));
            continue;
        }
        let config_path = arg("image-credential-provider-config").unwrap();
        let name = check_config(&files[&config_path], &node.group);
        let dir = arg("image-credential-provider-bin-dir").unwrap();
        let installs = tools::bash_commands(part(&node, "bootstrap.sh"));
        assert!(
            installs.iter().any(|c| c.name == "install" && c.args.last().is_some_and(|a| a.contains(&format!("{dir}'/{name}")))),
            "{node:?}"
        );
    }
}

/// A bake logs in to a private ECR registry with its builder's role to
/// pre-pull the pool's private images: the Linux fetcher asks ECR for a
/// login (against moto's ECR), the pull passes it to crictl without it ever
/// being on a logged command line, and public images are pulled as before.
/// (Windows does the same with its signer and ctr --user: read off the
/// parse tree, since no PowerShell runs here.)
#[test]
fn a_bake_pulls_private_ecr_images_with_a_login_of_its_own() {
    let moto = crate::moto::Moto::start();
    let spec = spec("clusters/dev.toml");
    let mut pool = spec.pools.iter().find(|p| !p.os.is_windows()).unwrap().clone();
    let private = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/game/server:1.2";
    pool.prepull = vec![private.to_string(), "docker.io/library/busybox:1.37".to_string()];
    let bake = hybrid::bootstrap::Renderer::new(&spec, &Templates::builtin()).bake(&pool).unwrap();
    let dir = scratch("ecr-login");
    let script = dir.join("fetch-secrets.py");
    fs::write(&script, part(&bake, "fetch-secrets.py")).unwrap();
    let out = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/support/fetch_secrets_check.py"))
        .args([script.to_str().unwrap(), &moto.url, "-", dir.to_str().unwrap(), "--ecr-password"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["exit"], 0, "{}", report["stderr"]);
    assert_eq!(report["stdout"], "123456789012-auth-token\n", "moto's ECR login password");

    let bash = part(&bake, "bootstrap.sh");
    assert!(
        bash.contains(&format!(
            "[{}]='eu-west-1'' ''https://api.ecr.eu-west-1.amazonaws.com'",
            hybrid::bootstrap::filters::sh_quote(private)
        )),
        "{bash}"
    );
    let d = dir.display();
    let body = format!(
        "python3() {{ echo \"python3 $*\" >>'{d}/log'; echo s3cret; }}\n\
         crictl() {{ echo \"crictl ${{CRICTL_CREDS:+creds=$CRICTL_CREDS }}$*\" >>'{d}/log'; }}\n\
         log() {{ echo \"log $*\" >>'{d}/log'; }}\n\
         pull_images"
    );
    let (ok, _, stderr) = run_functions(bash, &body);
    assert!(ok, "{stderr}");
    let log = fs::read_to_string(dir.join("log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.contains(&"python3 /etc/hybrid/fetch-secrets.py --ecr-password eu-west-1 https://api.ecr.eu-west-1.amazonaws.com"),
        "{log}"
    );
    assert!(lines.contains(&format!("crictl creds=AWS:s3cret pull {private}").as_str()), "the login goes in crictl's environment: {log}");
    assert!(lines.contains(&"crictl pull docker.io/library/busybox:1.37"), "{log}");
    // `retry` logs the command it gives up on: the login is fetched inside
    // pull_private, so it is never on that command line.
    let commands = tools::bash_commands(bash);
    let retried: Vec<&ScriptCommand> =
        commands.iter().filter(|c| c.name == "retry" && c.function.as_deref() == Some("pull_images")).collect();
    assert!(retried.iter().any(|c| c.args.get(2).map(String::as_str) == Some("pull_private")), "{retried:?}");
    assert!(!bash.contains("--creds"), "no login on a command line (ps shows it)");
    let mut win = spec.pools.iter().find(|p| p.os.is_windows()).unwrap().clone();
    win.prepull = vec![private.to_string()];
    let bake = hybrid::bootstrap::Renderer::new(&spec, &Templates::builtin()).bake(&win).unwrap();
    let ps = part(&bake, "bootstrap.ps1");
    assert!(ps.contains(&format!("$EcrLogins = @{{ '{private}' = @('eu-west-1', 'https://api.ecr.eu-west-1.amazonaws.com'); }}")), "{ps}");
    let pulls: Vec<ScriptCommand> = tools::powershell_commands(ps).into_iter().filter(|c| c.name.ends_with("\\ctr.exe\"")).collect();
    assert!(pulls.iter().any(|c| c.args.contains(&"@Auth".to_string()) && c.function.as_deref() == Some("Pull-Image")), "{pulls:?}");
    fs::remove_dir_all(&dir).ok();
}
