//! The production adapters: SQS for the Queue port, DynamoDB for Tables, S3 for Blobs.
//! They share one SDK configuration (`client`), and one way of reading SDK errors (here):
//! what may pass becomes the port's retryable `Unavailable`, the rest its `Backend`, and
//! either way the message carries the SDK's full context, never a bare "service error".

pub mod actions;
pub mod client;
pub mod dynamo;
pub mod s3;
pub mod sqs;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub use client::{AwsClients, AwsConnection, Credentials};
pub use dynamo::DynamoTables;
pub use s3::S3Blobs;
pub use sqs::SqsQueue;

/// Error codes that mean "slow down" or "try again" across SQS, DynamoDB and S3.
const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "LimitExceededException",
    "PriorRequestNotComplete",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "SlowDown",
    "ThrottledException",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "TransactionInProgressException",
];

/// An SDK call's failure, read once so each adapter can map it to its port's error.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The service's error code (`QueueDoesNotExist`, `ConditionalCheckFailedException`…).
    pub code: Option<String>,
    /// The HTTP status, when a response came back.
    pub status: Option<u16>,
    /// Throttling, a timeout, a 5xx or a connection that failed: it may pass.
    pub transient: bool,
    /// The error with its whole source chain.
    pub message: String,
}

impl Failure {
    /// A failure found on this side, before or between calls: permanent.
    pub fn local(message: String) -> Self {
        Self {
            code: None,
            status: None,
            transient: false,
            message,
        }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    pub fn is_any(&self, codes: &[&str]) -> bool {
        codes.iter().any(|c| self.is(c))
    }
}

impl<E> From<SdkError<E, HttpResponse>> for Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn from(err: SdkError<E, HttpResponse>) -> Self {
        let code = err.code().map(str::to_owned);
        let status = err.raw_response().map(|r| r.status().as_u16());
        let transient = match &err {
            SdkError::TimeoutError(_) => true,
            // The request never left: a connection that failed may pass, credentials that
            // no provider of the chain has will not.
            SdkError::DispatchFailure(_) => !no_credentials(&err),
            // A response that could not be read: the connection was cut midway.
            SdkError::ResponseError(_) => true,
            SdkError::ServiceError(_) => {
                status.is_some_and(|s| s >= 500 || s == 429)
                    || code.as_deref().is_some_and(is_transient_code)
            }
            _ => false,
        };
        Self {
            code,
            status,
            transient,
            message: DisplayErrorContext(&err).to_string(),
        }
    }
}

/// Whether the error comes from a credentials chain with nothing to give (no provider
/// configured, or a configuration it cannot use), rather than one that failed for now.
fn no_credentials(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(c) = e.downcast_ref::<CredentialsError>() {
            return matches!(
                c,
                CredentialsError::CredentialsNotLoaded(_)
                    | CredentialsError::InvalidConfiguration(_)
            );
        }
        source = e.source();
    }
    false
}

fn is_transient_code(code: &str) -> bool {
    TRANSIENT_CODES.contains(&code) || code.contains("Throttl")
}

#[cfg(test)]
mod tests {
    use aws_credential_types::provider::{future, ProvideCredentials};

    use super::*;
    use crate::store::{OutMessage, Queue};

    /// A chain with nothing in it, as on a machine with no credentials configured.
    #[derive(Debug)]
    struct NoCredentials;

    impl ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "no provider in the chain has credentials",
            )))
        }
    }

    #[tokio::test]
    async fn missing_credentials_are_permanent_and_say_so() {
        // Nothing listens on port 9: credentials fail before any connection is tried.
        let connection = AwsConnection {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            s3_path_style: true,
        };
        let config = connection
            .loader()
            .credentials_provider(NoCredentials)
            .load()
            .await;
        let clients = AwsClients::new(&config, true);
        let err = SqsQueue::new(clients.sqs)
            .send("q", OutMessage::new("x"))
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err:?}");
        assert!(
            err.to_string()
                .contains("no provider in the chain has credentials"),
            "{err}"
        );
    }

    #[test]
    fn throttling_codes_are_transient() {
        for code in [
            "ThrottlingException",
            "AWS.SimpleQueueService.RequestThrottled",
            "ProvisionedThroughputExceededException",
            "SlowDown",
            "KMS.ThrottlingException",
        ] {
            assert!(is_transient_code(code), "{code}");
        }
        for code in [
            "ConditionalCheckFailedException",
            "NoSuchKey",
            "QueueDoesNotExist",
            "ValidationException",
            "AccessDenied",
        ] {
            assert!(!is_transient_code(code), "{code}");
        }
    }
}
