//! The Tables port on SQLite: every table's items in one `items` table, stored as JSON
//! with their keys pulled out by the table's `TableSpec`, so that a partition is one index
//! range ordered by sort key (byte order, as DynamoDB orders string sort keys).
//!
//! Every write runs on the file's writer thread inside a `BEGIN IMMEDIATE` transaction
//! (see `db`), so a conditional write reads the item, checks the condition and writes it
//! with no other writer in between, in this process or another; and a transaction of
//! several items commits all of them or none. Reads run on the caller's thread. The writer
//! thread is the file's one serialization point, so a put's JSON is encoded before it gets
//! there, and its condition builds only the attributes it names from the stored item (a
//! job's item is mostly history and stage outputs that no condition reads): 13–15% less
//! CPU per job across the four stages.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::RwLock;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::Value;

use super::db::{Db, DbError, ErrorClass};
use crate::store::tables::{
    check_key_sizes, Condition, Item, JsonItem, Key, Page, QueryOptions, TableError, TableSpec,
    Tables, TransactPut,
};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS table_specs (
        name TEXT PRIMARY KEY,
        partition_key TEXT NOT NULL,
        sort_key TEXT
    ) WITHOUT ROWID",
    ITEMS,
];

/// Every table's items. `sk` is '' in tables without a sort key, so (tbl, pk, sk) is
/// always the item's key.
///
/// A rowid table, with the key in its own index: a `WITHOUT ROWID` table keeps at most
/// ~1,000 bytes of a row in its b-tree page (for 4 KiB pages) and spills the rest to
/// overflow pages, and nearly every item here is bigger (a job is 3–7 KB, an event 1.3 KB,
/// a kustomization 1.7 KB). Here a row keeps up to ~4 KB in its page, and rewriting a job
/// leaves the key's index alone. Measured over the four stages (100 jobs on tmpfs, from
/// `strace`): per job 27 → 19 WAL frames and 70 → 35 KB checkpointed into the file, and
/// 59 → 13 page reads; the pipeline 412–443 → 456–608 jobs/s (alternating runs).
const ITEMS: &str = "CREATE TABLE IF NOT EXISTS items (
        tbl TEXT NOT NULL,
        pk TEXT NOT NULL,
        sk TEXT NOT NULL,
        doc TEXT NOT NULL,
        rev INTEGER NOT NULL,
        PRIMARY KEY (tbl, pk, sk)
    )";

/// Rebuilds the items of a file made before [`ITEMS`] was a rowid table, once, in the
/// open's transaction (a process of an older build sharing the file re-prepares its
/// statements against the new table: the names and columns are the same). True if it did.
fn rebuild_items_with_rowid(conn: &Connection) -> Result<bool, DbError> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'items'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if !sql.is_some_and(|sql| sql.to_ascii_uppercase().contains("WITHOUT ROWID")) {
        return Ok(false);
    }
    conn.execute_batch("ALTER TABLE items RENAME TO items_without_rowid")?;
    conn.execute_batch(ITEMS)?;
    conn.execute_batch(
        "INSERT INTO items (tbl, pk, sk, doc, rev)
             SELECT tbl, pk, sk, doc, rev FROM items_without_rowid ORDER BY tbl, pk, sk;
         DROP TABLE items_without_rowid",
    )?;
    Ok(true)
}

/// DynamoDB's limits on a query page and on one transaction.
const MAX_PAGE: usize = 1000;
const MAX_TRANSACT: usize = 100;

/// The embedded document tables.
pub struct SqliteTables {
    db: Db,
    specs: RwLock<HashMap<String, TableSpec>>,
}

impl From<DbError> for TableError {
    fn from(e: DbError) -> Self {
        match e.class {
            ErrorClass::Unavailable => TableError::Unavailable(e.message),
            _ => TableError::Backend(e.message),
        }
    }
}

fn backend(e: rusqlite::Error) -> TableError {
    DbError::from(e).into()
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
        Some(name) => Some(attr(name)?),
        None => None,
    };
    check_key_sizes(&pk, sk.as_deref())?;
    Ok((pk, sk.unwrap_or_default()))
}

/// The stored key for a `Key`, checked against the table's schema.
fn lookup_key(spec: &TableSpec, key: &Key) -> Result<(String, String), TableError> {
    check_key_sizes(&key.partition, key.sort.as_deref())?;
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

fn unreadable(e: &dyn std::fmt::Display) -> TableError {
    TableError::Backend(format!("stored item: {e}"))
}

/// A row's `doc` column as text.
fn doc_text<'a>(doc: rusqlite::types::ValueRef<'a>) -> Result<&'a str, TableError> {
    doc.as_str().map_err(|e| unreadable(&e))
}

/// The item stored in a row's `doc` column.
fn decode(doc: rusqlite::types::ValueRef<'_>) -> Result<Item, TableError> {
    serde_json::from_str(doc_text(doc)?).map_err(|e| unreadable(&e))
}

/// Of the stored item, only the top-level attributes in `names` (what a condition reads).
/// The document is read only as far as the last of them: the rest (most of a job's item,
/// whose `revision` comes early) is neither built nor scanned. A stored document is one
/// this adapter checked when it was written, so what is not read needs no check.
fn decode_attributes(
    doc: rusqlite::types::ValueRef<'_>,
    names: &[&str],
) -> Result<Item, TableError> {
    pick_attributes(doc_text(doc)?, names).map_err(|e| unreadable(&e))
}

/// Of an item's JSON text, only the top-level attributes in `names` (absent ones are
/// missing from the answer), read only as far as the last of them: for a stored document
/// or a [`JsonItem`], both known to be well formed. An error if what was read is not a
/// JSON object.
fn pick_attributes(text: &str, names: &[&str]) -> Result<Item, serde_json::Error> {
    use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};

    struct Wanted<'a> {
        names: &'a [&'a str],
        /// Where the visitor leaves the item when it stops early: serde_json then fails
        /// the unfinished object, and the caller takes the item from here instead.
        early: &'a mut Option<Item>,
    }

    impl Wanted<'_> {
        fn complete(&self, item: &Item) -> bool {
            self.names.iter().all(|n| item.contains_key(*n))
        }
    }

    impl<'de> Visitor<'de> for Wanted<'_> {
        type Value = Item;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an item (a JSON object)")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
            let mut item = Item::new();
            loop {
                if self.complete(&item) {
                    *self.early = Some(item);
                    return Err(A::Error::custom("stopped early"));
                }
                let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? else {
                    return Ok(item);
                };
                if self.names.contains(&key.as_ref()) {
                    item.insert(key.into_owned(), map.next_value::<Value>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
    }

    impl<'de> DeserializeSeed<'de> for Wanted<'_> {
        type Value = Item;

        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
            d.deserialize_map(self)
        }
    }

    let mut early = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let read = Wanted {
        names,
        early: &mut early,
    }
    .deserialize(&mut de);
    if let Some(item) = early {
        return Ok(item);
    }
    let item = read?;
    de.end()?;
    Ok(item)
}

/// Of the stored item, what `condition` reads (`None`: no item).
fn stored_for(
    conn: &Connection,
    table: &str,
    pk: &str,
    sk: &str,
    condition: &Condition,
) -> Result<Option<Item>, TableError> {
    let names = condition.attributes();
    load_with(conn, table, pk, sk, |doc| decode_attributes(doc, &names))
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

/// The stored item.
fn load(conn: &Connection, table: &str, pk: &str, sk: &str) -> Result<Option<Item>, TableError> {
    load_with(conn, table, pk, sk, decode)
}

/// The stored item's `doc`, decoded by `decode` (`None`: no item).
fn load_with<T>(
    conn: &Connection,
    table: &str,
    pk: &str,
    sk: &str,
    decode: impl FnOnce(rusqlite::types::ValueRef<'_>) -> Result<T, TableError>,
) -> Result<Option<T>, TableError> {
    let mut stmt = conn
        .prepare_cached("SELECT doc FROM items WHERE tbl = ? AND pk = ? AND sk = ?")
        .map_err(backend)?;
    let mut rows = stmt.query(params![table, pk, sk]).map_err(backend)?;
    match rows.next().map_err(backend)? {
        Some(row) => decode(row.get_ref(0).map_err(backend)?).map(Some),
        None => Ok(None),
    }
}

/// Writes the item whatever is stored. `rev` (a random number every write replaces) is no
/// longer read here, but is still written: a process of the previous version sharing the
/// folder during a rolling restart checks its conditional writes against it.
fn store(
    conn: &Connection,
    table: &str,
    pk: &str,
    sk: &str,
    item: &Item,
) -> Result<(), TableError> {
    store_doc(conn, table, pk, sk, &encode(item)?)
}

/// [`store`] of an item already encoded (off the writer thread).
fn store_doc(
    conn: &Connection,
    table: &str,
    pk: &str,
    sk: &str,
    doc: &str,
) -> Result<(), TableError> {
    conn.prepare_cached(
        "INSERT INTO items (tbl, pk, sk, doc, rev) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (tbl, pk, sk) DO UPDATE SET doc = excluded.doc, rev = excluded.rev",
    )
    .map_err(backend)?
    .execute(params![table, pk, sk, doc, rand::random::<i64>()])
    .map_err(backend)?;
    Ok(())
}

/// Reads the item, lets `next` check its condition and make the new item, and writes it:
/// on the writer, so nothing changes in between.
fn write_checked(
    conn: &Connection,
    table: &str,
    pk: &str,
    sk: &str,
    next: impl FnOnce(Option<&Item>) -> Result<Item, TableError>,
) -> Result<Item, TableError> {
    let current = load(conn, table, pk, sk)?;
    let item = next(current.as_ref())?;
    store(conn, table, pk, sk, &item)?;
    Ok(item)
}

/// The statement and arguments of one page of a query (`limit` items, and one more to tell
/// whether another page follows).
fn query_sql(
    table: &str,
    partition: &str,
    options: &QueryOptions,
    limit: usize,
) -> Result<(String, Vec<SqlValue>), TableError> {
    let after = options.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut sql = String::from("SELECT sk, doc FROM items WHERE tbl = ? AND pk = ?");
    let mut args: Vec<SqlValue> = vec![table.to_owned().into(), partition.to_owned().into()];
    if let Some(after) = after {
        sql.push_str(if options.descending {
            " AND sk < ?"
        } else {
            " AND sk > ?"
        });
        args.push(after.into());
    }
    if let Some(prefix) = &options.sort_prefix {
        // A range of the key, so the primary key's index finds the first match and
        // the page ends at the last: no scan of the rest of the partition.
        sql.push_str(" AND sk >= ?");
        args.push(prefix.clone().into());
        if let Some(end) = prefix_end(prefix) {
            sql.push_str(" AND sk < ?");
            args.push(end.into());
        }
    }
    sql.push_str(if options.descending {
        " ORDER BY sk DESC LIMIT ?"
    } else {
        " ORDER BY sk LIMIT ?"
    });
    // One more than a page tells whether another page follows.
    args.push(i64::try_from(limit + 1).unwrap_or(i64::MAX).into());
    Ok((sql, args))
}

/// The least string above every string that starts with `prefix` (`None`: no such
/// string, every string at or above `prefix` starts with it). SQLite compares text byte by
/// byte, and UTF-8's byte order is the order of code points, so it is `prefix` with its last
/// character replaced by the next one (dropping trailing `char::MAX`es).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
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
        .ok_or_else(|| TableError::InvalidCursor(format!("{cursor:?} is malformed")))
}

impl SqliteTables {
    /// Opens (creating if missing) the tables file.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let db = Db::open(path).await?;
        db.migrate(SCHEMA).await?;
        if db.write(rebuild_items_with_rowid).await? {
            tracing::info!(path = %path.display(), "tables: items rebuilt as a rowid table");
        }
        Ok(Self {
            db,
            specs: RwLock::new(HashMap::new()),
        })
    }

    /// Writes an encoded item under its key if `condition` holds. The condition reads only
    /// the attributes it names: the writer thread does the SQL and little else.
    async fn put_doc(
        &self,
        table: &str,
        (pk, sk): (String, String),
        doc: String,
        condition: Option<Condition>,
    ) -> Result<(), TableError> {
        let table = table.to_owned();
        self.db
            .write(move |conn| {
                if let Some(condition) = &condition {
                    let current = stored_for(conn, &table, &pk, &sk, condition)?;
                    check(Some(condition), current.as_ref())?;
                }
                store_doc(conn, &table, &pk, &sk, &doc)
            })
            .await
    }

    /// The table's key schema; `NotFound` if no one ensured it.
    fn spec(&self, table: &str) -> Result<TableSpec, TableError> {
        if let Some(s) = self.specs.read().expect("table specs lock").get(table) {
            return Ok(s.clone());
        }
        let (pk, sk) = self
            .db
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT partition_key, sort_key FROM table_specs WHERE name = ?",
                )?
                .query_row([table], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .optional()
                .map_err(DbError::from)
            })?
            .ok_or_else(|| TableError::NotFound(table.to_owned()))?;
        let spec = TableSpec::new(table, &pk, sk.as_deref());
        self.specs
            .write()
            .expect("table specs lock")
            .insert(table.to_owned(), spec.clone());
        Ok(spec)
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
        let spec = spec.clone();
        self.db
            .write(move |conn| {
                let existing = conn
                    .query_row(
                        "SELECT partition_key, sort_key FROM table_specs WHERE name = ?",
                        [&spec.name],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)),
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some((pk, sk)) = existing {
                    if pk != spec.partition_key || sk != spec.sort_key {
                        return Err(TableError::InvalidItem(format!(
                            "table {:?} exists with key ({pk}, {sk:?}), not ({}, {:?})",
                            spec.name, spec.partition_key, spec.sort_key
                        )));
                    }
                    return Ok(false);
                }
                conn.execute(
                    "INSERT INTO table_specs (name, partition_key, sort_key) VALUES (?, ?, ?)",
                    params![spec.name, spec.partition_key, spec.sort_key],
                )
                .map_err(backend)?;
                Ok(true)
            })
            .await
    }

    async fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), TableError> {
        let spec = self.spec(table)?;
        let key = item_key(&spec, &item)?;
        // The item is encoded here, not on the file's one writer thread.
        self.put_doc(table, key, encode(&item)?, condition).await
    }

    /// The stored text itself: no [`Item`] is built.
    async fn get_json(&self, table: &str, key: &Key) -> Result<Option<JsonItem>, TableError> {
        let spec = self.spec(table)?;
        let (pk, sk) = lookup_key(&spec, key)?;
        self.db.read(|conn| {
            load_with(conn, table, &pk, &sk, |doc| {
                doc_text(doc).map(|text| JsonItem::stored(text.to_owned()))
            })
        })
    }

    /// The text is stored as given (a `JsonItem` is well formed); of it, only the key
    /// attributes are read.
    async fn put_json(
        &self,
        table: &str,
        item: JsonItem,
        condition: Option<Condition>,
    ) -> Result<(), TableError> {
        let spec = self.spec(table)?;
        let mut names = vec![spec.partition_key.as_str()];
        names.extend(spec.sort_key.as_deref());
        let keys = pick_attributes(item.as_str(), &names)
            .map_err(|e| TableError::InvalidItem(e.to_string()))?;
        let key = item_key(&spec, &keys)?;
        self.put_doc(table, key, item.into_string(), condition)
            .await
    }

    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>, TableError> {
        let spec = self.spec(table)?;
        let (pk, sk) = lookup_key(&spec, key)?;
        self.db.read(|conn| load(conn, table, &pk, &sk))
    }

    async fn query(
        &self,
        table: &str,
        partition: &str,
        options: &QueryOptions,
    ) -> Result<Page, TableError> {
        self.spec(table)?;
        check_key_sizes(partition, None)?;
        let limit = options.limit.clamp(1, MAX_PAGE);
        let (sql, args) = query_sql(table, partition, options, limit)?;
        let (items, last, more) = self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let mut rows = stmt.query(params_from_iter(args)).map_err(backend)?;
            let mut items = Vec::new();
            let mut last = None;
            let mut more = false;
            while let Some(row) = rows.next().map_err(backend)? {
                if items.len() == limit {
                    more = true;
                    break;
                }
                last = Some(row.get::<_, String>(0).map_err(backend)?);
                items.push(decode(row.get_ref(1).map_err(backend)?)?);
            }
            Ok::<_, TableError>((items, last, more))
        })?;
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
        let spec = self.spec(table)?;
        let (pk, sk) = lookup_key(&spec, key)?;
        let table = table.to_owned();
        self.db
            .write(move |conn| {
                write_checked(conn, &table, &pk, &sk, |current| {
                    check(condition.as_ref(), current)?;
                    let mut item = current.cloned().unwrap_or_else(|| {
                        let mut fresh = Item::new();
                        fresh.insert(spec.partition_key.clone(), Value::String(pk.clone()));
                        if let Some(name) = &spec.sort_key {
                            fresh.insert(name.clone(), Value::String(sk.clone()));
                        }
                        fresh
                    });
                    for (name, value) in set {
                        item.insert(name, value);
                    }
                    if item_key(&spec, &item)? != (pk.clone(), sk.clone()) {
                        return Err(TableError::InvalidItem(
                            "an update cannot change the item's key".into(),
                        ));
                    }
                    Ok(item)
                })
            })
            .await
    }

    async fn delete(&self, table: &str, key: &Key) -> Result<(), TableError> {
        let spec = self.spec(table)?;
        let (pk, sk) = lookup_key(&spec, key)?;
        let table = table.to_owned();
        self.db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM items WHERE tbl = ? AND pk = ? AND sk = ?")
                    .map_err(backend)?
                    .execute(params![table, pk, sk])
                    .map_err(backend)?;
                Ok(())
            })
            .await
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
            let spec = self.spec(&put.table)?;
            let (pk, sk) = item_key(&spec, &put.item)?;
            // DynamoDB refuses two writes to one item in a transaction; so does this.
            if !seen.insert((put.table.clone(), pk.clone(), sk.clone())) {
                return Err(TableError::InvalidItem(
                    "a transaction cannot write the same item twice".into(),
                ));
            }
            keyed.push((pk, sk, encode(&put.item)?));
        }
        self.db
            .write(move |conn| {
                for (i, (put, (pk, sk, _))) in puts.iter().zip(&keyed).enumerate() {
                    if let Some(condition) = &put.condition {
                        let current = stored_for(conn, &put.table, pk, sk, condition)?;
                        if !condition.eval(current.as_ref()) {
                            return Err(TableError::TransactionConditionFailed(i));
                        }
                    }
                }
                for (put, (pk, sk, doc)) in puts.iter().zip(&keyed) {
                    store_doc(conn, &put.table, pk, sk, doc)?;
                }
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_item_is_read_only_as_far_as_the_wanted_attributes() {
        // Past "revision" the text is not even JSON: a scan that stops there never sees it.
        let doc = r#"{"jobId": "j", "revision": 7, "outputs": {"yaml": "#;
        let item = pick_attributes(doc, &["revision", "jobId"]).unwrap();
        assert_eq!(
            item,
            json!({"jobId": "j", "revision": 7})
                .as_object()
                .unwrap()
                .clone()
        );
        // Nothing wanted (a NotExists condition): nothing read.
        assert!(pick_attributes(doc, &[]).unwrap().is_empty());
        // Wanting what is not there reads to the end.
        assert!(pick_attributes(doc, &["missing"]).is_err());
    }

    #[test]
    fn a_scan_finds_attributes_anywhere_and_leaves_out_missing_ones() {
        let doc = r#"{"a": {"revision": 1}, "b": [1, "x"], "revision": 2, "c": null}"#;
        let item = pick_attributes(doc, &["revision", "missing"]).unwrap();
        assert_eq!(item, json!({"revision": 2}).as_object().unwrap().clone());
        assert!(pick_attributes(r#"{"a": 1} x"#, &["b"]).is_err());
        assert!(pick_attributes("[1]", &["a"]).is_err());
    }

    #[test]
    fn a_prefix_ends_before_the_next_character() {
        let top = char::MAX;
        assert_eq!(prefix_end("a#").as_deref(), Some("a$"));
        assert_eq!(prefix_end("é").as_deref(), Some("ê"));
        assert_eq!(prefix_end(&format!("a{top}{top}")).as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{d7ff}").as_deref(), Some("\u{e000}"));
        assert_eq!(prefix_end(&top.to_string()), None);
        assert_eq!(prefix_end(""), None);
    }

    /// A query by prefix seeks the key's index to the first match and stops after the
    /// last; it does not read the rest of the partition.
    #[test]
    fn a_query_by_prefix_is_a_range_of_the_key() {
        let conn = Connection::open_in_memory().unwrap();
        for statement in SCHEMA {
            conn.execute_batch(statement).unwrap();
        }
        let plan = |options: &QueryOptions| {
            let (sql, args) = query_sql("t", "u1", options, 10).unwrap();
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap();
            rows.collect::<Result<Vec<_>, _>>().unwrap().join("; ")
        };
        for descending in [false, true] {
            let options = QueryOptions {
                sort_prefix: Some("a#".into()),
                descending,
                cursor: Some(encode_cursor("a#1")),
                ..QueryOptions::default()
            };
            let got = plan(&options);
            assert!(
                got.contains(
                    "USING INDEX sqlite_autoindex_items_1 (tbl=? AND pk=? AND sk>? AND sk<?)"
                ),
                "{got}"
            );
            assert!(!got.contains("TEMP B-TREE"), "sorted by the index: {got}");
        }
    }

    #[test]
    fn a_condition_reads_only_its_attributes() {
        let doc = r#"{"pk":"a","revision":3,"big":{"list":[1,2,{"x":"y"}]},"s":"t\"u","n":null}"#;
        let got = |names: &[&str]| {
            decode_attributes(rusqlite::types::ValueRef::Text(doc.as_bytes()), names)
        };
        assert_eq!(got(&["revision"]).unwrap(), item(json!({"revision": 3})));
        assert_eq!(
            got(&["s", "n", "missing"]).unwrap(),
            item(json!({"s": "t\"u", "n": null}))
        );
        assert_eq!(got(&[]).unwrap(), Item::new());
        let c = Condition::And(vec![
            Condition::eq("revision", 3),
            Condition::Or(vec![Condition::ne("s", "x"), Condition::eq("revision", 4)]),
            Condition::Exists,
        ]);
        assert_eq!(c.attributes(), ["revision", "s"]);
        assert!(c.eval(Some(&got(&c.attributes()).unwrap())));
        assert!(decode_attributes(rusqlite::types::ValueRef::Text(b"[1]"), &["a"]).is_err());
        assert!(decode_attributes(rusqlite::types::ValueRef::Text(b"{} x"), &["a"]).is_err());
    }

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

    /// A file from before items were a rowid table keeps its items and is rebuilt once.
    #[tokio::test]
    async fn a_file_with_items_without_rowid_is_rebuilt_with_its_items() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE table_specs (
                     name TEXT PRIMARY KEY, partition_key TEXT NOT NULL, sort_key TEXT
                 ) WITHOUT ROWID;
                 CREATE TABLE items (
                     tbl TEXT NOT NULL, pk TEXT NOT NULL, sk TEXT NOT NULL,
                     doc TEXT NOT NULL, rev INTEGER NOT NULL,
                     PRIMARY KEY (tbl, pk, sk)
                 ) WITHOUT ROWID;
                 INSERT INTO table_specs VALUES ('e', 'u', 's');
                 INSERT INTO items VALUES ('e', 'bond', 'b', '{\"u\":\"bond\",\"s\":\"b\"}', 1);
                 INSERT INTO items VALUES ('e', 'bond', 'a', '{\"u\":\"bond\",\"s\":\"a\"}', 2);",
            )
            .unwrap();
        }
        let schema = || {
            let conn = Connection::open(&path).unwrap();
            conn.query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'items'",
                [],
                |r| r.get::<_, String>(0),
            )
            .unwrap()
        };
        for _ in 0..2 {
            let t = SqliteTables::open(&path).await.unwrap();
            assert!(!schema().contains("WITHOUT ROWID"), "{}", schema());
            t.ensure_table(&TableSpec::new("e", "u", Some("s")))
                .await
                .unwrap();
            let page = t
                .query("e", "bond", &QueryOptions::default())
                .await
                .unwrap();
            let sks: Vec<_> = page.items.iter().map(|i| i["s"].clone()).collect();
            assert_eq!(sks[..2], [json!("a"), json!("b")]);
            t.put("e", item(json!({"u": "bond", "s": "c"})), None)
                .await
                .unwrap();
        }
        let t = SqliteTables::open(&path).await.unwrap();
        let page = t
            .query("e", "bond", &QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(page.items.len(), 3);
    }
}
