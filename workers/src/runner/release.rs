//! Letting go of a message at shutdown: visible again at once for another worker. A
//! release is no failure, but the queue counted the receive: on a message's last allowed
//! receive the next one would move it to the dead-letter queue. So that message is sent
//! again instead, as a new one whose envelope starts at the next attempt, and deleted.

use std::time::Duration;

use k8or::store::Delivery;
use k8or::{Context, JobEnvelope, Stage};
use tracing::{info, warn};

/// Releases `delivery` of `stage`'s `queue`, whose attempt was `attempt` (`env`: its
/// envelope, if it has one; an unreadable message is only made visible, and the queue's
/// receive count dead-letters it in the end).
pub(super) async fn release(
    ctx: &Context,
    stage: Stage,
    queue: &str,
    delivery: &Delivery,
    env: Option<&JobEnvelope>,
    attempt: u32,
) {
    let max = ctx.settings.stages.get(stage).max_receive_count;
    if delivery.receive_count >= max {
        if let Some(env) = env {
            if send_again(ctx, queue, delivery, env, attempt.saturating_add(1)).await {
                return;
            }
        }
    }
    if let Err(e) = ctx
        .stores
        .queue
        .change_visibility(queue, &delivery.receipt, Duration::ZERO)
        .await
    {
        warn!(error = %e, "could not release the message; its visibility timeout applies");
    }
}

/// Sends the message again as a new one that starts at `next_attempt`, then deletes it;
/// false (nothing changed) if the send failed. If the delete fails (or the process dies
/// first), the original comes back once more and is dead-lettered; the monitor knows it as
/// a stale copy, its attempts all before the new message's.
async fn send_again(
    ctx: &Context,
    queue: &str,
    delivery: &Delivery,
    env: &JobEnvelope,
    next_attempt: u32,
) -> bool {
    let mut env = env.clone();
    env.attempt = next_attempt;
    let attributes = delivery.attributes.clone();
    if let Err(e) = ctx.enqueue(&env, Duration::ZERO, attributes).await {
        warn!(error = %e, "could not send the released message again");
        return false;
    }
    if let Err(e) = ctx.stores.queue.delete(queue, &delivery.receipt).await {
        warn!(error = %e, "could not delete the released message after sending it again");
    }
    info!(next_attempt, "released on its last receive: sent again");
    true
}

/// The attempt a delivery of `env`'s message is: the queue counts the message's receives,
/// from the attempt its envelope starts at.
pub(super) fn attempt_of(env: &JobEnvelope, delivery: &Delivery) -> u32 {
    env.attempt
        .saturating_sub(1)
        .saturating_add(delivery.receive_count.max(1))
}
