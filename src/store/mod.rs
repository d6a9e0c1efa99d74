//! The SQLite state file (through sqlx): one file links the whole lineage, queryable with
//! `sqlite3`. Opened in WAL mode with a busy timeout so a second process can read (and
//! wait to write) while another works. Migrations are embedded in the binary.
//!
//! **Architecture Invariant:** every write that belongs together happens in one
//! transaction, so a crash or a bad file never leaves half a record behind.

pub mod gates;
pub mod judgements;
pub mod mine;
pub mod runs;
pub mod shards;
pub mod traces;
pub mod trials;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone)]
pub struct Store {
    pub pool: SqlitePool,
    pub path: PathBuf,
}

impl Store {
    /// Open (creating when missing) the store at `path` and bring its schema up to date.
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
        let store = Store { pool, path: path.to_path_buf() };
        // Two processes opening a new store at once both found migrations to apply and the
        // second failed on tables the first had just made: migrations run one process at
        // a time, and each sees what the one before it applied.
        // Only when there is something to apply: a read-only command must not wait for a
        // mine that holds the lock.
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success").fetch_one(&store.pool).await.ok();
        let pending = applied.is_none_or(|n| n as usize != MIGRATOR.iter().count());
        let lock = if pending { store.exclusive().await? } else { None };
        let migrated = MIGRATOR.run(&store.pool).await;
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
    pub async fn exclusive(&self) -> anyhow::Result<Option<crate::lockfile::FileLock>> {
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
                Ok(Some(lock))
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
        let store = Store { pool, path: path.to_path_buf() };
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
            .fetch_one(&store.pool)
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

    /// `PRAGMA quick_check`: `Ok(())` or the problems SQLite found (a torn or overwritten file).
    pub async fn quick_check(&self) -> anyhow::Result<Result<(), String>> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check").fetch_all(&self.pool).await?;
        if rows.len() == 1 && rows[0] == "ok" { Ok(Ok(())) } else { Ok(Err(rows.join("; "))) }
    }

    /// Close the store with everything in its database file. SQLite folds the write-ahead
    /// log in when the last connection closes, but only if that close gets the file to
    /// itself: pooled connections closing at once each saw the others and all skipped it,
    /// leaving the latest writes in `state.db-wal` alone — lost to anyone who copies or
    /// archives `state.db`, and invisible to a read-only open. So checkpoint first.
    pub async fn close(self) {
        // PASSIVE: copy what it can without waiting on, or blocking, another process that is
        // opening or writing the store (a TRUNCATE checkpoint held one off until its open
        // failed "database is locked"); alone on the store, that is the whole log.
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await {
            tracing::debug!("no checkpoint on close of `{}`: {e}", self.path.display());
        }
        self.pool.close().await;
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

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
