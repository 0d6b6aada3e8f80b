//! Jobs: submit an upload (seed 3.1–3.3 and the UploadImage payload of 6.1), follow it.
//!
//! Another user's job answers 404, as a job that does not exist: a user cannot learn
//! which job ids are taken. Admins see every job.

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use k8or::job::StoredImage;
use k8or::model::{FieldError, UploadRequest};
use uuid::Uuid;

use crate::auth::Caller;
use crate::data_url;
use crate::docs::{SubmitForm, UploadRequestDoc};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{content_type, is_json, is_multipart, parse_json, ApiQuery};
use crate::intake::{self, Prepared};
use crate::state::AppState;
use crate::temp_image::{self, multipart_error, Declared, Unclaimed};
use crate::views::{JobListQuery, JobPage, JobView};

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    tag = "jobs",
    request_body(
        description = "The UploadImage payload and the image: as `multipart/form-data` (a `metadata` \
                       JSON part, then the `image` file part, streamed) or as `application/json` \
                       with the image as a base64 `data:` URL in `imageData` (small images).",
        content(
            (SubmitForm = "multipart/form-data"),
            (UploadRequestDoc = "application/json"),
        )
    ),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Stored and queued for validation", body = JobView,
         headers(("Location" = String, description = "The job's status URL"))),
        (status = 400, description = "`invalid-json`, `invalid-multipart`", body = ErrorBody),
        (status = 401, description = "`unauthorized`, `token-expired`", body = ErrorBody),
        (status = 403, description = "`userMetadata.username` is not the token's", body = ErrorBody),
        (status = 408, description = "`request-timeout`: the upload took longer than `limits.request_timeout_secs`", body = ErrorBody),
        (status = 409, description = "`conflict`: no free image UID after repeated draws", body = ErrorBody),
        (status = 413, description = "`payload-too-large`", body = ErrorBody),
        (status = 415, description = "`unsupported-media-type`", body = ErrorBody),
        (status = 422, description = "`validation-failed` (every broken rule in `details`), `invalid-data-url`, `empty-image`", body = ErrorBody),
        (status = 429, description = "`rate-limited`: over the user's quota of new UIDs and jobs (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "`backend-unavailable`", body = ErrorBody),
    )
)]
pub async fn submit_job(
    State(state): State<AppState>,
    caller: Caller,
    req: Request,
) -> Result<(StatusCode, [(header::HeaderName, String); 1], Json<JobView>), ApiError> {
    let (prepared, image) = if is_multipart(req.headers()) {
        from_multipart(&state, &caller, req).await?
    } else if is_json(req.headers()) {
        from_json(&state, &caller, req).await?
    } else {
        return Err(ApiError::unsupported_media_type(
            "multipart/form-data or application/json",
            content_type(req.headers()),
        ));
    };
    let job = intake::commit(state.ctx.clone(), prepared, image).await?;
    let view = JobView::for_viewer(job, caller.is_admin());
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, view.status_url.clone())],
        Json(view),
    ))
}

/// `metadata` first (checked before the image is read), then `image`, streamed.
async fn from_multipart(
    state: &AppState,
    caller: &Caller,
    req: Request,
) -> Result<(Prepared, StoredImage), ApiError> {
    let ctx = &state.ctx;
    let mut multipart =
        Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::BadRequest {
                code: "invalid-multipart",
                message: e.body_text(),
            })?;
    let field = multipart
        .next_field()
        .await
        .map_err(multipart_error)?
        .ok_or_else(|| missing("metadata", "the UploadImage JSON, as the first part"))?;
    expect_part(field.name(), "metadata")?;
    let json = read_small_part(field, ctx.settings.limits.json_max_bytes).await?;
    let request: UploadRequest = parse_json(&json)?;
    let prepared = intake::prepare(ctx, caller, request).await?;
    // A request that passed its checks takes from the quota, before its image is read.
    state.writes.take(&caller.username)?;

    let field = multipart
        .next_field()
        .await
        .map_err(multipart_error)?
        .ok_or_else(|| missing("image", "the file, as the part after `metadata`"))?;
    expect_part(field.name(), "image")?;
    let declared = Declared {
        content_type: field.content_type().map(str::to_owned),
        file_name: field.file_name().map(str::to_owned),
    };
    check_declared(&declared, "image.contentType")?;
    let unclaimed = Unclaimed::new(ctx, &prepared);
    let image = temp_image::store_field(ctx, &prepared, field, declared).await?;
    // A part after the image would be silently lost: refuse it, and the stored image.
    let trailing = match multipart.next_field().await {
        Ok(None) => {
            // No await from here to the job's commit task: the image cannot be dropped.
            unclaimed.claim();
            return Ok((prepared, image));
        }
        Ok(Some(field)) => ApiError::BadRequest {
            code: "invalid-multipart",
            message: format!(
                "unexpected part {:?} after `image`: send `metadata`, then `image`, nothing else",
                field.name().unwrap_or("")
            ),
        },
        Err(e) => multipart_error(e),
    };
    temp_image::delete_blob(ctx, &image.temp_key).await;
    unclaimed.claim();
    Err(trailing)
}

/// Longest file name or content type kept from the image part's headers (a file name's
/// limit on Linux; both go into the job record).
const DECLARED_MAX: usize = 255;

/// The image's declared name and type are stored with the job and on the object: bounded,
/// as the metadata is, before a byte of the image is stored. `type_field`: where the type
/// came from (the image part's header, or the JSON form's data URL).
fn check_declared(declared: &Declared, type_field: &str) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = [
        ("image.filename", &declared.file_name),
        (type_field, &declared.content_type),
    ]
    .into_iter()
    .filter_map(|(field, value)| {
        let len = value.as_deref().map_or(0, str::len);
        (len > DECLARED_MAX).then(|| {
            FieldError::new(
                field,
                format!("must be at most {DECLARED_MAX} bytes (got {len})"),
            )
        })
    })
    .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn missing(part: &str, what: &str) -> ApiError {
    ApiError::Validation(vec![FieldError::new(part, format!("is required: {what}"))])
}

fn expect_part(name: Option<&str>, want: &str) -> Result<(), ApiError> {
    if name == Some(want) {
        Ok(())
    } else {
        Err(ApiError::BadRequest {
            code: "invalid-multipart",
            message: format!(
                "expected the `{want}` part here, got {:?}: send `metadata` (JSON), then `image` (the file)",
                name.unwrap_or("")
            ),
        })
    }
}

/// Reads a part that must be small (the metadata JSON), refusing more than `limit` bytes.
async fn read_small_part(
    mut field: axum::extract::multipart::Field<'_>,
    limit: u64,
) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge { limit: Some(limit) });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The seed's JSON with the image as a `data:` URL in `imageData`, under the JSON cap.
async fn from_json(
    state: &AppState,
    caller: &Caller,
    req: Request,
) -> Result<(Prepared, StoredImage), ApiError> {
    let ctx = &state.ctx;
    let limit = ctx.settings.limits.json_max_bytes;
    let body = axum::body::to_bytes(
        req.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    )
    .await
    .map_err(|e| {
        if is_length_limit(&e) {
            ApiError::PayloadTooLarge { limit: Some(limit) }
        } else {
            ApiError::BadRequest {
                code: "bad-request",
                message: format!("reading the body failed: {e}"),
            }
        }
    })?;
    let mut request: UploadRequest = parse_json(&body)?;
    drop(body);
    let url = request.image_data.take();
    let missing_image = || {
        FieldError::new(
            "imageData",
            "is required in the JSON form: the image as a base64 data: URL",
        )
    };
    let prepared = match intake::prepare(ctx, caller, request).await {
        Ok(p) => p,
        Err(ApiError::Validation(mut errors)) if url.is_none() => {
            errors.push(missing_image());
            return Err(ApiError::Validation(errors));
        }
        Err(e) => return Err(e),
    };
    let url = url.ok_or_else(|| ApiError::Validation(vec![missing_image()]))?;
    let decoded = data_url::parse(&url).map_err(|e| ApiError::InvalidDataUrl(e.to_string()))?;
    drop(url);
    let declared = Declared {
        content_type: decoded.media_type,
        file_name: None,
    };
    check_declared(&declared, "imageData")?;
    state.writes.take(&caller.username)?;
    let unclaimed = Unclaimed::new(ctx, &prepared);
    let image = temp_image::store_bytes(ctx, &prepared, decoded.bytes, declared).await?;
    unclaimed.claim();
    Ok((prepared, image))
}

/// Whether a body error is a size cap (tower-http's limit layer, or `to_bytes`' limit).
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = err.source();
    }
    false
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{jobId}",
    tag = "jobs",
    params(("jobId" = Uuid, Path, description = "The job id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The job's status and history", body = JobView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such job, or another user's (`not-found`)", body = ErrorBody),
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let not_found = || ApiError::NotFound(format!("no job {job_id:?}"));
    let id: Uuid = job_id.parse().map_err(|_| not_found())?;
    let job = state
        .ctx
        .jobs
        .get(id)
        .await?
        .filter(|job| caller.is_admin() || job.username == caller.username)
        .ok_or_else(not_found)?;
    Ok(Json(JobView::for_viewer(job, caller.is_admin())))
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    params(JobListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's jobs, newest first", body = JobPage),
        (status = 400, description = "`invalid-query`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "`username` of another user, without the admin role", body = ErrorBody),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<JobListQuery>,
) -> Result<Json<JobPage>, ApiError> {
    let username = match query.username {
        Some(u) if u != caller.username => {
            caller.require_admin()?;
            u
        }
        _ => caller.username.clone(),
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid-query",
            message: format!("limit must be 1 to {MAX_PAGE}"),
        });
    }
    let (jobs, next) = state
        .ctx
        .jobs
        .list_for_user(&username, limit, query.cursor)
        .await?;
    Ok(Json(JobPage {
        jobs: jobs
            .into_iter()
            .map(|job| JobView::for_viewer(job, caller.is_admin()))
            .collect(),
        next,
    }))
}
