//! Format adapter tests for the OpenTelemetry family: OTLP/JSON traces and logs, console
//! spans, flat attribute maps, Phoenix span JSON, TRAIL / ClickHouse span rows.
//! Fixtures: tests/fixtures/formats/{otlp-json,otlp-logs,otel-console,span-attributes,phoenix,span-rows}.

use autoharness::trace::formats::Format;
use autoharness::trace::merge::merge_traces;
use autoharness::trace::model::{ErrorSource, OutcomeStatus, Part, ScoreSource, Step, StepKind, StepStatus, Trace};
use serde_json::json;

use crate::common::*;

fn step<'a>(t: &'a Trace, id: &str) -> &'a Step {
    &t.steps[t.step_index(id).unwrap_or_else(|| panic!("no step {id} in {}", t.id))]
}

fn trace<'a>(traces: &'a [Trace], id: &str) -> &'a Trace {
    traces.iter().find(|t| t.id == id).unwrap_or_else(|| panic!("no trace {id}"))
}

const GENAI_TRACES: &str = "formats/otlp-json/captured_openai-v2_util-genai_traces.jsonl";
const GENAI_LOGS: &str = "formats/otlp-logs/captured_openai-v2_util-genai_logs.jsonl";
const OI_TRACES: &str = "formats/otlp-json/captured_openai-agents_openinference_traces.jsonl";

#[test]
fn otlp_genai_capture_tool_error_is_handled_and_http_500_fails() {
    let traces = traces_of(GENAI_TRACES, Format::OtlpJson);
    assert_eq!(traces.len(), 2);

    let ok = trace(&traces, "820982d1bf19000f43d37bd00d7a4f21");
    assert_eq!(ok.source.dialects, ["genai"]);
    assert_eq!(ok.session_id.as_deref(), Some("conv-ok-1"));
    assert_eq!(ok.name.as_deref(), Some("invoke_agent support-agent"));
    assert_eq!(ok.task, Some(json!("Where is order A-1187? Also refund order Z-9.")));
    assert_eq!(ok.attributes["resource.service.name"], json!("support-agent"));
    let kinds: Vec<StepKind> = ok.steps.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, [StepKind::Agent, StepKind::Llm, StepKind::Tool, StepKind::Tool, StepKind::Llm]);
    // Two chat calls of 412 + 27 tokens each.
    assert_eq!(ok.usage.input_tokens, Some(824));
    assert_eq!(ok.usage.output_tokens, Some(54));
    let chat = step(ok, "fb4cad4aae841afa");
    let model = chat.model.as_ref().unwrap();
    assert_eq!(model.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(model.provider.as_deref(), Some("openai"));
    let calls: Vec<&str> = chat.output_messages[0]
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some(c.name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(calls, ["lookup_order", "issue_refund"]);
    let lookup = step(ok, "82dbc9aaf19e4ef9");
    assert_eq!(lookup.tool_call.as_ref().unwrap().arguments, json!({"order_id": "A-1187"}));
    assert_eq!(lookup.tool_result.as_ref().unwrap().content["status"], json!("in transit"));
    let refund = step(ok, "64e0cce75a737801");
    assert_eq!(refund.status, StepStatus::Error);
    let err = refund.error.as_ref().unwrap();
    assert_eq!(err.source, Some(ErrorSource::SpanStatus));
    assert_eq!(err.r#type.as_deref(), Some("PermissionError"));
    assert_eq!(err.message.as_deref(), Some("refunds above $100 require supervisor approval"));
    // The agent fed the error back to the model and answered: handled, not a failure.
    assert_eq!(ok.outcome.status, OutcomeStatus::Unknown);
    assert_eq!(ok.outcome.evidence.len(), 1);
    assert!(ok.outcome.evidence[0].handled);
    assert_eq!(ok.outcome.evidence[0].step.as_deref(), Some("64e0cce75a737801"));

    let failed = trace(&traces, "7916110935177db5342dff18e9e946d3");
    assert_eq!(failed.outcome.status, OutcomeStatus::Failed);
    let chat = step(failed, "8191faba6c73f9a5");
    let err = chat.error.as_ref().unwrap();
    // `<class 'openai.InternalServerError'>` normalized.
    assert_eq!(err.r#type.as_deref(), Some("openai.InternalServerError"));
    assert!(err.message.as_deref().unwrap().starts_with("Error code: 500"));
    // The root inherited the chat error; the evidence names the chat span.
    assert_eq!(failed.outcome.evidence[0].step.as_deref(), Some("8191faba6c73f9a5"));
    assert!(!failed.outcome.evidence[0].handled);
}

#[test]
fn otlp_logs_become_partial_steps_and_merge_with_spans() {
    let logs = traces_of(GENAI_LOGS, Format::OtlpLogs);
    assert_eq!(logs.len(), 2);
    let t = trace(&logs, "820982d1bf19000f43d37bd00d7a4f21");
    assert_eq!(t.steps.len(), 2);
    let s = step(t, "fb4cad4aae841afa");
    assert_eq!((s.kind, s.status), (StepKind::Other, StepStatus::Unset));
    assert!(s.start.is_none() && s.end.is_none() && s.parent_id.is_none());
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].name, "gen_ai.client.inference.operation.details");
    // Structured (kvlist) messages decoded.
    assert_eq!(s.input_messages[1].joined_text(), "Where is order A-1187? Also refund order Z-9.");
    assert!(
        matches!(&s.output_messages[0].parts[1], Part::ToolCall(c) if c.name == "issue_refund" && c.arguments == json!({"order_id": "Z-9"}))
    );

    // Logs first (as a directory walk finds them), then spans: merged by trace + span id.
    let spans = traces_of(GENAI_TRACES, Format::OtlpJson);
    let mut all = logs.clone();
    all.extend(spans);
    let merged = merge_traces(all);
    assert_eq!(merged.len(), 2);
    let t = trace(&merged, "820982d1bf19000f43d37bd00d7a4f21");
    assert_eq!(t.steps.len(), 5);
    let chat = step(t, "fb4cad4aae841afa");
    assert_eq!(chat.kind, StepKind::Llm);
    assert!(chat.end.is_some());
    assert_eq!(chat.events.len(), 1);
    assert_eq!(t.usage.input_tokens, Some(824));
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    let t = trace(&merged, "7916110935177db5342dff18e9e946d3");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
}

#[test]
fn openinference_capture_tool_error_model_error_and_max_turns() {
    let traces = traces_of(OI_TRACES, Format::OtlpJson);
    assert_eq!(traces.len(), 3);
    for t in &traces {
        assert_eq!(t.source.dialects, ["openinference"]);
    }

    // 1: TOOL error, the run goes on: handled.
    let t = trace(&traces, "6aef40cf6bce1c332b120619c5b0ae3b");
    assert_eq!(t.name.as_deref(), Some("support ok-with-tool-error"));
    assert_eq!(t.steps.len(), 9);
    let tool = step(t, "3515278a4f5ef795");
    assert_eq!(tool.kind, StepKind::Tool);
    assert_eq!(tool.tool_call.as_ref().unwrap().name, "issue_refund");
    assert_eq!(tool.tool_result.as_ref().unwrap().is_error, Some(true));
    assert!(tool.error.as_ref().unwrap().message.as_deref().unwrap().starts_with("Error running tool (non-fatal)"));
    assert_eq!(tool.agent.as_deref(), Some("support-agent"));
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    assert!(t.outcome.evidence.iter().all(|e| e.handled));
    let second = step(t, "ee4486551c29715c");
    assert_eq!(second.input_messages.len(), 5);
    assert!(
        matches!(&second.input_messages[4].parts[0], Part::ToolResult(r) if r.call_id.as_deref() == Some("call_refund_2"))
    );
    assert_eq!(t.usage.input_tokens, Some(824));

    // 2: LLM and AGENT spans ERROR under OK roots: failed.
    let t = trace(&traces, "d3de937d368d54f2c5572bb117ee75c6");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(step(t, "bad521871c6da39e").kind, StepKind::Llm);
    assert_eq!(step(t, "bad521871c6da39e").status, StepStatus::Error);
    assert_eq!(step(t, "2514b766eaea323c").kind, StepKind::Agent);
    assert_eq!(step(t, "1c8119c6664c5f30").status, StepStatus::Ok);
    assert!(t.outcome.evidence.iter().any(|e| e.step.as_deref() == Some("bad521871c6da39e")));

    // 3: max turns: a terminal signal and a failed run.
    let t = trace(&traces, "8f3c16d58ad2895fa3feafa205c98d49");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(t.signals.len(), 1);
    assert_eq!((t.signals[0].kind.as_str(), t.signals[0].passed), ("terminal", false));
    assert_eq!(t.signals[0].step.as_deref(), Some("f92f52d0acd19438"));
    assert_eq!(t.outcome.evidence[0].signal, "signal:terminal");
}

#[test]
fn otlp_proto_example_uppercase_hex_and_numeric_times() {
    let traces = traces_of("formats/otlp-json/otlp-proto-example-trace.json", Format::OtlpJson);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.id, "5b8efff798038103d269b633813fc60c");
    let s = &t.steps[0];
    assert_eq!(s.id, "eee19b7ec3c1b174");
    assert_eq!(s.parent_id.as_deref(), Some("eee19b7ec3c1b173"));
    assert_eq!(s.start, Some(1_544_712_660_000_000_000));
    assert_eq!(s.end, Some(1_544_712_661_000_000_000));
    assert_eq!(s.attributes["my.span.attr"], json!("some value"));
    assert_eq!(s.attributes["otel.span.kind"], json!("server"));
    assert_eq!(s.attributes["otel.scope.name"], json!("my.library"));
    assert!(t.source.dialects.is_empty());
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
}

#[test]
fn console_spans_dedupe_and_exception_event() {
    let traces = traces_of("formats/otel-console/console-agent-framework-handmade.json", Format::OtelConsole);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.id, "6f1c2e9a4b7d4c10a3e5f7b9d1c3e5a7");
    // Five printed objects, the tool span twice: four steps.
    assert_eq!(t.steps.len(), 4);
    assert_eq!(t.steps[0].id, "1a2b3c4d5e6f7081");
    assert_eq!(t.steps[0].kind, StepKind::Agent);
    assert_eq!(t.session_id.as_deref(), Some("conv-42"));
    let tool = step(t, "3c4d5e6f708192a3");
    assert!(tool.end.is_some());
    assert_eq!(tool.parent_id.as_deref(), Some("1a2b3c4d5e6f7081"));
    let err = tool.error.as_ref().unwrap();
    assert_eq!(err.source, Some(ErrorSource::Exception));
    assert_eq!(err.r#type.as_deref(), Some("TimeoutError"));
    assert_eq!(err.message.as_deref(), Some("booking service did not answer within 10s"));
    assert!(err.stacktrace.as_deref().unwrap().contains("tools.py"));
    // The root's 787/70 is the sum of its chat calls: counted once.
    assert_eq!(t.usage.input_tokens, Some(356 + 431));
    assert_eq!(t.usage.output_tokens, Some(41 + 29));
    assert!(t.steps[0].usage.is_empty());
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    assert!(t.outcome.evidence[0].handled);
    assert_eq!(t.outcome.evidence[0].signal, "error:exception");
}

#[test]
fn attribute_maps_of_each_dialect() {
    let t = &traces_of("formats/span-attributes/otel_genai_client_span_tool_calls.json", Format::SpanAttributes)[0];
    assert_eq!(t.id, "otel_genai_client_span_tool_calls");
    assert_eq!(t.steps.len(), 1);
    let s = &t.steps[0];
    assert_eq!(s.kind, StepKind::Llm);
    assert_eq!(s.input_messages.len(), 3);
    assert!(
        matches!(&s.input_messages[2].parts[0], Part::ToolResult(r) if r.content == json!("rainy, 57°F") && r.call_id.as_deref() == Some("1234"))
    );
    assert_eq!(s.output_messages[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!((s.usage.input_tokens, s.usage.output_tokens), (Some(97), Some(52)));
    assert_eq!(s.model.as_ref().unwrap().name(), Some("gpt-4-0613"));
    assert_eq!(t.task, Some(json!("Weather in Paris?")));

    let t = &traces_of("formats/span-attributes/openinference_client_span_tool_calls.json", Format::SpanAttributes)[0];
    let s = &t.steps[0];
    assert_eq!(t.source.dialects, ["openinference"]);
    assert_eq!(s.kind, StepKind::Llm);
    assert_eq!(
        s.input_messages[1].joined_text(),
        "Absolutely! Let me check the weather for you.\nget_weather({\"location\":\"Paris\"})"
    );
    assert_eq!(s.usage.total_tokens, Some(149));

    // Only input.value / output.value: messages recovered from them.
    let t =
        &traces_of("formats/span-attributes/openinference_client_span_input_output_only.json", Format::SpanAttributes)
            [0];
    let s = &t.steps[0];
    assert_eq!(s.input_messages.len(), 3);
    assert_eq!(
        s.output_messages[0].joined_text(),
        "The weather in Paris is currently rainy with a temperature of 57°F."
    );

    let t =
        &traces_of("formats/span-attributes/otel_genai_deprecated_client_span_tool_calls.json", Format::SpanAttributes)
            [0];
    assert!(t.source.dialects.contains(&"genai-legacy".to_string()));
    assert_eq!(t.steps[0].input_messages.len(), 3);

    let t = &traces_of("formats/span-attributes/otel_genai_tool_execution_span.json", Format::SpanAttributes)[0];
    let s = &t.steps[0];
    assert_eq!(s.kind, StepKind::Tool);
    let call = s.tool_call.as_ref().unwrap();
    assert_eq!((call.name.as_str(), call.id.as_deref()), ("get_weather", Some("1234")));
    assert_eq!(call.arguments, json!({"city": "New York"}));
    assert_eq!(s.tool_result.as_ref().unwrap().content["status"], json!("success"));
    assert!(s.error.is_none());
}

#[test]
fn phoenix_trace_file_with_annotations_and_rest_page() {
    let traces = traces_of("formats/phoenix/phoenix-trace-handmade.json", Format::Phoenix);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.id, "6aef40cf6bce1c332b120619c5b0ae3b");
    assert_eq!(t.steps.len(), 9);
    let tool = step(t, "3515278a4f5ef795");
    assert_eq!((tool.kind, tool.status), (StepKind::Tool, StepStatus::Error));
    assert_eq!(tool.scores[0].source, ScoreSource::Code);
    let answer = step(t, "ee4486551c29715c");
    assert_eq!(answer.kind, StepKind::Llm);
    assert_eq!(answer.scores[0].label.as_deref(), Some("incorrect"));
    assert_eq!(answer.scores[0].source, ScoreSource::Human);
    // The human `incorrect` label fails the run even though the tool error was handled.
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(t.outcome.evidence[0].signal, "score");

    let traces = traces_of("formats/phoenix/phoenix-rest-page-handmade.json", Format::Phoenix);
    assert_eq!(traces.len(), 2);
    let t = trace(&traces, "d3de937d368d54f2c5572bb117ee75c6");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(step(t, "bad521871c6da39e").kind, StepKind::Llm);
    assert!(step(t, "bad521871c6da39e").start.is_some());
    let t = trace(&traces, "8f3c16d58ad2895fa3feafa205c98d49");
    assert_eq!(t.signals[0].kind, "terminal");
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
}

#[test]
fn trail_trace_with_agent_parsing_error() {
    let traces = traces_of("formats/span-rows/trail-gaia-d67a8ae8.json", Format::SpanRows);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.id, "d67a8ae853c0b8ed0e55f7fafe4e2f64");
    assert_eq!(t.steps.len(), 13);
    assert_eq!(t.name.as_deref(), Some("main"));
    assert_eq!(t.steps[0].parent_id, None);
    let errors: Vec<&Step> = t.steps.iter().filter(|s| s.status == StepStatus::Error).collect();
    assert_eq!(errors.len(), 1);
    let s = errors[0];
    assert_eq!((s.id.as_str(), s.name.as_deref()), ("9179faddc634b287", Some("Step 1")));
    let err = s.error.as_ref().unwrap();
    assert_eq!(err.source, Some(ErrorSource::Exception));
    assert_eq!(err.r#type.as_deref(), Some("smolagents.utils.AgentParsingError"));
    assert!(err.message.as_deref().unwrap().starts_with("Error in code parsing"));
    assert!(err.stacktrace.is_some());
    // The agent went on (Step 2, final answer): handled.
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    assert!(t.outcome.evidence[0].handled);
    // Duration `PT1M21.559115S` on the root.
    assert_eq!(t.steps[0].end.unwrap() - t.steps[0].start.unwrap(), 81_559_115_000);
    // Usage only from the five LLM calls (the AGENT span repeats a sum).
    assert_eq!(t.steps.iter().filter(|s| !s.usage.is_empty()).count(), 5);
    assert!(t.steps.iter().filter(|s| !s.usage.is_empty()).all(|s| s.kind == StepKind::Llm));
    assert_eq!(t.usage.total_tokens, Some(1826 + 1890 + 5212 + 5662 + 1938));
    let final_answer = t.steps.iter().find(|s| s.kind == StepKind::Tool).unwrap();
    assert_eq!(final_answer.tool_call.as_ref().unwrap().name, "final_answer");
    assert!(t.task.as_ref().unwrap().as_str().unwrap().starts_with("You have one question to answer."));
    // Patronus function logs are events; the GAIA answer they carried is scrubbed.
    let logged = step(t, "b05eec0fa4758c44");
    assert_eq!(logged.events[0].name, "log");
    assert_eq!(logged.events[0].attributes["function.name"], json!("answer_single_question"));
    let dump = serde_json::to_string(t).unwrap();
    assert!(!dump.contains("BaseLabelPropagation") && !dump.contains("\"true_answer\":"));
}

/// All of TRAIL: 139 trace files, every one read as span rows, 63 with an Error span.
#[test]
fn trail_dataset_all_files() {
    let Some(shared) = shared_dir() else { return };
    let dir = shared.join("datasets/trail/data");
    let mut files = Vec::new();
    for split in std::fs::read_dir(&dir).unwrap() {
        for f in std::fs::read_dir(split.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    files.sort();
    assert_eq!(files.len(), 139);
    let mut with_error = 0;
    let mut error_spans = 0;
    for path in &files {
        let display = path.display().to_string();
        let report = autoharness::trace::read_file(path, &display);
        assert_eq!(report.format, Some(Format::SpanRows), "{display}: {}", report.reason);
        assert!(report.error.is_none(), "{display}: {:?}", report.error);
        assert_eq!(report.traces.len(), 1, "{display}");
        let t = &report.traces[0];
        let n = t.steps.iter().filter(|s| s.status == StepStatus::Error).count();
        error_spans += n;
        if n > 0 {
            with_error += 1;
        }
    }
    assert_eq!(with_error, 63);
    assert_eq!(error_spans, 342);
}
