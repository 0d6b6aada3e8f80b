//! The job-status store: one item per job (polled by the board), a (username, jobId)
//! index so a user's jobs list newest first (job ids are UUID v7, so they sort by time),
//! and the unqueued marks of new jobs.
//!
//! **Unqueued marks** (an outbox). A new job is written together with a mark, in one
//! transaction, and the mark is removed once its first message is queued. A queue and a
//! table share no transaction, so an intake that dies between the two leaves a job that
//! no message will ever move; the mark is how it is found again ([`Jobs::unqueued`]), and
//! the dead-letter monitor queues it (`k8or_workers::requeue`). A mark lives milliseconds
//! when all goes well, but every job writes and deletes one, so the marks are spread over
//! [`UNQUEUED_SHARDS`] partitions (one DynamoDB partition takes ~1,000 writes a second).

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::config::TableNames;
use crate::job::JobRecord;
use crate::store::tables::{from_json, to_item, to_json};
use crate::store::{Condition, Key, QueryOptions, TableError, Tables, TransactPut};

/// Partitions of the unqueued marks; a sweep queries each.
pub const UNQUEUED_SHARDS: u128 = 16;

/// The partition of a job's unqueued mark (UUID v7 ends in random bits).
fn shard(job_id: Uuid) -> String {
    shard_key(job_id.as_u128() % UNQUEUED_SHARDS)
}

fn shard_key(n: u128) -> String {
    format!("s{n:02}")
}

/// How often a compare-and-set update is retried when another writer got there first.
const MAX_CAS_ATTEMPTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("job {0} does not exist")]
    NotFound(Uuid),
    #[error("job {0} already exists")]
    AlreadyExists(Uuid),
    #[error("job {0} kept changing under {MAX_CAS_ATTEMPTS} concurrent updates")]
    Contended(Uuid),
    #[error(transparent)]
    Table(#[from] TableError),
}

impl JobsError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Contended(_) => true,
            Self::Table(e) => e.is_retryable(),
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct Jobs {
    tables: Arc<dyn Tables>,
    jobs_table: String,
    index_table: String,
    unqueued_table: String,
}

impl Jobs {
    pub fn new(tables: Arc<dyn Tables>, names: &TableNames) -> Self {
        Self {
            tables,
            jobs_table: names.jobs.clone(),
            index_table: names.user_jobs.clone(),
            unqueued_table: names.unqueued_jobs.clone(),
        }
    }

    /// Writes a new job and its index entry together.
    pub async fn create(&self, job: &JobRecord) -> Result<(), JobsError> {
        self.create_with(job, false).await
    }

    /// Writes a new job, its index entry and its unqueued mark together; [`queued`]
    /// removes the mark once the job's first message is sent.
    ///
    /// [`queued`]: Self::queued
    pub async fn create_unqueued(&self, job: &JobRecord) -> Result<(), JobsError> {
        self.create_with(job, true).await
    }

    /// Removes a job's unqueued mark (none: nothing to do).
    pub async fn queued(&self, job_id: Uuid) -> Result<(), JobsError> {
        let key = Key::with_sort(shard(job_id), job_id.to_string());
        Ok(self.tables.delete(&self.unqueued_table, &key).await?)
    }

    /// The jobs marked unqueued at or before `cutoff` (Unix seconds), oldest first within
    /// each shard.
    pub async fn unqueued(&self, cutoff: i64) -> Result<Vec<Uuid>, JobsError> {
        let mut found = Vec::new();
        for n in 0..UNQUEUED_SHARDS {
            let mut options = QueryOptions {
                limit: 100,
                ..QueryOptions::default()
            };
            loop {
                let page = self
                    .tables
                    .query(&self.unqueued_table, &shard_key(n), &options)
                    .await?;
                found.extend(page.items.iter().filter_map(|item| {
                    let since = item.get("since")?.as_i64()?;
                    let id: Uuid = item.get("jobId")?.as_str()?.parse().ok()?;
                    (since <= cutoff).then_some(id)
                }));
                match page.next {
                    Some(next) => options.cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(found)
    }

    async fn create_with(&self, job: &JobRecord, unqueued: bool) -> Result<(), JobsError> {
        let index = to_item(&json!({
            "username": job.username,
            "jobId": job.job_id,
            "createdTimestampUTC": job.created_timestamp_utc,
            "createdTimestampUnix": job.created_timestamp_unix,
        }))?;
        let mut puts = vec![
            TransactPut {
                table: self.jobs_table.clone(),
                item: to_item(job)?,
                condition: Some(Condition::NotExists),
            },
            TransactPut {
                table: self.index_table.clone(),
                item: index,
                condition: None,
            },
        ];
        if unqueued {
            puts.push(TransactPut {
                table: self.unqueued_table.clone(),
                item: to_item(&json!({
                    "shard": shard(job.job_id),
                    "jobId": job.job_id,
                    "since": job.created_at.timestamp(),
                }))?,
                condition: None,
            });
        }
        match self.tables.transact_put(puts).await {
            Err(TableError::TransactionConditionFailed(_) | TableError::AlreadyExists) => {
                Err(JobsError::AlreadyExists(job.job_id))
            }
            other => Ok(other?),
        }
    }

    pub async fn get(&self, job_id: Uuid) -> Result<Option<JobRecord>, JobsError> {
        let item = self
            .tables
            .get_json(&self.jobs_table, &Key::partition(job_id.to_string()))
            .await?;
        Ok(item.map(|item| from_json(item.as_str())).transpose()?)
    }

    /// A user's jobs, newest first; `cursor` is the `next` of the previous page.
    pub async fn list_for_user(
        &self,
        username: &str,
        limit: usize,
        cursor: Option<String>,
    ) -> Result<(Vec<JobRecord>, Option<String>), JobsError> {
        let page = self
            .tables
            .query(
                &self.index_table,
                username,
                &QueryOptions {
                    limit,
                    descending: true,
                    sort_prefix: None,
                    cursor,
                },
            )
            .await?;
        let mut jobs = Vec::with_capacity(page.items.len());
        for item in page.items {
            let Some(id) = item
                .get("jobId")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
            else {
                continue;
            };
            if let Some(job) = self.get(id).await? {
                jobs.push(job);
            }
        }
        Ok((jobs, page.next))
    }

    /// Applies `change` to the stored job and writes it back if `change` says it changed
    /// something, guarded by the job's revision (compare-and-set, retried on a race).
    /// Returns the job as stored afterwards.
    pub async fn modify<F>(&self, job_id: Uuid, change: F) -> Result<JobRecord, JobsError>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        self.modify_with(job_id, None, change).await
    }

    /// [`Jobs::modify`] starting from a copy of the job the caller read (or wrote) before,
    /// which saves the read when no one wrote the job since: the write is guarded by that
    /// copy's revision, so a stale copy only costs a re-read, never a lost update.
    pub async fn modify_from<F>(&self, known: JobRecord, change: F) -> Result<JobRecord, JobsError>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        self.modify_with(known.job_id, Some(known), change).await
    }

    async fn modify_with<F>(
        &self,
        job_id: Uuid,
        mut known: Option<JobRecord>,
        mut change: F,
    ) -> Result<JobRecord, JobsError>
    where
        F: FnMut(&mut JobRecord) -> bool + Send,
    {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let (mut job, fresh) = match known.take() {
                Some(job) => (job, false),
                None => (
                    self.get(job_id).await?.ok_or(JobsError::NotFound(job_id))?,
                    true,
                ),
            };
            if !change(&mut job) {
                if fresh {
                    return Ok(job);
                }
                // "Nothing to change" judged on a copy that may be stale: judge it again on
                // the stored job.
                continue;
            }
            let seen = job.revision;
            job.revision += 1;
            let condition = Condition::eq("revision", seen);
            match self
                .tables
                .put_json(&self.jobs_table, to_json(&job)?, Some(condition))
                .await
            {
                Ok(()) => return Ok(job),
                Err(TableError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobsError::Contended(job_id))
    }
}
