//! Bootstrap rendering: golden files, real parsers and linters on every
//! rendered script, hostile values, size limits, and the `render` command.

use std::fs;
use std::path::Path;

use hybrid::bootstrap::pki::ClusterSecrets;
use hybrid::bootstrap::{BootstrapError, NodeBootstrap, Renderer, Templates, USER_DATA_LIMIT};
use hybrid::config::load;
use hybrid::model::{ClusterSpec, NodeOs, Taint, TaintEffect};

use crate::tools;
use crate::util::{hybrid, root, scratch, text};

/// Golden cases: the file to render and the folder its golden files live in.
pub(crate) const CASES: &[(&str, &str)] = &[
    ("tests/fixtures/render/calico.toml", "calico"),
    ("clusters/qa.toml", "flannel"),
    ("tests/fixtures/render/k136-flannel-2025.toml", "current"),
];

pub fn test_secrets() -> ClusterSecrets {
    let dir = root().join("tests/fixtures/pki");
    let read = |n: &str| fs::read_to_string(dir.join(n)).unwrap();
    ClusterSecrets::from_parts(&read("ca.crt"), &read("ca.key"), &read("token")).unwrap()
}

pub fn spec(rel: &str) -> ClusterSpec {
    let loaded = load(&fs::read_to_string(root().join(rel)).unwrap());
    loaded.spec.unwrap_or_else(|| panic!("{rel} is invalid: {:?}", loaded.diagnostics))
}

pub(crate) fn render(spec: &ClusterSpec) -> Vec<NodeBootstrap> {
    Renderer::new(spec, &Templates::builtin()).cluster(&test_secrets()).unwrap()
}

fn part<'a>(node: &'a NodeBootstrap, name: &str) -> &'a str {
    &node.parts.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{} has no {name}", node.group)).1
}

/// Rendered output equals the golden files under tests/golden/<case>/<group>/.
/// After an intended change, regenerate them with `HYBRID_BLESS=1 cargo test
/// golden` and review the diff like code.
#[test]
fn golden_files_match() {
    // Only HYBRID_BLESS=1 rewrites; HYBRID_BLESS=0 (or anything else) compares.
    let bless = std::env::var("HYBRID_BLESS").is_ok_and(|v| v == "1");
    let mut mismatches = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for (file, case) in CASES {
        for node in render(&spec(file)) {
            let dir = root().join("tests/golden").join(case).join(&node.group);
            let mut files: Vec<(String, Vec<u8>)> = node.parts.iter().map(|(n, c)| (n.clone(), c.clone().into_bytes())).collect();
            files.push(("user-data".into(), node.user_data.clone()));
            for (name, bytes) in files {
                let path = dir.join(&name);
                written.insert(path.clone());
                if bless {
                    fs::create_dir_all(&dir).unwrap();
                    fs::write(&path, &bytes).unwrap();
                } else if fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                    mismatches.push(path.strip_prefix(root()).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(mismatches.is_empty(), "rendered output differs from the golden files (HYBRID_BLESS=1 to update): {mismatches:#?}");
    // A golden file no case writes any more proves nothing and misleads a
    // reader: blessing removes it, a comparison names it.
    let mut orphans = Vec::new();
    let mut folders = vec![root().join("tests/golden")];
    while let Some(dir) = folders.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if !written.contains(&path) && path.file_name().is_some_and(|n| n != "README.md") {
                if bless {
                    fs::remove_file(&path).unwrap();
                } else {
                    orphans.push(path.strip_prefix(root()).unwrap().display().to_string());
                }
            }
        }
    }
    assert!(orphans.is_empty(), "golden files no case writes (HYBRID_BLESS=1 removes them): {orphans:#?}");
}

#[test]
fn golden_cases_cover_every_node_kind() {
    let mut kinds = std::collections::BTreeSet::new();
    for (file, case) in CASES {
        for node in render(&spec(file)) {
            kinds.insert(format!("{case}/{}", if node.group == "control-plane" { "control-plane" } else { node.os.name() }));
        }
    }
    for want in [
        "calico/control-plane",
        "calico/al2023",
        "calico/windows-2019",
        "calico/windows-2022",
        "flannel/control-plane",
        "flannel/ubuntu-24.04",
        "flannel/windows-2019",
        "flannel/windows-2022",
        "current/ubuntu-22.04",
        "current/windows-2025",
    ] {
        assert!(kinds.contains(want), "no golden case renders {want}: {kinds:?}");
    }
}

#[test]
fn windows_scripts_parse_as_powershell() {
    for (file, _) in CASES {
        for node in render(&spec(file)).iter().filter(|n| n.os.is_windows()) {
            let script = part(node, "bootstrap.ps1");
            let errors = tools::powershell_errors(script);
            assert!(errors.is_empty(), "{}: {errors:#?}", node.group);
            let user_data = String::from_utf8(node.user_data.clone()).unwrap();
            assert!(user_data.starts_with("<powershell>\n") && user_data.ends_with("</powershell>\n<persist>true</persist>\n"));
            // What the node runs is the same program without comments.
            let shipped = shipped_windows_script(node);
            assert!(shipped.len() < script.len() * 3 / 4, "{}: comment lines were not removed", node.group);
            assert!(tools::powershell_errors(&shipped).is_empty(), "{}", node.group);
            assert_eq!(
                tools::powershell_code(&shipped),
                tools::powershell_code(script),
                "{}: the shipped script is another program",
                node.group
            );
        }
    }
}

/// The script a Windows node's loader unpacks: base64 of gzip in `loader.ps1`.
pub fn shipped_windows_script(node: &hybrid::bootstrap::NodeBootstrap) -> String {
    use base64::Engine;
    let loader = part(node, "loader.ps1");
    let packed = loader.split('\'').find(|s| s.len() > 1000).expect("the loader carries the script in one quoted string");
    let gz = base64::engine::general_purpose::STANDARD.decode(packed).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    text
}

#[test]
fn cloud_configs_pass_cloud_init_schema() {
    let dir = scratch("cloud-init");
    for (file, case) in CASES {
        for node in render(&spec(file)).iter().filter(|n| !n.os.is_windows()) {
            let path = dir.join(format!("{case}-{}.yaml", node.group));
            fs::write(&path, part(node, "cloud-config.yaml")).unwrap();
            if let Err(e) = tools::cloud_init_schema(&path) {
                panic!("{}: cloud-init schema: {e}", path.display());
            }
        }
    }
}

/// The schema check must be able to fail: a cloud-config with a misspelt
/// module key is rejected by the same tool.
#[test]
fn cloud_init_schema_rejects_a_broken_config() {
    let path = scratch("cloud-init-bad").join("bad.yaml");
    fs::write(&path, "#cloud-config\nwrite_files:\n  - path: 42\n    permissions: [1]\n").unwrap();
    assert!(tools::cloud_init_schema(&path).is_err());
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let dir = scratch("shellcheck");
    for (file, case) in CASES {
        for node in render(&spec(file)).iter().filter(|n| !n.os.is_windows()) {
            let path = dir.join(format!("{case}-{}.sh", node.group));
            fs::write(&path, part(node, "bootstrap.sh")).unwrap();
            if let Err(e) = tools::shellcheck(&path, &[]) {
                panic!("{}:\n{e}", path.display());
            }
        }
    }
}

/// The YAML inside cloud-init round-trips exactly, and the kubeadm and CNI
/// configs carry the values Windows needs.
#[test]
fn embedded_configs_round_trip_and_carry_windows_settings() {
    for (file, case) in CASES {
        let spec = spec(file);
        for node in render(&spec).iter().filter(|n| !n.os.is_windows()) {
            let docs = tools::yaml_to_json(part(node, "cloud-config.yaml")).unwrap();
            let files = docs[0]["write_files"].as_array().unwrap();
            let content = |path: &str| files.iter().find(|f| f["path"] == path).map(|f| f["content"].as_str().unwrap().to_string());
            assert_eq!(content("/etc/hybrid/kubeadm.yaml.in").as_deref(), Some(part(node, "kubeadm.yaml")), "{case}/{}", node.group);
            assert_eq!(content("/opt/hybrid/bootstrap.sh").as_deref(), Some(part(node, "bootstrap.sh")));
            let is_cp = node.group == "control-plane";
            // No node gets CA files in its user data: kubeadm's join
            // preflight (FileAvailable--etc-kubernetes-pki-ca.crt) refuses a
            // worker that has ca.crt (workers pin the CA by its hash), and the
            // control plane reads CA and token from SSM at boot, a worker
            // its join token, so DescribeInstanceAttribute shows no secret.
            assert_eq!(content("/etc/kubernetes/pki/ca.crt"), None, "{case}/{}: ca.crt", node.group);
            assert_eq!(content("/etc/kubernetes/pki/ca.key"), None, "{case}/{}: ca.key", node.group);
            assert!(content("/etc/hybrid/fetch-secrets.py").is_some(), "every node fetches what it needs from SSM");
            // The uncompressed user data (EC2 may get it gzipped).
            let user_data = part(node, "cloud-config.yaml");
            assert!(
                !user_data.contains("PRIVATE KEY") && !user_data.contains(test_secrets().token.secret()),
                "{case}/{}: a secret in the user data",
                node.group
            );
            let kubeadm = tools::yaml_to_json(part(node, "kubeadm.yaml")).unwrap();
            if is_cp {
                assert_eq!(kubeadm[0]["bootstrapTokens"][0]["token"], "__HYBRID_BOOTSTRAP_TOKEN__");
                assert_eq!(kubeadm[1]["networking"]["podSubnet"], spec.network.pod_cidr.to_string());
                assert_eq!(kubeadm[1]["encryptionAlgorithm"], "ECDSA-P256");
                let cni = tools::yaml_to_json(&content("/etc/hybrid/cni.yaml").unwrap()).unwrap();
                if *case == "calico" {
                    let net = &cni[0]["spec"]["calicoNetwork"];
                    assert_eq!(net["bgp"], "Disabled");
                    assert_eq!(net["windowsDataplane"], "HNS");
                    assert_eq!(net["ipPools"][0]["encapsulation"], "VXLAN");
                    assert_eq!(cni[0]["spec"]["serviceCIDRs"][0], spec.network.service_cidr.to_string());
                    assert_eq!(cni[2]["data"]["KUBERNETES_SERVICE_HOST"], spec.api_server_ip().unwrap().to_string());
                } else {
                    let net_conf: serde_json::Value = serde_json::from_str(cni[0]["data"]["net-conf.json"].as_str().unwrap()).unwrap();
                    assert_eq!(net_conf["Backend"], serde_json::json!({"Type": "vxlan", "VNI": 4096, "Port": 4789}));
                    assert_eq!(net_conf["Network"], spec.network.pod_cidr.to_string());
                }
            } else {
                let join = &kubeadm[0];
                assert_eq!(join["discovery"]["bootstrapToken"]["caCertHashes"][0], test_secrets().ca_cert_hash());
                let pool = spec.pools.iter().find(|p| p.name == node.group).unwrap();
                assert_eq!(join["nodeRegistration"]["taints"].as_array().unwrap().len(), pool.taints.len());
            }
        }
    }
}

/// Values that would be code in any of the three languages reach the
/// rendered files as one literal each. Validation rejects them already; this
/// proves the renderer alone is safe too, so the model is built by hand.
#[test]
fn hostile_values_stay_literals() {
    let hostile = "a'b\u{2018}c\u{2019}d\u{201A}e\u{201B}f$(Invoke-Evil)`g\"h\ni; Invoke-Evil -Force; '";
    let mut spec = spec("clusters/dev.toml");
    spec.name = hostile.to_string();
    spec.cni.version = hostile.to_string();
    for pool in &mut spec.pools {
        pool.labels.insert("game.example.com/evil".into(), hostile.into());
        pool.taints.push(Taint { key: "evil".into(), value: hostile.into(), effect: TaintEffect::NoExecute });
    }
    let nodes = render(&spec);

    let win = nodes.iter().find(|n| n.os.is_windows()).unwrap();
    let script = part(win, "bootstrap.ps1");
    assert!(tools::powershell_errors(script).is_empty(), "{:#?}", tools::powershell_errors(script));
    let commands = tools::powershell_nodes(script, "command_name");
    assert!(!commands.iter().any(|c| c.eq_ignore_ascii_case("Invoke-Evil")), "a value became a command: {commands:?}");
    let literals: Vec<String> = tools::powershell_nodes(script, "verbatim_string_characters").iter().map(|s| unquote_ps(s)).collect();
    let labels_arg = format!("--node-labels=game.example.com/evil={hostile},game.example.com/role=tools");
    assert!(literals.contains(&labels_arg), "the labels argument is not one literal: {literals:#?}");

    let linux = nodes.iter().find(|n| n.group == "control-plane").unwrap();
    let sh = part(linux, "bootstrap.sh");
    // bash itself evaluates the script's assignments (everything from the
    // first one up to the first function): the value comes back unchanged.
    let assignments = &sh[sh.find("ROLE=").unwrap()..sh.find("\nlog()").unwrap()];
    let value = tools::bash(&format!("{assignments}\nprintf %s \"$CNI_VERSION\""));
    assert_eq!(value, hostile);
    let sh_path = scratch("hostile").join("bootstrap.sh");
    fs::write(&sh_path, sh).unwrap();
    // SC2016 (expressions do not expand in single quotes) and SC1112 (a
    // typographic quote inside quotes) describe exactly what is tested here.
    if let Err(e) = tools::shellcheck(&sh_path, &["--exclude=SC2016,SC1112"]) {
        panic!("{e}");
    }

    let docs = tools::yaml_to_json(part(linux, "cloud-config.yaml")).unwrap();
    assert!(docs[0]["write_files"].is_array());
    let kubeadm = tools::yaml_to_json(part(linux, "kubeadm.yaml")).unwrap();
    assert_eq!(kubeadm[1]["clusterName"], hostile);
    let worker = nodes.iter().find(|n| n.group == "game-servers").unwrap();
    let join = tools::yaml_to_json(part(worker, "kubeadm.yaml")).unwrap();
    let taints = join[0]["nodeRegistration"]["taints"].as_array().unwrap();
    assert!(taints.iter().any(|t| t["value"] == hostile));
}

/// PowerShell's verbatim string characters with doubled quotes undone.
fn unquote_ps(s: &str) -> String {
    let inner = s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).unwrap_or(s);
    let mut out = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') && chars.peek() == Some(&c) {
            chars.next();
        }
    }
    out
}

#[test]
fn powershell_agent_tags_in_values_are_refused() {
    let mut spec = spec("clusters/dev.toml");
    spec.pools[1].labels.insert("x".into(), "</powershell><script>calc</script>".into());
    let err = Renderer::new(&spec, &Templates::builtin()).cluster(&test_secrets()).unwrap_err();
    assert!(matches!(&err, BootstrapError::AgentTagInScript { pool, .. } if pool == "win-tools"), "{err}");
}

/// The largest sensible pool (many labels and taints, all at Kubernetes'
/// length limits) fits; far beyond that, the error names the node and size.
#[test]
fn user_data_size_limit() {
    let mut spec = spec("clusters/dev.toml");
    for pool in &mut spec.pools {
        for i in 0..20 {
            pool.labels.insert(format!("game.example.com/label-{i:02}-{}", "k".repeat(40)), "v".repeat(63));
        }
        for i in 0..10 {
            pool.taints.push(Taint { key: format!("game.example.com/taint-{i}"), value: "t".repeat(63), effect: TaintEffect::NoSchedule });
        }
    }
    for node in render(&spec) {
        assert!(node.user_data.len() <= USER_DATA_LIMIT, "{} is {} bytes", node.group, node.user_data.len());
    }

    // Values that do not compress (Windows scripts and large cloud-configs
    // travel gzip-compressed).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = |n: usize| -> String {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(seed >> 33) as usize % 36])
            })
            .collect()
    };
    for pool in &mut spec.pools {
        for i in 0..400 {
            pool.labels.insert(format!("game.example.com/more-{i:03}-{}", noise(40)), noise(63));
        }
    }
    match Renderer::new(&spec, &Templates::builtin()).cluster(&test_secrets()) {
        Err(BootstrapError::TooLarge { node, size, .. }) => {
            assert!(node.contains("game-servers") || node.contains("win-tools"), "{node}");
            assert!(size > USER_DATA_LIMIT);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// Linux user data over the limit is gzip-compressed (cloud-init reads gzip)
/// instead of failing, as long as the compressed size fits.
#[test]
fn large_cloud_config_is_gzipped() {
    let mut spec = spec("clusters/dev.toml");
    spec.pools.retain(|p| p.os == NodeOs::Linux(hybrid::model::LinuxDistro::Ubuntu2404));
    for i in 0..120 {
        spec.pools[0].labels.insert(format!("game.example.com/label-{i:03}-{}", "k".repeat(40)), "v".repeat(63));
    }
    let nodes = render(&spec);
    let worker = nodes.iter().find(|n| n.group == "game-servers").unwrap();
    assert!(worker.compressed && worker.user_data.starts_with(&[0x1f, 0x8b]));
    assert!(part(worker, "cloud-config.yaml").len() > USER_DATA_LIMIT);
    use std::io::Read;
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&worker.user_data[..]).read_to_string(&mut plain).unwrap();
    assert_eq!(plain, part(worker, "cloud-config.yaml"));
}

#[test]
fn render_command_is_byte_identical_across_runs_and_matches_golden() {
    let (a, b) = (scratch("render-a"), scratch("render-b"));
    for out in [&a, &b] {
        let res =
            hybrid(&["render", "tests/fixtures/render/calico.toml", "--out", out.to_str().unwrap(), "--secrets", "tests/fixtures/pki"]);
        assert_eq!(res.status.code(), Some(0), "{}", text(&res.stderr));
        let stdout = text(&res.stdout);
        assert!(stdout.contains("wrote user data for 6 node(s)"), "{stdout}");
        assert!(!stdout.contains(test_secrets().token.secret()), "the token leaked to stdout");
    }
    let listing = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = Vec::new();
        for node in fs::read_dir(d).unwrap() {
            let node = node.unwrap().path();
            for f in fs::read_dir(&node).unwrap() {
                let f = f.unwrap().path();
                v.push((f.strip_prefix(d).unwrap().display().to_string(), fs::read(&f).unwrap()));
            }
        }
        v.sort();
        v
    };
    let (la, lb) = (listing(&a), listing(&b));
    // control plane: 6 parts + user-data; Linux nodes 5 + 1 each (fetch-secrets.py too); Windows nodes 4 + 1 each.
    assert_eq!(la.len(), 7 + 2 * 6 + 3 * 5);
    assert_eq!(la, lb);
    assert_eq!(fs::read(a.join("win2022-1/user-data")).unwrap(), fs::read(root().join("tests/golden/calico/win2022/user-data")).unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(a.join("control-plane/user-data")).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn render_with_template_override_and_strict_undefined() {
    let tpl = scratch("templates");
    fs::create_dir_all(tpl.join("windows")).unwrap();
    fs::write(tpl.join("windows/bootstrap.ps1.tera"), "Write-Host {{ cluster | ps }}\n").unwrap();
    let out = scratch("render-override");
    let res = hybrid(&["render", "clusters/dev.toml", "--out", out.to_str().unwrap(), "--templates", tpl.to_str().unwrap()]);
    assert_eq!(res.status.code(), Some(0), "{}", text(&res.stderr));
    assert_eq!(fs::read_to_string(out.join("win-tools-0/bootstrap.ps1")).unwrap(), "Write-Host 'dev'\n");

    fs::write(tpl.join("windows/bootstrap.ps1.tera"), "Write-Host {{ no_such_value | ps }}\n").unwrap();
    let res = hybrid(&["render", "clusters/dev.toml", "--out", out.to_str().unwrap(), "--templates", tpl.to_str().unwrap()]);
    assert_eq!(res.status.code(), Some(1));
    let err = text(&res.stderr);
    assert!(err.contains("windows/bootstrap.ps1") && err.contains("no_such_value") && err.contains("bug in hybrid"), "{err}");
}

/// Every `{{ … }}` in every template ends in a quoting filter: a raw value
/// in a script is a review failure, caught here rather than by a reader.
#[test]
fn templates_quote_every_value() {
    let mut offences = Vec::new();
    for (name, text) in hybrid::bootstrap::templates::BUILTIN {
        let mut rest = *text;
        while let Some(start) = rest.find("{{") {
            let end = rest[start..].find("}}").map(|e| start + e).unwrap_or_else(|| panic!("{name}: unclosed {{{{"));
            let expr = rest[start + 2..end].trim();
            let last = expr.rsplit('|').next().unwrap().trim();
            let filter = last.split('(').next().unwrap().trim();
            if !expr.contains('|') || !hybrid::bootstrap::filters::QUOTING_FILTERS.contains(&filter) {
                offences.push(format!("{name}: {{{{ {expr} }}}}"));
            }
            rest = &rest[end + 2..];
        }
    }
    assert!(offences.is_empty(), "values without a quoting filter: {offences:#?}");
}

/// The PowerShell checks above must be able to fail: a raw value does show
/// up as a command, and broken syntax does show up as an error.
#[test]
fn powershell_checks_detect_injection_and_syntax_errors() {
    let injected = "$Args = @('--node-labels=a'); Stop-Computer -Force; '')\n";
    assert!(tools::powershell_nodes(injected, "command_name").contains(&"Stop-Computer"));
    assert!(!tools::powershell_errors("$X = 'unterminated\nfunction F( {\n").is_empty());
}

/// kubelet refuses to start with self-applied node-role.kubernetes.io
/// labels (NodeRestriction), so they stay out of its flags; apply puts them
/// on the Node through the API instead.
#[test]
fn labels_kubelet_may_not_set_go_through_the_api() {
    let mut spec = spec("clusters/dev.toml");
    for pool in &mut spec.pools {
        pool.labels.insert("node-role.kubernetes.io/game".into(), String::new());
    }
    let nodes = render(&spec);
    let win = nodes.iter().find(|n| n.os.is_windows()).unwrap();
    assert!(!part(win, "bootstrap.ps1").contains("node-role"), "kubelet flags must not carry node-role labels");
    assert!(part(win, "bootstrap.ps1").contains("--node-labels=game.example.com/role=tools"));
    let linux = nodes.iter().find(|n| n.group == "game-servers").unwrap();
    assert!(!part(linux, "kubeadm.yaml").contains("node-role"));
    let node = serde_json::json!({ "metadata": { "name": "n", "labels": {} }, "spec": {} });
    let patch = hybrid::cluster::objects::node_patch(&serde_json::from_value(node).unwrap(), &spec.pools[1]).unwrap();
    assert_eq!(patch["metadata"]["labels"]["node-role.kubernetes.io/game"], "");
}

/// The project's own scripts (setup, test, demo, bench, the AWS release
/// check) pass shellcheck like the rendered ones.
#[test]
fn project_scripts_pass_shellcheck() {
    let mut checked = 0;
    for entry in fs::read_dir(root().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sh") {
            // Scripts source each other by path from the project root.
            let source_path = format!("--source-path={}", root().display());
            if let Err(e) = tools::shellcheck(&path, &["-x", &source_path]) {
                panic!("{}:\n{e}", path.display());
            }
            checked += 1;
        }
    }
    tools::shellcheck(&root().join(".ci/run"), &[]).unwrap();
    assert!(checked >= 5, "only {checked} scripts found");
}

/// `render --out` never writes through a symbolic link: a link where a file
/// goes is replaced (its target is untouched), a link where a node folder
/// goes is refused.
#[test]
fn render_never_writes_through_symlinks() {
    let out = scratch("render-links");
    let outside = scratch("render-links-outside");
    let victim = outside.join("precious.txt");
    fs::write(&victim, "do not touch").unwrap();
    fs::create_dir_all(out.join("control-plane")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("control-plane/user-data")).unwrap();
    let res = hybrid(&["render", "tests/fixtures/render/calico.toml", "--out", out.to_str().unwrap(), "--secrets", "tests/fixtures/pki"]);
    assert_eq!(res.status.code(), Some(0), "{}", text(&res.stderr));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "do not touch");
    let meta = fs::symlink_metadata(out.join("control-plane/user-data")).unwrap();
    assert!(meta.file_type().is_file(), "the link was replaced by a private file");
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o600, "the target was not chmodded");

    fs::remove_dir_all(out.join("linux-0")).ok();
    std::os::unix::fs::symlink(&outside, out.join("linux-0")).unwrap();
    let res = hybrid(&["render", "tests/fixtures/render/calico.toml", "--out", out.to_str().unwrap(), "--secrets", "tests/fixtures/pki"]);
    assert_eq!(res.status.code(), Some(1));
    assert!(text(&res.stderr).contains("is a symbolic link"), "{}", text(&res.stderr));
    assert!(!outside.join("user-data").exists(), "nothing was written through the folder link");
}
