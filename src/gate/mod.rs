//! The regression gate: `engine` (the adaptive gate's pure decision rules over pass/fail per
//! case, arm and seed), `session` (one gate: trials through `trial`, costs, leakage, the
//! report), `partition` (`--partition K/N`: a shard's cases) and `merge` (`--merge`: the
//! decision from shards' first rounds, checked for coverage).

pub mod engine;
pub mod evidence;
pub mod merge;
pub mod partition;
pub mod session;
