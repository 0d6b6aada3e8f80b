use std::time::Duration;

use k8or::store::ReceiveOptions;
use k8or::Stage;
use serde_json::{json, Value};

use crate::helpers::{error_body, metadata, spawn_app_with, TestApp};

/// Submits a job and lets its validate message die: received once (the most this test app
/// allows) and released, so the next receive moves it to the dead-letter queue.
async fn dead_job(app: &TestApp) -> uuid::Uuid {
    let res = app.submit(&app.user_token(), &metadata()).await;
    assert_eq!(res.status(), 202);
    let body: Value = res.json().await.unwrap();
    let job_id = body["jobId"].as_str().unwrap().parse().unwrap();
    let queue = &app.ctx.settings.stages.get(Stage::Validate).queue;
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::ZERO,
        visibility_timeout: None,
    };
    let got = app.ctx.stores.queue.receive(queue, &options).await.unwrap();
    assert_eq!(got.len(), 1);
    app.ctx
        .stores
        .queue
        .change_visibility(queue, &got[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = app.ctx.stores.queue.receive(queue, &options).await.unwrap();
    assert!(
        again.is_empty(),
        "the message moved to the dead-letter queue"
    );
    // What the dead-letter monitor would record.
    app.ctx
        .jobs
        .modify(job_id, |job| {
            job.dead_letter(Stage::Validate, 1, Some("boom".into()))
        })
        .await
        .unwrap();
    job_id
}

async fn app() -> TestApp {
    spawn_app_with(|s| s.stages.validate.max_receive_count = 1).await
}

#[tokio::test]
async fn admins_list_dead_lettered_jobs_per_stage() {
    let app = app().await;
    let job = dead_job(&app).await;
    error_body(
        app.get("/api/v1/dlq", Some(&app.user_token())).await,
        403,
        "forbidden",
    )
    .await;

    let res = app
        .get("/api/v1/dlq?stage=validate", Some(&app.admin_token()))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let stages = body["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 1);
    assert_eq!(stages[0]["stage"], "validate");
    assert_eq!(stages[0]["depth"], 1);
    let jobs = stages[0]["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["jobId"], job.to_string());
    assert_eq!(jobs[0]["status"], "dead-lettered");
    assert_eq!(jobs[0]["error"], "boom");

    let res = app.get("/api/v1/dlq", Some(&app.admin_token())).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["stages"].as_array().unwrap().len(), 4);
    error_body(
        app.get("/api/v1/dlq?stage=deploy", Some(&app.admin_token()))
            .await,
        400,
        "invalid-query",
    )
    .await;
}

#[tokio::test]
async fn a_redrive_puts_the_job_back_on_its_queue() {
    let app = app().await;
    let job = dead_job(&app).await;
    let admin = app.admin_token();

    let dry = json!({"jobId": job, "dryRun": true});
    let res = app
        .post_json("/api/v1/dlq/redrive", Some(&admin), &dry)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["dryRun"], true);
    assert_eq!(body["redriven"][0]["jobId"], job.to_string());
    assert!(body["redriven"][0]["newMessageId"].is_null());
    assert_eq!(app.depth(Stage::Validate).await.visible, 0);

    let res = app
        .post_json("/api/v1/dlq/redrive", Some(&admin), &json!({"jobId": job}))
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["redriven"].as_array().unwrap().len(), 1);
    assert_eq!(app.depth(Stage::Validate).await.visible, 1);
    let record = app.ctx.jobs.get(job).await.unwrap().unwrap();
    assert_eq!(record.status.as_str(), "queued");

    // Nothing left to re-drive for that job.
    let res = app
        .post_json("/api/v1/dlq/redrive", Some(&admin), &json!({"jobId": job}))
        .await;
    error_body(res, 404, "not-found").await;
    let res = app
        .post_json("/api/v1/dlq/redrive", Some(&app.user_token()), &json!({}))
        .await;
    error_body(res, 403, "forbidden").await;
}
