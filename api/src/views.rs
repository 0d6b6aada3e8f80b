//! Request and response bodies the API owns (the seed's response shapes, and the job view).

use chrono::{DateTime, Utc};
use k8or::job::HistoryEntry;
use k8or::model::FilterCriteria;
use k8or::store::WpUser;
use k8or::{JobRecord, JobStatus, Stage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::docs::{HistoryDoc, JobStatusDoc, StageDoc};

/// Seed 1.2's request to `/upload/GetUploadImageStaticData.php`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct StaticDataRequest {
    #[serde(rename = "PID", default)]
    #[schema(example = "c8fms03-c8bms06-e10")]
    pub pid: Option<String>,
    #[serde(rename = "ICAOCode")]
    #[schema(example = "1947")]
    pub icao_code: String,
    /// If sent, it must be the token's username.
    #[serde(default)]
    #[schema(example = "jamesbond")]
    pub username: Option<String>,
}

/// Seed 1.2's response: the dropdown options of one ICAO code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StaticDataResponse {
    #[serde(rename = "PID")]
    #[schema(example = "c8fms03-c8bms06-e10")]
    pub pid: String,
    pub filter_criteria: FilterCriteriaView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FilterCriteriaView {
    #[serde(rename = "ICAOCode")]
    pub icao_code: String,
    #[serde(rename = "aircraftTailNumber")]
    pub aircraft_tail_number: Vec<String>,
    #[serde(rename = "imageCategory")]
    pub image_category: Vec<String>,
    #[serde(rename = "partNumber")]
    pub part_number: Vec<String>,
}

impl From<FilterCriteria> for FilterCriteriaView {
    fn from(c: FilterCriteria) -> Self {
        Self {
            icao_code: c.icao_code,
            aircraft_tail_number: c.aircraft_tail_number,
            image_category: c.image_category,
            part_number: c.part_number,
        }
    }
}

/// Seed 1.4's response: every user's ID and display name.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsersResponse {
    #[serde(rename = "PID")]
    #[schema(example = "c8bms06-c32bre03-e20")]
    pub pid: String,
    pub user_data: Vec<UserView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    #[serde(rename = "ID")]
    #[schema(example = 2)]
    pub id: u64,
    #[schema(example = "James Bond")]
    pub display_name: String,
}

impl From<WpUser> for UserView {
    fn from(u: WpUser) -> Self {
        Self {
            id: u.id,
            display_name: u.display_name,
        }
    }
}

/// Seed 2.1's response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UidResponse {
    #[serde(rename = "PID")]
    #[schema(example = "c8fms03-c8bms06-e25")]
    pub pid: String,
    #[schema(example = "success")]
    pub status: String,
    #[schema(example = "The image UID has been successfully assigned.")]
    pub message: String,
    #[serde(rename = "imageUID")]
    #[schema(example = "Het5SfSA6NJdRVdhTUhwev9A528QH4gwdJQMSA857PStLeyRnpGffDpDMJq5")]
    pub image_uid: String,
}

/// What the intake stored of the image.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageView {
    pub size: u64,
    /// Lowercase hex sha256 of the stored bytes.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_content_type: Option<String>,
}

/// A job, as the Upload Board polls it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: Uuid,
    #[serde(rename = "imageUID")]
    pub image_uid: String,
    pub username: String,
    /// The image's name and version, as submitted (so a list of jobs can name them).
    pub image_name: String,
    pub image_version: String,
    #[schema(value_type = JobStatusDoc)]
    pub status: JobStatus,
    #[schema(value_type = Option<StageDoc>)]
    pub stage: Option<Stage>,
    pub attempt: u32,
    /// Where to poll this job.
    #[schema(example = "/api/v1/jobs/0190c6f2-7c1e-7000-8000-000000000000")]
    pub status_url: String,
    #[schema(value_type = Vec<HistoryDoc>)]
    pub history: Vec<HistoryEntry>,
    /// Why the job was rejected, or why its stage is retrying or dead-lettered: to a user
    /// token, a backend's error (retrying, dead-lettered) reads only "failed … on our
    /// side"; admins read the cause.
    pub error: Option<String>,
    /// Every failed check of a rejection, or the causes of a dead letter (admins only).
    pub reasons: Vec<String>,
    pub image: ImageView,
    /// What the stages produced: object keys, manifests, the post id and link.
    #[schema(value_type = Object)]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn status_url(job_id: Uuid) -> String {
    format!("/api/v1/jobs/{job_id}")
}

impl From<JobRecord> for JobView {
    fn from(job: JobRecord) -> Self {
        Self {
            status_url: status_url(job.job_id),
            job_id: job.job_id,
            image_uid: job.image_uid,
            username: job.username,
            image_name: job.request.image_metadata.image_name,
            image_version: job.request.image_metadata.image_version,
            status: job.status,
            stage: job.stage,
            attempt: job.attempt,
            history: job.history,
            error: job.error,
            reasons: job.reasons,
            image: ImageView {
                size: job.image.size,
                sha256: job.image.sha256,
                file_name: job.image.file_name,
                declared_content_type: job.image.declared_content_type,
            },
            outputs: job.outputs,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

impl JobView {
    /// The job as its viewer may see it. An admin sees everything. A user sees why their
    /// upload was rejected (their own input), but not the backend errors behind a retry or
    /// a dead letter: those carry table, bucket and host names and drivers' messages, and
    /// are for operators (`k8or-worker dlq list`, user-error-log, the workers' logs), as the
    /// API's own 500s never show their cause.
    pub fn for_viewer(job: JobRecord, admin: bool) -> Self {
        let mut view = Self::from(job);
        if !admin {
            view.hide_backend_errors();
        }
        view
    }

    fn hide_backend_errors(&mut self) {
        for entry in &mut self.history {
            if entry.error.is_some() && entry.status != JobStatus::Rejected {
                entry.error = Some(backend_failure(entry.status));
            }
        }
        if self.error.is_some() && self.status != JobStatus::Rejected {
            self.error = Some(backend_failure(self.status));
            self.reasons.clear();
        }
    }
}

/// What a user reads in place of a backend error.
fn backend_failure(status: JobStatus) -> String {
    let what = "the stage failed for a reason on our side, not in the upload";
    match status {
        JobStatus::DeadLettered => {
            format!("{what}; it stopped retrying, and an operator can re-drive it")
        }
        _ => format!("{what}; it is retried"),
    }
}

/// One page of jobs, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// Jobs per page, 1 to 100 (default 20).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Admins only: whose jobs to list (default: the caller's).
    pub username: Option<String>,
}

/// Liveness.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// Readiness: each backend's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` when every check passed.
    #[schema(example = "ready")]
    pub status: String,
    /// Per backend (`queue`, `tables`, `viewport`): `ok` or what failed.
    pub checks: std::collections::BTreeMap<String, String>,
}
