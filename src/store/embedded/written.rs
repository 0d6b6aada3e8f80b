//! The items this process wrote last, with the revision each write gave them: a
//! conditional write of an item found here checks its condition against this copy and
//! writes guarded by its revision, in one statement instead of a read and a write.
//!
//! Nothing here is trusted: a copy is only a guess at what is stored. Revisions are random
//! per write, so the guarded write succeeds only if the stored item is exactly this copy;
//! if another process (or a delete) changed it, the write changes nothing and the caller
//! reads the item as before. Reads (`get`, `query`) never look here.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::tables::Item;

/// Items remembered at most; past this the memory starts over (the next write of a
/// forgotten item costs one read more, nothing else).
const CAPACITY: usize = 4096;

/// (table, partition key, sort key).
type ItemKey = (String, String, String);

#[derive(Default)]
pub struct Written(Mutex<HashMap<ItemKey, (Item, i64)>>);

fn key(table: &str, pk: &str, sk: &str) -> ItemKey {
    (table.to_owned(), pk.to_owned(), sk.to_owned())
}

impl Written {
    /// The item as this process last wrote it, and the revision that write gave it.
    pub fn get(&self, table: &str, pk: &str, sk: &str) -> Option<(Item, i64)> {
        self.lock().get(&key(table, pk, sk)).cloned()
    }

    /// Remembers a write.
    pub fn remember(&self, table: &str, pk: &str, sk: &str, item: Item, rev: i64) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key(table, pk, sk), (item, rev));
    }

    /// Forgets an item (deleted, or written in a way whose revision is not known).
    pub fn forget(&self, table: &str, pk: &str, sk: &str) {
        self.lock().remove(&key(table, pk, sk));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ItemKey, (Item, i64)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remembers_forgets_and_starts_over_when_full() {
        let w = Written::default();
        let item: Item = json!({"a": 1}).as_object().unwrap().clone();
        w.remember("t", "p", "", item.clone(), 7);
        assert_eq!(w.get("t", "p", ""), Some((item.clone(), 7)));
        assert_eq!(
            w.get("t", "p", "s"),
            None,
            "the sort key is part of the key"
        );
        w.forget("t", "p", "");
        assert_eq!(w.get("t", "p", ""), None);
        for i in 0..CAPACITY + 1 {
            w.remember("t", &i.to_string(), "", item.clone(), 1);
        }
        assert!(w.lock().len() <= CAPACITY);
    }
}
