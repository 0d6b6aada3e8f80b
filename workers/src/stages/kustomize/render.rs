//! Renders the base template (seed 5.3) into one image version's Deployment, Service and
//! ConfigMap (seed 5.5), from the user input (seed 5.4). Pure: no store is touched.

use k8or::model::ImageMetadata;
use serde_json::{json, Map, Value};

use super::names::{check_abs_path, check_env_name, check_label_key, check_label_value, Names};

/// The port used when the upload names none (the seed's template listens on 80).
pub const DEFAULT_PORT: u16 = 80;

/// What the render needs besides the template.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    pub metadata: &'a ImageMetadata,
    /// Prefix of the container image reference, e.g. `registry.k8or.com/apps`.
    pub registry_prefix: &'a str,
    pub replicas: u32,
}

/// The three resources, in the seed's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub names: Names,
    pub deployment: Value,
    pub service: Value,
    pub config_map: Value,
}

impl Rendered {
    pub fn resources(&self) -> Vec<Value> {
        vec![
            self.deployment.clone(),
            self.service.clone(),
            self.config_map.clone(),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The upload's input breaks a Kubernetes rule: every problem, for the rejection.
    #[error("invalid input: {}", .0.join("; "))]
    Input(Vec<String>),
    /// The base template lacks what the render needs: an operator's fix, not the user's.
    #[error("base template unusable: {0}")]
    Template(String),
}

/// The checked user input.
struct Spec {
    names: Names,
    image: String,
    port: u16,
    labels: Map<String, Value>,
    env: Map<String, Value>,
    volumes: Vec<(String, String)>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    working_dir: Option<String>,
}

fn words(what: &str, text: Option<&str>, problems: &mut Vec<String>) -> Option<Vec<String>> {
    let text = text.map(str::trim).filter(|t| !t.is_empty())?;
    match shlex::split(text) {
        Some(w) if !w.is_empty() => Some(w),
        _ => {
            problems.push(format!("{what}: {text:?} has unbalanced quotes"));
            None
        }
    }
}

fn check(input: &RenderInput<'_>) -> Result<Spec, Vec<String>> {
    let m = input.metadata;
    let mut problems = Vec::new();
    let names = Names::new(&m.image_name, &m.image_version);
    let tag = &m.image_version;
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !tag_ok {
        problems.push(format!("imageVersion: {tag:?} is not a valid image tag"));
    }
    let port = match m.port.as_deref().map(str::trim) {
        None | Some("") => DEFAULT_PORT,
        Some(p) => m.port_number().unwrap_or_else(|| {
            problems.push(format!("port: {p:?} is not a port number from 1 to 65535"));
            DEFAULT_PORT
        }),
    };
    let mut labels = Map::new();
    labels.insert("app".into(), names.app.clone().into());
    labels.insert("release".into(), names.release.clone().into());
    for kv in &m.image_labels {
        if matches!(kv.key.as_str(), "app" | "release") {
            problems.push(format!("imageLabels: {:?} is set by the pipeline", kv.key));
            continue;
        }
        let checked = check_label_key(&kv.key).and_then(|()| check_label_value(&kv.key, &kv.value));
        match checked {
            Err(p) => problems.push(p),
            Ok(()) if labels.contains_key(&kv.key) => {
                problems.push(format!("imageLabels: {:?} is given twice", kv.key));
            }
            Ok(()) => {
                labels.insert(kv.key.clone(), kv.value.clone().into());
            }
        }
    }
    let mut env = Map::new();
    for kv in &m.env_vars {
        match check_env_name(&kv.key) {
            Err(p) => problems.push(p),
            Ok(()) if env.contains_key(&kv.key) => {
                problems.push(format!("envVars: {:?} is given twice", kv.key));
            }
            Ok(()) => {
                env.insert(kv.key.clone(), kv.value.clone().into());
            }
        }
    }
    let mut volumes = Vec::new();
    for kv in &m.volumes {
        let host = check_abs_path("volumes (host path)", &kv.key);
        let mount = check_abs_path("volumes (container path)", &kv.value);
        match (host, mount) {
            (Ok(()), Ok(())) if volumes.iter().any(|(_, c)| c == &kv.value) => {
                problems.push(format!(
                    "volumes: container path {:?} is mounted twice",
                    kv.value
                ));
            }
            (Ok(()), Ok(())) => volumes.push((kv.key.clone(), kv.value.clone())),
            (h, c) => problems.extend(h.err().into_iter().chain(c.err())),
        }
    }
    let command = words(
        "entrypointOverride",
        m.entrypoint_override.as_deref(),
        &mut problems,
    );
    let args = words(
        "commandOverride",
        m.command_override.as_deref(),
        &mut problems,
    );
    let working_dir = m
        .working_dir
        .as_deref()
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .and_then(|w| match check_abs_path("workingDir", w) {
            Ok(()) => Some(w.to_owned()),
            Err(p) => {
                problems.push(p);
                None
            }
        });
    if !problems.is_empty() {
        return Err(problems);
    }
    let image = format!(
        "{}/{}:{}",
        input.registry_prefix.trim_end_matches('/'),
        names.app,
        tag
    );
    Ok(Spec {
        names,
        image,
        port,
        labels,
        env,
        volumes,
        command,
        args,
        working_dir,
    })
}

fn find_kind(template: &[Value], kind: &str) -> Result<Value, RenderError> {
    template
        .iter()
        .find(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
        .cloned()
        .ok_or_else(|| RenderError::Template(format!("it has no {kind}")))
}

/// Sets `path` (object keys) in `v`, creating objects on the way.
fn set(v: &mut Value, path: &[&str], value: Value) {
    let mut cur = v;
    for key in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(*key)
            .or_insert(Value::Null);
    }
    *cur = value;
}

fn selector(names: &Names) -> Value {
    json!({"app": names.app, "release": names.release})
}

/// Renders the resources, or says every problem of the input.
pub fn render(template: &[Value], input: &RenderInput<'_>) -> Result<Rendered, RenderError> {
    let spec = check(input).map_err(RenderError::Input)?;
    let labels = Value::Object(spec.labels.clone());
    let names = &spec.names;

    let mut deployment = find_kind(template, "Deployment")?;
    set(
        &mut deployment,
        &["metadata"],
        json!({"name": names.deployment(), "labels": labels}),
    );
    set(
        &mut deployment,
        &["spec", "replicas"],
        json!(input.replicas),
    );
    set(
        &mut deployment,
        &["spec", "selector"],
        json!({"matchLabels": selector(names)}),
    );
    set(
        &mut deployment,
        &["spec", "template", "metadata"],
        json!({"labels": labels}),
    );
    let mut container = deployment
        .pointer("/spec/template/spec/containers/0")
        .cloned()
        .filter(Value::is_object)
        .ok_or_else(|| RenderError::Template("its Deployment has no container".into()))?;
    let c = container.as_object_mut().expect("filtered to an object");
    c.insert("name".into(), names.app.clone().into());
    c.insert("image".into(), spec.image.clone().into());
    c.insert("ports".into(), json!([{"containerPort": spec.port}]));
    c.insert(
        "envFrom".into(),
        json!([{"configMapRef": {"name": names.config_map()}}]),
    );
    for (key, value) in [
        ("command", spec.command.clone().map(Value::from)),
        ("args", spec.args.clone().map(Value::from)),
        ("workingDir", spec.working_dir.clone().map(Value::from)),
    ] {
        match value {
            Some(v) => c.insert(key.into(), v),
            None => c.remove(key),
        };
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, (host, mount)) in spec.volumes.iter().enumerate() {
        let name = format!("volume-{i}");
        volumes.push(json!({"name": name, "hostPath": {"path": host}}));
        mounts.push(json!({"name": name, "mountPath": mount}));
    }
    if mounts.is_empty() {
        c.remove("volumeMounts");
    } else {
        c.insert("volumeMounts".into(), Value::Array(mounts));
    }
    set(
        &mut deployment,
        &["spec", "template", "spec", "containers"],
        json!([container]),
    );
    if let Some(pod) = deployment
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
    {
        if volumes.is_empty() {
            pod.remove("volumes");
        } else {
            pod.insert("volumes".into(), Value::Array(volumes));
        }
    }

    let mut service = find_kind(template, "Service")?;
    let mut port = service
        .pointer("/spec/ports/0")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    set(&mut port, &["port"], json!(spec.port));
    set(&mut port, &["targetPort"], json!(spec.port));
    set(
        &mut service,
        &["metadata"],
        json!({"name": names.service(), "labels": labels}),
    );
    set(&mut service, &["spec", "selector"], selector(names));
    set(&mut service, &["spec", "ports"], json!([port]));

    let mut config_map = find_kind(template, "ConfigMap")?;
    set(
        &mut config_map,
        &["metadata"],
        json!({"name": names.config_map(), "labels": labels}),
    );
    set(&mut config_map, &["data"], Value::Object(spec.env.clone()));

    Ok(Rendered {
        names: spec.names,
        deployment,
        service,
        config_map,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8or::model::{base_template, KeyValue};

    fn seed_metadata() -> ImageMetadata {
        serde_json::from_value(json!({
            "imageUID": "Het5SfSA6NJdRVdhTUhwev9A528QH4gwdJQMSA857PStLeyRnpGffDpDMJq5",
            "icao": "British", "tail": "G-AAAA", "Part": "21117-1",
            "imageName": "Trolls World Tour (2020)", "imageVersion": "v0-0-01",
            "imageCategory": "Movie", "Description": "d", "port": "80",
            "envVars": [{"key": "VAR1", "value": "value1"}, {"key": "VAR2", "value": "value2"}],
            "volumes": [{"key": "/host/path", "value": "/container/path"}],
            "imageLabels": [{"key": "label1", "value": "value1"}],
            "commandOverride": "/app/run.sh", "entrypointOverride": "/app/entrypoint.sh",
            "workingDir": "/app"
        }))
        .unwrap()
    }

    fn input(m: &ImageMetadata) -> RenderInput<'_> {
        RenderInput {
            metadata: m,
            registry_prefix: "registry.k8or.com/apps/",
            replicas: 3,
        }
    }

    #[test]
    fn renders_the_seed_upload() {
        let m = seed_metadata();
        let r = render(&base_template(), &input(&m)).unwrap();
        let d = &r.deployment;
        assert_eq!(
            d["metadata"]["name"],
            "trolls-world-tour-2020-v0-0-01-deployment"
        );
        assert_eq!(d["metadata"]["labels"]["label1"], "value1");
        assert_eq!(d["metadata"]["labels"]["app"], "trolls-world-tour-2020");
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(
            d["spec"]["selector"]["matchLabels"],
            json!({"app": "trolls-world-tour-2020", "release": "trolls-world-tour-2020-v0-0-01"})
        );
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"]["label1"],
            "value1"
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["image"],
            "registry.k8or.com/apps/trolls-world-tour-2020:v0-0-01"
        );
        assert_eq!(c["name"], "trolls-world-tour-2020");
        assert_eq!(c["ports"], json!([{"containerPort": 80}]));
        assert_eq!(c["command"], json!(["/app/entrypoint.sh"]));
        assert_eq!(c["args"], json!(["/app/run.sh"]));
        assert_eq!(c["workingDir"], "/app");
        assert_eq!(
            c["envFrom"][0]["configMapRef"]["name"],
            "trolls-world-tour-2020-v0-0-01-configmap"
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "volume-0", "mountPath": "/container/path"}])
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "volume-0", "hostPath": {"path": "/host/path"}}])
        );
        let s = &r.service;
        assert_eq!(
            s["metadata"]["name"],
            "trolls-world-tour-2020-v0-0-01-service"
        );
        assert_eq!(s["spec"]["ports"], json!([{"port": 80, "targetPort": 80}]));
        assert_eq!(
            s["spec"]["type"], "LoadBalancer",
            "the template's own fields stay"
        );
        assert_eq!(s["spec"]["selector"], d["spec"]["selector"]["matchLabels"]);
        let cm = &r.config_map;
        assert_eq!(cm["data"], json!({"VAR1": "value1", "VAR2": "value2"}));
        assert_eq!(
            cm["metadata"]["name"],
            "trolls-world-tour-2020-v0-0-01-configmap"
        );
        assert_eq!(r.resources().len(), 3);
    }

    #[test]
    fn quoted_overrides_split_like_a_shell() {
        let mut m = seed_metadata();
        m.entrypoint_override = Some("sh -c".into());
        m.command_override = Some(r#"'echo "hi there"' --flag"#.into());
        m.working_dir = None;
        m.port = Some("8080".into());
        let r = render(&base_template(), &input(&m)).unwrap();
        let c = &r.deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["sh", "-c"]));
        assert_eq!(c["args"], json!(["echo \"hi there\"", "--flag"]));
        assert!(c.get("workingDir").is_none());
        assert_eq!(r.service["spec"]["ports"][0]["targetPort"], 8080);
    }

    #[test]
    fn every_input_problem_is_reported() {
        let mut m = seed_metadata();
        m.port = Some("http".into());
        m.env_vars.push(KeyValue::new("1BAD", "x"));
        m.env_vars.push(KeyValue::new("VAR1", "again"));
        m.volumes.push(KeyValue::new("relative", "/c"));
        m.image_labels.push(KeyValue::new("app", "mine"));
        m.image_labels.push(KeyValue::new("ok", "not ok"));
        m.command_override = Some("'unbalanced".into());
        m.working_dir = Some("app".into());
        let Err(RenderError::Input(problems)) = render(&base_template(), &input(&m)) else {
            panic!("expected input problems");
        };
        for needle in [
            "port",
            "1BAD",
            "VAR1",
            "relative",
            "\"app\"",
            "not ok",
            "unbalanced",
            "workingDir",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "{needle} missing in {problems:?}"
            );
        }
        assert_eq!(problems.len(), 8, "{problems:?}");
    }

    #[test]
    fn a_template_without_a_kind_is_an_operator_problem() {
        let m = seed_metadata();
        let template: Vec<Value> = base_template().into_iter().take(2).collect();
        assert!(matches!(
            render(&template, &input(&m)),
            Err(RenderError::Template(t)) if t.contains("ConfigMap")
        ));
    }

    #[test]
    fn missing_port_and_empty_lists_render_minimal_resources() {
        let m: ImageMetadata = serde_json::from_value(json!({
            "imageName": "Poster", "imageVersion": "v1-0-0"
        }))
        .unwrap();
        let r = render(&base_template(), &input(&m)).unwrap();
        let pod = &r.deployment["spec"]["template"]["spec"];
        assert!(pod.get("volumes").is_none());
        assert!(pod["containers"][0].get("volumeMounts").is_none());
        assert!(pod["containers"][0].get("command").is_none());
        assert_eq!(
            pod["containers"][0]["ports"][0]["containerPort"],
            DEFAULT_PORT
        );
        assert_eq!(r.config_map["data"], json!({}));
    }
}
