//! `imageMetadata` and `userMetadata`, the two shapes every seed payload and event item carries.

use serde::{Deserialize, Deserializer, Serialize};

/// A `{"key": …, "value": …}` pair, as the seed writes envVars, volumes and imageLabels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The seed's `imageMetadata`.
///
/// The seed spells some fields two ways (`Part`/`part`, `Description`/`description`) and
/// writes `port` as `"80"` or `80`; input accepts both, output always uses `Part`,
/// `Description` and a string port, as the stored DynamoDB items do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageMetadata {
    #[serde(rename = "imageUID", default, skip_serializing_if = "Option::is_none")]
    pub image_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icao: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<String>,
    #[serde(
        rename = "Part",
        alias = "part",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub part: Option<String>,
    #[serde(default)]
    pub image_name: String,
    #[serde(default)]
    pub image_version: String,
    #[serde(default)]
    pub image_category: String,
    #[serde(
        rename = "Description",
        alias = "description",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
    #[serde(
        default,
        deserialize_with = "port_from_string_or_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub port: Option<String>,
    #[serde(default)]
    pub env_vars: Vec<KeyValue>,
    #[serde(default)]
    pub volumes: Vec<KeyValue>,
    #[serde(default)]
    pub image_labels: Vec<KeyValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint_override: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The seed's preview data URL. The pipeline never keeps image bytes here: stored items
    /// carry the object key instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Accepts `"80"` and `80` and keeps the text, so that validation can name a bad value.
fn port_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match Option::<Port>::deserialize(d)? {
        None => None,
        Some(Port::Text(s)) => Some(s),
        Some(Port::Number(n)) => Some(n.to_string()),
    })
}

impl ImageMetadata {
    /// The port as a number, when it is one from 1 to 65535.
    pub fn port_number(&self) -> Option<u16> {
        self.port
            .as_deref()?
            .trim()
            .parse()
            .ok()
            .filter(|p| *p != 0)
    }

    /// "name, version, category": the `image_metadata` text of a `wp_image_uid` row.
    pub fn uid_summary(&self) -> String {
        format!(
            "{}, {}, {}",
            self.image_name, self.image_version, self.image_category
        )
    }
}

/// The seed's `userMetadata`. Stored items drop `username`, which is their partition key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl UserMetadata {
    /// The stored form: the same fields without `username`.
    pub fn without_username(&self) -> Self {
        Self {
            username: None,
            ..self.clone()
        }
    }
}

/// The seed's image version format: `v<major>-<minor>-<patch>`, e.g. `v0-0-01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ImageVersion {
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix('v')?;
        let mut parts = rest.split('-');
        let mut next = || -> Option<u32> {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let v = Self {
            major: next()?,
            minor: next()?,
            patch: next()?,
        };
        parts.next().is_none().then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        let a = ImageVersion::parse("v0-0-01").unwrap();
        let b = ImageVersion::parse("v0-0-10").unwrap();
        let c = ImageVersion::parse("v1-0-0").unwrap();
        assert!(a < b && b < c);
        for bad in [
            "",
            "v",
            "0-0-01",
            "v0-0",
            "v0-0-01-1",
            "v0-a-01",
            "v0--01",
            "V0-0-01",
        ] {
            assert!(ImageVersion::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn port_accepts_text_and_number() {
        let a: ImageMetadata = serde_json::from_str(r#"{"port":"80"}"#).unwrap();
        let b: ImageMetadata = serde_json::from_str(r#"{"port":80}"#).unwrap();
        assert_eq!(a.port, b.port);
        assert_eq!(a.port_number(), Some(80));
        assert_eq!(serde_json::to_value(&b).unwrap()["port"], "80");
        let c: ImageMetadata = serde_json::from_str(r#"{"port":"99999"}"#).unwrap();
        assert_eq!(c.port_number(), None);
    }

    #[test]
    fn both_spellings_read_one_written() {
        let m: ImageMetadata =
            serde_json::from_str(r#"{"part":"21117-1","description":"d"}"#).unwrap();
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["Part"], "21117-1");
        assert_eq!(v["Description"], "d");
        assert!(v.get("part").is_none());
    }
}
