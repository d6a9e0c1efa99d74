//! autoharness: turns an agent's production failures into a better harness, safely.
//!
//! The crate is organised by stage of the data flow (see ARCHITECTURE.md):
//! `trace` (ingestion) → `mine` → `evals` → `gate` → `run`, with `store` and `report`
//! as leaves every stage may use.

pub mod harness;
pub mod sandbox;
pub mod trace;
