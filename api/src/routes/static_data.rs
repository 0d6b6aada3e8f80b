//! Seed phase 1: the dropdown options of an ICAO code (1.2, 1.3) and the users (1.4).

use axum::extract::{Path, State};
use axum::Json;
use k8or::model::StaticDataItem;
use k8or::pid::known;
use k8or::store::{Key, TablesExt};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::views::{StaticDataRequest, StaticDataResponse, UserView, UsersResponse};

/// Reads the portal-upload-static-data item of one ICAO code (c8bms06-c20bre27-e15).
async fn static_data(state: &AppState, icao: &str) -> Result<StaticDataResponse, ApiError> {
    let ctx = &state.ctx;
    let item: Option<StaticDataItem> = ctx
        .stores
        .tables
        .get_as(&ctx.settings.tables.static_data, &Key::partition(icao))
        .await?;
    let item = item.ok_or_else(|| ApiError::UnknownIcao(icao.to_owned()))?;
    tracing::debug!(pid = known::STATIC_DATA_READ, icao, "static data read");
    Ok(StaticDataResponse {
        pid: known::STATIC_DATA_REQUEST.to_owned(),
        filter_criteria: item.criteria.into(),
    })
}

/// Every `wp_users` row's ID and display name (c8bms06-c32bre03-e20).
async fn users(state: &AppState) -> Result<UsersResponse, ApiError> {
    let users = state.ctx.stores.viewport.users().await?;
    Ok(UsersResponse {
        pid: known::USERS_READ.to_owned(),
        user_data: users.into_iter().map(UserView::from).collect(),
    })
}

#[utoipa::path(
    get,
    path = "/api/v1/static-data/{icaoCode}",
    tag = "static data",
    params(("icaoCode" = String, Path, description = "The ICAO code, e.g. 1947")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The filter criteria (seed 1.2)", body = StaticDataResponse),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "`unknown-icao-code`", body = ErrorBody),
        (status = 503, description = "`backend-unavailable`", body = ErrorBody),
    )
)]
pub async fn get_static_data(
    State(state): State<AppState>,
    _caller: Caller,
    Path(icao): Path<String>,
) -> Result<Json<StaticDataResponse>, ApiError> {
    static_data(&state, &icao).await.map(Json)
}

#[utoipa::path(
    post,
    path = "/upload/GetUploadImageStaticData.php",
    tag = "seed",
    request_body = StaticDataRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The filter criteria (seed 1.2)", body = StaticDataResponse),
        (status = 400, description = "`invalid-json`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "`username` is not the token's", body = ErrorBody),
        (status = 404, description = "`unknown-icao-code`", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "`validation-failed`", body = ErrorBody),
    )
)]
pub async fn seed_static_data(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<StaticDataRequest>,
) -> Result<Json<StaticDataResponse>, ApiError> {
    caller.check_username(req.username.as_deref())?;
    static_data(&state, &req.icao_code).await.map(Json)
}

#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "static data",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user's ID and display name (seed 1.4)", body = UsersResponse),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "`backend-unavailable`", body = ErrorBody),
    )
)]
pub async fn list_users(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<UsersResponse>, ApiError> {
    users(&state).await.map(Json)
}

#[utoipa::path(
    get,
    path = "/upload/GetUserDataViewPort.php",
    tag = "seed",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every user's ID and display name (seed 1.4)", body = UsersResponse),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn seed_users(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<UsersResponse>, ApiError> {
    users(&state).await.map(Json)
}
