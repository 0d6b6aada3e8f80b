//! Process IDs (PIDs): `<start-resource>-<end-resource>-e<order>`, as the seed defines them.
//!
//! A resource is `c<component><kind><number>` where kind is `fms` (frontend microservice),
//! `bms` (backend microservice), `bre` (backend resource) or `usr` (frontend user), e.g.
//! `c8fms03`. The order is `e` and a step number (`e05`, `e110`) or `EEE` for an error
//! step. Every item, log line and trace span of a step carries its PID, so one job can be
//! followed through every store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What kind of thing a PID resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    FrontendService,
    BackendService,
    BackendResource,
    User,
}

impl ResourceKind {
    fn code(self) -> &'static str {
        match self {
            Self::FrontendService => "fms",
            Self::BackendService => "bms",
            Self::BackendResource => "bre",
            Self::User => "usr",
        }
    }
}

/// One end of a PID: component, kind and number, e.g. `c20bre24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resource {
    pub component: u16,
    pub kind: ResourceKind,
    pub number: u16,
    /// How many digits the number was written with (the seed writes `03`, not `3`).
    width: u8,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "c{}{}{:0width$}",
            self.component,
            self.kind.code(),
            self.number,
            width = usize::from(self.width)
        )
    }
}

/// The step: its execution order, or the error marker `EEE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Order {
    Step { number: u16, width: u8 },
    Error,
}

/// A parsed, valid Process ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pid {
    pub start: Resource,
    pub end: Resource,
    pub order: Order,
}

/// Why a string is not a PID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidError {
    #[error("PID {0:?} must have three parts separated by '-': <start>-<end>-e<order>")]
    Parts(String),
    #[error(
        "PID resource {0:?} must look like c<component><fms|bms|bre|usr><number>, e.g. c8fms03"
    )]
    Resource(String),
    #[error("PID order {0:?} must be e<number> (e.g. e05) or EEE")]
    Order(String),
}

fn parse_number(digits: &str) -> Option<(u16, u8)> {
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, u8::try_from(digits.len()).ok()?))
}

impl FromStr for Resource {
    type Err = PidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PidError::Resource(s.to_owned());
        let rest = s.strip_prefix('c').ok_or_else(bad)?;
        let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (component, rest) = rest.split_at(split);
        let (component, _) = parse_number(component).ok_or_else(bad)?;
        let kind = [
            ResourceKind::FrontendService,
            ResourceKind::BackendService,
            ResourceKind::BackendResource,
            ResourceKind::User,
        ]
        .into_iter()
        .find(|k| rest.starts_with(k.code()))
        .ok_or_else(bad)?;
        let (number, width) = parse_number(&rest[3..]).ok_or_else(bad)?;
        Ok(Self {
            component,
            kind,
            number,
            width,
        })
    }
}

impl FromStr for Pid {
    type Err = PidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('-').collect();
        let [start, end, order] = parts[..] else {
            return Err(PidError::Parts(s.to_owned()));
        };
        let order = if order == "EEE" {
            Order::Error
        } else {
            let (number, width) = order
                .strip_prefix('e')
                .and_then(parse_number)
                .ok_or_else(|| PidError::Order(order.to_owned()))?;
            Order::Step { number, width }
        };
        Ok(Self {
            start: start.parse()?,
            end: end.parse()?,
            order,
        })
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-", self.start, self.end)?;
        match self.order {
            Order::Step { number, width } => {
                write!(f, "e{:0width$}", number, width = usize::from(width))
            }
            Order::Error => f.write_str("EEE"),
        }
    }
}

impl Pid {
    /// Parses a PID known at compile time; panics on a typo, which the tests catch.
    pub fn constant(s: &'static str) -> Self {
        match s.parse() {
            Ok(pid) => pid,
            Err(e) => panic!("bad PID constant {s}: {e}"),
        }
    }

    /// The error PID of the service that started this step: `<start>-c20bre24-EEE`.
    pub fn error_of(self) -> Self {
        Self {
            start: self.start,
            end: Resource {
                component: 20,
                kind: ResourceKind::BackendResource,
                number: 24,
                width: 2,
            },
            order: Order::Error,
        }
    }
}

impl Serialize for Pid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Pid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Every PID the seed lists, named for its step.
pub mod known {
    /// 1.1 the user opens the Upload Board.
    pub const USER_OPENS_BOARD: &str = "c2usr03-c8fms03-e05";
    /// 1.2 the board asks for static data.
    pub const STATIC_DATA_REQUEST: &str = "c8fms03-c8bms06-e10";
    /// 1.3 static data read from the static-data table.
    pub const STATIC_DATA_READ: &str = "c8bms06-c20bre27-e15";
    /// 1.4 display names read from wp_users.
    pub const USERS_READ: &str = "c8bms06-c32bre03-e20";
    /// 1.5 / 2.5 / 6.7 the Portal Upload Logic writes an error item.
    pub const UPLOAD_LOGIC_ERROR: &str = "c8bms06-c20bre24-EEE";
    /// 2.1 the board asks for an image UID.
    pub const UID_REQUEST: &str = "c8fms03-c8bms06-e25";
    /// 2.2 `image-uid-requested` event.
    pub const UID_REQUESTED_EVENT: &str = "c8bms06-c20bre21-e30";
    /// 2.3 the UID is stored in wp_image_uid.
    pub const UID_ASSIGN: &str = "c8bms06-c32bre03-e35";
    /// 2.4 `image-uid-assigned` event.
    pub const UID_ASSIGNED_EVENT: &str = "c8bms06-c20bre21-e40";
    /// 3.1 the board sends the image.
    pub const IMAGE_SEND: &str = "c8fms03-c12bms03-e45";
    /// 3.2 the image is saved to the temporary bucket.
    pub const TEMP_IMAGE_SAVE: &str = "c12bms03-c16bre03-e50";
    /// 3.3 `temporary-image-saved` event.
    pub const TEMP_IMAGE_SAVED_EVENT: &str = "c12bms03-c20bre21-e55";
    /// 3.4 validation checks.
    pub const IMAGE_VALIDATE: &str = "c12bms03-c16bre03-e60";
    /// 3.5 the image moves to the app-image bucket.
    pub const IMAGE_MOVE: &str = "c12bms03-c16bre06-e65";
    /// 3.6 `image-validated` event.
    pub const IMAGE_VALIDATED_EVENT: &str = "c12bms03-c20bre21-e70";
    /// 3.7 the validator writes an error item.
    pub const VALIDATOR_ERROR: &str = "c12bms03-c20bre24-EEE";
    /// 4.1 the board sends the metadata.
    pub const METADATA_SEND: &str = "c8fms03-c12bms06-e75";
    /// 4.2 user data saved to the user-metadata table.
    pub const USER_DATA_SAVE: &str = "c12bms06-c20bre12-e80";
    /// 4.3 `user-data-saved` event.
    pub const USER_DATA_SAVED_EVENT: &str = "c12bms06-c20bre21-e85";
    /// 4.4 image metadata saved to the app-image-metadata table.
    pub const IMAGE_METADATA_SAVE: &str = "c12bms06-c20bre15-e90";
    /// 4.5 `image-metadata-saved` event.
    pub const IMAGE_METADATA_SAVED_EVENT: &str = "c12bms06-c20bre21-e95";
    /// 4.6 user input saved to the user-input-manifest-data table.
    pub const USER_INPUT_SAVE: &str = "c12bms06-c20bre06-e100";
    /// 4.7 `user-input-saved` event.
    pub const USER_INPUT_SAVED_EVENT: &str = "c12bms06-c20bre21-e105";
    /// 4.8 the metadata service writes an error item.
    pub const METADATA_ERROR: &str = "c12bms06-c20bre24-EEE";
    /// 5.1 the board asks for the kustomization.
    pub const KUSTOMIZE_REQUEST: &str = "c8fms03-c12bms09-e110";
    /// 5.2 `kustomization-initiated` event.
    pub const KUSTOMIZATION_INITIATED_EVENT: &str = "c12bms09-c20bre21-e115";
    /// 5.3 base template read from base-kustomize.
    pub const BASE_KUSTOMIZE_READ: &str = "c12bms09-c20bre03-e120";
    /// 5.4 user input read from user-input-manifest-data.
    pub const USER_INPUT_READ: &str = "c12bms09-c20bre06-e125";
    /// 5.5 generated manifests saved to k8or-kustomize.
    pub const KUSTOMIZE_SAVE: &str = "c12bms09-c20bre09-e130";
    /// 5.6 `kustomization-saved` event.
    pub const KUSTOMIZATION_SAVED_EVENT: &str = "c12bms09-c20bre21-e135";
    /// 5.7 the chart generator writes an error item.
    pub const CHART_ERROR: &str = "c12bms09-c20bre24-EEE";
    /// 6.1 the board asks to publish to ViewPort.
    pub const PUBLISH_REQUEST: &str = "c8fms03-c8bms06-e140";
    /// 6.1 (e145) the post slug.
    pub const POST_SLUG: &str = "c8bms06-c32bre03-e145";
    /// 6.2 a GUID from the pool.
    pub const POST_GUID: &str = "c8bms06-c32bre03-e150";
    /// 6.3 the wp_posts row.
    pub const POST_INSERT: &str = "c8bms06-c32bre03-e155";
    /// 6.4 the wp_postmeta rows.
    pub const POST_META_INSERT: &str = "c8bms06-c32bre03-e160";
    /// 6.5 `viewport-created` event.
    pub const VIEWPORT_CREATED_EVENT: &str = "c8bms06-c20bre21-e165";
    /// 6.6 `image-uploaded` event.
    pub const IMAGE_UPLOADED_EVENT: &str = "c8bms06-c20bre21-e170";

    /// Every PID above, for tests and documentation.
    pub const ALL: &[&str] = &[
        USER_OPENS_BOARD,
        STATIC_DATA_REQUEST,
        STATIC_DATA_READ,
        USERS_READ,
        UPLOAD_LOGIC_ERROR,
        UID_REQUEST,
        UID_REQUESTED_EVENT,
        UID_ASSIGN,
        UID_ASSIGNED_EVENT,
        IMAGE_SEND,
        TEMP_IMAGE_SAVE,
        TEMP_IMAGE_SAVED_EVENT,
        IMAGE_VALIDATE,
        IMAGE_MOVE,
        IMAGE_VALIDATED_EVENT,
        VALIDATOR_ERROR,
        METADATA_SEND,
        USER_DATA_SAVE,
        USER_DATA_SAVED_EVENT,
        IMAGE_METADATA_SAVE,
        IMAGE_METADATA_SAVED_EVENT,
        USER_INPUT_SAVE,
        USER_INPUT_SAVED_EVENT,
        METADATA_ERROR,
        KUSTOMIZE_REQUEST,
        KUSTOMIZATION_INITIATED_EVENT,
        BASE_KUSTOMIZE_READ,
        USER_INPUT_READ,
        KUSTOMIZE_SAVE,
        KUSTOMIZATION_SAVED_EVENT,
        CHART_ERROR,
        PUBLISH_REQUEST,
        POST_SLUG,
        POST_GUID,
        POST_INSERT,
        POST_META_INSERT,
        VIEWPORT_CREATED_EVENT,
        IMAGE_UPLOADED_EVENT,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_pid_round_trips() {
        for s in known::ALL {
            let pid: Pid = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(pid.to_string(), *s);
        }
    }

    #[test]
    fn error_pid_of_a_step() {
        let pid = Pid::constant(known::IMAGE_VALIDATE);
        assert_eq!(pid.error_of().to_string(), known::VALIDATOR_ERROR);
    }

    #[test]
    fn bad_pids_are_rejected_with_a_reason() {
        for (bad, want) in [
            ("", "three parts"),
            ("c8fms03-c8bms06", "three parts"),
            ("c8fms03-c8bms06-e10-x", "three parts"),
            ("x8fms03-c8bms06-e10", "resource"),
            ("c8xyz03-c8bms06-e10", "resource"),
            ("c8fms-c8bms06-e10", "resource"),
            ("cfms03-c8bms06-e10", "resource"),
            ("c8fms03-c8bms06-10", "order"),
            ("c8fms03-c8bms06-eX", "order"),
            ("c8fms03-c8bms06-EE", "order"),
        ] {
            let err = bad.parse::<Pid>().unwrap_err().to_string();
            assert!(err.contains(want), "{bad:?} gave {err:?}, wanted {want:?}");
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let pid = Pid::constant(known::UID_REQUEST);
        let json = serde_json::to_string(&pid).unwrap();
        assert_eq!(json, "\"c8fms03-c8bms06-e25\"");
        assert_eq!(serde_json::from_str::<Pid>(&json).unwrap(), pid);
        assert!(serde_json::from_str::<Pid>("\"nope\"").is_err());
    }
}
