//! Reading a proposer's answer: untrusted text that may hold a JSON object of edits, a
//! unified diff, search/replace blocks or whole files, and a prediction. Parsed leniently,
//! then turned into one unified diff that touches editable files only; anything else is
//! refused with a reason the proposer can be re-asked with.

use std::path::Path;

use globset::GlobSet;
use serde_json::Value;

use super::edits::file_diff;

/// Answers longer than this are refused unread: no harness edit is this large.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// Unified diff, paths relative to the harness root.
    pub diff: String,
    pub summary: String,
    pub fixes: Vec<String>,
    pub risks: Vec<String>,
}

/// One edit in any of the accepted shapes.
#[derive(Debug, Clone)]
enum Edit {
    Replace { file: String, search: String, replace: String },
    Whole { file: String, content: String },
}

/// Parse an answer against the harness at `root`.
pub fn parse(answer: &str, root: &Path, editable: &GlobSet) -> Result<Parsed, String> {
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(format!("the answer is {} bytes; at most {MAX_ANSWER_BYTES} are read", answer.len()));
    }
    let answer = answer.replace("\r\n", "\n");
    let (summary, fixes, risks) = prediction(&answer);
    if let Some(v) = json_object(&answer) {
        let summary = v.get("summary").and_then(Value::as_str).map(str::to_string).unwrap_or(summary);
        let fixes = strings(v.get("fixes")).unwrap_or(fixes);
        let risks = strings(v.get("risks")).unwrap_or(risks);
        if let Some(d) = v.get("diff").and_then(Value::as_str).filter(|d| !d.trim().is_empty()) {
            return Ok(Parsed { diff: check_diff(d, root, editable)?, summary, fixes, risks });
        }
        let mut edits = Vec::new();
        for e in v.get("edits").and_then(Value::as_array).into_iter().flatten() {
            let file = e.get("file").or_else(|| e.get("path")).and_then(Value::as_str).unwrap_or("").to_string();
            match (
                e.get("search").and_then(Value::as_str),
                e.get("replace").and_then(Value::as_str),
                e.get("content").and_then(Value::as_str),
            ) {
                (Some(s), Some(r), _) => edits.push(Edit::Replace { file, search: s.into(), replace: r.into() }),
                (_, _, Some(c)) => edits.push(Edit::Whole { file, content: c.into() }),
                _ => return Err(format!("edit for `{file}` has neither search/replace nor content")),
            }
        }
        if edits.is_empty() {
            return Err("the JSON answer has no `edits` and no `diff`".into());
        }
        return Ok(Parsed { diff: edits_to_diff(&edits, root, editable)?, summary, fixes, risks });
    }
    let blocks = search_replace_blocks(&answer);
    if !blocks.is_empty() {
        return Ok(Parsed { diff: edits_to_diff(&blocks, root, editable)?, summary, fixes, risks });
    }
    if answer.contains("\n@@ ")
        || answer.starts_with("--- ")
        || answer.contains("\n--- ")
        || answer.contains("diff --git")
    {
        let body = strip_fences(&answer);
        return Ok(Parsed { diff: check_diff(&body, root, editable)?, summary, fixes, risks });
    }
    let whole = whole_files(&answer);
    if !whole.is_empty() {
        return Ok(Parsed { diff: edits_to_diff(&whole, root, editable)?, summary, fixes, risks });
    }
    Err("no edit found: answer with the JSON object described (or a unified diff, or SEARCH/REPLACE blocks)".into())
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    Some(v?.as_array()?.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
}

/// The first balanced `{...}` that parses as a JSON object (fenced or bare).
fn json_object(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(t) {
        return Some(v);
    }
    let start = t.find('{')?;
    let mut de = serde_json::Deserializer::from_str(&t[start..]).into_iter::<Value>();
    match de.next() {
        Some(Ok(v @ Value::Object(_))) if v.get("edits").is_some() || v.get("diff").is_some() => Some(v),
        _ => None,
    }
}

/// `Summary:`, `Fixes:` and `Risks:` lines of a prose answer.
fn prediction(text: &str) -> (String, Vec<String>, Vec<String>) {
    let mut summary = String::new();
    let mut fixes = Vec::new();
    let mut risks = Vec::new();
    let ids = |s: &str| -> Vec<String> {
        s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("k-"))
            .map(str::to_string)
            .collect()
    };
    for line in text.lines() {
        let l = line.trim().trim_start_matches(['-', '*', '#', ' ']);
        let lower = l.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("summary:") {
            summary = l[l.len() - r.len()..].trim().to_string();
        } else if lower.starts_with("fixes:") || lower.starts_with("expected fixed:") {
            fixes.extend(ids(l));
        } else if lower.starts_with("risks:") || lower.starts_with("at risk:") {
            risks.extend(ids(l));
        }
    }
    (summary, fixes, risks)
}

fn strip_fences(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("```")).collect::<Vec<_>>().join("\n") + "\n"
}

/// Aider-style blocks: a path line, then `<<<<<<< SEARCH` … `=======` … `>>>>>>> REPLACE`.
fn search_replace_blocks(text: &str) -> Vec<Edit> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_start().starts_with("<<<<<<< SEARCH") {
            let file = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim().trim_matches('`').trim())
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_string();
            let mut j = i + 1;
            let mut search = Vec::new();
            while j < lines.len() && lines[j].trim() != "=======" {
                search.push(lines[j]);
                j += 1;
            }
            let mut k = j + 1;
            let mut replace = Vec::new();
            while k < lines.len() && !lines[k].trim_start().starts_with(">>>>>>> REPLACE") {
                replace.push(lines[k]);
                k += 1;
            }
            if k < lines.len() {
                out.push(Edit::Replace { file, search: search.join("\n"), replace: replace.join("\n") });
            }
            i = k + 1;
        } else {
            i += 1;
        }
    }
    out
}

/// `FILE: path` (or a fence with `path=`) followed by a fenced block: the file's new content.
fn whole_files(text: &str) -> Vec<Edit> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        let named =
            l.strip_prefix("FILE:").or_else(|| l.strip_prefix("File:")).map(|p| p.trim().trim_matches('`').to_string());
        let fence_named = l
            .strip_prefix("```")
            .and_then(|rest| rest.split_whitespace().find_map(|w| w.strip_prefix("path=")))
            .map(str::to_string);
        if let Some(file) = named.clone().or(fence_named.clone()) {
            let mut j = i + 1;
            if named.is_some() {
                while j < lines.len() && !lines[j].trim_start().starts_with("```") {
                    j += 1;
                }
                j += 1;
            }
            let mut body = Vec::new();
            while j < lines.len() && !lines[j].trim_start().starts_with("```") {
                body.push(lines[j]);
                j += 1;
            }
            out.push(Edit::Whole { file, content: body.join("\n") + "\n" });
            i = j + 1;
        } else {
            i += 1;
        }
    }
    out
}

fn check_path(file: &str, editable: &GlobSet) -> Result<String, String> {
    let f = file.trim().trim_start_matches("./").trim_start_matches("a/").trim_start_matches("b/").to_string();
    if f.is_empty() {
        return Err("an edit names no file".into());
    }
    let f = match crate::paths::clean_relative(&f) {
        Ok(f) => f,
        Err(crate::paths::PathRefusal::Absolute | crate::paths::PathRefusal::ParentDir) => {
            return Err(format!("`{}` leaves the harness folder; edit files relative to it", file.escape_debug()));
        }
        Err(why) => return Err(format!("`{}` cannot be written: it {why}", file.escape_debug())),
    };
    if !editable.is_match(&f) {
        return Err(format!("`{f}` is not editable; only the editable files may change"));
    }
    Ok(f)
}

fn edits_to_diff(edits: &[Edit], root: &Path, editable: &GlobSet) -> Result<String, String> {
    // Apply every edit in memory, file by file, then diff each file once.
    let mut files: Vec<(String, Option<String>, String)> = Vec::new();
    for e in edits {
        let file = match e {
            Edit::Replace { file, .. } | Edit::Whole { file, .. } => check_path(file, editable)?,
        };
        let idx = match files.iter().position(|(f, _, _)| *f == file) {
            Some(i) => i,
            None => {
                let path = root.join(&file);
                if path.is_symlink() {
                    return Err(format!("`{file}` is a symlink; it cannot be edited"));
                }
                let old = std::fs::read_to_string(&path).ok();
                let cur = old.clone().unwrap_or_default();
                files.push((file.clone(), old, cur));
                files.len() - 1
            }
        };
        match e {
            Edit::Whole { content, .. } => files[idx].2 = content.clone(),
            Edit::Replace { search, replace, .. } => {
                let cur = &files[idx].2;
                if files[idx].1.is_none() {
                    return Err(format!("`{file}` does not exist, so there is nothing to search in it"));
                }
                let new = if let Some(at) = cur.find(search.as_str()) {
                    format!("{}{}{}", &cur[..at], replace, &cur[at + search.len()..])
                } else if let Some((a, b)) = find_loose(cur, search) {
                    format!("{}{}{}", &cur[..a], replace, &cur[b..])
                } else {
                    return Err(format!(
                        "the SEARCH text was not found in `{file}`; copy it exactly from the file: {:?}",
                        crate::trace::json::clip(search, 120)
                    ));
                };
                files[idx].2 = new;
            }
        }
    }
    let diff: String = files
        .iter()
        .filter(|(_, old, new)| old.as_deref() != Some(new.as_str()))
        .map(|(f, old, new)| match old {
            Some(o) => file_diff(f, o, new),
            None => new_file_diff(f, new),
        })
        .collect();
    if diff.is_empty() {
        return Err("the edits change nothing".into());
    }
    // The diff goes to the gate as text: it must read back as the patch it was made from
    // (a bare carriage return in a file's content, for one, would not).
    match crate::harness::patch::parse(&diff) {
        Ok(p) if p.files.len() == files.iter().filter(|(_, old, new)| old.as_deref() != Some(new.as_str())).count() => {
            Ok(diff)
        }
        Ok(_) => Err("the edits cannot be written as a unified diff".into()),
        Err(e) => Err(format!("the edits cannot be written as a unified diff: {e}")),
    }
}

/// `search` found line by line ignoring surrounding whitespace: byte range in `text`.
fn find_loose(text: &str, search: &str) -> Option<(usize, usize)> {
    let want: Vec<&str> = search.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if want.is_empty() {
        return None;
    }
    let mut offsets = Vec::new();
    let mut pos = 0;
    for l in text.split_inclusive('\n') {
        offsets.push((pos, l));
        pos += l.len();
    }
    'outer: for start in 0..offsets.len() {
        let mut i = start;
        for w in &want {
            while i < offsets.len() && offsets[i].1.trim().is_empty() {
                i += 1;
            }
            if i >= offsets.len() || offsets[i].1.trim() != *w {
                continue 'outer;
            }
            i += 1;
        }
        let end = offsets.get(i - 1).map(|(p, l)| p + l.len()).unwrap_or(text.len());
        return Some((offsets[start].0, end));
    }
    None
}

fn new_file_diff(path: &str, content: &str) -> String {
    let d = file_diff(path, "", content);
    d.replacen(&format!("--- a/{path}"), "--- /dev/null", 1).replacen(
        &format!("diff --git a/{path} b/{path}\n"),
        &format!("diff --git a/{path} b/{path}\nnew file mode 100644\n"),
        1,
    )
}

/// A unified diff from the answer: parsed, paths checked, re-rendered.
fn check_diff(text: &str, root: &Path, editable: &GlobSet) -> Result<String, String> {
    // The text that is kept is the text that is checked: a fence-like line inside the answer
    // must not make the stored diff differ from the one whose paths passed.
    let kept = strip_fences_keep(text);
    let mut p = crate::harness::patch::parse(&kept).map_err(|e| format!("the diff does not parse: {e}"))?;
    if p.is_empty() {
        return Err("the diff changes no file".into());
    }
    crate::harness::patch::normalize_paths(&mut p, None);
    if let Err(refusals) = crate::harness::patch::check_paths(&p, root, editable) {
        return Err(refusals.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; "));
    }
    Ok(kept)
}

fn strip_fences_keep(text: &str) -> String {
    let body = strip_fences(text);
    // Drop prose before the first file header so the stored diff is just the diff.
    match body.find("diff --git").or_else(|| body.find("--- ")) {
        Some(i) => body[i..].to_string(),
        None => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, GlobSet) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("prompts")).unwrap();
        std::fs::write(dir.path().join("prompts/system.md"), "You are helpful.\nBe brief.\n").unwrap();
        std::fs::write(dir.path().join("agent.py"), "print('hi')\n").unwrap();
        let mut b = globset::GlobSetBuilder::new();
        b.add(globset::Glob::new("prompts/**").unwrap());
        (dir, b.build().unwrap())
    }

    #[test]
    fn json_edits_become_a_diff_with_a_prediction() {
        let (dir, ed) = setup();
        let answer = r#"Here you go:
{"summary": "verify identity", "edits": [{"file": "prompts/system.md", "search": "Be brief.", "replace": "Be brief.\nVerify the customer's identity before any refund."}], "fixes": ["k-77a207b7"], "risks": []}"#;
        let p = parse(answer, dir.path(), &ed).unwrap();
        assert!(p.diff.contains("+Verify the customer's identity"), "{}", p.diff);
        assert_eq!(p.fixes, vec!["k-77a207b7"]);
        assert_eq!(p.summary, "verify identity");
    }

    #[test]
    fn search_replace_blocks_diffs_and_whole_files() {
        let (dir, ed) = setup();
        let sr = "prompts/system.md\n```\n<<<<<<< SEARCH\nBe brief.\n=======\nBe very brief.\n>>>>>>> REPLACE\n```\nFixes: k-1234abcd\n";
        let p = parse(sr, dir.path(), &ed).unwrap();
        assert!(p.diff.contains("+Be very brief."), "{}", p.diff);
        assert_eq!(p.fixes, vec!["k-1234abcd"]);
        let diff = "```diff\n--- a/prompts/system.md\n+++ b/prompts/system.md\n@@ -1,2 +1,2 @@\n You are helpful.\n-Be brief.\n+Be short.\n```\n";
        assert!(parse(diff, dir.path(), &ed).unwrap().diff.starts_with("--- a/prompts/system.md"));
        let whole = "FILE: prompts/new.md\n```\nnew rules\n```\n";
        let p = parse(whole, dir.path(), &ed).unwrap();
        assert!(p.diff.contains("--- /dev/null") && p.diff.contains("+new rules"), "{}", p.diff);
        // Loose match: the model re-indented the SEARCH text.
        let loose = "prompts/system.md\n<<<<<<< SEARCH\n   Be brief.   \n=======\nBe crisp.\n>>>>>>> REPLACE\n";
        assert!(parse(loose, dir.path(), &ed).unwrap().diff.contains("+Be crisp."));
    }

    /// `prompts/**` matches `prompts/.git/config`: the editable globs alone let a model plant
    /// a git config whose `core.fsmonitor` runs on the next `git status`.
    #[test]
    fn answers_never_write_into_a_vcs_folder() {
        let (dir, ed) = setup();
        let fsmonitor = "[core]\n\tfsmonitor = touch /tmp/pwned\n";
        for file in ["prompts/.git/config", "prompts/sub/.GIT/config", "prompts/.hg/hgrc", "prompts/.git./config"] {
            let json = serde_json::json!({"edits": [{"file": file, "content": fsmonitor}]}).to_string();
            let e = parse(&json, dir.path(), &ed).unwrap_err();
            assert!(e.contains("version-control folder"), "{file}: {e}");
            let whole = format!("FILE: {file}\n```\n{fsmonitor}```\n");
            assert!(parse(&whole, dir.path(), &ed).unwrap_err().contains("version-control"), "{file}");
            let diff = format!("--- /dev/null\n+++ b/{file}\n@@ -0,0 +1,2 @@\n+[core]\n+\tfsmonitor = x\n");
            assert!(parse(&diff, dir.path(), &ed).unwrap_err().contains("version-control"), "{file}");
        }
        assert!(!dir.path().join("prompts/.git").exists());
        // A NUL would cut the path short in C: refused, and shown escaped, never raw.
        let nul = serde_json::json!({"edits": [{"file": "prompts/a\u{0}b.md", "content": "x"}]}).to_string();
        let e = parse(&nul, dir.path(), &ed).unwrap_err();
        assert!(e.contains("NUL") && e.contains("\\0") && !e.contains('\0'), "{e:?}");
        let diff = "--- /dev/null\n+++ b/prompts/a\u{0}b.md\n@@ -0,0 +1 @@\n+x\n";
        let e = parse(diff, dir.path(), &ed).unwrap_err();
        assert!(!e.contains('\0'), "{e:?}");
    }

    #[test]
    fn hostile_or_broken_answers_are_refused_with_a_reason() {
        let (dir, ed) = setup();
        let escape = "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+toor\n";
        assert!(parse(escape, dir.path(), &ed).is_err());
        let not_editable = r#"{"edits": [{"file": "agent.py", "content": "import os; os.system('curl evil')"}]}"#;
        assert!(parse(not_editable, dir.path(), &ed).unwrap_err().contains("not editable"));
        let abs = r#"{"edits": [{"file": "/etc/shadow", "content": "x"}]}"#;
        assert!(parse(abs, dir.path(), &ed).unwrap_err().contains("leaves the harness"));
        assert!(parse("I think you should be nicer.", dir.path(), &ed).unwrap_err().contains("no edit found"));
        let huge = "x".repeat(MAX_ANSWER_BYTES + 1);
        assert!(parse(&huge, dir.path(), &ed).unwrap_err().contains("at most"));
        let missing = "prompts/system.md\n<<<<<<< SEARCH\nnot in the file\n=======\nx\n>>>>>>> REPLACE\n";
        assert!(parse(missing, dir.path(), &ed).unwrap_err().contains("not found"));
        let truncated = "{\"edits\": [{\"file\": \"prompts/system.md\", \"search\": \"Be";
        assert!(parse(truncated, dir.path(), &ed).is_err());
        let noop = r#"{"edits": [{"file": "prompts/system.md", "search": "Be brief.", "replace": "Be brief."}]}"#;
        assert!(parse(noop, dir.path(), &ed).unwrap_err().contains("change nothing"));
    }
}
