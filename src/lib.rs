//! autoharness: turns an agent's production failures into a better harness, safely.
//!
//! The crate is organised by stage of the data flow (see ARCHITECTURE.md):
//! `trace` (ingestion) → `mine` → `evals` → `gate` → `run`, with `store` and `report`
//! as leaves every stage may use, and `sandbox` + `harness` for running trials.
//! `cli` parses arguments into `config::Settings` and dispatches to `commands`.

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
pub mod run;
pub mod sandbox;
pub mod stats;
pub mod store;
pub mod trace;
pub mod trial;
