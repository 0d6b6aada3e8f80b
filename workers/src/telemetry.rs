//! What the workers tell operators: one span per job stage (carrying the job's trace id from
//! the message's `traceparent`), Prometheus metrics, and the logging setup.
//!
//! The stage code only calls the `metrics` facade. Which recorder receives the calls is the
//! process's business: the `k8or-worker` binary installs one with [`install_recorder`] and
//! serves it with [`serve_metrics`]; the API binary in embedded mode runs the workers in its
//! own process, where the API's recorder (built with [`histogram_buckets`]) gets them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use k8or::config::LogFormat;
use k8or::context::TraceParent;
use k8or::store::Delivery;
use k8or::{Context, JobEnvelope, JobStatus, Stage};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use crate::runner::Execution;

/// Jobs entering a status, by status (`validating`, …, `published`, `rejected`).
pub const JOB_TRANSITIONS: &str = "k8or_job_transitions_total";
/// How long one delivery took, by stage and outcome.
pub const STAGE_SECONDS: &str = "k8or_stage_duration_seconds";
/// Attempts that failed and will be retried, by stage.
pub const RETRIES: &str = "k8or_stage_retries_total";
/// Jobs a stage rejected, by stage.
pub const REJECTIONS: &str = "k8or_stage_rejections_total";
/// Messages whose last allowed attempt failed, so the next receive dead-letters them.
pub const DEAD_LETTERS: &str = "k8or_dead_letters_total";
/// Unusable messages (unreadable, wrong queue, unknown job), recorded and deleted.
pub const DISCARDED: &str = "k8or_messages_discarded_total";
/// Messages in a queue, by queue and state (`visible`, `in_flight`, `delayed`).
pub const QUEUE_MESSAGES: &str = "k8or_queue_messages";
/// Age of a queue's oldest message (0 when empty).
pub const QUEUE_OLDEST_AGE: &str = "k8or_queue_oldest_message_age_seconds";

/// Stage durations span a millisecond no-op to a minutes-long 2 GiB archive.
const STAGE_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];

/// How often the queue gauges are refreshed from `Queue::depth`.
pub const QUEUE_GAUGE_PERIOD: Duration = Duration::from_secs(5);

/// Makes the stage durations real histograms (the exporter renders summaries otherwise).
/// The API's recorder is built with this too, so both binaries expose the same series.
pub fn histogram_buckets(builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    builder.set_buckets_for_metric(Matcher::Full(STAGE_SECONDS.to_owned()), &STAGE_BUCKETS)
}

/// Describes the workers' series to whichever recorder is installed.
pub fn describe() {
    metrics::describe_counter!(JOB_TRANSITIONS, "jobs entering a status");
    metrics::describe_histogram!(
        STAGE_SECONDS,
        metrics::Unit::Seconds,
        "time one delivery took in a stage"
    );
    metrics::describe_counter!(RETRIES, "stage attempts that will be retried");
    metrics::describe_counter!(REJECTIONS, "jobs rejected by a stage");
    metrics::describe_counter!(
        DEAD_LETTERS,
        "messages whose last allowed attempt failed (dead-lettered on the next receive)"
    );
    metrics::describe_counter!(DISCARDED, "unusable messages recorded and deleted");
    metrics::describe_gauge!(QUEUE_MESSAGES, "messages in a queue by state");
    metrics::describe_gauge!(
        QUEUE_OLDEST_AGE,
        metrics::Unit::Seconds,
        "age of the queue's oldest message"
    );
}

/// Installs the process's recorder. Only the `k8or-worker` binary calls this: the API
/// installs its own, and the `metrics` facade has a single global recorder.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    let recorder = histogram_buckets(PrometheusBuilder::new())?.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    describe();
    Ok(handle)
}

/// Serves `GET /metrics` (and `GET /healthz`, the container health check of a worker
/// node) on `listener` until `stop` is cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let body = handle.render();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Binds `addr` (a `host:port` already checked by the settings).
pub async fn bind(addr: &str) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Logs as text or JSON, filtered by `RUST_LOG` (default `info`), to stderr so that a
/// command's stdout carries only what it prints.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The trace context of one stage's work on a delivery: the job's trace (a new one if the
/// message carries none, e.g. sent by an old version), with a span id of its own that the
/// next stage's message names as its parent.
pub fn stage_trace(delivery: &Delivery) -> (TraceParent, Option<TraceParent>) {
    let incoming = TraceParent::from_attributes(&delivery.attributes);
    let own = incoming.map_or_else(TraceParent::new_root, |t| t.child());
    (own, incoming)
}

/// The span of one job stage: every log line inside carries the job, image, stage, attempt,
/// PID and the trace ids, so one job reads as one trace across processes.
pub fn job_span(
    env: &JobEnvelope,
    stage: Stage,
    delivery: &Delivery,
    trace: &TraceParent,
    incoming: Option<&TraceParent>,
) -> tracing::Span {
    tracing::info_span!(
        "job",
        job.id = %env.job_id,
        image.uid = %env.image_uid,
        stage = %stage,
        pid = %stage.entry_pid(),
        attempt = delivery.receive_count,
        trace.id = %trace.trace_id_hex(),
        span.id = %trace.span_id_hex(),
        parent.id = incoming.map(TraceParent::span_id_hex).unwrap_or_default(),
    )
}

fn outcome_label(e: &Execution) -> &'static str {
    match e {
        Execution::Done { .. } => "done",
        Execution::Retrying { .. } => "retrying",
        Execution::Rejected { .. } => "rejected",
        Execution::Discarded { .. } => "discarded",
        Execution::Skipped => "skipped",
        Execution::Released => "released",
    }
}

fn transition(status: JobStatus) {
    metrics::counter!(JOB_TRANSITIONS, "status" => status.as_str()).increment(1);
}

/// Records how one delivery ended. `last_attempt`: the message has been received
/// `max_receive_count` times, so a retry means a dead letter.
pub fn record_execution(
    stage: Stage,
    execution: &Execution,
    elapsed: Duration,
    last_attempt: bool,
) {
    let s = stage.as_str();
    metrics::histogram!(STAGE_SECONDS, "stage" => s, "outcome" => outcome_label(execution))
        .record(elapsed.as_secs_f64());
    match execution {
        Execution::Done { next } => {
            transition(stage.running_status());
            if next.is_none() {
                transition(JobStatus::Published);
            }
        }
        Execution::Retrying { .. } => {
            metrics::counter!(RETRIES, "stage" => s).increment(1);
            transition(JobStatus::Retrying);
            if last_attempt {
                metrics::counter!(DEAD_LETTERS, "stage" => s).increment(1);
                transition(JobStatus::DeadLettered);
            }
        }
        Execution::Rejected { .. } => {
            transition(stage.running_status());
            metrics::counter!(REJECTIONS, "stage" => s).increment(1);
            transition(JobStatus::Rejected);
        }
        Execution::Discarded { .. } => {
            metrics::counter!(DISCARDED, "stage" => s).increment(1);
        }
        Execution::Released => transition(JobStatus::Retrying),
        Execution::Skipped => {}
    }
}

/// Registers every per-stage counter at zero, so a dashboard sees the series (and a rate of
/// zero) before the first retry or rejection happens.
fn register_zeroes(stages: &[Stage]) {
    for stage in stages {
        let s = stage.as_str();
        for name in [RETRIES, REJECTIONS, DEAD_LETTERS, DISCARDED] {
            metrics::counter!(name, "stage" => s).increment(0);
        }
    }
    for status in JobStatus::ALL {
        metrics::counter!(JOB_TRANSITIONS, "status" => status.as_str()).increment(0);
    }
}

/// The queues of `stages` and their dead-letter queues.
fn queues_of(ctx: &Context, stages: &[Stage]) -> Vec<String> {
    let mut queues = Vec::new();
    for stage in stages {
        let cfg = ctx.settings.stages.get(*stage);
        for q in [&cfg.queue, &cfg.dead_letter_queue] {
            if !queues.contains(q) {
                queues.push(q.clone());
            }
        }
    }
    queues
}

/// Sets the queue gauges now, then every `period`, until `stop` is cancelled. A failed
/// depth read leaves the last values and is logged: the stage loops report the outage.
pub async fn refresh_queue_gauges(
    ctx: Context,
    stages: Vec<Stage>,
    period: Duration,
    stop: CancellationToken,
) {
    register_zeroes(&stages);
    let queues = queues_of(&ctx, &stages);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        for queue in &queues {
            match ctx.stores.queue.depth(queue).await {
                Ok(d) => {
                    #[expect(
                        clippy::cast_precision_loss,
                        reason = "gauges are f64; queue depths stay far below 2^52"
                    )]
                    for (state, n) in [
                        ("visible", d.visible),
                        ("in_flight", d.in_flight),
                        ("delayed", d.delayed),
                    ] {
                        metrics::gauge!(QUEUE_MESSAGES, "queue" => queue.clone(), "state" => state)
                            .set(n as f64);
                    }
                    metrics::gauge!(QUEUE_OLDEST_AGE, "queue" => queue.clone())
                        .set(d.oldest_age.unwrap_or_default().as_secs_f64());
                }
                Err(e) => tracing::debug!(%queue, error = %e, "queue depth unavailable"),
            }
        }
    }
}
