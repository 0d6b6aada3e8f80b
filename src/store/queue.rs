//! The Queue port: SQS semantics (at-least-once delivery, visibility timeouts, receive
//! counts, dead-letter moves after `max_receive_count` receives).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

/// A queue to create, and where its dead letters go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    /// Default visibility timeout of a received message.
    pub visibility_timeout: Duration,
    /// How long an unreceived message is kept.
    pub retention: Duration,
    pub dead_letter: Option<DeadLetterPolicy>,
}

/// The redrive policy of a source queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    /// The dead-letter queue's name; it must exist before the source queue.
    pub queue: String,
    /// A message received this many times and still not deleted moves to the dead-letter
    /// queue instead of being delivered again.
    pub max_receive_count: u32,
}

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutMessage {
    pub body: String,
    /// Invisible for this long after sending (SQS: at most 15 minutes).
    pub delay: Duration,
    /// String attributes, e.g. trace context.
    pub attributes: BTreeMap<String, String>,
}

impl OutMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }
}

/// How to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// 1 to 10.
    pub max_messages: usize,
    /// Long-poll wait: return as soon as a message is there, or empty after this long.
    pub wait: Duration,
    /// Overrides the queue's visibility timeout for these deliveries.
    pub visibility_timeout: Option<Duration>,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        Self {
            max_messages: 10,
            wait: Duration::ZERO,
            visibility_timeout: None,
        }
    }
}

/// A received message. The receipt is valid until the message is received again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: String,
    pub receipt: String,
    pub body: String,
    /// 1 on first delivery, growing with each receive (SQS `ApproximateReceiveCount`).
    pub receive_count: u32,
    /// When the message was first sent, ms since the epoch.
    pub sent_at_ms: i64,
    pub attributes: BTreeMap<String, String>,
}

/// What [`Queue::forward`] did once its message was sent.
#[derive(Debug)]
pub struct Forwarded {
    /// The id of the message sent.
    pub message_id: String,
    /// How the delete of the received message went.
    pub deleted: Result<(), QueueError>,
}

/// How many messages a queue holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted or released.
    pub in_flight: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
    /// Age of the oldest message, where the backend knows it.
    pub oldest_age: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {0:?} does not exist")]
    NotFound(String),
    /// The message was received again by someone else, or deleted: this receipt is stale.
    #[error("receipt handle is no longer valid (the message was received again or deleted)")]
    ReceiptExpired,
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The backend could not be reached or refused for now; retry later.
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
    #[error("queue backend error: {0}")]
    Backend(String),
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Creates the queue if it is missing; `Ok(true)` if it was created. An existing queue
    /// takes the settings of `spec` (visibility timeout, retention, dead-letter policy:
    /// none detaches its dead-letter queue). A dead-letter queue named in `spec` must
    /// already exist.
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<bool, QueueError>;

    /// Sends one message; returns its id.
    async fn send(&self, queue: &str, message: OutMessage) -> Result<String, QueueError>;

    /// Sends several messages (a stage forwarding a received batch); returns their ids in
    /// order. On an error some may have been sent: a retry may duplicate them, which
    /// at-least-once delivery allows. Adapters override this to send in one round trip.
    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutMessage>,
    ) -> Result<Vec<String>, QueueError> {
        let mut ids = Vec::with_capacity(messages.len());
        for m in messages {
            ids.push(self.send(queue, m).await?);
        }
        Ok(ids)
    }

    /// Receives up to `max_messages` visible messages, making them invisible for the
    /// visibility timeout and counting the receive. A message whose receive count has
    /// reached its queue's `max_receive_count` moves to the dead-letter queue instead.
    /// Two receivers never get the same visible message.
    async fn receive(
        &self,
        queue: &str,
        options: &ReceiveOptions,
    ) -> Result<Vec<Delivery>, QueueError>;

    /// Deletes a received message. A stale receipt is not an error (as in SQS): the call
    /// succeeds. The embedded queue then leaves the message with whoever holds it now; SQS
    /// documents only that it "might not be deleted" (moto deletes it), so callers never
    /// rely on either: every stage's effects are idempotent, and a message deleted early by
    /// a slow holder has already had its effects and its next stage enqueued.
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError>;

    /// Sends `message` to queue `to` and deletes the received message `receipt` of queue
    /// `from`: a stage passing its job on. `Err` means nothing was sent and nothing
    /// deleted; once the message is sent, how the delete went is in
    /// [`Forwarded::deleted`] (a stale receipt is not an error, as in [`Queue::delete`]).
    ///
    /// This default sends, then deletes, as SQS must: a crash between the two leaves both
    /// messages, which at-least-once delivery allows. The embedded queue does both in one
    /// transaction, so its stages hand a job on exactly once, with one commit.
    async fn forward(
        &self,
        to: &str,
        message: OutMessage,
        from: &str,
        receipt: &str,
    ) -> Result<Forwarded, QueueError> {
        let message_id = self.send(to, message).await?;
        let deleted = self.delete(from, receipt).await;
        Ok(Forwarded {
            message_id,
            deleted,
        })
    }

    /// Deletes several received messages; one result per receipt, in order.
    async fn delete_batch(
        &self,
        queue: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let mut out = Vec::with_capacity(receipts.len());
        for r in receipts {
            out.push(self.delete(queue, r).await);
        }
        Ok(out)
    }

    /// Sets how long a received message stays invisible from now: the heartbeat of long
    /// work, and the backoff of a retry (zero releases it at once).
    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), QueueError>;

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError>;

    /// Whether a receive dropped before it answers may still take messages, which then stay
    /// hidden for their visibility timeout with their receive counted. True for SQS, whose
    /// long poll goes on at the server until it answers, whoever still listens: a stopping
    /// worker lets such a receive end and releases what it took. The embedded queue's long
    /// poll waits in this process and ends when dropped, and its take is a write that the
    /// writer thread skips once its caller is gone; only a drop in the instant between the
    /// take and its answer (while the take commits) can still hide messages.
    fn receive_outlives_its_caller(&self) -> bool {
        false
    }
}
