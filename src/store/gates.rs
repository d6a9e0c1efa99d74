//! Gate decisions, each with its full report.

use super::{Store, now_rfc3339, on_pool};
use crate::gate::session::GateReport;

impl Store {
    /// Record a gate's decision; returns its id.
    pub async fn record_gate(&self, r: &GateReport, patch_hash: &str) -> anyhow::Result<i64> {
        let id = on_pool!(self, |p| {
            sqlx::query_scalar(
            "INSERT INTO gates (harness, baseline_hash, candidate_hash, patch_hash, target, verdict, rule, reason, trials,
               cost_usd, report, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(&r.harness)
        .bind(&r.baseline_hash)
        .bind(&r.candidate_hash)
        .bind(patch_hash)
        .bind(&r.target)
        .bind(r.verdict)
        .bind(&r.rule)
        .bind(super::text(&r.reason))
        .bind((r.trials.baseline + r.trials.candidate) as i64)
        .bind(r.cost.total_usd)
        .bind(serde_json::to_string(r)?)
        .bind(now_rfc3339())
        .fetch_one(p)
.await?
        });
        Ok(id)
    }

    /// The newest `limit` gate reports of `harness`, newest first: (gate id, report JSON).
    pub async fn gate_reports(&self, harness: &str, limit: i64) -> anyhow::Result<Vec<(i64, String)>> {
        let sql = "SELECT id, report FROM gates WHERE harness = $1 ORDER BY id DESC LIMIT $2";
        let rows: Vec<(i64, String)> =
            on_pool!(self, |p| sqlx::query_as(sql).bind(harness).bind(limit).fetch_all(p).await?);
        Ok(rows)
    }
}
