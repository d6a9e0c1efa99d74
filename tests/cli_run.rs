//! `autoharness run` end to end on the bundled example: the offline knobs proposer finds
//! fixes that the gate accepts, nothing that regresses is accepted, budgets stop the loop,
//! a run killed with SIGKILL resumes, and two runs never share a store.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cli::{Sandbox, copy_tree, stderr, stdout};

fn example() -> Sandbox {
    let sb = Sandbox::new();
    for rel in ["harnesses/support-bot", "evals/support-bot", "examples/support-bot/traces"] {
        copy_tree(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel), &sb.path().join(rel));
    }
    sb
}

fn status_of(sb: &Sandbox, id: &str) -> String {
    for dir in std::fs::read_dir(sb.path().join("evals/support-bot")).unwrap().flatten() {
        let p = dir.path().join(format!("{id}.json"));
        if p.exists() {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            return v["status"].as_str().unwrap().to_string();
        }
    }
    panic!("no case {id}");
}

#[test]
fn run_finds_fixes_offline_and_never_accepts_a_regression() {
    let sb = example();
    let config_before = std::fs::read_to_string(sb.path().join("harnesses/support-bot/config.toml")).unwrap();
    let out = sb.run(&["--json", "run", "--traces", "examples/support-bot/traces", "--max-iterations", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["schema"], "autoharness.run/v1");
    assert!(s["accepted"].as_u64().unwrap() >= 1, "{s:#}");
    for it in s["iterations"].as_array().unwrap() {
        for c in it["candidates"].as_array().unwrap() {
            if it["accepted"] == c["description"] {
                assert_eq!(c["verdict"], "pass", "accepted only what passed: {it:#}");
            }
        }
        if let Some(patch) = it["patch"].as_str() {
            let text = std::fs::read_to_string(patch).unwrap();
            assert!(text.contains("config.toml"), "{text}");
            let evidence = std::fs::read_to_string(it["evidence"].as_str().unwrap()).unwrap();
            assert!(evidence.contains("PASS"), "{evidence}");
            // Promotions are recorded; the case files change only with --apply / --branch.
            for id in it["promoted"].as_array().unwrap() {
                assert_eq!(status_of(&sb, id.as_str().unwrap()), "candidate");
            }
        }
    }
    // The first target is the costliest cluster (the orders-API timeouts), fixed by retries.
    assert_eq!(s["iterations"][0]["cluster"], "k-9278df0f", "{s:#}");
    assert!(s["iterations"][0]["accepted"].as_str().unwrap_or("").contains("retry_attempts"), "{s:#}");
    // Without --apply the user's tree is untouched; the combined patch applies to it.
    let config_after = std::fs::read_to_string(sb.path().join("harnesses/support-bot/config.toml")).unwrap();
    assert_eq!(config_before, config_after);
    let run_dir = PathBuf::from(s["run_dir"].as_str().unwrap());
    assert!(run_dir.join("accepted.patch").exists() && run_dir.join("summary.md").exists());
    // `report` renders the run from the store.
    let report = sb.run(&["report"]);
    assert!(stdout(&report).contains("Iteration 1"), "{}", stdout(&report));
    // A second run mines nothing new and does not retry what was fixed.
    let again =
        sb.json(&["run", "--traces", "examples/support-bot/traces", "--max-iterations", "1", "--candidates", "1"]);
    assert_ne!(again["iterations"][0]["cluster"], "k-9278df0f", "{again:#}");
}

#[test]
fn budgets_stop_the_loop_and_apply_changes_the_tree() {
    let sb = example();
    let s = sb.json(&["run", "--budget-usd", "0", "--max-iterations", "5"]);
    assert!(s["stopped_because"].as_str().unwrap().contains("budget"), "{s:#}");
    assert_eq!(s["iterations"].as_array().unwrap().len(), 0);
    let before = std::fs::read_to_string(sb.path().join("harnesses/support-bot/config.toml")).unwrap();
    let s = sb.json(&["run", "--max-iterations", "1", "--candidates", "1", "--apply"]);
    assert_eq!(s["applied_to_tree"], true, "{s:#}");
    for id in s["iterations"][0]["promoted"].as_array().unwrap() {
        assert_eq!(status_of(&sb, id.as_str().unwrap()), "active", "--apply writes the promotions");
    }
    // The accepted knob change (`config.toml agent.max_steps: 5 → 8`) is in the tree.
    let accepted = s["iterations"][0]["accepted"].as_str().unwrap_or_else(|| panic!("nothing accepted: {s:#}"));
    let (knob, values) = accepted.trim_start_matches("config.toml ").split_once(": ").unwrap();
    let (old, new) = values.split_once(" → ").unwrap();
    let key = knob.rsplit('.').next().unwrap();
    let config = std::fs::read_to_string(sb.path().join("harnesses/support-bot/config.toml")).unwrap();
    assert!(before.contains(&format!("{key} = {old}")), "{before}");
    assert!(config.contains(&format!("{key} = {new}")), "the accepted change is in the tree: {config}");
}

#[test]
fn a_second_run_on_the_same_store_refuses() {
    let sb = example();
    let _held = autoharness::flow::run::lock(&sb.db()).unwrap();
    let out = sb.run(&["run"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("another `autoharness run`"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--db"), "{}", stderr(&out));
}

#[test]
fn a_killed_run_resumes_without_losing_or_repeating_work() {
    let sb = example();
    // Killed by the process itself once it has recorded its first proposal (mid-iteration):
    // a seeded moment (src/crash.rs), not a poll racing the run, which could finish or not
    // have begun when a timer fired.
    let out = sb
        .std_command(crate::common::cli::bin())
        .args(sb.db_args())
        .args(["run", "--traces", "examples/support-bot/traces", "--max-iterations", "2", "--candidates", "1"])
        .env("AUTOHARNESS_CRASH_AT", "proposal_recorded:1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "killed at its first proposal: {}", stderr(&out));
    let db = sb.db();
    assert!(proposals(&db) > 0, "the kill came after a proposal was recorded");
    let before = trials(&db);
    let out = sb.run(&["--json", "run", "--resume", "--max-iterations", "2", "--candidates", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["resumed"], true);
    assert!(s["accepted"].as_u64().unwrap() >= 1, "{s:#}");
    assert!(trials(&db) >= before, "no trial record was lost");
    if before > 0 {
        assert!(s["cached_trials"].as_u64().unwrap() > 0, "finished trials are reused, not rerun: {s:#}");
    }
    // Nothing is left to resume.
    let out = sb.run(&["run", "--resume"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no unfinished run"), "{}", stderr(&out));
}

fn count(db: &Path, sql: &str) -> i64 {
    let rt = autoharness::store::runtime().unwrap();
    rt.block_on(async {
        let store = autoharness::store::Store::open(db).await.unwrap();
        let n: (i64,) = sqlx::query_as(sql).fetch_one(store.sqlite().unwrap()).await.unwrap_or((0,));
        store.close().await;
        n.0
    })
}

fn proposals(db: &Path) -> i64 {
    count(db, "SELECT COUNT(*) FROM proposals")
}

fn trials(db: &Path) -> i64 {
    count(db, "SELECT COUNT(*) FROM trials")
}

#[test]
fn a_command_proposer_s_changes_are_gated_like_any_diff() {
    let sb = example();
    // A stand-in for a coding agent: it reads the brief on stdin and edits the prompt.
    sb.write(
        "autoharness.toml",
        "[proposer]\nprovider = \"command\"\ncommand = \"cat > /dev/null; printf 'Verify the customer identity before any refund.\\\\n' >> prompts/system.md\"\n",
    );
    let s = sb.json(&["run", "--traces", "examples/support-bot/traces", "--max-iterations", "2", "--candidates", "1"]);
    let its = s["iterations"].as_array().unwrap();
    assert_eq!(its.len(), 2, "{s:#}");
    // The same edit does nothing for the timeouts and fixes the refund policy violations.
    assert_eq!(its[0]["cluster"], "k-9278df0f");
    assert_eq!(its[0]["candidates"][0]["verdict"], "fail", "{s:#}");
    assert_eq!(its[1]["cluster"], "k-9ea5782d", "{s:#}");
    assert_eq!(its[1]["candidates"][0]["verdict"], "pass", "{s:#}");
    let patch = std::fs::read_to_string(its[1]["patch"].as_str().unwrap()).unwrap();
    assert!(patch.contains("prompts/system.md") && patch.contains("+Verify the customer identity"), "{patch}");
}
