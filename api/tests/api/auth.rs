use std::process::Command;

use k8or_api::{Role, TokenKeys};
use serde_json::Value;

use crate::helpers::{error_body, spawn_app, spawn_app_with, TestApp, LOGIC_ERROR_PID, USER};

#[tokio::test]
async fn a_missing_token_is_401_and_logged_as_anonymous() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/users", None).await;
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = error_body(res, 401, "unauthorized").await;
    assert_eq!(body["PID"], LOGIC_ERROR_PID);

    let errors = app.ctx.audit.errors_of("anonymous").await.unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.error_type, "unauthorized");
    assert_eq!(e.pid.to_string(), LOGIC_ERROR_PID);
    assert_eq!(e.request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(e.error_key, format!("unauthorized#{request_id}"));
}

#[tokio::test]
async fn forged_malformed_and_expired_tokens_are_refused() {
    let app = spawn_app().await;
    let forger = TokenKeys::new(b"not the server's secret, but long enough");
    let forged = forger
        .issue(USER, Role::Admin, std::time::Duration::from_secs(60))
        .unwrap();
    error_body(
        app.get("/api/v1/users", Some(&forged)).await,
        401,
        "unauthorized",
    )
    .await;
    error_body(
        app.get("/api/v1/users", Some("abc.def.ghi")).await,
        401,
        "unauthorized",
    )
    .await;
    let res = app
        .client
        .get(app.url("/api/v1/users"))
        .header("authorization", "Basic amFtZXM6Ym9uZA==")
        .send()
        .await
        .unwrap();
    error_body(res, 401, "unauthorized").await;
    let expired = app.expired_token(USER);
    error_body(
        app.get("/api/v1/users", Some(&expired)).await,
        401,
        "token-expired",
    )
    .await;
    // A refused token names no user: its errors are anonymous.
    assert_eq!(app.ctx.audit.errors_of("anonymous").await.unwrap().len(), 4);
    assert!(app.ctx.audit.errors_of(USER).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_user_is_not_an_admin() {
    let app = spawn_app().await;
    let res = app.get("/api/v1/dlq", Some(&app.user_token())).await;
    let body = error_body(res, 403, "forbidden").await;
    assert_eq!(body["PID"], LOGIC_ERROR_PID);
    // A known user's error is logged under their name.
    assert_eq!(app.ctx.audit.errors_of(USER).await.unwrap().len(), 1);
}

fn k8or_api(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_k8or-api"));
    cmd.env_clear()
        .env("K8OR_DATA_DIR", data_dir)
        .current_dir(data_dir.parent().unwrap());
    cmd
}

#[test]
fn the_token_command_signs_with_the_data_dir_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = k8or_api(&data)
        .args([
            "token",
            "--user",
            "k8or_admin",
            "--role",
            "admin",
            "--ttl",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let secret = std::fs::read_to_string(data.join("token-secret")).unwrap();
    let claims = TokenKeys::new(secret.trim().as_bytes())
        .verify(token.trim())
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.role),
        ("k8or_admin", Role::Admin)
    );
    assert!(claims.exp - claims.iat <= 3600);
}

#[test]
fn the_aws_backend_needs_a_configured_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = k8or_api(&data)
        .env("K8OR_BACKEND", "aws")
        .args(["token", "--user", "jamesbond", "--role", "user"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("K8OR_TOKEN_SECRET"), "{stderr}");
    let out = k8or_api(&data)
        .env("K8OR_BACKEND", "aws")
        .env("K8OR_TOKEN_SECRET", "0123456789abcdef0123456789abcdef")
        .args(["token", "--user", "jamesbond", "--role", "user"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let claims: Value = serde_json::to_value(
        TokenKeys::new(b"0123456789abcdef0123456789abcdef")
            .verify(token.trim())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "jamesbond");
}

/// Errors without a token cost a table write each under one key, and anyone can make
/// them: a minute records at most `limits.anonymous_errors_per_minute`, the rest are only
/// counted. A user's own errors are recorded from their own budget.
#[tokio::test]
async fn anonymous_errors_are_recorded_up_to_a_budget_then_only_counted() {
    let budget = 4;
    let app = spawn_app_with(|s| s.limits.anonymous_errors_per_minute = budget).await;
    let budget = budget as usize;
    for _ in 0..budget + 5 {
        error_body(app.get("/api/v1/users", None).await, 401, "unauthorized").await;
    }
    let recorded = app.ctx.audit.errors_of("anonymous").await.unwrap();
    assert_eq!(recorded.len(), budget);
    assert_unrecorded_at_least(&app, 5.0).await;

    let res = app.get("/api/v1/dlq", Some(&app.user_token())).await;
    error_body(res, 403, "forbidden").await;
    assert_eq!(app.ctx.audit.errors_of(USER).await.unwrap().len(), 1);
}

/// The API's count of errors not recorded is at least `n` (the registry is the process's,
/// shared by the tests in it, so only a lower bound is this test's).
async fn assert_unrecorded_at_least(app: &TestApp, n: f64) {
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let unrecorded = metrics
        .lines()
        .find(|l| l.starts_with("k8or_errors_unrecorded_total"))
        .expect("the counter is exposed");
    let got: f64 = unrecorded.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(got >= n, "{unrecorded}");
}

/// A token is no licence to fill the error log: a user's errors are recorded up to
/// `limits.user_errors_per_minute`, the rest only counted; another user's have their own.
#[tokio::test]
async fn a_users_errors_are_recorded_up_to_their_budget_then_only_counted() {
    let app = spawn_app_with(|s| s.limits.user_errors_per_minute = 3).await;
    for _ in 0..8 {
        let res = app.get("/api/v1/dlq", Some(&app.user_token())).await;
        error_body(res, 403, "forbidden").await;
    }
    assert_eq!(app.ctx.audit.errors_of(USER).await.unwrap().len(), 3);
    assert_unrecorded_at_least(&app, 5.0).await;

    let other = app.token("madamecoco", Role::User);
    let res = app.get("/api/v1/dlq", Some(&other)).await;
    error_body(res, 403, "forbidden").await;
    assert_eq!(
        app.ctx.audit.errors_of("madamecoco").await.unwrap().len(),
        1
    );
}
