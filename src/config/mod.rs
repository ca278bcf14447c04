//! Desired-state files: TOML text in, a typed `ClusterSpec` plus every
//! problem found out. Three passes, each in its own module and all pure:
//! `read` checks structure against the key table in `keys`, `build` parses
//! values into domain types, `rules` checks what only the whole spec shows
//! (Windows and CNI compatibility, overlaps, capacity). Nothing here touches
//! the file system; the caller hands in the text.

pub mod build;
pub mod instance_types;
pub mod keys;
pub mod overrides;
pub mod problems;
pub mod read;
pub mod rules;
pub mod schema;

use crate::config::problems::{Diagnostic, Diagnostics, Severity};
use crate::model::ClusterSpec;

/// EC2 refuses user data over 16 KB: render every node with stand-in
/// secrets (the same size as real ones) and report an oversized one at its
/// pool, before `plan` or `apply` get that far.
fn user_data_fits(spec: &ClusterSpec, spans: &read::Spans, diags: &mut Diagnostics) {
    let templates = crate::bootstrap::Templates::builtin();
    let secrets = crate::bootstrap::fingerprint_secrets();
    let mut check = |key: String, result: Result<crate::bootstrap::NodeBootstrap, crate::bootstrap::BootstrapError>| {
        if let Err(e @ crate::bootstrap::BootstrapError::TooLarge { .. }) = result {
            let span = spans.get(&key);
            diags.error(&key, span, e.to_string()).help("remove labels or taints, or shorten them; each one travels in the user data");
        }
    };
    let renderer = crate::bootstrap::Renderer::new(spec, &templates);
    check("control_plane".into(), renderer.control_plane(&secrets));
    for (i, pool) in spec.pools.iter().enumerate() {
        let key = if pool.labels.is_empty() { format!("pool[{i}].name") } else { format!("pool[{i}].labels") };
        check(key, renderer.pool(pool, &secrets));
    }
}

/// The outcome of loading a file: the spec when it has no errors, and all
/// diagnostics (errors and warnings) in file order.
#[derive(Debug)]
pub struct Loaded {
    pub spec: Option<ClusterSpec>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning)
    }
}

/// Just the cluster's name and region, from a file that may not validate
/// any more (a Kubernetes minor past its end of life, say): all `destroy`
/// needs. `None` when the file has no readable `[cluster]` name and region.
pub fn identity(source: &str) -> Option<(String, String)> {
    let doc: toml::Table = source.parse().ok()?;
    let cluster = doc.get("cluster")?.as_table()?;
    let name = cluster.get("name")?.as_str()?.to_string();
    let region = cluster.get("region")?.as_str()?.to_string();
    (!name.is_empty() && !region.is_empty()).then_some((name, region))
}

pub fn load(source: &str) -> Loaded {
    let mut diags = Diagnostics::default();
    let mut spans = read::Spans::default();
    let sections = read::read(source, &mut diags, &mut spans);
    let spec = build::build(&sections, &mut build::Ctx { diags: &mut diags, spans: &mut spans });
    let syntax_ok = !diags.items().iter().any(|d| d.key == "toml");
    if syntax_ok {
        rules::check(&spec, &spans, &mut diags);
    }
    if !diags.has_errors() {
        user_data_fits(&spec, &spans, &mut diags);
    }
    let ok = !diags.has_errors();
    let mut diagnostics = diags.into_vec();
    // File order reads best; diagnostics without a position go last.
    diagnostics.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
    Loaded { spec: ok.then_some(spec), diagnostics }
}
