//! The command line: one module per subcommand, each holding its flags (a
//! clap `Args` struct) beside the function that runs it (cargo's
//! commands → ops split, ripgrep's flags next to their use). A command reads
//! what it needs, calls the pure core, and writes to the terminal; `shared`
//! holds what several of them need. `run` dispatches.

pub mod apply;
pub mod bake;
pub mod completions;
pub mod destroy;
pub mod extend;
pub mod images;
pub mod kubeconfig;
pub mod list;
pub mod logs;
pub mod man;
pub mod plan;
pub mod reap;
pub mod render;
pub mod schema;
pub mod shared;
pub mod status;
pub mod token;
pub mod validate;
pub mod verify;
pub mod versions;

use clap::{Parser, Subcommand};

use crate::error::Result;
use shared::terminal::{Color, ProgressMode, Ui};

const ABOUT: &str = "Declarative hybrid Linux/Windows Kubernetes clusters on AWS";

const LONG_ABOUT: &str = "\
hybrid provisions a Kubernetes cluster with a Linux control plane and Linux and Windows Server \
worker pools on EC2 from one desired-state TOML file (see clusters/dev.toml).

It knows what Windows nodes need (Calico or flannel VXLAN with VNI 4096 on UDP 4789, strict \
IPAM affinity, containerd, matching Windows builds, taints) and `hybrid validate` reports every \
mistake in a file before any money is spent.";

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 failure (including an invalid file), 2 changes present (plan \
--detailed-exitcode), 64 usage error, 130 interrupted.";

#[derive(Debug, Parser)]
#[command(name = "hybrid", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// When to colour output.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,

    /// How to show progress: live on a terminal (auto), always live, or timestamped lines (plain, also when CI is set).
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, global = true)]
    pub progress: ProgressMode,

    /// Print the number of AWS API calls by operation when done.
    #[arg(long, global = true)]
    pub api_stats: bool,

    /// Only results and errors: no progress lines while waiting.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Also log every AWS and Kubernetes call hybrid makes (operation, method and path; never a
    /// secret) to stderr. RUST_LOG filters finer, as tracing reads it: e.g. RUST_LOG=hybrid::aws=debug,
    /// or aws_smithy_runtime=debug for the SDK's own view.
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,

    /// The AWS profile to use (~/.aws/config: SSO, credential_process, roles), as the AWS CLI's --profile (default: AWS_PROFILE).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// The AWS region for commands without a cluster file (reap and list take several); a file's own region always wins.
    #[arg(long = "region", global = true, value_name = "REGION")]
    pub regions: Vec<String>,

    /// At most this many AWS calls in flight at once (retries included). hybrid asks everything that waits for
    /// nothing else at once, so a plan costs a few round trips even from far away; lower this if your account's
    /// API rate is shared and busy.
    #[arg(long, global = true, value_name = "N", default_value_t = crate::adapters::in_flight::DEFAULT_PARALLELISM, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..=100), usize::from))]
    pub parallelism: usize,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands; each one's help text sits on its `Args` struct.
#[derive(Debug, Subcommand)]
pub enum Command {
    Validate(validate::Args),
    Render(render::Args),
    Plan(plan::Args),
    Apply(apply::Args),
    Destroy(destroy::Args),
    Bake(bake::Args),
    Images(images::Args),
    Verify(verify::Args),
    Logs(logs::Args),
    Status(status::Args),
    Reap(reap::Args),
    Extend(extend::Args),
    List(list::Args),
    Kubeconfig(kubeconfig::Args),
    Token(token::Args),
    Schema(schema::Args),
    Versions(versions::Args),
    Completions(completions::Args),
    Man(man::Args),
}

/// Logs to stderr through tracing: what RUST_LOG asks for, else hybrid's
/// own calls with --verbose, else nothing (progress has its own display).
fn init_logging(verbose: bool, color: Color) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::new(spec),
        _ if verbose => EnvFilter::new("hybrid=debug"),
        _ => return,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(color == Color::Always)
        .try_init();
}

/// Runs a command; returns the exit code for a success (plan's
/// --detailed-exitcode can make that 2).
pub fn run(cli: Cli) -> Result<i32> {
    init_logging(cli.verbose, cli.color);
    let mut ui = Ui::new(cli.color, cli.api_stats, cli.progress);
    ui.quiet = cli.quiet;
    shared::connect::set_global(shared::connect::Global {
        profile: cli.profile.clone(),
        regions: cli.regions.clone(),
        parallelism: cli.parallelism,
    });
    let zero = |r: Result<()>| r.map(|()| 0);
    match cli.command {
        Command::Validate(args) => zero(validate::run(&ui, &args).map(drop)),
        Command::Render(args) => zero(render::run(&ui, &args)),
        Command::Schema(args) => zero(schema::run(&args)),
        Command::Versions(args) => zero(block_on(versions::run(&ui, &args))),
        Command::Completions(args) => zero(completions::run(&args, <Cli as clap::CommandFactory>::command())),
        Command::Man(args) => zero(man::run(&args, <Cli as clap::CommandFactory>::command()).map(drop)),
        Command::Plan(args) => block_on(plan::run(&ui, &args)),
        Command::Apply(args) => zero(block_on(apply::run(&ui, &args))),
        Command::Destroy(args) => zero(block_on(destroy::run(&ui, &args))),
        Command::Bake(args) => zero(block_on(bake::run(&ui, &args))),
        Command::Images(args) => zero(block_on(images::run(&args))),
        Command::Verify(args) => zero(block_on(verify::run(&ui, &args))),
        Command::Logs(args) => zero(block_on(logs::run(&ui, &args))),
        Command::Status(args) => zero(block_on(status::run(&ui, &args))),
        Command::Reap(args) => zero(block_on(reap::run(&args))),
        Command::Extend(args) => zero(block_on(extend::run(&ui, &args))),
        Command::List(args) => zero(block_on(list::run(&args))),
        Command::Kubeconfig(args) => zero(block_on(kubeconfig::run(&ui, &args))),
        Command::Token(args) => zero(block_on(token::run(&ui, &args))),
    }
}

/// Runs a command's future. One thread is enough: the work is waiting on
/// AWS, and pools run concurrently as futures on it. The runtime is left
/// without waiting for a question still reading standard input (a Ctrl-C
/// at a prompt ends the run; the read has nothing left to answer).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
    let out = rt.block_on(f);
    rt.shutdown_background();
    out
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command, with the command it belongs to.
    fn all_args(cmd: &clap::Command, out: &mut Vec<(clap::Command, clap::Arg)>) {
        for a in cmd.get_arguments() {
            out.push((cmd.clone(), a.clone()));
        }
        for sub in cmd.get_subcommands() {
            all_args(sub, out);
        }
    }

    /// One duration syntax: every visible flag or argument that takes a
    /// time is a DURATION read by `model::duration` (so `1h30m` and `2d`
    /// work wherever a time is asked for), and none asks for bare seconds
    /// or minutes.
    #[test]
    fn every_time_taking_argument_reads_the_one_duration_syntax() {
        let mut args = Vec::new();
        all_args(&super::Cli::command(), &mut args);
        let mut durations = 0;
        for (cmd, arg) in args.iter().filter(|(_, a)| !a.is_hide_set()) {
            let names: Vec<String> = arg.get_value_names().unwrap_or_default().iter().map(|n| n.to_string()).collect();
            let id = format!("{} {}", cmd.get_name(), arg.get_id());
            let timeish = ["timeout", "ttl", "duration"].iter().any(|w| arg.get_id().as_str().contains(w));
            assert!(!names.iter().any(|n| ["SECONDS", "MINUTES", "MS"].contains(&n.as_str())), "{id} asks for a bare unit: {names:?}");
            if names.iter().any(|n| n == "DURATION") {
                durations += 1;
                // The argument alone in a command of its own, as clap reads it.
                let alone = clap::Command::new("t").arg(arg.clone().required(false));
                for text in ["1h30m", "2d"] {
                    let line: Vec<String> = match arg.get_long() {
                        Some(long) => vec!["t".into(), format!("--{long}"), text.into()],
                        None => vec!["t".into(), text.into()],
                    };
                    let parsed = alone.clone().try_get_matches_from(line);
                    assert!(parsed.is_ok(), "{id} does not read {text}: {:?}", parsed.err());
                }
            } else {
                assert!(!timeish, "{id} takes a time but not as a DURATION: {names:?}");
            }
        }
        assert!(durations >= 8, "only {durations} DURATION arguments found: the walk no longer sees the commands");
    }
}
