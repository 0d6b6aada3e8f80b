//! The job: the queue message that travels between stages (the envelope) and the record the
//! Upload Board polls (status, stage, attempt, history).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::UploadRequest;
use crate::pid::{known, Pid};

/// The pipeline's stages, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Validate,
    PersistMetadata,
    Kustomize,
    Publish,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::Validate,
        Stage::PersistMetadata,
        Stage::Kustomize,
        Stage::Publish,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::PersistMetadata => "persist-metadata",
            Self::Kustomize => "kustomize",
            Self::Publish => "publish",
        }
    }

    /// The stage that runs after this one; `None` after publish.
    pub fn next(self) -> Option<Stage> {
        match self {
            Self::Validate => Some(Self::PersistMetadata),
            Self::PersistMetadata => Some(Self::Kustomize),
            Self::Kustomize => Some(Self::Publish),
            Self::Publish => None,
        }
    }

    /// The status a job shows while this stage runs.
    pub fn running_status(self) -> JobStatus {
        match self {
            Self::Validate => JobStatus::Validating,
            Self::PersistMetadata => JobStatus::Persisting,
            Self::Kustomize => JobStatus::Kustomizing,
            Self::Publish => JobStatus::Publishing,
        }
    }

    /// The seed step where the board hands the job to this stage's service.
    pub fn entry_pid(self) -> Pid {
        Pid::constant(match self {
            Self::Validate => known::IMAGE_VALIDATE,
            Self::PersistMetadata => known::METADATA_SEND,
            Self::Kustomize => known::KUSTOMIZE_REQUEST,
            Self::Publish => known::PUBLISH_REQUEST,
        })
    }

    /// The error PID of this stage's service (`…-c20bre24-EEE`).
    pub fn error_pid(self) -> Pid {
        Pid::constant(match self {
            Self::Validate => known::VALIDATOR_ERROR,
            Self::PersistMetadata => known::METADATA_ERROR,
            Self::Kustomize => known::CHART_ERROR,
            Self::Publish => known::UPLOAD_LOGIC_ERROR,
        })
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stage {0:?}: expected one of validate, persist-metadata, kustomize, publish")]
pub struct UnknownStage(pub String);

impl FromStr for Stage {
    type Err = UnknownStage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.as_str() == s.trim())
            .ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

/// A job's status, as the API shows it. The names are fixed by the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    Queued,
    Validating,
    Persisting,
    Kustomizing,
    Publishing,
    Retrying,
    Published,
    Rejected,
    DeadLettered,
}

impl JobStatus {
    pub const ALL: [JobStatus; 9] = [
        JobStatus::Queued,
        JobStatus::Validating,
        JobStatus::Persisting,
        JobStatus::Kustomizing,
        JobStatus::Publishing,
        JobStatus::Retrying,
        JobStatus::Published,
        JobStatus::Rejected,
        JobStatus::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Validating => "validating",
            Self::Persisting => "persisting",
            Self::Kustomizing => "kustomizing",
            Self::Publishing => "publishing",
            Self::Retrying => "retrying",
            Self::Published => "published",
            Self::Rejected => "rejected",
            Self::DeadLettered => "dead-lettered",
        }
    }

    /// Published and rejected are final; dead-lettered waits for a re-drive.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Published | Self::Rejected)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The queue message body. Small and bounded: it names the job, never carries the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobEnvelope {
    /// Envelope schema version, so a newer worker can tell an older message.
    pub v: u8,
    pub job_id: Uuid,
    #[serde(rename = "imageUID")]
    pub image_uid: String,
    pub stage: Stage,
    /// The stage's attempt at this message's first delivery: 1, or the next attempt's
    /// number for a message a worker sent again when it released it at shutdown on its
    /// last allowed receive. Redelivery is counted by the queue, from there.
    pub attempt: u32,
    pub username: String,
    /// The PIDs of the steps done so far, oldest first.
    pub pids: Vec<Pid>,
    pub created_at: DateTime<Utc>,
}

/// Why a message body is not a job envelope.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("message body is {size} bytes, over the {max}-byte envelope limit")]
    TooLarge { size: usize, max: usize },
    #[error("message body is not a job envelope: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unsupported envelope version {0} (this build reads version {ENVELOPE_VERSION})")]
    Version(u8),
}

pub const ENVELOPE_VERSION: u8 = 1;
/// SQS allows 256 KiB; an envelope is a few hundred bytes, so anything near this is abuse.
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024;
/// At most this many PIDs are kept in the trace; older ones are in the job history.
const MAX_TRACE_PIDS: usize = 64;

impl JobEnvelope {
    pub fn new(job_id: Uuid, image_uid: String, username: String, stage: Stage) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            job_id,
            image_uid,
            stage,
            attempt: 1,
            username,
            pids: Vec::new(),
            created_at: Utc::now(),
        }
    }

    /// A new job's first envelope (validate), with the intake's PIDs: the image sent, saved
    /// in the temporary bucket, and the `temporary-image-saved` event.
    pub fn first(job: &JobRecord) -> Self {
        let mut envelope = Self::new(
            job.job_id,
            job.image_uid.clone(),
            job.username.clone(),
            Stage::Validate,
        );
        envelope.pids = [
            known::IMAGE_SEND,
            known::TEMP_IMAGE_SAVE,
            known::TEMP_IMAGE_SAVED_EVENT,
        ]
        .into_iter()
        .map(Pid::constant)
        .collect();
        envelope
    }

    pub fn parse(body: &str) -> Result<Self, EnvelopeError> {
        if body.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge {
                size: body.len(),
                max: MAX_ENVELOPE_BYTES,
            });
        }
        let env: Self = serde_json::from_str(body)?;
        if env.v != ENVELOPE_VERSION {
            return Err(EnvelopeError::Version(env.v));
        }
        Ok(env)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("an envelope always serializes")
    }

    /// The envelope for the next stage, with this stage's PIDs appended to the trace.
    pub fn advance(&self, next: Stage, done: &[Pid]) -> Self {
        let mut pids = self.pids.clone();
        pids.extend_from_slice(done);
        if pids.len() > MAX_TRACE_PIDS {
            pids.drain(..pids.len() - MAX_TRACE_PIDS);
        }
        Self {
            stage: next,
            attempt: 1,
            pids,
            ..self.clone()
        }
    }
}

/// One entry of a job's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub stage: Option<Stage>,
    pub status: JobStatus,
    #[serde(rename = "PID")]
    pub pid: Option<Pid>,
    pub at: DateTime<Utc>,
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// On a re-drive's entry: the id of the dead letter it moved back. A letter with this
    /// id still in the dead-letter queue is that one (the move did not finish, or left a
    /// copy), not a new dead-lettering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub letter: Option<String>,
}

/// What the intake stored of the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredImage {
    /// Key in the temporary bucket.
    pub temp_key: String,
    pub size: u64,
    pub sha256: String,
    /// The client's declared type, kept for information only: validation looks at content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

impl StoredImage {
    /// The upload's key in the temporary bucket. It names the job, not the UID: the UID may
    /// not exist yet, and two submissions of one version must not share an object. No
    /// folder of its own: the folder backend would make and remove one per upload.
    pub fn temp_key_for(job_id: Uuid) -> String {
        format!("uploads/{job_id}")
    }
}

/// The job record: one item per job in the job-status table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub job_id: Uuid,
    /// Optimistic-concurrency version: every update checks and bumps it. Serialized next
    /// to the key, so that a store checking it reads no further (the embedded tables).
    pub revision: u64,
    pub username: String,
    #[serde(rename = "imageUID")]
    pub image_uid: String,
    pub status: JobStatus,
    pub stage: Option<Stage>,
    pub attempt: u32,
    pub history: Vec<HistoryEntry>,
    pub error: Option<String>,
    /// Every failed check of a rejection, or the causes of a dead letter.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The submission (image bytes excluded).
    pub request: UploadRequest,
    pub image: StoredImage,
    /// What the stages produced, for the board: object keys, manifests, post id and URL.
    #[serde(default)]
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Ids of messages that a stopping worker sent again as new ones on their last allowed
    /// receive (the runner's release): should such an original be dead-lettered after all
    /// (its delete failed), the dead-letter monitor knows it for a stale copy. The last few.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<String>,
    /// The intake checked the request's `post_author` against the submitter (a user may
    /// name only themselves, an admin anyone), so publish may take it. Jobs accepted before
    /// that check have it false, and publish as their own user.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub author_checked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(rename = "createdTimestampUTC")]
    pub created_timestamp_utc: String,
    #[serde(rename = "createdTimestampUnix")]
    pub created_timestamp_unix: String,
}

impl JobRecord {
    /// A new job, queued for validation.
    pub fn new(
        job_id: Uuid,
        username: String,
        image_uid: String,
        request: UploadRequest,
        image: StoredImage,
        now: DateTime<Utc>,
    ) -> Self {
        let created = crate::time::Created::at(now);
        Self {
            job_id,
            username,
            image_uid,
            status: JobStatus::Queued,
            stage: Some(Stage::Validate),
            attempt: 0,
            history: vec![HistoryEntry {
                stage: Some(Stage::Validate),
                status: JobStatus::Queued,
                pid: Some(Pid::constant(known::TEMP_IMAGE_SAVE)),
                at: now,
                error: None,
                attempt: None,
                letter: None,
            }],
            error: None,
            reasons: Vec::new(),
            request,
            image,
            outputs: serde_json::Map::new(),
            superseded: Vec::new(),
            author_checked: false,
            revision: 0,
            created_at: now,
            updated_at: now,
            created_timestamp_utc: created.utc,
            created_timestamp_unix: created.unix,
        }
    }

    fn push(
        &mut self,
        stage: Stage,
        status: JobStatus,
        pid: Option<Pid>,
        error: Option<String>,
        attempt: u32,
    ) {
        let now = Utc::now();
        self.history.push(HistoryEntry {
            stage: Some(stage),
            status,
            pid,
            at: now,
            error,
            attempt: Some(attempt),
            letter: None,
        });
        self.updated_at = now;
    }

    /// Whether `stage` would move the job backwards (a late duplicate delivery of a stage
    /// the job has already passed). Such a delivery must not change the job's status.
    fn is_behind(&self, stage: Stage) -> bool {
        self.stage.is_some_and(|current| stage < current) && self.status != JobStatus::DeadLettered
    }

    /// A stage began an attempt. Returns false (and changes nothing) when the job is final
    /// or already past this stage.
    pub fn start_stage(&mut self, stage: Stage, attempt: u32) -> bool {
        if self.status.is_final() || self.is_behind(stage) {
            return false;
        }
        let status = stage.running_status();
        if self.status == status && self.stage == Some(stage) && self.attempt == attempt {
            return false;
        }
        self.status = status;
        self.stage = Some(stage);
        self.attempt = attempt;
        self.error = None;
        self.push(stage, status, Some(stage.entry_pid()), None, attempt);
        true
    }

    /// An attempt failed in a way that may pass; the message comes back after `delay_ms`.
    pub fn retrying(&mut self, stage: Stage, attempt: u32, error: &str, delay_ms: u64) -> bool {
        // A later attempt of this stage has started (a message sent again at a release,
        // taken by another worker at once): this one's end must not hide it.
        let later_started = self.stage == Some(stage) && self.attempt > attempt;
        if self.status.is_final() || self.is_behind(stage) || later_started {
            return false;
        }
        self.status = JobStatus::Retrying;
        self.stage = Some(stage);
        self.attempt = attempt;
        self.error = Some(error.to_owned());
        self.push(
            stage,
            JobStatus::Retrying,
            Some(stage.error_pid()),
            Some(format!("{error} (retry in {delay_ms} ms)")),
            attempt,
        );
        true
    }

    /// Remembers that the message `message_id` was replaced by a new one (see
    /// [`JobRecord::superseded`]); true if that changed the job.
    pub fn supersede(&mut self, message_id: &str) -> bool {
        const KEEP: usize = 8;
        if self.superseded.iter().any(|m| m == message_id) {
            return false;
        }
        if self.superseded.len() == KEEP {
            self.superseded.remove(0);
        }
        self.superseded.push(message_id.to_owned());
        true
    }

    /// The job broke a rule: final, with every reason.
    pub fn reject(&mut self, stage: Stage, attempt: u32, reasons: Vec<String>) -> bool {
        if self.status.is_final() {
            return false;
        }
        let summary = reasons.join("; ");
        self.status = JobStatus::Rejected;
        self.stage = Some(stage);
        self.attempt = attempt;
        self.error = Some(summary.clone());
        self.reasons = reasons;
        self.push(
            stage,
            JobStatus::Rejected,
            Some(stage.error_pid()),
            Some(summary),
            attempt,
        );
        true
    }

    /// The queue gave up on the job: it waits in the dead-letter queue for a re-drive.
    pub fn dead_letter(&mut self, stage: Stage, attempts: u32, last_error: Option<String>) -> bool {
        if self.status.is_final() || self.status == JobStatus::DeadLettered || self.is_behind(stage)
        {
            return false;
        }
        let error = last_error.or_else(|| self.error.clone());
        self.status = JobStatus::DeadLettered;
        self.stage = Some(stage);
        self.attempt = attempts;
        self.error = error.clone();
        self.push(
            stage,
            JobStatus::DeadLettered,
            Some(stage.error_pid()),
            error,
            attempts,
        );
        true
    }

    /// A re-drive is putting the job back on its stage's queue, moving the dead letter
    /// `letter` (its message id); attempts count from zero again.
    /// Only a letter of the stage the job was dead-lettered at moves it: a stale letter of
    /// an earlier stage (a duplicate the queue moved too) would send the job backwards;
    /// it moves unmarked, and that stage's worker drops it (the job is past it).
    pub fn redriven(&mut self, stage: Stage, letter: &str) -> bool {
        if self.status != JobStatus::DeadLettered || self.stage != Some(stage) {
            return false;
        }
        self.status = JobStatus::Queued;
        self.stage = Some(stage);
        self.attempt = 0;
        self.push(stage, JobStatus::Queued, None, None, 0);
        self.name_letter(letter);
        true
    }

    /// A re-drive of `letter` at `stage` marked the job but the letter is still in the
    /// dead-letter queue and nothing has run since: the move did not finish (its send
    /// failed, or the re-drive stopped between the mark and the send) or it left a copy
    /// behind and the moved message is still waiting. Either way the job is dead-lettered
    /// again, with an entry naming the letter; a worker that takes a moved message moves it
    /// on from there.
    pub fn redrive_unfinished(&mut self, stage: Stage, letter: &str) -> bool {
        if self.status != JobStatus::Queued
            || self.stage != Some(stage)
            || !self.was_redriven_from(stage, letter)
        {
            return false;
        }
        let (attempt, error) = self.last_dead_lettering(stage);
        self.status = JobStatus::DeadLettered;
        self.attempt = attempt;
        self.error = error;
        self.push(
            stage,
            JobStatus::DeadLettered,
            Some(stage.error_pid()),
            Some(
                "the re-drive did not finish: the letter is still in the dead-letter queue".into(),
            ),
            attempt,
        );
        self.name_letter(letter);
        true
    }

    /// Names the dead letter `letter` on the entry just pushed.
    fn name_letter(&mut self, letter: &str) {
        if let Some(entry) = self.history.last_mut() {
            entry.letter = Some(letter.to_owned());
        }
    }

    /// Whether the job's last re-drive at `stage` moved the dead letter `letter`.
    pub fn was_redriven_from(&self, stage: Stage, letter: &str) -> bool {
        self.history
            .iter()
            .rev()
            .find(|h| h.stage == Some(stage) && h.letter.is_some())
            .is_some_and(|h| h.letter.as_deref() == Some(letter))
    }

    /// Takes back a re-drive of `letter` at `stage` that did not happen (its message never
    /// reached the stage's queue): the job is dead-lettered again, as it was, with no new
    /// history entry. Changes nothing once anything has happened to the job since the
    /// re-drive's entry.
    pub fn undo_redrive(&mut self, stage: Stage, letter: &str) -> bool {
        let is_that_redrive = |h: &HistoryEntry| {
            h.stage == Some(stage)
                && h.status == JobStatus::Queued
                && h.letter.as_deref() == Some(letter)
        };
        if self.status != JobStatus::Queued
            || self.stage != Some(stage)
            || !self.history.last().is_some_and(is_that_redrive)
        {
            return false;
        }
        self.history.pop();
        (self.attempt, self.error) = self.last_dead_lettering(stage);
        self.status = JobStatus::DeadLettered;
        self.updated_at = Utc::now();
        true
    }

    /// The attempts and error of the job's last dead-lettering at `stage` (not counting the
    /// entries of re-drives that did not finish, which only repeat it).
    fn last_dead_lettering(&self, stage: Stage) -> (u32, Option<String>) {
        self.history
            .iter()
            .rev()
            .find(|h| {
                h.stage == Some(stage) && h.status == JobStatus::DeadLettered && h.letter.is_none()
            })
            .map_or((0, None), |h| (h.attempt.unwrap_or(0), h.error.clone()))
    }

    /// The last stage is done.
    pub fn publish(&mut self, pid: Pid) -> bool {
        if self.status.is_final() {
            return false;
        }
        self.status = JobStatus::Published;
        self.stage = Some(Stage::Publish);
        self.error = None;
        let attempt = self.attempt;
        self.push(
            Stage::Publish,
            JobStatus::Published,
            Some(pid),
            None,
            attempt,
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_chain_in_order() {
        let mut s = Some(Stage::Validate);
        let mut seen = vec![];
        while let Some(st) = s {
            seen.push(st);
            s = st.next();
        }
        assert_eq!(seen, Stage::ALL);
        assert_eq!(
            "persist-metadata".parse::<Stage>().unwrap(),
            Stage::PersistMetadata
        );
        assert!("deploy".parse::<Stage>().is_err());
    }

    #[test]
    fn an_attempts_end_leaves_a_later_attempts_start_and_superseded_ids_are_few() {
        let mut job = record();
        assert!(job.start_stage(Stage::Validate, 2));
        // A message sent again at a release is taken at once; the release lands after.
        assert!(job.start_stage(Stage::Validate, 3));
        assert!(!job.retrying(Stage::Validate, 2, "released", 0));
        assert_eq!((job.status, job.attempt), (JobStatus::Validating, 3));
        assert!(job.retrying(Stage::Validate, 3, "backend away", 100));
        for i in 0..10 {
            assert!(job.supersede(&format!("m{i}")));
        }
        assert!(!job.supersede("m9"), "once");
        assert_eq!(job.superseded.len(), 8);
        assert_eq!(job.superseded[0], "m2", "the oldest go");
    }

    #[test]
    fn status_names_are_the_interface() {
        let names: Vec<_> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "queued",
                "validating",
                "persisting",
                "kustomizing",
                "publishing",
                "retrying",
                "published",
                "rejected",
                "dead-lettered"
            ]
        );
        for s in JobStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn envelope_round_trips_and_advances() {
        let env = JobEnvelope::new(
            Uuid::now_v7(),
            "u".repeat(60),
            "jamesbond".into(),
            Stage::Validate,
        );
        let back = JobEnvelope::parse(&env.to_body()).unwrap();
        assert_eq!(back, env);
        let next = env.advance(
            Stage::PersistMetadata,
            &[Pid::constant(known::IMAGE_VALIDATED_EVENT)],
        );
        assert_eq!(next.stage, Stage::PersistMetadata);
        assert_eq!(next.pids.len(), 1);
        assert_eq!(next.job_id, env.job_id);
    }

    fn record() -> JobRecord {
        let request: UploadRequest = serde_json::from_value(serde_json::json!({
            "imageMetadata": {"imageName": "n", "imageVersion": "v0-0-01", "imageCategory": "c"}
        }))
        .unwrap();
        let image = StoredImage {
            temp_key: "k".into(),
            size: 1,
            sha256: "00".into(),
            declared_content_type: None,
            file_name: None,
        };
        JobRecord::new(
            Uuid::now_v7(),
            "jamesbond".into(),
            "u".into(),
            request,
            image,
            Utc::now(),
        )
    }

    #[test]
    fn a_job_moves_forward_only() {
        let mut job = record();
        assert_eq!(job.status, JobStatus::Queued);
        assert!(job.start_stage(Stage::Validate, 1));
        assert!(
            !job.start_stage(Stage::Validate, 1),
            "same attempt twice is no change"
        );
        assert!(job.start_stage(Stage::PersistMetadata, 1));
        assert!(
            !job.start_stage(Stage::Validate, 2),
            "a late duplicate never moves it back"
        );
        assert_eq!(job.status, JobStatus::Persisting);
        assert!(job.retrying(Stage::PersistMetadata, 1, "timeout", 1000));
        assert_eq!(job.status, JobStatus::Retrying);
        assert!(job.dead_letter(Stage::PersistMetadata, 5, None));
        assert_eq!(job.error.as_deref(), Some("timeout"));
        assert!(job.redriven(Stage::PersistMetadata, "letter-1"));
        assert_eq!((job.status, job.attempt), (JobStatus::Queued, 0));
        assert!(job.start_stage(Stage::Kustomize, 1));
        assert!(job.start_stage(Stage::Publish, 1));
        assert!(job.publish(Pid::constant(known::IMAGE_UPLOADED_EVENT)));
        assert!(
            !job.reject(Stage::Publish, 1, vec!["late".into()]),
            "published is final"
        );
        assert!(!job.start_stage(Stage::Publish, 2));
        assert_eq!(job.status, JobStatus::Published);
        let statuses: Vec<_> = job.history.iter().map(|h| h.status.as_str()).collect();
        assert_eq!(
            statuses,
            [
                "queued",
                "validating",
                "persisting",
                "retrying",
                "dead-lettered",
                "queued",
                "kustomizing",
                "publishing",
                "published"
            ]
        );
    }

    #[test]
    fn a_redrive_that_did_not_happen_is_taken_back_whole() {
        let mut job = record();
        job.start_stage(Stage::Kustomize, 3);
        job.retrying(Stage::Kustomize, 3, "disk full", 10);
        assert!(job.dead_letter(Stage::Kustomize, 3, None));
        let dead = job.clone();
        assert!(!job.was_redriven_from(Stage::Kustomize, "L1"));
        assert!(job.redriven(Stage::Kustomize, "L1"));
        assert!(job.was_redriven_from(Stage::Kustomize, "L1"));
        assert!(!job.was_redriven_from(Stage::Kustomize, "L2"));
        assert!(!job.undo_redrive(Stage::Kustomize, "L2"), "another letter");
        assert!(!job.undo_redrive(Stage::Publish, "L1"), "another stage");
        assert!(job.undo_redrive(Stage::Kustomize, "L1"));
        assert_eq!(
            (job.status, job.stage, job.attempt, &job.error, &job.history),
            (
                dead.status,
                dead.stage,
                dead.attempt,
                &dead.error,
                &dead.history
            )
        );
        assert!(!job.undo_redrive(Stage::Kustomize, "L1"), "only once");

        assert!(job.redriven(Stage::Kustomize, "L1"));
        assert!(job.start_stage(Stage::Kustomize, 1));
        assert!(
            !job.undo_redrive(Stage::Kustomize, "L1"),
            "the re-driven message was taken: the re-drive happened"
        );
        assert!(job.was_redriven_from(Stage::Kustomize, "L1"));
        assert_eq!(job.status, JobStatus::Kustomizing);
        assert!(
            !job.redrive_unfinished(Stage::Kustomize, "L1"),
            "at work again: the letter left behind is a copy"
        );
    }

    #[test]
    fn a_stale_letter_of_an_earlier_stage_does_not_move_the_job_back() {
        let mut job = record();
        job.start_stage(Stage::Kustomize, 5);
        assert!(job.dead_letter(Stage::Kustomize, 5, None));
        let dead = job.clone();
        assert!(!job.redriven(Stage::PersistMetadata, "stale"));
        assert_eq!(
            (job.status, job.stage, job.history.len()),
            (dead.status, dead.stage, dead.history.len())
        );
        assert!(job.redriven(Stage::Kustomize, "L1"));
        assert_eq!(
            (job.status, job.stage),
            (JobStatus::Queued, Some(Stage::Kustomize))
        );
    }

    #[test]
    fn an_unfinished_redrive_dead_letters_the_job_again_naming_the_letter() {
        let mut job = record();
        job.start_stage(Stage::Publish, 2);
        job.retrying(Stage::Publish, 2, "ViewPort down", 10);
        assert!(job.dead_letter(Stage::Publish, 2, None));
        assert!(job.redriven(Stage::Publish, "L1"));
        assert!(
            !job.redrive_unfinished(Stage::Publish, "L2"),
            "another letter"
        );
        assert!(job.redrive_unfinished(Stage::Publish, "L1"));
        assert_eq!(
            (job.status, job.attempt, job.error.as_deref()),
            (JobStatus::DeadLettered, 2, Some("ViewPort down"))
        );
        assert!(job.was_redriven_from(Stage::Publish, "L1"));
        assert!(!job.redrive_unfinished(Stage::Publish, "L1"), "once");
        assert!(
            job.start_stage(Stage::Publish, 1),
            "a moved message that does arrive moves the job on"
        );
    }

    #[test]
    fn a_rejection_keeps_every_reason() {
        let mut job = record();
        job.start_stage(Stage::Validate, 1);
        assert!(job.reject(Stage::Validate, 1, vec!["a".into(), "b".into()]));
        assert_eq!(job.status, JobStatus::Rejected);
        assert_eq!(job.reasons, ["a", "b"]);
        assert!(!job.start_stage(Stage::PersistMetadata, 1));
    }

    #[test]
    fn malformed_envelopes_are_typed_errors() {
        assert!(matches!(
            JobEnvelope::parse("{"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            JobEnvelope::parse("[]"),
            Err(EnvelopeError::Malformed(_))
        ));
        let huge = "x".repeat(MAX_ENVELOPE_BYTES + 1);
        assert!(matches!(
            JobEnvelope::parse(&huge),
            Err(EnvelopeError::TooLarge { .. })
        ));
        let env = JobEnvelope::new(Uuid::now_v7(), "u".into(), "j".into(), Stage::Publish);
        let mut v = serde_json::to_value(&env).unwrap();
        v["v"] = 9.into();
        assert!(matches!(
            JobEnvelope::parse(&v.to_string()),
            Err(EnvelopeError::Version(9))
        ));
        v["v"] = 1.into();
        v["extra"] = "image bytes".into();
        assert!(matches!(
            JobEnvelope::parse(&v.to_string()),
            Err(EnvelopeError::Malformed(_))
        ));
    }
}
