//! One function per subcommand: reads what it needs from disk, calls the
//! pure core, writes to the terminal. `run` dispatches.

mod render;
mod schema;
mod validate;

use std::io::IsTerminal;

use crate::cli::{Cli, Color, Command};
use crate::error::Result;

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

pub fn run(cli: Cli) -> Result<()> {
    let ui = Ui::new(cli.color);
    match cli.command {
        Command::Validate { file } => validate::validate(&ui, &file).map(|_| ()),
        Command::Schema { format } => schema::schema(format),
        Command::Render { file, out, secrets, templates } => render::render(&ui, &file, &out, secrets.as_deref(), templates.as_deref()),
    }
}
