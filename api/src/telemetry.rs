//! Prometheus metrics: requests by route and status, request durations, upload bytes and
//! submitted jobs; in embedded mode also the in-process workers' series
//! (`k8or_workers::telemetry`). The recorder is process-wide (the `metrics` facade has one
//! global), so it is installed once and every `Application` in the process shares its handle.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "k8or_http_requests_total";
pub const REQUEST_SECONDS: &str = "k8or_http_request_duration_seconds";
pub const UPLOAD_BYTES: &str = "k8or_upload_bytes_total";
pub const JOBS_SUBMITTED: &str = "k8or_jobs_submitted_total";
pub const ERRORS_UNRECORDED: &str = "k8or_errors_unrecorded_total";

/// The process's Prometheus handle, installing the recorder on first use.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // The embedded workers run in this process and record into this recorder.
            let builder = k8or_workers::telemetry::histogram_buckets(PrometheusBuilder::new())
                .expect("the stage duration buckets are a fixed, non-empty list");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "another metrics recorder was installed first; /metrics will show none of this API's series"
                );
            }
            metrics::describe_counter!(REQUESTS, "HTTP requests by method, route and status");
            metrics::describe_histogram!(REQUEST_SECONDS, "HTTP request durations");
            metrics::describe_counter!(UPLOAD_BYTES, "image bytes received");
            metrics::describe_counter!(JOBS_SUBMITTED, "jobs queued for validation");
            metrics::describe_counter!(
                ERRORS_UNRECORDED,
                "anonymous error responses over the minute's budget of user-error-log items"
            );
            k8or_workers::telemetry::describe();
            handle
        })
        .clone()
}

/// The method's label: one of HTTP's own, else `OTHER` (a client may send any token as a
/// method, and each new label value would be a new series kept for ever).
fn method_label(method: &Method) -> &'static str {
    const HTTP: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    HTTP.into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("OTHER")
}

/// Counts and times every request. The route label is the route's pattern
/// (`/api/v1/jobs/{jobId}`), never the raw path, and the method one of HTTP's own, so the
/// label set stays small.
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(req.method());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(REQUEST_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

pub fn upload_bytes(n: usize) {
    metrics::counter!(UPLOAD_BYTES).increment(n as u64);
}

pub fn error_unrecorded() {
    metrics::counter!(ERRORS_UNRECORDED).increment(1);
}

pub fn job_submitted() {
    metrics::counter!(JOBS_SUBMITTED).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_https_own_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let odd = Method::from_bytes(b"RANDxyz").unwrap();
        assert_eq!(method_label(&odd), "OTHER");
    }
}
