//! Trials: recording each one, and the cache lookup by (harness hash, case hash, seed,
//! environment fingerprint).

use super::{Store, in_transaction, now_rfc3339, on_pool, per_backend};
use crate::evals::case::CaseStatus;
use crate::trial::{BoxFuture, TrialLog, TrialRecord, TrialStatus};

const COLUMNS: &str = "harness, harness_hash, case_id, case_hash, seed, env_fp, passed, status, exit_code, reason,
    checks, duration_ms, tokens, cost_usd, output, stderr_tail, trace_path, isolation, signature, created_at";

impl Store {
    /// A trial with this key ran before: its record, marked cached. A trial that could not
    /// start says nothing about the harness (a sandbox or setup problem): never reused.
    pub async fn cached_trial(
        &self,
        harness_hash: &str,
        case_hash: &str,
        seed: u64,
        env_fp: &str,
    ) -> anyhow::Result<Option<TrialRecord>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM trials WHERE harness_hash = $1 AND case_hash = $2 AND seed = $3 AND env_fp = $4
               AND status != 'failed_to_start'"
        );
        let row: Option<TrialRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(harness_hash)
            .bind(case_hash)
            .bind(seed as i64)
            .bind(env_fp)
            .fetch_optional(p)
            .await?);
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TrialRecord { cached: true, ..row.into_record()? }))
    }

    /// Every reusable recorded trial of one harness version under one environment whose case
    /// hash is among `case_hashes`: a gate round's cache lookups in one query instead of one
    /// round trip per trial (which a Postgres store over a network pays in full).
    pub async fn cached_trials(
        &self,
        harness_hash: &str,
        env_fp: &str,
        case_hashes: &[String],
    ) -> anyhow::Result<Vec<TrialRecord>> {
        let hashes = serde_json::to_string(case_hashes)?;
        let rows: Vec<TrialRow> = on_pool!(self, |p| {
            let sql = format!(
                "SELECT {COLUMNS} FROM trials WHERE harness_hash = $1 AND env_fp = $2 AND status != 'failed_to_start'
                   AND case_hash IN ({})",
                DIALECT.json_texts(3)
            );
            sqlx::query_as(&sql).bind(harness_hash).bind(env_fp).bind(&hashes).fetch_all(p).await?
        });
        rows.into_iter().map(|r| Ok(TrialRecord { cached: true, ..r.into_record()? })).collect()
    }

    /// Each case's share of failed trials among its last `last` recorded trials, any harness
    /// version (cases without trials are absent). One bounded query for a whole suite: the
    /// history grows with every gate, the gate's cost must not.
    pub async fn past_fail_rates(
        &self,
        case_ids: &[String],
        last: i64,
    ) -> anyhow::Result<std::collections::HashMap<String, f64>> {
        let ids = serde_json::to_string(case_ids)?;
        let rows: Vec<(String, i64, i64)> = on_pool!(self, |p| {
            let sql = format!(
                "SELECT case_id, CAST(SUM(CASE WHEN passed THEN 0 ELSE 1 END) AS BIGINT), COUNT(*) FROM (
                   SELECT case_id, passed, ROW_NUMBER() OVER (PARTITION BY case_id ORDER BY id DESC) AS nth
                   FROM trials WHERE case_id IN ({})) recent
                 WHERE nth <= $2 GROUP BY case_id",
                DIALECT.json_texts(1)
            );
            sqlx::query_as(&sql).bind(&ids).bind(last).fetch_all(p).await?
        });
        Ok(rows.into_iter().map(|(id, failed, n)| (id, failed as f64 / n.max(1) as f64)).collect())
    }

    /// Record a trial, replacing an earlier one with the same key (a `--no-cache` rerun).
    pub async fn record_trial(&self, t: &TrialRecord) -> anyhow::Result<()> {
        self.record_trial_for(t, None).await
    }

    /// Record a trial and, in the same transaction, add its cost to what run `run` spent:
    /// a run killed mid-gate has still counted every trial that ended.
    pub async fn record_trial_for(&self, t: &TrialRecord, run: Option<&str>) -> anyhow::Result<()> {
        let sql = format!(
            "INSERT INTO trials ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
             ON CONFLICT (harness_hash, case_hash, seed, env_fp) DO UPDATE SET
               passed = excluded.passed, status = excluded.status, exit_code = excluded.exit_code,
               reason = excluded.reason, checks = excluded.checks, duration_ms = excluded.duration_ms,
               tokens = excluded.tokens, cost_usd = excluded.cost_usd, output = excluded.output,
               stderr_tail = excluded.stderr_tail, trace_path = excluded.trace_path,
               isolation = excluded.isolation, signature = excluded.signature, created_at = excluded.created_at"
        );
        in_transaction!(self, |tx| {
            sqlx::query(&sql)
                .bind(&t.harness)
                .bind(&t.harness_hash)
                .bind(&t.case_id)
                .bind(&t.case_hash)
                .bind(t.seed as i64)
                .bind(&t.env_fp)
                .bind(t.passed)
                .bind(t.status.as_str())
                .bind(t.exit_code)
                .bind(super::text_opt(t.reason.as_deref()))
                .bind(serde_json::to_string(&t.checks)?)
                .bind(t.duration_ms as i64)
                .bind(t.tokens.map(|x| x as i64))
                .bind(t.cost_usd)
                .bind(super::text(&t.output))
                .bind(super::text(&t.stderr_tail))
                .bind(&t.trace_path)
                .bind(&t.isolation)
                .bind(super::text_opt(t.signature.as_deref()))
                .bind(now_rfc3339())
                .execute(&mut *tx)
                .await?;
            if let (Some(run), Some(cost)) = (run, t.cost_usd.filter(|c| *c > 0.0)) {
                sqlx::query("UPDATE runs SET spent_usd = spent_usd + $1 WHERE id = $2")
                    .bind(cost)
                    .bind(run)
                    .execute(&mut *tx)
                    .await?;
            }
        });
        crate::crash::point("trial_recorded");
        Ok(())
    }

    /// Every recorded trial of a case, oldest first (for `cases` history).
    pub async fn trials_of_case(&self, case_id: &str) -> anyhow::Result<Vec<TrialRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM trials WHERE case_id = $1 ORDER BY id");
        let rows: Vec<TrialRow> = on_pool!(self, |p| sqlx::query_as(&sql).bind(case_id).fetch_all(p).await?);
        rows.into_iter().map(TrialRow::into_record).collect()
    }

    /// Every trial of these harness versions that started, oldest first (a merge reads a
    /// shard's trials with it; a later rerun of a trial overrides an earlier one).
    pub async fn trials_of_versions(&self, hashes: &[String]) -> anyhow::Result<Vec<TrialRecord>> {
        let mut out = Vec::new();
        let sql =
            format!("SELECT {COLUMNS} FROM trials WHERE harness_hash = $1 AND status != 'failed_to_start' ORDER BY id");
        for hash in hashes {
            let rows: Vec<TrialRow> = on_pool!(self, |p| sqlx::query_as(&sql).bind(hash).fetch_all(p).await?);
            for r in rows {
                out.push(r.into_record()?);
            }
        }
        Ok(out)
    }

    /// The latest status each case got from a run (its events' reasons name the run).
    pub async fn case_statuses_of_run(&self, run_id: &str) -> anyhow::Result<Vec<(String, CaseStatus)>> {
        let sql = "SELECT case_id, status, reason, at FROM case_events WHERE id IN
               (SELECT MAX(id) FROM case_events WHERE reason LIKE $1 GROUP BY case_id)";
        let rows: Vec<CaseEventRow> =
            on_pool!(self, |p| sqlx::query_as(sql).bind(format!("run {run_id}:%")).fetch_all(p).await?);
        Ok(rows.into_iter().map(|r| (r.case_id, r.status)).collect())
    }

    /// Record a case's status change and why (the row and the history, together).
    pub async fn case_event(&self, case_id: &str, status: CaseStatus, reason: &str) -> anyhow::Result<()> {
        in_transaction!(self, |tx, crate::store::trials as t| {
            t::case_event_in(&mut tx, case_id, status, reason, &super::now_rfc3339()).await?
        });
        Ok(())
    }

    /// A case file's new content hash, after autoharness rewrote the file (its status is
    /// recorded by `case_event`); a case the store never recorded is left alone.
    pub async fn set_case_hash(&self, case_id: &str, content_hash: &str) -> anyhow::Result<()> {
        let sql = "UPDATE cases SET content_hash = $1 WHERE id = $2";
        on_pool!(self, |p| sqlx::query(sql).bind(content_hash).bind(case_id).execute(p).await?.rows_affected());
        Ok(())
    }

    /// A case's status history, oldest first.
    pub async fn case_events(&self, case_id: &str) -> anyhow::Result<Vec<CaseEventRow>> {
        let sql = "SELECT case_id, status, reason, at FROM case_events WHERE case_id = $1 ORDER BY id";
        Ok(on_pool!(self, |p| sqlx::query_as(sql).bind(case_id).fetch_all(p).await?))
    }
}

/// A `case_events` row: a case's status change and why.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CaseEventRow {
    pub case_id: String,
    pub status: CaseStatus,
    pub reason: String,
    pub at: String,
}

per_backend! {
/// A case's status change and its reason, inside a transaction of the caller's.
pub(crate) async fn case_event_in(
    tx: &mut sqlx::Transaction<'_, Db>,
    case_id: &str,
    status: CaseStatus,
    reason: &str,
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO case_events (case_id, status, reason, at) VALUES ($1, $2, $3, $4)")
        .bind(case_id)
        .bind(status.as_str())
        .bind(crate::store::text(reason))
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query("UPDATE cases SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now)
        .bind(case_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
}

/// A `trials` row, by column name.
#[derive(sqlx::FromRow)]
struct TrialRow {
    harness: String,
    harness_hash: String,
    case_id: String,
    case_hash: String,
    seed: i64,
    env_fp: String,
    passed: bool,
    status: TrialStatus,
    exit_code: Option<i32>,
    reason: Option<String>,
    checks: String,
    duration_ms: i64,
    tokens: Option<i64>,
    cost_usd: Option<f64>,
    output: String,
    stderr_tail: String,
    trace_path: Option<String>,
    isolation: String,
    signature: Option<String>,
}

impl TrialRow {
    fn into_record(self) -> anyhow::Result<TrialRecord> {
        let checks = serde_json::from_str(&self.checks).map_err(|e| {
            anyhow::anyhow!(
                "the store's trial of case {} (seed {}) has a corrupt `checks` column ({e}); \
                 run with --no-cache to record it again",
                self.case_id,
                self.seed
            )
        })?;
        Ok(TrialRecord {
            harness: self.harness,
            harness_hash: self.harness_hash,
            case_id: self.case_id,
            case_hash: self.case_hash,
            seed: self.seed as u64,
            env_fp: self.env_fp,
            passed: self.passed,
            status: self.status,
            exit_code: self.exit_code,
            reason: self.reason,
            checks,
            duration_ms: self.duration_ms as u64,
            tokens: self.tokens.map(|x| x as u64),
            cost_usd: self.cost_usd,
            output: self.output,
            stderr_tail: self.stderr_tail,
            trace_path: self.trace_path,
            isolation: self.isolation,
            signature: self.signature,
            cached: false,
            infra: None,
        })
    }
}

impl TrialLog for Store {
    fn cached<'a>(
        &'a self,
        version: &'a str,
        case: &'a str,
        seed: u64,
        env: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<TrialRecord>>> {
        Box::pin(self.cached_trial(version, case, seed, env))
    }

    fn record<'a>(&'a self, rec: &'a TrialRecord, run_id: Option<&'a str>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.record_trial_for(rec, run_id))
    }

    fn cached_many<'a>(
        &'a self,
        version: &'a str,
        env: &'a str,
        case_hashes: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<TrialRecord>>> {
        Box::pin(self.cached_trials(version, env, case_hashes))
    }

    fn fail_rates<'a>(
        &'a self,
        case_ids: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<std::collections::HashMap<String, f64>>> {
        Box::pin(self.past_fail_rates(case_ids, crate::trial::HISTORY_TRIALS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: TrialStatus) -> TrialRecord {
        TrialRecord {
            harness: "h".into(),
            harness_hash: "hh".into(),
            case_id: "c-1".into(),
            case_hash: "ch".into(),
            seed: 0,
            env_fp: "fp".into(),
            passed: false,
            status,
            exit_code: None,
            reason: Some("why".into()),
            signature: None,
            checks: Vec::new(),
            duration_ms: 1,
            tokens: None,
            cost_usd: Some(0.5),
            output: String::new(),
            stderr_tail: String::new(),
            trace_path: None,
            isolation: String::new(),
            cached: false,
            infra: None,
        }
    }

    #[tokio::test]
    async fn trials_that_could_not_start_are_never_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        for store in crate::store::testing::stores(dir.path()).await {
            trials_that_could_not_start_on(store).await;
        }
    }

    async fn trials_that_could_not_start_on(store: Store) {
        store.create_run("r-1", "h", "{}").await.unwrap();
        store.record_trial_for(&record(TrialStatus::FailedToStart), Some("r-1")).await.unwrap();
        assert!(store.cached_trial("hh", "ch", 0, "fp").await.unwrap().is_none());
        // Its cost still counts: it was spent.
        assert_eq!(store.run_spent("r-1").await.unwrap(), 0.5);
        store.record_trial_for(&record(TrialStatus::Exited), Some("r-1")).await.unwrap();
        let cached = store.cached_trial("hh", "ch", 0, "fp").await.unwrap().unwrap();
        assert!(cached.cached && cached.status == TrialStatus::Exited);
        assert_eq!(store.run_spent("r-1").await.unwrap(), 1.0);
        store.close().await;
    }

    /// The batched lookups answer as the one-trial lookup does, and the past failure rate
    /// reads only each case's most recent trials.
    #[tokio::test]
    async fn batched_cache_lookups_and_bounded_failure_rates() {
        let dir = tempfile::tempdir().unwrap();
        for store in crate::store::testing::stores(dir.path()).await {
            batched_on(store).await;
        }
    }

    async fn batched_on(store: Store) {
        let trial = |case: &str, hash: &str, seed: u64, passed: bool, status: TrialStatus| TrialRecord {
            case_id: case.into(),
            case_hash: hash.into(),
            seed,
            passed,
            ..record(status)
        };
        // c-1: five failures, then three passes; c-2: one pass; c-3 on another environment.
        for seed in 0..8 {
            store.record_trial(&trial("c-1", "h1", seed, seed >= 5, TrialStatus::Exited)).await.unwrap();
        }
        store.record_trial(&trial("c-2", "h2", 0, true, TrialStatus::Exited)).await.unwrap();
        store.record_trial(&trial("c-2", "h2", 1, false, TrialStatus::FailedToStart)).await.unwrap();
        store
            .record_trial(&TrialRecord { env_fp: "other".into(), ..trial("c-3", "h3", 0, true, TrialStatus::Exited) })
            .await
            .unwrap();
        let hashes = ["h1".to_string(), "h2".to_string(), "h3".to_string(), "h9".to_string()];
        let mut got: Vec<(String, u64)> = store
            .cached_trials("hh", "fp", &hashes)
            .await
            .unwrap()
            .into_iter()
            .inspect(|r| assert!(r.cached))
            .map(|r| (r.case_hash, r.seed))
            .collect();
        got.sort();
        let mut one_by_one = Vec::new();
        for h in &hashes {
            for seed in 0..8 {
                if let Some(r) = store.cached_trial("hh", h, seed, "fp").await.unwrap() {
                    one_by_one.push((r.case_hash, r.seed));
                }
            }
        }
        one_by_one.sort();
        assert_eq!(got, one_by_one);
        assert_eq!(got.len(), 9, "{got:?}");
        let ids = ["c-1".to_string(), "c-2".to_string(), "c-4".to_string()];
        let all = store.past_fail_rates(&ids, 100).await.unwrap();
        assert_eq!(all.get("c-1"), Some(&(5.0 / 8.0)));
        assert_eq!(all.get("c-2"), Some(&0.5));
        assert!(!all.contains_key("c-4"));
        // The last three of c-1 passed: an old failure streak does not weigh for ever.
        let recent = store.past_fail_rates(&ids, 3).await.unwrap();
        assert_eq!(recent.get("c-1"), Some(&0.0));
        store.close().await;
    }

    /// A row that no longer decodes is an error naming the case, never a trial with no
    /// checks (which would read as a pass with nothing checked).
    #[tokio::test]
    async fn a_corrupt_trial_row_is_an_error_naming_the_case() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).await.unwrap();
        store.record_trial(&record(TrialStatus::Exited)).await.unwrap();
        sqlx::query("UPDATE trials SET checks = '[{\"kind\": tru'").execute(store.sqlite().unwrap()).await.unwrap();
        let e = store.cached_trial("hh", "ch", 0, "fp").await.unwrap_err().to_string();
        assert!(e.contains("case c-1") && e.contains("corrupt `checks`"), "{e}");
        sqlx::query("UPDATE trials SET checks = '[]', status = 'exploded'")
            .execute(store.sqlite().unwrap())
            .await
            .unwrap();
        let e = format!("{:#}", store.trials_of_case("c-1").await.unwrap_err());
        assert!(e.contains("unknown trial status 'exploded'"), "{e}");
        store.close().await;
    }
}
