//! What the API and the workers share: settings, the four stores, and the job and audit
//! tables built on them. Built once at start and cloned cheaply (everything is `Arc`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::config::Settings;
use crate::job::JobEnvelope;
use crate::jobs::Jobs;
use crate::store::{Forwarded, OutMessage, QueueError, Stores};

/// Message attribute carrying the job id, so tools can see it without parsing the body.
pub const ATTR_JOB_ID: &str = "k8or-job-id";
/// Message attribute carrying the stage name.
pub const ATTR_STAGE: &str = "k8or-stage";
/// Message attribute carrying the W3C trace context (`00-<trace id>-<parent id>-01`). The
/// trace id is made when a job is first enqueued and kept by every later stage, so the
/// logs of one job read as one trace across processes.
pub const ATTR_TRACEPARENT: &str = "traceparent";

/// A W3C `traceparent`: the job's trace id, and the span that sent the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: u128,
    pub parent_id: u64,
}

impl TraceParent {
    /// A new trace (a job's submission). Ids are random and never zero, as W3C requires.
    pub fn new_root() -> Self {
        Self {
            trace_id: rand::random::<u128>().max(1),
            parent_id: rand::random::<u64>().max(1),
        }
    }

    /// The same trace, one span further (a stage working on the message).
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            parent_id: rand::random::<u64>().max(1),
        }
    }

    /// Parses version 00 of the header; anything else (or all-zero ids) is `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex_of = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if parts.next().is_some() || version != "00" || !hex_of(trace, 32) || !hex_of(parent, 16) {
            return None;
        }
        if !hex_of(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let parent_id = u64::from_str_radix(parent, 16).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id,
            parent_id,
        })
    }

    /// The message's trace context, if it carries a valid one.
    pub fn from_attributes(attributes: &BTreeMap<String, String>) -> Option<Self> {
        attributes
            .get(ATTR_TRACEPARENT)
            .and_then(|v| Self::parse(v))
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.parent_id)
    }

    /// Attributes carrying this context, to pass to [`Context::enqueue`].
    pub fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(ATTR_TRACEPARENT.to_owned(), self.to_string())])
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{:032x}-{:016x}-01", self.trace_id, self.parent_id)
    }
}

#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub stores: Stores,
    pub jobs: Jobs,
    pub audit: AuditLog,
}

impl Context {
    pub fn new(settings: Settings, stores: Stores) -> Self {
        let jobs = Jobs::new(stores.tables.clone(), &settings.tables);
        let audit = AuditLog::new(stores.tables.clone(), &settings.tables);
        Self {
            settings: Arc::new(settings),
            stores,
            jobs,
            audit,
        }
    }

    /// Sends the envelope to its stage's queue, with extra attributes (trace context). A
    /// message without a valid `traceparent` starts a new trace: that is a submission.
    pub async fn enqueue(
        &self,
        envelope: &JobEnvelope,
        delay: Duration,
        attributes: BTreeMap<String, String>,
    ) -> Result<String, QueueError> {
        let (queue, message) = self.message(envelope, delay, attributes);
        self.stores.queue.send(queue, message).await
    }

    /// Sends the envelope to its stage's queue as [`enqueue`](Self::enqueue) does, and
    /// deletes the received message `receipt` of queue `from`: a stage passing its job on
    /// ([`Queue::forward`](crate::store::Queue::forward)).
    pub async fn forward(
        &self,
        envelope: &JobEnvelope,
        attributes: BTreeMap<String, String>,
        from: &str,
        receipt: &str,
    ) -> Result<Forwarded, QueueError> {
        let (queue, message) = self.message(envelope, Duration::ZERO, attributes);
        self.stores
            .queue
            .forward(queue, message, from, receipt)
            .await
    }

    /// The envelope's queue and message: its job and stage, and a trace context (a new
    /// trace when `attributes` carry none).
    fn message(
        &self,
        envelope: &JobEnvelope,
        delay: Duration,
        mut attributes: BTreeMap<String, String>,
    ) -> (&str, OutMessage) {
        let queue = &self.settings.stages.get(envelope.stage).queue;
        attributes.insert(ATTR_JOB_ID.into(), envelope.job_id.to_string());
        attributes.insert(ATTR_STAGE.into(), envelope.stage.to_string());
        let trace = TraceParent::from_attributes(&attributes).unwrap_or_else(|| {
            let root = TraceParent::new_root();
            attributes.insert(ATTR_TRACEPARENT.into(), root.to_string());
            root
        });
        tracing::debug!(
            job.id = %envelope.job_id,
            stage = %envelope.stage,
            trace.id = %trace.trace_id_hex(),
            "enqueueing"
        );
        let message = OutMessage {
            body: envelope.to_body(),
            delay,
            attributes,
        };
        (queue, message)
    }
}

impl Context {
    /// Moves `stage`'s dead letters that `filter` accepts back to the stage's queue (see
    /// [`crate::store::redrive::redrive`]), marking each one's job re-driven (status "queued",
    /// attempt count reset, history kept, the letter's id on the entry) before its message
    /// goes back, so the mark never lands behind a worker that takes the message at once. A
    /// mark that cannot be written stops the re-drive with the message still in the
    /// dead-letter queue; a send that fails after the mark takes the mark back.
    pub async fn redrive_stage(
        &self,
        stage: crate::job::Stage,
        filter: &(dyn Fn(&crate::store::Delivery) -> bool + Send + Sync),
        dry_run: bool,
    ) -> Result<crate::store::RedriveReport, QueueError> {
        let config = self.settings.stages.get(stage);
        let record = RedriveMark {
            jobs: &self.jobs,
            stage,
        };
        crate::store::redrive_with(
            self.stores.queue.as_ref(),
            &config.dead_letter_queue,
            &config.queue,
            filter,
            Some(&record),
            dry_run,
        )
        .await
    }
}

/// The job side of a re-drive: the mark before the send, and its undoing after a failed one.
struct RedriveMark<'a> {
    jobs: &'a crate::jobs::Jobs,
    stage: crate::job::Stage,
}

/// The job a dead letter carries (`None`: not a job envelope; such a letter still moves).
fn job_of(d: &crate::store::Delivery) -> Option<uuid::Uuid> {
    JobEnvelope::parse(&d.body).ok().map(|e| e.job_id)
}

impl crate::store::MoveRecord for RedriveMark<'_> {
    fn before_move<'a>(
        &'a self,
        d: &'a crate::store::Delivery,
    ) -> futures::future::BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            let Some(id) = job_of(d) else { return Ok(()) };
            let (stage, letter) = (self.stage, d.message_id.as_str());
            match self
                .jobs
                .modify(id, |job| job.redriven(stage, letter))
                .await
            {
                // A letter whose job is gone still moves; the stage discards it.
                Ok(_) | Err(crate::jobs::JobsError::NotFound(_)) => Ok(()),
                Err(e) => Err(QueueError::Unavailable(format!(
                    "marking job {id} re-driven: {e}"
                ))),
            }
        })
    }

    fn not_moved<'a>(
        &'a self,
        d: &'a crate::store::Delivery,
    ) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(id) = job_of(d) else { return };
            let (stage, letter) = (self.stage, d.message_id.as_str());
            if let Err(e) = self
                .jobs
                .modify(id, |job| job.undo_redrive(stage, letter))
                .await
            {
                // The dead-letter monitor restores it: the job names a letter still there.
                tracing::warn!(
                    job.id = %id, %stage, error = %e,
                    "could not take back a re-drive mark"
                );
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let root = TraceParent::new_root();
        let text = root.to_string();
        assert_eq!(text.len(), 55);
        assert_eq!(TraceParent::parse(&text), Some(root));
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.parent_id, root.parent_id);
        let attrs = child.attributes();
        assert_eq!(TraceParent::from_attributes(&attrs), Some(child));
    }

    #[test]
    fn malformed_traceparents_are_refused() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(TraceParent::parse(good).is_some());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }
}
