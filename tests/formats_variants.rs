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
    sandbox.copy_fixture("formats/harbor");
    let doc = ls(&sandbox, "formats/harbor");
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
        sandbox.json(&["traces", "show", "formats/harbor/job-2026-11-30/cancel-order__k7m8n9/agent/trajectory.json"]);
    let text = shown.to_string();
    assert!(text.contains("AgentTimeoutError: Agent execution timed out after 120.0 seconds"), "{text}");
    assert!(text.contains("cancel-order__k7m8n9/result.json"), "{text}");
}

#[test]
fn plain_text_agent_logs_are_one_message_traces_and_other_text_says_why_not() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("formats/plain-text");
    let doc = ls(&sandbox, "formats/plain-text");
    for (file, expect) in [
        ("smolagents_success.log", [1, 0, 0, 1]),
        ("smolagents_http_500.log", [1, 0, 1, 0]),
        ("react_traceback.log", [1, 0, 1, 0]),
    ] {
        let row = ls_row(&doc, file);
        assert_eq!(row["format"], "text-log", "{row}");
        assert!(row["reason"].as_str().unwrap().starts_with("plain-text agent log: "), "{row}");
        assert_eq!(counts(row), expect, "{file}");
    }
    let row = ls_row(&doc, "pytest_stdout.txt");
    assert_eq!(row["format"], Value::Null, "{row}");
    assert!(row["reason"].as_str().unwrap().contains("without the marks of an agent log"), "{row}");
    // One message, the whole log.
    let shown = sandbox.json(&["traces", "show", "formats/plain-text/smolagents_success.log"]);
    let trace = &shown["traces"][0];
    assert_eq!(trace["steps"].as_array().map(Vec::len), Some(1), "{trace}");
    // The failures the logs end with are the model API's: infrastructure, by class.
    let mined = sandbox.json(&["mine", "formats/plain-text", "--no-cases"]);
    let mut sigs: Vec<String> =
        mined["clusters"].as_array().unwrap().iter().map(|c| c["signature"].as_str().unwrap().to_string()).collect();
    sigs.sort();
    assert_eq!(sigs.len(), 2, "{sigs:?}");
    assert!(sigs[0].starts_with("infra|") && sigs[0].contains("model_server_error"), "{sigs:?}");
    assert!(sigs[1].starts_with("infra|") && sigs[1].contains("rate_limit"), "{sigs:?}");
}
