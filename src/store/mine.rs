//! Failures, clusters and cases.

use serde::Serialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::{Store, now_rfc3339};
use crate::mine::cluster::Cluster;
use crate::mine::failure::{CaseSeed, Failure};
use crate::mine::signature::Signature;
use crate::store::traces::{FileRow, ROWS_PER_STATEMENT, record_files_in};
use crate::trace::FileReport;
use crate::trace::json::format_time;
use crate::trace::scan::TraceSummary;

/// A failure as stored, with its cluster.
#[derive(Debug, Clone, Serialize)]
pub struct StoredFailure {
    pub id: i64,
    pub path: String,
    pub cluster_id: Option<String>,
    pub failure: Failure,
    pub seen_at: Option<String>,
}

/// A cluster row with its label and state.
#[derive(Debug, Clone, Serialize)]
pub struct StoredCluster {
    pub cluster: Cluster,
    pub label: String,
    pub kind: String,
    pub state: String,
    pub summary: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredCase {
    pub id: String,
    pub cluster_id: String,
    pub harness: String,
    pub split: String,
    pub status: String,
    pub path: String,
    pub content_hash: String,
}

/// One scanned file as `mine` stores it: the file and its traces, and, when its content
/// changed since it was last mined, its failures.
pub struct MinedFile<'a> {
    pub key: &'a str,
    pub mtime_ns: Option<i64>,
    pub report: &'a FileReport,
    pub traces: &'a [TraceSummary],
    pub failures: Option<&'a [Failure]>,
}

impl Store {
    /// Store a whole scan in one transaction: a crash leaves the store as it was before the
    /// mine, and a thousand files cost one commit instead of three each (measured: this
    /// halved `mine` over ../shared/datasets).
    pub async fn record_mined(&self, files: &[MinedFile<'_>]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<FileRow<'_>> = files
            .iter()
            .map(|f| FileRow { key: f.key, mtime_ns: f.mtime_ns, report: f.report, traces: f.traces })
            .collect();
        let ids = record_files_in(&mut tx, &rows).await?;
        let analysed: Vec<(i64, &MinedFile<'_>)> =
            files.iter().filter(|f| f.failures.is_some()).filter_map(|f| Some((*ids.get(f.key)?, f))).collect();
        replace_failures_in(&mut tx, &analysed).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every stored failure. Without `full`, `text` and `seed` are left empty: they are most
    /// of the bytes, and only clustering and case planning read them.
    pub async fn failures(&self, full: bool) -> anyhow::Result<Vec<StoredFailure>> {
        let rows = sqlx::query(
            "SELECT f.id, t.path, f.cluster_id, f.trace_seq, f.trace_id, f.format, f.infra, f.signal, f.step_kind, f.tool,
                    f.error_type, f.template, f.step_id, f.step_index, f.message,
                    CASE WHEN ?1 THEN f.text ELSE '' END, f.excerpt, f.seen_at,
                    f.cost_usd, f.tokens, CASE WHEN ?1 THEN f.seed ELSE 'null' END, f.signature
             FROM failures f JOIN trace_files t ON t.id = f.file_id ORDER BY f.id",
        )
        .bind(full)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let canonical: String = r.get(21);
            let infra: bool = r.get(6);
            let signature = Signature {
                kind: if infra { "infra" } else { "capability" }.into(),
                signal: r.get(7),
                step_kind: r.get(8),
                tool: r.get(9),
                error_type: r.get(10),
                template: r.get(11),
            };
            debug_assert_eq!(signature.canonical(), canonical);
            let seed: CaseSeed = serde_json::from_str(&r.get::<String, _>(20)).unwrap_or_default();
            let seen_at: Option<String> = r.get(17);
            let path: String = r.get(1);
            out.push(StoredFailure {
                id: r.get(0),
                cluster_id: r.get(2),
                failure: Failure {
                    trace_id: r.get(4),
                    file: path.clone(),
                    format: r.get(5),
                    trace_seq: r.get::<i64, _>(3) as usize,
                    infra,
                    signature,
                    step_id: r.get(12),
                    step_index: r.get::<Option<i64>, _>(13).map(|i| i as usize),
                    message: r.get(14),
                    text: r.get(15),
                    excerpt: r.get(16),
                    time: seen_at
                        .as_deref()
                        .and_then(|s| crate::trace::json::parse_time(&serde_json::Value::String(s.into()))),
                    cost_usd: r.get(18),
                    tokens: r.get::<Option<i64>, _>(19).map(|t| t as u64),
                    seed,
                },
                path,
                seen_at,
            });
        }
        Ok(out)
    }

    pub async fn clusters(&self) -> anyhow::Result<Vec<StoredCluster>> {
        let rows = sqlx::query(
            "SELECT id, signature, signatures, label, kind, state, centroid, members, summary, created_at FROM clusters ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.get(4);
            out.push(StoredCluster {
                cluster: Cluster {
                    id: r.get(0),
                    signature: r.get(1),
                    signatures: serde_json::from_str(&r.get::<String, _>(2)).unwrap_or_default(),
                    centroid: serde_json::from_str(&r.get::<String, _>(6)).unwrap_or_default(),
                    members: r.get::<i64, _>(7) as usize,
                    infra: kind == "infra",
                },
                label: r.get(3),
                kind,
                state: r.get(5),
                summary: r.get(8),
                created_at: r.get(9),
            });
        }
        Ok(out)
    }

    /// Save clusters (upsert) and the cluster of each failure, in one transaction.
    pub async fn save_clustering(
        &self,
        clusters: &[(Cluster, String)],
        memberships: &[(i64, String)],
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let now = now_rfc3339();
        let rows: Vec<Value> = clusters
            .iter()
            .map(|(c, label)| {
                Ok(json!([
                    c.id,
                    c.signature,
                    serde_json::to_string(&c.signatures)?,
                    label,
                    if c.infra { "infra" } else { "capability" },
                    serde_json::to_string(&c.centroid)?,
                    c.members
                ]))
            })
            .collect::<anyhow::Result<_>>()?;
        // One statement per table (see `record_files_in` for why).
        sqlx::query(
            "INSERT INTO clusters (id, signature, signatures, label, kind, centroid, members, created_at, updated_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, ?1, ?1
             FROM json_each(?2) WHERE true
             ON CONFLICT(id) DO UPDATE SET signatures = excluded.signatures, label = excluded.label,
               centroid = excluded.centroid, members = excluded.members, updated_at = excluded.updated_at",
        )
        .bind(&now)
        .bind(serde_json::to_string(&rows)?)
        .execute(&mut *tx)
        .await?;
        // One statement per cluster, its members found by primary key (an `UPDATE … FROM
        // json_each` join would leave the loop order to the planner).
        let mut by_cluster: std::collections::BTreeMap<&str, Vec<i64>> = std::collections::BTreeMap::new();
        for (failure_id, cluster_id) in memberships {
            by_cluster.entry(cluster_id.as_str()).or_default().push(*failure_id);
        }
        for (cluster_id, ids) in by_cluster {
            sqlx::query("UPDATE failures SET cluster_id = ? WHERE id IN (SELECT value FROM json_each(?))")
                .bind(cluster_id)
                .bind(serde_json::to_string(&ids)?)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The plan key of a harness's last case planning (`mine::plan_key`).
    pub async fn case_plan(&self, harness: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT plan_hash FROM case_plans WHERE harness = ?")
            .bind(harness)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn set_case_plan(&self, harness: &str, plan_hash: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO case_plans (harness, plan_hash, planned_at) VALUES (?, ?, ?)
             ON CONFLICT(harness) DO UPDATE SET plan_hash = excluded.plan_hash, planned_at = excluded.planned_at",
        )
        .bind(harness)
        .bind(plan_hash)
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keep a cluster's one-line root cause (from `mine --summarize`).
    pub async fn set_cluster_summary(&self, id: &str, summary: &str) -> anyhow::Result<()> {
        sqlx::query("UPDATE clusters SET summary = ? WHERE id = ?").bind(summary).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn cases(&self, cluster: Option<&str>) -> anyhow::Result<Vec<StoredCase>> {
        let rows = sqlx::query(
            "SELECT id, cluster_id, harness, split, status, path, content_hash FROM cases
             WHERE (?1 IS NULL OR cluster_id = ?1) ORDER BY cluster_id, id",
        )
        .bind(cluster)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredCase {
                id: r.get(0),
                cluster_id: r.get(1),
                harness: r.get(2),
                split: r.get(3),
                status: r.get(4),
                path: r.get(5),
                content_hash: r.get(6),
            })
            .collect())
    }

    pub async fn upsert_case(
        &self,
        case: &StoredCase,
        input_hash: &str,
        failure_id: Option<i64>,
    ) -> anyhow::Result<()> {
        let now = now_rfc3339();
        sqlx::query(
            "INSERT INTO cases (id, cluster_id, harness, split, status, path, content_hash, input_hash, failure_id, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET path = excluded.path, content_hash = excluded.content_hash,
               updated_at = excluded.updated_at",
        )
        .bind(&case.id)
        .bind(&case.cluster_id)
        .bind(&case.harness)
        .bind(&case.split)
        .bind(&case.status)
        .bind(&case.path)
        .bind(&case.content_hash)
        .bind(input_hash)
        .bind(failure_id)
        .bind(&now)
        .bind(&now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Replace the failures of files scanned again, and remember the content they were
/// analysed at (`traces ls` records files without mining them).
async fn replace_failures_in(tx: &mut sqlx::SqliteConnection, files: &[(i64, &MinedFile<'_>)]) -> anyhow::Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let now = now_rfc3339();
    let ids: Vec<i64> = files.iter().map(|(id, _)| *id).collect();
    sqlx::query("DELETE FROM failures WHERE file_id IN (SELECT value FROM json_each(?))")
        .bind(serde_json::to_string(&ids)?)
        .execute(&mut *tx)
        .await?;
    let mut rows: Vec<Value> = Vec::new();
    for (file_id, file) in files {
        for f in file.failures.unwrap_or_default() {
            rows.push(json!([
                file_id,
                f.trace_seq,
                f.trace_id,
                f.format,
                f.infra,
                f.signature.canonical(),
                f.signature.signal,
                f.signature.step_kind,
                f.signature.tool,
                f.signature.error_type,
                f.signature.template,
                f.step_id,
                f.step_index,
                f.message,
                f.text,
                f.excerpt,
                f.time.map(format_time),
                f.cost_usd,
                f.tokens,
                serde_json::to_string(&f.seed)?
            ]));
        }
    }
    // In chunks: one JSON text per statement stays small however big the folder.
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        sqlx::query(
            "INSERT INTO failures (file_id, trace_seq, trace_id, format, infra, signature, signal, step_kind, tool,
               error_type, template, step_id, step_index, message, text, excerpt, seen_at, cost_usd, tokens, seed, mined_at)
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7,
                    value ->> 8, value ->> 9, value ->> 10, value ->> 11, value ->> 12, value ->> 13, value ->> 14,
                    value ->> 15, value ->> 16, value ->> 17, value ->> 18, value ->> 19, ?1
             FROM json_each(?2) WHERE true
             ON CONFLICT (file_id, trace_seq) DO NOTHING",
        )
        .bind(&now)
        .bind(serde_json::to_string(chunk)?)
        .execute(&mut *tx)
        .await?;
    }
    // The content just recorded is the content analysed: the hash is already in the row.
    sqlx::query("UPDATE trace_files SET mined_hash = hash WHERE id IN (SELECT value FROM json_each(?))")
        .bind(serde_json::to_string(&ids)?)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
