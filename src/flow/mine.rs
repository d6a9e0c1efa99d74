//! The `mine` workflow: the mining stage's parts run against the store, in phases.
//!
//! 1. scan the paths, skipping files unchanged since the last scan (size + mtime, then
//!    content hash), analysing each failed trace on the worker thread;
//! 2. replace the failures of every changed file (one transaction per file);
//! 3. assign every unassigned failure to an existing cluster or a new one (IDF over all
//!    stored failures, persisted centroids);
//! 4. emit up to N diverse cases per cluster under `evals/<harness>/<cluster>/`.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::mine::cluster::{self, Cluster, Idf};
use crate::mine::emit::{WriteResult, plan_cases, write_case};
use crate::mine::failure::{CaseSeed, Failure, StoredFailure, analyze};
use crate::mine::{
    ClusterView, MemberView, MineOptions, MineResult, MineSummary, label_for, redact_failure, summarize,
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

pub async fn mine(store: &Store, opts: &MineOptions, tick: &(dyn Fn(&str) + Sync)) -> anyhow::Result<MineResult> {
    // A mine reads the stored failures and clusters, clusters in memory and writes the
    // result: two at once on one store each wrote counts made from what the other had not
    // stored yet (members ended half or double the truth). One mine at a time per store;
    // the second then finds the first one's files already mined.
    let _write = store.exclusive().await?;
    // 1. Scan.
    // Only files whose failures were analysed at their current content count as known:
    // `traces ls` records files without mining them.
    let known: HashMap<String, (u64, Option<i64>, String)> = {
        let text: String = sqlx::query_scalar(
            "SELECT json_group_array(json_array(path, size, mtime_ns, hash)) FROM trace_files
             WHERE mined_hash IS NOT NULL AND mined_hash = hash",
        )
        .fetch_one(&store.pool)
        .await?;
        let rows: Vec<(String, i64, Option<i64>, String)> = crate::store::parse_rows(&text, "trace files")?;
        rows.into_iter().map(|(p, s, m, h)| (p, (s as u64, m, h))).collect()
    };
    let skip = |key: &str, size: u64, mtime: Option<i64>| {
        known.get(key).is_some_and(|(s, m, _)| *s == size && m.is_some() && *m == mtime)
    };
    let assume_failed = opts.assume_failed;
    let paths = opts.paths.clone();
    let jobs = opts.jobs;
    // Phase times at `AUTOHARNESS_LOG=autoharness=debug`, for whoever makes this faster next.
    let started = std::time::Instant::now();
    let phase = |name: &str| tracing::debug!("mine: {name} done at {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    // Secrets are redacted as each failure is made, before anything stores, clusters or
    // writes it: case files are committed to git.
    let redactions = std::sync::Mutex::new(crate::redact::Redactions::default());
    let extract = |t: &crate::trace::model::Trace| {
        let mut f = analyze(t, t.source.seq, assume_failed)?;
        let mut counts = crate::redact::Redactions::default();
        redact_failure(&mut f, &mut counts);
        if !counts.is_empty() {
            redactions.lock().unwrap_or_else(|p| p.into_inner()).merge(&counts);
        }
        Some(f)
    };
    let mut result = crate::trace::scan::scan_with(&paths, &opts.feedback, jobs, skip, extract, tick);

    phase("scan");
    let mut summary =
        MineSummary { redacted: redactions.into_inner().unwrap_or_else(|p| p.into_inner()), ..MineSummary::default() };
    let mut errors = Vec::new();
    for (p, e) in &result.walk_errors {
        errors.push(format!("{}: {e}", p.display()));
    }
    let feedback_warning = result.feedback.as_ref().and_then(crate::trace::feedback::not_found_warning);
    summary.feedback = result.feedback.take();
    // 2. The failures of each file, joined traces included. Of two with the same place
    // (file and trace), the first is kept: the store holds one per place.
    let mut by_display: HashMap<String, usize> = HashMap::new();
    let mut failures_by_file: Vec<Vec<Failure>> = Vec::with_capacity(result.files.len());
    for (i, f) in result.files.iter_mut().enumerate() {
        by_display.insert(f.walked.display.clone(), i);
        failures_by_file.push(std::mem::take(&mut f.extracted));
    }
    for failure in result.joined {
        if let Some(&i) = by_display.get(&failure.file) {
            failures_by_file[i].push(failure);
        }
    }
    for failures in &mut failures_by_file {
        let mut seen = HashSet::new();
        failures.retain(|f| seen.insert(f.trace_seq));
    }
    // Files whose content changed since they were last mined: their failures replace the
    // stored ones.
    let mut replaced: HashSet<&str> = HashSet::new();
    for f in &result.files {
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
            replaced.insert(&f.key);
        }
    }
    let new: Vec<(usize, Failure)> = failures_by_file
        .into_iter()
        .enumerate()
        .filter(|(i, _)| replaced.contains(result.files[*i].key.as_str()))
        .flat_map(|(i, failures)| failures.into_iter().map(move |f| (i, f)))
        .collect();
    summary.new_failures = new.len();

    // 3. Cluster the new failures, and any stored ones left without a cluster (a store from
    // an older version), before storing anything. Stored failures are read without their
    // text and seeds unless clustering needs them: the IDF covers every failure.
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
    phase("read stored failures");
    let mut stored_clusters = store.clusters().await?;
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

    phase("clustering");
    // 4. Store the whole mine in one transaction.
    let mut assigned: Vec<Vec<(Failure, String)>> = result.files.iter().map(|_| Vec::new()).collect();
    for ((i, f), c) in new.into_iter().zip(new_clusters) {
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
    let ids = store.record_mined(&batch, &clustering).await?;
    drop(batch);
    crate::crash::point("mine_stored");
    phase("store");
    if fresh {
        stored_clusters = store.clusters().await?;
    }
    // Failures as stored (ids, clusters, times as the store keeps them), with the text and
    // seed of those at hand rather than read back: that was most of a first mine's reading.
    // Nothing new assigned: they are the ones kept (a replaced file without failures only
    // took its old ones away).
    let (mut stored, mut complete) = (kept, kept_whole);
    if fresh {
        let mut heavy: HashMap<i64, (String, CaseSeed)> = HashMap::new();
        if kept_whole {
            for s in stored {
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
        stored = store.failures(false).await?;
        complete = true;
        for s in &mut stored {
            match heavy.remove(&s.id) {
                Some((text, seed)) => (s.failure.text, s.failure.seed) = (text, seed),
                None => complete = false,
            }
        }
    }
    phase("read back");
    let cluster_of: HashMap<i64, String> = stored.iter().filter_map(|s| Some((s.id, s.cluster_id.clone()?))).collect();
    summary.clusters_total = stored_clusters.len();
    summary.failures_total = stored.len();

    // 5. Rank clusters over the failures in the window, emit cases.
    let in_window = |s: &StoredFailure| match (opts.since, s.failure.time) {
        (Some(since), Some(t)) => t >= since,
        (Some(_), None) => true,
        (None, _) => true,
    };
    let recorded_cases = store.cases(None).await?;
    // Planning again what the last planning made from the same failures, clusters and
    // options, with every case file still as recorded, would change nothing: skip it.
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
    let now = crate::store::now_rfc3339();
    let mut views = Vec::new();
    for sc in &stored_clusters {
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
            for planned in plan_cases(
                &sc.cluster.id,
                ms,
                &opts.harness,
                opts.max_cases_per_cluster,
                opts.holdout_share,
                &opts.evals_dir,
                &now,
            ) {
                let recorded = existing_cases.get(&planned.case.id);
                let last = recorded.map(|(h, _)| h.as_str());
                let (result, hash) = write_case(&planned, last)?;
                crate::crash::point("case_written");
                let path = planned.path.display().to_string();
                // The row already says exactly this (a re-mine of unchanged traces): writing it
                // again would change nothing but its time, at one store commit per case.
                let recorded_as_is = recorded.is_some_and(|(h, p)| *h == hash && *p == path);
                match result {
                    WriteResult::Written => {
                        written += 1;
                        summary.cases_written += 1;
                    }
                    WriteResult::Unchanged => summary.cases_unchanged += 1,
                    WriteResult::KeptEdited => summary.cases_kept_edited.push(planned.path.display().to_string()),
                }
                if result != WriteResult::KeptEdited && !recorded_as_is {
                    let row = crate::store::mine::StoredCase {
                        id: planned.case.id.clone(),
                        cluster_id: sc.cluster.id.clone(),
                        harness: opts.harness.clone(),
                        split: planned.case.split.to_string(),
                        status: planned.case.status.to_string(),
                        path,
                        content_hash: hash,
                    };
                    store.upsert_case(&row, &planned.input_hash, Some(planned.failure_id)).await?;
                }
                cases.push(planned.case.id.clone());
            }
        }
        cases.sort();
        let times: Vec<&String> = ms.iter().filter_map(|s| s.seen_at.as_ref()).collect();
        let costs: Vec<f64> = ms.iter().filter_map(|s| s.failure.cost_usd).collect();
        let example = ms[0];
        let mut per_day = BTreeMap::new();
        for t in &times {
            *per_day.entry(t.chars().take(10).collect::<String>()).or_insert(0usize) += 1;
        }
        views.push(ClusterView {
            id: sc.cluster.id.clone(),
            label: sc.label.clone(),
            kind: sc.kind.clone(),
            state: sc.state.clone(),
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
        });
    }
    // Impact: count, then recency, then cost; ties by id for stable output.
    views.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| b.last_seen.cmp(&a.last_seen))
            .then_with(|| b.cost_usd.unwrap_or(0.0).total_cmp(&a.cost_usd.unwrap_or(0.0)))
            .then_with(|| a.id.cmp(&b.id))
    });
    phase("cases and ranking");
    if let (Some(key), false) = (&plan, skip_planning) {
        store.set_case_plan(&opts.harness, key).await?;
    }
    // 6. Optional summaries, for the clusters shown that have none yet.
    let mut warnings: Vec<String> = feedback_warning.into_iter().collect();
    if let Some(cfg) = &opts.summarize {
        let mut cost_usd = 0.0;
        for v in views.iter_mut().filter(|v| v.summary.is_none()) {
            let excerpts: Vec<&str> = members
                .get(&v.id)
                .map(|ms| ms.iter().map(|s| s.failure.excerpt.as_str()).collect())
                .unwrap_or_default();
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
    }
    Ok(MineResult { summary, clusters: views, errors, warnings })
}
