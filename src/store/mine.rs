//! Failures, clusters and cases.

use serde::Serialize;
use sqlx::Row;

use super::{Store, now_rfc3339};
use crate::mine::cluster::Cluster;
use crate::mine::failure::{CaseSeed, Failure};
use crate::mine::signature::Signature;
use crate::store::traces::record_file_in;
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
    /// mine, and a thousand files cost one commit instead of three each (measured: the
    /// commits were most of `mine`'s time over ../shared/datasets).
    pub async fn record_mined(&self, files: &[MinedFile<'_>]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        let now = now_rfc3339();
        for f in files {
            let file_id = record_file_in(&mut tx, f.key, f.mtime_ns, f.report, f.traces).await?;
            if let Some(failures) = f.failures {
                replace_failures_in(&mut tx, file_id, failures, &now).await?;
                // Analysed at this content: `traces ls` records files without mining them.
                sqlx::query("UPDATE trace_files SET mined_hash = ? WHERE id = ?")
                    .bind(&f.report.hash)
                    .bind(file_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn failures(&self) -> anyhow::Result<Vec<StoredFailure>> {
        let rows = sqlx::query(
            "SELECT f.id, t.path, f.cluster_id, f.trace_seq, f.trace_id, f.format, f.infra, f.signal, f.step_kind, f.tool,
                    f.error_type, f.template, f.step_id, f.step_index, f.message, f.text, f.excerpt, f.seen_at,
                    f.cost_usd, f.tokens, f.seed, f.signature
             FROM failures f JOIN trace_files t ON t.id = f.file_id ORDER BY f.id",
        )
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
        for (c, label) in clusters {
            sqlx::query(
                "INSERT INTO clusters (id, signature, signatures, label, kind, centroid, members, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET signatures = excluded.signatures, label = excluded.label,
                   centroid = excluded.centroid, members = excluded.members, updated_at = excluded.updated_at",
            )
            .bind(&c.id)
            .bind(&c.signature)
            .bind(serde_json::to_string(&c.signatures)?)
            .bind(label)
            .bind(if c.infra { "infra" } else { "capability" })
            .bind(serde_json::to_string(&c.centroid)?)
            .bind(c.members as i64)
            .bind(&now)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        for (failure_id, cluster_id) in memberships {
            sqlx::query("UPDATE failures SET cluster_id = ? WHERE id = ?")
                .bind(cluster_id)
                .bind(failure_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
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

/// Replace the failures of one file (after it was scanned again).
async fn replace_failures_in(
    tx: &mut sqlx::SqliteConnection,
    file_id: i64,
    failures: &[Failure],
    now: &str,
) -> anyhow::Result<()> {
    sqlx::query("DELETE FROM failures WHERE file_id = ?").bind(file_id).execute(&mut *tx).await?;
    for f in failures {
        sqlx::query(
                "INSERT INTO failures (file_id, trace_seq, trace_id, format, infra, signature, signal, step_kind, tool,
                   error_type, template, step_id, step_index, message, text, excerpt, seen_at, cost_usd, tokens, seed, mined_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (file_id, trace_seq) DO NOTHING",
            )
            .bind(file_id)
            .bind(f.trace_seq as i64)
            .bind(&f.trace_id)
            .bind(&f.format)
            .bind(f.infra)
            .bind(f.signature.canonical())
            .bind(&f.signature.signal)
            .bind(&f.signature.step_kind)
            .bind(&f.signature.tool)
            .bind(&f.signature.error_type)
            .bind(&f.signature.template)
            .bind(&f.step_id)
            .bind(f.step_index.map(|i| i as i64))
            .bind(&f.message)
            .bind(&f.text)
            .bind(&f.excerpt)
            .bind(f.time.map(format_time))
            .bind(f.cost_usd)
            .bind(f.tokens.map(|t| t as i64))
            .bind(serde_json::to_string(&f.seed)?)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
