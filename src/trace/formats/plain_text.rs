//! Plain-text agent run logs (not JSON): what `python agent.py > run.log` leaves behind.
//!
//! A text file is read as one trace when its lines carry the marks of an agent run (split
//! into turns by their speakers when it shows two or more, else one message holding the whole
//! log); otherwise it is not a trace, and the reason says which marks were missing. Logs kept
//! as text inside JSON records (MAST) go through [`split_log`], which also reads a log that is
//! itself a JSON object (a task field and a trajectory) by its fields. The marks, by meaning rather than by one framework's wording:
//! role prefixes (`User:`, `[assistant]`, `Human:`), the ReAct fields (`Thought:`,
//! `Action:`, `Observation:`, `Final Answer:`), numbered steps or turns, run banners
//! (`New run`, `Entering new AgentExecutor chain`), and tool or model calls; behind a logger's
//! prefix (`date | LEVEL | module:fn:line - `), an agent's `Name's thoughts:` and a framework's
//! `Tool 'x' … Result:` count as role prefixes. A line structured as a turn (a role, a ReAct field or a step) and a second kind of
//! mark, or three such lines, make an agent log; words alone ("make one tool call at a
//! time" in a policy text) do not.
//!
//! A log that ends in an uncaught Python exception (`Traceback (most recent call last):`
//! … `SomeError: message`) records it as the step's error, so the run fails with the
//! exception's type and message (and model-API failures are classed as infrastructure).

use std::io::Read;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::common::transcript::{ListMode, file_stem, new_step, push_messages};
use super::{FileCtx, Format, Sink};
use crate::trace::model::{ErrorInfo, ErrorSource, Message, StepKind};
use crate::trace::read::{IN_MEMORY_BYTES, Opened, Pos};

struct Mark {
    what: &'static str,
    re: Regex,
}

static MARKS: LazyLock<Vec<Mark>> = LazyLock::new(|| {
    let mark = |what, re: &str| Mark { what, re: Regex::new(re).expect("a valid pattern") };
    vec![
        mark(
            "role prefixes (`User:`, `Assistant:`)",
            r"(?i)^[^\w\[<(]*(?:[\[<(]\s*(?:user|human|assistant|ai|system|agent|tool|model|bot)\s*[\]>)]|(?:user|human|assistant|ai|system|agent|tool|model|bot)\s*(?::|>{1,2}|-{1,2}>))",
        ),
        mark(
            "ReAct fields (`Thought:`, `Action:`, `Observation:`)",
            r"(?i)^[^\w]*(?:thoughts?|actions?|action input|observations?|final answer|plan|reflection)\s*\d*\s*:",
        ),
        mark("numbered steps or turns", r"(?i)^[^\w]*(?:step|turn|iteration|round)\s*[:#]?\s*\d+\b"),
        mark(
            "run banners (`New run`, `Entering new … chain`)",
            r"(?i)\b(?:new run|run (?:started|finished|failed)|agent (?:started|finished|run)|entering new \w+ chain|finished chain)\b",
        ),
        mark(
            "tool calls",
            r"(?i)\b(?:calling|invoking|running|executing)\s+(?:the\s+)?(?:tool|function)\b|\btool[_ ]?(?:call|use|result|output)s?\b|\bfunction[_ ]call\b",
        ),
        mark(
            "model calls",
            r"(?i)\b(?:llm|model|chat\.completions?|completion)\s+(?:call|request|response)\b|\bPOST\s+\S*/(?:chat/completions|messages|responses)\b",
        ),
    ]
});

/// A closing line that reports an exception by its class: `agent run failed: XError …`,
/// `Fatal: XError: …`, `XException: …`.
static REPORTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:(?:.*\b(?i:failed|error|fatal|exception|aborted)\b[^:]*:\s*)?)((?:[a-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception))\b:?\s*(.*)$")
        .expect("a valid pattern")
});

static EXCEPTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exceeded|Timeout|Interrupt|Exit)\w*)(?::\s*(.*))?$")
        .expect("a valid pattern")
});

/// A log line's prefix that is not what was said: a timestamp, a level, a logger's name
/// (`[2025-01-17 11:36:43 INFO] `, `2025-01-17 11:40:27.872 | INFO | pkg.mod:fn:391 - `,
/// `Agent_x - INFO - `).
static LOG_PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:\[[^\]]{0,60}\]\s*|\d{4}-\d\d-\d\d[ T][\d:.,]+\s*\|\s*\w+\s*\|\s*\S+\s+-\s+|\S+\s+-\s+(?:INFO|DEBUG|WARNING|ERROR)\s+-\s+)",
    )
    .expect("a valid pattern")
});

/// After a log prefix: `Name: …`, `Name(Role): …`, `Name's Response:` or `Name's thoughts:`
/// opening what someone said. A bare `Name:` ending its line is a section header
/// (`NEW MESSAGES:`), not a speaker; `Name's thoughts:` often has its text on the next lines.
static SPEAKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^([A-Z][\w-]*(?:\s[A-Z][\w-]*){0,2}(?:\([\w ]{1,40}\))?)(?:('s\s+(?i:response|reply|message|output|thoughts?|thinking|reasoning|answer))\s*:(?:\s|$)|\s*:\s)",
    )
    .expect("a valid pattern")
});

/// After a log prefix: a tool's result reported by the framework, `Tool 'x' completed! Result:`,
/// `Function x returned:`, `Tool x output:` (the name may be quoted; a few words may follow it).
static TOOL_RESULT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)^(?:tool|function)\s+['"`]?([\w.-]+)['"`]?[^:]{0,60}?\b(?:results?|outputs?|returned|observations?)\s*:"#)
        .expect("a valid pattern")
});

/// A line that is only a turn's header: `Response from X`, `Message to X`,
/// `---------- X ----------`, `FROM: X TO: Y`, `Code Execution Output`.
static HEADER: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    let re = |s: &str| Regex::new(s).expect("a valid pattern");
    vec![
        (re(r"(?i)^(?:response|reply|answer)s?\s+from\s+(.{1,60}?)\s*:?$"), "assistant"),
        // Said by whoever sends it: the header is the speaker.
        (re(r"(?i)^((?:message|request|instruction)s?\s+(?:to|for)\s+.{1,60}?)\s*:?$"), "assistant"),
        (re(r"^[-=*#~]{3,}\s*([^-=*#~\s][^-=*#~]{0,60}?)\s*[-=*#~]{3,}$"), "assistant"),
        (re(r"^FROM:\s*(\S+)"), "assistant"),
        (re(r"(?i)^((?:code\s+)?execution\s+(?:output|result)s?|tool\s+(?:output|result)s?)\s*:?$"), "tool"),
    ]
});

/// Most turns a log is split into: past this, it is one more turn (a log that prints a
/// ReAct field on every line is not a conversation of thousands).
const MAX_TURNS: usize = 400;

/// The role of a speaker named in a log: people are the user, terminals and observations
/// are tools, anyone else is an agent.
fn role_of(name: &str) -> &'static str {
    let n = name.to_ascii_lowercase();
    if n.starts_with("user") || n.starts_with("human") {
        "user"
    } else if ["observation", "tool", "terminal", "executor", "output", "result"].iter().any(|w| n.contains(w)) {
        "tool"
    } else if n.starts_with("system") {
        "system"
    } else {
        "assistant"
    }
}

/// A logger's line whose message opens a turn: (role, speaker name, what follows, and
/// whether it is an agent log's own wording: `Name's thoughts:` or a tool's result, which a
/// service's log does not print, unlike `Config: loaded`).
fn logged_turn(line: &str) -> Option<(&'static str, Option<String>, String, bool)> {
    let m = LOG_PREFIX.find(line)?;
    // Loggers decorate messages with emoji or bullets before the speaker (`✨ Manus's thoughts:`).
    let rest = line[m.end()..].trim_start_matches(|c: char| !c.is_alphanumeric());
    let after = |c: &regex::Captures<'_>| rest[c.get(0).map_or(0, |m| m.end())..].trim().to_string();
    if let Some(c) = SPEAKER.captures(rest) {
        let name = c[1].to_string();
        return Some((role_of(&name), Some(name), after(&c), c.get(2).is_some()));
    }
    TOOL_RESULT.captures(rest).map(|c| ("tool", None, after(&c), true))
}

/// Who opens a turn on this line, if anyone: (role, speaker name, what follows on the line).
fn opener(raw: &str) -> Option<(&'static str, Option<String>, String)> {
    // Logs printed inside JSON string lists: `"Action:",`.
    let line = raw.trim().trim_end_matches(',').trim_matches('"').trim();
    if line.is_empty() || line.len() > 400 {
        return None;
    }
    if let Some((role, name, rest, _)) = logged_turn(line) {
        return Some((role, name, rest));
    }
    for (re, role) in HEADER.iter() {
        if let Some(c) = re.captures(line) {
            let name = c[1].trim().to_string();
            let role = if *role == "tool" { "tool" } else { role_of(&name) };
            return Some((role, Some(name), String::new()));
        }
    }
    // Role prefixes, ReAct fields, numbered steps: a plain role, no agent's name (so a
    // Thought, its Action and its Action Input are one turn, the Observation the next).
    for m in &MARKS[..3] {
        if let Some(found) = m.re.find(line) {
            let word: String = found.as_str().chars().filter(|c| c.is_alphabetic()).collect();
            return Some((role_of(&word), None, line[found.end()..].trim().to_string()));
        }
    }
    None
}

/// A free-text log as the turns it is made of, as chat messages (`role`, `name`,
/// `content`) for `push_messages`: the text before the first turn is the task, as the
/// user's. Consecutive turns of one speaker are one. Empty when the log has fewer than two
/// turns: then it stays one message, as before, rather than a guess.
pub(crate) fn split_turns(text: &str) -> Vec<Value> {
    let mut head: Vec<&str> = Vec::new();
    let mut turns: Vec<(&'static str, Option<String>, String)> = Vec::new();
    for line in text.lines() {
        match opener(line) {
            Some((role, name, rest)) if turns.len() < MAX_TURNS => match turns.last_mut() {
                Some(last) if last.0 == role && last.1 == name => push_line(&mut last.2, line),
                _ => turns.push((role, name, rest)),
            },
            _ => match turns.last_mut() {
                Some(last) => push_line(&mut last.2, line),
                None => head.push(line),
            },
        }
    }
    if turns.len() < 2 {
        return Vec::new();
    }
    let task = head.join("\n");
    let mut msgs = Vec::with_capacity(turns.len() + 1);
    if !task.trim().is_empty() {
        msgs.push(serde_json::json!({"role": "user", "content": task.trim()}));
    }
    for (role, name, content) in turns {
        let mut m = serde_json::json!({"role": role, "content": content.trim()});
        if let (Some(n), "assistant") = (name, role) {
            m["name"] = Value::String(n);
        }
        msgs.push(m);
    }
    msgs
}

/// Keys that hold a JSON-shaped log's task, and its turns, in the order looked for.
const JSON_TASK_KEYS: [&str; 5] = ["problem_statement", "prompt", "task", "question", "instruction"];
const JSON_TURN_KEYS: [&str; 5] = ["trajectory", "history", "messages", "content", "log"];

/// A log given as text, split into turns: a JSON object printed as text (MAST's SWE-bench,
/// MathChat and MetaGPT records) by its fields, other text by [`split_turns`]. Empty when
/// fewer than two turns show.
pub(crate) fn split_log(text: &str) -> Vec<Value> {
    let json = split_json_log(text);
    if json.is_empty() { split_turns(text) } else { json }
}

/// A JSON object holding a task and a log: the task as the user's, then the log's turns,
/// either its own message objects (`role`, `name`, `content`) or its text (a string, or a
/// list of lines) split by [`split_turns`].
fn split_json_log(text: &str) -> Vec<Value> {
    let t = text.trim_start();
    if !t.starts_with('{') {
        return Vec::new();
    }
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(t) else { return Vec::new() };
    let Some(body) = JSON_TURN_KEYS.iter().find_map(|k| o.get(*k)) else { return Vec::new() };
    let mut msgs: Vec<Value> = match body {
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
            items.iter().map(unquoted_message).collect()
        }
        Value::Array(_) | Value::String(_) => split_turns(&lines_of(body)),
        _ => Vec::new(),
    };
    if msgs.len() < 2 {
        return Vec::new();
    }
    if let Some(task) = JSON_TASK_KEYS.iter().find_map(|k| o.get(*k)).map(lines_of).filter(|t| !t.trim().is_empty()) {
        msgs.insert(0, serde_json::json!({"role": "user", "content": task.trim()}));
    }
    msgs
}

/// A string, or a list of lines, as one text.
fn lines_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}

/// A logged message whose role and name were printed with Python's quotes (`"'assistant'"`).
fn unquoted_message(m: &Value) -> Value {
    let mut m = m.clone();
    for key in ["role", "name"] {
        if let Some(s) = m.get(key).and_then(Value::as_str) {
            m[key] = Value::String(s.trim().trim_matches('\'').to_string());
        }
    }
    if let Some(content) = m.get("content").filter(|c| c.is_array()) {
        m["content"] = Value::String(lines_of(content));
    }
    m
}

fn push_line(text: &mut String, line: &str) {
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(line);
}

/// The first marks are the structure of a run (roles, ReAct fields, steps, run banners);
/// the rest are words.
const STRUCTURAL: usize = 4;

/// Lines looked at to decide (the head of the file).
const JUDGED_LINES: usize = 400;

/// `Ok(reason)` when the text looks like an agent's log, `Err(reason)` when it does not.
pub fn judge(head: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(head);
    let mut hits = vec![0usize; MARKS.len()];
    for line in text.lines().take(JUDGED_LINES) {
        for (i, m) in MARKS.iter().enumerate() {
            if m.re.is_match(line) {
                hits[i] += 1;
            }
        }
        // A speaker behind a logger's prefix is a role prefix the patterns cannot anchor.
        if logged_turn(line).is_some_and(|t| t.3) {
            hits[0] += 1;
        }
    }
    let kinds: Vec<&str> = MARKS.iter().zip(&hits).filter(|(_, n)| **n > 0).map(|(m, _)| m.what).collect();
    // Tool and model calls are also what documentation talks about ("make one tool call at
    // a time"): a log needs the structure of a run too, lines that start as turns do.
    let structural = &hits[..STRUCTURAL];
    if structural.iter().any(|n| *n > 0) && (kinds.len() >= 2 || structural.iter().any(|n| *n >= 3)) {
        Ok(format!("plain-text agent log: {}", kinds.join(", ")))
    } else {
        Err("not a trace: plain text, not JSON, without the marks of an agent log (role prefixes such as \
             `User:`/`Assistant:`, `Thought:`/`Action:`/`Observation:`, numbered steps, tool or model calls)"
            .into())
    }
}

/// Read a text file judged an agent log into one trace.
pub fn parse(opened: Opened, ctx: &mut FileCtx<'_>, sink: &mut Sink<'_>) -> Result<(), super::ParseError> {
    let mut bytes = Vec::new();
    let read = opened.into_reader().take(IN_MEMORY_BYTES + 1).read_to_end(&mut bytes);
    if let Err(e) = read {
        return Err(super::ParseError { location: Pos::Byte(bytes.len() as u64).to_string(), message: e.to_string() });
    }
    if bytes.len() as u64 > IN_MEMORY_BYTES {
        bytes.truncate(IN_MEMORY_BYTES as usize);
        ctx.warn(Pos::Byte(IN_MEMORY_BYTES), format!("log over {} MiB: the rest is not read", IN_MEMORY_BYTES >> 20));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut trace = ctx.trace(Format::TextLog, file_stem(ctx.path), Pos::Line(1));
    trace.source.location = None;
    let turns = split_turns(&text);
    if !turns.is_empty() {
        push_messages(&mut trace, &turns, ListMode::History);
        // The exception a log ends with ends its last turn.
        if let (Some(e), Some(last)) = (final_exception(&text), trace.steps.last_mut()) {
            last.error = Some(e);
        }
        sink(trace);
        return Ok(());
    }
    let mut step = new_step("log", 0, StepKind::System);
    step.name = Some("log".into());
    step.error = final_exception(&text);
    step.transcript_range = Some((0, 1));
    let msg = Message::text("system", text.as_str());
    step.output_messages = vec![msg.clone()];
    step.output = Some(Value::String(text));
    trace.transcript.push(msg);
    trace.steps.push(step);
    sink(trace);
    Ok(())
}

/// The exception a log ends with: the last `Type: message` line of a traceback near its
/// end, or a closing line that reports one by its class (then the lines after it are its
/// message).
fn final_exception(text: &str) -> Option<ErrorInfo> {
    traceback_exception(text).or_else(|| reported_exception(text))
}

fn reported_exception(text: &str) -> Option<ErrorInfo> {
    let tail: Vec<&str> = text.lines().rev().filter(|l| !l.trim().is_empty()).take(3).collect();
    for (i, line) in tail.iter().enumerate() {
        let Some(c) = REPORTED.captures(line.trim()) else { continue };
        let mut message: Vec<&str> = vec![c.get(2).map_or("", |m| m.as_str()).trim()];
        message.extend(tail[..i].iter().rev().map(|l| l.trim()));
        let message = message.into_iter().filter(|m| !m.is_empty()).collect::<Vec<_>>().join(" ");
        let mut err = ErrorInfo::new(ErrorSource::Exception).with_type(&c[1]);
        if !message.is_empty() {
            err = err.with_message(message);
        }
        return Some(err);
    }
    None
}

fn traceback_exception(text: &str) -> Option<ErrorInfo> {
    let tail: Vec<&str> = text.lines().rev().take(60).collect();
    let tb = tail.iter().position(|l| l.trim_start().starts_with("Traceback (most recent call last)"))?;
    // The exception line follows the traceback's frames: the last match below its header.
    tail[..tb].iter().find_map(|line| {
        let c = EXCEPTION.captures(line.trim_end())?;
        let mut err = ErrorInfo::new(ErrorSource::Exception).with_type(&c[1]);
        if let Some(m) = c.get(2).map(|m| m.as_str().trim()).filter(|m| !m.is_empty()) {
            err = err.with_message(m);
        }
        Some(err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_logs_and_other_text() {
        let react = "Question: refund order 7\nThought: I need the order\nAction: lookup_order\nAction Input: 7\nObservation: {\"status\": \"delivered\"}\nFinal Answer: refunded\n";
        assert!(judge(react.as_bytes()).unwrap().contains("ReAct"));
        let chat = "[user] cancel my order\n[assistant] calling tool cancel_order(7)\n[tool] ok\n";
        assert!(judge(chat.as_bytes()).is_ok());
        let steps = "=== Step 1 ===\nran ls\n=== Step 2 ===\nran cat\n=== Step 3 ===\ndone\n";
        assert!(judge(steps.as_bytes()).is_ok());
        for other in [
            "Return policy\n\nItems may be returned within 30 days.\nA user may ask for a refund.\n",
            "0\n",
            "# Policy\n- You should at most make one tool call at a time.\n- Before a tool call, confirm.\n- Never call a tool twice.\n",
            "collected 3 items\ntests/test_a.py ...\n3 passed in 0.1s\n",
        ] {
            let why = judge(other.as_bytes()).unwrap_err();
            assert!(why.starts_with("not a trace: plain text"), "{other:?}: {why}");
        }
    }

    #[test]
    fn logs_split_into_turns_by_their_speakers() {
        let roles = |t: &str| -> Vec<(String, String)> {
            split_turns(t)
                .iter()
                .map(|m| (m["role"].as_str().unwrap().to_string(), m["name"].as_str().unwrap_or("").to_string()))
                .collect()
        };
        let react = "Question: refund order 7\nThought: I need the order\nAction: lookup_order\nAction Input: 7\nObservation: {\"status\": \"delivered\"}\nThought: done\nFinal Answer: refunded\n";
        let got = roles(react);
        let want = [("user", ""), ("assistant", ""), ("tool", ""), ("assistant", "")];
        assert_eq!(got, want.map(|(r, n)| (r.to_string(), n.to_string())), "{:#?}", split_turns(react));
        let multi = "Task 3: mark the note done\nResponse from Supervisor Agent\n  I will ask the notes agent\nMessage to Notes Agent\n  find the note\nCode Execution Output\n  Execution failed.\n---------- WebSurfer ----------\nI typed it\n[2025-01-17 11:36:43 INFO] Programmer: **here is the code**\nmore code\n";
        let got = roles(multi);
        let want = [
            ("user", ""),
            ("assistant", "Supervisor Agent"),
            ("assistant", "Message to Notes Agent"),
            ("tool", ""),
            ("assistant", "WebSurfer"),
            ("assistant", "Programmer"),
        ];
        assert_eq!(got, want.map(|(r, n)| (r.to_string(), n.to_string())));
        assert_eq!(split_turns(multi)[0]["content"], "Task 3: mark the note done");
        // One turn, or none, is not a conversation: the log stays one message.
        assert!(split_turns("Thought: only this\nand more text\n").is_empty());
        assert!(split_turns("plain words\nwith no speaker\n").is_empty());
    }

    /// Logs whose lines are all logger lines (`date | LEVEL | module:fn:line - message`), the
    /// speaker decorated with an emoji and often alone on its line, tool results reported by
    /// the framework (MAST's OpenManus log was one step: nothing there opened a turn).
    #[test]
    fn logger_lines_with_decorated_speakers_and_tool_reports_split_into_turns() {
        let log = include_str!("../../../tests/fixtures/variants/plain-text/loguru_tool_agent.log");
        let msgs = split_turns(log);
        let got: Vec<(&str, &str)> =
            msgs.iter().map(|m| (m["role"].as_str().unwrap(), m["name"].as_str().unwrap_or(""))).collect();
        let want = [("user", ""), ("assistant", "Scout"), ("tool", ""), ("assistant", "Scout"), ("tool", "")];
        assert_eq!(got, want, "{msgs:#?}");
        assert!(msgs[0]["content"].as_str().unwrap().contains("How many moons of Jupiter"), "{}", msgs[0]);
        // The thought's text on the next line, and the call's arguments, stay in the agent's turn.
        let thought = msgs[1]["content"].as_str().unwrap();
        assert!(thought.contains("I will search") && thought.contains("Tool arguments"), "{thought}");
        assert!(msgs[2]["content"].as_str().unwrap().starts_with("Observed output of cmd `web_search`"), "{}", msgs[2]);
        // Other decorations and wordings of the same two marks.
        let other = "[09:00:01] • Planner's reasoning:\nsplit the job\n[09:00:02] → Function fetch_page returned: 404 Not Found\n[09:00:03] Planner: giving up\n";
        let got: Vec<String> = split_turns(other).iter().map(|m| m["role"].as_str().unwrap().to_string()).collect();
        assert_eq!(got, ["assistant", "tool", "assistant"], "{:#?}", split_turns(other));
        // A bare `NAME:` ending a logger's line is a section header, not a speaker.
        let headed = "[09:00] Alice: hi\n[09:01] NEW MESSAGES:\n[09:02] Bob: hello\n";
        let names: Vec<String> = split_turns(headed).iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, ["Alice", "Bob"]);
        // Read as a file, it is an agent log; a service's log with `Name: value` lines is not.
        assert!(judge(log.as_bytes()).is_ok());
        let service = "2026-02-03 09:00:00.000 | INFO | app:main:1 - Config: loaded\n\
                       2026-02-03 09:00:00.100 | INFO | app:main:2 - Server: listening on 8080\n\
                       2026-02-03 09:00:00.200 | INFO | app:main:3 - Cache: warm\n";
        assert!(judge(service.as_bytes()).is_err());
        // Without a logger's prefix, such words are prose, not turns.
        assert!(split_turns("Tool x finished. Result: ok\nThe tool output: 3\n").is_empty());
    }

    #[test]
    fn a_final_traceback_is_the_error() {
        let log = "User: hi\nAssistant: calling tool\nTraceback (most recent call last):\n  File \"a.py\", line 3, in <module>\n    run()\nopenai.InternalServerError: Error code: 500 - {'error': 'boom'}\n";
        let e = final_exception(log).unwrap();
        assert!(e.r#type.as_deref().is_some_and(|t| t.ends_with("InternalServerError")), "{e:?}");
        assert_eq!(e.message.as_deref(), Some("Error code: 500 - {'error': 'boom'}"));
        assert!(final_exception("User: hi\nAssistant: done\n").is_none());
        assert!(final_exception("Thought: a ValueError earlier\nFinal Answer: done\n").is_none());
        let e = final_exception(
            "Step 1\nagent run failed: AgentGenerationError Error while generating output:\nError code: 500 - oops\n",
        )
        .unwrap();
        assert_eq!(e.r#type.as_deref(), Some("AgentGenerationError"));
        assert_eq!(e.message.as_deref(), Some("Error while generating output: Error code: 500 - oops"));
    }

    #[test]
    fn json_shaped_logs_split_by_their_fields() {
        let turns = |t: &str| -> Vec<(String, String)> {
            split_log(t)
                .iter()
                .map(|m| (m["role"].as_str().unwrap().to_string(), m["name"].as_str().unwrap_or("").to_string()))
                .collect()
        };
        // SWE-bench agents: the issue as a list of lines, the log as a list of lines.
        let swe = serde_json::json!({
            "instance_id": "x__y-1", "problem_statement": ["Fix the bug", "in parse()"],
            "trajectory": [
                "Agent_x - INFO - Planner's Response: Thought: look at parse",
                "Subgoal: open the file",
                "Agent_x - INFO - Inner-Navigator-Assistant's Response: Thought: opening it",
                "Action:", "open_file(\"a.py\")"
            ]
        })
        .to_string();
        let got = turns(&swe);
        assert_eq!(got[0], ("user".to_string(), String::new()), "{:#?}", split_log(&swe));
        assert_eq!(split_log(&swe)[0]["content"], "Fix the bug\nin parse()");
        assert_eq!(got[1], ("assistant".to_string(), "Planner".to_string()));
        assert_eq!(got[2], ("assistant".to_string(), "Inner-Navigator-Assistant".to_string()));
        // Chat agents: message objects whose role and name were printed with Python's quotes.
        let chat = serde_json::json!({
            "problem_statement": ["How many bows?"],
            "trajectory": [
                {"content": "Let's use Python.", "role": "'assistant'", "name": "'mathproxyagent'"},
                {"content": ["Key idea:", "12 gifts"], "role": "'user'", "name": "'assistant'"}
            ]
        })
        .to_string();
        let msgs = split_log(&chat);
        assert_eq!(msgs.len(), 3);
        assert_eq!((msgs[1]["role"].as_str(), msgs[1]["name"].as_str()), (Some("assistant"), Some("mathproxyagent")));
        assert_eq!(msgs[2]["content"], "Key idea:\n12 gifts");
        // A prompt and a log text.
        let log = serde_json::json!({
            "run_id": 4, "prompt": "write fib",
            "content": "2025-01-17 11:26:53.893 | INFO     | m.role:_act:391 - Alice(SimpleCoder): to do code\ndef fib(): ...\n2025-01-17 11:26:55.001 | INFO     | m.role:_act:391 - Bob(SimpleTester): to do tests\n"
        })
        .to_string();
        let got = turns(&log);
        assert_eq!(
            got.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
            ["", "Alice(SimpleCoder)", "Bob(SimpleTester)"]
        );
        // Other JSON, or a log without turns, is not split.
        assert!(split_log(r#"{"a": 1}"#).is_empty());
        assert!(split_log(r#"{"prompt": "x", "content": "one line only"}"#).is_empty());
    }
}
