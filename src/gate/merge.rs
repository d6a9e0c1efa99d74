//! `gate PATCH --merge`: the decision of a gate whose trials ran as shards (`--partition K/N`),
//! each on its own machine and store (or all on one shared store). A shard runs the gate on
//! its own cases: their first round, then the top-ups they ask for on their own.
//!
//! The merge runs the gate as one machine would, with the shards' trials standing in for the
//! baseline's first trials and the first round of paired trials: every (case, arm, seed) that
//! phase asks for must come from a finished shard of this very gate — the same patch, the same
//! baseline and candidate hashes, the same `--trials` — else the merge stops (exit 2) naming
//! the shard, and never decides on fewer trials. The top-ups of uncertain cases that follow run
//! here unless a shard already ran them (pooled tests over all cases can ask for top-ups no
//! shard saw a need for), so N shards end with the decision one machine makes with the same
//! seeds.

use std::collections::HashMap;
use std::sync::Arc;

use crate::evals::case::Case;
use crate::exit::hinted;
use crate::trial::{BoxFuture, Runner, Trial, TrialRecord, Version};

/// One shard as its store recorded it.
#[derive(Debug, Clone)]
pub struct ShardRow {
    pub index: u32,
    pub total: u32,
    pub trials_k: u32,
    pub target: Option<String>,
    /// `running` until every trial it ran is recorded, then `done`.
    pub state: String,
    pub baseline_hash: Option<String>,
    pub candidate_hash: Option<String>,
    pub cases: Vec<String>,
    pub started_at: String,
}

/// Where shards recorded themselves and their trials: a store (`store::shards` implements it),
/// so this stage does not depend on the store.
pub trait ShardLog: Send + Sync {
    /// Every shard run of this patch on this harness, any partition.
    fn shards<'a>(&'a self, harness: &'a str, patch_hash: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<ShardRow>>>;
    /// Every recorded trial of these harness versions.
    fn trials_of<'a>(&'a self, hashes: &'a [String]) -> BoxFuture<'a, anyhow::Result<Vec<TrialRecord>>>;
}

/// The shards' stores, each with a name for people (its file, or "the store").
pub struct Sources {
    pub patch_hash: String,
    pub stores: Vec<(String, Arc<dyn ShardLog>)>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.stores.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Sources").field("patch_hash", &self.patch_hash).field("stores", &names).finish()
    }
}

/// The trials of every finished shard of one gate, by (harness hash, case hash, seed), and
/// which shard each case belonged to (to name it when a trial is missing).
pub struct Imported {
    trials: HashMap<(String, String, u64), TrialRecord>,
    owner: HashMap<String, String>,
    baseline_hash: String,
    total: u32,
}

/// The shard rows of this gate, checked: one finished shard for each of 1..=N, all from the
/// same baseline, candidate and `--trials`; then their trials.
pub async fn load(
    sources: &Sources,
    harness: &str,
    [baseline, candidate]: [&str; 2],
    k: u32,
    target: Option<&str>,
) -> anyhow::Result<Imported> {
    let mut rows: Vec<(usize, ShardRow)> = Vec::new();
    for (i, (_, log)) in sources.stores.iter().enumerate() {
        rows.extend(log.shards(harness, &sources.patch_hash).await?.into_iter().map(|r| (i, r)));
    }
    let names: Vec<&str> = sources.stores.iter().map(|(n, _)| n.as_str()).collect();
    let rerun = "run `autoharness gate PATCH --partition K/N` for every shard with this patch, then merge their stores";
    // The newest attempt says how many shards this gate has (an older attempt may have used another N).
    let Some(total) = rows.iter().max_by(|a, b| a.1.started_at.cmp(&b.1.started_at)).map(|(_, r)| r.total) else {
        return Err(hinted(
            format!("no shard of this gate (patch {}) in {}", short(&sources.patch_hash), names.join(", ")),
            rerun,
        ));
    };
    let mut imported =
        Imported { trials: HashMap::new(), owner: HashMap::new(), baseline_hash: baseline.to_string(), total };
    for index in 1..=total {
        // A finished run of the shard over any later one that did not finish: a shard taken
        // over by `run --partition`'s leader can leave its lost runner's row behind.
        let newest = rows
            .iter()
            .filter(|(_, r)| r.total == total && r.index == index)
            .max_by_key(|(_, r)| (r.state == "done", r.started_at.clone()));
        let Some((src, row)) = newest else {
            return Err(hinted(
                format!("shard {index}/{total} is missing: none of {} holds it", names.join(", ")),
                rerun,
            ));
        };
        let name = format!("shard {index}/{total} ({})", names[*src]);
        check_row(&name, row, [baseline, candidate], k, target)?;
        let hashes = [baseline.to_string(), candidate.to_string()];
        for rec in sources.stores[*src].1.trials_of(&hashes).await? {
            if row.cases.contains(&rec.case_id) {
                imported.owner.insert(rec.case_id.clone(), name.clone());
                imported.trials.insert((rec.harness_hash.clone(), rec.case_hash.clone(), rec.seed), rec);
            }
        }
        for case in &row.cases {
            imported.owner.entry(case.clone()).or_insert_with(|| name.clone());
        }
    }
    Ok(imported)
}

/// A shard that did not finish, or ran another gate, is an error naming it.
fn check_row(
    name: &str,
    row: &ShardRow,
    [baseline, candidate]: [&str; 2],
    k: u32,
    target: Option<&str>,
) -> anyhow::Result<()> {
    if row.state != "done" {
        return Err(hinted(
            format!("{name} did not finish (started {}): it failed, was killed or is still running", row.started_at),
            "rerun that shard (its finished trials are cached in its store), then merge again",
        ));
    }
    let differs = |what: &str, theirs: &str, ours: &str| {
        hinted(
            format!("{name} ran {what} {theirs}, this merge has {ours}"),
            "the harness, its cases or the gate's options changed between the shards and the merge: rerun the shards",
        )
    };
    let theirs = |h: &Option<String>| short(h.as_deref().unwrap_or("?"));
    if row.baseline_hash.as_deref() != Some(baseline) {
        return Err(differs("on baseline", &theirs(&row.baseline_hash), &short(baseline)));
    }
    if row.candidate_hash.as_deref() != Some(candidate) {
        return Err(differs("candidate", &theirs(&row.candidate_hash), &short(candidate)));
    }
    if row.trials_k != k {
        return Err(differs("--trials", &row.trials_k.to_string(), &k.to_string()));
    }
    if row.target.as_deref() != target {
        let show = |t: Option<&str>| t.map_or("no --target".to_string(), |t| format!("--target {t}"));
        return Err(differs("with", &show(row.target.as_deref()), &show(target)));
    }
    Ok(())
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}

/// Run `trials` of `cases` on `version`, taking each from the shards when they hold it. In the
/// first round (`required`), every trial must come from a shard: one that does not is an error
/// naming the shard it belonged to, before anything runs. Without imports, the runner runs all.
pub async fn trials(
    imported: Option<&Imported>,
    required: bool,
    runner: &Runner,
    version: &Version,
    cases: &[Case],
    trials: &[Trial],
    on_done: &(dyn Fn(&TrialRecord) + Sync),
) -> anyhow::Result<Vec<TrialRecord>> {
    let Some(imp) = imported else {
        return runner.run(version, cases, trials, on_done).await;
    };
    let mut out: Vec<Option<TrialRecord>> = Vec::with_capacity(trials.len());
    let mut to_run = Vec::new();
    let mut missing = Vec::new();
    for t in trials {
        let case = &cases[t.case];
        match imp.trials.get(&(version.hash.clone(), case.hash.clone(), t.seed)) {
            Some(rec) => out.push(Some(TrialRecord { cached: true, ..rec.clone() })),
            None if required => missing.push(imp.describe(case.id(), t.seed, &version.hash)),
            None => {
                out.push(None);
                to_run.push(*t);
            }
        }
    }
    if !missing.is_empty() {
        let more = if missing.len() > 5 { format!("\n  … and {} more", missing.len() - 5) } else { String::new() };
        missing.truncate(5);
        return Err(hinted(
            format!("the shards do not hold every trial of this gate's first round:\n  {}{more}", missing.join("\n  ")),
            "a case file changed since the shards ran, or a shard ran other options: rerun the shards named",
        ));
    }
    for rec in out.iter().flatten() {
        if let Some(store) = &runner.store {
            // The merge's store holds every trial its decision rests on (and caches them).
            store.record(rec, runner.run_id.as_deref()).await?;
        }
        on_done(rec);
    }
    let mut ran = runner.run(version, cases, &to_run, on_done).await?.into_iter();
    out.into_iter()
        .map(|r| r.or_else(|| ran.next()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow::anyhow!("the runner returned fewer trials than it was given"))
}

impl Imported {
    fn describe(&self, case: &str, seed: u64, hash: &str) -> String {
        let arm = if hash == self.baseline_hash { "baseline" } else { "candidate" };
        let shard = self.owner.get(case).cloned().unwrap_or_else(|| {
            format!(
                "shard {}/{}, which did not list this case",
                super::partition::Partition::shard_of(case, self.total),
                self.total
            )
        });
        format!("case `{case}` seed {seed} on the {arm}: {shard}")
    }
}

/// What a shard (`gate --partition K/N`) did: the trials of its cases, recorded for a
/// merge (`autoharness.gate-shard/v1`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardReport {
    pub schema: &'static str,
    pub harness: String,
    /// `K/N`.
    pub partition: String,
    pub baseline_hash: String,
    pub candidate_hash: String,
    /// The cases this shard ran trials of, in suite order (then those the baseline failed
    /// throughout, which it left out of the decision).
    pub cases: Vec<String>,
    pub trials: super::session::TrialCounts,
    /// Set when the gate is decided before any trial (leakage, a failed check): the merge
    /// decides the same without trials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_before_trials: Option<String>,
    pub wall_ms: u64,
}

impl ShardReport {
    pub fn of(r: &super::session::GateReport, partition: super::partition::Partition) -> ShardReport {
        ShardReport {
            schema: crate::schema::GATE_SHARD,
            harness: r.harness.clone(),
            partition: partition.to_string(),
            baseline_hash: r.baseline_hash.clone(),
            candidate_hash: r.candidate_hash.clone(),
            cases: r.cases_run(),
            trials: r.trials.clone(),
            decided_before_trials: (r.rule != "shard").then(|| format!("{}: {}", r.rule, r.reason)),
            wall_ms: r.wall_ms,
        }
    }
}
