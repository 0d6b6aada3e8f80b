//! Storage ports (traits) and their adapters. The pipeline only sees the traits; the
//! adapters are built once from config (`Backend`) into a `Stores`.

#[cfg(feature = "aws")]
pub mod aws;
pub mod blobs;
pub mod embedded;
pub mod mysql;
pub mod open;
pub mod queue;
pub mod redrive;
pub mod tables;
pub mod viewport;

use std::sync::Arc;

pub use blobs::{BlobError, BlobInfo, Blobs, ByteStream, PutReceipt, SmallObject};
pub use open::{open, provision, OpenError, ProvisionError, ProvisionReport};
pub use queue::{
    DeadLetterPolicy, Delivery, Forwarded, OutMessage, Queue, QueueDepth, QueueError, QueueSpec,
    ReceiveOptions,
};
pub use redrive::{
    peek_dead_letters, redrive, redrive_with, DeadLetter, MoveRecord, RedriveReport,
    RedrivenMessage,
};
pub use tables::{
    Condition, Item, Key, Page, QueryOptions, TableError, TableSpec, Tables, TablesExt, TransactPut,
};
pub use viewport::{ImageUidRow, NewPost, PostRow, PublishedPost, ViewPort, ViewPortError, WpUser};

/// The four ports, built once and shared.
#[derive(Clone)]
pub struct Stores {
    pub queue: Arc<dyn Queue>,
    pub tables: Arc<dyn Tables>,
    pub blobs: Arc<dyn Blobs>,
    pub viewport: Arc<dyn ViewPort>,
}
