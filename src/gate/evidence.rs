//! What a reviewer needs to judge a gate without the tool: per case, its input, the check a
//! candidate trial failed and what that trial printed, and where each trial's files are
//! kept; for the gate, the patch as applied and the isolation trials ran under.
//!
//! Everything here is untrusted text (case files, harness output): the renderers pass it
//! through `report::neutral`.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::evals::case::Case;
use crate::gate::engine::Arm;
use crate::harness::patch::{ChangeKind, HunkLine, Patch};
use crate::trace::json::clip;
use crate::trial::TrialRecord;

/// Characters of a case input and of a trial's output shown per row.
pub const INPUT_SHOWN: usize = 300;
pub const OUTPUT_SHOWN: usize = 400;
/// Characters of the patch kept in a report.
const PATCH_KEPT: usize = 20_000;

/// One case's evidence (flattened into its `CaseRow`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CaseEvidence {
    /// The case input, as compact JSON (a string input as itself), clipped.
    pub input: String,
    /// The first failing check of the first failed candidate trial, `kind: detail` (or why
    /// the trial failed when no check did: an exit code, a timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_check: Option<String>,
    /// What that trial printed on stdout, clipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_output: Option<String>,
    /// Every trial of the case, with the files it left.
    pub trials: Vec<TrialFiles>,
}

/// One trial and the files it left (`stdout.txt`, `stderr.txt`, `trace.json`,
/// `result.json` in its folder), as paths relative to the folder the command ran in when
/// they lie beneath it.
#[derive(Debug, Clone, Serialize)]
pub struct TrialFiles {
    /// `baseline` or `candidate`.
    pub arm: &'static str,
    pub seed: u64,
    pub passed: bool,
    /// Taken from the cache: its files may belong to an earlier command.
    pub cached: bool,
    pub files: Vec<String>,
}

/// The evidence of case `case`, from its trials (`(arm, seed, record, trial folder)`).
pub fn for_case(case: &Case, trials: &[(Arm, u64, &TrialRecord, PathBuf)]) -> CaseEvidence {
    let input = match &case.file.input {
        serde_json::Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    };
    let failed = trials.iter().find(|(arm, _, r, _)| *arm == Arm::Candidate && !r.passed).map(|(_, _, r, _)| *r);
    let failing_check = failed.and_then(|r| {
        r.checks
            .iter()
            .find(|c| !c.passed)
            .map(|c| format!("{}: {}", c.kind, c.detail))
            .or_else(|| r.reason.clone())
            .map(|s| clip(&s, OUTPUT_SHOWN))
    });
    let candidate_output = failed.map(|r| clip(r.output.trim(), OUTPUT_SHOWN)).filter(|s| !s.is_empty());
    let here = std::env::current_dir().ok();
    let trials = trials
        .iter()
        .map(|(arm, seed, r, dir)| TrialFiles {
            arm: match arm {
                Arm::Baseline => "baseline",
                Arm::Candidate => "candidate",
            },
            seed: *seed,
            passed: r.passed,
            cached: r.cached,
            files: ["stdout.txt", "stderr.txt", "trace.json", "result.json"]
                .iter()
                .map(|name| io_dir(r, dir).join(name))
                .filter(|p| p.is_file())
                .map(|p| relative(&p, here.as_deref()))
                .collect(),
        })
        .collect();
    CaseEvidence { input: clip(&input, INPUT_SHOWN), failing_check, candidate_output, trials }
}

/// A trial's `io/` folder: where its trace was written (a cached trial ran in another
/// command's folder), else the folder this command gave it.
fn io_dir(r: &TrialRecord, dir: &Path) -> PathBuf {
    r.trace_path.as_deref().and_then(|t| Path::new(t).parent()).map(Path::to_path_buf).unwrap_or_else(|| dir.join("io"))
}

fn relative(path: &Path, here: Option<&Path>) -> String {
    here.and_then(|h| path.strip_prefix(h).ok()).unwrap_or(path).display().to_string()
}

/// The patch as a unified diff (what was applied), clipped.
pub fn patch_text(patch: &Patch) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for f in &patch.files {
        let old = f.old_path.as_deref().map(|p| format!("a/{p}")).unwrap_or_else(|| "/dev/null".into());
        let new = f.new_path.as_deref().map(|p| format!("b/{p}")).unwrap_or_else(|| "/dev/null".into());
        let old = if f.kind == ChangeKind::Add { "/dev/null".into() } else { old };
        let new = if f.kind == ChangeKind::Delete { "/dev/null".into() } else { new };
        let _ = writeln!(out, "--- {old}\n+++ {new}");
        if f.binary {
            let _ = writeln!(out, "(binary change)");
        }
        for h in &f.hunks {
            let _ = writeln!(out, "{}", h.header());
            for l in &h.lines {
                let (mark, text) = match l {
                    HunkLine::Context(t) => (' ', t),
                    HunkLine::Remove(t) => ('-', t),
                    HunkLine::Add(t) => ('+', t),
                };
                let _ = writeln!(out, "{mark}{text}");
            }
        }
    }
    clip(&out, PATCH_KEPT)
}

/// The isolation trials ran under, for people: from a record's isolation JSON, e.g.
/// `filesystem bwrap · network namespace · processes pids_cgroup · pid namespace`.
pub fn isolation_summary(records: &[&TrialRecord]) -> Option<String> {
    let mut seen: Vec<String> = Vec::new();
    for r in records.iter().filter(|r| !r.cached) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.isolation) else { continue };
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_string();
        let mut s = format!(
            "filesystem {} · network {} · processes {}",
            field("filesystem"),
            field("network"),
            field("processes")
        );
        if v.get("pid_namespace").and_then(|x| x.as_bool()) == Some(true) {
            s.push_str(" · pid namespace");
        }
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    (!seen.is_empty()).then(|| seen.join("; "))
}
