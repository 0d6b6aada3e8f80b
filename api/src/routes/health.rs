//! Liveness, readiness, metrics and the OpenAPI document: the routes without a token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use k8or::store::Key;
use k8or::Stage;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::views::{Health, Readiness};

/// How long one backend may take to answer a readiness check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Every backend answered", body = Readiness),
        (status = 503, description = "A backend did not answer", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let ctx = &state.ctx;
    let queue = &ctx.settings.stages.get(Stage::Validate).queue;
    let table = &ctx.settings.tables.static_data;
    let probe = Key::partition("readyz");
    let (q, t, v) = tokio::join!(
        check(ctx.stores.queue.depth(queue)),
        check(ctx.stores.tables.get(table, &probe)),
        check(ctx.stores.viewport.ping()),
    );
    let mut checks = BTreeMap::new();
    let mut failed = Vec::new();
    for (name, result) in [("queue", q), ("tables", t), ("viewport", v)] {
        match result {
            Ok(()) => {
                checks.insert(name.to_owned(), "ok".to_owned());
            }
            Err(e) => {
                tracing::warn!(backend = name, error = %e, "readiness check failed");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() {
        Ok(Json(Readiness {
            status: "ready".into(),
            checks,
        }))
    } else {
        Err(ApiError::NotReady(failed))
    }
}

async fn check<T, E: std::fmt::Display>(
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer in {CHECK_TIMEOUT:?}")),
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// The OpenAPI document, serialized once at start.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
}
