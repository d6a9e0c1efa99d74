//! The one integration test binary (see ARCHITECTURE.md, "Tests"): a module per area.

mod cli_mine;
mod common;
mod formats_otel;
mod formats_platforms;
mod formats_transcripts;
mod sandbox;
