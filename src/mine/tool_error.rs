//! One tool's failure, one signature, whichever exporter recorded it.
//!
//! The same exception raised by the same tool reaches us in many shapes: an OTel exception
//! event (`exception.type` = `ValueError`, `exception.message` = the text), a LangSmith run
//! whose error is the exception's repr followed by its traceback (`ValueError('…')Traceback
//! …`), the Agents SDK's span error (`Error running tool cancel_order: …`, no class at all),
//! a transcript's tool result (`Traceback (most recent call last): … ValueError: …`,
//! `<tool_use_error>…</tool_use_error>`, `Error: …`). Which reader found the error (span
//! status, exception event, text heuristic) and whether it knew the exception class are
//! properties of the exporter, not of the failure, so neither is part of a tool error's
//! signature: it is the tool and what the tool said ([`core_message`]), read by meaning —
//! the innermost exception's message, without the exception class, its repr quotes, a
//! framework's "error … :" wrapper or an error tag. The exporter's words stay the
//! failure's message and excerpt (the evidence).

/// The message a tool's error carries once the exporter's wrapping is taken off: the last
/// exception of a traceback, an exception repr's argument, the text after a leading
/// exception class or error phrase (`ValueError: `, `Error running tool x: `,
/// `Exception: `), an error tag's content. One line: the first of what is left.
pub fn core_message(message: &str) -> String {
    let mut text = message.trim().to_string();
    // An exit status says only that a command failed; what failed is in the output after
    // it, as the message's first lines carry it.
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next().is_some_and(is_exit_status) {
        return text.lines().map(str::trim).filter(|l| !l.is_empty()).take(3).collect::<Vec<_>>().join(" ");
    }
    if let Some(inner) = tagged(&text, "tool_use_error") {
        text = inner;
    }
    if let Some(last) = traceback_exception(&text) {
        text = last;
    }
    // Wrappers nest ("Error in agent run: Error running tool x: ValueError: …"): peel each.
    for _ in 0..4 {
        let before = text.clone();
        if let Some(inner) = exception_repr(&text) {
            text = inner;
        }
        if let Some(rest) = wrapper_prefix(&text) {
            text = rest.to_string();
        }
        if text == before {
            break;
        }
    }
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    first.to_string()
}

/// `exitcode: 1 (execution failed)`, `Exit code: 2`, `exit status 127`, `Process exited
/// with code 1`: a line that reports a command's exit status.
fn is_exit_status(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    ["exitcode", "exit code", "exit status", "exited with code", "return code", "returncode"].iter().any(|k| {
        lower.find(k).is_some_and(|i| {
            let rest = lower[i + k.len()..].trim_start_matches([':', '=', ' ']);
            i < 20 && rest.starts_with(|c: char| c.is_ascii_digit() || c == '-')
        })
    })
}

/// The content of `<tag>…</tag>` when the text starts with it.
fn tagged(text: &str, tag: &str) -> Option<String> {
    let rest = text.strip_prefix(&format!("<{tag}>"))?;
    Some(rest.split(&format!("</{tag}>")).next().unwrap_or(rest).trim().to_string())
}

/// A dotted identifier whose last part names an exception class (`ValueError`,
/// `requests.exceptions.HTTPError`, `ToolException`, `KeyError`).
fn is_exception_class(word: &str) -> bool {
    let last = word.rsplit('.').next().unwrap_or(word);
    !word.is_empty()
        && word.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && last.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && ["Error", "Exception", "Exit", "Interrupt", "Warning", "Failure", "Fault"].iter().any(|s| last.ends_with(s))
}

/// The last exception line of a Python traceback (`ValueError: text`, or a bare class),
/// where the message of the innermost (last raised) exception is.
fn traceback_exception(text: &str) -> Option<String> {
    let at = text.rfind("Traceback (most recent call last)")?;
    text[at..]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
        .map(str::trim)
        .filter(|l| {
            let head = l.split(':').next().unwrap_or("");
            is_exception_class(head.trim())
        })
        .last()
        .map(str::to_string)
}

/// `ValueError('text')` / `ToolException("text")` at the start → `text`.
fn exception_repr(text: &str) -> Option<String> {
    let open = text.find('(')?;
    if !is_exception_class(&text[..open]) {
        return None;
    }
    let rest = &text[open + 1..];
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = &rest[1..];
    let end = inner.find(&format!("{quote})")).or_else(|| inner.rfind(quote))?;
    Some(inner[..end].to_string())
}

/// The text after a leading wrapper: an exception class (`ValueError: `) or a short
/// phrase that says an error happened (`Error: `, `Error running tool x: `, `Tool
/// execution failed: `). A prefix that names no error ("order A-1: …") is the message.
fn wrapper_prefix(text: &str) -> Option<&str> {
    let colon = text.find(": ")?;
    let head = &text[..colon];
    let rest = text[colon + 2..].trim_start();
    if rest.is_empty() || head.len() > 80 || head.contains(['\n', '\'', '"', '(']) {
        return None;
    }
    if is_exception_class(head) {
        return Some(rest);
    }
    let lower = head.to_ascii_lowercase();
    let says_error = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| matches!(w, "error" | "errors" | "exception" | "failed" | "failure"));
    says_error.then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tool_failure_reads_the_same_from_every_exporter() {
        let want = "order A-1 has already shipped and cannot be cancelled";
        for m in [
            // OTel exception event: the class is a separate attribute.
            "order A-1 has already shipped and cannot be cancelled",
            // Its exception.message with the class (console exporters, OpenInference).
            "ValueError: order A-1 has already shipped and cannot be cancelled",
            // LangSmith: repr, then the traceback.
            "ValueError('order A-1 has already shipped and cannot be cancelled')Traceback (most recent call last):\n  File \"x.py\", line 1",
            // The Agents SDK: its own wrapper, no class.
            "Error running tool cancel_order: order A-1 has already shipped and cannot be cancelled",
            // A transcript's tool result.
            "Traceback (most recent call last):\n  File \"t.py\", line 56, in cancel_order\n    raise ValueError(msg)\nValueError: order A-1 has already shipped and cannot be cancelled\n",
            "<tool_use_error>Error: order A-1 has already shipped and cannot be cancelled</tool_use_error>",
            "Error in agent run: Error running tool cancel_order: ValueError: order A-1 has already shipped and cannot be cancelled",
        ] {
            assert_eq!(core_message(m), want, "{m}");
        }
    }

    #[test]
    fn what_is_not_a_wrapper_stays() {
        assert_eq!(core_message("order A-1: not found"), "order A-1: not found");
        // An exit status keeps the output that says what failed.
        assert_eq!(core_message("Exit code: 2\nls: cannot access"), "Exit code: 2 ls: cannot access");
        assert_eq!(
            core_message("exitcode: 1 (execution failed)\nCode output: \nunknown language json"),
            "exitcode: 1 (execution failed) Code output: unknown language json"
        );
        assert_eq!(core_message("KeyError('sku')"), "sku");
        // The innermost exception of a chained traceback.
        let chained = "Traceback (most recent call last):\n  File \"a\"\nKeyError: 'x'\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"b\"\nRuntimeError: lookup failed";
        assert_eq!(core_message(chained), "lookup failed");
    }
}
