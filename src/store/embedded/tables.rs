//! The Tables port on SQLite: every table's items in one `items` table, stored as JSON
//! with their keys pulled out by the table's `TableSpec`, so that a partition is one index
//! range ordered by sort key (byte order, as DynamoDB orders string sort keys).
//!
//! A conditional write reads the stored item, checks the condition, and writes only if the
//! item's revision (a random number every write replaces) is still the one it read;
//! otherwise another process wrote in between, and it reads again. So a condition holds at
//! the moment of the write in every process, for two statements instead of a transaction's
//! four. Transactions of several items use `BEGIN IMMEDIATE`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::RwLock;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sqlx::{Row, SqliteConnection};

use super::db::{begin_immediate, classify, Db, ErrorClass};
use crate::store::tables::{
    Condition, Item, Key, Page, QueryOptions, TableError, TableSpec, Tables, TransactPut,
};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS table_specs (
        name TEXT PRIMARY KEY,
        partition_key TEXT NOT NULL,
        sort_key TEXT
    ) WITHOUT ROWID",
    // `sk` is '' in tables without a sort key, so (tbl, pk, sk) is always the item's key.
    "CREATE TABLE IF NOT EXISTS items (
        tbl TEXT NOT NULL,
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        doc TEXT NOT NULL,
        rev INTEGER NOT NULL,
        PRIMARY KEY (tbl, pk, sk)
    ) WITHOUT ROWID",
];

/// DynamoDB's limits on a query page and on one transaction.
const MAX_PAGE: usize = 1000;
const MAX_TRANSACT: usize = 100;

/// The embedded document tables.
pub struct SqliteTables {
    db: Db,
    specs: RwLock<HashMap<String, TableSpec>>,
}

fn backend(e: sqlx::Error) -> TableError {
    match classify(&e) {
        ErrorClass::Unavailable => TableError::Unavailable(e.to_string()),
        _ => TableError::Backend(e.to_string()),
    }
}

/// The stored key of an item: its partition and sort key values, which must be non-empty
/// strings (DynamoDB's rule for string keys).
fn item_key(spec: &TableSpec, item: &Item) -> Result<(String, String), TableError> {
    let attr = |name: &str| -> Result<String, TableError> {
        match item.get(name) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) => Err(TableError::InvalidItem(format!(
                "key attribute {name:?} must not be empty"
            ))),
            Some(other) => Err(TableError::InvalidItem(format!(
                "key attribute {name:?} must be a string, got {other}"
            ))),
            None => Err(TableError::InvalidItem(format!(
                "key attribute {name:?} is missing"
            ))),
        }
    };
    let pk = attr(&spec.partition_key)?;
    let sk = match &spec.sort_key {
        Some(name) => attr(name)?,
        None => String::new(),
    };
    Ok((pk, sk))
}

/// The stored key for a `Key`, checked against the table's schema.
fn lookup_key(spec: &TableSpec, key: &Key) -> Result<(String, String), TableError> {
    match (&spec.sort_key, &key.sort) {
        (Some(_), Some(s)) => Ok((key.partition.clone(), s.clone())),
        (None, None) => Ok((key.partition.clone(), String::new())),
        (Some(name), None) => Err(TableError::InvalidItem(format!(
            "table {:?} needs the sort key {name:?}",
            spec.name
        ))),
        (None, Some(_)) => Err(TableError::InvalidItem(format!(
            "table {:?} has no sort key",
            spec.name
        ))),
    }
}

fn decode(doc: &str) -> Result<Item, TableError> {
    serde_json::from_str(doc).map_err(|e| TableError::Backend(format!("stored item: {e}")))
}

fn encode(item: &Item) -> Result<String, TableError> {
    serde_json::to_string(item).map_err(|e| TableError::InvalidItem(e.to_string()))
}

/// Checks a condition against the stored item: a failed `NotExists` alone is the typed
/// "already exists", anything else a plain failed condition.
fn check(condition: Option<&Condition>, current: Option<&Item>) -> Result<(), TableError> {
    match condition {
        Some(c) if !c.eval(current) => Err(match c {
            Condition::NotExists => TableError::AlreadyExists,
            _ => TableError::ConditionFailed,
        }),
        _ => Ok(()),
    }
}

/// The stored item and its revision.
async fn load(
    conn: &mut SqliteConnection,
    table: &str,
    pk: &str,
    sk: &str,
) -> Result<Option<(Item, i64)>, TableError> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT doc, rev FROM items WHERE tbl = ? AND pk = ? AND sk = ?")
            .bind(table)
            .bind(pk)
            .bind(sk)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    row.map(|(doc, rev)| Ok((decode(&doc)?, rev))).transpose()
}

/// A fresh revision: random, so a deleted and re-made item never repeats one.
fn new_rev() -> i64 {
    rand::random::<i64>()
}

/// Writes the item whatever is stored.
async fn store(
    conn: &mut SqliteConnection,
    table: &str,
    pk: &str,
    sk: &str,
    item: &Item,
) -> Result<(), TableError> {
    sqlx::query(
        "INSERT INTO items (tbl, pk, sk, doc, rev) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (tbl, pk, sk) DO UPDATE SET doc = excluded.doc, rev = excluded.rev",
    )
    .bind(table)
    .bind(pk)
    .bind(sk)
    .bind(encode(item)?)
    .bind(new_rev())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// Writes the item if the stored revision is still `read` (`None`: there was no item);
/// false if another writer came first.
async fn store_if(
    conn: &mut SqliteConnection,
    table: &str,
    pk: &str,
    sk: &str,
    item: &Item,
    read: Option<i64>,
) -> Result<bool, TableError> {
    let doc = encode(item)?;
    let done = match read {
        None => sqlx::query(
            "INSERT INTO items (tbl, pk, sk, doc, rev) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (tbl, pk, sk) DO NOTHING",
        )
        .bind(table)
        .bind(pk)
        .bind(sk)
        .bind(doc)
        .bind(new_rev()),
        Some(rev) => sqlx::query(
            "UPDATE items SET doc = ?, rev = ? WHERE tbl = ? AND pk = ? AND sk = ? AND rev = ?",
        )
        .bind(doc)
        .bind(new_rev())
        .bind(table)
        .bind(pk)
        .bind(sk)
        .bind(rev),
    }
    .execute(&mut *conn)
    .await
    .map_err(backend)?
    .rows_affected();
    Ok(done == 1)
}

/// The cursor is the last sort key returned, opaque to callers.
fn encode_cursor(sk: &str) -> String {
    URL_SAFE_NO_PAD.encode(sk.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<String, TableError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| TableError::InvalidItem(format!("malformed query cursor {cursor:?}")))
}

impl SqliteTables {
    /// Opens (creating if missing) the tables file.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        let db = Db::open(path).await?;
        db.migrate(SCHEMA).await?;
        Ok(Self {
            db,
            specs: RwLock::new(HashMap::new()),
        })
    }

    /// The table's key schema; `NotFound` if no one ensured it.
    async fn spec(&self, table: &str) -> Result<TableSpec, TableError> {
        if let Some(s) = self.specs.read().expect("table specs lock").get(table) {
            return Ok(s.clone());
        }
        let row = sqlx::query("SELECT partition_key, sort_key FROM table_specs WHERE name = ?")
            .bind(table)
            .fetch_optional(self.db.reader())
            .await
            .map_err(backend)?
            .ok_or_else(|| TableError::NotFound(table.to_owned()))?;
        let pk: String = row.get(0);
        let sk: Option<String> = row.get(1);
        let spec = TableSpec::new(table, &pk, sk.as_deref());
        self.specs
            .write()
            .expect("table specs lock")
            .insert(table.to_owned(), spec.clone());
        Ok(spec)
    }

    /// Reads the item, lets `next` check its condition and make the new item, and writes
    /// that if no one wrote in between; otherwise goes round again with what they wrote.
    async fn write_checked<F>(
        &self,
        table: &str,
        pk: &str,
        sk: &str,
        mut next: F,
    ) -> Result<Item, TableError>
    where
        F: FnMut(Option<&Item>) -> Result<Item, TableError> + Send,
    {
        let mut writer = self.db.writer().await;
        loop {
            let current = load(&mut writer, table, pk, sk).await?;
            let item = next(current.as_ref().map(|(item, _)| item))?;
            let read = current.map(|(_, rev)| rev);
            if store_if(&mut writer, table, pk, sk, &item, read).await? {
                return Ok(item);
            }
        }
    }
}

#[async_trait]
impl Tables for SqliteTables {
    async fn ensure_table(&self, spec: &TableSpec) -> Result<bool, TableError> {
        if spec.name.is_empty() || spec.partition_key.is_empty() {
            return Err(TableError::InvalidItem(
                "table and partition key names must not be empty".into(),
            ));
        }
        let mut writer = self.db.writer().await;
        let mut tx = begin_immediate(&mut writer).await.map_err(backend)?;
        let existing =
            sqlx::query("SELECT partition_key, sort_key FROM table_specs WHERE name = ?")
                .bind(&spec.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if let Some(row) = existing {
            let pk: String = row.get(0);
            let sk: Option<String> = row.get(1);
            if pk != spec.partition_key || sk != spec.sort_key {
                return Err(TableError::InvalidItem(format!(
                    "table {:?} exists with key ({pk}, {sk:?}), not ({}, {:?})",
                    spec.name, spec.partition_key, spec.sort_key
                )));
            }
            return Ok(false);
        }
        sqlx::query("INSERT INTO table_specs (name, partition_key, sort_key) VALUES (?, ?, ?)")
            .bind(&spec.name)
            .bind(&spec.partition_key)
            .bind(&spec.sort_key)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), TableError> {
        let spec = self.spec(table).await?;
        let (pk, sk) = item_key(&spec, &item)?;
        match condition {
            None => {
                let mut writer = self.db.writer().await;
                store(&mut writer, table, &pk, &sk, &item).await
            }
            Some(condition) => self
                .write_checked(table, &pk, &sk, |current| {
                    check(Some(&condition), current)?;
                    Ok(item.clone())
                })
                .await
                .map(drop),
        }
    }

    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>, TableError> {
        let spec = self.spec(table).await?;
        let (pk, sk) = lookup_key(&spec, key)?;
        let mut conn = self.db.reader().acquire().await.map_err(backend)?;
        Ok(load(&mut conn, table, &pk, &sk)
            .await?
            .map(|(item, _)| item))
    }

    async fn query(
        &self,
        table: &str,
        partition: &str,
        options: &QueryOptions,
    ) -> Result<Page, TableError> {
        self.spec(table).await?;
        let limit = options.limit.clamp(1, MAX_PAGE);
        let after = options.cursor.as_deref().map(decode_cursor).transpose()?;
        let mut sql = String::from("SELECT sk, doc FROM items WHERE tbl = ? AND pk = ?");
        if after.is_some() {
            sql.push_str(if options.descending {
                " AND sk < ?"
            } else {
                " AND sk > ?"
            });
        }
        if options.sort_prefix.is_some() {
            // substr counts characters, so the prefix is measured in characters too.
            sql.push_str(" AND substr(sk, 1, ?) = ?");
        }
        sql.push_str(if options.descending {
            " ORDER BY sk DESC LIMIT ?"
        } else {
            " ORDER BY sk LIMIT ?"
        });
        let mut q = sqlx::query(&sql).bind(table).bind(partition);
        if let Some(after) = &after {
            q = q.bind(after);
        }
        if let Some(prefix) = &options.sort_prefix {
            q = q
                .bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
                .bind(prefix);
        }
        // One more than a page tells whether another page follows.
        let rows = q
            .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
            .fetch_all(self.db.reader())
            .await
            .map_err(backend)?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(limit.min(rows.len()));
        let mut last = None;
        for row in rows.into_iter().take(limit) {
            last = Some(row.get::<String, _>(0));
            items.push(decode(row.get::<&str, _>(1))?);
        }
        Ok(Page {
            items,
            next: if more {
                last.as_deref().map(encode_cursor)
            } else {
                None
            },
        })
    }

    async fn update(
        &self,
        table: &str,
        key: &Key,
        set: Item,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        let spec = self.spec(table).await?;
        let (pk, sk) = lookup_key(&spec, key)?;
        self.write_checked(table, &pk, &sk, |current| {
            check(condition.as_ref(), current)?;
            let mut item = current.cloned().unwrap_or_else(|| {
                let mut fresh = Item::new();
                fresh.insert(spec.partition_key.clone(), Value::String(pk.clone()));
                if let Some(name) = &spec.sort_key {
                    fresh.insert(name.clone(), Value::String(sk.clone()));
                }
                fresh
            });
            for (name, value) in &set {
                item.insert(name.clone(), value.clone());
            }
            if item_key(&spec, &item)? != (pk.clone(), sk.clone()) {
                return Err(TableError::InvalidItem(
                    "an update cannot change the item's key".into(),
                ));
            }
            Ok(item)
        })
        .await
    }

    async fn delete(&self, table: &str, key: &Key) -> Result<(), TableError> {
        let spec = self.spec(table).await?;
        let (pk, sk) = lookup_key(&spec, key)?;
        sqlx::query("DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?")
            .bind(table)
            .bind(pk)
            .bind(sk)
            .execute(&mut *self.db.writer().await)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn transact_put(&self, puts: Vec<TransactPut>) -> Result<(), TableError> {
        if puts.len() > MAX_TRANSACT {
            return Err(TableError::InvalidItem(format!(
                "a transaction holds at most {MAX_TRANSACT} writes"
            )));
        }
        let mut keyed = Vec::with_capacity(puts.len());
        let mut seen = HashSet::new();
        for put in &puts {
            let spec = self.spec(&put.table).await?;
            let (pk, sk) = item_key(&spec, &put.item)?;
            // DynamoDB refuses two writes to one item in a transaction; so does this.
            if !seen.insert((put.table.clone(), pk.clone(), sk.clone())) {
                return Err(TableError::InvalidItem(
                    "a transaction cannot write the same item twice".into(),
                ));
            }
            keyed.push((pk, sk));
        }
        let mut writer = self.db.writer().await;
        let mut tx = begin_immediate(&mut writer).await.map_err(backend)?;
        for (i, (put, (pk, sk))) in puts.iter().zip(&keyed).enumerate() {
            if let Some(condition) = &put.condition {
                let current = load(&mut tx, &put.table, pk, sk).await?;
                if !condition.eval(current.as_ref().map(|(item, _)| item)) {
                    return Err(TableError::TransactionConditionFailed(i));
                }
            }
        }
        for (put, (pk, sk)) in puts.iter().zip(&keyed) {
            store(&mut tx, &put.table, pk, sk, &put.item).await?;
        }
        tx.commit().await.map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(v: Value) -> Item {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keys_must_be_non_empty_strings() {
        let spec = TableSpec::new("t", "p", Some("s"));
        assert_eq!(
            item_key(&spec, &item(json!({"p": "a", "s": "b"}))).unwrap(),
            ("a".into(), "b".into())
        );
        for bad in [
            json!({"p": "a"}),
            json!({"p": 1, "s": "b"}),
            json!({"p": "", "s": "b"}),
        ] {
            assert!(matches!(
                item_key(&spec, &item(bad)),
                Err(TableError::InvalidItem(_))
            ));
        }
        let no_sort = TableSpec::new("t", "p", None);
        assert!(lookup_key(&no_sort, &Key::with_sort("a", "b")).is_err());
        assert!(lookup_key(&spec, &Key::partition("a")).is_err());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for sk in ["", "a#b", "ünï/cödé"] {
            assert_eq!(decode_cursor(&encode_cursor(sk)).unwrap(), sk);
        }
        assert!(decode_cursor("!!").is_err());
    }

    /// Two adapters on one file stand for two processes: conditional increments from both
    /// never lose an update.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn conditional_writes_from_two_openers_never_lose_an_update() {
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = Arc::new(SqliteTables::open(&path).await.unwrap());
        let b = Arc::new(SqliteTables::open(&path).await.unwrap());
        a.ensure_table(&TableSpec::new("c", "id", None))
            .await
            .unwrap();
        a.put("c", item(json!({"id": "x", "n": 0})), None)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let t = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    for _ in 0..25 {
                        loop {
                            let cur = t.get("c", &Key::partition("x")).await.unwrap().unwrap();
                            let n = cur["n"].as_i64().unwrap();
                            let set = item(json!({"n": n + 1}));
                            match t
                                .update("c", &Key::partition("x"), set, Some(Condition::eq("n", n)))
                                .await
                            {
                                Ok(_) => break,
                                Err(TableError::ConditionFailed) => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let last = b.get("c", &Key::partition("x")).await.unwrap().unwrap();
        assert_eq!(last["n"], 200);
    }

    #[tokio::test]
    async fn a_table_keeps_its_key_schema() {
        let dir = tempfile::tempdir().unwrap();
        let t = SqliteTables::open(&dir.path().join("t.db")).await.unwrap();
        assert!(t
            .ensure_table(&TableSpec::new("x", "p", None))
            .await
            .unwrap());
        assert!(matches!(
            t.ensure_table(&TableSpec::new("x", "p", Some("s"))).await,
            Err(TableError::InvalidItem(_))
        ));
    }
}
