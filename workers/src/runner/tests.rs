//! When the runner writes a job's start: on its own for a stage that runs on (so the board
//! shows it running), folded into the result write for one that ends quickly; either way
//! the history keeps the start entry once, at its real time, before the result.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use k8or::job::StoredImage;
use k8or::store::{Delivery, OutMessage, Queue, QueueDepth, QueueError, QueueSpec, ReceiveOptions};
use k8or::{Context, JobEnvelope, JobRecord, JobStatus, Settings, Stage};
use tempfile::TempDir;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::attempt::START_WRITE_AFTER;
use super::{execute, Execution, Outcome, StageError, StageHandler};

async fn context() -> (TempDir, Context) {
    context_with(|_| {}).await
}

async fn context_with(tweak: impl FnOnce(&mut Settings)) -> (TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    tweak(&mut settings);
    settings.validate().unwrap();
    let stores = k8or::store::open(&settings).await.unwrap();
    k8or::store::provision(&stores, &settings).await.unwrap();
    (dir, Context::new(settings, stores))
}

/// A job as the intake writes it, and the delivery of its validate message.
async fn submitted(ctx: &Context) -> (JobRecord, Delivery) {
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
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::from_secs(5),
        visibility_timeout: None,
    };
    let queue = &ctx.settings.stages.validate.queue;
    let delivery = ctx
        .stores
        .queue
        .receive(queue, &options)
        .await
        .unwrap()
        .pop()
        .expect("the message just sent");
    (job, delivery)
}

/// A validate stage that records the job it was given, waits for `go` if it has one, and
/// ends as `result` says.
struct Probe {
    seen: Mutex<Option<JobRecord>>,
    go: Option<Arc<Notify>>,
    result: fn() -> Result<Outcome, StageError>,
}

impl Probe {
    fn new(go: Option<Arc<Notify>>, result: fn() -> Result<Outcome, StageError>) -> Self {
        Self {
            seen: Mutex::new(None),
            go,
            result,
        }
    }
}

#[async_trait]
impl StageHandler for Probe {
    fn stage(&self) -> Stage {
        Stage::Validate
    }

    async fn handle(
        &self,
        job: &JobRecord,
        _: &JobEnvelope,
        _: &Context,
    ) -> Result<Outcome, StageError> {
        *self.seen.lock().unwrap() = Some(job.clone());
        if let Some(go) = &self.go {
            go.notified().await;
        }
        (self.result)()
    }
}

fn done() -> Result<Outcome, StageError> {
    Ok(Outcome::default().with_output("probe", serde_json::json!(1)))
}

fn statuses(job: &JobRecord) -> Vec<JobStatus> {
    job.history.iter().map(|h| h.status).collect()
}

#[tokio::test]
async fn a_quick_stage_keeps_its_start_entry_at_its_real_time() {
    let (_dir, ctx) = context().await;
    let (before, delivery) = submitted(&ctx).await;
    let probe = Probe::new(None, done);
    let out = execute(&ctx, &probe, &delivery, &CancellationToken::new()).await;
    assert_eq!(
        out,
        Execution::Done {
            next: Some(Stage::PersistMetadata)
        }
    );
    let seen = probe.seen.lock().unwrap().clone().unwrap();
    assert_eq!(
        (seen.status, seen.attempt),
        (JobStatus::Validating, 1),
        "the stage sees the job as started"
    );
    // How many writes that took depends on how fast the stage ended (the benchmark
    // measures that); what the board is told does not.
    let after = ctx.jobs.get(before.job_id).await.unwrap().unwrap();
    assert_eq!(
        statuses(&after),
        [JobStatus::Queued, JobStatus::Validating],
        "the start entry is kept, once"
    );
    assert_eq!(after.history[1].attempt, Some(1));
    assert_eq!(after.history[1].at, seen.history[1].at, "at its real time");
    assert_eq!(after.outputs["probe"], 1);
}

#[tokio::test]
async fn a_quick_rejection_keeps_the_start_entry_before_it() {
    let (_dir, ctx) = context().await;
    let (before, delivery) = submitted(&ctx).await;
    let probe = Probe::new(None, || Err(StageError::reject("no")));
    let out = execute(&ctx, &probe, &delivery, &CancellationToken::new()).await;
    assert_eq!(
        out,
        Execution::Rejected {
            reasons: vec!["no".into()]
        }
    );
    let after = ctx.jobs.get(before.job_id).await.unwrap().unwrap();
    assert_eq!(
        statuses(&after),
        [
            JobStatus::Queued,
            JobStatus::Validating,
            JobStatus::Rejected
        ]
    );
    assert!(after.history[1].at <= after.history[2].at);
}

#[tokio::test]
async fn a_stage_that_runs_on_shows_as_running_while_it_runs() {
    let (_dir, ctx) = context().await;
    let (before, delivery) = submitted(&ctx).await;
    let go = Arc::new(Notify::new());
    let probe = Arc::new(Probe::new(Some(go.clone()), done));
    let run = {
        let (ctx, probe) = (ctx.clone(), probe.clone());
        tokio::spawn(async move {
            execute(&ctx, probe.as_ref(), &delivery, &CancellationToken::new()).await
        })
    };
    // No timing assertion: the start is awaited, however long it takes to be written.
    let running = loop {
        let job = ctx.jobs.get(before.job_id).await.unwrap().unwrap();
        if job.status == JobStatus::Validating {
            break job;
        }
        tokio::time::sleep(START_WRITE_AFTER / 4).await;
    };
    assert!(
        probe.seen.lock().unwrap().is_some(),
        "written while running"
    );
    assert_eq!(running.revision, before.revision + 1);
    assert!(running.outputs.get("probe").is_none());
    go.notify_one();
    assert_eq!(
        run.await.unwrap(),
        Execution::Done {
            next: Some(Stage::PersistMetadata)
        }
    );
    let after = ctx.jobs.get(before.job_id).await.unwrap().unwrap();
    assert_eq!(after.revision, before.revision + 2, "start, then result");
    assert_eq!(
        statuses(&after),
        [JobStatus::Queued, JobStatus::Validating],
        "one start entry, not two"
    );
    assert_eq!(after.outputs["probe"], 1);
}

/// A validate stage that runs until it is cancelled.
struct Endless;

#[async_trait]
impl StageHandler for Endless {
    fn stage(&self) -> Stage {
        Stage::Validate
    }

    async fn handle(
        &self,
        _: &JobRecord,
        _: &JobEnvelope,
        _: &Context,
    ) -> Result<Outcome, StageError> {
        std::future::pending().await
    }
}

/// The embedded queue, except that every delete fails (the backend away at that moment).
struct DeletesFail {
    inner: Arc<dyn Queue>,
}

#[async_trait]
impl Queue for DeletesFail {
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
        self.inner.receive(queue, options).await
    }

    async fn delete(&self, _: &str, _: &str) -> Result<(), QueueError> {
        Err(QueueError::Unavailable("injected: deletes fail".into()))
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
}

/// A release at shutdown is no failure: on the message's last allowed receive it must not
/// cost the job its place in the queue. The message is sent again, starting at the next
/// attempt, and the job names the original; on earlier receives the message itself is made
/// visible again. Here the original's delete fails, so it comes back and is dead-lettered:
/// the monitor knows it for a stale copy and leaves the job, at work on the new message.
#[tokio::test]
async fn a_release_on_the_last_receive_sends_the_message_again() {
    let (_dir, ctx) = context_with(|s| {
        s.stages.validate.max_receive_count = 2;
        s.stages.validate.visibility_timeout_secs = 1;
    })
    .await;
    let (job, first) = submitted(&ctx).await;
    let queue = ctx.settings.stages.validate.queue.clone();
    let dlq = ctx.settings.stages.validate.dead_letter_queue.clone();
    let released = || {
        let cancel = CancellationToken::new();
        cancel.cancel();
        cancel
    };
    // `hold`: how long the receive hides the message (else the queue's second).
    let (q, queue_name) = (&ctx.stores.queue, &queue);
    let receive = |hold: Option<Duration>| async move {
        let options = ReceiveOptions {
            max_messages: 1,
            wait: Duration::from_secs(2),
            visibility_timeout: hold,
        };
        for _ in 0..5 {
            let got = q.receive(queue_name, &options).await.unwrap();
            if let Some(d) = got.into_iter().next() {
                return d;
            }
        }
        panic!("nothing to receive");
    };

    // The first receive of two: the message itself comes back.
    assert_eq!(
        execute(&ctx, &Endless, &first, &released()).await,
        Execution::Released
    );
    let second = receive(None).await;
    assert_eq!(
        (second.message_id.as_str(), second.receive_count),
        (first.message_id.as_str(), 2)
    );

    // The last: a new message, at attempt 3; the original's delete fails.
    let mut failing = ctx.clone();
    failing.stores.queue = Arc::new(DeletesFail {
        inner: ctx.stores.queue.clone(),
    });
    assert_eq!(
        execute(&failing, &Endless, &second, &released()).await,
        Execution::Released
    );
    let job_now = ctx.jobs.get(job.job_id).await.unwrap().unwrap();
    assert_eq!((job_now.status, job_now.attempt), (JobStatus::Retrying, 2));
    assert_eq!(job_now.superseded, std::slice::from_ref(&first.message_id));

    // The new message is taken; once its timeout is over, the original is dead-lettered
    // by the next receive.
    let third = receive(Some(Duration::from_secs(60))).await;
    assert_ne!(third.message_id, first.message_id);
    assert_eq!(third.receive_count, 1);
    assert_eq!(JobEnvelope::parse(&third.body).unwrap().attempt, 3);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::ZERO,
        visibility_timeout: Some(Duration::from_secs(60)),
    };
    let rest = ctx.stores.queue.receive(&queue, &options).await.unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(ctx.stores.queue.depth(&dlq).await.unwrap().visible, 1);

    // The new message's attempt fails and will be retried: attempt 3.
    let probe = Probe::new(None, || Err(StageError::retry("x", "y")));
    let out = execute(&ctx, &probe, &third, &CancellationToken::new()).await;
    assert!(matches!(out, Execution::Retrying { .. }), "{out:?}");
    assert_eq!(probe.seen.lock().unwrap().as_ref().unwrap().attempt, 3);

    // The dead-lettered original is a stale copy: nothing recorded, the job left as it is.
    let report = crate::monitor::scan(&ctx, &[Stage::Validate])
        .await
        .unwrap();
    let states: Vec<_> = report.letters.iter().map(|l| l.state).collect();
    assert_eq!(states, [crate::monitor::LetterState::Stale]);
    let job_now = ctx.jobs.get(job.job_id).await.unwrap().unwrap();
    assert_eq!((job_now.status, job_now.attempt), (JobStatus::Retrying, 3));
    assert!(ctx.audit.errors_of("jamesbond").await.unwrap().is_empty());
}
