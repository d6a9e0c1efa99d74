//! Claude Code transcripts and stream-json (trace-formats.md §6.1).
//!
//! Both formats carry the same Anthropic message objects line by line, so one builder
//! reads them: assistant lines (one API message is often split over several lines with
//! the same `message.id`) merge into one Llm step whose usage is counted once; every
//! `tool_use` block becomes a Tool step joined to its `tool_result` (a later user line)
//! by the tool-use id; user text becomes User steps. Traces are grouped by session id and
//! emitted at the end of the file (a session may be interleaved with sidechain lines).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::common::transcript::{
    attrs_except, file_stem, new_step, parts_of, set_error, text_error, text_value, usage_of,
};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_bool, as_f64, parse_time, str_of, string_of};
use crate::trace::model::{
    ErrorInfo, ErrorSource, Message, ModelInfo, Part, Signal, Step, StepKind, ToolResult, Trace, Usage,
};
use crate::trace::read::{Pos, Records};

/// Claude Code session JSONL (also the `{"loglines": […]}` web-session wrapper).
pub fn parse(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    run(records, ctx, sink, Format::ClaudeCode)
}

/// `claude -p --output-format stream-json` / Agent SDK NDJSON.
pub fn parse_stream_json(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    run(records, ctx, sink, Format::ClaudeStreamJson)
}

fn run(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>, format: Format) -> Result<(), ParseError> {
    let mut b = Builder {
        format,
        default_id: file_stem(ctx.path),
        sessions: Vec::new(),
        index: HashMap::new(),
        current: None,
        line: 0,
        pending_summary: None,
    };
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        if let Some(lines) = rec.value.get("loglines").and_then(Value::as_array) {
            for line in lines {
                b.line(ctx, line, rec.pos);
            }
        } else {
            b.line(ctx, &rec.value, rec.pos);
        }
    }
    for s in b.sessions {
        let mut trace = s.trace;
        if trace.task.is_none() {
            trace.task = s.task.map(Value::String);
        }
        if !trace.steps.is_empty() || !trace.signals.is_empty() {
            sink(trace);
        }
    }
    Ok(())
}

struct Session {
    trace: Trace,
    /// `message.id` → index of its Llm step.
    llm_by_msg: HashMap<String, usize>,
    /// tool-use id → index of its Tool step.
    tool_by_id: HashMap<String, usize>,
    step_ids: HashSet<String>,
    task: Option<String>,
}

impl Session {
    fn unique_id(&mut self, id: String) -> String {
        let mut candidate = id.clone();
        let mut n = 2;
        while self.step_ids.contains(&candidate) {
            candidate = format!("{id}#{n}");
            n += 1;
        }
        self.step_ids.insert(candidate.clone());
        candidate
    }

    fn push_step(&mut self, mut step: Step) -> usize {
        step.id = self.unique_id(std::mem::take(&mut step.id));
        step.seq = u32::try_from(self.trace.steps.len()).unwrap_or(u32::MAX);
        self.trace.steps.push(step);
        self.trace.steps.len() - 1
    }

    fn push_message(&mut self, msg: Message) -> (u32, u32) {
        let t = self.trace.transcript.len() as u32;
        self.trace.transcript.push(msg);
        (t, t + 1)
    }
}

struct Builder {
    format: Format,
    default_id: String,
    sessions: Vec<Session>,
    index: HashMap<String, usize>,
    current: Option<usize>,
    line: u64,
    pending_summary: Option<String>,
}

/// What every line of a session shares.
struct Envelope<'a> {
    v: &'a Value,
    uuid: Option<String>,
    time: Option<i128>,
    sidechain: bool,
    agent: Option<String>,
}

impl Envelope<'_> {
    fn mark(&self, step: &mut Step) {
        step.start = self.time;
        if self.sidechain {
            step.attributes.insert("sidechain".into(), Value::Bool(true));
            step.agent = Some(self.agent.clone().unwrap_or_else(|| "sidechain".into()));
        }
        if let Some(p) = str_of(self.v, "parentUuid") {
            step.attributes.insert("parent_uuid".into(), Value::String(p.into()));
        }
        if let Some(p) = str_of(self.v, "parent_tool_use_id") {
            step.attributes.insert("parent_tool_use_id".into(), Value::String(p.into()));
        }
    }
}

impl Builder {
    fn session(&mut self, ctx: &FileCtx<'_>, v: &Value, pos: Pos) -> usize {
        let id = str_of(v, "sessionId").or_else(|| str_of(v, "session_id"));
        let idx = match id {
            Some(id) => match self.index.get(id) {
                Some(&i) => i,
                None => self.new_session(ctx, id.to_string(), pos),
            },
            None => match self.current {
                Some(i) => i,
                None => {
                    let id = self.default_id.clone();
                    self.new_session(ctx, id, pos)
                }
            },
        };
        self.current = Some(idx);
        idx
    }

    fn new_session(&mut self, ctx: &FileCtx<'_>, id: String, pos: Pos) -> usize {
        let mut trace = ctx.trace(self.format, id.clone(), pos);
        trace.session_id = Some(id.clone());
        if let Some(summary) = self.pending_summary.take() {
            trace.attributes.insert("summary".into(), Value::String(summary));
        }
        self.sessions.push(Session {
            trace,
            llm_by_msg: HashMap::new(),
            tool_by_id: HashMap::new(),
            step_ids: HashSet::new(),
            task: None,
        });
        let i = self.sessions.len() - 1;
        self.index.insert(id, i);
        i
    }

    fn line(&mut self, ctx: &mut FileCtx<'_>, v: &Value, pos: Pos) {
        self.line += 1;
        if !v.is_object() {
            ctx.warn(pos, format!("not a Claude Code line: {}", json::keys_of(v)));
            return;
        }
        let Some(ty) = str_of(v, "type") else { return };
        if !matches!(
            ty,
            "user" | "assistant" | "system" | "attachment" | "summary" | "result" | "custom-title" | "ai-title"
        ) {
            return; // progress, file-history-snapshot, queue-operation, … carry no conversation
        }
        if ty == "summary" && str_of(v, "sessionId").is_none() && self.current.is_none() {
            // A file-level summary before any session line: keep it for the first session.
            self.pending_summary = str_of(v, "summary").map(str::to_string);
            return;
        }
        let si = self.session(ctx, v, pos);
        let line = self.line;
        let s = &mut self.sessions[si];
        remember_meta(&mut s.trace, v);
        let env = Envelope {
            v,
            uuid: string_of(v, "uuid"),
            time: v.get("timestamp").and_then(parse_time),
            sidechain: v.get("isSidechain").and_then(as_bool) == Some(true)
                || str_of(v, "parent_tool_use_id").is_some(),
            agent: str_of(v, "agentId").or_else(|| str_of(v, "parent_tool_use_id")).map(str::to_string),
        };
        match ty {
            "assistant" | "user" => {
                let Some(msg) = v.get("message").filter(|m| m.is_object()) else {
                    ctx.warn(pos, format!("{ty} line without a message object"));
                    return;
                };
                if ty == "assistant" {
                    assistant(s, &env, msg, line);
                } else {
                    user(s, &env, msg, line);
                }
            }
            "system" => system(s, &env, line),
            "attachment" => attachment(s, &env, line),
            "result" => result(s, &env, line),
            "summary" => {
                if let Some(text) = str_of(v, "summary") {
                    s.trace.attributes.insert("summary".into(), Value::String(text.into()));
                }
            }
            _ => {
                // custom-title / ai-title
                let title = ["customTitle", "aiTitle", "title"].iter().find_map(|k| str_of(v, k));
                if let Some(t) = title {
                    s.trace.name = Some(t.to_string());
                }
            }
        }
    }
}

/// Session-level facts, first seen wins.
fn remember_meta(trace: &mut Trace, v: &Value) {
    for (src, dst) in
        [("cwd", "cwd"), ("version", "version"), ("gitBranch", "git_branch"), ("entrypoint", "entrypoint")]
    {
        if let Some(val) = str_of(v, src) {
            trace.attributes.entry(dst).or_insert_with(|| Value::String(val.into()));
        }
    }
}

fn assistant(s: &mut Session, env: &Envelope<'_>, msg: &Value, line: u64) {
    let v = env.v;
    let mid = str_of(msg, "id")
        .map(str::to_string)
        .or_else(|| string_of(v, "requestId"))
        .or_else(|| env.uuid.clone())
        .unwrap_or_else(|| format!("line:{line}"));
    let parts = parts_of(msg.get("content").unwrap_or(&Value::Null));
    let usage = msg.get("usage").filter(|u| u.is_object());
    let stop = str_of(msg, "stop_reason");
    let idx = match s.llm_by_msg.get(&mid) {
        Some(&idx) => {
            // Another content block of the same API message.
            let step = &mut s.trace.steps[idx];
            step.end = env.time.or(step.end);
            if let Some(out) = step.output_messages.first_mut() {
                out.parts.extend(parts.iter().cloned());
                if stop.is_some() {
                    out.finish_reason = stop.map(str::to_string);
                }
            }
            if let Some(u) = usage {
                max_usage(&mut step.usage, &usage_of(u));
            }
            if let Some((t, _)) = step.transcript_range {
                if let Some(m) = s.trace.transcript.get_mut(t as usize) {
                    m.parts.extend(parts.iter().cloned());
                }
            }
            idx
        }
        None => {
            let mut step = new_step(env.uuid.clone().unwrap_or_else(|| mid.clone()), 0, StepKind::Llm);
            env.mark(&mut step);
            step.end = env.time;
            step.name = str_of(msg, "model").map(str::to_string);
            step.model = Some(ModelInfo {
                request_model: str_of(msg, "model").map(str::to_string),
                provider: Some("anthropic".into()),
                ..ModelInfo::default()
            });
            step.attributes.insert("message_id".into(), Value::String(mid.clone()));
            if let Some(r) = str_of(v, "requestId") {
                step.attributes.insert("request_id".into(), Value::String(r.into()));
            }
            if let Some(u) = usage {
                step.usage = usage_of(u);
                if let Some(c) = u.get("cache_creation_input_tokens").filter(|c| !c.is_null()) {
                    step.attributes.insert("cache_creation_input_tokens".into(), c.clone());
                }
            }
            let message = Message {
                role: "assistant".into(),
                name: None,
                parts: parts.clone(),
                finish_reason: stop.map(str::to_string),
            };
            step.transcript_range = Some(s.push_message(message.clone()));
            step.output_messages = vec![message];
            let idx = s.push_step(step);
            s.llm_by_msg.insert(mid.clone(), idx);
            idx
        }
    };
    // Finish reasons and API errors.
    {
        let step = &mut s.trace.steps[idx];
        if let (Some(stop), Some(model)) = (stop, step.model.as_mut()) {
            if !model.finish_reasons.iter().any(|f| f == stop) {
                model.finish_reasons.push(stop.to_string());
            }
        }
        let api_error =
            v.get("isApiErrorMessage").and_then(as_bool) == Some(true) || v.get("error").is_some_and(|e| !e.is_null());
        if api_error {
            let text = step.output_messages.first().map(Message::joined_text).unwrap_or_default();
            let ty = match v.get("error") {
                Some(Value::String(e)) => e.clone(),
                Some(e @ Value::Object(_)) => str_of(e, "type").unwrap_or("api_error").to_string(),
                _ => "api_error".into(),
            };
            let mut err = ErrorInfo::new(ErrorSource::Level).with_type(ty).with_message(json::clip(&text, 500));
            err.code = v.get("apiErrorStatus").and_then(json::scalar_string);
            set_error(step, err);
        } else if stop == Some("max_tokens") && step.error.is_none() {
            let mut err = ErrorInfo::new(ErrorSource::Level)
                .with_type("max_tokens")
                .with_message("the response was cut off at max_tokens");
            err.code = Some("max_tokens".into());
            set_error(step, err);
        }
    }
    // Tool calls → Tool steps.
    let llm_id = s.trace.steps[idx].id.clone();
    let range = s.trace.steps[idx].transcript_range;
    for part in parts {
        let Part::ToolCall(call) = part else { continue };
        let id = call.id.clone().unwrap_or_else(|| format!("tool:{line}"));
        if s.tool_by_id.contains_key(&id) {
            continue; // the same block repeated on a later line
        }
        let mut step = new_step(id.clone(), 0, StepKind::Tool);
        env.mark(&mut step);
        step.name = Some(call.name.clone()).filter(|n| !n.is_empty());
        step.tool_call = Some(call);
        step.transcript_range = range;
        step.attributes.insert("called_by".into(), Value::String(llm_id.clone()));
        let ti = s.push_step(step);
        s.tool_by_id.insert(id, ti);
    }
}

/// Field-wise max: repeated usage on split lines is the same call, counted once.
fn max_usage(into: &mut Usage, other: &Usage) {
    fn m(a: &mut Option<u64>, b: Option<u64>) {
        if let Some(b) = b {
            *a = Some(a.map_or(b, |a| a.max(b)));
        }
    }
    m(&mut into.input_tokens, other.input_tokens);
    m(&mut into.output_tokens, other.output_tokens);
    m(&mut into.total_tokens, other.total_tokens);
    m(&mut into.cache_read_tokens, other.cache_read_tokens);
    m(&mut into.reasoning_tokens, other.reasoning_tokens);
}

const INTERRUPTED: &str = "[Request interrupted by user";

fn user(s: &mut Session, env: &Envelope<'_>, msg: &Value, line: u64) {
    let v = env.v;
    let content = msg.get("content").unwrap_or(&Value::Null);
    let parts = parts_of(content);
    if parts.is_empty() {
        return;
    }
    let range = s.push_message(Message { role: "user".into(), name: None, parts: parts.clone(), finish_reason: None });
    let envelope_result = v.get("toolUseResult").or_else(|| v.get("tool_use_result"));
    let mut text_parts = Vec::new();
    for part in parts {
        match part {
            Part::ToolResult(r) => tool_result(s, env, r, envelope_result, range, line),
            other => text_parts.push(other),
        }
    }
    if text_parts.is_empty() {
        return;
    }
    let message = Message { role: "user".into(), name: None, parts: text_parts, finish_reason: None };
    let text = message.joined_text();
    let meta = v.get("isMeta").and_then(as_bool) == Some(true)
        || v.get("isCompactSummary").and_then(as_bool) == Some(true)
        || v.get("isVisibleInTranscriptOnly").and_then(as_bool) == Some(true);
    let kind = if meta { StepKind::System } else { StepKind::User };
    let mut step = new_step(env.uuid.clone().unwrap_or_else(|| format!("line:{line}")), 0, kind);
    env.mark(&mut step);
    step.transcript_range = Some(range);
    step.output_messages = vec![message];
    if text.trim_start().starts_with(INTERRUPTED) {
        step.attributes.insert("interrupted".into(), Value::Bool(true));
        let mut sig = Signal::new("interrupted", false, json::clip(text.trim(), 120));
        sig.step = Some(step.id.clone());
        let idx = s.push_step(step);
        sig.step = Some(s.trace.steps[idx].id.clone());
        s.trace.signals.push(sig);
        return;
    }
    let t = text.trim_start();
    if kind == StepKind::User
        && s.task.is_none()
        && !env.sidechain
        && !t.is_empty()
        && !t.starts_with("Caveat:")
        && !t.starts_with("<local-command-stdout>")
    {
        s.task = Some(text.clone());
    }
    s.push_step(step);
}

fn tool_result(
    s: &mut Session,
    env: &Envelope<'_>,
    mut r: ToolResult,
    envelope: Option<&Value>,
    range: (u32, u32),
    line: u64,
) {
    let id = r.call_id.clone().unwrap_or_else(|| format!("tool:{line}"));
    let idx = match s.tool_by_id.get(&id) {
        Some(&i) => i,
        None => {
            // A result whose call we never saw (compacted away, or in another file).
            let mut step = new_step(id.clone(), 0, StepKind::Tool);
            env.mark(&mut step);
            step.attributes.insert("call_missing".into(), Value::Bool(true));
            let i = s.push_step(step);
            s.tool_by_id.insert(id, i);
            i
        }
    };
    let text = text_value(&r.content);
    let (exit_code, heuristic) = text_error(&text);
    r.exit_code = exit_code;
    let step = &mut s.trace.steps[idx];
    step.end = env.time.or(step.end);
    step.transcript_range = Some(range);
    if let Some(u) = &env.uuid {
        step.attributes.insert("result_uuid".into(), Value::String(u.clone()));
    }
    match envelope {
        Some(Value::String(e)) => {
            step.attributes.insert("tool_use_result".into(), Value::String(json::clip(e, 2000)));
        }
        Some(Value::Object(o)) => {
            // Keep the small scalar facts (exit codes, interrupted flags), not file bodies.
            let small: serde_json::Map<String, Value> = o
                .iter()
                .filter(|(_, v)| match v {
                    Value::Bool(_) | Value::Number(_) => true,
                    Value::String(s) => s.len() <= 200,
                    _ => false,
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !small.is_empty() {
                step.attributes.insert("tool_use_result".into(), Value::Object(small));
            }
        }
        _ => {}
    }
    match r.is_error {
        Some(true) => {
            let t = text.trim();
            let inner = t
                .strip_prefix("<tool_use_error>")
                .map(|x| x.split("</tool_use_error>").next().unwrap_or(x))
                .unwrap_or(t);
            let ty = if exit_code.is_some() {
                "exit_code"
            } else if t.starts_with("<tool_use_error>") {
                "tool_use_error"
            } else {
                "tool_error"
            };
            let mut err =
                ErrorInfo::new(ErrorSource::ToolResultFlag).with_type(ty).with_message(json::clip(inner.trim(), 500));
            err.code = exit_code.map(|c| c.to_string());
            set_error(step, err);
        }
        Some(false) => {}
        None => {
            if let Some(e) = heuristic {
                set_error(step, e);
            }
        }
    }
    step.tool_result = Some(r);
}

fn system(s: &mut Session, env: &Envelope<'_>, line: u64) {
    let v = env.v;
    let subtype = str_of(v, "subtype").unwrap_or("");
    if subtype == "init" {
        // stream-json session start: model, tools, cwd…
        for (k, val) in
            attrs_except(v, &["type", "subtype", "session_id", "uuid", "tools", "mcp_servers", "slash_commands"])
        {
            s.trace.attributes.entry(k).or_insert(val);
        }
        if let Some(tools) = v.get("tools").and_then(Value::as_array) {
            s.trace.attributes.insert("tool_count".into(), Value::from(tools.len()));
        }
        return;
    }
    let level = str_of(v, "level").unwrap_or("");
    let content = str_of(v, "content").map(str::to_string);
    let is_error = subtype == "api_error" || level == "error";
    if content.is_none() && !is_error {
        return; // turn_duration, bridge status…: no text, no failure
    }
    let mut step = new_step(env.uuid.clone().unwrap_or_else(|| format!("line:{line}")), 0, StepKind::System);
    env.mark(&mut step);
    step.name = Some(if subtype.is_empty() { "system".into() } else { subtype.to_string() });
    step.attributes.extend(attrs_except(
        v,
        &[
            "type",
            "uuid",
            "parentUuid",
            "sessionId",
            "timestamp",
            "cwd",
            "version",
            "gitBranch",
            "userType",
            "isSidechain",
            "content",
        ],
    ));
    if is_error {
        let err_val = v.get("error").unwrap_or(&Value::Null);
        let message = content
            .clone()
            .or_else(|| json::path(err_val, &["error", "message"]).and_then(Value::as_str).map(str::to_string))
            .or_else(|| str_of(err_val, "message").map(str::to_string))
            .or_else(|| err_val.as_str().map(str::to_string))
            .or_else(|| v.get("cause").map(text_value))
            .unwrap_or_default();
        let ty = json::path(err_val, &["error", "type"])
            .and_then(Value::as_str)
            .or_else(|| str_of(err_val, "type"))
            .unwrap_or(if subtype.is_empty() { "error" } else { subtype });
        let mut err = ErrorInfo::new(ErrorSource::Level).with_type(ty).with_message(json::clip(&message, 500));
        err.code = err_val.get("status").and_then(json::scalar_string);
        set_error(&mut step, err);
    }
    let message = Message::text("system", content.unwrap_or_default());
    step.transcript_range = Some(s.push_message(message.clone()));
    step.output_messages = vec![message];
    s.push_step(step);
}

fn attachment(s: &mut Session, env: &Envelope<'_>, line: u64) {
    let att = env.v.get("attachment").unwrap_or(&Value::Null);
    let ty = str_of(att, "type").unwrap_or("");
    let (source, message) = match ty {
        "max_turns_reached" => (
            ErrorSource::Terminal,
            match att.get("maxTurns").and_then(json::scalar_string) {
                Some(n) => format!("max turns reached ({n})"),
                None => "max turns reached".to_string(),
            },
        ),
        // The hook blocked a tool call and told the model why; the run may go on.
        "hook_blocking_error" => (
            ErrorSource::Level,
            json::path(att, &["blockingError", "blockingError"])
                .and_then(Value::as_str)
                .or_else(|| str_of(att, "blockingError"))
                .unwrap_or("a hook blocked the action")
                .to_string(),
        ),
        _ => return,
    };
    let mut step = new_step(env.uuid.clone().unwrap_or_else(|| format!("line:{line}")), 0, StepKind::System);
    env.mark(&mut step);
    step.name = Some(ty.to_string());
    step.attributes.extend(attrs_except(att, &["type"]));
    set_error(&mut step, ErrorInfo::new(source).with_type(ty).with_message(message.clone()));
    let idx = s.push_step(step);
    if source == ErrorSource::Terminal {
        let mut sig = Signal::new("terminal", false, message);
        sig.step = Some(s.trace.steps[idx].id.clone());
        s.trace.signals.push(sig);
    }
}

/// stream-json final line: `{"type":"result","subtype","is_error","result","num_turns",
/// "total_cost_usd","usage",…}`.
fn result(s: &mut Session, env: &Envelope<'_>, line: u64) {
    let v = env.v;
    let subtype = str_of(v, "subtype").unwrap_or("unknown");
    let is_error = v.get("is_error").and_then(as_bool).unwrap_or(false);
    let passed = subtype == "success" && !is_error;
    let detail = if is_error && subtype == "success" {
        "result = success with is_error = true".to_string()
    } else {
        format!("result = {subtype}")
    };
    if let Some(c) = v.get("total_cost_usd").or_else(|| v.get("cost_usd")).and_then(as_f64) {
        s.trace.cost_usd = Some(s.trace.cost_usd.unwrap_or(0.0) + c);
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let u = usage_of(u);
        s.trace.usage.add(&u);
    }
    for key in ["num_turns", "duration_ms", "duration_api_ms", "permission_denials", "modelUsage", "stop_reason"] {
        if let Some(val) = v.get(key).filter(|x| !x.is_null()) {
            s.trace.attributes.insert(key.to_string(), val.clone());
        }
    }
    let text = str_of(v, "result").map(str::to_string);
    let mut step = new_step(env.uuid.clone().unwrap_or_else(|| format!("result:{line}")), 0, StepKind::System);
    env.mark(&mut step);
    step.name = Some("result".into());
    step.attributes.insert("subtype".into(), Value::String(subtype.into()));
    step.output = text.clone().map(Value::String);
    if !passed {
        let msg = text.clone().unwrap_or_else(|| detail.clone());
        let mut err = ErrorInfo::new(ErrorSource::Terminal).with_type(subtype).with_message(json::clip(&msg, 500));
        err.code = Some(subtype.to_string());
        set_error(&mut step, err);
    }
    let idx = s.push_step(step);
    let mut sig = Signal::new("result", passed, detail);
    sig.step = Some(s.trace.steps[idx].id.clone());
    s.trace.signals.push(sig);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::StepStatus;
    use serde_json::json;

    fn run_values(format: Format, values: Vec<Value>) -> (Vec<Trace>, usize) {
        let mut records = Records::from_values(values);
        let mut ctx = FileCtx::new("s.jsonl");
        let mut out = Vec::new();
        let f = if format == Format::ClaudeCode { parse } else { parse_stream_json };
        f(&mut records, &mut ctx, &mut |t| out.push(t)).unwrap();
        (out, ctx.warnings.len())
    }

    fn line(ty: &str, uuid: &str, message: Value) -> Value {
        json!({"type": ty, "uuid": uuid, "sessionId": "s1", "timestamp": "2025-01-01T00:00:00Z", "message": message})
    }

    #[test]
    fn split_assistant_lines_merge_and_count_usage_once() {
        let usage = json!({"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": "100"});
        let (traces, _) = run_values(
            Format::ClaudeCode,
            vec![
                line("user", "u1", json!({"role": "user", "content": "do it"})),
                line(
                    "assistant",
                    "a1",
                    json!({"id": "msg_1", "model": "m", "content": [{"type": "thinking", "thinking": "hmm"}], "usage": usage}),
                ),
                line(
                    "assistant",
                    "a2",
                    json!({"id": "msg_1", "model": "m", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "false"}}], "usage": usage, "stop_reason": "tool_use"}),
                ),
                line(
                    "user",
                    "u2",
                    json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "Exit code 1\nfailed", "is_error": true}]}),
                ),
                line(
                    "user",
                    "u3",
                    json!({"role": "user", "content": [{"type": "text", "text": "[Request interrupted by user]"}]}),
                ),
            ],
        );
        let t = &traces[0];
        assert_eq!(t.id, "s1");
        let kinds: Vec<_> = t.steps.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, vec![StepKind::User, StepKind::Llm, StepKind::Tool, StepKind::User]);
        assert_eq!(t.steps[1].usage.input_tokens, Some(10));
        assert_eq!(t.steps[1].usage.cache_read_tokens, Some(100));
        assert_eq!(t.steps[1].output_messages[0].parts.len(), 2);
        let tool = &t.steps[2];
        assert_eq!(tool.status, StepStatus::Error);
        assert_eq!(tool.tool_result.as_ref().unwrap().exit_code, Some(1));
        assert_eq!(tool.error.as_ref().unwrap().source, Some(ErrorSource::ToolResultFlag));
        assert_eq!(t.signals[0].kind, "interrupted");
        assert!(!t.signals[0].passed);
        assert_eq!(t.task, Some(json!("do it")));
        assert_eq!(t.transcript.len(), 4);
    }

    #[test]
    fn junk_and_unknown_lines() {
        let (traces, warnings) = run_values(
            Format::ClaudeCode,
            vec![
                json!("x"),
                json!(1),
                json!({"silly": 1}),
                json!({"type": "progress", "sessionId": "s1"}),
                json!({"type": "user", "sessionId": "s1", "message": "error"}),
            ],
        );
        assert!(traces.is_empty());
        assert_eq!(warnings, 3);
    }

    #[test]
    fn stream_json_result() {
        let (traces, _) = run_values(
            Format::ClaudeStreamJson,
            vec![
                json!({"type": "system", "subtype": "init", "session_id": "x", "model": "claude-x", "tools": ["Bash"]}),
                json!({"type": "assistant", "session_id": "x", "parent_tool_use_id": null, "message": {"id": "m1", "content": [{"type": "text", "text": "hi"}], "usage": {"input_tokens": 3, "output_tokens": 4}}}),
                json!({"type": "result", "subtype": "error_max_turns", "is_error": true, "session_id": "x", "total_cost_usd": 0.5, "num_turns": 3, "usage": {"input_tokens": 3, "output_tokens": 4}}),
            ],
        );
        let t = &traces[0];
        assert_eq!(t.cost_usd, Some(0.5));
        assert_eq!(t.attributes["model"], json!("claude-x"));
        assert_eq!(t.signals[0].kind, "result");
        assert!(!t.signals[0].passed);
        assert_eq!(t.usage.output_tokens, Some(4));
    }
}
