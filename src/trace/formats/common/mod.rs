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
//! (tool results in spans). They disagree on edge cases, so one failure can get a different
//! error type, hence a different signature, depending on the exporter. Merging them changes
//! cluster ids and is a measured change of its own (issue 18), not part of a move.

pub(crate) mod platform;
pub(crate) mod transcript;
