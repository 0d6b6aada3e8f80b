//! The user-event-log and user-error-log tables: one item per step and subject, written
//! once (a stage that runs twice finds its event there and writes nothing new).

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::config::TableNames;
use crate::model::{ErrorItem, EventItem, EventMetadata, EventType, ImageMetadata, UserMetadata};
use crate::pid::Pid;
use crate::store::{QueryOptions, TableError, Tables, TablesExt};
use crate::time::Created;

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub username: &'a str,
    pub event_type: EventType,
    pub pid: Pid,
    /// What the event is about: the job id, or the image UID before a job exists.
    pub subject: &'a str,
    pub job_id: Option<Uuid>,
    pub image_metadata: &'a ImageMetadata,
    pub user_metadata: &'a UserMetadata,
    pub details: Option<Value>,
}

/// An error to record.
#[derive(Debug, Clone)]
pub struct NewError<'a> {
    pub username: &'a str,
    /// Stable code: `validation-failed`, `dead-lettered`, `bad-request`, …
    pub error_type: &'a str,
    pub pid: Pid,
    /// What failed: the job id, or a request id.
    pub subject: &'a str,
    pub job_id: Option<Uuid>,
    pub stage: Option<&'a str>,
    pub message: &'a str,
    pub reasons: Vec<String>,
    pub attempts: Option<u32>,
    pub request_id: Option<&'a str>,
}

#[derive(Clone)]
pub struct AuditLog {
    tables: Arc<dyn Tables>,
    events_table: String,
    errors_table: String,
}

impl AuditLog {
    pub fn new(tables: Arc<dyn Tables>, names: &TableNames) -> Self {
        Self {
            tables,
            events_table: names.user_event_log.clone(),
            errors_table: names.user_error_log.clone(),
        }
    }

    /// Records the event unless it was recorded before; `Ok(true)` if written now.
    pub async fn event(&self, e: NewEvent<'_>) -> Result<bool, TableError> {
        let mut image_metadata = e.image_metadata.clone();
        // Never copy image bytes into the log: a data URL becomes a marker.
        if image_metadata
            .image
            .as_deref()
            .is_some_and(|i| i.starts_with("data:"))
        {
            image_metadata.image = None;
        }
        let item = EventItem {
            username: e.username.to_owned(),
            event_key: e.event_type.key(e.subject),
            event_type: e.event_type,
            pid: e.pid,
            job_id: e.job_id,
            image_metadata,
            user_metadata: e.user_metadata.without_username(),
            event_metadata: EventMetadata {
                timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            details: e.details,
            created: Created::now(),
        };
        self.tables.put_once(&self.events_table, &item).await
    }

    /// Records the error unless it was recorded before; `Ok(true)` if written now.
    pub async fn error(&self, e: NewError<'_>) -> Result<bool, TableError> {
        let item = ErrorItem {
            username: e.username.to_owned(),
            error_key: ErrorItem::key(e.error_type, e.subject),
            error_type: e.error_type.to_owned(),
            pid: e.pid,
            job_id: e.job_id,
            stage: e.stage.map(str::to_owned),
            message: e.message.to_owned(),
            reasons: e.reasons,
            attempts: e.attempts,
            request_id: e.request_id.map(str::to_owned),
            created: Created::now(),
        };
        self.tables.put_once(&self.errors_table, &item).await
    }

    /// A user's events, oldest key first, optionally of one type.
    pub async fn events_of(
        &self,
        username: &str,
        event_type: Option<EventType>,
    ) -> Result<Vec<EventItem>, TableError> {
        let prefix = event_type.map(|t| format!("{}#", t.as_str()));
        self.all(&self.events_table, username, prefix).await
    }

    /// A user's error items.
    pub async fn errors_of(&self, username: &str) -> Result<Vec<ErrorItem>, TableError> {
        self.all(&self.errors_table, username, None).await
    }

    async fn all<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        partition: &str,
        sort_prefix: Option<String>,
    ) -> Result<Vec<T>, TableError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let options = QueryOptions {
                limit: 500,
                descending: false,
                sort_prefix: sort_prefix.clone(),
                cursor,
            };
            let page = self.tables.query(table, partition, &options).await?;
            for item in page.items {
                out.push(crate::store::tables::from_item(item)?);
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }
}
