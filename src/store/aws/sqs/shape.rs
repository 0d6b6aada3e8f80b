//! Shapes between the port and SQS: limits, durations in whole seconds, deliveries, and
//! the per-entry answers of a batch delete.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
};

use crate::store::queue::{Delivery, QueueError};

/// SQS limits the port's callers may run into.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
pub(super) const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
pub(super) const MAX_WAIT: Duration = Duration::from_secs(20);
pub(super) const MIN_RETENTION: Duration = Duration::from_secs(60);
pub(super) const MAX_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);
pub(super) const MAX_BATCH: usize = 10;

/// Error codes that say a receipt no longer names a message this caller holds.
pub(super) const STALE_RECEIPT: &[&str] = &[
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
];

/// Whole seconds, rounded up: a sub-second timeout must not become zero.
pub(super) fn seconds(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(s).unwrap_or(i32::MAX)
}

pub(super) fn at_most(what: &str, d: Duration, max: Duration) -> Result<i32, QueueError> {
    if d > max {
        return Err(QueueError::Invalid(format!(
            "{what} {d:?} is over the SQS limit of {max:?}"
        )));
    }
    Ok(seconds(d))
}

pub(super) fn delivery(message: Message) -> Result<Delivery, QueueError> {
    let missing = |what| QueueError::Backend(format!("SQS returned a message without {what}"));
    let system = message.attributes();
    let system_attr = |name: MessageSystemAttributeName| {
        system
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
    };
    let receive_count = system_attr(MessageSystemAttributeName::ApproximateReceiveCount)
        .ok_or_else(|| missing("ApproximateReceiveCount"))?;
    let sent_at_ms = system_attr(MessageSystemAttributeName::SentTimestamp)
        .ok_or_else(|| missing("SentTimestamp"))?;
    let attributes: BTreeMap<String, String> = message
        .message_attributes()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
        .collect();
    Ok(Delivery {
        message_id: message
            .message_id()
            .ok_or_else(|| missing("an id"))?
            .to_owned(),
        receipt: message
            .receipt_handle()
            .ok_or_else(|| missing("a receipt handle"))?
            .to_owned(),
        body: message.body().unwrap_or_default().to_owned(),
        receive_count: u32::try_from(receive_count).unwrap_or(u32::MAX),
        sent_at_ms,
        attributes,
    })
}

/// The port's string attributes as SQS message attributes; `None` for none (SQS refuses
/// an empty map in some protocols).
pub(super) fn attribute_values(
    attributes: BTreeMap<String, String>,
) -> Result<Option<HashMap<String, MessageAttributeValue>>, QueueError> {
    if attributes.is_empty() {
        return Ok(None);
    }
    attributes
        .into_iter()
        .map(|(name, value)| {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError::Invalid(e.to_string()))?;
            Ok((name, value))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A failed batch entry as the port's error.
fn entry_error(failed: &BatchResultErrorEntry) -> QueueError {
    let message = format!(
        "{}: {}",
        failed.code(),
        failed.message().unwrap_or("no message")
    );
    if STALE_RECEIPT.contains(&failed.code()) {
        QueueError::ReceiptExpired
    } else if !failed.sender_fault() {
        QueueError::Unavailable(message)
    } else {
        QueueError::Invalid(message)
    }
}

/// The message ids of a batch of `len` sends, in order; the first failed entry fails the
/// whole call (the others may have been sent: at-least-once allows sending them again).
pub(super) fn sent_ids(
    out: &SendMessageBatchOutput,
    len: usize,
    offset: usize,
) -> Result<Vec<String>, QueueError> {
    if let Some(failed) = out
        .failed()
        .iter()
        .min_by_key(|f| f.id().parse::<usize>().ok())
    {
        return Err(entry_error(failed));
    }
    let mut ids = vec![None; len];
    for ok in out.successful() {
        if let Some(slot) = ok.id().parse::<usize>().ok().and_then(|i| ids.get_mut(i)) {
            *slot = Some(ok.message_id().to_owned());
        }
    }
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| {
            id.ok_or_else(|| {
                QueueError::Backend(format!(
                    "SendMessageBatch did not answer message {}",
                    offset + i
                ))
            })
        })
        .collect()
}

/// One result per entry of a batch of `len` deletes; `offset` numbers the entries among
/// all the caller's receipts. Every entry is answered in `successful` or in `failed`, by
/// its id (its index in the batch).
pub(super) fn batch_results(
    out: &DeleteMessageBatchOutput,
    len: usize,
    offset: usize,
) -> Vec<Result<(), QueueError>> {
    let mut results: Vec<Result<(), QueueError>> = (0..len)
        .map(|i| {
            Err(QueueError::Backend(format!(
                "DeleteMessageBatch did not answer entry {}",
                offset + i
            )))
        })
        .collect();
    let slot = |id: &str| id.parse::<usize>().ok().filter(|i| *i < len);
    for ok in out.successful() {
        if let Some(i) = slot(ok.id()) {
            results[i] = Ok(());
        }
    }
    for failed in out.failed() {
        if let Some(i) = slot(failed.id()) {
            results[i] = Err(entry_error(failed));
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::{BatchResultErrorEntry, DeleteMessageBatchResultEntry};

    use super::*;

    #[test]
    fn durations_round_up_to_whole_seconds() {
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_millis(1)), 1);
        assert_eq!(seconds(Duration::from_millis(2500)), 3);
        assert!(matches!(
            at_most("delay", Duration::from_secs(901), MAX_DELAY),
            Err(QueueError::Invalid(_))
        ));
    }

    #[test]
    fn batch_answers_map_by_id() {
        let entry = |id: &str, code: &str, sender: bool| {
            BatchResultErrorEntry::builder()
                .id(id)
                .code(code)
                .sender_fault(sender)
                .build()
                .unwrap()
        };
        let out = DeleteMessageBatchOutput::builder()
            .successful(
                DeleteMessageBatchResultEntry::builder()
                    .id("2")
                    .build()
                    .unwrap(),
            )
            .failed(entry("0", "ReceiptHandleIsInvalid", true))
            .failed(entry("1", "InternalError", false))
            .failed(entry("9", "Ignored", true))
            .build()
            .unwrap();
        let results = batch_results(&out, 4, 10);
        assert!(matches!(results[0], Err(QueueError::ReceiptExpired)));
        assert!(matches!(results[1], Err(QueueError::Unavailable(_))));
        assert!(results[2].is_ok());
        assert!(matches!(&results[3], Err(QueueError::Backend(m)) if m.contains("entry 13")));
    }

    #[test]
    fn sent_ids_keep_order_and_fail_on_a_failed_entry() {
        let sent = |id: &str, message_id: &str| {
            aws_sdk_sqs::types::SendMessageBatchResultEntry::builder()
                .id(id)
                .message_id(message_id)
                .md5_of_message_body("x")
                .build()
                .unwrap()
        };
        let out = SendMessageBatchOutput::builder()
            .successful(sent("1", "second"))
            .successful(sent("0", "first"))
            .set_failed(Some(Vec::new()))
            .build()
            .unwrap();
        assert_eq!(sent_ids(&out, 2, 0).unwrap(), ["first", "second"]);
        assert!(matches!(sent_ids(&out, 3, 10), Err(QueueError::Backend(m)) if m.contains("12")));
        let failed = SendMessageBatchOutput::builder()
            .successful(sent("0", "first"))
            .failed(
                BatchResultErrorEntry::builder()
                    .id("1")
                    .code("InvalidParameterValue")
                    .sender_fault(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(matches!(
            sent_ids(&failed, 2, 0),
            Err(QueueError::Invalid(_))
        ));
    }
}
