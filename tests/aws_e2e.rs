//! The production binaries in AWS mode, on moto and MariaDB: `k8or-worker provision` makes
//! every queue (with its redrive policy), table, bucket and bootstrap row once and says so
//! when run again; and the seed's example upload goes through `k8or-api serve` and
//! `k8or-worker run` as separate processes to a published post, checked store by store
//! through the ports; a broken picture ends rejected with nothing kept.

#[path = "support/api_process.rs"]
mod api_process;
#[path = "support/aws_pipeline.rs"]
mod aws_pipeline;
#[path = "support/aws_stack.rs"]
mod aws_stack;
#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/http.rs"]
mod http;
#[path = "support/processes.rs"]
mod processes;

use std::collections::{BTreeMap, BTreeSet};

use aws_pipeline::{bucket_keys, RunningPipeline};
use aws_stack::AwsStack;
use k8or::bootstrap::{self, GUID_POOL_SIZE};
use k8or::model::{base_template, BaseKustomizeItem, EventType, StaticDataItem};
use k8or::store::blobs::read_all;
use k8or::store::tables::TablesExt;
use k8or::store::{Key, Stores};
use k8or::{Context, JobRecord, JobStatus, Settings, Stage};
use serde_json::{json, Value};
use uuid::Uuid;

macro_rules! stack_or_skip {
    ($tweak:expr) => {
        match AwsStack::create($tweak).await {
            Some(stack) => stack,
            None => return,
        }
    };
}

// ---------------------------------------------------------------- provision

/// `created  X` / `exists   X` lines and the closing summary of a provision report.
struct Report {
    created: BTreeSet<String>,
    existing: BTreeSet<String>,
    summary: String,
}

fn parse_report(text: &str) -> Report {
    let mut report = Report {
        created: BTreeSet::new(),
        existing: BTreeSet::new(),
        summary: String::new(),
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(what) = line.strip_prefix("created  ") {
            assert!(report.created.insert(what.to_owned()), "twice: {line}");
        } else if let Some(what) = line.strip_prefix("exists   ") {
            assert!(report.existing.insert(what.to_owned()), "twice: {line}");
        } else {
            assert!(
                report.summary.is_empty(),
                "unexpected line {line:?} in\n{text}"
            );
            report.summary = line.to_owned();
        }
    }
    report
}

/// What provision makes, as its report names it (the counted bootstrap rows aside).
fn resources(s: &Settings) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for stage in Stage::ALL {
        let c = s.stages.get(stage);
        out.insert(format!("queue {}", c.queue));
        out.insert(format!("queue {}", c.dead_letter_queue));
    }
    for spec in s.tables.specs() {
        out.insert(format!("table {}", spec.name));
    }
    out.insert(format!("bucket {}", s.buckets.temporary));
    out.insert(format!("bucket {}", s.buckets.app_image));
    out.insert("ViewPort schema".into());
    out.insert(format!("static data 1947 in {}", s.tables.static_data));
    out.insert(format!(
        "base template \"default\" in {}",
        s.tables.base_kustomize
    ));
    out
}

/// Each table's key schema as the seed gives it (plus the three job tables).
fn seed_keys(s: &Settings) -> Vec<(&str, &str, Option<&str>)> {
    let t = &s.tables;
    vec![
        (&t.base_kustomize, "helmChart", None),
        (&t.user_input_manifest, "imageUID", Some("timestamp")),
        (&t.k8or_kustomize, "imageUID", Some("imageVersion")),
        (&t.user_metadata, "username", None),
        (&t.app_image_metadata, "part-number", Some("tail-name")),
        (&t.user_event_log, "username", Some("eventKey")),
        (&t.user_error_log, "username", Some("errorKey")),
        (&t.static_data, "ICAOCode", None),
        (&t.jobs, "jobId", None),
        (&t.user_jobs, "username", Some("jobId")),
        (&t.unqueued_jobs, "shard", Some("jobId")),
    ]
}

/// A queue's attributes, by name.
async fn queue_attributes(stack: &AwsStack, name: &str) -> BTreeMap<String, String> {
    let sqs = stack.clients().await.sqs;
    let url = sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("queue {name}: {e:?}"));
    let out = sqs
        .get_queue_attributes()
        .queue_url(url.queue_url().expect("a queue URL"))
        .attribute_names("All".into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("attributes of {name}: {e:?}"));
    out.attributes()
        .expect("attributes")
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect()
}

async fn check_queues(stack: &AwsStack) {
    let s = &stack.settings;
    for stage in Stage::ALL {
        let c = s.stages.get(stage);
        let dlq = queue_attributes(stack, &c.dead_letter_queue).await;
        let source = queue_attributes(stack, &c.queue).await;
        let timeout = c.visibility_timeout_secs.to_string();
        assert_eq!(source["VisibilityTimeout"], timeout, "{stage}");
        assert_eq!(dlq["VisibilityTimeout"], timeout, "{stage}");
        assert_eq!(
            source["MessageRetentionPeriod"],
            s.queues.retention_secs.to_string(),
            "{stage}"
        );
        assert_eq!(
            dlq["MessageRetentionPeriod"],
            s.queues.dead_letter_retention_secs.to_string(),
            "{stage}: the dead letters outlive their source"
        );
        let policy: Value = serde_json::from_str(&source["RedrivePolicy"]).expect("policy");
        assert_eq!(policy["deadLetterTargetArn"], dlq["QueueArn"], "{stage}");
        let max = match &policy["maxReceiveCount"] {
            Value::String(n) => n.clone(),
            other => other.to_string(),
        };
        assert_eq!(max, c.max_receive_count.to_string(), "{stage}");
        assert!(
            !dlq.contains_key("RedrivePolicy"),
            "{stage}: a DLQ has none"
        );
    }
}

async fn check_tables(stack: &AwsStack) {
    let dynamodb = stack.clients().await.dynamodb;
    for (name, partition, sort) in seed_keys(&stack.settings) {
        let out = dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("table {name}: {e:?}"));
        let table = out.table().expect("a table description");
        let keys: Vec<(&str, &str)> = table
            .key_schema()
            .iter()
            .map(|k| (k.attribute_name(), k.key_type().as_str()))
            .collect();
        let mut expected = vec![(partition, "HASH")];
        expected.extend(sort.map(|s| (s, "RANGE")));
        assert_eq!(keys, expected, "{name}");
        let billing = table
            .billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str());
        assert_eq!(billing, Some("PAY_PER_REQUEST"), "{name}");
    }
}

async fn check_buckets(stack: &AwsStack) {
    let s3 = stack.clients().await.s3;
    for bucket in [
        &stack.settings.buckets.temporary,
        &stack.settings.buckets.app_image,
    ] {
        s3.head_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("bucket {bucket}: {e:?}"));
    }
    // The temporary bucket's objects expire a day after the dead letters, and unfinished
    // multipart uploads after one; the app-image bucket keeps what it holds.
    let rules = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&stack.settings.buckets.temporary)
        .send()
        .await
        .expect("the temporary bucket's lifecycle")
        .rules
        .unwrap_or_default();
    let ours: Vec<_> = rules
        .iter()
        .filter(|r| r.id() == Some(k8or::store::aws::s3::EXPIRY_RULE))
        .collect();
    assert_eq!(ours.len(), 1, "{rules:?}");
    assert_eq!(
        ours[0].expiration().and_then(|e| e.days()),
        Some(i32::try_from(stack.settings.temporary_expiry_days()).unwrap())
    );
    assert_eq!(
        ours[0]
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
        Some(1)
    );
    let app = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&stack.settings.buckets.app_image)
        .send()
        .await
        .expect_err("no lifecycle on the app-image bucket");
    let app = format!("{app:?}");
    assert!(app.contains("NoSuchLifecycleConfiguration"), "{app}");
}

/// The bootstrap data, and the static data item (to see that a second run keeps it).
async fn check_bootstrap(stores: &Stores, s: &Settings) -> StaticDataItem {
    let item: StaticDataItem = stores
        .tables
        .get_as(&s.tables.static_data, &Key::partition("1947"))
        .await
        .expect("get")
        .expect("the static data item of ICAO 1947");
    assert_eq!(item.criteria.aircraft_tail_number, ["41-38116", "42-13400"]);
    assert_eq!(item.criteria.part_number, ["21117-1", "211-171"]);
    let base: BaseKustomizeItem = stores
        .tables
        .get_as(&s.tables.base_kustomize, &Key::partition("default"))
        .await
        .expect("get")
        .expect("the base template");
    assert_eq!(base.helm_chart_data, base_template());
    assert_eq!(stores.viewport.users().await.unwrap(), bootstrap::users());
    assert_eq!(stores.viewport.free_guids().await.unwrap(), GUID_POOL_SIZE);
    item
}

#[tokio::test]
async fn provision_makes_every_resource_once_and_then_changes_nothing() {
    let stack = stack_or_skip!(|s: &mut Settings| {
        // Distinct values per stage, so each queue shows its own stage's settings.
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            let c = s.stages.get_mut(stage);
            c.visibility_timeout_secs = 40 + i as u64;
            c.max_receive_count = 3 + i as u32;
        }
        s.queues.retention_secs = 2 * 24 * 3600;
        s.queues.dead_letter_retention_secs = 9 * 24 * 3600;
    });
    let dir = tempfile::tempdir().unwrap();
    let env = stack.child_env();

    let first = parse_report(&api_process::provision(&env, dir.path()));
    let mut expected = resources(&stack.settings);
    assert_eq!(expected.len(), 8 + 11 + 2 + 1 + 2);
    expected.insert("3 seed users in wp_users".into());
    expected.insert(format!("{GUID_POOL_SIZE} GUIDs in the wp_image_guid pool"));
    assert_eq!(first.created, expected);
    assert!(first.existing.is_empty(), "{:?}", first.existing);
    assert_eq!(first.summary, "26 created, 0 already there");

    check_queues(&stack).await;
    check_tables(&stack).await;
    check_buckets(&stack).await;
    let stores = stack.open_stores().await;
    let before = check_bootstrap(&stores, &stack.settings).await;

    let second = parse_report(&api_process::provision(&env, dir.path()));
    assert!(second.created.is_empty(), "{:?}", second.created);
    let mut expected = resources(&stack.settings);
    expected.insert("seed users in wp_users".into());
    expected.insert("GUIDs in the wp_image_guid pool".into());
    assert_eq!(second.existing, expected);
    assert_eq!(second.summary, "nothing changed: all 26 already there");

    // And it really changed nothing: same attributes, same items, no extra GUIDs.
    check_queues(&stack).await;
    check_tables(&stack).await;
    let after = check_bootstrap(&stores, &stack.settings).await;
    assert_eq!(after.created, before.created, "the item was not rewritten");
    stack.drop_database().await;
}

// ---------------------------------------------------------------- the pipeline

const DESCRIPTION: &str = "The story is set in a colorful and vibrant world of the Trolls, small and happy creatures with wild and colorful hair.";

/// The seed's UploadImage payload (6.1) without an image UID: the intake assigns one.
fn seed_metadata() -> Value {
    json!({
        "PID": "c8fms03-c8bms06-e140",
        "imageMetadata": {
            "icao": "British",
            "tail": "G-AAAA",
            "Part": "21117-1",
            "imageName": "Trolls World Tour (2020)",
            "imageVersion": "v0-0-01",
            "imageCategory": "Movie",
            "Description": DESCRIPTION,
            "port": "80",
            "envVars": [{"key": "VAR1", "value": "value1"}, {"key": "VAR2", "value": "value2"}],
            "volumes": [{"key": "/host/path", "value": "/container/path"}],
            "imageLabels": [{"key": "label1", "value": "value1"}],
            "commandOverride": "/app/run.sh",
            "entrypointOverride": "/app/entrypoint.sh",
            "workingDir": "/app"
        },
        "userMetadata": {
            "username": "jamesbond", "firstName": "James", "lastName": "Bond",
            "email": "jamesbond@k8or.com"
        },
        "postMetadata": {
            "PID": "c8fms03-c8bms06-e140",
            "postData": {
                "post_title": "Trolls World Tour (2020)",
                "post_content": DESCRIPTION,
                "post_excerpt": "Trolls World Tour (2020)",
                "category_name": "Music"
            },
            "post_meta": [{"meta_key": "environment", "meta_value": "Development"}]
        }
    })
}

/// Every event of one job, with its PID: the intake's, then each stage's (seed 3.3–6.6).
const JOB_EVENTS: [(EventType, &str); 9] = [
    (EventType::TemporaryImageSaved, "c12bms03-c20bre21-e55"),
    (EventType::ImageValidated, "c12bms03-c20bre21-e70"),
    (EventType::UserDataSaved, "c12bms06-c20bre21-e85"),
    (EventType::ImageMetadataSaved, "c12bms06-c20bre21-e95"),
    (EventType::UserInputSaved, "c12bms06-c20bre21-e105"),
    (EventType::KustomizationInitiated, "c12bms09-c20bre21-e115"),
    (EventType::KustomizationSaved, "c12bms09-c20bre21-e135"),
    (EventType::ViewportCreated, "c8bms06-c20bre21-e165"),
    (EventType::ImageUploaded, "c8bms06-c20bre21-e170"),
];

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

/// Nothing visible, in flight or delayed on any stage queue or dead-letter queue.
async fn check_queues_empty(ctx: &Context) {
    for stage in Stage::ALL {
        let c = ctx.settings.stages.get(stage);
        for queue in [&c.queue, &c.dead_letter_queue] {
            let depth = ctx.stores.queue.depth(queue).await.expect("depth");
            assert_eq!(
                (depth.visible, depth.in_flight, depth.delayed),
                (0, 0, 0),
                "{queue}"
            );
        }
    }
}

/// Submits one upload to separate API and worker processes, waits until the job is final
/// and `status`, stops the processes, and reads the job back from the stores.
async fn run_one(
    stack: &AwsStack,
    metadata: &Value,
    image: &[u8],
    status: &str,
) -> (Context, JobRecord) {
    let running = RunningPipeline::start(stack);
    let submitted = running.submit(metadata, image, "image/png").await;
    assert_eq!(submitted["status"], "queued");
    let job_id: Uuid = serde_json::from_value(submitted["jobId"].clone()).unwrap();
    let view = running.wait_final(job_id).await;
    assert_eq!(view["status"], status, "{view:#}");
    running.stop();
    let ctx = Context::new(stack.settings.clone(), stack.open_stores().await);
    let job = ctx.jobs.get(job_id).await.unwrap().expect("the job");
    (ctx, job)
}

#[tokio::test]
async fn the_seed_upload_is_published_by_separate_api_and_worker_processes() {
    let stack = stack_or_skip!(|_: &mut Settings| {});
    let png = fixtures::png(320, 180);
    let (ctx, job) = run_one(&stack, &seed_metadata(), &png, "published").await;
    let job_id = job.job_id;
    assert_eq!(job.status, JobStatus::Published);
    let uid = job.image_uid.clone();
    assert_eq!(uid.len(), 60, "an assigned UID: {uid}");
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

    // The event log: each of the job's events once, with its PID.
    let mut events = ctx.audit.events_of("jamesbond", None).await.unwrap();
    events.retain(|e| e.job_id == Some(job_id));
    assert_eq!(events.len(), JOB_EVENTS.len(), "{events:#?}");
    for (event_type, pid) in JOB_EVENTS {
        let found: Vec<_> = events
            .iter()
            .filter(|e| e.event_type == event_type)
            .collect();
        assert_eq!(found.len(), 1, "{event_type:?}");
        assert_eq!(found[0].pid.to_string(), pid, "{event_type:?}");
        assert_eq!(
            found[0].event_key,
            format!("{}#{job_id}", event_type.as_str())
        );
    }
    assert!(ctx.audit.errors_of("jamesbond").await.unwrap().is_empty());

    // The objects: the picture under its seed name, the kustomization, nothing temporary.
    let b = &ctx.settings.buckets;
    let key = format!("{uid}-v0-0-01.png");
    let stored = read_all(ctx.stores.blobs.as_ref(), &b.app_image, &key)
        .await
        .expect("the picture in the app-image bucket");
    assert_eq!(stored, png);
    let mut expected: Vec<String> = ["configmap", "deployment", "kustomization", "service"]
        .iter()
        .map(|f| format!("kustomize/{uid}/v0-0-01/{f}.yaml"))
        .collect();
    expected.push(key.clone());
    expected.sort();
    assert_eq!(bucket_keys(&stack, &b.app_image).await, expected);
    assert_eq!(
        bucket_keys(&stack, &b.temporary).await,
        Vec::<String>::new()
    );

    // The tables: the user's item points at the object; the k8or-kustomize item.
    let t = &ctx.settings.tables;
    let user = ctx
        .stores
        .tables
        .get(&t.user_metadata, &Key::partition("jamesbond"))
        .await
        .unwrap()
        .expect("the user-metadata item");
    let user = Value::Object(user);
    assert_eq!(s(&user, "/imageMetadata/image"), key);
    assert_eq!(s(&user, "/imageMetadata/imageUID"), uid);
    let chart = ctx
        .stores
        .tables
        .get(&t.k8or_kustomize, &Key::with_sort(uid.clone(), "v0-0-01"))
        .await
        .unwrap()
        .expect("the k8or-kustomize item");
    let chart = Value::Object(chart);
    let kinds: Vec<&str> = chart["helmChart"]
        .as_array()
        .expect("helmChart")
        .iter()
        .map(|r| s(r, "/kind"))
        .collect();
    assert_eq!(kinds, ["Deployment", "Service", "ConfigMap"]);
    assert_eq!(
        s(&chart, "/helmChart/0/metadata/name"),
        "trolls-world-tour-2020-v0-0-01-deployment"
    );
    assert_eq!(
        chart["helmChart"][2]["data"],
        json!({"VAR1": "value1", "VAR2": "value2"})
    );

    // The post, its meta and its category, in MariaDB.
    let vp = &ctx.stores.viewport;
    let post_id = vp.post_for_job(job_id).await.unwrap().expect("a post");
    let post = vp.post(post_id).await.unwrap().expect("the post row");
    let slug = "trolls-world-tour-2020-v0-0-01-development";
    assert_eq!(post.post_name, slug);
    assert_eq!(post.post_title, "Trolls World Tour (2020)");
    assert_eq!(post.post_content, DESCRIPTION);
    assert_eq!(post.post_status, "publish");
    assert_eq!(post.post_author, 2, "jamesbond's wp_users ID");
    let url = format!("http://orbit.k8or.com/viewport/{slug}/");
    let start_date = job.created_at.format("%Y%m%d").to_string();
    let meta = vp.post_meta(post_id).await.unwrap();
    let meta: BTreeMap<&str, &str> = meta
        .iter()
        .map(|m| (m.meta_key.as_str(), m.meta_value.as_str()))
        .collect();
    let expected: BTreeMap<&str, &str> = [
        ("preview", url.as_str()),
        ("website", "http://orbit.k8or.com/"),
        ("website-main-article", url.as_str()),
        ("version", "v0-0-01"),
        ("scanned", "No"),
        ("part", "21117-1"),
        ("tail", "G-AAAA"),
        ("image_status", "Uploaded"),
        ("imageuid", uid.as_str()),
        ("environment", "Development"),
        ("start_date", start_date.as_str()),
    ]
    .into();
    assert_eq!(meta, expected);
    assert_eq!(vp.post_categories(post_id).await.unwrap(), ["Music"]);
    assert_eq!(vp.free_guids().await.unwrap(), GUID_POOL_SIZE - 1);

    check_queues_empty(&ctx).await;
    stack.drop_database().await;
}

#[tokio::test]
async fn a_truncated_png_is_rejected_with_nothing_kept() {
    let stack = stack_or_skip!(|_: &mut Settings| {});
    let truncated = fixtures::truncated_png();
    let (ctx, job) = run_one(&stack, &seed_metadata(), &truncated, "rejected").await;
    let job_id = job.job_id;
    assert_eq!(job.stage, Some(Stage::Validate));
    assert!(
        job.reasons.iter().any(|r| r.starts_with("picture-corrupt")),
        "{:?}",
        job.reasons
    );
    let errors = ctx.audit.errors_of("jamesbond").await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].job_id, Some(job_id));
    assert_eq!(errors[0].error_type, "validation-failed");
    assert_eq!(errors[0].reasons, job.reasons);
    let b = &ctx.settings.buckets;
    assert_eq!(
        bucket_keys(&stack, &b.app_image).await,
        Vec::<String>::new()
    );
    assert_eq!(
        bucket_keys(&stack, &b.temporary).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ctx.stores.viewport.post_for_job(job_id).await.unwrap(),
        None
    );
    check_queues_empty(&ctx).await;
    stack.drop_database().await;
}

/// Publishes the largest metadata the intake keeps with a job (just under 64 KiB of JSON):
/// `labels`, and environment values for the rest, on DynamoDB, whose items hold at most
/// 400 KB (moto refuses a bigger put, as DynamoDB does). (The API's tests show a little
/// more refused at the intake.) Returns the job record's size as JSON.
async fn publish_the_largest_metadata(stack: &AwsStack, labels: &[Value]) -> usize {
    use k8or::model::rules::bounds;

    let with_values = |n: usize| {
        let mut m = seed_metadata();
        m["imageMetadata"]["imageLabels"] = json!(labels);
        let values: Vec<Value> = (0..n.div_ceil(30_000))
            .map(|i| {
                let len = (n - i * 30_000).min(30_000);
                json!({"key": format!("BIG{i}"), "value": "x".repeat(len)})
            })
            .collect();
        m["imageMetadata"]["envVars"] = json!(values);
        m
    };
    // What the intake measures is the request as it reads it, which names a few fields the
    // client left out, and the entries' own JSON around the values: a margin of 512 bytes.
    let base = serde_json::to_vec(&with_values(0)).unwrap().len();
    let largest = with_values(bounds::STORED - 512 - base);
    let (_, job) = run_one(stack, &largest, &fixtures::png(16, 16), "published").await;
    let yaml = &job.outputs["kustomization"]["yaml"];
    let configmap = yaml["configmap.yaml"].as_str().unwrap();
    assert!(configmap.contains(&"x".repeat(20_000)));
    for label in labels {
        let key = label["key"].as_str().unwrap();
        assert!(yaml["deployment.yaml"].as_str().unwrap().contains(key));
    }
    let stored = serde_json::to_vec(&job).unwrap().len();
    eprintln!(
        "the largest job record with {} labels: {stored} bytes as JSON",
        labels.len()
    );
    stored
}

/// Nearly all of it in environment values: kept three times in the job (the request,
/// kustomize's ConfigMap and its YAML).
#[tokio::test]
async fn the_largest_metadata_in_values_fits_in_dynamodb_items_to_the_end() {
    let stack = stack_or_skip!(|_: &mut Settings| {});
    let stored = publish_the_largest_metadata(&stack, &[]).await;
    assert!(
        stored > 3 * 60_000,
        "the values are kept three times: {stored}"
    );
}

/// 64 labels of the longest keys and values, kept in the resources' metadata and
/// selectors, each as a manifest and as YAML; environment values for the rest.
#[tokio::test]
async fn the_largest_metadata_in_labels_fits_in_dynamodb_items_to_the_end() {
    use k8or::model::rules::bounds;

    let stack = stack_or_skip!(|_: &mut Settings| {});
    // A DNS subdomain of 253 characters, then a name of 63: the longest label key.
    let prefix = ["a", "b", "c"].map(|c| c.repeat(63)).join(".") + "." + &"d".repeat(61);
    let labels: Vec<Value> = (0..bounds::LABELS)
        .map(|i| {
            let key = format!("{prefix}/l{i:02}{}", "x".repeat(60));
            json!({"key": key, "value": "v".repeat(63)})
        })
        .collect();
    let stored = publish_the_largest_metadata(&stack, &labels).await;
    assert!(stored > 3 * 40_000, "{stored}");
}

/// A worker stopped during its long poll leaves nothing hidden: before, the stop dropped
/// the receive, but moto (as SQS) went on polling for it and handed the next job's
/// message to nobody, hidden for validate's visibility timeout (this test's second job
/// then waited over a minute, every time). Now the stop lets the poll answer and
/// releases what it took, and a second pipeline on the same queues publishes at once.
#[tokio::test]
async fn a_worker_stopped_mid_poll_leaves_no_message_hidden() {
    let stack = stack_or_skip!(|_: &mut Settings| {});
    let png = fixtures::png(16, 16);
    run_one(&stack, &seed_metadata(), &png, "published").await;
    run_one(&stack, &seed_metadata(), &png, "published").await;
}
