//! One adapter per trace format. Each turns a stream of JSON records into normalized
//! [`Trace`]s and hands them to a sink as soon as they are complete.
//!
//! ## Adding a format
//! 1. Add a variant to [`Format`] with its stable name (it is part of `--json` output).
//! 2. Add a detection rule in `trace/detect.rs` at the right place of the order
//!    (trace-formats.md §10) — detection looks at the first records, never the extension alone.
//! 3. Write `formats/<name>.rs` with `pub fn parse(records, ctx, sink)`; read fields through
//!    `trace::json` helpers; keep unmapped fields in `attributes`.
//! 4. Copy a small real sample to `tests/fixtures/formats/` and add it to the snapshot test.

use serde::{Deserialize, Serialize};

use super::model::Trace;
use super::read::{Pos, RecordError, Records};

pub mod atif;
pub mod chat;
pub mod claude_code;
pub mod codex;
pub(crate) mod common;
pub mod langfuse;
pub mod langsmith;
pub mod openai_agents;
pub mod otlp;
pub mod phoenix;
pub mod plain_text;
pub mod span_rows;
pub mod swe_agent;
pub mod tau_bench;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// OTLP/JSON `TracesData` (file exporter, collector, hand dumps; camel or snake case).
    OtlpJson,
    /// OTLP/JSON `LogsData` (GenAI events, exception logs).
    OtlpLogs,
    /// Python `ConsoleSpanExporter` output (concatenated pretty JSON spans).
    OtelConsole,
    /// A flat span attribute map (one span), as in OpenInference/GenAI test fixtures.
    SpanAttributes,
    /// Phoenix span JSON (CLI trace files, REST `data[]`).
    Phoenix,
    /// Row-per-span dumps with nested `child_spans` (TRAIL, ClickHouse exporter schema).
    SpanRows,
    /// OpenAI Agents SDK native `trace` / `trace.span` export.
    OpenaiAgents,
    /// LangSmith runs (SDK JSON, CLI JSONL, ingestion payloads).
    Langsmith,
    /// Langfuse trace downloads, batch exports, public API pages.
    Langfuse,
    /// Claude Code session transcript JSONL.
    ClaudeCode,
    /// `claude -p --output-format stream-json` / Agent SDK NDJSON.
    ClaudeStreamJson,
    /// Codex CLI rollout JSONL.
    Codex,
    /// SWE-agent `.traj`.
    SweAgent,
    /// mini-swe-agent `.traj.json`.
    MiniSweAgent,
    /// τ-bench / AgentRx result records.
    TauBench,
    /// Multi-agent chat logs with a `history` list (Who&When) or `messages`.
    ChatHistory,
    /// Free-text logs inside JSON records (MAST/MAD), one message per trace.
    TextLog,
    /// A plain OpenAI-style message list (JSON array or JSONL).
    Messages,
    /// ATIF trajectory (Harbor's `trajectory.json`).
    Atif,
}

impl Format {
    pub const ALL: [Format; 19] = [
        Format::OtlpJson,
        Format::OtlpLogs,
        Format::OtelConsole,
        Format::SpanAttributes,
        Format::Phoenix,
        Format::SpanRows,
        Format::OpenaiAgents,
        Format::Langsmith,
        Format::Langfuse,
        Format::ClaudeCode,
        Format::ClaudeStreamJson,
        Format::Codex,
        Format::SweAgent,
        Format::MiniSweAgent,
        Format::TauBench,
        Format::ChatHistory,
        Format::TextLog,
        Format::Messages,
        Format::Atif,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::OtlpJson => "otlp-json",
            Format::OtlpLogs => "otlp-logs",
            Format::OtelConsole => "otel-console",
            Format::SpanAttributes => "span-attributes",
            Format::Phoenix => "phoenix",
            Format::SpanRows => "span-rows",
            Format::OpenaiAgents => "openai-agents",
            Format::Langsmith => "langsmith",
            Format::Langfuse => "langfuse",
            Format::ClaudeCode => "claude-code",
            Format::ClaudeStreamJson => "claude-stream-json",
            Format::Codex => "codex",
            Format::SweAgent => "swe-agent",
            Format::MiniSweAgent => "mini-swe-agent",
            Format::TauBench => "tau-bench",
            Format::ChatHistory => "chat-history",
            Format::TextLog => "text-log",
            Format::Messages => "messages",
            Format::Atif => "atif",
        }
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Formats whose traces may be split across files and lines and are joined by id
    /// after a whole walk (OTLP spans and their log records).
    pub fn join_family(self) -> Option<&'static str> {
        match self {
            Format::OtlpJson | Format::OtlpLogs | Format::OtelConsole => Some("otel"),
            Format::Langfuse => Some("langfuse"),
            Format::Langsmith => Some("langsmith"),
            Format::OpenaiAgents => Some("openai-agents"),
            _ => None,
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A problem inside a file that did not stop it (a broken line, a record of the wrong
/// shape). Shown as `path: line N: message`.
#[derive(Debug, Clone, Serialize)]
pub struct Warning {
    pub location: String,
    pub message: String,
}

/// What an adapter knows about the file it reads, and where it reports problems.
pub struct FileCtx<'a> {
    /// The path as shown to the user.
    pub path: &'a str,
    pub warnings: Vec<Warning>,
    /// The read error that ended the file, if any (see [`FileCtx::record_error`]).
    pub fatal: Option<ParseError>,
}

impl<'a> FileCtx<'a> {
    pub fn new(path: &'a str) -> FileCtx<'a> {
        FileCtx { path, warnings: Vec::new(), fatal: None }
    }

    pub fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.warnings.push(Warning { location: pos.to_string(), message: message.into() });
    }

    /// Record a read error and go on. A non-fatal one is a warning. A fatal one ends the
    /// file: the record stream yields nothing after it, so the adapter's loop ends and it
    /// hands over the traces it has collected so far, and [`parse`] then reports the error.
    /// (Returning the error here made every adapter drop those traces on its `?`.)
    pub fn record_error(&mut self, e: RecordError) -> Result<(), ParseError> {
        if e.fatal {
            self.fatal.get_or_insert(ParseError { location: e.pos.to_string(), message: e.message });
        } else {
            self.warn(e.pos, e.message);
        }
        Ok(())
    }

    /// A new trace whose source names this file and format.
    pub fn trace(&self, format: Format, id: impl Into<String>, pos: Pos) -> Trace {
        let mut trace = Trace::new(format.name(), self.path, id);
        trace.source.location = Some(pos.to_string());
        trace
    }
}

/// An error that ends the file (truncated document, unreadable data).
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ParseError {
    pub location: String,
    pub message: String,
}

pub type Sink<'s> = dyn FnMut(Trace) + 's;

/// Run the adapter for `format` over the records. A fatal read error is returned after the
/// adapter has handed over the traces read before it.
pub fn parse(
    format: Format,
    records: &mut Records,
    ctx: &mut FileCtx<'_>,
    sink: &mut Sink<'_>,
) -> Result<(), ParseError> {
    run_adapter(format, records, ctx, sink)?;
    match ctx.fatal.take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn run_adapter(
    format: Format,
    records: &mut Records,
    ctx: &mut FileCtx<'_>,
    sink: &mut Sink<'_>,
) -> Result<(), ParseError> {
    match format {
        Format::OtlpJson => otlp::parse_traces(records, ctx, sink),
        Format::OtlpLogs => otlp::parse_logs(records, ctx, sink),
        Format::OtelConsole => otlp::parse_console(records, ctx, sink),
        Format::SpanAttributes => otlp::parse_attribute_map(records, ctx, sink),
        Format::Phoenix => phoenix::parse(records, ctx, sink),
        Format::SpanRows => span_rows::parse(records, ctx, sink),
        Format::OpenaiAgents => openai_agents::parse(records, ctx, sink),
        Format::Langsmith => langsmith::parse(records, ctx, sink),
        Format::Langfuse => langfuse::parse(records, ctx, sink),
        Format::ClaudeCode => claude_code::parse(records, ctx, sink),
        Format::ClaudeStreamJson => claude_code::parse_stream_json(records, ctx, sink),
        Format::Codex => codex::parse(records, ctx, sink),
        Format::SweAgent => swe_agent::parse(records, ctx, sink),
        Format::MiniSweAgent => swe_agent::parse_mini(records, ctx, sink),
        Format::TauBench => tau_bench::parse(records, ctx, sink),
        Format::ChatHistory => chat::parse_history(records, ctx, sink),
        Format::TextLog => chat::parse_text_log(records, ctx, sink),
        Format::Messages => chat::parse_messages(records, ctx, sink),
        Format::Atif => atif::parse(records, ctx, sink),
    }
}

/// Run one adapter over in-memory records: its traces and its warnings' messages.
#[cfg(test)]
pub(crate) fn run_on_values(
    parse: fn(&mut Records, &mut FileCtx<'_>, &mut Sink<'_>) -> Result<(), ParseError>,
    path: &str,
    values: Vec<serde_json::Value>,
) -> (Vec<Trace>, Vec<String>) {
    let mut records = Records::from_values(values);
    let mut ctx = FileCtx::new(path);
    let mut out = Vec::new();
    parse(&mut records, &mut ctx, &mut |t| out.push(t)).unwrap();
    (out, ctx.warnings.into_iter().map(|w| w.message).collect())
}
