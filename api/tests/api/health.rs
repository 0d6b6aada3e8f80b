use serde_json::Value;

use crate::helpers::{error_body, spawn_app, spawn_app_with, LOGIC_ERROR_PID, USER};

#[tokio::test]
async fn liveness_and_readiness_need_no_token() {
    let app = spawn_app().await;
    let res = app.get("/healthz", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");

    let res = app.get("/readyz", None).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    for backend in ["queue", "tables", "viewport"] {
        assert_eq!(body["checks"][backend], "ok", "{body}");
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/healthz", None).await;
    app.get("/api/v1/users", None).await;
    let res = app.get("/metrics", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let counted = |route: &str, status: &str| {
        text.lines().any(|l| {
            l.starts_with("k8or_http_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("status=\"{status}\""))
        })
    };
    assert!(counted("/healthz", "200"), "{text}");
    assert!(counted("/api/v1/users", "401"), "{text}");
}

#[tokio::test]
async fn the_board_is_served_with_a_strict_policy() {
    let app = spawn_app().await;
    let res = app.get("/", None).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = res.text().await.unwrap();
    assert!(html.contains("/board/app.js"));
    for (file, kind) in [("app.js", "text/javascript"), ("style.css", "text/css")] {
        let res = app.get(&format!("/board/{file}"), None).await;
        assert_eq!(res.status(), 200, "{file}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{file}: {ct}");
    }
    for missing in [
        "/board/package.json",
        "/board/..%2FCargo.toml",
        "/board/test",
    ] {
        assert_eq!(app.get(missing, None).await.status(), 404, "{missing}");
    }
}

#[tokio::test]
async fn request_ids_are_made_or_kept() {
    let app = spawn_app().await;
    let res = app.get("/healthz", None).await;
    let made = res.headers()["x-request-id"].to_str().unwrap();
    assert!(!made.is_empty());
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-42");

    // Not plain, or too long: replaced by one the server makes.
    for sent in ["has space#and-hash".to_owned(), "x".repeat(65)] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", &sent)
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{sent} -> {id}");
    }
}

/// A client may send one id with every request: each error is logged all the same.
#[tokio::test]
async fn errors_of_requests_sharing_a_client_id_are_all_logged() {
    let app = spawn_app().await;
    for _ in 0..2 {
        let res = app
            .client
            .get(app.url("/api/v1/jobs/not-a-uuid"))
            .bearer_auth(app.user_token())
            .header("x-request-id", "same-id")
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["x-request-id"], "same-id");
        error_body(res, 404, "not-found").await;
    }
    let errors = app.ctx.audit.errors_of(USER).await.unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in &errors {
        assert_eq!(e.request_id.as_deref(), Some("same-id"));
    }
    assert_ne!(errors[0].error_key, errors[1].error_key);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let body = error_body(app.get("/nope", None).await, 404, "not-found").await;
    assert_eq!(body["PID"], LOGIC_ERROR_PID);
    let res = app
        .client
        .delete(app.url("/api/v1/users"))
        .send()
        .await
        .unwrap();
    error_body(res, 405, "method-not-allowed").await;
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let app = spawn_app_with(|s| s.limits.cors_origins = vec!["http://board.test".into()]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let res = preflight("http://board.test").await.unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://board.test"
    );
    let res = preflight("http://elsewhere.test").await.unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
    // Without configured origins there is no CORS at all.
    let plain = spawn_app().await;
    let res = plain
        .client
        .get(plain.url("/healthz"))
        .header("origin", "http://board.test")
        .send()
        .await
        .unwrap();
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}
