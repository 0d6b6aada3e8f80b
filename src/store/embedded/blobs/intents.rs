//! The folder's intent log: small objects made durable by one shared SQLite commit, not
//! by syncing each file and folder.
//!
//! A small put writes its file (temporary file, type attribute, rename into place) without
//! syncing it, and records the object's bytes and type in `<root>/.intents/intents.db` in
//! the same write transaction as the rename (`synchronous=FULL`: the put's caller hears
//! `Ok` only once the record is on disk). Puts waiting at once share one commit, and so one
//! sync, where each file and folder had synced on its own (a kustomization's four files and
//! three folders were seven syncs). The file is readable at once: the page cache holds it
//! and outlives any crash of a process. Only a crash of the machine can lose it, and then
//! the record brings it back:
//!
//! - **Flush.** A thread of the log, a moment after records were written, notes the
//!   highest record, syncs the whole filesystem (`syncfs`: every file written before, in
//!   any process, one cache flush for all of them), then deletes the records up to that
//!   one. The log holds only the last moment's objects.
//! - **Replay.** The log keeps the id of the boot that last opened it. The first open after
//!   the machine restarted (any other boot id) writes every record's object again, each
//!   synced as an unlogged put is, before anything else can use the folder (it holds the
//!   log's write lock meanwhile, so other processes opening wait), then empties the log.
//!   A process that merely crashed leaves records its own boot's flushes will delete.
//!
//! Every change of an object goes through the log's write transaction in the order its
//! file changes, so a record is always the object's latest bytes: a put records or replaces
//! it, a delete or a larger (synced) put removes it, and a move carries it to the
//! destination under a new id (a flush under way, which noted the ids before the move,
//! cannot then delete it before the moved name is synced).
//!
//! ZFS keeps synchronous writes this way (its intent log, with the data written out in the
//! next transaction group), and Ceph's BlueStore defers small writes through its RocksDB
//! log. Where the machine has no boot id (not Linux) or the folder keeps types in sidecar
//! files, there is no log and every object is synced as before.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::blobs::BlobError;
use crate::store::embedded::db::{Db, DbError, Durability, ErrorClass};

/// Objects up to this size are logged; larger ones are synced as files.
pub const LOGGED_MAX: usize = 64 * 1024;

/// Content types up to this length are logged (a type attribute this small always fits).
pub const LOGGED_TYPE_MAX: usize = 255;

/// How long after a logged write the log is flushed: long enough to share one filesystem
/// sync among many objects, short enough that the log stays small.
pub const FLUSH_DELAY: Duration = Duration::from_millis(250);

/// The page cache of the log's writer, in KiB: a few moments of records.
const LOG_CACHE_KIB: i64 = 8 * 1024;

const SCHEMA: &[&str] = &[
    // One record per object; `id` grows for ever (AUTOINCREMENT): a flush deletes the ids
    // it noted, and a later record must never reuse one.
    "CREATE TABLE IF NOT EXISTS intents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        bucket TEXT NOT NULL,
        key TEXT NOT NULL,
        content_type TEXT,
        body BLOB NOT NULL,
        UNIQUE (bucket, key)
    )",
    "CREATE TABLE IF NOT EXISTS boot (
        one INTEGER PRIMARY KEY CHECK (one = 1),
        id TEXT NOT NULL
    )",
];

impl From<DbError> for BlobError {
    fn from(e: DbError) -> Self {
        match e.class {
            ErrorClass::Unavailable => Self::Unavailable(e.to_string()),
            _ => Self::Backend(format!("the intent log: {e}")),
        }
    }
}

fn sql_error(e: rusqlite::Error) -> BlobError {
    DbError::from(e).into()
}

/// A logged object as replay writes it back.
pub struct Record {
    pub bucket: String,
    pub key: String,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// The log of one folder, in this process.
pub struct IntentLog {
    db: Arc<Db>,
    /// Wakes the flush thread after a write.
    wake: mpsc::Sender<()>,
}

/// This boot of the machine, as Linux names it; `None` where there is no such name.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}

impl IntentLog {
    /// Opens the log of the folder at `root` for boot `boot`. If the log was last opened in
    /// another boot, first `replay`s each record (which must sync what it writes) and
    /// empties the log. Blocks: call from the blocking pool.
    pub fn open(
        root: &Path,
        boot: &str,
        flush_delay: Duration,
        replay: impl FnMut(Record) -> Result<(), BlobError>,
    ) -> Result<Self, BlobError> {
        let path = log_path(root);
        let db = Arc::new(Db::open_blocking(path.clone(), Durability::Full)?);
        db.write_blocking(|conn| {
            // A flush deletes the records of the last moment, whose pages (a record is
            // about one page, and one of overflow) are then still in the writer's cache.
            conn.pragma_update(None, "cache_size", -LOG_CACHE_KIB)?;
            SCHEMA
                .iter()
                .try_for_each(|statement| conn.execute_batch(statement))
                .map_err(DbError::from)
        })?;
        let left = recover(&path, boot, replay)?;
        let (wake, woken) = mpsc::channel();
        let root_dir = File::open(root).map_err(|e| BlobError::Backend(e.to_string()))?;
        let flusher = db.clone();
        std::thread::Builder::new()
            .name("blob-intents".into())
            .spawn(move || flush_loop(&flusher, &root_dir, &woken, flush_delay))
            .map_err(|e| BlobError::Backend(format!("starting the intent log's thread: {e}")))?;
        if left {
            // Records of this boot's crashed processes: flushed as new ones would be.
            let _ = wake.send(());
        }
        Ok(Self { db, wake })
    }

    /// Runs `work` (a change of the folder's files, and of the log's records to match) in
    /// one write transaction of the log, and answers once it is committed. Blocks.
    pub fn commit<T, F>(&self, work: F) -> Result<T, BlobError>
    where
        F: FnOnce(&Connection) -> Result<T, BlobError> + Send + 'static,
        T: Send + 'static,
    {
        let out = self.db.write_blocking(work)?;
        // The thread is gone only with the log itself.
        let _ = self.wake.send(());
        Ok(out)
    }

    /// Records kept, for tests.
    #[cfg(test)]
    pub fn records(&self) -> usize {
        self.db
            .read(|c| {
                c.query_row("SELECT count(*) FROM intents", [], |r| r.get::<_, i64>(0))
                    .map_err(DbError::from)
            })
            .map_or(0, |n| n as usize)
    }
}

/// Records the object's latest bytes and type (replacing any record of it, under a new id).
pub fn record(
    conn: &Connection,
    bucket: &str,
    key: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), BlobError> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO intents (bucket, key, content_type, body) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![bucket, key, content_type, body]))
    .map(drop)
    .map_err(sql_error)
}

/// Removes the object's record, if any: its file is synced, or gone.
pub fn forget(conn: &Connection, bucket: &str, key: &str) -> Result<(), BlobError> {
    conn.prepare_cached("DELETE FROM intents WHERE bucket = ?1 AND key = ?2")
        .and_then(|mut s| s.execute(params![bucket, key]))
        .map(drop)
        .map_err(sql_error)
}

/// Moves the source object's record to the destination under a new id, replacing the
/// destination's; `false` if the source had none (its file is synced, so the moved name
/// is the caller's to sync).
pub fn carry(
    conn: &Connection,
    [src_bucket, src_key, dst_bucket, dst_key]: [&str; 4],
) -> Result<bool, BlobError> {
    forget(conn, dst_bucket, dst_key)?;
    let moved = conn
        .prepare_cached(
            "INSERT INTO intents (bucket, key, content_type, body)
             SELECT ?3, ?4, content_type, body FROM intents WHERE bucket = ?1 AND key = ?2",
        )
        .and_then(|mut s| s.execute(params![src_bucket, src_key, dst_bucket, dst_key]))
        .map_err(sql_error)?;
    forget(conn, src_bucket, src_key)?;
    Ok(moved > 0)
}

/// Replays the log if it was last opened in another boot; `true` if records of this boot
/// are left to flush. On a connection of its own, holding the write lock throughout.
fn recover(
    path: &Path,
    boot: &str,
    mut replay: impl FnMut(Record) -> Result<(), BlobError>,
) -> Result<bool, BlobError> {
    let conn = Connection::open(path).map_err(sql_error)?;
    conn.busy_timeout(Duration::from_secs(30))
        .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
        .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"))
        .map_err(sql_error)?;
    let last: Option<String> = conn
        .query_row("SELECT id FROM boot WHERE one = 1", [], |r| r.get(0))
        .optional()
        .map_err(sql_error)?;
    if last.as_deref() == Some(boot) {
        let left: i64 = conn
            .query_row("SELECT count(*) FROM intents", [], |r| r.get(0))
            .map_err(sql_error)?;
        conn.execute_batch("COMMIT").map_err(sql_error)?;
        return Ok(left > 0);
    }
    let records = read_records(&conn)?;
    let replayed = records.len();
    for record in records {
        let (bucket, key) = (record.bucket.clone(), record.key.clone());
        match replay(record) {
            Ok(()) => {}
            // A bucket removed by hand since: nothing to put the object back into.
            Err(BlobError::NoSuchBucket(_)) => {
                tracing::warn!(%bucket, %key, "the intent log holds an object of a bucket that is gone; dropped it");
            }
            Err(e) => return Err(e),
        }
    }
    conn.execute_batch("DELETE FROM intents")
        .and_then(|()| {
            conn.execute(
                "INSERT OR REPLACE INTO boot (one, id) VALUES (1, ?1)",
                [boot],
            )
        })
        .and_then(|_| conn.execute_batch("COMMIT"))
        .map_err(sql_error)?;
    if replayed > 0 {
        tracing::warn!(
            log = %path.display(),
            replayed,
            "the machine restarted with objects only in the blob folder's intent log; wrote them again"
        );
    }
    Ok(false)
}

fn read_records(conn: &Connection) -> Result<Vec<Record>, BlobError> {
    let mut select = conn
        .prepare("SELECT bucket, key, content_type, body FROM intents ORDER BY id")
        .map_err(sql_error)?;
    let rows = select
        .query_map([], |r| {
            Ok(Record {
                bucket: r.get(0)?,
                key: r.get(1)?,
                content_type: r.get(2)?,
                body: Bytes::from(r.get::<_, Vec<u8>>(3)?),
            })
        })
        .map_err(sql_error)?;
    rows.collect::<Result<_, _>>().map_err(sql_error)
}

/// The flush thread: after each wake-up, waits `delay` (gathering more writes), then
/// flushes; once the log is dropped, flushes what is left and ends. A failed flush is
/// tried again after another `delay`.
fn flush_loop(db: &Db, root: &File, woken: &mpsc::Receiver<()>, delay: Duration) {
    let mut owed = false;
    loop {
        let open = if owed {
            match woken.recv_timeout(delay) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => true,
                Err(mpsc::RecvTimeoutError::Disconnected) => false,
            }
        } else {
            woken.recv().is_ok()
        };
        if open {
            std::thread::sleep(delay);
        }
        // Every write that woke this thread so far is committed, so the ids noted next
        // cover it.
        while woken.try_recv().is_ok() {}
        owed = match flush(db, root) {
            Ok(()) => false,
            Err(error) => {
                tracing::warn!(%error, "flushing the blob folder's intent log failed; trying again");
                true
            }
        };
        if !open {
            return;
        }
    }
}

/// Syncs the filesystem, then deletes the records written before the sync began.
fn flush(db: &Db, root: &File) -> Result<(), BlobError> {
    let last: Option<i64> = db.read(|c| {
        c.query_row("SELECT max(id) FROM intents", [], |r| r.get(0))
            .map_err(DbError::from)
    })?;
    let Some(last) = last else {
        return Ok(());
    };
    sync_filesystem(root).map_err(|e| BlobError::Backend(format!("syncing the folder: {e}")))?;
    db.write_blocking(move |c| {
        c.prepare_cached("DELETE FROM intents WHERE id <= ?1")
            .and_then(|mut s| s.execute([last]))
            .map(drop)
            .map_err(DbError::from)
    })?;
    Ok(())
}

/// Writes every dirty file of the filesystem holding `root` to the disk, and flushes its
/// cache (Linux reports a write-back error of any of them here).
#[cfg(target_os = "linux")]
fn sync_filesystem(root: &File) -> io::Result<()> {
    rustix::fs::syncfs(root).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_: &File) -> io::Result<()> {
    // There is no log without a boot id, which only Linux gives.
    Err(io::ErrorKind::Unsupported.into())
}

/// Where the log of the folder at `root` lives.
pub fn log_path(root: &Path) -> PathBuf {
    root.join(".intents").join("intents.db")
}
