//! Typed settings: built-in defaults (the seed's resource names), then `queues.toml`
//! (`K8OR_CONFIG`), then environment variables (`K8OR_…`; nested keys with `__`, e.g.
//! `K8OR_STAGES__VALIDATE__CONCURRENCY=8`). Invalid settings fail at start, naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::job::Stage;
use crate::store::{QueueSpec, TableSpec};

/// Which adapters the ports use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// SQLite and a local folder under `data_dir`: no setup, no AWS account.
    #[default]
    Embedded,
    /// SQS, DynamoDB, S3 and MySQL.
    Aws,
}

/// The backend with what it needs, resolved from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Embedded {
        path: PathBuf,
    },
    Aws {
        endpoint_url: Option<String>,
        region: String,
        s3_path_style: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub backend: BackendKind,
    pub data_dir: PathBuf,
    pub listen: String,
    #[serde(skip_serializing)]
    pub token_secret: Option<SecretString>,
    pub aws_endpoint_url: Option<String>,
    pub aws_region: String,
    pub s3_path_style: bool,
    #[serde(skip_serializing)]
    pub mysql_url: Option<SecretString>,
    pub log_format: LogFormat,
    /// Where `/metrics` listens on a worker process (the API serves it on its own port).
    pub metrics_listen: Option<String>,
    pub tables: TableNames,
    pub buckets: BucketNames,
    pub viewport: ViewPortSettings,
    pub kustomize: KustomizeSettings,
    pub limits: Limits,
    pub validation: ValidationLimits,
    pub queues: QueueDefaults,
    pub stages: Stages,
    /// Ignored: `K8OR_CONFIG` names the file these settings came from.
    #[serde(skip)]
    pub config: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            backend: BackendKind::Embedded,
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:8080".into(),
            token_secret: None,
            aws_endpoint_url: None,
            aws_region: "us-east-1".into(),
            s3_path_style: false,
            mysql_url: None,
            log_format: LogFormat::Text,
            metrics_listen: None,
            tables: TableNames::default(),
            buckets: BucketNames::default(),
            viewport: ViewPortSettings::default(),
            kustomize: KustomizeSettings::default(),
            limits: Limits::default(),
            validation: ValidationLimits::default(),
            queues: QueueDefaults::default(),
            stages: Stages::default(),
            config: None,
        }
    }
}

/// Table names; the defaults are the seed's resource list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableNames {
    pub base_kustomize: String,
    pub user_input_manifest: String,
    pub k8or_kustomize: String,
    pub user_metadata: String,
    pub app_image_metadata: String,
    pub user_event_log: String,
    pub user_error_log: String,
    pub static_data: String,
    /// Not in the seed: one item per job, polled by the board.
    pub jobs: String,
    /// Not in the seed: (username, jobId) so a user's jobs list newest first.
    pub user_jobs: String,
    /// Not in the seed: (shard, jobId) of each job written but not yet queued (an outbox:
    /// the dead-letter monitor queues what an intake that died left here).
    pub unqueued_jobs: String,
}

impl Default for TableNames {
    fn default() -> Self {
        Self {
            base_kustomize: "base-kustomize-1603-tbl-k8d-aws".into(),
            user_input_manifest: "user-input-manifest-data-1606-tbl-k8d-aws".into(),
            k8or_kustomize: "k8or-kustomize-1609-tbl-k8d-aws".into(),
            user_metadata: "user-metadata-1612-tbl-k8d-aws".into(),
            app_image_metadata: "app-image-metadata-1615-tbl-k8d-aws".into(),
            user_event_log: "user-event-log-1621-tbl-k8d-aws".into(),
            user_error_log: "user-error-log-1624-tbl-k8d-aws".into(),
            static_data: "portal-upload-static-data-1627-tbl-k8d-aws".into(),
            jobs: "k8or-upload-job-1630-tbl-k8d-aws".into(),
            user_jobs: "k8or-upload-user-job-1633-tbl-k8d-aws".into(),
            unqueued_jobs: "k8or-upload-unqueued-job-1636-tbl-k8d-aws".into(),
        }
    }
}

impl TableNames {
    /// Every table with its key schema (the seed's, with the changes listed in the README).
    pub fn specs(&self) -> Vec<TableSpec> {
        vec![
            TableSpec::new(&self.base_kustomize, "helmChart", None),
            TableSpec::new(&self.user_input_manifest, "imageUID", Some("timestamp")),
            TableSpec::new(&self.k8or_kustomize, "imageUID", Some("imageVersion")),
            TableSpec::new(&self.user_metadata, "username", None),
            TableSpec::new(&self.app_image_metadata, "part-number", Some("tail-name")),
            TableSpec::new(&self.user_event_log, "username", Some("eventKey")),
            TableSpec::new(&self.user_error_log, "username", Some("errorKey")),
            TableSpec::new(&self.static_data, "ICAOCode", None),
            TableSpec::new(&self.jobs, "jobId", None),
            TableSpec::new(&self.user_jobs, "username", Some("jobId")),
            TableSpec::new(&self.unqueued_jobs, "shard", Some("jobId")),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BucketNames {
    pub temporary: String,
    pub app_image: String,
}

impl Default for BucketNames {
    fn default() -> Self {
        Self {
            temporary: "temporary-app-image-1203-bkt-k8d-aws".into(),
            app_image: "app-image-1206-bkt-k8d-aws".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewPortSettings {
    /// The MySQL database name (seed: `app_image_mql_2003_dtb_k8d_aws`).
    pub database: String,
    /// The site; post links are `<base_url>viewport/<slug>/`.
    pub base_url: String,
}

impl Default for ViewPortSettings {
    fn default() -> Self {
        Self {
            database: "app_image_mql_2003_dtb_k8d_aws".into(),
            base_url: "http://orbit.k8or.com/".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct KustomizeSettings {
    /// Prefix of the container image reference, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/k8or`.
    pub registry_prefix: String,
    pub replicas: u32,
    /// The base template's `helmChart` key in base-kustomize.
    pub base_template: String,
}

impl Default for KustomizeSettings {
    fn default() -> Self {
        Self {
            registry_prefix: "registry.k8or.com/apps".into(),
            replicas: 3,
            base_template: "default".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest upload accepted (default 2 GiB).
    pub upload_max_bytes: u64,
    /// Largest JSON body (the JSON form's data URL counts).
    pub json_max_bytes: u64,
    pub request_timeout_secs: u64,
    /// Allowed CORS origins; empty means same-origin only.
    pub cors_origins: Vec<String>,
    /// New image UIDs and jobs one user may make a minute, per API process (0: no quota).
    pub user_writes_per_minute: u32,
    /// Error responses of one user recorded in the user-error-log table a minute, per API
    /// process (0: all); the rest are only counted.
    pub user_errors_per_minute: u32,
    /// Error responses of requests without a valid token recorded in the user-error-log
    /// table a minute, all together, per API process (0: all); the rest are only counted.
    pub anonymous_errors_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            upload_max_bytes: 2 * 1024 * 1024 * 1024,
            json_max_bytes: 16 * 1024 * 1024,
            request_timeout_secs: 3600,
            cors_origins: Vec::new(),
            user_writes_per_minute: 120,
            user_errors_per_minute: 60,
            anonymous_errors_per_minute: 60,
        }
    }
}

/// Limits of the validate stage: what a picture or archive may demand.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidationLimits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    /// Most memory a decoder may allocate.
    pub max_alloc_bytes: u64,
    pub max_tar_entries: u64,
    pub max_tar_entry_bytes: u64,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        Self {
            max_width: 16_384,
            max_height: 16_384,
            max_pixels: 100_000_000,
            max_alloc_bytes: 512 * 1024 * 1024,
            max_tar_entries: 100_000,
            max_tar_entry_bytes: 8 * 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueDefaults {
    pub retention_secs: u64,
    /// Longer than the source queues', so a dead letter outlives what it came from.
    pub dead_letter_retention_secs: u64,
}

impl Default for QueueDefaults {
    fn default() -> Self {
        Self {
            retention_secs: 4 * 24 * 3600,
            dead_letter_retention_secs: 14 * 24 * 3600,
        }
    }
}

/// One stage's queue topology and retry policy.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub queue: String,
    pub dead_letter_queue: String,
    pub visibility_timeout_secs: u64,
    pub max_receive_count: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// 0 to 1: the share of each delay that is random.
    pub jitter: f64,
    pub concurrency: usize,
    /// Messages per receive, 1 to 10.
    pub batch_size: usize,
    /// Long-poll wait, 0 to 20 seconds.
    pub wait_time_secs: u64,
}

impl StageConfig {
    fn defaults(stage: Stage) -> Self {
        Self {
            queue: format!("k8or-upload-{stage}-que-k8d-aws"),
            dead_letter_queue: format!("k8or-upload-{stage}-dlq-k8d-aws"),
            visibility_timeout_secs: if stage == Stage::Validate { 120 } else { 30 },
            max_receive_count: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 60_000,
            jitter: 0.5,
            concurrency: 4,
            batch_size: 10,
            wait_time_secs: 20,
        }
    }

    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_secs(self.visibility_timeout_secs)
    }

    pub fn wait_time(&self) -> Duration {
        Duration::from_secs(self.wait_time_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stages {
    pub validate: StageConfig,
    #[serde(rename = "persist-metadata", alias = "persist_metadata")]
    pub persist_metadata: StageConfig,
    pub kustomize: StageConfig,
    pub publish: StageConfig,
}

impl Default for Stages {
    fn default() -> Self {
        Self {
            validate: StageConfig::defaults(Stage::Validate),
            persist_metadata: StageConfig::defaults(Stage::PersistMetadata),
            kustomize: StageConfig::defaults(Stage::Kustomize),
            publish: StageConfig::defaults(Stage::Publish),
        }
    }
}

impl Stages {
    pub fn get(&self, stage: Stage) -> &StageConfig {
        match stage {
            Stage::Validate => &self.validate,
            Stage::PersistMetadata => &self.persist_metadata,
            Stage::Kustomize => &self.kustomize,
            Stage::Publish => &self.publish,
        }
    }

    pub fn get_mut(&mut self, stage: Stage) -> &mut StageConfig {
        match stage {
            Stage::Validate => &mut self.validate,
            Stage::PersistMetadata => &mut self.persist_metadata,
            Stage::Kustomize => &mut self.kustomize,
            Stage::Publish => &mut self.publish,
        }
    }
}

/// Every top-level settings key (`config` excluded: `K8OR_CONFIG` names the file).
const TOP_LEVEL_KEYS: &[&str] = &[
    "backend",
    "data_dir",
    "listen",
    "token_secret",
    "aws_endpoint_url",
    "aws_region",
    "s3_path_style",
    "mysql_url",
    "log_format",
    "metrics_listen",
    "tables",
    "buckets",
    "viewport",
    "kustomize",
    "limits",
    "validation",
    "queues",
    "stages",
];

/// Why the settings are unusable. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist (set K8OR_CONFIG to an existing file)")]
    MissingFile(PathBuf),
    #[error("invalid config: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("invalid config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

impl Settings {
    /// Loads from `K8OR_CONFIG` (default `queues.toml`; a missing default file is fine, a
    /// missing named file is an error) and the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let named = std::env::var_os("K8OR_CONFIG").map(PathBuf::from);
        let path = named
            .clone()
            .unwrap_or_else(|| PathBuf::from("queues.toml"));
        if named.is_some() && !path.exists() {
            return Err(ConfigError::MissingFile(path));
        }
        Self::from_figment(Self::figment(&path).merge(Self::env()))
    }

    /// Loads from one file and nothing else (tests, tools).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.to_owned()));
        }
        Self::from_figment(Self::figment(path))
    }

    /// Loads from TOML text (tests).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Self::defaults().merge(Toml::string(text)))
    }

    fn figment(path: &Path) -> Figment {
        Self::defaults().merge(Toml::file(path))
    }

    /// The built-in defaults, so a file or variable may set one key of a section.
    fn defaults() -> Figment {
        Figment::from(Serialized::defaults(Settings::default()))
    }

    /// `K8OR_<KEY>` for every top-level key, nested keys joined by `__`. Other `K8OR_`
    /// variables (test harness settings, fault switches) are not settings and are left
    /// alone; an unknown key under a known section is still an error.
    fn env() -> Env {
        Env::prefixed("K8OR_")
            .filter(|key| {
                let top = key.as_str().split("__").next().unwrap_or_default();
                TOP_LEVEL_KEYS.contains(&top.to_ascii_lowercase().as_str())
            })
            .split("__")
            // systemd drops variable names with a hyphen, so `PERSIST_METADATA` stands for
            // the `persist-metadata` section.
            .map(|key| {
                key.as_str()
                    .to_ascii_lowercase()
                    .replacen("stages.persist_metadata", "stages.persist-metadata", 1)
                    .into()
            })
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Self = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what serde cannot: ranges and relations between keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "listen",
                format!("{:?} is not host:port ({e})", self.listen),
            )
        })?;
        if let Some(m) = &self.metrics_listen {
            m.parse::<SocketAddr>()
                .map_err(|e| invalid("metrics_listen", format!("{m:?} is not host:port ({e})")))?;
        }
        if let Some(url) = &self.aws_endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "aws_endpoint_url",
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        if self.limits.upload_max_bytes == 0 {
            return Err(invalid("limits.upload_max_bytes", "must be more than 0"));
        }
        if self.queues.dead_letter_retention_secs <= self.queues.retention_secs {
            return Err(invalid(
                "queues.dead_letter_retention_secs",
                "must be longer than queues.retention_secs",
            ));
        }
        let mut names = std::collections::HashSet::new();
        for stage in Stage::ALL {
            let c = self.stages.get(stage);
            let key = |k: &str| format!("stages.{stage}.{k}");
            if c.queue.is_empty() || c.dead_letter_queue.is_empty() {
                return Err(invalid(key("queue"), "queue names must not be empty"));
            }
            if !names.insert(c.queue.clone()) || !names.insert(c.dead_letter_queue.clone()) {
                return Err(invalid(key("queue"), "every queue name must be distinct"));
            }
            if !(1..=43_200).contains(&c.visibility_timeout_secs) {
                return Err(invalid(
                    key("visibility_timeout_secs"),
                    "must be 1 to 43200",
                ));
            }
            if !(1..=1000).contains(&c.max_receive_count) {
                return Err(invalid(key("max_receive_count"), "must be 1 to 1000"));
            }
            if c.backoff_base_ms == 0 || c.backoff_max_ms < c.backoff_base_ms {
                return Err(invalid(
                    key("backoff_max_ms"),
                    "backoff_base_ms must be more than 0 and at most backoff_max_ms",
                ));
            }
            if c.backoff_max_ms > 12 * 3600 * 1000 {
                return Err(invalid(key("backoff_max_ms"), "must be at most 12 hours"));
            }
            if !(0.0..=1.0).contains(&c.jitter) {
                return Err(invalid(key("jitter"), "must be between 0 and 1"));
            }
            if !(1..=1024).contains(&c.concurrency) {
                return Err(invalid(key("concurrency"), "must be 1 to 1024"));
            }
            if !(1..=10).contains(&c.batch_size) {
                return Err(invalid(key("batch_size"), "must be 1 to 10"));
            }
            if c.wait_time_secs > 20 {
                return Err(invalid(key("wait_time_secs"), "must be 0 to 20"));
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self.backend {
            BackendKind::Embedded => Backend::Embedded {
                path: self.data_dir.clone(),
            },
            BackendKind::Aws => Backend::Aws {
                endpoint_url: self.aws_endpoint_url.clone(),
                region: self.aws_region.clone(),
                s3_path_style: self.s3_path_style,
            },
        }
    }

    /// After how many days the temporary bucket's objects expire: a job may wait out a
    /// queue's retention, then be dead-lettered, re-driven on the dead-letter queue's last
    /// day and dead-lettered again, and its validate still reads its upload. So the
    /// retention plus twice the dead-letter retention, rounded up to whole days, plus one.
    pub fn temporary_expiry_days(&self) -> u32 {
        let q = &self.queues;
        let secs = q.retention_secs + 2 * q.dead_letter_retention_secs;
        u32::try_from(secs.div_ceil(24 * 3600) + 1).unwrap_or(u32::MAX)
    }

    /// Every queue to provision: each dead-letter queue before its source.
    pub fn queue_specs(&self) -> Vec<QueueSpec> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            let c = self.stages.get(stage);
            out.push(QueueSpec {
                name: c.dead_letter_queue.clone(),
                visibility_timeout: c.visibility_timeout(),
                retention: Duration::from_secs(self.queues.dead_letter_retention_secs),
                dead_letter: None,
            });
            out.push(QueueSpec {
                name: c.queue.clone(),
                visibility_timeout: c.visibility_timeout(),
                retention: Duration::from_secs(self.queues.retention_secs),
                dead_letter: Some(crate::store::DeadLetterPolicy {
                    queue: c.dead_letter_queue.clone(),
                    max_receive_count: c.max_receive_count,
                }),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_objects_outlive_a_queue_and_two_dead_letterings() {
        let mut s = Settings::default();
        assert_eq!(s.temporary_expiry_days(), 4 + 2 * 14 + 1);
        s.queues.retention_secs = 3600;
        s.queues.dead_letter_retention_secs = 24 * 3600;
        assert_eq!(
            s.temporary_expiry_days(),
            3 + 1,
            "2 days and an hour, rounded up"
        );
    }

    #[test]
    fn defaults_are_valid_and_name_the_seed_resources() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.tables.user_event_log, "user-event-log-1621-tbl-k8d-aws");
        assert_eq!(s.buckets.temporary, "temporary-app-image-1203-bkt-k8d-aws");
        assert_eq!(s.viewport.database, "app_image_mql_2003_dtb_k8d_aws");
        assert_eq!(
            s.backend(),
            Backend::Embedded {
                path: "./data".into()
            }
        );
    }

    #[test]
    fn the_shipped_queues_toml_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("queues.toml");
        let s = Settings::from_file(&path).unwrap();
        assert_eq!(s.stages.get(Stage::PersistMetadata).batch_size, 10);
        assert_eq!(s.queue_specs().len(), 8);
    }

    #[test]
    fn toml_overrides_defaults() {
        let s = Settings::from_toml(
            "[stages.persist-metadata]\nqueue='q'\ndead_letter_queue='d'\nvisibility_timeout_secs=9\nmax_receive_count=2\nbackoff_base_ms=10\nbackoff_max_ms=20\njitter=0.1\nconcurrency=1\nbatch_size=1\nwait_time_secs=0\n",
        )
        .unwrap();
        assert_eq!(s.stages.persist_metadata.queue, "q");
        assert_eq!(s.stages.validate.queue, "k8or-upload-validate-que-k8d-aws");
    }

    #[test]
    fn invalid_settings_name_the_key() {
        let cases = [
            ("listen = 'nope'", "listen"),
            ("backend = 'cloud'", "backend"),
            ("[stages.validate]\nbatch_size = 11", "stages.validate"),
            ("[limits]\nupload_max_bytes = 'big'", "upload_max_bytes"),
            ("unknown_key = 1", "unknown_key"),
            (
                "[queues]\nretention_secs = 99999999",
                "dead_letter_retention_secs",
            ),
        ];
        for (text, key) in cases {
            let err = Settings::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err:?}");
        }
    }

    #[test]
    fn top_level_keys_list_every_setting() {
        let value = serde_json::to_value(Settings::default()).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.extend(["token_secret", "mysql_url"]);
        keys.sort_unstable();
        let mut listed = TOP_LEVEL_KEYS.to_vec();
        listed.sort_unstable();
        assert_eq!(keys, listed);
    }

    #[test]
    #[expect(
        clippy::result_large_err,
        reason = "figment's Jail API fixes the closure's error type"
    )]
    fn environment_overrides_files_and_ignores_other_variables() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("K8OR_STAGES__PERSIST_METADATA__CONCURRENCY", "3");
            jail.set_env("K8OR_STAGES__VALIDATE__BATCH_SIZE", "2");
            jail.set_env("K8OR_LISTEN", "0.0.0.0:9000");
            jail.set_env("K8OR_TEST_AWS_ENDPOINT", "http://127.0.0.1:1");
            jail.set_env("K8OR_WORKER_FAULTS", "");
            let s = Settings::from_figment(Settings::defaults().merge(Settings::env()))
                .expect("settings");
            assert_eq!(s.stages.persist_metadata.concurrency, 3);
            assert_eq!(s.stages.validate.batch_size, 2);
            assert_eq!(s.listen, "0.0.0.0:9000");
            jail.set_env("K8OR_STAGES__VALIDATE__BATCH_SIZE", "99");
            let err = Settings::from_figment(Settings::defaults().merge(Settings::env()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("stages.validate.batch_size"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_bad_stage_value_names_its_key() {
        let mut s = Settings::default();
        s.stages.kustomize.jitter = 2.0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("stages.kustomize.jitter"), "{err}");
    }
}
