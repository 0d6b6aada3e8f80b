//! Seed phase 2: assigning an image UID (2.1–2.4).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use k8or::model::{check_image_metadata, check_stored_size, UidRequest};
use k8or::pid::known;

use crate::auth::Caller;
use crate::data_url::drop_data_url;
use crate::docs::UidRequestDoc;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::uid;
use crate::views::UidResponse;

async fn assign(
    state: &AppState,
    caller: &Caller,
    req: UidRequest,
) -> Result<UidResponse, ApiError> {
    let user = req.user_metadata.unwrap_or_default();
    caller.check_username(user.username.as_deref())?;
    // A UID request asks for a new UID; one sent along is not the caller's to choose.
    let mut image = req.image_metadata;
    image.image_uid = None;
    let mut errors = check_image_metadata(&image);
    // The events keep the metadata, not an image sent along as a data URL.
    drop_data_url(&mut image.image);
    errors.extend(check_stored_size("imageMetadata", &image));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    state.writes.take(&caller.username)?;
    let image_uid = uid::assign(&state.ctx, &caller.username, &image, &user).await?;
    Ok(UidResponse {
        pid: known::UID_REQUEST.to_owned(),
        status: "success".into(),
        message: "The image UID has been successfully assigned.".into(),
        image_uid,
    })
}

#[utoipa::path(
    post,
    path = "/api/v1/uids",
    tag = "image UID",
    request_body = UidRequestDoc,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A new UID, owned by the caller (seed 2.1)", body = UidResponse),
        (status = 400, description = "`invalid-json`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "`userMetadata.username` is not the token's", body = ErrorBody),
        (status = 413, description = "`payload-too-large`", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "`validation-failed`, with every broken rule", body = ErrorBody),
        (status = 429, description = "`rate-limited`: over the user's quota of new UIDs and jobs (`Retry-After`)", body = ErrorBody),
        (status = 503, description = "`backend-unavailable`", body = ErrorBody),
    )
)]
pub async fn create_uid(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UidRequest>,
) -> Result<(StatusCode, Json<UidResponse>), ApiError> {
    let response = assign(&state, &caller, req).await?;
    Ok((StatusCode::CREATED, Json(response)))
}

#[utoipa::path(
    post,
    path = "/upload/AssignImageUID.php",
    tag = "seed",
    request_body = UidRequestDoc,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new UID, owned by the caller (seed 2.1)", body = UidResponse),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 422, description = "`validation-failed`", body = ErrorBody),
        (status = 429, description = "`rate-limited` (`Retry-After`)", body = ErrorBody),
    )
)]
pub async fn seed_assign_uid(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UidRequest>,
) -> Result<Json<UidResponse>, ApiError> {
    assign(&state, &caller, req).await.map(Json)
}
