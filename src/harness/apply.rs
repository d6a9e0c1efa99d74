//! Accepted patches applied to the user's tree so that a crash at any moment can be resumed.
//!
//! `patch::apply` writes one patch's files only once every hunk has landed, but a run applies
//! several patches, each to several files: killed half way, the tree held some of them, and
//! the resumed run's `patch::apply` failed on hunks already applied. So the outcome is decided
//! first and recorded, then carried out file by file, each step one that can be redone:
//!
//! 1. **Plan**: the touched files are copied to a scratch folder, every patch is applied
//!    there in order, and each file's content before (a hash; absent) and after (the text;
//!    deleted) is taken.
//! 2. **Intent**: the plan is written to `apply-intent.json` in the run's folder (temporary
//!    file, fsync, rename) before the tree is touched.
//! 3. **Apply**: each file is written through a temporary file renamed over it (or removed).
//!    A file already as planned is left alone, so a resume redoes only what is missing; a
//!    file that is neither as before nor as planned was changed by someone else and stops
//!    the apply, naming it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::harness::patch::{self, Patch};

/// What applying a run's accepted patches will do, recorded before the tree is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The accepted proposals this plan covers (their diff hashes), in order.
    pub proposals: Vec<String>,
    pub files: Vec<FileChange>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    /// Relative to the harness root.
    pub path: String,
    /// blake3 of the content before; `None`: the file did not exist.
    pub before: Option<String>,
    /// The content after; `None`: the file is deleted.
    pub after: Option<String>,
    /// Permission bits after.
    pub mode: Option<u32>,
}

/// What a file at `path` is now, comparable with `FileChange::before`.
fn state_of(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot inspect `{}`", path.display())),
        Ok(m) if m.is_file() => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
            Ok(Some(blake3::hash(&bytes).to_hex().to_string()))
        }
        Ok(_) => {
            anyhow::bail!("`{}` is not a regular file; accepted patches change only regular files", path.display())
        }
    }
}

fn hash_text(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// Step 1: the content every touched file will have, from the tree at `root` as it is now.
pub fn plan(patches: &[(String, Patch)], root: &Path, scratch: &Path) -> anyhow::Result<Intent> {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).with_context(|| format!("cannot clear `{}`", scratch.display()))?;
    }
    std::fs::create_dir_all(scratch).with_context(|| format!("cannot create `{}`", scratch.display()))?;
    let mut paths: Vec<String> = Vec::new();
    for (_, p) in patches {
        for t in p.touched_paths() {
            if !paths.iter().any(|x| x == t) {
                paths.push(t.to_string());
            }
        }
    }
    let mut befores = Vec::new();
    for rel in &paths {
        let from = crate::paths::safe_join(root, rel)?;
        let before = state_of(&from)?;
        if before.is_some() {
            let to = scratch.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
            }
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy `{}` to `{}`", from.display(), to.display()))?;
        }
        befores.push(before);
    }
    for (_, p) in patches {
        patch::apply(p, scratch).map_err(|e| anyhow::anyhow!("the accepted patch does not apply to your tree: {e}"))?;
    }
    let mut files = Vec::new();
    for (rel, before) in paths.iter().zip(befores) {
        let out = scratch.join(rel);
        let (after, mode) = match std::fs::symlink_metadata(&out) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
            Err(e) => return Err(e).with_context(|| format!("cannot inspect `{}`", out.display())),
            Ok(m) => {
                let bytes = std::fs::read(&out).with_context(|| format!("cannot read `{}`", out.display()))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| anyhow::anyhow!("the accepted patches make `{rel}` a file that is not UTF-8 text"))?;
                (Some(text), Some(m.permissions().mode() & 0o777))
            }
        };
        if after.as_deref().map(hash_text) != before {
            files.push(FileChange { path: rel.clone(), before, after, mode });
        }
    }
    let _ = std::fs::remove_dir_all(scratch);
    Ok(Intent { proposals: patches.iter().map(|(id, _)| id.clone()).collect(), files })
}

/// `bytes` at `path` through a temporary file beside it, flushed, then renamed over it.
fn replace(path: &Path, bytes: &[u8], mode: Option<u32>) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.autoharness-apply"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write `{}`", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace `{}`", path.display()))
}

fn read_intent(path: &Path) -> anyhow::Result<Option<Intent>> {
    match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            crate::exit::hinted(
                format!("`{}` is not a readable apply plan: {e}", path.display()),
                "it is written by `run --apply`/`--branch`; if the tree holds none of the run's changes yet, delete it and resume",
            )
        }),
    }
}

fn write_intent(path: &Path, intent: &Intent) -> anyhow::Result<()> {
    replace(path, &serde_json::to_vec_pretty(intent)?, None)?;
    // The rename is durable only once the folder is.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

/// Steps 2 and 3. Patches an earlier, interrupted apply planned are finished from its
/// recorded plan (the tree may hold part of them); patches accepted since are planned on
/// top. Returns the files changed now.
pub fn to_tree(patches: &[(String, Patch)], root: &Path, intent_path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let mut done: Vec<String> = Vec::new();
    if let Some(old) = read_intent(intent_path)? {
        changed.extend(carry_out(&old, root, intent_path)?);
        done = old.proposals;
    }
    let rest: Vec<(String, Patch)> = patches.iter().filter(|(id, _)| !done.contains(id)).cloned().collect();
    if rest.is_empty() {
        return Ok(changed);
    }
    let scratch = intent_path.with_file_name("apply-scratch");
    let mut intent = plan(&rest, root, &scratch)?;
    done.extend(intent.proposals);
    intent.proposals = done;
    write_intent(intent_path, &intent)?;
    crate::crash::point("apply_planned");
    changed.extend(carry_out(&intent, root, intent_path)?);
    Ok(changed)
}

/// A resumed run's baseline is a copy of the user's tree plus its accepted patches, but a
/// crash inside the apply left the tree holding some or all of them already: the patches a
/// recorded plan covers are brought into `copy` from the plan (whatever part of them the
/// tree held), not applied again. Returns the proposals so covered.
pub fn replay_planned(copy: &Path, intent_path: &Path) -> anyhow::Result<Vec<String>> {
    let Some(intent) = read_intent(intent_path)? else { return Ok(Vec::new()) };
    carry_out(&intent, copy, intent_path)?;
    Ok(intent.proposals)
}

fn carry_out(intent: &Intent, root: &Path, intent_path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    for f in &intent.files {
        let full = crate::paths::safe_join(root, &f.path)?;
        let now = state_of(&full)?;
        if now == f.after.as_deref().map(hash_text) {
            continue;
        }
        if now != f.before {
            return Err(crate::exit::hinted(
                format!(
                    "`{}` changed while the accepted patches were being applied: it is neither as it was nor as planned",
                    full.display()
                ),
                format!(
                    "restore it and resume, or apply the run's accepted.patch yourself; the plan is in `{}`",
                    intent_path.display()
                ),
            ));
        }
        match &f.after {
            Some(text) => {
                if let Some(parent) = full.parent() {
                    std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
                }
                replace(&full, text.as_bytes(), f.mode)?;
            }
            None => std::fs::remove_file(&full).with_context(|| format!("cannot remove `{}`", full.display()))?,
        }
        changed.push(full);
        crate::crash::point("apply_file");
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(diff: &str) -> Patch {
        let mut p = patch::parse(diff).unwrap();
        patch::normalize_paths(&mut p, None);
        p
    }

    const ONE: &str = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n";
    const TWO: &str = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n-one\n+ONE\n TWO\n--- /dev/null\n+++ b/new/b.txt\n@@ -0,0 +1 @@\n+bee\n--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n";

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.txt"), "one\ntwo\n").unwrap();
        std::fs::write(d.path().join("gone.txt"), "bye\n").unwrap();
        d
    }

    #[test]
    fn applying_again_after_any_prefix_of_the_writes_ends_the_same() {
        let patches = vec![("p1".to_string(), parsed(ONE)), ("p2".to_string(), parsed(TWO))];
        let whole = tree();
        let state = tempfile::tempdir().unwrap();
        let intent = state.path().join("apply-intent.json");
        to_tree(&patches, whole.path(), &intent).unwrap();
        assert_eq!(std::fs::read_to_string(whole.path().join("a.txt")).unwrap(), "ONE\nTWO\n");
        assert_eq!(std::fs::read_to_string(whole.path().join("new/b.txt")).unwrap(), "bee\n");
        assert!(!whole.path().join("gone.txt").exists());
        // Again: nothing to do, no error (the old code failed here: hunks already applied).
        assert!(to_tree(&patches, whole.path(), &intent).unwrap().is_empty());
        // A crash after k of the planned writes: the plan is recorded, k files are written.
        let plan = read_intent(&intent).unwrap().unwrap();
        for k in 0..=plan.files.len() {
            let t = tree();
            let s = tempfile::tempdir().unwrap();
            let ip = s.path().join("apply-intent.json");
            write_intent(&ip, &plan).unwrap();
            for f in &plan.files[..k] {
                let full = t.path().join(&f.path);
                match &f.after {
                    Some(text) => {
                        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                        std::fs::write(&full, text).unwrap();
                    }
                    None => std::fs::remove_file(&full).unwrap(),
                }
            }
            let redone = to_tree(&patches, t.path(), &ip).unwrap();
            assert_eq!(redone.len(), plan.files.len() - k, "after {k} writes");
            for f in ["a.txt", "new/b.txt"] {
                assert_eq!(std::fs::read(t.path().join(f)).unwrap(), std::fs::read(whole.path().join(f)).unwrap());
            }
            assert!(!t.path().join("gone.txt").exists());
        }
    }

    #[test]
    fn a_file_changed_by_someone_else_stops_the_apply_and_is_named() {
        let patches = vec![("p1".to_string(), parsed(ONE))];
        let t = tree();
        let s = tempfile::tempdir().unwrap();
        let ip = s.path().join("apply-intent.json");
        let plan = plan(&patches, t.path(), &s.path().join("scratch")).unwrap();
        write_intent(&ip, &plan).unwrap();
        std::fs::write(t.path().join("a.txt"), "edited by hand\n").unwrap();
        let err = format!("{:#}", to_tree(&patches, t.path(), &ip).unwrap_err());
        assert!(err.contains("a.txt") && err.contains("neither as it was nor as planned"), "{err}");
        assert_eq!(std::fs::read_to_string(t.path().join("a.txt")).unwrap(), "edited by hand\n");
    }
}
