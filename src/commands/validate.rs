//! `hybrid validate FILE`: load, print every diagnostic, then a one-line
//! summary. Other commands load their file through `shared::files::load_spec`
//! so they report problems exactly the same way.

use std::path::PathBuf;

use super::shared::files::load_spec;
use super::shared::terminal::Ui;
use crate::error::{Error, Result};
use crate::model::{ClusterSpec, NodeOs};

#[derive(Debug, clap::Args)]
#[command(
    about = "Check a cluster file and report every problem at once",
    long_about = "\
Check a cluster file and report every problem at once, each with file:line:column, the key, \
what is wrong and how to fix it. Warnings (questionable but legal choices) do not fail the check.

Besides syntax, unknown keys and types, it checks what breaks Windows nodes at run time: \
IP-in-IP or CrossSubnet with Calico, VNI below 4096 or a VXLAN port other than 4789, \
strictAffinity off, flannel DirectRouting, Windows versions the CNI does not support, Windows \
control planes, Graviton instance types for Windows, overlapping CIDRs, pod networks too small \
for the node count, labels and taints Kubernetes or kubelet would refuse, and values that could \
break out of a generated script.

Supported Kubernetes minors, and what works with them: `hybrid versions --help` and src/versions/.",
    after_help = "Exits 0 when the file is valid (warnings allowed), 1 when it has errors.

With --output json it prints one object: {\"file\", \"valid\", \"errors\", \"warnings\", \
\"summary\" (null when invalid), \"problems\": [{\"severity\": \"error\"|\"warning\", \"key\", \"line\", \
\"column\", \"message\", \"help\"}]}; line and column count from 1 in the file as --set flags \
leave it (null when a problem has no place, e.g. a missing section)."
)]
pub struct Args {
    /// The desired-state file, e.g. clusters/dev.toml.
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    /// Output format: text for people, json for scripts (one document on
    /// stdout; every key in docs/json.md).
    #[arg(long, value_enum, default_value_t = super::shared::args::OutputFormat::Text)]
    pub output: super::shared::args::OutputFormat,
}

pub fn run(ui: &Ui, args: &Args) -> Result<ClusterSpec> {
    if args.output == super::shared::args::OutputFormat::Json {
        return run_json(args);
    }
    let spec = load_spec(ui, &args.file, &args.set)?;
    println!("{}: valid: {}", args.file.display(), summary(&spec));
    Ok(spec)
}

/// Every problem as a structured record, for editors and CI.
fn run_json(args: &Args) -> Result<ClusterSpec> {
    use crate::config::problems::{Severity, line_col};
    let (source, _) = super::shared::files::read_with_sets(&args.file, &args.set)?;
    let loaded = crate::config::load(&source);
    let problems: Vec<serde_json::Value> = loaded
        .diagnostics
        .iter()
        .map(|d| {
            let place = d.span.as_ref().map(|s| line_col(&source, s.start));
            serde_json::json!({
                "severity": if d.severity == Severity::Error { "error" } else { "warning" },
                "key": d.key,
                "line": place.map(|p| p.0),
                "column": place.map(|p| p.1),
                "message": d.message,
                "help": d.help,
            })
        })
        .collect();
    let file = args.file.display().to_string();
    let (errors, warnings) = (loaded.errors().count(), loaded.warnings().count());
    let report = serde_json::json!({
        "file": file,
        "valid": loaded.spec.is_some(),
        "errors": errors,
        "warnings": warnings,
        "summary": loaded.spec.as_ref().map(summary),
        "problems": problems,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("JSON serializes"));
    loaded.spec.ok_or(Error::Invalid { file, errors, warnings })
}

fn summary(spec: &ClusterSpec) -> String {
    let (mut linux, mut windows) = (0, 0);
    for p in &spec.pools {
        match p.os {
            NodeOs::Linux(_) => linux += p.count,
            NodeOs::Windows(_) => windows += p.count,
        }
    }
    format!(
        "cluster {} in {}, Kubernetes {}, {} {}: 1 control plane, {} pool(s) with {linux} Linux and {windows} Windows node(s){}",
        spec.name,
        spec.region,
        spec.kubernetes_version,
        spec.cni.plugin.name(),
        spec.cni.encapsulation.name(),
        spec.pools.len(),
        spec.ttl.map_or(String::new(), |t| format!(", expires {t} after creation")),
    )
}
