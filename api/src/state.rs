//! What every handler gets: the shared context (settings, stores, job and audit tables),
//! the token keys, the metrics handle, the budget of anonymous error items and the users'
//! quota of new UIDs and jobs. Cloned per request; everything inside is `Arc`.

use std::sync::Arc;

use k8or::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenKeys;
use crate::envelope::AnonymousBudget;
use crate::quota::WriteQuota;

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub keys: Arc<TokenKeys>,
    pub metrics: PrometheusHandle,
    pub anonymous_errors: Arc<AnonymousBudget>,
    /// Each user's quota of new UIDs and jobs.
    pub writes: Arc<WriteQuota>,
}
