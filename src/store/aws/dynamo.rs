//! The Tables port on DynamoDB. Items map to and from DynamoDB through serde_dynamo;
//! conditions become condition expressions; a query page's cursor is the last returned
//! item's key. Reads are strongly consistent, so a write is seen by the next read as it is
//! by the embedded adapter.

mod expr;
mod schema;

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use serde_json::Value;

use self::expr::{decode_cursor, encode_cursor, from_dynamo, to_dynamo, Placeholders};
use self::schema::KeyNames;
use super::Failure;
use crate::store::tables::{
    check_key_sizes, Condition, Item, Key, Page, QueryOptions, TableError, TableSpec, Tables,
    TransactPut,
};

/// DynamoDB's limit of writes in one TransactWriteItems.
const MAX_TRANSACTION: usize = 100;

/// The Tables port on DynamoDB. The key schema of each table is read once and cached,
/// because the port addresses items by key values alone.
pub struct DynamoTables {
    client: Client,
    keys: RwLock<HashMap<String, KeyNames>>,
}

impl DynamoTables {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            keys: RwLock::new(HashMap::new()),
        }
    }

    fn error(&self, table: &str, failure: Failure, condition: Option<&Condition>) -> TableError {
        if failure.is("ResourceNotFoundException") {
            self.keys.write().expect("key cache lock").remove(table);
            TableError::NotFound(table.to_owned())
        } else if failure.is("ConditionalCheckFailedException") {
            match condition {
                Some(Condition::NotExists) => TableError::AlreadyExists,
                _ => TableError::ConditionFailed,
            }
        } else if failure.transient {
            TableError::Unavailable(failure.message)
        } else if failure.is_any(&["ValidationException", "SerializationException"]) {
            TableError::InvalidItem(failure.message)
        } else {
            TableError::Backend(failure.message)
        }
    }
}

fn check_transaction(puts: &[TransactPut]) -> Result<(), TableError> {
    if puts.len() > MAX_TRANSACTION {
        return Err(TableError::InvalidItem(format!(
            "a transaction holds at most {MAX_TRANSACTION} writes, not {}",
            puts.len()
        )));
    }
    Ok(())
}

#[async_trait]
impl Tables for DynamoTables {
    async fn ensure_table(&self, spec: &TableSpec) -> Result<bool, TableError> {
        self.ensure(spec).await
    }

    async fn put(
        &self,
        table: &str,
        item: Item,
        condition: Option<Condition>,
    ) -> Result<(), TableError> {
        let names = self.key_names(table).await?;
        names.check_item(&item)?;
        let mut placeholders = Placeholders::default();
        let expression = condition
            .as_ref()
            .map(|c| placeholders.condition(c, &names.partition))
            .transpose()?;
        let (attr_names, attr_values) = placeholders.into_parts();
        self.client
            .put_item()
            .table_name(table)
            .set_item(Some(to_dynamo(&item)?))
            .set_condition_expression(expression)
            .set_expression_attribute_names(attr_names)
            .set_expression_attribute_values(attr_values)
            .send()
            .await
            .map_err(|e| self.error(table, e.into(), condition.as_ref()))?;
        Ok(())
    }

    async fn get(&self, table: &str, key: &Key) -> Result<Option<Item>, TableError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(self.key_map(table, key).await?))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(table, e.into(), None))?;
        out.item.map(from_dynamo).transpose()
    }

    async fn query(
        &self,
        table: &str,
        partition: &str,
        options: &QueryOptions,
    ) -> Result<Page, TableError> {
        check_key_sizes(partition, None)?;
        let names = self.key_names(table).await?;
        let limit = options.limit.max(1);
        let mut start = options.cursor.as_deref().map(decode_cursor).transpose()?;
        // DynamoDB would refuse a start key of another partition or shape with a
        // ValidationException, indistinguishable from the store's own mistakes.
        if let Some(key) = &start {
            let ours = key.len() == 1 + usize::from(names.sort.is_some())
                && key.get(&names.partition) == Some(&AttributeValue::S(partition.to_owned()))
                && names.sort.as_ref().is_none_or(|s| key.contains_key(s));
            if !ours {
                return Err(TableError::InvalidCursor(
                    "it is not a cursor of this query".to_owned(),
                ));
            }
        }
        // One item more than asked tells whether another page exists, so the last page
        // says so (DynamoDB alone would hand out a cursor to an empty page).
        let mut raw: Vec<HashMap<String, AttributeValue>> = Vec::new();
        loop {
            let mut placeholders = Placeholders::default();
            let mut expression = format!(
                "{} = {}",
                placeholders.name(&names.partition),
                placeholders.value(AttributeValue::S(partition.to_owned()))
            );
            if let Some(prefix) = &options.sort_prefix {
                let sort = names.sort.as_deref().ok_or_else(|| {
                    TableError::InvalidItem(format!("table {table:?} has no sort key"))
                })?;
                expression += &format!(
                    " AND begins_with({}, {})",
                    placeholders.name(sort),
                    placeholders.value(AttributeValue::S(prefix.clone()))
                );
            }
            let (attr_names, attr_values) = placeholders.into_parts();
            let out = self
                .client
                .query()
                .table_name(table)
                .key_condition_expression(expression)
                .set_expression_attribute_names(attr_names)
                .set_expression_attribute_values(attr_values)
                .scan_index_forward(!options.descending)
                .consistent_read(true)
                .limit(i32::try_from(limit + 1 - raw.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.error(table, e.into(), None))?;
            start = out.last_evaluated_key.clone();
            raw.extend(out.items.unwrap_or_default());
            if raw.len() > limit || start.is_none() {
                break;
            }
        }
        let next = if raw.len() > limit {
            raw.truncate(limit);
            let last = raw.last().expect("limit is at least 1");
            let key = [Some(&names.partition), names.sort.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|k| Some((k.clone(), last.get(k)?.clone())))
                .collect();
            Some(encode_cursor(key)?)
        } else {
            None
        };
        let items = raw.into_iter().map(from_dynamo).collect::<Result<_, _>>()?;
        Ok(Page { items, next })
    }

    async fn update(
        &self,
        table: &str,
        key: &Key,
        set: Item,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        let names = self.key_names(table).await?;
        let key_map = self.key_map(table, key).await?;
        let mut placeholders = Placeholders::default();
        let mut assignments = Vec::new();
        for (attr, value) in &set {
            // DynamoDB refuses to SET a key attribute, even to its own value.
            if let Some(AttributeValue::S(current)) = key_map.get(attr) {
                if value != &Value::String(current.clone()) {
                    return Err(TableError::InvalidItem(format!(
                        "update cannot change the key attribute {attr:?}"
                    )));
                }
                continue;
            }
            let n = placeholders.name(attr);
            let v = placeholders.json_value(value)?;
            assignments.push(format!("{n} = {v}"));
        }
        let update = (!assignments.is_empty()).then(|| format!("SET {}", assignments.join(", ")));
        let expression = condition
            .as_ref()
            .map(|c| placeholders.condition(c, &names.partition))
            .transpose()?;
        let (attr_names, attr_values) = placeholders.into_parts();
        let out = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(key_map))
            .set_update_expression(update)
            .set_condition_expression(expression)
            .set_expression_attribute_names(attr_names)
            .set_expression_attribute_values(attr_values)
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.error(table, e.into(), condition.as_ref()))?;
        from_dynamo(out.attributes.unwrap_or_default())
    }

    async fn delete(&self, table: &str, key: &Key) -> Result<(), TableError> {
        self.client
            .delete_item()
            .table_name(table)
            .set_key(Some(self.key_map(table, key).await?))
            .send()
            .await
            .map_err(|e| self.error(table, e.into(), None))?;
        Ok(())
    }

    async fn transact_put(&self, puts: Vec<TransactPut>) -> Result<(), TableError> {
        check_transaction(&puts)?;
        if puts.is_empty() {
            return Ok(());
        }
        let mut items = Vec::with_capacity(puts.len());
        for put in &puts {
            let names = self.key_names(&put.table).await?;
            names.check_item(&put.item)?;
            let mut placeholders = Placeholders::default();
            let expression = put
                .condition
                .as_ref()
                .map(|c| placeholders.condition(c, &names.partition))
                .transpose()?;
            let (attr_names, attr_values) = placeholders.into_parts();
            let write = Put::builder()
                .table_name(&put.table)
                .set_item(Some(to_dynamo(&put.item)?))
                .set_condition_expression(expression)
                .set_expression_attribute_names(attr_names)
                .set_expression_attribute_values(attr_values)
                .build()
                .map_err(|e| TableError::InvalidItem(e.to_string()))?;
            items.push(TransactWriteItem::builder().put(write).build());
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let Err(err) = result else { return Ok(()) };
        let reasons: Vec<Option<String>> = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let failure = Failure::from(err);
        if let Some(index) = reasons
            .iter()
            .position(|c| c.as_deref() == Some("ConditionalCheckFailed"))
        {
            return Err(TableError::TransactionConditionFailed(index));
        }
        let conflict = reasons.iter().flatten().any(|c| {
            matches!(
                c.as_str(),
                "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
            )
        });
        if conflict {
            return Err(TableError::Unavailable(failure.message));
        }
        let tables: Vec<&str> = puts.iter().map(|p| p.table.as_str()).collect();
        Err(self.error(&tables.join(", "), failure, None))
    }
}
