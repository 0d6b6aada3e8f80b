//! The Blobs port on S3. Uploads stream: a body that fits in one part goes up in one
//! PutObject, a larger one as a multipart upload that holds one part in memory at a time,
//! so a multi-GiB image costs a part's worth of memory. Copies stay on the server.

mod multipart;

use std::io;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter,
};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use self::multipart::Multipart;
use super::Failure;
use crate::store::blobs::{check_content_type, check_key, BlobError, BlobInfo, Blobs, ByteStream};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (all but the last) and largest single copy.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * MIB;

/// The sizes that choose between single and multipart requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct S3Tuning {
    /// Upload part size; a body up to this size goes up in one PutObject.
    pub part_size: u64,
    /// Objects above this size are copied part by part (UploadPartCopy).
    pub copy_threshold: u64,
    pub copy_part_size: u64,
}

impl Default for S3Tuning {
    fn default() -> Self {
        Self {
            part_size: 8 * MIB,
            copy_threshold: MAX_SINGLE_COPY,
            copy_part_size: 512 * MIB,
        }
    }
}

/// The Blobs port on S3.
pub struct S3Blobs {
    client: Client,
    tuning: S3Tuning,
}

impl S3Blobs {
    pub fn new(client: Client) -> Self {
        Self::with_tuning(client, S3Tuning::default())
    }

    /// Part sizes are raised to S3's minimum, and the copy threshold capped at its maximum.
    pub fn with_tuning(client: Client, tuning: S3Tuning) -> Self {
        let tuning = S3Tuning {
            part_size: tuning.part_size.max(MIN_PART_SIZE),
            copy_threshold: tuning.copy_threshold.min(MAX_SINGLE_COPY),
            copy_part_size: tuning.copy_part_size.clamp(MIN_PART_SIZE, MAX_SINGLE_COPY),
        };
        Self { client, tuning }
    }

    async fn put_multipart(
        &self,
        bucket: &str,
        key: &str,
        body: &mut ByteStream,
        mut buffer: BytesMut,
        content_type: Option<&str>,
    ) -> Result<u64, BlobError> {
        let part_size = self.tuning.part_size as usize;
        let mut upload = Multipart::create(&self.client, bucket, key, content_type)
            .await
            .map_err(|f| error(f, bucket, key))?;
        let mut size = 0u64;
        loop {
            let ended = match fill(body, &mut buffer, part_size).await {
                Ok(ended) => ended,
                Err(e) => {
                    upload.abort().await;
                    return Err(e);
                }
            };
            while buffer.len() >= part_size || (ended && !buffer.is_empty()) {
                let part = buffer.split_to(buffer.len().min(part_size)).freeze();
                size += part.len() as u64;
                if let Err(f) = upload.upload(part).await {
                    upload.abort().await;
                    return Err(error(f, bucket, key));
                }
            }
            if ended {
                break;
            }
        }
        upload.complete().await.map_err(|f| error(f, bucket, key))?;
        Ok(size)
    }

    async fn copy_multipart(
        &self,
        source: &str,
        size: u64,
        dst_bucket: &str,
        dst_key: &str,
        content_type: Option<&str>,
    ) -> Result<(), BlobError> {
        let mut upload = Multipart::create(&self.client, dst_bucket, dst_key, content_type)
            .await
            .map_err(|f| error(f, dst_bucket, dst_key))?;
        let mut first = 0;
        while first < size {
            let last = (first + self.tuning.copy_part_size).min(size) - 1;
            if let Err(f) = upload.copy(source, format!("bytes={first}-{last}")).await {
                upload.abort().await;
                return Err(error(f, dst_bucket, dst_key));
            }
            first = last + 1;
        }
        upload
            .complete()
            .await
            .map_err(|f| error(f, dst_bucket, dst_key))
    }
}

/// Reads from the body until the buffer holds `target` bytes or the body ends (`true`).
/// The body's own error comes back untouched, as the port promises.
async fn fill(
    body: &mut ByteStream,
    buffer: &mut BytesMut,
    target: usize,
) -> Result<bool, BlobError> {
    while buffer.len() < target {
        match body.next().await {
            Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(BlobError::Body(e)),
            None => return Ok(true),
        }
    }
    Ok(false)
}

fn error(failure: Failure, bucket: &str, key: &str) -> BlobError {
    if failure.is("NoSuchBucket") {
        BlobError::NoSuchBucket(bucket.to_owned())
    } else if failure.is("NoSuchKey") {
        BlobError::not_found(bucket, key)
    } else if failure.transient {
        BlobError::Unavailable(failure.message)
    } else {
        BlobError::Backend(failure.message)
    }
}

/// `bucket/key` for `x-amz-copy-source`, the key percent-encoded except for its slashes.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn sdk_body_stream(body: SdkByteStream) -> ByteStream {
    Box::pin(futures::stream::try_unfold(body, |mut body| async move {
        let chunk: Option<Bytes> = body.try_next().await.map_err(io::Error::from)?;
        Ok(chunk.map(|c| (c, body)))
    }))
}

#[async_trait]
impl Blobs for S3Blobs {
    async fn ensure_bucket(&self, bucket: &str) -> Result<bool, BlobError> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(false),
            Err(e) => {
                let failure = Failure::from(e);
                if failure.status != Some(404) {
                    return Err(error(failure, bucket, ""));
                }
            }
        }
        // us-east-1 is the one region that takes no location constraint.
        let configuration = self
            .client
            .config()
            .region()
            .map(|r| r.as_ref())
            .filter(|r| *r != "us-east-1")
            .map(|r| {
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r))
                    .build()
            });
        let result = self
            .client
            .create_bucket()
            .bucket(bucket)
            .set_create_bucket_configuration(configuration)
            .send()
            .await;
        match result.map_err(Failure::from) {
            Ok(_) => Ok(true),
            Err(f) if f.is("BucketAlreadyOwnedByYou") => Ok(false),
            Err(f) => Err(error(f, bucket, "")),
        }
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        mut body: ByteStream,
        content_type: Option<&str>,
    ) -> Result<u64, BlobError> {
        check_key(key)?;
        check_content_type(content_type)?;
        // One byte over a part tells a body that needs a multipart upload.
        let part_size = self.tuning.part_size as usize;
        let mut buffer = BytesMut::new();
        if !fill(&mut body, &mut buffer, part_size + 1).await? {
            return self
                .put_multipart(bucket, key, &mut body, buffer, content_type)
                .await;
        }
        let size = buffer.len() as u64;
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .content_length(size as i64)
            .body(SdkByteStream::from(buffer.freeze()))
            .send()
            .await
            .map_err(|e| error(e.into(), bucket, key))?;
        Ok(size)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<ByteStream, BlobError> {
        check_key(key)?;
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| error(e.into(), bucket, key))?;
        Ok(sdk_body_stream(out.body))
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        check_key(key)?;
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(BlobInfo {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                content_type: out.content_type().map(str::to_owned),
            })),
            Err(e) => {
                // A HEAD response has no body, so a missing key is known only by its 404.
                let failure = Failure::from(e);
                if failure.status == Some(404) {
                    Ok(None)
                } else {
                    Err(error(failure, bucket, key))
                }
            }
        }
    }

    async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), BlobError> {
        check_key(dst_key)?;
        let info = self
            .head(src_bucket, src_key)
            .await?
            .ok_or_else(|| BlobError::not_found(src_bucket, src_key))?;
        let source = copy_source(src_bucket, src_key);
        if info.size > self.tuning.copy_threshold {
            return self
                .copy_multipart(
                    &source,
                    info.size,
                    dst_bucket,
                    dst_key,
                    info.content_type.as_deref(),
                )
                .await;
        }
        self.client
            .copy_object()
            .copy_source(source)
            .bucket(dst_bucket)
            .key(dst_key)
            .send()
            .await
            .map_err(|e| error(e.into(), dst_bucket, dst_key))?;
        Ok(())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| error(e.into(), bucket, key))?;
        Ok(())
    }

    async fn expire_objects(&self, bucket: &str, days: u32) -> Result<(), BlobError> {
        let wanted = expiry_rule(days)?;
        let rules = match self
            .client
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
            .map_err(Failure::from)
        {
            Ok(out) => out.rules.unwrap_or_default(),
            Err(f) if f.is("NoSuchLifecycleConfiguration") => Vec::new(),
            Err(f) => return Err(error(f, bucket, "")),
        };
        if rules.iter().any(|r| same_expiry(r, &wanted)) {
            return Ok(());
        }
        // The bucket's other rules (an operator's) stay; this one is replaced.
        let rules = rules
            .into_iter()
            .filter(|r| r.id() != Some(EXPIRY_RULE))
            .chain([wanted])
            .collect();
        let configuration = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| BlobError::Backend(e.to_string()))?;
        self.client
            .put_bucket_lifecycle_configuration()
            .bucket(bucket)
            .lifecycle_configuration(configuration)
            .send()
            .await
            .map_err(|e| error(e.into(), bucket, ""))?;
        Ok(())
    }
}

/// The id of the lifecycle rule that [`Blobs::expire_objects`] sets.
pub const EXPIRY_RULE: &str = "k8or-expire-objects";

/// The rule: every object expires after `days`; unfinished multipart uploads after one.
fn expiry_rule(days: u32) -> Result<LifecycleRule, BlobError> {
    let days = i32::try_from(days)
        .map_err(|_| BlobError::Backend(format!("{days} days is beyond S3's lifecycle rules")))?;
    LifecycleRule::builder()
        .id(EXPIRY_RULE)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .expiration(LifecycleExpiration::builder().days(days).build())
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(1)
                .build(),
        )
        .build()
        .map_err(|e| BlobError::Backend(e.to_string()))
}

/// Whether `rule` is the expiry rule as wanted (what S3 hands back may spell the rest of
/// it differently: the filter, defaults).
fn same_expiry(rule: &LifecycleRule, wanted: &LifecycleRule) -> bool {
    let days = |r: &LifecycleRule| r.expiration().and_then(LifecycleExpiration::days);
    let abort = |r: &LifecycleRule| {
        r.abort_incomplete_multipart_upload()
            .and_then(AbortIncompleteMultipartUpload::days_after_initiation)
    };
    rule.id() == wanted.id()
        && rule.status() == wanted.status()
        && days(rule) == days(wanted)
        && abort(rule) == abort(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_encodes_all_but_slashes_and_unreserved() {
        assert_eq!(copy_source("b", "a/b-c_d.e~f"), "b/a/b-c_d.e~f");
        assert_eq!(copy_source("b", "a b+c?&é"), "b/a%20b%2Bc%3F%26%C3%A9");
    }

    #[tokio::test]
    async fn fill_stops_at_the_target_and_reports_the_end() {
        let chunks = vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"defg")),
        ];
        let mut body: ByteStream = Box::pin(futures::stream::iter(chunks));
        let mut buffer = BytesMut::new();
        assert!(!fill(&mut body, &mut buffer, 2).await.unwrap());
        assert_eq!(&buffer[..], b"abc");
        assert!(fill(&mut body, &mut buffer, 100).await.unwrap());
        assert_eq!(&buffer[..], b"abcdefg");
    }

    #[tokio::test]
    async fn fill_hands_back_the_body_error_intact() {
        let chunks = vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "client went away",
            )),
        ];
        let mut body: ByteStream = Box::pin(futures::stream::iter(chunks));
        let err = fill(&mut body, &mut BytesMut::new(), 100)
            .await
            .unwrap_err();
        let BlobError::Body(io) = err else {
            panic!("expected a body error, got {err:?}")
        };
        assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(io.to_string(), "client went away");
    }
}
