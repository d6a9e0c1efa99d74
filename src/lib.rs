//! autoharness: turns an agent's production failures into a better harness, safely.
//!
//! The crate is organised by stage of the data flow (see ARCHITECTURE.md, whose
//! dependency matrix `tests/tidy.rs` enforces): `trace` (ingestion) → `mine` → `evals` →
//! `trial` → `gate`, with `sandbox` + `harness` for running trials; `store` reads the
//! stages' types; the workflows in `flow` (mine, run, init/doctor) use stages and store;
//! `report` renders; `app` alone sees clap, the terminal and the exit code.

pub mod app;
pub mod config;
pub mod crash;
pub mod evals;
pub mod exit;
pub mod flow;
pub mod gate;
pub mod harness;
pub mod llm;
pub mod lockfile;
pub mod mine;
pub mod paths;
pub mod propose;
pub mod redact;
pub mod report;
pub mod sandbox;
pub mod schema;
pub mod stats;
pub mod store;
pub mod trace;
pub mod trial;
