//! Format adapter tests for linear transcripts: Claude Code (+ stream-json), Codex,
//! SWE-agent / mini-swe-agent, τ-bench / AgentRx, Who&When, MAST, message lists.
//! Fixtures: tests/fixtures/formats/ (origins in each folder's README.md).

use std::path::Path;

use autoharness::trace::formats::Format;
use autoharness::trace::model::{ErrorSource, OutcomeStatus, StepKind, Trace};
use autoharness::trace::read_file;
use serde_json::{Value, json};

use crate::common::*;

fn kinds(t: &Trace) -> Vec<StepKind> {
    t.steps.iter().map(|s| s.kind).collect()
}

fn step<'a>(t: &'a Trace, id: &str) -> &'a autoharness::trace::model::Step {
    t.steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id} in {}", t.id))
}

fn err_source(t: &Trace, id: &str) -> Option<ErrorSource> {
    step(t, id).error.as_ref().and_then(|e| e.source)
}

/// Read a file with its real path as the display path (adapters that look beside the
/// file need a path that resolves).
fn read_real(path: &Path) -> autoharness::trace::FileReport {
    let display = path.to_str().expect("utf-8 path");
    let report = read_file(path, display);
    assert!(report.error.is_none(), "{display}: {:?}", report.error);
    report
}

// ---------------------------------------------------------------------------------------
// Claude Code
// ---------------------------------------------------------------------------------------

#[test]
fn claude_code_handmade_failures() {
    let traces = traces_of("formats/claude-code/handmade_failures.jsonl", Format::ClaudeCode);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.id, "sess-hand-1");
    assert_eq!(t.session_id.as_deref(), Some("sess-hand-1"));
    use StepKind::*;
    assert_eq!(kinds(t), vec![User, Llm, Tool, System, Llm, Tool, Llm, Tool, Llm, Llm, User, System]);
    // msg_A was split over two lines: one Llm step, usage counted once.
    let a1 = step(t, "a1");
    assert_eq!(a1.usage.input_tokens, Some(100));
    assert_eq!(a1.usage.cache_read_tokens, Some(500));
    assert_eq!(a1.output_messages[0].parts.len(), 2);
    assert_eq!(t.usage.input_tokens, Some(100 + 130 + 30 + 200));
    assert_eq!(t.usage.output_tokens, Some(20 + 40 + 15 + 4096));
    // Failing Bash call: is_error flag with the exit code from "Exit code 1".
    let bash = step(t, "toolu_1");
    assert_eq!(bash.name.as_deref(), Some("Bash"));
    assert_eq!(bash.tool_call.as_ref().unwrap().arguments["command"], "pytest -q");
    assert_eq!(bash.tool_result.as_ref().unwrap().exit_code, Some(1));
    assert_eq!(err_source(t, "toolu_1"), Some(ErrorSource::ToolResultFlag));
    assert_eq!(bash.attributes["tool_use_result"], "Error: Exit code 1");
    // system api_error.
    let api = step(t, "s1").error.as_ref().unwrap();
    assert_eq!(
        (api.source, api.r#type.as_deref(), api.code.as_deref()),
        (Some(ErrorSource::Level), Some("overloaded_error"), Some("529"))
    );
    // Sidechain subagent steps are in the same session, marked.
    let side = step(t, "c1");
    assert_eq!(side.agent.as_deref(), Some("agent-7"));
    assert_eq!(side.attributes["sidechain"], true);
    let read = step(t, "toolu_3").error.as_ref().unwrap();
    assert_eq!(read.r#type.as_deref(), Some("tool_use_error"));
    assert_eq!(read.message.as_deref(), Some("File does not exist."));
    assert!(step(t, "toolu_3").agent.is_some());
    // The Task call's result came after the subagent's lines.
    assert_eq!(step(t, "toolu_2").tool_result.as_ref().unwrap().content[0]["text"], "The subagent found no test file.");
    // API error message and max_tokens.
    let a4 = step(t, "a4").error.as_ref().unwrap();
    assert_eq!((a4.r#type.as_deref(), a4.code.as_deref()), (Some("rate_limit"), Some("429")));
    assert_eq!(step(t, "a5").error.as_ref().unwrap().r#type.as_deref(), Some("max_tokens"));
    // Interrupt and max turns are run-level signals.
    let sig: Vec<(&str, bool)> = t.signals.iter().map(|s| (s.kind.as_str(), s.passed)).collect();
    assert_eq!(sig, vec![("interrupted", false), ("terminal", false)]);
    assert_eq!(err_source(t, "t1"), Some(ErrorSource::Terminal));
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    // The Bash failure was fed back to the model: handled.
    assert!(t.outcome.evidence.iter().any(|e| e.step.as_deref() == Some("toolu_1") && e.handled));
    assert_eq!(t.task, Some(json!("Run the tests and fix the failures")));
    assert_eq!(t.attributes["cwd"], "/repo");
    assert_eq!(t.transcript.len(), 11);
}

#[test]
fn claude_code_real_fixture_shapes() {
    let t = &traces_of("formats/claude-code/simonw_sample_session.jsonl", Format::ClaudeCode)[0];
    assert_eq!(t.id, "test-session-id");
    assert_eq!(t.steps.len(), 7);
    let tools: Vec<&str> =
        t.steps.iter().filter(|s| s.kind == StepKind::Tool).filter_map(|s| s.name.as_deref()).collect();
    assert_eq!(tools, vec!["Write", "Bash"]);
    assert_eq!(
        step(t, "toolu_002").tool_result.as_ref().unwrap().content,
        "[main abc1234] Add hello function\n 1 file changed"
    );
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    assert_eq!(t.task, Some(json!("Create a hello world function")));
    assert_eq!(t.attributes["summary"], "Test session for JSONL parsing");

    let report = read_as("formats/claude-code/daaain_edge_cases.jsonl", Format::ClaudeCode);
    // Junk lines (a string, a number, an array, a user line whose message is a string)
    // are warnings; an object without `type` is skipped silently.
    assert_eq!(report.warnings.len(), 4, "{:?}", report.warnings);
    let ids: Vec<&str> = report.traces.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["edge_cases", "todowrite_session"]);
    let t = &report.traces[0];
    let failing = step(t, "tool_edge_001");
    assert_eq!(failing.name.as_deref(), Some("FailingTool"));
    assert_eq!(failing.error.as_ref().unwrap().source, Some(ErrorSource::ToolResultFlag));
    assert_eq!(
        failing.error.as_ref().unwrap().message.as_deref(),
        Some("Error: Tool execution failed with error: Command not found")
    );
    // The model answered after the failure, and nothing says the run failed.
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    assert!(t.outcome.evidence[0].handled);
    // The same uuid on two lines still gives unique step ids.
    let mut ids: Vec<&str> = t.steps.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), t.steps.len());

    let t = &traces_of("formats/claude-code/daaain_representative_messages.jsonl", Format::ClaudeCode)[0];
    assert_eq!(t.steps.len(), 11);
    assert_eq!(t.usage.input_tokens, Some(218));
    assert_eq!(t.usage.output_tokens, Some(445));
    assert_eq!(
        step(t, "tool_002").tool_result.as_ref().unwrap().content,
        "Hello, Alice!\nHello, Alice!\nHello, Alice!"
    );
}

#[test]
fn claude_stream_json_results() {
    let traces = traces_of("formats/claude-stream-json/handmade_two_runs.jsonl", Format::ClaudeStreamJson);
    assert_eq!(traces.len(), 2);
    let t = &traces[0];
    assert_eq!(t.id, "sj-1");
    assert_eq!(t.source.format, "claude-stream-json");
    assert_eq!(kinds(t), vec![StepKind::Llm, StepKind::Tool, StepKind::Llm, StepKind::System]);
    assert_eq!(t.signals[0].kind, "result");
    assert!(!t.signals[0].passed);
    assert_eq!(t.signals[0].detail, "result = error_max_turns");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(t.cost_usd, Some(0.0123));
    assert_eq!((t.usage.input_tokens, t.usage.output_tokens), (Some(130), Some(22)));
    assert_eq!(t.attributes["model"], "claude-sonnet-4-5");
    assert_eq!(t.attributes["num_turns"], 2);
    assert_eq!(step(t, "toolu_a").tool_result.as_ref().unwrap().exit_code, Some(2));
    let ok = &traces[1];
    assert_eq!(ok.id, "sj-2");
    assert_eq!(ok.outcome.status, OutcomeStatus::Passed);
    assert_eq!(ok.cost_usd, Some(0.002));
}

// ---------------------------------------------------------------------------------------
// Codex
// ---------------------------------------------------------------------------------------

#[test]
fn codex_handmade_tool_failures() {
    let t = &traces_of("formats/codex/handmade_tool_failures.jsonl", Format::Codex)[0];
    assert_eq!(t.id, "hand-codex-1");
    use StepKind::*;
    assert_eq!(kinds(t), vec![System, User, Llm, Tool, Llm, Tool, Llm, Tool, Llm, System]);
    // Freeform exec output: "Exit code: 1".
    let c1 = step(t, "call_1");
    assert_eq!(c1.name.as_deref(), Some("shell"));
    assert_eq!(c1.tool_call.as_ref().unwrap().arguments["command"][2], "pytest -q");
    assert_eq!(c1.tool_result.as_ref().unwrap().exit_code, Some(1));
    assert_eq!(err_source(t, "call_1"), Some(ErrorSource::ExitCode));
    // apply_patch failure from patch_apply_end; the structured output's exit code is kept.
    let c2 = step(t, "call_2");
    assert_eq!(c2.name.as_deref(), Some("apply_patch"));
    assert_eq!(c2.error.as_ref().unwrap().r#type.as_deref(), Some("patch_apply_failed"));
    assert_eq!(c2.tool_result.as_ref().unwrap().exit_code, Some(1));
    // Structured output with exit code 0 is fine.
    assert!(step(t, "call_3").error.is_none());
    assert_eq!(step(t, "call_3").tool_result.as_ref().unwrap().exit_code, Some(0));
    // Usage: per call from last_token_usage, the total from the last total_token_usage.
    let llm: Vec<Option<u64>> = t.steps.iter().filter(|s| s.kind == Llm).map(|s| s.usage.input_tokens).collect();
    assert_eq!(llm, vec![Some(1200), Some(1400), None, None]);
    assert_eq!(
        (t.usage.input_tokens, t.usage.output_tokens, t.usage.cache_read_tokens),
        (Some(2600), Some(150), Some(2200))
    );
    assert_eq!(t.steps[2].model.as_ref().unwrap().request_model.as_deref(), Some("gpt-5-codex"));
    assert_eq!(t.signals[0].detail, "turn_aborted: interrupted");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(t.task, Some(json!("Make the failing test pass")));
    assert_eq!(t.attributes["git"]["branch"], "main");
}

#[test]
fn codex_real_session_head() {
    let t = &traces_of("formats/codex/simonw_sample_codex_session_cli-0.77.0.jsonl", Format::Codex)[0];
    assert_eq!(t.id, "019b64e5-57fa-7463-b644-fba7e456f905");
    // AGENTS.md and environment context are injected (System); the typed prompt is the user's.
    assert_eq!(kinds(t), vec![StepKind::System, StepKind::System, StepKind::User]);
    assert_eq!(t.attributes["cli_version"], "0.77.0");
    assert_eq!(t.attributes["model"], "gpt-5.2-codex");
    assert!(t.task.as_ref().unwrap().as_str().unwrap().starts_with("can you analyse the MD files"));
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
}

// ---------------------------------------------------------------------------------------
// SWE-agent / mini-swe-agent
// ---------------------------------------------------------------------------------------

#[test]
fn swe_agent_traj() {
    let t = &traces_of("formats/swe-agent/6e44b9__sweagenttestrepo-1c2844.traj", Format::SweAgent)[0];
    assert_eq!(t.id, "6e44b9__sweagenttestrepo-1c2844");
    assert_eq!(t.steps.len(), 10);
    let tools: Vec<&str> =
        t.steps.iter().filter(|s| s.kind == StepKind::Tool).filter_map(|s| s.name.as_deref()).collect();
    assert_eq!(tools, vec!["find_file", "open", "edit", "python3", "submit"]);
    assert_eq!(step(t, "traj:0:action").tool_call.as_ref().unwrap().arguments, "find_file missing_colon.py");
    assert!((t.cost_usd.unwrap() - 0.01952).abs() < 1e-9);
    assert_eq!((t.usage.input_tokens, t.usage.output_tokens), (Some(7141), Some(243)));
    // Submitted is not resolved: without a SWE-bench verdict the outcome is unknown.
    assert!(t.signals.is_empty());
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    assert_eq!(t.attributes["exit_status"], "submitted");
    assert!(t.attributes["submission"].as_str().unwrap().contains("def division(a: float, b: float) -> float:"));
    assert!(t.task.as_ref().unwrap().as_str().unwrap().contains("SyntaxError: invalid syntax"));
    // The transcript is the history; steps point into it.
    assert_eq!(t.transcript.len(), 10);
    assert_eq!(step(t, "traj:0").transcript_range, Some((2, 3)));

    // A demonstration with only `history` reads as a chat history.
    let t = &traces_of("formats/swe-agent/function_calling_simple.traj", Format::ChatHistory)[0];
    assert_eq!(t.steps.len(), 12);
    let tool = step(t, "msg:3");
    assert_eq!(tool.kind, StepKind::Tool);
    assert_eq!(tool.name.as_deref(), Some("find_file"));
    assert_eq!(tool.tool_call.as_ref().unwrap().arguments, json!({"file_name": "missing_colon.py"}));
}

#[test]
fn mini_swe_agent_verdicts_beside_the_trajectory() {
    let root = fixture("formats/mini-swe-agent/trajs");
    // report.json: logs/<id>/report.json two levels up.
    let r = read_real(&root.join("django__django-16429/django__django-16429.traj.json"));
    assert_eq!(r.format, Some(Format::MiniSweAgent));
    let t = &r.traces[0];
    assert_eq!(t.id, "django__django-16429");
    assert_eq!(t.steps.len(), 42);
    assert_eq!(t.signals.len(), 1);
    assert_eq!(t.signals[0].kind, "resolved");
    assert!(t.signals[0].detail.contains("report.json"));
    assert_eq!(t.outcome.status, OutcomeStatus::Passed);
    assert_eq!(step(t, "msg:2").usage.input_tokens, Some(1627));
    assert_eq!(step(t, "msg:2").model.as_ref().unwrap().response_model.as_deref(), Some("google/gemini-3-pro-preview"));
    assert_eq!(step(t, "msg:3").tool_call.as_ref().unwrap().name, "bash");
    assert_eq!(step(t, "msg:3").tool_result.as_ref().unwrap().exit_code, Some(0));
    assert!(t.task.as_ref().unwrap().as_str().unwrap().starts_with("<pr_description>"));

    // outcomes.csv two levels up (no report.json for this one).
    let r = read_real(&root.join("pytest-dev__pytest-7205/pytest-dev__pytest-7205.traj.json"));
    let t = &r.traces[0];
    assert_eq!(t.signals[0].kind, "resolved");
    assert!(!t.signals[0].passed);
    assert!(t.signals[0].detail.contains("outcomes.csv"));
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    let exit1 =
        t.steps.iter().filter(|s| s.error.as_ref().and_then(|e| e.source) == Some(ErrorSource::ExitCode)).count();
    assert_eq!(exit1, 4);

    // Alone in a folder, a submitted run has no verdict.
    let dir = tempfile::tempdir().unwrap();
    let lone = dir.path().join("django__django-16429.traj.json");
    std::fs::copy(root.join("django__django-16429/django__django-16429.traj.json"), &lone).unwrap();
    let t = &read_real(&lone).traces[0];
    assert!(t.signals.is_empty());
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
}

// ---------------------------------------------------------------------------------------
// τ-bench / AgentRx
// ---------------------------------------------------------------------------------------

#[test]
fn tau_bench_records() {
    let traces = traces_of("formats/tau-bench/gpt-4o-airline.subset.json", Format::TauBench);
    let ids: Vec<&str> = traces.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec!["task-44/trial-3", "task-12/trial-3"]);
    let statuses: Vec<OutcomeStatus> = traces.iter().map(|t| t.outcome.status).collect();
    assert_eq!(statuses, vec![OutcomeStatus::Failed, OutcomeStatus::Passed]);
    let t = &traces[0];
    assert_eq!(t.signals[0].detail, "reward = 0");
    assert_eq!(t.user_id.as_deref(), Some("anya_garcia_5901"));
    // The task object with its ground-truth actions stays in trace.task.
    assert_eq!(t.task.as_ref().unwrap()["actions"][0]["name"], "get_reservation_details");
    assert_eq!(t.steps[0].kind, StepKind::System);

    let traces = traces_of("formats/tau-bench/agentrx_excerpt.json", Format::TauBench);
    assert_eq!(traces.len(), 2);
    let ok = &traces[0];
    assert_eq!(ok.id, "task-50/trial-50");
    assert_eq!(ok.outcome.status, OutcomeStatus::Passed);
    let fail = &traces[1];
    assert_eq!(fail.outcome.status, OutcomeStatus::Failed);
    let tools: Vec<&str> =
        fail.steps.iter().filter(|s| s.kind == StepKind::Tool).filter_map(|s| s.name.as_deref()).collect();
    assert_eq!(tools[0], "find_user_id_by_name_zip");
    assert_eq!(tools.len(), 6);
    let first_tool = step(fail, "msg:5");
    assert_eq!(
        first_tool.tool_call.as_ref().unwrap().arguments,
        json!({"first_name": "Daiki", "last_name": "Johnson", "zip": "80273"})
    );
    assert_eq!(first_tool.tool_result.as_ref().unwrap().call_id, first_tool.tool_call.as_ref().unwrap().id);
    // AgentRx messages carry their 1-based index; the step id is the 0-based position.
    assert_eq!(step(fail, "msg:5").attributes["index"], 6);
}

// ---------------------------------------------------------------------------------------
// Who&When, MAST
// ---------------------------------------------------------------------------------------

fn assert_no_labels(t: &Trace) {
    let text = serde_json::to_string(t).unwrap();
    for label in ["mistake_agent", "mistake_step", "mistake_reason", "mistake_type", "annotations", "labels"] {
        assert!(!text.contains(&format!("\"{label}\":")), "{}: label field {label} leaked into the trace", t.id);
    }
}

#[test]
fn who_and_when_algorithm_generated() {
    let t = &traces_of("formats/who-and-when/Algorithm-Generated/84.json", Format::ChatHistory)[0];
    assert_eq!(t.id, "Algorithm-Generated/84");
    assert_eq!(t.steps.len(), 9);
    let ids: Vec<String> = (0..9).map(|i| format!("msg:{i}")).collect();
    assert_eq!(t.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), ids);
    let agents: Vec<&str> = t.steps.iter().filter_map(|s| s.agent.as_deref()).collect();
    assert_eq!(agents[..3], ["Chess_Expert", "Computer_terminal", "ChessRules_Expert"]);
    use StepKind::*;
    assert_eq!(kinds(t), vec![Llm, Tool, Llm, Tool, Llm, Tool, Llm, Llm, Llm]);
    let term = step(t, "msg:5");
    assert_eq!(term.tool_result.as_ref().unwrap().exit_code, Some(1));
    assert_eq!(term.error.as_ref().unwrap().source, Some(ErrorSource::ExitCode));
    assert!(step(t, "msg:1").error.is_none());
    assert_eq!(t.signals[0].kind, "is_correct");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(t.attributes["ground_truth"], "Rd5");
    assert!(t.task.as_ref().unwrap().as_str().unwrap().starts_with("Review the chess position"));
    assert_no_labels(t);
}

#[test]
fn who_and_when_hand_crafted() {
    let t = &traces_of("formats/who-and-when/Hand-Crafted/43.json", Format::ChatHistory)[0];
    assert_eq!(t.id, "Hand-Crafted/43");
    assert_eq!(t.steps.len(), 16);
    assert_eq!(t.steps[0].kind, StepKind::User);
    assert_eq!(t.steps[1].agent.as_deref(), Some("Orchestrator"));
    assert_eq!(t.steps[1].name.as_deref(), Some("Orchestrator (thought)"));
    assert_eq!(step(t, "msg:4").agent.as_deref(), Some("WebSurfer"));
    assert_eq!(step(t, "msg:12").agent.as_deref(), Some("Assistant"));
    assert_eq!(t.signals[0].detail, "is_corrected = false");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(t.attributes["ground_truth"], "10");
    assert_no_labels(t);
}

#[test]
fn mast_text_log() {
    let traces = traces_of("formats/mast/MAD_one_record.json", Format::TextLog);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.id, "14");
    assert_eq!(t.attributes["mas_name"], "MetaGPT");
    assert_eq!(t.attributes["benchmark_name"], "ProgramDev");
    // The log is a JSON object inside the text (`prompt`, `content`): the prompt is the
    // user's task, and the content splits into the agents' turns.
    let who: Vec<(StepKind, Option<&str>)> = t.steps.iter().map(|s| (s.kind, s.name.as_deref())).collect();
    assert_eq!(
        who,
        [
            (StepKind::User, None),
            (StepKind::Llm, Some("Alice(SimpleCoder)")),
            (StepKind::Llm, Some("Bob(SimpleTester)")),
            (StepKind::Llm, Some("Charlie(SimpleReviewer)")),
            (StepKind::Llm, Some("Bob(SimpleTester)")),
            (StepKind::Llm, Some("Charlie(SimpleReviewer)")),
        ]
    );
    assert!(
        t.transcript[0].joined_text().contains("write a program that generates Fibonacci numbers"),
        "{:?}",
        t.transcript[0]
    );
    assert_eq!(t.transcript.len(), 6);
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    assert_no_labels(t);
}

#[test]
fn plain_message_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"role\":\"system\",\"content\":\"be brief\"}\n",
            "{\"role\":\"user\",\"content\":\"weather?\"}\n",
            "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]}\n",
            "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"Traceback (most recent call last):\\n  File \\\"w.py\\\", line 3\\nTimeoutError: upstream\"}\n",
            "{\"role\":\"assistant\",\"content\":\"Sorry, the weather service timed out.\"}\n",
        ),
    )
    .unwrap();
    let r = read_real(&path);
    assert_eq!(r.format, Some(Format::Messages));
    let t = &r.traces[0];
    assert_eq!(t.id, "chat");
    assert_eq!(kinds(t), vec![StepKind::System, StepKind::User, StepKind::Llm, StepKind::Tool, StepKind::Llm]);
    let tool = step(t, "msg:3");
    assert_eq!(tool.name.as_deref(), Some("get_weather"));
    assert_eq!(tool.tool_call.as_ref().unwrap().arguments, json!({"city": "Paris"}));
    assert_eq!(tool.error.as_ref().unwrap().r#type.as_deref(), Some("TimeoutError"));
    assert_eq!(t.task, Some(json!("weather?")));
}

// ---------------------------------------------------------------------------------------
// Whole datasets (../shared/datasets)
// ---------------------------------------------------------------------------------------

fn count(traces: &[Trace], status: OutcomeStatus) -> usize {
    traces.iter().filter(|t| t.outcome.status == status).count()
}

#[test]
fn datasets_read_with_expected_outcomes() {
    let Some(shared) = shared_dir() else { return };
    let ds = shared.join("datasets");

    // τ-bench historical: 200 records; failed = records with reward < 1.
    let path = ds.join("tau-bench-historical/gpt-4o-airline.json");
    let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let expect_failed = raw.as_array().unwrap().iter().filter(|r| r["reward"].as_f64().unwrap() < 1.0).count();
    let r = read_real(&path);
    assert_eq!(r.format, Some(Format::TauBench));
    assert_eq!(r.traces.len(), 200);
    assert_eq!(count(&r.traces, OutcomeStatus::Failed), expect_failed);
    assert_eq!(count(&r.traces, OutcomeStatus::Passed), 200 - expect_failed);

    // AgentRx τ-retail: 100 runs, 73 passed, 27 failed.
    let r = read_real(&ds.join("agentrx-tau-retail/tau_dataset_full.json"));
    assert_eq!(r.format, Some(Format::TauBench));
    assert_eq!(r.traces.len(), 100);
    assert_eq!(count(&r.traces, OutcomeStatus::Passed), 73);
    assert_eq!(count(&r.traces, OutcomeStatus::Failed), 27);

    // Who&When: every run failed; steps map 1:1 to history positions.
    let mut files = 0;
    for sub in ["Algorithm-Generated", "Hand-Crafted"] {
        for entry in std::fs::read_dir(ds.join("who-and-when").join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            files += 1;
            let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let r = read_real(&path);
            assert_eq!(r.format, Some(Format::ChatHistory), "{}", path.display());
            assert_eq!(r.traces.len(), 1, "{}", path.display());
            let t = &r.traces[0];
            assert_eq!(t.outcome.status, OutcomeStatus::Failed, "{}", path.display());
            let n = raw["history"].as_array().unwrap().len();
            assert_eq!(t.steps.len(), n, "{}", path.display());
            assert_eq!(t.steps.last().unwrap().id, format!("msg:{}", n - 1));
            assert_no_labels(t);
        }
    }
    assert_eq!(files, 126 + 14);

    // mini-swe-agent: 30 runs, verdicts from report.json / outcomes.csv beside them.
    let root = ds.join("mini-swe-agent-swebench-sample");
    let csv = std::fs::read_to_string(root.join("outcomes.csv")).unwrap();
    let mut expected = std::collections::HashMap::new();
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        expected.insert(cols[0].to_string(), cols[1] == "True");
    }
    let mut traces = Vec::new();
    for entry in std::fs::read_dir(root.join("trajs")).unwrap() {
        let dir = entry.unwrap().path();
        let id = dir.file_name().unwrap().to_str().unwrap().to_string();
        let r = read_real(&dir.join(format!("{id}.traj.json")));
        assert_eq!(r.format, Some(Format::MiniSweAgent));
        let t = r.traces.into_iter().next().unwrap();
        let want = if expected[&id] { OutcomeStatus::Passed } else { OutcomeStatus::Failed };
        assert_eq!(t.outcome.status, want, "{id}: {:?}", t.outcome.evidence);
        traces.push(t);
    }
    assert_eq!(traces.len(), 30);
    assert_eq!(count(&traces, OutcomeStatus::Passed), 15);
    assert_eq!(count(&traces, OutcomeStatus::Failed), 15);

    // MAST/MAD: 19 text logs, no outcome, no labels.
    let r = read_real(&ds.join("mast-mad-human/MAD_human_labelled_dataset.json"));
    assert_eq!(r.format, Some(Format::TextLog));
    assert_eq!(r.traces.len(), 19);
    assert_eq!(count(&r.traces, OutcomeStatus::Unknown), 19);
    r.traces.iter().for_each(assert_no_labels);
}
