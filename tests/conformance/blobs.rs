//! The Blobs suite: S3 semantics every adapter keeps.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};
use k8or::store::blobs::{
    bytes_body, put_checked, read_all, BlobError, Blobs, ByteStream, SmallObject,
};
use sha2::{Digest, Sha256};

use super::unique;

/// Runs the Blobs suite against `$factory`, an async expression giving `Arc<dyn Blobs>`.
#[macro_export]
macro_rules! blobs_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            $factory,
            blobs,
            [
                blobs_streaming_put_get_round_trip,
                blobs_ensure_bucket_is_idempotent,
                blobs_head_reports_size_and_type,
                blobs_copy_across_buckets_is_independent,
                blobs_rename_moves_the_object,
                blobs_delete_is_idempotent,
                blobs_expiry_keeps_young_objects_and_can_be_set_again,
                blobs_key_escape_is_rejected,
                blobs_content_type_no_header_could_carry_is_rejected,
                blobs_failed_body_leaves_no_object,
                blobs_put_checked_caps_size_and_hashes,
                blobs_missing_bucket_and_object,
                blobs_put_many_puts_each_object_and_checks_all_names_first,
            ]
        );
    };
}

const CHUNK: usize = 64 * 1024;

async fn fresh(b: &dyn Blobs) -> String {
    let name = unique("b");
    assert!(b.ensure_bucket(&name).await.expect("ensure bucket"));
    name
}

/// Deterministic bytes that differ from chunk to chunk, so a misplaced chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i / CHUNK) as u8))
        .collect()
}

fn chunked(data: Vec<u8>) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = data
        .chunks(CHUNK)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(stream::iter(chunks))
}

/// A body that sends `good` bytes, then fails as a client that went away.
fn failing_body(good: usize) -> ByteStream {
    let first = stream::iter(
        pattern(good, 7)
            .chunks(CHUNK)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let broken = stream::once(async {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        ))
    });
    Box::pin(first.chain(broken))
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub async fn blobs_streaming_put_get_round_trip(b: Arc<dyn Blobs>) {
    let bucket = fresh(&*b).await;
    let data = pattern(3 * 1024 * 1024 + 123, 1);
    let written = b
        .put(
            &bucket,
            "images/Het5-v0-0-01.tar",
            chunked(data.clone()),
            Some("application/x-tar"),
        )
        .await
        .expect("put");
    assert_eq!(written, data.len() as u64);
    let mut got = Vec::with_capacity(data.len());
    let mut chunks = 0;
    let mut s = b
        .get(&bucket, "images/Het5-v0-0-01.tar")
        .await
        .expect("get");
    while let Some(chunk) = s.try_next().await.expect("read") {
        got.extend_from_slice(&chunk);
        chunks += 1;
    }
    assert!(chunks > 1, "the object streams out in chunks");
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256_hex(&got), sha256_hex(&data));
}

pub async fn blobs_ensure_bucket_is_idempotent(b: Arc<dyn Blobs>) {
    let name = unique("b");
    assert!(b.ensure_bucket(&name).await.expect("create"));
    assert!(!b.ensure_bucket(&name).await.expect("again"));
}

pub async fn blobs_head_reports_size_and_type(b: Arc<dyn Blobs>) {
    let bucket = fresh(&*b).await;
    assert_eq!(b.head(&bucket, "a.png").await.expect("head"), None);
    b.put(
        &bucket,
        "a.png",
        bytes_body(vec![0u8; 1234]),
        Some("image/png"),
    )
    .await
    .expect("put");
    let info = b
        .head(&bucket, "a.png")
        .await
        .expect("head")
        .expect("an object");
    assert_eq!(info.size, 1234);
    assert_eq!(info.content_type.as_deref(), Some("image/png"));
    b.put(
        &bucket,
        "a.png",
        bytes_body(vec![1u8; 10]),
        Some("image/gif"),
    )
    .await
    .expect("overwrite");
    let info = b
        .head(&bucket, "a.png")
        .await
        .expect("head")
        .expect("an object");
    assert_eq!(info.size, 10);
    assert_eq!(info.content_type.as_deref(), Some("image/gif"));
}

/// A copy is its own object: it survives changes to and deletion of its source.
pub async fn blobs_copy_across_buckets_is_independent(b: Arc<dyn Blobs>) {
    let temporary = fresh(&*b).await;
    let app = fresh(&*b).await;
    let data = pattern(200_000, 3);
    b.put(
        &temporary,
        "up/x.png",
        chunked(data.clone()),
        Some("image/png"),
    )
    .await
    .expect("put");
    b.copy(&temporary, "up/x.png", &app, "final/x.png")
        .await
        .expect("copy");
    assert_eq!(
        read_all(&*b, &app, "final/x.png").await.expect("read"),
        data
    );
    let info = b
        .head(&app, "final/x.png")
        .await
        .expect("head")
        .expect("copied");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.content_type.as_deref(), Some("image/png"));

    b.put(&temporary, "up/x.png", bytes_body("changed"), None)
        .await
        .expect("overwrite source");
    assert_eq!(
        read_all(&*b, &app, "final/x.png").await.expect("read"),
        data
    );
    b.delete(&temporary, "up/x.png")
        .await
        .expect("delete source");
    assert_eq!(
        read_all(&*b, &app, "final/x.png").await.expect("read"),
        data
    );

    let missing = b.copy(&temporary, "up/x.png", &app, "y.png").await;
    assert!(
        matches!(missing, Err(BlobError::NotFound { .. })),
        "{missing:?}"
    );
}

/// A move leaves the object (bytes and type) at the destination, replacing what was there,
/// and nothing at the source; moving a missing object is `NotFound`; moving an object onto
/// itself keeps it.
pub async fn blobs_rename_moves_the_object(b: Arc<dyn Blobs>) {
    let temporary = fresh(&*b).await;
    let app = fresh(&*b).await;
    let data = pattern(70_000, 9);
    b.put(
        &temporary,
        "up/1/x",
        chunked(data.clone()),
        Some("image/png"),
    )
    .await
    .expect("put");
    b.put(&app, "final/x.png", bytes_body("older"), Some("text/plain"))
        .await
        .expect("put the object to replace");
    b.rename(&temporary, "up/1/x", &app, "final/x.png")
        .await
        .expect("rename across buckets");
    assert_eq!(
        read_all(&*b, &app, "final/x.png").await.expect("read"),
        data
    );
    let info = b
        .head(&app, "final/x.png")
        .await
        .expect("head")
        .expect("moved");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.content_type.as_deref(), Some("image/png"));
    assert_eq!(b.head(&temporary, "up/1/x").await.expect("head"), None);

    // Within a bucket, an object put without a type (S3 gives it a default one, which
    // the move keeps); then onto itself.
    b.put(&app, "a/untyped", bytes_body("u"), None)
        .await
        .expect("put");
    let before = b.head(&app, "a/untyped").await.expect("head").expect("put");
    b.rename(&app, "a/untyped", &app, "b/untyped")
        .await
        .expect("rename within a bucket");
    let info = b
        .head(&app, "b/untyped")
        .await
        .expect("head")
        .expect("moved");
    assert_eq!((info.size, info.content_type), (1, before.content_type));
    assert_eq!(b.head(&app, "a/untyped").await.expect("head"), None);
    b.rename(&app, "b/untyped", &app, "b/untyped")
        .await
        .expect("rename onto itself");
    assert_eq!(read_all(&*b, &app, "b/untyped").await.expect("read"), b"u");

    // The source's prefix is gone with it: a put there works again.
    b.put(&temporary, "up/1/y", bytes_body("y"), None)
        .await
        .expect("put beside a moved object");

    for (bucket, key) in [(&temporary, "up/1/x"), (&app, "a/untyped")] {
        let missing = b.rename(bucket, key, &app, "z").await;
        assert!(
            matches!(missing, Err(BlobError::NotFound { .. })),
            "{missing:?}"
        );
        let onto_itself = b.rename(bucket, key, bucket, key).await;
        assert!(
            matches!(onto_itself, Err(BlobError::NotFound { .. })),
            "{onto_itself:?}"
        );
    }
    assert_eq!(b.head(&app, "z").await.expect("head"), None);
}

pub async fn blobs_delete_is_idempotent(b: Arc<dyn Blobs>) {
    let bucket = fresh(&*b).await;
    b.put(&bucket, "k/v.bin", bytes_body("v"), None)
        .await
        .expect("put");
    b.delete(&bucket, "k/v.bin").await.expect("delete");
    assert_eq!(b.head(&bucket, "k/v.bin").await.expect("head"), None);
    b.delete(&bucket, "k/v.bin").await.expect("delete again");
    b.delete(&bucket, "never/was.bin")
        .await
        .expect("delete missing");
    let gone = b.get(&bucket, "k/v.bin").await.map(drop);
    assert!(matches!(gone, Err(BlobError::NotFound { .. })), "{gone:?}");
}

/// Setting an expiry deletes nothing younger than it, and setting it again (every
/// provision does) changes nothing; on a missing bucket it fails. (The folder's deletion
/// of old objects is the adapter's own test: an object's age cannot be set through S3.)
pub async fn blobs_expiry_keeps_young_objects_and_can_be_set_again(b: Arc<dyn Blobs>) {
    let bucket = fresh(b.as_ref()).await;
    for key in ["young", "deep/er/young"] {
        b.put(&bucket, key, bytes_body(key.as_bytes().to_vec()), None)
            .await
            .unwrap();
    }
    for days in [1, 1, 30] {
        b.expire_objects(&bucket, days).await.unwrap();
    }
    for key in ["young", "deep/er/young"] {
        assert_eq!(
            read_all(b.as_ref(), &bucket, key).await.unwrap(),
            key.as_bytes()
        );
    }
    let missing = unique("no-such-bucket");
    assert!(b.expire_objects(&missing, 1).await.is_err());
}

pub async fn blobs_key_escape_is_rejected(b: Arc<dyn Blobs>) {
    let bucket = fresh(&*b).await;
    b.put(&bucket, "ok.bin", bytes_body("ok"), None)
        .await
        .expect("put");
    let invalid = |r: Result<(), BlobError>| matches!(r, Err(BlobError::InvalidKey(..)));
    for key in ["../x", "/abs", "a//b", "a/../../x", "./a", ""] {
        assert!(
            invalid(b.put(&bucket, key, bytes_body("x"), None).await.map(drop)),
            "put {key:?}"
        );
        assert!(invalid(b.get(&bucket, key).await.map(drop)), "get {key:?}");
        assert!(
            invalid(b.head(&bucket, key).await.map(drop)),
            "head {key:?}"
        );
        assert!(invalid(b.delete(&bucket, key).await), "delete {key:?}");
        assert!(
            invalid(b.copy(&bucket, "ok.bin", &bucket, key).await),
            "copy to {key:?}"
        );
        assert!(
            invalid(b.copy(&bucket, key, &bucket, "c.bin").await),
            "copy from {key:?}"
        );
    }
}

/// A content type no HTTP header could carry is refused before anything is stored, and an
/// object already there stays as it was.
pub async fn blobs_content_type_no_header_could_carry_is_rejected(b: Arc<dyn Blobs>) {
    let bucket = fresh(&*b).await;
    b.put(&bucket, "k.bin", bytes_body("old"), Some("text/plain"))
        .await
        .expect("put");
    for ct in [
        "\0",
        "image/png\r\nX-Evil: 1",
        "text/plain; name=\u{e9}",
        "a\u{7f}",
    ] {
        for key in ["k.bin", "new.bin"] {
            let put = b.put(&bucket, key, bytes_body("new"), Some(ct)).await;
            assert!(
                matches!(put, Err(BlobError::InvalidContentType(ref t)) if t == ct),
                "{ct:?} on {key}: {put:?}"
            );
        }
    }
    assert_eq!(b.head(&bucket, "new.bin").await.expect("head"), None);
    assert_eq!(read_all(&*b, &bucket, "k.bin").await.expect("read"), b"old");
    let info = b
        .head(&bucket, "k.bin")
        .await
        .expect("head")
        .expect("there");
    assert_eq!(info.content_type.as_deref(), Some("text/plain"));
    b.put(
        &bucket,
        "tab.bin",
        bytes_body("x"),
        Some("text/plain;\tcharset=utf-8"),
    )
    .await
    .expect("a tab is allowed");
}

/// A body that fails midway leaves no object, or leaves the old one as it was; the body's
/// own error comes back intact.
pub async fn blobs_failed_body_leaves_no_object(b: Arc<dyn Blobs>) {
    let bucket = fresh(&*b).await;
    let r = b
        .put(&bucket, "half.tar", failing_body(1024 * 1024), None)
        .await;
    match r {
        Err(BlobError::Body(e)) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        other => panic!("expected the body's error, got {other:?}"),
    }
    assert_eq!(b.head(&bucket, "half.tar").await.expect("head"), None);

    b.put(&bucket, "kept.tar", bytes_body("whole"), None)
        .await
        .expect("put");
    let r = b
        .put(&bucket, "kept.tar", failing_body(300_000), None)
        .await;
    assert!(matches!(r, Err(BlobError::Body(_))), "{r:?}");
    assert_eq!(
        read_all(&*b, &bucket, "kept.tar").await.expect("read"),
        b"whole"
    );
}

pub async fn blobs_put_checked_caps_size_and_hashes(b: Arc<dyn Blobs>) {
    let bucket = fresh(&*b).await;
    let data = pattern(200_000, 9);
    let receipt = put_checked(&*b, &bucket, "ok.bin", chunked(data.clone()), None, 200_000)
        .await
        .expect("at the limit");
    assert_eq!(receipt.size, 200_000);
    assert_eq!(receipt.sha256, sha256_hex(&data));
    assert_eq!(read_all(&*b, &bucket, "ok.bin").await.expect("read"), data);

    let over = put_checked(
        &*b,
        &bucket,
        "big.bin",
        chunked(pattern(200_001, 9)),
        None,
        200_000,
    )
    .await;
    assert!(
        matches!(over, Err(BlobError::TooLarge { limit: 200_000 })),
        "{over:?}"
    );
    assert_eq!(b.head(&bucket, "big.bin").await.expect("head"), None);
}

pub async fn blobs_missing_bucket_and_object(b: Arc<dyn Blobs>) {
    let missing = unique("nob");
    let r = b.put(&missing, "a", bytes_body("x"), None).await;
    assert!(matches!(r, Err(BlobError::NoSuchBucket(_))), "{r:?}");
    let r = b.get(&missing, "a").await.map(drop);
    assert!(matches!(r, Err(BlobError::NoSuchBucket(_))), "{r:?}");
    let bucket = fresh(&*b).await;
    let r = b.get(&bucket, "nothing").await.map(drop);
    assert!(matches!(r, Err(BlobError::NotFound { .. })), "{r:?}");
    assert_eq!(b.head(&bucket, "nothing").await.expect("head"), None);
}

fn small(key: &str, body: &str, content_type: &str) -> SmallObject {
    SmallObject {
        key: key.to_owned(),
        body: Bytes::copy_from_slice(body.as_bytes()),
        content_type: Some(content_type.to_owned()),
    }
}

/// A set of objects, in new folders and over an object already there, each whole with its
/// own type; a set with one bad key or type stores none of its objects; a missing bucket
/// is `NoSuchBucket`; an empty set is nothing to do.
pub async fn blobs_put_many_puts_each_object_and_checks_all_names_first(b: Arc<dyn Blobs>) {
    let bucket = fresh(&*b).await;
    b.put(
        &bucket,
        "k/v1/old.yaml",
        bytes_body("old: 1"),
        Some("text/plain"),
    )
    .await
    .expect("put");
    let set = vec![
        small("k/v1/old.yaml", "new: 2\n", "application/yaml"),
        small(
            "k/v1/kustomization.yaml",
            "kind: Kustomization\n",
            "application/yaml",
        ),
        small(
            "k/v1/deep/er/notes.txt",
            "notes",
            "text/plain; charset=utf-8",
        ),
    ];
    b.put_many(&bucket, set.clone()).await.expect("put many");
    for o in &set {
        let info = b
            .head(&bucket, &o.key)
            .await
            .expect("head")
            .expect("object");
        assert_eq!(info.size, o.body.len() as u64, "{}", o.key);
        assert_eq!(info.content_type, o.content_type, "{}", o.key);
        assert_eq!(read_all(&*b, &bucket, &o.key).await.expect("read"), o.body);
    }
    b.put_many(&bucket, Vec::new()).await.expect("an empty set");

    let bad_key = vec![
        small("bad/ok.yaml", "ok", "text/plain"),
        small("bad/../x", "x", "text/plain"),
    ];
    let r = b.put_many(&bucket, bad_key).await;
    assert!(matches!(r, Err(BlobError::InvalidKey(..))), "{r:?}");
    let bad_type = vec![
        small("bad/ok.yaml", "ok", "text/plain"),
        small("bad/t.yaml", "t", "text/\u{1}"),
    ];
    let r = b.put_many(&bucket, bad_type).await;
    assert!(matches!(r, Err(BlobError::InvalidContentType(..))), "{r:?}");
    assert_eq!(b.head(&bucket, "bad/ok.yaml").await.expect("head"), None);
    let info = b
        .head(&bucket, "k/v1/old.yaml")
        .await
        .expect("head")
        .expect("object");
    assert_eq!(info.content_type.as_deref(), Some("application/yaml"));

    let r = b
        .put_many(&unique("nob"), vec![small("a", "x", "text/plain")])
        .await;
    assert!(matches!(r, Err(BlobError::NoSuchBucket(_))), "{r:?}");
}
