//! Trace files and traces: recording what ingestion found, and the fast "unchanged file"
//! lookup that lets re-mining skip files by (size, mtime) and then by content hash.

use std::collections::HashMap;

use super::{Store, in_transaction, now_rfc3339, on_pool, parse_rows, per_backend, text, text_opt};
use crate::trace::FileReport;
use crate::trace::scan::TraceSummary;

/// What the store knows about a file from an earlier scan.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KnownFile {
    pub id: i64,
    #[sqlx(try_from = "i64")]
    pub size: u64,
    pub mtime_ns: Option<i64>,
    pub hash: String,
}

impl Store {
    pub async fn known_file(&self, canonical_path: &str) -> anyhow::Result<Option<KnownFile>> {
        let sql = "SELECT id, size, mtime_ns, hash FROM trace_files WHERE path = $1";
        Ok(on_pool!(self, |p| sqlx::query_as(sql).bind(canonical_path).fetch_optional(p).await?))
    }

    /// Record scanned files and their traces, replacing what an earlier scan stored for the
    /// same paths, in one transaction.
    pub async fn record_files(&self, files: &[FileRow<'_>]) -> anyhow::Result<()> {
        in_transaction!(self, |tx, crate::store::traces as t| t::record_files_in(&mut tx, files).await?);
        Ok(())
    }

    pub async fn count_traces(&self) -> anyhow::Result<(i64, i64)> {
        let sql = "SELECT (SELECT COUNT(*) FROM trace_files) AS files, (SELECT COUNT(*) FROM traces) AS traces";
        Ok(on_pool!(self, |p| sqlx::query_as(sql).fetch_one(p).await?))
    }
}

/// Rows sent in one `INSERT` at most: up to 14 parameters each, under SQLite's 32,766.
pub(crate) const ROWS_PER_STATEMENT: usize = 2000;

/// One scanned file and the summaries of its traces.
pub struct FileRow<'a> {
    pub key: &'a str,
    pub mtime_ns: Option<i64>,
    pub report: &'a FileReport,
    pub traces: &'a [TraceSummary],
}

per_backend! {
/// [`Store::record_files`] inside a transaction the caller commits (`mine` stores a whole
/// scan in one); returns each path's file id.
///
/// Rows travel as many-row `INSERT`s with bound parameters: a statement costs sqlx a round
/// trip to its worker thread (~50–100 µs measured), which, one row at a time, was most of
/// the time `mine` spent storing; and rows sent as one JSON text were parsed again by
/// SQLite for every column taken out with `->>`.
pub(crate) async fn record_files_in(
    tx: &mut <Db as sqlx::Database>::Connection,
    files: &[FileRow<'_>],
) -> anyhow::Result<HashMap<String, i64>> {
    if files.is_empty() {
        return Ok(HashMap::new());
    }
    let now = now_rfc3339();
    for chunk in files.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO trace_files (path, size, mtime_ns, hash, format, reason, error, warnings, n_traces, scanned_at) ",
        );
        q.push_values(chunk, |mut b, f| {
            let r = f.report;
            b.push_bind(f.key)
                .push_bind(r.size as i64)
                .push_bind(f.mtime_ns)
                .push_bind(r.hash.as_str())
                .push_bind(r.format.map(|f| f.name()))
                .push_bind(text(&r.reason))
                .push_bind(text_opt(r.error.as_deref()))
                .push_bind(r.warnings.len() as i64)
                .push_bind(f.traces.len() as i64)
                .push_bind(now.as_str());
        });
        q.push(
            " ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
               hash = excluded.hash, format = excluded.format, reason = excluded.reason,
               error = excluded.error, warnings = excluded.warnings, n_traces = excluded.n_traces,
               scanned_at = excluded.scanned_at",
        );
        q.build().execute(&mut *tx).await?;
    }
    let keys: Vec<&str> = files.iter().map(|f| f.key).collect();
    let sql = DIALECT.json_rows(
        "'path', path, 'id', id",
        &format!("FROM trace_files WHERE path IN ({})", DIALECT.json_texts(1)),
    );
    let found: String = sqlx::query_scalar(&sql)
    .bind(serde_json::to_string(&keys)?)
    .fetch_one(&mut *tx)
    .await?;
    #[derive(serde::Deserialize)]
    struct FileId {
        path: String,
        id: i64,
    }
    let ids: HashMap<String, i64> =
        parse_rows::<FileId>(&found, "trace files")?.into_iter().map(|f| (f.path, f.id)).collect();
    let file_ids: Vec<i64> = keys.iter().filter_map(|k| ids.get(*k).copied()).collect();
    sqlx::query(&format!("DELETE FROM traces WHERE file_id IN ({})", DIALECT.json_ints(1)))
        .bind(serde_json::to_string(&file_ids)?)
        .execute(&mut *tx)
        .await?;
    let mut rows: Vec<(i64, &TraceSummary, String)> = Vec::new();
    for f in files {
        let Some(&file_id) = ids.get(f.key) else { continue };
        for t in f.traces {
            // Evidence quotes error messages from the trace: redacted like failures.
            let mut evidence = serde_json::to_value(&t.evidence)?;
            crate::redact::global().value(&mut evidence, &mut Default::default());
            rows.push((file_id, t, evidence.to_string()));
        }
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO traces (file_id, seq, trace_id, format, name, outcome, evidence, n_steps, n_errors,
               total_tokens, cost_usd, started_at, ended_at, location) ",
        );
        q.push_values(chunk, |mut b, (file_id, t, evidence)| {
            b.push_bind(*file_id)
                .push_bind(t.seq as i64)
                .push_bind(text(&t.trace_id))
                .push_bind(t.format.as_str())
                .push_bind(text_opt(t.name.as_deref()))
                .push_bind(t.outcome.as_str())
                .push_bind(evidence.as_str())
                .push_bind(t.n_steps as i64)
                .push_bind(t.n_errors as i64)
                .push_bind(t.total_tokens.map(|n| n as i64))
                .push_bind(t.cost_usd)
                .push_bind(t.start.as_deref())
                .push_bind(t.end.as_deref())
                .push_bind(text_opt(t.location.as_deref()));
        });
        q.build().execute(&mut *tx).await?;
    }
    Ok(ids)
}
}
