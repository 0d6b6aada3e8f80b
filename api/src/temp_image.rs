//! The image's way into the temporary bucket (seed 3.2, c12bms03-c16bre03-e50): streamed,
//! hashed and size-capped on the way by `put_checked`, never held whole in memory. An
//! empty or refused image leaves no object behind.

use std::io;
use std::time::Duration;

use axum::extract::multipart::{Field, MultipartError};
use bytes::Bytes;
use k8or::job::StoredImage;
use k8or::pid::known;
use k8or::store::blobs::{bytes_body, put_checked};
use k8or::store::{BlobError, ByteStream, PutReceipt};
use k8or::Context;

use crate::error::ApiError;
use crate::intake::Prepared;
use crate::telemetry;

/// Chunks in flight between the request body and the blob store: this, times the chunk
/// size, is all the upload memory a request holds.
const PIPE_CHUNKS: usize = 8;

/// How long after a dropped request its image is deleted a second time: a put cut off in
/// its last step (the folder store's rename in its blocking task, S3's
/// CompleteMultipartUpload already sent) may still land after the first delete.
const LATE_LANDING: Duration = Duration::from_secs(60);

/// The image of a request in the temporary bucket, not yet held by a job. If the request
/// is dropped before [`claim`](Self::claim) (the client went away, or the 408 layer fired
/// while the image was stored or a part after it was awaited), the object is deleted
/// from a task of its own, at once and again after [`LATE_LANDING`]: nothing else would
/// ever delete it. Its key is the request's own job id, so no one else's object is hit.
pub struct Unclaimed {
    ctx: Context,
    key: String,
    claimed: bool,
}

impl Unclaimed {
    pub fn new(ctx: &Context, prepared: &Prepared) -> Self {
        Self {
            ctx: ctx.clone(),
            key: prepared.temp_key(),
            claimed: false,
        }
    }

    /// The image is the job's now (`intake::commit` cleans up after its own failures), or
    /// the request has deleted it itself.
    pub fn claim(mut self) {
        self.claimed = true;
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if self.claimed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (ctx, key) = (self.ctx.clone(), std::mem::take(&mut self.key));
        tracing::info!(%key, "a request ended before its image was handed to a job; deleting it");
        runtime.spawn(async move {
            delete_blob(&ctx, &key).await;
            tokio::time::sleep(LATE_LANDING).await;
            delete_blob(&ctx, &key).await;
        });
    }
}

/// What the client declared about the image part.
#[derive(Debug, Default, Clone)]
pub struct Declared {
    pub content_type: Option<String>,
    pub file_name: Option<String>,
}

/// Streams a multipart field into the temporary bucket, chunk by chunk.
///
/// A `Field` borrows its `Multipart`, while the blob port wants a `'static` stream; a
/// small bounded channel joins the two inside this one task.
pub async fn store_field(
    ctx: &Context,
    prepared: &Prepared,
    mut field: Field<'_>,
    declared: Declared,
) -> Result<StoredImage, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(PIPE_CHUNKS);
    let body: ByteStream = Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let pump = async move {
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    telemetry::upload_bytes(chunk.len());
                    if tx.send(Ok(chunk)).await.is_err() {
                        // The store stopped reading (over the cap, or failed).
                        return None;
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(e.body_text()))).await;
                    return Some(e);
                }
            }
        }
    };
    let limit = ctx.settings.limits.upload_max_bytes;
    let key = prepared.temp_key();
    let put = put_checked(
        ctx.stores.blobs.as_ref(),
        &ctx.settings.buckets.temporary,
        &key,
        body,
        declared.content_type.as_deref(),
        limit,
    );
    let (stored, body_error) = tokio::join!(put, pump);
    match (stored, body_error) {
        (_, Some(e)) => {
            delete_blob(ctx, &key).await;
            Err(multipart_error(e))
        }
        (Err(e), None) => Err(blob_error(e)),
        (Ok(receipt), None) => finish_store(ctx, key, receipt, declared).await,
    }
}

/// Stores an image that is already in memory (the JSON form's small data URL).
pub async fn store_bytes(
    ctx: &Context,
    prepared: &Prepared,
    bytes: Vec<u8>,
    declared: Declared,
) -> Result<StoredImage, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::EmptyImage);
    }
    let limit = ctx.settings.limits.upload_max_bytes;
    if bytes.len() as u64 > limit {
        return Err(ApiError::PayloadTooLarge { limit: Some(limit) });
    }
    telemetry::upload_bytes(bytes.len());
    let key = prepared.temp_key();
    let receipt = put_checked(
        ctx.stores.blobs.as_ref(),
        &ctx.settings.buckets.temporary,
        &key,
        bytes_body(bytes),
        declared.content_type.as_deref(),
        limit,
    )
    .await
    .map_err(blob_error)?;
    finish_store(ctx, key, receipt, declared).await
}

async fn finish_store(
    ctx: &Context,
    key: String,
    receipt: PutReceipt,
    declared: Declared,
) -> Result<StoredImage, ApiError> {
    if receipt.size == 0 {
        delete_blob(ctx, &key).await;
        return Err(ApiError::EmptyImage);
    }
    tracing::info!(
        pid = known::TEMP_IMAGE_SAVE,
        size = receipt.size,
        sha256 = %receipt.sha256,
        key = %key,
        "image stored in the temporary bucket"
    );
    Ok(StoredImage {
        temp_key: key,
        size: receipt.size,
        sha256: receipt.sha256,
        declared_content_type: declared.content_type,
        file_name: declared.file_name,
    })
}

pub(crate) fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit: None }
    } else {
        ApiError::BadRequest {
            code: "invalid-multipart",
            message: e.body_text(),
        }
    }
}

fn blob_error(e: BlobError) -> ApiError {
    match e {
        // The body failed under the store: the client went away or sent a broken body.
        BlobError::Body(io) => ApiError::BadRequest {
            code: "invalid-multipart",
            message: format!("reading the image failed: {io}"),
        },
        // The client's declared type, which the part's header carried.
        BlobError::InvalidContentType(t) => ApiError::BadRequest {
            code: "invalid-multipart",
            message: format!("the image part's content type {t:?} is not a valid header value"),
        },
        other => other.into(),
    }
}

pub async fn delete_blob(ctx: &Context, key: &str) {
    if let Err(e) = ctx
        .stores
        .blobs
        .delete(&ctx.settings.buckets.temporary, key)
        .await
    {
        tracing::error!(error = %e, key, "could not delete a rejected upload from the temporary bucket");
    }
}
