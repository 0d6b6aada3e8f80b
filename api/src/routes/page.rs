//! The Upload Board: `GET /` and its assets under `/board/`, built into the binary so the
//! page works with no internet and no files beside the binary.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Only this origin, no inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; \
     script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file the page is made of: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        HTML,
        include_str!("../../../board/index.html"),
    ),
    ("app.js", JS, include_str!("../../../board/app.js")),
    ("api.js", JS, include_str!("../../../board/api.js")),
    ("form.js", JS, include_str!("../../../board/form.js")),
    ("jobs.js", JS, include_str!("../../../board/jobs.js")),
    ("style.css", CSS, include_str!("../../../board/style.css")),
];

fn serve(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    responses((status = 200, description = "The Upload Board page", content_type = "text/html", body = String))
)]
pub async fn index() -> impl IntoResponse {
    let (_, content_type, body) = ASSETS[0];
    serve(content_type, body)
}

/// `GET /board/{file}`: one of the page's own files; anything else is 404.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, body)| serve(content_type, body))
        .ok_or_else(|| ApiError::NotFound(format!("no board file {file:?}")))
}
