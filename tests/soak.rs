//! The crash run at soak size: N jobs (default 1,000) through `k8or-worker run` processes
//! killed with SIGKILL at random moments and restarted, then every job counted.
//!
//! `cargo build -p k8or-workers --bin k8or-worker && cargo run -p k8or-tests --example soak -- [jobs] [workers]`
//! (or `bench/soak`). Prints jobs, kills, lost, duplicated and time; exits non-zero if any
//! job was lost or doubled.

#[path = "support/crash.rs"]
mod crash;
#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/pipeline.rs"]
mod pipeline;
#[path = "support/processes.rs"]
mod processes;

use std::time::Duration;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let jobs: usize = args
        .next()
        .map_or(1000, |a| a.parse().expect("jobs: a number"));
    let workers: usize = args
        .next()
        .map_or(3, |a| a.parse().expect("workers: a number"));
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = crash::CrashPlan {
        jobs,
        workers,
        kill_every: Duration::from_secs(2),
        max_random_kills: usize::MAX,
        stage_delay_ms: 20,
        deadline: Duration::from_secs(3600),
    };
    eprintln!(
        "soak: {jobs} jobs, {workers} workers, data in {}",
        dir.path().display()
    );
    let r = crash::crash_run(dir.path(), &plan).await;
    println!(
        "jobs {}  kills {} (inside a stage: {:?})  lost {}  duplicated {}  time {:.1} s",
        r.jobs,
        r.kills,
        r.kills_in,
        r.lost,
        r.duplicated,
        r.elapsed.as_secs_f64()
    );
    for p in r.problems.iter().take(20) {
        println!("  {p}");
    }
    if r.lost > 0 || r.duplicated > 0 || !r.problems.is_empty() {
        std::process::exit(1);
    }
}
