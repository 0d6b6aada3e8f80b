//! Letting go of a message at shutdown: visible again at once for another worker. A
//! release is no failure, but the queue counted the receive: on a message's last allowed
//! receive the next one would move it to the dead-letter queue. So that message is sent
//! again instead, as a new one whose envelope starts at the next attempt; the job then
//! names the original as superseded (so that the dead-letter monitor knows it for a stale
//! copy, should its delete fail), and the original is deleted.
//!
//! [`release`] keeps that order, with the caller's job write in the middle.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use k8or::store::Delivery;
use k8or::{Context, JobEnvelope, Stage};
use tracing::{info, warn};

/// Releases `delivery` of `stage`'s `queue`, whose attempt was `attempt`: sends it again if
/// this was its last receive, then runs `record` (the job write, told whether it was sent
/// again, so that it names the original as superseded), then lets the original go. The
/// job is written before the message is free: once it is, another worker may start the
/// next attempt at once.
pub(super) async fn release<Fut: Future<Output = ()>>(
    ctx: &Context,
    stage: Stage,
    queue: &str,
    delivery: &Delivery,
    env: Option<&JobEnvelope>,
    attempt: u32,
    record: impl FnOnce(bool) -> Fut,
) {
    let sent_again = send_again_if_last(ctx, stage, delivery, env, attempt).await;
    record(sent_again).await;
    let_go(ctx, queue, delivery, sent_again).await;
}

/// On the message's last allowed receive, sends it again as a new one that starts at the
/// attempt after `attempt`; true if it did (`env`: its envelope; an unreadable message is
/// never sent again, and the queue's receive count dead-letters it in the end).
async fn send_again_if_last(
    ctx: &Context,
    stage: Stage,
    delivery: &Delivery,
    env: Option<&JobEnvelope>,
    attempt: u32,
) -> bool {
    let max = ctx.settings.stages.get(stage).max_receive_count;
    let Some(env) = env.filter(|_| delivery.receive_count >= max) else {
        return false;
    };
    let mut next = env.clone();
    next.attempt = attempt.saturating_add(1);
    let attributes = delivery.attributes.clone();
    match ctx.enqueue(&next, Duration::ZERO, attributes).await {
        Ok(_) => {
            info!(
                next_attempt = next.attempt,
                "released on its last receive: sent again"
            );
            true
        }
        Err(e) => {
            warn!(error = %e, "could not send the released message again; releasing it as it is");
            false
        }
    }
}

/// Lets go of the original: deletes it if it was sent again (retrying a few times: left,
/// it comes back once more and is dead-lettered as a stale copy), else makes it visible.
async fn let_go(ctx: &Context, queue: &str, delivery: &Delivery, sent_again: bool) {
    let q = &ctx.stores.queue;
    if sent_again {
        let delete = || q.delete(queue, &delivery.receipt);
        let retries = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_times(3);
        if let Err(e) = delete.retry(retries).await {
            warn!(error = %e, "could not delete a message sent again; it will be a stale dead letter");
        }
    } else if let Err(e) = q
        .change_visibility(queue, &delivery.receipt, Duration::ZERO)
        .await
    {
        warn!(error = %e, "could not release the message; its visibility timeout applies");
    }
}

/// The attempt a delivery of `env`'s message is: the queue counts the message's receives,
/// from the attempt its envelope starts at.
pub(super) fn attempt_of(env: &JobEnvelope, delivery: &Delivery) -> u32 {
    env.attempt
        .saturating_sub(1)
        .saturating_add(delivery.receive_count.max(1))
}
