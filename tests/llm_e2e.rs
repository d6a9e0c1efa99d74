//! `autoharness run --proposer openai` against a REAL OpenAI-compatible server on
//! 127.0.0.1 (llama-cpp-python serving SmolLM2-135M, started by `scripts/llm-server.sh`,
//! which `.ci/run` runs; its URL arrives in AUTOHARNESS_LLM_URL). The model is tiny and its
//! proposals mostly useless; what must hold anyway: the loop completes within its budget,
//! every answer is parsed or rejected cleanly, token usage and cost are recorded, and
//! nothing that regresses is accepted.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::cli::{Sandbox, copy_tree, stderr};

#[allow(clippy::print_stderr)]
fn server_url() -> Option<String> {
    match std::env::var("AUTOHARNESS_LLM_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            let msg = "SKIPPED: AUTOHARNESS_LLM_URL is not set; start a server with `scripts/llm-server.sh start` \
                       and source the env file it writes";
            if std::env::var("AUTOHARNESS_REQUIRE_ALL").is_ok_and(|v| v == "1") {
                panic!("{msg} (AUTOHARNESS_REQUIRE_ALL=1 forbids skipping)");
            }
            eprintln!("{msg}");
            None
        }
    }
}

/// provider, verdict, rule, tokens in, tokens out, cost, accepted, error
type ProposalRow = (String, Option<String>, Option<String>, Option<i64>, Option<i64>, f64, i64, Option<String>);

#[test]
fn run_with_a_real_local_llm_completes_and_accepts_no_regression() {
    let Some(url) = server_url() else { return };
    let sb = Sandbox::new();
    for rel in ["harnesses/support-bot", "evals/support-bot", "examples/support-bot/traces"] {
        copy_tree(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel), &sb.path().join(rel));
    }
    // A 4k-token model: the brief must be cut to fit. A price, so cost accounting shows.
    sb.write(
        "autoharness.toml",
        "[proposer]\nprovider = \"openai\"\nmodel = \"smollm2\"\ncontext_tokens = 4096\nmax_tokens = 512\ntimeout = \"120s\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
    );
    let out = sb.run(&[
        "--json",
        "run",
        "--traces",
        "examples/support-bot/traces",
        "--base-url",
        &url,
        "--max-iterations",
        "2",
        "--candidates",
        "2",
        "--time-limit",
        "8m",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["iterations"].as_array().unwrap().len(), 2, "{s:#}");

    let rt = autoharness::store::runtime().unwrap();
    let rows: Vec<ProposalRow> = rt.block_on(async {
        let store = autoharness::store::Store::open(&sb.db()).await.unwrap();
        let rows = sqlx::query_as(
            "SELECT provider, verdict, rule, tokens_in, tokens_out, cost_usd, accepted, error FROM proposals",
        )
        .fetch_all(store.sqlite().unwrap())
        .await
        .unwrap();
        store.close().await;
        rows
    });
    assert!(rows.len() >= 2, "every answer is recorded: {rows:?}");
    for (provider, verdict, rule, _, _, _, accepted, error) in &rows {
        assert_eq!(provider, "openai");
        let verdict = verdict.as_deref().unwrap_or("");
        assert!(matches!(verdict, "pass" | "fail" | "error"), "each answer gated or rejected cleanly: {rows:?}");
        if verdict == "error" {
            assert!(error.is_some() || rule.as_deref() == Some("error"), "a rejection says why: {rows:?}");
        }
        if *accepted == 1 {
            assert_eq!(rule.as_deref(), Some("passed"), "only a passing gate is accepted: {rows:?}");
        }
    }
    let tokens: i64 = rows.iter().map(|r| r.3.unwrap_or(0) + r.4.unwrap_or(0)).sum();
    assert!(tokens > 0, "token usage from the server is recorded: {rows:?}");
    let cost: f64 = rows.iter().map(|r| r.5).sum();
    assert!(cost > 0.0, "cost from usage and the configured price: {rows:?}");
}

#[test]
fn mine_summarizes_each_cluster_once_with_a_real_local_llm() {
    let Some(url) = server_url() else { return };
    let sb = Sandbox::new();
    copy_tree(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/tau-bench"),
        &sb.path().join("traces"),
    );
    sb.write(
        "autoharness.toml",
        format!("[proposer]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"smollm2\"\ntimeout = \"120s\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n"),
    );
    let first = sb.json(&["mine", "--no-cases", "--summarize", "traces"]);
    let clusters = first["clusters"].as_array().unwrap();
    assert!(!clusters.is_empty());
    assert_eq!(first["summary"]["summaries_written"].as_u64().unwrap() as usize, clusters.len(), "{first:#}");
    assert!(first["summary"]["summary_cost_usd"].as_f64().unwrap() > 0.0, "usage is priced: {first:#}");
    for c in clusters {
        let s = c["summary"].as_str().unwrap_or_else(|| panic!("no summary: {c:#}"));
        assert!(!s.trim().is_empty() && s.chars().count() <= 201, "{s:?}");
    }
    // Summaries are kept in the store: a re-mine asks for none and shows the same ones.
    let again = sb.json(&["mine", "--no-cases", "--summarize", "traces"]);
    assert_eq!(again["summary"]["summaries_written"], 0, "{again:#}");
    let ids = |d: &Value| -> Vec<(String, String)> {
        d["clusters"].as_array().unwrap().iter().map(|c| (c["id"].to_string(), c["summary"].to_string())).collect()
    };
    assert_eq!(ids(&first), ids(&again));
    // And `clusters ID` shows it.
    let id = clusters[0]["id"].as_str().unwrap();
    let detail = sb.json(&["clusters", id]);
    assert_eq!(detail["summary"], clusters[0]["summary"]);
}

/// `mine --judge` mechanics with the real model: every verdict-only failure gets an answer
/// that is accepted (a taxonomy category in its signature) or rejected by the check, never
/// invented; usage is priced; a re-mine of the same failures is answered from the cache.
/// Agreement with any labels is not asserted: a 135M model's categories are mostly noise.
#[test]
fn mine_judge_with_a_real_local_llm_is_checked_priced_and_cached() {
    let Some(url) = server_url() else { return };
    let sb = Sandbox::new();
    copy_tree(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verdict"), &sb.path().join("traces"));
    sb.write(
        "autoharness.toml",
        format!("[judge]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"smollm2\"\ntimeout = \"120s\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n"),
    );
    let first = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let j = &first["summary"]["judge"];
    let n = |k: &str| j[k].as_u64().unwrap_or_else(|| panic!("{k}: {j}"));
    assert_eq!(n("failures"), 10, "{j}");
    assert_eq!((n("accepted") + n("rejected"), n("unjudged")), (10, 0), "{j}");
    assert!((10..=20).contains(&n("requests")), "one ask and at most one re-ask each: {j}");
    assert!(j["cost_usd"].as_f64().unwrap() > 0.0 && n("tokens") > 0, "{j}");
    let judged: usize = first["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["signature"].as_str().unwrap().contains("|verdict:judge:"))
        .map(|c| c["count"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(judged as u64, n("accepted"), "accepted judgements and judged members differ: {first:#}");
    for e in std::fs::read_dir(sb.path().join("traces")).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap() + "\n";
        std::fs::write(&p, text).unwrap();
    }
    let again = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let j2 = &again["summary"]["judge"];
    assert_eq!((j2["cache_hits"].as_u64(), j2["requests"].as_u64()), (Some(10), Some(0)), "{j2}");
}

/// Rubric judging against the real server: traces with no recorded outcome are each judged
/// (met, failed, or rejected by the check), failed ones become failures marked judged under
/// `rubric:`, cost is recorded, and a second mine asks nothing.
#[test]
fn mine_judge_with_a_rubric_and_a_real_local_llm_marks_judged_failures_and_caches() {
    let Some(url) = server_url() else { return };
    let sb = Sandbox::new();
    let dir = sb.path().join("traces");
    std::fs::create_dir_all(&dir).unwrap();
    // The verdict fixtures without their verdict: outcome unknown.
    for e in std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/verdict")).unwrap() {
        let p = e.unwrap().path();
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("is_correct");
        std::fs::write(dir.join(p.file_name().unwrap()), v.to_string()).unwrap();
    }
    sb.write(
        "autoharness.toml",
        format!("[judge]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"smollm2\"\ntimeout = \"120s\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n\n[judge.rubric]\ncriteria = \"The agent answers the user's question correctly with values it was given.\"\n"),
    );
    let first = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    assert_eq!(first["summary"]["unknown"].as_u64(), Some(10), "{}", first["summary"]);
    let r = &first["summary"]["judge"]["rubric"];
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
    assert_eq!(n("traces"), 10, "{r}");
    assert_eq!(n("met") + n("failed") + n("rejected"), 10, "every trace judged or rejected: {r}");
    let j = &first["summary"]["judge"];
    assert!(j["cost_usd"].as_f64().unwrap() > 0.0, "{j}");
    let judged: u64 = first["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|c| assert_eq!(c["outcome_source"], "judged", "only judged failures here: {c}"))
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert_eq!(judged, n("failed"), "{first:#}");
    let again = sb.json(&["mine", "--no-cases", "--judge", "traces"]);
    let j2 = &again["summary"]["judge"];
    assert_eq!((j2["requests"].as_u64(), j2["cache_hit_rate"].as_f64()), (Some(0), Some(1.0)), "{j2}");
}
