//! Exit codes, named once. Documented in README.md ("Exit codes"):
//! 0 = success (or the gate passed), 1 = a verdict of failure (the gate rejected the
//! candidate), 2 = an error (bad input, bad usage, the harness could not run).

/// A process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(pub i32);

pub const SUCCESS: ExitCode = ExitCode(0);
/// A verdict of failure: the gate rejected the candidate, or a check failed.
pub const FAILURE: ExitCode = ExitCode(1);
/// Something went wrong: bad usage, unreadable input, a harness that cannot run.
pub const ERROR: ExitCode = ExitCode(2);

/// Every error that reaches `main` exits 2: verdicts are `Ok(FAILURE)`, never errors.
pub fn code_for_error(_e: &anyhow::Error) -> ExitCode {
    ERROR
}

/// An error with a hint for the person reading it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    Hinted { message: message.into(), hint: hint.into() }.into()
}
