//! τ-bench / AgentRx result records and τ²-bench `simulations` (trace-formats.md §7).
//!
//! One trace per record (`task-<task_id>/trial-<trial>`): the OpenAI-style `traj` becomes
//! one step per message, assistant tool calls joined to the `role: tool` results. The
//! benchmark's task object (instruction + ground-truth actions shipped with the run) is
//! kept in `trace.task`; `reward` is the outcome (passed iff reward >= 1).

use serde_json::Value;

use super::common::transcript::{ListMode, attrs_except, push_messages, string_of_any};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_f64, str_of};
use crate::trace::model::{Signal, Trace};
use crate::trace::read::{Pos, Records};

pub fn parse(records: &mut Records, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), ParseError> {
    for item in records {
        let rec = match item {
            Ok(r) => r,
            Err(e) => {
                ctx.record_error(e)?;
                continue;
            }
        };
        let v = &rec.value;
        if let Some(sims) = v.get("simulations").and_then(Value::as_array) {
            let tasks = v.get("tasks").and_then(Value::as_array);
            for sim in sims {
                match simulation(ctx, sim, tasks, rec.pos) {
                    Some(t) => sink(t),
                    None => ctx.warn(rec.pos, format!("not a τ²-bench simulation: {}", json::keys_of(sim))),
                }
            }
            continue;
        }
        match v {
            Value::Array(items) => {
                // A nested array of result records.
                for r in items {
                    match result_record(ctx, r, rec.pos) {
                        Some(t) => sink(t),
                        None => ctx.warn(rec.pos, format!("not a τ-bench result record: {}", json::keys_of(r))),
                    }
                }
            }
            _ => match result_record(ctx, v, rec.pos) {
                Some(t) => sink(t),
                None => ctx.warn(rec.pos, format!("not a τ-bench result record: {}", json::keys_of(v))),
            },
        }
    }
    Ok(())
}

fn trace_id(v: &Value) -> String {
    let task = string_of_any(v, &["task_id", "id"]).unwrap_or_else(|| "unknown".into());
    match string_of_any(v, &["trial"]) {
        Some(trial) => format!("task-{task}/trial-{trial}"),
        None => format!("task-{task}"),
    }
}

fn reward_signal(trace: &mut Trace, reward: Option<f64>) {
    if let Some(r) = reward {
        trace.signals.push(Signal::new("reward", r >= 1.0, format!("reward = {r}")));
    }
}

/// τ-bench `run.py` record: `{task_id, reward, trial, info{task, reward_info, …}, traj}`.
fn result_record(ctx: &FileCtx<'_>, v: &Value, pos: Pos) -> Option<Trace> {
    let traj = v.get("traj").or_else(|| v.get("messages")).and_then(Value::as_array)?;
    let mut trace = ctx.trace(Format::TauBench, trace_id(v), pos);
    let info = v.get("info").unwrap_or(&Value::Null);
    trace.attributes = attrs_except(v, &["traj", "messages", "info", "reward"]);
    for (k, val) in attrs_except(info, &["task"]) {
        trace.attributes.insert(k, val);
    }
    if let Some(task) = info.get("task").or_else(|| v.get("task")).filter(|t| !t.is_null()) {
        trace.user_id = str_of(task, "user_id").map(str::to_string);
        trace.task = Some(task.clone());
    }
    push_messages(&mut trace, traj, ListMode::Chat);
    if trace.task.is_none() {
        trace.task = super::common::transcript::first_user_text(&trace).map(Value::String);
    }
    let reward =
        v.get("reward").and_then(as_f64).or_else(|| json::path(info, &["reward_info", "reward"]).and_then(as_f64));
    reward_signal(&mut trace, reward);
    Some(trace)
}

const FAILED_TERMINATIONS: [&str; 5] = ["max_steps", "too_many_errors", "agent_error", "user_error", "timeout"];

/// τ²-bench simulation: `{id, task_id, trial, messages, termination_reason, reward_info}`.
fn simulation(ctx: &FileCtx<'_>, sim: &Value, tasks: Option<&Vec<Value>>, pos: Pos) -> Option<Trace> {
    let messages = sim.get("messages").and_then(Value::as_array)?;
    let mut trace = ctx.trace(Format::TauBench, trace_id(sim), pos);
    trace.attributes = attrs_except(sim, &["messages"]);
    trace.start = sim.get("start_time").and_then(json::parse_time);
    trace.end = sim.get("end_time").and_then(json::parse_time);
    trace.cost_usd = sim.get("agent_cost").and_then(as_f64);
    let task_id = string_of_any(sim, &["task_id"]);
    if let (Some(tasks), Some(tid)) = (tasks, task_id) {
        if let Some(task) = tasks.iter().find(|t| string_of_any(t, &["id"]).as_deref() == Some(tid.as_str())) {
            trace.task = Some(task.clone());
        }
    }
    push_messages(&mut trace, messages, ListMode::Chat);
    if trace.task.is_none() {
        trace.task = super::common::transcript::first_user_text(&trace).map(Value::String);
    }
    let reward =
        json::path(sim, &["reward_info", "reward"]).and_then(as_f64).or_else(|| sim.get("reward").and_then(as_f64));
    reward_signal(&mut trace, reward);
    if let Some(reason) = str_of(sim, "termination_reason") {
        let r = reason.rsplit('.').next().unwrap_or(reason).to_ascii_lowercase();
        if FAILED_TERMINATIONS.contains(&r.as_str()) {
            trace.signals.push(Signal::new("terminal", false, format!("termination_reason = {r}")));
        }
    }
    Some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::{ErrorSource, StepKind};
    use serde_json::json;

    fn run(values: Vec<Value>) -> (Vec<Trace>, usize) {
        let mut records = Records::from_values(values);
        let mut ctx = FileCtx::new("r.json");
        let mut out = Vec::new();
        parse(&mut records, &mut ctx, &mut |t| out.push(t)).unwrap();
        (out, ctx.warnings.len())
    }

    #[test]
    fn record_with_tool_error() {
        let rec = json!({
            "task_id": "3", "trial": 1, "reward": "0.5",
            "info": {"task": {"user_id": "u1", "instruction": "do", "actions": [{"name": "f", "kwargs": {}}]}, "source": "user"},
            "traj": [
                {"role": "system", "content": "policy"},
                {"role": "user", "content": "hi", "index": 2},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "find_user", "arguments": "{\"x\": 1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "name": "find_user", "content": "Error: user not found"},
                {"role": "assistant", "content": "sorry"}
            ]
        });
        let (traces, _) = run(vec![rec]);
        let t = &traces[0];
        assert_eq!(t.id, "task-3/trial-1");
        assert_eq!(t.user_id.as_deref(), Some("u1"));
        assert_eq!(t.task.as_ref().unwrap()["actions"][0]["name"], json!("f"));
        assert_eq!(t.steps[3].kind, StepKind::Tool);
        assert_eq!(t.steps[3].name.as_deref(), Some("find_user"));
        assert_eq!(t.steps[3].error.as_ref().unwrap().source, Some(ErrorSource::TextHeuristic));
        assert_eq!(t.steps[1].attributes["index"], json!(2));
        assert!(!t.signals[0].passed);
        assert_eq!(t.signals[0].detail, "reward = 0.5");
    }

    #[test]
    fn tau2_simulations() {
        let rec = json!({
            "tasks": [{"id": "t9", "description": {"purpose": "p"}}],
            "simulations": [{
                "id": "s", "task_id": "t9", "trial": 0, "termination_reason": "max_steps",
                "reward_info": {"reward": 1.0},
                "messages": [
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "a", "name": "get", "arguments": {"k": 1}, "requestor": "assistant"}]},
                    {"role": "tool", "id": "a", "content": "{}", "error": true}
                ]
            }, 5]
        });
        let (traces, warnings) = run(vec![rec, json!({"nope": 1})]);
        assert_eq!(warnings, 2);
        let t = &traces[0];
        assert_eq!(t.id, "task-t9/trial-0");
        assert_eq!(t.task.as_ref().unwrap()["id"], json!("t9"));
        assert_eq!(t.steps[1].tool_call.as_ref().unwrap().name, "get");
        assert_eq!(t.steps[1].error.as_ref().unwrap().source, Some(ErrorSource::ToolResultFlag));
        assert_eq!(t.signals.len(), 2);
        assert!(t.signals[0].passed);
        assert!(!t.signals[1].passed);
    }
}
