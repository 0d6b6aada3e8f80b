//! The IAM policies grant exactly the actions of `k8or::store::aws::actions`, each on exactly
//! the configured queues, tables and buckets.

use std::collections::{BTreeMap, BTreeSet};

use k8or::store::aws::actions;
use k8or::Settings;
use serde_json::Value;

use crate::{read, shipped_settings};

/// One policy statement, with `Action` and `Resource` as lists whether written as a string
/// or an array.
#[derive(Debug)]
struct Statement {
    sid: String,
    effect: String,
    actions: Vec<String>,
    resources: Vec<String>,
}

fn string_or_list(v: Option<&Value>, what: &str, sid: &str) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .unwrap_or_else(|| panic!("{sid}: {what} holds a non-string {i}"))
                    .to_owned()
            })
            .collect(),
        other => panic!("{sid}: {what} is {other:?}, not a string or a list"),
    }
}

fn policy(rel: &str) -> Vec<Statement> {
    let doc: Value = serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(
        doc["Version"], "2012-10-17",
        "{rel}: policy language version"
    );
    let statements = doc["Statement"]
        .as_array()
        .unwrap_or_else(|| panic!("{rel}: Statement is not a list"));
    assert!(!statements.is_empty(), "{rel}: no statements");
    statements
        .iter()
        .map(|s| {
            let sid = s["Sid"].as_str().unwrap_or("(no Sid)").to_owned();
            for negated in ["NotAction", "NotResource", "NotPrincipal"] {
                assert!(
                    s.get(negated).is_none(),
                    "{rel} {sid}: {negated} grants everything not listed"
                );
            }
            Statement {
                effect: s["Effect"].as_str().unwrap_or_default().to_owned(),
                actions: string_or_list(s.get("Action"), "Action", &sid),
                resources: string_or_list(s.get("Resource"), "Resource", &sid),
                sid,
            }
        })
        .collect()
}

fn granted(statements: &[Statement]) -> BTreeSet<String> {
    statements
        .iter()
        .flat_map(|s| s.actions.iter().cloned())
        .collect()
}

fn expected(set: BTreeSet<&'static str>) -> BTreeSet<String> {
    set.into_iter().map(str::to_owned).collect()
}

fn assert_exact(rel: &str, granted: &BTreeSet<String>, needed: &BTreeSet<String>) {
    let missing: Vec<_> = needed.difference(granted).collect();
    let extra: Vec<_> = granted.difference(needed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{rel}: missing {missing:?} (the adapters call them), extra {extra:?} (nothing calls them)"
    );
}

#[test]
fn the_runtime_policy_grants_exactly_what_the_running_nodes_call() {
    let rel = "deploy/iam/runtime-policy.json";
    assert_exact(rel, &granted(&policy(rel)), &expected(actions::runtime()));
}

#[test]
fn the_provision_policy_grants_exactly_every_call_the_adapters_make() {
    let rel = "deploy/iam/provision-policy.json";
    assert_exact(rel, &granted(&policy(rel)), &expected(actions::all()));
}

/// S3 actions on a bucket rather than on its objects (their resource is `arn:aws:s3:::b`).
const S3_BUCKET_ACTIONS: &[&str] = &["s3:ListBucket", "s3:CreateBucket"];

/// S3 actions on the temporary bucket alone: its expiry rule (`provision`).
const S3_TEMPORARY_BUCKET_ACTIONS: &[&str] = &[
    "s3:GetLifecycleConfiguration",
    "s3:PutLifecycleConfiguration",
];

/// Every ARN an action of this service may name, from the shipped settings. The region and
/// account are placeholders the operator fills in.
fn configured_arns(settings: &Settings, action: &str) -> BTreeSet<String> {
    let (service, _) = action.split_once(':').expect("service:Action");
    let buckets = [&settings.buckets.temporary, &settings.buckets.app_image];
    match service {
        "sqs" => settings
            .queue_specs()
            .iter()
            .map(|q| format!("arn:aws:sqs:REGION:ACCOUNT_ID:{}", q.name))
            .collect(),
        "dynamodb" => settings
            .tables
            .specs()
            .iter()
            .map(|t| format!("arn:aws:dynamodb:REGION:ACCOUNT_ID:table/{}", t.name))
            .collect(),
        "s3" if S3_TEMPORARY_BUCKET_ACTIONS.contains(&action) => {
            BTreeSet::from([format!("arn:aws:s3:::{}", settings.buckets.temporary)])
        }
        "s3" if S3_BUCKET_ACTIONS.contains(&action) => buckets
            .iter()
            .map(|b| format!("arn:aws:s3:::{b}"))
            .collect(),
        "s3" => buckets
            .iter()
            .map(|b| format!("arn:aws:s3:::{b}/*"))
            .collect(),
        other => panic!("{action}: no resources known for service {other}"),
    }
}

#[test]
fn every_action_is_granted_on_exactly_the_configured_resources_and_nothing_wider() {
    let settings = shipped_settings();
    for rel in [
        "deploy/iam/runtime-policy.json",
        "deploy/iam/provision-policy.json",
    ] {
        let mut by_action: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for s in policy(rel) {
            let sid = &s.sid;
            assert_eq!(s.effect, "Allow", "{rel} {sid}: only Allow statements");
            for action in &s.actions {
                assert!(
                    !action.contains('*') && !action.contains('?'),
                    "{rel} {sid}: wildcard action {action}"
                );
                by_action
                    .entry(action.clone())
                    .or_default()
                    .extend(s.resources.iter().cloned());
            }
            for resource in &s.resources {
                assert_ne!(resource, "*", "{rel} {sid}: Resource \"*\"");
                // The one `*` that cannot be narrowed: the objects of a bucket.
                let body = resource.strip_suffix("/*").unwrap_or(resource);
                assert!(
                    !body.contains('*') && !body.contains('?'),
                    "{rel} {sid}: wildcard in {resource}"
                );
            }
        }
        for (action, resources) in &by_action {
            assert_eq!(
                resources,
                &configured_arns(&settings, action),
                "{rel}: {action} must name exactly the configured resources of its kind"
            );
        }
    }
}
