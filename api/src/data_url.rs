//! `data:` URLs, the JSON form's way to carry a small image (seed 3.1's `imageData`).

use base64::alphabet::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

/// Standard alphabet; padding optional, since browsers and hand-made payloads differ.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A decoded data URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUrl {
    /// The declared media type (`image/png`), if any. Informative only: the validate stage
    /// looks at the bytes.
    pub media_type: Option<String>,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataUrlError {
    #[error("it must start with `data:`")]
    NotDataUrl,
    #[error("it has no ',' between the header and the data")]
    NoComma,
    #[error("only base64 data URLs are accepted (`data:<type>;base64,<data>`)")]
    NotBase64Encoded,
    #[error("the data is not valid base64: {0}")]
    BadBase64(String),
    #[error("the media type {0:?} holds characters no HTTP header can carry")]
    BadMediaType(String),
}

/// Parses `data:[<media type>][;param=value]*;base64,<data>`.
pub fn parse(url: &str) -> Result<DataUrl, DataUrlError> {
    let rest = url
        .get(..5)
        .filter(|p| p.eq_ignore_ascii_case("data:"))
        .map(|_| &url[5..])
        .ok_or(DataUrlError::NotDataUrl)?;
    let (header, data) = rest.split_once(',').ok_or(DataUrlError::NoComma)?;
    let mut params = header.split(';');
    let media_type = params
        .next()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase);
    if let Some(t) = media_type
        .as_deref()
        .filter(|t| !k8or::store::blobs::is_header_value(t))
    {
        return Err(DataUrlError::BadMediaType(t.to_owned()));
    }
    if !params.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return Err(DataUrlError::NotBase64Encoded);
    }
    let bytes = BASE64
        .decode(data.trim())
        .map_err(|e| DataUrlError::BadBase64(e.to_string()))?;
    Ok(DataUrl { media_type, bytes })
}

/// Whether a text is a data URL (and so carries bytes that must not be stored as text).
pub fn is_data_url(s: &str) -> bool {
    s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:"))
}

/// Empties a field that holds a data URL: its bytes are stored as the image, never as text.
pub fn drop_data_url(field: &mut Option<String>) {
    if field.as_deref().is_some_and(is_data_url) {
        *field = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_data_urls_decode() {
        let d = parse("data:image/png;base64,iVBORw0KGgo=").unwrap();
        assert_eq!(d.media_type.as_deref(), Some("image/png"));
        assert_eq!(&d.bytes[..4], b"\x89PNG");
        // The seed's own example has no padding.
        assert_eq!(
            parse("data:image/png;base64,iVBORw0KGgo")
                .unwrap()
                .bytes
                .len(),
            8
        );
        let d = parse("DATA:;base64,").unwrap();
        assert_eq!((d.media_type, d.bytes.len()), (None, 0));
    }

    #[test]
    fn other_urls_are_refused_with_a_reason() {
        assert_eq!(parse("http://x/y.png"), Err(DataUrlError::NotDataUrl));
        assert_eq!(parse("data:image/png;base64"), Err(DataUrlError::NoComma));
        assert_eq!(
            parse("data:text/plain,hello"),
            Err(DataUrlError::NotBase64Encoded)
        );
        assert!(matches!(
            parse("data:image/png;base64,@@not base64@@"),
            Err(DataUrlError::BadBase64(_))
        ));
        for t in ["im\u{e9}ge/png", "image/png\r\nx: y", "a\u{0}b"] {
            assert_eq!(
                parse(&format!("data:{t};base64,iVBORw0KGgo=")),
                Err(DataUrlError::BadMediaType(t.to_owned())),
                "{t:?}"
            );
        }
        assert!(is_data_url("data:x"));
        assert!(!is_data_url("dat"));
    }
}
