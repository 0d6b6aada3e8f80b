//! The operator's guide lists every setting with its default and variable, and every error
//! code the API returns.

use std::collections::{BTreeMap, BTreeSet};

use k8or::Stage;
use serde_json::Value;

use crate::environment::settings_keys;
use crate::{read, repo};

/// The rows of the guide's settings table: key → (env column, default column).
fn documented_keys(doc: &str) -> BTreeMap<String, (String, String)> {
    let mut rows = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [key, env, default, ..] = cells.as_slice() else {
            continue;
        };
        let (Some(key), Some(env)) = (
            key.strip_prefix('`').and_then(|k| k.strip_suffix('`')),
            env.strip_prefix('`').and_then(|e| e.strip_suffix('`')),
        ) else {
            continue;
        };
        if env.starts_with("K8OR_") {
            rows.insert(key.to_owned(), (env.to_owned(), (*default).to_owned()));
        }
    }
    rows
}

/// The default as the guide writes it.
fn rendered(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(format!("`{s}`")),
        other => Some(format!("`{other}`")),
    }
}

#[test]
fn the_guide_lists_every_setting_with_its_default_and_variable() {
    let doc = read("docs/operations.md");
    let keys = settings_keys();
    let rows = documented_keys(&doc);
    let mut covered = BTreeSet::new();
    for (row, (env, default)) in &rows {
        let expected_env = format!("K8OR_{}", row.to_ascii_uppercase().replace('.', "__"));
        assert_eq!(env, &expected_env, "the variable of `{row}`");
        let instances: Vec<(String, String)> = if row.contains("<stage>") {
            Stage::ALL
                .iter()
                .map(|s| {
                    (
                        row.replace("<stage>", s.as_str()),
                        default.replace("<stage>", s.as_str()),
                    )
                })
                .collect()
        } else {
            vec![(row.clone(), default.clone())]
        };
        for (key, default) in instances {
            if key == "config" {
                covered.insert(key);
                continue;
            }
            let value = keys
                .get(&key)
                .unwrap_or_else(|| panic!("the guide lists `{key}`, which is no setting"));
            match rendered(value) {
                Some(r) => assert!(
                    default.contains(&r),
                    "`{key}`: default {r} not in {default:?}"
                ),
                None => assert!(
                    default.contains("unset"),
                    "`{key}`: default is unset, doc says {default:?}"
                ),
            }
            covered.insert(key);
        }
    }
    let missing: Vec<_> = keys.keys().filter(|k| !covered.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md's settings table lacks {missing:?}"
    );
    assert!(
        covered.contains("config"),
        "the table lists K8OR_CONFIG too"
    );
}

/// The error codes the API can answer with, read from its source: the `code()` match and
/// every `BadRequest { code: "…" }`.
fn api_error_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut dirs = vec![repo().join("api/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("api/src") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("a source file");
            let mut scan = |text: &str, marker: &str| {
                for (at, _) in text.match_indices(marker) {
                    let rest = &text[at + marker.len()..];
                    if let Some(code) = rest.split('"').next() {
                        if !code.is_empty()
                            && code.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                        {
                            codes.insert(code.to_owned());
                        }
                    }
                }
            };
            scan(&source, "code: \"");
            if let Some(start) = source.find("pub fn code(&self)") {
                let body = &source[start..];
                let body = &body[..body.find("\n    }\n").unwrap_or(body.len())];
                scan(body, "=> \"");
            }
        }
    }
    assert!(
        codes.contains("validation-failed") && codes.contains("internal"),
        "{codes:?}"
    );
    codes
}

#[test]
fn the_guide_explains_every_error_code_the_api_returns() {
    let doc = read("docs/operations.md");
    let table: Vec<&str> = doc.lines().filter(|l| l.starts_with('|')).collect();
    for code in api_error_codes() {
        assert!(
            table.iter().any(|row| row.contains(&format!("`{code}`"))),
            "docs/operations.md's troubleshooting table lacks `{code}`"
        );
    }
}
