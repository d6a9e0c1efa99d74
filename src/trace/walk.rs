//! Expanding command-line paths into the files to read, in a stable order.
//!
//! Hidden files and folders (`.git`, `.autoharness`) are skipped; `.gitignore` is not
//! honoured because trace folders are often ignored by the very repos that hold them.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct WalkedFile {
    pub path: PathBuf,
    /// The path as the user will see it (relative to what they typed).
    pub display: String,
    /// The store's key for the file: its canonical path when it has one.
    pub key: String,
}

/// All files under `paths` (files are taken as given), sorted, deduplicated.
/// Missing paths are returned as errors for the caller to report.
pub fn walk(paths: &[PathBuf]) -> (Vec<WalkedFile>, Vec<(PathBuf, String)>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for root in paths {
        let meta = match std::fs::metadata(root) {
            Ok(m) => m,
            Err(e) => {
                errors.push((root.clone(), crate::paths::describe_io(root, &e)));
                continue;
            }
        };
        if let Some(kind) = crate::paths::special_kind(meta.file_type()) {
            errors.push((root.clone(), crate::paths::special_reason(kind)));
            continue;
        }
        if meta.is_file() {
            files.push(WalkedFile { path: root.clone(), display: root.display().to_string(), key: file_key(root) });
            continue;
        }
        // Links are not followed, so a file's canonical path is the canonical root joined with
        // the rest of its path: one `realpath` per root instead of one per file.
        let canonical_root = std::fs::canonicalize(root).ok();
        let walker = ignore::WalkBuilder::new(root)
            .standard_filters(false)
            .hidden(true)
            .follow_links(false)
            .sort_by_file_path(|a, b| a.cmp(b))
            .build();
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => {
                    let key = match (&canonical_root, e.path().strip_prefix(root)) {
                        (Some(c), Ok(rest)) => c.join(rest).display().to_string(),
                        _ => file_key(e.path()),
                    };
                    files.push(WalkedFile { display: e.path().display().to_string(), path: e.into_path(), key })
                }
                Ok(e) => {
                    if let Some(kind) = e.file_type().and_then(crate::paths::special_kind) {
                        errors.push((e.path().to_path_buf(), crate::paths::special_reason(kind)));
                    }
                }
                Err(e) => errors.push((root.clone(), e.to_string())),
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    (files, errors)
}

/// A stable key for a file across runs: its canonical path when it has one.
pub fn file_key(path: &Path) -> String {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}
