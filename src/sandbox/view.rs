//! What of the host's files a trial sees, the same under bubblewrap and landlock: the
//! system folders read-only, minus the secrets kept in `/etc`, and nothing else of the
//! host — no home, no `/tmp`, no `/work`, no other repository, not the project's store
//! nor its holdout cases. The trial's own folders (private copy, scratch, io) and the
//! paths its spec grants are added by the caller.

use std::path::{Path, PathBuf};

/// Host folders every trial may read (and execute from). Merged-usr hosts have some of
/// them as symlinks into `/usr`; those are recreated as links.
pub(crate) const SYSTEM_PATHS: [&str; 9] =
    ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys"];

/// Files and folders under the system folders that a trial must not read: password
/// hashes, host keys, TLS private keys.
const SECRET_FILES: [&str; 6] =
    ["/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/security/opasswd", "/etc/sudoers"];
const SECRET_DIRS: [&str; 3] = ["/etc/ssl/private", "/etc/sudoers.d", "/etc/ssh/keys"];

/// The secrets present on this host: files (`/etc/shadow`, `/etc/ssh/ssh_host_*_key`)
/// and folders.
pub(crate) fn secrets() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files: Vec<PathBuf> = SECRET_FILES.iter().map(PathBuf::from).filter(|p| p.exists()).collect();
    if let Ok(listing) = std::fs::read_dir("/etc/ssh") {
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Private host keys; their `.pub` halves are public.
            if name.starts_with("ssh_host_") && name.ends_with("_key") {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let dirs = SECRET_DIRS.iter().map(PathBuf::from).filter(|p| p.is_dir()).collect();
    (files, dirs)
}

/// The system paths present here, each as a folder to bind or a symlink to recreate.
pub(crate) enum SystemPath {
    Dir(PathBuf),
    Link { path: PathBuf, target: PathBuf },
}

pub(crate) fn system_paths() -> Vec<SystemPath> {
    SYSTEM_PATHS
        .iter()
        .filter_map(|path| {
            let path = Path::new(path);
            let meta = std::fs::symlink_metadata(path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(path).ok()?;
                // A link that leaves the system folders would grant what it points at.
                let resolved = std::fs::canonicalize(path).ok()?;
                let inside = SYSTEM_PATHS.iter().any(|sys| resolved.starts_with(sys) && resolved != Path::new("/"));
                inside.then(|| SystemPath::Link { path: path.to_path_buf(), target })
            } else {
                meta.is_dir().then(|| SystemPath::Dir(path.to_path_buf()))
            }
        })
        .collect()
}

/// Extra folders a trial on the host's network needs: where `/etc/resolv.conf` really
/// is (`/run/systemd/resolve/…` on systemd hosts).
pub(crate) fn network_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(target) = std::fs::canonicalize("/etc/resolv.conf")
        && !target.starts_with("/etc")
        && let Some(parent) = target.parent()
    {
        out.push(parent.to_path_buf());
    }
    out
}
