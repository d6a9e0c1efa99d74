//! Chat histories (Who&When), free-text logs (MAST), plain message lists.
//!
//! Also the shared pieces of every linear-transcript adapter (Claude Code, Codex,
//! SWE-agent, τ-bench): content blocks → [`Part`]s, OpenAI-style message lists → one step
//! per message, and the conservative "does this tool output show a failure" heuristic.
//!
//! Label fields shipped beside benchmark data (Who&When `mistake_*`, `labels`; MAST
//! `annotations`) are never read: [`LABEL_KEYS`] are skipped wherever attributes are
//! copied.

use std::path::Path;

use serde_json::Value;

use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_bool, as_f64, decode_json_string, str_of, string_of};
use crate::trace::model::{
    AttrMap, ErrorInfo, ErrorSource, Message, Part, Signal, Step, StepKind, StepStatus, ToolCall, ToolResult, Trace,
    Usage,
};
use crate::trace::read::{Pos, Records};

/// Benchmark label fields: answers, never evidence. Never copied anywhere.
pub(super) const LABEL_KEYS: [&str; 7] =
    ["mistake_agent", "mistake_step", "mistake_reason", "mistake_type", "labels", "annotations", "label"];

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// The object's fields except `skip` and the label keys, as raw attributes.
pub(super) fn attrs_except(v: &Value, skip: &[&str]) -> AttrMap {
    let mut out = AttrMap::new();
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            if skip.contains(&k.as_str()) || LABEL_KEYS.contains(&k.as_str()) {
                continue;
            }
            out.insert(k.clone(), val.clone());
        }
    }
    out
}

/// A fresh step.
pub(super) fn new_step(id: impl Into<String>, seq: usize, kind: StepKind) -> Step {
    Step { id: id.into(), seq: u32::try_from(seq).unwrap_or(u32::MAX), kind, ..Step::default() }
}

/// Mark a step failed with `error`.
pub(super) fn set_error(step: &mut Step, error: ErrorInfo) {
    step.status = StepStatus::Error;
    step.error = Some(error);
}

/// The file name without its trace extensions (`a/b/x.traj.json` → `x`).
pub(super) fn file_stem(path: &str) -> String {
    let name = Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path);
    let mut stem = name;
    for ext in [".gz", ".zst", ".json", ".jsonl", ".ndjson", ".traj"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    for ext in [".json", ".traj"] {
        stem = stem.strip_suffix(ext).unwrap_or(stem);
    }
    if stem.is_empty() { name.to_string() } else { stem.to_string() }
}

/// Content in any of the shapes seen in the wild → parts: a string, a list of strings,
/// Anthropic blocks (text, thinking, tool_use, tool_result, image), OpenAI parts
/// (text, input_text, output_text, image_url), Responses items (summary_text).
pub(super) fn parts_of(content: &Value) -> Vec<Part> {
    match content {
        Value::Null => Vec::new(),
        Value::String(s) => vec![Part::Text { text: s.clone() }],
        Value::Array(items) => items.iter().filter_map(block_part).collect(),
        Value::Object(_) => block_part(content).into_iter().collect(),
        other => vec![Part::Text { text: other.to_string() }],
    }
}

fn block_part(block: &Value) -> Option<Part> {
    let obj = match block {
        Value::String(s) => return Some(Part::Text { text: s.clone() }),
        Value::Null => return None,
        Value::Object(o) => o,
        other => {
            return Some(Part::Text { text: other.to_string() });
        }
    };
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
    Some(match ty {
        "text" | "input_text" | "output_text" | "summary_text" | "reasoning_text" | "" if obj.contains_key("text") => {
            Part::Text { text: text_value(obj.get("text").unwrap_or(&Value::Null)) }
        }
        "thinking" => Part::Reasoning { text: str_of(block, "thinking").map(str::to_string), redacted: false },
        "redacted_thinking" => Part::Reasoning { text: None, redacted: true },
        "reasoning" => Part::Reasoning {
            text: str_of(block, "text").or_else(|| str_of(block, "reasoning")).map(str::to_string),
            redacted: false,
        },
        "tool_use" | "server_tool_use" | "function_call" | "tool_call" => Part::ToolCall(ToolCall {
            id: string_of(block, "id").or_else(|| string_of(block, "call_id")),
            name: str_of(block, "name").unwrap_or("").to_string(),
            arguments: decode_json_string(
                block.get("input").or_else(|| block.get("arguments")).cloned().unwrap_or(Value::Null),
            ),
        }),
        "tool_result" | "function_call_output" | "tool_call_response" => Part::ToolResult(ToolResult {
            call_id: string_of(block, "tool_use_id").or_else(|| string_of(block, "call_id")),
            content: block
                .get("content")
                .or_else(|| block.get("output"))
                .or_else(|| block.get("response"))
                .cloned()
                .unwrap_or(Value::Null),
            is_error: block.get("is_error").and_then(as_bool),
            exit_code: None,
        }),
        "image" | "image_url" | "input_image" | "document" | "file" | "input_file" | "audio" | "input_audio" => {
            let modality = match ty {
                "document" | "file" | "input_file" => "document",
                "audio" | "input_audio" => "audio",
                _ => "image",
            };
            Part::Media {
                modality: modality.to_string(),
                mime: json::path(block, &["source", "media_type"]).and_then(Value::as_str).map(str::to_string),
                uri: json::path(block, &["image_url", "url"])
                    .or_else(|| block.get("image_url"))
                    .or_else(|| json::path(block, &["source", "url"]))
                    .and_then(Value::as_str)
                    .filter(|u| !u.starts_with("data:"))
                    .map(str::to_string),
            }
        }
        _ => Part::Other { kind: if ty.is_empty() { "unknown".into() } else { ty.to_string() }, raw: block.clone() },
    })
}

/// Text of a content value (strings as they are, block lists joined by newlines).
pub(super) fn text_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(_) | Value::Object(_) => {
            let msg = Message { parts: parts_of(v), ..Message::default() };
            let t = msg.joined_text();
            if t.is_empty() && !v.as_array().is_some_and(Vec::is_empty) { v.to_string() } else { t }
        }
        other => other.to_string(),
    }
}

/// A leading integer (`-1`, `127 (execution failed)`).
fn leading_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    s[..end].parse().ok()
}

/// An exit code written at the start of a tool output: `Exit code: N` (Codex),
/// `Exit code N` (Claude Code Bash), `exitcode: N (…)` (AG2), `<returncode>N</returncode>`
/// (mini-swe-agent), `The script ran, then exited with Unix exit code: N` (Magentic-One).
pub(super) fn exit_code_in(text: &str) -> Option<i64> {
    let t = text.trim_start();
    let t = t.strip_prefix("<tool_use_error>").unwrap_or(t).trim_start();
    for prefix in ["Exit code: ", "Exit code ", "exitcode: ", "exit code: ", "Exit Code: "] {
        if let Some(rest) = t.strip_prefix(prefix) {
            return leading_int(rest);
        }
    }
    if let Some(rest) = t.strip_prefix("<returncode>") {
        return leading_int(rest);
    }
    for marker in ["exited with Unix exit code: ", "The Unix exit code was: "] {
        if t.starts_with("The script ran") {
            if let Some(i) = t.find(marker) {
                return leading_int(&t[i + marker.len()..]);
            }
        }
    }
    None
}

/// The conservative "this tool output shows a failure" heuristic. A non-zero exit code
/// gives an [`ErrorSource::ExitCode`] error; a traceback, `<tool_use_error>`, an `Error:`
/// prefix, `command not found`, an HTTP 4xx/5xx status line give
/// [`ErrorSource::TextHeuristic`]. A normal result that merely mentions "error" is fine.
pub(super) fn text_error(text: &str) -> (Option<i64>, Option<ErrorInfo>) {
    let exit = exit_code_in(text);
    if let Some(code) = exit {
        if code != 0 {
            let mut e =
                ErrorInfo::new(ErrorSource::ExitCode).with_type("exit_code").with_message(json::clip(text.trim(), 500));
            e.code = Some(code.to_string());
            return (exit, Some(e));
        }
        return (exit, None);
    }
    (None, text_heuristic(text))
}

fn text_heuristic(text: &str) -> Option<ErrorInfo> {
    let t = text.trim();
    let heur = |ty: &str, msg: &str| {
        Some(ErrorInfo::new(ErrorSource::TextHeuristic).with_type(ty).with_message(json::clip(msg.trim(), 500)))
    };
    if let Some(rest) = t.strip_prefix("<tool_use_error>") {
        let inner = rest.split("</tool_use_error>").next().unwrap_or(rest);
        return heur("tool_use_error", inner);
    }
    if let Some(i) = t.find("Traceback (most recent call last):") {
        // The exception class is the first word of the last non-indented line.
        let tail = &t[i..];
        let last = tail
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with(' ') && !l.starts_with('\t'))
            .unwrap_or("");
        let class = last.split(':').next().unwrap_or("").trim();
        let is_class = !class.is_empty()
            && !class.contains(' ')
            && class.chars().next().is_some_and(char::is_alphabetic)
            && class != "Traceback (most recent call last)";
        return heur(if is_class { class } else { "traceback" }, last);
    }
    for prefix in ["Error:", "ERROR:", "error:", "Error -", "Error code: "] {
        if t.starts_with(prefix) {
            let first = t.lines().next().unwrap_or(t);
            return heur("error", first);
        }
    }
    for line in t.lines().take(5) {
        let l = line.trim_end();
        if l.ends_with(": command not found") || l.ends_with(": not found") && l.starts_with("sh:") {
            return heur("command_not_found", l);
        }
    }
    let first = t.lines().next().unwrap_or("");
    if let Some(code) = http_status(first) {
        if code >= 400 {
            return heur("http_error", first);
        }
    }
    None
}

/// `HTTP 503 …`, `HTTP/1.1 404 Not Found`, `HTTP Error 500: …` at the start of a line.
fn http_status(line: &str) -> Option<i64> {
    let rest = line
        .strip_prefix("HTTP Error ")
        .or_else(|| line.strip_prefix("HTTP/1.1 "))
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .or_else(|| line.strip_prefix("HTTP/2 "))
        .or_else(|| line.strip_prefix("HTTP "))?;
    let code = leading_int(rest)?;
    (100..600).contains(&code).then_some(code)
}

/// Tool calls of an OpenAI-style message: `tool_calls` as a list of
/// `{id, type: function, function: {name, arguments}}` or `{id, name, arguments}` (τ²),
/// a JSON or Python-repr string of that list (SWE-agent history), or a legacy
/// `function_call` object.
pub(super) fn tool_calls_of(msg: &Value) -> Vec<ToolCall> {
    let mut out = Vec::new();
    let raw = msg.get("tool_calls").cloned().unwrap_or(Value::Null);
    let list = match raw {
        Value::String(s) => {
            serde_json::from_str::<Value>(&s).ok().or_else(|| json::python_literal(&s)).unwrap_or(Value::Null)
        }
        other => other,
    };
    if let Some(items) = list.as_array() {
        for call in items {
            let func = call.get("function").filter(|f| f.is_object()).unwrap_or(call);
            let name = str_of(func, "name").or_else(|| str_of(call, "name")).unwrap_or("");
            let args = func
                .get("arguments")
                .or_else(|| call.get("arguments"))
                .or_else(|| call.get("input"))
                .cloned()
                .unwrap_or(Value::Null);
            out.push(ToolCall {
                id: string_of(call, "id").or_else(|| string_of(call, "call_id")),
                name: name.to_string(),
                arguments: decode_json_string(args),
            });
        }
    }
    if let Some(fc) = msg.get("function_call").filter(|f| f.is_object()) {
        out.push(ToolCall {
            id: None,
            name: str_of(fc, "name").unwrap_or("").to_string(),
            arguments: decode_json_string(fc.get("arguments").cloned().unwrap_or(Value::Null)),
        });
    }
    out
}

/// OpenAI / Anthropic usage objects (`prompt_tokens`/`completion_tokens` or
/// `input_tokens`/`output_tokens`, cached and reasoning details).
pub(super) fn usage_of(u: &Value) -> Usage {
    let get = |keys: &[&[&str]]| keys.iter().find_map(|k| json::path(u, k).and_then(json::as_u64));
    Usage {
        input_tokens: get(&[&["input_tokens"], &["prompt_tokens"], &["tokens_sent"]]),
        output_tokens: get(&[&["output_tokens"], &["completion_tokens"], &["tokens_received"]]),
        total_tokens: get(&[&["total_tokens"]]),
        cache_read_tokens: get(&[
            &["cache_read_input_tokens"],
            &["cached_input_tokens"],
            &["prompt_tokens_details", "cached_tokens"],
            &["input_tokens_details", "cached_tokens"],
        ]),
        reasoning_tokens: get(&[
            &["reasoning_output_tokens"],
            &["completion_tokens_details", "reasoning_tokens"],
            &["output_tokens_details", "reasoning_tokens"],
        ]),
    }
}

/// How a message list should be read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ListMode {
    /// Plain OpenAI-style chat: `user` is the user.
    Chat,
    /// Multi-agent history (Who&When): `name`/`role` is the speaking agent; `user` with a
    /// name is an agent, terminals are tools.
    History,
}

/// Is this speaker a code-execution terminal (AG2 `Computer_terminal`, Magentic-One
/// `ComputerTerminal`)?
fn is_terminal_speaker(base: &str) -> bool {
    let b = base.to_ascii_lowercase();
    b.contains("terminal") || b == "executor" || b == "code_executor"
}

/// Chat roles as APIs spell them (lowercase); `Assistant` is a Magentic-One agent.
fn is_plain_role(role: &str) -> bool {
    matches!(role, "system" | "user" | "assistant" | "tool" | "function" | "developer" | "")
}

/// The agent part of a speaker label: `Orchestrator (thought)` → `Orchestrator`.
pub(super) fn speaker_base(speaker: &str) -> &str {
    speaker.split(" (").next().unwrap_or(speaker).trim()
}

const MESSAGE_KEYS: [&str; 8] =
    ["role", "content", "name", "tool_calls", "tool_call_id", "function_call", "parts", "id"];

/// Append one step per message of an OpenAI-style list (ids `msg:<i>`, `i` = the
/// 0-based position in `msgs`), and every message to the transcript. Assistant tool
/// calls are joined to their `role: tool` results by `tool_call_id` (or by name, in
/// order, when the result carries no id); calls never answered become Tool steps
/// `call:<id>` of their own.
pub(super) fn push_messages(trace: &mut Trace, msgs: &[Value], mode: ListMode) {
    let mut pending: Vec<(ToolCall, String)> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let seq = trace.steps.len();
        let id = format!("msg:{i}");
        if !m.is_object() {
            let mut step = new_step(id, seq, StepKind::Other);
            step.output = Some(m.clone());
            trace.steps.push(step);
            continue;
        }
        let role = str_of(m, "role").or_else(|| str_of(m, "type")).or_else(|| str_of(m, "sender")).unwrap_or("");
        let name = str_of(m, "name");
        let content = m.get("content").or_else(|| m.get("parts")).unwrap_or(&Value::Null);
        let calls = tool_calls_of(m);
        let role_l = role.to_ascii_lowercase();
        let speaker = if mode == ListMode::History { name.unwrap_or(role) } else { role };
        let base = speaker_base(speaker);
        let text = text_value(content);
        let kind = if matches!(role_l.as_str(), "tool" | "function" | "ipython" | "observation") {
            StepKind::Tool
        } else if matches!(role_l.as_str(), "system" | "developer") {
            StepKind::System
        } else if mode == ListMode::History && (is_terminal_speaker(base) || text.starts_with("exitcode:")) {
            StepKind::Tool
        } else if role_l == "human" || (role_l == "user" && (mode == ListMode::Chat || name.is_none())) {
            StepKind::User
        } else if matches!(role_l.as_str(), "assistant" | "ai" | "model" | "bot") || mode == ListMode::History {
            StepKind::Llm
        } else {
            StepKind::Other
        };
        if kind != StepKind::Tool {
            flush_pending(trace, &mut pending);
        }
        let seq = trace.steps.len();
        let mut parts = if kind == StepKind::Tool { Vec::new() } else { parts_of(content) };
        parts.extend(calls.iter().cloned().map(Part::ToolCall));
        let mut step = new_step(id, seq, kind);
        step.attributes = attrs_except(m, &MESSAGE_KEYS);
        if let Some(id) = string_of(m, "id") {
            step.attributes.insert("message_id".into(), Value::String(id));
        }
        match mode {
            ListMode::History => {
                // A speaker is an agent name (`name`, or a role like `Orchestrator (thought)`);
                // plain chat roles are not agents.
                if name.is_some() || !is_plain_role(role) {
                    step.agent = Some(base.to_string()).filter(|b| !b.is_empty());
                    step.name = Some(speaker.to_string()).filter(|s| !s.is_empty());
                }
            }
            // A tool message's `name` is the tool, not an agent.
            ListMode::Chat if kind != StepKind::Tool => step.agent = name.map(str::to_string),
            ListMode::Chat => {}
        }
        step.start = m.get("timestamp").and_then(json::parse_time);
        if let Some(u) = m.get("usage").filter(|u| u.is_object()) {
            step.usage = usage_of(u);
        }
        step.cost_usd = m.get("cost").and_then(as_f64);
        if kind == StepKind::Tool {
            let call_id =
                string_of(m, "tool_call_id").or_else(|| if role_l == "tool" { string_of(m, "id") } else { None });
            let call = take_pending(&mut pending, call_id.as_deref(), name);
            let (exit_code, heuristic) = text_error(&text);
            let flag = m.get("error").and_then(as_bool).or_else(|| m.get("is_error").and_then(as_bool));
            let result = ToolResult {
                call_id: call_id.clone().or_else(|| call.as_ref().and_then(|(c, _)| c.id.clone())),
                content: content.clone(),
                is_error: flag,
                exit_code,
            };
            parts.push(Part::ToolResult(result.clone()));
            step.name = call
                .as_ref()
                .map(|(c, _)| c.name.clone())
                .filter(|n| !n.is_empty())
                .or_else(|| name.map(str::to_string))
                .or(step.name.take());
            if let Some((c, llm_id)) = call {
                step.attributes.insert("called_by".into(), Value::String(llm_id));
                step.tool_call = Some(c);
            }
            step.tool_result = Some(result);
            if flag == Some(true) {
                set_error(
                    &mut step,
                    ErrorInfo::new(ErrorSource::ToolResultFlag).with_message(json::clip(text.trim(), 500)),
                );
            } else if let Some(e) = heuristic {
                set_error(&mut step, e);
            }
        }
        let msg = Message {
            role: if role.is_empty() { "unknown".into() } else { role.to_string() },
            name: name.map(str::to_string),
            parts,
            finish_reason: str_of(m, "finish_reason").map(str::to_string),
        };
        let t = trace.transcript.len() as u32;
        step.transcript_range = Some((t, t + 1));
        if kind != StepKind::Tool {
            step.output_messages = vec![msg.clone()];
        }
        trace.transcript.push(msg);
        let step_id = step.id.clone();
        trace.steps.push(step);
        for c in calls {
            pending.push((c, step_id.clone()));
        }
    }
    flush_pending(trace, &mut pending);
}

fn take_pending(
    pending: &mut Vec<(ToolCall, String)>,
    call_id: Option<&str>,
    name: Option<&str>,
) -> Option<(ToolCall, String)> {
    let pos = match call_id {
        Some(id) => pending.iter().position(|(c, _)| c.id.as_deref() == Some(id)),
        None => None,
    }
    .or_else(|| name.and_then(|n| pending.iter().position(|(c, _)| c.name == n)))
    .or_else(|| (call_id.is_none() && pending.len() == 1).then_some(0))?;
    Some(pending.remove(pos))
}

/// Calls nobody answered become Tool steps of their own (no result).
fn flush_pending(trace: &mut Trace, pending: &mut Vec<(ToolCall, String)>) {
    for (call, llm_id) in pending.drain(..) {
        let seq = trace.steps.len();
        let id = match &call.id {
            Some(id) => format!("call:{id}"),
            None => format!("call:{seq}"),
        };
        let mut step = new_step(id, seq, StepKind::Tool);
        step.name = Some(call.name.clone()).filter(|n| !n.is_empty());
        step.attributes.insert("called_by".into(), Value::String(llm_id.clone()));
        step.attributes.insert("unanswered".into(), Value::Bool(true));
        if let Some(r) = trace.steps.iter().find(|s| s.id == llm_id).and_then(|s| s.transcript_range) {
            step.transcript_range = Some(r);
        }
        step.tool_call = Some(call);
        trace.steps.push(step);
    }
}

/// The first user message's text in a transcript.
pub(super) fn first_user_text(trace: &Trace) -> Option<String> {
    trace
        .steps
        .iter()
        .find(|s| s.kind == StepKind::User)
        .and_then(|s| s.output_messages.first())
        .map(Message::joined_text)
        .filter(|t| !t.trim().is_empty())
}

// ---------------------------------------------------------------------------------------
// Adapters
// ---------------------------------------------------------------------------------------

/// Keys of a history record that are mapped, not copied.
const HISTORY_KEYS: [&str; 5] = ["history", "messages", "question", "is_correct", "is_corrected"];

/// Multi-agent chat logs: Who&When (`history` + `question` + `is_correct`), and generic
/// `{"messages": […]}` objects. One trace per record.
pub fn parse_history(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let stem = trace_base_id(ctx.path);
    let mut n = 0usize;
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        let v = &rec.value;
        let (msgs, mode) =
            match (v.get("history").and_then(Value::as_array), v.get("messages").and_then(Value::as_array)) {
                (Some(h), _) => (h, ListMode::History),
                (None, Some(m)) => (m, ListMode::Chat),
                _ => {
                    ctx.warn(rec.pos, format!("not a chat log record: {}", json::keys_of(v)));
                    continue;
                }
            };
        let id = string_of(v, "id")
            .or_else(|| string_of(v, "trace_id"))
            .or_else(|| string_of(v, "session_id"))
            .unwrap_or_else(|| if n == 0 { stem.clone() } else { format!("{stem}#{n}") });
        n += 1;
        let mut trace = ctx.trace(Format::ChatHistory, id, rec.pos);
        trace.attributes = attrs_except(v, &HISTORY_KEYS);
        push_messages(&mut trace, msgs, mode);
        trace.task = v
            .get("question")
            .or_else(|| v.get("task"))
            .or_else(|| v.get("instruction"))
            .filter(|q| !q.is_null())
            .cloned()
            .or_else(|| first_user_text(&trace).map(Value::String));
        for key in ["is_correct", "is_corrected"] {
            if let Some(ok) = v.get(key).and_then(as_bool) {
                trace.signals.push(Signal::new("is_correct", ok, format!("{key} = {ok}")));
                break;
            }
        }
        if let Some(r) = v.get("reward").and_then(as_f64) {
            trace.signals.push(Signal::new("reward", r >= 1.0, format!("reward = {r}")));
        }
        sink(trace);
    }
    Ok(())
}

/// The trace id base for a file: `<parent dir>/<stem>` (Who&When ids are only unique
/// per folder: `Hand-Crafted/5` and `Algorithm-Generated/5` are different runs).
fn trace_base_id(path: &str) -> String {
    let stem = file_stem(path);
    match Path::new(path).parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
        Some(dir) if !dir.is_empty() && dir != "." => format!("{dir}/{stem}"),
        _ => stem,
    }
}

/// MAST/MAD-style records: `{trace_id, trace: <text>, mas_name, benchmark_name, …}` →
/// one trace per record with one System step holding the text.
pub fn parse_text_log(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let stem = file_stem(ctx.path);
    for (n, item) in records.enumerate() {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        let v = &rec.value;
        let Some(text) = v.get("trace").and_then(Value::as_str) else {
            ctx.warn(rec.pos, format!("no `trace` text in this record: {}", json::keys_of(v)));
            continue;
        };
        let id = string_of(v, "trace_id").or_else(|| string_of(v, "id")).unwrap_or_else(|| format!("{stem}#{n}"));
        let mut trace = ctx.trace(Format::TextLog, id, rec.pos);
        trace.attributes = attrs_except(v, &["trace"]);
        trace.name = str_of(v, "mas_name").map(str::to_string);
        let mut step = new_step("log", 0, StepKind::System);
        step.name = Some("log".into());
        step.output = Some(Value::String(text.to_string()));
        step.transcript_range = Some((0, 1));
        let msg = Message::text("system", text);
        step.output_messages = vec![msg.clone()];
        trace.transcript.push(msg);
        trace.steps.push(step);
        sink(trace);
    }
    Ok(())
}

/// A plain message list: a JSON array of messages or JSONL one message per line → one
/// trace. A record that is itself an array of messages is a conversation of its own.
pub fn parse_messages(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let stem = file_stem(ctx.path);
    let mut msgs: Vec<Value> = Vec::new();
    let mut first_pos: Option<Pos> = None;
    let mut n = 0usize;
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        match rec.value {
            Value::Array(list) => {
                let id = format!("{stem}#{n}");
                n += 1;
                let mut trace = ctx.trace(Format::Messages, id, rec.pos);
                push_messages(&mut trace, &list, ListMode::Chat);
                trace.task = first_user_text(&trace).map(Value::String);
                sink(trace);
            }
            Value::Object(_) => {
                first_pos.get_or_insert(rec.pos);
                msgs.push(rec.value);
            }
            other => ctx.warn(rec.pos, format!("not a message: {}", json::keys_of(&other))),
        }
    }
    if let Some(pos) = first_pos {
        let mut trace = ctx.trace(Format::Messages, stem, pos);
        push_messages(&mut trace, &msgs, ListMode::Chat);
        trace.task = first_user_text(&trace).map(Value::String);
        sink(trace);
    }
    Ok(())
}

/// The first of `keys` that holds a scalar, as a string (ids given as ints or strings).
pub(super) fn string_of_any(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| string_of(v, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(
        f: fn(&mut Records, &mut FileCtx<'_>, &mut Sink<'_>) -> Result<(), ParseError>,
        path: &str,
        values: Vec<Value>,
    ) -> (Vec<Trace>, usize) {
        let mut records = Records::from_values(values);
        let mut ctx = FileCtx::new(path);
        let mut out = Vec::new();
        f(&mut records, &mut ctx, &mut |t| out.push(t)).unwrap();
        (out, ctx.warnings.len())
    }

    #[test]
    fn exit_codes_and_heuristics() {
        assert_eq!(exit_code_in("Exit code: 2\nWall time: 1s"), Some(2));
        assert_eq!(exit_code_in("exitcode: 127 (execution failed)"), Some(127));
        assert_eq!(exit_code_in("<returncode>1</returncode>\n<output>"), Some(1));
        assert_eq!(exit_code_in("The script ran, then exited with Unix exit code: 3\nIts output"), Some(3));
        assert_eq!(exit_code_in("all good"), None);
        let (code, err) = text_error("Exit code 1\nboom");
        assert_eq!(code, Some(1));
        assert_eq!(err.unwrap().source, Some(ErrorSource::ExitCode));
        assert!(text_error("Exit code: 0\nok").1.is_none());
        let e = text_error("Traceback (most recent call last):\n  File \"x\", line 1\nValueError: bad").1.unwrap();
        assert_eq!(e.r#type.as_deref(), Some("ValueError"));
        assert_eq!(text_error("Error: user not found").1.unwrap().source, Some(ErrorSource::TextHeuristic));
        assert!(text_error("bash: foo: command not found").1.is_some());
        assert!(text_error("HTTP 503 Service Unavailable").1.is_some());
        // Mentions of "error" in a normal result are not errors.
        assert!(text_error("Found 3 matches for \"error\" in src/").1.is_none());
        assert!(text_error("no errors found").1.is_none());
    }

    #[test]
    fn who_and_when_shape() {
        let rec = json!({
            "question": "Q?", "ground_truth": "42", "is_correct": false, "question_ID": "abc",
            "mistake_agent": "X", "mistake_step": "1", "mistake_reason": "r",
            "history": [
                {"role": "assistant", "name": "Planner_Expert", "content": "plan"},
                {"role": "user", "name": "Computer_terminal", "content": "exitcode: 1 (execution failed)\nCode output: boom"},
                {"role": "user", "name": "Verification_Expert", "content": "TERMINATE"}
            ]
        });
        let (traces, _) = run(parse_history, "who/Algorithm-Generated/7.json", vec![rec]);
        let t = &traces[0];
        assert_eq!(t.id, "Algorithm-Generated/7");
        assert_eq!(t.steps.len(), 3);
        assert_eq!(t.steps[0].kind, StepKind::Llm);
        assert_eq!(t.steps[1].kind, StepKind::Tool);
        assert_eq!(t.steps[1].tool_result.as_ref().unwrap().exit_code, Some(1));
        assert_eq!(t.steps[2].kind, StepKind::Llm);
        assert_eq!(t.steps[2].agent.as_deref(), Some("Verification_Expert"));
        assert_eq!(t.task, Some(json!("Q?")));
        assert_eq!(t.attributes["ground_truth"], json!("42"));
        for k in LABEL_KEYS {
            assert!(!t.attributes.contains_key(k));
        }
        assert!(!serde_json::to_string(t).unwrap().contains("mistake"));
        assert!(!t.signals[0].passed);
    }

    #[test]
    fn hand_crafted_speakers() {
        let rec = json!({"question": "q", "is_corrected": false, "history": [
            {"role": "human", "content": "q"},
            {"role": "Orchestrator (thought)", "content": "think"},
            {"role": "Orchestrator (-> ComputerTerminal)", "content": "run it"},
            {"role": "ComputerTerminal", "content": "The script ran, then exited with Unix exit code: 0\nIts output was:\nok"}
        ]});
        let (traces, _) = run(parse_history, "5.json", vec![rec]);
        let s = &traces[0].steps;
        assert_eq!(s[0].kind, StepKind::User);
        assert_eq!(s[1].agent.as_deref(), Some("Orchestrator"));
        assert_eq!(s[1].name.as_deref(), Some("Orchestrator (thought)"));
        assert_eq!(s[2].kind, StepKind::Llm);
        assert_eq!(s[3].kind, StepKind::Tool);
        assert!(s[3].error.is_none());
        assert_eq!(s[3].id, "msg:3");
    }

    #[test]
    fn messages_join_tool_calls() {
        let msgs = vec![
            json!({"role": "user", "content": "hi"}),
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}, {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]}),
            json!({"role": "tool", "tool_call_id": "c1", "content": "Error: nope"}),
            json!({"role": "assistant", "content": "done"}),
            json!(7),
        ];
        let (traces, warnings) = run(parse_messages, "m.jsonl", msgs);
        let t = &traces[0];
        assert_eq!(t.id, "m");
        let tool = &t.steps[2];
        assert_eq!(tool.tool_call.as_ref().unwrap().arguments, json!({"a": 1}));
        assert_eq!(tool.error.as_ref().unwrap().source, Some(ErrorSource::TextHeuristic));
        // c2 was never answered: a step of its own, before the next assistant message.
        assert_eq!(t.steps[3].id, "call:c2");
        assert_eq!(t.steps[4].id, "msg:3");
        assert_eq!(t.steps.len(), 5);
        assert_eq!(warnings, 1);
        assert_eq!(t.task, Some(json!("hi")));
    }

    #[test]
    fn text_log_and_junk() {
        let (traces, warnings) = run(
            parse_text_log,
            "mad.json",
            vec![
                json!({"trace_id": 3, "trace": "log text", "mas_name": "AG2", "annotations": [{"x": 1}]}),
                json!({"x": 1}),
                json!(null),
            ],
        );
        assert_eq!(traces.len(), 1);
        assert_eq!(warnings, 2);
        assert_eq!(traces[0].id, "3");
        assert!(!traces[0].attributes.contains_key("annotations"));
        assert_eq!(traces[0].steps[0].output, Some(json!("log text")));
        let (traces, warnings) = run(parse_history, "x.json", vec![json!([1, 2]), json!({"history": "nope"})]);
        assert!(traces.is_empty());
        assert_eq!(warnings, 2);
    }
}

#[cfg(test)]
mod fuzz {
    //! Random JSON built from the keys these adapters read, fed to every adapter of this
    //! family: none may panic.
    use super::super::{claude_code, codex, swe_agent, tau_bench};
    use super::*;
    use serde_json::{Map, json};

    const KEYS: [&str; 48] = [
        "type",
        "role",
        "content",
        "message",
        "id",
        "sessionId",
        "session_id",
        "uuid",
        "text",
        "tool_use_id",
        "is_error",
        "name",
        "input",
        "tool_calls",
        "function",
        "arguments",
        "tool_call_id",
        "payload",
        "call_id",
        "output",
        "info",
        "exit_status",
        "model_stats",
        "trajectory",
        "history",
        "messages",
        "action",
        "observation",
        "traj",
        "reward",
        "task_id",
        "trial",
        "simulations",
        "usage",
        "subtype",
        "attachment",
        "summary",
        "isSidechain",
        "timestamp",
        "error",
        "loglines",
        "trace",
        "question",
        "is_correct",
        "instance_id",
        "result",
        "stop_reason",
        "task",
    ];
    const WORDS: [&str; 16] = [
        "user",
        "assistant",
        "tool",
        "system",
        "tool_use",
        "tool_result",
        "text",
        "function_call",
        "function_call_output",
        "event_msg",
        "response_item",
        "token_count",
        "result",
        "success",
        "Exit code: 1",
        "<returncode>",
    ];

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn value(r: &mut Rng, depth: u32) -> Value {
        match if depth > 4 { r.below(5) } else { r.below(8) } {
            0 => Value::Null,
            1 => json!(r.below(3) == 0),
            2 => json!(r.below(100) as i64 - 5),
            3 => json!(WORDS[r.below(WORDS.len() as u64) as usize]),
            4 => json!("é🎉\u{0}x"),
            5 | 6 => {
                let mut m = Map::new();
                for _ in 0..r.below(6) {
                    m.insert(KEYS[r.below(KEYS.len() as u64) as usize].into(), value(r, depth + 1));
                }
                Value::Object(m)
            }
            _ => Value::Array((0..r.below(4)).map(|_| value(r, depth + 1)).collect()),
        }
    }

    #[test]
    fn adapters_survive_random_json() {
        type F = fn(&mut Records, &mut FileCtx<'_>, &mut Sink<'_>) -> Result<(), ParseError>;
        let adapters: [F; 10] = [
            claude_code::parse,
            claude_code::parse_stream_json,
            codex::parse,
            swe_agent::parse,
            swe_agent::parse_mini,
            tau_bench::parse,
            parse_history,
            parse_text_log,
            parse_messages,
            parse_messages,
        ];
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..3000 {
            let values: Vec<Value> = (0..1 + r.below(5)).map(|_| value(&mut r, 0)).collect();
            let f = adapters[round % adapters.len()];
            let mut records = Records::from_values(values);
            let mut ctx = FileCtx::new("/nonexistent/fuzz.json");
            let mut n = 0;
            f(&mut records, &mut ctx, &mut |mut t| {
                t.fill_totals();
                crate::trace::outcome::derive(&mut t);
                n += t.steps.len();
            })
            .unwrap();
        }
    }
}
