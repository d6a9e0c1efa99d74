//! A harness's files on disk: their content hash (the identity of a harness version) and
//! the private copy each trial runs in, so a trial never touches the user's tree.
//!
//! Both walk the same files: everything under the root except what does not belong to the
//! harness ([`Filter`]): version-control, build and cache folders (`SKIPPED_DIRS`), the
//! project's own `evals/`, `traces/` and `.autoharness/` when the root is the project,
//! the manifest's `exclude` globs (and back in: its `include` globs). Symlinks are taken
//! as links (their target text), never followed, so nothing outside the root is hashed or
//! copied through one.
//!
//! Virtualenvs (a folder, or a link to one, holding `pyvenv.cfg`) are neither hashed nor
//! copied: a copy gets a link to the real one in its place, which the sandbox lets the
//! trial read (never write), so `.venv/bin/python agent.py` works in a trial at no cost.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;

/// Folders never hashed nor copied (unless `include` names them): version control, build
/// output, dependency caches, virtualenvs and autoharness's own state.
pub const SKIPPED_DIRS: [&str; 18] = [
    ".git",
    ".hg",
    ".svn",
    ".jj",
    ".bzr",
    "target",
    "node_modules",
    ".venv",
    "venv",
    "__pycache__",
    ".autoharness",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    ".cache",
];

/// Names skipped even when they are files (a worktree's or submodule's `.git` is a file).
const SKIPPED_ANY: [&str; 3] = [".git", ".autoharness", ".DS_Store"];

/// Folders skipped at the top of a root that is the project itself (it holds
/// `autoharness.toml`): the cases, traces and state are not the harness, and hashing them
/// would throw the trial cache away with every mined case.
const PROJECT_DIRS: [&str; 3] = ["evals", "traces", ".autoharness"];

/// What of a root belongs to the harness: the defaults above, plus the manifest's
/// `exclude` globs, minus its `include` globs (relative to the root).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    exclude: Option<globset::GlobSet>,
    include: Option<globset::GlobSet>,
    /// Skip nothing: for copying a tree that was already filtered (a shared copy).
    everything: bool,
}

impl Filter {
    pub fn new(exclude: &[String], include: &[String]) -> Result<Filter, globset::Error> {
        let build = |globs: &[String]| -> Result<Option<globset::GlobSet>, globset::Error> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut builder = globset::GlobSetBuilder::new();
            for glob in globs {
                builder.add(globset::Glob::new(glob.trim_end_matches('/'))?);
            }
            builder.build().map(Some)
        };
        Ok(Filter { exclude: build(exclude)?, include: build(include)?, everything: false })
    }

    /// A filter that keeps every entry (virtualenvs are still linked, not copied).
    pub fn everything() -> Filter {
        Filter { everything: true, ..Filter::default() }
    }

    /// Whether `relative` (or, for a folder, something beneath it) is named by `include`.
    fn included(&self, relative: &Path, dir: bool) -> bool {
        if self.everything {
            return true;
        }
        let Some(include) = &self.include else { return false };
        include.is_match(relative) || (dir && include.is_match(relative.join("_")))
    }

    fn excluded(&self, relative: &Path) -> bool {
        self.exclude.as_ref().is_some_and(|set| set.is_match(relative))
    }
}

/// Permission bits copied. Never setuid, setgid or sticky: a copy made by root would
/// otherwise turn a user's setuid file into a setuid-root one.
const PERMISSION_BITS: u32 = 0o777;

/// What `private_copy` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: usize,
    pub dirs: usize,
    pub symlinks: usize,
    pub bytes: u64,
    /// Files cloned copy-on-write (FICLONE) instead of copied byte by byte.
    pub reflinked: usize,
    /// Sockets, fifos and devices, which are not copied.
    pub skipped_special: usize,
    /// Virtualenvs linked, not copied.
    pub virtualenvs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File { executable: bool },
    Symlink,
    Special,
}

#[derive(Debug)]
struct Entry {
    /// Relative to the root, never empty.
    relative: PathBuf,
    kind: Kind,
}

/// The canonical path of a virtualenv at `path` (a folder or a link to one holding
/// `pyvenv.cfg`).
pub fn virtualenv_at(path: &Path) -> Option<PathBuf> {
    let real = fs::canonicalize(path).ok()?;
    real.join("pyvenv.cfg").is_file().then_some(real)
}

/// What a walk found: the harness's entries and the virtualenvs left out of them.
#[derive(Debug, Default)]
struct Walked {
    entries: Vec<Entry>,
    /// (relative path, canonical path) of each virtualenv under the root.
    virtualenvs: Vec<(PathBuf, PathBuf)>,
}

/// Every entry under `root` (not `root` itself), parents before children, sorted by path
/// bytes so that the order does not depend on the filesystem.
fn walk(root: &Path, filter: &Filter) -> Result<Walked> {
    let meta = fs::metadata(root).with_context(|| format!("cannot read harness root `{}`", root.display()))?;
    if !meta.is_dir() {
        bail!("harness root `{}` is not a folder", root.display());
    }
    let project = root.join("autoharness.toml").is_file();
    let mut virtualenvs = Vec::new();
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative_dir) = pending.pop() {
        let dir = root.join(&relative_dir);
        let listing = fs::read_dir(&dir).with_context(|| format!("cannot list `{}`", dir.display()))?;
        for item in listing {
            let item = item.with_context(|| format!("cannot list `{}`", dir.display()))?;
            let name = item.file_name();
            let file_type = item.file_type().with_context(|| format!("cannot stat `{}`", item.path().display()))?;
            let name_str = name.to_str().unwrap_or("");
            let relative = relative_dir.join(&name);
            let maybe_dir = file_type.is_dir() || file_type.is_symlink();
            // Virtualenvs first: they are linked into copies, whatever their name.
            if maybe_dir
                && !filter.included(&relative, true)
                && let Some(real) = virtualenv_at(&dir.join(&name))
            {
                virtualenvs.push((relative, real));
                continue;
            }
            let skipped = SKIPPED_ANY.contains(&name_str)
                || (file_type.is_dir() && SKIPPED_DIRS.contains(&name_str))
                || (project && relative_dir.as_os_str().is_empty() && PROJECT_DIRS.contains(&name_str));
            if (skipped && !filter.included(&relative, file_type.is_dir())) || filter.excluded(&relative) {
                continue;
            }
            let kind = if file_type.is_symlink() {
                Kind::Symlink
            } else if file_type.is_dir() {
                pending.push(relative.clone());
                Kind::Dir
            } else if file_type.is_file() {
                let meta = item.metadata().with_context(|| format!("cannot stat `{}`", item.path().display()))?;
                Kind::File { executable: meta.mode() & 0o111 != 0 }
            } else {
                Kind::Special
            };
            entries.push(Entry { relative, kind });
        }
    }
    // A parent's path is a prefix of its children's, so byte order puts parents first.
    entries.sort_by(|a, b| a.relative.as_os_str().as_bytes().cmp(b.relative.as_os_str().as_bytes()));
    virtualenvs.sort();
    Ok(Walked { entries, virtualenvs })
}

/// The virtualenvs under `root` (canonical paths), which trials may read.
pub fn virtualenvs(root: &Path, filter: &Filter) -> Result<Vec<PathBuf>> {
    Ok(walk(root, filter)?.virtualenvs.into_iter().map(|(_, real)| real).collect())
}

/// blake3 (hex) of the harness tree under `root`: each file's relative path, executable
/// bit and bytes, each symlink's path and target text, in sorted order. Empty folders and
/// special files do not count; permissions other than the executable bit do not either.
pub fn content_hash(root: &Path, filter: &Filter) -> Result<String> {
    let entries = walk(root, filter)?.entries;
    // Files are hashed in parallel; the results are combined in path order.
    let digests: Vec<Option<blake3::Hash>> = entries
        .par_iter()
        .map(|entry| -> Result<Option<blake3::Hash>> {
            let path = root.join(&entry.relative);
            match entry.kind {
                Kind::File { .. } => {
                    let mut hasher = blake3::Hasher::new();
                    let mut file = File::open(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = file.read(&mut buf).with_context(|| format!("cannot read `{}`", path.display()))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                    Ok(Some(hasher.finalize()))
                }
                Kind::Symlink => {
                    let target =
                        fs::read_link(&path).with_context(|| format!("cannot read link `{}`", path.display()))?;
                    Ok(Some(blake3::hash(target.as_os_str().as_bytes())))
                }
                Kind::Dir | Kind::Special => Ok(None),
            }
        })
        .collect::<Result<_>>()?;
    let mut tree = blake3::Hasher::new();
    tree.update(b"autoharness.tree/v1\0");
    for (entry, digest) in entries.iter().zip(digests) {
        let Some(digest) = digest else { continue };
        let tag: &[u8] = match entry.kind {
            Kind::File { executable: true } => b"x",
            Kind::File { executable: false } => b"f",
            _ => b"l",
        };
        let path = entry.relative.as_os_str().as_bytes();
        // Length-prefixed, so no two different trees feed the same bytes.
        tree.update(tag);
        tree.update(&(path.len() as u64).to_le_bytes());
        tree.update(path);
        tree.update(digest.as_bytes());
    }
    Ok(tree.finalize().to_hex().to_string())
}

/// Copies the harness tree under `root` into `dest` (which must not exist yet, or be an
/// empty folder), with the same skips as `content_hash`. Files are cloned copy-on-write
/// where the filesystem can (btrfs, XFS), else copied; never hard-linked, since a trial
/// may write to them. Symlinks are recreated as links with the same target text; each
/// virtualenv becomes a link to the real one.
pub fn private_copy(root: &Path, dest: &Path, filter: &Filter) -> Result<CopyStats> {
    let Walked { entries, virtualenvs } = walk(root, filter)?;
    match fs::read_dir(dest) {
        Ok(mut listing) => {
            if listing.next().is_some() {
                bail!("copy destination `{}` is not empty", dest.display());
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).with_context(|| format!("cannot create `{}`", dest.display()))?;
        }
        Err(err) => {
            return Err(err).with_context(|| format!("cannot use copy destination `{}`", dest.display()));
        }
    }
    let dest_abs = fs::canonicalize(dest).with_context(|| format!("cannot resolve `{}`", dest.display()))?;
    let root_abs = fs::canonicalize(root).with_context(|| format!("cannot resolve `{}`", root.display()))?;
    if dest_abs.starts_with(&root_abs)
        && !dest_abs.components().any(|c| SKIPPED_DIRS.iter().any(|s| c.as_os_str() == *s))
    {
        bail!("copy destination `{}` lies inside the harness root and would be copied into itself", dest.display());
    }

    let mut stats = CopyStats::default();
    // Folders first (sorted: parents before children), sequentially.
    for entry in entries.iter().filter(|e| e.kind == Kind::Dir) {
        let target = dest.join(&entry.relative);
        fs::create_dir(&target).with_context(|| format!("cannot create `{}`", target.display()))?;
        stats.dirs += 1;
    }
    let results: Vec<(u64, bool)> = entries
        .par_iter()
        .filter(|entry| matches!(entry.kind, Kind::File { .. }))
        .map(|entry| copy_file(&root.join(&entry.relative), &dest.join(&entry.relative)))
        .collect::<Result<_>>()?;
    for (bytes, reflinked) in results {
        stats.files += 1;
        stats.bytes += bytes;
        stats.reflinked += usize::from(reflinked);
    }
    for entry in &entries {
        match entry.kind {
            Kind::Symlink => {
                let source = root.join(&entry.relative);
                let target =
                    fs::read_link(&source).with_context(|| format!("cannot read link `{}`", source.display()))?;
                let link = dest.join(&entry.relative);
                std::os::unix::fs::symlink(&target, &link)
                    .with_context(|| format!("cannot create link `{}`", link.display()))?;
                stats.symlinks += 1;
            }
            Kind::Special => stats.skipped_special += 1,
            Kind::Dir | Kind::File { .. } => {}
        }
    }
    for (relative, real) in &virtualenvs {
        let link = dest.join(relative);
        // Its parent may be a folder that held nothing else.
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        std::os::unix::fs::symlink(real, &link).with_context(|| format!("cannot create link `{}`", link.display()))?;
        stats.virtualenvs += 1;
    }
    // Folder permissions last, so a read-only folder does not block copying into it.
    for entry in entries.iter().filter(|e| e.kind == Kind::Dir) {
        let source = root.join(&entry.relative);
        let mode = fs::metadata(&source).with_context(|| format!("cannot stat `{}`", source.display()))?.mode();
        let target = dest.join(&entry.relative);
        fs::set_permissions(&target, fs::Permissions::from_mode(mode & PERMISSION_BITS))
            .with_context(|| format!("cannot set permissions of `{}`", target.display()))?;
    }
    Ok(stats)
}

/// Copies one file with its permissions; returns its size and whether it was reflinked.
fn copy_file(source: &Path, target: &Path) -> Result<(u64, bool)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let input = File::open(source).with_context(|| format!("cannot read `{}`", source.display()))?;
    let meta = input.metadata().with_context(|| format!("cannot stat `{}`", source.display()))?;
    let output = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.mode() & PERMISSION_BITS)
        .open(target)
        .with_context(|| format!("cannot create `{}`", target.display()))?;
    // SAFETY: FICLONE takes the source descriptor as its argument; both are open.
    let cloned = unsafe { libc::ioctl(output.as_raw_fd(), libc::FICLONE, input.as_raw_fd()) } == 0;
    let (mut input, mut output) = (input, output);
    if !cloned {
        // std::io::copy uses copy_file_range/sendfile between files: no userspace buffer.
        std::io::copy(&mut input, &mut output).with_context(|| format!("cannot copy `{}`", source.display()))?;
    }
    // The umask may have cut bits from the mode given at creation.
    output
        .set_permissions(fs::Permissions::from_mode(meta.mode() & PERMISSION_BITS))
        .with_context(|| format!("cannot set permissions of `{}`", target.display()))?;
    Ok((meta.len(), cloned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_walk_skips_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in ["b/z.txt", "a.txt", "b/a.txt", ".git/HEAD", "target/debug/x", "sub/node_modules/m.js"] {
            let full = root.join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, path).unwrap();
        }
        fs::write(root.join("target.txt"), "kept").unwrap();
        let names = |filter: &Filter| -> Vec<String> {
            walk(root, filter).unwrap().entries.iter().map(|e| e.relative.display().to_string()).collect()
        };
        assert_eq!(names(&Filter::default()), ["a.txt", "b", "b/a.txt", "b/z.txt", "sub", "target.txt"]);
        // A project root leaves out its cases and traces; `exclude` and `include` adjust.
        for path in ["autoharness.toml", "evals/h/c.json", "traces/t.jsonl", "deep/evals/kept.json"] {
            let full = root.join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, path).unwrap();
        }
        let filter = Filter::new(&["b/z.txt".into()], &["sub/node_modules/**".into()]).unwrap();
        assert_eq!(
            names(&filter),
            [
                "a.txt",
                "autoharness.toml",
                "b",
                "b/a.txt",
                "deep",
                "deep/evals",
                "deep/evals/kept.json",
                "sub",
                "sub/node_modules",
                "sub/node_modules/m.js",
                "target.txt"
            ]
        );
    }
}
