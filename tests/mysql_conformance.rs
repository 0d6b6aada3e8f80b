//! The ViewPort port on MariaDB (or MySQL), found through `K8OR_TEST_MYSQL_URL` (made by
//! `scripts/mariadb-db create`). Each test works in a database of its own, named after the
//! run's database, so tests run in parallel and `scripts/mariadb-db drop` sweeps them all.

use std::sync::Arc;

use k8or::model::PostMeta;
use k8or::store::mysql::MysqlViewPort;
use k8or::store::viewport::{NewPost, ViewPort, ViewPortError, WpUser};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{Connection, MySqlConnection, MySqlPool};
use uuid::Uuid;

/// Finding MariaDB: `K8OR_TEST_MYSQL_URL`. Without it a test fails under CI and is skipped
/// (with a notice) on a developer's machine.
mod support {
    use super::*;

    /// A fresh, empty database on the test server; dropped by `drop`, or by
    /// `scripts/mariadb-db drop` if a test dies first.
    pub struct TestDb {
        pub pool: MySqlPool,
        name: String,
    }

    impl TestDb {
        pub async fn create() -> Option<Self> {
            let url = match std::env::var("K8OR_TEST_MYSQL_URL") {
                Ok(url) if !url.is_empty() => url,
                _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
                    "K8OR_TEST_MYSQL_URL is not set: the MySQL ViewPort tests need MariaDB. \
                     Run the tests with scripts/test, or `eval \"$(scripts/mariadb-db create)\"` first."
                ),
                _ => {
                    eprintln!(
                        "SKIPPED: K8OR_TEST_MYSQL_URL is not set; create a test database with \
                         `eval \"$(scripts/mariadb-db create)\"` to run the MySQL ViewPort tests"
                    );
                    return None;
                }
            };
            let base: MySqlConnectOptions =
                url.parse().expect("K8OR_TEST_MYSQL_URL is a MySQL URL");
            let run_db = base.get_database().unwrap_or("k8or_test").to_owned();
            let name = format!("{run_db}_{}", &Uuid::new_v4().simple().to_string()[..12]);
            let mut admin = MySqlConnection::connect_with(&base)
                .await
                .expect("the test MySQL server answers");
            sqlx::query(&format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            ))
            .execute(&mut admin)
            .await
            .unwrap();
            admin.close().await.unwrap();
            let pool = MySqlPool::connect_with(base.database(&name)).await.unwrap();
            Some(Self { pool, name })
        }

        pub fn name(&self) -> &str {
            &self.name
        }

        pub fn viewport(&self) -> MysqlViewPort {
            MysqlViewPort::from_pool(self.pool.clone())
        }

        pub async fn drop(self) {
            sqlx::query(&format!("DROP DATABASE `{}`", self.name))
                .execute(&self.pool)
                .await
                .unwrap();
            self.pool.close().await;
        }
    }
}

use support::TestDb;

/// A ViewPort on a fresh database, for the suite (which cannot skip: without MariaDB it
/// fails with what to do). The database stays until `scripts/mariadb-db drop`.
async fn suite_viewport() -> Arc<dyn ViewPort> {
    let db = TestDb::create().await.expect(
        "the ViewPort conformance suite needs K8OR_TEST_MYSQL_URL (run scripts/test, or \
         `eval \"$(scripts/mariadb-db create)\"` first)",
    );
    Arc::new(db.viewport())
}

mod mariadb {
    k8or_tests::viewport_conformance!(super::suite_viewport());
}

macro_rules! db_or_skip {
    () => {
        match TestDb::create().await {
            Some(db) => db,
            None => return,
        }
    };
}

fn new_post(slug: &str, category: &str) -> NewPost {
    NewPost {
        job_id: Uuid::now_v7(),
        slug: slug.to_owned(),
        title: "Trolls World Tour (2020)".into(),
        content: "The story is set in a colorful world.".into(),
        excerpt: "Trolls World Tour (2020)".into(),
        status: "publish".into(),
        post_type: "post".into(),
        comment_status: "closed".into(),
        ping_status: "closed".into(),
        author: 2,
        date: "2025-02-07 11:45:49".into(),
        date_gmt: "2025-02-07 08:45:49".into(),
        guid_template: "http://orbit.k8or.com/viewport/?guid={guid}".into(),
        category: category.to_owned(),
        meta: vec![
            PostMeta::new("preview", "http://orbit.k8or.com/viewport/{post_name}/"),
            PostMeta::new("version", "v0-0-01"),
        ],
    }
}

async fn show_create(db: &TestDb, table: &str) -> String {
    let row: (String, String) = sqlx::query_as(&format!("SHOW CREATE TABLE `{table}`"))
        .fetch_one(&db.pool)
        .await
        .unwrap();
    row.1
}

async fn scalar_i64(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn migrations_create_the_seed_tables_and_run_twice() {
    let db = db_or_skip!();
    let vp = db.viewport();
    vp.migrate().await.unwrap();
    let before = show_create(&db, "wp_image_guid").await;
    vp.migrate().await.unwrap();
    assert_eq!(show_create(&db, "wp_image_guid").await, before);
    assert!(
        before.contains("UNIQUE KEY `guid_index` (`image_guid`)"),
        "{before}"
    );
    assert!(
        before.contains("KEY `related_object_index` (`related_object_type`,`related_object_id`)")
    );
    let uid = show_create(&db, "wp_image_uid").await;
    assert!(
        uid.contains("UNIQUE KEY `image_uid_index` (`image_uid`)"),
        "{uid}"
    );
    assert!(
        uid.contains("`created_at` timestamp NULL DEFAULT current_timestamp()"),
        "{uid}"
    );
    for table in [
        "wp_users",
        "wp_posts",
        "wp_postmeta",
        "wp_terms",
        "wp_term_taxonomy",
        "wp_term_relationships",
        "k8or_publish_job",
    ] {
        show_create(&db, table).await;
    }
    vp.ping().await.unwrap();
    db.drop().await;
}

#[tokio::test]
async fn connect_uses_the_configured_database_when_the_url_names_none() {
    let db = db_or_skip!();
    let url = std::env::var("K8OR_TEST_MYSQL_URL").unwrap();
    let server = &url[..url.rfind('/').unwrap()];
    let vp = MysqlViewPort::connect(server, db.name()).await.unwrap();
    vp.migrate().await.unwrap();
    let found = scalar_i64(
        &db,
        "SELECT COUNT(*) FROM information_schema.tables
         WHERE table_schema = DATABASE() AND table_name = 'wp_image_uid'",
    )
    .await;
    assert_eq!(found, 1, "the tables are made in the configured database");
    let err = MysqlViewPort::connect("mysql://root@127.0.0.1:notaport/db", "db")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid MySQL URL"), "{err}");
    vp.pool().close().await;
    db.drop().await;
}

#[tokio::test]
async fn an_existing_wordpress_table_with_extra_columns_is_left_untouched() {
    let db = db_or_skip!();
    // A plugin's extra column and a post that is already there.
    sqlx::raw_sql(
        "CREATE TABLE wp_posts (
            ID bigint(20) unsigned NOT NULL AUTO_INCREMENT,
            post_author bigint(20) unsigned NOT NULL DEFAULT '0',
            post_date datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
            post_date_gmt datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
            post_content longtext NOT NULL, post_title text NOT NULL, post_excerpt text NOT NULL,
            post_status varchar(20) NOT NULL DEFAULT 'publish',
            comment_status varchar(20) NOT NULL DEFAULT 'open',
            ping_status varchar(20) NOT NULL DEFAULT 'open',
            post_password varchar(255) NOT NULL DEFAULT '',
            post_name varchar(200) NOT NULL DEFAULT '', to_ping text NOT NULL, pinged text NOT NULL,
            post_modified datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
            post_modified_gmt datetime NOT NULL DEFAULT '2000-01-01 00:00:00',
            post_content_filtered longtext NOT NULL,
            post_parent bigint(20) unsigned NOT NULL DEFAULT '0',
            guid varchar(255) NOT NULL DEFAULT '', menu_order int(11) NOT NULL DEFAULT '0',
            post_type varchar(20) NOT NULL DEFAULT 'post',
            post_mime_type varchar(100) NOT NULL DEFAULT '',
            comment_count bigint(20) NOT NULL DEFAULT '0',
            plugin_rating int NOT NULL DEFAULT 5,
            PRIMARY KEY (ID)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
        INSERT INTO wp_posts (post_content, post_title, post_excerpt, to_ping, pinged,
            post_content_filtered, post_name, plugin_rating)
        VALUES ('old', 'Old post', '', '', '', '', 'trolls', 9);",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let before = show_create(&db, "wp_posts").await;

    let vp = db.viewport();
    vp.migrate().await.unwrap();
    vp.migrate().await.unwrap();
    assert_eq!(show_create(&db, "wp_posts").await, before);
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT plugin_rating FROM wp_posts WHERE post_name = 'trolls'"
        )
        .await,
        9
    );

    // Publishing beside the existing post: its slug is taken, the extra column defaults.
    let published = vp.publish(&new_post("trolls", "Movie")).await.unwrap();
    assert_eq!(published.post_name, "trolls-2");
    let rating: i32 = sqlx::query_scalar("SELECT plugin_rating FROM wp_posts WHERE ID = ?")
        .bind(published.post_id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rating, 5);
    db.drop().await;
}

#[tokio::test]
async fn users_image_uids_and_the_guid_pool() {
    let db = db_or_skip!();
    let vp = db.viewport();
    vp.migrate().await.unwrap();
    let users = vec![
        WpUser {
            id: 2,
            user_login: "jamesbond".into(),
            user_email: "jamesbond@k8or.com".into(),
            display_name: "James Bond".into(),
        },
        WpUser {
            id: 3,
            user_login: "madamecoco".into(),
            user_email: "madamecoco@k8or.com".into(),
            display_name: "Madame Coco".into(),
        },
    ];
    assert_eq!(vp.seed_users(&users).await.unwrap(), 2);
    assert_eq!(vp.seed_users(&users).await.unwrap(), 0);
    assert_eq!(vp.users().await.unwrap(), users);

    let uid = "8jBycF79sF2MBn5zVGqvBhLytDsHtNRSLrwXAP2yvSr1TX66sUzwnfBi7LeV";
    vp.insert_image_uid(uid, "Trolls World Tour (2020), v0-0-01, Movie")
        .await
        .unwrap();
    assert!(matches!(
        vp.insert_image_uid(uid, "again").await,
        Err(ViewPortError::Duplicate(_))
    ));
    let row = vp.image_uid(uid).await.unwrap().unwrap();
    assert_eq!(
        row.image_metadata.as_deref(),
        Some("Trolls World Tour (2020), v0-0-01, Movie")
    );
    assert_eq!(vp.image_uid("nope").await.unwrap(), None);

    let guids: Vec<String> = (0..3).map(|_| Uuid::new_v4().to_string()).collect();
    assert_eq!(vp.seed_guid_pool(&guids).await.unwrap(), 3);
    assert_eq!(vp.seed_guid_pool(&guids).await.unwrap(), 0);
    assert_eq!(vp.free_guids().await.unwrap(), 3);
    db.drop().await;
}

#[tokio::test]
async fn publish_writes_post_guid_meta_and_category_once_per_job() {
    let db = db_or_skip!();
    let vp = db.viewport();
    vp.migrate().await.unwrap();
    let pool: Vec<String> = (0..2).map(|_| Uuid::new_v4().to_string()).collect();
    vp.seed_guid_pool(&pool).await.unwrap();

    let post = new_post("trolls-world-tour-2020-v0-0-01-development", "Movie");
    let first = vp.publish(&post).await.unwrap();
    assert!(first.created);
    assert_eq!(
        first.post_name,
        "trolls-world-tour-2020-v0-0-01-development"
    );
    assert_eq!(first.guid, pool[0]);
    assert_eq!(
        first.guid_url,
        format!("http://orbit.k8or.com/viewport/?guid={}", pool[0])
    );
    let again = vp.publish(&post).await.unwrap();
    assert_eq!((again.post_id, again.created), (first.post_id, false));
    assert_eq!(
        (again.guid.as_str(), again.post_name.as_str()),
        (first.guid.as_str(), first.post_name.as_str())
    );
    assert_eq!(
        vp.post_for_job(post.job_id).await.unwrap(),
        Some(first.post_id)
    );
    assert_eq!(vp.post_for_job(Uuid::now_v7()).await.unwrap(), None);

    let row = vp.post(first.post_id).await.unwrap().unwrap();
    assert_eq!(
        (row.post_title.as_str(), row.post_author),
        ("Trolls World Tour (2020)", 2)
    );
    assert_eq!(row.guid, first.guid_url);
    let meta = vp.post_meta(first.post_id).await.unwrap();
    assert_eq!(
        meta[0],
        PostMeta::new(
            "preview",
            "http://orbit.k8or.com/viewport/trolls-world-tour-2020-v0-0-01-development/"
        )
    );
    assert_eq!(
        vp.post_categories(first.post_id).await.unwrap(),
        vec!["Movie".to_owned()]
    );
    let linked: (String, u64) = sqlx::query_as(
        "SELECT related_object_type, related_object_id FROM wp_image_guid WHERE image_guid = ?",
    )
    .bind(&pool[0])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(linked, ("post".to_owned(), first.post_id));
    assert_eq!(vp.free_guids().await.unwrap(), 1);

    // Same slug, new job: `-2`; the same category is reused and counted.
    let second = vp.publish(&new_post(&post.slug, "Movie")).await.unwrap();
    assert_eq!(second.post_name, format!("{}-2", post.slug));
    assert_eq!(second.guid, pool[1]);
    assert_eq!(
        scalar_i64(&db, "SELECT COUNT(*) FROM wp_terms WHERE name = 'Movie'").await,
        1
    );
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT count FROM wp_term_taxonomy WHERE taxonomy = 'category'"
        )
        .await,
        2
    );

    // An empty pool: a new v4 UUID, linked all the same.
    let third = vp.publish(&new_post("other", "")).await.unwrap();
    assert_eq!(Uuid::parse_str(&third.guid).unwrap().get_version_num(), 4);
    assert!(vp.post_categories(third.post_id).await.unwrap().is_empty());
    let linked: u64 =
        sqlx::query_scalar("SELECT related_object_id FROM wp_image_guid WHERE image_guid = ?")
            .bind(&third.guid)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(linked, third.post_id);
    assert_eq!(vp.post(999_999).await.unwrap(), None);
    db.drop().await;
}

#[tokio::test]
async fn concurrent_publishes_take_distinct_slugs_and_guids_and_one_post_per_job() {
    let db = db_or_skip!();
    let vp = Arc::new(db.viewport());
    vp.migrate().await.unwrap();
    let pool: Vec<String> = (0..6).map(|_| Uuid::new_v4().to_string()).collect();
    vp.seed_guid_pool(&pool).await.unwrap();

    let repeated = new_post("same", "Brand New");
    let mut tasks = Vec::new();
    for i in 0..12 {
        let vp = vp.clone();
        // Eight distinct jobs wishing the same slug, and four runs of one job.
        let post = if i < 8 {
            new_post("same", "Brand New")
        } else {
            repeated.clone()
        };
        tasks.push(tokio::spawn(async move { vp.publish(&post).await }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap().unwrap());
    }
    let mut slugs: Vec<&str> = results[..8].iter().map(|p| p.post_name.as_str()).collect();
    slugs.push(results[8].post_name.as_str());
    slugs.sort_unstable();
    slugs.dedup();
    assert_eq!(slugs.len(), 9, "every job got its own slug: {slugs:?}");
    let repeats: Vec<u64> = results[8..].iter().map(|p| p.post_id).collect();
    assert!(repeats.iter().all(|id| *id == repeats[0]), "{repeats:?}");
    assert_eq!(results[8..].iter().filter(|p| p.created).count(), 1);

    let mut guids: Vec<&str> = results[..9].iter().map(|p| p.guid.as_str()).collect();
    guids.sort_unstable();
    guids.dedup();
    assert_eq!(guids.len(), 9, "every post got its own GUID");
    assert_eq!(vp.free_guids().await.unwrap(), 0);
    assert_eq!(scalar_i64(&db, "SELECT COUNT(*) FROM wp_posts").await, 9);
    assert_eq!(
        scalar_i64(
            &db,
            "SELECT COUNT(*) FROM wp_terms WHERE name = 'Brand New'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(&db, "SELECT count FROM wp_term_taxonomy").await,
        9
    );
    drop(vp);
    db.drop().await;
}
