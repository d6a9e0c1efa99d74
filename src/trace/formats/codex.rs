//! Codex CLI rollout JSONL (trace-formats.md §6.2).
//!
//! Every line is `{timestamp, type, payload}`. `response_item`s are the model-visible
//! history: consecutive model outputs (reasoning, assistant text, function calls) form one
//! Llm step; every call becomes a Tool step joined to its `*_output` by `call_id`. Tool
//! failures are only in text (`Exit code: N`, or a JSON string with
//! `metadata.exit_code`), plus `event_msg` `patch_apply_end.success = false`,
//! `mcp_tool_call_end` `Err`, and `turn_aborted`. One trace per file.

use std::collections::HashMap;

use serde_json::Value;

use super::common::transcript::{file_stem, new_step, parts_of, set_error, text_error, text_value, usage_of};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_bool, as_i64, decode_json_string, parse_time, str_of, string_of};
use crate::trace::model::{
    ErrorInfo, ErrorSource, Message, ModelInfo, Part, Signal, Step, StepKind, ToolCall, ToolResult, Trace,
};
use crate::trace::read::{Pos, Records};

pub fn parse(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    let mut b: Option<Rollout> = None;
    let mut n = 0u64;
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        n += 1;
        let v = &rec.value;
        let (Some(ty), Some(payload)) = (str_of(v, "type"), v.get("payload").filter(|p| p.is_object())) else {
            if !v.is_object() {
                ctx.warn(rec.pos, format!("not a Codex rollout line: {}", json::keys_of(v)));
            }
            continue;
        };
        let r = b.get_or_insert_with(|| Rollout::new(ctx, rec.pos));
        let line = match rec.pos {
            Pos::Line(l) => l,
            _ => n,
        };
        let time = v.get("timestamp").and_then(parse_time);
        match ty {
            "session_meta" => r.session_meta(payload),
            "turn_context" => r.turn_context(payload),
            "response_item" => r.response_item(payload, line, time),
            "event_msg" => r.event(payload, line, time),
            _ => {}
        }
    }
    if let Some(r) = b {
        let mut trace = r.trace;
        if trace.task.is_none() {
            trace.task = super::common::transcript::first_user_text(&trace).map(Value::String);
        }
        if !trace.steps.is_empty() || !trace.signals.is_empty() {
            sink(trace);
        }
    }
    Ok(())
}

struct Rollout {
    trace: Trace,
    has_id: bool,
    model: Option<String>,
    /// The Llm step model outputs are being added to.
    open_llm: Option<usize>,
    /// The last Llm step that has no usage yet (token_count arrives after the response).
    needs_usage: Option<usize>,
    tools: HashMap<String, usize>,
}

/// User-role messages the CLI injects (not typed by the user).
fn is_injected(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("<environment_context>")
        || t.starts_with("<user_instructions>")
        || t.starts_with("# AGENTS.md")
        || t.starts_with("<INSTRUCTIONS>")
        || t.starts_with("<turn_aborted>")
}

impl Rollout {
    fn new(ctx: &FileCtx<'_>, pos: Pos) -> Rollout {
        Rollout {
            trace: ctx.trace(Format::Codex, file_stem(ctx.path), pos),
            has_id: false,
            model: None,
            open_llm: None,
            needs_usage: None,
            tools: HashMap::new(),
        }
    }

    fn push(&mut self, mut step: Step) -> usize {
        step.seq = u32::try_from(self.trace.steps.len()).unwrap_or(u32::MAX);
        self.trace.steps.push(step);
        self.trace.steps.len() - 1
    }

    fn push_message(&mut self, msg: Message) -> (u32, u32) {
        let t = self.trace.transcript.len() as u32;
        self.trace.transcript.push(msg);
        (t, t + 1)
    }

    fn session_meta(&mut self, p: &Value) {
        if !self.has_id {
            if let Some(id) = string_of(p, "id") {
                self.trace.id = id.clone();
                self.trace.session_id = Some(id);
                self.has_id = true;
            }
            self.trace.start = p.get("timestamp").and_then(parse_time);
        }
        for key in ["cwd", "originator", "cli_version", "source", "model_provider", "git", "forked_from_id"] {
            if let Some(val) = p.get(key).filter(|x| !x.is_null()) {
                self.trace.attributes.entry(key).or_insert_with(|| val.clone());
            }
        }
    }

    fn turn_context(&mut self, p: &Value) {
        if let Some(m) = str_of(p, "model") {
            self.model = Some(m.to_string());
            self.trace.attributes.entry("model").or_insert_with(|| Value::String(m.into()));
        }
        for key in ["approval_policy", "sandbox_policy", "effort"] {
            if let Some(val) = p.get(key).filter(|x| !x.is_null()) {
                self.trace.attributes.entry(key).or_insert_with(|| val.clone());
            }
        }
    }

    /// The Llm step for the model output at hand, opened if needed.
    fn llm(&mut self, line: u64, time: Option<i128>) -> usize {
        if let Some(i) = self.open_llm {
            let step = &mut self.trace.steps[i];
            step.end = time.or(step.end);
            return i;
        }
        let mut step = new_step(format!("line:{line}"), 0, StepKind::Llm);
        step.start = time;
        step.end = time;
        step.name = self.model.clone();
        step.model = Some(ModelInfo {
            request_model: self.model.clone(),
            provider: Some("openai".into()),
            ..ModelInfo::default()
        });
        let msg = Message { role: "assistant".into(), ..Message::default() };
        step.transcript_range = Some(self.push_message(msg.clone()));
        step.output_messages = vec![msg];
        let i = self.push(step);
        self.open_llm = Some(i);
        self.needs_usage = Some(i);
        i
    }

    fn add_llm_part(&mut self, i: usize, part: Part) {
        let step = &mut self.trace.steps[i];
        if let Some(m) = step.output_messages.first_mut() {
            m.parts.push(part.clone());
        }
        if let Some((t, _)) = step.transcript_range {
            if let Some(m) = self.trace.transcript.get_mut(t as usize) {
                m.parts.push(part);
            }
        }
    }

    fn response_item(&mut self, p: &Value, line: u64, time: Option<i128>) {
        let ty = str_of(p, "type").unwrap_or("");
        match ty {
            "message" => {
                let role = str_of(p, "role").unwrap_or("user");
                let parts = parts_of(p.get("content").unwrap_or(&Value::Null));
                if role == "assistant" {
                    let i = self.llm(line, time);
                    for part in parts {
                        self.add_llm_part(i, part);
                    }
                    return;
                }
                self.open_llm = None;
                let msg = Message { role: role.to_string(), name: None, parts, finish_reason: None };
                let text = msg.joined_text();
                let kind = if role == "user" && !is_injected(&text) { StepKind::User } else { StepKind::System };
                let mut step = new_step(format!("line:{line}"), 0, kind);
                step.start = time;
                step.transcript_range = Some(self.push_message(msg.clone()));
                step.output_messages = vec![msg];
                self.push(step);
            }
            "reasoning" => {
                let summary: Vec<String> = p
                    .get("summary")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(text_value).filter(|t| !t.is_empty()).collect())
                    .unwrap_or_default();
                let content = p.get("content").map(text_value).filter(|t| !t.is_empty());
                let text = if summary.is_empty() { content } else { Some(summary.join("\n")) };
                let redacted = text.is_none() && p.get("encrypted_content").is_some_and(|e| !e.is_null());
                let i = self.llm(line, time);
                self.add_llm_part(i, Part::Reasoning { text, redacted });
            }
            "function_call"
            | "custom_tool_call"
            | "local_shell_call"
            | "web_search_call"
            | "tool_search_call"
            | "image_generation_call" => {
                let call_id = string_of(p, "call_id").or_else(|| string_of(p, "id"));
                let name = match ty {
                    "local_shell_call" => "local_shell".to_string(),
                    "web_search_call" => "web_search".to_string(),
                    "image_generation_call" => "image_generation".to_string(),
                    _ => str_of(p, "name").unwrap_or(ty).to_string(),
                };
                let args = p
                    .get("arguments")
                    .or_else(|| p.get("input"))
                    .or_else(|| p.get("action"))
                    .cloned()
                    .unwrap_or(Value::Null);
                let call = ToolCall { id: call_id.clone(), name: name.clone(), arguments: decode_json_string(args) };
                let i = self.llm(line, time);
                self.add_llm_part(i, Part::ToolCall(call.clone()));
                let llm_id = self.trace.steps[i].id.clone();
                let range = self.trace.steps[i].transcript_range;
                let mut step = new_step(call_id.clone().unwrap_or_else(|| format!("line:{line}")), 0, StepKind::Tool);
                step.start = time;
                step.name = Some(name);
                step.tool_call = Some(call);
                step.transcript_range = range;
                step.attributes.insert("called_by".into(), Value::String(llm_id));
                if let Some(st) = str_of(p, "status") {
                    step.attributes.insert("status".into(), Value::String(st.into()));
                }
                let ti = self.push(step);
                if let Some(id) = call_id {
                    self.tools.insert(id, ti);
                }
            }
            "function_call_output" | "custom_tool_call_output" | "tool_search_call_output" => {
                self.open_llm = None;
                let call_id = string_of(p, "call_id");
                let output = p.get("output").cloned().unwrap_or(Value::Null);
                self.tool_output(call_id, output, line, time);
            }
            _ => {}
        }
    }

    fn tool_step(&mut self, call_id: Option<String>, name: Option<&str>, line: u64, time: Option<i128>) -> usize {
        if let Some(&i) = call_id.as_ref().and_then(|id| self.tools.get(id)) {
            return i;
        }
        let mut step = new_step(call_id.clone().unwrap_or_else(|| format!("line:{line}")), 0, StepKind::Tool);
        step.start = time;
        step.name = name.map(str::to_string);
        step.attributes.insert("call_missing".into(), Value::Bool(true));
        let i = self.push(step);
        if let Some(id) = call_id {
            self.tools.insert(id, i);
        }
        i
    }

    fn tool_output(&mut self, call_id: Option<String>, output: Value, line: u64, time: Option<i128>) {
        let i = self.tool_step(call_id.clone(), None, line, time);
        let (text, exit_code) = output_text(&output);
        let (text_code, heuristic) = text_error(&text);
        let exit_code = exit_code.or(text_code);
        let result = ToolResult { call_id: call_id.clone(), content: output, is_error: None, exit_code };
        let range = self.push_message(Message {
            role: "tool".into(),
            name: None,
            parts: vec![Part::ToolResult(result.clone())],
            finish_reason: None,
        });
        let step = &mut self.trace.steps[i];
        step.end = time.or(step.end);
        step.transcript_range = Some(range);
        step.tool_result = Some(result);
        let error = match exit_code {
            Some(c) if c != 0 => {
                let mut e = ErrorInfo::new(ErrorSource::ExitCode)
                    .with_type("exit_code")
                    .with_message(json::clip(text.trim(), 500));
                e.code = Some(c.to_string());
                Some(e)
            }
            Some(_) => None,
            None => heuristic.or_else(|| codex_text_error(&text)),
        };
        // An error already recorded by an event (patch_apply_end) is more specific.
        if let (Some(e), None) = (error, &step.error) {
            set_error(step, e);
        }
    }

    fn event(&mut self, p: &Value, line: u64, time: Option<i128>) {
        let ty = str_of(p, "type").unwrap_or("");
        match ty {
            "token_count" => {
                let info = p.get("info").unwrap_or(&Value::Null);
                if let Some(total) = info.get("total_token_usage").filter(|u| u.is_object()) {
                    self.trace.usage = usage_of(total);
                }
                if let (Some(last), Some(i)) =
                    (info.get("last_token_usage").filter(|u| u.is_object()), self.needs_usage)
                {
                    self.trace.steps[i].usage = usage_of(last);
                    self.needs_usage = None;
                }
                if let Some(w) = info.get("model_context_window").filter(|w| !w.is_null()) {
                    self.trace.attributes.insert("model_context_window".into(), w.clone());
                }
            }
            "user_message" if self.trace.task.is_none() => {
                if let Some(m) = str_of(p, "message") {
                    self.trace.task = Some(Value::String(m.to_string()));
                }
            }
            "patch_apply_end" if p.get("success").and_then(as_bool) == Some(false) => {
                let i = self.tool_step(string_of(p, "call_id"), Some("apply_patch"), line, time);
                let msg = str_of(p, "stderr").or_else(|| str_of(p, "stdout")).unwrap_or("patch failed to apply");
                let e = ErrorInfo::new(ErrorSource::ErrorField)
                    .with_type("patch_apply_failed")
                    .with_message(json::clip(msg.trim(), 500));
                set_error(&mut self.trace.steps[i], e);
            }
            "exec_command_end" => {
                if let Some(code) = p.get("exit_code").and_then(as_i64) {
                    let i = self.tool_step(string_of(p, "call_id"), Some("exec_command"), line, time);
                    let step = &mut self.trace.steps[i];
                    if let Some(r) = step.tool_result.as_mut() {
                        r.exit_code = r.exit_code.or(Some(code));
                    }
                    if code != 0 && step.error.is_none() {
                        let msg = str_of(p, "stderr").or_else(|| str_of(p, "aggregated_output")).unwrap_or("");
                        let mut e = ErrorInfo::new(ErrorSource::ExitCode)
                            .with_type("exit_code")
                            .with_message(json::clip(msg.trim(), 500));
                        e.code = Some(code.to_string());
                        set_error(step, e);
                    }
                }
            }
            "mcp_tool_call_end" => {
                let inv = p.get("invocation").unwrap_or(&Value::Null);
                let name = match (str_of(inv, "server"), str_of(inv, "tool")) {
                    (Some(s), Some(t)) => format!("{s}.{t}"),
                    (_, Some(t)) => t.to_string(),
                    _ => "mcp".to_string(),
                };
                let res = p.get("result").unwrap_or(&Value::Null);
                let error = if let Some(err) = res.get("Err") {
                    Some(
                        ErrorInfo::new(ErrorSource::ErrorField)
                            .with_type("mcp_error")
                            .with_message(json::clip(&text_value(err), 500)),
                    )
                } else {
                    let ok = res.get("Ok").unwrap_or(&Value::Null);
                    let flagged = ok.get("isError").or_else(|| ok.get("is_error")).and_then(as_bool) == Some(true);
                    flagged.then(|| {
                        ErrorInfo::new(ErrorSource::ToolResultFlag)
                            .with_type("mcp_error")
                            .with_message(json::clip(&text_value(ok.get("content").unwrap_or(&Value::Null)), 500))
                    })
                };
                let i = self.tool_step(string_of(p, "call_id"), Some(&name), line, time);
                let step = &mut self.trace.steps[i];
                if step.name.is_none() {
                    step.name = Some(name);
                }
                if step.tool_call.is_none() {
                    step.tool_call = Some(ToolCall {
                        id: string_of(p, "call_id"),
                        name: step.name.clone().unwrap_or_default(),
                        arguments: inv.get("arguments").cloned().unwrap_or(Value::Null),
                    });
                }
                if let Some(e) = error {
                    set_error(step, e);
                }
            }
            "turn_aborted" => {
                self.open_llm = None;
                let reason = str_of(p, "reason").unwrap_or("aborted");
                let mut step = new_step(format!("line:{line}"), 0, StepKind::System);
                step.start = time;
                step.name = Some("turn_aborted".into());
                set_error(
                    &mut step,
                    ErrorInfo::new(ErrorSource::Terminal)
                        .with_type("turn_aborted")
                        .with_message(format!("turn aborted: {reason}")),
                );
                let i = self.push(step);
                let mut sig = Signal::new("terminal", false, format!("turn_aborted: {reason}"));
                sig.step = Some(self.trace.steps[i].id.clone());
                self.trace.signals.push(sig);
            }
            "error" | "stream_error" => {
                let mut step = new_step(format!("line:{line}"), 0, StepKind::System);
                step.start = time;
                step.name = Some(ty.to_string());
                let msg = str_of(p, "message").unwrap_or(ty);
                set_error(
                    &mut step,
                    ErrorInfo::new(ErrorSource::ErrorField).with_type(ty).with_message(json::clip(msg, 500)),
                );
                self.push(step);
            }
            _ => {}
        }
    }
}

/// The text and exit code of a tool output: a plain string (freeform `Exit code: N…`),
/// a JSON string `{"output", "metadata": {"exit_code"}}`, or content items.
fn output_text(output: &Value) -> (String, Option<i64>) {
    let decoded = decode_json_string(output.clone());
    match &decoded {
        Value::Object(o) => {
            let code = json::path(&decoded, &["metadata", "exit_code"]).or_else(|| o.get("exit_code")).and_then(as_i64);
            let text =
                o.get("output").or_else(|| o.get("content")).map(text_value).unwrap_or_else(|| decoded.to_string());
            (text, code)
        }
        Value::Array(_) => (text_value(&decoded), None),
        _ => (text_value(output), None),
    }
}

/// Codex-specific failure texts (the harness's own messages to the model).
fn codex_text_error(text: &str) -> Option<ErrorInfo> {
    let t = text.trim_start();
    const PREFIXES: [(&str, &str); 6] = [
        ("failed to parse function arguments", "bad_arguments"),
        ("command timed out after", "timeout"),
        ("execution error:", "execution_error"),
        ("exec command rejected by user", "rejected"),
        ("unsupported call:", "unsupported_call"),
        ("apply_patch verification failed", "patch_apply_failed"),
    ];
    PREFIXES.iter().find(|(p, _)| t.starts_with(p)).map(|(_, ty)| {
        ErrorInfo::new(ErrorSource::TextHeuristic)
            .with_type(*ty)
            .with_message(json::clip(t.lines().next().unwrap_or(t), 500))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(values: Vec<Value>) -> Vec<Trace> {
        let mut records = Records::from_values(values);
        let mut ctx = FileCtx::new("rollout-x.jsonl");
        let mut out = Vec::new();
        parse(&mut records, &mut ctx, &mut |t| out.push(t)).unwrap();
        out
    }

    fn l(ty: &str, payload: Value) -> Value {
        json!({"timestamp": "2025-01-01T00:00:00Z", "type": ty, "payload": payload})
    }

    #[test]
    fn calls_join_outputs_and_exit_codes() {
        let t = &run(vec![
            l("session_meta", json!({"id": "sess", "cwd": "/w", "cli_version": "0.77.0"})),
            l("turn_context", json!({"model": "gpt-5"})),
            l(
                "response_item",
                json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]}),
            ),
            l("response_item", json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": "think"}]})),
            l(
                "response_item",
                json!({"type": "function_call", "name": "shell", "arguments": "{\"command\":[\"false\"]}", "call_id": "c1"}),
            ),
            l(
                "event_msg",
                json!({"type": "token_count", "info": {"total_token_usage": {"input_tokens": 10, "output_tokens": "3"}, "last_token_usage": {"input_tokens": 10, "output_tokens": 3}}}),
            ),
            l(
                "response_item",
                json!({"type": "function_call_output", "call_id": "c1", "output": "{\"output\":\"boom\",\"metadata\":{\"exit_code\":1}}"}),
            ),
            l("response_item", json!({"type": "function_call", "name": "shell", "arguments": "{}", "call_id": "c2"})),
            l(
                "response_item",
                json!({"type": "function_call_output", "call_id": "c2", "output": "Exit code: 0\nWall time: 1s\nOutput:\nok"}),
            ),
            l("event_msg", json!({"type": "turn_aborted", "reason": "interrupted"})),
            json!("junk"),
        ])[0];
        assert_eq!(t.id, "sess");
        let kinds: Vec<_> = t.steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![StepKind::User, StepKind::Llm, StepKind::Tool, StepKind::Llm, StepKind::Tool, StepKind::System]
        );
        assert_eq!(t.steps[1].usage.output_tokens, Some(3));
        assert_eq!(t.steps[2].tool_result.as_ref().unwrap().exit_code, Some(1));
        assert_eq!(t.steps[2].error.as_ref().unwrap().source, Some(ErrorSource::ExitCode));
        assert!(t.steps[4].error.is_none());
        assert_eq!(t.usage.input_tokens, Some(10));
        assert_eq!(t.signals[0].kind, "terminal");
        assert_eq!(t.task, Some(json!("fix it")));
    }

    #[test]
    fn empty_and_wrong_shapes() {
        assert!(run(vec![]).is_empty());
        assert!(run(vec![json!({"a": 1}), json!([1])]).is_empty());
        let t = &run(vec![l(
            "event_msg",
            json!({"type": "patch_apply_end", "call_id": "p", "success": false, "stderr": "no match"}),
        )])[0];
        assert_eq!(t.steps[0].error.as_ref().unwrap().message.as_deref(), Some("no match"));
        assert_eq!(t.id, "rollout-x");
    }
}
