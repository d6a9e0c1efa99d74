//! A trial's private writable view of a shared, read-only harness tree: a kernel overlayfs
//! mounted on the trial's `cwd` in the trial's own mount namespace, between fork and exec
//! (Debian's bubblewrap 0.8 has no `--overlay`, so the mount is made before bwrap runs).
//!
//! The lower layer (the shared copy of a harness version) is never written: every write of
//! the trial lands in its own upper layer, which no other trial sees. The mount lives in a
//! namespace that dies with the trial, so nothing is left mounted on the host.
//!
//! Root mounts it after `unshare(CLONE_NEWNS)`; anyone else in a user namespace of their
//! own (their uid mapped to itself, so files keep their owner). Whether that works here,
//! with the chosen isolation, is found by one real trial ([`usable`]); callers fall back to
//! a copy when it does not.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{IsolationChoice, Spec};

/// Layers of a trial's view, mounted on the spec's `cwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The shared tree, read-only to the trial (overlayfs never writes a lower layer).
    pub lower: PathBuf,
    /// The trial's writes (same filesystem as `workdir`).
    pub upper: PathBuf,
    /// overlayfs's own scratch folder, empty.
    pub workdir: PathBuf,
}

impl Overlay {
    /// The layers for a trial folder: `<dir>/layer/{upper,work}`, created empty.
    pub fn create_in(lower: &Path, dir: &Path) -> std::io::Result<Overlay> {
        let upper = dir.join("layer/upper");
        let workdir = dir.join("layer/work");
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&workdir)?;
        Ok(Overlay { lower: lower.to_path_buf(), upper, workdir })
    }

    /// Removes the layers (overlayfs leaves `work/work` with mode 000 behind).
    pub fn remove(&self) {
        use std::os::unix::fs::PermissionsExt;
        let inner = self.workdir.join("work");
        let _ = std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700));
        for path in [&self.upper, &self.workdir] {
            let _ = std::fs::remove_dir_all(path);
        }
        if let Some(layer) = self.upper.parent() {
            let _ = std::fs::remove_dir(layer);
        }
    }

    /// The mount's data string; `None` when a path holds a character overlayfs reads as a
    /// separator (the caller then copies instead).
    pub(crate) fn options(&self) -> Option<CString> {
        let mut text = Vec::new();
        for (key, path) in [("lowerdir", &self.lower), ("upperdir", &self.upper), ("workdir", &self.workdir)] {
            let bytes = path.as_os_str().as_bytes();
            if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\' | b'\n')) {
                return None;
            }
            if !text.is_empty() {
                text.push(b',');
            }
            text.extend_from_slice(key.as_bytes());
            text.push(b'=');
            text.extend_from_slice(bytes);
        }
        CString::new(text).ok()
    }
}

/// What the child mounts between fork and exec, prepared before the fork.
#[derive(Debug, Clone)]
pub(crate) struct ChildMount {
    pub target: CString,
    pub options: CString,
}

impl ChildMount {
    pub(crate) fn new(overlay: &Overlay, cwd: &Path) -> Result<ChildMount, String> {
        let options = overlay
            .options()
            .ok_or_else(|| format!("overlay layer paths under `{}` hold `,`, `:` or `\\`", overlay.upper.display()))?;
        let target = CString::new(cwd.as_os_str().as_bytes()).map_err(|_| "cwd holds a NUL byte".to_string())?;
        Ok(ChildMount { target, options })
    }

    /// In the child, in its own mount namespace: keep our mounts from propagating to the
    /// host, mount the overlay on the cwd and enter it (the cwd was entered before the mount
    /// and still names the folder beneath).
    ///
    /// # Safety
    /// Between fork and exec: plain system calls on memory prepared before the fork.
    pub(crate) unsafe fn apply(&self) -> std::io::Result<()> {
        let os_error = std::io::Error::last_os_error;
        // SAFETY: mount(2) and chdir(2) with NUL-terminated strings owned by `self`.
        unsafe {
            if libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(os_error());
            }
            if libc::mount(
                c"overlay".as_ptr(),
                self.target.as_ptr(),
                c"overlay".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                self.options.as_ptr().cast(),
            ) != 0
            {
                return Err(os_error());
            }
            if libc::chdir(self.target.as_ptr()) != 0 {
                return Err(os_error());
            }
        }
        Ok(())
    }
}

/// Whether a trial with `isolation` can run in an overlay on this host: found once per
/// isolation choice by a real trial that reads the lower layer and writes a file, which must
/// land in the upper layer only.
pub async fn usable(isolation: IsolationChoice) -> bool {
    static RESULTS: tokio::sync::Mutex<Vec<(IsolationChoice, bool)>> = tokio::sync::Mutex::const_new(Vec::new());
    let mut results = RESULTS.lock().await;
    if let Some((_, ok)) = results.iter().find(|(choice, _)| *choice == isolation) {
        return *ok;
    }
    let ok = match try_one(isolation).await {
        Ok(()) => true,
        Err(why) => {
            tracing::debug!(?isolation, "no overlay for trials, they get copies: {why}");
            false
        }
    };
    results.push((isolation, ok));
    ok
}

async fn try_one(isolation: IsolationChoice) -> Result<(), String> {
    if std::env::var_os("AUTOHARNESS_NO_OVERLAY").is_some() {
        return Err("AUTOHARNESS_NO_OVERLAY is set".into());
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let dir = std::env::temp_dir().join(format!("autoharness-overlay-probe-{}-{nanos:x}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let dir = std::fs::canonicalize(&dir).map_err(|e| e.to_string())?;
    let lower = dir.join("lower");
    let cwd = dir.join("cwd");
    for d in [&lower, &cwd] {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    std::fs::write(lower.join("seen"), "1").map_err(|e| e.to_string())?;
    let overlay = Overlay::create_in(&lower, &dir).map_err(|e| e.to_string())?;
    let mut spec = Spec::new("test -f seen && echo x > written", &cwd);
    spec.isolation = isolation;
    spec.overlay = Some(overlay.clone());
    let outcome = super::run(&spec).await;
    let result = if !outcome.status.success() {
        Err(format!("{:?}: {}", outcome.status, outcome.stderr.text().trim()))
    } else if !overlay.upper.join("written").is_file() || lower.join("written").exists() || cwd.join("written").exists()
    {
        Err("the write did not land in the upper layer only".into())
    } else {
        Ok(())
    };
    overlay.remove();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
