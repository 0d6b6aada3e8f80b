//! When the runner writes a job's start: on its own for a stage that runs on (so the board
//! shows it running), folded into the result write for one that ends quickly; either way
//! the history keeps the start entry once, at its real time, before the result.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use k8or::job::StoredImage;
use k8or::store::{Delivery, ReceiveOptions};
use k8or::{Context, JobEnvelope, JobRecord, JobStatus, Settings, Stage};
use tempfile::TempDir;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::attempt::START_WRITE_AFTER;
use super::{execute, Execution, Outcome, StageError, StageHandler};

async fn context() -> (TempDir, Context) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
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
