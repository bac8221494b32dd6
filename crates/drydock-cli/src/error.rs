//! Errors at the CLI edge: a message for people and a distinct exit code.

use std::process::ExitCode;

use drydock_core::events::{FailureKind, RunFailure};

/// Exit code: a step failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: invalid configuration or usage.
pub const EXIT_INVALID: u8 = 2;
/// Exit code: the engine or environment failed.
pub const EXIT_INFRA: u8 = 3;

/// An error to show and the exit code that goes with it.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
    /// The error for tools (`run --json`'s final `run_finished`): kind,
    /// message and, for an invalid pipeline, every located problem. Boxed:
    /// it is large and errors travel by value through every command.
    pub failure: Option<Box<RunFailure>>,
    /// The message is already formatted as `error: …` lines (with code
    /// frames): `report` prints it as it is.
    pub formatted: bool,
}

impl CliError {
    fn new(code: u8, message: String) -> Self {
        CliError {
            code,
            message,
            failure: None,
            formatted: false,
        }
    }

    /// Invalid configuration or usage (exit 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(EXIT_INVALID, message.into())
    }

    /// A command line that cannot be used (exit 2; `invalid_usage` for
    /// tools, where [`CliError::invalid`] is `invalid_configuration`).
    pub fn usage(message: impl Into<String>) -> Self {
        let mut e = Self::invalid(message);
        e.failure = Some(Box::new(RunFailure {
            kind: FailureKind::InvalidUsage,
            message: e.message.clone(),
            location: None,
            problems: Vec::new(),
        }));
        e
    }

    /// Infrastructure failure (exit 3).
    pub fn infra(message: impl Into<String>) -> Self {
        Self::new(EXIT_INFRA, message.into())
    }

    /// A failure of the thing asked for (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(EXIT_FAILED, message.into())
    }

    /// The error for tools: the detailed one when known, else one of the
    /// kind that goes with the exit code.
    pub fn run_failure(&self) -> RunFailure {
        self.failure
            .as_deref()
            .cloned()
            .unwrap_or_else(|| RunFailure {
                kind: match self.code {
                    EXIT_FAILED => FailureKind::StepFailed,
                    EXIT_INVALID => FailureKind::InvalidConfiguration,
                    130 => FailureKind::Interrupted,
                    _ => FailureKind::Infrastructure,
                },
                message: self.message.clone(),
                location: None,
                problems: Vec::new(),
            })
    }

    /// Prints the error on stderr and returns its exit code.
    pub fn report(self) -> ExitCode {
        if self.formatted {
            errln!("{}", self.message);
        } else {
            let style = console::Style::new().for_stderr().red().bold();
            errln!("{} {}", style.apply_to("error:"), self.message);
        }
        ExitCode::from(self.code)
    }
}

impl From<drydock_core::engine::EngineError> for CliError {
    fn from(e: drydock_core::engine::EngineError) -> Self {
        CliError::infra(e.to_string())
    }
}
