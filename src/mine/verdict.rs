//! Verdict-only failures: runs that raised nothing and were judged wrong at the end
//! (`is_correct: false`, a low reward, a person's flag). Without an error to name them, they
//! all looked alike; here the run's content says what went wrong, with no model:
//!
//! - a tool or page output that was a wall (login, captcha, 4xx) → `blocked_access`;
//! - the agent's closing turns giving up or refusing → `gave_up`;
//! - the closing turn asking the user instead of acting → `asked_user`;
//! - the task asking for N things and the answer giving fewer → `fewer_items`;
//! - the same agent action repeated without anything new in between → `repeated_action`;
//! - an answer value that contradicts the last tool output about the same thing →
//!   `contradicts_tool`, or that occurs in no tool output or user message → `invented_value`;
//! - a plan step announced and never done → `plan_not_done`;
//! - the run's last turns adding nothing new → `stalled`;
//! - none of these → `unexplained`: an honest group of its own, which never joins another
//!   cluster by similarity (`cluster::assign`).
//!
//! The patterns are generic agent-run vocabulary, not the wording of any labelled set's
//! classes (an unseen set checks that). Nothing here reads benchmark labels.

use std::collections::HashSet;

use crate::trace::json::clip;
use crate::trace::model::{StepKind, Trace, value_text};

/// What a verdict-only failure's content shows, strongest evidence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    BlockedAccess,
    GaveUp,
    AskedUser,
    FewerItems,
    RepeatedAction,
    ContradictsTool,
    InventedValue,
    PlanNotDone,
    Stalled,
    Unexplained,
}

impl Cause {
    /// The signal name stored in signatures (`verdict:<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::BlockedAccess => "blocked_access",
            Cause::GaveUp => "gave_up",
            Cause::AskedUser => "asked_user",
            Cause::FewerItems => "fewer_items",
            Cause::RepeatedAction => "repeated_action",
            Cause::ContradictsTool => "contradicts_tool",
            Cause::InventedValue => "invented_value",
            Cause::PlanNotDone => "plan_not_done",
            Cause::Stalled => "stalled",
            Cause::Unexplained => "unexplained",
        }
    }

    /// What went wrong, in the words a cluster label uses.
    pub fn words(self) -> &'static str {
        match self {
            Cause::BlockedAccess => "a tool or page was blocked (login wall, captcha or 4xx) and the run went on",
            Cause::GaveUp => "the agent gave up or refused instead of answering",
            Cause::AskedUser => "the agent asked the user instead of acting",
            Cause::FewerItems => "the answer gives fewer items than the task asked for",
            Cause::RepeatedAction => "the agent repeated the same action without progress",
            Cause::ContradictsTool => "the answer contradicts the tool output it relies on",
            Cause::InventedValue => "the answer holds a value found in no tool output or user message",
            Cause::PlanNotDone => "a step of the agent's plan was announced and never done",
            Cause::Stalled => "the run stopped making progress before answering",
            Cause::Unexplained => "judged wrong, and the trace shows no cause offline",
        }
    }

    pub fn from_signal(signal: &str) -> Option<Cause> {
        let name = signal.strip_prefix("verdict:")?;
        ALL.into_iter().find(|c| c.as_str() == name)
    }
}

const ALL: [Cause; 10] = [
    Cause::BlockedAccess,
    Cause::GaveUp,
    Cause::AskedUser,
    Cause::FewerItems,
    Cause::RepeatedAction,
    Cause::ContradictsTool,
    Cause::InventedValue,
    Cause::PlanNotDone,
    Cause::Stalled,
    Cause::Unexplained,
];

/// The characterisation of one verdict-only failure.
#[derive(Debug, Clone)]
pub struct Finding {
    pub cause: Cause,
    /// The decisive step, when the evidence points at one (else the answer's origin stays).
    pub step: Option<usize>,
    pub tool: Option<String>,
    /// The evidence, quoted from the trace.
    pub quote: String,
}

/// The run read once: steps in source order with their text, split by who produced them.
pub struct Run<'a> {
    trace: &'a Trace,
    /// (step index, lowercased text) in source order.
    texts: Vec<(usize, String)>,
    /// The task as the agent received it, lowercased.
    task: String,
}

impl<'a> Run<'a> {
    pub fn new(trace: &'a Trace, order: &[usize], text: impl Fn(usize) -> String) -> Run<'a> {
        let texts: Vec<(usize, String)> = order.iter().map(|&i| (i, text(i).to_lowercase())).collect();
        let mut task = trace.task.as_ref().map(|t| value_text(t).into_owned()).unwrap_or_default().to_lowercase();
        if let Some((_, t)) = texts.iter().find(|(i, _)| trace.steps[*i].kind == StepKind::User) {
            task.push('\n');
            task.push_str(t);
        } else if let Some((_, t)) = texts.first() {
            // A log whose first entry is the task as the orchestrator stated it.
            task.push('\n');
            task.push_str(t);
        }
        Run { trace, texts, task }
    }

    fn kind(&self, i: usize) -> StepKind {
        self.trace.steps[i].kind
    }

    /// Outputs of the world: tool results and steps of agents that only run things.
    fn is_tool(&self, i: usize) -> bool {
        let s = &self.trace.steps[i];
        s.kind == StepKind::Tool || s.kind == StepKind::Retrieval || s.tool_result.is_some()
    }

    fn is_agent(&self, i: usize) -> bool {
        matches!(self.kind(i), StepKind::Llm | StepKind::Agent | StepKind::Turn) && !self.is_tool(i)
    }

    fn tool_name(&self, i: usize) -> Option<String> {
        let s = &self.trace.steps[i];
        s.tool_call.as_ref().map(|c| c.name.clone()).or_else(|| s.name.clone()).or_else(|| s.agent.clone())
    }
}

/// Characterise a verdict-only failure whose answer is at `answer` (the last model turn that
/// says something). The first cause with evidence wins, in the order of `Cause`.
pub fn characterise(run: &Run, answer: Option<usize>) -> Finding {
    let answer_pos = answer.and_then(|a| run.texts.iter().position(|(i, _)| *i == a));
    blocked(run)
        .or_else(|| gave_up(run, answer_pos))
        .or_else(|| asked_user(run, answer_pos))
        .or_else(|| fewer_items(run, answer_pos))
        .or_else(|| repeated(run))
        .or_else(|| unsupported_value(run, answer_pos))
        .or_else(|| plan_not_done(run))
        .or_else(|| stalled(run))
        .unwrap_or(Finding { cause: Cause::Unexplained, step: None, tool: None, quote: String::new() })
}

/// The sentence of `text` around byte `at`, clipped: what a label quotes.
fn quote_at(text: &str, at: usize, len: usize) -> String {
    let start = text[..at].rfind(['\n', '.', '!', '?']).map_or(0, |p| p + 1);
    let end = text[at..].find('\n').map_or(text.len(), |p| at + p);
    clip(text[start..end].trim(), len)
}

const BLOCKED: [&str; 16] = [
    "captcha",
    "access denied",
    "403 forbidden",
    "error 403",
    "401 unauthorized",
    "404 not found",
    "error 404",
    "page not found",
    "verify you are human",
    "are you a robot",
    "unusual traffic",
    "log in to continue",
    "sign in to continue",
    "login required",
    "subscription required",
    "enable javascript",
];

fn blocked(run: &Run) -> Option<Finding> {
    run.texts.iter().find_map(|(i, text)| {
        if matches!(run.kind(*i), StepKind::User | StepKind::System) {
            return None;
        }
        let at = BLOCKED.iter().filter_map(|p| text.find(p)).min()?;
        Some(Finding {
            cause: Cause::BlockedAccess,
            step: Some(*i),
            tool: run.tool_name(*i).filter(|_| run.is_tool(*i)),
            quote: quote_at(text, at, 160),
        })
    })
}

/// The agent turns that close the run: the answer and the one before it.
fn closing_turns<'r>(run: &'r Run, answer_pos: Option<usize>) -> impl Iterator<Item = &'r (usize, String)> {
    let end = answer_pos.map_or(run.texts.len(), |p| p + 1);
    run.texts[..end].iter().rev().filter(|(i, _)| run.is_agent(*i)).take(2)
}

const GIVING_UP: [&str; 14] = [
    "i cannot",
    "i can't",
    "i can not",
    "i am unable",
    "i'm unable",
    "unable to access",
    "unable to find",
    "unable to determine",
    "unable to complete",
    "not able to",
    "i don't have access",
    "i do not have access",
    "cannot be determined",
    "could not be determined",
];

fn gave_up(run: &Run, answer_pos: Option<usize>) -> Option<Finding> {
    closing_turns(run, answer_pos).find_map(|(i, text)| {
        let at = GIVING_UP.iter().filter_map(|p| text.find(p)).min()?;
        Some(Finding { cause: Cause::GaveUp, step: Some(*i), tool: None, quote: quote_at(text, at, 160) })
    })
}

const ASKING: [&str; 9] = [
    "could you please",
    "can you please",
    "could you provide",
    "can you provide",
    "please provide",
    "please confirm",
    "please let me know",
    "would you like me to",
    "do you want me to",
];

fn asked_user(run: &Run, answer_pos: Option<usize>) -> Option<Finding> {
    let (i, text) = closing_turns(run, answer_pos).next()?;
    let at = ASKING.iter().filter_map(|p| text.find(p)).min().or_else(|| {
        // A closing turn that is a question and gives no answer.
        let t = text.trim_end();
        (t.ends_with('?') && !t.contains("answer")).then(|| t.rfind(['\n', '.']).map_or(0, |p| p + 1))
    })?;
    Some(Finding { cause: Cause::AskedUser, step: Some(*i), tool: None, quote: quote_at(text, at, 160) })
}

const NUMBER_WORDS: [(&str, usize); 9] = [
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
];

/// How many things the task asks for: "list three cities", "the top 5 results", "name 4 …".
fn asked_count(task: &str) -> Option<(usize, String)> {
    let words: Vec<&str> = task.split_whitespace().collect();
    for w in words.windows(3) {
        let verb = w[0].trim_matches(|c: char| !c.is_alphanumeric());
        if !["list", "name", "give", "find", "top", "provide", "return", "identify", "select"].contains(&verb) {
            continue;
        }
        let n = w[1].parse::<usize>().ok().or_else(|| NUMBER_WORDS.iter().find(|(k, _)| *k == w[1]).map(|(_, n)| *n));
        if let Some(n) = n.filter(|n| (2..=20).contains(n)) {
            if w[2].trim_end_matches(|c: char| !c.is_alphanumeric()).ends_with('s') {
                return Some((n, w.join(" ")));
            }
        }
    }
    None
}

fn fewer_items(run: &Run, answer_pos: Option<usize>) -> Option<Finding> {
    let (n, asked) = asked_count(&run.task)?;
    let (i, text) = &run.texts[answer_pos?];
    let answer = answer_segment(text);
    let items = answer
        .split(['\n', ',', ';'])
        .flat_map(|p| p.split(" and "))
        .filter(|p| p.chars().filter(|c| c.is_alphanumeric()).count() >= 2)
        .count();
    (items < n).then(|| Finding {
        cause: Cause::FewerItems,
        step: Some(*i),
        tool: None,
        quote: clip(&format!("asked \"{asked}\", answered \"{}\"", answer.trim()), 160),
    })
}

/// The answer proper: what follows a "final answer" marker, else the whole turn.
fn answer_segment(text: &str) -> &str {
    text.rfind("final answer").map(|p| &text[p + "final answer".len()..]).unwrap_or(text)
}

/// An agent's substantial turn said again (by the same step kind) with nothing new between:
/// a loop that raised nothing. Short turns ("TERMINATE", "ok") repeat by nature.
fn repeated(run: &Run) -> Option<Finding> {
    let mut seen: HashSet<&str> = HashSet::new();
    for (i, text) in &run.texts {
        if !run.is_agent(*i) && run.trace.steps[*i].tool_call.is_none() {
            continue;
        }
        let norm = text.trim();
        if norm.len() < 40 {
            continue;
        }
        if !seen.insert(norm) {
            return Some(Finding {
                cause: Cause::RepeatedAction,
                step: Some(*i),
                tool: None,
                quote: quote_at(norm, 0, 160),
            });
        }
    }
    None
}

/// Numbers of a text, normalised ("1,234.50" → "1234.5"), with the byte where each starts.
fn numbers(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || matches!(bytes[i], b',' | b'.')) {
                i += 1;
            }
            let raw = text[start..i].trim_end_matches(['.', ',']).replace(',', "");
            let norm =
                if raw.contains('.') { raw.trim_end_matches('0').trim_end_matches('.').to_string() } else { raw };
            let glued = i < bytes.len() && bytes[i].is_ascii_alphabetic();
            if !norm.is_empty() && !glued {
                out.push((norm, start));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The word before byte `at`: what a number is about ("total 42", "price: 42").
fn context_word(text: &str, at: usize) -> Option<&str> {
    text[..at]
        .split(|c: char| !c.is_alphabetic())
        .rev()
        .find(|w| w.len() >= 3)
        .filter(|w| !["the", "and", "was", "are", "answer", "final", "is"].contains(w))
}

/// The answer's values checked against what the world said: a value no tool output or user
/// message holds was made up, and one that differs from the last tool output's value for
/// the same word contradicts it. The decisive step is the first agent turn that said it.
fn unsupported_value(run: &Run, answer_pos: Option<usize>) -> Option<Finding> {
    let pos = answer_pos?;
    let (answer_idx, text) = &run.texts[pos];
    let segment = answer_segment(text);
    let offset = text.len() - segment.len();
    let mut world: HashSet<String> = numbers(&run.task).into_iter().map(|(n, _)| n).collect();
    let mut last_tool: Option<&(usize, String)> = None;
    for entry @ (i, t) in &run.texts[..pos] {
        if run.is_tool(*i) || matches!(run.kind(*i), StepKind::User | StepKind::System) {
            world.extend(numbers(t).into_iter().map(|(n, _)| n));
            if run.is_tool(*i) {
                last_tool = Some(entry);
            }
        }
    }
    let (value, at) = numbers(segment).into_iter().find(|(n, _)| n.len() >= 2 && !world.contains(n))?;
    let at = at + offset;
    let origin = run.texts[..pos]
        .iter()
        .find(|(i, t)| run.is_agent(*i) && numbers(t).iter().any(|(n, _)| *n == value))
        .map_or(*answer_idx, |(i, _)| *i);
    let about = context_word(text, at);
    let contradicted = last_tool.zip(about).and_then(|((ti, tt), word)| {
        let w = tt.find(word)?;
        let (other, _) = numbers(&tt[w..]).into_iter().next().filter(|(_, p)| *p < 60)?;
        Some((*ti, other))
    });
    Some(match contradicted {
        Some((ti, other)) => Finding {
            cause: Cause::ContradictsTool,
            step: Some(origin),
            tool: run.tool_name(ti),
            quote: clip(&format!("answer {value}, tool said {other}: {}", quote_at(text, at, 120)), 160),
        },
        None => Finding { cause: Cause::InventedValue, step: Some(origin), tool: None, quote: quote_at(text, at, 160) },
    })
}

/// Distinctive words: 5+ letters, not the vocabulary every turn shares.
fn key_words(text: &str) -> Vec<&str> {
    const COMMON: [&str; 12] =
        ["about", "their", "there", "these", "which", "would", "should", "could", "first", "after", "before", "using"];
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 5 && !COMMON.contains(w)).collect()
}

/// A numbered plan ("1. search … 2. compute …") whose step has words none of the later
/// turns uses: announced, never done. Only the first eight plans are read: each is checked
/// against the rest of the run, and a run of thousands of steps must stay linear.
fn plan_not_done(run: &Run) -> Option<Finding> {
    const PLANS: usize = 8;
    let mut plans = 0;
    for (pos, (i, text)) in run.texts.iter().enumerate() {
        if plans == PLANS {
            break;
        }
        if !run.is_agent(*i) {
            continue;
        }
        let items: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| {
                let digits = l.chars().take_while(char::is_ascii_digit).count();
                digits > 0 && l[digits..].starts_with(['.', ')'])
            })
            .collect();
        if items.len() < 2 {
            continue;
        }
        plans += 1;
        let later: String = run.texts[pos + 1..].iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join("\n");
        if later.is_empty() {
            continue;
        }
        for item in items {
            let words = key_words(item);
            if words.len() >= 2 && words.iter().all(|w| !later.contains(w)) {
                return Some(Finding { cause: Cause::PlanNotDone, step: Some(*i), tool: None, quote: clip(item, 160) });
            }
        }
    }
    None
}

/// The run's last turns adding nothing: from some turn on, no later turn brings three words
/// the run had not seen. The decisive step is the first turn of that tail.
fn stalled(run: &Run) -> Option<Finding> {
    const TAIL: usize = 4;
    if run.texts.len() < TAIL + 2 {
        return None;
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut fresh: Vec<usize> = Vec::with_capacity(run.texts.len());
    for (_, t) in &run.texts {
        let words = key_words(t);
        fresh.push(words.iter().filter(|w| !seen.contains(*w)).collect::<HashSet<_>>().len());
        seen.extend(words);
    }
    let start = fresh.iter().rposition(|&n| n >= 3).map_or(0, |p| p + 1);
    (run.texts.len() - start >= TAIL).then(|| {
        let (i, text) = &run.texts[start];
        Finding { cause: Cause::Stalled, step: Some(*i), tool: None, quote: quote_at(text, 0, 160) }
    })
}

/// The decisive agent's part in a multi-agent run, in a few generic roles: agent names
/// differ run to run ("Geography_Expert"), what they do repeats.
pub fn role(trace: &Trace, step: Option<usize>) -> String {
    let Some(s) = step.map(|i| &trace.steps[i]) else {
        return "none".into();
    };
    let agents: HashSet<&str> = trace.steps.iter().filter_map(|s| s.agent.as_deref().or(s.name.as_deref())).collect();
    let name = s.agent.as_deref().or(s.name.as_deref()).unwrap_or("").to_lowercase();
    if agents.len() < 2 || name.is_empty() {
        return s.kind.as_str().into();
    }
    const ROLES: [(&str, &[&str]); 5] = [
        ("planner", &["orchestr", "manager", "planner", "plan", "lead", "supervis", "coordinat"]),
        ("verifier", &["verif", "check", "review", "critic", "judge", "valid", "test"]),
        ("web", &["surf", "web", "brows", "search", "retriev"]),
        ("executor", &["terminal", "computer", "code", "coder", "python", "program", "engineer", "execut", "develop"]),
        ("user", &["user", "human"]),
    ];
    ROLES.iter().find(|(_, keys)| keys.iter().any(|k| name.contains(k))).map_or("expert", |(r, _)| r).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_and_glued_units_skipped() {
        let n: Vec<String> =
            numbers("total 1,234.50 and 7 items, v2 and 3rd, 42.").into_iter().map(|(n, _)| n).collect();
        assert_eq!(n, ["1234.5", "7", "42"]);
    }

    #[test]
    fn the_asked_count_needs_a_verb_a_number_and_a_plural() {
        assert_eq!(asked_count("please list three cities in france").map(|(n, _)| n), Some(3));
        assert_eq!(asked_count("find the top 5 results").map(|(n, _)| n), Some(5));
        assert_eq!(asked_count("top 5 results of the query").map(|(n, _)| n), Some(5));
        assert_eq!(asked_count("name 1 city"), None);
        assert_eq!(asked_count("what is 3 times 4"), None);
    }

    /// Characterise a run given as (kind, text) steps in order; the answer is the last step.
    fn found(steps: &[(StepKind, &str)]) -> Finding {
        let trace = Trace {
            steps: steps
                .iter()
                .enumerate()
                .map(|(i, (kind, _))| crate::trace::model::Step {
                    id: format!("s{i}"),
                    seq: i as u32,
                    kind: *kind,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let order: Vec<usize> = (0..steps.len()).collect();
        let run = Run::new(&trace, &order, |i| steps[i].1.to_string());
        characterise(&run, Some(steps.len() - 1))
    }

    use StepKind::{Llm, Tool, User};

    #[test]
    fn a_value_differing_from_the_last_tool_output_contradicts_it_and_one_from_nowhere_is_invented() {
        let f = found(&[
            (User, "What is the order total?"),
            (Tool, "order: total 45 dollars, items 3"),
            (Llm, "The total is 42 dollars."),
        ]);
        assert_eq!((f.cause, f.step), (Cause::ContradictsTool, Some(2)), "{f:?}");
        assert!(f.quote.contains("42") && f.quote.contains("45"), "{f:?}");
        let f = found(&[
            (User, "How many inhabitants has Lyon?"),
            (Tool, "no rows"),
            (Llm, "I estimate 48213 people live there."),
            (Llm, "FINAL ANSWER: 48213"),
        ]);
        // Blamed on the turn that first said it, not on the one that repeated it.
        assert_eq!((f.cause, f.step), (Cause::InventedValue, Some(2)), "{f:?}");
        // A value the tool gave is not invented: nothing to say.
        let f = found(&[(User, "How many rows?"), (Tool, "rows: 48213"), (Llm, "FINAL ANSWER: 48213")]);
        assert_eq!(f.cause, Cause::Unexplained, "{f:?}");
    }

    #[test]
    fn repeats_stalls_unfinished_plans_and_giving_up_are_found() {
        let long = "Let me search the archive for the 1998 report on river levels again.";
        let f = found(&[(User, "Find the report."), (Llm, long), (Tool, "nothing"), (Llm, long), (Llm, "done")]);
        assert_eq!((f.cause, f.step), (Cause::RepeatedAction, Some(3)), "{f:?}");

        let f = found(&[
            (User, "Compute the mean rainfall of Paris in 2020."),
            (Llm, "Plan:\n1. Download the rainfall dataset\n2. Compute monthly averages"),
            (Tool, "downloaded rainfall dataset paris.csv"),
            (Llm, "The dataset is downloaded. FINAL ANSWER: unknown"),
        ]);
        assert_eq!(f.cause, Cause::PlanNotDone, "{f:?}");
        assert!(f.quote.contains("monthly averages"), "{f:?}");

        let mut steps = vec![
            (User, "Write a haiku about autumn leaves falling slowly."),
            (Llm, "Crimson maple leaves drifting gently through cold evening light"),
        ];
        steps.extend([
            (Llm, "crimson maple leaves"),
            (Llm, "evening light"),
            (Llm, "gently drifting"),
            (Llm, "cold maple"),
        ]);
        let f = found(&steps);
        assert_eq!((f.cause, f.step), (Cause::Stalled, Some(2)), "{f:?}");

        let f = found(&[(User, "Who won the 1930 cup?"), (Llm, "I am unable to access the archive, sorry.")]);
        assert_eq!((f.cause, f.step), (Cause::GaveUp, Some(1)), "{f:?}");
    }

    #[test]
    fn every_cause_round_trips_through_its_signal() {
        for c in ALL {
            assert_eq!(Cause::from_signal(&format!("verdict:{}", c.as_str())), Some(c));
        }
        assert_eq!(Cause::from_signal("signal:is_correct"), None);
    }
}
