//! One attempt of a stage on a job whose envelope is sound: mark the job started, run
//! the stage under a visibility heartbeat, then settle the message by the result.

use std::time::Duration;

use chrono::Utc;
use k8or::audit::NewError;
use k8or::context::TraceParent;
use k8or::store::Delivery;
use k8or::{Context, JobEnvelope, JobRecord, Stage};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::execute::{backoff_only, discard, Execution};
use super::{heartbeat_period, Outcome, StageError, StageHandler};

pub(super) struct Attempt<'a> {
    pub ctx: &'a Context,
    pub handler: &'a dyn StageHandler,
    pub delivery: &'a Delivery,
    pub queue: &'a str,
    pub env: &'a JobEnvelope,
    pub stage: Stage,
    /// This attempt's trace context: the next stage's message names it as its parent.
    pub trace: TraceParent,
}

impl Attempt<'_> {
    fn attempt(&self) -> u32 {
        self.delivery.receive_count.max(1)
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
        let mut skip = false;
        let started = self
            .ctx
            .jobs
            .modify(self.env.job_id, |job| {
                skip = is_done_with(job, stage);
                !skip && job.start_stage(stage, attempt)
            })
            .await;
        let job = match started {
            Ok(job) if skip => return self.skip(&job).await,
            Ok(job) => job,
            Err(e) => return self.retry(e.to_string(), false).await,
        };
        info!("stage started");
        match self.handle_with_heartbeat(&job, cancel).await {
            None => self.release().await,
            Some(Ok(outcome)) => self.finish(outcome).await,
            Some(Err(StageError::Retryable(error))) => self.retry(error, true).await,
            Some(Err(StageError::Permanent(reasons))) => self.reject(reasons).await,
        }
    }

    /// Runs the stage while extending the message's visibility; `None` if cancelled.
    async fn handle_with_heartbeat(
        &self,
        job: &JobRecord,
        cancel: &CancellationToken,
    ) -> Option<Result<Outcome, StageError>> {
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
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                () = cancel.cancelled() => return None,
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

    async fn finish(&self, outcome: Outcome) -> Execution {
        let next = self.stage.next();
        let recorded = self
            .ctx
            .jobs
            .modify(self.env.job_id, |job| {
                let mut changed = false;
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
        if let Some(next) = next {
            let envelope = self.env.advance(next, &outcome.pids);
            if let Err(e) = self
                .ctx
                .enqueue(&envelope, Duration::ZERO, self.trace.attributes())
                .await
            {
                return self.retry(format!("enqueue {next}: {e}"), true).await;
            }
        }
        if let Err(e) = self.delete().await {
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
                    job.retrying(stage, attempt, &error, delay_ms)
                })
                .await
            {
                warn!(error = %e, "could not record the retry on the job");
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
                job.reject(stage, attempt, reasons.clone())
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
    /// after the visibility timeout.
    async fn release(&self) -> Execution {
        if let Err(e) = self
            .ctx
            .stores
            .queue
            .change_visibility(self.queue, &self.delivery.receipt, Duration::ZERO)
            .await
        {
            warn!(error = %e, "could not release the message; its visibility timeout applies");
        }
        let (stage, attempt) = (self.stage, self.attempt());
        let note = "the worker shut down before the stage finished; released for another worker";
        if let Err(e) = self
            .ctx
            .jobs
            .modify(self.env.job_id, |job| job.retrying(stage, attempt, note, 0))
            .await
        {
            warn!(error = %e, "could not record the release on the job");
        }
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
