//! Who a post may be published as (seed 6.1's `post_author`): a ViewPort user, and the
//! caller's own `wp_users` row unless the caller is an admin. Checked at intake, before a
//! byte of the image is read; the publish stage then takes the author the job names.

use k8or::model::FieldError;
use k8or::store::WpUser;

use crate::auth::Caller;
use crate::error::ApiError;

/// The field the rule is about, as clients name it.
pub const FIELD: &str = "postMetadata.postData.post_author";

/// Refuses a `post_author` naming another ViewPort user than the caller, unless the
/// caller is an admin (403). An author who is no ViewPort user is a broken rule, returned
/// to go with the request's others (422). No author named passes: publish takes the
/// caller's own row.
pub fn check(
    caller: &Caller,
    author: Option<u64>,
    users: &[WpUser],
) -> Result<Option<FieldError>, ApiError> {
    let Some(id) = author else {
        return Ok(None);
    };
    let Some(named) = users.iter().find(|u| u.id == id) else {
        return Ok(Some(FieldError::new(
            FIELD,
            format!("no ViewPort user has ID {id} (GET /api/v1/users lists them)"),
        )));
    };
    if named.user_login == caller.username || caller.is_admin() {
        return Ok(None);
    }
    Err(ApiError::Forbidden(format!(
        "post_author {id} is ViewPort user {:?}; only an admin publishes as another user than \
         themselves (leave post_author out to publish as {:?})",
        named.user_login, caller.username
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use k8or::bootstrap;

    fn caller(name: &str, role: Role) -> Caller {
        Caller {
            username: name.into(),
            role,
        }
    }

    #[test]
    fn a_user_publishes_as_themselves_an_admin_as_anyone() {
        let users = bootstrap::users();
        let james = caller("jamesbond", Role::User);
        assert_eq!(check(&james, None, &users).unwrap(), None);
        assert_eq!(check(&james, Some(2), &users).unwrap(), None);
        let err = check(&james, Some(4), &users).unwrap_err();
        assert_eq!(err.code(), "forbidden");
        assert!(err.to_string().contains("k8or_admin"), "{err}");
        // Not in wp_users: no one's post to claim either.
        let stranger = caller("mallory", Role::User);
        assert_eq!(
            check(&stranger, Some(2), &users).unwrap_err().code(),
            "forbidden"
        );
        assert_eq!(check(&stranger, None, &users).unwrap(), None);
        let admin = caller("k8or_admin", Role::Admin);
        assert_eq!(check(&admin, Some(2), &users).unwrap(), None);
    }

    #[test]
    fn an_author_who_is_no_viewport_user_is_422() {
        let users = bootstrap::users();
        let admin = caller("k8or_admin", Role::Admin);
        let broken = check(&admin, Some(99), &users)
            .unwrap()
            .expect("a broken rule");
        assert_eq!(broken.field, FIELD);
        assert!(broken.message.contains("99"), "{}", broken.message);
    }
}
