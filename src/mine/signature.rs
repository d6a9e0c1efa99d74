//! Signatures: a canonical fingerprint of a failure that stays the same when only the
//! incidental details change (ids, numbers, paths, quoted values, hex, timestamps).
//!
//! The template is built by a single hand-written scan rather than a chain of regexes:
//! it runs on every failure of every mine, and the 100,000-failure benchmark holds it to
//! linear time.

use serde::{Deserialize, Serialize};

/// The parts a cluster's identity is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature {
    /// `infra` or `capability`.
    pub kind: String,
    /// What showed the failure: `error:span_status`, `signal:reward`, `action:missing`…
    pub signal: String,
    pub step_kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// The message with incidental details masked.
    pub template: String,
}

impl Signature {
    /// The canonical one-line form, hashed into cluster ids and matched by `not_signature`.
    pub fn canonical(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}",
            self.kind,
            self.signal,
            self.step_kind,
            self.tool.as_deref().unwrap_or("-"),
            self.error_type.as_deref().unwrap_or("-"),
            self.template
        )
    }

    /// The stable cluster id of this signature: `k-` + 8 hex of its blake3.
    pub fn cluster_id(&self) -> String {
        short_id("k-", &self.canonical())
    }
}

/// The versions of the rules that turn a failure into its signature. A signature change
/// changes cluster ids: when a store's failures were signed under other rules, the next
/// mine signs them again and records which old cluster became which new one
/// (`cluster_aliases`, docs/producers.md), so old ids keep resolving.
///
/// 1: a tool's error is signed as its exporter recorded it (reader, exception class,
/// wording); 2: by the tool and its core message (`tool_error.rs`), one signature across
/// exporters.
pub const SIGNATURE_RULES_LATEST: u32 = 2;

/// The rules used unless `AUTOHARNESS_SIGNATURE_RULES` says otherwise: the latest. A user
/// who pinned 1 keeps it by setting the variable (docs/producers.md).
pub const SIGNATURE_RULES_DEFAULT: u32 = SIGNATURE_RULES_LATEST;

/// The rules in force: `AUTOHARNESS_SIGNATURE_RULES` (1 or 2), else
/// [`SIGNATURE_RULES_DEFAULT`]. Read once per process; a value that names no rules is
/// reported and the default used (signing under a guessed version would move cluster ids).
pub fn rules() -> u32 {
    static RULES: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *RULES.get_or_init(|| {
        let Ok(v) = std::env::var("AUTOHARNESS_SIGNATURE_RULES") else { return SIGNATURE_RULES_DEFAULT };
        match v.trim().parse::<u32>().ok().filter(|v| (1..=SIGNATURE_RULES_LATEST).contains(v)) {
            Some(v) => v,
            None => {
                tracing::warn!(
                    "AUTOHARNESS_SIGNATURE_RULES={v:?} names no signature rules (1..={SIGNATURE_RULES_LATEST}); \
                     using {SIGNATURE_RULES_DEFAULT}. Set it to 1 to keep the old tool-error signatures, or unset it"
                );
                SIGNATURE_RULES_DEFAULT
            }
        }
    })
}

pub fn short_id(prefix: &str, content: &str) -> String {
    let hash = blake3::hash(content.as_bytes()).to_hex();
    format!("{prefix}{}", &hash[..8])
}

/// Longest template kept: the first lines carry the identity of an error; the rest is detail.
pub const TEMPLATE_MAX: usize = 160;

/// Reduce a message to its template: ids, numbers, paths, URLs, quoted values, hex,
/// timestamps and emails masked; whitespace collapsed; lowercased; cut to `TEMPLATE_MAX`.
pub fn template(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(TEMPLATE_MAX * 2));
    let chars: Vec<char> = message.chars().take(TEMPLATE_MAX * 4).collect();
    let mut i = 0;
    let mut last_space = true;
    let push_mask = |out: &mut String, mask: &str| {
        // Collapse runs of the same mask ("<n> <n>" → "<n>"), leaving no double space.
        let kept = out.trim_end().len();
        if out[..kept].ends_with(mask) {
            out.truncate(kept);
        } else {
            out.push_str(mask);
        }
    };
    while i < chars.len() && out.len() < TEMPLATE_MAX {
        let c = chars[i];
        // Quoted values: 'x', "x", `x` (short ones only: long quotes are prose).
        if matches!(c, '\'' | '"' | '`') {
            if let Some(end) = chars[i + 1..].iter().take(80).position(|&d| d == c) {
                let inner_len = end;
                // An apostrophe inside a word (don't) is not a quote.
                let prev_alpha = i > 0 && chars[i - 1].is_alphanumeric();
                if !(c == '\'' && prev_alpha) && inner_len > 0 {
                    push_mask(&mut out, "<q>");
                    i += end + 2;
                    last_space = false;
                    continue;
                }
            }
        }
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
                last_space = true;
            }
            i += 1;
            continue;
        }
        // A token: run of non-space characters.
        // Always consume at least one character (an unmatched quote is just a character).
        let start = i;
        i += 1;
        while i < chars.len() && !chars[i].is_whitespace() && !matches!(chars[i], '\'' | '"' | '`') {
            i += 1;
        }
        let token: String = chars[start..i].iter().collect();
        mask_token(&token, &mut out);
        last_space = false;
    }
    let t = out.trim();
    let mut t = t.to_lowercase();
    if t.len() > TEMPLATE_MAX {
        let mut end = TEMPLATE_MAX;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
        t.truncate(t.trim_end().len());
    }
    t
}

fn mask_token(token: &str, out: &mut String) {
    // Keep leading/trailing punctuation, mask the core.
    let core_start =
        token.find(|c: char| c.is_alphanumeric() || c == '/' || c == '~' || c == '$').unwrap_or(token.len());
    let core_end = token
        .rfind(|c: char| c.is_alphanumeric() || c == '/')
        .map(|e| e + token[e..].chars().next().map_or(1, char::len_utf8))
        .unwrap_or(core_start)
        .max(core_start);
    let (lead, core, tail) = (&token[..core_start], &token[core_start..core_end], &token[core_end..]);
    out.push_str(lead);
    out.push_str(&mask_core(core));
    out.push_str(tail);
}

fn mask_core(core: &str) -> String {
    if core.is_empty() {
        return String::new();
    }
    let lower = core.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("file://") {
        return "<url>".into();
    }
    if core.contains('@') && core.contains('.') && !core.starts_with('@') {
        return "<email>".into();
    }
    if (core.starts_with('/') || core.starts_with("~/") || core.starts_with("./") || core.starts_with("../"))
        && core.len() > 1
        || core.matches('/').count() >= 2 && !core.contains("//")
        || core.len() > 3 && core.as_bytes()[1] == b':' && core.as_bytes()[2] == b'\\'
    {
        return "<path>".into();
    }
    if is_timestamp(core) {
        return "<time>".into();
    }
    if is_uuid(core) {
        return "<id>".into();
    }
    let digits = core.chars().filter(char::is_ascii_digit).count();
    let alnum = core.chars().filter(|c| c.is_ascii_alphanumeric()).count();
    if digits > 0 && digits == alnum && core.chars().all(|c| c.is_ascii_digit() || ".,:-+%x".contains(c)) {
        return "<n>".into();
    }
    if core.len() >= 8 && core.chars().all(|c| c.is_ascii_hexdigit()) && digits > 0 {
        return "<hex>".into();
    }
    if core.starts_with("0x") && core.len() > 2 && core[2..].chars().all(|c| c.is_ascii_hexdigit()) {
        return "<hex>".into();
    }
    // Prefixed ids: call_abc123, toolu_01…, span_…, #W1234567, user_ab_1234.
    if let Some(idx) = core.rfind(['_', '-', '#']) {
        let suffix = &core[idx + 1..];
        if suffix.len() >= 3
            && suffix.chars().any(|c| c.is_ascii_digit())
            && suffix.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return format!("{}<id>", &core[..=idx]);
        }
    }
    if core.starts_with('#') && digits > 0 {
        return "<id>".into();
    }
    // Mixed tokens with many digits are ids (a1b2c3d4e5).
    if core.len() >= 6 && digits * 3 >= core.len() && core.chars().all(|c| c.is_ascii_alphanumeric()) {
        return "<id>".into();
    }
    // Numbers glued to units or words (500ms, 3rd, v1.2.3) keep the word, mask the digits.
    if digits > 0 {
        let mut s = String::new();
        let mut in_digits = false;
        for c in core.chars() {
            if c.is_ascii_digit() {
                if !in_digits {
                    s.push_str("<n>");
                    in_digits = true;
                }
            } else if in_digits && c == '.' {
                // part of a number
            } else {
                in_digits = false;
                s.push(c);
            }
        }
        return s;
    }
    core.to_string()
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && [8, 4, 4, 4, 12].iter().zip(&parts).all(|(n, p)| p.len() == *n)
        && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    // 2025-12-24, 2025-12-24T10:00:05Z, 10:00:05.123
    (b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && b[..4].iter().all(u8::is_ascii_digit))
        || (b.len() >= 8 && b[2] == b':' && b[5] == b':' && b[..2].iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        assert_eq!(template(input), expect, "input: {input}");
    }

    #[test]
    fn masks_incidental_details() {
        check(
            "Error code: 500 - {'error': 'upstream failed'} at 2025-12-24T10:00:05Z",
            "error code: <n> - {<q>: <q>} at <time>",
        );
        check("Order #W2378156 not found", "order #<id> not found");
        check("user_id emma_kim_9957 is invalid", "user_id emma_kim_<id> is invalid");
        check("cannot open /home/x/project/a.py: permission denied", "cannot open <path>: permission denied");
        check("request 3f2a9c1e-1b2c-4d5e-8f90-123456789abc timed out after 30s", "request <id> timed out after <n>s");
        check("see https://example.com/x?y=1 for details", "see <url> for details");
        check("   lots\n\n of   space  ", "lots of space");
        check("don't mask apostrophes", "don't mask apostrophes");
        check("sha deadbeefcafe1234 mismatch", "sha <hex> mismatch");
    }

    #[test]
    fn same_failure_same_template() {
        let a = template("Timeout after 30000 ms calling tool_call_abc123 for user 42");
        let b = template("Timeout after 12 ms calling tool_call_zz9988 for user 7");
        assert_eq!(a, b);
    }

    #[test]
    fn unicode_is_safe() {
        let t = template("échec: réponse «invalide» 🙃 مرحبا 12");
        assert!(t.contains("<n>"));
        let long = "ü".repeat(1000);
        assert!(template(&long).len() <= TEMPLATE_MAX);
    }

    #[test]
    fn ids_are_stable() {
        let s = Signature {
            kind: "capability".into(),
            signal: "error:tool_result_flag".into(),
            step_kind: "tool".into(),
            tool: Some("Bash".into()),
            error_type: None,
            template: "exit code <n>".into(),
        };
        assert_eq!(s.cluster_id(), s.clone().cluster_id());
        assert!(s.cluster_id().starts_with("k-"));
        assert_eq!(s.cluster_id().len(), 10);
    }
}
