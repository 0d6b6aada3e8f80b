//! The Tables port: DynamoDB-style document items with a string partition key and an
//! optional string sort key, conditional writes and queries by partition.

use std::cmp::Ordering;

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{Map, Value};

/// A table item: a JSON object whose key attributes are strings.
pub type Item = Map<String, Value>;

/// A table and its key schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    pub partition_key: String,
    pub sort_key: Option<String>,
}

impl TableSpec {
    pub fn new(name: impl Into<String>, partition_key: &str, sort_key: Option<&str>) -> Self {
        Self {
            name: name.into(),
            partition_key: partition_key.to_owned(),
            sort_key: sort_key.map(str::to_owned),
        }
    }
}

/// The key of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub partition: String,
    pub sort: Option<String>,
}

impl Key {
    pub fn partition(p: impl Into<String>) -> Self {
        Self {
            partition: p.into(),
            sort: None,
        }
    }

    pub fn with_sort(p: impl Into<String>, s: impl Into<String>) -> Self {
        Self {
            partition: p.into(),
            sort: Some(s.into()),
        }
    }
}

/// A condition on the item currently stored under the key (DynamoDB condition expressions).
/// Comparisons with an attribute that is missing are false, except `Ne`, which is true
/// (as DynamoDB's `attribute <> value`).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// No item has this key.
    NotExists,
    /// An item has this key.
    Exists,
    Eq(String, Value),
    Ne(String, Value),
    /// attribute < value (numbers compare as numbers, strings as strings).
    Lt(String, Value),
    And(Vec<Condition>),
    Or(Vec<Condition>),
}

impl Condition {
    pub fn eq(attr: &str, v: impl Into<Value>) -> Self {
        Self::Eq(attr.to_owned(), v.into())
    }
    pub fn ne(attr: &str, v: impl Into<Value>) -> Self {
        Self::Ne(attr.to_owned(), v.into())
    }
    pub fn lt(attr: &str, v: impl Into<Value>) -> Self {
        Self::Lt(attr.to_owned(), v.into())
    }

    /// The attributes the condition reads, each once.
    pub fn attributes(&self) -> Vec<&str> {
        fn walk<'a>(c: &'a Condition, out: &mut Vec<&'a str>) {
            match c {
                Condition::NotExists | Condition::Exists => {}
                Condition::Eq(name, _) | Condition::Ne(name, _) | Condition::Lt(name, _) => {
                    if !out.contains(&name.as_str()) {
                        out.push(name);
                    }
                }
                Condition::And(all) | Condition::Or(all) => {
                    for c in all {
                        walk(c, out);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// Evaluates the condition against the stored item (`None`: no item), as DynamoDB
    /// would: numbers compare as numbers (`1 == 1.0`), strings by their bytes; values of
    /// different types are never equal nor ordered; a missing attribute makes `Eq` and `Lt`
    /// false and `Ne` true. Adapters that cannot express a condition natively use this
    /// inside their write transaction.
    pub fn eval(&self, current: Option<&Item>) -> bool {
        let attr = |name: &str| current.and_then(|item| item.get(name));
        match self {
            Self::NotExists => current.is_none(),
            Self::Exists => current.is_some(),
            Self::Eq(name, v) => attr(name).is_some_and(|a| compare(a, v) == Some(Ordering::Equal)),
            Self::Ne(name, v) => attr(name).is_none_or(|a| compare(a, v) != Some(Ordering::Equal)),
            Self::Lt(name, v) => attr(name).is_some_and(|a| compare(a, v) == Some(Ordering::Less)),
            Self::And(all) => all.iter().all(|c| c.eval(current)),
            Self::Or(any) => any.iter().any(|c| c.eval(current)),
        }
    }
}

/// Orders two attribute values of the same type; `None` for different types, and for
/// unordered types (lists, maps, booleans, null) unless they are equal.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => (a == b).then_some(Ordering::Equal),
    }
}

/// Integers compare exactly (an f64 would merge large ones); anything else as f64.
fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    let int = |n: &serde_json::Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(x), int(y)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
    }
}

/// How to query one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryOptions {
    /// At most this many items per page.
    pub limit: usize,
    /// Sort key descending (newest first for time-ordered keys).
    pub descending: bool,
    /// Only sort keys that start with this.
    pub sort_prefix: Option<String>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            limit: 100,
            descending: false,
            sort_prefix: None,
            cursor: None,
        }
    }
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactPut {
    pub table: String,
    pub item: Item,
    pub condition: Option<Condition>,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table {0:?} does not exist")]
    NotFound(String),
    /// A put with `Condition::NotExists` found an item (the typed "already exists").
    #[error("an item with this key already exists")]
    AlreadyExists,
    #[error("the condition on the stored item is not met")]
    ConditionFailed,
    /// A transaction was cancelled because the write at this index failed its condition.
    #[error("transaction cancelled: condition of write {0} not met")]
    TransactionConditionFailed(usize),
    #[error("invalid item: {0}")]
    InvalidItem(String),
    /// A key value over DynamoDB's size limits ([`check_key_sizes`]); refused by both
    /// adapters before any call, so an over-long name a client sent reads as such.
    #[error("key too long: {0}")]
    KeyTooLong(String),
    /// A query's cursor is not one this store handed out for that query (the caller's
    /// mistake, not the store's: the API answers 400).
    #[error("invalid query cursor: {0}")]
    InvalidCursor(String),
    #[error("table backend unavailable: {0}")]
    Unavailable(String),
    #[error("table backend error: {0}")]
    Backend(String),
    #[error("item does not match its type: {0}")]
    Decode(String),
}

/// DynamoDB's limit on a partition key value, in UTF-8 bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// DynamoDB's limit on a sort key value, in UTF-8 bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;

/// Refuses key values over DynamoDB's limits, on every adapter alike.
pub fn check_key_sizes(partition: &str, sort: Option<&str>) -> Result<(), TableError> {
    let over = |what: &str, len: usize, max: usize| {
        TableError::KeyTooLong(format!("a {what} key of {len} bytes (at most {max})"))
    };
    if partition.len() > MAX_PARTITION_KEY_BYTES {
        return Err(over("partition", partition.len(), MAX_PARTITION_KEY_BYTES));
    }
    match sort {
        Some(s) if s.len() > MAX_SORT_KEY_BYTES => Err(over("sort", s.len(), MAX_SORT_KEY_BYTES)),
        _ => Ok(()),
    }
}

impl TableError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[async_trait]
pub trait Tables: Send + Sync + 'static {
    /// Creates the table if it is missing; `Ok(true)` if it was created.
    async fn ensure_table(&self, spec: &TableSpec) -> Result<bool, TableError>;

    /// Writes the item, replacing any item with the same key, if `condition` holds.
    /// A failed `Condition::NotExists` alone gives `AlreadyExists`; any other failed
    /// condition gives `ConditionFailed`.
    async fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), TableError>;

    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>, TableError>;

    /// Items of one partition, ordered by sort key.
    async fn query(
        &self,
        table: &str,
        partition: &str,
        options: &QueryOptions,
    ) -> Result<Page, TableError>;

    /// Sets the given attributes on the item (creating it if missing and the condition
    /// allows), and returns the whole item after the update.
    async fn update(
        &self,
        table: &str,
        key: &Key,
        set: Item,
        condition: Option<Condition>,
    ) -> Result<Item, TableError>;

    /// Deletes the item if it exists.
    async fn delete(&self, table: &str, key: &Key) -> Result<(), TableError>;

    /// All the puts or none (DynamoDB TransactWriteItems, at most 100 writes).
    async fn transact_put(&self, puts: Vec<TransactPut>) -> Result<(), TableError>;

    /// [`Tables::get`] with the item as JSON text (an object). An adapter that stores items
    /// as JSON text answers with the text as stored, so that a caller reading a typed value
    /// parses it once, not into an [`Item`] and then again out of it.
    async fn get_json(&self, table: &str, key: &Key) -> Result<Option<JsonItem>, TableError> {
        self.get(table, key)
            .await?
            .map(|item| to_json(&item))
            .transpose()
    }

    /// [`Tables::put`] of an item given as JSON text. An adapter that stores items as JSON
    /// text stores this text, so that a typed value is serialized once, not into an
    /// [`Item`] and then again out of it.
    async fn put_json(
        &self,
        table: &str,
        item: JsonItem,
        condition: Option<Condition>,
    ) -> Result<(), TableError> {
        self.put(table, item_from_json(item.as_str())?, condition)
            .await
    }
}

/// Serializes a typed value into an item.
pub fn to_item<T: Serialize>(value: &T) -> Result<Item, TableError> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(TableError::InvalidItem(format!(
            "an item must be an object, got {other}"
        ))),
        Err(e) => Err(TableError::InvalidItem(e.to_string())),
    }
}

/// Reads a typed value from an item.
pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, TableError> {
    serde_json::from_value(Value::Object(item)).map_err(|e| TableError::Decode(e.to_string()))
}

/// An item as JSON text, known to be one well-formed JSON object: made by serializing a
/// value ([`to_json`]) or by checking text from elsewhere ([`JsonItem::parse`]), so that
/// an adapter storing it needs to read no more of it than its key attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonItem(String);

impl JsonItem {
    /// Checks that the whole of `text` is one JSON object; `InvalidItem` if not.
    pub fn parse(text: String) -> Result<Self, TableError> {
        item_from_json(&text)?;
        Ok(Self(text))
    }

    /// Text this process wrote as an item (an adapter's stored document).
    pub(crate) fn stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Serializes a typed value (or an [`Item`]) into an item's JSON text, for
/// [`Tables::put_json`]; `InvalidItem` if the value is not a JSON object. serde_json writes
/// well-formed JSON or fails, so an object is told by its first character.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<JsonItem, TableError> {
    let text = serde_json::to_string(value).map_err(|e| TableError::InvalidItem(e.to_string()))?;
    if !text.starts_with('{') {
        let start: String = text.chars().take(40).collect();
        return Err(TableError::InvalidItem(format!(
            "an item must be an object, got {start}"
        )));
    }
    Ok(JsonItem(text))
}

/// Reads a typed value from an item's JSON text, as [`Tables::get_json`] gives it.
pub fn from_json<T: DeserializeOwned>(item: &str) -> Result<T, TableError> {
    serde_json::from_str(item).map_err(|e| TableError::Decode(e.to_string()))
}

/// The item an item's JSON text holds; `InvalidItem` if the text is not a JSON object.
pub fn item_from_json(item: &str) -> Result<Item, TableError> {
    match serde_json::from_str(item) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(TableError::InvalidItem(format!(
            "an item must be an object, got {other}"
        ))),
        Err(e) => Err(TableError::InvalidItem(e.to_string())),
    }
}

/// Typed helpers over any `Tables`.
#[async_trait]
pub trait TablesExt: Tables {
    /// Writes a typed item only if its key is free; `AlreadyExists` otherwise.
    async fn put_new<T: Serialize + Sync>(&self, table: &str, value: &T) -> Result<(), TableError> {
        self.put_json(table, to_json(value)?, Some(Condition::NotExists))
            .await
    }

    /// Like `put_new`, but an existing item is success: the write happened before.
    async fn put_once<T: Serialize + Sync>(
        &self,
        table: &str,
        value: &T,
    ) -> Result<bool, TableError> {
        match self.put_new(table, value).await {
            Ok(()) => Ok(true),
            Err(TableError::AlreadyExists) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get_as<T: DeserializeOwned>(
        &self,
        table: &str,
        key: &Key,
    ) -> Result<Option<T>, TableError> {
        self.get_json(table, key)
            .await?
            .map(|item| from_json(item.as_str()))
            .transpose()
    }
}

impl<T: Tables + ?Sized> TablesExt for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        v.as_object().expect("an object").clone()
    }

    #[test]
    fn existence_conditions() {
        let it = item(json!({"k": "a"}));
        assert!(Condition::NotExists.eval(None));
        assert!(!Condition::NotExists.eval(Some(&it)));
        assert!(Condition::Exists.eval(Some(&it)));
        assert!(!Condition::Exists.eval(None));
    }

    #[test]
    fn numbers_compare_as_numbers_and_strings_as_strings() {
        let it = item(json!({"n": 10, "f": 2.5, "s": "b", "big": 1_u64 << 62}));
        assert!(Condition::eq("n", 10.0).eval(Some(&it)));
        assert!(Condition::lt("n", 11).eval(Some(&it)));
        assert!(
            !Condition::lt("n", 9).eval(Some(&it)),
            "10 < 9 as text would hold"
        );
        assert!(Condition::lt("f", 3).eval(Some(&it)));
        assert!(Condition::lt("s", "c").eval(Some(&it)));
        assert!(!Condition::lt("s", "a").eval(Some(&it)));
        assert!(!Condition::eq("big", (1_u64 << 62) + 1).eval(Some(&it)));
        assert!(Condition::lt("big", (1_u64 << 62) + 1).eval(Some(&it)));
    }

    #[test]
    fn different_types_are_neither_equal_nor_ordered() {
        let it = item(json!({"n": 10, "s": "10"}));
        assert!(!Condition::eq("n", "10").eval(Some(&it)));
        assert!(Condition::ne("n", "10").eval(Some(&it)));
        assert!(!Condition::lt("s", 11).eval(Some(&it)));
        assert!(!Condition::lt("n", "9").eval(Some(&it)));
    }

    #[test]
    fn a_missing_attribute_fails_eq_and_lt_and_passes_ne() {
        let it = item(json!({"other": 1}));
        for current in [Some(&it), None] {
            assert!(!Condition::eq("a", 1).eval(current));
            assert!(!Condition::lt("a", 1).eval(current));
            assert!(Condition::ne("a", 1).eval(current));
        }
    }

    #[test]
    fn and_or_combine() {
        let it = item(json!({"status": "queued", "revision": 3}));
        let fresh = Condition::Or(vec![Condition::NotExists, Condition::lt("revision", 3)]);
        assert!(fresh.eval(None));
        assert!(!fresh.eval(Some(&it)));
        let both = Condition::And(vec![
            Condition::eq("status", "queued"),
            Condition::eq("revision", 3),
        ]);
        assert!(both.eval(Some(&it)));
        assert!(!Condition::And(vec![both.clone(), Condition::NotExists]).eval(Some(&it)));
        assert!(Condition::And(vec![]).eval(None));
        assert!(!Condition::Or(vec![]).eval(None));
        assert!(Condition::eq("revision", json!(3)).eval(Some(&it)));
    }

    #[test]
    fn lists_and_maps_compare_only_for_equality() {
        let it = item(json!({"l": [1, 2], "m": {"a": 1}, "b": true}));
        assert!(Condition::eq("l", json!([1, 2])).eval(Some(&it)));
        assert!(Condition::eq("m", json!({"a": 1})).eval(Some(&it)));
        assert!(!Condition::lt("l", json!([1, 3])).eval(Some(&it)));
        assert!(Condition::ne("b", false).eval(Some(&it)));
    }
}
