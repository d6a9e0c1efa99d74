//! One copy of a harness version shared by all its trials, and each trial's private view
//! of it.
//!
//! Copying the harness root for every trial cost seconds per trial on a large root (8.7 s
//! on 50 MB of vendored packages). The root is now copied once per content hash into
//! `<roots>/<hash>/` and never written again; each trial then gets, in order of
//! preference:
//! - an overlay: the shared copy as the read-only lower layer, the trial's own upper layer
//!   for its writes (`sandbox::Overlay`), mounted in the trial's namespace: no copy at all;
//! - a copy-on-write clone of the shared copy (FICLONE on btrfs, XFS…);
//! - a plain copy of the shared copy, which always works.
//!
//! Either way a trial's writes are its own: never seen by another trial nor by the shared
//! copy.
//!
//! The shared copy is made in a temporary folder and renamed into place, so a folder named
//! by a hash is always complete, and two processes copying the same version at once both
//! end up using the one that was renamed first.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::harness::workspace::{self, Filter};
use crate::sandbox::Overlay;

/// The shared copy of the harness under `root` whose content hash is `hash`, made under
/// `roots` if it is not there yet.
pub fn shared(root: &Path, filter: &Filter, hash: &str, roots: &Path) -> Result<PathBuf> {
    // The hash names a folder: only its hex digits are used.
    let name: String = hash.chars().filter(char::is_ascii_hexdigit).take(64).collect();
    anyhow::ensure!(!name.is_empty(), "harness hash `{hash}` is not hexadecimal");
    let dest = roots.join(&name);
    if dest.is_dir() {
        return Ok(dest);
    }
    std::fs::create_dir_all(roots).with_context(|| format!("cannot create `{}`", roots.display()))?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let tmp = roots.join(format!(".tmp-{name}-{}-{nanos:x}", std::process::id()));
    let copied = workspace::private_copy(root, &tmp, filter);
    if let Err(err) = copied {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(err.context(format!("cannot make the shared copy of `{}`", root.display())));
    }
    // The copy is kept under the hash for good: it must hold what the hash says, not a tree
    // someone was editing while it was copied.
    match workspace::content_hash(&tmp, filter) {
        Ok(got) if got == hash => {}
        Ok(got) => {
            let _ = std::fs::remove_dir_all(&tmp);
            anyhow::bail!(
                "the harness under `{}` changed while autoharness copied it (content hash {} instead of {}): \
                 run the command again once its files stop changing",
                root.display(),
                &got[..12.min(got.len())],
                &hash[..12.min(hash.len())]
            );
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(err.context(format!("cannot check the shared copy of `{}`", root.display())));
        }
    }
    match std::fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another process renamed its copy first: the same content, use it.
        Err(_) if dest.is_dir() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(err) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(err).with_context(|| format!("cannot move the shared copy into `{}`", dest.display()))
        }
    }
}

/// How a trial's `work/` folder holds the harness.
#[derive(Debug, Clone)]
pub enum View {
    /// `work/` is an empty mount point: the sandbox mounts this overlay on it.
    Overlay(Overlay),
    /// `work/` is a clone (`reflinked` files) or a copy of the shared copy.
    Copy { reflinked: usize },
}

impl View {
    /// The trial's private view of `shared` in `dir/work` (`dir` exists). `overlay`: the
    /// sandbox can mount one for this trial's isolation.
    pub fn make(shared: &Path, dir: &Path, overlay: bool) -> Result<(PathBuf, View)> {
        let work = dir.join("work");
        if overlay {
            std::fs::create_dir(&work).with_context(|| format!("cannot create `{}`", work.display()))?;
            let layers = Overlay::create_in(shared, dir)
                .with_context(|| format!("cannot create layers in `{}`", dir.display()))?;
            if layers.options().is_some() {
                return Ok((work, View::Overlay(layers)));
            }
            layers.remove();
            std::fs::remove_dir(&work).with_context(|| format!("cannot clear `{}`", work.display()))?;
        }
        // The shared copy is already filtered: everything in it is copied.
        let stats = workspace::private_copy(shared, &work, &Filter::everything())?;
        Ok((work, View::Copy { reflinked: stats.reflinked }))
    }

    pub fn overlay(&self) -> Option<&Overlay> {
        match self {
            View::Overlay(layers) => Some(layers),
            View::Copy { .. } => None,
        }
    }

    /// Removes the trial's view (`work`, and the layers of an overlay).
    pub fn remove(&self, work: &Path) {
        let _ = std::fs::remove_dir_all(work);
        if let View::Overlay(layers) = self {
            layers.remove();
        }
    }
}
