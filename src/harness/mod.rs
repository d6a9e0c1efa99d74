//! The harness under optimization: its files on disk, hashed and copied privately for
//! each trial (`workspace`), and what of the host its trials may read (`hostenv`).

pub mod apply;
pub mod base;
pub mod hostenv;
pub mod manifest;
pub mod patch;
pub mod space;
pub mod workspace;
