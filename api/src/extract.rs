//! Extractors whose rejections come out as `ApiError`, so a serde error is a JSON error
//! body like any other: a syntax error is 400 `invalid-json`, a wrong type or a missing
//! field is 422 `validation-failed` naming the field's path.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use k8or::model::FieldError;

/// A JSON body, read under the route's body limit.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::unsupported_media_type(
                "application/json",
                content_type(req.headers()),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: None }
            } else {
                ApiError::BadRequest {
                    code: "bad-request",
                    message: e.body_text(),
                }
            }
        })?;
        parse_json(&bytes).map(Self)
    }
}

/// Query parameters, with a 400 `invalid-query` naming what was wrong.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| ApiError::BadRequest {
                code: "invalid-query",
                message: e.body_text(),
            })
    }
}

pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::CONTENT_TYPE)?.to_str().ok()
}

/// `application/json` or any `application/*+json`, with parameters.
pub fn is_json(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

pub fn is_multipart(headers: &HeaderMap) -> bool {
    content_type(headers).is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("multipart/form-data")
    })
}

/// Parses JSON, telling a syntax error (400) from a shape error (422 with the field path).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(e) => return Err(shape_or_syntax(e)),
    };
    de.end().map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(value)
}

fn shape_or_syntax(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let inner = e.inner();
    match inner.classify() {
        Category::Data => {
            let mut field = e.path().to_string();
            let message = inner.to_string();
            // "missing field `x`" is reported at the parent: name the field itself.
            if let Some(name) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                field = if field == "." {
                    name.to_owned()
                } else {
                    format!("{field}.{name}")
                };
            }
            let message = strip_position(&message);
            ApiError::Validation(vec![FieldError::new(field, message)])
        }
        Category::Syntax | Category::Eof | Category::Io => ApiError::InvalidJson(inner.to_string()),
    }
}

/// serde_json ends messages with " at line L column C"; for a field error that is noise.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8or::model::UploadRequest;

    fn field_of(e: ApiError) -> (String, String) {
        match e {
            ApiError::Validation(v) => (v[0].field.clone(), v[0].message.clone()),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_invalid_json() {
        let e = parse_json::<UploadRequest>(b"{\"imageMetadata\": ").unwrap_err();
        assert_eq!(e.code(), "invalid-json");
        let e = parse_json::<UploadRequest>(br#"{"imageMetadata": {}} trailing"#).unwrap_err();
        assert_eq!(e.code(), "invalid-json");
    }

    #[test]
    fn shape_errors_name_the_field() {
        let (field, message) = field_of(parse_json::<UploadRequest>(b"{}").unwrap_err());
        assert_eq!(field, "imageMetadata");
        assert!(message.contains("missing field"), "{message}");
        let (field, _) = field_of(
            parse_json::<UploadRequest>(br#"{"imageMetadata": {"port": true}}"#).unwrap_err(),
        );
        assert_eq!(field, "imageMetadata.port");
        let (field, message) = field_of(
            parse_json::<UploadRequest>(br#"{"imageMetadata": {"envVars": [{"key": 1}]}}"#)
                .unwrap_err(),
        );
        assert_eq!(field, "imageMetadata.envVars[0].key");
        assert!(!message.contains("line"), "{message}");
    }

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "multipart/form-data; boundary=x".parse().unwrap(),
        );
        assert!(is_multipart(&h));
    }
}
