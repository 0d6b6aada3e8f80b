use serde_json::{json, Value};

use crate::helpers::{error_body, fields, spawn_app, LOGIC_ERROR_PID, OTHER, USER};

#[tokio::test]
async fn static_data_of_a_known_icao_code() {
    let app = spawn_app().await;
    let token = app.user_token();
    let res = app.get("/api/v1/static-data/1947", Some(&token)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "PID": "c8fms03-c8bms06-e10",
            "filter_criteria": {
                "ICAOCode": "1947",
                "aircraftTailNumber": ["41-38116", "42-13400"],
                "imageCategory": ["Games", "Movies", "Books", "Shopping", "Weather", "Video"],
                "partNumber": ["21117-1", "211-171"]
            }
        })
    );
    // The seed's own path and payload give the same answer.
    let seed = json!({"PID": "c8fms03-c8bms06-e10", "ICAOCode": "1947", "username": USER});
    let res = app
        .post_json("/upload/GetUploadImageStaticData.php", Some(&token), &seed)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), body);
}

#[tokio::test]
async fn an_unknown_icao_code_is_404() {
    let app = spawn_app().await;
    let res = app
        .get("/api/v1/static-data/9999", Some(&app.user_token()))
        .await;
    let body = error_body(res, 404, "unknown-icao-code").await;
    assert_eq!(body["PID"], LOGIC_ERROR_PID);
    let errors = app.ctx.audit.errors_of(USER).await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].error_type, "unknown-icao-code");
}

/// Longer than any table key may be (DynamoDB would refuse the lookup): a clear 400 on
/// every backend, not a 500 on AWS and a 404 here.
#[tokio::test]
async fn an_icao_code_too_long_to_look_up_is_400() {
    let app = spawn_app().await;
    let path = format!("/api/v1/static-data/{}", "A".repeat(3000));
    let res = app.get(&path, Some(&app.user_token())).await;
    let body = error_body(res, 400, "key-too-long").await;
    assert!(body["message"].as_str().unwrap().len() < 200, "{body}");
}

#[tokio::test]
async fn the_seed_static_data_route_checks_its_body() {
    let app = spawn_app().await;
    let token = app.user_token();
    let path = "/upload/GetUploadImageStaticData.php";
    let other = json!({"ICAOCode": "1947", "username": OTHER});
    error_body(
        app.post_json(path, Some(&token), &other).await,
        403,
        "forbidden",
    )
    .await;

    let res = app
        .post_raw(path, Some(&token), "application/json", "{\"ICAOCode\": ")
        .await;
    error_body(res, 400, "invalid-json").await;

    let wrong_type = json!({"ICAOCode": 1947});
    let body = error_body(
        app.post_json(path, Some(&token), &wrong_type).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(fields(&body), ["ICAOCode"]);

    let missing = json!({"username": USER});
    let body = error_body(
        app.post_json(path, Some(&token), &missing).await,
        422,
        "validation-failed",
    )
    .await;
    assert_eq!(fields(&body), ["ICAOCode"]);
    assert!(body["details"][0]["message"]
        .as_str()
        .unwrap()
        .contains("missing field"));

    let res = app
        .post_raw(path, Some(&token), "text/plain", "ICAOCode=1947")
        .await;
    error_body(res, 415, "unsupported-media-type").await;
}

#[tokio::test]
async fn users_lists_every_id_and_display_name() {
    let app = spawn_app().await;
    let token = app.user_token();
    let expected = json!({
        "PID": "c8bms06-c32bre03-e20",
        "user_data": [
            {"ID": 2, "display_name": "James Bond"},
            {"ID": 3, "display_name": "Madame Coco"},
            {"ID": 4, "display_name": "k8or Admin"}
        ]
    });
    for path in ["/api/v1/users", "/upload/GetUserDataViewPort.php"] {
        let res = app.get(path, Some(&token)).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap(), expected, "{path}");
    }
}
