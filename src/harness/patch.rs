//! Unified diffs against a harness folder.
//!
//! A change to a harness arrives as text: a user's `git diff`, a PR, or an LLM's answer with
//! prose around the diff. `parse` reads that text, `normalize_paths` makes its paths relative
//! to the harness folder, `check_paths` refuses anything outside the editable files, and
//! `apply` patches a private copy, all or nothing, with a little fuzz so that a diff made
//! against a slightly different version still lands. `diff_trees` goes the other way: it turns
//! what an external coding agent changed in a scratch copy into such a diff.
//!
//! Patch text is untrusted. Parsing never panics and is linear in the text's size, and `apply`
//! joins only normalised relative paths to the root and re-checks them itself, so nothing
//! outside the root is read or written, not through `..`, an absolute path, nor a symlink.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::{self, Write as _};
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use globset::GlobSet;
use similar::{Algorithm, DiffOp};

/// How many lines a hunk may have moved from where its header puts it. Enough for the edits
/// a harness sees between a diff's base and the copy it lands on, little enough that a
/// repeated block elsewhere in the file (a prompt's boilerplate) is not taken instead.
pub const MAX_OFFSET: usize = 50;

/// Git's file-type bits, in the octal modes `FilePatch` carries (`0o100644`, `0o100755`).
pub const MODE_SYMLINK: u32 = 0o120000;
pub const MODE_GITLINK: u32 = 0o160000;
const MODE_REGULAR: u32 = 0o100000;
const MODE_TYPE: u32 = 0o170000;

/// Folders `diff_trees` never walks: the ones `workspace` leaves out of private copies.
const SKIPPED_DIRS: [&str; 6] = [".git", "target", "node_modules", ".venv", "__pycache__", ".autoharness"];

/// Line comparisons spent finding the closest place of a hunk that did not apply. It only
/// makes a message better, so it must not make a failure slow on a huge file.
const CLOSEST_BUDGET: usize = 4_000_000;

/// How much of a failed hunk, or of a header, an error quotes; the rest is in the patch, and
/// a 50 MB line must not become a 50 MB message.
const QUOTED_LINES: usize = 8;
const QUOTED_CHARS: usize = 160;

/// Failed hunks of one file described in full; finding each one's closest place costs a
/// search, and past a few the rest of the list helps nobody.
const DESCRIBED_FAILURES: usize = 10;

/// Past this, `diff_trees` settles for a correct but less minimal diff of a file.
const DIFF_DEADLINE: Duration = Duration::from_secs(10);

/// A parsed patch: one section per file, in patch order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    pub files: Vec<FilePatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modify,
    Add,
    Delete,
    Rename,
    /// `copy from` / `copy to` (git diff -C): the new file starts as a copy of the old one.
    Copy,
}

/// One file's section of a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// `None` for a new file (`/dev/null`).
    pub old_path: Option<String>,
    /// `None` for a deleted file.
    pub new_path: Option<String>,
    pub kind: ChangeKind,
    pub hunks: Vec<Hunk>,
    /// `GIT binary patch` or `Binary files … differ`: refused, never applied.
    pub binary: bool,
    /// Git's modes, octal with the file-type bits: `0o100644`, `0o100755`, `MODE_SYMLINK`.
    /// Both are set from an `index … 100644` line, so they differ only when the mode changes.
    pub old_mode: Option<u32>,
    pub new_mode: Option<u32>,
    /// 1-based line of the patch text where this section starts.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    pub old_start: usize,
    pub old_len: usize,
    pub new_start: usize,
    pub new_len: usize,
    pub lines: Vec<HunkLine>,
    /// `\ No newline at end of file` followed the last old-side (context or removed) line.
    pub old_missing_newline: bool,
    /// `\ No newline at end of file` followed the last new-side (context or added) line.
    pub new_missing_newline: bool,
    /// 1-based line of the `@@` header in the patch text.
    pub line: usize,
}

/// A hunk line without its one-character prefix and without its line end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkLine {
    Context(String),
    Remove(String),
    Add(String),
}

impl Patch {
    /// True when applying would change nothing: no section, or only sections that name a file
    /// without changing it.
    pub fn is_empty(&self) -> bool {
        self.files.iter().all(FilePatch::is_noop)
    }

    /// Every path the patch reads or writes (old and new names), each once, in patch order.
    pub fn touched_paths(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.files
            .iter()
            .flat_map(|f| [f.old_path.as_deref(), f.new_path.as_deref()])
            .flatten()
            .filter(|p| seen.insert(*p))
            .collect()
    }
}

impl FilePatch {
    fn new(line: usize) -> Self {
        FilePatch {
            old_path: None,
            new_path: None,
            kind: ChangeKind::Modify,
            hunks: Vec::new(),
            binary: false,
            old_mode: None,
            new_mode: None,
            line,
        }
    }

    /// The name to show a person: the new path, or the old one for a deletion.
    pub fn path(&self) -> &str {
        self.new_path.as_deref().or(self.old_path.as_deref()).unwrap_or("?")
    }

    fn changes_mode(&self) -> bool {
        self.new_mode.is_some() && self.old_mode != self.new_mode
    }

    fn is_noop(&self) -> bool {
        self.kind == ChangeKind::Modify && self.hunks.is_empty() && !self.binary && !self.changes_mode()
    }
}

impl Hunk {
    /// The `@@ -a,b +c,d @@` line, for messages.
    pub fn header(&self) -> String {
        format!("@@ -{},{} +{},{} @@", self.old_start, self.old_len, self.new_start, self.new_len)
    }
}

impl HunkLine {
    pub fn text(&self) -> &str {
        match self {
            HunkLine::Context(t) | HunkLine::Remove(t) | HunkLine::Add(t) => t,
        }
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeKind::Modify => "modify",
            ChangeKind::Add => "add",
            ChangeKind::Delete => "delete",
            ChangeKind::Rename => "rename",
            ChangeKind::Copy => "copy",
        })
    }
}

/// Why patch text could not be read. Each names the patch line and, where known, the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error(
        "empty patch: no file changes found; expected a unified diff: `diff --git a/PATH b/PATH` or \
         `--- PATH` and `+++ PATH` lines, then `@@` hunks"
    )]
    Empty,
    #[error(
        "patch line {line}: hunk `{header}` is not under a file header; put `--- a/PATH` and \
         `+++ b/PATH` before it, and no other text between the hunks of a file"
    )]
    HunkWithoutFile { line: usize, header: String },
    #[error(
        "`{path}`, patch line {line}: malformed hunk header `{header}`; expected `@@ -START,COUNT +START,COUNT @@`"
    )]
    MalformedHunkHeader { path: String, line: usize, header: String },
    #[error(
        "`{path}`, patch line {line}: {problem} (hunk `{header}` at patch line {hunk_line}); fix the counts in \
         the hunk header or the hunk's lines"
    )]
    HunkCount { path: String, line: usize, hunk_line: usize, header: String, problem: String },
    #[error("patch line {line}: {what}")]
    MalformedHeader { line: usize, what: String },
}

/// A path `check_paths` or `apply` will not touch, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` (patch line {line}) {reason}", path.escape_debug())]
pub struct Refusal {
    pub path: String,
    pub line: usize,
    pub reason: RefusalReason,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    #[error("is an absolute path; paths in a patch are relative to the harness folder")]
    Absolute,
    #[error("has a `..` component, which leaves the harness folder")]
    ParentDir,
    #[error("is not a usable file path (empty, only `.`, or with a NUL byte)")]
    Invalid,
    #[error(
        "is not an editable file of this harness: no `editable` glob of the manifest matches it; drop it from \
         the patch or widen `editable`"
    )]
    NotEditable,
    #[error("is a binary patch; only changes to text files can be applied")]
    Binary,
    #[error("has mode {mode:o}, a symlink, submodule or other special file; only regular files can be patched")]
    SpecialMode { mode: u32 },
    #[error("goes through the symlink `{at}` in the harness; symlinks are never followed when patching")]
    Symlink { at: String },
    #[error(
        "is inside the version-control folder `{dir}`; its config and hooks can run commands, so no patch may \
         write there"
    )]
    Vcs { dir: String },
}

/// Why a patch was not applied. Nothing was written when one is returned, except after an
/// `Io` error, which can leave the private copy half patched: discard it.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Refused(Refusal),
    #[error("the file section at patch line {line} names no file")]
    Unnamed { line: usize },
    #[error("cannot {action} `{path}` (patch line {line}): no such file in the harness{hint}")]
    Missing { path: String, line: usize, action: &'static str, hint: &'static str },
    #[error(
        "cannot create `{path}` (patch line {line}): a file of that name already exists with other content; \
         write the diff as a change to it instead"
    )]
    Exists { path: String, line: usize },
    #[error(
        "`{path}` (patch line {line}): already applied: the reverse of this change applies cleanly, so the \
         harness has it already; drop this file from the patch"
    )]
    AlreadyApplied { path: String, line: usize },
    #[error("{0}")]
    HunkFailed(Box<HunkFailure>),
    #[error(
        "cannot delete `{path}` (patch line {line}): {lines} of its lines are not removed by the patch, so it \
         is not the file the diff was made from; regenerate the diff against the current file"
    )]
    DeleteMismatch { path: String, line: usize, lines: usize },
    #[error(
        "`{path}` (patch line {line}): {count} more hunks do not apply either; fix the ones above and regenerate \
         the diff"
    )]
    MoreFailures { path: String, line: usize, count: usize },
    #[error(
        "cannot create `{path}` (patch line {line}): `{blocker}` is a file, not a folder; delete or rename it \
         earlier in the patch"
    )]
    Blocked { path: String, blocker: String, line: usize },
    #[error("`{path}` (patch line {line}) is not UTF-8 text, so its hunks cannot be applied")]
    NotText { path: String, line: usize },
    #[error("`{path}` (patch line {line}) is a folder or a special file, not a regular file")]
    NotAFile { path: String, line: usize },
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{}", list_errors(.0))]
    Several(Vec<ApplyError>),
}

/// A hunk that did not apply: where it is in the patch, what it expected, and the closest
/// place found, so a person or an LLM can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HunkFailure {
    pub path: String,
    /// 1-based index of the hunk in its file section.
    pub hunk: usize,
    /// 1-based patch line of the hunk's `@@` header.
    pub line: usize,
    pub header: String,
    /// 1-based file line where the hunk was looked for.
    pub near: usize,
    /// The first old-side (context and removed) lines of the hunk, shortened.
    pub expected: Vec<String>,
    /// How many old-side lines the hunk has.
    pub expected_lines: usize,
    pub closest: Option<Closest>,
    /// Set when the hunk's result is already in the file, at this 1-based line.
    pub already_applied_at: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closest {
    /// 1-based file line where the best partial match starts.
    pub line: usize,
    /// How many of the hunk's old-side lines match there, ignoring trailing whitespace.
    pub matching: usize,
    pub difference: Option<Difference>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// 1-based file line of the first line that differs.
    pub line: usize,
    pub expected: String,
    /// `None` when the file ends there.
    pub found: Option<String>,
}

/// Where each hunk landed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub files: Vec<FileReport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file as it is after the patch (the old name for a deletion).
    pub path: String,
    /// The source of a rename or copy.
    pub from: Option<String>,
    pub kind: ChangeKind,
    pub hunks: Vec<HunkReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HunkReport {
    /// 1-based index of the hunk in its file section.
    pub hunk: usize,
    /// 1-based patch line of the hunk's `@@` header.
    pub line: usize,
    /// 1-based line of the file (before this section) where the hunk's first line landed.
    pub at: usize,
    /// Lines between where the header said and where the hunk landed.
    pub offset: isize,
    pub fuzz: Fuzz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fuzz {
    Exact,
    /// Matched only once trailing whitespace and CR/LF differences were ignored.
    Whitespace,
}

impl ApplyReport {
    /// True when every hunk landed exactly where its header said.
    pub fn is_exact(&self) -> bool {
        self.files.iter().flat_map(|f| &f.hunks).all(|h| h.offset == 0 && h.fuzz == Fuzz::Exact)
    }
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, file) in self.files.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match &file.from {
                Some(from) => write!(f, "{} `{from}` to `{}`", file.kind, file.path)?,
                None => write!(f, "{} `{}`", file.kind, file.path)?,
            }
            for h in &file.hunks {
                write!(f, "; hunk {} at line {}", h.hunk, h.at)?;
                let mut notes = Vec::new();
                if h.offset != 0 {
                    notes.push(format!("offset {:+}", h.offset));
                }
                if h.fuzz == Fuzz::Whitespace {
                    notes.push("whitespace ignored".to_string());
                }
                if !notes.is_empty() {
                    write!(f, " ({})", notes.join(", "))?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for HunkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: hunk {} at patch line {} (`{}`)", self.path, self.hunk, self.line, self.header)?;
        if let Some(at) = self.already_applied_at {
            return write!(
                f,
                " seems already applied: its result is already in the file at line {at}; drop this hunk from the patch"
            );
        }
        write!(
            f,
            " does not apply: these {} lines were not found within {MAX_OFFSET} lines of line {}, even ignoring \
             trailing whitespace:",
            self.expected_lines, self.near
        )?;
        for line in &self.expected {
            write!(f, "\n    |{line}")?;
        }
        if self.expected_lines > self.expected.len() {
            write!(f, "\n    … and {} more", self.expected_lines - self.expected.len())?;
        }
        match &self.closest {
            None => f.write_str("\n  nothing in the file resembles them")?,
            Some(c) => {
                write!(
                    f,
                    "\n  closest place: line {}, where {} of {} lines match",
                    c.line, c.matching, self.expected_lines
                )?;
                match &c.difference {
                    Some(Difference { line, expected, found: Some(found) }) => {
                        write!(f, "; line {line} differs: expected `{expected}`, found `{found}`")?
                    }
                    Some(Difference { line, expected, found: None }) => {
                        write!(f, "; the file ends before line {line}, where `{expected}` was expected")?
                    }
                    None => f.write_str(
                        "; that is too far from the header's line or overlaps the previous hunk, so fix the line \
                         numbers in the hunk header",
                    )?,
                }
            }
        }
        f.write_str("\n  Regenerate this hunk from the file's current content.")
    }
}

fn list_errors(errors: &[ApplyError]) -> String {
    let mut text = format!("{} problems with the patch:", errors.len());
    for e in errors {
        text.push_str("\n- ");
        text.push_str(&e.to_string().replace('\n', "\n  "));
    }
    text
}

impl ApplyError {
    fn from_many(errors: Vec<ApplyError>) -> ApplyError {
        let mut flat = Vec::with_capacity(errors.len());
        for e in errors {
            match e {
                ApplyError::Several(inner) => flat.extend(inner),
                e => flat.push(e),
            }
        }
        if flat.len() == 1 { flat.pop().unwrap_or(ApplyError::Several(Vec::new())) } else { ApplyError::Several(flat) }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Reads a unified diff: `git diff` output (renames, copies, modes, binary markers), `diff -u`
/// or `diff -ruN` output (timestamps, `/dev/null`), or an LLM's answer, where prose and code
/// fences around and between the file sections are skipped. Hunk lines are counted against
/// their headers, so a truncated or miscounted hunk is an error rather than a silent change.
pub fn parse(text: &str) -> Result<Patch, PatchError> {
    let lines = split_patch_lines(text);
    let mut parser = Parser { lines: &lines, pos: 0 };
    let mut files = Vec::new();
    while let Some(&line) = lines.get(parser.pos) {
        if line.starts_with("diff --git ") {
            files.push(parser.git_section()?);
        } else if parser.at_file_header() {
            files.push(parser.unified_section()?);
        } else if let Some(f) = plain_binary(line, parser.pos + 1) {
            files.push(f);
            parser.pos += 1;
        } else if line.starts_with("@@ -") {
            return Err(PatchError::HunkWithoutFile { line: parser.pos + 1, header: excerpt(line) });
        } else {
            parser.pos += 1;
        }
    }
    if files.is_empty() {
        return Err(PatchError::Empty);
    }
    Ok(Patch { files })
}

/// The patch's lines without their ends. A `\r` before the `\n` is dropped only when every
/// line has one: then the whole text went through a CRLF conversion (a Windows editor, a web
/// form) and the `\r`s are not content, as they are when git diffs a file with CRLF ends.
fn split_patch_lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    let crlf = newlines > 0 && bytes.windows(2).filter(|w| w[0] == b'\r' && w[1] == b'\n').count() == newlines;
    let mut lines = Vec::with_capacity(newlines + 1);
    for piece in text.split_inclusive('\n') {
        let line = piece.strip_suffix('\n').unwrap_or(piece);
        lines.push(if crlf { line.strip_suffix('\r').unwrap_or(line) } else { line });
    }
    lines
}

struct Parser<'t> {
    lines: &'t [&'t str],
    pos: usize,
}

impl Parser<'_> {
    fn at_file_header(&self) -> bool {
        let line = |i: usize| self.lines.get(self.pos + i).copied().unwrap_or("");
        line(0).starts_with("--- ") && line(1).starts_with("+++ ")
    }

    fn git_section(&mut self) -> Result<FilePatch, PatchError> {
        let start = self.pos;
        let mut f = FilePatch::new(start + 1);
        let named = git_header_paths(&self.lines[start]["diff --git ".len()..]);
        // Rename and copy lines never carry the a/ b/ prefixes; giving them the ones the
        // `diff --git` line has keeps every path of a section in one convention for
        // `normalize_paths`.
        let prefixed = named.as_ref().is_some_and(|(a, b)| a.starts_with("a/") && b.starts_with("b/"));
        let (mut old, mut new) = match named {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };
        self.pos += 1;
        while let Some(&raw) = self.lines.get(self.pos) {
            let line = raw.trim_end_matches('\r');
            let at = self.pos + 1;
            if let Some(m) = line.strip_prefix("old mode ") {
                f.old_mode = Some(parse_mode(m, at)?);
            } else if let Some(m) = line.strip_prefix("new mode ") {
                f.new_mode = Some(parse_mode(m, at)?);
            } else if let Some(m) = line.strip_prefix("new file mode ") {
                f.kind = ChangeKind::Add;
                f.new_mode = Some(parse_mode(m, at)?);
            } else if let Some(m) = line.strip_prefix("deleted file mode ") {
                f.kind = ChangeKind::Delete;
                f.old_mode = Some(parse_mode(m, at)?);
            } else if let Some(p) = line.strip_prefix("rename from ").or_else(|| line.strip_prefix("copy from ")) {
                f.kind = if line.starts_with("rename") { ChangeKind::Rename } else { ChangeKind::Copy };
                old = Some(extended_path(p, if prefixed { "a/" } else { "" }, at)?);
            } else if let Some(p) = line.strip_prefix("rename to ").or_else(|| line.strip_prefix("copy to ")) {
                new = Some(extended_path(p, if prefixed { "b/" } else { "" }, at)?);
            } else if line.starts_with("similarity index ") || line.starts_with("dissimilarity index ") {
            } else if let Some(rest) = line.strip_prefix("index ") {
                if let Some((_, m)) = rest.split_once(' ') {
                    let m = parse_mode(m, at)?;
                    f.old_mode.get_or_insert(m);
                    f.new_mode.get_or_insert(m);
                }
            } else if line.starts_with("Binary files ") {
                f.binary = true;
            } else if line == "GIT binary patch" {
                f.binary = true;
                self.pos += 1;
                // Base85 lines have no spaces, so they never look like the next section.
                while self.pos < self.lines.len()
                    && !self.lines[self.pos].starts_with("diff --git ")
                    && !self.at_file_header()
                {
                    self.pos += 1;
                }
                break;
            } else {
                break;
            }
            self.pos += 1;
        }
        if self.at_file_header() {
            let at = self.pos + 1;
            let (o, _) = header_path(&self.lines[self.pos][4..], at)?;
            let (n, _) = header_path(&self.lines[self.pos + 1][4..], at + 1)?;
            if o.is_none() && n.is_none() {
                return Err(PatchError::MalformedHeader {
                    line: at,
                    what: "both sides of the file are /dev/null".into(),
                });
            }
            match o {
                None => f.kind = ChangeKind::Add,
                Some(o) => old = Some(o),
            }
            match n {
                None => f.kind = ChangeKind::Delete,
                Some(n) => new = Some(n),
            }
            self.pos += 2;
        }
        let shown = new.as_deref().or(old.as_deref()).unwrap_or("?").to_string();
        f.hunks = self.hunks(&shown)?;
        match f.kind {
            ChangeKind::Add => old = None,
            ChangeKind::Delete => new = None,
            _ => {}
        }
        let named_enough = match f.kind {
            ChangeKind::Add => new.is_some(),
            ChangeKind::Delete => old.is_some(),
            _ => old.is_some() && new.is_some(),
        };
        if !named_enough {
            return Err(PatchError::MalformedHeader {
                line: start + 1,
                what:
                    "cannot tell which file this `diff --git` section changes; write it as `diff --git a/PATH b/PATH`"
                        .into(),
            });
        }
        f.old_path = old;
        f.new_path = new;
        Ok(f)
    }

    fn unified_section(&mut self) -> Result<FilePatch, PatchError> {
        let start = self.pos;
        let (old, old_stamp) = header_path(&self.lines[start][4..], start + 1)?;
        let (new, new_stamp) = header_path(&self.lines[start + 1][4..], start + 2)?;
        self.pos += 2;
        let shown = new.as_deref().or(old.as_deref()).unwrap_or("?").to_string();
        let hunks = self.hunks(&shown)?;
        if hunks.is_empty() {
            return Err(PatchError::MalformedHeader {
                line: start + 1,
                what: format!("the file header for `{}` has no `@@` hunk after it", excerpt(&shown)),
            });
        }
        let mut f = FilePatch::new(start + 1);
        // `diff -N` writes a missing side as the file with an epoch timestamp, not /dev/null.
        let creates = is_epoch(old_stamp) && hunks.iter().all(|h| h.old_len == 0);
        let deletes = is_epoch(new_stamp) && hunks.iter().all(|h| h.new_len == 0);
        match (old, new) {
            (None, None) => {
                return Err(PatchError::MalformedHeader {
                    line: start + 1,
                    what: "both sides of the file are /dev/null".into(),
                });
            }
            (None, Some(n)) => (f.kind, f.new_path) = (ChangeKind::Add, Some(n)),
            (Some(o), None) => (f.kind, f.old_path) = (ChangeKind::Delete, Some(o)),
            (Some(_), Some(n)) if creates => (f.kind, f.new_path) = (ChangeKind::Add, Some(n)),
            (Some(o), Some(_)) if deletes => (f.kind, f.old_path) = (ChangeKind::Delete, Some(o)),
            (Some(o), Some(n)) => {
                let (o, n) = same_file(o, n);
                (f.old_path, f.new_path) = (Some(o), Some(n));
            }
        }
        f.hunks = hunks;
        Ok(f)
    }

    fn hunks(&mut self, path: &str) -> Result<Vec<Hunk>, PatchError> {
        let mut hunks = Vec::new();
        while self.lines.get(self.pos).is_some_and(|l| l.starts_with("@@")) {
            hunks.push(self.hunk(path)?);
        }
        Ok(hunks)
    }

    fn hunk(&mut self, path: &str) -> Result<Hunk, PatchError> {
        let hunk_line = self.pos + 1;
        let header = self.lines[self.pos].trim_end_matches('\r');
        let Some((old_start, old_len, new_start, new_len)) = parse_hunk_header(header) else {
            return Err(PatchError::MalformedHunkHeader {
                path: path.to_string(),
                line: hunk_line,
                header: excerpt(header),
            });
        };
        self.pos += 1;
        let mut hunk = Hunk {
            old_start,
            old_len,
            new_start,
            new_len,
            // The counts are untrusted: never reserve more than a page for them.
            lines: Vec::with_capacity(old_len.saturating_add(new_len).min(1024)),
            old_missing_newline: false,
            new_missing_newline: false,
            line: hunk_line,
        };
        let count_error = |line: usize, problem: String| PatchError::HunkCount {
            path: path.to_string(),
            line,
            hunk_line,
            header: excerpt(header),
            problem,
        };
        let (mut old_seen, mut new_seen) = (0usize, 0usize);
        while old_seen < old_len || new_seen < new_len {
            let at = self.pos + 1;
            let stops_here = |old_seen: usize, new_seen: usize| {
                format!(
                    "the hunk stops here after {old_seen} old and {new_seen} new lines, but its header counts \
                     {old_len} and {new_len}"
                )
            };
            let Some(&raw) = self.lines.get(self.pos) else {
                let problem = format!(
                    "the patch ends inside a hunk, after {old_seen} old and {new_seen} new lines where its header \
                     counts {old_len} and {new_len}"
                );
                return Err(count_error(self.lines.len().max(1), problem));
            };
            // Editors and LLMs strip the lone space of an empty context line.
            let bare = raw.is_empty() || raw == "\r";
            let tag = if bare { b' ' } else { raw.as_bytes()[0] };
            match tag {
                b' ' | b'-' | b'+' => {
                    let (on_old, on_new) = (tag != b'+', tag != b'-');
                    if (on_old && old_seen >= old_len) || (on_new && new_seen >= new_len) {
                        if bare {
                            return Err(count_error(at, stops_here(old_seen, new_seen)));
                        }
                        let which = match tag {
                            b' ' => "context",
                            b'-' => "removed",
                            _ => "added",
                        };
                        return Err(count_error(
                            at,
                            format!(
                                "this {which} line is one more than the hunk header counts ({old_len} old and \
                                 {new_len} new lines)"
                            ),
                        ));
                    }
                    old_seen += usize::from(on_old);
                    new_seen += usize::from(on_new);
                    let text = if bare { raw.to_string() } else { raw[1..].to_string() };
                    hunk.lines.push(match tag {
                        b' ' => HunkLine::Context(text),
                        b'-' => HunkLine::Remove(text),
                        _ => HunkLine::Add(text),
                    });
                }
                b'\\' => mark_missing_newline(&mut hunk),
                _ => return Err(count_error(at, stops_here(old_seen, new_seen))),
            }
            self.pos += 1;
        }
        if self.lines.get(self.pos).is_some_and(|l| l.starts_with('\\')) {
            mark_missing_newline(&mut hunk);
            self.pos += 1;
        }
        // A `+` or `-` line right after a full hunk means the header undercounts; dropping it
        // as prose would silently lose a change. Lines of dashes alone are rules and mail
        // signatures.
        if let Some(&next) = self.lines.get(self.pos) {
            let more = (next.starts_with('+') || next.starts_with('-'))
                && !self.at_file_header()
                && !next.trim_end().bytes().all(|b| b == b'-');
            if more {
                return Err(count_error(
                    self.pos + 1,
                    format!(
                        "this line looks like part of the hunk, but its header counts only {old_len} old and {new_len} \
                         new lines"
                    ),
                ));
            }
        }
        Ok(hunk)
    }
}

fn mark_missing_newline(hunk: &mut Hunk) {
    match hunk.lines.last() {
        Some(HunkLine::Context(_)) => {
            hunk.old_missing_newline = true;
            hunk.new_missing_newline = true;
        }
        Some(HunkLine::Remove(_)) => hunk.old_missing_newline = true,
        Some(HunkLine::Add(_)) => hunk.new_missing_newline = true,
        None => {}
    }
}

/// `@@ -a,b +c,d @@ optional section text`; a missing count means 1.
fn parse_hunk_header(line: &str) -> Option<(usize, usize, usize, usize)> {
    let rest = line.strip_prefix("@@ ")?;
    let end = rest.find(" @@")?;
    let mut parts = rest[..end].split(' ').filter(|p| !p.is_empty());
    let (old_start, old_len) = parse_range(parts.next()?.strip_prefix('-')?)?;
    let (new_start, new_len) = parse_range(parts.next()?.strip_prefix('+')?)?;
    if parts.next().is_some() {
        return None;
    }
    Some((old_start, old_len, new_start, new_len))
}

fn parse_range(text: &str) -> Option<(usize, usize)> {
    match text.split_once(',') {
        Some((start, len)) => Some((number(start)?, number(len)?)),
        None => Some((number(text)?, 1)),
    }
}

/// Digits only: `str::parse` would also take a sign.
fn number(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_mode(text: &str, line: usize) -> Result<u32, PatchError> {
    let text = text.trim();
    let octal = !text.is_empty() && text.len() <= 7 && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    octal.then(|| u32::from_str_radix(text, 8).ok()).flatten().ok_or_else(|| PatchError::MalformedHeader {
        line,
        what: format!("`{}` is not a file mode; expected an octal mode like 100644", excerpt(text)),
    })
}

/// The path of a `---` or `+++` line, `None` for `/dev/null`, and what follows a tab (the
/// timestamp `diff -u` writes; git writes a lone tab after names with spaces).
fn header_path(raw: &str, line: usize) -> Result<(Option<String>, Option<&str>), PatchError> {
    let raw = raw.trim_end_matches('\r');
    let (path, stamp) = if raw.starts_with('"') {
        let (path, rest) = unquote(raw).ok_or_else(|| PatchError::MalformedHeader {
            line,
            what: format!("the quoted file name `{}` is not closed or has a bad escape", excerpt(raw)),
        })?;
        (path, Some(rest))
    } else if let Some((path, stamp)) = raw.split_once('\t') {
        (path.to_string(), Some(stamp))
    } else {
        (raw.trim_end().to_string(), None)
    };
    if path.is_empty() {
        return Err(PatchError::MalformedHeader { line, what: "a `---` or `+++` line names no file".into() });
    }
    Ok(((path != "/dev/null").then_some(path), stamp))
}

fn is_epoch(stamp: Option<&str>) -> bool {
    stamp.map(str::trim_start).is_some_and(|s| s.starts_with("1970-01-01") || s.starts_with("1969-12-31"))
}

/// `diff -u prompt.md.orig prompt.md` and `diff -u prompt.md prompt.md.new` change one file,
/// the one without the backup suffix.
fn same_file(old: String, new: String) -> (String, String) {
    let backup_of = |long: &str, short: &str| {
        long.strip_prefix(short).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('~'))
    };
    if backup_of(&new, &old) {
        (old.clone(), old)
    } else if backup_of(&old, &new) {
        (new.clone(), new)
    } else {
        (old, new)
    }
}

/// The two names of a `diff --git` line. Unquoted names may hold spaces; git writes the same
/// name on both sides unless the file moved, so the middle space splits them.
fn git_header_paths(rest: &str) -> Option<(String, String)> {
    let rest = rest.trim_end_matches('\r');
    if rest.starts_with('"') {
        let (a, after) = unquote(rest)?;
        let after = after.trim_start_matches(' ');
        let b = if after.starts_with('"') { unquote(after)?.0 } else { after.to_string() };
        return Some((a, b));
    }
    if let Some(i) = rest.find(" \"") {
        return Some((rest[..i].to_string(), unquote(&rest[i + 1..])?.0));
    }
    let mid = rest.len() / 2;
    if rest.len() % 2 == 1 && rest.as_bytes()[mid] == b' ' {
        let (a, b) = (&rest[..mid], &rest[mid + 1..]);
        let tail = |p: &str| p.split_once('/').map(|(_, t)| t.to_string());
        if a == b || (tail(a).is_some() && tail(a) == tail(b)) {
            return Some((a.to_string(), b.to_string()));
        }
    }
    let i = rest.find(" b/").or_else(|| rest.find(' '))?;
    let (a, b) = (&rest[..i], &rest[i + 1..]);
    (!a.is_empty() && !b.trim().is_empty()).then(|| (a.to_string(), b.to_string()))
}

fn extended_path(raw: &str, prefix: &str, line: usize) -> Result<String, PatchError> {
    let raw = raw.trim_end_matches('\r');
    let path = if raw.starts_with('"') { unquote(raw).map(|(p, _)| p) } else { Some(raw.to_string()) };
    match path {
        Some(p) if !p.is_empty() => Ok(format!("{prefix}{p}")),
        _ => Err(PatchError::MalformedHeader { line, what: format!("`{}` names no usable file", excerpt(raw)) }),
    }
}

/// A C-style quoted name as git writes it (`"a/tab\there"`, octal escapes for other bytes),
/// and the text after its closing quote.
fn unquote(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), &body[i + 1..])),
            b'\\' => {
                let escaped = *bytes.get(i + 1)?;
                i += 2;
                let byte = match escaped {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'a' => 7,
                    b'b' => 8,
                    b'f' => 12,
                    b'v' => 11,
                    b'"' | b'\\' => escaped,
                    b'0'..=b'3' => {
                        let digits = bytes.get(i - 1..i + 2)?;
                        if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                            return None;
                        }
                        i += 2;
                        digits.iter().fold(0u8, |acc, d| acc.wrapping_mul(8).wrapping_add(d - b'0'))
                    }
                    _ => return None,
                };
                out.push(byte);
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// `Binary files A and B differ`, as `diff -r` writes it outside any git section.
fn plain_binary(line: &str, at: usize) -> Option<FilePatch> {
    let body = line.trim_end_matches('\r').strip_prefix("Binary files ")?.strip_suffix(" differ")?;
    let (a, b) = body.split_once(" and ")?;
    let mut f = FilePatch::new(at);
    f.binary = true;
    f.old_path = (a != "/dev/null").then(|| a.to_string());
    f.new_path = (b != "/dev/null").then(|| b.to_string());
    f.kind = match (&f.old_path, &f.new_path) {
        (None, _) => ChangeKind::Add,
        (_, None) => ChangeKind::Delete,
        _ => ChangeKind::Modify,
    };
    Some(f)
}

/// At most `QUOTED_CHARS` characters of `text`.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// Makes the paths relative to the harness folder. The `a/` `b/` prefixes git writes are
/// stripped, as are the two top folders of `diff -ruN old new`, but only when the patch shows
/// them: a patch whose sides name the same path unprefixed keeps its paths. When `prefix` (the
/// harness folder relative to the repository root, e.g. `harnesses/support-bot`) starts any
/// path, the patch was made at the repository root: the prefix is stripped, and a path outside
/// it becomes the `../` path it really is from the harness folder, which the checks refuse.
/// Call it once: a second call would strip a real `a/` folder.
/// The same diff with every file path put under `prefix` (a harness root's path inside the
/// repository), so a patch written relative to the harness root applies with `git apply` at
/// the repository root, where users stand. Only header lines change; hunks are untouched.
#[allow(clippy::manual_map)]
pub fn prefix_paths(diff: &str, prefix: Option<&str>) -> String {
    let Some(prefix) = prefix.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty() && *p != ".") else {
        return diff.to_string();
    };
    let under = |path: &str| -> String {
        if path == "/dev/null" {
            return path.to_string();
        }
        for side in ["a/", "b/"] {
            if let Some(rest) = path.strip_prefix(side) {
                return format!("{side}{prefix}/{rest}");
            }
        }
        format!("{prefix}/{path}")
    };
    let mut out = String::with_capacity(diff.len() + 64);
    let mut in_hunk_header_zone = true;
    for line in diff.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.starts_with("diff --git ") {
            in_hunk_header_zone = true;
        } else if body.starts_with("@@") {
            in_hunk_header_zone = false;
        }
        let rewritten = if let Some(rest) = body.strip_prefix("diff --git ") {
            rest.split_once(" b/").map(|(a, b)| format!("diff --git {} {}", under(a), under(&format!("b/{b}"))))
        } else if !in_hunk_header_zone {
            None
        } else if let Some(rest) = body.strip_prefix("--- ") {
            let (path, tail) = rest.split_once('\t').map_or((rest, None), |(p, t)| (p, Some(t)));
            Some(format!("--- {}{}", under(path), tail.map(|t| format!("\t{t}")).unwrap_or_default()))
        } else if let Some(rest) = body.strip_prefix("+++ ") {
            let (path, tail) = rest.split_once('\t').map_or((rest, None), |(p, t)| (p, Some(t)));
            Some(format!("+++ {}{}", under(path), tail.map(|t| format!("\t{t}")).unwrap_or_default()))
        } else if let Some(rest) = body.strip_prefix("rename from ") {
            Some(format!("rename from {prefix}/{rest}"))
        } else {
            body.strip_prefix("rename to ").map(|rest| format!("rename to {prefix}/{rest}"))
        };
        out.push_str(rewritten.as_deref().unwrap_or(body));
        out.push_str(nl);
    }
    out
}

pub fn normalize_paths(patch: &mut Patch, prefix: Option<&str>) {
    let sides = side_prefixes(&patch.files);
    for f in &mut patch.files {
        if let Some(p) = &mut f.old_path {
            strip_side(p, sides.as_ref().map(|s| s.0.as_str()));
        }
        if let Some(p) = &mut f.new_path {
            strip_side(p, sides.as_ref().map(|s| s.1.as_str()));
        }
    }
    let Some(prefix) = prefix.map(clean_prefix).filter(|p| !p.is_empty()) else { return };
    let under = |p: &str| p.strip_prefix(prefix.as_str()).and_then(|rest| rest.strip_prefix('/')).map(str::to_string);
    let from_root = patch.files.iter().flat_map(|f| [&f.old_path, &f.new_path]).flatten().any(|p| under(p).is_some());
    if !from_root {
        return;
    }
    let up = "../".repeat(prefix.split('/').count());
    for f in &mut patch.files {
        for p in [&mut f.old_path, &mut f.new_path].into_iter().flatten() {
            *p = under(p).unwrap_or_else(|| format!("{up}{p}"));
        }
    }
}

/// The folders that prefix the old and new sides, `None` when the patch shows none.
fn side_prefixes(files: &[FilePatch]) -> Option<(String, String)> {
    let mut unprefixed = false;
    for f in files {
        let (Some(old), Some(new)) = (&f.old_path, &f.new_path) else { continue };
        if let (Some((o, old_rest)), Some((n, new_rest))) = (old.split_once('/'), new.split_once('/')) {
            if o != n && old_rest == new_rest && !old_rest.is_empty() {
                return Some((o.to_string(), n.to_string()));
            }
        }
        unprefixed |= old == new;
    }
    (!unprefixed).then(|| ("a".to_string(), "b".to_string()))
}

fn strip_side(path: &mut String, side: Option<&str>) {
    if let Some(rest) = side.and_then(|s| path.strip_prefix(s)).and_then(|rest| rest.strip_prefix('/')) {
        *path = rest.to_string();
    }
    while let Some(rest) = path.strip_prefix("./") {
        *path = rest.to_string();
    }
}

fn clean_prefix(prefix: &str) -> String {
    let mut p = prefix.trim_matches('/');
    while let Some(rest) = p.strip_prefix("./") {
        p = rest.trim_start_matches('/');
    }
    if p == "." { String::new() } else { p.to_string() }
}

/// The path as clean components joined by `/`, or why it cannot be joined to the root.
fn relative(path: &str) -> Result<String, RefusalReason> {
    use crate::paths::PathRefusal;
    crate::paths::clean_relative(path).map_err(|why| match why {
        PathRefusal::Absolute => RefusalReason::Absolute,
        PathRefusal::ParentDir => RefusalReason::ParentDir,
        PathRefusal::Vcs(dir) => RefusalReason::Vcs { dir },
        PathRefusal::Empty | PathRefusal::Nul | PathRefusal::Symlink(_) => RefusalReason::Invalid,
    })
}

/// The first existing symlink among `relative`'s components under `root`, if any.
fn symlink_on_path(root: &Path, relative: &str) -> Option<String> {
    let mut at = root.to_path_buf();
    for (i, part) in relative.split('/').enumerate() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Some(relative.split('/').take(i + 1).collect::<Vec<_>>().join("/"));
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

fn special_mode(f: &FilePatch) -> Option<u32> {
    [f.old_mode, f.new_mode].into_iter().flatten().find(|m| {
        let kind = m & MODE_TYPE;
        kind != 0 && kind != MODE_REGULAR
    })
}

/// Checks a normalised patch against the harness: every path must be relative, without `..`,
/// matched by `editable`, and free of symlinks under `root`; binary patches and symlink or
/// submodule modes are refused. Returns every refusal, not just the first.
pub fn check_paths(patch: &Patch, root: &Path, editable: &GlobSet) -> Result<(), Vec<Refusal>> {
    let mut refusals = Vec::new();
    for f in &patch.files {
        let refuse = |path: &str, reason| Refusal { path: path.to_string(), line: f.line, reason };
        if f.binary {
            refusals.push(refuse(f.path(), RefusalReason::Binary));
        }
        if let Some(mode) = special_mode(f) {
            refusals.push(refuse(f.path(), RefusalReason::SpecialMode { mode }));
        }
        let mut paths: Vec<&str> = [f.old_path.as_deref(), f.new_path.as_deref()].into_iter().flatten().collect();
        paths.dedup();
        for path in paths {
            match relative(path) {
                Err(reason) => refusals.push(refuse(path, reason)),
                Ok(rel) => {
                    if !editable.is_match(rel.as_str()) {
                        refusals.push(refuse(path, RefusalReason::NotEditable));
                    }
                    if let Some(at) = symlink_on_path(root, &rel) {
                        refusals.push(refuse(path, RefusalReason::Symlink { at }));
                    }
                }
            }
        }
    }
    if refusals.is_empty() { Ok(()) } else { Err(refusals) }
}

// ---------------------------------------------------------------------------------------------
// Applying
// ---------------------------------------------------------------------------------------------

/// Applies a normalised patch to the tree at `root`, a private copy. Each hunk is looked for
/// where its header says, then at the nearest offset within `MAX_OFFSET` lines, then the same
/// again ignoring trailing whitespace and CR/LF differences. Every hunk of every file is
/// placed in memory first; only when all of them land is anything written, each file through
/// a temporary file renamed into place. Paths are re-checked here (absolute, `..`, symlinks,
/// binary, special modes), whether or not `check_paths` ran.
pub fn apply(patch: &Patch, root: &Path) -> Result<ApplyReport, ApplyError> {
    let mut tree = Tree { root, overlay: BTreeMap::new() };
    let mut report = ApplyReport::default();
    let mut errors = Vec::new();
    for f in &patch.files {
        match apply_section(&mut tree, f) {
            Ok(r) => report.files.push(r),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(ApplyError::from_many(errors));
    }
    tree.commit()?;
    Ok(report)
}

#[derive(Debug, Clone)]
struct Content {
    bytes: Vec<u8>,
    /// Permission bits only: never setuid, setgid or sticky.
    perms: u32,
}

/// The root as the patch has changed it so far: files written (`Some`) or deleted (`None`) by
/// earlier sections shadow the disk, so one file may appear in several sections.
struct Tree<'r> {
    root: &'r Path,
    overlay: BTreeMap<String, Option<Content>>,
}

impl Tree<'_> {
    fn get(&self, rel: &str, line: usize) -> Result<Option<Content>, ApplyError> {
        if let Some(entry) = self.overlay.get(rel) {
            return Ok(entry.clone());
        }
        let full = self.root.join(rel);
        let meta = match fs::symlink_metadata(&full) {
            Ok(meta) => meta,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
            Err(e) => return Err(io_error("read", rel, e)),
        };
        if meta.file_type().is_symlink() {
            let reason = RefusalReason::Symlink { at: rel.to_string() };
            return Err(ApplyError::Refused(Refusal { path: rel.to_string(), line, reason }));
        }
        if !meta.is_file() {
            return Err(ApplyError::NotAFile { path: rel.to_string(), line });
        }
        let bytes = fs::read(&full).map_err(|e| io_error("read", rel, e))?;
        Ok(Some(Content { bytes, perms: meta.permissions().mode() & 0o777 }))
    }

    /// A file, on disk or written by an earlier section, where `rel` needs a folder.
    fn blocking_file(&self, rel: &str) -> Option<String> {
        let parts: Vec<&str> = rel.split('/').collect();
        for end in 1..parts.len() {
            let prefix = parts[..end].join("/");
            match self.overlay.get(&prefix) {
                Some(Some(_)) => return Some(prefix),
                Some(None) => continue,
                None => {}
            }
            match fs::symlink_metadata(self.root.join(&prefix)) {
                Ok(meta) if !meta.is_dir() => return Some(prefix),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }

    fn put(&mut self, rel: String, content: Option<Content>) {
        self.overlay.insert(rel, content);
    }

    fn commit(self) -> Result<(), ApplyError> {
        let mut staged = Vec::new();
        let result = self.write(&mut staged);
        if result.is_err() {
            for (tmp, _) in &staged {
                let _ = fs::remove_file(tmp);
            }
        }
        result
    }

    /// Stages new contents beside their targets before deleting anything, so that most I/O
    /// failures leave the tree as it was; then deletes, then renames into place.
    fn write(&self, staged: &mut Vec<(PathBuf, PathBuf)>) -> Result<(), ApplyError> {
        let mut later = Vec::new();
        for (rel, entry) in &self.overlay {
            let Some(content) = entry else { continue };
            let dest = self.root.join(rel);
            let parent = dest.parent().unwrap_or(self.root).to_path_buf();
            if fs::symlink_metadata(&parent).is_ok_and(|m| m.is_dir()) {
                staged.push((stage(&parent, content, rel)?, dest));
            } else {
                later.push((rel, dest, parent, content));
            }
        }
        for (rel, entry) in &self.overlay {
            if entry.is_some() {
                continue;
            }
            let dest = self.root.join(rel);
            match fs::remove_file(&dest) {
                Ok(()) => prune_empty_dirs(self.root, &dest),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("delete", rel, e)),
            }
        }
        for (rel, dest, parent, content) in later {
            fs::create_dir_all(&parent).map_err(|e| io_error("create the folder of", rel, e))?;
            staged.push((stage(&parent, content, rel)?, dest));
        }
        for (tmp, dest) in staged.iter() {
            fs::rename(tmp, dest).map_err(|e| io_error("write", &dest.to_string_lossy(), e))?;
        }
        Ok(())
    }
}

/// Writes `content` to a new temporary file in `dir`, so the rename into place is atomic.
fn stage(dir: &Path, content: &Content, rel: &str) -> Result<PathBuf, ApplyError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!(".autoharness-patch-{}-{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let tmp = dir.join(name);
    let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| io_error("write", rel, e))?;
    let written = file
        .write_all(&content.bytes)
        .and_then(|()| file.set_permissions(fs::Permissions::from_mode(content.perms & 0o777)));
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(io_error("write", rel, e));
    }
    Ok(tmp)
}

/// Git removes the folders a deletion leaves empty; a file added later at that folder's path
/// then does not collide with it.
fn prune_empty_dirs(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

fn io_error(action: &'static str, path: &str, source: io::Error) -> ApplyError {
    ApplyError::Io { action, path: path.to_string(), source }
}

fn resolve(root: &Path, path: Option<&str>, line: usize) -> Result<Option<String>, ApplyError> {
    let Some(path) = path else { return Ok(None) };
    let refuse = |reason| ApplyError::Refused(Refusal { path: path.to_string(), line, reason });
    let rel = relative(path).map_err(refuse)?;
    if let Some(at) = symlink_on_path(root, &rel) {
        return Err(refuse(RefusalReason::Symlink { at }));
    }
    Ok(Some(rel))
}

fn apply_section(tree: &mut Tree<'_>, f: &FilePatch) -> Result<FileReport, ApplyError> {
    let line = f.line;
    let refuse = |reason| ApplyError::Refused(Refusal { path: f.path().to_string(), line, reason });
    if f.binary {
        return Err(refuse(RefusalReason::Binary));
    }
    if let Some(mode) = special_mode(f) {
        return Err(refuse(RefusalReason::SpecialMode { mode }));
    }
    let old = resolve(tree.root, f.old_path.as_deref(), line)?;
    let new = resolve(tree.root, f.new_path.as_deref(), line)?;
    let kind = match f.kind {
        ChangeKind::Rename | ChangeKind::Copy if old == new => ChangeKind::Modify,
        kind => kind,
    };
    let unnamed = || ApplyError::Unnamed { line };
    let missing = |path: &str, action, hint| ApplyError::Missing { path: path.to_string(), line, action, hint };
    let (path, from, hunks) = match kind {
        ChangeKind::Add => {
            let path = new.ok_or_else(unnamed)?;
            if let Some(existing) = tree.get(&path, line)? {
                let same = patch_text(&path, f, b"").is_ok_and(|(bytes, _)| bytes == existing.bytes);
                return Err(if same {
                    ApplyError::AlreadyApplied { path, line }
                } else {
                    ApplyError::Exists { path, line }
                });
            }
            if let Some(blocker) = tree.blocking_file(&path) {
                return Err(ApplyError::Blocked { path, blocker, line });
            }
            let (bytes, hunks) = patch_text(&path, f, b"")?;
            tree.put(path.clone(), Some(Content { bytes, perms: new_file_perms(f.new_mode) }));
            (path, None, hunks)
        }
        ChangeKind::Delete => {
            let path = old.ok_or_else(unnamed)?;
            let Some(current) = tree.get(&path, line)? else {
                return Err(missing(&path, "delete", "; it may have been deleted already"));
            };
            let (rest, hunks) = patch_text(&path, f, &current.bytes)?;
            if !rest.is_empty() {
                let lines = rest.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count().max(1);
                return Err(ApplyError::DeleteMismatch { path, line, lines });
            }
            tree.put(path.clone(), None);
            (path, None, hunks)
        }
        ChangeKind::Modify => {
            let path = old.or(new).ok_or_else(unnamed)?;
            let Some(current) = tree.get(&path, line)? else {
                return Err(missing(
                    &path,
                    "modify",
                    "; check the path, or write the diff as a new file (`--- /dev/null`)",
                ));
            };
            let (bytes, hunks) = patch_text(&path, f, &current.bytes)?;
            tree.put(path.clone(), Some(Content { bytes, perms: perms_after(f, current.perms) }));
            (path, None, hunks)
        }
        ChangeKind::Rename | ChangeKind::Copy => {
            let (from, to) = (old.ok_or_else(unnamed)?, new.ok_or_else(unnamed)?);
            let action = if kind == ChangeKind::Rename { "rename" } else { "copy" };
            let source = tree.get(&from, line)?;
            let target = tree.get(&to, line)?;
            let source = match (source, target) {
                (Some(source), None) => source,
                (Some(_), Some(_)) => return Err(ApplyError::Exists { path: to, line }),
                (None, Some(target)) if kind == ChangeKind::Rename && reverse_applies(f, &target.bytes) => {
                    return Err(ApplyError::AlreadyApplied { path: to, line });
                }
                (None, _) => return Err(missing(&from, action, "; check the old name")),
            };
            if let Some(blocker) = tree.blocking_file(&to) {
                return Err(ApplyError::Blocked { path: to, blocker, line });
            }
            let (bytes, hunks) = patch_text(&to, f, &source.bytes)?;
            tree.put(to.clone(), Some(Content { bytes, perms: perms_after(f, source.perms) }));
            if kind == ChangeKind::Rename {
                tree.put(from.clone(), None);
            }
            (to, Some(from), hunks)
        }
    };
    Ok(FileReport { path, from, kind, hunks })
}

fn new_file_perms(mode: Option<u32>) -> u32 {
    if mode.is_some_and(|m| m & 0o111 != 0) { 0o755 } else { 0o644 }
}

/// Git tracks only the executable bit; the other bits stay as the copy has them.
fn perms_after(f: &FilePatch, current: u32) -> u32 {
    match f.new_mode {
        Some(mode) if f.changes_mode() => {
            if mode & 0o111 != 0 {
                current | ((current & 0o444) >> 2)
            } else {
                current & !0o111
            }
        }
        _ => current,
    }
}

fn has_new_side(hunk: &Hunk) -> bool {
    hunk.lines.iter().any(|l| !matches!(l, HunkLine::Remove(_)))
}

/// True when undoing `f`'s hunks on `bytes` works, i.e. `bytes` already has the change. A
/// patch with nothing on its new side (a deletion) proves nothing this way.
fn reverse_applies(f: &FilePatch, bytes: &[u8]) -> bool {
    if f.hunks.is_empty() {
        return true;
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    f.hunks.iter().any(has_new_side) && apply_hunks(&lines, &f.hunks, true).is_ok()
}

type Patched = (Vec<u8>, Vec<HunkReport>);

fn patch_text(path: &str, f: &FilePatch, bytes: &[u8]) -> Result<Patched, ApplyError> {
    if f.hunks.is_empty() {
        return Ok((bytes.to_vec(), Vec::new()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ApplyError::NotText { path: path.to_string(), line: f.line })?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    match apply_hunks(&lines, &f.hunks, false) {
        Ok((out, landed)) => {
            let reports = landed
                .iter()
                .zip(&f.hunks)
                .enumerate()
                .map(|(i, (l, h))| HunkReport {
                    hunk: i + 1,
                    line: h.line,
                    at: l.pos + 1,
                    offset: l.offset,
                    fuzz: l.fuzz,
                })
                .collect();
            Ok((out.into_bytes(), reports))
        }
        Err(missed) => {
            if f.hunks.iter().any(has_new_side) && apply_hunks(&lines, &f.hunks, true).is_ok() {
                return Err(ApplyError::AlreadyApplied { path: path.to_string(), line: f.line });
            }
            let mut errors: Vec<ApplyError> = missed
                .iter()
                .take(DESCRIBED_FAILURES)
                .map(|m| ApplyError::HunkFailed(Box::new(describe_failure(path, &lines, &f.hunks[m.hunk], m))))
                .collect();
            if missed.len() > DESCRIBED_FAILURES {
                let count = missed.len() - DESCRIBED_FAILURES;
                errors.push(ApplyError::MoreFailures { path: path.to_string(), line: f.line, count });
            }
            Err(ApplyError::from_many(errors))
        }
    }
}

enum Op<'h> {
    Keep,
    Drop,
    Insert(&'h str),
}

/// A hunk seen in one direction: forward to apply it, reverse to test whether it is applied.
struct View<'h> {
    /// The lines that must be in the file: context and removed (forward) or added (reverse).
    pattern: Vec<&'h str>,
    ops: Vec<Op<'h>>,
    /// 0-based index where the header puts the pattern.
    nominal: usize,
    /// The last line this direction writes has no newline.
    missing_newline: bool,
}

impl<'h> View<'h> {
    fn new(hunk: &'h Hunk, reverse: bool) -> Self {
        let (start, missing_newline) = if reverse {
            (hunk.new_start, hunk.old_missing_newline)
        } else {
            (hunk.old_start, hunk.new_missing_newline)
        };
        let mut pattern = Vec::with_capacity(hunk.lines.len());
        let mut ops = Vec::with_capacity(hunk.lines.len());
        for line in &hunk.lines {
            match (line, reverse) {
                (HunkLine::Context(t), _) => {
                    pattern.push(t.as_str());
                    ops.push(Op::Keep);
                }
                (HunkLine::Remove(t), false) | (HunkLine::Add(t), true) => {
                    pattern.push(t.as_str());
                    ops.push(Op::Drop);
                }
                (HunkLine::Add(t), false) | (HunkLine::Remove(t), true) => ops.push(Op::Insert(t.as_str())),
            }
        }
        // An empty side's start is the line after which to insert, not a line of its own.
        let nominal = if pattern.is_empty() { start } else { start.saturating_sub(1) };
        View { pattern, ops, nominal, missing_newline }
    }
}

struct Landed {
    pos: usize,
    offset: isize,
    fuzz: Fuzz,
}

struct Missed {
    hunk: usize,
    expected: usize,
}

fn shift(index: usize, drift: i128) -> usize {
    usize::try_from((index as i128 + drift).max(0)).unwrap_or(usize::MAX)
}

/// Places every hunk, in order and without overlap, then builds the new text. Each hunk is
/// looked for near where its header says, moved by how far the previous hunk moved.
fn apply_hunks(file: &[&str], hunks: &[Hunk], reverse: bool) -> Result<(String, Vec<Landed>), Vec<Missed>> {
    let views: Vec<View<'_>> = hunks.iter().map(|h| View::new(h, reverse)).collect();
    let mut landed = Vec::with_capacity(views.len());
    let mut missed = Vec::new();
    let (mut min, mut drift) = (0usize, 0i128);
    for (i, view) in views.iter().enumerate() {
        let expected = shift(view.nominal, drift);
        match locate(file, &view.pattern, expected, min) {
            Some((pos, fuzz)) => {
                drift = pos as i128 - view.nominal as i128;
                min = pos + view.pattern.len();
                let offset = isize::try_from(drift).unwrap_or(if drift < 0 { isize::MIN } else { isize::MAX });
                landed.push(Landed { pos, offset, fuzz });
            }
            None => missed.push(Missed { hunk: i, expected }),
        }
    }
    if !missed.is_empty() {
        return Err(missed);
    }
    let inserted: usize =
        views.iter().flat_map(|v| &v.ops).map(|op| if let Op::Insert(t) = op { t.len() + 2 } else { 0 }).sum();
    let mut out = Out {
        text: String::with_capacity(file.iter().map(|l| l.len()).sum::<usize>() + inserted),
        open: false,
        crlf: mostly_crlf(file),
    };
    let mut cursor = 0;
    for (view, place) in views.iter().zip(&landed) {
        for line in &file[cursor..place.pos] {
            out.file_line(line);
        }
        // Lines written from the patch take the file's line ends when the patch's lines did not
        // match as written; with nothing matched to tell, a CRLF file still gets CRLF.
        let ends = if place.fuzz == Fuzz::Whitespace {
            Ends::File
        } else if view.pattern.is_empty() {
            Ends::CrlfFile
        } else {
            Ends::Patch
        };
        let last_written = view.ops.iter().rposition(|op| !matches!(op, Op::Drop));
        let mut at = place.pos;
        for (k, op) in view.ops.iter().enumerate() {
            match op {
                Op::Keep => {
                    out.file_line(file[at]);
                    at += 1;
                }
                Op::Drop => at += 1,
                Op::Insert(text) => out.inserted(text, ends, !(view.missing_newline && last_written == Some(k))),
            }
        }
        cursor = at;
    }
    for line in &file[cursor..] {
        out.file_line(line);
    }
    Ok((out.text, landed))
}

/// How lines taken from the patch end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ends {
    /// As in the patch: its lines matched the file exactly.
    Patch,
    /// As in the patch, plus the `\r` of a CRLF file.
    CrlfFile,
    /// As the file's lines end: the patch matched only ignoring line ends.
    File,
}

/// The new text, line by line. A line left without its newline (the old last line, or a
/// patch line marked `\ No newline`) gets one when another line follows it.
struct Out {
    text: String,
    open: bool,
    crlf: bool,
}

impl Out {
    fn close(&mut self) {
        if self.open {
            self.text.push_str(if self.crlf && !self.text.ends_with('\r') { "\r\n" } else { "\n" });
            self.open = false;
        }
    }

    fn file_line(&mut self, line: &str) {
        self.close();
        self.text.push_str(line);
        self.open = !line.ends_with('\n');
    }

    fn inserted(&mut self, line: &str, ends: Ends, newline: bool) {
        self.close();
        let line = match ends {
            Ends::File => line.strip_suffix('\r').unwrap_or(line),
            Ends::CrlfFile | Ends::Patch => line,
        };
        self.text.push_str(line);
        let add_cr = self.crlf && !line.ends_with('\r') && ends != Ends::Patch;
        if newline {
            self.text.push_str(if add_cr { "\r\n" } else { "\n" });
        }
        self.open = !newline;
    }
}

fn mostly_crlf(file: &[&str]) -> bool {
    let ended = file.iter().filter(|l| l.ends_with('\n')).count();
    let crlf = file.iter().filter(|l| l.ends_with("\r\n")).count();
    crlf * 2 > ended
}

/// Where `pattern` is: exactly, at `expected` or the nearest offset within `MAX_OFFSET`, then
/// the same ignoring trailing whitespace. Never before `min`, the end of the previous hunk.
fn locate(file: &[&str], pattern: &[&str], expected: usize, min: usize) -> Option<(usize, Fuzz)> {
    [Fuzz::Exact, Fuzz::Whitespace]
        .into_iter()
        .find_map(|fuzz| nearest(file, pattern, expected, min, fuzz == Fuzz::Whitespace).map(|pos| (pos, fuzz)))
}

fn nearest(file: &[&str], pattern: &[&str], expected: usize, min: usize, loose: bool) -> Option<usize> {
    let max = file.len().checked_sub(pattern.len())?;
    if min > max {
        return None;
    }
    let fits = |pos: usize| pos >= min && pos <= max && matches_at(file, pattern, pos, loose);
    for d in 0..=MAX_OFFSET {
        if let Some(pos) = expected.checked_sub(d).filter(|&p| fits(p)) {
            return Some(pos);
        }
        if let Some(pos) = expected.checked_add(d).filter(|&p| d > 0 && fits(p)) {
            return Some(pos);
        }
    }
    None
}

fn matches_at(file: &[&str], pattern: &[&str], pos: usize, loose: bool) -> bool {
    pattern.iter().zip(&file[pos..]).all(|(p, l)| same_line(l, p, loose))
}

fn same_line(file_line: &str, pattern: &str, loose: bool) -> bool {
    let line = file_line.strip_suffix('\n').unwrap_or(file_line);
    if loose { line.trim_end() == pattern.trim_end() } else { line == pattern }
}

fn describe_failure(path: &str, file: &[&str], hunk: &Hunk, missed: &Missed) -> HunkFailure {
    let forward = View::new(hunk, false);
    let reverse = View::new(hunk, true);
    let already_applied_at = if reverse.pattern.is_empty() {
        None
    } else {
        locate(file, &reverse.pattern, reverse.nominal, 0).map(|(pos, _)| pos + 1)
    };
    HunkFailure {
        path: path.to_string(),
        hunk: missed.hunk + 1,
        line: hunk.line,
        header: hunk.header(),
        near: missed.expected.saturating_add(1),
        expected: forward.pattern.iter().take(QUOTED_LINES).map(|l| excerpt(l)).collect(),
        expected_lines: forward.pattern.len(),
        closest: closest(file, &forward.pattern, missed.expected),
        already_applied_at,
    }
}

/// The place where most of `pattern` matches, ignoring trailing whitespace, nearest to
/// `expected` among equals; searched within a budget around `expected`.
fn closest(file: &[&str], pattern: &[&str], expected: usize) -> Option<Closest> {
    if pattern.is_empty() || file.is_empty() {
        return None;
    }
    let last_start = file.len().saturating_sub(pattern.len());
    let span = (CLOSEST_BUDGET / pattern.len()).max(1);
    let low = expected.min(last_start).saturating_sub(span / 2);
    let high = low.saturating_add(span).min(last_start + 1);
    let mut best: Option<(usize, usize, usize)> = None;
    for pos in low..high {
        let matching = pattern.iter().zip(&file[pos..]).filter(|(p, l)| same_line(l, p, true)).count();
        let distance = pos.abs_diff(expected);
        if matching > 0 && best.is_none_or(|(m, d, _)| matching > m || (matching == m && distance < d)) {
            best = Some((matching, distance, pos));
        }
    }
    let (matching, _, pos) = best?;
    let difference = pattern.iter().enumerate().find_map(|(j, expected)| {
        let found = file.get(pos + j);
        if found.is_some_and(|l| same_line(l, expected, true)) {
            return None;
        }
        let found = found.map(|l| excerpt(l.strip_suffix('\n').unwrap_or(l).trim_end_matches('\r')));
        Some(Difference { line: pos + j + 1, expected: excerpt(expected), found })
    });
    Some(Closest { line: pos + 1, matching, difference })
}

// ---------------------------------------------------------------------------------------------
// Diffing two trees
// ---------------------------------------------------------------------------------------------

/// A git-style unified diff (a/ b/ prefixes, 3 lines of context) from `old_root` to
/// `new_root`, over the regular files `include` matches. Added, deleted and emptied files,
/// missing final newlines and executable-bit changes are written as git does; a file that is
/// not UTF-8 text is written as `Binary files … differ`, which `check_paths` refuses.
/// Symlinks are not followed and not diffed.
pub fn diff_trees(old_root: &Path, new_root: &Path, include: &GlobSet) -> io::Result<String> {
    let old = list_files(old_root, include)?;
    let new = list_files(new_root, include)?;
    let mut out = String::new();
    for rel in old.union(&new) {
        let before = if old.contains(rel) { Some(snapshot(&old_root.join(rel))?) } else { None };
        let after = if new.contains(rel) { Some(snapshot(&new_root.join(rel))?) } else { None };
        file_diff(&mut out, rel, before.as_ref(), after.as_ref());
    }
    Ok(out)
}

struct Snapshot {
    bytes: Vec<u8>,
    executable: bool,
}

impl Snapshot {
    fn mode(&self) -> &'static str {
        if self.executable { "100755" } else { "100644" }
    }

    fn text(&self) -> Option<&str> {
        if self.bytes.contains(&0) { None } else { std::str::from_utf8(&self.bytes).ok() }
    }
}

fn snapshot(path: &Path) -> io::Result<Snapshot> {
    let context = |e: io::Error| io::Error::new(e.kind(), format!("cannot read `{}`: {e}", path.display()));
    let meta = fs::symlink_metadata(path).map_err(context)?;
    let bytes = fs::read(path).map_err(context)?;
    Ok(Snapshot { bytes, executable: meta.permissions().mode() & 0o111 != 0 })
}

fn list_files(root: &Path, include: &GlobSet) -> io::Result<BTreeSet<String>> {
    let mut files = BTreeSet::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        let full = if dir.is_empty() { root.to_path_buf() } else { root.join(&dir) };
        let context = |e: io::Error| io::Error::new(e.kind(), format!("cannot list `{}`: {e}", full.display()));
        for entry in fs::read_dir(&full).map_err(context)? {
            let entry = entry.map_err(context)?;
            let name = entry.file_name();
            let kind = entry.file_type().map_err(context)?;
            let Some(name) = name.to_str() else {
                let lossy = name.to_string_lossy();
                let rel = if dir.is_empty() { lossy.to_string() } else { format!("{dir}/{lossy}") };
                if include.is_match(&rel) {
                    let message = format!("`{}` has a name that is not UTF-8, which a patch cannot carry", rel);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, message));
                }
                continue;
            };
            let rel = if dir.is_empty() { name.to_string() } else { format!("{dir}/{name}") };
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name) {
                    pending.push(rel);
                }
            } else if kind.is_file() && include.is_match(&rel) {
                files.insert(rel);
            }
        }
    }
    Ok(files)
}

fn file_diff(out: &mut String, rel: &str, before: Option<&Snapshot>, after: Option<&Snapshot>) {
    let a = quote_path("a/", rel);
    let b = quote_path("b/", rel);
    // Git ends `---` and `+++` names holding a space with a tab, so no reader takes the rest of
    // the name for a timestamp.
    let tab = if rel.contains(' ') { "\t" } else { "" };
    match (before, after) {
        (Some(old), Some(new)) => {
            let same_content = old.bytes == new.bytes;
            if same_content && old.executable == new.executable {
                return;
            }
            let _ = writeln!(out, "diff --git {a} {b}");
            if old.executable != new.executable {
                let _ = write!(out, "old mode {}\nnew mode {}\n", old.mode(), new.mode());
            }
            if same_content {
                return;
            }
            match (old.text(), new.text()) {
                (Some(x), Some(y)) => {
                    let _ = write!(out, "--- {a}{tab}\n+++ {b}{tab}\n");
                    write_hunks(out, x, y);
                }
                _ => {
                    let _ = writeln!(out, "Binary files {a} and {b} differ");
                }
            }
        }
        (None, Some(new)) => {
            let _ = write!(out, "diff --git {a} {b}\nnew file mode {}\n", new.mode());
            if new.bytes.is_empty() {
                return;
            }
            match new.text() {
                Some(y) => {
                    let _ = write!(out, "--- /dev/null\n+++ {b}{tab}\n");
                    write_hunks(out, "", y);
                }
                None => {
                    let _ = writeln!(out, "Binary files /dev/null and {b} differ");
                }
            }
        }
        (Some(old), None) => {
            let _ = write!(out, "diff --git {a} {b}\ndeleted file mode {}\n", old.mode());
            if old.bytes.is_empty() {
                return;
            }
            match old.text() {
                Some(x) => {
                    let _ = write!(out, "--- {a}{tab}\n+++ /dev/null\n");
                    write_hunks(out, x, "");
                }
                None => {
                    let _ = writeln!(out, "Binary files {a} and /dev/null differ");
                }
            }
        }
        (None, None) => {}
    }
}

/// Git's quoting: names with control characters, quotes or backslashes are C-quoted.
fn quote_path(prefix: &str, rel: &str) -> String {
    if !rel.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return format!("{prefix}{rel}");
    }
    let mut quoted = format!("\"{prefix}");
    for c in rel.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(quoted, "\\{byte:03o}");
                }
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Lines of context around each change, as git writes by default.
const CONTEXT: usize = 3;

/// Lines are split on `\n` only, keeping it, so a `\r` stays content and a missing final
/// newline shows as a different last line, as in git.
fn write_hunks(out: &mut String, old: &str, new: &str) {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let script = edit_script(&a, &b);
    let (mut i, mut o, mut n) = (0, 0, 0);
    while let Some(next) = script[i..].iter().position(|&(tag, _)| tag != b' ') {
        let change = i + next;
        let start = change.saturating_sub(CONTEXT).max(i);
        o += start - i;
        n += start - i;
        // Changes closer than twice the context share one hunk.
        let (mut end, mut last_change) = (change + 1, change);
        while end < script.len() && end - last_change <= 2 * CONTEXT {
            if script[end].0 != b' ' {
                last_change = end;
            }
            end += 1;
        }
        let end = (last_change + 1 + CONTEXT).min(script.len());
        let hunk = &script[start..end];
        let old_len = hunk.iter().filter(|&&(tag, _)| tag != b'+').count();
        let new_len = hunk.iter().filter(|&&(tag, _)| tag != b'-').count();
        let _ = writeln!(out, "@@ -{} +{} @@", range_text(o..o + old_len), range_text(n..n + new_len));
        for &(tag, index) in hunk {
            let line = if tag == b'+' { b[index] } else { a[index] };
            out.push(char::from(tag));
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
        (i, o, n) = (end, o + old_len, n + new_len);
    }
}

/// One entry per line of the diff: `b' '` and `b'-'` with an index into `a`, `b'+'` with one
/// into `b`. Only the lengths of similar's ops are used, and the result is checked to consume
/// both sides with equal lines equal: its indices have been seen to disagree with each other,
/// and a wrong diff here would be a wrong patch. A script that fails the check is replaced by
/// the plain one (remove everything, add everything), correct if not minimal.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<(u8, usize)> {
    let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, a, b, Some(Instant::now() + DIFF_DEADLINE));
    let mut script = Vec::with_capacity(a.len() + b.len());
    let (mut o, mut n) = (0, 0);
    let mut valid = true;
    for op in ops {
        let (removed, added, equal) = match op {
            DiffOp::Equal { len, .. } => (0, 0, len),
            DiffOp::Delete { old_len, .. } => (old_len, 0, 0),
            DiffOp::Insert { new_len, .. } => (0, new_len, 0),
            DiffOp::Replace { old_len, new_len, .. } => (old_len, new_len, 0),
        };
        for k in 0..equal {
            valid &= matches!((a.get(o + k), b.get(n + k)), (Some(x), Some(y)) if x == y);
            script.push((b' ', o + k));
        }
        (o, n) = (o + equal, n + equal);
        script.extend((o..o + removed).map(|k| (b'-', k)));
        script.extend((n..n + added).map(|k| (b'+', k)));
        (o, n) = (o + removed, n + added);
    }
    if valid && o == a.len() && n == b.len() {
        return script;
    }
    (0..a.len()).map(|k| (b'-', k)).chain((0..b.len()).map(|k| (b'+', k))).collect()
}

fn range_text(range: Range<usize>) -> String {
    match range.len() {
        0 => format!("{},0", range.start),
        1 => format!("{}", range.start + 1),
        len => format!("{},{len}", range.start + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use globset::{Glob, GlobSetBuilder};
    use proptest::prelude::*;
    use std::os::unix::fs::symlink;
    use tempfile::TempDir;

    fn tree(files: &[(&str, &str)]) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, content).unwrap();
        }
        dir
    }

    fn read(root: &Path, path: &str) -> String {
        fs::read_to_string(root.join(path)).unwrap()
    }

    fn globs(patterns: &[&str]) -> GlobSet {
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(Glob::new(p).unwrap());
        }
        builder.build().unwrap()
    }

    fn parsed(text: &str) -> Patch {
        let mut patch = parse(text).unwrap();
        normalize_paths(&mut patch, None);
        patch
    }

    fn apply_text(root: &Path, text: &str) -> Result<ApplyReport, ApplyError> {
        apply(&parsed(text), root)
    }

    /// Every file under `root`, relative path to bytes.
    fn snapshot_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                    files.insert(rel, fs::read(&path).unwrap());
                }
            }
        }
        files
    }

    const GIT_MODIFY: &str = "diff --git a/prompts/system.md b/prompts/system.md
index 3b18e51..a4c2f0d 100644
--- a/prompts/system.md
+++ b/prompts/system.md
@@ -1,4 +1,4 @@
 You are a support bot.
-Be terse.
+Be kind and terse.
 Never promise refunds.
 Escalate legal questions.
";

    const SYSTEM: &str = "You are a support bot.\nBe terse.\nNever promise refunds.\nEscalate legal questions.\n";

    #[test]
    fn parses_and_applies_a_git_diff() {
        let patch = parse(GIT_MODIFY).unwrap();
        assert_eq!(patch.files.len(), 1);
        let f = &patch.files[0];
        assert_eq!(
            (f.old_path.as_deref(), f.new_path.as_deref()),
            (Some("a/prompts/system.md"), Some("b/prompts/system.md"))
        );
        assert_eq!((f.kind, f.line, f.old_mode, f.new_mode), (ChangeKind::Modify, 1, Some(0o100644), Some(0o100644)));
        let h = &f.hunks[0];
        assert_eq!((h.old_start, h.old_len, h.new_start, h.new_len, h.line), (1, 4, 1, 4, 5));
        assert_eq!(h.lines[1], HunkLine::Remove("Be terse.".into()));
        assert_eq!(h.lines[2], HunkLine::Add("Be kind and terse.".into()));

        let dir = tree(&[("prompts/system.md", SYSTEM)]);
        let report = apply_text(dir.path(), GIT_MODIFY).unwrap();
        assert!(report.is_exact());
        assert_eq!(report.files[0].path, "prompts/system.md");
        assert_eq!(read(dir.path(), "prompts/system.md"), SYSTEM.replace("Be terse.", "Be kind and terse."));
    }

    #[test]
    fn new_and_deleted_files_in_one_git_patch() {
        let text = "diff --git a/new.md b/new.md
new file mode 100644
index 0000000..e69de29
--- /dev/null
+++ b/new.md
@@ -0,0 +1,2 @@
+one
+two
diff --git a/old.md b/old.md
deleted file mode 100644
index e69de29..0000000
--- a/old.md
+++ /dev/null
@@ -1 +0,0 @@
-gone
diff --git a/empty.md b/empty.md
new file mode 100755
index 0000000..e69de29
";
        let patch = parsed(text);
        let kinds: Vec<_> =
            patch.files.iter().map(|f| (f.kind, f.old_path.as_deref(), f.new_path.as_deref())).collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::Add, None, Some("new.md")),
                (ChangeKind::Delete, Some("old.md"), None),
                (ChangeKind::Add, None, Some("empty.md"))
            ]
        );
        let dir = tree(&[("old.md", "gone\n")]);
        apply(&patch, dir.path()).unwrap();
        assert_eq!(read(dir.path(), "new.md"), "one\ntwo\n");
        assert!(!dir.path().join("old.md").exists());
        assert_eq!(read(dir.path(), "empty.md"), "");
        assert_eq!(fs::metadata(dir.path().join("empty.md")).unwrap().permissions().mode() & 0o777, 0o755);
    }

    #[test]
    fn renames_with_and_without_hunks() {
        let text = "diff --git a/a.md b/b.md
similarity index 100%
rename from a.md
rename to b.md
diff --git a/c.md b/d/e.md
similarity index 80%
rename from c.md
rename to d/e.md
index 111..222 100644
--- a/c.md
+++ b/d/e.md
@@ -1,2 +1,2 @@
 keep
-old
+new
";
        let patch = parsed(text);
        assert_eq!(patch.files[0].kind, ChangeKind::Rename);
        assert_eq!(
            (patch.files[0].old_path.as_deref(), patch.files[0].new_path.as_deref()),
            (Some("a.md"), Some("b.md"))
        );
        assert_eq!(patch.touched_paths(), ["a.md", "b.md", "c.md", "d/e.md"]);
        let dir = tree(&[("a.md", "A\n"), ("c.md", "keep\nold\n")]);
        let report = apply(&patch, dir.path()).unwrap();
        assert_eq!(report.files[1].from.as_deref(), Some("c.md"));
        assert_eq!(read(dir.path(), "b.md"), "A\n");
        assert_eq!(read(dir.path(), "d/e.md"), "keep\nnew\n");
        assert!(!dir.path().join("a.md").exists() && !dir.path().join("c.md").exists());
        // Applying it again: the renamed files are there and the old names are gone.
        let err = apply(&patch, dir.path()).unwrap_err();
        assert!(err.to_string().contains("already applied"), "{err}");
    }

    #[test]
    fn mode_changes_set_and_clear_the_executable_bit() {
        let text = "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n";
        let patch = parsed(text);
        assert_eq!((patch.files[0].old_mode, patch.files[0].new_mode), (Some(0o100644), Some(0o100755)));
        assert!(!patch.is_empty());
        let dir = tree(&[("run.sh", "echo hi\n")]);
        fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o640)).unwrap();
        apply(&patch, dir.path()).unwrap();
        assert_eq!(fs::metadata(dir.path().join("run.sh")).unwrap().permissions().mode() & 0o777, 0o750);
        let back = parsed("diff --git a/run.sh b/run.sh\nold mode 100755\nnew mode 100644\n");
        apply(&back, dir.path()).unwrap();
        assert_eq!(fs::metadata(dir.path().join("run.sh")).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn modifying_keeps_the_files_permissions_and_leaves_no_temp_file() {
        let dir = tree(&[("prompts/system.md", SYSTEM)]);
        fs::set_permissions(dir.path().join("prompts/system.md"), fs::Permissions::from_mode(0o600)).unwrap();
        apply_text(dir.path(), GIT_MODIFY).unwrap();
        assert_eq!(fs::metadata(dir.path().join("prompts/system.md")).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(snapshot_tree(dir.path()).len(), 1);
    }

    #[test]
    fn diff_u_with_timestamps() {
        let text = "--- prompts/system.md\t2026-01-05 10:00:00.000000000 +0100
+++ prompts/system.md\t2026-01-05 10:05:00.000000000 +0100
@@ -2 +2 @@
-Be terse.
+Be brief.
";
        let patch = parsed(text);
        assert_eq!(patch.files[0].old_path.as_deref(), Some("prompts/system.md"));
        let dir = tree(&[("prompts/system.md", SYSTEM)]);
        apply(&patch, dir.path()).unwrap();
        assert!(read(dir.path(), "prompts/system.md").contains("Be brief.\n"));
    }

    #[test]
    fn diff_ru_n_between_two_folders() {
        let text = "diff -ruN harness.orig/a.md harness/a.md
--- harness.orig/a.md\t2026-01-05 10:00:00.000000000 +0000
+++ harness/a.md\t2026-01-05 10:05:00.000000000 +0000
@@ -1 +1 @@
-x
+y
diff -ruN harness.orig/new.md harness/new.md
--- harness.orig/new.md\t1970-01-01 00:00:00.000000000 +0000
+++ harness/new.md\t2026-01-05 10:05:00.000000000 +0000
@@ -0,0 +1 @@
+fresh
diff -ruN harness.orig/old.md harness/old.md
--- harness.orig/old.md\t2026-01-05 10:00:00.000000000 +0000
+++ harness/old.md\t1970-01-01 00:00:00.000000000 +0000
@@ -1 +0,0 @@
-stale
--- /dev/null\t2026-01-05 10:00:00.000000000 +0000
+++ harness/other.md\t2026-01-05 10:05:00.000000000 +0000
@@ -0,0 +1 @@
+other
";
        let patch = parsed(text);
        let kinds: Vec<_> = patch.files.iter().map(|f| (f.kind, f.path())).collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::Modify, "a.md"),
                (ChangeKind::Add, "new.md"),
                (ChangeKind::Delete, "old.md"),
                (ChangeKind::Add, "other.md")
            ]
        );
        let dir = tree(&[("a.md", "x\n"), ("old.md", "stale\n")]);
        apply(&patch, dir.path()).unwrap();
        assert_eq!(snapshot_tree(dir.path()).into_keys().collect::<Vec<_>>(), ["a.md", "new.md", "other.md"]);
        assert_eq!(read(dir.path(), "a.md"), "y\n");
    }

    #[test]
    fn backup_suffix_names_one_file() {
        let patch = parsed("--- prompt.md.orig\n+++ prompt.md\n@@ -1 +1 @@\n-a\n+b\n");
        assert_eq!(patch.files[0].old_path, patch.files[0].new_path);
        assert_eq!(patch.files[0].path(), "prompt.md");
    }

    #[test]
    fn no_newline_at_end_on_either_side() {
        let dir = tree(&[("a.md", "one\ntwo"), ("b.md", "one\ntwo\n"), ("c.md", "x\nlast")]);
        let text = "--- a/a.md
+++ b/a.md
@@ -1,2 +1,3 @@
 one
-two
\\ No newline at end of file
+two
+three
--- a/b.md
+++ b/b.md
@@ -1,2 +1,2 @@
 one
-two
+two
\\ No newline at end of file
--- a/c.md
+++ b/c.md
@@ -1,2 +1,2 @@
-x
+y
 last
\\ No newline at end of file
";
        let patch = parsed(text);
        let flags: Vec<_> =
            patch.files.iter().map(|f| (f.hunks[0].old_missing_newline, f.hunks[0].new_missing_newline)).collect();
        assert_eq!(flags, [(true, false), (false, true), (true, true)]);
        apply(&patch, dir.path()).unwrap();
        assert_eq!(read(dir.path(), "a.md"), "one\ntwo\nthree\n");
        assert_eq!(read(dir.path(), "b.md"), "one\ntwo");
        assert_eq!(read(dir.path(), "c.md"), "y\nlast");
    }

    #[test]
    fn appending_after_a_last_line_without_newline_gives_it_one() {
        // An LLM often writes the old last line as context although it lacked a newline.
        let dir = tree(&[("a.md", "one\ntwo")]);
        apply_text(dir.path(), "--- a/a.md\n+++ b/a.md\n@@ -2 +2,2 @@\n two\n+three\n").unwrap();
        assert_eq!(read(dir.path(), "a.md"), "one\ntwo\nthree\n");
    }

    #[test]
    fn hunk_headers_without_lengths() {
        let patch = parsed("--- a/x\n+++ b/x\n@@ -3 +3 @@\n-c\n+C\n");
        let h = &patch.files[0].hunks[0];
        assert_eq!((h.old_start, h.old_len, h.new_start, h.new_len), (3, 1, 3, 1));
        let dir = tree(&[("x", "a\nb\nc\nd\n")]);
        apply(&patch, dir.path()).unwrap();
        assert_eq!(read(dir.path(), "x"), "a\nb\nC\nd\n");
    }

    #[test]
    fn empty_context_lines_that_lost_their_space() {
        let text = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n first\n\n-third\n+THIRD\n";
        let patch = parsed(text);
        assert_eq!(patch.files[0].hunks[0].lines[1], HunkLine::Context(String::new()));
        let dir = tree(&[("x", "first\n\nthird\n")]);
        apply(&patch, dir.path()).unwrap();
        assert_eq!(read(dir.path(), "x"), "first\n\nTHIRD\n");
    }

    #[test]
    fn crlf_patch_text_applies_to_lf_and_crlf_files() {
        let text = GIT_MODIFY.replace('\n', "\r\n");
        let patch = parsed(&text);
        assert_eq!(patch.files[0].hunks[0].lines[2], HunkLine::Add("Be kind and terse.".into()));
        let dir = tree(&[("prompts/system.md", SYSTEM)]);
        apply(&patch, dir.path()).unwrap();
        assert_eq!(read(dir.path(), "prompts/system.md"), SYSTEM.replace("Be terse.", "Be kind and terse."));

        let crlf = SYSTEM.replace('\n', "\r\n");
        let dir = tree(&[("prompts/system.md", &crlf)]);
        let report = apply(&patch, dir.path()).unwrap();
        assert_eq!(report.files[0].hunks[0].fuzz, Fuzz::Whitespace);
        assert_eq!(read(dir.path(), "prompts/system.md"), crlf.replace("Be terse.", "Be kind and terse."));
    }

    #[test]
    fn prose_and_fences_around_the_diff_are_skipped() {
        let text = format!(
            "Sure! Here is the change you asked for.\n\n- it makes the bot kinder\n\n```diff\n{GIT_MODIFY}```\n\n\
             This keeps the refund rule.\n--- \nThanks\n"
        );
        let patch = parsed(&text);
        assert_eq!(patch.files.len(), 1);
        assert_eq!(patch.files[0].line, 6);
        let dir = tree(&[("prompts/system.md", SYSTEM)]);
        apply(&patch, dir.path()).unwrap();
    }

    #[test]
    fn several_files_in_one_patch() {
        let text = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+one\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-2\n+two\n";
        let dir = tree(&[("x", "1\n"), ("y", "2\n")]);
        let report = apply_text(dir.path(), text).unwrap();
        assert_eq!(report.files.len(), 2);
        assert_eq!((read(dir.path(), "x"), read(dir.path(), "y")), ("one\n".into(), "two\n".into()));
    }

    #[test]
    fn the_same_file_twice_applies_in_order() {
        let text = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-2\n+3\n";
        let dir = tree(&[("x", "1\n")]);
        apply_text(dir.path(), text).unwrap();
        assert_eq!(read(dir.path(), "x"), "3\n");
    }

    #[test]
    fn counts_that_disagree_with_the_lines_name_the_line() {
        let short = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\ndiff --git a/y b/y\n";
        let err = parse(short).unwrap_err();
        assert!(matches!(err, PatchError::HunkCount { line: 7, hunk_line: 3, .. }), "{err:?}");
        assert!(err.to_string().contains("patch line 7") && err.to_string().contains("`b/x`"), "{err}");

        let long = "--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@\n a\n-b\n-c\n+B\n+C\n";
        let err = parse(long).unwrap_err();
        assert!(matches!(err, PatchError::HunkCount { line: 6, .. }), "{err:?}");
        assert!(err.to_string().contains("one more than the hunk header counts"), "{err}");

        let trailing = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-b\n+B\n+C\n";
        let err = parse(trailing).unwrap_err();
        assert!(matches!(err, PatchError::HunkCount { line: 6, .. }), "{err:?}");

        let truncated = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n";
        let err = parse(truncated).unwrap_err();
        assert!(err.to_string().contains("ends inside a hunk"), "{err}");
    }

    #[test]
    fn empty_patch_error() {
        for text in ["", "just some prose\n", "```diff\n```\n"] {
            let err = parse(text).unwrap_err();
            assert_eq!(err, PatchError::Empty);
            assert!(err.to_string().starts_with("empty patch: no file changes found"));
        }
        let err = parse("Here:\n@@ -1 +1 @@\n-a\n+b\n").unwrap_err();
        assert!(matches!(err, PatchError::HunkWithoutFile { line: 2, .. }), "{err:?}");
        let err = parse("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\nAlso:\n@@ -5 +5 @@\n-c\n+d\n").unwrap_err();
        assert!(matches!(err, PatchError::HunkWithoutFile { line: 7, .. }), "{err:?}");
    }

    #[test]
    fn malformed_hunk_header_error() {
        for header in ["@@ -a,1 +1 @@", "@@ -1,2 +1,2", "@@ 1,2 1,2 @@", "@@@ -1 -1 +1 @@@", "@@ -+1 +1 @@"] {
            let text = format!("--- a/x\n+++ b/x\n{header}\n-a\n+b\n");
            let err = parse(&text).unwrap_err();
            assert!(matches!(&err, PatchError::MalformedHunkHeader { line: 3, path, .. } if path == "b/x"), "{err:?}");
            assert!(err.to_string().contains("malformed hunk header"), "{err}");
        }
        let err = parse("diff --git a/x b/x\nold mode 10064z\n").unwrap_err();
        assert!(matches!(err, PatchError::MalformedHeader { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn a_hunk_that_does_not_apply_says_which_and_where() {
        let dir = tree(&[("prompts/system.md", &SYSTEM.replace("Never promise", "Do not promise"))]);
        let err = apply_text(dir.path(), GIT_MODIFY).unwrap_err();
        let ApplyError::HunkFailed(failure) = &err else { panic!("{err:?}") };
        assert_eq!((failure.hunk, failure.line, failure.near, failure.expected_lines), (1, 5, 1, 4));
        let closest = failure.closest.as_ref().unwrap();
        assert_eq!((closest.line, closest.matching), (1, 3));
        let difference = closest.difference.as_ref().unwrap();
        assert_eq!(difference.line, 3);
        assert_eq!(difference.found.as_deref(), Some("Do not promise refunds."));
        let message = err.to_string();
        for part in ["`prompts/system.md`: hunk 1 at patch line 5", "|Never promise refunds.", "closest place: line 1"]
        {
            assert!(message.contains(part), "{message}");
        }
        assert_eq!(read(dir.path(), "prompts/system.md"), SYSTEM.replace("Never promise", "Do not promise"));
    }

    #[test]
    fn an_already_applied_patch_is_named_so() {
        let dir = tree(&[("prompts/system.md", SYSTEM)]);
        apply_text(dir.path(), GIT_MODIFY).unwrap();
        let err = apply_text(dir.path(), GIT_MODIFY).unwrap_err();
        assert!(matches!(err, ApplyError::AlreadyApplied { line: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("already applied"), "{err}");

        let add = "--- /dev/null\n+++ b/n.md\n@@ -0,0 +1 @@\n+hi\n";
        apply_text(dir.path(), add).unwrap();
        let err = apply_text(dir.path(), add).unwrap_err();
        assert!(matches!(err, ApplyError::AlreadyApplied { .. }), "{err:?}");
    }

    #[test]
    fn one_hunk_already_applied_among_others() {
        let dir = tree(&[("x", "a\nB\nc\nd\ne\nf\ng\nh\ni\n")]);
        let text = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -7,3 +7,3 @@\n g\n-h\n+H\n i\n";
        let err = apply_text(dir.path(), text).unwrap_err();
        let ApplyError::HunkFailed(failure) = &err else { panic!("{err:?}") };
        assert_eq!((failure.hunk, failure.already_applied_at), (1, Some(1)));
        assert!(err.to_string().contains("seems already applied"), "{err}");
    }

    #[test]
    fn modifying_a_missing_file_and_adding_an_existing_one() {
        let dir = tree(&[("exists.md", "old\n")]);
        let err = apply_text(dir.path(), "--- a/nope.md\n+++ b/nope.md\n@@ -1 +1 @@\n-a\n+b\n").unwrap_err();
        assert!(matches!(&err, ApplyError::Missing { path, line: 1, .. } if path == "nope.md"), "{err:?}");
        assert!(err.to_string().contains("cannot modify `nope.md` (patch line 1): no such file"), "{err}");

        let err = apply_text(dir.path(), "--- /dev/null\n+++ b/exists.md\n@@ -0,0 +1 @@\n+new\n").unwrap_err();
        assert!(matches!(&err, ApplyError::Exists { path, .. } if path == "exists.md"), "{err:?}");
        assert!(err.to_string().contains("cannot create `exists.md` (patch line 1)"), "{err}");
    }

    #[test]
    fn vcs_folders_are_refused_at_any_depth() {
        let dir = tree(&[("prompts/system.md", "a\n")]);
        for path in ["prompts/.git/config", ".git/hooks/pre-commit", "prompts/x/.Git/config", "a/.svn/entries"] {
            let text = format!("--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+[core]\n");
            let refusals = check_paths(&parsed(&text), dir.path(), &globs(&["**"])).unwrap_err();
            assert!(matches!(&refusals[0].reason, RefusalReason::Vcs { .. }), "{path}: {refusals:?}");
            let err = apply_text(dir.path(), &text).unwrap_err();
            assert!(err.to_string().contains("version-control folder"), "{err}");
        }
        assert!(!dir.path().join("prompts/.git").exists() && !dir.path().join(".git").exists());
    }

    #[test]
    fn binary_patches_are_refused() {
        let git = "diff --git a/logo.png b/logo.png
index 1111111..2222222 100644
GIT binary patch
literal 5
McmZ?wbhEW-00u4p0ssI2

literal 0
HcmV?d00001

diff --git a/x b/x
--- a/x
+++ b/x
@@ -1 +1 @@
-a
+b
";
        let patch = parsed(git);
        assert_eq!(patch.files.len(), 2);
        assert!(patch.files[0].binary && !patch.files[1].binary);
        let dir = tree(&[("logo.png", "png"), ("x", "a\n")]);
        let refusals = check_paths(&patch, dir.path(), &globs(&["**"])).unwrap_err();
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].reason, RefusalReason::Binary);
        assert!(refusals[0].to_string().starts_with("`logo.png` (patch line 1) is a binary patch"), "{}", refusals[0]);
        let err = apply(&patch, dir.path()).unwrap_err();
        assert!(matches!(&err, ApplyError::Refused(r) if r.reason == RefusalReason::Binary), "{err:?}");
        assert_eq!(read(dir.path(), "x"), "a\n", "all or nothing");

        let plain = parsed("Binary files a/logo.png and b/logo.png differ\n");
        assert!(plain.files[0].binary);
        let in_git = parsed(
            "diff --git a/logo.png b/logo.png\nindex 1..2 100644\nBinary files a/logo.png and b/logo.png differ\n",
        );
        assert!(in_git.files[0].binary);
    }

    #[test]
    fn delete_checks_the_content_with_fuzz() {
        let text = "--- a/x\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-one\n-two\n";
        let dir = tree(&[("x", "one  \ntwo\n")]);
        apply_text(dir.path(), text).unwrap();
        assert!(!dir.path().join("x").exists());

        let dir = tree(&[("x", "one\ntwo\nthree\n")]);
        let err = apply_text(dir.path(), text).unwrap_err();
        assert!(matches!(err, ApplyError::DeleteMismatch { lines: 1, .. }), "{err:?}");
        assert!(dir.path().join("x").exists());

        let dir = tree(&[]);
        let err = apply_text(dir.path(), text).unwrap_err();
        assert!(err.to_string().contains("cannot delete `x`"), "{err}");
    }

    #[test]
    fn deleting_the_last_file_of_a_folder_removes_the_folder() {
        let dir = tree(&[("d/x", "one\n")]);
        apply_text(dir.path(), "--- a/d/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-one\n").unwrap();
        assert!(!dir.path().join("d").exists());
        assert!(dir.path().exists());
    }

    #[test]
    fn a_file_in_the_way_of_a_folder_is_caught_before_writing() {
        let dir = tree(&[("x", "1\n"), ("d", "file\n")]);
        let text = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+2\n--- /dev/null\n+++ b/d/new.md\n@@ -0,0 +1 @@\n+n\n";
        let err = apply_text(dir.path(), text).unwrap_err();
        assert!(matches!(&err, ApplyError::Blocked { blocker, line: 6, .. } if blocker == "d"), "{err:?}");
        assert_eq!(read(dir.path(), "x"), "1\n");
        // Deleting the file first makes room for the folder.
        let text = "--- a/d\n+++ /dev/null\n@@ -1 +0,0 @@\n-file\n--- /dev/null\n+++ b/d/new.md\n@@ -0,0 +1 @@\n+n\n";
        apply_text(dir.path(), text).unwrap();
        assert_eq!(read(dir.path(), "d/new.md"), "n\n");
    }

    #[test]
    fn many_failed_hunks_are_summarised() {
        let dir = tree(&[("x", "a\n")]);
        let mut text = String::from("--- a/x\n+++ b/x\n");
        for i in 0..25 {
            let _ = write!(text, "@@ -{},1 +{},1 @@\n-missing {i}\n+new {i}\n", i * 10 + 1, i * 10 + 1);
        }
        let err = apply_text(dir.path(), &text).unwrap_err();
        let ApplyError::Several(errors) = &err else { panic!("{err:?}") };
        assert_eq!(errors.len(), DESCRIBED_FAILURES + 1);
        assert!(matches!(errors.last(), Some(ApplyError::MoreFailures { count: 15, .. })), "{err}");
    }

    #[test]
    fn offsets_and_whitespace_fuzz_are_reported() {
        let mut content: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        content.insert_str(0, "inserted 1\ninserted 2\ninserted 3\n");
        let dir = tree(&[("x", &content)]);
        let text = "--- a/x\n+++ b/x\n@@ -9,3 +9,3 @@\n line 9\n-line 10\n+LINE 10\n line 11\n\
                    @@ -20,3 +20,3 @@\n line 20   \n-line 21\n+LINE 21\n line 22\n";
        let report = apply_text(dir.path(), text).unwrap();
        let hunks = &report.files[0].hunks;
        assert_eq!((hunks[0].at, hunks[0].offset, hunks[0].fuzz), (12, 3, Fuzz::Exact));
        assert_eq!((hunks[1].at, hunks[1].offset, hunks[1].fuzz), (23, 3, Fuzz::Whitespace));
        assert!(!report.is_exact());
        assert!(report.to_string().contains("hunk 2 at line 23 (offset +3, whitespace ignored)"), "{report}");
        let result = read(dir.path(), "x");
        assert!(result.contains("LINE 10\n") && result.contains("LINE 21\n") && result.contains("line 20\n"));
    }

    #[test]
    fn a_hunk_beyond_the_offset_window_fails() {
        let content: String = (1..=200).map(|i| format!("line {i}\n")).collect();
        let dir = tree(&[("x", &content)]);
        let err =
            apply_text(dir.path(), "--- a/x\n+++ b/x\n@@ -10,2 +10,2 @@\n line 150\n-line 151\n+X\n").unwrap_err();
        let ApplyError::HunkFailed(failure) = &err else { panic!("{err:?}") };
        let closest = failure.closest.as_ref().unwrap();
        assert_eq!((closest.line, closest.matching, closest.difference.clone()), (150, 2, None));
        assert!(err.to_string().contains("fix the line numbers"), "{err}");
    }

    #[test]
    fn all_or_nothing_across_files() {
        let dir = tree(&[("x", "1\n"), ("y", "2\n")]);
        let text = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-1\n+one\n--- a/y\n+++ b/y\n@@ -1 +1 @@\n-3\n+three\n\
                    --- a/z\n+++ b/z\n@@ -1 +1 @@\n-1\n+2\n";
        let err = apply_text(dir.path(), text).unwrap_err();
        let ApplyError::Several(errors) = &err else { panic!("{err:?}") };
        assert_eq!(errors.len(), 2);
        assert!(err.to_string().starts_with("2 problems with the patch:"), "{err}");
        assert_eq!((read(dir.path(), "x"), read(dir.path(), "y")), ("1\n".into(), "2\n".into()));
    }

    #[test]
    fn check_paths_returns_every_refusal() {
        let dir = tree(&[("prompts/ok.md", "a\n"), ("real/x.md", "a\n")]);
        symlink(dir.path().join("real"), dir.path().join("prompts/linked")).unwrap();
        symlink(dir.path().join("real/x.md"), dir.path().join("prompts/link.md")).unwrap();
        let text = "--- a/prompts/ok.md\n+++ b/prompts/ok.md\n@@ -1 +1 @@\n-a\n+b\n\
                    --- /dev/null\n+++ /etc/passwd\n@@ -0,0 +1 @@\n+x\n\
                    --- /dev/null\n+++ b/prompts/../agent.py\n@@ -0,0 +1 @@\n+x\n\
                    --- a/agent.py\n+++ b/agent.py\n@@ -1 +1 @@\n-a\n+b\n\
                    --- a/prompts/linked/x.md\n+++ b/prompts/linked/x.md\n@@ -1 +1 @@\n-a\n+b\n\
                    diff --git a/prompts/link.md b/prompts/link.md\nindex 1..2 120000\n--- a/prompts/link.md\n\
                    +++ b/prompts/link.md\n@@ -1 +1 @@\n-a\n+b\n";
        let patch = parsed(text);
        let refusals = check_paths(&patch, dir.path(), &globs(&["prompts/**"])).unwrap_err();
        let reasons: Vec<_> = refusals.iter().map(|r| (r.path.as_str(), r.line, r.reason.clone())).collect();
        assert_eq!(
            reasons,
            [
                ("/etc/passwd", 6, RefusalReason::Absolute),
                ("prompts/../agent.py", 10, RefusalReason::ParentDir),
                ("agent.py", 14, RefusalReason::NotEditable),
                ("prompts/linked/x.md", 19, RefusalReason::Symlink { at: "prompts/linked".into() }),
                ("prompts/link.md", 24, RefusalReason::SpecialMode { mode: MODE_SYMLINK }),
                ("prompts/link.md", 24, RefusalReason::Symlink { at: "prompts/link.md".into() }),
            ]
        );
        assert!(refusals[2].to_string().contains("`agent.py` (patch line 14) is not an editable file"));
        let ok = parsed("--- a/prompts/ok.md\n+++ b/prompts/ok.md\n@@ -1 +1 @@\n-a\n+b\n");
        assert_eq!(check_paths(&ok, dir.path(), &globs(&["prompts/**"])), Ok(()));
    }

    #[test]
    fn apply_refuses_unsafe_paths_by_itself() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("root");
        fs::create_dir_all(root.join("d")).unwrap();
        fs::write(parent.path().join("secret"), "s\n").unwrap();
        symlink(parent.path(), root.join("up")).unwrap();
        let cases = [
            "--- /dev/null\n+++ b/../evil\n@@ -0,0 +1 @@\n+x\n",
            "--- a/../secret\n+++ b/../secret\n@@ -1 +1 @@\n-s\n+x\n",
            "--- /dev/null\n+++ /tmp/evil\n@@ -0,0 +1 @@\n+x\n",
            "--- a/up/secret\n+++ b/up/secret\n@@ -1 +1 @@\n-s\n+x\n",
            "--- /dev/null\n+++ b/d/../../evil\n@@ -0,0 +1 @@\n+x\n",
        ];
        for text in cases {
            let err = apply_text(&root, text).unwrap_err();
            assert!(matches!(err, ApplyError::Refused(_)), "{text}: {err:?}");
        }
        // Built by hand, without `parse` or `normalize_paths`.
        let mut f = FilePatch::new(1);
        (f.kind, f.new_path) = (ChangeKind::Add, Some("d/../../evil".into()));
        assert!(matches!(apply(&Patch { files: vec![f] }, &root), Err(ApplyError::Refused(_))));
        assert_eq!(fs::read_to_string(parent.path().join("secret")).unwrap(), "s\n");
        assert!(!parent.path().join("evil").exists());
    }

    #[test]
    fn normalize_strips_git_prefixes_and_the_harness_folder() {
        let root_pr = "--- a/harnesses/support-bot/prompts/x.md\n+++ b/harnesses/support-bot/prompts/x.md\n\
                       @@ -1 +1 @@\n-a\n+b\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-a\n+b\n";
        let mut patch = parse(root_pr).unwrap();
        normalize_paths(&mut patch, Some("./harnesses/support-bot/"));
        assert_eq!(patch.touched_paths(), ["prompts/x.md", "../../README.md"]);
        let refusals = check_paths(&patch, Path::new("/nonexistent"), &globs(&["**"])).unwrap_err();
        assert_eq!(refusals[0].reason, RefusalReason::ParentDir);

        // A diff made inside the harness folder is left as it is.
        let inside = "--- a/prompts/x.md\n+++ b/prompts/x.md\n@@ -1 +1 @@\n-a\n+b\n";
        let mut patch = parse(inside).unwrap();
        normalize_paths(&mut patch, Some("harnesses/support-bot"));
        assert_eq!(patch.touched_paths(), ["prompts/x.md"]);

        // Unprefixed diffs keep a real `a/` folder.
        let mut patch = parse("--- a/x.md\n+++ a/x.md\n@@ -1 +1 @@\n-a\n+b\n").unwrap();
        normalize_paths(&mut patch, None);
        assert_eq!(patch.touched_paths(), ["a/x.md"]);

        let mut patch = parse("--- /dev/null\n+++ b/./new.md\n@@ -0,0 +1 @@\n+a\n").unwrap();
        normalize_paths(&mut patch, None);
        assert_eq!(patch.touched_paths(), ["new.md"]);
    }

    #[test]
    fn touched_paths_and_is_empty() {
        let patch = parsed("diff --git a/x b/x\nindex 1..2 100644\n");
        assert!(patch.is_empty());
        assert_eq!(patch.touched_paths(), ["x"]);
        assert!(Patch::default().is_empty());
        assert!(!parsed(GIT_MODIFY).is_empty());
    }

    #[test]
    fn quoted_names_and_names_with_spaces() {
        let text = "diff --git \"a/tab\\there.md\" \"b/tab\\there.md\"\n\
                    --- \"a/tab\\there.md\"\n+++ \"b/tab\\there.md\"\n@@ -1 +1 @@\n-a\n+b\n\
                    diff --git a/my notes.md b/my notes.md\nnew file mode 100644\n--- /dev/null\n+++ b/my notes.md\t\n\
                    @@ -0,0 +1 @@\n+n\n\
                    diff --git a/caf\\303\\251.md b/caf\\303\\251.md\ndeleted file mode 100644\n";
        let patch = parsed(text);
        assert_eq!(patch.touched_paths(), ["tab\there.md", "my notes.md", "caf\\303\\251.md"]);
        let patch = parsed("diff --git \"a/caf\\303\\251.md\" \"b/caf\\303\\251.md\"\ndeleted file mode 100644\n");
        assert_eq!(patch.touched_paths(), ["café.md"]);
    }

    fn write_tree(root: &Path, files: &[(&str, Option<&[u8]>)]) {
        for (path, content) in files {
            if let Some(content) = content {
                let full = root.join(path);
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                fs::write(full, content).unwrap();
            }
        }
    }

    #[test]
    fn diff_trees_round_trips() {
        let old = tempfile::tempdir().unwrap();
        let new = tempfile::tempdir().unwrap();
        let before: &[(&str, Option<&[u8]>)] = &[
            ("prompts/system.md", Some(b"a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n")),
            ("prompts/no-newline.md", Some(b"one\ntwo")),
            ("prompts/gone.md", Some(b"bye\n")),
            ("prompts/empty-gone.md", Some(b"")),
            ("prompts/crlf.md", Some(b"x\r\ny\r\n")),
            ("prompts/same.md", Some(b"same\n")),
            ("prompts/my notes.md", Some(b"n\n")),
            ("agent.py", Some(b"print(1)\n")),
        ];
        let after: &[(&str, Option<&[u8]>)] = &[
            ("prompts/system.md", Some(b"a\nB\nc\nd\ne\nf\ng\nh\ni\nJ\nk\n")),
            ("prompts/no-newline.md", Some(b"one\ntwo\nthree")),
            ("prompts/new.md", Some(b"hello\nworld")),
            ("prompts/empty-new.md", Some(b"")),
            ("prompts/crlf.md", Some(b"x\r\nY\r\n")),
            ("prompts/same.md", Some(b"same\n")),
            ("prompts/my notes.md", Some(b"N\n")),
            ("agent.py", Some(b"print(2)\n")),
        ];
        write_tree(old.path(), before);
        write_tree(new.path(), after);
        fs::create_dir(old.path().join(".git")).unwrap();
        fs::write(old.path().join(".git/prompts.md"), "skipped").unwrap();
        let include = globs(&["prompts/**"]);
        let diff = diff_trees(old.path(), new.path(), &include).unwrap();
        assert!(diff.contains("diff --git a/prompts/gone.md b/prompts/gone.md\ndeleted file mode 100644\n"), "{diff}");
        assert!(diff.contains("\\ No newline at end of file\n"), "{diff}");
        assert!(!diff.contains("agent.py") && !diff.contains("same.md"), "{diff}");

        let patch = parsed(&diff);
        check_paths(&patch, old.path(), &include).unwrap();
        apply(&patch, old.path()).unwrap();
        let mut got = snapshot_tree(old.path());
        got.retain(|k, _| k.starts_with("prompts/"));
        let mut want = snapshot_tree(new.path());
        want.retain(|k, _| k.starts_with("prompts/"));
        assert_eq!(got, want);
        assert_eq!(diff_trees(old.path(), new.path(), &include).unwrap(), "");
    }

    #[test]
    fn diff_trees_marks_binary_and_mode_changes() {
        let old = tree(&[("bin.dat", "a\0b"), ("run.sh", "x\n")]);
        let new = tree(&[("bin.dat", "a\0c"), ("run.sh", "x\n")]);
        fs::set_permissions(new.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let diff = diff_trees(old.path(), new.path(), &globs(&["**"])).unwrap();
        assert!(diff.contains("Binary files a/bin.dat and b/bin.dat differ\n"), "{diff}");
        assert!(diff.contains("old mode 100644\nnew mode 100755\n"), "{diff}");
        let patch = parsed(&diff);
        assert_eq!(check_paths(&patch, old.path(), &globs(&["**"])).unwrap_err().len(), 1);
    }

    #[test]
    fn a_50_mb_patch_parses_in_linear_time() {
        let lines = 1_000_000;
        let mut text = String::with_capacity(lines * 52 + 100);
        text.push_str("Some prose first.\n--- /dev/null\n+++ b/big.md\n");
        let _ = writeln!(text, "@@ -0,0 +1,{lines} @@");
        for i in 0..lines {
            let _ = writeln!(text, "+{i:0>49}");
        }
        assert!(text.len() >= 50_000_000);
        let start = Instant::now();
        let patch = parse(&text).unwrap();
        let elapsed = start.elapsed();
        assert_eq!(patch.files[0].hunks[0].lines.len(), lines);
        // Quadratic work on 50 MB would take hours; linear takes about a second even unoptimised.
        assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");

        // One enormous line of prose, and a header line of many spaces.
        let prose = format!("{}\n", "x ".repeat(25_000_000));
        assert_eq!(parse(&prose).unwrap_err(), PatchError::Empty);
        let spaces = format!("diff --git {}\n", " ".repeat(10_000_000));
        assert!(parse(&spaces).is_err());
    }

    #[test]
    fn applying_many_hunks_to_a_big_file_is_not_quadratic() {
        let count = 200_000;
        let content: String = (0..count).map(|i| format!("line {i}\n")).collect();
        let dir = tree(&[("big.md", &content)]);
        let mut text = String::from("--- a/big.md\n+++ b/big.md\n");
        for i in (50..count - 50).step_by(100) {
            let _ =
                write!(text, "@@ -{},3 +{},3 @@\n line {}\n-line {}\n+LINE {}\n line {}\n", i, i, i - 1, i, i, i + 1);
        }
        let start = Instant::now();
        let report = apply_text(dir.path(), &text).unwrap();
        assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
        assert_eq!(report.files[0].hunks.len(), (count - 100) / 100);
        assert!(read(dir.path(), "big.md").contains("\nLINE 150\n"));
    }

    const FRAGMENTS: &[&str] = &[
        "diff --git a/x b/x",
        "diff --git a/x b/y",
        "--- a/x",
        "+++ b/x",
        "--- /dev/null",
        "+++ /dev/null",
        "--- a/../evil",
        "+++ b/../evil",
        "+++ /abs",
        "+++ b/d/y",
        "@@ -1,2 +1,2 @@",
        "@@ -1 +1 @@",
        "@@ -0,0 +1 @@",
        "@@ -3,0 +4,2 @@",
        "@@ -2,3 +2 @@",
        " a",
        " b",
        "-a",
        "-b",
        "+c",
        "+",
        "",
        "\\ No newline at end of file",
        "rename from x",
        "rename to y",
        "copy from x",
        "copy to d/z",
        "new file mode 100755",
        "deleted file mode 100644",
        "old mode 100644",
        "new mode 120000",
        "index 1..2 100644",
        "GIT binary patch",
        "Binary files a/x and b/x differ",
        "\"a/q\\",
    ];

    fn patch_text_strategy() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            4 => prop::sample::select(FRAGMENTS).prop_map(str::to_string),
            1 => "[ +\\-@\\\\a-c\r\"]{0,6}",
        ];
        prop::collection::vec(line, 0..40).prop_map(|lines| lines.join("\n"))
    }

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
    }

    fn content_strategy() -> impl Strategy<Value = Option<Vec<u8>>> {
        let text = (prop::collection::vec("[ab \r]{0,3}", 0..12), any::<bool>()).prop_map(|(lines, newline)| {
            let mut text = lines.join("\n");
            if newline && !text.is_empty() {
                text.push('\n');
            }
            text.into_bytes()
        });
        prop::option::weighted(0.8, text)
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn parse_never_panics_on_any_text(text in "(?s).{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn parse_never_panics_on_patch_like_text(text in patch_text_strategy()) {
            if let Ok(mut patch) = parse(&text) {
                normalize_paths(&mut patch, Some("h"));
                let _ = patch.touched_paths();
            }
        }
    }

    proptest! {
        #![proptest_config(config(96))]

        #[test]
        fn apply_never_panics_nor_escapes_the_root(text in patch_text_strategy(), x in content_strategy()) {
            let parent = tempfile::tempdir().unwrap();
            let root = parent.path().join("root");
            fs::create_dir_all(root.join("d")).unwrap();
            fs::write(parent.path().join("outside"), "keep\n").unwrap();
            if let Some(x) = &x {
                fs::write(root.join("x"), x).unwrap();
            }
            if let Ok(mut patch) = parse(&text) {
                normalize_paths(&mut patch, None);
                let _ = check_paths(&patch, &root, &globs(&["**"]));
                let _ = apply(&patch, &root).map(|r| r.to_string()).map_err(|e| e.to_string());
            }
            let mut names: Vec<_> = fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            prop_assert_eq!(names, ["outside", "root"]);
            prop_assert_eq!(fs::read_to_string(parent.path().join("outside")).unwrap(), "keep\n");
            prop_assert!(snapshot_tree(&root).keys().all(|k| !k.contains(".autoharness-patch-")));
        }

        #[test]
        fn diff_trees_then_apply_reproduces_the_new_tree(
            files in prop::collection::vec((content_strategy(), content_strategy()), 3),
        ) {
            let names = ["p.md", "d/q.md", "d/e/r.md"];
            let old = tempfile::tempdir().unwrap();
            let new = tempfile::tempdir().unwrap();
            for (name, (before, after)) in names.iter().zip(&files) {
                write_tree(old.path(), &[(name, before.as_deref())]);
                write_tree(new.path(), &[(name, after.as_deref())]);
            }
            let include = globs(&["**"]);
            let diff = diff_trees(old.path(), new.path(), &include).unwrap();
            if !diff.is_empty() {
                let mut patch = match parse(&diff) {
                    Ok(patch) => patch,
                    Err(e) => return Err(TestCaseError::fail(format!("{e}\n{diff}"))),
                };
                normalize_paths(&mut patch, None);
                check_paths(&patch, old.path(), &include).unwrap();
                if let Err(e) = apply(&patch, old.path()) {
                    return Err(TestCaseError::fail(format!("{e}\n{diff}")));
                }
            }
            prop_assert_eq!(snapshot_tree(old.path()), snapshot_tree(new.path()), "{}", diff);
        }
    }
}
