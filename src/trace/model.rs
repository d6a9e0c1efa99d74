//! The normalized trace model every format adapter produces (trace-formats.md §9).
//!
//! A [`Trace`] is a flat arena of [`Step`]s linked by `parent_id`, plus a linear
//! `transcript` for sources that are conversations rather than span trees. Adapters fill
//! what their format has and leave the rest empty; `None` always means "the source did
//! not say", never "empty". Unmapped source fields survive in `attributes` so later
//! stages (signatures, clustering) can use vendor keys we never heard of.
//!
//! **Invariant:** label fields shipped beside benchmark data (Who&When `mistake_*`, MAST
//! `annotations`, TRAIL annotation files) never enter this model: they are answers, not
//! evidence, and mining must stay blind to them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Raw attributes: JSON-string values already decoded, OTLP `AnyValue`s already unwrapped.
pub type AttrMap = Map<String, Value>;

/// Unix time in nanoseconds.
pub type Nanos = i128;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Trace {
    /// Trace id as the source spells it (trace id, session id, task id…).
    pub id: String,
    pub source: SourceInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Nanos>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Nanos>,
    /// Flat arena in source order; tree via `Step::parent_id`.
    pub steps: Vec<Step>,
    /// Linear sources keep the conversation once here; steps point into it.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub transcript: Vec<Message>,
    /// The task as given to the agent, when the source records it separately
    /// (τ-bench instruction, SWE-agent problem statement, Who&When question).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Value>,
    /// Explicit run-level signals the adapter found (reward, exit status, result subtype…).
    /// The outcome is derived from these and from the steps, see `trace::outcome`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub signals: Vec<Signal>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub scores: Vec<Score>,
    pub usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Map::is_empty", default)]
    pub attributes: AttrMap,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SourceInfo {
    pub format: String,
    /// Attribute dialects seen inside a container format (OTLP: genai, openinference…).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub dialects: Vec<String>,
    pub path: String,
    /// Where in the file the trace starts: `line N` or `byte N` or `record N`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Step {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Stable order: start time, then file order.
    pub seq: u32,
    pub kind: StepKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<Nanos>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<Nanos>,
    pub status: StepStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
    /// Who acted, for multi-agent logs (agent name, speaker role).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub input_messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub output_messages: Vec<Message>,
    /// For linear sources: the half-open range of `Trace::transcript` this step produced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript_range: Option<(u32, u32)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_result: Option<ToolResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    pub usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub scores: Vec<Score>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub events: Vec<Event>,
    #[serde(skip_serializing_if = "Map::is_empty", default)]
    pub attributes: AttrMap,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Agent,
    Workflow,
    Llm,
    Tool,
    Retrieval,
    Embedding,
    Rerank,
    Guardrail,
    Evaluator,
    Handoff,
    Memory,
    Turn,
    /// A message from the user (or a user simulator) in a linear transcript.
    User,
    /// A system/environment message or event (system prompt, api_error line…).
    System,
    #[default]
    Other,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Agent => "agent",
            StepKind::Workflow => "workflow",
            StepKind::Llm => "llm",
            StepKind::Tool => "tool",
            StepKind::Retrieval => "retrieval",
            StepKind::Embedding => "embedding",
            StepKind::Rerank => "rerank",
            StepKind::Guardrail => "guardrail",
            StepKind::Evaluator => "evaluator",
            StepKind::Handoff => "handoff",
            StepKind::Memory => "memory",
            StepKind::Turn => "turn",
            StepKind::User => "user",
            StepKind::System => "system",
            StepKind::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Error,
    #[default]
    Unset,
    Cancelled,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ModelInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub finish_reasons: Vec<String>,
}

impl ModelInfo {
    pub fn name(&self) -> Option<&str> {
        self.response_model.as_deref().or(self.request_model.as_deref())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Message {
    pub role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub parts: Vec<Part>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
}

impl Message {
    pub fn text(role: impl Into<String>, text: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            parts: vec![Part::Text { text: text.into() }],
            ..Message::default()
        }
    }

    /// All text of the message (text, reasoning, tool results), joined by newlines.
    pub fn joined_text(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            let piece: std::borrow::Cow<'_, str> = match part {
                Part::Text { text } => text.into(),
                Part::Reasoning { text: Some(t), .. } => t.into(),
                Part::ToolResult(r) => value_text(&r.content),
                Part::ToolCall(c) => format!("{}({})", c.name, value_text(&c.arguments)).into(),
                _ => continue,
            };
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&piece);
        }
        out
    }
}

/// Text of a JSON value: strings as they are, anything else as compact JSON.
pub fn value_text(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::String(s) => s.as_str().into(),
        Value::Null => "".into(),
        other => other.to_string().into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    Reasoning {
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(default)]
        redacted: bool,
    },
    ToolCall(ToolCall),
    ToolResult(ToolResult),
    Media {
        modality: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        mime: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        uri: Option<String>,
    },
    Other {
        kind: String,
        raw: Value,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ToolCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub name: String,
    /// Parsed when the source gave JSON (or a JSON string), else the string as given.
    pub arguments: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ToolResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub content: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    /// OTel span status ERROR, Phoenix/TRAIL status_code Error, LangSmith status=error.
    SpanStatus,
    /// A string/object `error` field (LangSmith, OpenAI Agents).
    ErrorField,
    /// Langfuse `level: ERROR`, Claude Code system `api_error`.
    Level,
    /// An exception event or log record joined to the step.
    Exception,
    /// `is_error: true` on a tool result.
    ToolResultFlag,
    /// A non-zero exit code of a command.
    ExitCode,
    /// Text that looks like an error (traceback, `Error:` prefix, HTTP 5xx) — weakest.
    TextHeuristic,
    /// A terminal status of the run (exit_status, result subtype, max turns).
    Terminal,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ErrorInfo {
    pub source: Option<ErrorSource>,
    /// Normalized error class (`<class 'x.Y'>` → `x.Y`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stacktrace: Option<String>,
    /// HTTP status, provider code, exit code, subtype.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ErrorInfo {
    pub fn new(source: ErrorSource) -> ErrorInfo {
        ErrorInfo {
            source: Some(source),
            ..ErrorInfo::default()
        }
    }
    pub fn with_message(mut self, message: impl Into<String>) -> ErrorInfo {
        let message = message.into();
        if !message.is_empty() {
            self.message = Some(message);
        }
        self
    }
    pub fn with_type(mut self, ty: impl Into<String>) -> ErrorInfo {
        let ty = normalize_error_type(&ty.into());
        if !ty.is_empty() {
            self.r#type = Some(ty);
        }
        self
    }
}

/// `<class 'openai.InternalServerError'>` → `openai.InternalServerError`.
pub fn normalize_error_type(raw: &str) -> String {
    let t = raw.trim();
    let t = t
        .strip_prefix("<class '")
        .and_then(|s| s.strip_suffix("'>"))
        .unwrap_or(t);
    t.to_string()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScoreSource {
    Human,
    Llm,
    Code,
    UserFeedback,
    Benchmark,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Score {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub source: ScoreSource,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Event {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Nanos>,
    #[serde(skip_serializing_if = "Map::is_empty", default)]
    pub attributes: AttrMap,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Usage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
    /// Total tokens: the explicit total, else input + output.
    pub fn total(&self) -> Option<u64> {
        self.total_tokens.or(match (self.input_tokens, self.output_tokens) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0) + o.unwrap_or(0)),
        })
    }
    pub fn add(&mut self, other: &Usage) {
        fn add(a: &mut Option<u64>, b: Option<u64>) {
            if let Some(b) = b {
                *a = Some(a.unwrap_or(0) + b);
            }
        }
        add(&mut self.input_tokens, other.input_tokens);
        add(&mut self.output_tokens, other.output_tokens);
        add(&mut self.total_tokens, other.total());
        add(&mut self.cache_read_tokens, other.cache_read_tokens);
        add(&mut self.reasoning_tokens, other.reasoning_tokens);
    }
}

/// A run-level signal an adapter read from the source, with its polarity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Signal {
    /// What kind of signal: `reward`, `exit_status`, `result`, `is_correct`, `score`,
    /// `terminal`, `status`…
    pub kind: String,
    /// true = the run succeeded by this signal, false = it failed.
    pub passed: bool,
    /// Human-readable detail: `reward = 0.0`, `exit_status = exit_cost`.
    pub detail: String,
    /// The step the signal belongs to, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

impl Signal {
    pub fn new(kind: &str, passed: bool, detail: impl Into<String>) -> Signal {
        Signal {
            kind: kind.to_string(),
            passed,
            detail: detail.into(),
            step: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Passed,
    Failed,
    #[default]
    Unknown,
}

impl OutcomeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeStatus::Passed => "passed",
            OutcomeStatus::Failed => "failed",
            OutcomeStatus::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Outcome {
    pub status: OutcomeStatus,
    /// Why: each contributing piece of evidence, strongest first.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    /// `signal:<kind>`, `error:<source>`, `score`.
    pub signal: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Error evidence the agent recovered from (kept for mining, does not fail the run).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub handled: bool,
}

impl Trace {
    pub fn new(format: &str, path: &str, id: impl Into<String>) -> Trace {
        Trace {
            id: id.into(),
            source: SourceInfo {
                format: format.to_string(),
                path: path.to_string(),
                ..SourceInfo::default()
            },
            ..Trace::default()
        }
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    pub fn count_errors(&self) -> usize {
        self.steps.iter().filter(|s| s.error.is_some()).count()
    }

    /// Sum of step usage when the trace has no total of its own.
    pub fn fill_totals(&mut self) {
        if self.usage.is_empty() {
            let mut total = Usage::default();
            for step in &self.steps {
                total.add(&step.usage);
            }
            self.usage = total;
        }
        if self.cost_usd.is_none() {
            let costs: Vec<f64> = self.steps.iter().filter_map(|s| s.cost_usd).collect();
            if !costs.is_empty() {
                self.cost_usd = Some(costs.iter().sum());
            }
        }
        if self.start.is_none() {
            self.start = self.steps.iter().filter_map(|s| s.start).min();
        }
        if self.end.is_none() {
            self.end = self.steps.iter().filter_map(|s| s.end.or(s.start)).max();
        }
    }
}
