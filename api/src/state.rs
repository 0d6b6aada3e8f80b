//! What every handler gets: the shared context (settings, stores, job and audit tables),
//! the token keys, the metrics handle and the budget of anonymous error items. Cloned per
//! request; everything inside is `Arc`.

use std::sync::Arc;

use k8or::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenKeys;
use crate::envelope::AnonymousBudget;

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub keys: Arc<TokenKeys>,
    pub metrics: PrometheusHandle,
    pub anonymous_errors: Arc<AnonymousBudget>,
}
