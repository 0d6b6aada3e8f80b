//! Items of the user-event-log and user-error-log tables.
//!
//! The seed keys the event log by (username, eventType), which keeps one event of each
//! type per user: every upload would overwrite the last. Here the sort key is `eventKey`,
//! `<eventType>#<subject>` (subject: the job id, or the image UID before a job exists),
//! and `eventType` stays as an attribute. The error log gains `errorKey` the same way.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ImageMetadata, UserMetadata};
use crate::pid::Pid;
use crate::time::Created;

/// The seed's event types, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    ImageUidRequested,
    ImageUidAssigned,
    /// The seed's heading says `temporary-image-saved`, its item `image-temporary-saved`.
    #[serde(alias = "image-temporary-saved")]
    TemporaryImageSaved,
    ImageValidated,
    UserDataSaved,
    ImageMetadataSaved,
    UserInputSaved,
    KustomizationInitiated,
    KustomizationSaved,
    ViewportCreated,
    ImageUploaded,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageUidRequested => "image-uid-requested",
            Self::ImageUidAssigned => "image-uid-assigned",
            Self::TemporaryImageSaved => "temporary-image-saved",
            Self::ImageValidated => "image-validated",
            Self::UserDataSaved => "user-data-saved",
            Self::ImageMetadataSaved => "image-metadata-saved",
            Self::UserInputSaved => "user-input-saved",
            Self::KustomizationInitiated => "kustomization-initiated",
            Self::KustomizationSaved => "kustomization-saved",
            Self::ViewportCreated => "viewport-created",
            Self::ImageUploaded => "image-uploaded",
        }
    }

    /// The sort key of this event for one subject: `<eventType>#<subject>`.
    pub fn key(self, subject: &str) -> String {
        format!("{}#{subject}", self.as_str())
    }
}

/// `eventMetadata`: the seed keeps a `timestamp` (here, RFC 3339 with milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub timestamp: String,
}

/// One user-event-log item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventItem {
    pub username: String,
    #[serde(rename = "eventKey")]
    pub event_key: String,
    #[serde(rename = "eventType")]
    pub event_type: EventType,
    #[serde(rename = "PID")]
    pub pid: Pid,
    #[serde(rename = "jobId", default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    #[serde(rename = "imageMetadata")]
    pub image_metadata: ImageMetadata,
    #[serde(rename = "userMetadata")]
    pub user_metadata: UserMetadata,
    #[serde(rename = "eventMetadata")]
    pub event_metadata: EventMetadata,
    /// What the step found or made (sizes, digests, object keys, post ids…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    #[serde(flatten)]
    pub created: Created,
}

/// One user-error-log item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorItem {
    pub username: String,
    #[serde(rename = "errorKey")]
    pub error_key: String,
    /// A stable code: `validation-failed`, `dead-lettered`, `bad-request`, …
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "PID")]
    pub pid: Pid,
    #[serde(rename = "jobId", default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub message: String,
    /// Every failed check or cause, in plain words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(flatten)]
    pub created: Created,
}

impl ErrorItem {
    /// The sort key: `<errorType>#<subject>`; one item per error and subject.
    pub fn key(error_type: &str, subject: &str) -> String {
        format!("{error_type}#{subject}")
    }
}
