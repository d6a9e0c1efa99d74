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
mod formats_otel;
mod formats_platforms;
mod formats_transcripts;
mod fuzz;
mod gate_evidence;
mod hostile;
mod llm_e2e;
mod producers;
mod sandbox;
mod trial_env;
mod trial_views;
mod walkthrough;
