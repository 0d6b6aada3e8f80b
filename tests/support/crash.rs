//! The crash run, shared by the reliability test (small) and the soak example (large): N
//! jobs through real `k8or-worker run` processes on one data folder, killed with SIGKILL at
//! random moments (at least once while a job is inside each stage, seen from the job
//! statuses) and restarted; then every job is counted: published once, with exactly one
//! post, one post-meta set, one k8or-kustomize item, one object and one event of each type.

#![allow(dead_code, reason = "each test target uses a different part")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use k8or::model::EventType;
use k8or::{Context, JobRecord, JobStatus, Settings, Stage};

use crate::processes::{settings_env, shared_settings, Worker, WorkerSpec};
use crate::{fixtures, pipeline};

/// The events the workers write once per published job.
pub const WORKER_EVENTS: [EventType; 8] = [
    EventType::ImageValidated,
    EventType::UserDataSaved,
    EventType::ImageMetadataSaved,
    EventType::UserInputSaved,
    EventType::KustomizationInitiated,
    EventType::KustomizationSaved,
    EventType::ViewportCreated,
    EventType::ImageUploaded,
];

#[derive(Debug, Clone)]
pub struct CrashPlan {
    pub jobs: usize,
    pub workers: usize,
    /// After every stage has seen a kill, roughly how often another random kill comes.
    pub kill_every: Duration,
    pub max_random_kills: usize,
    /// Each stage sleeps this long first (the fault-injection hook), so kills land inside.
    pub stage_delay_ms: u64,
    pub deadline: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct CrashReport {
    pub jobs: usize,
    pub kills: usize,
    /// Kills made while a job was seen inside the stage.
    pub kills_in: BTreeMap<Stage, usize>,
    pub lost: usize,
    pub duplicated: usize,
    /// Everything found wrong, in words.
    pub problems: Vec<String>,
    pub elapsed: Duration,
}

/// A tiny xorshift: kill moments need to be spread, not secure.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A provisioned context on a shared folder, as the workers will see it.
pub async fn shared_context(data_dir: &Path, tweak: impl FnOnce(&mut Settings)) -> Context {
    let settings = shared_settings(data_dir, tweak);
    let stores = k8or::store::open(&settings).await.expect("open stores");
    k8or::store::provision(&stores, &settings)
        .await
        .expect("provision");
    Context::new(settings, stores)
}

/// Submits `n` small PNG uploads, each its own image.
pub async fn submit_many(ctx: &Context, n: usize, tag: &str) -> Vec<JobRecord> {
    let png = fixtures::png(8, 8);
    let mut jobs = Vec::with_capacity(n);
    for i in 0..n {
        let uid = pipeline::new_uid();
        let request = pipeline::request(&uid, &format!("{tag} {i}"), "v0-0-01");
        jobs.push(pipeline::submit(ctx, request, png.clone(), "image/png").await);
    }
    jobs
}

/// Rows in `wp_posts`, read straight from the ViewPort file.
pub async fn wp_post_count(data_dir: &Path) -> i64 {
    let conn = rusqlite::Connection::open_with_flags(
        data_dir.join("viewport.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open viewport.db");
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .expect("busy timeout");
    conn.query_row("SELECT COUNT(*) FROM wp_posts", [], |r| r.get(0))
        .expect("count wp_posts")
}

/// Every stage queue and dead-letter queue, with what is left in it.
pub async fn leftovers(ctx: &Context) -> Vec<String> {
    let mut out = Vec::new();
    for stage in Stage::ALL {
        let c = ctx.settings.stages.get(stage);
        for q in [&c.queue, &c.dead_letter_queue] {
            let d = ctx.stores.queue.depth(q).await.expect("depth");
            if d.visible + d.in_flight + d.delayed > 0 {
                out.push(format!("{q}: {d:?}"));
            }
        }
    }
    out
}

/// Waits until no queue holds anything, up to `limit`.
pub async fn wait_until_queues_empty(ctx: &Context, limit: Duration) -> Vec<String> {
    let until = Instant::now() + limit;
    loop {
        let left = leftovers(ctx).await;
        if left.is_empty() || Instant::now() >= until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The statuses of the jobs not yet published.
async fn statuses(ctx: &Context, open: &[uuid::Uuid]) -> HashMap<uuid::Uuid, JobStatus> {
    let mut out = HashMap::new();
    for id in open {
        if let Ok(Some(job)) = ctx.jobs.get(*id).await {
            out.insert(*id, job.status);
        }
    }
    out
}

/// Counts, per job, everything a published job leaves; adds to `lost` and `duplicated`.
pub async fn tally(ctx: &Context, jobs: &[JobRecord], report: &mut CrashReport) {
    let mut events: HashMap<(uuid::Uuid, EventType), usize> = HashMap::new();
    let users: HashSet<&str> = jobs.iter().map(|j| j.username.as_str()).collect();
    for user in users {
        for e in ctx.audit.events_of(user, None).await.expect("events") {
            if let Some(id) = e.job_id {
                *events.entry((id, e.event_type)).or_default() += 1;
            }
        }
    }
    for submitted in jobs {
        let id = submitted.job_id;
        let job = pipeline::job(ctx, id).await;
        let mut missing = Vec::new();
        let mut doubled = Vec::new();
        if job.status != JobStatus::Published {
            missing.push(format!("status {}", job.status));
        }
        for t in WORKER_EVENTS {
            match events.get(&(id, t)).copied().unwrap_or(0) {
                1 => {}
                0 => missing.push(format!("event {}", t.as_str())),
                n => doubled.push(format!("{n} events {}", t.as_str())),
            }
        }
        match pipeline::post_of(ctx, id).await {
            None => missing.push("post".into()),
            Some(post) => {
                let mut keys: HashMap<&str, usize> = HashMap::new();
                for m in &post.meta {
                    *keys.entry(m.meta_key.as_str()).or_default() += 1;
                }
                for (k, n) in keys {
                    if n > 1 {
                        doubled.push(format!("{n} post meta {k}"));
                    }
                }
                if !post.meta.iter().any(|m| m.meta_key == "imageuid") {
                    missing.push("post meta imageuid".into());
                }
            }
        }
        let t = &ctx.settings.tables;
        match pipeline::query_all(ctx, &t.k8or_kustomize, &job.image_uid)
            .await
            .len()
        {
            1 => {}
            0 => missing.push("k8or-kustomize item".into()),
            n => doubled.push(format!("{n} k8or-kustomize items")),
        }
        let objects = pipeline::objects(ctx, &job).await;
        let images = objects
            .keys()
            .filter(|k| k.ends_with(".png") && !k.contains("/kustomize/"))
            .count();
        if images != 1 {
            missing.push(format!("{images} app-image objects"));
        }
        if objects.keys().any(|k| k.contains("/uploads/")) {
            doubled.push("the temporary object is still there".into());
        }
        if !missing.is_empty() {
            report.lost += 1;
            report.problems.push(format!("job {id} lacks {missing:?}"));
        }
        if !doubled.is_empty() {
            report.duplicated += 1;
            report.problems.push(format!("job {id} has {doubled:?}"));
        }
    }
}

/// The whole crash run, in `dir` (logs in `dir`, data in `dir/data`).
pub async fn crash_run(dir: &Path, plan: &CrashPlan) -> CrashReport {
    let data = dir.join("data");
    let concurrency = 2;
    let ctx = shared_context(&data, |s| {
        for stage in Stage::ALL {
            s.stages.get_mut(stage).concurrency = concurrency;
        }
    })
    .await;
    let posts_before = wp_post_count(&data).await;
    let start = Instant::now();
    let jobs = submit_many(&ctx, plan.jobs, "Crash Test").await;
    let faults = Stage::ALL
        .iter()
        .map(|s| format!("{s}:delay={}", plan.stage_delay_ms))
        .collect::<Vec<_>>()
        .join(",");
    let spec = WorkerSpec {
        env: settings_env(&ctx.settings),
        faults,
        grace_secs: 5,
        log_dir: dir.to_owned(),
    };
    let mut workers: Vec<Option<Worker>> = (0..plan.workers)
        .map(|i| Some(Worker::start(&spec, &format!("worker-{i}"))))
        .collect();
    let mut report = CrashReport {
        jobs: plan.jobs,
        ..CrashReport::default()
    };
    let mut rng = Rng::seeded();
    let mut open: Vec<uuid::Uuid> = jobs.iter().map(|j| j.job_id).collect();
    let mut random_kills = 0;
    let mut next_random = Instant::now();
    let poll = if plan.jobs > 200 { 200 } else { 40 };
    while !open.is_empty() && start.elapsed() < plan.deadline {
        // A sample of the open jobs is enough to see which stages are busy.
        let from = rng.below(open.len() as u64) as usize;
        let sample: Vec<uuid::Uuid> = open.iter().cycle().skip(from).take(200).copied().collect();
        let seen = statuses(&ctx, &sample).await;
        open.retain(|id| seen.get(id) != Some(&JobStatus::Published));
        if open.is_empty() {
            break;
        }
        let busy: HashSet<JobStatus> = seen.values().copied().collect();
        let uncovered = Stage::ALL
            .into_iter()
            .find(|s| !report.kills_in.contains_key(s) && busy.contains(&s.running_status()));
        let all_covered = report.kills_in.len() == Stage::ALL.len();
        let random_due =
            all_covered && random_kills < plan.max_random_kills && Instant::now() >= next_random;
        if uncovered.is_some() || random_due {
            let slot = rng.below(workers.len() as u64) as usize;
            if let Some(w) = workers[slot].take() {
                w.kill();
            }
            report.kills += 1;
            match uncovered {
                Some(stage) => *report.kills_in.entry(stage).or_default() += 1,
                None => {
                    random_kills += 1;
                    let every = plan.kill_every.as_millis() as u64;
                    next_random =
                        Instant::now() + Duration::from_millis(every / 2 + rng.below(every + 1));
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
            workers[slot] = Some(Worker::start(&spec, &format!("worker-{slot}")));
        }
        tokio::time::sleep(Duration::from_millis(poll)).await;
    }
    // Stale duplicates (messages whose job finished while they were held by a killed
    // worker) come back after the visibility timeout and are dropped by the workers.
    let left = wait_until_queues_empty(&ctx, Duration::from_secs(60)).await;
    for w in workers.into_iter().flatten() {
        let status = w.stop();
        if !status.success() {
            report
                .problems
                .push(format!("a worker exited with {status} after SIGTERM"));
        }
    }
    report.elapsed = start.elapsed();
    for q in left {
        report.problems.push(format!("left in a queue: {q}"));
    }
    tally(&ctx, &jobs, &mut report).await;
    let posts = wp_post_count(&data).await - posts_before;
    if posts != plan.jobs as i64 {
        report
            .problems
            .push(format!("{posts} wp_posts rows for {} jobs", plan.jobs));
    }
    report
}
