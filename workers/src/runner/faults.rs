//! Fault injection, for reliability tests and failure drills only: wraps stage handlers so
//! that a stage runs slowly or fails every time. Off by default; `k8or-worker run` turns it
//! on only when given `--inject-faults <list>`, and logs a warning when it does. (Not an
//! environment variable: every `K8OR_…` variable is a setting, and a fault is not one.)
//!
//! The syntax is a comma-separated list of `<stage>:delay=<ms>` (the stage sleeps that long
//! before it does its work, so a test can kill or stop a worker inside it) and
//! `<stage>:fail` (the stage fails with a retryable error, so its jobs are retried and
//! dead-lettered), e.g. `validate:delay=500,kustomize:fail`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8or::{Context, JobEnvelope, JobRecord, Stage};

use super::{Outcome, SharedHandler, StageError, StageHandler};

/// What is done to one stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fault {
    pub delay: Option<Duration>,
    pub fail: bool,
}

/// The faults of every stage that has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults(HashMap<Stage, Fault>);

#[derive(Debug, thiserror::Error)]
#[error("bad fault {0:?}: expected <stage>:delay=<ms> or <stage>:fail")]
pub struct FaultSyntax(String);

impl FromStr for Faults {
    type Err = FaultSyntax;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = HashMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || FaultSyntax(part.to_owned());
            let (stage, what) = part.split_once(':').ok_or_else(bad)?;
            let stage: Stage = stage.parse().map_err(|_| bad())?;
            let fault: &mut Fault = out.entry(stage).or_default();
            match what.trim().split_once('=') {
                None if what.trim() == "fail" => fault.fail = true,
                Some(("delay", ms)) => {
                    let ms: u64 = ms.trim().parse().map_err(|_| bad())?;
                    fault.delay = Some(Duration::from_millis(ms));
                }
                _ => return Err(bad()),
            }
        }
        Ok(Self(out))
    }
}

impl Faults {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The handlers, with those of faulty stages wrapped.
    pub fn wrap(&self, handlers: Vec<SharedHandler>) -> Vec<SharedHandler> {
        handlers
            .into_iter()
            .map(|inner| match self.0.get(&inner.stage()) {
                Some(&fault) => Arc::new(Faulty { inner, fault }) as SharedHandler,
                None => inner,
            })
            .collect()
    }
}

struct Faulty {
    inner: SharedHandler,
    fault: Fault,
}

#[async_trait]
impl StageHandler for Faulty {
    fn stage(&self) -> Stage {
        self.inner.stage()
    }

    fn error_type(&self) -> &'static str {
        self.inner.error_type()
    }

    async fn handle(
        &self,
        job: &JobRecord,
        env: &JobEnvelope,
        ctx: &Context,
    ) -> Result<Outcome, StageError> {
        if let Some(delay) = self.fault.delay {
            tokio::time::sleep(delay).await;
        }
        if self.fault.fail {
            return Err(StageError::Retryable(format!(
                "injected fault: the {} stage is set to fail (--inject-faults)",
                self.stage()
            )));
        }
        self.inner.handle(job, env, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delays_and_failures() {
        let f: Faults = "validate:delay=250, kustomize:fail,kustomize:delay=5"
            .parse()
            .unwrap();
        assert_eq!(
            f.0[&Stage::Validate],
            Fault {
                delay: Some(Duration::from_millis(250)),
                fail: false
            }
        );
        assert_eq!(
            f.0[&Stage::Kustomize],
            Fault {
                delay: Some(Duration::from_millis(5)),
                fail: true
            }
        );
        assert!("".parse::<Faults>().unwrap().is_empty());
        for bad in [
            "validate",
            "nowhere:fail",
            "publish:delay=x",
            "publish:explode",
        ] {
            assert!(bad.parse::<Faults>().is_err(), "{bad}");
        }
    }
}
