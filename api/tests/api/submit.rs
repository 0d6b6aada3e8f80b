use k8or::model::rules::is_image_uid;
use k8or::model::EventType;
use k8or::pid::known;
use k8or::store::blobs::read_all;
use k8or::Stage;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{
    error_body, fields, metadata, png, png_data_url, spawn_app, spawn_app_drifted, spawn_app_with,
    TestApp, ADMIN, OTHER, USER, VALIDATOR_ERROR_PID,
};

/// Checks the 202 body and returns it.
async fn accepted(res: reqwest::Response) -> Value {
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = res.json().await.unwrap();
    let job_id = body["jobId"].as_str().unwrap();
    assert_eq!(location, format!("/api/v1/jobs/{job_id}"));
    assert_eq!(body["statusUrl"], location);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["stage"], "validate");
    assert_eq!(body["attempt"], 0);
    assert!(body["error"].is_null());
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["status"], "queued");
    assert_eq!(history[0]["stage"], "validate");
    assert_eq!(history[0]["PID"], known::TEMP_IMAGE_SAVE);
    assert!(history[0]["at"].is_string());
    assert!(is_image_uid(body["imageUID"].as_str().unwrap()));
    body
}

#[tokio::test]
async fn a_multipart_upload_with_an_owned_uid_becomes_a_queued_job() {
    let app = spawn_app().await;
    let uid = app.assign_uid(USER).await;
    let mut meta = metadata();
    meta["imageMetadata"]["imageUID"] = json!(uid);
    let body = accepted(app.submit(&app.user_token(), &meta).await).await;
    assert_eq!(body["imageUID"], uid.as_str());
    let job_id: uuid::Uuid = body["jobId"].as_str().unwrap().parse().unwrap();

    // Queued: the job's unqueued mark went with the message.
    assert!(app.ctx.jobs.unqueued(i64::MAX).await.unwrap().is_empty());

    // The image is in the temporary bucket, byte for byte, and its digest is recorded.
    let job = app.ctx.jobs.get(job_id).await.unwrap().unwrap();
    let stored = read_all(
        app.ctx.stores.blobs.as_ref(),
        &app.ctx.settings.buckets.temporary,
        &job.image.temp_key,
    )
    .await
    .unwrap();
    assert_eq!(stored, png());
    assert_eq!(job.image.sha256, hex::encode(Sha256::digest(png())));
    assert_eq!(job.image.size, png().len() as u64);
    assert_eq!(job.image.file_name.as_deref(), Some("trolls.png"));
    assert_eq!(
        job.image.declared_content_type.as_deref(),
        Some("image/png")
    );

    // The stored request has no image bytes.
    assert_eq!(job.request.image_data, None);
    assert_eq!(job.request.image_metadata.image, None);
    assert_eq!(job.request.post_metadata.post_data.image_data, None);
    assert_eq!(job.request.user_metadata.username.as_deref(), Some(USER));
    assert_eq!(
        job.request.image_metadata.image_uid.as_deref(),
        Some(uid.as_str())
    );

    // The event of seed 3.3.
    let events = app
        .ctx
        .audit
        .events_of(USER, Some(EventType::TemporaryImageSaved))
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.pid.to_string(), known::TEMP_IMAGE_SAVED_EVENT);
    assert_eq!(event.job_id, Some(job_id));
    let details = event.details.as_ref().unwrap();
    assert_eq!(details["savePID"], known::TEMP_IMAGE_SAVE);
    assert_eq!(details["sha256"], job.image.sha256.as_str());

    // One message on the validate queue, naming the job.
    let envelopes = app.queued_envelopes().await;
    assert_eq!(envelopes.len(), 1);
    let env = &envelopes[0];
    assert_eq!(env.job_id, job_id);
    assert_eq!(env.stage, Stage::Validate);
    assert_eq!(env.username, USER);
    assert_eq!(env.image_uid, uid);
    let pids: Vec<String> = env.pids.iter().map(ToString::to_string).collect();
    assert_eq!(
        pids,
        [
            known::IMAGE_SEND,
            known::TEMP_IMAGE_SAVE,
            known::TEMP_IMAGE_SAVED_EVENT
        ]
    );
}

#[tokio::test]
async fn a_submission_without_uid_gets_one_assigned() {
    let app = spawn_app().await;
    let body = accepted(app.submit(&app.user_token(), &metadata()).await).await;
    let uid = body["imageUID"].as_str().unwrap();
    assert!(app
        .ctx
        .stores
        .viewport
        .image_uid(uid)
        .await
        .unwrap()
        .is_some());
    let assigned = app
        .ctx
        .audit
        .events_of(USER, Some(EventType::ImageUidAssigned))
        .await
        .unwrap();
    assert_eq!(assigned.len(), 1);
    assert_eq!(assigned[0].image_metadata.image_uid.as_deref(), Some(uid));
    // The assigned UID is the caller's: a second version may name it.
    let mut meta = metadata();
    meta["imageMetadata"]["imageUID"] = json!(uid);
    meta["imageMetadata"]["imageVersion"] = json!("v0-0-02");
    accepted(app.submit(&app.user_token(), &meta).await).await;
    assert_eq!(app.depth(Stage::Validate).await.visible, 2);
}

#[tokio::test]
async fn the_json_form_takes_a_data_url() {
    let app = spawn_app().await;
    let mut meta = metadata();
    meta["imageData"] = json!(png_data_url());
    let body = accepted(
        app.post_json("/api/v1/jobs", Some(&app.user_token()), &meta)
            .await,
    )
    .await;
    let job_id = body["jobId"].as_str().unwrap().parse().unwrap();
    let job = app.ctx.jobs.get(job_id).await.unwrap().unwrap();
    assert_eq!(job.request.image_data, None);
    assert_eq!(
        job.image.declared_content_type.as_deref(),
        Some("image/png")
    );
    let stored = read_all(
        app.ctx.stores.blobs.as_ref(),
        &app.ctx.settings.buckets.temporary,
        &job.image.temp_key,
    )
    .await
    .unwrap();
    assert_eq!(stored, png());
    assert_eq!(app.depth(Stage::Validate).await.visible, 1);
}

/// Submits `meta` as multipart and expects a rejection that stored nothing and was logged
/// with the validator's error PID.
async fn rejected(app: &TestApp, meta: &str, status: u16, code: &str) -> Value {
    let res = app.submit_multipart(&app.user_token(), meta, &png()).await;
    let body = error_body(res, status, code).await;
    assert_eq!(body["PID"], VALIDATOR_ERROR_PID);
    app.assert_nothing_stored(USER).await;
    body
}

#[tokio::test]
async fn malformed_metadata_json_is_400() {
    let app = spawn_app().await;
    rejected(&app, "{\"imageMetadata\": {", 400, "invalid-json").await;
    let logged = app.ctx.audit.errors_of(USER).await.unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].pid.to_string(), VALIDATOR_ERROR_PID);
    assert_eq!(logged[0].error_type, "invalid-json");
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_422_naming_the_field() {
    let app = spawn_app().await;
    let mut meta = metadata();
    meta["imageMetadata"]["port"] = json!(true);
    let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
    assert_eq!(fields(&body), ["imageMetadata.port"]);

    let body = rejected(&app, "{\"userMetadata\": {}}", 422, "validation-failed").await;
    assert_eq!(fields(&body), ["imageMetadata"]);

    let mut meta = metadata();
    let image = meta["imageMetadata"].as_object_mut().unwrap();
    image.remove("imageName");
    image.remove("imageCategory");
    image.remove("part");
    let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
    assert_eq!(
        fields(&body),
        [
            "imageMetadata.imageName",
            "imageMetadata.imageCategory",
            "imageMetadata.Part"
        ]
    );
}

#[tokio::test]
async fn every_broken_rule_is_reported_at_once() {
    let app = spawn_app().await;
    let mut meta = metadata();
    let image = &mut meta["imageMetadata"];
    image["imageVersion"] = json!("version one");
    image["port"] = json!(70000);
    image["envVars"] = json!([{"key": "1BAD", "value": "x"}]);
    image["volumes"] = json!([{"key": "relative/path", "value": "/data"}]);
    image["imageLabels"] = json!([{"key": "-bad-", "value": "ok"}]);
    let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
    assert_eq!(
        fields(&body),
        [
            "imageMetadata.imageVersion",
            "imageMetadata.port",
            "imageMetadata.envVars[0].key",
            "imageMetadata.volumes[0].key",
            "imageMetadata.imageLabels[0].key",
        ]
    );
    let logged = app.ctx.audit.errors_of(USER).await.unwrap();
    assert_eq!(logged[0].reasons.len(), 5);
}

#[tokio::test]
async fn a_bad_version_and_an_out_of_range_port_are_422() {
    let app = spawn_app().await;
    let mut meta = metadata();
    meta["imageMetadata"]["imageVersion"] = json!("v0-0");
    let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
    assert_eq!(fields(&body), ["imageMetadata.imageVersion"]);
    let mut meta = metadata();
    meta["imageMetadata"]["port"] = json!("0");
    let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
    assert_eq!(fields(&body), ["imageMetadata.port"]);
}

#[tokio::test]
async fn a_uid_that_is_malformed_unknown_or_someone_elses_is_422() {
    let app = spawn_app().await;
    let theirs = app.assign_uid(OTHER).await;
    for uid in ["short".to_owned(), "A".repeat(60), theirs] {
        let mut meta = metadata();
        meta["imageMetadata"]["imageUID"] = json!(uid);
        let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
        assert_eq!(fields(&body), ["imageMetadata.imageUID"], "{uid}");
    }
}

#[tokio::test]
async fn another_users_name_in_the_body_is_403() {
    let app = spawn_app().await;
    let mut meta = metadata();
    meta["userMetadata"]["username"] = json!(OTHER);
    rejected(&app, &meta.to_string(), 403, "forbidden").await;
}

#[tokio::test]
async fn another_viewport_user_as_post_author_is_403_unless_an_admin_asks() {
    let app = spawn_app().await;
    let mut meta = metadata();
    meta["postMetadata"]["postData"]["post_author"] = json!(4); // k8or_admin's wp_users ID
    let body = rejected(&app, &meta.to_string(), 403, "forbidden").await;
    assert!(
        body["message"].as_str().unwrap().contains("k8or_admin"),
        "{body}"
    );

    // An admin may publish as jamesbond.
    let mut meta = metadata();
    meta["userMetadata"]["username"] = json!(ADMIN);
    let body = accepted(app.submit(&app.admin_token(), &meta).await).await;
    let job_id: uuid::Uuid = body["jobId"].as_str().unwrap().parse().unwrap();
    let job = app.ctx.jobs.get(job_id).await.unwrap().unwrap();
    assert_eq!(job.username, ADMIN);
    assert_eq!(job.request.post_metadata.post_data.post_author, Some(2));
    assert!(job.author_checked, "publish may take the author");
}

#[tokio::test]
async fn a_post_author_who_is_no_viewport_user_is_422() {
    let app = spawn_app().await;
    let mut meta = metadata();
    meta["postMetadata"]["postData"]["post_author"] = json!(99);
    meta["imageMetadata"]["imageVersion"] = json!("v0-0");
    let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
    assert_eq!(
        fields(&body),
        [
            "imageMetadata.imageVersion",
            "postMetadata.postData.post_author"
        ]
    );
}

#[tokio::test]
async fn an_empty_image_is_422() {
    let app = spawn_app().await;
    let res = app
        .submit_multipart(&app.user_token(), &metadata().to_string(), &[])
        .await;
    error_body(res, 422, "empty-image").await;
    app.assert_nothing_stored(USER).await;

    let mut meta = metadata();
    meta["imageData"] = json!("data:image/png;base64,");
    let res = app
        .post_json("/api/v1/jobs", Some(&app.user_token()), &meta)
        .await;
    error_body(res, 422, "empty-image").await;
    app.assert_nothing_stored(USER).await;
}

#[tokio::test]
async fn a_data_url_that_is_not_base64_is_422() {
    let app = spawn_app().await;
    for url in [
        "data:image/png;base64,@@@ not base64 @@@",
        "data:image/png,rawbytes",
        "https://example.invalid/x.png",
        "data:image/png\u{0}x;base64,iVBORw0KGgo=",
        "data:im\u{e9}ge/png;base64,iVBORw0KGgo=",
    ] {
        let mut meta = metadata();
        meta["imageData"] = json!(url);
        let res = app
            .post_json("/api/v1/jobs", Some(&app.user_token()), &meta)
            .await;
        let body = error_body(res, 422, "invalid-data-url").await;
        assert_eq!(body["PID"], VALIDATOR_ERROR_PID);
        app.assert_nothing_stored(USER).await;
    }
    // And the JSON form without any image names the missing field with the others.
    let mut meta = metadata();
    meta["imageMetadata"]["imageVersion"] = json!("bad");
    let res = app
        .post_json("/api/v1/jobs", Some(&app.user_token()), &meta)
        .await;
    let body = error_body(res, 422, "validation-failed").await;
    assert_eq!(fields(&body), ["imageMetadata.imageVersion", "imageData"]);
}

#[tokio::test]
async fn an_oversized_image_is_413_and_leaves_nothing() {
    let app = spawn_app_with(|s| s.limits.upload_max_bytes = 64 * 1024).await;
    let big = vec![7u8; 100 * 1024];
    let res = app
        .submit_multipart(&app.user_token(), &metadata().to_string(), &big)
        .await;
    let body = error_body(res, 413, "payload-too-large").await;
    assert_eq!(body["message"], "the body is over the 65536-byte limit");
    app.assert_nothing_stored(USER).await;
    // Just under the cap is fine.
    let fits = vec![7u8; 60 * 1024];
    let res = app
        .submit_multipart(&app.user_token(), &metadata().to_string(), &fits)
        .await;
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn an_oversized_json_form_is_413() {
    let app = spawn_app_with(|s| s.limits.json_max_bytes = 8 * 1024).await;
    let mut meta = metadata();
    meta["imageData"] = json!(format!("data:image/png;base64,{}", "A".repeat(16 * 1024)));
    let res = app
        .post_json("/api/v1/jobs", Some(&app.user_token()), &meta)
        .await;
    error_body(res, 413, "payload-too-large").await;
    app.assert_nothing_stored(USER).await;
}

#[tokio::test]
async fn other_media_types_are_415() {
    let app = spawn_app().await;
    let res = app
        .post_raw(
            "/api/v1/jobs",
            Some(&app.user_token()),
            "text/plain",
            "hello",
        )
        .await;
    let body = error_body(res, 415, "unsupported-media-type").await;
    assert_eq!(body["PID"], VALIDATOR_ERROR_PID);
    app.assert_nothing_stored(USER).await;
}

#[tokio::test]
async fn parts_come_as_metadata_then_image() {
    let app = spawn_app().await;
    use reqwest::multipart::{Form, Part};
    let send = |form: Form| {
        app.client
            .post(app.url("/api/v1/jobs"))
            .bearer_auth(app.user_token())
            .multipart(form)
            .send()
    };
    let image_first = Form::new()
        .part("image", Part::bytes(png()))
        .part("metadata", Part::text(metadata().to_string()));
    error_body(send(image_first).await.unwrap(), 400, "invalid-multipart").await;
    app.assert_nothing_stored(USER).await;

    let no_image = Form::new().part("metadata", Part::text(metadata().to_string()));
    let body = error_body(send(no_image).await.unwrap(), 422, "validation-failed").await;
    assert_eq!(fields(&body), ["image"]);
    app.assert_nothing_stored(USER).await;

    let extra = Form::new()
        .part("metadata", Part::text(metadata().to_string()))
        .part("image", Part::bytes(png()))
        .part("image2", Part::bytes(png()));
    error_body(send(extra).await.unwrap(), 400, "invalid-multipart").await;
    app.assert_nothing_stored(USER).await;
}

#[tokio::test]
async fn a_missing_token_stores_nothing() {
    let app = spawn_app().await;
    let res = app.post_json("/api/v1/jobs", None, &metadata()).await;
    error_body(res, 401, "unauthorized").await;
    let res = app
        .post_json("/api/v1/jobs", Some(&app.expired_token(USER)), &metadata())
        .await;
    error_body(res, 401, "token-expired").await;
    app.assert_nothing_stored(USER).await;
}

#[tokio::test]
async fn a_failed_enqueue_undoes_the_job_the_event_and_the_blob() {
    // The validate queue named here was never made: the send fails after the image, the
    // job record and the event were written.
    let app = spawn_app_drifted(|s| s.stages.validate.queue = "k8or-upload-gone-que".into()).await;
    let res = app.submit(&app.user_token(), &metadata()).await;
    let body = error_body(res, 500, "internal").await;
    assert_eq!(
        body["message"], "internal error",
        "a 500 says nothing internal"
    );
    assert_eq!(app.temp_blobs(), Vec::<std::path::PathBuf>::new());
    let (jobs, _) = app.ctx.jobs.list_for_user(USER, 10, None).await.unwrap();
    assert!(jobs.is_empty(), "{jobs:?}");
    let saved = app
        .ctx
        .audit
        .events_of(USER, Some(EventType::TemporaryImageSaved))
        .await
        .unwrap();
    assert!(saved.is_empty());
    let real_queue = &k8or::Settings::default().stages.validate.queue;
    let depth = app.ctx.stores.queue.depth(real_queue).await.unwrap();
    assert_eq!(depth.visible, 0);
}

/// The fields' own bounds add up to megabytes; what a job stores must stay under what one
/// DynamoDB item holds (with kustomize's output beside it), so the whole is bounded too,
/// before the image is read. Images sent as data URLs do not count: they are not kept.
#[tokio::test]
async fn metadata_too_big_to_keep_is_422_and_stores_nothing() {
    let app = spawn_app().await;
    let mut meta = metadata();
    meta["postMetadata"]["postData"]["post_content_filtered"] = json!("x".repeat(70_000));
    let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
    assert_eq!(fields(&body), ["metadata"]);

    // Three values, each within its own bound (32,768), over the whole's.
    let mut meta = metadata();
    meta["imageMetadata"]["envVars"] = json!([
        {"key": "A", "value": "a".repeat(30_000)},
        {"key": "B", "value": "b".repeat(30_000)},
        {"key": "C", "value": "c".repeat(30_000)},
    ]);
    let body = rejected(&app, &meta.to_string(), 422, "validation-failed").await;
    assert_eq!(fields(&body), ["metadata"]);

    // Just under: kept.
    let mut meta = metadata();
    meta["imageMetadata"]["envVars"] = json!([{"key": "A", "value": "a".repeat(30_000)}]);
    accepted(app.submit(&app.user_token(), &meta).await).await;
}

#[tokio::test]
async fn an_overlong_file_name_or_type_of_the_image_is_422_and_stores_nothing() {
    use reqwest::multipart::{Form, Part};
    let app = spawn_app().await;
    for (name, mime, field) in [
        (
            "n".repeat(256) + ".png",
            "image/png".to_owned(),
            "image.filename",
        ),
        (
            "trolls.png".to_owned(),
            format!("image/png; x={}", "y".repeat(300)),
            "image.contentType",
        ),
    ] {
        let form = Form::new()
            .part(
                "metadata",
                Part::text(metadata().to_string())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "image",
                Part::bytes(png()).file_name(name).mime_str(&mime).unwrap(),
            );
        let res = reqwest::Client::new()
            .post(app.url("/api/v1/jobs"))
            .bearer_auth(app.user_token())
            .multipart(form)
            .send()
            .await
            .unwrap();
        let body = error_body(res, 422, "validation-failed").await;
        assert_eq!(fields(&body), [field]);
        app.assert_nothing_stored(USER).await;
    }

    // The JSON form's type is the data URL's media type: the same cap.
    let mut meta = metadata();
    meta["imageData"] = json!(format!(
        "data:image/{};base64,{}",
        "x".repeat(300),
        png_data_url().split_once(',').unwrap().1
    ));
    let res = app
        .post_json("/api/v1/jobs", Some(&app.user_token()), &meta)
        .await;
    let body = error_body(res, 422, "validation-failed").await;
    assert_eq!(fields(&body), ["imageData"]);
    app.assert_nothing_stored(USER).await;
}

/// The image is stored, then the request stalls where a part after it could begin, until
/// the request timeout answers 408 and drops the handler: the stored image must not stay
/// in the temporary bucket with no job to ever delete it.
#[tokio::test]
async fn a_request_cut_off_after_its_image_is_stored_leaves_no_blob() {
    use bytes::Bytes;
    use futures::StreamExt;

    let app = spawn_app_with(|s| s.limits.request_timeout_secs = 1).await;
    let boundary = "k8orTestBoundary";
    let mut sent = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\
         Content-Type: application/json\r\n\r\n{}\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"image\"; filename=\"t.png\"\r\n\
         Content-Type: image/png\r\n\r\n",
        metadata()
    )
    .into_bytes();
    sent.extend(png());
    sent.extend(format!("\r\n--{boundary}\r\nContent-Disposition: form-da").as_bytes());
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(sent))])
        .chain(futures::stream::pending());
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/jobs"))
        .bearer_auth(app.user_token())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 408);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.temp_blobs().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.assert_nothing_stored(USER).await;
}
