//! What a reviewer sees without the tool (issue 16, item 4): per failing case, the input,
//! the failing check and the candidate's output, links to each trial's files that open
//! from where the report lies, the patch, the isolation, what the counts mean; bars colored
//! by pass rate; untrusted text made inert. Assertions on contents, no snapshots.

use std::path::Path;

use serde_json::Value;

use crate::common::cli::{stderr, stdout, steady};

/// The candidate prints markup instead of "hello": every suite case fails its
/// `output_contains` check on the candidate.
const PATCH: &str = "diff --git a/harnesses/steady/prompt.txt b/harnesses/steady/prompt.txt
--- a/harnesses/steady/prompt.txt
+++ b/harnesses/steady/prompt.txt
@@ -1 +1 @@
-hello
+goodbye <script>alert(1)</script>
";

/// Every `href="…"` and Markdown `](<…>)` link target in `text`.
fn links(text: &str, open: &str, close: char) -> Vec<String> {
    text.split(open).skip(1).filter_map(|rest| rest.split(close).next()).map(str::to_string).collect()
}

#[test]
fn gate_evidence_reports_show_input_check_output_patch_and_trial_files() {
    let sb = steady();
    assert_eq!(std::fs::read_to_string(sb.path().join("harnesses/steady/prompt.txt")).unwrap(), "hello\n");
    sb.write("change.patch", PATCH);
    std::fs::create_dir_all(sb.path().join("reports")).unwrap();
    let out = sb.run(&[
        "--json",
        "gate",
        "change.patch",
        "--markdown",
        "gate.md",
        "--html",
        "reports/gate.html",
        "--junit",
        "reports/gate.xml",
    ]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(out.status.code(), Some(1), "{}\n{doc:#}", stderr(&out));

    // --json: the evidence fields, documented in docs/json.md.
    assert!(doc["patch"].as_str().unwrap().contains("+goodbye <script>"), "{doc:#}");
    assert!(doc["isolation"].as_str().unwrap().starts_with("filesystem "), "{doc:#}");
    let row = doc["cases"].as_array().unwrap().iter().find(|c| c["id"] == "c-s2").unwrap();
    assert_eq!(row["input"], "task 2");
    assert!(row["failing_check"].as_str().unwrap().starts_with("output_contains: "), "{row:#}");
    assert!(row["candidate_output"].as_str().unwrap().contains("goodbye"), "{row:#}");
    let trials = row["trials"].as_array().unwrap();
    assert!(trials.iter().any(|t| t["arm"] == "candidate" && t["passed"] == false));
    let files: Vec<&str> =
        trials.iter().flat_map(|t| t["files"].as_array().unwrap()).filter_map(|f| f.as_str()).collect();
    assert!(files.iter().any(|f| f.ends_with("/io/stdout.txt")), "{files:?}");
    for f in &files {
        // Relative to where the command ran (the sandbox's root), in the store's trial folder.
        assert!(!f.starts_with('/') && f.contains(".trials/p"), "{f}");
        assert!(sb.path().join(f).is_file(), "{f}");
    }
    let candidate_stdout = files
        .iter()
        .find(|f| {
            f.ends_with("stdout.txt")
                && !trials
                    .iter()
                    .any(|t| t["arm"] == "baseline" && t["files"].as_array().unwrap().iter().any(|x| x == *f))
        })
        .unwrap();
    assert!(std::fs::read_to_string(sb.path().join(candidate_stdout)).unwrap().contains("goodbye"));

    // Markdown (beside the command): input, failing check, output, patch, legend, links.
    let md = std::fs::read_to_string(sb.path().join("gate.md")).unwrap();
    for needle in
        ["task 2", "output_contains", "goodbye", "```diff", "+goodbye", "fixed", "full pass", "Trials ran isolated"]
    {
        assert!(md.contains(needle), "`{needle}` missing from:\n{md}");
    }
    assert!(!md.contains("<script>alert") || md.contains("```"), "markup only inside code blocks");
    let md_links = links(&md, "](<", '>');
    assert!(md_links.iter().any(|l| l.ends_with("stdout.txt")), "{md}");
    for l in &md_links {
        assert!(sb.path().join(l).is_file(), "markdown link {l} does not open from gate.md's folder");
    }

    // HTML (in reports/): links open from reports/, markup inert, bars colored by rate.
    let html = std::fs::read_to_string(sb.path().join("reports/gate.html")).unwrap();
    assert!(!html.contains("<script>") && html.contains("&lt;script&gt;"), "untrusted markup escaped");
    let hrefs = links(&html, "href=\"", '"');
    assert!(hrefs.iter().any(|h| h.ends_with("stdout.txt")), "{html}");
    for h in &hrefs {
        assert!(h.starts_with("../") && !h.contains(':'), "{h}");
        assert!(sb.path().join("reports").join(h).is_file(), "html link {h} does not open from reports/");
    }
    assert!(html.contains("task 2") && html.contains("output_contains") && html.contains("+goodbye"));
    let bars = bar_rates(&html);
    assert!(bars.iter().any(|(rate, _)| *rate == 0.0), "{bars:?}");
    for (rate, color) in &bars {
        let green = color == "#1a7f37";
        assert_eq!(green, *rate >= 0.8, "a {rate} pass rate drawn {color}");
    }

    // JUnit: the failure body carries the evidence.
    let xml = std::fs::read_to_string(sb.path().join("reports/gate.xml")).unwrap();
    assert!(xml.contains("input: task 2") && xml.contains("failing check: output_contains"), "{xml}");
    assert!(!xml.contains("<script>"));

    // Terminal: the failing case's input, check, output, files, and the isolation.
    // Another candidate, so its trials run now (the baseline's come from the cache).
    sb.write("change.patch", PATCH.replace("+goodbye", "+farewell"));
    let text = stdout(&sb.run(&["gate", "change.patch"]));
    for needle in ["input:", "failed:", "output:", "files:", "isolation:", "fixed"] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    assert!(Path::new(&sb.path().join("harnesses/steady/prompt.txt")).is_file());
}

/// (pass rate, color) of each bar: `p/n <span class=bar style='width:..;background:#xxxxxx'`.
fn bar_rates(html: &str) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    for (i, _) in html.match_indices(" <span class=bar ") {
        let before = &html[..i];
        let frac = before.rsplit(['>', ' ']).next().unwrap();
        let (p, n) = frac.split_once('/').unwrap();
        let (p, n): (f64, f64) = (p.parse().unwrap(), n.parse().unwrap());
        let color = html[i..].split("background:").nth(1).unwrap()[..7].to_string();
        out.push((if n == 0.0 { 0.0 } else { p / n }, color));
    }
    out
}
