//! `autoharness mine` end to end: clusters with stable ids, idempotent re-mining,
//! hand-edited cases kept, new failures joining existing clusters, awkward inputs.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

use crate::common::fixture;

fn ah(cwd: &Path) -> Command {
    let mut cmd = Command::cargo_bin("autoharness").unwrap();
    cmd.current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("CI", "1")
        .env("HOME", cwd)
        .env_remove("AUTOHARNESS_DB")
        .args(["--db", cwd.join("state.db").to_str().unwrap()]);
    cmd
}

fn mine_json(cwd: &Path, paths: &[&Path], extra: &[&str]) -> Value {
    let mut cmd = ah(cwd);
    cmd.args(["--json", "mine", "--harness", "demo"]).args(extra);
    for p in paths {
        cmd.arg(p);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).expect("mine --json is JSON")
}

fn cluster_ids(doc: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        doc["clusters"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn case_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                out.extend(case_files(&e.path()));
            } else if e.path().extension().is_some_and(|x| x == "json") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Mine one trace file, alone in a fresh folder and store; its one cluster must come from
/// `signal` and point at `step`.
fn assert_decided(file_name: &str, content: &Value, signal: &str, step: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let traces = tmp.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    std::fs::write(traces.join(file_name), serde_json::to_vec(content).unwrap()).unwrap();
    let doc = mine_json(tmp.path(), &[&traces], &["--no-cases"]);
    let cluster = &doc["clusters"][0];
    assert!(cluster["signature"].as_str().unwrap().contains(signal), "{cluster:#}");
    assert_eq!(cluster["members"][0]["step"], step, "{cluster:#}");
}

#[test]
fn mine_writes_ranked_clusters_and_valid_cases_then_remining_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let traces = tmp.path().join("traces");
    copy_dir(&fixture("formats"), &traces);
    let first = mine_json(tmp.path(), &[&traces], &[]);
    assert_eq!(first["schema"], "autoharness.mine/v1");
    let clusters = first["clusters"].as_array().unwrap();
    assert!(clusters.len() >= 5, "fixtures hold failures of several kinds: {}", clusters.len());
    // Ranked by impact: counts never increase down the table.
    let counts: Vec<u64> = clusters.iter().map(|c| c["count"].as_u64().unwrap()).collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    // Both kinds are labelled; the model HTTP 500 is infrastructure, in its canonical class.
    assert!(
        clusters
            .iter()
            .any(|c| c["kind"] == "infra" && c["signature"].as_str().unwrap().contains("model_server_error")),
        "{clusters:#?}"
    );
    assert!(clusters.iter().any(|c| c["kind"] == "capability"));
    let written = first["summary"]["cases_written"].as_u64().unwrap();
    assert!(written >= clusters.len() as u64);

    let files = case_files(&tmp.path().join("evals/demo"));
    assert_eq!(files.len() as u64, written);
    for f in &files {
        let case: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(case["schema"], "autoharness.case/v1");
        let id = case["id"].as_str().unwrap();
        assert!(f.ends_with(format!("{}/{id}.json", case["cluster"].as_str().unwrap())));
        assert!(matches!(case["split"].as_str(), Some("train" | "holdout")));
        let checks = case["checks"].as_array().unwrap();
        assert!(checks.iter().any(|c| c["kind"] == "not_signature"));
        assert!(!case["provenance"]["traces"].as_array().unwrap().is_empty());
    }
    // Every cluster keeps at least one train case.
    for c in clusters {
        let id = c["id"].as_str().unwrap();
        let splits: Vec<Value> = case_files(&tmp.path().join("evals/demo").join(id))
            .iter()
            .map(|f| serde_json::from_slice::<Value>(&std::fs::read(f).unwrap()).unwrap()["split"].clone())
            .collect();
        assert!(splits.iter().any(|s| s == "train"), "cluster {id} has no train case");
    }

    // Re-mining the unchanged folder: files skipped, same clusters, no new files.
    let second = mine_json(tmp.path(), &[&traces], &[]);
    assert_eq!(second["summary"]["skipped_unchanged"], first["summary"]["files"]);
    assert_eq!(second["summary"]["new_failures"], 0);
    assert_eq!(second["summary"]["cases_written"], 0);
    assert_eq!(cluster_ids(&first), cluster_ids(&second));
    assert_eq!(case_files(&tmp.path().join("evals/demo")), files);
}

#[test]
fn hand_edited_case_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let traces = tmp.path().join("traces");
    copy_dir(&fixture("formats/tau-bench"), &traces);
    mine_json(tmp.path(), &[&traces], &[]);
    let files = case_files(&tmp.path().join("evals/demo"));
    assert!(!files.is_empty());
    let edited = "{\"schema\": \"autoharness.case/v1\", \"note\": \"edited by a person\"}\n";
    std::fs::write(&files[0], edited).unwrap();
    let out = ah(tmp.path()).args(["mine", "--harness", "demo"]).arg(&traces).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("edited by hand"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&files[0]).unwrap(), edited);
}

#[test]
fn cluster_ids_are_stable_across_stores_and_new_failures_join_existing_clusters() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let traces = a.path().join("traces");
    copy_dir(&fixture("formats/otlp-json"), &traces);
    let first = mine_json(a.path(), &[&traces], &["--no-cases"]);
    // A different machine, a fresh store, the same failures: the same ids.
    let other = b.path().join("elsewhere");
    copy_dir(&fixture("formats/otlp-json"), &other);
    let again = mine_json(b.path(), &[&other], &["--no-cases"]);
    assert_eq!(cluster_ids(&first), cluster_ids(&again));
    // Next week: the same failures in a new file join the existing clusters.
    let next_week = a.path().join("next-week");
    std::fs::create_dir_all(&next_week).unwrap();
    std::fs::copy(traces.join("captured_openai-agents_openinference_traces.jsonl"), next_week.join("week2.jsonl"))
        .unwrap();
    let week2 = mine_json(a.path(), &[&next_week], &["--no-cases"]);
    assert!(week2["summary"]["new_failures"].as_u64().unwrap() > 0);
    assert_eq!(week2["summary"]["new_clusters"], 0, "{week2:#}");
}

#[test]
fn awkward_failures_still_make_sensible_clusters_and_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let traces = tmp.path().join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    // A failed run with no steps, one with no text at all, and unicode/emoji/RTL text.
    std::fs::write(traces.join("empty.json"), r#"[{"task_id": 1, "reward": 0.0, "traj": []}]"#).unwrap();
    std::fs::write(
        traces.join("notext.json"),
        r#"[{"task_id": 2, "reward": 0.0, "traj": [{"role": "assistant", "content": ""}]}]"#,
    )
    .unwrap();
    std::fs::write(
        traces.join("unicode.json"),
        r#"[{"task_id": 3, "reward": 0.0, "traj": [{"role": "user", "content": "طلب استرداد 🙃 für Bestellung #W123"},
            {"role": "assistant", "content": "Désolé — échec du remboursement 💥 مرحبا"}]}]"#,
    )
    .unwrap();
    let doc = mine_json(tmp.path(), &[&traces], &[]);
    assert_eq!(doc["summary"]["failed"], 3);
    let members: usize =
        doc["clusters"].as_array().unwrap().iter().map(|c| c["members"].as_array().unwrap().len()).sum();
    assert_eq!(members, 3, "every failure lands in a cluster");
    for f in case_files(&tmp.path().join("evals/demo")) {
        let case: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(case["schema"], "autoharness.case/v1");
    }
    // The report renders all of it.
    ah(tmp.path())
        .args(["mine", "--harness", "demo", "--report"])
        .arg(tmp.path().join("r.html"))
        .arg(&traces)
        .assert()
        .success();
    let html = std::fs::read_to_string(tmp.path().join("r.html")).unwrap();
    assert!(html.starts_with("<!doctype html>") && !html.contains("http://") && !html.contains("https://"));
}

#[test]
fn clusters_and_cases_commands_show_what_mine_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let traces = tmp.path().join("traces");
    copy_dir(&fixture("formats/tau-bench"), &traces);
    let doc = mine_json(tmp.path(), &[&traces], &[]);
    let id = doc["clusters"][0]["id"].as_str().unwrap().to_string();
    let out = ah(tmp.path()).args(["--json", "clusters", &id]).assert().success().get_output().stdout.clone();
    let detail: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(detail["id"], id);
    assert!(!detail["members"].as_array().unwrap().is_empty());
    let out = ah(tmp.path()).args(["--json", "cases", "--cluster", &id]).assert().success().get_output().stdout.clone();
    let cases: Value = serde_json::from_slice(&out).unwrap();
    assert!(!cases["cases"].as_array().unwrap().is_empty());
    ah(tmp.path()).args(["clusters", "k-00000000"]).assert().code(2);
}

#[test]
fn a_right_state_with_a_wrong_answer_is_decided_by_the_answer() {
    // τ-bench scores the final state and the outputs the user was told; lookups on the way
    // do not count. Here the only write is right and an extra lookup is off, but the user
    // is told 11 where the task expects 10: the answer that said 11 is the decisive step.
    let call = |id: &str, name: &str, args: &str| {
        serde_json::json!({"role": "assistant", "content": null,
            "tool_calls": [{"id": id, "type": "function", "function": {"name": name, "arguments": args}}]})
    };
    let tool = |id: &str, content: &str| serde_json::json!({"role": "tool", "tool_call_id": id, "content": content});
    let traj = vec![
        serde_json::json!({"role": "system", "content": "policy"}),
        serde_json::json!({"role": "user", "content": "How many t-shirt options are there? Then return my lamp."}),
        call("a", "get_product_details", r#"{"product_id": "1"}"#),
        tool("a", r#"{"variants": 10}"#),
        serde_json::json!({"role": "assistant", "content": "There are 11 t-shirt options available."}),
        call("b", "return_delivered_order_items", r##"{"order_id": "#W1", "item_ids": ["7"]}"##),
        tool("b", "ok"),
        serde_json::json!({"role": "assistant", "content": "Done: your lamp is returned. Again, 11 options."}),
    ];
    let record = serde_json::json!([{"task_id": 7, "reward": 0.0, "traj": traj, "info": {"task": {
        "user_id": "u", "instruction": "ask, then return",
        "actions": [{"name": "get_product_details", "kwargs": {"product_id": "2"}},
                    {"name": "return_delivered_order_items", "kwargs": {"order_id": "#W1", "item_ids": ["7"]}}],
        "outputs": ["10"]}}}]);
    assert_decided("run.json", &record, "output:missing", "msg:4");
}

#[test]
fn a_failing_terminal_turn_is_blamed_on_the_agent_that_ran_it() {
    // A chat log logs a tool's output as a turn of its own, with no call in it: the
    // signature names the terminal that failed, the decisive step is the agent turn that
    // wrote the code it ran.
    let run = serde_json::json!({
        "question": "How many rows?", "ground_truth": "4", "is_correct": false,
        "history": [
            {"role": "assistant", "name": "Planner_Expert", "content": "Plan: load the sheet, count the rows."},
            {"role": "assistant", "name": "Coder_Expert", "content": "```python\nimport pandas\nprint(len(pandas.read_excel('x.xlsx')))\n```"},
            {"role": "user", "name": "Computer_terminal", "content": "exitcode: 1 (execution failed)\nCode output: Traceback (most recent call last):\nFileNotFoundError: x.xlsx"},
            {"role": "assistant", "name": "Verifier_Expert", "content": "The file is missing, so the answer is 0. TERMINATE"}
        ]
    });
    assert_decided("1.json", &run, "Computer_terminal", "msg:1");
}

#[test]
fn summaries_need_an_llm_and_a_failing_one_only_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let traces = tmp.path().join("traces");
    copy_dir(&fixture("formats/tau-bench"), &traces);
    // The default proposer is offline: asking for summaries says what to configure.
    let out = ah(tmp.path()).args(["mine", "--no-cases", "--summarize"]).arg(&traces).assert().failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("--summarize needs an LLM") && stderr.contains("[proposer]"), "{stderr}");
    // A server that is not there: every cluster keeps its label, the mine succeeds, each
    // missing summary is a warning.
    std::fs::write(
        tmp.path().join("autoharness.toml"),
        "[proposer]\nprovider = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\ntimeout = \"5s\"\n",
    )
    .unwrap();
    let out = ah(tmp.path()).args(["--json", "mine", "--no-cases", "--summarize"]).arg(&traces).assert().success();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("no summary for cluster"), "{stderr}");
    assert_eq!(doc["summary"]["summaries_written"], 0);
    assert!(doc["clusters"].as_array().unwrap().iter().all(|c| c["summary"].is_null()));
}

#[test]
fn a_user_complaint_points_at_the_turn_complained_about() {
    let record = serde_json::json!([{"task_id": 3, "reward": 0.0, "traj": [
        {"role": "system", "content": "policy"},
        {"role": "user", "content": "Please cancel order #W1, it was a mistake."},
        {"role": "assistant", "content": "I have cancelled order #W2 for you."},
        {"role": "user", "content": "That's not what I asked, I said #W1!"},
        {"role": "assistant", "content": "Sorry about that."}
    ]}]);
    assert_decided("run.json", &record, "user:complaint", "msg:2");
}

#[test]
fn an_unchanged_re_mine_plans_nothing_yet_restores_a_deleted_case() {
    let tmp = tempfile::tempdir().unwrap();
    let traces = tmp.path().join("traces");
    copy_dir(&fixture("formats/tau-bench"), &traces);
    let first = mine_json(tmp.path(), &[&traces], &[]);
    let written = first["summary"]["cases_written"].as_u64().unwrap();
    assert!(written > 0);
    // Unchanged: every case counted as unchanged, listed per cluster as before.
    let again = mine_json(tmp.path(), &[&traces], &[]);
    assert_eq!(again["summary"]["cases_unchanged"].as_u64().unwrap(), written, "{again:#}");
    let cases =
        |d: &Value| -> Vec<Value> { d["clusters"].as_array().unwrap().iter().map(|c| c["cases"].clone()).collect() };
    assert_eq!(cases(&first), cases(&again));
    // A case file deleted: the next mine plans again and writes it back.
    let files = case_files(&tmp.path().join("evals/demo"));
    std::fs::remove_file(&files[0]).unwrap();
    let third = mine_json(tmp.path(), &[&traces], &[]);
    assert_eq!(third["summary"]["cases_written"], 1, "{third:#}");
    assert!(files[0].exists());
}

/// The case ids of each cluster, sorted.
fn cases_by_cluster(doc: &Value) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = doc["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let cases = c["cases"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
            (c["id"].as_str().unwrap().to_string(), cases)
        })
        .collect();
    out.sort();
    out
}

/// A re-mine plans from failures read back whole (text and seeds), and a file whose
/// content changed replaces its failures: either way the store ends as a fresh store mined
/// from the same files would.
#[test]
fn a_re_mine_ends_where_a_fresh_mine_of_the_same_files_does() {
    let tmp = tempfile::tempdir().unwrap();
    let traces = tmp.path().join("traces");
    copy_dir(&fixture("formats/tau-bench"), &traces);
    copy_dir(&fixture("formats/otlp-json"), &traces);

    // Other options on an unchanged folder: the cases are planned again, from whole failures.
    mine_json(tmp.path(), &[&traces], &["--max-cases-per-cluster", "1"]);
    let replanned = mine_json(tmp.path(), &[&traces], &["--max-cases-per-cluster", "3"]);
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = mine_json(fresh_dir.path(), &[&traces], &["--max-cases-per-cluster", "3"]);
    assert!(fresh["summary"]["failures_total"].as_u64().unwrap() >= 2, "{fresh:#}");
    assert_eq!(cases_by_cluster(&replanned), cases_by_cluster(&fresh));

    // An edited file: its failed run removed.
    let file = traces.join("gpt-4o-airline.subset.json");
    let runs: Vec<Value> = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let passing: Vec<&Value> = runs.iter().filter(|r| r["reward"].as_f64() == Some(1.0)).collect();
    assert_eq!(passing.len(), runs.len() - 1);
    std::fs::write(&file, serde_json::to_vec(&passing).unwrap()).unwrap();
    let edited = mine_json(tmp.path(), &[&traces], &["--no-cases"]);
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh = mine_json(fresh_dir.path(), &[&traces], &["--no-cases"]);
    assert_eq!(edited["summary"]["failures_total"], fresh["summary"]["failures_total"]);
    assert_eq!(
        edited["summary"]["failures_total"].as_u64().unwrap() + 1,
        replanned["summary"]["failures_total"].as_u64().unwrap()
    );
    assert_eq!(cluster_ids(&edited), cluster_ids(&fresh));
}

#[test]
fn verdict_only_failures_cluster_by_what_their_content_shows() {
    // Ten multi-agent runs that raise no error, judged wrong at the end: two per cause
    // (a blocked page, an invented value, asking the user, fewer items than asked), worded
    // differently, and two with nothing to say. Before, all ten shared one signature
    // ("signal:is_correct") and one cluster.
    let tmp = tempfile::tempdir().unwrap();
    let doc = mine_json(tmp.path(), &[&fixture("verdict")], &["--no-cases"]);
    let clusters = doc["clusters"].as_array().unwrap();
    let cluster_of = |file: &str| {
        clusters
            .iter()
            .find(|c| c["members"].as_array().unwrap().iter().any(|m| m["file"].as_str().unwrap().ends_with(file)))
            .unwrap_or_else(|| panic!("{file} in no cluster: {doc:#}"))
    };
    let causes = [
        ("blocked", "verdict:blocked_access", "403 forbidden"),
        ("invented", "verdict:invented_value", "91544"),
        ("asks", "verdict:asked_user", "could you please provide"),
        ("fewer", "verdict:fewer_items", "asked \"name four planets\""),
    ];
    let mut ids = Vec::new();
    for (stem, signal, quote) in causes {
        let a = cluster_of(&format!("{stem}-1.json"));
        let b = cluster_of(&format!("{stem}-2.json"));
        assert_eq!(a["id"], b["id"], "{stem}: one cause, one cluster\n{a:#}\n{b:#}");
        assert_eq!(a["count"], 2, "{stem}: only its own runs\n{a:#}");
        assert!(a["signature"].as_str().unwrap().contains(signal), "{a:#}");
        // The label says it in words and quotes the decisive step.
        let label = a["label"].as_str().unwrap();
        assert!(label.contains(quote) && !label.contains("is_correct"), "{label}");
        ids.push(a["id"].clone());
    }
    // Nothing explains these two; the second reads almost like invented-1 (its value is
    // the tool's), yet it joins no cluster that claims a cause.
    for file in ["unexplained-1.json", "unexplained-2.json"] {
        let c = cluster_of(file);
        assert!(c["signature"].as_str().unwrap().contains("verdict:unexplained"), "{c:#}");
        assert!(
            c["members"].as_array().unwrap().iter().all(|m| m["file"].as_str().unwrap().contains("unexplained-")),
            "{c:#}"
        );
        ids.push(c["id"].clone());
    }
    ids.sort_by_key(|v| v.to_string());
    ids.dedup();
    assert!(ids.len() >= 5, "different causes separate: {doc:#}");
    // The invented value is blamed on the turn that first said it, not on the tool.
    let invented = cluster_of("invented-1.json");
    assert!(invented["members"].as_array().unwrap().iter().all(|m| m["step"] == "msg:3"), "{invented:#}");
}
