//! The metadata rules a submission must pass before a job exists. Pure: no I/O, so the
//! intake checks them before it stores anything and the workers may rely on them after.
//!
//! Every rule is checked and every failure reported (a form shows all its errors at once),
//! each with the JSON path of the field it is about, e.g. `imageMetadata.envVars[1].key`.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{ImageMetadata, ImageVersion, KeyValue, PostMetadata, UploadRequest, UserMetadata};
use crate::pid::Pid;

/// Length of an image UID (seed 2.3: 60 alphanumeric characters).
pub const IMAGE_UID_LEN: usize = 60;

/// Upper bounds on what one submission may carry. They keep the job record and the
/// generated manifests small, and each is far above what the Upload Board sends.
pub mod bounds {
    pub const NAME: usize = 200;
    pub const CATEGORY: usize = 100;
    pub const SHORT_TEXT: usize = 100;
    pub const DESCRIPTION: usize = 10_000;
    pub const COMMAND: usize = 4_096;
    pub const PATH: usize = 1_024;
    pub const ENV_VARS: usize = 100;
    pub const ENV_NAME: usize = 255;
    pub const ENV_VALUE: usize = 32_768;
    pub const VOLUMES: usize = 50;
    pub const LABELS: usize = 64;
    pub const EMAIL: usize = 254;
    pub const POST_TITLE: usize = 200;
    pub const POST_CONTENT: usize = 65_535;
    pub const POST_META: usize = 50;
    pub const META_KEY: usize = 255;
    pub const META_VALUE: usize = 4_096;
    /// Bytes of the metadata as stored (JSON, images sent as data URLs taken out). The
    /// fields' own bounds add up to megabytes, and a job record (the request, plus
    /// kustomize's rendered manifests and YAML, which repeat its values) must stay under
    /// DynamoDB's 400 KB per item, as must the events that carry the image metadata.
    pub const STORED: usize = 64 * 1024;
}

/// One broken rule: which field, and why, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Collects errors under a path prefix.
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn fail(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    fn required(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.fail(field, "is required");
        } else {
            self.max_len(field, value, max);
        }
    }

    fn max_len(&mut self, field: &str, value: &str, max: usize) {
        let n = value.chars().count();
        if n > max {
            self.fail(field, format!("must be at most {max} characters (got {n})"));
        }
    }

    fn optional(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(v) = value {
            self.max_len(field, v, max);
        }
    }

    fn no_control(&mut self, field: &str, value: &str) {
        if value.chars().any(char::is_control) {
            self.fail(field, "must not contain control characters");
        }
    }
}

/// Whether `s` is an image UID: exactly 60 ASCII letters and digits.
pub fn is_image_uid(s: &str) -> bool {
    s.len() == IMAGE_UID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `s` is a valid environment variable name: a C identifier.
pub fn is_env_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why `p` is not an absolute, normal path (for volumes and the working directory).
fn absolute_path_problem(p: &str) -> Option<&'static str> {
    if !p.starts_with('/') {
        return Some("must be an absolute path (start with '/')");
    }
    if p.chars().any(char::is_control) {
        return Some("must not contain control characters");
    }
    if p.split('/').any(|seg| seg == "..") {
        return Some("must not contain '..' segments");
    }
    None
}

/// A Kubernetes name segment: at most 63 characters, alphanumeric at both ends, and
/// `-`, `_`, `.` inside.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS subdomain (RFC 1123): at most 253 characters, dot-separated lowercase labels of
/// alphanumerics and `-`, alphanumeric at both ends.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Why `key` is not a valid Kubernetes label key (`[prefix/]name`).
pub fn label_key_problem(key: &str) -> Option<&'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if prefix.is_some_and(|p| !is_dns_subdomain(p)) {
        return Some("prefix must be a lowercase DNS subdomain of at most 253 characters");
    }
    if !is_label_name(name) {
        return Some(
            "name must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        );
    }
    None
}

/// Whether `value` is a valid Kubernetes label value (empty, or a label name).
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_label_name(value)
}

/// Every rule of `imageMetadata` on its own, with field paths under `imageMetadata.`:
/// name, version and category required, everything else checked where present (what an
/// image UID request must pass; a submission must also pass `check_upload`).
pub fn check_image_metadata(m: &ImageMetadata) -> Vec<FieldError> {
    let mut c = Checker { errors: Vec::new() };
    check_image_into(&mut c, m);
    c.errors
}

fn check_image_into(c: &mut Checker, m: &ImageMetadata) {
    const P: &str = "imageMetadata";
    if let Some(uid) = &m.image_uid {
        if !is_image_uid(uid) {
            c.fail(
                format!("{P}.imageUID"),
                format!("must be {IMAGE_UID_LEN} letters and digits"),
            );
        }
    }
    c.required(&format!("{P}.imageName"), &m.image_name, bounds::NAME);
    c.no_control(&format!("{P}.imageName"), &m.image_name);
    if m.image_version.trim().is_empty() {
        c.fail(format!("{P}.imageVersion"), "is required");
    } else if ImageVersion::parse(&m.image_version).is_none() {
        c.fail(
            format!("{P}.imageVersion"),
            "must look like v0-0-01 (v, then three numbers separated by '-')",
        );
    }
    c.required(
        &format!("{P}.imageCategory"),
        &m.image_category,
        bounds::CATEGORY,
    );
    c.optional(&format!("{P}.icao"), m.icao.as_deref(), bounds::SHORT_TEXT);
    c.optional(&format!("{P}.tail"), m.tail.as_deref(), bounds::SHORT_TEXT);
    c.optional(&format!("{P}.Part"), m.part.as_deref(), bounds::SHORT_TEXT);
    c.optional(
        &format!("{P}.Description"),
        m.description.as_deref(),
        bounds::DESCRIPTION,
    );
    if let Some(port) = m.port.as_deref().filter(|p| !p.trim().is_empty()) {
        if m.port_number().is_none() {
            c.fail(
                format!("{P}.port"),
                format!("must be a whole number from 1 to 65535 (got {port:?})"),
            );
        }
    }
    check_env_vars(c, &m.env_vars);
    check_volumes(c, &m.volumes);
    check_labels(c, &m.image_labels);
    c.optional(
        &format!("{P}.commandOverride"),
        m.command_override.as_deref(),
        bounds::COMMAND,
    );
    c.optional(
        &format!("{P}.entrypointOverride"),
        m.entrypoint_override.as_deref(),
        bounds::COMMAND,
    );
    if let Some(dir) = m.working_dir.as_deref().filter(|d| !d.is_empty()) {
        let field = format!("{P}.workingDir");
        c.max_len(&field, dir, bounds::PATH);
        if let Some(problem) = absolute_path_problem(dir) {
            c.fail(field, problem);
        }
    }
}

fn check_env_vars(c: &mut Checker, vars: &[KeyValue]) {
    if vars.len() > bounds::ENV_VARS {
        c.fail(
            "imageMetadata.envVars",
            format!("must have at most {} entries", bounds::ENV_VARS),
        );
    }
    let mut seen = HashSet::new();
    for (i, kv) in vars.iter().enumerate() {
        let field = format!("imageMetadata.envVars[{i}].key");
        if kv.key.len() > bounds::ENV_NAME || !is_env_name(&kv.key) {
            c.fail(
                &field,
                "must be a variable name: letters, digits and '_', not starting with a digit",
            );
        } else if !seen.insert(kv.key.as_str()) {
            c.fail(&field, format!("{:?} is set twice", kv.key));
        }
        let value = format!("imageMetadata.envVars[{i}].value");
        c.max_len(&value, &kv.value, bounds::ENV_VALUE);
        if kv.value.contains('\0') {
            c.fail(value, "must not contain NUL characters");
        }
    }
}

fn check_volumes(c: &mut Checker, volumes: &[KeyValue]) {
    if volumes.len() > bounds::VOLUMES {
        c.fail(
            "imageMetadata.volumes",
            format!("must have at most {} entries", bounds::VOLUMES),
        );
    }
    let mut mounts = HashSet::new();
    for (i, kv) in volumes.iter().enumerate() {
        for (part, path) in [("key", &kv.key), ("value", &kv.value)] {
            let field = format!("imageMetadata.volumes[{i}].{part}");
            c.max_len(&field, path, bounds::PATH);
            if let Some(problem) = absolute_path_problem(path) {
                c.fail(field, problem);
            }
        }
        if !mounts.insert(kv.value.as_str()) {
            c.fail(
                format!("imageMetadata.volumes[{i}].value"),
                format!("{:?} is mounted twice", kv.value),
            );
        }
    }
}

fn check_labels(c: &mut Checker, labels: &[KeyValue]) {
    if labels.len() > bounds::LABELS {
        c.fail(
            "imageMetadata.imageLabels",
            format!("must have at most {} entries", bounds::LABELS),
        );
    }
    let mut seen = HashSet::new();
    for (i, kv) in labels.iter().enumerate() {
        let field = format!("imageMetadata.imageLabels[{i}].key");
        if let Some(problem) = label_key_problem(&kv.key) {
            c.fail(&field, format!("is not a Kubernetes label key: {problem}"));
        } else if !seen.insert(kv.key.as_str()) {
            c.fail(&field, format!("{:?} is set twice", kv.key));
        }
        if !is_label_value(&kv.value) {
            c.fail(
                format!("imageMetadata.imageLabels[{i}].value"),
                "is not a Kubernetes label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            );
        }
    }
}

fn check_user(c: &mut Checker, u: &UserMetadata) {
    c.optional(
        "userMetadata.username",
        u.username.as_deref(),
        bounds::SHORT_TEXT,
    );
    c.optional(
        "userMetadata.firstName",
        u.first_name.as_deref(),
        bounds::SHORT_TEXT,
    );
    c.optional(
        "userMetadata.lastName",
        u.last_name.as_deref(),
        bounds::SHORT_TEXT,
    );
    if let Some(email) = u.email.as_deref().filter(|e| !e.is_empty()) {
        c.max_len("userMetadata.email", email, bounds::EMAIL);
        let well_formed = email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
        if !well_formed
            || email
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control())
        {
            c.fail("userMetadata.email", "must be an email address");
        }
    }
}

fn check_post(c: &mut Checker, p: &PostMetadata) {
    if let Some(pid) = p.pid.as_deref() {
        if let Err(e) = pid.parse::<Pid>() {
            c.fail("postMetadata.PID", e.to_string());
        }
    }
    let d = &p.post_data;
    c.optional(
        "postMetadata.postData.post_title",
        d.post_title.as_deref(),
        bounds::POST_TITLE,
    );
    c.optional(
        "postMetadata.postData.post_content",
        d.post_content.as_deref(),
        bounds::POST_CONTENT,
    );
    c.optional(
        "postMetadata.postData.post_excerpt",
        d.post_excerpt.as_deref(),
        bounds::POST_CONTENT,
    );
    c.optional(
        "postMetadata.postData.category_name",
        d.category_name.as_deref(),
        bounds::CATEGORY,
    );
    c.optional(
        "postMetadata.environment",
        p.environment.as_deref(),
        bounds::SHORT_TEXT,
    );
    if p.post_meta.len() > bounds::POST_META {
        c.fail(
            "postMetadata.post_meta",
            format!("must have at most {} entries", bounds::POST_META),
        );
    }
    for (i, m) in p.post_meta.iter().enumerate() {
        c.required(
            &format!("postMetadata.post_meta[{i}].meta_key"),
            &m.meta_key,
            bounds::META_KEY,
        );
        c.max_len(
            &format!("postMetadata.post_meta[{i}].meta_value"),
            &m.meta_value,
            bounds::META_VALUE,
        );
    }
}

/// The size rule of what is stored: `value` as JSON must fit in [`bounds::STORED`] bytes.
/// `field` names it in the error (the request as a whole, or `imageMetadata`).
pub fn check_stored_size<T: Serialize>(field: &str, value: &T) -> Option<FieldError> {
    let size = serde_json::to_vec(value).map_or(usize::MAX, |json| json.len());
    (size > bounds::STORED).then(|| {
        FieldError::new(
            field,
            format!(
                "is {size} bytes as JSON (images sent as data URLs not counted); at most {} are kept with a job",
                bounds::STORED
            ),
        )
    })
}

/// Every rule of a submission: its PID (if sent), image, user and post metadata, and the
/// keys the pipeline's tables need. The image bytes themselves are the validate stage's
/// business.
pub fn check_upload(req: &UploadRequest) -> Vec<FieldError> {
    let mut c = Checker { errors: Vec::new() };
    if let Some(pid) = req.pid.as_deref() {
        if let Err(e) = pid.parse::<Pid>() {
            c.fail("PID", e.to_string());
        }
    }
    check_image_into(&mut c, &req.image_metadata);
    // The app-image-metadata table is keyed by part number and tail: a job without them
    // could never be persisted (a UID request, made before the form is done, needs neither).
    for (field, value) in [
        ("imageMetadata.Part", &req.image_metadata.part),
        ("imageMetadata.tail", &req.image_metadata.tail),
    ] {
        if value.as_deref().is_none_or(|v| v.trim().is_empty()) {
            c.fail(field, "is required");
        }
    }
    check_user(&mut c, &req.user_metadata);
    check_post(&mut c, &req.post_metadata);
    c.errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_request() -> UploadRequest {
        serde_json::from_value(serde_json::json!({
            "PID": "c8fms03-c8bms06-e140",
            "userMetadata": {"username": "jamesbond"},
            "imageMetadata": {
                "imageUID": "Het5SfSA6NJdRVdhTUhwev9A528QH4gwdJQMSA857PStLeyRnpGffDpDMJq5",
                "imageName": "Trolls World Tour (2020) new",
                "imageVersion": "v0-0-01",
                "imageCategory": "Movie",
                "description": "The story is set in a colorful world.",
                "icao": "British", "tail": "G-AAAA", "part": "21117-1", "port": 80,
                "envVars": [{"key": "VAR1", "value": "value1"}, {"key": "VAR2", "value": "value2"}],
                "volumes": [{"key": "/host/path", "value": "/container/path"}],
                "imageLabels": [{"key": "label1", "value": "value1"}],
                "commandOverride": "/app/run.sh",
                "entrypointOverride": "/app/entrypoint.sh",
                "workingDir": "/app",
                "image": "data:image/png;base64,iVBORw0KGgo"
            },
            "postMetadata": {
                "PID": "c8fms03-c8bms06-e140",
                "postData": {"post_title": "Trolls World Tour (2020) new", "post_author": 2},
                "post_meta": [{"meta_key": "version", "meta_value": "v0-0-01"},
                              {"meta_key": "environment", "meta_value": "Testing"}]
            }
        }))
        .unwrap()
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn the_seed_payload_passes() {
        assert_eq!(check_upload(&seed_request()), vec![]);
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let mut req = seed_request();
        let m = &mut req.image_metadata;
        m.image_uid = Some("short".into());
        m.image_name = " ".into();
        m.image_version = "1.0".into();
        m.image_category = String::new();
        m.port = Some("70000".into());
        m.env_vars.push(KeyValue::new("1BAD", "x"));
        m.env_vars.push(KeyValue::new("VAR1", "again"));
        m.volumes.push(KeyValue::new("relative", "/data"));
        m.volumes.push(KeyValue::new("/a", "/x/../etc"));
        m.image_labels.push(KeyValue::new("Bad_Prefix/x", "ok"));
        m.image_labels.push(KeyValue::new("ok", "-bad-"));
        m.working_dir = Some("app".into());
        req.user_metadata.email = Some("not an email".into());
        req.pid = Some("nope".into());
        let errors = check_upload(&req);
        assert_eq!(
            fields(&errors),
            [
                "PID",
                "imageMetadata.imageUID",
                "imageMetadata.imageName",
                "imageMetadata.imageVersion",
                "imageMetadata.imageCategory",
                "imageMetadata.port",
                "imageMetadata.envVars[2].key",
                "imageMetadata.envVars[3].key",
                "imageMetadata.volumes[1].key",
                "imageMetadata.volumes[2].value",
                "imageMetadata.imageLabels[1].key",
                "imageMetadata.imageLabels[2].value",
                "imageMetadata.workingDir",
                "userMetadata.email",
            ]
        );
        assert!(errors[6].message.contains("variable name"));
        assert!(errors[7].message.contains("twice"));
    }

    #[test]
    fn a_submission_needs_the_table_keys_a_uid_request_does_not() {
        let mut req = seed_request();
        req.image_metadata.part = None;
        req.image_metadata.tail = Some(" ".into());
        assert_eq!(
            fields(&check_upload(&req)),
            ["imageMetadata.Part", "imageMetadata.tail"]
        );
        assert_eq!(check_image_metadata(&req.image_metadata), vec![]);
    }

    #[test]
    fn ports_must_be_in_range() {
        for (port, ok) in [
            ("1", true),
            ("65535", true),
            ("0", false),
            ("65536", false),
            ("-1", false),
            ("eighty", false),
            ("", true),
        ] {
            let mut m = seed_request().image_metadata;
            m.port = Some(port.into());
            assert_eq!(check_image_metadata(&m).is_empty(), ok, "port {port:?}");
        }
    }

    #[test]
    fn env_names_are_c_identifiers() {
        for good in ["A", "_", "PATH", "my_var2", "_X1"] {
            assert!(is_env_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "É", "A=B"] {
            assert!(!is_env_name(bad), "{bad}");
        }
    }

    #[test]
    fn kubernetes_label_syntax() {
        for good in [
            "app",
            "app.kubernetes.io/name",
            "k8or.com/image-uid",
            "a_b.c-d",
            "A1",
        ] {
            assert_eq!(label_key_problem(good), None, "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "",
            "-a",
            "a-",
            "Upper.Case/x",
            "x/",
            "/x",
            long.as_str(),
            "a b",
        ] {
            assert!(label_key_problem(bad).is_some(), "{bad:?}");
        }
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3-x"));
        assert!(!is_label_value(&"v".repeat(64)));
        assert!(!is_label_value("a/b"));
    }

    #[test]
    fn lengths_are_bounded() {
        let mut m = seed_request().image_metadata;
        m.image_name = "n".repeat(bounds::NAME + 1);
        m.description = Some("d".repeat(bounds::DESCRIPTION + 1));
        m.env_vars = (0..=bounds::ENV_VARS)
            .map(|i| KeyValue::new(format!("V{i}"), "x"))
            .collect();
        let errors = check_image_metadata(&m);
        assert_eq!(
            fields(&errors),
            [
                "imageMetadata.imageName",
                "imageMetadata.Description",
                "imageMetadata.envVars"
            ]
        );
    }

    #[test]
    fn image_uids_are_sixty_alphanumerics() {
        assert!(is_image_uid(
            "Het5SfSA6NJdRVdhTUhwev9A528QH4gwdJQMSA857PStLeyRnpGffDpDMJq5"
        ));
        assert!(!is_image_uid(&"a".repeat(59)));
        assert!(!is_image_uid(&format!("{}-", "a".repeat(59))));
    }
}
