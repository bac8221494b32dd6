//! Errors of loading a pipeline file.

use std::path::PathBuf;

/// One located problem: `FILE:LINE:COL: MESSAGE` (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file as given to `load` (or the label given to `parse_str`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong / what was expected.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Why a pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The pipeline file (or the repository root) could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed YAML.
    #[error("{0}")]
    Syntax(Diagnostic),
    /// The YAML is well-formed but does not describe a valid pipeline.
    ///
    /// Displays the first problem (in file order); [`PipelineError::diagnostics`]
    /// gives all of them.
    #[error("{first}")]
    Invalid {
        /// The first problem in file order.
        first: Diagnostic,
        /// Every problem found, in file order (`first` included).
        all: Vec<Diagnostic>,
    },
}

impl PipelineError {
    /// 1-based (line, column) of the (first) problem, when it has one.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            PipelineError::Io { .. } => None,
            PipelineError::Syntax(d) | PipelineError::Invalid { first: d, .. } => {
                Some((d.line, d.col))
            }
        }
    }

    /// The message of the (first) problem, without the location prefix.
    pub fn message(&self) -> String {
        match self {
            PipelineError::Io { source, .. } => format!("cannot read: {source}"),
            PipelineError::Syntax(d) | PipelineError::Invalid { first: d, .. } => d.message.clone(),
        }
    }

    /// Every located problem (empty for [`PipelineError::Io`]).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            PipelineError::Io { .. } => Vec::new(),
            PipelineError::Syntax(d) => vec![d.clone()],
            PipelineError::Invalid { all, .. } => all.clone(),
        }
    }
}
