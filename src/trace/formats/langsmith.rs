//! LangSmith runs (trace-formats.md §3): raw SDK runs (`Run.model_dump()`), the
//! `langsmith` CLI's reshaped runs (`run_id`, `token_usage`, `costs`, `custom_metadata`),
//! runs with nested `child_runs`, and ingestion payloads `{"post":[…],"patch":[…]}` /
//! `{"runs":[…]}`, as JSON or JSONL.
//!
//! Runs of one trace may sit on many lines (and patches update runs posted earlier), so
//! runs are collected, grouped by `trace_id` (or the root of `dotted_order`) and emitted at
//! the end in first-seen order.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::common::platform::{
    decode_deep, error_from_text, first_user_text, messages_from, order_steps, text_error, time_of, usage_from,
};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_f64, as_u64, str_of, string_of};
use crate::trace::model::{
    ErrorInfo, ErrorSource, Event, ModelInfo, Nanos, Score, ScoreSource, Step, StepKind, StepStatus, ToolCall,
    ToolResult, Trace, Usage, value_text,
};
use crate::trace::read::{Pos, Records};

const MAX_NESTING: u32 = 4;

/// Run fields mapped into the model; the rest is kept in attributes as `langsmith.<key>`.
const MAPPED: [&str; 30] = [
    "id",
    "run_id",
    "trace_id",
    "parent_run_id",
    "parent_run_ids",
    "dotted_order",
    "name",
    "run_type",
    "start_time",
    "end_time",
    "inputs",
    "outputs",
    "error",
    "status",
    "child_runs",
    "child_run_ids",
    "direct_child_run_ids",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_cost",
    "completion_cost",
    "total_cost",
    "token_usage",
    "costs",
    "feedback_stats",
    "events",
    "extra",
    "custom_metadata",
    "duration_ms",
];

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

struct Run {
    key: String,
    value: Value,
    pos: Pos,
}

#[derive(Default)]
struct State {
    runs: Vec<Run>,
    by_key: HashMap<String, usize>,
}

impl State {
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
                let wrapper = !obj.contains_key("run_type")
                    && ["post", "patch", "runs"].iter().any(|k| obj.get(*k).is_some_and(Value::is_array));
                if wrapper {
                    for key in ["post", "runs"] {
                        if let Some(Value::Array(runs)) = obj.remove(key) {
                            for run in runs {
                                self.add_run(run, pos, ctx);
                            }
                        }
                    }
                    if let Some(Value::Array(patches)) = obj.remove("patch") {
                        for patch in patches {
                            self.patch_run(patch, pos, ctx);
                        }
                    }
                    return;
                }
                if is_run(&obj) {
                    self.add_run(Value::Object(obj), pos, ctx);
                } else {
                    ctx.warn(pos, format!("not a LangSmith run: {}", json::keys_of(&Value::Object(obj))));
                }
            }
            other => ctx.warn(pos, format!("not a LangSmith run: {}", json::keys_of(&other))),
        }
    }

    /// Add a run and its nested `child_runs` (iteratively: nesting can be deep).
    fn add_run(&mut self, run: Value, pos: Pos, ctx: &mut FileCtx<'_>) {
        let mut stack = vec![(run, None::<String>)];
        while let Some((run, parent)) = stack.pop() {
            let Value::Object(mut obj) = run else {
                ctx.warn(pos, "a LangSmith run that is not an object; skipped");
                continue;
            };
            let children = obj.remove("child_runs");
            if let Some(parent) = &parent {
                if obj.get("parent_run_id").is_none_or(Value::is_null) {
                    obj.insert("parent_run_id".into(), Value::String(parent.clone()));
                }
            }
            let key = run_key(&obj).unwrap_or_else(|| format!("run:{}", self.runs.len()));
            if let Some(Value::Array(children)) = children {
                // Reverse so children come out of the stack in file order.
                for child in children.into_iter().rev() {
                    stack.push((child, Some(key.clone())));
                }
            }
            self.upsert(key, obj, pos);
        }
    }

    fn patch_run(&mut self, patch: Value, pos: Pos, ctx: &mut FileCtx<'_>) {
        let Value::Object(obj) = patch else {
            ctx.warn(pos, "a LangSmith patch that is not an object; skipped");
            return;
        };
        match run_key(&obj) {
            Some(key) => self.upsert(key, obj, pos),
            None => ctx.warn(pos, "a LangSmith patch without `id` or `dotted_order`; skipped"),
        }
    }

    /// Insert a run, or update the run with the same id (a patch, or the same run posted
    /// twice): fields given non-null overwrite.
    fn upsert(&mut self, key: String, obj: Map<String, Value>, pos: Pos) {
        match self.by_key.get(&key) {
            Some(&i) => {
                if let Value::Object(into) = &mut self.runs[i].value {
                    for (k, v) in obj {
                        if !v.is_null() {
                            into.insert(k, v);
                        }
                    }
                }
            }
            None => {
                self.by_key.insert(key.clone(), self.runs.len());
                self.runs.push(Run { key, value: Value::Object(obj), pos });
            }
        }
    }

    fn emit(self, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) {
        // Trace of each run: its trace_id, the root of its dotted_order, or its root ancestor.
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, run) in self.runs.iter().enumerate() {
            let tid = string_of(&run.value, "trace_id")
                .or_else(|| str_of(&run.value, "dotted_order").and_then(|d| dotted(d).first().map(|s| s.1.to_string())))
                .unwrap_or_else(|| self.root_key(i));
            let group = groups.entry(tid.clone()).or_default();
            if group.is_empty() {
                order.push(tid);
            }
            group.push(i);
        }
        for tid in order {
            let Some(indices) = groups.remove(&tid) else {
                continue;
            };
            sink(self.build_trace(ctx, &tid, &indices));
        }
    }

    fn root_key(&self, mut i: usize) -> String {
        for _ in 0..self.runs.len() {
            let parent = parent_of(&self.runs[i].value).and_then(|p| self.by_key.get(&p).copied());
            match parent {
                Some(p) if p != i => i = p,
                _ => break,
            }
        }
        self.runs[i].key.clone()
    }

    fn build_trace(&self, ctx: &FileCtx<'_>, tid: &str, indices: &[usize]) -> Trace {
        let first_pos = indices.first().map(|&i| self.runs[i].pos).unwrap_or(Pos::Byte(0));
        let mut trace = ctx.trace(Format::Langsmith, tid, first_pos);
        let keys: std::collections::HashSet<&str> = indices.iter().map(|&i| self.runs[i].key.as_str()).collect();
        let root = indices.iter().copied().find(|&i| self.runs[i].key == tid).or_else(|| {
            indices.iter().copied().find(|&i| parent_of(&self.runs[i].value).is_none_or(|p| !keys.contains(p.as_str())))
        });
        let mut steps = Vec::with_capacity(indices.len());
        for &i in indices {
            let run = &self.runs[i];
            let mut step = run_step(&run.key, &run.value);
            if Some(i) == root {
                // Feedback on the root run judges the whole trace.
                trace.scores.append(&mut step.scores);
            }
            steps.push(step);
        }
        if let Some(r) = root {
            let v = &self.runs[r].value;
            trace.name = string_of(v, "name");
            trace.start = v.get("start_time").and_then(time_of);
            trace.end = v.get("end_time").and_then(time_of);
            trace.task = task_of(v);
            // Runs returned by the API carry their subtree's token and cost totals on the
            // root: use them when no LLM run reports its own.
            if steps.iter().all(|s| s.usage.is_empty()) {
                trace.usage = run_usage(v);
            }
            if steps.iter().all(|s| s.cost_usd.is_none()) {
                trace.cost_usd = run_cost(v);
            }
        }
        trace.session_id = indices.iter().find_map(|&i| session_of(&self.runs[i].value));
        order_steps(&mut steps);
        trace.steps = steps;
        trace
    }
}

fn is_run(obj: &Map<String, Value>) -> bool {
    obj.contains_key("run_type")
        || ((obj.contains_key("id") || obj.contains_key("run_id"))
            && (obj.contains_key("trace_id") || obj.contains_key("dotted_order")))
}

/// `<YYYYMMDDTHHMMSSffffff>Z<uuid>` segments joined by `.`, root first: (time, uuid).
fn dotted(d: &str) -> Vec<(&str, &str)> {
    d.split('.')
        .filter_map(|seg| {
            let z = seg.find('Z')?;
            let id = seg.get(z + 1..)?;
            (!id.is_empty()).then(|| (&seg[..z], id))
        })
        .collect()
}

fn dotted_time(t: &str) -> Option<Nanos> {
    let base = chrono::NaiveDateTime::parse_from_str(t.get(..15)?, "%Y%m%dT%H%M%S").ok()?;
    let frac = t.get(15..).unwrap_or("");
    let micros: i128 = if frac.is_empty() { 0 } else { frac.get(..frac.len().min(6))?.parse().ok()? };
    let secs = base.and_utc().timestamp_nanos_opt()? as i128;
    Some(secs + micros * 1_000)
}

fn run_key(obj: &Map<String, Value>) -> Option<String> {
    obj.get("id").and_then(json::scalar_string).or_else(|| obj.get("run_id").and_then(json::scalar_string)).or_else(
        || {
            let d = obj.get("dotted_order")?.as_str()?;
            dotted(d).last().map(|s| s.1.to_string())
        },
    )
}

fn parent_of(v: &Value) -> Option<String> {
    string_of(v, "parent_run_id").or_else(|| {
        let d = str_of(v, "dotted_order")?;
        let segs = dotted(d);
        (segs.len() >= 2).then(|| segs[segs.len() - 2].1.to_string())
    })
}

fn metadata_of(v: &Value) -> Option<&Map<String, Value>> {
    json::path(v, &["extra", "metadata"])
        .and_then(Value::as_object)
        .or_else(|| v.get("custom_metadata").and_then(Value::as_object))
}

fn session_of(v: &Value) -> Option<String> {
    let meta = metadata_of(v)?;
    ["thread_id", "session_id", "conversation_id"].iter().find_map(|k| meta.get(*k).and_then(json::scalar_string))
}

fn run_kind(run_type: &str) -> StepKind {
    match run_type.to_ascii_lowercase().as_str() {
        "llm" | "chat_model" => StepKind::Llm,
        "chain" => StepKind::Workflow,
        "tool" => StepKind::Tool,
        "retriever" => StepKind::Retrieval,
        "embedding" => StepKind::Embedding,
        "agent" => StepKind::Agent,
        _ => StepKind::Other,
    }
}

fn run_usage(v: &Value) -> Usage {
    let get = |k: &str| v.get(k).and_then(as_u64);
    let top = Usage {
        input_tokens: get("prompt_tokens"),
        output_tokens: get("completion_tokens"),
        total_tokens: get("total_tokens"),
        cache_read_tokens: json::path(v, &["prompt_token_details", "cache_read"]).and_then(as_u64),
        reasoning_tokens: json::path(v, &["completion_token_details", "reasoning"]).and_then(as_u64),
    };
    if top.total().unwrap_or(0) > 0 {
        return top;
    }
    if let Some(u) = v.get("token_usage").map(usage_from).filter(|u| u.total().unwrap_or(0) > 0) {
        return u;
    }
    Usage::default()
}

fn output_usage(outputs: &Value) -> Usage {
    let candidates = [
        json::path(outputs, &["usage_metadata"]),
        json::path(outputs, &["usage"]),
        json::path(outputs, &["llm_output", "token_usage"]),
        json::path(outputs, &["llm_output", "usage"]),
    ];
    for c in candidates.into_iter().flatten() {
        let u = usage_from(c);
        if u.total().unwrap_or(0) > 0 {
            return u;
        }
    }
    // LangChain chat generations: generations[0][0].message.kwargs.usage_metadata.
    if let Some(generation) = json::path(outputs, &["generations"]).and_then(|g| first_object(g, 0)) {
        for path in [&["message", "kwargs", "usage_metadata"][..], &["message", "usage_metadata"][..]] {
            if let Some(u) = json::path(generation, path).map(usage_from).filter(|u| u.total().unwrap_or(0) > 0) {
                return u;
            }
        }
    }
    Usage::default()
}

fn first_object(v: &Value, depth: u32) -> Option<&Value> {
    match v {
        Value::Object(_) => Some(v),
        Value::Array(items) if depth < 4 => items.first().and_then(|i| first_object(i, depth + 1)),
        _ => None,
    }
}

fn run_cost(v: &Value) -> Option<f64> {
    v.get("total_cost")
        .and_then(as_f64)
        .or_else(|| json::path(v, &["costs", "total_cost"]).and_then(as_f64))
        .or_else(|| {
            let p = v
                .get("prompt_cost")
                .and_then(as_f64)
                .or_else(|| json::path(v, &["costs", "prompt_cost"]).and_then(as_f64));
            let c = v
                .get("completion_cost")
                .and_then(as_f64)
                .or_else(|| json::path(v, &["costs", "completion_cost"]).and_then(as_f64));
            match (p, c) {
                (None, None) => None,
                (p, c) => Some(p.unwrap_or(0.0) + c.unwrap_or(0.0)),
            }
        })
        .filter(|c| *c > 0.0)
}

fn task_of(root: &Value) -> Option<Value> {
    let inputs = root.get("inputs").map(decode_deep)?;
    if str_of(root, "run_type") == Some("llm") {
        if let Some(text) = first_user_text(&messages_from(&inputs, "user")) {
            return Some(Value::String(text));
        }
    }
    if let Value::Object(map) = &inputs {
        if map.is_empty() {
            return None;
        }
        for k in ["input", "question", "query", "task", "prompt", "instruction"] {
            if let Some(Value::String(s)) = map.get(k) {
                if !s.is_empty() {
                    return Some(Value::String(s.clone()));
                }
            }
        }
        if let Some(Value::Array(msgs)) = map.get("messages") {
            if let Some(text) = first_user_text(&messages_from(&Value::Array(msgs.clone()), "user")) {
                return Some(Value::String(text));
            }
        }
    }
    (!inputs.is_null()).then_some(inputs)
}

fn run_step(key: &str, v: &Value) -> Step {
    let run_type = str_of(v, "run_type").unwrap_or("").to_ascii_lowercase();
    let kind = run_kind(&run_type);
    let dotted_segments = str_of(v, "dotted_order").map(dotted).unwrap_or_default();
    let start = v.get("start_time").and_then(time_of).or_else(|| dotted_segments.last().and_then(|s| dotted_time(s.0)));
    let end = v.get("end_time").and_then(time_of).or_else(|| {
        let ms = v.get("duration_ms").and_then(as_f64)?;
        Some(start? + (ms * 1e6) as Nanos)
    });
    let mut step = Step {
        id: key.to_string(),
        parent_id: parent_of(v),
        kind,
        name: string_of(v, "name"),
        start,
        end,
        ..Step::default()
    };

    // Status and error.
    let status = str_of(v, "status").map(str::to_ascii_lowercase);
    let error = match v.get("error") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(error_from_text(ErrorSource::ErrorField, s)),
        Some(obj @ Value::Object(_)) => {
            let msg = str_of(obj, "message").map(str::to_string).unwrap_or_else(|| obj.to_string());
            let mut e = error_from_text(ErrorSource::ErrorField, &msg);
            if let Some(t) = str_of(obj, "type").or_else(|| str_of(obj, "name")) {
                e = e.with_type(t);
            }
            Some(e)
        }
        _ => None,
    };
    step.status = match status.as_deref() {
        Some("error") => StepStatus::Error,
        _ if error.is_some() => StepStatus::Error,
        Some("success") => StepStatus::Ok,
        _ => StepStatus::Unset,
    };
    step.error = error.or_else(|| (step.status == StepStatus::Error).then(|| ErrorInfo::new(ErrorSource::SpanStatus)));

    let inputs = v.get("inputs").map(decode_deep).unwrap_or(Value::Null);
    let outputs = v.get("outputs").map(decode_deep).unwrap_or(Value::Null);
    let meta = metadata_of(v);
    match kind {
        StepKind::Llm | StepKind::Embedding => {
            if kind == StepKind::Llm {
                step.input_messages = messages_from(&inputs, "user");
                step.output_messages = messages_from(&outputs, "assistant");
                if step.output_messages.is_empty() {
                    if let Some(out) = outputs.get("output") {
                        step.output_messages = messages_from(out, "assistant");
                    }
                }
            }
            let request_model = ["model", "model_name"]
                .iter()
                .find_map(|k| json::path(v, &["extra", "invocation_params", k]).and_then(json::scalar_string))
                .or_else(|| meta.and_then(|m| m.get("ls_model_name")).and_then(json::scalar_string))
                .or_else(|| string_of(&inputs, "model"));
            let response_model = string_of(&outputs, "model")
                .or_else(|| json::path(&outputs, &["llm_output", "model_name"]).and_then(json::scalar_string))
                .or_else(|| {
                    let generation = json::path(&outputs, &["generations"]).and_then(|g| first_object(g, 0))?;
                    json::path(generation, &["message", "kwargs", "response_metadata", "model_name"])
                        .and_then(json::scalar_string)
                });
            let provider = meta.and_then(|m| m.get("ls_provider")).and_then(json::scalar_string);
            if request_model.is_some() || response_model.is_some() || provider.is_some() {
                step.model = Some(ModelInfo {
                    request_model,
                    response_model,
                    provider,
                    finish_reasons: step.output_messages.iter().filter_map(|m| m.finish_reason.clone()).collect(),
                });
            }
            step.usage = run_usage(v);
            if step.usage.is_empty() {
                step.usage = output_usage(&outputs);
            }
            step.cost_usd = run_cost(v);
            if step.input_messages.is_empty() && !is_empty(&inputs) {
                step.input = Some(inputs);
            }
            if step.output_messages.is_empty() && !is_empty(&outputs) {
                step.output = Some(outputs);
            }
        }
        StepKind::Tool => {
            let arguments = match inputs.get("input") {
                Some(a) if inputs.as_object().is_some_and(|m| m.len() == 1) => decode_deep(a),
                _ => inputs.clone(),
            };
            let (content, mut call_id, is_error) = tool_output(&outputs);
            if call_id.is_none() {
                call_id = string_of(&inputs, "tool_call_id")
                    .or_else(|| meta.and_then(|m| m.get("tool_call_id")).and_then(json::scalar_string));
            }
            step.tool_call = Some(ToolCall {
                id: call_id.clone(),
                name: step.name.clone().unwrap_or_else(|| "tool".into()),
                arguments,
            });
            if let Some(content) = content {
                if step.error.is_none() {
                    if is_error == Some(true) {
                        step.status = StepStatus::Error;
                        step.error = Some(
                            ErrorInfo::new(ErrorSource::ToolResultFlag)
                                .with_message(value_text(&content).lines().next().unwrap_or("")),
                        );
                    } else if let Some(err) = text_error(&value_text(&content)) {
                        step.status = StepStatus::Error;
                        step.error = Some(err);
                    }
                }
                step.tool_result = Some(ToolResult { call_id, content, is_error, exit_code: None });
            }
        }
        _ => {
            if !is_empty(&inputs) {
                step.input = Some(inputs);
            }
            if !is_empty(&outputs) {
                step.output = Some(outputs);
            }
        }
    }

    if let Some(Value::Object(stats)) = v.get("feedback_stats") {
        for (k, s) in stats {
            step.scores.push(feedback_score(k, s));
        }
    }
    if let Some(Value::Array(events)) = v.get("events") {
        for e in events {
            let name = str_of(e, "name").unwrap_or("event");
            if name == "new_token" {
                continue;
            }
            let attributes = e.get("kwargs").and_then(Value::as_object).cloned().unwrap_or_default();
            step.events.push(Event { name: name.to_string(), time: e.get("time").and_then(time_of), attributes });
        }
    }

    if let Value::Object(obj) = v {
        for (k, val) in obj {
            if MAPPED.contains(&k.as_str()) || is_empty(val) {
                continue;
            }
            step.attributes.insert(format!("langsmith.{k}"), val.clone());
        }
        if !run_type.is_empty() {
            step.attributes.insert("langsmith.run_type".into(), Value::String(run_type.clone()));
        }
        if let Some(status) = &status {
            step.attributes.insert("langsmith.status".into(), Value::String(status.clone()));
        }
        if let Some(meta) = meta.filter(|m| !m.is_empty()) {
            step.attributes.insert("langsmith.metadata".into(), Value::Object(meta.clone()));
        }
        if let Some(Value::Object(extra)) = obj.get("extra") {
            let rest: Map<String, Value> = extra
                .iter()
                .filter(|(k, val)| k.as_str() != "metadata" && !is_empty(val))
                .map(|(k, val)| (k.clone(), val.clone()))
                .collect();
            if !rest.is_empty() {
                step.attributes.insert("langsmith.extra".into(), Value::Object(rest));
            }
        }
        if let Some(ms) = obj.get("duration_ms").filter(|d| !d.is_null()) {
            step.attributes.insert("langsmith.duration_ms".into(), ms.clone());
        }
    }
    step
}

/// A tool run's output: `{"output": …}` (a string, or a serialized LangChain ToolMessage
/// with `tool_call_id` and `status`), or the whole outputs object.
fn tool_output(outputs: &Value) -> (Option<Value>, Option<String>, Option<bool>) {
    if is_empty(outputs) {
        return (None, None, None);
    }
    let out = match outputs.get("output") {
        Some(o) if outputs.as_object().is_some_and(|m| m.len() == 1) => o,
        _ => outputs,
    };
    let kwargs = if out.get("lc").is_some() { out.get("kwargs") } else { None };
    let msg = kwargs.or_else(|| (str_of(out, "type") == Some("tool")).then_some(out));
    if let Some(m) = msg.filter(|m| m.get("tool_call_id").is_some() || m.get("content").is_some()) {
        let content = m.get("content").map(|c| json::decode_json_string(c.clone())).unwrap_or(Value::Null);
        let is_error = match str_of(m, "status") {
            Some("error") => Some(true),
            Some("success") => Some(false),
            _ => None,
        };
        return (Some(content), string_of(m, "tool_call_id"), is_error);
    }
    (Some(json::decode_json_string(out.clone())), None, None)
}

fn feedback_score(key: &str, s: &Value) -> Score {
    let value = match s {
        Value::Object(_) => s.get("avg").and_then(as_f64),
        other => as_f64(other),
    };
    // A single categorical value ({"values": {"thumbs_down": 1}}) is the label.
    let label = s.get("values").and_then(Value::as_object).and_then(|vals| {
        let mut present = vals.iter().filter(|(_, n)| as_f64(n).is_none_or(|n| n > 0.0));
        let (first, _) = present.next()?;
        present.next().is_none().then(|| first.clone())
    });
    let comment = s.get("comments").and_then(Value::as_array).and_then(|c| {
        let texts: Vec<&str> = c.iter().filter_map(Value::as_str).filter(|t| !t.is_empty()).collect();
        (!texts.is_empty()).then(|| texts.join("\n"))
    });
    let source = match s
        .get("sources")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|f| str_of(f, "type").or_else(|| f.as_str()))
    {
        Some("api" | "app") => ScoreSource::UserFeedback,
        Some("model") => ScoreSource::Llm,
        _ => ScoreSource::Unknown,
    };
    Score { name: key.to_string(), value, label, comment, source }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::Part;
    use serde_json::json;

    fn run(values: Vec<Value>) -> (Vec<Trace>, Vec<String>) {
        crate::trace::formats::run_on_values(parse, "t.jsonl", values)
    }

    #[test]
    fn nested_child_runs_are_flattened_with_parents() {
        let (traces, _) = run(vec![json!({
            "id": "r", "trace_id": "r", "run_type": "chain", "name": "agent", "inputs": {"question": "why?"},
            "start_time": "2024-01-01T00:00:00Z",
            "child_runs": [
                {"id": "l", "trace_id": "r", "run_type": "llm", "name": "ChatOpenAI", "start_time": "2024-01-01T00:00:01Z",
                 "inputs": {"messages": [[{"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "HumanMessage"],
                                           "kwargs": {"content": "why?"}}]]},
                 "outputs": {"generations": [[{"text": "", "generation_info": {"finish_reason": "tool_calls"},
                     "message": {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "AIMessage"],
                                 "kwargs": {"content": "", "tool_calls": [{"name": "search", "args": {"q": "why"}, "id": "c1"}],
                                            "usage_metadata": {"input_tokens": 5, "output_tokens": 2, "total_tokens": 7}}}}]]},
                 "child_runs": [{"id": "deep", "run_type": "parser", "trace_id": "r", "start_time": "2024-01-01T00:00:02Z"}]},
                {"id": "t", "trace_id": "r", "run_type": "tool", "name": "search", "start_time": "2024-01-01T00:00:03Z",
                 "inputs": {"input": "{\"q\": \"why\"}"}, "outputs": {"output": "Error: index offline"}}
            ]
        })]);
        assert_eq!(traces.len(), 1);
        let t = &traces[0];
        assert_eq!(t.task, Some(json!("why?")));
        let ids: Vec<_> = t.steps.iter().map(|s| (s.id.as_str(), s.parent_id.as_deref())).collect();
        assert_eq!(ids, [("r", None), ("l", Some("r")), ("deep", Some("l")), ("t", Some("r"))]);
        let llm = &t.steps[1];
        assert_eq!(llm.input_messages[0].role, "user");
        assert!(
            matches!(&llm.output_messages[0].parts[0], Part::ToolCall(c) if c.name == "search" && c.id.as_deref() == Some("c1"))
        );
        assert_eq!(llm.output_messages[0].finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(llm.usage.total_tokens, Some(7));
        let tool = &t.steps[3];
        assert_eq!(tool.tool_call.as_ref().unwrap().arguments, json!({"q": "why"}));
        assert_eq!(tool.error.as_ref().unwrap().source, Some(ErrorSource::TextHeuristic));
    }

    #[test]
    fn patches_without_id_match_by_dotted_order_and_epoch_millis() {
        let (traces, _) = run(vec![json!({
            "post": [{"id": "a", "run_type": "llm", "start_time": 1728803137170u64, "trace_id": "a",
                      "dotted_order": "20241013T070537170001Za", "inputs": {"messages": [{"role": "user", "content": "hi"}]}}],
            "patch": [{"end_time": 1728803138285u64, "dotted_order": "20241013T070537170001Za", "trace_id": "a",
                       "error": "openai.APIError: Error code: 500 - boom", "status": "error"}]
        })]);
        let s = &traces[0].steps[0];
        assert_eq!(s.end, Some(1_728_803_138_285_000_000));
        let e = s.error.as_ref().unwrap();
        assert_eq!(e.source, Some(ErrorSource::ErrorField));
        assert_eq!(e.r#type.as_deref(), Some("openai.APIError"));
        assert_eq!(e.code.as_deref(), Some("500"));
        assert_eq!(s.status, StepStatus::Error);
    }

    #[test]
    fn parent_and_trace_from_dotted_order_only() {
        let (traces, _) = run(vec![
            json!({"id": "c", "run_type": "tool", "name": "x", "dotted_order": "20240101T000000000000Zp.20240101T000001500000Zc"}),
            json!({"id": "p", "run_type": "chain", "dotted_order": "20240101T000000000000Zp"}),
        ]);
        assert_eq!(traces.len(), 1);
        assert_eq!(traces[0].id, "p");
        let c = traces[0].steps.iter().find(|s| s.id == "c").unwrap();
        assert_eq!(c.parent_id.as_deref(), Some("p"));
        assert_eq!(c.start, Some(1_704_067_201_500_000_000));
        assert_eq!(traces[0].steps[0].id, "p");
    }

    #[test]
    fn status_error_without_text_and_strings_for_numbers() {
        let (traces, _) = run(vec![json!({"run_id": "x", "trace_id": "x", "run_type": "llm", "status": "error",
            "token_usage": {"prompt_tokens": "12", "completion_tokens": "3", "total_tokens": "15"},
            "costs": {"total_cost": "0.0021"}, "feedback_stats": {"thumbs": {"n": 1, "avg": 0, "values": {"thumbs_down": 1}}}})]);
        let t = &traces[0];
        let s = &t.steps[0];
        assert_eq!(s.error.as_ref().unwrap().source, Some(ErrorSource::SpanStatus));
        assert_eq!(s.usage.input_tokens, Some(12));
        assert_eq!(s.cost_usd, Some(0.0021));
        assert_eq!(t.scores[0].label.as_deref(), Some("thumbs_down"));
        assert_eq!(t.scores[0].value, Some(0.0));
    }

    #[test]
    fn broken_records_warn_and_go_on() {
        let (traces, warnings) = run(vec![
            json!(null),
            json!({"hello": 1}),
            json!({"post": [1, null, {"run_type": "chain"}], "patch": ["x", {"foo": 1}]}),
            json!({"id": 5, "trace_id": [], "run_type": 7, "inputs": "{bad", "outputs": {"generations": "x"}, "child_runs": {"a": 1}}),
            json!([[[[[[{"id": "z"}]]]]]]),
        ]);
        assert!(warnings.len() >= 4, "{warnings:?}");
        assert!(!traces.is_empty());
    }
}
