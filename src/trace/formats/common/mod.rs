//! What several format adapters share, in one visible place rather than inside one
//! adapter each:
//!
//! - [`transcript`]: linear transcripts (chat histories, Claude Code, Codex, SWE-agent,
//!   τ-bench, ATIF, plain text): content blocks, message lists → steps, label keys never
//!   read.
//! - [`platform`]: observability platforms' exports (LangSmith, Langfuse, OpenAI Agents):
//!   messages in their many shapes, usage under its many names.
//!
//! The OpenTelemetry family (OTLP, Phoenix, span rows) shares `otlp::map_span` and its
//! attribute helpers, which stay in `otlp.rs` with the conventions they implement.
//!
//! "Does this tool output show an error" is still decided three ways:
//! `transcript::text_error` (exit codes and tracebacks in terminal output),
//! `platform::text_error` (error strings in platform records) and `otlp::text_error`
//! (tool results in spans). Each reads the shapes its exporters write, and they differ in
//! which source and error type they report. None of that reaches a tool error's
//! signature any more: `mine::tool_error` signs it by the tool and the core of what the tool
//! said, read by meaning, so the three readers give one signature for one failure
//! (docs/producers.md, "Failure classes").

pub(crate) mod platform;
pub(crate) mod transcript;
