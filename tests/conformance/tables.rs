//! The Tables suite: DynamoDB semantics every adapter keeps.

use std::sync::Arc;

use k8or::store::tables::{
    to_json, Condition, Item, JsonItem, Key, QueryOptions, TableError, TableSpec, Tables,
    TablesExt, TransactPut, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES,
};
use serde_json::{json, Value};

use super::unique;

/// Runs the Tables suite against `$factory`, an async expression giving `Arc<dyn Tables>`.
#[macro_export]
macro_rules! tables_conformance {
    ($factory:expr) => {
        $crate::__conformance_tests!(
            $factory,
            tables,
            [
                tables_put_get_round_trip,
                tables_ensure_table_is_idempotent,
                tables_put_if_absent_gives_already_exists,
                tables_conditions_eq_ne_lt_or,
                tables_query_by_partition_in_sort_order,
                tables_query_sort_prefix,
                tables_query_sort_prefix_beyond_ascii,
                tables_query_pages_with_a_cursor,
                tables_query_refuses_a_cursor_it_did_not_give,
                tables_update_merges_and_checks_conditions,
                tables_delete_is_idempotent,
                tables_transact_put_is_all_or_nothing,
                tables_missing_table_is_not_found,
                tables_key_attributes_must_be_strings,
                tables_keys_over_dynamodb_limits_are_refused,
                tables_json_items_are_the_same_items,
                tables_json_put_refuses_what_is_not_an_item,
            ]
        );
    };
}

fn item(v: Value) -> Item {
    match v {
        Value::Object(map) => map,
        other => panic!("an item is an object, not {other}"),
    }
}

async fn fresh(t: &dyn Tables, pk: &str, sk: Option<&str>) -> String {
    let name = unique("t");
    assert!(t
        .ensure_table(&TableSpec::new(&name, pk, sk))
        .await
        .expect("ensure table"));
    name
}

/// Asserts the error is a failed condition (not "already exists").
fn condition_failed<T: std::fmt::Debug>(r: Result<T, TableError>) {
    assert!(matches!(r, Err(TableError::ConditionFailed)), "{r:?}");
}

pub async fn tables_put_get_round_trip(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "id", None).await;
    let stored = item(json!({
        "id": "a",
        "n": 42,
        "f": 1.5,
        "flag": true,
        "none": null,
        "list": [1, "two", {"three": 3}],
        "map": {"nested": {"deep": ["x"]}},
        "createdTimestampUTC": "2025-02-18 08:49:02"
    }));
    t.put(&name, stored.clone(), None).await.expect("put");
    assert_eq!(
        t.get(&name, &Key::partition("a")).await.expect("get"),
        Some(stored)
    );
    assert_eq!(t.get(&name, &Key::partition("b")).await.expect("get"), None);
    // A put replaces the whole item; nothing of the old one stays.
    let replaced = item(json!({"id": "a", "other": "x"}));
    t.put(&name, replaced.clone(), None).await.expect("replace");
    assert_eq!(
        t.get(&name, &Key::partition("a")).await.expect("get"),
        Some(replaced)
    );

    let sorted = fresh(&*t, "username", Some("eventKey")).await;
    let ev = item(json!({"username": "jamesbond", "eventKey": "image-uid-requested#u1", "n": 1}));
    t.put(&sorted, ev.clone(), None).await.expect("put");
    let key = Key::with_sort("jamesbond", "image-uid-requested#u1");
    assert_eq!(t.get(&sorted, &key).await.expect("get"), Some(ev));
    let other = Key::with_sort("jamesbond", "image-uid-requested#u2");
    assert_eq!(t.get(&sorted, &other).await.expect("get"), None);
}

pub async fn tables_ensure_table_is_idempotent(t: Arc<dyn Tables>) {
    let name = unique("t");
    let spec = TableSpec::new(&name, "id", Some("sk"));
    assert!(t.ensure_table(&spec).await.expect("create"));
    assert!(!t.ensure_table(&spec).await.expect("again"));
}

pub async fn tables_put_if_absent_gives_already_exists(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "id", None).await;
    let first = item(json!({"id": "a", "v": 1}));
    t.put(&name, first.clone(), Some(Condition::NotExists))
        .await
        .expect("first put");
    let r = t
        .put(
            &name,
            item(json!({"id": "a", "v": 2})),
            Some(Condition::NotExists),
        )
        .await;
    assert!(matches!(r, Err(TableError::AlreadyExists)), "{r:?}");
    assert!(!t
        .put_once(&name, &json!({"id": "a", "v": 3}))
        .await
        .expect("put_once"));
    assert!(t
        .put_once(&name, &json!({"id": "b"}))
        .await
        .expect("put_once"));
    assert_eq!(
        t.get(&name, &Key::partition("a")).await.expect("get"),
        Some(first),
        "a refused put changes nothing"
    );
}

pub async fn tables_conditions_eq_ne_lt_or(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "id", None).await;
    let key = Key::partition("job");
    let at = |rev: i64, status: &str| item(json!({"id": "job", "revision": rev, "status": status}));
    t.put(&name, at(4, "queued"), None).await.expect("put");

    condition_failed(
        t.put(&name, at(5, "queued"), Some(Condition::eq("revision", 3)))
            .await,
    );
    t.put(&name, at(5, "queued"), Some(Condition::eq("revision", 4)))
        .await
        .expect("eq holds");

    condition_failed(
        t.put(&name, at(6, "x"), Some(Condition::ne("status", "queued")))
            .await,
    );
    t.put(
        &name,
        at(6, "validating"),
        Some(Condition::ne("missing", "anything")),
    )
    .await
    .expect("ne holds on a missing attribute");

    // 6 < 10 holds for numbers, though "6" < "10" fails for text.
    t.put(
        &name,
        at(7, "validating"),
        Some(Condition::lt("revision", 10)),
    )
    .await
    .expect("lt compares numbers");
    condition_failed(
        t.put(&name, at(8, "x"), Some(Condition::lt("revision", 7)))
            .await,
    );
    condition_failed(
        t.put(&name, at(8, "x"), Some(Condition::lt("missing", 100)))
            .await,
    );

    let fresh_or = Condition::Or(vec![
        Condition::NotExists,
        Condition::eq("status", "queued"),
    ]);
    condition_failed(t.put(&name, at(8, "x"), Some(fresh_or)).await);
    let either = Condition::Or(vec![
        Condition::NotExists,
        Condition::eq("status", "validating"),
    ]);
    t.put(&name, at(8, "persisting"), Some(either))
        .await
        .expect("or holds");
    let both = Condition::And(vec![
        Condition::Exists,
        Condition::eq("revision", 8),
        Condition::eq("status", "persisting"),
    ]);
    t.put(&name, at(9, "done"), Some(both))
        .await
        .expect("and holds");
    assert_eq!(t.get(&name, &key).await.expect("get"), Some(at(9, "done")));

    // On a missing item: Eq fails as a condition (not as "already exists"), Exists fails.
    condition_failed(
        t.put(
            &name,
            item(json!({"id": "new"})),
            Some(Condition::eq("revision", 1)),
        )
        .await,
    );
    condition_failed(
        t.put(&name, item(json!({"id": "new"})), Some(Condition::Exists))
            .await,
    );
    assert_eq!(
        t.get(&name, &Key::partition("new")).await.expect("get"),
        None
    );
}

/// Fills one table with two partitions; returns its name.
async fn events(t: &dyn Tables) -> String {
    let name = fresh(t, "username", Some("eventKey")).await;
    // Written out of order, so the order of a query is the store's doing.
    for (user, key) in [
        ("u1", "b#2"),
        ("u1", "a#2"),
        ("u2", "a#9"),
        ("u1", "b#1"),
        ("u1", "a#3"),
        ("u1", "a#1"),
        ("u1", "c"),
    ] {
        t.put(
            &name,
            item(json!({"username": user, "eventKey": key})),
            None,
        )
        .await
        .expect("put");
    }
    name
}

fn sort_keys(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["eventKey"].as_str().expect("a sort key").to_owned())
        .collect()
}

pub async fn tables_query_by_partition_in_sort_order(t: Arc<dyn Tables>) {
    let name = events(&*t).await;
    let all = t
        .query(&name, "u1", &QueryOptions::default())
        .await
        .expect("query");
    assert_eq!(
        sort_keys(&all.items),
        ["a#1", "a#2", "a#3", "b#1", "b#2", "c"]
    );
    assert_eq!(all.next, None);
    assert!(all.items.iter().all(|i| i["username"] == "u1"));
    let desc = QueryOptions {
        descending: true,
        ..QueryOptions::default()
    };
    let back = t.query(&name, "u1", &desc).await.expect("query");
    assert_eq!(
        sort_keys(&back.items),
        ["c", "b#2", "b#1", "a#3", "a#2", "a#1"]
    );
    let none = t
        .query(&name, "nobody", &QueryOptions::default())
        .await
        .expect("query");
    assert!(none.items.is_empty());
    assert_eq!(none.next, None);
}

pub async fn tables_query_sort_prefix(t: Arc<dyn Tables>) {
    let name = events(&*t).await;
    let prefix = |p: &str, descending| QueryOptions {
        sort_prefix: Some(p.to_owned()),
        descending,
        ..QueryOptions::default()
    };
    let a = t
        .query(&name, "u1", &prefix("a#", false))
        .await
        .expect("query");
    assert_eq!(sort_keys(&a.items), ["a#1", "a#2", "a#3"]);
    let b = t
        .query(&name, "u1", &prefix("b#", true))
        .await
        .expect("query");
    assert_eq!(sort_keys(&b.items), ["b#2", "b#1"]);
    let z = t
        .query(&name, "u1", &prefix("z", false))
        .await
        .expect("query");
    assert!(z.items.is_empty());
}

/// A prefix is a prefix of characters, whatever they are: beyond ASCII, and ending in the
/// last code point there is (where "the next key after every match" has to carry over).
pub async fn tables_query_sort_prefix_beyond_ascii(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "username", Some("eventKey")).await;
    let top = char::MAX;
    let keys = [
        "a".to_owned(),
        format!("a{top}"),
        format!("a{top}z"),
        format!("a{top}{top}"),
        "b".to_owned(),
        "é".to_owned(),
        "é#1".to_owned(),
        "ê".to_owned(),
        "\u{d7ff}x".to_owned(),
        "\u{e000}".to_owned(),
    ];
    for key in &keys {
        t.put(
            &name,
            item(json!({"username": "u1", "eventKey": key})),
            None,
        )
        .await
        .expect("put");
    }
    for (prefix, expected) in [
        (
            format!("a{top}"),
            vec![
                format!("a{top}"),
                format!("a{top}z"),
                format!("a{top}{top}"),
            ],
        ),
        (format!("a{top}{top}"), vec![format!("a{top}{top}")]),
        ("é".to_owned(), vec!["é".to_owned(), "é#1".to_owned()]),
        ("\u{d7ff}".to_owned(), vec!["\u{d7ff}x".to_owned()]),
        ("a".to_owned(), keys[..4].to_vec()),
    ] {
        let options = QueryOptions {
            sort_prefix: Some(prefix.clone()),
            ..QueryOptions::default()
        };
        let page = t.query(&name, "u1", &options).await.expect("query");
        assert_eq!(sort_keys(&page.items), expected, "prefix {prefix:?}");
    }
}

/// Pages of at most `limit` items, chained by the cursor, give every item once in order.
pub async fn tables_query_pages_with_a_cursor(t: Arc<dyn Tables>) {
    let name = events(&*t).await;
    for (descending, prefix, expected) in [
        (false, None, vec!["a#1", "a#2", "a#3", "b#1", "b#2", "c"]),
        (true, None, vec!["c", "b#2", "b#1", "a#3", "a#2", "a#1"]),
        (true, Some("a#"), vec!["a#3", "a#2", "a#1"]),
    ] {
        let mut options = QueryOptions {
            limit: 2,
            descending,
            sort_prefix: prefix.map(str::to_owned),
            cursor: None,
        };
        let mut got = Vec::new();
        let mut pages = 0;
        loop {
            let page = t.query(&name, "u1", &options).await.expect("query");
            assert!(page.items.len() <= 2, "a page holds at most `limit` items");
            pages += 1;
            assert!(pages <= 10, "the cursor must advance");
            got.extend(sort_keys(&page.items));
            match page.next {
                Some(cursor) => options.cursor = Some(cursor),
                None => break,
            }
        }
        assert_eq!(got, expected, "descending {descending}, prefix {prefix:?}");
        assert!(pages >= expected.len().div_ceil(2));
    }
}

/// A cursor the store did not hand out is the caller's mistake, typed as such (the API
/// answers 400 for it and 500 for the store's own failures).
pub async fn tables_query_refuses_a_cursor_it_did_not_give(t: Arc<dyn Tables>) {
    let name = events(&*t).await;
    let options = QueryOptions {
        limit: 2,
        cursor: Some("not a cursor!".to_owned()),
        ..QueryOptions::default()
    };
    let refused = t.query(&name, "u1", &options).await;
    assert!(
        matches!(refused, Err(TableError::InvalidCursor(_))),
        "{refused:?}"
    );
}

pub async fn tables_update_merges_and_checks_conditions(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "jobId", None).await;
    let key = Key::partition("j1");
    let created = t
        .update(
            &name,
            &key,
            item(json!({"status": "queued", "revision": 1})),
            Some(Condition::NotExists),
        )
        .await
        .expect("update creates");
    assert_eq!(
        created,
        item(json!({"jobId": "j1", "status": "queued", "revision": 1}))
    );
    let updated = t
        .update(
            &name,
            &key,
            item(json!({"status": "validating", "revision": 2, "stage": "validate"})),
            Some(Condition::eq("revision", 1)),
        )
        .await
        .expect("update");
    assert_eq!(
        updated,
        item(json!({"jobId": "j1", "status": "validating", "revision": 2, "stage": "validate"}))
    );
    condition_failed(
        t.update(
            &name,
            &key,
            item(json!({"status": "lost"})),
            Some(Condition::eq("revision", 1)),
        )
        .await,
    );
    let again = t
        .update(
            &name,
            &key,
            item(json!({"status": "x"})),
            Some(Condition::NotExists),
        )
        .await;
    assert!(matches!(again, Err(TableError::AlreadyExists)), "{again:?}");
    let changes_key = t
        .update(&name, &key, item(json!({"jobId": "j2"})), None)
        .await;
    assert!(
        matches!(changes_key, Err(TableError::InvalidItem(_))),
        "{changes_key:?}"
    );
    assert_eq!(t.get(&name, &key).await.expect("get"), Some(updated));
}

pub async fn tables_delete_is_idempotent(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "id", Some("sk")).await;
    t.put(&name, item(json!({"id": "a", "sk": "1"})), None)
        .await
        .expect("put");
    t.put(&name, item(json!({"id": "a", "sk": "2"})), None)
        .await
        .expect("put");
    t.delete(&name, &Key::with_sort("a", "1"))
        .await
        .expect("delete");
    assert_eq!(
        t.get(&name, &Key::with_sort("a", "1")).await.expect("get"),
        None
    );
    assert!(t
        .get(&name, &Key::with_sort("a", "2"))
        .await
        .expect("get")
        .is_some());
    t.delete(&name, &Key::with_sort("a", "1"))
        .await
        .expect("delete again");
}

pub async fn tables_transact_put_is_all_or_nothing(t: Arc<dyn Tables>) {
    let jobs = fresh(&*t, "jobId", None).await;
    let by_user = fresh(&*t, "username", Some("jobId")).await;
    let job = item(json!({"jobId": "j1", "status": "queued"}));
    let link = item(json!({"username": "jamesbond", "jobId": "j1"}));
    let failing = vec![
        TransactPut {
            table: jobs.clone(),
            item: job.clone(),
            condition: Some(Condition::NotExists),
        },
        TransactPut {
            table: by_user.clone(),
            item: link.clone(),
            condition: Some(Condition::eq("status", "never")),
        },
    ];
    let r = t.transact_put(failing).await;
    assert!(
        matches!(r, Err(TableError::TransactionConditionFailed(1))),
        "{r:?}"
    );
    assert_eq!(
        t.get(&jobs, &Key::partition("j1")).await.expect("get"),
        None,
        "the first write did not happen"
    );
    let ok = vec![
        TransactPut {
            table: jobs.clone(),
            item: job.clone(),
            condition: Some(Condition::NotExists),
        },
        TransactPut {
            table: by_user.clone(),
            item: link.clone(),
            condition: None,
        },
    ];
    t.transact_put(ok).await.expect("transaction");
    assert_eq!(
        t.get(&jobs, &Key::partition("j1")).await.expect("get"),
        Some(job)
    );
    assert_eq!(
        t.get(&by_user, &Key::with_sort("jamesbond", "j1"))
            .await
            .expect("get"),
        Some(link)
    );
}

pub async fn tables_missing_table_is_not_found(t: Arc<dyn Tables>) {
    let missing = unique("missing");
    let key = Key::partition("a");
    let not_found = |r: Result<(), TableError>| matches!(r, Err(TableError::NotFound(_)));
    assert!(not_found(
        t.put(&missing, item(json!({"id": "a"})), None).await
    ));
    assert!(not_found(t.get(&missing, &key).await.map(drop)));
    assert!(not_found(
        t.query(&missing, "a", &QueryOptions::default())
            .await
            .map(drop)
    ));
    assert!(not_found(
        t.update(&missing, &key, item(json!({"x": 1})), None)
            .await
            .map(drop)
    ));
    assert!(not_found(t.delete(&missing, &key).await));
    assert!(not_found(
        t.transact_put(vec![TransactPut {
            table: missing.clone(),
            item: item(json!({"id": "a"})),
            condition: None,
        }])
        .await
    ));
}

pub async fn tables_key_attributes_must_be_strings(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "id", Some("sk")).await;
    for bad in [
        json!({"id": 1, "sk": "a"}),
        json!({"id": "a"}),
        json!({"sk": "a"}),
        json!({"id": "a", "sk": ["x"]}),
    ] {
        let r = t.put(&name, item(bad.clone()), None).await;
        assert!(matches!(r, Err(TableError::InvalidItem(_))), "{bad}: {r:?}");
    }
}

/// DynamoDB's key limits (2,048 bytes of partition key, 1,024 of sort key, in UTF-8): at the
/// limit an item round-trips; past it every call refuses it as `KeyTooLong`, on every
/// adapter (a client's over-long name is then a clear error, not a backend's).
pub async fn tables_keys_over_dynamodb_limits_are_refused(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "id", Some("sk")).await;
    // Multi-byte characters: the limits count bytes.
    let (pk, sk) = (
        "é".repeat(MAX_PARTITION_KEY_BYTES / 2),
        "é".repeat(MAX_SORT_KEY_BYTES / 2),
    );
    t.put(&name, item(json!({"id": pk, "sk": sk, "v": 1})), None)
        .await
        .expect("keys at the limits");
    let at_limit = Key::with_sort(pk.clone(), sk.clone());
    assert!(t.get(&name, &at_limit).await.unwrap().is_some());

    let too_long = |r: Result<(), TableError>, what: &str| {
        assert!(matches!(r, Err(TableError::KeyTooLong(_))), "{what}: {r:?}");
    };
    let long_pk = format!("{pk}x");
    let long_sk = format!("{sk}x");
    for (p, s) in [(&long_pk, &sk), (&pk, &long_sk)] {
        let key = Key::with_sort(p.clone(), s.clone());
        too_long(
            t.put(&name, item(json!({"id": p, "sk": s})), None).await,
            "put",
        );
        too_long(t.get(&name, &key).await.map(drop), "get");
        too_long(
            t.update(&name, &key, item(json!({"v": 2})), None)
                .await
                .map(drop),
            "update",
        );
        too_long(t.delete(&name, &key).await, "delete");
        too_long(
            t.transact_put(vec![TransactPut {
                table: name.clone(),
                item: item(json!({"id": p, "sk": s})),
                condition: None,
            }])
            .await,
            "transact_put",
        );
    }
    too_long(
        t.query(&name, &long_pk, &QueryOptions::default())
            .await
            .map(drop),
        "query",
    );
}

/// `put_json`/`get_json` are `put`/`get` with the item as JSON text: an item written one
/// way reads back the same the other way, conditions hold alike, and a typed value
/// round-trips through `put_new`/`get_as` (which use them).
pub async fn tables_json_items_are_the_same_items(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "id", Some("sk")).await;
    let stored = json!({
        "id": "a",
        "sk": "1",
        "n": 42,
        "big": 18_446_744_073_709_551_615_u64,
        "f": -1.5,
        "none": null,
        "text": "é \"quoted\" \u{1F600}",
        "list": [1, "two", {"three": 3}],
    });
    t.put_json(
        &name,
        to_json(&stored).expect("an object"),
        Some(Condition::NotExists),
    )
    .await
    .expect("put_json");
    let key = Key::with_sort("a", "1");
    assert_eq!(
        t.get(&name, &key).await.expect("get"),
        Some(item(stored.clone()))
    );
    let text = t
        .get_json(&name, &key)
        .await
        .expect("get_json")
        .expect("found");
    assert_eq!(
        serde_json::from_str::<Value>(text.as_str()).expect("JSON"),
        stored
    );
    assert_eq!(
        t.get_json(&name, &Key::with_sort("a", "2"))
            .await
            .expect("get_json"),
        None
    );

    // Conditions read the item whichever way it was written.
    let r = t
        .put_json(
            &name,
            to_json(&json!({"id": "a", "sk": "1"})).unwrap(),
            Some(Condition::NotExists),
        )
        .await;
    assert!(matches!(r, Err(TableError::AlreadyExists)), "{r:?}");
    condition_failed(
        t.put_json(
            &name,
            to_json(&json!({"id": "a", "sk": "1", "n": 0})).unwrap(),
            Some(Condition::lt("n", 42)),
        )
        .await,
    );
    t.put_json(
        &name,
        to_json(&json!({"id": "a", "sk": "1", "n": 43})).unwrap(),
        Some(Condition::eq("n", 42)),
    )
    .await
    .expect("a holding condition");
    let by_put = item(json!({"id": "b", "sk": "1", "n": 1}));
    t.put(&name, by_put.clone(), None).await.expect("put");
    let text = t
        .get_json(&name, &Key::with_sort("b", "1"))
        .await
        .expect("get_json")
        .expect("found");
    assert_eq!(
        serde_json::from_str::<Item>(text.as_str()).expect("JSON"),
        by_put
    );

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Typed {
        id: String,
        sk: String,
        count: u64,
        tags: Vec<String>,
        note: Option<String>,
    }
    let typed = Typed {
        id: "c".into(),
        sk: "1".into(),
        count: 7,
        tags: vec!["x".into()],
        note: None,
    };
    t.put_new(&name, &typed).await.expect("put_new");
    let r = t.put_new(&name, &typed).await;
    assert!(matches!(r, Err(TableError::AlreadyExists)), "{r:?}");
    assert_eq!(
        t.get_as::<Typed>(&name, &Key::with_sort("c", "1"))
            .await
            .expect("get_as"),
        Some(typed)
    );
}

/// Text that is not one JSON object is refused as `InvalidItem` before it reaches a put,
/// and an object without its string keys by the put, which writes nothing.
pub async fn tables_json_put_refuses_what_is_not_an_item(t: Arc<dyn Tables>) {
    let name = fresh(&*t, "id", Some("sk")).await;
    for bad in [
        "not json",
        "[\"id\", \"sk\"]",
        "\"a\"",
        "{\"id\": \"a\", \"sk\": \"1\"} trailing",
        "{\"id\": \"a\", \"sk\": \"1\"",
    ] {
        let r = JsonItem::parse(bad.to_owned());
        assert!(matches!(r, Err(TableError::InvalidItem(_))), "{bad}: {r:?}");
    }
    for bad in [json!([1]), json!("a"), json!(null)] {
        let r = to_json(&bad);
        assert!(matches!(r, Err(TableError::InvalidItem(_))), "{bad}: {r:?}");
    }
    for bad in [
        json!({"id": 1, "sk": "1"}),
        json!({"id": "a"}),
        json!({"sk": "1"}),
        json!({"id": "", "sk": "1"}),
    ] {
        let item = JsonItem::parse(bad.to_string()).expect("an object");
        let r = t.put_json(&name, item, None).await;
        assert!(matches!(r, Err(TableError::InvalidItem(_))), "{bad}: {r:?}");
    }
    let page = t
        .query(&name, "a", &QueryOptions::default())
        .await
        .expect("query");
    assert!(page.items.is_empty(), "{:?}", page.items);
}
