//! What the LangSmith, Langfuse and OpenAI Agents adapters share: chat messages in the
//! many shapes these platforms store, token usage under its many names, error strings.

use serde_json::Value;

use crate::trace::json::{self, as_u64, python_literal, str_of, string_of};
use crate::trace::model::{AttrMap, ErrorInfo, ErrorSource, Message, Nanos, Part, Step, ToolCall, ToolResult, Usage};

const MAX_DEPTH: u32 = 12;

/// A value that may hold JSON (or a Python repr) inside a string, possibly encoded
/// twice (Langfuse trace `input`): decoded as far as it goes.
pub(crate) fn decode_deep(v: &Value) -> Value {
    let Value::String(_) = v else {
        return v.clone();
    };
    let mut cur = v.clone();
    for _ in 0..3 {
        let Value::String(s) = &cur else { break };
        let t = s.trim();
        let next = if t.starts_with('{') || t.starts_with('[') {
            serde_json::from_str::<Value>(t).ok().or_else(|| python_literal(t))
        } else if t.starts_with('"') {
            serde_json::from_str::<Value>(t).ok().filter(Value::is_string)
        } else {
            None
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur
}

/// Chat messages from an input or output value: OpenAI chat (dicts, `choices`),
/// Anthropic content blocks, GenAI semconv `parts`, Gemini `contents`/`parts`, the
/// Responses API `output` items, LangChain serialized messages and `generations`,
/// Vercel AI SDK tool-call lists, nested `[[…]]` batches and plain strings.
pub(crate) fn messages_from(v: &Value, default_role: &str) -> Vec<Message> {
    let v = decode_deep(v);
    let mut out = Vec::new();
    collect(&v, default_role, 0, &mut out);
    out
}

fn collect(v: &Value, role: &str, depth: u32, out: &mut Vec<Message>) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::String(s) if !s.is_empty() => out.push(Message::text(role, s.clone())),
        Value::Array(items) => {
            let vercel_calls = !items.is_empty()
                && items
                    .iter()
                    .all(|i| has(i, "toolCallId") && has(i, "toolName") && !has(i, "role") && !has(i, "type"));
            if vercel_calls {
                let parts = items.iter().filter_map(part_from).collect();
                out.push(Message { role: role.to_string(), parts, ..Message::default() });
                return;
            }
            for item in items {
                collect(item, role, depth + 1, out);
            }
        }
        Value::Object(o) => {
            if let Some(m) = o.get("messages").filter(|m| m.is_array() || m.is_string()) {
                return collect(&decode_deep(m), role, depth + 1, out);
            }
            if let Some(Value::Array(choices)) = o.get("choices") {
                for c in choices {
                    let finish = string_of(c, "finish_reason");
                    let msg = match c.get("message").or_else(|| c.get("delta")) {
                        Some(m) => message_from(m, "assistant"),
                        None => str_of(c, "text").map(|t| Message::text("assistant", t)),
                    };
                    if let Some(mut msg) = msg {
                        if msg.finish_reason.is_none() {
                            msg.finish_reason = finish;
                        }
                        out.push(msg);
                    }
                }
                return;
            }
            if let Some(gens) = o.get("generations") {
                let mut flat = Vec::new();
                flatten(gens, 0, &mut flat);
                for g in flat {
                    let finish = json::path(g, &["generation_info", "finish_reason"]).and_then(json::scalar_string);
                    let msg = match g.get("message") {
                        Some(m) => message_from(m, "assistant"),
                        None => str_of(g, "text").map(|t| Message::text("assistant", t)),
                    };
                    if let Some(mut msg) = msg {
                        if msg.finish_reason.is_none() {
                            msg.finish_reason = finish;
                        }
                        out.push(msg);
                    }
                }
                return;
            }
            if let Some(Value::Array(items)) = o.get("output") {
                if items.first().is_some_and(|i| has(i, "type")) {
                    let before = out.len();
                    for item in items {
                        collect(item, "assistant", depth + 1, out);
                    }
                    // Responses API output: stop reason on the last message.
                    let added = out.len() > before;
                    if let (Some(last), Some(status)) = (out.last_mut(), str_of(v, "status")) {
                        if added && last.finish_reason.is_none() && status != "completed" {
                            last.finish_reason = Some(status.to_string());
                        }
                    }
                    return;
                }
            }
            if let Some(Value::Array(cands)) = o.get("candidates") {
                for c in cands {
                    if let Some(mut msg) = c.get("content").and_then(|m| message_from(m, "assistant")) {
                        msg.finish_reason = string_of(c, "finishReason").or_else(|| string_of(c, "finish_reason"));
                        out.push(msg);
                    }
                }
                return;
            }
            if let Some(Value::Array(contents)) = o.get("contents") {
                let system = json::path(v, &["config", "system_instruction"])
                    .or_else(|| json::path(v, &["config", "systemInstruction"]))
                    .or_else(|| o.get("system_instruction"));
                if let Some(sys) = system {
                    match sys {
                        Value::String(s) if !s.is_empty() => out.push(Message::text("system", s.clone())),
                        Value::Object(_) => out.extend(message_from(sys, "system")),
                        _ => {}
                    }
                }
                for c in contents {
                    collect(c, "user", depth + 1, out);
                }
                return;
            }
            if let Some(content @ Value::Object(_)) = o.get("content") {
                if has(content, "parts") {
                    if let Some(mut msg) = message_from(content, role) {
                        msg.finish_reason = string_of(v, "finish_reason");
                        out.push(msg);
                    }
                    return;
                }
            }
            if let Some(Value::Array(prompts)) = o.get("prompts") {
                for p in prompts {
                    collect(p, role, depth + 1, out);
                }
                return;
            }
            if !has(v, "role") && !has(v, "content") {
                if let Some(m @ Value::Object(_)) = o.get("message") {
                    out.extend(message_from(m, role));
                    return;
                }
            }
            out.extend(message_from(v, role));
        }
        _ => {}
    }
}

fn flatten<'a>(v: &'a Value, depth: u32, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) if depth < MAX_DEPTH => {
            for i in items {
                flatten(i, depth + 1, out);
            }
        }
        Value::Object(_) => out.push(v),
        _ => {}
    }
}

fn has(v: &Value, key: &str) -> bool {
    v.get(key).is_some()
}

pub(crate) fn norm_role(role: &str) -> String {
    match role.to_ascii_lowercase().as_str() {
        "human" => "user".into(),
        "ai" | "model" | "bot" => "assistant".into(),
        "function" => "tool".into(),
        other => other.to_string(),
    }
}

fn lc_role(class: &str) -> Option<&'static str> {
    let class = class.trim_end_matches("Chunk");
    Some(match class {
        "HumanMessage" => "user",
        "AIMessage" => "assistant",
        "SystemMessage" => "system",
        "ToolMessage" | "FunctionMessage" => "tool",
        _ => return None,
    })
}

/// One message object in any of the supported shapes.
pub(crate) fn message_from(v: &Value, default_role: &str) -> Option<Message> {
    let o = v.as_object()?;
    // LangChain serialized: {"lc":1,"type":"constructor","id":[…,"HumanMessage"],"kwargs":{…}}.
    if o.contains_key("lc") {
        let kwargs = o.get("kwargs").filter(|k| k.is_object())?;
        let class = o.get("id").and_then(Value::as_array).and_then(|a| a.last()).and_then(Value::as_str);
        let role = class
            .and_then(lc_role)
            .map(str::to_string)
            .or_else(|| str_of(kwargs, "role").map(norm_role))
            .unwrap_or_else(|| default_role.to_string());
        return body(kwargs, role, true);
    }
    match str_of(v, "type") {
        Some("function_call" | "custom_tool_call" | "tool_call" | "tool-call" | "tool_use") if !has(v, "role") => {
            let part = part_from(v)?;
            return Some(Message { role: "assistant".into(), parts: vec![part], ..Message::default() });
        }
        Some("function_call_output" | "custom_tool_call_output" | "tool_result" | "tool-result") if !has(v, "role") => {
            let part = part_from(v)?;
            return Some(Message { role: "tool".into(), parts: vec![part], ..Message::default() });
        }
        Some("reasoning") if !has(v, "role") => {
            let part = part_from(v)?;
            return Some(Message { role: "assistant".into(), parts: vec![part], ..Message::default() });
        }
        // LangChain `message_to_dict`: {"type":"human","data":{…}} or a flat dict with `type`.
        Some(t @ ("human" | "ai" | "system" | "tool" | "function" | "chat" | "AIMessageChunk")) if !has(v, "role") => {
            let role = norm_role(if t == "AIMessageChunk" { "ai" } else { t });
            let data = o.get("data").filter(|d| d.is_object()).unwrap_or(v);
            let role = if t == "chat" { str_of(data, "role").map(norm_role).unwrap_or(role) } else { role };
            return body(data, role, true);
        }
        _ => {}
    }
    if has(v, "toolCallId") && has(v, "toolName") && !has(v, "role") {
        let part = part_from(v)?;
        let role = if matches!(part, Part::ToolResult(_)) { "tool" } else { default_role };
        return Some(Message { role: role.into(), parts: vec![part], ..Message::default() });
    }
    let explicit = str_of(v, "role").map(norm_role);
    let has_role = explicit.is_some();
    // `{"content": "…"}` with no role says nothing about who spoke: not a message.
    if !has_role && v.get("content").is_some_and(Value::is_string) && !has(v, "tool_calls") {
        return None;
    }
    body(v, explicit.unwrap_or_else(|| default_role.to_string()), has_role)
}

fn body(v: &Value, role: String, has_role: bool) -> Option<Message> {
    let mut parts = Vec::new();
    if let Some(c) = v.get("content") {
        content_parts(c, &mut parts);
    }
    if let Some(p) = v.get("parts") {
        content_parts(p, &mut parts);
    }
    if parts.is_empty() {
        if let Some(t) = str_of(v, "text") {
            parts.push(Part::Text { text: t.to_string() });
        }
    }
    let mut calls = tool_calls(v.get("tool_calls"));
    if calls.is_empty() {
        calls = tool_calls(json::path(v, &["additional_kwargs", "tool_calls"]));
    }
    if let Some(fc) = v.get("function_call").filter(|f| f.is_object()) {
        if let Some(name) = str_of(fc, "name") {
            calls.push(ToolCall {
                id: None,
                name: name.to_string(),
                arguments: fc.get("arguments").map(|a| json::decode_json_string(a.clone())).unwrap_or(Value::Null),
            });
        }
    }
    parts.extend(calls.into_iter().map(Part::ToolCall));
    // A tool message: its content is the result of a call.
    if role == "tool" {
        if let Some(call_id) = string_of(v, "tool_call_id").or_else(|| string_of(v, "toolCallId")) {
            if !parts.iter().any(|p| matches!(p, Part::ToolResult(_))) {
                let content = match v.get("content") {
                    Some(c) => json::decode_json_string(c.clone()),
                    None => Value::Null,
                };
                let is_error = match str_of(v, "status") {
                    Some("error") => Some(true),
                    Some("success") => Some(false),
                    _ => None,
                };
                parts =
                    vec![Part::ToolResult(ToolResult { call_id: Some(call_id), content, is_error, exit_code: None })];
            }
        }
    }
    if parts.is_empty() && !has_role {
        return None;
    }
    let finish_reason = string_of(v, "finish_reason")
        .or_else(|| json::path(v, &["response_metadata", "finish_reason"]).and_then(json::scalar_string))
        .or_else(|| json::path(v, &["response_metadata", "stop_reason"]).and_then(json::scalar_string))
        .or_else(|| string_of(v, "stop_reason"));
    Some(Message { role, name: string_of(v, "name").filter(|_| has_role), parts, finish_reason })
}

fn tool_calls(v: Option<&Value>) -> Vec<ToolCall> {
    let Some(Value::Array(items)) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|c| {
            let f = c.get("function").filter(|f| f.is_object()).unwrap_or(c);
            let name = str_of(f, "name")?;
            let args =
                f.get("arguments").or_else(|| f.get("args")).or_else(|| c.get("args")).or_else(|| c.get("input"));
            Some(ToolCall {
                id: string_of(c, "id").or_else(|| string_of(c, "call_id")),
                name: name.to_string(),
                arguments: args.map(|a| json::decode_json_string(a.clone())).unwrap_or(Value::Null),
            })
        })
        .collect()
}

fn content_parts(c: &Value, parts: &mut Vec<Part>) {
    match c {
        Value::String(s) if !s.is_empty() => parts.push(Part::Text { text: s.clone() }),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::String(s) if !s.is_empty() => parts.push(Part::Text { text: s.clone() }),
                    Value::Object(_) => parts.extend(part_from(item)),
                    _ => {}
                }
            }
        }
        Value::Object(_) => parts.extend(part_from(c)),
        _ => {}
    }
}

fn args_of(v: &Value, keys: &[&str]) -> Value {
    keys.iter().find_map(|k| v.get(*k)).map(|a| json::decode_json_string(a.clone())).unwrap_or(Value::Null)
}

fn first_string(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| string_of(v, k))
}

/// One content block / part.
pub(crate) fn part_from(p: &Value) -> Option<Part> {
    let ty = str_of(p, "type");
    let text_of = |p: &Value| str_of(p, "text").or_else(|| str_of(p, "content")).map(str::to_string);
    let part = match ty {
        Some("text" | "input_text" | "output_text") => Part::Text { text: text_of(p).unwrap_or_default() },
        Some("thinking" | "reasoning") => {
            let text = str_of(p, "thinking").map(str::to_string).or_else(|| text_of(p)).or_else(|| {
                let summary = p.get("summary")?.as_array()?;
                let joined: Vec<&str> = summary.iter().filter_map(|s| str_of(s, "text")).collect();
                (!joined.is_empty()).then(|| joined.join("\n"))
            });
            Part::Reasoning { text, redacted: false }
        }
        Some("redacted_thinking") => Part::Reasoning { text: None, redacted: true },
        Some("tool_use" | "server_tool_use" | "tool_call" | "function_call" | "tool-call" | "custom_tool_call") => {
            Part::ToolCall(ToolCall {
                id: first_string(p, &["call_id", "toolCallId", "id"]),
                name: first_string(p, &["name", "toolName"]).unwrap_or_else(|| "tool".into()),
                arguments: args_of(p, &["input", "arguments", "args"]),
            })
        }
        Some(
            "tool_result" | "tool_call_response" | "function_call_output" | "tool-result" | "custom_tool_call_output",
        ) => Part::ToolResult(ToolResult {
            call_id: first_string(p, &["tool_use_id", "call_id", "toolCallId", "id"]),
            content: args_of(p, &["content", "response", "output", "result"]),
            is_error: p.get("is_error").and_then(json::as_bool),
            exit_code: None,
        }),
        Some(
            t @ ("image_url" | "image" | "input_image" | "input_audio" | "audio" | "file" | "input_file" | "document"
            | "blob" | "uri"),
        ) => {
            let modality = match t {
                "image_url" | "image" | "input_image" => "image",
                "input_audio" | "audio" => "audio",
                _ => str_of(p, "modality").unwrap_or("file"),
            };
            let uri = json::path(p, &["image_url", "url"])
                .and_then(Value::as_str)
                .or_else(|| str_of(p, "image_url"))
                .or_else(|| str_of(p, "url"))
                .or_else(|| str_of(p, "uri"))
                .filter(|u| !u.starts_with("data:"))
                .map(str::to_string);
            let mime = first_string(p, &["mime_type", "media_type", "mimeType"])
                .or_else(|| json::path(p, &["source", "media_type"]).and_then(json::scalar_string));
            Part::Media { modality: modality.to_string(), mime, uri }
        }
        Some(other) => {
            if other == "message" {
                // A Responses `message` item nested as a part: its text.
                let mut inner = Vec::new();
                if let Some(c) = p.get("content") {
                    content_parts(c, &mut inner);
                }
                return inner.into_iter().next();
            }
            Part::Other { kind: other.to_string(), raw: p.clone() }
        }
        None => {
            if has(p, "toolCallId") && has(p, "toolName") {
                if has(p, "output") || has(p, "result") {
                    return Some(Part::ToolResult(ToolResult {
                        call_id: string_of(p, "toolCallId"),
                        content: args_of(p, &["output", "result"]),
                        is_error: None,
                        exit_code: None,
                    }));
                }
                return Some(Part::ToolCall(ToolCall {
                    id: string_of(p, "toolCallId"),
                    name: string_of(p, "toolName").unwrap_or_default(),
                    arguments: args_of(p, &["input", "args"]),
                }));
            }
            if let Some(fc) = p.get("function_call").or_else(|| p.get("functionCall")).filter(|f| f.is_object()) {
                return Some(Part::ToolCall(ToolCall {
                    id: string_of(fc, "id"),
                    name: string_of(fc, "name").unwrap_or_default(),
                    arguments: args_of(fc, &["args", "arguments"]),
                }));
            }
            if let Some(fr) = p.get("function_response").or_else(|| p.get("functionResponse")).filter(|f| f.is_object())
            {
                return Some(Part::ToolResult(ToolResult {
                    call_id: string_of(fr, "id"),
                    content: fr.get("response").cloned().unwrap_or(Value::Null),
                    is_error: None,
                    exit_code: None,
                }));
            }
            if let Some(t) = str_of(p, "text") {
                return Some(Part::Text { text: t.to_string() });
            }
            Part::Other { kind: "unknown".into(), raw: p.clone() }
        }
    };
    Some(part)
}

/// Token usage under any of the common names (OpenAI chat / Responses, Anthropic,
/// LangChain `usage_metadata`, Langfuse `usageDetails`, Gemini `usage_metadata`).
pub(crate) fn usage_from(v: &Value) -> Usage {
    if !v.is_object() {
        return Usage::default();
    }
    let get = |keys: &[&str]| keys.iter().find_map(|k| v.get(*k).and_then(as_u64));
    let nested = |pairs: &[(&str, &str)]| pairs.iter().find_map(|(a, b)| json::path(v, &[a, b]).and_then(as_u64));
    Usage {
        input_tokens: get(&[
            "input_tokens",
            "prompt_tokens",
            "input",
            "promptTokens",
            "inputTokens",
            "prompt_token_count",
            "promptTokenCount",
        ]),
        output_tokens: get(&[
            "output_tokens",
            "completion_tokens",
            "output",
            "completionTokens",
            "outputTokens",
            "candidates_token_count",
            "candidatesTokenCount",
        ]),
        total_tokens: get(&["total_tokens", "total", "totalTokens", "total_token_count", "totalTokenCount"]),
        cache_read_tokens: get(&[
            "cache_read_input_tokens",
            "cached_input_tokens",
            "prompt_details.cache_read",
            "input_cached_tokens",
            "input_cache_read",
            "cache_read",
            "cached_content_token_count",
        ])
        .or_else(|| {
            nested(&[
                ("input_tokens_details", "cached_tokens"),
                ("prompt_tokens_details", "cached_tokens"),
                ("input_token_details", "cache_read"),
            ])
        }),
        reasoning_tokens: get(&["reasoning_tokens", "completion_details.reasoning", "output_reasoning"]).or_else(
            || {
                nested(&[
                    ("output_tokens_details", "reasoning_tokens"),
                    ("completion_tokens_details", "reasoning_tokens"),
                    ("output_token_details", "reasoning"),
                ])
            },
        ),
    }
}

/// An error string (exception text, traceback) as ErrorInfo: the first line is the
/// message, the rest the stacktrace; `ValueError: x` / `ValueError('x')` give the type.
pub(crate) fn error_from_text(source: ErrorSource, text: &str) -> ErrorInfo {
    let text = text.trim();
    let mut err = ErrorInfo::new(source);
    if text.is_empty() {
        return err;
    }
    const TB: &str = "Traceback (most recent call last):";
    let (head, rest) = match text.split_once('\n') {
        Some((h, r)) => (h.trim_end(), r),
        None => (text, ""),
    };
    // LangChain writes `repr(e)` glued to the traceback: `ValueError('x')Traceback (…`.
    let (head, stack) = match head.find(TB) {
        Some(0) => ("", text.to_string()),
        Some(i) => (&head[..i], text[i..].to_string()),
        None => (head, rest.trim_matches('\n').to_string()),
    };
    let head = if head.trim().is_empty() {
        // Only a traceback: its last line names the exception.
        stack.lines().rev().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("File ")).unwrap_or("")
    } else {
        head.trim()
    };
    let (ty, message) = split_exception(head);
    if let Some(ty) = ty {
        err = err.with_type(ty);
    }
    err = err.with_message(message);
    if !stack.trim().is_empty() {
        err.stacktrace = Some(stack);
    }
    if let Some(code) = http_code(text) {
        err.code = Some(code);
    }
    err
}

/// `ValueError: boom` → (ValueError, boom); `ValueError('boom')` → (ValueError, boom).
pub(crate) fn split_exception(line: &str) -> (Option<&str>, String) {
    let is_ident = |s: &str| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && (s.contains('.') || s.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            && looks_like_exception(s)
    };
    if let Some((ty, msg)) = line.split_once(": ") {
        if is_ident(ty) {
            return (Some(ty), msg.trim().to_string());
        }
    }
    if let Some(open) = line.find('(') {
        let ty = &line[..open];
        if line.ends_with(')') && is_ident(ty) {
            let inner = line[open + 1..line.len() - 1].trim();
            let inner = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                .unwrap_or(inner);
            return (Some(ty), inner.to_string());
        }
    }
    (None, line.to_string())
}

fn looks_like_exception(ty: &str) -> bool {
    let last = ty.rsplit('.').next().unwrap_or(ty);
    ["Error", "Exception", "Exit", "Interrupt", "Timeout", "Warning", "Failure", "Exceeded", "Denied", "Refused"]
        .iter()
        .any(|s| last.ends_with(s))
        || ty.contains('.')
}

/// An HTTP status in an error text: `Error code: 500`, `HTTP 503`, `status code 429`.
pub(crate) fn http_code(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    for marker in ["error code: ", "status code: ", "status code ", "http error ", "http "] {
        if let Some(i) = lower.find(marker) {
            let digits: String = lower[i + marker.len()..].chars().take_while(char::is_ascii_digit).collect();
            if digits.len() == 3 && (digits.starts_with('4') || digits.starts_with('5')) {
                return Some(digits);
            }
        }
    }
    None
}

/// A conservative look at a tool result's text: a Python traceback, an `Error:`
/// prefix, `<tool_use_error>`, `command not found`, a non-zero `Exit code: N`, an HTTP
/// 4xx/5xx status line. A result that merely mentions "error" is not an error.
pub(crate) fn text_error(text: &str) -> Option<ErrorInfo> {
    let t = text.trim_start();
    if t.is_empty() {
        return None;
    }
    let head: String = t.chars().take(400).collect();
    if t.contains("Traceback (most recent call last):") {
        return Some(error_from_text(ErrorSource::TextHeuristic, t));
    }
    if head.contains("<tool_use_error>") {
        let msg = head.replace("<tool_use_error>", "").replace("</tool_use_error>", "");
        return Some(ErrorInfo::new(ErrorSource::TextHeuristic).with_message(msg.trim().lines().next().unwrap_or("")));
    }
    for prefix in ["Error:", "ERROR:", "error:", "Exception:"] {
        if t.starts_with(prefix) {
            let first = t.lines().next().unwrap_or("").trim();
            return Some(ErrorInfo::new(ErrorSource::TextHeuristic).with_message(first));
        }
    }
    if let Some(i) = head.find("Exit code: ").or_else(|| head.find("exit code: ")) {
        let digits: String = head[i + 11..].chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
        if let Ok(code) = digits.parse::<i64>() {
            if code != 0 {
                let mut err = ErrorInfo::new(ErrorSource::ExitCode).with_message(head.lines().next().unwrap_or(""));
                err.code = Some(code.to_string());
                return Some(err);
            }
        }
    }
    if head.lines().next().is_some_and(|l| l.contains(": command not found")) {
        return Some(ErrorInfo::new(ErrorSource::TextHeuristic).with_message(head.lines().next().unwrap_or("")));
    }
    let first = head.lines().next().unwrap_or("");
    if first.len() < 200 && (first.starts_with("HTTP ") || first.starts_with("Error code: ")) {
        if let Some(code) = http_code(first) {
            let mut err = ErrorInfo::new(ErrorSource::TextHeuristic).with_message(first);
            err.code = Some(code);
            return Some(err);
        }
    }
    None
}

/// Order steps by start time (steps without one last), file order breaking ties, and
/// number them.
pub(crate) fn order_steps(steps: &mut [Step]) {
    steps.sort_by_key(|s| (s.start.is_none(), s.start.unwrap_or(0)));
    for (i, s) in steps.iter_mut().enumerate() {
        s.seq = i as u32;
    }
}

/// Usage and cost summed over steps with no descendant that reports usage (cost) of its
/// own, so wrapper spans that repeat their children's totals are not counted twice.
pub(crate) fn leaf_totals(steps: &[Step]) -> (Usage, Option<f64>) {
    let index: std::collections::HashMap<&str, usize> =
        steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut usage_below = vec![false; steps.len()];
    let mut cost_below = vec![false; steps.len()];
    for (i, s) in steps.iter().enumerate() {
        let (has_usage, has_cost) = (!s.usage.is_empty(), s.cost_usd.is_some());
        if !has_usage && !has_cost {
            continue;
        }
        let mut cur = s.parent_id.as_deref().and_then(|p| index.get(p).copied());
        let mut guard = 0;
        while let Some(p) = cur {
            if p == i || guard > steps.len() {
                break;
            }
            guard += 1;
            usage_below[p] |= has_usage;
            cost_below[p] |= has_cost;
            cur = steps[p].parent_id.as_deref().and_then(|q| index.get(q).copied());
        }
    }
    let mut usage = Usage::default();
    let mut cost: Option<f64> = None;
    for (i, s) in steps.iter().enumerate() {
        if !usage_below[i] {
            usage.add(&s.usage);
        }
        if !cost_below[i] {
            if let Some(c) = s.cost_usd {
                cost = Some(cost.unwrap_or(0.0) + c);
            }
        }
    }
    (usage, cost)
}

/// Attribute dialects visible in a step's raw attributes.
pub(crate) fn dialects_of(attrs: &AttrMap) -> Vec<&'static str> {
    let mut out = Vec::new();
    let any = |f: &dyn Fn(&str) -> bool| attrs.keys().any(|k| f(k));
    if any(&|k| k == "openinference.span.kind" || k.starts_with("llm.")) {
        out.push("openinference");
    }
    if any(&|k| k.starts_with("gen_ai.")) {
        out.push("genai");
    }
    if any(&|k| k.starts_with("ai.")) {
        out.push("vercel");
    }
    if any(&|k| k.starts_with("logfire.")) {
        out.push("logfire");
    }
    out
}

/// The text of the first user message, for `trace.task`.
pub(crate) fn first_user_text(messages: &[Message]) -> Option<String> {
    messages.iter().find(|m| m.role == "user").map(Message::joined_text).filter(|t| !t.is_empty())
}

/// A time like `json::parse_time`, but integer epoch numbers are scaled exactly
/// (`1728803138285` ms → …285000000 ns, where f64 math would lose the last digits).
pub(crate) fn time_of(v: &Value) -> Option<Nanos> {
    if let Some(i) = v.as_i64().filter(|i| *i > 0) {
        let i = i128::from(i);
        return Some(if i < 100_000_000_000 {
            i * 1_000_000_000
        } else if i < 100_000_000_000_000 {
            i * 1_000_000
        } else if i < 100_000_000_000_000_000 {
            i * 1_000
        } else {
            i
        });
    }
    json::parse_time(v)
}
