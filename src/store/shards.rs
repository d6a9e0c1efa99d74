//! Shards of a partitioned gate (`gate --partition K/N`): recorded when each starts and when
//! its first round is done, and read back by a merge (`gate --merge`) through
//! [`ShardLog`](crate::gate::merge::ShardLog).

use super::{Store, now_rfc3339, on_pool};
use crate::gate::merge::{ShardLog, ShardRow};
use crate::gate::partition::Partition;
use crate::gate::session::GateReport;
use crate::trial::{BoxFuture, TrialRecord};

/// What a shard is running, recorded before its first trial.
pub struct ShardStart<'a> {
    pub harness: &'a str,
    pub patch_hash: &'a str,
    pub partition: Partition,
    pub trials_k: u32,
    pub target: Option<&'a str>,
    /// The `run --partition` request this shard serves, if any.
    pub request: Option<i64>,
}

/// A request of `run --partition`'s leader, as followers read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GateRequestRow {
    pub id: i64,
    pub run_id: String,
    pub patch_hash: String,
    pub partition_total: i64,
    pub request: String,
    pub created_at: String,
}

/// Where one shard of a request stands, for the leader's wait.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestShard {
    pub partition_index: i64,
    pub state: String,
    pub started_at: String,
    pub heartbeat_at: Option<String>,
}

impl Store {
    /// A shard starts: until [`Store::finish_shard`], a merge reads it as failed or running.
    pub async fn start_shard(&self, s: &ShardStart<'_>) -> anyhow::Result<i64> {
        let id: i64 = on_pool!(self, |p| {
            sqlx::query_scalar(
            "INSERT INTO gate_shards (harness, patch_hash, partition_index, partition_total, trials_k, target, state,
               started_at, heartbeat_at, request_id) VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $7, $8) RETURNING id",
        )
        .bind(s.harness)
        .bind(s.patch_hash)
        .bind(s.partition.index as i64)
        .bind(s.partition.total as i64)
        .bind(s.trials_k as i64)
        .bind(s.target)
        .bind(now_rfc3339())
        .bind(s.request)
        .fetch_one(p)
.await?
        });
        Ok(id)
    }

    /// A running shard says it is alive (see [`RequestShard::heartbeat_at`]).
    pub async fn shard_heartbeat(&self, id: i64) -> anyhow::Result<()> {
        on_pool!(self, |p| sqlx::query("UPDATE gate_shards SET heartbeat_at = $1 WHERE id = $2")
            .bind(now_rfc3339())
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// `run --partition`'s leader asks for the shards of a gate; the request's id.
    pub async fn open_gate_request(
        &self,
        run_id: &str,
        harness: &str,
        patch_hash: &str,
        total: u32,
        request: &str,
    ) -> anyhow::Result<i64> {
        let id: i64 = on_pool!(self, |p| {
            sqlx::query_scalar(
                "INSERT INTO gate_requests (run_id, harness, patch_hash, partition_total, request, state, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'open', $6) RETURNING id",
            )
            .bind(run_id)
            .bind(harness)
            .bind(patch_hash)
            .bind(total as i64)
            .bind(super::text(request))
            .bind(now_rfc3339())
            .fetch_one(p)
            .await?
        });
        Ok(id)
    }

    /// The leader has merged (or given up): followers no longer start this request's shards.
    pub async fn close_gate_request(&self, id: i64) -> anyhow::Result<()> {
        on_pool!(self, |p| sqlx::query("UPDATE gate_requests SET state = 'closed', closed_at = $1 WHERE id = $2")
            .bind(now_rfc3339())
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Every open request of a run closed: the run stopped, or resumes and asks again.
    pub async fn close_requests_of_run(&self, run_id: &str) -> anyhow::Result<()> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE gate_requests SET state = 'closed', closed_at = $1 WHERE run_id = $2 AND state = 'open'"
        )
        .bind(now_rfc3339())
        .bind(run_id)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The open requests of a run, oldest first.
    pub async fn open_gate_requests(&self, run_id: &str) -> anyhow::Result<Vec<GateRequestRow>> {
        let rows = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, run_id, patch_hash, partition_total, request, created_at FROM gate_requests
                 WHERE run_id = $1 AND state = 'open' ORDER BY id",
            )
            .bind(run_id)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    /// Every shard run started for a request (a shard taken over has two).
    pub async fn request_shards(&self, request: i64) -> anyhow::Result<Vec<RequestShard>> {
        let rows = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT partition_index, state, started_at, heartbeat_at FROM gate_shards WHERE request_id = $1
                 ORDER BY id",
            )
            .bind(request)
            .fetch_all(p)
            .await?
        });
        Ok(rows)
    }

    /// A shard's first round is recorded: its hashes and the cases it ran.
    pub async fn finish_shard(&self, id: i64, r: &GateReport) -> anyhow::Result<()> {
        let cases = r.cases_run();
        on_pool!(self, |p| sqlx::query(
            "UPDATE gate_shards SET state = 'done', baseline_hash = $1, candidate_hash = $2, cases = $3, trials = $4,
               finished_at = $5 WHERE id = $6",
        )
        .bind(&r.baseline_hash)
        .bind(&r.candidate_hash)
        .bind(serde_json::to_string(&cases)?)
        .bind((r.trials.baseline + r.trials.candidate) as i64)
        .bind(now_rfc3339())
        .bind(id)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// A shard whose work is trials only (a share of `run --partition`'s knob screening) is done.
    pub async fn finish_shard_trials(&self, id: i64, trials: u32) -> anyhow::Result<()> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE gate_shards SET state = 'done', trials = $1, finished_at = $2 WHERE id = $3"
        )
        .bind(trials as i64)
        .bind(now_rfc3339())
        .bind(id)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Every shard run of this patch on this harness.
    pub async fn shards_of(&self, harness: &str, patch_hash: &str) -> anyhow::Result<Vec<ShardRow>> {
        let rows: Vec<ShardDbRow> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT partition_index, partition_total, trials_k, target, state, baseline_hash, candidate_hash, cases,
               started_at FROM gate_shards WHERE harness = $1 AND patch_hash = $2 ORDER BY id",
        )
        .bind(harness)
        .bind(patch_hash)
        .fetch_all(p)
.await?
        });
        Ok(rows
            .into_iter()
            .map(|r| ShardRow {
                index: r.partition_index as u32,
                total: r.partition_total as u32,
                trials_k: r.trials_k as u32,
                target: r.target,
                state: r.state,
                baseline_hash: r.baseline_hash,
                candidate_hash: r.candidate_hash,
                cases: r.cases.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default(),
                started_at: r.started_at,
            })
            .collect())
    }
}

/// A `gate_shards` row, by column name.
#[derive(sqlx::FromRow)]
struct ShardDbRow {
    partition_index: i64,
    partition_total: i64,
    trials_k: i64,
    target: Option<String>,
    state: String,
    baseline_hash: Option<String>,
    candidate_hash: Option<String>,
    cases: Option<String>,
    started_at: String,
}

impl ShardLog for Store {
    fn shards<'a>(&'a self, harness: &'a str, patch_hash: &'a str) -> BoxFuture<'a, anyhow::Result<Vec<ShardRow>>> {
        Box::pin(self.shards_of(harness, patch_hash))
    }

    fn trials_of<'a>(&'a self, hashes: &'a [String]) -> BoxFuture<'a, anyhow::Result<Vec<TrialRecord>>> {
        Box::pin(self.trials_of_versions(hashes))
    }
}
