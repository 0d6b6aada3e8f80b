//! No job lost or doubled under crashes and outages (issue 6), on the embedded backend with
//! real `k8or-worker` processes where a process matters: SIGKILL at random moments, a
//! poison message dead-lettered, recorded once and re-driven, the database locked away
//! for longer than a visibility timeout, SIGTERM during a long validation, the same
//! message delivered twice at once, and a validate re-run beside another job's image.

#[path = "support/crash.rs"]
mod crash;
#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/pipeline.rs"]
mod pipeline;
#[path = "support/processes.rs"]
mod processes;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use crash::{CrashPlan, CrashReport};
use k8or::model::EventType;
use k8or::store::{
    peek_dead_letters, Delivery, OutMessage, Queue, QueueDepth, QueueError, QueueSpec,
    ReceiveOptions,
};
use k8or::{Context, JobEnvelope, JobRecord, JobStatus, Stage};
use k8or_workers::monitor;
use k8or_workers::runner::drain_handlers;
use k8or_workers::{stages, Execution, Outcome, SharedHandler, StageError, StageHandler};
use processes::{settings_env, Worker, WorkerSpec};

fn assert_clean(report: &CrashReport) {
    assert!(
        report.problems.is_empty() && report.lost == 0 && report.duplicated == 0,
        "lost {}, duplicated {}: {:#?}",
        report.lost,
        report.duplicated,
        report.problems
    );
}

/// Waits until every job is published (or panics with the stragglers after `limit`).
async fn wait_published(ctx: &Context, jobs: &[JobRecord], limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        let mut open = Vec::new();
        for j in jobs {
            let job = pipeline::job(ctx, j.job_id).await;
            if job.status != JobStatus::Published {
                open.push((job.job_id, job.status, job.error));
            }
        }
        if open.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "not published: {open:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until some job shows `status`; returns it.
async fn wait_for_status(ctx: &Context, jobs: &[JobRecord], status: JobStatus) -> JobRecord {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        for j in jobs {
            let job = pipeline::job(ctx, j.job_id).await;
            if job.status == status {
                return job;
            }
        }
        assert!(Instant::now() < until, "no job became {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spec(ctx: &Context, dir: &Path, faults: &str, grace_secs: u64) -> WorkerSpec {
    WorkerSpec {
        env: settings_env(&ctx.settings),
        faults: faults.to_owned(),
        grace_secs,
        log_dir: dir.to_owned(),
    }
}

/// Counts what the jobs left and checks the queues are empty.
async fn check_once(ctx: &Context, jobs: &[JobRecord]) {
    let left = crash::wait_until_queues_empty(ctx, Duration::from_secs(30)).await;
    let mut report = CrashReport::default();
    crash::tally(ctx, jobs, &mut report).await;
    report
        .problems
        .extend(left.into_iter().map(|q| format!("left: {q}")));
    assert_clean(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_or_doubled_when_workers_are_killed_at_random() {
    let dir = tempfile::tempdir().unwrap();
    let plan = CrashPlan {
        jobs: 50,
        workers: 2,
        kill_every: Duration::from_millis(1500),
        max_random_kills: 3,
        stage_delay_ms: 150,
        deadline: Duration::from_secs(90),
    };
    let report = crash::crash_run(dir.path(), &plan).await;
    eprintln!(
        "crash run: {} jobs, {} kills {:?}, lost {}, duplicated {}, {:?}",
        report.jobs, report.kills, report.kills_in, report.lost, report.duplicated, report.elapsed
    );
    assert_eq!(
        report.kills_in.keys().copied().collect::<Vec<_>>(),
        Stage::ALL,
        "a kill inside every stage"
    );
    assert_clean(&report);
}

/// The kustomize stage, failing while `on` is set.
struct Poison {
    inner: SharedHandler,
    on: Arc<AtomicBool>,
}

#[async_trait]
impl StageHandler for Poison {
    fn stage(&self) -> Stage {
        self.inner.stage()
    }

    async fn handle(
        &self,
        job: &JobRecord,
        env: &JobEnvelope,
        ctx: &Context,
    ) -> Result<Outcome, StageError> {
        if self.on.load(Ordering::SeqCst) {
            return Err(StageError::retry(
                "rendering the chart",
                "injected: the template service is down",
            ));
        }
        self.inner.handle(job, env, ctx).await
    }
}

/// Every stage's handler, kustomize's failing (retryably) while `on` holds.
fn poisoned_kustomize(on: &Arc<AtomicBool>) -> Vec<SharedHandler> {
    stages::handlers(&Stage::ALL)
        .into_iter()
        .map(|h| {
            if h.stage() == Stage::Kustomize {
                Arc::new(Poison {
                    inner: h,
                    on: on.clone(),
                }) as SharedHandler
            } else {
                h
            }
        })
        .collect()
}

fn cli(ctx: &Context, dir: &Path, args: &[&str]) -> String {
    processes::run_cli(&settings_env(&ctx.settings), dir, args)
}

/// The retry delays the history recorded for `stage` since its last re-drive.
fn recorded_delays(job: &JobRecord, stage: Stage) -> Vec<u64> {
    let since = job
        .history
        .iter()
        .rposition(|h| h.stage == Some(stage) && h.status == JobStatus::Queued)
        .map_or(0, |i| i + 1);
    job.history[since..]
        .iter()
        .filter(|h| h.stage == Some(stage) && h.status == JobStatus::Retrying)
        .map(|h| {
            let e = h.error.as_deref().unwrap();
            let ms = e.rsplit_once("(retry in ").unwrap().1;
            ms.trim_end_matches(" ms)").parse().unwrap()
        })
        .collect()
}

fn dead_letter_items(errors: &[k8or::model::ErrorItem], job: &JobRecord) -> Vec<String> {
    errors
        .iter()
        .filter(|e| e.job_id == Some(job.job_id) && e.error_type == monitor::ERROR_TYPE)
        .map(|e| e.error_key.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_recorded_once_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = crash::shared_context(&dir.path().join("data"), |s| {
        let k = &mut s.stages.kustomize;
        k.max_receive_count = 3;
        k.backoff_base_ms = 200;
        k.backoff_max_ms = 5000;
    })
    .await;
    let on = Arc::new(AtomicBool::new(true));
    let handlers = || poisoned_kustomize(&on);
    let jobs = crash::submit_many(&ctx, 1, "Poison").await;
    let id = jobs[0].job_id;
    let dlq = ctx.settings.stages.kustomize.dead_letter_queue.clone();

    // Retried with growing delays, then dead-lettered (the stage queues drain empty).
    drain_handlers(&ctx, handlers(), Duration::from_secs(60))
        .await
        .unwrap();
    let job = pipeline::job(&ctx, id).await;
    assert_eq!(recorded_delays(&job, Stage::Kustomize), [200, 400, 800]);
    assert_eq!(ctx.stores.queue.depth(&dlq).await.unwrap().visible, 1);

    // The monitor records it once, saying why; a second look writes nothing.
    let scan = monitor::scan_once(&ctx).await.unwrap();
    assert_eq!(scan.recorded(), 1, "{scan:#?}");
    assert_eq!(monitor::scan_once(&ctx).await.unwrap().recorded(), 0);
    let job = pipeline::job(&ctx, id).await;
    assert_eq!(
        (job.status, job.stage, job.attempt),
        (JobStatus::DeadLettered, Some(Stage::Kustomize), 3)
    );
    let errors = ctx.audit.errors_of(&job.username).await.unwrap();
    assert_eq!(
        dead_letter_items(&errors, &job),
        [format!("dead-lettered#{id}#kustomize#1")]
    );
    let item = errors.iter().find(|e| e.job_id == Some(id)).unwrap();
    assert_eq!(item.pid, Stage::Kustomize.error_pid());
    assert!(
        item.pid.to_string().ends_with("-c20bre24-EEE"),
        "{}",
        item.pid
    );
    assert_eq!(item.attempts, Some(3));
    assert!(
        item.message.contains("template service is down"),
        "{item:?}"
    );
    assert!(!item.created.utc.is_empty() && !item.created.unix.is_empty());
    assert_eq!(
        ctx.stores.queue.depth(&dlq).await.unwrap().visible,
        1,
        "the letter stays in the dead-letter queue"
    );

    // The CLI lists it and re-drives it; still failing, it is dead-lettered a second time
    // and gets a second item.
    let list = cli(&ctx, dir.path(), &["dlq", "list", "--stage", "kustomize"]);
    let line = list
        .lines()
        .find(|l| l.contains(&id.to_string()))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains(&job.image_uid) && line.contains("\t3\t") && line.contains("injected"),
        "{line}"
    );
    let dry = cli(
        &ctx,
        dir.path(),
        &["dlq", "redrive", "--job", &id.to_string(), "--dry-run"],
    );
    assert!(dry.contains("would move"), "{dry}");
    assert_eq!(ctx.stores.queue.depth(&dlq).await.unwrap().visible, 1);
    cli(
        &ctx,
        dir.path(),
        &[
            "dlq",
            "redrive",
            "--stage",
            "kustomize",
            "--job",
            &id.to_string(),
        ],
    );
    drain_handlers(&ctx, handlers(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(monitor::scan_once(&ctx).await.unwrap().recorded(), 1);
    let job = pipeline::job(&ctx, id).await;
    assert_eq!(
        recorded_delays(&job, Stage::Kustomize),
        [200, 400, 800],
        "attempts count from one again after a re-drive"
    );
    let errors = ctx.audit.errors_of(&job.username).await.unwrap();
    assert_eq!(
        dead_letter_items(&errors, &job),
        [
            format!("dead-lettered#{id}#kustomize#1"),
            format!("dead-lettered#{id}#kustomize#2")
        ]
    );

    // The cause gone, a re-drive publishes it, going on from the stage that failed.
    on.store(false, Ordering::SeqCst);
    let moved = cli(&ctx, dir.path(), &["dlq", "redrive"]);
    assert!(moved.contains("1 message(s) moved"), "{moved}");
    drain_handlers(&ctx, handlers(), Duration::from_secs(60))
        .await
        .unwrap();
    let job = pipeline::job(&ctx, id).await;
    assert_eq!(job.status, JobStatus::Published);
    let last_redrive = job
        .history
        .iter()
        .rposition(|h| h.status == JobStatus::Queued)
        .unwrap();
    let after = &job.history[last_redrive + 1];
    assert_eq!(
        (after.status, after.attempt),
        (JobStatus::Kustomizing, Some(1)),
        "continues at kustomize, attempt 1"
    );
    let statuses: Vec<JobStatus> = job.history.iter().map(|h| h.status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == JobStatus::DeadLettered)
            .count(),
        2,
        "history kept"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == JobStatus::Validating)
            .count(),
        1,
        "validate ran once"
    );
    assert_eq!(monitor::scan_once(&ctx).await.unwrap().letters, []);
    check_once(&ctx, &jobs).await;
}

/// The embedded queue, except that sends to one queue fail (the backend away mid re-drive),
/// and, with `deletes_fail`, deletes from every queue.
struct SendsFail {
    inner: Arc<dyn Queue>,
    queue: String,
    deletes_fail: bool,
}

#[async_trait]
impl Queue for SendsFail {
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<bool, QueueError> {
        self.inner.ensure_queue(spec).await
    }

    async fn send(&self, queue: &str, message: OutMessage) -> Result<String, QueueError> {
        if queue == self.queue {
            return Err(QueueError::Unavailable(
                "injected: the queue is away".into(),
            ));
        }
        self.inner.send(queue, message).await
    }

    async fn receive(
        &self,
        queue: &str,
        options: &ReceiveOptions,
    ) -> Result<Vec<Delivery>, QueueError> {
        self.inner.receive(queue, options).await
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        if self.deletes_fail {
            return Err(QueueError::Unavailable("injected: deletes fail".into()));
        }
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_that_did_not_finish_leaves_the_job_dead_lettered_and_records_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = crash::shared_context(&dir.path().join("data"), |s| {
        s.stages.kustomize.max_receive_count = 1;
    })
    .await;
    let on = Arc::new(AtomicBool::new(true));
    let handlers = || poisoned_kustomize(&on);
    let jobs = crash::submit_many(&ctx, 1, "Unfinished").await;
    let id = jobs[0].job_id;
    let kustomize = ctx.settings.stages.kustomize.clone();
    drain_handlers(&ctx, handlers(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(monitor::scan_once(&ctx).await.unwrap().recorded(), 1);
    let dead = pipeline::job(&ctx, id).await;
    assert_eq!(dead.status, JobStatus::DeadLettered);
    let letter = peek_dead_letters(ctx.stores.queue.as_ref(), &kustomize.dead_letter_queue, 10)
        .await
        .unwrap()
        .remove(0)
        .message_id;
    on.store(false, Ordering::SeqCst);

    // The send fails after the mark: the mark is taken back, the letter stays, visible.
    let mut away = ctx.clone();
    away.stores.queue = Arc::new(SendsFail {
        inner: ctx.stores.queue.clone(),
        queue: kustomize.queue.clone(),
        deletes_fail: false,
    });
    let failed = away.redrive_stage(Stage::Kustomize, &|_| true, false).await;
    assert!(
        matches!(failed, Err(QueueError::Unavailable(_))),
        "{failed:?}"
    );
    let job = pipeline::job(&ctx, id).await;
    assert_eq!(
        (job.status, job.attempt, &job.error, &job.history),
        (dead.status, dead.attempt, &dead.error, &dead.history),
        "as before the re-drive"
    );
    let depth = ctx
        .stores
        .queue
        .depth(&kustomize.dead_letter_queue)
        .await
        .unwrap();
    assert_eq!(depth.visible, 1, "released at once, not held: {depth:?}");
    let scan = monitor::scan_once(&ctx).await.unwrap();
    assert_eq!(scan.recorded(), 0, "{scan:#?}");
    assert_one_dead_letter_item(&ctx, id).await;

    // The re-drive stopped between its mark and its send (killed, or the mark could not be
    // taken back): the monitor finds the marked job's letter still there and dead-letters
    // the job again, naming the letter, with no second item.
    ctx.jobs
        .modify(id, |j| j.redriven(Stage::Kustomize, &letter))
        .await
        .unwrap();
    assert_eq!(pipeline::job(&ctx, id).await.status, JobStatus::Queued);
    let scan = monitor::scan_once(&ctx).await.unwrap();
    assert_eq!(scan.recorded(), 0, "{scan:#?}");
    assert_eq!(scan.letters[0].state, monitor::LetterState::AlreadyRecorded);
    let job = pipeline::job(&ctx, id).await;
    assert_eq!(job.status, JobStatus::DeadLettered);
    let last = job.history.last().unwrap();
    assert_eq!(
        (last.status, last.letter.as_deref()),
        (JobStatus::DeadLettered, Some(letter.as_str()))
    );
    assert_one_dead_letter_item(&ctx, id).await;

    // A re-drive that finishes publishes it; nothing more is recorded.
    let report = ctx
        .redrive_stage(Stage::Kustomize, &|_| true, false)
        .await
        .unwrap();
    assert_eq!(report.matched.len(), 1);
    drain_handlers(&ctx, handlers(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(pipeline::job(&ctx, id).await.status, JobStatus::Published);
    assert_eq!(monitor::scan_once(&ctx).await.unwrap().letters, []);
    assert_one_dead_letter_item(&ctx, id).await;
    check_once(&ctx, &jobs).await;
}

async fn assert_one_dead_letter_item(ctx: &Context, id: uuid::Uuid) {
    let job = pipeline::job(ctx, id).await;
    let errors = ctx.audit.errors_of(&job.username).await.unwrap();
    assert_eq!(
        dead_letter_items(&errors, &job),
        [format!("dead-lettered#{id}#kustomize#1")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_wait_out_a_locked_database_without_spinning_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ctx = crash::shared_context(&data, |_| {}).await;
    let jobs = crash::submit_many(&ctx, 20, "Outage").await;
    let faults = "validate:delay=100,persist-metadata:delay=100,kustomize:delay=100";
    let spec = spec(&ctx, dir.path(), faults, 5);
    let workers = [Worker::start(&spec, "a"), Worker::start(&spec, "b")];
    wait_for_status(&ctx, &jobs, JobStatus::Published).await;

    // Another process's connection takes the write lock of the queue and tables files and
    // holds it for longer than a visibility timeout (2 s).
    let mut locks = Vec::new();
    for file in ["queue.db", "tables.db"] {
        let conn = rusqlite::Connection::open(data.join(file)).unwrap();
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locks.push(conn);
    }
    let before: Vec<JobRecord> =
        futures::future::join_all(jobs.iter().map(|j| pipeline::job(&ctx, j.job_id))).await;
    let cpu_before: Vec<Duration> = workers.iter().map(Worker::cpu_time).collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let wall = started.elapsed();
    let cpu_during: Vec<Duration> = workers
        .iter()
        .zip(&cpu_before)
        .map(|(w, b)| w.cpu_time().saturating_sub(*b))
        .collect();
    let during: Vec<JobRecord> =
        futures::future::join_all(jobs.iter().map(|j| pipeline::job(&ctx, j.job_id))).await;
    for conn in locks {
        conn.execute_batch("COMMIT").unwrap();
    }
    assert_eq!(before, during, "nothing moved while the files were locked");
    assert!(
        before.iter().any(|j| j.status != JobStatus::Published),
        "the outage came mid-run"
    );
    for (cpu, w) in cpu_during.iter().zip(&workers) {
        assert!(
            *cpu < wall / 4,
            "a worker used {cpu:?} of CPU in {wall:?} of outage: it spins\n{}",
            w.log_tail()
        );
    }
    wait_published(&ctx, &jobs, Duration::from_secs(90)).await;
    check_once(&ctx, &jobs).await;
    for w in workers {
        assert!(w.stop().success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_long_validation_finishes_or_releases_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = crash::shared_context(&dir.path().join("data"), |s| {
        // Long enough that a release is told apart from a timeout running out.
        s.stages.validate.visibility_timeout_secs = 60;
    })
    .await;
    let queue = ctx.settings.stages.validate.queue.clone();

    // Shorter grace than the stage: the job is released at once for another worker.
    let first = crash::submit_many(&ctx, 1, "Released").await;
    let mut w = Worker::start(
        &spec(&ctx, dir.path(), "validate:delay=5000", 1),
        "released",
    );
    wait_for_status(&ctx, &first, JobStatus::Validating).await;
    w.terminate();
    let status = w.wait_for_exit(Duration::from_secs(30)).expect("it exits");
    assert!(status.success(), "{status}");
    let job = pipeline::job(&ctx, first[0].job_id).await;
    assert_eq!(job.status, JobStatus::Retrying);
    assert!(
        job.error.as_deref().unwrap().contains("shut down"),
        "{job:?}"
    );
    let d = ctx.stores.queue.depth(&queue).await.unwrap();
    assert_eq!(
        (d.visible, d.in_flight),
        (1, 0),
        "released, not held: {d:?}"
    );

    // Longer grace than the stage: the job's validation finishes before the exit.
    let second = crash::submit_many(&ctx, 1, "Finished").await;
    let mut w = Worker::start(
        &spec(&ctx, dir.path(), "validate:delay=1500", 20),
        "finished",
    );
    let held = loop {
        let job = pipeline::job(&ctx, second[0].job_id).await;
        if job.status == JobStatus::Validating {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(held.stage, Some(Stage::Validate));
    w.terminate();
    let status = w.wait_for_exit(Duration::from_secs(30)).expect("it exits");
    assert!(status.success(), "{status}");
    let validated = ctx
        .audit
        .events_of(&held.username, Some(EventType::ImageValidated))
        .await
        .unwrap();
    assert!(
        validated.iter().any(|e| e.job_id == Some(held.job_id)),
        "validation finished in the grace period"
    );
    // The worker took the released job too (both were waiting when it started): both
    // validations finished, and both jobs wait for persist-metadata.
    let d = ctx.stores.queue.depth(&queue).await.unwrap();
    assert_eq!((d.visible, d.in_flight), (0, 0), "{d:?}");
    let next = &ctx.settings.stages.persist_metadata.queue;
    assert_eq!(ctx.stores.queue.depth(next).await.unwrap().visible, 2);

    // Another worker takes both on; none lost, nothing doubled.
    let w = Worker::start(&spec(&ctx, dir.path(), "", 5), "next");
    let all = [first, second].concat();
    wait_published(&ctx, &all, Duration::from_secs(60)).await;
    check_once(&ctx, &all).await;
    assert!(w.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_delivered_twice_at_once_has_its_effects_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let one = crash::shared_context(&data, |_| {}).await;
    // A second, independent context on the same folder: another worker.
    let two = Context::new(
        (*one.settings).clone(),
        k8or::store::open(&one.settings).await.unwrap(),
    );
    let free_before = one.stores.viewport.free_guids().await.unwrap();
    let jobs = crash::submit_many(&one, 1, "Twice").await;
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::from_secs(5),
        visibility_timeout: None,
    };
    for stage in Stage::ALL {
        let queue = one.settings.stages.get(stage).queue.clone();
        let first = one.stores.queue.receive(&queue, &options).await.unwrap();
        let first = first.into_iter().next().expect("a message");
        // The same envelope again, as a queue may deliver it, to the other worker.
        one.stores
            .queue
            .send(
                &queue,
                OutMessage {
                    body: first.body.clone(),
                    delay: Duration::ZERO,
                    attributes: first.attributes.clone(),
                },
            )
            .await
            .unwrap();
        let second = two.stores.queue.receive(&queue, &options).await.unwrap();
        let second = second.into_iter().next().expect("the duplicate");
        assert_eq!(first.body, second.body);
        let (a, b) = (one.clone(), two.clone());
        let t1 = tokio::spawn(async move { k8or_workers::try_execute(&a, stage, &first).await });
        let t2 = tokio::spawn(async move { k8or_workers::try_execute(&b, stage, &second).await });
        let (r1, r2) = (t1.await.unwrap(), t2.await.unwrap());
        let done = Execution::Done { next: stage.next() };
        assert!(r1 == done || r2 == done, "{stage}: {r1:?} / {r2:?}");
        for r in [&r1, &r2] {
            assert!(
                matches!(
                    r,
                    Execution::Done { .. } | Execution::Skipped | Execution::Retrying { .. }
                ),
                "{stage}: {r:?}"
            );
        }
    }
    // Whatever duplicates the stages passed on are dropped by the next runs.
    pipeline::drain(&one).await;
    assert_eq!(
        one.stores.viewport.free_guids().await.unwrap(),
        free_before - 1,
        "one post, one GUID"
    );
    assert!(one
        .audit
        .errors_of(&jobs[0].username)
        .await
        .unwrap()
        .is_empty());
    check_once(&one, &jobs).await;
}

/// A validate run that renamed the upload into the app-image bucket and then failed
/// (before its message was deleted) is run again: the re-run must find this job's own
/// object under the shared `<uid>-<version>.<ext>` name, never another job's. Here an
/// earlier job of the same image version is published as PNG, and the re-run job's image
/// is a JPEG; a second job's upload was rejected once and deleted, then its message came
/// back. The first job's image stays, byte for byte, through both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_validate_never_takes_another_jobs_image_of_the_same_version() {
    use k8or::store::blobs::read_all;

    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let uid = pipeline::new_uid();
    let request = || pipeline::request(&uid, "Shared Version", "v0-0-01");
    let png = fixtures::png(16, 16);
    let first = pipeline::submit(&ctx, request(), png.clone(), "image/png").await;
    pipeline::drain(&ctx).await;
    assert_eq!(
        pipeline::job(&ctx, first.job_id).await.status,
        JobStatus::Published
    );
    let bucket = ctx.settings.buckets.app_image.clone();
    let png_key = format!("{uid}-v0-0-01.png");
    let published = || async {
        read_all(ctx.stores.blobs.as_ref(), &bucket, &png_key)
            .await
            .expect("the first job's image is still there")
    };

    // The same version again, as a JPEG, whose first validate run got as far as the rename.
    let second = pipeline::submit(&ctx, request(), fixtures::jpeg(16, 16), "image/jpeg").await;
    ctx.stores
        .blobs
        .rename(
            &ctx.settings.buckets.temporary,
            &second.image.temp_key,
            &bucket,
            &format!("{uid}-v0-0-01.jpg"),
        )
        .await
        .unwrap();
    pipeline::drain(&ctx).await;
    let second = pipeline::job(&ctx, second.job_id).await;
    assert_ne!(second.status, JobStatus::Rejected, "{:?}", second.error);
    assert_eq!(
        second.outputs["validation"]["objectKey"],
        format!("{uid}-v0-0-01.jpg")
    );
    assert!(published().await == png);

    // An upload rejected and deleted by a run whose rejection was never recorded: the
    // re-run finds nothing of its own and deletes nothing of anyone else's.
    let third = pipeline::submit(&ctx, request(), fixtures::truncated_png(), "image/png").await;
    ctx.stores
        .blobs
        .delete(&ctx.settings.buckets.temporary, &third.image.temp_key)
        .await
        .unwrap();
    pipeline::drain(&ctx).await;
    let third = pipeline::job(&ctx, third.job_id).await;
    assert_eq!(third.status, JobStatus::Rejected);
    assert!(
        format!("{:?}", third.error).contains("upload-missing"),
        "{:?}",
        third.error
    );
    assert!(published().await == png);
}

/// What an intake that died before queueing its job had done: the image stored, the job
/// and its unqueued mark written.
async fn died_before_queueing(ctx: &Context, name: &str) -> JobRecord {
    use k8or::job::StoredImage;
    use k8or::store::blobs::{bytes_body, put_checked};

    let request = pipeline::request(&pipeline::new_uid(), name, "v0-0-01");
    let id = uuid::Uuid::now_v7();
    let temp_key = StoredImage::temp_key_for(id);
    let receipt = put_checked(
        ctx.stores.blobs.as_ref(),
        &ctx.settings.buckets.temporary,
        &temp_key,
        bytes_body(fixtures::png(8, 8)),
        Some("image/png"),
        ctx.settings.limits.upload_max_bytes,
    )
    .await
    .unwrap();
    let image = StoredImage {
        temp_key,
        size: receipt.size,
        sha256: receipt.sha256,
        declared_content_type: Some("image/png".into()),
        file_name: None,
    };
    let uid = request.image_metadata.image_uid.clone().unwrap();
    let job = JobRecord::new(
        id,
        "jamesbond".into(),
        uid,
        request,
        image,
        chrono::Utc::now(),
    );
    ctx.jobs.create_unqueued(&job).await.unwrap();
    job
}

/// The intake writes a job with its unqueued mark, then dies before sending its message:
/// the monitor's sweep finds the mark once it is old enough and queues the job, which then
/// runs through; a job whose message went out has its mark cleared and is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_intake_died_before_queueing_it_is_queued_by_the_sweep() {
    use k8or_workers::requeue;

    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let job = died_before_queueing(&ctx, "Never Queued").await;
    let id = job.job_id;

    // Too young to be taken for lost: the intake may be about to send it.
    assert_eq!(
        requeue::sweep(&ctx, requeue::UNQUEUED_AFTER).await.unwrap(),
        0
    );
    assert_eq!(ctx.jobs.unqueued(i64::MAX).await.unwrap(), vec![id]);
    assert_eq!(requeue::sweep(&ctx, Duration::ZERO).await.unwrap(), 1);
    assert!(ctx.jobs.unqueued(i64::MAX).await.unwrap().is_empty());
    pipeline::drain(&ctx).await;
    assert_eq!(pipeline::job(&ctx, id).await.status, JobStatus::Published);
    assert_eq!(requeue::sweep(&ctx, Duration::ZERO).await.unwrap(), 0);

    // A mark left behind although the message went out (clearing it failed) is cleared by
    // the sweep, and a job that moved on is not queued again.
    let queued = pipeline::submit(
        &ctx,
        pipeline::request(&pipeline::new_uid(), "Queued", "v0-0-01"),
        fixtures::png(8, 8),
        "image/png",
    )
    .await;
    pipeline::drain(&ctx).await;
    let mut stale = queued.clone();
    stale.job_id = uuid::Uuid::now_v7();
    ctx.jobs.create_unqueued(&stale).await.unwrap();
    ctx.jobs
        .modify(stale.job_id, |j| j.start_stage(Stage::Validate, 1))
        .await
        .unwrap();
    assert_eq!(requeue::sweep(&ctx, Duration::ZERO).await.unwrap(), 0);
    assert!(ctx.jobs.unqueued(i64::MAX).await.unwrap().is_empty());
}

/// Two jobs of one image version at kustomize. The newer job's row and files are written;
/// then an older job's files land on top (a run that wrote its row first and its files
/// last, and died before its message was deleted). The older job's re-run must leave the
/// folder holding the row's files, and so must an older run still writing when the row
/// moved on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomization_folder_ends_holding_the_files_of_its_row() {
    use k8or::model::{KeyValue, KustomizeItem};
    use k8or::store::blobs::{bytes_body, read_all};
    use k8or::time::Created;
    use k8or_workers::stages::kustomize;

    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let uid = pipeline::new_uid();
    let request = |greeting: &str| {
        let mut r = pipeline::request(&uid, "Same Version", "v0-0-01");
        r.image_metadata.env_vars = vec![KeyValue {
            key: "GREETING".into(),
            value: greeting.into(),
        }];
        r
    };
    let png = fixtures::png(8, 8);
    let older = pipeline::submit(&ctx, request("older"), png.clone(), "image/png").await;
    let newer = pipeline::submit(&ctx, request("newer"), png, "image/png").await;
    assert!(older.job_id < newer.job_id);
    k8or_workers::drain(
        &ctx,
        &[Stage::Validate, Stage::PersistMetadata],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let (a, b) = (
        pipeline::receive(&ctx, Stage::Kustomize).await,
        pipeline::receive(&ctx, Stage::Kustomize).await,
    );
    let id = |d: &Delivery| JobEnvelope::parse(&d.body).unwrap().job_id;
    let (older_msg, newer_msg) = if id(&a) == older.job_id {
        (a, b)
    } else {
        (b, a)
    };

    let ran = k8or_workers::try_execute(&ctx, Stage::Kustomize, &newer_msg).await;
    assert!(matches!(ran, Execution::Done { .. }), "{ran:?}");
    let newer = pipeline::job(&ctx, newer.job_id).await;
    let out = &newer.outputs["kustomization"];
    let prefix = out["prefix"].as_str().unwrap().to_owned();
    let bucket = ctx.settings.buckets.app_image.clone();
    let folder = || async {
        let mut files = BTreeMap::new();
        for name in out["yaml"].as_object().unwrap().keys() {
            let key = format!("{prefix}/{name}");
            let text = read_all(ctx.stores.blobs.as_ref(), &bucket, &key)
                .await
                .unwrap();
            files.insert(name.clone(), String::from_utf8(text).unwrap());
        }
        files
    };
    let expected: BTreeMap<String, String> = out["yaml"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, t)| (n.clone(), t.as_str().unwrap().to_owned()))
        .collect();
    assert!(expected["configmap.yaml"].contains("newer"));
    assert_eq!(folder().await, expected);

    // The older run's late files, then its message back.
    for name in expected.keys() {
        let stale = bytes_body(format!("# the older job's late {name}\n"));
        let key = format!("{prefix}/{name}");
        ctx.stores
            .blobs
            .put(&bucket, &key, stale, Some("application/yaml"))
            .await
            .unwrap();
    }
    let ran = k8or_workers::try_execute(&ctx, Stage::Kustomize, &older_msg).await;
    assert!(matches!(ran, Execution::Done { .. }), "{ran:?}");
    let older = pipeline::job(&ctx, older.job_id).await;
    assert_eq!(older.outputs["kustomization"]["current"], false);
    assert_eq!(
        folder().await,
        expected,
        "the re-run restored the row's files"
    );

    // An older run that wrote its row before the newer one and its files only now.
    let late = KustomizeItem {
        image_uid: uid.clone(),
        image_version: "v0-0-01".into(),
        helm_chart: serde_json::from_value(older.outputs["kustomization"]["manifests"].clone())
            .unwrap(),
        job_id: older.job_id,
        kustomization_prefix: prefix.clone(),
        created: Created::at(older.created_at),
    };
    let held = kustomize::write_folder(&ctx, late, None).await.unwrap();
    assert_eq!(held.job_id, newer.job_id);
    assert_eq!(folder().await, expected);
    pipeline::drain(&ctx).await;
    for job in [older.job_id, newer.job_id] {
        assert_eq!(pipeline::job(&ctx, job).await.status, JobStatus::Published);
    }
}

/// A dead letter that cannot be looked at (its job record unreadable) is reported as such,
/// and the scan goes on: the letters after it, in its queue and the next stages', are
/// recorded. Before, its error ended every scan there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreadable_dead_letter_does_not_hide_the_others() {
    use k8or::store::Item;
    use monitor::LetterState;

    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let s = &ctx.settings;
    let broken = uuid::Uuid::now_v7();
    let mut item = Item::new();
    item.insert("jobId".into(), broken.to_string().into());
    item.insert("status".into(), "no such status".into());
    ctx.stores
        .tables
        .put(&s.tables.jobs, item, None)
        .await
        .unwrap();
    let letter = |job_id, stage| {
        let env = JobEnvelope::new(job_id, "UID".into(), "jamesbond".into(), stage);
        OutMessage {
            body: env.to_body(),
            delay: Duration::ZERO,
            attributes: Default::default(),
        }
    };
    let queue = &ctx.stores.queue;
    let validate_dlq = &s.stages.validate.dead_letter_queue;
    queue
        .send(validate_dlq, letter(broken, Stage::Validate))
        .await
        .unwrap();
    let jobs = crash::submit_many(&ctx, 2, "Behind A Broken One").await;
    queue
        .send(validate_dlq, letter(jobs[0].job_id, Stage::Validate))
        .await
        .unwrap();
    let persist_dlq = &s.stages.persist_metadata.dead_letter_queue;
    queue
        .send(persist_dlq, letter(jobs[1].job_id, Stage::PersistMetadata))
        .await
        .unwrap();

    let report = monitor::scan_once(&ctx).await.unwrap();
    let states: Vec<_> = report
        .letters
        .iter()
        .map(|l| (l.job_id.unwrap(), l.state))
        .collect();
    assert_eq!(
        states,
        [
            (broken, LetterState::Failed),
            (jobs[0].job_id, LetterState::Recorded),
            (jobs[1].job_id, LetterState::Recorded),
        ]
    );
    assert!(report.letters[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("could not look at it"));
    for job in &jobs {
        let job = pipeline::job(&ctx, job.job_id).await;
        assert_eq!(job.status, JobStatus::DeadLettered);
    }
}

/// The sweep of never-queued jobs goes on past one it cannot handle (its record
/// unreadable): the others are queued, and the unreadable one keeps its mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unqueued_sweep_goes_on_past_an_unreadable_job() {
    use k8or::store::Item;
    use k8or_workers::requeue;

    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let mut marked = Vec::new();
    for name in ["Unreadable", "Fine"] {
        marked.push(died_before_queueing(&ctx, name).await);
    }
    let mut broken = Item::new();
    broken.insert("jobId".into(), marked[0].job_id.to_string().into());
    broken.insert("status".into(), "no such status".into());
    let jobs_table = &ctx.settings.tables.jobs;
    ctx.stores
        .tables
        .put(jobs_table, broken, None)
        .await
        .unwrap();
    let marks = ctx.jobs.unqueued(i64::MAX).await.unwrap();
    assert_eq!(marks.len(), 2, "{marks:?}");

    assert_eq!(requeue::sweep(&ctx, Duration::ZERO).await.unwrap(), 1);
    let left = ctx.jobs.unqueued(i64::MAX).await.unwrap();
    assert_eq!(left, [marked[0].job_id]);
}

/// A re-drive whose letters cannot be deleted after their moves still moves every one of
/// them (before, the first failed delete ended the walk), and the copies left behind are
/// named by the jobs' re-drive entries: nothing recorded twice, every job published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_moves_every_letter_when_their_deletes_fail() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = crash::shared_context(&dir.path().join("data"), |s| {
        s.stages.kustomize.max_receive_count = 1;
    })
    .await;
    let on = Arc::new(AtomicBool::new(true));
    let jobs = crash::submit_many(&ctx, 3, "Undeleted Letters").await;
    drain_handlers(&ctx, poisoned_kustomize(&on), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(monitor::scan_once(&ctx).await.unwrap().recorded(), 3);
    on.store(false, Ordering::SeqCst);

    let mut away = ctx.clone();
    away.stores.queue = Arc::new(SendsFail {
        inner: ctx.stores.queue.clone(),
        queue: "no queue".into(),
        deletes_fail: true,
    });
    let report = away
        .redrive_stage(Stage::Kustomize, &|_| true, false)
        .await
        .unwrap();
    assert_eq!(report.matched.len(), 3, "{report:?}");
    let kustomize = &ctx.settings.stages.kustomize;
    let source = ctx.stores.queue.depth(&kustomize.queue).await.unwrap();
    assert_eq!(source.visible, 3);

    drain_handlers(&ctx, poisoned_kustomize(&on), Duration::from_secs(60))
        .await
        .unwrap();
    wait_published(&ctx, &jobs, Duration::from_secs(30)).await;
    // The copies are still held by the walk (60 s); when they come back, the jobs' re-drive
    // entries name them, and the monitor takes them for stale copies.
    let dlq = ctx
        .stores
        .queue
        .depth(&kustomize.dead_letter_queue)
        .await
        .unwrap();
    assert_eq!((dlq.visible, dlq.in_flight), (0, 3), "{dlq:?}");
    for job in &jobs {
        let job = pipeline::job(&ctx, job.job_id).await;
        let letter = job.history.iter().rev().find_map(|h| h.letter.clone());
        assert!(letter.is_some_and(|l| job.was_redriven_from(Stage::Kustomize, &l)));
    }
    let scan = monitor::scan_once(&ctx).await.unwrap();
    assert_eq!(scan.recorded(), 0, "{scan:#?}");
    for job in &jobs {
        assert_one_dead_letter_item(&ctx, job.job_id).await;
    }
}
