//! What the stages share: the job's metadata as stored items carry it, event writing, and
//! the keys under which stages leave their results in `job.outputs`.

use k8or::audit::NewEvent;
use k8or::model::{EventType, ImageMetadata, UserMetadata};
use k8or::{Context, JobRecord, Pid};
use serde_json::Value;

use crate::runner::StageError;

/// `job.outputs` key of the validate stage's result (kind, format, sizes, object key).
pub const VALIDATION: &str = "validation";
/// `job.outputs` key of the persist-metadata stage's result.
pub const METADATA: &str = "metadata";
/// `job.outputs` key of the kustomize stage's result (prefix, files, manifests).
pub const KUSTOMIZATION: &str = "kustomization";
/// `job.outputs` key of the publish stage's result (post id, slug, URL).
pub const POST: &str = "post";

/// Where the validated image was stored, once the validate stage has run.
pub fn object_key(job: &JobRecord) -> Option<String> {
    job.outputs
        .get(VALIDATION)?
        .get("objectKey")?
        .as_str()
        .map(str::to_owned)
}

/// The job's `imageMetadata` as items and events store it: the job's image UID (the one
/// the intake assigned), and the stored object's key instead of any image bytes.
pub fn stored_metadata(job: &JobRecord) -> ImageMetadata {
    let mut m = job.request.image_metadata.clone();
    m.image_uid = Some(job.image_uid.clone());
    m.image = object_key(job);
    m
}

/// The job's `userMetadata`, with the job's (authenticated) username.
pub fn user_metadata(job: &JobRecord) -> UserMetadata {
    UserMetadata {
        username: Some(job.username.clone()),
        ..job.request.user_metadata.clone()
    }
}

/// Writes one event of the job (once: a re-run finds it and writes nothing).
pub async fn record_event(
    ctx: &Context,
    job: &JobRecord,
    event_type: EventType,
    pid: &'static str,
    details: Option<Value>,
) -> Result<bool, StageError> {
    let subject = job.job_id.to_string();
    let image_metadata = stored_metadata(job);
    let user_metadata = user_metadata(job);
    Ok(ctx
        .audit
        .event(NewEvent {
            username: &job.username,
            event_type,
            pid: Pid::constant(pid),
            subject: &subject,
            job_id: Some(job.job_id),
            image_metadata: &image_metadata,
            user_metadata: &user_metadata,
            details,
        })
        .await?)
}
