//! Building and running the server: `Application::build` binds the listen address (port 0
//! picks a free one, for tests) and opens and provisions the stores; `run_until_stopped`
//! serves until the shutdown future completes, then finishes the requests in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use k8or::config::BackendKind;
use k8or::store::{OpenError, ProvisionError, Stores};
use k8or::{Context, Settings};
use tokio::net::TcpListener;

use crate::auth::TokenKeys;
use crate::quota::{ErrorBudget, WriteQuota};
use crate::routes::{self, RouterError};
use crate::secret::{self, SecretError, TokenSecret};
use crate::state::AppState;
use crate::telemetry;

/// How often the metrics recorder folds its histograms (so memory stays bounded between
/// scrapes).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("opening the stores: {0}")]
    Open(#[from] OpenError),
    #[error("provisioning the stores: {0}")]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    Router(#[from] RouterError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    state: AppState,
    secret: TokenSecret,
}

impl Application {
    /// Resolves the token secret, opens the configured stores (and provisions them on the
    /// embedded backend), binds `settings.listen`.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let secret = secret::resolve(&settings)?;
        let stores = k8or::store::open(&settings).await?;
        // Embedded stores live in the data folder: make sure they are there. On AWS the
        // operator provisions (`k8or-worker provision`, with the provision policy); an API
        // node's role may not create or reconfigure anything, as a worker's may not.
        if settings.backend == BackendKind::Embedded {
            let report = k8or::store::provision(&stores, &settings).await?;
            if report.changed() {
                tracing::info!(created = ?report.created, "provisioned");
            }
        }
        Self::with_stores(settings, stores, secret).await
    }

    /// Builds on stores that are already open and provisioned.
    pub async fn with_stores(
        settings: Settings,
        stores: Stores,
        secret: TokenSecret,
    ) -> Result<Self, StartError> {
        let listener = TcpListener::bind(&settings.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: settings.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.listen.clone(),
            source,
        })?;
        let writes = WriteQuota::per_minute(settings.limits.user_writes_per_minute);
        let errors = ErrorBudget::per_minute(
            settings.limits.user_errors_per_minute,
            settings.limits.anonymous_errors_per_minute,
        );
        let state = AppState {
            ctx: Context::new(settings, stores),
            keys: Arc::new(TokenKeys::new(secret.bytes())),
            metrics: telemetry::prometheus(),
            errors: Arc::new(errors),
            writes: Arc::new(writes),
        };
        let router = routes::router(state.clone())?;
        Ok(Self {
            listener,
            addr,
            router,
            state,
            secret,
        })
    }

    /// The port actually bound (the one the OS picked, for port 0).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The shared context: what embedded workers run on, and what tests inspect.
    pub fn context(&self) -> &Context {
        &self.state.ctx
    }

    /// The keys that sign and check tokens.
    pub fn token_keys(&self) -> Arc<TokenKeys> {
        self.state.keys.clone()
    }

    /// Whether this start made the embedded token secret (a first start).
    pub fn secret_generated(&self) -> bool {
        self.secret.generated
    }

    /// Serves until `shutdown` completes, then lets the requests in flight finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let metrics = self.state.metrics.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_UPKEEP);
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        });
        tracing::info!(addr = %self.addr, "intake API listening");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        upkeep.abort();
        served
    }
}
