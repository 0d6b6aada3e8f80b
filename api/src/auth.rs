//! Bearer tokens: HS256 JWTs carrying the username (`sub`), a role and an expiry.
//!
//! The token's username is the one that counts: a body that names another user is refused.
//! `Caller` is the extractor every protected handler takes; a handler that forgets it
//! cannot read who is calling, so it cannot serve anyone's data by mistake.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits uploads and sees their own jobs.
    User,
    /// Also sees every user's jobs and the dead-letter queues.
    Admin,
}

/// The claims of a k8or token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The username (`wp_users.user_login`).
    pub sub: String,
    pub role: Role,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("username must be 1 to 60 characters without spaces or control characters")]
    BadUsername,
    #[error("the token lifetime must be more than zero")]
    ZeroTtl,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The signing and checking keys, made once from the secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// Seconds of clock difference tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

impl TokenKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token for `username` valid for `ttl` from now.
    pub fn issue(&self, username: &str, role: Role, ttl: Duration) -> Result<String, TokenError> {
        if username.is_empty()
            || username.chars().count() > 60
            || username
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(TokenError::BadUsername);
        }
        if ttl.is_zero() {
            return Err(TokenError::ZeroTtl);
        }
        let now = jsonwebtoken::get_current_timestamp();
        self.sign(&Claims {
            sub: username.to_owned(),
            role,
            iat: now,
            exp: now + ttl.as_secs().max(1),
        })
    }

    /// Signs the given claims as they are (tests use it for expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }

    /// The verified username of a request's bearer token, if it has a valid one.
    pub fn username_of(&self, headers: &HeaderMap) -> Option<String> {
        let token = bearer(headers).ok()??;
        self.verify(token).ok().map(|c| c.sub)
    }
}

/// The token of an `Authorization: Bearer …` header: `Ok(None)` if there is no header,
/// `Err` if there is one of another kind.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::InvalidToken);
    }
    Ok(Some(token.trim()))
}

/// Who is calling: the verified claims of the request's bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub role: Role,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this route is for admins".into()))
        }
    }

    /// Refuses a body that names another user than the token's.
    pub fn check_username(&self, claimed: Option<&str>) -> Result<(), ApiError> {
        match claimed {
            Some(u) if u != self.username => Err(ApiError::Forbidden(format!(
                "the body names user {u:?} but the token is {:?}'s",
                self.username
            ))),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)?.ok_or(ApiError::MissingToken)?;
        match state.keys.verify(token) {
            Ok(claims) => Ok(Self {
                username: claims.sub,
                role: claims.role,
            }),
            Err(TokenError::Expired) => Err(ApiError::TokenExpired),
            Err(e) => {
                tracing::debug!(error = %e, "token refused");
                Err(ApiError::InvalidToken)
            }
        }
    }
}

/// Parses a lifetime like `24h`, `30m`, `7d`, `90s` or `3600` (seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 24h, 30m, 7d or 90s"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    if secs == 0 {
        return Err("the lifetime must be more than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let token = keys
            .issue("jamesbond", Role::User, Duration::from_secs(60))
            .unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.role),
            ("jamesbond", Role::User)
        );

        let other = TokenKeys::new(b"another secret of thirty-two b..");
        assert!(matches!(other.verify(&token), Err(TokenError::Invalid(_))));

        let expired = keys
            .sign(&Claims {
                sub: "jamesbond".into(),
                role: Role::Admin,
                iat: 1,
                exp: 2,
            })
            .unwrap();
        assert!(matches!(keys.verify(&expired), Err(TokenError::Expired)));
        assert!(keys
            .issue("james bond", Role::User, Duration::from_secs(1))
            .is_err());
        assert!(keys.issue("", Role::User, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn ttls_parse() {
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        for bad in ["", "h", "0h", "1w", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_headers() {
        let mut h = HeaderMap::new();
        assert!(matches!(bearer(&h), Ok(None)));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer(&h).is_err());
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap(), Some("abc"));
        h.insert(header::AUTHORIZATION, "bearer   ".parse().unwrap());
        assert!(bearer(&h).is_err());
    }
}
