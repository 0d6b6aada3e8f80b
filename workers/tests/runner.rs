//! The runner on the embedded backend, with stages written for the test: retries with
//! growing delays, rejections, unusable messages, duplicates, heartbeats and shutdown.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use k8or::job::StoredImage;
use k8or::store::{Delivery, OutMessage, Queue, QueueDepth, QueueError, QueueSpec, ReceiveOptions};
use k8or::{Context, JobEnvelope, JobRecord, JobStatus, Settings, Stage};
use k8or_workers::runner::{execute, run_handlers, RunOptions, SharedHandler};
use k8or_workers::{Execution, Outcome, StageError, StageHandler};
use tempfile::TempDir;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

async fn context(tweak: impl FnOnce(&mut Settings)) -> (TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    for stage in Stage::ALL {
        let c = settings.stages.get_mut(stage);
        c.backoff_base_ms = 100;
        c.backoff_max_ms = 250;
        c.jitter = 0.0;
        c.wait_time_secs = 1;
    }
    tweak(&mut settings);
    settings.validate().unwrap();
    let stores = k8or::store::open(&settings).await.unwrap();
    k8or::store::provision(&stores, &settings).await.unwrap();
    (dir, Context::new(settings, stores))
}

/// A job as the intake writes it, and its validate envelope on the queue.
async fn submit(ctx: &Context) -> JobEnvelope {
    let request = serde_json::from_value(serde_json::json!({
        "imageMetadata": {"imageName": "n", "imageVersion": "v0-0-01", "imageCategory": "c"},
        "userMetadata": {"username": "jamesbond"}
    }))
    .unwrap();
    let image = StoredImage {
        temp_key: "tmp/x".into(),
        size: 1,
        sha256: String::new(),
        declared_content_type: None,
        file_name: None,
    };
    let id = Uuid::now_v7();
    let job = JobRecord::new(
        id,
        "jamesbond".into(),
        "UID".into(),
        request,
        image,
        Utc::now(),
    );
    ctx.jobs.create(&job).await.unwrap();
    let env = JobEnvelope::new(id, "UID".into(), "jamesbond".into(), Stage::Validate);
    ctx.enqueue(&env, Duration::ZERO, Default::default())
        .await
        .unwrap();
    env
}

fn queue(ctx: &Context) -> String {
    ctx.settings.stages.validate.queue.clone()
}

/// Waits (long-polling) for the next delivery of the validate queue.
async fn next(ctx: &Context) -> Delivery {
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::from_secs(5),
        visibility_timeout: None,
    };
    for _ in 0..6 {
        let mut got = ctx
            .stores
            .queue
            .receive(&queue(ctx), &options)
            .await
            .unwrap();
        if let Some(d) = got.pop() {
            return d;
        }
    }
    panic!("no delivery within 30 s");
}

async fn depth(ctx: &Context) -> QueueDepth {
    ctx.stores.queue.depth(&queue(ctx)).await.unwrap()
}

/// A stage whose every attempt ends the way `result` says, counting its calls.
struct Scripted {
    calls: AtomicU32,
    result: fn(u32) -> Result<Outcome, StageError>,
}

#[async_trait]
impl StageHandler for Scripted {
    fn stage(&self) -> Stage {
        Stage::Validate
    }

    fn error_type(&self) -> &'static str {
        "scripted-rejection"
    }

    async fn handle(
        &self,
        _: &JobRecord,
        _: &JobEnvelope,
        _: &Context,
    ) -> Result<Outcome, StageError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        (self.result)(n)
    }
}

fn scripted(result: fn(u32) -> Result<Outcome, StageError>) -> Scripted {
    Scripted {
        calls: AtomicU32::new(0),
        result,
    }
}

#[tokio::test]
async fn a_retryable_failure_comes_back_later_with_a_growing_delay() {
    let (_dir, ctx) = context(|_| {}).await;
    let env = submit(&ctx).await;
    let stage = scripted(|n| match n {
        1..=3 => Err(StageError::Retryable(format!("backend away (try {n})"))),
        _ => Ok(Outcome::default()),
    });
    let never = CancellationToken::new();
    let mut delays = Vec::new();
    for _ in 0..3 {
        let d = next(&ctx).await;
        match execute(&ctx, &stage, &d, &never).await {
            Execution::Retrying { delay, error } => {
                assert!(error.starts_with("backend away"), "{error}");
                delays.push(delay.as_millis());
            }
            other => panic!("{other:?}"),
        }
        let job = ctx.jobs.get(env.job_id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Retrying);
        assert_eq!(job.attempt, d.receive_count);
        assert!(job
            .error
            .as_deref()
            .unwrap()
            .contains(&format!("try {}", d.receive_count)));
    }
    assert_eq!(delays, [100, 200, 250], "doubling from the base, capped");
    let d = next(&ctx).await;
    assert_eq!(d.receive_count, 4);
    assert_eq!(
        execute(&ctx, &stage, &d, &never).await,
        Execution::Done {
            next: Some(Stage::PersistMetadata)
        }
    );
    let job = ctx.jobs.get(env.job_id).await.unwrap().unwrap();
    let retries: Vec<String> = job
        .history
        .iter()
        .filter(|h| h.status == JobStatus::Retrying)
        .map(|h| h.error.clone().unwrap())
        .collect();
    assert_eq!(retries.len(), 3);
    assert!(retries[0].ends_with("(retry in 100 ms)"), "{retries:?}");
    assert!(retries[2].ends_with("(retry in 250 ms)"), "{retries:?}");
    assert_eq!(
        depth(&ctx).await,
        QueueDepth::default(),
        "the message is gone"
    );
    let next_queue = &ctx.settings.stages.persist_metadata.queue;
    assert_eq!(ctx.stores.queue.depth(next_queue).await.unwrap().visible, 1);
}

#[tokio::test]
async fn a_permanent_failure_rejects_once_with_every_reason() {
    let (_dir, ctx) = context(|_| {}).await;
    let env = submit(&ctx).await;
    let stage = scripted(|_| Err(StageError::Permanent(vec!["first".into(), "second".into()])));
    let never = CancellationToken::new();
    let d = next(&ctx).await;
    let out = execute(&ctx, &stage, &d, &never).await;
    assert_eq!(
        out,
        Execution::Rejected {
            reasons: vec!["first".into(), "second".into()]
        }
    );
    let job = ctx.jobs.get(env.job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Rejected);
    assert_eq!(job.reasons, ["first", "second"]);
    assert_eq!(depth(&ctx).await, QueueDepth::default());

    // A duplicate of the message finds the job final and does nothing.
    ctx.enqueue(&env, Duration::ZERO, Default::default())
        .await
        .unwrap();
    let d = next(&ctx).await;
    assert_eq!(execute(&ctx, &stage, &d, &never).await, Execution::Skipped);
    assert_eq!(stage.calls.load(Ordering::SeqCst), 1);
    let errors = ctx.audit.errors_of("jamesbond").await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.error_type, "scripted-rejection");
    assert_eq!(e.pid.to_string(), "c12bms03-c20bre24-EEE");
    assert_eq!(e.job_id, Some(env.job_id));
    assert_eq!(e.reasons, ["first", "second"]);
    assert!(!e.created.utc.is_empty() && !e.created.unix.is_empty());
    assert_eq!(depth(&ctx).await, QueueDepth::default());
}

#[tokio::test]
async fn unusable_messages_are_recorded_and_deleted() {
    let (_dir, ctx) = context(|_| {}).await;
    let stage = scripted(|_| Ok(Outcome::default()));
    let never = CancellationToken::new();

    ctx.stores
        .queue
        .send(&queue(&ctx), OutMessage::new("this is not an envelope"))
        .await
        .unwrap();
    let d = next(&ctx).await;
    assert!(matches!(
        execute(&ctx, &stage, &d, &never).await,
        Execution::Discarded { .. }
    ));
    let unknown = ctx.audit.errors_of("unknown").await.unwrap();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].error_type, "malformed-message");
    assert_eq!(unknown[0].pid.to_string(), "c12bms03-c20bre24-EEE");

    let ghost = JobEnvelope::new(
        Uuid::now_v7(),
        "UID".into(),
        "madamecoco".into(),
        Stage::Validate,
    );
    ctx.enqueue(&ghost, Duration::ZERO, Default::default())
        .await
        .unwrap();
    let d = next(&ctx).await;
    let Execution::Discarded { reason } = execute(&ctx, &stage, &d, &never).await else {
        panic!("an envelope of a missing job is discarded");
    };
    assert!(reason.contains("does not exist"), "{reason}");
    assert_eq!(ctx.audit.errors_of("madamecoco").await.unwrap().len(), 1);

    let wrong = JobEnvelope::new(
        Uuid::now_v7(),
        "UID".into(),
        "madamecoco".into(),
        Stage::Publish,
    );
    ctx.stores
        .queue
        .send(&queue(&ctx), OutMessage::new(wrong.to_body()))
        .await
        .unwrap();
    let d = next(&ctx).await;
    assert!(matches!(
        execute(&ctx, &stage, &d, &never).await,
        Execution::Discarded { .. }
    ));

    assert_eq!(stage.calls.load(Ordering::SeqCst), 0, "the stage never ran");
    assert_eq!(
        depth(&ctx).await,
        QueueDepth::default(),
        "nothing is left to retry"
    );
}

#[tokio::test]
async fn a_late_duplicate_of_a_finished_stage_is_dropped() {
    let (_dir, ctx) = context(|_| {}).await;
    let env = submit(&ctx).await;
    let stage = scripted(|_| Ok(Outcome::default()));
    let never = CancellationToken::new();
    let d = next(&ctx).await;
    assert_eq!(
        execute(&ctx, &stage, &d, &never).await,
        Execution::Done {
            next: Some(Stage::PersistMetadata)
        }
    );
    // The next stage has started on the job.
    ctx.jobs
        .modify(env.job_id, |j| j.start_stage(Stage::PersistMetadata, 1))
        .await
        .unwrap();
    ctx.enqueue(&env, Duration::ZERO, Default::default())
        .await
        .unwrap();
    let d = next(&ctx).await;
    assert_eq!(execute(&ctx, &stage, &d, &never).await, Execution::Skipped);
    assert_eq!(stage.calls.load(Ordering::SeqCst), 1);
    let job = ctx.jobs.get(env.job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Persisting, "never moved back");
}

/// A stage that signals when it starts and then waits until told to finish.
struct Held {
    started: Notify,
    finish: Notify,
}

#[async_trait]
impl StageHandler for Held {
    fn stage(&self) -> Stage {
        Stage::Validate
    }

    async fn handle(
        &self,
        _: &JobRecord,
        _: &JobEnvelope,
        _: &Context,
    ) -> Result<Outcome, StageError> {
        self.started.notify_one();
        self.finish.notified().await;
        Ok(Outcome::default())
    }
}

/// Runs one job that holds its stage for `rounds` receives of 3 s each by another worker,
/// none of which may get its message; then lets it finish, and the queue must be empty.
async fn no_other_worker_gets_a_held_job(ctx: &Context, rounds: usize) {
    submit(ctx).await;
    let held = Arc::new(Held {
        started: Notify::new(),
        finish: Notify::new(),
    });
    let stop = CancellationToken::new();
    let runner = tokio::spawn(run_handlers(
        ctx.clone(),
        vec![held.clone() as SharedHandler],
        stop.clone().cancelled_owned(),
        RunOptions::default(),
    ));
    held.started.notified().await;
    let options = ReceiveOptions {
        max_messages: 10,
        wait: Duration::from_secs(3),
        visibility_timeout: None,
    };
    for _ in 0..rounds {
        let stolen = ctx
            .stores
            .queue
            .receive(&queue(ctx), &options)
            .await
            .unwrap();
        assert!(
            stolen.is_empty(),
            "another worker got a message in progress: {stolen:?}"
        );
    }
    held.finish.notify_one();
    stop.cancel();
    runner.await.unwrap().unwrap();
    assert_eq!(depth(ctx).await, QueueDepth::default());
}

#[tokio::test]
async fn the_heartbeat_keeps_a_long_job_from_other_workers() {
    let (_dir, ctx) = context(|s| s.stages.validate.visibility_timeout_secs = 1).await;
    // Six visibility timeouts pass; without the heartbeat the message would be visible.
    no_other_worker_gets_a_held_job(&ctx, 2).await;
}

/// The settings' visibility timeout (what the heartbeat is paced by) holds even where the
/// queue was provisioned with a shorter one and not provisioned again since (production
/// queues are provisioned by an operator, not by every worker start).
#[tokio::test]
async fn a_message_stays_hidden_for_the_configured_timeout_not_the_queues() {
    let (_dir, provisioned) = context(|s| s.stages.validate.visibility_timeout_secs = 1).await;
    let mut settings = (*provisioned.settings).clone();
    settings.stages.validate.visibility_timeout_secs = 60;
    let ctx = Context::new(settings, provisioned.stores.clone());
    // Three of the queue's timeouts, well inside the configured one's first beat (20 s).
    no_other_worker_gets_a_held_job(&ctx, 1).await;
}

#[tokio::test]
async fn shutdown_releases_what_did_not_finish_in_the_grace_period() {
    let (_dir, ctx) = context(|s| s.stages.validate.visibility_timeout_secs = 600).await;
    let env = submit(&ctx).await;
    let held = Arc::new(Held {
        started: Notify::new(),
        finish: Notify::new(),
    });
    let stop = CancellationToken::new();
    let runner = tokio::spawn(run_handlers(
        ctx.clone(),
        vec![held.clone() as SharedHandler],
        stop.clone().cancelled_owned(),
        RunOptions {
            grace: Duration::from_millis(200),
            wait_time: None,
        },
    ));
    held.started.notified().await;
    stop.cancel();
    runner.await.unwrap().unwrap();
    let d = depth(&ctx).await;
    assert_eq!(
        (d.visible, d.in_flight),
        (1, 0),
        "released at once, not after 600 s: {d:?}"
    );
    let job = ctx.jobs.get(env.job_id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Retrying);
    assert!(job.error.unwrap().contains("shut down"));
    // The next worker takes it straight away and finishes it.
    let stage = scripted(|_| Ok(Outcome::default()));
    let again = next(&ctx).await;
    assert_eq!(again.receive_count, 2);
    let out = execute(&ctx, &stage, &again, &CancellationToken::new()).await;
    assert_eq!(
        out,
        Execution::Done {
            next: Some(Stage::PersistMetadata)
        }
    );
}

#[tokio::test]
async fn in_flight_jobs_finish_within_the_grace_period() {
    let (_dir, ctx) = context(|_| {}).await;
    let env = submit(&ctx).await;
    let held = Arc::new(Held {
        started: Notify::new(),
        finish: Notify::new(),
    });
    let stop = CancellationToken::new();
    let runner = tokio::spawn(run_handlers(
        ctx.clone(),
        vec![held.clone() as SharedHandler],
        stop.clone().cancelled_owned(),
        RunOptions {
            grace: Duration::from_secs(60),
            wait_time: None,
        },
    ));
    held.started.notified().await;
    stop.cancel();
    // Shutdown has begun; the job is allowed to finish.
    held.finish.notify_one();
    runner.await.unwrap().unwrap();
    assert_eq!(depth(&ctx).await, QueueDepth::default());
    let job = ctx.jobs.get(env.job_id).await.unwrap().unwrap();
    assert_eq!(
        job.status,
        JobStatus::Validating,
        "done, waiting for the next stage"
    );
    let next_queue = &ctx.settings.stages.persist_metadata.queue;
    assert_eq!(ctx.stores.queue.depth(next_queue).await.unwrap().visible, 1);
}

/// The embedded queue, except that a receive answers only when let go, after it took its
/// messages, and says (as SQS's does) that it outlives a caller that drops it.
struct AnswersLate {
    inner: Arc<dyn Queue>,
    took: Notify,
    answer: Notify,
}

#[async_trait]
impl Queue for AnswersLate {
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<bool, QueueError> {
        self.inner.ensure_queue(spec).await
    }

    async fn send(&self, queue: &str, message: OutMessage) -> Result<String, QueueError> {
        self.inner.send(queue, message).await
    }

    async fn receive(
        &self,
        queue: &str,
        options: &ReceiveOptions,
    ) -> Result<Vec<Delivery>, QueueError> {
        let got = self.inner.receive(queue, options).await?;
        if !got.is_empty() {
            self.took.notify_one();
            self.answer.notified().await;
        }
        Ok(got)
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        self.inner.delete(queue, receipt).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.inner.change_visibility(queue, receipt, timeout).await
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        self.inner.depth(queue).await
    }

    fn receive_outlives_its_caller(&self) -> bool {
        true
    }
}

/// A stop while a receive is under way: on SQS the long poll goes on at the server and
/// takes messages whoever listens, and a dropped receive would leave them hidden for their
/// visibility timeout. The loop lets it answer and releases what it took, unworked.
#[tokio::test]
async fn a_stop_lets_the_receive_under_way_answer_and_releases_what_it_took() {
    let (_dir, ctx) = context(|s| s.stages.validate.visibility_timeout_secs = 600).await;
    submit(&ctx).await;
    let late = Arc::new(AnswersLate {
        inner: ctx.stores.queue.clone(),
        took: Notify::new(),
        answer: Notify::new(),
    });
    let mut held = ctx.clone();
    held.stores.queue = late.clone();
    let stage = Arc::new(scripted(|_| Ok(Outcome::default())));
    let stop = CancellationToken::new();
    let runner = tokio::spawn(run_handlers(
        held,
        vec![stage.clone() as SharedHandler],
        stop.clone().cancelled_owned(),
        RunOptions {
            grace: Duration::from_secs(1),
            wait_time: None,
        },
    ));
    late.took.notified().await;
    assert_eq!(
        (depth(&ctx).await.visible, depth(&ctx).await.in_flight),
        (0, 1)
    );
    stop.cancel();
    // However long the loop takes to see the stop, the receive answers only now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    late.answer.notify_one();
    runner.await.unwrap().unwrap();
    let d = depth(&ctx).await;
    assert_eq!(
        (d.visible, d.in_flight),
        (1, 0),
        "released, not hidden for 600 s: {d:?}"
    );
    assert_eq!(stage.calls.load(Ordering::SeqCst), 0, "and not worked");
    assert_eq!(next(&ctx).await.receive_count, 2);
}
