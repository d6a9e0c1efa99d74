//! Optional one-line root-cause summaries of clusters, from the configured LLM
//! (`mine --summarize`). Mining never needs them: the label is the default, and a provider
//! that fails costs a warning, never the mine.
//!
//! Only clusters without a summary are asked about, so a nightly re-mine pays for new
//! clusters alone. The prompt holds the cluster's label, signature, size and the decisive
//! steps of a few members (clipped): never benchmark labels, which the model never carries.

use crate::llm::{self, ChatRequest, ProviderConfig};
use crate::trace::json::clip;

/// Members whose decisive steps go into the prompt, and how much of each.
const EXAMPLES: usize = 3;
const EXAMPLE_CHARS: usize = 600;
/// Longest summary kept: one sentence, not an essay.
pub const SUMMARY_MAX: usize = 200;

const SYSTEM: &str = "You analyse failures of AI agents. The failures below were grouped together because \
they fail the same way. State their common root cause in one sentence of at most 25 words: name the behaviour \
or component that fails and why, not the ids or values of single runs. Answer with that sentence only.";

/// The request for one cluster.
pub fn request(label: &str, signature: &str, count: usize, excerpts: &[&str]) -> ChatRequest {
    let mut user = format!("Cluster: {label}\nSignature: {signature}\nFailed runs: {count}\n\nDecisive steps:\n");
    for (i, e) in excerpts.iter().take(EXAMPLES).enumerate() {
        user.push_str(&format!("--- failure {}\n{}\n", i + 1, clip(e, EXAMPLE_CHARS)));
    }
    user.push_str("---\nRoot cause in one sentence:");
    ChatRequest { system: SYSTEM.into(), user, json_schema: None }
}

/// The summary in an answer: its first line with words, without markdown or a lead-in such
/// as "Root cause:", clipped to `SUMMARY_MAX`. `None` when the answer says nothing.
pub fn sentence(answer: &str) -> Option<String> {
    // Reasoning models may think aloud first.
    let answer = match answer.rfind("</think>") {
        Some(p) => &answer[p + "</think>".len()..],
        None => answer,
    };
    let line = answer.lines().map(str::trim).find(|l| l.chars().any(char::is_alphanumeric))?;
    let mut s = undecorate(line);
    for lead in ["root cause:", "summary:", "answer:"] {
        if s.get(..lead.len()).is_some_and(|head| head.eq_ignore_ascii_case(lead)) {
            s = undecorate(&s[lead.len()..]);
        }
    }
    let s = clip(s, SUMMARY_MAX);
    s.chars().any(char::is_alphanumeric).then_some(s)
}

fn undecorate(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, '*' | '#' | '>' | '-' | '"' | '\'' | '`') || c.is_whitespace())
}

/// Ask for one cluster's summary, adding what it cost to `cost_usd`. Errors say which
/// cluster and what the provider said.
pub async fn summarize(
    cfg: &ProviderConfig,
    id: &str,
    label: &str,
    signature: &str,
    count: usize,
    excerpts: &[&str],
    cost_usd: &mut f64,
) -> anyhow::Result<String> {
    let mut cfg = cfg.clone();
    cfg.max_tokens = cfg.max_tokens.min(120);
    let answer = llm::complete(&cfg, &request(label, signature, count, excerpts))
        .await
        .map_err(|e| anyhow::anyhow!("no summary for cluster {id}: {e}"))?;
    *cost_usd += answer.cost_usd;
    sentence(&answer.text).ok_or_else(|| anyhow::anyhow!("no summary for cluster {id}: the model's answer was empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentence_is_the_first_line_with_words_without_decoration() {
        assert_eq!(
            sentence("\n**Root cause:** The agent refunds before verifying identity.\nMore text").as_deref(),
            Some("The agent refunds before verifying identity.")
        );
        assert_eq!(
            sentence("<think>hmm\nlong</think>\n> \"Orders API times out.\"").as_deref(),
            Some("Orders API times out.")
        );
        assert_eq!(sentence("  \n---\n"), None);
        assert!(sentence(&"word ".repeat(200)).unwrap().chars().count() <= SUMMARY_MAX + 1);
    }

    #[test]
    fn the_prompt_holds_a_few_clipped_examples() {
        let long = "x".repeat(5000);
        let r = request("signal:reward · llm", "capability|signal:reward", 7, &[&long, "b", "c", "d"]);
        assert!(r.user.contains("Failed runs: 7") && r.user.contains("--- failure 3") && !r.user.contains("failure 4"));
        assert!(r.user.len() < 3 * EXAMPLE_CHARS + 500);
    }
}
