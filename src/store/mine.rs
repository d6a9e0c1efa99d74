//! Failures, clusters and cases.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Store, in_transaction, now_rfc3339, on_pool, parse_rows, per_backend, text, text_opt};
use crate::mine::cluster::Cluster;
use crate::mine::emit::{CaseStatus, Split};
use crate::mine::failure::{CaseSeed, Failure};
use crate::mine::signature::Signature;
use crate::mine::state::{ClusterKind, ClusterState};
use crate::store::traces::{FileRow, ROWS_PER_STATEMENT};
use crate::trace::FileReport;
use crate::trace::json::format_time;
use crate::trace::scan::TraceSummary;

pub use crate::mine::failure::StoredFailure;

/// A `failures` row as [`Store::failures`] reads it (a JSON object per row, by column name).
#[derive(Deserialize)]
struct FailureRow {
    id: i64,
    path: String,
    cluster_id: Option<String>,
    trace_seq: usize,
    trace_id: String,
    format: String,
    infra: u8,
    signal: String,
    step_kind: String,
    tool: Option<String>,
    error_type: Option<String>,
    template: String,
    step_id: Option<String>,
    step_index: Option<usize>,
    message: String,
    text: String,
    excerpt: String,
    seen_at: Option<String>,
    cost_usd: Option<f64>,
    tokens: Option<u64>,
    seed: Option<CaseSeed>,
}

impl FailureRow {
    fn into_stored(self) -> StoredFailure {
        let infra = self.infra != 0;
        let signature = Signature {
            kind: if infra { "infra" } else { "capability" }.into(),
            signal: self.signal,
            step_kind: self.step_kind,
            tool: self.tool,
            error_type: self.error_type,
            template: self.template,
        };
        let time = self.seen_at.as_deref().and_then(|s| crate::trace::json::parse_time(&Value::String(s.into())));
        StoredFailure {
            id: self.id,
            cluster_id: self.cluster_id,
            failure: Failure {
                trace_id: self.trace_id,
                file: self.path.clone(),
                format: self.format,
                trace_seq: self.trace_seq,
                infra,
                signature,
                step_id: self.step_id,
                step_ids: Vec::new(),
                unknown_outcome: false,
                header_len: 0,
                step_index: self.step_index,
                message: self.message,
                text: self.text,
                excerpt: self.excerpt,
                time,
                cost_usd: self.cost_usd,
                tokens: self.tokens,
                seed: self.seed.unwrap_or_default(),
            },
            path: self.path,
            seen_at: self.seen_at,
        }
    }
}

/// A `trace_files` row of a file mined at its current content.
#[derive(Debug, Clone, Deserialize)]
pub struct MinedFileRow {
    pub path: String,
    pub size: i64,
    pub mtime_ns: Option<i64>,
    pub hash: String,
}

/// A cluster row with its label and state.
#[derive(Debug, Clone, Serialize)]
pub struct StoredCluster {
    pub cluster: Cluster,
    pub label: String,
    pub kind: ClusterKind,
    pub state: ClusterState,
    pub summary: Option<String>,
    pub created_at: String,
}

/// A `clusters` row, by column name.
#[derive(sqlx::FromRow)]
struct ClusterRow {
    id: String,
    signature: String,
    signatures: String,
    label: String,
    kind: ClusterKind,
    state: ClusterState,
    centroid: String,
    members: i64,
    summary: Option<String>,
    created_at: String,
}

impl ClusterRow {
    fn into_stored(self) -> anyhow::Result<StoredCluster> {
        let json = |column: &str, text: &str| {
            anyhow::anyhow!("the store's cluster {} has a corrupt `{column}` column: {text:.80}", self.id)
        };
        let signatures = serde_json::from_str(&self.signatures).map_err(|_| json("signatures", &self.signatures))?;
        let centroid = serde_json::from_str(&self.centroid).map_err(|_| json("centroid", &self.centroid))?;
        Ok(StoredCluster {
            cluster: Cluster {
                signature: self.signature,
                signatures,
                centroid,
                members: self.members as usize,
                infra: self.kind == ClusterKind::Infra,
                id: self.id,
            },
            label: self.label,
            kind: self.kind,
            state: self.state,
            summary: self.summary,
            created_at: self.created_at,
        })
    }
}

/// A `cases` row (read as a JSON object per row, by column name).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredCase {
    pub id: String,
    pub cluster_id: String,
    pub harness: String,
    pub split: Split,
    pub status: CaseStatus,
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
    /// Each failure with the cluster it was assigned to.
    pub failures: Option<&'a [(Failure, String)]>,
}

/// What clustering decided: every cluster (label included) to save, and the clusters of
/// failures stored by an earlier mine that had none.
#[derive(Default)]
pub struct Clustering {
    pub clusters: Vec<(Cluster, String)>,
    pub memberships: Vec<(i64, String)>,
    /// The signature rules the stored failures are now signed under, when this mine signed
    /// them (again), and the old clusters that became aliases: saved with the mine, so a
    /// crash never leaves failures signed anew without their aliases.
    pub signed: Option<(u32, Vec<crate::mine::alias::Alias>)>,
}

impl Store {
    /// Store a whole mine in one transaction: files, traces, failures with their clusters,
    /// and the clusters. A crash leaves the store as it was before the mine, and a thousand
    /// files cost one commit instead of three each (measured: this halved `mine` over
    /// ../shared/datasets). Failures are inserted with their cluster: an `UPDATE` rewrites
    /// a whole row, text and seed included (measured: 25–30 ms of a 270 ms first mine).
    ///
    /// Returns the row id of each failure stored, keyed by its file's key and `trace_seq`
    /// (of two failures with the same key, the first is stored).
    pub async fn record_mined(
        &self,
        files: &[MinedFile<'_>],
        clustering: &Clustering,
    ) -> anyhow::Result<HashMap<(String, usize), i64>> {
        let rows: Vec<FileRow<'_>> = files
            .iter()
            .map(|f| FileRow { key: f.key, mtime_ns: f.mtime_ns, report: f.report, traces: f.traces })
            .collect();
        let (analysed, stored) = in_transaction!(self, |tx, crate::store::mine as m, crate::store::traces as t| {
            // Clusters first: failures refer to them.
            m::save_clusters_in(&mut tx, &clustering.clusters).await?;
            let ids = t::record_files_in(&mut tx, &rows).await?;
            let analysed: Vec<(i64, &MinedFile<'_>)> =
                files.iter().filter(|f| f.failures.is_some()).filter_map(|f| Some((*ids.get(f.key)?, f))).collect();
            let stored = m::replace_failures_in(&mut tx, &analysed).await?;
            m::set_memberships_in(&mut tx, &clustering.memberships).await?;
            if let Some((rules, aliases)) = &clustering.signed {
                m::save_signing_in(&mut tx, *rules, aliases).await?;
            }
            (analysed, stored)
        });
        let key_of: HashMap<i64, &str> = analysed.iter().map(|(id, f)| (*id, f.key)).collect();
        Ok(stored
            .into_iter()
            .filter_map(|f| Some(((key_of.get(&f.file_id)?.to_string(), f.trace_seq), f.id)))
            .collect())
    }

    /// Files whose failures were analysed at their current content. `traces ls` records
    /// files without mining them; those are not in it.
    pub async fn mined_files(&self) -> anyhow::Result<Vec<MinedFileRow>> {
        let sql = self.dialect().json_rows(
            "'path', path, 'size', size, 'mtime_ns', mtime_ns, 'hash', hash",
            "FROM trace_files WHERE mined_hash IS NOT NULL AND mined_hash = hash",
        );
        let text: String = on_pool!(self, |p| sqlx::query_scalar(&sql).fetch_one(p).await?);
        super::parse_rows(&text, "trace files")
    }

    /// Every stored failure. Without `full`, `text` and `seed` are left empty: they are most
    /// of the bytes, and only clustering and case planning read them.
    ///
    /// The rows come back as one JSON text (see [`parse_rows`]).
    pub async fn failures(&self, full: bool) -> anyhow::Result<Vec<StoredFailure>> {
        let dialect = self.dialect();
        let (infra, seed) = match dialect {
            super::Dialect::Sqlite => ("f.infra", "json(f.seed)"),
            super::Dialect::Postgres => ("CASE WHEN f.infra THEN 1 ELSE 0 END", "f.seed::json"),
        };
        let sql = dialect.json_rows(
            &format!(
                "'id', f.id, 'path', t.path, 'cluster_id', f.cluster_id,
                    'trace_seq', f.trace_seq, 'trace_id', f.trace_id, 'format', f.format, 'infra', {infra},
                    'signal', f.signal, 'step_kind', f.step_kind, 'tool', f.tool, 'error_type', f.error_type,
                    'template', f.template, 'step_id', f.step_id, 'step_index', f.step_index, 'message', f.message,
                    'text', CASE WHEN $1 THEN f.text ELSE '' END, 'excerpt', f.excerpt, 'seen_at', f.seen_at,
                    'cost_usd', f.cost_usd, 'tokens', f.tokens, 'seed', CASE WHEN $1 THEN {seed} END"
            ),
            "FROM failures f JOIN trace_files t ON t.id = f.file_id",
        );
        let text: String = on_pool!(self, |p| sqlx::query_scalar(&sql).bind(full).fetch_one(p).await?);
        let mut rows: Vec<FailureRow> = parse_rows(&text, "failures")?;
        rows.sort_unstable_by_key(|r| r.id);
        Ok(rows.into_iter().map(FailureRow::into_stored).collect())
    }

    pub async fn clusters(&self) -> anyhow::Result<Vec<StoredCluster>> {
        let sql = "SELECT id, signature, signatures, label, kind, state, centroid, members, summary, created_at
                   FROM clusters ORDER BY id";
        let rows: Vec<ClusterRow> = on_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await?);
        rows.into_iter().map(ClusterRow::into_stored).collect()
    }

    /// The plan key of a harness's last case planning (`mine::plan_key`).
    pub async fn case_plan(&self, harness: &str) -> anyhow::Result<Option<String>> {
        let sql = "SELECT plan_hash FROM case_plans WHERE harness = $1";
        Ok(on_pool!(self, |p| sqlx::query_scalar(sql).bind(harness).fetch_optional(p).await?))
    }

    pub async fn set_case_plan(&self, harness: &str, plan_hash: &str) -> anyhow::Result<()> {
        let sql = "INSERT INTO case_plans (harness, plan_hash, planned_at) VALUES ($1, $2, $3)
             ON CONFLICT(harness) DO UPDATE SET plan_hash = excluded.plan_hash, planned_at = excluded.planned_at";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(harness)
            .bind(plan_hash)
            .bind(now_rfc3339())
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Keep a cluster's one-line root cause (from `mine --summarize`).
    pub async fn set_cluster_summary(&self, id: &str, summary: &str) -> anyhow::Result<()> {
        let sql = "UPDATE clusters SET summary = $1 WHERE id = $2";
        on_pool!(self, |p| sqlx::query(sql).bind(text(summary)).bind(id).execute(p).await?.rows_affected());
        Ok(())
    }

    pub async fn cases(&self, cluster: Option<&str>) -> anyhow::Result<Vec<StoredCase>> {
        let sql = self.dialect().json_rows(
            "'id', id, 'cluster_id', cluster_id, 'harness', harness,
                    'split', split, 'status', status, 'path', path, 'content_hash', content_hash",
            "FROM cases WHERE (CAST($1 AS TEXT) IS NULL OR cluster_id = $1)",
        );
        let text: String = on_pool!(self, |p| sqlx::query_scalar(&sql).bind(cluster).fetch_one(p).await?);
        let mut cases: Vec<StoredCase> = parse_rows(&text, "cases")?;
        cases.sort_unstable_by(|a, b| (&a.cluster_id, &a.id).cmp(&(&b.cluster_id, &b.id)));
        Ok(cases)
    }

    pub async fn upsert_case(
        &self,
        case: &StoredCase,
        input_hash: &str,
        failure_id: Option<i64>,
    ) -> anyhow::Result<()> {
        let now = now_rfc3339();
        let sql =
            "INSERT INTO cases (id, cluster_id, harness, split, status, path, content_hash, input_hash, failure_id,
               created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT(id) DO UPDATE SET path = excluded.path, content_hash = excluded.content_hash,
               updated_at = excluded.updated_at";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(&case.id)
            .bind(&case.cluster_id)
            .bind(&case.harness)
            .bind(case.split.as_str())
            .bind(case.status.as_str())
            .bind(&case.path)
            .bind(&case.content_hash)
            .bind(input_hash)
            .bind(failure_id)
            .bind(&now)
            .bind(&now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }
}

/// Signature rules and cluster aliases (migration 0011).
impl Store {
    /// The signature rules the stored failures were signed under: the newest recorded,
    /// else 1 when there are failures (a store from before the rules were recorded), else
    /// none.
    pub async fn signature_rules(&self) -> anyhow::Result<Option<u32>> {
        let sql = "SELECT COALESCE((SELECT MAX(version) FROM signature_rules), (SELECT 1 FROM failures LIMIT 1))";
        let v: Option<i64> = on_pool!(self, |p| sqlx::query_scalar(sql).fetch_one(p).await?);
        Ok(v.map(|v| v as u32))
    }

    /// Every cluster alias, old id → new id.
    pub async fn cluster_aliases(&self) -> anyhow::Result<Vec<(String, String)>> {
        let sql = "SELECT old_id, new_id FROM cluster_aliases ORDER BY old_id";
        Ok(on_pool!(self, |p| sqlx::query_as(sql).fetch_all(p).await?))
    }

    /// [`Store::cluster_aliases`] ready to resolve ids.
    pub async fn aliases(&self) -> anyhow::Result<crate::mine::alias::Aliases> {
        Ok(crate::mine::alias::Aliases::new(self.cluster_aliases().await?))
    }

    /// Why `old_id` is an alias, as recorded.
    pub async fn cluster_alias_reason(&self, old_id: &str) -> anyhow::Result<Option<String>> {
        let sql = "SELECT reason FROM cluster_aliases WHERE old_id = $1";
        Ok(on_pool!(self, |p| sqlx::query_scalar(sql).bind(old_id).fetch_optional(p).await?))
    }

    /// Point a case's row at its cluster's new id (and at its file, moved or not).
    pub async fn repoint_case(&self, id: &str, cluster_id: &str, path: &str, content_hash: &str) -> anyhow::Result<()> {
        let sql = "UPDATE cases SET cluster_id = $1, path = $2, content_hash = $3, updated_at = $4 WHERE id = $5";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(cluster_id)
            .bind(path)
            .bind(content_hash)
            .bind(now_rfc3339())
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Each recorded case's cluster and input hash, for a harness: a case planned again
    /// for an input its cluster already has a case for (under an id from an old cluster
    /// id) is that case.
    pub async fn case_inputs(&self, harness: &str) -> anyhow::Result<Vec<(String, String, String)>> {
        let sql = "SELECT id, cluster_id, input_hash FROM cases WHERE harness = $1 ORDER BY id";
        Ok(on_pool!(self, |p| sqlx::query_as(sql).bind(harness).fetch_all(p).await?))
    }
}

/// Failure rows per `INSERT`: 22 parameters each, well under SQLite's 32,766.
const FAILURE_ROWS_PER_STATEMENT: usize = 500;

/// Replace the failures of files scanned again, and remember the content they were
/// analysed at (`traces ls` records files without mining them). Returns `(id, file_id,
/// trace_seq)` of every failure now stored for `files`.
/// Where a stored failure came from: its file and its trace's place in the file.
#[derive(Deserialize)]
pub(crate) struct FailureKey {
    pub(crate) id: i64,
    pub(crate) file_id: i64,
    pub(crate) trace_seq: usize,
}

per_backend! {
/// Record the rules the failures are now signed under and the aliases the change made.
pub(crate) async fn save_signing_in(
    tx: &mut <Db as sqlx::Database>::Connection,
    rules: u32,
    aliases: &[crate::mine::alias::Alias],
) -> anyhow::Result<()> {
    let now = now_rfc3339();
    sqlx::query("INSERT INTO signature_rules (version, applied_at) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING")
        .bind(rules as i64)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    for a in aliases {
        sqlx::query(
            "INSERT INTO cluster_aliases (old_id, new_id, reason, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (old_id) DO UPDATE SET new_id = excluded.new_id, reason = excluded.reason,
               created_at = excluded.created_at",
        )
        .bind(&a.old_id)
        .bind(&a.new_id)
        .bind(text(&a.reason))
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Upsert clusters with their labels.
pub(crate) async fn save_clusters_in(tx: &mut <Db as sqlx::Database>::Connection, clusters: &[(Cluster, String)]) -> anyhow::Result<()> {
    if clusters.is_empty() {
        return Ok(());
    }
    let now = now_rfc3339();
    let rows: Vec<(&Cluster, &str, String, String)> = clusters
        .iter()
        .map(|(c, label)| {
            Ok((c, label.as_str(), serde_json::to_string(&c.signatures)?, serde_json::to_string(&c.centroid)?))
        })
        .collect::<anyhow::Result<_>>()?;
    // Bound parameters, as for every many-row write (see `record_files_in` for why).
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO clusters (id, signature, signatures, label, kind, centroid, members, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut b, (c, label, signatures, centroid)| {
            b.push_bind(c.id.as_str())
                .push_bind(text(&c.signature))
                .push_bind(signatures.as_str())
                .push_bind(text(label))
                .push_bind(if c.infra { "infra" } else { "capability" })
                .push_bind(centroid.as_str())
                .push_bind(c.members as i64)
                .push_bind(now.as_str())
                .push_bind(now.as_str());
        });
        q.push(
            " ON CONFLICT(id) DO UPDATE SET signatures = excluded.signatures, label = excluded.label,
               centroid = excluded.centroid, members = excluded.members, updated_at = excluded.updated_at",
        );
        q.build().execute(&mut *tx).await?;
    }
    Ok(())
}

/// Set the cluster of failures already stored.
pub(crate) async fn set_memberships_in(tx: &mut <Db as sqlx::Database>::Connection, memberships: &[(i64, String)]) -> anyhow::Result<()> {
    // One statement per cluster, its members found by primary key (an `UPDATE … FROM
    // json_each` join would leave the loop order to the planner).
    let mut by_cluster: std::collections::BTreeMap<&str, Vec<i64>> = std::collections::BTreeMap::new();
    for (failure_id, cluster_id) in memberships {
        by_cluster.entry(cluster_id.as_str()).or_default().push(*failure_id);
    }
    for (cluster_id, ids) in by_cluster {
        sqlx::query(&format!("UPDATE failures SET cluster_id = $1 WHERE id IN ({})", DIALECT.json_ints(2)))
            .bind(cluster_id)
            .bind(serde_json::to_string(&ids)?)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

pub(crate) async fn replace_failures_in(
    tx: &mut <Db as sqlx::Database>::Connection,
    files: &[(i64, &MinedFile<'_>)],
) -> anyhow::Result<Vec<FailureKey>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_rfc3339();
    let ids: Vec<i64> = files.iter().map(|(id, _)| *id).collect();
    sqlx::query(&format!("DELETE FROM failures WHERE file_id IN ({})", DIALECT.json_ints(1)))
        .bind(serde_json::to_string(&ids)?)
        .execute(&mut *tx)
        .await?;
    // Bound parameters, many rows per statement: a JSON text unpacked with `->>` is parsed
    // again for every column it gives (measured: 33 ms of JSON work for 2.7 MB of failures).
    struct Row<'a> {
        file_id: i64,
        f: &'a Failure,
        cluster_id: &'a str,
        signature: String,
        seen_at: Option<String>,
        seed: String,
    }
    let mut rows: Vec<Row<'_>> = Vec::new();
    for (file_id, file) in files {
        for (f, cluster_id) in file.failures.unwrap_or_default() {
            rows.push(Row {
                file_id: *file_id,
                f,
                cluster_id,
                signature: f.signature.canonical(),
                seen_at: f.time.map(format_time),
                seed: serde_json::to_string(&f.seed)?,
            });
        }
    }
    for chunk in rows.chunks(FAILURE_ROWS_PER_STATEMENT) {
        let mut q = sqlx::QueryBuilder::<Db>::new(
            "INSERT INTO failures (file_id, trace_seq, trace_id, format, infra, signature, signal, step_kind, tool,
               error_type, template, step_id, step_index, message, text, excerpt, seen_at, cost_usd, tokens, seed,
               cluster_id, mined_at) ",
        );
        q.push_values(chunk, |mut b, r| {
            let f = r.f;
            b.push_bind(r.file_id)
                .push_bind(f.trace_seq as i64)
                .push_bind(text(&f.trace_id))
                .push_bind(f.format.as_str())
                .push_bind(f.infra)
                .push_bind(text(&r.signature))
                .push_bind(text(&f.signature.signal))
                .push_bind(text(&f.signature.step_kind))
                .push_bind(text_opt(f.signature.tool.as_deref()))
                .push_bind(text_opt(f.signature.error_type.as_deref()))
                .push_bind(text(&f.signature.template))
                .push_bind(text_opt(f.step_id.as_deref()))
                .push_bind(f.step_index.map(|i| i as i64))
                .push_bind(text(&f.message))
                .push_bind(text(&f.text))
                .push_bind(text(&f.excerpt))
                .push_bind(r.seen_at.as_deref())
                .push_bind(f.cost_usd)
                .push_bind(f.tokens.map(|t| t as i64))
                .push_bind(r.seed.as_str())
                .push_bind(r.cluster_id)
                .push_bind(now.as_str());
        });
        q.push(" ON CONFLICT (file_id, trace_seq) DO NOTHING");
        q.build().execute(&mut *tx).await?;
    }
    // The content just recorded is the content analysed: the hash is already in the row.
    sqlx::query(&format!("UPDATE trace_files SET mined_hash = hash WHERE id IN ({})", DIALECT.json_ints(1)))
        .bind(serde_json::to_string(&ids)?)
        .execute(&mut *tx)
        .await?;
    let sql = DIALECT.json_rows(
        "'id', id, 'file_id', file_id, 'trace_seq', trace_seq",
        &format!("FROM failures WHERE file_id IN ({})", DIALECT.json_ints(1)),
    );
    let stored: String = sqlx::query_scalar(&sql)
    .bind(serde_json::to_string(&ids)?)
    .fetch_one(&mut *tx)
    .await?;
    parse_rows(&stored, "failures")
}
}
