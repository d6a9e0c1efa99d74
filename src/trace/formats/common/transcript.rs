//! What every linear-transcript adapter shares (chat histories, Claude Code, Codex,
//! SWE-agent, τ-bench, ATIF, plain text): content blocks → [`Part`]s, OpenAI-style message
//! lists → one step per message, and the conservative "does this tool output show a
//! failure" heuristic.
//!
//! Label fields shipped beside benchmark data (Who&When `mistake_*`, `labels`; MAST
//! `annotations`) are never read: [`LABEL_KEYS`] are skipped wherever attributes are
//! copied.

use std::path::Path;

use serde_json::Value;

use crate::trace::json::{self, as_bool, as_f64, decode_json_string, str_of, string_of};
use crate::trace::model::{
    AttrMap, ErrorInfo, ErrorSource, Message, Part, Step, StepKind, StepStatus, ToolCall, ToolResult, Trace, Usage,
};

/// Benchmark label fields: answers, never evidence. Never copied anywhere.
pub(crate) const LABEL_KEYS: [&str; 7] =
    ["mistake_agent", "mistake_step", "mistake_reason", "mistake_type", "labels", "annotations", "label"];

/// The object's fields except `skip` and the label keys, as raw attributes.
pub(crate) fn attrs_except(v: &Value, skip: &[&str]) -> AttrMap {
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
pub(crate) fn new_step(id: impl Into<String>, seq: usize, kind: StepKind) -> Step {
    Step { id: id.into(), seq: u32::try_from(seq).unwrap_or(u32::MAX), kind, ..Step::default() }
}

/// Mark a step failed with `error`.
pub(crate) fn set_error(step: &mut Step, error: ErrorInfo) {
    step.status = StepStatus::Error;
    step.error = Some(error);
}

/// The file name without its trace extensions (`a/b/x.traj.json` → `x`).
pub(crate) fn file_stem(path: &str) -> String {
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
pub(crate) fn parts_of(content: &Value) -> Vec<Part> {
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
pub(crate) fn text_value(v: &Value) -> String {
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
pub(crate) fn exit_code_in(text: &str) -> Option<i64> {
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
pub(crate) fn text_error(text: &str) -> (Option<i64>, Option<ErrorInfo>) {
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
pub(crate) fn tool_calls_of(msg: &Value) -> Vec<ToolCall> {
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
pub(crate) fn usage_of(u: &Value) -> Usage {
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
pub(crate) enum ListMode {
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
pub(crate) fn speaker_base(speaker: &str) -> &str {
    speaker.split(" (").next().unwrap_or(speaker).trim()
}

const MESSAGE_KEYS: [&str; 8] =
    ["role", "content", "name", "tool_calls", "tool_call_id", "function_call", "parts", "id"];

/// Append one step per message of an OpenAI-style list (ids `msg:<i>`, `i` = the
/// 0-based position in `msgs`), and every message to the transcript. Assistant tool
/// calls are joined to their `role: tool` results by `tool_call_id` (or by name, in
/// order, when the result carries no id); calls never answered become Tool steps
/// `call:<id>` of their own.
pub(crate) fn push_messages(trace: &mut Trace, msgs: &[Value], mode: ListMode) {
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
pub(crate) fn first_user_text(trace: &Trace) -> Option<String> {
    trace
        .steps
        .iter()
        .find(|s| s.kind == StepKind::User)
        .and_then(|s| s.output_messages.first())
        .map(Message::joined_text)
        .filter(|t| !t.trim().is_empty())
}

/// The first of `keys` that holds a scalar, as a string (ids given as ints or strings).
pub(crate) fn string_of_any(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| string_of(v, k))
}
