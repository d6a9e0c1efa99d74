//! The judgement cache of `mine --judge`, keyed by (failure content hash, taxonomy, model).

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, now_rfc3339};
use crate::mine::judge::{Judged, Judgement, Outcome};

/// The key a judgement is cached under.
pub struct JudgementKey<'a> {
    pub content_hash: &'a str,
    pub taxonomy: &'a str,
    pub model: &'a str,
}

impl Store {
    /// The cached outcome for this key, if any.
    pub async fn judgement(&self, k: &JudgementKey<'_>) -> anyhow::Result<Option<Outcome>> {
        let row = sqlx::query(
            "SELECT status, category, step_id, quote, reason FROM judgements
               WHERE content_hash = ? AND taxonomy = ? AND model = ?",
        )
        .bind(k.content_hash)
        .bind(k.taxonomy)
        .bind(k.model)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            let text = |c: &str| r.get::<Option<String>, _>(c).unwrap_or_default();
            if r.get::<String, _>("status") == "accepted" {
                Outcome::Accepted(Judgement { category: text("category"), step: text("step_id"), quote: text("quote") })
            } else {
                Outcome::Rejected(text("reason"))
            }
        }))
    }

    /// Record a judgement with what it cost (a re-judgement under the same key replaces it).
    pub async fn put_judgement(&self, k: &JudgementKey<'_>, j: &Judged) -> anyhow::Result<()> {
        let (status, accepted, reason) = match &j.outcome {
            Outcome::Accepted(a) => ("accepted", Some(a), None),
            Outcome::Rejected(why) => ("rejected", None, Some(why.as_str())),
        };
        sqlx::query(
            "INSERT OR REPLACE INTO judgements (content_hash, taxonomy, model, status, category, step_id, quote,
               reason, requests, tokens, cost_usd, judged_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(k.content_hash)
        .bind(k.taxonomy)
        .bind(k.model)
        .bind(status)
        .bind(accepted.map(|a| a.category.as_str()))
        .bind(accepted.map(|a| a.step.as_str()))
        .bind(accepted.map(|a| a.quote.as_str()))
        .bind(reason)
        .bind(j.requests as i64)
        .bind(j.tokens as i64)
        .bind(j.cost_usd)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Record the step ids of stored failures (by failure id), for [`Store::failure_step_ids`].
    pub async fn put_failure_step_ids(&self, rows: &[(i64, &[String])]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        for (id, steps) in rows {
            sqlx::query(
                "INSERT INTO failure_steps (failure_id, step_ids) VALUES ($1, $2)
                   ON CONFLICT (failure_id) DO UPDATE SET step_ids = excluded.step_ids",
            )
            .bind(id)
            .bind(serde_json::to_string(steps)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The step ids recorded for each stored failure that has them.
    pub async fn failure_step_ids(&self) -> anyhow::Result<HashMap<i64, Vec<String>>> {
        let rows = sqlx::query("SELECT failure_id, step_ids FROM failure_steps").fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.get("failure_id");
                let steps: String = r.get("step_ids");
                let steps = serde_json::from_str(&steps)
                    .map_err(|e| anyhow::anyhow!("failure_steps row {id}: step_ids is not a JSON list: {e}"))?;
                Ok((id, steps))
            })
            .collect()
    }

    /// Files holding a trace whose outcome is unknown: with a rubric, `mine --judge` reads
    /// them again so their traces are judged (answers come from the cache when judged before).
    pub async fn files_with_unknown_outcome(&self) -> anyhow::Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT f.path FROM trace_files f JOIN traces t ON t.file_id = f.id WHERE t.outcome = 'unknown'",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
