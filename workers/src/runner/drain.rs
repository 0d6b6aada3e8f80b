//! "Run until the queues are empty": the real stage loops, stopped as soon as every queue
//! they serve holds nothing visible, in flight or delayed. Tests drive the whole pipeline
//! with it and then look at the stores.

use std::time::Duration;

use k8or::store::{QueueDepth, QueueError};
use k8or::Context;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::worker::RunError;
use super::{run_handlers, RunOptions, SharedHandler};

/// How often the queue depths are looked at while draining.
const POLL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// How long it took until every queue was empty.
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("queues not empty after {waited:?}: {depths:?}")]
    Timeout {
        waited: Duration,
        depths: Vec<(String, QueueDepth)>,
    },
    #[error("reading a queue depth: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Run(#[from] RunError),
}

fn is_empty(d: &QueueDepth) -> bool {
    d.visible == 0 && d.in_flight == 0 && d.delayed == 0
}

/// Runs the handlers' stage loops until all their queues are empty, or fails after
/// `deadline` with what is left. A stage enqueues the next stage before it deletes its own
/// message, so the queues are never all empty while a job is still on its way.
pub async fn drain_handlers(
    ctx: &Context,
    handlers: Vec<SharedHandler>,
    deadline: Duration,
) -> Result<DrainReport, DrainError> {
    let queues: Vec<String> = handlers
        .iter()
        .map(|h| ctx.settings.stages.get(h.stage()).queue.clone())
        .collect();
    let stop = CancellationToken::new();
    let options = RunOptions {
        grace: Duration::from_secs(10),
        wait_time: Some(Duration::from_millis(50)),
    };
    let runner = tokio::spawn(run_handlers(
        ctx.clone(),
        handlers,
        stop.clone().cancelled_owned(),
        options,
    ));
    let start = Instant::now();
    let outcome = loop {
        let mut depths = Vec::with_capacity(queues.len());
        for q in &queues {
            match ctx.stores.queue.depth(q).await {
                Ok(d) => depths.push((q.clone(), d)),
                Err(e) => {
                    stop.cancel();
                    let _ = runner.await;
                    return Err(e.into());
                }
            }
        }
        if depths.iter().all(|(_, d)| is_empty(d)) {
            break Ok(DrainReport {
                elapsed: start.elapsed(),
            });
        }
        if start.elapsed() >= deadline {
            break Err(DrainError::Timeout {
                waited: start.elapsed(),
                depths,
            });
        }
        tokio::time::sleep(POLL).await;
    };
    stop.cancel();
    match runner.await {
        Ok(Ok(())) => outcome,
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(DrainError::Run(RunError::Loop {
            stage: "drain".into(),
            cause: e.to_string(),
        })),
    }
}
