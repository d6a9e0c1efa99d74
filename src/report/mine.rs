//! Rendering mining results: the ranked cluster table, `autoharness.mine/v1` JSON,
//! Markdown, and a self-contained HTML report (one file, no network).

use std::fmt::Write as _;

use serde::Serialize;

use super::output::{Output, Style};
use super::table as new_table;
use crate::evals::case::CaseStatus;
use crate::mine::state::{ClusterKind, ClusterState, OutcomeSource};
use crate::mine::{ClusterView, MineResult, MineSummary};
use crate::store::mine::{StoredCase, StoredCluster, StoredFailure};
use crate::trace::json::clip;

#[derive(Serialize)]
pub struct MineDoc<'a> {
    pub schema: &'static str,
    pub summary: &'a MineSummary,
    pub clusters: &'a [ClusterView],
    pub errors: &'a [String],
}

pub fn json_doc(r: &MineResult) -> MineDoc<'_> {
    MineDoc { schema: crate::schema::MINE, summary: &r.summary, clusters: &r.clusters, errors: &r.errors }
}

fn day(ts: &Option<String>) -> String {
    ts.as_deref().map(|s| s.chars().take(10).collect()).unwrap_or_else(|| "-".into())
}

pub fn table(out: &Output, r: &MineResult) -> String {
    let s = &r.summary;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} files ({} unchanged, skipped) · {} traces: {} failed, {} passed, {} unknown · {} new failures",
        s.files,
        s.skipped_unchanged + s.unchanged_content,
        s.counts.traces,
        out.paint(Style::Red, &s.counts.failed.to_string()),
        out.paint(Style::Green, &s.counts.passed.to_string()),
        out.paint(Style::Yellow, &s.counts.unknown.to_string()),
        s.new_failures
    );
    if !s.redacted.is_empty() {
        let _ = writeln!(text, "redacted before storing: {}", s.redacted.describe());
    }
    if r.clusters.is_empty() {
        let _ = writeln!(
            text,
            "\nno failures found{}",
            if s.counts.unknown > 0 {
                " (traces with an unknown outcome are not failures; --assume-failed counts them)"
            } else {
                ""
            }
        );
        return text;
    }
    let mut t = new_table(
        &["#", "CLUSTER", "KIND", "COUNT", "SHARE", "FIRST", "LAST", "CASES", "LABEL", "EXAMPLE"],
        out.color_stdout,
    );
    for (i, c) in r.clusters.iter().enumerate() {
        let kind =
            if c.kind == ClusterKind::Infra { out.paint(Style::Magenta, "infra") } else { "capability".to_string() };
        t.add_row(vec![
            (i + 1).to_string(),
            out.paint(Style::Bold, &c.id),
            kind,
            c.count.to_string(),
            format!("{:.0}%", c.share * 100.0),
            day(&c.first_seen),
            day(&c.last_seen),
            c.cases.len().to_string(),
            clip(c.summary.as_deref().unwrap_or(&c.label), 70),
            clip(&c.example_trace, 40),
        ]);
    }
    let _ = writeln!(text, "\n{t}");
    let _ = writeln!(
        text,
        "\n{} clusters ({} new) · {} cases written, {} unchanged, {} duplicates merged{}",
        s.clusters_total,
        s.new_clusters,
        s.cases_written,
        s.cases_unchanged,
        s.duplicates_merged.len(),
        if s.cases_kept_edited.is_empty() {
            String::new()
        } else {
            format!(", {} edited by hand and kept", s.cases_kept_edited.len())
        }
    );
    if s.summaries_written > 0 {
        let _ =
            writeln!(text, "{} cluster summaries written by the LLM (${:.4})", s.summaries_written, s.summary_cost_usd);
    }
    if let Some(j) = &s.judge {
        let _ = writeln!(
            text,
            "judge ({}, {}): {} failure(s) to judge, {} accepted, {} rejected, {} unjudged; cache hits {} ({:.0}%), {} request(s), {} tokens, ${:.4}",
            j.model,
            j.taxonomy,
            j.failures,
            j.accepted,
            j.rejected,
            j.unjudged,
            j.cache_hits,
            j.cache_hit_rate * 100.0,
            j.requests,
            j.tokens,
            j.cost_usd
        );
        if let Some(r) = &j.rubric {
            let _ = writeln!(
                text,
                "rubric {}: {} trace(s) of unknown outcome, {} failed it (now failures, marked judged), {} met it, {} rejected, {} unjudged",
                r.version, r.traces, r.failed, r.met, r.rejected, r.unjudged
            );
        }
    }
    let _ = writeln!(
        text,
        "{}",
        out.paint(Style::Dim, "next: `autoharness clusters <id>` for evidence, `autoharness eval` to run the cases")
    );
    text
}

pub fn markdown(r: &MineResult) -> String {
    use super::neutral::{md_code, md_text};
    let s = &r.summary;
    let mut md = String::from("# autoharness mine\n\n");
    let _ = writeln!(
        md,
        "{} files, {} traces: **{} failed**, {} passed, {} unknown. {} clusters, {} cases written.\n",
        s.files, s.counts.traces, s.counts.failed, s.counts.passed, s.counts.unknown, s.clusters_total, s.cases_written
    );
    md.push_str("| # | cluster | kind | count | share | first seen | last seen | cases | label |\n|---|---|---|---|---|---|---|---|---|\n");
    for (i, c) in r.clusters.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0}% | {} | {} | {} | {} |",
            i + 1,
            md_code(&c.id),
            md_text(c.kind.as_str()),
            c.count,
            c.share * 100.0,
            day(&c.first_seen),
            day(&c.last_seen),
            c.cases.len(),
            md_text(c.summary.as_deref().unwrap_or(&c.label))
        );
    }
    md
}

/// Every day from the first failure to the last (gaps included), capped at a year.
fn all_days(r: &MineResult) -> Vec<String> {
    let seen: Vec<&String> = r.clusters.iter().flat_map(|c| c.per_day.keys()).collect();
    let (Some(first), Some(last)) = (seen.iter().min(), seen.iter().max()) else { return vec![] };
    let parse = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
    let (Some(mut d), Some(end)) = (parse(first), parse(last)) else { return vec![] };
    let mut out = Vec::new();
    while d <= end && out.len() < 366 {
        out.push(d.format("%Y-%m-%d").to_string());
        d = d.succ_opt().unwrap_or(end);
        if d == end && out.last().map(String::as_str) == Some(&d.format("%Y-%m-%d").to_string()) {
            break;
        }
    }
    out
}

fn esc(s: &str) -> String {
    super::neutral::html(s)
}

/// Counts per day as a tiny inline SVG bar chart over the report's whole date range.
fn sparkline(c: &ClusterView, days: &[String]) -> String {
    if days.len() < 2 {
        return String::new();
    }
    let max = c.per_day.values().copied().max().unwrap_or(1).max(1);
    let w = (600 / days.len()).clamp(2, 12);
    let mut svg =
        format!("<svg width=\"{}\" height=\"24\" role=\"img\" aria-label=\"failures per day\">", days.len() * (w + 1));
    for (i, d) in days.iter().enumerate() {
        let n = c.per_day.get(d).copied().unwrap_or(0);
        let h = (n * 22 / max).max(usize::from(n > 0));
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{w}\" height=\"{h}\" fill=\"#c0392b\"><title>{d}: {n}</title></rect>",
            i * (w + 1),
            24 - h
        );
    }
    svg.push_str("</svg>");
    svg
}

pub fn html(r: &MineResult) -> String {
    let s = &r.summary;
    let days = all_days(r);
    let mut h = String::new();
    h.push_str("<!doctype html><html><head><meta charset=\"utf-8\"><title>autoharness mine</title><style>");
    h.push_str(
        "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}h1{font-size:1.5em}",
    );
    h.push_str("table{border-collapse:collapse;width:100%}td,th{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}");
    h.push_str(".infra{color:#8e44ad}.bar{background:#c0392b;height:.7em;display:inline-block}code,pre{font-family:ui-monospace,monospace;font-size:12px}");
    h.push_str("pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;max-height:16em;overflow:auto}details{margin:.4em 0}.muted{color:#777}");
    h.push_str("</style></head><body>");
    let _ = write!(
        h,
        "<h1>Failure clusters</h1><p>{} files · {} traces: <b>{} failed</b>, {} passed, {} unknown · {} clusters · {} cases written</p>",
        s.files, s.counts.traces, s.counts.failed, s.counts.passed, s.counts.unknown, s.clusters_total, s.cases_written
    );
    h.push_str("<table><tr><th>#</th><th>cluster</th><th>kind</th><th>count</th><th>share</th><th>first seen</th><th>last seen</th><th>label</th></tr>");
    for (i, c) in r.clusters.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td><a href=\"#{id}\"><code>{id}</code></a></td><td class=\"{kind}\">{kind}</td><td>{n}</td><td><span class=\"bar\" style=\"width:{w}px\"></span> {share:.0}%</td><td>{first}</td><td>{last}</td><td>{label}</td></tr>",
            i + 1,
            id = esc(&c.id),
            kind = esc(c.kind.as_str()),
            n = c.count,
            w = (c.share * 120.0).round() as u32,
            share = c.share * 100.0,
            first = day(&c.first_seen),
            last = day(&c.last_seen),
            label = esc(&c.label)
        );
    }
    h.push_str("</table>");
    for c in &r.clusters {
        let _ = write!(h, "<h2 id=\"{id}\"><code>{id}</code> {label}</h2>", id = esc(&c.id), label = esc(&c.label));
        if let Some(summary) = &c.summary {
            let _ = write!(h, "<p><b>root cause</b> (LLM summary): {}</p>", esc(summary));
        }
        let _ = write!(h, "<p class=\"muted\">signature: <code>{}</code></p>", esc(&c.signature));
        h.push_str(&sparkline(c, &days));
        let _ = write!(
            h,
            "<p>{} failures · example trace <code id=\"{}\">{}</code> in <code>{}</code></p>",
            c.count,
            esc(&format!("t-{}", c.example_trace)),
            esc(&c.example_trace),
            esc(&c.example_file)
        );
        if !c.cases.is_empty() {
            h.push_str("<p>cases: ");
            for case in &c.cases {
                let _ = write!(h, "<code id=\"{0}\">{0}</code> ", esc(case));
            }
            h.push_str("</p>");
        }
        h.push_str("<details><summary>members</summary><ul>");
        for m in c.members.iter().take(200) {
            let step = m.step.as_deref().map(|st| format!(" · step <code>{}</code>", esc(st))).unwrap_or_default();
            let _ = write!(h, "<li><code>{}</code>{step}</li>", esc(&m.id));
        }
        h.push_str("</ul></details>");
    }
    h.push_str("</body></html>\n");
    h
}

#[derive(Serialize)]
struct ClusterRow<'a> {
    id: &'a str,
    label: &'a str,
    kind: ClusterKind,
    state: ClusterState,
    outcome_source: OutcomeSource,
    members: usize,
    signature: &'a str,
}

pub fn clusters_doc<'a>(clusters: &'a [StoredCluster], failures: &[StoredFailure]) -> serde_json::Value {
    let rows: Vec<ClusterRow<'a>> = clusters
        .iter()
        .map(|c| ClusterRow {
            id: &c.cluster.id,
            label: &c.label,
            kind: c.kind,
            state: c.state,
            outcome_source: OutcomeSource::of_signature(&c.cluster.signature),
            members: failures.iter().filter(|f| f.cluster_id.as_deref() == Some(&c.cluster.id)).count(),
            signature: &c.cluster.signature,
        })
        .collect();
    serde_json::json!({"schema": crate::schema::CLUSTERS, "clusters": rows})
}

pub fn clusters_table(out: &Output, clusters: &[StoredCluster], failures: &[StoredFailure]) -> String {
    if clusters.is_empty() {
        return "no clusters yet: run `autoharness mine TRACES...` first\n".into();
    }
    let mut rows: Vec<(usize, &StoredCluster)> = clusters
        .iter()
        .map(|c| (failures.iter().filter(|f| f.cluster_id.as_deref() == Some(&c.cluster.id)).count(), c))
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cluster.id.cmp(&b.1.cluster.id)));
    let mut t = new_table(&["CLUSTER", "KIND", "STATE", "MEMBERS", "LABEL"], out.color_stdout);
    for (n, c) in rows {
        t.add_row(vec![
            c.cluster.id.clone(),
            c.kind.to_string(),
            c.state.to_string(),
            n.to_string(),
            clip(&c.label, 90),
        ]);
    }
    format!("{t}\n")
}

pub fn cluster_detail_doc(c: &StoredCluster, members: &[&StoredFailure], cases: &[StoredCase]) -> serde_json::Value {
    let members: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            serde_json::json!({
                "file": m.path, "trace_id": m.failure.trace_id, "step": m.failure.step_id,
                "signature": m.failure.signature.canonical(), "message": m.failure.message,
                "excerpt": m.failure.excerpt, "seen_at": m.seen_at,
            })
        })
        .collect();
    serde_json::json!({
        "schema": crate::schema::CLUSTER,
        "id": c.cluster.id, "label": c.label, "summary": c.summary, "kind": c.kind, "state": c.state,
        "outcome_source": OutcomeSource::of_signature(&c.cluster.signature), "signature": c.cluster.signature, "signatures": c.cluster.signatures,
        "top_terms": c.cluster.top_terms(10), "members": members, "cases": cases,
    })
}

pub fn cluster_detail(out: &Output, c: &StoredCluster, members: &[&StoredFailure], cases: &[StoredCase]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} {}", out.paint(Style::Bold, &c.cluster.id), c.label);
    if let Some(summary) = &c.summary {
        let _ = writeln!(s, "  root cause {summary}");
    }
    let _ = writeln!(s, "  kind       {}  state {}", c.kind, c.state);
    let _ = writeln!(s, "  signature  {}", c.cluster.signature);
    if c.cluster.signatures.len() > 1 {
        let _ = writeln!(s, "  also       {} other signature(s) joined by similarity", c.cluster.signatures.len() - 1);
    }
    let _ = writeln!(s, "  terms      {}", c.cluster.top_terms(8).join(", "));
    let _ = writeln!(s, "  members    {}", members.len());
    for m in members.iter().take(5) {
        let _ = writeln!(s, "\n  {} {}", out.paint(Style::Cyan, &m.failure.trace_id), out.paint(Style::Dim, &m.path));
        if let Some(step) = &m.failure.step_id {
            let _ = writeln!(s, "    decisive step {step}");
        }
        for line in m.failure.excerpt.lines().take(8) {
            let _ = writeln!(s, "    │ {}", clip(line, 140));
        }
    }
    if members.len() > 5 {
        let _ = writeln!(s, "\n  … {} more (--json lists all)", members.len() - 5);
    }
    if !cases.is_empty() {
        let _ = writeln!(s, "\n  cases");
        for case in cases {
            let _ = writeln!(s, "    {} {} {} {}", case.id, case.split, case.status, out.paint(Style::Dim, &case.path));
        }
    }
    s
}

/// One case with its history (status changes) and its trials so far.
#[derive(Debug, Serialize)]
pub struct CaseRow {
    #[serde(flatten)]
    pub case: StoredCase,
    /// (status, reason, at), oldest first.
    pub history: Vec<(CaseStatus, String, String)>,
    pub trials_passed: usize,
    pub trials_total: usize,
}

pub fn cases_table(out: &Output, cases: &[CaseRow], invalid: &[crate::evals::case::CaseProblem]) -> String {
    let mut bad = String::new();
    if !invalid.is_empty() {
        bad = format!(
            "\n{} {} invalid case file(s) (eval, gate and run refuse to start until they are fixed; see docs/cases.md):\n",
            out.paint(Style::Red, "✘"),
            invalid.len()
        );
        for p in invalid {
            bad.push_str(&format!("  {}\n", p));
        }
    }
    if cases.is_empty() {
        return format!("no cases yet: `autoharness mine TRACES...` writes them\n{bad}");
    }
    let mut t = new_table(&["CASE", "CLUSTER", "SPLIT", "STATUS", "TRIALS", "LAST CHANGE", "FILE"], out.color_stdout);
    for c in cases {
        let status = match c.case.status {
            CaseStatus::Active => out.paint(Style::Green, "active"),
            CaseStatus::Quarantined => out.paint(Style::Yellow, "quarantined"),
            s => s.to_string(),
        };
        t.add_row(vec![
            c.case.id.clone(),
            c.case.cluster_id.clone(),
            c.case.split.to_string(),
            status,
            if c.trials_total == 0 { "-".into() } else { format!("{}/{}", c.trials_passed, c.trials_total) },
            c.history
                .last()
                .map(|(s, r, at)| format!("{} {s}: {}", day(&Some(at.clone())), clip(r, 50)))
                .unwrap_or_default(),
            c.case.path.clone(),
        ]);
    }
    format!("{t}\n{bad}")
}
