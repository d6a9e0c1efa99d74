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
    /// JSON of the `RunOptions` it started with (a resume continues with them).
    pub options: String,
}

/// How an iteration of a run ended, written in one transaction: a crash leaves either
/// the iteration open (a resume redoes it) or closed with everything it decided.
#[derive(Debug, Clone)]
pub struct IterationEnd<'a> {
    pub run_id: &'a str,
    pub iteration: i64,
    pub cluster: &'a str,
    /// The accepted proposal, if any.
    pub accepted: Option<i64>,
    /// `fixed` with an accepted proposal, else `observed`.
    pub cluster_state: &'a str,
    /// Suite changes: (case id, status, reason).
    pub case_events: Vec<(String, String, String)>,
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
            "SELECT id, harness, status, iteration, spent_usd, summary, options FROM runs
             WHERE harness = ? AND (? = 0 OR status = 'running') ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(harness)
        .bind(running_only)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| run_row(&r)))
    }

    pub async fn run_by_id(&self, id: &str) -> anyhow::Result<Option<StoredRun>> {
        let row =
            sqlx::query("SELECT id, harness, status, iteration, spent_usd, summary, options FROM runs WHERE id = ?")
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

    /// The run's iteration count and status. What it spent is not written here: trials
    /// and proposals add their cost when they are recorded (`record_trial_for`,
    /// `insert_proposal`), so a crash never loses a cost already paid.
    pub async fn update_run(
        &self,
        id: &str,
        iteration: i64,
        status: &str,
        summary: Option<&str>,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE runs SET iteration = ?, status = ?, summary = COALESCE(?, summary), updated_at = ? WHERE id = ?",
        )
        .bind(iteration)
        .bind(status)
        .bind(summary)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What a run has spent so far (trials that ended, proposals recorded).
    pub async fn run_spent(&self, id: &str) -> anyhow::Result<f64> {
        let spent: Option<f64> =
            sqlx::query_scalar("SELECT spent_usd FROM runs WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        Ok(spent.unwrap_or(0.0))
    }

    /// Close an iteration: the accepted proposal, the cluster's state, the suite changes
    /// and the iteration count, all or nothing.
    pub async fn close_iteration(&self, end: &IterationEnd<'_>) -> anyhow::Result<()> {
        let now = now_rfc3339();
        let mut tx = self.pool.begin().await?;
        if let Some(pid) = end.accepted {
            sqlx::query("UPDATE proposals SET accepted = 1 WHERE id = ?").bind(pid).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE clusters SET state = ?, updated_at = ? WHERE id = ?")
            .bind(end.cluster_state)
            .bind(&now)
            .bind(end.cluster)
            .execute(&mut *tx)
            .await?;
        for (case_id, status, reason) in &end.case_events {
            super::trials::case_event_in(&mut tx, case_id, status, reason, &now).await?;
        }
        sqlx::query("UPDATE runs SET iteration = ?, updated_at = ? WHERE id = ?")
            .bind(end.iteration)
            .bind(&now)
            .bind(end.run_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A resumed run redoes the iteration a crash interrupted: the verdicts its proposals
    /// got are cleared, so that the redo sees what the iteration saw when it began (a
    /// proposal gated then is gated again, from cached trials, rather than skipped as
    /// already tried; the interrupted iteration does not count as a failed attempt).
    /// The proposals themselves, and what they cost, stay recorded.
    pub async fn reopen_iterations_after(&self, run_id: &str, finished: i64) -> anyhow::Result<()> {
        sqlx::query(
            "UPDATE proposals SET verdict = NULL, rule = NULL, gate_id = NULL, accepted = 0, prediction_score = NULL
             WHERE run_id = ? AND iteration > ?",
        )
        .bind(run_id)
        .bind(finished)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Record a proposal before it is gated; the same diff in the same iteration is one row.
    /// Its cost (the model's answer) is added to the run's spend when the row is new.
    pub async fn insert_proposal(&self, run: &str, iteration: i64, cluster: &str, p: &Proposal) -> anyhow::Result<i64> {
        // The prompt quotes cases and trial output, the answer may quote them back: both
        // scrubbed like everything else from traces and trials. The diff is kept as the
        // model wrote it (it is what is gated and applied); its identity is taken after
        // redaction, so a resumed run's recorded proposal is the same row.
        let p = &redacted_proposal(p);
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
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
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted > 0 && p.cost_usd > 0.0 {
            sqlx::query("UPDATE runs SET spent_usd = spent_usd + ? WHERE id = ?")
                .bind(p.cost_usd)
                .bind(run)
                .execute(&mut *tx)
                .await?;
        }
        let id: i64 = sqlx::query("SELECT id FROM proposals WHERE run_id = ? AND iteration = ? AND diff_hash = ?")
            .bind(run)
            .bind(iteration)
            .bind(p.diff_hash())
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        tx.commit().await?;
        crate::crash::point("proposal_recorded");
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

    /// The proposals an iteration recorded, as they were asked for (a resumed run gates
    /// these again instead of asking a model anew: it need not answer the same twice, and
    /// they were paid for).
    pub async fn recorded_proposals(&self, run: &str, iteration: i64, cluster: &str) -> anyhow::Result<Vec<Proposal>> {
        let rows = sqlx::query(
            "SELECT provider, description, diff, COALESCE(prediction, '{}'), prompt, answer, tokens_in, tokens_out,
               cost_usd, error FROM proposals WHERE run_id = ? AND iteration = ? AND cluster_id = ? ORDER BY id",
        )
        .bind(run)
        .bind(iteration)
        .bind(cluster)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let prediction: serde_json::Value = serde_json::from_str(r.get::<&str, _>(3)).unwrap_or_default();
                let list = |key: &str| -> Vec<String> {
                    prediction[key]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                        .unwrap_or_default()
                };
                Proposal {
                    provider: r.get(0),
                    description: r.get(1),
                    diff: r.get(2),
                    fixes: list("fixes"),
                    risks: list("risks"),
                    prompt: r.get(4),
                    answer: r.get(5),
                    tokens_in: r.get::<Option<i64>, _>(6).map(|t| t as u64),
                    tokens_out: r.get::<Option<i64>, _>(7).map(|t| t as u64),
                    cost_usd: r.get(8),
                    error: r.get(9),
                }
            })
            .collect())
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

    /// Iterations (any run) that gated a proposal for a cluster and accepted nothing.
    /// Proposals that never reached a verdict (a provider error, an answer that did not
    /// parse, a patch that did not apply) say nothing about the cluster and do not count.
    pub async fn failed_attempts(&self, cluster: &str) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT run_id, iteration FROM proposals WHERE cluster_id = ?
               AND verdict IN ('pass', 'fail') GROUP BY run_id, iteration HAVING MAX(accepted) = 0)",
        )
        .bind(cluster)
        .fetch_one(&self.pool)
        .await?
        .get(0);
        Ok(n)
    }

    /// The newest run that accepted a fix for this cluster without applying it to the tree.
    pub async fn unapplied_fix(&self, cluster: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query(
            "SELECT p.run_id FROM proposals p JOIN clusters c ON c.id = p.cluster_id
             WHERE p.cluster_id = ? AND p.accepted = 1 AND c.state != 'fixed' ORDER BY p.id DESC LIMIT 1",
        )
        .bind(cluster)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get(0)))
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
        options: r.get(6),
    }
}

fn redacted_proposal(p: &Proposal) -> Proposal {
    let r = crate::redact::global();
    let mut p = p.clone();
    let mut counts = crate::redact::Redactions::default();
    for s in
        [&mut p.description].into_iter().chain(p.prompt.iter_mut()).chain(p.answer.iter_mut()).chain(p.error.iter_mut())
    {
        r.string(s, &mut counts);
    }
    p
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
