//! The k8or benchmarks, on the embedded backend in temporary data folders. Each one measures
//! its figure and a reference in the same run, so the ratio means something on any machine:
//!
//! - `queue`: no-op jobs through one stage (the queue's receive/delete-batch loop, and the
//!   real runner with job records) vs a plain SQLite insert+delete loop;
//! - `throughput`: seed-shaped jobs with a 4 KiB PNG through all four stages;
//! - `stages`: the same jobs through one stage at a time: each stage's rate and CPU per job;
//! - `latency`: submit → published at a steady offered rate, p50/p99;
//! - `ingest`: a large multipart upload to a real `k8or-api serve`, vs writing the bytes to
//!   a file; the server's peak RSS;
//! - `validate`: an archive through the validate checks vs `openssl dgst -sha256`, and a big
//!   PNG through them vs a plain `image` decode.

pub mod ingest;
pub mod pipeline;
pub mod queue;
pub mod report;
pub mod support;
pub mod validate;

pub use report::{Row, Target};

/// How big each benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    pub queue_jobs: usize,
    pub runner_jobs: usize,
    pub pipeline_jobs: usize,
    pub latency_rate: u32,
    pub latency_secs: u32,
    pub ingest_bytes: u64,
    pub archive_bytes: u64,
    pub png_pixels: u64,
}

impl Scale {
    /// The sizes of the targets.
    pub const FULL: Self = Self {
        queue_jobs: 100_000,
        runner_jobs: 10_000,
        pipeline_jobs: 2_000,
        latency_rate: 100,
        latency_secs: 10,
        ingest_bytes: 1 << 30,
        archive_bytes: 1 << 30,
        png_pixels: 50_000_000,
    };
    /// A whole run in well under a minute (`--quick`).
    pub const QUICK: Self = Self {
        queue_jobs: 5_000,
        runner_jobs: 500,
        pipeline_jobs: 100,
        latency_rate: 50,
        latency_secs: 2,
        ingest_bytes: 32 << 20,
        archive_bytes: 32 << 20,
        png_pixels: 2_000_000,
    };
    /// Tiny: exercises every code path in a test.
    pub const TINY: Self = Self {
        queue_jobs: 300,
        runner_jobs: 40,
        pipeline_jobs: 8,
        latency_rate: 20,
        latency_secs: 1,
        ingest_bytes: 1 << 20,
        archive_bytes: 1 << 20,
        png_pixels: 40_000,
    };
}

/// The benchmarks, by the names the command takes.
pub const NAMES: [&str; 6] = [
    "queue",
    "throughput",
    "stages",
    "latency",
    "ingest",
    "validate",
];

/// Runs one benchmark by name.
pub async fn run(name: &str, scale: Scale) -> anyhow::Result<Vec<Row>> {
    match name {
        "queue" => queue::run(scale).await,
        "throughput" => pipeline::throughput(scale).await,
        "stages" => pipeline::stages(scale).await,
        "latency" => pipeline::latency(scale).await,
        "ingest" => ingest::run(scale).await,
        "validate" => validate::run(scale).await,
        other => anyhow::bail!("no benchmark {other:?}; choose from {NAMES:?} or all"),
    }
}
