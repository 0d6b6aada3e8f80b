//! Queue burn-down: no-op jobs through one stage. Enqueued with `send_batch`, then drained
//! by as many loops as the stage's concurrency, each doing what the runner's loop does with
//! a message whose work is nothing: receive a batch, delete the batch. Then the same with
//! the real runner (job records read and written per message) on fewer jobs.
//!
//! References: a plain SQLite loop, one autocommit insert and one delete per row, with the
//! embedded store's pragmas; and River's published no-op rate, ~5.7k jobs/s per core.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::Utc;
use k8or::job::StoredImage;
use k8or::store::{OutMessage, ReceiveOptions};
use k8or::{Context, JobEnvelope, JobRecord, Stage};
use k8or_workers::runner::{drain_handlers, SharedHandler};
use k8or_workers::{Outcome, StageError, StageHandler};
use uuid::Uuid;

use crate::report::{Row, Target};
use crate::{support, Scale};

/// River's published no-op throughput per core (riverqueue.com benchmarks).
const RIVER_PER_CORE: f64 = 5_700.0;
const TARGET_JOBS_PER_SEC: f64 = 12_000.0;

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

pub async fn run(scale: Scale) -> anyhow::Result<Vec<Row>> {
    let (enqueue, drain) = burn_down(scale.queue_jobs).await?;
    let sqlite = sqlite_reference(scale.queue_jobs).await?;
    let runner = runner_no_op(scale.runner_jobs).await?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    let n = scale.queue_jobs;
    Ok(vec![
        Row::new(
            format!("queue burn-down, {n} no-op jobs (receive + delete_batch)"),
            drain,
            "jobs/s",
        )
        .reference(sqlite, "SQLite insert+delete loop")
        .target(Target::AtLeast(TARGET_JOBS_PER_SEC)),
        Row::new("queue burn-down vs River", drain, "jobs/s")
            .reference(
                RIVER_PER_CORE * cores,
                format!("River 5.7k/s/core x {cores}"),
            )
            .target(Target::AtLeast(TARGET_JOBS_PER_SEC)),
        Row::new(
            format!("queue enqueue, {n} jobs (send_batch of 500)"),
            enqueue,
            "jobs/s",
        ),
        Row::new(
            format!(
                "runner no-op stage, {} jobs (job record per message)",
                scale.runner_jobs
            ),
            runner,
            "jobs/s",
        )
        .reference(drain, "queue burn-down"),
    ])
}

/// Enqueues `n` no-op messages, then drains them; returns both rates.
async fn burn_down(n: usize) -> anyhow::Result<(f64, f64)> {
    let ctx = support::context(|_| {}).await?;
    let cfg = ctx.settings.stages.get(Stage::Validate).clone();
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        let batch: Vec<OutMessage> = (sent..n.min(sent + 500))
            .map(|i| OutMessage::new(format!("{{\"noop\":{i}}}")))
            .collect();
        sent += batch.len();
        ctx.stores.queue.send_batch(&cfg.queue, batch).await?;
    }
    let enqueue = rate(n, started.elapsed());

    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let loops: Vec<_> = (0..cfg.concurrency)
        .map(|_| {
            let (ctx, queue, done) = (ctx.clone(), cfg.queue.clone(), done.clone());
            let options = ReceiveOptions {
                max_messages: cfg.batch_size,
                wait: Duration::ZERO,
                visibility_timeout: None,
            };
            tokio::spawn(async move {
                loop {
                    let got = ctx.stores.queue.receive(&queue, &options).await?;
                    if got.is_empty() {
                        return anyhow::Ok(());
                    }
                    let receipts: Vec<String> = got.into_iter().map(|d| d.receipt).collect();
                    ctx.stores.queue.delete_batch(&queue, &receipts).await?;
                    done.fetch_add(receipts.len(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for l in loops {
        l.await.context("drain loop")??;
    }
    let drain = rate(done.load(Ordering::Relaxed), started.elapsed());
    let left = ctx.stores.queue.depth(&cfg.queue).await?;
    anyhow::ensure!(
        done.load(Ordering::Relaxed) == n && left.visible == 0,
        "drained {} of {n}, {left:?} left",
        done.load(Ordering::Relaxed)
    );
    Ok((enqueue, drain))
}

/// One autocommit insert, then one autocommit delete, per row, in WAL with
/// `synchronous=NORMAL` like the embedded store.
async fn sqlite_reference(n: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("plain.db"))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch("CREATE TABLE m (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")?;
    let started = Instant::now();
    for i in 0..n {
        conn.prepare_cached("INSERT INTO m (seq, body) VALUES (?, ?)")?
            .execute(rusqlite::params![
                i64::try_from(i)?,
                format!("{{\"noop\":{i}}}")
            ])?;
    }
    for i in 0..n {
        conn.prepare_cached("DELETE FROM m WHERE seq = ?")?
            .execute([i64::try_from(i)?])?;
    }
    Ok(rate(n, started.elapsed()))
}

/// A stage that does nothing: what is measured is the runner around it.
struct NoOp;

#[async_trait]
impl StageHandler for NoOp {
    fn stage(&self) -> Stage {
        Stage::Publish
    }

    async fn handle(
        &self,
        _: &JobRecord,
        _: &JobEnvelope,
        _: &Context,
    ) -> Result<Outcome, StageError> {
        Ok(Outcome::default())
    }
}

/// `n` job records and their messages through the real stage loops with a no-op stage (the
/// last stage, so nothing is forwarded): every message costs the runner's job reads and
/// writes.
async fn runner_no_op(n: usize) -> anyhow::Result<f64> {
    let ctx = support::context(|s| {
        let c = s.stages.get_mut(Stage::Publish);
        c.wait_time_secs = 1;
    })
    .await?;
    let request = support::request(0)?;
    for _ in 0..n {
        let id = Uuid::now_v7();
        let image = StoredImage {
            temp_key: format!("uploads/{id}/image"),
            size: 0,
            sha256: String::new(),
            declared_content_type: None,
            file_name: None,
        };
        let job = JobRecord::new(
            id,
            "jamesbond".into(),
            "NOOP".into(),
            request.clone(),
            image,
            Utc::now(),
        );
        ctx.jobs.create(&job).await?;
        let env = JobEnvelope::new(id, "NOOP".into(), "jamesbond".into(), Stage::Publish);
        ctx.enqueue(&env, Duration::ZERO, Default::default())
            .await?;
    }
    let handlers: Vec<SharedHandler> = vec![Arc::new(NoOp)];
    let report = drain_handlers(&ctx, handlers, Duration::from_secs(3600)).await?;
    Ok(rate(n, report.elapsed))
}
