//! The OpenAPI document's frame, and schemas for the core crate's payload types.
//!
//! The core types (`UploadRequest`, `ImageMetadata`, `HistoryEntry`, …) live in a crate
//! that knows nothing of OpenAPI, so they are described here by schema-only twins. The
//! tests below serialize each real type fully populated and check that its twin names
//! exactly the same fields, so the document cannot drift from the wire.

use chrono::{DateTime, Utc};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::{ErrorBody, FieldErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "k8or intake API",
        description = "The k8or Portal upload process as a queue-backed job pipeline: static data, \
                       users, image UIDs, job submission (streamed) and job status. Every error \
                       answers `{\"PID\", \"status\": \"error\", \"code\", \"message\"}`."
    ),
    components(schemas(ErrorBody, FieldErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "static data", description = "Seed phase 1: dropdown options and users"),
        (name = "image UID", description = "Seed phase 2: unique image identifiers"),
        (name = "jobs", description = "Submitting an upload and following it"),
        (name = "seed", description = "The seed frontend's own paths and payloads"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the protected routes name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "HS256 token with sub (username), role (user|admin) and exp; \
                         `k8or-api token --user U --role R` issues one",
                    ))
                    .build(),
            ),
        );
    }
}

/// A job's status.
#[derive(ToSchema)]
#[schema(as = JobStatus)]
#[expect(dead_code, reason = "schema-only twin of k8or::JobStatus")]
#[serde(rename_all = "kebab-case")]
pub enum JobStatusDoc {
    Queued,
    Validating,
    Persisting,
    Kustomizing,
    Publishing,
    Retrying,
    Published,
    Rejected,
    DeadLettered,
}

/// A pipeline stage.
#[derive(ToSchema)]
#[schema(as = Stage)]
#[expect(dead_code, reason = "schema-only twin of k8or::Stage")]
#[serde(rename_all = "kebab-case")]
pub enum StageDoc {
    Validate,
    PersistMetadata,
    Kustomize,
    Publish,
}

/// One step of a job's history.
#[derive(ToSchema)]
#[schema(as = HistoryEntry)]
#[expect(dead_code, reason = "schema-only twin of k8or::job::HistoryEntry")]
pub struct HistoryDoc {
    stage: Option<StageDoc>,
    status: JobStatusDoc,
    /// The PID of the step.
    #[schema(rename = "PID", example = "c12bms03-c16bre03-e60")]
    pid: Option<String>,
    at: DateTime<Utc>,
    error: Option<String>,
    attempt: Option<u32>,
    /// On a re-drive's entry: the message id of the dead letter it moved back.
    letter: Option<String>,
}

/// A `{"key", "value"}` pair (env vars, volumes as host path → container path, labels).
#[derive(ToSchema)]
#[schema(as = KeyValue)]
#[expect(dead_code, reason = "schema-only twin of k8or::model::KeyValue")]
pub struct KeyValueDoc {
    key: String,
    value: String,
}

/// The seed's `imageMetadata`. Input also accepts `part` and `description`, and `port`
/// as a number.
#[derive(ToSchema)]
#[schema(as = ImageMetadata)]
#[expect(dead_code, reason = "schema-only twin of k8or::model::ImageMetadata")]
#[serde(rename_all = "camelCase")]
pub struct ImageMetadataDoc {
    /// 60 letters and digits; must have been assigned to the caller. Leave it out to
    /// have one assigned.
    #[schema(rename = "imageUID")]
    image_uid: Option<String>,
    icao: Option<String>,
    tail: Option<String>,
    #[schema(rename = "Part")]
    part: Option<String>,
    #[schema(example = "Trolls World Tour (2020)")]
    image_name: String,
    #[schema(example = "v0-0-01", pattern = "^v[0-9]{1,6}-[0-9]{1,6}-[0-9]{1,6}$")]
    image_version: String,
    #[schema(example = "Movie")]
    image_category: String,
    #[schema(rename = "Description")]
    description: Option<String>,
    /// 1 to 65535.
    #[schema(example = "80")]
    port: Option<String>,
    env_vars: Vec<KeyValueDoc>,
    volumes: Vec<KeyValueDoc>,
    image_labels: Vec<KeyValueDoc>,
    command_override: Option<String>,
    entrypoint_override: Option<String>,
    working_dir: Option<String>,
    /// The seed's preview data URL; never stored.
    image: Option<String>,
}

/// The seed's `userMetadata`; `username`, if sent, must be the token's.
#[derive(ToSchema)]
#[schema(as = UserMetadata)]
#[expect(dead_code, reason = "schema-only twin of k8or::model::UserMetadata")]
#[serde(rename_all = "camelCase")]
pub struct UserMetadataDoc {
    username: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
}

/// A `wp_postmeta` pair.
#[derive(ToSchema)]
#[schema(as = PostMeta)]
#[expect(dead_code, reason = "schema-only twin of k8or::model::PostMeta")]
pub struct PostMetaDoc {
    meta_key: String,
    meta_value: String,
}

/// The `wp_posts` columns the board may set; the publish stage fills the rest.
#[derive(ToSchema)]
#[schema(as = PostData)]
#[expect(dead_code, reason = "schema-only twin of k8or::model::PostData")]
pub struct PostDataDoc {
    post_title: Option<String>,
    post_content: Option<String>,
    post_excerpt: Option<String>,
    post_status: Option<String>,
    /// A `wp_users` ID (`GET /api/v1/users`): the caller's own, or anyone's for an admin.
    /// Left out: the caller's own row, else 0.
    post_author: Option<u64>,
    post_date: Option<String>,
    post_date_gmt: Option<String>,
    post_modified: Option<String>,
    post_modified_gmt: Option<String>,
    post_type: Option<String>,
    post_parent: Option<u64>,
    menu_order: Option<i64>,
    comment_status: Option<String>,
    ping_status: Option<String>,
    post_password: Option<String>,
    post_name: Option<String>,
    guid: Option<String>,
    to_ping: Option<String>,
    pinged: Option<String>,
    post_content_filtered: Option<String>,
    post_mime_type: Option<String>,
    comment_count: Option<u64>,
    category_name: Option<String>,
    /// Never stored: the image travels once, as the `image` part or `imageData`.
    image_data: Option<String>,
}

/// Seed 6.1's `postMetadata`.
#[derive(ToSchema)]
#[schema(as = PostMetadata)]
#[expect(dead_code, reason = "schema-only twin of k8or::model::PostMetadata")]
pub struct PostMetadataDoc {
    #[schema(rename = "PID")]
    pid: Option<String>,
    #[schema(rename = "postData")]
    post_data: Option<PostDataDoc>,
    post_meta: Option<Vec<PostMetaDoc>>,
    /// Development, Testing, …; wins over an `environment` post meta.
    environment: Option<String>,
}

/// The seed's UploadImage payload (6.1). In the JSON form the image is `imageData`, a
/// base64 `data:` URL; in the multipart form this is the `metadata` part.
#[derive(ToSchema)]
#[schema(as = UploadRequest)]
#[expect(dead_code, reason = "schema-only twin of k8or::model::UploadRequest")]
pub struct UploadRequestDoc {
    #[schema(rename = "PID", example = "c8fms03-c8bms06-e140")]
    pid: Option<String>,
    #[schema(rename = "imageMetadata")]
    image_metadata: ImageMetadataDoc,
    #[schema(rename = "userMetadata")]
    user_metadata: Option<UserMetadataDoc>,
    #[schema(rename = "postMetadata")]
    post_metadata: Option<PostMetadataDoc>,
    #[schema(rename = "imageData", example = "data:image/png;base64,iVBORw0KGgo...")]
    image_data: Option<String>,
}

/// The multipart form: `metadata` first, then `image`.
#[derive(ToSchema)]
#[expect(dead_code, reason = "schema-only description of the multipart form")]
pub struct SubmitForm {
    /// The UploadImage payload as JSON.
    metadata: UploadRequestDoc,
    /// The file: a picture (PNG, JPEG, GIF, WebP) or a container image archive (tar).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

/// Seed 2.1's request.
#[derive(ToSchema)]
#[schema(as = UidRequest)]
#[expect(dead_code, reason = "schema-only twin of k8or::model::UidRequest")]
pub struct UidRequestDoc {
    #[schema(rename = "PID", example = "c8fms03-c8bms06-e25")]
    pid: Option<String>,
    #[schema(rename = "imageMetadata")]
    image_metadata: ImageMetadataDoc,
    #[schema(rename = "userMetadata")]
    user_metadata: Option<UserMetadataDoc>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8or::job::HistoryEntry;
    use k8or::model::{ImageMetadata, PostData, PostMetadata, UploadRequest, UserMetadata};
    use serde_json::{json, Value};
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::PartialSchema;

    use super::*;

    fn properties<T: PartialSchema>() -> BTreeSet<String> {
        match T::schema() {
            RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
            other => panic!(
                "not an object schema: {}",
                serde_json::to_string(&other).unwrap()
            ),
        }
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn full_image() -> ImageMetadata {
        serde_json::from_value(json!({
            "imageUID": "u", "icao": "i", "tail": "t", "Part": "p", "imageName": "n",
            "imageVersion": "v0-0-01", "imageCategory": "c", "Description": "d", "port": "80",
            "envVars": [], "volumes": [], "imageLabels": [], "commandOverride": "c",
            "entrypointOverride": "e", "workingDir": "/w", "image": "x"
        }))
        .unwrap()
    }

    #[test]
    fn image_metadata_twin_matches() {
        let v = serde_json::to_value(full_image()).unwrap();
        assert_eq!(keys(&v), properties::<ImageMetadataDoc>());
    }

    #[test]
    fn user_and_post_twins_match() {
        let user = UserMetadata {
            username: Some("u".into()),
            first_name: Some("f".into()),
            last_name: Some("l".into()),
            email: Some("e@x".into()),
        };
        assert_eq!(
            keys(&serde_json::to_value(user).unwrap()),
            properties::<UserMetadataDoc>()
        );
        let every_post_field: PostData = serde_json::from_value(json!({
            "post_title": "", "post_content": "", "post_excerpt": "", "post_status": "",
            "post_author": 1, "post_date": "", "post_date_gmt": "", "post_modified": "",
            "post_modified_gmt": "", "post_type": "", "post_parent": 0, "menu_order": 0,
            "comment_status": "", "ping_status": "", "post_password": "", "post_name": "",
            "guid": "", "to_ping": "", "pinged": "", "post_content_filtered": "",
            "post_mime_type": "", "comment_count": 0, "category_name": "", "image_data": ""
        }))
        .unwrap();
        let data = serde_json::to_value(&every_post_field).unwrap();
        assert_eq!(keys(&data), properties::<PostDataDoc>());
        let post = PostMetadata {
            pid: Some("p".into()),
            post_data: every_post_field,
            post_meta: vec![],
            environment: Some("Testing".into()),
        };
        assert_eq!(
            keys(&serde_json::to_value(post).unwrap()),
            properties::<PostMetadataDoc>()
        );
    }

    #[test]
    fn upload_and_history_twins_match() {
        let req = UploadRequest {
            pid: Some("p".into()),
            image_metadata: full_image(),
            user_metadata: UserMetadata::default(),
            post_metadata: PostMetadata::default(),
            image_data: Some("data:,".into()),
        };
        assert_eq!(
            keys(&serde_json::to_value(req).unwrap()),
            properties::<UploadRequestDoc>()
        );
        let entry = HistoryEntry {
            stage: Some(k8or::Stage::Validate),
            status: k8or::JobStatus::Queued,
            pid: None,
            at: chrono::Utc::now(),
            error: None,
            attempt: Some(1),
            letter: Some("a-message-id".into()),
        };
        assert_eq!(
            keys(&serde_json::to_value(entry).unwrap()),
            properties::<HistoryDoc>()
        );
    }

    #[test]
    fn status_and_stage_twins_list_every_value() {
        let values = |schema: RefOr<Schema>| -> Vec<String> {
            let json = serde_json::to_value(schema).unwrap();
            json["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        let statuses: Vec<_> = k8or::JobStatus::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(values(JobStatusDoc::schema()), statuses);
        let stages: Vec<_> = k8or::Stage::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(values(StageDoc::schema()), stages);
    }
}
