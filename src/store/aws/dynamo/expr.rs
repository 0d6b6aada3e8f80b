//! DynamoDB expressions from the port's conditions. Every attribute name and value goes
//! through a placeholder (`#n0`, `:v0`), so names that are reserved words in DynamoDB
//! (`timestamp`, `status`, `name`…) or that hold dashes (`part-number`) work as they are.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use crate::store::tables::{Condition, Item, TableError};

/// `ExpressionAttributeNames` and `ExpressionAttributeValues`.
pub(super) type Names = HashMap<String, String>;
pub(super) type Values = HashMap<String, AttributeValue>;

/// The placeholders of one request's expressions.
#[derive(Debug, Default)]
pub(super) struct Placeholders {
    names: Names,
    values: Values,
}

impl Placeholders {
    /// `#nK` for an attribute name; the same name gets the same placeholder.
    pub fn name(&mut self, attr: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attr) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attr.to_owned());
        placeholder
    }

    /// `:vK` for a value.
    pub fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub fn json_value(&mut self, value: &Value) -> Result<String, TableError> {
        Ok(self.value(to_attribute_value(value)?))
    }

    /// The maps for the request; `None` when empty (DynamoDB rejects empty maps).
    pub fn into_parts(self) -> (Option<Names>, Option<Values>) {
        (
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }

    /// A condition expression on the stored item. `partition_key` is what `Exists` and
    /// `NotExists` test: an item exists exactly when its partition key does.
    pub fn condition(
        &mut self,
        condition: &Condition,
        partition_key: &str,
    ) -> Result<String, TableError> {
        Ok(match condition {
            Condition::NotExists => format!("attribute_not_exists({})", self.name(partition_key)),
            Condition::Exists => format!("attribute_exists({})", self.name(partition_key)),
            Condition::Eq(attr, v) => format!("{} = {}", self.name(attr), self.json_value(v)?),
            // True for a missing attribute, as the port says.
            Condition::Ne(attr, v) => format!("{} <> {}", self.name(attr), self.json_value(v)?),
            Condition::Lt(attr, v) => format!("{} < {}", self.name(attr), self.json_value(v)?),
            Condition::And(parts) if parts.is_empty() => self.always(partition_key, true),
            Condition::Or(parts) if parts.is_empty() => self.always(partition_key, false),
            Condition::And(parts) => self.join(parts, " AND ", partition_key)?,
            Condition::Or(parts) => self.join(parts, " OR ", partition_key)?,
        })
    }

    fn join(
        &mut self,
        parts: &[Condition],
        op: &str,
        partition_key: &str,
    ) -> Result<String, TableError> {
        let compiled = parts
            .iter()
            .map(|p| self.condition(p, partition_key))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("({})", compiled.join(op)))
    }

    /// DynamoDB has no literal true or false; an empty `And` holds and an empty `Or` fails.
    fn always(&mut self, partition_key: &str, holds: bool) -> String {
        let n = self.name(partition_key);
        let op = if holds { "OR" } else { "AND" };
        format!("(attribute_exists({n}) {op} attribute_not_exists({n}))")
    }
}

pub(super) fn to_attribute_value(value: &Value) -> Result<AttributeValue, TableError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(value)
        .map_err(|e| TableError::InvalidItem(e.to_string()))
}

pub(super) fn to_dynamo(item: &Item) -> Result<HashMap<String, AttributeValue>, TableError> {
    serde_dynamo::aws_sdk_dynamodb_1::to_item(item)
        .map_err(|e| TableError::InvalidItem(e.to_string()))
}

pub(super) fn from_dynamo(item: HashMap<String, AttributeValue>) -> Result<Item, TableError> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| TableError::Decode(e.to_string()))
}

/// A query cursor: the last returned item's key, as base64 JSON. Opaque to callers.
pub(super) fn encode_cursor(key: HashMap<String, AttributeValue>) -> Result<String, TableError> {
    let json =
        serde_json::to_vec(&from_dynamo(key)?).map_err(|e| TableError::Decode(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

pub(super) fn decode_cursor(cursor: &str) -> Result<HashMap<String, AttributeValue>, TableError> {
    let bad = TableError::InvalidCursor;
    let json = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|e| bad(e.to_string()))?;
    let key: Item = serde_json::from_slice(&json).map_err(|e| bad(e.to_string()))?;
    to_dynamo(&key).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_use_placeholders_for_every_name_and_value() {
        let mut p = Placeholders::default();
        let c = Condition::And(vec![
            Condition::Exists,
            Condition::eq("status", "queued"),
            Condition::Or(vec![
                Condition::lt("revision", 3),
                Condition::ne("part-number", "x"),
            ]),
        ]);
        let expr = p.condition(&c, "jobId").unwrap();
        assert_eq!(
            expr,
            "(attribute_exists(#n0) AND #n1 = :v0 AND (#n2 < :v1 OR #n3 <> :v2))"
        );
        let (names, values) = p.into_parts();
        let names = names.unwrap();
        assert_eq!(names["#n0"], "jobId");
        assert_eq!(names["#n3"], "part-number");
        let values = values.unwrap();
        assert_eq!(values[":v0"], AttributeValue::S("queued".into()));
        assert_eq!(values[":v1"], AttributeValue::N("3".into()));
    }

    #[test]
    fn empty_and_holds_and_empty_or_fails() {
        let mut p = Placeholders::default();
        assert_eq!(
            p.condition(&Condition::And(vec![]), "pk").unwrap(),
            "(attribute_exists(#n0) OR attribute_not_exists(#n0))"
        );
        assert_eq!(
            p.condition(&Condition::Or(vec![]), "pk").unwrap(),
            "(attribute_exists(#n0) AND attribute_not_exists(#n0))"
        );
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let key = HashMap::from([
            ("username".to_owned(), AttributeValue::S("jamesbond".into())),
            ("eventKey".to_owned(), AttributeValue::S("2025#01".into())),
        ]);
        let cursor = encode_cursor(key.clone()).unwrap();
        assert_eq!(decode_cursor(&cursor).unwrap(), key);
        assert!(matches!(
            decode_cursor("not base64 !"),
            Err(TableError::InvalidCursor(_))
        ));
        assert!(matches!(
            decode_cursor(&URL_SAFE_NO_PAD.encode("[1]")),
            Err(TableError::InvalidCursor(_))
        ));
    }
}
