//! Cluster ids of a store made under older signature rules keep resolving after the
//! upgrade (migration 0011, src/mine/alias.rs): the first mine under the new rules signs
//! the stored failures again, records which old cluster became which new one, and moves
//! their cases with them; a case file a person edited is never touched.
//!
//! The old store is made by this binary under signature rules 1 (tool errors signed as
//! their exporter recorded them, as main does), the upgrade mines under rules 2
//! (`AUTOHARNESS_SIGNATURE_RULES`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::cli::{Sandbox, bin, stderr};

/// Producers whose `cancel_order` failure main signed four different ways.
const PRODUCERS: [&str; 5] = ["langsmith", "openai-agents", "openinference", "otel-genai", "pydantic-ai"];

fn corpus_file(producer: &str) -> PathBuf {
    let dir = crate::common::fixture("producers").join(producer);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("tool_raises.")))
        .collect();
    found.sort();
    found.remove(0)
}

fn mine(sb: &Sandbox, old_rules: bool) -> (Value, String) {
    let mut cmd = sb.std_command(bin());
    cmd.args(sb.db_args()).args(["--json", "mine", "t", "--harness", "h"]);
    cmd.env("AUTOHARNESS_SIGNATURE_RULES", if old_rules { "1" } else { "2" });
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    (serde_json::from_slice(&out.stdout).unwrap(), stderr(&out))
}

/// Every case file under `evals/h`, with its cluster.
fn case_files(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for d in std::fs::read_dir(root.join("evals/h")).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            let v: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
            out.insert(f.path(), v["cluster"].as_str().unwrap().to_string());
        }
    }
    out
}

fn case_rows(db: &Path) -> Vec<(String, String)> {
    let rt = autoharness::store::runtime().unwrap();
    rt.block_on(async {
        let store = autoharness::store::Store::open(db).await.unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, cluster_id FROM cases ORDER BY id")
            .fetch_all(store.sqlite().unwrap())
            .await
            .unwrap();
        store.close().await;
        rows
    })
}

#[test]
fn old_cluster_ids_resolve_after_the_signature_rules_change() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.path().join("t")).unwrap();
    for p in PRODUCERS {
        // The same task five times would be one case: each producer's run gets its own
        // question, so each failure is a case of its own.
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(corpus_file(p)).unwrap()).read_to_string(&mut text).unwrap();
        let text = text.replace("Where is order A-1?", &format!("Where is order A-1? (asked via {p})"));
        std::fs::write(sb.path().join("t").join(format!("{p}-tool_raises.jsonl")), text).unwrap();
    }
    // No joining by similarity: each signature is its own cluster, as main's rules made them.
    sb.write("autoharness.toml", "[mine]\njoin_threshold = 0.999\n");
    let (old, _) = mine(&sb, true);
    let old_ids: BTreeSet<String> =
        old["clusters"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    assert!(old_ids.len() >= 2, "the old rules split one tool failure: {old_ids:?}");
    let before = case_files(sb.path());
    assert!(before.len() >= 3, "a case per failing run: {before:?}");
    // A person edits one case: it must stay exactly as they left it.
    let (edited, _) = before.iter().next().unwrap();
    let mut v: Value = serde_json::from_slice(&std::fs::read(edited).unwrap()).unwrap();
    v["description"] = "edited by a person".into();
    let edited_bytes = serde_json::to_vec_pretty(&v).unwrap();
    std::fs::write(edited, &edited_bytes).unwrap();

    let (new, err) = mine(&sb, false);
    assert!(err.contains("the signature rules changed (v1 -> v2)"), "{err}");
    let new_ids: Vec<&str> = new["clusters"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(new_ids.len(), 1, "one tool failure, one cluster: {new_ids:?}");
    let new_id = new_ids[0].to_string();
    // Every old id names the new cluster, in `clusters` and `cases`.
    for old_id in &old_ids {
        let c = sb.json(&["clusters", old_id]);
        assert_eq!(c["id"], new_id.as_str(), "clusters {old_id}");
        let cases = sb.json(&["cases", "--cluster", old_id]);
        assert_eq!(cases["cases"].as_array().unwrap().len(), before.len(), "cases --cluster {old_id}: {cases}");
    }
    // `eval --cluster` takes an old id too (the same resolution as `clusters` and `cases`,
    // `mine::alias::Aliases::given`), and runs every case of the new cluster, the edited
    // file that still names the old id included.
    sb.write(
        "harnesses/h/harness.toml",
        "name = \"h\"\neditable = [\"prompt.txt\"]\nrun = \"cat prompt.txt\"\ntimeout = \"5s\"\n",
    );
    sb.write("harnesses/h/prompt.txt", "hello\n");
    for old_id in &old_ids {
        let out = sb.run(&["--json", "eval", "--cluster", old_id, "--split", "all", "--trials", "1"]);
        assert_ne!(out.status.code(), Some(2), "eval --cluster {old_id}: {}", stderr(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["cases"].as_array().unwrap().len(), before.len(), "eval --cluster {old_id}: {doc:#}");
        assert!(stderr(&out).contains(&format!("`{old_id}` is now `{new_id}`")), "{}", stderr(&out));
    }
    // No case is lost or made twice: the same files, moved with their cluster, except the
    // edited one, which stays where it was, byte for byte.
    let after = case_files(sb.path());
    assert_eq!(after.len(), before.len(), "{after:?}");
    assert_eq!(std::fs::read(edited).unwrap(), edited_bytes);
    for (path, cluster) in &after {
        if path != edited {
            assert_eq!(cluster, &new_id, "{}", path.display());
            assert!(path.starts_with(sb.path().join("evals/h").join(&new_id)), "{}", path.display());
        }
    }
    let rows = case_rows(&sb.db());
    assert_eq!(rows.len(), before.len());
    assert!(rows.iter().all(|(_, c)| *c == new_id), "{rows:?}");
    // The list shows the cluster the old ones became, not the old ones.
    let list = sb.json(&["clusters"]);
    let listed: Vec<&str> = list["clusters"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [new_id.as_str()]);
    // Mining again changes nothing.
    let (again, err) = mine(&sb, false);
    assert!(!err.contains("signature rules changed"), "{err}");
    assert_eq!(again["summary"]["cases_written"], 0, "{}", again["summary"]);
    assert_eq!(case_files(sb.path()).len(), before.len());
}
