//! Running and judging trials: `trials` (the sandboxed runner with its cache) and `stats`
//! (intervals and tests the reports and the gate use).

pub mod stats;
pub mod trials;
