//! Two (or more) autoharness processes on one store at once, as on a shared CI runner:
//! mine + mine (new store and used store), mine + run, gate + gate, eval + gate,
//! eval + run, gate + run. Each ends as the same commands run one after another do,
//! and no process's trials ever run in (or get cached from) another's folder.

use std::path::Path;
use std::process::{Child, Output, Stdio};

use serde_json::Value;

use crate::common::cli::{Sandbox, bin, copy_tree, stderr};

fn spawn(sb: &Sandbox, args: &[&str]) -> Child {
    sb.std_command(bin())
        .args(sb.db_args())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start autoharness")
}

pub fn finish(children: Vec<Child>) -> Vec<Output> {
    children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect()
}

/// Rows of a query that selects one JSON array per row as `j`, for comparing two stores.
pub fn rows(db: &Path, sql: &str) -> Vec<Value> {
    let rt = autoharness::store::runtime().unwrap();
    rt.block_on(async {
        let store = autoharness::store::Store::open(db).await.unwrap();
        let text: String = sqlx::query_scalar(&format!("SELECT json_group_array(json(j)) FROM ({sql})"))
            .fetch_one(store.sqlite().unwrap())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        store.close().await;
        serde_json::from_str::<Vec<Value>>(&text).unwrap()
    })
}

/// What a mine leaves in a store: clusters with their member counts, and the true count
/// of failures per cluster.
fn mined_state(db: &Path) -> (Vec<Value>, Vec<Value>) {
    (
        rows(db, "SELECT json_array(id, members) AS j FROM clusters ORDER BY id"),
        rows(db, "SELECT json_array(cluster_id, COUNT(*)) AS j FROM failures GROUP BY cluster_id ORDER BY cluster_id"),
    )
}

fn with_traces() -> Sandbox {
    let sb = Sandbox::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_tree(&repo.join("examples/support-bot/traces"), &sb.path().join("traces"));
    sb
}

const MINE: [&str; 4] = ["mine", "traces", "--harness", "support-bot"];

#[test]
fn mines_at_once_end_where_one_mine_ends() {
    let reference = with_traces();
    let out = reference.run(&MINE);
    assert!(out.status.success(), "{}", stderr(&out));
    let truth = mined_state(&reference.db());
    assert!(!truth.0.is_empty(), "the example has clusters");
    // The clusters' member counts are the true counts.
    assert_eq!(truth.0, truth.1, "members = failures per cluster");

    // A new store, several times: migrations of two processes never collide.
    for round in 0..4 {
        let sb = with_traces();
        let outs = finish(vec![spawn(&sb, &MINE), spawn(&sb, &MINE)]);
        for o in &outs {
            assert!(o.status.success(), "round {round}: {}", stderr(o));
        }
        assert_eq!(mined_state(&sb.db()), truth, "round {round}: two mines at once on a new store");
    }

    // A used store (one day mined), then two mines of different days at once (each
    // adds members to the same clusters), and a mine of everything.
    let sb = with_traces();
    let out = sb.run(&["mine", "traces/2026-11-24.jsonl", "--harness", "support-bot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let partial = mined_state(&sb.db());
    let outs = finish(vec![
        spawn(&sb, &["mine", "traces/2026-11-25.jsonl", "traces/2026-11-26.jsonl", "--harness", "support-bot"]),
        spawn(&sb, &["mine", "traces/2026-11-27.jsonl", "traces/2026-11-28.jsonl", "--harness", "support-bot"]),
    ]);
    for o in &outs {
        assert!(o.status.success(), "{}", stderr(o));
    }
    let (members, counted) = mined_state(&sb.db());
    assert_eq!(members, counted, "members = failures per cluster after two mines at once");
    let outs = finish(vec![spawn(&sb, &MINE), spawn(&sb, &MINE)]);
    for o in &outs {
        assert!(o.status.success(), "{}", stderr(o));
    }
    let sequential = with_traces();
    for args in [&["mine", "traces/2026-11-24.jsonl", "--harness", "support-bot"][..], &MINE[..]] {
        let out = sequential.run(args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(mined_state(&sequential.db()), truth, "mining in two steps ends like one mine");
    assert_ne!(partial, truth);
    assert_eq!(mined_state(&sb.db()), truth, "two mines at once on a used store");
}

/// The `steady` harness, slowed so that trials of different processes overlap, plus a
/// train case it always fails (so `run` has a target). Every trial's outcome is known:
/// `c-t1` fails its `output_contains` check, every other case passes.
fn slow_steady() -> Sandbox {
    let sb = Sandbox::new();
    copy_tree(&crate::common::fixture("harnesses/steady"), sb.path());
    sb.write("harnesses/steady/run.sh", "# Prints the prompt, slowly.\nsleep 0.3\ncat prompt.txt\n");
    sb.write(
        "evals/steady/k-t/c-t1.json",
        r#"{"schema":"autoharness.case/v1","id":"c-t1","harness":"steady","cluster":"k-t","split":"train","status":"candidate","input":"task t","checks":[{"kind":"output_contains","value":"goodbye"}],"provenance":{"traces":[],"files":[],"signature":"","mined_at":""}}"#,
    );
    sb
}

#[test]
fn gates_evals_and_a_run_at_once_never_share_a_trial_folder() {
    let sb = slow_steady();
    let old = std::fs::read_to_string(sb.path().join("harnesses/steady/prompt.txt")).unwrap();
    let patch = format!(
        "diff --git a/harnesses/steady/prompt.txt b/harnesses/steady/prompt.txt\n--- a/harnesses/steady/prompt.txt\n+++ b/harnesses/steady/prompt.txt\n@@ -1 +1 @@\n-{}\n+hello there\n",
        old.trim_end()
    );
    sb.write("change.patch", &patch);
    // A store made beforehand: this is about trials (new stores are the mines' test).
    assert_eq!(rows(&sb.db(), "SELECT json_array(1) AS j").len(), 1);
    // gate + gate, eval + gate, eval + run, gate + run: all at once on one store.
    let children = vec![
        spawn(&sb, &["--json", "gate", "change.patch"]),
        spawn(&sb, &["--json", "gate", "change.patch"]),
        spawn(&sb, &["--json", "eval", "--trials", "2"]),
        spawn(&sb, &["--json", "run", "--max-iterations", "1"]),
    ];
    let outs = finish(children);
    for (name, o) in ["gate", "gate", "eval", "run"].iter().zip(&outs) {
        assert!(o.status.success(), "{name}: {}", stderr(o));
    }
    for o in &outs[..2] {
        let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["verdict"], "pass", "{doc:#}");
    }
    // Every recorded (and so cached) trial is the harness's true outcome.
    let recorded = rows(
        &sb.db(),
        "SELECT json_array(case_id, seed, passed, COALESCE(reason, '')) AS j FROM trials ORDER BY case_id, seed",
    );
    assert!(recorded.len() >= 10, "{recorded:?}");
    for r in &recorded {
        let (case, passed, reason) = (r[0].as_str().unwrap(), r[2].as_i64().unwrap(), r[3].as_str().unwrap());
        if case == "c-t1" {
            assert!(passed == 0 && reason.starts_with("output_contains"), "{r:?}");
        } else {
            assert_eq!(passed, 1, "a collision was recorded as a result: {r:?}");
        }
    }
    // Each process kept its own folder; none is left claimed. (`roots/` holds the shared
    // copies of harness versions, no process's folder.)
    let spaces: Vec<_> = std::fs::read_dir(sb.path().join("state.trials"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name() != "roots")
        .collect();
    assert_eq!(spaces.len(), 4, "one private trial folder per process");
}

#[test]
fn two_stores_in_one_folder_do_not_refuse_each_other() {
    let sb = slow_steady();
    let a = sb.path().join("a.db");
    let _held = autoharness::flow::run::lock(&a).unwrap();
    // Another store in the same folder runs.
    let out = sb.std_command(bin()).args(["--db", "b.db", "--json", "run", "--max-iterations", "0"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The same store refuses, and the hint's way out works.
    let out = sb.std_command(bin()).args(["--db", "a.db", "run", "--max-iterations", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another `autoharness run`") && err.contains("a.db") && err.contains("--db"), "{err}");
    assert!(sb.path().join("b.trials").is_dir() && !sb.path().join("a.trials").exists());
}
