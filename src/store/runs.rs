//! Runs of the nightly loop and their proposals.

use super::{Store, in_transaction, now_rfc3339, on_pool};
use crate::evals::case::CaseStatus;
use crate::mine::state::ClusterState;
use crate::propose::Proposal;

crate::schema::text_enum! {
    /// A run is `running` until it finishes or stops on an error; only a running one is
    /// resumed.
    pub enum RunStatus ("run status") {
        Running = "running",
        Finished = "finished",
        Failed = "failed",
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredRun {
    pub id: String,
    pub harness: String,
    pub status: RunStatus,
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
    /// `targeted` with an accepted proposal (`fixed` once it is in the tree), else
    /// `observed`.
    pub cluster_state: ClusterState,
    /// Suite changes: (case id, status, reason).
    pub case_events: Vec<(String, CaseStatus, String)>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
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
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO runs (id, harness, status, options, started_at, updated_at) VALUES ($1, $2, 'running', $3, $4, $5)",
        )
        .bind(id)
        .bind(harness)
        .bind(options)
        .bind(&now)
        .bind(&now)
        .execute(p).await?.rows_affected()
        });
        Ok(())
    }

    /// The newest run of `harness` (any status), or the newest one still running.
    pub async fn latest_run(&self, harness: &str, running_only: bool) -> anyhow::Result<Option<StoredRun>> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT id, harness, status, iteration, spent_usd, summary, options FROM runs
             WHERE harness = $1 AND (NOT $2 OR status = 'running') ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(harness)
        .bind(running_only)
        .fetch_optional(p)
        .await?))
    }

    pub async fn run_by_id(&self, id: &str) -> anyhow::Result<Option<StoredRun>> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT id, harness, status, iteration, spent_usd, summary, options FROM runs WHERE id = $1"
        )
        .bind(id)
        .fetch_optional(p)
        .await?))
    }

    /// A run that stopped on an error: `failed`, with the error kept as its summary, so it
    /// is neither shown as running nor resumed as if it could go on.
    pub async fn mark_run_failed(&self, id: &str, error: &str) -> anyhow::Result<()> {
        let summary = serde_json::json!({ "error": error }).to_string();
        on_pool!(self, |p| sqlx::query(
            "UPDATE runs SET status = 'failed', summary = $1, updated_at = $2 WHERE id = $3 AND status = 'running'",
        )
        .bind(summary)
        .bind(now_rfc3339())
        .bind(id)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The run's iteration count and status. What it spent is not written here: trials
    /// and proposals add their cost when they are recorded (`record_trial_for`,
    /// `insert_proposal`), so a crash never loses a cost already paid.
    pub async fn update_run(
        &self,
        id: &str,
        iteration: i64,
        status: RunStatus,
        summary: Option<&str>,
    ) -> anyhow::Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
            "UPDATE runs SET iteration = $1, status = $2, summary = COALESCE($3, summary), updated_at = $4 WHERE id = $5",
        )
        .bind(iteration)
        .bind(status.as_str())
        .bind(summary)
        .bind(now_rfc3339())
        .bind(id)
        .execute(p).await?.rows_affected()
        });
        Ok(())
    }

    /// What a run has spent so far (trials that ended, proposals recorded).
    pub async fn run_spent(&self, id: &str) -> anyhow::Result<f64> {
        let spent: Option<f64> = on_pool!(self, |p| sqlx::query_scalar("SELECT spent_usd FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(p)
            .await?);
        Ok(spent.unwrap_or(0.0))
    }

    /// Close an iteration: the accepted proposal, the cluster's state, the suite changes
    /// and the iteration count, all or nothing.
    pub async fn close_iteration(&self, end: &IterationEnd<'_>) -> anyhow::Result<()> {
        let now = now_rfc3339();
        in_transaction!(self, |tx, crate::store::trials as t| {
        if let Some(pid) = end.accepted {
            sqlx::query("UPDATE proposals SET accepted = TRUE WHERE id = $1").bind(pid).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE clusters SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(end.cluster_state.as_str())
            .bind(&now)
            .bind(end.cluster)
            .execute(&mut *tx)
            .await?;
        for (case_id, status, reason) in &end.case_events {
            t::case_event_in(&mut tx, case_id, *status, reason, &now).await?;
        }
        sqlx::query("UPDATE runs SET iteration = $1, updated_at = $2 WHERE id = $3")
            .bind(end.iteration)
            .bind(&now)
            .bind(end.run_id)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// A resumed run redoes the iteration a crash interrupted: the verdicts its proposals
    /// got are cleared, so that the redo sees what the iteration saw when it began (a
    /// proposal gated then is gated again, from cached trials, rather than skipped as
    /// already tried; the interrupted iteration does not count as a failed attempt).
    /// The proposals themselves, and what they cost, stay recorded.
    pub async fn reopen_iterations_after(&self, run_id: &str, finished: i64) -> anyhow::Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
            "UPDATE proposals SET verdict = NULL, rule = NULL, gate_id = NULL, accepted = FALSE, prediction_score = NULL
             WHERE run_id = $1 AND iteration > $2",
        )
        .bind(run_id)
        .bind(finished)
        .execute(p).await?.rows_affected()
        });
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
        let id: i64 = in_transaction!(self, |tx| {
            let inserted = sqlx::query(
            "INSERT INTO proposals (run_id, iteration, cluster_id, provider, description, diff, diff_hash, prediction, prompt,
               answer, tokens_in, tokens_out, cost_usd, error, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
             ON CONFLICT (run_id, iteration, diff_hash) DO NOTHING",
        )
        .bind(run)
        .bind(iteration)
        .bind(cluster)
        .bind(&p.provider)
        .bind(super::text(&p.description))
        .bind(super::text(&p.diff))
        .bind(p.diff_hash())
        .bind(serde_json::json!({"fixes": p.fixes, "risks": p.risks}).to_string())
        .bind(super::text_opt(p.prompt.as_deref()))
        .bind(super::text_opt(p.answer.as_deref()))
        .bind(p.tokens_in.map(|t| t as i64))
        .bind(p.tokens_out.map(|t| t as i64))
        .bind(p.cost_usd)
        .bind(super::text_opt(p.error.as_deref()))
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await?
        .rows_affected();
            if inserted > 0 && p.cost_usd > 0.0 {
                sqlx::query("UPDATE runs SET spent_usd = spent_usd + $1 WHERE id = $2")
                    .bind(p.cost_usd)
                    .bind(run)
                    .execute(&mut *tx)
                    .await?;
            }
            let id: i64 =
                sqlx::query_scalar("SELECT id FROM proposals WHERE run_id = $1 AND iteration = $2 AND diff_hash = $3")
                    .bind(run)
                    .bind(iteration)
                    .bind(p.diff_hash())
                    .fetch_one(&mut *tx)
                    .await?;
            id
        });
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
        on_pool!(self, |p| sqlx::query(
            "UPDATE proposals SET verdict = $1, rule = $2, gate_id = $3, accepted = $4 WHERE id = $5"
        )
        .bind(verdict)
        .bind(rule)
        .bind(gate_id)
        .bind(accepted)
        .bind(id)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn proposals_of_run(&self, run: &str) -> anyhow::Result<Vec<StoredProposal>> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT id, iteration, cluster_id, description, diff, verdict, rule, accepted, cost_usd FROM proposals
             WHERE run_id = $1 ORDER BY id",
        )
        .bind(run)
        .fetch_all(p)
        .await?))
    }

    /// The proposals an iteration recorded, as they were asked for (a resumed run gates
    /// these again instead of asking a model anew: it need not answer the same twice, and
    /// they were paid for).
    pub async fn recorded_proposals(&self, run: &str, iteration: i64, cluster: &str) -> anyhow::Result<Vec<Proposal>> {
        let rows: Vec<ProposalRow> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT provider, description, diff, COALESCE(prediction, '{}') AS prediction, prompt, answer, tokens_in,
               tokens_out, cost_usd, error FROM proposals WHERE run_id = $1 AND iteration = $2 AND cluster_id = $3 ORDER BY id",
        )
        .bind(run)
        .bind(iteration)
        .bind(cluster)
        .fetch_all(p)
.await?
        });
        rows.into_iter().map(ProposalRow::into_proposal).collect()
    }

    /// Diffs already gated for a cluster (any run), so a search never gates one twice.
    pub async fn gated_diffs(&self, cluster: &str) -> anyhow::Result<Vec<(String, String)>> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT diff_hash, COALESCE(rule, '') AS rule FROM proposals WHERE cluster_id = $1 AND verdict IS NOT NULL",
        )
        .bind(cluster)
        .fetch_all(p)
        .await?))
    }

    pub async fn set_prediction_score(&self, id: i64, score: &str) -> anyhow::Result<()> {
        on_pool!(self, |p| sqlx::query("UPDATE proposals SET prediction_score = $1 WHERE id = $2")
            .bind(score)
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Earlier rejected proposals for a cluster: (description, rule, the gate's reason).
    pub async fn rejected_proposals(&self, cluster: &str) -> anyhow::Result<Vec<(String, String, String)>> {
        Ok(on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT p.description, COALESCE(p.rule, '') AS rule, COALESCE(g.reason, p.error, '') AS reason FROM proposals p
             LEFT JOIN gates g ON g.id = p.gate_id
             WHERE p.cluster_id = $1 AND p.verdict IS NOT NULL AND NOT p.accepted AND p.diff != '' ORDER BY p.id DESC LIMIT 10",
        )
        .bind(cluster)
        .fetch_all(p)
.await?
        }))
    }

    /// Iterations (any run) that gated a proposal for a cluster and accepted nothing.
    /// Proposals that never reached a verdict (a provider error, an answer that did not
    /// parse, a patch that did not apply) say nothing about the cluster and do not count.
    pub async fn failed_attempts(&self, cluster: &str) -> anyhow::Result<i64> {
        let n: i64 = on_pool!(self, |p| {
            sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT run_id, iteration FROM proposals WHERE cluster_id = $1
               AND verdict IN ('pass', 'fail') GROUP BY run_id, iteration HAVING SUM(CASE WHEN accepted THEN 1 ELSE 0 END) = 0) AS attempts",
        )
        .bind(cluster)
        .fetch_one(p)
.await?
        });
        Ok(n)
    }

    /// The newest run that accepted a fix for this cluster without applying it to the tree.
    pub async fn unapplied_fix(&self, cluster: &str) -> anyhow::Result<Option<String>> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT p.run_id FROM proposals p JOIN clusters c ON c.id = p.cluster_id
             WHERE p.cluster_id = $1 AND p.accepted AND c.state != 'fixed' ORDER BY p.id DESC LIMIT 1",
        )
        .bind(cluster)
        .fetch_optional(p)
        .await?))
    }

    pub async fn set_cluster_state(&self, id: &str, state: ClusterState) -> anyhow::Result<()> {
        on_pool!(self, |p| sqlx::query("UPDATE clusters SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(state.as_str())
            .bind(now_rfc3339())
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
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

/// A proposal as it was asked for, by column name (`recorded_proposals`).
#[derive(sqlx::FromRow)]
struct ProposalRow {
    provider: String,
    description: String,
    diff: String,
    prediction: String,
    prompt: Option<String>,
    answer: Option<String>,
    tokens_in: Option<i64>,
    tokens_out: Option<i64>,
    cost_usd: f64,
    error: Option<String>,
}

impl ProposalRow {
    fn into_proposal(self) -> anyhow::Result<Proposal> {
        #[derive(serde::Deserialize)]
        struct Prediction {
            #[serde(default)]
            fixes: Vec<String>,
            #[serde(default)]
            risks: Vec<String>,
        }
        let prediction: Prediction = serde_json::from_str(&self.prediction).map_err(|e| {
            anyhow::anyhow!("the store's proposal '{}' has a corrupt `prediction` column: {e}", self.description)
        })?;
        Ok(Proposal {
            provider: self.provider,
            description: self.description,
            diff: self.diff,
            fixes: prediction.fixes,
            risks: prediction.risks,
            prompt: self.prompt,
            answer: self.answer,
            tokens_in: self.tokens_in.map(|t| t as u64),
            tokens_out: self.tokens_out.map(|t| t as u64),
            cost_usd: self.cost_usd,
            error: self.error,
        })
    }
}
