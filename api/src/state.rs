//! What every handler gets: the shared context (settings, stores, job and audit tables),
//! the token keys, the metrics handle, the budgets of error items (anonymous and each
//! user's) and the users' quota of new UIDs and jobs. Cloned per request; everything
//! inside is `Arc`.

use std::sync::Arc;

use k8or::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenKeys;
use crate::quota::{ErrorBudget, WriteQuota};

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub keys: Arc<TokenKeys>,
    pub metrics: PrometheusHandle,
    /// The budgets of recorded errors: each user's, and the anonymous one.
    pub errors: Arc<ErrorBudget>,
    /// Each user's quota of new UIDs and jobs.
    pub writes: Arc<WriteQuota>,
}
