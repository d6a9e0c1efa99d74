//! The harness under optimization: its files on disk, hashed and copied privately for
//! each trial (`workspace`).

pub mod manifest;
pub mod patch;
pub mod space;
pub mod workspace;
