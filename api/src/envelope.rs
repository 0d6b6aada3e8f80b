//! The one place errors are rendered and recorded (seed 1.5, 2.5, 3.7).
//!
//! Runs around every route: an error response — a handler's `ApiError`, a layer's 413 or
//! 408, the router's 404 or 405 — gets the fixed body with the PID of the service that
//! failed, and an item in the user-error-log table under the token's username (or
//! `anonymous`), keyed by the request id.
//!
//! Anyone can make errors without a token, and each would be a table write under one
//! partition key: at most `limits.anonymous_errors_per_minute` of them are recorded per
//! process and minute. A user's errors are recorded up to `limits.user_errors_per_minute`
//! per process (a token is no licence to fill the table either). The rest are only counted
//! (`k8or_errors_unrecorded_total`) and traced, as every request is, and so are a user's
//! requests refused as `rate-limited`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use k8or::audit::NewError;
use k8or::pid::{known, Pid};

use crate::error::ErrorReport;
use crate::request_id;
use crate::state::AppState;
use crate::telemetry;

/// Routes whose failures are not user errors (probes and scrapes would flood the log).
const UNLOGGED: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The error PID of the service a route stands for: the image path is the validator's
/// (`c12bms03`), everything else the Portal Upload Logic's (`c8bms06`).
pub fn error_pid(method: &Method, route: &str) -> Pid {
    if method == Method::POST && route == "/api/v1/jobs" {
        Pid::constant(known::VALIDATOR_ERROR)
    } else {
        Pid::constant(known::UPLOAD_LOGIC_ERROR)
    }
}

pub async fn envelope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    // The error log's key: the request's id, unless the client chose it (and may reuse it).
    let error_id = if req.extensions().get::<request_id::FromClient>().is_some() {
        uuid::Uuid::now_v7().to_string()
    } else {
        request_id.clone()
    };
    let username = state.keys.username_of(req.headers());

    let mut response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let report = response
        .extensions_mut()
        .remove::<ErrorReport>()
        .unwrap_or_else(|| ErrorReport::from_status(status));
    let route = route.as_deref().unwrap_or("unmatched");
    let pid = error_pid(&method, route);
    if !UNLOGGED.contains(&route) {
        // A refusal for going too fast is not written for every request it refuses.
        let budget = report.code != "rate-limited" && state.errors.take(username.as_deref());
        if budget {
            record(
                &state,
                &report,
                pid,
                username.as_deref(),
                &error_id,
                &request_id,
            )
            .await;
        } else {
            telemetry::error_unrecorded();
        }
    }
    let mut rendered = report.render(pid);
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rendered
}

async fn record(
    state: &AppState,
    report: &ErrorReport,
    pid: Pid,
    username: Option<&str>,
    error_id: &str,
    request_id: &str,
) {
    let reasons = report.details.iter().map(ToString::to_string).collect();
    let written = state
        .ctx
        .audit
        .error(NewError {
            username: username.unwrap_or("anonymous"),
            error_type: report.code,
            pid,
            subject: error_id,
            job_id: None,
            stage: None,
            message: &report.message,
            reasons,
            attempts: None,
            request_id: Some(request_id),
        })
        .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, code = report.code, "could not write the error to the user-error-log table");
    }
}
