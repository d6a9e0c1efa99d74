//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod cli;

use std::path::PathBuf;

use autoharness::trace::formats::Format;
use autoharness::trace::model::Trace;
use autoharness::trace::{FileReport, read_file};

/// Path of a fixture under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// Read a fixture, assert it is detected as `format` with no fatal error, return its report.
pub fn read_as(rel: &str, format: Format) -> FileReport {
    let path = fixture(rel);
    let report = read_file(&path, rel);
    assert_eq!(report.format, Some(format), "{rel}: detected {:?} ({})", report.format, report.reason);
    assert!(report.error.is_none(), "{rel}: {:?}", report.error);
    report
}

/// The traces of a fixture read as `format`.
pub fn traces_of(rel: &str, format: Format) -> Vec<Trace> {
    read_as(rel, format).traces
}

/// `../shared` beside the repo, or None (tests that need it skip loudly, and fail when
/// AUTOHARNESS_REQUIRE_ALL=1 as in CI).
#[allow(clippy::print_stderr)]
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("AUTOHARNESS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("datasets").is_dir() {
        return Some(dir);
    }
    let msg = format!("SKIPPED: {} not found; this test needs ../shared/datasets", dir.display());
    if std::env::var("AUTOHARNESS_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{msg} (AUTOHARNESS_REQUIRE_ALL=1 forbids skipping)");
    }
    eprintln!("{msg}");
    None
}
