//! The `mine` workflow: the mining stage's parts run against the store, in phases.
//!
//! 1. scan the paths, skipping files unchanged since the last scan (size + mtime, then
//!    content hash), analysing each failed trace on the worker thread;
//! 2. replace the failures of every changed file (one transaction per file);
//! 3. assign every unassigned failure to an existing cluster or a new one (IDF over all
//!    stored failures, persisted centroids);
//! 4. store the whole mine in one transaction and read the failures back;
//! 5. rank clusters and emit up to N diverse cases per cluster under
//!    `evals/<harness>/<cluster>/`;
//! 6. optionally, a one-line root cause per cluster from an LLM.
//!
//! With `--judge`, files whose stored failures the judge has not answered for are read again
//! (0.), and the new failures are judged before clustering (2b.).
//!
//! Each phase is a function of its own; `mine` only sequences them.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::mine::cluster::{self, Cluster, Idf};
use crate::mine::emit::{CaseFile, CaseStatus, Observed, PlannedCase, WriteResult, duplicates, plan_cases, write_case};
use crate::mine::failure::{CaseSeed, Failure, StoredFailure, analyze};
use crate::mine::{
    ClusterView, MemberView, MergedCase, MineOptions, MineResult, MineSummary, label_for, redact_failure, summarize,
};
use crate::store::Store;

/// What case planning is made from: the failures in the window with their clusters, and
/// the options that shape the cases. Failures are only ever added or replaced with new row
/// ids, so the same ids and clusters mean the same inputs.
fn plan_key<'a>(
    opts: &MineOptions,
    failures: impl Iterator<Item = &'a StoredFailure>,
    cluster_of: &HashMap<i64, String>,
) -> String {
    let mut pairs: Vec<(i64, &str)> = failures.filter_map(|s| Some((s.id, cluster_of.get(&s.id)?.as_str()))).collect();
    pairs.sort_unstable();
    let mut h = blake3::Hasher::new();
    let head = format!(
        "{}\n{}\n{}\n{}\n{:?}\n",
        opts.harness,
        opts.max_cases_per_cluster,
        opts.holdout_share,
        opts.evals_dir.display(),
        opts.since
    );
    h.update(head.as_bytes());
    for (id, cluster) in pairs {
        h.update(format!("{id} {cluster}\n").as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Files already mined at their current content: key → (size, mtime, content hash).
type Known = HashMap<String, (u64, Option<i64>, String)>;

/// Phase times at `AUTOHARNESS_LOG=autoharness=debug`, for whoever makes this faster next.
struct PhaseClock(std::time::Instant);

impl PhaseClock {
    fn done(&self, name: &str) {
        tracing::debug!("mine: {name} done at {:.1} ms", self.0.elapsed().as_secs_f64() * 1e3);
    }
}

/// Mine `opts.paths` into the store: scan, replace the failures of changed files, cluster
/// the new ones, store the whole mine in one transaction, read back, rank and emit cases,
/// and summarize clusters on request.
pub async fn mine(store: &Store, opts: &MineOptions, tick: &(dyn Fn(&str) + Sync)) -> anyhow::Result<MineResult> {
    // A mine reads the stored failures and clusters, clusters in memory and writes the
    // result: two at once on one store each wrote counts made from what the other had not
    // stored yet (members ended half or double the truth). One mine at a time per store;
    // the second then finds the first one's files already mined.
    let _write = store.exclusive().await?;
    let clock = PhaseClock(std::time::Instant::now());
    // Only files whose failures were analysed at their current content count as known:
    // `traces ls` records files without mining them.
    let mut known: Known =
        store.mined_files().await?.into_iter().map(|f| (f.path, (f.size as u64, f.mtime_ns, f.hash))).collect();
    if let Some(judge) = &opts.judge {
        let again = files_to_judge(store, judge).await?;
        known.retain(|path, _| !again.contains(path));
    }
    let resign = Resign::plan(store, opts, &mut known).await?;
    let (mut result, mut summary) = scan_phase(resign.opts.as_ref().unwrap_or(opts), &known, tick);
    clock.done("scan");
    let mut errors: Vec<String> = result.walk_errors.iter().map(|(p, e)| format!("{}: {e}", p.display())).collect();
    let feedback_warning = result.feedback.as_ref().and_then(crate::trace::feedback::not_found_warning);
    summary.feedback = result.feedback.take();
    let (replaced, mut new) = changed_failures(&mut result, &known, &mut summary, &mut errors);
    let mut warnings: Vec<String> = feedback_warning.into_iter().collect();
    if let Some(judge) = &opts.judge {
        judge_phase(store, judge, &mut new, &mut summary, &mut warnings).await?;
        clock.done("judge");
    }
    let replaced: HashSet<&str> = replaced.iter().map(|&i| result.files[i].key.as_str()).collect();
    let mut clustered = cluster_phase(store, opts, &new, &replaced, &mut summary).await?;
    clock.done("clustering");
    let aliases = resign.aliases(&result, &new, &mut clustered);
    let (stored, complete) = store_phase(store, &result, new, &replaced, &mut clustered).await?;
    clock.done("store and read back");
    let moved = repoint_cases(store, &clustered.resigned).await?;
    let fresh = clustered.fresh;
    let stored_clusters = clustered.stored_clusters;
    let mut ranked = cases_phase(store, opts, stored, complete, fresh, &stored_clusters, &mut summary).await?;
    clock.done("cases and ranking");
    if let Some(cfg) = &opts.summarize {
        summarize_phase(store, cfg, &mut ranked, &mut summary, &mut warnings).await?;
    }
    if !aliases.is_empty() {
        warnings.push(format!(
            "the signature rules changed (v{} -> v{}): {} cluster id(s) now resolve to new ones (`autoharness clusters OLD_ID` shows where); {moved} case(s) follow them",
            resign.stored.unwrap_or_default(),
            resign.rules,
            aliases.len()
        ));
    }
    Ok(MineResult { summary, clusters: ranked.views, errors, warnings })
}

/// A mine under signature rules other than the stored failures': they are signed again.
struct Resign {
    /// The rules the stored failures were signed under (None: no failures yet).
    stored: Option<u32>,
    rules: u32,
    /// The options with every file mined before added to the paths, when signing again.
    opts: Option<MineOptions>,
    /// Each stored failure's cluster and signature before signing again, by place.
    before: HashMap<crate::mine::alias::Place, (String, String)>,
}

impl Resign {
    /// Whether this mine signs the stored failures again; if so, every file mined before is
    /// read again (none counts as known) and its failures' clusters are remembered.
    async fn plan(store: &Store, opts: &MineOptions, known: &mut Known) -> anyhow::Result<Resign> {
        let stored = store.signature_rules().await?;
        let rules = crate::mine::signature::rules();
        let mut r = Resign { stored, rules, opts: None, before: HashMap::new() };
        if stored.is_none_or(|v| v == rules) {
            return Ok(r);
        }
        let roots: Vec<String> = opts.paths.iter().map(|p| crate::trace::walk::file_key(p)).collect();
        let mut again = opts.clone();
        for path in known.keys() {
            let under = roots.iter().any(|r| path == r || path.starts_with(&format!("{r}/")));
            if !under && std::path::Path::new(path).is_file() {
                again.paths.push(path.into());
            }
        }
        known.clear();
        for s in store.failures(false).await? {
            if let Some(c) = s.cluster_id {
                r.before.insert((s.path, s.failure.trace_seq), (c, s.failure.signature.canonical()));
            }
        }
        r.opts = Some(again);
        Ok(r)
    }

    /// The aliases signing again made (saved with the mine), and the rules to record.
    fn aliases(
        &self,
        result: &crate::trace::scan::ScanResult<Failure>,
        new: &[(usize, Failure)],
        clustered: &mut Clustered,
    ) -> Vec<crate::mine::alias::Alias> {
        if self.stored == Some(self.rules) {
            return Vec::new();
        }
        let mut after = HashMap::new();
        let mut signatures = HashMap::new();
        for ((i, f), c) in new.iter().zip(&clustered.new_clusters) {
            let place = (result.files[*i].key.clone(), f.trace_seq);
            if let Some((_, old_sig)) = self.before.get(&place) {
                signatures.insert(old_sig.clone(), f.signature.canonical());
            }
            after.insert(place, c.clone());
        }
        let mut alive: HashSet<String> = after.values().cloned().collect();
        alive.extend(clustered.kept.iter().filter_map(|s| s.cluster_id.clone()));
        alive.extend(clustered.clustering.memberships.iter().map(|(_, c)| c.clone()));
        let before: HashMap<_, _> = self.before.iter().map(|(p, (c, _))| (p.clone(), c.clone())).collect();
        let aliases =
            crate::mine::alias::after_resigning(&before, &after, &alive, (self.stored.unwrap_or(1), self.rules));
        clustered.clustering.signed = Some((self.rules, aliases.clone()));
        clustered.resigned = signatures;
        aliases
    }
}

/// Cases whose cluster became an alias follow it: a file mining wrote (its bytes as
/// recorded) moves to the new cluster's folder with its `cluster` and `not_signature`
/// updated; a file a person edited stays where it is, untouched, and only its row is
/// re-pointed (loaders resolve its old id). Runs every mine, so a crash between the mine's
/// commit and the moves is finished by the next one.
/// Returns how many cases were re-pointed.
async fn repoint_cases(store: &Store, signatures: &HashMap<String, String>) -> anyhow::Result<usize> {
    let aliases = crate::mine::alias::Aliases::new(store.cluster_aliases().await?);
    if aliases.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    for case in store.cases(None).await? {
        let new_id = aliases.resolve(&case.cluster_id);
        if new_id == case.cluster_id {
            continue;
        }
        let old = std::path::PathBuf::from(&case.path);
        let bytes = std::fs::read(&old).ok();
        let ours = bytes.as_ref().is_some_and(|b| blake3::hash(b).to_hex().as_str() == case.content_hash);
        let moved = match (ours, bytes, old.parent().and_then(|d| d.parent()), old.file_name()) {
            (true, Some(bytes), Some(harness_dir), Some(name)) => {
                let to = crate::paths::safe_name(harness_dir, &new_id)?.join(name);
                let text = moved_case_text(&bytes, &new_id, signatures)?;
                std::fs::create_dir_all(to.parent().unwrap_or(harness_dir))?;
                crate::paths::write_atomic(&to, &to.with_extension("json.tmp"), text.as_bytes())?;
                std::fs::remove_file(&old)?;
                // The old cluster's folder goes when it is empty (a person's file keeps it).
                let _ = old.parent().map(std::fs::remove_dir);
                Some((to.display().to_string(), blake3::hash(text.as_bytes()).to_hex().to_string()))
            }
            _ => None,
        };
        let (path, hash) = moved.unwrap_or((case.path.clone(), case.content_hash.clone()));
        store.repoint_case(&case.id, &new_id, &path, &hash).await?;
        n += 1;
    }
    Ok(n)
}

/// A case file's text with its cluster id replaced and its `not_signature` checks naming
/// the failure's signature under the new rules.
fn moved_case_text(bytes: &[u8], new_id: &str, signatures: &HashMap<String, String>) -> anyhow::Result<String> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("cluster".into(), new_id.into());
        for check in obj.get_mut("checks").and_then(|c| c.as_array_mut()).into_iter().flatten() {
            if check.get("kind").and_then(|k| k.as_str()) == Some("not_signature") {
                let now = check.get("signature").and_then(|s| s.as_str()).and_then(|s| signatures.get(s)).cloned();
                if let Some(sig) = now {
                    check["signature"] = sig.into();
                }
            }
        }
    }
    let mut text = serde_json::to_string_pretty(&v)?;
    text.push('\n');
    Ok(text)
}

/// 2b. `mine --judge`: judge each new verdict-only failure (from the cache when its content,
///     the taxonomy and the model were judged before) and let an accepted category replace
///     its offline cause in the signature, before clustering. With a rubric, each trace of
///     unknown outcome is judged against it too: one that fails it becomes a failure under
///     `rubric:<category>`, any other is dropped (its outcome stays unknown). A provider
///     error or a spent budget leaves the rest with their offline cause, and says so.
async fn judge_phase(
    store: &Store,
    opts: &crate::mine::JudgeOptions,
    new: &mut Vec<(usize, Failure)>,
    summary: &mut MineSummary,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    use crate::mine::judge::{self, Outcome};
    let mut j = Judging {
        opts,
        s: crate::mine::JudgeSummary {
            taxonomy: judge::TAXONOMY_VERSION.into(),
            model: opts.provider.model.clone(),
            rubric: opts
                .rubric
                .as_ref()
                .map(|r| crate::mine::RubricSummary { version: r.version.clone(), ..Default::default() }),
            ..Default::default()
        },
        provider_error: None,
    };
    let mut keep = vec![true; new.len()];
    for ((_, f), keep) in new.iter_mut().zip(&mut keep) {
        if f.unknown_outcome {
            // Without a rubric no trace of unknown outcome is analysed; this one is a failure
            // only if the rubric judge says so.
            *keep = false;
            let Some(rubric) = &opts.rubric else { continue };
            let outcome = j.outcome(store, f, &rubric.cache_key(), Some(rubric)).await?;
            let r = j.s.rubric.get_or_insert_with(Default::default);
            r.traces += 1;
            match outcome {
                Some(Outcome::Accepted(a)) if a.category == judge::RUBRIC_MET => r.met += 1,
                Some(Outcome::Accepted(a)) => {
                    r.failed += 1;
                    judge::apply_rubric(f, &a);
                    *keep = true;
                }
                Some(Outcome::Rejected(_)) => r.rejected += 1,
                None => r.unjudged += 1,
            }
        } else if judge::is_judged(f)
            && let Some(Outcome::Accepted(a)) = j.outcome(store, f, judge::TAXONOMY_VERSION, None).await?
        {
            judge::apply(f, &a);
        }
    }
    let mut flags = keep.into_iter();
    new.retain(|_| flags.next().unwrap_or(true));
    summary.new_failures = new.len();
    let s = &mut j.s;
    if let Some(e) = j.provider_error {
        warnings.push(format!(
            "--judge: the provider failed ({e}); {} failure(s) keep their offline cause and are judged next mine",
            s.unjudged
        ));
    } else if s.budget_exhausted {
        warnings.push(format!(
            "--judge: the budget of ${:.4} is spent (${:.4}); {} failure(s) keep their offline cause (raise --budget-usd or mine again)",
            opts.budget_usd.unwrap_or_default(),
            s.cost_usd,
            s.unjudged
        ));
    }
    s.cache_hit_rate = if s.failures == 0 { 1.0 } else { s.cache_hits as f64 / s.failures as f64 };
    summary.judge = Some(j.s);
    Ok(())
}

/// One mine's judging: what it has cost and whether the provider has failed.
struct Judging<'a> {
    opts: &'a crate::mine::JudgeOptions,
    s: crate::mine::JudgeSummary,
    provider_error: Option<String>,
}

impl Judging<'_> {
    /// The judgement of one failure under `taxonomy` (the taxonomy's version, or a rubric's
    /// cache key): from the cache, else asked and recorded; `None` when it could not be asked.
    async fn outcome(
        &mut self,
        store: &Store,
        f: &Failure,
        taxonomy: &str,
        rubric: Option<&crate::mine::judge::Rubric>,
    ) -> anyhow::Result<Option<crate::mine::judge::Outcome>> {
        use crate::mine::judge::{self, Outcome};
        let s = &mut self.s;
        s.failures += 1;
        let hash = judge::content_hash(f);
        let key = crate::store::judgements::JudgementKey { content_hash: &hash, taxonomy, model: &s.model };
        let outcome = match store.judgement(&key).await? {
            Some(o) => {
                s.cache_hits += 1;
                o
            }
            None if self.provider_error.is_some() => {
                s.unjudged += 1;
                return Ok(None);
            }
            None if self.opts.budget_usd.is_some_and(|b| s.cost_usd >= b) => {
                s.budget_exhausted = true;
                s.unjudged += 1;
                return Ok(None);
            }
            None => {
                let asked = match rubric {
                    Some(r) => judge::judge_rubric(&self.opts.provider, f, r).await,
                    None => judge::judge(&self.opts.provider, f).await,
                };
                match asked {
                    Ok(j) => {
                        s.requests += j.requests;
                        s.tokens += j.tokens;
                        s.cost_usd += j.cost_usd;
                        store.put_judgement(&key, &j).await?;
                        j.outcome
                    }
                    Err(e) => {
                        self.provider_error = Some(format!("{e}"));
                        s.unjudged += 1;
                        return Ok(None);
                    }
                }
            }
        };
        match &outcome {
            Outcome::Accepted(_) => s.accepted += 1,
            Outcome::Rejected(_) => s.rejected += 1,
        }
        Ok(Some(outcome))
    }
}

/// 0. `mine --judge`: the files to read again although unchanged, so the judge sees their
///    failures: those holding a stored verdict-only failure the judge has not answered for
///    (never judged: mined without `--judge`, or when the budget or provider stopped it; or
///    judged and accepted but stored before the answer applied; or stored before step ids
///    were kept), and with a rubric every file holding a trace of unknown outcome (the
///    cache answers for those judged before).
async fn files_to_judge(store: &Store, opts: &crate::mine::JudgeOptions) -> anyhow::Result<HashSet<String>> {
    use crate::mine::judge::{self, Outcome};
    let steps = store.failure_step_ids().await?;
    let mut files = HashSet::new();
    for s in store.failures(true).await? {
        if !judge::is_judged(&s.failure) || s.failure.signature.signal.starts_with("verdict:judge:") {
            continue;
        }
        let Some(ids) = steps.get(&s.id) else {
            files.insert(s.path);
            continue;
        };
        let mut f = s.failure;
        f.step_ids = ids.clone();
        let hash = judge::content_hash(&f);
        let key = crate::store::judgements::JudgementKey {
            content_hash: &hash,
            taxonomy: judge::TAXONOMY_VERSION,
            model: &opts.provider.model,
        };
        // A rejection stands: asking again would cost the same and say the same.
        if !matches!(store.judgement(&key).await?, Some(Outcome::Rejected(_))) {
            files.insert(s.path);
        }
    }
    if opts.rubric.is_some() {
        files.extend(store.files_with_unknown_outcome().await?);
    }
    Ok(files)
}

/// 1. Scan the paths, skipping files unchanged since they were mined (size + mtime), and
///    analyse each failed trace on the worker thread. Secrets are redacted as each failure
///    is made, before anything stores, clusters or writes it: case files are committed to git.
fn scan_phase(
    opts: &MineOptions,
    known: &Known,
    tick: &(dyn Fn(&str) + Sync),
) -> (crate::trace::scan::ScanResult<Failure>, MineSummary) {
    let skip = |key: &str, size: u64, mtime: Option<i64>| {
        known.get(key).is_some_and(|(s, m, _)| *s == size && m.is_some() && *m == mtime)
    };
    let assume_failed = opts.assume_failed;
    // With a rubric, traces of unknown outcome are analysed too: the judge decides which fail.
    let rubric = opts.judge.as_ref().is_some_and(|j| j.rubric.is_some());
    let redactions = std::sync::Mutex::new(crate::redact::Redactions::default());
    let extract = |t: &crate::trace::model::Trace| {
        let mut f = analyze(t, t.source.seq, assume_failed || rubric)?;
        f.unknown_outcome = !assume_failed && t.outcome.status == crate::trace::model::OutcomeStatus::Unknown;
        let mut counts = crate::redact::Redactions::default();
        redact_failure(&mut f, &mut counts);
        if !counts.is_empty() {
            redactions.lock().unwrap_or_else(|p| p.into_inner()).merge(&counts);
        }
        Some(f)
    };
    let result = crate::trace::scan::scan_with(&opts.paths, &opts.feedback, opts.jobs, skip, extract, tick);
    let summary =
        MineSummary { redacted: redactions.into_inner().unwrap_or_else(|p| p.into_inner()), ..MineSummary::default() };
    (result, summary)
}

/// 2. The failures of each file, joined traces included, and which files changed since
///    they were last mined (their failures replace the stored ones). Of two failures with
///    the same place (file and trace), the first is kept: the store holds one per place.
///    Returns the indexes of the changed files and their failures, by file index.
fn changed_failures(
    result: &mut crate::trace::scan::ScanResult<Failure>,
    known: &Known,
    summary: &mut MineSummary,
    errors: &mut Vec<String>,
) -> (HashSet<usize>, Vec<(usize, Failure)>) {
    let mut by_display: HashMap<String, usize> = HashMap::new();
    let mut failures_by_file: Vec<Vec<Failure>> = Vec::with_capacity(result.files.len());
    for (i, f) in result.files.iter_mut().enumerate() {
        by_display.insert(f.walked.display.clone(), i);
        failures_by_file.push(std::mem::take(&mut f.extracted));
    }
    for failure in std::mem::take(&mut result.joined) {
        if let Some(&i) = by_display.get(&failure.file) {
            failures_by_file[i].push(failure);
        }
    }
    for failures in &mut failures_by_file {
        let mut seen = HashSet::new();
        failures.retain(|f| seen.insert(f.trace_seq));
    }
    let mut replaced: HashSet<usize> = HashSet::new();
    for (i, f) in result.files.iter().enumerate() {
        summary.files += 1;
        if f.skipped {
            summary.skipped_unchanged += 1;
            continue;
        }
        if f.report.format.is_some() {
            summary.trace_files += 1;
        }
        if let Some(e) = &f.report.error {
            summary.file_errors += 1;
            errors.push(format!("{}: {e}", f.report.path));
        }
        summary.counts.merge(&f.counts);
        if known.get(&f.key).is_some_and(|(_, _, h)| *h == f.report.hash) {
            summary.unchanged_content += 1;
        } else {
            replaced.insert(i);
        }
    }
    let new: Vec<(usize, Failure)> = failures_by_file
        .into_iter()
        .enumerate()
        .filter(|(i, _)| replaced.contains(i))
        .flat_map(|(i, failures)| failures.into_iter().map(move |f| (i, f)))
        .collect();
    summary.new_failures = new.len();
    (replaced, new)
}

/// What clustering decided, with the stored failures it read.
struct Clustered {
    /// Stored failures outside the replaced files; `kept_whole` when read with text and seed.
    kept: Vec<StoredFailure>,
    kept_whole: bool,
    /// Whether anything was clustered (new failures, or stored ones without a cluster).
    fresh: bool,
    clustering: crate::store::mine::Clustering,
    /// The cluster of each new failure, in order.
    new_clusters: Vec<String>,
    stored_clusters: Vec<crate::store::mine::StoredCluster>,
    /// Old canonical signature → new, when this mine signed the failures again.
    resigned: HashMap<String, String>,
}

/// 3. Cluster the new failures, and any stored ones left without a cluster (a store from
///    an older version), before storing anything. Stored failures are read without their
///    text and seeds unless clustering needs them: the IDF covers every failure.
async fn cluster_phase(
    store: &Store,
    opts: &MineOptions,
    new: &[(usize, Failure)],
    replaced: &HashSet<&str>,
    summary: &mut MineSummary,
) -> anyhow::Result<Clustered> {
    // New failures are clustered against every stored one: read them whole at once.
    let mut kept_whole = !new.is_empty();
    let mut kept: Vec<StoredFailure> = store.failures(kept_whole).await?;
    kept.retain(|s| !replaced.contains(s.path.as_str()));
    let fresh = !new.is_empty() || kept.iter().any(|s| s.cluster_id.is_none());
    kept_whole |= kept.is_empty();
    if fresh && !kept_whole {
        kept = store.failures(true).await?;
        kept.retain(|s| !replaced.contains(s.path.as_str()));
        kept_whole = true;
    }
    let stored_clusters = store.clusters().await?;
    let mut clustering = crate::store::mine::Clustering::default();
    let mut new_clusters: Vec<String> = Vec::new();
    if fresh {
        let mut idf = Idf::default();
        for f in kept.iter().map(|s| &s.failure).chain(new.iter().map(|(_, f)| f)) {
            idf.add_failure(f);
        }
        let unassigned: Vec<&StoredFailure> = kept.iter().filter(|s| s.cluster_id.is_none()).collect();
        let to_assign: Vec<&Failure> =
            unassigned.iter().map(|s| &s.failure).chain(new.iter().map(|(_, f)| f)).collect();
        let clusters: Vec<Cluster> = stored_clusters.iter().map(|c| c.cluster.clone()).collect();
        let mut assignment = cluster::assign(&to_assign, clusters, &idf, opts.join_threshold);
        summary.new_clusters = assignment.new_clusters;
        new_clusters = assignment.cluster_of.split_off(unassigned.len());
        clustering.memberships = unassigned.iter().zip(assignment.cluster_of).map(|(s, c)| (s.id, c)).collect();
        let by_sig: HashMap<String, &Failure> = to_assign
            .iter()
            .copied()
            .chain(kept.iter().map(|s| &s.failure))
            .map(|f| (f.signature.canonical(), f))
            .collect();
        clustering.clusters = assignment
            .clusters
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.truncate();
                let label = label_for(&c, by_sig.get(&c.signature).copied());
                (c, label)
            })
            .collect();
    }
    Ok(Clustered { kept, kept_whole, fresh, clustering, new_clusters, stored_clusters, resigned: HashMap::new() })
}

/// 4. Store the whole mine in one transaction, then the failures as stored (ids, clusters,
///    times as the store keeps them), with the text and seed of those at hand rather than
///    read back: that was most of a first mine's reading. Returns them and whether each
///    has its text and seed.
async fn store_phase(
    store: &Store,
    result: &crate::trace::scan::ScanResult<Failure>,
    new: Vec<(usize, Failure)>,
    replaced: &HashSet<&str>,
    clustered: &mut Clustered,
) -> anyhow::Result<(Vec<StoredFailure>, bool)> {
    let mut assigned: Vec<Vec<(Failure, String)>> = result.files.iter().map(|_| Vec::new()).collect();
    for ((i, f), c) in new.into_iter().zip(std::mem::take(&mut clustered.new_clusters)) {
        assigned[i].push((f, c));
    }
    let batch: Vec<crate::store::mine::MinedFile<'_>> = result
        .files
        .iter()
        .zip(&assigned)
        .filter(|(f, _)| !f.skipped)
        .map(|(f, failures)| crate::store::mine::MinedFile {
            key: &f.key,
            mtime_ns: f.mtime_ns,
            report: &f.report,
            traces: &f.summaries,
            failures: replaced.contains(f.key.as_str()).then_some(failures.as_slice()),
        })
        .collect();
    let ids = store.record_mined(&batch, &clustered.clustering).await?;
    drop(batch);
    // The judge's cache key needs the step ids: kept for the failures it judges, so a later
    // `mine --judge` knows which stored ones it has not answered for.
    let steps: Vec<(i64, &[String])> = result
        .files
        .iter()
        .zip(&assigned)
        .flat_map(|(f, failures)| failures.iter().map(move |(failure, _)| (f, failure)))
        .filter(|(_, failure)| crate::mine::judge::is_judged(failure))
        .filter_map(|(f, failure)| Some((*ids.get(&(f.key.clone(), failure.trace_seq))?, failure.step_ids.as_slice())))
        .collect();
    store.put_failure_step_ids(&steps).await?;
    crate::crash::point("mine_stored");
    let kept = std::mem::take(&mut clustered.kept);
    if !clustered.fresh {
        // Nothing new assigned: they are the ones kept (a replaced file without failures
        // only took its old ones away).
        return Ok((kept, clustered.kept_whole));
    }
    clustered.stored_clusters = store.clusters().await?;
    let mut heavy: HashMap<i64, (String, CaseSeed)> = HashMap::new();
    if clustered.kept_whole {
        for s in kept {
            heavy.insert(s.id, (s.failure.text, s.failure.seed));
        }
    }
    for (f, failures) in result.files.iter().zip(assigned) {
        for (failure, _) in failures {
            if let Some(&id) = ids.get(&(f.key.clone(), failure.trace_seq)) {
                heavy.insert(id, (failure.text, failure.seed));
            }
        }
    }
    let mut stored = store.failures(false).await?;
    let mut complete = true;
    for s in &mut stored {
        match heavy.remove(&s.id) {
            Some((text, seed)) => (s.failure.text, s.failure.seed) = (text, seed),
            None => complete = false,
        }
    }
    Ok((stored, complete))
}

/// The clusters ranked for the table, and their members in the window (for summaries).
struct Ranked {
    views: Vec<ClusterView>,
    excerpts: HashMap<String, Vec<String>>,
}

/// 5. Rank clusters over the failures in the window and emit their cases (skipped when the
///    last planning was made from the same failures, clusters and options and every case
///    file is still as recorded: it would change nothing).
async fn cases_phase(
    store: &Store,
    opts: &MineOptions,
    mut stored: Vec<StoredFailure>,
    complete: bool,
    fresh: bool,
    stored_clusters: &[crate::store::mine::StoredCluster],
    summary: &mut MineSummary,
) -> anyhow::Result<Ranked> {
    let cluster_of: HashMap<i64, String> = stored.iter().filter_map(|s| Some((s.id, s.cluster_id.clone()?))).collect();
    summary.clusters_total = stored_clusters.len();
    summary.failures_total = stored.len();
    let in_window = |s: &StoredFailure| match (opts.since, s.failure.time) {
        (Some(since), Some(t)) => t >= since,
        (Some(_), None) => true,
        (None, _) => true,
    };
    let recorded_cases = store.cases(None).await?;
    let plan = opts.write_cases.then(|| plan_key(opts, stored.iter().filter(|s| in_window(s)), &cluster_of));
    let skip_planning = match &plan {
        Some(key) if !fresh => {
            store.case_plan(&opts.harness).await?.as_ref() == Some(key)
                && recorded_cases
                    .iter()
                    .filter(|c| c.harness == opts.harness)
                    .all(|c| std::fs::read(&c.path).is_ok_and(|b| blake3::hash(&b).to_hex().as_str() == c.content_hash))
        }
        _ => false,
    };
    if plan.is_some() && !skip_planning && !complete {
        stored = store.failures(true).await?;
    }
    let mut members: BTreeMap<String, Vec<&StoredFailure>> = BTreeMap::new();
    for s in stored.iter().filter(|s| in_window(s)) {
        if let Some(c) = cluster_of.get(&s.id) {
            members.entry(c.clone()).or_default().push(s);
        }
    }
    let total_failed: usize = members.values().map(Vec::len).sum();
    // Case id → (content hash, path) as last recorded.
    let existing_cases: HashMap<String, (String, String)> =
        recorded_cases.iter().map(|c| (c.id.clone(), (c.content_hash.clone(), c.path.clone()))).collect();
    // (cluster, input) → the case recorded for it: a case that followed its cluster to a
    // new id (`repoint_cases`) keeps its own id, and is not planned again under another.
    let mut covered: HashMap<(String, String), String> = HashMap::new();
    if opts.write_cases && !skip_planning {
        for (id, cluster, input) in store.case_inputs(&opts.harness).await? {
            covered.entry((cluster, input)).or_insert(id);
        }
    }
    let now = crate::store::now_rfc3339();
    let mut planned: HashMap<String, Vec<PlannedCase>> = HashMap::new();
    if opts.write_cases && !skip_planning {
        for sc in stored_clusters {
            let Some(ms) = members.get(&sc.cluster.id) else { continue };
            let p = plan_cases(
                &sc.cluster.id,
                ms,
                &opts.harness,
                opts.max_cases_per_cluster,
                opts.holdout_share,
                &opts.evals_dir,
                &now,
            );
            planned.insert(sc.cluster.id.clone(), p);
        }
    }
    // Across clusters, one case per task stays (`emit::duplicates`: the earliest observed,
    // and every cluster keeps a train case): unchanged by a re-mine or new signature rules.
    let by_id: HashMap<i64, &StoredFailure> = stored.iter().map(|s| (s.id, s)).collect();
    let observed: Vec<Observed<'_>> = planned
        .values()
        .flatten()
        .map(|p| {
            let s = by_id.get(&p.failure_id);
            Observed {
                case: &p.case,
                time: s.and_then(|s| s.failure.time),
                path: s.map_or("", |s| s.path.as_str()),
                seq: s.map_or(0, |s| s.failure.trace_seq),
            }
        })
        .collect();
    let dups = duplicates(&observed);
    let mut views = Vec::new();
    for sc in stored_clusters {
        let Some(ms) = members.get(&sc.cluster.id) else { continue };
        let mut cases = Vec::new();
        let mut written = 0;
        if skip_planning {
            cases.extend(
                recorded_cases
                    .iter()
                    .filter(|c| c.cluster_id == sc.cluster.id && c.harness == opts.harness)
                    .map(|c| c.id.clone()),
            );
            summary.cases_unchanged += cases.len();
        } else if opts.write_cases {
            for planned in planned.remove(&sc.cluster.id).unwrap_or_default() {
                let key = (sc.cluster.id.clone(), planned.input_hash.clone());
                if let Some(existing) = covered.get(&key).filter(|id| **id != planned.case.id) {
                    cases.push(existing.clone());
                    continue;
                }
                if let Some(kept) = dups.get(&planned.case.id) {
                    let dup = Duplicate { planned: &planned, kept, recorded: &recorded_cases };
                    if merge_duplicate(store, opts, &sc.cluster.id, &dup, summary).await? {
                        continue;
                    }
                } else {
                    written += write_planned(store, opts, &sc.cluster.id, &planned, &existing_cases, summary).await?;
                }
                cases.push(planned.case.id.clone());
            }
        }
        cases.sort();
        views.push(cluster_view(sc, ms, total_failed, cases, written));
    }
    // Impact: count, then recency, then cost; ties by id for stable output.
    views.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| b.last_seen.cmp(&a.last_seen))
            .then_with(|| b.cost_usd.unwrap_or(0.0).total_cmp(&a.cost_usd.unwrap_or(0.0)))
            .then_with(|| a.id.cmp(&b.id))
    });
    if let (Some(key), false) = (&plan, skip_planning) {
        store.set_case_plan(&opts.harness, key).await?;
    }
    let excerpts =
        members.into_iter().map(|(id, ms)| (id, ms.iter().map(|s| s.failure.excerpt.clone()).collect())).collect();
    Ok(Ranked { views, excerpts })
}

/// Write one planned case file (unless a person edited it) and its row; 1 when written.
async fn write_planned(
    store: &Store,
    opts: &MineOptions,
    cluster_id: &str,
    planned: &crate::mine::emit::PlannedCase,
    existing_cases: &HashMap<String, (String, String)>,
    summary: &mut MineSummary,
) -> anyhow::Result<usize> {
    let recorded = existing_cases.get(&planned.case.id);
    let last = recorded.map(|(h, _)| h.as_str());
    let (result, hash) = write_case(planned, last)?;
    crate::crash::point("case_written");
    let path = planned.path.display().to_string();
    // The row already says exactly this (a re-mine of unchanged traces): writing it
    // again would change nothing but its time, at one store commit per case.
    let recorded_as_is = recorded.is_some_and(|(h, p)| *h == hash && *p == path);
    let mut written = 0;
    match result {
        WriteResult::Written => {
            written = 1;
            summary.cases_written += 1;
        }
        WriteResult::Unchanged => summary.cases_unchanged += 1,
        WriteResult::KeptEdited => summary.cases_kept_edited.push(planned.path.display().to_string()),
    }
    if result != WriteResult::KeptEdited && !recorded_as_is {
        let row = crate::store::mine::StoredCase {
            id: planned.case.id.clone(),
            cluster_id: cluster_id.to_string(),
            harness: opts.harness.clone(),
            split: planned.case.split,
            status: planned.case.status,
            path,
            content_hash: hash,
        };
        store.upsert_case(&row, &planned.input_hash, Some(planned.failure_id)).await?;
    }
    Ok(written)
}

/// A planned case that runs the same task as `kept`.
struct Duplicate<'a> {
    planned: &'a PlannedCase,
    kept: &'a str,
    recorded: &'a [crate::store::mine::StoredCase],
}

/// Merge a duplicate into the case it duplicates: a new one is not written; a file mining
/// wrote is retired (status in the file, row and history, with the reason), never deleted,
/// so `eval --all` still runs it. A file a person wrote or edited is left as it is and
/// reported. True when merged (the case is then not listed under its cluster).
async fn merge_duplicate(
    store: &Store,
    opts: &MineOptions,
    cluster_id: &str,
    dup: &Duplicate<'_>,
    summary: &mut MineSummary,
) -> anyhow::Result<bool> {
    let planned = dup.planned;
    let id = &planned.case.id;
    let merged = |action| MergedCase { case: id.clone(), duplicate_of: dup.kept.to_string(), action };
    let Ok(bytes) = std::fs::read(&planned.path) else {
        summary.duplicates_merged.push(merged("not_written"));
        return Ok(true);
    };
    let recorded = dup.recorded.iter().find(|c| c.id == *id);
    let hash = blake3::hash(&bytes).to_hex().to_string();
    let Ok(file) = serde_json::from_slice::<CaseFile>(&bytes) else {
        summary.cases_kept_edited.push(planned.path.display().to_string());
        return Ok(false);
    };
    // Ours when the store recorded exactly this file, or (a fresh store) when it is what
    // mining plans apart from its mining time and status.
    let ours = match recorded {
        Some(r) => r.content_hash == hash,
        None => {
            let mut c = file.clone();
            c.status = planned.case.status;
            if let (Some(p), Some(o)) = (c.provenance.as_mut(), planned.case.provenance.as_ref()) {
                p.mined_at = o.mined_at.clone();
            }
            c == planned.case
        }
    };
    if !ours {
        summary.cases_kept_edited.push(planned.path.display().to_string());
        return Ok(false);
    }
    let content_hash = if file.status == CaseStatus::Retired {
        hash
    } else {
        crate::evals::case::write_status(&planned.path, CaseStatus::Retired)?
    };
    let row = crate::store::mine::StoredCase {
        id: id.clone(),
        cluster_id: cluster_id.to_string(),
        harness: opts.harness.clone(),
        split: file.split,
        status: CaseStatus::Retired,
        path: planned.path.display().to_string(),
        content_hash,
    };
    if recorded.is_none_or(|r| r.content_hash != row.content_hash || r.status != CaseStatus::Retired) {
        store.upsert_case(&row, &planned.input_hash, Some(planned.failure_id)).await?;
    }
    if recorded.is_none_or(|r| r.status != CaseStatus::Retired) {
        let reason = format!("duplicate of {}: same input (after normalising whitespace and key order)", dup.kept);
        store.case_event(id, CaseStatus::Retired, &reason).await?;
    }
    summary.duplicates_merged.push(merged("retired"));
    Ok(true)
}

/// One row of the ranked table: a cluster over its members in the window.
fn cluster_view(
    sc: &crate::store::mine::StoredCluster,
    ms: &[&StoredFailure],
    total_failed: usize,
    cases: Vec<String>,
    written: usize,
) -> ClusterView {
    let times: Vec<&String> = ms.iter().filter_map(|s| s.seen_at.as_ref()).collect();
    let costs: Vec<f64> = ms.iter().filter_map(|s| s.failure.cost_usd).collect();
    let example = ms[0];
    let mut per_day = BTreeMap::new();
    for t in &times {
        *per_day.entry(t.chars().take(10).collect::<String>()).or_insert(0usize) += 1;
    }
    ClusterView {
        id: sc.cluster.id.clone(),
        label: sc.label.clone(),
        kind: sc.kind,
        state: sc.state,
        outcome_source: crate::mine::state::OutcomeSource::of_signature(&sc.cluster.signature),
        count: ms.len(),
        share: if total_failed > 0 { ms.len() as f64 / total_failed as f64 } else { 0.0 },
        first_seen: times.iter().min().map(|s| s.to_string()),
        last_seen: times.iter().max().map(|s| s.to_string()),
        cost_usd: (!costs.is_empty()).then(|| costs.iter().sum()),
        example_trace: example.failure.trace_id.clone(),
        example_file: example.path.clone(),
        signature: sc.cluster.signature.clone(),
        summary: sc.summary.clone(),
        cases_written: written,
        cases,
        per_day,
        members: ms
            .iter()
            .map(|s| MemberView {
                id: format!("{}#{}", s.path, s.failure.trace_id),
                file: s.path.clone(),
                trace_id: s.failure.trace_id.clone(),
                step: s.failure.step_id.clone(),
                seen_at: s.seen_at.clone(),
            })
            .collect(),
    }
}

/// 6. A one-line root cause for each cluster shown that has none yet; a failure warns.
async fn summarize_phase(
    store: &Store,
    cfg: &crate::llm::ProviderConfig,
    ranked: &mut Ranked,
    summary: &mut MineSummary,
    warnings: &mut Vec<String>,
) -> anyhow::Result<()> {
    let mut cost_usd = 0.0;
    for v in ranked.views.iter_mut().filter(|v| v.summary.is_none()) {
        let excerpts: Vec<&str> =
            ranked.excerpts.get(&v.id).map(|es| es.iter().map(String::as_str).collect()).unwrap_or_default();
        match summarize::summarize(cfg, &v.id, &v.label, &v.signature, v.count, &excerpts, &mut cost_usd).await {
            Ok(text) => {
                store.set_cluster_summary(&v.id, &text).await?;
                v.summary = Some(text);
                summary.summaries_written += 1;
            }
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }
    summary.summary_cost_usd = cost_usd;
    Ok(())
}
