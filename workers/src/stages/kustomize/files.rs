//! The real kustomization written next to the image: `kustomization.yaml` plus one YAML
//! file per resource, so `kubectl apply -k` (or `kubectl kustomize`) works on the folder.

use serde_json::{json, Value};

/// The folder of one image version's kustomization in the app-image bucket.
pub fn prefix(image_uid: &str, image_version: &str) -> String {
    format!("kustomize/{image_uid}/{image_version}")
}

/// The files of the resources, in the order `Rendered::resources` gives them (and the
/// kustomization item stores them).
const RESOURCE_FILES: [&str; 3] = ["deployment.yaml", "service.yaml", "configmap.yaml"];

/// Why a kustomization folder cannot be written from a list of resources.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("expected 3 resources (Deployment, Service, ConfigMap), got {0}")]
    Count(usize),
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// File names and YAML texts, `kustomization.yaml` first, from the resources as
/// `Rendered::resources` lists them: from a render, or from a stored kustomization item.
pub fn files(resources: &[Value]) -> Result<Vec<(String, String)>, FilesError> {
    if resources.len() != RESOURCE_FILES.len() {
        return Err(FilesError::Count(resources.len()));
    }
    let resources = RESOURCE_FILES.iter().copied().zip(resources);
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": RESOURCE_FILES,
    });
    let mut out = vec![("kustomization.yaml".to_owned(), yaml(&kustomization)?)];
    for (name, resource) in resources {
        out.push((name.to_owned(), yaml(resource)?));
    }
    Ok(out)
}

fn yaml(v: &Value) -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::kustomize::render::{render, RenderInput};
    use k8or::model::{base_template, ImageMetadata};

    #[test]
    fn kustomization_lists_every_resource_and_files_parse_back() {
        let m: ImageMetadata = serde_json::from_value(json!({
            "imageName": "Trolls World Tour (2020)", "imageVersion": "v0-0-01",
            "envVars": [{"key": "GREETING", "value": "yes: no # not a comment"}]
        }))
        .unwrap();
        let r = render(
            &base_template(),
            &RenderInput {
                metadata: &m,
                registry_prefix: "r.example/apps",
                replicas: 2,
            },
        )
        .unwrap();
        let files = files(&r.resources()).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "kustomization.yaml",
                "deployment.yaml",
                "service.yaml",
                "configmap.yaml"
            ]
        );
        let k: Value = serde_yaml_ng::from_str(&files[0].1).unwrap();
        assert_eq!(k["kind"], "Kustomization");
        assert_eq!(
            k["resources"],
            json!(["deployment.yaml", "service.yaml", "configmap.yaml"])
        );
        let back: Value = serde_yaml_ng::from_str(&files[3].1).unwrap();
        assert_eq!(back, r.config_map, "YAML quoting keeps odd values intact");
        let back: Value = serde_yaml_ng::from_str(&files[1].1).unwrap();
        assert_eq!(back, r.deployment);
        assert_eq!(prefix("U", "v0-0-01"), "kustomize/U/v0-0-01");
        assert!(matches!(
            super::files(&r.resources()[..2]),
            Err(FilesError::Count(2))
        ));
    }
}
