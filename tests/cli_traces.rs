//! `autoharness traces show|ls` end to end: the binary, run in a hermetic sandbox.
//!
//! Snapshots (tests/snapshots/main__cli_traces__*.snap) pin what a person and a machine see
//! for one telling fixture per format. Each was reviewed by hand when accepted: a changed
//! snapshot is a changed reading of a real trace, so review the diff, do not just accept it.

use std::collections::BTreeSet;

use autoharness::trace::formats::Format;
use serde_json::Value;

use crate::common::cli::{Sandbox, stdout, store_counts, transcript};
use crate::common::shared_dir;

/// One fixture per format (paths under tests/fixtures/formats/), the most telling file of
/// its folder: failures next to handled errors, verdicts read beside the file, joins.
const SHOW_FIXTURES: [(&str, &str); 19] = [
    ("otlp-json", "otlp-json/captured_openai-v2_util-genai_traces.jsonl"),
    ("otlp-logs", "otlp-logs/captured_openai-v2_util-genai_logs.jsonl"),
    ("otel-console", "otel-console/console-agent-framework-handmade.json"),
    ("span-attributes", "span-attributes/otel_genai_client_span_tool_calls.json"),
    ("phoenix", "phoenix/phoenix-trace-handmade.json"),
    ("span-rows", "span-rows/trail-gaia-d67a8ae8.json"),
    ("openai-agents", "openai-agents/captured_native_trace_export.jsonl"),
    ("langsmith", "langsmith/cli_export_with_error.jsonl"),
    ("langfuse", "langfuse/claude-agent-2025-12-22.trace.json"),
    ("claude-code", "claude-code/handmade_failures.jsonl"),
    ("claude-stream-json", "claude-stream-json/handmade_two_runs.jsonl"),
    ("codex", "codex/handmade_tool_failures.jsonl"),
    ("swe-agent", "swe-agent/6e44b9__sweagenttestrepo-1c2844.traj"),
    // The verdict comes from logs/<id>/report.json beside the trajectory.
    ("mini-swe-agent", "mini-swe-agent/trajs/django__django-16429/django__django-16429.traj.json"),
    ("tau-bench", "tau-bench/agentrx_excerpt.json"),
    ("chat-history", "who-and-when/Algorithm-Generated/84.json"),
    ("text-log", "mast/MAD_one_record.json"),
    ("messages", "messages/weather_tool_retry.jsonl"),
    ("atif", "atif/handmade_failed_trial.trajectory.json"),
];

/// Filters for anything that depends on the machine: the sandbox path and content hashes.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![(r"/[^\s\x22]*/autoharness-test-[^/\s\x22]+/", "[TMP]/"), (r"\b[0-9a-f]{64}\b", "[HASH]")]
}

/// Copy the fixture's whole folder (files beside it may carry its verdict) into a sandbox
/// and run `--json traces show formats/<rel>` there.
fn show_json(format: &str) -> Value {
    let (_, rel) = SHOW_FIXTURES.iter().find(|(f, _)| *f == format).expect("a fixture for the format");
    let folder = rel.split('/').next().expect("folder");
    let sandbox = Sandbox::new();
    sandbox.copy_fixture(&format!("formats/{folder}"));
    let output = sandbox.run(&["--json", "traces", "show", &format!("formats/{rel}")]);
    assert!(output.status.success(), "{}", transcript(&output));
    // Warnings of a file are part of its document, not of stderr.
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "{format}: stderr");
    let doc: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(doc["format"], format, "{rel} is detected as its format");
    assert_eq!(doc["error"], Value::Null, "{rel} reads without a fatal error");
    doc
}

macro_rules! show_snapshots {
    ($($test:ident => $format:literal),* $(,)?) => {$(
        /// `traces show --json` of this format's fixture is exactly the reviewed snapshot.
        #[test]
        fn $test() {
            let doc = show_json($format);
            insta::with_settings!({ filters => filters() }, {
                insta::assert_json_snapshot!(concat!("show_", $format), doc);
            });
        }
    )*};
}

show_snapshots! {
    show_json_otlp_json => "otlp-json",
    show_json_otlp_logs => "otlp-logs",
    show_json_otel_console => "otel-console",
    show_json_span_attributes => "span-attributes",
    show_json_phoenix => "phoenix",
    show_json_span_rows => "span-rows",
    show_json_openai_agents => "openai-agents",
    show_json_langsmith => "langsmith",
    show_json_langfuse => "langfuse",
    show_json_claude_code => "claude-code",
    show_json_claude_stream_json => "claude-stream-json",
    show_json_codex => "codex",
    show_json_swe_agent => "swe-agent",
    show_json_mini_swe_agent => "mini-swe-agent",
    show_json_tau_bench => "tau-bench",
    show_json_chat_history => "chat-history",
    show_json_text_log => "text-log",
    show_json_messages => "messages",
    show_json_atif => "atif",
}

/// A new format must come with a fixture and a snapshot: the table covers `Format::ALL`.
#[test]
fn every_format_has_a_show_snapshot_fixture() {
    let covered: BTreeSet<&str> = SHOW_FIXTURES.iter().map(|(f, _)| *f).collect();
    let all: BTreeSet<&str> = Format::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(covered, all);
}

/// `traces formats` lists exactly the formats of the library, one per line.
#[test]
fn traces_formats_lists_every_format() {
    let sandbox = Sandbox::new();
    let doc = sandbox.json(&["traces", "formats"]);
    let names: Vec<&str> = doc["formats"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let all: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(names, all);
    let human = stdout(&sandbox.run(&["traces", "formats"]));
    for name in all {
        assert!(human.lines().any(|l| l == name), "{name} in:\n{human}");
    }
}

/// What a person sees for failing traces: nested agent spans with a handled tool error, a
/// model HTTP 500 and max turns (human output, no colors).
#[test]
fn show_human_nested_failures() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("formats/openai-agents");
    let output = sandbox.run(&["traces", "show", "formats/openai-agents/captured_native_trace_export.jsonl"]);
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("show_human_openai_agents", transcript(&output));
    });
}

/// A long failing transcript: the tree is shortened around the failing steps, multi-line
/// tool output in the evidence stays on one line, the verdict comes from outcomes.csv.
#[test]
fn show_human_long_failing_transcript_is_shortened() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("formats/mini-swe-agent");
    let output = sandbox.run(&[
        "traces",
        "show",
        "formats/mini-swe-agent/trajs/pytest-dev__pytest-7205/pytest-dev__pytest-7205.traj.json",
    ]);
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("show_human_mini_swe_agent_failed", transcript(&output));
    });
}

/// The `traces ls` table over every format fixture: one row per file with its format or
/// why it is not a trace, and the totals line.
#[test]
fn ls_human_over_all_format_fixtures() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("formats");
    let output = sandbox.run(&["traces", "ls", "formats"]);
    insta::with_settings!({ filters => filters() }, {
        insta::assert_snapshot!("ls_human_formats", transcript(&output));
    });
}

// ---------------------------------------------------------------------------------------
// The shared samples and datasets (../shared)
// ---------------------------------------------------------------------------------------

/// Files that ship beside traces and must never be read as one.
fn known_non_trace(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    if name.starts_with("readme") || name.starts_with("license") {
        Some("documentation or license")
    } else if ext == "csv" || ext == "txt" {
        Some("a table or a policy text")
    } else if path.contains("/processed_annotations_") {
        Some("TRAIL annotation labels")
    } else if name == "tau_ground_truth.json" {
        Some("AgentRx ground truth")
    } else if name == "report.json" {
        Some("SWE-bench evaluation report")
    } else if path.contains("/schemas/") {
        Some("JSON schema")
    } else {
        None
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("`{key}` is a count in {v}"))
}

/// Every file of the shared samples and datasets is either a trace of a known format or
/// named as what it is; label files beside traces are never read as traces; every trace
/// data file is read without error; totals add up and land in the store.
#[test]
fn ls_reads_every_shared_sample_and_dataset_file() {
    let Some(shared) = shared_dir() else { return };
    let sandbox = Sandbox::new();
    let samples = shared.join("trace-samples");
    let datasets = shared.join("datasets");
    let args = ["traces", "ls", samples.to_str().unwrap(), datasets.to_str().unwrap()];
    let output = sandbox.run(&[&["--json"], &args[..]].concat());
    assert_eq!(output.status.code(), Some(0), "{}", crate::common::cli::stderr(&output));
    let doc: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let files = doc["files"].as_array().expect("files");
    assert!(files.len() > 500, "the shared data has 500+ files, got {}", files.len());

    let mut sum = [0u64; 4];
    let mut formats = BTreeSet::new();
    for f in files {
        let path = f["path"].as_str().unwrap();
        let reason = f["reason"].as_str().unwrap();
        assert!(!reason.is_empty(), "{path}: every file says why it is (not) a trace");
        assert!(!reason.contains("unknown JSON shape"), "{path}: {reason}");
        assert_eq!(f["error"], Value::Null, "{path} reads without a fatal error");
        match known_non_trace(path) {
            Some(what) => {
                assert_eq!(f["format"], Value::Null, "{path} is {what}, not a trace");
                assert!(reason.starts_with("not a trace"), "{path}: {reason}");
            }
            None => {
                let is_data = [".json", ".jsonl", ".traj"].iter().any(|ext| path.ends_with(ext));
                assert!(is_data, "{path}: an unexpected kind of file in the shared data");
                let format = f["format"].as_str().unwrap_or_else(|| panic!("{path} is a trace file: {reason}"));
                formats.insert(format.to_string());
                assert!(count(f, "traces") > 0, "{path}: a trace file with no traces");
            }
        }
        assert_eq!(count(f, "traces"), count(f, "passed") + count(f, "failed") + count(f, "unknown"), "{path}");
        for (i, key) in ["traces", "passed", "failed", "unknown"].iter().enumerate() {
            sum[i] += count(f, key);
        }
    }
    // The shared data covers most formats; a detection regression would drop one.
    assert!(formats.len() >= 14, "formats seen: {formats:?}");

    let totals = &doc["totals"];
    assert_eq!(count(totals, "files"), files.len() as u64);
    assert_eq!(count(totals, "errors"), 0);
    assert_eq!(count(totals, "trace_files") + count(totals, "not_traces"), files.len() as u64);
    let [traces, passed, failed, unknown] = sum;
    assert_eq!(
        [traces, passed, failed, unknown],
        [count(totals, "traces"), count(totals, "passed"), count(totals, "failed"), count(totals, "unknown")]
    );
    // Benchmarks carry verdicts: both outcomes occur.
    assert!(passed > 0 && failed > 0, "{totals}");

    // The store holds one row per file and one per trace.
    assert_eq!(store_counts(&sandbox.db()), (files.len() as i64, traces as i64));

    // The human table ends with the same totals.
    let human = stdout(&sandbox.run(&args));
    let last = human.lines().last().unwrap_or("");
    let expected = format!("{traces} traces: {passed} passed, {failed} failed, {unknown} unknown");
    assert!(last.ends_with(&expected), "{last:?} ends with {expected:?}");
    assert!(last.starts_with(&format!("{} files: ", files.len())), "{last:?}");
}
