//! Running trials: one case on one harness version with one seed, in a private copy of
//! the harness, through the sandbox, judged by the case's checks, recorded in a
//! [`TrialLog`] (the store) and cached by (harness hash, case hash, seed, environment fingerprint).
//!
//! The trial protocol (DESIGN.md): cwd is a private copy of the harness root;
//! `AUTOHARNESS_CASE`, `AUTOHARNESS_INPUT`, `AUTOHARNESS_SEED`, `AUTOHARNESS_TRIAL`,
//! `AUTOHARNESS_TRACE_OUT`, `AUTOHARNESS_RESULT`; stdout is the output; a non-zero exit,
//! a timeout or a kill is a failed trial with that reason.
//!
//! Batch harnesses (`batch = "..."`, the auto-harness style) get every case at once in
//! `AUTOHARNESS_CASES` and print `{case_id: reward}`; a case passes when its reward is
//! at least 1 (or `true`).
//!
//! Trials of a case use seeds 0, 1, 2…: the same seed on baseline and candidate pairs
//! them, and distinct seeds keep the cache from turning k trials into one.

pub mod summary;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::evals::case::Case;
use crate::evals::checks::{self, CheckOutcome, ResultFile, TrialView};
use crate::harness::hostenv::{self, HostEnv};
use crate::harness::manifest::Manifest;
use crate::harness::{base, workspace};
use crate::sandbox::{self, ExitStatus, IsolationChoice, Spec};

/// Bytes of stdout kept in a trial record (checks see all of what the sandbox kept).
const OUTPUT_KEPT: usize = 4000;
const STDERR_KEPT: usize = 2000;

/// A harness version ready for trials: its manifest and the tree trials copy from.
#[derive(Debug, Clone)]
pub struct Version {
    pub manifest: Manifest,
    /// The root trials copy from: the user's tree for the baseline, a patched private copy
    /// for a candidate. Never written by a trial.
    pub root: PathBuf,
    /// Content hash of `root`.
    pub hash: String,
    /// What trials may read of the host (virtualenvs, interpreters, `read`): not hashed,
    /// part of the environment fingerprint instead.
    pub host: HostEnv,
}

impl Version {
    pub fn new(manifest: Manifest, root: PathBuf) -> anyhow::Result<Version> {
        let hash = workspace::content_hash(&root, &manifest.filter)?;
        let host = hostenv::detect(&manifest, &root);
        Ok(Version { manifest, root, hash, host })
    }
}

/// One trial to run: a case (index into the cases given) and a seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trial {
    pub case: usize,
    pub seed: u64,
}

crate::schema::text_enum! {
    /// How a trial's process ended, as recorded (the sandbox's `ExitStatus` without its
    /// details).
    pub enum TrialStatus ("trial status") {
        Exited = "exited",
        Signaled = "signaled",
        TimedOut = "timed_out",
        KilledForLimit = "killed_for_limit",
        FailedToStart = "failed_to_start",
    }
}

/// How one trial went, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrialRecord {
    pub harness: String,
    pub harness_hash: String,
    pub case_id: String,
    pub case_hash: String,
    pub seed: u64,
    #[serde(skip)]
    pub env_fp: String,
    pub passed: bool,
    pub status: TrialStatus,
    pub exit_code: Option<i32>,
    /// Why it failed, one line for people.
    pub reason: Option<String>,
    /// The failure's signature: the mining signature of the trial's own trace when it
    /// failed, else `exit|<reason template>` for a failure the trace does not show.
    pub signature: Option<String>,
    pub checks: Vec<CheckOutcome>,
    pub duration_ms: u64,
    pub tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub output: String,
    pub stderr_tail: String,
    pub trace_path: Option<String>,
    /// JSON of the isolation in effect.
    pub isolation: String,
    /// Taken from the cache, not run now.
    pub cached: bool,
    /// Why this trial says nothing about the harness (the model API or the network failed,
    /// the harness could not start). Such a trial is retried, never cached, never a verdict.
    #[serde(skip)]
    pub infra: Option<String>,
}

/// Trials that kept failing for infrastructure reasons after their retries: no verdict can
/// rest on them (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct InfraFailure {
    pub message: String,
    pub trials: u32,
}

impl TrialRecord {
    /// Secrets out of everything a trial printed or was judged by, before it is stored or
    /// shown: the values of the environment variables passed through to it, then the
    /// well-known formats (`redact`).
    pub fn redact(&mut self, env: &[(String, String)]) -> crate::redact::Redactions {
        use crate::redact::{Redactor, global};
        let mut counts = crate::redact::Redactions::default();
        let mut scrub = |s: &mut String| {
            *s = Redactor::env_values(s, env, &mut counts);
            global().string(s, &mut counts);
        };
        scrub(&mut self.output);
        scrub(&mut self.stderr_tail);
        for s in self.reason.iter_mut().chain(self.signature.iter_mut()) {
            scrub(s);
        }
        for c in &mut self.checks {
            scrub(&mut c.detail);
        }
        counts
    }
}

/// A boxed future: [`TrialLog`] is used as a trait object.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Where trials are cached and recorded: the store implements it (`store::trials`); the
/// runner knows only this, so the trial stage does not depend on the store.
pub trait TrialLog: Send + Sync {
    /// The recorded trial of this harness version, case, seed and environment, if any.
    fn cached<'a>(
        &'a self,
        version: &'a str,
        case: &'a str,
        seed: u64,
        env: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<TrialRecord>>>;
    /// Record a finished trial, adding its cost to `run_id`'s spend in the same write.
    fn record<'a>(&'a self, rec: &'a TrialRecord, run_id: Option<&'a str>) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Every recorded trial of this harness version and environment for these case hashes:
    /// the cache lookups of many trials at once.
    fn cached_many<'a>(
        &'a self,
        version: &'a str,
        env: &'a str,
        case_hashes: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<TrialRecord>>>;
    /// Each case's share of failed trials among its last [`HISTORY_TRIALS`], any harness
    /// version (a gate runs the cases that failed most first).
    fn fail_rates<'a>(&'a self, case_ids: &'a [String]) -> BoxFuture<'a, anyhow::Result<HashMap<String, f64>>>;
}

/// A recorded trial worth reusing: a store written before infrastructure failures were
/// told apart may hold one, which says nothing about the harness.
fn reusable_record(r: &TrialRecord) -> bool {
    r.passed || infra_reason(&status_of(r), &r.stderr_tail, &r.output, None).is_none()
}

/// How many of a case's most recent trials its past failure rate is read from.
pub const HISTORY_TRIALS: i64 = 200;

/// Runs trials in parallel and records them.
#[derive(Clone)]
pub struct Runner {
    pub store: Option<Arc<dyn TrialLog>>,
    pub jobs: usize,
    pub use_cache: bool,
    /// Extra attempts of a trial that failed for infrastructure reasons (2).
    pub infra_retries: u32,
    /// First wait before such a retry; doubled each time (`AUTOHARNESS_RETRY_BACKOFF_MS`, 2000).
    pub infra_backoff: std::time::Duration,
    /// Where trial folders (inputs, traces, results) are kept.
    pub trials_dir: PathBuf,
    /// Where the shared copy of each harness version is kept (`harness::base`).
    pub roots_dir: PathBuf,
    pub isolation: IsolationChoice,
    /// The `run` whose spend each trial's cost is added to when it is recorded.
    pub run_id: Option<String>,
}

/// `AUTOHARNESS_ISOLATION`: an operator on a host whose bubblewrap misbehaves, or a test of
/// the cleanup paths hosts without it take, picks the mechanism. Anything else is `auto`,
/// the strongest this host offers, so a typo never weakens isolation.
fn isolation_from_env() -> IsolationChoice {
    match std::env::var("AUTOHARNESS_ISOLATION").as_deref() {
        Ok("bwrap") => IsolationChoice::Bwrap,
        Ok("landlock") => IsolationChoice::Landlock,
        Ok("none") => IsolationChoice::None,
        Ok("auto") | Err(_) => IsolationChoice::Auto,
        Ok(other) => {
            tracing::warn!(value = other, "AUTOHARNESS_ISOLATION is not auto, bwrap, landlock or none; using auto");
            IsolationChoice::Auto
        }
    }
}

impl Runner {
    pub fn new(store: Option<Arc<dyn TrialLog>>, jobs: usize, trials_dir: PathBuf) -> Runner {
        // Trials run in other folders: a relative path (a relative --db) would not reach
        // their inputs, and the failures that made were cached as the harness's own.
        let trials_dir = std::path::absolute(&trials_dir).unwrap_or(trials_dir);
        let backoff_ms =
            std::env::var("AUTOHARNESS_RETRY_BACKOFF_MS").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(2000);
        Runner {
            store,
            jobs: jobs.max(1),
            use_cache: true,
            infra_retries: 2,
            infra_backoff: std::time::Duration::from_millis(backoff_ms.min(60_000)),
            roots_dir: roots_for(&trials_dir),
            trials_dir,
            isolation: isolation_from_env(),
            run_id: None,
        }
    }

    /// Run `trials` of `cases` on `version`; `on_done` sees each record as it finishes.
    /// Results come back in the order of `trials`.
    pub async fn run(
        &self,
        version: &Version,
        cases: &[Case],
        trials: &[Trial],
        on_done: &(dyn Fn(&TrialRecord) + Sync),
    ) -> anyhow::Result<Vec<TrialRecord>> {
        let env_fp = env_fingerprint(&version.manifest, self.isolation, &version.host);
        let mut known = self.prefetch(version, cases, trials, &env_fp).await?;
        if version.manifest.run.is_none() {
            return self.run_batch(version, cases, trials, &env_fp, &mut known, on_done).await;
        }
        let semaphore = Arc::new(Semaphore::new(self.jobs));
        let shared = Arc::new((self.clone(), version.clone(), cases.to_vec(), env_fp));
        let mut set = tokio::task::JoinSet::new();
        let mut out: Vec<Option<TrialRecord>> = vec![None; trials.len()];
        for (i, &trial) in trials.iter().enumerate() {
            if let Some(rec) = known.remove(&(cases[trial.case].hash.clone(), trial.seed)) {
                on_done(&rec);
                out[i] = Some(rec);
                continue;
            }
            let shared = shared.clone();
            let semaphore = semaphore.clone();
            set.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let (runner, version, cases, env_fp) = &*shared;
                (i, runner.one(version, &cases[trial.case], trial.seed, env_fp).await)
            });
        }
        let mut first_error = None;
        let mut infra: Vec<String> = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (i, result) = joined.context("a trial task panicked")?;
            match result {
                Ok(rec) if rec.infra.is_some() => {
                    infra.push(format!("{} seed {}: {}", rec.case_id, rec.seed, rec.infra.unwrap_or_default()))
                }
                Ok(rec) => {
                    on_done(&rec);
                    out[i] = Some(rec);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if !infra.is_empty() {
            return Err(infra_failure(&infra, self.infra_retries, &version.manifest.name));
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// The recorded trials of `case` on `version` under today's environment, seeds `0..` as far
    /// as they run without a gap, at most `limit`: the history a gate may take as warm evidence
    /// instead of running the baseline again. Nothing when the cache is off or there is no store.
    pub async fn recorded(&self, version: &Version, case: &Case, limit: u64) -> anyhow::Result<Vec<TrialRecord>> {
        let env_fp = env_fingerprint(&version.manifest, self.isolation, &version.host);
        let mut out = Vec::new();
        for seed in 0..limit {
            match self.reusable(version, case, seed, &env_fp).await? {
                Some(rec) => out.push(rec),
                None => break,
            }
        }
        Ok(out)
    }

    /// The reusable cached records of these trials, by (case hash, seed), read in one query.
    /// A trial not found here is looked up again just before it would run: another runner
    /// sharing the store may have finished it meanwhile.
    async fn prefetch(
        &self,
        version: &Version,
        cases: &[Case],
        trials: &[Trial],
        env_fp: &str,
    ) -> anyhow::Result<HashMap<(String, u64), TrialRecord>> {
        let (Some(store), true) = (&self.store, self.use_cache) else { return Ok(HashMap::new()) };
        let mut hashes: Vec<String> = trials.iter().map(|t| cases[t.case].hash.clone()).collect();
        hashes.sort_unstable();
        hashes.dedup();
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        let wanted: std::collections::HashSet<(&str, u64)> =
            trials.iter().map(|t| (cases[t.case].hash.as_str(), t.seed)).collect();
        let mut out = HashMap::new();
        for rec in store.cached_many(&version.hash, env_fp, &hashes).await? {
            if wanted.contains(&(rec.case_hash.as_str(), rec.seed)) && reusable_record(&rec) {
                out.insert((rec.case_hash.clone(), rec.seed), rec);
            }
        }
        Ok(out)
    }

    /// The cached record of this trial, if the cache is on and holds one worth reusing.
    async fn reusable(
        &self,
        version: &Version,
        case: &Case,
        seed: u64,
        env_fp: &str,
    ) -> anyhow::Result<Option<TrialRecord>> {
        let (Some(store), true) = (&self.store, self.use_cache) else { return Ok(None) };
        let rec = store.cached(&version.hash, &case.hash, seed, env_fp).await?;
        Ok(rec.filter(reusable_record))
    }

    async fn one(&self, version: &Version, case: &Case, seed: u64, env_fp: &str) -> anyhow::Result<TrialRecord> {
        if let Some(rec) = self.reusable(version, case, seed, env_fp).await? {
            return Ok(rec);
        }
        let dir = self.trial_dir(version, case, seed)?;
        let mut attempt = 0u32;
        loop {
            let mut rec = run_one(version, case, seed, env_fp, &dir, &self.roots_dir, self.isolation).await?;
            rec.redact(&passed_env(&version.manifest));
            if rec.infra.is_none() {
                if let Some(store) = &self.store {
                    store.record(&rec, self.run_id.as_deref()).await?;
                }
                return Ok(rec);
            }
            if attempt >= self.infra_retries {
                return Ok(rec);
            }
            tracing::warn!(case = case.id(), seed, why = rec.infra.as_deref(), "infrastructure failure; retrying");
            tokio::time::sleep(self.infra_backoff.saturating_mul(1 << attempt.min(10))).await;
            attempt += 1;
        }
    }

    /// The folder of one trial (`io/` inside it is kept after the trial).
    pub fn trial_dir(&self, version: &Version, case: &Case, seed: u64) -> anyhow::Result<PathBuf> {
        // The case id comes from a file: it must name one folder inside the trials folder.
        let by_version = self.trials_dir.join(&version.hash[..12.min(version.hash.len())]);
        Ok(crate::paths::safe_name(&by_version, case.id())?.join(format!("seed-{seed}")))
    }

    async fn run_batch(
        &self,
        version: &Version,
        cases: &[Case],
        trials: &[Trial],
        env_fp: &str,
        known: &mut HashMap<(String, u64), TrialRecord>,
        on_done: &(dyn Fn(&TrialRecord) + Sync),
    ) -> anyhow::Result<Vec<TrialRecord>> {
        let mut out: Vec<Option<TrialRecord>> = vec![None; trials.len()];
        // One process per seed, with every case that needs that seed and is not cached.
        let mut seeds: Vec<u64> = trials.iter().map(|t| t.seed).collect();
        seeds.sort_unstable();
        seeds.dedup();
        for seed in seeds {
            let mut todo = Vec::new();
            for (i, t) in trials.iter().enumerate().filter(|(_, t)| t.seed == seed) {
                let case = &cases[t.case];
                let cached = match known.remove(&(case.hash.clone(), seed)) {
                    Some(rec) => Some(rec),
                    None => self.reusable(version, case, seed, env_fp).await?,
                };
                match cached {
                    Some(rec) => {
                        on_done(&rec);
                        out[i] = Some(rec);
                    }
                    None => todo.push((i, t.case)),
                }
            }
            if todo.is_empty() {
                continue;
            }
            let dir = self.trials_dir.join(&version.hash[..12.min(version.hash.len())]).join(format!("batch-{seed}"));
            let batch_cases: Vec<&Case> = todo.iter().map(|&(_, c)| &cases[c]).collect();
            let records =
                run_batch_once(version, &batch_cases, seed, env_fp, &dir, &self.roots_dir, self.isolation).await?;
            let env = passed_env(&version.manifest);
            for ((i, _), mut rec) in todo.into_iter().zip(records) {
                rec.redact(&env);
                if let Some(store) = &self.store {
                    store.record(&rec, self.run_id.as_deref()).await?;
                }
                on_done(&rec);
                out[i] = Some(rec);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

/// Run the manifest's `check` command (if any) in a private copy of the version:
/// `Ok(None)` when there is none, `Ok(Some(Err(why)))` when it failed.
pub async fn run_check(
    version: &Version,
    dir: &Path,
    isolation: IsolationChoice,
) -> anyhow::Result<Option<Result<(), String>>> {
    let Some(check) = version.manifest.check.clone() else { return Ok(None) };
    let tree = prepare(version, dir, &roots_for(dir), isolation).await?;
    let o = sandbox::run(&spec_for(version, &check, &tree, isolation)).await;
    let _ = tokio::task::spawn_blocking(move || tree.remove()).await;
    if o.status.success() {
        return Ok(Some(Ok(())));
    }
    let mut text = o.stderr.text();
    if text.trim().is_empty() {
        text = o.stdout.text();
    }
    let why = o.reason.clone().unwrap_or_else(|| status_line(&o.status));
    let text =
        crate::redact::Redactor::env_values(text.trim(), &passed_env(&version.manifest), &mut Default::default());
    let text = crate::redact::global().text(&text, &mut Default::default()).into_owned();
    Ok(Some(Err(format!("`{check}` failed ({why}): {}", tail(&text, 600)))))
}

/// What makes two trials of the same harness and case comparable: autoharness's version,
/// the command, limits, network, the passed-through variables (values hashed, never
/// stored), the isolation choice and the host environment (virtualenvs and their packages).
pub fn env_fingerprint(m: &Manifest, isolation: IsolationChoice, host: &HostEnv) -> String {
    let mut h = blake3::Hasher::new();
    h.update(host.fingerprint().as_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(format!("{:?}|{:?}|{:?}|{:?}|{:?}", m.run, m.batch, m.network, m.limits, isolation).as_bytes());
    for name in &m.env {
        h.update(name.as_bytes());
        h.update(b"=");
        h.update(blake3::hash(std::env::var(name).unwrap_or_default().as_bytes()).as_bytes());
    }
    h.update(std::env::consts::ARCH.as_bytes());
    h.finalize().to_hex()[..16].to_string()
}

/// The host variables a harness may see: its allowlist, when set on the host.
fn passed_env(m: &Manifest) -> Vec<(String, String)> {
    m.env.iter().filter_map(|n| std::env::var(n).ok().map(|v| (n.clone(), v))).collect()
}

fn spec_for(version: &Version, command: &str, tree: &TrialTree, isolation: IsolationChoice) -> Spec {
    let (work, io) = (&tree.work, &tree.io);
    let mut spec = Spec::new(command, work);
    spec.overlay = tree.view.overlay().cloned();
    spec.env = version.host.env.clone();
    spec.env.extend(passed_env(&version.manifest));
    spec.writable = vec![io.to_path_buf()];
    spec.readable = vec![io.to_path_buf()];
    spec.readable.extend(version.host.readable());
    spec.home_links = version.host.home_links.clone();
    spec.network = version.manifest.network;
    spec.limits = version.manifest.limits.clone();
    spec.isolation = isolation;
    spec
}

/// Where shared copies of harness versions go for trial folders under `trials`: beside a
/// store, `<store>.trials/roots/` (shared by every process on that store); else
/// `<trials>/roots/`.
fn roots_for(trials: &Path) -> PathBuf {
    trials
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".trials")))
        .unwrap_or(trials)
        .join("roots")
}

/// A trial folder: `io/` (inputs, trace, result; kept) and `work/` (the harness, private to
/// this trial; removed after it).
struct TrialTree {
    io: PathBuf,
    work: PathBuf,
    view: base::View,
}

impl TrialTree {
    fn remove(&self) {
        self.view.remove(&self.work);
    }
}

/// Fresh trial folder, its `work/` a private view of the version's shared copy.
fn prepare_dir(version: &Version, dir: &Path, roots: &Path, overlay: bool) -> anyhow::Result<TrialTree> {
    if dir.exists() {
        // An overlay's layers left by an interrupted trial: overlayfs makes `work/work` mode 000.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir.join("layer/work/work"), std::fs::Permissions::from_mode(0o700));
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear `{}`", dir.display()))?;
    }
    let io = dir.join("io");
    std::fs::create_dir_all(&io).with_context(|| format!("cannot create `{}`", io.display()))?;
    let shared = base::shared(&version.root, &version.manifest.filter, &version.hash, roots)?;
    let (work, view) = base::View::make(&shared, dir, overlay)?;
    Ok(TrialTree { io, work, view })
}

/// `prepare_dir` on a blocking thread: copying a harness tree must not stall the runtime.
async fn prepare(version: &Version, dir: &Path, roots: &Path, isolation: IsolationChoice) -> anyhow::Result<TrialTree> {
    let overlay = sandbox::overlay_usable(isolation).await;
    let version = version.clone();
    let dir = dir.to_path_buf();
    let roots = roots.to_path_buf();
    tokio::task::spawn_blocking(move || prepare_dir(&version, &dir, &roots, overlay)).await?
}

async fn run_one(
    version: &Version,
    case: &Case,
    seed: u64,
    env_fp: &str,
    dir: &Path,
    roots: &Path,
    isolation: IsolationChoice,
) -> anyhow::Result<TrialRecord> {
    let started = Instant::now();
    let m = &version.manifest;
    let tree = prepare(version, dir, roots, isolation).await?;
    let io = tree.io.clone();
    let input_path = io.join("input.json");
    let case_path = io.join("case.json");
    let trace_path = io.join("trace.json");
    let result_path = io.join("result.json");
    std::fs::write(&input_path, serde_json::to_vec_pretty(&case.file.input)?)?;
    std::fs::write(&case_path, serde_json::to_vec_pretty(&case.file)?)?;

    let command = m.run.as_deref().unwrap_or_default();
    let mut spec = spec_for(version, command, &tree, isolation);
    let trial_no = seed.to_string();
    for (k, v) in [
        ("AUTOHARNESS_CASE", case_path.display().to_string()),
        ("AUTOHARNESS_CASE_ID", case.id().to_string()),
        ("AUTOHARNESS_INPUT", input_path.display().to_string()),
        ("AUTOHARNESS_SEED", seed.to_string()),
        ("AUTOHARNESS_TRIAL", trial_no),
        ("AUTOHARNESS_TRACE_OUT", trace_path.display().to_string()),
        ("AUTOHARNESS_RESULT", result_path.display().to_string()),
    ] {
        spec.env.push((k.to_string(), v));
    }
    let outcome = sandbox::run(&spec).await;
    let output = outcome.stdout.text();

    let result: Option<ResultFile> = std::fs::read(&result_path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let (trace, trace_problem) = read_trial_trace(&trace_path);
    let exited_ok = outcome.status.success();
    // Analysed once: `not_signature` checks and the record's signature both read it.
    // Redacted like mined failures, so `not_signature` compares like with like.
    let failure = trace.as_ref().and_then(|t| crate::mine::failure::analyze(t, 0, false)).map(|mut f| {
        crate::mine::redact_failure(&mut f, &mut Default::default());
        f
    });
    let view = TrialView {
        output: &output,
        exited_ok,
        trace: trace.as_ref(),
        trace_problem: trace_problem.as_deref(),
        failure: failure.as_ref(),
        result: result.as_ref(),
    };
    let mut outcomes = Vec::new();
    for check in &case.checks {
        match checks::evaluate(check, &view) {
            Some(o) => outcomes.push(o),
            None => outcomes.push(run_command_check(version, check, &tree, &output, isolation).await?),
        }
    }
    if let Some(o) = checks::result_pass(&view) {
        outcomes.push(o);
    }
    let passed = exited_ok && outcomes.iter().all(|o| o.passed);
    let stderr = outcome.stderr.text();
    let reason = if !exited_ok {
        let why = outcome.reason.clone().unwrap_or_else(|| status_line(&outcome.status));
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).map(str::trim).unwrap_or("");
        Some(if last.is_empty() { why } else { format!("{why}: {}", crate::trace::json::clip(last, 200)) })
    } else {
        outcomes.iter().find(|o| !o.passed).map(|o| format!("{}: {}", o.kind, o.detail))
    };
    let signature = if passed {
        None
    } else {
        failure
            .as_ref()
            .map(|f| f.signature.canonical())
            .or_else(|| reason.as_deref().map(|r| format!("exit|{}", crate::mine::signature::template(r))))
    };
    let tokens = result.as_ref().and_then(|r| r.tokens).or_else(|| trace.as_ref().and_then(trace_tokens));
    let cost = result.as_ref().and_then(|r| r.cost_usd).or_else(|| trace.as_ref().and_then(|t| t.cost_usd));
    let (status, exit_code) = status_fields(&outcome.status);
    let infra = if passed { None } else { infra_reason(&outcome.status, &stderr, &output, failure.as_ref()) };
    // Kept beside the trace and result as evidence reports link to, secrets redacted (and
    // scrubbed again with the rest of the folder below).
    let env = passed_env(m);
    for (name, text) in [("stdout.txt", &output), ("stderr.txt", &stderr)] {
        let text = crate::redact::Redactor::env_values(text, &env, &mut Default::default());
        let text = crate::redact::global().text(&text, &mut Default::default()).into_owned();
        let _ = std::fs::write(io.join(name), text);
    }
    scrub_io(version, &io).await?;
    // The private view is no longer needed; the io folder (trace, result) is kept as evidence.
    let _ = tokio::task::spawn_blocking(move || tree.remove()).await;
    Ok(TrialRecord {
        harness: m.name.clone(),
        harness_hash: version.hash.clone(),
        case_id: case.id().to_string(),
        case_hash: case.hash.clone(),
        seed,
        env_fp: env_fp.to_string(),
        passed,
        status,
        exit_code,
        reason,
        signature,
        checks: outcomes,
        duration_ms: started.elapsed().as_millis() as u64,
        tokens,
        cost_usd: cost,
        output: crate::trace::json::clip(&output, OUTPUT_KEPT),
        stderr_tail: tail(&stderr, STDERR_KEPT),
        trace_path: trace_path.exists().then(|| trace_path.display().to_string()),
        isolation: serde_json::to_string(&outcome.isolation).unwrap_or_default(),
        cached: false,
        infra,
    })
}

/// Why a failed trial says nothing about the harness, if it does not: the harness could not
/// start (command or interpreter missing, not executable, a script path that does not
/// resolve), or its own trace or stderr shows the model API or the network failing (the
/// classifier mining uses).
fn infra_reason(
    status: &ExitStatus,
    stderr: &str,
    stdout: &str,
    failure: Option<&crate::mine::failure::Failure>,
) -> Option<String> {
    let last_line =
        |s: &str| s.lines().rev().find(|l| !l.trim().is_empty()).map(|l| crate::trace::json::clip(l.trim(), 200));
    match status {
        ExitStatus::FailedToStart { message } => return Some(format!("the harness could not start: {message}")),
        // The sandbox turns these into `FailedToStart` as trials run; a record from an older
        // store still says `exited`, so the same reading is applied to it here.
        ExitStatus::Exited { code } => {
            if let Some(why) = crate::sandbox::could_not_start(*code, stderr) {
                return Some(format!("the harness {why}"));
            }
            // The shell's "command not found" / "not executable", whatever its wording.
            if matches!(code, 126 | 127) {
                return Some(format!(
                    "the harness could not start: {}",
                    last_line(stderr).unwrap_or_else(|| "command not found".into())
                ));
            }
        }
        _ => {}
    }
    let last = last_line(stderr);
    if let Some(f) = failure
        && f.infra
    {
        return Some(format!("the model API or network failed: {}", crate::trace::json::clip(&f.message, 200)));
    }
    // The error a crashed harness ends its stderr with (a Python traceback's last line, a
    // Node error, a log line): judged alone, so an order number such as #W5002 elsewhere in
    // the log is not read as an HTTP 500.
    let exited_badly = !matches!(status, ExitStatus::Exited { code: 0 });
    let last = last.or_else(|| if stderr.trim().is_empty() { last_line(stdout) } else { None });
    if exited_badly && let Some(l) = last.filter(|l| is_api_failure(l)) {
        return Some(format!("the model API or network failed: {l}"));
    }
    None
}

/// A line that says a model API or the network failed: the exception classes of the common
/// clients (openai, anthropic, httpx, requests, urllib, aiohttp), an HTTP status of 429, 401
/// or 5xx named as such, and the phrases servers and proxies use.
pub fn is_api_failure(line: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = RE.get_or_init(|| {
        regex::Regex::new(
            r"(?ix)
            \b(ratelimiterror|apiconnectionerror|apitimeouterror|internalservererror|serviceunavailableerror
              |authenticationerror|overloadederror|apistatuserror|connecterror|connecttimeout|readtimeout
              |remoteprotocolerror|connectionrefusederror|connectionreseterror|clientconnectorerror
              |servertimeouterror|gatewaytimeout|maxretryerror)\b
            | (error\ code|status(_|\ )?code|status|http(/\d(\.\d)?)?)\s*[:=]?\s*(429|401|5\d\d)\b
            | \b(429|5\d\d)\s+(too\ many\ requests|internal\ server\ error|bad\ gateway|service\ unavailable|gateway\ time-?out)
            | connection\ (refused|reset|aborted|error)
            | too\ many\ requests | rate\ limit(ed)?\b | service\ unavailable | bad\ gateway | overloaded
            | request\ timed\ out | insufficient_quota | (invalid|incorrect)\ api\ key | urlopen\ error
            ",
        )
        .expect("a valid regex")
    });
    re.is_match(line)
}

fn infra_failure(lines: &[String], retries: u32, harness: &str) -> anyhow::Error {
    let n = lines.len();
    let shown: Vec<String> = lines.iter().take(5).map(|l| format!("  {l}")).collect();
    let more = if n > 5 { format!("\n  … and {} more", n - 5) } else { String::new() };
    let message = format!(
        "cannot decide: {n} trial(s) of `{harness}` failed for infrastructure reasons, {} times each:\n{}{more}",
        retries + 1,
        shown.join("\n")
    );
    crate::exit::hinted(
        InfraFailure { message, trials: u32::try_from(n).unwrap_or(u32::MAX) }.to_string(),
        "nothing was cached from these trials; check the model endpoint, API key and the harness's `run` command \
         (`autoharness doctor`), then run again: finished trials are reused",
    )
}

async fn run_command_check(
    version: &Version,
    check: &checks::Check,
    tree: &TrialTree,
    output: &str,
    isolation: IsolationChoice,
) -> anyhow::Result<CheckOutcome> {
    let io = &tree.io;
    let checks::Check::Command { run } = check else {
        return Ok(CheckOutcome { kind: check.kind().into(), passed: false, detail: "not a command check".into() });
    };
    let output_path = io.join("output.txt");
    std::fs::write(&output_path, output)?;
    let mut spec = spec_for(version, run, tree, isolation);
    spec.stdin = Some(output.as_bytes().to_vec());
    for (k, p) in [
        ("AUTOHARNESS_OUTPUT", output_path.clone()),
        ("AUTOHARNESS_TRACE", io.join("trace.json")),
        ("AUTOHARNESS_CASE", io.join("case.json")),
    ] {
        spec.env.push((k.to_string(), p.display().to_string()));
    }
    let o = sandbox::run(&spec).await;
    // The check has read the output; what stays on disk as evidence is scrubbed like the record.
    let mut kept = crate::redact::Redactor::env_values(output, &passed_env(&version.manifest), &mut Default::default());
    crate::redact::global().string(&mut kept, &mut Default::default());
    std::fs::write(&output_path, kept)?;
    let passed = o.status.success();
    let detail = if passed {
        format!("`{run}` exited 0")
    } else {
        let err = o.stderr.text();
        let last = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        format!("`{run}`: {} {}", o.reason.unwrap_or_else(|| status_line(&o.status)), last)
    };
    Ok(CheckOutcome { kind: "command".into(), passed, detail })
}

/// The trial's own trace: the failed one when the file holds several.
fn read_trial_trace(path: &Path) -> (Option<crate::trace::model::Trace>, Option<String>) {
    if !path.exists() {
        return (None, Some("the harness wrote no trace".into()));
    }
    let report = crate::trace::read_file(path, &path.display().to_string());
    if report.traces.is_empty() {
        let why = report.error.clone().unwrap_or(report.reason.clone());
        return (None, Some(format!("the trace it wrote could not be read: {why}")));
    }
    let mut traces = report.traces;
    let idx = traces.iter().position(|t| t.outcome.status == crate::trace::model::OutcomeStatus::Failed).unwrap_or(0);
    (Some(traces.swap_remove(idx)), None)
}

fn trace_tokens(t: &crate::trace::model::Trace) -> Option<u64> {
    let u = &t.usage;
    u.total_tokens.or(match (u.input_tokens, u.output_tokens) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    })
}

/// The exit status a stored record describes, as far as infrastructure checks need it.
fn status_of(rec: &TrialRecord) -> ExitStatus {
    match rec.status {
        TrialStatus::FailedToStart => ExitStatus::FailedToStart { message: rec.reason.clone().unwrap_or_default() },
        TrialStatus::TimedOut => ExitStatus::TimedOut,
        _ => ExitStatus::Exited { code: rec.exit_code.unwrap_or(1) },
    }
}

fn status_fields(s: &ExitStatus) -> (TrialStatus, Option<i32>) {
    match s {
        ExitStatus::Exited { code } => (TrialStatus::Exited, Some(*code)),
        ExitStatus::Signaled { .. } => (TrialStatus::Signaled, None),
        ExitStatus::TimedOut => (TrialStatus::TimedOut, None),
        ExitStatus::KilledForLimit { .. } => (TrialStatus::KilledForLimit, None),
        ExitStatus::FailedToStart { .. } => (TrialStatus::FailedToStart, None),
    }
}

fn status_line(s: &ExitStatus) -> String {
    match s {
        ExitStatus::Exited { code } => format!("exit code {code}"),
        ExitStatus::Signaled { name, .. } => format!("killed by {name}"),
        ExitStatus::TimedOut => "timed out".into(),
        ExitStatus::KilledForLimit { limit } => format!("killed for the {limit:?} limit"),
        ExitStatus::FailedToStart { message } => format!("failed to start: {message}"),
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// What a trial left in its `io/` folder (kept as evidence) scrubbed like its record
/// (`redact::scrub_dir`), once every check has read it.
async fn scrub_io(version: &Version, io: &Path) -> anyhow::Result<()> {
    let env = passed_env(&version.manifest);
    let io = io.to_path_buf();
    tokio::task::spawn_blocking(move || crate::redact::scrub_dir(&io, &env)).await??;
    Ok(())
}

async fn run_batch_once(
    version: &Version,
    cases: &[&Case],
    seed: u64,
    env_fp: &str,
    dir: &Path,
    roots: &Path,
    isolation: IsolationChoice,
) -> anyhow::Result<Vec<TrialRecord>> {
    let started = Instant::now();
    let tree = prepare(version, dir, roots, isolation).await?;
    let io = tree.io.clone();
    let mut listing = Vec::new();
    for c in cases {
        let input = io.join(format!("{}.input.json", c.id()));
        let case_path = io.join(format!("{}.case.json", c.id()));
        std::fs::write(&input, serde_json::to_vec_pretty(&c.file.input)?)?;
        std::fs::write(&case_path, serde_json::to_vec_pretty(&c.file)?)?;
        listing.push(serde_json::json!({"id": c.id(), "input": input, "case": case_path}));
    }
    let cases_path = io.join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec_pretty(&listing)?)?;
    let command = version.manifest.batch.as_deref().unwrap_or_default();
    let mut spec = spec_for(version, command, &tree, isolation);
    spec.env.push(("AUTOHARNESS_CASES".into(), cases_path.display().to_string()));
    spec.env.push(("AUTOHARNESS_SEED".into(), seed.to_string()));
    let outcome = sandbox::run(&spec).await;
    let stdout = outcome.stdout.text();
    let rewards = parse_rewards(&stdout);
    let (status, exit_code) = status_fields(&outcome.status);
    let per_case_ms = started.elapsed().as_millis() as u64 / cases.len().max(1) as u64;
    scrub_io(version, &io).await?;
    let _ = tokio::task::spawn_blocking(move || tree.remove()).await;
    Ok(cases
        .iter()
        .map(|c| {
            let reward = rewards.as_ref().and_then(|m| m.get(c.id())).and_then(|v| match v {
                Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
                other => other.as_f64(),
            });
            let (passed, detail) = match (reward, &rewards) {
                (Some(r), _) => (r >= 1.0, format!("reward {r}")),
                (None, Some(_)) => (false, "the batch printed no reward for this case".to_string()),
                (None, None) => (false, "the batch printed no {case_id: reward} JSON object".to_string()),
            };
            let passed = passed && outcome.status.success();
            TrialRecord {
                harness: version.manifest.name.clone(),
                harness_hash: version.hash.clone(),
                case_id: c.id().to_string(),
                case_hash: c.hash.clone(),
                seed,
                env_fp: env_fp.to_string(),
                passed,
                status,
                exit_code,
                signature: None,
                reason: (!passed).then(|| {
                    if outcome.status.success() {
                        detail.clone()
                    } else {
                        outcome.reason.clone().unwrap_or(status_line(&outcome.status))
                    }
                }),
                checks: vec![CheckOutcome { kind: "batch_reward".into(), passed, detail }],
                duration_ms: per_case_ms,
                tokens: None,
                cost_usd: None,
                output: String::new(),
                stderr_tail: tail(&outcome.stderr.text(), STDERR_KEPT),
                trace_path: None,
                isolation: serde_json::to_string(&outcome.isolation).unwrap_or_default(),
                cached: false,
                infra: None,
            }
        })
        .collect())
}

/// The last JSON object on stdout (a batch runner may log before it).
fn parse_rewards(stdout: &str) -> Option<serde_json::Map<String, Value>> {
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(stdout.trim()) {
        return Some(m);
    }
    stdout.lines().rev().find_map(|l| match serde_json::from_str::<Value>(l.trim()) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewards_are_the_last_json_object() {
        let m = parse_rewards("loading...\n{\"c-1\": 1.0, \"c-2\": 0}\n").unwrap();
        assert_eq!(m["c-1"], 1.0);
        assert!(parse_rewards("no json here").is_none());
        let whole = parse_rewards("{\n \"c-1\": true\n}\n").unwrap();
        assert_eq!(whole["c-1"], true);
    }

    #[test]
    fn api_failures_are_told_from_agent_errors() {
        for infra in [
            "openai.InternalServerError: Error code: 500 - {'error': 'boom'}",
            "openai.RateLimitError: Error code: 429 - rate limited",
            "openai.APIConnectionError: Connection error.",
            "openai.APITimeoutError: Request timed out.",
            "anthropic.AuthenticationError: Error code: 401 - invalid x-api-key",
            "httpx.ConnectError: [Errno 111] Connection refused",
            "urllib.error.URLError: <urlopen error [Errno 111] Connection refused>",
            "requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: http://x",
            "Error: status code 502",
        ] {
            assert!(is_api_failure(infra), "{infra}");
        }
        for agent in [
            "ValueError: payment method 'gift_card' cannot be refunded automatically (order #W5002841)",
            "TimeoutError: orders API did not answer within 5s (order #W8150219)",
            "KeyError: 'refund_amount'",
            "AssertionError: expected 3 items, got 500 items",
        ] {
            assert!(!is_api_failure(agent), "{agent}");
        }
        let started = infra_reason(&ExitStatus::Exited { code: 127 }, "sh: 1: .venv/bin/python: not found\n", "", None);
        assert!(started.unwrap().contains("could not start"));
        let missing = infra_reason(
            &ExitStatus::Exited { code: 2 },
            "python3: can't open file '/w/agent.py': [Errno 2] No such file or directory\n",
            "",
            None,
        );
        assert!(missing.unwrap().contains("could not start"));
        assert!(infra_reason(&ExitStatus::Exited { code: 1 }, "KeyError: 'x'\n", "", None).is_none());
    }

    #[test]
    fn tail_keeps_char_boundaries() {
        assert_eq!(tail("héllo", 3), "…llo");
        assert_eq!(tail("ab", 5), "ab");
    }
}
