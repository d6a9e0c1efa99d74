//! SWE-agent `.traj` and mini-swe-agent `.traj.json` (trace-formats.md §7).
//!
//! Neither file says whether the task was solved: `exit_status: submitted` only means the
//! agent handed in a patch. The verdict lives in a SWE-bench report beside the run, so the
//! adapters look for `logs/<instance_id>/report.json` or an `outcomes.csv`
//! (`instance_id,resolved`) in the trajectory's folder and up to two parents, and add a
//! `resolved` signal when they find one. Otherwise a submitted run stays unknown.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use super::common::transcript::{
    ListMode, attrs_except, file_stem, new_step, parts_of, push_messages, set_error, text_error, tool_calls_of,
    usage_of,
};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_bool, as_f64, decode_json_string, str_of, string_of};
use crate::trace::model::{
    ErrorInfo, ErrorSource, Message, ModelInfo, Part, Signal, StepKind, ToolCall, ToolResult, Trace, Usage,
};
use crate::trace::read::Records;

/// SWE-agent `.traj`: `{trajectory[], history[], info{exit_status, submission, model_stats}}`.
pub fn parse(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
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
        if !v.is_object() || (v.get("trajectory").is_none() && v.get("history").is_none()) {
            ctx.warn(rec.pos, format!("not a SWE-agent trajectory: {}", json::keys_of(v)));
            continue;
        }
        let info = v.get("info").unwrap_or(&Value::Null);
        let id = string_of(info, "instance_id")
            .or_else(|| string_of(v, "instance_id"))
            .unwrap_or_else(|| if n == 0 { stem.clone() } else { format!("{stem}#{n}") });
        let mut trace = ctx.trace(Format::SweAgent, id.clone(), rec.pos);
        trace.attributes = attrs_except(v, &["trajectory", "history", "info", "replay_config"]);
        for (k, val) in attrs_except(info, &["model_stats"]) {
            if !k.starts_with("edited_files") {
                trace.attributes.insert(k, val);
            }
        }
        let empty = Vec::new();
        let history: Vec<Value> = v
            .get("history")
            .and_then(Value::as_array)
            .unwrap_or(&empty)
            .iter()
            .filter(|m| m.get("is_demo").and_then(as_bool) != Some(true))
            .cloned()
            .collect();
        let trajectory = v.get("trajectory").and_then(Value::as_array).unwrap_or(&empty);
        if trajectory.is_empty() {
            push_messages(&mut trace, &history, ListMode::Chat);
        } else {
            swe_steps(&mut trace, trajectory, &history);
        }
        trace.task = history
            .iter()
            .find(|m| str_of(m, "role") == Some("user"))
            .and_then(|m| m.get("content"))
            .map(super::common::transcript::text_value)
            .filter(|t| !t.is_empty())
            .map(Value::String);
        model_stats(&mut trace, info);
        exit_signals(&mut trace, info, false);
        verdict_signal(&mut trace, ctx.path, &id);
        sink(trace);
    }
    Ok(())
}

fn swe_steps(trace: &mut Trace, trajectory: &[Value], history: &[Value]) {
    for m in history {
        let mut parts = parts_of(m.get("content").unwrap_or(&Value::Null));
        parts.extend(tool_calls_of(m).into_iter().map(Part::ToolCall));
        trace.transcript.push(Message {
            role: str_of(m, "role").unwrap_or("unknown").to_string(),
            name: str_of(m, "agent").map(str::to_string),
            parts,
            finish_reason: None,
        });
    }
    // The k-th assistant message of the history is the k-th trajectory entry.
    let assistant_at: Vec<usize> =
        history.iter().enumerate().filter(|(_, m)| str_of(m, "role") == Some("assistant")).map(|(i, _)| i).collect();
    for (k, entry) in trajectory.iter().enumerate() {
        let action = str_of(entry, "action").unwrap_or("").trim().to_string();
        let response = str_of(entry, "response").or_else(|| str_of(entry, "thought")).unwrap_or("");
        let tool_name = action.split_whitespace().next().unwrap_or("").to_string();
        let call = ToolCall { id: None, name: tool_name.clone(), arguments: Value::String(action.clone()) };
        let mut llm = new_step(format!("traj:{k}"), trace.steps.len(), StepKind::Llm);
        let mut parts = Vec::new();
        if let Some(t) = str_of(entry, "thought").filter(|t| *t != response) {
            parts.push(Part::Reasoning { text: Some(t.to_string()), redacted: false });
        }
        parts.push(Part::Text { text: response.to_string() });
        if !action.is_empty() {
            parts.push(Part::ToolCall(call.clone()));
        }
        llm.output_messages = vec![Message { role: "assistant".into(), name: None, parts, finish_reason: None }];
        let hist = assistant_at.get(k).copied();
        llm.transcript_range = hist.map(|i| (i as u32, i as u32 + 1));
        if let Some(q) = entry.get("query").filter(|q| !q.is_null()) {
            llm.input = Some(q.clone());
        }
        let llm_id = llm.id.clone();
        trace.steps.push(llm);
        if action.is_empty() {
            continue;
        }
        let mut tool = new_step(format!("traj:{k}:action"), trace.steps.len(), StepKind::Tool);
        tool.name = Some(tool_name).filter(|n| !n.is_empty());
        tool.tool_call = Some(call);
        let observation = entry.get("observation").cloned().unwrap_or(Value::Null);
        let text = super::common::transcript::text_value(&observation);
        let (exit_code, error) = text_error(&text);
        tool.tool_result = Some(ToolResult { call_id: None, content: observation, is_error: None, exit_code });
        if let Some(e) = error {
            set_error(&mut tool, e);
        }
        tool.attributes.insert("called_by".into(), Value::String(llm_id));
        for key in ["execution_time", "state"] {
            if let Some(val) = entry.get(key).filter(|x| !x.is_null()) {
                tool.attributes.insert(key.into(), decode_json_string(val.clone()));
            }
        }
        tool.transcript_range = hist
            .map(|i| i + 1)
            .filter(|&i| history.get(i).is_some_and(|m| str_of(m, "role") != Some("assistant")))
            .map(|i| (i as u32, i as u32 + 1));
        trace.steps.push(tool);
    }
}

fn model_stats(trace: &mut Trace, info: &Value) {
    let Some(stats) = info.get("model_stats").filter(|s| s.is_object()) else {
        return;
    };
    if let Some(c) = stats.get("instance_cost").and_then(as_f64) {
        trace.cost_usd = Some(c);
    }
    let u = usage_of(stats);
    if u != Usage::default() {
        trace.usage = u;
    }
    if let Some(calls) = stats.get("api_calls").filter(|c| !c.is_null()) {
        trace.attributes.insert("api_calls".into(), calls.clone());
    }
}

/// `exit_status` other than submitted fails the run; a submitted run with an empty
/// submission too. A submitted patch says nothing about being right.
fn exit_signals(trace: &mut Trace, info: &Value, mini: bool) {
    let Some(status) = str_of(info, "exit_status") else {
        return;
    };
    if status.eq_ignore_ascii_case("submitted") {
        let empty = match info.get("submission") {
            None => false, // not recorded
            Some(Value::String(s)) => s.trim().is_empty(),
            Some(Value::Null) => true,
            Some(_) => false,
        };
        if empty && !mini {
            trace.signals.push(Signal::new("submission", false, "exit_status = submitted with an empty submission"));
        }
        return;
    }
    trace.signals.push(Signal::new("exit_status", false, format!("exit_status = {status}")));
}

/// mini-swe-agent `.traj.json`: `{info{exit_status, submission, model_stats}, messages[],
/// trajectory_format, instance_id}`. The agent acts only through bash: assistant messages
/// hold one fenced command, its result comes back as a user message
/// `<returncode>N</returncode><output>…</output>`.
pub fn parse_mini(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
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
        let Some(messages) = v.get("messages").and_then(Value::as_array) else {
            ctx.warn(rec.pos, format!("not a mini-swe-agent trajectory: {}", json::keys_of(v)));
            continue;
        };
        let info = v.get("info").unwrap_or(&Value::Null);
        let id =
            string_of(v, "instance_id").unwrap_or_else(|| if n == 0 { stem.clone() } else { format!("{stem}#{n}") });
        let mut trace = ctx.trace(Format::MiniSweAgent, id.clone(), rec.pos);
        trace.attributes = attrs_except(v, &["messages", "info"]);
        for (k, val) in attrs_except(info, &["model_stats", "config"]) {
            trace.attributes.insert(k, val);
        }
        if let Some(model) = json::path(info, &["config", "model", "model_name"]).filter(|m| !m.is_null()) {
            trace.attributes.insert("model".into(), model.clone());
        }
        mini_steps(&mut trace, messages);
        model_stats(&mut trace, info);
        exit_signals(&mut trace, info, true);
        verdict_signal(&mut trace, ctx.path, &id);
        sink(trace);
    }
    Ok(())
}

/// The command in an assistant message's fenced block (```bash … ```).
fn fenced_command(text: &str) -> Option<String> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let end = body.find("```").unwrap_or(body.len());
    let cmd = body[..end].trim();
    (!cmd.is_empty()).then(|| cmd.to_string())
}

fn mini_steps(trace: &mut Trace, messages: &[Value]) {
    let mut seen_task = false;
    let mut last_command: Option<(String, String)> = None; // (command, llm step id)
    for (i, m) in messages.iter().enumerate() {
        let seq = trace.steps.len();
        let role = str_of(m, "role").unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        let text = super::common::transcript::text_value(content);
        let t = trace.transcript.len() as u32;
        let msg = Message {
            role: if role.is_empty() { "unknown".into() } else { role.to_string() },
            name: None,
            parts: parts_of(content),
            finish_reason: None,
        };
        trace.transcript.push(msg.clone());
        let id = format!("msg:{i}");
        let observation = role == "tool" || (role == "user" && seen_task);
        let mut step = if role == "system" {
            new_step(id, seq, StepKind::System)
        } else if role == "assistant" {
            let mut s = new_step(id.clone(), seq, StepKind::Llm);
            let resp = json::path(m, &["extra", "response"]).unwrap_or(&Value::Null);
            if let Some(u) = resp.get("usage").filter(|u| u.is_object()) {
                s.usage = usage_of(u);
                s.cost_usd = u.get("cost").and_then(as_f64);
            }
            if let Some(model) = str_of(resp, "model") {
                s.name = Some(model.to_string());
                s.model = Some(ModelInfo {
                    response_model: Some(model.to_string()),
                    provider: str_of(resp, "provider").map(str::to_string),
                    finish_reasons: json::path(resp, &["choices", "0", "finish_reason"])
                        .or_else(|| resp.get("choices").and_then(|c| c.get(0)).and_then(|c| c.get("finish_reason")))
                        .and_then(Value::as_str)
                        .map(|f| vec![f.to_string()])
                        .unwrap_or_default(),
                    ..ModelInfo::default()
                });
            }
            last_command = fenced_command(&text).map(|c| (c, id));
            s
        } else if observation {
            let t = text.trim_start();
            if t.starts_with("Please always provide EXACTLY ONE action") || t.starts_with("Please always provide") {
                let mut s = new_step(id, seq, StepKind::System);
                s.name = Some("format_error".into());
                set_error(
                    &mut s,
                    ErrorInfo::new(ErrorSource::TextHeuristic)
                        .with_type("format_error")
                        .with_message(json::clip(t.lines().next().unwrap_or(t), 300)),
                );
                last_command = None;
                s
            } else {
                let mut s = new_step(id, seq, StepKind::Tool);
                s.name = Some("bash".into());
                if let Some((cmd, llm_id)) = last_command.take() {
                    s.tool_call = Some(ToolCall { id: None, name: "bash".into(), arguments: Value::String(cmd) });
                    s.attributes.insert("called_by".into(), Value::String(llm_id));
                }
                let (exit_code, mut error) = text_error(&text);
                if error.is_none() && exit_code.is_none() && t.contains("timed out and has been killed") {
                    error = Some(
                        ErrorInfo::new(ErrorSource::TextHeuristic)
                            .with_type("timeout")
                            .with_message(json::clip(t.lines().next().unwrap_or(t), 300)),
                    );
                }
                s.tool_result = Some(ToolResult { call_id: None, content: content.clone(), is_error: None, exit_code });
                if let Some(e) = error {
                    set_error(&mut s, e);
                }
                s
            }
        } else if role == "user" {
            seen_task = true;
            if trace.task.is_none() && !text.trim().is_empty() {
                trace.task = Some(Value::String(text.clone()));
            }
            new_step(id, seq, StepKind::User)
        } else {
            new_step(id, seq, StepKind::Other)
        };
        step.transcript_range = Some((t, t + 1));
        if step.kind != StepKind::Tool {
            step.output_messages = vec![msg];
        }
        trace.steps.push(step);
    }
}

// ---------------------------------------------------------------------------------------
// SWE-bench verdicts beside the trajectory
// ---------------------------------------------------------------------------------------

type Outcomes = HashMap<String, bool>;

/// What a file looked like when it was read: an edited (or new, or deleted) CSV no longer
/// matches, so a long-lived process reads it again instead of serving its first reading.
type Stamp = Option<(u64, Option<std::time::SystemTime>)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().filter(|m| m.is_file()).map(|m| (m.len(), m.modified().ok()))
}

/// Each `outcomes.csv` read, with its stamp then.
type CsvCache = Mutex<HashMap<PathBuf, (Stamp, Option<Outcomes>)>>;

/// Each `outcomes.csv` once per version: thousands of trajectories share one.
fn csv_cache() -> &'static CsvCache {
    static CACHE: OnceLock<CsvCache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn parse_bool(s: &str) -> Option<bool> {
    as_bool(&Value::String(s.trim().trim_matches('"').to_string()))
}

/// `instance_id,resolved,…` → id → resolved.
fn read_outcomes_csv(path: &Path) -> Option<Outcomes> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()?
        .split(',')
        .map(|h| h.trim().trim_matches('"').trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let id_col = header.iter().position(|h| h == "instance_id")?;
    let res_col = header.iter().position(|h| h == "resolved")?;
    let mut out = HashMap::new();
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        if let (Some(id), Some(r)) = (cols.get(id_col), cols.get(res_col).and_then(|r| parse_bool(r))) {
            out.insert(id.trim().trim_matches('"').to_string(), r);
        }
    }
    Some(out)
}

fn outcomes_for(path: &Path) -> Option<Outcomes> {
    let now = stamp(path);
    let mut cache = csv_cache().lock().unwrap_or_else(|e| e.into_inner());
    if let Some((seen, hit)) = cache.get(path)
        && *seen == now
    {
        return hit.clone();
    }
    let read = if now.is_some() { read_outcomes_csv(path) } else { None };
    cache.insert(path.to_path_buf(), (now, read.clone()));
    read
}

/// The verdict for `instance_id` from a SWE-bench `report.json` or an `outcomes.csv` in
/// the trajectory's folder or up to two parents.
pub(super) fn find_verdict(traj_path: &str, instance_id: &str) -> Option<(bool, String)> {
    if instance_id.is_empty() || instance_id.contains('/') || instance_id.contains("..") {
        return None;
    }
    let p = Path::new(traj_path);
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut bases = vec![dir.clone()];
    if let Some(up) = dir.parent().filter(|d| !d.as_os_str().is_empty()) {
        bases.push(up.to_path_buf());
        if let Some(up2) = up.parent().filter(|d| !d.as_os_str().is_empty()) {
            bases.push(up2.to_path_buf());
        }
    } else if dir != Path::new(".") {
        bases.push(PathBuf::from("."));
    }
    for base in &bases {
        let report = base.join("logs").join(instance_id).join("report.json");
        if let Some(r) = read_report(&report, instance_id) {
            return Some((r, format!("resolved = {r} ({})", report.display())));
        }
    }
    for base in &bases {
        let csv = base.join("outcomes.csv");
        if let Some(r) = outcomes_for(&csv).and_then(|o| o.get(instance_id).copied()) {
            return Some((r, format!("resolved = {r} ({})", csv.display())));
        }
    }
    None
}

/// A SWE-bench report: `{<instance_id>: {resolved}}` or a flat `{resolved, …}`.
fn read_report(path: &Path, instance_id: &str) -> Option<bool> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 64 * 1024 * 1024 {
        return None;
    }
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v.get(instance_id).and_then(|r| r.get("resolved")).or_else(|| v.get("resolved")).and_then(as_bool)
}

fn verdict_signal(trace: &mut Trace, path: &str, instance_id: &str) {
    if let Some((resolved, detail)) = find_verdict(path, instance_id) {
        trace.signals.push(Signal::new("resolved", resolved, detail));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_edited_outcomes_csv_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("outcomes.csv");
        std::fs::write(&csv, "instance_id,resolved\na__b-1,false\n").unwrap();
        assert_eq!(super::outcomes_for(&csv).unwrap().get("a__b-1"), Some(&false));
        // A different length: the stamp changes even where mtimes are coarse.
        std::fs::write(&csv, "instance_id,resolved\na__b-1,true\nc__d-2,true\n").unwrap();
        assert_eq!(super::outcomes_for(&csv).unwrap().get("a__b-1"), Some(&true));
        std::fs::remove_file(&csv).unwrap();
        assert!(super::outcomes_for(&csv).is_none());
    }

    use super::*;
    use serde_json::json;

    fn run(
        f: fn(&mut Records, &mut FileCtx<'_>, &mut Sink<'_>) -> Result<(), ParseError>,
        path: &str,
        v: Vec<Value>,
    ) -> Vec<Trace> {
        let mut records = Records::from_values(v);
        let mut ctx = FileCtx::new(path);
        let mut out = Vec::new();
        f(&mut records, &mut ctx, &mut |t| out.push(t)).unwrap();
        out
    }

    #[test]
    fn swe_agent_exit_status_and_steps() {
        let t = &run(
            parse,
            "/nonexistent/x.traj",
            vec![json!({
                "trajectory": [
                    {"action": "ls -la", "observation": "bash: lss: command not found", "response": "look", "thought": "look"},
                    {"action": "", "observation": "", "response": "hmm"}
                ],
                "history": [{"role": "system", "content": "sys"}, {"role": "user", "content": "fix bug"}],
                "info": {"exit_status": "exit_cost", "model_stats": {"instance_cost": "1.5", "tokens_sent": 10, "tokens_received": 2}}
            })],
        )[0];
        assert_eq!(t.id, "x");
        assert_eq!(t.steps.len(), 3);
        assert_eq!(t.steps[1].name.as_deref(), Some("ls"));
        assert!(t.steps[1].error.is_some());
        assert_eq!(t.cost_usd, Some(1.5));
        assert_eq!(t.usage.input_tokens, Some(10));
        assert_eq!(t.signals[0].detail, "exit_status = exit_cost");
        assert_eq!(t.task, Some(json!("fix bug")));
    }

    #[test]
    fn mini_messages() {
        let t = &run(
            parse_mini,
            "/nonexistent/m.traj.json",
            vec![
                json!({
                    "instance_id": "a__b-1",
                    "info": {"exit_status": "LimitsExceeded", "submission": ""},
                    "messages": [
                        {"role": "system", "content": "sys"},
                        {"role": "user", "content": "task text"},
                        {"role": "assistant", "content": "THOUGHT: x\n\n```bash\nls -la\n```", "extra": {"response": {"model": "m", "usage": {"prompt_tokens": 5, "completion_tokens": 1}}}},
                        {"role": "user", "content": "<returncode>2</returncode>\n<output>\nno\n</output>"},
                        {"role": "assistant", "content": "two\n```bash\na\n```\n```bash\nb\n```"},
                        {"role": "user", "content": "Please always provide EXACTLY ONE action in triple backticks, found 2 actions."}
                    ]
                }),
                json!({"no": "messages"}),
            ],
        )[0];
        assert_eq!(t.id, "a__b-1");
        let kinds: Vec<_> = t.steps.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![StepKind::System, StepKind::User, StepKind::Llm, StepKind::Tool, StepKind::Llm, StepKind::System]
        );
        let tool = &t.steps[3];
        assert_eq!(tool.tool_result.as_ref().unwrap().exit_code, Some(2));
        assert_eq!(tool.tool_call.as_ref().unwrap().arguments, json!("ls -la"));
        assert_eq!(t.steps[2].usage.input_tokens, Some(5));
        assert_eq!(t.steps[5].error.as_ref().unwrap().r#type.as_deref(), Some("format_error"));
        assert!(!t.signals[0].passed);
        assert_eq!(t.task, Some(json!("task text")));
    }

    #[test]
    fn fenced() {
        assert_eq!(fenced_command("x\n```bash\nls -la\n```\n").as_deref(), Some("ls -la"));
        assert_eq!(fenced_command("no block"), None);
        assert_eq!(find_verdict("/nonexistent/dir/x.json", "../etc"), None);
    }
}
