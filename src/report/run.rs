//! Rendering `run`: one line per event as the loop goes (stderr), the final summary
//! (stdout), and `summary.md` for the run folder. `--json` is the `RunSummary`.

use std::fmt::Write as _;

use super::output::{Output, Style};
use crate::flow::run::{RunEvent, RunSummary};
use crate::trace::json::clip;

/// One or two lines for an event, or nothing.
pub fn event(out: &Output, e: &RunEvent) -> Option<String> {
    let c = out.color_stderr;
    let paint = |s: Style, t: &str| super::output::paint(c, s, t);
    Some(match e {
        RunEvent::Started { run_id, resumed, baseline_hash } => format!(
            "{} run {run_id}{} · baseline {}",
            paint(Style::Bold, "autoharness"),
            if *resumed { " (resumed)" } else { "" },
            &baseline_hash[..12.min(baseline_hash.len())]
        ),
        RunEvent::Mined { files, skipped, failures, clusters, cases_written } => format!(
            "{} {files} trace files ({skipped} unchanged) · {failures} failures in {clusters} clusters · {cases_written} new cases",
            paint(Style::Cyan, "mined")
        ),
        RunEvent::Target { iteration, cluster, label, failures, share } => format!(
            "\n{} {} {} — {failures} failures ({:.0}%)\n  {}",
            paint(Style::Bold, &format!("▸ iteration {iteration}")),
            paint(Style::Dim, "target"),
            paint(Style::Bold, cluster),
            share * 100.0,
            paint(Style::Dim, &clip(label, 100))
        ),
        RunEvent::Screening { candidates, cases } => {
            format!("  screening {candidates} knob changes on {cases} target cases")
        }
        RunEvent::NoCandidate { cluster } => {
            format!("  {} no usable candidate for {cluster}; moving on", paint(Style::Yellow, "–"))
        }
        RunEvent::Gated { description, report } => {
            let mark = if report.passed() { paint(Style::Green, "✔ pass") } else { paint(Style::Red, "✘ fail") };
            let target = report
                .decision
                .as_ref()
                .and_then(|d| d.target.as_ref())
                .map(|t| format!("target {} (p {})", super::gate::flip(&t.paired), fmt_p(t.paired.p_value)))
                .unwrap_or_default();
            let suite = report.decision.as_ref().map(|d| format!("suite {} cases", d.suite.cases)).unwrap_or_default();
            let why = if report.passed() {
                String::new()
            } else {
                format!("\n      {}", paint(Style::Dim, &clip(&report.reason, 140)))
            };
            format!(
                "  {mark} {} [{}] {target} · {suite} · {} trials{why}",
                paint(Style::Bold, description),
                report.rule,
                report.trials.baseline + report.trials.candidate
            )
        }
        RunEvent::Unusable { provider, why } => {
            format!("  {} {provider} answer not usable: {}", paint(Style::Yellow, "–"), clip(why, 160))
        }
        RunEvent::Accepted { iteration, patch, description } => {
            format!("  {} {description} → {}", paint(Style::Green, &format!("accepted #{iteration}")), patch.display())
        }
        RunEvent::ShardTakenOver { partition, why } => {
            format!("  {} shard {partition} runs here: {why}", paint(Style::Yellow, "–"))
        }
        RunEvent::Promoted { cases, quarantined } => {
            if cases.is_empty() && quarantined.is_empty() {
                return None;
            }
            let mut s = format!("  suite: {} case(s) promoted", cases.len());
            if !quarantined.is_empty() {
                let _ = write!(s, ", {} quarantined (flaky): {}", quarantined.len(), quarantined.join(", "));
            }
            s
        }
        RunEvent::Stopped { why } => format!("\n{} {why}", paint(Style::Dim, "stopped:")),
    })
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 { format!("{p:.1e}") } else { format!("{p:.3}") }
}

pub fn terminal(out: &Output, s: &RunSummary) -> String {
    let mut t = String::new();
    let fixed = if s.clusters_fixed.is_empty() { "none".to_string() } else { s.clusters_fixed.join(", ") };
    let _ = writeln!(
        t,
        "\n{} {} accepted patch(es) · clusters fixed: {fixed}",
        out.paint(Style::Bold, "summary:"),
        out.paint(if s.accepted > 0 { Style::Green } else { Style::Yellow }, &s.accepted.to_string())
    );
    let _ = writeln!(
        t,
        "  {} iterations · {} trials ({} cached) · ${:.4}{} · {:.1}s",
        s.iterations.len(),
        s.trials,
        s.cached_trials,
        // Costs are never negative; this also keeps a -0.0 sum from printing as "$-0.0000".
        s.cost_usd.max(0.0),
        s.cost_per_fix_usd.map(|c| format!(" (${:.4} per fix)", c.max(0.0))).unwrap_or_default(),
        s.wall_ms as f64 / 1000.0
    );
    for it in &s.iterations {
        if let (Some(d), Some(p)) = (&it.accepted, &it.patch) {
            let _ = writeln!(t, "  #{} {}: {d}\n     patch {p}", it.iteration, it.cluster);
            if let Some(e) = &it.evidence {
                let _ = writeln!(t, "     evidence {e}");
            }
        }
    }
    if s.applied_to_tree {
        let _ = writeln!(
            t,
            "  applied to your tree{}",
            s.branch.as_ref().map(|b| format!(" and committed on branch `{b}`")).unwrap_or_default()
        );
    } else if s.accepted > 0 {
        let _ = writeln!(
            t,
            "  {}",
            out.paint(
                Style::Dim,
                &format!("review {}/accepted.patch; `git apply` it, or rerun with --apply / --branch NAME", s.run_dir)
            )
        );
    }
    t
}

pub fn markdown(s: &RunSummary) -> String {
    use super::neutral::{md_code, md_text};
    let mut md = String::new();
    let _ = writeln!(md, "# autoharness run {} on {}\n", md_code(&s.run_id), md_code(&s.harness));
    let _ = writeln!(
        md,
        "{} accepted patch(es); clusters fixed: {}. {} trials ({} cached), ${:.4}{}, {:.1}s. Stopped: {}.\n",
        s.accepted,
        if s.clusters_fixed.is_empty() { "none".into() } else { md_text(&s.clusters_fixed.join(", ")) },
        s.trials,
        s.cached_trials,
        // Costs are never negative; this also keeps a -0.0 sum from printing as "$-0.0000".
        s.cost_usd.max(0.0),
        s.cost_per_fix_usd.map(|c| format!(" (${c:.4} per accepted fix)")).unwrap_or_default(),
        s.wall_ms as f64 / 1000.0,
        md_text(&s.stopped_because)
    );
    md.push_str(
        "In a gate, a target case's candidate trial counts as fixed when the cluster's own failure is \
         gone, whatever else fails; \"full pass\" counts trials that passed every check. Each accepted \
         patch's gate report (`accepted-N.md`, `.html`) shows per case the input, the failing check, \
         the candidate's output and links to every trial's files.\n\n",
    );
    for it in &s.iterations {
        let _ = writeln!(md, "## Iteration {}: {}\n\n{}\n", it.iteration, md_code(&it.cluster), md_text(&it.label));
        if it.candidates.is_empty() {
            md.push_str("No candidate improved the target cases in screening.\n\n");
            continue;
        }
        md.push_str("| candidate | verdict | rule | trials | reason |\n|---|---|---|---|---|\n");
        for c in &it.candidates {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                md_text(&c.description),
                md_text(&c.verdict),
                md_text(&c.rule),
                c.trials,
                md_text(&clip(&c.reason, 160))
            );
        }
        if let Some(a) = &it.accepted {
            let _ = writeln!(
                md,
                "\nAccepted: **{}** ({}); evidence in {}. Promoted: {}.\n",
                md_text(a),
                md_text(it.patch.as_deref().unwrap_or("")),
                md_code(it.evidence.as_deref().unwrap_or("")),
                if it.promoted.is_empty() { "none".into() } else { md_text(&it.promoted.join(", ")) }
            );
        } else {
            md.push('\n');
        }
    }
    md
}

/// The renderers a run writes its evidence files with.
pub struct Renderers;

impl crate::flow::run::Evidence for Renderers {
    fn gate_markdown(&self, report: &crate::gate::session::GateReport, file: &std::path::Path) -> String {
        super::gate::markdown(&super::gate::for_file(report, file))
    }

    fn gate_html(&self, report: &crate::gate::session::GateReport, file: &std::path::Path) -> String {
        super::gate::html(&super::gate::for_file(report, file))
    }

    fn summary_markdown(&self, summary: &RunSummary) -> String {
        markdown(summary)
    }
}

/// What a follower of a partitioned run did (`run --partition K/N`, K > 1).
pub fn follower(out: &Output, s: &crate::flow::partitioned::FollowSummary) -> String {
    let c = out.color_stdout;
    let mut text = format!(
        "{} shard {} of run {} · {} gate(s) · {} trials · {:.1}s\n",
        super::output::paint(c, Style::Bold, "autoharness"),
        s.partition,
        s.run_id,
        s.gates.len(),
        s.trials,
        s.wall_ms as f64 / 1000.0
    );
    for g in &s.gates {
        let _ = writeln!(
            text,
            "  candidate {} · {} case(s) · {} trials",
            &g.candidate_hash[..12.min(g.candidate_hash.len())],
            g.cases.len(),
            g.trials.baseline + g.trials.candidate
        );
    }
    text
}
