//! Driving the pipeline end to end on the embedded backend: a fresh data folder per test,
//! submissions written exactly as the intake API writes them, and snapshots of every store
//! a job touches (to show that a second run of a stage changes nothing).

#![allow(dead_code, reason = "each test target uses a different part")]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use k8or::job::StoredImage;
use k8or::model::{PostMeta, UploadRequest};
use k8or::store::blobs::{bytes_body, put_checked, read_all};
use k8or::store::{Delivery, Item, Key, PostRow, QueryOptions, ReceiveOptions};
use k8or::{Context, JobEnvelope, JobRecord, Settings, Stage};
use serde_json::{json, Value};
use tempfile::TempDir;
use uuid::Uuid;

pub const SEED_UID: &str = "Het5SfSA6NJdRVdhTUhwev9A528QH4gwdJQMSA857PStLeyRnpGffDpDMJq5";
pub const SEED_DESCRIPTION: &str = "The story is set in a colorful and vibrant world of the Trolls, small and happy creatures with wild and colorful hair.";
const EXTENSIONS: [&str; 5] = ["png", "jpg", "gif", "webp", "tar"];

/// A provisioned embedded backend in a fresh folder (removed when the `TempDir` drops).
pub async fn context(tweak: impl FnOnce(&mut Settings)) -> (TempDir, Context) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    for stage in Stage::ALL {
        let c = settings.stages.get_mut(stage);
        c.backoff_base_ms = 100;
        c.backoff_max_ms = 500;
        c.wait_time_secs = 1;
    }
    tweak(&mut settings);
    settings.validate().expect("test settings are valid");
    let stores = k8or::store::open(&settings).await.expect("open stores");
    k8or::store::provision(&stores, &settings)
        .await
        .expect("provision");
    (dir, Context::new(settings, stores))
}

/// The seed's example upload: imageMetadata and userMetadata of 4.1, postMetadata of 6.1
/// with the title of 6.3 and the environment of 6.4 (6.1 and 6.4 disagree on it).
pub fn seed_request() -> UploadRequest {
    serde_json::from_value(json!({
        "PID": "c8fms03-c8bms06-e140",
        "imageMetadata": {
            "imageUID": SEED_UID,
            "icao": "British",
            "tail": "G-AAAA",
            "Part": "21117-1",
            "imageName": "Trolls World Tour (2020)",
            "imageVersion": "v0-0-01",
            "imageCategory": "Movie",
            "Description": SEED_DESCRIPTION,
            "port": "80",
            "envVars": [{"key": "VAR1", "value": "value1"}, {"key": "VAR2", "value": "value2"}],
            "volumes": [{"key": "/host/path", "value": "/container/path"}],
            "imageLabels": [{"key": "label1", "value": "value1"}],
            "commandOverride": "/app/run.sh",
            "entrypointOverride": "/app/entrypoint.sh",
            "workingDir": "/app"
        },
        "userMetadata": {
            "username": "jamesbond", "firstName": "James", "lastName": "Bond", "email": "jamesbond@k8or.com"
        },
        "postMetadata": {
            "PID": "c8fms03-c8bms06-e140",
            "postData": {
                "post_title": "Trolls World Tour (2020)",
                "post_content": SEED_DESCRIPTION,
                "post_excerpt": "Trolls World Tour (2020)",
                "post_status": "publish",
                "post_author": 2,
                "post_type": "post",
                "comment_status": "closed",
                "ping_status": "closed",
                "category_name": "Music"
            },
            "post_meta": [
                {"meta_key": "version", "meta_value": "v0-0-01"},
                {"meta_key": "scanned", "meta_value": "No"},
                {"meta_key": "part", "meta_value": "4562"},
                {"meta_key": "tail", "meta_value": "41-38116"},
                {"meta_key": "image_status", "meta_value": "Uploaded"},
                {"meta_key": "imageuid", "meta_value": SEED_UID},
                {"meta_key": "environment", "meta_value": "Development"},
                {"meta_key": "start_date", "meta_value": "20250207"}
            ]
        }
    }))
    .expect("the seed request parses")
}

/// A 60-character alphanumeric image UID, as the intake assigns.
pub fn new_uid() -> String {
    let hex = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    format!("T{}", &hex[..59])
}

/// A small request of another image (unique UID, given name and version).
pub fn request(uid: &str, name: &str, version: &str) -> UploadRequest {
    let mut r = seed_request();
    r.image_metadata.image_uid = Some(uid.to_owned());
    r.image_metadata.image_name = name.to_owned();
    r.image_metadata.image_version = version.to_owned();
    r.post_metadata.post_data.post_title = Some(name.to_owned());
    r.post_metadata.post_data.post_excerpt = Some(name.to_owned());
    r.post_metadata
        .post_meta
        .retain(|m| !matches!(m.meta_key.as_str(), "version" | "imageuid"));
    r
}

/// Submits as the intake does: the bytes into the temporary bucket (measured on the way),
/// the job record, then the validate envelope. Returns the job.
pub async fn submit(
    ctx: &Context,
    request: UploadRequest,
    bytes: Vec<u8>,
    content_type: &str,
) -> JobRecord {
    let job_id = Uuid::now_v7();
    let uid = request
        .image_metadata
        .image_uid
        .clone()
        .expect("request has a UID");
    let username = request
        .user_metadata
        .username
        .clone()
        .expect("request has a user");
    let temp_key = StoredImage::temp_key_for(job_id);
    let receipt = put_checked(
        ctx.stores.blobs.as_ref(),
        &ctx.settings.buckets.temporary,
        &temp_key,
        bytes_body(bytes),
        Some(content_type),
        ctx.settings.limits.upload_max_bytes,
    )
    .await
    .expect("store the upload");
    let image = StoredImage {
        temp_key,
        size: receipt.size,
        sha256: receipt.sha256,
        declared_content_type: Some(content_type.to_owned()),
        file_name: Some("upload".into()),
    };
    let job = JobRecord::new(
        job_id,
        username.clone(),
        uid.clone(),
        request,
        image,
        Utc::now(),
    );
    ctx.jobs.create(&job).await.expect("create the job");
    enqueue_validate(ctx, &job).await;
    job
}

/// (Re)sends the job's validate envelope: a duplicate delivery when sent twice.
pub async fn enqueue_validate(ctx: &Context, job: &JobRecord) {
    let env = JobEnvelope::new(
        job.job_id,
        job.image_uid.clone(),
        job.username.clone(),
        Stage::Validate,
    );
    ctx.enqueue(&env, Duration::ZERO, BTreeMap::new())
        .await
        .expect("enqueue");
}

pub async fn drain(ctx: &Context) {
    k8or_workers::drain(ctx, &Stage::ALL, Duration::from_secs(120))
        .await
        .expect("the pipeline drains");
}

pub async fn job(ctx: &Context, id: Uuid) -> JobRecord {
    ctx.jobs
        .get(id)
        .await
        .expect("read job")
        .expect("job exists")
}

/// The next delivery of a stage's queue (waits for it).
pub async fn receive(ctx: &Context, stage: Stage) -> Delivery {
    let queue = &ctx.settings.stages.get(stage).queue;
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::from_secs(5),
        visibility_timeout: None,
    };
    for _ in 0..6 {
        if let Some(d) = ctx
            .stores
            .queue
            .receive(queue, &options)
            .await
            .expect("receive")
            .pop()
        {
            return d;
        }
    }
    panic!("nothing arrived on {queue}");
}

pub async fn query_all(ctx: &Context, table: &str, partition: &str) -> Vec<Item> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let options = QueryOptions {
            limit: 500,
            descending: false,
            sort_prefix: None,
            cursor,
        };
        let page = ctx
            .stores
            .tables
            .query(table, partition, &options)
            .await
            .expect("query");
        out.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => return out,
        }
    }
}

/// Every object the job could have left in either bucket.
pub async fn objects(ctx: &Context, job: &JobRecord) -> BTreeMap<String, Vec<u8>> {
    let b = &ctx.settings.buckets;
    let version = &job.request.image_metadata.image_version;
    let mut keys = vec![(b.temporary.clone(), job.image.temp_key.clone())];
    for ext in EXTENSIONS {
        keys.push((
            b.app_image.clone(),
            format!("{}-{version}.{ext}", job.image_uid),
        ));
    }
    for file in [
        "kustomization.yaml",
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
    ] {
        keys.push((
            b.app_image.clone(),
            format!("kustomize/{}/{version}/{file}", job.image_uid),
        ));
    }
    let mut out = BTreeMap::new();
    for (bucket, key) in keys {
        if ctx
            .stores
            .blobs
            .head(&bucket, &key)
            .await
            .expect("head")
            .is_some()
        {
            let bytes = read_all(ctx.stores.blobs.as_ref(), &bucket, &key)
                .await
                .expect("read");
            out.insert(format!("{bucket}/{key}"), bytes);
        }
    }
    out
}

/// What ViewPort holds of a job's post.
#[derive(Debug, Clone, PartialEq)]
pub struct PostState {
    pub post: PostRow,
    pub meta: Vec<PostMeta>,
    pub categories: Vec<String>,
}

pub async fn post_of(ctx: &Context, job_id: Uuid) -> Option<PostState> {
    let vp = &ctx.stores.viewport;
    let id = vp.post_for_job(job_id).await.expect("post_for_job")?;
    Some(PostState {
        post: vp.post(id).await.expect("post").expect("the post exists"),
        meta: vp.post_meta(id).await.expect("meta"),
        categories: vp.post_categories(id).await.expect("categories"),
    })
}

/// Everything a job can change outside its own record and the queues.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub tables: BTreeMap<String, Vec<Item>>,
    pub objects: BTreeMap<String, Vec<u8>>,
    pub post: Option<PostState>,
    pub free_guids: u64,
}

pub async fn snapshot(ctx: &Context, job: &JobRecord) -> Snapshot {
    let t = &ctx.settings.tables;
    let m = &job.request.image_metadata;
    let mut tables = BTreeMap::new();
    let user = ctx
        .stores
        .tables
        .get(&t.user_metadata, &Key::partition(job.username.clone()))
        .await
        .expect("get");
    tables.insert(t.user_metadata.clone(), user.into_iter().collect());
    let part = m.part.clone().unwrap_or_default();
    tables.insert(
        t.app_image_metadata.clone(),
        query_all(ctx, &t.app_image_metadata, &part).await,
    );
    for table in [&t.user_input_manifest, &t.k8or_kustomize] {
        tables.insert(table.clone(), query_all(ctx, table, &job.image_uid).await);
    }
    for table in [&t.user_event_log, &t.user_error_log] {
        tables.insert(table.clone(), query_all(ctx, table, &job.username).await);
    }
    Snapshot {
        tables,
        objects: objects(ctx, job).await,
        post: post_of(ctx, job.job_id).await,
        free_guids: ctx.stores.viewport.free_guids().await.expect("free guids"),
    }
}

/// The item's attribute as a string, for short assertions.
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}
