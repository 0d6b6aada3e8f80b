//! The whole pipeline on the embedded backend: the seed's example upload and a `docker
//! save` archive go from the intake's records to a published ViewPort post, with every
//! table, event, object, post, post meta and category checked against the seed; hostile or
//! broken uploads end rejected with the check named and nothing kept; a stage run twice,
//! or a message delivered twice, leaves what one run leaves.

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/k8s_tools.rs"]
mod k8s_tools;
#[path = "support/pipeline.rs"]
mod pipeline;

use std::collections::BTreeMap;

use k8or::model::{EventItem, EventType};
use k8or::store::blobs::read_all;
use k8or::store::Key;
use k8or::{Context, JobEnvelope, JobRecord, JobStatus, Stage};
use k8or_workers::{stages, Execution};
use pipeline::{s, SEED_DESCRIPTION, SEED_UID};
use serde_json::{json, Value};

/// The events the workers write for one job, with their PIDs (seed 3.6 to 6.6).
const WORKER_EVENTS: [(EventType, &str); 8] = [
    (EventType::ImageValidated, "c12bms03-c20bre21-e70"),
    (EventType::UserDataSaved, "c12bms06-c20bre21-e85"),
    (EventType::ImageMetadataSaved, "c12bms06-c20bre21-e95"),
    (EventType::UserInputSaved, "c12bms06-c20bre21-e105"),
    (EventType::KustomizationInitiated, "c12bms09-c20bre21-e115"),
    (EventType::KustomizationSaved, "c12bms09-c20bre21-e135"),
    (EventType::ViewportCreated, "c8bms06-c20bre21-e165"),
    (EventType::ImageUploaded, "c8bms06-c20bre21-e170"),
];

async fn events_of_job(ctx: &Context, job: &JobRecord) -> Vec<EventItem> {
    let mut events = ctx.audit.events_of(&job.username, None).await.unwrap();
    events.retain(|e| e.job_id == Some(job.job_id));
    events
}

/// Every worker event once, with its PID, the seed's shapes and both timestamps.
async fn check_events(ctx: &Context, job: &JobRecord, object_key: &str) {
    let events = events_of_job(ctx, job).await;
    assert_eq!(events.len(), WORKER_EVENTS.len(), "{events:#?}");
    for (event_type, pid) in WORKER_EVENTS {
        let found: Vec<&EventItem> = events
            .iter()
            .filter(|e| e.event_type == event_type)
            .collect();
        assert_eq!(found.len(), 1, "{event_type:?}");
        let e = found[0];
        assert_eq!(e.pid.to_string(), pid, "{event_type:?}");
        assert_eq!(
            e.event_key,
            format!("{}#{}", event_type.as_str(), job.job_id)
        );
        assert_eq!(e.username, job.username);
        assert_eq!(
            e.image_metadata.image_uid.as_deref(),
            Some(job.image_uid.as_str())
        );
        assert_eq!(
            e.image_metadata.image_name,
            job.request.image_metadata.image_name
        );
        assert_eq!(
            e.image_metadata.image.as_deref(),
            Some(object_key),
            "never image bytes"
        );
        assert_eq!(
            e.user_metadata.username, None,
            "the partition key is not repeated"
        );
        assert_eq!(e.user_metadata.first_name.as_deref(), Some("James"));
        assert!(!e.event_metadata.timestamp.is_empty());
        assert_eq!(e.created.utc.len(), 19, "YYYY-MM-DD HH:MM:SS");
        assert!(e.created.unix.parse::<i64>().unwrap() > 1_700_000_000);
        let stored = serde_json::to_value(e).unwrap();
        assert_eq!(stored["eventType"], event_type.as_str());
    }
}

/// Writes the kustomization of the bucket to a folder, builds it with kubectl and validates
/// every resource against the Kubernetes schema.
async fn check_kustomization(ctx: &Context, job: &JobRecord) {
    let version = &job.request.image_metadata.image_version;
    let prefix = format!("kustomize/{}/{version}", job.image_uid);
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for name in [
        "kustomization.yaml",
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
    ] {
        let bytes = read_all(
            ctx.stores.blobs.as_ref(),
            &ctx.settings.buckets.app_image,
            &format!("{prefix}/{name}"),
        )
        .await
        .unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
    }
    if let Some(built) = k8s_tools::kustomize_build(dir.path()) {
        let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&built)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| s(d, "/kind")).collect();
        assert_eq!(kinds.len(), 3, "{built}");
        for kind in ["Deployment", "Service", "ConfigMap"] {
            assert!(
                kinds.contains(&kind),
                "{kind} missing from the build: {built}"
            );
        }
        let built_path = dir.path().join("built.yaml");
        std::fs::write(&built_path, &built).unwrap();
        files.push(built_path);
    }
    files.remove(0);
    k8s_tools::schema_validate(&files);
}

#[tokio::test]
async fn the_seed_example_upload_is_published() {
    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let png = fixtures::png(320, 180);
    let free_before = ctx.stores.viewport.free_guids().await.unwrap();
    let submitted =
        pipeline::submit(&ctx, pipeline::seed_request(), png.clone(), "image/png").await;
    pipeline::drain(&ctx).await;

    // The job: published, through every stage, with what each stage made.
    let job = pipeline::job(&ctx, submitted.job_id).await;
    assert_eq!(job.status, JobStatus::Published, "{:?}", job.error);
    let statuses: Vec<&str> = job.history.iter().map(|h| h.status.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "queued",
            "validating",
            "persisting",
            "kustomizing",
            "publishing",
            "published"
        ]
    );
    assert_eq!(
        job.history.last().unwrap().pid.unwrap().to_string(),
        "c8bms06-c20bre21-e170"
    );
    let key = format!("{SEED_UID}-v0-0-01.png");
    let v = &job.outputs["validation"];
    assert_eq!(
        (s(v, "/kind"), s(v, "/format"), s(v, "/objectKey")),
        ("picture", "png", key.as_str())
    );
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(180))
    );
    assert_eq!(v["bytes"].as_u64(), Some(png.len() as u64));
    assert_eq!(s(v, "/sha256"), fixtures::sha256_hex(&png));

    // Objects: moved out of the temporary bucket, stored under its seed name.
    let objects = pipeline::objects(&ctx, &job).await;
    let app = &ctx.settings.buckets.app_image;
    assert_eq!(objects.get(&format!("{app}/{key}")), Some(&png));
    assert!(!objects
        .keys()
        .any(|k| k.starts_with(&ctx.settings.buckets.temporary)));
    assert_eq!(
        objects.len(),
        5,
        "the picture and four kustomization files: {:?}",
        objects.keys()
    );

    // 4.2 user-metadata: the seed's item, with the object key instead of image bytes.
    let t = &ctx.settings.tables;
    let user = ctx
        .stores
        .tables
        .get(&t.user_metadata, &Key::partition("jamesbond"))
        .await
        .unwrap()
        .unwrap();
    let user = Value::Object(user);
    let seed_image = json!({
        "imageUID": SEED_UID, "icao": "British", "tail": "G-AAAA", "Part": "21117-1",
        "imageName": "Trolls World Tour (2020)", "imageVersion": "v0-0-01", "imageCategory": "Movie",
        "Description": SEED_DESCRIPTION, "port": "80",
        "envVars": [{"key": "VAR1", "value": "value1"}, {"key": "VAR2", "value": "value2"}],
        "volumes": [{"key": "/host/path", "value": "/container/path"}],
        "imageLabels": [{"key": "label1", "value": "value1"}],
        "commandOverride": "/app/run.sh", "entrypointOverride": "/app/entrypoint.sh", "workingDir": "/app",
        "image": key,
    });
    assert_eq!(user["imageMetadata"], seed_image);
    assert_eq!(
        user["userMetadata"],
        json!({"firstName": "James", "lastName": "Bond", "email": "jamesbond@k8or.com"})
    );
    assert_eq!(s(&user, "/createdTimestampUTC"), job.created_timestamp_utc);
    assert_eq!(
        s(&user, "/createdTimestampUnix"),
        job.created_timestamp_unix
    );

    // 4.4 app-image-metadata: keyed by part and tail, which the image metadata then omits.
    let item = ctx
        .stores
        .tables
        .get(&t.app_image_metadata, &Key::with_sort("21117-1", "G-AAAA"))
        .await
        .unwrap();
    let item = Value::Object(item.expect("app-image-metadata item"));
    let mut without_keys = seed_image.clone();
    without_keys
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k != "Part" && k != "tail");
    assert_eq!(item["imageMetadata"], without_keys);
    assert_eq!(s(&item, "/userMetadata/username"), "jamesbond");
    assert!(item["createdTimestampUTC"].is_string() && item["createdTimestampUnix"].is_string());

    // 4.6 user-input-manifest-data: keyed by imageUID and the job's time.
    let inputs = pipeline::query_all(&ctx, &t.user_input_manifest, SEED_UID).await;
    assert_eq!(inputs.len(), 1);
    let input = Value::Object(inputs[0].clone());
    let mut without_uid = seed_image.clone();
    without_uid.as_object_mut().unwrap().remove("imageUID");
    assert_eq!(input["imageMetadata"], without_uid);
    assert_eq!(s(&input, "/userMetadata/username"), "jamesbond");
    assert!(input["timestamp"].is_string() && input["createdTimestampUnix"].is_string());

    // 5.5 k8or-kustomize: the three resources in the seed's shape and order.
    let chart = ctx
        .stores
        .tables
        .get(&t.k8or_kustomize, &Key::with_sort(SEED_UID, "v0-0-01"))
        .await
        .unwrap();
    let chart = Value::Object(chart.expect("k8or-kustomize item"));
    let kinds: Vec<&str> = chart["helmChart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| s(r, "/kind"))
        .collect();
    assert_eq!(kinds, ["Deployment", "Service", "ConfigMap"]);
    let deployment = &chart["helmChart"][0];
    assert_eq!(
        s(deployment, "/metadata/name"),
        "trolls-world-tour-2020-v0-0-01-deployment"
    );
    assert_eq!(deployment["spec"]["replicas"], 3);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        s(container, "/image"),
        "registry.k8or.com/apps/trolls-world-tour-2020:v0-0-01"
    );
    assert_eq!(container["ports"], json!([{"containerPort": 80}]));
    assert_eq!(
        chart["helmChart"][2]["data"],
        json!({"VAR1": "value1", "VAR2": "value2"})
    );
    assert!(chart["createdTimestampUTC"].is_string());
    assert_eq!(
        job.outputs["kustomization"]["manifests"],
        chart["helmChart"]
    );
    check_kustomization(&ctx, &job).await;

    // 6.1–6.4 the post, its meta and its category.
    let slug = "trolls-world-tour-2020-v0-0-01-development";
    let post = pipeline::post_of(&ctx, job.job_id).await.expect("a post");
    assert_eq!(post.post.post_name, slug);
    assert_eq!(post.post.post_title, "Trolls World Tour (2020)");
    assert_eq!(post.post.post_excerpt, "Trolls World Tour (2020)");
    assert_eq!(post.post.post_content, SEED_DESCRIPTION);
    assert_eq!(post.post.post_status, "publish");
    assert_eq!(post.post.post_type, "post");
    assert_eq!(post.post.post_author, 2, "jamesbond's wp_users ID");
    let guid = s(&job.outputs["post"], "/guid").to_owned();
    assert_eq!(
        post.post.guid,
        format!("http://orbit.k8or.com/viewport/?guid={guid}")
    );
    let url = format!("http://orbit.k8or.com/viewport/{slug}/");
    let meta: BTreeMap<&str, &str> = post
        .meta
        .iter()
        .map(|m| (m.meta_key.as_str(), m.meta_value.as_str()))
        .collect();
    let expected: BTreeMap<&str, &str> = [
        ("preview", url.as_str()),
        ("website", "http://orbit.k8or.com/"),
        ("website-main-article", url.as_str()),
        ("version", "v0-0-01"),
        ("scanned", "No"),
        ("part", "4562"),
        ("tail", "41-38116"),
        ("image_status", "Uploaded"),
        ("imageuid", SEED_UID),
        ("environment", "Development"),
        ("start_date", "20250207"),
    ]
    .into();
    assert_eq!(meta, expected);
    assert_eq!(post.meta.len(), expected.len(), "each key once");
    assert_eq!(post.categories, ["Music"]);
    assert_eq!(s(&job.outputs["post"], "/url"), url);
    assert_eq!(
        ctx.stores.viewport.free_guids().await.unwrap(),
        free_before - 1,
        "one GUID taken"
    );

    check_events(&ctx, &job, &key).await;
    assert!(ctx.audit.errors_of("jamesbond").await.unwrap().is_empty());
    let envelope_trace = events_of_job(&ctx, &job).await;
    assert!(!envelope_trace.is_empty());
}

#[tokio::test]
async fn a_docker_save_archive_is_published() {
    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let uid = pipeline::new_uid();
    let tar = fixtures::docker_save_tar();
    let request = pipeline::request(&uid, "Trolls Server", "v1-2-3");
    let submitted = pipeline::submit(&ctx, request, tar.clone(), "application/x-tar").await;
    pipeline::drain(&ctx).await;
    let job = pipeline::job(&ctx, submitted.job_id).await;
    assert_eq!(job.status, JobStatus::Published, "{:?}", job.error);
    let key = format!("{uid}-v1-2-3.tar");
    let v = &job.outputs["validation"];
    assert_eq!(
        (s(v, "/kind"), s(v, "/format"), s(v, "/objectKey")),
        ("container-image", "docker-save", key.as_str())
    );
    assert_eq!(
        v["archive"]["repoTags"],
        json!(["trolls/world-tour:v0-0-01"])
    );
    assert_eq!(v["width"], Value::Null);
    let objects = pipeline::objects(&ctx, &job).await;
    assert_eq!(
        objects.get(&format!("{}/{key}", ctx.settings.buckets.app_image)),
        Some(&tar)
    );
    let post = pipeline::post_of(&ctx, job.job_id).await.expect("a post");
    assert_eq!(post.post.post_name, "trolls-server-v1-2-3-development");
    assert_eq!(post.categories, ["Music"]);
    check_events(&ctx, &job, &key).await;
    check_kustomization(&ctx, &job).await;
}

#[tokio::test]
async fn broken_and_hostile_uploads_are_rejected_with_the_check_named() {
    let (_dir, ctx) = pipeline::context(|s| s.validation.max_pixels = 10_000).await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated PNG",
            fixtures::truncated_png(),
            "picture-corrupt",
        ),
        (
            "wrong magic",
            b"GIF00a not a picture at all".to_vec(),
            "unknown-format",
        ),
        (
            "over the pixel limit",
            fixtures::png(120, 100),
            "picture-too-large",
        ),
        (
            "decompression bomb",
            fixtures::png_bomb(60_000, 60_000),
            "picture-too-large",
        ),
        (
            "tar with ../",
            fixtures::docker_tar_with_parent_path(),
            "tar-parent-path",
        ),
        (
            "tar with a symlink",
            fixtures::docker_tar_with_symlink(),
            "tar-link",
        ),
        (
            "OCI blob digest mismatch",
            fixtures::oci_tar_bad_digest(),
            "archive-blob-digest",
        ),
        ("empty file", Vec::new(), "empty-file"),
    ];
    let mut jobs = Vec::new();
    for (name, bytes, check) in cases {
        let request = pipeline::request(&pipeline::new_uid(), name, "v0-0-01");
        jobs.push((
            name,
            check,
            pipeline::submit(&ctx, request, bytes, "image/png").await,
        ));
    }
    pipeline::drain(&ctx).await;
    let errors = ctx.audit.errors_of("jamesbond").await.unwrap();
    for (name, check, submitted) in jobs {
        let job = pipeline::job(&ctx, submitted.job_id).await;
        assert_eq!(job.status, JobStatus::Rejected, "{name}");
        assert_eq!(job.stage, Some(Stage::Validate), "{name}");
        assert!(
            job.reasons.iter().any(|r| r.starts_with(check)),
            "{name}: expected {check} in {:?}",
            job.reasons
        );
        assert!(
            pipeline::objects(&ctx, &job).await.is_empty(),
            "{name}: nothing is kept"
        );
        let mine: Vec<_> = errors
            .iter()
            .filter(|e| e.job_id == Some(job.job_id))
            .collect();
        assert_eq!(mine.len(), 1, "{name}: one error item");
        assert_eq!(mine[0].error_type, "validation-failed");
        assert_eq!(mine[0].pid.to_string(), "c12bms03-c20bre24-EEE");
        assert_eq!(mine[0].reasons, job.reasons);
        assert!(
            pipeline::post_of(&ctx, job.job_id).await.is_none(),
            "{name}"
        );
        assert!(
            events_of_job(&ctx, &job).await.is_empty(),
            "{name}: no event"
        );
    }
}

#[tokio::test]
async fn every_stage_run_twice_leaves_what_one_run_leaves() {
    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let submitted = pipeline::submit(
        &ctx,
        pipeline::seed_request(),
        fixtures::png(64, 48),
        "image/png",
    )
    .await;
    for stage in Stage::ALL {
        let delivery = pipeline::receive(&ctx, stage).await;
        let out = k8or_workers::try_execute(&ctx, stage, &delivery).await;
        assert_eq!(out, Execution::Done { next: stage.next() }, "{stage}");
        let job = pipeline::job(&ctx, submitted.job_id).await;
        let once = pipeline::snapshot(&ctx, &job).await;
        let env = JobEnvelope::parse(&delivery.body).unwrap();
        let again = stages::handler(stage)
            .handle(&job, &env, &ctx)
            .await
            .unwrap_or_else(|e| panic!("{stage} second run: {e}"));
        assert_eq!(
            pipeline::snapshot(&ctx, &job).await,
            once,
            "{stage} run twice changed the stores"
        );
        for (key, value) in &again.outputs {
            assert_eq!(
                job.outputs.get(key),
                Some(value),
                "{stage} reports the same {key}"
            );
        }
    }
    let job = pipeline::job(&ctx, submitted.job_id).await;
    assert_eq!(job.status, JobStatus::Published);
}

#[tokio::test]
async fn a_message_delivered_twice_has_its_effects_once() {
    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let free_before = ctx.stores.viewport.free_guids().await.unwrap();
    let submitted = pipeline::submit(
        &ctx,
        pipeline::seed_request(),
        fixtures::png(64, 48),
        "image/png",
    )
    .await;
    pipeline::enqueue_validate(&ctx, &submitted).await;
    pipeline::enqueue_validate(&ctx, &submitted).await;
    pipeline::drain(&ctx).await;
    let job = pipeline::job(&ctx, submitted.job_id).await;
    assert_eq!(job.status, JobStatus::Published);
    check_events(&ctx, &job, &format!("{SEED_UID}-v0-0-01.png")).await;
    assert_eq!(
        ctx.stores.viewport.free_guids().await.unwrap(),
        free_before - 1,
        "one post, one GUID"
    );
    assert_eq!(pipeline::objects(&ctx, &job).await.len(), 5);
    let t = &ctx.settings.tables;
    assert_eq!(
        pipeline::query_all(&ctx, &t.user_input_manifest, SEED_UID)
            .await
            .len(),
        1
    );
    assert_eq!(
        pipeline::query_all(&ctx, &t.k8or_kustomize, SEED_UID)
            .await
            .len(),
        1
    );
    assert!(ctx.audit.errors_of("jamesbond").await.unwrap().is_empty());
}

/// app-image-metadata holds one item per part and tail, shared by every image: the latest
/// submission's, whatever its version, and whatever order the jobs are processed in.
#[tokio::test]
async fn the_part_and_tail_item_is_the_latest_submissions_in_any_processing_order() {
    let (_dir, ctx) = pipeline::context(|_| {}).await;
    let t = ctx.settings.tables.clone();
    let stored = |ctx: &Context| {
        let ctx = ctx.clone();
        let table = t.app_image_metadata.clone();
        async move {
            let item = ctx
                .stores
                .tables
                .get(&table, &Key::with_sort("21117-1", "G-AAAA"))
                .await
                .unwrap()
                .unwrap();
            (
                item["imageMetadata"]["imageUID"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                item["imageMetadata"]["imageVersion"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        }
    };
    let (a, b) = (pipeline::new_uid(), pipeline::new_uid());
    let mut jobs = Vec::new();
    // A's newer version, B's older one, then A's older one (a roll-back): each replaces.
    for (uid, version) in [(&a, "v0-1-0"), (&b, "v0-0-01"), (&a, "v0-0-02")] {
        let request = pipeline::request(uid, "Trolls World Tour (2020)", version);
        let job = pipeline::submit(&ctx, request, fixtures::png(16, 16), "image/png").await;
        pipeline::drain(&ctx).await;
        assert_eq!(
            pipeline::job(&ctx, job.job_id).await.status,
            JobStatus::Published,
            "{version}"
        );
        assert_eq!(stored(&ctx).await, (uid.clone(), version.to_owned()));
        jobs.push(pipeline::job(&ctx, job.job_id).await);
    }
    // The earlier jobs run again (a late duplicate, or a slower worker): the item stays
    // the latest submission's.
    for job in &jobs[..2] {
        let env = JobEnvelope::new(
            job.job_id,
            job.image_uid.clone(),
            job.username.clone(),
            Stage::PersistMetadata,
        );
        stages::handler(Stage::PersistMetadata)
            .handle(job, &env, &ctx)
            .await
            .unwrap();
        assert_eq!(stored(&ctx).await, (a.clone(), "v0-0-02".to_owned()));
    }
}
