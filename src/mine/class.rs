//! Canonical failure classes: one root cause, one class, whatever the framework's wording.
//!
//! Every SDK wraps a model-API failure its own way (`openai.InternalServerError`, LangChain's
//! `OpenAIAPIError`, Pydantic AI's `ModelServerError` with `status_code: 500, …`, the Agents
//! SDK's "Error in agent run: Error code: 500 - …"), and every agent framework words its
//! turn limit differently (`MaxTurnsExceeded`, `GraphRecursionError`, `UsageLimitExceeded`).
//! Classes are read from what those words mean — the HTTP status, the exception class's
//! name, the provider's error code, documented phrases — never from one release's full
//! sentence. The framework's words stay the failure's message and excerpt (the evidence);
//! only the signature is canonical.

use crate::trace::model::{Step, StepKind};

/// A canonical failure class (docs/trace-formats.md, "Failure classes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The agent hit its turn, step, recursion, iteration or usage limit.
    TurnLimit,
    /// The model API answered 5xx or said it was overloaded.
    ModelServerError,
    /// 429 / rate limit / quota.
    RateLimit,
    /// 401 / 403 / bad API key.
    Auth,
    /// The client gave up waiting (after its retries).
    Timeout,
    /// The model API could not be reached.
    Connection,
    /// The prompt did not fit the model's context window.
    ContextLength,
    /// A content filter or guardrail stopped the request or the answer.
    ContentFilter,
    /// The model's tool-call arguments could not be parsed or validated.
    ToolArguments,
    /// The model's final output failed its schema or validator.
    OutputValidation,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::TurnLimit => "turn_limit",
            FailureClass::ModelServerError => "model_server_error",
            FailureClass::RateLimit => "rate_limit",
            FailureClass::Auth => "auth",
            FailureClass::Timeout => "timeout",
            FailureClass::Connection => "connection",
            FailureClass::ContextLength => "context_length",
            FailureClass::ContentFilter => "content_filter",
            FailureClass::ToolArguments => "tool_arguments",
            FailureClass::OutputValidation => "output_validation",
        }
    }

    /// Infrastructure (the model API failed the agent), not the agent's own capability.
    pub fn infra(self) -> bool {
        matches!(
            self,
            FailureClass::ModelServerError
                | FailureClass::RateLimit
                | FailureClass::Auth
                | FailureClass::Timeout
                | FailureClass::Connection
        )
    }
}

/// Exception class names in `text`: identifiers ending in Error / Exception / Exceeded /
/// Triggered, lowercased, module path dropped (`openai.RateLimitError` → `ratelimiterror`).
fn exception_names(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|tok| {
            let last = tok.trim_matches('.').rsplit('.').next()?;
            let lower = last.to_ascii_lowercase();
            ["error", "exception", "exceeded", "triggered", "timeout"]
                .iter()
                .any(|s| lower.ends_with(s) && lower.len() > s.len())
                .then_some(lower)
        })
        .collect()
}

/// The HTTP status a message reports: `Error code: 500`, `status_code: 500`,
/// `status_code=429`, `HTTP 503`, `status 401`, `(status 500)`.
pub fn http_status(text: &str) -> Option<u16> {
    let lower = text.to_ascii_lowercase();
    for key in ["error code", "status_code", "status code", "statuscode", "http status", "status", "http"] {
        let mut from = 0;
        while let Some(pos) = lower[from..].find(key) {
            let at = from + pos + key.len();
            from = at;
            let rest = lower[at..].trim_start_matches([':', '=', ' ', '"', '\'']);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if digits.len() == 3 {
                if let Ok(code) = digits.parse::<u16>() {
                    if (400..600).contains(&code) {
                        return Some(code);
                    }
                }
            }
        }
    }
    None
}

/// The HTTP status behind one of Anthropic's documented error types. The anthropic SDK's own
/// OpenTelemetry span (`anthropic.messages.create`, 2.x) records only `error.type`, no
/// message: `api_error` and `authentication_error` name no status or class otherwise.
fn anthropic_status(error_type: &str) -> Option<u16> {
    Some(match error_type.trim().to_ascii_lowercase().as_str() {
        "authentication_error" => 401,
        "permission_error" => 403,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "overloaded_error" => 529,
        _ => return None,
    })
}

fn any(text: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| text.contains(n))
}

fn named(names: &[String], wanted: &[&str]) -> bool {
    names.iter().any(|n| wanted.contains(&n.as_str()))
}

/// The canonical class of a failure, from its error type, message, code and step.
///
/// Model-API classes (server error, rate limit, auth, timeout, connection) are given only
/// when the failure is on the model side: an LLM step, a model-API exception class, or an
/// HTTP status in a step that is not a tool (a tool's own HTTP 500 is its own failure, and
/// stays apart per tool).
pub fn classify(
    message: &str,
    error_type: Option<&str>,
    code: Option<&str>,
    step: Option<&Step>,
) -> Option<FailureClass> {
    let text = format!("{} {}", error_type.unwrap_or(""), message);
    let lower = text.to_lowercase();
    let names = exception_names(&text);
    let tool_step = step.is_some_and(|s| s.kind == StepKind::Tool);

    if named(
        &names,
        &[
            "maxturnsexceeded",
            "graphrecursionerror",
            "usagelimitexceeded",
            "agentmaxstepserror",
            "maxstepsexceeded",
            "maxiterationsexceeded",
            "recursionlimitexceeded",
        ],
    ) || any(
        &lower,
        &[
            "max turns",
            "max_turns",
            "maximum turns",
            "turn limit",
            "recursion limit",
            "recursion_limit",
            "max steps",
            "max_steps",
            "maximum number of steps",
            "step limit",
            "iteration limit",
            "max iterations",
            "max_iterations",
            "request_limit",
        ],
    ) {
        return Some(FailureClass::TurnLimit);
    }
    if named(
        &names,
        &[
            "inputguardrailtripwiretriggered",
            "outputguardrailtripwiretriggered",
            "guardrailtripwiretriggered",
            "contentfiltererror",
            "contentpolicyviolationerror",
            "guardrailerror",
        ],
    ) || any(
        &lower,
        &[
            "content_filter",
            "content filter",
            "content management policy",
            "content_policy_violation",
            "responsibleaipolicyviolation",
        ],
    ) || code.is_some_and(|c| c.eq_ignore_ascii_case("content_filter"))
        || step.is_some_and(|s| s.kind == StepKind::Guardrail)
    {
        return Some(FailureClass::ContentFilter);
    }
    if named(&names, &["contextwindowexceedederror", "contextlengthexceedederror"])
        || any(
            &lower,
            &[
                "context_length_exceeded",
                "maximum context length",
                "context window",
                "context length",
                "prompt is too long",
            ],
        )
    {
        return Some(FailureClass::ContextLength);
    }
    if named(&names, &["toolinvocationerror", "toolargumentserror", "toolcallparseerror"])
        || (any(&lower, &["argument", "tool call", "tool input", "function call"])
            && any(
                &lower,
                &["invalid json", "jsondecodeerror", "not valid json", "failed to parse", "could not parse"],
            ))
    {
        return Some(FailureClass::ToolArguments);
    }
    if named(&names, &["outputparserexception", "outputvalidationerror"])
        || any(&lower, &["output validation", "output_validation", "result validation", "invalid structured output"])
    {
        return Some(FailureClass::OutputValidation);
    }
    if tool_step {
        return None;
    }

    let status = code
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| (400..600).contains(c))
        .or_else(|| http_status(&text))
        .or_else(|| error_type.and_then(anthropic_status));
    let model_names = names.iter().any(|n| {
        n.starts_with("model")
            || n.starts_with("openai")
            || n.starts_with("anthropic")
            || n.starts_with("api")
            || matches!(
                n.as_str(),
                "ratelimiterror"
                    | "authenticationerror"
                    | "permissiondeniederror"
                    | "internalservererror"
                    | "serviceunavailableerror"
                    | "overloadederror"
                    | "badrequesterror"
            )
    });
    let model_side = step.is_some_and(|s| s.kind == StepKind::Llm || s.model.is_some())
        || model_names
        || any(&lower, &["openai.", "anthropic.", "litellm.", "httpx.", "error code:", "status_code"]);
    if !model_side {
        return None;
    }
    if status == Some(429)
        || named(&names, &["ratelimiterror", "modelratelimiterror", "openairatelimiterror", "toomanyrequestserror"])
        || any(&lower, &["rate limit", "rate_limit", "ratelimit", "too many requests", "quota"])
    {
        return Some(FailureClass::RateLimit);
    }
    if matches!(status, Some(401 | 403))
        || named(
            &names,
            &["authenticationerror", "modelauthenticationerror", "openaiauthenticationerror", "permissiondeniederror"],
        )
        || any(
            &lower,
            &["invalid api key", "incorrect api key", "invalid_api_key", "unauthorized", "invalid x-api-key"],
        )
    {
        return Some(FailureClass::Auth);
    }
    if status == Some(408)
        || names.iter().any(|n| n.contains("timeout"))
        || any(&lower, &["timed out", "timeout", "deadline exceeded"])
    {
        return Some(FailureClass::Timeout);
    }
    if status.is_some_and(|s| s >= 500)
        || named(
            &names,
            &[
                "internalservererror",
                "modelservererror",
                "modeloverloadederror",
                "serviceunavailableerror",
                "overloadederror",
                "badgatewayerror",
            ],
        )
        || any(&lower, &["internal server error", "service unavailable", "overloaded", "bad gateway"])
    {
        return Some(FailureClass::ModelServerError);
    }
    if names.iter().any(|n| n.contains("connection") || n == "connecterror")
        || any(&lower, &["connection refused", "connection reset", "connection error", "failed to connect"])
    {
        return Some(FailureClass::Connection);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llm() -> Step {
        Step { kind: StepKind::Llm, ..Default::default() }
    }

    fn class(message: &str, error_type: Option<&str>) -> Option<&'static str> {
        classify(message, error_type, None, Some(&llm())).map(FailureClass::as_str)
    }

    #[test]
    fn wrapped_model_errors_share_a_class() {
        for (m, t) in [
            ("Error code: 500 - The server had an error", Some("openai.InternalServerError")),
            ("Error code: 503 - The engine is currently overloaded", Some("OpenAIAPIError")),
            ("status_code: 500, model_name: gpt-4o-mini, body: {}", Some("pydantic_ai.exceptions.ModelServerError")),
            ("Error in agent run: Error code: 502 - bad gateway", None),
        ] {
            assert_eq!(class(m, t), Some("model_server_error"), "{m}");
        }
        assert_eq!(class("Request timed out.", Some("OpenAITimeoutError")), Some("timeout"));
        assert_eq!(class("status_code: 429, body: {}", Some("ModelRateLimitError")), Some("rate_limit"));
        assert_eq!(class("Error code: 401 - nope", None), Some("auth"));
        // Anthropic's overload through LiteLLM (a TRAIL trace): a server error, not a rate limit.
        let overloaded = r#"litellm.InternalServerError: AnthropicError - {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(class(overloaded, Some("litellm.exceptions.InternalServerError")), Some("model_server_error"));
    }

    #[test]
    fn anthropic_error_types_alone_give_the_class() {
        // The anthropic SDK's own span: error.type only, no message (anthropic 2.17).
        assert_eq!(class("", Some("api_error")), Some("model_server_error"));
        assert_eq!(class("", Some("overloaded_error")), Some("model_server_error"));
        assert_eq!(class("", Some("rate_limit_error")), Some("rate_limit"));
        assert_eq!(class("", Some("authentication_error")), Some("auth"));
        assert_eq!(class("", Some("client_timeout_error")), Some("timeout"));
    }

    #[test]
    fn limits_and_filters_by_exception_class() {
        assert_eq!(class("anything", Some("langgraph.errors.GraphRecursionError")), Some("turn_limit"));
        assert_eq!(class("The next request would exceed the request_limit of 3", None), Some("turn_limit"));
        assert_eq!(class("x", Some("agents.exceptions.OutputGuardrailTripwireTriggered")), Some("content_filter"));
        assert_eq!(class("This model's maximum context length is 8192 tokens", None), Some("context_length"));
    }

    #[test]
    fn a_tools_own_http_error_is_not_a_model_class() {
        let tool = Step { kind: StepKind::Tool, ..Default::default() };
        assert_eq!(classify("HTTP 500 from inventory service", None, None, Some(&tool)), None);
        assert_eq!(classify("order not found", Some("LookupError"), None, Some(&llm())), None);
    }

    #[test]
    fn status_codes_are_read_in_every_wording() {
        assert_eq!(http_status("Error code: 500 - x"), Some(500));
        assert_eq!(http_status("status_code: 429, model_name"), Some(429));
        assert_eq!(http_status("HTTP 503 Service Unavailable"), Some(503));
        assert_eq!(http_status("status=200 then 12345"), None);
    }
}
