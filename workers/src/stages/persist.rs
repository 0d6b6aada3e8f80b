//! persist-metadata (seed 4.2–4.7): the user's data, the image's metadata and the user
//! input for the manifests, each followed by its event.
//!
//! Re-runs write the same items: timestamps come from the job, not the clock. Writes that
//! several jobs share a key for are guarded, so an older job can never overwrite a newer
//! one's data: job ids are UUID v7, which sort by creation time as strings, and image
//! versions compare through their numeric order key.

use async_trait::async_trait;
use k8or::model::{EventType, ImageVersion};
use k8or::pid::known;
use k8or::store::tables::to_json;
use k8or::store::{Condition, TableError};
use k8or::time::Created;
use k8or::{Context, JobEnvelope, JobRecord, Pid, Stage};
use serde_json::{json, Value};
use tracing::{info, instrument};

use super::common::{self, record_event, stored_metadata, user_metadata};
use crate::runner::{Outcome, StageError, StageHandler};

pub struct PersistMetadata;

/// The sort key of the job's user-input-manifest-data item; kustomize reads it back.
pub fn user_input_timestamp(job: &JobRecord) -> String {
    job.created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The checked keys of the app-image-metadata item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataKeys {
    pub part: String,
    pub tail: String,
    pub version: ImageVersion,
}

/// Checks what the tables need of the metadata; every problem, not just the first.
pub fn check_keys(job: &JobRecord) -> Result<MetadataKeys, Vec<String>> {
    let m = &job.request.image_metadata;
    let mut problems = Vec::new();
    let non_empty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let part = non_empty(&m.part);
    if part.is_none() {
        problems.push(
            "imageMetadata.Part is required (the app-image-metadata partition key)".to_owned(),
        );
    }
    let tail = non_empty(&m.tail);
    if tail.is_none() {
        problems
            .push("imageMetadata.tail is required (the app-image-metadata sort key)".to_owned());
    }
    let version = ImageVersion::parse(&m.image_version);
    if version.is_none() {
        problems.push(format!(
            "imageMetadata.imageVersion {:?} is not v<major>-<minor>-<patch> (e.g. v0-0-01)",
            m.image_version
        ));
    }
    match (part, tail, version) {
        (Some(part), Some(tail), Some(version)) if problems.is_empty() => Ok(MetadataKeys {
            part,
            tail,
            version,
        }),
        _ => Err(problems),
    }
}

/// Writes `item` if no newer job holds the key. `Ok(false)`: a newer job's item stays.
async fn put_unless_newer(
    ctx: &Context,
    table: &str,
    item: Value,
    condition: Condition,
) -> Result<bool, StageError> {
    let item = to_json(&item)?;
    match ctx
        .stores
        .tables
        .put_json(table, item, Some(condition))
        .await
    {
        Ok(()) => Ok(true),
        Err(TableError::ConditionFailed | TableError::AlreadyExists) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// "No item, or this job's, or an older job's."
fn not_newer_job(job_id: &str) -> Condition {
    Condition::Or(vec![
        Condition::NotExists,
        Condition::eq("jobId", job_id),
        Condition::lt("jobId", job_id),
    ])
}

#[async_trait]
impl StageHandler for PersistMetadata {
    fn stage(&self) -> Stage {
        Stage::PersistMetadata
    }

    fn error_type(&self) -> &'static str {
        "metadata-rejected"
    }

    #[instrument(skip_all, fields(job.id = %job.job_id, image.uid = %job.image_uid, pid = known::METADATA_SEND))]
    async fn handle(
        &self,
        job: &JobRecord,
        _env: &JobEnvelope,
        ctx: &Context,
    ) -> Result<Outcome, StageError> {
        let keys = check_keys(job).map_err(StageError::Permanent)?;
        let tables = &ctx.settings.tables;
        let created = Created::at(job.created_at);
        let job_id = job.job_id.to_string();
        let metadata = stored_metadata(job);
        let user = user_metadata(job);

        // 4.2: the user's latest upload, keyed by username.
        let user_item = json!({
            "username": job.username,
            "imageMetadata": metadata,
            "userMetadata": user.without_username(),
            "jobId": job_id,
            "createdTimestampUTC": created.utc,
            "createdTimestampUnix": created.unix,
        });
        let user_written = put_unless_newer(
            ctx,
            &tables.user_metadata,
            user_item,
            not_newer_job(&job_id),
        )
        .await?;
        record_event(
            ctx,
            job,
            EventType::UserDataSaved,
            known::USER_DATA_SAVED_EVENT,
            Some(json!({"table": tables.user_metadata, "written": user_written})),
        )
        .await?;

        // 4.4: one item per (part, tail), shared by every user's images for that part and
        // tail: the latest submission's (job ids are UUID v7, in submission order), in
        // whatever order the jobs are processed. Versions do not rank: they compare only
        // within one image, and a rule mixing the two has no single winner (image A v2, B
        // v1, then A v1 would end differently in different processing orders), while one
        // image's highest version would lock the item for every user. A later upload of an
        // older version is a roll-back.
        let mut image_only = metadata.clone();
        image_only.part = None;
        image_only.tail = None;
        let image_item = json!({
            "part-number": keys.part,
            "tail-name": keys.tail,
            "imageMetadata": image_only,
            "userMetadata": user,
            "jobId": job_id,
            "createdTimestampUTC": created.utc,
            "createdTimestampUnix": created.unix,
        });
        let image_written = put_unless_newer(
            ctx,
            &tables.app_image_metadata,
            image_item,
            not_newer_job(&job_id),
        )
        .await?;
        if !image_written {
            info!(part = %keys.part, tail = %keys.tail, "a later submission's item is stored; kept it");
        }
        record_event(
            ctx,
            job,
            EventType::ImageMetadataSaved,
            known::IMAGE_METADATA_SAVED_EVENT,
            Some(json!({
                "table": tables.app_image_metadata,
                "partNumber": keys.part,
                "tailName": keys.tail,
                "written": image_written,
            })),
        )
        .await?;

        // 4.6: the input the kustomize stage renders from, keyed by (imageUID, timestamp).
        let timestamp = user_input_timestamp(job);
        let mut input_only = metadata.clone();
        input_only.image_uid = None;
        let input_item = json!({
            "imageUID": job.image_uid,
            "timestamp": timestamp,
            "imageMetadata": input_only,
            "userMetadata": user,
            "jobId": job_id,
            "createdTimestampUTC": created.utc,
            "createdTimestampUnix": created.unix,
        });
        let same_job = Condition::Or(vec![
            Condition::NotExists,
            Condition::eq("jobId", job_id.as_str()),
        ]);
        if !put_unless_newer(ctx, &tables.user_input_manifest, input_item, same_job).await? {
            return Err(StageError::Retryable(format!(
                "user input key ({}, {timestamp}) is held by another job",
                job.image_uid
            )));
        }
        record_event(
            ctx,
            job,
            EventType::UserInputSaved,
            known::USER_INPUT_SAVED_EVENT,
            Some(json!({"table": tables.user_input_manifest, "timestamp": timestamp})),
        )
        .await?;

        let pids = [
            known::USER_DATA_SAVE,
            known::USER_DATA_SAVED_EVENT,
            known::IMAGE_METADATA_SAVE,
            known::IMAGE_METADATA_SAVED_EVENT,
            known::USER_INPUT_SAVE,
            known::USER_INPUT_SAVED_EVENT,
        ]
        .map(Pid::constant)
        .to_vec();
        Ok(Outcome::new(pids).with_output(
            common::METADATA,
            json!({
                "userMetadataWritten": user_written,
                "imageMetadataWritten": image_written,
                "partNumber": keys.part,
                "tailName": keys.tail,
                "userInputTimestamp": timestamp,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use k8or::job::StoredImage;
    use uuid::Uuid;

    fn job(metadata: Value) -> JobRecord {
        let request = serde_json::from_value(json!({"imageMetadata": metadata})).unwrap();
        let image = StoredImage {
            temp_key: "k".into(),
            size: 1,
            sha256: "00".into(),
            declared_content_type: None,
            file_name: None,
        };
        let at = Utc.with_ymd_and_hms(2025, 2, 18, 8, 49, 2).unwrap();
        JobRecord::new(
            Uuid::now_v7(),
            "jamesbond".into(),
            "UID".into(),
            request,
            image,
            at,
        )
    }

    #[test]
    fn keys_come_from_part_tail_and_version() {
        let j = job(json!({"Part": "21117-1", "tail": "G-AAAA", "imageVersion": "v0-0-01"}));
        let k = check_keys(&j).unwrap();
        assert_eq!((k.part.as_str(), k.tail.as_str()), ("21117-1", "G-AAAA"));
        assert_eq!(k.version, ImageVersion::parse("v0-0-01").unwrap());
        assert_eq!(user_input_timestamp(&j), "2025-02-18T08:49:02.000Z");
    }

    #[test]
    fn every_missing_key_is_named() {
        let j = job(json!({"part": " ", "imageVersion": "1.0"}));
        let problems = check_keys(&j).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("Part"));
        assert!(problems[1].contains("tail"));
        assert!(problems[2].contains("imageVersion"));
    }

    #[test]
    fn stored_metadata_never_carries_image_bytes() {
        let mut j = job(json!({"image": "data:image/png;base64,AAAA", "imageUID": "other"}));
        let m = stored_metadata(&j);
        assert_eq!(m.image, None);
        assert_eq!(m.image_uid.as_deref(), Some("UID"));
        j.outputs.insert(
            common::VALIDATION.into(),
            json!({"objectKey": "UID-v0-0-01.png"}),
        );
        assert_eq!(
            stored_metadata(&j).image.as_deref(),
            Some("UID-v0-0-01.png")
        );
    }
}
