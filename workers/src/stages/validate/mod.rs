//! validate (seed 3.4–3.6): the upload is read once as a stream, its kind detected by
//! content, and checked in full. Valid: moved to the app-image bucket as
//! `<imageUID>-<imageVersion>.<ext>` and an `image-validated` event written. Invalid:
//! rejected with every failed check, and nothing kept.

pub mod archive;
pub mod checks;
pub mod detect;
pub mod inspect;
pub mod layout;
pub mod metered;
pub mod picture;

use async_trait::async_trait;
use k8or::model::{EventType, ImageVersion};
use k8or::pid::known;
use k8or::store::blobs::check_key;
use k8or::{Context, JobEnvelope, JobRecord, Pid, Stage};
use serde_json::json;
use tokio_util::io::{StreamReader, SyncIoBridge};
use tracing::{info, instrument};

use self::checks::{Check, Problems};
use self::inspect::{inspect, Inspection, Verified};
use super::common::{self, record_event};
use crate::runner::{Outcome, StageError, StageHandler};

pub struct Validate;

/// Every extension a stored object can have.
const EXTENSIONS: [&str; 5] = ["png", "jpg", "gif", "webp", "tar"];

/// The stored object's key.
pub fn object_key(image_uid: &str, image_version: &str, extension: &str) -> String {
    format!("{image_uid}-{image_version}.{extension}")
}

/// Where the upload is read from: the temporary bucket, or, when a run already moved it
/// there before it could finish, the app-image bucket.
struct Source {
    bucket: String,
    key: String,
    temporary: bool,
}

/// The job's upload, read and inspected: from the temporary bucket (its key is the job's
/// own), or else from the app-image bucket where an earlier run of this job renamed it
/// before it could finish. The app-image name `<uid>-<version>.<ext>` is shared by every
/// job of that image version, so an object there counts only if its size and sha256 are
/// the ones the intake recorded for this job: another job's image is never read as this
/// one's, nor deleted with a rejection of this one. `None`: the upload is gone.
async fn find_upload(
    ctx: &Context,
    job: &JobRecord,
) -> Result<Option<(Source, Inspection)>, StageError> {
    let buckets = &ctx.settings.buckets;
    let blobs = &ctx.stores.blobs;
    let temporary = Source {
        bucket: buckets.temporary.clone(),
        key: job.image.temp_key.clone(),
        temporary: true,
    };
    if blobs
        .head(&temporary.bucket, &temporary.key)
        .await?
        .is_some()
    {
        let inspection = inspect_object(ctx, &temporary).await?;
        return Ok(Some((temporary, inspection)));
    }
    if job.image.sha256.is_empty() {
        // Nothing to tell this job's bytes from another's by.
        return Ok(None);
    }
    let version = &job.request.image_metadata.image_version;
    for ext in EXTENSIONS {
        let key = object_key(&job.image_uid, version, ext);
        if check_key(&key).is_err() {
            continue;
        }
        let same_size = blobs
            .head(&buckets.app_image, &key)
            .await?
            .is_some_and(|info| info.size == job.image.size);
        if !same_size {
            continue;
        }
        let source = Source {
            bucket: buckets.app_image.clone(),
            key,
            temporary: false,
        };
        let inspection = inspect_object(ctx, &source).await?;
        if job.image.sha256.eq_ignore_ascii_case(&inspection.sha256) {
            return Ok(Some((source, inspection)));
        }
        info!(key = %source.key, "an object of the same name and size holds another upload; left it");
    }
    Ok(None)
}

/// Reads the object once, in a blocking task fed by the async stream.
async fn inspect_object(ctx: &Context, source: &Source) -> Result<Inspection, StageError> {
    let stream = ctx.stores.blobs.get(&source.bucket, &source.key).await?;
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let limits = ctx.settings.validation.clone();
    tokio::task::spawn_blocking(move || inspect(reader, &limits))
        .await
        .map_err(|e| StageError::retry("validation task", e))?
        .map_err(|e| StageError::retry(format!("reading {}/{}", source.bucket, source.key), e))
}

/// Checks that concern the job rather than the bytes: the recorded upload matches, and the
/// version can name the stored object.
fn check_job(job: &JobRecord, i: &Inspection, problems: &mut Problems) {
    if i.bytes != job.image.size {
        problems.push(
            Check::UploadMismatch,
            format!(
                "the stored upload is {} bytes, the intake recorded {}",
                i.bytes, job.image.size
            ),
        );
    }
    if !job.image.sha256.is_empty() && !job.image.sha256.eq_ignore_ascii_case(&i.sha256) {
        problems.push(
            Check::UploadMismatch,
            format!(
                "the stored upload's sha256 {} is not the recorded {}",
                i.sha256, job.image.sha256
            ),
        );
    }
    let version = &job.request.image_metadata.image_version;
    if ImageVersion::parse(version).is_none() {
        problems.push(
            Check::ImageVersion,
            format!("imageVersion {version:?} is not v<major>-<minor>-<patch> (e.g. v0-0-01), so it cannot name the object"),
        );
    }
}

#[async_trait]
impl StageHandler for Validate {
    fn stage(&self) -> Stage {
        Stage::Validate
    }

    fn error_type(&self) -> &'static str {
        "validation-failed"
    }

    #[instrument(skip_all, fields(job.id = %job.job_id, image.uid = %job.image_uid, pid = known::IMAGE_VALIDATE))]
    async fn handle(
        &self,
        job: &JobRecord,
        _env: &JobEnvelope,
        ctx: &Context,
    ) -> Result<Outcome, StageError> {
        let Some((source, inspection)) = find_upload(ctx, job).await? else {
            return Err(StageError::reject(format!(
                "{}: the upload is no longer in the temporary bucket",
                Check::UploadMissing
            )));
        };
        let mut problems = match &inspection.result {
            Ok(_) => Problems::default(),
            Err(p) => p.clone(),
        };
        check_job(job, &inspection, &mut problems);
        let verified = match inspection.result {
            Ok(v) if problems.is_empty() => v,
            _ => {
                // Nothing of a rejected upload is kept, wherever it was read from (only ever
                // this job's own bytes: `find_upload`).
                ctx.stores.blobs.delete(&source.bucket, &source.key).await?;
                return Err(StageError::Permanent(problems.reasons()));
            }
        };

        let bucket = &ctx.settings.buckets.app_image;
        let version = &job.request.image_metadata.image_version;
        let key = object_key(&job.image_uid, version, verified.extension());
        check_key(&key).map_err(|e| StageError::reject(e.to_string()))?;
        if source.temporary {
            ctx.stores
                .blobs
                .rename(&source.bucket, &source.key, bucket, &key)
                .await?;
        }
        info!(%key, kind = verified.kind(), format = verified.format(), "image validated");

        let (width, height, archive) = match &verified {
            Verified::Picture { width, height, .. } => (Some(*width), Some(*height), None),
            Verified::Archive(l) => (
                None,
                None,
                Some(
                    json!({"images": l.images, "layers": l.layers, "blobs": l.blobs, "repoTags": l.repo_tags}),
                ),
            ),
        };
        let details = json!({
            "kind": verified.kind(),
            "format": verified.format(),
            "width": width,
            "height": height,
            "bytes": inspection.bytes,
            "sha256": inspection.sha256,
            "bucket": bucket,
            "objectKey": key,
            "archive": archive,
        });
        let mut recorded = job.clone();
        recorded
            .outputs
            .insert(common::VALIDATION.into(), details.clone());
        record_event(
            ctx,
            &recorded,
            EventType::ImageValidated,
            known::IMAGE_VALIDATED_EVENT,
            Some(details.clone()),
        )
        .await?;
        let pids = [
            known::IMAGE_VALIDATE,
            known::IMAGE_MOVE,
            known::IMAGE_VALIDATED_EVENT,
        ]
        .map(Pid::constant)
        .to_vec();
        Ok(Outcome::new(pids).with_output(common::VALIDATION, details))
    }
}
