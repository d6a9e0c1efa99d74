//! Rendering a gate: the terminal summary, Markdown fit for a PR comment, JUnit XML (one
//! testcase per case) and a self-contained HTML page. `--json` is the `GateReport` itself
//! (`autoharness.gate/v1`, docs/json.md).

use std::fmt::Write as _;

use super::junit::{JunitCase, esc, render};
use super::output::{Output, Style};
use super::table as new_table;
use crate::gate::engine::{CaseOutcome, CaseVerdict, Decision, PairedStats, Role, Start};
use crate::gate::session::{CaseRow, GateReport};
use crate::trace::json::clip;

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Suite => "suite",
        Role::Target => "target",
        Role::Holdout => "holdout",
    }
}

fn outcome_name(o: CaseOutcome) -> &'static str {
    match o {
        CaseOutcome::Regressed => "regressed",
        CaseOutcome::Improved => "improved",
        CaseOutcome::Unchanged => "unchanged",
        CaseOutcome::Uncertain => "uncertain",
    }
}

fn verdict_of<'a>(r: &'a GateReport, id: &str) -> Option<&'a CaseVerdict> {
    r.decision.as_ref()?.cases.iter().find(|c| c.id == id)
}

fn p(x: Option<f64>) -> String {
    match x {
        Some(v) if v < 0.0001 => "<0.0001".into(),
        Some(v) => format!("{v:.4}"),
        None => "-".into(),
    }
}

/// Passes on each arm, as `6/12 → 12/12`.
pub fn flip(s: &PairedStats) -> String {
    format!("{}/{} → {}/{}", s.baseline_passes, s.baseline_n, s.candidate_passes, s.candidate_n)
}

/// What the counts mean, for every report: a reviewer must not read "fixed" as "passes".
pub const COUNTS_LEGEND: &str = "Counts are trials that passed, baseline → candidate. For target cases a \
candidate trial counts as fixed when the cluster's own failure is gone, even if another check fails; \
\"full pass\" counts trials that passed every check. Suite and holdout cases count full passes only.";

/// Rows worth explaining: a candidate trial failed.
fn with_failure(r: &GateReport) -> Vec<&CaseRow> {
    ordered(r).into_iter().filter(|c| c.evidence.failing_check.is_some()).collect()
}

/// Bar color by pass rate: never green for a low rate.
fn rate_color(passes: u32, n: u32) -> &'static str {
    let rate = if n == 0 { 0.0 } else { passes as f64 / n as f64 };
    if n == 0 {
        "#8c959f"
    } else if rate >= 0.8 {
        "#1a7f37"
    } else if rate >= 0.5 {
        "#bf8700"
    } else {
        "#cf222e"
    }
}

fn short(h: &str) -> &str {
    &h[..12.min(h.len())]
}

/// Rows in the order a reader wants: what decided first (regressions, then target, holdout).
fn ordered(r: &GateReport) -> Vec<&CaseRow> {
    let rank = |c: &CaseRow| {
        let o = verdict_of(r, &c.id).map(|v| v.outcome);
        let role = match c.role {
            Role::Suite => 1,
            Role::Target => 2,
            Role::Holdout => 3,
        };
        (if o == Some(CaseOutcome::Regressed) { 0 } else { role }, c.id.clone())
    };
    let mut rows: Vec<&CaseRow> = r.cases.iter().collect();
    rows.sort_by_key(|c| rank(c));
    rows
}

/// A shard's few lines: what it ran, and the merge that decides.
pub fn shard(out: &Output, r: &crate::gate::merge::ShardReport) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "gate {} shard {}: candidate {} vs baseline {}",
        out.paint(Style::Bold, &r.harness),
        r.partition,
        short(&r.candidate_hash),
        short(&r.baseline_hash)
    );
    if let Some(d) = &r.decided_before_trials {
        let _ = writeln!(t, "  decided before any trial ({d}); the merge decides the same");
    }
    let _ = writeln!(
        t,
        "  {} case(s): {} baseline and {} candidate trial(s), {} cached, in {:.1}s",
        r.cases.len(),
        r.trials.baseline,
        r.trials.candidate,
        r.trials.cached,
        r.wall_ms as f64 / 1000.0
    );
    let _ = writeln!(
        t,
        "  {}",
        out.paint(Style::Dim, "recorded; decide with `autoharness gate PATCH --merge <every shard's store>`")
    );
    t
}

pub fn terminal(out: &Output, r: &GateReport) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "gate {}: candidate {} vs baseline {} ({})",
        out.paint(Style::Bold, &r.harness),
        short(&r.candidate_hash),
        short(&r.baseline_hash),
        r.files.join(", ")
    );
    for a in r.applied.iter().filter(|a| a.contains("offset") || a.contains("whitespace")) {
        let _ = writeln!(t, "  {}", out.paint(Style::Dim, a));
    }
    if let Some(n) = &r.note {
        let _ = writeln!(t, "  {}", out.paint(Style::Dim, n));
    }
    if let Some(line) = r.decision.as_ref().and_then(allocation) {
        let _ = writeln!(t, "  {}", out.paint(Style::Dim, &format!("sequential: {line}")));
    }
    if !r.cases.is_empty() {
        let mut table =
            new_table(&["ROLE", "CASE", "CLUSTER", "BASELINE → CANDIDATE", "P", "OUTCOME", "WHY"], out.color_stdout);
        let rows = ordered(r);
        let shown = rows.len().min(30);
        for c in &rows[..shown] {
            let v = verdict_of(r, &c.id);
            let outcome = v.map(|v| outcome_name(v.outcome)).unwrap_or("-");
            let painted = match outcome {
                "regressed" => out.paint(Style::Red, outcome),
                "improved" => out.paint(Style::Green, outcome),
                "uncertain" => out.paint(Style::Yellow, outcome),
                o => o.to_string(),
            };
            table.add_row(vec![
                role_name(c.role).to_string(),
                c.id.clone(),
                c.cluster.clone(),
                c.flip.clone(),
                p(v.and_then(|v| v.p_value)),
                painted,
                c.candidate_failure.as_deref().map(|s| super::neutral::one_line(&clip(s, 60))).unwrap_or_default(),
            ]);
        }
        let _ = writeln!(t, "\n{table}");
        if rows.len() > shown {
            let _ = writeln!(t, "  … {} more cases (--json, --markdown or --html list all)", rows.len() - shown);
        }
        let _ = writeln!(t, "  {}", out.paint(Style::Dim, COUNTS_LEGEND));
        let failing = with_failure(r);
        for c in failing.iter().take(5) {
            terminal_evidence(&mut t, out, c);
        }
        if failing.len() > 5 {
            let _ = writeln!(t, "  … evidence of {} more cases in --markdown, --html or --json", failing.len() - 5);
        }
    }
    if let Some(iso) = &r.isolation {
        let _ = writeln!(t, "isolation: {}", super::neutral::one_line(iso));
    }
    if let Some(d) = &r.decision {
        if let Some(tg) = &d.target {
            let _ = writeln!(
                t,
                "\ntarget: {} ({:+.2}, need ≥ {:.2}), {} flips to pass vs {} to fail, sign test p = {}",
                flip(&tg.paired),
                tg.paired.effect,
                tg.min_effect,
                tg.paired.flips_to_pass,
                tg.paired.flips_to_fail,
                p(Some(tg.paired.p_value))
            );
        }
        if let Some(h) = &d.holdout {
            let _ = writeln!(
                t,
                "holdout: {} ({:+.2}), drop test p = {}",
                flip(&h.paired),
                h.paired.effect,
                p(Some(h.paired.p_value))
            );
        }
        let _ = writeln!(
            t,
            "suite: {} cases, {} testable, per-case α = {}",
            d.suite.cases,
            d.suite.testable_hypotheses,
            p(Some(d.suite.per_case_alpha))
        );
    }
    for l in &r.leaks {
        let _ = writeln!(t, "{} {}: {}", out.paint(Style::Red, "leak"), l.case, super::neutral::one_line(&l.what));
    }
    let c = &r.cost;
    let cost = match (c.baseline_mean_usd, c.candidate_mean_usd) {
        (Some(b), Some(cand)) => format!(" · cost/trial ${b:.5} → ${cand:.5}"),
        _ => String::new(),
    };
    let _ = writeln!(
        t,
        "trials: {} baseline + {} candidate ({}) in {} rounds{} · spent ${:.4} · {:.1}s",
        r.trials.baseline,
        r.trials.candidate,
        cached_note(r),
        r.trials.rounds,
        cost,
        c.total_usd,
        r.wall_ms as f64 / 1000.0
    );
    let banner = if r.passed() {
        out.paint(Style::Green, &out.paint(Style::Bold, "✔ PASS"))
    } else {
        out.paint(Style::Red, &out.paint(Style::Bold, "✘ FAIL"))
    };
    let reason = r.reason.trim_start_matches("PASS: ").trim_start_matches("FAIL: ");
    let _ = writeln!(t, "\n{banner} [{}] {}", r.rule, super::neutral::one_line(reason));
    t
}

fn terminal_evidence(t: &mut String, out: &Output, c: &CaseRow) {
    use super::neutral::one_line;
    let e = &c.evidence;
    let _ = writeln!(t, "\n  {} {} ({})", out.paint(Style::Bold, "case"), one_line(&c.id), role_name(c.role));
    let _ = writeln!(t, "    input:  {}", one_line(&clip(&e.input, 120)));
    if let Some(check) = &e.failing_check {
        let _ = writeln!(t, "    failed: {}", out.paint(Style::Red, &one_line(&clip(check, 160))));
    }
    if let Some(o) = &e.candidate_output {
        let _ = writeln!(t, "    output: {}", one_line(&clip(o, 160)));
    }
    if let Some(trial) = e.trials.iter().find(|tr| tr.arm == "candidate" && !tr.passed && !tr.files.is_empty()) {
        let _ = writeln!(t, "    files:  {}", one_line(&trial.files.join("  ")));
    }
}

pub fn markdown(r: &GateReport) -> String {
    use super::neutral::{md_code, md_text};
    let mut md = String::new();
    let icon = if r.passed() { "✅" } else { "❌" };
    let reason = r.reason.trim_start_matches("PASS: ").trim_start_matches("FAIL: ");
    let _ = writeln!(
        md,
        "### {icon} autoharness gate: **{}** ({})\n",
        md_text(&r.verdict.as_str().to_uppercase()),
        md_code(&r.rule)
    );
    let _ = writeln!(md, "{}\n", md_text(reason));
    let _ = writeln!(
        md,
        "Harness {}: baseline {} → candidate {}; files: {}\n",
        md_code(&r.harness),
        md_code(short(&r.baseline_hash)),
        md_code(short(&r.candidate_hash)),
        r.files.iter().map(|f| md_code(f)).collect::<Vec<_>>().join(", ")
    );
    if let Some(d) = &r.decision {
        if let Some(tg) = &d.target {
            let _ = writeln!(
                md,
                "- **Target**: {} ({:+.2}, need ≥ {:.2}), sign test p = {}",
                flip(&tg.paired),
                tg.paired.effect,
                tg.min_effect,
                p(Some(tg.paired.p_value))
            );
        }
        if let Some(h) = &d.holdout {
            let _ = writeln!(
                md,
                "- **Holdout** (veto only): {}, drop test p = {}",
                flip(&h.paired),
                p(Some(h.paired.p_value))
            );
        }
        let regressed = d.cases.iter().filter(|c| c.outcome == CaseOutcome::Regressed && c.role == Role::Suite).count();
        let _ = writeln!(md, "- **Suite**: {} cases, {regressed} regressed", d.suite.cases);
        if let Some(line) = allocation(d) {
            let _ = writeln!(md, "- **Allocation** (sequential): {}", md_text(&line));
        }
    }
    for l in &r.leaks {
        let _ = writeln!(md, "- **Leak** {}: {}", md_code(&l.case), md_text(&l.what));
    }
    let _ = writeln!(
        md,
        "- **Trials**: {} baseline + {} candidate ({}), {} rounds, ${:.4}, {:.1}s\n",
        r.trials.baseline,
        r.trials.candidate,
        cached_note(r),
        r.trials.rounds,
        r.cost.total_usd,
        r.wall_ms as f64 / 1000.0
    );
    if let Some(iso) = &r.isolation {
        let _ = writeln!(md, "Trials ran isolated: {}.\n", md_text(iso));
    }
    let _ = writeln!(md, "{}\n", md_text(COUNTS_LEGEND));
    let failing = with_failure(r);
    for c in failing.iter().take(20) {
        let e = &c.evidence;
        let _ = writeln!(
            md,
            "<details><summary>{} {} ({}, {}): {}</summary>\n",
            if c.role == Role::Target { "🎯" } else { "✗" },
            md_code(&c.id),
            role_name(c.role),
            md_text(&c.flip),
            md_text(&clip(e.failing_check.as_deref().unwrap_or(""), 100))
        );
        let _ = writeln!(md, "**Input**\n\n{}", super::neutral::md_block(&e.input, "json"));
        if let Some(check) = &e.failing_check {
            let _ = writeln!(md, "**Failing check** (a candidate trial): {}\n", md_code(check));
        }
        if let Some(o) = &e.candidate_output {
            let _ = writeln!(md, "**Candidate output**\n\n{}", super::neutral::md_block(o, "text"));
        }
        markdown_files(&mut md, c);
        md.push_str("</details>\n\n");
    }
    if failing.len() > 20 {
        let _ = writeln!(md, "… evidence of {} more cases in the HTML report and `--json`.\n", failing.len() - 20);
    }
    if !r.patch.is_empty() {
        let _ = writeln!(
            md,
            "<details><summary>The patch</summary>\n\n{}</details>\n",
            super::neutral::md_block(&r.patch, "diff")
        );
    }
    if !r.cases.is_empty() {
        let _ = writeln!(md, "<details><summary>{} cases</summary>\n", r.cases.len());
        md.push_str("| role | case | cluster | baseline → candidate | p | outcome | first candidate failure |\n|---|---|---|---|---|---|---|\n");
        for c in ordered(r) {
            let v = verdict_of(r, &c.id);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} |",
                role_name(c.role),
                md_code(&c.id),
                md_code(&c.cluster),
                md_text(&c.flip),
                p(v.and_then(|v| v.p_value)),
                v.map(outcome_label).unwrap_or("-".into()),
                md_text(&c.candidate_failure.as_deref().map(|s| clip(s, 80)).unwrap_or_default())
            );
        }
        md.push_str("\n</details>\n");
    }
    md
}

/// `12 cached`, or `42 cached, 30 of them the baseline's history` when a sequential gate
/// started from recorded baseline trials.
fn cached_note(r: &GateReport) -> String {
    match r.trials.history {
        0 => format!("{} cached", r.trials.cached),
        h => format!("{} cached, {h} of them the baseline's history", r.trials.cached),
    }
}

/// Why a case got the trials it did, when the gate allocated them sequentially: the outcome
/// and how the case started (and whether a candidate failure escalated it).
fn outcome_label(v: &CaseVerdict) -> String {
    let how = match (v.start, v.escalated) {
        (Start::Both, _) => return outcome_name(v.outcome).to_owned(),
        (_, true) => "escalated: the candidate failed",
        (Start::Screened, false) => "screened: warm stable baseline",
        (Start::CandidateFirst, false) => "candidate first: it never failed, no baseline needed",
    };
    format!("{} ({how}; {} + {} trials)", outcome_name(v.outcome), v.baseline_n, v.candidate_n)
}

/// One line on a sequential gate's allocation: how many cases started each way, how many a
/// candidate failure escalated, and the screened cases' pooled test.
pub fn allocation(d: &Decision) -> Option<String> {
    let count = |s: Start| d.cases.iter().filter(|c| c.start == s).count();
    let (first, screened) = (count(Start::CandidateFirst), count(Start::Screened));
    if first + screened == 0 {
        return None;
    }
    let escalated = d.cases.iter().filter(|c| c.escalated).count();
    let mut line = format!(
        "{first} cases ran the candidate first, {screened} were screened on their warm stable baseline, \
         {escalated} escalated after a candidate failure"
    );
    if let Some(s) = &d.suite.stable {
        line.push_str(&format!(
            "; the {} screened cases together: candidate {}/{} vs baseline {}/{} (trials after those that \
             chose them), Fisher p = {} at α = {}",
            s.cases,
            s.candidate_passes,
            s.candidate_n,
            s.baseline_passes,
            s.baseline_n,
            p(Some(s.p_value)),
            p(Some(s.alpha))
        ));
    }
    Some(line)
}

/// The files of each trial of a case, as relative links (paths under `.autoharness/`).
fn markdown_files(md: &mut String, c: &CaseRow) {
    use super::neutral::md_text;
    let trials: Vec<_> = c.evidence.trials.iter().filter(|t| !t.files.is_empty()).collect();
    if trials.is_empty() {
        return;
    }
    md.push_str("**Trial files**\n\n");
    for t in trials {
        let links: Vec<String> = t
            .files
            .iter()
            .map(|f| {
                let name = f.rsplit('/').next().unwrap_or(f);
                format!("[{}](<{}>)", md_text(name), f.replace(['<', '>', '\n'], ""))
            })
            .collect();
        let _ = writeln!(md, "- {}: {}", trial_label(t), links.join(" · "));
    }
    md.push('\n');
}

fn evidence_text(c: &CaseRow) -> String {
    let e = &c.evidence;
    let mut s = format!("input: {}\n", e.input);
    if let Some(check) = &e.failing_check {
        let _ = writeln!(s, "failing check: {check}");
    }
    if let Some(o) = &e.candidate_output {
        let _ = writeln!(s, "candidate output: {o}");
    }
    for t in e.trials.iter().filter(|t| !t.files.is_empty()) {
        let _ = writeln!(s, "{} seed {}: {}", t.arm, t.seed, t.files.join(" "));
    }
    s
}

pub fn junit(r: &GateReport) -> String {
    let failed_rule = !r.passed();
    let cases: Vec<JunitCase> = r
        .cases
        .iter()
        .map(|c| {
            let v = verdict_of(r, &c.id);
            let regressed = v.is_some_and(|v| v.outcome == CaseOutcome::Regressed && v.role != Role::Target);
            let target_miss = failed_rule && r.rule == "no_improvement" && c.role == Role::Target;
            let failure = (regressed || target_miss).then(|| {
                (
                    format!(
                        "{} {}: {}",
                        role_name(c.role),
                        if regressed { "regressed" } else { "did not improve" },
                        c.flip
                    ),
                    format!("{}\n{}", c.candidate_failure.clone().unwrap_or_default(), evidence_text(c)),
                )
            });
            JunitCase {
                classname: format!("{}.{}", role_name(c.role), c.cluster),
                name: c.id.clone(),
                seconds: 0.0,
                failure,
                out: format!("{}\n{}", c.flip, evidence_text(c)),
            }
        })
        .collect();
    render(&format!("autoharness gate {}", r.harness), &cases)
}

pub fn html(r: &GateReport) -> String {
    let mut h = String::new();
    let color = if r.passed() { "#1a7f37" } else { "#cf222e" };
    let reason = r.reason.trim_start_matches("PASS: ").trim_start_matches("FAIL: ");
    let _ = write!(
        h,
        "<!doctype html><html lang=en><meta charset=utf-8><title>autoharness gate: {verdict}</title>\
         <style>body{{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1f2328}}\
         .v{{background:{color};color:#fff;padding:.6em 1em;border-radius:6px;font-size:1.2em}}\
         table{{border-collapse:collapse;width:100%;margin-top:1em}}td,th{{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}}\
         th{{background:#f6f8fa}}code{{font:12px ui-monospace,monospace}}.regressed{{color:#cf222e;font-weight:600}}.improved{{color:#1a7f37;font-weight:600}}\
         .bar{{display:inline-block;height:8px;background:#8c959f;vertical-align:middle}}\
         pre{{background:#f6f8fa;padding:6px;white-space:pre-wrap;max-height:20em;overflow:auto}}.legend{{color:#57606a}}</style>\
         <div class=v>{verdict_up} · {rule}</div><p>{reason}</p>",
        verdict = esc(r.verdict.as_str()),
        verdict_up = esc(&r.verdict.as_str().to_uppercase()),
        rule = esc(&r.rule),
        reason = esc(reason),
    );
    let _ = write!(
        h,
        "<p>Harness <code>{}</code>: baseline <code>{}</code> → candidate <code>{}</code>. Files: {}.<br>\
         Trials: {} baseline + {} candidate ({} cached) in {} rounds · ${:.4} · {:.1}s.</p>",
        esc(&r.harness),
        esc(short(&r.baseline_hash)),
        esc(short(&r.candidate_hash)),
        r.files.iter().map(|f| format!("<code>{}</code>", esc(f))).collect::<Vec<_>>().join(", "),
        r.trials.baseline,
        r.trials.candidate,
        r.trials.cached,
        r.trials.rounds,
        r.cost.total_usd,
        r.wall_ms as f64 / 1000.0
    );
    for l in &r.leaks {
        let _ = write!(h, "<p class=regressed>leak <code>{}</code>: {}</p>", esc(&l.case), esc(&l.what));
    }
    if let Some(iso) = &r.isolation {
        let _ = write!(h, "<p>Trials ran isolated: {}.</p>", esc(iso));
    }
    let _ = write!(h, "<p class=legend>{}</p>", esc(COUNTS_LEGEND));
    h.push_str("<table><tr><th>role<th>case<th>cluster<th>baseline<th>candidate<th>p<th>outcome<th>first candidate failure</tr>");
    for c in ordered(r) {
        let v = verdict_of(r, &c.id);
        let (bp, bn, cp, cn, wb, wc) = v
            .map(|v| {
                (
                    v.baseline_passes,
                    v.baseline_n,
                    v.candidate_passes,
                    v.candidate_n,
                    v.wilson_baseline,
                    v.wilson_candidate,
                )
            })
            .unwrap_or_default();
        let bar = |p: u32, n: u32, w: (f64, f64)| {
            let rate = if n == 0 { 0.0 } else { p as f64 / n as f64 };
            format!(
                "{p}/{n} <span class=bar style='width:{:.0}px;background:{}' title='95% CI {:.0}–{:.0}%'></span>",
                rate * 60.0,
                rate_color(p, n),
                w.0 * 100.0,
                w.1 * 100.0
            )
        };
        let outcome = v.map(|v| outcome_name(v.outcome)).unwrap_or("-");
        let _ = write!(
            h,
            "<tr><td>{}<td><code>{}</code><td><code>{}</code><td>{}<td>{}<td>{}<td class={outcome}>{outcome}<td>{}</tr>",
            role_name(c.role),
            esc(&c.id),
            esc(&c.cluster),
            bar(bp, bn, wb),
            bar(cp, cn, wc),
            p(v.and_then(|v| v.p_value)),
            esc(&c.candidate_failure.clone().unwrap_or_default())
        );
        html_evidence(&mut h, c);
    }
    h.push_str("</table>");
    if !r.patch.is_empty() {
        let _ = write!(h, "<h3>The patch</h3><pre>{}</pre>", esc(&r.patch));
    }
    if !r.applied.is_empty() {
        let _ = write!(h, "<h3>Patch applied</h3><pre>{}</pre>", esc(&r.applied.join("\n")));
    }
    h.push_str("</html>\n");
    h
}

/// A row under the case's row: input, failing check, output excerpt, links to trial files.
fn html_evidence(h: &mut String, c: &CaseRow) {
    let e = &c.evidence;
    let _ = write!(
        h,
        "<tr class=ev><td><td colspan=7><details><summary>evidence</summary><b>input</b><pre>{}</pre>",
        esc(&e.input)
    );
    if let Some(check) = &e.failing_check {
        let _ = write!(h, "<b>failing check</b> (a candidate trial): <code>{}</code>", esc(check));
    }
    if let Some(o) = &e.candidate_output {
        let _ = write!(h, "<b>candidate output</b><pre>{}</pre>", esc(o));
    }
    let trials: Vec<_> = e.trials.iter().filter(|t| !t.files.is_empty()).collect();
    if !trials.is_empty() {
        h.push_str("<b>trial files</b><ul>");
        for t in trials {
            let links: Vec<String> = t
                .files
                .iter()
                .map(|f| format!("<a href=\"{}\">{}</a>", esc(&href(f)), esc(f.rsplit('/').next().unwrap_or(f))))
                .collect();
            let _ = write!(h, "<li>{}: {}", trial_label(t), links.join(" · "));
        }
        h.push_str("</ul>");
    }
    h.push_str("</details></tr>");
}

/// A relative path as a URL path: every byte outside the unreserved set and `/` escaped,
/// so a path cannot become a `javascript:` or other scheme link.
fn href(path: &str) -> String {
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The report with its trial file paths made relative to the folder of `report_path`, so
/// the links of a report written to a file open from where it lies.
pub fn for_file(r: &GateReport, report_path: &std::path::Path) -> GateReport {
    let mut r = r.clone();
    let Ok(here) = std::env::current_dir() else { return r };
    let dir = std::path::absolute(report_path)
        .ok()
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_else(|| here.clone());
    for c in &mut r.cases {
        for t in &mut c.evidence.trials {
            for f in &mut t.files {
                *f = relative_to(&here.join(&*f), &dir);
            }
        }
    }
    r
}

/// `path` as seen from `dir` (both absolute): `../` for each folder of `dir` past their
/// common part.
fn relative_to(path: &std::path::Path, dir: &std::path::Path) -> String {
    let p: Vec<_> = path.components().collect();
    let d: Vec<_> = dir.components().collect();
    let common = p.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out.display().to_string()
}

/// `candidate seed 3 (failed, cached)`: a trial as the Markdown and HTML evidence name it
/// (our own words only, nothing to escape).
fn trial_label(t: &crate::gate::evidence::TrialFiles) -> String {
    format!(
        "{} seed {} ({}{})",
        t.arm,
        t.seed,
        if t.passed { "passed" } else { "failed" },
        if t.cached { ", cached" } else { "" }
    )
}
