//! One SQLite file per port: how it is opened and how its errors are read.
//!
//! Several processes may share a data folder (worker processes in crash tests), so every
//! file runs in WAL mode with a busy timeout, and every read-then-write goes through
//! `BEGIN IMMEDIATE` (or is one statement), never a deferred transaction that upgrades its
//! lock later and fails with `SQLITE_BUSY` instead of waiting.
//!
//! Inside one process, writes go through one connection behind an async mutex: the mutex
//! orders the writers without touching SQLite's busy handler, whose sleeps (up to 100 ms
//! each) would cost far more than the wait in line, and a held connection costs a fraction
//! of a pool checkout per statement.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Sqlite, Transaction};
use tokio::sync::{Mutex, MutexGuard};

/// How long a statement waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Readers that run beside the writer (WAL lets them read a snapshot without waiting).
const READERS: u32 = 4;

/// A SQLite file opened for one port: a single writer and a few readers.
#[derive(Debug)]
pub struct Db {
    write: Mutex<SqliteConnection>,
    read: SqlitePool,
}

impl Db {
    /// Opens (creating if missing) the file at `path`.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false);
        let write = options.connect().await?;
        // The readers could open read-only, but a read-only connection cannot create the
        // WAL index a fresh file needs; the code keeps them to reads instead.
        let read = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(Duration::from_secs(120))
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Self {
            write: Mutex::new(write),
            read,
        })
    }

    /// The writer, for every statement that changes the file; held until the guard drops.
    pub async fn writer(&self) -> MutexGuard<'_, SqliteConnection> {
        self.write.lock().await
    }

    /// A reader: statements that only read.
    pub fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// Runs schema statements (each idempotent: `CREATE … IF NOT EXISTS`) in one transaction.
    pub async fn migrate(&self, statements: &[&str]) -> Result<(), sqlx::Error> {
        let mut writer = self.writer().await;
        let mut tx = begin_immediate(&mut writer).await?;
        for statement in statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await
    }
}

/// Starts a write transaction that holds the write lock from its first statement, so
/// what it reads cannot change before it writes, in this process or any other.
pub async fn begin_immediate(
    writer: &mut SqliteConnection,
) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
    writer.begin_with("BEGIN IMMEDIATE").await
}

/// What an SQLite error means to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Another writer held the file too long, or the disk is full or gone: retry later.
    Unavailable,
    /// A UNIQUE or PRIMARY KEY constraint refused the row.
    Unique,
    /// Anything else: a bug or a broken file.
    Other,
}

/// Classifies an error by its SQLite result code.
pub fn classify(e: &sqlx::Error) -> ErrorClass {
    match e {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return ErrorClass::Unique;
            }
            // Primary result codes are the low byte of extended codes.
            let primary = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            match primary {
                // BUSY, LOCKED, IOERR, FULL, CANTOPEN
                Some(5 | 6 | 10 | 13 | 14) => ErrorClass::Unavailable,
                _ => ErrorClass::Other,
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            ErrorClass::Unavailable
        }
        sqlx::Error::WorkerCrashed => ErrorClass::Unavailable,
        _ => ErrorClass::Other,
    }
}

/// Milliseconds since the Unix epoch: the clock every row's timing is kept in, so that
/// processes sharing a file agree on it.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A duration in whole milliseconds, saturating.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_in_wal_mode_and_classifies_unique_violations() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("x.db")).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *db.writer().await)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        db.migrate(&["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)"])
            .await
            .unwrap();
        db.migrate(&["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)"])
            .await
            .unwrap();
        sqlx::query("INSERT INTO t VALUES ('a')")
            .execute(&mut *db.writer().await)
            .await
            .unwrap();
        let e = sqlx::query("INSERT INTO t VALUES ('a')")
            .execute(&mut *db.writer().await)
            .await
            .unwrap_err();
        assert_eq!(classify(&e), ErrorClass::Unique);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(db.reader())
            .await
            .unwrap();
        assert_eq!(n, 1, "a reader sees what the writer committed");
    }
}
