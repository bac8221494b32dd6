//! The pipeline file: YAML model, validation with file:line:col, interpolation.
//!
//! [`load`] reads a pipeline file (see `docs/pipeline-format.md`), checks every
//! key and reference, interpolates `${VAR}` in string values and resolves
//! repository paths, so that a [`Pipeline`] is valid before anything runs.
//! Problems come back as [`PipelineError`], displayed `FILE:LINE:COL: MESSAGE`.

pub mod compose;
mod dockerfile;
pub mod dotenv;
mod duration;
mod error;
mod interpolate;
mod limits;
mod model;
mod paths;
pub mod schema;
pub(crate) mod text;
pub(crate) mod tree;
pub(crate) mod validate;

use std::path::{Path, PathBuf};

pub use duration::{format_duration, parse_duration};
pub use error::{Diagnostic, PipelineError};
pub use interpolate::{interpolate, Vars, BUILTIN_VARS};
pub use limits::{
    MAX_ARGS, MAX_ENV_ENTRIES, MAX_EXEC_BYTES, MAX_SERVICES, MAX_STEPS, MAX_STEPS_PER_TIER,
    MAX_TIERS,
};
pub use model::{
    BuildSpec, ComposeOrigin, CopySpec, ImageSource, Mount, NeedSpec, Pipeline, Probe, ReadySpec,
    ReleaseSpec, Reuse, SecretExpose, SecretSource, SecretSpec, ServiceSpec, StepRun, StepSpec,
    TierSpec, When, DEFAULT_READY_INTERVAL, DEFAULT_READY_TIMEOUT, DEFAULT_STEP_TIMEOUT,
};
pub use validate::{is_registry, is_tag};

/// Reads and validates the pipeline file at `path`.
///
/// Repository paths in the file are resolved against `repo_root` (see
/// [`find_repo_root`]); `vars` feeds `${NAME}` interpolation. Errors name
/// `path` as given. At most [`text::MAX_FILE_BYTES`] bytes are read; see
/// [`parse_bytes`] for what else is refused.
pub fn load(path: &Path, repo_root: &Path, vars: &Vars) -> Result<Pipeline, PipelineError> {
    let bytes = text::read_limited(path).map_err(|source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_bytes(&bytes, &path.to_string_lossy(), repo_root, vars)
}

/// Validates the bytes of a pipeline file: UTF-8 only (a leading byte order
/// mark is skipped), no control characters, at most 1 MiB, then as
/// [`parse_str`]. Every refusal is located (`FILE:LINE:COL`).
pub fn parse_bytes(
    bytes: &[u8],
    file_label: &str,
    repo_root: &Path,
    vars: &Vars,
) -> Result<Pipeline, PipelineError> {
    let source = text::check_bytes(bytes)
        .map_err(|e| PipelineError::Syntax(diagnostic(file_label, e.pos, e.message)))?;
    parse_str(source, file_label, repo_root, vars)
}

/// Validates pipeline YAML held in memory; `file_label` names it in errors
/// and becomes [`Pipeline::source_path`].
///
/// The text and the tree are bounded (see [`crate::yaml`]): control
/// characters, a byte order mark other than a leading one, more than 1 MiB,
/// nesting, alias expansion, entries and scalar lengths over drydock's limits
/// are errors at the place they occur.
pub fn parse_str(
    source: &str,
    file_label: &str,
    repo_root: &Path,
    vars: &Vars,
) -> Result<Pipeline, PipelineError> {
    let root = parse_document(
        source,
        file_label,
        "the pipeline file is empty (expected a mapping with version, name and tiers)",
    )?;
    let repo_root = repo_root
        .canonicalize()
        .map_err(|source| PipelineError::Io {
            path: repo_root.to_path_buf(),
            source,
        })?;
    // Limits and validation problems together, in file order.
    let mut over = limits::check(&root);
    match validate::Checker::new(vars, repo_root).check(&root, PathBuf::from(file_label)) {
        Ok(pipeline) if over.is_empty() => Ok(pipeline),
        Ok(_) => Err(invalid(file_label, over)),
        Err((mut errors, foreign)) => {
            errors.append(&mut over);
            errors.sort_by_key(|e| e.0);
            Err(invalid_with(file_label, errors, foreign))
        }
    }
}

fn diagnostic(file_label: &str, pos: tree::Pos, message: String) -> Diagnostic {
    Diagnostic {
        file: file_label.to_string(),
        line: pos.line,
        col: pos.col,
        message,
    }
}

/// Parses a document into a positioned tree; an empty one is invalid.
pub(crate) fn parse_document(
    source: &str,
    file_label: &str,
    empty_message: &str,
) -> Result<tree::Node, PipelineError> {
    match tree::parse(source) {
        Ok(Some(root)) => Ok(root),
        Ok(None) => Err(invalid(
            file_label,
            vec![(tree::Pos::START, empty_message.to_string())],
        )),
        Err(e) => Err(PipelineError::Syntax(diagnostic(
            file_label, e.pos, e.message,
        ))),
    }
}

/// All problems found, in order, as one error.
pub(crate) fn invalid(file_label: &str, errors: Vec<(tree::Pos, String)>) -> PipelineError {
    invalid_with(file_label, errors, Vec::new())
}

/// All problems found: those of the file `file_label` in order, then those
/// located in other files it names.
fn invalid_with(
    file_label: &str,
    errors: Vec<(tree::Pos, String)>,
    foreign: Vec<Diagnostic>,
) -> PipelineError {
    let all: Vec<Diagnostic> = errors
        .into_iter()
        .map(|(pos, message)| diagnostic(file_label, pos, message))
        .chain(foreign)
        .collect();
    PipelineError::Invalid {
        first: all[0].clone(),
        all,
    }
}

/// The repository root for a pipeline file: the nearest ancestor directory
/// holding `.git` (a directory, or a file as in worktrees); else the parent
/// of the nearest ancestor directory named `pipelines`; else the file's
/// directory. Relative paths are made absolute first (without resolving
/// symlinks).
pub fn find_repo_root(pipeline_path: &Path) -> PathBuf {
    let abs = std::path::absolute(pipeline_path).unwrap_or_else(|_| pipeline_path.to_path_buf());
    let dir = abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| abs.clone());
    if let Some(git_root) = dir.ancestors().find(|d| d.join(".git").exists()) {
        return git_root.to_path_buf();
    }
    if let Some(parent) = dir
        .ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "pipelines"))
        .and_then(Path::parent)
    {
        return parent.to_path_buf();
    }
    dir
}

#[cfg(test)]
mod tests;
