//! The nightly loop (`autoharness run`): mine what is new, pick the failure cluster that
//! costs most, propose harness diffs, gate each (target cases must improve), accept the
//! best passing one as the next baseline, promote the fixed cases into the regression
//! suite, and stop on budgets.
//!
//! The user's tree is never touched unless `--apply`/`--branch` asks: the run works on its
//! own baseline copy under `.autoharness/runs/<id>/baseline`, rebuilt on `--resume` from
//! the original root and the accepted patches recorded in the store. Every proposal is
//! recorded before it is gated and every trial is cached, so a killed run resumes without
//! repeating finished trials.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::evals::case::{self, Case};
use crate::gate::engine::{GateConfig, Role};
use crate::gate::session::{self, GateOptions, GateReport, target_fixed};
use crate::harness::manifest::Manifest;
use crate::harness::{patch, workspace};
use crate::mine::state::ClusterState;
use crate::propose::knobs::{self, KnobChange};
use crate::propose::{Proposal, ProposerKind};
use crate::store::Store;
use crate::store::runs::RunStatus;
use crate::trial::{Runner, Trial, Version};

/// Seeds each knob candidate is screened with on the target cases before any gate.
const SCREEN_SEEDS: u64 = 2;
/// Iterations without an accepted diff after which a cluster is skipped.
const MAX_FAILED_ATTEMPTS: i64 = 2;

/// Stored with the run (`runs.options`): a resume continues with them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOptions {
    pub traces: Option<PathBuf>,
    pub max_iterations: u32,
    pub candidates: u32,
    pub budget_usd: Option<f64>,
    #[serde(default, with = "opt_secs")]
    pub time_limit: Option<Duration>,
    pub apply: bool,
    pub branch: Option<String>,
    pub resume: bool,
    pub gate: GateConfig,
    pub cost_tolerance: f64,
    pub join_threshold: f64,
    pub holdout_share: f64,
    pub proposer: crate::propose::ProposerConfig,
    /// Work on this cluster (id or prefix) only, whatever its attempts or state (`--target`):
    /// the way to retry a cluster `run` gave up on.
    #[serde(default)]
    pub target: Option<String>,
    /// Run every trial again instead of reusing cached results (`--no-cache`).
    #[serde(default)]
    pub no_cache: bool,
    /// Spread each gate's trials over this many runners sharing the store; this run is
    /// shard 1, which leads (`--partition 1/N`; `flow::partitioned`).
    #[serde(default)]
    pub partition: Option<crate::gate::partition::Partition>,
    /// How long the leader waits for a shard nobody started, or whose runner stopped
    /// reporting, before it runs that shard itself (`--shard-wait`).
    #[serde(default, with = "opt_secs")]
    pub shard_wait: Option<Duration>,
}

impl RunOptions {
    pub fn shard_wait(&self) -> Duration {
        self.shard_wait.unwrap_or(DEFAULT_SHARD_WAIT)
    }
}

/// `--shard-wait`'s default: long enough for a CI matrix's jobs to start, short enough that
/// a lost runner costs one shard's time, not the night.
pub const DEFAULT_SHARD_WAIT: Duration = Duration::from_secs(120);

/// What the loop reports as it goes; `report::run` renders these.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Started {
        run_id: String,
        resumed: bool,
        baseline_hash: String,
    },
    Mined {
        files: usize,
        skipped: usize,
        failures: usize,
        clusters: usize,
        cases_written: usize,
    },
    Target {
        iteration: u32,
        cluster: String,
        label: String,
        failures: i64,
        share: f64,
    },
    Screening {
        candidates: usize,
        cases: usize,
    },
    NoCandidate {
        cluster: String,
    },
    Unusable {
        provider: String,
        why: String,
    },
    Gated {
        description: String,
        report: Box<GateReport>,
    },
    Accepted {
        iteration: u32,
        patch: PathBuf,
        description: String,
    },
    Promoted {
        cases: Vec<String>,
        quarantined: Vec<String>,
    },
    /// `--partition`: the leader runs a shard itself, and why.
    ShardTakenOver {
        partition: String,
        why: String,
    },
    Stopped {
        why: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateSummary {
    pub description: String,
    pub verdict: String,
    pub rule: String,
    pub reason: String,
    pub trials: u32,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IterationSummary {
    pub iteration: u32,
    pub cluster: String,
    pub label: String,
    pub candidates: Vec<CandidateSummary>,
    pub accepted: Option<String>,
    pub patch: Option<String>,
    pub evidence: Option<String>,
    pub promoted: Vec<String>,
    pub quarantined: Vec<String>,
    pub screening_trials: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub schema: &'static str,
    pub run_id: String,
    pub harness: String,
    pub resumed: bool,
    pub iterations: Vec<IterationSummary>,
    pub accepted: u32,
    pub clusters_fixed: Vec<String>,
    pub trials: u32,
    pub cached_trials: u32,
    pub cost_usd: f64,
    pub cost_per_fix_usd: Option<f64>,
    pub wall_ms: u64,
    pub stopped_because: String,
    pub run_dir: String,
    pub applied_to_tree: bool,
    pub branch: Option<String>,
}

/// A cluster as the loop sees it: from the store when mined here, else from the case files.
#[derive(Debug, Clone)]
struct Target {
    id: String,
    label: String,
    failures: i64,
    state: ClusterState,
}

pub struct RunContext<'a> {
    pub store: &'a Store,
    pub project_root: &'a Path,
    pub state_dir: &'a Path,
    /// This process's private trial folder (`harness::space`).
    pub trials_dir: &'a Path,
    pub jobs: usize,
    pub emit: &'a (dyn Fn(RunEvent) + Sync),
    /// Renders the evidence files the run writes (`report::run::Renderers`).
    pub evidence: &'a dyn Evidence,
    /// The project's `[feedback]`: what the scores found beside the traces mean, as for
    /// `mine` (a resumed run reads the config as it is now, like every other setting).
    pub feedback: &'a crate::trace::feedback::FeedbackConfig,
}

/// How a run's evidence files are rendered (each accepted gate in Markdown and HTML, the
/// summary): `report` does it and reads the run's types, so the run knows only this.
pub trait Evidence: Sync {
    /// The gate's report as the Markdown file `file` (its links relative to it).
    fn gate_markdown(&self, report: &crate::gate::session::GateReport, file: &Path) -> String;
    /// The gate's report as the HTML file `file` (its links relative to it).
    fn gate_html(&self, report: &crate::gate::session::GateReport, file: &Path) -> String;
    fn summary_markdown(&self, summary: &RunSummary) -> String;
}

/// Holds `<store stem>.run.lock` beside the store for the life of a run: a second run on
/// the same store refuses at once instead of interleaving with the first. Keyed by the
/// store, so runs on two stores in one folder do not refuse each other.
pub struct RunLock {
    _lock: crate::lockfile::FileLock,
}

pub fn lock(db: &Path) -> anyhow::Result<RunLock> {
    let path = crate::lockfile::beside_store(db, ".run.lock");
    match crate::lockfile::try_lock(&path).with_context(|| format!("cannot open the run lock `{}`", path.display()))? {
        Ok(mut lock) => {
            lock.set_holder(&format!("pid {}", std::process::id()));
            Ok(RunLock { _lock: lock })
        }
        Err(holder) => Err(crate::exit::hinted(
            format!("another `autoharness run` is using the store `{}` ({holder})", db.display()),
            "wait for it to finish, or give this run a store of its own with --db PATH",
        )),
    }
}

pub async fn run(ctx: &RunContext<'_>, manifest: &Manifest, opts: &RunOptions) -> anyhow::Result<RunSummary> {
    let run_id = std::sync::OnceLock::new();
    let result = run_inner(ctx, manifest, opts, &run_id).await;
    // A run that stopped on an error is marked so: never left "running" for ever.
    if let (Err(e), Some(id)) = (&result, run_id.get()) {
        ctx.store.mark_run_failed(id, &format!("{e:#}")).await?;
        // Followers of a partitioned run start nothing more of it.
        ctx.store.close_requests_of_run(id).await?;
    }
    result
}

/// The remaining time before `deadline`, for a wait that must not outlast `--time-limit`.
fn left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// `fut`, abandoned (its trials killed as they are dropped) when the deadline passes.
async fn within<T>(
    deadline: Option<Instant>,
    what: &str,
    fut: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match left(deadline) {
        None => fut.await,
        Some(left) => tokio::time::timeout(left, fut)
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the time limit ran out during {what}"))),
    }
}

/// A run as it stands: its record, options and folder, its baseline copy, and what it has
/// done so far (rebuilt from the store on `--resume`).
struct RunState {
    run_id: String,
    resumed: bool,
    opts: RunOptions,
    deadline: Option<Instant>,
    run_dir: PathBuf,
    /// The content hash of the harness as the run found it (before any accepted patch).
    root_hash: String,
    /// The user's root plus every patch this run accepted so far.
    base_root: PathBuf,
    base_manifest: Manifest,
    /// Iterations are closed in one transaction (`close_iteration`): the count stored is
    /// the iterations that finished; one that a crash interrupted is done again.
    iteration: u32,
    accepted_so_far: u32,
    /// Clusters this run already worked on without success: not chosen again by this run.
    skipped: HashSet<String>,
    /// Suite changes of this run (case id → status): in the store at once, in the case
    /// files only with --apply / --branch, so the tree changes only when asked to.
    statuses: std::collections::HashMap<String, case::CaseStatus>,
    summary: RunSummary,
}

/// The run in phases: open (or resume) it, mine what is new, iterate until a budget or
/// the targets run out, hand the accepted patches over, and close it.
async fn run_inner(
    ctx: &RunContext<'_>,
    manifest: &Manifest,
    given: &RunOptions,
    id_out: &std::sync::OnceLock<String>,
) -> anyhow::Result<RunSummary> {
    let started = Instant::now();
    // Invalid case files stop the run before it starts (and before a run record exists).
    case::load_checked(&ctx.project_root.join("evals"), &manifest.name)?;
    let mut st = open_run(ctx, manifest, given, started, id_out).await?;
    if let Some(traces) = &st.opts.traces {
        mine_new(ctx, manifest, &st.opts, traces).await?;
    }
    // Every trial's cost is added to the run's spend when the trial is recorded.
    let mut runner = Runner::new(Some(std::sync::Arc::new(ctx.store.clone())), ctx.jobs, ctx.trials_dir.to_path_buf());
    runner.use_cache = !st.opts.no_cache;
    runner.run_id = Some(st.run_id.clone());
    // Cluster ids from before a change of the signature rules (in `--target` and in case
    // files a person edited) resolve to the clusters they became.
    let aliases = ctx.store.aliases().await?;
    let live: Vec<String> =
        ctx.store.clusters().await?.into_iter().map(|c| c.cluster.id).filter(|id| aliases.resolve(id) == *id).collect();
    let only = st.opts.target.as_deref().map(|t| aliases.given(t, live.iter().map(String::as_str)).id);
    let stop = loop {
        if let Some(why) = stop_reason(ctx.store, &st, started).await? {
            break why;
        }
        let mut cases = case::load_checked(&ctx.project_root.join("evals"), &manifest.name)?;
        for c in &mut cases {
            if let Some(status) = st.statuses.get(c.id()) {
                c.file.status = *status;
            }
            c.file.cluster = aliases.resolve(&c.file.cluster);
        }
        let (target, passed_over) = choose_target(ctx.store, &cases, &st.skipped, only.as_deref()).await?;
        let Some(target) = target else {
            break no_target_reason(only.as_deref(), &passed_over);
        };
        iterate(ctx, manifest, &mut st, &runner, &cases, &target).await?;
    };
    (ctx.emit)(RunEvent::Stopped { why: stop.clone() });
    let accepted = hand_over(ctx, manifest, &mut st).await?;
    let store = ctx.store;
    let spent = store.run_spent(&st.run_id).await?;
    let summary = &mut st.summary;
    summary.accepted = accepted as u32;
    summary.cost_usd = spent;
    summary.cost_per_fix_usd = (summary.accepted > 0).then(|| spent / summary.accepted as f64);
    summary.wall_ms = started.elapsed().as_millis() as u64;
    summary.stopped_because = stop;
    let json = serde_json::to_string_pretty(&summary)?;
    std::fs::write(st.run_dir.join("summary.json"), &json)?;
    std::fs::write(st.run_dir.join("summary.md"), ctx.evidence.summary_markdown(summary))?;
    store.update_run(&st.run_id, st.iteration as i64, RunStatus::Finished, Some(&json)).await?;
    let _ = std::fs::remove_dir_all(&st.base_root);
    Ok(st.summary)
}

/// A new run, or the newest unfinished one with `--resume` continued with the options it
/// started with (the resume command's flags may only tighten its budgets); its baseline
/// rebuilt from the user's root and the patches it accepted.
async fn open_run(
    ctx: &RunContext<'_>,
    manifest: &Manifest,
    given: &RunOptions,
    started: Instant,
    id_out: &std::sync::OnceLock<String>,
) -> anyhow::Result<RunState> {
    let store = ctx.store;
    let existing = if given.resume { store.latest_run(&manifest.name, true).await? } else { None };
    if given.resume && existing.is_none() {
        return Err(crate::exit::hinted(
            format!("no unfinished run of `{}` to resume", manifest.name),
            "start one with `autoharness run`",
        ));
    }
    let (run_id, resumed, opts) = match &existing {
        Some(r) => (r.id.clone(), true, resumed_options(&r.id, &r.options, given)?),
        None => {
            let id = format!("r-{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S"), std::process::id());
            store.create_run(&id, &manifest.name, &serde_json::to_string(given)?).await?;
            (id, false, given.clone())
        }
    };
    let deadline = opts.time_limit.and_then(|t| started.checked_add(t));
    let _ = id_out.set(run_id.clone());
    let run_dir = ctx.state_dir.join("runs").join(&run_id);
    std::fs::create_dir_all(&run_dir)?;
    let base_root = run_dir.join("baseline");
    if base_root.exists() {
        std::fs::remove_dir_all(&base_root)?;
    }
    workspace::private_copy(&manifest.root, &base_root, &manifest.filter)?;
    let root_hash = workspace::content_hash(&base_root, &manifest.filter)?;
    let mut accepted_so_far = 0u32;
    let mut iteration = existing.as_ref().map(|r| r.iteration as u32).unwrap_or(0);
    let mut clusters_fixed = Vec::new();
    let mut skipped: HashSet<String> = HashSet::new();
    let recorded = store.proposals_of_run(&run_id).await?;
    // Those a crashed `--apply`/`--branch` had already planned are in the tree, or part of them.
    let planned = crate::harness::apply::replay_planned(&base_root, &run_dir.join("apply-intent.json"))?;
    for p in recorded.iter().filter(|p| p.accepted) {
        let parsed =
            parse_relative(&p.diff).map_err(|e| anyhow::anyhow!("accepted patch {} is unreadable: {e}", p.id))?;
        if !planned.contains(&patch_id(&p.diff)) {
            patch::apply(&parsed, &base_root)
                .map_err(|e| anyhow::anyhow!("accepted patch {} no longer applies: {e}", p.id))?;
        }
        accepted_so_far += 1;
        iteration = iteration.max(p.iteration as u32);
        clusters_fixed.push(p.cluster_id.clone());
        // Written after the iteration closed: a crash in between left it missing.
        std::fs::write(run_dir.join(format!("accepted-{accepted_so_far}.patch")), &p.diff)?;
    }
    for p in recorded.iter().filter(|p| p.iteration as u32 <= iteration && !p.accepted) {
        if !clusters_fixed.contains(&p.cluster_id) {
            skipped.insert(p.cluster_id.clone());
        }
    }
    if resumed {
        store.reopen_iterations_after(&run_id, iteration as i64).await?;
        // What a killed leader asked its followers for is asked again, with a new request.
        store.close_requests_of_run(&run_id).await?;
    }
    let mut base_manifest = manifest.clone();
    base_manifest.root = base_root.clone();
    (ctx.emit)(RunEvent::Started {
        run_id: run_id.clone(),
        resumed,
        baseline_hash: workspace::content_hash(&base_root, &manifest.filter)?,
    });
    let statuses = store.case_statuses_of_run(&run_id).await?.into_iter().collect();
    let summary = RunSummary {
        schema: crate::schema::RUN,
        run_id: run_id.clone(),
        harness: manifest.name.clone(),
        resumed,
        iterations: Vec::new(),
        accepted: accepted_so_far,
        clusters_fixed,
        trials: 0,
        cached_trials: 0,
        cost_usd: 0.0,
        cost_per_fix_usd: None,
        wall_ms: 0,
        stopped_because: String::new(),
        run_dir: run_dir.display().to_string(),
        applied_to_tree: false,
        branch: None,
    };
    Ok(RunState {
        run_id,
        resumed,
        opts,
        deadline,
        run_dir,
        root_hash,
        base_root,
        base_manifest,
        iteration,
        accepted_so_far,
        skipped,
        statuses,
        summary,
    })
}

/// Mine the traces the run was given: what is new becomes clusters and cases.
async fn mine_new(ctx: &RunContext<'_>, manifest: &Manifest, opts: &RunOptions, traces: &Path) -> anyhow::Result<()> {
    let mopts = crate::mine::MineOptions {
        summarize: None,
        judge: None,
        paths: vec![traces.to_path_buf()],
        harness: manifest.name.clone(),
        since: None,
        max_cases_per_cluster: 5,
        assume_failed: false,
        jobs: ctx.jobs,
        join_threshold: opts.join_threshold,
        holdout_share: opts.holdout_share,
        evals_dir: ctx.project_root.join("evals"),
        write_cases: true,
        feedback: crate::trace::scan::FeedbackOptions { files: Vec::new(), config: ctx.feedback.clone() },
    };
    let m = crate::flow::mine::mine(ctx.store, &mopts, &|_| {}).await?;
    (ctx.emit)(RunEvent::Mined {
        files: m.summary.files,
        skipped: m.summary.skipped_unchanged + m.summary.unchanged_content,
        failures: m.summary.failures_total,
        clusters: m.summary.clusters_total,
        cases_written: m.summary.cases_written,
    });
    Ok(())
}

/// Why the run stops before another iteration, if it does: iterations, budget, time.
async fn stop_reason(store: &Store, st: &RunState, started: Instant) -> anyhow::Result<Option<String>> {
    let opts = &st.opts;
    let spent = store.run_spent(&st.run_id).await?;
    if st.iteration >= opts.max_iterations {
        return Ok(Some(format!("reached --max-iterations {}", opts.max_iterations)));
    }
    if let Some(b) = opts.budget_usd
        && spent >= b
    {
        return Ok(Some(format!("spent ${spent:.4} of the ${b:.2} budget")));
    }
    if let Some(t) = opts.time_limit
        && started.elapsed() >= t
    {
        return Ok(Some(format!("reached the time limit ({}s)", t.as_secs())));
    }
    Ok(None)
}

/// One iteration on `target`: propose, gate each candidate, accept the best passing one.
/// It closes in one transaction whatever happens.
async fn iterate(
    ctx: &RunContext<'_>,
    manifest: &Manifest,
    st: &mut RunState,
    runner: &Runner,
    cases: &[Case],
    target: &Target,
) -> anyhow::Result<()> {
    let store = ctx.store;
    st.iteration += 1;
    let iteration = st.iteration;
    // Without mined clusters in this store (a fresh CI runner) `failures` counts cases:
    // the share is then of at least that many, never over 100%.
    let total: i64 =
        store.clusters().await?.iter().map(|c| c.cluster.members as i64).sum::<i64>().max(target.failures).max(1);
    (ctx.emit)(RunEvent::Target {
        iteration,
        cluster: target.id.clone(),
        label: target.label.clone(),
        failures: target.failures,
        share: target.failures as f64 / total as f64,
    });
    store.set_cluster_state(&target.id, ClusterState::Targeted).await?;
    let mut it = IterationSummary {
        iteration,
        cluster: target.id.clone(),
        label: target.label.clone(),
        candidates: Vec::new(),
        accepted: None,
        patch: None,
        evidence: None,
        promoted: Vec::new(),
        quarantined: Vec::new(),
        screening_trials: 0,
    };
    let run_id = st.run_id.clone();
    let mut close = crate::store::runs::IterationEnd {
        run_id: &run_id,
        iteration: iteration as i64,
        cluster: &target.id,
        accepted: None,
        cluster_state: ClusterState::Observed,
        case_events: Vec::new(),
    };
    let usable = propose(ctx, st, runner, cases, target, &mut it).await?;
    let best = if usable.is_empty() {
        (ctx.emit)(RunEvent::NoCandidate { cluster: target.id.clone() });
        // Model answers were recorded one by one; the knobs search leaves one record saying
        // nothing helped, so the cluster's failed attempts count.
        if st.opts.proposer.provider == ProposerKind::Knobs {
            let none = Proposal {
                description: "no knob change improved the target cases in screening".into(),
                error: Some("no candidate".into()),
                ..Proposal::empty("knobs")
            };
            let id = store.insert_proposal(&run_id, iteration as i64, &target.id, &none).await?;
            store.set_proposal_verdict(id, "error", "no_candidate", None, false).await?;
        }
        None
    } else {
        gate_candidates(ctx, st, runner, cases, target, usable, &mut it).await?
    };
    let Some((pid, p, report)) = best else {
        store.close_iteration(&close).await?;
        crate::crash::point("iteration_done");
        st.skipped.insert(target.id.clone());
        st.summary.iterations.push(it);
        return Ok(());
    };
    // Suite lifecycle: promote what the accepted harness passes, quarantine what flips;
    // recorded with the acceptance itself.
    let (promoted, quarantined, events) = lifecycle(&run_id, cases, &report);
    close.accepted = Some(pid);
    // "fixed" only once the fix is in the tree (--apply / --branch, below); until then
    // the cluster stays targeted, with a fix proposed in this run.
    close.cluster_state = ClusterState::Targeted;
    close.case_events = events;
    crate::crash::point("accepted");
    store.close_iteration(&close).await?;
    st.accepted_so_far += 1;
    let n = st.accepted_so_far;
    let patch_path = st.run_dir.join(format!("accepted-{n}.patch"));
    std::fs::write(&patch_path, patch::prefix_paths(&p.diff, manifest.root_prefix(ctx.project_root).as_deref()))?;
    let md = st.run_dir.join(format!("accepted-{n}.md"));
    // Trial file links that open from the run folder.
    let html = st.run_dir.join(format!("accepted-{n}.html"));
    std::fs::write(&md, ctx.evidence.gate_markdown(&report, &md))?;
    std::fs::write(&html, ctx.evidence.gate_html(&report, &html))?;
    let parsed = parse_relative(&p.diff)?;
    patch::apply(&parsed, &st.base_root).map_err(|e| anyhow::anyhow!("the accepted patch did not apply: {e}"))?;
    st.skipped.insert(target.id.clone());
    st.summary.clusters_fixed.push(target.id.clone());
    it.accepted = Some(p.description.clone());
    it.patch = Some(patch_path.display().to_string());
    it.evidence = Some(md.display().to_string());
    (ctx.emit)(RunEvent::Accepted { iteration, patch: patch_path, description: p.description.clone() });
    for id in &promoted {
        st.statuses.insert(id.clone(), case::CaseStatus::Active);
    }
    for id in &quarantined {
        st.statuses.insert(id.clone(), case::CaseStatus::Quarantined);
    }
    (ctx.emit)(RunEvent::Promoted { cases: promoted.clone(), quarantined: quarantined.clone() });
    it.promoted = promoted;
    it.quarantined = quarantined;
    crate::crash::point("iteration_done");
    st.summary.iterations.push(it);
    Ok(())
}

/// Candidates for `target`, each recorded (with what its answer cost) before any is gated;
/// unusable answers are recorded and left out. Returns the usable ones with their ids.
async fn propose(
    ctx: &RunContext<'_>,
    st: &mut RunState,
    runner: &Runner,
    cases: &[Case],
    target: &Target,
    it: &mut IterationSummary,
) -> anyhow::Result<Vec<(i64, Proposal)>> {
    let store = ctx.store;
    let opts = &st.opts;
    let baseline = Version::new(st.base_manifest.clone(), st.base_root.clone())?;
    let gated: HashSet<String> = store.gated_diffs(&target.id).await?.into_iter().map(|(h, _)| h).collect();
    let (proposals, screening_trials) = if opts.proposer.provider == ProposerKind::Knobs {
        let screening = async {
            if let Some(partition) = opts.partition.filter(|p| p.total > 1) {
                let leader =
                    super::partitioned::Leader { ctx, run_id: &st.run_id, root_hash: &st.root_hash, opts, partition };
                let diffs = knob_diffs(&baseline, &gated);
                leader
                    .screen(&st.base_manifest, diffs, &screen_targets(cases, &target.id), SCREEN_SEEDS, runner)
                    .await?;
            }
            propose_knobs(runner, &baseline, cases, &target.id, opts.candidates as usize, &gated, &st.run_dir, ctx.emit)
                .await
        };
        match within(st.deadline, "knob screening", screening).await {
            Ok((ps, n, _cost)) => (ps, n),
            // Out of time: the loop's check says so and stops.
            Err(_) if left(st.deadline).is_some_and(|l| l.is_zero()) => (Vec::new(), 0),
            Err(e) => return Err(e),
        }
    } else {
        // Redoing an interrupted iteration: its recorded answers are gated again (a
        // model need not give the same answer twice); only the missing ones are asked.
        let mut ps = if st.resumed {
            store.recorded_proposals(&st.run_id, st.iteration as i64, &target.id).await?
        } else {
            Vec::new()
        };
        let missing = opts.candidates.saturating_sub(ps.len() as u32);
        if missing > 0 {
            ps.extend(
                propose_model(store, &opts.proposer, &baseline, cases, target, missing, &st.run_dir, st.deadline)
                    .await?,
            );
        }
        (ps, 0)
    };
    let mut usable = Vec::new();
    for p in proposals {
        let id = store.insert_proposal(&st.run_id, st.iteration as i64, &target.id, &p).await?;
        if p.error.is_some() && p.diff.is_empty() {
            store.set_proposal_verdict(id, "error", "unusable_answer", None, false).await?;
            it.candidates.push(CandidateSummary {
                description: format!("{} proposal", p.provider),
                verdict: "error".into(),
                rule: "unusable_answer".into(),
                reason: p.error.clone().unwrap_or_default(),
                trials: 0,
                cost_usd: p.cost_usd,
            });
            (ctx.emit)(RunEvent::Unusable { provider: p.provider.clone(), why: p.error.clone().unwrap_or_default() });
        } else {
            usable.push((id, p));
        }
    }
    it.screening_trials = screening_trials;
    st.summary.trials += screening_trials;
    Ok(usable)
}

/// Gate each usable candidate against the run's baseline (the target must improve); the
/// passing one with the largest effect, if any.
async fn gate_candidates(
    ctx: &RunContext<'_>,
    st: &mut RunState,
    runner: &Runner,
    cases: &[Case],
    target: &Target,
    usable: Vec<(i64, Proposal)>,
    it: &mut IterationSummary,
) -> anyhow::Result<Option<(i64, Proposal, GateReport)>> {
    let store = ctx.store;
    let mut best: Option<(i64, Proposal, GateReport)> = None;
    for (pid, p) in usable {
        let gate_opts = GateOptions {
            cfg: GateConfig { require_improvement: true, ..st.opts.gate.clone() },
            target: Some(target.id.clone()),
            cost_tolerance: st.opts.cost_tolerance,
            work_dir: st.run_dir.join(format!("gate-{pid}")),
            partition: None,
            merge: None,
        };
        let outcome = match session::prepare_patch(&p.diff, &st.base_manifest, ctx.project_root) {
            Ok(parsed) => match st.opts.partition.filter(|p| p.total > 1) {
                Some(partition) => {
                    let leader = super::partitioned::Leader {
                        ctx,
                        run_id: &st.run_id,
                        root_hash: &st.root_hash,
                        opts: &st.opts,
                        partition,
                    };
                    let gate = leader.gate(&st.base_manifest, &p.diff, &parsed, cases, runner, &gate_opts);
                    within(st.deadline, "a gate", gate).await
                }
                None => {
                    let gate = session::run(&st.base_manifest, &parsed, cases, runner, &gate_opts, &());
                    within(st.deadline, "a gate", gate).await
                }
            },
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&gate_opts.work_dir);
        match outcome {
            Ok(report) => {
                let gate_id = store.record_gate(&report, &p.diff_hash()).await?;
                let prediction = score_prediction(&p, &target.id, &report);
                store.set_prediction_score(pid, &prediction.to_string()).await?;
                store.set_proposal_verdict(pid, report.verdict.as_str(), &report.rule, Some(gate_id), false).await?;
                crate::crash::point("gate_recorded");
                st.summary.trials += report.trials.baseline + report.trials.candidate;
                st.summary.cached_trials += report.trials.cached;
                it.candidates.push(CandidateSummary {
                    description: p.description.clone(),
                    verdict: report.verdict.to_string(),
                    rule: report.rule.clone(),
                    reason: report.reason.clone(),
                    trials: report.trials.baseline + report.trials.candidate,
                    cost_usd: report.cost.total_usd,
                });
                (ctx.emit)(RunEvent::Gated { description: p.description.clone(), report: Box::new(report.clone()) });
                if report.passed() && best.as_ref().is_none_or(|(_, _, b)| effect(&report) > effect(b)) {
                    best = Some((pid, p, report));
                }
            }
            Err(e) => {
                store.set_proposal_verdict(pid, "error", "error", None, false).await?;
                it.candidates.push(CandidateSummary {
                    description: p.description.clone(),
                    verdict: "error".into(),
                    rule: "error".into(),
                    reason: format!("{e:#}"),
                    trials: 0,
                    cost_usd: 0.0,
                });
            }
        }
    }
    Ok(best)
}

/// Hand the accepted patches over: always as `accepted.patch`; into the tree (with the
/// suite's status changes) with `--apply`; committed on a new branch with `--branch`.
/// Returns how many patches were accepted.
async fn hand_over(ctx: &RunContext<'_>, manifest: &Manifest, st: &mut RunState) -> anyhow::Result<usize> {
    let store = ctx.store;
    let accepted: Vec<_> = store.proposals_of_run(&st.run_id).await?.into_iter().filter(|p| p.accepted).collect();
    if accepted.is_empty() {
        return Ok(0);
    }
    // Relative to the repository root (where `git apply` and `gate` are run), not the harness root.
    let prefix = manifest.root_prefix(ctx.project_root);
    let combined: String = accepted.iter().map(|p| patch::prefix_paths(&p.diff, prefix.as_deref())).collect();
    std::fs::write(st.run_dir.join("accepted.patch"), &combined)?;
    // Every file the accepted patches touch, as git paths (the project holds the repository).
    let mut touched: Vec<String> = Vec::new();
    for p in &accepted {
        for rel in parse_relative(&p.diff)?.touched_paths() {
            let path = manifest.root.join(rel).display().to_string();
            if !touched.contains(&path) {
                touched.push(path);
            }
        }
    }
    if !st.opts.apply && st.opts.branch.is_none() {
        return Ok(accepted.len());
    }
    if let Some(branch) = &st.opts.branch {
        // `git add` skips ignored files without a word: the branch would lack part of the change.
        let ignored = git_ignored(ctx.project_root, &touched)?;
        if !ignored.is_empty() {
            return Err(crate::exit::hinted(
                format!(
                    "the accepted patches change {} which git ignores, so branch `{branch}` would not carry them",
                    ignored.join(", ")
                ),
                format!(
                    "un-ignore them, or apply with --apply and commit yourself; the patch is in {}",
                    st.run_dir.join("accepted.patch").display()
                ),
            ));
        }
        // A resume after a crash past this point finds the branch already checked out.
        if git_output(ctx.project_root, &["rev-parse", "--abbrev-ref", "HEAD"])?.trim() != branch {
            git(ctx.project_root, &["checkout", "-b", branch])?;
        }
        crate::crash::point("apply_branch");
        st.summary.branch = Some(branch.clone());
    }
    // Planned, recorded, then written file by file: a crash anywhere here resumes.
    let patches = accepted
        .iter()
        .map(|p| Ok((patch_id(&p.diff), parse_relative(&p.diff)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    crate::harness::apply::to_tree(&patches, &manifest.root, &st.run_dir.join("apply-intent.json"))?;
    let (cases, _) = case::load(&ctx.project_root.join("evals"), &manifest.name);
    for c in &cases {
        if let Some(status) = st.statuses.get(c.id()).filter(|s| **s != c.file.status) {
            case::write_status(&c.path, *status)?;
        }
    }
    st.summary.applied_to_tree = true;
    for p in &accepted {
        store.set_cluster_state(&p.cluster_id, ClusterState::Fixed).await?;
    }
    if let Some(branch) = &st.opts.branch {
        commit_branch(ctx.project_root, manifest, branch, &touched, accepted.len(), &st.run_id)?;
    }
    Ok(accepted.len())
}

/// Commit the applied patches and suite changes on `branch`, and check that nothing of
/// them was left out.
fn commit_branch(
    project_root: &Path,
    manifest: &Manifest,
    branch: &str,
    touched: &[String],
    accepted: usize,
    run_id: &str,
) -> anyhow::Result<()> {
    let evals = project_root.join("evals").join(&manifest.name);
    git(project_root, &["add", "--", &manifest.root.display().to_string(), &evals.display().to_string()])?;
    // Deletions and renames too: each touched path by name.
    let mut add: Vec<&str> = vec!["add", "-A", "--"];
    add.extend(touched.iter().map(String::as_str));
    git(project_root, &add)?;
    let msg = format!("autoharness: {accepted} accepted change(s) to {} (run {run_id})", manifest.name);
    // Committed before a crash: the resume finds nothing staged and its commit on top.
    let staged = git_output(project_root, &["diff", "--cached", "--name-only"])?;
    let head = git_output(project_root, &["log", "-1", "--format=%s"]).unwrap_or_default();
    if !staged.trim().is_empty() || head.trim() != msg {
        git(project_root, &["commit", "-q", "-m", &msg])?;
    }
    crate::crash::point("apply_committed");
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(touched.iter().map(String::as_str));
    let left = git_output(project_root, &status)?;
    if !left.trim().is_empty() {
        anyhow::bail!("branch `{branch}` was committed without these changes of the accepted patches:\n{left}");
    }
    Ok(())
}

/// A proposal's identity in an apply plan.
fn patch_id(diff: &str) -> String {
    blake3::hash(diff.as_bytes()).to_hex()[..16].to_string()
}

/// A diff whose paths are relative to the harness root (as proposers write them).
pub(super) fn parse_relative(diff: &str) -> anyhow::Result<patch::Patch> {
    let mut p = patch::parse(diff)?;
    patch::normalize_paths(&mut p, None);
    Ok(p)
}

/// How a proposal's prediction held up: did the clusters it expected fixed improve, and
/// did the clusters it put at risk (or others) regress?
fn score_prediction(p: &Proposal, target: &str, r: &GateReport) -> serde_json::Value {
    let improved = r.decision.as_ref().and_then(|d| d.target.as_ref()).is_some_and(|t| t.improved);
    let regressed: Vec<String> = r
        .decision
        .as_ref()
        .map(|d| {
            d.cases
                .iter()
                .filter(|c| c.outcome == crate::gate::engine::CaseOutcome::Regressed && c.role != Role::Target)
                .filter_map(|c| r.cases.iter().find(|row| row.id == c.id).map(|row| row.cluster.clone()))
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "predicted_fix": p.fixes.iter().any(|f| f == target),
        "target_improved": improved,
        "fix_prediction_right": p.fixes.iter().any(|f| f == target) == improved,
        "regressed_clusters": regressed,
        "risks_foreseen": regressed.iter().filter(|c| p.risks.contains(c)).count(),
        "risks_missed": regressed.iter().filter(|c| !p.risks.contains(c)).count(),
    })
}

fn effect(r: &GateReport) -> f64 {
    r.decision.as_ref().and_then(|d| d.target.as_ref()).map(|t| t.paired.effect).unwrap_or(0.0)
}

/// `--branch` checked before any work: the project is a git repository and no editable
/// file of the harness is ignored (the branch would lack any change to it).
pub fn branch_preflight(project_root: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    git_output(project_root, &["rev-parse", "--git-dir"]).map_err(|e| {
        crate::exit::hinted(
            format!("--branch needs a git repository at `{}`: {e:#}", project_root.display()),
            "run in a git checkout, or use --apply",
        )
    })?;
    let mut editable = Vec::new();
    let mut todo = vec![manifest.root.clone()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("cannot list `{}`", dir.display()))?.flatten() {
            let p = e.path();
            let Ok(rel) = p.strip_prefix(&manifest.root) else { continue };
            let rel = rel.to_string_lossy().into_owned();
            if crate::harness::workspace::SKIPPED_DIRS.contains(&rel.as_str()) {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(p),
                Ok(t) if t.is_file() && manifest.is_editable(&rel) => editable.push(p.display().to_string()),
                _ => {}
            }
        }
    }
    let ignored = git_ignored(project_root, &editable)?;
    if !ignored.is_empty() {
        return Err(crate::exit::hinted(
            format!("--branch: git ignores editable files of `{}`: {}", manifest.name, ignored.join(", ")),
            "a branch would silently lack changes to them: un-ignore them, or use --apply and commit yourself",
        ));
    }
    Ok(())
}

/// `--branch` names a branch that does not exist yet: checked before any work, or the run
/// would fail at its very end on `git checkout -b` (and on every resume after).
pub fn branch_is_new(project_root: &Path, branch: &str) -> anyhow::Result<()> {
    let exists = std::process::Command::new("git")
        .arg("-C")
        .arg(project_root)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("refs/heads/{branch}"))
        .output()
        .context("cannot run git")?
        .status
        .success();
    if exists {
        return Err(crate::exit::hinted(
            format!("--branch: branch `{branch}` already exists in `{}`", project_root.display()),
            "name a new branch (the run makes it and commits the accepted changes on it), or delete that one",
        ));
    }
    Ok(())
}

/// Which of `paths` git ignores (`git check-ignore`; exit 1 means none).
fn git_ignored(dir: &Path, paths: &[String]) -> anyhow::Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["check-ignore", "--no-index", "--"])
        .args(paths)
        .output()
        .context("cannot run git")?;
    match out.status.code() {
        Some(0) | Some(1) => Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()),
        _ => anyhow::bail!("git check-ignore failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
    }
}

fn git_output(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().context("cannot run git")?;
    if !out.status.success() {
        anyhow::bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(args).output().context("cannot run git")?;
    if !out.status.success() {
        anyhow::bail!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// The most costly cluster still worth a try: not fixed, with train cases to improve,
/// not tried too often without success. Impact = mined failures (or cases when not mined here).
/// The next cluster to work on: the costliest with candidate train cases that is not fixed,
/// has no fix proposed by an earlier run that was never applied, and has not failed
/// [`MAX_FAILED_ATTEMPTS`] gated attempts. `only` (`--target`) picks one cluster whatever
/// its attempts and state. Returns the clusters passed over with why, for the report.
async fn choose_target(
    store: &Store,
    cases: &[Case],
    skipped: &HashSet<String>,
    only: Option<&str>,
) -> anyhow::Result<(Option<Target>, Vec<(String, String)>)> {
    let stored = store.clusters().await?;
    let mut targets: Vec<Target> = Vec::new();
    let mut seen = HashSet::new();
    for c in
        cases.iter().filter(|c| c.file.split == "train" && c.file.status == "candidate" && !c.file.cluster.is_empty())
    {
        if !seen.insert(c.file.cluster.clone()) {
            continue;
        }
        let s = stored.iter().find(|s| s.cluster.id == c.file.cluster);
        targets.push(Target {
            id: c.file.cluster.clone(),
            label: s.map(|s| s.label.clone()).unwrap_or_else(|| c.signature().unwrap_or_default().to_string()),
            failures: s
                .map(|s| s.cluster.members as i64)
                .unwrap_or_else(|| cases.iter().filter(|x| x.file.cluster == c.file.cluster).count() as i64),
            state: s.map(|s| s.state).unwrap_or_default(),
        });
    }
    targets.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.id.cmp(&b.id)));
    let mut passed_over = Vec::new();
    for t in targets {
        if let Some(only) = only {
            if t.id.starts_with(only) && !skipped.contains(&t.id) {
                return Ok((Some(t), passed_over));
            }
            continue;
        }
        let why = if skipped.contains(&t.id) {
            Some("already worked on in this run".to_string())
        } else if t.state == ClusterState::Fixed {
            Some("fixed (its fix was applied)".to_string())
        } else if let Some(run) = store.unapplied_fix(&t.id).await? {
            Some(format!("fix proposed in run {run}, not applied yet (its accepted.patch)"))
        } else {
            let n = store.failed_attempts(&t.id).await?;
            (n >= MAX_FAILED_ATTEMPTS)
                .then(|| format!("tried too often: {n} gated attempts accepted nothing (retry with --target {})", t.id))
        };
        match why {
            Some(why) => passed_over.push((t.id.clone(), why)),
            None => return Ok((Some(t), passed_over)),
        }
    }
    Ok((None, passed_over))
}

/// Why the loop found nothing to work on, naming each cluster passed over.
fn no_target_reason(only: Option<&str>, passed_over: &[(String, String)]) -> String {
    if let Some(only) = only {
        return format!("no cluster `{only}` with candidate train cases left to work on");
    }
    if passed_over.is_empty() {
        return "no cluster left to work on: no candidate train cases (run `autoharness mine`)".into();
    }
    let list: Vec<String> = passed_over.iter().take(8).map(|(id, why)| format!("{id}: {why}")).collect();
    format!("no cluster left to work on ({})", list.join("; "))
}

/// The cases knob screening runs: the cluster's train cases not yet in the suite.
fn screen_targets(cases: &[Case], cluster: &str) -> Vec<Case> {
    cases
        .iter()
        .filter(|c| c.file.cluster == cluster && c.file.split == "train" && c.file.status == "candidate")
        .cloned()
        .collect()
}

/// A diff's key among the diffs a cluster was already gated with.
fn diff_key(diff: &str) -> String {
    blake3::hash(diff.as_bytes()).to_hex()[..16].to_string()
}

/// The single knob changes screening tries first, as diffs (those gated before left out):
/// what `run --partition` spreads over its runners before the leader screens.
fn knob_diffs(baseline: &Version, gated: &HashSet<String>) -> Vec<String> {
    knobs::singles(&baseline.manifest, &baseline.root)
        .into_iter()
        .filter_map(|c| knobs::candidate(&baseline.root, &[c]).ok())
        .map(|k| k.diff)
        .filter(|d| !gated.contains(&diff_key(d)))
        .collect()
}

/// Knob candidates for a cluster, screened on its train cases: singles first, then pairs
/// of the best singles; only those that fix more target trials than the baseline, best
/// first, never one already gated for this cluster.
#[allow(clippy::too_many_arguments)]
async fn propose_knobs(
    runner: &Runner,
    baseline: &Version,
    cases: &[Case],
    cluster: &str,
    want: usize,
    gated: &HashSet<String>,
    run_dir: &Path,
    emit: &(dyn Fn(RunEvent) + Sync),
) -> anyhow::Result<(Vec<Proposal>, u32, f64)> {
    let targets = screen_targets(cases, cluster);
    let trials: Vec<Trial> =
        (0..targets.len()).flat_map(|c| (0..SCREEN_SEEDS).map(move |seed| Trial { case: c, seed })).collect();
    let mut spent_trials = 0u32;
    let mut cost = 0.0;
    let mut score = async |version: &Version| -> anyhow::Result<usize> {
        let recs = runner.run(version, &targets, &trials, &|_| {}).await?;
        spent_trials += recs.iter().filter(|r| !r.cached).count() as u32;
        cost += recs.iter().filter(|r| !r.cached).filter_map(|r| r.cost_usd).sum::<f64>();
        // As the gate judges: the cluster's failure gone; a full pass ranks above a trial
        // that now fails in another way.
        Ok(recs.iter().map(|r| usize::from(target_fixed(r)) + usize::from(r.passed)).sum())
    };
    let base_score = score(baseline).await?;
    let singles = knobs::singles(&baseline.manifest, &baseline.root);
    emit(RunEvent::Screening { candidates: singles.len(), cases: targets.len() });
    let screen_dir = run_dir.join("screen");
    let mut scored: Vec<(usize, Vec<KnobChange>, knobs::KnobCandidate)> = Vec::new();
    let mut try_changes = async |changes: Vec<KnobChange>,
                                 scored: &mut Vec<(usize, Vec<KnobChange>, knobs::KnobCandidate)>|
           -> anyhow::Result<()> {
        let Ok(cand) = knobs::candidate(&baseline.root, &changes) else { return Ok(()) };
        let hash = diff_key(&cand.diff);
        if gated.contains(&hash) {
            return Ok(());
        }
        let root = screen_dir.join(&hash);
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        workspace::private_copy(&baseline.root, &root, &baseline.manifest.filter)?;
        patch::apply(&parse_relative(&cand.diff)?, &root)?;
        let mut m = baseline.manifest.clone();
        m.root = root.clone();
        let s = score(&Version::new(m, root.clone())?).await?;
        let _ = std::fs::remove_dir_all(&root);
        scored.push((s, changes, cand));
        Ok(())
    };
    for c in singles {
        try_changes(vec![c], &mut scored).await?;
    }
    scored.sort_by_key(|b| std::cmp::Reverse(b.0));
    if !scored.iter().any(|(s, _, _)| *s > base_score) {
        // No single knob helps: a cause often hides behind another (a conversation that no
        // longer times out now runs out of steps), so try pairs of the best singles.
        let best: Vec<KnobChange> = scored.iter().take(5).map(|(_, c, _)| c[0].clone()).collect();
        for pair in knobs::pairs(&best, 8) {
            try_changes(pair, &mut scored).await?;
        }
        scored.sort_by_key(|b| std::cmp::Reverse(b.0));
    }
    let _ = std::fs::remove_dir_all(&screen_dir);
    let proposals = scored
        .into_iter()
        .filter(|(s, _, _)| *s > base_score)
        .take(want.max(1))
        .map(|(s, _, cand)| Proposal {
            description: cand.description.clone(),
            diff: cand.diff,
            fixes: vec![cluster.to_string()],
            answer: Some(format!("screened: {s}/{} target trials fixed (baseline {base_score})", trials.len())),
            ..Proposal::empty("knobs")
        })
        .collect();
    Ok((proposals, spent_trials, cost))
}

/// Ask a model (or a coding agent) for `n` candidates for the target cluster.
#[allow(clippy::too_many_arguments)]
async fn propose_model(
    store: &Store,
    cfg: &crate::propose::ProposerConfig,
    baseline: &Version,
    cases: &[Case],
    target: &Target,
    n: u32,
    run_dir: &Path,
    deadline: Option<Instant>,
) -> anyhow::Result<Vec<Proposal>> {
    let failures = store.failures(true).await?;
    let evidence: Vec<String> = failures
        .iter()
        .filter(|f| f.cluster_id.as_deref() == Some(target.id.as_str()))
        .map(|f| f.failure.text.clone())
        .collect();
    let holdout_inputs: Vec<String> = cases
        .iter()
        .filter(|c| c.file.split == "holdout")
        .map(|c| case::input_text(c).chars().take(80).collect())
        .collect();
    let others: Vec<(String, String)> = store
        .clusters()
        .await?
        .into_iter()
        .filter(|c| c.cluster.id != target.id)
        .map(|c| (c.cluster.id.clone(), c.label.clone()))
        .collect();
    let brief_text = crate::propose::brief::render(&crate::propose::brief::BriefInput {
        manifest: &baseline.manifest,
        root: &baseline.root,
        cluster: &target.id,
        label: &target.label,
        failures: target.failures,
        evidence,
        holdout_inputs,
        others,
        rejected: store.rejected_proposals(&target.id).await?,
        budget_chars: (cfg.context_tokens.saturating_sub(cfg.max_tokens) as usize).saturating_mul(3),
    });
    let editable = baseline.manifest.editable_set();
    let mut out = Vec::new();
    for i in 0..n {
        let p = match cfg.provider {
            ProposerKind::Openai | ProposerKind::Anthropic => {
                let mut llm = cfg.llm()?;
                llm.deadline = deadline;
                crate::propose::ask_llm(&llm, &brief_text, &baseline.root, editable, cfg.provider.as_str()).await
            }
            ProposerKind::Command => {
                let command = cfg.command.clone().ok_or_else(|| {
                    crate::exit::hinted("the `command` proposer needs a command", "set [proposer] command = \"...\"")
                })?;
                let timeout =
                    crate::harness::manifest::parse_duration(&cfg.timeout).unwrap_or(Duration::from_secs(600));
                let timeout = left(deadline).map_or(timeout, |l| timeout.min(l));
                let scratch = run_dir.join(format!("command-{i}"));
                crate::propose::ask_command(&command, &brief_text, &baseline.root, editable, &scratch, timeout).await
            }
            ProposerKind::Knobs => anyhow::bail!("the knobs proposer searches knobs; it is not asked for diffs"),
        };
        out.push(p);
    }
    Ok(out)
}

/// After an accepted gate: target cases whose every candidate trial passed join the active
/// suite (k-of-n with k = n ≥ 3); suite cases whose baseline flipped under the unchanged
/// harness are quarantined (reported, out of the hard rule). Returns the promoted and
/// quarantined ids and the events to record (case id, status, reason).
#[allow(clippy::type_complexity)]
fn lifecycle(
    run_id: &str,
    cases: &[Case],
    report: &GateReport,
) -> (Vec<String>, Vec<String>, Vec<(String, case::CaseStatus, String)>) {
    let mut promoted = Vec::new();
    let mut quarantined = Vec::new();
    let mut events = Vec::new();
    for row in &report.cases {
        let Some(c) = cases.iter().find(|c| c.id() == row.id) else { continue };
        // The case files change only with --apply / --branch (see `run`).
        if row.role == Role::Target && row.candidate_passes >= 3 && row.candidate_passes == row.candidate_trials {
            let why = format!("run {run_id}: passed {0}/{0} on the accepted harness", row.candidate_passes);
            events.push((row.id.clone(), case::CaseStatus::Active, why));
            promoted.push(row.id.clone());
        }
        let v = report.decision.as_ref().and_then(|d| d.cases.iter().find(|v| v.id == row.id));
        if row.role == Role::Suite
            && c.file.status == "active"
            && let Some(v) = v
            && v.class_baseline == crate::gate::engine::Class::Flaky
            && v.baseline_n >= 5
        {
            let why = format!(
                "run {run_id}: flipped under an unchanged harness: {}/{} on baseline",
                v.baseline_passes, v.baseline_n
            );
            events.push((row.id.clone(), case::CaseStatus::Quarantined, why));
            quarantined.push(row.id.clone());
        }
    }
    (promoted, quarantined, events)
}

/// The options a run started with (stored as JSON with it), with the budgets of the
/// resume command where they are tighter: `--max-iterations`, `--budget-usd` and
/// `--time-limit` may only lower what the run was given. Everything else (what to apply,
/// which proposer, gate settings) is the run's own.
fn resumed_options(run_id: &str, stored: &str, given: &RunOptions) -> anyhow::Result<RunOptions> {
    let mut o: RunOptions = serde_json::from_str(stored).map_err(|e| {
        crate::exit::hinted(
            format!("run {run_id}: its stored options are unreadable ({e})"),
            "start a new run instead of resuming this one",
        )
    })?;
    o.resume = true;
    o.max_iterations = o.max_iterations.min(given.max_iterations);
    o.budget_usd = match (o.budget_usd, given.budget_usd) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    o.time_limit = match (o.time_limit, given.time_limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(o)
}

/// `Option<Duration>` as seconds in the stored options.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs: Option<f64> = Option::deserialize(d)?;
        Ok(secs.filter(|s| s.is_finite() && *s >= 0.0).map(|s| Duration::from_secs_f64(s.min(1e12))))
    }
}
