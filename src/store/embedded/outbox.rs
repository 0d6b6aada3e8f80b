//! Group commit of the embedded queue's sends, and the wakers of its long polls.
//!
//! Every job sends one message, so sends are the queue's hottest write, and a commit costs
//! far more than a row. Sends made while a commit runs wait in the outbox and go into the
//! next commit together, as one multi-row `INSERT`: the rows of a commit appear together
//! or not at all, and each sender learns the outcome of its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use tokio::sync::{oneshot, Notify};

use super::db::{begin_immediate, classify, Db, ErrorClass};
use crate::store::queue::QueueError;

/// Rows per `INSERT` statement (6 parameters each, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 100;

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

/// Long polls of this process, woken when a message of their queue becomes visible.
#[derive(Debug, Default)]
pub struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    pub fn get(&self, queue: &str) -> Arc<Notify> {
        let mut map = self.0.lock().expect("wakers lock");
        map.entry(queue.to_owned()).or_default().clone()
    }

    pub fn wake(&self, queue: &str) {
        let map = self.0.lock().expect("wakers lock");
        if let Some(n) = map.get(queue) {
            n.notify_waiters();
        }
    }
}

/// One caller's messages: committed together, answered together.
struct Pending {
    messages: Vec<NewMessage>,
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

/// Ends a flush: a flush that stops early (a panic, a runtime shutting down) fails what
/// it left pending, so no sender waits forever and the next send starts a new flush.
struct FlushGuard<'a>(&'a Outbox);

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.0.state.lock() {
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
        let (done, outcome) = oneshot::channel();
        let start = {
            let mut state = self.state.lock().expect("outbox lock");
            state.pending.push(Pending { messages, done });
            !std::mem::replace(&mut state.flushing, true)
        };
        if start {
            // A task of its own, so a sender that gives up cannot strand the others.
            tokio::spawn(self.clone().flush());
        }
        outcome
            .await
            .map_err(|_| QueueError::Unavailable("the send was not committed".into()))?
    }

    async fn flush(self: Arc<Self>) {
        let guard = FlushGuard(&self);
        loop {
            let batch = {
                let mut state = self.state.lock().expect("outbox lock");
                if state.pending.is_empty() {
                    state.flushing = false;
                    break;
                }
                std::mem::take(&mut state.pending)
            };
            let rows: Vec<&NewMessage> = batch.iter().flat_map(|p| &p.messages).collect();
            let result = self.insert(&rows).await;
            let mut ready = BTreeSet::new();
            if result.is_ok() {
                for m in &rows {
                    if m.visible_at_ms <= m.sent_at_ms {
                        ready.insert(m.queue.clone());
                    }
                }
            }
            drop(rows);
            for p in batch {
                let outcome = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(match classify(e) {
                        ErrorClass::Unavailable => QueueError::Unavailable(e.to_string()),
                        _ => QueueError::Backend(e.to_string()),
                    }),
                };
                // A sender that stopped waiting does not need its answer.
                let _ = p.done.send(outcome);
            }
            for queue in ready {
                self.wakers.wake(&queue);
            }
        }
        std::mem::forget(guard);
    }

    async fn insert(&self, batch: &[&NewMessage]) -> Result<(), sqlx::Error> {
        let mut writer = self.db.writer().await;
        if let [m] = batch {
            sqlx::query(
                "INSERT INTO messages
                 (queue, message_id, body, attributes, sent_at_ms, visible_at_ms)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&m.queue)
            .bind(&m.message_id)
            .bind(&m.body)
            .bind(&m.attributes)
            .bind(m.sent_at_ms)
            .bind(m.visible_at_ms)
            .execute(&mut *writer)
            .await?;
            return Ok(());
        }
        // One statement is atomic on its own; more need a transaction around them.
        if batch.len() <= ROWS_PER_STATEMENT {
            return insert_rows(&mut writer, batch).await;
        }
        let mut tx = begin_immediate(&mut writer).await?;
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            insert_rows(&mut tx, chunk).await?;
        }
        tx.commit().await
    }
}

async fn insert_rows(conn: &mut SqliteConnection, rows: &[&NewMessage]) -> Result<(), sqlx::Error> {
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
