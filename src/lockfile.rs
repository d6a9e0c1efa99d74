//! Advisory locks between autoharness processes (`flock(2)` on a small file), and the
//! paths keyed by a store that they guard.
//!
//! `flock` rather than a pid file: the kernel drops the lock when the last descriptor of
//! its holder closes, so a process killed with SIGKILL never leaves a lock behind and a
//! recycled pid is never mistaken for the holder. Descriptors are opened close-on-exec,
//! so trials never inherit (and never prolong) a lock.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct FileLock {
    file: File,
    pub path: PathBuf,
}

impl FileLock {
    /// Write who holds the lock (for the message a waiting or refused process prints).
    pub fn set_holder(&mut self, text: &str) {
        if self.file.set_len(0).is_ok() && self.file.rewind().is_ok() {
            let _ = self.file.write_all(text.as_bytes());
        }
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)
}

fn flock(file: &File, flags: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), flags) } == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Take the lock at `path` if nobody holds it: `Ok(None)` when another process does,
/// with what it wrote as holder.
pub fn try_lock(path: &Path) -> std::io::Result<Result<FileLock, String>> {
    let mut file = open(path)?;
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Ok(FileLock { file, path: path.to_path_buf() })),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Ok(Err(holder.trim().to_string()))
        }
        Err(e) => Err(e),
    }
}

/// Take the lock at `path`, waiting for whoever holds it. Blocks the thread: call it from
/// synchronous code or `spawn_blocking`.
pub fn lock(path: &Path) -> std::io::Result<FileLock> {
    let file = open(path)?;
    flock(&file, libc::LOCK_EX)?;
    Ok(FileLock { file, path: path.to_path_buf() })
}

/// Whether a lock file is held by a live process right now (without keeping it).
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = std::fs::OpenOptions::new().read(true).open(path) else { return false };
    match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(()) => false,
        Err(e) => e.raw_os_error() == Some(libc::EWOULDBLOCK),
    }
}

/// `<folder>/<stem><suffix>` beside the store file `db`: what belongs to one store (its
/// locks, its trial folders) is named after it, so two stores in one folder never share.
/// Absolute (from the current directory when `db` is relative): trials run elsewhere.
pub fn beside_store(db: &Path, suffix: &str) -> PathBuf {
    let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
    let stem = db.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    let dir = db.parent().unwrap_or(Path::new("/"));
    dir.join(format!("{stem}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockfile_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let mut first = try_lock(&path).unwrap().unwrap();
        first.set_holder("pid 42");
        assert!(is_held(&path));
        // A second open file description conflicts even within one process.
        assert_eq!(try_lock(&path).unwrap().unwrap_err(), "pid 42");
        drop(first);
        assert!(!is_held(&path));
        assert!(try_lock(&path).unwrap().is_ok());
    }

    #[test]
    fn lockfile_paths_are_keyed_by_store() {
        assert_eq!(
            beside_store(Path::new("/p/.autoharness/state.db"), ".lock"),
            Path::new("/p/.autoharness/state.lock")
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(beside_store(Path::new("other.db"), ".run.lock"), cwd.join("other.run.lock"));
    }
}
