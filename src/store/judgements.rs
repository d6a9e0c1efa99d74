//! The judgement cache of `mine --judge`, keyed by (failure content hash, taxonomy, model).

use std::collections::HashMap;

use super::{Store, now_rfc3339, on_pool};
use crate::mine::judge::{Judged, Judgement, Outcome};

/// The key a judgement is cached under.
pub struct JudgementKey<'a> {
    pub content_hash: &'a str,
    pub taxonomy: &'a str,
    pub model: &'a str,
}

/// A `judgements` row, by column name.
#[derive(sqlx::FromRow)]
struct JudgementRow {
    status: String,
    category: Option<String>,
    step_id: Option<String>,
    quote: Option<String>,
    reason: Option<String>,
}

impl Store {
    /// The cached outcome for this key, if any.
    pub async fn judgement(&self, k: &JudgementKey<'_>) -> anyhow::Result<Option<Outcome>> {
        let row: Option<JudgementRow> = on_pool!(self, |p| sqlx::query_as(
            "SELECT status, category, step_id, quote, reason FROM judgements
               WHERE content_hash = $1 AND taxonomy = $2 AND model = $3",
        )
        .bind(k.content_hash)
        .bind(k.taxonomy)
        .bind(k.model)
        .fetch_optional(p)
        .await?);
        Ok(row.map(|r| {
            let text = |c: Option<String>| c.unwrap_or_default();
            if r.status == "accepted" {
                Outcome::Accepted(Judgement { category: text(r.category), step: text(r.step_id), quote: text(r.quote) })
            } else {
                Outcome::Rejected(text(r.reason))
            }
        }))
    }

    /// Record a judgement with what it cost (a re-judgement under the same key replaces it).
    pub async fn put_judgement(&self, k: &JudgementKey<'_>, j: &Judged) -> anyhow::Result<()> {
        let (status, accepted, reason) = match &j.outcome {
            Outcome::Accepted(a) => ("accepted", Some(a), None),
            Outcome::Rejected(why) => ("rejected", None, Some(why.as_str())),
        };
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO judgements (content_hash, taxonomy, model, status, category, step_id, quote,
               reason, requests, tokens, cost_usd, judged_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (content_hash, taxonomy, model) DO UPDATE SET status = excluded.status,
               category = excluded.category, step_id = excluded.step_id, quote = excluded.quote,
               reason = excluded.reason, requests = excluded.requests, tokens = excluded.tokens,
               cost_usd = excluded.cost_usd, judged_at = excluded.judged_at",
        )
        .bind(k.content_hash)
        .bind(k.taxonomy)
        .bind(k.model)
        .bind(status)
        .bind(super::text_opt(accepted.map(|a| a.category.as_str())))
        .bind(super::text_opt(accepted.map(|a| a.step.as_str())))
        .bind(super::text_opt(accepted.map(|a| a.quote.as_str())))
        .bind(super::text_opt(reason))
        .bind(j.requests as i64)
        .bind(j.tokens as i64)
        .bind(j.cost_usd)
        .bind(now_rfc3339())
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }
}

impl Store {
    /// Record the step ids of stored failures (by failure id), for [`Store::failure_step_ids`].
    pub async fn put_failure_step_ids(&self, rows: &[(i64, &[String])]) -> anyhow::Result<()> {
        let sql = "INSERT INTO failure_steps (failure_id, step_ids) VALUES ($1, $2)
                   ON CONFLICT (failure_id) DO UPDATE SET step_ids = excluded.step_ids";
        super::in_transaction!(self, |tx| {
            for (id, steps) in rows {
                sqlx::query(sql).bind(id).bind(serde_json::to_string(steps)?).execute(&mut *tx).await?;
            }
        });
        Ok(())
    }

    /// The step ids recorded for each stored failure that has them.
    pub async fn failure_step_ids(&self) -> anyhow::Result<HashMap<i64, Vec<String>>> {
        let sql = "SELECT failure_id, step_ids FROM failure_steps";
        let rows: Vec<(i64, String)> = on_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await?);
        rows.into_iter()
            .map(|(id, steps)| {
                let steps = serde_json::from_str(&steps)
                    .map_err(|e| anyhow::anyhow!("failure_steps row {id}: step_ids is not a JSON list: {e}"))?;
                Ok((id, steps))
            })
            .collect()
    }

    /// Files holding a trace whose outcome is unknown: with a rubric, `mine --judge` reads
    /// them again so their traces are judged (answers come from the cache when judged before).
    pub async fn files_with_unknown_outcome(&self) -> anyhow::Result<Vec<String>> {
        let sql =
            "SELECT DISTINCT f.path FROM trace_files f JOIN traces t ON t.file_id = f.id WHERE t.outcome = 'unknown'";
        Ok(on_pool!(self, |p| sqlx::query_scalar(sql).fetch_all(p).await?))
    }
}
