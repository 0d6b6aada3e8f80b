//! `spawn_app()`: the real application on port 0, on the embedded backend in a fresh
//! temporary data folder, with helpers to call it and to look into its stores.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8or::model::EventType;
use k8or::store::{QueueDepth, ReceiveOptions};
use k8or::{Context, JobEnvelope, Settings, Stage};
use k8or_api::{Application, Claims, Role, TokenKeys};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// A valid 1×1 PNG, base64.
const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

pub fn png() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(PNG_BASE64)
        .unwrap()
}

pub const USER: &str = "jamesbond";
pub const OTHER: &str = "madamecoco";
pub const ADMIN: &str = "k8or_admin";

pub const LOGIC_ERROR_PID: &str = "c8bms06-c20bre24-EEE";
pub const VALIDATOR_ERROR_PID: &str = "c12bms03-c20bre24-EEE";

pub struct TestApp {
    pub base: String,
    pub ctx: Context,
    pub keys: Arc<TokenKeys>,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns the app with settings changed by `change` (small limits, a lower receive count…).
pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut settings = Settings {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    change(&mut settings);
    let app = Application::build(settings).await.expect("the app starts");
    serve(app, dir).await
}

/// Spawns the app on stores provisioned for the default settings, but running with
/// settings changed by `drift`: a way to make a real backend call fail (a queue that was
/// never made) without mocking anything.
pub async fn spawn_app_drifted(drift: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let settings = Settings {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    let stores = k8or::store::open(&settings).await.unwrap();
    k8or::store::provision(&stores, &settings).await.unwrap();
    let secret = k8or_api::secret::resolve(&settings).unwrap();
    let mut drifted = settings.clone();
    drift(&mut drifted);
    let app = Application::with_stores(drifted, stores, secret)
        .await
        .expect("the app starts");
    serve(app, dir).await
}

async fn serve(app: Application, dir: tempfile::TempDir) -> TestApp {
    let data_dir = app.context().settings.data_dir.clone();
    let base = format!("http://127.0.0.1:{}", app.port());
    let ctx = app.context().clone();
    let keys = app.token_keys();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        base,
        ctx,
        keys,
        client: reqwest::Client::new(),
        data_dir,
        stop: Some(stop),
        _dir: dir,
    }
}

/// A metadata payload that passes every rule (the seed's UploadImage 6.1, without UID).
pub fn metadata() -> Value {
    json!({
        "PID": "c8fms03-c8bms06-e140",
        "userMetadata": {"username": USER, "firstName": "James", "lastName": "Bond", "email": "jamesbond@k8or.com"},
        "imageMetadata": {
            "imageName": "Trolls World Tour (2020)",
            "imageVersion": "v0-0-01",
            "imageCategory": "Movie",
            "description": "The story is set in a colorful and vibrant world of the Trolls.",
            "icao": "British", "tail": "G-AAAA", "part": "21117-1", "port": 80,
            "envVars": [{"key": "VAR1", "value": "value1"}, {"key": "VAR2", "value": "value2"}],
            "volumes": [{"key": "/host/path", "value": "/container/path"}],
            "imageLabels": [{"key": "label1", "value": "value1"}],
            "commandOverride": "/app/run.sh",
            "entrypointOverride": "/app/entrypoint.sh",
            "workingDir": "/app",
            "image": "data:image/png;base64,iVBORw0KGgo"
        },
        "postMetadata": {
            "PID": "c8fms03-c8bms06-e140",
            "postData": {"post_title": "Trolls World Tour (2020)", "post_author": 2,
                         "image_data": "data:image/png;base64,iVBORw0KGgo"},
            "post_meta": [{"meta_key": "environment", "meta_value": "Testing"}]
        }
    })
}

pub fn png_data_url() -> String {
    format!("data:image/png;base64,{PNG_BASE64}")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, user: &str, role: Role) -> String {
        self.keys
            .issue(user, role, Duration::from_secs(600))
            .expect("a token")
    }

    pub fn user_token(&self) -> String {
        self.token(USER, Role::User)
    }

    pub fn admin_token(&self) -> String {
        self.token(ADMIN, Role::Admin)
    }

    pub fn expired_token(&self, user: &str) -> String {
        self.keys
            .sign(&Claims {
                sub: user.into(),
                role: Role::User,
                iat: 1_600_000_000,
                exp: 1_600_000_600,
            })
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("the request is sent")
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("the request is sent")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("the request is sent")
    }

    /// Submits as multipart: the metadata text as given, then the image.
    pub async fn submit_multipart(
        &self,
        token: &str,
        metadata: &str,
        image: &[u8],
    ) -> reqwest::Response {
        let form = Form::new()
            .part(
                "metadata",
                Part::text(metadata.to_owned())
                    .mime_str("application/json")
                    .unwrap(),
            )
            .part(
                "image",
                Part::bytes(image.to_vec())
                    .file_name("trolls.png")
                    .mime_str("image/png")
                    .unwrap(),
            );
        self.client
            .post(self.url("/api/v1/jobs"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("the request is sent")
    }

    pub async fn submit(&self, token: &str, metadata: &Value) -> reqwest::Response {
        self.submit_multipart(token, &metadata.to_string(), &png())
            .await
    }

    /// Asks for a UID as `user` and returns it.
    pub async fn assign_uid(&self, user: &str) -> String {
        let body = json!({"imageMetadata": {"imageName": "n", "imageVersion": "v0-0-01", "imageCategory": "Movie"}});
        let res = self
            .post_json("/api/v1/uids", Some(&self.token(user, Role::User)), &body)
            .await;
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        v["imageUID"].as_str().unwrap().to_owned()
    }

    /// Every file in the temporary bucket.
    pub fn temp_blobs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(
            &self
                .data_dir
                .join("blobs")
                .join(&self.ctx.settings.buckets.temporary),
            &mut out,
        );
        out
    }

    pub async fn depth(&self, stage: Stage) -> QueueDepth {
        let queue = &self.ctx.settings.stages.get(stage).queue;
        self.ctx.stores.queue.depth(queue).await.unwrap()
    }

    /// The envelopes waiting in the validate queue (received and released again).
    pub async fn queued_envelopes(&self) -> Vec<JobEnvelope> {
        let queue = &self.ctx.settings.stages.get(Stage::Validate).queue;
        let options = ReceiveOptions {
            max_messages: 10,
            wait: Duration::ZERO,
            visibility_timeout: None,
        };
        let got = self
            .ctx
            .stores
            .queue
            .receive(queue, &options)
            .await
            .unwrap();
        let mut out = Vec::new();
        for d in got {
            out.push(JobEnvelope::parse(&d.body).unwrap());
            self.ctx
                .stores
                .queue
                .change_visibility(queue, &d.receipt, Duration::ZERO)
                .await
                .unwrap();
        }
        out
    }

    /// Asserts a rejected request left nothing: no blob, no job, no queue message, no
    /// `temporary-image-saved` event, no unqueued mark.
    pub async fn assert_nothing_stored(&self, user: &str) {
        assert_eq!(
            self.temp_blobs(),
            Vec::<PathBuf>::new(),
            "blobs left behind"
        );
        let d = self.depth(Stage::Validate).await;
        assert_eq!(
            (d.visible, d.in_flight, d.delayed),
            (0, 0, 0),
            "queue message left behind"
        );
        let (jobs, _) = self.ctx.jobs.list_for_user(user, 10, None).await.unwrap();
        assert!(jobs.is_empty(), "job left behind: {jobs:?}");
        let events = self
            .ctx
            .audit
            .events_of(user, Some(EventType::TemporaryImageSaved))
            .await
            .unwrap();
        assert!(events.is_empty(), "event left behind");
        assert!(
            self.ctx.jobs.unqueued(i64::MAX).await.unwrap().is_empty(),
            "unqueued mark left behind"
        );
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Reads an error body and checks the fixed fields; returns it.
pub async fn error_body(res: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    assert!(
        res.headers().contains_key("x-request-id"),
        "every response has a request id"
    );
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/json"), "content type {ct}");
    let body: Value = res.json().await.expect("a JSON error body");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["PID"].as_str().is_some_and(|p| p.ends_with("-EEE")),
        "{body}"
    );
    body
}

/// The `details[].field` of a validation error.
pub fn fields(body: &Value) -> Vec<String> {
    body["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}
