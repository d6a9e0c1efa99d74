//! Property tests: whatever bytes or JSON a file holds, reading it, deriving outcomes,
//! analysing failures and rendering never panic, and the failure template keeps its
//! bounds. Inputs lean on the keys and values detection looks for, so the generated JSON
//! reaches the adapters instead of stopping at "unknown JSON shape".

use autoharness::mine::failure::analyze;
use autoharness::mine::signature::{TEMPLATE_MAX, template};
use autoharness::report::output::{ColorChoice, Output};
use autoharness::report::traces::{render_show, show_doc};
use autoharness::trace::formats::{self, FileCtx, Format};
use autoharness::trace::model::{OutcomeStatus, Trace};
use autoharness::trace::outcome;
use autoharness::trace::read::Records;
use autoharness::trace::{FileReport, read_file};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Keys that detection rules and adapters look at, plus a few nobody knows.
const KEYS: &[&str] = &[
    "resourceSpans",
    "resourceLogs",
    "scopeSpans",
    "scopeLogs",
    "logRecords",
    "spans",
    "traceId",
    "spanId",
    "parentSpanId",
    "context",
    "span_id",
    "trace_id",
    "parent_id",
    "kind",
    "span_kind",
    "status_code",
    "status",
    "name",
    "attributes",
    "span_attributes",
    "span_name",
    "child_spans",
    "events",
    "object",
    "span_data",
    "id",
    "run_type",
    "dotted_order",
    "child_runs",
    "trace",
    "observations",
    "scores",
    "startTime",
    "type",
    "sessionId",
    "session_id",
    "uuid",
    "subtype",
    "message",
    "timestamp",
    "payload",
    "trajectory_format",
    "schema_version",
    "steps",
    "step_id",
    "source",
    "observation",
    "trajectory",
    "info",
    "exit_status",
    "history",
    "messages",
    "model_stats",
    "task_id",
    "traj",
    "reward",
    "role",
    "content",
    "tool_calls",
    "error",
    "input",
    "output",
    "usage",
    "gen_ai.operation.name",
    "openinference.span.kind",
    "x",
    "",
];

const WORDS: &[&str] = &[
    "trace.span",
    "span_1",
    "trace",
    "llm",
    "tool",
    "chain",
    "user",
    "assistant",
    "system",
    "init",
    "result",
    "success",
    "error_max_turns",
    "session_meta",
    "response_item",
    "event_msg",
    "function_call",
    "mini-swe-agent-1",
    "submitted",
    "SpanKind.INTERNAL",
    "0xab",
    "ERROR",
    "GENERATION",
    "SPAN",
    "chat",
    "execute_tool",
    "Traceback (most recent call last):\nValueError: x",
    "Exit code 1",
    "2025-01-01T00:00:00Z",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        prop::sample::select(WORDS).prop_map(|w| Value::String(w.to_string())),
    ];
    // Depth ≤ 6, like the traces people export, but any shape within it.
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..7).prop_map(|kvs| {
                Value::Object(kvs.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
            }),
        ]
    })
}

/// Everything downstream of a read must take the traces as they come: outcomes are
/// already derived; failure analysis and rendering run on them.
fn use_traces(report: &FileReport) {
    for trace in &report.traces {
        check_analysis(trace);
    }
    let out = Output::new(ColorChoice::Never, false, true, 0);
    let doc = show_doc(report);
    render_show(&out, &doc, false);
    render_show(&out, &doc, true);
}

/// `analyze` finds a failure exactly for failed traces (and unknown ones when told to
/// assume failure), and its template keeps its bound.
fn check_analysis(trace: &Trace) {
    let failed = trace.outcome.status == OutcomeStatus::Failed;
    let passed = trace.outcome.status == OutcomeStatus::Passed;
    assert_eq!(analyze(trace, 0, false).is_some(), failed, "{}", trace.id);
    match analyze(trace, 0, true) {
        Some(failure) => assert!(failure.signature.template.len() <= TEMPLATE_MAX),
        None => assert!(passed, "{}: only passed traces are not failures when assumed failed", trace.id),
    }
}

/// Write `bytes` as `name` in a fresh temp dir and read it.
fn read_bytes(name: &str, bytes: &[u8]) -> FileReport {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let report = read_file(&path, name);
    assert_eq!(report.size, bytes.len() as u64);
    assert!(report.format.is_some() || !report.reason.is_empty(), "{name}: a format or a reason");
    use_traces(&report);
    report
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes at all: a report, never a panic.
    #[test]
    fn read_file_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        read_bytes("x.jsonl", &bytes);
    }

    /// Valid JSON of any shape, as one document: a report without a read error.
    #[test]
    fn read_file_survives_any_json_document(value in json_value()) {
        let report = read_bytes("x.json", &serde_json::to_vec_pretty(&value).unwrap());
        prop_assert!(report.error.is_none(), "{:?}", report.error);
    }

    /// Valid JSON values, one per line. (A first line that is an array makes the file look
    /// like one JSON array, which then fails to parse: an error, which is fine, not a panic.)
    #[test]
    fn read_file_survives_any_jsonl(values in prop::collection::vec(json_value(), 0..6)) {
        let mut body = Vec::new();
        for v in &values {
            body.extend(serde_json::to_vec(v).unwrap());
            body.push(b'\n');
        }
        read_bytes("x.jsonl", &body);
    }

    /// Valid JSON values as the elements of a top-level array: no read error.
    #[test]
    fn read_file_survives_any_json_array(values in prop::collection::vec(json_value(), 0..6)) {
        let report = read_bytes("x.json", &serde_json::to_vec(&Value::Array(values)).unwrap());
        prop_assert!(report.error.is_none(), "{:?}", report.error);
    }

    /// Every adapter, called directly on records it was not chosen for: no panic, no error
    /// (records in memory cannot fail to read), and every trace survives outcome derivation
    /// and failure analysis.
    #[test]
    fn every_adapter_survives_any_json(values in prop::collection::vec(json_value(), 1..4)) {
        for format in Format::ALL {
            let mut traces = Vec::new();
            let mut ctx = FileCtx::new("x");
            let result = formats::parse(format, &mut Records::from_values(values.clone()), &mut ctx, &mut |mut t| {
                t.fill_totals();
                outcome::derive(&mut t);
                traces.push(t);
            });
            prop_assert!(result.is_ok(), "{format}: {result:?}");
            for trace in &traces {
                check_analysis(trace);
            }
        }
    }
}

/// The records of every fixture trace file (tests/fixtures/formats), with its format:
/// seeds for mutation, since random JSON rarely takes the nested shapes adapters walk.
fn fixture_records() -> &'static [(Format, Vec<Value>)] {
    static SEEDS: std::sync::OnceLock<Vec<(Format, Vec<Value>)>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut files = Vec::new();
        let mut dirs = vec![crate::common::fixture("formats")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() { dirs.push(path) } else { files.push(path) }
            }
        }
        files.sort();
        let mut seeds = Vec::new();
        for path in files {
            let Some(format) = read_file(&path, "seed").format else { continue };
            let bytes = std::fs::read(&path).unwrap();
            // JSONL lines, concatenated documents, or one document; arrays give their elements.
            let mut values: Vec<Value> =
                serde_json::Deserializer::from_slice(&bytes).into_iter().map(|v| v.unwrap()).collect();
            if let [Value::Array(items)] = &values[..] {
                values = items.clone();
            }
            seeds.push((format, values));
        }
        assert!(seeds.len() >= 30, "{} seed files", seeds.len());
        seeds
    })
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

/// Replace the `n`-th node of `v` in pre-order by `with`.
fn replace_node(v: &mut Value, n: &mut usize, with: &Value) -> bool {
    if *n == 0 {
        *v = with.clone();
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|item| replace_node(item, n, with)),
        Value::Object(map) => map.values_mut().any(|item| replace_node(item, n, with)),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Real records of every format with a few subtrees swapped for arbitrary JSON (a
    /// missing field, a string where a list was, a null id): their adapter, and reading
    /// them as a file, never panic, and failure analysis takes whatever traces come out.
    #[test]
    fn mutated_fixture_records_survive(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), json_value()), 1..4),
    ) {
        let (format, records) = seed.get(fixture_records());
        let mut records = records.clone();
        for (record, node, with) in &mutations {
            let record = record.get_mut(&mut records);
            let mut n = node.index(count_nodes(record));
            replace_node(record, &mut n, with);
        }
        let mut traces = Vec::new();
        let result = formats::parse(*format, &mut Records::from_values(records.clone()), &mut FileCtx::new("x"), &mut |mut t| {
            t.fill_totals();
            outcome::derive(&mut t);
            traces.push(t);
        });
        prop_assert!(result.is_ok(), "{format}: {result:?}");
        for trace in &traces {
            check_analysis(trace);
        }
        let mut jsonl = Vec::new();
        for record in &records {
            jsonl.extend(serde_json::to_vec(record).unwrap());
            jsonl.push(b'\n');
        }
        read_bytes("x.jsonl", &jsonl);
    }
}

/// Text shaped like error messages: words, numbers, ids, quotes (closed or not), paths,
/// URLs, odd whitespace, and any unicode.
fn message() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "\\PC{0,20}",
        "[a-zA-Z]{1,10}",
        "[0-9]{1,8}",
        "[0-9a-f]{6,16}",
        "(call|toolu|user)_[a-z0-9]{3,10}",
        "/[a-z]{1,5}/[a-z]{1,5}(/[a-z.]{1,5})?",
        "https?://[a-z.]{1,10}/[a-z0-9?=]{0,8}",
        "['\"`][^'\"`]{0,90}['\"`]?",
        "[ \t\n\u{a0}]{1,3}",
        "[A-Z][a-z]+Error:",
    ];
    prop::collection::vec(piece, 0..30).prop_map(|pieces| pieces.concat())
}

/// Short text without quote marks (a message of a few words, cut to 50 bytes).
fn short_quote_free_message() -> impl Strategy<Value = String> {
    message().prop_map(|text| {
        let mut text = text.replace(['"', '\'', '`'], " ");
        let mut end = text.len().min(50);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text
    })
}

fn ascii_digits(text: &str) -> usize {
    text.chars().filter(char::is_ascii_digit).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The template of any text is at most TEMPLATE_MAX bytes, lower-case, trimmed, on one
    /// line with single spaces, blind to surrounding whitespace, and a second pass never
    /// brings digits back. (Reaching the assertions proves it terminates: the scan reads at
    /// most 4 × TEMPLATE_MAX characters.)
    #[test]
    fn template_is_bounded_and_canonical(text in prop_oneof![message(), any::<String>()]) {
        let once = template(&text);
        prop_assert!(once.len() <= TEMPLATE_MAX, "{} bytes: {once:?}", once.len());
        prop_assert!(!once.chars().any(|c| c.is_ascii_uppercase()), "{once:?}");
        prop_assert_eq!(once.trim_start(), once.as_str());
        // The cut at TEMPLATE_MAX bytes comes after trimming, so only a cut one may end in
        // a space (a wart, harmless to clustering: such templates are all cut the same way).
        prop_assert!(!once.ends_with(' ') || once.len() + 3 >= TEMPLATE_MAX, "{once:?}");
        // Whitespace is collapsed to single spaces, except that collapsing a run of quotes
        // (`'a' 'b'` → `<q>`) leaves the space after each dropped `<q>`: `<q>  x`.
        prop_assert!(!once.contains(['\n', '\t']), "{once:?}");
        prop_assert!(!once.replace("<q> ", "<q>").contains("  "), "whitespace is collapsed: {once:?}");
        if text.chars().count() < 400 {
            prop_assert_eq!(template(&format!(" \n\t{text}\n ")), once.clone());
        }
        prop_assert!(ascii_digits(&template(&once)) <= ascii_digits(&once));
    }

    /// Templating a template is not idempotent in general, but on short text without quote
    /// marks it settles after two passes, and is idempotent when the first pass left no
    /// digits. What breaks idempotence otherwise, found by this test's wider siblings:
    /// * an id rule that keeps the prefix before the last `_`, digits included:
    ///   `0user_zj9v` → `0user_<id>` → `<n>user_<id>`;
    /// * quotes: masking shortens text, so a closing mark past the 80-character window on
    ///   the first pass can fall inside it on the second; and `/"x"` → `/<q>` → `<path>>`;
    /// * the cut at TEMPLATE_MAX bytes, which can drop the part of a token that kept it
    ///   from being masked (a `//` that made a path a URL-like token).
    #[test]
    fn template_settles_on_short_quote_free_text(text in short_quote_free_message()) {
        let once = template(&text);
        let twice = template(&once);
        prop_assert_eq!(template(&twice), twice.clone(), "{:?} → {:?} → {:?}", text, once, twice);
        if ascii_digits(&once) == 0 {
            prop_assert_eq!(twice, once, "{:?}", text);
        }
    }
}
