//! Retirement by history (issue 21): a suite case that has added nothing for a long time leaves
//! the gate, with a record of why, and stays runnable (`eval --all`).
//!
//! "Added nothing" is read off the stored gate reports of the harness: the case was gated in at
//! least `gates` of them, and in each of its last `gates` every trial on both arms passed — no
//! candidate and no baseline ever failed it, so it never told two harnesses apart nor showed a
//! failure. A single failed trial in that window keeps it. Only active train (suite) cases are
//! retired: holdout cases are sealed and target cases are still being fixed. Partitioned shards'
//! reports are skipped (the merge that follows holds the same trials).

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::evals::case::{self, CaseStatus, Split};
use crate::store::Store;

/// Fewest gates a case must have passed cleanly before it can be retired: one clean gate says
/// little about a case that fails one time in twenty.
pub const MIN_IDLE_GATES: u32 = 2;

/// Stored gate reports read, newest first: enough for a suite whose cases are gated in turn.
const GATES_READ: i64 = 1000;

/// A case retired now, and why (the reason is also its `case_events` row).
#[derive(Debug, Clone, Serialize)]
pub struct Retired {
    pub case: String,
    pub reason: String,
}

/// One case's showing in one gate: its trials on both arms and whether every one passed.
struct Showing {
    gate: i64,
    trials: u64,
    clean: bool,
}

/// Retire the idle active suite cases of `harness` (see the module doc); returns them.
pub async fn retire_idle(
    store: &Store,
    project_root: &Path,
    harness: &str,
    gates: u32,
) -> anyhow::Result<Vec<Retired>> {
    let gates = gates.max(MIN_IDLE_GATES) as usize;
    let shown = showings(store, harness, gates).await?;
    let (cases, _) = case::load(&project_root.join("evals"), harness);
    let mut retired = Vec::new();
    for c in cases.iter().filter(|c| c.file.status == CaseStatus::Active && c.file.split == Split::Train) {
        let Some(seen) = shown.get(c.id()).filter(|s| s.len() == gates && s.iter().all(|x| x.clean)) else {
            continue;
        };
        let ids: Vec<String> = seen.iter().rev().map(|s| format!("#{}", s.gate)).collect();
        let trials: u64 = seen.iter().map(|s| s.trials).sum();
        let reason = format!(
            "idle: passed all {trials} trials on both arms in each of its last {gates} gates ({}); `eval --all` still runs it",
            ids.join(", ")
        );
        let hash = case::write_status(&c.path, CaseStatus::Retired)?;
        store.case_event(c.id(), CaseStatus::Retired, &reason).await?;
        store.set_case_hash(c.id(), &hash).await?;
        retired.push(Retired { case: c.id().to_string(), reason });
    }
    Ok(retired)
}

/// Each case's showings in the newest gates of `harness`, newest first, at most `keep` per case.
async fn showings(store: &Store, harness: &str, keep: usize) -> anyhow::Result<HashMap<String, Vec<Showing>>> {
    let mut shown: HashMap<String, Vec<Showing>> = HashMap::new();
    for (gate, text) in store.gate_reports(harness, GATES_READ).await? {
        let report: Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("gate #{gate} in the store has a report that does not parse: {e}"))?;
        if report["rule"] == "shard" {
            continue;
        }
        let Some(cases) = report["decision"]["cases"].as_array() else { continue };
        for v in cases {
            let (Some(id), Some(arms)) = (v["id"].as_str(), arm_counts(v)) else { continue };
            let seen = shown.entry(id.to_string()).or_default();
            if seen.len() < keep {
                let [bp, bn, cp, cn] = arms;
                seen.push(Showing { gate, trials: bn + cn, clean: bp == bn && cp == cn && bn + cn > 0 });
            }
        }
    }
    Ok(shown)
}

/// A decision row's baseline passes and trials, candidate passes and trials.
fn arm_counts(v: &Value) -> Option<[u64; 4]> {
    let n = |k: &str| v[k].as_u64();
    Some([n("baseline_passes")?, n("baseline_n")?, n("candidate_passes")?, n("candidate_n")?])
}
