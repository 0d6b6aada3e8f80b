//! Redrive and peek of a dead-letter queue, written once over the `Queue` port so that every
//! adapter shares them (moto has no StartMessageMoveTask, so the SQS adapter uses this too).
//!
//! A redrive sends each chosen message to its source queue with the same body and
//! attributes, then deletes it from the dead-letter queue: the job goes on intact, as a new
//! message whose receive count starts again. A crash between the two leaves a duplicate,
//! never a loss; the stages are idempotent, so a duplicate is harmless.
//!
//! Whatever must be recorded of a move (the job shows "queued" again) is recorded by a
//! [`MoveRecord`] before the send: once the message is back, a running worker may take it at
//! once, and a record written after that would land behind the worker's. A send that fails
//! after the record was written has the record taken back.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::BoxFuture;

use super::queue::{Delivery, OutMessage, Queue, QueueError, ReceiveOptions};

/// How long a walked message stays hidden while the walk goes on. Long enough for a
/// large queue; if a walk outlives it, a message seen again is recognised by its id.
const HOLD: Duration = Duration::from_secs(60);
/// The last, empty receive waits this long, so a backend that samples its servers (SQS)
/// has looked everywhere before the walk ends.
const LAST_LOOK: Duration = Duration::from_secs(1);

/// A message moved (or, in a dry run, that would be moved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivenMessage {
    /// Its id in the dead-letter queue.
    pub dead_letter_id: String,
    /// Its id in the source queue; `None` in a dry run.
    pub new_message_id: Option<String>,
    pub body: String,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveReport {
    pub dry_run: bool,
    /// The messages that matched the filter.
    pub matched: Vec<RedrivenMessage>,
    /// Messages looked at and left in the dead-letter queue.
    pub skipped: usize,
}

/// A message waiting in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: String,
    pub body: String,
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Receives so far, counting this peek's.
    pub receive_count: u32,
    pub sent_at_ms: i64,
}

/// Walks the whole queue once: every message is received and held until the walk ends, so
/// each receive brings new ones; `visit` says for each whether the walk keeps holding it
/// (`Ok(true)`) or is done with it (`Ok(false)`: deleted or otherwise settled). Held
/// messages are released at the end, even when `visit` fails (the one it failed on too).
async fn walk<F>(queue: &dyn Queue, name: &str, mut visit: F) -> Result<(), QueueError>
where
    F: AsyncVisit,
{
    let mut held: HashMap<String, String> = HashMap::new();
    let result = async {
        let mut last_look = false;
        loop {
            let options = ReceiveOptions {
                max_messages: 10,
                wait: if last_look { LAST_LOOK } else { Duration::ZERO },
                visibility_timeout: Some(HOLD),
            };
            let got = queue.receive(name, &options).await?;
            let mut fresh = 0;
            for d in got {
                if let Some(receipt) = held.get_mut(&d.message_id) {
                    // Seen before: the hold ran out. Keep the newest receipt only.
                    *receipt = d.receipt;
                    continue;
                }
                fresh += 1;
                let id = d.message_id.clone();
                let receipt = d.receipt.clone();
                match visit.visit(d).await {
                    Ok(true) => {
                        held.insert(id, receipt);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        // Released with the others: not hidden for the rest of the hold.
                        held.insert(id, receipt);
                        return Err(e);
                    }
                }
            }
            if visit.finished() {
                return Ok(());
            }
            if fresh > 0 {
                last_look = false;
            } else if last_look {
                return Ok(());
            } else {
                last_look = true;
            }
        }
    }
    .await;
    for receipt in held.values() {
        match queue.change_visibility(name, receipt, Duration::ZERO).await {
            // Someone received it again since: it is theirs now.
            Ok(()) | Err(QueueError::ReceiptExpired) => {}
            Err(e) => {
                tracing::warn!(queue = name, error = %e, "could not release a dead letter");
            }
        }
    }
    result
}

/// One step of a walk; a trait rather than a closure so the step can borrow and await.
trait AsyncVisit {
    async fn visit(&mut self, delivery: Delivery) -> Result<bool, QueueError>;

    /// Whether the walk may stop before the queue is exhausted.
    fn finished(&self) -> bool {
        false
    }
}

/// What a redrive records of each message it moves.
pub trait MoveRecord: Send + Sync {
    /// Called before the message is sent back; an error leaves the message where it is and
    /// ends the redrive with that error.
    fn before_move<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Called when the send failed after `before_move` succeeded: takes back what it
    /// recorded (the message stays in the dead-letter queue). Best effort: what cannot be
    /// taken back here is for the reader of the record to recognise (a record naming a
    /// letter that is still in the dead-letter queue).
    fn not_moved<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, ()>;
}

struct Redrive<'a> {
    queue: &'a dyn Queue,
    dead_letter_queue: &'a str,
    source_queue: &'a str,
    filter: &'a (dyn Fn(&Delivery) -> bool + Send + Sync),
    record: Option<&'a dyn MoveRecord>,
    dry_run: bool,
    report: RedriveReport,
}

impl AsyncVisit for Redrive<'_> {
    async fn visit(&mut self, d: Delivery) -> Result<bool, QueueError> {
        if !(self.filter)(&d) {
            self.report.skipped += 1;
            return Ok(true);
        }
        if self.dry_run {
            self.report.matched.push(RedrivenMessage {
                dead_letter_id: d.message_id,
                new_message_id: None,
                body: d.body,
            });
            return Ok(true);
        }
        if let Some(record) = self.record {
            record.before_move(&d).await?;
        }
        let message = OutMessage {
            body: d.body.clone(),
            delay: Duration::ZERO,
            attributes: d.attributes.clone(),
        };
        let new_id = match self.queue.send(self.source_queue, message).await {
            Ok(id) => id,
            Err(e) => {
                if let Some(record) = self.record {
                    record.not_moved(&d).await;
                }
                return Err(e);
            }
        };
        // Moved: a letter that cannot be deleted now stays behind as a copy, which the
        // dead-letter monitor knows by the job's re-drive entry; the walk goes on.
        if let Err(e) = self.queue.delete(self.dead_letter_queue, &d.receipt).await {
            tracing::warn!(
                dead_letter_queue = self.dead_letter_queue,
                dead_letter_id = %d.message_id,
                new_message_id = %new_id,
                error = %e,
                "re-driven, but the letter could not be deleted: a copy stays behind"
            );
        }
        tracing::info!(
            dead_letter_queue = self.dead_letter_queue,
            source_queue = self.source_queue,
            dead_letter_id = %d.message_id,
            new_message_id = %new_id,
            "redriven"
        );
        self.report.matched.push(RedrivenMessage {
            dead_letter_id: d.message_id,
            new_message_id: Some(new_id),
            body: d.body,
        });
        Ok(false)
    }
}

/// Moves the dead letters that `filter` accepts back to `source_queue`; the others stay.
/// With `dry_run`, only reports what it would move.
pub async fn redrive(
    queue: &dyn Queue,
    dead_letter_queue: &str,
    source_queue: &str,
    filter: &(dyn Fn(&Delivery) -> bool + Send + Sync),
    dry_run: bool,
) -> Result<RedriveReport, QueueError> {
    redrive_with(
        queue,
        dead_letter_queue,
        source_queue,
        filter,
        None,
        dry_run,
    )
    .await
}

/// [`redrive`], with `record` told of each message before it is sent back.
pub async fn redrive_with(
    queue: &dyn Queue,
    dead_letter_queue: &str,
    source_queue: &str,
    filter: &(dyn Fn(&Delivery) -> bool + Send + Sync),
    record: Option<&dyn MoveRecord>,
    dry_run: bool,
) -> Result<RedriveReport, QueueError> {
    // Fail before touching the dead letters if the source is not there.
    queue.depth(source_queue).await?;
    let mut step = Redrive {
        queue,
        dead_letter_queue,
        source_queue,
        filter,
        record,
        dry_run,
        report: RedriveReport {
            dry_run,
            ..RedriveReport::default()
        },
    };
    walk(queue, dead_letter_queue, &mut step).await?;
    Ok(step.report)
}

struct Peek {
    limit: usize,
    found: Vec<DeadLetter>,
}

impl AsyncVisit for Peek {
    async fn visit(&mut self, d: Delivery) -> Result<bool, QueueError> {
        if !self.finished() {
            self.found.push(DeadLetter {
                message_id: d.message_id,
                body: d.body,
                attributes: d.attributes,
                receive_count: d.receive_count,
                sent_at_ms: d.sent_at_ms,
            });
        }
        Ok(true)
    }

    fn finished(&self) -> bool {
        self.found.len() >= self.limit
    }
}

impl<T: AsyncVisit> AsyncVisit for &mut T {
    async fn visit(&mut self, delivery: Delivery) -> Result<bool, QueueError> {
        (**self).visit(delivery).await
    }

    fn finished(&self) -> bool {
        (**self).finished()
    }
}

/// Lists up to `limit` messages of a dead-letter queue, oldest first, leaving them there.
/// Each is received (so its receive count grows) and released again. With more than
/// `limit` messages waiting, which ones are listed is up to the backend's receive order.
pub async fn peek_dead_letters(
    queue: &dyn Queue,
    dead_letter_queue: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, QueueError> {
    let mut peek = Peek {
        limit,
        found: Vec::new(),
    };
    walk(queue, dead_letter_queue, &mut peek).await?;
    peek.found.sort_by_key(|d| d.sent_at_ms);
    Ok(peek.found)
}
