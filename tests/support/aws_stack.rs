//! One test's own AWS-mode backend: moto (`K8OR_TEST_AWS_ENDPOINT`) and MariaDB
//! (`K8OR_TEST_MYSQL_URL`), both started by `scripts/test`. Every queue, table and bucket gets
//! a fresh suffix and the ViewPort a fresh database (`<run db>_<suffix>`, swept by
//! `scripts/mariadb-db drop`), so tests run in parallel without meeting. The same settings
//! reach the test (in-process ports) and the binaries it starts (environment variables).

#![allow(dead_code, reason = "each test target uses a different part")]

use std::sync::Once;

use k8or::store::aws::{AwsClients, AwsConnection, Credentials};
use k8or::store::Stores;
use k8or::{Settings, Stage};
use serde_json::Value;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, Connection, MySqlConnection};
use uuid::Uuid;

/// moto accepts any key; these never leave the machine.
const MOTO_KEY_ID: &str = "test";
const MOTO_SECRET: &str = "test";
const REGION: &str = "us-east-1";

/// A test's moto endpoint, database and settings.
pub struct AwsStack {
    pub endpoint: String,
    /// The ViewPort database's URL (`mysql://…/<run db>_<suffix>`).
    pub mysql_url: String,
    pub database: String,
    /// Shared by the API that checks tokens and the `token` command that signs them.
    pub token_secret: String,
    pub suffix: String,
    pub settings: Settings,
}

/// A service's address from the environment: under CI a missing one fails the test with
/// what to do; on a developer's machine the test is skipped with a notice.
fn required_env(name: &str, start: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!(
            "{name} is not set: the AWS-mode end-to-end tests need moto and MariaDB. Run the \
             tests with scripts/test, or `{start}` first."
        ),
        _ => {
            eprintln!(
                "SKIPPED: {name} is not set; run `eval \"$(scripts/moto start)\"; \
                 eval \"$(scripts/mariadb-db create)\"` to run the AWS-mode end-to-end tests"
            );
            None
        }
    }
}

impl AwsStack {
    /// Fresh resource names and a fresh database; `tweak` adjusts the settings before they
    /// are checked. `None` (after a notice) when moto or MariaDB is not configured locally.
    pub async fn create(tweak: impl FnOnce(&mut Settings)) -> Option<Self> {
        let endpoint = required_env("K8OR_TEST_AWS_ENDPOINT", "eval \"$(scripts/moto start)\"")?;
        let run_url = required_env(
            "K8OR_TEST_MYSQL_URL",
            "eval \"$(scripts/mariadb-db create)\"",
        )?;
        let suffix = Uuid::new_v4().simple().to_string()[..12].to_owned();
        let (server, run_db) = split_database(&run_url);
        let database = format!("{run_db}_{suffix}");
        create_database(&run_url, &database).await;
        let query = run_url.find('?').map_or("", |i| &run_url[i..]);
        let mysql_url = format!("{server}/{database}{query}");

        let mut settings = Settings {
            backend: k8or::config::BackendKind::Aws,
            aws_endpoint_url: Some(endpoint.clone()),
            aws_region: REGION.into(),
            s3_path_style: true,
            mysql_url: Some(mysql_url.clone().into()),
            listen: "127.0.0.1:0".into(),
            log_format: k8or::config::LogFormat::Json,
            ..Settings::default()
        };
        rename_all(&mut settings, &suffix);
        for stage in Stage::ALL {
            let c = settings.stages.get_mut(stage);
            // Short long-polls and backoffs: a stopped worker returns within a second.
            c.wait_time_secs = 1;
            c.backoff_base_ms = 100;
            c.backoff_max_ms = 500;
        }
        tweak(&mut settings);
        settings.validate().expect("test settings are valid");
        let token_secret =
            Uuid::new_v4().simple().to_string() + &Uuid::new_v4().simple().to_string();
        settings.token_secret = Some(token_secret.clone().into());
        Some(Self {
            endpoint,
            mysql_url,
            database,
            token_secret,
            suffix,
            settings,
        })
    }

    /// The environment that gives a `k8or-api` or `k8or-worker` process these settings:
    /// every table, bucket, queue and stage value, so nothing falls back to the seed's
    /// shared names.
    pub fn child_env(&self) -> Vec<(String, String)> {
        let s = &self.settings;
        let mut env: Vec<(String, String)> = [
            ("AWS_ACCESS_KEY_ID", MOTO_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", MOTO_SECRET),
            ("AWS_REGION", REGION),
            // No instance-metadata probes on a machine that is not in EC2.
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("K8OR_BACKEND", "aws"),
            ("K8OR_AWS_ENDPOINT_URL", &self.endpoint),
            ("K8OR_AWS_REGION", REGION),
            ("K8OR_S3_PATH_STYLE", "true"),
            ("K8OR_MYSQL_URL", &self.mysql_url),
            ("K8OR_TOKEN_SECRET", &self.token_secret),
            ("K8OR_LISTEN", &s.listen),
            ("K8OR_LOG_FORMAT", "json"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let sections = [
            ("TABLES", serde_json::to_value(&s.tables)),
            ("BUCKETS", serde_json::to_value(&s.buckets)),
            ("QUEUES", serde_json::to_value(&s.queues)),
            ("VIEWPORT", serde_json::to_value(&s.viewport)),
        ];
        for (section, value) in sections {
            push_fields(
                &mut env,
                &format!("K8OR_{section}__"),
                &value.expect("settings serialize"),
            );
        }
        let stages = serde_json::to_value(&s.stages).expect("settings serialize");
        for (stage, value) in stages.as_object().expect("stages is a table") {
            // `PERSIST-METADATA`: the underscore form is read as the field's alias and
            // clashes with the built-in defaults.
            let prefix = format!("K8OR_STAGES__{}__", stage.to_uppercase());
            push_fields(&mut env, &prefix, value);
        }
        env
    }

    /// The ports, opened in this process exactly as the binaries open them
    /// (`k8or::store::open`, credentials from the default chain).
    pub async fn open_stores(&self) -> Stores {
        set_moto_credentials();
        k8or::store::open(&self.settings)
            .await
            .expect("open the AWS-mode stores")
    }

    /// Raw SDK clients, for what the ports do not show (queue attributes, key schemas).
    pub async fn clients(&self) -> AwsClients {
        AwsConnection {
            endpoint_url: Some(self.endpoint.clone()),
            region: REGION.into(),
            s3_path_style: true,
        }
        .connect_with(Credentials::new(
            MOTO_KEY_ID,
            MOTO_SECRET,
            None,
            None,
            "k8or-tests",
        ))
        .await
    }

    /// Drops the test's database (a failed test leaves it to `scripts/mariadb-db drop`).
    pub async fn drop_database(&self) {
        let options: MySqlConnectOptions = self.mysql_url.parse().expect("a MySQL URL");
        let mut conn = options.connect().await.expect("MariaDB answers");
        sqlx::query(&format!("DROP DATABASE `{}`", self.database))
            .execute(&mut conn)
            .await
            .expect("drop the test database");
        conn.close().await.expect("close");
    }
}

/// `K8OR_<SECTION>__<FIELD>=value` for each field of a settings section.
fn push_fields(env: &mut Vec<(String, String)>, prefix: &str, section: &Value) {
    for (field, value) in section.as_object().expect("a settings section is a table") {
        let value = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            // Lists (none in these sections today) would need figment's own syntax.
            other => panic!("{prefix}{field}: cannot pass {other} as a variable"),
        };
        env.push((format!("{prefix}{}", field.to_uppercase()), value));
    }
}

/// Every queue, table and bucket name with the test's suffix.
fn rename_all(s: &mut Settings, suffix: &str) {
    let t = &mut s.tables;
    for name in [
        &mut t.base_kustomize,
        &mut t.user_input_manifest,
        &mut t.k8or_kustomize,
        &mut t.user_metadata,
        &mut t.app_image_metadata,
        &mut t.user_event_log,
        &mut t.user_error_log,
        &mut t.static_data,
        &mut t.jobs,
        &mut t.user_jobs,
        &mut t.unqueued_jobs,
    ] {
        name.push_str(&format!("-{suffix}"));
    }
    s.buckets.temporary.push_str(&format!("-{suffix}"));
    s.buckets.app_image.push_str(&format!("-{suffix}"));
    for stage in Stage::ALL {
        let c = s.stages.get_mut(stage);
        c.queue.push_str(&format!("-{suffix}"));
        c.dead_letter_queue.push_str(&format!("-{suffix}"));
    }
}

/// `mysql://user@host:port/db?opts` → (`mysql://user@host:port`, `db`).
fn split_database(url: &str) -> (String, String) {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let without_query = url.split('?').next().unwrap_or(url);
    match without_query[authority_start..].find('/') {
        Some(slash) => {
            let at = authority_start + slash;
            let db = &without_query[at + 1..];
            let db = if db.is_empty() { "k8or_test" } else { db };
            (without_query[..at].to_owned(), db.to_owned())
        }
        None => (without_query.to_owned(), "k8or_test".to_owned()),
    }
}

async fn create_database(run_url: &str, name: &str) {
    let options: MySqlConnectOptions = run_url.parse().expect("K8OR_TEST_MYSQL_URL is a MySQL URL");
    let mut conn = MySqlConnection::connect_with(&options)
        .await
        .expect("the test MariaDB server answers");
    sqlx::query(&format!(
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
    ))
    .execute(&mut conn)
    .await
    .expect("create the test database");
    conn.close().await.expect("close");
}

/// `k8or::store::open` takes credentials from the default chain, as in production; in this
/// process that chain must find moto's dummy keys (and never a developer's real ones).
/// Set once, before any client is built, to the same values every caller wants.
fn set_moto_credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", MOTO_KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", MOTO_SECRET);
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

#[test]
fn database_urls_split_at_the_database() {
    assert_eq!(
        split_database("mysql://root@127.0.0.1:3306/k8or_test_ab"),
        (
            "mysql://root@127.0.0.1:3306".to_owned(),
            "k8or_test_ab".to_owned()
        )
    );
    assert_eq!(
        split_database("mysql://u:p@h/db?ssl-mode=disabled"),
        ("mysql://u:p@h".to_owned(), "db".to_owned())
    );
    assert_eq!(
        split_database("mysql://root@h:3306"),
        ("mysql://root@h:3306".to_owned(), "k8or_test".to_owned())
    );
}
