//! The real kustomization written next to the image: `kustomization.yaml` plus one YAML
//! file per resource, so `kubectl apply -k` (or `kubectl kustomize`) works on the folder.

use serde_json::{json, Value};

use super::render::Rendered;

/// The folder of one image version's kustomization in the app-image bucket.
pub fn prefix(image_uid: &str, image_version: &str) -> String {
    format!("kustomize/{image_uid}/{image_version}")
}

/// File names and YAML texts, `kustomization.yaml` first.
pub fn files(rendered: &Rendered) -> Result<Vec<(String, String)>, serde_yaml_ng::Error> {
    let resources = [
        ("deployment.yaml", &rendered.deployment),
        ("service.yaml", &rendered.service),
        ("configmap.yaml", &rendered.config_map),
    ];
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
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
        let files = files(&r).unwrap();
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
    }
}
