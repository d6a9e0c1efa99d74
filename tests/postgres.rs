//! One store for a team (#20): the same commands on a Postgres store (`--db postgres://…`)
//! decide and record what they decide on SQLite, and several runners (processes with their own
//! working folders and trial folders) share one Postgres store: its trial cache, its clusters,
//! its shards. Each test gets a fresh schema on the server `scripts/postgres.sh` starts
//! (`AUTOHARNESS_TEST_POSTGRES`); without one they say SKIPPED, and fail under
//! `AUTOHARNESS_REQUIRE_ALL=1` (CI).

use std::path::Path;
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::common::cli::{Sandbox, bin, copy_tree, diff, stderr, steady};
use crate::concurrency::finish;

/// A fresh Postgres schema as a store URL, or `None` (skipped) without a test server.
fn postgres() -> Option<String> {
    autoharness::store::runtime().unwrap().block_on(autoharness::store::testing::postgres_url())
}

/// `autoharness --db DB --json <args>` in `sb`: exit code, stdout as JSON, stderr.
fn on(sb: &Sandbox, db: &str, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = sb.std_command(bin()).args(["--db", db, "--json"]).args(args).output().expect("run autoharness");
    crate::common::cli::assert_no_panic(&out, args);
    (out.status.code(), serde_json::from_slice(&out.stdout).unwrap_or(Value::Null), stderr(&out))
}

fn ok(sb: &Sandbox, db: &str, args: &[&str]) -> Value {
    let (code, doc, err) = on(sb, db, args);
    assert_eq!(code, Some(0), "{args:?} on {db}: {err}\n{doc:#}");
    doc
}

fn spawn(sb: &Sandbox, db: &str, args: &[&str]) -> Child {
    sb.std_command(bin())
        .args(["--db", db, "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start autoharness")
}

/// Rows of a Postgres store as JSON values (`sql` selects one JSON value per row as `j`).
fn pg_rows(url: &str, sql: &str) -> Vec<Value> {
    autoharness::store::runtime().unwrap().block_on(async {
        let store = autoharness::store::Store::open_postgres(url, Path::new("unused.db")).await.unwrap();
        let autoharness::store::Pool::Postgres(pool) = &store.pool else { unreachable!() };
        let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT j::text FROM ({sql}) AS q"))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        store.close().await;
        rows.iter().map(|r| serde_json::from_str(r).unwrap()).collect()
    })
}

/// A `--json` output with the sandbox's folder written as `<dir>`, so two sandboxes compare.
fn here(sb: &Sandbox, doc: &Value) -> Value {
    let dir = sb.path().canonicalize().unwrap();
    let text = doc.to_string().replace(&dir.display().to_string(), "<dir>");
    serde_json::from_str(&text.replace(&sb.path().display().to_string(), "<dir>")).unwrap()
}

/// A `mine --json` summary without what depends on the clock or the store's file.
fn mine_summary(doc: &Value) -> Value {
    let mut doc = doc.clone();
    for key in ["elapsed_ms", "timings", "store", "duration_ms"] {
        strip(&mut doc, key);
    }
    doc
}

fn strip(v: &mut Value, key: &str) {
    match v {
        Value::Object(m) => {
            m.remove(key);
            for x in m.values_mut() {
                strip(x, key);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip(x, key)),
        _ => {}
    }
}

fn with_traces() -> Sandbox {
    let sb = Sandbox::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_tree(&repo.join("examples/support-bot/traces"), &sb.path().join("traces"));
    copy_tree(&repo.join("harnesses"), &sb.path().join("harnesses"));
    sb
}

const MINE: [&str; 4] = ["mine", "traces", "--harness", "support-bot"];

#[test]
fn mine_on_postgres_stores_what_mine_on_sqlite_stores() {
    let Some(url) = postgres() else { return };
    let lite = with_traces();
    let pg = with_traces();
    let a = ok(&lite, "state.db", &MINE);
    let b = ok(&pg, &url, &MINE);
    assert!(a["summary"]["clusters"].as_u64().unwrap_or(0) > 0 || !a["clusters"].is_null(), "{a:#}");
    assert_eq!(here(&pg, &mine_summary(&b)), here(&lite, &mine_summary(&a)), "mine --json, Postgres vs SQLite");
    for args in [&["clusters"][..], &["cases"][..]] {
        let (mut x, mut y) = (ok(&pg, &url, args), ok(&lite, "state.db", args));
        // A case file quotes its traces' paths, which differ between the two sandboxes.
        strip(&mut x, "content_hash");
        strip(&mut y, "content_hash");
        assert_eq!(here(&pg, &x), here(&lite, &y), "{args:?}: Postgres vs SQLite");
    }
    // What a cluster holds, in detail, through the store's many-row reads.
    let first = ok(&lite, "state.db", &["clusters"]);
    let id = first["clusters"][0]["id"].as_str().expect("a cluster id").to_string();
    let (mut x, mut y) = (ok(&pg, &url, &["clusters", &id]), ok(&lite, "state.db", &["clusters", &id]));
    strip(&mut x, "content_hash");
    strip(&mut y, "content_hash");
    assert_eq!(here(&pg, &x), here(&lite, &y), "clusters {id}");
    // A second mine skips the unchanged files on both.
    let (a2, b2) = (ok(&lite, "state.db", &MINE), ok(&pg, &url, &MINE));
    assert_eq!(here(&pg, &mine_summary(&b2)), here(&lite, &mine_summary(&a2)), "a re-mine, Postgres vs SQLite");
    // Members are the true counts of failures per cluster.
    let members = pg_rows(&url, "SELECT json_build_array(id, members) AS j FROM clusters ORDER BY id");
    let counted = pg_rows(
        &url,
        "SELECT json_build_array(cluster_id, COUNT(*)) AS j FROM failures GROUP BY cluster_id ORDER BY cluster_id",
    );
    assert_eq!(members, counted);
}

#[test]
fn runners_mining_into_one_new_postgres_store_at_once_end_as_one_mine() {
    let Some(reference) = postgres() else { return };
    let one = with_traces();
    ok(&one, &reference, &MINE);
    let truth = ok(&one, &reference, &["clusters"]);
    for round in 0..2 {
        let url = postgres().unwrap();
        // Two processes on one new store: the migrations and the mines never collide (an
        // advisory lock serialises them, as the lock file does on SQLite). They mine one folder:
        // trace files are keyed by their path, so two checkouts of the same traces are two
        // sets of files (docs/scale-out.md: mine once, not on every runner).
        let sb = with_traces();
        let outs = finish(vec![spawn(&sb, &url, &MINE), spawn(&sb, &url, &MINE)]);
        for o in &outs {
            assert!(o.status.success(), "round {round}: {}", stderr(o));
        }
        assert_eq!(ok(&sb, &url, &["clusters"]), truth, "round {round}");
    }
}

/// The steady harness and a patch of its prompt that keeps every case passing.
fn steady_with_patch() -> Sandbox {
    let sb = steady();
    let old = std::fs::read_to_string(sb.path().join("harnesses/steady/prompt.txt")).unwrap();
    let patch = diff(&sb, "harnesses/steady/prompt.txt", &format!("{}\nBe brief.\n", old.trim_end()));
    sb.write("change.patch", patch);
    sb
}

#[test]
fn a_gate_on_postgres_decides_as_on_sqlite_and_a_second_runner_reuses_its_trials() {
    let Some(url) = postgres() else { return };
    let lite = steady_with_patch();
    let (code_a, a, err) = on(&lite, "state.db", &["gate", "change.patch"]);
    assert!(matches!(code_a, Some(0 | 1)), "{err}");
    let runner1 = steady_with_patch();
    let (code_b, b, err) = on(&runner1, &url, &["gate", "change.patch"]);
    assert_eq!(code_b, code_a, "{err}");
    for key in ["verdict", "rule", "decision"] {
        assert_eq!(b[key], a[key], "{key}: Postgres {b:#}\nSQLite {a:#}");
    }
    assert_eq!(b["trials"]["baseline"], a["trials"]["baseline"]);
    assert_eq!(b["trials"]["candidate"], a["trials"]["candidate"]);
    assert_eq!(b["trials"]["cached"], 0, "{b:#}");
    // Another runner: its own checkout and trial folder, the same store. Every trial is served
    // from the shared cache.
    let runner2 = steady_with_patch();
    let (code_c, c, err) = on(&runner2, &url, &["gate", "change.patch"]);
    assert_eq!(code_c, code_a, "{err}");
    assert_eq!(c["verdict"], b["verdict"]);
    let ran = c["trials"]["baseline"].as_u64().unwrap() + c["trials"]["candidate"].as_u64().unwrap();
    assert_eq!(c["trials"]["cached"].as_u64().unwrap(), ran, "{c:#}");
    let gates = pg_rows(&url, "SELECT to_json(verdict) AS j FROM gates ORDER BY id");
    assert_eq!(gates.len(), 2);
}

#[test]
fn gates_evals_and_a_run_at_once_on_postgres_record_only_true_outcomes() {
    let Some(url) = postgres() else { return };
    let sb = steady();
    sb.write("harnesses/steady/run.sh", "# Prints the prompt, slowly.\nsleep 0.3\ncat prompt.txt\n");
    sb.write(
        "evals/steady/k-t/c-t1.json",
        r#"{"schema":"autoharness.case/v1","id":"c-t1","harness":"steady","cluster":"k-t","split":"train","status":"candidate","input":"task t","checks":[{"kind":"output_contains","value":"goodbye"}],"provenance":{"traces":[],"files":[],"signature":"","mined_at":""}}"#,
    );
    let old = std::fs::read_to_string(sb.path().join("harnesses/steady/prompt.txt")).unwrap();
    sb.write("change.patch", diff(&sb, "harnesses/steady/prompt.txt", &format!("{}\nhello there\n", old.trim_end())));
    ok(&sb, &url, &["clusters"]);
    let outs = finish(vec![
        spawn(&sb, &url, &["gate", "change.patch"]),
        spawn(&sb, &url, &["gate", "change.patch"]),
        spawn(&sb, &url, &["eval", "--trials", "2"]),
        spawn(&sb, &url, &["run", "--max-iterations", "1"]),
    ]);
    for (name, o) in ["gate", "gate", "eval", "run"].iter().zip(&outs) {
        assert!(o.status.success(), "{name}: {}", stderr(o));
    }
    let recorded = pg_rows(
        &url,
        "SELECT json_build_array(case_id, seed, passed, COALESCE(reason, '')) AS j FROM trials ORDER BY case_id, seed",
    );
    assert!(recorded.len() >= 10, "{recorded:?}");
    for r in &recorded {
        let (case, passed, reason) = (r[0].as_str().unwrap(), r[2].as_bool().unwrap(), r[3].as_str().unwrap());
        if case == "c-t1" {
            assert!(!passed && reason.starts_with("output_contains"), "{r:?}");
        } else {
            assert!(passed, "a collision was recorded as a result: {r:?}");
        }
    }
}

#[test]
fn shards_on_one_postgres_store_merge_without_files_as_one_machine() {
    let Some(url) = postgres() else { return };
    let seeded = || {
        let sb = Sandbox::new();
        copy_tree(&crate::common::fixture("harnesses/seeded"), sb.path());
        sb
    };
    let patch_of = |sb: &Sandbox| {
        let rel = "harnesses/seeded/rates.txt";
        let old = std::fs::read_to_string(sb.path().join(rel)).unwrap();
        let new: String = old
            .lines()
            .map(|l| if l.starts_with("c-r08 ") { "c-r08 5\n".to_string() } else { format!("{l}\n") })
            .collect();
        diff(sb, rel, &new)
    };
    let one = seeded();
    one.write("change.patch", patch_of(&one));
    let (code, single, err) = on(&one, "one.db", &["gate", "change.patch"]);
    assert_eq!(code, Some(1), "{err}\n{single:#}");
    // Three runners, each its own checkout, one shared store; then the merge.
    let runners: Vec<Sandbox> = (0..3).map(|_| seeded()).collect();
    for (k, r) in runners.iter().enumerate() {
        r.write("change.patch", patch_of(r));
        let doc = ok(r, &url, &["gate", "change.patch", "--partition", &format!("{}/3", k + 1)]);
        assert_eq!(doc["schema"], "autoharness.gate-shard/v1");
    }
    let (code, merged, err) = on(&runners[0], &url, &["gate", "change.patch", "--merge"]);
    assert_eq!(code, Some(1), "{err}\n{merged:#}");
    for key in ["verdict", "rule", "decision"] {
        assert_eq!(merged[key], single[key], "{key}");
    }
    let flips = |d: &Value| -> Vec<(String, String)> {
        d["cases"].as_array().unwrap().iter().map(|c| (c["id"].to_string(), c["flip"].to_string())).collect()
    };
    assert_eq!(flips(&merged), flips(&single));
}

#[test]
fn a_run_on_postgres_ends_as_on_sqlite_and_a_second_runner_is_refused_while_it_runs() {
    let Some(url) = postgres() else { return };
    let run = ["run", "--traces", "traces", "--max-iterations", "1"];
    let setup = || {
        let sb = with_traces();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        copy_tree(&repo.join("examples"), &sb.path().join("examples"));
        sb
    };
    let lite = setup();
    let a = ok(&lite, "state.db", &run);
    let pg = setup();
    let b = ok(&pg, &url, &run);
    for key in ["accepted", "clusters_fixed", "trials", "stopped_because"] {
        assert_eq!(b[key], a[key], "{key}: Postgres {b:#}\nSQLite {a:#}");
    }
    let verdicts = |d: &Value| -> Vec<Value> {
        d["iterations"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|i| i["candidates"].as_array().unwrap().clone())
            .map(|c| c["verdict"].clone())
            .collect()
    };
    assert_eq!(verdicts(&b), verdicts(&a));
    assert_eq!(ok(&pg, &url, &["report"])["run_id"], b["run_id"], "report reads the run back");
    // The run lock holds across runners (another machine sees no lock file of ours).
    let rt = autoharness::store::runtime().unwrap();
    let (store, held) = rt.block_on(async {
        let s = autoharness::store::Store::open_postgres(&url, Path::new("x.db")).await.unwrap();
        let lock = s.run_lock().await.unwrap();
        (s, lock)
    });
    assert!(held.is_some());
    let other = setup();
    let (code, _, err) = on(&other, &url, &["run", "--max-iterations", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("another `autoharness run`"), "{err}");
    drop(held);
    rt.block_on(store.close());
    let (code, _, err) = on(&other, &url, &["run", "--max-iterations", "0"]);
    assert_eq!(code, Some(0), "released with the session: {err}");
}

#[test]
fn a_postgres_store_that_cannot_be_opened_says_why_without_the_password() {
    let sb = Sandbox::new();
    // Nothing listens on port 1.
    let (code, _, err) = on(&sb, "postgres://team:s3cret-pw@127.0.0.1:1/autoharness", &["clusters"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("postgres://team:***@127.0.0.1:1/autoharness"), "{err}");
    assert!(!err.contains("s3cret-pw"), "the password is printed: {err}");
    assert!(err.contains("server is running"), "{err}");
    let Some(url) = postgres() else { return };
    let missing = match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/no_such_database_here"),
        None => unreachable!(),
    };
    let (code, _, err) = on(&sb, &missing, &["clusters"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no_such_database_here") && err.contains("createdb"), "{err}");
}

/// Postgres text cannot hold NUL; traces (JSON's `\u0000`) and trials' output can. Both
/// backends store such text alike (NUL as U+FFFD), and nothing is refused.
#[test]
fn text_with_nul_characters_is_stored_alike_on_both_backends() {
    let Some(url) = postgres() else { return };
    let line = |i: usize| {
        serde_json::json!({"trace_id": format!("t{i}"), "is_correct": false, "messages": [
            {"role": "user", "content": "find order 7\u{0}please"},
            {"role": "tool", "name": "get_order", "content": "Error: lookup failed\u{0} at byte 3"},
            {"role": "assistant", "content": "sorry"}]})
        .to_string()
    };
    let traces = (0..3).map(line).collect::<Vec<_>>().join("\n") + "\n";
    let (lite, pg) = (Sandbox::new(), Sandbox::new());
    for sb in [&lite, &pg] {
        sb.write("traces/t.jsonl", &traces);
    }
    let a = ok(&lite, "state.db", &["mine", "traces", "--no-cases"]);
    let b = ok(&pg, &url, &["mine", "traces", "--no-cases"]);
    assert_eq!(b["summary"]["new_failures"], 3, "{b:#}");
    assert_eq!(here(&pg, &mine_summary(&b)), here(&lite, &mine_summary(&a)));
    assert_eq!(ok(&pg, &url, &["clusters"]), ok(&lite, "state.db", &["clusters"]));
    // A harness whose output holds NUL: its trials are recorded (and cached) on Postgres.
    let sb = steady_with_patch();
    sb.write("harnesses/steady/run.sh", "printf 'bin\\000ary '\ncat prompt.txt\n");
    let (code, doc, err) = on(&sb, &url, &["gate", "change.patch"]);
    assert!(matches!(code, Some(0 | 1)), "{err}\n{doc:#}");
    let outputs = pg_rows(&url, "SELECT to_json(output) AS j FROM trials");
    assert!(
        !outputs.is_empty() && outputs.iter().all(|o| o.as_str().unwrap().contains("bin\u{FFFD}ary")),
        "{outputs:?}"
    );
    let (_, again, err) = on(&sb, &url, &["gate", "change.patch"]);
    let ran = again["trials"]["baseline"].as_u64().unwrap() + again["trials"]["candidate"].as_u64().unwrap();
    assert_eq!(again["trials"]["cached"].as_u64(), Some(ran), "{err}\n{again:#}");
}

/// A runner killed mid-gate (SIGKILL after its third trial was recorded) loses nothing that
/// finished: the next gate on the shared store, from another runner, takes those trials from
/// the cache and decides as an uninterrupted gate does; a mine killed after storing, before
/// writing its cases, is finished by the next mine, which counts every failure once.
#[test]
fn a_runner_killed_mid_gate_or_mid_mine_loses_nothing_that_finished() {
    let Some(url) = postgres() else { return };
    let killed = steady_with_patch();
    let out = killed
        .std_command(bin())
        .args(["--db", &url, "--json", "gate", "change.patch"])
        .env("AUTOHARNESS_CRASH_AT", "trial_recorded:3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed by the crash point: {}", stderr(&out));
    // At least the 3 finished when the kill came; a trial running beside the third may have
    // been recorded before the kill landed (two jobs at once).
    let stored = pg_rows(&url, "SELECT to_json(id) AS j FROM trials").len();
    assert!((3..=4).contains(&stored), "the finished trials are stored: {stored}");
    let other = steady_with_patch();
    let (code, doc, err) = on(&other, &url, &["gate", "change.patch"]);
    let (ref_code, reference, _) = on(&steady_with_patch(), &postgres().unwrap(), &["gate", "change.patch"]);
    assert_eq!(code, ref_code, "{err}");
    assert_eq!(doc["verdict"], reference["verdict"]);
    assert_eq!(doc["trials"]["cached"], stored, "every stored trial is reused: {doc:#}");
    // A mine killed after its transaction, before its case files.
    let sb = with_traces();
    let out = sb
        .std_command(bin())
        .args(["--db", &url, "mine", "traces", "--harness", "support-bot"])
        .env("AUTOHARNESS_CRASH_AT", "mine_stored:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    ok(&sb, &url, &MINE);
    let members = pg_rows(&url, "SELECT json_build_array(id, members) AS j FROM clusters ORDER BY id");
    let counted = pg_rows(
        &url,
        "SELECT json_build_array(cluster_id, COUNT(*)) AS j FROM failures GROUP BY cluster_id ORDER BY cluster_id",
    );
    assert_eq!(members, counted, "the mine after the kill counts every failure once");
}

#[test]
fn a_run_partitioned_over_runners_on_one_postgres_store_decides_as_one_machine() {
    let Some(url) = postgres() else { return };
    use crate::partition::{RUN, example, follower, run_decisions};
    let one = example();
    let (code, single, err) = on(&one, "one.db", &RUN);
    assert_eq!(code, Some(0), "{err}");
    // Two runners, each its own checkout; nothing passes between them but the store.
    let (lead, other) = (example(), example());
    let child = follower(&other, &url, "2/2", &[]);
    let mut args = RUN.to_vec();
    args.extend(["--partition", "1/2"]);
    let (code, led, err) = on(&lead, &url, &args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(run_decisions(&led), run_decisions(&single));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["run_id"], led["run_id"], "{doc:#}");
    assert!(!doc["gates"].as_array().unwrap().is_empty() && doc["trials"].as_u64().unwrap() > 0, "{doc:#}");
}
