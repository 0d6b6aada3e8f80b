//! The ViewPort reads and writes on MySQL: users, image UIDs and the GUID pool, and the
//! posts that publish (`publish.rs`) wrote.

use async_trait::async_trait;
use sqlx::{MySql, QueryBuilder, Row};
use uuid::Uuid;

use super::publish::is_duplicate;
use super::{error, MysqlViewPort};
use crate::model::PostMeta;
use crate::store::viewport::{
    ImageUidRow, NewPost, PostRow, PublishedPost, ViewPort, ViewPortError, WpUser,
};

/// Rows per multi-row INSERT when seeding.
const SEED_CHUNK: usize = 200;

#[async_trait]
impl ViewPort for MysqlViewPort {
    async fn migrate(&self) -> Result<(), ViewPortError> {
        self.run_migrations().await
    }

    async fn users(&self) -> Result<Vec<WpUser>, ViewPortError> {
        let rows: Vec<(u64, String, String, String)> = sqlx::query_as(
            "SELECT ID, user_login, user_email, display_name FROM wp_users ORDER BY ID",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(error)?;
        Ok(rows
            .into_iter()
            .map(|(id, user_login, user_email, display_name)| WpUser {
                id,
                user_login,
                user_email,
                display_name,
            })
            .collect())
    }

    async fn seed_users(&self, users: &[WpUser]) -> Result<u64, ViewPortError> {
        let mut inserted = 0;
        for chunk in users.chunks(SEED_CHUNK) {
            // IGNORE skips users whose ID exists: a seed never overwrites a real account.
            let mut q: QueryBuilder<MySql> = QueryBuilder::new(
                "INSERT IGNORE INTO wp_users (ID, user_login, user_nicename, user_email,
                 user_registered, display_name) ",
            );
            q.push_values(chunk, |mut row, u| {
                row.push_bind(u.id)
                    .push_bind(u.user_login.clone())
                    .push_bind(u.user_login.clone())
                    .push_bind(u.user_email.clone())
                    .push("UTC_TIMESTAMP()")
                    .push_bind(u.display_name.clone());
            });
            inserted += q
                .build()
                .execute(&self.pool)
                .await
                .map_err(error)?
                .rows_affected();
        }
        Ok(inserted)
    }

    async fn insert_image_uid(&self, uid: &str, metadata: &str) -> Result<(), ViewPortError> {
        sqlx::query(
            "INSERT INTO wp_image_uid (image_uid, image_metadata, created_at, updated_at)
             VALUES (?, ?, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        )
        .bind(uid)
        .bind(metadata)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_duplicate(&e) {
                ViewPortError::Duplicate(format!("image UID {uid}"))
            } else {
                error(e)
            }
        })?;
        Ok(())
    }

    async fn image_uid(&self, uid: &str) -> Result<Option<ImageUidRow>, ViewPortError> {
        let row: Option<(u64, String, Option<String>)> = sqlx::query_as(
            "SELECT id, image_uid, image_metadata FROM wp_image_uid WHERE image_uid = ?",
        )
        .bind(uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(error)?;
        Ok(row.map(|(id, image_uid, image_metadata)| ImageUidRow {
            id,
            image_uid,
            image_metadata,
        }))
    }

    async fn seed_guid_pool(&self, guids: &[String]) -> Result<u64, ViewPortError> {
        let mut inserted = 0;
        for chunk in guids.chunks(SEED_CHUNK) {
            let mut q: QueryBuilder<MySql> =
                QueryBuilder::new("INSERT IGNORE INTO wp_image_guid (image_guid) ");
            q.push_values(chunk, |mut row, guid| {
                row.push_bind(guid.clone());
            });
            inserted += q
                .build()
                .execute(&self.pool)
                .await
                .map_err(error)?
                .rows_affected();
        }
        Ok(inserted)
    }

    async fn free_guids(&self) -> Result<u64, ViewPortError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM wp_image_guid WHERE related_object_id IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn publish(&self, post: &NewPost) -> Result<PublishedPost, ViewPortError> {
        self.publish_once(post).await
    }

    async fn post(&self, post_id: u64) -> Result<Option<PostRow>, ViewPortError> {
        let row = sqlx::query(
            "SELECT ID, post_author, post_title, post_content, post_excerpt, post_status,
                post_name, post_type, guid
             FROM wp_posts WHERE ID = ?",
        )
        .bind(post_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(error)?;
        Ok(row.map(|r| PostRow {
            id: r.get(0),
            post_author: r.get(1),
            post_title: r.get(2),
            post_content: r.get(3),
            post_excerpt: r.get(4),
            post_status: r.get(5),
            post_name: r.get(6),
            post_type: r.get(7),
            guid: r.get(8),
        }))
    }

    async fn post_for_job(&self, job_id: Uuid) -> Result<Option<u64>, ViewPortError> {
        let post: Option<Option<u64>> =
            sqlx::query_scalar("SELECT post_id FROM k8or_publish_job WHERE job_id = ?")
                .bind(job_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(error)?;
        Ok(post.flatten())
    }

    async fn post_meta(&self, post_id: u64) -> Result<Vec<PostMeta>, ViewPortError> {
        let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT meta_key, meta_value FROM wp_postmeta WHERE post_id = ? ORDER BY meta_id",
        )
        .bind(post_id)
        .fetch_all(&self.pool)
        .await
        .map_err(error)?;
        Ok(rows
            .into_iter()
            .map(|(k, v)| PostMeta::new(k.unwrap_or_default(), v.unwrap_or_default()))
            .collect())
    }

    async fn post_categories(&self, post_id: u64) -> Result<Vec<String>, ViewPortError> {
        sqlx::query_scalar(
            "SELECT t.name FROM wp_term_relationships r
             JOIN wp_term_taxonomy tt ON tt.term_taxonomy_id = r.term_taxonomy_id
             JOIN wp_terms t ON t.term_id = tt.term_id
             WHERE r.object_id = ? AND tt.taxonomy = 'category'
             ORDER BY t.name",
        )
        .bind(post_id)
        .fetch_all(&self.pool)
        .await
        .map_err(error)
    }

    async fn ping(&self) -> Result<(), ViewPortError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(error)?;
        Ok(())
    }
}
