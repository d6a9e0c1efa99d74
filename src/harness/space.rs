//! A process's private folder for trial copies, a gate's candidate and check runs.
//!
//! Two commands on one store (two `gate`s, an `eval` and a `run`) used to share
//! `.autoharness/trials/<hash>/<case>/seed-N`: one cleared the other's folder mid-trial and
//! the broken trial was recorded (and cached) as a real failure. Each process now claims
//! `<store>.trials/p<pid>-<n>/` under a lock file `p<pid>-<n>.owner` it holds for its whole
//! life, so no other process ever writes there.
//!
//! A process that ends cleanly marks its folder done and keeps it (each trial's `io/`,
//! trace and result, is the evidence its record points to). A folder whose owner died
//! without marking it (kill -9, a crash) is swept by the next process that claims one:
//! the lock, not the pid, says the owner is dead, so a recycled pid never keeps a folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::lockfile::{self, FileLock};

const OWNER: &str = ".owner";
const DONE: &str = "done";

#[derive(Debug)]
pub struct TrialSpace {
    dir: PathBuf,
    lock: FileLock,
}

impl TrialSpace {
    /// Sweep what dead processes left under `parent`, then claim a new private folder there.
    pub fn claim(parent: &Path) -> anyhow::Result<TrialSpace> {
        static CLAIMED: AtomicU64 = AtomicU64::new(0);
        sweep(parent);
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
        let pid = std::process::id();
        for _ in 0..100 {
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let name = format!("p{pid}-{:x}{:x}", nanos.as_micros(), CLAIMED.fetch_add(1, Ordering::Relaxed));
            let owner = parent.join(format!("{name}{OWNER}"));
            let dir = parent.join(&name);
            if owner.exists() || dir.exists() {
                continue;
            }
            // The owner file exists (and is held) before the folder does: a sweeper never
            // sees a folder of a live process without its held lock.
            let Ok(mut lock) = lockfile::try_lock(&owner)
                .with_context(|| format!("cannot create the lock file `{}`", owner.display()))?
            else {
                continue;
            };
            // A sweeper may have removed the file between its creation and our lock.
            if !owner.exists() {
                continue;
            }
            lock.set_holder(&format!("pid {pid}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(TrialSpace { dir, lock }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(&owner);
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("cannot create `{}`", dir.display())),
            }
        }
        anyhow::bail!("cannot claim a private trial folder under `{}`", parent.display())
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The work ended as planned: keep the folder as evidence (trial traces and results).
    /// A space dropped without this (an error, an interrupt) is swept by the next process.
    pub fn finish(mut self) {
        self.lock.set_holder(DONE);
    }
}

/// The folders under `parent` whose owner no longer runs and did not finish: removed.
/// Returns how many. Folders of live processes, and finished ones, are left alone.
pub fn sweep(parent: &Path) -> usize {
    let Ok(listing) = std::fs::read_dir(parent) else { return 0 };
    let mut removed = 0;
    for entry in listing.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(OWNER) else {
            // A folder with no owner file: left by a sweep that was itself interrupted.
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !parent.join(format!("{name}{OWNER}")).exists() {
                // Only ours: `p<pid>-<n>`.
                if name.starts_with('p') && name.contains('-') && std::fs::remove_dir_all(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            continue;
        };
        let owner = entry.path();
        // Holding the lock while removing keeps two sweepers (and the owner) apart.
        let Ok(Ok(lock)) = lockfile::try_lock(&owner) else { continue };
        let finished = std::fs::read_to_string(&owner).is_ok_and(|t| t.trim() == DONE);
        if finished {
            continue;
        }
        let dir = parent.join(stem);
        if !dir.exists() || std::fs::remove_dir_all(&dir).is_ok() {
            let _ = std::fs::remove_file(&owner);
            removed += 1;
        }
        drop(lock);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_is_private_and_swept_only_when_its_owner_is_gone() {
        let parent = tempfile::tempdir().unwrap();
        let a = TrialSpace::claim(parent.path()).unwrap();
        let b = TrialSpace::claim(parent.path()).unwrap();
        assert_ne!(a.path(), b.path());
        std::fs::write(a.path().join("x"), "a's").unwrap();
        // A live owner's folder survives a sweep.
        assert_eq!(sweep(parent.path()), 0);
        assert!(a.path().join("x").exists());
        // Dropped without finishing (what a crash leaves): swept.
        let a_dir = a.path().to_path_buf();
        drop(a);
        // Finished: kept as evidence.
        let b_dir = b.path().to_path_buf();
        b.finish();
        assert_eq!(sweep(parent.path()), 1);
        assert!(!a_dir.exists());
        assert!(b_dir.exists());
    }
}
