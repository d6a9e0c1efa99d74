//! Scores and feedback beside the traces (`src/trace/feedback.rs`): files the real SDKs
//! wrote (tests/fixtures/feedback/README.md) joined to the producer snapshot's traces, whose
//! own outcome is unknown.

use serde_json::Value;

use crate::common::cli::{Sandbox, ls_row, stderr};

/// Traces with no verdict of their own (each `unknown` without feedback).
const TRACES: [&str; 6] = [
    "langfuse/success",
    "langfuse/tool_recovered",
    "langsmith/success",
    "langsmith/tool_recovered",
    "otel-genai/success",
    "otel-genai/tool_recovered",
];

const FEEDBACK: [&str; 5] =
    ["langfuse-scores.json", "langsmith-feedback-posts.jsonl", "otel-evaluations.jsonl", "plain.csv", "plain.jsonl"];

fn traces_in(sandbox: &Sandbox, dir: &str) {
    for t in TRACES {
        let from = crate::common::fixture(&format!("producers/{t}.jsonl.gz"));
        let to = sandbox.path().join(dir).join(format!("{}.jsonl.gz", t.replace('/', "-")));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

fn feedback_in(sandbox: &Sandbox, dir: &str, files: &[&str]) {
    for f in files {
        let from = crate::common::fixture(&format!("feedback/{f}"));
        std::fs::copy(from, sandbox.path().join(dir).join(f)).unwrap();
    }
}

fn outcome(doc: &Value, trace: &str) -> &'static str {
    let row = ls_row(doc, &format!("{}.jsonl.gz", trace.replace('/', "-")));
    assert_eq!(row["traces"], 1, "{row}");
    for o in ["passed", "failed", "unknown"] {
        if row[o] == 1 {
            return o;
        }
    }
    panic!("{row}")
}

#[test]
fn feedback_among_the_traces_decides_their_outcomes() {
    let sandbox = Sandbox::new();
    traces_in(&sandbox, "t");
    let before = sandbox.json(&["traces", "ls", "t"]);
    for t in TRACES {
        assert_eq!(outcome(&before, t), "unknown", "{t} has no verdict of its own");
    }
    feedback_in(&sandbox, "t", &FEEDBACK);
    let doc = sandbox.json(&["traces", "ls", "t"]);
    // Langfuse numeric 0 + thumbs_down; LangSmith user_score 0; OTel task_completion `fail`;
    // the CSV's `fail` for a dashed upper-case spelling of the id; a thumbs up; 2 stars
    // (at or above the default 0.5).
    let expected = [
        ("langfuse/success", "failed"),
        ("langfuse/tool_recovered", "passed"),
        ("langsmith/success", "failed"),
        ("langsmith/tool_recovered", "passed"),
        ("otel-genai/success", "failed"),
        ("otel-genai/tool_recovered", "failed"),
    ];
    for (t, o) in expected {
        assert_eq!(outcome(&doc, t), o, "{t}");
    }
    // Feedback files are feedback, never traces with zero steps.
    for f in FEEDBACK {
        let row = ls_row(&doc, f);
        assert_eq!(row["format"], Value::Null, "{row}");
        assert_eq!(row["traces"], 0, "{row}");
        let reason = row["reason"].as_str().unwrap();
        assert!(reason.starts_with("feedback: "), "{f}: {reason}");
    }
    let csv = ls_row(&doc, "plain.csv")["reason"].as_str().unwrap();
    assert!(csv.contains("2 entries for 2 trace(s), 1 joined; feedback for 1 trace(s) not found"), "{csv}");
}

#[test]
fn mine_joins_named_feedback_with_the_configured_thresholds() {
    let sandbox = Sandbox::new();
    traces_in(&sandbox, "t");
    std::fs::create_dir_all(sandbox.path().join("fb")).unwrap();
    feedback_in(&sandbox, "fb", &["plain.csv", "plain.jsonl", "langsmith-feedback-export.json"]);
    // Without feedback nothing has failed.
    let plain = sandbox.json(&["mine", "t", "--no-cases"]);
    assert_eq!(plain["summary"]["failed"], 0, "{}", plain["summary"]);
    assert_eq!(plain["summary"]["new_failures"], 0);
    // Feedback named later fails three traces of unchanged files: they are mined again.
    sandbox.write("autoharness.toml", "[feedback]\nthresholds = { stars = 3 }\n");
    let args = [
        "mine",
        "t",
        "--no-cases",
        "--feedback",
        "fb/plain.csv",
        "--feedback",
        "fb/plain.jsonl",
        "--feedback",
        "fb/langsmith-feedback-export.json",
    ];
    let out = sandbox.run(&[&["--json"], &args[..]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &doc["summary"];
    // langsmith/success (export: user_score 0), langsmith/tool_recovered (2 stars < 3),
    // otel-genai/tool_recovered (CSV `fail`); langfuse/tool_recovered passed (thumbs up).
    assert_eq!((s["failed"].as_u64(), s["passed"].as_u64()), (Some(3), Some(1)), "{s}");
    assert_eq!(s["new_failures"], 3, "{s}");
    let fb = &s["feedback"];
    assert_eq!(fb["files"].as_array().map(Vec::len), Some(3), "{fb}");
    assert_eq!((fb["traces"].as_u64(), fb["joined"].as_u64(), fb["not_found"].as_u64()), (Some(5), Some(4), Some(1)));
    assert!(stderr(&out).contains("feedback for 1 trace(s) not found"), "{}", stderr(&out));
}

#[test]
fn a_named_file_that_is_not_feedback_stops_mine() {
    let sandbox = Sandbox::new();
    traces_in(&sandbox, "t");
    let out = sandbox.run(&["mine", "t", "--feedback", "t/langfuse-success.jsonl.gz"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("is not a feedback file") && err.contains("langfuse-success.jsonl.gz"), "{err}");
}

#[test]
fn feedback_beside_a_named_trace_file_is_found() {
    let sandbox = Sandbox::new();
    traces_in(&sandbox, "t");
    feedback_in(&sandbox, "t", &["otel-evaluations.jsonl"]);
    let doc = sandbox.json(&["mine", "t/otel-genai-success.jsonl.gz", "--no-cases"]);
    assert_eq!(doc["summary"]["failed"], 1, "{}", doc["summary"]);
    assert_eq!(doc["summary"]["feedback"]["joined"], 1);
}

/// The same SDK calls run fresh in CI (scripts/producers-corpus.sh runs feedback.py on the
/// corpus it just generated): the scores of today's releases still join today's traces.
#[test]
#[allow(clippy::print_stderr)]
fn fresh_sdk_feedback_joins_fresh_traces() {
    let Some(corpus) = std::env::var_os("AUTOHARNESS_PRODUCERS_CORPUS").map(std::path::PathBuf::from) else {
        assert!(
            std::env::var("AUTOHARNESS_REQUIRE_ALL").as_deref() != Ok("1"),
            "AUTOHARNESS_REQUIRE_ALL=1 needs AUTOHARNESS_PRODUCERS_CORPUS (scripts/producers-corpus.sh writes feedback/)"
        );
        eprintln!("skipped: AUTOHARNESS_PRODUCERS_CORPUS is not set (the committed fixtures are checked above)");
        return;
    };
    let sandbox = Sandbox::new();
    let dir = sandbox.path().join("t");
    std::fs::create_dir_all(&dir).unwrap();
    for p in ["langfuse", "langsmith", "otel-genai"] {
        std::fs::copy(corpus.join(p).join("success.jsonl"), dir.join(format!("{p}-success.jsonl"))).unwrap();
    }
    for f in [
        "langfuse-scores.json",
        "langsmith-feedback-posts.jsonl",
        "langsmith-feedback-export.json",
        "otel-evaluations.jsonl",
    ] {
        std::fs::copy(corpus.join("feedback").join(f), dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let doc = sandbox.json(&["traces", "ls", "t"]);
    for p in ["langfuse", "langsmith", "otel-genai"] {
        let row = ls_row(&doc, &format!("{p}-success.jsonl"));
        assert_eq!((row["traces"].as_u64(), row["failed"].as_u64()), (Some(1), Some(1)), "{p}: {row}");
    }
    for f in [
        "langfuse-scores.json",
        "langsmith-feedback-posts.jsonl",
        "langsmith-feedback-export.json",
        "otel-evaluations.jsonl",
    ] {
        let row = ls_row(&doc, f);
        let reason = row["reason"].as_str().unwrap();
        assert!(reason.starts_with("feedback: ") && !reason.contains("not found"), "{f}: {reason}");
    }
}

/// Failures `run` mined from `t/` (traces and feedback together), in a project with the
/// `steady` harness and the given autoharness.toml.
fn failures_run_mines(config: &str) -> i64 {
    let sb = crate::common::cli::steady();
    traces_in(&sb, "t");
    feedback_in(&sb, "t", &FEEDBACK);
    if !config.is_empty() {
        let path = sb.path().join("autoharness.toml");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(config);
        std::fs::write(path, text).unwrap();
    }
    let out = sb.run(&["run", "--traces", "t", "--max-iterations", "0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rt = autoharness::store::runtime().unwrap();
    rt.block_on(async {
        let store = autoharness::store::Store::open(&sb.db()).await.unwrap();
        let n: (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM failures").fetch_one(store.sqlite().unwrap()).await.unwrap();
        store.close().await;
        n.0
    })
}

/// `run` mines its traces with the project's `[feedback]`, as `mine` does: 2 stars pass
/// under the default threshold and fail under `stars = 3`.
#[test]
fn run_reads_feedback_with_the_project_config() {
    assert_eq!(failures_run_mines(""), 4);
    assert_eq!(failures_run_mines("\n[feedback]\nthresholds = { stars = 3 }\n"), 5);
}

/// `traces show FILE` joins the feedback beside the file, as `mine FILE` does, and shows
/// the entry that decided the outcome first.
#[test]
fn traces_show_joins_the_feedback_beside_the_file() {
    let sandbox = Sandbox::new();
    traces_in(&sandbox, "t");
    let file = "t/otel-genai-success.jsonl.gz";
    let alone = sandbox.json(&["traces", "show", file]);
    assert_eq!(alone["traces"][0]["outcome"], "unknown", "{}", alone["traces"][0]["evidence"]);
    feedback_in(&sandbox, "t", &["otel-evaluations.jsonl"]);
    let doc = sandbox.json(&["traces", "show", file]);
    let t = &doc["traces"][0];
    assert_eq!(t["outcome"], "failed", "{}", t["evidence"]);
    let first = &t["evidence"][0];
    assert_eq!(first["signal"], "feedback", "{first}");
    assert!(first["detail"].as_str().unwrap().contains("otel-evaluations.jsonl"), "{first}");
    // The human output says which file it joined.
    let out = sandbox.run(&["traces", "show", file]);
    assert!(stderr(&out).contains("feedback joined from") && stderr(&out).contains("otel-evaluations.jsonl"));
}
