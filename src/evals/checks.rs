//! Graders: each check of a case judged on one finished trial (its output, exit, its own
//! trace and result file). A trial passes when the harness ran and every check passes;
//! the harness's own `pass` in its result file is one check among the others.
//!
//! `command` checks run a process and are executed by the trial runner; everything else
//! is a pure function of the trial's evidence.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mine::failure::Failure;
use crate::trace::model::{OutcomeStatus, StepKind, Trace};

/// The optional `AUTOHARNESS_RESULT` file a harness may write.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResultFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Any other named scores the harness reports (`score_at_least` may name them).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// What a check sees of a finished trial.
#[derive(Debug, Clone, Copy)]
pub struct TrialView<'a> {
    pub output: &'a str,
    /// The command exited 0 (no timeout, no kill, no crash).
    pub exited_ok: bool,
    pub trace: Option<&'a Trace>,
    /// Why there is no usable trace (not written, unreadable, not a trace format).
    pub trace_problem: Option<&'a str>,
    /// The trace's failure as mining analyses it (`None` when the trace did not fail).
    pub failure: Option<&'a Failure>,
    pub result: Option<&'a ResultFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub kind: String,
    pub passed: bool,
    /// Why, for people: what was expected and what was seen.
    pub detail: String,
}

impl CheckOutcome {
    fn new(kind: &str, passed: bool, detail: impl Into<String>) -> CheckOutcome {
        CheckOutcome { kind: kind.into(), passed, detail: detail.into() }
    }
}

/// The kind of a check (`no_error`, `command`…), or `?` when it has none.
pub fn kind_of(check: &Value) -> &str {
    check.get("kind").and_then(Value::as_str).unwrap_or("?")
}

/// Judge one check. `None` for `command` checks, which the runner executes.
pub fn evaluate(check: &Value, view: &TrialView) -> Option<CheckOutcome> {
    let kind = kind_of(check);
    let str_field = |k: &str| check.get(k).and_then(Value::as_str);
    let num_field = |k: &str| check.get(k).and_then(Value::as_f64);
    Some(match kind {
        "no_error" => no_error(view),
        "not_signature" => match str_field("signature") {
            Some(sig) => not_signature(sig, view),
            None => CheckOutcome::new(kind, false, "check has no `signature`"),
        },
        "output_contains" => match str_field("value") {
            Some(v) => {
                let found = view.output.to_lowercase().contains(&v.to_lowercase());
                let detail = if found {
                    format!("output contains {v:?}")
                } else {
                    format!("output does not contain {v:?} (output: {:?})", clip(view.output, 160))
                };
                CheckOutcome::new(kind, found, detail)
            }
            None => CheckOutcome::new(kind, false, "check has no `value`"),
        },
        "output_regex" => match str_field("pattern").map(regex::Regex::new) {
            Some(Ok(re)) => {
                let found = re.is_match(view.output);
                CheckOutcome::new(
                    kind,
                    found,
                    if found {
                        format!("output matches /{}/", re.as_str())
                    } else {
                        format!("output does not match /{}/ (output: {:?})", re.as_str(), clip(view.output, 160))
                    },
                )
            }
            Some(Err(e)) => CheckOutcome::new(kind, false, format!("invalid pattern: {e}")),
            None => CheckOutcome::new(kind, false, "check has no `pattern`"),
        },
        "tool_called" => match (str_field("name"), view.trace) {
            (None, _) => CheckOutcome::new(kind, false, "check has no `name`"),
            (Some(_), None) => CheckOutcome::new(kind, false, no_trace(view)),
            (Some(name), Some(trace)) => {
                let min = num_field("min").unwrap_or(1.0) as usize;
                let max = num_field("max").map(|m| m as usize);
                let n = tool_calls(trace, name);
                let ok = n >= min && max.is_none_or(|m| n <= m);
                let want = match max {
                    Some(m) => format!("{min}..={m}"),
                    None => format!("at least {min}"),
                };
                CheckOutcome::new(kind, ok, format!("`{name}` called {n} time(s), want {want}"))
            }
        },
        "max_steps" => match (num_field("value"), view.trace) {
            (None, _) => CheckOutcome::new(kind, false, "check has no `value`"),
            (Some(_), None) => CheckOutcome::new(kind, false, no_trace(view)),
            (Some(limit), Some(trace)) => {
                let n = trace.steps.iter().filter(|s| matches!(s.kind, StepKind::Llm | StepKind::Tool)).count();
                CheckOutcome::new(kind, n as f64 <= limit, format!("{n} model/tool steps, at most {limit}"))
            }
        },
        "score_at_least" => {
            let name = str_field("name").unwrap_or("score");
            let Some(want) = num_field("value") else {
                return Some(CheckOutcome::new(kind, false, "check has no `value`"));
            };
            match find_score(name, view) {
                Some(got) => CheckOutcome::new(kind, got >= want, format!("`{name}` = {got}, want at least {want}")),
                None => CheckOutcome::new(
                    kind,
                    false,
                    format!("no score `{name}` in the result file or the trace (want at least {want})"),
                ),
            }
        }
        "llm_judge" => CheckOutcome::new(
            kind,
            false,
            "no LLM provider configured: an llm_judge check needs a [proposer] provider in autoharness.toml",
        ),
        "command" => return None,
        other => CheckOutcome::new(
            other,
            false,
            format!(
                "unknown check kind `{other}` (known: no_error, not_signature, output_contains, output_regex, tool_called, max_steps, score_at_least, command, llm_judge)"
            ),
        ),
    })
}

/// The harness's own verdict in its result file, as a check.
pub fn result_pass(view: &TrialView) -> Option<CheckOutcome> {
    let pass = view.result?.pass?;
    Some(CheckOutcome::new(
        "result_pass",
        pass,
        if pass { "the harness reported pass" } else { "the harness reported pass = false" },
    ))
}

fn no_error(view: &TrialView) -> CheckOutcome {
    if !view.exited_ok {
        return CheckOutcome::new("no_error", false, "the harness did not exit 0");
    }
    match view.trace {
        Some(t) if t.outcome.status == OutcomeStatus::Failed => {
            let ev = t.outcome.evidence.first().map(|e| e.detail.as_str()).unwrap_or("failed");
            CheckOutcome::new("no_error", false, format!("the trace failed: {}", clip(ev, 200)))
        }
        _ => CheckOutcome::new("no_error", true, "exit 0 and no unhandled error in the trace"),
    }
}

fn not_signature(signature: &str, view: &TrialView) -> CheckOutcome {
    if view.trace.is_none() {
        // Without a trace the failure cannot be recognised; `no_error` judges the exit.
        return CheckOutcome::new("not_signature", true, format!("no trace to compare ({})", no_trace(view)));
    }
    match view.failure {
        Some(f) if f.signature.canonical() == signature => {
            CheckOutcome::new("not_signature", false, format!("the mined failure came back: {}", clip(&f.message, 200)))
        }
        Some(f) => CheckOutcome::new(
            "not_signature",
            true,
            format!("failed differently: {}", clip(&f.signature.template, 160)),
        ),
        None => CheckOutcome::new("not_signature", true, "the trace did not fail"),
    }
}

fn no_trace(view: &TrialView) -> String {
    view.trace_problem.unwrap_or("the harness wrote no trace").to_string()
}

/// Tool calls of `name` in a trace: tool steps by their call's name or their own name.
pub fn tool_calls(trace: &Trace, name: &str) -> usize {
    trace
        .steps
        .iter()
        .filter(|s| {
            s.tool_call.as_ref().is_some_and(|c| c.name == name)
                || (s.kind == StepKind::Tool && s.tool_call.is_none() && s.name.as_deref() == Some(name))
        })
        .count()
}

fn find_score(name: &str, view: &TrialView) -> Option<f64> {
    if let Some(r) = view.result {
        if let Some(v) = r.extra.get(name).and_then(Value::as_f64) {
            return Some(v);
        }
        if matches!(name, "score" | "reward")
            && let Some(s) = r.score
        {
            return Some(s);
        }
    }
    let trace = view.trace?;
    trace
        .scores
        .iter()
        .chain(trace.steps.iter().flat_map(|s| s.scores.iter()))
        .find(|s| s.name == name)
        .and_then(|s| s.value)
}

fn clip(s: &str, max: usize) -> String {
    crate::trace::json::clip(s.trim(), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view<'a>(output: &'a str, result: Option<&'a ResultFile>) -> TrialView<'a> {
        TrialView { output, exited_ok: true, trace: None, trace_problem: None, failure: None, result }
    }

    #[test]
    fn output_checks() {
        let v = view("Refund of $42 issued for order #W1", None);
        assert!(evaluate(&json!({"kind": "output_contains", "value": "refund of"}), &v).unwrap().passed);
        assert!(!evaluate(&json!({"kind": "output_contains", "value": "cancelled"}), &v).unwrap().passed);
        assert!(evaluate(&json!({"kind": "output_regex", "pattern": r"#W\d"}), &v).unwrap().passed);
        let bad = evaluate(&json!({"kind": "output_regex", "pattern": "("}), &v).unwrap();
        assert!(!bad.passed && bad.detail.contains("invalid pattern"));
    }

    #[test]
    fn scores_come_from_the_result_file() {
        let r: ResultFile = serde_json::from_value(json!({"score": 0.5, "accuracy": 0.9})).unwrap();
        let v = view("", Some(&r));
        assert!(!evaluate(&json!({"kind": "score_at_least", "name": "reward", "value": 1.0}), &v).unwrap().passed);
        assert!(evaluate(&json!({"kind": "score_at_least", "name": "accuracy", "value": 0.8}), &v).unwrap().passed);
        let missing = evaluate(&json!({"kind": "score_at_least", "name": "f1", "value": 0.1}), &v).unwrap();
        assert!(!missing.passed && missing.detail.contains("no score"));
    }

    #[test]
    fn no_provider_is_a_failure_not_a_pass() {
        let v = view("", None);
        let j = evaluate(&json!({"kind": "llm_judge", "rubric": "polite"}), &v).unwrap();
        assert!(!j.passed && j.detail.contains("no LLM provider"));
        assert!(evaluate(&json!({"kind": "command", "run": "true"}), &v).is_none());
        assert!(!evaluate(&json!({"kind": "telepathy"}), &v).unwrap().passed);
    }

    #[test]
    fn trace_checks_without_a_trace_fail_clearly() {
        let v = TrialView { trace_problem: Some("the harness wrote no trace"), ..view("", None) };
        let t = evaluate(&json!({"kind": "tool_called", "name": "get_order"}), &v).unwrap();
        assert!(!t.passed && t.detail.contains("no trace"));
        // not_signature cannot see the failure without a trace; no_error judges the exit.
        assert!(evaluate(&json!({"kind": "not_signature", "signature": "x"}), &v).unwrap().passed);
        let crashed = TrialView { exited_ok: false, ..v };
        assert!(!evaluate(&json!({"kind": "no_error"}), &crashed).unwrap().passed);
    }
}
