//! The conformance suites against the embedded adapters: SQLite for queue, tables and
//! ViewPort, a folder for blobs (in both of its layouts: content types in extended
//! attributes, and in sidecar files). Every test gets its own data folder.

use std::path::PathBuf;
use std::sync::Arc;

use k8or::store::embedded::{FolderBlobs, SqliteQueue, SqliteTables, SqliteViewPort};
use k8or::store::{Blobs, Queue, Tables, ViewPort};

/// A fresh, empty folder under Cargo's per-target temporary directory, removed when the
/// test ends (kept if it fails).
fn fresh_dir() -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("embedded-conformance-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a test folder");
    let path = dir.path().to_owned();
    k8or_tests::conformance::keep_until_test_ends(dir);
    path
}

async fn fresh_queue() -> Arc<dyn Queue> {
    Arc::new(
        SqliteQueue::open(&fresh_dir().join("queue.db"))
            .await
            .expect("open queue"),
    )
}

async fn fresh_tables() -> Arc<dyn Tables> {
    Arc::new(
        SqliteTables::open(&fresh_dir().join("tables.db"))
            .await
            .expect("open tables"),
    )
}

async fn fresh_blobs() -> Arc<dyn Blobs> {
    Arc::new(
        FolderBlobs::open(&fresh_dir().join("blobs"))
            .await
            .expect("open blobs"),
    )
}

/// The same store with content types in sidecar files, the layout it falls back to on a
/// filesystem without extended attributes.
async fn fresh_sidecar_blobs() -> Arc<dyn Blobs> {
    let blobs = FolderBlobs::open_with_sidecars(&fresh_dir().join("blobs"))
        .await
        .expect("open blobs");
    assert!(!blobs.uses_xattrs());
    Arc::new(blobs)
}

async fn fresh_viewport() -> Arc<dyn ViewPort> {
    Arc::new(
        SqliteViewPort::open(&fresh_dir().join("viewport.db"))
            .await
            .expect("open viewport"),
    )
}

mod sqlite_queue {
    k8or_tests::queue_conformance!(super::fresh_queue());
}

mod sqlite_tables {
    k8or_tests::tables_conformance!(super::fresh_tables());
}

/// Content types in extended attributes where the filesystem has them (else sidecars).
mod folder_blobs {
    k8or_tests::blobs_conformance!(super::fresh_blobs());
}

mod folder_blobs_sidecars {
    k8or_tests::blobs_conformance!(super::fresh_sidecar_blobs());
}

mod sqlite_viewport {
    k8or_tests::viewport_conformance!(super::fresh_viewport());
}
