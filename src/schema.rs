//! The name and version of every document autoharness writes for machines: each `--json`
//! output (docs/json.md lists exactly [`JSON_OUTPUTS`]; `tests/tidy.rs` checks it) and the
//! case file format (docs/cases.md). A breaking change of a document bumps its version here.

pub const MINE: &str = "autoharness.mine/v1";
pub const CLUSTERS: &str = "autoharness.clusters/v1";
pub const CLUSTER: &str = "autoharness.cluster/v1";
pub const CASES: &str = "autoharness.cases/v1";
pub const EVAL: &str = "autoharness.eval/v1";
pub const GATE: &str = "autoharness.gate/v1";
pub const GATE_SHARD: &str = "autoharness.gate-shard/v1";
pub const RUN: &str = "autoharness.run/v1";
pub const TRACES_LS: &str = "autoharness.traces-ls/v1";
pub const TRACE_SHOW: &str = "autoharness.trace-show/v1";
pub const FORMATS: &str = "autoharness.formats/v1";
pub const INIT: &str = "autoharness.init/v1";
pub const DOCTOR: &str = "autoharness.doctor/v1";

/// Every `--json` document, as docs/json.md documents them.
pub const JSON_OUTPUTS: &[&str] =
    &[MINE, CLUSTERS, CLUSTER, CASES, EVAL, GATE, GATE_SHARD, RUN, TRACES_LS, TRACE_SHOW, FORMATS, INIT, DOCTOR];

/// A case file (`evals/<harness>/<cluster>/<case>.json`).
pub const CASE: &str = "autoharness.case/v1";
