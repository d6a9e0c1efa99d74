//! Trace files and traces: recording what ingestion found, and the fast "unchanged file"
//! lookup that lets re-mining skip files by (size, mtime) and then by content hash.

use sqlx::Row;

use super::{Store, now_rfc3339};
use crate::trace::FileReport;
use crate::trace::scan::TraceSummary;

/// What the store knows about a file from an earlier scan.
#[derive(Debug, Clone)]
pub struct KnownFile {
    pub id: i64,
    pub size: u64,
    pub mtime_ns: Option<i64>,
    pub hash: String,
}

impl Store {
    pub async fn known_file(&self, canonical_path: &str) -> anyhow::Result<Option<KnownFile>> {
        let row = sqlx::query("SELECT id, size, mtime_ns, hash FROM trace_files WHERE path = ?")
            .bind(canonical_path)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| KnownFile { id: r.get(0), size: r.get::<i64, _>(1) as u64, mtime_ns: r.get(2), hash: r.get(3) }))
    }

    /// Record one scanned file and its traces, replacing what an earlier scan stored for
    /// the same path, in one transaction. Returns the file id.
    pub async fn record_file(
        &self,
        canonical_path: &str,
        mtime_ns: Option<i64>,
        report: &FileReport,
        traces: &[TraceSummary],
    ) -> anyhow::Result<i64> {
        let mut tx = self.pool.begin().await?;
        let file_id = record_file_in(&mut tx, canonical_path, mtime_ns, report, traces).await?;
        tx.commit().await?;
        Ok(file_id)
    }

    pub async fn count_traces(&self) -> anyhow::Result<(i64, i64)> {
        let row = sqlx::query("SELECT (SELECT COUNT(*) FROM trace_files), (SELECT COUNT(*) FROM traces)")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.get(0), row.get(1)))
    }
}

/// [`Store::record_file`] inside a transaction the caller commits (`mine` stores a whole
/// scan in one).
pub(crate) async fn record_file_in(
    tx: &mut sqlx::SqliteConnection,
    canonical_path: &str,
    mtime_ns: Option<i64>,
    report: &FileReport,
    traces: &[TraceSummary],
) -> anyhow::Result<i64> {
    let file_id: i64 = sqlx::query(
        "INSERT INTO trace_files (path, size, mtime_ns, hash, format, reason, error, warnings, n_traces, scanned_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
               hash = excluded.hash, format = excluded.format, reason = excluded.reason,
               error = excluded.error, warnings = excluded.warnings, n_traces = excluded.n_traces,
               scanned_at = excluded.scanned_at
             RETURNING id",
    )
    .bind(canonical_path)
    .bind(report.size as i64)
    .bind(mtime_ns)
    .bind(&report.hash)
    .bind(report.format.map(|f| f.name()))
    .bind(&report.reason)
    .bind(&report.error)
    .bind(report.warnings.len() as i64)
    .bind(traces.len() as i64)
    .bind(now_rfc3339())
    .fetch_one(&mut *tx)
    .await?
    .get(0);
    sqlx::query("DELETE FROM traces WHERE file_id = ?").bind(file_id).execute(&mut *tx).await?;
    for row in traces {
        sqlx::query(
            "INSERT INTO traces (file_id, seq, trace_id, format, name, outcome, evidence, n_steps, n_errors,
                   total_tokens, cost_usd, started_at, ended_at, location)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(file_id)
        .bind(row.seq as i64)
        .bind(&row.trace_id)
        .bind(&row.format)
        .bind(&row.name)
        .bind(row.outcome.as_str())
        .bind(serde_json::to_string(&row.evidence)?)
        .bind(row.n_steps as i64)
        .bind(row.n_errors as i64)
        .bind(row.total_tokens.map(|t| t as i64))
        .bind(row.cost_usd)
        .bind(&row.start)
        .bind(&row.end)
        .bind(&row.location)
        .execute(&mut *tx)
        .await?;
    }
    Ok(file_id)
}
