use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::spawn_app;

/// Every route of the fixed interface (ARCHITECTURE.md), as (method, path).
const INTERFACE: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/static-data/{icaoCode}"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/uids"),
    ("post", "/api/v1/jobs"),
    ("get", "/api/v1/jobs"),
    ("get", "/api/v1/jobs/{jobId}"),
    ("get", "/api/v1/dlq"),
    ("post", "/api/v1/dlq/redrive"),
    ("post", "/upload/GetUploadImageStaticData.php"),
    ("get", "/upload/GetUserDataViewPort.php"),
    ("post", "/upload/AssignImageUID.php"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document() -> (crate::helpers::TestApp, Value) {
    let app = spawn_app().await;
    let res = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    (app, doc)
}

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            if METHODS.contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()));
            }
        }
    }
    out
}

/// Every `$ref` in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "$ref" {
                    out.push(child.as_str().unwrap());
                } else {
                    refs(child, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_valid_openapi() {
    let (_app, doc) = document().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    // It reads back as an OpenAPI document.
    serde_json::from_value::<utoipa::openapi::OpenApi>(doc.clone()).expect("an OpenAPI 3 document");
    // Every reference resolves.
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "dangling reference {r}");
    }
    // Every operation says what it answers; every protected one names the bearer scheme.
    assert!(doc.pointer("/components/securitySchemes/bearer").is_some());
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} lists no responses"
        );
        let open = [
            "/",
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/openapi.json",
        ];
        if !open.contains(&path.as_str()) {
            assert!(
                op["security"].is_array(),
                "{method} {path} names no security"
            );
        }
    }
}

#[tokio::test]
async fn the_document_lists_every_route_and_the_router_serves_each() {
    let (app, doc) = document().await;
    let listed = operations(&doc);
    let interface: BTreeSet<(String, String)> = INTERFACE
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed, interface, "the document and the interface differ");

    // Walk the document: every operation reaches a handler (no router 404 or 405).
    let token = app.admin_token();
    for (method, path) in listed {
        let concrete = path
            .replace("{icaoCode}", "1947")
            .replace("{jobId}", "0190c6f2-7c1e-7000-8000-000000000000");
        let req = match method.as_str() {
            "get" => app.client.get(app.url(&concrete)),
            "post" => app
                .client
                .post(app.url(&concrete))
                .header("content-type", "application/json")
                .body("{}"),
            other => panic!("unexpected method {other}"),
        };
        let res = req.bearer_auth(&token).send().await.unwrap();
        let status = res.status().as_u16();
        assert_ne!(status, 405, "{method} {path}");
        if status == 404 {
            let body: Value = res.json().await.unwrap();
            assert!(
                !body["message"].as_str().unwrap().starts_with("no route"),
                "{method} {path} is documented but not routed"
            );
        }
    }
}
