//! `k8or-worker`: runs pipeline stages, provisions the backend, and lists or re-drives
//! dead-lettered jobs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use k8or::config::BackendKind;
use k8or::store::Delivery;
use k8or::{Context, JobEnvelope, Settings, Stage};
use k8or_workers::monitor::{self, LetterState};
use k8or_workers::runner::faults::Faults;
use k8or_workers::{stages, telemetry, Tuning};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// mimalloc, set up by [`k8or_workers::allocator::configure`] (why: there).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "k8or-worker",
    version,
    about = "k8or upload pipeline stage workers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs stage workers until SIGTERM or ctrl-c.
    Run {
        /// Comma-separated stages (default: all): validate,persist-metadata,kustomize,publish
        #[arg(long, default_value = "")]
        stages: String,
        /// After SIGTERM, how long in-flight jobs may finish before their messages are
        /// released for another worker.
        #[arg(long, default_value_t = 30)]
        grace_secs: u64,
        /// How often the dead-letter monitor scans these stages' dead-letter queues, and,
        /// with validate among them, queues jobs their intake never queued (0: no monitor in
        /// this process).
        #[arg(long, default_value_t = 15)]
        monitor_secs: u64,
        /// FOR TESTS AND DRILLS ONLY: slows down or fails stages, e.g.
        /// `validate:delay=500,kustomize:fail` (see `k8or_workers::runner::faults`).
        #[arg(long, default_value = "")]
        inject_faults: Faults,
    },
    /// Creates queues, tables, buckets and the ViewPort schema, and loads the seed data.
    Provision,
    /// Dead-lettered jobs.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Lists dead-lettered jobs per stage.
    List(StageFilter),
    /// Moves dead-lettered jobs back to their stage's queue.
    Redrive {
        #[command(flatten)]
        filter: StageFilter,
        /// Only this job.
        #[arg(long)]
        job: Option<Uuid>,
        /// Shows what would move, and moves nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
struct StageFilter {
    /// One stage (default: every stage).
    #[arg(long)]
    stage: Option<Stage>,
}

impl StageFilter {
    fn stages(&self) -> Vec<Stage> {
        self.stage.map_or_else(|| Stage::ALL.to_vec(), |s| vec![s])
    }
}

/// Installs this process's metrics recorder and serves it on `addr` until the returned
/// token is cancelled.
async fn start_metrics(addr: &str) -> anyhow::Result<CancellationToken> {
    let handle = telemetry::install_recorder().context("installing the metrics recorder")?;
    let (listener, local) = telemetry::bind(addr)
        .await
        .with_context(|| format!("binding metrics_listen {addr}"))?;
    let stop = CancellationToken::new();
    let serving = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = telemetry::serve_metrics(listener, handle, serving).await {
            tracing::error!(error = %e, "the /metrics server stopped");
        }
    });
    tracing::info!(%local, "serving /metrics");
    Ok(stop)
}

async fn open(settings: Settings) -> anyhow::Result<Context> {
    let stores = k8or::store::open(&settings)
        .await
        .context("opening the stores")?;
    Ok(Context::new(settings, stores))
}

fn age(sent_at_ms: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let secs = u64::try_from((now - sent_at_ms).max(0) / 1000).unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Lists the dead letters of the chosen stages. The listing is a monitor scan, so what it
/// shows is also recorded (error item, job marked) if no monitor had done so yet.
async fn dlq_list(ctx: &Context, filter: &StageFilter) -> anyhow::Result<()> {
    let report = monitor::scan(ctx, &filter.stages())
        .await
        .context("scanning the dead-letter queues")?;
    println!("STAGE\tJOB\tIMAGE_UID\tATTEMPTS\tAGE\tLAST_ERROR");
    for letter in &report.letters {
        let dash = || "-".to_owned();
        let stale = if letter.state == LetterState::Stale {
            " (stale copy: the job went on)"
        } else {
            ""
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}{stale}",
            letter.stage,
            letter.job_id.map_or_else(dash, |j| j.to_string()),
            letter.image_uid.clone().unwrap_or_else(dash),
            letter.attempts.map_or_else(dash, |a| a.to_string()),
            age(letter.sent_at_ms),
            letter
                .last_error
                .clone()
                .unwrap_or_default()
                .replace(['\t', '\n'], " ")
        );
    }
    Ok(())
}

async fn dlq_redrive(
    ctx: &Context,
    filter: &StageFilter,
    job: Option<Uuid>,
    dry_run: bool,
) -> anyhow::Result<()> {
    let wanted = move |d: &Delivery| match job {
        None => true,
        Some(id) => JobEnvelope::parse(&d.body).is_ok_and(|env| env.job_id == id),
    };
    let mut moved = 0;
    for stage in filter.stages() {
        let cfg = ctx.settings.stages.get(stage);
        let report = ctx
            .redrive_stage(stage, &wanted, dry_run)
            .await
            .with_context(|| format!("re-driving {}", cfg.dead_letter_queue))?;
        for m in &report.matched {
            let job_id = JobEnvelope::parse(&m.body).ok().map(|e| e.job_id);
            let verb = if dry_run { "would move" } else { "moved" };
            println!(
                "{stage}\t{verb}\t{}\t{}",
                job_id.map_or_else(|| "-".into(), |j| j.to_string()),
                m.dead_letter_id
            );
        }
        moved += report.matched.len();
    }
    if let (Some(id), 0) = (job, moved) {
        bail!("job {id} is not in any dead-letter queue searched");
    }
    println!(
        "{moved} message(s) {}",
        if dry_run { "would move" } else { "moved" }
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    k8or_workers::allocator::main(run)
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load().context("loading settings")?;
    telemetry::init_tracing(settings.log_format);
    match cli.command {
        Command::Run {
            stages: list,
            grace_secs,
            monitor_secs,
            inject_faults: faults,
        } => {
            let chosen = stages::parse_list(&list)?;
            if !faults.is_empty() {
                tracing::warn!(
                    ?faults,
                    "FAULT INJECTION IS ON (--inject-faults): for tests and drills only"
                );
            }
            let tuning = Tuning {
                grace: Duration::from_secs(grace_secs),
                monitor_every: (monitor_secs > 0).then(|| Duration::from_secs(monitor_secs)),
                faults,
            };
            let embedded = settings.backend == BackendKind::Embedded;
            let ctx = open(settings).await?;
            if embedded {
                // Embedded stores live in the data folder: make sure they are there.
                k8or::store::provision(&ctx.stores, &ctx.settings)
                    .await
                    .context("provisioning the embedded stores")?;
            }
            let metrics = match ctx.settings.metrics_listen.clone() {
                Some(addr) => Some(start_metrics(&addr).await?),
                None => None,
            };
            let names: Vec<&str> = chosen.iter().map(|s| s.as_str()).collect();
            tracing::info!(stages = ?names, "k8or-worker starting");
            k8or_workers::run_with(
                ctx,
                &chosen,
                k8or_workers::signals::shutdown_signal(),
                tuning,
            )
            .await?;
            if let Some(stop) = metrics {
                stop.cancel();
            }
            tracing::info!("k8or-worker stopped");
        }
        Command::Provision => {
            let ctx = open(settings).await?;
            let report = k8or::store::provision(&ctx.stores, &ctx.settings)
                .await
                .context("provisioning")?;
            println!("{report}");
        }
        Command::Dlq { command } => {
            let ctx = open(settings).await?;
            match command {
                DlqCommand::List(filter) => dlq_list(&ctx, &filter).await?,
                DlqCommand::Redrive {
                    filter,
                    job,
                    dry_run,
                } => dlq_redrive(&ctx, &filter, job, dry_run).await?,
            }
        }
    }
    Ok(())
}
