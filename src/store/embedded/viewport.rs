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
use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::db::{Db, DbError, ErrorClass};
use crate::model::PostMeta;
use crate::store::viewport::{
    term_slug, ImageUidRow, NewPost, PostRow, PublishedPost, ViewPort, ViewPortError, WpUser,
    POST_NAME_PLACEHOLDER,
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

impl From<DbError> for ViewPortError {
    fn from(e: DbError) -> Self {
        match e.class {
            ErrorClass::Unavailable => ViewPortError::Unavailable(e.message),
            _ => ViewPortError::Backend(e.message),
        }
    }
}

fn backend(e: rusqlite::Error) -> ViewPortError {
    DbError::from(e).into()
}

fn id(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn sql_id(v: u64) -> Result<i64, ViewPortError> {
    i64::try_from(v).map_err(|_| ViewPortError::Backend(format!("id {v} is out of range")))
}

/// The wished slug, or the first of `slug-2`, `slug-3`… no post has.
fn unique_slug(conn: &Connection, wished: &str) -> Result<String, DbError> {
    let base = if wished.is_empty() { "post" } else { wished };
    let mut stmt =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM wp_posts WHERE post_name = ?)")?;
    let mut n = 1u64;
    loop {
        let candidate = if n == 1 {
            base.to_owned()
        } else {
            format!("{base}-{n}")
        };
        let taken: bool = stmt.query_row([&candidate], |r| r.get(0))?;
        if !taken {
            return Ok(candidate);
        }
        n += 1;
    }
}

/// The category's `term_taxonomy_id`, creating the term and its taxonomy row if missing.
fn category_id(conn: &Connection, name: &str) -> Result<i64, DbError> {
    let found: Option<i64> = conn
        .prepare_cached(
            "SELECT tt.term_taxonomy_id FROM wp_terms t
             JOIN wp_term_taxonomy tt ON tt.term_id = t.term_id AND tt.taxonomy = 'category'
             WHERE t.name = ? ORDER BY tt.term_taxonomy_id LIMIT 1",
        )?
        .query_row([name], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    let term_id: i64 = conn
        .prepare_cached("INSERT INTO wp_terms (name, slug) VALUES (?, ?) RETURNING term_id")?
        .query_row(params![name, term_slug(name)], |r| r.get(0))?;
    Ok(conn
        .prepare_cached(
            "INSERT INTO wp_term_taxonomy (term_id, taxonomy, description, parent, count)
             VALUES (?, 'category', '', 0, 0) RETURNING term_taxonomy_id",
        )?
        .query_row([term_id], |r| r.get(0))?)
}

/// What an earlier publish of this job produced.
fn published(conn: &Connection, job_id: &str) -> Result<PublishedPost, ViewPortError> {
    conn.prepare_cached(
        "SELECT j.post_id, j.image_guid, p.post_name, p.guid
         FROM k8or_publish_job j JOIN wp_posts p ON p.ID = j.post_id
         WHERE j.job_id = ?",
    )
    .map_err(backend)?
    .query_row([job_id], |r| {
        Ok(PublishedPost {
            post_id: id(r.get(0)?),
            guid: r.get(1)?,
            post_name: r.get(2)?,
            guid_url: r.get(3)?,
            created: false,
        })
    })
    .optional()
    .map_err(backend)?
    .ok_or_else(|| ViewPortError::Backend(format!("job {job_id} is recorded without its post")))
}

/// Publishes the post in the writer's transaction. Its first write claims the job's row;
/// a job that has one already gets the post it published.
fn publish_rows(
    conn: &Connection,
    post: &NewPost,
    author: i64,
) -> Result<PublishedPost, ViewPortError> {
    let job_id = post.job_id.to_string();
    let now = sql_datetime(Utc::now());
    let claimed = conn
        .prepare_cached("INSERT OR IGNORE INTO k8or_publish_job (job_id, created_at) VALUES (?, ?)")
        .map_err(backend)?
        .execute(params![job_id, now])
        .map_err(backend)?
        == 1;
    if !claimed {
        return published(conn, &job_id);
    }
    let slug = unique_slug(conn, &post.slug)?;
    let pooled: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT id, image_guid FROM wp_image_guid
             WHERE related_object_id IS NULL ORDER BY id LIMIT 1",
        )
        .map_err(backend)?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    let (guid, guid_url) = post.guid_for(pooled.as_ref().map(|(_, g)| g.as_str()), &slug);

    let post_id: i64 = conn
        .prepare_cached(
            "INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content,
                post_title, post_excerpt, post_status, comment_status, ping_status, post_name,
                post_modified, post_modified_gmt, guid, post_type)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ID",
        )
        .map_err(backend)?
        .query_row(
            params![
                author,
                post.date,
                post.date_gmt,
                post.content,
                post.title,
                post.excerpt,
                post.status,
                post.comment_status,
                post.ping_status,
                slug,
                post.date,
                post.date_gmt,
                guid_url,
                post.post_type,
            ],
            |r| r.get(0),
        )
        .map_err(backend)?;

    match &pooled {
        Some((pool_id, _)) => conn
            .prepare_cached(
                "UPDATE wp_image_guid SET related_object_type = 'post', related_object_id = ?,
                 updated_at = ? WHERE id = ?",
            )
            .map_err(backend)?
            .execute(params![post_id, now, pool_id]),
        None => conn
            .prepare_cached(
                "INSERT INTO wp_image_guid
                 (related_object_id, updated_at, image_guid, related_object_type, created_at)
                 VALUES (?, ?, ?, 'post', ?)",
            )
            .map_err(backend)?
            .execute(params![post_id, now, guid, now]),
    }
    .map_err(backend)?;

    let mut meta = conn
        .prepare_cached("INSERT INTO wp_postmeta (post_id, meta_key, meta_value) VALUES (?, ?, ?)")
        .map_err(backend)?;
    for m in &post.meta {
        meta.execute(params![
            post_id,
            m.meta_key,
            m.meta_value.replace(POST_NAME_PLACEHOLDER, &slug)
        ])
        .map_err(backend)?;
    }

    if !post.category.trim().is_empty() {
        let tt = category_id(conn, post.category.trim())?;
        conn.prepare_cached(
            "INSERT OR IGNORE INTO wp_term_relationships (object_id, term_taxonomy_id)
             VALUES (?, ?)",
        )
        .map_err(backend)?
        .execute(params![post_id, tt])
        .map_err(backend)?;
        conn.prepare_cached(
            "UPDATE wp_term_taxonomy SET count = count + 1 WHERE term_taxonomy_id = ?",
        )
        .map_err(backend)?
        .execute([tt])
        .map_err(backend)?;
    }

    conn.prepare_cached("UPDATE k8or_publish_job SET post_id = ?, image_guid = ? WHERE job_id = ?")
        .map_err(backend)?
        .execute(params![post_id, guid, job_id])
        .map_err(backend)?;
    Ok(PublishedPost {
        post_id: id(post_id),
        post_name: slug,
        guid,
        guid_url,
        created: true,
    })
}

impl SqliteViewPort {
    /// Opens (creating if missing) the ViewPort file. Call `migrate` before use.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        Ok(Self {
            db: Db::open(path).await?,
        })
    }
}

#[async_trait]
impl ViewPort for SqliteViewPort {
    async fn migrate(&self) -> Result<(), ViewPortError> {
        Ok(self.db.migrate(SCHEMA).await?)
    }

    async fn users(&self) -> Result<Vec<WpUser>, ViewPortError> {
        Ok(self.db.read(|conn| -> Result<_, DbError> {
            let mut stmt = conn.prepare_cached(
                "SELECT ID, user_login, user_email, display_name FROM wp_users ORDER BY ID",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(WpUser {
                    id: id(r.get(0)?),
                    user_login: r.get(1)?,
                    user_email: r.get(2)?,
                    display_name: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?)
    }

    async fn seed_users(&self, users: &[WpUser]) -> Result<u64, ViewPortError> {
        let now = sql_datetime(Utc::now());
        let users = users
            .iter()
            .map(|u| Ok((sql_id(u.id)?, u.clone())))
            .collect::<Result<Vec<_>, ViewPortError>>()?;
        Ok(self
            .db
            .write(move |conn| -> Result<u64, DbError> {
                let mut stmt = conn.prepare_cached(
                    "INSERT OR IGNORE INTO wp_users
                     (ID, user_login, user_nicename, user_email, user_registered, display_name)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )?;
                let mut inserted = 0;
                for (user_id, u) in &users {
                    inserted += stmt.execute(params![
                        user_id,
                        u.user_login,
                        u.user_login,
                        u.user_email,
                        now,
                        u.display_name
                    ])? as u64;
                }
                Ok(inserted)
            })
            .await?)
    }

    async fn insert_image_uid(&self, uid: &str, metadata: &str) -> Result<(), ViewPortError> {
        let now = sql_datetime(Utc::now());
        let (uid, metadata) = (uid.to_owned(), metadata.to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO wp_image_uid (image_uid, image_metadata, created_at, updated_at)
                     VALUES (?, ?, ?, ?)",
                )
                .and_then(|mut stmt| stmt.execute(params![uid, metadata, now, now]))
                .map_err(|e| match super::db::classify(&e) {
                    ErrorClass::Unique => ViewPortError::Duplicate(format!("image UID {uid}")),
                    _ => backend(e),
                })?;
                Ok(())
            })
            .await
    }

    async fn image_uid(&self, uid: &str) -> Result<Option<ImageUidRow>, ViewPortError> {
        Ok(self.db.read(|conn| -> Result<_, DbError> {
            Ok(conn
                .prepare_cached(
                    "SELECT id, image_uid, image_metadata FROM wp_image_uid WHERE image_uid = ?",
                )?
                .query_row([uid], |r| {
                    Ok(ImageUidRow {
                        id: id(r.get(0)?),
                        image_uid: r.get(1)?,
                        image_metadata: r.get(2)?,
                    })
                })
                .optional()?)
        })?)
    }

    async fn seed_guid_pool(&self, guids: &[String]) -> Result<u64, ViewPortError> {
        let now = sql_datetime(Utc::now());
        let guids = guids.to_vec();
        Ok(self
            .db
            .write(move |conn| -> Result<u64, DbError> {
                let mut stmt = conn.prepare_cached(
                    "INSERT OR IGNORE INTO wp_image_guid (image_guid, created_at) VALUES (?, ?)",
                )?;
                let mut inserted = 0;
                for guid in &guids {
                    inserted += stmt.execute(params![guid, now])? as u64;
                }
                Ok(inserted)
            })
            .await?)
    }

    async fn free_guids(&self) -> Result<u64, ViewPortError> {
        let n: i64 = self.db.read(|conn| -> Result<_, DbError> {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM wp_image_guid WHERE related_object_id IS NULL",
                [],
                |r| r.get(0),
            )?)
        })?;
        Ok(id(n))
    }

    async fn publish(&self, post: &NewPost) -> Result<PublishedPost, ViewPortError> {
        let author = sql_id(post.author)?;
        let post = post.clone();
        self.db
            .write(move |conn| publish_rows(conn, &post, author))
            .await
    }

    async fn post(&self, post_id: u64) -> Result<Option<PostRow>, ViewPortError> {
        let post_id = sql_id(post_id)?;
        Ok(self.db.read(|conn| -> Result<_, DbError> {
            Ok(conn
                .prepare_cached(
                    "SELECT ID, post_author, post_title, post_content, post_excerpt, post_status,
                        post_name, post_type, guid
                     FROM wp_posts WHERE ID = ?",
                )?
                .query_row([post_id], |r| {
                    Ok(PostRow {
                        id: id(r.get(0)?),
                        post_author: id(r.get(1)?),
                        post_title: r.get(2)?,
                        post_content: r.get(3)?,
                        post_excerpt: r.get(4)?,
                        post_status: r.get(5)?,
                        post_name: r.get(6)?,
                        post_type: r.get(7)?,
                        guid: r.get(8)?,
                    })
                })
                .optional()?)
        })?)
    }

    async fn post_for_job(&self, job_id: Uuid) -> Result<Option<u64>, ViewPortError> {
        let post: Option<Option<i64>> = self.db.read(|conn| -> Result<_, DbError> {
            Ok(conn
                .prepare_cached("SELECT post_id FROM k8or_publish_job WHERE job_id = ?")?
                .query_row([job_id.to_string()], |r| r.get(0))
                .optional()?)
        })?;
        Ok(post.flatten().map(id))
    }

    async fn post_meta(&self, post_id: u64) -> Result<Vec<PostMeta>, ViewPortError> {
        let post_id = sql_id(post_id)?;
        Ok(self.db.read(|conn| -> Result<_, DbError> {
            let mut stmt = conn.prepare_cached(
                "SELECT meta_key, meta_value FROM wp_postmeta WHERE post_id = ? ORDER BY meta_id",
            )?;
            let rows = stmt.query_map([post_id], |r| {
                let (k, v): (Option<String>, Option<String>) = (r.get(0)?, r.get(1)?);
                Ok(PostMeta::new(k.unwrap_or_default(), v.unwrap_or_default()))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?)
    }

    async fn post_categories(&self, post_id: u64) -> Result<Vec<String>, ViewPortError> {
        let post_id = sql_id(post_id)?;
        Ok(self.db.read(|conn| -> Result<_, DbError> {
            let mut stmt = conn.prepare_cached(
                "SELECT t.name FROM wp_term_relationships r
                 JOIN wp_term_taxonomy tt ON tt.term_taxonomy_id = r.term_taxonomy_id
                 JOIN wp_terms t ON t.term_id = tt.term_id
                 WHERE r.object_id = ? AND tt.taxonomy = 'category'
                 ORDER BY t.name",
            )?;
            let rows = stmt.query_map([post_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<String>, _>>()?)
        })?)
    }

    async fn ping(&self) -> Result<(), ViewPortError> {
        Ok(self.db.read(|conn| -> Result<(), DbError> {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })?)
    }
}
