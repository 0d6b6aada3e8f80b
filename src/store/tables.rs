//! The Tables port: DynamoDB-style document items with a string partition key and an
//! optional string sort key, conditional writes and queries by partition.

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
/// Comparisons with an attribute that is missing are false.
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
    #[error("table backend unavailable: {0}")]
    Unavailable(String),
    #[error("table backend error: {0}")]
    Backend(String),
    #[error("item does not match its type: {0}")]
    Decode(String),
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

/// Typed helpers over any `Tables`.
#[async_trait]
pub trait TablesExt: Tables {
    /// Writes a typed item only if its key is free; `AlreadyExists` otherwise.
    async fn put_new<T: Serialize + Sync>(&self, table: &str, value: &T) -> Result<(), TableError> {
        self.put(table, to_item(value)?, Some(Condition::NotExists))
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
        self.get(table, key).await?.map(from_item).transpose()
    }
}

impl<T: Tables + ?Sized> TablesExt for T {}
