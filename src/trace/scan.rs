//! Reading many files in parallel: walk → read each file on a rayon pool → summaries in
//! walk order. Callers decide what to keep of each trace through `extract`, which runs on
//! the worker thread, so memory holds summaries rather than whole traces. Traces of join
//! families (OTLP spans + logs, Langfuse rows…) are kept whole until every file is read,
//! merged by id, and only then extracted.

use std::path::PathBuf;

use rayon::prelude::*;
use serde::Serialize;

use super::formats::Format;
use super::json::format_time;
use super::merge::merge_traces;
use super::model::{Evidence, OutcomeStatus, Trace};
use super::walk::{WalkedFile, walk};
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

pub struct ScanResult<T> {
    pub files: Vec<ScannedFile<T>>,
    /// Extracted values of join-family traces after merging across files.
    pub joined: Vec<T>,
    /// Paths that could not be walked.
    pub walk_errors: Vec<(PathBuf, String)>,
}

pub fn mtime_ns(meta: &std::fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// Scan `paths` with `jobs` threads. `skip(key, size, mtime)` may declare a file
/// unchanged (it is then not read); `tick` is called once per file done.
pub fn scan<T, E, S>(paths: &[PathBuf], jobs: usize, skip: S, extract: E, tick: &(dyn Fn(&str) + Sync)) -> ScanResult<T>
where
    T: Send,
    E: Fn(&Trace) -> Option<T> + Sync,
    S: Fn(&str, u64, Option<i64>) -> bool + Sync,
{
    let (files, walk_errors) = walk(paths);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build();
    let work = |walked: WalkedFile| -> (ScannedFile<T>, Vec<Trace>) {
        let key = walked.key.clone();
        let meta = std::fs::metadata(&walked.path).ok();
        let size = meta.as_ref().map(|m| m.len()).unwrap_or(0);
        let mtime = meta.as_ref().and_then(mtime_ns);
        if skip(&key, size, mtime) {
            tick(&walked.display);
            let report = FileReport {
                path: walked.display.clone(),
                size,
                hash: String::new(),
                compression: None,
                format: None,
                reason: "unchanged since the last scan".into(),
                error: None,
                warnings: vec![],
                traces: vec![],
            };
            return (
                ScannedFile {
                    walked,
                    key,
                    mtime_ns: mtime,
                    report,
                    counts: OutcomeCounts::default(),
                    summaries: vec![],
                    extracted: vec![],
                    skipped: true,
                },
                vec![],
            );
        }
        let mut counts = OutcomeCounts::default();
        let mut summaries = Vec::new();
        let mut extracted = Vec::new();
        let mut pending = Vec::new();
        let report = read_file_with(&walked.path, &walked.display, &mut |trace| {
            counts.add(trace.outcome.status);
            summaries.push(TraceSummary::of(summaries.len(), &trace));
            let joins = Format::from_name(&trace.source.format).and_then(Format::join_family).is_some();
            if joins {
                pending.push(trace);
            } else if let Some(v) = extract(&trace) {
                extracted.push(v);
            }
        });
        tick(&walked.display);
        (ScannedFile { walked, key, mtime_ns: mtime, report, counts, summaries, extracted, skipped: false }, pending)
    };
    let results: Vec<(ScannedFile<T>, Vec<Trace>)> = match pool {
        Ok(pool) => pool.install(|| files.into_par_iter().map(work).collect()),
        Err(_) => files.into_iter().map(work).collect(),
    };
    let mut scanned = Vec::with_capacity(results.len());
    let mut pending = Vec::new();
    for (file, traces) in results {
        scanned.push(file);
        pending.extend(traces);
    }
    let joined = merge_traces(pending).iter().filter_map(&extract).collect();
    ScanResult { files: scanned, joined, walk_errors }
}
