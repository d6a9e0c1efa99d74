//! `mine --judge`: an LLM classifies each verdict-only failure into AgentRx's root-cause
//! taxonomy, naming the decisive step and quoting the evidence. The answer is checked
//! before it counts: the category must be one of the taxonomy's, the step must be one of
//! the trace's, and the quote must occur in the trace's own text (never in the header
//! autoharness wrote, which holds its offline cause). A failed check is re-asked
//! once with the reason; a second failure is recorded as rejected, never repaired or guessed.
//!
//! Judgements are cached by (failure content hash, taxonomy version, model), so a re-mine
//! of the same failures asks nothing.

use serde::Deserialize;

use super::failure::Failure;
use crate::llm::{self, ChatRequest, ProviderConfig};
use crate::trace::json::clip;

/// Changes whenever the categories or the prompt change, so old judgements stop matching.
pub const TAXONOMY_VERSION: &str = "agentrx-v2";

/// AgentRx's failure categories (Microsoft Research, "AgentRx", 2025), as slugs.
pub const CATEGORIES: &[(&str, &str)] = &[
    ("plan_adherence", "the agent skipped, reordered or abandoned a step of its plan or the task"),
    ("invented_information", "the agent stated a value or fact that no tool output or user message gave"),
    ("invalid_invocation", "a tool was called with wrong or malformed arguments"),
    ("misinterpreted_tool_output", "the agent misread or contradicted what a tool returned"),
    ("intent_plan_misalignment", "the plan does not do what the user asked"),
    ("underspecified_intent", "the user's request lacked information the agent needed"),
    ("intent_not_supported", "the task needs something the agent or its tools cannot do"),
    ("guardrails_triggered", "a guardrail, policy, login wall or refusal blocked the agent"),
    ("system_failure", "a tool, service or environment failed"),
    ("inconclusive", "the trace does not show why the run failed"),
];

/// The failure text sent to the model.
const TEXT_CHARS: usize = 2500;
/// A quote shorter than this proves nothing (any word occurs somewhere).
const QUOTE_MIN: usize = 8;

/// The model's answer, as asked for.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Judgement {
    pub category: String,
    pub step: String,
    pub quote: String,
}

/// What judging one failure came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted(Judgement),
    /// Both answers failed the check: why the last one did.
    Rejected(String),
}

/// One failure judged: the outcome and what it cost.
#[derive(Debug, Clone)]
pub struct Judged {
    pub outcome: Outcome,
    pub requests: u32,
    pub tokens: u64,
    pub cost_usd: f64,
}

/// What a judgement is cached under besides taxonomy and model: the failure's text and steps.
pub fn content_hash(f: &Failure) -> String {
    let mut h = blake3::Hasher::new();
    h.update(f.text.as_bytes());
    for s in &f.step_ids {
        h.update(b"\n");
        h.update(s.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Only verdict-only failures are judged: error-bearing ones already cluster by their error.
pub fn is_judged(f: &Failure) -> bool {
    !f.unknown_outcome && f.signature.signal.starts_with("verdict:")
}

pub fn request(f: &Failure, retry: Option<&str>) -> ChatRequest {
    let mut system =
        String::from("You diagnose failed runs of AI agents. Classify the root cause into exactly one category:\n");
    for (slug, meaning) in CATEGORIES {
        system.push_str(&format!("- {slug}: {meaning}\n"));
    }
    system.push_str(
        "Answer with one JSON object only: {\"category\": \"<slug>\", \"step\": \"<one of the step ids>\", \
         \"quote\": \"<a short span copied exactly from the trace text>\"}",
    );
    // The offline cause is a hint, apart from the trace text: quoting it proves nothing.
    let mut user = format!(
        "Step ids: {}\nDecisive step found offline: {}\nCause found offline: {}\n\nTrace text:\n{}\n",
        f.step_ids.join(", "),
        f.step_id.as_deref().unwrap_or("-"),
        f.header().trim(),
        clip(f.trace_text(), TEXT_CHARS)
    );
    if let Some(why) = retry {
        user.push_str(&format!("\nYour previous answer was refused: {why}. Answer again.\n"));
    }
    ChatRequest { system, user, json_schema: Some(schema(&f.step_ids)) }
}

/// The answer's shape, for servers that constrain output to a schema (llama.cpp, OpenAI):
/// a small model then at least answers in the form the check can read. The step is an enum
/// of the trace's step ids: unconstrained, a 135M model invented 8 step ids in 10 answers.
fn schema(step_ids: &[String]) -> serde_json::Value {
    let categories: Vec<&str> = CATEGORIES.iter().map(|(slug, _)| *slug).collect();
    // A trace without step ids (none recorded) gets a free string: an empty enum would make
    // every answer invalid, and the check refuses any step then anyway.
    let step = if step_ids.is_empty() {
        serde_json::json!({"type": "string"})
    } else {
        serde_json::json!({"type": "string", "enum": step_ids})
    };
    serde_json::json!({
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": categories},
            "step": step,
            "quote": {"type": "string"}
        },
        "required": ["category", "step", "quote"],
        "additionalProperties": false
    })
}

/// The first JSON object in an answer (models wrap it in prose or fences).
pub fn parse(answer: &str) -> Result<Judgement, String> {
    let start = answer.find('{').ok_or("the answer holds no JSON object")?;
    let end = answer.rfind('}').filter(|&e| e > start).ok_or("the answer's JSON object is not closed")?;
    serde_json::from_str(&answer[start..=end]).map_err(|e| format!("the answer's JSON is not a judgement: {e}"))
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Why a judgement cannot be accepted for this failure, if it cannot.
pub fn check(j: &Judgement, f: &Failure) -> Result<(), String> {
    if !CATEGORIES.iter().any(|(slug, _)| *slug == j.category) {
        return Err(format!("category `{}` is not in the taxonomy", clip(&j.category, 60)));
    }
    if !f.step_ids.contains(&j.step) {
        return Err(format!("step `{}` is not a step of the trace", clip(&j.step, 60)));
    }
    let quote = squash(&j.quote);
    if quote.chars().count() < QUOTE_MIN {
        return Err(format!("the quote is shorter than {QUOTE_MIN} characters"));
    }
    // Whitespace and case are forgiven; words are not.
    if squash(f.trace_text()).contains(&quote) {
        return Ok(());
    }
    if squash(f.header()).contains(&quote) {
        return Err(format!(
            "the quote `{}` is autoharness's offline cause, not the trace's text: quote the trace text",
            clip(&j.quote, 80)
        ));
    }
    Err(format!("the quote `{}` does not occur in the trace text", clip(&j.quote, 80)))
}

/// Ask, check, re-ask once with the reason, else reject. A provider error ends the judging
/// of this failure with nothing recorded (it may answer next time).
pub async fn judge(cfg: &ProviderConfig, f: &Failure) -> Result<Judged, llm::LlmError> {
    ask_checked(cfg, |retry| request(f, retry), |answer| parse(answer).and_then(|j| check(&j, f).map(|()| j))).await
}

/// The ask-check-re-ask loop both judges share.
async fn ask_checked(
    cfg: &ProviderConfig,
    request: impl Fn(Option<&str>) -> ChatRequest,
    accept: impl Fn(&str) -> Result<Judgement, String>,
) -> Result<Judged, llm::LlmError> {
    let mut judged = Judged { outcome: Outcome::Rejected(String::new()), requests: 0, tokens: 0, cost_usd: 0.0 };
    let mut retry: Option<String> = None;
    // The answer is one short JSON object: a long one is a model rambling at our expense.
    let mut cfg = cfg.clone();
    cfg.max_tokens = cfg.max_tokens.min(300);
    for _ in 0..2 {
        let answer = llm::complete(&cfg, &request(retry.as_deref())).await?;
        judged.requests += 1;
        judged.tokens += answer.input_tokens + answer.output_tokens;
        judged.cost_usd += answer.cost_usd;
        match accept(&answer.text) {
            Ok(j) => {
                judged.outcome = Outcome::Accepted(j);
                return Ok(judged);
            }
            Err(why) => retry = Some(why),
        }
    }
    judged.outcome = Outcome::Rejected(retry.unwrap_or_default());
    Ok(judged)
}

/// The judged category becomes the verdict-only failure's signature, so clusters follow it:
/// the agent's role and tool go too, or one cause split by which agent showed it. The
/// judge's (checked) step becomes the decisive step people are pointed to.
pub fn apply(f: &mut Failure, judged: &Judgement) {
    let category = judged.category.as_str();
    if is_judged(f) {
        f.step_id = Some(judged.step.clone());
        // The checked quote is the evidence for the judged cause; the offline one argued another.
        f.message = judged.quote.clone();
        f.signature.signal = format!("{JUDGED_SIGNAL}{category}");
        f.signature.step_kind = "-".into();
        f.signature.tool = None;
        f.signature.template = format!("judge {}", category.replace('_', " "));
    }
}

/// The signal prefix of a verdict-only failure whose cause the judge gave.
pub const JUDGED_SIGNAL: &str = "verdict:judge:";

/// The label of a cluster the judge's category made, in words: the category's meaning, which
/// category it is, and the checked quote (`message`, see [`apply`]) where a person starts reading.
pub fn label(signal: &str, message: &str) -> Option<String> {
    let category = signal.strip_prefix(JUDGED_SIGNAL)?;
    let meaning = CATEGORIES.iter().find(|(slug, _)| *slug == category).map_or(category, |(_, m)| *m);
    let quote = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    Some(clip(&format!("{meaning} (judge: {category}): \"{quote}\""), 200))
}

/// `[judge.rubric]`: what a run must do, for traces that recorded no outcome. The version
/// keys the cache, so changed criteria are judged again.
#[derive(Debug, Clone, PartialEq)]
pub struct Rubric {
    pub criteria: String,
    pub version: String,
}

impl Rubric {
    /// A rubric whose version is the one given, else the first 12 hex digits of the blake3
    /// of its criteria (so an edit of the text is a new version without anyone bumping it).
    pub fn new(criteria: String, version: Option<String>) -> Rubric {
        let version = version.unwrap_or_else(|| blake3::hash(criteria.as_bytes()).to_hex()[..12].to_string());
        Rubric { criteria, version }
    }

    /// What rubric judgements are cached under, in place of the taxonomy version: the
    /// answer's categories are the taxonomy's, so both versions are part of it.
    pub fn cache_key(&self) -> String {
        format!("rubric:{}:{TAXONOMY_VERSION}", self.version)
    }
}

/// What a rubric judgement's category is when the run met the rubric: no failure.
pub const RUBRIC_MET: &str = "met";
/// The signal prefix of a failure a rubric judge found: never `verdict:`, so judged
/// failures never join clusters of failures whose trace recorded its verdict.
pub const RUBRIC_SIGNAL: &str = "rubric:";

/// The rubric judge's answer: whether the run met the criteria, and if not, why.
#[derive(Debug, Clone, Deserialize)]
struct RubricAnswer {
    met: bool,
    category: String,
    step: String,
    quote: String,
}

pub fn rubric_request(f: &Failure, rubric: &Rubric, retry: Option<&str>) -> ChatRequest {
    let mut system = format!(
        "You review runs of AI agents whose outcome was not recorded. The run must meet these criteria:\n{}\n\n\
         Decide whether it met them. If it did not, classify the root cause into exactly one category:\n",
        rubric.criteria.trim()
    );
    for (slug, meaning) in CATEGORIES {
        system.push_str(&format!("- {slug}: {meaning}\n"));
    }
    system.push_str(
        "Answer with one JSON object only: {\"met\": true|false, \"category\": \"<slug>\", \"step\": \"<one of the \
         step ids>\", \"quote\": \"<a short span copied exactly from the run text, the evidence>\"}",
    );
    // The header autoharness wrote stays apart from the run text: the quote must come from the run.
    let mut user = format!(
        "Step ids: {}\nCause found offline: {}\n\nRun text:\n{}\n",
        f.step_ids.join(", "),
        f.header().trim(),
        clip(f.trace_text(), TEXT_CHARS)
    );
    if let Some(why) = retry {
        user.push_str(&format!("\nYour previous answer was refused: {why}. Answer again.\n"));
    }
    let mut schema = schema(&f.step_ids);
    schema["properties"]["met"] = serde_json::json!({"type": "boolean"});
    schema["required"] = serde_json::json!(["met", "category", "step", "quote"]);
    ChatRequest { system, user, json_schema: Some(schema) }
}

/// A rubric answer as a judgement: a met rubric is the category [`RUBRIC_MET`]. The step and
/// quote are checked either way (a verdict without evidence is a guess); the category only
/// when the rubric was not met.
fn parse_rubric(answer: &str, f: &Failure) -> Result<Judgement, String> {
    let start = answer.find('{').ok_or("the answer holds no JSON object")?;
    let end = answer.rfind('}').filter(|&e| e > start).ok_or("the answer's JSON object is not closed")?;
    let a: RubricAnswer = serde_json::from_str(&answer[start..=end])
        .map_err(|e| format!("the answer's JSON is not a rubric judgement: {e}"))?;
    let category = if a.met { RUBRIC_MET.to_string() } else { a.category };
    let j = Judgement { category, step: a.step, quote: a.quote };
    let checked = if a.met { Judgement { category: CATEGORIES[0].0.into(), ..j.clone() } } else { j.clone() };
    check(&checked, f)?;
    Ok(j)
}

/// Judge a trace of unknown outcome against the rubric: ask, check, re-ask once, else reject.
pub async fn judge_rubric(cfg: &ProviderConfig, f: &Failure, rubric: &Rubric) -> Result<Judged, llm::LlmError> {
    ask_checked(cfg, |retry| rubric_request(f, rubric, retry), |answer| parse_rubric(answer, f)).await
}

/// A rubric judge's failing category becomes the signature, under its own prefix, and its
/// checked quote the failure's message (the evidence a person reads first); the offline
/// cause of a trace that recorded no failure meant nothing.
pub fn apply_rubric(f: &mut Failure, judged: &Judgement) {
    let category = judged.category.as_str();
    f.message = judged.quote.clone();
    f.step_id = Some(judged.step.clone());
    f.signature.signal = format!("{RUBRIC_SIGNAL}{category}");
    f.signature.step_kind = "-".into();
    f.signature.tool = None;
    f.signature.error_type = None;
    f.signature.kind = "capability".into();
    f.infra = false;
    f.signature.template = format!("rubric {}", category.replace('_', " "));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        let mut f: Failure = serde_json::from_value(serde_json::json!({
            "trace_id": "t", "file": "f", "format": "x", "trace_seq": 0, "infra": false,
            "signature": {"kind": "capability", "signal": "verdict:unexplained", "step_kind": "assistant",
                          "template": "unexplained"},
            "step_id": "s2", "step_index": 1, "message": "m",
            "text": "verdict unexplained Computer_terminal is_correct = false\nThe   order total is 42 USD according to the tool",
            "excerpt": "e",
            "time": null, "cost_usd": null, "tokens": null, "seed": {"input": null, "fixtures": [], "checks": []}
        }))
        .unwrap();
        f.step_ids = vec!["s1".into(), "s2".into()];
        f.header_len = f.text.find('\n').unwrap() + 1;
        f
    }

    #[test]
    fn a_quote_of_the_header_autoharness_wrote_is_refused() {
        let f = failure();
        let header = Judgement {
            category: "invented_information".into(),
            step: "s2".into(),
            quote: "Computer_terminal is_correct = false".into(),
        };
        let why = check(&header, &f).unwrap_err();
        assert!(why.contains("offline cause, not the trace's text"), "{why}");
        // Redaction rewrites the text; the header still ends where the trace's text starts.
        let mut r = failure();
        r.text = r.text.replace("unexplained", "sk-abcdefghijklmnopqrstuvwxyz0123456789");
        r.header_len = r.text.find('\n').unwrap() + 1;
        crate::mine::redact_failure(&mut r, &mut Default::default());
        assert!(r.header().contains("[REDACTED"), "{}", r.header());
        assert_eq!(r.trace_text(), "The   order total is 42 USD according to the tool");
        let req = request(&f, None);
        assert!(!req.user.split("Trace text:").nth(1).unwrap().contains("is_correct"), "{}", req.user);
    }

    #[test]
    fn the_check_refuses_what_the_trace_does_not_hold() {
        let f = failure();
        let ok =
            Judgement { category: "invented_information".into(), step: "s2".into(), quote: "ORDER total is 42".into() };
        assert_eq!(check(&ok, &f), Ok(()));
        let made_up = Judgement { quote: "the total is 99 dollars".into(), ..ok.clone() };
        assert!(check(&made_up, &f).unwrap_err().contains("does not occur"));
        let no_step = Judgement { step: "s9".into(), ..ok.clone() };
        assert!(check(&no_step, &f).unwrap_err().contains("not a step"));
        let no_cat = Judgement { category: "bad_vibes".into(), ..ok.clone() };
        assert!(check(&no_cat, &f).unwrap_err().contains("taxonomy"));
        let short = Judgement { quote: "42".into(), ..ok };
        assert!(check(&short, &f).is_err());
    }

    #[test]
    fn answers_in_prose_or_fences_parse_and_apply_only_to_verdict_only_failures() {
        let j = parse("Sure!\n```json\n{\"category\": \"system_failure\", \"step\": \"s1\", \"quote\": \"q\"}\n```")
            .unwrap();
        assert_eq!(j.category, "system_failure");
        assert!(parse("no idea").is_err());
        let mut f = failure();
        let j = Judgement { category: "system_failure".into(), step: "s1".into(), quote: "q".into() };
        apply(&mut f, &j);
        assert_eq!(f.signature.signal, "verdict:judge:system_failure");
        assert_eq!(f.step_id.as_deref(), Some("s1"));
        assert_eq!(f.message, "q");
        assert_eq!(
            label(&f.signature.signal, "\n  the tool timed out\nmore").as_deref(),
            Some("a tool, service or environment failed (judge: system_failure): \"the tool timed out\"")
        );
        assert_eq!(label("verdict:gave_up", "x"), None);
        let mut e = failure();
        e.signature.signal = "error:span_status".into();
        apply(&mut e, &j);
        assert_eq!(e.signature.signal, "error:span_status");
    }

    #[test]
    fn a_rubric_answer_is_checked_and_a_met_rubric_needs_no_category() {
        let f = failure();
        let met = parse_rubric(r#"{"met": true, "category": "", "step": "s1", "quote": "order total is 42"}"#, &f);
        assert_eq!(met.unwrap().category, RUBRIC_MET);
        let failed =
            parse_rubric(r#"{"met": false, "category": "plan_adherence", "step": "s2", "quote": "order total"}"#, &f);
        assert_eq!(failed.unwrap().category, "plan_adherence");
        let bad = parse_rubric(r#"{"met": false, "category": "met", "step": "s2", "quote": "order total"}"#, &f);
        assert!(bad.unwrap_err().contains("taxonomy"));
        let invented = parse_rubric(r#"{"met": true, "category": "", "step": "s2", "quote": "all went well"}"#, &f);
        assert!(invented.unwrap_err().contains("does not occur"));
        let r = Rubric::new("Answer the user's question.".into(), None);
        assert_eq!(r.version.len(), 12);
        assert_ne!(Rubric::new("Answer politely.".into(), None).version, r.version);
        assert_eq!(Rubric::new("x".into(), Some("v2".into())).cache_key(), format!("rubric:v2:{TAXONOMY_VERSION}"));
        let mut g = failure();
        let j = Judgement { category: "plan_adherence".into(), step: "s2".into(), quote: "order total".into() };
        apply_rubric(&mut g, &j);
        assert_eq!(g.signature.signal, "rubric:plan_adherence");
        assert_eq!(g.message, "order total");
    }

    #[test]
    fn the_schema_limits_the_step_to_the_trace_s_step_ids() {
        let req = request(&failure(), None);
        let schema = req.json_schema.unwrap();
        assert_eq!(schema["properties"]["step"]["enum"], serde_json::json!(["s1", "s2"]));
        let mut none = failure();
        none.step_ids.clear();
        let schema = request(&none, None).json_schema.unwrap();
        assert!(schema["properties"]["step"].get("enum").is_none());
    }
}
