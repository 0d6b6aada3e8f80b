//! The environment template sets only real settings, and loads as an AWS node's settings.

use std::collections::BTreeMap;

use k8or::Settings;
use serde_json::Value;

use crate::read;

/// `(NAME, value, active)` for each `NAME=value` line of k8or.env.example, commented-out
/// examples (`# NAME=value`) included as inactive.
pub(crate) fn env_example() -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for line in read("deploy/k8or.env.example").lines() {
        let (text, active) = match line.strip_prefix('#') {
            Some(rest) => (rest.trim(), false),
            None => (line.trim(), true),
        };
        let Some((name, value)) = text.split_once('=') else {
            assert!(!active || text.is_empty(), "not NAME=value: {line}");
            continue;
        };
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if is_name {
            out.push((name.to_owned(), value.to_owned(), active));
        } else {
            assert!(!active, "systemd ignores a variable named {name:?}: {line}");
        }
    }
    out
}

/// Every settings key as a dotted path: the serialized defaults, flattened, plus the two
/// secrets (never serialized).
pub(crate) fn settings_keys() -> BTreeMap<String, Value> {
    fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_owned(), leaf.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    let defaults = serde_json::to_value(Settings::default()).expect("Settings serializes");
    flatten("", &defaults, &mut out);
    assert!(out.contains_key("stages.validate.concurrency"), "{out:?}");
    for secret in ["token_secret", "mysql_url"] {
        assert!(
            !out.contains_key(secret),
            "{secret} is serialized: update this test"
        );
        out.insert(secret.to_owned(), Value::Null);
    }
    out
}

/// The settings key a `K8OR_` variable sets (`K8OR_STAGES__VALIDATE__CONCURRENCY` →
/// `stages.validate.concurrency`).
fn key_of(var: &str) -> Option<String> {
    var.strip_prefix("K8OR_")
        .map(|k| k.to_ascii_lowercase().replace("__", "."))
}

/// A variable's value as figment reads it, written as TOML.
fn toml_value(value: &str) -> String {
    let scalar = |v: &str| {
        if v == "true" || v == "false" || v.parse::<i64>().is_ok() || v.parse::<f64>().is_ok() {
            v.to_owned()
        } else {
            serde_json::to_string(v).expect("a string")
        }
    };
    match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(items) => format!(
            "[{}]",
            items
                .split(',')
                .map(str::trim)
                .filter(|i| !i.is_empty())
                .map(|i| scalar(i.trim_matches('"')))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => scalar(value),
    }
}

#[test]
fn the_environment_template_sets_only_real_settings_and_loads_as_an_aws_node() {
    let keys = settings_keys();
    let vars = env_example();
    let mut toml = String::new();
    for (name, value, active) in &vars {
        let Some(key) = key_of(name) else {
            assert_eq!(name, "RUST_LOG", "an unexpected variable {name}");
            continue;
        };
        // K8OR_CONFIG names the file; the environment loader ignores it as a key.
        if key == "config" {
            continue;
        }
        assert!(keys.contains_key(&key), "{name} sets no setting ({key})");
        if *active {
            toml.push_str(&format!("{key} = {}\n", toml_value(value)));
        }
    }
    for needed in [
        "K8OR_BACKEND",
        "K8OR_AWS_REGION",
        "K8OR_TOKEN_SECRET",
        "K8OR_MYSQL_URL",
        "K8OR_LISTEN",
        "K8OR_METRICS_LISTEN",
        "K8OR_LOG_FORMAT",
        "K8OR_CONFIG",
    ] {
        assert!(
            vars.iter().any(|(n, _, active)| n == needed && *active),
            "the AWS template must set {needed}"
        );
    }
    let s = Settings::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(s.backend, k8or::config::BackendKind::Aws);
    assert_eq!(
        s.aws_endpoint_url, None,
        "real AWS needs no endpoint override"
    );
    assert_eq!(s.log_format, k8or::config::LogFormat::Json);
    assert!(s.token_secret.is_some() && s.mysql_url.is_some());
}
