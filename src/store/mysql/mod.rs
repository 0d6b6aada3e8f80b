//! The ViewPort port on MySQL or MariaDB: the WordPress database the portal publishes to.
//! The database may be a live WordPress one, so the migrations only create what is
//! missing, and the pipeline writes rows the way WordPress itself would.

mod publish;
mod viewport;

use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::{Connection, Executor, MySqlConnection, MySqlPool};

use crate::store::viewport::ViewPortError;

/// The migrations, in order. Each is a script of `CREATE TABLE IF NOT EXISTS`, run in full
/// on every `migrate`: there is no ledger table to write into a WordPress database, and
/// running them again changes nothing.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_wordpress_tables.sql",
        include_str!("../../../migrations/mysql/0001_wordpress_tables.sql"),
    ),
    (
        "0002_image_tables.sql",
        include_str!("../../../migrations/mysql/0002_image_tables.sql"),
    ),
    (
        "0003_k8or_publish_job.sql",
        include_str!("../../../migrations/mysql/0003_k8or_publish_job.sql"),
    ),
];

/// SQL modes under which WordPress's own table definitions (zero-date defaults) fail, as
/// WordPress itself drops them from its sessions (`wpdb::set_sql_mode`). MySQL 8 has the
/// first two on by default.
const INCOMPATIBLE_MODES: &[&str] = &["NO_ZERO_DATE", "NO_ZERO_IN_DATE", "TRADITIONAL"];

const POOL_SIZE: u32 = 10;

/// MySQL error numbers the adapter tells apart.
pub(crate) mod code {
    pub const DUPLICATE_KEY: u16 = 1062;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const DEADLOCK: u16 = 1213;
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const READ_ONLY: u16 = 1290;
}

/// The ViewPort database.
#[derive(Debug, Clone)]
pub struct MysqlViewPort {
    pool: MySqlPool,
}

impl MysqlViewPort {
    /// Connects to `mysql://user:password@host:port/database`; a URL without a database
    /// uses `default_database` (the configured `viewport.database`). Call `migrate` before
    /// use.
    pub async fn connect(url: &str, default_database: &str) -> Result<Self, ViewPortError> {
        let mut options: MySqlConnectOptions = url
            .parse()
            .map_err(|e| ViewPortError::Backend(format!("invalid MySQL URL: {e}")))?;
        if options.get_database().is_none() {
            options = options.database(default_database);
        }
        let pool = MySqlPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options)
            .await
            .map_err(error)?;
        Ok(Self { pool })
    }

    pub fn from_pool(pool: MySqlPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Runs every migration on a connection of its own, whose SQL mode WordPress's table
    /// definitions accept; the pool's connections keep the server's mode.
    async fn run_migrations(&self) -> Result<(), ViewPortError> {
        let mut conn = MySqlConnection::connect_with(&self.pool.connect_options())
            .await
            .map_err(error)?;
        let mode: String = sqlx::query_scalar("SELECT @@SESSION.sql_mode")
            .fetch_one(&mut conn)
            .await
            .map_err(error)?;
        sqlx::query("SET SESSION sql_mode = ?")
            .bind(compatible_mode(&mode))
            .execute(&mut conn)
            .await
            .map_err(error)?;
        for (name, script) in MIGRATIONS {
            conn.execute(sqlx::raw_sql(script))
                .await
                .map_err(|e| ViewPortError::Backend(format!("migration {name}: {e}")))?;
        }
        conn.close().await.map_err(error)
    }
}

/// The SQL mode without the modes WordPress's schema cannot be created under.
fn compatible_mode(mode: &str) -> String {
    mode.split(',')
        .filter(|m| !m.is_empty() && !INCOMPATIBLE_MODES.contains(m))
        .collect::<Vec<_>>()
        .join(",")
}

/// The MySQL error number of a database error.
pub(crate) fn error_number(e: &sqlx::Error) -> Option<u16> {
    e.as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .map(MySqlDatabaseError::number)
}

/// Maps a driver error: what may pass (a lost connection, a full pool, a deadlock victim,
/// a failover's read-only moment) is `Unavailable`; the rest `Backend`.
pub(crate) fn error(e: sqlx::Error) -> ViewPortError {
    let transient = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => matches!(
            error_number(&e),
            Some(
                code::LOCK_WAIT_TIMEOUT
                    | code::DEADLOCK
                    | code::TOO_MANY_CONNECTIONS
                    | code::SERVER_SHUTDOWN
                    | code::READ_ONLY
            )
        ),
        _ => false,
    };
    if transient {
        ViewPortError::Unavailable(e.to_string())
    } else {
        ViewPortError::Backend(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incompatible_modes_are_dropped_and_the_rest_kept() {
        assert_eq!(
            compatible_mode(
                "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
                 ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
            ),
            "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
        );
        assert_eq!(compatible_mode(""), "");
    }

    #[test]
    fn every_migration_file_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/mysql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(files, listed);
    }

    #[test]
    fn migrations_never_drop_or_alter() {
        for (name, script) in MIGRATIONS {
            let upper = script.to_uppercase();
            for word in ["DROP ", "ALTER ", "TRUNCATE ", "DELETE ", "RENAME "] {
                assert!(!upper.contains(word), "{name} contains {word}");
            }
            let creates = upper.matches("CREATE TABLE").count();
            assert_eq!(
                creates,
                upper.matches("CREATE TABLE IF NOT EXISTS").count(),
                "{name}: every CREATE TABLE must be IF NOT EXISTS"
            );
        }
    }
}
