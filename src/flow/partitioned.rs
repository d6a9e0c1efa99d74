//! `run --partition K/N`: one nightly run spread over N runners that share a store (a
//! Postgres server, or one SQLite file on one machine).
//!
//! Shard 1 leads: it mines, proposes, and for every gate it publishes a request (everything
//! a follower needs: the patches the run accepted so far, the candidate, the suite's case
//! files as the run sees them, the gate's options), runs its own shard, waits for the
//! others, and decides through the same merge as `gate --merge`, so the decision is the one
//! a single machine makes with the same seeds. Shards 2..N follow: they rebuild the leader's
//! baseline from their own checkout of the same harness plus the accepted patches, and run
//! their share of each request's cases. Nothing but the store passes between runners.
//!
//! A follower that never comes, dies or hangs does not stall the night: the leader runs a
//! shard itself when nobody started it within `--shard-wait`, or its runner's heartbeat has
//! not moved for that long (read on the leader's clock: runners' clocks may differ). The
//! trials the lost runner finished are in the shared cache and are not run again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::run::{RunContext, RunEvent, RunOptions, parse_relative};
use crate::evals::case::Case;
use crate::exit::hinted;
use crate::gate::engine::GateConfig;
use crate::gate::merge::{ShardReport, Sources};
use crate::gate::partition::Partition;
use crate::gate::session::{self, GateOptions, GateReport};
use crate::harness::manifest::Manifest;
use crate::harness::patch::Patch;
use crate::harness::{patch, workspace};
use crate::mine::emit::CaseFile;
use crate::store::Store;
use crate::store::runs::RunStatus;
use crate::store::shards::ShardStart;
use crate::trial::{Runner, Trial, Version};

/// How often runners look at the store while they wait.
const POLL: Duration = Duration::from_millis(300);

/// Work the leader asks its followers for (`gate_requests.request`), with what they need to
/// rebuild the leader's baseline without its checkout.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardRequest {
    pub harness: String,
    /// The harness as the run found it in the leader's checkout: a follower's must match.
    pub root_hash: String,
    /// The patches this run accepted so far, in order: the baseline is the root plus these.
    pub accepted: Vec<String>,
    /// The cases as the run sees them (statuses this run changed, clusters resolved), so a
    /// follower needs neither the cases the run's own mine wrote nor its status changes.
    pub cases: Vec<RequestCase>,
    pub work: Work,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// A shard of the gate of `candidate`; the leader merges.
    Gate { candidate: String, gate: GateConfig, target: Option<String>, cost_tolerance: f64 },
    /// A share of the knob screening's trials (seeds `0..seeds` of every case on the baseline
    /// and on each candidate), recorded for the leader, whose own screening then finds them in
    /// the cache: it decides nothing here, so nothing needs merging.
    Screen { candidates: Vec<String>, seeds: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestCase {
    pub path: PathBuf,
    pub file: CaseFile,
}

/// What a follower did (`autoharness.run-shard/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct FollowSummary {
    pub schema: &'static str,
    pub run_id: String,
    pub harness: String,
    pub partition: String,
    /// One per gate of the run whose shard this runner ran.
    pub gates: Vec<ShardReport>,
    /// Knob screenings of the run this runner ran a share of, and the trials that took.
    pub screenings: u32,
    pub screening_trials: u32,
    /// Every trial this runner ran or found cached, gates and screenings.
    pub trials: u32,
    pub wall_ms: u64,
}

/// The leading runner of a partitioned run, for its gates.
pub(super) struct Leader<'a> {
    pub ctx: &'a RunContext<'a>,
    pub run_id: &'a str,
    /// The harness as the run found it (`GateRequest::root_hash`).
    pub root_hash: &'a str,
    pub opts: &'a RunOptions,
    pub partition: Partition,
}

impl Leader<'_> {
    /// The gate of one candidate over N shards: request, own shard, wait (taking over what
    /// is lost), merge. The request is closed whatever happens.
    pub async fn gate(
        &self,
        base: &Manifest,
        diff: &str,
        parsed: &Patch,
        cases: &[Case],
        runner: &Runner,
        gate_opts: &GateOptions,
    ) -> anyhow::Result<GateReport> {
        let store = self.ctx.store;
        let work = Work::Gate {
            candidate: diff.to_string(),
            gate: gate_opts.cfg.clone(),
            target: gate_opts.target.clone(),
            cost_tolerance: gate_opts.cost_tolerance,
        };
        let patch_hash = blake3::hash(diff.as_bytes()).to_hex().to_string();
        let total = self.partition.total;
        let id = self.publish(base, cases, work, &patch_hash).await?;
        let wait = self.opts.shard_wait();
        let shard = |index: u32| {
            let p = Partition { index, total };
            run_shard(store, runner, base, parsed, cases, gate_opts, p, id, &patch_hash, beat_every(wait))
        };
        let decided = async {
            shard(self.partition.index).await?;
            await_shards(self.ctx, id, self.partition, wait, shard).await?;
            let sources = Sources {
                patch_hash: patch_hash.clone(),
                stores: vec![(format!("the store `{}`", store.describe()), Arc::new(store.clone()))],
            };
            let merge_opts = GateOptions { merge: Some(Arc::new(sources)), partition: None, ..gate_opts.clone() };
            session::run(base, parsed, cases, runner, &merge_opts, &()).await
        }
        .await;
        store.close_gate_request(id).await?;
        decided
    }

    /// Spread the knob screening's trials of `candidates` (and of the baseline) on `cases`
    /// over the runners; the leader's screening that follows finds them in the cache.
    pub async fn screen(
        &self,
        base: &Manifest,
        candidates: Vec<String>,
        cases: &[Case],
        seeds: u64,
        runner: &Runner,
    ) -> anyhow::Result<()> {
        if cases.is_empty() {
            return Ok(());
        }
        let key = blake3::hash(format!("screen\0{}", candidates.join("\0")).as_bytes()).to_hex().to_string();
        let work = Work::Screen { candidates: candidates.clone(), seeds };
        let id = self.publish(base, cases, work, &key).await?;
        let wait = self.opts.shard_wait();
        let total = self.partition.total;
        let dir = self.ctx.state_dir.join("runs").join(self.run_id).join(format!("screen-{id}"));
        let shard = |index: u32| {
            let p = Partition { index, total };
            screen_shard(self.ctx.store, runner, base, &candidates, cases, seeds, p, id, &key, beat_every(wait), &dir)
        };
        let done = async {
            shard(self.partition.index).await?;
            await_shards(self.ctx, id, self.partition, wait, shard).await
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        self.ctx.store.close_gate_request(id).await?;
        done
    }

    /// Write a request for the followers; its id.
    async fn publish(&self, base: &Manifest, cases: &[Case], work: Work, key: &str) -> anyhow::Result<i64> {
        let store = self.ctx.store;
        let accepted: Vec<String> =
            store.proposals_of_run(self.run_id).await?.into_iter().filter(|p| p.accepted).map(|p| p.diff).collect();
        let request = ShardRequest {
            harness: base.name.clone(),
            root_hash: self.root_hash.to_string(),
            accepted,
            cases: cases.iter().map(|c| RequestCase { path: c.path.clone(), file: c.file.clone() }).collect(),
            work,
        };
        let json = serde_json::to_string(&request)?;
        store.open_gate_request(self.run_id, &base.name, key, self.partition.total, &json).await
    }
}

/// Wait until every other shard of request `id` is done, running the lost ones here.
async fn await_shards<'a, T, F, Fut>(
    ctx: &RunContext<'_>,
    id: i64,
    partition: Partition,
    wait: Duration,
    take_over: F,
) -> anyhow::Result<()>
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + 'a,
{
    let asked = Instant::now();
    // Each shard's last heartbeat as read, and when (on our clock) it last moved.
    let mut seen: HashMap<u32, (String, Instant)> = HashMap::new();
    loop {
        let rows = ctx.store.request_shards(id).await?;
        let mut waiting = false;
        let mut lost = None;
        for k in (1..=partition.total).filter(|k| *k != partition.index) {
            let of_k: Vec<_> = rows.iter().filter(|r| r.partition_index == k as i64).collect();
            if of_k.iter().any(|r| r.state == "done") {
                continue;
            }
            let beat = of_k
                .iter()
                .filter(|r| r.state == "running")
                .filter_map(|r| r.heartbeat_at.clone().or_else(|| Some(r.started_at.clone())))
                .max();
            let started = beat.is_some();
            let alive = match beat {
                Some(b) => {
                    let entry = seen.entry(k).or_insert_with(|| (b.clone(), Instant::now()));
                    if entry.0 != b {
                        *entry = (b, Instant::now());
                    }
                    entry.1.elapsed() < wait
                }
                None => asked.elapsed() < wait,
            };
            if alive {
                waiting = true;
            } else {
                lost = Some((k, started));
                break;
            }
        }
        if let Some((k, started)) = lost {
            let why = if started {
                format!("its runner has not reported for {}", show(wait))
            } else {
                format!("no runner started it within {}", show(wait))
            };
            (ctx.emit)(RunEvent::ShardTakenOver { partition: format!("{k}/{}", partition.total), why });
            take_over(k).await?;
            seen.remove(&k);
            continue;
        }
        if !waiting {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One shard of a request, recorded as `gate --partition` records it, beating while it runs.
#[allow(clippy::too_many_arguments)]
async fn run_shard(
    store: &Store,
    runner: &Runner,
    base: &Manifest,
    parsed: &Patch,
    cases: &[Case],
    gate_opts: &GateOptions,
    partition: Partition,
    request: i64,
    patch_hash: &str,
    beat: Duration,
) -> anyhow::Result<GateReport> {
    let start = ShardStart {
        harness: &base.name,
        patch_hash,
        partition,
        trials_k: gate_opts.cfg.k,
        target: gate_opts.target.as_deref(),
        request: Some(request),
    };
    let id = store.start_shard(&start).await?;
    let opts = GateOptions {
        partition: Some(partition),
        merge: None,
        work_dir: gate_opts.work_dir.join(format!("shard-{}", partition.index)),
        ..gate_opts.clone()
    };
    let report = beating(store, id, beat, session::run(base, parsed, cases, runner, &opts, &())).await?;
    let _ = std::fs::remove_dir_all(&opts.work_dir);
    store.finish_shard(id, &report).await?;
    Ok(report)
}

/// `work`, with shard `id`'s heartbeat written every `beat` while it runs.
async fn beating<T>(
    store: &Store,
    id: i64,
    beat: Duration,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = tokio::time::sleep(beat) => store.shard_heartbeat(id).await?,
        }
    }
}

/// One runner's share of a knob screening: for the baseline and each candidate, the trials
/// of the (candidate, case) pairs that hash to this shard. Returns the trials run.
#[allow(clippy::too_many_arguments)]
async fn screen_shard(
    store: &Store,
    runner: &Runner,
    base: &Manifest,
    candidates: &[String],
    cases: &[Case],
    seeds: u64,
    partition: Partition,
    request: i64,
    key: &str,
    beat: Duration,
    dir: &Path,
) -> anyhow::Result<u32> {
    let start = ShardStart {
        harness: &base.name,
        patch_hash: key,
        partition,
        trials_k: seeds as u32,
        target: None,
        request: Some(request),
    };
    let id = store.start_shard(&start).await?;
    let work = async {
        let mut ran = 0u32;
        let baseline = Version::new(base.clone(), base.root.clone())?;
        let all = std::iter::once(None).chain(candidates.iter().map(Some));
        for (i, diff) in all.enumerate() {
            let mine: Vec<Trial> = (0..cases.len())
                .filter(|&c| Partition::shard_of(&format!("{i}:{}", cases[c].id()), partition.total) == partition.index)
                .flat_map(|c| (0..seeds).map(move |seed| Trial { case: c, seed }))
                .collect();
            if mine.is_empty() {
                continue;
            }
            let version = match diff {
                None => baseline.clone(),
                Some(diff) => {
                    let root = dir.join(format!("shard-{}", partition.index)).join(i.to_string());
                    if root.exists() {
                        std::fs::remove_dir_all(&root)?;
                    }
                    workspace::private_copy(&base.root, &root, &base.filter)?;
                    patch::apply(&parse_relative(diff)?, &root)?;
                    let mut m = base.clone();
                    m.root = root.clone();
                    Version::new(m, root)?
                }
            };
            ran += runner.run(&version, cases, &mine, &|_| {}).await?.len() as u32;
            if diff.is_some() {
                let _ = std::fs::remove_dir_all(&version.root);
            }
        }
        anyhow::Ok(ran)
    };
    let ran = beating(store, id, beat, work).await?;
    store.finish_shard_trials(id, ran).await?;
    Ok(ran)
}

/// Heartbeats come several times per `--shard-wait`, so one late beat is not a lost runner.
fn beat_every(wait: Duration) -> Duration {
    (wait / 4).clamp(Duration::from_millis(200), Duration::from_secs(15))
}

fn show(d: Duration) -> String {
    if d.as_secs() >= 60 && d.as_secs() % 60 == 0 {
        format!("{}m", d.as_secs() / 60)
    } else {
        format!("{:.0}s", d.as_secs_f64())
    }
}

/// A follower (`run --partition K/N`, K > 1): run shard K of every gate the leading runner
/// of this harness asks for, until its run ends.
pub async fn follow(
    ctx: &RunContext<'_>,
    db: &Path,
    manifest: &Manifest,
    partition: Partition,
    wait: Duration,
) -> anyhow::Result<FollowSummary> {
    let started = Instant::now();
    let store = ctx.store;
    let root_hash = workspace::content_hash(&manifest.root, &manifest.filter)?;
    let mut runner = Runner::new(Some(Arc::new(store.clone())), ctx.jobs, ctx.trials_dir.to_path_buf());
    let mut summary = FollowSummary {
        schema: crate::schema::RUN_SHARD,
        run_id: String::new(),
        harness: manifest.name.clone(),
        partition: partition.to_string(),
        gates: Vec::new(),
        screenings: 0,
        screening_trials: 0,
        trials: 0,
        wall_ms: 0,
    };
    let mut done: HashSet<i64> = HashSet::new();
    let mut looked_for_leader = Instant::now();
    let mut run: Option<(String, RunOptions)> = None;
    loop {
        // The newest unfinished run led over this many shards; a newer one replaces it.
        if let Some((id, opts)) = leading_run(store, &manifest.name, partition.total).await? {
            if run.as_ref().is_none_or(|(r, _)| *r != id) {
                runner.use_cache = !opts.no_cache;
                runner.run_id = Some(id.clone());
                summary.run_id = id.clone();
                run = Some((id, opts));
            }
        }
        let Some((run_id, opts)) = &run else {
            if started.elapsed() >= wait {
                return Err(hinted(
                    format!(
                        "no run of `{}` led by shard 1/{} appeared in the store `{}` within {}",
                        manifest.name,
                        partition.total,
                        store.describe(),
                        show(wait)
                    ),
                    format!(
                        "start `autoharness run --partition 1/{}` on the same store (--db), or wait longer with --shard-wait",
                        partition.total
                    ),
                ));
            }
            tokio::time::sleep(POLL).await;
            continue;
        };
        let mut worked = false;
        for req in store.open_gate_requests(run_id).await? {
            if !done.insert(req.id) || req.partition_total != i64::from(partition.total) {
                continue;
            }
            let shards = store.request_shards(req.id).await?;
            if shards.iter().any(|s| s.partition_index == i64::from(partition.index) && s.state == "done") {
                continue;
            }
            let request: ShardRequest = serde_json::from_str(&req.request)
                .map_err(|e| anyhow::anyhow!("gate request {} of run {run_id} is unreadable: {e}", req.id))?;
            if request.root_hash != root_hash {
                return Err(hinted(
                    format!(
                        "the harness `{}` in this checkout (content {}) is not the one the leading runner started from ({})",
                        manifest.name,
                        &root_hash[..12],
                        &request.root_hash[..12.min(request.root_hash.len())]
                    ),
                    "check out the same commit on every runner of a partitioned run",
                ));
            }
            let work = ctx.state_dir.join("runs").join(run_id).join(format!("shard-{}-{}", partition.index, req.id));
            let done =
                shard_of_request(ctx, manifest, &request, partition, req.id, &req.patch_hash, &runner, opts, &work)
                    .await;
            let _ = std::fs::remove_dir_all(&work);
            match done? {
                Done::Gate(report) => {
                    summary.trials += report.trials.baseline + report.trials.candidate;
                    summary.gates.push(ShardReport::of(&report, partition));
                }
                Done::Screen(trials) => {
                    summary.screenings += 1;
                    summary.screening_trials += trials;
                    summary.trials += trials;
                }
            }
            worked = true;
        }
        if !worked {
            let status = store.run_by_id(run_id).await?.map(|r| r.status);
            if status != Some(RunStatus::Running) {
                summary.wall_ms = started.elapsed().as_millis() as u64;
                return Ok(summary);
            }
            // A leader killed outright leaves its run "running" for ever; its run lock is
            // released with the process (or its connection), and nobody else holds it.
            if looked_for_leader.elapsed() >= LEADER_CHECK {
                looked_for_leader = Instant::now();
                let gone = leader_gone(store, db).await;
                let still = store.run_by_id(run_id).await?.map(|r| r.status);
                if gone && still == Some(RunStatus::Running) {
                    return Err(hinted(
                        format!(
                            "the leading runner of run {run_id} stopped without finishing it (nothing holds its run lock)"
                        ),
                        format!(
                            "continue it with `autoharness run --resume --partition 1/{}`; this runner can follow it again",
                            partition.total
                        ),
                    ));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// How often an idle follower checks that the leader is still there.
const LEADER_CHECK: Duration = Duration::from_secs(5);

/// Whether no process holds the store's run lock, which a leading `run` holds for its life.
/// Taking it to see is released at once.
async fn leader_gone(store: &Store, db: &Path) -> bool {
    if store.dialect() == crate::store::Dialect::Postgres {
        return store.run_lock().await.is_ok();
    }
    let path = crate::lockfile::beside_store(db, ".run.lock");
    matches!(crate::lockfile::try_lock(&path), Ok(Ok(_)))
}

/// The newest unfinished run of `harness` whose options say it is led over `total` shards.
async fn leading_run(store: &Store, harness: &str, total: u32) -> anyhow::Result<Option<(String, RunOptions)>> {
    let Some(r) = store.latest_run(harness, true).await? else { return Ok(None) };
    let Ok(opts) = serde_json::from_str::<RunOptions>(&r.options) else { return Ok(None) };
    Ok(opts.partition.filter(|p| p.total == total).map(|_| (r.id, opts)))
}

/// What a follower did for one request.
enum Done {
    Gate(Box<GateReport>),
    Screen(u32),
}

/// Rebuild the leader's baseline in `work` and run this runner's share of the request.
#[allow(clippy::too_many_arguments)]
async fn shard_of_request(
    ctx: &RunContext<'_>,
    manifest: &Manifest,
    request: &ShardRequest,
    partition: Partition,
    id: i64,
    key: &str,
    runner: &Runner,
    opts: &RunOptions,
    work: &Path,
) -> anyhow::Result<Done> {
    let base_root = work.join("baseline");
    if base_root.exists() {
        std::fs::remove_dir_all(&base_root)?;
    }
    workspace::private_copy(&manifest.root, &base_root, &manifest.filter)?;
    for (i, diff) in request.accepted.iter().enumerate() {
        patch::apply(&parse_relative(diff)?, &base_root)
            .map_err(|e| anyhow::anyhow!("the run's accepted patch {} does not apply here: {e}", i + 1))?;
    }
    let mut base = manifest.clone();
    base.root = base_root;
    let cases = request
        .cases
        .iter()
        .map(|c| Case::from_file(c.file.clone(), c.path.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("a case of request {id} is invalid: {e}"))?;
    let beat = beat_every(opts.shard_wait());
    match &request.work {
        Work::Gate { candidate, gate, target, cost_tolerance } => {
            let parsed = session::prepare_patch(candidate, &base, ctx.project_root)?;
            let gate_opts = GateOptions {
                cfg: gate.clone(),
                target: target.clone(),
                cost_tolerance: *cost_tolerance,
                work_dir: work.join("gate"),
                partition: None,
                merge: None,
            };
            let report =
                run_shard(ctx.store, runner, &base, &parsed, &cases, &gate_opts, partition, id, key, beat).await?;
            Ok(Done::Gate(Box::new(report)))
        }
        Work::Screen { candidates, seeds } => {
            let ran =
                screen_shard(ctx.store, runner, &base, candidates, &cases, *seeds, partition, id, key, beat, work)
                    .await?;
            Ok(Done::Screen(ran))
        }
    }
}
