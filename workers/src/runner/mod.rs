//! The stage runner: receive, heartbeat, retry, reject, release on shutdown. It knows no
//! stage: a stage is any [`StageHandler`], and the runner only sees its `Outcome` or its
//! `StageError`.
//!
//! Per message, the order is fixed so that a crash at any point loses nothing and doubles
//! nothing: the job is marked started (in its own write only if the stage runs on past a
//! moment, else in the same write as the outputs), the stage does its (idempotent) effects,
//! the job records the outputs, the next stage is enqueued, and only then is the message
//! deleted.
//! A crash before the delete means the message comes back and the stage runs again, which
//! its idempotent effects make harmless.

mod attempt;
mod backoff;
mod drain;
mod execute;
pub mod faults;
mod release;
#[cfg(test)]
mod tests;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8or::jobs::JobsError;
use k8or::store::{BlobError, QueueError, TableError, ViewPortError};
use k8or::{Context, JobEnvelope, JobRecord, Pid, Stage};
use serde_json::{Map, Value};

pub use backoff::retry_delay;
pub use drain::{drain_handlers, DrainError, DrainReport};
pub use execute::{execute, Execution};
pub use worker::{run_handlers, RunError, RunOptions, Tuning};

/// What a stage produced: the seed steps it did (for the envelope's PID trace) and what the
/// board should see of it (merged into `job.outputs`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub pids: Vec<Pid>,
    pub outputs: Map<String, Value>,
}

impl Outcome {
    pub fn new(pids: Vec<Pid>) -> Self {
        Self {
            pids,
            outputs: Map::new(),
        }
    }

    pub fn with_output(mut self, key: &str, value: Value) -> Self {
        self.outputs.insert(key.to_owned(), value);
        self
    }
}

/// Why a stage did not finish. The split decides what the runner does with the message.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// May pass on a later attempt (a backend away, throttled, a missing dependency an
    /// operator can fix): the message comes back after a backoff, and after
    /// `max_receive_count` receives it is dead-lettered and can be re-driven.
    #[error("{0}")]
    Retryable(String),
    /// Will never pass (the upload breaks a rule): the job is rejected with every reason.
    #[error("rejected: {}", .0.join("; "))]
    Permanent(Vec<String>),
}

impl StageError {
    pub fn retry(context: impl std::fmt::Display, cause: impl std::fmt::Display) -> Self {
        Self::Retryable(format!("{context}: {cause}"))
    }

    pub fn reject(reason: impl Into<String>) -> Self {
        Self::Permanent(vec![reason.into()])
    }
}

/// Storage failures are never the uploader's fault: they are retried (and, if they last,
/// dead-lettered for an operator), never turned into a rejection.
macro_rules! retryable_from {
    ($($t:ty => $what:literal),* $(,)?) => {$(
        impl From<$t> for StageError {
            fn from(e: $t) -> Self {
                Self::retry($what, e)
            }
        }
    )*};
}

retryable_from!(
    TableError => "table",
    BlobError => "blob store",
    QueueError => "queue",
    ViewPortError => "ViewPort",
    JobsError => "job record",
);

/// One stage of the pipeline. Implementations keep their effects idempotent: the runner may
/// call `handle` more than once for one job (redelivery, a crash before the delete, two
/// workers holding duplicates), and the stores must end as after one call.
#[async_trait]
pub trait StageHandler: Send + Sync + 'static {
    fn stage(&self) -> Stage;

    /// The stable `errorType` of this stage's rejections in user-error-log.
    fn error_type(&self) -> &'static str {
        "stage-rejected"
    }

    async fn handle(
        &self,
        job: &JobRecord,
        env: &JobEnvelope,
        ctx: &Context,
    ) -> Result<Outcome, StageError>;
}

/// A handler shared between the stage loop and its in-flight tasks.
pub type SharedHandler = Arc<dyn StageHandler>;

/// How often a running job's message visibility is extended: a third of the timeout, so
/// two heartbeats can be late before another worker could see the message.
pub(crate) fn heartbeat_period(visibility: Duration) -> Duration {
    (visibility / 3).max(Duration::from_millis(200))
}
