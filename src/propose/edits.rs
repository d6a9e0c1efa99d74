//! Edits a proposer makes: setting a key in a TOML or JSON file without disturbing the
//! rest of it (comments, order, spacing), and the unified diff of one file.

use serde_json::Value as Json;

/// Set `dotted` (e.g. `tools.retry_attempts`) to `value` in TOML text, keeping comments and
/// layout. The result is parsed back and checked.
pub fn set_toml(text: &str, dotted: &str, value: &toml::Value) -> Result<String, String> {
    let (section, key) = match dotted.rsplit_once('.') {
        Some((s, k)) => (Some(s), k),
        None => (None, dotted),
    };
    let rendered = render_toml(value);
    let lines: Vec<&str> = text.lines().collect();
    let mut current: Option<String> = None;
    let mut section_end: Option<usize> = None;
    let mut section_found = section.is_none();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 2);
    let mut done = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.starts_with('[') && !t.starts_with("[[") {
            if section_found && !done && current.as_deref() == section {
                section_end = Some(out.len());
            }
            current = Some(t.trim_start_matches('[').split(']').next().unwrap_or("").trim().to_string());
            if current.as_deref() == section {
                section_found = true;
            }
        }
        if !done
            && current.as_deref() == section
            && let Some(rest) = key_line(t, key)
        {
            let indent = &line[..line.len() - line.trim_start().len()];
            let tail = value_tail(rest);
            out.push(format!("{indent}{key} = {rendered}{tail}"));
            done = true;
            continue;
        }
        out.push(line.to_string());
        if i + 1 == lines.len() && section_found && !done && current.as_deref() == section {
            section_end = Some(out.len());
        }
    }
    if !done {
        match (section, section_end) {
            (None, _) => out.insert(0, format!("{key} = {rendered}")),
            (Some(_), Some(at)) => out.insert(at, format!("{key} = {rendered}")),
            (Some(s), None) => {
                out.push(String::new());
                out.push(format!("[{s}]"));
                out.push(format!("{key} = {rendered}"));
            }
        }
    }
    let mut result = out.join("\n");
    if text.ends_with('\n') {
        result.push('\n');
    }
    let parsed: toml::Table =
        toml::from_str(&result).map_err(|e| format!("the edit broke the TOML: {}", e.message()))?;
    if get_toml(&parsed, dotted) != Some(value) {
        return Err(format!("could not set `{dotted}` (is it inside an inline table or array?)"));
    }
    Ok(result)
}

/// `key = ...` → the text after `=` when the line assigns `key`.
fn key_line<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(key)?.trim_start();
    let rest = rest.strip_prefix('=')?;
    Some(rest)
}

/// What follows a simple value on its line (spacing and a comment), kept as it was.
fn value_tail(after_eq: &str) -> String {
    let v = after_eq.trim_start();
    let end = if let Some(q) = v.strip_prefix('"') {
        q.find('"').map(|i| i + 2).unwrap_or(v.len())
    } else if let Some(q) = v.strip_prefix('\'') {
        q.find('\'').map(|i| i + 2).unwrap_or(v.len())
    } else {
        v.find(|c: char| c == '#' || c.is_whitespace()).unwrap_or(v.len())
    };
    v[end..].to_string()
}

fn render_toml(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

pub fn get_toml<'a>(t: &'a toml::Table, dotted: &str) -> Option<&'a toml::Value> {
    let mut parts = dotted.split('.');
    let mut cur = t.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_table()?.get(p)?;
    }
    Some(cur)
}

/// Set `dotted` in JSON text (pretty-printed back).
pub fn set_json(text: &str, dotted: &str, value: &toml::Value) -> Result<String, String> {
    let mut doc: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let new: Json = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let mut cur = &mut doc;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let obj = cur.as_object_mut().ok_or_else(|| format!("`{}` is not an object", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            obj.insert(p.to_string(), new.clone());
            break;
        }
        cur = obj.entry(p.to_string()).or_insert_with(|| Json::Object(Default::default()));
    }
    let mut s = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    s.push('\n');
    Ok(s)
}

/// The current value of a knob in a file's text.
pub fn current_value(file: &str, text: &str, dotted: &str) -> Option<toml::Value> {
    if file.ends_with(".json") {
        let doc: Json = serde_json::from_str(text).ok()?;
        let v = dotted.split('.').try_fold(&doc, |cur, p| cur.get(p))?;
        serde_json::from_value(v.clone()).ok()
    } else {
        let t: toml::Table = toml::from_str(text).ok()?;
        get_toml(&t, dotted).cloned()
    }
}

/// Set a knob in a file's text, by the file's kind.
pub fn set_value(file: &str, text: &str, dotted: &str, value: &toml::Value) -> Result<String, String> {
    if file.ends_with(".json") { set_json(text, dotted, value) } else { set_toml(text, dotted, value) }
}

/// A git-style unified diff of one file (paths relative to the harness root).
pub fn file_diff(path: &str, old: &str, new: &str) -> String {
    let d = similar::TextDiff::from_lines(old, new);
    let body = d.unified_diff().context_radius(3).header(&format!("a/{path}"), &format!("b/{path}")).to_string();
    format!("diff --git a/{path} b/{path}\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "# top\n[model]\ntemperature = 0.7   # noise\n\n[tools]\nretry_attempts = 1 # none\n\n[policy]\nverify = \"never\"  # when\n";

    #[test]
    fn toml_edits_keep_comments_and_layout() {
        let out = set_toml(CONFIG, "tools.retry_attempts", &toml::Value::Integer(5)).unwrap();
        assert!(out.contains("retry_attempts = 5 # none\n"), "{out}");
        assert!(out.contains("temperature = 0.7   # noise"), "{out}");
        let out = set_toml(CONFIG, "policy.verify", &toml::Value::String("always".into())).unwrap();
        assert!(out.contains("verify = \"always\"  # when"), "{out}");
        let out = set_toml(CONFIG, "model.temperature", &toml::Value::Float(0.0)).unwrap();
        assert!(out.contains("temperature = 0.0   # noise"), "{out}");
        // A missing key is added to its section; a missing section is created.
        let out = set_toml(CONFIG, "tools.timeout", &toml::Value::Integer(3)).unwrap();
        assert_eq!(current_value("c.toml", &out, "tools.timeout"), Some(toml::Value::Integer(3)));
        assert_eq!(current_value("c.toml", &out, "tools.retry_attempts"), Some(toml::Value::Integer(1)));
        let out = set_toml(CONFIG, "agent.max_steps", &toml::Value::Integer(8)).unwrap();
        assert_eq!(current_value("c.toml", &out, "agent.max_steps"), Some(toml::Value::Integer(8)));
        let out = set_toml("a = 1\n", "b", &toml::Value::Boolean(true)).unwrap();
        assert_eq!(current_value("c.toml", &out, "b"), Some(toml::Value::Boolean(true)));
    }

    #[test]
    fn json_edits_and_diffs() {
        let out = set_json("{\"retry\": {\"max\": 1}}", "retry.max", &toml::Value::Integer(3)).unwrap();
        assert_eq!(current_value("c.json", &out, "retry.max"), Some(toml::Value::Integer(3)));
        let d = file_diff(
            "config.toml",
            CONFIG,
            &set_toml(CONFIG, "tools.retry_attempts", &toml::Value::Integer(5)).unwrap(),
        );
        assert!(
            d.starts_with("diff --git a/config.toml b/config.toml\n--- a/config.toml\n+++ b/config.toml\n@@"),
            "{d}"
        );
        assert!(d.contains("-retry_attempts = 1 # none\n+retry_attempts = 5 # none\n"), "{d}");
    }
}
