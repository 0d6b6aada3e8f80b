//! `postMetadata` of the seed's UploadImage request (6.1): the WordPress post and its meta.

use serde::{Deserialize, Serialize};

/// One `wp_postmeta` pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostMeta {
    pub meta_key: String,
    pub meta_value: String,
}

impl PostMeta {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            meta_key: key.into(),
            meta_value: value.into(),
        }
    }
}

/// `postData`: the `wp_posts` columns the board may set. Every field is optional; the
/// publish stage fills what is missing (title from imageName, dates from the clock…).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_excerpt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_author: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_date_gmt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_modified_gmt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_parent: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menu_order: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ping: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinged: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_content_filtered: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_name: Option<String>,
    /// The seed sends the picture again here; the pipeline uses the stored object instead
    /// and never keeps these bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_data: Option<String>,
}

/// `postMetadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostMetadata {
    #[serde(rename = "PID", default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(rename = "postData", default)]
    pub post_data: PostData,
    #[serde(default)]
    pub post_meta: Vec<PostMeta>,
    /// The deployment environment (Development, Testing, …). The seed carries it only as
    /// an `environment` post meta; this field, when set, wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

impl PostMetadata {
    /// The value of a post meta key the board sent, if any.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.post_meta
            .iter()
            .find(|m| m.meta_key == key)
            .map(|m| m.meta_value.as_str())
    }

    /// The environment: the explicit field, else the `environment` meta, else Development.
    pub fn environment(&self) -> &str {
        self.environment
            .as_deref()
            .or_else(|| self.meta("environment"))
            .unwrap_or("Development")
    }
}
