use k8or::Stage;
use k8or_api::Role;
use serde_json::Value;

use crate::helpers::{
    error_body, metadata, spawn_app, TestApp, ADMIN, LOGIC_ERROR_PID, OTHER, USER,
};

async fn submit(app: &TestApp, user: &str) -> String {
    let mut meta = metadata();
    meta["userMetadata"]["username"] = user.into();
    // The post as the user's own (the payload names jamesbond's wp_users ID).
    meta["postMetadata"]["postData"]
        .as_object_mut()
        .unwrap()
        .remove("post_author");
    let res = app.submit(&app.token(user, Role::User), &meta).await;
    assert_eq!(res.status(), 202);
    res.json::<Value>().await.unwrap()["jobId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_user_sees_their_job_and_not_anothers() {
    let app = spawn_app().await;
    let job = submit(&app, USER).await;
    let path = format!("/api/v1/jobs/{job}");

    let res = app.get(&path, Some(&app.user_token())).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["jobId"], job.as_str());
    assert_eq!(body["status"], "queued");
    assert_eq!(body["statusUrl"], path.as_str());
    assert_eq!(body["history"][0]["PID"], "c12bms03-c16bre03-e50");

    // Another user's job is as absent as a job that does not exist.
    let res = app.get(&path, Some(&app.token(OTHER, Role::User))).await;
    let body = error_body(res, 404, "not-found").await;
    assert_eq!(body["PID"], LOGIC_ERROR_PID);
    let missing = format!("/api/v1/jobs/{}", uuid::Uuid::now_v7());
    error_body(
        app.get(&missing, Some(&app.user_token())).await,
        404,
        "not-found",
    )
    .await;
    error_body(
        app.get("/api/v1/jobs/not-a-uuid", Some(&app.user_token()))
            .await,
        404,
        "not-found",
    )
    .await;

    // An admin sees every job.
    let res = app.get(&path, Some(&app.admin_token())).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_users_jobs_list_newest_first_in_pages() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(submit(&app, USER).await);
    }
    submit(&app, OTHER).await;
    ids.reverse();

    let token = app.user_token();
    let res = app.get("/api/v1/jobs?limit=2", Some(&token)).await;
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    let got: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    let next = page["next"].as_str().expect("a next cursor");

    let res = app
        .client
        .get(app.url("/api/v1/jobs"))
        .query(&[("limit", "2"), ("cursor", next)])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let page: Value = res.json().await.unwrap();
    let got: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str()]);
    assert!(page.get("next").is_none_or(Value::is_null), "{page}");

    let res = app
        .client
        .get(app.url("/api/v1/jobs"))
        .query(&[("cursor", "not one of ours!")])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    error_body(res, 400, "invalid-query").await;
}

#[tokio::test]
async fn only_admins_list_another_users_jobs() {
    let app = spawn_app().await;
    submit(&app, OTHER).await;
    let path = format!("/api/v1/jobs?username={OTHER}");
    error_body(
        app.get(&path, Some(&app.user_token())).await,
        403,
        "forbidden",
    )
    .await;
    let res = app.get(&path, Some(&app.token(ADMIN, Role::Admin))).await;
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.unwrap();
    assert_eq!(page["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page["jobs"][0]["username"], OTHER);
    // A user naming themself is fine.
    let res = app
        .get(
            &format!("/api/v1/jobs?username={USER}"),
            Some(&app.user_token()),
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn bad_list_queries_are_400() {
    let app = spawn_app().await;
    let token = app.user_token();
    for q in ["limit=0", "limit=101", "limit=many"] {
        let res = app.get(&format!("/api/v1/jobs?{q}"), Some(&token)).await;
        error_body(res, 400, "invalid-query").await;
    }
}

/// A GET's JSON body.
async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    app.get(path, Some(token)).await.json().await.unwrap()
}

/// A backend's error text (table, host and driver names) is for operators: the job's owner
/// reads that the stage failed on our side; a rejection's reasons are theirs to read.
#[tokio::test]
async fn a_user_sees_rejections_but_not_backend_errors() {
    let app = spawn_app().await;
    let secret = "table k8or-upload-job-1630-tbl-k8d-aws: Access denied for user 'k8or'@'10.0.3.7'";
    let failed: uuid::Uuid = submit(&app, USER).await.parse().unwrap();
    app.ctx
        .jobs
        .modify(failed, |job| {
            job.retrying(Stage::Validate, 1, secret, 1000)
                && job.dead_letter(Stage::Validate, 1, Some(secret.into()))
        })
        .await
        .unwrap();
    let path = format!("/api/v1/jobs/{failed}");
    let shown: Value = get_json(&app, &path, &app.user_token()).await;
    assert_eq!(shown["status"], "dead-lettered");
    let text = shown.to_string();
    assert!(!text.contains("Access denied"), "{text}");
    assert!(
        shown["error"].as_str().unwrap().contains("on our side"),
        "{shown}"
    );
    let listed: Value = get_json(&app, "/api/v1/jobs", &app.user_token()).await;
    assert!(!listed.to_string().contains("Access denied"), "{listed}");
    // An admin reads the cause.
    let admin: Value = get_json(&app, &path, &app.admin_token()).await;
    assert_eq!(admin["error"], secret);

    let rejected: uuid::Uuid = submit(&app, USER).await.parse().unwrap();
    let reasons = vec!["the PNG is truncated".to_owned()];
    app.ctx
        .jobs
        .modify(rejected, |job| {
            job.reject(Stage::Validate, 1, reasons.clone())
        })
        .await
        .unwrap();
    let shown: Value = get_json(&app, &format!("/api/v1/jobs/{rejected}"), &app.user_token()).await;
    assert_eq!(shown["error"], "the PNG is truncated");
    assert_eq!(shown["reasons"], serde_json::json!(reasons));
}
