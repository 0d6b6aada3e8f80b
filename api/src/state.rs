//! What every handler gets: the shared context (settings, stores, job and audit tables),
//! the token keys and the metrics handle. Cloned per request; everything inside is `Arc`.

use std::sync::Arc;

use k8or::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenKeys;

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub keys: Arc<TokenKeys>,
    pub metrics: PrometheusHandle,
}
