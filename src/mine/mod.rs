//! Mining: failed traces → decisive failures with signatures → clusters with stable ids →
//! eval cases. The stage's parts are pure; `flow::mine` runs them against the store:
//!
//! 1. scan the paths, skipping files unchanged since the last scan (size + mtime, then
//!    content hash), analysing each failed trace on the worker thread;
//! 2. replace the failures of every changed file (one transaction per file);
//! 3. assign every unassigned failure to an existing cluster or a new one (IDF over all
//!    stored failures, persisted centroids);
//! 4. emit up to N diverse cases per cluster under `evals/<harness>/<cluster>/`.

pub mod alias;
pub mod class;
pub mod cluster;
pub mod emit;
pub mod failure;
pub mod judge;
pub mod signature;
pub mod state;
pub mod summarize;
pub mod tool_error;
pub mod verdict;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::trace::json::clip;
use crate::trace::scan::OutcomeCounts;
use cluster::Cluster;
use failure::Failure;

#[derive(Debug, Clone)]
pub struct MineOptions {
    pub paths: Vec<PathBuf>,
    pub harness: String,
    /// Only failures at or after this time (unix nanos) are ranked and emitted.
    pub since: Option<i128>,
    pub max_cases_per_cluster: usize,
    pub assume_failed: bool,
    pub jobs: usize,
    pub join_threshold: f64,
    pub holdout_share: f64,
    pub evals_dir: PathBuf,
    pub write_cases: bool,
    /// Ask this LLM for a one-line root cause of each cluster that has none yet.
    pub summarize: Option<crate::llm::ProviderConfig>,
    /// Ask this LLM for the root cause of each verdict-only failure (`mine --judge`).
    pub judge: Option<JudgeOptions>,
    /// Scores and feedback joined to the traces as outcome evidence (`trace::feedback`).
    pub feedback: crate::trace::scan::FeedbackOptions,
}

/// `mine --judge`: the provider, and the most it may spend this mine.
#[derive(Debug, Clone)]
pub struct JudgeOptions {
    pub provider: crate::llm::ProviderConfig,
    pub budget_usd: Option<f64>,
    /// `[judge.rubric]`: traces whose outcome is unknown are judged against it.
    pub rubric: Option<judge::Rubric>,
}

/// What `mine --judge` did this mine.
#[derive(Debug, Default, Clone, Serialize)]
pub struct JudgeSummary {
    pub taxonomy: String,
    pub model: String,
    /// Verdict-only failures this mine had to judge.
    pub failures: usize,
    pub cache_hits: usize,
    /// `cache_hits / failures` (1.0 when there was nothing to judge).
    pub cache_hit_rate: f64,
    /// Requests sent (a re-ask counts twice).
    pub requests: u32,
    pub accepted: usize,
    /// Answers that failed the check twice: recorded, their failures keep the offline cause.
    pub rejected: usize,
    /// Failures left unjudged because the provider failed or the budget was spent.
    pub unjudged: usize,
    pub budget_exhausted: bool,
    pub tokens: u64,
    pub cost_usd: f64,
    /// Traces of unknown outcome judged against `[judge.rubric]` (none without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rubric: Option<RubricSummary>,
}

/// What rubric judging did this mine. Its judgements also count in the totals above.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RubricSummary {
    pub version: String,
    /// Traces of unknown outcome looked at.
    pub traces: usize,
    /// Judged failing the rubric: stored as failures, signal `rubric:<category>`.
    pub failed: usize,
    /// Judged meeting it: not failures.
    pub met: usize,
    /// Answers that failed the check twice: the trace's outcome stays unknown.
    pub rejected: usize,
    /// Not judged (provider error, budget spent): judged by a later mine.
    pub unjudged: usize,
}

/// One cluster in the ranked table.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub id: String,
    pub label: String,
    pub kind: state::ClusterKind,
    pub state: state::ClusterState,
    /// `judged` when a rubric judge found these failures in traces that recorded no outcome.
    pub outcome_source: state::OutcomeSource,
    pub count: usize,
    /// Share of all failed runs in the window.
    pub share: f64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub cost_usd: Option<f64>,
    pub example_trace: String,
    pub example_file: String,
    pub signature: String,
    /// One-line root cause from an LLM (`mine --summarize`), when one was asked for.
    pub summary: Option<String>,
    pub cases_written: usize,
    pub cases: Vec<String>,
    /// Failures per day (YYYY-MM-DD), for the report's timeline.
    pub per_day: BTreeMap<String, usize>,
    pub members: Vec<MemberView>,
}

/// One failure of a cluster: where its trace is and which step decided it.
#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    /// `file#trace_id`: unique across files.
    pub id: String,
    pub file: String,
    pub trace_id: String,
    pub step: Option<String>,
    pub seen_at: Option<String>,
}

/// A duplicate case and the case it duplicates (which stays).
#[derive(Debug, Clone, Serialize)]
pub struct MergedCase {
    pub case: String,
    pub duplicate_of: String,
    /// `not_written` (a new duplicate) or `retired` (its file existed; its status is now retired).
    pub action: &'static str,
}

#[derive(Debug, Default, Serialize)]
pub struct MineSummary {
    pub files: usize,
    pub trace_files: usize,
    /// Files not read because size and mtime matched the last scan.
    pub skipped_unchanged: usize,
    /// Files read again whose content hash matched the last scan.
    pub unchanged_content: usize,
    pub file_errors: usize,
    #[serde(flatten)]
    pub counts: OutcomeCounts,
    pub new_failures: usize,
    pub failures_total: usize,
    pub clusters_total: usize,
    pub new_clusters: usize,
    pub cases_written: usize,
    pub cases_unchanged: usize,
    /// Case files a person edited: never overwritten.
    pub cases_kept_edited: Vec<String>,
    /// Cases that run the same task as another case (same harness and normalised input):
    /// not written, or, when already written by mining, retired with the reason recorded.
    pub duplicates_merged: Vec<MergedCase>,
    /// Cluster summaries written by the LLM this time, and what they cost.
    pub summaries_written: usize,
    pub summary_cost_usd: f64,
    /// Secrets and personal data redacted from this mine's new failures, by kind.
    pub redacted: crate::redact::Redactions,
    /// `mine --judge`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<JudgeSummary>,
    /// Feedback files read and how much of them met a trace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<crate::trace::feedback::FeedbackSummary>,
}

/// Everything of a failure that is stored or written to a case file, redacted.
pub fn redact_failure(f: &mut Failure, counts: &mut crate::redact::Redactions) {
    let r = crate::redact::global();
    for s in [&mut f.message, &mut f.excerpt, &mut f.signature.template] {
        r.string(s, counts);
    }
    // Header and trace text apart, so the header's length still holds after redaction.
    let split = f.header_len.min(f.text.len());
    if let (Some(header), Some(trace)) = (f.text.get(..split), f.text.get(split..)) {
        let (mut header, mut trace) = (header.to_string(), trace.to_string());
        r.string(&mut header, counts);
        r.string(&mut trace, counts);
        f.header_len = header.len();
        f.text = header + &trace;
    } else {
        r.string(&mut f.text, counts);
    }
    r.value(&mut f.seed.input, counts);
    f.seed.fixtures.iter_mut().for_each(|v| r.value(v, counts));
    f.seed.checks.iter_mut().for_each(|v| r.value(v, counts));
}

pub struct MineResult {
    pub summary: MineSummary,
    pub clusters: Vec<ClusterView>,
    /// Files that could not be read completely.
    pub errors: Vec<String>,
    /// Things that went wrong without costing the mine (a summary the LLM did not give).
    pub warnings: Vec<String>,
}

/// The label people read: the template of the founding signature, prefixed by where it
/// happened, or the strongest terms when there is no message.
pub fn label_for(c: &Cluster, founding: Option<&Failure>) -> String {
    let terms = c.top_terms(4).join(", ");
    match founding {
        // A failure that raised nothing: what went wrong in words, who did it, and the step
        // quoted (the quote is where a person starts reading).
        Some(f) if verdict::Cause::from_signal(&f.signature.signal).is_some() => {
            let cause = verdict::Cause::from_signal(&f.signature.signal).unwrap_or(verdict::Cause::Unexplained);
            // Unexplained has no evidence to quote: the decisive step is where to start reading.
            let source = if cause == verdict::Cause::Unexplained { &f.excerpt } else { &f.message };
            let quote = source.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let cause = cause.words();
            let who = &f.signature.step_kind;
            if quote.is_empty() {
                format!("{cause} ({who})")
            } else {
                clip(&format!("{cause} ({who}): \"{quote}\""), 200)
            }
        }
        // The judge's cause, in words, with its checked quote.
        Some(f) if f.signature.signal.starts_with(judge::JUDGED_SIGNAL) => {
            judge::label(&f.signature.signal, &f.message).unwrap_or_default()
        }
        // Found by a rubric judge: said first, so nobody takes it for a recorded failure.
        Some(f) if f.signature.signal.starts_with(judge::RUBRIC_SIGNAL) => {
            let category = f.signature.signal.trim_start_matches(judge::RUBRIC_SIGNAL).replace('_', " ");
            let quote = f.message.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            clip(&format!("judged against the rubric: {category}: \"{quote}\""), 200)
        }
        Some(f) => {
            let sig = &f.signature;
            let place = sig.tool.clone().or_else(|| sig.error_type.clone()).unwrap_or_else(|| sig.step_kind.clone());
            let what = if sig.template.is_empty() { terms } else { sig.template.clone() };
            clip(&format!("{} · {place} · {what}", sig.signal), 110)
        }
        None => terms,
    }
}
