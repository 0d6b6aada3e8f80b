//! Dead-lettered jobs (admin): list them per stage, and re-drive one job, one stage or all
//! back to their stage queues, where the job goes on. The queue walk is the core's
//! (`k8or::store::redrive`), shared with `k8or-worker dlq`.

use axum::extract::State;
use axum::Json;
use k8or::context::ATTR_JOB_ID;
use k8or::store::{peek_dead_letters, Delivery};
use k8or::{JobEnvelope, JobStatus, Stage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Caller;
use crate::docs::{JobStatusDoc, StageDoc};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;

const DEFAULT_PEEK: usize = 50;
const MAX_PEEK: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DlqQuery {
    /// Only this stage (default: every stage).
    #[param(value_type = Option<StageDoc>)]
    pub stage: Option<Stage>,
    /// Dead letters listed per stage, 1 to 100 (default 50).
    pub limit: Option<usize>,
}

/// One stage's dead-letter queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterStage {
    #[schema(value_type = StageDoc)]
    pub stage: Stage,
    pub dead_letter_queue: String,
    /// Messages waiting (visible, plus any being looked at right now).
    pub depth: u64,
    pub jobs: Vec<DeadLetteredJob>,
}

/// A dead letter and the job it carries.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetteredJob {
    pub message_id: String,
    /// `None` when the body is not a job envelope (it can still be re-driven by stage).
    pub job_id: Option<Uuid>,
    #[serde(rename = "imageUID")]
    pub image_uid: Option<String>,
    pub username: Option<String>,
    pub receive_count: u32,
    pub sent_at_ms: i64,
    /// The job's status now, if the job exists.
    #[schema(value_type = Option<JobStatusDoc>)]
    pub status: Option<JobStatus>,
    /// The job's last error.
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetters {
    pub stages: Vec<DeadLetterStage>,
}

fn stages(only: Option<Stage>) -> Vec<Stage> {
    only.map_or_else(|| Stage::ALL.to_vec(), |s| vec![s])
}

#[utoipa::path(
    get,
    path = "/api/v1/dlq",
    tag = "jobs",
    params(DlqQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Dead-lettered jobs per stage", body = DeadLetters),
        (status = 400, description = "`invalid-query`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "`backend-unavailable`", body = ErrorBody),
    )
)]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DlqQuery>,
) -> Result<Json<DeadLetters>, ApiError> {
    caller.require_admin()?;
    let limit = query.limit.unwrap_or(DEFAULT_PEEK);
    if !(1..=MAX_PEEK).contains(&limit) {
        return Err(ApiError::BadRequest {
            code: "invalid-query",
            message: format!("limit must be 1 to {MAX_PEEK}"),
        });
    }
    let ctx = &state.ctx;
    let mut out = Vec::new();
    for stage in stages(query.stage) {
        let dlq = &ctx.settings.stages.get(stage).dead_letter_queue;
        let depth = ctx.stores.queue.depth(dlq).await?;
        let letters = peek_dead_letters(ctx.stores.queue.as_ref(), dlq, limit).await?;
        let mut jobs = Vec::with_capacity(letters.len());
        for letter in letters {
            let envelope = JobEnvelope::parse(&letter.body).ok();
            let record = match &envelope {
                Some(env) => ctx.jobs.get(env.job_id).await?,
                None => None,
            };
            jobs.push(DeadLetteredJob {
                message_id: letter.message_id,
                job_id: envelope.as_ref().map(|e| e.job_id),
                image_uid: envelope.as_ref().map(|e| e.image_uid.clone()),
                username: envelope.map(|e| e.username),
                receive_count: letter.receive_count,
                sent_at_ms: letter.sent_at_ms,
                status: record.as_ref().map(|r| r.status),
                error: record.and_then(|r| r.error),
            });
        }
        out.push(DeadLetterStage {
            stage,
            dead_letter_queue: dlq.clone(),
            depth: depth.visible + depth.in_flight + depth.delayed,
            jobs,
        });
    }
    Ok(Json(DeadLetters { stages: out }))
}

/// What to re-drive: one job (in one stage or any), one stage, or everything.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedriveRequest {
    #[schema(value_type = Option<StageDoc>)]
    pub stage: Option<Stage>,
    pub job_id: Option<Uuid>,
    /// Report what would move, move nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// A message moved back (or, in a dry run, that would be).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedrivenJob {
    #[schema(value_type = StageDoc)]
    pub stage: Stage,
    pub job_id: Option<Uuid>,
    pub dead_letter_id: String,
    /// Its id in the stage queue; absent in a dry run.
    pub new_message_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedriveResponse {
    pub dry_run: bool,
    pub redriven: Vec<RedrivenJob>,
    /// Dead letters looked at and left where they were.
    pub skipped: usize,
}

/// The job a dead letter carries: its attribute, else its body.
fn job_of(body: &str, attributes: &std::collections::BTreeMap<String, String>) -> Option<Uuid> {
    attributes
        .get(ATTR_JOB_ID)
        .and_then(|id| id.parse().ok())
        .or_else(|| JobEnvelope::parse(body).ok().map(|e| e.job_id))
}

#[utoipa::path(
    post,
    path = "/api/v1/dlq/redrive",
    tag = "jobs",
    request_body = RedriveRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What was moved back (or would be, in a dry run)", body = RedriveResponse),
        (status = 400, description = "`invalid-json`", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "`jobId` is in no dead-letter queue", body = ErrorBody),
        (status = 422, description = "`validation-failed`", body = ErrorBody),
        (status = 415, description = "Not JSON (`unsupported-media-type`)", body = ErrorBody),
        (status = 503, description = "`backend-unavailable`", body = ErrorBody),
    )
)]
pub async fn redrive_dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<RedriveRequest>,
) -> Result<Json<RedriveResponse>, ApiError> {
    caller.require_admin()?;
    let ctx = &state.ctx;
    let wanted = req.job_id;
    let filter =
        move |d: &Delivery| wanted.is_none_or(|id| job_of(&d.body, &d.attributes) == Some(id));
    let mut response = RedriveResponse {
        dry_run: req.dry_run,
        redriven: Vec::new(),
        skipped: 0,
    };
    for stage in stages(req.stage) {
        let report = ctx.redrive_stage(stage, &filter, req.dry_run).await?;
        response.skipped += report.skipped;
        for moved in report.matched {
            // The job was marked re-driven before its message went back (redrive_stage).
            let job_id = JobEnvelope::parse(&moved.body).ok().map(|e| e.job_id);
            tracing::info!(stage = %stage, job.id = ?job_id, dry_run = req.dry_run, by = %caller.username, "dead letter re-driven");
            response.redriven.push(RedrivenJob {
                stage,
                job_id,
                dead_letter_id: moved.dead_letter_id,
                new_message_id: moved.new_message_id,
            });
        }
    }
    if let (Some(id), true) = (wanted, response.redriven.is_empty()) {
        return Err(ApiError::NotFound(format!(
            "job {id} is in no dead-letter queue"
        )));
    }
    Ok(Json(response))
}
