//! The regression gate: `engine` (the adaptive gate's pure decision rules over pass/fail per
//! case, arm and seed) and `session` (one gate: trials through `trial`, costs, leakage, the
//! report).

pub mod engine;
pub mod evidence;
pub mod session;
