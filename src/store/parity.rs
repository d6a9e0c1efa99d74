//! The same writes and reads on each backend give the same answers (runs, proposals,
//! case events, trials, judgements): the SQL that differs per backend, and the column types
//! that do (booleans, identity keys, sums), are checked against each other here. Mines,
//! gates and shards are compared end to end in `tests/postgres.rs`.

use serde_json::{Value, json};

use super::Store;
use crate::evals::case::CaseStatus;
use crate::mine::judge::{Judged, Judgement, Outcome};
use crate::mine::state::ClusterState;
use crate::propose::Proposal;
use crate::store::judgements::JudgementKey;
use crate::store::runs::{IterationEnd, RunStatus};

fn proposal(diff: &str, cost: f64) -> Proposal {
    Proposal {
        provider: "knobs".into(),
        description: format!("change {diff}"),
        diff: diff.into(),
        fixes: vec!["k-1".into()],
        risks: Vec::new(),
        prompt: Some("prompt".into()),
        answer: None,
        tokens_in: Some(10),
        tokens_out: None,
        cost_usd: cost,
        error: None,
    }
}

/// What one backend answers to a fixed sequence of writes and reads.
async fn observe(store: &Store) -> anyhow::Result<Value> {
    let mut seen = serde_json::Map::new();
    store.create_run("r-1", "h", "{}").await?;
    store.create_run("r-0", "other", "{}").await?;
    seen.insert("latest".into(), json!(store.latest_run("h", true).await?.map(|r| (r.id, r.iteration))));
    let a = store.insert_proposal("r-1", 1, "k-1", &proposal("diff a", 0.25)).await?;
    let again = store.insert_proposal("r-1", 1, "k-1", &proposal("diff a", 0.25)).await?;
    let b = store.insert_proposal("r-1", 1, "k-1", &proposal("diff b", 0.5)).await?;
    seen.insert("ids".into(), json!([a == again, a != b]));
    seen.insert("spent".into(), json!(store.run_spent("r-1").await?));
    store.set_proposal_verdict(a, "fail", "new failures", None, false).await?;
    store.set_proposal_verdict(b, "pass", "fixed", None, false).await?;
    seen.insert("rejected".into(), json!(store.rejected_proposals("k-1").await?));
    seen.insert("attempts_before".into(), json!(store.failed_attempts("k-1").await?));
    store.case_event("c-1", CaseStatus::Active, "run r-1: promoted").await?;
    store
        .close_iteration(&IterationEnd {
            run_id: "r-1",
            iteration: 1,
            cluster: "k-1",
            accepted: Some(b),
            cluster_state: ClusterState::Targeted,
            case_events: vec![("c-2".into(), CaseStatus::Quarantined, "run r-1: flaky".into())],
        })
        .await?;
    seen.insert("attempts_after".into(), json!(store.failed_attempts("k-1").await?));
    seen.insert("unapplied".into(), json!(store.unapplied_fix("k-1").await?));
    seen.insert("gated".into(), json!(store.gated_diffs("k-1").await?.len()));
    let proposals: Vec<Value> = store
        .proposals_of_run("r-1")
        .await?
        .into_iter()
        .map(|p| json!([p.iteration, p.cluster_id, p.diff, p.verdict, p.rule, p.accepted, p.cost_usd]))
        .collect();
    seen.insert("proposals".into(), json!(proposals));
    seen.insert("recorded".into(), json!(store.recorded_proposals("r-1", 1, "k-1").await?.len()));
    store.reopen_iterations_after("r-1", 0).await?;
    seen.insert(
        "reopened".into(),
        json!(store.proposals_of_run("r-1").await?.iter().map(|p| p.accepted).collect::<Vec<_>>()),
    );
    store.update_run("r-1", 1, RunStatus::Finished, Some("{\"done\":true}")).await?;
    seen.insert("running".into(), json!(store.latest_run("h", true).await?.map(|r| r.id)));
    seen.insert(
        "finished".into(),
        json!(store.run_by_id("r-1").await?.map(|r| (r.status.as_str().to_string(), r.summary))),
    );
    store.mark_run_failed("r-0", "boom").await?;
    seen.insert("failed".into(), json!(store.run_by_id("r-0").await?.map(|r| r.status.as_str().to_string())));
    let events: Vec<Value> =
        store.case_statuses_of_run("r-1").await?.into_iter().map(|(id, s)| json!([id, s.as_str()])).collect();
    seen.insert("case_statuses".into(), json!(events));
    seen.insert("events".into(), json!(store.case_events("c-2").await?.iter().map(|e| &e.reason).collect::<Vec<_>>()));
    let key = JudgementKey { content_hash: "h1", taxonomy: "agentrx-v1", model: "m" };
    seen.insert("judgement_none".into(), json!(store.judgement(&key).await?.is_none()));
    let judged = |outcome| Judged { outcome, requests: 2, tokens: 30, cost_usd: 0.01 };
    store.put_judgement(&key, &judged(Outcome::Rejected("made-up quote".into()))).await?;
    let accepted = Judgement { category: "plan".into(), step: "s-2".into(), quote: "the quote".into() };
    store.put_judgement(&key, &judged(Outcome::Accepted(accepted))).await?;
    seen.insert("judgement".into(), json!(format!("{:?}", store.judgement(&key).await?)));
    seen.insert("counts".into(), json!(store.count_traces().await?));
    Ok(Value::Object(seen))
}

#[tokio::test]
async fn every_backend_answers_the_same_writes_and_reads_alike() {
    let dir = tempfile::tempdir().unwrap();
    let stores = crate::store::testing::stores(dir.path()).await;
    let mut answers = Vec::new();
    for store in stores {
        let kind = format!("{:?}", store.dialect());
        answers.push((kind, observe(&store).await.unwrap_or_else(|e| panic!("{e:#}"))));
        store.close().await;
    }
    let (first_kind, first) = &answers[0];
    assert_eq!(first["ids"], json!([true, true]), "{first:#}");
    assert_eq!(first["spent"], json!(0.75), "{first:#}");
    assert_eq!(first["attempts_before"], json!(1), "{first:#}");
    for (kind, answer) in &answers[1..] {
        assert_eq!(answer, first, "{kind} vs {first_kind}");
    }
}
