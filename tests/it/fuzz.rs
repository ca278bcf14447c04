//! Property tests: whatever the bytes, loading a file returns diagnostics and
//! never panics; a valid file plus any single-line edit still loads.

use proptest::prelude::*;

use hybrid::config::load;
use hybrid::config::problems::Renderer;

const DEV: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/clusters/dev.toml"));

fn load_and_render(src: &str) {
    let loaded = load(src);
    // Rendering walks spans into the source: it must cope with every span.
    let r = Renderer::new(false);
    for d in &loaded.diagnostics {
        let _ = r.render("f.toml", src, d);
    }
    assert_eq!(loaded.spec.is_some(), loaded.errors().next().is_none());
}

/// TOML-looking lines built from the file's own vocabulary, so the loader's
/// deeper passes (not just the TOML parser) see the garbage.
fn toml_line() -> impl Strategy<Value = String> {
    let keys = prop::sample::select(vec![
        "name",
        "region",
        "kubernetes_version",
        "ttl",
        "vpc_cidr",
        "pod_cidr",
        "service_cidr",
        "admin_cidrs",
        "plugin",
        "encapsulation",
        "vni",
        "port",
        "os",
        "count",
        "labels",
        "taints",
        "disk_gb",
        "max_pods",
        "tags",
        "bgp",
    ]);
    let values = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("true".to_string()),
        Just("[\"a=b:NoSchedule\", 1]".to_string()),
        Just("{ \"a/b\" = \"$(x)\" }".to_string()),
        Just("\"10.0.0.0/8\"".to_string()),
        Just("\"windows-2025\"".to_string()),
        "[ -~]{0,12}",
    ];
    let headers =
        prop::sample::select(vec!["[cluster]", "[network]", "[cni]", "[control_plane]", "[[pool]]", "[[cluster]]", "[pool]", "[x.y]"]);
    prop_oneof![
        3 => (keys, values).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => headers.prop_map(str::to_string),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,400}") {
        load_and_render(&src);
    }

    #[test]
    fn arbitrary_bytes_as_lossy_text_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        load_and_render(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn toml_shaped_garbage_never_panics(lines in prop::collection::vec(toml_line(), 0..30)) {
        load_and_render(&lines.join("\n"));
    }

    #[test]
    fn any_single_line_edit_of_a_valid_file_never_panics(line in 0usize..45, replacement in toml_line()) {
        let mut lines: Vec<String> = DEV.lines().map(str::to_string).collect();
        let i = line % lines.len();
        lines[i] = replacement;
        load_and_render(&lines.join("\n"));
    }
}
