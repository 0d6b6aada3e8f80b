//! The ViewPort port on SQLite: the WordPress tables the pipeline touches, shaped as the
//! seed's MySQL ones (seed 1.4, 2.3, 6.2), plus `k8or_publish_job`, which records the post
//! each job published.
//!
//! Publish runs in one `BEGIN IMMEDIATE` transaction whose first write claims the job's row
//! in `k8or_publish_job`: a second publish of the same job, in this process or another,
//! finds the claim and returns the first post without writing anything.

use std::path::Path;

use async_trait::async_trait;
use chrono::Utc;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use uuid::Uuid;

use super::db::{begin_immediate, classify, Db, ErrorClass};
use crate::model::PostMeta;
use crate::store::viewport::{
    term_slug, ImageUidRow, NewPost, PostRow, PublishedPost, ViewPort, ViewPortError, WpUser,
    GUID_PLACEHOLDER, POST_NAME_PLACEHOLDER,
};
use crate::time::sql_datetime;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS wp_users (
        ID INTEGER PRIMARY KEY AUTOINCREMENT,
        user_login TEXT NOT NULL DEFAULT '',
        user_pass TEXT NOT NULL DEFAULT '',
        user_nicename TEXT NOT NULL DEFAULT '',
        user_email TEXT NOT NULL DEFAULT '',
        user_url TEXT NOT NULL DEFAULT '',
        user_registered TEXT NOT NULL DEFAULT '0000-00-00 00:00:00',
        user_activation_key TEXT NOT NULL DEFAULT '',
        user_status INTEGER NOT NULL DEFAULT 0,
        display_name TEXT NOT NULL DEFAULT ''
    )",
    "CREATE INDEX IF NOT EXISTS user_login_key ON wp_users (user_login)",
    "CREATE INDEX IF NOT EXISTS user_nicename ON wp_users (user_nicename)",
    "CREATE INDEX IF NOT EXISTS user_email ON wp_users (user_email)",
    "CREATE TABLE IF NOT EXISTS wp_posts (
        ID INTEGER PRIMARY KEY AUTOINCREMENT,
        post_author INTEGER NOT NULL DEFAULT 0,
        post_date TEXT NOT NULL DEFAULT '0000-00-00 00:00:00',
        post_date_gmt TEXT NOT NULL DEFAULT '0000-00-00 00:00:00',
        post_content TEXT NOT NULL,
        post_title TEXT NOT NULL,
        post_excerpt TEXT NOT NULL,
        post_status TEXT NOT NULL DEFAULT 'publish',
        comment_status TEXT NOT NULL DEFAULT 'open',
        ping_status TEXT NOT NULL DEFAULT 'open',
        post_password TEXT NOT NULL DEFAULT '',
        post_name TEXT NOT NULL DEFAULT '',
        to_ping TEXT NOT NULL DEFAULT '',
        pinged TEXT NOT NULL DEFAULT '',
        post_modified TEXT NOT NULL DEFAULT '0000-00-00 00:00:00',
        post_modified_gmt TEXT NOT NULL DEFAULT '0000-00-00 00:00:00',
        post_content_filtered TEXT NOT NULL DEFAULT '',
        post_parent INTEGER NOT NULL DEFAULT 0,
        guid TEXT NOT NULL DEFAULT '',
        menu_order INTEGER NOT NULL DEFAULT 0,
        post_type TEXT NOT NULL DEFAULT 'post',
        post_mime_type TEXT NOT NULL DEFAULT '',
        comment_count INTEGER NOT NULL DEFAULT 0
    )",
    "CREATE INDEX IF NOT EXISTS post_name ON wp_posts (post_name)",
    "CREATE INDEX IF NOT EXISTS post_author ON wp_posts (post_author)",
    "CREATE TABLE IF NOT EXISTS wp_postmeta (
        meta_id INTEGER PRIMARY KEY AUTOINCREMENT,
        post_id INTEGER NOT NULL DEFAULT 0,
        meta_key TEXT,
        meta_value TEXT
    )",
    "CREATE INDEX IF NOT EXISTS postmeta_post_id ON wp_postmeta (post_id)",
    "CREATE INDEX IF NOT EXISTS postmeta_meta_key ON wp_postmeta (meta_key)",
    "CREATE TABLE IF NOT EXISTS wp_terms (
        term_id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL DEFAULT '',
        slug TEXT NOT NULL DEFAULT '',
        term_group INTEGER NOT NULL DEFAULT 0
    )",
    "CREATE INDEX IF NOT EXISTS terms_slug ON wp_terms (slug)",
    "CREATE INDEX IF NOT EXISTS terms_name ON wp_terms (name)",
    "CREATE TABLE IF NOT EXISTS wp_term_taxonomy (
        term_taxonomy_id INTEGER PRIMARY KEY AUTOINCREMENT,
        term_id INTEGER NOT NULL DEFAULT 0,
        taxonomy TEXT NOT NULL DEFAULT '',
        description TEXT NOT NULL DEFAULT '',
        parent INTEGER NOT NULL DEFAULT 0,
        count INTEGER NOT NULL DEFAULT 0,
        UNIQUE (term_id, taxonomy)
    )",
    "CREATE TABLE IF NOT EXISTS wp_term_relationships (
        object_id INTEGER NOT NULL DEFAULT 0,
        term_taxonomy_id INTEGER NOT NULL DEFAULT 0,
        term_order INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (object_id, term_taxonomy_id)
    )",
    "CREATE TABLE IF NOT EXISTS wp_image_uid (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image_uid TEXT NOT NULL,
        image_metadata TEXT,
        created_at TEXT DEFAULT CURRENT_TIMESTAMP,
        updated_at TEXT DEFAULT NULL
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS image_uid_index ON wp_image_uid (image_uid)",
    "CREATE TABLE IF NOT EXISTS wp_image_guid (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image_guid TEXT NOT NULL,
        related_object_type TEXT DEFAULT NULL,
        related_object_id INTEGER DEFAULT NULL,
        created_at TEXT DEFAULT CURRENT_TIMESTAMP,
        updated_at TEXT DEFAULT NULL,
        other_data TEXT
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS guid_index ON wp_image_guid (image_guid)",
    "CREATE INDEX IF NOT EXISTS related_object_index
        ON wp_image_guid (related_object_type, related_object_id)",
    "CREATE TABLE IF NOT EXISTS k8or_publish_job (
        job_id TEXT PRIMARY KEY,
        post_id INTEGER,
        image_guid TEXT,
        created_at TEXT NOT NULL
    ) WITHOUT ROWID",
];

/// The embedded WordPress database.
pub struct SqliteViewPort {
    db: Db,
}

fn backend(e: sqlx::Error) -> ViewPortError {
    match classify(&e) {
        ErrorClass::Unavailable => ViewPortError::Unavailable(e.to_string()),
        _ => ViewPortError::Backend(e.to_string()),
    }
}

fn id(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn sql_id(v: u64) -> Result<i64, ViewPortError> {
    i64::try_from(v).map_err(|_| ViewPortError::Backend(format!("id {v} is out of range")))
}

/// The wished slug, or the first of `slug-2`, `slug-3`… no post has.
async fn unique_slug(conn: &mut SqliteConnection, wished: &str) -> Result<String, ViewPortError> {
    let base = if wished.is_empty() { "post" } else { wished };
    let mut n = 1u64;
    loop {
        let candidate = if n == 1 {
            base.to_owned()
        } else {
            format!("{base}-{n}")
        };
        let taken: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM wp_posts WHERE post_name = ?)")
                .bind(&candidate)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend)?;
        if !taken {
            return Ok(candidate);
        }
        n += 1;
    }
}

/// The category's `term_taxonomy_id`, creating the term and its taxonomy row if missing.
async fn category_id(conn: &mut SqliteConnection, name: &str) -> Result<i64, ViewPortError> {
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT tt.term_taxonomy_id FROM wp_terms t
         JOIN wp_term_taxonomy tt ON tt.term_id = t.term_id AND tt.taxonomy = 'category'
         WHERE t.name = ? ORDER BY tt.term_taxonomy_id LIMIT 1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if let Some(id) = found {
        return Ok(id);
    }
    let term_id: i64 =
        sqlx::query_scalar("INSERT INTO wp_terms (name, slug) VALUES (?, ?) RETURNING term_id")
            .bind(name)
            .bind(term_slug(name))
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
    sqlx::query_scalar(
        "INSERT INTO wp_term_taxonomy (term_id, taxonomy, description, parent, count)
         VALUES (?, 'category', '', 0, 0) RETURNING term_taxonomy_id",
    )
    .bind(term_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)
}

impl SqliteViewPort {
    /// Opens (creating if missing) the ViewPort file. Call `migrate` before use.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        Ok(Self {
            db: Db::open(path).await?,
        })
    }

    /// What an earlier publish of this job produced.
    async fn published(&self, job_id: &str) -> Result<PublishedPost, ViewPortError> {
        let row = sqlx::query(
            "SELECT j.post_id, j.image_guid, p.post_name, p.guid
             FROM k8or_publish_job j JOIN wp_posts p ON p.ID = j.post_id
             WHERE j.job_id = ?",
        )
        .bind(job_id)
        .fetch_optional(self.db.reader())
        .await
        .map_err(backend)?
        .ok_or_else(|| {
            ViewPortError::Backend(format!("job {job_id} is recorded without its post"))
        })?;
        Ok(PublishedPost {
            post_id: id(row.get(0)),
            guid: row.get(1),
            post_name: row.get(2),
            guid_url: row.get(3),
            created: false,
        })
    }
}

#[async_trait]
impl ViewPort for SqliteViewPort {
    async fn migrate(&self) -> Result<(), ViewPortError> {
        self.db.migrate(SCHEMA).await.map_err(backend)
    }

    async fn users(&self) -> Result<Vec<WpUser>, ViewPortError> {
        let rows = sqlx::query(
            "SELECT ID, user_login, user_email, display_name FROM wp_users ORDER BY ID",
        )
        .fetch_all(self.db.reader())
        .await
        .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| WpUser {
                id: id(r.get(0)),
                user_login: r.get(1),
                user_email: r.get(2),
                display_name: r.get(3),
            })
            .collect())
    }

    async fn seed_users(&self, users: &[WpUser]) -> Result<u64, ViewPortError> {
        let now = sql_datetime(Utc::now());
        let mut writer = self.db.writer().await;
        let mut tx = begin_immediate(&mut writer).await.map_err(backend)?;
        let mut inserted = 0;
        for u in users {
            inserted += sqlx::query(
                "INSERT OR IGNORE INTO wp_users
                 (ID, user_login, user_nicename, user_email, user_registered, display_name)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(sql_id(u.id)?)
            .bind(&u.user_login)
            .bind(&u.user_login)
            .bind(&u.user_email)
            .bind(&now)
            .bind(&u.display_name)
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(inserted)
    }

    async fn insert_image_uid(&self, uid: &str, metadata: &str) -> Result<(), ViewPortError> {
        let now = sql_datetime(Utc::now());
        sqlx::query(
            "INSERT INTO wp_image_uid (image_uid, image_metadata, created_at, updated_at)
             VALUES (?, ?, ?, ?)",
        )
        .bind(uid)
        .bind(metadata)
        .bind(&now)
        .bind(&now)
        .execute(&mut *self.db.writer().await)
        .await
        .map_err(|e| match classify(&e) {
            ErrorClass::Unique => ViewPortError::Duplicate(format!("image UID {uid}")),
            _ => backend(e),
        })?;
        Ok(())
    }

    async fn image_uid(&self, uid: &str) -> Result<Option<ImageUidRow>, ViewPortError> {
        let row = sqlx::query(
            "SELECT id, image_uid, image_metadata FROM wp_image_uid WHERE image_uid = ?",
        )
        .bind(uid)
        .fetch_optional(self.db.reader())
        .await
        .map_err(backend)?;
        Ok(row.map(|r| ImageUidRow {
            id: id(r.get(0)),
            image_uid: r.get(1),
            image_metadata: r.get(2),
        }))
    }

    async fn seed_guid_pool(&self, guids: &[String]) -> Result<u64, ViewPortError> {
        let now = sql_datetime(Utc::now());
        let mut writer = self.db.writer().await;
        let mut tx = begin_immediate(&mut writer).await.map_err(backend)?;
        let mut inserted = 0;
        for chunk in guids.chunks(200) {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT OR IGNORE INTO wp_image_guid (image_guid, created_at) ");
            q.push_values(chunk, |mut row, guid| {
                row.push_bind(guid).push_bind(&now);
            });
            inserted += q
                .build()
                .execute(&mut *tx)
                .await
                .map_err(backend)?
                .rows_affected();
        }
        tx.commit().await.map_err(backend)?;
        Ok(inserted)
    }

    async fn free_guids(&self) -> Result<u64, ViewPortError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM wp_image_guid WHERE related_object_id IS NULL",
        )
        .fetch_one(self.db.reader())
        .await
        .map_err(backend)?;
        Ok(id(n))
    }

    async fn publish(&self, post: &NewPost) -> Result<PublishedPost, ViewPortError> {
        let job_id = post.job_id.to_string();
        let now = sql_datetime(Utc::now());
        let mut writer = self.db.writer().await;
        let mut tx = begin_immediate(&mut writer).await.map_err(backend)?;
        let claimed = sqlx::query(
            "INSERT OR IGNORE INTO k8or_publish_job (job_id, created_at) VALUES (?, ?)",
        )
        .bind(&job_id)
        .bind(&now)
        .execute(&mut *tx)
        .await
        .map_err(backend)?
        .rows_affected()
            == 1;
        if !claimed {
            drop(tx);
            return self.published(&job_id).await;
        }

        let slug = unique_slug(&mut tx, &post.slug).await?;
        let pooled: Option<(i64, String)> = sqlx::query_as(
            "SELECT id, image_guid FROM wp_image_guid
             WHERE related_object_id IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let guid = pooled
            .as_ref()
            .map_or_else(|| Uuid::new_v4().to_string(), |(_, g)| g.clone());
        let guid_url = post
            .guid_template
            .replace(GUID_PLACEHOLDER, &guid)
            .replace(POST_NAME_PLACEHOLDER, &slug);

        let post_id: i64 = sqlx::query_scalar(
            "INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content,
                post_title, post_excerpt, post_status, comment_status, ping_status, post_name,
                post_modified, post_modified_gmt, guid, post_type)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ID",
        )
        .bind(sql_id(post.author)?)
        .bind(&post.date)
        .bind(&post.date_gmt)
        .bind(&post.content)
        .bind(&post.title)
        .bind(&post.excerpt)
        .bind(&post.status)
        .bind(&post.comment_status)
        .bind(&post.ping_status)
        .bind(&slug)
        .bind(&post.date)
        .bind(&post.date_gmt)
        .bind(&guid_url)
        .bind(&post.post_type)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;

        match &pooled {
            Some((pool_id, _)) => sqlx::query(
                "UPDATE wp_image_guid SET related_object_type = 'post', related_object_id = ?,
                 updated_at = ? WHERE id = ?",
            )
            .bind(post_id)
            .bind(&now)
            .bind(pool_id),
            None => sqlx::query(
                "INSERT INTO wp_image_guid
                 (related_object_id, updated_at, image_guid, related_object_type, created_at)
                 VALUES (?, ?, ?, 'post', ?)",
            )
            .bind(post_id)
            .bind(&now)
            .bind(&guid)
            .bind(&now),
        }
        .execute(&mut *tx)
        .await
        .map_err(backend)?;

        if !post.meta.is_empty() {
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO wp_postmeta (post_id, meta_key, meta_value) ");
            q.push_values(&post.meta, |mut row, m| {
                row.push_bind(post_id)
                    .push_bind(m.meta_key.clone())
                    .push_bind(m.meta_value.replace(POST_NAME_PLACEHOLDER, &slug));
            });
            q.build().execute(&mut *tx).await.map_err(backend)?;
        }

        if !post.category.trim().is_empty() {
            let tt = category_id(&mut tx, post.category.trim()).await?;
            sqlx::query(
                "INSERT OR IGNORE INTO wp_term_relationships (object_id, term_taxonomy_id)
                 VALUES (?, ?)",
            )
            .bind(post_id)
            .bind(tt)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            sqlx::query("UPDATE wp_term_taxonomy SET count = count + 1 WHERE term_taxonomy_id = ?")
                .bind(tt)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }

        sqlx::query("UPDATE k8or_publish_job SET post_id = ?, image_guid = ? WHERE job_id = ?")
            .bind(post_id)
            .bind(&guid)
            .bind(&job_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(PublishedPost {
            post_id: id(post_id),
            post_name: slug,
            guid,
            guid_url,
            created: true,
        })
    }

    async fn post(&self, post_id: u64) -> Result<Option<PostRow>, ViewPortError> {
        let row = sqlx::query(
            "SELECT ID, post_author, post_title, post_content, post_excerpt, post_status,
                post_name, post_type, guid
             FROM wp_posts WHERE ID = ?",
        )
        .bind(sql_id(post_id)?)
        .fetch_optional(self.db.reader())
        .await
        .map_err(backend)?;
        Ok(row.map(|r| PostRow {
            id: id(r.get(0)),
            post_author: id(r.get(1)),
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
        let post: Option<Option<i64>> =
            sqlx::query_scalar("SELECT post_id FROM k8or_publish_job WHERE job_id = ?")
                .bind(job_id.to_string())
                .fetch_optional(self.db.reader())
                .await
                .map_err(backend)?;
        Ok(post.flatten().map(id))
    }

    async fn post_meta(&self, post_id: u64) -> Result<Vec<PostMeta>, ViewPortError> {
        let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT meta_key, meta_value FROM wp_postmeta WHERE post_id = ? ORDER BY meta_id",
        )
        .bind(sql_id(post_id)?)
        .fetch_all(self.db.reader())
        .await
        .map_err(backend)?;
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
        .bind(sql_id(post_id)?)
        .fetch_all(self.db.reader())
        .await
        .map_err(backend)
    }

    async fn ping(&self) -> Result<(), ViewPortError> {
        sqlx::query("SELECT 1")
            .execute(self.db.reader())
            .await
            .map_err(backend)?;
        Ok(())
    }
}
