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

/// An error of a command that ran on the store at `db`: when SQLite found its disk full
/// (`SQLITE_FULL`, which names no file), it says which store and what to do. SQLite rolled
/// the interrupted transaction back, so the store holds what it held before that write.
pub fn on_store(e: anyhow::Error, db: &std::path::Path) -> anyhow::Error {
    let dir = db.parent().unwrap_or(db);
    // SQLITE_FULL; or an I/O error (SQLITE_IOERR and its extended codes, such as growing the
    // shared-memory file when opening) on a device with no room left.
    let full = e.chain().any(|c| {
        let code = c
            .downcast_ref::<sqlx::Error>()
            .and_then(|s| s.as_database_error())
            .and_then(|d| d.code())
            .and_then(|code| code.parse::<i64>().ok());
        match code {
            Some(13) => true,
            Some(code) if code & 0xff == 10 => free_bytes(dir).is_some_and(|free| free < 64 * 1024),
            _ => false,
        }
    });
    if !full {
        return e;
    }
    hinted(
        format!(
            "the store `{}` could not be written: no space left on its device (SQLite: database or disk is full); \
             the interrupted write was rolled back",
            db.display()
        ),
        format!(
            "free space on the device of `{}` (or pass --db on another), then run the command again",
            dir.display()
        ),
    )
}

/// Bytes an unprivileged write can still use on the file system of `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}
