//! Tables and their key schemas: creating a table the way `provision` needs it, and
//! learning the key attribute names the port's `Key` leaves out.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableDescription, TableStatus,
};

use super::DynamoTables;
use crate::store::aws::Failure;
use crate::store::tables::{check_key_sizes, Item, Key, TableError, TableSpec};

/// How long `ensure_table` waits for a new table to become ACTIVE.
const ACTIVE_WAIT: Duration = Duration::from_secs(300);
const ACTIVE_POLL: Duration = Duration::from_millis(250);

/// A table's key attribute names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KeyNames {
    pub partition: String,
    pub sort: Option<String>,
}

impl KeyNames {
    /// Refuses an item whose key values are over DynamoDB's limits (as the embedded store
    /// does), before the call; a missing or non-string key is DynamoDB's to refuse.
    pub(super) fn check_item(&self, item: &Item) -> Result<(), TableError> {
        let value = |name: &String| item.get(name).and_then(|v| v.as_str());
        match value(&self.partition) {
            Some(partition) => check_key_sizes(partition, self.sort.as_ref().and_then(value)),
            None => Ok(()),
        }
    }

    fn from_description(table: &TableDescription) -> Self {
        let find = |kind: KeyType| {
            table
                .key_schema()
                .iter()
                .find(|k| *k.key_type() == kind)
                .map(|k| k.attribute_name().to_owned())
        };
        Self {
            partition: find(KeyType::Hash).unwrap_or_default(),
            sort: find(KeyType::Range),
        }
    }
}

impl DynamoTables {
    /// Creates the table if missing, waits until it is ACTIVE, and checks its keys.
    pub(super) async fn ensure(&self, spec: &TableSpec) -> Result<bool, TableError> {
        let created = match self.describe(&spec.name).await {
            Ok(_) => false,
            Err(TableError::NotFound(_)) => self.create(spec).await?,
            Err(e) => return Err(e),
        };
        let names = KeyNames::from_description(&self.wait_active(&spec.name).await?);
        let wanted = KeyNames {
            partition: spec.partition_key.clone(),
            sort: spec.sort_key.clone(),
        };
        if names != wanted {
            return Err(TableError::Backend(format!(
                "table {:?} exists with keys {names:?}, not the configured {wanted:?}",
                spec.name
            )));
        }
        self.keys
            .write()
            .expect("key cache lock")
            .insert(spec.name.clone(), names);
        Ok(created)
    }

    pub(super) async fn describe(&self, table: &str) -> Result<TableDescription, TableError> {
        let out = self
            .client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| self.error(table, e.into(), None))?;
        out.table
            .ok_or_else(|| TableError::Backend(format!("DescribeTable of {table:?} gave no table")))
    }

    pub(super) async fn key_names(&self, table: &str) -> Result<KeyNames, TableError> {
        if let Some(names) = self.keys.read().expect("key cache lock").get(table) {
            return Ok(names.clone());
        }
        let names = KeyNames::from_description(&self.describe(table).await?);
        self.keys
            .write()
            .expect("key cache lock")
            .insert(table.to_owned(), names.clone());
        Ok(names)
    }

    pub(super) async fn key_map(
        &self,
        table: &str,
        key: &Key,
    ) -> Result<HashMap<String, AttributeValue>, TableError> {
        check_key_sizes(&key.partition, key.sort.as_deref())?;
        let names = self.key_names(table).await?;
        let mut map = HashMap::from([(
            names.partition.clone(),
            AttributeValue::S(key.partition.clone()),
        )]);
        match (&names.sort, &key.sort) {
            (Some(name), Some(value)) => {
                map.insert(name.clone(), AttributeValue::S(value.clone()));
            }
            (None, None) => {}
            (Some(name), None) => {
                return Err(TableError::InvalidItem(format!(
                    "table {table:?} needs the sort key {name:?}"
                )))
            }
            (None, Some(_)) => {
                return Err(TableError::InvalidItem(format!(
                    "table {table:?} has no sort key"
                )))
            }
        }
        Ok(map)
    }

    async fn wait_active(&self, table: &str) -> Result<TableDescription, TableError> {
        let deadline = tokio::time::Instant::now() + ACTIVE_WAIT;
        loop {
            let description = self.describe(table).await?;
            if description.table_status() == Some(&TableStatus::Active) {
                return Ok(description);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(TableError::Unavailable(format!(
                    "table {table:?} is not ACTIVE after {ACTIVE_WAIT:?}"
                )));
            }
            tokio::time::sleep(ACTIVE_POLL).await;
        }
    }

    async fn create(&self, spec: &TableSpec) -> Result<bool, TableError> {
        let definition = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| TableError::InvalidItem(e.to_string()))
        };
        let element = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| TableError::InvalidItem(e.to_string()))
        };
        let mut request = self
            .client
            .create_table()
            .table_name(&spec.name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(definition(&spec.partition_key)?)
            .key_schema(element(&spec.partition_key, KeyType::Hash)?);
        if let Some(sort) = &spec.sort_key {
            request = request
                .attribute_definitions(definition(sort)?)
                .key_schema(element(sort, KeyType::Range)?);
        }
        match request.send().await.map_err(Failure::from) {
            Ok(_) => Ok(true),
            // Someone else created it first.
            Err(f) if f.is("ResourceInUseException") => Ok(false),
            Err(f) => Err(self.error(&spec.name, f, None)),
        }
    }
}
