//! Ingestion: from files on disk to normalized [`model::Trace`]s with derived outcomes.
//!
//! `read_file` handles one file end to end (open, decompress, sniff, detect, parse,
//! derive outcomes) and never fails as a whole: problems become a `FileReport` error or
//! warnings, so a walk over thousands of files always goes on. `walk` expands paths into
//! files; `merge` joins traces whose records are spread over several files.

pub mod detect;
pub mod feedback;
pub mod formats;
pub mod json;
pub mod merge;
pub mod model;
pub mod outcome;
pub mod read;
pub mod scan;
pub mod walk;

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use detect::Detection;
use formats::{FileCtx, Format, Warning};
use model::Trace;
use read::Sniff;

/// What one file turned out to be.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: String,
    pub size: u64,
    /// blake3 of the bytes on disk (compressed bytes for compressed files).
    pub hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// Why this format was chosen, or why the file is not a trace.
    pub reason: String,
    /// A fatal problem: the file (or its rest) could not be read. Traces read before it are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    #[serde(skip)]
    pub traces: Vec<Trace>,
}

impl FileReport {
    pub fn is_trace_file(&self) -> bool {
        self.format.is_some()
    }
}

/// Read one file completely into a report with its traces.
pub fn read_file(path: &Path, display: &str) -> FileReport {
    let mut traces = Vec::new();
    let mut report = read_file_with(path, display, &mut |t| traces.push(t));
    report.traces = traces;
    report
}

/// Read one file, handing each finished trace (outcome derived) to `sink`.
pub fn read_file_with(path: &Path, display: &str, sink: &mut dyn FnMut(Trace)) -> FileReport {
    let mut report = FileReport {
        path: display.to_string(),
        size: 0,
        hash: String::new(),
        compression: None,
        format: None,
        reason: String::new(),
        error: None,
        warnings: Vec::new(),
        traces: Vec::new(),
    };
    let opened = match open_hashed(path, &mut report) {
        Ok(o) => o,
        Err(e) => {
            report.reason = "unreadable".into();
            report.error = Some(format!("cannot read: {e}"));
            return report;
        }
    };
    report.compression = opened.compression.name();
    let container = match &opened.sniff {
        Sniff::Json(c) => *c,
        other => {
            match detect::classify_non_json(path, other, &opened.head) {
                Detection::NotTrace { reason } => report.reason = reason,
                Detection::Trace { format, reason } => {
                    report.format = Some(format);
                    report.reason = reason;
                    let mut ctx = FileCtx::new(display);
                    let mut emit = |mut trace: Trace| {
                        trace.fill_totals();
                        outcome::derive(&mut trace);
                        sink(trace);
                    };
                    if let Err(e) = formats::plain_text::parse(opened, &mut ctx, &mut emit) {
                        report.error = Some(e.to_string());
                    }
                    report.warnings = ctx.warnings;
                }
            }
            return report;
        }
    };
    let mut records = opened.records(container);
    let detection = {
        let first = records.peek(detect::PEEK_RECORDS);
        if first.is_empty() { None } else { Some(detect::detect(path, container, &first)) }
    };
    let detection = match detection {
        Some(d) => d,
        None => {
            // Nothing readable at the start: report the first error as the reason.
            match records.next() {
                Some(Err(e)) => {
                    report.reason = format!("not readable as JSON: {e}");
                    report.error = Some(e.to_string());
                }
                _ => report.reason = "no JSON records (empty array or only blank lines)".into(),
            }
            return report;
        }
    };
    let format = match detection {
        Detection::NotTrace { reason } => {
            report.reason = reason;
            return report;
        }
        Detection::Trace { format, reason } => {
            report.format = Some(format);
            report.reason = reason;
            format
        }
    };
    let mut ctx = FileCtx::new(display);
    let mut seq = 0usize;
    let mut emit = |mut trace: Trace| {
        trace.source.seq = seq;
        seq += 1;
        trace.fill_totals();
        outcome::derive(&mut trace);
        sink(trace);
    };
    let result = formats::parse(format, &mut records, &mut ctx, &mut emit);
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report.warnings = ctx.warnings;
    report
}

fn open_hashed(path: &Path, report: &mut FileReport) -> std::io::Result<read::Opened> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    if let Some(kind) = crate::paths::special_kind(meta.file_type()) {
        return Err(std::io::Error::other(crate::paths::special_reason(kind)));
    }
    report.size = meta.len();
    if meta.len() <= read::IN_MEMORY_BYTES {
        let bytes = read::read_whole(path)?;
        report.hash = blake3::hash(&bytes).to_hex().to_string();
        return read::open_bytes(bytes);
    }
    report.hash = hash_file(path)?;
    read::open(path)
}

/// blake3 of a file's bytes, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}
