//! The ViewPort suite: the WordPress reads and writes of the seed, on a fresh database.

use std::collections::HashSet;
use std::sync::Arc;

use k8or::model::PostMeta;
use k8or::store::viewport::{NewPost, ViewPort, ViewPortError, WpUser};
use uuid::Uuid;

use super::unique;

/// Runs the ViewPort suite against `$factory`, an async expression giving a fresh
/// `Arc<dyn ViewPort>` on an empty database.
#[macro_export]
macro_rules! viewport_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            $factory,
            viewport,
            [
                viewport_migrate_twice,
                viewport_users_are_seeded_once,
                viewport_image_uid_is_unique,
                viewport_guid_pool_seeding_and_free_count,
                viewport_publish_writes_post_guid_meta_and_category,
                viewport_publish_makes_clashing_slugs_unique,
                viewport_publish_twice_for_a_job_writes_once,
                viewport_concurrent_publishes_of_a_job_make_one_post,
                viewport_publish_with_an_empty_pool_makes_a_guid,
            ]
        );
    };
}

async fn migrated(v: &dyn ViewPort) {
    v.migrate().await.expect("migrate");
}

fn new_guids(n: usize) -> Vec<String> {
    (0..n).map(|_| Uuid::new_v4().to_string()).collect()
}

/// A post as the publish stage builds it from the seed's UploadImage request (6.1).
fn trolls(slug: &str, category: &str) -> NewPost {
    NewPost {
        job_id: Uuid::now_v7(),
        slug: slug.to_owned(),
        title: "Trolls World Tour (2020)".into(),
        content: "The story is set in a colorful and vibrant world of the Trolls.".into(),
        excerpt: "Trolls World Tour (2020)".into(),
        status: "publish".into(),
        post_type: "post".into(),
        comment_status: "closed".into(),
        ping_status: "closed".into(),
        author: 2,
        date: "2024-11-03 15:30:00".into(),
        date_gmt: "2024-11-03 12:30:00".into(),
        guid_template: "http://orbit.k8or.com/viewport/?guid={guid}".into(),
        category: category.to_owned(),
        meta: vec![
            PostMeta::new("preview", "http://orbit.k8or.com/viewport/{post_name}/"),
            PostMeta::new("version", "v0-0-01"),
            PostMeta::new(
                "imageuid",
                "Het5SfSA6NJdRVdhTUhwev9A528QH4gwdJQMSA857PStLeyRnpGffDpDMJq5",
            ),
            PostMeta::new("environment", "Development"),
        ],
    }
}

pub async fn viewport_migrate_twice(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    migrated(&*v).await;
    v.ping().await.expect("ping");
    assert_eq!(v.free_guids().await.expect("free guids"), 0);
    assert!(v.users().await.expect("users").is_empty());
}

pub async fn viewport_users_are_seeded_once(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    let user = |id, login: &str, name: &str| WpUser {
        id,
        user_login: login.into(),
        user_email: format!("{login}@k8or.com"),
        display_name: name.into(),
    };
    let seed = vec![
        user(4, "k8or_admin", "k8or Admin"),
        user(2, "jamesbond", "James Bond"),
        user(3, "madamecoco", "Madame Coco"),
    ];
    assert_eq!(v.seed_users(&seed).await.expect("seed"), 3);
    assert_eq!(v.seed_users(&seed).await.expect("seed again"), 0);
    let mut by_id = seed.clone();
    by_id.sort_by_key(|u| u.id);
    assert_eq!(v.users().await.expect("users"), by_id);
}

pub async fn viewport_image_uid_is_unique(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    let uid = format!("{:0<60}", unique("uid").replace('-', ""));
    v.insert_image_uid(&uid, "Trolls World Tour (2020), v0-0-01, Movie")
        .await
        .expect("insert");
    let row = v.image_uid(&uid).await.expect("read").expect("a row");
    assert_eq!(row.image_uid, uid);
    assert_eq!(
        row.image_metadata.as_deref(),
        Some("Trolls World Tour (2020), v0-0-01, Movie")
    );
    let again = v.insert_image_uid(&uid, "other").await;
    assert!(
        matches!(again, Err(ViewPortError::Duplicate(_))),
        "{again:?}"
    );
    assert_eq!(
        v.image_uid(&uid)
            .await
            .expect("read")
            .and_then(|r| r.image_metadata)
            .as_deref(),
        Some("Trolls World Tour (2020), v0-0-01, Movie")
    );
    assert_eq!(v.image_uid("no-such-uid").await.expect("read"), None);
}

pub async fn viewport_guid_pool_seeding_and_free_count(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    let first = new_guids(5);
    assert_eq!(v.seed_guid_pool(&first).await.expect("seed"), 5);
    assert_eq!(v.free_guids().await.expect("free"), 5);
    let mut more = first.clone();
    more.extend(new_guids(2));
    assert_eq!(v.seed_guid_pool(&more).await.expect("seed again"), 2);
    assert_eq!(v.free_guids().await.expect("free"), 7);
}

pub async fn viewport_publish_writes_post_guid_meta_and_category(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    let pool = new_guids(3);
    v.seed_guid_pool(&pool).await.expect("seed");
    let post = trolls("trolls-world-tour-2020-v0-0-01-development", "Movies");
    let published = v.publish(&post).await.expect("publish");
    assert!(published.created);
    assert_eq!(
        published.post_name,
        "trolls-world-tour-2020-v0-0-01-development"
    );
    assert!(
        pool.contains(&published.guid),
        "the GUID comes from the pool"
    );
    assert_eq!(
        published.guid_url,
        format!("http://orbit.k8or.com/viewport/?guid={}", published.guid)
    );
    assert_eq!(
        v.free_guids().await.expect("free"),
        2,
        "the GUID is linked now"
    );

    let row = v
        .post(published.post_id)
        .await
        .expect("post")
        .expect("a post");
    assert_eq!(row.post_title, post.title);
    assert_eq!(row.post_content, post.content);
    assert_eq!(row.post_excerpt, post.excerpt);
    assert_eq!(row.post_status, "publish");
    assert_eq!(row.post_type, "post");
    assert_eq!(row.post_author, 2);
    assert_eq!(row.post_name, published.post_name);
    assert_eq!(row.guid, published.guid_url);

    let meta = v.post_meta(published.post_id).await.expect("meta");
    assert_eq!(
        meta[0],
        PostMeta::new(
            "preview",
            "http://orbit.k8or.com/viewport/trolls-world-tour-2020-v0-0-01-development/"
        )
    );
    assert_eq!(meta[1..], post.meta[1..]);
    assert_eq!(
        v.post_categories(published.post_id)
            .await
            .expect("categories"),
        ["Movies"]
    );
    assert_eq!(
        v.post_for_job(post.job_id).await.expect("job"),
        Some(published.post_id)
    );
    assert_eq!(v.post_for_job(Uuid::now_v7()).await.expect("job"), None);
    assert_eq!(v.post(published.post_id + 1000).await.expect("post"), None);
}

/// Another job wishing the same slug gets `-2`, the next `-3` (WordPress style), and the
/// category is found, not made again.
pub async fn viewport_publish_makes_clashing_slugs_unique(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    v.seed_guid_pool(&new_guids(5)).await.expect("seed");
    let mut names = Vec::new();
    let mut guids = HashSet::new();
    let mut last = 0;
    for _ in 0..3 {
        let p = v
            .publish(&trolls("same-slug", "Movies"))
            .await
            .expect("publish");
        assert!(p.created);
        assert!(guids.insert(p.guid), "each post gets its own GUID");
        assert_eq!(
            v.post_categories(p.post_id).await.expect("categories"),
            ["Movies"]
        );
        names.push(p.post_name);
        last = p.post_id;
    }
    assert_eq!(names, ["same-slug", "same-slug-2", "same-slug-3"]);
    let meta = v.post_meta(last).await.expect("meta");
    assert_eq!(
        meta[0].meta_value, "http://orbit.k8or.com/viewport/same-slug-3/",
        "{{post_name}} is the final slug"
    );
}

/// The same job published again gets its post back, and nothing new is written.
pub async fn viewport_publish_twice_for_a_job_writes_once(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    v.seed_guid_pool(&new_guids(3)).await.expect("seed");
    let post = trolls("twice", "Games");
    let first = v.publish(&post).await.expect("publish");
    let free = v.free_guids().await.expect("free");
    let meta = v.post_meta(first.post_id).await.expect("meta");
    let second = v.publish(&post).await.expect("publish again");
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(second.post_id, first.post_id);
    assert_eq!(second.post_name, first.post_name);
    assert_eq!(second.guid, first.guid);
    assert_eq!(second.guid_url, first.guid_url);
    assert_eq!(v.free_guids().await.expect("free"), free);
    assert_eq!(v.post_meta(first.post_id).await.expect("meta"), meta);
    assert_eq!(
        v.post_categories(first.post_id).await.expect("categories"),
        ["Games"]
    );
    let other = v
        .publish(&trolls("twice", "Games"))
        .await
        .expect("another job");
    assert_eq!(
        other.post_name, "twice-2",
        "the first post still holds its slug"
    );
}

pub async fn viewport_concurrent_publishes_of_a_job_make_one_post(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    v.seed_guid_pool(&new_guids(10)).await.expect("seed");
    let post = trolls("raced", "Books");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (v, post) = (v.clone(), post.clone());
            tokio::spawn(async move { v.publish(&post).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("join").expect("publish"));
    }
    assert_eq!(results.iter().filter(|p| p.created).count(), 1);
    assert!(results.iter().all(|p| p.post_id == results[0].post_id));
    assert_eq!(v.free_guids().await.expect("free"), 9);
}

pub async fn viewport_publish_with_an_empty_pool_makes_a_guid(v: Arc<dyn ViewPort>) {
    migrated(&*v).await;
    assert_eq!(v.free_guids().await.expect("free"), 0, "a fresh database");
    let p = v
        .publish(&trolls("no-pool", "Video"))
        .await
        .expect("publish");
    assert!(Uuid::parse_str(&p.guid).is_ok(), "{}", p.guid);
    assert!(p.guid_url.ends_with(&p.guid));
    assert_eq!(v.free_guids().await.expect("free"), 0);
}
