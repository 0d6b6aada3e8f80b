//! The whole pipeline: seed-shaped jobs with a 4 KiB PNG through validate, persist-metadata,
//! kustomize and publish, on the real stage loops.
//!
//! - throughput: every job submitted first, then the loops run until the queues are empty;
//! - latency: the loops run with their production settings while jobs arrive at a steady
//!   rate; each job's latency is from its creation (the start of its submission) to the
//!   `published` entry of its history.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8or::{Context, JobStatus, Stage};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::report::{Row, Target};
use crate::{support, Scale};

const PNG_BYTES: usize = 4 * 1024;
/// Free space the comparison run in memory wants (it uses well under half of it).
const RAM_ROOM: u64 = 1 << 30;

/// Every job's final status; an error names the first that was not published.
async fn check_published(ctx: &Context, ids: &[Uuid]) -> anyhow::Result<Vec<k8or::JobRecord>> {
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        let job = ctx.jobs.get(*id).await?.context("job vanished")?;
        anyhow::ensure!(
            job.status == JobStatus::Published,
            "job {id} ended {} ({:?}, {:?})",
            job.status,
            job.error,
            job.reasons
        );
        jobs.push(job);
    }
    Ok(jobs)
}

/// The pipeline's rate with the data folder in `TMPDIR` (the target's row) and, where the
/// machine has a memory-backed folder and `TMPDIR` is not one, again in memory: the second
/// row is the software without the disk, so a reader sees how much of the first is the disk.
pub async fn throughput(scale: Scale) -> anyhow::Result<Vec<Row>> {
    let dir = support::folder()?;
    let fs = support::filesystem(&dir);
    let disk = support::describe_disk(&dir)?;
    let mut rows = vec![throughput_at(dir, &disk, scale)
        .await?
        .target(Target::AtLeast(500.0))];
    if fs != "tmpfs" {
        match support::ram_folder(RAM_ROOM) {
            Some(ram) => {
                let dir = support::folder_in(ram)?;
                let disk = format!("{}, for comparison", support::describe_disk(&dir)?);
                rows.push(throughput_at(dir, &disk, scale).await?);
            }
            None => eprintln!(
                "no comparison run in memory: {} is not tmpfs or has under 1 GiB free",
                support::RAM_FOLDER
            ),
        }
    }
    Ok(rows)
}

async fn throughput_at(dir: PathBuf, fs: &str, scale: Scale) -> anyhow::Result<Row> {
    let n = scale.pipeline_jobs;
    let ctx = support::context_at(dir, |_| {}).await?;
    let png = support::noise_png(PNG_BYTES);
    let started = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            support::submit(&ctx, support::request(i)?, png.clone())
                .await?
                .job_id,
        );
    }
    let submit_rate = n as f64 / started.elapsed().as_secs_f64();
    let cpu = support::MachineCpu::now();
    let report = k8or_workers::drain(&ctx, &Stage::ALL, Duration::from_secs(3600)).await?;
    let machine = cpu
        .zip(support::MachineCpu::now())
        .map_or_else(String::new, |(a, b)| {
            format!("; the machine's CPU while it drains: {}", a.busy_since(b))
        });
    check_published(&ctx, &ids).await?;
    let rate = n as f64 / report.elapsed.as_secs_f64();
    Ok(Row::new(
        format!(
            "pipeline throughput, {n} jobs x {} B PNG, 4 stages, data on {fs}{machine}",
            png.len()
        ),
        rate,
        "jobs/s",
    )
    .reference(submit_rate, "submission writes alone"))
}

/// Each stage alone over the same jobs: its rate, and the CPU it spends per job across
/// the process (every thread: the runtime, SQLite's, blocking file work). Where the whole
/// pipeline's rate is about 1 / (sum of 1 / stage rates), the stages do not overlap: they
/// share one bound (the CPU, or a single writer), which these rows locate.
pub async fn stages(scale: Scale) -> anyhow::Result<Vec<Row>> {
    let n = scale.pipeline_jobs;
    let dir = support::folder()?;
    let fs = support::describe_disk(&dir)?;
    let ctx = support::context_at(dir, |_| {}).await?;
    let png = support::noise_png(PNG_BYTES);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(
            support::submit(&ctx, support::request(i)?, png.clone())
                .await?
                .job_id,
        );
    }
    let mut rows = Vec::new();
    for stage in Stage::ALL {
        let cpu = support::cpu_time("self");
        let report = k8or_workers::drain(&ctx, &[stage], Duration::from_secs(3600)).await?;
        let secs = report.elapsed.as_secs_f64();
        let per_job = cpu
            .zip(support::cpu_time("self"))
            .map(|(a, b)| (b.saturating_sub(a)).as_secs_f64() * 1000.0 / n as f64);
        let cpu_note = per_job.map_or_else(String::new, |ms| {
            format!(
                ", CPU {ms:.2} ms/job = {:.2} cores",
                ms * n as f64 / 1000.0 / secs
            )
        });
        rows.push(Row::new(
            format!("stage {stage} alone, {n} jobs, data on {fs}{cpu_note}"),
            n as f64 / secs,
            "jobs/s",
        ));
    }
    check_published(&ctx, &ids).await?;
    Ok(rows)
}

pub async fn latency(scale: Scale) -> anyhow::Result<Vec<Row>> {
    let dir = support::folder()?;
    let disk = support::describe_disk(&dir)?;
    let ctx = support::context_at(dir, |_| {}).await?;
    let png = support::noise_png(PNG_BYTES);
    let stop = CancellationToken::new();
    let workers = tokio::spawn(k8or_workers::run(
        ctx.clone(),
        &Stage::ALL,
        stop.clone().cancelled_owned(),
    ));
    let total = (scale.latency_rate * scale.latency_secs) as usize;
    let mut tick = tokio::time::interval(Duration::from_secs(1) / scale.latency_rate);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut submits = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let (ctx, png, request) = (ctx.clone(), png.clone(), support::request(i)?);
        submits.spawn(async move { support::submit(&ctx, request, png).await.map(|j| j.job_id) });
    }
    let mut ids = Vec::with_capacity(total);
    while let Some(id) = submits.join_next().await {
        ids.push(id.context("submit task")??);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for id in &ids {
        loop {
            let job = ctx.jobs.get(*id).await?.context("job vanished")?;
            if job.status.is_final() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.cancel();
    workers.await.context("workers")??;
    let jobs = check_published(&ctx, &ids).await?;
    let mut ms: Vec<f64> = jobs
        .iter()
        .filter_map(|j| {
            let published = j
                .history
                .iter()
                .find(|h| h.status == JobStatus::Published)?;
            Some((published.at - j.created_at).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    anyhow::ensure!(
        ms.len() == jobs.len(),
        "a published job without its history entry"
    );
    ms.sort_by(f64::total_cmp);
    let offered = format!(
        "{}/s offered for {} s, data on {disk}",
        scale.latency_rate, scale.latency_secs
    );
    Ok(vec![
        Row::new(
            format!("pipeline latency p50, {offered}"),
            support::quantile(&ms, 0.5),
            "ms",
        )
        .target(Target::AtMost(20.0)),
        Row::new(
            format!("pipeline latency p99, {offered}"),
            support::quantile(&ms, 0.99),
            "ms",
        )
        .target(Target::AtMost(100.0)),
    ])
}
