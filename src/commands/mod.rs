//! One function per subcommand: reads what it needs from disk, calls the
//! pure core, writes to the terminal. `run` dispatches.

mod apply;
mod cluster;
mod destroy;
mod kubeconfig;
mod logs;
mod plan;
mod reap;
mod render;
mod schema;
mod status;
mod validate;
mod verify;

use std::io::IsTerminal;

use crate::cli::{Cli, Color, Command};
use crate::error::Result;

/// Writes a file only its owner can read: created with mode 0600 (never
/// briefly world-readable), and tightened if it existed before. For user
/// data, keys, tokens and kubeconfigs.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let err = |source| crate::error::Error::Write { path: path.to_path_buf(), source };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    f.write_all(bytes).map_err(err)
}

/// Output settings shared by every command.
pub struct Ui {
    pub color: bool,
}

impl Ui {
    pub fn new(choice: Color) -> Self {
        let color = match choice {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        Self { color }
    }
}

/// Runs a command; returns the exit code for a success (plan's
/// --detailed-exitcode can make that 2).
pub fn run(cli: Cli) -> Result<i32> {
    let ui = Ui::new(cli.color);
    let api_stats = cli.api_stats;
    match cli.command {
        Command::Plan { file, aws, cluster, offline, detailed_exitcode, output, templates } => {
            let opts = plan::PlanOptions {
                aws: &aws,
                cluster: &cluster,
                offline,
                detailed_exitcode,
                output,
                templates: templates.as_deref(),
                api_stats,
            };
            runtime().block_on(plan::plan(&ui, &file, &opts))
        }
        Command::Kubeconfig { file, aws, output, api_server } => {
            runtime().block_on(kubeconfig::kubeconfig(&ui, &file, &aws, output.as_deref(), api_server.as_deref())).map(|_| 0)
        }
        Command::Apply { file, aws, cluster, lock, yes, templates } => {
            let opts = apply::ApplyOptions { aws: &aws, cluster: &cluster, lock: &lock, yes, templates: templates.as_deref(), api_stats };
            runtime().block_on(apply::apply(&ui, &file, &opts)).map(|_| 0)
        }
        Command::Verify { file, aws, api_server, check_timeout, poll_ms } => {
            runtime().block_on(verify::verify(&ui, &file, &aws, api_server.as_deref(), check_timeout, poll_ms)).map(|_| 0)
        }
        Command::Logs { file, node, aws, out, identity, ssh_user, ssh_host, lines } => {
            let opts = logs::LogsOptions {
                out: out.as_deref(),
                identity: identity.as_deref(),
                ssh_user: ssh_user.as_deref(),
                ssh_host: ssh_host.as_deref(),
                lines,
            };
            runtime().block_on(logs::logs(&ui, &file, &node, &aws, &opts)).map(|_| 0)
        }
        Command::Status { file, aws, api_server } => runtime().block_on(status::status(&ui, &file, &aws, api_server.as_deref())).map(|_| 0),
        Command::Reap { aws, regions, dry_run, yes } => runtime().block_on(reap::reap(&aws, &regions, dry_run, yes)).map(|_| 0),
        Command::Destroy { file, aws, lock, yes } => {
            runtime().block_on(destroy::destroy(&ui, &file, &aws, &lock, yes, api_stats)).map(|_| 0)
        }
        other => run_sync(&ui, other).map(|_| 0),
    }
}

/// One thread is enough: the work is waiting on AWS, and pools run
/// concurrently as futures on it.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts")
}

fn run_sync(ui: &Ui, command: Command) -> Result<()> {
    match command {
        Command::Validate { file } => validate::validate(ui, &file).map(|_| ()),
        Command::Schema { format } => schema::schema(format),
        Command::Render { file, out, secrets, templates } => render::render(ui, &file, &out, secrets.as_deref(), templates.as_deref()),
        Command::Plan { .. }
        | Command::Apply { .. }
        | Command::Destroy { .. }
        | Command::Kubeconfig { .. }
        | Command::Reap { .. }
        | Command::Status { .. }
        | Command::Verify { .. }
        | Command::Logs { .. } => {
            unreachable!("async commands are dispatched in run")
        }
    }
}
