//! A pids cgroup per trial: the one process limit that binds root (`RLIMIT_NPROC` does not),
//! and a list of every process the trial made, so none survives it. Works with cgroup v2
//! and with the v1 `pids` controller.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// What `probe` found.
pub(crate) struct Probe {
    pub(crate) pids_parent: Option<PathBuf>,
    pub(crate) v2_writable: bool,
    pub(crate) error: Option<String>,
}

/// One trial's cgroup; removed (best effort) on drop, reused through `release`.
pub(crate) struct TrialCgroup {
    dir: PathBuf,
    /// `<dir>/cgroup.procs`, ready for the child to write `0` into between fork and exec.
    pub(crate) procs_path: CString,
    /// `pids.events` "max" count when this trial began (a pooled cgroup keeps counting).
    refused_before: u64,
}

struct Mount {
    point: PathBuf,
    root: String,
    v2: bool,
}

pub(crate) fn probe() -> Probe {
    let mounts = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => parse_mounts(&text),
        Err(err) => {
            return Probe {
                pids_parent: None,
                v2_writable: false,
                error: Some(format!("cannot read /proc/self/mountinfo: {err}")),
            };
        }
    };
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut v2_writable = false;
    let mut errors = Vec::new();
    let mut pids_parent = None;
    // cgroup v2 first: it is what current systems use.
    for mount in mounts.iter().filter(|m| m.v2) {
        let Some(path) = own_path(&own, |controllers| controllers.is_empty()) else {
            continue;
        };
        let parent = join_cgroup(mount, &path);
        match try_child(&parent, false) {
            Ok(()) => v2_writable = true,
            Err(err) => {
                errors.push(format!("v2 {}: {err}", parent.display()));
                continue;
            }
        }
        if enable_pids(&parent) {
            match try_child(&parent, true) {
                Ok(()) => {
                    pids_parent = Some(parent);
                    break;
                }
                Err(err) => errors.push(format!("v2 {}: {err}", parent.display())),
            }
        } else {
            errors.push(format!("v2 {}: pids controller not enabled", parent.display()));
        }
    }
    if pids_parent.is_none() {
        for mount in mounts.iter().filter(|m| !m.v2) {
            let Some(path) = own_path(&own, |controllers| controllers.split(',').any(|c| c == "pids")) else {
                continue;
            };
            let parent = join_cgroup(mount, &path);
            match try_child(&parent, true) {
                Ok(()) => {
                    pids_parent = Some(parent);
                    break;
                }
                Err(err) => errors.push(format!("v1 {}: {err}", parent.display())),
            }
        }
    }
    if let Some(parent) = &pids_parent {
        remove_stale(parent);
    }
    let error = match (&pids_parent, errors.is_empty()) {
        (Some(_), _) => None,
        (None, true) => Some("no cgroup hierarchy with the pids controller is mounted".to_string()),
        (None, false) => Some(errors.join("; ")),
    };
    Probe { pids_parent, v2_writable, error }
}

fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split(' ').collect();
        let rest: Vec<&str> = right.split(' ').collect();
        if fields.len() < 5 || rest.len() < 3 {
            continue;
        }
        let (fstype, options) = (rest[0], rest[2]);
        let v2 = fstype == "cgroup2";
        if !(v2 || fstype == "cgroup" && options.split(',').any(|o| o == "pids")) {
            continue;
        }
        mounts.push(Mount { point: PathBuf::from(unescape(fields[4])), root: unescape(fields[3]), v2 });
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Our cgroup path in the hierarchy whose controller list matches.
fn own_path(own: &str, matches: impl Fn(&str) -> bool) -> Option<String> {
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        matches(controllers).then(|| path.to_string())
    })
}

fn join_cgroup(mount: &Mount, path: &str) -> PathBuf {
    // In a container the mount's root is our own cgroup; paths are relative to it.
    let relative = path.strip_prefix(mount.root.as_str()).unwrap_or(path);
    mount.point.join(relative.trim_start_matches('/'))
}

/// Turns the pids controller on for children of `parent` (cgroup v2), if it is not already.
fn enable_pids(parent: &Path) -> bool {
    let control = parent.join("cgroup.subtree_control");
    if std::fs::read_to_string(&control).is_ok_and(|text| text.split_whitespace().any(|c| c == "pids")) {
        return true;
    }
    // Fails when `parent` holds processes itself (v2's "no internal processes" rule).
    std::fs::OpenOptions::new().write(true).open(&control).and_then(|mut file| file.write_all(b"+pids")).is_ok()
}

/// Makes and removes a child cgroup, checking that it has `pids.max` when `need_pids`.
fn try_child(parent: &Path, need_pids: bool) -> Result<(), String> {
    let dir = parent.join(format!("autoharness-probe-{}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|err| format!("cannot create a cgroup: {err}"))?;
    let has_pids = dir.join("pids.max").exists();
    let _ = std::fs::remove_dir(&dir);
    if need_pids && !has_pids {
        return Err("no pids.max in a new cgroup".to_string());
    }
    Ok(())
}

/// Removes the trial cgroups left by autoharness processes that no longer run, killing
/// what still runs in them first: without bubblewrap's pid namespace, a trial's children
/// outlive a parent killed with SIGKILL (only the trial's first process gets the parent's
/// death signal), and their cgroup is the one list of them that survives.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("autoharness-")) else {
            continue;
        };
        let pid = rest.split('-').find_map(|part| part.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let procs = entry.path().join("cgroup.procs");
            for _ in 0..50 {
                let members: Vec<i32> = std::fs::read_to_string(&procs)
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect();
                if members.is_empty() {
                    break;
                }
                for member in members {
                    let _ = kill(Pid::from_raw(member), Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Cgroups of finished trials, empty and ready for the next one: making and removing a
/// cgroup costs milliseconds (RCU grace periods), reusing one costs a write.
static POOL: Mutex<Vec<TrialCgroup>> = Mutex::new(Vec::new());

impl TrialCgroup {
    /// A cgroup under `parent` with `pids.max = processes`, fresh or from the pool.
    pub(crate) fn acquire(parent: &Path, processes: Option<u64>) -> std::io::Result<TrialCgroup> {
        let pooled = POOL.lock().ok().and_then(|mut pool| {
            let index = pool.iter().position(|cgroup| cgroup.dir.parent() == Some(parent))?;
            Some(pool.swap_remove(index))
        });
        let mut cgroup = match pooled {
            Some(cgroup) => cgroup,
            None => Self::create(parent)?,
        };
        let max = processes.map(|max| max.to_string()).unwrap_or_else(|| "max".to_string());
        std::fs::write(cgroup.dir.join("pids.max"), max)?;
        cgroup.refused_before = cgroup.refused_total();
        Ok(cgroup)
    }

    fn create(parent: &Path) -> std::io::Result<TrialCgroup> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!("autoharness-{}-{seq}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(TrialCgroup {
            procs_path: CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).map_err(std::io::Error::other)?,
            dir,
            refused_before: 0,
        })
    }

    pub(crate) fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Processes in the cgroup now.
    pub(crate) fn members(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|line| line.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// How many forks the pids limit refused during this trial.
    pub(crate) fn refused_forks(&self) -> u64 {
        self.refused_total().saturating_sub(self.refused_before)
    }

    fn refused_total(&self) -> u64 {
        let text = std::fs::read_to_string(self.dir.join("pids.events")).unwrap_or_default();
        text.lines().find_map(|line| line.strip_prefix("max ").and_then(|n| n.trim().parse().ok())).unwrap_or(0)
    }

    /// Sends `signal` to every member except `spare`.
    pub(crate) fn signal_all(&self, signal: Signal, spare: Option<i32>) {
        for pid in self.members() {
            if Some(pid) != spare {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    /// SIGKILLs members until none is left; returns how many distinct processes were killed.
    pub(crate) async fn kill_all(&self) -> usize {
        let mut killed = std::collections::HashSet::new();
        for round in 0..200 {
            let members = self.members();
            if members.is_empty() {
                break;
            }
            for pid in members {
                if kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    killed.insert(pid);
                }
            }
            // Killed processes leave the cgroup once they are reaped; a forking process
            // may add members between the read and the kill.
            tokio::time::sleep(Duration::from_millis(if round < 10 { 1 } else { 10 })).await;
        }
        killed.len()
    }

    /// Puts an empty cgroup back into the pool (one still busy is dropped, which removes
    /// it if it can). Empty means no member and nothing charged: a killed process leaves
    /// `cgroup.procs` when it exits but stays charged to `pids.current` until it is reaped,
    /// and a fork bomb's orphans wait for PID 1 to reap them (late on a loaded machine,
    /// never under a PID 1 that does not reap). A cgroup reused with those charges would
    /// refuse the next trial's forks: a harness failure the harness never caused.
    pub(crate) fn release(self) {
        let charged = std::fs::read_to_string(self.dir.join("pids.current"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if self.members().is_empty() && charged == 0 {
            if let Ok(mut pool) = POOL.lock() {
                if pool.len() < POOL_MAX {
                    pool.push(self);
                }
            }
        }
    }
}

/// More idle cgroups than this are removed instead of kept.
const POOL_MAX: usize = 64;

/// Removes the idle cgroups of the pool (statics are not dropped at exit; a later probe
/// would remove them otherwise).
pub(crate) fn drain_pool() {
    let idle = POOL.lock().map(|mut pool| std::mem::take(&mut *pool)).unwrap_or_default();
    drop(idle);
}

impl Drop for TrialCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cleanup hosts without bubblewrap rely on when autoharness is killed: a trial
    /// cgroup named after a process that no longer runs is emptied (its processes killed)
    /// and removed by the next probe.
    #[test]
    fn a_dead_process_s_trial_cgroup_is_emptied_and_removed() {
        let Some(parent) = probe().pids_parent else {
            let msg = "skipped: no writable pids cgroup here (run as root, as CI does)";
            assert!(std::env::var("AUTOHARNESS_REQUIRE_ALL").as_deref() != Ok("1"), "{msg}");
            return;
        };
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = gone.id();
        gone.wait().unwrap();
        let dir = parent.join(format!("autoharness-{dead_pid}-test"));
        std::fs::create_dir(&dir).unwrap();
        let mut left = std::process::Command::new("sleep").arg("300").spawn().unwrap();
        std::fs::write(dir.join("cgroup.procs"), left.id().to_string()).unwrap();
        remove_stale(&parent);
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = left.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > Duration::from_secs(5) {
                let _ = left.kill();
                let _ = left.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_dir(&dir);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.and_then(|s| s.signal()), Some(libc::SIGKILL), "the leftover was killed");
        assert!(!dir.exists() || std::fs::remove_dir(&dir).is_ok());
    }
}
