//! k8or stage workers: a generic runner (receive, heartbeat, retry, reject, release on
//! shutdown) and the four stages of the upload pipeline, registered in one list.
//!
//! - [`run`]: every chosen stage's loop until shutdown (the `k8or-worker` binary, and the
//!   API binary in embedded mode).
//! - [`drain`]: the same loops until every queue is empty (tests).
//! - [`try_execute`]: one delivery, start to end (tests, tools).
//! - [`monitor`]: the dead-letter monitor ([`run`] runs it beside the stage loops).

pub mod allocator;
pub mod monitor;
pub mod requeue;
pub mod runner;
pub mod signals;
pub mod stages;
pub mod telemetry;

use std::future::Future;
use std::time::Duration;

use k8or::store::Delivery;
use k8or::{Context, Stage};
use tokio_util::sync::CancellationToken;

pub use runner::{
    DrainError, DrainReport, Execution, Outcome, RunError, RunOptions, SharedHandler, StageError,
    StageHandler, Tuning,
};

/// Runs the given stages until `shutdown` completes, then stops receiving, lets in-flight
/// jobs finish within the grace period and releases the rest. The future owns what it
/// needs, so it can be spawned: `tokio::spawn(k8or_workers::run(ctx, &Stage::ALL, stop))`.
/// While they run, the queue gauges of those stages are refreshed (see [`telemetry`]) and
/// their dead-letter queues watched (see [`monitor`]).
pub fn run(
    ctx: Context,
    stages: &[Stage],
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = Result<(), RunError>> + Send + 'static {
    run_with(ctx, stages, shutdown, Tuning::default())
}

/// [`run`] with its grace period, monitor interval and injected faults chosen.
pub fn run_with(
    ctx: Context,
    stages: &[Stage],
    shutdown: impl Future<Output = ()> + Send + 'static,
    tuning: Tuning,
) -> impl Future<Output = Result<(), RunError>> + Send + 'static {
    let handlers = tuning.faults.wrap(stages::handlers(stages));
    let stages = stages.to_vec();
    async move {
        let stop_gauges = CancellationToken::new();
        let gauges = tokio::spawn(telemetry::refresh_queue_gauges(
            ctx.clone(),
            stages.clone(),
            telemetry::QUEUE_GAUGE_PERIOD,
            stop_gauges.clone(),
        ));
        let watcher = tuning.monitor_every.map(|every| {
            tokio::spawn(monitor::run(
                ctx.clone(),
                stages,
                every,
                stop_gauges.clone(),
            ))
        });
        let options = RunOptions {
            grace: tuning.grace,
            wait_time: None,
        };
        let result = runner::run_handlers(ctx, handlers, shutdown, options).await;
        stop_gauges.cancel();
        // The refresher and the monitor only end by cancellation; a panic in either is not
        // the loops' failure.
        let _ = gauges.await;
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        result
    }
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
