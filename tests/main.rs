//! The one integration test binary (see ARCHITECTURE.md, "Tests"): a module per area.

mod bad_input;
mod cli_cases;
mod cli_eval;
mod cli_gate;
mod cli_mine;
mod cli_run;
mod cli_traces;
mod common;
mod concurrency;
mod crash;
mod example;
mod feedback;
mod formats_otel;
mod formats_platforms;
mod formats_transcripts;
mod formats_variants;
mod fuzz;
mod hostile;
mod llm_e2e;
mod pinned;
mod producers;
mod sandbox;
mod tidy;
mod trial_env;
mod walkthrough;
