//! The workflows users run, each a short sequence of named phases over the stages and the
//! store: `mine` (traces → failures → clusters → cases), `run` (the flywheel: mine,
//! target, propose, gate, accept), `partitioned` (`run --partition`: a run's gates spread over runners sharing the store), `retire` (suite cases idle for many gates retired, with why)
//! and `setup` (`init`, `doctor`).

pub mod mine;
pub mod partitioned;
pub mod retire;
pub mod run;
pub mod setup;
