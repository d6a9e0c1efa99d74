//! Crash injection for the crash-recovery tests: `AUTOHARNESS_CRASH_AT=<point>:<n>` makes
//! the process kill itself with SIGKILL the `n`-th time (from 1) it passes `point`, so a
//! test can stop `mine`, `gate` or `run` at an exact moment instead of a sleep tuned to
//! one machine. Unset (always, outside tests), a point costs one relaxed atomic load.
//!
//! Points: `mine_stored` (a mine's transaction committed, before case files),
//! `case_written` (after each case file), `trial_recorded` (after each trial is in the
//! store), `proposal_recorded`, `gate_recorded` (a proposal's verdict stored),
//! `accepted` (a run accepted a patch, before the iteration is closed),
//! `iteration_done`; `trial_output` (a trial in flight printed something: its
//! processes are running); inside a run's final `--apply`/`--branch` (`harness::apply`):
//! `apply_branch` (the branch checked out), `apply_planned` (the plan recorded, nothing
//! written), `apply_file` (after each file written), `apply_committed` (the branch's commit
//! made, before the run is marked finished).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Plan {
    point: String,
    n: u64,
    seen: AtomicU64,
}

fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| {
        let spec = std::env::var("AUTOHARNESS_CRASH_AT").ok()?;
        let (point, n) = spec.rsplit_once(':').unwrap_or((spec.as_str(), "1"));
        Some(Plan { point: point.to_string(), n: n.parse().ok()?, seen: AtomicU64::new(0) })
    })
    .as_ref()
}

/// Passing `point`: dies here if `AUTOHARNESS_CRASH_AT` names it and this is the n-th time.
pub fn point(point: &str) {
    let Some(plan) = plan() else { return };
    if plan.point == point && plan.seen.fetch_add(1, Ordering::SeqCst) + 1 == plan.n {
        // SAFETY: raising a signal on our own process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
