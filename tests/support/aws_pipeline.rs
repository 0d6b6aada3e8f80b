//! The whole pipeline in AWS mode as separate processes: `k8or-worker provision`, then
//! `k8or-api serve` and `k8or-worker run` (every stage) on one test's moto resources and
//! database; uploads over HTTP with a token from `k8or-api token`; the job polled until it
//! ends; both processes stopped with SIGTERM. Needs `processes`, `api_process`, `http` and
//! `aws_stack` as sibling modules.

#![allow(dead_code, reason = "each test target uses a different part")]

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use k8or::JobStatus;
use serde_json::Value;
use tempfile::TempDir;
use uuid::Uuid;

use crate::api_process::{self, Api};
use crate::aws_stack::AwsStack;
use crate::http::{self, Part};
use crate::processes::{Worker, WorkerSpec};

/// How long a job may take from submission to a final status.
const JOB_DEADLINE: Duration = Duration::from_secs(60);

/// The API and the workers, running.
pub struct RunningPipeline {
    pub api: Api,
    pub worker: Worker,
    pub token: String,
    /// The processes' working folder and logs.
    pub dir: TempDir,
}

/// How the processes ended.
pub struct Stopped {
    pub api: ExitStatus,
    pub worker: ExitStatus,
}

impl RunningPipeline {
    /// Provisions the stack's resources with `k8or-worker provision`, then starts the API
    /// and a worker for every stage.
    pub fn start(stack: &AwsStack) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = stack.child_env();
        api_process::provision(&env, dir.path());
        let api = Api::start(&env, dir.path());
        let worker = Worker::start(
            &WorkerSpec {
                env: env.clone(),
                faults: String::new(),
                grace_secs: 10,
                log_dir: dir.path().to_owned(),
            },
            "worker",
        );
        let token = api_process::token(&env, "jamesbond", "user", dir.path());
        Self {
            api,
            worker,
            token,
            dir,
        }
    }

    /// POST /api/v1/jobs as multipart (`metadata`, then `image`): the 202 body.
    pub async fn submit(&self, metadata: &Value, image: &[u8], content_type: &str) -> Value {
        let json = serde_json::to_vec(metadata).expect("metadata serializes");
        let (form_type, body) = http::multipart(&[
            Part {
                name: "metadata",
                file_name: None,
                content_type: "application/json",
                data: &json,
            },
            Part {
                name: "image",
                file_name: Some("trolls.png"),
                content_type,
                data: image,
            },
        ]);
        let auth = format!("Bearer {}", self.token);
        let response = http::request(
            self.api.addr,
            "POST",
            "/api/v1/jobs",
            &[("Authorization", &auth), ("Content-Type", &form_type)],
            &body,
        )
        .await
        .expect("POST /api/v1/jobs");
        assert_eq!(
            response.status,
            202,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        let view = response.json();
        let job_id = view["jobId"].as_str().expect("jobId");
        assert_eq!(
            response.header("Location"),
            Some(format!("/api/v1/jobs/{job_id}").as_str())
        );
        view
    }

    /// Polls GET /api/v1/jobs/{id} until the job is published or rejected.
    pub async fn wait_final(&self, job_id: Uuid) -> Value {
        let until = Instant::now() + JOB_DEADLINE;
        let path = format!("/api/v1/jobs/{job_id}");
        loop {
            let response = http::get(self.api.addr, &path, &self.token)
                .await
                .expect("GET the job");
            assert_eq!(
                response.status,
                200,
                "{}",
                String::from_utf8_lossy(&response.body)
            );
            let view = response.json();
            let status: JobStatus =
                serde_json::from_value(view["status"].clone()).expect("a job status");
            if status.is_final() {
                return view;
            }
            assert!(
                Instant::now() < until,
                "job {job_id} is still {status} after {JOB_DEADLINE:?}: {view:#}\n\
                 --- api log\n{}\n--- worker log\n{}",
                self.api.log_tail(),
                self.worker.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM to both (the workers first, so no job is left half-done by a vanished API),
    /// and their exit statuses.
    pub fn stop(self) -> Stopped {
        let worker_log = self.worker.log.clone();
        let worker = self.worker.stop();
        let api_log = self.api.log.clone();
        let api = self.api.stop();
        assert!(
            worker.success() && api.success(),
            "worker {worker}, api {api}\n--- api log\n{}\n--- worker log\n{}",
            api_process::tail(&api_log),
            api_process::tail(&worker_log)
        );
        Stopped { api, worker }
    }
}

/// Every key in a bucket (the raw S3 listing: the Blobs port has no list).
pub async fn bucket_keys(stack: &AwsStack, bucket: &str) -> Vec<String> {
    let clients = stack.clients().await;
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = clients
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.take())
            .send()
            .await
            .unwrap_or_else(|e| panic!("list {bucket}: {e:?}"));
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
    }
    keys.sort();
    keys
}
