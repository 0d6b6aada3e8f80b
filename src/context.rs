//! What the API and the workers share: settings, the four stores, and the job and audit
//! tables built on them. Built once at start and cloned cheaply (everything is `Arc`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditLog;
use crate::config::Settings;
use crate::job::JobEnvelope;
use crate::jobs::Jobs;
use crate::store::{OutMessage, QueueError, Stores};

/// Message attribute carrying the job id, so tools can see it without parsing the body.
pub const ATTR_JOB_ID: &str = "k8or-job-id";
/// Message attribute carrying the stage name.
pub const ATTR_STAGE: &str = "k8or-stage";

#[derive(Clone)]
pub struct Context {
    pub settings: Arc<Settings>,
    pub stores: Stores,
    pub jobs: Jobs,
    pub audit: AuditLog,
}

impl Context {
    pub fn new(settings: Settings, stores: Stores) -> Self {
        let jobs = Jobs::new(stores.tables.clone(), &settings.tables);
        let audit = AuditLog::new(stores.tables.clone(), &settings.tables);
        Self {
            settings: Arc::new(settings),
            stores,
            jobs,
            audit,
        }
    }

    /// Sends the envelope to its stage's queue, with extra attributes (trace context).
    pub async fn enqueue(
        &self,
        envelope: &JobEnvelope,
        delay: Duration,
        mut attributes: BTreeMap<String, String>,
    ) -> Result<String, QueueError> {
        let queue = &self.settings.stages.get(envelope.stage).queue;
        attributes.insert(ATTR_JOB_ID.into(), envelope.job_id.to_string());
        attributes.insert(ATTR_STAGE.into(), envelope.stage.to_string());
        let message = OutMessage {
            body: envelope.to_body(),
            delay,
            attributes,
        };
        self.stores.queue.send(queue, message).await
    }
}
