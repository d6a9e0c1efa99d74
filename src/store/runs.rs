//! Runs of the nightly loop and their proposals.

use sqlx::Row;

use super::{Store, now_rfc3339};
use crate::propose::Proposal;

#[derive(Debug, Clone)]
pub struct StoredRun {
    pub id: String,
    pub harness: String,
    pub status: String,
    pub iteration: i64,
    pub spent_usd: f64,
    pub summary: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoredProposal {
    pub id: i64,
    pub iteration: i64,
    pub cluster_id: String,
    pub description: String,
    pub diff: String,
    pub verdict: Option<String>,
    pub rule: Option<String>,
    pub accepted: bool,
    pub cost_usd: f64,
}

impl Store {
    pub async fn create_run(&self, id: &str, harness: &str, options: &str) -> anyhow::Result<()> {
        let now = now_rfc3339();
        sqlx::query(
            "INSERT INTO runs (id, harness, status, options, started_at, updated_at) VALUES (?, ?, 'running', ?, ?, ?)",
        )
        .bind(id)
        .bind(harness)
        .bind(options)
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest run of `harness` (any status), or the newest one still running.
    pub async fn latest_run(&self, harness: &str, running_only: bool) -> anyhow::Result<Option<StoredRun>> {
        let row = sqlx::query(
            "SELECT id, harness, status, iteration, spent_usd, summary FROM runs
             WHERE harness = ? AND (? = 0 OR status = 'running') ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(harness)
        .bind(running_only)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| run_row(&r)))
    }

    pub async fn run_by_id(&self, id: &str) -> anyhow::Result<Option<StoredRun>> {
        let row = sqlx::query("SELECT id, harness, status, iteration, spent_usd, summary FROM runs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| run_row(&r)))
    }

    /// A run that stopped on an error: `failed`, with the error kept as its summary, so it
    /// is neither shown as running nor resumed as if it could go on.
    pub async fn mark_run_failed(&self, id: &str, error: &str) -> anyhow::Result<()> {
        let summary = serde_json::json!({ "error": error }).to_string();
        sqlx::query(
            "UPDATE runs SET status = 'failed', summary = ?, updated_at = ? WHERE id = ? AND status = 'running'",
        )
        .bind(summary)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn update_run(
        &self,
        id: &str,
        iteration: i64,
        spent_usd: f64,
        status: &str,
        summary: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE runs SET iteration = ?, spent_usd = ?, status = ?, summary = COALESCE(?, summary), updated_at = ? WHERE id = ?")
            .bind(iteration)
            .bind(spent_usd)
            .bind(status)
            .bind(summary)
            .bind(now_rfc3339())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Record a proposal before it is gated; the same diff in the same iteration is one row.
    pub async fn insert_proposal(&self, run: &str, iteration: i64, cluster: &str, p: &Proposal) -> anyhow::Result<i64> {
        sqlx::query(
            "INSERT INTO proposals (run_id, iteration, cluster_id, provider, description, diff, diff_hash, prediction, prompt,
               answer, tokens_in, tokens_out, cost_usd, error, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (run_id, iteration, diff_hash) DO NOTHING",
        )
        .bind(run)
        .bind(iteration)
        .bind(cluster)
        .bind(&p.provider)
        .bind(&p.description)
        .bind(&p.diff)
        .bind(p.diff_hash())
        .bind(serde_json::json!({"fixes": p.fixes, "risks": p.risks}).to_string())
        .bind(&p.prompt)
        .bind(&p.answer)
        .bind(p.tokens_in.map(|t| t as i64))
        .bind(p.tokens_out.map(|t| t as i64))
        .bind(p.cost_usd)
        .bind(&p.error)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        let id: i64 = sqlx::query("SELECT id FROM proposals WHERE run_id = ? AND iteration = ? AND diff_hash = ?")
            .bind(run)
            .bind(iteration)
            .bind(p.diff_hash())
            .fetch_one(&self.pool)
            .await?
            .get(0);
        Ok(id)
    }

    pub async fn set_proposal_verdict(
        &self,
        id: i64,
        verdict: &str,
        rule: &str,
        gate_id: Option<i64>,
        accepted: bool,
    ) -> anyhow::Result<()> {
        sqlx::query("UPDATE proposals SET verdict = ?, rule = ?, gate_id = ?, accepted = ? WHERE id = ?")
            .bind(verdict)
            .bind(rule)
            .bind(gate_id)
            .bind(accepted)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn proposals_of_run(&self, run: &str) -> anyhow::Result<Vec<StoredProposal>> {
        let rows = sqlx::query(
            "SELECT id, iteration, cluster_id, description, diff, verdict, rule, accepted, cost_usd FROM proposals
             WHERE run_id = ? ORDER BY id",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(proposal_row).collect())
    }

    /// Diffs already gated for a cluster (any run), so a search never gates one twice.
    pub async fn gated_diffs(&self, cluster: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT diff_hash, COALESCE(rule, '') FROM proposals WHERE cluster_id = ? AND verdict IS NOT NULL",
        )
        .bind(cluster)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    pub async fn set_prediction_score(&self, id: i64, score: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE proposals SET prediction_score = ? WHERE id = ?")
            .bind(score)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Earlier rejected proposals for a cluster: (description, rule, the gate's reason).
    pub async fn rejected_proposals(&self, cluster: &str) -> anyhow::Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT p.description, COALESCE(p.rule, ''), COALESCE(g.reason, p.error, '') FROM proposals p
             LEFT JOIN gates g ON g.id = p.gate_id
             WHERE p.cluster_id = ? AND p.verdict IS NOT NULL AND p.accepted = 0 AND p.diff != '' ORDER BY p.id DESC LIMIT 10",
        )
        .bind(cluster)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    /// Iterations (any run) that targeted a cluster and accepted nothing.
    pub async fn failed_attempts(&self, cluster: &str) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT run_id, iteration FROM proposals WHERE cluster_id = ? AND verdict IS NOT NULL
               GROUP BY run_id, iteration HAVING MAX(accepted) = 0)",
        )
        .bind(cluster)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        Ok(n)
    }

    pub async fn set_cluster_state(&self, id: &str, state: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE clusters SET state = ?, updated_at = ? WHERE id = ?")
            .bind(state)
            .bind(now_rfc3339())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn run_row(r: &sqlx::sqlite::SqliteRow) -> StoredRun {
    StoredRun {
        id: r.get(0),
        harness: r.get(1),
        status: r.get(2),
        iteration: r.get(3),
        spent_usd: r.get(4),
        summary: r.get(5),
    }
}

fn proposal_row(r: &sqlx::sqlite::SqliteRow) -> StoredProposal {
    StoredProposal {
        id: r.get(0),
        iteration: r.get(1),
        cluster_id: r.get(2),
        description: r.get(3),
        diff: r.get(4),
        verdict: r.get(5),
        rule: r.get(6),
        accepted: r.get(7),
        cost_usd: r.get(8),
    }
}
