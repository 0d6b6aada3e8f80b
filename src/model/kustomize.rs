//! base-kustomize and k8or-kustomize items (seed 5.3, 5.5).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::time::Created;

/// A base template: a name (`helmChart`) and its resources (`helmChartData`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseKustomizeItem {
    #[serde(rename = "helmChart")]
    pub helm_chart: String,
    #[serde(rename = "helmChartData")]
    pub helm_chart_data: Vec<Value>,
    #[serde(flatten)]
    pub created: Created,
}

/// The generated manifests of one image version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KustomizeItem {
    #[serde(rename = "imageUID")]
    pub image_uid: String,
    #[serde(rename = "imageVersion")]
    pub image_version: String,
    #[serde(rename = "helmChart")]
    pub helm_chart: Vec<Value>,
    #[serde(rename = "jobId")]
    pub job_id: Uuid,
    /// Where the real kustomization (kustomization.yaml and one file per resource) was
    /// written in the app-image bucket.
    #[serde(rename = "kustomizationPrefix")]
    pub kustomization_prefix: String,
    #[serde(flatten)]
    pub created: Created,
}

/// The seed's base template (5.3): a Deployment, a Service and a ConfigMap.
pub fn base_template() -> Vec<Value> {
    vec![
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"labels": {"app": "app", "release": "release"}, "name": "release-deployment"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}},
                    "spec": {"containers": [{
                        "envFrom": [{"configMapRef": {"name": "release-configmap"}}],
                        "image": "nginx:latest",
                        "name": "container",
                        "ports": [{"containerPort": 80}]
                    }]}
                }
            }
        }),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"labels": {"app": "app", "release": "release"}, "name": "release-service"},
            "spec": {
                "ports": [{"port": 80, "targetPort": 80}],
                "selector": {"app": "app"},
                "type": "LoadBalancer"
            }
        }),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"labels": {"app": "app", "release": "release"}, "name": "release-configmap"},
            "data": {"MY_CONFIG_VALUE": "Hello from ConfigMap!"}
        }),
    ]
}
