//! Proposers: where candidate harness diffs come from. `knobs` (built-in, offline) searches
//! the manifest's knobs; `edits` holds the file edits and diffs proposers produce.

pub mod edits;
pub mod knobs;

use serde::Serialize;

/// One attempt at a diff for a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    pub provider: String,
    pub description: String,
    /// Unified diff, paths relative to the harness root.
    pub diff: String,
    /// Clusters the proposer expects to fix, and clusters it puts at risk.
    pub fixes: Vec<String>,
    pub risks: Vec<String>,
    pub prompt: Option<String>,
    pub answer: Option<String>,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    pub cost_usd: f64,
    /// Why this proposal could not be used (unparseable answer, patch outside editable…).
    pub error: Option<String>,
}

impl Proposal {
    pub fn diff_hash(&self) -> String {
        blake3::hash(self.diff.as_bytes()).to_hex()[..16].to_string()
    }
}
