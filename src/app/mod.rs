//! The edge: the only module that sees clap, the terminal and the exit code. `cli` parses
//! arguments and dispatches; one module per subcommand turns its arguments into calls to
//! the workflows (`flow`, `run`) and stages, and hands the results to a renderer in
//! `report/`.

pub mod cli;
pub mod eval;
pub mod gate;
pub mod mine;
pub mod run;
pub mod setup;
pub mod traces;
