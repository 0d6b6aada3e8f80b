//! The Queue port on SQLite, with SQS semantics: one row per message, hidden by moving its
//! `visible_at_ms` forward, counted on every receive, and moved to the dead-letter queue by
//! the receive that finds it has been received `max_receive_count` times already.
//!
//! A receive is one statement (`UPDATE … RETURNING`, which also makes the dead-letter
//! moves), so two receivers, in this process or another, never hold the same message, and
//! a batch costs one statement. Every write goes to the file's writer thread, which commits
//! the writes made at the same time together (see `db`), so a job's send and delete cost a
//! share of one commit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::time::Instant;

use super::db::{millis, now_ms, Db, DbError, ErrorClass};
use super::wakers::Wakers;
use crate::store::queue::{
    Delivery, Forwarded, OutMessage, Queue, QueueDepth, QueueError, QueueSpec, ReceiveOptions,
};
pub(super) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS queues (
        name TEXT PRIMARY KEY,
        visibility_ms INTEGER NOT NULL,
        retention_ms INTEGER NOT NULL,
        dead_letter_queue TEXT,
        max_receive_count INTEGER
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY,
        queue TEXT NOT NULL,
        message_id TEXT NOT NULL,
        body TEXT NOT NULL,
        attributes TEXT NOT NULL,
        sent_at_ms INTEGER NOT NULL,
        visible_at_ms INTEGER NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        receipt TEXT
    )",
    "CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at_ms)",
];

/// SQS limits, kept so that code written against this adapter also runs on SQS.
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
const MAX_WAIT: Duration = Duration::from_secs(20);
const MAX_BODY_BYTES: usize = 256 * 1024;
const MIN_RETENTION: Duration = Duration::from_secs(60);
const MAX_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// How often a long poll looks again when no send in this process woke it (another
/// process sent, or a delay or visibility timeout ran out).
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A queue's settings are re-read this often, so a change made by another process shows.
const CONFIG_TTL: Duration = Duration::from_secs(5);
/// Expired messages are deleted at most this often per queue (reads skip them anyway).
const PURGE_INTERVAL_MS: i64 = 60_000;

/// A queue's row in `queues`.
#[derive(Debug, Clone)]
struct QueueConfig {
    visibility_ms: i64,
    retention_ms: i64,
    dead_letter: Option<(String, i64)>,
}

/// The embedded queue: every queue in one SQLite file.
pub struct SqliteQueue {
    db: Arc<Db>,
    configs: RwLock<HashMap<String, (Arc<QueueConfig>, Instant)>>,
    /// Wakes long polls of this process when a message is sent or released.
    wakers: Wakers,
    last_purge: Mutex<HashMap<String, i64>>,
}

impl From<DbError> for QueueError {
    fn from(e: DbError) -> Self {
        match e.class {
            ErrorClass::Unavailable => QueueError::Unavailable(e.message),
            _ => QueueError::Backend(e.message),
        }
    }
}

fn invalid(why: impl Into<String>) -> QueueError {
    QueueError::Invalid(why.into())
}

/// A receipt is `<seq>.<nonce>`: the row to touch, and the proof of the latest receive.
fn parse_receipt(receipt: &str) -> Result<i64, QueueError> {
    receipt
        .split_once('.')
        .and_then(|(seq, nonce)| (!nonce.is_empty()).then_some(seq))
        .and_then(|seq| seq.parse().ok())
        .ok_or_else(|| invalid(format!("malformed receipt handle {receipt:?}")))
}

fn check_name(name: &str) -> Result<(), QueueError> {
    let ok = !name.is_empty()
        && name.len() <= 80
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "queue name {name:?} must be 1 to 80 letters, digits, '-' or '_'"
        )))
    }
}

/// A message row to insert.
struct NewMessage {
    message_id: String,
    body: String,
    attributes: String,
    visible_after_ms: i64,
}

/// What one receive needs to know, owned so that it can go to the writer thread.
struct ReceiveRequest {
    queue: String,
    max: usize,
    visibility_ms: i64,
    retention_ms: i64,
    dead_letter: Option<(String, i64)>,
    /// Delete the queue's expired messages first.
    purge: bool,
}

/// One receive on the writer: takes up to `max` of the messages at the front of the
/// queue. Each of them that has been received `max_receive_count` times already moves to
/// the dead-letter queue instead (visible there at once, body, attributes and count kept),
/// in the same statement, so one statement is the whole receive.
///
/// Only the messages this receive would take are looked at, so the move costs nothing on a
/// deep queue; an exhausted message further back moves when it reaches the front. When
/// messages moved, fewer than `max` were delivered and more may be ready behind them, the
/// statement runs again for the rest, so that a run of dead letters never hides deliverable
/// messages behind it. Returns the deliveries and whether any message moved.
fn receive_rows(conn: &Connection, r: &ReceiveRequest) -> Result<(Vec<Delivery>, bool), DbError> {
    let now = now_ms();
    let cutoff = now - r.retention_ms;
    if r.purge {
        conn.prepare_cached("DELETE FROM messages WHERE queue = ? AND sent_at_ms < ?")?
            .execute(params![r.queue, cutoff])?;
    }
    let (dlq, max_receives) = match &r.dead_letter {
        Some((dlq, max_receives)) => (Some(dlq.as_str()), *max_receives),
        None => (None, i64::MAX),
    };
    let mut stmt = conn.prepare_cached(
        "UPDATE messages SET
            queue = CASE WHEN receive_count >= ?1 THEN ?2 ELSE queue END,
            visible_at_ms = CASE WHEN receive_count >= ?1 THEN ?3 ELSE ?4 END,
            receipt = CASE WHEN receive_count >= ?1 THEN NULL
                ELSE CAST(seq AS TEXT) || '.' || ?5 END,
            receive_count = receive_count + (receive_count < ?1)
         WHERE seq IN (SELECT seq FROM messages
            WHERE queue = ?6 AND visible_at_ms <= ?3 AND sent_at_ms >= ?7
            ORDER BY visible_at_ms, seq LIMIT ?8)
         RETURNING seq, receipt, message_id, body, receive_count, sent_at_ms, attributes",
    )?;
    let mut out = Vec::with_capacity(r.max);
    let mut any_moved = false;
    loop {
        let want = r.max - out.len();
        let nonce = format!("{:016x}", rand::random::<u64>());
        // SET expressions read the row as it was, so every CASE tests the old count.
        let mut rows = stmt.query(params![
            max_receives,
            dlq,
            now,
            now.saturating_add(r.visibility_ms),
            nonce,
            r.queue,
            cutoff,
            i64::try_from(want).unwrap_or(10),
        ])?;
        let mut seen = 0;
        let mut moved = 0;
        while let Some(row) = rows.next()? {
            seen += 1;
            // A moved row has no receipt: it waits in the dead-letter queue.
            let Some(receipt) = row.get::<_, Option<String>>(1)? else {
                moved += 1;
                continue;
            };
            let bad = |e: &dyn std::fmt::Display| DbError {
                class: ErrorClass::Other,
                message: format!("message attributes: {e}"),
            };
            let raw = row.get_ref(6)?.as_str().map_err(|e| bad(&e))?;
            let attributes: BTreeMap<String, String> =
                serde_json::from_str(raw).map_err(|e| bad(&e))?;
            let count: i64 = row.get(4)?;
            out.push((
                row.get::<_, i64>(0)?,
                Delivery {
                    message_id: row.get(2)?,
                    receipt,
                    body: row.get(3)?,
                    receive_count: u32::try_from(count).unwrap_or(u32::MAX),
                    sent_at_ms: row.get(5)?,
                    attributes,
                },
            ));
        }
        any_moved |= moved > 0;
        // Fewer rows than asked for: nothing more is ready behind them.
        if moved == 0 || seen < want || out.len() >= r.max {
            break;
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    Ok((out.into_iter().map(|(_, d)| d).collect(), any_moved))
}

impl SqliteQueue {
    /// Opens (creating if missing) the queue file.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let db = Arc::new(Db::open(path).await?);
        db.migrate(SCHEMA).await?;
        Ok(Self {
            db,
            configs: RwLock::new(HashMap::new()),
            wakers: Wakers::default(),
            last_purge: Mutex::new(HashMap::new()),
        })
    }

    /// A queue's settings, from a cache (shared, so a hit costs no allocation).
    fn config(&self, queue: &str) -> Result<Arc<QueueConfig>, QueueError> {
        if let Some((c, at)) = self.configs.read().expect("queue configs lock").get(queue) {
            if at.elapsed() < CONFIG_TTL {
                return Ok(c.clone());
            }
        }
        let config = self
            .db
            .read(|conn| -> Result<_, DbError> {
                Ok(conn
                    .prepare_cached(
                        "SELECT visibility_ms, retention_ms, dead_letter_queue, max_receive_count
                         FROM queues WHERE name = ?",
                    )?
                    .query_row([queue], |row| {
                        let dlq: Option<String> = row.get(2)?;
                        let max: Option<i64> = row.get(3)?;
                        Ok(QueueConfig {
                            visibility_ms: row.get(0)?,
                            retention_ms: row.get(1)?,
                            dead_letter: dlq.zip(max),
                        })
                    })
                    .optional()?)
            })?
            .ok_or_else(|| QueueError::NotFound(queue.to_owned()))?;
        let config = Arc::new(config);
        self.configs
            .write()
            .expect("queue configs lock")
            .insert(queue.to_owned(), (config.clone(), Instant::now()));
        Ok(config)
    }

    /// Whether the queue's expired messages are due to be deleted: at most once a minute
    /// per queue (reads skip them anyway).
    fn purge_due(&self, queue: &str, now: i64) -> bool {
        let mut last = self.last_purge.lock().expect("queue purge lock");
        let due = last
            .get(queue)
            .is_none_or(|at| now - at >= PURGE_INTERVAL_MS);
        if due {
            last.insert(queue.to_owned(), now);
        }
        due
    }

    /// Whether anything is ready, asked of a reader so that idle polls leave the writer free.
    fn anything_ready(&self, queue: &str, config: &QueueConfig) -> Result<bool, QueueError> {
        let now = now_ms();
        Ok(self.db.read(|conn| -> Result<_, DbError> {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM messages
                     WHERE queue = ? AND visible_at_ms <= ? AND sent_at_ms >= ?)",
                )?
                .query_row(params![queue, now, now - config.retention_ms], |r| r.get(0))?)
        })?)
    }

    /// One receive attempt, on the writer; wakes the dead-letter queue's polls if it moved
    /// messages there.
    async fn receive_once(
        &self,
        queue: &str,
        config: &QueueConfig,
        max: usize,
        visibility_ms: i64,
    ) -> Result<Vec<Delivery>, QueueError> {
        let request = ReceiveRequest {
            queue: queue.to_owned(),
            max,
            visibility_ms,
            retention_ms: config.retention_ms,
            dead_letter: config.dead_letter.clone(),
            purge: self.purge_due(queue, now_ms()),
        };
        let (got, moved) = self
            .db
            .write(move |conn| receive_rows(conn, &request))
            .await?;
        if moved {
            if let Some((dlq, _)) = &config.dead_letter {
                tracing::debug!(queue, dead_letter_queue = %dlq, "dead-lettered");
                self.wakers.wake(dlq);
            }
        }
        Ok(got)
    }

    /// Deletes the rows still held by these receipts in `queue`. A receipt names its own
    /// row (`<seq>.<nonce>`), so each delete is a rowid lookup; `+queue` keeps the planner
    /// on it. A stale receipt deletes nothing, and that is not an error.
    async fn delete_rows(&self, queue: &str, rows: Vec<(i64, String)>) -> Result<(), QueueError> {
        let queue = queue.to_owned();
        self.db
            .write(move |conn| delete_rows(conn, &queue, &rows))
            .await?;
        Ok(())
    }
}

/// Checks messages to send and gives them ids.
fn new_rows(messages: Vec<OutMessage>) -> Result<Vec<NewMessage>, QueueError> {
    messages
        .into_iter()
        .map(|message| {
            if message.delay > MAX_DELAY {
                return Err(invalid("delay must be at most 15 minutes"));
            }
            if message.body.is_empty() || message.body.len() > MAX_BODY_BYTES {
                return Err(invalid(format!(
                    "message body must be 1 to {MAX_BODY_BYTES} bytes"
                )));
            }
            Ok(NewMessage {
                message_id: uuid::Uuid::new_v4().to_string(),
                attributes: serde_json::to_string(&message.attributes)
                    .map_err(|e| invalid(format!("attributes: {e}")))?,
                body: message.body,
                visible_after_ms: millis(message.delay),
            })
        })
        .collect()
}

/// Inserts messages into `queue` (on the writer thread).
fn insert_rows(conn: &Connection, queue: &str, rows: &[NewMessage]) -> Result<(), DbError> {
    let now = now_ms();
    let mut stmt = conn.prepare_cached(
        "INSERT INTO messages
         (queue, message_id, body, attributes, sent_at_ms, visible_at_ms)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?;
    for m in rows {
        stmt.execute(params![
            queue,
            m.message_id,
            m.body,
            m.attributes,
            now,
            now.saturating_add(m.visible_after_ms)
        ])?;
    }
    Ok(())
}

/// Deletes received messages of `queue` by (seq, receipt); a stale receipt deletes
/// nothing (on the writer thread).
fn delete_rows(conn: &Connection, queue: &str, rows: &[(i64, String)]) -> Result<(), DbError> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM messages WHERE seq = ? AND receipt = ? AND +queue = ?")?;
    for (seq, receipt) in rows {
        stmt.execute(params![seq, receipt, queue])?;
    }
    Ok(())
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<bool, QueueError> {
        check_name(&spec.name)?;
        if spec.visibility_timeout > MAX_VISIBILITY {
            return Err(invalid("visibility timeout must be at most 12 hours"));
        }
        if !(MIN_RETENTION..=MAX_RETENTION).contains(&spec.retention) {
            return Err(invalid("retention must be 60 seconds to 14 days"));
        }
        if let Some(p) = &spec.dead_letter {
            if !(1..=1000).contains(&p.max_receive_count) {
                return Err(invalid("max_receive_count must be 1 to 1000"));
            }
            if p.queue == spec.name {
                return Err(invalid("a queue cannot be its own dead-letter queue"));
            }
        }
        let name = spec.name.clone();
        let dlq = spec.dead_letter.as_ref().map(|p| p.queue.clone());
        let max = spec
            .dead_letter
            .as_ref()
            .map(|p| i64::from(p.max_receive_count));
        let (visibility, retention) = (millis(spec.visibility_timeout), millis(spec.retention));
        let inserted = self
            .db
            .write(move |conn| -> Result<bool, QueueError> {
                let sql = |e: rusqlite::Error| QueueError::from(DbError::from(e));
                if let Some(dlq) = &dlq {
                    let exists: bool = conn
                        .query_row(
                            "SELECT EXISTS (SELECT 1 FROM queues WHERE name = ?)",
                            [dlq],
                            |r| r.get(0),
                        )
                        .map_err(sql)?;
                    if !exists {
                        return Err(QueueError::NotFound(dlq.clone()));
                    }
                }
                let inserted = conn
                    .execute(
                        "INSERT OR IGNORE INTO queues
                         (name, visibility_ms, retention_ms, dead_letter_queue, max_receive_count)
                         VALUES (?, ?, ?, ?, ?)",
                        params![name, visibility, retention, dlq, max],
                    )
                    .map_err(sql)?
                    == 1;
                if !inserted {
                    // An existing queue takes the settings it is ensured with, so a changed
                    // queues.toml applies on the next provision.
                    conn.execute(
                        "UPDATE queues SET visibility_ms = ?, retention_ms = ?,
                         dead_letter_queue = ?, max_receive_count = ? WHERE name = ?",
                        params![visibility, retention, dlq, max, name],
                    )
                    .map_err(sql)?;
                }
                Ok(inserted)
            })
            .await?;
        self.configs
            .write()
            .expect("queue configs lock")
            .remove(&spec.name);
        Ok(inserted)
    }

    async fn send(&self, queue: &str, message: OutMessage) -> Result<String, QueueError> {
        let mut ids = self.send_batch(queue, vec![message]).await?;
        Ok(ids.pop().expect("one id per message"))
    }

    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutMessage>,
    ) -> Result<Vec<String>, QueueError> {
        self.config(queue)?;
        let rows = new_rows(messages)?;
        let ids = rows.iter().map(|m| m.message_id.clone()).collect();
        if rows.is_empty() {
            return Ok(ids);
        }
        let any_visible = rows.iter().any(|m| m.visible_after_ms == 0);
        let name = queue.to_owned();
        self.db
            .write(move |conn| insert_rows(conn, &name, &rows))
            .await?;
        if any_visible {
            self.wakers.wake(queue);
        }
        Ok(ids)
    }

    /// One transaction: the send and the delete commit together, or neither does.
    async fn forward(
        &self,
        to: &str,
        message: OutMessage,
        from: &str,
        receipt: &str,
    ) -> Result<Forwarded, QueueError> {
        self.config(to)?;
        if let Err(e) = self.config(from) {
            // As a send then a delete would end: sent, and the delete refused.
            let message_id = self.send(to, message).await?;
            return Ok(Forwarded {
                message_id,
                deleted: Err(e),
            });
        }
        let rows = new_rows(vec![message])?;
        let message_id = rows[0].message_id.clone();
        let visible = rows[0].visible_after_ms == 0;
        // A receipt this queue never gave deletes nothing; the send goes ahead, as a send
        // then a failed delete would leave it.
        let (deleting, deleted) = match parse_receipt(receipt) {
            Ok(seq) => (vec![(seq, receipt.to_owned())], Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        let (to_name, from_name) = (to.to_owned(), from.to_owned());
        self.db
            .write(move |conn| {
                insert_rows(conn, &to_name, &rows)?;
                delete_rows(conn, &from_name, &deleting)
            })
            .await?;
        if visible {
            self.wakers.wake(to);
        }
        Ok(Forwarded {
            message_id,
            deleted,
        })
    }

    async fn receive(
        &self,
        queue: &str,
        options: &ReceiveOptions,
    ) -> Result<Vec<Delivery>, QueueError> {
        if !(1..=10).contains(&options.max_messages) {
            return Err(invalid("max_messages must be 1 to 10"));
        }
        if options.wait > MAX_WAIT {
            return Err(invalid("wait must be at most 20 seconds"));
        }
        if options
            .visibility_timeout
            .is_some_and(|v| v > MAX_VISIBILITY)
        {
            return Err(invalid("visibility timeout must be at most 12 hours"));
        }
        let config = self.config(queue)?;
        let visibility_ms = options
            .visibility_timeout
            .map_or(config.visibility_ms, millis);
        let deadline = Instant::now() + options.wait;
        let notify = self.wakers.get(queue);
        // The first attempt, and one woken by a message that just became visible in this
        // process, go straight to the writer; one that a timer woke looks first on a reader,
        // so that idle polls leave the writer free.
        let mut straight = true;
        loop {
            // Registered before looking, so a send between the look and the wait still wakes.
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if straight || self.anything_ready(queue, &config)? {
                let got = self
                    .receive_once(queue, &config, options.max_messages, visibility_ms)
                    .await?;
                if !got.is_empty() {
                    return Ok(got);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = POLL_INTERVAL.min(deadline - now);
            straight = tokio::select! {
                () = &mut woken => true,
                () = tokio::time::sleep(nap) => false,
            };
        }
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        self.config(queue)?;
        let seq = parse_receipt(receipt)?;
        self.delete_rows(queue, vec![(seq, receipt.to_owned())])
            .await
    }

    async fn delete_batch(
        &self,
        queue: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        self.config(queue)?;
        let mut results = Vec::with_capacity(receipts.len());
        let mut rows = Vec::with_capacity(receipts.len());
        for r in receipts {
            match parse_receipt(r) {
                Ok(seq) => {
                    rows.push((seq, r.clone()));
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if !rows.is_empty() {
            self.delete_rows(queue, rows).await?;
        }
        Ok(results)
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        if timeout > MAX_VISIBILITY {
            return Err(invalid("visibility timeout must be at most 12 hours"));
        }
        self.config(queue)?;
        let seq = parse_receipt(receipt)?;
        let (name, receipt) = (queue.to_owned(), receipt.to_owned());
        let changed = self
            .db
            .write(move |conn| -> Result<usize, DbError> {
                Ok(conn
                    .prepare_cached(
                        "UPDATE messages SET visible_at_ms = ?
                         WHERE seq = ? AND receipt = ? AND +queue = ?",
                    )?
                    .execute(params![
                        now_ms().saturating_add(millis(timeout)),
                        seq,
                        receipt,
                        name
                    ])?)
            })
            .await?;
        if changed == 0 {
            return Err(QueueError::ReceiptExpired);
        }
        if timeout.is_zero() {
            self.wakers.wake(queue);
        }
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let config = self.config(queue)?;
        let now = now_ms();
        let (name, cutoff) = (queue.to_owned(), now - config.retention_ms);
        let (visible, in_flight, delayed, oldest) = self
            .db
            .read_scan(move |conn| -> Result<_, DbError> {
                Ok(conn
                    .prepare_cached(
                        "SELECT
                            COALESCE(SUM(visible_at_ms <= ?1), 0),
                            COALESCE(SUM(visible_at_ms > ?1 AND receive_count > 0), 0),
                            COALESCE(SUM(visible_at_ms > ?1 AND receive_count = 0), 0),
                            MIN(sent_at_ms)
                         FROM messages WHERE queue = ?2 AND sent_at_ms >= ?3",
                    )?
                    .query_row(params![now, name, cutoff], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                        ))
                    })?)
            })
            .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(QueueDepth {
            visible: count(visible),
            in_flight: count(in_flight),
            delayed: count(delayed),
            oldest_age: oldest.map(|t| Duration::from_millis(u64::try_from(now - t).unwrap_or(0))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::DeadLetterPolicy;

    fn spec(name: &str) -> QueueSpec {
        QueueSpec {
            name: name.into(),
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(60),
            dead_letter: None,
        }
    }

    #[test]
    fn receipts_parse_or_are_invalid() {
        assert_eq!(parse_receipt("12.00ff").unwrap(), 12);
        for bad in ["", "12", "12.", "x.1", ".1"] {
            assert!(
                matches!(parse_receipt(bad), Err(QueueError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn expired_messages_are_neither_delivered_nor_counted() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteQueue::open(&dir.path().join("q.db")).await.unwrap();
        q.ensure_queue(&spec("old")).await.unwrap();
        q.send("old", OutMessage::new("stale")).await.unwrap();
        q.send("old", OutMessage::new("fresh")).await.unwrap();
        // Age the first message past the 60 s retention.
        q.db.write(|c| -> Result<_, DbError> {
            Ok(c.execute(
                "UPDATE messages SET sent_at_ms = sent_at_ms - 120000 WHERE body = 'stale'",
                [],
            )?)
        })
        .await
        .unwrap();
        assert_eq!(q.depth("old").await.unwrap().visible, 1);
        let got = q.receive("old", &ReceiveOptions::default()).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "fresh");
        let left: i64 =
            q.db.read(|c| -> Result<_, DbError> {
                Ok(c.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?)
            })
            .unwrap();
        assert_eq!(left, 1, "the expired message was purged");
    }

    /// Two adapters on one file stand for two processes: their receivers never share a
    /// message, and a long poll sees a message the other one sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_openers_of_one_file_never_share_a_message() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        const N: usize = 1000;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let a = Arc::new(SqliteQueue::open(&path).await.unwrap());
        let b = Arc::new(SqliteQueue::open(&path).await.unwrap());
        a.ensure_queue(&spec("shared")).await.unwrap();
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move {
                let options = ReceiveOptions {
                    max_messages: 1,
                    wait: Duration::from_secs(10),
                    visibility_timeout: None,
                };
                b.receive("shared", &options).await.unwrap()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        a.send("shared", OutMessage::new("across")).await.unwrap();
        let got = waiting.await.unwrap();
        assert_eq!(got.len(), 1);
        b.delete("shared", &got[0].receipt).await.unwrap();

        for i in 0..N {
            a.send("shared", OutMessage::new(i.to_string()))
                .await
                .unwrap();
        }
        let counts: Arc<Vec<AtomicUsize>> = Arc::new((0..N).map(|_| AtomicUsize::new(0)).collect());
        let done = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let q = if w % 2 == 0 { a.clone() } else { b.clone() };
                let (counts, done) = (counts.clone(), done.clone());
                tokio::spawn(async move {
                    let options = ReceiveOptions {
                        max_messages: 10,
                        wait: Duration::from_millis(200),
                        visibility_timeout: None,
                    };
                    while done.load(Ordering::SeqCst) < N {
                        let got = q.receive("shared", &options).await.unwrap();
                        let receipts: Vec<String> = got.iter().map(|d| d.receipt.clone()).collect();
                        for d in got {
                            let i: usize = d.body.parse().unwrap();
                            if counts[i].fetch_add(1, Ordering::SeqCst) == 0 {
                                done.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        q.delete_batch("shared", &receipts).await.unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        assert!(counts.iter().all(|c| c.load(Ordering::SeqCst) == 1));
        assert_eq!(a.depth("shared").await.unwrap(), QueueDepth::default());
    }

    /// A source queue "src" whose dead letters go to "dead" after one receive.
    async fn with_dead_letters() -> (tempfile::TempDir, SqliteQueue) {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteQueue::open(&dir.path().join("q.db")).await.unwrap();
        q.ensure_queue(&spec("dead")).await.unwrap();
        let mut src = spec("src");
        src.dead_letter = Some(DeadLetterPolicy {
            queue: "dead".into(),
            max_receive_count: 1,
        });
        q.ensure_queue(&src).await.unwrap();
        (dir, q)
    }

    /// Receives everything visible once, leaving it visible again at once.
    async fn receive_and_release(q: &SqliteQueue, queue: &str) -> Vec<Delivery> {
        let again = ReceiveOptions {
            max_messages: 10,
            wait: Duration::ZERO,
            visibility_timeout: Some(Duration::ZERO),
        };
        q.receive(queue, &again).await.unwrap()
    }

    fn bodies(got: &[Delivery]) -> Vec<&str> {
        got.iter().map(|d| d.body.as_str()).collect()
    }

    /// One receive both moves the exhausted messages it finds (body, attributes and count
    /// kept, in order) and delivers the fresh one, in a single statement: one commit.
    #[tokio::test]
    async fn one_receive_moves_the_exhausted_and_delivers_the_rest() {
        let (_dir, q) = with_dead_letters().await;
        for body in ["a", "b", "c"] {
            let mut m = OutMessage::new(body);
            m.attributes.insert("k".into(), format!("v-{body}"));
            q.send("src", m).await.unwrap();
        }
        let first = receive_and_release(&q, "src").await;
        assert_eq!(bodies(&first), ["a", "b", "c"]);
        q.send("src", OutMessage::new("d")).await.unwrap();

        let before = q.db.commits();
        let got = q.receive("src", &ReceiveOptions::default()).await.unwrap();
        assert_eq!(q.db.commits() - before, 1);
        assert_eq!(bodies(&got), ["d"]);
        assert_eq!(got[0].receive_count, 1);
        let src = q.depth("src").await.unwrap();
        assert_eq!((src.visible, src.in_flight), (0, 1));

        let dead = q.receive("dead", &ReceiveOptions::default()).await.unwrap();
        assert_eq!(bodies(&dead), ["a", "b", "c"]);
        for (d, before) in dead.iter().zip(&first) {
            assert_eq!(d.message_id, before.message_id);
            assert_eq!(d.attributes["k"], format!("v-{}", d.body));
            assert_eq!(
                d.receive_count, 2,
                "the count goes on in the dead-letter queue"
            );
        }
    }

    /// Dead letters at the front do not make a receive come back short while deliverable
    /// messages wait behind them.
    #[tokio::test]
    async fn dead_letters_at_the_front_do_not_hide_the_messages_behind() {
        let (_dir, q) = with_dead_letters().await;
        for body in ["a", "b"] {
            q.send("src", OutMessage::new(body)).await.unwrap();
        }
        assert_eq!(receive_and_release(&q, "src").await.len(), 2);
        for body in ["c", "d", "e"] {
            q.send("src", OutMessage::new(body)).await.unwrap();
        }
        let two = ReceiveOptions {
            max_messages: 2,
            ..ReceiveOptions::default()
        };
        let got = q.receive("src", &two).await.unwrap();
        assert_eq!(bodies(&got), ["c", "d"]);
        let dead = q.receive("dead", &ReceiveOptions::default()).await.unwrap();
        assert_eq!(bodies(&dead), ["a", "b"]);
    }

    #[tokio::test]
    async fn bad_specs_and_requests_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let q = SqliteQueue::open(&dir.path().join("q.db")).await.unwrap();
        assert!(matches!(
            q.ensure_queue(&spec("bad name")).await,
            Err(QueueError::Invalid(_))
        ));
        let mut s = spec("src");
        s.dead_letter = Some(DeadLetterPolicy {
            queue: "missing-dlq".into(),
            max_receive_count: 3,
        });
        assert!(matches!(
            q.ensure_queue(&s).await,
            Err(QueueError::NotFound(n)) if n == "missing-dlq"
        ));
        q.ensure_queue(&spec("ok")).await.unwrap();
        assert!(matches!(
            q.send("ok", OutMessage::new("")).await,
            Err(QueueError::Invalid(_))
        ));
        assert!(matches!(
            q.delete("ok", "garbage").await,
            Err(QueueError::Invalid(_))
        ));
    }
}
