//! What every handler gets: the shared context (settings, stores, job and audit tables),
//! the token keys, the metrics handle, the budgets of error items (anonymous and each
//! user's) and the users' quota of new UIDs and jobs. Cloned per request; everything
//! inside is `Arc`.

use std::sync::Arc;

use k8or::Context;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::TokenKeys;
use crate::envelope::AnonymousBudget;
use crate::quota::{KeyedBudget, WriteQuota};

#[derive(Clone)]
pub struct AppState {
    pub ctx: Context,
    pub keys: Arc<TokenKeys>,
    pub metrics: PrometheusHandle,
    pub anonymous_errors: Arc<AnonymousBudget>,
    /// Each user's budget of recorded errors.
    pub user_errors: Arc<KeyedBudget>,
    /// Each user's quota of new UIDs and jobs.
    pub writes: Arc<WriteQuota>,
}
