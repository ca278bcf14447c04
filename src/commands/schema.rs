//! `hybrid schema`: the generated JSON Schema or Markdown key reference.

use crate::cli::SchemaFormat;
use crate::config::schema::{json_schema, markdown_reference};
use crate::error::Result;

pub fn schema(format: SchemaFormat) -> Result<()> {
    match format {
        SchemaFormat::Json => println!("{}", serde_json::to_string_pretty(&json_schema()).expect("a JSON value serializes")),
        SchemaFormat::Markdown => print!("{}", markdown_reference()),
    }
    Ok(())
}
