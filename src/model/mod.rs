//! The seed's payload and item shapes. Field names on the wire are exactly the seed's.

mod events;
mod image;
mod kustomize;
mod post;
pub mod rules;
#[cfg(test)]
mod seed_examples;
mod static_data;
mod upload;

pub use events::{ErrorItem, EventItem, EventMetadata, EventType};
pub use image::{ImageMetadata, ImageVersion, KeyValue, UserMetadata};
pub use kustomize::{base_template, BaseKustomizeItem, KustomizeItem};
pub use post::{PostData, PostMeta, PostMetadata};
pub use rules::{check_image_metadata, check_stored_size, check_upload, FieldError};
pub use static_data::{FilterCriteria, StaticDataItem};
pub use upload::{UidRequest, UploadRequest};
