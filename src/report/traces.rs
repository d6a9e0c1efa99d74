//! Rendering `traces ls` and `traces show`, for people (tables, trees) and for machines
//! (`autoharness.traces-ls/v1`, `autoharness.trace-show/v1`, documented in docs/json.md).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::output::{Output, Style};
use super::{human_bytes, table, thousands};
use crate::trace::FileReport;
use crate::trace::json::{clip, format_time};
use crate::trace::model::{OutcomeStatus, Step, StepStatus, Trace};
use crate::trace::scan::{OutcomeCounts, ScannedFile};

#[derive(Debug, Serialize)]
pub struct LsDoc<'a> {
    pub schema: &'static str,
    pub files: Vec<LsFile<'a>>,
    pub totals: LsTotals,
}

#[derive(Debug, Serialize)]
pub struct LsFile<'a> {
    pub path: &'a str,
    pub size: u64,
    pub hash: &'a str,
    /// The format name, or null when the file is not a trace.
    pub format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<&'static str>,
    /// Why this format, or why it is not a trace.
    pub reason: &'a str,
    /// A fatal problem reading the file (traces read before it still count).
    pub error: Option<&'a str>,
    pub warnings: Vec<String>,
    #[serde(flatten)]
    pub counts: OutcomeCounts,
}

#[derive(Debug, Default, Serialize)]
pub struct LsTotals {
    pub files: usize,
    pub trace_files: usize,
    pub not_traces: usize,
    pub errors: usize,
    #[serde(flatten)]
    pub counts: OutcomeCounts,
}

pub fn ls_doc<T>(files: &[ScannedFile<T>]) -> LsDoc<'_> {
    let mut totals = LsTotals::default();
    let mut rows = Vec::with_capacity(files.len());
    for f in files {
        let r = &f.report;
        totals.files += 1;
        if r.format.is_some() {
            totals.trace_files += 1;
        } else {
            totals.not_traces += 1;
        }
        if r.error.is_some() {
            totals.errors += 1;
        }
        totals.counts.merge(&f.counts);
        rows.push(LsFile {
            path: &r.path,
            size: r.size,
            hash: &r.hash,
            format: r.format.map(|f| f.name()),
            compression: r.compression,
            reason: &r.reason,
            error: r.error.as_deref(),
            warnings: r.warnings.iter().map(|w| format!("{}: {}", w.location, w.message)).collect(),
            counts: f.counts,
        });
    }
    LsDoc { schema: crate::schema::TRACES_LS, files: rows, totals }
}

pub fn render_ls(out: &Output, doc: &LsDoc<'_>) -> String {
    let c = out.color_stdout;
    let mut t = table(&["FILE", "FORMAT", "TRACES", "PASSED", "FAILED", "UNKNOWN", "NOTE"], c);
    for f in &doc.files {
        let note = match (f.error, f.format) {
            (Some(e), _) => out.paint(Style::Red, &one_line(e, 100)),
            (None, None) => out.paint(Style::Dim, &one_line(f.reason, 100)),
            (None, Some(_)) if !f.warnings.is_empty() => {
                out.paint(Style::Yellow, &format!("{} warning(s): {}", f.warnings.len(), one_line(&f.warnings[0], 80)))
            }
            _ => String::new(),
        };
        let num = |n: usize, style: Style| {
            if f.format.is_none() {
                String::new()
            } else if n == 0 {
                out.paint(Style::Dim, "0")
            } else {
                out.paint(style, &n.to_string())
            }
        };
        t.add_row(vec![
            f.path.to_string(),
            f.format.map(|n| n.to_string()).unwrap_or_else(|| out.paint(Style::Dim, "-")),
            num(f.counts.traces, Style::Bold),
            num(f.counts.passed, Style::Green),
            num(f.counts.failed, Style::Red),
            num(f.counts.unknown, Style::Yellow),
            note,
        ]);
    }
    let tt = &doc.totals;
    // The borderless table pads every cell, the last column too: drop the trailing blanks.
    let t: String = t.to_string().lines().map(|line| format!("{}\n", line.trim_end())).collect();
    format!(
        "{t}\n{} files: {} with traces, {} not traces, {} with errors · {} traces: {} passed, {} failed, {} unknown\n",
        tt.files,
        tt.trace_files,
        tt.not_traces,
        tt.errors,
        tt.counts.traces,
        out.paint(Style::Green, &tt.counts.passed.to_string()),
        out.paint(Style::Red, &tt.counts.failed.to_string()),
        out.paint(Style::Yellow, &tt.counts.unknown.to_string()),
    )
}

#[derive(Debug, Serialize)]
pub struct ShowDoc<'a> {
    pub schema: &'static str,
    pub path: &'a str,
    pub size: u64,
    pub format: Option<&'static str>,
    pub reason: &'a str,
    pub error: Option<&'a str>,
    pub warnings: Vec<String>,
    pub traces: Vec<ShowTrace<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ShowTrace<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub dialects: &'a [String],
    pub location: Option<&'a str>,
    pub outcome: OutcomeStatus,
    pub evidence: &'a [crate::trace::model::Evidence],
    pub start: Option<String>,
    pub end: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub steps: Vec<ShowStep<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ShowStep<'a> {
    pub id: &'a str,
    pub parent: Option<&'a str>,
    pub depth: usize,
    pub kind: &'static str,
    pub name: Option<&'a str>,
    pub agent: Option<&'a str>,
    pub model: Option<&'a str>,
    pub tool: Option<&'a str>,
    pub status: StepStatus,
    pub error: Option<String>,
    pub total_tokens: Option<u64>,
}

pub fn show_doc(report: &FileReport) -> ShowDoc<'_> {
    ShowDoc {
        schema: crate::schema::TRACE_SHOW,
        path: &report.path,
        size: report.size,
        format: report.format.map(|f| f.name()),
        reason: &report.reason,
        error: report.error.as_deref(),
        warnings: report.warnings.iter().map(|w| format!("{}: {}", w.location, w.message)).collect(),
        traces: report.traces.iter().map(show_trace).collect(),
    }
}

fn show_trace(t: &Trace) -> ShowTrace<'_> {
    ShowTrace {
        id: &t.id,
        name: t.name.as_deref(),
        dialects: &t.source.dialects,
        location: t.source.location.as_deref(),
        outcome: t.outcome.status,
        evidence: &t.outcome.evidence,
        start: t.start.map(format_time),
        end: t.end.map(format_time),
        input_tokens: t.usage.input_tokens,
        output_tokens: t.usage.output_tokens,
        total_tokens: t.usage.total(),
        cost_usd: t.cost_usd,
        steps: tree_order(t)
            .into_iter()
            .map(|(i, depth)| {
                let s = &t.steps[i];
                ShowStep {
                    id: &s.id,
                    parent: s.parent_id.as_deref(),
                    depth,
                    kind: s.kind.as_str(),
                    name: s.name.as_deref(),
                    agent: s.agent.as_deref(),
                    model: s.model.as_ref().and_then(|m| m.name()),
                    tool: s.tool_call.as_ref().map(|c| c.name.as_str()),
                    status: s.status,
                    error: error_line(s),
                    total_tokens: s.usage.total(),
                }
            })
            .collect(),
    }
}

fn error_line(s: &Step) -> Option<String> {
    let e = s.error.as_ref()?;
    let mut line = String::new();
    // A traceback's last line (`TimeoutError: …`) already starts with its class: say it once.
    let says_type = |m: &str| e.r#type.as_deref().is_some_and(|t| m.starts_with(t));
    if let Some(t) = e.r#type.as_ref().filter(|_| !e.message.as_deref().is_some_and(says_type)) {
        line.push_str(t);
    }
    if let Some(m) = &e.message {
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&clip(m.lines().next().unwrap_or(""), 160));
    }
    if line.is_empty() {
        line = "error".into();
    }
    Some(line)
}

/// `text` on one terminal line: whitespace runs (newlines included) become one space and
/// other control characters (escape sequences in trace data) are replaced, then clipped to
/// `max` bytes. Multi-line tool output in evidence would otherwise break the layout.
fn one_line(text: &str, max: usize) -> String {
    let mut line = String::with_capacity(text.len().min(max + 8));
    for word in text.split_whitespace() {
        if !line.is_empty() {
            line.push(' ');
        }
        line.extend(word.chars().map(|c| if c.is_control() { '\u{fffd}' } else { c }));
        if line.len() > max {
            break;
        }
    }
    clip(&line, max)
}

/// Depth-first order of the step tree (children in `seq` order), with depths. Orphans
/// (parent not in the trace) are roots. Cycles in bad input are broken.
pub fn tree_order(t: &Trace) -> Vec<(usize, usize)> {
    let index: HashMap<&str, usize> = t.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); t.steps.len()];
    let mut roots = Vec::new();
    for (i, s) in t.steps.iter().enumerate() {
        match s.parent_id.as_deref().and_then(|p| index.get(p)) {
            Some(&p) if p != i => children[p].push(i),
            _ => roots.push(i),
        }
    }
    let by_seq = |v: &mut Vec<usize>| v.sort_by_key(|&i| (t.steps[i].seq, i));
    by_seq(&mut roots);
    for c in &mut children {
        by_seq(c);
    }
    let mut out = Vec::with_capacity(t.steps.len());
    let mut seen = vec![false; t.steps.len()];
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|r| (r, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        out.push((i, depth));
        for &c in children[i].iter().rev() {
            stack.push((c, depth + 1));
        }
    }
    // Steps only reachable through a cycle.
    for (i, s) in seen.iter().enumerate() {
        if !s {
            out.push((i, 0));
        }
    }
    out
}

/// Lines of a long tree to keep: the first and last few, and every failing step with the
/// path to it.
fn visible_rows(doc: &ShowTrace<'_>, all: bool) -> Vec<bool> {
    const HEAD: usize = 25;
    const TAIL: usize = 10;
    let n = doc.steps.len();
    if all || n <= HEAD + TAIL + 10 {
        return vec![true; n];
    }
    let mut keep = vec![false; n];
    for (i, k) in keep.iter_mut().enumerate() {
        *k = i < HEAD || i >= n - TAIL;
    }
    for (i, s) in doc.steps.iter().enumerate() {
        if s.error.is_some() {
            keep[i] = true;
            // Ancestors: walk back to shallower depths.
            let mut depth = s.depth;
            for j in (0..i).rev() {
                if doc.steps[j].depth < depth {
                    keep[j] = true;
                    depth = doc.steps[j].depth;
                }
            }
        }
    }
    keep
}

pub fn render_show(out: &Output, doc: &ShowDoc<'_>, all: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", out.paint(Style::Bold, doc.path));
    match doc.format {
        Some(f) => {
            let _ = writeln!(
                s,
                "  format   {} {}",
                out.paint(Style::Cyan, f),
                out.paint(Style::Dim, &format!("({})", doc.reason))
            );
        }
        None => {
            let _ = writeln!(s, "  {}", out.paint(Style::Yellow, doc.reason));
        }
    }
    let _ = writeln!(s, "  size     {}", human_bytes(doc.size));
    if let Some(e) = doc.error {
        let _ = writeln!(s, "  {} {}", out.paint(Style::Red, "error   "), one_line(e, 300));
    }
    for w in &doc.warnings {
        let _ = writeln!(s, "  {} {}", out.paint(Style::Yellow, "warning "), one_line(w, 300));
    }
    if doc.format.is_some() {
        let _ = writeln!(s, "  traces   {}", doc.traces.len());
    }
    for t in &doc.traces {
        s.push('\n');
        let (label, style) = match t.outcome {
            OutcomeStatus::Passed => ("PASSED", Style::Green),
            OutcomeStatus::Failed => ("FAILED", Style::Red),
            OutcomeStatus::Unknown => ("UNKNOWN", Style::Yellow),
        };
        let _ = write!(s, "{} {}", out.paint(Style::Bold, "trace"), one_line(t.id, 60));
        if let Some(n) = t.name {
            let _ = write!(s, "  {}", out.paint(Style::Dim, &format!("\"{}\"", one_line(n, 60))));
        }
        let _ = writeln!(s, "  {}", out.paint(style, &out.paint(Style::Bold, label)));
        if !t.dialects.is_empty() {
            let _ = writeln!(s, "  dialects  {}", t.dialects.join(", "));
        }
        if t.evidence.is_empty() {
            let _ =
                writeln!(s, "  evidence  {}", out.paint(Style::Dim, "none: no success or failure signal in the trace"));
        }
        for (i, ev) in t.evidence.iter().enumerate() {
            let head = if i == 0 { "  evidence  " } else { "            " };
            let handled =
                if ev.handled { out.paint(Style::Dim, " (handled: the agent went on)") } else { String::new() };
            let step = ev
                .step
                .as_deref()
                .map(|st| out.paint(Style::Dim, &format!(" @ {}", one_line(st, 40))))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{head}{} {}{step}{handled}",
                out.paint(Style::Magenta, &ev.signal),
                one_line(&ev.detail, 140)
            );
        }
        let mut facts = Vec::new();
        if let Some(tok) = t.total_tokens {
            facts.push(format!("{} tokens", thousands(tok)));
        }
        if let Some(c) = t.cost_usd {
            facts.push(format!("${c:.4}"));
        }
        if let (Some(a), Some(b)) = (&t.start, &t.end) {
            facts.push(format!("{a} → {b}"));
        }
        if !facts.is_empty() {
            let _ = writeln!(s, "  usage     {}", facts.join(" · "));
        }
        let _ = writeln!(s, "  steps     {}", t.steps.len());
        let keep = visible_rows(t, all);
        let mut hidden = 0;
        for (step, k) in t.steps.iter().zip(&keep) {
            if !k {
                hidden += 1;
                continue;
            }
            if hidden > 0 {
                let _ = writeln!(s, "    {}", out.paint(Style::Dim, &format!("… {hidden} steps (--all shows them)")));
                hidden = 0;
            }
            let indent = "  ".repeat(step.depth.min(12));
            let mut line = format!("    {indent}{} ", out.paint(Style::Cyan, &format!("{:<9}", step.kind)));
            let name = step.tool.or(step.name).unwrap_or("");
            line.push_str(&one_line(name, 50));
            if let Some(a) = step.agent {
                line.push_str(&out.paint(Style::Dim, &format!(" by {}", one_line(a, 30))));
            }
            // Transcript formats name model turns after the model: say it once.
            if let Some(m) = step.model.filter(|&m| m != name) {
                line.push_str(&out.paint(Style::Dim, &format!(" [{}]", one_line(m, 60))));
            }
            if let Some(e) = &step.error {
                line.push_str(&format!(
                    "  {} {}",
                    out.paint(Style::Red, "✗"),
                    out.paint(Style::Red, &one_line(e, 120))
                ));
            }
            // A step without a name would leave the padded kind column dangling.
            let _ = writeln!(s, "{}", line.trim_end());
        }
        if hidden > 0 {
            let _ = writeln!(s, "    {}", out.paint(Style::Dim, &format!("… {hidden} steps (--all shows them)")));
        }
    }
    s
}
