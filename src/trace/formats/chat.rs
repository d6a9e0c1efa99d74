//! Chat histories (Who&When), free-text logs (MAST), plain message lists. The pieces they
//! share with the other transcript adapters are in [`super::common::transcript`]; label
//! fields shipped beside benchmark data are never read (`LABEL_KEYS`).

use std::path::Path;

use serde_json::Value;

use super::common::transcript::*;
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_bool, as_f64, str_of, string_of};
use crate::trace::model::{Message, Signal, StepKind};
use crate::trace::read::{Pos, Records};

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
        // Split into turns when the log shows them, so the failure has steps to be
        // localised to; else one step holding the whole text.
        let turns = super::plain_text::split_log(text);
        if !turns.is_empty() {
            push_messages(&mut trace, &turns, ListMode::History);
            sink(trace);
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::{ErrorSource, Trace};
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
