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
pub fn write_status(path: &Path, status: CaseStatus) -> anyhow::Result<String> {
    let bytes = std::fs::read(path)?;
    let mut value: Value = serde_json::from_slice(&bytes)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("status".into(), Value::String(status.as_str().into()));
    }
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    crate::paths::write_atomic(path, &path.with_extension("json.tmp"), text.as_bytes())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn check() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!({"kind": "no_error"})),
            "[a-z|<*> ]{1,20}".prop_map(|s| json!({"kind": "not_signature", "signature": s})),
            "[a-zA-Z0-9 ]{1,20}".prop_map(|v| json!({"kind": "output_contains", "value": v})),
            "[a-z]{1,8}".prop_map(|p| json!({"kind": "output_regex", "pattern": format!("^{p}\\d*$")})),
            ("[a-z_]{1,10}", 0..3u64, proptest::option::of(3..9u64)).prop_map(|(n, min, max)| match max {
                Some(m) => json!({"kind": "tool_called", "name": n, "min": min, "max": m}),
                None => json!({"kind": "tool_called", "name": n}),
            }),
            (0..50u64).prop_map(|v| json!({"kind": "max_steps", "value": v})),
            (proptest::option::of("[a-z]{1,8}"), -5.0..5.0f64).prop_map(|(n, v)| match n {
                Some(n) => json!({"kind": "score_at_least", "name": n, "value": v}),
                None => json!({"kind": "score_at_least", "value": v}),
            }),
            "[a-z ]{1,12}".prop_map(|r| json!({"kind": "command", "run": format!("true {r}")})),
        ]
    }

    /// Case files as the schema allows them: every optional field present or not.
    fn case_file() -> impl Strategy<Value = Value> {
        (
            proptest::option::of("[A-Za-z0-9._-]{1,30}".prop_filter("not . or ..", |s| s != "." && s != "..")),
            proptest::option::of("k-[0-9a-f]{8}"),
            proptest::option::of(prop_oneof![Just("train"), Just("holdout")]),
            proptest::option::of(prop_oneof![Just("candidate"), Just("active"), Just("quarantined"), Just("retired")]),
            prop_oneof![
                "[ -~]{0,40}".prop_map(Value::String),
                Just(json!([{"role": "user", "content": "hi"}])),
                Just(json!({"task": "refund", "order": 7}))
            ],
            proptest::option::of(proptest::collection::vec(check(), 0..5)),
            any::<(bool, bool, bool)>(),
        )
            .prop_map(|(id, cluster, split, status, input, checks, (schema, harness, prov))| {
                let mut m = serde_json::Map::new();
                if schema {
                    m.insert("schema".into(), json!(CASE_SCHEMA));
                }
                if let Some(id) = id {
                    m.insert("id".into(), json!(id));
                }
                if harness {
                    m.insert("harness".into(), json!("h"));
                }
                if let Some(c) = cluster {
                    m.insert("cluster".into(), json!(c));
                }
                if let Some(s) = split {
                    m.insert("split".into(), json!(s));
                }
                if let Some(s) = status {
                    m.insert("status".into(), json!(s));
                }
                m.insert("input".into(), input);
                if let Some(c) = checks {
                    m.insert("checks".into(), Value::Array(c));
                }
                if prov {
                    m.insert("provenance".into(), json!({"traces": ["t"], "signature": "x"}));
                }
                Value::Object(m)
            })
    }

    fn load_value(v: &Value) -> Result<Case, CaseProblem> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("case-1.json");
        std::fs::write(&path, serde_json::to_vec(v).unwrap()).unwrap();
        read_case(&path, Some("h"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn schema_cases_load(v in case_file()) {
            let c = load_value(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(c.checks.len(), v.get("checks").and_then(Value::as_array).map_or(0, Vec::len));
            prop_assert_eq!(c.file.harness.as_str(), "h");
        }

        #[test]
        fn mutated_cases_fail_naming_the_field(v in case_file(), which in 0..5u8, name in "[a-z]{3,10}") {
            let mut v = v;
            let m = v.as_object_mut().unwrap();
            let at = match which {
                0 => { m.insert(format!("x{name}"), json!(1)); String::new() }
                1 => { m.insert("status".into(), json!(format!("x{name}"))); "status".into() }
                2 => { m.insert("split".into(), json!(3)); "split".into() }
                3 => { m.insert("checks".into(), json!([{"kind": format!("x{name}")}])); "checks[0]".into() }
                _ => { m.insert("id".into(), json!(format!("../{name}"))); "id".into() }
            };
            let e = load_value(&v).err().ok_or_else(|| TestCaseError::fail(format!("loaded: {v}")))?;
            if at.is_empty() {
                prop_assert!(e.message.contains(&format!("x{name}")), "{}", e);
            } else {
                prop_assert_eq!(&e.at, &at, "{}", e);
            }
        }
    }

    #[test]
    fn the_published_schema_lists_exactly_the_fields() {
        let schema: Value = serde_json::from_str(include_str!("../../docs/case.schema.json")).unwrap();
        let mut published: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
        published.sort();
        let full = load_value(&json!({
            "schema": CASE_SCHEMA, "id": "a", "harness": "h", "cluster": "k", "description": "d", "split": "train",
            "status": "active", "input": 1, "fixtures": [1], "checks": [{"kind": "no_error"}],
            "provenance": {}
        }))
        .unwrap();
        let written = serde_json::to_value(&full.file).unwrap();
        let mut fields: Vec<String> = written.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        assert_eq!(published, fields);
        assert!(check_id("/etc/passwd").is_err() && check_id("..").is_err() && check_id("c-1.b_2").is_ok());
    }
}
