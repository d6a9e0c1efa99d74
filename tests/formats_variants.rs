//! Formats beside the ones of `formats_*`: Harbor trials (ATIF + result.json), plain-text
//! agent logs, and variants of known formats (span exports as a JSON list, an error only
//! on the root span, handoffs between agents, a malformed line in the middle).

use serde_json::Value;

use crate::common::cli::{Sandbox, ls_row};

fn ls(sandbox: &Sandbox, path: &str) -> Value {
    sandbox.json(&["traces", "ls", path])
}

fn counts(row: &Value) -> [u64; 4] {
    ["traces", "passed", "failed", "unknown"].map(|k| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}")))
}

#[test]
fn harbor_trials_take_their_reward_and_exception_from_result_json() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("variants/harbor");
    let doc = ls(&sandbox, "variants/harbor");
    let trial = |name: &str| ls_row(&doc, &format!("{name}/agent/trajectory.json"));
    assert_eq!(counts(trial("hello-world__d4e5f6")), [1, 1, 0, 0], "reward 1.0 passes");
    assert_eq!(counts(trial("fix-date-parser__a1b2c3")), [1, 0, 1, 0], "reward 0.0 fails");
    assert_eq!(counts(trial("cancel-order__k7m8n9")), [1, 0, 1, 0], "an AgentTimeoutError fails");
    for (file, what) in [
        ("hello-world__d4e5f6/result.json", "Harbor trial result"),
        ("job-2026-11-30/result.json", "Harbor job summary"),
        ("fix-date-parser__a1b2c3/config.json", "Harbor trial config"),
    ] {
        let row = ls_row(&doc, file);
        assert_eq!(row["format"], Value::Null, "{row}");
        assert!(row["reason"].as_str().unwrap().contains(what), "{row}");
    }
    // The evidence names the result file and the exception.
    let shown =
        sandbox.json(&["traces", "show", "variants/harbor/job-2026-11-30/cancel-order__k7m8n9/agent/trajectory.json"]);
    let text = shown.to_string();
    assert!(text.contains("AgentTimeoutError: Agent execution timed out after 120.0 seconds"), "{text}");
    assert!(text.contains("cancel-order__k7m8n9/result.json"), "{text}");
}

/// A trial's `result.json` copied without its `agent/` folder has no steps: it is refused,
/// saying its reward and exception and what is missing, rather than mined as a trace with
/// no steps (nothing to localise, no input to make a case from).
#[test]
fn a_harbor_result_without_its_trajectory_is_refused_with_its_reason() {
    let sandbox = Sandbox::new();
    let trial = "variants/harbor/job-2026-11-30/cancel-order__k7m8n9";
    sandbox.copy_fixture(trial);
    std::fs::remove_dir_all(sandbox.path().join(trial).join("agent")).unwrap();
    let doc = ls(&sandbox, trial);
    let row = ls_row(&doc, "cancel-order__k7m8n9/result.json");
    assert_eq!(row["format"], Value::Null, "{row}");
    assert_eq!(row["traces"], 0, "{row}");
    let reason = row["reason"].as_str().unwrap();
    for part in ["Harbor trial result", "AgentTimeoutError", "without its trajectory", "agent/trajectory.json"] {
        assert!(reason.contains(part), "{part}: {reason}");
    }
    let mined = sandbox.json(&["mine", trial, "--no-cases"]);
    assert_eq!(mined["summary"]["failures_total"], 0, "{}", mined["summary"]);
}

#[test]
fn plain_text_agent_logs_split_into_turns_and_other_text_says_why_not() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("variants/plain-text");
    let doc = ls(&sandbox, "variants/plain-text");
    for (file, expect) in [
        ("smolagents_success.log", [1, 0, 0, 1]),
        ("smolagents_http_500.log", [1, 0, 1, 0]),
        ("react_traceback.log", [1, 0, 1, 0]),
        ("loguru_tool_agent.log", [1, 0, 0, 1]),
    ] {
        let row = ls_row(&doc, file);
        assert_eq!(row["format"], "text-log", "{row}");
        assert!(row["reason"].as_str().unwrap().starts_with("plain-text agent log: "), "{row}");
        assert_eq!(counts(row), expect, "{file}");
    }
    let row = ls_row(&doc, "pytest_stdout.txt");
    assert_eq!(row["format"], Value::Null, "{row}");
    assert!(row["reason"].as_str().unwrap().contains("without the marks of an agent log"), "{row}");
    // The log's turns: the task, then each step's call and its observations.
    let shown = sandbox.json(&["traces", "show", "variants/plain-text/smolagents_success.log"]);
    let trace = &shown["traces"][0];
    let kinds: Vec<&str> = trace["steps"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["user", "llm", "tool", "llm", "tool", "llm"], "{trace}");
    // A log of logger lines: the agent's decorated `Name's thoughts:` and the framework's
    // tool reports are its turns.
    let shown = sandbox.json(&["traces", "show", "variants/plain-text/loguru_tool_agent.log"]);
    let steps: Vec<(&str, &str)> = shown["traces"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["kind"].as_str().unwrap(), s["agent"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(steps, [("user", "-"), ("llm", "Scout"), ("tool", "-"), ("llm", "Scout"), ("tool", "-")]);
    // The failures the logs end with are the model API's: infrastructure, by class.
    let mined = sandbox.json(&["mine", "variants/plain-text", "--no-cases"]);
    let mut sigs: Vec<String> =
        mined["clusters"].as_array().unwrap().iter().map(|c| c["signature"].as_str().unwrap().to_string()).collect();
    sigs.sort();
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    assert!(sigs[0].starts_with("infra|") && sigs[0].contains("model_server_error"), "{sigs:?}");
    assert!(sigs[1].starts_with("infra|") && sigs[1].contains("rate_limit"), "{sigs:?}");
}

// ---------------------------------------------------------------------------------------
// Variants of every producer's export: a JSON list instead of lines, a malformed line in
// the middle. Each must read as the original does.

/// (trace id, outcome, steps, errors) of each trace of a file, joined as `mine` joins them.
fn read_traces(path: &std::path::Path) -> (Vec<(String, String, usize, usize)>, autoharness::trace::FileReport) {
    let report = autoharness::trace::read_file(path, &path.display().to_string());
    let mut traces: Vec<_> = autoharness::trace::merge::merge_traces(report.traces.clone())
        .iter()
        .map(|t| (t.id.clone(), t.outcome.status.as_str().to_string(), t.steps.len(), t.count_errors()))
        .collect();
    traces.sort();
    (traces, report)
}

fn producer_files() -> Vec<std::path::PathBuf> {
    let root = crate::common::fixture("producers");
    let mut files = vec![];
    for dir in std::fs::read_dir(&root).unwrap().flatten().filter(|d| d.path().is_dir()) {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            if f.path().to_string_lossy().ends_with(".jsonl.gz") {
                files.push(f.path());
            }
        }
    }
    files.sort();
    assert!(files.len() > 80, "the producer snapshot has 9+ producers × 11 scenarios: {}", files.len());
    files
}

fn gunzip_lines(path: &std::path::Path) -> Vec<String> {
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()),
        &mut text,
    )
    .unwrap();
    text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

#[test]
fn every_producer_export_reads_the_same_as_a_json_list_and_with_a_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for path in producer_files() {
        let name = path.strip_prefix(crate::common::fixture("producers")).unwrap().display().to_string();
        let (original, report) = read_traces(&path);
        assert!(report.error.is_none(), "{name}: {:?}", report.error);
        let lines = gunzip_lines(&path);
        // Only line-per-record exports have lines to rearrange.
        if lines.iter().any(|l| serde_json::from_str::<Value>(l).is_err()) {
            continue;
        }
        let flat = name.replace('/', "-").replace(".jsonl.gz", "");
        let list = dir.path().join(format!("{flat}.json"));
        std::fs::write(&list, format!("[\n{}\n]\n", lines.join(",\n"))).unwrap();
        let (as_list, r) = read_traces(&list);
        assert!(r.error.is_none(), "{name} as a list: {:?}", r.error);
        assert_eq!(as_list, original, "{name}: a JSON list reads as the lines do");

        let mut broken_lines = lines.clone();
        broken_lines.insert(lines.len().div_ceil(2), "{\"resourceSpans\": [{\"scopeSpans\": [ truncated".into());
        let broken = dir.path().join(format!("{flat}.broken.jsonl"));
        std::fs::write(&broken, broken_lines.join("\n") + "\n").unwrap();
        let (read, r) = read_traces(&broken);
        assert!(r.error.is_none(), "{name}: one bad line is not fatal: {:?}", r.error);
        let bad_line = lines.len().div_ceil(2) + 1;
        assert!(
            r.warnings.iter().any(|w| w.location == format!("line {bad_line}")),
            "{name}: the bad line is named: {:?}",
            r.warnings
        );
        assert_eq!(read, original, "{name}: every other line is still read");
        checked += 1;
    }
    assert!(checked > 60, "checked {checked} exports");
}

// ---------------------------------------------------------------------------------------
// OTel root span status, the same in every dialect (docs/outcomes.md): an error recorded
// only on the root fails the trace at the root; status OK on the root, as instrumentations
// set it whenever no exception escaped, is no verdict and does not clear a child's error.

fn dialect_view(sandbox: &Sandbox, file: &str) -> (String, Vec<(String, String)>, Vec<String>) {
    let doc = sandbox.json(&["traces", "show", &format!("variants/otel-dialects/{file}")]);
    let t = &doc["traces"][0];
    assert_eq!(doc["traces"].as_array().map(Vec::len), Some(1), "{file}");
    let evidence = t["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["signal"].as_str().unwrap().to_string(), e["step"].as_str().unwrap_or("-").to_string()))
        .collect();
    let statuses = t["steps"].as_array().unwrap().iter().map(|s| s["status"].as_str().unwrap().to_string()).collect();
    (t["outcome"].as_str().unwrap().to_string(), evidence, statuses)
}

#[test]
fn otel_root_status_means_the_same_in_every_dialect() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("variants/otel-dialects");
    let root = "051581bf3cb55c13";
    let tool = "b2c3d4e5f6071829";
    for (case, outcome, step) in [
        ("root_error", "failed", Some(root)),
        ("root_ok", "unknown", None),
        ("root_ok_child_error", "failed", Some(tool)),
    ] {
        let views: Vec<_> = ["otlp.json", "console.json", "phoenix.json", "rows.jsonl"]
            .iter()
            .map(|d| (d, dialect_view(&sandbox, &format!("{case}.{d}"))))
            .collect();
        for (dialect, view) in &views {
            assert_eq!(view, &views[0].1, "{case}: {dialect} reads as OTLP JSON does");
        }
        let (got, evidence, _) = &views[0].1;
        assert_eq!(got, outcome, "{case}");
        assert_eq!(evidence.first().map(|(_, s)| s.as_str()), step, "{case}: {evidence:?}");
    }
}

#[test]
fn a_handoff_blames_the_agent_that_failed_after_it() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("variants/openai-agents-handoff");
    let shown = sandbox.json(&["traces", "show", "variants/openai-agents-handoff/handoff_tool_error.jsonl"]);
    let t = &shown["traces"][0];
    assert_eq!(t["outcome"], "failed", "{t}");
    let kinds: Vec<&str> = t["steps"].as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"handoff"), "{kinds:?}");
    let mined = sandbox.json(&["mine", "variants/openai-agents-handoff", "--no-cases"]);
    let clusters = mined["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{mined}");
    let sig = clusters[0]["signature"].as_str().unwrap();
    // The billing agent's tool, not the triage agent nor the handoff.
    assert!(sig.contains("issue_refund"), "{sig}");
    let member = &clusters[0]["members"][0];
    assert_eq!(member["step"], "span_refund", "{member}");
}
