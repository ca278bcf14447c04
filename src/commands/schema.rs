//! `hybrid schema`: the generated JSON Schema or Markdown key reference.

use crate::config::schema::{json_schema, markdown_reference};
use crate::error::Result;

#[derive(Debug, clap::Args)]
#[command(
    about = "Print the file format as JSON Schema (or the Markdown key reference)",
    long_about = "\
Print a JSON Schema of the cluster file, for editor completion (e.g. with the Even Better TOML \
extension: `#:schema ./hybrid.schema.json` at the top of the file). With --format markdown, \
print the key reference that clusters/README.md contains."
)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = SchemaFormat::Json)]
    pub format: SchemaFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFormat {
    Json,
    Markdown,
}

pub fn run(args: &Args) -> Result<()> {
    match args.format {
        SchemaFormat::Json => println!("{}", serde_json::to_string_pretty(&json_schema()).expect("a JSON value serializes")),
        SchemaFormat::Markdown => print!("{}", markdown_reference()),
    }
    Ok(())
}
