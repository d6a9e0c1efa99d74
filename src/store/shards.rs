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
}

impl Store {
    /// A shard starts: until [`Store::finish_shard`], a merge reads it as failed or running.
    pub async fn start_shard(&self, s: &ShardStart<'_>) -> anyhow::Result<i64> {
        let id: i64 = on_pool!(self, |p| {
            sqlx::query_scalar(
            "INSERT INTO gate_shards (harness, patch_hash, partition_index, partition_total, trials_k, target, state,
               started_at) VALUES ($1, $2, $3, $4, $5, $6, 'running', $7) RETURNING id",
        )
        .bind(s.harness)
        .bind(s.patch_hash)
        .bind(s.partition.index as i64)
        .bind(s.partition.total as i64)
        .bind(s.trials_k as i64)
        .bind(s.target)
        .bind(now_rfc3339())
        .fetch_one(p)
.await?
        });
        Ok(id)
    }

    /// A shard's first round is recorded: its hashes and the cases it ran.
    pub async fn finish_shard(&self, id: i64, r: &GateReport) -> anyhow::Result<()> {
        let cases: Vec<&str> = r.cases.iter().map(|c| c.id.as_str()).collect();
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
