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

// ---------------------------------------------------------------------------------------
// Corpus fuzzing: one target per untrusted input (trace files, case files, manifests,
// patches, model answers). Every seed in tests/fuzz/corpus/<target>/ is replayed, then
// mutated `AUTOHARNESS_FUZZ_ITERS` times (default 150) by a seeded generator: bounded in
// time, the same on every machine, and it runs in plain `cargo test` on stable.
// ---------------------------------------------------------------------------------------

use std::path::{Path, PathBuf};

use autoharness::harness::manifest::Manifest;
use autoharness::harness::patch;
use autoharness::report::neutral;

fn iterations() -> usize {
    std::env::var("AUTOHARNESS_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(150)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// Tokens worth splicing in: what parsers and path checks branch on.
const DICT: &[&str] = &[
    "\n",
    "\r\n",
    "\0",
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "..",
    "/",
    "../",
    ".git/",
    ".GIT",
    "/etc/passwd",
    "\u{1b}[2J",
    "\u{202e}",
    "@@ -1 +1 @@\n",
    "--- a/",
    "+++ b/",
    "--- /dev/null\n",
    "diff --git a/x b/x\n",
    "new mode 120000\n",
    "<<<<<<< SEARCH\n",
    "=======\n",
    ">>>>>>> REPLACE\n",
    "```",
    "FILE: ",
    "\"id\": \"/tmp/x\"",
    "\"id\": \"../..\"",
    "timeout = \"99999999999999999999s\"\n",
    "name = \"..\"\n",
    "[limits]\n",
    "NaN",
    "1e999",
    "-1",
    "99999999999999999999",
    "sk-proj-Zq8Wx3Ec5Rv7Tb9Yn1Um2Ik4Ol6Pa0Sd",
    "a@b.co",
    "\u{fffd}",
    "é",
];

fn mutate(seed: &[u8], rng: &mut XorShift) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = DICT[rng.below(DICT.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            2 => {
                let end = (at + rng.below(64)).min(b.len());
                b.drain(at..end);
            }
            3 => {
                let end = (at + rng.below(256)).min(b.len());
                let copy = b[at..end].to_vec();
                let to = rng.below(b.len() + 1);
                b.splice(to..to, copy);
            }
            4 => b.truncate(at),
            _ => {
                let byte = rng.next() as u8;
                b.insert(at, byte);
            }
        }
    }
    b
}

/// Replay the corpus of `target` and its mutations through `check`. A panic is reported
/// with the input saved to target/fuzz-failures/ for reproduction.
fn fuzz(target: &str, check: impl Fn(&[u8]) + std::panic::RefUnwindSafe) {
    let n = iterations();
    for (name, seed) in corpus(target) {
        let mut rng =
            XorShift(blake3::hash(name.as_bytes()).as_bytes()[..8].iter().fold(1u64, |a, &x| a * 31 + x as u64) | 1);
        let inputs = std::iter::once(seed.clone()).chain((0..n).map(|_| mutate(&seed, &mut rng)));
        for (i, input) in inputs.enumerate() {
            if std::panic::catch_unwind(|| check(&input)).is_err() {
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
                let _ = std::fs::create_dir_all(&dir);
                let path = dir.join(format!("{target}-{name}-{i}"));
                let _ = std::fs::write(&path, &input);
                panic!("fuzz target `{target}` failed on mutation {i} of `{name}`; input saved to {}", path.display());
            }
        }
    }
}

/// What must hold of every path built from untrusted text that the helpers accept.
fn assert_inside(root: &Path, p: &Path) {
    assert!(p.starts_with(root), "{} leaves {}", p.display(), root.display());
    for c in p.strip_prefix(root).unwrap().components() {
        let c = c.as_os_str().to_string_lossy();
        assert!(c != ".." && !autoharness::paths::is_vcs_component(&c), "{}", p.display());
    }
}

#[test]
fn fuzz_trace_files() {
    fuzz("traces", |bytes| {
        let _ = read_bytes("x.jsonl", bytes);
    });
}

#[test]
fn fuzz_case_files() {
    let dir = tempfile::tempdir().unwrap();
    let evals = dir.path().join("evals");
    std::fs::create_dir_all(&evals).unwrap();
    fuzz("cases", |bytes| {
        let path = dir.path().join("case.json");
        std::fs::write(&path, bytes).unwrap();
        if let Ok(case) = autoharness::evals::case::read_case(&path, None) {
            let f = &case.file;
            if let Ok(p) = autoharness::mine::emit::case_path(&evals, &f.harness, &f.cluster, &f.id) {
                assert_inside(&evals, &p);
            }
            // A case that loads has an id that names a folder safely.
            let p = autoharness::paths::safe_name(&evals, &f.id).expect("a loaded case's id is a safe name");
            assert_inside(&evals, &p);
        }
    });
}

#[test]
fn fuzz_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("harnesses/x/harness.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    fuzz("manifests", |bytes| {
        if let Ok(m) = Manifest::parse(&String::from_utf8_lossy(bytes), &path) {
            // An accepted name is a folder name; an accepted timeout fits an Instant.
            assert!(autoharness::paths::safe_name(dir.path(), &m.name).is_ok(), "{:?}", m.name);
            assert!(std::time::Instant::now().checked_add(m.limits.timeout).is_some());
        }
    });
}

/// A harness tree for patches and answers: one prompt and one script.
fn harness_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("h/prompts")).unwrap();
    std::fs::write(dir.path().join("h/prompts/system.md"), "You are helpful.\nBe brief.\n").unwrap();
    std::fs::write(dir.path().join("h/agent.py"), "print('hi')\n").unwrap();
    dir
}

fn globs(patterns: &[&str]) -> globset::GlobSet {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        b.add(globset::Glob::new(p).unwrap());
    }
    b.build().unwrap()
}

/// Everything under `dir` (relative paths), to see what an apply created.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fuzz_patches() {
    let everything = globs(&["**"]);
    fuzz("patches", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let Ok(mut p) = patch::parse(&text) else { return };
        patch::normalize_paths(&mut p, None);
        let tree = harness_tree();
        let root = tree.path().join("h");
        let checked = patch::check_paths(&p, &root, &everything).is_ok();
        let applied = patch::apply(&p, &root).is_ok();
        // Nothing lands beside the harness root, nor in a VCS folder inside it.
        let outside = listing(tree.path());
        assert!(outside.iter().all(|f| f == "h" || f.starts_with("h/")), "{outside:?}");
        let inside = listing(&root);
        assert!(!inside.iter().any(|f| f.split('/').any(autoharness::paths::is_vcs_component)), "{inside:?}");
        if applied {
            assert!(checked, "apply took a patch check_paths refuses: {text:?}");
        }
    });
}

#[test]
fn fuzz_model_answers() {
    let tree = harness_tree();
    let root = tree.path().join("h");
    let editable = globs(&["prompts/**"]);
    fuzz("answers", |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(parsed) = autoharness::propose::answer::parse(&text, &root, &editable) {
            // What an answer turns into is a diff the gate's own checks accept.
            let mut p = patch::parse(&parsed.diff).unwrap_or_else(|e| panic!("{e}: {}", parsed.diff));
            patch::normalize_paths(&mut p, None);
            assert!(patch::check_paths(&p, &root, &editable).is_ok(), "{}", parsed.diff);
        }
        assert_eq!(listing(tree.path()), ["h", "h/agent.py", "h/prompts", "h/prompts/system.md"], "parsing wrote");
    });
}

/// The neutralisers over every seed and mutation of every corpus: nothing that acts in
/// its medium survives.
#[test]
fn fuzz_neutralisers() {
    for target in ["traces", "cases", "manifests", "patches", "answers"] {
        fuzz(target, |bytes| {
            let text = String::from_utf8_lossy(bytes);
            let t = neutral::terminal(&text);
            assert!(!t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'), "{t:?}");
            let md = neutral::md_text(&text);
            assert!(!md.contains('<') && !md.contains("@everyone") && !md.contains('\n'), "{md:?}");
            let code = neutral::md_code(&text);
            assert!(!code.contains('\n'));
            let x = neutral::xml(&text);
            assert!(
                !x.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) && !x.contains('<'),
                "{x:?}"
            );
            let mut counts = autoharness::redact::Redactions::default();
            let once = autoharness::redact::global().text(&text, &mut counts).into_owned();
            let twice = autoharness::redact::global().text(&once, &mut counts).into_owned();
            assert_eq!(once, twice, "redaction is stable");
        });
    }
}
