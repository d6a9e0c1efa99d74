//! Runs one trial's command (`/bin/sh -c <run>`) isolated, on tokio, and reports how it
//! ended.
//!
//! What every trial gets, whatever the host offers:
//! - a scrubbed environment: only the spec's variables, a fixed `PATH`, a private empty
//!   `HOME` and `TMPDIR`, `LANG=C.UTF-8`;
//! - its own session and process group, killed as a whole on timeout (SIGTERM, a short
//!   grace, SIGKILL), and no process outliving it (see "leftovers" below);
//! - rlimits set between fork and exec (memory, CPU, file size, open files, core dumps);
//! - stdout and stderr kept up to a cap (head and tail), the trial killed when far past it.
//!
//! What the host may add, found once by [`probe`]:
//! - bubblewrap: the system folders read-only (no home, no /tmp, no other project, no
//!   secrets of /etc), the granted paths read-only, writable private copy, own pid, IPC and
//!   (for `Network::None`) network namespaces, no capabilities; leftovers die with the pid
//!   namespace and are counted by a small wrapper script inside it;
//! - landlock (when bwrap is absent): the same file rules enforced by the kernel; the
//!   network is cut by a network namespace where permitted, else by landlock TCP rules;
//! - a pids cgroup: the process limit (the only one that binds root, for whom
//!   `RLIMIT_NPROC` does nothing) and a list of every process the trial made.
//!
//! Without a pid namespace or cgroup, leftovers are found in /proc by session and by a
//! marker variable in their environment.
//!
//! Costs on the trial's path are kept to system calls: the host is probed once, per-trial
//! cgroups are pooled (making one waits for an RCU grace period), the scratch folder is
//! removed on a blocking thread after the outcome is known, and nothing sleeps unless a
//! process must be waited for.

mod bwrap;
mod capture;
mod cgroup;
mod landlock;
mod limits;
mod overlay;
mod probe;
mod procs;
mod view;

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};

pub use capture::Captured;
pub use limits::Limits;
pub use overlay::{Overlay, usable as overlay_usable};
pub use probe::{BwrapSupport, IsolationReport, probe};

use limits::{Rlimit, human_bytes, human_duration};

/// `PATH` inside every trial; a spec may override it through `env`.
pub const TRIAL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Name of the variable that marks a trial's processes (see the module doc).
pub const MARKER_VAR: &str = "AUTOHARNESS_SANDBOX";

/// How often a trial's disk use is measured.
const DISK_CHECK: Duration = Duration::from_millis(500);

/// Time between SIGTERM and SIGKILL when a trial is stopped.
const GRACE: Duration = Duration::from_millis(500);

/// How long to wait for stdout/stderr to close once every trial process is gone (a
/// process out of our reach may still hold them).
const READ_GRACE: Duration = Duration::from_secs(1);

/// Whether the trial may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// No network at all (the default for harnesses).
    None,
    /// The host's network, for harnesses that call model APIs.
    Host,
}

/// Which isolation mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationChoice {
    /// bubblewrap if it works here, else landlock, else none.
    Auto,
    /// No filesystem isolation. The environment, limits, process-group kill, pids cgroup
    /// and (for `Network::None`) network namespace still apply.
    None,
    /// bubblewrap, or fail to start.
    Bwrap,
    /// landlock, or fail to start.
    Landlock,
}

/// One command to run for one trial.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Run as `<shell> -c <command>`.
    pub command: String,
    /// The private copy of the harness; the only tree the trial may write besides its
    /// scratch folder and `writable`.
    pub cwd: PathBuf,
    /// The allowlisted host variables plus the protocol variables; nothing else from the
    /// host environment reaches the child.
    pub env: Vec<(String, String)>,
    /// More paths the trial may write (e.g. the folder of `AUTOHARNESS_TRACE_OUT`).
    pub writable: Vec<PathBuf>,
    /// Host paths the trial may read (and execute from) besides the system folders: the
    /// user's virtualenv and interpreter, the manifest's `read`. Nothing else of the host
    /// is visible.
    pub readable: Vec<PathBuf>,
    /// Links made in the trial's private home: (name under `HOME`, target), so that a
    /// command naming `~/venvs/x/bin/python` finds the user's (the target must be readable).
    pub home_links: Vec<(PathBuf, PathBuf)>,
    pub network: Network,
    pub limits: Limits,
    /// Bytes for the child's stdin; `None` gives it /dev/null.
    pub stdin: Option<Vec<u8>>,
    pub isolation: IsolationChoice,
    /// The shell, `/bin/sh` by default.
    pub shell: PathBuf,
    /// Mounted on `cwd` for this trial alone: a shared read-only tree with the trial's own
    /// writable layer (see `overlay`). Check [`overlay_usable`] first.
    pub overlay: Option<Overlay>,
}

impl Spec {
    /// A spec with default limits, no network, automatic isolation and no extra paths.
    pub fn new(command: impl Into<String>, cwd: impl Into<PathBuf>) -> Spec {
        Spec {
            command: command.into(),
            cwd: cwd.into(),
            env: Vec::new(),
            writable: Vec::new(),
            readable: Vec::new(),
            home_links: Vec::new(),
            network: Network::None,
            limits: Limits::default(),
            stdin: None,
            isolation: IsolationChoice::Auto,
            shell: PathBuf::from("/bin/sh"),
            overlay: None,
        }
    }
}

/// How a trial's command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitStatus {
    Exited {
        code: i32,
    },
    /// Killed by a signal it did not get from us. Through bubblewrap (and through a shell
    /// that did not `exec`) a signal death arrives as exit code 128+n, read back as n.
    Signaled {
        signal: i32,
        name: String,
    },
    TimedOut,
    KilledForLimit {
        limit: Limit,
    },
    FailedToStart {
        message: String,
    },
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Exited { code: 0 })
    }
}

/// A limit whose breach ended a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// stdout or stderr went far past the cap.
    Output,
    /// `RLIMIT_CPU` (SIGXCPU).
    Cpu,
    /// `RLIMIT_FSIZE` (SIGXFSZ).
    FileSize,
    /// The trial's writable folders grew past `Limits::disk_bytes`.
    Disk,
}

/// Filesystem isolation in effect for a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsIsolation {
    None,
    Bwrap,
    Landlock,
}

/// Network isolation in effect for a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetIsolation {
    /// The spec asked for the host's network.
    Host,
    /// Its own network namespace (only loopback, empty).
    Namespace,
    /// Landlock denies TCP connect and bind (UDP and unix sockets still work).
    LandlockTcp,
    /// `Network::None` was asked for and nothing on this host could provide it.
    NotIsolated,
}

/// How the process limit was enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessLimit {
    /// No limit was asked for.
    Unlimited,
    PidsCgroup,
    /// `RLIMIT_NPROC`, set to the user's current task count plus the limit.
    Rlimit,
    /// Root without a pids cgroup: only the timeout and the group kill contain a fork bomb.
    NotEnforced,
}

/// What isolation a trial actually ran with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IsolationUsed {
    pub filesystem: FsIsolation,
    pub network: NetIsolation,
    pub processes: ProcessLimit,
    /// The trial had its own pid namespace (its leftovers die with it).
    pub pid_namespace: bool,
}

impl IsolationUsed {
    fn nothing() -> IsolationUsed {
        IsolationUsed {
            filesystem: FsIsolation::None,
            network: NetIsolation::NotIsolated,
            processes: ProcessLimit::NotEnforced,
            pid_namespace: false,
        }
    }
}

/// How one trial went.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration: Duration,
    pub isolation: IsolationUsed,
    /// One line for people: "timed out after 5s", "killed by SIGKILL (memory limit 512
    /// MiB?)", "stdout over 1 MiB cut".
    pub reason: Option<String>,
    /// Processes still alive when the command exited, killed by us.
    pub killed_leftovers: usize,
}

/// Runs one trial. Never panics on the child's account and never leaves one of its
/// processes behind.
pub async fn run(spec: &Spec) -> Outcome {
    let started = Instant::now();
    match Plan::new(spec) {
        Ok(plan) => execute(spec, plan, started).await,
        Err((message, isolation)) => Outcome {
            reason: Some(message.clone()),
            status: ExitStatus::FailedToStart { message },
            stdout: Captured::default(),
            stderr: Captured::default(),
            duration: started.elapsed(),
            isolation,
            killed_leftovers: 0,
        },
    }
}

/// Owns what the sandbox keeps between trials (idle per-trial cgroups, pooled because
/// making one costs milliseconds): dropping it removes them. The command line holds one
/// for the life of a command; trials may still run after a drop (the pool refills).
#[must_use = "the idle cgroups are removed when this is dropped"]
pub struct Session(());

impl Session {
    pub fn start() -> Session {
        Session(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        cgroup::drain_pool();
    }
}

/// A private folder per trial holding its `HOME` and `TMPDIR`; removed on drop.
struct Scratch {
    root: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
}

impl Scratch {
    fn create() -> std::io::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
        let base = std::fs::canonicalize(std::env::temp_dir()).unwrap_or_else(|_| PathBuf::from("/tmp"));
        let root = base.join(format!("autoharness-trial-{}-{seq}-{nanos:08x}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&root)?;
        let scratch = Scratch { home: root.join("home"), tmp: root.join("tmp"), root };
        std::fs::create_dir(&scratch.home)?;
        std::fs::create_dir(&scratch.tmp)?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Everything decided before the fork.
struct Plan {
    isolation: IsolationUsed,
    program: PathBuf,
    args: Vec<OsString>,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    /// Kept for its `Drop`, which removes the folder after the trial.
    _scratch: Scratch,
    cgroup: Option<cgroup::TrialCgroup>,
    rlimits: Vec<Rlimit>,
    unshare_flags: libc::c_int,
    /// Contents for /proc/self/{uid_map,gid_map} after a user namespace is made.
    id_maps: Option<(Vec<u8>, Vec<u8>)>,
    drop_capabilities: bool,
    landlock: Option<landlock::Prepared>,
    /// The overlay the child mounts on its cwd, in its own mount namespace.
    mount: Option<overlay::ChildMount>,
    marker: String,
    /// The folders the trial may write, and their disk usage before it started.
    writable: Vec<PathBuf>,
    disk_start: u64,
}

type PlanError = (String, IsolationUsed);

impl Plan {
    fn new(spec: &Spec) -> Result<Plan, PlanError> {
        let host = probe::cached();
        let fail = |message: String| (message, IsolationUsed::nothing());
        let cwd = std::fs::canonicalize(&spec.cwd)
            .map_err(|err| fail(format!("cannot use cwd `{}`: {err}", spec.cwd.display())))?;
        if !is_executable(&spec.shell) {
            return Err(fail(format!("shell `{}` not found or not executable", spec.shell.display())));
        }
        let filesystem = filesystem_isolation(spec.isolation, host).map_err(fail)?;
        let canonical = |paths: &[PathBuf], what: &str| -> Result<Vec<PathBuf>, PlanError> {
            paths
                .iter()
                .map(|path| {
                    std::fs::canonicalize(path)
                        .map_err(|err| fail(format!("cannot use {what} path `{}`: {err}", path.display())))
                })
                .collect()
        };
        let extra_writable = canonical(&spec.writable, "writable")?;
        let readable = canonical(&spec.readable, "readable")?;
        let scratch = Scratch::create().map_err(|err| fail(format!("cannot create a scratch folder: {err}")))?;
        for (name, target) in &spec.home_links {
            let link = scratch.home.join(name);
            if !link.starts_with(&scratch.home) || name.components().count() != 1 {
                return Err(fail(format!("home link `{}` must be one name", name.display())));
            }
            std::os::unix::fs::symlink(target, &link)
                .map_err(|err| fail(format!("cannot link `{}` in the trial's home: {err}", name.display())))?;
        }

        let cgroup = host.pids_cgroup.as_deref().and_then(|parent| {
            cgroup::TrialCgroup::acquire(parent, spec.limits.processes)
                .map_err(|err| tracing::debug!("no pids cgroup for this trial: {err}"))
                .ok()
        });
        let uid = nix::unistd::getuid().as_raw();
        let (nproc, processes) = match (spec.limits.processes, &cgroup) {
            (None, _) => (None, ProcessLimit::Unlimited),
            (Some(_), Some(_)) => (None, ProcessLimit::PidsCgroup),
            // Root is exempt from RLIMIT_NPROC; setting it is harmless but binds nothing.
            (Some(max), None) if host.root => (Some(max), ProcessLimit::NotEnforced),
            // RLIMIT_NPROC counts every task of the user, not just the trial's.
            (Some(max), None) => (Some(procs::user_tasks(uid) + max), ProcessLimit::Rlimit),
        };
        let rlimits = spec.limits.rlimits(nproc);

        // The trial sees the system folders (see `view`), what the spec grants, and its own
        // folders; the host's DNS configuration too when it may use the network.
        let mut readable = readable;
        if spec.network == Network::Host {
            readable.extend(view::network_paths());
        }
        let mut writable = vec![scratch.root.clone(), cwd.clone()];
        writable.extend(extra_writable);

        let Launch { program, args, pid_namespace, network, mut unshare_flags, mut id_maps, landlock } =
            Launch::new(spec, host, filesystem, &readable, &writable, &cwd).map_err(fail)?;

        let mount = match &spec.overlay {
            Some(layers) => Some(overlay::ChildMount::new(layers, &cwd).map_err(fail)?),
            None => None,
        };
        if let Some(layers) = &spec.overlay {
            // The trial's writes land in its upper layer: that is what the disk limit counts.
            writable.push(layers.upper.clone());
            unshare_flags |= libc::CLONE_NEWNS;
            // Root may mount in a mount namespace; anyone else needs a user namespace too.
            if !host.root && unshare_flags & libc::CLONE_NEWUSER == 0 {
                unshare_flags |= libc::CLONE_NEWUSER;
                id_maps = Some(own_id_maps());
            }
        }

        let marker_value = scratch.root.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let env = trial_env(spec, &scratch, &marker_value);

        Ok(Plan {
            isolation: IsolationUsed { filesystem, network, processes, pid_namespace },
            program,
            args,
            cwd,
            env,
            _scratch: scratch,
            cgroup,
            rlimits,
            unshare_flags,
            id_maps,
            drop_capabilities: host.root && filesystem == FsIsolation::Landlock,
            landlock,
            mount,
            // As it appears in /proc/<pid>/environ.
            marker: format!("{MARKER_VAR}={marker_value}\0"),
            disk_start: if spec.limits.disk_bytes.is_some() { limits::disk_usage(&writable) } else { 0 },
            writable,
        })
    }
}

/// The command line that starts a trial under the chosen isolation, and the namespaces
/// and rules its child sets up before it runs.
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    pid_namespace: bool,
    network: NetIsolation,
    unshare_flags: libc::c_int,
    id_maps: Option<(Vec<u8>, Vec<u8>)>,
    landlock: Option<landlock::Prepared>,
}

impl Launch {
    fn new(
        spec: &Spec,
        host: &IsolationReport,
        filesystem: FsIsolation,
        readable: &[PathBuf],
        writable: &[PathBuf],
        cwd: &Path,
    ) -> Result<Launch, String> {
        let want_no_network = spec.network == Network::None;
        let mut unshare_flags = 0;
        let mut id_maps = None;
        let mut network = if want_no_network { NetIsolation::NotIsolated } else { NetIsolation::Host };
        let mut landlock = None;
        let (program, args, pid_namespace) = match filesystem {
            FsIsolation::Bwrap => {
                let support = host.bwrap.expect("bwrap chosen only when it works");
                let netns = want_no_network && support.netns;
                if netns {
                    network = NetIsolation::Namespace;
                }
                let layout = bwrap::Layout { root: host.root, userns: support.userns, netns, readable, writable, cwd };
                let mut args = bwrap::trial_args(&layout);
                args.extend([
                    OsString::from("--"),
                    spec.shell.clone().into(),
                    "-c".into(),
                    bwrap::WRAPPER.into(),
                    spec.shell.clone().into(),
                    spec.command.clone().into(),
                ]);
                let program = host.bwrap_path.clone().expect("bwrap found");
                (program, args, true)
            }
            FsIsolation::Landlock | FsIsolation::None => {
                if want_no_network && host.net_namespaces {
                    network = NetIsolation::Namespace;
                    if host.root {
                        unshare_flags = libc::CLONE_NEWNET;
                    } else {
                        unshare_flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNET;
                        id_maps = Some(own_id_maps());
                    }
                }
                if filesystem == FsIsolation::Landlock {
                    let abi = host.landlock_abi.unwrap_or(0);
                    let deny_tcp = want_no_network && network == NetIsolation::NotIsolated;
                    let prepared = landlock::prepare(readable, writable, deny_tcp, abi)?;
                    if prepared.tcp_denied {
                        network = NetIsolation::LandlockTcp;
                    }
                    landlock = Some(prepared);
                }
                let args = vec![OsString::from("-c"), spec.command.clone().into()];
                (spec.shell.clone(), args, false)
            }
        };
        Ok(Launch { program, args, pid_namespace, network, unshare_flags, id_maps, landlock })
    }
}

/// The filesystem isolation a trial gets: the one asked for, or under `auto` the strongest
/// this host offers; asking for one the host lacks is an error, never a silent downgrade.
fn filesystem_isolation(choice: IsolationChoice, host: &IsolationReport) -> Result<FsIsolation, String> {
    Ok(match choice {
        IsolationChoice::None => FsIsolation::None,
        IsolationChoice::Bwrap if host.bwrap.is_some() => FsIsolation::Bwrap,
        IsolationChoice::Bwrap => {
            let why = host.bwrap_error.as_deref().unwrap_or("not available");
            return Err(format!("bwrap isolation requested but unusable here: {why}"));
        }
        IsolationChoice::Landlock if host.landlock_abi.is_some() => FsIsolation::Landlock,
        IsolationChoice::Landlock => return Err("landlock isolation requested but this kernel has no landlock".into()),
        IsolationChoice::Auto if host.bwrap.is_some() => FsIsolation::Bwrap,
        IsolationChoice::Auto if host.landlock_abi.is_some() => FsIsolation::Landlock,
        IsolationChoice::Auto => FsIsolation::None,
    })
}

/// A user namespace's uid and gid maps: the caller's own ids, mapped to themselves.
fn own_id_maps() -> (Vec<u8>, Vec<u8>) {
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    (format!("{uid} {uid} 1").into_bytes(), format!("{gid} {gid} 1").into_bytes())
}

/// The trial's environment: a fixed PATH and locale, what the spec allows, and its own
/// home, temp folder and marker.
fn trial_env(spec: &Spec, scratch: &Scratch, marker_value: &str) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> =
        vec![("PATH".into(), TRIAL_PATH.into()), ("LANG".into(), "C.UTF-8".into())];
    for (key, value) in &spec.env {
        env.retain(|(k, _)| k != key.as_str());
        env.push((key.into(), value.into()));
    }
    // Forced last so that no allowlisted variable can point the trial at the real home.
    for (key, value) in [
        ("HOME", scratch.home.as_os_str()),
        ("TMPDIR", scratch.tmp.as_os_str()),
        (MARKER_VAR, std::ffi::OsStr::new(&marker_value)),
    ] {
        env.retain(|(k, _)| k != key);
        env.push((key.into(), value.into()));
    }
    env
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Kills the trial's process group and cgroup if `run` is dropped (cancelled) before its
/// command was reaped. Without a cgroup, a daemon that left the group survives that.
struct KillGuard {
    /// 0 once there is nothing to kill. Atomic only so that `run`'s future stays `Send`.
    pgid: std::sync::atomic::AtomicI32,
    /// `cgroup.procs` of the trial's cgroup, whose members are killed too.
    cgroup_procs: Option<PathBuf>,
}

impl KillGuard {
    fn disarm(&self) {
        self.pgid.store(0, Ordering::Relaxed);
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        let pgid = self.pgid.load(Ordering::Relaxed);
        if pgid > 0 {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            // One pass, without waiting: a drop cannot await the cgroup draining.
            let members = self.cgroup_procs.as_ref().and_then(|path| std::fs::read_to_string(path).ok());
            for pid in members.iter().flat_map(|text| text.lines()).filter_map(|line| line.parse().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// How the wait for the command ended.
enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    Flooded,
    DiskFull,
}

/// The started command and what is needed to supervise it.
struct Spawned {
    child: tokio::process::Child,
    pid: Option<i32>,
    guard: KillGuard,
    /// The read end of the bwrap wrapper's report pipe.
    report_read: Option<OwnedFd>,
    /// Every trial process starts at or after its leader; /proc scans ignore older ones.
    since_ticks: u64,
}

/// How the supervised command ended, and what of it was left to kill.
struct Ending {
    ended: Ended,
    leftovers: usize,
    sandbox_started: bool,
    /// The cgroup may still hold processes finishing on their own (released off the path).
    cgroup_busy: bool,
}

async fn execute(spec: &Spec, mut plan: Plan, started: Instant) -> Outcome {
    let bwrap_mode = plan.isolation.filesystem == FsIsolation::Bwrap;
    let mut spawned = match spawn(spec, &mut plan, bwrap_mode) {
        Ok(spawned) => spawned,
        Err(message) => {
            return Outcome {
                reason: Some(message.clone()),
                status: ExitStatus::FailedToStart { message },
                stdout: Captured::default(),
                stderr: Captured::default(),
                duration: started.elapsed(),
                isolation: plan.isolation,
                killed_leftovers: 0,
            };
        }
    };
    if let (Some(bytes), Some(mut stdin)) = (spec.stdin.clone(), spawned.child.stdin.take()) {
        tokio::spawn(async move {
            // A child that exits without reading its input is not an error.
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let cap = spec.limits.output_bytes;
    let flood_bytes = (cap as u64).saturating_mul(limits::OUTPUT_FLOOD_FACTOR).max(64 * 1024);
    let flood = Arc::new(Notify::new());
    let (stop_readers, stop_rx) = watch::channel(false);
    let stdout = spawned.child.stdout.take().expect("stdout is piped");
    let stderr = spawned.child.stderr.take().expect("stderr is piped");
    let readers = async {
        tokio::join!(
            capture::read_capped(stdout, cap, flood_bytes, flood.clone(), stop_rx.clone()),
            capture::read_capped(stderr, cap, flood_bytes, flood.clone(), stop_rx.clone()),
        )
    };
    let mut readers = std::pin::pin!(readers);
    // The command and its output are awaited together: a full pipe must not stall it.
    let (ending, captured) = {
        let mut lifecycle = std::pin::pin!(supervise(spec, &plan, &mut spawned, &flood, bwrap_mode));
        let mut captured = None;
        let ending = loop {
            tokio::select! {
                result = &mut lifecycle => break result,
                output = &mut readers, if captured.is_none() => captured = Some(output),
            }
        };
        (ending, captured)
    };
    let (stdout, stderr) = match captured {
        Some(output) => output,
        None => match tokio::time::timeout(READ_GRACE, &mut readers).await {
            Ok(output) => output,
            Err(_) => {
                let _ = stop_readers.send(true);
                readers.await
            }
        },
    };
    let refused_forks = plan.cgroup.as_ref().map(|cg| cg.refused_forks()).unwrap_or(0);
    if let Some(cgroup) = plan.cgroup.take() {
        if ending.cgroup_busy {
            tokio::spawn(async move {
                cgroup.kill_all().await;
                cgroup.release();
            });
        } else {
            cgroup.release();
        }
    }
    let status = exit_status(ending.ended, bwrap_mode, ending.sandbox_started, &stderr);
    let killed_leftovers = ending.leftovers;
    let reason = reason(spec, &plan, &status, &stdout, &stderr, refused_forks, killed_leftovers, flood_bytes);
    let isolation = plan.isolation;
    // Removing a folder that a (dying) sandbox still has bound detaches that mount, which
    // waits for an RCU grace period: milliseconds, so it happens off the trial's path.
    tokio::task::spawn_blocking(move || drop(plan));
    Outcome { status, stdout, stderr, duration: started.elapsed(), isolation, reason, killed_leftovers }
}

/// Starts the planned command in its sandbox; the error says why it could not start.
fn spawn(spec: &Spec, plan: &mut Plan, bwrap_mode: bool) -> Result<Spawned, String> {
    // The wrapper inside bwrap reports on fd 3 through this pipe.
    let report_pipe = if bwrap_mode {
        Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|err| format!("cannot make a pipe: {err}"))?)
    } else {
        None
    };
    let mut command = tokio::process::Command::new(&plan.program);
    command
        .args(&plan.args)
        .current_dir(&plan.cwd)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child_setup = ChildSetup {
        cgroup_procs: plan.cgroup.as_ref().map(|cg| cg.procs_path.clone()),
        rlimits: plan.rlimits.clone(),
        report_fd: report_pipe.as_ref().map(|(_, write)| write.as_raw_fd()),
        unshare_flags: plan.unshare_flags,
        id_maps: plan.id_maps.clone(),
        drop_capabilities: plan.drop_capabilities,
        landlock_fd: plan.landlock.as_ref().map(|l| l.raw_fd()),
        death_signal: !bwrap_mode,
        mount: plan.mount.clone(),
        landlock_write_access: plan.landlock.as_ref().map(|l| l.write_access).unwrap_or(0),
    };
    // SAFETY: `ChildSetup::apply` makes only async-signal-safe system calls on memory
    // prepared before the fork.
    unsafe {
        command.pre_exec(move || child_setup.apply());
    }
    let child = command.spawn().map_err(|err| format!("could not start `{}`: {err}", plan.program.display()))?;
    let pid = child.id().map(|id| id as i32);
    let guard = KillGuard {
        pgid: std::sync::atomic::AtomicI32::new(pid.unwrap_or(0)),
        cgroup_procs: plan.cgroup.as_ref().map(|cg| cg.procs_file()),
    };
    // The ruleset descriptor was for the child only.
    plan.landlock = None;
    Ok(Spawned {
        child,
        pid,
        guard,
        // Only the child may hold the write end now, so the read end sees EOF once it is gone.
        report_read: report_pipe.map(|(read, _write)| read),
        since_ticks: pid.and_then(procs::stat).map(|stat| stat.start_ticks).unwrap_or(0),
    })
}

/// Waits for the command to exit, time out, flood its output or fill its disk; stops it
/// in the last three cases; then kills what it left behind.
async fn supervise(spec: &Spec, plan: &Plan, s: &mut Spawned, flood: &Notify, bwrap_mode: bool) -> Ending {
    let ended = tokio::select! {
        status = s.child.wait() => match status {
            Ok(status) => Ended::Exited(status),
            // Waiting fails only if the child was reaped elsewhere; count it as killed.
            Err(_) => Ended::Exited(std::process::ExitStatus::from_raw(libc::SIGKILL)),
        },
        _ = tokio::time::sleep(spec.limits.timeout) => Ended::TimedOut,
        _ = flood.notified() => Ended::Flooded,
        _ = watch_disk(&plan.writable, plan.disk_start, spec.limits.disk_bytes) => Ended::DiskFull,
    };
    if matches!(ended, Ended::Exited(_)) {
        // Reaped: its pid, and so its group id, may now belong to a stranger.
        s.guard.disarm();
    }
    if matches!(ended, Ended::TimedOut | Ended::Flooded | Ended::DiskFull) {
        stop(&mut s.child, s.pid, plan.cgroup.as_ref(), bwrap_mode).await;
        s.guard.disarm();
    }
    let report = match &s.report_read {
        Some(fd) => bwrap::parse_report(&read_available(fd.as_raw_fd())),
        None => bwrap::Report { started: true, ..Default::default() },
    };
    // A bwrap trial that exited by itself with nothing left (the wrapper counted)
    // leaves only bwrap's init, which is finishing on its own: waiting for it to
    // tear down its namespaces would only cost the trial time.
    let nothing_left = bwrap_mode && matches!(ended, Ended::Exited(_)) && report.started && report.left == 0;
    // Leftovers: whatever of the trial is still alive now that its command is done.
    let killed = match (&plan.cgroup, s.pid) {
        (Some(_), _) if nothing_left => 0,
        (Some(cgroup), _) => cgroup.kill_all().await,
        (None, _) if bwrap_mode => 0,
        (None, Some(leader)) => procs::kill_trial_processes(leader, plan.marker.as_bytes(), s.since_ticks).await,
        (None, None) => 0,
    };
    if bwrap_mode && plan.cgroup.is_none() && !nothing_left {
        // The outer bwrap exits before its init has finished killing the namespace.
        if let Some(init) = report.init_pid {
            procs::wait_gone(init, s.since_ticks).await;
        }
    }
    // In bwrap mode the cgroup still holds bwrap's init for a moment (the outer bwrap
    // does not wait for it to finish exiting): the wrapper's count is the true one.
    let leftovers = if bwrap_mode { report.left } else { killed };
    Ending { ended, leftovers, sandbox_started: report.started, cgroup_busy: nothing_left }
}

/// The trial's exit status from how its command ended.
fn exit_status(ended: Ended, bwrap_mode: bool, sandbox_started: bool, stderr: &Captured) -> ExitStatus {
    match ended {
        Ended::TimedOut => ExitStatus::TimedOut,
        Ended::Flooded => ExitStatus::KilledForLimit { limit: Limit::Output },
        Ended::DiskFull => ExitStatus::KilledForLimit { limit: Limit::Disk },
        Ended::Exited(_) if bwrap_mode && !sandbox_started => {
            let first_line = stderr.text().lines().next().unwrap_or("bwrap failed").to_string();
            ExitStatus::FailedToStart { message: format!("the sandbox did not start: {first_line}") }
        }
        Ended::Exited(raw) => match classify(raw, bwrap_mode) {
            ExitStatus::Exited { code } => match could_not_start(code, &stderr.text()) {
                Some(message) => ExitStatus::FailedToStart { message },
                None => ExitStatus::Exited { code },
            },
            other => other,
        },
    }
}

/// Resolves once the trial's writable folders hold more than `limit` bytes beyond what
/// they held at the start; never without a limit.
async fn watch_disk(paths: &[PathBuf], start: u64, limit: Option<u64>) {
    let Some(limit) = limit else { return std::future::pending().await };
    loop {
        tokio::time::sleep(DISK_CHECK).await;
        let paths = paths.to_vec();
        let used = tokio::task::spawn_blocking(move || limits::disk_usage(&paths)).await.unwrap_or(0);
        if used.saturating_sub(start) > limit {
            return;
        }
    }
}

/// Stops a running trial: SIGTERM, up to `GRACE` to exit, then SIGKILL.
async fn stop(
    child: &mut tokio::process::Child,
    pid: Option<i32>,
    cgroup: Option<&cgroup::TrialCgroup>,
    bwrap_mode: bool,
) -> std::process::ExitStatus {
    if bwrap_mode {
        // SIGTERM would kill the outer bwrap at once, and with it the whole namespace: the
        // harness gets its SIGTERM through the cgroup instead, when there is one.
        if let Some(cgroup) = cgroup {
            cgroup.signal_all(Signal::SIGTERM, pid);
        }
    } else {
        if let Some(pid) = pid {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if let Some(cgroup) = cgroup {
            cgroup.signal_all(Signal::SIGTERM, None);
        }
    }
    let nothing_was_asked_to_stop = bwrap_mode && cgroup.is_none();
    if !nothing_was_asked_to_stop {
        if let Ok(Ok(status)) = tokio::time::timeout(GRACE, child.wait()).await {
            return status;
        }
    }
    if let Some(pid) = pid {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if let Some(cgroup) = cgroup {
        cgroup.signal_all(Signal::SIGKILL, None);
    }
    child.wait().await.unwrap_or_else(|_| std::process::ExitStatus::from_raw(libc::SIGKILL))
}

/// Reads what is in a pipe without blocking (its writers are gone or about to be).
fn read_available(fd: RawFd) -> String {
    // SAFETY: `fd` is the open read end of our pipe.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    // The wrapper writes two short lines; more is the harness playing with fd 3.
    while text.len() < 4096 {
        // SAFETY: reading into a stack buffer of the given length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        text.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn classify(raw: std::process::ExitStatus, bwrap_mode: bool) -> ExitStatus {
    if let Some(signal) = raw.signal() {
        return from_signal(signal);
    }
    let code = raw.code().unwrap_or(-1);
    // bwrap reports a signal death of its child as 128+n.
    if bwrap_mode && (129..=128 + 64).contains(&code) {
        return from_signal(code - 128);
    }
    ExitStatus::Exited { code }
}

const NOT_STARTED_HINT: &str =
    "; a trial sees only system folders, its copy and granted paths: see `autoharness doctor`";

/// Whether the command never got going: the shell found no such program (exit 127) or
/// could not execute it (126), or Python found no such script (exit 2). That is a broken
/// setup (a virtualenv the trial cannot see, a wrong path), not a failed case; the message
/// says what was missing.
pub fn could_not_start(code: i32, stderr: &str) -> Option<String> {
    let first = stderr.lines().find(|line| !line.trim().is_empty())?.trim();
    match code {
        // dash: `sh: 1: .venv/bin/python: not found`; bash: `bash: line 1: x: command not found`.
        126 | 127 => {
            let what = first.strip_suffix(": not found").or_else(|| first.strip_suffix(": command not found"));
            let (what, why) = match what {
                Some(what) => (what, "not found"),
                None => (
                    first.strip_suffix(": Permission denied").or_else(|| first.strip_suffix(": Is a directory"))?,
                    "not executable",
                ),
            };
            let program = what.rsplit(": ").next().unwrap_or(what);
            Some(format!("could not start: `{program}` {why} (exit {code}){NOT_STARTED_HINT}"))
        }
        2 => {
            let rest = first.split_once("can't open file '")?.1;
            let (file, tail) = rest.split_once('\'')?;
            tail.contains("No such file")
                .then(|| format!("could not start: `{file}` not found (exit 2){NOT_STARTED_HINT}"))
        }
        _ => None,
    }
}

fn from_signal(signal: i32) -> ExitStatus {
    match signal {
        libc::SIGXCPU => ExitStatus::KilledForLimit { limit: Limit::Cpu },
        libc::SIGXFSZ => ExitStatus::KilledForLimit { limit: Limit::FileSize },
        _ => ExitStatus::Signaled { signal, name: signal_name(signal) },
    }
}

fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map(|s| s.as_str().to_string()).unwrap_or_else(|_| format!("signal {signal}"))
}

#[allow(clippy::too_many_arguments)]
fn reason(
    spec: &Spec,
    plan: &Plan,
    status: &ExitStatus,
    stdout: &Captured,
    stderr: &Captured,
    refused_forks: u64,
    killed_leftovers: usize,
    flood_bytes: u64,
) -> Option<String> {
    let limits = &spec.limits;
    let cap = human_bytes(limits.output_bytes as u64);
    let mut parts = Vec::new();
    match status {
        ExitStatus::Exited { .. } => {}
        ExitStatus::TimedOut => parts.push(format!("timed out after {}", human_duration(limits.timeout))),
        ExitStatus::KilledForLimit { limit: Limit::Output } => {
            parts.push(format!("output over {cap} cut; killed after {} on one stream", human_bytes(flood_bytes)));
        }
        ExitStatus::KilledForLimit { limit: Limit::Cpu } => {
            let cpu = limits.cpu_seconds.map(|s| format!(" {s} s")).unwrap_or_default();
            parts.push(format!("cpu limit{cpu} reached (SIGXCPU)"));
        }
        ExitStatus::KilledForLimit { limit: Limit::Disk } => {
            let size = limits.disk_bytes.map(|b| format!(" {}", human_bytes(b))).unwrap_or_default();
            parts.push(format!("disk limit{size} reached: the trial wrote more than that"));
        }
        ExitStatus::KilledForLimit { limit: Limit::FileSize } => {
            let size = limits.file_size_bytes.map(|b| format!(" {}", human_bytes(b))).unwrap_or_default();
            parts.push(format!("file size limit{size} reached (SIGXFSZ)"));
        }
        ExitStatus::Signaled { signal, name } => {
            // The memory limit is RLIMIT_DATA: going over it fails allocations (an abort or a
            // crash), it never sends SIGKILL. autoharness sends SIGKILL only for the limits above.
            let memory_hint = matches!(*signal, libc::SIGSEGV | libc::SIGABRT | libc::SIGBUS);
            match limits.memory_bytes {
                Some(bytes) if memory_hint => {
                    parts.push(format!("killed by {name} (memory limit {}?)", human_bytes(bytes)));
                }
                _ if *signal == libc::SIGKILL => parts.push(format!(
                    "killed by {name}, not by autoharness: by one of the trial's own processes (it killed its \
                     parent?) or by the system's out-of-memory killer"
                )),
                _ => parts.push(format!("killed by {name}")),
            }
        }
        ExitStatus::FailedToStart { message } => parts.push(message.clone()),
    }
    if let (ExitStatus::Exited { code }, Some(bytes)) = (status, limits.memory_bytes) {
        if *code != 0 && mentions_out_of_memory(stderr) {
            parts.push(format!("out of memory (memory limit {}?)", human_bytes(bytes)));
        }
    }
    if refused_forks > 0 {
        let max = limits.processes.map(|p| format!(" {p}")).unwrap_or_default();
        parts.push(format!("process limit{max} reached: {refused_forks} forks refused"));
    }
    if !matches!(status, ExitStatus::KilledForLimit { limit: Limit::Output }) {
        for (name, captured) in [("stdout", stdout), ("stderr", stderr)] {
            if captured.truncated {
                parts.push(format!("{name} over {cap} cut"));
            }
        }
    }
    if killed_leftovers > 0 {
        let plural = if killed_leftovers == 1 { "" } else { "es" };
        parts.push(format!("killed {killed_leftovers} leftover process{plural}"));
    }
    if plan.isolation.network == NetIsolation::NotIsolated {
        parts.push("network not isolated: no mechanism on this host".to_string());
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Whether stderr carries a common allocation-failure message (Python, Perl, C, C++, Rust,
/// Node), the usual sign of `RLIMIT_DATA` being reached.
fn mentions_out_of_memory(stderr: &Captured) -> bool {
    const MESSAGES: [&str; 6] = [
        "MemoryError",
        "Out of memory",
        "Cannot allocate memory",
        "std::bad_alloc",
        "memory allocation of",
        "heap out of memory",
    ];
    let text = stderr.text();
    MESSAGES.iter().any(|message| text.contains(message))
}

/// What the child does between fork and exec. Everything here was allocated before the
/// fork; `apply` makes only system calls.
struct ChildSetup {
    cgroup_procs: Option<CString>,
    rlimits: Vec<Rlimit>,
    report_fd: Option<RawFd>,
    unshare_flags: libc::c_int,
    id_maps: Option<(Vec<u8>, Vec<u8>)>,
    drop_capabilities: bool,
    landlock_fd: Option<RawFd>,
    death_signal: bool,
    mount: Option<overlay::ChildMount>,
    landlock_write_access: u64,
}

impl ChildSetup {
    fn apply(&self) -> std::io::Result<()> {
        let os_error = std::io::Error::last_os_error;
        // SAFETY: async-signal-safe system calls on memory owned by `self`.
        unsafe {
            // Its own session: its own process group, killed as one, and no terminal.
            if libc::setsid() < 0 {
                return Err(os_error());
            }
            if let Some(procs) = &self.cgroup_procs {
                write_file(procs, b"0")?;
            }
            for limit in &self.rlimits {
                limits::apply(*limit)?;
            }
            if let Some(fd) = self.report_fd {
                // fd 3 for the wrapper, fd 4 for bwrap's `--info-fd`; both the same pipe.
                for target in [3, 4] {
                    if fd == target {
                        if libc::fcntl(target, libc::F_SETFD, 0) < 0 {
                            return Err(os_error());
                        }
                    } else if libc::dup2(fd, target) < 0 {
                        return Err(os_error());
                    }
                }
            }
            if self.unshare_flags != 0 {
                if libc::unshare(self.unshare_flags) != 0 {
                    return Err(os_error());
                }
                if let Some((uid_map, gid_map)) = &self.id_maps {
                    write_file(c"/proc/self/setgroups", b"deny")?;
                    write_file(c"/proc/self/uid_map", uid_map)?;
                    write_file(c"/proc/self/gid_map", gid_map)?;
                }
                if self.unshare_flags & libc::CLONE_NEWNET != 0 {
                    loopback_up();
                }
            }
            // Before landlock and the capability drop: mounting needs CAP_SYS_ADMIN.
            if let Some(mount) = &self.mount {
                mount.apply()?;
            }
            if self.drop_capabilities {
                // Root keeps uid 0 but loses every capability, now and after exec.
                for cap in 0..64 {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
                }
            }
            if let Some(fd) = self.landlock_fd {
                if let Some(mount) = &self.mount {
                    landlock::add_rule_raw(fd, &mount.target, self.landlock_write_access)?;
                }
                landlock::restrict_self(fd)?;
            }
            if self.death_signal && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(os_error());
            }
        }
        Ok(())
    }
}

/// `open`, `write`, `close`: async-signal-safe.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: the caller is between fork and exec; these are plain system calls.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, data.as_ptr().cast(), data.len());
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if written != data.len() as isize {
            return Err(error);
        }
    }
    Ok(())
}

/// Brings `lo` up in a fresh network namespace, so a harness may still talk to itself.
unsafe fn loopback_up() {
    // SAFETY: socket and ioctl on a zeroed request naming `lo`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return;
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) == 0 {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &request);
        }
        libc::close(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_classify_signals() {
        let killed = std::process::ExitStatus::from_raw(libc::SIGKILL);
        assert_eq!(classify(killed, false), ExitStatus::Signaled { signal: 9, name: "SIGKILL".into() });
        let exit_137 = std::process::ExitStatus::from_raw(137 << 8);
        assert_eq!(classify(exit_137, false), ExitStatus::Exited { code: 137 });
        assert_eq!(classify(exit_137, true), ExitStatus::Signaled { signal: 9, name: "SIGKILL".into() });
        let xcpu = std::process::ExitStatus::from_raw(libc::SIGXCPU);
        assert_eq!(classify(xcpu, false), ExitStatus::KilledForLimit { limit: Limit::Cpu });
    }

    #[test]
    fn sandbox_could_not_start_reads_the_shell_and_python() {
        let dash = could_not_start(127, "sh: 1: .venv/bin/python: not found\n").unwrap();
        assert!(dash.starts_with("could not start: `.venv/bin/python` not found (exit 127)"), "{dash}");
        let bash = could_not_start(127, "bash: line 1: agent: command not found\n").unwrap();
        assert!(bash.starts_with("could not start: `agent` not found"), "{bash}");
        let denied = could_not_start(126, "sh: 1: ./run.sh: Permission denied\n").unwrap();
        assert!(denied.starts_with("could not start: `./run.sh` not executable"), "{denied}");
        let python = "/usr/bin/python3: can't open file '/w/agent.py': [Errno 2] No such file or directory\n";
        assert!(could_not_start(2, python).unwrap().starts_with("could not start: `/w/agent.py` not found"));
        // A harness that fails on its own is a failed case, not a setup problem.
        assert_eq!(could_not_start(127, "Traceback (most recent call last):\n"), None);
        assert_eq!(could_not_start(1, "sh: 1: x: not found\n"), None);
        assert_eq!(could_not_start(2, "usage: agent.py [-h]\n"), None);
    }
}
