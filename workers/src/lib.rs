//! k8or stage workers: a generic runner (receive, heartbeat, retry, reject, release on
//! shutdown) and the four stages of the upload pipeline, registered in one list.
//!
//! - [`run`]: every chosen stage's loop until shutdown (the `k8or-worker` binary, and the
//!   API binary in embedded mode).
//! - [`drain`]: the same loops until every queue is empty (tests).
//! - [`try_execute`]: one delivery, start to end (tests, tools).

pub mod runner;
pub mod stages;

use std::future::Future;
use std::time::Duration;

use k8or::store::Delivery;
use k8or::{Context, Stage};
use tokio_util::sync::CancellationToken;

pub use runner::{
    DrainError, DrainReport, Execution, Outcome, RunError, RunOptions, SharedHandler, StageError,
    StageHandler,
};

/// Runs the given stages until `shutdown` completes, then stops receiving, lets in-flight
/// jobs finish within the grace period and releases the rest. The future owns what it
/// needs, so it can be spawned: `tokio::spawn(k8or_workers::run(ctx, &Stage::ALL, stop))`.
pub fn run(
    ctx: Context,
    stages: &[Stage],
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), RunError>> + Send + 'static {
    runner::run_handlers(
        ctx,
        stages::handlers(stages),
        shutdown,
        RunOptions::default(),
    )
}

/// Runs the given stages until all their queues are empty ("run until the queues are
/// empty"), or fails after `deadline` with what is left.
pub async fn drain(
    ctx: &Context,
    stages: &[Stage],
    deadline: Duration,
) -> Result<DrainReport, DrainError> {
    runner::drain_handlers(ctx, stages::handlers(stages), deadline).await
}

/// Processes one delivery of `stage`'s queue, start to end.
pub async fn try_execute(ctx: &Context, stage: Stage, delivery: &Delivery) -> Execution {
    let handler = stages::handler(stage);
    runner::execute(ctx, handler.as_ref(), delivery, &CancellationToken::new()).await
}
