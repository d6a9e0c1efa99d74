//! Reading many files in parallel: walk → read each file on a rayon pool → summaries in
//! walk order. Callers decide what to keep of each trace through `extract`, which runs on
//! the worker thread, so memory holds summaries rather than whole traces. Traces of join
//! families (OTLP spans + logs, Langfuse rows…) are kept whole until every file is read,
//! merged by id, and only then extracted.

use std::collections::HashMap;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use super::feedback::{self, FeedbackConfig, FeedbackFile, FeedbackSet, FeedbackSummary};
use super::formats::Format;
use super::json::format_time;
use super::merge::merge_traces;
use super::model::{Evidence, OutcomeStatus, Trace};
use super::walk::{self, WalkedFile, walk};
use super::{FileReport, read_file_with};

/// The stored summary of one trace (no steps).
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub seq: usize,
    pub trace_id: String,
    pub format: String,
    pub name: Option<String>,
    pub outcome: OutcomeStatus,
    pub evidence: Vec<Evidence>,
    pub n_steps: usize,
    pub n_errors: usize,
    pub total_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub location: Option<String>,
}

impl TraceSummary {
    pub fn of(seq: usize, t: &Trace) -> TraceSummary {
        TraceSummary {
            seq,
            trace_id: t.id.clone(),
            format: t.source.format.clone(),
            name: t.name.clone(),
            outcome: t.outcome.status,
            evidence: t.outcome.evidence.clone(),
            n_steps: t.steps.len(),
            n_errors: t.count_errors(),
            total_tokens: t.usage.total(),
            cost_usd: t.cost_usd,
            start: t.start.map(format_time),
            end: t.end.map(format_time),
            location: t.source.location.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub traces: usize,
    pub passed: usize,
    pub failed: usize,
    pub unknown: usize,
}

impl OutcomeCounts {
    pub fn add(&mut self, status: OutcomeStatus) {
        self.traces += 1;
        match status {
            OutcomeStatus::Passed => self.passed += 1,
            OutcomeStatus::Failed => self.failed += 1,
            OutcomeStatus::Unknown => self.unknown += 1,
        }
    }
    pub fn merge(&mut self, other: &OutcomeCounts) {
        self.traces += other.traces;
        self.passed += other.passed;
        self.failed += other.failed;
        self.unknown += other.unknown;
    }
}

/// One file after scanning.
#[derive(Debug)]
pub struct ScannedFile<T> {
    pub walked: WalkedFile,
    /// Canonical path: the store's key for the file.
    pub key: String,
    pub mtime_ns: Option<i64>,
    pub report: FileReport,
    /// Counts from this file's own traces (before cross-file joins).
    pub counts: OutcomeCounts,
    pub summaries: Vec<TraceSummary>,
    /// What `extract` kept, for traces not of a join family.
    pub extracted: Vec<T>,
    /// Whether the file was skipped as unchanged (not read at all).
    pub skipped: bool,
}

impl<T> ScannedFile<T> {
    /// A file whose traces were not read: feedback, or unchanged since the last scan.
    fn unread(walked: WalkedFile, key: String, mtime_ns: Option<i64>, report: FileReport, skipped: bool) -> Self {
        ScannedFile {
            walked,
            key,
            mtime_ns,
            report,
            counts: OutcomeCounts::default(),
            summaries: vec![],
            extracted: vec![],
            skipped,
        }
    }
}

pub struct ScanResult<T> {
    pub files: Vec<ScannedFile<T>>,
    /// Extracted values of join-family traces after merging across files.
    pub joined: Vec<T>,
    /// Paths that could not be walked.
    pub walk_errors: Vec<(PathBuf, String)>,
    /// What feedback was read and how much of it met a trace (None without feedback files).
    pub feedback: Option<FeedbackSummary>,
}

pub fn mtime_ns(meta: &std::fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// Scan `paths` with `jobs` threads. `skip(key, size, mtime)` may declare a file
/// unchanged (it is then not read); `tick` is called once per file done. Feedback files
/// among the traces are found and joined with the default `[feedback]` rules.
pub fn scan<T, E, S>(paths: &[PathBuf], jobs: usize, skip: S, extract: E, tick: &(dyn Fn(&str) + Sync)) -> ScanResult<T>
where
    T: Send,
    E: Fn(&Trace) -> Option<T> + Sync,
    S: Fn(&str, u64, Option<i64>) -> bool + Sync,
{
    scan_with(paths, &FeedbackOptions::default(), jobs, skip, extract, tick)
}

/// Where feedback comes from and what it means.
#[derive(Debug, Clone, Default)]
pub struct FeedbackOptions {
    /// Files named with `--feedback`: read as feedback whatever discovery finds.
    pub files: Vec<PathBuf>,
    pub config: FeedbackConfig,
}

/// Join the feedback found beside one named trace file (as `mine FILE` finds it: the
/// siblings whose name says feedback) into the traces read from it, so that `traces show`
/// shows the outcome `mine` would use and the score or label that decided it. Returns the
/// feedback files read.
pub fn join_beside(file: &std::path::Path, report: &mut FileReport, config: &FeedbackConfig) -> Vec<String> {
    if !config.discover {
        return Vec::new();
    }
    let mut set = FeedbackSet::new(config.clone());
    for path in feedback::beside(&[file.to_path_buf()]) {
        let display = path.display().to_string();
        if let Some(f) = feedback::probe(&path, &display) {
            set.add(display, f);
        }
    }
    for t in &mut report.traces {
        set.apply(t);
    }
    set.summary().map(|s| s.files).unwrap_or_default()
}

/// Open the files named with `--feedback`: an error names a file that is not feedback.
pub fn named_feedback(opts: &FeedbackOptions) -> anyhow::Result<Vec<(String, FeedbackFile)>> {
    opts.files.iter().map(|p| Ok((p.display().to_string(), feedback::read_named(p)?))).collect()
}

/// [`scan`] with feedback: named feedback files, and (with `discover`) feedback files
/// among the walked files and beside trace files named on the command line, are read
/// first; every trace then gets the feedback about it joined into its outcome before it
/// is summarised or extracted.
pub fn scan_with<T, E, S>(
    paths: &[PathBuf],
    fb: &FeedbackOptions,
    jobs: usize,
    skip: S,
    extract: E,
    tick: &(dyn Fn(&str) + Sync),
) -> ScanResult<T>
where
    T: Send,
    E: Fn(&Trace) -> Option<T> + Sync,
    S: Fn(&str, u64, Option<i64>) -> bool + Sync,
{
    let (files, walk_errors) = walk(paths);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build();
    let in_pool = |f: &(dyn Fn() + Sync)| match &pool {
        Ok(p) => p.install(f),
        Err(_) => f(),
    };
    // 1. Feedback first: every trace must meet it before it is extracted.
    let (set, feedback_files) = gather_feedback(paths, fb, &files, &in_pool);
    // With feedback, a file whose bytes did not change may still have a new outcome: read
    // every file, and fold the feedback applied into its hash so that it counts as changed.
    let with_feedback = !set.is_empty();
    let set = &set;
    let skip = |key: &str, size: u64, mtime: Option<i64>| !with_feedback && skip(key, size, mtime);
    let work = |walked: WalkedFile| -> (ScannedFile<T>, Vec<Trace>) {
        let key = walked.key.clone();
        let meta = std::fs::metadata(&walked.path).ok();
        let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
        let mtime = meta.as_ref().and_then(mtime_ns);
        if let Some(f) = feedback_files.get(&key) {
            tick(&walked.display);
            let report = feedback_report(&walked, size, f);
            return (ScannedFile::unread(walked, key, mtime, report, false), vec![]);
        }
        if skip(&key, size, mtime) {
            tick(&walked.display);
            let report = unchanged_report(&walked, size);
            return (ScannedFile::unread(walked, key, mtime, report, true), vec![]);
        }
        let scanned = read_one(walked, key, mtime, set, &extract);
        tick(&scanned.0.walked.display);
        scanned
    };
    let results: Vec<(ScannedFile<T>, Vec<Trace>)> = match &pool {
        Ok(pool) => pool.install(|| files.into_par_iter().map(work).collect()),
        Err(_) => files.into_iter().map(work).collect(),
    };
    let mut scanned = Vec::with_capacity(results.len());
    let mut pending = Vec::new();
    for (file, traces) in results {
        scanned.push(file);
        pending.extend(traces);
    }
    // Merging derives the outcomes of joined traces again: their feedback is joined again.
    let joined = merge_traces(pending)
        .into_iter()
        .filter_map(|mut t| {
            set.apply(&mut t);
            extract(&t)
        })
        .collect();
    // Reasons say how much of each feedback file met a trace: known only now.
    for f in &mut scanned {
        if let Some(fb) = feedback_files.get(&f.key) {
            f.report.reason = set.file_reason(fb);
        }
    }
    ScanResult { files: scanned, joined, walk_errors, feedback: set.summary() }
}

/// The feedback every trace meets: the files named with `--feedback`, and with
/// `discover`, feedback files among the walked files and beside the named paths. Also
/// which walked files are feedback (by key), so they are not read as traces.
fn gather_feedback(
    paths: &[PathBuf],
    fb: &FeedbackOptions,
    files: &[WalkedFile],
    in_pool: &dyn Fn(&(dyn Fn() + Sync)),
) -> (FeedbackSet, HashMap<String, FeedbackFile>) {
    let mut set = FeedbackSet::new(fb.config.clone());
    let mut feedback_files: HashMap<String, FeedbackFile> = HashMap::new();
    for path in &fb.files {
        let display = path.display().to_string();
        if let Some(f) = feedback::probe(path, &display) {
            feedback_files.insert(walk::file_key(path), f.clone());
            set.add(display, f);
        }
    }
    if fb.config.discover {
        let found = std::sync::Mutex::new(Vec::new());
        in_pool(&|| {
            files.par_iter().enumerate().for_each(|(i, w)| {
                if feedback_files.contains_key(&w.key) {
                    return;
                }
                if let Some(f) = feedback::probe(&w.path, &w.display) {
                    found.lock().unwrap_or_else(|p| p.into_inner()).push((i, f));
                }
            })
        });
        let mut found = found.into_inner().unwrap_or_else(|p| p.into_inner());
        found.sort_by_key(|(i, _)| *i);
        for (i, f) in found {
            feedback_files.insert(files[i].key.clone(), f.clone());
            set.add(files[i].display.clone(), f);
        }
        for path in feedback::beside(paths) {
            let key = walk::file_key(&path);
            if feedback_files.contains_key(&key) {
                continue;
            }
            let display = path.display().to_string();
            if let Some(f) = feedback::probe(&path, &display) {
                feedback_files.insert(key, f.clone());
                set.add(display, f);
            }
        }
    }
    (set, feedback_files)
}

/// Reads one trace file: its traces' feedback joined, summarised and extracted; traces of
/// a join family are returned to be merged across files first. The applied feedback is
/// folded into the file's hash.
fn read_one<T, E: Fn(&Trace) -> Option<T>>(
    walked: WalkedFile,
    key: String,
    mtime: Option<i64>,
    set: &FeedbackSet,
    extract: &E,
) -> (ScannedFile<T>, Vec<Trace>) {
    let mut counts = OutcomeCounts::default();
    let mut summaries = Vec::new();
    let mut extracted = Vec::new();
    let mut pending = Vec::new();
    let mut applied = blake3::Hasher::new();
    let mut any_applied = false;
    let mut report = read_file_with(&walked.path, &walked.display, &mut |mut trace| {
        for e in set.apply(&mut trace) {
            any_applied = true;
            applied.update(format!("{e:?}\n").as_bytes());
        }
        counts.add(trace.outcome.status);
        summaries.push(TraceSummary::of(summaries.len(), &trace));
        let joins = Format::from_name(&trace.source.format).and_then(Format::join_family).is_some();
        if joins {
            pending.push(trace);
        } else if let Some(v) = extract(&trace) {
            extracted.push(v);
        }
    });
    if any_applied {
        applied.update(report.hash.as_bytes());
        report.hash = applied.finalize().to_hex().to_string();
    }
    (ScannedFile { walked, key, mtime_ns: mtime, report, counts, summaries, extracted, skipped: false }, pending)
}

/// The report of a file skipped because it did not change since the last scan.
fn unchanged_report(walked: &WalkedFile, size: u64) -> FileReport {
    FileReport {
        path: walked.display.clone(),
        size,
        hash: String::new(),
        compression: None,
        format: None,
        reason: "unchanged since the last scan".into(),
        error: None,
        warnings: vec![],
        traces: vec![],
    }
}

/// The report of a feedback file (its reason is completed after the join).
fn feedback_report(walked: &WalkedFile, size: u64, f: &FeedbackFile) -> FileReport {
    FileReport {
        path: walked.display.clone(),
        size,
        hash: super::hash_file(&walked.path).unwrap_or_default(),
        compression: None,
        format: None,
        reason: f.kind.reason(),
        error: f.error.clone(),
        warnings: f.warnings.clone(),
        traces: vec![],
    }
}
