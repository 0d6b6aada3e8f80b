//! One S3 multipart upload, from create to complete. It is aborted on any failure, and also
//! when dropped unfinished (a cancelled request), so no invisible parts are left to be
//! billed: the object appears whole or not at all.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::Bytes;

use super::super::Failure;

/// S3 numbers parts from 1 to 10,000.
const MAX_PARTS: i32 = 10_000;

pub(super) struct Multipart {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
    parts: Vec<CompletedPart>,
    /// Cleared once the upload is completed or aborted.
    open: bool,
}

impl Multipart {
    pub async fn create(
        client: &Client,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
    ) -> Result<Self, Failure> {
        let out = client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .send()
            .await?;
        let upload_id = out.upload_id().unwrap_or_default().to_owned();
        Ok(Self {
            client: client.clone(),
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id,
            parts: Vec::new(),
            open: true,
        })
    }

    fn next_part(&self) -> Result<i32, Failure> {
        let n = self.parts.len() as i32 + 1;
        if n > MAX_PARTS {
            return Err(Failure::local(format!(
                "{}/{} needs more than {MAX_PARTS} parts",
                self.bucket, self.key
            )));
        }
        Ok(n)
    }

    pub async fn upload(&mut self, body: Bytes) -> Result<(), Failure> {
        let number = self.next_part()?;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await?;
        self.push(number, out.e_tag());
        Ok(())
    }

    /// Copies `range` ("bytes=first-last") of `source` ("bucket/encoded-key") as the next part.
    pub async fn copy(&mut self, source: &str, range: String) -> Result<(), Failure> {
        let number = self.next_part()?;
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .part_number(number)
            .copy_source(source)
            .copy_source_range(range)
            .send()
            .await?;
        self.push(number, out.copy_part_result().and_then(|r| r.e_tag()));
        Ok(())
    }

    fn push(&mut self, number: i32, e_tag: Option<&str>) {
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(e_tag.map(str::to_owned))
                .build(),
        );
    }

    pub async fn complete(mut self) -> Result<(), Failure> {
        let parts = std::mem::take(&mut self.parts);
        let result = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&self.upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => {
                self.open = false;
                Ok(())
            }
            Err(e) => {
                self.abort().await;
                Err(e.into())
            }
        }
    }

    /// Aborts now; a failure to abort is logged, and the caller's own error is what counts.
    pub async fn abort(mut self) {
        self.open = false;
        if let Err(e) = abort(&self.client, &self.bucket, &self.key, &self.upload_id).await {
            tracing::warn!(bucket = %self.bucket, key = %self.key, error = %e.message,
                "aborting a failed multipart upload failed; a bucket lifecycle rule should clean it up");
        }
    }
}

async fn abort(client: &Client, bucket: &str, key: &str, upload_id: &str) -> Result<(), Failure> {
    client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await?;
    Ok(())
}

impl Drop for Multipart {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, bucket, key, upload_id) = (
            self.client.clone(),
            std::mem::take(&mut self.bucket),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.upload_id),
        );
        runtime.spawn(async move {
            if let Err(e) = abort(&client, &bucket, &key, &upload_id).await {
                tracing::warn!(%bucket, %key, error = %e.message,
                    "aborting a cancelled multipart upload failed");
            }
        });
    }
}
