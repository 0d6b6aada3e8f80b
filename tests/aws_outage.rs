//! The outage proof of issue 6 in AWS mode: a `k8or-worker run` process on its own moto
//! server and MariaDB database; mid-run the moto server is frozen with SIGSTOP for more than
//! two visibility timeouts (every call hangs, nothing is lost: an outage that keeps state);
//! the worker must wait it out without spinning the CPU, and after SIGCONT every job ends
//! published exactly once. The shared moto server of the run is never touched: freezing it
//! would stall every other AWS-mode test.

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

use std::time::{Duration, Instant};

use aws_stack::AwsStack;
use chrono::{DateTime, Utc};
use crash::CrashReport;
use k8or::bootstrap::GUID_POOL_SIZE;
use k8or::{Context, JobRecord, JobStatus, Settings, Stage};
use private_moto::PrivateMoto;
use processes::{Worker, WorkerSpec};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Jobs in the run: enough that some are still mid-pipeline when the outage starts.
const JOBS: usize = 5;
/// Every stage's visibility timeout, in seconds.
const VISIBILITY_SECS: u64 = 2;
/// How long the server stays frozen: more than two visibility timeouts, so in-flight
/// messages come back visible and are delivered again after the outage.
const OUTAGE: Duration = Duration::from_secs(5);
/// Each stage sleeps this long first (fault injection), so the jobs go through one at a time
/// slowly enough for the outage to land mid-run.
const STAGE_DELAY_MS: u64 = 400;

/// Short visibility timeouts and backoffs, one message at a time per stage, and room for
/// the redeliveries the outage causes before anything is dead-lettered.
fn outage_settings(s: &mut Settings) {
    for stage in Stage::ALL {
        let c = s.stages.get_mut(stage);
        c.visibility_timeout_secs = VISIBILITY_SECS;
        c.backoff_base_ms = 100;
        c.backoff_max_ms = 500;
        c.wait_time_secs = 1;
        c.concurrency = 1;
        c.max_receive_count = 20;
    }
}

/// Waits until some job is published.
async fn wait_first_published(ctx: &Context, jobs: &[JobRecord], worker: &Worker) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        for j in jobs {
            if pipeline::job(ctx, j.job_id).await.status == JobStatus::Published {
                return;
            }
        }
        assert!(
            Instant::now() < until,
            "no job was published within 30 s\n--- worker log\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every job is published; panics with the stragglers after `limit`.
async fn wait_all_published(ctx: &Context, jobs: &[JobRecord], worker: &Worker, limit: Duration) {
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
        assert!(
            Instant::now() < until,
            "not published {limit:?} after the outage: {open:#?}\n--- worker log\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// When the job's history says it was published.
fn published_at(job: &JobRecord) -> DateTime<Utc> {
    job.history
        .iter()
        .find(|h| h.status == JobStatus::Published)
        .map(|h| h.at)
        .unwrap_or_else(|| panic!("job {} has no published entry", job.job_id))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waits_out_a_frozen_moto_server_without_spinning_and_publishes_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = PrivateMoto::start(dir.path()) else {
        return;
    };
    let Some(mut stack) = AwsStack::create(outage_settings).await else {
        return;
    };
    // Everything of this test goes to its own server, never to the run's shared one.
    stack.endpoint = moto.endpoint.clone();
    stack.settings.aws_endpoint_url = Some(moto.endpoint.clone());
    let env = stack.child_env();
    api_process::provision(&env, dir.path());
    let ctx = Context::new(stack.settings.clone(), stack.open_stores().await);
    let posts_before = wp_post_count(&stack).await;

    let jobs = crash::submit_many(&ctx, JOBS, "Outage").await;
    let delay = STAGE_DELAY_MS;
    let worker = Worker::start(
        &WorkerSpec {
            env,
            faults: format!(
                "validate:delay={delay},persist-metadata:delay={delay},kustomize:delay={delay}"
            ),
            grace_secs: 10,
            log_dir: dir.path().to_owned(),
        },
        "worker",
    );
    wait_first_published(&ctx, &jobs, &worker).await;

    // The outage: every call to SQS, DynamoDB and S3 hangs for more than two visibility
    // timeouts. The test itself calls nothing meanwhile.
    let frozen_at = Utc::now();
    let cpu_before = worker.cpu_time();
    let started = Instant::now();
    moto.freeze();
    tokio::time::sleep(OUTAGE).await;
    let cpu = worker.cpu_time().saturating_sub(cpu_before);
    let wall = started.elapsed();
    moto.thaw();
    assert!(
        cpu < wall / 4,
        "the worker used {cpu:?} of CPU in {wall:?} of outage: it spins\n--- worker log\n{}",
        worker.log_tail()
    );

    wait_all_published(&ctx, &jobs, &worker, Duration::from_secs(40)).await;
    let mut after = Vec::new();
    for j in &jobs {
        after.push(pipeline::job(&ctx, j.job_id).await);
    }
    let late = after
        .iter()
        .filter(|j| published_at(j) >= frozen_at)
        .count();
    eprintln!(
        "outage: worker CPU {cpu:?} in {wall:?}; {late} of {JOBS} jobs published after it began"
    );
    assert!(
        late > 0,
        "the outage came mid-run: some job was published after it began"
    );

    // Exactly once: each worker event, post-meta set, k8or-kustomize item and object once
    // per job, nothing left in any queue, one wp_posts row and one pool GUID per job.
    let left = crash::wait_until_queues_empty(&ctx, Duration::from_secs(20)).await;
    let mut report = CrashReport::default();
    crash::tally(&ctx, &jobs, &mut report).await;
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
    assert_eq!(wp_post_count(&stack).await - posts_before, JOBS as i64);
    assert_eq!(
        ctx.stores.viewport.free_guids().await.unwrap(),
        GUID_POOL_SIZE - JOBS as u64
    );

    assert!(worker.stop().success(), "the worker stops cleanly");
    stack.drop_database().await;
    drop(moto);
}
