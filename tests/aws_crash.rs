//! The crash proof of issue 6 in AWS mode: jobs through two `k8or-worker run` processes on a
//! private moto server and a fresh MariaDB database; one worker is killed with SIGKILL at
//! random moments (at least once while some job is inside each stage, seen from the job
//! statuses) and restarted. After the drain every job is published exactly once: one post,
//! one post-meta set, one k8or-kustomize item, one app-image object, each worker event
//! once, no temporary object, nothing left in any queue or dead-letter queue.

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

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use aws_stack::AwsStack;
use crash::{CrashReport, Rng};
use k8or::bootstrap::GUID_POOL_SIZE;
use k8or::{Context, JobStatus, Settings, Stage};
use private_moto::PrivateMoto;
use processes::{Worker, WorkerSpec};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Jobs in the run.
const JOBS: usize = 20;
/// Worker processes; the one killed is picked at random each time.
const WORKERS: usize = 2;
/// Every stage's visibility timeout, in seconds: a killed worker's messages come back soon.
const VISIBILITY_SECS: u64 = 3;
/// Each stage sleeps this long first (fault injection), so kills land inside stages.
const STAGE_DELAY_MS: u64 = 200;
/// Random kills after every stage has seen one.
const RANDOM_KILLS: usize = 2;
/// How long the kill phase may take before the drain.
const KILL_PHASE: Duration = Duration::from_secs(40);

/// Short visibility timeouts and backoffs, two messages at a time per stage and worker, and
/// room for the redeliveries the kills cause before anything is dead-lettered.
fn crash_settings(s: &mut Settings) {
    for stage in Stage::ALL {
        let c = s.stages.get_mut(stage);
        c.visibility_timeout_secs = VISIBILITY_SECS;
        c.backoff_base_ms = 100;
        c.backoff_max_ms = 500;
        c.wait_time_secs = 1;
        c.concurrency = 2;
        c.max_receive_count = 20;
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

/// The last lines of every worker log, for a failure message.
fn logs(dir: &Path) -> String {
    (0..WORKERS)
        .map(|i| {
            let log = dir.join(format!("worker-{i}.log"));
            format!("--- worker-{i}\n{}", api_process::tail(&log))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_is_lost_or_doubled_when_aws_mode_workers_are_killed_at_random() {
    let dir = tempfile::tempdir().unwrap();
    let Some(moto) = PrivateMoto::start(dir.path()) else {
        return;
    };
    let Some(mut stack) = AwsStack::create(crash_settings).await else {
        return;
    };
    stack.endpoint = moto.endpoint.clone();
    stack.settings.aws_endpoint_url = Some(moto.endpoint.clone());
    let env = stack.child_env();
    api_process::provision(&env, dir.path());
    let ctx = Context::new(stack.settings.clone(), stack.open_stores().await);
    let posts_before = wp_post_count(&stack).await;

    let start = Instant::now();
    let jobs = crash::submit_many(&ctx, JOBS, "AWS Crash").await;
    let spec = WorkerSpec {
        env,
        faults: Stage::ALL
            .iter()
            .map(|s| format!("{s}:delay={STAGE_DELAY_MS}"))
            .collect::<Vec<_>>()
            .join(","),
        grace_secs: 5,
        log_dir: dir.path().to_owned(),
    };
    let mut workers: Vec<Option<Worker>> = (0..WORKERS)
        .map(|i| Some(Worker::start(&spec, &format!("worker-{i}"))))
        .collect();

    // Kill while a job is seen inside each stage, then a few times at random.
    let mut rng = Rng::seeded();
    let mut kills_in: BTreeMap<Stage, usize> = BTreeMap::new();
    let mut kills = 0;
    let mut random_kills = 0;
    let mut next_random = Instant::now();
    let mut open: Vec<uuid::Uuid> = jobs.iter().map(|j| j.job_id).collect();
    while !open.is_empty() && start.elapsed() < KILL_PHASE {
        let mut busy = HashSet::new();
        let mut still = Vec::new();
        for id in &open {
            let status = pipeline::job(&ctx, *id).await.status;
            if status != JobStatus::Published {
                busy.insert(status);
                still.push(*id);
            }
        }
        open = still;
        let uncovered = Stage::ALL
            .into_iter()
            .find(|s| !kills_in.contains_key(s) && busy.contains(&s.running_status()));
        let random_due = kills_in.len() == Stage::ALL.len()
            && random_kills < RANDOM_KILLS
            && Instant::now() >= next_random
            && !open.is_empty();
        if uncovered.is_some() || random_due {
            let slot = rng.below(WORKERS as u64) as usize;
            if let Some(w) = workers[slot].take() {
                w.kill();
            }
            kills += 1;
            match uncovered {
                Some(stage) => *kills_in.entry(stage).or_default() += 1,
                None => {
                    random_kills += 1;
                    next_random = Instant::now() + Duration::from_millis(500 + rng.below(1000));
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
            workers[slot] = Some(Worker::start(&spec, &format!("worker-{slot}")));
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }

    // The drain: every job published, then stale redeliveries dropped by the workers.
    let until = Instant::now() + Duration::from_secs(40);
    loop {
        let mut left = Vec::new();
        for id in &open {
            let job = pipeline::job(&ctx, *id).await;
            if job.status != JobStatus::Published {
                left.push((job.job_id, job.status, job.error));
            }
        }
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "not published: {left:#?}\n{}",
            logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = crash::wait_until_queues_empty(&ctx, Duration::from_secs(20)).await;
    for (i, w) in workers.into_iter().enumerate() {
        let w = w.expect("every slot holds a worker");
        assert!(
            w.stop().success(),
            "worker-{i} stops cleanly after SIGTERM\n{}",
            logs(dir.path())
        );
    }
    let elapsed = start.elapsed();

    let mut report = CrashReport::default();
    crash::tally(&ctx, &jobs, &mut report).await;
    report
        .problems
        .extend(left.into_iter().map(|q| format!("left in a queue: {q}")));
    eprintln!(
        "aws crash run: {JOBS} jobs, {kills} kills {kills_in:?}, lost {}, duplicated {}, {elapsed:?}",
        report.lost, report.duplicated
    );
    assert_eq!(
        kills_in.keys().copied().collect::<Vec<_>>(),
        Stage::ALL,
        "a kill inside every stage"
    );
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
    stack.drop_database().await;
    drop(moto);
}
