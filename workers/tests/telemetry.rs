//! The workers' observability on the embedded backend: a job run through every stage shows
//! in the worker's `/metrics`, and the job's trace id crosses the queue from stage to stage.

#[path = "../../tests/support/fixtures.rs"]
mod fixtures;
#[path = "../../tests/support/pipeline.rs"]
mod pipeline;

use std::net::SocketAddr;
use std::time::Duration;

use k8or::context::{TraceParent, ATTR_TRACEPARENT};
use k8or::{JobStatus, Stage};
use k8or_workers::{telemetry, Execution};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// `GET /metrics` over a plain connection: the body, after the headers.
async fn scrape(addr: SocketAddr) -> String {
    let mut conn = TcpStream::connect(addr).await.expect("connect to /metrics");
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: worker\r\nConnection: close\r\n\r\n")
        .await
        .expect("send the request");
    let mut raw = String::new();
    conn.read_to_string(&mut raw)
        .await
        .expect("read the response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    body.to_owned()
}

fn has_series(text: &str, name: &str, label: &str) -> bool {
    text.lines()
        .any(|l| l.starts_with(name) && !l.starts_with('#') && l.contains(label))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_job_shows_in_the_worker_metrics() {
    let handle = telemetry::install_recorder().expect("the only recorder of this process");
    let (listener, addr) = telemetry::bind("127.0.0.1:0").await.expect("bind");
    let stop = CancellationToken::new();
    let server = tokio::spawn(telemetry::serve_metrics(listener, handle, stop.clone()));

    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let uid = pipeline::new_uid();
    let request = pipeline::request(&uid, "Metrics Movie", "v0-0-01");
    let job = pipeline::submit(&ctx, request, fixtures::png(32, 24), "image/png").await;
    let workers = tokio::spawn(k8or_workers::run(
        ctx.clone(),
        &Stage::ALL,
        stop.clone().cancelled_owned(),
    ));
    let mut status = JobStatus::Queued;
    for _ in 0..600 {
        status = pipeline::job(&ctx, job.job_id).await.status;
        if status.is_final() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, JobStatus::Published);
    let text = scrape(addr).await;
    stop.cancel();
    workers
        .await
        .expect("join")
        .expect("the loops stop cleanly");
    server
        .await
        .expect("join")
        .expect("the server stops cleanly");

    assert!(
        has_series(&text, telemetry::JOB_TRANSITIONS, "status=\"published\"} 1"),
        "{text}"
    );
    assert!(
        has_series(
            &text,
            telemetry::JOB_TRANSITIONS,
            "status=\"validating\"} 1"
        ),
        "{text}"
    );
    for stage in Stage::ALL {
        let label = format!("stage=\"{stage}\"");
        let bucket = format!("{}_bucket", telemetry::STAGE_SECONDS);
        assert!(
            has_series(&text, &bucket, &label),
            "{bucket} {label}\n{text}"
        );
        for name in [
            telemetry::RETRIES,
            telemetry::REJECTIONS,
            telemetry::DEAD_LETTERS,
            telemetry::DISCARDED,
        ] {
            assert!(has_series(&text, name, &label), "{name} {label}\n{text}");
        }
        let cfg = ctx.settings.stages.get(stage);
        for queue in [&cfg.queue, &cfg.dead_letter_queue] {
            let q = format!("queue=\"{queue}\"");
            assert!(
                has_series(&text, telemetry::QUEUE_MESSAGES, &q),
                "{queue}\n{text}"
            );
            assert!(
                has_series(&text, telemetry::QUEUE_OLDEST_AGE, &q),
                "{queue}\n{text}"
            );
        }
    }
    assert!(text.contains(&format!("# TYPE {} histogram", telemetry::STAGE_SECONDS)));
}

#[tokio::test]
async fn the_trace_id_made_at_submission_crosses_every_queue() {
    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let uid = pipeline::new_uid();
    let request = pipeline::request(&uid, "Traced Movie", "v0-0-01");
    pipeline::submit(&ctx, request, fixtures::png(16, 16), "image/png").await;
    let first = pipeline::receive(&ctx, Stage::Validate).await;
    let root = TraceParent::from_attributes(&first.attributes)
        .unwrap_or_else(|| panic!("no traceparent in {:?}", first.attributes));
    let mut delivery = first;
    let mut parents = vec![root.parent_id];
    for stage in Stage::ALL {
        let out = k8or_workers::try_execute(&ctx, stage, &delivery).await;
        let Some(next) = stage.next() else {
            assert_eq!(out, Execution::Done { next: None });
            break;
        };
        assert_eq!(out, Execution::Done { next: Some(next) });
        delivery = pipeline::receive(&ctx, next).await;
        let trace = TraceParent::from_attributes(&delivery.attributes)
            .unwrap_or_else(|| panic!("no {ATTR_TRACEPARENT} on the {next} message"));
        assert_eq!(trace.trace_id, root.trace_id, "the {next} message");
        assert!(
            !parents.contains(&trace.parent_id),
            "each stage names its own span as the parent"
        );
        parents.push(trace.parent_id);
    }
}
