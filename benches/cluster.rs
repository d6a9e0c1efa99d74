//! Clustering at synthetic scale: N failures built from ~40 realistic error templates (tool
//! errors, HTTP 429/5xx, timeouts, permission denied, missing actions, loops…) with random
//! ids, numbers and paths substituted and random neighbourhood text, from a seeded RNG.
//! For each N: signature `template()` over the raw messages, `Idf` building, then
//! `cluster::assign`, with wall and CPU time, peak RSS and the growth factor between sizes.
//! Cases: "mixed" (prose from a small vocabulary: a few hundred clusters whatever N),
//! "long tail" (prose mostly from 30,000 rare words: clusters grow with N, the case that
//! exposes work growing with the cluster count), and 50,000 failures of one signature.
//! Each case runs in its own process so its peak RSS is its own; "base" is the RSS with the
//! generated failures in memory, before the timed work. Nothing here asserts a timing (the
//! machine is noisy).
//!
//! `cargo bench --bench cluster [-- N...]` (default: 1000 10000 100000).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashSet;
use std::time::Instant;

// The allocator of the `autoharness` binary (src/main.rs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use autoharness::mine::cluster::{self, Idf};
use autoharness::mine::failure::{CaseSeed, Failure};
use autoharness::mine::signature::{Signature, template};

const THRESHOLD: f64 = 0.5;

fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}

fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}

fn status_kb(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// xorshift64*: tiny, seeded, good enough to draw test data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// Skewed towards small indices (a few words are very common, most are rare).
    fn skewed(&mut self, n: usize) -> usize {
        ((n as f64) * self.unit().powf(2.5)) as usize % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// One error template. `tool: Some("*")` draws a tool; placeholders in `msg`: `{n}` number,
/// `{id}` prefixed id, `{uuid}`, `{hex}`, `{path}`, `{url}`, `{time}`, `{word}` identifier
/// (not masked: it varies the signature), `{Word}` capitalised identifier, `{tool}`, `{action}`.
struct Tpl {
    signal: &'static str,
    step: &'static str,
    tool: Option<&'static str>,
    error_type: Option<&'static str>,
    infra: bool,
    msg: &'static str,
    topic: &'static [&'static str],
}

const fn t(
    signal: &'static str,
    step: &'static str,
    tool: Option<&'static str>,
    error_type: Option<&'static str>,
    infra: bool,
    msg: &'static str,
    topic: &'static [&'static str],
) -> Tpl {
    Tpl { signal, step, tool, error_type, infra, msg, topic }
}

const ANY: Option<&str> = Some("*");

#[rustfmt::skip]
const TEMPLATES: &[Tpl] = &[
    t("error:tool_result_flag", "tool", ANY, None, false, "Error: command exited with code {n}: {path}: No such file or directory", &["file", "directory", "missing"]),
    t("error:exception", "tool", ANY, Some("PermissionError"), false, "PermissionError: [Errno 13] Permission denied: '{path}'", &["permission", "denied", "chmod"]),
    t("error:exception", "tool", ANY, Some("KeyError"), false, "Traceback (most recent call last):\n  File \"{path}\", line {n}, in {word}\nKeyError: '{word}'", &["traceback", "key", "dict"]),
    t("error:span_status", "llm", None, Some("RateLimitError"), true, "Error code: 429 - {'error': {'message': 'Rate limit reached for gpt-4o in organization org-{id} on tokens per min (TPM): Limit {n}, Used {n}, Requested {n}. Please try again in {n}ms.', 'type': 'tokens'}}", &["rate", "limit", "retry"]),
    t("error:span_status", "llm", None, Some("InternalServerError"), true, "Error code: 500 - {'error': {'message': 'The server had an error while processing your request. Sorry about that!', 'type': 'server_error'}} request_id req_{hex}", &["server", "error", "upstream"]),
    t("error:exception", "llm", None, Some("InternalServerError"), true, "anthropic.InternalServerError: Error code: 529 - {'type': 'error', 'error': {'type': 'overloaded_error', 'message': 'Overloaded'}}", &["overloaded", "capacity"]),
    t("error:tool_result_flag", "tool", ANY, None, false, "Command timed out after {n} seconds: {word} --{word} {path}", &["timeout", "command", "killed"]),
    t("error:exception", "llm", None, Some("ReadTimeout"), true, "httpx.ReadTimeout: timed out after {n}s waiting for {url}", &["timeout", "network", "read"]),
    t("action:missing", "llm", None, None, false, "expected action {action} was never called", &["order", "user", "request"]),
    t("action:wrong_arguments", "tool", ANY, None, false, "expected action {action} called with other arguments", &["arguments", "item", "order"]),
    t("action:unexpected", "tool", ANY, None, false, "unexpected action {action}", &["cancel", "modify", "policy"]),
    t("loop:repeated_call", "tool", ANY, None, false, "{tool} called 3+ times with the same arguments", &["again", "retry", "same"]),
    t("refusal", "llm", None, None, false, "i'm sorry, but i can't help with {word} requests for user {id}", &["policy", "cannot", "sorry"]),
    t("signal:reward", "llm", None, None, false, "reward {n} below 1", &["answer", "final", "wrong"]),
    t("error:exception", "tool", ANY, Some("ModuleNotFoundError"), false, "ModuleNotFoundError: No module named '{word}'", &["import", "module", "install"]),
    t("error:exception", "tool", ANY, Some("NameError"), false, "NameError: name {word} is not defined", &["name", "variable", "defined"]),
    t("error:exception", "tool", ANY, Some("AttributeError"), false, "AttributeError: {Word} object has no attribute {word}", &["attribute", "object", "method"]),
    t("error:exception", "tool", ANY, Some("TypeError"), false, "TypeError: {word}() missing {n} required positional argument: '{word}'", &["argument", "function", "call"]),
    t("error:exception", "tool", ANY, Some("FileNotFoundError"), false, "FileNotFoundError: [Errno 2] No such file or directory: '{path}'", &["file", "open", "path"]),
    t("error:tool_result_flag", "tool", Some("bash"), None, false, "fatal: not a git repository (or any of the parent directories): .git", &["git", "repository", "commit"]),
    t("error:tool_result_flag", "tool", Some("bash"), None, false, "FAILED tests/test_{word}.py::test_{word} - AssertionError: assert {n} == {n}", &["test", "assert", "pytest"]),
    t("error:exit_code", "tool", Some("bash"), None, false, "npm ERR! code E404 npm ERR! 404 Not Found - GET {url} - Not found", &["npm", "package", "install"]),
    t("error:exit_code", "tool", Some("bash"), None, false, "docker: Error response from daemon: pull access denied for {word}, repository does not exist or may require 'docker login'", &["docker", "image", "pull"]),
    t("error:exception", "tool", ANY, Some("OperationalError"), false, "sqlite3.OperationalError: no such table: {word}", &["table", "database", "query"]),
    t("error:exception", "tool", ANY, Some("JSONDecodeError"), false, "json.decoder.JSONDecodeError: Expecting ',' delimiter: line {n} column {n} (char {n})", &["json", "parse", "delimiter"]),
    t("error:exception", "tool", ANY, Some("ValidationError"), false, "ValidationError: 1 validation error for {Word}Input\n{word}\n  field required (type=value_error.missing)", &["validation", "field", "schema"]),
    t("error:tool_result_flag", "tool", ANY, None, false, "Tool {word} not found. Available tools: {tool}, {tool}, {tool}", &["tool", "available", "name"]),
    t("error:tool_result_flag", "tool", ANY, None, false, "Invalid arguments for {tool}: missing required property '{word}'", &["arguments", "schema", "property"]),
    t("error:exception", "llm", None, Some("BadRequestError"), false, "openai.BadRequestError: Error code: 400 - This model's maximum context length is {n} tokens. However, your messages resulted in {n} tokens.", &["context", "length", "tokens"]),
    t("error:exception", "llm", None, Some("AuthenticationError"), true, "openai.AuthenticationError: Error code: 401 - Incorrect API key provided: sk-{hex}. You can find your API key at {url}", &["key", "auth", "account"]),
    t("error:exception", "llm", None, Some("ConnectionError"), true, "ConnectionRefusedError: [Errno 111] Connection refused while connecting to {url}", &["connection", "refused", "network"]),
    t("error:span_status", "llm", None, None, true, "502 Bad Gateway: upstream {url} returned an invalid response at {time}", &["gateway", "upstream", "proxy"]),
    t("error:tool_result_flag", "tool", ANY, None, false, "Error: order #W{n} not found for user {word}_{word}_{n}", &["order", "user", "lookup"]),
    t("error:tool_result_flag", "tool", ANY, None, false, "Error: payment method credit_card_{n} not found", &["payment", "card", "refund"]),
    t("error:tool_result_flag", "tool", ANY, None, false, "Error: reservation {ID} cannot be cancelled: status is {word}", &["reservation", "cancel", "flight"]),
    t("error:exit_code", "tool", Some("bash"), None, false, "Process exited with status {n} after {n} ms", &["process", "exit", "status"]),
    t("error:exception", "tool", ANY, Some("OutOfMemoryError"), false, "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate {n} MiB (GPU {n}; {n} GiB total capacity)", &["memory", "gpu", "batch"]),
    t("error:tool_result_flag", "tool", Some("bash"), None, false, "{path}:{n}:{n}: E501 line too long ({n} > {n} characters)", &["lint", "line", "style"]),
    t("error:exit_code", "tool", Some("bash"), None, false, "error[E0425]: cannot find value {word} in this scope --> {path}:{n}:{n}", &["compile", "scope", "rust"]),
    t("error:exception", "tool", ANY, Some("RecursionError"), false, "RecursionError: maximum recursion depth exceeded while calling a Python object", &["recursion", "depth", "stack"]),
    t("handled:tool_result_flag", "tool", ANY, None, false, "HTTP 404 Not Found: GET {url} (request {uuid})", &["http", "found", "endpoint"]),
    t("unknown", "none", None, None, false, "", &["done", "task", "finished"]),
];

#[rustfmt::skip]
const TOOLS: &[&str] = &[
    "bash", "python", "read_file", "write_file", "edit_file", "search", "web_search", "browse", "get_user_details",
    "get_order_details", "cancel_pending_order", "modify_pending_order_items", "exchange_delivered_order_items",
    "return_delivered_order_items", "update_reservation_flights", "book_reservation", "list_directory", "grep",
    "run_tests", "git_commit", "sql_query", "http_request", "calculate", "transfer_to_human_agents",
];

#[rustfmt::skip]
const ACTIONS: &[&str] = &[
    "cancel_pending_order", "modify_pending_order_address", "modify_pending_order_items", "modify_user_address",
    "return_delivered_order_items", "exchange_delivered_order_items", "book_reservation", "cancel_reservation",
    "update_reservation_baggages", "update_reservation_flights", "update_reservation_passengers", "send_certificate",
    "transfer_to_human_agents", "get_user_details", "find_user_id_by_email",
];

/// Words of agent transcripts, most common first (drawn skewed towards the front).
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "user", "order", "tool", "file", "error", "request", "result", "call", "function", "assistant", "need", "check",
    "item", "code", "test", "run", "command", "output", "value", "data", "list", "name", "status", "return", "found",
    "update", "change", "first", "next", "address", "payment", "method", "using", "because", "before", "after",
    "again", "still", "already", "instead", "failed", "success", "details", "information", "customer", "account",
    "email", "number", "price", "total", "amount", "refund", "exchange", "cancel", "reservation", "flight",
    "passenger", "baggage", "cabin", "economy", "business", "date", "time", "policy", "allowed", "confirm", "proceed",
    "look", "see", "get", "make", "take", "give", "find", "try", "use", "know", "think", "want", "help", "issue",
    "problem", "fix", "bug", "patch", "repository", "branch", "commit", "diff", "line", "module", "import", "class",
    "method", "variable", "parameter", "argument", "type", "string", "integer", "object", "array", "dict", "key",
    "field", "schema", "json", "response", "server", "client", "network", "timeout", "retry", "limit", "rate",
    "token", "model", "prompt", "context", "message", "content", "role", "system", "question", "answer", "final",
    "search", "query", "page", "browser", "click", "link", "website", "article", "source", "table", "row", "column",
    "database", "record", "entry", "path", "directory", "folder", "script", "python", "install", "package", "version",
    "dependency", "build", "compile", "warning", "exception", "trace", "stack", "frame", "thread", "process",
    "memory", "disk", "space", "permission", "access", "denied", "owner", "group", "read", "write", "execute",
    "shell", "environment", "config", "setting", "option", "flag", "default", "missing", "invalid", "unknown",
    "unexpected", "expected", "actual", "different", "same", "correct", "wrong", "right", "left", "step", "plan",
    "goal", "task", "done", "complete", "finish", "start", "begin", "end", "wait", "stop", "continue", "skip",
    "ignore", "handle", "catch", "raise", "throw", "log", "debug", "info", "note", "summary",
];

/// Identifiers (function, table, module names): pseudo-words from syllables, no digits.
fn identifiers(rng: &mut Rng, n: usize) -> Vec<String> {
    const SYL: &[&str] = &[
        "ba", "ko", "ru", "mi", "te", "za", "lo", "pe", "ni", "da", "fo", "gu", "hi", "ja", "ke", "lu", "ma", "no",
        "pi", "qu", "ra", "se", "ti", "vo", "wa", "xe", "yo", "zu", "chi", "sha",
    ];
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let parts = rng.range(2, 4);
        let mut w: String = (0..parts).map(|_| rng.pick(SYL)).collect();
        if rng.below(3) == 0 {
            w.push('_');
            w.push_str(rng.pick(WORDS));
        }
        if seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

struct Gen {
    rng: Rng,
    idents: Vec<String>,
    /// Long-tail prose: most words drawn evenly from a large vocabulary, so failures of one
    /// template rarely read alike and the cluster count grows with N.
    tail: Vec<String>,
}

impl Gen {
    fn ident(&mut self) -> String {
        let i = self.rng.skewed(self.idents.len());
        self.idents[i].clone()
    }

    fn fill(&mut self, msg: &str) -> String {
        let mut out = String::with_capacity(msg.len() + 64);
        let mut rest = msg;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else { break };
            let key = &rest[open + 1..close];
            let value = match key {
                "n" => self.rng.range(0, 100_000).to_string(),
                "id" => {
                    format!("{}_{:x}", self.rng.pick(&["call", "toolu", "span", "req", "user"]), self.rng.next() >> 16)
                }
                "ID" => (0..6).map(|_| (b'A' + self.rng.below(26) as u8) as char).collect::<String>() + "9",
                "uuid" => {
                    let a = self.rng.next();
                    let b = self.rng.next();
                    format!(
                        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                        a >> 32,
                        (a >> 16) & 0xffff,
                        a & 0xffff,
                        b >> 48,
                        b & 0xffff_ffff_ffff
                    )
                }
                "hex" => format!("{:016x}", self.rng.next()),
                "path" => format!(
                    "/home/{}/{}/{}/{}.{}",
                    self.rng.pick(&["agent", "runner", "ubuntu", "ci"]),
                    self.ident(),
                    self.rng.pick(&["src", "lib", "tests", "app", "pkg"]),
                    self.ident(),
                    self.rng.pick(&["py", "rs", "ts", "json", "txt"])
                ),
                "url" => format!(
                    "https://{}.{}/v1/{}?id={}",
                    self.rng.pick(&["api", "registry", "www", "internal"]),
                    self.rng.pick(&["openai.com", "example.com", "npmjs.org", "corp.net"]),
                    self.ident(),
                    self.rng.next() % 10_000
                ),
                "time" => format!(
                    "2025-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                    self.rng.range(1, 12),
                    self.rng.range(1, 28),
                    self.rng.below(24),
                    self.rng.below(60),
                    self.rng.below(60)
                ),
                "word" => self.ident(),
                "Word" => {
                    let w = self.ident();
                    let mut c = w.chars();
                    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
                }
                "tool" => self.rng.pick(TOOLS).to_string(),
                "action" => self.rng.pick(ACTIONS).to_string(),
                _ => rest[open..=close].to_string(), // a literal brace ({'error': …})
            };
            out.push_str(&rest[..open]);
            out.push_str(&value);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        out
    }

    fn prose(&mut self, words: usize, topic: &[&str], out: &mut String) {
        for i in 0..words {
            if i > 0 {
                out.push(' ');
            }
            if !self.tail.is_empty() && self.rng.below(10) < 7 {
                let i = self.rng.below(self.tail.len());
                out.push_str(&self.tail[i]);
                continue;
            }
            match self.rng.below(20) {
                0..=2 => out.push_str(self.rng.pick(topic)),
                3 => {
                    let w = self.ident();
                    out.push_str(&w);
                }
                4 => out.push_str(&self.rng.range(0, 9999).to_string()),
                _ => {
                    let i = self.rng.skewed(WORDS.len());
                    out.push_str(WORDS[i]);
                }
            }
        }
    }

    /// One failure from template `ti` (raw message; the signature template is filled later).
    fn failure(&mut self, seq: usize, ti: usize) -> Failure {
        let tpl = &TEMPLATES[ti];
        let tool = match tpl.tool {
            Some("*") => Some(self.rng.pick(TOOLS).to_string()),
            other => other.map(str::to_string),
        };
        let message = self.fill(tpl.msg);
        // Like failure::neighbourhood_text: signal, tool, error type, message, then the
        // decisive step, the step before and the step after.
        let mut text = tpl.signal.replace([':', '_'], " ");
        text.push(' ');
        for extra in [tool.as_deref(), tpl.error_type].into_iter().flatten() {
            text.push_str(extra);
            text.push(' ');
        }
        text.push_str(&message);
        text.push('\n');
        let n = self.rng.range(40, 180);
        self.prose(n, tpl.topic, &mut text);
        text.push('\n');
        let n = self.rng.range(20, 90);
        self.prose(n, tpl.topic, &mut text);
        text.push('\n');
        let n = self.rng.range(10, 50);
        self.prose(n, tpl.topic, &mut text);
        if text.len() > 3000 {
            let mut end = 3000;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        Failure {
            trace_id: format!("trace-{seq}"),
            file: format!("/data/traces/{}.jsonl", seq / 100),
            format: "synthetic".into(),
            trace_seq: seq % 100,
            infra: tpl.infra,
            signature: Signature {
                kind: if tpl.infra { "infra" } else { "capability" }.into(),
                signal: tpl.signal.into(),
                step_kind: tpl.step.into(),
                tool,
                error_type: tpl.error_type.map(str::to_string),
                template: String::new(),
            },
            step_id: Some(format!("step-{}", seq % 37)),
            step_ids: Vec::new(),
            unknown_outcome: false,
            header_len: 0,
            step_index: Some(seq % 37),
            excerpt: message.chars().take(600).collect(),
            message,
            text,
            time: Some(1_760_000_000_000_000_000 + seq as i128 * 1_000_000_000),
            cost_usd: Some(0.01),
            tokens: Some(1000),
            seed: CaseSeed::default(),
        }
    }
}

fn generate(n: usize, seed: u64, one_template: Option<usize>, long_tail: bool) -> Vec<Failure> {
    let mut rng = Rng::new(seed);
    let idents = identifiers(&mut rng, 4000);
    let tail = if long_tail { identifiers(&mut rng, 30_000) } else { Vec::new() };
    let mut g = Gen { rng, idents, tail };
    (0..n)
        .map(|i| {
            let ti = one_template.unwrap_or_else(|| g.rng.skewed(TEMPLATES.len()));
            g.failure(i, ti)
        })
        .collect()
}

struct Row {
    label: String,
    n: usize,
    template: f64,
    idf: f64,
    assign: f64,
    signatures: usize,
    clusters: usize,
    biggest: usize,
    base_kb: u64,
    peak_kb: u64,
    /// CPU time of the thread over the three phases (less sensitive to other load than wall time).
    cpu: f64,
}

impl Row {
    fn total(&self) -> f64 {
        self.template + self.idf + self.assign
    }
}

fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for the call to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn run(label: &str, mut failures: Vec<Failure>) -> Row {
    let n = failures.len();
    reset_peak_rss();
    let base_kb = rss_kb();
    let cpu = thread_cpu_secs();

    let t = Instant::now();
    for f in &mut failures {
        f.signature.template = template(&f.message);
    }
    let t_template = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut idf = Idf::default();
    for f in &failures {
        idf.add_failure(f);
    }
    let t_idf = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let assignment = cluster::assign(&failures, Vec::new(), &idf, THRESHOLD);
    let t_assign = t.elapsed().as_secs_f64();
    let cpu = thread_cpu_secs() - cpu;
    let peak_kb = peak_rss_kb();

    let signatures: HashSet<String> = failures.iter().map(|f| f.signature.canonical()).collect();
    let biggest = assignment.clusters.iter().map(|c| c.members).max().unwrap_or(0);
    assert_eq!(assignment.cluster_of.len(), n);
    Row {
        label: label.into(),
        n,
        template: t_template,
        idf: t_idf,
        assign: t_assign,
        signatures: signatures.len(),
        clusters: assignment.clusters.len(),
        biggest,
        base_kb,
        peak_kb,
        cpu,
    }
}

/// One case, in this process: `--case mixed|tail|same N`. Prints one `ROW …` line.
fn run_case(kind: &str, n: usize) {
    let row = match kind {
        "mixed" => run(&format!("mixed {n}"), generate(n, 42, None, false)),
        "tail" => run(&format!("long tail {n}"), generate(n, 42, None, true)),
        _ => {
            // One signature: a tool error whose every variable part is masked.
            let ti = TEMPLATES.iter().position(|t| t.msg.starts_with("Process exited")).expect("template");
            run(&format!("same sig {n}"), generate(n, 7, Some(ti), false))
        }
    };
    println!(
        "ROW\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        row.label,
        row.n,
        row.template,
        row.idf,
        row.assign,
        row.signatures,
        row.clusters,
        row.biggest,
        row.base_kb,
        row.peak_kb,
        row.cpu
    );
}

/// Each case runs in a fresh process, so its peak RSS is its own (freed memory of an
/// earlier case is not handed back to the system).
fn spawn_case(kind: &str, n: usize) -> Option<Row> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe).args(["--case", kind, &n.to_string()]).output().ok()?;
    if !out.status.success() {
        eprintln!("case {kind} {n} failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("ROW\t"))?;
    let f: Vec<&str> = line.split('\t').collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Some(Row {
        label: f.get(1)?.to_string(),
        n: num(2) as usize,
        template: num(3),
        idf: num(4),
        assign: num(5),
        signatures: num(6) as usize,
        clusters: num(7) as usize,
        biggest: num(8) as usize,
        base_kb: num(9) as u64,
        peak_kb: num(10) as u64,
        cpu: num(11),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let kind = args.get(i + 1).map(String::as_str).unwrap_or("mixed");
        let n = args.get(i + 2).and_then(|v| v.parse().ok()).unwrap_or(1000);
        run_case(kind, n);
        return;
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.replace('_', "").parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1_000, 10_000, 100_000] } else { sizes };

    let mut rows = Vec::new();
    for kind in ["mixed", "tail"] {
        for &n in &sizes {
            rows.extend(spawn_case(kind, n));
            eprintln!("done: {kind} {n}");
        }
    }
    rows.extend(spawn_case("same", 50_000));

    println!("cluster benchmark: {} templates, join threshold {THRESHOLD}, times in seconds", TEMPLATES.len());
    println!(
        "{:<16} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "case",
        "N",
        "template",
        "idf",
        "assign",
        "total",
        "cpu",
        "µs/fail",
        "sigs",
        "clusters",
        "largest",
        "base MB",
        "peak MB",
        "growth"
    );
    let series = |r: &Row| r.label.rsplit_once(' ').map_or(String::new(), |(s, _)| s.to_string());
    let mut prev: Option<&Row> = None;
    for r in &rows {
        let growth = match prev {
            Some(p) if series(p) == series(r) && p.total() > 0.0 => {
                format!("{:.1}x/{:.0}x", r.cpu / p.cpu, r.n as f64 / p.n as f64)
            }
            _ => "-".into(),
        };
        println!(
            "{:<16} {:>8} {:>9.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>9.1} {:>8} {:>8} {:>10} {:>9.0} {:>9.0} {:>9}",
            r.label,
            r.n,
            r.template,
            r.idf,
            r.assign,
            r.total(),
            r.cpu,
            r.total() * 1e6 / r.n as f64,
            r.signatures,
            r.clusters,
            r.biggest,
            r.base_kb as f64 / 1024.0,
            r.peak_kb as f64 / 1024.0,
            growth
        );
        prev = Some(r);
    }
    println!(
        "growth = CPU time ratio / size ratio against the previous size of the same case (near-linear: the two are close)"
    );
    let ok = |b: bool| if b { "ok" } else { "MISSED" };
    for r in rows.iter().filter(|r| r.n == 100_000) {
        let target = if r.label.starts_with("mixed") {
            format!("target ≤ 10 s: {}, ≤ 1024 MB: {}", ok(r.total() <= 10.0), ok(r.peak_kb <= 1024 * 1024))
        } else {
            "stress case, clusters grow with N: growth is what matters".to_string()
        };
        println!(
            "{}: {:.2} s wall, {:.2} s CPU, peak RSS {:.0} MB ({target})",
            r.label,
            r.total(),
            r.cpu,
            r.peak_kb as f64 / 1024.0
        );
    }
}
