//! Queues the jobs an intake wrote but never queued: it died (or lost the queue for good)
//! between writing the job with its unqueued mark and sending its first message, so no
//! message would ever move the job (`k8or::jobs` explains the marks). Runs with the
//! dead-letter monitor, in the process that runs validate.
//!
//! A mark older than [`UNQUEUED_AFTER`] is taken as lost: the job, still queued for
//! validation with nothing done, gets its first message now. Should the intake's message
//! exist after all (its mark could not be cleared), the job simply has two, and its stages
//! take the second as the duplicate it is. A mark whose job moved on, or is gone (its
//! intake undid it), is only cleared.

use std::time::Duration;

use chrono::Utc;
use k8or::jobs::JobsError;
use k8or::store::QueueError;
use k8or::{Context, JobEnvelope, JobStatus, Stage};
use tracing::{info, warn};
use uuid::Uuid;

/// How old a mark must be before its job counts as never queued: far longer than an
/// intake takes from the job's write to its message.
pub const UNQUEUED_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RequeueError {
    #[error(transparent)]
    Jobs(#[from] JobsError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// One sweep: queues every job marked unqueued for longer than `older_than`; returns how
/// many it queued.
pub async fn sweep(ctx: &Context, older_than: Duration) -> Result<usize, RequeueError> {
    let age = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
    let cutoff = Utc::now().timestamp().saturating_sub(age);
    let mut queued = 0;
    for id in ctx.jobs.unqueued(cutoff).await? {
        // One job that cannot be handled (unreadable, a store away) must not hold up the
        // others: its mark stays, and the next sweep tries again.
        match requeue(ctx, id).await {
            Ok(true) => queued += 1,
            Ok(false) => {}
            Err(e) => {
                warn!(job.id = %id, error = %e, "could not queue an unqueued job; next sweep")
            }
        }
    }
    if queued > 0 {
        info!(queued, "queued jobs their intake had not");
    }
    Ok(queued)
}

/// Queues the marked job `id` if it is still waiting for its first message, and clears its
/// mark; true if it queued it.
async fn requeue(ctx: &Context, id: Uuid) -> Result<bool, RequeueError> {
    let Some(job) = ctx.jobs.get(id).await? else {
        ctx.jobs.queued(id).await?;
        return Ok(false);
    };
    let waiting = job.status == JobStatus::Queued && job.stage == Some(Stage::Validate);
    if waiting {
        ctx.enqueue(
            &JobEnvelope::first(&job),
            Duration::ZERO,
            Default::default(),
        )
        .await?;
        warn!(job.id = %id, "a job was written but never queued (its intake stopped); queued it now");
    }
    ctx.jobs.queued(id).await?;
    Ok(waiting)
}
