//! `drydock validate`: every problem of a pipeline file, with code frames,
//! or as JSON objects for tools.

use std::path::PathBuf;

use drydock_core::pipeline;

use crate::error::CliError;

/// Arguments of `drydock validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The pipeline file.
    #[arg(value_name = "PIPELINE")]
    pub pipeline: PathBuf,
    /// Print one JSON object on stdout: `{"valid": true, …}` or
    /// `{"valid": false, "problems": [{"file", "line", "col", "message"}, …]}`.
    #[arg(long)]
    pub json: bool,
}

/// `drydock validate`.
pub async fn validate(args: ValidateArgs) -> Result<u8, CliError> {
    let path = &args.pipeline;
    let git = super::run::git_info(&pipeline::find_repo_root(path)).await;
    let loaded = super::run::load_pipeline(path, "validate", &git);
    if !args.json {
        let pipeline = loaded?;
        outln!(
            "{}: valid ({}, {}, {})",
            path.display(),
            crate::report::plural(pipeline.tiers.len() as u64, "tier"),
            crate::report::plural(pipeline.builds.len() as u64, "build"),
            crate::report::plural(pipeline.services.len() as u64, "service")
        );
        return Ok(0);
    }
    let (json, code) = match loaded {
        Ok(pipeline) => (
            serde_json::json!({
                "valid": true,
                "file": path.display().to_string(),
                "pipeline": pipeline.name,
                "tiers": pipeline.tiers.len(),
                "builds": pipeline.builds.len(),
                "services": pipeline.services.len(),
            }),
            0,
        ),
        Err(e) => {
            let failure = e.run_failure();
            (
                serde_json::json!({
                    "valid": false,
                    "file": path.display().to_string(),
                    "error": failure.message,
                    "problems": failure.problems,
                }),
                e.code,
            )
        }
    };
    outln!("{json}");
    Ok(code)
}
