//! Phoenix span JSON (trace-formats.md §2.1): `px traces` trace files
//! `{traceId, spans: [PhoenixSpan], annotations?}`, REST pages `{data: [PhoenixSpan],
//! next_cursor}`, and bare span objects or arrays of them.
//!
//! A PhoenixSpan is `{id, name, context: {trace_id, span_id}, span_kind, parent_id,
//! start_time, end_time, status_code, status_message, attributes, events}`; Phoenix pops
//! `openinference.span.kind` into `span_kind`, so it is put back before the shared
//! OpenInference mapping of [`super::otlp::map_span`] runs. Attributes may be flat dotted
//! keys (REST) or nested objects (stored form); nested ones are flattened first. Span
//! annotations become step scores (trace scores when they name no known span).

use serde_json::{Map, Value};

use super::otlp::{self, Collector, MapOpts, SpanIn, flat_attrs, flat_events, id_of, map_span, status_code};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_f64, parse_time, scalar_string};
use crate::trace::model::{AttrMap, Score};
use crate::trace::read::{Pos, Records};

pub fn parse(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let mut col = Collector::new(Format::Phoenix);
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        handle(&rec.value, rec.pos, None, ctx, &mut col, 0);
    }
    col.finish(sink);
    Ok(())
}

fn handle(v: &Value, pos: Pos, file_trace: Option<&str>, ctx: &mut FileCtx<'_>, col: &mut Collector, depth: u32) {
    match v {
        Value::Array(items) if depth < 4 => {
            for item in items {
                handle(item, pos, file_trace, ctx, col, depth + 1);
            }
        }
        Value::Object(o) if depth < 4 && o.get("spans").is_some_and(Value::is_array) => {
            // A `px traces` trace file.
            let trace_id = ["traceId", "trace_id"].iter().find_map(|k| o.get(*k)).and_then(id_of);
            if let Some(spans) = o.get("spans") {
                handle(spans, pos, trace_id.as_deref(), ctx, col, depth + 1);
            }
            if let Some(Value::Array(anns)) = o.get("annotations") {
                for a in anns {
                    annotation(a, trace_id.as_deref(), col);
                }
            }
        }
        Value::Object(o) if depth < 4 && o.get("data").is_some_and(Value::is_array) => {
            if let Some(data) = o.get("data") {
                handle(data, pos, file_trace, ctx, col, depth + 1);
            }
        }
        Value::Object(_) if v.get("context").is_some() || v.get("span_kind").is_some() => {
            span(v, pos, file_trace, ctx, col)
        }
        other => ctx.warn(pos, format!("not a Phoenix span: {}", json::keys_of(other))),
    }
}

fn span(v: &Value, pos: Pos, file_trace: Option<&str>, ctx: &mut FileCtx<'_>, col: &mut Collector) {
    let context = v.get("context");
    let field =
        |keys: &[&str]| keys.iter().find_map(|k| context.and_then(|c| c.get(*k)).or_else(|| v.get(*k))).and_then(id_of);
    let Some(trace_id) = field(&["trace_id", "traceId"]).or_else(|| file_trace.map(str::to_string)) else {
        ctx.warn(pos, "a Phoenix span without a trace id was skipped");
        return;
    };
    let mut attributes = v.get("attributes").map(flat_attrs).unwrap_or_default();
    attributes = flatten_nested(attributes);
    if let Some(kind) = json::str_of(v, "span_kind").filter(|k| !k.eq_ignore_ascii_case("UNKNOWN")) {
        attributes.entry("openinference.span.kind".to_string()).or_insert_with(|| Value::String(kind.to_string()));
    }
    let status = v.get("status_code").or_else(|| json::path(v, &["status", "code"]));
    let span = SpanIn {
        span_id: field(&["span_id", "spanId"]),
        parent_id: ["parent_id", "parent_span_id", "parentId"].iter().find_map(|k| v.get(*k)).and_then(id_of),
        name: json::str_of(v, "name").map(str::to_string),
        span_kind: None,
        start: v.get("start_time").and_then(parse_time),
        end: v.get("end_time").and_then(parse_time),
        status: status.map(status_code).unwrap_or_default(),
        status_message: json::str_of(v, "status_message")
            .or_else(|| json::path(v, &["status", "message"]).and_then(Value::as_str))
            .filter(|m| !m.is_empty())
            .map(str::to_string),
        attributes,
        events: v.get("events").map(flat_events).unwrap_or_default(),
        scope: None,
    };
    let mut out = map_span(span, MapOpts::default());
    if let Some(id) = json::str_of(v, "id") {
        out.step.attributes.entry("phoenix.id".to_string()).or_insert_with(|| Value::String(id.to_string()));
    }
    col.add(ctx, pos, &trace_id, &Map::new(), out);
}

/// A Phoenix span/trace annotation: `{span_id?, name, annotator_kind, result: {label, score, explanation}}`.
fn annotation(a: &Value, trace_id: Option<&str>, col: &mut Collector) {
    let Some(name) = json::str_of(a, "name") else {
        return;
    };
    let result = a.get("result").filter(|r| r.is_object()).unwrap_or(a);
    let score = Score {
        name: name.to_string(),
        value: result.get("score").and_then(as_f64),
        label: result.get("label").and_then(scalar_string),
        comment: result.get("explanation").and_then(scalar_string),
        source: json::str_of(a, "annotator_kind").map(otlp::score_source).unwrap_or_default(),
    };
    let trace_id = a.get("trace_id").and_then(id_of).or_else(|| trace_id.map(str::to_string));
    let Some(trace_id) = trace_id else { return };
    let span_id = a.get("span_id").and_then(id_of);
    col.add_score(&trace_id, span_id.as_deref(), score);
}

/// Roots under which Phoenix may store nested attribute objects.
const ROOTS: [&str; 15] = [
    "llm",
    "input",
    "output",
    "openinference",
    "tool",
    "retrieval",
    "embedding",
    "reranker",
    "session",
    "user",
    "agent",
    "graph",
    "annotations",
    "evaluations",
    "exception",
];
/// Keys whose values are payloads, never flattened further.
const LEAVES: [&str; 8] = [
    "input.value",
    "output.value",
    "llm.invocation_parameters",
    "tool.parameters",
    "tool.json_schema",
    "llm.prompt_template.variables",
    "message.content",
    "tool_call.function.arguments",
];

/// `{"llm": {"model_name": "x", "input_messages": [{"message": {"role": "user"}}]}}` →
/// `llm.model_name`, `llm.input_messages.0.message.role`.
fn flatten_nested(attrs: AttrMap) -> AttrMap {
    if !attrs.iter().any(|(k, v)| ROOTS.contains(&k.as_str()) && (v.is_object() || v.is_array())) {
        return attrs;
    }
    let mut out = Map::new();
    for (k, v) in attrs {
        if ROOTS.contains(&k.as_str()) {
            flatten_into(&k, v, &mut out, 0);
        } else {
            out.insert(k, v);
        }
    }
    out
}

fn flatten_into(prefix: &str, v: Value, out: &mut AttrMap, depth: u32) {
    let is_leaf = LEAVES.iter().any(|l| prefix == *l || prefix.ends_with(&format!(".{l}")));
    match v {
        Value::Object(o) if !is_leaf && depth < 16 => {
            for (k, inner) in o {
                flatten_into(&format!("{prefix}.{k}"), inner, out, depth + 1);
            }
        }
        Value::Array(items) if !is_leaf && depth < 16 && items.iter().all(Value::is_object) && !items.is_empty() => {
            for (i, inner) in items.into_iter().enumerate() {
                flatten_into(&format!("{prefix}.{i}"), inner, out, depth + 1);
            }
        }
        other => {
            out.insert(prefix.to_string(), other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::{StepKind, StepStatus, Trace};
    use serde_json::json;

    fn run(values: Vec<Value>) -> (Vec<Trace>, usize) {
        let mut records = Records::from_values(values);
        let mut ctx = FileCtx::new("t.json");
        let mut traces = Vec::new();
        parse(&mut records, &mut ctx, &mut |t| traces.push(t)).unwrap();
        (traces, ctx.warnings.len())
    }

    #[test]
    fn rest_page_nested_attributes_and_annotations() {
        let page = json!({"data": [
            {"id": "U3Bhbjox", "name": "ChatCompletion", "context": {"trace_id": "AB1", "span_id": "CD1"}, "span_kind": "LLM",
             "parent_id": null, "start_time": "2025-01-01T00:00:00+00:00", "end_time": "2025-01-01T00:00:01+00:00",
             "status_code": "ERROR", "status_message": "rate limit",
             "attributes": {"llm": {"model_name": "gpt-4o", "token_count": {"prompt": "10", "completion": 2},
                             "input_messages": [{"message": {"role": "user", "content": "hi"}}]}},
             "events": [{"name": "exception", "timestamp": "2025-01-01T00:00:01+00:00",
                         "attributes": {"exception.type": "openai.RateLimitError", "exception.message": "slow down"}}]}],
            "next_cursor": null});
        let file = json!({"traceId": "ab1", "spans": [], "annotations": [
            {"span_id": "cd1", "name": "correctness", "annotator_kind": "HUMAN", "result": {"label": "incorrect", "score": 0}},
            {"name": "overall", "annotator_kind": "LLM", "result": {"label": "fail"}}]});
        let (traces, warnings) = run(vec![page, file, json!(3)]);
        assert_eq!(warnings, 1);
        assert_eq!(traces.len(), 1);
        let t = &traces[0];
        assert_eq!(t.id, "ab1");
        let s = &t.steps[0];
        assert_eq!(s.id, "cd1");
        assert_eq!(s.kind, StepKind::Llm);
        assert_eq!(s.status, StepStatus::Error);
        assert_eq!(s.error.as_ref().unwrap().r#type.as_deref(), Some("openai.RateLimitError"));
        assert_eq!(s.usage.input_tokens, Some(10));
        assert_eq!(s.input_messages[0].joined_text(), "hi");
        assert_eq!(s.scores[0].label.as_deref(), Some("incorrect"));
        assert_eq!(t.scores[0].name, "overall");
    }

    #[test]
    fn bare_spans_and_missing_fields() {
        let (traces, warnings) = run(vec![
            json!([{"context": {"span_id": "a"}, "span_kind": "TOOL", "status_code": "OK"},
            {"context": {"trace_id": "x"}, "span_kind": "UNKNOWN", "status_code": 7, "attributes": "not a map", "events": 5}]),
        ]);
        assert_eq!(warnings, 1);
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].steps[0].kind, StepKind::Other);
        assert_eq!(traces[0].steps[0].status, StepStatus::Unset);
    }
}
