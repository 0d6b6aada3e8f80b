//! A submission, from checked metadata to a queued job (seed 3.1–3.3).
//!
//! The order keeps a rejected request from leaving anything behind:
//! 1. `prepare`: the token's user, every metadata rule, the post's author, the supplied
//!    UID's owner — before a byte of the image is read, so a bad form costs nothing;
//! 2. `temp_image`: the image streams into the temporary bucket (hashed, size-capped);
//! 3. `commit`: assign a UID if none was sent, write the job record, the
//!    `temporary-image-saved` event, then enqueue the validate stage. If any step fails,
//!    what the earlier steps wrote is removed again, blob last.
//!
//! `commit` runs in a task of its own, so a client that hangs up mid-commit cannot leave a
//! job without its queue message or a blob without its job.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use k8or::audit::NewEvent;
use k8or::job::StoredImage;
use k8or::model::{check_stored_size, check_upload, EventType, FieldError, UploadRequest};
use k8or::pid::{known, Pid};
use k8or::store::Key;
use k8or::{Context, JobEnvelope, JobRecord};
use serde_json::json;
use uuid::Uuid;

use crate::auth::Caller;
use crate::data_url::drop_data_url;
use crate::error::ApiError;
use crate::post_author;
use crate::telemetry;
use crate::temp_image::delete_blob;
use crate::uid;

/// A submission whose metadata passed every check.
pub struct Prepared {
    pub job_id: Uuid,
    pub username: String,
    /// The supplied (and owned) UID; `None` means commit assigns one.
    pub uid: Option<String>,
    /// The request as it will be stored: no image bytes in it.
    pub request: UploadRequest,
}

impl Prepared {
    /// The image's key in the temporary bucket.
    pub fn temp_key(&self) -> String {
        StoredImage::temp_key_for(self.job_id)
    }
}

/// Checks the metadata: the token's username, every rule, the supplied UID's owner.
pub async fn prepare(
    ctx: &Context,
    caller: &Caller,
    mut request: UploadRequest,
) -> Result<Prepared, ApiError> {
    caller.check_username(request.user_metadata.username.as_deref())?;
    request.user_metadata.username = Some(caller.username.clone());
    let mut errors = check_upload(&request);
    let author = request.post_metadata.post_data.post_author;
    if author.is_some() {
        let users = ctx.stores.viewport.users().await?;
        errors.extend(post_author::check(caller, author, &users)?);
    }
    let uid = request.image_metadata.image_uid.clone();
    let uid_well_formed = !errors.iter().any(|e| e.field == "imageMetadata.imageUID");
    if let Some(uid) = uid.as_deref().filter(|_| uid_well_formed) {
        if !uid::belongs_to(ctx, &caller.username, uid).await? {
            errors.push(FieldError::new(
                "imageMetadata.imageUID",
                "no such image UID was assigned to you (ask for one at POST /api/v1/uids, or leave it out)",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    strip_image_bytes(&mut request);
    if let Some(too_big) = check_stored_size("metadata", &request) {
        return Err(ApiError::Validation(vec![too_big]));
    }
    Ok(Prepared {
        job_id: Uuid::now_v7(),
        username: caller.username.clone(),
        uid,
        request,
    })
}

/// The job record keeps the request, never the image: the bytes are in the bucket.
fn strip_image_bytes(request: &mut UploadRequest) {
    request.image_data = None;
    drop_data_url(&mut request.image_metadata.image);
    drop_data_url(&mut request.post_metadata.post_data.image_data);
}

/// Makes the job out of a stored image: see the module doc for the order. On failure the
/// image and whatever else was written are removed.
pub async fn commit(
    ctx: Context,
    prepared: Prepared,
    image: StoredImage,
) -> Result<JobRecord, ApiError> {
    let key = image.temp_key.clone();
    let task = tokio::spawn(async move {
        let result = commit_inner(&ctx, prepared, image).await;
        if result.is_err() {
            delete_blob(&ctx, &key).await;
        }
        result
    });
    match task.await {
        Ok(result) => result,
        // The task panicked: its clean-up did not run, so the job may be half-made. This
        // is a bug; say so, without details, and keep the cause in the log.
        Err(join) => Err(ApiError::internal(join)),
    }
}

/// What `commit_inner` has written so far, to undo in reverse.
#[derive(Default)]
struct Written {
    job: bool,
    event: bool,
}

async fn commit_inner(
    ctx: &Context,
    prepared: Prepared,
    image: StoredImage,
) -> Result<JobRecord, ApiError> {
    let Prepared {
        job_id,
        username,
        uid,
        mut request,
    } = prepared;
    let uid = match uid {
        Some(uid) => uid,
        None => {
            uid::assign(
                ctx,
                &username,
                &request.image_metadata,
                &request.user_metadata,
            )
            .await?
        }
    };
    request.image_metadata.image_uid = Some(uid.clone());
    let mut job = JobRecord::new(
        job_id,
        username.clone(),
        uid.clone(),
        request,
        image,
        Utc::now(),
    );
    // `prepare` checked it.
    job.author_checked = true;
    let mut written = Written::default();
    let result = async {
        ctx.jobs.create_unqueued(&job).await?;
        written.job = true;
        ctx.audit
            .event(NewEvent {
                username: &username,
                event_type: EventType::TemporaryImageSaved,
                pid: Pid::constant(known::TEMP_IMAGE_SAVED_EVENT),
                subject: &job_id.to_string(),
                job_id: Some(job_id),
                image_metadata: &job.request.image_metadata,
                user_metadata: &job.request.user_metadata,
                details: Some(json!({
                    "savePID": known::TEMP_IMAGE_SAVE,
                    "bucket": ctx.settings.buckets.temporary,
                    "key": job.image.temp_key,
                    "size": job.image.size,
                    "sha256": job.image.sha256,
                })),
            })
            .await?;
        written.event = true;
        ctx.enqueue(&JobEnvelope::first(&job), Duration::ZERO, BTreeMap::new())
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    if result.is_ok() {
        // Left behind (the table away), the mark only makes the monitor queue the job a
        // second time, which its stages take as the duplicate it is.
        if let Err(e) = ctx.jobs.queued(job_id).await {
            tracing::warn!(error = %e, job.id = %job_id, "could not clear the job's unqueued mark");
        }
    }
    match result {
        Ok(()) => {
            telemetry::job_submitted();
            tracing::info!(job.id = %job_id, image.uid = %uid, pid = known::TEMP_IMAGE_SAVED_EVENT, "job queued for validation");
            Ok(job)
        }
        Err(e) => {
            undo(ctx, &username, job_id, &written).await;
            Err(e)
        }
    }
}

/// Removes the job record, its index entry and its event (the blob is the caller's).
async fn undo(ctx: &Context, username: &str, job_id: Uuid, written: &Written) {
    let tables = &ctx.settings.tables;
    let mut deletes = Vec::new();
    if written.event {
        deletes.push((
            &tables.user_event_log,
            Key::with_sort(
                username,
                EventType::TemporaryImageSaved.key(&job_id.to_string()),
            ),
        ));
    }
    if written.job {
        deletes.push((
            &tables.user_jobs,
            Key::with_sort(username, job_id.to_string()),
        ));
        deletes.push((&tables.jobs, Key::partition(job_id.to_string())));
    }
    let mut job_left = false;
    for (table, key) in deletes {
        if let Err(e) = ctx.stores.tables.delete(table, &key).await {
            tracing::error!(error = %e, table, job.id = %job_id, "could not undo a half-made job");
            job_left |= table == &tables.jobs;
        }
    }
    // The mark last, and only once the job is gone: a job left behind keeps its mark, so
    // the monitor's sweep queues it (its validate then finds the upload gone and rejects
    // it) rather than it waiting, queued, for a message nobody sends.
    if written.job && !job_left {
        if let Err(e) = ctx.jobs.queued(job_id).await {
            tracing::error!(error = %e, job.id = %job_id, "could not undo a half-made job's unqueued mark");
        }
    }
}
