//! Publish on MySQL: one InnoDB transaction. It claims the job in `k8or_publish_job` first
//! (a second run of the job stops there), claims a unique slug there too, takes a GUID
//! from the pool with `FOR UPDATE SKIP LOCKED` (concurrent publishes take different ones
//! without waiting), then writes the post, its meta and its category. A deadlock victim
//! runs again from the start.

use std::time::Duration;

use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};
use uuid::Uuid;

use super::{code, error, error_number, MysqlViewPort};
use crate::store::viewport::{
    term_slug, NewPost, PublishedPost, ViewPortError, POST_NAME_PLACEHOLDER,
};

/// How often a publish that lost a deadlock runs again before the stage's own retry.
const PUBLISH_ATTEMPTS: u32 = 5;

pub(super) fn is_duplicate(e: &sqlx::Error) -> bool {
    error_number(e) == Some(code::DUPLICATE_KEY)
}

fn is_deadlock(e: &sqlx::Error) -> bool {
    matches!(
        error_number(e),
        Some(code::DEADLOCK | code::LOCK_WAIT_TIMEOUT)
    )
}

/// Claims the wished slug, or the first of `slug-2`, `slug-3`… that no post has and no
/// other publish has claimed. The claim is the unique `post_name` of the job's row; a
/// concurrent claim of the same name waits for the other transaction, then moves on.
async fn claim_slug(
    conn: &mut MySqlConnection,
    job_id: &str,
    wished: &str,
) -> Result<String, sqlx::Error> {
    let base = if wished.is_empty() { "post" } else { wished };
    let mut n = 1u64;
    loop {
        let candidate = if n == 1 {
            base.to_owned()
        } else {
            format!("{base}-{n}")
        };
        n += 1;
        let taken: i64 =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wp_posts WHERE post_name = ?)")
                .bind(&candidate)
                .fetch_one(&mut *conn)
                .await?;
        if taken != 0 {
            continue;
        }
        let claimed = sqlx::query("UPDATE k8or_publish_job SET post_name = ? WHERE job_id = ?")
            .bind(&candidate)
            .bind(job_id)
            .execute(&mut *conn)
            .await;
        match claimed {
            Ok(_) => return Ok(candidate),
            Err(e) if is_duplicate(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The category's `term_taxonomy_id`, creating the term and its taxonomy row if missing.
/// The locking read keeps two publishes from both creating the category: one of them
/// becomes a deadlock victim, runs again, and finds it.
async fn category_id(conn: &mut MySqlConnection, name: &str) -> Result<u64, sqlx::Error> {
    let found: Option<u64> = sqlx::query_scalar(
        "SELECT tt.term_taxonomy_id FROM wp_terms t
         JOIN wp_term_taxonomy tt ON tt.term_id = t.term_id AND tt.taxonomy = 'category'
         WHERE t.name = ? ORDER BY tt.term_taxonomy_id LIMIT 1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = found {
        return Ok(id);
    }
    let term_id = sqlx::query("INSERT INTO wp_terms (name, slug, term_group) VALUES (?, ?, 0)")
        .bind(name)
        .bind(term_slug(name))
        .execute(&mut *conn)
        .await?
        .last_insert_id();
    Ok(sqlx::query(
        "INSERT INTO wp_term_taxonomy (term_id, taxonomy, description, parent, count)
         VALUES (?, 'category', '', 0, 0)",
    )
    .bind(term_id)
    .execute(&mut *conn)
    .await?
    .last_insert_id())
}

/// Takes the oldest free GUID of the pool, skipping those that concurrent publishes hold;
/// `None` when the pool is empty.
async fn take_guid(conn: &mut MySqlConnection) -> Result<Option<(u64, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, image_guid FROM wp_image_guid WHERE related_object_id IS NULL
         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *conn)
    .await
}

async fn insert_post(
    conn: &mut MySqlConnection,
    post: &NewPost,
    slug: &str,
    guid_url: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content, post_title,
            post_excerpt, post_status, comment_status, ping_status, post_password, post_name,
            to_ping, pinged, post_modified, post_modified_gmt, post_content_filtered,
            post_parent, guid, menu_order, post_type, post_mime_type, comment_count)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, '', '', ?, ?, '', 0, ?, 0, ?, '', 0)",
    )
    .bind(post.author)
    .bind(&post.date)
    .bind(&post.date_gmt)
    .bind(&post.content)
    .bind(&post.title)
    .bind(&post.excerpt)
    .bind(&post.status)
    .bind(&post.comment_status)
    .bind(&post.ping_status)
    .bind(slug)
    .bind(&post.date)
    .bind(&post.date_gmt)
    .bind(guid_url)
    .bind(&post.post_type)
    .execute(&mut *conn)
    .await?
    .last_insert_id())
}

impl MysqlViewPort {
    /// One publish transaction; `None` when the job's claim row exists already (it
    /// published before, or was publishing and this attempt waited for its commit).
    /// Dropped uncommitted on any error, which rolls it back.
    async fn try_publish(&self, post: &NewPost) -> Result<Option<PublishedPost>, sqlx::Error> {
        let job_id = post.job_id.to_string();
        let mut tx = self.pool.begin().await?;
        let claim = sqlx::query(
            "INSERT INTO k8or_publish_job (job_id, created_at) VALUES (?, UTC_TIMESTAMP())",
        )
        .bind(&job_id)
        .execute(&mut *tx)
        .await;
        match claim {
            Ok(_) => {}
            Err(e) if is_duplicate(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        let slug = claim_slug(&mut tx, &job_id, &post.slug).await?;
        let pooled = take_guid(&mut tx).await?;
        let (guid, guid_url) = post.guid_for(pooled.as_ref().map(|(_, g)| g.as_str()), &slug);
        let post_id = insert_post(&mut tx, post, &slug, &guid_url).await?;

        match &pooled {
            Some((pool_id, _)) => sqlx::query(
                "UPDATE wp_image_guid SET related_object_type = 'post', related_object_id = ?,
                 updated_at = CURRENT_TIMESTAMP WHERE id = ?",
            )
            .bind(post_id)
            .bind(pool_id),
            None => sqlx::query(
                "INSERT INTO wp_image_guid (related_object_id, image_guid, related_object_type,
                 updated_at) VALUES (?, ?, 'post', CURRENT_TIMESTAMP)",
            )
            .bind(post_id)
            .bind(&guid),
        }
        .execute(&mut *tx)
        .await?;

        if !post.meta.is_empty() {
            let mut q: QueryBuilder<MySql> =
                QueryBuilder::new("INSERT INTO wp_postmeta (post_id, meta_key, meta_value) ");
            q.push_values(&post.meta, |mut row, m| {
                row.push_bind(post_id)
                    .push_bind(m.meta_key.clone())
                    .push_bind(m.meta_value.replace(POST_NAME_PLACEHOLDER, &slug));
            });
            q.build().execute(&mut *tx).await?;
        }

        let category = post.category.trim();
        if !category.is_empty() {
            let taxonomy_id = category_id(&mut tx, category).await?;
            sqlx::query("INSERT INTO wp_term_relationships (object_id, term_taxonomy_id, term_order) VALUES (?, ?, 0)")
                .bind(post_id)
                .bind(taxonomy_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE wp_term_taxonomy SET count = count + 1 WHERE term_taxonomy_id = ?")
                .bind(taxonomy_id)
                .execute(&mut *tx)
                .await?;
        }

        sqlx::query("UPDATE k8or_publish_job SET post_id = ?, image_guid = ? WHERE job_id = ?")
            .bind(post_id)
            .bind(&guid)
            .bind(&job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(PublishedPost {
            post_id,
            post_name: slug,
            guid,
            guid_url,
            created: true,
        }))
    }

    /// What an earlier publish of this job produced.
    async fn published(&self, job_id: Uuid) -> Result<PublishedPost, ViewPortError> {
        let row = sqlx::query(
            "SELECT j.post_id, j.image_guid, p.post_name, p.guid
             FROM k8or_publish_job j JOIN wp_posts p ON p.ID = j.post_id
             WHERE j.job_id = ?",
        )
        .bind(job_id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(error)?
        .ok_or_else(|| {
            ViewPortError::Backend(format!("job {job_id} is recorded without its post"))
        })?;
        let image_guid: Option<String> = row.try_get(1).map_err(error)?;
        Ok(PublishedPost {
            post_id: row.try_get(0).map_err(error)?,
            guid: image_guid.unwrap_or_default(),
            post_name: row.try_get(2).map_err(error)?,
            guid_url: row.try_get(3).map_err(error)?,
            created: false,
        })
    }

    /// Publishes, running the transaction again when it lost a deadlock; a job that
    /// published before gets its post back.
    pub(super) async fn publish_once(
        &self,
        post: &NewPost,
    ) -> Result<PublishedPost, ViewPortError> {
        let mut attempt = 1;
        loop {
            match self.try_publish(post).await {
                Ok(Some(published)) => return Ok(published),
                Ok(None) => return self.published(post.job_id).await,
                Err(e) if is_deadlock(&e) && attempt < PUBLISH_ATTEMPTS => {
                    // Apart, so the same transactions do not meet the same way again.
                    let jitter = rand::random::<u64>() % 20;
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt) + jitter))
                        .await;
                    attempt += 1;
                }
                Err(e) => return Err(error(e)),
            }
        }
    }
}
