//! Errors at the CLI edge: a message for people and a distinct exit code.

use std::process::ExitCode;

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
}

impl CliError {
    /// Invalid configuration or usage (exit 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_INVALID,
            message: message.into(),
        }
    }

    /// Infrastructure failure (exit 3).
    pub fn infra(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_INFRA,
            message: message.into(),
        }
    }

    /// A failure of the thing asked for (exit 1).
    pub fn failed(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_FAILED,
            message: message.into(),
        }
    }

    /// Prints the error on stderr and returns its exit code.
    pub fn report(self) -> ExitCode {
        let style = console::Style::new().red().bold();
        eprintln!("{} {}", style.apply_to("error:"), self.message);
        ExitCode::from(self.code)
    }
}

impl From<drydock_core::engine::EngineError> for CliError {
    fn from(e: drydock_core::engine::EngineError) -> Self {
        CliError::infra(e.to_string())
    }
}
