//! ATIF, the Agent Trajectory Interchange Format (Harbor's `trajectory.json`, written for
//! every trial; RFC 0001, v1.0–v1.5): `{schema_version: "ATIF-v1.x", session_id, agent,
//! steps[], final_metrics?, notes?, extra?}`.
//!
//! Each step (`source`: system / user / agent) becomes a chat message; an agent step's
//! `tool_calls` (`tool_call_id`, `function_name`, `arguments`) are joined to its
//! `observation.results` by `source_call_id`, so the shared chat reader gives one step per
//! message and a Tool step per call with its result. Per-step `metrics` become usage and
//! cost; `final_metrics` the trace's totals. ATIF carries no verdict of its own: the outcome
//! stays unknown unless a reward is recorded (`extra.reward` / `final_metrics.extra.reward`,
//! where Harbor's RL exports put it); a reward below 1 fails the trace.
//!
//! Harbor writes each trial as `<trial>/agent/trajectory.json` beside `<trial>/result.json`
//! (`verifier_result.rewards.reward`, `exception_info`, `task_name`, `agent_result`): that
//! file's reward is the trajectory's outcome, and an exception it records (the agent timed
//! out, the sandbox did not build) fails the trace with the exception as evidence. The
//! result file itself is not a trace (`detect`).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::common::transcript::{ListMode, attrs_except, push_messages};
use super::{FileCtx, Format, ParseError, Sink};
use crate::trace::json::{self, as_f64, as_u64, str_of};
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
        let items: Vec<&Value> = match &rec.value {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        for v in items {
            match trajectory(ctx, v, rec.pos) {
                Some(t) => sink(t),
                None => ctx.warn(rec.pos, format!("not an ATIF trajectory (no `steps` list): {}", json::keys_of(v))),
            }
        }
    }
    Ok(())
}

fn trajectory(ctx: &FileCtx<'_>, v: &Value, pos: Pos) -> Option<Trace> {
    let steps = v.get("steps").and_then(Value::as_array)?;
    let id = str_of(v, "session_id").map(str::to_string).unwrap_or_else(|| format!("atif@{pos}"));
    let mut trace = ctx.trace(Format::Atif, id, pos);
    trace.attributes = attrs_except(v, &["steps", "final_metrics"]);
    let agent = v.get("agent").unwrap_or(&Value::Null);
    trace.name = str_of(agent, "name").map(str::to_string);
    let default_model = str_of(agent, "model_name");
    let mut messages: Vec<Value> = Vec::new();
    for s in steps {
        let source = str_of(s, "source").unwrap_or("");
        let role = match source {
            "system" => "system",
            "user" => "user",
            _ => "assistant",
        };
        let mut m = Map::new();
        m.insert("role".into(), json!(role));
        m.insert("content".into(), s.get("message").cloned().unwrap_or(Value::Null));
        if let Some(t) = s.get("timestamp") {
            m.insert("timestamp".into(), t.clone());
        }
        if let Some(r) = s.get("reasoning_content") {
            m.insert("reasoning_content".into(), r.clone());
        }
        if let Some(id) = s.get("step_id") {
            m.insert("step_id".into(), id.clone());
        }
        if let Some(model) = str_of(s, "model_name").or(if role == "assistant" { default_model } else { None }) {
            m.insert("model".into(), json!(model));
        }
        let calls: Vec<Value> = s
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| {
                json!({
                    "id": c.get("tool_call_id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": c.get("function_name").cloned().unwrap_or(Value::Null),
                        "arguments": c.get("arguments").cloned().unwrap_or(json!({})),
                    },
                })
            })
            .collect();
        if !calls.is_empty() {
            m.insert("tool_calls".into(), Value::Array(calls));
        }
        if let Some(metrics) = s.get("metrics").filter(|x| x.is_object()) {
            m.insert(
                "usage".into(),
                json!({
                    "prompt_tokens": metrics.get("prompt_tokens"),
                    "completion_tokens": metrics.get("completion_tokens"),
                }),
            );
            if let Some(c) = metrics.get("cost_usd") {
                m.insert("cost".into(), c.clone());
            }
        }
        messages.push(Value::Object(m));
        // Results of this step's calls (and of actions without a call) follow as tool messages.
        for r in json::path(s, &["observation", "results"]).and_then(Value::as_array).into_iter().flatten() {
            let mut t = Map::new();
            t.insert("role".into(), json!("tool"));
            if let Some(id) = r.get("source_call_id").filter(|x| !x.is_null()) {
                t.insert("tool_call_id".into(), id.clone());
            }
            let content =
                r.get("content").cloned().or_else(|| r.get("subagent_trajectory_ref").cloned()).unwrap_or(Value::Null);
            t.insert("content".into(), content);
            if let Some(flag) = r.get("is_error") {
                t.insert("is_error".into(), flag.clone());
            }
            messages.push(Value::Object(t));
        }
    }
    push_messages(&mut trace, &messages, ListMode::Chat);
    trace.task = super::common::transcript::first_user_text(&trace).map(Value::String);
    trace.start = trace.steps.iter().filter_map(|s| s.start).min();
    if let Some(fm) = v.get("final_metrics") {
        trace.usage.input_tokens = fm.get("total_prompt_tokens").and_then(as_u64).or(trace.usage.input_tokens);
        trace.usage.output_tokens = fm.get("total_completion_tokens").and_then(as_u64).or(trace.usage.output_tokens);
        trace.cost_usd = fm.get("total_cost_usd").and_then(as_f64);
    }
    let reward = json::path(v, &["extra", "reward"])
        .or_else(|| json::path(v, &["final_metrics", "extra", "reward"]))
        .and_then(as_f64);
    let trial = harbor_result(ctx.path);
    let trial_reward = trial.as_ref().and_then(|(_, r)| trial_reward(r));
    match (trial_reward, reward) {
        (Some(_), _) => {}
        (None, Some(r)) => trace.signals.push(Signal::new("reward", r >= 1.0, format!("reward = {r}"))),
        (None, None) => {}
    }
    if let Some((path, result)) = &trial {
        join_trial_result(&mut trace, path, result);
    }
    Some(trace)
}

/// Whether a JSON document is a Harbor trial's `result.json` (not its job's summary).
pub(crate) fn is_trial_result(v: &Value) -> bool {
    let has = |k: &str| v.get(k).is_some();
    !has("n_total_trials")
        && !has("steps")
        && (has("verifier_result")
            || (has("exception_info") && (has("trial_name") || has("task_name") || has("agent_info"))))
}

/// Why a Harbor trial's `result.json` is not a trace of its own. With the trial's
/// trajectory beside it, its reward is that trajectory's outcome. Without one (the agent
/// wrote none, or only the results were copied) it is refused rather than mined: it has no
/// steps, so no decisive step, no signature beyond "reward < 1" and no input to make a
/// case from; a trace with zero steps would only count as a failure nobody can act on.
pub(crate) fn trial_result_reason(path: &Path, result: &Value) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    let beside = [dir.join("agent").join("trajectory.json"), dir.join("trajectory.json")];
    if beside.iter().any(|p| p.is_file()) {
        return "not a trace: a Harbor trial result (its reward is the outcome of agent/trajectory.json beside it)"
            .into();
    }
    let reward = trial_reward(result).map_or_else(|| "no reward".to_string(), |r| format!("reward {r}"));
    let exception = result
        .get("exception_info")
        .and_then(|e| str_of(e, "exception_type"))
        .map(|t| format!(", {t}"))
        .unwrap_or_default();
    format!(
        "not a trace: a Harbor trial result ({reward}{exception}) without its trajectory: no agent/trajectory.json \
         beside it, so there are no steps to analyse; keep the trial's agent/ folder (Harbor writes the ATIF \
         trajectory there) and mine the trial folder"
    )
}

fn trial_reward(result: &Value) -> Option<f64> {
    let vr = result.get("verifier_result")?;
    json::path(vr, &["rewards", "reward"]).or_else(|| vr.get("reward")).and_then(as_f64)
}

/// `<trial>/result.json` for `<trial>/agent/trajectory.json` (or a result beside the file).
fn harbor_result(traj_path: &str) -> Option<(PathBuf, Value)> {
    let dir = Path::new(traj_path).parent()?;
    let mut candidates = vec![];
    if dir.file_name().is_some_and(|n| n == "agent") {
        candidates.extend(dir.parent().map(|t| t.join("result.json")));
    }
    candidates.push(dir.join("result.json"));
    candidates.into_iter().find_map(|p| {
        let meta = std::fs::metadata(&p).ok()?;
        if !meta.is_file() || meta.len() > 16 * 1024 * 1024 {
            return None;
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
        is_trial_result(&v).then_some((p, v))
    })
}

fn join_trial_result(trace: &mut Trace, path: &Path, result: &Value) {
    let at = path.display();
    if let Some(r) = trial_reward(result) {
        trace.signals.push(Signal::new("reward", r >= 1.0, format!("reward = {r} ({at})")));
    }
    if let Some(e) = result.get("exception_info").filter(|e| e.is_object()) {
        let ty = str_of(e, "exception_type").unwrap_or("exception");
        let msg = str_of(e, "exception_message").unwrap_or("");
        let msg = msg.strip_prefix(ty).map(|m| m.trim_start_matches([':', ' '])).unwrap_or(msg);
        let detail = format!("{ty}: {} ({at})", json::clip(msg, 200));
        trace.signals.push(Signal::new("exception", false, detail));
    }
    for key in ["task_name", "trial_name"] {
        if let Some(v) = result.get(key).filter(|v| v.is_string()) {
            trace.attributes.insert(format!("harbor.{key}"), v.clone());
        }
    }
    if trace.cost_usd.is_none() {
        trace.cost_usd = json::path(result, &["agent_result", "cost_usd"]).and_then(as_f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::formats::run_on_values;
    use crate::trace::model::StepKind;

    #[test]
    fn steps_calls_and_observations() {
        let doc = json!({
            "schema_version": "ATIF-v1.4", "session_id": "s-1",
            "agent": {"name": "terminus-2", "version": "1", "model_name": "m"},
            "steps": [
                {"step_id": 1, "source": "user", "message": "make hello.txt"},
                {"step_id": 2, "source": "agent", "message": "ok",
                 "tool_calls": [{"tool_call_id": "c1", "function_name": "bash", "arguments": {"cmd": "echo hi > hello.txt"}}],
                 "observation": {"results": [{"source_call_id": "c1", "content": "bash: permission denied", "is_error": true}]},
                 "metrics": {"prompt_tokens": 10, "completion_tokens": 3, "cost_usd": 0.01}}
            ],
            "final_metrics": {"total_prompt_tokens": 10, "total_completion_tokens": 3},
            "extra": {"reward": 0.0}
        });
        let (traces, warnings) = run_on_values(parse, "trajectory.json", vec![doc, json!({"x": 1})]);
        assert_eq!(warnings.len(), 1);
        let t = &traces[0];
        assert_eq!(t.id, "s-1");
        assert_eq!(t.name.as_deref(), Some("terminus-2"));
        let kinds: Vec<StepKind> = t.steps.iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [StepKind::User, StepKind::Llm, StepKind::Tool]);
        let tool = &t.steps[2];
        assert_eq!(tool.tool_call.as_ref().unwrap().name, "bash");
        assert!(tool.error.is_some());
        assert_eq!(t.steps[1].usage.input_tokens, Some(10));
        assert_eq!(t.usage.output_tokens, Some(3));
        assert!(!t.signals[0].passed);
        assert_eq!(t.task, Some(json!("make hello.txt")));
    }
}
