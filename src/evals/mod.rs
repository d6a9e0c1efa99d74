//! Eval cases and their graders: `case` (files on disk, content hashes, status) and
//! `checks` (judging one finished trial).

pub mod case;
pub mod checks;
