//! The landlock ruleset for a trial when bubblewrap is absent: read and execute the
//! system folders (minus the secrets in `/etc`, see `view`), `/proc` and the granted
//! paths, nothing else of the host; write only in the private copy,
//! the scratch folder and the spec's writable paths; TCP denied for `Network::None` when
//! the kernel has network rules (ABI 4); signals and abstract sockets scoped to the trial
//! (ABI 6). The ruleset is built here, in the parent; the child only calls
//! `landlock_restrict_self` on its descriptor between fork and exec.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope,
};

/// The ABI whose access rights we ask for; older kernels get the subset they know.
const TARGET_ABI: ABI = ABI::V6;

/// Device nodes a harness may read and write; the rest of /dev (disks!) stays out of reach.
const DEVICES: [&str; 7] =
    ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"];
/// Device folders a harness may use fully.
const DEVICE_DIRS: [&str; 3] = ["/dev/shm", "/dev/pts", "/dev/fd"];

/// A created ruleset, ready to be enforced by the child.
pub(crate) struct Prepared {
    fd: OwnedFd,
    /// TCP connect and bind are denied.
    pub(crate) tcp_denied: bool,
    /// The access bits of a writable folder, for a rule the child adds itself (`add_rule_raw`).
    pub(crate) write_access: u64,
}

impl Prepared {
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Builds the ruleset: only what is listed is reachable.
pub(crate) fn prepare(
    readable: &[PathBuf],
    writable: &[PathBuf],
    deny_tcp: bool,
    abi: i32,
) -> Result<Prepared, String> {
    let fail = |err: landlock::RulesetError| format!("landlock: {err}");
    let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(TARGET_ABI)).map_err(fail)?;
    let tcp_denied = deny_tcp && abi >= 4;
    if tcp_denied {
        ruleset = ruleset.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp).map_err(fail)?;
    }
    if abi >= 6 {
        ruleset = ruleset.scope(Scope::from_all(TARGET_ABI)).map_err(fail)?;
    }
    let mut created = ruleset.create().map_err(fail)?;

    let read = AccessFs::from_read(TARGET_ABI);
    let all = AccessFs::from_all(TARGET_ABI);
    let (secret_files, secret_dirs) = super::view::secrets();
    let secrets: Vec<PathBuf> = secret_files.into_iter().chain(secret_dirs).collect();
    let mut system = vec![PathBuf::from("/proc")];
    for path in super::view::system_paths() {
        // Links into /usr are covered by /usr: landlock sees resolved paths.
        if let super::view::SystemPath::Dir(dir) = path {
            if secrets.iter().any(|secret| secret.starts_with(&dir)) {
                system.extend(readable_roots(&dir, &secrets));
            } else {
                system.push(dir);
            }
        }
    }
    for root in system {
        // An entry listed a moment ago may be gone (another trial's scratch folder).
        if !root.exists() {
            continue;
        }
        created = add(created, &root, read).map_err(|err| format!("landlock rule for `{}`: {err}", root.display()))?;
    }
    for device in DEVICES {
        if Path::new(device).exists() {
            created =
                add(created, Path::new(device), all).map_err(|err| format!("landlock rule for `{device}`: {err}"))?;
        }
    }
    for dir in DEVICE_DIRS {
        if Path::new(dir).exists() {
            created = add(created, Path::new(dir), all).map_err(|err| format!("landlock rule for `{dir}`: {err}"))?;
        }
    }
    for path in readable {
        created = add(created, path, read).map_err(|err| format!("landlock rule for `{}`: {err}", path.display()))?;
    }
    for path in writable {
        created = add(created, path, all).map_err(|err| format!("landlock rule for `{}`: {err}", path.display()))?;
    }
    let fd: Option<OwnedFd> = created.into();
    let fd = fd.ok_or_else(|| "landlock: the kernel refused to create a ruleset".to_string())?;
    let write_access = (all & AccessFs::from_all(ABI::from(abi))).bits();
    Ok(Prepared { fd, tcp_denied, write_access })
}

fn add(
    created: landlock::RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
) -> Result<landlock::RulesetCreated, String> {
    let fd = PathFd::new(path).map_err(|err| err.to_string())?;
    // Rights that only make sense on folders are refused by the kernel for files.
    let access = if path.is_dir() { access } else { access & AccessFs::from_file(TARGET_ABI) };
    created.add_rule(PathBeneath::new(fd, access)).map_err(|err| err.to_string())
}

/// The smallest set of paths whose union is everything under `base` except `hidden`: each
/// ancestor of a hidden path is replaced by its entries, minus the one leading to it.
pub(crate) fn readable_roots(base: &Path, hidden: &[PathBuf]) -> Vec<PathBuf> {
    let mut roots = vec![base.to_path_buf()];
    for hide in hidden {
        if hide.as_os_str().is_empty() || hide == base || !hide.starts_with(base) {
            continue;
        }
        while let Some(index) = roots.iter().position(|root| hide.starts_with(root)) {
            let root = roots.swap_remove(index);
            if &root == hide {
                break;
            }
            let Ok(entries) = std::fs::read_dir(&root) else {
                break;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                // A symlink that leads into a hidden folder would reopen it.
                let is_symlink = entry.file_type().is_ok_and(|t| t.is_symlink());
                if is_symlink
                    && std::fs::canonicalize(&path).is_ok_and(|target| hidden.iter().any(|h| target.starts_with(h)))
                {
                    continue;
                }
                roots.push(path);
            }
        }
    }
    // Entries beneath a folder hidden later (a home inside the temp folder) go too.
    roots.retain(|root| !hidden.iter().any(|hide| root.starts_with(hide)));
    roots.sort();
    roots
}

/// Enforces the ruleset on the calling process. Runs between fork and exec, so it makes
/// only raw system calls.
/// Between fork and exec: lets the ruleset write beneath `dir`. An overlay mounted in the
/// child is not covered by the rule on the folder beneath it, so the child adds one for the
/// mount itself.
///
/// # Safety
/// Between fork and exec: plain system calls on memory owned by the caller.
pub(crate) unsafe fn add_rule_raw(ruleset_fd: RawFd, dir: &std::ffi::CStr, access: u64) -> std::io::Result<()> {
    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_long = 1;
    // SAFETY: open, landlock_add_rule and close on memory owned by the caller.
    unsafe {
        let fd = libc::open(dir.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let attr = PathBeneathAttr { allowed_access: access, parent_fd: fd };
        let added = libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset_fd,
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        );
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if added != 0 {
            return Err(error);
        }
    }
    Ok(())
}

pub(crate) fn restrict_self(ruleset_fd: RawFd) -> std::io::Result<()> {
    // SAFETY: raw system calls with integer arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_landlock_restrict_self, ruleset_fd, 0u32) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_readable_roots_leave_out_hidden_folders() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("secret")).unwrap();
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let roots = readable_roots(Path::new("/"), std::slice::from_ref(&home));
        assert!(!roots.iter().any(|root| home.starts_with(root)), "{roots:?}");
        assert!(roots.contains(&dir.path().join("other")));
        assert!(roots.contains(&dir.path().join("file")));
        assert!(roots.contains(&PathBuf::from("/usr")) || !Path::new("/usr").exists());
        // Hiding a parent after a child still hides everything beneath it.
        let roots = readable_roots(Path::new("/"), &[home.join("secret"), dir.path().to_path_buf()]);
        assert!(!roots.iter().any(|root| root.starts_with(dir.path()) || dir.path().starts_with(root)), "{roots:?}");
    }
}
