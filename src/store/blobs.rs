//! The Blobs port: S3-style buckets of objects, streamed in and out, never held whole.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::digest::Sha256;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream};

/// A stream of object bytes.
pub type ByteStream = BoxStream<'static, io::Result<Bytes>>;

/// What `head` tells of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    pub content_type: Option<String>,
}

/// One object of [`Blobs::put_many`], held whole in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallObject {
    pub key: String,
    pub body: Bytes,
    pub content_type: Option<String>,
}

/// What a checked put measured on the way in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    pub size: u64,
    /// Lowercase hex sha256 of the bytes.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("object {bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    /// The key would leave its bucket (`..`, absolute, empty segments, control characters).
    #[error("invalid object key {0:?}: {1}")]
    InvalidKey(String, &'static str),
    /// A content type no HTTP header could carry (a control character, a non-ASCII byte).
    #[error("invalid content type {0:?}: only visible ASCII, spaces and tabs")]
    InvalidContentType(String),
    #[error("object is over the {limit}-byte limit")]
    TooLarge { limit: u64 },
    /// The body stream failed (the client went away, or sent bad data).
    #[error("reading the body failed: {0}")]
    Body(io::Error),
    #[error("blob backend unavailable: {0}")]
    Unavailable(String),
    #[error("blob backend error: {0}")]
    Backend(String),
}

impl BlobError {
    /// `NotFound` for this object.
    pub fn not_found(bucket: &str, key: &str) -> Self {
        Self::NotFound {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Creates the bucket if it is missing; `Ok(true)` if it was created.
    async fn ensure_bucket(&self, bucket: &str) -> Result<bool, BlobError>;

    /// Streams the body into the object. The object appears whole or not at all: a body
    /// that fails midway leaves nothing behind, and the body's own error comes back as
    /// `BlobError::Body` with the `io::Error` intact. Returns the bytes written.
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: ByteStream,
        content_type: Option<&str>,
    ) -> Result<u64, BlobError>;

    async fn get(&self, bucket: &str, key: &str) -> Result<ByteStream, BlobError>;

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobInfo>, BlobError>;

    /// Copies an object, possibly between buckets, server-side where the backend can.
    async fn copy(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), BlobError>;

    /// Deletes the object; deleting a missing object is not an error.
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError>;

    /// Has the store delete `bucket`'s objects once they are `days` days old, and (where
    /// the store has them) multipart uploads left unfinished for a day. S3 keeps this as a
    /// lifecycle rule of the bucket (other rules kept) and applies it by itself, about
    /// daily. The folder deletes the objects over the age when this is called, which
    /// `provision` does at every start of an embedded process, and again every day while
    /// that process runs. For the temporary bucket, whose objects a crashed process may
    /// leave.
    async fn expire_objects(&self, bucket: &str, days: u32) -> Result<(), BlobError>;

    /// Puts several objects held in memory into one bucket. Every key and type is checked
    /// first, so one bad name stores none of them. Then each object appears whole or not
    /// at all, as its own `put` would make it, but the set is not atomic: an error or a
    /// crash midway may leave some of them in place, and putting the set again is safe.
    ///
    /// This default puts them side by side, as S3 must. The folder overrides it: one commit
    /// of its intent log for the whole set, or without the log, each folder synced once for
    /// the whole set, not once per object.
    async fn put_many(&self, bucket: &str, objects: Vec<SmallObject>) -> Result<(), BlobError> {
        check_objects(&objects)?;
        let puts = objects.into_iter().map(|o| async move {
            self.put(
                bucket,
                &o.key,
                bytes_body(o.body),
                o.content_type.as_deref(),
            )
            .await
        });
        futures::future::try_join_all(puts).await.map(drop)
    }

    /// Moves an object, possibly between buckets: afterwards it is at the destination
    /// (replacing any object there), type and bytes kept, and gone from the source.
    /// `NotFound` if the source is missing. Moving an object onto itself changes nothing.
    ///
    /// This default copies, then deletes the source, as S3 must: a crash between the two
    /// leaves both, and moving again is safe. The folder overrides it with one rename.
    async fn rename(
        &self,
        src_bucket: &str,
        src_key: &str,
        dst_bucket: &str,
        dst_key: &str,
    ) -> Result<(), BlobError> {
        if (src_bucket, src_key) == (dst_bucket, dst_key) {
            return match self.head(src_bucket, src_key).await? {
                Some(_) => Ok(()),
                None => Err(BlobError::not_found(src_bucket, src_key)),
            };
        }
        self.copy(src_bucket, src_key, dst_bucket, dst_key).await?;
        self.delete(src_bucket, src_key).await
    }
}

/// Checks every key and type of a [`Blobs::put_many`] set.
pub fn check_objects(objects: &[SmallObject]) -> Result<(), BlobError> {
    objects.iter().try_for_each(|o| {
        check_key(&o.key)?;
        check_content_type(o.content_type.as_deref())
    })
}

/// Checks that a content type is one an HTTP header can carry (RFC 9110 field value:
/// visible ASCII, spaces and tabs), as S3 would have it, so that every backend stores the
/// same types and none other.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), BlobError> {
    match content_type {
        Some(ct) if !is_header_value(ct) => Err(BlobError::InvalidContentType(ct.to_owned())),
        _ => Ok(()),
    }
}

/// Whether an HTTP header could carry `text` as its value: visible ASCII, spaces, tabs.
pub fn is_header_value(text: &str) -> bool {
    text.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Checks that a key stays inside its bucket: relative, no `.`/`..`/empty segments, no
/// backslashes or control characters, at most 1024 bytes (the S3 limit).
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let bad = |why| Err(BlobError::InvalidKey(key.to_owned(), why));
    if key.is_empty() || key.len() > 1024 {
        return bad("must be 1 to 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("must not be absolute");
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return bad("must not contain control characters or backslashes");
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("must not contain empty, '.' or '..' segments");
    }
    Ok(())
}

/// Wraps a body stream to hash it and enforce a size cap as it passes.
pub struct Metered {
    inner: ByteStream,
    hasher: Sha256,
    size: u64,
    limit: u64,
    shared: std::sync::Arc<std::sync::Mutex<Option<PutReceipt>>>,
}

impl Stream for Metered {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.size += chunk.len() as u64;
                if this.size > this.limit {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        TooLargeMarker(this.limit),
                    ))));
                }
                this.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                let sha256 = std::mem::take(&mut this.hasher).finish_hex();
                *this.shared.lock().expect("metered lock") = Some(PutReceipt {
                    size: this.size,
                    sha256,
                });
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

#[derive(Debug)]
struct TooLargeMarker(u64);

impl std::fmt::Display for TooLargeMarker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "body over the {}-byte limit", self.0)
    }
}

impl std::error::Error for TooLargeMarker {}

/// Streams `body` into the object while hashing it, refusing more than `limit` bytes.
/// On any failure the object is not left behind.
pub async fn put_checked(
    blobs: &dyn Blobs,
    bucket: &str,
    key: &str,
    body: ByteStream,
    content_type: Option<&str>,
    limit: u64,
) -> Result<PutReceipt, BlobError> {
    let shared = std::sync::Arc::new(std::sync::Mutex::new(None));
    let metered = Metered {
        inner: body,
        hasher: Sha256::new(),
        size: 0,
        limit,
        shared: shared.clone(),
    };
    let result = blobs
        .put(bucket, key, Box::pin(metered), content_type)
        .await;
    if let Err(e) = result {
        return Err(match e {
            BlobError::Body(io) if is_too_large(&io) => BlobError::TooLarge { limit },
            other => other,
        });
    }
    let receipt = shared.lock().expect("metered lock").take();
    receipt.ok_or_else(|| BlobError::Backend("the backend did not read the whole body".into()))
}

fn is_too_large(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<TooLargeMarker>())
}

/// A body from bytes in memory (tests, small generated files).
pub fn bytes_body(bytes: impl Into<Bytes>) -> ByteStream {
    Box::pin(futures::stream::once(futures::future::ready(Ok(
        bytes.into()
    ))))
}

/// Reads a whole object into memory. Only for small objects (manifests, tests).
pub async fn read_all(blobs: &dyn Blobs, bucket: &str, key: &str) -> Result<Vec<u8>, BlobError> {
    use futures::TryStreamExt;
    let mut stream = blobs.get(bucket, key).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.try_next().await.map_err(BlobError::Body)? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for good in [
            "a",
            "a/b.png",
            "Het5-v0-0-01.png",
            "kustomize/u/v0/kustomization.yaml",
        ] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "a\0b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
