//! The ViewPort port: the WordPress database the seed publishes to (users, image UIDs, the
//! GUID pool, posts, post meta and categories).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::PostMeta;

/// A `wp_users` row, as far as the pipeline reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WpUser {
    #[serde(rename = "ID")]
    pub id: u64,
    pub user_login: String,
    pub user_email: String,
    pub display_name: String,
}

/// A `wp_image_uid` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUidRow {
    pub id: u64,
    pub image_uid: String,
    pub image_metadata: Option<String>,
}

/// Placeholder in meta values and the GUID URL, replaced by the final (unique) slug.
pub const POST_NAME_PLACEHOLDER: &str = "{post_name}";
/// Placeholder in the GUID URL, replaced by the GUID taken from the pool.
pub const GUID_PLACEHOLDER: &str = "{guid}";

/// A category's term slug, as WordPress makes it: lowercase ASCII words joined by `-`.
/// Both ViewPort adapters name the categories they create with it.
pub fn term_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    match out.trim_end_matches('-') {
        "" => "category".into(),
        slug => slug.to_owned(),
    }
}

/// Everything one publish writes. Text fields are plain text already (markup removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPost {
    /// Idempotency key: a job publishes one post, however often the stage runs.
    pub job_id: Uuid,
    /// The wished slug; `-2`, `-3`… is appended if another post has it (WordPress style).
    pub slug: String,
    pub title: String,
    pub content: String,
    pub excerpt: String,
    pub status: String,
    pub post_type: String,
    pub comment_status: String,
    pub ping_status: String,
    pub author: u64,
    /// "YYYY-MM-DD HH:MM:SS": local and GMT post dates.
    pub date: String,
    pub date_gmt: String,
    /// The GUID URL, with `{guid}` (and optionally `{post_name}`) to fill in.
    pub guid_template: String,
    /// The category name, created in wp_terms / wp_term_taxonomy if missing.
    pub category: String,
    /// Meta rows; `{post_name}` in a value becomes the final slug.
    pub meta: Vec<PostMeta>,
}

impl NewPost {
    /// The post's GUID (the pooled one if any, else a fresh UUID) and its GUID URL.
    pub fn guid_for(&self, pooled: Option<&str>, slug: &str) -> (String, String) {
        let guid = pooled.map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
        let url = self
            .guid_template
            .replace(GUID_PLACEHOLDER, &guid)
            .replace(POST_NAME_PLACEHOLDER, slug);
        (guid, url)
    }
}

/// What a publish produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPost {
    pub post_id: u64,
    pub post_name: String,
    /// The GUID taken from `wp_image_guid` (or a new UUID when the pool was empty).
    pub guid: String,
    /// The `wp_posts.guid` URL.
    pub guid_url: String,
    /// False when this job had published before and nothing was written now.
    pub created: bool,
}

/// A `wp_posts` row, as far as the pipeline writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostRow {
    pub id: u64,
    pub post_author: u64,
    pub post_title: String,
    pub post_content: String,
    pub post_excerpt: String,
    pub post_status: String,
    pub post_name: String,
    pub post_type: String,
    pub guid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ViewPortError {
    /// A unique key (image UID, GUID) is taken.
    #[error("duplicate key: {0}")]
    Duplicate(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("ViewPort database unavailable: {0}")]
    Unavailable(String),
    #[error("ViewPort database error: {0}")]
    Backend(String),
}

impl ViewPortError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[async_trait]
pub trait ViewPort: Send + Sync + 'static {
    /// Creates what is missing (`wp_image_uid`, `wp_image_guid`, the pipeline's own
    /// bookkeeping table, and the WordPress tables it uses); never drops or alters.
    async fn migrate(&self) -> Result<(), ViewPortError>;

    /// Every `wp_users` row, by ID.
    async fn users(&self) -> Result<Vec<WpUser>, ViewPortError>;

    /// Inserts users that are missing (by ID); returns how many were inserted.
    async fn seed_users(&self, users: &[WpUser]) -> Result<u64, ViewPortError>;

    /// Stores a new image UID; `Duplicate` if it exists.
    async fn insert_image_uid(&self, uid: &str, metadata: &str) -> Result<(), ViewPortError>;

    async fn image_uid(&self, uid: &str) -> Result<Option<ImageUidRow>, ViewPortError>;

    /// Adds GUIDs to the pool, skipping those already there; returns how many were added.
    async fn seed_guid_pool(&self, guids: &[String]) -> Result<u64, ViewPortError>;

    /// GUIDs in the pool not yet linked to a post.
    async fn free_guids(&self) -> Result<u64, ViewPortError>;

    /// Publishes in one transaction: unique slug, a GUID from the pool linked to the post,
    /// the post, its meta and its category. A job that published before gets its post back
    /// with `created: false`, and nothing is written.
    async fn publish(&self, post: &NewPost) -> Result<PublishedPost, ViewPortError>;

    async fn post(&self, post_id: u64) -> Result<Option<PostRow>, ViewPortError>;

    /// The post a job published, if any.
    async fn post_for_job(&self, job_id: Uuid) -> Result<Option<u64>, ViewPortError>;

    async fn post_meta(&self, post_id: u64) -> Result<Vec<PostMeta>, ViewPortError>;

    /// Category names of a post.
    async fn post_categories(&self, post_id: u64) -> Result<Vec<String>, ViewPortError>;

    /// Readiness: a trivial round trip.
    async fn ping(&self) -> Result<(), ViewPortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_slugs_are_wordpress_like() {
        assert_eq!(term_slug("Music"), "music");
        assert_eq!(term_slug("Movie"), "movie");
        assert_eq!(term_slug("Sci-Fi & Fantasy"), "sci-fi-fantasy");
        assert_eq!(term_slug("  ?? "), "category");
    }
}
