//! One shared SDK configuration for the three AWS clients: credentials and region from
//! aws-config's default chain (environment, profile, web identity, ECS, EC2 instance
//! metadata), an optional endpoint override for local AWS-protocol servers, and the SDK's
//! own retries in standard mode.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::config::Backend;

pub use aws_sdk_sqs::config::Credentials;

/// Attempts per call, the first included. Standard mode backs off exponentially with jitter
/// and retries only what the SDK classifies as transient (throttling, 5xx, timeouts, I/O);
/// what is still failing after these attempts reaches the port as `Unavailable`, so the
/// stage runner's own backoff takes over.
const MAX_ATTEMPTS: u32 = 4;

/// Connecting is bounded.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to the first byte of a response, after which the attempt fails and is retried:
/// more than SQS's longest long poll (20 s), so a healthy wait is never cut, while a server
/// that stopped answering (a partition, a hung node) frees the worker instead of holding it
/// forever. It bounds the first byte only, so long downloads are not cut, and S3 answers a
/// long server-side copy with its status line at once.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the AWS adapters connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConnection {
    /// Set for a local AWS-protocol server (moto, MinIO); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    pub region: String,
    /// Path-style S3 addressing (`http://host/bucket/key`), which local servers need because
    /// they have no per-bucket DNS names.
    pub s3_path_style: bool,
}

impl AwsConnection {
    /// The connection of an AWS backend; `None` for the embedded backend.
    pub fn from_backend(backend: &Backend) -> Option<Self> {
        match backend {
            Backend::Aws {
                endpoint_url,
                region,
                s3_path_style,
            } => Some(Self {
                endpoint_url: endpoint_url.clone(),
                region: region.clone(),
                s3_path_style: *s3_path_style,
            }),
            Backend::Embedded { .. } => None,
        }
    }

    /// The loader with everything but credentials set: the default chain finds those.
    pub fn loader(&self) -> ConfigLoader {
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .region(Region::new(self.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .build(),
            );
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        loader
    }

    /// Clients with credentials from the default chain.
    pub async fn connect(&self) -> AwsClients {
        AwsClients::new(&self.loader().load().await, self.s3_path_style)
    }

    /// Clients with fixed credentials: for local servers, which accept any key.
    pub async fn connect_with(&self, credentials: Credentials) -> AwsClients {
        let config = self.loader().credentials_provider(credentials).load().await;
        AwsClients::new(&config, self.s3_path_style)
    }
}

/// The three service clients, built from one `SdkConfig` (they share its HTTP connection
/// pool and credentials cache). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
}

impl AwsClients {
    pub fn new(config: &SdkConfig, s3_path_style: bool) -> Self {
        // Checksums only where the S3 API requires them: the newer default (CRC32 on every
        // upload, validated on every download) is not implemented by every S3-protocol
        // server, and the pipeline hashes every upload itself (sha256 in `put_checked`).
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(s3_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Self {
            sqs: aws_sdk_sqs::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            s3: aws_sdk_s3::Client::from_conf(s3),
        }
    }
}
