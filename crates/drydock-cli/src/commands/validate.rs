//! `drydock validate`: every problem of a pipeline file, with code frames,
//! or as JSON objects for tools.

use std::path::{Path, PathBuf};

use drydock_core::pipeline::{self, PipelineError};

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

/// `3 tiers`, `1 tier`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The message of an invalid pipeline: each problem as `error:
/// FILE:LINE:COL: message` with its code frame, then how many there are.
/// (Formatted: print it as it is.)
pub fn render_error(path: &Path, error: &PipelineError) -> (String, bool) {
    let problems = error.diagnostics();
    if problems.is_empty() {
        return (error.to_string(), false);
    }
    let mut text = crate::diagnostics::render(&problems, crate::stderr_colours());
    if problems.len() > 1 {
        text.push_str(&format!(
            "\n{}: {}",
            path.display(),
            count(problems.len(), "problem")
        ));
    }
    (text.trim_end().to_string(), true)
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
            count(pipeline.tiers.len(), "tier"),
            count(pipeline.builds.len(), "build"),
            count(pipeline.services.len(), "service")
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
