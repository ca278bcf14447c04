//! `hybrid versions FILE`: the resolved compatibility matrix for one file.

use std::path::PathBuf;

use super::shared::files::load_spec;
use super::shared::pins::{self, Outcome};
use super::shared::terminal::Ui;
use crate::error::Result;
use crate::versions;

#[derive(Debug, clap::Args)]
#[command(
    about = "Show what each node of the file installs, at which version, from where, checked how",
    long_about = "\
Resolve the file against hybrid's compatibility matrix (src/versions/) and print, for the control \
plane and each kind of worker, every file its bootstrap downloads (version, URL, and how the \
download is verified before use: a SHA-256 recorded in hybrid, the release's checksum file, or \
GitHub's digest of the release asset) and the images it pulls.

Supported Kubernetes minors: 1.35, 1.36 (the default) and 1.37. An invalid file is reported as \
by `hybrid validate`.

With --check, ask the internet whether each of those exists now: every file at its URL \
(following redirects as a node does) and the source of its checksum, every image in its registry \
(the anonymous token flow) with a variant for each platform that pulls it: linux/amd64, and \
windows/amd64 of each pool's Windows build (a pool's prepull list included). plan and apply run \
the same check before launching anything. A set of pins that passed is remembered for a week; \
requests honour HTTPS_PROXY and NO_PROXY and give up after a minute in all.",
    after_help = "Exits 0 for a valid file (with --check: and every pin exists), 1 otherwise."
)]
pub struct Args {
    /// The desired-state file, e.g. clusters/dev.toml.
    pub file: PathBuf,
    #[command(flatten)]
    pub set: super::shared::args::SetArgs,
    /// Check that every pinned download and image exists for its platforms.
    #[arg(long)]
    pub check: bool,
    /// Output format: text for people, json for scripts (one document on
    /// stdout; every key in docs/json.md).
    #[arg(long, value_enum, default_value_t = super::shared::args::OutputFormat::Text)]
    pub output: super::shared::args::OutputFormat,
}

pub async fn run(ui: &Ui, args: &Args) -> Result<()> {
    let spec = load_spec(ui, &args.file, &args.set)?;
    if args.output == super::shared::args::OutputFormat::Json {
        let mut v = versions::report::to_json(&spec);
        if args.check {
            let report = pins::check(&spec).await?;
            let results: Vec<serde_json::Value> = report
                .results
                .iter()
                .map(|(what, subject, outcome)| {
                    let (name, why) = match outcome {
                        Outcome::Ok => ("ok", None),
                        Outcome::Missing(why) => ("missing", Some(why)),
                        Outcome::Unreachable(why) => ("unknown", Some(why)),
                    };
                    serde_json::json!({ "what": what, "subject": subject, "outcome": name, "why": why })
                })
                .collect();
            v["check"] = serde_json::json!({ "cached": report.cached, "requests": report.requests, "results": results });
            println!("{}", serde_json::to_string_pretty(&v).expect("JSON serializes"));
            if report.failures().next().is_some() {
                return Err(report.error());
            }
        } else {
            println!("{}", serde_json::to_string_pretty(&v).expect("JSON serializes"));
        }
        return Ok(());
    }
    print!("{}", versions::report::to_text(&spec));
    if !args.check {
        return Ok(());
    }
    let report = pins::check(&spec).await?;
    println!(
        "\nChecking {} pinned download(s) and image(s){}:",
        report.results.len(),
        if report.cached { " (remembered: they passed within a week)" } else { "" }
    );
    for (what, subject, outcome) in &report.results {
        match outcome {
            Outcome::Ok => println!("  ok       {what:<5} {subject}"),
            Outcome::Missing(why) => println!("  MISSING  {what:<5} {subject}\n           {why}"),
            Outcome::Unreachable(why) => println!("  UNKNOWN  {what:<5} {subject}\n           {why}"),
        }
    }
    if report.failures().next().is_some() {
        return Err(report.error());
    }
    println!("\nEvery pin exists ({} request(s)).", report.requests);
    Ok(())
}
