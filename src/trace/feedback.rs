//! Outcome evidence kept beside the traces: scores and feedback joined to their traces by id.
//!
//! Production traces rarely carry a verdict; what users have is feedback (thumbs, ratings)
//! and evaluator scores, exported or posted separately. A file of them is *feedback*, never a
//! trace with zero steps. Recognized shapes (detection looks at the first records' keys):
//! - Langfuse scores: export rows / `GET /api/public/scores` pages (`traceId`, `name`,
//!   `value`|`stringValue`), and the score events of an ingestion POST
//!   (`{"batch": [{"type": "score-create", "body": {…}}]}`);
//! - LangSmith feedback records (`key`, `run_id`/`trace_id`, `score`|`value`) as exported by
//!   `list_feedback` or POSTed by `create_feedback`;
//! - OTel `gen_ai.evaluation.result` log records (OTLP/JSON logs holding only evaluations);
//! - a plain table, CSV/TSV with a header or JSONL: `trace_id` and `score` or `label`
//!   (`value`, `verdict`, …), optionally `name` and `comment`.
//!
//! Which scores mean failed or passed is [`FeedbackConfig`] (`[feedback]` in
//! autoharness.toml, docs/outcomes.md). Precedence: a verdict the trace carries itself (a
//! reward, an exit status, a labelled score inside the trace) decides by default, and the
//! feedback is kept as evidence beside it; `precedence = "feedback"` turns that around.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::formats::otlp::normalize_id;
use super::json::{self, as_f64, scalar_string, str_of};
use super::model::{Evidence, OutcomeStatus, ScoreSource, Trace};
use super::read::{self, Pos, Record, Sniff};

/// `[feedback]` in autoharness.toml. Every key is optional.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FeedbackConfig {
    /// Look for feedback files among the traces (and beside trace files passed by name).
    pub discover: bool,
    /// A numeric score below this fails its trace; at or above it passes.
    pub fail_below: f64,
    /// Per score name, a threshold instead of `fail_below`.
    pub thresholds: HashMap<String, f64>,
    /// Score names where a high value is bad (at or above the threshold fails).
    pub lower_is_better: Vec<String>,
    /// Labels that fail or pass a trace, besides the built-in ones.
    pub failing_labels: Vec<String>,
    pub passing_labels: Vec<String>,
    /// Only these score names decide (empty: every name). Others are kept as evidence.
    pub names: Vec<String>,
    /// Score names that never decide (kept as evidence).
    pub ignore: Vec<String>,
    /// Who wins when the trace carries its own verdict: `trace` (default) or `feedback`.
    pub precedence: Precedence,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precedence {
    #[default]
    Trace,
    Feedback,
}

/// Built-in labels (lower case). `false`/`no` are the BOOLEAN scores' and thumbs' words.
pub const FAILING_LABELS: [&str; 14] = [
    "fail",
    "failed",
    "failure",
    "incorrect",
    "wrong",
    "hallucinated",
    "thumbs_down",
    "thumbs-down",
    "negative",
    "bad",
    "false",
    "no",
    "unhelpful",
    "rejected",
];
pub const PASSING_LABELS: [&str; 12] = [
    "pass",
    "passed",
    "correct",
    "success",
    "thumbs_up",
    "thumbs-up",
    "positive",
    "good",
    "true",
    "yes",
    "helpful",
    "accepted",
];

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            discover: true,
            fail_below: 0.5,
            thresholds: HashMap::new(),
            lower_is_better: ["hallucination", "toxicity", "harmfulness", "bias"].map(String::from).to_vec(),
            failing_labels: vec![],
            passing_labels: vec![],
            names: vec![],
            ignore: vec![],
            precedence: Precedence::Trace,
        }
    }
}

impl FeedbackConfig {
    /// Whether one entry passes (true), fails (false) or says nothing about the outcome.
    pub fn verdict(&self, e: &Entry) -> Option<bool> {
        let name = e.name.to_ascii_lowercase();
        let listed = |list: &[String]| list.iter().any(|n| n.eq_ignore_ascii_case(&name));
        if (!self.names.is_empty() && !listed(&self.names)) || listed(&self.ignore) {
            return None;
        }
        if let Some(label) = &e.label {
            let l = label.trim().to_ascii_lowercase();
            let has = |builtin: &[&str], extra: &[String]| {
                builtin.contains(&l.as_str()) || extra.iter().any(|x| x.eq_ignore_ascii_case(&l))
            };
            if has(&FAILING_LABELS, &self.failing_labels) {
                return Some(false);
            }
            if has(&PASSING_LABELS, &self.passing_labels) {
                return Some(true);
            }
        }
        let value = e.value?;
        let threshold = self
            .thresholds
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&name))
            .map(|(_, t)| *t)
            .unwrap_or(self.fail_below);
        Some(if listed(&self.lower_is_better) { value < threshold } else { value >= threshold })
    }

    fn threshold_text(&self, e: &Entry) -> String {
        let name = e.name.to_ascii_lowercase();
        let t = self.thresholds.iter().find(|(k, _)| k.eq_ignore_ascii_case(&name)).map(|(_, t)| *t);
        let t = t.unwrap_or(self.fail_below);
        if self.lower_is_better.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            format!("fails at or above {t}")
        } else {
            format!("fails below {t}")
        }
    }
}

/// What kind of feedback file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackKind {
    LangfuseScores,
    LangfuseIngestion,
    LangsmithFeedback,
    OtelEvaluations,
    Table,
}

impl FeedbackKind {
    pub fn describe(self) -> &'static str {
        match self {
            FeedbackKind::LangfuseScores => "Langfuse scores",
            FeedbackKind::LangfuseIngestion => "Langfuse score-create events (ingestion POST)",
            FeedbackKind::LangsmithFeedback => "LangSmith feedback",
            FeedbackKind::OtelEvaluations => "OTel `gen_ai.evaluation.result` events",
            FeedbackKind::Table => "a trace_id/score table",
        }
    }

    /// The reason a file of this kind is not read as traces.
    pub fn reason(self) -> String {
        format!("feedback: {} (outcome evidence joined to traces by id, not a trace)", self.describe())
    }
}

/// One score or feedback about a trace.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// The trace id as written.
    pub trace_id: String,
    /// A step (observation, run, span) of the trace the score is about, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub source: ScoreSource,
    /// `file:line` where it was read.
    pub origin: String,
}

/// A feedback file, read.
#[derive(Debug, Clone)]
pub struct FeedbackFile {
    pub kind: FeedbackKind,
    pub entries: Vec<Entry>,
    pub warnings: Vec<super::formats::Warning>,
    pub error: Option<String>,
}

/// The join key of a trace id: OTel normalisation (hex lower-cased, `0x` stripped, base64
/// to hex), and a UUID's dashes dropped, so that LangSmith's `0192…-…` and the same id as
/// 32 hex digits in an OTel export meet.
pub fn key(raw: &str) -> Option<String> {
    let id = normalize_id(raw)?.to_ascii_lowercase();
    if id.len() == 36 && id.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
        return Some(id.replace('-', ""));
    }
    Some(id)
}

// ---------------------------------------------------------------------------------------
// Detection

const ID_KEYS: [&str; 2] = ["trace_id", "traceId"];
const VERDICT_KEYS: [&str; 8] = ["score", "label", "value", "verdict", "outcome", "passed", "rating", "feedback"];
/// Every key a plain feedback record may have: anything else makes it something else.
const PLAIN_KEYS: [&str; 20] = [
    "trace_id",
    "traceId",
    "span_id",
    "run_id",
    "score",
    "label",
    "value",
    "verdict",
    "outcome",
    "passed",
    "rating",
    "feedback",
    "comment",
    "explanation",
    "reason",
    "name",
    "key",
    "source",
    "timestamp",
    "created_at",
];
const EVALUATION_EVENT: &str = "gen_ai.evaluation.result";

fn has(v: &Value, k: &str) -> bool {
    v.get(k).is_some()
}

fn is_langfuse_score(v: &Value) -> bool {
    has(v, "traceId")
        && has(v, "name")
        && (has(v, "value") || has(v, "stringValue"))
        && !has(v, "startTime")
        && !has(v, "observations")
        && !has(v, "input")
        && !has(v, "type")
}

fn is_langsmith_feedback(v: &Value) -> bool {
    has(v, "key")
        && (has(v, "run_id") || has(v, "trace_id"))
        && (has(v, "score") || has(v, "value") || has(v, "comment") || has(v, "correction"))
        && !has(v, "run_type")
}

fn is_plain(v: &Value) -> bool {
    let Some(obj) = v.as_object() else { return false };
    ID_KEYS.iter().any(|k| obj.get(*k).is_some_and(|id| id.is_string() || id.is_number()))
        && VERDICT_KEYS.iter().any(|k| obj.contains_key(*k))
        && obj.keys().all(|k| PLAIN_KEYS.contains(&k.as_str()))
}

fn is_evaluation_record(r: &Value) -> bool {
    let name = r.get("eventName").or_else(|| r.get("event_name")).and_then(Value::as_str);
    if name == Some(EVALUATION_EVENT) {
        return true;
    }
    let attrs = r.get("attributes").map(json::otlp_key_values).unwrap_or_default();
    attrs.get("event.name").and_then(Value::as_str) == Some(EVALUATION_EVENT)
        || attrs.contains_key("gen_ai.evaluation.name")
}

/// What kind of feedback one record is, if it is feedback.
pub fn record_kind(v: &Value) -> Option<FeedbackKind> {
    if let Some(batch) = v.get("batch").and_then(Value::as_array) {
        let scores = batch.iter().all(|e| str_of(e, "type") == Some("score-create"));
        return (!batch.is_empty() && scores).then_some(FeedbackKind::LangfuseIngestion);
    }
    if has(v, "resourceLogs") || has(v, "resource_logs") {
        let mut any = false;
        for r in evaluation_candidates(v) {
            if !is_evaluation_record(r) {
                return None;
            }
            any = true;
        }
        return any.then_some(FeedbackKind::OtelEvaluations);
    }
    // A page or download of scores only.
    for list in ["data", "scores"] {
        if let Some(items) = v.get(list).and_then(Value::as_array) {
            if !has(v, "observations") && !has(v, "trace") && items.first().is_some_and(is_langfuse_score) {
                return Some(FeedbackKind::LangfuseScores);
            }
        }
    }
    if is_langfuse_score(v) {
        return Some(FeedbackKind::LangfuseScores);
    }
    if is_langsmith_feedback(v) {
        return Some(FeedbackKind::LangsmithFeedback);
    }
    is_plain(v).then_some(FeedbackKind::Table)
}

fn arr<'v>(v: &'v Value, a: &str, b: &str) -> Vec<&'v Value> {
    v.get(a).or_else(|| v.get(b)).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

fn evaluation_candidates(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for rl in arr(v, "resourceLogs", "resource_logs") {
        for sl in arr(rl, "scopeLogs", "scope_logs") {
            out.extend(arr(sl, "logRecords", "log_records"));
        }
    }
    out
}

/// A file is feedback when every one of its first records is (a top-level array counts
/// through its elements).
pub fn detect(values: &[&Value]) -> Option<FeedbackKind> {
    let mut kind = None;
    for v in values {
        let k = match v.as_array() {
            Some(items) => items.first().and_then(record_kind),
            None => record_kind(v),
        }?;
        kind.get_or_insert(k);
    }
    kind
}

/// A CSV/TSV header naming a trace id column and a score/label column.
fn table_columns(header: &str) -> Option<TableColumns> {
    let sep = if header.contains('\t') { '\t' } else { ',' };
    let cols: Vec<String> = split_row(header, sep).into_iter().map(|c| c.trim().to_ascii_lowercase()).collect();
    let find = |names: &[&str]| cols.iter().position(|c| names.contains(&c.as_str()));
    let id = find(&["trace_id", "traceid", "trace id", "trace"])?;
    let verdict = find(&["score", "label", "value", "verdict", "outcome", "passed", "rating", "feedback"])?;
    Some(TableColumns {
        sep,
        id,
        verdict,
        name: find(&["name", "key", "metric"]),
        comment: find(&["comment", "explanation", "reason"]),
        step: find(&["span_id", "observation_id", "run_id"]),
    })
}

struct TableColumns {
    sep: char,
    id: usize,
    verdict: usize,
    name: Option<usize>,
    comment: Option<usize>,
    step: Option<usize>,
}

/// One CSV row: commas (or tabs) outside double quotes, `""` inside quotes.
fn split_row(line: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(s) = out.last_mut() {
                    s.push('"');
                }
            }
            '"' => quoted = !quoted,
            c if c == sep && !quoted => out.push(String::new()),
            c => {
                if let Some(s) = out.last_mut() {
                    s.push(c)
                }
            }
        }
    }
    out
}

/// Whether the text head of a file is a feedback table (its first line a header).
pub fn is_table(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}');
    text.lines().next().is_some_and(|h| table_columns(h).is_some())
}

// ---------------------------------------------------------------------------------------
// Reading

/// Read `path` as feedback when it is feedback; None when it is something else (a trace,
/// a README). Only the file's head is looked at to decide.
pub fn probe(path: &Path, display: &str) -> Option<FeedbackFile> {
    let opened = read::open(path).ok()?;
    let head = opened.head.clone();
    match opened.sniff.clone() {
        Sniff::Text => is_table(&head).then(|| read_table(opened, display)),
        Sniff::Json(container) => {
            let mut first = read::Records::from_head(&head, container);
            let values: Vec<Value> =
                first.peek(super::detect::PEEK_RECORDS).into_iter().map(|r| r.value.clone()).collect();
            let refs: Vec<&Value> = values.iter().collect();
            let kind = detect(&refs)?;
            Some(read_json(kind, opened.records(container), display))
        }
        _ => None,
    }
}

/// Read a file the user named with `--feedback`: an error when it is not feedback.
pub fn read_named(path: &Path) -> anyhow::Result<FeedbackFile> {
    let display = path.display().to_string();
    if let Err(e) = std::fs::metadata(path) {
        anyhow::bail!("{}", crate::paths::describe_io(path, &e));
    }
    match probe(path, &display) {
        Some(f) => Ok(f),
        None => {
            let report = super::read_file(path, &display);
            anyhow::bail!(
                "`{display}` is not a feedback file ({}); feedback is Langfuse scores, LangSmith feedback, OTel \
                 `gen_ai.evaluation.result` logs, or a table with `trace_id` and `score`/`label` columns \
                 (docs/outcomes.md)",
                report.reason
            )
        }
    }
}

fn read_table(opened: read::Opened, display: &str) -> FeedbackFile {
    let mut file = FeedbackFile { kind: FeedbackKind::Table, entries: vec![], warnings: vec![], error: None };
    let mut text = String::new();
    let mut reader = opened.into_reader();
    if let Err(e) = std::io::Read::read_to_string(&mut reader, &mut text) {
        file.error = Some(format!("cannot read: {e}"));
        return file;
    }
    let mut lines = text.trim_start_matches('\u{feff}').lines().enumerate();
    let Some(cols) = lines.next().and_then(|(_, h)| table_columns(h)) else { return file };
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let pos = Pos::Line(i as u64 + 1);
        let cells = split_row(line, cols.sep);
        let cell = |c: Option<usize>| c.and_then(|c| cells.get(c)).map(|s| s.trim()).filter(|s| !s.is_empty());
        let Some(id) = cell(Some(cols.id)) else {
            file.warnings.push(warning(pos, "no trace id in this row; skipped"));
            continue;
        };
        let verdict = cell(Some(cols.verdict));
        let (value, label) = match verdict.map(|v| v.parse::<f64>()) {
            Some(Ok(v)) if v.is_finite() => (Some(v), None),
            _ => (None, verdict.map(str::to_string)),
        };
        file.entries.push(Entry {
            trace_id: id.to_string(),
            step_id: cell(cols.step).map(str::to_string),
            name: cell(cols.name).unwrap_or("feedback").to_string(),
            value,
            label,
            comment: cell(cols.comment).map(str::to_string),
            source: ScoreSource::Unknown,
            origin: format!("{display}:{}", i + 1),
        });
    }
    file
}

fn warning(pos: Pos, message: impl Into<String>) -> super::formats::Warning {
    super::formats::Warning { location: pos.to_string(), message: message.into() }
}

fn read_json(kind: FeedbackKind, records: read::Records, display: &str) -> FeedbackFile {
    let mut file = FeedbackFile { kind, entries: vec![], warnings: vec![], error: None };
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) if e.fatal => {
                file.error = Some(e.to_string());
                break;
            }
            // A malformed line is that line's problem: the rest is still read.
            Err(e) => {
                file.warnings.push(warning(e.pos, e.message));
                continue;
            }
        };
        let before = file.entries.len();
        entries_of(&rec, display, &mut file.entries);
        if file.entries.len() == before {
            file.warnings.push(warning(
                rec.pos,
                format!("not a score or feedback record ({}); skipped", json::keys_of(&rec.value)),
            ));
        }
    }
    file
}

fn origin(display: &str, pos: Pos) -> String {
    match pos {
        Pos::Line(n) => format!("{display}:{n}"),
        other => format!("{display} ({other})"),
    }
}

fn entries_of(rec: &Record, display: &str, out: &mut Vec<Entry>) {
    let v = &rec.value;
    let at = origin(display, rec.pos);
    if let Some(items) = v.as_array() {
        for item in items {
            entry_of_value(item, &at, out);
        }
        return;
    }
    entry_of_value(v, &at, out);
}

fn entry_of_value(v: &Value, at: &str, out: &mut Vec<Entry>) {
    if let Some(batch) = v.get("batch").and_then(Value::as_array) {
        for event in batch.iter().filter(|e| str_of(e, "type") == Some("score-create")) {
            if let Some(body) = event.get("body") {
                out.extend(langfuse_entry(body, at));
            }
        }
        return;
    }
    if has(v, "resourceLogs") || has(v, "resource_logs") {
        out.extend(
            evaluation_candidates(v).into_iter().filter(|r| is_evaluation_record(r)).filter_map(|r| otel_entry(r, at)),
        );
        return;
    }
    for list in ["data", "scores"] {
        if let Some(items) = v.get(list).and_then(Value::as_array) {
            if !has(v, "observations") {
                out.extend(items.iter().filter_map(|s| langfuse_entry(s, at)));
                return;
            }
        }
    }
    if is_langfuse_score(v) {
        out.extend(langfuse_entry(v, at));
    } else if is_langsmith_feedback(v) {
        out.extend(langsmith_entry(v, at));
    } else if is_plain(v) {
        out.extend(plain_entry(v, at));
    }
}

fn langfuse_source(s: Option<&str>) -> ScoreSource {
    match s.map(str::to_ascii_uppercase).as_deref() {
        Some("API") => ScoreSource::UserFeedback,
        Some("EVAL") => ScoreSource::Llm,
        Some("ANNOTATION") => ScoreSource::Human,
        _ => ScoreSource::Unknown,
    }
}

/// A value that is a number, a boolean, or a word: (value, label).
fn value_or_label(v: Option<&Value>) -> (Option<f64>, Option<String>) {
    match v {
        Some(Value::Bool(b)) => (Some(if *b { 1.0 } else { 0.0 }), None),
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => (Some(f), None),
            _ => (None, Some(s.clone())),
        },
        Some(other) => (as_f64(other), None),
        None => (None, None),
    }
}

fn langfuse_entry(s: &Value, at: &str) -> Option<Entry> {
    let trace_id = s.get("traceId").and_then(scalar_string)?;
    // Categorical and boolean scores carry their word in `stringValue` (BOOLEAN: "True").
    let (mut value, mut label) = value_or_label(s.get("value"));
    if let Some(sv) = s.get("stringValue").and_then(scalar_string) {
        label = Some(sv);
        if str_of(s, "dataType") == Some("CATEGORICAL") {
            value = None;
        }
    }
    Some(Entry {
        trace_id,
        step_id: s.get("observationId").and_then(scalar_string),
        name: s.get("name").and_then(scalar_string).unwrap_or_else(|| "score".into()),
        value,
        label,
        comment: s.get("comment").and_then(scalar_string),
        source: langfuse_source(str_of(s, "source")),
        origin: at.to_string(),
    })
}

fn langsmith_entry(f: &Value, at: &str) -> Option<Entry> {
    let run = f.get("run_id").and_then(scalar_string);
    let trace_id = f.get("trace_id").and_then(scalar_string).or_else(|| run.clone())?;
    let (mut value, mut label) = value_or_label(f.get("score"));
    if value.is_none() && label.is_none() {
        (value, label) = value_or_label(f.get("value"));
    } else if let Some(v) = f.get("value").and_then(Value::as_str) {
        label.get_or_insert_with(|| v.to_string());
    }
    let source = match json::path(f, &["feedback_source", "type"]).and_then(Value::as_str) {
        Some("model") => ScoreSource::Llm,
        Some("api" | "app") => ScoreSource::UserFeedback,
        _ => ScoreSource::Unknown,
    };
    Some(Entry {
        step_id: run.filter(|r| Some(r) != f.get("trace_id").and_then(scalar_string).as_ref()),
        trace_id,
        name: f.get("key").and_then(scalar_string).unwrap_or_else(|| "feedback".into()),
        value,
        label,
        comment: f.get("comment").and_then(scalar_string),
        source,
        origin: at.to_string(),
    })
}

fn otel_entry(r: &Value, at: &str) -> Option<Entry> {
    let trace_id = r.get("traceId").or_else(|| r.get("trace_id")).and_then(scalar_string)?;
    let mut attrs = r.get("attributes").map(json::otlp_key_values).unwrap_or_default();
    // Older instrumentations put the evaluation in the body.
    if let Some(body) = r.get("body").map(json::otlp_any_value) {
        for (k, v) in json::otlp_key_values(&body) {
            attrs.entry(k).or_insert(v);
        }
    }
    let get = |k: &str| attrs.get(k);
    Some(Entry {
        trace_id,
        step_id: r.get("spanId").or_else(|| r.get("span_id")).and_then(scalar_string),
        name: get("gen_ai.evaluation.name").and_then(scalar_string).unwrap_or_else(|| "evaluation".into()),
        value: get("gen_ai.evaluation.score.value").and_then(as_f64),
        label: get("gen_ai.evaluation.score.label").and_then(scalar_string),
        comment: get("gen_ai.evaluation.explanation").and_then(scalar_string),
        source: ScoreSource::Unknown,
        origin: at.to_string(),
    })
}

fn plain_entry(v: &Value, at: &str) -> Option<Entry> {
    let trace_id = ID_KEYS.iter().find_map(|k| v.get(*k).and_then(scalar_string))?;
    let verdict = VERDICT_KEYS.iter().find_map(|k| v.get(*k));
    let (mut value, mut label) = value_or_label(verdict);
    // `{"score": 0.2, "label": "fail"}`: both kept.
    if let Some(l) = v.get("label").and_then(Value::as_str) {
        label = Some(l.to_string());
        if verdict == v.get("label") {
            value = None;
        }
    }
    Some(Entry {
        trace_id,
        step_id: v.get("span_id").and_then(scalar_string),
        name: ["name", "key"]
            .iter()
            .find_map(|k| v.get(*k).and_then(scalar_string))
            .unwrap_or_else(|| "feedback".into()),
        value,
        label,
        comment: ["comment", "explanation", "reason"].iter().find_map(|k| v.get(*k).and_then(scalar_string)),
        source: ScoreSource::Unknown,
        origin: at.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// Joining

/// Every feedback entry of a scan, by trace key, and which keys met a trace.
#[derive(Debug, Default)]
pub struct FeedbackSet {
    pub config: FeedbackConfig,
    by_key: HashMap<String, Vec<Entry>>,
    matched: Mutex<HashSet<String>>,
    /// The files read, in order: (display path, kind, entries, warnings, error).
    pub files: Vec<(String, FeedbackFile)>,
}

/// What the join did, for reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FeedbackSummary {
    /// Feedback files read (named with --feedback or found among the traces).
    pub files: Vec<String>,
    pub entries: usize,
    /// Distinct traces the feedback is about.
    pub traces: usize,
    /// Of those, traces found among the traces read.
    pub joined: usize,
    /// Trace ids with feedback that no trace read has (a few, for the message).
    pub not_found: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_found_examples: Vec<String>,
}

impl FeedbackSet {
    pub fn new(config: FeedbackConfig) -> FeedbackSet {
        FeedbackSet { config, ..FeedbackSet::default() }
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    pub fn add(&mut self, display: String, file: FeedbackFile) {
        for e in &file.entries {
            if let Some(k) = key(&e.trace_id) {
                self.by_key.entry(k).or_default().push(e.clone());
            }
        }
        self.files.push((display, file));
    }

    /// Join the feedback about `trace` (by its id, or by one of its steps' ids) into its
    /// outcome. Returns the entries applied (to fold into the file's content hash).
    pub fn apply(&self, trace: &mut Trace) -> Vec<&Entry> {
        if self.by_key.is_empty() {
            return vec![];
        }
        let mut keys = vec![];
        if let Some(k) = key(&trace.id) {
            if self.by_key.contains_key(&k) {
                keys.push(k);
            }
        }
        // LangSmith feedback may name only the run it is about.
        for step in &trace.steps {
            if let Some(k) = key(&step.id) {
                if self.by_key.contains_key(&k) && !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        if keys.is_empty() {
            return vec![];
        }
        if let Ok(mut m) = self.matched.lock() {
            m.extend(keys.iter().cloned());
        }
        let entries: Vec<&Entry> = keys.iter().flat_map(|k| &self.by_key[k]).collect();
        join(trace, &entries, &self.config);
        entries
    }

    pub fn summary(&self) -> Option<FeedbackSummary> {
        if self.files.is_empty() {
            return None;
        }
        let matched = self.matched.lock().map(|m| m.clone()).unwrap_or_default();
        let mut missing: Vec<&String> = self.by_key.keys().filter(|k| !matched.contains(*k)).collect();
        missing.sort();
        let not_found_examples =
            missing.iter().take(5).filter_map(|k| self.by_key[*k].first().map(|e| e.trace_id.clone())).collect();
        Some(FeedbackSummary {
            files: self.files.iter().map(|(d, _)| d.clone()).collect(),
            entries: self.files.iter().map(|(_, f)| f.entries.len()).sum(),
            traces: self.by_key.len(),
            joined: self.by_key.len() - missing.len(),
            not_found: missing.len(),
            not_found_examples,
        })
    }

    /// The per-file line for `traces ls` / the file report's reason.
    pub fn file_reason(&self, file: &FeedbackFile) -> String {
        let matched = self.matched.lock().map(|m| m.clone()).unwrap_or_default();
        let keys: HashSet<String> = file.entries.iter().filter_map(|e| key(&e.trace_id)).collect();
        let joined = keys.iter().filter(|k| matched.contains(*k)).count();
        let mut reason = format!(
            "feedback: {}, {} entr{} for {} trace(s), {joined} joined",
            file.kind.describe(),
            file.entries.len(),
            if file.entries.len() == 1 { "y" } else { "ies" },
            keys.len()
        );
        if joined < keys.len() {
            reason.push_str(&format!("; feedback for {} trace(s) not found", keys.len() - joined));
        }
        reason
    }
}

/// "feedback for N traces not found", naming a few, when some feedback met no trace.
pub fn not_found_warning(s: &FeedbackSummary) -> Option<String> {
    (s.not_found > 0).then(|| {
        format!(
            "feedback for {} trace(s) not found among the traces read (e.g. {}); check that the feedback \
             and the traces come from the same project and export",
            s.not_found,
            s.not_found_examples.join(", ")
        )
    })
}

/// Fold feedback entries into a trace's derived outcome (see the module doc for precedence).
pub fn join(trace: &mut Trace, entries: &[&Entry], config: &FeedbackConfig) {
    let mut fails = Vec::new();
    let mut passes = Vec::new();
    let mut info = Vec::new();
    for e in entries {
        let verdict = config.verdict(e);
        let shown = match (&e.label, e.value) {
            (Some(l), Some(v)) => format!("{l} ({v})"),
            (Some(l), None) => l.clone(),
            (None, Some(v)) => format!("{v}"),
            (None, None) => "no value".into(),
        };
        let mut detail = format!("`{}` = {shown}", e.name);
        if e.label.is_none() && e.value.is_some() && verdict.is_some() {
            detail.push_str(&format!(" ({})", config.threshold_text(e)));
        }
        if let Some(c) = &e.comment {
            detail.push_str(&format!(": {}", json::clip(c, 160)));
        }
        detail.push_str(&format!(" [{}]", e.origin));
        let step = e.step_id.as_ref().filter(|s| trace.steps.iter().any(|st| &st.id == *s)).cloned();
        let ev = Evidence { signal: "feedback".into(), detail, step, handled: false };
        match verdict {
            Some(false) => fails.push(ev),
            Some(true) => passes.push(ev),
            None => info.push(ev),
        }
    }
    let own = &trace.outcome;
    let explicit = own.evidence.iter().any(|e| !e.handled && (e.signal.starts_with("signal:") || e.signal == "score"));
    let decides = config.precedence == Precedence::Feedback || !explicit;
    let status = match (decides, fails.is_empty(), passes.is_empty()) {
        (false, _, _) => own.status,
        (true, false, _) => OutcomeStatus::Failed,
        (true, true, false) if config.precedence == Precedence::Feedback => OutcomeStatus::Passed,
        // Passing feedback does not clear an unhandled error, as a passing reward would not.
        (true, true, false) if own.status == OutcomeStatus::Failed => OutcomeStatus::Failed,
        (true, true, false) => OutcomeStatus::Passed,
        (true, true, true) => own.status,
    };
    let old = std::mem::take(&mut trace.outcome.evidence);
    let mut evidence = Vec::with_capacity(old.len() + entries.len());
    // The evidence that decided comes first: it is what reports show.
    if decides && status == OutcomeStatus::Failed && !fails.is_empty() {
        evidence.extend(fails);
        evidence.extend(old);
        evidence.extend(passes);
    } else if decides && status == OutcomeStatus::Passed && !passes.is_empty() {
        evidence.extend(passes);
        evidence.extend(old);
        evidence.extend(fails);
    } else {
        evidence.extend(old);
        evidence.extend(fails);
        evidence.extend(passes);
    }
    evidence.extend(info);
    trace.outcome.status = status;
    trace.outcome.evidence = evidence;
}

/// Feedback files named by the user and found beside the trace files named on the command
/// line (siblings whose name says feedback: `*feedback*`, `*score*`, `*eval*`, `*rating*`,
/// `*annotation*`). Files under a named folder are found by the scan itself.
pub fn beside(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths.iter().filter(|p| p.is_file()) {
        let Some(dir) = p.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d }) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|f| {
                let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
                !name.starts_with('.')
                    && ["feedback", "score", "eval", "rating", "annotation"].iter().any(|w| name.contains(w))
                    && !paths.contains(f)
            })
            .collect();
        found.sort();
        out.extend(found);
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(name: &str, value: Option<f64>, label: Option<&str>) -> Entry {
        Entry {
            trace_id: "t".into(),
            step_id: None,
            name: name.into(),
            value,
            label: label.map(str::to_string),
            comment: None,
            source: ScoreSource::Unknown,
            origin: "f:1".into(),
        }
    }

    #[test]
    fn verdicts_follow_labels_thresholds_and_direction() {
        let c = FeedbackConfig::default();
        assert_eq!(c.verdict(&entry("correctness", Some(0.2), None)), Some(false));
        assert_eq!(c.verdict(&entry("correctness", Some(0.5), None)), Some(true));
        assert_eq!(c.verdict(&entry("hallucination", Some(0.9), None)), Some(false));
        assert_eq!(c.verdict(&entry("hallucination", Some(0.1), None)), Some(true));
        assert_eq!(c.verdict(&entry("user", None, Some("Thumbs_Down"))), Some(false));
        assert_eq!(c.verdict(&entry("user", None, Some("True"))), Some(true));
        assert_eq!(c.verdict(&entry("note", None, Some("looks odd"))), None);
        let c = FeedbackConfig {
            thresholds: [("stars".to_string(), 3.0)].into(),
            names: vec!["stars".into()],
            failing_labels: vec!["meh".into()],
            ..FeedbackConfig::default()
        };
        assert_eq!(c.verdict(&entry("stars", Some(2.0), None)), Some(false));
        assert_eq!(c.verdict(&entry("stars", Some(4.0), None)), Some(true));
        assert_eq!(c.verdict(&entry("Stars", None, Some("meh"))), Some(false));
        assert_eq!(c.verdict(&entry("correctness", Some(0.0), None)), None, "not a listed name");
    }

    #[test]
    fn ids_meet_across_spellings() {
        assert_eq!(key("0192F3A4-1B2C-7D3E-8F40-5A6B7C8D9E0F"), key("0192f3a41b2c7d3e8f405a6b7c8d9e0f"));
        assert_eq!(key("0xAB12"), key("ab12"));
        assert_eq!(key("run-7"), Some("run-7".into()));
    }

    #[test]
    fn kinds_by_keys() {
        let k = |v: Value| record_kind(&v);
        assert_eq!(
            k(json!({"traceId": "a", "name": "q", "value": 1, "dataType": "NUMERIC"})),
            Some(FeedbackKind::LangfuseScores)
        );
        assert_eq!(
            k(json!({"batch": [{"type": "score-create", "body": {"traceId": "a", "name": "q", "value": 1}}]})),
            Some(FeedbackKind::LangfuseIngestion)
        );
        assert_eq!(k(json!({"batch": [{"type": "trace-create", "body": {}}]})), None);
        assert_eq!(k(json!({"run_id": "r", "key": "correctness", "score": 0})), Some(FeedbackKind::LangsmithFeedback));
        assert_eq!(k(json!({"trace_id": "t", "label": "fail", "comment": "x"})), Some(FeedbackKind::Table));
        // Traces stay traces.
        assert_eq!(k(json!({"traceId": "a", "name": "q", "type": "GENERATION", "startTime": "t"})), None);
        assert_eq!(k(json!({"run_type": "llm", "id": "1", "trace_id": "1", "key": "x", "score": 1})), None);
        assert_eq!(k(json!({"trace_id": "t", "score": 1, "messages": []})), None);
        assert_eq!(k(json!({"trace": "text", "trace_id": 1, "score": 1})), None);
        let logs = |event: &str| json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"eventName": event, "traceId": "ab"}]}]}]});
        assert_eq!(k(logs("gen_ai.evaluation.result")), Some(FeedbackKind::OtelEvaluations));
        assert_eq!(k(logs("gen_ai.choice")), None);
    }

    #[test]
    fn csv_rows_with_quotes() {
        assert_eq!(split_row(r#"t1,0.2,"bad, very ""bad""""#, ','), vec!["t1", "0.2", r#"bad, very "bad""#]);
        assert!(is_table(b"trace_id,label,comment\nt1,fail,x\n"));
        assert!(is_table(b"Trace ID\tScore\n"));
        assert!(!is_table(b"instance_id,resolved\nx,true\n"));
    }

    fn trace_with(status: OutcomeStatus, signal: &str) -> Trace {
        let mut t = Trace::new("otlp-json", "f", "t");
        t.outcome.status = status;
        if !signal.is_empty() {
            t.outcome.evidence.push(Evidence {
                signal: signal.into(),
                detail: String::new(),
                step: None,
                handled: false,
            });
        }
        t
    }

    #[test]
    fn precedence_between_the_trace_and_its_feedback() {
        let down = entry("user", None, Some("thumbs_down"));
        let up = entry("user", None, Some("thumbs_up"));
        let c = FeedbackConfig::default();
        // No verdict of its own: feedback decides.
        let mut t = trace_with(OutcomeStatus::Unknown, "");
        join(&mut t, &[&down], &c);
        assert_eq!(t.outcome.status, OutcomeStatus::Failed);
        assert_eq!(t.outcome.evidence[0].signal, "feedback");
        let mut t = trace_with(OutcomeStatus::Unknown, "");
        join(&mut t, &[&up], &c);
        assert_eq!(t.outcome.status, OutcomeStatus::Passed);
        // An unhandled error is not cleared by a thumbs up.
        let mut t = trace_with(OutcomeStatus::Failed, "error:span_status");
        join(&mut t, &[&up], &c);
        assert_eq!(t.outcome.status, OutcomeStatus::Failed);
        // The trace's own verdict wins by default, and loses under precedence = feedback.
        let mut t = trace_with(OutcomeStatus::Passed, "signal:reward");
        join(&mut t, &[&down], &c);
        assert_eq!(t.outcome.status, OutcomeStatus::Passed);
        assert!(t.outcome.evidence.iter().any(|e| e.signal == "feedback"));
        let f = FeedbackConfig { precedence: Precedence::Feedback, ..FeedbackConfig::default() };
        let mut t = trace_with(OutcomeStatus::Passed, "signal:reward");
        join(&mut t, &[&down], &f);
        assert_eq!(t.outcome.status, OutcomeStatus::Failed);
        let mut t = trace_with(OutcomeStatus::Failed, "error:span_status");
        join(&mut t, &[&up], &f);
        assert_eq!(t.outcome.status, OutcomeStatus::Passed);
    }
}
