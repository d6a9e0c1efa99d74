//! Deriving a trace's outcome (passed / failed / unknown) with its evidence.
//!
//! Rules, strongest first:
//! 1. An explicit run-level signal that says the run failed (reward < 1, a non-submitted
//!    exit status, a `result` error subtype, `is_correct: false`, a failing score label)
//!    fails the trace.
//! 2. An unhandled error fails the trace. An error is *handled* when the agent went on
//!    after it: a later model call that is not one of its ancestors (the tool error was
//!    fed back to the model). Errors on the root step, terminal errors (max turns, aborted)
//!    and errors with no progress after them are unhandled. Errors propagate up: the
//!    evidence names the deepest failing step, not the root that merely inherited it.
//! 3. An explicit success signal with no failure passes the trace.
//! 4. Otherwise the outcome is unknown: absence of evidence is not success.
//!
//! Handled errors are kept as evidence (marked `handled`) because mining still wants them.

use super::model::{ErrorSource, Evidence, Outcome, OutcomeStatus, Step, StepKind, Trace};

const FAILING_LABELS: [&str; 9] =
    ["fail", "failed", "failure", "incorrect", "wrong", "hallucinated", "thumbs_down", "negative", "bad"];
const PASSING_LABELS: [&str; 6] = ["pass", "passed", "correct", "success", "thumbs_up", "positive"];

pub fn derive(trace: &mut Trace) {
    let mut failing = Vec::new();
    let mut passing = Vec::new();

    for signal in &trace.signals {
        let ev = Evidence {
            signal: format!("signal:{}", signal.kind),
            detail: signal.detail.clone(),
            step: signal.step.clone(),
            handled: false,
        };
        if signal.passed {
            passing.push(ev);
        } else {
            failing.push(ev);
        }
    }

    let scores = trace
        .scores
        .iter()
        .map(|s| (s, None))
        .chain(trace.steps.iter().flat_map(|st| st.scores.iter().map(move |s| (s, Some(st.id.clone())))));
    for (score, step) in scores {
        let Some(label) = score.label.as_deref().map(str::to_ascii_lowercase) else {
            continue;
        };
        let detail = format!("score `{}` = {label}", score.name);
        let ev = Evidence { signal: "score".into(), detail, step, handled: false };
        if FAILING_LABELS.contains(&label.as_str()) {
            failing.push(ev);
        } else if PASSING_LABELS.contains(&label.as_str()) {
            passing.push(ev);
        }
    }

    let parents = ParentIndex::new(&trace.steps);
    let mut handled = Vec::new();
    for (idx, step) in trace.steps.iter().enumerate() {
        let Some(error) = &step.error else { continue };
        // A parent that failed only because this child did is not separate evidence.
        if parents.has_failing_child(idx, &trace.steps) && error_is_inherited(step, &trace.steps, &parents, idx) {
            continue;
        }
        let source = error.source.map(|s| format!("{s:?}")).unwrap_or_else(|| "Unknown".into());
        let mut detail = String::new();
        if let Some(t) = &error.r#type {
            detail.push_str(t);
        }
        if let Some(m) = &error.message {
            // Messages often repeat their type ("TimeoutError: …"): say it once.
            let m = m.strip_prefix(detail.as_str()).map(|r| r.trim_start_matches([':', ' '])).unwrap_or(m);
            if !detail.is_empty() && !m.is_empty() {
                detail.push_str(": ");
            }
            detail.push_str(&super::json::clip(m, 200));
        }
        if detail.is_empty() {
            detail = format!("{} step `{}` failed", step.kind.as_str(), step.name.as_deref().unwrap_or(&step.id));
        }
        let was_handled = is_handled(idx, &trace.steps, &parents);
        let ev = Evidence {
            signal: format!("error:{}", to_snake(&source)),
            detail,
            step: Some(step.id.clone()),
            handled: was_handled,
        };
        if was_handled {
            handled.push(ev);
        } else {
            failing.push(ev);
        }
    }

    let status = if !failing.is_empty() {
        OutcomeStatus::Failed
    } else if !passing.is_empty() {
        OutcomeStatus::Passed
    } else {
        OutcomeStatus::Unknown
    };
    let mut evidence = failing;
    evidence.extend(passing);
    evidence.extend(handled);
    trace.outcome = Outcome { status, evidence };
}

/// `SpanStatus` → `span_status` (error sources in evidence and signatures).
pub(crate) fn to_snake(debug_name: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug_name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

struct ParentIndex {
    /// parent arena index per step (None = root or orphan).
    parent: Vec<Option<usize>>,
}

impl ParentIndex {
    fn new(steps: &[Step]) -> ParentIndex {
        let by_id: std::collections::HashMap<&str, usize> =
            steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
        let parent = steps
            .iter()
            .enumerate()
            .map(|(i, s)| s.parent_id.as_deref().and_then(|p| by_id.get(p).copied()).filter(|&p| p != i))
            .collect();
        ParentIndex { parent }
    }

    fn ancestors(&self, mut idx: usize) -> impl Iterator<Item = usize> + '_ {
        let mut guard = 0;
        std::iter::from_fn(move || {
            let p = self.parent[idx]?;
            guard += 1;
            if guard > 10_000 {
                return None; // a cycle in bad input
            }
            idx = p;
            Some(p)
        })
    }

    fn is_ancestor(&self, maybe_ancestor: usize, of: usize) -> bool {
        self.ancestors(of).any(|a| a == maybe_ancestor)
    }

    fn has_failing_child(&self, idx: usize, steps: &[Step]) -> bool {
        self.parent.iter().enumerate().any(|(child, p)| *p == Some(idx) && steps[child].error.is_some())
    }
}

/// The parent's error repeats a child's (same message, or the generic wrapper messages
/// frameworks put on ancestors).
fn error_is_inherited(step: &Step, steps: &[Step], parents: &ParentIndex, idx: usize) -> bool {
    let Some(err) = &step.error else { return false };
    if err.source == Some(ErrorSource::Terminal) {
        return false;
    }
    let children = parents
        .parent
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == Some(idx))
        .filter_map(|(c, _)| steps[c].error.as_ref());
    for child in children {
        let same_type = err.r#type.is_some() && err.r#type == child.r#type;
        let contains = match (&err.message, &child.message) {
            (Some(p), Some(c)) => p.contains(c.as_str()) || c.contains(p.as_str()),
            (None, _) => true,
            _ => false,
        };
        if same_type || contains {
            return true;
        }
    }
    // Status-only error on a parent (no message of its own) inherits from any failing child.
    err.message.is_none() && err.r#type.is_none()
}

fn is_handled(idx: usize, steps: &[Step], parents: &ParentIndex) -> bool {
    let step = &steps[idx];
    let err = step.error.as_ref().expect("error step");
    if err.source == Some(ErrorSource::Terminal) {
        return false;
    }
    if parents.parent[idx].is_none() && steps.len() > 1 && !is_linear(steps) {
        // The root of a span tree: the run itself failed.
        return false;
    }
    let end = step.end.or(step.start);
    steps.iter().enumerate().any(|(j, later)| {
        j != idx
            && later.seq > step.seq
            && later.kind == StepKind::Llm
            && later.error.is_none()
            && !parents.is_ancestor(j, idx)
            && match (end, later.start) {
                (Some(e), Some(s)) => s >= e,
                _ => true,
            }
    })
}

/// Linear transcripts have no tree: every step is a root.
fn is_linear(steps: &[Step]) -> bool {
    steps.iter().all(|s| s.parent_id.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::{ErrorInfo, Signal};

    fn step(id: &str, parent: Option<&str>, seq: u32, kind: StepKind, error: Option<&str>) -> Step {
        Step {
            id: id.into(),
            parent_id: parent.map(Into::into),
            seq,
            kind,
            error: error.map(|m| ErrorInfo::new(ErrorSource::SpanStatus).with_message(m)),
            ..Step::default()
        }
    }

    fn outcome(steps: Vec<Step>, signals: Vec<Signal>) -> Outcome {
        let mut t = Trace { steps, signals, ..Trace::default() };
        derive(&mut t);
        t.outcome
    }

    #[test]
    fn no_evidence_is_unknown() {
        let o = outcome(vec![step("a", None, 0, StepKind::Agent, None)], vec![]);
        assert_eq!(o.status, OutcomeStatus::Unknown);
    }

    #[test]
    fn error_on_a_child_propagates_and_names_the_child() {
        let o = outcome(
            vec![
                step("root", None, 0, StepKind::Agent, Some("boom")),
                step("llm", Some("root"), 1, StepKind::Llm, Some("boom")),
            ],
            vec![],
        );
        assert_eq!(o.status, OutcomeStatus::Failed);
        assert_eq!(o.evidence[0].step.as_deref(), Some("llm"));
        assert_eq!(o.evidence.len(), 1);
    }

    #[test]
    fn tool_error_fed_back_to_the_model_is_handled() {
        let o = outcome(
            vec![
                step("root", None, 0, StepKind::Agent, None),
                step("tool", Some("root"), 1, StepKind::Tool, Some("PermissionError")),
                step("llm", Some("root"), 2, StepKind::Llm, None),
            ],
            vec![],
        );
        assert_eq!(o.status, OutcomeStatus::Unknown);
        assert!(o.evidence[0].handled);
    }

    #[test]
    fn last_tool_error_is_unhandled() {
        let o = outcome(
            vec![
                step("root", None, 0, StepKind::Agent, None),
                step("llm", Some("root"), 1, StepKind::Llm, None),
                step("tool", Some("root"), 2, StepKind::Tool, Some("exit 1")),
            ],
            vec![],
        );
        assert_eq!(o.status, OutcomeStatus::Failed);
    }

    #[test]
    fn signals_decide() {
        let o = outcome(vec![], vec![Signal::new("reward", false, "reward = 0")]);
        assert_eq!(o.status, OutcomeStatus::Failed);
        let o = outcome(vec![], vec![Signal::new("reward", true, "reward = 1")]);
        assert_eq!(o.status, OutcomeStatus::Passed);
    }
}
