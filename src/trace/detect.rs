//! Content-based format detection, in the order of trace-formats.md §10: the container
//! first (compression, JSON layout), then the first records' keys. The extension is only
//! a tie-breaker, never the decision. Files that are not traces get a reason a person
//! recognizes ("a README", "TRAIL annotation labels") instead of a parse error.

use std::path::Path;

use serde_json::Value;

use super::formats::Format;
use super::json::{self, keys_of, str_of};
use super::read::{Container, Record, Sniff};

/// How many leading records detection may look at.
pub const PEEK_RECORDS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    Trace { format: Format, reason: String },
    NotTrace { reason: String },
}

fn hit(format: Format, reason: impl Into<String>) -> Option<Detection> {
    Some(Detection::Trace { format, reason: reason.into() })
}

fn not_trace(reason: impl Into<String>) -> Detection {
    Detection::NotTrace { reason: reason.into() }
}

/// Why a non-JSON file is not a trace, by what it looks like.
pub fn classify_non_json(path: &Path, sniff: &Sniff, head: &[u8]) -> Detection {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match sniff {
        Sniff::Empty => not_trace("empty file"),
        Sniff::Binary(what) => not_trace(format!("not a trace: {what}")),
        Sniff::Json(_) => not_trace("JSON of an unknown shape"),
        Sniff::Text => {
            let what = if name.starts_with("readme") || ext == "md" || ext == "rst" {
                "documentation (Markdown/text)"
            } else if name.starts_with("license") || name.starts_with("copying") {
                "a license text"
            } else if super::feedback::is_table(head) {
                return not_trace(super::feedback::FeedbackKind::Table.reason());
            } else if ext == "csv" || ext == "tsv" {
                "a table (CSV/TSV), e.g. labels or outcomes"
            } else if ext == "py" || ext == "rs" || ext == "sh" || ext == "js" || ext == "ts" {
                "source code"
            } else if ext == "toml" || ext == "yaml" || ext == "yml" || ext == "ini" {
                "a config file"
            } else {
                // A run's log written as text: one message, when it looks like an agent's.
                return match super::formats::plain_text::judge(head) {
                    Ok(reason) => Detection::Trace { format: Format::TextLog, reason },
                    Err(reason) => not_trace(reason),
                };
            };
            not_trace(format!("not a trace: {what}"))
        }
    }
}

/// Decide the format from the container and the first records.
pub fn detect(path: &Path, _container: Container, first: &[&Record]) -> Detection {
    let Some(head) = first.first().map(|r| &r.value) else {
        return not_trace("no JSON records (empty array or only blank lines)");
    };
    let values: Vec<&Value> = first.iter().map(|r| &r.value).collect();
    if let Some(d) = detect_values(path, head, &values) {
        return d;
    }
    if let Some(reason) = known_non_trace(path, head) {
        return not_trace(reason);
    }
    not_trace(format!("unknown JSON shape: first record is {}; see `autoharness traces formats`", keys_of(head)))
}

fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some()
}

fn detect_values(path: &Path, head: &Value, values: &[&Value]) -> Option<Detection> {
    // Scores and feedback about traces are outcome evidence, joined to the traces by id
    // (`trace::feedback`): a file of them is never a trace with zero steps.
    if let Some(kind) = super::feedback::detect(values) {
        return Some(not_trace(kind.reason()));
    }
    // Wrappers that hold records of another format: look inside, then decide.
    if let Some(arr) = head.as_array() {
        // A JSON array as a single record only happens for nested arrays; look at its head.
        if let Some(inner) = arr.first() {
            return detect_values(path, inner, &[inner]);
        }
        return None;
    }
    let obj = head.as_object()?;

    // 2/3: OTLP containers.
    if has(head, "resourceSpans") || has(head, "resource_spans") {
        return hit(Format::OtlpJson, "OTLP/JSON: records have `resourceSpans`");
    }
    if has(head, "resourceLogs") || has(head, "resource_logs") {
        return hit(Format::OtlpLogs, "OTLP/JSON logs: records have `resourceLogs`");
    }
    // 4: OTel SDK console exporter.
    if path_str(head, &["context", "span_id"]).is_some_and(|s| s.starts_with("0x"))
        && str_of(head, "kind").is_some_and(|k| k.starts_with("SpanKind."))
    {
        return hit(Format::OtelConsole, "OTel SDK console JSON: `context.span_id` 0x… and `kind` SpanKind.*");
    }
    // 5: Phoenix span JSON (trace file, REST page, or bare spans).
    let phoenix_span = |v: &Value| has(v, "span_kind") && has(v, "status_code") && has(v, "context");
    if (has(head, "traceId") && first_of(head, "spans").is_some_and(phoenix_span))
        || first_of(head, "data").is_some_and(phoenix_span)
        || phoenix_span(head)
    {
        return hit(Format::Phoenix, "Phoenix span JSON: spans with `context`, `span_kind`, `status_code`");
    }
    // 6: ClickHouse-style span rows (TRAIL).
    let span_row = |v: &Value| {
        (has(v, "span_attributes") || has(v, "SpanAttributes"))
            && (has(v, "span_name") || has(v, "SpanName") || has(v, "service_name") || has(v, "ServiceName"))
    };
    if first_of(head, "spans").is_some_and(span_row) || span_row(head) {
        return hit(Format::SpanRows, "span rows: `span_name` + `span_attributes` (TRAIL / ClickHouse schema)");
    }
    // ATIF (Harbor trajectory.json): `schema_version: ATIF-v…`, or a session with ATIF steps.
    let atif_step = |v: &Value| has(v, "step_id") && matches!(str_of(v, "source"), Some("system" | "user" | "agent"));
    if str_of(head, "schema_version").is_some_and(|s| s.starts_with("ATIF"))
        || (has(head, "session_id") && has(head, "agent") && first_of(head, "steps").is_some_and(atif_step))
    {
        return hit(Format::Atif, "ATIF trajectory: `schema_version: ATIF-v…` with `steps`");
    }
    // 7: OpenAI Agents SDK.
    let agents_obj = |v: &Value| {
        matches!(str_of(v, "object"), Some("trace" | "trace.span"))
            || (has(v, "span_data") && str_of(v, "id").is_some_and(|id| id.starts_with("span_")))
    };
    if values.iter().any(|v| agents_obj(v))
        || first_of(head, "data").is_some_and(agents_obj)
        || head.get("span").is_some_and(agents_obj)
    {
        return hit(Format::OpenaiAgents, "OpenAI Agents SDK: `object: trace.span` records");
    }
    // 8: LangSmith.
    let ls_run = |v: &Value| {
        has(v, "run_type") && (has(v, "id") || has(v, "run_id")) && (has(v, "trace_id") || has(v, "dotted_order"))
    };
    if ls_run(head)
        || first_of(head, "post").is_some_and(ls_run)
        || first_of(head, "patch").is_some_and(ls_run)
        || first_of(head, "runs").is_some_and(ls_run)
        || head.get("child_runs").is_some() && has(head, "run_type")
    {
        return hit(Format::Langsmith, "LangSmith runs: `run_type` + `id`/`run_id` + `trace_id`");
    }
    // 9: Langfuse.
    let lf_obs = |v: &Value| {
        has(v, "parentObservationId")
            || (has(v, "traceId")
                && has(v, "startTime")
                && str_of(v, "type").is_some_and(|t| LANGFUSE_TYPES.contains(&t)))
    };
    let lf_score = |v: &Value| {
        has(v, "traceId")
            && has(v, "name")
            && (has(v, "dataType") || has(v, "source"))
            && (has(v, "value") || has(v, "stringValue"))
    };
    if (has(head, "trace") && has(head, "observations"))
        || (has(head, "observations") && has(head, "scores"))
        || lf_obs(head)
        || lf_score(head)
        || first_of(head, "data").is_some_and(|d| lf_obs(d) || (has(d, "observations") && has(d, "id")))
        || first_of(head, "observations").is_some_and(lf_obs)
    {
        return hit(Format::Langfuse, "Langfuse: `trace` + `observations` / observation rows");
    }
    // 10/11: Claude Code transcript and stream-json.
    if values
        .iter()
        .any(|v| has(v, "sessionId") && has(v, "uuid") && str_of(v, "type").is_some_and(|t| CLAUDE_TYPES.contains(&t)))
        || (has(head, "loglines"))
    {
        return hit(Format::ClaudeCode, "Claude Code transcript: lines with `sessionId`, `uuid`, `type`");
    }
    let path_hint = path.to_string_lossy().contains("/.claude/projects/");
    if path_hint && values.iter().any(|v| str_of(v, "type").is_some_and(|t| CLAUDE_TYPES.contains(&t))) {
        return hit(Format::ClaudeCode, "Claude Code transcript: path under `.claude/projects/`");
    }
    if values.iter().any(|v| {
        has(v, "session_id")
            && (str_of(v, "type") == Some("result")
                || (str_of(v, "type") == Some("system") && str_of(v, "subtype") == Some("init"))
                || (matches!(str_of(v, "type"), Some("assistant" | "user")) && has(v, "message")))
    }) {
        return hit(
            Format::ClaudeStreamJson,
            "Claude stream-json: `session_id` lines with `type: system/init` or `result`",
        );
    }
    // 12: Codex rollout.
    let codex_line = |v: &Value| {
        has(v, "timestamp")
            && has(v, "payload")
            && matches!(
                str_of(v, "type"),
                Some("session_meta" | "response_item" | "event_msg" | "turn_context" | "compacted")
            )
    };
    if values.iter().any(|v| codex_line(v)) {
        return hit(Format::Codex, "Codex rollout: `{timestamp, type, payload}` lines");
    }
    // 13/14: SWE-agent and mini-swe-agent.
    if str_of(head, "trajectory_format").is_some_and(|f| f.starts_with("mini-swe-agent")) {
        return hit(Format::MiniSweAgent, "mini-swe-agent: `trajectory_format: mini-swe-agent-*`");
    }
    if has(head, "trajectory")
        && (path_str(head, &["info", "exit_status"]).is_some() || has(head, "history") || has(head, "info"))
    {
        return hit(Format::SweAgent, "SWE-agent .traj: `trajectory` + `info.exit_status`");
    }
    if has(head, "messages")
        && json::path(head, &["info", "exit_status"]).is_some()
        && json::path(head, &["info", "model_stats"]).is_some()
    {
        return hit(Format::MiniSweAgent, "mini-swe-agent: `messages` + `info.exit_status` + `model_stats`");
    }
    // 15: τ-bench / AgentRx.
    if has(head, "task_id") && has(head, "traj") && (has(head, "reward") || has(head, "info")) {
        return hit(Format::TauBench, "τ-bench results: records with `task_id`, `reward`, `traj`");
    }
    if has(head, "simulations") && head.get("simulations").is_some_and(Value::is_array) {
        return hit(Format::TauBench, "τ²-bench results: `simulations` list");
    }
    // Labels shipped beside traces must be refused before the generic fallbacks.
    if let Some(reason) = known_non_trace(path, head) {
        return Some(not_trace(reason));
    }
    // MAST-style records: a free-text trace inside JSON.
    if head.get("trace").is_some_and(Value::is_string) {
        return hit(Format::TextLog, "free-text log records: `trace` is a text blob");
    }
    // 16: generic transcripts.
    if head.get("history").is_some_and(Value::is_array) {
        return hit(Format::ChatHistory, "chat log: `history` list of messages");
    }
    if head.get("messages").is_some_and(|m| m.as_array().is_some_and(|a| a.first().is_some_and(is_message))) {
        return hit(Format::ChatHistory, "chat log: `messages` list");
    }
    if is_message(head) {
        return hit(Format::Messages, "message list: records with `role` + `content`");
    }
    // Flat span attribute maps (OpenInference / GenAI fixtures).
    if obj
        .keys()
        .any(|k| k == "openinference.span.kind" || k.starts_with("gen_ai.") || k.starts_with("llm.input_messages."))
    {
        return hit(Format::SpanAttributes, "a flat span attribute map with `gen_ai.*` / OpenInference keys");
    }
    None
}

/// JSON that is recognizably not a trace: benchmark labels, schemas, manifests.
fn known_non_trace(path: &Path, head: &Value) -> Option<String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if has(head, "errors") && has(head, "scores") && !has(head, "spans") {
        return Some("not a trace: TRAIL annotation labels (`errors` + `scores`)".into());
    }
    if has(head, "trajectory_id") && has(head, "failures") {
        return Some("not a trace: failure labels (`trajectory_id` + `failures`)".into());
    }
    if has(head, "$schema") || (has(head, "$defs") || has(head, "definitions")) && has(head, "type") {
        return Some("not a trace: a JSON Schema".into());
    }
    if has(head, "resourceMetrics") || has(head, "resource_metrics") {
        return Some("not a trace: OTLP metrics (only traces and logs are read)".into());
    }
    if name == "report.json"
        || head.as_object().is_some_and(|o| o.values().any(|v| has(v, "resolved") && has(v, "tests_status")))
    {
        return Some("not a trace: SWE-bench evaluation report (an outcome, read beside the trajectory)".into());
    }
    if super::formats::atif::is_trial_result(head) {
        return Some(super::formats::atif::trial_result_reason(path, head));
    }
    if has(head, "trial_name") && has(head, "task") && has(head, "agent") {
        return Some("not a trace: a Harbor trial config".into());
    }
    if has(head, "n_total_trials") && (has(head, "stats") || has(head, "started_at")) {
        return Some("not a trace: a Harbor job summary (each trial's result.json holds its reward)".into());
    }
    if name == "package.json" || name == "tsconfig.json" || name.ends_with(".lock") {
        return Some("not a trace: a project manifest".into());
    }
    None
}

/// SWE-bench `report.json` (or `outcomes.csv`) sits beside mini-swe-agent trajectories
/// and carries the verdict the trajectory does not; see `formats::swe_agent`.
fn first_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key)?.as_array()?.first()
}

fn path_str<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a str> {
    json::path(v, keys)?.as_str()
}

fn is_message(v: &Value) -> bool {
    has(v, "role") && (has(v, "content") || has(v, "tool_calls") || has(v, "parts"))
}

const LANGFUSE_TYPES: [&str; 11] = [
    "SPAN",
    "GENERATION",
    "EVENT",
    "AGENT",
    "TOOL",
    "CHAIN",
    "RETRIEVER",
    "EVALUATOR",
    "EMBEDDING",
    "GUARDRAIL",
    "TRACE",
];

const CLAUDE_TYPES: [&str; 20] = [
    "user",
    "assistant",
    "system",
    "summary",
    "file-history-snapshot",
    "queue-operation",
    "progress",
    "pr-link",
    "agent-name",
    "custom-title",
    "last-prompt",
    "attachment",
    "permission-mode",
    "ai-title",
    "agent-setting",
    "bridge-session",
    "worktree-state",
    "result",
    "tool_result",
    "tool_use",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::read::Pos;
    use serde_json::json;

    fn check(value: Value, expect: Option<Format>) {
        let rec = Record { value, pos: Pos::Line(1) };
        let got = detect(Path::new("x.json"), Container::Lines, &[&rec]);
        match (got, expect) {
            (Detection::Trace { format, .. }, Some(f)) => assert_eq!(format, f),
            (Detection::NotTrace { .. }, None) => {}
            (got, expect) => panic!("expected {expect:?}, got {got:?}"),
        }
    }

    #[test]
    fn rules_in_order() {
        check(json!({"resourceSpans": []}), Some(Format::OtlpJson));
        check(json!({"resource_logs": []}), Some(Format::OtlpLogs));
        check(json!({"context": {"span_id": "0xab"}, "kind": "SpanKind.INTERNAL"}), Some(Format::OtelConsole));
        check(json!({"object": "trace.span", "id": "span_1"}), Some(Format::OpenaiAgents));
        check(json!({"run_type": "llm", "id": "1", "trace_id": "1"}), Some(Format::Langsmith));
        check(json!({"trace": {}, "observations": []}), Some(Format::Langfuse));
        check(json!({"sessionId": "s", "uuid": "u", "type": "user"}), Some(Format::ClaudeCode));
        check(json!({"timestamp": "t", "type": "session_meta", "payload": {}}), Some(Format::Codex));
        check(json!({"trajectory_format": "mini-swe-agent-1"}), Some(Format::MiniSweAgent));
        check(json!({"trajectory": [], "info": {"exit_status": "submitted"}}), Some(Format::SweAgent));
        check(json!({"task_id": 1, "reward": 0.0, "traj": []}), Some(Format::TauBench));
        check(json!({"history": [{"role": "user", "content": "hi"}]}), Some(Format::ChatHistory));
        check(json!({"trace": "some log text", "trace_id": 1}), Some(Format::TextLog));
        check(json!({"role": "user", "content": "hi"}), Some(Format::Messages));
        check(json!({"errors": [], "scores": []}), None);
        check(json!({"trajectory_id": 2, "failures": []}), None);
        check(json!({"name": "x", "version": "1"}), None);
    }
}
