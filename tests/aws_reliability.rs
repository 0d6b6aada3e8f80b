//! The poison-message, graceful-shutdown and duplicate-delivery proofs of issue 6 in AWS
//! mode: real `k8or-worker` processes on a private moto server (SQS, DynamoDB, S3) and a
//! fresh MariaDB database per test.
//!
//! - A job whose kustomize stage fails every time (`--inject-faults kustomize:fail`) is
//!   retried with growing delays, dead-lettered by SQS's redrive policy after
//!   `max_receive_count`, and recorded once by the dead-letter monitor however often it
//!   reads the letter; the letter stays; without the fault, `k8or-worker dlq redrive`
//!   publishes it.
//! - SIGTERM while a job is inside a long validation: with a short grace the message is
//!   released at once (visible, not held for the 60 s visibility timeout), with a long one
//!   the validation finishes; another worker publishes both, each once.
//! - Each stage's message delivered twice at the same moment to two worker processes: the
//!   effects happen once.

#[path = "support/api_process.rs"]
mod api_process;
#[path = "support/aws_stack.rs"]
mod aws_stack;
#[path = "support/crash.rs"]
mod crash;
#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/pipeline.rs"]
mod pipeline;
#[path = "support/private_moto.rs"]
mod private_moto;
#[path = "support/processes.rs"]
mod processes;

use std::path::Path;
use std::time::{Duration, Instant};

use aws_stack::AwsStack;
use crash::CrashReport;
use k8or::bootstrap::GUID_POOL_SIZE;
use k8or::model::{ErrorItem, EventType};
use k8or::store::{OutMessage, QueueDepth, ReceiveOptions};
use k8or::{Context, JobRecord, JobStatus, Settings, Stage};
use k8or_workers::monitor::{self, LetterState};
use private_moto::PrivateMoto;
use processes::{Worker, WorkerSpec};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tempfile::TempDir;

/// One test's backend: its own moto server, its own database, provisioned by
/// `k8or-worker provision`, and the ports opened in this process.
struct Setup {
    ctx: Context,
    env: Vec<(String, String)>,
    stack: AwsStack,
    posts_before: i64,
    // Dropped last: the server, then the folder with its log.
    moto: PrivateMoto,
    dir: TempDir,
}

impl Setup {
    /// `None` (after a notice) when moto or MariaDB is not configured on this machine.
    async fn start(tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let moto = PrivateMoto::start(dir.path())?;
        let mut stack = AwsStack::create(tweak).await?;
        // Everything of this test goes to its own server, never to the run's shared one.
        stack.endpoint = moto.endpoint.clone();
        stack.settings.aws_endpoint_url = Some(moto.endpoint.clone());
        let env = stack.child_env();
        api_process::provision(&env, dir.path());
        let ctx = Context::new(stack.settings.clone(), stack.open_stores().await);
        let posts_before = wp_post_count(&stack).await;
        Some(Self {
            ctx,
            env,
            stack,
            posts_before,
            moto,
            dir,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spec(&self, faults: &str, grace_secs: u64) -> WorkerSpec {
        WorkerSpec {
            env: self.env.clone(),
            faults: faults.to_owned(),
            grace_secs,
            log_dir: self.path().to_owned(),
        }
    }

    /// `k8or-worker <args>` run to its end; its stdout. Panics with its output on failure.
    fn cli(&self, args: &[&str]) -> String {
        processes::run_cli(&self.env, self.path(), args)
    }

    /// New wp_posts rows since the test began.
    async fn new_posts(&self) -> i64 {
        wp_post_count(&self.stack).await - self.posts_before
    }

    async fn depth(&self, queue: &str) -> QueueDepth {
        self.ctx.stores.queue.depth(queue).await.expect("depth")
    }

    /// Exactly once: each worker event, the post-meta set, the k8or-kustomize item and the
    /// object once per job, nothing left in any queue or dead-letter queue, one wp_posts row
    /// and one pool GUID per job.
    async fn check_once(&self, jobs: &[JobRecord]) {
        let left = crash::wait_until_queues_empty(&self.ctx, Duration::from_secs(20)).await;
        let mut report = CrashReport::default();
        crash::tally(&self.ctx, jobs, &mut report).await;
        report
            .problems
            .extend(left.into_iter().map(|q| format!("left: {q}")));
        assert!(
            report.problems.is_empty() && report.lost == 0 && report.duplicated == 0,
            "lost {}, duplicated {}: {:#?}",
            report.lost,
            report.duplicated,
            report.problems
        );
        assert_eq!(
            self.new_posts().await,
            jobs.len() as i64,
            "one post per job"
        );
        assert_eq!(
            self.ctx.stores.viewport.free_guids().await.unwrap(),
            GUID_POOL_SIZE - jobs.len() as u64,
            "one pool GUID per job"
        );
    }

    async fn finish(self) {
        self.stack.drop_database().await;
        drop(self.moto);
    }
}

/// Rows in the test database's `wp_posts`.
async fn wp_post_count(stack: &AwsStack) -> i64 {
    let options: MySqlConnectOptions = stack.mysql_url.parse().expect("a MySQL URL");
    let mut conn = options.connect().await.expect("MariaDB answers");
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM wp_posts")
        .fetch_one(&mut conn)
        .await
        .expect("count wp_posts");
    conn.close().await.expect("close");
    n
}

/// A `k8or-worker run` with options `Worker::start` does not set (its dead-letter monitor),
/// logging at `info` so the log shows each stage it started.
fn start_worker(env: &[(String, String)], dir: &Path, name: &str, args: &[&str]) -> Worker {
    Worker::run_with(env, dir, name, "info", args)
}

/// Waits until the job shows `status` (panics after `limit`, with `logs()`).
async fn wait_status(
    ctx: &Context,
    id: uuid::Uuid,
    status: JobStatus,
    limit: Duration,
    logs: impl Fn() -> String,
) -> JobRecord {
    let until = Instant::now() + limit;
    loop {
        let job = pipeline::job(ctx, id).await;
        if job.status == status {
            return job;
        }
        assert!(
            Instant::now() < until,
            "job {id} is {} (not {status}) after {limit:?}: {:?}\n{}",
            job.status,
            job.error,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --- 1. Poison message --------------------------------------------------------------------

/// kustomize's retry backoff: 1 s doubling (SQS counts visibility in whole seconds, so
/// each recorded delay is also the real one), no jitter, three receives before the queue
/// gives up.
const POISON_BASE_MS: u64 = 1000;
const POISON_MAX_RECEIVES: u32 = 3;

fn poison_settings(s: &mut Settings) {
    for stage in Stage::ALL {
        let c = s.stages.get_mut(stage);
        c.jitter = 0.0;
        c.concurrency = 1;
    }
    let k = &mut s.stages.kustomize;
    k.max_receive_count = POISON_MAX_RECEIVES;
    k.backoff_base_ms = POISON_BASE_MS;
    k.backoff_max_ms = 8 * POISON_BASE_MS;
}

/// The retry delays the history recorded for `stage` since it last came (back) to it.
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
            let e = h.error.as_deref().expect("a retry says why");
            let ms = e.rsplit_once("(retry in ").expect("a retry delay").1;
            ms.trim_end_matches(" ms)").parse().expect("a delay in ms")
        })
        .collect()
}

/// The job's history in short, for failure messages.
fn history(job: &JobRecord) -> Vec<String> {
    job.history
        .iter()
        .map(|h| {
            let stage = h.stage.map_or("-", Stage::as_str);
            let error = h.error.as_deref().unwrap_or("");
            format!("{} {stage} {} #{:?} {error}", h.at, h.status, h.attempt)
        })
        .collect()
}

/// The job's dead-letter items in user-error-log.
async fn dead_letter_items(ctx: &Context, job: &JobRecord) -> Vec<ErrorItem> {
    ctx.audit
        .errors_of(&job.username)
        .await
        .expect("read user-error-log")
        .into_iter()
        .filter(|e| e.job_id == Some(job.job_id) && e.error_type == monitor::ERROR_TYPE)
        .collect()
}

/// The letter's SQS receive count, read without hiding it (a receive with a visibility
/// timeout of zero, which itself counts as one receive). `None` while someone holds it.
async fn letter_receives(ctx: &Context, dlq: &str) -> Option<u32> {
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::ZERO,
        visibility_timeout: Some(Duration::ZERO),
    };
    let got = ctx
        .stores
        .queue
        .receive(dlq, &options)
        .await
        .expect("receive");
    got.first().map(|d| d.receive_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_poison_message_is_dead_lettered_recorded_once_and_redriven() {
    let Some(t) = Setup::start(poison_settings).await else {
        return;
    };
    let ctx = &t.ctx;
    let jobs = crash::submit_many(ctx, 1, "AWS Poison").await;
    let id = jobs[0].job_id;
    let dlq = ctx.settings.stages.kustomize.dead_letter_queue.clone();
    let queue = ctx.settings.stages.kustomize.queue.clone();

    // A worker whose kustomize stage always fails, with its dead-letter monitor polling
    // every second.
    let poisoned = start_worker(
        &t.env,
        t.path(),
        "poisoned",
        &[
            "--grace-secs",
            "5",
            "--monitor-secs",
            "1",
            "--inject-faults",
            "kustomize:fail",
        ],
    );
    let job = wait_status(
        ctx,
        id,
        JobStatus::DeadLettered,
        Duration::from_secs(40),
        || poisoned.log_tail(),
    )
    .await;

    // Retried with growing delays, then given up on by SQS after max_receive_count.
    assert_eq!(
        recorded_delays(&job, Stage::Kustomize),
        [POISON_BASE_MS, 2 * POISON_BASE_MS, 4 * POISON_BASE_MS],
        "{:#?}",
        history(&job)
    );
    assert_eq!(
        (job.stage, job.attempt),
        (Some(Stage::Kustomize), POISON_MAX_RECEIVES)
    );
    let items = dead_letter_items(ctx, &job).await;
    assert_eq!(items.len(), 1, "{items:#?}");
    let item = items[0].clone();
    assert_eq!(item.error_key, format!("dead-lettered#{id}#kustomize#1"));
    assert_eq!(item.pid, Stage::Kustomize.error_pid());
    assert!(item.pid.to_string().ends_with("-EEE"), "{}", item.pid);
    assert_eq!(item.stage.as_deref(), Some("kustomize"));
    assert_eq!(item.attempts, Some(POISON_MAX_RECEIVES));
    assert!(item.message.contains("injected fault"), "{item:?}");
    assert!(!item.created.utc.is_empty() && !item.created.unix.is_empty());

    // The worker's monitor reads the letter again and again (each read is a receive: its
    // count grows beyond the test's own looks), and writes nothing new.
    let until = Instant::now() + Duration::from_secs(20);
    let mut first_look = None;
    let mut own_looks = 0;
    loop {
        if let Some(n) = letter_receives(ctx, &dlq).await {
            let first = *first_look.get_or_insert(i64::from(n));
            // Reads by others since the first look: the count less the test's own looks.
            if i64::from(n) - first - own_looks >= 3 {
                break;
            }
            own_looks += 1;
        }
        assert!(
            Instant::now() < until,
            "the worker's monitor did not read the letter three more times\n{}",
            poisoned.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        poisoned.stop().success(),
        "the poisoned worker stops cleanly"
    );
    assert_eq!(
        dead_letter_items(ctx, &job).await,
        std::slice::from_ref(&item)
    );

    // Fresh monitors (no memory of what they recorded) read it again: still nothing new.
    for _ in 0..2 {
        let scan = monitor::scan(ctx, &[Stage::Kustomize]).await.unwrap();
        let states: Vec<_> = scan.letters.iter().map(|l| (l.job_id, l.state)).collect();
        assert_eq!(states, [(Some(id), LetterState::AlreadyRecorded)]);
        assert_eq!(scan.recorded(), 0);
    }
    let list = t.cli(&["dlq", "list", "--stage", "kustomize"]);
    let line = list
        .lines()
        .find(|l| l.contains(&id.to_string()))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains(&job.image_uid) && line.contains("\t3\t") && line.contains("injected fault"),
        "{line}"
    );
    assert_eq!(
        dead_letter_items(ctx, &job).await,
        [item],
        "exactly one item, never rewritten"
    );
    assert_eq!(pipeline::job(ctx, id).await.status, JobStatus::DeadLettered);
    let d = t.depth(&dlq).await;
    assert_eq!(
        d.visible + d.in_flight,
        1,
        "the letter stays in the dead-letter queue: {d:?}"
    );
    let d = t.depth(&queue).await;
    assert_eq!(d.visible + d.in_flight + d.delayed, 0, "{d:?}");

    // The cause gone, a worker without the fault runs, and the CLI re-drives the job: the
    // re-drive entry must come before the worker's start of the stage, although the worker
    // is already waiting on the queue when the message comes back.
    let worker = Worker::start(&t.spec("", 5), "clean");
    let dry = t.cli(&[
        "dlq",
        "redrive",
        "--stage",
        "kustomize",
        "--job",
        &id.to_string(),
        "--dry-run",
    ]);
    assert!(dry.contains("1 message(s) would move"), "{dry}");
    assert_eq!(t.depth(&dlq).await.visible, 1, "a dry run moves nothing");
    let moved = t.cli(&[
        "dlq",
        "redrive",
        "--stage",
        "kustomize",
        "--job",
        &id.to_string(),
    ]);
    assert!(moved.contains("1 message(s) moved"), "{moved}");
    let job = wait_status(
        ctx,
        id,
        JobStatus::Published,
        Duration::from_secs(30),
        || worker.log_tail(),
    )
    .await;

    // It went on from kustomize, attempt 1, with its history kept.
    let redriven = job
        .history
        .iter()
        .rposition(|h| h.status == JobStatus::Queued)
        .expect("a re-drive entry");
    assert_eq!(
        job.history[redriven].stage,
        Some(Stage::Kustomize),
        "{:#?}",
        history(&job)
    );
    let after = &job.history[redriven + 1];
    assert_eq!(
        (after.stage, after.status, after.attempt),
        (Some(Stage::Kustomize), JobStatus::Kustomizing, Some(1)),
        "{:#?}",
        history(&job)
    );
    assert_eq!(recorded_delays(&job, Stage::Kustomize), [] as [u64; 0]);
    let count = |s: JobStatus| job.history.iter().filter(|h| h.status == s).count();
    assert_eq!(count(JobStatus::DeadLettered), 1, "history kept");
    assert_eq!(count(JobStatus::Validating), 1, "validate ran once");
    assert_eq!(count(JobStatus::Persisting), 1, "persist-metadata ran once");

    // Published once; the letter is gone and its one item stays the only one.
    t.check_once(&jobs).await;
    assert_eq!(dead_letter_items(ctx, &job).await.len(), 1);
    assert_eq!(monitor::scan_once(ctx).await.unwrap().letters, []);
    assert!(worker.stop().success(), "the clean worker stops cleanly");
    t.finish().await;
}

// --- 2. SIGTERM during a long validation -----------------------------------------------

/// validate's visibility timeout: far longer than the test waits, so a message released
/// at shutdown is told apart from one whose timeout ran out.
const VALIDATE_VISIBILITY_SECS: u64 = 60;

fn shutdown_settings(s: &mut Settings) {
    s.stages.validate.visibility_timeout_secs = VALIDATE_VISIBILITY_SECS;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sigterm_during_a_long_validation_finishes_or_releases_the_job() {
    let Some(t) = Setup::start(shutdown_settings).await else {
        return;
    };
    let ctx = &t.ctx;
    let queue = ctx.settings.stages.validate.queue.clone();
    let next = ctx.settings.stages.persist_metadata.queue.clone();

    // Shorter grace than the stage: the job is released at once for another worker.
    let first = crash::submit_many(ctx, 1, "AWS Released").await;
    let mut w = Worker::start(&t.spec("validate:delay=8000", 1), "released");
    wait_status(
        ctx,
        first[0].job_id,
        JobStatus::Validating,
        Duration::from_secs(30),
        || w.log_tail(),
    )
    .await;
    w.terminate();
    let status = w
        .wait_for_exit(Duration::from_secs(30))
        .expect("it exits within its grace");
    assert!(status.success(), "{status}\n{}", w.log_tail());
    let job = pipeline::job(ctx, first[0].job_id).await;
    assert_eq!(job.status, JobStatus::Retrying, "{job:?}");
    assert!(
        job.error
            .as_deref()
            .unwrap_or_default()
            .contains("shut down"),
        "{job:?}"
    );
    let d = t.depth(&queue).await;
    assert_eq!(
        (d.visible, d.in_flight),
        (1, 0),
        "released (visible at once), not held for the visibility timeout: {d:?}"
    );

    // Longer grace than the stage: the validation finishes before the exit.
    let second = crash::submit_many(ctx, 1, "AWS Finished").await;
    let mut w = Worker::start(&t.spec("validate:delay=1500", 20), "finished");
    let held = wait_status(
        ctx,
        second[0].job_id,
        JobStatus::Validating,
        Duration::from_secs(30),
        || w.log_tail(),
    )
    .await;
    assert_eq!(held.stage, Some(Stage::Validate));
    w.terminate();
    let status = w
        .wait_for_exit(Duration::from_secs(30))
        .expect("it exits after its in-flight job");
    assert!(status.success(), "{status}\n{}", w.log_tail());
    let validated = ctx
        .audit
        .events_of(&held.username, Some(EventType::ImageValidated))
        .await
        .unwrap();
    assert!(
        validated.iter().any(|e| e.job_id == Some(held.job_id)),
        "the validation finished in the grace period"
    );
    // Nothing is held after the exit: each job's validate message was either finished
    // (its persist-metadata message sent) or released; the worker took the released job
    // too, since both were waiting when it started.
    let d = t.depth(&queue).await;
    assert_eq!(d.in_flight, 0, "nothing held after the exit: {d:?}");
    let n = t.depth(&next).await;
    assert_eq!(
        (d.visible, n.visible),
        (0, 2),
        "both validations finished: validate {d:?}, persist-metadata {n:?}"
    );

    // Another worker takes both on, well within the visibility timeout: none lost, nothing
    // doubled.
    let w = Worker::start(&t.spec("", 5), "next");
    let all = [first, second].concat();
    for j in &all {
        wait_status(
            ctx,
            j.job_id,
            JobStatus::Published,
            Duration::from_secs(VALIDATE_VISIBILITY_SECS / 2),
            || w.log_tail(),
        )
        .await;
    }
    t.check_once(&all).await;
    assert!(w.stop().success(), "the last worker stops cleanly");
    t.finish().await;
}

// --- 3. Duplicate delivery -------------------------------------------------------------

/// Each stage sleeps this long before its work, so both copies are held at the same time.
const DUPLICATE_DELAY_MS: u64 = 1500;

/// One message at a time per worker and stage: two copies held at once are in two
/// processes.
fn duplicate_settings(s: &mut Settings) {
    for stage in Stage::ALL {
        s.stages.get_mut(stage).concurrency = 1;
    }
}

/// Lines of a worker log that say a stage started.
fn starts(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("\"message\":\"stage started\""))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_one_message_delivered_twice_at_once_to_two_workers_has_its_effects_once() {
    let Some(t) = Setup::start(duplicate_settings).await else {
        return;
    };
    let ctx = &t.ctx;
    let jobs = crash::submit_many(ctx, 1, "AWS Twice").await;
    let id = jobs[0].job_id;
    let mut copies = Vec::new();

    // One stage at a time: the queue holds two deliveries of one envelope (the message from
    // the intake or the stage before, and an exact copy); then two workers of that stage
    // only start together, and each takes one.
    for stage in Stage::ALL {
        let queue = ctx.settings.stages.get(stage).queue.clone();
        let waiting = t.depth(&queue).await.visible;
        let copied = waiting < 2;
        if copied {
            // One delivery waits: send an exact copy (same body, same attributes).
            let original = pipeline::receive(ctx, stage).await;
            ctx.stores
                .queue
                .send(
                    &queue,
                    OutMessage {
                        body: original.body.clone(),
                        delay: Duration::ZERO,
                        attributes: original.attributes.clone(),
                    },
                )
                .await
                .unwrap();
            ctx.stores
                .queue
                .change_visibility(&queue, &original.receipt, Duration::ZERO)
                .await
                .unwrap();
        }
        // Otherwise both workers of the stage before passed the job on: two deliveries of
        // one envelope wait already.
        let d = t.depth(&queue).await;
        assert!(
            d.visible >= 2 && d.in_flight == 0,
            "{stage}: two copies wait: {d:?}"
        );
        copies.push((
            stage,
            d.visible,
            if copied { "copied" } else { "passed on" },
        ));

        let faults = format!("{stage}:delay={DUPLICATE_DELAY_MS}");
        let args = [
            "--stages",
            stage.as_str(),
            "--grace-secs",
            "10",
            "--monitor-secs",
            "0",
            "--inject-faults",
            &faults,
        ];
        let workers = [
            start_worker(&t.env, t.path(), &format!("{stage}-a"), &args),
            start_worker(&t.env, t.path(), &format!("{stage}-b"), &args),
        ];
        let logs = || {
            workers
                .iter()
                .map(Worker::log_tail)
                .collect::<Vec<_>>()
                .join("\n---\n")
        };

        // Both copies held at once (each worker holds at most one), then both settled.
        let until = Instant::now() + Duration::from_secs(20);
        let mut both_held = false;
        loop {
            let d = t.depth(&queue).await;
            both_held |= d.in_flight >= 2;
            if d.visible + d.in_flight + d.delayed == 0 {
                break;
            }
            assert!(
                Instant::now() < until,
                "{stage}: copies left {d:?}\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            both_held,
            "{stage}: the two copies were never held at once\n{}",
            logs()
        );
        let mut texts = Vec::new();
        for w in workers {
            let log = w.log.clone();
            let status = w.stop();
            assert!(
                status.success(),
                "{stage}: {status}\n{}",
                api_process::tail(&log)
            );
            texts.push(std::fs::read_to_string(&log).unwrap_or_default());
        }
        for text in &texts {
            let count = |m: &str| text.matches(&format!("\"message\":\"{m}")).count();
            eprintln!(
                "{stage}: started {}, done {}, retried {}, dropped {}",
                count("stage started"),
                count("stage done"),
                count("will retry"),
                count("job final or past this stage")
            );
            assert!(
                starts(text) >= 1,
                "{stage}: each worker ran the stage on its copy\n{text}"
            );
        }
    }

    eprintln!("deliveries per stage: {copies:?}");
    let job = pipeline::job(ctx, id).await;
    assert_eq!(job.status, JobStatus::Published, "{job:?}");
    assert!(
        ctx.audit.errors_of(&job.username).await.unwrap().is_empty(),
        "no error item"
    );
    t.check_once(&jobs).await;
    t.finish().await;
}
