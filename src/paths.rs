//! Paths built from untrusted text: file content (case ids, cluster ids, harness names),
//! model answers and patches. Every such join goes through [`safe_join`], so what a file
//! or a model wrote can never name a place outside the folder it belongs in, nor a
//! version-control folder whose config a later `git status` would obey.

use std::path::{Path, PathBuf};

/// Folders of version-control systems: writing inside one can make the VCS run commands
/// (`core.fsmonitor`, hooks), so nothing untrusted may name one at any depth.
pub const VCS_DIRS: [&str; 9] = [".git", ".hg", ".svn", ".jj", "_darcs", ".bzr", ".pijul", ".fslckout", "_FOSSIL_"];

/// Whether `component` names a VCS control folder (case-insensitively: on macOS and
/// Windows `.GIT` is `.git`; a trailing dot or space is dropped by Windows too).
pub fn is_vcs_component(component: &str) -> bool {
    let c = component.trim_end_matches(['.', ' ']);
    let c = if c.is_empty() { component } else { c };
    VCS_DIRS.iter().any(|v| c.eq_ignore_ascii_case(v))
}

/// Why an untrusted path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    #[error("is empty")]
    Empty,
    #[error("has a NUL byte")]
    Nul,
    #[error("is an absolute path")]
    Absolute,
    #[error("has a `..` component, which leaves its folder")]
    ParentDir,
    #[error("names the version-control folder `{0}`, which autoharness never writes into")]
    Vcs(String),
    #[error("goes through the symlink `{0}`")]
    Symlink(String),
}

/// The clean `/`-joined components of a relative path, or why it cannot be used. `.` and
/// empty components are dropped; `..`, absolute paths, NULs and VCS folders are refused.
pub fn clean_relative(untrusted: &str) -> Result<String, PathRefusal> {
    if untrusted.contains('\0') {
        return Err(PathRefusal::Nul);
    }
    if untrusted.starts_with('/') {
        return Err(PathRefusal::Absolute);
    }
    let mut parts = Vec::new();
    for part in untrusted.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(PathRefusal::ParentDir),
            p if is_vcs_component(p) => return Err(PathRefusal::Vcs(p.to_string())),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(PathRefusal::Empty);
    }
    Ok(parts.join("/"))
}

/// `root` joined with an untrusted relative path, checked to stay inside `root`: no
/// absolute path, no `..`, no VCS folder, and no existing symlink on the way (a symlink
/// could point anywhere). Check before creating or deleting anything at the result.
pub fn safe_join(root: &Path, untrusted: &str) -> anyhow::Result<PathBuf> {
    let refuse = |why: PathRefusal| {
        anyhow::anyhow!(
            "`{}` cannot be used as a path under `{}`: it {why}; ids and names that become paths must be plain \
             relative names",
            untrusted.escape_debug(),
            root.display()
        )
    };
    let rel = clean_relative(untrusted).map_err(refuse)?;
    let mut at = root.to_path_buf();
    for part in rel.split('/') {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refuse(PathRefusal::Symlink(at.display().to_string())));
            }
            Ok(_) => {}
            // Nothing exists from here on: no symlink can be on the rest of the way.
            Err(_) => break,
        }
    }
    Ok(root.join(rel))
}

/// One path component from untrusted text (a case id, a cluster id): like [`safe_join`],
/// and also without `/`, so the name is exactly one folder or file under `root`.
pub fn safe_name(root: &Path, untrusted: &str) -> anyhow::Result<PathBuf> {
    if untrusted.contains('/') || matches!(untrusted, "" | "." | "..") {
        anyhow::bail!(
            "`{}` cannot be used as a name under `{}`: a name is one path component (no `/`, not `.` or `..`)",
            untrusted.escape_debug(),
            root.display()
        );
    }
    safe_join(root, untrusted)
}

/// What a special file is (FIFO, socket, device), or `None` for a regular file, folder or
/// link. Such files are never opened for reading: a FIFO blocks until a writer comes.
pub fn special_kind(file_type: std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if file_type.is_socket() {
        Some("a socket")
    } else if file_type.is_block_device() || file_type.is_char_device() {
        Some("a device")
    } else {
        None
    }
}

/// The reason a special file is skipped, for reports.
pub fn special_reason(kind: &str) -> String {
    format!("is {kind}, not a regular file: skipped without reading (it could block or never end)")
}

/// Why a path given on the command line cannot be read, in words: missing, a symlink
/// loop, no permission. `Ok` when it can be stat'ed (what it is is the caller's business).
pub fn check_input(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(describe_io(path, &e)),
    }
}

/// `` `path` does not exist `` / `` is a symlink loop `` / … for an I/O error on `path`.
pub fn describe_io(path: &Path, e: &std::io::Error) -> String {
    let p = path.display();
    match e.raw_os_error() {
        Some(libc::ELOOP) => {
            format!("`{p}` is a symlink loop (too many levels of symbolic links); fix or remove the link")
        }
        Some(libc::ENOENT) => match std::fs::symlink_metadata(path) {
            Ok(_) => format!("`{p}` is a symlink to a path that does not exist"),
            Err(_) => format!("`{p}` does not exist"),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => format!("`{p}` cannot be read: permission denied"),
        Some(libc::ENOSPC) => format!("`{p}`: no space left on the device; free some space and retry"),
        Some(libc::EROFS) => format!("`{p}` is on a read-only file system"),
        Some(libc::EISDIR) => format!("`{p}` is a directory, not a file"),
        Some(libc::ENOTDIR) => format!("`{p}`: a part of the path is not a directory"),
        _ => format!("`{p}`: {e}"),
    }
}

/// An I/O error on `path`, as an error that names it (`describe_io`), same kind.
pub fn named_io(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), describe_io(path, &e))
}

/// `bytes` at `path` through `tmp` and a rename, so a crash never leaves half a file. On a
/// failure (a full disk) the temporary file is removed, the file at `path` is as it was,
/// and the error names the file.
pub fn write_atomic(path: &Path, tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| named_io(dir, e))?;
    }
    if let Err(e) = std::fs::write(tmp, bytes) {
        let _ = std::fs::remove_file(tmp);
        return Err(named_io(path, e));
    }
    std::fs::rename(tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        named_io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcs_folders_at_any_depth_and_case() {
        for bad in
            [".git/config", "prompts/.git/config", "a/.GIT/hooks/pre-commit", "x/.Hg/hgrc", "_darcs/prefs", "a/.git./x"]
        {
            assert!(matches!(clean_relative(bad), Err(PathRefusal::Vcs(_))), "{bad}");
        }
        for good in ["prompts/system.md", ".github/workflows/ci.yml", ".gitignore", "a/.gitkeep", "git/x"] {
            assert!(clean_relative(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn joins_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(safe_join(root, "./a//b").unwrap(), root.join("a/b"));
        for bad in ["/etc/passwd", "../x", "a/../../x", "", ".", "a\0b"] {
            assert!(safe_join(root, bad).is_err(), "{bad:?}");
        }
        std::os::unix::fs::symlink("/", root.join("out")).unwrap();
        let e = safe_join(root, "out/etc").unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        assert!(safe_name(root, "a/b").is_err());
        assert!(safe_name(root, "..").is_err());
        assert_eq!(safe_name(root, "c-1").unwrap(), root.join("c-1"));
    }
}
