//! The bubblewrap command line for one trial: the system folders read-only (secrets
//! masked, see `view`), the granted host paths read-only, the private copy and scratch
//! folder writable, nothing else of the host; its own pid (and maybe network) namespace,
//! no capabilities.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The shell script bwrap runs, with the report pipe as fd 3 (bwrap writes its
/// `--info-fd` JSON to the same pipe as fd 4, which it closes in the sandbox): it reports that the sandbox is up, runs the harness with
/// fd 3 closed, then counts the processes the harness left behind (everything in the pid
/// namespace but bwrap's init, pid 1, and this shell) before they are killed with the
/// namespace. `$0` is the shell, `$1` the harness command. Only shell builtins run after
/// the harness, so the count costs no fork. SIGTERM gets a no-op trap (not an ignore,
/// which the harness would inherit) so that on timeout the harness, not the wrapper, gets
/// the grace period.
pub(crate) const WRAPPER: &str = r#"trap : TERM; echo started >&3; "$0" -c "$1" 3>&-; s=$?; set -- /proc/[0-9]*; echo "left $(($# - 2))" >&3; exit $s"#;

/// Flags shared by the probe and trials.
pub(crate) fn base_args(root: bool, userns: bool, netns: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc"]
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
    for path in super::view::system_paths() {
        match path {
            super::view::SystemPath::Dir(dir) => {
                args.extend([OsString::from("--ro-bind"), dir.clone().into(), dir.into()]);
            }
            super::view::SystemPath::Link { path, target } => {
                args.extend([OsString::from("--symlink"), target.into(), path.into()]);
            }
        }
    }
    // A secret file is replaced by an empty one, a secret folder by an empty folder.
    let (files, dirs) = super::view::secrets();
    for file in files {
        args.extend([OsString::from("--ro-bind"), "/dev/null".into(), file.into()]);
    }
    for dir in dirs {
        args.extend([OsString::from("--tmpfs"), dir.into()]);
    }
    args.extend(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"].map(OsString::from));
    args
}

/// What one trial's sandbox looks like.
pub(crate) struct Layout<'a> {
    pub(crate) root: bool,
    pub(crate) userns: bool,
    pub(crate) netns: bool,
    /// Host paths granted read-only (the user's virtualenv, `read` of the manifest).
    pub(crate) readable: &'a [PathBuf],
    /// Writable binds, in order (scratch folder, private copy, then the spec's).
    pub(crate) writable: &'a [PathBuf],
    pub(crate) cwd: &'a Path,
}

/// Arguments for `bwrap`, up to but not including `--` and the command.
pub(crate) fn trial_args(layout: &Layout<'_>) -> Vec<OsString> {
    let mut args = base_args(layout.root, layout.userns, layout.netns);
    // Binds come after the empty /tmp so that the trial's folders under it appear.
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
    // The host pid of the sandbox's init, so that we can wait for the namespace to die.
    args.extend(["--info-fd", "4"].map(OsString::from));
    args
}

/// What came through the report pipe: bwrap's `--info-fd` JSON and the wrapper's lines.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// The wrapper ran, so the sandbox was set up.
    pub(crate) started: bool,
    /// Processes of the harness still alive when it exited.
    pub(crate) left: usize,
    /// Host pid of the sandbox's init (bwrap's `child-pid`).
    pub(crate) init_pid: Option<i32>,
}

pub(crate) fn parse_report(text: &str) -> Report {
    let started = text.lines().any(|line| line == "started");
    let left = text
        .lines()
        .find_map(|line| line.strip_prefix("left ").and_then(|n| n.trim().parse::<i64>().ok()))
        .unwrap_or(0);
    let init_pid = text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("\"child-pid\":")?;
        value.trim().trim_end_matches(',').parse().ok()
    });
    Report { started, left: left.max(0) as usize, init_pid }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_bwrap_report_parsing() {
        let check = |text: &str, started, left, init_pid| {
            assert_eq!(parse_report(text), Report { started, left, init_pid }, "{text:?}");
        };
        let info = "{\n    \"child-pid\": 24167,\n    \"pid-namespace\": 4026532178\n}\n";
        check(&format!("{info}started\nleft 2\n"), true, 2, Some(24167));
        check("started\n", true, 0, None);
        check("", false, 0, None);
        check("started\nleft -1\n", true, 0, None);
    }
}
