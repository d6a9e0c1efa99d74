//! What isolation this host offers, found by trying it: bubblewrap is run for real, the
//! landlock ABI is asked of the kernel, namespaces are unshared in a throwaway child and a
//! pids cgroup is made and removed. The result is cached for the life of the process, so
//! trials pay for it once.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde::Serialize;

use super::cgroup;

/// What this host offers for isolating trials.
#[derive(Debug, Clone, Serialize)]
pub struct IsolationReport {
    /// Running as uid 0: `RLIMIT_NPROC` does not bind, so only a pids cgroup limits processes.
    pub root: bool,
    /// Where `bwrap` was found, if anywhere.
    pub bwrap_path: Option<PathBuf>,
    /// `bwrap` ran `true` in a sandbox, with these namespaces.
    pub bwrap: Option<BwrapSupport>,
    /// Why `bwrap` is not usable (not found, or its error when tried).
    pub bwrap_error: Option<String>,
    /// The kernel's landlock ABI version (1 = 5.13; 4 adds TCP rules; 6 adds signal scoping).
    pub landlock_abi: Option<i32>,
    /// `unshare(CLONE_NEWUSER)` works.
    pub user_namespaces: bool,
    /// A child can get its own network namespace (with a user namespace when not root).
    pub net_namespaces: bool,
    /// Folder in which a per-trial pids cgroup can be made.
    pub pids_cgroup: Option<PathBuf>,
    /// A cgroup v2 hierarchy is mounted and we may make cgroups in it.
    pub cgroup_v2_writable: bool,
    /// Why no pids cgroup can be used.
    pub cgroup_error: Option<String>,
}

/// The flags `bwrap` accepted on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BwrapSupport {
    /// `--unshare-user` works (it confines a root trial's capabilities to its namespace).
    pub userns: bool,
    /// `--unshare-net` works.
    pub netns: bool,
}

impl IsolationReport {
    /// One line for people, e.g. for `autoharness doctor` or a log.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        match (&self.bwrap, &self.bwrap_error) {
            (Some(support), _) => {
                parts.push(format!("bwrap: yes (userns {}, netns {})", yes_no(support.userns), yes_no(support.netns)))
            }
            (None, Some(err)) => parts.push(format!("bwrap: no ({err})")),
            (None, None) => parts.push("bwrap: no".to_string()),
        }
        match self.landlock_abi {
            Some(abi) => parts.push(format!("landlock: ABI {abi}")),
            None => parts.push("landlock: no".to_string()),
        }
        parts.push(format!("user namespaces: {}", yes_no(self.user_namespaces)));
        parts.push(format!("net namespaces: {}", yes_no(self.net_namespaces)));
        match &self.pids_cgroup {
            Some(dir) => parts.push(format!("pids cgroup: {}", dir.display())),
            None => parts.push(format!("pids cgroup: no ({})", self.cgroup_error.as_deref().unwrap_or("not found"))),
        }
        parts.push(format!("cgroup v2 writable: {}", yes_no(self.cgroup_v2_writable)));
        parts.push(format!("root: {}", yes_no(self.root)));
        parts.join("; ")
    }

    /// Whether a trial with `Network::None` can be cut off from the network here.
    pub fn can_isolate_network(&self) -> bool {
        self.bwrap.is_some_and(|b| b.netns) || self.net_namespaces || self.landlock_abi.is_some_and(|abi| abi >= 4)
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

/// What this host offers, probed once per process.
pub fn probe() -> IsolationReport {
    cached().clone()
}

pub(crate) fn cached() -> &'static IsolationReport {
    static REPORT: OnceLock<IsolationReport> = OnceLock::new();
    REPORT.get_or_init(probe_now)
}

fn probe_now() -> IsolationReport {
    let root = nix::unistd::geteuid().is_root();
    let user_namespaces = try_unshare(libc::CLONE_NEWUSER);
    let net_namespaces =
        if root { try_unshare(libc::CLONE_NEWNET) } else { try_unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) };
    let (bwrap_path, bwrap, bwrap_error) = match find_bwrap() {
        None => (None, None, Some("`bwrap` not found on PATH (apt-get install bubblewrap)".to_string())),
        Some(path) => match probe_bwrap(&path, root) {
            Ok(support) => (Some(path), Some(support), None),
            Err(err) => (Some(path), None, Some(err)),
        },
    };
    let bwrap_error = bwrap_error.map(|err| match (&bwrap_path, apparmor_blocks_userns()) {
        (Some(_), true) => format!(
            "AppArmor blocks unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1; \
             `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` allows them): {err}"
        ),
        _ => err,
    });
    let landlock_abi = landlock_abi();
    if let (Some(_), None, Some(err)) = (&bwrap_path, &bwrap, &bwrap_error) {
        // Installed but unusable: say once what the fallback loses.
        let fallback = match landlock_abi {
            Some(_) => "trials fall back to landlock (same file rules; no pid namespace, leftovers found in /proc)",
            None => "trials run without filesystem isolation",
        };
        tracing::warn!("bubblewrap cannot run here, {fallback}: {err}");
    }
    let cgroups = cgroup::probe();
    IsolationReport {
        root,
        bwrap_path,
        bwrap,
        bwrap_error,
        landlock_abi,
        user_namespaces,
        net_namespaces,
        pids_cgroup: cgroups.pids_parent,
        cgroup_v2_writable: cgroups.v2_writable,
        cgroup_error: cgroups.error,
    }
}

/// Ubuntu 24.04's default: unprivileged user namespaces are refused to programs without an
/// AppArmor profile allowing them, which stops `bwrap` as a normal user.
fn apparmor_blocks_userns() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_ok_and(|v| v.trim() == "1")
        && !nix::unistd::geteuid().is_root()
}

/// Asks the kernel for its landlock ABI version without creating a ruleset.
fn landlock_abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute and size 0 this flag only returns the ABI version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (abi > 0).then_some(abi as i32)
}

/// Whether a child may `unshare(flags)`; tried in a throwaway child so this process keeps
/// its namespaces.
fn try_unshare(flags: libc::c_int) -> bool {
    let mut command = Command::new(true_program());
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: the closure only makes one raw system call.
    unsafe {
        command.pre_exec(move || {
            if libc::unshare(flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.status().is_ok_and(|status| status.success())
}

fn true_program() -> &'static str {
    if Path::new("/bin/true").exists() { "/bin/true" } else { "/usr/bin/true" }
}

fn find_bwrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("bwrap"))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs `bwrap ... true` with the flags trials use, most isolated first.
fn probe_bwrap(bwrap: &Path, root: bool) -> Result<BwrapSupport, String> {
    let mut first_error = None;
    for (userns, netns) in [(true, true), (false, true), (true, false), (false, false)] {
        // Without root, bwrap needs a user namespace to do anything.
        if !userns && !root {
            continue;
        }
        let mut command = Command::new(bwrap);
        command.args(super::bwrap::base_args(root, userns, netns));
        command.arg("--").arg(true_program());
        command.env_clear().stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        match command.output() {
            Ok(output) if output.status.success() => return Ok(BwrapSupport { userns, netns }),
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                first_error.get_or_insert_with(|| {
                    format!("`bwrap --ro-bind / / true` failed: {}", stderr.lines().next().unwrap_or("").trim())
                });
            }
            Err(err) => {
                first_error.get_or_insert_with(|| format!("could not run `{}`: {err}", bwrap.display()));
            }
        }
    }
    Err(first_error.unwrap_or_else(|| "bwrap needs user namespaces, which this host refuses".to_string()))
}
