//! Eval cases on disk (`evals/<harness>/<cluster>/<case>.json`): loading them for trials,
//! their content hash (the cache key of a case), and status changes written back.
//!
//! The case files in git are the source of truth for the suite (a CI runner starts with an
//! empty store): `status` in the file says whether a case is in the active suite.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::checks::Check;
use crate::mine::emit::{CASE_SCHEMA, CaseFile, canonical_json};
pub use crate::mine::emit::{CaseStatus, Split};

/// One case loaded from disk and validated.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: CaseFile,
    pub path: PathBuf,
    /// The file's checks, parsed (same order as `file.checks`).
    pub checks: Vec<Check>,
    /// blake3 of what a trial's result depends on: input, fixtures and checks.
    pub hash: String,
}

impl Case {
    pub fn id(&self) -> &str {
        &self.file.id
    }

    /// A case from an in-memory file (tests, benches), validated like one read from disk.
    pub fn from_file(file: CaseFile, path: PathBuf) -> Result<Case, String> {
        let checks = parse_checks(&file.checks).map_err(|(i, m)| format!("checks[{i}]: {m}"))?;
        let hash = case_hash(&file);
        Ok(Case { file, path, checks, hash })
    }

    /// The mining signature this case was written for, if any.
    pub fn signature(&self) -> Option<&str> {
        self.file.provenance.as_ref().map(|p| p.signature.as_str()).filter(|s| !s.is_empty())
    }
}

pub fn case_hash(file: &CaseFile) -> String {
    let key = json!({"input": file.input, "fixtures": file.fixtures, "checks": file.checks});
    blake3::hash(canonical_json(&key).as_bytes()).to_hex()[..16].to_string()
}

/// A case file that could not be loaded: the file, where in it, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseProblem {
    pub path: PathBuf,
    /// JSON path of the offending value (`checks[1].pattern`), empty for the whole file.
    pub at: String,
    pub message: String,
}

impl std::fmt::Display for CaseProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.at.is_empty() {
            write!(f, "{}: {}", self.path.display(), self.message)
        } else {
            write!(f, "{}: at `{}`: {}", self.path.display(), self.at, self.message)
        }
    }
}

/// Every case of `harness` under `evals_dir`, sorted by id, and every file that is not a
/// valid case (commands that run trials refuse to start while there is one: a gate that
/// silently drops a broken case guards less than its user thinks).
pub fn load(evals_dir: &Path, harness: &str) -> (Vec<Case>, Vec<CaseProblem>) {
    let dir = evals_dir.join(harness);
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut pending = vec![dir];
    let mut files = Vec::new();
    while let Some(d) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&d) else { continue };
        for e in listing.flatten() {
            let p = e.path();
            // Symlinks are not followed: a link could point a case loader anywhere.
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                pending.push(p);
            } else if ft.is_file() && p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        match read_case(&p, Some(harness)) {
            Ok(c) => cases.push(c),
            Err(e) => problems.push(e),
        }
    }
    cases.sort_by(|a, b| a.file.id.cmp(&b.file.id));
    // The same id twice (a copied file): keep the first, report the other.
    cases.dedup_by(|b, a| {
        let dup = a.file.id == b.file.id;
        if dup {
            problems.push(CaseProblem {
                path: b.path.clone(),
                at: "id".into(),
                message: format!("duplicate case id `{}` (also in {})", b.file.id, a.path.display()),
            });
        }
        dup
    });
    (cases, problems)
}

/// [`load`] for commands that run trials: any invalid case file is an error (exit 2)
/// naming every bad file, before anything runs.
pub fn load_checked(evals_dir: &Path, harness: &str) -> anyhow::Result<Vec<Case>> {
    let (cases, problems) = load(evals_dir, harness);
    if problems.is_empty() {
        return Ok(cases);
    }
    let n = problems.len();
    let lines: Vec<String> = problems.iter().take(20).map(|p| format!("  {p}")).collect();
    let more = if n > 20 { format!("\n  … and {} more", n - 20) } else { String::new() };
    Err(crate::exit::hinted(
        format!("{n} invalid case file(s) for harness `{harness}`:\n{}{more}", lines.join("\n")),
        "fix or remove them (the case format: docs/cases.md); `autoharness cases` lists them",
    ))
}

/// Largest case file read: a case is an input and a few checks, not a data set.
const MAX_CASE_BYTES: u64 = 16 << 20;

/// Read and validate one case file. `harness` is the folder it was found under
/// (`evals/<harness>/…`): the default of `harness` and what it must match.
pub fn read_case(path: &Path, harness: Option<&str>) -> Result<Case, CaseProblem> {
    let problem = |at: &str, message: String| CaseProblem { path: path.to_path_buf(), at: at.into(), message };
    let size = std::fs::metadata(path).map_err(|e| problem("", format!("cannot read: {e}")))?.len();
    if size > MAX_CASE_BYTES {
        return Err(problem("", format!("{size} bytes: a case file is at most {} MiB", MAX_CASE_BYTES >> 20)));
    }
    let bytes = std::fs::read(path).map_err(|e| problem("", format!("cannot read: {e}")))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| problem("", format!("not JSON: {e}")))?;
    if !value.is_object() {
        return Err(problem("", "a case file is a JSON object (see docs/cases.md)".into()));
    }
    match value.get("schema") {
        None => {}
        Some(Value::String(s)) if s == CASE_SCHEMA => {}
        Some(other) => return Err(problem("schema", format!("{other} is not \"{CASE_SCHEMA}\""))),
    }
    let mut file: CaseFile = serde_path_to_error::deserialize(&value).map_err(|e| {
        let at = e.path().to_string();
        problem(if at == "." { "" } else { &at }, e.into_inner().to_string())
    })?;
    if file.id.is_empty() {
        file.id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    }
    check_id(&file.id).map_err(|m| problem("id", m))?;
    match harness {
        Some(h) if file.harness.is_empty() => file.harness = h.to_string(),
        Some(h) if file.harness != h => {
            return Err(problem(
                "harness",
                format!("the case names harness `{}` but lives under evals/{h}/", file.harness),
            ));
        }
        _ => {}
    }
    let checks = parse_checks(&file.checks).map_err(|(i, m)| problem(&format!("checks[{i}]"), m))?;
    let hash = case_hash(&file);
    Ok(Case { file, path: path.to_path_buf(), checks, hash })
}

fn parse_checks(checks: &[Value]) -> Result<Vec<Check>, (usize, String)> {
    checks.iter().enumerate().map(|(i, c)| Check::parse(c).map_err(|m| (i, m))).collect()
}

/// Case ids name folders (trial evidence, evals/), so they are plain names: ASCII letters,
/// digits, `.`, `_`, `-`; not `.` or `..`; at most 128 characters.
pub fn check_id(id: &str) -> Result<(), String> {
    let shown = crate::trace::json::clip(&id.escape_debug().to_string(), 80);
    if id.is_empty() {
        return Err("the id is empty".into());
    }
    if id.len() > 128 {
        return Err(format!("`{shown}` is over 128 characters"));
    }
    if id == "." || id == ".." {
        return Err(format!("`{id}` is not a case id"));
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!(
            "`{shown}` has `{}`: case ids may use only letters, digits, `.`, `_` and `-`",
            bad.escape_debug()
        ));
    }
    Ok(())
}

/// Rewrite only the `status` field of a case file, keeping everything else (and a
/// person's edits) as it is. Returns the blake3 of the new bytes.
pub fn write_status(path: &Path, status: &str) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)?;
    let mut value: Value = serde_json::from_slice(&bytes)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("status".into(), Value::String(status.into()));
    }
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, &text)?;
    std::fs::rename(&tmp, path)?;
    Ok(blake3::hash(text.as_bytes()).to_hex().to_string())
}

/// The text a case's input carries, for leakage checks: every string leaf joined.
pub fn input_text(case: &Case) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(&case.file.input, &mut out);
    out
}
