//! A user's own project (`tests/fixtures/harnesses/qa`): cases written by hand, invalid case
//! files, what a gate guards whatever a case's status, and infrastructure failures that must
//! never become verdicts.

use serde_json::Value;

use crate::common::cli::{Sandbox, copy_tree, stderr, stdout};

fn project() -> Sandbox {
    let sb = Sandbox::new();
    copy_tree(&crate::common::fixture("harnesses/qa"), sb.path());
    sb
}

fn patch(file: &str, old: &str, new: &str) -> String {
    format!("--- a/harnesses/qa/{file}\n+++ b/harnesses/qa/{file}\n@@ -1 +1 @@\n-{old}\n+{new}\n")
}

fn trials_in_store(sb: &Sandbox) -> usize {
    let rt = autoharness::store::runtime().expect("runtime");
    rt.block_on(async {
        let store = autoharness::store::Store::open(&sb.db()).await.expect("store");
        let mut n = 0;
        for id in ["greeting", "capital", "c-5f2a01"] {
            n += store.trials_of_case(id).await.expect("trials").len();
        }
        store.close().await;
        n
    })
}

#[test]
fn hand_written_cases_load_run_and_are_listed() {
    let sb = project();
    let doc = sb.json(&["eval", "--trials", "2"]);
    let ids: Vec<&str> = doc["cases"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{doc:#}");
    for id in ["greeting", "capital", "c-5f2a01"] {
        assert!(ids.contains(&id), "{id} missing: {doc:#}");
    }
    for c in doc["cases"].as_array().unwrap() {
        assert_eq!(c["passes"], 2, "{c:#}");
    }
    let cases = sb.json(&["cases"]);
    let row = cases["cases"].as_array().unwrap().iter().find(|c| c["id"] == "greeting").unwrap();
    assert_eq!(row["status"], "active", "a hand-written case defaults to active: {row:#}");
    assert_eq!(row["split"], "train");
    assert_eq!(cases["invalid"], Value::Array(vec![]));
}

#[test]
fn a_gate_guards_every_train_case_whatever_its_status() {
    // One case is active (hand-written), the others are candidates: breaking a candidate
    // case must still fail the gate (it used to guard only the active suite).
    let sb = project();
    sb.write("break.patch", patch("answers.txt", "The capital of France is Paris.", "The capital of France is Lyon."));
    let out = sb.run(&["gate", "break.patch", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", stdout(&out), stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["rule"], "regression", "{doc:#}");
    assert_eq!(doc["decision"]["rule"]["case"], "capital", "{doc:#}");
    assert_eq!(doc["guarded"]["suite"], 3, "{doc:#}");
    assert!(doc["note"].as_str().unwrap().contains("guarded 3 suite"), "{doc:#}");

    // A harmless change passes, and the report says what it guarded.
    sb.write("ok.patch", patch("greeting.txt", "hello there, how can I help?", "hello! how can I help today?"));
    let out = sb.run(&["gate", "ok.patch"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
}

#[test]
fn invalid_case_files_stop_eval_gate_and_run_naming_file_and_field() {
    let bad: [(&str, &str, &str); 6] = [
        ("typo.json", r#"{"input": "x", "chekcs": []}"#, "unknown field `chekcs`"),
        ("regex.json", r#"{"input": "x", "checks": [{"kind": "output_regex", "pattern": "("}]}"#, "checks[0]"),
        ("kind.json", r#"{"input": "x", "checks": [{"kind": "telepathy"}]}"#, "unknown check kind `telepathy`"),
        ("status.json", r#"{"input": "x", "status": "done"}"#, "status"),
        ("escape.json", r#"{"input": "x", "id": "/tmp/evil"}"#, "at `id`"),
        ("type.json", r#"{"input": "x", "checks": [{"kind": "max_steps", "value": "ten"}]}"#, "invalid type"),
    ];
    for (name, body, want) in bad {
        let sb = project();
        sb.write(&format!("evals/qa/{name}"), body);
        sb.write("ok.patch", patch("greeting.txt", "hello there, how can I help?", "hello! how can I help today?"));
        for args in [vec!["eval"], vec!["gate", "ok.patch"], vec!["run", "--max-iterations", "1"]] {
            let out = sb.run(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
            assert!(err.contains(name) && err.contains(want), "{name} {args:?}: {err}");
        }
        assert_eq!(trials_in_store(&sb), 0, "{name}: nothing may run");
        let out = sb.run(&["cases"]);
        assert_eq!(out.status.code(), Some(1), "`cases` lists invalid files and exits 1");
        assert!(stdout(&out).contains(name) && stdout(&out).contains("invalid case file"), "{}", stdout(&out));
    }
}

#[test]
fn an_outage_is_never_a_verdict_and_never_cached() {
    let sb = project();
    let ok = sb.json(&["eval", "--trials", "3"]);
    assert_eq!(ok["cases"].as_array().unwrap().len(), 3);
    let before = trials_in_store(&sb);
    // The candidate's every trial fails like an unreachable model API.
    sb.write("outage.patch", "--- /dev/null\n+++ b/harnesses/qa/outage\n@@ -0,0 +1 @@\n+down\n");
    let out = sb.command(&["gate", "outage.patch"]).env("AUTOHARNESS_RETRY_BACKOFF_MS", "5").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot decide") && err.contains("infrastructure"), "{err}");
    assert!(err.contains("APIConnectionError"), "{err}");
    assert_eq!(trials_in_store(&sb), before, "no outage trial may be cached");

    // The same outage on the baseline makes `eval` fail (no trial could run), not report 0/3.
    sb.write("harnesses/qa/outage", "down\n");
    let out = sb.command(&["eval", "--no-cache"]).env("AUTOHARNESS_RETRY_BACKOFF_MS", "5").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_harness_that_cannot_start_is_an_error_with_a_hint() {
    let sb = project();
    sb.write(
        "harnesses/qa/harness.toml",
        "name = \"qa\"\neditable = [\"greeting.txt\"]\nrun = \".venv/bin/python agent.py\"\ntimeout = \"10s\"\n",
    );
    let out = sb.command(&["eval"]).env("AUTOHARNESS_RETRY_BACKOFF_MS", "5").output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("could not start"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn suite_cases_idle_for_the_last_gates_are_retired_with_why_and_stay_runnable() {
    use crate::common::cli::{diff, steady};
    let sb = steady();
    let gate = |text: &str| {
        sb.write("change.patch", diff(&sb, "harnesses/steady/prompt.txt", text));
        sb.run(&["--json", "gate", "change.patch"]).status.code()
    };
    let retire = |gates: &str| sb.json(&["cases", "--retire-idle", gates]);
    let status = |doc: &Value, id: &str| {
        let c = doc["cases"].as_array().unwrap().iter().find(|c| c["id"] == id).cloned().unwrap();
        c["status"].as_str().unwrap().to_owned()
    };
    assert_eq!(gate("hello there\n"), Some(0));
    assert_eq!(gate("goodbye\n"), Some(1), "a broken candidate: every suite case fails it");
    assert_eq!(gate("hello again\n"), Some(0));
    // Each suite case's last 2 gates hold the broken one: it told two harnesses apart, so it stays.
    let doc = retire("2");
    assert_eq!(doc["retired"].as_array().unwrap().len(), 0, "{doc:#}");
    assert_eq!(status(&doc, "c-s1"), "active");
    assert_eq!(gate("hello, hello\n"), Some(0));
    // Now the last 2 gates of every suite case are clean: the three retire; the holdout case never does.
    let doc = retire("2");
    let retired: Vec<&str> = doc["retired"].as_array().unwrap().iter().map(|r| r["case"].as_str().unwrap()).collect();
    assert_eq!(retired, ["c-s1", "c-s2", "c-s3"], "{doc:#}");
    assert!(doc["retired"][0]["reason"].as_str().unwrap().starts_with("idle: passed all"), "{doc:#}");
    let listed = sb.json(&["cases"]);
    assert_eq!(status(&listed, "c-s2"), "retired");
    assert_eq!(status(&listed, "c-h1"), "candidate");
    let history = listed["cases"].as_array().unwrap().iter().find(|c| c["id"] == "c-s2").unwrap()["history"].clone();
    assert!(history.to_string().contains("in each of its last 2 gates (#3, #4)"), "{history:#}");
    let file: Value =
        serde_json::from_slice(&std::fs::read(sb.path().join("evals/steady/k-s/c-s2.json")).unwrap()).unwrap();
    assert_eq!(file["status"], "retired", "{file:#}");
    // Retired cases leave the gate, and `eval --all` still runs them.
    sb.write("change.patch", diff(&sb, "harnesses/steady/prompt.txt", "hello once more\n"));
    let doc = sb.json(&["gate", "change.patch"]);
    assert_eq!(doc["guarded"]["suite"], 0, "{doc:#}");
    let eval = stdout(&sb.run(&["eval", "--all"]));
    assert!(eval.contains("c-s2"), "{eval}");
    // Nothing is retired twice.
    assert_eq!(retire("2")["retired"].as_array().unwrap().len(), 0);
}
