//! The bubblewrap command line for one trial: a read-only view of the host, the private
//! copy and scratch folder writable, the real home hidden, its own pid (and maybe network)
//! namespace, no capabilities.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The shell script bwrap runs: it reports that the sandbox is up, runs the harness with
/// fd 3 closed, then counts the processes the harness left behind (everything in the pid
/// namespace but bwrap's init, pid 1, and this shell) before they are killed with the
/// namespace. `$0` is the shell, `$1` the harness command. Only shell builtins run after
/// the harness, so the count costs no fork. SIGTERM gets a no-op trap (not an ignore,
/// which the harness would inherit) so that on timeout the harness, not the wrapper, gets
/// the grace period.
pub(crate) const WRAPPER: &str = r#"trap : TERM; echo started >&3; "$0" -c "$1" 3>&-; s=$?; set -- /proc/[0-9]*; echo "left $(($# - 2))" >&3; exit $s"#;

/// Flags shared by the probe and trials.
pub(crate) fn base_args(root: bool, userns: bool, netns: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    if userns {
        args.push("--unshare-user".into());
    }
    if netns {
        args.push("--unshare-net".into());
    }
    if root {
        // bwrap started by root keeps every capability unless told otherwise.
        args.extend(["--cap-drop", "ALL"].map(OsString::from));
    }
    args.extend(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"].map(OsString::from));
    args
}

/// What one trial's sandbox looks like.
pub(crate) struct Layout<'a> {
    pub(crate) root: bool,
    pub(crate) userns: bool,
    pub(crate) netns: bool,
    /// Folders replaced by an empty tmpfs (the real home, the host's temp folder).
    pub(crate) hidden: &'a [PathBuf],
    pub(crate) readable: &'a [PathBuf],
    /// Writable binds, in order (scratch folder, private copy, then the spec's).
    pub(crate) writable: &'a [PathBuf],
    pub(crate) cwd: &'a Path,
}

/// Arguments for `bwrap`, up to but not including `--` and the command.
pub(crate) fn trial_args(layout: &Layout<'_>) -> Vec<OsString> {
    let mut args = base_args(layout.root, layout.userns, layout.netns);
    for dir in layout.hidden {
        args.push("--tmpfs".into());
        args.push(dir.into());
    }
    // Binds come after the tmpfs mounts so that paths under a hidden folder reappear.
    for path in layout.readable {
        args.push("--ro-bind".into());
        args.push(path.into());
        args.push(path.into());
    }
    for path in layout.writable {
        args.push("--bind".into());
        args.push(path.into());
        args.push(path.into());
    }
    args.push("--chdir".into());
    args.push(layout.cwd.into());
    args
}

/// Parses what the wrapper wrote to fd 3: whether the harness started, and how many of
/// its processes were still alive when it exited.
pub(crate) fn parse_report(text: &str) -> (bool, usize) {
    let started = text.lines().any(|line| line == "started");
    let left = text
        .lines()
        .find_map(|line| {
            line.strip_prefix("left ")
                .and_then(|n| n.trim().parse::<i64>().ok())
        })
        .unwrap_or(0);
    (started, left.max(0) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_bwrap_report_parsing() {
        assert_eq!(parse_report("started\nleft 2\n"), (true, 2));
        assert_eq!(parse_report("started\n"), (true, 0));
        assert_eq!(parse_report(""), (false, 0));
        assert_eq!(parse_report("started\nleft -1\n"), (true, 0));
    }
}
