//! The seed's own example payloads (fixtures/seed/, copied from the seed with its `//`
//! comments and trailing commas removed) read into the model types and written back: the
//! output must be the input, but for the spellings the model documents (`part` → `Part`,
//! `description` → `Description`, port `80` → `"80"`).
//!
//! | fixture | seed section |
//! |---|---|
//! | static-data-response.json | 1.2 response |
//! | static-data-chart-store-response.json | 1.3 response |
//! | assign-image-uid-request.json, assign-image-uid-response.json | 2.1 |
//! | user-event-request.json | 2.2 request |
//! | base-kustomize-response.json | 5.3 response |
//! | upload-image-request.json | 6.1 request (its `image_data` shortened) |

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    base_template, EventType, FilterCriteria, ImageMetadata, UidRequest, UploadRequest,
    UserMetadata,
};
use crate::pid::Pid;

const STATIC_DATA_RESPONSE: &str = include_str!("../../fixtures/seed/static-data-response.json");
const STATIC_DATA_CHART_STORE_RESPONSE: &str =
    include_str!("../../fixtures/seed/static-data-chart-store-response.json");
const UID_REQUEST: &str = include_str!("../../fixtures/seed/assign-image-uid-request.json");
const UID_RESPONSE: &str = include_str!("../../fixtures/seed/assign-image-uid-response.json");
const USER_EVENT_REQUEST: &str = include_str!("../../fixtures/seed/user-event-request.json");
const BASE_KUSTOMIZE_RESPONSE: &str =
    include_str!("../../fixtures/seed/base-kustomize-response.json");
const UPLOAD_REQUEST: &str = include_str!("../../fixtures/seed/upload-image-request.json");

/// 1.2: the static data the Upload Board asks for.
#[derive(Debug, Serialize, Deserialize)]
struct StaticDataResponse {
    #[serde(rename = "PID")]
    pid: Pid,
    filter_criteria: FilterCriteria,
}

/// 1.3: the same criteria, flat beside the PID.
#[derive(Debug, Serialize, Deserialize)]
struct StaticDataChartStoreResponse {
    #[serde(rename = "PID")]
    pid: Pid,
    #[serde(flatten)]
    criteria: FilterCriteria,
}

/// 2.1: the answer to a UID request.
#[derive(Debug, Serialize, Deserialize)]
struct UidResponse {
    #[serde(rename = "PID")]
    pid: Pid,
    status: String,
    message: String,
    #[serde(rename = "imageUID")]
    image_uid: String,
}

/// 2.2: the `eventMetadata` of an event request.
#[derive(Debug, Serialize, Deserialize)]
struct EventRequestMetadata {
    #[serde(rename = "eventType")]
    event_type: EventType,
    timestamp: String,
}

/// 2.2: a user-event request.
#[derive(Debug, Serialize, Deserialize)]
struct UserEventRequest {
    #[serde(rename = "PID")]
    pid: Pid,
    #[serde(rename = "imageMetadata")]
    image_metadata: ImageMetadata,
    #[serde(rename = "userMetadata")]
    user_metadata: UserMetadata,
    #[serde(rename = "eventMetadata")]
    event_metadata: EventRequestMetadata,
}

/// 5.3: the base template as the chart store returns it.
#[derive(Debug, Serialize, Deserialize)]
struct BaseKustomizeResponse {
    #[serde(rename = "PID")]
    pid: Pid,
    #[serde(rename = "helmChart")]
    helm_chart: String,
    #[serde(rename = "helmChartData")]
    helm_chart_data: Vec<Value>,
}

/// Reads a fixture into `T` and writes it back as JSON.
fn round_trip<T: Serialize + DeserializeOwned>(fixture: &str) -> (T, Value) {
    let typed: T = serde_json::from_str(fixture).expect("the fixture reads into the type");
    let written = serde_json::to_value(&typed).expect("the type writes");
    (typed, written)
}

fn parse(fixture: &str) -> Value {
    serde_json::from_str(fixture).expect("the fixture is JSON")
}

/// The seed's alternative spellings in an `imageMetadata`, written the one way the model
/// writes them.
fn canonical_spellings(image_metadata: &mut Map<String, Value>) {
    for (from, to) in [("part", "Part"), ("description", "Description")] {
        if let Some(v) = image_metadata.remove(from) {
            image_metadata.insert(to.to_owned(), v);
        }
    }
    if let Some(Value::Number(n)) = image_metadata.get("port") {
        let text = n.to_string();
        image_metadata.insert("port".into(), Value::String(text));
    }
}

fn image_metadata_of(v: &mut Value) -> &mut Map<String, Value> {
    v.get_mut("imageMetadata")
        .and_then(Value::as_object_mut)
        .expect("an imageMetadata object")
}

#[test]
fn static_data_responses_round_trip() {
    let (typed, written) = round_trip::<StaticDataResponse>(STATIC_DATA_RESPONSE);
    assert_eq!(written, parse(STATIC_DATA_RESPONSE));
    assert_eq!(typed.pid.to_string(), "c8fms03-c8bms06-e10");
    assert_eq!(typed.filter_criteria.icao_code, "1947");
    assert_eq!(
        typed.filter_criteria,
        crate::bootstrap::static_data().criteria,
        "the bootstrap loads the seed's criteria"
    );

    let (flat, written) =
        round_trip::<StaticDataChartStoreResponse>(STATIC_DATA_CHART_STORE_RESPONSE);
    assert_eq!(written, parse(STATIC_DATA_CHART_STORE_RESPONSE));
    assert_eq!(flat.criteria, typed.filter_criteria);
}

#[test]
fn assign_image_uid_round_trips() {
    let (request, mut written) = round_trip::<UidRequest>(UID_REQUEST);
    assert_eq!(
        request.image_metadata.image_name,
        "Trolls World Tour (2020)"
    );
    assert_eq!(
        request.image_metadata.uid_summary(),
        "Trolls World Tour (2020), v0-0-01, Movie"
    );
    // The model always writes its three lists; the seed's UID request has none of them.
    let written_meta = image_metadata_of(&mut written);
    for list in ["envVars", "volumes", "imageLabels"] {
        assert_eq!(
            written_meta.remove(list),
            Some(Value::Array(Vec::new())),
            "{list}"
        );
    }
    assert_eq!(written, parse(UID_REQUEST));

    let (response, written) = round_trip::<UidResponse>(UID_RESPONSE);
    assert_eq!(written, parse(UID_RESPONSE));
    assert_eq!(response.image_uid.len(), 60);
    assert!(response
        .image_uid
        .bytes()
        .all(|b| b.is_ascii_alphanumeric()));
}

#[test]
fn user_event_request_round_trips() {
    let (typed, written) = round_trip::<UserEventRequest>(USER_EVENT_REQUEST);
    assert_eq!(written, parse(USER_EVENT_REQUEST));
    assert_eq!(
        typed.event_metadata.event_type,
        EventType::ImageUidRequested
    );
    assert_eq!(typed.image_metadata.part.as_deref(), Some("21117-1"));
    assert_eq!(typed.image_metadata.port_number(), Some(80));
    assert_eq!(typed.user_metadata.username.as_deref(), Some("jamesbond"));
}

#[test]
fn base_kustomize_response_is_the_models_template() {
    let (typed, written) = round_trip::<BaseKustomizeResponse>(BASE_KUSTOMIZE_RESPONSE);
    assert_eq!(written, parse(BASE_KUSTOMIZE_RESPONSE));
    assert_eq!(typed.helm_chart_data, base_template());
}

#[test]
fn upload_image_request_round_trips_with_one_spelling() {
    let (typed, written) = round_trip::<UploadRequest>(UPLOAD_REQUEST);
    let mut expected = parse(UPLOAD_REQUEST);
    canonical_spellings(image_metadata_of(&mut expected));
    assert_eq!(written, expected);

    let meta = &typed.image_metadata;
    assert_eq!(meta.part.as_deref(), Some("21117-1"));
    assert!(meta
        .description
        .as_deref()
        .is_some_and(|d| d.starts_with("The story")));
    assert_eq!(meta.port.as_deref(), Some("80"));
    let post = &typed.post_metadata;
    assert_eq!(post.post_data.post_author, Some(2));
    assert_eq!(post.post_data.category_name.as_deref(), Some("Music"));
    assert_eq!(post.meta("imageuid"), meta.image_uid.as_deref());
    assert_eq!(post.environment(), "Testing");
    assert_eq!(post.post_meta.len(), 8);
    let raw = parse(UPLOAD_REQUEST);
    assert_eq!(
        raw["imageMetadata"]["part"], "21117-1",
        "the input spells it `part`"
    );
    assert_eq!(written["imageMetadata"]["Part"], "21117-1");
    assert!(written["imageMetadata"].get("part").is_none());
}
