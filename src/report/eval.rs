//! Rendering `eval`: the per-cluster table with Wilson intervals, flaky, slowest and
//! costliest cases; `autoharness.eval/v1` JSON is the `EvalReport` itself; JUnit XML.

use std::fmt::Write as _;

use super::junit::{JunitCase, render};
use super::output::{Output, Style};
use super::table as new_table;
use crate::trace::json::clip;
use crate::trial::summary::EvalReport;

pub fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

pub fn interval(w: (f64, f64)) -> String {
    format!("[{:.0}–{:.0}%]", w.0 * 100.0, w.1 * 100.0)
}

pub fn table(out: &Output, r: &EvalReport) -> String {
    let mut text = String::new();
    let mut t = new_table(&["CLUSTER", "CASES", "PASSED", "RATE", "95% CI"], out.color_stdout);
    for c in &r.clusters {
        let rate = pct(c.pass_rate);
        let rate = if c.pass_rate >= 0.999 {
            out.paint(Style::Green, &rate)
        } else if c.pass_rate <= 0.001 {
            out.paint(Style::Red, &rate)
        } else {
            out.paint(Style::Yellow, &rate)
        };
        t.add_row(vec![
            c.id.clone(),
            c.cases.to_string(),
            format!("{}/{}", c.passes, c.trials),
            rate,
            interval(c.wilson),
        ]);
    }
    let _ = writeln!(text, "{t}");
    let _ = writeln!(
        text,
        "\n{} cases × {} trials on {} ({}): {} passed {} · {} flaky · {} cached · ${:.4} · {:.1}s",
        r.cases.len(),
        r.trials_per_case,
        out.paint(Style::Bold, &r.harness),
        &r.harness_hash[..12.min(r.harness_hash.len())],
        out.paint(Style::Bold, &format!("{}/{}", r.passes, r.trials)),
        interval(r.wilson),
        r.flaky.len(),
        r.cached_trials,
        r.total_cost_usd,
        r.wall_ms as f64 / 1000.0
    );
    if !r.flaky.is_empty() {
        let _ = writeln!(text, "\n{}", out.paint(Style::Yellow, "flaky (outcomes differ across trials):"));
        for id in &r.flaky {
            if let Some(c) = r.cases.iter().find(|c| &c.id == id) {
                let _ = writeln!(text, "  {}  {}/{}  {}", c.id, c.passes, c.trials, first_reason(c));
            }
        }
    }
    let failing: Vec<_> = r.cases.iter().filter(|c| c.passes == 0 && c.trials > 0).collect();
    if !failing.is_empty() {
        let _ = writeln!(text, "\n{}", out.paint(Style::Red, "failing every trial:"));
        for c in failing.iter().take(10) {
            let _ = writeln!(text, "  {}  {}", c.id, first_reason(c));
        }
        if failing.len() > 10 {
            let _ = writeln!(text, "  … and {} more (--json lists all)", failing.len() - 10);
        }
    }
    let slow: Vec<String> = r
        .slowest
        .iter()
        .filter_map(|id| r.cases.iter().find(|c| &c.id == id))
        .map(|c| format!("{} {:.2}s", c.id, c.mean_ms as f64 / 1000.0))
        .collect();
    if !slow.is_empty() {
        let _ = writeln!(text, "\nslowest: {}", slow.join(" · "));
    }
    let costly: Vec<String> = r
        .costliest
        .iter()
        .filter_map(|id| r.cases.iter().find(|c| &c.id == id))
        .map(|c| format!("{} ${:.4}", c.id, c.cost_usd.unwrap_or(0.0)))
        .collect();
    if !costly.is_empty() {
        let _ = writeln!(text, "costliest: {}", costly.join(" · "));
    }
    let _ = writeln!(text, "{}", out.paint(Style::Dim, &format!("isolation: {}", r.isolation)));
    text
}

fn first_reason(c: &crate::trial::summary::CaseSummary) -> String {
    c.failures.first().map(|f| clip(f, 100)).unwrap_or_default()
}

pub fn junit(r: &EvalReport) -> String {
    let cases: Vec<JunitCase> = r
        .cases
        .iter()
        .map(|c| JunitCase {
            classname: c.cluster.clone(),
            name: c.id.clone(),
            seconds: c.mean_ms as f64 * c.trials as f64 / 1000.0,
            failure: (c.passes < c.trials)
                .then(|| (format!("{}/{} trials passed", c.passes, c.trials), c.failures.join("\n"))),
            out: String::new(),
        })
        .collect();
    render(&format!("autoharness eval {}", r.harness), &cases)
}
