//! Request payloads of the intake: the image UID request (seed 2.1) and the job submission
//! (seed 6.1 UploadImage, with the image as seed 3.1's `imageData` in the JSON form).

use serde::{Deserialize, Serialize};

use super::{ImageMetadata, PostMetadata, UserMetadata};

/// `POST /upload/AssignImageUID.php` and `POST /api/v1/uids`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UidRequest {
    #[serde(rename = "PID", default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(rename = "imageMetadata")]
    pub image_metadata: ImageMetadata,
    #[serde(
        rename = "userMetadata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub user_metadata: Option<UserMetadata>,
}

/// The seed's UploadImage payload: what a job is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRequest {
    #[serde(rename = "PID", default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(rename = "imageMetadata")]
    pub image_metadata: ImageMetadata,
    #[serde(rename = "userMetadata", default)]
    pub user_metadata: UserMetadata,
    #[serde(rename = "postMetadata", default)]
    pub post_metadata: PostMetadata,
    /// The JSON form's image, a `data:` URL (seed 3.1). Never stored.
    #[serde(rename = "imageData", default, skip_serializing_if = "Option::is_none")]
    pub image_data: Option<String>,
}
