//! The stage loops: one per stage, each receiving in batches no larger than its free
//! concurrency, running every delivery in its own task, and stopping cleanly on shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use k8or::store::{Delivery, QueueError, ReceiveOptions};
use k8or::{Context, JobEnvelope, Stage};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use super::{execute, release, SharedHandler};

/// How long past its long-poll wait a receive under way at the stop may take to answer.
const RECEIVE_MARGIN: Duration = Duration::from_secs(5);

/// How the loops run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// After shutdown, how long in-flight jobs may run on before their messages are
    /// released (visible again at once) for another worker.
    pub grace: Duration,
    /// Overrides every stage's long-poll wait (the drain helper polls briefly).
    pub wait_time: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            wait_time: None,
        }
    }
}

/// How a worker process runs its stages (`k8or_workers::run_with`): the grace period, the
/// dead-letter monitor beside the stage loops, and fault injection (off by default).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// See [`RunOptions::grace`].
    pub grace: Duration,
    /// How often the dead-letter monitor scans the stages' dead-letter queues; `None`: no
    /// monitor in this process.
    pub monitor_every: Option<Duration>,
    /// Injected faults, for tests and drills only (see [`super::faults`]).
    pub faults: super::faults::Faults,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            grace: RunOptions::default().grace,
            monitor_every: Some(Duration::from_secs(15)),
            faults: super::faults::Faults::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no stage to run")]
    NoStages,
    #[error("the {stage} stage loop failed: {cause}")]
    Loop { stage: String, cause: String },
}

/// A receive that returns empty faster than this (a backend without long polling, or a wait
/// of zero) is followed by a pause, so an idle loop never spins the CPU.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Runs every handler's stage loop until `shutdown` completes; then stops receiving, lets
/// in-flight jobs finish within the grace period, releases the rest, and returns.
pub async fn run_handlers(
    ctx: Context,
    handlers: Vec<SharedHandler>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: RunOptions,
) -> Result<(), RunError> {
    if handlers.is_empty() {
        return Err(RunError::NoStages);
    }
    let stop = CancellationToken::new();
    let trigger = {
        let stop = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            info!("shutdown requested: no new messages will be received");
            stop.cancel();
        })
    };
    let mut loops = JoinSet::new();
    let mut names = HashMap::new();
    for handler in handlers {
        let stage = handler.stage();
        let span = tracing::info_span!("stage", stage = %stage);
        let id = loops
            .spawn(stage_loop(ctx.clone(), handler, stop.clone(), options.clone()).instrument(span))
            .id();
        names.insert(id, stage);
    }
    let mut result = Ok(());
    while let Some(joined) = loops.join_next_with_id().await {
        if let Err(e) = joined {
            let stage = names.get(&e.id()).map_or("?", |s| s.as_str());
            error!(%stage, error = %e, "a stage loop ended abnormally; stopping the others");
            stop.cancel();
            result = Err(RunError::Loop {
                stage: stage.to_owned(),
                cause: e.to_string(),
            });
        }
    }
    trigger.abort();
    result
}

async fn stage_loop(
    ctx: Context,
    handler: SharedHandler,
    stop: CancellationToken,
    options: RunOptions,
) {
    let stage = handler.stage();
    let cfg = ctx.settings.stages.get(stage).clone();
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    let release = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut outage: Option<backon::ExponentialBackoff> = None;
    let wait = options.wait_time.unwrap_or_else(|| cfg.wait_time());
    info!(queue = %cfg.queue, concurrency = cfg.concurrency, "stage loop started");
    loop {
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done {
                error!(error = %e, "a job task panicked; its message returns after its timeout");
            }
        }
        // Take only as many messages as there are free slots: a message received without
        // a slot would wait out its visibility timeout unworked.
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = stop.cancelled() => break,
        };
        let mut slots = vec![first];
        while slots.len() < cfg.batch_size {
            match permits.clone().try_acquire_owned() {
                Ok(p) => slots.push(p),
                Err(_) => break,
            }
        }
        // The configured timeout, not the queue's own: the heartbeat is paced by it, and a
        // queue provisioned with another one (settings changed since) would hand the
        // message to another worker before the first beat.
        let receive = ReceiveOptions {
            max_messages: slots.len(),
            wait,
            visibility_timeout: Some(cfg.visibility_timeout()),
        };
        let started = Instant::now();
        let receiving = ctx.stores.queue.receive(&cfg.queue, &receive);
        tokio::pin!(receiving);
        let received = tokio::select! {
            r = &mut receiving => r,
            () = stop.cancelled() => {
                if ctx.stores.queue.receive_outlives_its_caller() {
                    finish_receive(&ctx, stage, &cfg.queue, receiving, wait).await;
                }
                break;
            }
        };
        match received {
            Ok(deliveries) => {
                if outage.take().is_some() {
                    info!("queue reachable again");
                }
                if deliveries.is_empty() {
                    let idle = MIN_POLL.saturating_sub(started.elapsed());
                    if !idle.is_zero() && pause(idle, &stop).await {
                        break;
                    }
                    continue;
                }
                for (delivery, slot) in deliveries.into_iter().zip(slots) {
                    let (ctx, handler, release) = (ctx.clone(), handler.clone(), release.clone());
                    tasks.spawn(
                        async move {
                            execute(&ctx, handler.as_ref(), &delivery, &release).await;
                            drop(slot);
                        }
                        .in_current_span(),
                    );
                }
            }
            Err(e) => {
                let delay = outage
                    .get_or_insert_with(outage_backoff)
                    .next()
                    .unwrap_or(Duration::from_secs(30));
                warn!(error = %e, retry_in_ms = delay.as_millis(), "receive failed; backing off");
                if pause(delay, &stop).await {
                    break;
                }
            }
        }
    }
    finish_in_flight(tasks, &release, options.grace).await;
    info!("stage loop stopped");
}

/// Lets a receive under way at the stop end (its long poll ends within `wait`) and
/// releases what it took: dropped, it would still take messages at the server, which would
/// then stay hidden for their visibility timeout.
async fn finish_receive(
    ctx: &Context,
    stage: Stage,
    queue: &str,
    receiving: impl Future<Output = Result<Vec<Delivery>, QueueError>>,
    wait: Duration,
) {
    info!("stopping: letting the receive under way end");
    match tokio::time::timeout(wait + RECEIVE_MARGIN, receiving).await {
        Ok(Ok(deliveries)) => {
            for d in deliveries {
                release_unworked(ctx, stage, queue, &d).await;
            }
        }
        Ok(Err(e)) => warn!(error = %e, "the receive under way at the stop failed"),
        Err(_) => warn!("the receive under way at the stop did not end in time"),
    }
}

/// Releases a message received at the stop, which no attempt ran: the job only learns of
/// it if it was sent again (see [`release`]).
async fn release_unworked(ctx: &Context, stage: Stage, queue: &str, d: &Delivery) {
    let env = JobEnvelope::parse(&d.body).ok();
    let attempt = env
        .as_ref()
        .map_or(d.receive_count, |e| release::attempt_of(e, d));
    let (env, id) = (env.as_ref(), &d.message_id);
    let record = |sent_again: bool| async move {
        let Some(env) = env.filter(|_| sent_again) else {
            return;
        };
        if let Err(e) = ctx.jobs.modify(env.job_id, |j| j.supersede(id)).await {
            warn!(error = %e, "could not name the message sent again on the job");
        }
    };
    release::release(ctx, stage, queue, d, env, attempt, record).await;
    info!(message.id = %d.message_id, "released a message received at the stop");
}

/// Sleeps, unless shutdown comes first; true if it did.
async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = stop.cancelled() => true,
    }
}

/// Growing pauses while the backend is away: 200 ms doubling to 30 s, with jitter so that
/// many workers do not come back at the same instant.
fn outage_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Lets in-flight jobs finish within `grace`, then tells the rest to release their messages
/// and waits for them to do so.
async fn finish_in_flight(mut tasks: JoinSet<()>, release: &CancellationToken, grace: Duration) {
    if tasks.is_empty() {
        return;
    }
    info!(
        in_flight = tasks.len(),
        grace_ms = grace.as_millis(),
        "waiting for in-flight jobs"
    );
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        warn!("grace period over: releasing unfinished messages");
        release.cancel();
        while tasks.join_next().await.is_some() {}
    }
}
