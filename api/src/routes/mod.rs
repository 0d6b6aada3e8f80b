//! The router: every route registered once, through the OpenAPI router, so the document
//! and the routes served are the same list; then the layers every request passes.

mod dlq;
mod health;
mod jobs;
mod page;
mod static_data;
mod uids;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::{middleware, Extension, Router};
use k8or::config::Limits;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::docs::ApiDoc;
use crate::envelope::envelope;
use crate::error::ApiError;
use crate::request_id;
use crate::state::AppState;
use crate::telemetry;

pub use health::OpenApiJson;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Room for the multipart framing and the metadata part around the image.
const MULTIPART_OVERHEAD: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("invalid config key `limits.cors_origins`: {0:?} is not a valid origin")]
    BadOrigin(String),
}

/// Every route, and the OpenAPI document that lists them.
pub fn api(limits: &Limits) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(page::index))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi_json))
        .routes(routes!(static_data::get_static_data))
        .routes(routes!(static_data::list_users))
        .routes(routes!(static_data::seed_static_data))
        .routes(routes!(static_data::seed_users))
        .routes(routes!(uids::create_uid))
        .routes(routes!(uids::seed_assign_uid))
        .routes(upload_limits(routes!(jobs::submit_job), limits))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(dlq::list_dead_letters))
        .routes(routes!(dlq::redrive_dead_letters))
        .split_for_parts()
}

/// The submit route takes uploads of up to `upload_max_bytes`: no JSON cap (the handler
/// applies it to the JSON form itself) and a hard cap on the whole body.
fn upload_limits(
    (schemas, paths, router): UtoipaMethodRouter<AppState>,
    limits: &Limits,
) -> UtoipaMethodRouter<AppState> {
    let cap = limits
        .upload_max_bytes
        .saturating_add(limits.json_max_bytes)
        .saturating_add(MULTIPART_OVERHEAD);
    let router = router
        .layer::<_, std::convert::Infallible>(RequestBodyLimitLayer::new(
            usize::try_from(cap).unwrap_or(usize::MAX),
        ))
        .layer(DefaultBodyLimit::disable());
    (schemas, paths, router)
}

/// The application: routes, the document, and the layers.
pub fn router(state: AppState) -> Result<Router, RouterError> {
    let limits = state.ctx.settings.limits.clone();
    let (routes, doc) = api(&limits);
    let doc = OpenApiJson(Arc::new(
        doc.to_pretty_json()
            .expect("the OpenAPI document always serializes"),
    ));
    let cors = cors(&limits.cors_origins)?;
    let layers = ServiceBuilder::new()
        .layer(middleware::map_request(request_id::screen))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .option_layer(cors)
        .layer(middleware::from_fn(telemetry::track))
        .layer(middleware::from_fn_with_state(state.clone(), envelope))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs.max(1)),
        ))
        .layer(DefaultBodyLimit::max(
            usize::try_from(limits.json_max_bytes).unwrap_or(usize::MAX),
        ));
    Ok(routes
        .route("/board/{file}", axum::routing::get(page::asset))
        .fallback(fallback)
        .layer(Extension(doc))
        .layer(layers)
        .with_state(state))
}

async fn fallback(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// CORS for the configured origins; none configured means same-origin only.
fn cors(origins: &[String]) -> Result<Option<CorsLayer>, RouterError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|_| RouterError::BadOrigin(o.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
            .expose_headers([REQUEST_ID, header::LOCATION])
            .max_age(Duration::from_secs(600)),
    ))
}
