//! `eval`, `init` and `doctor` end to end: real harness processes in the sandbox, the
//! store as a real SQLite file.

use std::path::Path;

use serde_json::Value;

use crate::common::cli::{Sandbox, copy_tree, stderr, stdout};

fn project(fixture: &str) -> Sandbox {
    let sb = Sandbox::new();
    let from = crate::common::fixture(&format!("harnesses/{fixture}"));
    copy_tree(&from, sb.path());
    sb
}

fn case<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["cases"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no {id} in {doc:#}"))
}

#[test]
fn eval_reports_rates_flaky_cases_and_uses_the_cache() {
    let sb = project("echo");
    let doc = sb.json(&["eval", "--trials", "4", "--junit", "junit.xml"]);
    assert_eq!(doc["schema"], "autoharness.eval/v1");
    assert_eq!(doc["harness"], "echo");
    let c1 = case(&doc, "c-1");
    assert_eq!((c1["passes"].as_u64(), c1["trials"].as_u64()), (Some(2), Some(4)), "odd seeds fail: {c1:#}");
    assert_eq!(c1["flaky"], true);
    assert!(c1["failures"][0].as_str().unwrap().contains("exit code 3"), "{c1:#}");
    let c2 = case(&doc, "c-2");
    assert_eq!(c2["passes"], 0, "output lacks `bye`: {c2:#}");
    assert!(c2["failures"].to_string().contains("does not contain"), "{c2:#}");
    assert_eq!(doc["flaky"], serde_json::json!(["c-1"]));
    assert_eq!(doc["cached_trials"], 0);
    assert!((doc["total_cost_usd"].as_f64().unwrap() - 0.004).abs() < 1e-9, "cost from the result file: {doc:#}");
    let junit = std::fs::read_to_string(sb.path().join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), 2);
    assert!(junit.contains("failures=\"2\""), "{junit}");

    // Same harness, cases, seeds and environment: every trial comes from the cache.
    let again = sb.json(&["eval", "--trials", "4"]);
    assert_eq!(again["cached_trials"], 8);
    assert_eq!(case(&again, "c-1")["passes"], 2);
    // A changed harness is a new version: nothing cached.
    sb.write("harnesses/echo/prompt.txt", "hello bye\n");
    let changed = sb.json(&["eval", "--trials", "4"]);
    assert_eq!(changed["cached_trials"], 0);
    assert_ne!(changed["harness_hash"], doc["harness_hash"]);
    assert_eq!(case(&changed, "c-2")["passes"], 2, "now prints bye on even seeds: {changed:#}");
    let forced = sb.json(&["eval", "--trials", "4", "--no-cache"]);
    assert_eq!(forced["cached_trials"], 0);

    let table = stdout(&sb.run(&["eval", "--trials", "4"]));
    assert!(table.contains("flaky"), "{table}");
    assert!(table.contains("k-1"), "{table}");
}

#[test]
fn eval_contains_misbehaving_harnesses_and_goes_on() {
    let sb = project("faults");
    let mut cmd = sb.command(&["--json", "eval", "--trials", "1"]);
    cmd.env("AUTOHARNESS_TEST_SECRET", "hunter2");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let passes = |id: &str| case(&doc, id)["passes"].as_u64().unwrap();
    let reason = |id: &str| case(&doc, id)["failures"].to_string();
    assert_eq!(passes("c-ok"), 1);
    assert_eq!(passes("c-read-secret"), 1, "the host secret must not reach the trial: {}", reason("c-read-secret"));
    assert_eq!(passes("c-network"), 1, "network = none must refuse the socket: {}", reason("c-network"));
    assert_eq!(passes("c-write-outside"), 1);
    assert!(!sb.path().join("escaped.txt").exists(), "a trial wrote outside its copy");
    assert!(!Path::new("/escaped.txt").exists());
    assert!(reason("c-sleep").contains("timed out"), "{}", reason("c-sleep"));
    assert!(reason("c-flood").contains("output"), "{}", reason("c-flood"));
    assert!(reason("c-fork").contains("process limit"), "{}", reason("c-fork"));
    assert!(reason("c-signal").contains("SIGSEGV"), "{}", reason("c-signal"));
    assert!(!doc.to_string().contains("hunter2"), "a secret reached the report");
    // The daemon it left behind is gone.
    let survivors = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).replace('\0', " ").trim() == "sleep 317")
        .count();
    assert_eq!(survivors, 0, "a trial's daemon outlived it");
}

#[test]
fn batch_runners_report_rewards_per_case() {
    let sb = project("batch");
    let doc = sb.json(&["eval", "--trials", "2"]);
    assert_eq!(case(&doc, "c-easy")["passes"], 2);
    assert_eq!(case(&doc, "c-hard")["passes"], 0);
    assert!(case(&doc, "c-hard")["failures"].to_string().contains("reward 0"), "{doc:#}");
}

#[test]
fn bad_manifests_and_missing_cases_are_clear_errors() {
    let sb = project("echo");
    sb.write("harnesses/echo/harness.toml", "name = \"echo\"\nrun = \"sh run.sh\"\nnetwork = \"internet\"\n");
    let out = sb.run(&["eval"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("harness.toml") && err.contains("`network` = `internet`"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    let sb = project("echo");
    let out = sb.run(&["eval", "--cluster", "k-nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no train cases"), "{}", stderr(&out));
    let out = sb.run(&["eval", "--harness", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("known harnesses: echo"), "{}", stderr(&out));

    // A case file that is not a case stops eval before any trial, with its path named.
    sb.write("evals/echo/k-1/broken.json", "{\"schema\": \"autoharness.case/v1\"");
    let out = sb.run(&["eval", "--trials", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("broken.json") && stderr(&out).contains("not JSON"), "{}", stderr(&out));
}

#[test]
fn check_command_failure_stops_before_trials() {
    let sb = project("echo");
    let manifest = std::fs::read_to_string(sb.path().join("harnesses/echo/harness.toml")).unwrap();
    sb.write("harnesses/echo/harness.toml", format!("{manifest}check = \"echo lint error >&2; exit 1\"\n"));
    let out = sb.run(&["eval"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("the harness check failed") && stderr(&out).contains("lint error"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_scaffolds_without_overwriting_and_doctor_reports() {
    let sb = Sandbox::new();
    let doc = sb.json(&["init", "--name", "bot"]);
    let created = doc["result"]["created"].to_string();
    assert!(created.contains("harnesses/bot/harness.toml"), "{doc:#}");
    sb.write("autoharness.toml", "harness = \"mine\"\n");
    let again = sb.json(&["init", "--name", "bot"]);
    assert!(again["result"]["kept"].to_string().contains("harness.toml"), "{again:#}");
    assert_eq!(std::fs::read_to_string(sb.path().join("autoharness.toml")).unwrap(), "harness = \"mine\"\n");
    // The scaffolded manifest is valid as written.
    autoharness::harness::manifest::Manifest::load(&sb.path().join("harnesses/bot/harness.toml")).unwrap();

    let out = sb.run(&["--json", "doctor"]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema"], "autoharness.doctor/v1");
    assert_eq!(doc["store"]["ok"], true);
    assert_eq!(doc["harnesses"][0]["name"], "bot");
    assert!(doc["isolation_summary"].as_str().unwrap().contains("bwrap"));
}
