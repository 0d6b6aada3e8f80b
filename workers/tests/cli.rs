//! The `k8or-worker` binary on an embedded data folder shared with the test: `provision`,
//! `run` stopped by SIGTERM, and `dlq list` / `dlq redrive` on a dead-lettered job.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chrono::Utc;
use k8or::job::StoredImage;
use k8or::store::ReceiveOptions;
use k8or::{Context, JobEnvelope, JobRecord, JobStatus, Settings, Stage};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_k8or-worker");

fn worker(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("K8OR_DATA_DIR", dir.join("data"))
        .env("K8OR_STAGES__VALIDATE__MAX_RECEIVE_COUNT", "1")
        .env("RUST_LOG", "info")
        .current_dir(dir);
    c
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "k8or-worker failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn context(dir: &Path) -> Context {
    let mut settings = Settings {
        data_dir: dir.join("data"),
        ..Settings::default()
    };
    settings.stages.validate.max_receive_count = 1;
    let stores = k8or::store::open(&settings).await.unwrap();
    Context::new(settings, stores)
}

async fn submit(ctx: &Context) -> JobRecord {
    let request = serde_json::from_value(serde_json::json!({
        "imageMetadata": {"imageName": "n", "imageVersion": "v0-0-01", "imageCategory": "c"},
        "userMetadata": {"username": "jamesbond"}
    }))
    .unwrap();
    let image = StoredImage {
        temp_key: "uploads/none/image".into(),
        size: 0,
        sha256: String::new(),
        declared_content_type: None,
        file_name: None,
    };
    let job = JobRecord::new(
        Uuid::now_v7(),
        "jamesbond".into(),
        "UID".into(),
        request,
        image,
        Utc::now(),
    );
    ctx.jobs.create(&job).await.unwrap();
    let env = JobEnvelope::new(
        job.job_id,
        "UID".into(),
        "jamesbond".into(),
        Stage::Validate,
    );
    ctx.enqueue(&env, Duration::ZERO, Default::default())
        .await
        .unwrap();
    job
}

#[tokio::test]
async fn provision_then_dead_letters_are_listed_and_redriven() {
    let dir = tempfile::tempdir().unwrap();
    let first = ok(worker(dir.path()).arg("provision").output().unwrap());
    assert!(
        first.contains("created  queue k8or-upload-validate-que-k8d-aws"),
        "{first}"
    );
    let again = ok(worker(dir.path()).arg("provision").output().unwrap());
    assert!(again.contains("nothing changed"), "{again}");

    let ctx = context(dir.path()).await;
    let job = submit(&ctx).await;
    // One receive without a delete uses up the single allowed receive: the next receive
    // moves the message to the dead-letter queue.
    let queue = &ctx.settings.stages.validate.queue;
    let options = ReceiveOptions {
        max_messages: 1,
        wait: Duration::from_secs(2),
        visibility_timeout: None,
    };
    let d = ctx
        .stores
        .queue
        .receive(queue, &options)
        .await
        .unwrap()
        .pop()
        .unwrap();
    ctx.stores
        .queue
        .change_visibility(queue, &d.receipt, Duration::ZERO)
        .await
        .unwrap();
    let quick = ReceiveOptions {
        wait: Duration::ZERO,
        ..options
    };
    assert!(ctx
        .stores
        .queue
        .receive(queue, &quick)
        .await
        .unwrap()
        .is_empty());
    ctx.jobs
        .modify(job.job_id, |j| {
            j.dead_letter(Stage::Validate, 1, Some("poisoned".into()))
        })
        .await
        .unwrap();

    let list = ok(worker(dir.path())
        .args(["dlq", "list", "--stage", "validate"])
        .output()
        .unwrap());
    let line = list
        .lines()
        .find(|l| l.contains(&job.job_id.to_string()))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.starts_with("validate\t") && line.contains("\tUID\t") && line.ends_with("poisoned"),
        "{line}"
    );

    let id = job.job_id.to_string();
    let dry = ok(worker(dir.path())
        .args(["dlq", "redrive", "--job", &id, "--dry-run"])
        .output()
        .unwrap());
    assert!(dry.contains("would move") && dry.contains(&id), "{dry}");
    assert_eq!(
        ctx.stores.queue.depth(queue).await.unwrap().visible,
        0,
        "a dry run moves nothing"
    );

    let moved = ok(worker(dir.path())
        .args(["dlq", "redrive", "--stage", "validate", "--job", &id])
        .output()
        .unwrap());
    assert!(moved.contains("1 message(s) moved"), "{moved}");
    assert_eq!(ctx.stores.queue.depth(queue).await.unwrap().visible, 1);
    let dlq = &ctx.settings.stages.validate.dead_letter_queue;
    assert_eq!(ctx.stores.queue.depth(dlq).await.unwrap().visible, 0);
    let job = ctx.jobs.get(job.job_id).await.unwrap().unwrap();
    assert_eq!(
        (job.status, job.attempt),
        (JobStatus::Queued, 0),
        "re-driven: attempts start again"
    );

    let missing = worker(dir.path())
        .args(["dlq", "redrive", "--job", &Uuid::now_v7().to_string()])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "an unknown job is an error");
}

/// Processes starting at once on a new data folder (an API and its workers on a first boot)
/// each open the same new SQLite files: none may find them locked and give up.
#[test]
fn processes_starting_at_once_on_a_new_folder_all_open_it() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..8)
            .map(|_| {
                worker(dir.path())
                    .arg("provision")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "exit {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[tokio::test]
async fn run_works_until_sigterm_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let child = worker(dir.path())
        .args(["run", "--stages", "validate"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `run` provisions the embedded stores itself; wait until the queue and the job table
    // are there.
    let ctx = context(dir.path()).await;
    let queue = ctx.settings.stages.validate.queue.clone();
    let mut ready = false;
    for _ in 0..200 {
        let queue_ready = ctx.stores.queue.depth(&queue).await.is_ok();
        if queue_ready && ctx.jobs.get(Uuid::nil()).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the worker never provisioned its queue and tables");
    // The job's upload is missing, so validation rejects it: proof that the worker ran it.
    let job = submit(&ctx).await;
    let mut status = JobStatus::Queued;
    for _ in 0..400 {
        status = ctx.jobs.get(job.job_id).await.unwrap().unwrap().status;
        if status == JobStatus::Rejected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, JobStatus::Rejected);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {log}", out.status);
    assert!(
        log.contains("shutdown requested") && log.contains("k8or-worker stopped"),
        "{log}"
    );
}
