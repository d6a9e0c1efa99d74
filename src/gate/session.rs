//! One gate: a patch → a candidate harness (private copy) → adaptive paired trials of
//! baseline and candidate → a verdict with every number behind it (`autoharness.gate/v1`).
//!
//! Order of checks, cheapest and most certain first: the patch must parse and stay inside
//! the editable files (else an error, exit 2); it must not leak the holdout (fail); it
//! must apply (else exit 2); the manifest's `check` must pass on the candidate (fail);
//! then the trials, whose decision rules live in `engine`; then the cost rule.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::engine::{self, Arm, CaseTrials, Decision, GateConfig, Request, Role, Verdict};
use crate::evals::case::{Case, CaseStatus, Split, input_text};
use crate::exit::hinted;
use crate::harness::manifest::Manifest;
use crate::harness::patch::{self, Patch};
use crate::harness::workspace;
use crate::trial::{Runner, Trial, TrialRecord, Version, run_check};

/// What a gate needs besides the patch.
#[derive(Debug, Clone)]
pub struct GateOptions {
    pub cfg: GateConfig,
    /// Cluster (id or prefix) whose cases must improve.
    pub target: Option<String>,
    /// Candidate mean cost (and tokens) per trial may exceed the baseline's by this share.
    pub cost_tolerance: f64,
    /// Folder for the candidate copy and trial folders of this gate.
    pub work_dir: PathBuf,
    /// Run only this shard's cases (`--partition K/N`): their first round and the top-ups
    /// they ask for on their own; the report's rule is `shard` and a merge decides.
    pub partition: Option<super::partition::Partition>,
    /// Take the first round from these shards' stores (`--merge`), then decide.
    pub merge: Option<Arc<super::merge::Sources>>,
}

/// An error that means "this patch cannot be gated" (exit 2), with a hint.
pub fn refuse(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    hinted(message, hint)
}

/// A parsed patch, its paths made relative to the harness root and checked.
pub fn prepare_patch(text: &str, manifest: &Manifest, project_root: &Path) -> anyhow::Result<Patch> {
    if text.trim().is_empty() {
        return Err(refuse(
            "empty patch: no file changes found",
            "pass a unified diff (`git diff` or `diff -u` output)",
        ));
    }
    let mut p = patch::parse(text).map_err(|e| refuse(format!("bad patch: {e}"), "pass a unified diff"))?;
    if p.is_empty() {
        return Err(refuse(
            "empty patch: no file changes found",
            "pass a unified diff (`git diff` or `diff -u` output)",
        ));
    }
    patch::normalize_paths(&mut p, manifest.root_prefix(project_root).as_deref());
    if let Err(refusals) = patch::check_paths(&p, &manifest.root, manifest.editable_set()) {
        let lines: Vec<String> = refusals.iter().map(|r| format!("  {r}")).collect();
        return Err(refuse(
            format!("the patch touches files it may not change:\n{}", lines.join("\n")),
            format!("editable files of `{}`: {}", manifest.name, manifest.editable.join(", ")),
        ));
    }
    Ok(p)
}

/// The harness a patch is for, when not named: the one whose folder its paths are in.
pub fn harness_for_patch<'a>(
    text: &str,
    manifests: &'a [Manifest],
    project_root: &Path,
) -> anyhow::Result<&'a Manifest> {
    if manifests.len() == 1 {
        return Ok(&manifests[0]);
    }
    let parsed = patch::parse(text).ok();
    let paths: Vec<String> = parsed
        .as_ref()
        .map(|p| {
            p.files.iter().map(|f| f.path().trim_start_matches("a/").trim_start_matches("b/").to_string()).collect()
        })
        .unwrap_or_default();
    let matching: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| {
            m.root_prefix(project_root)
                .is_some_and(|prefix| !paths.is_empty() && paths.iter().all(|p| p.starts_with(&format!("{prefix}/"))))
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        _ => Err(refuse(
            "cannot tell which harness this patch is for",
            format!(
                "pass --harness with one of: {}",
                manifests.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// A holdout case whose id or distinctive input text appears in the patch's added lines.
#[derive(Debug, Clone, Serialize)]
pub struct Leak {
    pub case: String,
    pub what: String,
}

/// Words in a run that make input text distinctive: a phrase this long copied from a
/// holdout case's input is not a coincidence.
const LEAK_SHINGLE: usize = 8;

pub fn find_leaks(p: &Patch, holdout: &[&Case]) -> Vec<Leak> {
    let added: String = p
        .files
        .iter()
        .flat_map(|f| f.hunks.iter())
        .flat_map(|h| h.lines.iter())
        .filter_map(|l| match l {
            patch::HunkLine::Add(t) => Some(t.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let added_lower = added.to_lowercase();
    let added_words = words(&added_lower).join(" ");
    let mut leaks = Vec::new();
    for c in holdout {
        if added.contains(c.id()) {
            leaks.push(Leak { case: c.id().to_string(), what: format!("the patch names holdout case `{}`", c.id()) });
            continue;
        }
        let text = input_text(c).to_lowercase();
        let w = words(&text);
        if let Some(run) = w.windows(LEAK_SHINGLE).map(|run| run.join(" ")).find(|s| added_words.contains(s.as_str())) {
            leaks.push(Leak {
                case: c.id().to_string(),
                what: format!("the patch copies holdout input text: \"{}…\"", crate::trace::json::clip(&run, 60)),
            });
        }
    }
    leaks
}

fn words(s: &str) -> Vec<&str> {
    s.split(|c: char| !c.is_alphanumeric() && c != '#' && c != '_').filter(|w| !w.is_empty()).collect()
}

/// Which cases a gate runs, and in which role; and the cases it does not run, with why.
///
/// Status says how a case is reported and promoted, never whether a regression on it counts:
/// every train case guards (candidate or active alike), every holdout case vetoes, and adding
/// or promoting a case can only add to what a gate protects. Only quarantined (known flaky
/// beyond use) and retired cases are left out. A targeted gate's cluster cases are targets,
/// and they are guarded too (their full-pass rate must not drop).
pub fn roles(cases: &[Case], target: Option<&str>) -> (Vec<(usize, Role)>, Vec<NotGuarded>) {
    let mut out = Vec::new();
    let mut left_out = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let f = &c.file;
        if matches!(f.status, CaseStatus::Retired | CaseStatus::Quarantined) {
            left_out.push(NotGuarded { case: f.id.clone(), why: format!("{} (status)", f.status) });
            continue;
        }
        let in_target = target.is_some_and(|t| !f.cluster.is_empty() && f.cluster.starts_with(t));
        let role = if f.split == Split::Holdout {
            Role::Holdout
        } else if in_target {
            Role::Target
        } else {
            Role::Suite
        };
        out.push((i, role));
    }
    (out, left_out)
}

/// A case a gate did not test, and why (so a report never guards less than it seems to).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NotGuarded {
    pub case: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseRow {
    pub id: String,
    pub cluster: String,
    pub role: Role,
    /// e.g. `3/3 → 0/5`.
    pub flip: String,
    /// The first reason a candidate trial failed, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_failure: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_failure: Option<String>,
    /// Candidate trials that passed every check (for target cases the engine may count a
    /// trial as fixed without a full pass).
    pub candidate_passes: u32,
    pub candidate_trials: u32,
    /// Input, failing check, output excerpt, trial files (`gate::evidence`).
    #[serde(flatten)]
    pub evidence: crate::gate::evidence::CaseEvidence,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CostStats {
    pub baseline_mean_usd: Option<f64>,
    pub candidate_mean_usd: Option<f64>,
    pub baseline_mean_tokens: Option<f64>,
    pub candidate_mean_tokens: Option<f64>,
    pub tolerance: f64,
    pub exceeded: bool,
    pub total_usd: f64,
}

/// Cases a gate tested, by role.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Guarded {
    pub suite: u32,
    pub target: u32,
    pub holdout: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialCounts {
    pub baseline: u32,
    pub candidate: u32,
    pub cached: u32,
    /// Of `cached`, the baseline trials a sequential gate took from history before it planned
    /// anything (`warm_baseline`); absent when none.
    #[serde(skip_serializing_if = "engine::is_zero")]
    pub history: u32,
    pub rounds: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub schema: &'static str,
    pub harness: String,
    pub baseline_hash: String,
    pub candidate_hash: String,
    /// `pass` or `fail`.
    pub verdict: Verdict,
    /// The rule that decided: passed, regression, flaky_regression, no_improvement,
    /// holdout_drop, leakage, check, new_failure, cost.
    pub rule: String,
    /// One sentence for people.
    pub reason: String,
    pub target: Option<String>,
    pub files: Vec<String>,
    /// The patch gated, as a unified diff (clipped at 20,000 characters).
    pub patch: String,
    /// The isolation the trials run now ran under (see `doctor`), for people.
    pub isolation: Option<String>,
    /// Where each hunk landed (offset, whitespace fuzz).
    pub applied: Vec<String>,
    pub check: Option<String>,
    pub leaks: Vec<Leak>,
    /// Suite cases not run on the candidate: their baseline failed every first trial.
    pub skipped_stable_fail: Vec<String>,
    /// What the gate tested, by role.
    pub guarded: Guarded,
    /// Every case it did not test, and why (status, or a baseline that never passes).
    pub not_guarded: Vec<NotGuarded>,
    /// Failures on candidate trials whose signature no case and no baseline trial has.
    pub new_failures: Vec<NewFailure>,
    pub note: Option<String>,
    pub decision: Option<Decision>,
    pub cases: Vec<CaseRow>,
    pub cost: CostStats,
    pub trials: TrialCounts,
    pub wall_ms: u64,
    pub config: GateConfig,
}

impl GateReport {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Pass
    }

    /// Every case this gate ran trials of: those it tested and those it left out because the
    /// baseline failed all their first trials. A shard lists both: the merge repeats that
    /// screen and must find those trials too.
    pub fn cases_run(&self) -> Vec<String> {
        self.cases.iter().map(|c| c.id.clone()).chain(self.skipped_stable_fail.iter().cloned()).collect()
    }
}

/// What the gate reports as it goes (progress bars, notes).
pub trait Progress: Sync {
    fn round(&self, _round: u32, _trials: usize) {}
    fn trial(&self, _rec: &TrialRecord) {}
}

impl Progress for () {}

/// Every trial of a gate: (arm, index among the gated cases, seed) → its record.
type Records = HashMap<(Arm, usize, u64), TrialRecord>;

/// Run one gate. Errors (exit 2) are for patches that cannot be gated; every verdict,
/// pass or fail, is an `Ok(GateReport)`. Phases: roles and refusals, leakage, the
/// candidate and its check, stable baseline failures left out, adaptive paired trials,
/// then the report (case rows, new failures, cost) and the verdict.
pub async fn run(
    manifest: &Manifest,
    patch: &Patch,
    cases: &[Case],
    runner: &Runner,
    opts: &GateOptions,
    progress: &dyn Progress,
) -> anyhow::Result<GateReport> {
    let started = Instant::now();
    let baseline = Version::new(manifest.clone(), manifest.root.clone())?;
    let (selected, left_out) = roles(cases, opts.target.as_deref());
    let mut report = new_report(manifest, patch, &baseline, opts, left_out);
    if selected.is_empty() {
        return Err(refuse(
            format!("no cases to gate on for harness `{}`", manifest.name),
            "run `autoharness mine` to write eval cases under evals/",
        ));
    }
    let mut cfg = opts.cfg.clone();
    if opts.target.is_some() {
        if !selected.iter().any(|(_, r)| *r == Role::Target) {
            return Err(refuse(
                format!("no candidate train cases in cluster `{}`", opts.target.as_deref().unwrap_or("")),
                "`autoharness cases` lists clusters and their cases",
            ));
        }
        cfg.require_improvement = true;
    }
    // Leakage: the holdout's ids and distinctive text must not appear in the patch.
    let holdout: Vec<&Case> = selected.iter().filter(|(_, r)| *r == Role::Holdout).map(|(i, _)| &cases[*i]).collect();
    report.leaks = find_leaks(patch, &holdout);
    if !report.leaks.is_empty() {
        return Ok(finish(report, "leakage", "the patch contains sealed holdout material".into(), started));
    }
    let candidate = candidate(manifest, patch, opts, &baseline, &mut report)?;
    if let Some(Err(why)) = run_check(&candidate, &opts.work_dir.join("check"), runner.isolation).await? {
        report.check = Some(why.clone());
        return Ok(finish(report, "check", format!("the harness check failed on the candidate: {why}"), started));
    }
    let imported = match &opts.merge {
        Some(m) => Some(
            super::merge::load(m, &manifest.name, [&baseline.hash, &candidate.hash], cfg.k, opts.target.as_deref())
                .await?,
        ),
        None => None,
    };
    // The one point a partition applies: a shard plans (and runs) trials of its own cases only.
    let selected: Vec<(usize, Role)> =
        selected.into_iter().filter(|(i, _)| opts.partition.is_none_or(|p| p.contains(cases[*i].id()))).collect();
    // A shard with none of the target's cases would read "no target case improved" as settled
    // before its first trial and run nothing: the target is the merge's to judge.
    if opts.partition.is_some() && !selected.iter().any(|(_, r)| *r == Role::Target) {
        cfg.require_improvement = false;
    }
    let ctx = Trials { runner, imported: imported.as_ref(), progress };
    let (selected, pre) = leave_out_stable_failures(selected, cases, &baseline, &ctx, &cfg, &mut report).await?;
    let selected_cases: Vec<Case> = selected.iter().map(|(i, _)| cases[*i].clone()).collect();
    let mut state: Vec<CaseTrials> = selected.iter().map(|(i, role)| CaseTrials::new(cases[*i].id(), *role)).collect();
    // History orders the trials: cases that failed most often before run first, so a broken
    // candidate shows itself in the first round.
    if let Some(store) = &runner.store {
        let ids: Vec<String> = state.iter().map(|ct| ct.id.clone()).collect();
        let rates = store.fail_rates(&ids).await?;
        for ct in &mut state {
            if let Some(rate) = rates.get(&ct.id) {
                ct.prior_fail_rate = *rate;
            }
        }
    }
    let mut records: Records = HashMap::new();
    report.trials.history = warm_baseline(&mut records, &selected, &selected_cases, &baseline, runner, opts).await?;
    for (ci, ct) in state.iter_mut().enumerate() {
        ct.history = (0u64..).take_while(|&seed| records.contains_key(&(Arm::Baseline, ci, seed))).count() as u32;
    }
    for ((case, seed), r) in pre {
        if let Some(ci) = selected.iter().position(|(i, _)| *i == case) {
            records.insert((Arm::Baseline, ci, seed), r);
        }
    }
    let versions = [&baseline, &candidate];
    report.trials.rounds = paired_trials(&mut state, &mut records, &selected_cases, versions, &ctx, &cfg).await?;
    let decision = engine::decide(&cfg, &state);
    report.trials.baseline = records.keys().filter(|(a, _, _)| *a == Arm::Baseline).count() as u32;
    report.trials.candidate = records.keys().filter(|(a, _, _)| *a == Arm::Candidate).count() as u32;
    report.trials.cached = records.values().filter(|r| r.cached).count() as u32;
    report.cases = case_rows(&state, &records, &selected_cases, versions, runner);
    report.isolation = crate::gate::evidence::isolation_summary(&records.values().collect::<Vec<_>>());
    report.cost = cost_stats(&records, opts.cost_tolerance);
    report.new_failures = new_failures(cases, &records, &selected_cases);
    if let Some(p) = opts.partition {
        let reason = format!("shard {p}: trials recorded; `gate --merge` decides");
        return Ok(finish(report, "shard", reason, started));
    }
    Ok(conclude(report, decision, started))
}

/// The report before anything ran: what is gated, with which settings.
fn new_report(
    manifest: &Manifest,
    patch: &Patch,
    baseline: &Version,
    opts: &GateOptions,
    left_out: Vec<NotGuarded>,
) -> GateReport {
    GateReport {
        schema: crate::schema::GATE,
        harness: manifest.name.clone(),
        baseline_hash: baseline.hash.clone(),
        candidate_hash: String::new(),
        verdict: Verdict::Fail,
        rule: String::new(),
        reason: String::new(),
        target: opts.target.clone(),
        files: patch.touched_paths().iter().map(|s| s.to_string()).collect(),
        patch: crate::gate::evidence::patch_text(patch),
        isolation: None,
        applied: Vec::new(),
        check: None,
        leaks: Vec::new(),
        new_failures: Vec::new(),
        skipped_stable_fail: Vec::new(),
        guarded: Guarded::default(),
        not_guarded: left_out,
        note: None,
        decision: None,
        cases: Vec::new(),
        cost: CostStats { tolerance: opts.cost_tolerance, ..CostStats::default() },
        trials: TrialCounts { baseline: 0, candidate: 0, cached: 0, history: 0, rounds: 0 },
        wall_ms: 0,
        config: opts.cfg.clone(),
    }
}

/// The candidate: a private copy of the baseline with the patch applied. A patch that does
/// not apply, or changes nothing, cannot be gated.
fn candidate(
    manifest: &Manifest,
    patch: &Patch,
    opts: &GateOptions,
    baseline: &Version,
    report: &mut GateReport,
) -> anyhow::Result<Version> {
    let cand_root = opts.work_dir.join("candidate");
    if cand_root.exists() {
        std::fs::remove_dir_all(&cand_root).with_context(|| format!("cannot clear `{}`", cand_root.display()))?;
    }
    workspace::private_copy(&manifest.root, &cand_root, &manifest.filter)?;
    let applied = patch::apply(patch, &cand_root).map_err(|e| {
        refuse(
            format!("the patch does not apply to `{}`:\n{e}", manifest.name),
            "regenerate the diff against the current harness",
        )
    })?;
    report.applied = applied.to_string().lines().map(str::to_string).collect();
    let mut cand_manifest = manifest.clone();
    cand_manifest.root = cand_root.clone();
    let candidate = Version::new(cand_manifest, cand_root)?;
    report.candidate_hash = candidate.hash.clone();
    if candidate.hash == baseline.hash {
        return Err(refuse("the patch changes nothing in the harness", "pass a diff that changes an editable file"));
    }
    Ok(candidate)
}

/// Suite cases whose baseline fails every one of its first k trials cannot regress (no
/// exact test can reject with a baseline that never passes), so they are not run on the
/// candidate; they are reported as not guarded. The baseline's trials are usually cached,
/// so this costs little. Returns the cases gated and the baseline trials run, by (case
/// index, seed). A sequential gate runs no baseline up front: a case's baseline runs only once
/// its candidate fails, and a stable failure then settles as one that cannot regress.
#[allow(clippy::type_complexity)]
async fn leave_out_stable_failures(
    selected: Vec<(usize, Role)>,
    cases: &[Case],
    baseline: &Version,
    ctx: &Trials<'_>,
    cfg: &GateConfig,
    report: &mut GateReport,
) -> anyhow::Result<(Vec<(usize, Role)>, Vec<((usize, u64), TrialRecord)>)> {
    let suite: Vec<usize> = if cfg.sequential {
        Vec::new()
    } else {
        selected.iter().filter(|(_, r)| *r == Role::Suite).map(|(i, _)| *i).collect()
    };
    let pre_trials: Vec<Trial> =
        suite.iter().flat_map(|&i| (0..cfg.k as u64).map(move |seed| Trial { case: i, seed })).collect();
    let pre = ctx.run(baseline, cases, &pre_trials, true).await?;
    let mut stable_fail: HashSet<usize> = suite.iter().copied().collect();
    for (t, r) in pre_trials.iter().zip(&pre) {
        if r.passed {
            stable_fail.remove(&t.case);
        }
    }
    report.skipped_stable_fail = stable_fail.iter().map(|&i| cases[i].id().to_string()).collect();
    report.skipped_stable_fail.sort();
    for id in &report.skipped_stable_fail {
        report.not_guarded.push(NotGuarded {
            case: id.clone(),
            why: format!("not testable: the baseline failed all {} first trials", cfg.k),
        });
    }
    let selected: Vec<(usize, Role)> = selected.into_iter().filter(|(i, _)| !stable_fail.contains(i)).collect();
    let count = |r: Role| selected.iter().filter(|(_, x)| *x == r).count() as u32;
    report.guarded = Guarded { suite: count(Role::Suite), target: count(Role::Target), holdout: count(Role::Holdout) };
    report.note = Some(guard_note(&report.guarded, &report.not_guarded));
    let pre = pre_trials.iter().zip(pre).map(|(t, r)| ((t.case, t.seed), r)).collect();
    Ok((selected, pre))
}

/// How a gate's trials are run: by the runner, or taken from shards' stores (`--merge`).
struct Trials<'a> {
    runner: &'a Runner,
    imported: Option<&'a super::merge::Imported>,
    progress: &'a dyn Progress,
}

impl Trials<'_> {
    /// `first_round`: trials a shard runs, which a merge must find in the shards.
    async fn run(
        &self,
        version: &Version,
        cases: &[Case],
        trials: &[Trial],
        first_round: bool,
    ) -> anyhow::Result<Vec<TrialRecord>> {
        let on_done = |r: &TrialRecord| self.progress.trial(r);
        super::merge::trials(self.imported, first_round, self.runner, version, cases, trials, &on_done).await
    }
}

/// Baseline trials a sequential gate takes from history rather than running them (at most 30
/// per case: the warm baseline the engine screens stable cases on, see "Sequential allocation"
/// in `engine`).
pub const HISTORY_TRIALS: u32 = 30;

/// A sequential gate's warm baseline: each suite and holdout case's recorded trials of this
/// baseline (same harness hash, case content hash and environment fingerprint, so a changed
/// harness, case, command, passed-through variable or virtualenv starts cold), seeds 0.. without
/// a gap, into `records`. The engine screens a case whose warm baseline is long and stable.
/// Not done for today's gate (its plan runs `k` baseline trials whatever the history), with
/// `--no-cache`, or for shards and merges (a merge must see the trials its shards saw). Returns
/// how many trials were taken.
async fn warm_baseline(
    records: &mut Records,
    selected: &[(usize, Role)],
    cases: &[Case],
    baseline: &Version,
    runner: &Runner,
    opts: &GateOptions,
) -> anyhow::Result<u32> {
    if !opts.cfg.sequential || opts.partition.is_some() || opts.merge.is_some() {
        return Ok(0);
    }
    let limit = HISTORY_TRIALS.max(opts.cfg.k_max).min(engine::MAX_TRIALS);
    let mut taken = 0;
    for (ci, ((_, role), case)) in selected.iter().zip(cases).enumerate() {
        if *role == Role::Target {
            continue;
        }
        for (seed, rec) in (0u64..).zip(runner.recorded(baseline, case, u64::from(limit)).await?) {
            records.insert((Arm::Baseline, ci, seed), rec);
            taken += 1;
        }
    }
    Ok(taken)
}

/// The adaptive paired trials: round after round of what the engine asks for, candidate
/// first (a broken candidate shows itself while the baseline is still cached). Returns the
/// number of rounds.
async fn paired_trials(
    state: &mut [CaseTrials],
    records: &mut Records,
    cases: &[Case],
    [baseline, candidate]: [&Version; 2],
    ctx: &Trials<'_>,
    cfg: &GateConfig,
) -> anyhow::Result<u32> {
    append(state, records, cfg);
    let mut rounds = 0;
    loop {
        let requests = engine::next_requests(cfg, state);
        if requests.is_empty() {
            return Ok(rounds);
        }
        rounds += 1;
        let (cand_trials, base_trials) = split_requests(&requests);
        ctx.progress.round(rounds, cand_trials.len() + base_trials.len());
        // Every shard runs the first round of its cases: a merge takes all of it from them
        // (and any later trial a shard ran for its own cases' top-ups).
        let cand = ctx.run(candidate, cases, &cand_trials, rounds == 1).await?;
        let base = ctx.run(baseline, cases, &base_trials, rounds == 1).await?;
        for (arm, trials, recs) in [(Arm::Candidate, &cand_trials, cand), (Arm::Baseline, &base_trials, base)] {
            for (t, rec) in trials.iter().zip(recs) {
                records.insert((arm, t.case, t.seed), rec);
            }
        }
        append(state, records, cfg);
    }
}

/// One row per gated case: the flip, the first failure on each arm, the evidence.
fn case_rows(
    state: &[CaseTrials],
    records: &Records,
    cases: &[Case],
    [baseline, candidate]: [&Version; 2],
    runner: &Runner,
) -> Vec<CaseRow> {
    state
        .iter()
        .enumerate()
        .map(|(ci, ct)| {
            let c = &cases[ci];
            let first_failure = |arm: Arm| {
                (0..ct.trials(arm).len() as u64)
                    .filter_map(|s| records.get(&(arm, ci, s)))
                    .find(|r| !r.passed)
                    .and_then(|r| r.reason.clone())
            };
            let mut trials = Vec::new();
            for (arm, version, n) in
                [(Arm::Baseline, baseline, ct.baseline.len()), (Arm::Candidate, candidate, ct.candidate.len())]
            {
                for seed in 0..n as u64 {
                    if let (Some(r), Ok(dir)) = (records.get(&(arm, ci, seed)), runner.trial_dir(version, c, seed)) {
                        trials.push((arm, seed, r, dir));
                    }
                }
            }
            CaseRow {
                id: c.id().to_string(),
                cluster: c.file.cluster.clone(),
                role: ct.role,
                flip: format!(
                    "{}/{} → {}/{}",
                    ct.baseline.iter().filter(|b| **b).count(),
                    ct.baseline.len(),
                    ct.candidate.iter().filter(|b| **b).count(),
                    ct.candidate.len()
                ),
                candidate_failure: first_failure(Arm::Candidate),
                baseline_failure: first_failure(Arm::Baseline),
                candidate_passes: (0..ct.candidate.len() as u64)
                    .filter_map(|s| records.get(&(Arm::Candidate, ci, s)))
                    .filter(|r| r.passed)
                    .count() as u32,
                candidate_trials: ct.candidate.len() as u32,
                evidence: crate::gate::evidence::for_case(c, &trials),
            }
        })
        .collect()
}

/// Failures the candidate showed that no mined case and no baseline trial ever did (a fix
/// that trades the target's failure for a new one is no fix). Each names the first gated
/// case (in suite order) that showed it, whatever order the trials ended in, so the same
/// gate writes the same report.
fn new_failures(all_cases: &[Case], records: &Records, gated: &[Case]) -> Vec<NewFailure> {
    let mut known: HashSet<String> = all_cases.iter().flat_map(case_signatures).collect();
    known.extend(records.iter().filter(|((a, _, _), _)| *a == Arm::Baseline).filter_map(|(_, r)| r.signature.clone()));
    let mut found: HashMap<String, (u32, usize)> = HashMap::new();
    for ((arm, ci, _), r) in records {
        if let (Arm::Candidate, Some(sig)) = (arm, &r.signature)
            && !known.contains(sig)
        {
            let e = found.entry(sig.clone()).or_insert((0, *ci));
            e.0 += 1;
            e.1 = e.1.min(*ci);
        }
    }
    let mut out: Vec<NewFailure> = found
        .into_iter()
        .map(|(signature, (trials, ci))| NewFailure { signature, trials, case: gated[ci].id().to_string() })
        .collect();
    out.sort_by(|a, b| b.trials.cmp(&a.trials).then(a.signature.cmp(&b.signature)));
    out
}

/// The verdict: the engine's decision, then the cost rule.
fn conclude(mut report: GateReport, decision: engine::Decision, started: Instant) -> GateReport {
    let verdict_rule = match &decision.rule {
        engine::Rule::Passed => "passed",
        engine::Rule::Regression { .. } => "regression",
        engine::Rule::FlakyRegression => "flaky_regression",
        engine::Rule::StableRegression => "stable_regression",
        engine::Rule::NoImprovement => "no_improvement",
        engine::Rule::HoldoutDrop => "holdout_drop",
        engine::Rule::HoldoutRegression { .. } => "holdout_regression",
    };
    let summary = decision.summary.clone();
    let passed = decision.verdict == Verdict::Pass;
    report.decision = Some(decision);
    if !passed {
        return finish(report, verdict_rule, summary, started);
    }
    if report.cost.exceeded {
        let c = &report.cost;
        let reason = format!(
            "the candidate costs more than the baseline by over {:.0}%: ${:.5} vs ${:.5} per trial, {:.0} vs {:.0} tokens",
            c.tolerance * 100.0,
            c.candidate_mean_usd.unwrap_or(0.0),
            c.baseline_mean_usd.unwrap_or(0.0),
            c.candidate_mean_tokens.unwrap_or(0.0),
            c.baseline_mean_tokens.unwrap_or(0.0)
        );
        return finish(report, "cost", reason, started);
    }
    report.verdict = Verdict::Pass;
    finish(report, "passed", summary, started)
}

/// Move finished trials into the engine's state in seed order (index = seed on both arms),
/// stopping at the first seed not run yet. A targeted gate's target cases count a trial as
/// fixed by `target_fixed`; everything else by a full pass.
fn append(state: &mut [CaseTrials], records: &HashMap<(Arm, usize, u64), TrialRecord>, cfg: &GateConfig) {
    for (ci, ct) in state.iter_mut().enumerate() {
        for arm in [Arm::Baseline, Arm::Candidate] {
            while let Some(rec) = records.get(&(arm, ci, ct.trials(arm).len() as u64)) {
                if ct.role == Role::Target && cfg.require_improvement {
                    ct.push_target(arm, target_fixed(rec), rec.passed);
                } else {
                    ct.push(arm, [rec.passed]);
                }
            }
        }
    }
}

/// A failure signature seen on candidate trials and never before.
#[derive(Debug, Clone, Serialize)]
pub struct NewFailure {
    pub signature: String,
    pub trials: u32,
    pub case: String,
}

/// The signatures a case's `not_signature` checks and provenance name.
pub fn case_signatures(c: &Case) -> Vec<String> {
    let mut v: Vec<String> = c
        .checks
        .iter()
        .filter_map(|k| match k {
            crate::evals::checks::Check::NotSignature { signature } => Some(signature.clone()),
            _ => None,
        })
        .collect();
    v.extend(c.signature().map(str::to_string));
    v
}

/// For a targeted gate, a target case counts as fixed on a trial when the trial passed, or
/// when the harness ran to its end and the cluster's own failure did not come back: the root
/// cause is gone even if the case now fails later, in another way (an agent that no longer
/// hits its step limit gets far enough to fail a later check). Whatever fails instead is
/// reported (`new_failures`) and guarded by the case's full-pass rate, which must not drop.
/// A crash, a timeout, or a failure with no trace to show is never a fix.
pub fn target_fixed(rec: &TrialRecord) -> bool {
    if rec.passed {
        return true;
    }
    let sig_checks: Vec<_> = rec.checks.iter().filter(|c| c.kind == "not_signature").collect();
    if sig_checks.is_empty() || rec.trace_path.is_none() || rec.status != "exited" {
        return false;
    }
    sig_checks.iter().all(|c| c.passed)
}

/// One line for people: what the gate guarded and what it did not.
fn guard_note(g: &Guarded, left_out: &[NotGuarded]) -> String {
    let mut s = format!("guarded {} suite and {} holdout case(s)", g.suite, g.holdout);
    if g.target > 0 {
        s.push_str(&format!(", {} target case(s)", g.target));
    }
    if !left_out.is_empty() {
        let testless = left_out.iter().filter(|n| n.why.starts_with("not testable")).count();
        let by_status = left_out.len() - testless;
        let mut parts = Vec::new();
        if testless > 0 {
            parts.push(format!("{testless} not testable: the baseline fails them"));
        }
        if by_status > 0 {
            parts.push(format!("{by_status} quarantined or retired"));
        }
        s.push_str(&format!("; not guarded: {}", parts.join(", ")));
    }
    s
}

fn finish(mut report: GateReport, rule: &str, reason: String, started: Instant) -> GateReport {
    report.rule = rule.to_string();
    report.reason = reason;
    report.wall_ms = started.elapsed().as_millis() as u64;
    report
}

fn split_requests(requests: &[Request]) -> (Vec<Trial>, Vec<Trial>) {
    let mut cand = Vec::new();
    let mut base = Vec::new();
    for r in requests {
        let list = if r.arm == Arm::Candidate { &mut cand } else { &mut base };
        for i in r.first_trial..r.first_trial + r.trials {
            list.push(Trial { case: r.case, seed: i as u64 });
        }
    }
    (cand, base)
}

fn cost_stats(records: &HashMap<(Arm, usize, u64), TrialRecord>, tolerance: f64) -> CostStats {
    // Only pairs (same case and seed) that passed on both arms: a run that aborts early is
    // cheap, so comparing it with one that finishes the task would punish every fix.
    let other = |arm: Arm| if arm == Arm::Baseline { Arm::Candidate } else { Arm::Baseline };
    let both_passed = |arm: Arm, c: usize, s: u64, r: &TrialRecord| {
        r.passed && records.get(&(other(arm), c, s)).is_some_and(|o| o.passed)
    };
    let mean = |arm: Arm, f: &dyn Fn(&TrialRecord) -> Option<f64>| {
        let v: Vec<f64> = records
            .iter()
            .filter(|((a, c, s), r)| *a == arm && both_passed(arm, *c, *s, r))
            .filter_map(|(_, r)| f(r))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let cost = |r: &TrialRecord| r.cost_usd;
    let tokens = |r: &TrialRecord| r.tokens.map(|t| t as f64);
    let s = CostStats {
        baseline_mean_usd: mean(Arm::Baseline, &cost),
        candidate_mean_usd: mean(Arm::Candidate, &cost),
        baseline_mean_tokens: mean(Arm::Baseline, &tokens),
        candidate_mean_tokens: mean(Arm::Candidate, &tokens),
        tolerance,
        exceeded: false,
        // An empty f64 sum is -0.0, which prints as "$-0.0000".
        total_usd: records.values().filter(|r| !r.cached).filter_map(|r| r.cost_usd).sum::<f64>() + 0.0,
    };
    let over =
        |b: Option<f64>, c: Option<f64>| matches!((b, c), (Some(b), Some(c)) if c > b * (1.0 + tolerance) + 1e-12);
    CostStats {
        exceeded: over(s.baseline_mean_usd, s.candidate_mean_usd)
            || over(s.baseline_mean_tokens, s.candidate_mean_tokens),
        ..s
    }
}
