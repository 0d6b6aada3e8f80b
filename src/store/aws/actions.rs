//! Every AWS API call the adapters make, and the IAM actions each needs: what a policy for
//! the API and worker nodes must allow. A test reads the adapters' source and fails when a
//! call is added without being listed here.

use std::collections::BTreeSet;

/// One SDK operation and the IAM actions that authorize it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The SDK client method (`receive_message`).
    pub operation: &'static str,
    /// IAM actions it needs. Some calls have none of their own: `SendMessageBatch` is
    /// `sqs:SendMessage`, `DeleteMessageBatch` is `sqs:DeleteMessage`, the multipart calls are `s3:PutObject`, `TransactWriteItems`
    /// is the `dynamodb:PutItem` of each write, and `HeadObject` is `s3:GetObject`
    /// (plus `s3:ListBucket`, without which a missing key answers 403 instead of 404).
    pub actions: &'static [&'static str],
    /// Made only by `provision` (creating resources), never by a running API or worker.
    pub provision_only: bool,
}

const fn call(operation: &'static str, actions: &'static [&'static str]) -> Call {
    Call {
        operation,
        actions,
        provision_only: false,
    }
}

const fn provision(operation: &'static str, actions: &'static [&'static str]) -> Call {
    Call {
        operation,
        actions,
        provision_only: true,
    }
}

pub const CALLS: &[Call] = &[
    // SQS
    call("get_queue_url", &["sqs:GetQueueUrl"]),
    call("get_queue_attributes", &["sqs:GetQueueAttributes"]),
    call("send_message", &["sqs:SendMessage"]),
    call("send_message_batch", &["sqs:SendMessage"]),
    call("receive_message", &["sqs:ReceiveMessage"]),
    call("delete_message", &["sqs:DeleteMessage"]),
    call("delete_message_batch", &["sqs:DeleteMessage"]),
    call(
        "change_message_visibility",
        &["sqs:ChangeMessageVisibility"],
    ),
    provision("create_queue", &["sqs:CreateQueue"]),
    provision("set_queue_attributes", &["sqs:SetQueueAttributes"]),
    // DynamoDB
    call("describe_table", &["dynamodb:DescribeTable"]),
    call("put_item", &["dynamodb:PutItem"]),
    call("get_item", &["dynamodb:GetItem"]),
    call("query", &["dynamodb:Query"]),
    call("update_item", &["dynamodb:UpdateItem"]),
    call("delete_item", &["dynamodb:DeleteItem"]),
    call("transact_write_items", &["dynamodb:PutItem"]),
    provision("create_table", &["dynamodb:CreateTable"]),
    // S3
    call("put_object", &["s3:PutObject"]),
    call("create_multipart_upload", &["s3:PutObject"]),
    call("upload_part", &["s3:PutObject"]),
    call("upload_part_copy", &["s3:GetObject", "s3:PutObject"]),
    call("complete_multipart_upload", &["s3:PutObject"]),
    call("abort_multipart_upload", &["s3:AbortMultipartUpload"]),
    call("get_object", &["s3:GetObject"]),
    call("head_object", &["s3:GetObject", "s3:ListBucket"]),
    call("copy_object", &["s3:GetObject", "s3:PutObject"]),
    call("delete_object", &["s3:DeleteObject"]),
    call("head_bucket", &["s3:ListBucket"]),
    provision("create_bucket", &["s3:CreateBucket"]),
    provision(
        "get_bucket_lifecycle_configuration",
        &["s3:GetLifecycleConfiguration"],
    ),
    provision(
        "put_bucket_lifecycle_configuration",
        &["s3:PutLifecycleConfiguration"],
    ),
];

/// Every IAM action the adapters need, provisioning included, sorted.
pub fn all() -> BTreeSet<&'static str> {
    CALLS
        .iter()
        .flat_map(|c| c.actions.iter().copied())
        .collect()
}

/// The IAM actions of a running API or worker node (no resource creation), sorted.
pub fn runtime() -> BTreeSet<&'static str> {
    CALLS
        .iter()
        .filter(|c| !c.provision_only)
        .flat_map(|c| c.actions.iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client methods that are not API calls.
    const NOT_CALLS: &[&str] = &["clone", "config"];

    /// Every `.rs` file of the adapters but this one, where each AWS call is written
    /// `client.<operation>()`.
    fn adapter_sources() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/aws");
        let mut dirs = vec![root];
        let mut sources = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).expect("the adapters' folder") {
                let path = entry.expect("a folder entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("actions.rs")
                {
                    sources.push(std::fs::read_to_string(&path).expect("a source file"));
                }
            }
        }
        sources
    }

    fn calls_in_source() -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for source in adapter_sources() {
            let flat: String = source.chars().filter(|c| !c.is_whitespace()).collect();
            for (at, _) in flat.match_indices("client.") {
                let rest = &flat[at + "client.".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if rest[name.len()..].starts_with("()") && !NOT_CALLS.contains(&name.as_str()) {
                    found.insert(name);
                }
            }
        }
        found
    }

    #[test]
    fn every_call_in_the_adapters_is_listed_and_every_listed_call_is_made() {
        let listed: BTreeSet<String> = CALLS.iter().map(|c| c.operation.to_owned()).collect();
        let made = calls_in_source();
        assert_eq!(
            made.difference(&listed).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "calls made but not listed in actions::CALLS"
        );
        assert_eq!(
            listed.difference(&made).collect::<Vec<_>>(),
            Vec::<&String>::new(),
            "calls listed in actions::CALLS but no longer made"
        );
    }

    #[test]
    fn runtime_needs_no_create_actions() {
        let runtime = runtime();
        assert!(runtime.contains("sqs:ReceiveMessage"));
        assert!(
            runtime.iter().all(|a| !a.contains(":Create")),
            "{runtime:?}"
        );
        assert!(all().is_superset(&runtime));
        assert!(all().contains("dynamodb:CreateTable"));
    }
}
