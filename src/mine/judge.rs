//! `mine --judge`: an LLM classifies each verdict-only failure into AgentRx's root-cause
//! taxonomy, naming the decisive step and quoting the evidence. The answer is checked
//! before it counts: the category must be one of the taxonomy's, the step must be one of
//! the trace's, and the quote must occur in the failure's text. A failed check is re-asked
//! once with the reason; a second failure is recorded as rejected, never repaired or guessed.
//!
//! Judgements are cached by (failure content hash, taxonomy version, model), so a re-mine
//! of the same failures asks nothing.

use serde::Deserialize;

use super::failure::Failure;
use crate::llm::{self, ChatRequest, ProviderConfig};
use crate::trace::json::clip;

/// Changes whenever the categories or the prompt change, so old judgements stop matching.
pub const TAXONOMY_VERSION: &str = "agentrx-v1";

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
    f.signature.signal.starts_with("verdict:")
}

pub fn request(f: &Failure, retry: Option<&str>) -> ChatRequest {
    let mut system =
        String::from("You diagnose failed runs of AI agents. Classify the root cause into exactly one category:\n");
    for (slug, meaning) in CATEGORIES {
        system.push_str(&format!("- {slug}: {meaning}\n"));
    }
    system.push_str(
        "Answer with one JSON object only: {\"category\": \"<slug>\", \"step\": \"<one of the step ids>\", \
         \"quote\": \"<a short span copied exactly from the failure text>\"}",
    );
    let mut user = format!(
        "Step ids: {}\nDecisive step found offline: {}\n\nFailure text:\n{}\n",
        f.step_ids.join(", "),
        f.step_id.as_deref().unwrap_or("-"),
        clip(&f.text, TEXT_CHARS)
    );
    if let Some(why) = retry {
        user.push_str(&format!("\nYour previous answer was refused: {why}. Answer again.\n"));
    }
    ChatRequest { system, user, json_schema: Some(schema()) }
}

/// The answer's shape, for servers that constrain output to a schema (llama.cpp, OpenAI):
/// a small model then at least answers in the form the check can read.
fn schema() -> serde_json::Value {
    let categories: Vec<&str> = CATEGORIES.iter().map(|(slug, _)| *slug).collect();
    serde_json::json!({
        "type": "object",
        "properties": {
            "category": {"type": "string", "enum": categories},
            "step": {"type": "string"},
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
    if !squash(&f.text).contains(&quote) {
        return Err(format!("the quote `{}` does not occur in the failure text", clip(&j.quote, 80)));
    }
    Ok(())
}

/// Ask, check, re-ask once with the reason, else reject. A provider error ends the judging
/// of this failure with nothing recorded (it may answer next time).
pub async fn judge(cfg: &ProviderConfig, f: &Failure) -> Result<Judged, llm::LlmError> {
    let mut judged = Judged { outcome: Outcome::Rejected(String::new()), requests: 0, tokens: 0, cost_usd: 0.0 };
    let mut retry: Option<String> = None;
    // The answer is one short JSON object: a long one is a model rambling at our expense.
    let mut cfg = cfg.clone();
    cfg.max_tokens = cfg.max_tokens.min(300);
    for _ in 0..2 {
        let answer = llm::complete(&cfg, &request(f, retry.as_deref())).await?;
        judged.requests += 1;
        judged.tokens += answer.input_tokens + answer.output_tokens;
        judged.cost_usd += answer.cost_usd;
        match parse(&answer.text).and_then(|j| check(&j, f).map(|()| j)) {
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
/// the agent's role and tool go too, or one cause split by which agent showed it.
pub fn apply(f: &mut Failure, category: &str) {
    if is_judged(f) {
        f.signature.signal = format!("verdict:judge:{category}");
        f.signature.step_kind = "-".into();
        f.signature.tool = None;
        f.signature.template = format!("judge {}", category.replace('_', " "));
    }
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
            "text": "The   order total is 42 USD according to the tool", "excerpt": "e",
            "time": null, "cost_usd": null, "tokens": null, "seed": {"input": null, "fixtures": [], "checks": []}
        }))
        .unwrap();
        f.step_ids = vec!["s1".into(), "s2".into()];
        f
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
        apply(&mut f, "system_failure");
        assert_eq!(f.signature.signal, "verdict:judge:system_failure");
        let mut e = failure();
        e.signature.signal = "error:span_status".into();
        apply(&mut e, "system_failure");
        assert_eq!(e.signature.signal, "error:span_status");
    }
}
