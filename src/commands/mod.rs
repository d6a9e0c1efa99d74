//! One module per subcommand: each turns settings into calls to the stages and hands the
//! results to a renderer in `report/`.

pub mod eval;
pub mod gate;
pub mod mine;
pub mod run;
pub mod setup;
pub mod traces;
