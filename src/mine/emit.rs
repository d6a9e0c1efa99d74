//! Eval cases (`autoharness.case/v1`, DESIGN.md) emitted from clusters.
//!
//! Case ids are content-derived (cluster + input), the train/holdout split is a
//! deterministic function of the id, and a case file is written once: if it already
//! exists and differs from what autoharness last wrote, a person edited it and it is
//! left alone (and reported). Re-mining the same traces therefore changes nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cluster::tokens;
use super::failure::StoredFailure;
use super::signature::short_id;
use crate::trace::model::Nanos;

pub use crate::schema::CASE as CASE_SCHEMA;

/// One case file (`autoharness.case/v1`; the contract is docs/cases.md and
/// docs/case.schema.json). Mined cases carry every field; a person may leave out what only
/// mining knows (`provenance`, `cluster`) and what has a default (`schema`, `id` = the file
/// name, `harness` = the folder, `split`, `status`, `fixtures`, `checks`). Unknown fields are
/// refused so that a typo (`chekcs`) is an error, not a case with no checks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    #[serde(default = "default_schema")]
    pub schema: String,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub harness: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster: String,
    /// What the case is about, for people (hand-written cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub split: Split,
    #[serde(default)]
    pub status: CaseStatus,
    pub input: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixtures: Vec<Value>,
    #[serde(default)]
    pub checks: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

fn default_schema() -> String {
    CASE_SCHEMA.to_string()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    #[serde(default)]
    pub traces: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub signature: String,
    #[serde(default)]
    pub mined_at: String,
    /// `judged` when a rubric judge found the failure in a trace that recorded no outcome;
    /// absent when the trace recorded it (so case files mined before stay as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_source: Option<super::state::OutcomeSource>,
}

crate::schema::text_enum! {
    /// Which side of the train/holdout wall a case is on. The holdout is never shown to a
    /// proposer and only vetoes.
    #[derive(Default)]
    pub enum Split ("case split") {
        #[default]
        Train = "train",
        Holdout = "holdout",
    }
}

crate::schema::text_enum! {
    /// Where a case is in its life (DESIGN.md "case"). A case written by hand defaults to
    /// `active`: a person who wrote it wants it guarded.
    #[derive(Default)]
    pub enum CaseStatus ("case status") {
        Candidate = "candidate",
        #[default]
        Active = "active",
        Quarantined = "quarantined",
        Retired = "retired",
    }
}

/// A case chosen for a cluster, before it is written.
#[derive(Debug, Clone)]
pub struct PlannedCase {
    pub case: CaseFile,
    pub input_hash: String,
    pub failure_id: i64,
    pub path: PathBuf,
}

/// Whether a case id falls in the holdout share (deterministic, from the id's hash).
pub fn is_holdout(case_id: &str, share: f64) -> bool {
    let h = blake3::hash(case_id.as_bytes());
    let n = u32::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1], h.as_bytes()[2], h.as_bytes()[3]]);
    (n as f64 / u32::MAX as f64) < share
}

/// Choose up to `max` diverse members of a cluster (distinct inputs, far apart in their
/// words) and plan their case files.
pub fn plan_cases(
    cluster_id: &str,
    members: &[&StoredFailure],
    harness: &str,
    max: usize,
    holdout_share: f64,
    evals_dir: &Path,
    now: &str,
) -> Vec<PlannedCase> {
    // Distinct inputs only: the same task failing twice is one case.
    let mut seen = HashSet::new();
    let mut distinct: Vec<(&StoredFailure, String, HashSet<String>)> = Vec::new();
    let mut sorted: Vec<&&StoredFailure> = members.iter().collect();
    sorted.sort_by(|a, b| (a.path.as_str(), a.failure.trace_seq).cmp(&(b.path.as_str(), b.failure.trace_seq)));
    for m in sorted {
        let canonical = canonical_json(&m.failure.seed.input);
        let input_hash = blake3::hash(canonical.as_bytes()).to_hex().to_string();
        if m.failure.seed.input.is_null() || !seen.insert(input_hash.clone()) {
            continue;
        }
        let words: HashSet<String> = tokens(&m.failure.text).take(400).collect();
        distinct.push((m, input_hash, words));
    }
    // Farthest-first by Jaccard distance, starting from the first in stable order.
    let mut chosen: Vec<usize> = Vec::new();
    let mut min_dist = vec![f64::MAX; distinct.len()];
    while chosen.len() < max.min(distinct.len()) {
        let next = if chosen.is_empty() {
            0
        } else {
            (0..distinct.len())
                .filter(|i| !chosen.contains(i))
                .max_by(|&a, &b| min_dist[a].total_cmp(&min_dist[b]).then(b.cmp(&a)))
                .unwrap_or(0)
        };
        chosen.push(next);
        for (i, d) in min_dist.iter_mut().enumerate() {
            let dist = jaccard_distance(&distinct[next].2, &distinct[i].2);
            if dist < *d {
                *d = dist;
            }
        }
    }
    let mut planned: Vec<PlannedCase> = chosen
        .into_iter()
        .filter_map(|i| {
            let (m, input_hash, _) = &distinct[i];
            let f = &m.failure;
            let id = short_id("c-", &format!("{cluster_id}\n{input_hash}"));
            let split = if is_holdout(&id, holdout_share) { Split::Holdout } else { Split::Train };
            let mut checks = vec![
                json!({"kind": "no_error"}),
                json!({"kind": "not_signature", "signature": f.signature.canonical()}),
            ];
            checks.extend(f.seed.checks.iter().cloned());
            let case = CaseFile {
                schema: CASE_SCHEMA.into(),
                id: id.clone(),
                harness: harness.into(),
                cluster: cluster_id.into(),
                description: None,
                split,
                status: CaseStatus::Candidate,
                input: f.seed.input.clone(),
                fixtures: f.seed.fixtures.clone(),
                checks,
                provenance: Some(Provenance {
                    traces: vec![f.trace_id.clone()],
                    files: vec![project_relative(&m.path, evals_dir)],
                    signature: f.signature.canonical(),
                    mined_at: now.into(),
                    outcome_source: Some(super::state::OutcomeSource::of_signature(&f.signature.signal))
                        .filter(|s| *s == super::state::OutcomeSource::Judged),
                }),
            };
            let path = match case_path(evals_dir, harness, cluster_id, &id) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("case {id} not planned: {e:#}");
                    return None;
                }
            };
            Some(PlannedCase { path, case, input_hash: input_hash.clone(), failure_id: m.id })
        })
        .collect();
    // At least one train case per cluster: a cluster nobody may look at cannot be fixed.
    if !planned.is_empty() && planned.iter().all(|p| p.case.split == Split::Holdout) {
        planned.sort_by(|a, b| a.case.id.cmp(&b.case.id));
        planned[0].case.split = Split::Train;
    }
    planned
}

/// `evals/<harness>/<cluster>/<case>.json`, each part checked to be one plain name inside
/// its folder: the harness name can come from a trace or a flag.
pub fn case_path(evals_dir: &Path, harness: &str, cluster: &str, case: &str) -> anyhow::Result<PathBuf> {
    let dir = crate::paths::safe_name(evals_dir, harness)?;
    let dir = crate::paths::safe_name(&dir, cluster)?;
    crate::paths::safe_name(&dir, &format!("{case}.json"))
}

/// A trace file's path relative to the project (the folder holding `evals/`) when it lies
/// inside it, so committed case files do not carry one machine's absolute paths.
fn project_relative(path: &str, evals_dir: &Path) -> String {
    let project = evals_dir.parent().and_then(|p| p.canonicalize().ok());
    match project.as_deref().and_then(|root| Path::new(path).strip_prefix(root).ok()) {
        Some(rel) => rel.display().to_string(),
        None => path.to_string(),
    }
}

fn jaccard_distance(a: &HashSet<String>, b: &HashSet<String>) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 0.0;
    }
    let inter = a.intersection(b).count() as f64;
    let union = (a.len() + b.len()) as f64 - inter;
    1.0 - inter / union
}

/// JSON with sorted keys, for hashing.
pub fn canonical_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

/// What makes two cases the same task, whatever cluster mined them: the harness and the
/// input as canonical JSON (keys sorted) with every string trimmed and each run of
/// whitespace made one space. Case and punctuation are kept: "cancel #W1" and "Cancel W1"
/// may be different tasks to an agent. Fixtures are left out: they record the tool answers
/// one trace saw before it failed, so the same task failing at two points has two of them
/// (one a prefix of the other in the bundled example). Two cases with one key run the same
/// trial twice, and every mined case checks `no_error`, which covers each `not_signature`.
pub fn duplicate_key(case: &CaseFile) -> String {
    fn norm(v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(s.split_whitespace().collect::<Vec<_>>().join(" ")),
            Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
            other => other.clone(),
        }
    }
    format!("{}\n{}", case.harness, canonical_json(&norm(&case.input)))
}

/// A planned case as the duplicate rule sees it: the case and when its failure was observed.
pub struct Observed<'a> {
    pub case: &'a CaseFile,
    /// The failing trace's start time (None: the trace has none), then its file and place
    /// in the file: a total order that the signature rules do not change.
    pub time: Option<Nanos>,
    pub path: &'a str,
    pub seq: usize,
}

/// Which case of each [`duplicate_key`] stays: every other maps to the id of the one kept.
///
/// The case whose failure was observed first stays (ties: file, place, case id). Case ids
/// derive from cluster ids, which change with the signature rules: a rule on ids would move
/// which case stays whenever the rules change. One exception, so that every cluster with a
/// train case keeps one (`run` and `gate --target` need one): a cluster whose train cases
/// all lost to duplicates takes back its first, unless that leaves the kept case's cluster
/// without a train case of its own.
pub fn duplicates(cases: &[Observed<'_>]) -> std::collections::HashMap<String, String> {
    use std::collections::{BTreeMap, HashMap};
    let mut order: Vec<&Observed<'_>> = cases.iter().collect();
    order.sort_by(|a, b| {
        (a.time.is_none(), a.time, a.path, a.seq, &a.case.id).cmp(&(
            b.time.is_none(),
            b.time,
            b.path,
            b.seq,
            &b.case.id,
        ))
    });
    let mut groups: BTreeMap<String, Vec<&CaseFile>> = BTreeMap::new();
    for o in &order {
        groups.entry(duplicate_key(o.case)).or_default().push(o.case);
    }
    // Per group, the index of the case kept; per cluster, how many of its kept cases are train.
    let mut kept: BTreeMap<&str, usize> = groups.keys().map(|k| (k.as_str(), 0)).collect();
    let mut kept_train: HashMap<&str, usize> = HashMap::new();
    for (key, members) in &groups {
        let c = members[kept[key.as_str()]];
        if c.split == Split::Train {
            *kept_train.entry(c.cluster.as_str()).or_default() += 1;
        }
    }
    for o in &order {
        let (c, key) = (o.case, duplicate_key(o.case));
        if c.split != Split::Train || kept_train.get(c.cluster.as_str()).copied().unwrap_or(0) > 0 {
            continue;
        }
        let members = &groups[&key];
        let (slot, at) = kept.get_key_value(key.as_str()).map(|(k, i)| (*k, *i)).expect("every case has a group");
        let holder = members[at];
        let holder_train = holder.split == Split::Train;
        if holder_train && kept_train.get(holder.cluster.as_str()).copied().unwrap_or(0) < 2 {
            continue;
        }
        let mine = members.iter().position(|m| m.id == c.id).expect("the case is in its group");
        kept.insert(slot, mine);
        if holder_train {
            *kept_train.entry(holder.cluster.as_str()).or_default() -= 1;
        }
        *kept_train.entry(c.cluster.as_str()).or_default() += 1;
    }
    let mut dups = HashMap::new();
    for (key, members) in &groups {
        let keep = members[kept[key.as_str()]];
        for m in members.iter().filter(|m| m.id != keep.id) {
            dups.insert(m.id.clone(), keep.id.clone());
        }
    }
    dups
}

/// What happened to a planned case file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteResult {
    Written,
    Unchanged,
    /// The file differs from what autoharness wrote: a person edited it; left alone.
    KeptEdited,
}

/// Write a case file unless it exists. `last_written_hash` is what the store recorded.
pub fn write_case(planned: &PlannedCase, last_written_hash: Option<&str>) -> std::io::Result<(WriteResult, String)> {
    if let Ok(existing) = std::fs::read(&planned.path) {
        let hash = blake3::hash(&existing).to_hex().to_string();
        let same_as_ours = match last_written_hash {
            Some(h) => h == hash,
            // No record (a fresh store): the file is ours if only its mining time differs.
            None => serde_json::from_slice::<CaseFile>(&existing).is_ok_and(|mut c| {
                if let (Some(p), Some(ours)) = (c.provenance.as_mut(), planned.case.provenance.as_ref()) {
                    p.mined_at = ours.mined_at.clone();
                }
                c == planned.case
            }),
        };
        let result = if same_as_ours { WriteResult::Unchanged } else { WriteResult::KeptEdited };
        return Ok((result, hash));
    }
    let mut text = serde_json::to_string_pretty(&planned.case).map_err(std::io::Error::other)?;
    text.push('\n');
    // Write to a temp file and rename, so a crash never leaves half a case.
    crate::paths::write_atomic(&planned.path, &planned.path.with_extension("json.tmp"), text.as_bytes())?;
    Ok((WriteResult::Written, blake3::hash(text.as_bytes()).to_hex().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, cluster: &str, split: Split, input: &str) -> CaseFile {
        serde_json::from_value(json!({
            "id": id, "harness": "h", "cluster": cluster, "split": split.as_str(), "input": input,
        }))
        .unwrap()
    }

    fn at<'a>(c: &'a CaseFile, t: i128) -> Observed<'a> {
        Observed { case: c, time: Some(t), path: "f", seq: 0 }
    }

    #[test]
    fn the_earliest_observed_stays_whatever_the_ids() {
        // c-b was seen first: it stays although c-a has the smaller id.
        let (a, b) = (case("c-a", "k-1", Split::Train, "x"), case("c-b", "k-2", Split::Train, "  x "));
        let other = case("c-0", "k-1", Split::Train, "y");
        let dups = duplicates(&[at(&a, 20), at(&b, 10), at(&other, 5)]);
        assert_eq!(dups, [("c-a".to_string(), "c-b".to_string())].into());
    }

    #[test]
    fn a_cluster_keeps_a_train_case() {
        // k-2's only train case duplicates k-1's, seen earlier; k-1 has another train case,
        // so k-2 keeps its own.
        let a = case("c-a", "k-1", Split::Train, "x");
        let a2 = case("c-a2", "k-1", Split::Train, "z");
        let b = case("c-b", "k-2", Split::Train, "x");
        let hold = case("c-h", "k-2", Split::Holdout, "w");
        let dups = duplicates(&[at(&a, 1), at(&a2, 2), at(&b, 3), at(&hold, 4)]);
        assert_eq!(dups, [("c-a".to_string(), "c-b".to_string())].into());
        // When that would leave k-1 without a train case, the first observed stays.
        let dups = duplicates(&[at(&a, 1), at(&b, 3), at(&hold, 4)]);
        assert_eq!(dups, [("c-b".to_string(), "c-a".to_string())].into());
    }
}
