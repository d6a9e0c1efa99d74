//! Eval cases on disk (`evals/<harness>/<cluster>/<case>.json`): loading them for trials,
//! their content hash (the cache key of a case), and status changes written back.
//!
//! The case files in git are the source of truth for the suite (a CI runner starts with an
//! empty store): `status` in the file says whether a case is in the active suite.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::mine::emit::{CASE_SCHEMA, CaseFile, canonical_json};

/// Case statuses (DESIGN.md "case").
pub const STATUSES: [&str; 4] = ["candidate", "active", "quarantined", "retired"];

/// One case loaded from disk.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: CaseFile,
    pub path: PathBuf,
    /// blake3 of what a trial's result depends on: input, fixtures and checks.
    pub hash: String,
}

impl Case {
    pub fn id(&self) -> &str {
        &self.file.id
    }

    pub fn from_file(file: CaseFile, path: PathBuf) -> Case {
        let hash = case_hash(&file);
        Case { file, path, hash }
    }
}

pub fn case_hash(file: &CaseFile) -> String {
    let key = json!({"input": file.input, "fixtures": file.fixtures, "checks": file.checks});
    blake3::hash(canonical_json(&key).as_bytes()).to_hex()[..16].to_string()
}

/// Every case of `harness` under `evals_dir`, sorted by id. Files that are not valid
/// cases are reported (path and reason) and skipped.
pub fn load(evals_dir: &Path, harness: &str) -> (Vec<Case>, Vec<String>) {
    let dir = evals_dir.join(harness);
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut pending = vec![dir];
    let mut files = Vec::new();
    while let Some(d) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&d) else { continue };
        for e in listing.flatten() {
            let p = e.path();
            if p.is_dir() {
                pending.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    for p in files {
        match read_case(&p) {
            Ok(c) => cases.push(c),
            Err(e) => problems.push(format!("{}: {e}", p.display())),
        }
    }
    cases.sort_by(|a, b| a.file.id.cmp(&b.file.id));
    // The same id twice (a copied file): keep the first, say so.
    cases.dedup_by(|b, a| {
        let dup = a.file.id == b.file.id;
        if dup {
            problems.push(format!(
                "{}: duplicate case id `{}` (also in {})",
                b.path.display(),
                b.file.id,
                a.path.display()
            ));
        }
        dup
    });
    (cases, problems)
}

pub fn read_case(path: &Path) -> Result<Case, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("schema").and_then(Value::as_str) {
        Some(CASE_SCHEMA) => {}
        Some(other) => return Err(format!("schema `{other}` is not `{CASE_SCHEMA}`")),
        None => return Err(format!("no `schema` field (expected `{CASE_SCHEMA}`)")),
    }
    let file: CaseFile = serde_json::from_value(value).map_err(|e| format!("not a valid case: {e}"))?;
    if !STATUSES.contains(&file.status.as_str()) {
        return Err(format!("status `{}` is not one of {}", file.status, STATUSES.join(", ")));
    }
    if file.split != "train" && file.split != "holdout" {
        return Err(format!("split `{}` is not train or holdout", file.split));
    }
    Ok(Case::from_file(file, path.to_path_buf()))
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
