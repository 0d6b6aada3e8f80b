//! One delivery, start to end: the step that both the stage loop and the tests drive
//! (zero2prod's `try_execute_task`). Every path ends with the message deleted, or with its
//! visibility set so that it comes back (retry) or is free at once (release).

use std::time::Duration;

use k8or::audit::NewError;
use k8or::store::Delivery;
use k8or::{Context, JobEnvelope, Stage};
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{warn, Instrument};

use super::attempt::Attempt;
use super::{retry_delay, StageHandler};
use crate::telemetry;

/// How one delivery ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Execution {
    /// The stage finished; the job went on to `next` (`None`: the job is published).
    Done { next: Option<Stage> },
    /// A failure that may pass: the message comes back after `delay`.
    Retrying { delay: Duration, error: String },
    /// The upload broke a rule: the job is rejected and an error item written.
    Rejected { reasons: Vec<String> },
    /// The message was not a usable envelope (unreadable, wrong queue, unknown job): it was
    /// recorded as an error item and deleted, never retried.
    Discarded { reason: String },
    /// The job was final or already past this stage: deleted, nothing redone.
    Skipped,
    /// Shutdown came before the stage finished: the message is visible again at once.
    Released,
}

/// Processes one delivery of `handler`'s queue. `cancel` releases the message (shutdown).
/// How it ended is recorded in the metrics (see `crate::telemetry`).
pub async fn execute(
    ctx: &Context,
    handler: &dyn StageHandler,
    delivery: &Delivery,
    cancel: &CancellationToken,
) -> Execution {
    let started = std::time::Instant::now();
    let stage = handler.stage();
    let out = execute_delivery(ctx, handler, delivery, cancel).await;
    let last_attempt = delivery.receive_count >= ctx.settings.stages.get(stage).max_receive_count;
    telemetry::record_execution(stage, &out, started.elapsed(), last_attempt);
    out
}

async fn execute_delivery(
    ctx: &Context,
    handler: &dyn StageHandler,
    delivery: &Delivery,
    cancel: &CancellationToken,
) -> Execution {
    let stage = handler.stage();
    let queue = ctx.settings.stages.get(stage).queue.clone();
    let env = match JobEnvelope::parse(&delivery.body) {
        Ok(env) if env.stage == stage => env,
        Ok(env) => {
            let reason = format!(
                "envelope names stage {} but came from the {stage} queue",
                env.stage
            );
            let subject = delivery.message_id.clone();
            return discard(
                ctx,
                stage,
                &queue,
                delivery,
                &env.username,
                &subject,
                reason,
            )
            .await;
        }
        Err(e) => {
            let subject = delivery.message_id.clone();
            return discard(
                ctx,
                stage,
                &queue,
                delivery,
                "unknown",
                &subject,
                e.to_string(),
            )
            .await;
        }
    };
    let (trace, incoming) = telemetry::stage_trace(delivery);
    let span = telemetry::job_span(&env, stage, delivery, &trace, incoming.as_ref());
    Attempt {
        ctx,
        handler,
        delivery,
        queue: &queue,
        env: &env,
        stage,
        trace,
        unwritten_start: std::sync::Mutex::new(None),
    }
    .run(cancel)
    .instrument(span)
    .await
}

/// Records an unusable message and deletes it. If even that fails (the backend is away),
/// the message comes back later; its receive count dead-letters it in the end.
pub(super) async fn discard(
    ctx: &Context,
    stage: Stage,
    queue: &str,
    delivery: &Delivery,
    username: &str,
    subject: &str,
    reason: String,
) -> Execution {
    warn!(%stage, message.id = %delivery.message_id, %reason, "discarding message");
    let recorded = ctx
        .audit
        .error(NewError {
            username,
            error_type: "malformed-message",
            pid: stage.error_pid(),
            subject,
            job_id: None,
            stage: Some(stage.as_str()),
            message: &reason,
            reasons: vec![reason.clone()],
            attempts: Some(delivery.receive_count),
            request_id: None,
        })
        .await;
    let deleted = match recorded {
        Ok(_) => ctx.stores.queue.delete(queue, &delivery.receipt).await,
        Err(e) => return backoff_only(ctx, stage, queue, delivery, e.to_string()).await,
    };
    match deleted {
        Ok(()) => Execution::Discarded { reason },
        Err(e) => backoff_only(ctx, stage, queue, delivery, e.to_string()).await,
    }
}

/// Sets the retry delay on a message whose job cannot be updated (none, or unreachable).
pub(super) async fn backoff_only(
    ctx: &Context,
    stage: Stage,
    queue: &str,
    delivery: &Delivery,
    error: String,
) -> Execution {
    let delay = retry_delay(
        ctx.settings.stages.get(stage),
        delivery.receive_count,
        rand::thread_rng().gen(),
    );
    if let Err(e) = ctx
        .stores
        .queue
        .change_visibility(queue, &delivery.receipt, delay)
        .await
    {
        warn!(error = %e, "could not set the retry delay; the visibility timeout applies");
    }
    warn!(%error, delay_ms = delay.as_millis(), "will retry");
    Execution::Retrying { delay, error }
}
