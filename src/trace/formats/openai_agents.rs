//! OpenAI Agents SDK native trace export (trace-formats.md §5): JSONL of
//! `{"object":"trace",…}` and `{"object":"trace.span",…}` records as a custom
//! `TracingProcessor` writes them, the ingest body `{"data":[…]}`, and processor logs
//! `{"event":"span_end","span":{…}}` / `{"event":"trace_end","trace":{…}}`.
//!
//! A trace object is written when the trace ends, after its spans, so spans are grouped
//! by `trace_id` and everything is emitted at the end of the file.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::common::platform::{
    decode_deep, error_from_text, first_user_text, http_code, messages_from, order_steps, text_error, time_of,
    usage_from,
};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_bool, str_of, string_of};
use crate::trace::model::{
    ErrorInfo, ErrorSource, ModelInfo, Signal, Step, StepKind, StepStatus, ToolCall, ToolResult, Trace, value_text,
};
use crate::trace::read::{Pos, Records};

const MAX_NESTING: u32 = 4;

pub fn parse(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let mut state = State::default();
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        state.record(rec.value, rec.pos, ctx, 0);
    }
    state.emit(ctx, sink);
    Ok(())
}

#[derive(Default)]
struct Acc {
    pos: Option<Pos>,
    info: Option<Map<String, Value>>,
    spans: Vec<Value>,
    span_ids: HashMap<String, usize>,
}

#[derive(Default)]
struct State {
    traces: HashMap<String, Acc>,
    order: Vec<String>,
}

impl State {
    fn acc(&mut self, id: &str, pos: Pos) -> &mut Acc {
        if !self.traces.contains_key(id) {
            self.order.push(id.to_string());
        }
        let acc = self.traces.entry(id.to_string()).or_default();
        acc.pos.get_or_insert(pos);
        acc
    }

    fn record(&mut self, value: Value, pos: Pos, ctx: &mut FileCtx<'_>, depth: u32) {
        match value {
            Value::Array(items) => {
                if depth >= MAX_NESTING {
                    ctx.warn(pos, "arrays nested too deep; record skipped");
                    return;
                }
                for item in items {
                    self.record(item, pos, ctx, depth + 1);
                }
            }
            Value::Object(mut obj) => {
                if obj.get("object").is_none() {
                    // Ingest body {"data": [...]} or a processor log {"event": …, "span"/"trace": {…}}.
                    if let Some(data @ Value::Array(_)) = obj.remove("data") {
                        return self.record(data, pos, ctx, depth + 1);
                    }
                    for key in ["span", "trace"] {
                        if let Some(inner @ Value::Object(_)) = obj.remove(key) {
                            return self.record(inner, pos, ctx, depth + 1);
                        }
                    }
                }
                let object = obj.get("object").and_then(Value::as_str).unwrap_or("");
                let is_span = object == "trace.span"
                    || (object.is_empty() && obj.contains_key("span_data"))
                    || (object.is_empty()
                        && obj.get("id").and_then(Value::as_str).is_some_and(|i| i.starts_with("span_")));
                if object == "trace"
                    || (object.is_empty()
                        && obj.contains_key("workflow_name")
                        && obj.get("id").and_then(Value::as_str).is_some_and(|i| i.starts_with("trace_")))
                {
                    self.trace_object(obj, pos, ctx);
                } else if is_span {
                    self.span(obj, pos, ctx);
                } else {
                    ctx.warn(pos, format!("not an Agents SDK trace or span: {}", json::keys_of(&Value::Object(obj))));
                }
            }
            other => ctx.warn(pos, format!("not an Agents SDK record: {}", json::keys_of(&other))),
        }
    }

    fn trace_object(&mut self, obj: Map<String, Value>, pos: Pos, ctx: &mut FileCtx<'_>) {
        let Some(id) = obj.get("id").and_then(json::scalar_string) else {
            ctx.warn(pos, "Agents SDK trace without `id`; skipped");
            return;
        };
        let acc = self.acc(&id, pos);
        match &mut acc.info {
            Some(info) => {
                for (k, v) in obj {
                    if !v.is_null() {
                        info.insert(k, v);
                    }
                }
            }
            None => acc.info = Some(obj),
        }
    }

    fn span(&mut self, obj: Map<String, Value>, pos: Pos, ctx: &mut FileCtx<'_>) {
        let Some(tid) = obj.get("trace_id").and_then(json::scalar_string) else {
            ctx.warn(pos, "Agents SDK span without `trace_id`; skipped");
            return;
        };
        let acc = self.acc(&tid, pos);
        let id = obj.get("id").and_then(json::scalar_string);
        match id.as_ref().and_then(|id| acc.span_ids.get(id).copied()) {
            // A span exported twice (start and end): the later copy is the complete one.
            Some(i) => {
                if let Some(Value::Object(into)) = acc.spans.get_mut(i) {
                    for (k, v) in obj {
                        if !v.is_null() {
                            into.insert(k, v);
                        }
                    }
                }
            }
            None => {
                if let Some(id) = id {
                    acc.span_ids.insert(id, acc.spans.len());
                }
                acc.spans.push(Value::Object(obj));
            }
        }
    }

    fn emit(mut self, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) {
        for tid in std::mem::take(&mut self.order) {
            let Some(acc) = self.traces.remove(&tid) else {
                continue;
            };
            sink(build_trace(ctx, &tid, acc));
        }
    }
}

fn build_trace(ctx: &FileCtx<'_>, tid: &str, acc: Acc) -> Trace {
    let mut trace = ctx.trace(Format::OpenaiAgents, tid, acc.pos.unwrap_or(Pos::Byte(0)));
    if let Some(info) = &acc.info {
        let info_v = Value::Object(info.clone());
        trace.name = string_of(&info_v, "workflow_name");
        trace.session_id = string_of(&info_v, "group_id");
        for (k, v) in info {
            if matches!(k.as_str(), "object" | "id" | "workflow_name" | "group_id") || v.is_null() {
                continue;
            }
            trace.attributes.insert(k.clone(), v.clone());
        }
    }
    let mut steps: Vec<Step> = acc.spans.iter().enumerate().map(|(i, s)| span_step(s, i)).collect();
    order_steps(&mut steps);

    // The acting agent of each step: its nearest agent ancestor.
    let index: HashMap<String, usize> = steps.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
    let agents: Vec<Option<String>> = (0..steps.len())
        .map(|i| {
            let mut cur = Some(i);
            for _ in 0..=steps.len() {
                let c = cur?;
                if steps[c].kind == StepKind::Agent {
                    return steps[c].name.clone();
                }
                if let Some(a) = steps[c].attributes.get("agents.agent_name").and_then(Value::as_str) {
                    return Some(a.to_string());
                }
                cur = steps[c].parent_id.as_deref().and_then(|p| index.get(p).copied());
            }
            None
        })
        .collect();
    for (step, agent) in steps.iter_mut().zip(agents) {
        if step.agent.is_none() {
            step.agent = agent;
        }
    }

    // Terminal verdicts: max turns, guardrail tripwires.
    for step in &steps {
        if let Some(err) = step.error.as_ref().filter(|e| e.source == Some(ErrorSource::Terminal)) {
            let mut signal =
                Signal::new("terminal", false, err.message.clone().unwrap_or_else(|| "terminal error".into()));
            signal.step = Some(step.id.clone());
            trace.signals.push(signal);
        }
    }

    if trace.name.is_none() {
        // The SDK's `task` wrapper span names the workflow.
        trace.name = steps.iter().find(|s| s.parent_id.is_none()).and_then(|s| {
            s.attributes.get("agents.data").and_then(|d| string_of(d, "name")).or_else(|| s.name.clone())
        });
    }
    trace.task = steps
        .iter()
        .find(|s| s.kind == StepKind::Llm && !s.input_messages.is_empty())
        .and_then(|s| first_user_text(&s.input_messages))
        .map(Value::String);
    // Usage lives on generation/response spans; the `task`/`turn` wrappers repeat it.
    // With no model span reporting usage, fall back to the root wrapper's total.
    if steps.iter().all(|s| s.usage.is_empty()) {
        if let Some(u) = steps
            .iter()
            .find(|s| s.parent_id.is_none())
            .and_then(|s| s.attributes.get("agents.data"))
            .and_then(|d| d.get("usage"))
        {
            trace.usage = usage_from(u);
        }
    }
    trace.steps = steps;
    trace
}

fn span_step(span: &Value, i: usize) -> Step {
    let data = span.get("span_data").cloned().unwrap_or(Value::Null);
    let ty = str_of(&data, "type").unwrap_or("").to_ascii_lowercase();
    let mut step = Step {
        id: string_of(span, "id").unwrap_or_else(|| format!("line:{i}")),
        parent_id: string_of(span, "parent_id"),
        start: span.get("started_at").and_then(time_of),
        end: span.get("ended_at").and_then(time_of),
        name: string_of(&data, "name"),
        ..Step::default()
    };
    step.kind = match ty.as_str() {
        "agent" => StepKind::Agent,
        "generation" | "response" => StepKind::Llm,
        "function" => StepKind::Tool,
        "handoff" => StepKind::Handoff,
        "guardrail" => StepKind::Guardrail,
        "mcp_tools" => StepKind::Tool,
        "custom" => match json::path(&data, &["data", "sdk_span_type"]).and_then(Value::as_str) {
            Some("task") => StepKind::Workflow,
            Some("turn") => StepKind::Turn,
            _ => StepKind::Other,
        },
        _ => StepKind::Other,
    };
    if !ty.is_empty() {
        step.attributes.insert("agents.span_type".into(), Value::String(ty.clone()));
    }

    match ty.as_str() {
        "agent" => {
            step.agent = step.name.clone();
            keep(&mut step, &data, &["handoffs", "tools", "output_type"]);
        }
        "generation" => {
            step.input_messages = data.get("input").map(|m| messages_from(m, "user")).unwrap_or_default();
            step.output_messages = data.get("output").map(|m| messages_from(m, "assistant")).unwrap_or_default();
            step.name.get_or_insert_with(|| "generation".into());
            let model = string_of(&data, "model");
            let finish: Vec<String> = step.output_messages.iter().filter_map(|m| m.finish_reason.clone()).collect();
            if model.is_some() || !finish.is_empty() {
                step.model = Some(ModelInfo { request_model: model, finish_reasons: finish, ..ModelInfo::default() });
            }
            if let Some(u) = data.get("usage") {
                step.usage = usage_from(u);
            }
            keep(&mut step, &data, &["model_config"]);
        }
        "response" => {
            step.name.get_or_insert_with(|| "response".into());
            if let Some(u) = data.get("usage") {
                step.usage = usage_from(u);
            }
            // Some exporters include the response object and the input items.
            if let Some(resp) = data.get("response").filter(|r| r.is_object()) {
                step.output_messages = messages_from(resp, "assistant");
                if let Some(model) = string_of(resp, "model") {
                    step.model = Some(ModelInfo { response_model: Some(model), ..ModelInfo::default() });
                }
                if step.usage.is_empty() {
                    if let Some(u) = resp.get("usage") {
                        step.usage = usage_from(u);
                    }
                }
            }
            if let Some(input) = data.get("input") {
                step.input_messages = messages_from(input, "user");
            }
            keep(&mut step, &data, &["response_id"]);
        }
        "function" => {
            let name = step.name.clone().unwrap_or_else(|| "function".into());
            step.tool_call =
                Some(ToolCall { id: None, name, arguments: data.get("input").map(decode_deep).unwrap_or(Value::Null) });
            if let Some(out) = data.get("output").filter(|o| !o.is_null()) {
                step.tool_result = Some(ToolResult {
                    call_id: None,
                    content: json::decode_json_string(out.clone()),
                    is_error: None,
                    exit_code: None,
                });
            }
            keep(&mut step, &data, &["mcp_data"]);
        }
        "handoff" => {
            let from = string_of(&data, "from_agent");
            let to = string_of(&data, "to_agent");
            step.name = Some(format!("handoff {} → {}", from.as_deref().unwrap_or("?"), to.as_deref().unwrap_or("?")));
            step.agent = from;
            keep(&mut step, &data, &["from_agent", "to_agent"]);
        }
        "guardrail" => {
            let triggered = data.get("triggered").and_then(as_bool) == Some(true);
            step.attributes.insert("agents.triggered".into(), Value::Bool(triggered));
            if triggered {
                step.status = StepStatus::Error;
                step.error = Some(
                    ErrorInfo::new(ErrorSource::Terminal)
                        .with_message(format!("guardrail `{}` triggered", step.name.as_deref().unwrap_or("guardrail"))),
                );
            }
        }
        "custom" => {
            if let Some(d) = data.get("data").filter(|d| !d.is_null()) {
                if let Some(a) = d.get("agent_name").and_then(Value::as_str) {
                    step.attributes.insert("agents.agent_name".into(), Value::String(a.to_string()));
                }
                step.attributes.insert("agents.data".into(), d.clone());
            }
        }
        "mcp_tools" => {
            let server = string_of(&data, "server");
            step.name = Some(format!("mcp_tools {}", server.as_deref().unwrap_or("")).trim().to_string());
            keep(&mut step, &data, &["server", "result"]);
        }
        _ => {
            if let Value::Object(m) = &data {
                for (k, v) in m {
                    if k != "type" && !v.is_null() {
                        step.attributes.insert(format!("agents.{k}"), v.clone());
                    }
                }
            }
        }
    }

    match span.get("error") {
        Some(err @ Value::Object(_)) => {
            step.status = StepStatus::Error;
            step.error = Some(span_error(err));
            if let Some(d) = err.get("data").filter(|d| !d.is_null()) {
                step.attributes.insert("agents.error.data".into(), d.clone());
            }
        }
        Some(Value::String(s)) if !s.is_empty() => {
            step.status = StepStatus::Error;
            step.error = Some(error_from_text(ErrorSource::ErrorField, s));
        }
        _ => {
            if step.status != StepStatus::Error && step.end.is_some() {
                step.status = StepStatus::Ok;
            }
        }
    }
    // A tool's output text may show a failure the span did not record.
    if step.error.is_none() {
        if let Some(r) = &step.tool_result {
            if let Some(err) = text_error(&value_text(&r.content)) {
                step.status = StepStatus::Error;
                step.error = Some(err);
            }
        }
    }
    if let Some(meta) = span.get("metadata").filter(|m| !m.is_null()) {
        step.attributes.insert("agents.metadata".into(), meta.clone());
    }
    step
}

/// `{"message": …, "data": {…}}`: the message, with `data.error` as its detail.
fn span_error(err: &Value) -> ErrorInfo {
    let message = str_of(err, "message").unwrap_or("").to_string();
    let detail = json::path(err, &["data", "error"]).map(|d| value_text(d).into_owned()).filter(|d| !d.is_empty());
    let terminal = message.starts_with("Max turns exceeded") || message.starts_with("Guardrail tripwire triggered");
    let source = if terminal { ErrorSource::Terminal } else { ErrorSource::ErrorField };
    let full = match (&detail, terminal) {
        (Some(d), _) => format!("{message}: {d}"),
        (None, true) => match json::path(err, &["data", "max_turns"]).and_then(json::scalar_string) {
            Some(n) => format!("{message} (max_turns = {n})"),
            None => message.clone(),
        },
        (None, false) => message.clone(),
    };
    let mut info = ErrorInfo::new(source).with_message(full);
    if let Some(code) = detail.as_deref().and_then(http_code) {
        info.code = Some(code);
    }
    if let Some(ty) = json::path(err, &["data", "type"]).and_then(Value::as_str) {
        info = info.with_type(ty);
    }
    info
}

fn keep(step: &mut Step, data: &Value, keys: &[&str]) {
    for k in keys {
        if let Some(v) = data.get(*k).filter(|v| !v.is_null()) {
            step.attributes.insert(format!("agents.{k}"), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(values: Vec<Value>) -> (Vec<Trace>, Vec<String>) {
        crate::trace::formats::run_on_values(parse, "t.jsonl", values)
    }

    #[test]
    fn ingest_body_with_handoff_and_guardrail() {
        let (traces, _) = run(vec![json!({"data": [
            {"object": "trace", "id": "trace_1", "workflow_name": "triage", "group_id": "g", "metadata": {"user": "u"}},
            {"object": "trace.span", "id": "span_a", "trace_id": "trace_1", "parent_id": null,
             "started_at": "2025-01-01T00:00:00+00:00", "ended_at": "2025-01-01T00:00:02+00:00",
             "span_data": {"type": "agent", "name": "triage", "handoffs": ["billing"], "tools": []}, "error": null},
            {"object": "trace.span", "id": "span_h", "trace_id": "trace_1", "parent_id": "span_a",
             "started_at": "2025-01-01T00:00:01+00:00", "ended_at": "2025-01-01T00:00:01+00:00",
             "span_data": {"type": "handoff", "from_agent": "triage", "to_agent": "billing"}, "error": null},
            {"object": "trace.span", "id": "span_g", "trace_id": "trace_1", "parent_id": "span_a",
             "started_at": "2025-01-01T00:00:00.5+00:00", "ended_at": "2025-01-01T00:00:00.6+00:00",
             "span_data": {"type": "guardrail", "name": "no_pii", "triggered": true}, "error": null},
            {"object": "trace.span", "id": "span_r", "trace_id": "trace_1", "parent_id": "span_a",
             "started_at": "2025-01-01T00:00:00.2+00:00", "ended_at": "2025-01-01T00:00:00.4+00:00",
             "span_data": {"type": "response", "response_id": "resp_1",
                           "usage": {"input_tokens": "100", "output_tokens": 10, "input_tokens_details": {"cached_tokens": 40}}}, "error": null}
        ]})]);
        let t = &traces[0];
        assert_eq!(t.name.as_deref(), Some("triage"));
        assert_eq!(t.session_id.as_deref(), Some("g"));
        assert_eq!(t.attributes["metadata"], json!({"user": "u"}));
        let kinds: Vec<_> = t.steps.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [StepKind::Agent, StepKind::Llm, StepKind::Guardrail, StepKind::Handoff]);
        assert_eq!(t.steps[1].usage.input_tokens, Some(100));
        assert_eq!(t.steps[1].usage.cache_read_tokens, Some(40));
        assert_eq!(t.steps[1].agent.as_deref(), Some("triage"));
        let g = &t.steps[2];
        assert_eq!(g.error.as_ref().unwrap().source, Some(ErrorSource::Terminal));
        assert_eq!(t.signals.len(), 1);
        assert!(!t.signals[0].passed);
        assert_eq!(t.steps[3].name.as_deref(), Some("handoff triage → billing"));
    }

    #[test]
    fn processor_log_events_and_duplicate_spans() {
        let (traces, warnings) = run(vec![
            json!({"event": "span_start", "span": {"object": "trace.span", "id": "span_f", "trace_id": "trace_2",
                   "started_at": "2025-01-01T00:00:00Z", "ended_at": null, "span_data": {"type": "function", "name": "lookup"}}}),
            json!({"event": "span_end", "span": {"object": "trace.span", "id": "span_f", "trace_id": "trace_2",
                   "started_at": "2025-01-01T00:00:00Z", "ended_at": "2025-01-01T00:00:01Z",
                   "span_data": {"type": "function", "name": "lookup", "input": "{\"id\": 3}",
                                 "output": "Traceback (most recent call last):\n  File \"t.py\"\nKeyError: 3"}}}),
            json!({"event": "trace_end", "trace": {"object": "trace", "id": "trace_2", "workflow_name": "w"}}),
            json!({"event": "other"}),
        ]);
        assert_eq!(warnings.len(), 1);
        let t = &traces[0];
        assert_eq!(t.steps.len(), 1);
        let s = &t.steps[0];
        assert_eq!(s.tool_call.as_ref().unwrap().arguments, json!({"id": 3}));
        let e = s.error.as_ref().unwrap();
        assert_eq!(e.source, Some(ErrorSource::TextHeuristic));
        assert_eq!(e.r#type.as_deref(), Some("KeyError"));
        assert_eq!(t.name.as_deref(), Some("w"));
    }

    #[test]
    fn odd_values_do_not_panic() {
        let (traces, warnings) = run(vec![
            json!({"object": "trace.span", "id": 7, "trace_id": 9, "span_data": "x", "error": "boom", "started_at": "1700000000"}),
            json!({"object": "trace.span", "id": "span_x"}),
            json!({"object": "trace", "workflow_name": "no id"}),
            json!({"data": [[[[[[1]]]]]]}),
            json!({"object": "trace.span", "id": "span_y", "trace_id": "t", "span_data": {"type": "generation", "input": 5, "output": {"a": [1]}, "usage": "lots"},
                   "error": {"message": 3, "data": {"error": {"nested": true}}}}),
        ]);
        assert!(warnings.len() >= 3, "{warnings:?}");
        assert_eq!(traces.len(), 2);
        assert_eq!(traces[0].steps[0].error.as_ref().unwrap().message.as_deref(), Some("boom"));
    }
}
