//! `autoharness gate` end to end, on patches whose true effect is known by construction:
//! a deterministic harness (`steady`) for the hard edges, and the bundled support-bot for
//! real noisy verdicts.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cli::{Sandbox, copy_tree, diff, stderr, stdout, steady};

fn gate(sb: &Sandbox, patch: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    sb.write("change.patch", patch);
    let mut args = vec!["--json", "gate", "change.patch"];
    args.extend_from_slice(extra);
    let out = sb.run(&args);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), doc, stderr(&out))
}

#[test]
fn neutral_change_passes_and_evidence_is_written() {
    let sb = steady();
    let p = diff(&sb, "harnesses/steady/run.sh", "# Prints the prompt (reworded comment).\ncat prompt.txt\n");
    let (code, doc, err) = gate(&sb, &p, &["--markdown", "gate.md", "--junit", "gate.xml", "--html", "gate.html"]);
    assert_eq!(code, Some(0), "{err}\n{doc:#}");
    assert_eq!(doc["schema"], "autoharness.gate/v1");
    assert_eq!(doc["verdict"], "pass");
    assert_eq!(doc["rule"], "passed");
    // Stable passes on both arms are settled after k trials: no top-ups.
    assert_eq!(doc["trials"]["candidate"], 12, "{doc:#}");
    let md = std::fs::read_to_string(sb.path().join("gate.md")).unwrap();
    assert!(md.contains("PASS") && md.contains("c-s1"), "{md}");
    let xml = std::fs::read_to_string(sb.path().join("gate.xml")).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
    let html = std::fs::read_to_string(sb.path().join("gate.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && !html.contains("http"), "self-contained");
    // The baseline's trials are cached: a second gate of another patch reruns none of them.
    let p2 = diff(&sb, "harnesses/steady/prompt.txt", "hello there\n");
    let (code, doc, _) = gate(&sb, &p2, &[]);
    assert_eq!(code, Some(0));
    assert!(doc["trials"]["cached"].as_u64().unwrap() >= 12, "{doc:#}");
}

/// A gate with `STEADY_MODEL` set to `model` (a passed-through variable: part of the trials'
/// environment fingerprint, as a model name in the environment would be).
fn gate_with_model(sb: &Sandbox, patch: &str, model: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    sb.write("change.patch", patch);
    let mut args = vec!["--json", "gate", "change.patch"];
    args.extend_from_slice(extra);
    let out = sb.command(&args).env("STEADY_MODEL", model).output().unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), doc, stderr(&out))
}

#[test]
fn a_second_sequential_gate_screens_on_the_baseline_history_the_first_recorded() {
    let sb = steady();
    let manifest = sb.path().join("harnesses/steady/harness.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    sb.write("harnesses/steady/harness.toml", format!("{text}env = [\"STEADY_MODEL\"]\n"));
    // The first gate, today's rule at k = 10: it records 10 baseline trials of every case.
    let p = diff(&sb, "harnesses/steady/run.sh", "# Prints the prompt (reworded comment).\ncat prompt.txt\n");
    let (code, doc, err) = gate_with_model(&sb, &p, "m-1", &["--trials", "10"]);
    assert_eq!(code, Some(0), "{err}\n{doc:#}");
    assert_eq!(doc["trials"]["baseline"], 40, "{doc:#}");
    assert!(doc["trials"].get("history").is_none(), "{doc:#}");
    // The second, sequential, of another patch on the same baseline: warm.
    sb.write("autoharness.toml", "[gate]\nsequential = true\n");
    let p2 = diff(&sb, "harnesses/steady/prompt.txt", "hello there\n");
    let (code, doc, err) = gate_with_model(&sb, &p2, "m-1", &["--markdown", "gate.md"]);
    assert_eq!(code, Some(0), "{err}\n{doc:#}");
    assert_eq!(doc["trials"]["history"], 40, "{doc:#}");
    assert_eq!(doc["trials"]["cached"], 40, "not one baseline trial ran again: {doc:#}");
    let cases = doc["decision"]["cases"].as_array().unwrap();
    let suite: Vec<&Value> = cases.iter().filter(|c| c["role"] == "suite").collect();
    assert_eq!(suite.len(), 3, "{doc:#}");
    for c in &suite {
        assert_eq!(c["start"], "screened", "{doc:#}");
        assert_eq!((c["baseline_n"].as_u64(), c["candidate_n"].as_u64()), (Some(10), Some(3)), "{doc:#}");
    }
    // 3 screening trials per suite case (k), 3 for the holdout case (never screened), and not
    // one fresh baseline trial.
    assert_eq!(doc["trials"]["candidate"], 3 * 3 + 3, "{doc:#}");
    let md = std::fs::read_to_string(sb.path().join("gate.md")).unwrap();
    assert!(md.contains("40 of them the baseline's history") && md.contains("screened: warm stable baseline"), "{md}");
    // A changed model in the environment: the history is not this environment's, the gate starts cold.
    let p3 = diff(&sb, "harnesses/steady/prompt.txt", "hello again\n");
    let (code, doc, err) = gate_with_model(&sb, &p3, "m-2", &[]);
    assert_eq!(code, Some(0), "{err}\n{doc:#}");
    assert!(doc["trials"].get("history").is_none(), "{doc:#}");
    assert_starts_cold(&doc);
}

/// A cold sequential gate: suite cases run the candidate first; holdout cases run both arms,
/// because the holdout's pooled drop test needs the pairs of every holdout case.
fn assert_starts_cold(doc: &Value) {
    for c in doc["decision"]["cases"].as_array().unwrap() {
        match c["role"].as_str() {
            Some("suite") => assert_eq!(c["start"], "candidate_first", "{doc:#}"),
            _ => assert!(c.get("start").is_none() && c["baseline_n"] == 3, "{doc:#}"),
        }
    }
}

#[test]
fn a_broken_candidate_fails_with_the_regression_and_its_evidence() {
    let sb = steady();
    let p = diff(&sb, "harnesses/steady/prompt.txt", "goodbye\n");
    let (code, doc, err) = gate(&sb, &p, &[]);
    assert_eq!(code, Some(1), "{err}\n{doc:#}");
    assert_eq!(doc["rule"], "regression", "{doc:#}");
    let row = doc["cases"].as_array().unwrap().iter().find(|c| c["role"] == "suite").unwrap();
    // Every baseline trial passed, every candidate trial failed (after the top-up the engine asks for).
    let flip = row["flip"].as_str().unwrap();
    let (b, c) = flip.split_once(" → ").unwrap();
    assert!(b.split('/').next() == b.split('/').nth(1) && c.starts_with("0/"), "{row:#}");
    assert!(row["candidate_failure"].as_str().unwrap().contains("does not contain"), "{row:#}");
    let text = stdout(&sb.run(&["gate", "change.patch"]));
    assert!(text.contains("FAIL") && text.contains("regression"), "{text}");
}

#[test]
fn a_hanging_or_crashing_candidate_fails_and_leaves_nothing() {
    let sb = steady();
    let p = diff(&sb, "harnesses/steady/run.sh", "cat prompt.txt\nsleep 30\n");
    let (code, doc, err) = gate(&sb, &p, &[]);
    assert_eq!(code, Some(1), "{err}\n{doc:#}");
    assert!(doc["cases"].to_string().contains("timed out"), "{doc:#}");
    let p = diff(&sb, "harnesses/steady/run.sh", "cat prompt.txt\nexit 1\n");
    let (code, doc, _) = gate(&sb, &p, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(doc["rule"], "regression");
}

#[test]
fn holdout_text_in_a_patch_is_leakage() {
    let sb = steady();
    let p = diff(
        &sb,
        "harnesses/steady/prompt.txt",
        "hello\nIf asked about the sealed holdout question about a purple elephant named Gerald, say hello.\n",
    );
    let (code, doc, _) = gate(&sb, &p, &[]);
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(doc["rule"], "leakage");
    assert_eq!(doc["leaks"][0]["case"], "c-h1");
    let p = diff(&sb, "harnesses/steady/prompt.txt", "hello c-h1\n");
    let (_, doc, _) = gate(&sb, &p, &[]);
    assert_eq!(doc["rule"], "leakage", "naming a holdout case id leaks it too");
}

#[test]
fn patches_that_cannot_be_gated_exit_2_with_a_reason() {
    let sb = steady();
    let cases: &[(&str, &str)] = &[
        ("", "empty patch"),
        ("this is not a diff\n", "empty patch"),
        ("--- a/prompt.txt\n+++ b/prompt.txt\n@@ -1,3 +1,3 @@ nonsense\n-x\n", "bad patch"),
        (
            "--- a/harnesses/steady/harness.toml\n+++ b/harnesses/steady/harness.toml\n@@ -1 +1 @@\n-name = \"steady\"\n+name = \"x\"\n",
            "may not change",
        ),
        ("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+toor\n", "may not change"),
        ("--- a/prompt.txt\n+++ b/prompt.txt\n@@ -1 +1 @@\n-no such line\n+hi\n", "does not apply"),
        (
            "--- a/harnesses/other/prompt.txt\n+++ b/harnesses/other/prompt.txt\n@@ -1 +1 @@\n-hello\n+hi\n",
            "may not change",
        ),
    ];
    for (patch, want) in cases {
        let (code, _, err) = gate(&sb, patch, &["--harness", "steady"]);
        assert_eq!(code, Some(2), "{patch:?}: {err}");
        assert!(err.contains(want), "{patch:?}: want {want:?} in:\n{err}");
    }
    // Already applied: the baseline has the change.
    let p = diff(&sb, "harnesses/steady/prompt.txt", "hello there\n");
    sb.write("harnesses/steady/prompt.txt", "hello there\n");
    let (code, _, err) = gate(&sb, &p, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("already applied"), "{err}");
}

#[test]
fn crlf_patches_from_stdin_and_inside_the_harness_folder_work() {
    let sb = steady();
    // Made inside the harness folder (paths relative to its root), CRLF line ends, on stdin.
    let p = "--- a/prompt.txt\r\n+++ b/prompt.txt\r\n@@ -1 +1 @@\r\n-hello\r\n+hello world\r\n";
    let out = sb.command(&["--json", "gate", "-"]).write_stdin(p).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(0), "{}\n{doc:#}", stderr(&out));
    assert_eq!(doc["files"][0], "prompt.txt");
}

// --- The bundled example: real noise, verdicts that must still come out right. ---

const BEST: &str = "[model]\nname = \"sim-4o-mini\"\ntemperature = 0.0\n[agent]\nmax_steps = 12\n[tools]\nretry_attempts = 5\n[policy]\nverify_identity = \"refunds\"\n";

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The example with `config` as the baseline and, as the active suite, every train case
/// that passes 3 of 3 trials on it (what `run` would have promoted).
fn example_with_suite(config: &str, min_active: usize) -> Sandbox {
    let sb = Sandbox::new();
    for rel in ["harnesses/support-bot", "evals/support-bot"] {
        copy_tree(&repo(rel), &sb.path().join(rel));
    }
    sb.write("harnesses/support-bot/config.toml", config);
    let doc = sb.json(&["eval", "--trials", "3"]);
    let mut active = 0;
    for c in doc["cases"].as_array().unwrap() {
        if c["passes"] == 3 {
            autoharness::evals::case::write_status(
                Path::new(c["path"].as_str().unwrap()),
                autoharness::evals::case::CaseStatus::Active,
            )
            .unwrap();
            active += 1;
        }
    }
    assert!(active >= min_active, "the example should have a real suite on this config: {active} active");
    sb
}

#[test]
fn example_clear_fix_of_the_target_cluster_passes() {
    // Baseline: everything fixed but the orders-API retries; the patch adds them.
    let sb = example_with_suite(&BEST.replace("retry_attempts = 5", "retry_attempts = 1"), 1);
    let p = diff(&sb, "harnesses/support-bot/config.toml", BEST);
    let (code, doc, err) = gate(&sb, &p, &["--target", "k-9278df0f"]);
    assert_eq!(code, Some(0), "{err}\n{doc:#}");
    let target = &doc["decision"]["target"];
    assert_eq!(target["improved"], true, "{target:#}");
    assert!(target["p_value"].as_f64().is_some_and(|p| p <= 0.05), "{target:#}");
}

#[test]
fn example_regressions_are_caught() {
    let sb = example_with_suite(BEST, 5);
    // Fewer steps: multi-order conversations can no longer finish.
    let p = diff(&sb, "harnesses/support-bot/config.toml", &BEST.replace("max_steps = 12", "max_steps = 4"));
    let (code, doc, err) = gate(&sb, &p, &[]);
    assert_eq!(code, Some(1), "{err}\n{doc:#}");
    assert_eq!(doc["rule"], "regression", "{doc:#}");
    // Verifying identity always breaks questions about guest orders.
    let p = diff(&sb, "harnesses/support-bot/config.toml", &BEST.replace("\"refunds\"", "\"always\""));
    let (code, doc, err) = gate(&sb, &p, &[]);
    assert_eq!(code, Some(1), "{err}\n{doc:#}");
    assert!(doc["cases"].to_string().contains("IdentityError"), "{doc:#}");
}

#[test]
fn a_sequential_gate_runs_the_baseline_only_where_the_candidate_failed() {
    let sb = steady();
    sb.write("autoharness.toml", "[gate]\nsequential = true\n");
    let p = diff(&sb, "harnesses/steady/run.sh", "# Prints the prompt (reworded comment).\ncat prompt.txt\n");
    let (code, doc, err) = gate(&sb, &p, &["--markdown", "gate.md"]);
    assert_eq!(code, Some(0), "{err}\n{doc:#}");
    // No candidate trial failed: no suite case needed a baseline trial, the holdout case its k.
    assert_eq!(doc["trials"]["baseline"], 3, "{doc:#}");
    assert_eq!(doc["trials"]["candidate"], 12, "{doc:#}");
    assert_starts_cold(&doc);
    let md = std::fs::read_to_string(sb.path().join("gate.md")).unwrap();
    assert!(md.contains("**Allocation** (sequential)") && md.contains("no baseline needed"), "{md}");
    // A broken candidate: the failing suite cases get their baseline; a suite case or the
    // holdout case (which breaks too, and runs both arms from the start) fails the gate.
    let p = diff(&sb, "harnesses/steady/prompt.txt", "goodbye\n");
    let (code, doc, err) = gate(&sb, &p, &[]);
    assert_eq!(code, Some(1), "{err}\n{doc:#}");
    assert!(doc["rule"] == "regression" || doc["rule"] == "holdout_regression", "{doc:#}");
    assert!(doc["decision"]["cases"].as_array().unwrap().iter().any(|c| c["escalated"] == true), "{doc:#}");
}
