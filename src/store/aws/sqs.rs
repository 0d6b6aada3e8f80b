//! The Queue port on SQS. SQS itself keeps the semantics the port promises (visibility
//! timeouts, receive counts, the move to the dead-letter queue after `maxReceiveCount`
//! receives), so this adapter translates names to queue URLs and shapes to shapes.

mod shape;

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

use self::shape::{
    at_most, attribute_values, batch_results, delivery, seconds, sent_ids, MAX_BATCH, MAX_DELAY,
    MAX_RETENTION, MAX_VISIBILITY, MAX_WAIT, MIN_RETENTION, STALE_RECEIPT,
};
use super::Failure;
use crate::store::queue::{Delivery, OutMessage, Queue, QueueDepth, QueueError, QueueSpec};
use crate::store::ReceiveOptions;

const NO_QUEUE: &[&str] = &[
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];
const INVALID: &[&str] = &[
    "InvalidParameterValue",
    "InvalidParameterValueException",
    "InvalidAttributeName",
    "InvalidAttributeValue",
    "InvalidMessageContents",
    "MissingParameter",
    "ValidationError",
    "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "AWS.SimpleQueueService.BatchRequestTooLong",
    "BatchRequestTooLong",
];

/// The Queue port on SQS. Queue names resolve to URLs once and are cached.
pub struct SqsQueue {
    client: Client,
    urls: RwLock<HashMap<String, String>>,
}

impl SqsQueue {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            urls: RwLock::new(HashMap::new()),
        }
    }

    /// The queue's URL, from the cache or `GetQueueUrl`.
    async fn url(&self, queue: &str) -> Result<String, QueueError> {
        if let Some(url) = self.urls.read().expect("url cache lock").get(queue) {
            return Ok(url.clone());
        }
        let out = self
            .client
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await
            .map_err(|e| self.error(queue, e.into()))?;
        let url = out
            .queue_url()
            .ok_or_else(|| QueueError::Backend(format!("GetQueueUrl of {queue:?} gave no URL")))?
            .to_owned();
        self.remember(queue, &url);
        Ok(url)
    }

    fn remember(&self, queue: &str, url: &str) {
        self.urls
            .write()
            .expect("url cache lock")
            .insert(queue.to_owned(), url.to_owned());
    }

    /// Maps a failure; a queue that is gone is also dropped from the URL cache, so a queue
    /// created again under the same name is found again.
    fn error(&self, queue: &str, failure: Failure) -> QueueError {
        if failure.is_any(NO_QUEUE) {
            self.urls.write().expect("url cache lock").remove(queue);
            QueueError::NotFound(queue.to_owned())
        } else if failure.transient {
            QueueError::Unavailable(failure.message)
        } else if failure.is_any(STALE_RECEIPT) {
            QueueError::ReceiptExpired
        } else if failure.is_any(INVALID) {
            QueueError::Invalid(failure.message)
        } else {
            QueueError::Backend(failure.message)
        }
    }

    async fn queue_arn(&self, queue: &str) -> Result<String, QueueError> {
        let url = self.url(queue).await?;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| self.error(queue, e.into()))?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| QueueError::Backend(format!("queue {queue:?} reported no ARN")))
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn ensure_queue(&self, spec: &QueueSpec) -> Result<bool, QueueError> {
        let existing = match self.url(&spec.name).await {
            Ok(url) => Some(url),
            Err(QueueError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        if !(MIN_RETENTION..=MAX_RETENTION).contains(&spec.retention) {
            return Err(QueueError::Invalid(format!(
                "retention {:?} of {:?} is outside SQS's {MIN_RETENTION:?} to {MAX_RETENTION:?}",
                spec.retention, spec.name
            )));
        }
        let mut attributes = HashMap::from([
            (
                QueueAttributeName::VisibilityTimeout,
                at_most(
                    "visibility timeout",
                    spec.visibility_timeout,
                    MAX_VISIBILITY,
                )?
                .to_string(),
            ),
            (
                QueueAttributeName::MessageRetentionPeriod,
                seconds(spec.retention).to_string(),
            ),
        ]);
        if let Some(dead_letter) = &spec.dead_letter {
            let policy = serde_json::json!({
                "deadLetterTargetArn": self.queue_arn(&dead_letter.queue).await?,
                "maxReceiveCount": dead_letter.max_receive_count,
            });
            attributes.insert(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        if let Some(url) = existing {
            // An existing queue takes the settings it is ensured with (as the embedded
            // queue does), so a changed queues.toml applies on the next provision; an
            // empty redrive policy removes a dead-letter queue no longer configured.
            attributes
                .entry(QueueAttributeName::RedrivePolicy)
                .or_default();
            self.client
                .set_queue_attributes()
                .queue_url(url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(|e| self.error(&spec.name, e.into()))?;
            return Ok(false);
        }
        let out = self
            .client
            .create_queue()
            .queue_name(&spec.name)
            .set_attributes(Some(attributes))
            .send()
            .await
            .map_err(|e| self.error(&spec.name, e.into()))?;
        if let Some(url) = out.queue_url() {
            self.remember(&spec.name, url);
        }
        Ok(true)
    }

    async fn send(&self, queue: &str, message: OutMessage) -> Result<String, QueueError> {
        let delay = at_most("delay", message.delay, MAX_DELAY)?;
        let url = self.url(queue).await?;
        let out = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(message.body)
            .delay_seconds(delay)
            .set_message_attributes(attribute_values(message.attributes)?)
            .send()
            .await
            .map_err(|e| self.error(queue, e.into()))?;
        out.message_id()
            .map(str::to_owned)
            .ok_or_else(|| QueueError::Backend("SendMessage gave no message id".into()))
    }

    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<OutMessage>,
    ) -> Result<Vec<String>, QueueError> {
        let url = self.url(queue).await?;
        let mut ids = Vec::with_capacity(messages.len());
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            let mut entries = Vec::with_capacity(MAX_BATCH);
            for (i, m) in messages.by_ref().take(MAX_BATCH).enumerate() {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body)
                    .delay_seconds(at_most("delay", m.delay, MAX_DELAY)?)
                    .set_message_attributes(attribute_values(m.attributes)?)
                    .build()
                    .map_err(|e| QueueError::Invalid(e.to_string()))?;
                entries.push(entry);
            }
            let len = entries.len();
            let out = self
                .client
                .send_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.error(queue, e.into()))?;
            ids.extend(sent_ids(&out, len, ids.len())?);
        }
        Ok(ids)
    }

    async fn receive(
        &self,
        queue: &str,
        options: &ReceiveOptions,
    ) -> Result<Vec<Delivery>, QueueError> {
        if !(1..=MAX_BATCH).contains(&options.max_messages) {
            return Err(QueueError::Invalid(format!(
                "max_messages {} is not 1 to {MAX_BATCH}",
                options.max_messages
            )));
        }
        let visibility = options
            .visibility_timeout
            .map(|v| at_most("visibility timeout", v, MAX_VISIBILITY))
            .transpose()?;
        let url = self.url(queue).await?;
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(options.max_messages as i32)
            .wait_time_seconds(seconds(options.wait.min(MAX_WAIT)))
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| self.error(queue, e.into()))?;
        out.messages
            .unwrap_or_default()
            .into_iter()
            .map(delivery)
            .collect()
    }

    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        let url = self.url(queue).await?;
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| self.error(queue, e.into()))?;
        Ok(())
    }

    async fn delete_batch(
        &self,
        queue: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        let url = self.url(queue).await?;
        let mut results = Vec::with_capacity(receipts.len());
        for (chunk_no, chunk) in receipts.chunks(MAX_BATCH).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| QueueError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.error(queue, e.into()))?;
            results.extend(batch_results(&out, chunk.len(), chunk_no * MAX_BATCH));
        }
        Ok(results)
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        let timeout = at_most("visibility timeout", timeout, MAX_VISIBILITY)?;
        let url = self.url(queue).await?;
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(timeout)
            .send()
            .await
            .map_err(|e| self.error(queue, e.into()))?;
        Ok(())
    }

    fn receive_outlives_its_caller(&self) -> bool {
        true
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let url = self.url(queue).await?;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| self.error(queue, e.into()))?;
        let count = |name: QueueAttributeName| -> u64 {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            // SQS publishes the oldest message's age only as a CloudWatch metric.
            oldest_age: None,
        })
    }
}
