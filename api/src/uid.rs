//! Image UIDs (seed 2.1–2.4): 60 alphanumeric characters from the OS's CSPRNG, unique in
//! `wp_image_uid`, owned by the user whose `image-uid-assigned` event names them.
//!
//! Ownership lives in the event log rather than in a column of `wp_image_uid`, whose schema
//! is the seed's: "a supplied imageUID belongs to the caller" means the row exists AND the
//! caller's event log has `image-uid-assigned#<uid>`.

use k8or::audit::NewEvent;
use k8or::model::rules::IMAGE_UID_LEN;
use k8or::model::{EventType, ImageMetadata, UserMetadata};
use k8or::pid::{known, Pid};
use k8or::store::{Key, ViewPortError};
use k8or::Context;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::json;

use crate::error::ApiError;

/// A clash of two 60-character UIDs is all but impossible (62^60); a few retries only
/// guard against a broken random source, which then fails loudly instead of looping.
const MAX_ATTEMPTS: usize = 5;

/// A fresh candidate UID.
pub fn generate() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(IMAGE_UID_LEN)
        .map(char::from)
        .collect()
}

/// Assigns a new UID for `image` to `username`: the `image-uid-requested` event (e30),
/// the `wp_image_uid` row (e35) and the `image-uid-assigned` event (e40). A candidate that
/// is taken is never returned: another one is drawn.
pub async fn assign(
    ctx: &Context,
    username: &str,
    image: &ImageMetadata,
    user: &UserMetadata,
) -> Result<String, ApiError> {
    let mut metadata = image.clone();
    metadata.image_uid = None;
    for _ in 0..MAX_ATTEMPTS {
        let uid = generate();
        ctx.audit
            .event(NewEvent {
                username,
                event_type: EventType::ImageUidRequested,
                pid: Pid::constant(known::UID_REQUESTED_EVENT),
                subject: &uid,
                job_id: None,
                image_metadata: &metadata,
                user_metadata: user,
                details: Some(json!({"requestPID": known::UID_REQUEST})),
            })
            .await?;
        match ctx
            .stores
            .viewport
            .insert_image_uid(&uid, &image.uid_summary())
            .await
        {
            Ok(()) => {}
            Err(ViewPortError::Duplicate(_)) => {
                tracing::warn!("image UID candidate was taken; drawing another");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        metadata.image_uid = Some(uid.clone());
        ctx.audit
            .event(NewEvent {
                username,
                event_type: EventType::ImageUidAssigned,
                pid: Pid::constant(known::UID_ASSIGNED_EVENT),
                subject: &uid,
                job_id: None,
                image_metadata: &metadata,
                user_metadata: user,
                details: Some(json!({"assignPID": known::UID_ASSIGN})),
            })
            .await?;
        tracing::info!(image.uid = %uid, pid = known::UID_ASSIGN, "image UID assigned");
        return Ok(uid);
    }
    Err(ApiError::Conflict(format!(
        "no free image UID after {MAX_ATTEMPTS} draws"
    )))
}

/// Whether `uid` exists in `wp_image_uid` and was assigned to `username`.
pub async fn belongs_to(ctx: &Context, username: &str, uid: &str) -> Result<bool, ApiError> {
    if ctx.stores.viewport.image_uid(uid).await?.is_none() {
        return Ok(false);
    }
    let key = Key::with_sort(username, EventType::ImageUidAssigned.key(uid));
    Ok(ctx
        .stores
        .tables
        .get(&ctx.settings.tables.user_event_log, &key)
        .await?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8or::model::rules::is_image_uid;

    #[test]
    fn generated_uids_are_sixty_alphanumerics_and_differ() {
        let a = generate();
        let b = generate();
        assert!(is_image_uid(&a), "{a}");
        assert!(is_image_uid(&b), "{b}");
        assert_ne!(a, b);
    }
}
