//! The store (through sqlx): by default one SQLite file that links the whole lineage,
//! queryable with `sqlite3`, opened in WAL mode with a busy timeout so a second process can
//! read (and wait to write) while another works; or, for a team whose runners share one
//! store, a Postgres database (`--db postgres://…`). Both backends have the same tables,
//! from two migration folders kept in step (`migrations/`, `migrations/postgres/`; the tidy
//! test compares them), embedded in the binary.
//!
//! Every query is written once and compiled once per backend ([`on_pool!`]): the SQLite path
//! is the same code it was before Postgres, and the few statements whose SQL differs (JSON
//! aggregation, unpacking a JSON list) choose theirs by [`Dialect`].
//!
//! **Architecture Invariant:** every write that belongs together happens in one
//! transaction, so a crash or a bad file never leaves half a record behind.

pub mod gates;
pub mod judgements;
pub mod mine;
#[cfg(test)]
mod parity;
pub mod runs;
pub mod shards;
pub mod traces;
pub mod trials;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::config::Settings;
pub use crate::config::{StoreLocation, redact_url};
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The connections of a store: one pool per backend.
#[derive(Debug, Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which SQL a statement that differs between the backends is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `SELECT` of many rows as one JSON array text of objects (see [`parse_rows`]):
    /// `fields` are `json_object`'s arguments ('name', expression, …), `from` the rest of
    /// the query. An empty result is `[]` on both backends.
    pub fn json_rows(self, fields: &str, from: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT json_group_array(json_object({fields})) {from}"),
            Dialect::Postgres => {
                format!("SELECT COALESCE(json_agg(json_build_object({fields})), '[]'::json)::text {from}")
            }
        }
    }

    /// A subquery over the elements of a bound JSON list of integers (parameter `$n`).
    pub fn json_ints(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each(${n})"),
            Dialect::Postgres => format!("SELECT value::bigint FROM json_array_elements_text(${n}::json)"),
        }
    }

    /// A subquery over the elements of a bound JSON list of strings (parameter `$n`).
    pub fn json_texts(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each(${n})"),
            Dialect::Postgres => format!("SELECT value FROM json_array_elements_text(${n}::json)"),
        }
    }
}

/// Runs `$body` with `$p` bound to the store's pool, compiled once per backend (each arm
/// type-checks the same statements against its own database), with `DIALECT` naming the
/// backend for the statements whose SQL differs.
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($p) => {
                #[allow(dead_code)]
                const DIALECT: $crate::store::Dialect = $crate::store::Dialect::Sqlite;
                $body
            }
            $crate::store::Pool::Postgres($p) => {
                #[allow(dead_code)]
                const DIALECT: $crate::store::Dialect = $crate::store::Dialect::Postgres;
                $body
            }
        }
    };
}
pub(crate) use on_pool;

/// Items written once for both backends: `$items` go into `mod sqlite` (with `Db =
/// sqlx::Sqlite`) and `mod postgres` (`Db = sqlx::Postgres`), each with its `DIALECT`, for
/// the helpers that work inside a caller's transaction (`&mut <Db as Database>::Connection`).
macro_rules! per_backend {
    ($($items:item)*) => {
        pub(crate) mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            #[allow(dead_code)]
            pub(crate) type Db = sqlx::Sqlite;
            #[allow(dead_code)]
            const DIALECT: $crate::store::Dialect = $crate::store::Dialect::Sqlite;
            $($items)*
        }
        pub(crate) mod postgres {
            #[allow(unused_imports)]
            use super::*;
            #[allow(dead_code)]
            pub(crate) type Db = sqlx::Postgres;
            #[allow(dead_code)]
            const DIALECT: $crate::store::Dialect = $crate::store::Dialect::Postgres;
            $($items)*
        }
    };
}
pub(crate) use per_backend;

/// Runs `$body` inside one transaction on the store's backend, with `$tx` the transaction
/// and each `path as alias` naming that path's [`per_backend!`] module for this backend
/// (`crate::store::traces as t` gives `t::record_files_in` on the right connection type);
/// commits when `$body` did not return early. Evaluates to `$body`'s value.
macro_rules! in_transaction {
    ($store:expr, |$tx:ident $(, $($seg:ident)::+ as $alias:ident)*| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(pool) => {
                $(#[allow(unused_imports)] use $($seg)::+::sqlite as $alias;)*
                #[allow(dead_code)]
                const DIALECT: $crate::store::Dialect = $crate::store::Dialect::Sqlite;
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Pool::Postgres(pool) => {
                $(#[allow(unused_imports)] use $($seg)::+::postgres as $alias;)*
                #[allow(dead_code)]
                const DIALECT: $crate::store::Dialect = $crate::store::Dialect::Postgres;
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}
pub(crate) use in_transaction;

#[derive(Debug, Clone)]
pub struct Store {
    pub pool: Pool,
    /// The SQLite file; for a Postgres store, the local anchor its lock and trial folders
    /// are named after (`.autoharness/state.db`, never created).
    pub path: PathBuf,
    pub location: StoreLocation,
}

/// Helpers for tests of both backends (the library's and the integration tests').
#[doc(hidden)]
pub mod testing {
    /// A URL to a fresh, empty schema on the Postgres server that `AUTOHARNESS_TEST_POSTGRES`
    /// names (`scripts/postgres.sh start` writes it): each test gets tables of its own on one
    /// server, cheaply. `None`, after saying SKIPPED, when it is unset; a panic under
    /// `AUTOHARNESS_REQUIRE_ALL=1` (CI), where nothing may skip.
    #[allow(clippy::print_stderr)]
    pub async fn postgres_url() -> Option<String> {
        let Ok(base) = std::env::var("AUTOHARNESS_TEST_POSTGRES") else {
            let msg = "SKIPPED (Postgres half): AUTOHARNESS_TEST_POSTGRES is unset; start a server with \
                       `scripts/postgres.sh start` and export what it writes";
            if std::env::var("AUTOHARNESS_REQUIRE_ALL").is_ok_and(|v| v == "1") {
                panic!("{msg} (AUTOHARNESS_REQUIRE_ALL=1 forbids skipping)");
            }
            eprintln!("{msg}");
            return None;
        };
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let schema =
            format!("ah_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test Postgres server {base}: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.expect("create a test schema");
        let _ = sqlx::Connection::close(conn).await;
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(format!("{base}{sep}options[search_path]={schema}"))
    }

    /// The stores a store test runs on: a SQLite file in `dir`, and a fresh Postgres schema
    /// when a test server is configured.
    pub async fn stores(dir: &std::path::Path) -> Vec<super::Store> {
        let mut out = vec![super::Store::open(&dir.join("s.db")).await.expect("open a SQLite test store")];
        if let Some(url) = postgres_url().await {
            out.push(super::Store::open_postgres(&url, &dir.join("pg.db")).await.expect("open a Postgres test store"));
        }
        out
    }
}

/// What holds a store's write lock until it drops: a lock file beside a SQLite store, or a
/// Postgres session holding an advisory lock (closing the connection releases it).
pub enum StoreLock {
    File(crate::lockfile::FileLock),
    Postgres(sqlx::PgConnection),
}

/// The advisory lock key of a Postgres store's write lock (any fixed number; one per database).
const PG_WRITE_LOCK: i64 = 0x6175_746f_6861_726e; // "autoharn"
/// The advisory lock key of `autoharness run` on a Postgres store.
const PG_RUN_LOCK: i64 = PG_WRITE_LOCK + 1;
/// Advisory locks belong to a database; a store is a schema in one (`search_path`), so
/// the key is taken from the schema too: two teams' stores in one database never wait on
/// each other.
const PG_TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtextextended(current_schema(), $1))";
const PG_LOCK: &str = "SELECT pg_advisory_lock(hashtextextended(current_schema(), $1))";

/// A connection of its own (detached from the pool: the lock lives as long as the session)
/// and whether it took the advisory lock `key` of this store's schema.
async fn pg_try_lock(pool: &PgPool, key: i64) -> anyhow::Result<(sqlx::PgConnection, bool)> {
    let mut conn = pool.acquire().await?.detach();
    let took: bool = sqlx::query_scalar(PG_TRY_LOCK).bind(key).fetch_one(&mut conn).await?;
    Ok((conn, took))
}

impl Store {
    /// Open the store at `location` (a SQLite file beside `anchor`'s folder, or a Postgres
    /// database) and bring its schema up to date.
    pub async fn open_at(location: &StoreLocation, anchor: &Path) -> anyhow::Result<Store> {
        match location {
            StoreLocation::File(path) => Store::open(path).await,
            StoreLocation::Postgres(url) => Store::open_postgres(url, anchor).await,
        }
    }

    /// The store a command's settings name (`--db`, `AUTOHARNESS_DB`, `db =`).
    pub async fn open_settings(settings: &Settings) -> anyhow::Result<Store> {
        Store::open_at(&settings.store, &settings.db_path).await
    }

    /// [`Store::open_settings`] for a command that only reads the store.
    pub async fn open_settings_for_reading(settings: &Settings) -> anyhow::Result<Store> {
        Store::open_for_reading_at(&settings.store, &settings.db_path).await
    }

    /// [`Store::open_at`] for a command that only reads the store.
    pub async fn open_for_reading_at(location: &StoreLocation, anchor: &Path) -> anyhow::Result<Store> {
        match location {
            StoreLocation::File(path) => Store::open_for_reading(path).await,
            StoreLocation::Postgres(url) => Store::open_postgres(url, anchor).await,
        }
    }

    /// Open a Postgres store: the database must exist (an empty one is fine; its tables are
    /// made here, one runner at a time — sqlx's Postgres migrator holds an advisory lock).
    pub async fn open_postgres(url: &str, anchor: &Path) -> anyhow::Result<Store> {
        let shown = redact_url(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            crate::exit::hinted(
                format!("`{shown}` is not a usable Postgres URL: {e}"),
                "write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE",
            )
        })?;
        // Small by default: a hundred runners with four connections each are already past
        // Postgres' default of 100 (see docs/scale-out.md).
        let size = std::env::var("AUTOHARNESS_DB_POOL").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(4).max(1);
        // One connection first: a refused or unknown host fails at once, where the pool would
        // retry until its acquire timeout.
        let first = sqlx::Connection::connect_with(&options).await.map(|c: sqlx::PgConnection| c);
        let pool = match first {
            Ok(conn) => {
                let _ = sqlx::Connection::close(conn).await;
                PgPoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_with(options)
                    .await
            }
            Err(e) => Err(e),
        };
        let pool = pool.map_err(|e| {
            let hint = match e.as_database_error().and_then(|d| d.code()).as_deref() {
                Some("3D000") => "create the database first (e.g. `createdb NAME`), or name one that exists",
                Some("28P01") | Some("28000") => "check the user and password in the URL",
                _ => "check that the server is running and reachable from here, and the URL",
            };
            crate::exit::hinted(format!("cannot open the Postgres store `{shown}`: {e}"), hint)
        })?;
        let migrated = PG_MIGRATOR.run(&pool).await;
        let newer = matches!(migrated, Err(sqlx::migrate::MigrateError::VersionMissing(_)));
        migrated.with_context(|| {
            let why = if newer { " (was it migrated by a newer autoharness?)" } else { "" };
            format!("cannot migrate the Postgres store `{shown}`{why}")
        })?;
        Ok(Store {
            pool: Pool::Postgres(pool),
            path: anchor.to_path_buf(),
            location: StoreLocation::Postgres(url.into()),
        })
    }

    /// For a Postgres store, the lock of `autoharness run` across runners (the lock file
    /// beside a SQLite store does that job on one machine): refused at once when another
    /// runner's run holds it. `None` for a SQLite store.
    pub async fn run_lock(&self) -> anyhow::Result<Option<StoreLock>> {
        let Pool::Postgres(pool) = &self.pool else { return Ok(None) };
        let (conn, took) = pg_try_lock(pool, PG_RUN_LOCK).await?;
        if !took {
            return Err(crate::exit::hinted(
                format!("another `autoharness run` is using the store `{}`", self.describe()),
                "wait for it to finish, or give this run a store of its own with --db",
            ));
        }
        Ok(Some(StoreLock::Postgres(conn)))
    }

    /// Which SQL this store's backend speaks.
    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite pool (tests and SQLite-only maintenance); `None` for a Postgres store.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    /// For messages: the store's file, or its URL without a password.
    pub fn describe(&self) -> String {
        self.location.display()
    }

    /// Open (creating when missing) the SQLite store at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> anyhow::Result<Store> {
        check_store_path(path)?;
        if read_only(path) {
            return Err(crate::exit::hinted(
                format!("the store `{}` is read-only (no write permission on it or its folder)", path.display()),
                "commands that only read it (clusters, cases, report) work; give write access for the others, or pass --db",
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the store folder `{}`", dir.display()))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            // Pages read through a memory map instead of one `pread` each.
            .pragma("mmap_size", "268435456")
            // Checkpoint once the log holds 64 MiB rather than 4 MiB: a first mine writes
            // a few MiB, and a checkpoint inside its commit cost 12 ms of ~270. Closing the
            // store checkpoints what is left.
            .pragma("wal_autocheckpoint", "16384");
        // A new store's first connections switch it to WAL, which takes the file to itself:
        // another process opening it at that moment is refused at once ("database is
        // locked", SQLITE_BUSY = 5, no busy wait). Such a refusal is retried; other errors are not.
        let mut attempt = 0;
        let pool = loop {
            match SqlitePoolOptions::new().max_connections(4).connect_with(options.clone()).await {
                Ok(pool) => break pool,
                Err(e) if attempt < 20 && e.as_database_error().and_then(|d| d.code()).as_deref() == Some("5") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("cannot open the store `{}`", path.display())));
                }
            }
        };
        let store =
            Store { pool: Pool::Sqlite(pool), path: path.to_path_buf(), location: StoreLocation::File(path.into()) };
        // Two processes opening a new store at once both found migrations to apply and the
        // second failed on tables the first had just made: migrations run one process at
        // a time, and each sees what the one before it applied.
        // Only when there is something to apply: a read-only command must not wait for a
        // mine that holds the lock.
        let Pool::Sqlite(pool) = &store.pool else { unreachable!("opened as SQLite") };
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").fetch_one(pool).await.ok();
        let pending = applied.is_none_or(|n| n as usize != MIGRATOR.iter().count());
        let lock = if pending { store.exclusive().await? } else { None };
        let migrated = MIGRATOR.run(pool).await;
        drop(lock);
        // "Newer" only when it is: a full disk or a damaged file fails migrations too.
        let newer = matches!(migrated, Err(sqlx::migrate::MigrateError::VersionMissing(_)));
        migrated.with_context(|| {
            let why = if newer { " (is it from a newer autoharness?)" } else { "" };
            format!("cannot migrate the store `{}`{why}", path.display())
        })?;
        Ok(store)
    }

    /// Wait for, then hold, the store's write lock (`<stem>.lock` beside it) until the
    /// returned guard drops: for read-modify-write work that must not interleave with
    /// another process's (migrations, a whole mine). `None` when the lock file cannot be
    /// made (a read-only folder): then nothing can write there either.
    ///
    /// On Postgres, the lock is an advisory lock held by a connection of its own: it holds
    /// across runners on other machines, where a lock file would not.
    pub async fn exclusive(&self) -> anyhow::Result<Option<StoreLock>> {
        if let Pool::Postgres(pool) = &self.pool {
            let (mut conn, took) = pg_try_lock(pool, PG_WRITE_LOCK).await?;
            if !took {
                tracing::info!("waiting for another autoharness process on this store");
                sqlx::query(PG_LOCK).bind(PG_WRITE_LOCK).execute(&mut conn).await?;
            }
            return Ok(Some(StoreLock::Postgres(conn)));
        }
        let path = crate::lockfile::beside_store(&self.path, ".lock");
        let taken = tokio::task::spawn_blocking(move || {
            let lock = match crate::lockfile::try_lock(&path) {
                Ok(Ok(lock)) => lock,
                Ok(Err(holder)) => {
                    tracing::info!("waiting for another autoharness process on this store ({holder})");
                    crate::lockfile::lock(&path)?
                }
                Err(e) => return Err(e),
            };
            Ok(lock)
        })
        .await?;
        match taken {
            Ok(mut lock) => {
                lock.set_holder(&format!("pid {}", std::process::id()));
                Ok(Some(StoreLock::File(lock)))
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EROFS | libc::EPERM)) => {
                tracing::debug!("no store lock ({e}): the store's folder is read-only");
                Ok(None)
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot lock the store `{}`", self.path.display()))),
        }
    }

    /// Open the store for a command that only reads it: read-only when the file cannot be
    /// written (a shared or archived store), else as [`Store::open`]. A read-only store is
    /// not migrated; one from an older autoharness says so.
    pub async fn open_for_reading(path: &Path) -> anyhow::Result<Store> {
        check_store_path(path)?;
        if !read_only(path) {
            return Store::open(path).await;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")?.filename(path).read_only(true).immutable(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the read-only store `{}`", path.display()))?;
        let store = Store {
            pool: Pool::Sqlite(pool.clone()),
            path: path.to_path_buf(),
            location: StoreLocation::File(path.into()),
        };
        // Immutable reads see the database file only: writes still in a log beside it (a
        // process killed mid-write, a copy taken while one ran) are not read.
        let log = PathBuf::from(format!("{}-wal", path.display()));
        if std::fs::metadata(&log).is_ok_and(|m| m.len() > 0) {
            tracing::warn!(
                "`{}` holds writes not yet folded into the read-only store; they are not shown (open the store once with write access to fold them in)",
                log.display()
            );
        }
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .with_context(|| format!("`{}` is not an autoharness store", path.display()))?;
        if applied < MIGRATOR.iter().count() as i64 {
            anyhow::bail!(
                "the read-only store `{}` is from an older autoharness and cannot be upgraded in place; copy it somewhere writable and pass --db",
                path.display()
            );
        }
        Ok(store)
    }

    /// `PRAGMA quick_check`: `Ok(())` or the problems SQLite found (a torn or overwritten
    /// file). A Postgres server checks its own pages: always `Ok` here.
    pub async fn quick_check(&self) -> anyhow::Result<Result<(), String>> {
        let Pool::Sqlite(pool) = &self.pool else { return Ok(Ok(())) };
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check").fetch_all(pool).await?;
        if rows.len() == 1 && rows[0] == "ok" { Ok(Ok(())) } else { Ok(Err(rows.join("; "))) }
    }

    /// Close the store with everything in its database file. SQLite folds the write-ahead
    /// log in when the last connection closes, but only if that close gets the file to
    /// itself: pooled connections closing at once each saw the others and all skipped it,
    /// leaving the latest writes in `state.db-wal` alone — lost to anyone who copies or
    /// archives `state.db`, and invisible to a read-only open. So checkpoint first.
    pub async fn close(self) {
        let pool = match self.pool {
            Pool::Sqlite(pool) => pool,
            Pool::Postgres(pool) => return pool.close().await,
        };
        // PASSIVE: copy what it can without waiting on, or blocking, another process that is
        // opening or writing the store (a TRUNCATE checkpoint held one off until its open
        // failed "database is locked"); alone on the store, that is the whole log.
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::debug!("no checkpoint on close of `{}`: {e}", self.path.display());
        }
        pool.close().await;
    }
}

/// The store path must name a file (or nothing yet): a folder, a FIFO or a device is
/// refused before SQLite sees it, with the path in the message.
fn check_store_path(path: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(crate::exit::hinted(
            format!("the store `{}` is a directory, not a database file", path.display()),
            "pass --db a file path, e.g. --db .autoharness/state.db",
        )),
        Ok(m) if !m.is_file() => Err(crate::exit::hinted(
            format!("the store `{}` is not a regular file", path.display()),
            "pass --db a file path, e.g. --db .autoharness/state.db",
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!(crate::paths::describe_io(path, &e))),
    }
}

/// Whether the store exists and this process may not write it (or its folder, where
/// SQLite keeps the log).
fn read_only(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let writable = |p: &Path| {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return false };
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    path.exists() && (!writable(path) || !writable(dir))
}

/// A small tokio runtime for commands: the stages are synchronous (rayon) and reach the
/// store through `block_on`.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The rows of a query that returns them as one JSON text (`json_group_array(json_array(…))`),
/// each row an array deserialized in column order. sqlx hands each result row over from
/// its worker thread separately, ~25 µs a row (measured: 8 ms of a 20 ms re-mine for 332
/// failures), so a many-row read is cheaper as one row.
pub(crate) fn parse_rows<T: serde::de::DeserializeOwned>(text: &str, table: &str) -> anyhow::Result<Vec<T>> {
    serde_json::from_str(text).with_context(|| format!("the store's {table} are not readable"))
}

/// Text as the store keeps it: Postgres text cannot hold NUL (a tool's output or a trace's
/// message can: JSON's `\u0000`), so NUL becomes U+FFFD, on both backends alike. JSON
/// columns need no help: serde_json escapes control characters.
pub(crate) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') { std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}")) } else { std::borrow::Cow::Borrowed(s) }
}

/// [`text`] of an optional column.
pub(crate) fn text_opt(s: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    s.map(text)
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
