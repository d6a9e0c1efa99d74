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
use crate::trial::Runner;

/// How often runners look at the store while they wait.
const POLL: Duration = Duration::from_millis(300);

/// A gate of the leader's, as its followers need it (`gate_requests.request`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateRequest {
    pub harness: String,
    /// The harness as the run found it in the leader's checkout: a follower's must match.
    pub root_hash: String,
    /// The patches this run accepted so far, in order: the baseline is the root plus these.
    pub accepted: Vec<String>,
    pub candidate: String,
    /// The suite as the run sees it (statuses this run changed, clusters resolved), so a
    /// follower needs neither the cases the run's own mine wrote nor its status changes.
    pub cases: Vec<RequestCase>,
    pub gate: GateConfig,
    pub target: Option<String>,
    pub cost_tolerance: f64,
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
        let accepted: Vec<String> =
            store.proposals_of_run(self.run_id).await?.into_iter().filter(|p| p.accepted).map(|p| p.diff).collect();
        let request = GateRequest {
            harness: base.name.clone(),
            root_hash: self.root_hash.to_string(),
            accepted,
            candidate: diff.to_string(),
            cases: cases.iter().map(|c| RequestCase { path: c.path.clone(), file: c.file.clone() }).collect(),
            gate: gate_opts.cfg.clone(),
            target: gate_opts.target.clone(),
            cost_tolerance: gate_opts.cost_tolerance,
        };
        let patch_hash = blake3::hash(diff.as_bytes()).to_hex().to_string();
        let total = self.partition.total;
        let json = serde_json::to_string(&request)?;
        let id = store.open_gate_request(self.run_id, &base.name, &patch_hash, total, &json).await?;
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
}

/// Wait until every other shard of request `id` is done, running the lost ones here.
async fn await_shards<'a, F, Fut>(
    ctx: &RunContext<'_>,
    id: i64,
    partition: Partition,
    wait: Duration,
    take_over: F,
) -> anyhow::Result<()>
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = anyhow::Result<GateReport>> + 'a,
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
    let gate = session::run(base, parsed, cases, runner, &opts, &());
    tokio::pin!(gate);
    let report = loop {
        tokio::select! {
            r = &mut gate => break r?,
            _ = tokio::time::sleep(beat) => store.shard_heartbeat(id).await?,
        }
    };
    let _ = std::fs::remove_dir_all(&opts.work_dir);
    store.finish_shard(id, &report).await?;
    Ok(report)
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
        trials: 0,
        wall_ms: 0,
    };
    let mut done: HashSet<i64> = HashSet::new();
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
            let request: GateRequest = serde_json::from_str(&req.request)
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
            let report =
                shard_of_request(ctx, manifest, &request, partition, req.id, &req.patch_hash, &runner, opts, &work)
                    .await;
            let _ = std::fs::remove_dir_all(&work);
            let report = report?;
            summary.trials += report.trials.baseline + report.trials.candidate;
            summary.gates.push(ShardReport::of(&report, partition));
            worked = true;
        }
        if !worked {
            let status = store.run_by_id(run_id).await?.map(|r| r.status);
            if status != Some(RunStatus::Running) {
                summary.wall_ms = started.elapsed().as_millis() as u64;
                return Ok(summary);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The newest unfinished run of `harness` whose options say it is led over `total` shards.
async fn leading_run(store: &Store, harness: &str, total: u32) -> anyhow::Result<Option<(String, RunOptions)>> {
    let Some(r) = store.latest_run(harness, true).await? else { return Ok(None) };
    let Ok(opts) = serde_json::from_str::<RunOptions>(&r.options) else { return Ok(None) };
    Ok(opts.partition.filter(|p| p.total == total).map(|_| (r.id, opts)))
}

/// Rebuild the leader's baseline in `work` and run this runner's shard of the request.
#[allow(clippy::too_many_arguments)]
async fn shard_of_request(
    ctx: &RunContext<'_>,
    manifest: &Manifest,
    request: &GateRequest,
    partition: Partition,
    id: i64,
    patch_hash: &str,
    runner: &Runner,
    opts: &RunOptions,
    work: &Path,
) -> anyhow::Result<GateReport> {
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
        .map_err(|e| anyhow::anyhow!("a case of gate request {id} is invalid: {e}"))?;
    let parsed = session::prepare_patch(&request.candidate, &base, ctx.project_root)?;
    let gate_opts = GateOptions {
        cfg: request.gate.clone(),
        target: request.target.clone(),
        cost_tolerance: request.cost_tolerance,
        work_dir: work.join("gate"),
        partition: None,
        merge: None,
    };
    run_shard(
        ctx.store,
        runner,
        &base,
        &parsed,
        &cases,
        &gate_opts,
        partition,
        id,
        patch_hash,
        beat_every(opts.shard_wait()),
    )
    .await
}
