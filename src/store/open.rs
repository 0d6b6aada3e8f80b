//! Building the ports from settings, and provisioning what they need: queues (each
//! dead-letter queue before its source), tables, buckets, the ViewPort schema and the
//! seed's bootstrap data. Provisioning is idempotent and says what it changed.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::embedded::{FolderBlobs, SqliteQueue, SqliteTables, SqliteViewPort};
use super::{BlobError, QueueError, Stores, TableError, ViewPortError};
use crate::bootstrap::{self, BootstrapError};
use crate::config::{Backend, Settings};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use the data folder {path}: {source}")]
    DataDir { path: PathBuf, source: io::Error },
    #[error("cannot open the database {path}: {source}")]
    Database {
        path: PathBuf,
        source: super::embedded::db::DbError,
    },
    /// The settings ask for a backend this build cannot serve, or lack what it needs.
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot open the ViewPort database: {0}")]
    ViewPort(ViewPortError),
}

/// Opens the ports of the configured backend.
pub async fn open(settings: &Settings) -> Result<Stores, OpenError> {
    match settings.backend() {
        Backend::Embedded { path } => open_embedded(&path).await,
        backend @ Backend::Aws { .. } => open_aws(settings, &backend).await,
    }
}

/// Opens SQS, DynamoDB and S3 (credentials from the default chain) and the ViewPort on
/// MySQL (`mysql_url`).
#[cfg(feature = "aws")]
async fn open_aws(settings: &Settings, backend: &Backend) -> Result<Stores, OpenError> {
    use secrecy::ExposeSecret;

    use super::aws::{AwsConnection, DynamoTables, S3Blobs, SqsQueue};
    use super::mysql::MysqlViewPort;

    let url = settings.mysql_url.as_ref().ok_or_else(|| {
        OpenError::Unsupported(
            "backend \"aws\" needs the ViewPort database: set K8OR_MYSQL_URL \
             (mysql://user:password@host:3306/database)"
                .into(),
        )
    })?;
    let connection = AwsConnection::from_backend(backend)
        .ok_or_else(|| OpenError::Unsupported("not an AWS backend".into()))?;
    let clients = connection.connect().await;
    let viewport = MysqlViewPort::connect(url.expose_secret(), &settings.viewport.database)
        .await
        .map_err(OpenError::ViewPort)?;
    Ok(Stores {
        queue: Arc::new(SqsQueue::new(clients.sqs)),
        tables: Arc::new(DynamoTables::new(clients.dynamodb)),
        blobs: Arc::new(S3Blobs::new(clients.s3)),
        viewport: Arc::new(viewport),
    })
}

#[cfg(not(feature = "aws"))]
async fn open_aws(_settings: &Settings, _backend: &Backend) -> Result<Stores, OpenError> {
    Err(OpenError::Unsupported(
        "backend \"aws\" is not in this build: rebuild with the `aws` feature \
         (the k8or-api and k8or-worker binaries have it by default)"
            .into(),
    ))
}

/// Opens the embedded ports on a data folder: `queue.db`, `tables.db`, `viewport.db` and
/// `blobs/`. Several processes may open the same folder at once.
pub async fn open_embedded(data_dir: &Path) -> Result<Stores, OpenError> {
    tokio::fs::create_dir_all(data_dir)
        .await
        .map_err(|source| OpenError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
    let db_error = |name: &str| {
        let path = data_dir.join(name);
        move |source| OpenError::Database { path, source }
    };
    let queue = SqliteQueue::open(&data_dir.join("queue.db"))
        .await
        .map_err(db_error("queue.db"))?;
    let tables = SqliteTables::open(&data_dir.join("tables.db"))
        .await
        .map_err(db_error("tables.db"))?;
    let viewport = SqliteViewPort::open(&data_dir.join("viewport.db"))
        .await
        .map_err(db_error("viewport.db"))?;
    let blobs_dir = data_dir.join("blobs");
    let blobs = FolderBlobs::open(&blobs_dir)
        .await
        .map_err(|source| OpenError::DataDir {
            path: blobs_dir,
            source,
        })?;
    Ok(Stores {
        queue: Arc::new(queue),
        tables: Arc::new(tables),
        blobs: Arc::new(blobs),
        viewport: Arc::new(viewport),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("provisioning queue {name}: {source}")]
    Queue { name: String, source: QueueError },
    #[error("provisioning table {name}: {source}")]
    Table { name: String, source: TableError },
    #[error("provisioning bucket {name}: {source}")]
    Bucket { name: String, source: BlobError },
    #[error("migrating the ViewPort schema: {0}")]
    ViewPort(#[from] ViewPortError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
}

impl ProvisionError {
    /// Whether running provision again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Queue { source, .. } => source.is_retryable(),
            Self::Table { source, .. } => source.is_retryable(),
            Self::Bucket { source, .. } => source.is_retryable(),
            Self::ViewPort(e) => e.is_retryable(),
            Self::Bootstrap(BootstrapError::Table(e)) => e.is_retryable(),
            Self::Bootstrap(BootstrapError::ViewPort(e)) => e.is_retryable(),
        }
    }
}

/// What provisioning made, and what it found in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
}

impl ProvisionReport {
    /// False when the run found everything in place and wrote nothing.
    pub fn changed(&self) -> bool {
        !self.created.is_empty()
    }

    fn record(&mut self, what: String, created: bool) {
        if created {
            self.created.push(what);
        } else {
            self.existing.push(what);
        }
    }
}

impl fmt::Display for ProvisionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.created {
            writeln!(f, "created  {c}")?;
        }
        for e in &self.existing {
            writeln!(f, "exists   {e}")?;
        }
        if self.changed() {
            write!(
                f,
                "{} created, {} already there",
                self.created.len(),
                self.existing.len()
            )
        } else {
            write!(
                f,
                "nothing changed: all {} already there",
                self.existing.len()
            )
        }
    }
}

/// Creates every queue, table and bucket the settings name, migrates the ViewPort schema
/// and loads the bootstrap data. Safe to run again, and from several processes at once.
pub async fn provision(
    stores: &Stores,
    settings: &Settings,
) -> Result<ProvisionReport, ProvisionError> {
    let mut report = ProvisionReport::default();
    // queue_specs lists each dead-letter queue before the queue that sends to it.
    for spec in settings.queue_specs() {
        let created =
            stores
                .queue
                .ensure_queue(&spec)
                .await
                .map_err(|source| ProvisionError::Queue {
                    name: spec.name.clone(),
                    source,
                })?;
        report.record(format!("queue {}", spec.name), created);
    }
    for spec in settings.tables.specs() {
        let created =
            stores
                .tables
                .ensure_table(&spec)
                .await
                .map_err(|source| ProvisionError::Table {
                    name: spec.name.clone(),
                    source,
                })?;
        report.record(format!("table {}", spec.name), created);
    }
    for bucket in [&settings.buckets.temporary, &settings.buckets.app_image] {
        let created =
            stores
                .blobs
                .ensure_bucket(bucket)
                .await
                .map_err(|source| ProvisionError::Bucket {
                    name: bucket.clone(),
                    source,
                })?;
        report.record(format!("bucket {bucket}"), created);
    }
    // Left there: the uploads of jobs dead-lettered at validate, and what a dying process
    // held. A re-driven job's validate still reads its upload: see `temporary_expiry_days`.
    let temporary = &settings.buckets.temporary;
    stores
        .blobs
        .expire_objects(temporary, settings.temporary_expiry_days())
        .await
        .map_err(|source| ProvisionError::Bucket {
            name: temporary.clone(),
            source,
        })?;
    // `migrate` does not say whether it created anything; a schema that already answers
    // a query of the pipeline's own table was there before.
    let schema_existed = stores.viewport.free_guids().await.is_ok();
    stores.viewport.migrate().await?;
    report.record("ViewPort schema".into(), !schema_existed);
    let loaded = bootstrap::load(stores, settings).await?;
    for what in loaded.created {
        report.record(what, true);
    }
    for what in loaded.existing {
        report.record(what, false);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tables::TablesExt;
    use crate::store::Key;

    #[tokio::test]
    async fn provision_twice_changes_nothing_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().join("data"),
            ..Settings::default()
        };
        let stores = open(&settings).await.unwrap();
        let first = provision(&stores, &settings).await.unwrap();
        assert!(first.changed());
        assert!(first.existing.is_empty(), "{first}");
        // 8 queues, 11 tables, 2 buckets, the schema and 4 kinds of bootstrap data.
        assert_eq!(first.created.len(), 8 + 11 + 2 + 1 + 4, "{first}");

        let again = open(&settings).await.unwrap();
        let second = provision(&again, &settings).await.unwrap();
        assert!(!second.changed(), "{second}");
        assert_eq!(second.existing.len(), first.created.len());
        assert!(second.to_string().contains("nothing changed"));

        let item: Option<crate::model::StaticDataItem> = again
            .tables
            .get_as(&settings.tables.static_data, &Key::partition("1947"))
            .await
            .unwrap();
        assert_eq!(
            item.unwrap().criteria.aircraft_tail_number,
            ["41-38116", "42-13400"]
        );
        let base: Option<crate::model::BaseKustomizeItem> = again
            .tables
            .get_as(&settings.tables.base_kustomize, &Key::partition("default"))
            .await
            .unwrap();
        assert_eq!(base.unwrap().helm_chart_data, crate::model::base_template());
        let users = again.viewport.users().await.unwrap();
        assert_eq!(
            users
                .iter()
                .map(|u| u.display_name.as_str())
                .collect::<Vec<_>>(),
            ["James Bond", "Madame Coco", "k8or Admin"]
        );
        assert_eq!(
            again.viewport.free_guids().await.unwrap(),
            bootstrap::GUID_POOL_SIZE
        );
    }

    #[tokio::test]
    async fn the_aws_backend_is_refused_with_a_reason() {
        let settings = Settings {
            backend: crate::config::BackendKind::Aws,
            ..Settings::default()
        };
        let err = open(&settings).await.err().expect("refused");
        assert!(err.to_string().contains("aws"), "{err}");
    }
}
