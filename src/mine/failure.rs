//! Failure analysis: for a failed trace, find the decisive failing step (the earliest step
//! whose failure explains the outcome), classify it as infrastructure or capability, build
//! its signature and the text its similarity is judged on, and keep what an eval case
//! needs (the task input, recorded tool results, ground truth).
//!
//! Signals, in the order they are trusted: unhandled errors (explicit error fields first,
//! text heuristics last), missing or wrong actions against the task's expected actions and
//! expected outputs never given, repeated identical tool calls, complaints of the
//! (simulated) user, handled errors that preceded a failing verdict, policy refusals, a
//! failing run-level signal with a step, and finally the last model turn.
//!
//! **Invariant:** nothing here reads benchmark labels; the model never carries them.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::class::{FailureClass, classify};
use super::signature::{Signature, template};
use super::verdict;
use crate::trace::json::clip;
use crate::trace::model::{ErrorSource, Nanos, OutcomeStatus, Step, StepKind, Trace, value_text};

/// One failed trace, analysed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub trace_id: String,
    pub file: String,
    pub format: String,
    /// Position of the trace in its file.
    pub trace_seq: usize,
    pub infra: bool,
    pub signature: Signature,
    pub step_id: Option<String>,
    /// Every step id of the trace, for checking a judge's answer (`mine --judge`); not stored.
    #[serde(default, skip)]
    pub step_ids: Vec<String>,
    /// The trace recorded no outcome: a failure only if a rubric judge says so (`mine
    /// --judge` with `[judge.rubric]`), never stored as one otherwise; not stored.
    #[serde(default, skip)]
    pub unknown_outcome: bool,
    /// Index of the decisive step in source order (for transcripts: the message index).
    pub step_index: Option<usize>,
    pub message: String,
    /// Text of the decisive step and its neighbourhood, for similarity. It opens with a
    /// header autoharness wrote (the offline cause and message); see `header_len`.
    pub text: String,
    /// Bytes of `text` that are autoharness's header, not the trace's own text: a judge's
    /// quote must come from the trace (`judge::check`). 0 when read back from the store
    /// (not stored; stored failures are never checked against a quote).
    #[serde(default, skip)]
    pub header_len: usize,
    /// A short human-readable excerpt of the decisive step.
    pub excerpt: String,
    pub time: Option<Nanos>,
    pub cost_usd: Option<f64>,
    pub tokens: Option<u64>,
    pub seed: CaseSeed,
}

impl Failure {
    /// The header autoharness wrote at the top of `text` (the offline cause and message).
    pub fn header(&self) -> &str {
        self.text.get(..self.header_len).unwrap_or("")
    }

    /// `text` without the header: only what the trace itself holds.
    pub fn trace_text(&self) -> &str {
        self.text.get(self.header_len..).unwrap_or("")
    }
}

/// What an eval case needs from the trace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CaseSeed {
    /// The task input as the agent received it (never the expected answer).
    pub input: Value,
    /// Recorded tool results, for replay.
    pub fixtures: Vec<Value>,
    /// Checks from ground truth the trace carries.
    pub checks: Vec<Value>,
}

const TEXT_MAX: usize = 3000;
const EXCERPT_MAX: usize = 600;

/// Analyse a trace. `assume_failed` treats traces whose outcome is unknown as failures
/// (a folder of traces a person already flagged).
pub fn analyze(trace: &Trace, trace_seq: usize, assume_failed: bool) -> Option<Failure> {
    analyze_with_rules(trace, trace_seq, assume_failed, crate::mine::signature::rules())
}

/// [`analyze`] under the given signature rules (`signature::SIGNATURE_RULES_LATEST`).
pub fn analyze_with_rules(trace: &Trace, trace_seq: usize, assume_failed: bool, rules: u32) -> Option<Failure> {
    match trace.outcome.status {
        OutcomeStatus::Failed => {}
        OutcomeStatus::Unknown if assume_failed => {}
        _ => return None,
    }
    let order = source_order(trace);
    let found = unhandled_error(trace)
        .or_else(|| action_divergence(trace, &order))
        .or_else(|| repeated_call(trace, &order))
        .or_else(|| user_complaint(trace, &order))
        .or_else(|| handled_error(trace))
        .or_else(|| refusal(trace, &order))
        .or_else(|| terminal_signal(trace, &order));
    // Nothing raised: the verdict alone says the run failed, and its content says why.
    let (found, verdict) = match found {
        Some(d) => (deepest(trace, &order, d), None),
        None => {
            let (d, role) = verdict_only(trace, &order);
            (d, Some(role))
        }
    };
    let Decisive { step, signal, message, error_type } = found;
    let step_ref = step.map(|i| &trace.steps[i]);
    let tool = step_ref.and_then(|s| {
        s.tool_call
            .as_ref()
            .map(|c| c.name.clone())
            .or_else(|| (s.kind == StepKind::Tool).then(|| s.name.clone()).flatten())
    });
    let code = step_ref.and_then(|s| s.error.as_ref()).and_then(|e| e.code.as_deref());
    // Only errors are classed: a divergence from expected actions or a complaint has no
    // framework wording to normalise.
    let is_error = signal.starts_with("error:") || signal.starts_with("handled:");
    let class = is_error.then(|| classify(&message, error_type.as_deref(), code, step_ref)).flatten();
    let infra = class.map_or_else(|| is_infra(&message, error_type.as_deref(), step_ref), FailureClass::infra);
    let signature = match (class, verdict) {
        (_, Some((role, tool))) => Signature {
            kind: "capability".into(),
            signal: signal.clone(),
            step_kind: role,
            tool,
            error_type: None,
            // The cause, not the quote: the quote differs run to run, the cause does not.
            template: signal.trim_start_matches("verdict:").replace('_', " "),
        },
        // One root cause, one signature: the class alone, whichever step, tool or framework
        // words carried it (the words stay in `message` and `excerpt`).
        (Some(class), None) => Signature {
            kind: if infra { "infra" } else { "capability" }.into(),
            signal: "class".into(),
            step_kind: "-".into(),
            tool: None,
            error_type: Some(class.as_str().into()),
            template: class.as_str().into(),
        },
        // A tool's own error: the tool and what it said, whoever exported it (tool_error.rs).
        (None, None) if tool.is_some() && is_error && rules >= 2 => Signature {
            kind: if infra { "infra" } else { "capability" }.into(),
            signal: if signal.starts_with("handled:") { "tool_error:handled" } else { "tool_error" }.into(),
            step_kind: StepKind::Tool.as_str().into(),
            tool: tool.clone(),
            error_type: None,
            template: template(&crate::mine::tool_error::core_message(&message)),
        },
        (None, None) => Signature {
            kind: if infra { "infra" } else { "capability" }.into(),
            signal: signal.clone(),
            step_kind: step_ref.map(|s| s.kind.as_str()).unwrap_or("none").into(),
            tool: tool.clone(),
            error_type: error_type.clone(),
            template: template(&message),
        },
    };
    let (text, header_len) =
        neighbourhood_text(trace, &order, step, &signal, &message, tool.as_deref(), error_type.as_deref());
    let excerpt = step
        .map(|i| clip(&step_text(trace, &trace.steps[i]), EXCERPT_MAX))
        .unwrap_or_else(|| clip(&message, EXCERPT_MAX));
    // The signature names what failed (a terminal's exit code); the step names who decided it.
    let step = step.map(|i| caller(trace, &order, i));
    let step_ref = step.map(|i| &trace.steps[i]);
    Some(Failure {
        trace_id: trace.id.clone(),
        file: trace.source.path.clone(),
        format: trace.source.format.clone(),
        trace_seq,
        infra,
        signature,
        step_id: step_ref.map(|s| s.id.clone()),
        step_ids: order.iter().map(|&i| trace.steps[i].id.clone()).collect(),
        unknown_outcome: false,
        step_index: step,
        message: clip(&message, 2000),
        text,
        header_len,
        excerpt,
        time: trace.start.or(trace.end),
        cost_usd: trace.cost_usd,
        tokens: trace.usage.total(),
        seed: case_seed(trace),
    })
}

struct Decisive {
    step: Option<usize>,
    signal: String,
    message: String,
    error_type: Option<String>,
}

/// Step indices sorted by `seq` (source order).
fn source_order(trace: &Trace) -> Vec<usize> {
    let mut order: Vec<usize> = (0..trace.steps.len()).collect();
    order.sort_by_key(|&i| (trace.steps[i].seq, i));
    order
}

fn error_rank(source: Option<ErrorSource>) -> u8 {
    match source {
        Some(ErrorSource::Terminal) => 0,
        Some(ErrorSource::SpanStatus | ErrorSource::ErrorField | ErrorSource::Level | ErrorSource::Exception) => 1,
        Some(ErrorSource::ToolResultFlag | ErrorSource::ExitCode) => 2,
        Some(ErrorSource::TextHeuristic) | None => 3,
    }
}

fn decisive_from_step(trace: &Trace, idx: usize, prefix: &str) -> Decisive {
    let step = &trace.steps[idx];
    let err = step.error.clone().unwrap_or_default();
    let source = err.source.map(|s| format!("{s:?}")).unwrap_or_else(|| "Unknown".into());
    let mut message = err.message.clone().unwrap_or_default();
    if message.is_empty() {
        if let Some(r) = &step.tool_result {
            message = value_text(&r.content).into_owned();
        }
    }
    Decisive {
        step: Some(idx),
        signal: format!("{prefix}:{}", crate::trace::outcome::to_snake(&source)),
        message: first_lines(&message, 3),
        error_type: err.r#type.clone(),
    }
}

/// The earliest unhandled error, preferring explicit error fields over heuristics.
fn unhandled_error(trace: &Trace) -> Option<Decisive> {
    let mut best: Option<(u8, u32, usize)> = None;
    for ev in trace.outcome.evidence.iter().filter(|e| !e.handled && e.signal.starts_with("error:")) {
        let Some(idx) = ev.step.as_deref().and_then(|id| trace.step_index(id)) else {
            continue;
        };
        let step = &trace.steps[idx];
        let key = (error_rank(step.error.as_ref().and_then(|e| e.source)), step.seq, idx);
        if best.is_none_or(|b| key < b) {
            best = Some(key);
        }
    }
    best.map(|(_, _, idx)| decisive_from_step(trace, idx, "error"))
}

/// The deepest failing step under the chosen one that explains it: an agent or chain span
/// that re-raised its child's error is a wrapper, and its text ("Error in agent run: …") is
/// evidence, not the failure. A failing descendant explains the wrapper when nothing under
/// the wrapper ran after it (a tool error the agent handled and moved on from does not).
fn deepest(trace: &Trace, order: &[usize], found: Decisive) -> Decisive {
    let Some(start) = found.step else {
        return found;
    };
    if !found.signal.starts_with("error:") || trace.steps.len() < 2 {
        return found;
    }
    // Children by index, built once (traces can hold thousands of steps).
    let ids: HashMap<&str, usize> = trace.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); trace.steps.len()];
    for (i, s) in trace.steps.iter().enumerate() {
        if let Some(&p) = s.parent_id.as_deref().and_then(|p| ids.get(p)) {
            if p != i {
                children[p].push(i);
            }
        }
    }
    let rank: HashMap<usize, usize> = order.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let subtree = |root: usize| -> Vec<usize> {
        let mut seen = vec![false; trace.steps.len()];
        seen[root] = true;
        let mut stack = vec![root];
        let mut out = Vec::new();
        while let Some(i) = stack.pop() {
            for &c in &children[i] {
                if !seen[c] {
                    seen[c] = true;
                    out.push(c);
                    stack.push(c);
                }
            }
        }
        out.sort_by_key(|i| rank.get(i).copied().unwrap_or(usize::MAX));
        out
    };
    let mut idx = start;
    loop {
        let under = subtree(idx);
        let Some(&failing) = under.iter().rev().find(|&&i| trace.steps[i].error.is_some()) else {
            break;
        };
        let below: HashSet<usize> = subtree(failing).into_iter().collect();
        let seq = trace.steps[failing].seq;
        let later_work = under.iter().any(|&i| {
            let s = &trace.steps[i];
            s.seq > seq && s.error.is_none() && matches!(s.kind, StepKind::Llm | StepKind::Tool) && !below.contains(&i)
        });
        if later_work {
            break;
        }
        idx = failing;
    }
    if idx == start { found } else { decisive_from_step(trace, idx, "error") }
}

fn handled_error(trace: &Trace) -> Option<Decisive> {
    let idx = trace
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.error.is_some())
        .min_by_key(|(i, s)| (error_rank(s.error.as_ref().and_then(|e| e.source)), s.seq, *i))?
        .0;
    Some(decisive_from_step(trace, idx, "handled"))
}

/// Compare the tool calls made with the task's expected actions (τ-bench
/// `info.task.actions`). State-changing actions decide the verdict, so they are checked
/// first: the first expected write never taken, or taken with other arguments, or a write
/// that was not expected; then an expected output the user was never told. Read-only
/// lookups matter only when all of that matched. A task without expected actions is
/// judged on its outputs alone.
///
/// The tool stays part of the signature (DESIGN.md): "wrong arguments to
/// `return_delivered_order_items`" is a cluster someone can fix; a cluster of every wrong
/// argument to any tool is not (measured: it also scores worse on AgentRx, ARI 0.015).
fn action_divergence(trace: &Trace, order: &[usize]) -> Option<Decisive> {
    let expected = match trace.task.as_ref().and_then(|t| t.get("actions")).and_then(Value::as_array) {
        Some(e) if !e.is_empty() => e,
        _ => return output_divergence(trace, order),
    };
    let calls: Vec<(usize, &str, &Value)> = order
        .iter()
        .filter_map(|&i| trace.steps[i].tool_call.as_ref().map(|c| (i, c.name.as_str(), &c.arguments)))
        .collect();
    let exp: Vec<(&str, &Value)> = expected
        .iter()
        .filter_map(|a| {
            Some((a.get("name")?.as_str()?, a.get("kwargs").or_else(|| a.get("arguments")).unwrap_or(&Value::Null)))
        })
        .collect();
    let matches = |name: &str, args: &Value, en: &str, ea: &Value| name == en && args_equal(args, ea);
    let last_llm = order.iter().rev().find(|&&i| trace.steps[i].kind == StepKind::Llm).copied();
    // The first expected action (of those that pass `wanted`) never taken as expected.
    let first_unmatched = |wanted: fn(&str) -> bool| -> Option<Decisive> {
        let (en, _) = exp
            .iter()
            .filter(|(n, _)| wanted(n))
            .find(|(en, ea)| !calls.iter().any(|(_, n, a)| matches(n, a, en, ea)))?;
        Some(match calls.iter().find(|(_, n, _)| n == en) {
            Some((i, n, _)) => Decisive {
                step: Some(*i),
                signal: "action:wrong_arguments".into(),
                message: format!("expected action {n} called with other arguments"),
                error_type: None,
            },
            None => Decisive {
                step: last_llm,
                signal: "action:missing".into(),
                message: format!("expected action {en} was never called"),
                error_type: None,
            },
        })
    };
    if let Some(d) = first_unmatched(|n| !is_read_only(n)) {
        return Some(d);
    }
    // All expected writes happened; an extra write is the divergence.
    let extra = calls.iter().find(|(_, n, a)| !is_read_only(n) && !exp.iter().any(|(en, ea)| matches(n, a, en, ea)));
    if let Some((i, n, _)) = extra {
        return Some(Decisive {
            step: Some(*i),
            signal: "action:unexpected".into(),
            message: format!("unexpected state-changing action {n}"),
            error_type: None,
        });
    }
    // The state is right; what the user was told decides the rest of the verdict
    // (τ-bench scores state and outputs, never the lookups on the way).
    output_divergence(trace, order).or_else(|| first_unmatched(is_read_only))
}

/// An expected output (τ-bench `info.task.outputs`: a value the user must be told) that no
/// agent turn states. The decisive step is the turn that gave an answer of the same shape
/// instead (a count, an amount, an id: the digits masked alike), the earliest one, as a
/// wrong value is produced once and then repeated; else the last model turn.
fn output_divergence(trace: &Trace, order: &[usize]) -> Option<Decisive> {
    let outputs = trace.task.as_ref()?.get("outputs")?.as_array()?;
    let turns: Vec<(usize, String)> = order
        .iter()
        .filter(|&&i| trace.steps[i].kind == StepKind::Llm)
        .map(|&i| (i, step_text(trace, &trace.steps[i]).to_lowercase().replace(',', "")))
        .collect();
    let missing = outputs
        .iter()
        .filter_map(Value::as_str)
        .map(|o| o.trim().to_lowercase())
        .find(|o| !o.is_empty() && !turns.iter().any(|(_, t)| t.contains(o.as_str())))?;
    let shape = value_shape(&missing);
    let step = turns
        .iter()
        .find(|(_, t)| {
            t.split(|c: char| c.is_whitespace() || "*()[]:;\"'!?$".contains(c))
                .any(|w| value_shape(w.trim_end_matches('.')) == shape)
        })
        .or_else(|| turns.last())
        .map(|(i, _)| *i);
    Some(Decisive {
        step,
        signal: "output:missing".into(),
        message: format!("expected output {missing} was never given"),
        error_type: None,
    })
}

/// A value with its digits masked: "10" and "11" alike, "918.43" and "1.50" not.
fn value_shape(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_digit() { '0' } else { c }).collect()
}

/// Read-only lookups (get_*, find_*, list_*, search_*, calculate, think) change nothing.
fn is_read_only(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["get_", "find_", "list_", "search_", "lookup", "read", "calculate", "think", "check_"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// Argument equality that ignores key order, number formats and string case/whitespace.
fn args_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(s), other) | (other, Value::String(s)) if !matches!(other, Value::String(_)) => {
            serde_json::from_str::<Value>(s).map(|p| args_equal(&p, other)).unwrap_or(false)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| args_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| args_equal(v, w)),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => x.trim().eq_ignore_ascii_case(y.trim()),
        _ => a == b,
    }
}

/// The same tool called with the same arguments three or more times: a loop.
fn repeated_call(trace: &Trace, order: &[usize]) -> Option<Decisive> {
    let mut seen: HashMap<(String, String), (usize, usize)> = HashMap::new();
    for &i in order {
        let Some(call) = &trace.steps[i].tool_call else { continue };
        let key = (call.name.clone(), call.arguments.to_string());
        let entry = seen.entry(key).or_insert((0, i));
        entry.0 += 1;
        if entry.0 == 3 {
            return Some(Decisive {
                step: Some(entry.1),
                signal: "loop:repeated_call".into(),
                message: format!("{} called 3+ times with the same arguments", call.name),
                error_type: None,
            });
        }
    }
    None
}

/// What a (simulated) user says when the agent just got it wrong. Phrases, not words: "wrong"
/// alone is as often about the user's own order as about the agent.
const COMPLAINTS: [&str; 14] = [
    "that's not what i",
    "that is not what i",
    "not what i asked",
    "i didn't ask",
    "i did not ask",
    "i never asked",
    "you made a mistake",
    "that's wrong",
    "that is wrong",
    "that's incorrect",
    "that is incorrect",
    "i already told you",
    "why did you",
    "you didn't do what i",
];

/// A user turn that complains about what the agent just did: the decisive step is the
/// agent turn complained about (the last one before it).
fn user_complaint(trace: &Trace, order: &[usize]) -> Option<Decisive> {
    let mut last_agent: Option<usize> = None;
    for &i in order {
        let s = &trace.steps[i];
        match s.kind {
            StepKind::Llm => last_agent = Some(i),
            StepKind::User => {
                let Some(agent) = last_agent else { continue };
                let text = step_text(trace, s).to_lowercase();
                if let Some(phrase) = COMPLAINTS.iter().find(|p| text.contains(*p)) {
                    return Some(Decisive {
                        step: Some(agent),
                        signal: "user:complaint".into(),
                        message: format!("the user said \"{phrase}…\" after this turn"),
                        error_type: None,
                    });
                }
            }
            _ => {}
        }
    }
    None
}

const REFUSALS: [&str; 8] = [
    "i'm sorry, but i can't",
    "i am sorry, but i cannot",
    "i cannot help with",
    "i can't help with",
    "i'm unable to",
    "i am unable to",
    "i cannot assist",
    "i can't assist",
];

fn refusal(trace: &Trace, order: &[usize]) -> Option<Decisive> {
    for &i in order {
        let s = &trace.steps[i];
        if s.kind != StepKind::Llm {
            continue;
        }
        let text = step_text(trace, s).to_lowercase();
        if REFUSALS.iter().any(|r| text.contains(r)) {
            return Some(Decisive {
                step: Some(i),
                signal: "refusal".into(),
                message: first_lines(&text, 2),
                error_type: None,
            });
        }
    }
    None
}

/// A failing run-level signal with a step (exit status, result subtype).
fn terminal_signal(trace: &Trace, order: &[usize]) -> Option<Decisive> {
    let signal = trace
        .signals
        .iter()
        .find(|s| !s.passed && s.kind != "reward" && s.kind != "is_correct" && s.kind != "resolved")?;
    let step = signal
        .step
        .as_deref()
        .and_then(|id| trace.step_index(id))
        .or_else(|| order.iter().rev().find(|&&i| trace.steps[i].kind == StepKind::Llm).copied());
    Some(Decisive { step, signal: format!("signal:{}", signal.kind), message: signal.detail.clone(), error_type: None })
}

/// A failure with no step-level evidence, characterised by its content (`verdict`): the
/// decisive step and signal, and the decisive agent's role and tool for the signature.
fn verdict_only(trace: &Trace, order: &[usize]) -> (Decisive, (String, Option<String>)) {
    let (answer, origin) = answer_turn(trace, order);
    let run = verdict::Run::new(trace, order, |i| step_text(trace, &trace.steps[i]));
    let finding = verdict::characterise(&run, answer);
    let step = finding.step.or(origin);
    let detail = trace.signals.iter().find(|s| !s.passed).map(|s| s.detail.clone()).unwrap_or_default();
    let message = if finding.quote.is_empty() { detail } else { finding.quote };
    let role = verdict::role(trace, step.map(|i| caller(trace, order, i)));
    let signal = format!("verdict:{}", finding.cause.as_str());
    (Decisive { step, signal, message, error_type: None }, (role, finding.tool))
}

/// The answer turn (the last model turn that says something) and where its content first
/// appeared.
fn answer_turn(trace: &Trace, order: &[usize]) -> (Option<usize>, Option<usize>) {
    let llm_turns = || order.iter().rev().filter(|&&i| trace.steps[i].kind == StepKind::Llm);
    let last = llm_turns()
        .find(|&&i| !answer_terms(&step_text(trace, &trace.steps[i])).is_empty())
        .or_else(|| llm_turns().next())
        .copied()
        .or(order.last().copied());
    (last, last.map(|l| answer_origin(trace, order, l).unwrap_or(l)))
}

/// Distinctive words of an answer: numbers and words of 3+ letters that are not common.
fn answer_terms(text: &str) -> HashSet<String> {
    const COMMON: [&str; 24] = [
        "the",
        "and",
        "for",
        "that",
        "this",
        "with",
        "final",
        "answer",
        "terminate",
        "is",
        "are",
        "was",
        "based",
        "on",
        "task",
        "result",
        "results",
        "therefore",
        "so",
        "thus",
        "we",
        "have",
        "which",
        "from",
    ];
    text.split(|c: char| !(c.is_alphanumeric() || c == '.'))
        .map(|w| w.trim_matches('.').to_lowercase())
        .filter(|w| (w.chars().any(|c| c.is_ascii_digit()) || w.chars().count() >= 4) && !COMMON.contains(&w.as_str()))
        .take(16)
        .collect()
}

fn answer_origin(trace: &Trace, order: &[usize], last: usize) -> Option<usize> {
    let final_text = step_text(trace, &trace.steps[last]);
    let lower = final_text.to_lowercase();
    // The answer proper follows a "final answer" marker when there is one.
    let answer = lower.rfind("final answer").map(|p| &lower[p..]).unwrap_or(&lower);
    let key = answer_terms(answer);
    if key.is_empty() {
        return None;
    }
    let needed = (key.len() * 3).div_ceil(5).max(1);
    order.iter().copied().take_while(|&i| i != last).find(|&i| {
        let s = &trace.steps[i];
        if matches!(s.kind, StepKind::User | StepKind::System) || s.seq == 0 {
            return false;
        }
        let text = step_text(trace, s).to_lowercase();
        key.iter().filter(|k| text.contains(k.as_str())).count() >= needed
    })
}

const INFRA_PATTERNS: [&str; 22] = [
    "rate limit",
    "ratelimit",
    "too many requests",
    "429",
    "timed out",
    "timeout",
    "internalservererror",
    "internal server error",
    "service unavailable",
    "bad gateway",
    "overloaded",
    "502",
    "503",
    "504",
    "connection reset",
    "connection refused",
    "connectionerror",
    "apiconnectionerror",
    "authentication",
    "invalid api key",
    "unauthorized",
    "quota",
];

/// Whether free text from a run (a trial's stderr, an error line) says the model API or the
/// network failed rather than the agent: the classifier mining uses, without a step.
pub fn is_infra_text(text: &str) -> bool {
    is_infra(text, None, None)
}

/// Infrastructure: rate limits, timeouts, auth and 5xx of the model API, not the agent's
/// own mistakes. A tool's "permission denied" on a file is a capability failure.
fn is_infra(message: &str, error_type: Option<&str>, step: Option<&Step>) -> bool {
    let text = format!("{} {}", error_type.unwrap_or(""), message).to_lowercase();
    if !INFRA_PATTERNS.iter().any(|p| text.contains(p)) {
        return false;
    }
    let model_side = step.is_some_and(|s| s.kind == StepKind::Llm || s.model.is_some())
        || ["openai.", "anthropic.", "litellm.", "api_error", "apierror", "httpx.", "exit_api"]
            .iter()
            .any(|p| text.contains(p));
    let server_code = ["429", "500", "502", "503", "504", "rate limit", "overloaded"].iter().any(|p| text.contains(p));
    model_side || (server_code && step.is_none_or(|s| s.kind != StepKind::Tool))
}

/// All the text of one step: messages, tool call and result, generic I/O, error.
pub fn step_text(trace: &Trace, step: &Step) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some((a, b)) = step.transcript_range {
        for m in trace.transcript.iter().skip(a as usize).take(b.saturating_sub(a) as usize) {
            parts.push(m.joined_text());
        }
    }
    for m in &step.output_messages {
        parts.push(m.joined_text());
    }
    if let Some(c) = &step.tool_call {
        parts.push(format!("{}({})", c.name, clip(&value_text(&c.arguments), 400)));
    }
    if let Some(r) = &step.tool_result {
        parts.push(clip(&value_text(&r.content), 1200));
    }
    if parts.iter().all(|p| p.trim().is_empty()) {
        if let Some(o) = &step.output {
            parts.push(clip(&value_text(o), 1200));
        } else if let Some(i) = &step.input {
            parts.push(clip(&value_text(i), 800));
        }
    }
    if let Some(e) = &step.error {
        if let Some(m) = &e.message {
            parts.push(m.clone());
        }
    }
    parts.retain(|p| !p.trim().is_empty());
    parts.join("\n")
}

fn neighbourhood_text(
    trace: &Trace,
    order: &[usize],
    step: Option<usize>,
    signal: &str,
    message: &str,
    tool: Option<&str>,
    error_type: Option<&str>,
) -> (String, usize) {
    let mut text = String::new();
    text.push_str(&signal.replace([':', '_'], " "));
    text.push(' ');
    for extra in [tool, error_type].into_iter().flatten() {
        text.push_str(extra);
        text.push(' ');
    }
    text.push_str(&clip(message, 600));
    text.push('\n');
    let header_len = text.len();
    if let Some(idx) = step {
        let pos = order.iter().position(|&i| i == idx).unwrap_or(0);
        // The decisive step, the step before (the reasoning that led to it) and after.
        text.push_str(&clip(&step_text(trace, &trace.steps[idx]), 1500));
        if pos > 0 {
            text.push('\n');
            text.push_str(&clip(&step_text(trace, &trace.steps[order[pos - 1]]), 600));
        }
        if pos + 1 < order.len() {
            text.push('\n');
            text.push_str(&clip(&step_text(trace, &trace.steps[order[pos + 1]]), 400));
        }
    }
    let text = clip(&text, TEXT_MAX);
    // A header within TEXT_MAX survives the clip whole (clip cuts at a char boundary at or
    // below it); a longer one (absurd tool names) leaves nothing of the trace to quote.
    let header_len = if header_len <= TEXT_MAX { header_len } else { text.len() };
    (text, header_len)
}

/// A tool result logged as a message of its own (a chat log's `Computer_terminal` turn)
/// carries no call: the decision behind it is the agent turn just before, which wrote the
/// code or chose the arguments. Steps that hold their own call (a tool span) stay.
fn caller(trace: &Trace, order: &[usize], idx: usize) -> usize {
    let step = &trace.steps[idx];
    if step.kind != StepKind::Tool || step.tool_call.is_some() {
        return idx;
    }
    let pos = order.iter().position(|&i| i == idx).unwrap_or(0);
    match pos.checked_sub(1).map(|p| order[p]) {
        Some(prev) if trace.steps[prev].kind == StepKind::Llm => prev,
        _ => idx,
    }
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines().filter(|l| !l.trim().is_empty()).take(n).collect::<Vec<_>>().join("\n")
}

/// The task input (without its expected answer), recorded tool results, and checks from
/// ground truth carried by the trace.
fn case_seed(trace: &Trace) -> CaseSeed {
    let mut checks = Vec::new();
    let input = match &trace.task {
        Some(Value::Object(task)) => {
            let mut input = task.clone();
            if let Some(Value::Array(actions)) = input.remove("actions") {
                let mut names: Vec<&str> = actions.iter().filter_map(|a| a.get("name")?.as_str()).collect();
                names.dedup();
                for name in names {
                    checks.push(json!({"kind": "tool_called", "name": name, "min": 1}));
                }
            }
            if let Some(Value::Array(outputs)) = input.remove("outputs") {
                for o in outputs.iter().filter_map(Value::as_str) {
                    checks.push(json!({"kind": "output_contains", "value": o}));
                }
            }
            Value::Object(input)
        }
        Some(other) => other.clone(),
        None => first_user_input(trace),
    };
    if let Some(gt) = trace.attributes.get("ground_truth").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        checks.push(json!({"kind": "output_contains", "value": gt}));
    }
    if trace.signals.iter().any(|s| s.kind == "reward") {
        checks.push(json!({"kind": "score_at_least", "name": "reward", "value": 1.0}));
    }
    let fixtures = trace
        .steps
        .iter()
        .filter_map(|s| {
            let call = s.tool_call.as_ref()?;
            let result = s.tool_result.as_ref()?;
            Some(json!({"tool": call.name, "arguments": call.arguments, "result": clip(&value_text(&result.content), 2000)}))
        })
        .take(30)
        .collect();
    CaseSeed { input, fixtures, checks }
}

fn first_user_input(trace: &Trace) -> Value {
    let user = trace.transcript.iter().find(|m| m.role == "user" || m.role == "human");
    if let Some(m) = user {
        return json!({"messages": [{"role": "user", "content": m.joined_text()}]});
    }
    for s in &trace.steps {
        if let Some(m) = s.input_messages.iter().find(|m| m.role == "user") {
            return json!({"messages": [{"role": "user", "content": m.joined_text()}]});
        }
    }
    trace.steps.iter().min_by_key(|s| s.seq).and_then(|s| s.input.clone()).unwrap_or(Value::Null)
}

/// A failure as stored, with its row id and cluster (what `store::mine` reads back).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredFailure {
    pub id: i64,
    pub path: String,
    pub cluster_id: Option<String>,
    pub failure: Failure,
    pub seen_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::model::ErrorInfo;

    /// A run whose one tool step failed with `error`.
    fn tool_failure(tool: &str, error: ErrorInfo) -> Failure {
        let mut t = Trace { id: "t".into(), ..Default::default() };
        t.steps.push(Step { id: "s0".into(), kind: StepKind::Agent, name: Some("agent".into()), ..Default::default() });
        t.steps.push(Step {
            id: "s1".into(),
            parent_id: Some("s0".into()),
            seq: 1,
            kind: StepKind::Tool,
            name: Some(tool.into()),
            error: Some(error),
            ..Default::default()
        });
        crate::trace::outcome::derive(&mut t);
        analyze_with_rules(&t, 0, true, 2).expect("a failure")
    }

    #[test]
    fn a_tools_error_signs_the_same_whoever_recorded_it_and_apart_from_another_tool() {
        let msg = "order A-1 has already shipped and cannot be cancelled";
        let otel = tool_failure(
            "cancel_order",
            ErrorInfo::new(ErrorSource::Exception).with_type("ValueError").with_message(msg),
        );
        let agents = tool_failure(
            "cancel_order",
            ErrorInfo::new(ErrorSource::SpanStatus).with_message(format!("Error running tool cancel_order: {msg}")),
        );
        let text = tool_failure(
            "cancel_order",
            ErrorInfo::new(ErrorSource::TextHeuristic)
                .with_message(format!("ValueError('{msg}')Traceback (most recent call last):")),
        );
        assert_eq!(otel.signature, agents.signature);
        assert_eq!(otel.signature, text.signature);
        assert_eq!(otel.signature.tool.as_deref(), Some("cancel_order"));
        // The exporter's words stay the evidence.
        assert!(agents.message.starts_with("Error running tool"), "{}", agents.message);
        let other = tool_failure(
            "refund_order",
            ErrorInfo::new(ErrorSource::Exception).with_type("ValueError").with_message(msg),
        );
        assert_ne!(otel.signature.cluster_id(), other.signature.cluster_id());
    }
}
