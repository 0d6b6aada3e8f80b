//! One SQLite file per port: its writer thread, its readers, and how its errors are read.
//!
//! **Writes** run on one thread per file that owns the only writing connection. Callers
//! hand it a closure and await the answer. Whatever is waiting when the thread comes round
//! goes into one `BEGIN IMMEDIATE` transaction, each closure in a savepoint of its own: a
//! closure that fails undoes only its own changes, and every caller hears its answer only
//! after the commit, so an `Ok` survives the process crashing (with `synchronous=NORMAL` a
//! power loss may still take the last commits), and a failed commit fails everyone in it.
//! Many concurrent writes cost one commit (group commit), and no write waits on an async
//! lock or a pool. A write whose caller stopped waiting (its future dropped) before the
//! thread came to it is skipped, as a cancelled future's work should be. A closure holds
//! up every write behind it, so it does nothing but SQL.
//!
//! **Reads** run on the caller's thread, on a connection from a small free list, as SQLite
//! in WAL mode lets them read a snapshot beside the writer: a point read costs
//! microseconds, less than handing it to another thread and waking the caller again.
//!
//! Several processes may share a data folder (worker processes in crash tests), so every
//! connection has a busy timeout, and the writer's transactions take the write lock from
//! their first statement (`BEGIN IMMEDIATE`), so what a closure reads cannot change before
//! it writes, in this process or any other.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backon::{BlockingRetryable, ExponentialBuilder};
use rusqlite::{Connection, ErrorCode};
use tokio::sync::oneshot;

/// How long a statement waits for another process's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most closures in one transaction: enough to share a commit, few enough that the first
/// caller of a long queue does not wait long for its answer.
const MAX_BATCH: usize = 256;
/// Prepared statements kept per connection (every port has fewer distinct statements).
const STATEMENT_CACHE: usize = 64;
/// Reader connections kept open when idle.
const IDLE_READERS: usize = 8;

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

/// An error of the database itself (not of what a closure decided), classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub class: ErrorClass,
    pub message: String,
}

impl DbError {
    fn unavailable(message: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Unavailable,
            message: message.into(),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        Self {
            class: classify(&e),
            message: e.to_string(),
        }
    }
}

/// Classifies an error by its SQLite result code.
pub fn classify(e: &rusqlite::Error) -> ErrorClass {
    const CONSTRAINT_PRIMARYKEY: i32 = 1555;
    const CONSTRAINT_UNIQUE: i32 = 2067;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::ConstraintViolation
                if matches!(f.extended_code, CONSTRAINT_PRIMARYKEY | CONSTRAINT_UNIQUE) =>
            {
                ErrorClass::Unique
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen => ErrorClass::Unavailable,
            _ => ErrorClass::Other,
        },
        _ => ErrorClass::Other,
    }
}

/// One caller's closure, as the writer thread sees it.
trait Op: Send {
    /// Runs the closure in the open transaction; false if it failed, so that its changes
    /// are to be undone.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction is committed (`Ok`) or lost.
    fn finish(self: Box<Self>, committed: Result<(), &DbError>);
}

struct Pending<F, T, E> {
    work: Option<F>,
    outcome: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Op for Pending<F, T, E>
where
    F: FnOnce(&Connection) -> Result<T, E> + Send,
    T: Send,
    E: From<DbError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let work = self.work.take().expect("a write runs once");
        // A caller that stopped waiting (its future dropped) has nothing done, as if its
        // write had never reached this thread: a receive dropped at a stop then takes no
        // message that nobody would hold until its visibility timeout.
        if self.reply.is_closed() {
            return true;
        }
        let outcome = work(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn finish(self: Box<Self>, committed: Result<(), &DbError>) {
        let answer = match (self.outcome, committed) {
            // Its own failure stands: its changes were undone whatever the commit did.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(E::from(e.clone())),
            (None, Ok(())) => Err(E::from(DbError {
                class: ErrorClass::Other,
                message: "the write panicked; its changes were undone".into(),
            })),
        };
        // A caller that stopped waiting does not need its answer.
        let _ = self.reply.send(answer);
    }
}

/// A SQLite file opened for one port.
pub struct Db {
    path: PathBuf,
    writer: mpsc::Sender<Box<dyn Op>>,
    readers: Mutex<Vec<Connection>>,
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// Settings every connection of the file shares. SQLite's temporary files (a savepoint's
/// statement journal past 64 KiB, a sort too big for memory) stay in memory: on disk each
/// would be a file made and deleted at once, and on ext4 without a journal every deleted
/// inode slows the next minutes' file creations (the blob folder makes several per job).
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(conn)
}

/// Why the writer's connection could not be made: `locked` if another connection held the
/// file (worth another try), else at once (a path that cannot be opened, a full disk).
struct OpenFailure {
    error: DbError,
    locked: bool,
}

impl From<rusqlite::Error> for OpenFailure {
    fn from(e: rusqlite::Error) -> Self {
        let locked = matches!(
            &e,
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        );
        Self {
            error: e.into(),
            locked,
        }
    }
}

/// How a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL`: a commit is in the OS's hands when its callers hear of it,
    /// and a power loss may take the last ones (never a commit's half). The ports' files.
    Normal,
    /// `synchronous=FULL`: the WAL is synced before the commit's callers hear of it. The
    /// blob folder's intent log, which stands in for the objects' own syncs.
    Full,
}

/// The writer's connection, in WAL mode. Two processes opening a new file at once (an API
/// and a worker on a fresh data folder) can find it locked while the other one switches it
/// to WAL: SQLite answers that at once, not after the busy timeout, so the opener retries.
fn open_writer(path: &Path, durability: Durability) -> Result<Connection, OpenFailure> {
    let conn = connect(path)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenFailure {
            error: DbError::unavailable(format!(
                "{} cannot use WAL mode (it is in {mode} mode)",
                path.display()
            )),
            // Also what SQLite answers while another connection holds the file.
            locked: true,
        });
    }
    let synchronous = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    // No schema declares one yet, but a declared constraint is one to keep.
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Retries of an open that found the file locked: well past another opener's switch to WAL.
fn opening_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(5))
        .with_max_delay(Duration::from_millis(500))
        .with_max_times(20)
        .with_jitter()
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

impl Db {
    /// Opens (creating if missing) the file at `path` and starts its writer thread.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(path, Durability::Normal))
            .await
            .map_err(|e| DbError::unavailable(format!("opening the database: {e}")))?
    }

    /// [`Db::open`] on this thread, with commits as durable as asked.
    pub fn open_blocking(path: PathBuf, durability: Durability) -> Result<Self, DbError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| DbError::unavailable(format!("{}: {e}", parent.display())))?;
        }
        // Retried while the file is locked, for no longer than one busy timeout in all (a
        // lock that outlasted a statement's own wait is not an opener's switch to WAL).
        let started = Instant::now();
        let conn = (|| open_writer(&path, durability))
            .retry(opening_backoff())
            .sleep(std::thread::sleep)
            .when(|f| f.locked && started.elapsed() < BUSY_TIMEOUT)
            .call()
            .map_err(|f| f.error)?;
        let (writer, queue) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = commits.clone();
        std::thread::Builder::new()
            .name(writer_name(&path))
            .spawn(move || write_loop(&conn, &queue, &counter))
            .map_err(|e| DbError::unavailable(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            path,
            writer,
            readers: Mutex::new(Vec::new()),
            commits,
        })
    }

    /// Runs `work` on the writer thread, in a transaction shared with whatever other
    /// writes are waiting, and answers once that transaction is committed. An `Err` from
    /// `work` undoes its own changes only.
    pub async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let answer = self.send(work)?;
        answer.await.unwrap_or_else(|_| Err(E::from(unanswered())))
    }

    /// [`Db::write`] from a thread that may block (the blocking pool, a thread of its
    /// own; never a runtime's worker).
    pub fn write_blocking<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let answer = self.send(work)?;
        answer
            .blocking_recv()
            .unwrap_or_else(|_| Err(E::from(unanswered())))
    }

    /// Hands `work` to the writer thread; the receiver gets its answer.
    fn send<T, E, F>(&self, work: F) -> Result<oneshot::Receiver<Result<T, E>>, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Box::new(Pending {
            work: Some(work),
            outcome: None,
            reply,
        });
        match self.writer.send(op) {
            Ok(()) => Ok(answer),
            Err(_) => Err(E::from(DbError::unavailable("the writer thread stopped"))),
        }
    }

    /// Runs `work` on a reader connection, on this thread: a snapshot of the last commit.
    pub fn read<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
        E: From<DbError>,
    {
        let idle = self.readers.lock().expect("readers lock").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open_reader().map_err(E::from)?,
        };
        let outcome = work(&conn);
        let mut readers = self.readers.lock().expect("readers lock");
        if readers.len() < IDLE_READERS {
            readers.push(conn);
        }
        outcome
    }

    /// [`Db::read`] on the blocking pool: for a read that scans (a queue's depth), so its
    /// milliseconds do not hold one of the runtime's threads.
    pub async fn read_scan<T, E, F>(self: &Arc<Self>, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let db = self.clone();
        match tokio::task::spawn_blocking(move || db.read(work)).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(E::from(DbError::unavailable(format!(
                "the read task stopped: {e}"
            )))),
        }
    }

    fn open_reader(&self) -> Result<Connection, DbError> {
        let conn = connect(&self.path)?;
        // Kept to reads by SQLite itself, not only by the code.
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }

    /// Runs schema statements (each idempotent: `CREATE … IF NOT EXISTS`) in one transaction.
    pub async fn migrate(&self, statements: &'static [&'static str]) -> Result<(), DbError> {
        self.write(move |conn| {
            for statement in statements {
                conn.execute_batch(statement)?;
            }
            Ok(())
        })
        .await
    }

    /// Transactions committed by this opener so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::SeqCst)
    }
}

/// The writer thread's name, after its file (`db-tables` for `tables.db`): profiles and
/// `top -H` tell the files apart (Linux shows the first 15 bytes).
fn writer_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("sqlite");
    format!("db-{stem}")
}

fn unanswered() -> DbError {
    DbError::unavailable("the writer thread stopped before answering")
}

/// The writer thread: until the `Db` is dropped, takes what is waiting and commits it.
fn write_loop(conn: &Connection, queue: &mpsc::Receiver<Box<dyn Op>>, commits: &AtomicU64) {
    let mut waiting: VecDeque<Box<dyn Op>> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match queue.recv() {
                Ok(op) => waiting.push_back(op),
                Err(_) => return,
            }
        }
        while waiting.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => waiting.push_back(op),
                Err(_) => break,
            }
        }
        let mut ran = Vec::with_capacity(waiting.len());
        let committed = run_batch(conn, &mut waiting, &mut ran);
        if committed == Ok(true) {
            commits.fetch_add(1, Ordering::SeqCst);
        }
        for op in ran {
            op.finish(committed.as_ref().map(|_| ()));
        }
    }
}

/// Runs the waiting closures in one transaction, moving each to `ran` as it runs, and
/// commits (`Ok(true)`; `Ok(false)`: a lone closure failed, so there was nothing to
/// commit). Closures left in `waiting` (an error ended the transaction before them) go
/// into the next one.
fn run_batch(
    conn: &Connection,
    waiting: &mut VecDeque<Box<dyn Op>>,
    ran: &mut Vec<Box<dyn Op>>,
) -> Result<bool, DbError> {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        ran.extend(waiting.drain(..));
        return Err(e.into());
    }
    // One closure alone needs no savepoint: its failure undoes the whole transaction.
    let alone = waiting.len() == 1;
    let outcome = (|| {
        while let Some(mut op) = waiting.pop_front() {
            if !alone {
                exec(conn, "SAVEPOINT op")?;
            }
            let ok = catch_unwind(AssertUnwindSafe(|| op.run(conn))).unwrap_or(false);
            ran.push(op);
            if conn.is_autocommit() {
                // SQLite itself rolled the transaction back (a full disk, an I/O error).
                return Err(DbError::unavailable(
                    "the transaction was rolled back by SQLite",
                ));
            }
            match (ok, alone) {
                (true, true) => {}
                (true, false) => exec(conn, "RELEASE op")?,
                (false, true) => {
                    exec(conn, "ROLLBACK")?;
                    return Ok(false);
                }
                (false, false) => {
                    exec(conn, "ROLLBACK TO op")?;
                    exec(conn, "RELEASE op")?;
                }
            }
        }
        Ok(true)
    })();
    match outcome {
        Ok(true) => match exec(conn, "COMMIT") {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = exec(conn, "ROLLBACK");
                Err(e.into())
            }
        },
        // The lone closure failed and was rolled back: its own error is its answer.
        Ok(false) => Ok(false),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = exec(conn, "ROLLBACK");
            }
            Err(e)
        }
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

    async fn open(dir: &tempfile::TempDir) -> Db {
        let db = Db::open(&dir.path().join("x.db")).await.unwrap();
        db.migrate(&["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)"])
            .await
            .unwrap();
        db
    }

    fn insert(k: &'static str) -> impl FnOnce(&Connection) -> Result<(), DbError> {
        move |conn| {
            conn.execute("INSERT INTO t VALUES (?)", [k])?;
            Ok(())
        }
    }

    /// `PRAGMA temp_store`: 2 is MEMORY.
    fn temp_store(conn: &Connection) -> Result<i64, DbError> {
        Ok(conn.pragma_query_value(None, "temp_store", |r| r.get(0))?)
    }

    #[tokio::test]
    async fn temporary_files_stay_in_memory_on_every_connection() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        assert_eq!(db.write(temp_store).await.unwrap(), 2);
        assert_eq!(db.read(temp_store).unwrap(), 2);
    }

    fn keys(db: &Db) -> Vec<String> {
        db.read(|conn| -> Result<_, DbError> {
            let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })
        .unwrap()
    }

    /// Holds the writer thread until the returned sender is dropped or sent to; returns
    /// once the writer is inside the held write.
    async fn block_writer(
        db: &Arc<Db>,
    ) -> (
        std::sync::mpsc::Sender<()>,
        tokio::task::JoinHandle<Result<(), DbError>>,
    ) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, writer_held) = oneshot::channel::<()>();
        let db = db.clone();
        let blocked = tokio::spawn(async move {
            db.write(move |_| -> Result<(), DbError> {
                let _ = started.send(());
                let _ = held.recv();
                Ok(())
            })
            .await
        });
        writer_held.await.expect("the held write runs");
        (release, blocked)
    }

    type Call = futures::future::BoxFuture<'static, Result<(), DbError>>;

    /// A write of `work`, queued at the writer before this returns (a write hands its work
    /// to the writer on its first poll), its answer still to come.
    async fn queued<F>(db: &Arc<Db>, work: F) -> Call
    where
        F: FnOnce(&Connection) -> Result<(), DbError> + Send + 'static,
    {
        let db = db.clone();
        let mut call: Call = Box::pin(async move { db.write(work).await });
        assert!(
            futures::poll!(call.as_mut()).is_pending(),
            "the writer is held"
        );
        call
    }

    #[tokio::test]
    async fn opens_in_wal_mode_and_classifies_unique_violations() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir).await;
        db.migrate(&["CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)"])
            .await
            .unwrap();
        let mode: String = db
            .read(|c| -> Result<_, DbError> {
                Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(mode, "wal");
        db.write(insert("a")).await.unwrap();
        let e = db.write(insert("a")).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::Unique);
        assert_eq!(keys(&db), ["a"], "a reader sees what the writer committed");
        let refused =
            db.read(|c| -> Result<_, DbError> { Ok(c.execute("INSERT INTO t VALUES ('b')", [])?) });
        assert!(refused.is_err(), "readers cannot write");
    }

    /// Writes made while the writer is busy share one commit; one that fails undoes only
    /// its own changes, and one that panics fails only itself.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_writes_share_one_commit_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open(&dir).await);
        let (release, blocked) = block_writer(&db).await;
        let before = db.commits();
        let mut calls = Vec::new();
        for k in ["a", "b", "c"] {
            calls.push(queued(&db, insert(k)).await);
        }
        let failing = queued(&db, |conn| {
            conn.execute("INSERT INTO t VALUES ('undone')", [])?;
            conn.execute("INSERT INTO t VALUES ('undone')", [])?;
            Ok(())
        })
        .await;
        let panicking = queued(&db, |conn| {
            conn.execute("INSERT INTO t VALUES ('panicked')", [])
                .unwrap();
            panic!("a bug in a write");
        })
        .await;
        release.send(()).unwrap();
        blocked.await.unwrap().unwrap();
        for call in calls {
            call.await.unwrap();
        }
        let failed = failing.await.unwrap_err();
        assert_eq!(failed.class, ErrorClass::Unique);
        assert!(panicking.await.is_err());
        assert_eq!(keys(&db), ["a", "b", "c"]);
        assert_eq!(
            db.commits() - before,
            2,
            "the blocking write's commit, then one for the five queued behind it"
        );
    }

    /// A write whose caller stopped waiting before the writer came to it is not done; the
    /// writes beside it are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_dropped_before_it_runs_is_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open(&dir).await);
        let (release, blocked) = block_writer(&db).await;
        let kept = queued(&db, insert("kept")).await;
        let dropped = queued(&db, insert("dropped")).await;
        drop(dropped);
        release.send(()).unwrap();
        blocked.await.unwrap().unwrap();
        kept.await.unwrap();
        assert_eq!(keys(&db), ["kept"]);
    }

    /// A commit that fails fails every write in it, all of their changes undone, and the
    /// writer goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_commit_fails_every_write_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open(&dir).await);
        // A deferred foreign key fails at COMMIT, not at the statement.
        db.migrate(&[
            "CREATE TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)",
            "CREATE TABLE IF NOT EXISTS child (p INTEGER REFERENCES parent (id)
                DEFERRABLE INITIALLY DEFERRED)",
        ])
        .await
        .unwrap();
        let (release, blocked) = block_writer(&db).await;
        let good = queued(&db, insert("good")).await;
        let orphan = queued(&db, |c| {
            c.execute("INSERT INTO child VALUES (42)", [])?;
            Ok(())
        })
        .await;
        release.send(()).unwrap();
        blocked.await.unwrap().unwrap();
        assert!(good.await.is_err());
        assert!(orphan.await.is_err());
        assert!(keys(&db).is_empty());
        db.write(insert("after")).await.unwrap();
        assert_eq!(keys(&db), ["after"]);
    }
}
