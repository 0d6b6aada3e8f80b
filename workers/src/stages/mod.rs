//! The four stages, registered in one list. Binaries and tests pick stages from it by name.

pub mod common;
pub mod kustomize;
pub mod persist;
pub mod publish;
pub mod validate;

use std::sync::Arc;

use k8or::job::UnknownStage;
use k8or::Stage;

use crate::runner::SharedHandler;

/// The handler of a stage: the one place that maps stages to code.
pub fn handler(stage: Stage) -> SharedHandler {
    match stage {
        Stage::Validate => Arc::new(validate::Validate),
        Stage::PersistMetadata => Arc::new(persist::PersistMetadata),
        Stage::Kustomize => Arc::new(kustomize::Kustomize),
        Stage::Publish => Arc::new(publish::Publish),
    }
}

/// The handlers of the given stages, in pipeline order, each once.
pub fn handlers(stages: &[Stage]) -> Vec<SharedHandler> {
    let mut stages = stages.to_vec();
    stages.sort();
    stages.dedup();
    stages.into_iter().map(handler).collect()
}

/// Parses `validate,publish` (an empty list means every stage).
pub fn parse_list(list: &str) -> Result<Vec<Stage>, UnknownStage> {
    let stages: Vec<Stage> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    Ok(if stages.is_empty() {
        Stage::ALL.to_vec()
    } else {
        stages
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_has_its_handler() {
        for stage in Stage::ALL {
            assert_eq!(handler(stage).stage(), stage);
        }
        let hs = handlers(&[Stage::Publish, Stage::Validate, Stage::Publish]);
        let order: Vec<Stage> = hs.iter().map(|h| h.stage()).collect();
        assert_eq!(order, [Stage::Validate, Stage::Publish]);
    }

    #[test]
    fn stage_lists_parse_by_name() {
        assert_eq!(
            parse_list("validate, publish").unwrap(),
            [Stage::Validate, Stage::Publish]
        );
        assert_eq!(parse_list("").unwrap(), Stage::ALL);
        assert!(parse_list("validate,deploy").is_err());
    }
}
