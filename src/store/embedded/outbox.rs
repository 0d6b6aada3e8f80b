//! Group commit of the embedded queue's sends and deletes, and the wakers of its long polls.
//!
//! Every job sends one message and deletes one, so these are the queue's hottest writes,
//! and a commit costs far more than a row. Sends and deletes made while the writer is busy
//! (a commit, a receive) wait in the outbox and go into the next commit together: one
//! multi-row `INSERT` and one `DELETE` for all the (row, receipt) pairs, in one transaction
//! (or a single autocommit statement when one is all it takes). When the writer is free, a
//! call commits at once, alone. The changes of a commit appear together or not at all, and
//! each caller learns the outcome of its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{oneshot, Notify};

use super::db::{begin_immediate, classify, Db, ErrorClass};
use crate::store::queue::QueueError;

/// Rows per `INSERT` statement (6 parameters each, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 100;
/// Receipts per `DELETE` statement (3 parameters each).
const DELETES_PER_STATEMENT: usize = 400;

/// A message row to insert.
#[derive(Debug)]
pub struct NewMessage {
    pub queue: String,
    pub message_id: String,
    pub body: String,
    pub attributes: String,
    pub sent_at_ms: i64,
    pub visible_at_ms: i64,
}

/// A received message to delete: its row goes if `receipt` is still its latest and it is
/// still in `queue`; otherwise nothing happens, and that is not an error.
#[derive(Debug)]
pub struct ReceiptRow {
    pub queue: String,
    pub seq: i64,
    pub receipt: String,
}

/// Long polls of this process, woken when a message of their queue becomes visible.
#[derive(Debug, Default)]
pub struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    pub fn get(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.0.lock().expect("wakers lock");
        if let Some(n) = map.get(queue) {
            return n.clone();
        }
        map.entry(queue.to_owned()).or_default().clone()
    }

    pub fn wake(&self, queue: &str) {
        let map = self.0.lock().expect("wakers lock");
        if let Some(n) = map.get(queue) {
            n.notify_waiters();
        }
    }
}

/// What one caller asked for.
enum Op {
    Send(Vec<NewMessage>),
    Delete(Vec<ReceiptRow>),
}

/// One caller's changes: committed together, answered together.
struct Pending {
    op: Op,
    done: oneshot::Sender<Result<(), QueueError>>,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    /// A flush task is running; it takes whatever is pending before it stops.
    flushing: bool,
}

pub struct Outbox {
    db: Arc<Db>,
    wakers: Arc<Wakers>,
    state: Mutex<State>,
}

/// Ends a flush: a flush that stops early (a panic, a runtime shutting down, even before
/// its task first ran) fails what it left pending, so no caller waits forever and the next
/// call starts a new flush.
struct FlushGuard {
    outbox: Arc<Outbox>,
    /// Cleared by a flush that ran to its end (nothing pending, `flushing` reset).
    armed: bool,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(mut state) = self.outbox.state.lock() {
            state.flushing = false;
            state.pending.clear();
        }
    }
}

impl Outbox {
    pub fn new(db: Arc<Db>, wakers: Arc<Wakers>) -> Self {
        Self {
            db,
            wakers,
            state: Mutex::new(State::default()),
        }
    }

    /// Inserts the messages with the next commit, all or none.
    pub async fn send(self: &Arc<Self>, messages: Vec<NewMessage>) -> Result<(), QueueError> {
        self.submit(Op::Send(messages), "the send was not committed")
            .await
    }

    /// Deletes the received messages with the next commit. A stale receipt deletes nothing
    /// and is still `Ok`: only a failed commit is an error.
    pub async fn delete(self: &Arc<Self>, receipts: Vec<ReceiptRow>) -> Result<(), QueueError> {
        self.submit(Op::Delete(receipts), "the delete was not committed")
            .await
    }

    async fn submit(self: &Arc<Self>, op: Op, lost: &str) -> Result<(), QueueError> {
        let (done, outcome) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().expect("outbox lock");
            state.pending.push(Pending { op, done });
            !std::mem::replace(&mut state.flushing, true)
        };
        if start {
            // A task of its own, so a caller that gives up cannot strand the others; the
            // guard is in the task from the start.
            tokio::spawn(Self::flush(FlushGuard {
                outbox: self.clone(),
                armed: true,
            }));
        }
        outcome
            .await
            .map_err(|_| QueueError::Unavailable(lost.into()))?
    }

    async fn flush(mut guard: FlushGuard) {
        let this = guard.outbox.clone();
        loop {
            {
                let mut state = this.state.lock().expect("outbox lock");
                if state.pending.is_empty() {
                    state.flushing = false;
                    break;
                }
            }
            // The batch is taken once the writer is ours, so that whatever comes while
            // it is busy (a receive, the previous commit) joins this commit.
            let mut writer = this.db.writer().await;
            let batch = std::mem::take(&mut this.state.lock().expect("outbox lock").pending);
            let mut inserts = Vec::new();
            let mut deletes = Vec::new();
            for p in &batch {
                match &p.op {
                    Op::Send(messages) => inserts.extend(messages),
                    Op::Delete(receipts) => deletes.extend(receipts),
                }
            }
            let result = commit(&mut writer, &inserts, &deletes).await;
            drop(writer);
            if result.is_ok() {
                let ready: BTreeSet<&str> = inserts
                    .iter()
                    .filter(|m| m.visible_at_ms <= m.sent_at_ms)
                    .map(|m| m.queue.as_str())
                    .collect();
                for queue in ready {
                    this.wakers.wake(queue);
                }
            }
            drop((inserts, deletes));
            let outcome = || match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(match classify(e) {
                    ErrorClass::Unavailable => QueueError::Unavailable(e.to_string()),
                    _ => QueueError::Backend(e.to_string()),
                }),
            };
            for p in batch {
                // A caller that stopped waiting does not need its answer.
                let _ = p.done.send(outcome());
            }
        }
        guard.armed = false;
    }
}

/// Writes one flush: a single statement commits on its own; more share a transaction.
async fn commit(
    writer: &mut SqliteConnection,
    inserts: &[&NewMessage],
    deletes: &[&ReceiptRow],
) -> Result<(), sqlx::Error> {
    let statements =
        inserts.len().div_ceil(ROWS_PER_STATEMENT) + deletes.len().div_ceil(DELETES_PER_STATEMENT);
    if statements <= 1 {
        insert_rows(writer, inserts).await?;
        return delete_rows(writer, deletes).await;
    }
    let mut tx = begin_immediate(writer).await?;
    for chunk in inserts.chunks(ROWS_PER_STATEMENT) {
        insert_rows(&mut tx, chunk).await?;
    }
    for chunk in deletes.chunks(DELETES_PER_STATEMENT) {
        delete_rows(&mut tx, chunk).await?;
    }
    tx.commit().await
}

async fn insert_rows(conn: &mut SqliteConnection, rows: &[&NewMessage]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO messages (queue, message_id, body, attributes, sent_at_ms, visible_at_ms) ",
    );
    q.push_values(rows, |mut row, m| {
        row.push_bind(&m.queue)
            .push_bind(&m.message_id)
            .push_bind(&m.body)
            .push_bind(&m.attributes)
            .push_bind(m.sent_at_ms)
            .push_bind(m.visible_at_ms);
    });
    q.build().execute(conn).await?;
    Ok(())
}

/// Deletes the rows whose receipt and queue are still the given ones. A receipt names its
/// own row (`<seq>.<nonce>`), so `seq IN (…)` finds the candidates by rowid and the pairs
/// keep exactly the rows still held by one of these receipts in the queue it was given
/// with. `+queue` keeps the planner on the rowid lookups: without statistics it may
/// otherwise scan the queue's index.
async fn delete_rows(conn: &mut SqliteConnection, rows: &[&ReceiptRow]) -> Result<(), sqlx::Error> {
    match rows {
        [] => Ok(()),
        [r] => {
            sqlx::query("DELETE FROM messages WHERE seq = ? AND receipt = ? AND +queue = ?")
                .bind(r.seq)
                .bind(&r.receipt)
                .bind(&r.queue)
                .execute(conn)
                .await?;
            Ok(())
        }
        _ => {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("DELETE FROM messages WHERE seq IN (");
            let mut seqs = q.separated(", ");
            for r in rows {
                seqs.push_bind(r.seq);
            }
            q.push(") AND (receipt, +queue) IN (");
            q.push_values(rows, |mut pair, r| {
                pair.push_bind(&r.receipt).push_bind(&r.queue);
            });
            q.push(")");
            q.build().execute(conn).await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::task::JoinHandle;

    use super::super::queue::SCHEMA;
    use super::*;

    async fn open(dir: &tempfile::TempDir) -> (Arc<Db>, Arc<Outbox>) {
        let db = Arc::new(Db::open(&dir.path().join("q.db")).await.unwrap());
        db.migrate(SCHEMA).await.unwrap();
        let outbox = Arc::new(Outbox::new(db.clone(), Arc::new(Wakers::default())));
        (db, outbox)
    }

    /// A message as a receive leaves it: in flight, held by the receipt `<seq>.r1`.
    async fn received(db: &Db, queue: &str, body: &str) -> ReceiptRow {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO messages (queue, message_id, body, attributes, sent_at_ms,
             visible_at_ms, receive_count) VALUES (?, ?, ?, '{}', 0, 0, 1) RETURNING seq",
        )
        .bind(queue)
        .bind(format!("id-{body}"))
        .bind(body)
        .fetch_one(&mut *db.writer().await)
        .await
        .unwrap();
        let receipt = format!("{seq}.r1");
        sqlx::query("UPDATE messages SET receipt = ? WHERE seq = ?")
            .bind(&receipt)
            .bind(seq)
            .execute(&mut *db.writer().await)
            .await
            .unwrap();
        ReceiptRow {
            queue: queue.into(),
            seq,
            receipt,
        }
    }

    fn message(queue: &str, body: &str) -> NewMessage {
        NewMessage {
            queue: queue.into(),
            message_id: format!("id-{body}"),
            body: body.into(),
            attributes: "{}".into(),
            sent_at_ms: 1,
            visible_at_ms: 1,
        }
    }

    async fn bodies(db: &Db) -> Vec<String> {
        sqlx::query_scalar("SELECT body FROM messages ORDER BY body")
            .fetch_all(db.reader())
            .await
            .unwrap()
    }

    /// Yields (on a current-thread runtime: lets every other task run) until `done`.
    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..100_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the outbox never got there");
    }

    fn pending(outbox: &Outbox) -> usize {
        outbox.state.lock().unwrap().pending.len()
    }

    fn delete(outbox: &Arc<Outbox>, row: ReceiptRow) -> JoinHandle<Result<(), QueueError>> {
        let outbox = outbox.clone();
        tokio::spawn(async move { outbox.delete(vec![row]).await })
    }

    fn send(outbox: &Arc<Outbox>, m: NewMessage) -> JoinHandle<Result<(), QueueError>> {
        let outbox = outbox.clone();
        tokio::spawn(async move { outbox.send(vec![m]).await })
    }

    /// Counts the commits of the writer from now on.
    async fn count_commits(writer: &mut SqliteConnection) -> Arc<AtomicUsize> {
        let commits = Arc::new(AtomicUsize::new(0));
        let counter = commits.clone();
        writer
            .lock_handle()
            .await
            .unwrap()
            .set_commit_hook(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                true
            });
        commits
    }

    /// Deletes (and a send) from many tasks made while the writer is busy go into one flush,
    /// one commit for all; each caller hears `Ok`, and exactly the rows still held by their
    /// receipts in their queues are gone.
    #[tokio::test]
    async fn deletes_and_sends_made_while_the_writer_is_busy_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (db, outbox) = open(&dir).await;
        let mut rows = Vec::new();
        for i in 0..40 {
            rows.push(received(&db, "q", &format!("m{i:02}")).await);
        }
        // Received again since: its first receipt is stale.
        let stale = received(&db, "q", "stale").await;
        sqlx::query("UPDATE messages SET receipt = seq || '.r2' WHERE seq = ?")
            .bind(stale.seq)
            .execute(&mut *db.writer().await)
            .await
            .unwrap();
        // A receipt of queue "other", given with queue "q".
        let elsewhere = received(&db, "other", "elsewhere").await;
        let wrong_queue = ReceiptRow {
            queue: "q".into(),
            ..elsewhere
        };

        let mut writer = db.writer().await;
        let commits = count_commits(&mut writer).await;
        let mut calls: Vec<_> = rows.into_iter().map(|r| delete(&outbox, r)).collect();
        calls.push(delete(&outbox, stale));
        calls.push(delete(&outbox, wrong_queue));
        calls.push(send(&outbox, message("q", "sent")));
        until(|| pending(&outbox) == 43).await;
        drop(writer);

        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(commits.load(Ordering::SeqCst), 1, "one commit for 43 calls");
        assert_eq!(bodies(&db).await, ["elsewhere", "sent", "stale"]);
    }

    /// A flush that fails fails its own callers, all of its changes undone; the outbox
    /// goes on working.
    #[tokio::test]
    async fn a_failed_flush_fails_its_callers_and_undoes_all_of_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (db, outbox) = open(&dir).await;
        let poison = received(&db, "q", "poison").await;
        outbox.send(vec![message("q", "before")]).await.unwrap();
        let mut writer = db.writer().await;
        // Only the writer's connection has the trigger: the outbox's deletes meet it.
        sqlx::query(
            "CREATE TEMP TRIGGER refuse BEFORE DELETE ON messages WHEN OLD.body = 'poison'
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(&mut *writer)
        .await
        .unwrap();
        let with_poison = send(&outbox, message("q", "with-poison"));
        let poisoned = delete(&outbox, poison);
        until(|| pending(&outbox) == 2).await;
        drop(writer);

        assert!(matches!(
            with_poison.await.unwrap(),
            Err(QueueError::Backend(_))
        ));
        assert!(matches!(
            poisoned.await.unwrap(),
            Err(QueueError::Backend(_))
        ));
        assert_eq!(bodies(&db).await, ["before", "poison"]);
        outbox.send(vec![message("q", "after")]).await.unwrap();
        assert_eq!(bodies(&db).await, ["after", "before", "poison"]);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A flush that stops early (its runtime shuts down while it waits for the writer)
    /// fails what it left pending, and the next call starts a new flush.
    #[test]
    fn a_flush_stopped_early_fails_what_it_left_pending() {
        let (doomed, main) = (runtime(), runtime());
        let dir = tempfile::tempdir().unwrap();
        let (db, outbox) = main.block_on(open(&dir));
        let (a, b) =
            main.block_on(async { (received(&db, "q", "a").await, received(&db, "q", "b").await) });
        let writer = main.block_on(db.writer());
        // The flush starts on `doomed` and waits there for the writer.
        doomed.block_on(async {
            let _first = delete(&outbox, a);
            until(|| pending(&outbox) == 1).await;
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
        });
        let left = main.spawn({
            let outbox = outbox.clone();
            async move { outbox.delete(vec![b]).await }
        });
        main.block_on(until(|| pending(&outbox) == 2));
        drop(doomed);
        drop(writer);
        assert!(matches!(
            main.block_on(left).unwrap(),
            Err(QueueError::Unavailable(_))
        ));
        main.block_on(async {
            outbox.send(vec![message("q", "next")]).await.unwrap();
            assert_eq!(bodies(&db).await, ["a", "b", "next"]);
        });
    }

    /// A flush whose task never ran (its runtime shut down first) does not leave the outbox
    /// waiting for it.
    #[test]
    fn a_flush_that_never_ran_does_not_stop_the_outbox() {
        use futures::FutureExt;
        let (doomed, main) = (runtime(), runtime());
        let dir = tempfile::tempdir().unwrap();
        let (db, outbox) = main.block_on(open(&dir));
        let a = main.block_on(received(&db, "q", "a"));
        doomed.block_on(async {
            // Polled once: the call is pending and its flush spawned, never run.
            let mut call = Box::pin(outbox.delete(vec![a]));
            assert!((&mut call).now_or_never().is_none());
        });
        assert!(outbox.state.lock().unwrap().flushing);
        drop(doomed);
        let outcome = main.block_on(async {
            let next = outbox.send(vec![message("q", "next")]);
            tokio::time::timeout(std::time::Duration::from_secs(60), next).await
        });
        outcome
            .expect("the outbox is not stuck")
            .expect("the send is committed");
        assert_eq!(main.block_on(bodies(&db)), ["a", "next"]);
    }
}
