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

/// One check of a case, as the case format defines it (docs/cases.md). Parsed when a case
/// is loaded, so a typo or a bad regex is an error before any trial runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// The harness exited 0 and its trace (if any) shows no unhandled error.
    NoError {},
    /// The trial's own trace does not fail with this mining signature.
    NotSignature { signature: String },
    /// stdout contains `value` (case-insensitive).
    OutputContains { value: String },
    /// stdout matches the regular expression `pattern` (Rust `regex` syntax).
    OutputRegex { pattern: String },
    /// The trace shows between `min` (default 1) and `max` calls of tool `name`.
    ToolCalled {
        name: String,
        #[serde(default = "one")]
        min: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
    /// The trace has at most `value` model and tool steps.
    MaxSteps { value: u64 },
    /// A named score (result file, or the trace's scores) is at least `value`.
    ScoreAtLeast {
        #[serde(default = "score_name")]
        name: String,
        value: f64,
    },
    /// A command run in the trial's copy exits 0 (stdin: the output).
    Command { run: String },
    /// A model judges the output against a rubric. Not supported yet: refused at load.
    LlmJudge {
        rubric: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
    },
}

fn one() -> u64 {
    1
}

fn score_name() -> String {
    "score".into()
}

/// Every check kind, for messages and the docs.
pub const CHECK_KINDS: &str =
    "no_error, not_signature, output_contains, output_regex, tool_called, max_steps, score_at_least, command";

impl Check {
    /// Parse and validate one check (`checks[i]` of a case file): the message says what is
    /// wrong in the words of the format.
    pub fn parse(value: &Value) -> Result<Check, String> {
        let kind = match value.get("kind") {
            Some(Value::String(k)) => k.as_str(),
            Some(other) => return Err(format!("`kind` must be a string, not {other}")),
            None if value.is_object() => return Err(format!("no `kind` (one of {CHECK_KINDS})")),
            None => return Err(format!("a check is an object with a `kind`, not {}", short(value))),
        };
        let check: Check = serde_json::from_value(value.clone()).map_err(|e| {
            let e = e.to_string();
            if e.starts_with("unknown variant") {
                format!("unknown check kind `{kind}` (known: {CHECK_KINDS})")
            } else {
                e
            }
        })?;
        match &check {
            Check::OutputRegex { pattern } => {
                regex::Regex::new(pattern).map_err(|e| format!("`pattern` is not a valid regex: {e}"))?;
            }
            Check::ToolCalled { min, max: Some(max), .. } if max < min => {
                return Err(format!("`max` ({max}) is below `min` ({min})"));
            }
            Check::ScoreAtLeast { value, .. } if !value.is_finite() => {
                return Err("`value` must be a finite number".into());
            }
            Check::Command { run } if run.trim().is_empty() => return Err("`run` is empty".into()),
            Check::LlmJudge { .. } => {
                return Err("`llm_judge` checks are not supported yet: no model is asked at trial time; \
                     use `command` with your own judge script, or `output_regex`"
                    .into());
            }
            _ => {}
        }
        Ok(check)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Check::NoError {} => "no_error",
            Check::NotSignature { .. } => "not_signature",
            Check::OutputContains { .. } => "output_contains",
            Check::OutputRegex { .. } => "output_regex",
            Check::ToolCalled { .. } => "tool_called",
            Check::MaxSteps { .. } => "max_steps",
            Check::ScoreAtLeast { .. } => "score_at_least",
            Check::Command { .. } => "command",
            Check::LlmJudge { .. } => "llm_judge",
        }
    }
}

fn short(v: &Value) -> String {
    crate::trace::json::clip(&v.to_string(), 60)
}

/// Judge one check. `None` for `command` checks, which the runner executes.
pub fn evaluate(check: &Check, view: &TrialView) -> Option<CheckOutcome> {
    let kind = check.kind();
    Some(match check {
        Check::NoError {} => no_error(view),
        Check::NotSignature { signature } => not_signature(signature, view),
        Check::OutputContains { value: v } => {
            let found = view.output.to_lowercase().contains(&v.to_lowercase());
            let detail = if found {
                format!("output contains {v:?}")
            } else {
                format!("output does not contain {v:?} (output: {:?})", clip(view.output, 160))
            };
            CheckOutcome::new(kind, found, detail)
        }
        Check::OutputRegex { pattern } => match regex::Regex::new(pattern) {
            Ok(re) => {
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
            Err(e) => CheckOutcome::new(kind, false, format!("invalid pattern: {e}")),
        },
        Check::ToolCalled { name, min, max } => match view.trace {
            None => CheckOutcome::new(kind, false, no_trace(view)),
            Some(trace) => {
                let n = tool_calls(trace, name) as u64;
                let ok = n >= *min && max.is_none_or(|m| n <= m);
                let want = match max {
                    Some(m) => format!("{min}..={m}"),
                    None => format!("at least {min}"),
                };
                CheckOutcome::new(kind, ok, format!("`{name}` called {n} time(s), want {want}"))
            }
        },
        Check::MaxSteps { value: limit } => match view.trace {
            None => CheckOutcome::new(kind, false, no_trace(view)),
            Some(trace) => {
                let n = trace.steps.iter().filter(|s| matches!(s.kind, StepKind::Llm | StepKind::Tool)).count() as u64;
                CheckOutcome::new(kind, n <= *limit, format!("{n} model/tool steps, at most {limit}"))
            }
        },
        Check::ScoreAtLeast { name, value: want } => match find_score(name, view) {
            Some(got) => CheckOutcome::new(kind, got >= *want, format!("`{name}` = {got}, want at least {want}")),
            None => CheckOutcome::new(
                kind,
                false,
                format!("no score `{name}` in the result file or the trace (want at least {want})"),
            ),
        },
        Check::LlmJudge { .. } => CheckOutcome::new(kind, false, "llm_judge checks are not supported yet"),
        Check::Command { .. } => return None,
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

    fn eval(v: Value, view: &TrialView) -> Option<CheckOutcome> {
        evaluate(&Check::parse(&v).unwrap(), view)
    }

    #[test]
    fn output_checks() {
        let v = view("Refund of $42 issued for order #W1", None);
        assert!(eval(json!({"kind": "output_contains", "value": "refund of"}), &v).unwrap().passed);
        assert!(!eval(json!({"kind": "output_contains", "value": "cancelled"}), &v).unwrap().passed);
        assert!(eval(json!({"kind": "output_regex", "pattern": r"#W\d"}), &v).unwrap().passed);
    }

    #[test]
    fn bad_checks_are_refused_when_parsed() {
        let err = |v: Value| Check::parse(&v).unwrap_err();
        assert!(err(json!({"kind": "output_regex", "pattern": "("})).contains("not a valid regex"));
        assert!(err(json!({"kind": "telepathy"})).contains("unknown check kind `telepathy`"));
        assert!(err(json!({"kind": "output_contains", "valeu": "x"})).contains("unknown field `valeu`"));
        assert!(err(json!({"kind": "output_contains"})).contains("missing field `value`"));
        assert!(err(json!({"kind": "max_steps", "value": "ten"})).contains("invalid type"));
        assert!(err(json!({"kind": "tool_called", "name": "a", "min": 3, "max": 1})).contains("below"));
        assert!(err(json!({"value": "x"})).contains("no `kind`"));
        assert!(err(json!("no_error")).contains("an object"));
        assert!(err(json!({"kind": "llm_judge", "rubric": "polite"})).contains("not supported yet"));
        let t = Check::parse(&json!({"kind": "tool_called", "name": "get_order"})).unwrap();
        assert_eq!(t, Check::ToolCalled { name: "get_order".into(), min: 1, max: None });
    }

    #[test]
    fn scores_come_from_the_result_file() {
        let r: ResultFile = serde_json::from_value(json!({"score": 0.5, "accuracy": 0.9})).unwrap();
        let v = view("", Some(&r));
        assert!(!eval(json!({"kind": "score_at_least", "name": "reward", "value": 1.0}), &v).unwrap().passed);
        assert!(eval(json!({"kind": "score_at_least", "name": "accuracy", "value": 0.8}), &v).unwrap().passed);
        let missing = eval(json!({"kind": "score_at_least", "name": "f1", "value": 0.1}), &v).unwrap();
        assert!(!missing.passed && missing.detail.contains("no score"));
        assert!(eval(json!({"kind": "command", "run": "true"}), &v).is_none());
    }

    #[test]
    fn trace_checks_without_a_trace_fail_clearly() {
        let v = TrialView { trace_problem: Some("the harness wrote no trace"), ..view("", None) };
        let t = eval(json!({"kind": "tool_called", "name": "get_order"}), &v).unwrap();
        assert!(!t.passed && t.detail.contains("no trace"));
        // not_signature cannot see the failure without a trace; no_error judges the exit.
        assert!(eval(json!({"kind": "not_signature", "signature": "x"}), &v).unwrap().passed);
        let crashed = TrialView { exited_ok: false, ..v };
        assert!(!eval(json!({"kind": "no_error"}), &crashed).unwrap().passed);
    }
}
