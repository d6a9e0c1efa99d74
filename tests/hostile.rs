//! Hostile input end to end (issue 15): secrets in traces and trial output, escape
//! sequences and Markdown from traces and trials, case ids that are paths, and a proposer
//! server that never answers under `--time-limit`. Each test feeds the real binary what an
//! attacker or a careless producer would, and checks what lands on disk, in the store and
//! on the terminal.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::cli::{Sandbox, copy_tree, stderr, stdout};

const OPENAI_KEY: &str = "sk-proj-Zq8Wx3Ec5Rv7Tb9Yn1Um2Ik4Ol6Pa0Sd";
const EMAIL: &str = "dave.04@example.com";
const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

fn example(parts: &[&str]) -> Sandbox {
    let sb = Sandbox::new();
    for rel in parts {
        copy_tree(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel), &sb.path().join(rel));
    }
    sb
}

/// Every file under `dir` (the store and its log included) as bytes, for a grep.
fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    all_bytes(dir)
        .into_iter()
        .filter(|(_, b)| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(p, _)| p)
        .collect()
}

/// The bundled example's traces with secrets in every user message and hostile text in
/// every orders-API error: what `mine` writes must carry none of it raw.
#[test]
fn secrets_and_markup_in_traces_never_reach_case_files_the_store_or_reports() {
    let sb = example(&["examples/support-bot/traces"]);
    let dir = sb.path().join("examples/support-bot/traces");
    let mut planted = 0;
    for (path, bytes) in all_bytes(&dir) {
        let text = String::from_utf8(bytes).unwrap();
        planted += text.matches("I'm dave_04.").count();
        let text = text
            .replace("I'm dave_04.", &format!("I'm dave_04 ({EMAIL}), my key is {OPENAI_KEY} and {AWS_KEY}."))
            .replace("rders API did not answer", "rders API <script>alert(1)</script> @everyone did not answer");
        std::fs::write(path, text).unwrap();
    }
    assert!(planted > 0, "the fixture has the text the secrets are planted in");
    let doc = sb.json(&["mine", "--harness", "support-bot", "--report", "report.md", "examples/support-bot/traces"]);
    assert!(doc["summary"]["cases_written"].as_u64().unwrap() > 0, "{doc:#}");
    let redacted = &doc["summary"]["redacted"];
    for kind in ["openai-key", "email", "aws-access-key"] {
        assert!(redacted[kind].as_u64().unwrap_or(0) > 0, "{kind} counted: {redacted}");
    }
    for secret in [OPENAI_KEY, EMAIL, AWS_KEY] {
        assert_eq!(files_containing(&sb.path().join("evals"), secret), Vec::<PathBuf>::new(), "{secret} in case files");
        // The store file and its write-ahead log, byte for byte.
        let in_store: Vec<PathBuf> =
            files_containing(sb.path(), secret).into_iter().filter(|p| !p.starts_with(&dir)).collect();
        assert_eq!(in_store, Vec::<PathBuf>::new(), "{secret} written outside the trace files");
    }
    let cases = files_containing(&sb.path().join("evals"), "[REDACTED:openai-key]");
    assert!(!cases.is_empty(), "the placeholder takes the secret's place in the case input");
    let md = std::fs::read_to_string(sb.path().join("report.md")).unwrap();
    assert!(md.contains("alert("), "the hostile label is in the report: {md}");
    assert!(!md.contains("<script>") && !md.contains("@everyone"), "{md}");
    // The human table and `clusters` print the same labels: no raw escapes either way.
    let table = stdout(&sb.run(&["mine", "--harness", "support-bot", "examples/support-bot/traces"]));
    assert!(table.contains("redacted") || table.contains("alert"), "{table}");
}

/// Every text value of every column of every table of the store at `db`: a secret stored
/// in a long value can straddle SQLite pages, so a byte scan of the file alone could miss it.
fn store_text(db: &Path) -> Vec<(String, String)> {
    let rt = autoharness::store::runtime().unwrap();
    rt.block_on(async {
        let store = autoharness::store::Store::open(db).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .fetch_all(store.sqlite().unwrap())
                .await
                .unwrap();
        let mut out = Vec::new();
        for t in tables {
            let cols: Vec<String> = sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{t}')"))
                .fetch_all(store.sqlite().unwrap())
                .await
                .unwrap();
            for c in cols {
                let values: Vec<Option<Vec<u8>>> =
                    sqlx::query_scalar(&format!("SELECT CAST(\"{c}\" AS BLOB) FROM \"{t}\""))
                        .fetch_all(store.sqlite().unwrap())
                        .await
                        .unwrap();
                out.extend(
                    values
                        .into_iter()
                        .flatten()
                        .map(|v| (format!("{t}.{c}"), String::from_utf8_lossy(&v).into_owned())),
                );
            }
        }
        store.close().await;
        out
    })
}

/// Secrets planted in the traces that are mined, in everything a trial writes (stdout,
/// stderr, its trace, files in its io folder) and in a proposer's answer: after `mine` and
/// a `run` that gates, accepts and applies, no secret is in any text column of any table,
/// nor in any file under `.autoharness/` or `evals/` (the store and its log included).
#[test]
fn secrets_from_traces_trials_and_proposers_are_in_no_row_and_no_file() {
    let sb = example(&["harnesses/support-bot", "evals/support-bot", "examples/support-bot/traces"]);
    let traces = sb.path().join("examples/support-bot/traces");
    for (path, bytes) in all_bytes(&traces) {
        let text = String::from_utf8(bytes).unwrap();
        let text =
            text.replace("I'm dave_04.", &format!("I'm dave_04 ({EMAIL}), my key is {OPENAI_KEY} and {AWS_KEY}."));
        std::fs::write(path, text).unwrap();
    }
    let value = "v4lue-of-the-passed-through-variable";
    let manifest = std::fs::read_to_string(sb.path().join("harnesses/support-bot/harness.toml")).unwrap();
    sb.write(
        "harnesses/support-bot/harness.toml",
        manifest
            .replace("run = \"python3 agent.py\"", "run = \"sh wrap.sh\"")
            .replace("env = []", "env = [\"AH_TEST_TOKEN\"]"),
    );
    // The key is assembled at run time, so no file the test wrote holds it whole.
    let (k1, k2) = OPENAI_KEY.split_at(20);
    let wrap = r#"python3 agent.py; rc=$?
K="K1""K2"
echo "debug token=$AH_TEST_TOKEN key $K AWS"
echo "debug token=$AH_TEST_TOKEN key $K" >&2
io=$(dirname "$AUTOHARNESS_RESULT")
printf '{"note": "token %s key %s", "private_key": "plain-field-value"}\n' "$AH_TEST_TOKEN" "$K" > "$io/notes.json"
printf 'token %s\n' "$AH_TEST_TOKEN" > "$io/notes.txt"
python3 - "$AUTOHARNESS_TRACE_OUT" "$AH_TEST_TOKEN" "$K" <<'PY'
import json, sys
path, token, key = sys.argv[1:]
try:
    with open(path) as f:
        trace = json.load(f)
    if isinstance(trace, dict):
        trace["debug"] = "token %s key %s" % (token, key)
        with open(path, "w") as f:
            json.dump(trace, f)
except (OSError, ValueError):
    pass
PY
exit $rc
"#;
    sb.write("harnesses/support-bot/wrap.sh", wrap.replace("K1", k1).replace("K2", k2).replace("AWS", AWS_KEY));
    let proposer = r#"[proposer]
provider = "command"
command = '''cat > /dev/null; K="K1""K2"; echo "I used $K and $AH_TEST_TOKEN"; echo "stderr $K" >&2; printf 'Verify the customer identity before any refund.\n' >> prompts/system.md'''
"#;
    sb.write("autoharness.toml", proposer.replace("K1", k1).replace("K2", k2));
    // The default store, `.autoharness/state.db`: everything autoharness keeps is under
    // `.autoharness/` and `evals/`.
    let run = |args: &[&str]| {
        let out = sb.std_command(crate::common::cli::bin()).args(args).env("AH_TEST_TOKEN", value).output().unwrap();
        crate::common::cli::assert_no_panic(&out, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        for secret in [value, OPENAI_KEY, EMAIL, AWS_KEY] {
            assert!(!stdout(&out).contains(secret) && !stderr(&out).contains(secret), "{args:?} printed {secret}");
        }
        out
    };
    run(&["mine", "--harness", "support-bot", "examples/support-bot/traces"]);
    run(&["run", "--max-iterations", "2", "--candidates", "1", "--apply"]);
    let rows = store_text(&sb.path().join(".autoharness/state.db"));
    let has = |col: &str, text: &str| rows.iter().any(|(c, v)| c == col && v.contains(text));
    assert!(has("proposals.answer", "[REDACTED:openai-key]"), "the answer is kept, redacted");
    assert!(has("trials.output", "[REDACTED:env:AH_TEST_TOKEN]"), "the trial's output is kept, redacted");
    for secret in [value, OPENAI_KEY, EMAIL, AWS_KEY] {
        let leaked: Vec<&String> = rows.iter().filter(|(_, v)| v.contains(secret)).map(|(col, _)| col).collect();
        assert!(leaked.is_empty(), "{secret} stored in {leaked:?}");
        for dir in [".autoharness", "evals"] {
            // `roots/` holds verbatim copies of the user's harness for trials to run: what the
            // user's own files hold (here `wrap.sh` names AWS_KEY) is theirs, not a leak.
            let found: Vec<PathBuf> = files_containing(&sb.path().join(dir), secret)
                .into_iter()
                .filter(|p| !p.to_string_lossy().contains("/state.trials/roots/"))
                .collect();
            assert_eq!(found, Vec::<PathBuf>::new(), "{secret} under {dir}/");
        }
        let store_files: Vec<PathBuf> = files_containing(sb.path(), secret)
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("state.db")))
            .collect();
        assert_eq!(store_files, Vec::<PathBuf>::new(), "{secret} in the store's files");
    }
    // The trial's own files are kept as evidence, scrubbed.
    let notes: Vec<PathBuf> = all_bytes(&sb.path().join(".autoharness"))
        .into_iter()
        .filter(|(p, _)| p.ends_with("io/notes.json"))
        .map(|(p, _)| p)
        .collect();
    assert!(!notes.is_empty(), "trial io folders are kept");
    let kept = std::fs::read_to_string(&notes[0]).unwrap();
    assert!(kept.contains("[REDACTED:env:AH_TEST_TOKEN]") && kept.contains("[REDACTED:field]"), "{kept}");
    assert!(!kept.contains("plain-field-value"), "{kept}");
}

/// A trial that prints an allow-listed variable's value, a key, and escape sequences that
/// would clear the screen and fake a verdict.
#[test]
fn trial_output_is_scrubbed_of_env_values_and_neutralised_on_the_terminal() {
    let sb = Sandbox::new();
    copy_tree(&crate::common::fixture("harnesses/echo"), sb.path());
    let value = "v4lue-of-the-passed-through-variable";
    sb.write("harnesses/echo/harness.toml", "name = \"echo\"\neditable = [\"prompt.txt\"]\nrun = \"sh run.sh\"\ntimeout = \"5s\"\nenv = [\"AH_TEST_TOKEN\"]\n");
    sb.write(
        "harnesses/echo/run.sh",
        format!(
            "K1={}; K2={}\necho \"token=$AH_TEST_TOKEN $K1$K2\"\nprintf 'fine\\n\\033[2J\\033[H\\033]0;pwned\\007\\r\\342\\234\\224 PASS %s\\n' \"$AH_TEST_TOKEN\" >&2\nexit 1\n",
            &OPENAI_KEY[..20],
            &OPENAI_KEY[20..]
        ),
    );
    let run = |args: &[&str]| {
        let mut cmd = sb.command(args);
        cmd.env("AH_TEST_TOKEN", value);
        let out = cmd.output().unwrap();
        crate::common::cli::assert_no_panic(&out, args);
        out
    };
    let json = run(&["--json", "eval", "--trials", "2"]);
    assert_eq!(json.status.code(), Some(0), "{}", stderr(&json));
    let text = stdout(&json);
    assert!(!text.contains(value) && !text.contains(OPENAI_KEY), "{text}");
    assert!(text.contains("[REDACTED:env:AH_TEST_TOKEN]"), "{text}");
    for secret in [value, OPENAI_KEY] {
        assert_eq!(files_containing(sb.path(), secret), Vec::<PathBuf>::new(), "{secret} stored");
    }
    let human = run(&["eval", "--trials", "2"]);
    let shown = format!("{}{}", stdout(&human), stderr(&human));
    assert!(!shown.contains('\x1b') && !shown.contains('\r') && !shown.contains('\x07'), "{shown:?}");
    assert!(shown.contains("\\e[2J") || shown.contains("PASS"), "the text is shown, made visible: {shown}");
}

/// A case whose id is a path: no trial folder outside `.autoharness/trials`, nothing deleted.
#[test]
fn a_case_id_that_is_a_path_never_leaves_the_trials_folder() {
    let sb = Sandbox::new();
    copy_tree(&crate::common::fixture("harnesses/echo"), sb.path());
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("keep.txt");
    std::fs::write(&victim, "precious").unwrap();
    for (name, id) in [("abs", outside.path().join("x").display().to_string()), ("up", "../../../../escaped".into())] {
        let case = serde_json::json!({"schema": "autoharness.case/v1", "id": id, "harness": "echo", "cluster": "k-1",
            "split": "train", "status": "active", "input": {"q": 1}, "checks": [{"kind": "no_error"}],
            "provenance": {"traces": [], "files": [], "signature": "", "mined_at": ""}});
        sb.write(&format!("evals/echo/k-1/{name}.json"), case.to_string());
    }
    let out = sb.run(&["eval", "--trials", "1"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(!outside.path().join("x").exists(), "a folder was made outside the project");
    assert!(!sb.path().join("escaped").exists() && !Path::new("/escaped").exists());
    // Refused when the case files are loaded, before any folder is made.
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("case ids may use only"), "{}", stderr(&out));
}

/// A proposer server on 127.0.0.1 that reads requests and never answers (or answers 429
/// with `Retry-After: 100000`), for at most `for_secs`; then it stops by itself.
fn stalling_server(retry_after: bool, for_secs: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(for_secs);
        let mut held = Vec::new();
        while Instant::now() < end {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 65536];
                    let _ = s.read(&mut buf);
                    if retry_after {
                        let _ = s.write_all(
                            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 100000\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                        );
                    } else {
                        held.push(s);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn time_limit_holds_while_the_proposer_waits() {
    for retry_after in [false, true] {
        let sb = example(&["harnesses/support-bot", "evals/support-bot"]);
        let url = stalling_server(retry_after, 90);
        sb.write(
            "autoharness.toml",
            format!("[proposer]\nprovider = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\ntimeout = \"60s\"\n"),
        );
        let started = Instant::now();
        let out = sb.run(&["--json", "run", "--time-limit", "5s", "--max-iterations", "3", "--candidates", "1"]);
        let took = started.elapsed();
        assert!(out.status.success(), "{}", stderr(&out));
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        // A server that never answers holds the run until the limit; a 429 asking for a day's
        // wait ends each proposal at once (the wait is never started).
        let why = if retry_after { "waiting for" } else { "time limit" };
        assert!(s.to_string().contains(why), "{s:#}");
        assert!(took < Duration::from_secs(9), "a 5 s limit took {took:?} (retry_after: {retry_after})");
    }
}

/// Ordinary production text is not redacted much: over every failure mined from the
/// shared datasets (real agent traces), the share of failures with any redaction and the
/// share of their text replaced stay small, and high-entropy redactions (the heuristic
/// most likely to hit ids and hashes) are rare. Figures print with --nocapture.
#[test]
#[allow(clippy::print_stderr)]
fn redaction_leaves_ordinary_trace_text_alone() {
    use autoharness::redact::Redactions;
    let Some(shared) = crate::common::shared_dir() else { return };
    let datasets = shared.join("datasets");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&datasets).unwrap().flatten().map(|e| e.path()).collect();
    dirs.sort();
    let counted = std::sync::Mutex::new((0usize, 0usize, 0usize, 0usize, Redactions::default()));
    let placeholder = regex::Regex::new(r"\[REDACTED:[^\]]*\]").unwrap();
    let extract = |t: &autoharness::trace::model::Trace| {
        let f = autoharness::mine::failure::analyze(t, t.source.seq, true)?;
        let before = f.text.len();
        let mut redacted = f.clone();
        let mut counts = Redactions::default();
        autoharness::mine::redact_failure(&mut redacted, &mut counts);
        // Characters replaced: the text that is gone, placeholders aside.
        let kept = placeholder.replace_all(&redacted.text, "").len();
        let gone = f.text.len().saturating_sub(kept);
        let mut c = counted.lock().unwrap();
        c.0 += 1;
        c.1 += usize::from(!counts.is_empty());
        c.2 += before;
        c.3 += gone;
        c.4.merge(&counts);
        Some(())
    };
    let result = autoharness::trace::scan::scan(&dirs, 2, |_, _, _| false, extract, &|_| {});
    assert!(!result.files.is_empty());
    let (failures, with_any, chars, gone, counts) = counted.into_inner().unwrap();
    let share = with_any as f64 / failures.max(1) as f64;
    let entropy = counts.0.get("high-entropy").copied().unwrap_or(0) as f64 / failures.max(1) as f64;
    eprintln!(
        "redaction over {failures} dataset failures: {with_any} ({:.2}%) had any; {:.3}% of characters changed; by kind: {}",
        share * 100.0,
        gone as f64 * 100.0 / chars.max(1) as f64,
        counts.describe()
    );
    assert!(failures > 400, "the datasets give many failures: {failures}");
    // Emails are personal data wherever they occur (τ-bench users give theirs): redacted by
    // design. Every other kind in ordinary traces is a false alarm.
    let others: usize = counts.0.iter().filter(|(k, _)| *k != "email").map(|(_, n)| n).sum();
    // What is left are random blobs in fetched web pages (base64 tokens, video ids): they
    // look exactly like keys, and redacting them loses nothing a case needs.
    assert!(others as f64 / (failures.max(1) as f64) < 0.05, "{others} non-email redactions: {}", counts.describe());
    assert!(entropy < 0.05, "high-entropy hits on {:.2}% of failures", entropy * 100.0);
    assert!(
        (gone as f64 / chars.max(1) as f64) < 0.005,
        "{:.3}% of characters redacted",
        gone as f64 * 100.0 / chars as f64
    );
    let _ = share;
}

/// `run --branch` must not commit a branch that silently lacks part of the accepted change:
/// a file git ignores is named and nothing is committed.
#[test]
fn run_branch_refuses_changes_git_would_drop() {
    let sb = example(&["harnesses/support-bot", "evals/support-bot", "examples/support-bot/traces"]);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(sb.path())
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    git(&["init", "-q"]);
    sb.write(".gitignore", "harnesses/support-bot/config.toml\nstate.db*\nruns/\ntrials/\n*.lock\n");
    git(&["add", "-A"]);
    git(&["commit", "-qm", "start"]);
    let out = sb.run(&["run", "--max-iterations", "1", "--candidates", "1", "--branch", "autoharness-fix"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("config.toml") && stderr(&out).contains("ignores"), "{}", stderr(&out));
    assert_eq!(git(&["rev-parse", "--abbrev-ref", "HEAD"]).trim(), "main", "no branch was switched to");
    assert_eq!(git(&["log", "--oneline"]).lines().count(), 1, "nothing was committed");
}

/// `run --branch` naming a branch that exists is refused before any work (it failed at the
/// very end, on `git checkout -b`, and again on every resume).
#[test]
fn run_branch_refuses_an_existing_branch_before_any_work() {
    let sb = example(&["harnesses/support-bot", "evals/support-bot"]);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(sb.path())
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    git(&["init", "-q"]);
    sb.write(".gitignore", "state.*\nruns/\n*.lock\n");
    git(&["add", "-A"]);
    git(&["commit", "-qm", "start"]);
    git(&["branch", "taken"]);
    let out = sb.run(&["run", "--max-iterations", "1", "--candidates", "1", "--branch", "taken"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`taken` already exists"), "{}", stderr(&out));
    if sb.db().exists() {
        let runs = crate::concurrency::rows(&sb.db(), "SELECT json_array(COUNT(*)) AS j FROM runs");
        assert_eq!(runs, vec![serde_json::json!([0])], "no run was started");
    }
}
