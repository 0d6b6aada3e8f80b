//! One attempt of a stage on a job whose envelope is sound: run the stage under a
//! visibility heartbeat, then settle the message by the result.
//!
//! The job is marked started only if the stage is still running after [`START_WRITE_AFTER`]:
//! a stage that ends sooner has its start entry (with its real time) folded into the one
//! write that records its result, which halves the job writes of a fast stage. Nothing
//! a crash could lose depends on the start entry: the message stays until after the result
//! is written, so a crash before it means a redelivery, as before.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8or::audit::NewError;
use k8or::context::TraceParent;
use k8or::store::Delivery;
use k8or::{Context, JobEnvelope, JobRecord, Stage};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::execute::{backoff_only, discard, Execution};
use super::release;
use super::{heartbeat_period, Outcome, StageError, StageHandler};

/// How long a stage may run before its start is written on its own: long enough that the
/// usual stage (milliseconds) ends first, short enough that the board shows any stage a
/// person could watch as running while it runs.
pub(super) const START_WRITE_AFTER: Duration = Duration::from_millis(100);

pub(super) struct Attempt<'a> {
    pub ctx: &'a Context,
    pub handler: &'a dyn StageHandler,
    pub delivery: &'a Delivery,
    pub queue: &'a str,
    pub env: &'a JobEnvelope,
    pub stage: Stage,
    /// This attempt's trace context: the next stage's message names it as its parent.
    pub trace: TraceParent,
    /// When the stage started, while that is not yet written to the job: the next job
    /// write of this attempt adds the start entry first.
    pub unwritten_start: Mutex<Option<DateTime<Utc>>>,
}

impl Attempt<'_> {
    fn attempt(&self) -> u32 {
        release::attempt_of(self.env, self.delivery)
    }

    pub async fn run(&self, cancel: &CancellationToken) -> Execution {
        let (stage, attempt) = (self.stage, self.attempt());
        let job = match self.ctx.jobs.get(self.env.job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                let reason = format!("job {} does not exist", self.env.job_id);
                let subject = self.env.job_id.to_string();
                return discard(
                    self.ctx,
                    stage,
                    self.queue,
                    self.delivery,
                    &self.env.username,
                    &subject,
                    reason,
                )
                .await;
            }
            Err(e) => return self.retry(e.to_string(), false).await,
        };
        if is_done_with(&job, stage) {
            return self.skip(&job).await;
        }
        // The stage sees the job as it will be stored once its start is written.
        let mut running = job.clone();
        let started_at = if running.start_stage(stage, attempt) {
            running.updated_at
        } else {
            Utc::now()
        };
        *self.start_slot() = Some(started_at);
        info!("stage started");
        let (result, stored) = self.handle_with_heartbeat(&running, job, cancel).await;
        match result {
            None => self.release().await,
            Some(Ok(outcome)) => self.finish(outcome, stored).await,
            Some(Err(StageError::Retryable(error))) => self.retry(error, true).await,
            Some(Err(StageError::Permanent(reasons))) => self.reject(reasons).await,
        }
    }

    fn start_slot(&self) -> std::sync::MutexGuard<'_, Option<DateTime<Utc>>> {
        self.unwritten_start
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds this attempt's start entry to `job` if it is not written yet and the job is
    /// not done with the stage; true if it changed the job. The entry keeps the real start
    /// time.
    fn fold_start(&self, job: &mut JobRecord) -> bool {
        let Some(at) = *self.start_slot() else {
            return false;
        };
        if is_done_with(job, self.stage) || !job.start_stage(self.stage, self.attempt()) {
            return false;
        }
        if let Some(entry) = job.history.last_mut() {
            entry.at = at;
        }
        true
    }

    /// The start entry is stored (or no longer wanted).
    fn start_written(&self) {
        *self.start_slot() = None;
    }

    /// Writes the start on its own, for a stage that runs long enough for the board to
    /// show it running. `known` is the job as last read; returns the job as stored.
    async fn write_start(&self, known: JobRecord) -> Option<JobRecord> {
        match self
            .ctx
            .jobs
            .modify_from(known, |job| self.fold_start(job))
            .await
        {
            Ok(job) => {
                self.start_written();
                Some(job)
            }
            Err(e) => {
                warn!(error = %e, "could not record the start; the result write records it");
                None
            }
        }
    }

    /// Runs the stage while extending the message's visibility, and writes its start if it
    /// runs past [`START_WRITE_AFTER`]; `None` if cancelled. Also returns the job as last
    /// read or written (`stored`), for the result write to start from.
    ///
    /// The start write is a branch of its own beside the stage, never awaited inside another
    /// branch: the stage may be suspended holding a store's writer, and a write awaited
    /// while the stage is not polled would wait for that writer forever.
    async fn handle_with_heartbeat(
        &self,
        job: &JobRecord,
        mut stored: JobRecord,
        cancel: &CancellationToken,
    ) -> (Option<Result<Outcome, StageError>>, JobRecord) {
        let visibility = self
            .ctx
            .settings
            .stages
            .get(self.stage)
            .visibility_timeout();
        let period = heartbeat_period(visibility);
        let mut beat = interval_at(Instant::now() + period, period);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let work = self.handler.handle(job, self.env, self.ctx);
        tokio::pin!(work);
        let start_due = Instant::now() + START_WRITE_AFTER;
        let known = stored.clone();
        let start = async move {
            tokio::time::sleep_until(start_due).await;
            self.write_start(known).await
        };
        tokio::pin!(start);
        let mut start_pending = true;
        loop {
            tokio::select! {
                out = &mut work => {
                    // A start write under way is let finish rather than dropped midway.
                    if start_pending && Instant::now() >= start_due {
                        if let Some(job) = (&mut start).await {
                            stored = job;
                        }
                    }
                    return (Some(out), stored);
                }
                () = cancel.cancelled() => return (None, stored),
                written = &mut start, if start_pending => {
                    start_pending = false;
                    if let Some(job) = written {
                        stored = job;
                    }
                }
                _ = beat.tick() => {
                    if let Err(e) = self
                        .ctx
                        .stores
                        .queue
                        .change_visibility(self.queue, &self.delivery.receipt, visibility)
                        .await
                    {
                        warn!(error = %e, "heartbeat failed; another worker may see this message");
                    }
                }
            }
        }
    }

    async fn finish(&self, outcome: Outcome, stored: JobRecord) -> Execution {
        let next = self.stage.next();
        let recorded = self
            .ctx
            .jobs
            .modify_from(stored, |job| {
                let mut changed = self.fold_start(job);
                for (k, v) in &outcome.outputs {
                    if job.outputs.get(k) != Some(v) {
                        job.outputs.insert(k.clone(), v.clone());
                        changed = true;
                    }
                }
                if next.is_none() {
                    let pid = outcome
                        .pids
                        .last()
                        .copied()
                        .unwrap_or_else(|| self.stage.entry_pid());
                    changed |= job.publish(pid);
                }
                if changed {
                    job.updated_at = Utc::now();
                }
                changed
            })
            .await;
        if let Err(e) = recorded {
            return self.retry(e.to_string(), false).await;
        }
        self.start_written();
        let deleted = match next {
            // The next stage's message and this one's delete, together where the queue can.
            Some(next) => {
                let envelope = self.env.advance(next, &outcome.pids);
                match self
                    .ctx
                    .forward(
                        &envelope,
                        self.trace.attributes(),
                        self.queue,
                        &self.delivery.receipt,
                    )
                    .await
                {
                    Ok(forwarded) => forwarded.deleted,
                    Err(e) => return self.retry(format!("enqueue {next}: {e}"), true).await,
                }
            }
            None => self.delete().await,
        };
        if let Err(e) = deleted {
            // The next stage is already queued; a redelivery finds the job past this stage.
            warn!(error = %e, "could not delete a finished message");
        }
        info!(next = ?next.map(Stage::as_str), "stage done");
        Execution::Done { next }
    }

    async fn retry(&self, error: String, record: bool) -> Execution {
        let out = backoff_only(
            self.ctx,
            self.stage,
            self.queue,
            self.delivery,
            error.clone(),
        )
        .await;
        let Execution::Retrying { delay, .. } = &out else {
            return out;
        };
        if record {
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            let (stage, attempt) = (self.stage, self.attempt());
            if let Err(e) = self
                .ctx
                .jobs
                .modify(self.env.job_id, |job| {
                    let started = self.fold_start(job);
                    job.retrying(stage, attempt, &error, delay_ms) || started
                })
                .await
            {
                warn!(error = %e, "could not record the retry on the job");
            } else {
                self.start_written();
            }
        }
        out
    }

    async fn reject(&self, reasons: Vec<String>) -> Execution {
        let (stage, attempt) = (self.stage, self.attempt());
        warn!(?reasons, "rejected");
        let subject = self.env.job_id.to_string();
        let message = format!(
            "the {stage} stage rejected the upload: {} problem(s)",
            reasons.len()
        );
        let written = self
            .ctx
            .audit
            .error(NewError {
                username: &self.env.username,
                error_type: self.handler.error_type(),
                pid: stage.error_pid(),
                subject: &subject,
                job_id: Some(self.env.job_id),
                stage: Some(stage.as_str()),
                message: &message,
                reasons: reasons.clone(),
                attempts: Some(attempt),
                request_id: None,
            })
            .await;
        if let Err(e) = written {
            return self
                .retry(format!("recording the rejection: {e}"), false)
                .await;
        }
        let rejected = self
            .ctx
            .jobs
            .modify(self.env.job_id, |job| {
                let started = self.fold_start(job);
                job.reject(stage, attempt, reasons.clone()) || started
            })
            .await;
        if let Err(e) = rejected {
            return self
                .retry(format!("recording the rejection: {e}"), false)
                .await;
        }
        if let Err(e) = self.delete().await {
            warn!(error = %e, "could not delete a rejected job's message");
        }
        Execution::Rejected { reasons }
    }

    async fn skip(&self, job: &JobRecord) -> Execution {
        info!(status = %job.status, "job final or past this stage; dropping the message");
        if let Err(e) = self.delete().await {
            warn!(error = %e, "could not delete a duplicate message");
        }
        Execution::Skipped
    }

    /// Makes the message visible again at once, so another worker takes it now rather than
    /// after the visibility timeout, or sends it again on its last receive (see
    /// [`release`]). The job is written before the message is let go: once it is free,
    /// another worker may start the next attempt at once, and this write must not land on
    /// top of that one's start (a message sent again may be taken before it: `retrying`
    /// leaves a later attempt's start alone).
    async fn release(&self) -> Execution {
        let (stage, attempt) = (self.stage, self.attempt());
        let note = "the worker shut down before the stage finished; released for another worker";
        let message_id = &self.delivery.message_id;
        let record = |sent_again: bool| async move {
            let written = self
                .ctx
                .jobs
                .modify(self.env.job_id, |job| {
                    let started = self.fold_start(job);
                    let superseded = sent_again && job.supersede(message_id);
                    job.retrying(stage, attempt, note, 0) || started || superseded
                })
                .await;
            match written {
                Ok(_) => self.start_written(),
                Err(e) => warn!(error = %e, "could not record the release on the job"),
            }
        };
        let env = Some(self.env);
        release::release(
            self.ctx,
            stage,
            self.queue,
            self.delivery,
            env,
            attempt,
            record,
        )
        .await;
        info!("released at shutdown");
        Execution::Released
    }

    async fn delete(&self) -> Result<(), k8or::store::QueueError> {
        self.ctx
            .stores
            .queue
            .delete(self.queue, &self.delivery.receipt)
            .await
    }
}

/// A job is done with `stage` when it is final, or when a later stage has started (which
/// only happens after this stage enqueued it, i.e. after this stage's effects).
fn is_done_with(job: &JobRecord, stage: Stage) -> bool {
    job.status.is_final() || job.stage.is_some_and(|current| current > stage)
}
