//! Langfuse exports (trace-formats.md §4): the legacy single-trace download
//! `{"trace":{…},"observations":[…]}`, the current download `{"observations":[…],"scores":[…]}`,
//! public API pages `{"data":[…],"meta":{…}}` (traces with nested observations, or rows),
//! and batch-export rows (JSON array / JSONL) of observations, scores or traces.
//!
//! Observations and scores of one trace may be spread over many records, so everything is
//! grouped by `traceId` and emitted at the end, in first-seen order.
//!
//! This file also holds the message/usage/error helpers shared by the three "platform"
//! adapters (LangSmith, Langfuse, OpenAI Agents), see [`shared`].

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::common::platform::{decode_deep, error_from_text, messages_from, order_steps, text_error, usage_from};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_f64, as_u64, parse_time, str_of, string_of};
use crate::trace::model::{
    ErrorSource, ModelInfo, Score, ScoreSource, Step, StepKind, StepStatus, ToolCall, ToolResult, Trace, Usage,
    value_text,
};
use crate::trace::read::{Pos, Records};

const OBSERVATION_TYPES: [&str; 10] =
    ["SPAN", "GENERATION", "EVENT", "AGENT", "TOOL", "CHAIN", "RETRIEVER", "EVALUATOR", "EMBEDDING", "GUARDRAIL"];

/// Nesting of arrays inside arrays we follow before giving up on a record.
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
    info: Map<String, Value>,
    obs: Vec<Value>,
    obs_ids: HashMap<String, usize>,
    scores: Vec<Value>,
    score_ids: HashSet<String>,
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
                // Legacy download: {"trace": {...}, "observations": [...]}.
                if obj.get("trace").is_some_and(Value::is_object) {
                    let trace = obj.remove("trace").unwrap_or_default();
                    let tid = string_of(&trace, "id");
                    self.trace_object(trace, pos, ctx);
                    self.rows(obj.remove("observations"), tid.as_deref(), pos, ctx);
                    self.rows(obj.remove("scores"), tid.as_deref(), pos, ctx);
                    return;
                }
                // API page: {"data": [...], "meta": {...}}.
                if let Some(Value::Array(data)) = obj.remove("data") {
                    for item in data {
                        self.item(item, None, pos, ctx);
                    }
                    return;
                }
                // Current download: {"observations": [...], "scores": [...]} without a trace id.
                if !obj.contains_key("id") && (obj.contains_key("observations") || obj.contains_key("scores")) {
                    self.rows(obj.remove("observations"), None, pos, ctx);
                    self.rows(obj.remove("scores"), None, pos, ctx);
                    return;
                }
                self.item(Value::Object(obj), None, pos, ctx);
            }
            other => ctx.warn(pos, format!("not a Langfuse record: {}", json::keys_of(&other))),
        }
    }

    fn rows(&mut self, rows: Option<Value>, trace_id: Option<&str>, pos: Pos, ctx: &mut FileCtx<'_>) {
        let Some(Value::Array(rows)) = rows else {
            return;
        };
        for row in rows {
            // Legacy traces list observation ids as strings: nothing to read.
            if row.is_object() {
                self.item(row, trace_id, pos, ctx);
            }
        }
    }

    fn item(&mut self, v: Value, trace_id: Option<&str>, pos: Pos, ctx: &mut FileCtx<'_>) {
        if !v.is_object() {
            ctx.warn(pos, format!("not a Langfuse row: {}", json::keys_of(&v)));
        } else if is_score(&v) {
            self.score(v, trace_id, pos, ctx);
        } else if is_observation(&v) {
            self.observation(v, trace_id, pos, ctx);
        } else if is_trace(&v) {
            self.trace_object(v, pos, ctx);
        } else {
            ctx.warn(pos, format!("not a Langfuse observation, score or trace: {}", json::keys_of(&v)));
        }
    }

    fn trace_object(&mut self, trace: Value, pos: Pos, ctx: &mut FileCtx<'_>) {
        let Value::Object(mut obj) = trace else {
            return;
        };
        let Some(tid) = obj.get("id").and_then(json::scalar_string) else {
            ctx.warn(pos, "Langfuse trace without `id`; skipped");
            return;
        };
        let observations = obj.remove("observations");
        let scores = obj.remove("scores");
        let acc = self.acc(&tid, pos);
        for (k, v) in obj {
            if !v.is_null() {
                acc.info.entry(k).or_insert(v);
            }
        }
        self.rows(observations, Some(&tid), pos, ctx);
        self.rows(scores, Some(&tid), pos, ctx);
    }

    fn observation(&mut self, obs: Value, trace_id: Option<&str>, pos: Pos, ctx: &mut FileCtx<'_>) {
        let tid = string_of(&obs, "traceId").or_else(|| trace_id.map(str::to_string));
        let Some(tid) = tid else {
            ctx.warn(pos, "Langfuse observation without `traceId`; skipped");
            return;
        };
        if str_of(&obs, "type").is_some_and(|t| t.eq_ignore_ascii_case("TRACE")) {
            // A trace row in an observation table (v4 events): trace-level fields only.
            let Value::Object(obj) = obs else { return };
            let acc = self.acc(&tid, pos);
            for (k, v) in obj {
                if !v.is_null() && k != "type" {
                    acc.info.entry(k).or_insert(v);
                }
            }
            return;
        }
        let acc = self.acc(&tid, pos);
        if let Some(id) = string_of(&obs, "id") {
            if let Some(&i) = acc.obs_ids.get(&id) {
                // The same observation twice (legacy downloads list it under `trace` without
                // its large fields, then in full): fill what the first copy lacked.
                if let (Some(Value::Object(into)), Value::Object(from)) = (acc.obs.get_mut(i), obs) {
                    for (k, v) in from {
                        let missing = into.get(&k).is_none_or(|old| is_empty(old) || old.as_str() == Some("{}"));
                        if missing && !is_empty(&v) {
                            into.insert(k, v);
                        }
                    }
                }
                return;
            }
            acc.obs_ids.insert(id, acc.obs.len());
        }
        acc.obs.push(obs);
    }

    fn score(&mut self, score: Value, trace_id: Option<&str>, pos: Pos, ctx: &mut FileCtx<'_>) {
        let tid = string_of(&score, "traceId").or_else(|| trace_id.map(str::to_string));
        let Some(tid) = tid else {
            ctx.warn(pos, "Langfuse score without `traceId` (session or dataset score); skipped");
            return;
        };
        let acc = self.acc(&tid, pos);
        if let Some(id) = string_of(&score, "id") {
            if !acc.score_ids.insert(id) {
                return;
            }
        }
        acc.scores.push(score);
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

fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some()
}

fn is_score(v: &Value) -> bool {
    has(v, "name")
        && (has(v, "value") || has(v, "stringValue"))
        && (has(v, "dataType") || has(v, "source"))
        && !has(v, "startTime")
        && !str_of(v, "type").is_some_and(|t| OBSERVATION_TYPES.contains(&t))
}

fn is_observation(v: &Value) -> bool {
    has(v, "parentObservationId")
        || str_of(v, "type").is_some_and(|t| OBSERVATION_TYPES.contains(&t.to_ascii_uppercase().as_str()))
        || (has(v, "traceId") && has(v, "startTime"))
}

fn is_trace(v: &Value) -> bool {
    has(v, "id")
        && !has(v, "traceId")
        && (has(v, "observations") || has(v, "timestamp") || has(v, "sessionId") || has(v, "name"))
}

/// Observation fields mapped into the model (everything else is kept in attributes).
const MAPPED_OBS: [&str; 26] = [
    "id",
    "traceId",
    "parentObservationId",
    "type",
    "name",
    "startTime",
    "endTime",
    "input",
    "output",
    "metadata",
    "model",
    "usageDetails",
    "costDetails",
    "usage",
    "projectId",
    "createdAt",
    "updatedAt",
    "internalModel",
    "internalModelId",
    "inputCost",
    "outputCost",
    "totalCost",
    "calculatedTotalCost",
    "inputUsage",
    "outputUsage",
    "totalUsage",
];

fn build_trace(ctx: &FileCtx<'_>, tid: &str, acc: Acc) -> Trace {
    let mut trace = ctx.trace(Format::Langfuse, tid, acc.pos.unwrap_or(Pos::Byte(0)));
    let info = Value::Object(acc.info);
    trace.name = string_of(&info, "name");
    trace.session_id = string_of(&info, "sessionId");
    trace.user_id = string_of(&info, "userId");
    trace.start = info.get("timestamp").and_then(parse_time);
    trace.cost_usd = info.get("totalCost").and_then(as_f64).filter(|c| *c > 0.0);
    if let Some(input) = info.get("input").map(decode_deep).filter(|v| !v.is_null()) {
        trace.task = Some(input);
    }
    if let Value::Object(info) = &info {
        for (k, v) in info {
            if matches!(
                k.as_str(),
                "id" | "name"
                    | "sessionId"
                    | "userId"
                    | "timestamp"
                    | "input"
                    | "projectId"
                    | "createdAt"
                    | "updatedAt"
            ) || is_empty(v)
            {
                continue;
            }
            trace.attributes.insert(k.clone(), decode_deep(v));
        }
    }

    let mut steps: Vec<Step> = acc.obs.iter().enumerate().map(|(i, o)| observation_step(o, i)).collect();
    order_steps(&mut steps);
    let step_index: HashMap<String, usize> = steps.iter().enumerate().map(|(i, s)| (s.id.clone(), i)).collect();
    for s in &acc.scores {
        let score = score_of(s);
        match string_of(s, "observationId").and_then(|o| step_index.get(&o).copied()) {
            Some(i) => steps[i].scores.push(score),
            None => trace.scores.push(score),
        }
    }
    let mut dialects: Vec<String> = Vec::new();
    for step in &steps {
        for d in super::common::platform::dialects_of(&step.attributes) {
            if !dialects.iter().any(|x| x == d) {
                dialects.push(d.to_string());
            }
        }
    }
    trace.source.dialects = dialects;
    if trace.name.is_none() {
        trace.name = steps.iter().find(|s| s.parent_id.is_none()).and_then(|s| s.name.clone());
    }
    trace.steps = steps;
    // Langfuse reports usage on wrappers too (an agent span, Vercel `ai.generateText` around
    // `doGenerate`): count only observations below which nothing else reports usage.
    let (usage, cost) = super::common::platform::leaf_totals(&trace.steps);
    if !usage.is_empty() {
        trace.usage = usage;
    }
    if trace.cost_usd.is_none() {
        trace.cost_usd = cost;
    }
    trace
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn observation_step(o: &Value, i: usize) -> Step {
    let ty = str_of(o, "type").unwrap_or("SPAN").to_ascii_uppercase();
    let metadata = o.get("metadata").map(decode_deep).unwrap_or(Value::Null);
    let otel = match metadata.get("attributes") {
        Some(Value::Object(m)) => m.clone(),
        Some(v @ Value::String(_)) => decode_deep(v).as_object().cloned().unwrap_or_default(),
        _ => Map::new(),
    };
    let name = string_of(o, "name");
    let mut step = Step {
        id: string_of(o, "id").unwrap_or_else(|| format!("obs:{i}")),
        parent_id: string_of(o, "parentObservationId"),
        kind: observation_kind(&ty, &otel),
        name: name.clone(),
        start: o.get("startTime").and_then(parse_time),
        end: o.get("endTime").and_then(parse_time),
        ..Step::default()
    };

    let level = str_of(o, "level").map(str::to_ascii_uppercase);
    let status_message = str_of(o, "statusMessage");
    if level.as_deref() == Some("ERROR") {
        step.status = StepStatus::Error;
        step.error = Some(error_from_text(ErrorSource::Level, status_message.unwrap_or("")));
    }

    let model = str_of(o, "model");
    let response_model = attr_str(&otel, &["gen_ai.response.model", "ai.response.model", "llm.response.model"]);
    let provider = attr_str(&otel, &["gen_ai.provider.name", "gen_ai.system", "llm.provider", "ai.model.provider"]);
    if model.is_some() || response_model.is_some() {
        step.model = Some(ModelInfo {
            request_model: model.map(str::to_string),
            response_model,
            provider,
            finish_reasons: Vec::new(),
        });
    }

    let input = o.get("input").map(decode_deep).unwrap_or(Value::Null);
    let output = o.get("output").map(decode_deep).unwrap_or(Value::Null);
    match step.kind {
        StepKind::Llm => {
            step.input_messages = messages_from(&input, "user");
            step.output_messages = messages_from(&output, "assistant");
            let reasons: Vec<String> = step.output_messages.iter().filter_map(|m| m.finish_reason.clone()).collect();
            if let Some(model) = step.model.as_mut() {
                model.finish_reasons = reasons;
            }
            if step.input_messages.is_empty() && !input.is_null() {
                step.input = Some(input);
            }
            if step.output_messages.is_empty() && !output.is_null() {
                step.output = Some(output);
            }
        }
        StepKind::Tool => {
            let tool_name = attr_str(&otel, &["gen_ai.tool.name", "tool.name", "ai.toolCall.name"])
                .or_else(|| name.as_deref().map(strip_tool_prefix))
                .unwrap_or_else(|| "tool".into());
            let call_id = attr_str(&otel, &["gen_ai.tool.call.id", "tool_call.id", "ai.toolCall.id"]);
            step.tool_call = Some(ToolCall { id: call_id.clone(), name: tool_name, arguments: input });
            if !output.is_null() {
                if step.error.is_none() {
                    if let Some(err) = text_error(&value_text(&output)) {
                        step.status = StepStatus::Error;
                        step.error = Some(err);
                    }
                }
                step.tool_result = Some(ToolResult { call_id, content: output, is_error: None, exit_code: None });
            }
        }
        _ => {
            if !input.is_null() {
                step.input = Some(input);
            }
            if !output.is_null() {
                step.output = Some(output);
            }
        }
    }

    step.usage = observation_usage(o);
    step.cost_usd = path_f64(o, &["costDetails", "total"])
        .or_else(|| json::f64_of(o, "totalCost"))
        .or_else(|| json::f64_of(o, "calculatedTotalCost"))
        .or_else(|| match (json::f64_of(o, "inputCost"), json::f64_of(o, "outputCost")) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
        })
        .filter(|c| *c > 0.0);

    // The original OTel attributes, raw, at the top level (as OTLP adapters keep them).
    for (k, v) in otel {
        step.attributes.insert(k, v);
    }
    if let Value::Object(meta) = &metadata {
        let rest: Map<String, Value> =
            meta.iter().filter(|(k, _)| k.as_str() != "attributes").map(|(k, v)| (k.clone(), v.clone())).collect();
        if !rest.is_empty() {
            step.attributes.insert("langfuse.metadata".into(), Value::Object(rest));
        }
    } else if !is_empty(&metadata) {
        step.attributes.insert("langfuse.metadata".into(), metadata.clone());
    }
    if let Value::Object(obj) = o {
        for (k, v) in obj {
            if MAPPED_OBS.contains(&k.as_str()) || is_empty(v) {
                continue;
            }
            // Default level and a null status say nothing.
            if k == "level" && v.as_str() == Some("DEFAULT") {
                continue;
            }
            step.attributes.insert(format!("langfuse.{k}"), v.clone());
        }
    }
    step.attributes.insert("langfuse.type".into(), Value::String(ty));
    step
}

fn path_f64(v: &Value, keys: &[&str]) -> Option<f64> {
    json::path(v, keys).and_then(as_f64)
}

fn observation_usage(o: &Value) -> Usage {
    let mut usage = match o.get("usageDetails") {
        Some(d @ Value::Object(m)) if !m.is_empty() => usage_from(d),
        _ => match o.get("usage") {
            Some(u @ Value::Object(m)) if !m.is_empty() => usage_from(u),
            _ => Usage::default(),
        },
    };
    if usage.is_empty() {
        let get = |keys: &[&str]| keys.iter().find_map(|k| o.get(*k).and_then(as_u64));
        usage = Usage {
            input_tokens: get(&["promptTokens", "inputUsage"]),
            output_tokens: get(&["completionTokens", "outputUsage"]),
            total_tokens: get(&["totalTokens", "totalUsage"]),
            ..Usage::default()
        };
    }
    if usage.total() == Some(0) && usage.cache_read_tokens.unwrap_or(0) == 0 {
        return Usage::default();
    }
    usage
}

fn attr_str(attrs: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| attrs.get(*k).and_then(json::scalar_string))
}

fn strip_tool_prefix(name: &str) -> String {
    let n = name.trim();
    for prefix in ["execute_tool ", "running tool: ", "running tool ", "tool: "] {
        if let Some(rest) = n.strip_prefix(prefix) {
            return rest.trim().to_string();
        }
    }
    n.to_string()
}

fn observation_kind(ty: &str, otel: &Map<String, Value>) -> StepKind {
    match ty {
        "GENERATION" => StepKind::Llm,
        "AGENT" => StepKind::Agent,
        "TOOL" => StepKind::Tool,
        "CHAIN" => StepKind::Workflow,
        "RETRIEVER" => StepKind::Retrieval,
        "EVALUATOR" => StepKind::Evaluator,
        "EMBEDDING" => StepKind::Embedding,
        "GUARDRAIL" => StepKind::Guardrail,
        // Generic spans and events: the original OTel attributes may say more.
        _ => {
            let oi = otel.get("openinference.span.kind").and_then(Value::as_str).map(str::to_ascii_uppercase);
            match oi.as_deref() {
                Some("LLM") => return StepKind::Llm,
                Some("TOOL") => return StepKind::Tool,
                Some("AGENT") => return StepKind::Agent,
                Some("CHAIN") => return StepKind::Workflow,
                Some("RETRIEVER") => return StepKind::Retrieval,
                Some("EMBEDDING") => return StepKind::Embedding,
                Some("RERANKER") => return StepKind::Rerank,
                Some("GUARDRAIL") => return StepKind::Guardrail,
                Some("EVALUATOR") => return StepKind::Evaluator,
                _ => {}
            }
            match otel.get("gen_ai.operation.name").and_then(Value::as_str) {
                Some("chat" | "text_completion" | "generate_content") => StepKind::Llm,
                Some("execute_tool") => StepKind::Tool,
                Some("invoke_agent" | "create_agent") => StepKind::Agent,
                Some("embeddings") => StepKind::Embedding,
                _ => StepKind::Other,
            }
        }
    }
}

fn score_of(s: &Value) -> Score {
    let data_type = str_of(s, "dataType").map(str::to_ascii_uppercase);
    let string_value = string_of(s, "stringValue");
    let mut comment = string_of(s, "comment");
    let mut label = None;
    match data_type.as_deref() {
        Some("BOOLEAN" | "CATEGORICAL") => label = string_value,
        _ => {
            if let Some(sv) = string_value {
                comment = Some(match comment {
                    Some(c) => format!("{c}\n{sv}"),
                    None => sv,
                });
            }
        }
    }
    // A categorical score whose value is a string (batch exports put it in `value`).
    if label.is_none() && matches!(data_type.as_deref(), Some("CATEGORICAL")) {
        label = s.get("value").and_then(Value::as_str).map(str::to_string);
    }
    let source = match str_of(s, "source").map(str::to_ascii_uppercase).as_deref() {
        Some("API") => ScoreSource::UserFeedback,
        Some("EVAL") => ScoreSource::Llm,
        Some("ANNOTATION") => ScoreSource::Human,
        _ => ScoreSource::Unknown,
    };
    Score {
        name: string_of(s, "name").unwrap_or_else(|| "score".into()),
        value: s.get("value").and_then(as_f64),
        label,
        comment,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::{Part, Trace};
    use serde_json::json;

    fn run(values: Vec<Value>) -> (Vec<Trace>, Vec<String>) {
        crate::trace::formats::run_on_values(parse, "t.json", values)
    }

    #[test]
    fn batch_rows_join_observations_and_scores_by_trace() {
        let (traces, warnings) = run(vec![
            json!({"id": "o2", "traceId": "t1", "type": "TOOL", "name": "execute_tool search", "parentObservationId": "o1",
                   "startTime": "2025-01-01T00:00:02Z", "level": "ERROR", "statusMessage": "PermissionError: denied\n  at x",
                   "input": "{\"q\": \"x\"}", "output": null}),
            json!({"id": "o1", "traceId": "t1", "type": "GENERATION", "name": "chat", "parentObservationId": null,
                   "startTime": "2025-01-01T00:00:01Z", "model": "gpt-4o",
                   "input": "[{\"role\":\"user\",\"content\":\"hi\"}]",
                   "output": {"role": "assistant", "content": "hello"},
                   "usage": {"input": "10", "output": 5, "unit": "TOKENS"}, "totalCost": 0.002}),
            json!({"id": "s1", "traceId": "t1", "observationId": "o1", "name": "helpful", "value": 1,
                   "stringValue": "True", "dataType": "BOOLEAN", "source": "ANNOTATION"}),
            json!({"id": "s2", "traceId": "t1", "name": "verdict", "value": "fail", "stringValue": "fail",
                   "dataType": "CATEGORICAL", "source": "API"}),
            json!({"id": "s2", "traceId": "t1", "name": "verdict", "value": "fail", "dataType": "CATEGORICAL", "source": "API"}),
            json!({"foo": 1}),
            json!(42),
        ]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(traces.len(), 1);
        let t = &traces[0];
        assert_eq!(t.steps.len(), 2);
        assert_eq!(t.steps[0].id, "o1");
        assert_eq!(t.steps[0].seq, 0);
        assert_eq!(t.steps[0].kind, StepKind::Llm);
        assert_eq!(t.steps[0].input_messages[0].role, "user");
        assert_eq!(t.steps[0].output_messages[0].joined_text(), "hello");
        assert_eq!(t.steps[0].usage.input_tokens, Some(10));
        assert_eq!(t.steps[0].cost_usd, Some(0.002));
        assert_eq!(t.steps[0].scores[0].label.as_deref(), Some("True"));
        assert_eq!(t.steps[0].scores[0].source, ScoreSource::Human);
        let tool = &t.steps[1];
        assert_eq!(tool.kind, StepKind::Tool);
        assert_eq!(tool.tool_call.as_ref().unwrap().name, "search");
        assert_eq!(tool.tool_call.as_ref().unwrap().arguments, json!({"q": "x"}));
        let err = tool.error.as_ref().unwrap();
        assert_eq!(err.source, Some(ErrorSource::Level));
        assert_eq!(err.r#type.as_deref(), Some("PermissionError"));
        assert_eq!(err.message.as_deref(), Some("denied"));
        assert_eq!(t.scores.len(), 1);
        assert_eq!(t.scores[0].label.as_deref(), Some("fail"));
        assert_eq!(t.scores[0].source, ScoreSource::UserFeedback);
    }

    #[test]
    fn warning_level_is_kept_but_not_an_error() {
        let (traces, _) = run(vec![json!({"observations": [
            {"id": "a", "traceId": "t", "type": "SPAN", "startTime": 1_700_000_000_000u64, "level": "WARNING", "statusMessage": "slow"}
        ], "scores": []})]);
        let s = &traces[0].steps[0];
        assert!(s.error.is_none());
        assert_eq!(s.attributes["langfuse.level"], "WARNING");
        assert_eq!(s.attributes["langfuse.statusMessage"], "slow");
        assert_eq!(s.start, Some(1_700_000_000_000_000_000));
    }

    #[test]
    fn api_page_of_traces_with_nested_observations() {
        let (traces, _) = run(vec![json!({"data": [
            {"id": "t1", "name": "qa", "sessionId": "s", "userId": "u", "timestamp": "2025-01-01T00:00:00Z",
             "input": "{\"question\": \"why\"}",
             "observations": [{"id": "g", "type": "GENERATION", "startTime": "2025-01-01T00:00:01Z",
                               "usageDetails": {"input": 3, "output": 4, "total": 7}}],
             "scores": [{"id": "x", "name": "q", "value": 0.5, "dataType": "NUMERIC", "source": "EVAL"}]},
            {"id": "t2", "name": "other", "observations": ["id-only"]}
        ], "meta": {"page": 1}})]);
        assert_eq!(traces.len(), 2);
        assert_eq!(traces[0].session_id.as_deref(), Some("s"));
        assert_eq!(traces[0].task, Some(json!({"question": "why"})));
        assert_eq!(traces[0].usage.total_tokens, Some(7));
        assert_eq!(traces[0].scores[0].value, Some(0.5));
        assert_eq!(traces[0].scores[0].source, ScoreSource::Llm);
        assert!(traces[1].steps.is_empty());
    }

    #[test]
    fn broken_shapes_do_not_panic() {
        let (traces, _) = run(vec![
            json!({"trace": {"noid": 1}, "observations": [1, "x", null]}),
            json!({"data": [null, [], {"traceId": 5, "type": 7}]}),
            json!({"observations": "nope", "scores": {"a": 1}}),
            json!([[[[[[{"traceId": "deep", "type": "SPAN"}]]]]]]),
            json!({"id": "o", "traceId": "t", "type": "GENERATION", "input": {"content": [1, {"type": 3}]}, "output": [[["x"]]],
                   "metadata": "{\"attributes\": 5}", "usageDetails": {"input": "abc"}}),
        ]);
        assert!(traces.iter().any(|t| t.id == "t"));
    }

    #[test]
    fn messages_in_many_shapes() {
        use super::super::common::platform::messages_from;
        // Anthropic content blocks with a tool_use.
        let m = messages_from(
            &json!({"role": "assistant", "content": [{"type": "tool_use", "id": "tu1", "name": "get", "input": {"a": 1}}]}),
            "assistant",
        );
        assert!(matches!(&m[0].parts[0], Part::ToolCall(c) if c.name == "get" && c.id.as_deref() == Some("tu1")));
        // GenAI semconv parts.
        let m = messages_from(
            &json!([{"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "ok"}]}]),
            "user",
        );
        assert!(matches!(&m[0].parts[0], Part::ToolResult(r) if r.call_id.as_deref() == Some("c1")));
        // Python repr string.
        let m = messages_from(&json!("[{'role': 'user', 'parts': [{'type': 'text', 'content': 'hi'}]}]"), "user");
        assert_eq!(m[0].joined_text(), "hi");
        // Vercel tool-call list.
        let m = messages_from(&json!([{"toolCallId": "c", "toolName": "w", "input": "{\"x\":1}"}]), "assistant");
        assert_eq!(m.len(), 1);
        assert!(matches!(&m[0].parts[0], Part::ToolCall(c) if c.arguments == json!({"x": 1})));
        // Gemini request with a system instruction.
        let m = messages_from(
            &json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [{"function_call": {"name": "f", "args": {}}}]}],
                    "config": {"system_instruction": "be nice"}}),
            "user",
        );
        assert_eq!(m.iter().map(|m| m.role.as_str()).collect::<Vec<_>>(), ["system", "user", "assistant"]);
        // Responses API output.
        let m = messages_from(
            &json!({"object": "response", "output": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                                                     {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}]}),
            "assistant",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].joined_text(), "done");
    }

    #[test]
    fn error_text_parsing() {
        use super::super::common::platform::error_from_text;
        let e = error_from_text(
            ErrorSource::ErrorField,
            "ValueError('bad input')Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad input",
        );
        assert_eq!(e.r#type.as_deref(), Some("ValueError"));
        assert_eq!(e.message.as_deref(), Some("bad input"));
        assert!(e.stacktrace.as_deref().unwrap().starts_with("Traceback"));
        let e = error_from_text(ErrorSource::ErrorField, "openai.RateLimitError: Error code: 429 - slow down");
        assert_eq!(e.r#type.as_deref(), Some("openai.RateLimitError"));
        assert_eq!(e.code.as_deref(), Some("429"));
        let e = error_from_text(ErrorSource::ErrorField, "something went wrong: really");
        assert_eq!(e.r#type, None);
        assert_eq!(e.message.as_deref(), Some("something went wrong: really"));
        assert!(super::super::common::platform::text_error("No errors found in the file.").is_none());
        assert!(super::super::common::platform::text_error("Error: file not found").is_some());
        assert!(super::super::common::platform::text_error("done\nExit code: 2").is_some());
        assert!(super::super::common::platform::text_error("Exit code: 0").is_none());
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use crate::trace::formats::{FileCtx, langfuse, langsmith, openai_agents};
    use crate::trace::read::Records;

    /// Keys the three platform adapters look at, so random values reach deep code paths.
    const KEYS: [&str; 40] = [
        "id",
        "run_id",
        "trace_id",
        "traceId",
        "parent_run_id",
        "parentObservationId",
        "parent_id",
        "dotted_order",
        "run_type",
        "type",
        "object",
        "span_data",
        "inputs",
        "outputs",
        "input",
        "output",
        "messages",
        "content",
        "role",
        "parts",
        "tool_calls",
        "generations",
        "choices",
        "message",
        "error",
        "status",
        "level",
        "statusMessage",
        "usage",
        "usageDetails",
        "observations",
        "scores",
        "trace",
        "data",
        "post",
        "patch",
        "child_runs",
        "lc",
        "kwargs",
        "feedback_stats",
    ];

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
            "[a-zA-Z0-9_:.{}\\[\\]\"' ]{0,12}".prop_map(Value::String),
            prop::sample::select(vec![
                "trace.span",
                "trace",
                "llm",
                "tool",
                "GENERATION",
                "ERROR",
                "error",
                "function",
                "generation",
                "guardrail",
                "custom",
                "20240101T000000000000Za.20240101T000000000001Zb",
                "{\"a\":1}",
                "[1]",
                "Traceback (most recent call last):\nX: y"
            ])
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..8).prop_map(|kvs| {
                    let map: Map<String, Value> = kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                    Value::Object(map)
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn platform_adapters_survive_random_json(values in prop::collection::vec(json_value(), 0..6)) {
            type P = fn(&mut Records, &mut FileCtx<'_>, &mut crate::trace::formats::Sink<'_>) -> Result<(), crate::trace::formats::ParseError>;
            for parse in [langfuse::parse as P, langsmith::parse as P, openai_agents::parse as P] {
                let mut records = Records::from_values(values.clone());
                let mut ctx = FileCtx::new("fuzz.json");
                let mut n = 0usize;
                let result = parse(&mut records, &mut ctx, &mut |t| n += t.steps.len());
                prop_assert!(result.is_ok());
            }
        }
    }
}
