//! Format adapter tests for the platform exports: LangSmith, Langfuse, OpenAI Agents SDK.
//! Fixtures and their origin: tests/fixtures/formats/{langsmith,langfuse,openai-agents}/README.md.

use autoharness::trace::formats::Format;
use autoharness::trace::model::{ErrorSource, OutcomeStatus, Part, ScoreSource, StepKind, StepStatus, Trace};

use crate::common::*;

fn kinds(t: &Trace) -> Vec<StepKind> {
    t.steps.iter().map(|s| s.kind).collect()
}

fn tool_names(t: &Trace) -> Vec<&str> {
    t.steps.iter().filter_map(|s| s.tool_call.as_ref()).map(|c| c.name.as_str()).collect()
}

// ---------------------------------------------------------------- LangSmith

#[test]
fn langsmith_python_ingest_payload_post_and_patch() {
    let traces = traces_of("formats/langsmith/langsmith_py_wrap_openai_.json", Format::Langsmith);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.id, "d0d84d31-923d-4cb5-94a8-40a0a0087578");
    assert_eq!(t.steps.len(), 1, "post and patch are one run");
    let s = &t.steps[0];
    assert_eq!(s.kind, StepKind::Llm);
    assert_eq!(s.name.as_deref(), Some("ChatOpenAI"));
    assert_eq!(s.input_messages.len(), 1);
    assert_eq!(s.input_messages[0].joined_text(), "howdy");
    assert_eq!(s.output_messages[0].joined_text(), "Howdy! How can I assist you today?");
    assert_eq!(s.output_messages[0].finish_reason.as_deref(), Some("stop"));
    let model = s.model.as_ref().unwrap();
    assert_eq!(model.request_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(model.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
    assert_eq!(model.provider.as_deref(), Some("openai"));
    // The patch supplies end_time and the outputs (with usage_metadata).
    assert!(s.end.unwrap() > s.start.unwrap());
    assert_eq!(t.usage.total_tokens, Some(18));
    assert_eq!(t.task, Some(serde_json::json!("howdy")));
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
}

#[test]
fn langsmith_js_payload_with_epoch_millis_and_id_less_patch() {
    let traces = traces_of("formats/langsmith/langsmith_js_wrap_openai_default.json", Format::Langsmith);
    assert_eq!(traces.len(), 1);
    let s = &traces[0].steps[0];
    assert_eq!(traces[0].steps.len(), 1, "the patch has no id but the same dotted_order");
    assert_eq!(s.start, Some(1_728_803_137_170_000_000));
    assert_eq!(s.end, Some(1_728_803_138_285_000_000));
    assert_eq!(s.output_messages[0].joined_text(), "Howdy! How can I assist you today?");
    assert_eq!(s.usage.input_tokens, Some(9));
    assert_eq!(s.usage.output_tokens, Some(9));
}

#[test]
fn langsmith_cli_export_failing_tool_and_feedback() {
    let traces = traces_of("formats/langsmith/cli_export_with_error.jsonl", Format::Langsmith);
    assert_eq!(traces.len(), 2);

    let t = &traces[0];
    assert_eq!(t.id, "1f0a6c52-0b1e-4f6a-9d0e-6a1b2c3d4e01");
    assert_eq!(t.name.as_deref(), Some("support_agent"));
    assert_eq!(t.session_id.as_deref(), Some("thread-42"));
    assert_eq!(kinds(t), [StepKind::Workflow, StepKind::Llm, StepKind::Tool, StepKind::Llm, StepKind::Tool]);
    assert_eq!(tool_names(t), ["lookup_order", "issue_refund"]);
    assert!(t.steps[1..].iter().all(|s| s.parent_id.as_deref() == Some(t.id.as_str())));

    // LangChain-serialized input messages (a [[…]] batch) and generations output.
    let llm = &t.steps[1];
    let roles: Vec<&str> = llm.input_messages.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["system", "user"]);
    assert!(matches!(&llm.output_messages[0].parts[0],
        Part::ToolCall(c) if c.name == "lookup_order" && c.id.as_deref() == Some("call_lookup_1")));
    // The second call sees the ToolMessage result.
    assert!(t.steps[3].input_messages.iter().any(|m| m.role == "tool"));

    // Tool input given as a Python repr string; output as a serialized ToolMessage.
    let lookup = &t.steps[2];
    assert_eq!(lookup.tool_call.as_ref().unwrap().arguments, serde_json::json!({"order_id": "Z-9"}));
    let result = lookup.tool_result.as_ref().unwrap();
    assert_eq!(result.call_id.as_deref(), Some("call_lookup_1"));
    assert_eq!(result.content["status"], "delivered");
    assert_eq!(lookup.status, StepStatus::Ok);

    let refund = &t.steps[4];
    assert_eq!(refund.status, StepStatus::Error);
    let err = refund.error.as_ref().unwrap();
    assert_eq!(err.source, Some(ErrorSource::ErrorField));
    assert_eq!(err.r#type.as_deref(), Some("ToolException"));
    assert_eq!(err.message.as_deref(), Some("Refund API returned 502 Bad Gateway"));
    assert!(err.stacktrace.as_deref().unwrap().contains("agent/tools.py\", line 41"));

    // Token totals: the two LLM runs (the root's aggregate is not counted again).
    assert_eq!(t.usage.input_tokens, Some(1290));
    assert_eq!(t.usage.output_tokens, Some(61));
    assert_eq!(t.usage.total_tokens, Some(1351));
    assert!((t.cost_usd.unwrap() - 0.0002301).abs() < 1e-9);

    // Root feedback is a trace score.
    assert_eq!(t.scores.len(), 1);
    assert_eq!(t.scores[0].name, "user_score");
    assert_eq!(t.scores[0].value, Some(0.0));
    assert_eq!(t.scores[0].source, ScoreSource::UserFeedback);
    assert_eq!(t.scores[0].comment.as_deref(), Some("refund never happened"));

    // The root inherited the tool's error: the evidence names the tool run.
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(t.outcome.evidence.len(), 1);
    assert_eq!(t.outcome.evidence[0].step.as_deref(), Some(refund.id.as_str()));

    let ok = &traces[1];
    assert_eq!(ok.steps.len(), 2);
    assert_eq!(ok.task, Some(serde_json::json!("What are your opening hours?")));
    assert_eq!(ok.steps[1].output_messages[0].joined_text(), "We are open 9am to 5pm, Monday to Friday.");
    assert_eq!(ok.usage.total_tokens, Some(435));
    assert_eq!(ok.scores[0].name, "correctness");
    assert_eq!(ok.scores[0].value, Some(1.0));
    assert_eq!(ok.scores[0].source, ScoreSource::Llm);
    assert_eq!(ok.count_errors(), 0);
    assert_eq!(ok.outcome.status, OutcomeStatus::Unknown, "a numeric score is not a verdict");
}

// ---------------------------------------------------------------- Langfuse

#[test]
fn langfuse_vercel_ai_sdk_download() {
    let traces = traces_of("formats/langfuse/vercel-aisdk-2025-11-17.trace.json", Format::Langfuse);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    assert_eq!(t.id, "df41e597d0a85e0d7a6ae8ebfaa70aa0");
    assert_eq!(t.name.as_deref(), Some("ai.generateText"));
    assert_eq!(t.steps.len(), 3, "observations listed twice are read once");
    assert_eq!(kinds(t), [StepKind::Llm, StepKind::Llm, StepKind::Tool]);
    assert_eq!(tool_names(t), ["getWeather"]);
    // The trace input is JSON encoded twice.
    assert_eq!(t.task.as_ref().unwrap()["prompt"], "What is the weather like today in San Francisco?");

    let generation = &t.steps[1];
    assert_eq!(generation.name.as_deref(), Some("ai.generateText.doGenerate"));
    assert_eq!(generation.parent_id.as_deref(), Some("1dc6768109615657"));
    assert_eq!(generation.input_messages[0].joined_text(), "What is the weather like today in San Francisco?");
    assert!(matches!(&generation.output_messages[0].parts[0], Part::ToolCall(c)
        if c.name == "getWeather" && c.arguments["location"] == "San Francisco"));
    assert_eq!(generation.model.as_ref().unwrap().response_model.as_deref(), Some("gpt-5-2025-08-07"));
    // Original OTel attributes are kept raw.
    assert_eq!(generation.attributes["ai.usage.promptTokens"], "62");

    let tool = &t.steps[2];
    assert_eq!(tool.tool_result.as_ref().unwrap().content["temperature"], 64);

    // `ai.generateText` wraps `doGenerate`: only the inner call's usage counts.
    assert_eq!(t.usage.total_tokens, Some(147));
    assert_eq!(t.source.dialects, ["vercel", "genai"]);
    let names: Vec<(&str, Option<f64>, ScoreSource)> =
        t.scores.iter().map(|s| (s.name.as_str(), s.value, s.source)).collect();
    assert_eq!(names, [("hallucination", Some(0.0), ScoreSource::Llm), ("toxicity", Some(0.0), ScoreSource::Llm)]);
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
}

#[test]
fn langfuse_microsoft_agent_framework_download() {
    let traces = traces_of("formats/langfuse/microsoft-agent-2025-12-17.trace.json", Format::Langfuse);
    let t = &traces[0];
    assert_eq!(kinds(t), [StepKind::Agent, StepKind::Llm, StepKind::Tool, StepKind::Llm]);
    let tool = &t.steps[2];
    let call = tool.tool_call.as_ref().unwrap();
    assert_eq!(call.name, "get_weather");
    assert_eq!(call.id.as_deref(), Some("call_CwaJHuXTm9dmHFQPlVbqyzJ0"));
    assert_eq!(call.arguments["location"], "Tokyo, Japan");
    // GenAI semconv `parts` messages; the tool result flows into the second chat call.
    let second = &t.steps[3];
    assert!(matches!(&second.input_messages[0].parts[0], Part::ToolResult(r)
        if r.call_id.as_deref() == Some("call_CwaJHuXTm9dmHFQPlVbqyzJ0")));
    assert!(second.output_messages[0].joined_text().starts_with("Current conditions in Tokyo"));
    // The agent span repeats usage: totals are the two chat calls (163 + 236).
    assert_eq!(t.usage.total_tokens, Some(399));
    assert_eq!(t.steps[0].usage.total_tokens, Some(224));
    assert_eq!(t.scores.len(), 3);
    let hallucination = t.scores.iter().find(|s| s.name == "hallucination").unwrap();
    assert_eq!(hallucination.value, Some(0.9));
    assert!(t.steps.iter().all(|s| s.error.is_none()));
}

#[test]
fn langfuse_claude_agent_sdk_download() {
    let traces = traces_of("formats/langfuse/claude-agent-2025-12-22.trace.json", Format::Langfuse);
    let t = &traces[0];
    assert_eq!(t.steps.len(), 7);
    assert_eq!(t.steps.iter().filter(|s| s.kind == StepKind::Llm).count(), 4);
    assert_eq!(tool_names(t), ["mcp__weather__get_weather", "mcp__weather__get_weather"]);
    // Anthropic content blocks: tool_use parts in the assistant output.
    let calls: Vec<String> = t
        .steps
        .iter()
        .flat_map(|s| &s.output_messages)
        .flat_map(|m| &m.parts)
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some(c.arguments["city"].as_str().unwrap_or("").to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(calls, ["Berlin", "New York"]);
    assert_eq!(t.usage.input_tokens, Some(34));
    assert_eq!(t.usage.output_tokens, Some(232));
    assert!((t.cost_usd.unwrap() - 0.003582).abs() < 1e-9);
    let correctness = t.scores.iter().find(|s| s.name == "correctness").unwrap();
    assert_eq!(correctness.value, Some(0.0));
    assert!(correctness.comment.as_deref().unwrap().contains("Berlin"));
}

// ---------------------------------------------------------------- OpenAI Agents SDK

#[test]
fn openai_agents_captured_export() {
    let traces = traces_of("formats/openai-agents/captured_native_trace_export.jsonl", Format::OpenaiAgents);
    assert_eq!(traces.len(), 3);
    let names: Vec<_> = traces.iter().map(|t| t.name.as_deref().unwrap_or("")).collect();
    assert_eq!(names, ["support ok-with-tool-error", "support model-500", "support max-turns"]);
    let sessions: Vec<_> = traces.iter().map(|t| t.session_id.as_deref().unwrap_or("")).collect();
    assert_eq!(sessions, ["conv-1", "conv-2", "conv-3"]);

    // 1: a non-fatal tool error the model recovered from.
    let t = &traces[0];
    assert_eq!(t.steps.len(), 8);
    assert_eq!(
        kinds(t),
        [
            StepKind::Workflow,
            StepKind::Agent,
            StepKind::Turn,
            StepKind::Llm,
            StepKind::Tool,
            StepKind::Tool,
            StepKind::Turn,
            StepKind::Llm
        ]
    );
    assert_eq!(tool_names(t), ["lookup_order", "issue_refund"]);
    assert!(t.steps.iter().all(|s| s.kind == StepKind::Workflow || s.agent.as_deref() == Some("support-agent")));
    let refund = t.steps.iter().find(|s| s.name.as_deref() == Some("issue_refund")).unwrap();
    let err = refund.error.as_ref().unwrap();
    assert_eq!(err.source, Some(ErrorSource::ErrorField));
    assert_eq!(
        err.message.as_deref(),
        Some("Error running tool (non-fatal): Tool execution failed. Error details are redacted.")
    );
    assert_eq!(refund.tool_call.as_ref().unwrap().arguments["order_id"], "Z-9");
    let first = &t.steps[3];
    assert_eq!(first.input_messages.len(), 2);
    assert_eq!(first.output_messages[0].parts.len(), 2, "two parallel tool calls");
    assert_eq!(first.usage.cache_read_tokens, Some(256));
    assert_eq!(first.usage.reasoning_tokens, Some(8));
    assert_eq!(t.usage.input_tokens, Some(824));
    assert_eq!(t.usage.output_tokens, Some(54));
    assert_eq!(t.usage.total_tokens, Some(878));
    assert_eq!(t.task, Some(serde_json::json!("Where is order A-1187? Also refund order Z-9.")));
    assert_eq!(t.outcome.status, OutcomeStatus::Unknown);
    assert!(t.outcome.evidence[0].handled);

    // 2: the model call fails with HTTP 500 and the agent run fails with it.
    let t = &traces[1];
    let generation = t.steps.iter().find(|s| s.kind == StepKind::Llm).unwrap();
    let err = generation.error.as_ref().unwrap();
    assert_eq!(
        err.message.as_deref(),
        Some("Error getting response: Error code: 500 - The server had an error while processing your request.")
    );
    assert_eq!(err.code.as_deref(), Some("500"));
    assert!(generation.output_messages.is_empty());
    let agent = t.steps.iter().find(|s| s.kind == StepKind::Agent).unwrap();
    assert!(agent.error.as_ref().unwrap().message.as_deref().unwrap().starts_with("Error in agent run"));
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert!(t.outcome.evidence.iter().any(|e| e.step.as_deref() == Some(generation.id.as_str())));
    assert!(t.usage.is_empty());

    // 3: max turns is a terminal failure.
    let t = &traces[2];
    let agent = t.steps.iter().find(|s| s.kind == StepKind::Agent).unwrap();
    let err = agent.error.as_ref().unwrap();
    assert_eq!(err.source, Some(ErrorSource::Terminal));
    assert_eq!(err.message.as_deref(), Some("Max turns exceeded (max_turns = 1)"));
    assert_eq!(t.signals.len(), 1);
    assert_eq!(t.signals[0].kind, "terminal");
    assert!(!t.signals[0].passed);
    assert_eq!(t.outcome.status, OutcomeStatus::Failed);
    assert_eq!(t.usage.total_tokens, Some(439));
}
