//! Bad input through the CLI (`traces ls DIR --json`, `traces show FILE`): each broken file
//! sits among good trace files, and must come out as a row whose error or reason names the
//! place, while the good files are still read, the exit code stays 0 and nothing panics.
//! A walk over thousands of production files must never stop at the first bad one.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

use crate::common::cli::{Sandbox, assert_no_panic, bin, ls_row, stderr, stdout, store_counts, transcript};
use crate::common::fixture;

/// Good files put beside every bad one: (name in the sandbox, fixture, [traces, passed, failed, unknown]).
const GOOD_FILES: [(&str, &str, [u64; 4]); 2] = [
    ("data/good_codex.jsonl", "formats/codex/handmade_tool_failures.jsonl", [1, 0, 1, 0]),
    ("data/good_langsmith.jsonl", "formats/langsmith/cli_export_with_error.jsonl", [2, 0, 1, 1]),
];

const COUNTS: [&str; 4] = ["traces", "passed", "failed", "unknown"];

fn counts(row: &Value) -> [u64; 4] {
    COUNTS.map(|k| row[k].as_u64().unwrap_or_else(|| panic!("`{k}` in {row}")))
}

/// What the CLI made of one bad file.
struct Seen {
    /// The bad file's row of `traces ls data --json`.
    row: Value,
    /// `traces show <file> --json`.
    show: Value,
    /// Human `traces show <file>`.
    show_human: String,
    /// stderr of `traces ls`.
    ls_stderr: String,
    /// The sandbox, kept for more runs over the same files.
    sandbox: Sandbox,
}

/// Put the good files and `data/<name>` (written by `write`) in a sandbox, list the folder
/// and show the bad file. Checks what must hold for every bad input: exit code 0, no panic,
/// the good files read as usual.
fn read_among_good_files(name: &str, write: impl FnOnce(&Path)) -> Seen {
    let sandbox = Sandbox::new();
    for (to, from, _) in GOOD_FILES {
        sandbox.write(to, std::fs::read(fixture(from)).expect("fixture"));
    }
    let rel = format!("data/{name}");
    write(&sandbox.path().join(&rel));

    let ls = sandbox.run(&["--json", "traces", "ls", "data"]);
    assert_eq!(ls.status.code(), Some(0), "{}", transcript(&ls));
    let doc: Value = serde_json::from_slice(&ls.stdout).expect("ls --json");
    assert_eq!(doc["totals"]["files"], GOOD_FILES.len() + 1, "{doc:#}");
    for (good, _, expected) in GOOD_FILES {
        let row = ls_row(&doc, good);
        assert_eq!(row["error"], Value::Null, "{good}");
        assert_eq!(counts(row), expected, "{good} is read as usual next to {name}");
    }
    let row = ls_row(&doc, name).clone();
    let reason = row["reason"].as_str().expect("reason");
    assert!(row["format"].is_string() || !reason.is_empty(), "{name}: a format or a reason: {row}");

    let show = sandbox.run(&["--json", "traces", "show", &rel]);
    assert_eq!(show.status.code(), Some(0), "{}", transcript(&show));
    let show_doc: Value = serde_json::from_slice(&show.stdout).expect("show --json");
    // The file's own reading is the same whichever command asks.
    for key in ["format", "reason", "error"] {
        assert_eq!(show_doc[key], row[key], "{name}: `{key}` of show and ls");
    }
    let human = sandbox.run(&["traces", "show", &rel]);
    assert_eq!(human.status.code(), Some(0), "{}", transcript(&human));
    let show_human = stdout(&human);
    assert_eq!(show_human.lines().next(), Some(rel.as_str()), "{show_human}");
    Seen { row, show: show_doc, show_human, ls_stderr: stderr(&ls), sandbox }
}

fn error_of(seen: &Seen) -> &str {
    seen.row["error"].as_str().unwrap_or_else(|| panic!("an error in {}", seen.row))
}

fn warnings_of(row: &Value) -> Vec<&str> {
    row["warnings"].as_array().expect("warnings").iter().map(|w| w.as_str().unwrap()).collect()
}

/// A tiny deterministic generator (xorshift64), so "random" files are the same on every run.
fn pseudo_random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// The Claude stream-json fixture (two runs, nine lines) repeated `copies` times with fresh
/// session ids: a JSONL file of `2 * copies` traces, 9 lines per copy.
fn stream_json_runs(copies: usize) -> Vec<Vec<u8>> {
    let one = std::fs::read_to_string(fixture("formats/claude-stream-json/handmade_two_runs.jsonl")).unwrap();
    let mut lines = Vec::new();
    for copy in 0..copies {
        let text = one
            .replace("\"sj-1\"", &format!("\"sj-{}\"", 2 * copy + 1))
            .replace("\"sj-2\"", &format!("\"sj-{}\"", 2 * copy + 2));
        lines.extend(text.lines().map(|l| l.as_bytes().to_vec()));
    }
    assert_eq!(lines.len(), 9 * copies);
    lines
}

fn join_lines(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = lines.join(&b'\n');
    out.push(b'\n');
    out
}

/// Put two invalid UTF-8 bytes into the tool output of line `line_no` (1-based): the
/// fourth line of each copy of the stream-json runs holds a tool result.
fn break_utf8(lines: &mut [Vec<u8>], line_no: usize) {
    let line = &mut lines[line_no - 1];
    let at = line.windows(12).position(|w| w == b"No such file").expect("a tool result line");
    line.splice(at..at, [0xff, 0xfe]);
}

// ---------------------------------------------------------------------------------------

#[test]
fn truncated_json_document_is_an_error_at_its_byte() {
    let doc = std::fs::read(fixture("formats/phoenix/phoenix-trace-handmade.json")).unwrap();
    let seen = read_among_good_files("truncated.json", |p| std::fs::write(p, &doc[..doc.len() / 2]).unwrap());
    let error = error_of(&seen);
    assert!(error.starts_with("byte ") && error.contains("truncated JSON"), "{error}");
    assert!(seen.row["reason"].as_str().unwrap().starts_with("not readable as JSON: byte "), "{}", seen.row);
    assert!(seen.show_human.contains(&format!("error    {error}")), "{}", seen.show_human);
    // One warning line on stderr names the file and the place.
    assert!(seen.ls_stderr.contains(&format!("data/truncated.json: {error}")), "{}", seen.ls_stderr);
}

/// A truncated top-level array keeps the complete elements before the cut, as a streamed
/// big array already does (only arrays under 64 MB are parsed whole and lose them all).
#[test]
fn truncated_json_array_keeps_the_elements_before_the_cut() {
    let records: Vec<Value> =
        serde_json::from_slice(&std::fs::read(fixture("formats/tau-bench/agentrx_excerpt.json")).unwrap()).unwrap();
    let first = serde_json::to_string(&records[0]).unwrap();
    let whole = format!("[{first}, {}]", serde_json::to_string(&records[1]).unwrap());
    let cut = &whole[..first.len() + 200];
    let seen = read_among_good_files("truncated_array.json", |p| std::fs::write(p, cut).unwrap());
    assert!(error_of(&seen).contains("truncated JSON"), "{}", seen.row);
    assert_eq!(seen.row["format"], "tau-bench");
    assert_eq!(seen.row["traces"], 1);
}

/// Invalid UTF-8 in one JSONL line is a warning naming the line; the other lines and
/// their traces still count. The broken line lies past the 64 KB head detection sniffs.
#[test]
fn invalid_utf8_in_a_jsonl_line_is_a_warning_naming_the_line() {
    let mut lines = stream_json_runs(30);
    break_utf8(&mut lines, 256);
    assert!(lines[..255].iter().map(|l| l.len() + 1).sum::<usize>() > 64 * 1024);
    let seen = read_among_good_files("bad_utf8.jsonl", |p| std::fs::write(p, join_lines(&lines)).unwrap());
    assert_eq!(seen.row["format"], "claude-stream-json");
    assert_eq!(seen.row["error"], Value::Null);
    assert_eq!(counts(&seen.row)[0], 60, "every run still counts");
    let warnings = warnings_of(&seen.row);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("line 256: invalid JSON"), "{warnings:?}");
    assert!(seen.show_human.contains("warning  line 256: "), "{}", seen.show_human);
}

/// The same broken line near the start of the file must read the same way, not turn the
/// whole file into "binary".
#[test]
fn invalid_utf8_in_an_early_jsonl_line_is_a_warning_too() {
    let mut lines = stream_json_runs(30);
    break_utf8(&mut lines, 4);
    let seen = read_among_good_files("bad_utf8_early.jsonl", |p| std::fs::write(p, join_lines(&lines)).unwrap());
    assert_eq!(seen.row["format"], "claude-stream-json", "{}", seen.row);
    assert_eq!(counts(&seen.row)[0], 60);
    assert!(warnings_of(&seen.row)[0].starts_with("line 4: "), "{}", seen.row);
}

/// A JSONL file whose first line is longer than the sniffed head is still JSONL: a broken
/// line later is a warning, not the end of the file.
#[test]
fn jsonl_with_a_first_line_over_64_kb_reads_line_by_line() {
    let mut lines = stream_json_runs(4);
    let tools: Vec<String> = (0..10_000).map(|i| format!("\"Tool{i}\"")).collect();
    let long_init = format!(
        "{{\"type\": \"system\", \"subtype\": \"init\", \"session_id\": \"sj-0\", \"tools\": [{}]}}",
        tools.join(", ")
    );
    assert!(long_init.len() > 64 * 1024);
    lines.insert(0, long_init.into_bytes());
    lines[20].truncate(50);
    let seen = read_among_good_files("long_first_line.jsonl", |p| std::fs::write(p, join_lines(&lines)).unwrap());
    assert_eq!(seen.row["error"], Value::Null, "{}", seen.row);
    // The 8 runs of the copies; the long init line opens a session with no run in it.
    assert_eq!(counts(&seen.row)[0], 8);
    assert!(warnings_of(&seen.row)[0].starts_with("line 21: "), "{}", seen.row);
}

/// A fatal read error in the middle of a file keeps the traces read before it.
#[test]
fn fatal_error_mid_file_keeps_the_traces_read_before_it() {
    // Pretty-printed concatenated documents: a broken one ends the file.
    let lines = stream_json_runs(3);
    let mut body = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let value: Value = serde_json::from_slice(line).unwrap();
        let mut pretty = serde_json::to_vec_pretty(&value).unwrap();
        if i == 18 {
            // The first record of the third copy, cut to `{\n  "type": "sy`; the file goes on.
            pretty.truncate(15);
        }
        body.extend(pretty);
        body.push(b'\n');
    }
    let seen = read_among_good_files("concatenated.json", |p| std::fs::write(p, &body).unwrap());
    assert_eq!(seen.row["format"], "claude-stream-json");
    assert!(error_of(&seen).starts_with("byte "), "{}", seen.row);
    // Both copies before the break: four runs, two failed and two passed.
    assert_eq!(counts(&seen.row), [4, 2, 2, 0]);
    assert_eq!(seen.show["traces"].as_array().unwrap().len(), 4);
}

#[test]
fn random_bytes_are_not_a_trace() {
    let with_nul = pseudo_random_bytes(4096, 0x5eed);
    assert!(with_nul.contains(&0));
    let seen = read_among_good_files("random.bin", |p| std::fs::write(p, &with_nul).unwrap());
    assert_eq!(seen.row["format"], Value::Null);
    assert_eq!(seen.row["reason"], "not a trace: binary data (NUL bytes)");
    assert_eq!(seen.row["error"], Value::Null);

    // Without NUL bytes, invalid UTF-8 gives it away, with its byte.
    let no_nul: Vec<u8> = pseudo_random_bytes(4096, 0xfeed).into_iter().map(|b| b.max(1)).collect();
    let seen = read_among_good_files("random.dat", |p| std::fs::write(p, &no_nul).unwrap());
    let reason = seen.row["reason"].as_str().unwrap();
    assert!(reason.starts_with("not a trace: invalid UTF-8 at byte "), "{reason}");
    assert!(seen.show_human.contains(reason), "{}", seen.show_human);
}

#[test]
fn empty_file_is_not_a_trace() {
    let seen = read_among_good_files("empty.jsonl", |p| std::fs::write(p, b"").unwrap());
    assert_eq!(seen.row["format"], Value::Null);
    assert_eq!(seen.row["reason"], "empty file");
    assert_eq!(seen.row["error"], Value::Null);
    assert!(seen.show_human.contains("empty file"));
    let seen = read_among_good_files("blank.json", |p| std::fs::write(p, b" \n\n\t\n").unwrap());
    assert_eq!(seen.row["reason"], "empty file");
}

#[test]
fn json_nested_10000_deep_is_an_error_not_a_crash() {
    let arrays = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let seen = read_among_good_files("deep_arrays.json", |p| std::fs::write(p, &arrays).unwrap());
    let error = error_of(&seen);
    assert!(error.starts_with("byte ") && error.contains("recursion limit"), "{error}");

    let objects = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let seen = read_among_good_files("deep_objects.json", |p| std::fs::write(p, &objects).unwrap());
    assert!(error_of(&seen).contains("recursion limit"), "{}", seen.row);

    // Inside one JSONL line it costs that line only.
    let mut lines = stream_json_runs(1);
    lines.insert(2, format!("{{\"type\": \"user\", \"message\": {arrays}}}").into_bytes());
    let seen = read_among_good_files("deep_line.jsonl", |p| std::fs::write(p, join_lines(&lines)).unwrap());
    assert_eq!(seen.row["error"], Value::Null);
    assert_eq!(counts(&seen.row)[0], 2);
    let warnings = warnings_of(&seen.row);
    assert!(warnings.len() == 1 && warnings[0].starts_with("line 3: ") && warnings[0].contains("recursion limit"));
}

/// One broken JSONL line in the middle: a warning naming the line, every trace still counts.
#[test]
fn jsonl_with_one_broken_line_in_the_middle_keeps_the_other_traces() {
    let mut lines = stream_json_runs(1);
    lines[4].truncate(40);
    let seen = read_among_good_files("broken_line.jsonl", |p| std::fs::write(p, join_lines(&lines)).unwrap());
    assert_eq!(seen.row["format"], "claude-stream-json");
    assert_eq!(seen.row["error"], Value::Null);
    assert_eq!(counts(&seen.row), [2, 1, 1, 0]);
    let warnings = warnings_of(&seen.row);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].starts_with("line 5: truncated JSON"), "{warnings:?}");
    assert_eq!(seen.show["warnings"], seen.row["warnings"]);
    assert_eq!(seen.show["traces"].as_array().unwrap().len(), 2);
}

#[test]
fn unknown_json_shape_reason_names_the_keys() {
    let seen = read_among_good_files("export.json", |p| {
        std::fs::write(p, br#"{"zeta": 1, "items": [1, 2], "meta": {"v": 1}}"#).unwrap();
    });
    assert_eq!(seen.row["format"], Value::Null);
    assert_eq!(seen.row["error"], Value::Null);
    let reason = seen.row["reason"].as_str().unwrap();
    assert!(reason.starts_with("unknown JSON shape: first record is {items, meta, zeta}"), "{reason}");
    assert!(seen.show_human.contains(reason));
}

// ---------------------------------------------------------------------------------------
// A line of 500 MB
// ---------------------------------------------------------------------------------------

const HUGE_MB: usize = 500;

/// Write `prefix`, then 500 MiB of `a`, then `suffix`, through a BufWriter: the test itself
/// never holds the line in memory.
fn write_huge(path: &Path, prefix: &[u8], suffix: &[u8]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    out.write_all(prefix).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..HUGE_MB {
        out.write_all(&chunk).unwrap();
    }
    out.write_all(suffix).unwrap();
    out.flush().unwrap();
}

/// Peak RSS (kB) of `autoharness <args>` run through `/usr/bin/time -v`, with its stdout;
/// None when GNU time is not installed.
#[allow(clippy::print_stderr)]
fn peak_rss_kb(sandbox: &Sandbox, args: &[&str]) -> Option<(u64, Vec<u8>)> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        eprintln!("NOTE: /usr/bin/time is not installed; the peak memory of a 500 MB line is not checked");
        return None;
    }
    let mut cmd = sandbox.std_command(time);
    cmd.arg("-v").arg(bin()).args(sandbox.db_args()).args(args);
    let output = cmd.output().expect("run /usr/bin/time");
    assert_no_panic(&output, args);
    let err = stderr(&output);
    let kb = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes): "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in:\n{err}"));
    Some((kb, output.stdout))
}

/// A single 500 MB line (no newline anywhere) and a 500 MB line inside a JSONL file: each
/// is a one-line problem naming the file, its place and the record limit, the rest of the
/// folder is read, and memory stays bounded by the limit, far from the file's size.
#[test]
fn a_500_mb_line_is_a_bounded_one_line_error() {
    // The line is the start of a JSON object that never ends within the limit.
    let seen = read_among_good_files("huge.json", |p| write_huge(p, b"{\"type\": \"user\", \"text\": \"", b"\"}"));
    let error = error_of(&seen);
    assert!(error.contains("record limit"), "{error}");
    assert!(error.starts_with("byte 0: ") || error.starts_with("line 1: "), "{error}");
    let warning_lines: Vec<&str> = seen.ls_stderr.lines().filter(|l| l.contains("huge.json")).collect();
    assert_eq!(warning_lines, [format!("warning: data/huge.json: {error}")], "{}", seen.ls_stderr);
    check_peak_memory(&seen.sandbox, "data/huge.json");

    // In a JSONL file the long line is skipped with a warning; the lines around it count.
    let mut lines = stream_json_runs(1);
    let tail = join_lines(&lines.split_off(2));
    let head = join_lines(&lines);
    let seen = read_among_good_files("huge_line.jsonl", |p| {
        let mut prefix = head.clone();
        prefix.extend_from_slice(b"{\"type\": \"user\", \"session_id\": \"sj-1\", \"text\": \"");
        let mut suffix = b"\"}\n".to_vec();
        suffix.extend_from_slice(&tail);
        write_huge(p, &prefix, &suffix);
    });
    assert_eq!(seen.row["error"], Value::Null);
    assert_eq!(counts(&seen.row)[0], 2);
    assert_eq!(warnings_of(&seen.row), ["line 3: line longer than the 256 MiB record limit, skipped"]);
    check_peak_memory(&seen.sandbox, "data/huge_line.jsonl");
}

/// Reading the file holds at most about one record (the 256 MiB limit), never the file.
fn check_peak_memory(sandbox: &Sandbox, rel: &str) {
    let Some((kb, out)) = peak_rss_kb(sandbox, &["--json", "traces", "show", rel]) else { return };
    let doc: Value = serde_json::from_slice(&out).expect("show --json");
    assert!(doc.to_string().contains("record limit"), "{doc}");
    assert!(kb < 600 * 1024, "{rel}: peak RSS {} MB for a {HUGE_MB} MB line", kb / 1024);
}

// ---------------------------------------------------------------------------------------
// The store, compressed copies
// ---------------------------------------------------------------------------------------

/// Listing the same folder twice replaces what the first run stored: the same file and
/// trace rows, matching the listing's totals.
#[test]
fn ls_twice_leaves_the_store_consistent() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("formats/langsmith");
    sandbox.copy_fixture("formats/tau-bench");
    sandbox.write("formats/broken.jsonl", b"{\"run_type\": \"llm\"\n");
    let first = sandbox.json(&["traces", "ls", "formats"]);
    let after_first = store_counts(&sandbox.db());
    let second = sandbox.json(&["traces", "ls", "formats"]);
    let after_second = store_counts(&sandbox.db());
    assert_eq!(first["totals"], second["totals"]);
    assert_eq!(after_first, after_second);
    let totals = &first["totals"];
    assert_eq!(after_first, (totals["files"].as_i64().unwrap(), totals["traces"].as_i64().unwrap()));
    assert!(after_first.1 > 0);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `traces show --json` of a file without the parts that differ between copies.
fn reading_of(sandbox: &Sandbox, rel: &str) -> Value {
    let mut doc = sandbox.json(&["traces", "show", rel]);
    let obj = doc.as_object_mut().unwrap();
    obj.remove("path");
    obj.remove("size");
    doc
}

/// gzip (one member or several) and zstd copies read exactly like the original: same
/// format, traces, ids, steps and outcomes, whatever the container (JSONL, document,
/// array) and for formats that name traces after the file or read verdicts beside it.
#[test]
fn gzip_and_zstd_copies_read_like_the_original() {
    let originals = [
        "formats/codex/handmade_tool_failures.jsonl",
        "formats/phoenix/phoenix-trace-handmade.json",
        "formats/tau-bench/agentrx_excerpt.json",
        "formats/span-attributes/otel_genai_client_span_tool_calls.json",
        "formats/messages/weather_tool_retry.jsonl",
        "formats/mini-swe-agent/trajs/django__django-16429/django__django-16429.traj.json",
    ];
    let sandbox = Sandbox::new();
    for rel in originals {
        let folder = rel.split('/').take(2).collect::<Vec<_>>().join("/");
        sandbox.copy_fixture(&folder);
        let bytes = std::fs::read(fixture(rel)).unwrap();
        let (a, b) = bytes.split_at(bytes.len() / 2);
        let copies = [
            (format!("{rel}.gz"), gzip(&bytes), "gzip"),
            // Two gzip members (as `cat a.gz b.gz` makes): the second must not be ignored.
            (format!("{rel}.gz"), [gzip(a), gzip(b)].concat(), "gzip"),
            (
                format!("{rel}.zst"),
                ruzstd::encoding::compress_to_vec(&bytes[..], ruzstd::encoding::CompressionLevel::Fastest),
                "zstd",
            ),
        ];
        let original = reading_of(&sandbox, rel);
        assert!(!original["traces"].as_array().unwrap().is_empty(), "{rel}");
        for (copy, compressed, compression) in copies {
            sandbox.write(&copy, compressed);
            assert_eq!(reading_of(&sandbox, &copy), original, "{copy} reads like {rel}");
            let ls = sandbox.json(&["traces", "ls", &copy]);
            assert_eq!(ls["files"][0]["compression"], compression, "{copy}");
        }
    }
}

/// A zstd file written by the reference `zstd` CLI (not by the decoder's own encoder):
/// tests/fixtures/compressed/handmade_tool_failures.jsonl.zst.
#[test]
fn zstd_from_the_reference_encoder_reads_like_the_original() {
    let sandbox = Sandbox::new();
    sandbox.copy_fixture("formats/codex/handmade_tool_failures.jsonl");
    sandbox.copy_fixture("compressed/handmade_tool_failures.jsonl.zst");
    let original = reading_of(&sandbox, "formats/codex/handmade_tool_failures.jsonl");
    let read = reading_of(&sandbox, "compressed/handmade_tool_failures.jsonl.zst");
    assert_eq!(read, original);
    let ls = sandbox.json(&["traces", "ls", "compressed"]);
    assert_eq!(ls_row(&ls, "handmade_tool_failures.jsonl.zst")["compression"], "zstd");
}

// ---------------------------------------------------------------------------------------
// Bad values and special files through every command (issue 15): clear errors, exit 2,
// no panic, no hang, nothing done before the check
// ---------------------------------------------------------------------------------------

/// A project with the `echo` test harness, and the bundled example's store-free layout.
fn echo_project() -> Sandbox {
    let sb = Sandbox::new();
    crate::common::cli::copy_tree(&fixture("harnesses/echo"), sb.path());
    sb
}

/// `autoharness <args>` bounded in time: a command that hangs fails the test instead.
fn run_bounded(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let out = sb.command(args).timeout(std::time::Duration::from_secs(60)).output().expect("run autoharness");
    assert_no_panic(&out, args);
    out
}

fn error_2(sb: &Sandbox, args: &[&str], expect: &[&str]) -> String {
    let out = run_bounded(sb, args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", transcript(&out));
    for e in expect {
        assert!(err.contains(e), "{args:?}: `{e}` not in:\n{err}");
    }
    err
}

#[test]
fn huge_durations_are_errors_not_panics() {
    let sb = echo_project();
    sb.write(
        "harnesses/echo/harness.toml",
        "name = \"echo\"\neditable = [\"prompt.txt\"]\nrun = \"sh run.sh\"\ntimeout = \"99999999999999999999s\"\n",
    );
    for args in [&["eval", "--trials", "1"][..], &["doctor"], &["gate", "-"]] {
        let out = run_bounded(&sb, args);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains("timeout") && all.contains("at most 366 days"), "{args:?}: {}", transcript(&out));
        assert_ne!(out.status.code(), Some(0), "{args:?}");
    }
    let sb = echo_project();
    error_2(&sb, &["run", "--time-limit", "99999999999999999999s"], &["--time-limit", "at most 366 days"]);
}

#[test]
fn values_are_checked_before_any_work() {
    let sb = echo_project();
    for (args, expect) in [
        (&["run", "--budget-usd", "NaN"][..], "not a finite number"),
        (&["run", "--budget-usd=-1"], "negative"),
        (&["run", "--branch", "bad..name"], "not a valid git branch name"),
        (&["run", "--branch=-x"], "not a valid git branch name"),
        (&["gate", "--alpha", "NaN", "-"], "not a finite number"),
        (&["gate", "--alpha", "0", "-"], "strictly between 0 and 1"),
        (&["gate", "--alpha", "2", "-"], "strictly between 0 and 1"),
        // Zero trials ran one each without a word; zero candidates screened and gated nothing.
        (&["eval", "--trials", "0"], "0 is not in 1.."),
        (&["gate", "--trials", "0", "-"], "0 is not in 1.."),
        (&["run", "--candidates", "0"], "0 is not in 1.."),
    ] {
        error_2(&sb, args, &[expect]);
    }
    sb.write("autoharness.toml", "[proposer]\nprovider = \"command\"\n");
    error_2(&sb, &["run"], &["needs a command"]);
    // None of these started a run: nothing is left "running" in the store.
    if sb.db().exists() {
        let rt = autoharness::store::runtime().unwrap();
        let running: i64 = rt.block_on(async {
            let store = autoharness::store::Store::open(&sb.db()).await.unwrap();
            let n = sqlx::query_scalar("SELECT count(*) FROM runs WHERE status = 'running'")
                .fetch_one(store.sqlite().unwrap())
                .await
                .unwrap();
            store.close().await;
            n
        });
        assert_eq!(running, 0);
    }
}

#[test]
fn special_files_are_skipped_with_a_reason_and_never_opened() {
    let sb = Sandbox::new();
    sb.write("data/good.jsonl", std::fs::read(fixture(GOOD_FILES[0].1)).unwrap());
    let fifo = sb.path().join("data/pipe.jsonl");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // A reader that opened the FIFO would wait for a writer for ever: bounded runs fail then.
    error_2(&sb, &["traces", "show", "data/pipe.jsonl"], &["data/pipe.jsonl", "FIFO", "skipped without reading"]);
    let doc = sb.json(&["mine", "--no-cases", "data"]);
    assert_eq!(doc["summary"]["failed"], GOOD_FILES[0].2[2], "{doc:#}");
    assert!(doc["errors"].to_string().contains("pipe.jsonl") && doc["errors"].to_string().contains("FIFO"), "{doc:#}");
    let out = run_bounded(&sb, &["--json", "mine", "--no-cases", "data/pipe.jsonl"]);
    assert!(stdout(&out).contains("FIFO"), "{}", transcript(&out));
    let ls = run_bounded(&sb, &["traces", "ls", "data"]);
    assert!(stderr(&ls).contains("pipe.jsonl") && stderr(&ls).contains("FIFO"), "{}", transcript(&ls));
    let out = run_bounded(&sb, &["gate", "data/pipe.jsonl"]);
    assert!(stderr(&out).contains("FIFO"), "{}", transcript(&out));
}

#[test]
fn errors_name_the_path_and_say_what_is_wrong() {
    let sb = echo_project();
    // A symlink loop is not "does not exist".
    std::os::unix::fs::symlink("loop-b", sb.path().join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", sb.path().join("loop-b")).unwrap();
    error_2(&sb, &["traces", "show", "loop-a"], &["loop-a", "symlink loop"]);
    error_2(&sb, &["mine", "loop-a"], &["loop-a", "symlink loop"]);
    error_2(&sb, &["gate", "loop-a"], &["loop-a", "symlink loop"]);
    // A folder where a file belongs.
    let tmp = std::env::temp_dir().display().to_string();
    error_2(&sb, &["gate", &tmp], &[&format!("`{tmp}` is a directory")]);
    let cmd = sb.std_command(bin()).args(["--db", &sb.path().display().to_string(), "clusters"]).output().unwrap();
    assert_eq!(cmd.status.code(), Some(2), "{}", transcript(&cmd));
    assert!(stderr(&cmd).contains("is a directory, not a database file"), "{}", transcript(&cmd));
}

#[test]
fn a_damaged_store_is_not_ok_in_doctor() {
    let sb = Sandbox::new();
    sb.write("t/good.jsonl", std::fs::read(fixture(GOOD_FILES[0].1)).unwrap());
    sb.json(&["mine", "--no-cases", "t"]);
    let healthy = sb.json(&["doctor"]);
    assert_eq!(healthy["store"]["ok"], true, "{healthy:#}");
    // Overwrite the root page of an index of `failures`: SQLite opens the file and counts
    // traces as before; only a check finds the damage.
    let rt = autoharness::store::runtime().unwrap();
    let (page, page_size): (i64, i64) = rt.block_on(async {
        let store = autoharness::store::Store::open(&sb.db()).await.unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(store.sqlite().unwrap()).await.unwrap();
        let page = sqlx::query_scalar(
            "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'failures' ORDER BY rootpage DESC LIMIT 1",
        )
        .fetch_one(store.sqlite().unwrap())
        .await
        .unwrap();
        let size = sqlx::query_scalar("PRAGMA page_size").fetch_one(store.sqlite().unwrap()).await.unwrap();
        store.close().await;
        (page, size)
    });
    let mut bytes = std::fs::read(sb.db()).unwrap();
    let at = ((page - 1) * page_size) as usize;
    for b in &mut bytes[at..at + page_size as usize] {
        *b = 0x5a;
    }
    std::fs::write(sb.db(), &bytes).unwrap();
    let out = run_bounded(&sb, &["--json", "doctor"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", transcript(&out)));
    assert_eq!(doc["store"]["ok"], false, "{doc:#}");
    let detail = doc["store"]["detail"].as_str().unwrap();
    assert!(detail.contains("quick_check"), "{detail}");
}

/// A store nobody may write (a shared or archived one): the commands that only read work.
#[test]
fn a_read_only_store_serves_the_reading_commands() {
    let sb = Sandbox::new();
    sb.write("t/good.jsonl", std::fs::read(fixture(GOOD_FILES[0].1)).unwrap());
    let mined = sb.json(&["mine", "--no-cases", "t"]);
    let store_dir = sb.path().join("ro");
    std::fs::create_dir(&store_dir).unwrap();
    std::fs::copy(sb.db(), store_dir.join("state.db")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(store_dir.join("state.db"), std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(sb.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = store_dir.join("state.db").display().to_string();
    // root may write anything: run as `nobody` then (setpriv), as the user otherwise.
    let as_other = |args: &[&str]| {
        let mut cmd = if nix::unistd::Uid::effective().is_root() {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin());
            c
        } else {
            std::process::Command::new(bin())
        };
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("HOME", "/").env("NO_COLOR", "1");
        cmd.current_dir(&store_dir).args(["--db", &db]).args(args).output().expect("run")
    };
    let out = as_other(&["--json", "clusters"]);
    if nix::unistd::Uid::effective().is_root() && stderr(&out).contains("setpriv") {
        panic!("setpriv is needed to test as a user other than root: {}", transcript(&out));
    }
    assert!(out.status.success(), "{}", transcript(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["clusters"].as_array().unwrap().len(), mined["clusters"].as_array().unwrap().len(), "{doc:#}");
    let out = as_other(&["cases"]);
    assert!(out.status.success(), "{}", transcript(&out));
    // A writing command says why it cannot, naming the store.
    let out = as_other(&["mine", "--no-cases", sb.path().join("t").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", transcript(&out));
    assert!(stderr(&out).contains(&format!("the store `{db}` is read-only")), "{}", transcript(&out));
    std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A trial that kills its own parent: the reason must not blame the memory limit.
#[test]
fn a_trial_that_kills_its_parent_is_not_called_out_of_memory() {
    let sb = echo_project();
    sb.write("harnesses/echo/run.sh", "kill -9 $PPID; sleep 1\n");
    let doc = sb.json(&["eval", "--trials", "1"]);
    let failures = doc["cases"][0]["failures"].to_string();
    assert!(!failures.contains("memory limit"), "{failures}");
    assert!(failures.contains("SIGKILL"), "{failures}");
}

/// `script` run by `sh` with a fresh tmpfs of `size` mounted at `$MNT` (a folder of the
/// sandbox), in a mount namespace of its own: a real, small file system that fills, as root
/// (CI) and as any user (a user namespace). `$AH` is the binary, `$OUT` a folder outside the
/// mount for what the test reads after (the mount goes with the namespace). None (a skip,
/// a failure under AUTOHARNESS_REQUIRE_ALL=1) where namespaces are not allowed.
fn on_small_disk(sb: &Sandbox, size: &str, script: &str) -> Option<std::process::Output> {
    let mnt = sb.path().join("mnt");
    let out_dir = sb.path().join("out");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::create_dir_all(&out_dir).unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = sb.std_command("unshare");
    cmd.arg(if root { "-m" } else { "-rm" })
        .args(["sh", "-c", &format!("mount -t tmpfs -o size={size} tmpfs \"$MNT\" || exit 99\n{script}")])
        .env("MNT", &mnt)
        .env("OUT", &out_dir)
        .env("AH", bin());
    let out = cmd.output().ok().filter(|o| o.status.code() != Some(99) && !stderr(o).contains("unshare:"));
    if out.is_none() {
        let msg = "SKIPPED: cannot mount a small tmpfs in a mount namespace here (unshare -m/-rm)";
        assert!(std::env::var("AUTOHARNESS_REQUIRE_ALL").as_deref() != Ok("1"), "{msg}");
    }
    out
}

/// A store on a full disk (a tiny tmpfs): a first `mine` fits, a second on more traces
/// does not. The error names the store and says the disk is full (not "a newer
/// autoharness"); the store passes `PRAGMA integrity_check` and still holds exactly what
/// the first mine stored.
#[test]
fn a_full_disk_under_the_store_names_it_and_leaves_it_intact() {
    let sb = Sandbox::new();
    let traces = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/support-bot/traces");
    crate::common::cli::copy_tree(&traces, &sb.path().join("traces"));
    std::fs::create_dir_all(sb.path().join("first")).unwrap();
    std::fs::rename(sb.path().join("traces/2026-11-24.jsonl"), sb.path().join("first/2026-11-24.jsonl")).unwrap();
    let script = r#"
"$AH" --db "$MNT/state.db" mine --no-cases first >/dev/null 2>"$OUT/first.err" || { cat "$OUT/first.err" >&2; exit 98; }
"$AH" --db "$MNT/state.db" --json traces ls first > "$OUT/before.json"
# Fill what is left of the disk, then mine the rest of the traces onto it.
dd if=/dev/zero of="$MNT/filler" bs=4k 2>/dev/null
"$AH" --db "$MNT/state.db" mine --no-cases traces
echo "exit=$?" >&2
cp "$MNT"/state.db* "$OUT"/
"#;
    let Some(out) = on_small_disk(&sb, "2m", script) else { return };
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(98), "the first mine fits: {err}");
    assert!(err.contains("exit=2"), "the second mine fails: {err}");
    let store = sb.path().join("mnt/state.db");
    assert!(err.contains(&format!("the store `{}`", store.display())) && err.contains("no space left"), "{err}");
    assert!(!err.contains("newer autoharness"), "{err}");
    let copy = sb.path().join("out/state.db");
    let check = crate::concurrency::rows(&copy, "SELECT json_array(integrity_check) AS j FROM pragma_integrity_check");
    assert_eq!(check, vec![serde_json::json!(["ok"])]);
    // Only what the first mine stored: the failed one's transaction was rolled back.
    let files = crate::concurrency::rows(&copy, "SELECT json_array(path) AS j FROM trace_files ORDER BY path");
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0][0].as_str().unwrap().ends_with("2026-11-24.jsonl"), "{files:?}");
}

/// Case files on a full disk: `mine` names the case file it could not write, leaves no
/// temporary file behind, and the store passes `PRAGMA integrity_check`.
#[test]
fn a_full_disk_under_evals_names_the_case_file() {
    let sb = Sandbox::new();
    let traces = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/support-bot/traces");
    crate::common::cli::copy_tree(&traces, &sb.path().join("traces"));
    let script = r#"
here=$(pwd)
mkdir -p "$MNT/evals"
cd "$MNT"
"$AH" --db "$OUT/state.db" mine --harness support-bot "$here/traces"
echo "exit=$?" >&2
find "$MNT" -name '*.tmp' >&2
"#;
    let Some(out) = on_small_disk(&sb, "16k", script) else { return };
    let err = stderr(&out);
    assert!(err.contains("exit=2"), "{err}");
    let evals = sb.path().join("mnt/evals");
    assert!(err.contains(&format!("`{}/", evals.display())) && err.contains(".json`: no space left"), "{err}");
    assert!(!err.contains(".tmp"), "a temporary file was left: {err}");
    let check = crate::concurrency::rows(
        &sb.path().join("out/state.db"),
        "SELECT json_array(integrity_check) AS j FROM pragma_integrity_check",
    );
    assert_eq!(check, vec![serde_json::json!(["ok"])]);
}
