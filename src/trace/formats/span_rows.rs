//! Row-per-span dumps (trace-formats.md §1.8): TRAIL / Patronus exports
//! `{trace_id, spans: [root span with nested child_spans]}` and flat rows in the
//! OpenTelemetry Collector ClickHouse exporter schema (`TraceId`, `SpanId`,
//! `ParentSpanId`, `SpanName`, `SpanKind`, `SpanAttributes`, `ResourceAttributes`,
//! `Timestamp`, `Duration`, `StatusCode`, `StatusMessage`, `Events.*`), in snake_case or
//! PascalCase. Attribute maps may be objects, JSON strings or Python reprs. The
//! attributes are OpenInference (TRAIL is smolagents + OpenInference) and go through the
//! shared mapping of [`super::otlp::map_span`].
//!
//! `logs` (Patronus function logs: body `{function.name, function.arguments,
//! function.output}`) become step events named `log`. Nesting is walked with an explicit
//! stack and capped at [`MAX_DEPTH`], so hostile input cannot overflow the stack.

use serde_json::{Map, Value};

use super::otlp::{
    Collector, MapOpts, SpanIn, flat_attrs, flat_attrs_owned, flat_events, id_of, map_span, span_kind_name, status_code,
};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, parse_iso_duration, parse_time};
use crate::trace::model::{AttrMap, Event, Nanos};
use crate::trace::read::{Pos, Records};

/// Deeper `child_spans` nesting than this is cut with a warning.
pub const MAX_DEPTH: usize = 256;

pub fn parse(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let mut col = Collector::new(Format::SpanRows);
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        // An object always yields itself, so only other values can yield nothing; their
        // description is cheap.
        let what = if rec.value.is_object() { String::new() } else { json::keys_of(&rec.value) };
        // The rows are taken apart rather than copied: attribute payloads are most of the
        // bytes of such dumps.
        let mut docs = Vec::new();
        flatten(rec.value, &mut docs, 0);
        if docs.is_empty() {
            ctx.warn(rec.pos, format!("not a span row: {what}"));
        }
        for mut doc in docs {
            if doc.get("spans").is_some_and(Value::is_array) {
                let trace_id = field(&doc, &["trace_id", "TraceId", "traceId"]).and_then(id_of);
                let Some(Value::Array(spans)) = doc.get_mut("spans").map(Value::take) else { continue };
                walk(spans, trace_id.as_deref(), rec.pos, ctx, &mut col);
            } else if is_row(&doc) {
                walk(vec![doc], None, rec.pos, ctx, &mut col);
            } else {
                ctx.warn(rec.pos, format!("not a span row: {}", json::keys_of(&doc)));
            }
        }
    }
    col.finish(sink);
    Ok(())
}

fn flatten(v: Value, out: &mut Vec<Value>, depth: u32) {
    match v {
        Value::Array(items) if depth < 4 => {
            for item in items {
                flatten(item, out, depth + 1);
            }
        }
        Value::Object(_) => out.push(v),
        _ => {}
    }
}

fn is_row(v: &Value) -> bool {
    ["span_attributes", "SpanAttributes", "span_id", "SpanId", "span_name", "SpanName"]
        .iter()
        .any(|k| v.get(*k).is_some())
}

fn field<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| v.get(*k)).filter(|v| !v.is_null())
}

/// [`field`], taken out of the row.
fn take_field(v: &mut Value, keys: &[&str]) -> Option<Value> {
    let key = keys.iter().find(|k| v.get(**k).is_some())?;
    v.get_mut(*key).map(Value::take).filter(|v| !v.is_null())
}

/// Walk a span forest (children under `child_spans`) iteratively, depth-capped.
fn walk(roots: Vec<Value>, file_trace: Option<&str>, pos: Pos, ctx: &mut FileCtx<'_>, col: &mut Collector) {
    let mut stack: Vec<(Value, Option<String>, usize)> = roots.into_iter().rev().map(|r| (r, None, 0)).collect();
    let mut cut = false;
    while let Some((mut row, nest_parent, depth)) = stack.pop() {
        if !row.is_object() {
            ctx.warn(pos, "a span row that is not an object");
            continue;
        }
        let span_id = field(&row, &["span_id", "SpanId", "spanId"]).and_then(id_of);
        if let Some(Value::Array(children)) = take_field(&mut row, &["child_spans", "ChildSpans", "children"]) {
            if depth >= MAX_DEPTH {
                cut = true;
            } else {
                for c in children.into_iter().rev() {
                    stack.push((c, span_id.clone(), depth + 1));
                }
            }
        }
        let trace_id =
            field(&row, &["trace_id", "TraceId", "traceId"]).and_then(id_of).or_else(|| file_trace.map(str::to_string));
        let Some(trace_id) = trace_id else {
            ctx.warn(pos, "a span row without a trace id was skipped");
            continue;
        };
        let (span, resource) = row_span(row, span_id, nest_parent);
        let out = map_span(span, MapOpts::default());
        col.add(ctx, pos, &trace_id, &resource, out);
    }
    if cut {
        ctx.warn(pos, format!("`child_spans` nested deeper than {MAX_DEPTH} levels; the deeper spans were skipped"));
    }
}

fn row_span(mut row: Value, span_id: Option<String>, nest_parent: Option<String>) -> (SpanIn, AttrMap) {
    let attributes =
        take_field(&mut row, &["span_attributes", "SpanAttributes"]).map(flat_attrs_owned).unwrap_or_default();
    let row = &row;
    let start = field(row, &["timestamp", "Timestamp", "start_time", "StartTime"]).and_then(parse_time);
    let end = field(row, &["end_time", "EndTime"]).and_then(parse_time).or_else(|| {
        let d = field(row, &["duration", "Duration"])?;
        let nanos: Nanos = match d {
            Value::String(s) if s.trim_start().starts_with('P') => parse_iso_duration(s)?,
            // ClickHouse `Duration` is Int64 nanoseconds.
            other => Nanos::from(json::as_i64(other)?),
        };
        start?.checked_add(nanos)
    });
    let mut resource = field(row, &["resource_attributes", "ResourceAttributes"]).map(flat_attrs).unwrap_or_default();
    if let Some(service) = field(row, &["service_name", "ServiceName"]).and_then(Value::as_str) {
        resource.entry("service.name".to_string()).or_insert_with(|| Value::String(service.to_string()));
    }
    let mut events = field(row, &["events", "Events"]).map(flat_events).unwrap_or_default();
    events.extend(clickhouse_events(row));
    if let Some(Value::Array(logs)) = field(row, &["logs", "Logs"]) {
        events.extend(logs.iter().filter(|l| l.is_object()).map(log_event));
    }
    let parent_id = match field(row, &["parent_span_id", "ParentSpanId", "parent_id"]) {
        Some(v) => id_of(v),
        None => nest_parent,
    };
    let span = SpanIn {
        span_id,
        parent_id,
        name: field(row, &["span_name", "SpanName", "name"]).and_then(Value::as_str).map(str::to_string),
        span_kind: field(row, &["span_kind", "SpanKind"]).and_then(span_kind_name),
        start,
        end,
        status: field(row, &["status_code", "StatusCode"]).map(status_code).unwrap_or_default(),
        status_message: field(row, &["status_message", "StatusMessage"])
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string),
        attributes,
        events,
        scope: field(row, &["scope_name", "ScopeName"])
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    };
    (span, resource)
}

/// ClickHouse stores nested columns as parallel arrays: `Events.Timestamp`,
/// `Events.Name`, `Events.Attributes`.
fn clickhouse_events(row: &Value) -> Vec<Event> {
    let Some(names) = row.get("Events.Name").and_then(Value::as_array) else {
        return Vec::new();
    };
    let times = row.get("Events.Timestamp").and_then(Value::as_array);
    let attrs = row.get("Events.Attributes").and_then(Value::as_array);
    names
        .iter()
        .enumerate()
        .map(|(i, n)| Event {
            name: n.as_str().unwrap_or("event").to_string(),
            time: times.and_then(|t| t.get(i)).and_then(parse_time),
            attributes: attrs.and_then(|a| a.get(i)).map(flat_attrs).unwrap_or_default(),
        })
        .collect()
}

/// A Patronus log record as an event: the body's fields (`function.name`,
/// `function.arguments`, `function.output`) plus severity and log attributes.
fn log_event(l: &Value) -> Event {
    let mut attributes: AttrMap = Map::new();
    match l.get("body") {
        Some(Value::Object(body)) => {
            for (k, v) in body {
                let mut v = json::decode_json_string(v.clone());
                scrub_answers(&mut v, 0);
                attributes.insert(k.clone(), v);
            }
        }
        Some(v @ Value::String(_)) => {
            attributes.insert("body".into(), json::decode_json_string(v.clone()));
        }
        _ => {}
    }
    for key in ["severity_text", "SeverityText"] {
        if let Some(v) = l.get(key).filter(|v| !v.is_null()) {
            attributes.insert("severity_text".into(), v.clone());
        }
    }
    if let Some(la) = field(l, &["log_attributes", "LogAttributes"]) {
        for (k, v) in flat_attrs(la) {
            attributes.entry(k).or_insert(v);
        }
    }
    Event { name: "log".into(), time: field(l, &["timestamp", "Timestamp"]).and_then(parse_time), attributes }
}

/// Benchmark answers the TRAIL harness logged with its own function calls (GAIA
/// `true_answer` + `Annotator Metadata`, SWE-bench gold `patch`, `test_patch`,
/// `FAIL_TO_PASS`, `PASS_TO_PASS`): never let them into the model, the miner must stay
/// blind to them.
const ANSWER_KEYS: [&str; 6] =
    ["true_answer", "Annotator Metadata", "patch", "test_patch", "FAIL_TO_PASS", "PASS_TO_PASS"];

fn scrub_answers(v: &mut Value, depth: u32) {
    if depth > 8 {
        return;
    }
    match v {
        Value::Object(o) => {
            for k in ANSWER_KEYS {
                o.shift_remove(k);
            }
            for inner in o.values_mut() {
                scrub_answers(inner, depth + 1);
            }
        }
        Value::Array(items) => {
            for inner in items {
                scrub_answers(inner, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::{ErrorSource, StepKind, StepStatus, Trace};
    use serde_json::json;

    fn run(values: Vec<Value>) -> (Vec<Trace>, Vec<String>) {
        crate::trace::formats::run_on_values(parse, "t.json", values)
    }

    #[test]
    fn trail_shape_with_repr_attributes_and_logs() {
        let doc = json!({"trace_id": "ABC", "spans": [{
            "timestamp": "2025-03-19T16:49:25.700718Z", "span_id": "0A", "parent_span_id": "None", "span_name": "main",
            "span_kind": "Internal", "service_name": "svc", "resource_attributes": "{'service.name': 'svc2'}",
            "span_attributes": "{'openinference.span.kind': 'AGENT', 'input.value': '{\"task\": \"do it\"}', 'llm.token_count.total': '10'}",
            "duration": "PT1M20.9S", "status_code": "Unset", "status_message": "",
            "logs": [{"timestamp": "2025-03-19T16:50:47.259781", "severity_text": "INFO",
                      "body": {"function.name": "main", "function.arguments": {"example": {"question": "q", "true_answer": "42"}}, "function.output": "<null>"}}],
            "child_spans": [{"timestamp": "2025-03-19T16:49:26Z", "span_id": "0B", "parent_span_id": "0A", "span_name": "Step 1",
                "span_attributes": {"openinference.span.kind": "CHAIN"}, "duration": "PT1S", "status_code": "Error",
                "status_message": "AgentParsingError: bad code",
                "events": [{"Timestamp": "2025-03-19T16:49:27", "Name": "exception",
                            "Attributes": {"exception.type": "smolagents.utils.AgentParsingError", "exception.message": "bad code"}}],
                "child_spans": []}]}]});
        let (traces, warnings) = run(vec![doc]);
        assert!(warnings.is_empty(), "{warnings:?}");
        let t = &traces[0];
        assert_eq!(t.id, "abc");
        assert_eq!(t.attributes["resource.service.name"], json!("svc2"));
        assert_eq!(t.task, Some(json!("do it")));
        let root = &t.steps[0];
        assert_eq!((root.id.as_str(), root.parent_id.as_deref(), root.kind), ("0a", None, StepKind::Agent));
        assert_eq!(root.end.unwrap() - root.start.unwrap(), 80_900_000_000);
        assert_eq!(root.events[0].attributes["function.name"], json!("main"));
        assert_eq!(root.events[0].attributes["function.arguments"], json!({"example": {"question": "q"}}));
        let child = &t.steps[1];
        assert_eq!(child.parent_id.as_deref(), Some("0a"));
        assert_eq!(child.status, StepStatus::Error);
        let e = child.error.as_ref().unwrap();
        assert_eq!(e.source, Some(ErrorSource::Exception));
        assert_eq!(e.r#type.as_deref(), Some("smolagents.utils.AgentParsingError"));
    }

    #[test]
    fn clickhouse_rows() {
        let rows = vec![
            json!({"Timestamp": "2025-01-01 10:00:00.000000000", "TraceId": "T", "SpanId": "1", "ParentSpanId": "", "SpanName": "agent",
                   "SpanKind": "SPAN_KIND_INTERNAL", "ServiceName": "s", "SpanAttributes": {"gen_ai.operation.name": "invoke_agent"},
                   "Duration": 2_000_000_000u64, "StatusCode": "STATUS_CODE_ERROR", "StatusMessage": "boom",
                   "Events.Timestamp": ["2025-01-01 10:00:01.000000000"], "Events.Name": ["exception"],
                   "Events.Attributes": [{"exception.type": "RuntimeError", "exception.message": "boom"}]}),
            json!({"Timestamp": "2025-01-01 10:00:00.500000000", "TraceId": "T", "SpanId": "2", "ParentSpanId": "1", "SpanName": "chat",
                   "SpanAttributes": {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": "3"}, "Duration": "1000", "StatusCode": "Ok"}),
            json!({"unrelated": true}),
        ];
        let (traces, warnings) = run(rows);
        assert_eq!(warnings.len(), 1);
        let t = &traces[0];
        assert_eq!(t.steps.len(), 2);
        assert_eq!(t.steps[0].kind, StepKind::Agent);
        assert_eq!(t.steps[0].end.unwrap() - t.steps[0].start.unwrap(), 2_000_000_000);
        assert_eq!(t.steps[0].error.as_ref().unwrap().r#type.as_deref(), Some("RuntimeError"));
        assert_eq!(t.steps[1].usage.input_tokens, Some(3));
        assert_eq!(t.steps[1].status, StepStatus::Ok);
    }

    #[test]
    fn deep_nesting_is_cut_not_overflowed() {
        // Building and dropping a deep `Value` is itself recursive: give it room.
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| {
                let mut span = json!({"span_id": "ff", "span_name": "leaf", "span_attributes": {}});
                for i in 0..(MAX_DEPTH + 50) {
                    span = json!({"span_id": format!("{:x}", i + 1), "span_name": "n", "span_attributes": {}, "child_spans": [span]});
                }
                let (traces, warnings) = run(vec![json!({"trace_id": "aa", "spans": [span]})]);
                assert_eq!(traces[0].steps.len(), MAX_DEPTH + 1);
                assert!(warnings[0].contains("nested deeper"));
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
