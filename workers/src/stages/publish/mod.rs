//! publish (seed 6.1–6.6): the ViewPort post with its slug, GUID, meta and category, in one
//! transaction that the ViewPort adapter keys by job id, then the two events.

pub mod slug;
pub mod text;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8or::model::{EventType, PostMeta};
use k8or::pid::known;
use k8or::store::viewport::{GUID_PLACEHOLDER, POST_NAME_PLACEHOLDER};
use k8or::store::{NewPost, WpUser};
use k8or::time::sql_datetime;
use k8or::{Context, JobEnvelope, JobRecord, Pid, Stage};
use serde_json::json;
use tracing::instrument;

use super::common::{self, object_key, record_event};
use crate::runner::{Outcome, StageError, StageHandler};
use text::{plain_text, strip_markup};

pub struct Publish;

/// The post author: the board's `post_author` where it names a ViewPort user (the intake
/// lets only an admin name another user than themselves), else the wp_users ID of the job's
/// user, else 0 (WordPress's "no author").
pub fn resolve_author(users: &[WpUser], username: &str, requested: Option<u64>) -> u64 {
    requested
        .filter(|id| users.iter().any(|u| u.id == *id))
        .or_else(|| {
            users
                .iter()
                .find(|u| u.user_login == username)
                .map(|u| u.id)
        })
        .unwrap_or(0)
}

/// The author the job names, if the intake checked it against the submitter (a job
/// accepted before that check could name anyone).
pub fn requested_author(job: &JobRecord) -> Option<u64> {
    job.author_checked
        .then_some(job.request.post_metadata.post_data.post_author)
        .flatten()
}

fn base_url(configured: &str) -> String {
    if configured.ends_with('/') {
        configured.to_owned()
    } else {
        format!("{configured}/")
    }
}

/// The post's public URL, with `{post_name}` where the final slug goes.
pub fn post_url_template(base_url_: &str) -> String {
    format!("{}viewport/{POST_NAME_PLACEHOLDER}/", base_url(base_url_))
}

fn one_of(value: Option<&str>, allowed: &[&str], default: &str) -> String {
    value
        .map(str::trim)
        .filter(|v| allowed.contains(v))
        .unwrap_or(default)
        .to_owned()
}

/// Everything the post is made of, from the job alone (pure, so it is tested alone).
pub fn build_post(job: &JobRecord, site: &str, author: u64, now: DateTime<Utc>) -> NewPost {
    let req = &job.request;
    let m = &req.image_metadata;
    let pm = &req.post_metadata;
    let pd = &pm.post_data;
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };

    let raw_title = given(&pd.post_title).unwrap_or_else(|| m.image_name.clone());
    let title_text = strip_markup(&raw_title);
    let environment = strip_markup(pm.environment());
    let slug = slug::post_slug(&title_text, &m.image_version, &environment);
    let content = given(&pd.post_content)
        .or_else(|| given(&m.description))
        .unwrap_or_default();
    let excerpt = given(&pd.post_excerpt).unwrap_or_else(|| raw_title.clone());
    let category = given(&pd.category_name).unwrap_or_else(|| m.image_category.clone());
    let site = base_url(site);
    let url = post_url_template(&site);
    let board_meta = |key: &str| {
        pm.meta(key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let part = board_meta("part")
        .or_else(|| given(&m.part))
        .unwrap_or_default();
    let tail = board_meta("tail")
        .or_else(|| given(&m.tail))
        .unwrap_or_default();
    let start_date = board_meta("start_date")
        .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| job.created_at.format("%Y%m%d").to_string());
    let meta = vec![
        PostMeta::new("preview", url.clone()),
        PostMeta::new("website", site.clone()),
        PostMeta::new("website-main-article", url),
        PostMeta::new("version", plain_text(&m.image_version)),
        PostMeta::new("scanned", "No"),
        PostMeta::new("part", plain_text(&part)),
        PostMeta::new("tail", plain_text(&tail)),
        PostMeta::new("image_status", "Uploaded"),
        PostMeta::new("imageuid", job.image_uid.clone()),
        PostMeta::new("environment", plain_text(&environment)),
        PostMeta::new("start_date", start_date),
    ];
    NewPost {
        job_id: job.job_id,
        slug,
        title: plain_text(&raw_title),
        content: plain_text(&content),
        excerpt: plain_text(&excerpt),
        status: one_of(
            pd.post_status.as_deref(),
            &["publish", "draft", "pending", "private"],
            "publish",
        ),
        post_type: one_of(pd.post_type.as_deref(), &["post", "page"], "post"),
        comment_status: one_of(pd.comment_status.as_deref(), &["open", "closed"], "closed"),
        ping_status: one_of(pd.ping_status.as_deref(), &["open", "closed"], "closed"),
        author,
        date: sql_datetime(now),
        date_gmt: sql_datetime(now),
        guid_template: format!("{site}viewport/?guid={GUID_PLACEHOLDER}"),
        category: strip_markup(&category),
        meta,
    }
}

#[async_trait]
impl StageHandler for Publish {
    fn stage(&self) -> Stage {
        Stage::Publish
    }

    fn error_type(&self) -> &'static str {
        "publish-rejected"
    }

    #[instrument(skip_all, fields(job.id = %job.job_id, image.uid = %job.image_uid, pid = known::PUBLISH_REQUEST))]
    async fn handle(
        &self,
        job: &JobRecord,
        _env: &JobEnvelope,
        ctx: &Context,
    ) -> Result<Outcome, StageError> {
        let viewport = &ctx.stores.viewport;
        let users = viewport.users().await?;
        let author = resolve_author(&users, &job.username, requested_author(job));
        let post = build_post(job, &ctx.settings.viewport.base_url, author, Utc::now());
        // 6.1–6.4 in one transaction; a job that published before gets its post back.
        let published = viewport.publish(&post).await?;
        let url = post_url_template(&ctx.settings.viewport.base_url)
            .replace(POST_NAME_PLACEHOLDER, &published.post_name);
        let details = json!({
            "postId": published.post_id,
            "postName": published.post_name,
            "guid": published.guid,
            "guidUrl": published.guid_url,
            "url": url,
            "category": post.category,
        });
        record_event(
            ctx,
            job,
            EventType::ViewportCreated,
            known::VIEWPORT_CREATED_EVENT,
            Some(details.clone()),
        )
        .await?;
        record_event(
            ctx,
            job,
            EventType::ImageUploaded,
            known::IMAGE_UPLOADED_EVENT,
            Some(json!({"postId": published.post_id, "url": url, "objectKey": object_key(job)})),
        )
        .await?;
        let pids = [
            known::POST_SLUG,
            known::POST_GUID,
            known::POST_INSERT,
            known::POST_META_INSERT,
            known::VIEWPORT_CREATED_EVENT,
            known::IMAGE_UPLOADED_EVENT,
        ]
        .map(Pid::constant)
        .to_vec();
        Ok(Outcome::new(pids).with_output(common::POST, details))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use k8or::job::StoredImage;
    use uuid::Uuid;

    fn seed_job(post_metadata: serde_json::Value) -> JobRecord {
        let request = serde_json::from_value(json!({
            "imageMetadata": {
                "imageUID": "Het5SfSA6NJdRVdhTUhwev9A528QH4gwdJQMSA857PStLeyRnpGffDpDMJq5",
                "icao": "British", "tail": "G-AAAA", "Part": "21117-1",
                "imageName": "Trolls World Tour (2020)", "imageVersion": "v0-0-01",
                "imageCategory": "Movie",
                "Description": "The story is set in a colorful and vibrant world of the Trolls."
            },
            "userMetadata": {"username": "jamesbond"},
            "postMetadata": post_metadata
        }))
        .unwrap();
        let image = StoredImage {
            temp_key: "k".into(),
            size: 1,
            sha256: "00".into(),
            declared_content_type: None,
            file_name: None,
        };
        let at = Utc.with_ymd_and_hms(2025, 2, 7, 10, 0, 0).unwrap();
        JobRecord::new(
            Uuid::now_v7(),
            "jamesbond".into(),
            "Het5SfSA6NJdRVdhTUhwev9A528QH4gwdJQMSA857PStLeyRnpGffDpDMJq5".into(),
            request,
            image,
            at,
        )
    }

    fn meta(post: &NewPost, key: &str) -> String {
        post.meta
            .iter()
            .find(|m| m.meta_key == key)
            .map(|m| m.meta_value.clone())
            .unwrap_or_else(|| panic!("no meta {key}"))
    }

    #[test]
    fn the_seed_post() {
        let job = seed_job(json!({
            "postData": {"post_title": "Trolls World Tour (2020)", "post_excerpt": "Trolls World Tour (2020)",
                          "category_name": "Music", "post_author": 7},
            "post_meta": [{"meta_key": "part", "meta_value": "4562"}, {"meta_key": "tail", "meta_value": "41-38116"},
                          {"meta_key": "start_date", "meta_value": "20250207"}]
        }));
        let now = Utc.with_ymd_and_hms(2025, 2, 18, 8, 49, 2).unwrap();
        let post = build_post(&job, "http://orbit.k8or.com", 2, now);
        assert_eq!(post.slug, "trolls-world-tour-2020-v0-0-01-development");
        assert_eq!(post.title, "Trolls World Tour (2020)");
        assert_eq!(post.excerpt, "Trolls World Tour (2020)");
        assert_eq!(
            post.content,
            "The story is set in a colorful and vibrant world of the Trolls."
        );
        assert_eq!(
            (post.status.as_str(), post.post_type.as_str()),
            ("publish", "post")
        );
        assert_eq!(
            (post.comment_status.as_str(), post.ping_status.as_str()),
            ("closed", "closed")
        );
        assert_eq!(post.author, 2);
        assert_eq!(post.date, "2025-02-18 08:49:02");
        assert_eq!(
            post.guid_template,
            "http://orbit.k8or.com/viewport/?guid={guid}"
        );
        assert_eq!(post.category, "Music");
        let keys: Vec<&str> = post.meta.iter().map(|m| m.meta_key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "preview",
                "website",
                "website-main-article",
                "version",
                "scanned",
                "part",
                "tail",
                "image_status",
                "imageuid",
                "environment",
                "start_date"
            ]
        );
        assert_eq!(
            meta(&post, "preview"),
            "http://orbit.k8or.com/viewport/{post_name}/"
        );
        assert_eq!(meta(&post, "website"), "http://orbit.k8or.com/");
        assert_eq!(meta(&post, "part"), "4562");
        assert_eq!(meta(&post, "tail"), "41-38116");
        assert_eq!(meta(&post, "scanned"), "No");
        assert_eq!(meta(&post, "image_status"), "Uploaded");
        assert_eq!(meta(&post, "environment"), "Development");
        assert_eq!(meta(&post, "start_date"), "20250207");
    }

    #[test]
    fn defaults_come_from_the_image_metadata() {
        let job = seed_job(json!({}));
        let post = build_post(&job, "http://orbit.k8or.com/", 0, Utc::now());
        assert_eq!(post.title, "Trolls World Tour (2020)");
        assert_eq!(post.category, "Movie");
        assert_eq!(meta(&post, "part"), "21117-1");
        assert_eq!(meta(&post, "tail"), "G-AAAA");
        assert_eq!(meta(&post, "start_date"), "20250207");
    }

    #[test]
    fn markup_never_reaches_wordpress() {
        let job = seed_job(json!({
            "environment": "<b>Testing</b>",
            "postData": {"post_title": "<script>alert(1)</script>Nice <i>Title</i>",
                          "post_content": "<img src=x onerror=alert(1)>[gallery]",
                          "post_status": "<script>", "post_type": "revision"}
        }));
        let post = build_post(&job, "http://s/", 0, Utc::now());
        assert_eq!(post.title, "Nice Title");
        assert_eq!(post.slug, "nice-title-v0-0-01-testing");
        assert_eq!(post.content, "&#91;gallery&#93;");
        assert_eq!(
            (post.status.as_str(), post.post_type.as_str()),
            ("publish", "post")
        );
        assert_eq!(meta(&post, "environment"), "Testing");
    }

    #[test]
    fn only_a_checked_author_is_taken() {
        let mut job = seed_job(json!({"postData": {"post_author": 4}}));
        assert_eq!(requested_author(&job), None, "a job from before the check");
        job.author_checked = true;
        assert_eq!(requested_author(&job), Some(4));
    }

    #[test]
    fn author_is_the_one_named_else_the_users_wordpress_id() {
        let user = |id, login: &str| WpUser {
            id,
            user_login: login.into(),
            user_email: format!("{login}@k8or.com"),
            display_name: login.into(),
        };
        let users = vec![user(2, "jamesbond"), user(4, "k8or_admin")];
        // Named (the intake let only an admin name someone else).
        assert_eq!(resolve_author(&users, "k8or_admin", Some(2)), 2);
        assert_eq!(resolve_author(&users, "jamesbond", Some(2)), 2);
        // None named, or one who is no ViewPort user (any more): the job's user.
        assert_eq!(resolve_author(&users, "jamesbond", None), 2);
        assert_eq!(resolve_author(&users, "jamesbond", Some(9)), 2);
        // Neither: WordPress's "no author".
        assert_eq!(resolve_author(&users, "nobody", Some(9)), 0);
        assert_eq!(resolve_author(&users, "nobody", None), 0);
    }
}
