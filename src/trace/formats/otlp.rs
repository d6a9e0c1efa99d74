//! OTLP/JSON traces and logs, OTel console JSON, flat span attribute maps
//! (trace-formats.md §1, §1.7, §2).
//!
//! Every span-shaped source (OTLP spans, console spans, Phoenix spans, TRAIL/ClickHouse
//! rows) is first turned into a [`SpanIn`] (ids normalized, attributes flat and decoded,
//! events normalized) and then mapped by [`map_span`], which understands all attribute
//! dialects we know (§1.5): OTel GenAI (current and ≤1.36 legacy), OpenInference,
//! OpenLLMetry/Traceloop, Vercel AI SDK, Langfuse SDK, Logfire/Pydantic AI and LiteLLM.
//! A span may carry several dialects at once; all are mapped (the first source that
//! has a field wins) and recorded in `trace.source.dialects`.
//! [`Collector`] groups mapped steps by trace id and finishes the traces.
//!
//! Conventions of this mapping:
//! * Ids: hex ids are lower-cased, `0x` stripped, base64 ids (naive proto3 JSON) turned
//!   into hex; an all-zero or empty parent id means "root".
//! * Resource attributes go on `trace.attributes` with a `resource.` prefix
//!   (`resource.service.name`). The instrumentation scope name is kept on each step as
//!   `otel.scope.name`, the OTel span kind as `otel.span.kind`.
//! * The attribute that becomes `step.input` / `step.output` (`input.value`,
//!   `output.value`, …) moves there and leaves `step.attributes`, which holds what was not
//!   mapped (trace-formats.md §9): a payload is kept once.
//! * Usage and cost are kept on a step only when no descendant step carries usage
//!   itself: agent/workflow spans that repeat the sum of their children (TRAIL `AGENT`
//!   spans, Vercel `ai.generateText`) would otherwise be counted twice. The raw numbers
//!   stay in `step.attributes`.
//! * Errors, strongest first: span status ERROR (with an `exception` event the source is
//!   `Exception` and type/message/stacktrace come from the event), an `exception` event on
//!   an UNSET span, `error.type` on a span whose status is not OK, Langfuse/Logfire level
//!   ERROR, a failing finish reason (`length`, `content_filter`, `error`), and for tool
//!   steps a conservative text heuristic on the tool result.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{
    self, as_f64, as_u64, decode_json_string, otlp_any_value, otlp_key_values, parse_time, scalar_string,
};
use crate::trace::model::{
    AttrMap, ErrorInfo, ErrorSource, Event, Message, ModelInfo, Nanos, Part, Score, ScoreSource, Signal, Step,
    StepKind, StepStatus, ToolCall, ToolResult, Trace, Usage, value_text,
};
use crate::trace::read::{Pos, Records};

// ---------------------------------------------------------------------------------------
// Adapters
// ---------------------------------------------------------------------------------------

/// OTLP/JSON `TracesData`: JSONL (file exporter), single documents, arrays of documents,
/// camelCase or snake_case keys. Spans are grouped by trace id over the whole file.
pub fn parse_traces(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let mut col = Collector::new(Format::OtlpJson);
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        let mut docs = Vec::new();
        flatten_docs(&rec.value, &mut docs, 0);
        let mut any = false;
        for doc in docs {
            let Some(resource_spans) = get2(doc, "resourceSpans", "resource_spans").and_then(Value::as_array) else {
                continue;
            };
            any = true;
            for rs in resource_spans {
                read_resource_spans(rs, rec.pos, ctx, &mut col);
            }
        }
        if !any {
            ctx.warn(rec.pos, format!("not an OTLP TracesData record: {}", json::keys_of(&rec.value)));
        }
    }
    col.finish(sink);
    Ok(())
}

fn read_resource_spans(rs: &Value, pos: Pos, ctx: &mut FileCtx<'_>, col: &mut Collector) {
    let resource = resource_attrs(rs);
    let scopes = get2(rs, "scopeSpans", "scope_spans")
        .or_else(|| get2(rs, "instrumentationLibrarySpans", "instrumentation_library_spans"))
        .and_then(Value::as_array);
    let Some(scopes) = scopes else { return };
    for ss in scopes {
        let scope = get2(ss, "scope", "instrumentationLibrary")
            .or_else(|| ss.get("instrumentation_library"))
            .and_then(|s| json::str_of(s, "name"))
            .map(str::to_string);
        let Some(spans) = ss.get("spans").and_then(Value::as_array) else {
            continue;
        };
        for sp in spans {
            if !sp.is_object() {
                ctx.warn(pos, "a span that is not an object");
                continue;
            }
            let Some(trace_id) = get2(sp, "traceId", "trace_id").and_then(id_of) else {
                ctx.warn(pos, "a span without `traceId` was skipped");
                continue;
            };
            let span = otlp_span(sp, scope.clone());
            let out = map_span(span, MapOpts::default());
            col.add(ctx, pos, &trace_id, &resource, out);
        }
    }
}

fn otlp_span(sp: &Value, scope: Option<String>) -> SpanIn {
    let status = sp.get("status");
    SpanIn {
        span_id: get2(sp, "spanId", "span_id").and_then(id_of),
        parent_id: get2(sp, "parentSpanId", "parent_span_id").and_then(id_of),
        name: json::str_of(sp, "name").map(str::to_string),
        span_kind: sp.get("kind").and_then(span_kind_name),
        start: get2(sp, "startTimeUnixNano", "start_time_unix_nano").and_then(parse_time),
        end: get2(sp, "endTimeUnixNano", "end_time_unix_nano").and_then(parse_time),
        status: status.and_then(|s| s.get("code")).map(status_code).unwrap_or_default(),
        status_message: status.and_then(|s| json::str_of(s, "message")).map(str::to_string),
        attributes: sp.get("attributes").map(otlp_key_values).unwrap_or_default(),
        events: sp
            .get("events")
            .and_then(Value::as_array)
            .map(|evs| evs.iter().filter_map(otlp_event).collect())
            .unwrap_or_default(),
        scope,
    }
}

fn otlp_event(e: &Value) -> Option<Event> {
    Some(Event {
        name: json::str_of(e, "name").unwrap_or("event").to_string(),
        time: get2(e, "timeUnixNano", "time_unix_nano").and_then(parse_time),
        attributes: e.get("attributes").map(otlp_key_values).unwrap_or_default(),
    })
}

/// OTLP/JSON `LogsData`: log records become events on a step whose id is the record's
/// span id, in a trace keyed by the record's trace id. These partial steps are merged
/// with the span file's steps by `trace::merge` (kind `Other`, status `Unset`, unknown
/// fields `None`), except that exception records set the step's error, and
/// `gen_ai.client.inference.operation.details` / legacy message events fill its
/// messages, model and usage.
pub fn parse_logs(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    // trace id → (first pos, resource attrs, span id → events) in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, LogTrace> = HashMap::new();
    let mut without_trace = 0usize;
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        let mut docs = Vec::new();
        flatten_docs(&rec.value, &mut docs, 0);
        let mut any = false;
        for doc in docs {
            let Some(resource_logs) = get2(doc, "resourceLogs", "resource_logs").and_then(Value::as_array) else {
                continue;
            };
            any = true;
            for rl in resource_logs {
                let resource = resource_attrs(rl);
                let scopes = get2(rl, "scopeLogs", "scope_logs")
                    .or_else(|| get2(rl, "instrumentationLibraryLogs", "instrumentation_library_logs"))
                    .and_then(Value::as_array);
                for sl in scopes.into_iter().flatten() {
                    let scope = get2(sl, "scope", "instrumentationLibrary")
                        .and_then(|s| json::str_of(s, "name"))
                        .map(str::to_string);
                    let logs = get2(sl, "logRecords", "log_records").and_then(Value::as_array);
                    for lr in logs.into_iter().flatten() {
                        let Some(trace_id) = get2(lr, "traceId", "trace_id").and_then(id_of) else {
                            without_trace += 1;
                            continue;
                        };
                        let span_id =
                            get2(lr, "spanId", "span_id").and_then(id_of).unwrap_or_else(|| "logs".to_string());
                        let group = groups.entry(trace_id.clone()).or_insert_with(|| {
                            order.push(trace_id.clone());
                            LogTrace {
                                pos: rec.pos,
                                resource: resource.clone(),
                                spans: Vec::new(),
                                index: HashMap::new(),
                            }
                        });
                        let i = *group.index.entry(span_id.clone()).or_insert_with(|| {
                            group.spans.push((span_id.clone(), scope.clone(), Vec::new()));
                            group.spans.len() - 1
                        });
                        group.spans[i].2.push(log_event(lr));
                    }
                }
            }
        }
        if !any {
            ctx.warn(rec.pos, format!("not an OTLP LogsData record: {}", json::keys_of(&rec.value)));
        }
    }
    if without_trace > 0 {
        ctx.warn(
            Pos::Line(0),
            format!("{without_trace} log record(s) without `traceId` cannot be joined to a trace and were skipped"),
        );
    }
    let mut col = Collector::new(Format::OtlpLogs);
    for trace_id in order {
        let Some(group) = groups.remove(&trace_id) else {
            continue;
        };
        for (span_id, scope, events) in group.spans {
            // Inference detail events carry the span's attributes (messages, model, usage).
            let mut attributes = Map::new();
            for ev in &events {
                if ev.name == "gen_ai.client.inference.operation.details" {
                    for (k, v) in &ev.attributes {
                        if k != "body" {
                            attributes.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
            }
            let span = SpanIn {
                span_id: Some(span_id.clone()),
                name: (span_id == "logs").then(|| "log records without a span".to_string()),
                attributes,
                events,
                scope,
                ..SpanIn::default()
            };
            let out = map_span(span, MapOpts { from_logs: true });
            col.add(ctx, group.pos, &trace_id, &group.resource, out);
        }
    }
    col.finish(sink);
    Ok(())
}

struct LogTrace {
    pos: Pos,
    resource: AttrMap,
    spans: Vec<(String, Option<String>, Vec<Event>)>,
    index: HashMap<String, usize>,
}

fn log_event(lr: &Value) -> Event {
    let mut attributes = lr.get("attributes").map(otlp_key_values).unwrap_or_default();
    let name = json::str_of(lr, "eventName")
        .or_else(|| json::str_of(lr, "event_name"))
        .map(str::to_string)
        .or_else(|| attributes.get("event.name").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "log".to_string());
    if let Some(body) = lr.get("body").map(otlp_any_value) {
        if !body.is_null() {
            attributes.insert("body".into(), body);
        }
    }
    for (key, alt, attr) in
        [("severityText", "severity_text", "severity_text"), ("severityNumber", "severity_number", "severity_number")]
    {
        if let Some(v) = get2(lr, key, alt) {
            if !v.is_null() {
                attributes.entry(attr.to_string()).or_insert_with(|| v.clone());
            }
        }
    }
    let time = get2(lr, "timeUnixNano", "time_unix_nano")
        .and_then(parse_time)
        .or_else(|| get2(lr, "observedTimeUnixNano", "observed_time_unix_nano").and_then(parse_time));
    Event { name, time, attributes }
}

/// Python `ConsoleSpanExporter` output: concatenated pretty JSON spans. Ids lose their
/// `0x`; a span printed twice (on start and on end) is kept once, the ended copy.
pub fn parse_console(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let mut col = Collector::new(Format::OtelConsole);
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        let mut docs = Vec::new();
        flatten_docs(&rec.value, &mut docs, 0);
        for doc in docs {
            let context = doc.get("context");
            let Some(trace_id) = context.and_then(|c| c.get("trace_id")).and_then(id_of) else {
                ctx.warn(rec.pos, format!("not a console span (no `context.trace_id`): {}", json::keys_of(doc)));
                continue;
            };
            let resource = doc.get("resource").and_then(|r| r.get("attributes")).map(flat_attrs).unwrap_or_default();
            let status = doc.get("status");
            let span = SpanIn {
                span_id: context.and_then(|c| c.get("span_id")).and_then(id_of),
                parent_id: doc.get("parent_id").and_then(id_of),
                name: json::str_of(doc, "name").map(str::to_string),
                span_kind: doc.get("kind").and_then(span_kind_name),
                start: doc.get("start_time").and_then(parse_time),
                end: doc.get("end_time").and_then(parse_time),
                status: status.and_then(|s| s.get("status_code")).map(status_code).unwrap_or_default(),
                status_message: status.and_then(|s| json::str_of(s, "description")).map(str::to_string),
                attributes: doc.get("attributes").map(flat_attrs).unwrap_or_default(),
                events: doc.get("events").map(flat_events).unwrap_or_default(),
                scope: doc
                    .get("instrumentation_scope")
                    .or_else(|| doc.get("instrumentation_info"))
                    .and_then(|s| json::str_of(s, "name"))
                    .map(str::to_string),
            };
            let out = map_span(span, MapOpts::default());
            col.add(ctx, rec.pos, &trace_id, &resource, out);
        }
    }
    col.finish(sink);
    Ok(())
}

/// A flat span attribute map (one span per record): one trace with one step each.
pub fn parse_attribute_map(
    records: &mut Records,
    ctx: &mut FileCtx<'_>,
    sink: &mut Sink<'_>,
) -> Result<(), ParseError> {
    // The id is the file name without its trace and compression extensions, so a gzip or
    // zstd copy reads as the same trace (`x.json.gz` → `x`, not `x.json`).
    let stem = super::common::transcript::file_stem(ctx.path);
    let mut n = 0usize;
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        if !rec.value.is_object() {
            ctx.warn(rec.pos, format!("not an attribute map: {}", json::keys_of(&rec.value)));
            continue;
        }
        n += 1;
        let id = if n == 1 { stem.clone() } else { format!("{stem}#{n}") };
        let span =
            SpanIn { span_id: Some("span".into()), attributes: flat_attrs_owned(rec.value), ..SpanIn::default() };
        let out = map_span(span, MapOpts::default());
        let mut col = Collector::new(Format::SpanAttributes);
        col.add(ctx, rec.pos, &id, &Map::new(), out);
        col.finish(sink);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Shared low-level helpers (used by phoenix.rs and span_rows.rs too)
// ---------------------------------------------------------------------------------------

/// `v[a]` or `v[b]` (camelCase / snake_case).
pub(crate) fn get2<'a>(v: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    v.get(a).or_else(|| v.get(b))
}

/// Records that are arrays of documents (hand dumps) are looked into, depth-limited.
fn flatten_docs<'a>(v: &'a Value, out: &mut Vec<&'a Value>, depth: u32) {
    match v {
        Value::Array(items) if depth < 4 => {
            for item in items {
                flatten_docs(item, out, depth + 1);
            }
        }
        Value::Object(_) => out.push(v),
        _ => {}
    }
}

fn resource_attrs(container: &Value) -> AttrMap {
    container.get("resource").and_then(|r| r.get("attributes")).map(otlp_key_values).unwrap_or_default()
}

/// [`flat_attrs`] of a value the caller gives up: an object's values move instead of
/// being copied.
pub(crate) fn flat_attrs_owned(v: Value) -> AttrMap {
    match v {
        Value::Object(m) => m.into_iter().map(|(k, v)| (k, decode_json_string(v))).collect(),
        other => flat_attrs(&other),
    }
}

/// A flat attribute map given as an object (JSON strings decoded), a `[{key, value}]`
/// list, or a JSON / Python-repr string.
pub(crate) fn flat_attrs(v: &Value) -> AttrMap {
    match v {
        Value::Array(_) => otlp_key_values(v),
        Value::Object(_) => otlp_key_values(v),
        Value::String(_) => json::lenient_map(v).into_iter().map(|(k, v)| (k, decode_json_string(v))).collect(),
        _ => Map::new(),
    }
}

/// Events as `[{name, timestamp, attributes}]` (console, Phoenix) or
/// `[{Name, Timestamp, Attributes}]` (TRAIL) or OTLP events.
pub(crate) fn flat_events(v: &Value) -> Vec<Event> {
    let Some(items) = v.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .filter(|e| e.is_object())
        .map(|e| {
            let name = ["name", "Name"].iter().find_map(|k| json::str_of(e, k)).unwrap_or("event").to_string();
            let time = ["timestamp", "Timestamp", "time", "timeUnixNano", "time_unix_nano"]
                .iter()
                .find_map(|k| e.get(*k).and_then(parse_time));
            let attributes =
                ["attributes", "Attributes"].iter().find_map(|k| e.get(*k)).map(flat_attrs).unwrap_or_default();
            Event { name, time, attributes }
        })
        .collect()
}

/// An id: `0x` stripped, hex lower-cased, base64 (16/8 bytes) turned into hex; None for
/// empty, all-zero, `None`/`null` ids.
pub(crate) fn id_of(v: &Value) -> Option<String> {
    normalize_id(&scalar_string(v)?)
}

pub(crate) fn normalize_id(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if s.is_empty() || s.eq_ignore_ascii_case("none") || s.eq_ignore_ascii_case("null") {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_hexdigit()) {
        if s.bytes().all(|b| b == b'0') {
            return None;
        }
        return Some(s.to_ascii_lowercase());
    }
    if matches!(s.len(), 12 | 24 | 11 | 22) {
        if let Some(bytes) = base64_decode(s) {
            if bytes.len() == 16 || bytes.len() == 8 {
                if bytes.iter().all(|b| *b == 0) {
                    return None;
                }
                return Some(bytes.iter().map(|b| format!("{b:02x}")).collect());
            }
        }
    }
    Some(s.to_string())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// OTel span kind from `3`, `"SPAN_KIND_CLIENT"`, `"SpanKind.CLIENT"`, `"Client"`.
pub(crate) fn span_kind_name(v: &Value) -> Option<String> {
    let name = match v {
        Value::Number(n) => match n.as_i64()? {
            1 => "internal",
            2 => "server",
            3 => "client",
            4 => "producer",
            5 => "consumer",
            _ => return None,
        }
        .to_string(),
        Value::String(s) => {
            let l = s.trim().to_ascii_lowercase();
            let l = l.strip_prefix("span_kind_").or_else(|| l.strip_prefix("spankind.")).unwrap_or(&l).to_string();
            if let Ok(i) = l.parse::<i64>() {
                return span_kind_name(&Value::from(i));
            }
            l
        }
        _ => return None,
    };
    (!name.is_empty() && name != "unspecified").then_some(name)
}

/// Span status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Code {
    #[default]
    Unset,
    Ok,
    Error,
}

/// Status code from `2`, `"STATUS_CODE_ERROR"`, `"ERROR"`, `"Error"`, `"StatusCode.ERROR"`.
pub(crate) fn status_code(v: &Value) -> Code {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(1) => Code::Ok,
            Some(2) => Code::Error,
            _ => Code::Unset,
        },
        Value::String(s) => {
            let l = s.trim().to_ascii_lowercase();
            let l = l.strip_prefix("status_code_").or_else(|| l.strip_prefix("statuscode.")).unwrap_or(&l);
            match l {
                "ok" | "1" => Code::Ok,
                "error" | "2" => Code::Error,
                _ => Code::Unset,
            }
        }
        _ => Code::Unset,
    }
}

// ---------------------------------------------------------------------------------------
// The span → step mapping
// ---------------------------------------------------------------------------------------

/// A span in source-neutral form: ids normalized, attributes flat with JSON strings
/// decoded, events normalized.
#[derive(Debug, Default, Clone)]
pub(crate) struct SpanIn {
    pub span_id: Option<String>,
    pub parent_id: Option<String>,
    pub name: Option<String>,
    /// OTel span kind, lower case (`client`, `internal`…).
    pub span_kind: Option<String>,
    pub start: Option<Nanos>,
    pub end: Option<Nanos>,
    pub status: Code,
    pub status_message: Option<String>,
    pub attributes: AttrMap,
    pub events: Vec<Event>,
    pub scope: Option<String>,
}

/// A mapped span: the step plus what it says about its trace.
#[derive(Debug, Default)]
pub(crate) struct SpanOut {
    pub step: Step,
    pub dialects: Vec<&'static str>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub trace_name: Option<String>,
    pub trace_scores: Vec<Score>,
    pub signals: Vec<Signal>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MapOpts {
    /// The "span" is a bag of log records: kind stays `Other`, status `Unset`, and only
    /// exception records make an error.
    pub from_logs: bool,
}

type A = AttrMap;

fn s<'a>(a: &'a A, key: &str) -> Option<&'a str> {
    a.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

fn first_s(a: &A, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| a.get(*k).and_then(scalar_string)).filter(|s| !s.trim().is_empty())
}

/// Where a step's generic input and output come from, first present wins.
const INPUT_KEYS: [&str; 6] =
    ["input.value", "traceloop.entity.input", "langfuse.observation.input", "ai.prompt", "input", "gen_ai.prompt"];
const OUTPUT_KEYS: [&str; 7] = [
    "output.value",
    "traceloop.entity.output",
    "langfuse.observation.output",
    "ai.response.text",
    "ai.response.object",
    "output",
    "gen_ai.completion",
];

fn first_key(a: &A, keys: &[&'static str]) -> Option<&'static str> {
    keys.iter().copied().find(|k| a.get(*k).is_some_and(|v| !v.is_null()))
}

fn first_v<'a>(a: &'a A, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| a.get(*k).filter(|v| !v.is_null()))
}

fn first_u(a: &A, keys: &[&str]) -> Option<u64> {
    keys.iter().find_map(|k| a.get(*k).and_then(as_u64))
}

fn first_f(a: &A, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| a.get(*k).and_then(as_f64))
}

fn has_prefix(a: &A, prefix: &str) -> bool {
    a.keys().any(|k| k.starts_with(prefix))
}

/// Map one span to a step, whatever its attribute dialects.
pub(crate) fn map_span(span: SpanIn, opts: MapOpts) -> SpanOut {
    let SpanIn {
        span_id,
        parent_id,
        name,
        span_kind,
        start,
        end,
        status,
        status_message,
        mut attributes,
        events,
        scope,
    } = span;
    // Logfire (older) keeps GenAI message events in an `events` attribute.
    let mut msg_events: Vec<(String, A)> =
        events.iter().map(|e| (e.name.clone(), event_object(&e.attributes))).collect();
    for key in ["events", "all_messages_events"] {
        if let Some(Value::Array(items)) = attributes.get(key) {
            for item in items {
                if let Some(obj) = item.as_object() {
                    if let Some(n) = obj.get("event.name").and_then(Value::as_str) {
                        msg_events.push((n.to_string(), event_object(obj)));
                    }
                }
            }
        }
    }
    let a = &attributes;
    let mut out = SpanOut { dialects: detect_dialects(a, &events, scope.as_deref()), ..SpanOut::default() };
    let kind = if opts.from_logs { StepKind::Other } else { step_kind(a, name.as_deref(), scope.as_deref()) };
    let mut step =
        Step { id: span_id.unwrap_or_default(), parent_id, kind, name: name.clone(), start, end, ..Step::default() };

    // Messages.
    step.input_messages = input_messages(a, &msg_events);
    step.output_messages = output_messages(a, &msg_events);
    if kind == StepKind::Llm {
        if step.input_messages.is_empty() {
            if let Some(v) = first_v(a, &["input.value", "input"]) {
                step.input_messages = messages_from_value(v, "user");
            }
        }
        if step.output_messages.is_empty() {
            if let Some(v) = first_v(a, &["output.value", "output"]) {
                step.output_messages = match v {
                    Value::Array(_) => messages_from_value(v, "assistant"),
                    _ => message_from_value(v, "assistant").into_iter().collect(),
                };
            }
        }
    }

    // Model.
    let mut model = ModelInfo {
        request_model: first_s(
            a,
            &["gen_ai.request.model", "llm.request.model_name", "ai.model.id", "langfuse.observation.model.name"],
        ),
        response_model: first_s(
            a,
            &["gen_ai.response.model", "llm.response.model_name", "ai.response.model", "llm.model_name"],
        ),
        provider: first_s(
            a,
            &["gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system", "ai.model.provider"],
        ),
        finish_reasons: Vec::new(),
    };
    for key in ["gen_ai.response.finish_reasons", "llm.finish_reason", "ai.response.finishReason"] {
        match a.get(key) {
            Some(Value::Array(items)) => model.finish_reasons.extend(items.iter().filter_map(scalar_string)),
            Some(v) => model.finish_reasons.extend(scalar_string(v)),
            None => {}
        }
    }
    for m in &step.output_messages {
        if let Some(r) = &m.finish_reason {
            model.finish_reasons.push(r.clone());
        }
    }
    let mut seen = Vec::new();
    model.finish_reasons.retain(|r| {
        let keep = !seen.contains(r);
        seen.push(r.clone());
        keep
    });
    if model != ModelInfo::default() {
        step.model = Some(model);
    }
    step.agent = first_s(a, &["gen_ai.agent.name", "agent.name"]);

    // Tool call and result.
    if kind == StepKind::Tool {
        let (call, result) = tool_of(a, name.as_deref());
        step.tool_call = call;
        if let Some(content) = result {
            step.tool_result = Some(ToolResult {
                call_id: step.tool_call.as_ref().and_then(|c| c.id.clone()),
                content,
                ..ToolResult::default()
            });
        }
    }

    // Generic input / output.
    // Moved out of the attributes at the end, not cloned: in OpenInference traces these
    // payloads are most of the bytes (each LLM span repeats the whole conversation).
    let input_key = first_key(a, &INPUT_KEYS);
    let output_key = first_key(a, &OUTPUT_KEYS);

    // Usage and cost.
    step.usage = usage_of(a);
    step.cost_usd = cost_of(a);

    // Scores.
    for e in &events {
        if e.name == "gen_ai.evaluation.result" {
            let ea = &e.attributes;
            step.scores.push(Score {
                name: first_s(ea, &["gen_ai.evaluation.name"]).unwrap_or_else(|| "evaluation".into()),
                value: first_f(ea, &["gen_ai.evaluation.score.value"]),
                label: first_s(ea, &["gen_ai.evaluation.score.label"]),
                comment: first_s(ea, &["gen_ai.evaluation.explanation"]),
                source: ScoreSource::Unknown,
            });
        }
    }
    step.scores.extend(oi_scores(a, "annotations.", "annotation."));
    step.scores.extend(oi_scores(a, "evaluations.", "evaluation."));
    out.trace_scores.extend(oi_scores(a, "trace.annotations.", "annotation."));
    out.trace_scores.extend(oi_scores(a, "session.annotations.", "annotation."));

    // Status and error.
    let exception = events.iter().find(|e| is_exception_event(e));
    let error = if opts.from_logs {
        // A log record knows no span status; its exception event, or the `error.type` the
        // GenAI inference details event carries when the operation failed, is the error.
        exception.map(exception_error).or_else(|| {
            first_s(a, &["error.type"])
                .filter(|t| t != "_OTHER")
                .map(|t| ErrorInfo::new(ErrorSource::ErrorField).with_type(t))
        })
    } else {
        span_error(a, status, status_message.as_deref(), exception, &step)
    };
    step.status = match (&error, status) {
        (Some(_), _) => StepStatus::Error,
        (None, Code::Ok) if !opts.from_logs => StepStatus::Ok,
        _ => StepStatus::Unset,
    };
    if let Some(err) = &error {
        if let Some(r) = &mut step.tool_result {
            r.is_error = Some(true);
            if err.source == Some(ErrorSource::ExitCode) {
                r.exit_code = err.code.as_deref().and_then(|c| c.parse().ok());
            }
        }
        let text = format!("{} {}", err.r#type.as_deref().unwrap_or(""), err.message.as_deref().unwrap_or(""));
        let lower = text.to_ascii_lowercase();
        if lower.contains("max turns exceeded") || lower.contains("maxturnsexceeded") {
            out.signals
                .push(Signal { step: Some(step.id.clone()), ..Signal::new("terminal", false, "max turns exceeded") });
        }
    }
    step.error = error;

    // Trace-level facts.
    out.session_id =
        first_s(a, &["gen_ai.conversation.id", "session.id", "langfuse.session.id", "ai.telemetry.metadata.sessionId"]);
    out.user_id = first_s(a, &["user.id", "langfuse.user.id", "enduser.id", "ai.telemetry.metadata.userId"]);
    out.trace_name = first_s(a, &["langfuse.trace.name"]);

    step.events = events;
    step.input = input_key
        .and_then(|k| attributes.shift_remove(k))
        .or_else(|| step.tool_call.as_ref().map(|c| c.arguments.clone()).filter(|v| !v.is_null()));
    step.output = output_key
        .and_then(|k| attributes.shift_remove(k))
        .or_else(|| step.tool_result.as_ref().map(|r| r.content.clone()));
    if let Some(scope) = scope {
        attributes.insert("otel.scope.name".into(), Value::String(scope));
    }
    if let Some(k) = span_kind {
        attributes.insert("otel.span.kind".into(), Value::String(k));
    }
    step.attributes = attributes;
    out.step = step;
    out
}

fn detect_dialects(a: &A, events: &[Event], scope: Option<&str>) -> Vec<&'static str> {
    let mut d = Vec::new();
    let genai_current = [
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.name",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.request.model",
    ];
    if genai_current.iter().any(|k| a.contains_key(*k)) {
        d.push("genai");
    }
    let legacy_event = |n: &str| {
        matches!(
            n,
            "gen_ai.system.message"
                | "gen_ai.user.message"
                | "gen_ai.assistant.message"
                | "gen_ai.tool.message"
                | "gen_ai.choice"
                | "gen_ai.content.prompt"
                | "gen_ai.content.completion"
        )
    };
    if a.contains_key("gen_ai.system")
        || a.contains_key("gen_ai.usage.prompt_tokens")
        || a.contains_key("gen_ai.usage.completion_tokens")
        || a.contains_key("gen_ai.prompt")
        || a.contains_key("gen_ai.completion")
        || events.iter().any(|e| legacy_event(&e.name))
    {
        d.push("genai-legacy");
    }
    if a.contains_key("openinference.span.kind")
        || has_prefix(a, "llm.input_messages.")
        || has_prefix(a, "llm.output_messages.")
        || has_prefix(a, "llm.token_count.")
    {
        d.push("openinference");
    }
    if has_prefix(a, "traceloop.")
        || has_prefix(a, "gen_ai.prompt.")
        || has_prefix(a, "gen_ai.completion.")
        || a.contains_key("llm.request.type")
        || a.contains_key("llm.usage.total_tokens")
    {
        d.push("openllmetry");
    }
    if has_prefix(a, "ai.") || scope == Some("ai") {
        d.push("vercel-ai");
    }
    if has_prefix(a, "langfuse.") {
        d.push("langfuse");
    }
    if has_prefix(a, "logfire.") {
        d.push("logfire");
    }
    if has_prefix(a, "gen_ai.cost.") || has_prefix(a, "litellm.") {
        d.push("litellm");
    }
    d
}

fn step_kind(a: &A, name: Option<&str>, scope: Option<&str>) -> StepKind {
    if let Some(k) = s(a, "openinference.span.kind") {
        let k = k.to_ascii_uppercase();
        let kind = match k.as_str() {
            "LLM" => StepKind::Llm,
            "EMBEDDING" => StepKind::Embedding,
            "CHAIN" => StepKind::Workflow,
            "RETRIEVER" => StepKind::Retrieval,
            "RERANKER" => StepKind::Rerank,
            "TOOL" => StepKind::Tool,
            "AGENT" => StepKind::Agent,
            "GUARDRAIL" => StepKind::Guardrail,
            "EVALUATOR" => StepKind::Evaluator,
            _ => StepKind::Other,
        };
        if kind != StepKind::Other {
            return kind;
        }
    }
    if let Some(op) = s(a, "gen_ai.operation.name") {
        let kind = match op {
            "chat" | "text_completion" | "generate_content" | "completion" | "responses" => StepKind::Llm,
            "embeddings" | "embedding" => StepKind::Embedding,
            "retrieval" => StepKind::Retrieval,
            "execute_tool" => StepKind::Tool,
            "invoke_agent" | "create_agent" => StepKind::Agent,
            "invoke_workflow" => StepKind::Workflow,
            op if op.contains("memory") => StepKind::Memory,
            _ => StepKind::Other,
        };
        if kind != StepKind::Other {
            return kind;
        }
    }
    if let Some(k) = s(a, "traceloop.span.kind") {
        match k {
            "workflow" | "task" => return StepKind::Workflow,
            "agent" => return StepKind::Agent,
            "tool" => return StepKind::Tool,
            _ => {}
        }
    }
    if let Some(t) = s(a, "llm.request.type") {
        match t {
            "chat" | "completion" => return StepKind::Llm,
            "embedding" => return StepKind::Embedding,
            "rerank" => return StepKind::Rerank,
            _ => {}
        }
    }
    if let Some(t) = s(a, "langfuse.observation.type") {
        let kind = match t.to_ascii_lowercase().as_str() {
            "generation" => StepKind::Llm,
            "agent" => StepKind::Agent,
            "tool" => StepKind::Tool,
            "chain" => StepKind::Workflow,
            "retriever" => StepKind::Retrieval,
            "evaluator" => StepKind::Evaluator,
            "embedding" => StepKind::Embedding,
            "guardrail" => StepKind::Guardrail,
            _ => StepKind::Other,
        };
        if kind != StepKind::Other {
            return kind;
        }
    }
    // Vercel AI SDK: the operation id, else the span name.
    let vercel = s(a, "ai.operationId").or(if scope == Some("ai") { name } else { None });
    if let Some(op) = vercel.or(name.filter(|n| n.starts_with("ai."))) {
        match op {
            "ai.toolCall" => return StepKind::Tool,
            op if op.ends_with(".doGenerate") || op.ends_with(".doStream") => return StepKind::Llm,
            op if op.ends_with(".doEmbed") => return StepKind::Embedding,
            "ai.generateText" | "ai.streamText" | "ai.generateObject" | "ai.streamObject" => {
                return StepKind::Agent;
            }
            "ai.embed" | "ai.embedMany" => return StepKind::Embedding,
            _ => {}
        }
    }
    if a.contains_key("gen_ai.tool.name") || a.contains_key("ai.toolCall.name") {
        return StepKind::Tool;
    }
    if let Some(n) = name {
        let n = n.trim();
        let first = n.split_whitespace().next().unwrap_or("");
        match first {
            "chat" | "text_completion" | "generate_content" => return StepKind::Llm,
            "execute_tool" => return StepKind::Tool,
            "invoke_agent" | "create_agent" => return StepKind::Agent,
            "invoke_workflow" => return StepKind::Workflow,
            "embeddings" => return StepKind::Embedding,
            _ => {}
        }
        if n.starts_with("running tool") {
            return StepKind::Tool;
        }
        if n == "agent run" || n.starts_with("agent run ") || n.starts_with("invoke_agent") {
            return StepKind::Agent;
        }
        if n.ends_with(".chat") || n.ends_with(".completion") {
            return StepKind::Llm;
        }
    }
    StepKind::Other
}

/// Attributes of a message event as one object: `gen_ai.event.content` and a structured
/// `body` are opened up.
fn event_object(attrs: &A) -> A {
    let mut obj = attrs.clone();
    for key in ["gen_ai.event.content", "body"] {
        if let Some(Value::Object(inner)) = attrs.get(key).cloned() {
            obj.remove(key);
            for (k, v) in inner {
                obj.entry(k).or_insert(v);
            }
        }
    }
    obj
}

fn input_messages(a: &A, events: &[(String, A)]) -> Vec<Message> {
    if let Some(v) = a.get("gen_ai.input.messages") {
        let mut msgs = Vec::new();
        if let Some(sys) = a.get("gen_ai.system_instructions") {
            let parts: Vec<Part> = match sys {
                Value::Array(items) => items.iter().map(part_from_value).collect(),
                Value::Null => Vec::new(),
                other => vec![part_from_value(other)],
            };
            if !parts.is_empty() {
                msgs.push(Message { role: "system".into(), parts, ..Message::default() });
            }
        }
        msgs.extend(messages_from_value(v, "user"));
        if !msgs.is_empty() {
            return msgs;
        }
    }
    let oi = oi_messages(a, "llm.input_messages.");
    if !oi.is_empty() {
        return oi;
    }
    let ollm = indexed_messages(a, "gen_ai.prompt.", "user");
    if !ollm.is_empty() {
        return ollm;
    }
    if let Some(v) = a.get("ai.prompt.messages") {
        let m = messages_from_value(v, "user");
        if !m.is_empty() {
            return m;
        }
    }
    if let Some(Value::Object(p)) = a.get("ai.prompt") {
        let mut m = Vec::new();
        if let Some(sys) = p.get("system").and_then(Value::as_str) {
            m.push(Message::text("system", sys));
        }
        if let Some(v) = p.get("messages") {
            m.extend(messages_from_value(v, "user"));
        } else if let Some(prompt) = p.get("prompt") {
            m.extend(message_from_value(prompt, "user"));
        }
        if !m.is_empty() {
            return m;
        }
    }
    let (legacy_in, _) = legacy_messages(events, true, false);
    if !legacy_in.is_empty() {
        return legacy_in;
    }
    if let Some(v) = a.get("gen_ai.prompt") {
        let m = messages_from_value(v, "user");
        if !m.is_empty() {
            return m;
        }
    }
    if let Some(v) = a.get("langfuse.observation.input") {
        if looks_like_messages(v) {
            return messages_from_value(v, "user");
        }
    }
    indexed(a, "llm.prompts.")
        .into_values()
        .filter_map(|m| m.get("prompt.text").and_then(Value::as_str).map(|t| Message::text("user", t)))
        .collect()
}

fn output_messages(a: &A, events: &[(String, A)]) -> Vec<Message> {
    if let Some(v) = a.get("gen_ai.output.messages") {
        let m = messages_from_value(v, "assistant");
        if !m.is_empty() {
            return m;
        }
    }
    let oi = oi_messages(a, "llm.output_messages.");
    if !oi.is_empty() {
        return oi;
    }
    let ollm = indexed_messages(a, "gen_ai.completion.", "assistant");
    if !ollm.is_empty() {
        return ollm;
    }
    // Vercel AI SDK.
    let text = s(a, "ai.response.text");
    let calls = a.get("ai.response.toolCalls").and_then(Value::as_array);
    if text.is_some() || calls.is_some() {
        let mut parts = Vec::new();
        if let Some(t) = text {
            parts.push(Part::Text { text: t.to_string() });
        }
        for c in calls.into_iter().flatten() {
            if let Some(call) = tool_call_from_value(c) {
                parts.push(Part::ToolCall(call));
            }
        }
        return vec![Message {
            role: "assistant".into(),
            parts,
            finish_reason: s(a, "ai.response.finishReason").map(str::to_string),
            ..Message::default()
        }];
    }
    let (_, legacy_out) = legacy_messages(events, false, true);
    if !legacy_out.is_empty() {
        return legacy_out;
    }
    if let Some(v) = a.get("gen_ai.completion") {
        let m = match v {
            Value::Array(_) => messages_from_value(v, "assistant"),
            _ => message_from_value(v, "assistant").into_iter().collect(),
        };
        if !m.is_empty() {
            return m;
        }
    }
    if let Some(v) = a.get("langfuse.observation.output") {
        if looks_like_messages(v) {
            return messages_from_value(v, "assistant");
        }
        if v.get("role").is_some() {
            return message_from_value(v, "assistant").into_iter().collect();
        }
    }
    indexed(a, "llm.choices.")
        .into_values()
        .filter_map(|m| m.get("completion.text").and_then(Value::as_str).map(|t| Message::text("assistant", t)))
        .collect()
}

fn looks_like_messages(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.first().is_some_and(|m| m.get("role").is_some()),
        Value::Object(o) => o.get("messages").is_some_and(looks_like_messages),
        _ => false,
    }
}

/// GenAI ≤1.36 message events (span events or log records).
fn legacy_messages(events: &[(String, A)], want_in: bool, want_out: bool) -> (Vec<Message>, Vec<Message>) {
    let mut inp = Vec::new();
    let mut out = Vec::new();
    for (name, obj) in events {
        let role = match name.as_str() {
            "gen_ai.system.message" => "system",
            "gen_ai.user.message" => "user",
            "gen_ai.assistant.message" => "assistant",
            "gen_ai.tool.message" => "tool",
            "gen_ai.choice" => {
                if want_out {
                    let msg_v = obj.get("message").cloned().unwrap_or_else(|| Value::Object(obj.clone()));
                    if let Some(mut m) = message_from_value(&msg_v, "assistant") {
                        if m.finish_reason.is_none() {
                            m.finish_reason = obj.get("finish_reason").and_then(scalar_string);
                        }
                        out.push(m);
                    }
                }
                continue;
            }
            "gen_ai.content.prompt" => {
                if want_in {
                    if let Some(v) = obj.get("gen_ai.prompt") {
                        inp.extend(messages_from_value(v, "user"));
                    }
                }
                continue;
            }
            "gen_ai.content.completion" => {
                if want_out {
                    if let Some(v) = obj.get("gen_ai.completion") {
                        out.extend(messages_from_value(v, "assistant"));
                    }
                }
                continue;
            }
            _ => continue,
        };
        if want_in {
            let mut o = obj.clone();
            if role == "tool" && !o.contains_key("tool_call_id") {
                if let Some(id) = o.get("id").cloned() {
                    o.insert("tool_call_id".into(), id);
                }
            }
            if let Some(m) = message_from_value(&Value::Object(o), role) {
                inp.push(m);
            }
        }
    }
    (inp, out)
}

/// A list of messages: an array, an object with `messages`, or a single message.
pub(crate) fn messages_from_value(v: &Value, default_role: &str) -> Vec<Message> {
    match v {
        Value::Array(items) => items.iter().filter_map(|m| message_from_value(m, default_role)).collect(),
        Value::Object(o) => {
            if let Some(inner) = o.get("messages") {
                if inner.is_array() {
                    return messages_from_value(inner, default_role);
                }
            }
            if o.contains_key("role") || o.contains_key("parts") {
                return message_from_value(v, default_role).into_iter().collect();
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// One message in any of the shapes we meet: GenAI `{role, parts}`, OpenAI
/// `{role, content, tool_calls}`, Vercel `{role, content: [{type: tool-call}]}`, a bare
/// string, `{text, finish_reason}`.
pub(crate) fn message_from_value(v: &Value, default_role: &str) -> Option<Message> {
    let obj = match v {
        Value::String(t) if !t.is_empty() => return Some(Message::text(default_role, t.as_str())),
        Value::Object(o) => o,
        _ => return None,
    };
    let role = obj.get("role").and_then(Value::as_str).filter(|r| !r.is_empty()).unwrap_or(default_role).to_string();
    let mut parts = Vec::new();
    if let Some(Value::Array(items)) = obj.get("parts") {
        parts.extend(items.iter().map(part_from_value));
    } else {
        match obj.get("content").or_else(|| obj.get("text")) {
            Some(Value::String(t)) if !t.is_empty() => parts.push(Part::Text { text: t.clone() }),
            Some(Value::Array(items)) => parts.extend(items.iter().map(part_from_value)),
            Some(o @ Value::Object(m)) if m.contains_key("type") => parts.push(part_from_value(o)),
            Some(o @ (Value::Object(_) | Value::Number(_) | Value::Bool(_))) => {
                parts.push(Part::Text { text: o.to_string() })
            }
            _ => {}
        }
    }
    if let Some(Value::Array(calls)) = obj.get("tool_calls").or_else(|| obj.get("toolCalls")) {
        parts.extend(calls.iter().filter_map(tool_call_from_value).map(Part::ToolCall));
    }
    if let Some(fc) = obj.get("function_call").filter(|f| f.is_object()) {
        parts.extend(tool_call_from_value(fc).map(Part::ToolCall));
    }
    if matches!(role.as_str(), "tool" | "function" | "ipython")
        && !parts.iter().any(|p| matches!(p, Part::ToolResult(_)))
    {
        let content = obj.get("content").cloned().unwrap_or(Value::Null);
        let call_id = ["tool_call_id", "toolCallId", "id"].iter().find_map(|k| obj.get(*k).and_then(scalar_string));
        parts = vec![Part::ToolResult(ToolResult { call_id, content, ..ToolResult::default() })];
    }
    Some(Message {
        role,
        name: obj.get("name").and_then(Value::as_str).map(str::to_string),
        parts,
        finish_reason: obj.get("finish_reason").or_else(|| obj.get("finishReason")).and_then(scalar_string),
    })
}

/// A tool call in OpenAI (`{id, function: {name, arguments}}`), GenAI
/// (`{id, name, arguments}`) or Vercel (`{toolCallId, toolName, args}`) shape.
pub(crate) fn tool_call_from_value(v: &Value) -> Option<ToolCall> {
    let f = v.get("function").filter(|f| f.is_object()).unwrap_or(v);
    let name = ["name", "toolName", "tool_name"].iter().find_map(|k| json::str_of(f, k))?;
    let arguments = ["arguments", "args", "input", "parameters"]
        .iter()
        .find_map(|k| f.get(*k))
        .cloned()
        .map(decode_json_string)
        .unwrap_or(Value::Null);
    let id = ["id", "toolCallId", "tool_call_id", "call_id"].iter().find_map(|k| v.get(*k).and_then(scalar_string));
    Some(ToolCall { id, name: name.to_string(), arguments })
}

/// A GenAI message part (also the content parts of OpenAI / Vercel / Anthropic messages).
pub(crate) fn part_from_value(p: &Value) -> Part {
    let obj = match p {
        Value::String(t) => return Part::Text { text: t.clone() },
        Value::Object(o) => o,
        other => {
            return Part::Other { kind: "value".into(), raw: other.clone() };
        }
    };
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let text_of = |keys: &[&str]| -> Option<String> {
        keys.iter().find_map(|k| match obj.get(*k) {
            Some(Value::String(t)) => Some(t.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
    };
    match ty {
        "text" | "input_text" | "output_text" => Part::Text { text: text_of(&["content", "text"]).unwrap_or_default() },
        "tool_call" | "tool-call" | "function_call" | "tool_use" | "server_tool_call" => {
            let call = tool_call_from_value(p).unwrap_or_else(|| ToolCall {
                id: obj.get("id").and_then(scalar_string),
                name: String::new(),
                arguments: obj.get("arguments").cloned().unwrap_or(Value::Null),
            });
            Part::ToolCall(call)
        }
        "tool_call_response" | "tool-result" | "tool_result" | "function_call_output" | "server_tool_call_response" => {
            Part::ToolResult(ToolResult {
                call_id: ["id", "toolCallId", "tool_use_id", "call_id"]
                    .iter()
                    .find_map(|k| obj.get(*k).and_then(scalar_string)),
                content: ["response", "result", "output", "content", "server_tool_call_response"]
                    .iter()
                    .find_map(|k| obj.get(*k))
                    .cloned()
                    .unwrap_or(Value::Null),
                is_error: obj.get("is_error").or_else(|| obj.get("isError")).and_then(json::as_bool),
                exit_code: None,
            })
        }
        "reasoning" | "thinking" => {
            Part::Reasoning { text: text_of(&["content", "text", "thinking"]), redacted: false }
        }
        "redacted_thinking" | "redacted_reasoning" => Part::Reasoning { text: None, redacted: true },
        "blob" | "file" | "uri" | "image" | "image_url" | "input_image" | "audio" | "input_audio" => Part::Media {
            modality: obj
                .get("modality")
                .and_then(Value::as_str)
                .unwrap_or(if ty.contains("audio") { "audio" } else { "image" })
                .to_string(),
            mime: ["mime_type", "mimeType", "media_type"]
                .iter()
                .find_map(|k| obj.get(*k).and_then(Value::as_str))
                .map(str::to_string),
            uri: ["uri", "url", "file_id"]
                .iter()
                .find_map(|k| obj.get(*k).and_then(Value::as_str))
                .or_else(|| json::path(p, &["image_url", "url"]).and_then(Value::as_str))
                .map(str::to_string),
        },
        "" if obj.contains_key("text") || obj.contains_key("content") => {
            Part::Text { text: text_of(&["text", "content"]).unwrap_or_default() }
        }
        _ => Part::Other { kind: if ty.is_empty() { "object".into() } else { ty.to_string() }, raw: p.clone() },
    }
}

/// Keys under `prefix` grouped by their numeric index: `llm.input_messages.3.message.role`
/// → `{3: {"message.role": …}}`. A value stored at the index itself (nested exports) is
/// opened up when it is an object.
pub(crate) fn indexed(a: &A, prefix: &str) -> BTreeMap<u64, A> {
    let mut map: BTreeMap<u64, A> = BTreeMap::new();
    for (k, v) in a {
        let Some(rest) = k.strip_prefix(prefix) else {
            continue;
        };
        let (idx, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let Ok(i) = idx.parse::<u64>() else { continue };
        let entry = map.entry(i).or_default();
        if tail.is_empty() {
            if let Value::Object(o) = v {
                for (ik, iv) in o {
                    entry.entry(ik.clone()).or_insert_with(|| iv.clone());
                }
            }
        } else {
            entry.insert(tail.to_string(), v.clone());
        }
    }
    map
}

/// OpenInference flattened messages.
fn oi_messages(a: &A, prefix: &str) -> Vec<Message> {
    let mut msgs = Vec::new();
    for mut m in indexed(a, prefix).into_values() {
        let role = m
            .get("message.role")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .unwrap_or(if prefix.contains("output") { "assistant" } else { "user" })
            .to_string();
        // Moved out of the grouped copy, not cloned again: message contents are most of an
        // OpenInference trace's bytes.
        let content = m.remove("message.content");
        let parts = if role == "tool" {
            vec![Part::ToolResult(ToolResult {
                call_id: m.get("message.tool_call_id").and_then(scalar_string),
                content: content.unwrap_or(Value::Null),
                ..ToolResult::default()
            })]
        } else {
            oi_parts(&m, content)
        };
        msgs.push(Message {
            role,
            name: m.get("message.name").and_then(Value::as_str).map(str::to_string),
            parts,
            finish_reason: m.get("message.finish_reason").and_then(scalar_string),
        });
    }
    msgs
}

/// The parts of one OpenInference message (`m`, its keys without the message prefix):
/// its content, its `message.contents.N`, its `message.tool_calls.N`.
fn oi_parts(m: &A, content: Option<Value>) -> Vec<Part> {
    let mut parts = Vec::new();
    match content {
        Some(Value::String(t)) if !t.is_empty() => parts.push(Part::Text { text: t }),
        Some(Value::Array(items)) => parts.extend(items.iter().map(part_from_value)),
        Some(v @ (Value::Object(_) | Value::Number(_) | Value::Bool(_))) => {
            parts.push(Part::Text { text: v.to_string() })
        }
        _ => {}
    }
    for c in indexed(m, "message.contents.").into_values() {
        let ty = c.get("message_content.type").and_then(Value::as_str).unwrap_or("text");
        match ty {
            "text" => {
                if let Some(t) = c.get("message_content.text").and_then(Value::as_str) {
                    parts.push(Part::Text { text: t.to_string() });
                }
            }
            "reasoning" => parts.push(Part::Reasoning {
                text: c.get("message_content.text").and_then(Value::as_str).map(str::to_string),
                redacted: false,
            }),
            "image" | "audio" => parts.push(Part::Media {
                modality: ty.to_string(),
                mime: None,
                uri: c.get("message_content.image.image.url").and_then(Value::as_str).map(str::to_string),
            }),
            other => parts.push(Part::Other { kind: other.to_string(), raw: Value::Object(c.clone()) }),
        }
    }
    for tc in indexed(m, "message.tool_calls.").into_values() {
        let Some(name) = tc.get("tool_call.function.name").and_then(scalar_string) else {
            continue;
        };
        parts.push(Part::ToolCall(ToolCall {
            id: tc.get("tool_call.id").and_then(scalar_string),
            name,
            arguments: tc.get("tool_call.function.arguments").cloned().map(decode_json_string).unwrap_or(Value::Null),
        }));
    }
    parts
}

/// OpenLLMetry indexed messages: `gen_ai.prompt.N.role|content|tool_call_id`,
/// `gen_ai.completion.N.role|content|finish_reason|tool_calls.M.id|name|arguments`.
fn indexed_messages(a: &A, prefix: &str, default_role: &str) -> Vec<Message> {
    let mut msgs = Vec::new();
    for m in indexed(a, prefix).into_values() {
        let mut obj = Map::new();
        for key in ["role", "content", "tool_call_id", "finish_reason", "name"] {
            if let Some(v) = m.get(key) {
                obj.insert(key.to_string(), v.clone());
            }
        }
        let calls: Vec<Value> = indexed(&m, "tool_calls.")
            .into_values()
            .map(|tc| {
                let mut c = Map::new();
                for key in ["id", "name", "arguments"] {
                    if let Some(v) = tc.get(key) {
                        c.insert(key.to_string(), v.clone());
                    }
                }
                Value::Object(c)
            })
            .collect();
        if !calls.is_empty() {
            obj.insert("tool_calls".into(), Value::Array(calls));
        }
        if obj.is_empty() {
            continue;
        }
        msgs.extend(message_from_value(&Value::Object(obj), default_role));
    }
    msgs
}

fn tool_of(a: &A, span_name: Option<&str>) -> (Option<ToolCall>, Option<Value>) {
    let name = first_s(a, &["gen_ai.tool.name", "tool.name", "ai.toolCall.name"])
        .or_else(|| {
            (s(a, "traceloop.span.kind") == Some("tool")).then(|| first_s(a, &["traceloop.entity.name"])).flatten()
        })
        .or_else(|| {
            span_name.map(|n| {
                let n = n.trim();
                n.strip_prefix("execute_tool ")
                    .or_else(|| n.strip_prefix("running tool: "))
                    .or_else(|| n.strip_prefix("running tool "))
                    .unwrap_or(n)
                    .trim()
                    .to_string()
            })
        })
        .filter(|n| !n.is_empty());
    let Some(name) = name else {
        return (None, None);
    };
    let id = first_s(a, &["gen_ai.tool.call.id", "tool.id", "tool_call.id", "ai.toolCall.id", "tool_call_id"]);
    let arguments = first_v(
        a,
        &[
            "gen_ai.tool.call.arguments",
            "ai.toolCall.args",
            "ai.toolCall.input",
            "tool_arguments",
            "input.value",
            "traceloop.entity.input",
            "langfuse.observation.input",
            "input",
        ],
    )
    .cloned()
    .unwrap_or(Value::Null);
    let result = first_v(
        a,
        &[
            "gen_ai.tool.call.result",
            "ai.toolCall.result",
            "ai.toolCall.output",
            "tool_response",
            "output.value",
            "traceloop.entity.output",
            "langfuse.observation.output",
            "output",
        ],
    )
    .cloned();
    (Some(ToolCall { id, name, arguments }), result)
}

fn usage_of(a: &A) -> Usage {
    let mut u = Usage {
        input_tokens: first_u(
            a,
            &[
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.prompt_tokens",
                "llm.token_count.prompt",
                "ai.usage.promptTokens",
                "ai.usage.inputTokens",
                "llm.usage.prompt_tokens",
            ],
        ),
        output_tokens: first_u(
            a,
            &[
                "gen_ai.usage.output_tokens",
                "gen_ai.usage.completion_tokens",
                "llm.token_count.completion",
                "ai.usage.completionTokens",
                "ai.usage.outputTokens",
                "llm.usage.completion_tokens",
            ],
        ),
        total_tokens: first_u(
            a,
            &["gen_ai.usage.total_tokens", "llm.token_count.total", "llm.usage.total_tokens", "ai.usage.totalTokens"],
        ),
        cache_read_tokens: first_u(
            a,
            &[
                "gen_ai.usage.cache_read.input_tokens",
                "gen_ai.usage.cache_read_input_tokens",
                "llm.token_count.prompt_details.cache_read",
                "ai.usage.cachedInputTokens",
            ],
        ),
        reasoning_tokens: first_u(
            a,
            &[
                "gen_ai.usage.reasoning.output_tokens",
                "gen_ai.usage.reasoning_tokens",
                "llm.token_count.completion_details.reasoning",
                "ai.usage.reasoningTokens",
            ],
        ),
    };
    if u.is_empty() {
        if let Some(d) = a.get("langfuse.observation.usage_details").filter(|d| d.is_object()) {
            u.input_tokens = ["input", "prompt_tokens", "input_tokens"].iter().find_map(|k| json::u64_of(d, k));
            u.output_tokens = ["output", "completion_tokens", "output_tokens"].iter().find_map(|k| json::u64_of(d, k));
            u.total_tokens = ["total", "total_tokens"].iter().find_map(|k| json::u64_of(d, k));
        }
    }
    u
}

fn cost_of(a: &A) -> Option<f64> {
    if let Some(c) = first_f(
        a,
        &[
            "llm.cost.total",
            "gen_ai.cost.total_cost",
            "gen_ai.cost.total",
            "gen_ai.cost.total_usd",
            "gen_ai.cost.usd",
            "gen_ai.usage.cost",
        ],
    ) {
        return Some(c);
    }
    if let Some(c) = a.get("langfuse.observation.cost_details").and_then(|d| json::f64_of(d, "total")) {
        return Some(c);
    }
    let pairs = [
        ("llm.cost.prompt", "llm.cost.completion"),
        ("gen_ai.cost.input_cost", "gen_ai.cost.output_cost"),
        ("gen_ai.cost.input_usd", "gen_ai.cost.output_usd"),
    ];
    pairs.iter().find_map(|(i, o)| {
        let (i, o) = (first_f(a, &[i]), first_f(a, &[o]));
        (i.is_some() || o.is_some()).then(|| i.unwrap_or(0.0) + o.unwrap_or(0.0))
    })
}

/// OpenInference inline annotations: `annotations.N.annotation.name|score|label|explanation|annotator_kind`.
fn oi_scores(a: &A, prefix: &str, inner: &str) -> Vec<Score> {
    indexed(a, prefix)
        .into_values()
        .filter_map(|m| {
            let get = |k: &str| m.get(&format!("{inner}{k}"));
            let name = get("name").and_then(scalar_string)?;
            Some(Score {
                name,
                value: get("score").and_then(as_f64),
                label: get("label").and_then(scalar_string),
                comment: get("explanation").and_then(scalar_string),
                source: get("annotator_kind").and_then(Value::as_str).map(score_source).unwrap_or_default(),
            })
        })
        .collect()
}

pub(crate) fn score_source(kind: &str) -> ScoreSource {
    match kind.to_ascii_uppercase().as_str() {
        "HUMAN" => ScoreSource::Human,
        "LLM" => ScoreSource::Llm,
        "CODE" => ScoreSource::Code,
        _ => ScoreSource::Unknown,
    }
}

fn is_exception_event(e: &Event) -> bool {
    e.name == "exception"
        || e.name == "gen_ai.client.operation.exception"
        || e.attributes.contains_key("exception.type")
        || e.attributes.contains_key("exception.message")
        || e.attributes
            .get("body")
            .is_some_and(|b| b.get("exception.type").is_some() || b.get("exception.message").is_some())
}

fn exception_error(e: &Event) -> ErrorInfo {
    let obj = event_object(&e.attributes);
    let mut err = ErrorInfo::new(ErrorSource::Exception);
    if let Some(t) = first_s(&obj, &["exception.type", "error.type"]) {
        err = err.with_type(t);
    }
    let message = first_s(&obj, &["exception.message"]).or_else(|| match e.attributes.get("body") {
        Some(Value::String(b)) if !b.is_empty() => Some(b.clone()),
        _ => None,
    });
    if let Some(m) = message {
        err = err.with_message(m);
    }
    err.stacktrace = first_s(&obj, &["exception.stacktrace"]);
    err
}

fn span_error(
    a: &A,
    status: Code,
    status_message: Option<&str>,
    exception: Option<&Event>,
    step: &Step,
) -> Option<ErrorInfo> {
    let error_type = first_s(a, &["error.type", "exception.type"]).filter(|t| t != "_OTHER" || status == Code::Error);
    if status == Code::Error || (status == Code::Unset && exception.is_some()) {
        let mut err = match exception {
            Some(e) => exception_error(e),
            None => ErrorInfo::new(ErrorSource::SpanStatus),
        };
        if err.r#type.is_none() {
            if let Some(t) = &error_type {
                err = err.with_type(t.clone());
            }
        }
        if err.message.is_none() {
            if let Some(m) = status_message {
                err = err.with_message(m);
            }
        }
        return Some(err);
    }
    if status == Code::Ok {
        return None;
    }
    if let Some(t) = error_type {
        let mut err = ErrorInfo::new(ErrorSource::ErrorField).with_type(t);
        if let Some(m) = status_message {
            err = err.with_message(m);
        }
        return Some(err);
    }
    if s(a, "langfuse.observation.level").is_some_and(|l| l.eq_ignore_ascii_case("ERROR")) {
        let mut err = ErrorInfo::new(ErrorSource::Level);
        if let Some(m) = first_s(a, &["langfuse.observation.status_message"]).or(status_message.map(str::to_string)) {
            err = err.with_message(m);
        }
        return Some(err);
    }
    if first_u(a, &["logfire.level_num"]).is_some_and(|n| n >= 17) {
        let mut err = ErrorInfo::new(ErrorSource::Level);
        if let Some(m) = first_s(a, &["logfire.msg"]) {
            err = err.with_message(m);
        }
        return Some(err);
    }
    if let Some(reason) =
        step.model.as_ref().and_then(|m| m.finish_reasons.iter().find(|r| is_failing_finish_reason(r)))
    {
        let mut err = ErrorInfo::new(ErrorSource::ErrorField)
            .with_type("finish_reason")
            .with_message(format!("model stopped with finish reason `{reason}`"));
        err.code = Some(reason.clone());
        return Some(err);
    }
    if step.kind == StepKind::Tool {
        if let Some(r) = &step.tool_result {
            return text_error(&value_text(&r.content));
        }
    }
    None
}

fn is_failing_finish_reason(r: &str) -> bool {
    matches!(r.to_ascii_lowercase().as_str(), "length" | "max_tokens" | "content_filter" | "content-filter" | "error")
}

/// A conservative reading of tool output text: only unmistakable failure shapes.
pub(crate) fn text_error(text: &str) -> Option<ErrorInfo> {
    let t = text.trim_start();
    let first_line = t.lines().next().unwrap_or("").trim();
    if let Some(rest) = first_line.strip_prefix("Exit code: ").or_else(|| first_line.strip_prefix("Exit code ")) {
        if let Ok(code) = rest.trim().parse::<i64>() {
            if code != 0 {
                let mut err = ErrorInfo::new(ErrorSource::ExitCode).with_message(json::clip(t, 500));
                err.code = Some(code.to_string());
                return Some(err);
            }
            return None;
        }
    }
    let tb = t.starts_with("Traceback (most recent call last)");
    let tagged = t.contains("<tool_use_error>");
    let prefixed = ["Error:", "ERROR:", "Error executing tool", "Exception:"].iter().any(|p| t.starts_with(p));
    let not_found = first_line.ends_with("command not found");
    let http = first_line
        .strip_prefix("HTTP Error ")
        .or_else(|| first_line.strip_prefix("HTTP "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (400..600).contains(c));
    if !(tb || tagged || prefixed || not_found || http.is_some()) {
        return None;
    }
    let mut err = ErrorInfo::new(ErrorSource::TextHeuristic).with_message(json::clip(t, 500));
    if tb {
        // The exception class is on the last line: `ValueError: …`.
        if let Some(last) = t.lines().rev().find(|l| !l.trim().is_empty()) {
            if let Some((ty, _)) = last.split_once(':') {
                if !ty.contains(' ') {
                    err = err.with_type(ty);
                }
            }
        }
    }
    err.code = http.map(|c| c.to_string());
    Some(err)
}

// ---------------------------------------------------------------------------------------
// Grouping steps into traces
// ---------------------------------------------------------------------------------------

/// Collects mapped spans per trace id (first-seen order) and finishes the traces.
pub(crate) struct Collector {
    format: Format,
    order: Vec<String>,
    traces: HashMap<String, Acc>,
}

struct Acc {
    trace: Trace,
    index: HashMap<String, usize>,
    /// File order per step, the tie-breaker after start time.
    order: Vec<u64>,
    next: u64,
}

impl Collector {
    pub(crate) fn new(format: Format) -> Collector {
        Collector { format, order: Vec::new(), traces: HashMap::new() }
    }

    pub(crate) fn add(&mut self, ctx: &FileCtx<'_>, pos: Pos, trace_id: &str, resource: &AttrMap, out: SpanOut) {
        let format = self.format;
        let acc = self.traces.entry(trace_id.to_string()).or_insert_with(|| {
            self.order.push(trace_id.to_string());
            Acc { trace: ctx.trace(format, trace_id, pos), index: HashMap::new(), order: Vec::new(), next: 0 }
        });
        let t = &mut acc.trace;
        for (k, v) in resource {
            t.attributes.entry(format!("resource.{k}")).or_insert_with(|| v.clone());
        }
        for d in &out.dialects {
            if !t.source.dialects.iter().any(|x| x == d) {
                t.source.dialects.push((*d).to_string());
            }
        }
        if t.session_id.is_none() {
            t.session_id = out.session_id;
        }
        if t.user_id.is_none() {
            t.user_id = out.user_id;
        }
        if t.name.is_none() {
            t.name = out.trace_name;
        }
        for sc in out.trace_scores {
            if !t.scores.contains(&sc) {
                t.scores.push(sc);
            }
        }
        t.signals.extend(out.signals);
        let mut step = out.step;
        if step.id.is_empty() {
            step.id = format!("span:{}", acc.next);
        }
        acc.next += 1;
        match acc.index.get(&step.id) {
            Some(&i) => {
                // The same span twice (console exporters print on start and on end):
                // keep the ended copy.
                let old = &mut t.steps[i];
                if old.end.is_none() && step.end.is_some() {
                    *old = step;
                }
            }
            None => {
                acc.index.insert(step.id.clone(), t.steps.len());
                t.steps.push(step);
                acc.order.push(acc.next);
            }
        }
    }

    /// Attach a score to a step of a known trace (or to the trace when the step is unknown).
    pub(crate) fn add_score(&mut self, trace_id: &str, span_id: Option<&str>, score: Score) {
        let Some(acc) = self.traces.get_mut(trace_id) else {
            return;
        };
        match span_id.and_then(|id| acc.index.get(id)) {
            Some(&i) => acc.trace.steps[i].scores.push(score),
            None => acc.trace.scores.push(score),
        }
    }

    pub(crate) fn finish(self, sink: &mut Sink<'_>) {
        let Collector { order, mut traces, .. } = self;
        for id in order {
            if let Some(acc) = traces.remove(&id) {
                sink(finish_trace(acc));
            }
        }
    }
}

fn finish_trace(acc: Acc) -> Trace {
    let Acc { mut trace, order, .. } = acc;
    let mut steps: Vec<(u64, Step)> = order.into_iter().zip(std::mem::take(&mut trace.steps)).collect();
    steps.sort_by_key(|(o, s)| (s.start.unwrap_or(Nanos::MAX), *o));
    trace.steps = steps.into_iter().map(|(_, s)| s).collect();
    for (i, s) in trace.steps.iter_mut().enumerate() {
        s.seq = i as u32;
    }
    let by_id: HashMap<String, usize> = trace.steps.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
    let parent: Vec<Option<usize>> = trace
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| s.parent_id.as_ref().and_then(|p| by_id.get(p).copied()).filter(|&p| p != i))
        .collect();
    let ancestors = |i: usize| ancestors_of(&parent, i);
    // Agent name inherited from the nearest ancestor that names one.
    let agents: Vec<Option<String>> = (0..trace.steps.len())
        .map(|i| trace.steps[i].agent.clone().or_else(|| ancestors(i).find_map(|p| trace.steps[p].agent.clone())))
        .collect();
    for (s, a) in trace.steps.iter_mut().zip(agents) {
        s.agent = a;
    }
    // Usage/cost on a step whose descendants carry their own is an aggregate: drop it.
    let mut aggregate_usage = vec![false; trace.steps.len()];
    let mut aggregate_cost = vec![false; trace.steps.len()];
    for i in 0..trace.steps.len() {
        let has_usage = !trace.steps[i].usage.is_empty();
        let has_cost = trace.steps[i].cost_usd.is_some();
        if !has_usage && !has_cost {
            continue;
        }
        for p in ancestors(i) {
            if has_usage {
                aggregate_usage[p] = true;
            }
            if has_cost {
                aggregate_cost[p] = true;
            }
        }
    }
    for (i, s) in trace.steps.iter_mut().enumerate() {
        if aggregate_usage[i] {
            s.usage = Usage::default();
        }
        if aggregate_cost[i] {
            s.cost_usd = None;
        }
    }
    smolagents_step_limit(&mut trace, &parent);
    let root = (0..trace.steps.len()).find(|&i| parent[i].is_none());
    if trace.name.is_none() {
        trace.name = root.and_then(|r| trace.steps[r].name.clone());
    }
    trace.task = find_task(&trace.steps, &parent);
    trace
}

/// smolagents ends a run that used up its steps by asking the model for one last answer
/// (`_handle_max_steps_reached`): nothing raises, and its `AgentMaxStepsError` stays in the
/// agent's memory. OpenInference's instrumentation records what shows it: the run span's
/// `smolagents.max_steps`, and one `Step N` span per step under it. A run span whose steps
/// reached that number with no `final_answer` tool call below it hit its step limit; the
/// error goes on the run span, named as smolagents names it (class `turn_limit`).
fn smolagents_step_limit(trace: &mut Trace, parent: &[Option<usize>]) {
    let n = trace.steps.len();
    for r in 0..n {
        let Some(max) = trace.steps[r].attributes.get("smolagents.max_steps").and_then(as_u64) else { continue };
        if max == 0 || trace.steps[r].error.is_some() {
            continue;
        }
        let taken = (0..n)
            .filter(|&i| parent[i] == Some(r))
            .filter_map(|i| trace.steps[i].name.as_deref()?.strip_prefix("Step ")?.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let answered = (0..n).any(|i| {
            let s = &trace.steps[i];
            let tool =
                s.tool_call.as_ref().map(|c| c.name.as_str()).or_else(|| s.attributes.get("tool.name")?.as_str());
            tool == Some("final_answer") && ancestors_of(parent, i).any(|p| p == r)
        });
        if taken < max || answered {
            continue;
        }
        let what = format!("Reached max steps: {taken} steps of smolagents.max_steps = {max}, and no final_answer");
        // The span's status stays as recorded (OK: nothing raised in it); the error is ours.
        let root = &mut trace.steps[r];
        root.error = Some(ErrorInfo::new(ErrorSource::Terminal).with_type("AgentMaxStepsError").with_message(&what));
        trace.signals.push(Signal { step: Some(root.id.clone()), ..Signal::new("terminal", false, what) });
    }
}

/// Arena indexes of the ancestors of `i`, nearest first (cycle-safe).
pub(crate) fn ancestors_of(parent: &[Option<usize>], mut i: usize) -> impl Iterator<Item = usize> + '_ {
    let mut guard = 0;
    std::iter::from_fn(move || {
        let p = (*parent.get(i)?)?;
        guard += 1;
        if guard > 10_000 {
            return None;
        }
        i = p;
        Some(p)
    })
}

/// The task as given: the first agent (or root) step's input, else the first user
/// message of the first model call.
fn find_task(steps: &[Step], parent: &[Option<usize>]) -> Option<Value> {
    for (i, step) in steps.iter().enumerate() {
        if step.kind != StepKind::Agent && parent[i].is_some() {
            continue;
        }
        match &step.input {
            Some(Value::String(t)) if !t.trim().is_empty() => {
                return Some(Value::String(t.clone()));
            }
            Some(Value::Object(o)) => {
                for key in ["task", "question", "query", "input", "prompt"] {
                    if let Some(v) = o.get(key).filter(|v| v.as_str().is_some_and(|t| !t.is_empty())) {
                        return Some(v.clone());
                    }
                }
            }
            _ => {}
        }
        if let Some(t) = first_user_text(&step.input_messages) {
            return Some(Value::String(t));
        }
    }
    steps.iter().filter(|s| s.kind == StepKind::Llm).find_map(|s| first_user_text(&s.input_messages)).map(Value::String)
}

fn first_user_text(msgs: &[Message]) -> Option<String> {
    msgs.iter().filter(|m| m.role == "user").map(Message::joined_text).find(|t| !t.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::read::Records;
    use serde_json::json;

    fn run(
        f: fn(&mut Records, &mut FileCtx<'_>, &mut Sink<'_>) -> Result<(), ParseError>,
        values: Vec<Value>,
    ) -> (Vec<Trace>, usize) {
        let mut records = Records::from_values(values);
        let mut ctx = FileCtx::new("test.json");
        let mut traces = Vec::new();
        f(&mut records, &mut ctx, &mut |t| traces.push(t)).unwrap();
        (traces, ctx.warnings.len())
    }

    fn kv(key: &str, value: Value) -> Value {
        json!({"key": key, "value": value})
    }

    #[test]
    fn ids_and_enums() {
        assert_eq!(normalize_id("0xABCDEF0123456789").as_deref(), Some("abcdef0123456789"));
        assert_eq!(normalize_id("0000000000000000"), None);
        assert_eq!(normalize_id("None"), None);
        assert_eq!(normalize_id("W47/95gDgQPSabYzgT/GDA==").as_deref(), Some("5b8efff798038103d269b633813fc60c"));
        assert_eq!(span_kind_name(&json!(3)).as_deref(), Some("client"));
        assert_eq!(span_kind_name(&json!("SPAN_KIND_CLIENT")).as_deref(), Some("client"));
        assert_eq!(span_kind_name(&json!("SpanKind.INTERNAL")).as_deref(), Some("internal"));
        assert_eq!(span_kind_name(&json!("0")), None);
        assert_eq!(status_code(&json!(2)), Code::Error);
        assert_eq!(status_code(&json!("STATUS_CODE_ERROR")), Code::Error);
        assert_eq!(status_code(&json!("StatusCode.OK")), Code::Ok);
        assert_eq!(status_code(&json!("Unset")), Code::Unset);
        assert_eq!(status_code(&json!("2")), Code::Error);
    }

    #[test]
    fn snake_case_names_and_strings_for_ints() {
        let doc = json!({"resource_spans": [{"resource": {"attributes": [kv("service.name", json!({"string_value": "svc"}))]},
            "scope_spans": [{"scope": {"name": "x"}, "spans": [
              {"trace_id": "AB12AB12AB12AB12AB12AB12AB12AB12", "span_id": "CD34CD34CD34CD34", "name": "chat m",
               "kind": "SPAN_KIND_CLIENT", "start_time_unix_nano": "1700000000000000000", "end_time_unix_nano": 1700000001000000000u64,
               "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
               "attributes": [kv("gen_ai.operation.name", json!({"string_value": "chat"})),
                              kv("gen_ai.usage.input_tokens", json!({"int_value": "12"})),
                              kv("error.type", json!({"string_value": "<class 'openai.APIError'>"}))]}]}]}]});
        let (traces, warnings) = run(parse_traces, vec![doc]);
        assert_eq!(warnings, 0);
        assert_eq!(traces.len(), 1);
        let t = &traces[0];
        assert_eq!(t.id, "ab12ab12ab12ab12ab12ab12ab12ab12");
        assert_eq!(t.attributes["resource.service.name"], json!("svc"));
        let s = &t.steps[0];
        assert_eq!(s.id, "cd34cd34cd34cd34");
        assert_eq!(s.kind, StepKind::Llm);
        assert_eq!(s.start, Some(1_700_000_000_000_000_000));
        assert_eq!(s.usage.input_tokens, Some(12));
        assert_eq!(s.status, StepStatus::Error);
        let e = s.error.as_ref().unwrap();
        assert_eq!(e.source, Some(ErrorSource::SpanStatus));
        assert_eq!(e.r#type.as_deref(), Some("openai.APIError"));
        assert_eq!(e.message.as_deref(), Some("boom"));
        assert_eq!(s.attributes["otel.span.kind"], json!("client"));
        assert_eq!(t.source.dialects, vec!["genai".to_string()]);
    }

    #[test]
    fn broken_records_and_wrong_shapes_warn() {
        let (traces, warnings) = run(
            parse_traces,
            vec![
                json!({"foo": 1}),
                json!([1, 2]),
                json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "no ids"}, 5]}]}]}),
            ],
        );
        assert!(traces.is_empty());
        assert_eq!(warnings, 4);
        let (traces, _) = run(parse_traces, vec![]);
        assert!(traces.is_empty());
    }

    #[test]
    fn spans_of_one_trace_across_records_and_children_before_parents() {
        let span = |id: &str, parent: Option<&str>, start: u64| {
            json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "aa", "spanId": id, "parentSpanId": parent.unwrap_or(""),
                "name": id, "startTimeUnixNano": start.to_string()}]}]}]})
        };
        let (traces, _) = run(parse_traces, vec![span("c", Some("p"), 20), span("p", None, 10)]);
        assert_eq!(traces.len(), 1);
        let ids: Vec<&str> = traces[0].steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["p", "c"]);
        assert_eq!(traces[0].steps[0].parent_id, None);
        assert_eq!(traces[0].name.as_deref(), Some("p"));
    }

    #[test]
    fn legacy_events_openllmetry_and_vercel() {
        let mut a = Map::new();
        a.insert("gen_ai.system".into(), json!("openai"));
        a.insert("gen_ai.usage.prompt_tokens".into(), json!("7"));
        a.insert("gen_ai.usage.completion_tokens".into(), json!(3));
        let events = vec![
            Event { name: "gen_ai.user.message".into(), time: None, attributes: json!({"content": "hi"}).as_object().unwrap().clone() },
            Event {
                name: "gen_ai.choice".into(),
                time: None,
                attributes: json!({"index": 0, "finish_reason": "length", "message": {"content": "cut", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]}}).as_object().unwrap().clone(),
            },
        ];
        let out = map_span(
            SpanIn { name: Some("chat gpt".into()), attributes: a, events, ..SpanIn::default() },
            MapOpts::default(),
        );
        let s = out.step;
        assert_eq!(s.kind, StepKind::Llm);
        assert_eq!(s.input_messages[0].joined_text(), "hi");
        assert_eq!(s.output_messages[0].finish_reason.as_deref(), Some("length"));
        assert!(
            matches!(&s.output_messages[0].parts[1], Part::ToolCall(c) if c.name == "f" && c.arguments == json!({"x": 1}))
        );
        assert_eq!(s.usage.input_tokens, Some(7));
        assert_eq!(s.error.as_ref().unwrap().code.as_deref(), Some("length"));
        assert!(out.dialects.contains(&"genai-legacy"));

        let a = json!({"traceloop.span.kind": "workflow", "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "q",
            "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.tool_calls.0.name": "search",
            "gen_ai.completion.0.tool_calls.0.arguments": "{\"q\": 1}", "llm.usage.total_tokens": 9, "llm.request.type": "chat"});
        let out = map_span(SpanIn { attributes: flat_attrs(&a), ..SpanIn::default() }, MapOpts::default());
        assert_eq!(out.step.kind, StepKind::Workflow);
        assert_eq!(out.step.input_messages[0].joined_text(), "q");
        assert!(matches!(&out.step.output_messages[0].parts[0], Part::ToolCall(c) if c.name == "search"));
        assert_eq!(out.step.usage.total_tokens, Some(9));
        assert!(out.dialects.contains(&"openllmetry"));

        let a = json!({"ai.operationId": "ai.toolCall", "ai.toolCall.name": "weather", "ai.toolCall.id": "t1",
            "ai.toolCall.args": "{\"city\":\"Paris\"}", "ai.toolCall.result": "Error: city not found"});
        let out = map_span(
            SpanIn { name: Some("ai.toolCall".into()), attributes: flat_attrs(&a), ..SpanIn::default() },
            MapOpts::default(),
        );
        let s = out.step;
        assert_eq!(s.kind, StepKind::Tool);
        assert_eq!(s.tool_call.as_ref().unwrap().arguments, json!({"city": "Paris"}));
        assert_eq!(s.error.as_ref().unwrap().source, Some(ErrorSource::TextHeuristic));
        assert_eq!(s.tool_result.as_ref().unwrap().is_error, Some(true));

        let a = json!({"ai.operationId": "ai.generateText.doGenerate", "ai.prompt.messages": "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"yo\"}]}]",
            "ai.response.text": "hey", "ai.response.finishReason": "stop", "ai.usage.promptTokens": 5, "ai.usage.completionTokens": 2, "ai.model.id": "gpt-x"});
        let out = map_span(SpanIn { attributes: flat_attrs(&a), ..SpanIn::default() }, MapOpts::default());
        let s = out.step;
        assert_eq!(s.kind, StepKind::Llm);
        assert_eq!(s.input_messages[0].joined_text(), "yo");
        assert_eq!(s.output_messages[0].joined_text(), "hey");
        assert_eq!(s.usage.output_tokens, Some(2));
        assert_eq!(s.model.as_ref().unwrap().name(), Some("gpt-x"));
        assert!(s.error.is_none());
    }

    #[test]
    fn langfuse_logfire_litellm() {
        let a = json!({"langfuse.observation.type": "generation", "langfuse.observation.level": "ERROR",
            "langfuse.observation.status_message": "rate limited", "gen_ai.cost.total_cost": "0.5"});
        let out = map_span(SpanIn { attributes: flat_attrs(&a), ..SpanIn::default() }, MapOpts::default());
        let e = out.step.error.unwrap();
        assert_eq!(e.source, Some(ErrorSource::Level));
        assert_eq!(e.message.as_deref(), Some("rate limited"));
        assert_eq!(out.step.cost_usd, Some(0.5));
        assert!(out.dialects.contains(&"langfuse") && out.dialects.contains(&"litellm"));

        let a = json!({"logfire.msg": "running tool: get_time", "gen_ai.tool.name": "get_time", "tool_arguments": "{}", "tool_response": "12:00"});
        let out = map_span(
            SpanIn { name: Some("running tool".into()), attributes: flat_attrs(&a), ..SpanIn::default() },
            MapOpts::default(),
        );
        assert_eq!(out.step.kind, StepKind::Tool);
        assert_eq!(out.step.tool_call.as_ref().unwrap().name, "get_time");
        assert_eq!(out.step.tool_result.as_ref().unwrap().content, json!("12:00"));
        assert!(out.dialects.contains(&"logfire"));
    }

    #[test]
    fn exception_events_and_evaluations() {
        let ev =
            |name: &str, v: Value| Event { name: name.into(), time: None, attributes: v.as_object().unwrap().clone() };
        let out = map_span(
            SpanIn {
                status: Code::Unset,
                events: vec![
                    ev(
                        "exception",
                        json!({"exception.type": "<class 'ValueError'>", "exception.message": "bad", "exception.stacktrace": "Traceback…"}),
                    ),
                    ev(
                        "gen_ai.evaluation.result",
                        json!({"gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.2, "gen_ai.evaluation.score.label": "fail"}),
                    ),
                ],
                ..SpanIn::default()
            },
            MapOpts::default(),
        );
        let e = out.step.error.unwrap();
        assert_eq!(e.source, Some(ErrorSource::Exception));
        assert_eq!(e.r#type.as_deref(), Some("ValueError"));
        assert_eq!(e.stacktrace.as_deref(), Some("Traceback…"));
        assert_eq!(out.step.scores[0].label.as_deref(), Some("fail"));
        assert_eq!(out.step.scores[0].value, Some(0.2));
        // An OK span with an exception event it handled itself is not an error.
        let out = map_span(
            SpanIn {
                status: Code::Ok,
                events: vec![ev("exception", json!({"exception.type": "X"}))],
                ..SpanIn::default()
            },
            MapOpts::default(),
        );
        assert!(out.step.error.is_none());
        assert_eq!(out.step.status, StepStatus::Ok);
    }

    #[test]
    fn text_heuristic_is_conservative() {
        assert!(text_error("no error here, the error rate is 0").is_none());
        assert!(text_error("Exit code: 0\nok").is_none());
        assert_eq!(text_error("Exit code: 2\nboom").unwrap().source, Some(ErrorSource::ExitCode));
        let e = text_error("Traceback (most recent call last):\n  File x\nKeyError: 'a'").unwrap();
        assert_eq!(e.r#type.as_deref(), Some("KeyError"));
        assert_eq!(text_error("HTTP 503 Service Unavailable").unwrap().code.as_deref(), Some("503"));
        assert!(text_error("bash: foo: command not found").is_some());
    }

    #[test]
    fn console_spans_printed_twice_keep_the_ended_copy() {
        let span = |end: Option<&str>| {
            json!({"name": "execute_tool x", "context": {"trace_id": "0xAA", "span_id": "0xBB", "trace_state": "[]"},
                "kind": "SpanKind.INTERNAL", "parent_id": null, "start_time": "2025-01-01T00:00:00.000000Z", "end_time": end,
                "status": {"status_code": if end.is_some() { "ERROR" } else { "UNSET" }, "description": "denied"},
                "attributes": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "x"}, "events": [], "links": [],
                "resource": {"attributes": {"service.name": "s"}, "schema_url": ""}})
        };
        let (traces, _) = run(parse_console, vec![span(None), span(Some("2025-01-01T00:00:01.000000Z"))]);
        assert_eq!(traces.len(), 1);
        let t = &traces[0];
        assert_eq!(t.id, "aa");
        assert_eq!(t.steps.len(), 1);
        assert_eq!(t.steps[0].id, "bb");
        assert_eq!(t.steps[0].status, StepStatus::Error);
        assert_eq!(t.steps[0].tool_call.as_ref().unwrap().name, "x");
    }

    #[test]
    fn logs_make_partial_steps() {
        let doc = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"traceId": "aa", "spanId": "bb", "timeUnixNano": "5", "eventName": "gen_ai.client.operation.exception",
             "severityNumber": 13, "body": {"kvlistValue": {"values": [kv("exception.type", json!({"stringValue": "openai.RateLimitError"})),
                                                                    kv("exception.message", json!({"stringValue": "slow down"}))]}}},
            {"traceId": "aa", "spanId": "cc", "eventName": "gen_ai.client.inference.operation.details",
             "attributes": [kv("gen_ai.operation.name", json!({"stringValue": "chat"})), kv("gen_ai.usage.input_tokens", json!({"intValue": 4}))]},
            {"spanId": "dd"}]}]}]});
        let (traces, warnings) = run(parse_logs, vec![doc]);
        assert_eq!(warnings, 1);
        assert_eq!(traces.len(), 1);
        let t = &traces[0];
        assert_eq!(t.steps.len(), 2);
        let bb = &t.steps[t.step_index("bb").unwrap()];
        assert_eq!(bb.kind, StepKind::Other);
        assert_eq!(bb.status, StepStatus::Error);
        let e = bb.error.as_ref().unwrap();
        assert_eq!(
            (e.source, e.r#type.as_deref(), e.message.as_deref()),
            (Some(ErrorSource::Exception), Some("openai.RateLimitError"), Some("slow down"))
        );
        let cc = &t.steps[t.step_index("cc").unwrap()];
        assert_eq!(cc.kind, StepKind::Other);
        assert_eq!(cc.status, StepStatus::Unset);
        assert!(cc.error.is_none());
        assert_eq!(cc.usage.input_tokens, Some(4));
        assert_eq!(cc.events.len(), 1);
        assert!(cc.start.is_none());
    }

    #[test]
    fn attribute_map_and_hostile_values() {
        let (traces, warnings) = run(
            parse_attribute_map,
            vec![json!({"openinference.span.kind": "TOOL", "tool.name": "t", "input.value": "{\"a\":1}"}), json!("x")],
        );
        assert_eq!(warnings, 1);
        assert_eq!(traces[0].steps[0].tool_call.as_ref().unwrap().arguments, json!({"a": 1}));
        // Random shapes in every field must not panic.
        for v in [
            json!(null),
            json!(1),
            json!({"gen_ai.input.messages": 5, "gen_ai.output.messages": [1, null, {"parts": "x"}],
            "llm.input_messages.x.message.role": 1, "llm.input_messages.99999999999999999999.message.role": "user",
            "ai.prompt": {"messages": 3}, "gen_ai.completion": [{"role": 7}], "langfuse.observation.usage_details": [1]}),
        ] {
            let _ = run(parse_attribute_map, vec![v]);
        }
    }

    /// Random JSON built from the keys these adapters look at must never panic.
    mod random_json {
        use super::*;
        use proptest::prelude::*;

        const KEYS: [&str; 40] = [
            "resourceSpans",
            "scopeSpans",
            "spans",
            "traceId",
            "spanId",
            "parentSpanId",
            "attributes",
            "events",
            "status",
            "code",
            "message",
            "kind",
            "key",
            "value",
            "stringValue",
            "intValue",
            "kvlistValue",
            "arrayValue",
            "values",
            "resourceLogs",
            "scopeLogs",
            "logRecords",
            "body",
            "context",
            "trace_id",
            "span_id",
            "child_spans",
            "span_attributes",
            "duration",
            "timestamp",
            "status_code",
            "gen_ai.input.messages",
            "parts",
            "role",
            "llm.input_messages.0.message.role",
            "openinference.span.kind",
            "gen_ai.operation.name",
            "data",
            "startTimeUnixNano",
            "logs",
        ];

        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                "[a-zA-Z0-9 .:_{}\\[\\]\"']{0,12}".prop_map(Value::String),
                prop::sample::select(
                    &["LLM", "TOOL", "chat", "execute_tool", "ERROR", "2", "PT1S", "0xab", "None", "exception"][..]
                )
                .prop_map(|s| Value::String(s.to_string())),
            ];
            leaf.prop_recursive(6, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec((prop::sample::select(&KEYS[..]), inner), 0..6)
                        .prop_map(|kvs| Value::Object(kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
                ]
            })
        }

        type Adapter = fn(&mut Records, &mut FileCtx<'_>, &mut Sink<'_>) -> Result<(), ParseError>;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn adapters_survive(values in prop::collection::vec(json_value(), 0..4)) {
                let adapters: [Adapter; 6] = [
                    parse_traces,
                    parse_logs,
                    parse_console,
                    parse_attribute_map,
                    crate::trace::formats::phoenix::parse,
                    crate::trace::formats::span_rows::parse,
                ];
                for f in adapters {
                    let mut records = Records::from_values(values.clone());
                    let mut ctx = FileCtx::new("p.json");
                    let mut n = 0;
                    let _ = f(&mut records, &mut ctx, &mut |mut t: Trace| {
                        t.fill_totals();
                        crate::trace::outcome::derive(&mut t);
                        n += 1;
                    });
                }
            }
        }
    }
}
