//! `hybrid plan FILE`: the diff between the file and AWS, changing nothing.

use std::path::Path;

use super::Ui;
use super::cluster::{cloud, load_templates, prepare, prepare_offline, print_api_stats};
use super::validate::load_spec;
use crate::cli::{AwsArgs, OutputFormat};
use crate::error::{EXIT_CHANGES, Result};
use crate::show;

pub struct PlanOptions<'a> {
    pub aws: &'a AwsArgs,
    pub offline: bool,
    pub detailed_exitcode: bool,
    pub output: OutputFormat,
    pub templates: Option<&'a Path>,
    pub api_stats: bool,
}

/// Returns the exit code: 0, or 2 for changes with --detailed-exitcode.
pub async fn plan(ui: &Ui, file: &Path, opts: &PlanOptions<'_>) -> Result<i32> {
    let spec = load_spec(ui, file)?;
    let templates = load_templates(opts.templates)?;
    let plan = if opts.offline {
        prepare_offline(&spec, &templates)?
    } else {
        let cloud = cloud(&spec, opts.aws).await;
        let prepared = prepare(&cloud, &spec, &templates).await;
        if opts.api_stats {
            print_api_stats(&cloud);
        }
        prepared?.plan
    };
    match opts.output {
        OutputFormat::Text => print!("{}", show::plan_text(&plan)),
        OutputFormat::Json => println!("{}", show::plan_json(&plan)),
    }
    Ok(if opts.detailed_exitcode && !plan.is_empty() { EXIT_CHANGES } else { 0 })
}
