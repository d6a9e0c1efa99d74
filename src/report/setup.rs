//! Rendering `init` and `doctor`.

use std::fmt::Write as _;

use super::output::{Output, Style};
use crate::flow::setup::{DoctorReport, InitResult};

pub fn init(out: &Output, r: &InitResult) -> String {
    let mut t = String::new();
    for c in &r.created {
        let _ = writeln!(t, "{} {c}", out.paint(Style::Green, "created"));
    }
    for k in &r.kept {
        let _ = writeln!(t, "{} {k} (exists, not overwritten)", out.paint(Style::Yellow, "kept   "));
    }
    let _ = writeln!(
        t,
        "\nnext: edit harnesses/{}/harness.toml (run, editable), then `autoharness mine <traces>` and `autoharness eval`",
        r.harness
    );
    t
}

pub fn doctor(out: &Output, r: &DoctorReport) -> String {
    let ok = |b: bool| if b { out.paint(Style::Green, "ok  ") } else { out.paint(Style::Red, "FAIL") };
    let mut t = String::new();
    let _ = writeln!(t, "autoharness {}", r.version);
    let fs_ok = r.isolation.bwrap.is_some() || r.isolation.landlock_abi.is_some();
    let _ = writeln!(t, "{} isolation  {}", ok(fs_ok && r.isolation.can_isolate_network()), r.isolation_summary);
    let _ = writeln!(t, "{} store      {} ({})", ok(r.store.ok), r.store.path, r.store.detail);
    if r.harnesses.is_empty() {
        let _ = writeln!(
            t,
            "{} harnesses  none under harnesses/ (`autoharness init` makes one)",
            out.paint(Style::Yellow, "--  ")
        );
    }
    for h in &r.harnesses {
        let _ = writeln!(t, "{} harness    {} — {}", ok(h.ok), h.name.as_deref().unwrap_or(&h.path), h.detail);
        if let Some(c) = &h.sandbox_check {
            let _ = writeln!(t, "{} sandbox    `{}` in a trial ({}): {}", ok(c.ok), c.command, c.isolation, c.detail);
        }
        if !h.sees.is_empty() {
            let _ = writeln!(t, "     a trial sees:");
            for line in &h.sees {
                let _ = writeln!(t, "       + {line}");
            }
            let _ = writeln!(t, "     and not:");
            for line in &h.hidden {
                let _ = writeln!(t, "       - {line}");
            }
        }
    }
    let _ = writeln!(t, "{} proposer   {}", ok(true), r.proposer);
    if !r.problems.is_empty() {
        let _ = writeln!(t, "\n{} problem(s):", r.problems.len());
        for p in &r.problems {
            let _ = writeln!(t, "  - {p}");
        }
    }
    t
}
