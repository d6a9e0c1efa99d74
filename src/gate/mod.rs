//! Running and judging trials: `trials` (the sandboxed runner with its cache), `stats`
//! (intervals and exact tests) and `engine` (the adaptive gate's pure decision rules).

pub mod engine;
pub mod evidence;
pub mod session;
pub mod stats;
pub mod trials;
