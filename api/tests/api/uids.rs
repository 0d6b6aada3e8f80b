use k8or::model::rules::is_image_uid;
use k8or::model::EventType;
use serde_json::{json, Value};

use crate::helpers::{
    error_body, fields, metadata, spawn_app, spawn_app_with, LOGIC_ERROR_PID, OTHER, USER,
};

fn seed_request() -> Value {
    json!({
        "PID": "c8fms03-c8bms06-e25",
        "imageMetadata": {
            "imageName": "Trolls World Tour (2020)",
            "imageVersion": "v0-0-01",
            "imageCategory": "Movie"
        }
    })
}

#[tokio::test]
async fn a_uid_is_assigned_stored_and_logged() {
    let app = spawn_app().await;
    let res = app
        .post_json("/api/v1/uids", Some(&app.user_token()), &seed_request())
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["PID"], "c8fms03-c8bms06-e25");
    assert_eq!(body["status"], "success");
    assert_eq!(
        body["message"],
        "The image UID has been successfully assigned."
    );
    let uid = body["imageUID"].as_str().unwrap();
    assert!(is_image_uid(uid), "{uid}");

    let row = app
        .ctx
        .stores
        .viewport
        .image_uid(uid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.image_metadata.as_deref(),
        Some("Trolls World Tour (2020), v0-0-01, Movie")
    );
    let requested = app
        .ctx
        .audit
        .events_of(USER, Some(EventType::ImageUidRequested))
        .await
        .unwrap();
    assert_eq!(requested.len(), 1);
    assert_eq!(requested[0].pid.to_string(), "c8bms06-c20bre21-e30");
    assert_eq!(requested[0].event_key, format!("image-uid-requested#{uid}"));
    let assigned = app
        .ctx
        .audit
        .events_of(USER, Some(EventType::ImageUidAssigned))
        .await
        .unwrap();
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0].pid.to_string(), "c8bms06-c20bre21-e40");
    assert_eq!(assigned[0].image_metadata.image_uid.as_deref(), Some(uid));
}

#[tokio::test]
async fn the_seed_path_answers_the_seed_payload_and_uids_differ() {
    let app = spawn_app().await;
    let token = app.user_token();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let res = app
            .post_json("/upload/AssignImageUID.php", Some(&token), &seed_request())
            .await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert!(seen.insert(body["imageUID"].as_str().unwrap().to_owned()));
    }
}

#[tokio::test]
async fn a_bad_uid_request_stores_nothing() {
    let app = spawn_app().await;
    let token = app.user_token();
    let mut bad = seed_request();
    bad["imageMetadata"]["imageVersion"] = json!("1.0");
    bad["imageMetadata"]["imageCategory"] = json!("");
    let body = error_body(
        app.post_json("/api/v1/uids", Some(&token), &bad).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(body["PID"], LOGIC_ERROR_PID);
    assert_eq!(
        fields(&body),
        ["imageMetadata.imageVersion", "imageMetadata.imageCategory"]
    );
    assert!(app
        .ctx
        .audit
        .events_of(USER, None)
        .await
        .unwrap()
        .is_empty());

    let mut other = seed_request();
    other["userMetadata"] = json!({"username": OTHER});
    error_body(
        app.post_json("/api/v1/uids", Some(&token), &other).await,
        403,
        "forbidden",
    )
    .await;
    assert!(app
        .ctx
        .audit
        .events_of(USER, None)
        .await
        .unwrap()
        .is_empty());
    assert!(app
        .ctx
        .audit
        .events_of(OTHER, None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_oversized_json_body_is_413() {
    let app = spawn_app_with(|s| s.limits.json_max_bytes = 4096).await;
    let mut big = seed_request();
    big["imageMetadata"]["Description"] = json!("x".repeat(8192));
    let res = app
        .post_json("/api/v1/uids", Some(&app.user_token()), &big)
        .await;
    let body = error_body(res, 413, "payload-too-large").await;
    // The extractor does not know the number: no made-up "0-byte limit".
    assert_eq!(body["message"], "the body is over the size limit");
    assert!(app
        .ctx
        .audit
        .events_of(USER, None)
        .await
        .unwrap()
        .is_empty());
}

/// The request's image metadata goes into two events: bounded as a whole, like a job's.
/// An image sent along as a data URL is not kept, so it does not count.
#[tokio::test]
async fn image_metadata_too_big_to_keep_is_422_and_a_data_url_is_not_kept() {
    let app = spawn_app().await;
    let mut req = seed_request();
    req["imageMetadata"]["envVars"] = json!([
        {"key": "A", "value": "a".repeat(30_000)},
        {"key": "B", "value": "b".repeat(30_000)},
        {"key": "C", "value": "c".repeat(30_000)},
    ]);
    let res = app
        .post_json("/api/v1/uids", Some(&app.user_token()), &req)
        .await;
    let body = error_body(res, 422, "validation-failed").await;
    assert_eq!(fields(&body), ["imageMetadata"]);

    let mut req = seed_request();
    req["imageMetadata"]["image"] = json!(format!(
        "data:image/png;base64,{}",
        "iVBORw0KGgo".repeat(10_000)
    ));
    let res = app
        .post_json("/api/v1/uids", Some(&app.user_token()), &req)
        .await;
    assert_eq!(res.status(), 201);
    let requested = app
        .ctx
        .audit
        .events_of(USER, Some(EventType::ImageUidRequested))
        .await
        .unwrap();
    assert_eq!(requested.len(), 1);
    assert!(requested[0].image_metadata.image.is_none());
}

/// A user's quota of new UIDs and jobs: over it, 429 with `Retry-After`, nothing made;
/// requests refused for their own faults take none; another user's quota is their own.
#[tokio::test]
async fn new_uids_and_jobs_past_the_users_quota_are_429() {
    let app = spawn_app_with(|s| s.limits.user_writes_per_minute = 2).await;
    // A request refused for its own faults takes nothing from the quota.
    let mut bad = metadata();
    bad["imageMetadata"]["imageVersion"] = json!("v0");
    let res = app.submit(&app.user_token(), &bad).await;
    error_body(res, 422, "validation-failed").await;
    app.assign_uid(USER).await;
    let res = app.submit(&app.user_token(), &metadata()).await;
    assert_eq!(res.status(), 202);

    let body = json!({"imageMetadata": {"imageName": "n", "imageVersion": "v0-0-01", "imageCategory": "Movie"}});
    let res = app
        .post_json("/api/v1/uids", Some(&app.user_token()), &body)
        .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    error_body(res, 429, "rate-limited").await;
    let res = app.submit(&app.user_token(), &metadata()).await;
    error_body(res, 429, "rate-limited").await;
    // One UID and one job were made, no more.
    let assigned = app
        .ctx
        .audit
        .events_of(USER, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == EventType::ImageUidAssigned)
        .count();
    assert_eq!(assigned, 2, "the UID call's and the job's own UID");
    let (jobs, _) = app.ctx.jobs.list_for_user(USER, 10, None).await.unwrap();
    assert_eq!(jobs.len(), 1);
    // Refusals are counted, not written one item each.
    let errors = app.ctx.audit.errors_of(USER).await.unwrap();
    assert!(
        errors.iter().all(|e| e.error_type != "rate-limited"),
        "{errors:?}"
    );

    app.assign_uid(OTHER).await;
}
