//! The dead-letter monitor: reads every stage's dead-letter queue and, for each job the
//! queue gave up on, writes one `dead-lettered` item to user-error-log (saying why, from
//! the job's last recorded error) and marks the job "dead-lettered".
//!
//! A dead letter is only looked at, never taken: it is received with a short hold and
//! released at the end of the scan, so it stays in the queue until an operator re-drives it
//! or it expires. While held, nobody else (another monitor, a re-drive) can take it, so a
//! letter is recorded by one scan at a time.
//!
//! Reading a letter again writes nothing new: the item's subject is
//! `<jobId>#<stage>#<n>`, where `n` counts the job's dead-letterings at that stage (from
//! its history), and items are written once per subject. A job re-driven and dead-lettered
//! again gets the next `n`, so a new item.
//!
//! Where it watches validate, each round also queues the jobs an intake wrote but never
//! queued (`requeue`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8or::audit::NewError;
use k8or::jobs::JobsError;
use k8or::store::{Delivery, QueueError, ReceiveOptions, TableError};
use k8or::{Context, JobEnvelope, JobRecord, JobStatus, Stage};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

/// The `errorType` of the items this monitor writes.
pub const ERROR_TYPE: &str = "dead-lettered";
/// How long a letter stays hidden while a scan looks at it.
const HOLD: Duration = Duration::from_secs(30);
/// Letters looked at per stage and scan at most: a scan must end well within `HOLD`.
const SCAN_LIMIT: usize = 2000;
/// At most this many distinct failure causes are listed in an item's reasons.
const MAX_REASONS: usize = 10;
/// A process remembers at most this many recorded letters before it starts afresh.
const MEMORY: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("reading a dead-letter queue: {0}")]
    Queue(#[from] QueueError),
    #[error("reading or marking a job: {0}")]
    Jobs(#[from] JobsError),
    #[error("writing the error item: {0}")]
    Audit(#[from] TableError),
}

/// What a scan found of one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterState {
    /// Recorded by this scan: the error item is written and the job marked.
    Recorded,
    /// Recorded before (by this or an earlier scan, in any process).
    AlreadyRecorded,
    /// The job was published, rejected or moved past this stage since, or a re-drive moved
    /// this letter and the job is at work again: a stale copy.
    Stale,
    /// The body is not a job envelope, or names no existing job: recorded by message id.
    Unusable,
    /// Looking at it failed (its job unreadable, a store away): the next scan tries again.
    /// `last_error` says why. The scan goes on with the other letters and stages.
    Failed,
}

/// One dead letter, as a scan saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub stage: Stage,
    pub message_id: String,
    pub job_id: Option<Uuid>,
    pub image_uid: Option<String>,
    pub username: Option<String>,
    /// The stage attempts the job made before the queue gave up.
    pub attempts: Option<u32>,
    pub last_error: Option<String>,
    /// When the message was first sent (its age in the dead-letter queue and before).
    pub sent_at_ms: i64,
    pub state: LetterState,
}

/// What one scan saw, oldest letter first within each stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub letters: Vec<Letter>,
}

impl ScanReport {
    /// How many letters this scan recorded (new error items and job marks).
    pub fn recorded(&self) -> usize {
        self.letters
            .iter()
            .filter(|l| l.state == LetterState::Recorded)
            .count()
    }
}

/// Scans every stage's dead-letter queue once.
pub async fn scan_once(ctx: &Context) -> Result<ScanReport, MonitorError> {
    scan(ctx, &Stage::ALL).await
}

/// Scans the given stages' dead-letter queues once.
pub async fn scan(ctx: &Context, stages: &[Stage]) -> Result<ScanReport, MonitorError> {
    scan_with(ctx, stages, &mut HashSet::new()).await
}

/// Scans the given stages' dead-letter queues every `interval` until `stop`. Failures (the
/// backend away) are logged and the next scan tries again.
pub async fn run(ctx: Context, stages: Vec<Stage>, interval: Duration, stop: CancellationToken) {
    let mut known = HashSet::new();
    info!(
        interval_ms = interval.as_millis(),
        "dead-letter monitor started"
    );
    loop {
        match scan_with(&ctx, &stages, &mut known).await {
            Ok(report) if report.recorded() > 0 => {
                info!(recorded = report.recorded(), "dead letters recorded");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "dead-letter scan failed; trying again next interval"),
        }
        if stages.contains(&Stage::Validate) {
            if let Err(e) = crate::requeue::sweep(&ctx, crate::requeue::UNQUEUED_AFTER).await {
                warn!(error = %e, "the unqueued-job sweep failed; trying again next interval");
            }
        }
        if known.len() > MEMORY {
            known.clear();
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => break,
        }
    }
    info!("dead-letter monitor stopped");
}

/// Scans `stages`; `known` holds the message ids recorded earlier by this process, which
/// need no second look at the job.
async fn scan_with(
    ctx: &Context,
    stages: &[Stage],
    known: &mut HashSet<String>,
) -> Result<ScanReport, MonitorError> {
    let mut report = ScanReport::default();
    let mut first_error = None;
    for &stage in stages {
        let dlq = ctx.settings.stages.get(stage).dead_letter_queue.clone();
        let mut held: HashMap<String, String> = HashMap::new();
        let mut letters = Vec::new();
        let walked = walk(ctx, stage, &dlq, known, &mut held, &mut letters).await;
        for receipt in held.values() {
            match ctx
                .stores
                .queue
                .change_visibility(&dlq, receipt, Duration::ZERO)
                .await
            {
                Ok(()) | Err(QueueError::ReceiptExpired) => {}
                Err(e) => warn!(queue = %dlq, error = %e, "could not release a dead letter"),
            }
        }
        letters.sort_by_key(|l: &Letter| l.sent_at_ms);
        report.letters.extend(letters);
        // One stage's queue away must not keep the others' letters unrecorded.
        if let Err(e) = walked {
            warn!(queue = %dlq, error = %e, "could not walk a dead-letter queue");
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Receives every letter of `dlq` once (each stays held, so each receive brings new ones)
/// and records it.
async fn walk(
    ctx: &Context,
    stage: Stage,
    dlq: &str,
    known: &mut HashSet<String>,
    held: &mut HashMap<String, String>,
    letters: &mut Vec<Letter>,
) -> Result<(), MonitorError> {
    let options = ReceiveOptions {
        max_messages: 10,
        wait: Duration::ZERO,
        visibility_timeout: Some(HOLD),
    };
    while held.len() < SCAN_LIMIT {
        let got = ctx.stores.queue.receive(dlq, &options).await?;
        if got.is_empty() {
            break;
        }
        for d in got {
            if held
                .insert(d.message_id.clone(), d.receipt.clone())
                .is_some()
            {
                continue; // seen this scan already: the hold ran out
            }
            let letter = match look_at(ctx, stage, &d, known.contains(&d.message_id)).await {
                Ok(letter) => letter,
                // One letter that cannot be looked at must not hide the ones after it.
                Err(e) => {
                    warn!(message.id = %d.message_id, error = %e, "could not look at a dead letter");
                    failed(stage, &d, &e)
                }
            };
            if matches!(
                letter.state,
                LetterState::Recorded | LetterState::AlreadyRecorded
            ) {
                known.insert(d.message_id.clone());
            }
            letters.push(letter);
        }
    }
    Ok(())
}

/// A letter that could not be looked at: what its envelope says, and why.
fn failed(stage: Stage, d: &Delivery, e: &MonitorError) -> Letter {
    let env = JobEnvelope::parse(&d.body).ok();
    Letter {
        stage,
        message_id: d.message_id.clone(),
        job_id: env.as_ref().map(|e| e.job_id),
        image_uid: env.as_ref().map(|e| e.image_uid.clone()),
        username: env.map(|e| e.username),
        attempts: None,
        last_error: Some(format!("could not look at it: {e}")),
        sent_at_ms: d.sent_at_ms,
        state: LetterState::Failed,
    }
}

/// Records one letter unless recorded before.
async fn look_at(
    ctx: &Context,
    stage: Stage,
    d: &Delivery,
    known: bool,
) -> Result<Letter, MonitorError> {
    let mut letter = Letter {
        stage,
        message_id: d.message_id.clone(),
        job_id: None,
        image_uid: None,
        username: None,
        attempts: None,
        last_error: None,
        sent_at_ms: d.sent_at_ms,
        state: LetterState::AlreadyRecorded,
    };
    let env = match JobEnvelope::parse(&d.body) {
        Ok(env) => env,
        Err(e) => {
            letter.last_error = Some(format!("unreadable message: {e}"));
            return unusable(ctx, stage, d, "unknown", letter, known).await;
        }
    };
    letter.job_id = Some(env.job_id);
    letter.image_uid = Some(env.image_uid.clone());
    letter.username = Some(env.username.clone());
    let Some(job) = ctx.jobs.get(env.job_id).await? else {
        letter.last_error = Some(format!("job {} does not exist", env.job_id));
        return unusable(ctx, stage, d, &env.username, letter, known).await;
    };
    let attempts = attempts_of(ctx, &job, stage);
    let last_error = last_error_of(&job, stage, attempts);
    letter.attempts = Some(attempts);
    letter.last_error = Some(last_error.clone());
    if job.status.is_final() || job.stage.is_some_and(|s| s > stage) {
        letter.state = LetterState::Stale;
        return Ok(letter);
    }
    // A message released on its last receive is sent again as a new one (the runner's
    // release), and the job names the original: if its delete failed, it lands here while
    // the job goes on with the new message.
    if job.superseded.iter().any(|m| m == &d.message_id) {
        letter.state = LetterState::Stale;
        return Ok(letter);
    }
    if job.was_redriven_from(stage, &d.message_id) {
        // Its dead-lettering was recorded before the re-drive; no new item either way.
        let restored = ctx
            .jobs
            .modify(job.job_id, |j| j.redrive_unfinished(stage, &d.message_id))
            .await?;
        letter.state = if restored.status == JobStatus::DeadLettered {
            LetterState::AlreadyRecorded
        } else {
            LetterState::Stale
        };
        return Ok(letter);
    }
    if known {
        return Ok(letter);
    }
    let marked = job.status == JobStatus::DeadLettered && job.stage == Some(stage);
    let before = dead_letterings(&job, stage);
    let n = if marked { before } else { before + 1 };
    let subject = format!("{}#{stage}#{n}", job.job_id);
    let message =
        format!("the {stage} stage gave up after {attempts} attempt(s); last error: {last_error}");
    let written = ctx
        .audit
        .error(NewError {
            username: &job.username,
            error_type: ERROR_TYPE,
            pid: stage.error_pid(),
            subject: &subject,
            job_id: Some(job.job_id),
            stage: Some(stage.as_str()),
            message: &message,
            reasons: causes(&job, stage, &last_error),
            attempts: Some(attempts),
            request_id: None,
        })
        .await?;
    if !marked {
        ctx.jobs
            .modify(job.job_id, |j| {
                // Checked again on the job as it is now: named superseded since it was read.
                let superseded = j.superseded.iter().any(|m| m == &d.message_id);
                !superseded && j.dead_letter(stage, attempts, Some(last_error.clone()))
            })
            .await?;
    }
    if written || !marked {
        letter.state = LetterState::Recorded;
        warn!(job.id = %job.job_id, %stage, attempts, error = %last_error, "job dead-lettered");
    }
    Ok(letter)
}

/// A letter that carries no job: one item per message id.
async fn unusable(
    ctx: &Context,
    stage: Stage,
    d: &Delivery,
    username: &str,
    mut letter: Letter,
    known: bool,
) -> Result<Letter, MonitorError> {
    letter.state = LetterState::Unusable;
    if known {
        return Ok(letter);
    }
    let reason = letter.last_error.clone().unwrap_or_default();
    ctx.audit
        .error(NewError {
            username,
            error_type: ERROR_TYPE,
            pid: stage.error_pid(),
            subject: &d.message_id,
            job_id: letter.job_id,
            stage: Some(stage.as_str()),
            message: &format!("a message in the {stage} dead-letter queue carries no job"),
            reasons: vec![reason],
            attempts: None,
            request_id: None,
        })
        .await?;
    Ok(letter)
}

/// The attempts the job made at `stage`: its record's count if it is at that stage, else
/// the queue's limit (which is what dead-lettering means).
fn attempts_of(ctx: &Context, job: &JobRecord, stage: Stage) -> u32 {
    if job.stage == Some(stage) && job.attempt > 0 {
        job.attempt
    } else {
        ctx.settings.stages.get(stage).max_receive_count
    }
}

/// The job's last recorded error; a job whose attempts all ended without one (the worker
/// was killed, or its time ran out each time) says so.
fn last_error_of(job: &JobRecord, stage: Stage, attempts: u32) -> String {
    match (&job.error, job.stage == Some(stage)) {
        (Some(e), true) => e.clone(),
        _ => format!(
            "no error was recorded: each of the {attempts} attempt(s) ended without an answer \
             (the worker stopped or its visibility timeout ran out)"
        ),
    }
}

/// How often the job was dead-lettered at `stage` so far.
fn dead_letterings(job: &JobRecord, stage: Stage) -> usize {
    job.history
        .iter()
        .filter(|h| {
            h.status == JobStatus::DeadLettered && h.stage == Some(stage) && h.letter.is_none()
        })
        .count()
}

/// The distinct causes of the failed attempts since the job last came to this stage (its
/// entry or last re-drive), oldest first, ending with the last error.
fn causes(job: &JobRecord, stage: Stage, last_error: &str) -> Vec<String> {
    let since = job
        .history
        .iter()
        .rposition(|h| h.stage == Some(stage) && h.status == JobStatus::Queued)
        .map_or(0, |i| i + 1);
    let mut out: Vec<String> = Vec::new();
    for h in &job.history[since..] {
        if h.stage != Some(stage) || h.status != JobStatus::Retrying {
            continue;
        }
        if let Some(e) = &h.error {
            // The history notes the delay after the cause: "… (retry in N ms)".
            let cause = e.rsplit_once(" (retry in ").map_or(e.as_str(), |(c, _)| c);
            if !out.iter().any(|o| o == cause) {
                out.push(cause.to_owned());
            }
        }
    }
    if !out.iter().any(|o| o == last_error) {
        out.push(last_error.to_owned());
    }
    if out.len() > MAX_REASONS {
        out.drain(..out.len() - MAX_REASONS);
    }
    out
}
