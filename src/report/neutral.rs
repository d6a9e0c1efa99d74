//! Text from models and traces, neutralised for the medium it is written to. Such text is
//! untrusted: printed raw, an escape sequence can clear a terminal and fake a "✔ PASS"
//! line; pasted raw into a PR comment, `<script>` and `@everyone` do what they say.
//!
//! - [`terminal`]: every control character but `\n` and `\t` (ESC, CSI, OSC, C0, C1, DEL, and
//!   the bidi overrides that reorder what a reader sees) becomes a visible `\u{…}`;
//!   [`crate::report::Output`] applies it to everything it prints, keeping only its own colors.
//! - [`md_text`], [`md_code`], [`md_block`]: Markdown without HTML, mentions or a way out
//!   of a code span or fence.
//! - [`html`] and [`xml`]: escaped text, with characters XML 1.0 forbids dropped.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is.
fn is_unsafe_char(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        c if c.is_control() => true, // C0, DEL, C1 (U+0080–U+009F, which includes CSI U+009B)
        // Bidi embeddings, overrides and isolates ("Trojan Source"), and line/paragraph separators.
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' => true,
        _ => false,
    }
}

fn visible(c: char, out: &mut String) {
    use std::fmt::Write as _;
    let _ = match c {
        '\r' => write!(out, "\\r"),
        '\x1b' => write!(out, "\\e"),
        c => write!(out, "\\u{{{:x}}}", c as u32),
    };
}

/// Text for a terminal: control characters made visible (`\e`, `\r`, `\u{9b}`), `\n` and `\t`
/// kept. Borrowed when nothing needed changing.
pub fn terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_char(c) { visible(c, &mut out) } else { out.push(c) }
    }
    Cow::Owned(out)
}

/// The SGR sequences autoharness itself writes (`report::output::paint`, the log formatter):
/// colors and bold/dim/italic only, nothing that moves the cursor, clears, or hides text.
fn own_sgr(text: &str) -> Option<usize> {
    let rest = text.strip_prefix("\x1b[")?;
    let end = rest.find('m')?;
    let params = &rest[..end];
    let ok = params.len() <= 16
        && params.split(';').all(|p| {
            matches!(
                p,
                "" | "0" | "1" | "2" | "3" | "22" | "23" | "39" | "31" | "32" | "33" | "34" | "35" | "36" | "37"
            )
        });
    ok.then_some(2 + end + 1)
}

/// [`terminal`] for a whole rendered document that may carry autoharness's own colors:
/// those SGR sequences are kept when `keep_colors`, everything else is made visible.
pub fn terminal_keeping_colors(text: &str, keep_colors: bool) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if keep_colors && let Some(n) = own_sgr(rest) {
            out.push_str(&rest[..n]);
            i += n;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        if is_unsafe_char(c) {
            visible(c, &mut out)
        } else {
            out.push(c)
        }
        i += c.len_utf8();
    }
    Cow::Owned(out)
}

/// One line of untrusted text in a table cell or a list: newlines become `⏎` so the text
/// cannot start a line of its own (a fake verdict), then [`terminal`].
pub fn one_line(text: &str) -> String {
    terminal(&text.replace("\r\n", "⏎").replace(['\n', '\r'], "⏎")).into_owned()
}

/// `@name` → `@\u{200B}name`: renders the same, notifies nobody.
fn defuse_mentions(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '@'
            && !prev.is_some_and(|p| p.is_alphanumeric())
            && chars.peek().is_some_and(|n| n.is_alphanumeric() || *n == '_' || *n == '-')
        {
            out.push('\u{200B}');
        }
        prev = Some(c);
    }
    out
}

fn strip_controls(text: &str) -> String {
    text.chars().filter(|&c| !is_unsafe_char(c) || c == '\n').collect()
}

/// Inline Markdown text (a table cell, a list item): HTML and Markdown syntax escaped,
/// mentions defused, one line, no control characters.
pub fn md_text(text: &str) -> String {
    let flat = strip_controls(text).replace("\r\n", " ").replace('\n', " ");
    let mut out = String::with_capacity(flat.len() + 8);
    for c in flat.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    defuse_mentions(&out)
}

fn longest_run(text: &str, of: char) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in text.chars() {
        run = if c == of { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// An inline code span that holds any text: fenced with more backticks than any run
/// inside, padded so edge backticks stay content, one line, `|` escaped for tables (GFM
/// splits cells on it even inside code).
pub fn md_code(text: &str) -> String {
    let flat = strip_controls(text).replace("\r\n", " ").replace('\n', " ").replace('|', "\\|");
    let fence = "`".repeat(longest_run(&flat, '`') + 1);
    format!("{fence} {flat} {fence}")
}

/// A fenced block that holds any text: the fence is longer than any backtick run inside
/// (at least three), so the text cannot close it and continue as Markdown.
pub fn md_block(text: &str, info: &str) -> String {
    let body = strip_controls(text);
    let fence = "`".repeat((longest_run(&body, '`') + 1).max(3));
    let nl = if body.ends_with('\n') { "" } else { "\n" };
    format!("{fence}{info}\n{body}{nl}{fence}\n")
}

/// XML 1.0 text and attribute escaping; characters XML forbids (C0 but tab/LF/CR,
/// U+FFFE/U+FFFF) are dropped, and the discouraged C1 controls with them.
pub fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// HTML text and attribute escaping: the same as [`xml`].
pub fn html(text: &str) -> String {
    xml(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "ok\x1b[2J\x1b[H\x1b]0;title\x07\r\u{9b}31m✔ PASS\u{202E}gnp.exe\u{7f}";

    #[test]
    fn terminal_text_has_no_control_characters_left() {
        let t = terminal(HOSTILE);
        assert!(!t.chars().any(|c| c.is_control()), "{t:?}");
        assert!(t.contains("\\e[2J") && t.contains("\\r") && t.contains("\\u{9b}") && t.contains("\\u{202e}"), "{t}");
        assert_eq!(terminal("a\n\tb"), "a\n\tb");
        assert!(matches!(terminal("plain"), Cow::Borrowed(_)));
        assert!(!one_line("a\n✔ PASS").contains('\n'));
    }

    #[test]
    fn own_colors_survive_and_nothing_else() {
        let doc = format!("\x1b[1m\x1b[32m✔ PASS\x1b[0m {HOSTILE} \x1b[8mhidden\x1b[0m");
        let t = terminal_keeping_colors(&doc, true);
        assert!(t.starts_with("\x1b[1m\x1b[32m✔ PASS\x1b[0m"), "{t:?}");
        assert!(t.contains("\\e[2J") && t.contains("\\e[8m"), "{t:?}");
        assert_eq!(t.matches('\x1b').count(), 4, "{t:?}");
        assert!(!terminal_keeping_colors(&doc, false).contains('\x1b'));
    }

    #[test]
    fn markdown_is_inert() {
        let t = md_text("<script>alert(1)</script> @everyone hi @bob, mail a@b.c | x");
        assert!(!t.contains('<') && t.contains("&lt;script&gt;"), "{t}");
        assert!(t.contains("@\u{200B}everyone") && t.contains("@\u{200B}bob") && t.contains("a@b.c"), "{t}");
        assert!(t.contains("\\|"), "{t}");
        let c = md_code("a ``` b ` c");
        assert!(c.starts_with("```` ") && c.ends_with(" ````"), "{c}");
        let b = md_block("x\n```\n# not a heading\n````\n", "text");
        assert!(b.starts_with("`````text\n") && b.ends_with("`````\n"), "{b}");
    }

    #[test]
    fn xml_drops_what_xml_forbids() {
        assert_eq!(xml("a\u{1}b\u{1b}c\u{9b}<&>\"'\u{FFFF}"), "abc&lt;&amp;&gt;&quot;&apos;");
    }
}
