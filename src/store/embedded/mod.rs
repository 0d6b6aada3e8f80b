//! Embedded adapters: SQLite (WAL) for queue, tables and ViewPort, a folder for blobs.
//! They are the default backend: no account and no server, one data folder, and the same
//! semantics as SQS, DynamoDB, S3 and MySQL, which the conformance suites check.

pub mod blobs;
pub mod db;
pub mod queue;
pub mod tables;
pub mod viewport;
mod wakers;

pub use blobs::FolderBlobs;
pub use queue::SqliteQueue;
pub use tables::SqliteTables;
pub use viewport::SqliteViewPort;
